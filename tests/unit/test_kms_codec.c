/* test_kms_codec.c - libkms's typed layer: the engine (lib/client/kms_codec.c)
 * over the generated descriptors (lib/client/kms_ops.c), and the generated
 * functions against a real HTTP server on loopback.
 *
 * The round-trip test builds, for every struct of every operation of both
 * services, a reply with every member set (from the descriptors themselves),
 * decodes it, encodes the struct again and compares: each member kind's path
 * through the engine is covered for every shape the header declares.  The
 * strictness tests feed one wrong member at a time and check the path named
 * and that a half-filled output is freed (ASan and valgrind watch the leaks).
 * The loopback tests run kms_encrypt, the ListKeys page iterator, a service
 * error and a CloudHSMv2 call through libkms's real runtime (kms_call_json)
 * against libmicrohttpd answering scripted replies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/kms_codec.h"
#include "core/codec.h"
#include "kms/kms_ops.h"
#include "model/model.h"

static const kms_codec_op *find_op(kms_service svc, const char *name) {
  size_t n = 0;
  const kms_codec_op *const *ops = kms_codec_ops(svc, &n);
  for (size_t i = 0; i < n; i++)
    if (strcmp(ops[i]->name, name) == 0) return ops[i];
  fail_msg("no typed operation %s", name);
  return NULL;
}

static int all_zero(const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i]) return 0;
  return 1;
}

/* ------------------------------------------------------- sample replies */

static json_t *sample_struct(const kms_codec_struct *st, unsigned *seed, int depth);

/* A JSON value of the kind `v` describes, different for every seed. */
static json_t *sample_value(const kms_codec_value *v, unsigned *seed, int depth) {
  unsigned s = (*seed)++;
  switch (v->type) {
    case MODEL_STRING:
      return json_sprintf("%s-%u", v->shape, s);
    case MODEL_BLOB: {
      unsigned char bytes[40];
      char text[64];
      size_t n = 1 + s % sizeof bytes;
      for (size_t i = 0; i < n; i++) bytes[i] = (unsigned char)(s * 31 + i * 7);
      b64_encode(bytes, n, text);
      return json_string(text);
    }
    case MODEL_INTEGER:
      return json_integer((json_int_t)(s * 7919u % 100000u) - 500);
    case MODEL_LONG:
      return json_integer(((json_int_t)1 << 40) + s);
    case MODEL_BOOLEAN:
      return json_boolean(s & 1);
    case MODEL_TIMESTAMP:
    case MODEL_DOUBLE:
      /* Whole and fractional seconds: both must come back as they went. */
      return s & 1 ? json_integer(1700000000 + s) : json_real(1700000000.5 + s);
    case MODEL_LIST: {
      json_t *a = json_array();
      for (int i = 0; i < 2; i++) json_array_append_new(a, sample_value(v->item, seed, depth + 1));
      return a;
    }
    case MODEL_MAP: {
      json_t *o = json_object();
      for (int i = 0; i < 2; i++) {
        char key[32];
        snprintf(key, sizeof key, "key-%u-%d", s, i);
        json_object_set_new(o, key, sample_value(v->item, seed, depth + 1));
      }
      return o;
    }
    case MODEL_STRUCTURE:
      return sample_struct(v->fields, seed, depth + 1);
  }
  return NULL;
}

static json_t *sample_struct(const kms_codec_struct *st, unsigned *seed, int depth) {
  json_t *o = json_object();
  assert_true(depth < KMS_CODEC_MAX_DEPTH);
  for (size_t i = 0; i < st->field_count; i++)
    json_object_set_new(o, st->fields[i].wire_name, sample_value(st->fields[i].value, seed, depth));
  return o;
}

/* decode(sample) then encode gives the sample back, for one struct. */
static void round_trip(const kms_codec_struct *st, unsigned *seed) {
  kms_error err;
  json_t *sample = sample_struct(st, seed, 0);
  json_t *again = NULL;
  void *buf = malloc(st->size);
  assert_non_null(buf);
  if (kms_codec_decode(st, sample, buf, &err)) fail_msg("%s: decode: %s", st->shape, err.message);
  if (kms_codec_encode(st, buf, &again, &err)) fail_msg("%s: encode: %s", st->shape, err.message);
  if (!json_equal(sample, again)) {
    char *a = json_dumps(sample, JSON_SORT_KEYS), *b = json_dumps(again, JSON_SORT_KEYS);
    print_error("sent %s\ngot  %s\n", a, b);
    free(a);
    free(b);
    fail_msg("%s does not round-trip", st->shape);
  }
  kms_codec_free(st, buf);
  assert_true(all_zero(buf, st->size));
  free(buf);
  json_decref(sample);
  json_decref(again);
}

static void test_every_struct_round_trips(void **state) {
  (void)state;
  unsigned seed = 1;
  size_t total = 0;
  for (int svc = KMS_SERVICE_KMS; svc <= KMS_SERVICE_CLOUDHSMV2; svc++) {
    size_t n = 0;
    const kms_codec_op *const *ops = kms_codec_ops((kms_service)svc, &n);
    assert_true(n > 0);
    for (size_t i = 0; i < n; i++) {
      round_trip(ops[i]->input, &seed);
      round_trip(ops[i]->output, &seed);
      total += 2;
    }
  }
  /* 54 KMS operations, 7 CloudHSMv2 operations kmsd serves. */
  assert_int_equal(total, 2 * (54 + 7));
}

/* ------------------------------------------------------------ decoding */

static void decode_ok(const kms_codec_op *op, const char *json, void *out) {
  kms_error err;
  json_error_t jerr;
  json_t *j = json_loads(json, 0, &jerr);
  if (!j) fail_msg("bad test JSON %s: %s", json, jerr.text);
  if (kms_codec_decode(op->output, j, out, &err)) fail_msg("%s: %s", json, err.message);
  json_decref(j);
}

static void test_decode_fills_typed_fields(void **state) {
  (void)state;
  kms_describe_key_output out;
  decode_ok(find_op(KMS_SERVICE_KMS, "DescribeKey"),
            "{\"KeyMetadata\": {\"KeyId\": \"k-1\", \"Enabled\": false, \"CreationDate\": 1700000000.25,"
            " \"PendingDeletionWindowInDays\": 7, \"EncryptionAlgorithms\": [\"SYMMETRIC_DEFAULT\", \"NEW_ONE\"],"
            " \"Description\": null, \"FutureMember\": {\"x\": [1, {}]},"
            " \"MultiRegionConfiguration\": {\"MultiRegionKeyType\": \"PRIMARY\","
            "   \"ReplicaKeys\": [{\"Arn\": \"a1\", \"Region\": \"eu-west-1\"}]}}, \"Other\": 1}",
            &out);
  kms_key_metadata *m = out.key_metadata;
  assert_non_null(m);
  assert_string_equal(m->key_id, "k-1");
  assert_int_equal(m->has_enabled, 1);
  assert_int_equal(m->enabled, 0);
  assert_int_equal(m->has_creation_date, 1);
  assert_true(m->creation_date == 1700000000.25);
  assert_int_equal(m->has_pending_deletion_window_in_days, 1);
  assert_int_equal(m->pending_deletion_window_in_days, 7);
  assert_int_equal(m->has_deletion_date, 0);
  assert_null(m->description);  /* null is absent */
  assert_int_equal(m->encryption_algorithms_count, 2);
  assert_string_equal(m->encryption_algorithms[1], "NEW_ONE");  /* enums are open */
  assert_non_null(m->multi_region_configuration);
  assert_int_equal(m->multi_region_configuration->replica_keys_count, 1);
  assert_string_equal(m->multi_region_configuration->replica_keys[0].region, "eu-west-1");
  assert_null(m->multi_region_configuration->primary_key);
  kms_describe_key_output_free(&out);
  assert_null(out.key_metadata);
  kms_describe_key_output_free(NULL);

  kms_cloudhsmv2_describe_clusters_output clusters;
  decode_ok(find_op(KMS_SERVICE_CLOUDHSMV2, "DescribeClusters"),
            "{\"Clusters\": [{\"ClusterId\": \"cluster-1\", \"SubnetMapping\": {\"us-east-1a\": \"subnet-1\"},"
            " \"Hsms\": [{\"HsmId\": \"hsm-1\", \"State\": \"ACTIVE\"}],"
            " \"Certificates\": {\"ClusterCsr\": \"CSR\"}}]}",
            &clusters);
  assert_int_equal(clusters.clusters_count, 1);
  kms_cloudhsmv2_cluster *c = &clusters.clusters[0];
  assert_string_equal(c->cluster_id, "cluster-1");
  assert_int_equal(c->subnet_mapping_count, 1);
  assert_string_equal(c->subnet_mapping[0].key, "us-east-1a");
  assert_string_equal(c->subnet_mapping[0].value, "subnet-1");
  assert_string_equal(c->hsms[0].state, "ACTIVE");
  assert_string_equal(c->certificates->cluster_csr, "CSR");
  assert_null(clusters.next_token);
  kms_cloudhsmv2_describe_clusters_output_free(&clusters);

  /* Blobs are raw bytes; an empty reply object is an empty output. */
  kms_decrypt_output plain;
  decode_ok(find_op(KMS_SERVICE_KMS, "Decrypt"), "{\"Plaintext\": \"AAEC/w==\"}", &plain);
  assert_int_equal(plain.plaintext.len, 4);
  assert_memory_equal(plain.plaintext.data, "\x00\x01\x02\xff", 4);
  kms_decrypt_output_free(&plain);
  assert_null(plain.plaintext.data);
  assert_int_equal(plain.plaintext.len, 0);
  decode_ok(find_op(KMS_SERVICE_KMS, "Decrypt"), "{}", &plain);
  assert_true(all_zero(&plain, sizeof plain));
}

/* One wrong member: KMS_ERR_RESPONSE naming its path, and nothing left in `out`. */
static void expect_bad_reply(kms_service svc, const char *op_name, const char *json, const char *path) {
  const kms_codec_op *op = find_op(svc, op_name);
  kms_error err;
  json_error_t jerr;
  json_t *j = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (!j) fail_msg("bad test JSON %s: %s", json, jerr.text);
  void *out = malloc(op->output->size);
  assert_non_null(out);
  int rc = kms_codec_decode(op->output, j, out, &err);
  if (rc != KMS_ERR_RESPONSE) fail_msg("%s: rc %d, expected KMS_ERR_RESPONSE", json, rc);
  assert_int_equal(err.kind, KMS_ERR_RESPONSE);
  assert_string_equal(err.code, "InvalidResponse");
  if (!strstr(err.message, path)) fail_msg("%s: message \"%s\" does not name %s", json, err.message, path);
  assert_true(all_zero(out, op->output->size));
  free(out);
  json_decref(j);
}

static void test_decode_is_strict(void **state) {
  (void)state;
  expect_bad_reply(KMS_SERVICE_KMS, "DescribeKey", "[]", "not a JSON object");
  expect_bad_reply(KMS_SERVICE_KMS, "DescribeKey", "{\"KeyMetadata\": \"x\"}", "KeyMetadata is not a JSON object");
  expect_bad_reply(KMS_SERVICE_KMS, "DescribeKey", "{\"KeyMetadata\": {\"KeyId\": 5}}",
                   "KeyMetadata.KeyId is not a JSON string");
  expect_bad_reply(KMS_SERVICE_KMS, "DescribeKey", "{\"KeyMetadata\": {\"KeyId\": \"a\", \"Enabled\": \"true\"}}",
                   "KeyMetadata.Enabled is not a JSON boolean");
  expect_bad_reply(KMS_SERVICE_KMS, "DescribeKey",
                   "{\"KeyMetadata\": {\"KeyId\": \"a\", \"CreationDate\": \"2024-01-01\"}}",
                   "KeyMetadata.CreationDate is not a JSON number");
  expect_bad_reply(KMS_SERVICE_KMS, "DescribeKey",
                   "{\"KeyMetadata\": {\"KeyId\": \"a\", \"PendingDeletionWindowInDays\": 1.5}}",
                   "PendingDeletionWindowInDays is not a JSON integer");
  expect_bad_reply(KMS_SERVICE_KMS, "DescribeKey",
                   "{\"KeyMetadata\": {\"KeyId\": \"a\", \"PendingDeletionWindowInDays\": 4294967296}}",
                   "PendingDeletionWindowInDays is out of range");
  expect_bad_reply(KMS_SERVICE_KMS, "DescribeKey",
                   "{\"KeyMetadata\": {\"KeyId\": \"a\", \"EncryptionAlgorithms\": \"SYMMETRIC_DEFAULT\"}}",
                   "EncryptionAlgorithms is not a JSON array");
  /* A failure after allocations: the items already copied are freed. */
  expect_bad_reply(KMS_SERVICE_KMS, "DescribeKey",
                   "{\"KeyMetadata\": {\"KeyId\": \"a\", \"Description\": \"d\","
                   " \"EncryptionAlgorithms\": [\"A\", \"B\", 3]}}",
                   "KeyMetadata.EncryptionAlgorithms[2] is not a JSON string");
  expect_bad_reply(KMS_SERVICE_KMS, "DescribeKey", "{\"KeyMetadata\": {\"KeyId\": \"a\\u0000b\"}}",
                   "KeyMetadata.KeyId holds a NUL character");
  expect_bad_reply(KMS_SERVICE_KMS, "Encrypt", "{\"KeyId\": \"k\", \"CiphertextBlob\": \"not base64!\"}",
                   "CiphertextBlob is not base64");
  expect_bad_reply(KMS_SERVICE_KMS, "Encrypt", "{\"CiphertextBlob\": 12}", "CiphertextBlob is not a JSON string");
  expect_bad_reply(KMS_SERVICE_KMS, "ListGrants",
                   "{\"Grants\": [{\"GrantId\": \"g\", \"Constraints\":"
                   " {\"EncryptionContextSubset\": {\"a\": \"b\", \"c\": 1}}}]}",
                   "Grants[0].Constraints.EncryptionContextSubset[\"c\"] is not a JSON string");
  expect_bad_reply(KMS_SERVICE_KMS, "ListKeys", "{\"Keys\": [], \"Truncated\": 1}", "Truncated is not a JSON boolean");
  expect_bad_reply(KMS_SERVICE_CLOUDHSMV2, "DescribeClusters",
                   "{\"Clusters\": [{\"ClusterId\": \"c\", \"SubnetMapping\": []}]}",
                   "Clusters[0].SubnetMapping is not a JSON object");
  expect_bad_reply(KMS_SERVICE_CLOUDHSMV2, "DescribeClusters",
                   "{\"Clusters\": [{\"ClusterId\": \"c\", \"Hsms\": [{\"HsmId\": \"h\"}, 7]}]}",
                   "Clusters[0].Hsms[1] is not a JSON object");
}

/* Server-supplied map keys reach messages with control characters blanked. */
static void test_decode_messages_blank_control_characters(void **state) {
  (void)state;
  const kms_codec_op *op = find_op(KMS_SERVICE_KMS, "ListGrants");
  json_t *j = json_loads("{\"Grants\": [{\"GrantId\": \"g\", \"Constraints\":"
                         " {\"EncryptionContextSubset\": {\"c\\u001b[31m\\n\": 1}}}]}", 0, NULL);
  kms_list_grants_output out;
  kms_error err;
  assert_non_null(j);
  assert_int_equal(kms_codec_decode(op->output, j, &out, &err), KMS_ERR_RESPONSE);
  assert_null(strchr(err.message, 0x1b));
  assert_null(strchr(err.message, '\n'));
  assert_non_null(strstr(err.message, "EncryptionContextSubset[\"c [31m \"] is not a JSON string"));
  json_decref(j);
}

/* Lists and maps in replies hold at most 10,000 items: a reply's tree costs
 * many times its size, so the bound keeps a hostile reply's cost small. */
static void test_decode_bounds_at_ten_thousand(void **state) {
  (void)state;
  const kms_codec_op *op = find_op(KMS_SERVICE_KMS, "ListKeys");
  kms_list_keys_output out;
  kms_error err;
  json_t *keys = json_array();
  for (unsigned i = 0; i < 10000; i++) json_array_append_new(keys, json_pack("{s:s}", "KeyId", "k"));
  json_t *reply = json_pack("{s:o}", "Keys", keys);
  assert_int_equal(kms_codec_decode(op->output, reply, &out, &err), KMS_OK);
  assert_int_equal(out.keys_count, 10000);
  kms_list_keys_output_free(&out);
  json_array_append_new(keys, json_pack("{s:s}", "KeyId", "k"));
  assert_int_equal(kms_codec_decode(op->output, reply, &out, &err), KMS_ERR_RESPONSE);
  assert_non_null(strstr(err.message, "Keys has too many items"));
  json_decref(reply);
}

static void test_decode_bounds_item_counts(void **state) {
  (void)state;
  const kms_codec_op *op = find_op(KMS_SERVICE_KMS, "ListKeys");
  json_t *keys = json_array();
  for (unsigned i = 0; i <= KMS_CODEC_MAX_ITEMS; i++) json_array_append_new(keys, json_null());
  json_t *reply = json_pack("{s:o}", "Keys", keys);
  kms_list_keys_output out;
  kms_error err;
  assert_int_equal(kms_codec_decode(op->output, reply, &out, &err), KMS_ERR_RESPONSE);
  assert_non_null(strstr(err.message, "Keys has too many items"));
  assert_true(all_zero(&out, sizeof out));
  json_decref(reply);
}

/* ------------------------------------------------------------ encoding */

static json_t *encode(kms_service svc, const char *op_name, const void *in) {
  kms_error err;
  json_t *j = NULL;
  if (kms_codec_encode(find_op(svc, op_name)->input, in, &j, &err)) fail_msg("%s: %s", op_name, err.message);
  return j;
}

static void assert_json(json_t *got, const char *want) {
  json_t *w = json_loads(want, 0, NULL);
  assert_non_null(w);
  if (!json_equal(got, w)) {
    char *g = json_dumps(got, JSON_SORT_KEYS);
    print_error("got  %s\nwant %s\n", g, want);
    free(g);
    fail();
  }
  json_decref(w);
  json_decref(got);
}

static void test_encode_sends_present_members(void **state) {
  (void)state;
  kms_encrypt_input in = {0};
  kms_string_pair_in context[] = {{"purpose", "test"}, {"tenant", "t1"}};
  const char *tokens[] = {"grant-token"};
  in.key_id = "alias/app";
  in.plaintext.data = (const unsigned char *)"hello";
  in.plaintext.len = 5;
  in.encryption_context = context;
  in.encryption_context_count = 2;
  in.grant_tokens = tokens;
  in.grant_tokens_count = 1;
  in.has_dry_run = 1;
  in.dry_run = 0;  /* present and false: sent */
  assert_json(encode(KMS_SERVICE_KMS, "Encrypt", &in),
              "{\"KeyId\": \"alias/app\", \"Plaintext\": \"aGVsbG8=\","
              " \"EncryptionContext\": {\"purpose\": \"test\", \"tenant\": \"t1\"},"
              " \"GrantTokens\": [\"grant-token\"], \"DryRun\": false}");

  /* An empty list (non-NULL pointer, count 0) is sent; a NULL one is not. */
  kms_list_keys_input list = {0};
  assert_json(encode(KMS_SERVICE_KMS, "ListKeys", &list), "{}");
  list.has_limit = 1;
  list.limit = 1;
  list.marker = "m";
  assert_json(encode(KMS_SERVICE_KMS, "ListKeys", &list), "{\"Limit\": 1, \"Marker\": \"m\"}");
  kms_encrypt_input empty_tokens = in;
  empty_tokens.grant_tokens_count = 0;
  empty_tokens.encryption_context = NULL;
  empty_tokens.has_dry_run = 0;
  empty_tokens.plaintext.data = (const unsigned char *)"";
  empty_tokens.plaintext.len = 0;
  assert_json(encode(KMS_SERVICE_KMS, "Encrypt", &empty_tokens),
              "{\"KeyId\": \"alias/app\", \"Plaintext\": \"\", \"GrantTokens\": []}");

  /* Nested structures, lists of structures, maps of lists. */
  kms_tag_in tags[] = {{"team", "core"}, {"env", "dev"}};
  kms_create_key_input ck = {0};
  ck.description = "d";
  ck.tags = tags;
  ck.tags_count = 2;
  ck.has_multi_region = 1;
  ck.multi_region = 1;
  assert_json(encode(KMS_SERVICE_KMS, "CreateKey", &ck),
              "{\"Description\": \"d\", \"MultiRegion\": true, \"Tags\": [{\"TagKey\": \"team\", \"TagValue\": \"core\"},"
              " {\"TagKey\": \"env\", \"TagValue\": \"dev\"}]}");
  const char *ops[] = {"Encrypt", "Decrypt"};
  kms_string_pair_in subset[] = {{"a", "b"}};
  kms_grant_constraints_in constraints = {0};
  constraints.encryption_context_subset = subset;
  constraints.encryption_context_subset_count = 1;
  kms_create_grant_input grant = {0};
  grant.key_id = "k";
  grant.grantee_principal = "arn:aws:iam::111122223333:root";
  grant.operations = ops;
  grant.operations_count = 2;
  grant.constraints = &constraints;
  assert_json(encode(KMS_SERVICE_KMS, "CreateGrant", &grant),
              "{\"KeyId\": \"k\", \"GranteePrincipal\": \"arn:aws:iam::111122223333:root\","
              " \"Operations\": [\"Encrypt\", \"Decrypt\"],"
              " \"Constraints\": {\"EncryptionContextSubset\": {\"a\": \"b\"}}}");
  const char *states[] = {"READY", "CREATE_IN_PROGRESS"};
  kms_cloudhsmv2_filters_entry_in filters[] = {{"states", states, 2}};
  kms_cloudhsmv2_describe_backups_input backups = {0};
  backups.filters = filters;
  backups.filters_count = 1;
  backups.has_max_results = 1;
  backups.max_results = 5;
  assert_json(encode(KMS_SERVICE_CLOUDHSMV2, "DescribeBackups", &backups),
              "{\"Filters\": {\"states\": [\"READY\", \"CREATE_IN_PROGRESS\"]}, \"MaxResults\": 5}");
}

static void expect_bad_input(kms_service svc, const char *op_name, const void *in, const char *text) {
  kms_error err;
  json_t *j = (json_t *)1;
  int rc = kms_codec_encode(find_op(svc, op_name)->input, in, &j, &err);
  if (rc != KMS_ERR_PARAM) fail_msg("%s: rc %d, expected KMS_ERR_PARAM", op_name, rc);
  assert_int_equal(err.kind, KMS_ERR_PARAM);
  assert_string_equal(err.code, "InvalidParameter");
  assert_null(j);
  if (!strstr(err.message, text)) fail_msg("%s: message \"%s\" lacks \"%s\"", op_name, err.message, text);
  assert_null(strstr(err.message, "secret"));  /* values never reach a message */
}

static void test_encode_checks_required_members(void **state) {
  (void)state;
  kms_encrypt_input in = {0};
  expect_bad_input(KMS_SERVICE_KMS, "Encrypt", &in, "missing required input member KeyId");
  in.key_id = "k";
  expect_bad_input(KMS_SERVICE_KMS, "Encrypt", &in, "missing required input member Plaintext");
  in.plaintext.data = (const unsigned char *)"secret";
  in.plaintext.len = 6;
  const char *tokens[] = {"t", NULL};
  in.grant_tokens = tokens;
  in.grant_tokens_count = 2;
  expect_bad_input(KMS_SERVICE_KMS, "Encrypt", &in, "GrantTokens[1] is NULL");
  in.grant_tokens_count = 1;
  kms_string_pair_in bad_utf8[] = {{"k", "secret\xff"}};
  in.encryption_context = bad_utf8;
  in.encryption_context_count = 1;
  expect_bad_input(KMS_SERVICE_KMS, "Encrypt", &in, "EncryptionContext[0] is not valid UTF-8");

  kms_tag_in tags[] = {{"a", "1"}, {"b", NULL}};
  kms_create_key_input ck = {0};
  ck.tags = tags;
  ck.tags_count = 2;
  expect_bad_input(KMS_SERVICE_KMS, "CreateKey", &ck, "missing required input member Tags[1].TagValue");

  kms_cloudhsmv2_create_hsm_input hsm = {0};
  hsm.cluster_id = "cluster-1";
  expect_bad_input(KMS_SERVICE_CLOUDHSMV2, "CreateHsm", &hsm, "missing required input member AvailabilityZone");
}

/* A NULL item pointer with a count, inside a map's list value, is the
 * caller's mistake: refused, never followed. */
static void test_encode_refuses_null_items(void **state) {
  (void)state;
  kms_cloudhsmv2_filters_entry_in filters[] = {{"states", NULL, 2}};
  kms_cloudhsmv2_describe_backups_input backups = {0};
  backups.filters = filters;
  backups.filters_count = 1;
  expect_bad_input(KMS_SERVICE_CLOUDHSMV2, "DescribeBackups", &backups, "Filters[0] is NULL");
  kms_string_pair_in *no_pairs = NULL;
  kms_grant_constraints_in constraints = {0};
  constraints.encryption_context_subset = no_pairs;
  constraints.encryption_context_subset_count = 3;
  const char *ops[] = {"Encrypt"};
  kms_create_grant_input grant = {0};
  grant.key_id = "k";
  grant.grantee_principal = "p";
  grant.operations = ops;
  grant.operations_count = 1;
  grant.constraints = &constraints;
  /* A NULL map with a count is absent, as the header says; with pairs, each is checked. */
  kms_error err;
  json_t *j = NULL;
  assert_int_equal(kms_codec_encode(find_op(KMS_SERVICE_KMS, "CreateGrant")->input, &grant, &j, &err), KMS_OK);
  json_decref(j);
}

static void test_json_wipe_zeroes_values(void **state) {
  (void)state;
  json_t *j = json_pack("{s:s, s:[s, {s:s}]}", "Plaintext", "c2VjcmV0", "List", "secret", "K", "also");
  const char *a = json_string_value(json_object_get(j, "Plaintext"));
  json_t *list = json_object_get(j, "List");
  const char *b = json_string_value(json_array_get(list, 0));
  const char *c = json_string_value(json_object_get(json_array_get(list, 1), "K"));
  kms_codec_json_wipe(j);
  assert_true(all_zero(a, 8));
  assert_true(all_zero(b, 6));
  assert_true(all_zero(c, 4));
  json_decref(j);
}

/* Every paginator the model tables carry names members the model has. */
static void test_model_paginators(void **state) {
  (void)state;
  const model_op *op = model_find_op(&model_kms, "ListKeys");
  assert_non_null(op->paginator);
  assert_string_equal(op->paginator->input_token, "Marker");
  assert_string_equal(op->paginator->output_token, "NextMarker");
  assert_string_equal(op->paginator->more_results, "Truncated");
  assert_string_equal(op->paginator->limit_key, "Limit");
  assert_int_equal(op->paginator->result_key_count, 1);
  assert_string_equal(op->paginator->result_keys[0], "Keys");
  assert_null(model_find_op(&model_kms, "Encrypt")->paginator);
  assert_null(model_find_op(&model_cloudhsmv2, "DescribeClusters")->paginator->more_results);
  const model_service *svcs[] = {&model_kms, &model_cloudhsmv2};
  size_t paging = 0;
  for (size_t s = 0; s < 2; s++) {
    for (size_t i = 0; i < svcs[s]->op_count; i++) {
      const model_op *o = &svcs[s]->ops[i];
      const model_paginator *p = o->paginator;
      if (!p) continue;
      paging++;
      assert_non_null(model_find_member(o->input, p->input_token));
      assert_non_null(model_find_member(o->output, p->output_token));
      if (p->limit_key) assert_non_null(model_find_member(o->input, p->limit_key));
      if (p->more_results)
        assert_int_equal(model_find_member(o->output, p->more_results)->shape->type, MODEL_BOOLEAN);
      for (size_t k = 0; k < p->result_key_count; k++)
        assert_int_equal(model_find_member(o->output, p->result_keys[k])->shape->type, MODEL_LIST);
    }
  }
  assert_int_equal(paging, 8 + 3);
}

/* ------------------------------------------------------------- loopback */

/* A server on 127.0.0.1 that records each request and answers from a script. */
typedef struct loopback {
  struct MHD_Daemon *daemon;
  unsigned short port;
  pthread_mutex_t lock;
  int requests;
  char target[128];      /* X-Amz-Target of the last request */
  json_t *bodies;        /* every request body, parsed */
  /* Decides the reply of a request: fills status and body (malloc'd). */
  void (*answer)(struct loopback *lb, const char *target, json_t *body, int *status, char **reply);
} loopback;

typedef struct upload {
  char *data;
  size_t len;
} upload;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *data, size_t *data_size, void **con_cls) {
  loopback *lb = cls;
  upload *up = *con_cls;
  (void)url, (void)method, (void)version;
  if (!up) {
    *con_cls = calloc(1, sizeof(upload));
    return *con_cls ? MHD_YES : MHD_NO;
  }
  if (*data_size) {
    char *grown = realloc(up->data, up->len + *data_size + 1);
    if (!grown) return MHD_NO;
    memcpy(grown + up->len, data, *data_size);
    up->data = grown;
    up->len += *data_size;
    up->data[up->len] = '\0';
    *data_size = 0;
    return MHD_YES;
  }
  const char *target = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Amz-Target");
  json_t *body = up->data ? json_loadb(up->data, up->len, 0, NULL) : NULL;
  int status = 500;
  char *reply = NULL;
  pthread_mutex_lock(&lb->lock);
  lb->requests++;
  snprintf(lb->target, sizeof lb->target, "%s", target ? target : "");
  json_array_append(lb->bodies, body ? body : json_null());
  lb->answer(lb, lb->target, body, &status, &reply);
  pthread_mutex_unlock(&lb->lock);
  json_decref(body);
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(strlen(reply), reply, MHD_RESPMEM_MUST_FREE);
  MHD_add_response_header(resp, "Content-Type", "application/x-amz-json-1.1");
  MHD_add_response_header(resp, "x-amzn-RequestId", "req-loopback");
  enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, resp);
  MHD_destroy_response(resp);
  return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode t) {
  upload *up = *con_cls;
  (void)cls, (void)conn, (void)t;
  if (up) free(up->data);
  free(up);
  *con_cls = NULL;
}

static void loopback_start(loopback *lb) {
  lb->bodies = json_array();
  pthread_mutex_init(&lb->lock, NULL);
  lb->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_request, lb,
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
  assert_non_null(lb->daemon);
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(lb->daemon, MHD_DAEMON_INFO_BIND_PORT);
  lb->port = info->port;
}

static void loopback_stop(loopback *lb) {
  MHD_stop_daemon(lb->daemon);
  pthread_mutex_destroy(&lb->lock);
  json_decref(lb->bodies);
}

static kms_client *loopback_client(loopback *lb, kms_service svc) {
  char url[64];
  kms_client_options o = {0};
  kms_client *c = NULL;
  kms_error err;
  snprintf(url, sizeof url, "http://127.0.0.1:%u", lb->port);
  o.endpoint_url = url;
  o.region = "us-east-1";
  o.no_sign_request = 1;
  o.max_attempts = 1;
  if (kms_client_new(svc, &o, &c, &err)) fail_msg("kms_client_new: %s", err.message);
  return c;
}

static void answer_crypto(loopback *lb, const char *target, json_t *body, int *status, char **reply) {
  (void)lb;
  *status = 200;
  if (strcmp(target, "TrentService.Encrypt") == 0) {
    *reply = strdup("{\"CiphertextBlob\": \"AQID\", \"KeyId\": \"arn:aws:kms:us-east-1:111122223333:key/k\","
                    " \"EncryptionAlgorithm\": \"SYMMETRIC_DEFAULT\"}");
  } else if (strcmp(target, "TrentService.DescribeKey") == 0) {
    *status = 400;
    *reply = strdup("{\"__type\": \"NotFoundException\", \"message\": \"Key 'nope' does not exist\"}");
  } else if (strcmp(target, "TrentService.ScheduleKeyDeletion") == 0) {
    *reply = strdup("{\"KeyId\": 17}");  /* the wrong type */
  } else if (strcmp(target, "TrentService.Decrypt") == 0) {
    *reply = strdup("{\"Plaintext\": SecretPlainBytes0123456789}");  /* not JSON */
  } else if (strcmp(target, "BaldrApiService.DescribeClusters") == 0) {
    *reply = strdup("{\"Clusters\": [{\"ClusterId\": \"cluster-abc\", \"State\": \"ACTIVE\"}]}");
  } else {
    *status = 400;
    *reply = strdup("{\"__type\": \"UnknownOperationException\"}");
  }
  (void)body;
}

static void test_loopback_calls(void **state) {
  (void)state;
  loopback lb = {.answer = answer_crypto};
  loopback_start(&lb);
  kms_client *c = loopback_client(&lb, KMS_SERVICE_KMS);
  kms_error err;

  kms_encrypt_input in = {0};
  kms_encrypt_output out;
  in.key_id = "alias/app";
  in.plaintext.data = (const unsigned char *)"hi";
  in.plaintext.len = 2;
  assert_int_equal(kms_encrypt(c, &in, &out, &err), 0);
  assert_string_equal(lb.target, "TrentService.Encrypt");
  assert_json(json_incref(json_array_get(lb.bodies, 0)), "{\"KeyId\": \"alias/app\", \"Plaintext\": \"aGk=\"}");
  assert_int_equal(out.ciphertext_blob.len, 3);
  assert_memory_equal(out.ciphertext_blob.data, "\x01\x02\x03", 3);
  assert_string_equal(out.encryption_algorithm, "SYMMETRIC_DEFAULT");
  kms_encrypt_output_free(&out);

  /* A missing required member: nothing is sent. */
  kms_encrypt_input missing = {0};
  assert_int_equal(kms_encrypt(c, &missing, &out, &err), KMS_ERR_PARAM);
  assert_int_equal(lb.requests, 1);
  assert_true(all_zero(&out, sizeof out));

  /* The service's error reaches kms_error; the output stays empty. */
  kms_describe_key_input dk = {0};
  kms_describe_key_output dko;
  dk.key_id = "nope";
  assert_int_equal(kms_describe_key(c, &dk, &dko, &err), KMS_ERR_SERVICE);
  assert_string_equal(err.code, "NotFoundException");
  assert_int_equal(err.http_status, 400);
  assert_non_null(strstr(err.message, "does not exist"));
  assert_null(dko.key_metadata);

  /* A reply of the wrong shape. */
  kms_schedule_key_deletion_input sk = {0};
  kms_schedule_key_deletion_output sko;
  sk.key_id = "k";
  assert_int_equal(kms_schedule_key_deletion(c, &sk, &sko, &err), KMS_ERR_RESPONSE);
  assert_non_null(strstr(err.message, "KeyId is not a JSON string"));
  assert_string_equal(err.code, "InvalidResponse");

  /* A reply that is not JSON: where it breaks, not what it holds. */
  kms_decrypt_input de = {0};
  kms_decrypt_output deo;
  de.ciphertext_blob.data = (const unsigned char *)"c";
  de.ciphertext_blob.len = 1;
  assert_int_equal(kms_decrypt(c, &de, &deo, &err), KMS_ERR_RESPONSE);
  assert_string_equal(err.code, "InvalidResponse");
  assert_null(strstr(err.message, "Secret"));
  assert_null(strstr(err.message, "Bytes"));
  assert_non_null(strstr(err.message, "line 1"));
  kms_client_free(c);

  /* A KMS operation on a CloudHSMv2 client: refused before sending. */
  int sent = lb.requests;
  kms_client *wrong = loopback_client(&lb, KMS_SERVICE_CLOUDHSMV2);
  assert_int_equal(kms_encrypt(wrong, &in, &out, &err), KMS_ERR_PARAM);
  assert_string_equal(err.code, "InvalidParameter");
  assert_int_equal(lb.requests, sent);
  kms_client_free(wrong);
  wrong = loopback_client(&lb, KMS_SERVICE_KMS);
  kms_cloudhsmv2_describe_clusters_input dc0 = {0};
  kms_cloudhsmv2_describe_clusters_output dco0;
  assert_int_equal(kms_cloudhsmv2_describe_clusters(wrong, &dc0, &dco0, &err), KMS_ERR_PARAM);
  assert_int_equal(lb.requests, sent);
  kms_client_free(wrong);

  kms_client *hsm = loopback_client(&lb, KMS_SERVICE_CLOUDHSMV2);
  kms_cloudhsmv2_describe_clusters_input dc = {0};
  kms_cloudhsmv2_describe_clusters_output dco;
  assert_int_equal(kms_cloudhsmv2_describe_clusters(hsm, &dc, &dco, &err), 0);
  assert_string_equal(lb.target, "BaldrApiService.DescribeClusters");
  assert_int_equal(dco.clusters_count, 1);
  assert_string_equal(dco.clusters[0].cluster_id, "cluster-abc");
  kms_cloudhsmv2_describe_clusters_output_free(&dco);
  kms_client_free(hsm);
  loopback_stop(&lb);
}

/* ListKeys over three pages: the marker of each reply is the next request's. */
static void answer_pages(loopback *lb, const char *target, json_t *body, int *status, char **reply) {
  (void)lb, (void)target;
  const char *marker = json_string_value(json_object_get(body, "Marker"));
  *status = 200;
  if (!marker)
    *reply = strdup("{\"Keys\": [{\"KeyId\": \"k1\"}], \"NextMarker\": \"m1\", \"Truncated\": true}");
  else if (strcmp(marker, "m1") == 0)
    *reply = strdup("{\"Keys\": [{\"KeyId\": \"k2\"}, {\"KeyId\": \"k3\"}], \"NextMarker\": \"m2\", \"Truncated\": true}");
  else if (strcmp(marker, "m2") == 0)
    *reply = strdup("{\"Keys\": [{\"KeyId\": \"k4\"}], \"Truncated\": false}");
  else if (strcmp(marker, "A") == 0)
    *reply = strdup("{\"Keys\": [], \"NextMarker\": \"B\", \"Truncated\": true}");
  else if (strcmp(marker, "B") == 0)
    *reply = strdup("{\"Keys\": [], \"NextMarker\": \"A\", \"Truncated\": true}");
  else
    *reply = strdup("{\"Keys\": [], \"NextMarker\": \"loop\", \"Truncated\": true}");
}

static void test_loopback_paginator(void **state) {
  (void)state;
  loopback lb = {.answer = answer_pages};
  loopback_start(&lb);
  kms_client *c = loopback_client(&lb, KMS_SERVICE_KMS);
  kms_error err;
  kms_list_keys_input in = {0};
  in.has_limit = 1;
  in.limit = 2;
  kms_list_keys_paginator *p = NULL;
  assert_int_equal(kms_list_keys_paginate(c, &in, &p, &err), 0);
  in.limit = 99;  /* the paginator copied the input */
  kms_list_keys_output page;
  char seen[64] = "";
  int rc, pages = 0;
  while ((rc = kms_list_keys_next_page(p, &page, &err)) == 1) {
    pages++;
    for (size_t i = 0; i < page.keys_count; i++) strcat(seen, page.keys[i].key_id);
    kms_list_keys_output_free(&page);
  }
  assert_int_equal(rc, 0);
  assert_int_equal(pages, 3);
  assert_string_equal(seen, "k1k2k3k4");
  assert_int_equal(kms_list_keys_next_page(p, &page, &err), 0);  /* stays finished */
  kms_list_keys_paginator_free(p);
  assert_int_equal(lb.requests, 3);
  assert_json(json_incref(json_array_get(lb.bodies, 0)), "{\"Limit\": 2}");
  assert_json(json_incref(json_array_get(lb.bodies, 2)), "{\"Limit\": 2, \"Marker\": \"m2\"}");

  /* A token in the input resumes there; a repeated token ends with an error. */
  in.marker = "stuck";
  assert_int_equal(kms_list_keys_paginate(c, &in, &p, &err), 0);
  assert_int_equal(kms_list_keys_next_page(p, &page, &err), 1);
  kms_list_keys_output_free(&page);
  assert_int_equal(kms_list_keys_next_page(p, &page, &err), -1);
  assert_int_equal(err.kind, KMS_ERR_RESPONSE);
  assert_non_null(strstr(err.message, "a page token it returned before"));
  assert_true(all_zero(&page, sizeof page));
  assert_int_equal(kms_list_keys_next_page(p, &page, &err), 0);
  kms_list_keys_paginator_free(p);
  kms_list_keys_paginator_free(NULL);

  /* A -> B -> A: a token seen before, not only the last one, ends the listing. */
  in.marker = "A";
  assert_int_equal(kms_list_keys_paginate(c, &in, &p, &err), 0);
  pages = 0;
  while ((rc = kms_list_keys_next_page(p, &page, &err)) == 1) {
    kms_list_keys_output_free(&page);
    if (++pages > 10) fail_msg("the A -> B -> A loop was followed %d times", pages);
  }
  assert_int_equal(rc, -1);
  assert_int_equal(pages, 1);  /* A's page (next: B); B's page leads back to A */
  assert_int_equal(err.kind, KMS_ERR_RESPONSE);
  assert_string_equal(err.code, "PaginationError");
  assert_non_null(strstr(err.message, "a page token it returned before"));
  kms_list_keys_paginator_free(p);

  assert_int_equal(kms_list_keys_paginate(c, &in, NULL, &err), KMS_ERR_PARAM);
  kms_client_free(c);
  loopback_stop(&lb);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_struct_round_trips),
      cmocka_unit_test(test_decode_fills_typed_fields),
      cmocka_unit_test(test_decode_is_strict),
      cmocka_unit_test(test_decode_bounds_item_counts),
      cmocka_unit_test(test_decode_bounds_at_ten_thousand),
      cmocka_unit_test(test_decode_messages_blank_control_characters),
      cmocka_unit_test(test_encode_refuses_null_items),
      cmocka_unit_test(test_encode_sends_present_members),
      cmocka_unit_test(test_encode_checks_required_members),
      cmocka_unit_test(test_json_wipe_zeroes_values),
      cmocka_unit_test(test_model_paginators),
      cmocka_unit_test(test_loopback_calls),
      cmocka_unit_test(test_loopback_paginator),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
