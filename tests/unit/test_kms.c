/* test_kms.c - the KMS domain end to end below the protocol layer: every
 * operation's success and error paths on a real data directory (SQLite file,
 * root key, OpenSSL), deletion and rotation driven by the movable clock,
 * authorization denials, and a close/reopen that keeps everything. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "aws/policy.h"
#include "core/kclock.h"
#include "crypto/rootkey.h"
#include "kms/kms_domain.h"

#define ACCT "111122223333"
#define ACCT_B "444455556666"
#define REGION "us-east-1"
#define DAY_MS (86400LL * 1000)

static char dir[64];
static kms_domain *dom;
static principal root_a, root_b, user_nopolicy, user_full;
static iam_policy *allow_all;
static kms_call call_a, call_b, call_nopolicy, call_user;

static void make_principal(principal *p, const char *account, const char *arn, bool root,
                           const iam_policy *policy) {
  memset(p, 0, sizeof *p);
  snprintf(p->access_key_id, sizeof p->access_key_id, "AKIA%s", account);
  snprintf(p->account_id, sizeof p->account_id, "%s", account);
  snprintf(p->arn, sizeof p->arn, "%s", arn);
  p->is_root = root;
  p->identity_policy = policy;
}

static void open_domain(void) {
  kms_domain_config cfg = {.data_dir = dir, .sweep_interval_ms = -1};
  kerr err;
  if (kms_domain_open(&cfg, &dom, &err) != KERR_OK) fail_msg("open: %s", err.msg);
}

static int setup(void **state) {
  kerr err;
  static const char all[] =
      "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\"}]}";
  snprintf(dir, sizeof dir, "/tmp/kmsd-test-kms-XXXXXX");
  if (!mkdtemp(dir)) return -1;
  if (!allow_all && iam_policy_parse(all, strlen(all), IAM_POLICY_IDENTITY, &allow_all, &err) != KERR_OK)
    return -1;
  make_principal(&root_a, ACCT, "arn:aws:iam::" ACCT ":root", true, NULL);
  make_principal(&root_b, ACCT_B, "arn:aws:iam::" ACCT_B ":root", true, NULL);
  make_principal(&user_nopolicy, ACCT, "arn:aws:iam::" ACCT ":user/nobody", false, NULL);
  make_principal(&user_full, ACCT, "arn:aws:iam::" ACCT ":user/alice", false, allow_all);
  call_a = (kms_call){&root_a, REGION, "req-a", false, NULL};
  call_b = (kms_call){&root_b, REGION, "req-b", false, NULL};
  call_nopolicy = (kms_call){&user_nopolicy, REGION, "req-n", false, NULL};
  call_user = (kms_call){&user_full, REGION, "req-u", false, NULL};
  kclock_set_offset_ms(0);
  open_domain();
  return 0;
}

static int teardown(void **state) {
  char cmd[160];
  kms_domain_close(dom);
  dom = NULL;
  kclock_set_offset_ms(0);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

#define OK(expr)                                                    \
  do {                                                              \
    kerr e_;                                                        \
    kerr_clear(&e_);                                                \
    kerr_code rc_ = (expr);                                         \
    if (rc_ != KERR_OK) fail_msg("%s -> %d: %s", #expr, rc_, e_.msg); \
  } while (0)

/* `err` must be named `e_` inside expr for OK(); other checks use `err`. */
static void create_key(const kms_call *c, kms_key_metadata *md) {
  kms_create_key_input in = {0};
  kerr e_;
  kerr_code rc = kms_op_create_key(dom, c, &in, md, &e_);
  if (rc) fail_msg("create: %s", e_.msg);
}

static void encrypt(const char *key, const char *msg, const kms_pair *ctx, size_t nctx,
                    kms_encrypt_output *out) {
  kms_encrypt_input in = {.key_id = key, .plaintext = (const uint8_t *)msg,
                          .plaintext_len = strlen(msg), .context = ctx, .ncontext = nctx};
  kerr e_;
  if (kms_op_encrypt(dom, &call_a, &in, out, &e_) != KERR_OK) fail_msg("encrypt: %s", e_.msg);
}

static kerr_code decrypt(const kms_call *c, const uint8_t *ct, size_t len, const char *key,
                         const kms_pair *ctx, size_t nctx, kms_decrypt_output *out, kerr *err) {
  kms_decrypt_input in = {.ciphertext = ct, .ciphertext_len = len, .key_id = key,
                          .context = ctx, .ncontext = nctx};
  return kms_op_decrypt(dom, c, &in, out, err);
}

/* ------------------------------------------------------------------ keys */

static void test_create_describe_list(void **state) {
  kms_key_metadata md, md2;
  kerr err;
  create_key(&call_a, &md);
  assert_string_equal(md.aws_account_id, ACCT);
  assert_string_equal(md.key_state, "Enabled");
  assert_true(md.enabled);
  assert_string_equal(md.key_usage, "ENCRYPT_DECRYPT");
  assert_string_equal(md.key_spec, "SYMMETRIC_DEFAULT");
  assert_string_equal(md.origin, "AWS_KMS");
  assert_string_equal(md.key_manager, "CUSTOMER");
  assert_string_equal(md.description, "");
  assert_int_equal(strlen(md.current_key_material_id), 64);
  char arn[KMS_ARN_MAX];
  snprintf(arn, sizeof arn, "arn:aws:kms:" REGION ":" ACCT ":key/%s", md.key_id);
  assert_string_equal(md.arn, arn);

  /* by id and by ARN */
  OK(kms_op_describe_key(dom, &call_a, md.key_id, &md2, &e_));
  assert_string_equal(md2.arn, md.arn);
  kms_key_metadata_clear(&md2);
  OK(kms_op_describe_key(dom, &call_a, md.arn, &md2, &e_));
  kms_key_metadata_clear(&md2);

  /* unknown, malformed */
  assert_int_equal(kms_op_describe_key(dom, &call_a, "00000000-0000-4000-8000-000000000000", &md2, &err), KERR_NOT_FOUND);
  assert_string_equal(err.msg, "Key 'arn:aws:kms:us-east-1:111122223333:key/00000000-0000-4000-8000-000000000000' does not exist");
  assert_int_equal(kms_op_describe_key(dom, &call_a, "arn:aws:kms:bogus", &md2, &err), KERR_INVALID_ARN);
  assert_int_equal(kms_op_describe_key(dom, &call_a, "alias/none", &md2, &err), KERR_NOT_FOUND);
  assert_string_equal(err.msg, "Alias 'arn:aws:kms:us-east-1:111122223333:alias/none' is not found.");
  /* another region does not see it */
  kms_call other_region = {&root_a, "eu-west-1", "r", false, NULL};
  assert_int_equal(kms_op_describe_key(dom, &other_region, md.key_id, &md2, &err), KERR_NOT_FOUND);

  /* options */
  kms_create_key_input in = {.description = "hello", .key_spec = "SYMMETRIC_DEFAULT"};
  OK(kms_op_create_key(dom, &call_a, &in, &md2, &e_));
  assert_string_equal(md2.description, "hello");
  kms_key_metadata_clear(&md2);
  in = (kms_create_key_input){.key_spec = "RSA_2048"};
  assert_int_equal(kms_op_create_key(dom, &call_a, &in, &md2, &err), KERR_UNSUPPORTED_OPERATION);
  in = (kms_create_key_input){.key_spec = "SYMMETRIC_DEFAULT", .customer_master_key_spec = "SYMMETRIC_DEFAULT"};
  assert_int_equal(kms_op_create_key(dom, &call_a, &in, &md2, &err), KERR_VALIDATION);
  in = (kms_create_key_input){.key_usage = "SIGN_VERIFY"};
  assert_int_equal(kms_op_create_key(dom, &call_a, &in, &md2, &err), KERR_UNSUPPORTED_OPERATION);
  in = (kms_create_key_input){.origin = "EXTERNAL"};
  assert_int_equal(kms_op_create_key(dom, &call_a, &in, &md2, &err), KERR_UNSUPPORTED_OPERATION);
  in = (kms_create_key_input){.multi_region = true};
  assert_int_equal(kms_op_create_key(dom, &call_a, &in, &md2, &err), KERR_UNSUPPORTED_OPERATION);
  in = (kms_create_key_input){.policy = "{not json"};
  assert_int_equal(kms_op_create_key(dom, &call_a, &in, &md2, &err), KERR_MALFORMED_POLICY);
  kms_pair bad_tag[] = {{"aws:x", "y"}};
  in = (kms_create_key_input){.tags = bad_tag, .ntags = 1};
  assert_int_equal(kms_op_create_key(dom, &call_a, &in, &md2, &err), KERR_TAG);

  /* ListKeys: paginate 2 keys with limit 1; bad marker */
  kms_list_input li = {.limit = 1};
  kms_list_keys_output lo;
  OK(kms_op_list_keys(dom, &call_a, &li, &lo, &e_));
  assert_int_equal(lo.nkeys, 1);
  assert_true(lo.truncated);
  assert_non_null(lo.next_marker);
  kms_list_keys_output lo2;
  li.marker = lo.next_marker;
  OK(kms_op_list_keys(dom, &call_a, &li, &lo2, &e_));
  assert_int_equal(lo2.nkeys, 1);
  assert_false(lo2.truncated);
  assert_string_not_equal(lo.keys[0].key_id, lo2.keys[0].key_id);
  kms_list_keys_output_clear(&lo);
  kms_list_keys_output_clear(&lo2);
  li = (kms_list_input){.marker = "garbage!"};
  assert_int_equal(kms_op_list_keys(dom, &call_a, &li, &lo, &err), KERR_INVALID_MARKER);
  li = (kms_list_input){.limit = 1001};
  assert_int_equal(kms_op_list_keys(dom, &call_a, &li, &lo, &err), KERR_VALIDATION);
  /* account B sees none of A's keys */
  OK(kms_op_list_keys(dom, &call_b, NULL, &lo, &e_));
  assert_int_equal(lo.nkeys, 0);
  kms_list_keys_output_clear(&lo);
  kms_key_metadata_clear(&md);
}

static void test_enable_disable_description(void **state) {
  kms_key_metadata md, d2;
  kms_encrypt_output eo;
  kms_encrypt_input ei = {.plaintext = (const uint8_t *)"x", .plaintext_len = 1};
  kerr err;
  create_key(&call_a, &md);
  ei.key_id = md.key_id;
  OK(kms_op_disable_key(dom, &call_a, md.key_id, &e_));
  OK(kms_op_describe_key(dom, &call_a, md.key_id, &d2, &e_));
  assert_string_equal(d2.key_state, "Disabled");
  assert_false(d2.enabled);
  kms_key_metadata_clear(&d2);
  assert_int_equal(kms_op_encrypt(dom, &call_a, &ei, &eo, &err), KERR_DISABLED);
  assert_non_null(strstr(err.msg, "is disabled."));
  OK(kms_op_enable_key(dom, &call_a, md.arn, &e_));
  OK(kms_op_encrypt(dom, &call_a, &ei, &eo, &e_));
  kms_encrypt_output_clear(&eo);
  OK(kms_op_update_key_description(dom, &call_a, md.key_id, "new words", &e_));
  OK(kms_op_describe_key(dom, &call_a, md.key_id, &d2, &e_));
  assert_string_equal(d2.description, "new words");
  kms_key_metadata_clear(&d2);
  /* EnableKey takes key ids and ARNs only, not aliases */
  OK(kms_op_create_alias(dom, &call_a, "alias/en", md.key_id, &e_));
  assert_int_equal(kms_op_enable_key(dom, &call_a, "alias/en", &err), KERR_NOT_FOUND);
  kms_key_metadata_clear(&md);
}

/* ---------------------------------------------------------------- crypto */

static void test_encrypt_decrypt(void **state) {
  kms_key_metadata md, md2;
  kms_encrypt_output eo;
  kms_decrypt_output dout;
  kerr err;
  kms_pair ctx[] = {{"purpose", "test"}, {"app", "kmsd"}};
  kms_pair ctx_reordered[] = {{"app", "kmsd"}, {"purpose", "test"}};
  kms_pair ctx_wrong[] = {{"app", "kmsd"}, {"purpose", "prod"}};
  create_key(&call_a, &md);
  create_key(&call_a, &md2);

  encrypt(md.key_id, "secret message", ctx, 2, &eo);
  assert_string_equal(eo.key_id, md.arn);
  assert_string_equal(eo.encryption_algorithm, "SYMMETRIC_DEFAULT");

  /* without KeyId; context in another order */
  OK(decrypt(&call_a, eo.ciphertext, eo.ciphertext_len, NULL, ctx_reordered, 2, &dout, &e_));
  assert_int_equal(dout.plaintext.len, strlen("secret message"));
  assert_memory_equal(dout.plaintext.data, "secret message", dout.plaintext.len);
  assert_string_equal(dout.key_id, md.arn);
  assert_string_equal(dout.key_material_id, md.current_key_material_id);
  kms_decrypt_output_clear(&dout);
  /* with the right KeyId (ARN) */
  OK(decrypt(&call_a, eo.ciphertext, eo.ciphertext_len, md.arn, ctx, 2, &dout, &e_));
  kms_decrypt_output_clear(&dout);
  /* wrong key, wrong/missing context, tampering */
  assert_int_equal(decrypt(&call_a, eo.ciphertext, eo.ciphertext_len, md2.key_id, ctx, 2, &dout, &err),
                   KERR_INCORRECT_KEY);
  assert_int_equal(decrypt(&call_a, eo.ciphertext, eo.ciphertext_len, NULL, ctx_wrong, 2, &dout, &err),
                   KERR_INVALID_CIPHERTEXT);
  assert_int_equal(decrypt(&call_a, eo.ciphertext, eo.ciphertext_len, NULL, NULL, 0, &dout, &err),
                   KERR_INVALID_CIPHERTEXT);
  eo.ciphertext[eo.ciphertext_len - 1] ^= 0x40;
  assert_int_equal(decrypt(&call_a, eo.ciphertext, eo.ciphertext_len, NULL, ctx, 2, &dout, &err),
                   KERR_INVALID_CIPHERTEXT);
  assert_null(dout.plaintext.data);
  eo.ciphertext[eo.ciphertext_len - 1] ^= 0x40;
  assert_int_equal(decrypt(&call_a, (const uint8_t *)"short", 5, NULL, NULL, 0, &dout, &err),
                   KERR_INVALID_CIPHERTEXT);
  /* DryRun after all checks */
  kms_decrypt_input di = {.ciphertext = eo.ciphertext, .ciphertext_len = eo.ciphertext_len,
                          .context = ctx, .ncontext = 2, .dry_run = true};
  assert_int_equal(kms_op_decrypt(dom, &call_a, &di, &dout, &err), KERR_DRY_RUN);
  assert_string_equal(err.msg, "The request would have succeeded, but the DryRun parameter was set.");
  kms_encrypt_input ei = {.key_id = md.key_id, .plaintext = (const uint8_t *)"x", .plaintext_len = 1, .dry_run = true};
  kms_encrypt_output eo2;
  assert_int_equal(kms_op_encrypt(dom, &call_a, &ei, &eo2, &err), KERR_DRY_RUN);
  ei.encryption_algorithm = "RSAES_OAEP_SHA_256";
  ei.dry_run = false;
  assert_int_equal(kms_op_encrypt(dom, &call_a, &ei, &eo2, &err), KERR_INVALID_KEY_USAGE);
  ei.encryption_algorithm = NULL;
  ei.plaintext_len = 4097;
  assert_int_equal(kms_op_encrypt(dom, &call_a, &ei, &eo2, &err), KERR_VALIDATION);
  /* a disabled key cannot decrypt */
  OK(kms_op_disable_key(dom, &call_a, md.key_id, &e_));
  assert_int_equal(decrypt(&call_a, eo.ciphertext, eo.ciphertext_len, NULL, ctx, 2, &dout, &err), KERR_DISABLED);
  OK(kms_op_enable_key(dom, &call_a, md.key_id, &e_));

  /* ReEncrypt to the second key, then decrypt there with a new context */
  kms_pair dctx[] = {{"stage", "2"}};
  kms_reencrypt_input ri = {.ciphertext = eo.ciphertext, .ciphertext_len = eo.ciphertext_len,
                            .source_context = ctx, .nsource_context = 2,
                            .destination_key_id = md2.arn, .destination_context = dctx,
                            .ndestination_context = 1};
  kms_reencrypt_output ro;
  OK(kms_reencrypt(dom, &call_a, &ri, &ro, &e_));
  assert_string_equal(ro.source_key_id, md.arn);
  assert_string_equal(ro.key_id, md2.arn);
  assert_string_equal(ro.destination_key_material_id, md2.current_key_material_id);
  OK(decrypt(&call_a, ro.ciphertext, ro.ciphertext_len, md2.key_id, dctx, 1, &dout, &e_));
  assert_memory_equal(dout.plaintext.data, "secret message", dout.plaintext.len);
  kms_decrypt_output_clear(&dout);
  kms_reencrypt_output_clear(&ro);
  ri.dry_run = true;
  assert_int_equal(kms_reencrypt(dom, &call_a, &ri, &ro, &err), KERR_DRY_RUN);

  kms_encrypt_output_clear(&eo);
  kms_key_metadata_clear(&md);
  kms_key_metadata_clear(&md2);
}

static void test_data_keys_and_random(void **state) {
  kms_key_metadata md;
  kms_generate_data_key_output go, go2;
  kms_decrypt_output dout;
  kerr err;
  create_key(&call_a, &md);
  kms_generate_data_key_input gi = {.key_id = md.key_id, .key_spec = "AES_256"};
  OK(kms_op_generate_data_key(dom, &call_a, &gi, &go, &e_));
  assert_int_equal(go.plaintext.len, 32);
  OK(decrypt(&call_a, go.ciphertext, go.ciphertext_len, NULL, NULL, 0, &dout, &e_));
  assert_int_equal(dout.plaintext.len, 32);
  assert_memory_equal(dout.plaintext.data, go.plaintext.data, 32);
  kms_decrypt_output_clear(&dout);
  kms_generate_data_key_output_clear(&go);

  gi = (kms_generate_data_key_input){.key_id = md.key_id, .has_number_of_bytes = true, .number_of_bytes = 7};
  OK(kms_op_generate_data_key_without_plaintext(dom, &call_a, &gi, &go2, &e_));
  assert_null(go2.plaintext.data);
  OK(decrypt(&call_a, go2.ciphertext, go2.ciphertext_len, NULL, NULL, 0, &dout, &e_));
  assert_int_equal(dout.plaintext.len, 7);
  kms_decrypt_output_clear(&dout);
  kms_generate_data_key_output_clear(&go2);

  gi = (kms_generate_data_key_input){.key_id = md.key_id};
  assert_int_equal(kms_op_generate_data_key(dom, &call_a, &gi, &go, &err), KERR_VALIDATION);
  gi.key_spec = "AES_128";
  gi.has_number_of_bytes = true;
  gi.number_of_bytes = 16;
  assert_int_equal(kms_op_generate_data_key(dom, &call_a, &gi, &go, &err), KERR_VALIDATION);
  gi = (kms_generate_data_key_input){.key_id = md.key_id, .has_number_of_bytes = true, .number_of_bytes = 1025};
  assert_int_equal(kms_op_generate_data_key(dom, &call_a, &gi, &go, &err), KERR_VALIDATION);
  gi = (kms_generate_data_key_input){.key_id = md.key_id, .key_spec = "AES_128", .dry_run = true};
  assert_int_equal(kms_op_generate_data_key(dom, &call_a, &gi, &go, &err), KERR_DRY_RUN);

  kbytes r = {0};
  kms_generate_random_input ri = {.has_number_of_bytes = true, .number_of_bytes = 1024};
  OK(kms_op_generate_random(dom, &call_a, &ri, &r, &e_));
  assert_int_equal(r.len, 1024);
  kbytes_wipe_free(&r);
  ri.number_of_bytes = 0;
  assert_int_equal(kms_op_generate_random(dom, &call_a, &ri, &r, &err), KERR_VALIDATION);
  ri = (kms_generate_random_input){.has_number_of_bytes = true, .number_of_bytes = 8, .custom_key_store_id = "cks-1"};
  assert_int_equal(kms_op_generate_random(dom, &call_a, &ri, &r, &err), KERR_CKS_NOT_FOUND);
  kms_key_metadata_clear(&md);
}

/* --------------------------------------------------------------- aliases */

static void test_aliases(void **state) {
  kms_key_metadata md, md2, d2;
  kms_encrypt_output eo;
  kms_decrypt_output dout;
  kms_list_aliases_output lo;
  kerr err;
  create_key(&call_a, &md);
  create_key(&call_a, &md2);
  OK(kms_op_create_alias(dom, &call_a, "alias/app", md.key_id, &e_));
  assert_int_equal(kms_op_create_alias(dom, &call_a, "alias/app", md2.key_id, &err), KERR_ALREADY_EXISTS);
  assert_string_equal(err.msg, "An alias with the name arn:aws:kms:us-east-1:111122223333:alias/app already exists");
  assert_int_equal(kms_op_create_alias(dom, &call_a, "alias/aws/s3", md.key_id, &err), KERR_INVALID_ALIAS_NAME);
  assert_int_equal(kms_op_create_alias(dom, &call_a, "app", md.key_id, &err), KERR_INVALID_ALIAS_NAME);
  assert_int_equal(kms_op_create_alias(dom, &call_a, "alias/bad name", md.key_id, &err), KERR_INVALID_ALIAS_NAME);
  assert_int_equal(kms_op_create_alias(dom, &call_a, "alias/x", "00000000-0000-4000-8000-000000000000", &err), KERR_NOT_FOUND);
  OK(kms_op_create_alias(dom, &call_a, "alias/second", md.arn, &e_));

  /* use by alias name and alias ARN */
  encrypt("alias/app", "via alias", NULL, 0, &eo);
  assert_string_equal(eo.key_id, md.arn);
  OK(kms_op_describe_key(dom, &call_a, "arn:aws:kms:us-east-1:111122223333:alias/app", &d2, &e_));
  assert_string_equal(d2.key_id, md.key_id);
  kms_key_metadata_clear(&d2);

  /* list all, list by key, paginate */
  OK(kms_op_list_aliases(dom, &call_a, NULL, NULL, &lo, &e_));
  assert_int_equal(lo.naliases, 2);
  assert_string_equal(lo.aliases[0].alias_name, "alias/app");
  assert_string_equal(lo.aliases[0].alias_arn, "arn:aws:kms:us-east-1:111122223333:alias/app");
  assert_string_equal(lo.aliases[0].target_key_id, md.key_id);
  assert_true(lo.aliases[0].last_updated_date_ms >= lo.aliases[0].creation_date_ms);
  kms_list_aliases_output_clear(&lo);
  kms_list_input li = {.limit = 1};
  OK(kms_op_list_aliases(dom, &call_a, md.key_id, &li, &lo, &e_));
  assert_int_equal(lo.naliases, 1);
  assert_true(lo.truncated);
  kms_list_aliases_output lo2;
  li.marker = lo.next_marker;
  OK(kms_op_list_aliases(dom, &call_a, md.key_id, &li, &lo2, &e_));
  assert_int_equal(lo2.naliases, 1);
  assert_string_equal(lo2.aliases[0].alias_name, "alias/second");
  kms_list_aliases_output_clear(&lo);
  kms_list_aliases_output_clear(&lo2);
  OK(kms_op_list_aliases(dom, &call_a, md2.key_id, NULL, &lo, &e_));
  assert_int_equal(lo.naliases, 0);
  kms_list_aliases_output_clear(&lo);
  OK(kms_op_list_aliases(dom, &call_b, NULL, NULL, &lo, &e_));
  assert_int_equal(lo.naliases, 0);
  kms_list_aliases_output_clear(&lo);

  /* UpdateAlias moves it; old ciphertext still decrypts (names its key) */
  OK(kms_op_update_alias(dom, &call_a, "alias/app", md2.key_id, &e_));
  OK(kms_op_describe_key(dom, &call_a, "alias/app", &d2, &e_));
  assert_string_equal(d2.key_id, md2.key_id);
  kms_key_metadata_clear(&d2);
  OK(decrypt(&call_a, eo.ciphertext, eo.ciphertext_len, NULL, NULL, 0, &dout, &e_));
  kms_decrypt_output_clear(&dout);
  assert_int_equal(kms_op_update_alias(dom, &call_a, "alias/none", md2.key_id, &err), KERR_NOT_FOUND);

  OK(kms_op_delete_alias(dom, &call_a, "alias/app", &e_));
  assert_int_equal(kms_op_delete_alias(dom, &call_a, "alias/app", &err), KERR_NOT_FOUND);
  assert_string_equal(err.msg, "Alias 'arn:aws:kms:us-east-1:111122223333:alias/app' is not found.");
  kms_encrypt_output_clear(&eo);
  kms_key_metadata_clear(&md);
  kms_key_metadata_clear(&md2);
}

/* ------------------------------------------------------------------ tags */

static void test_tags(void **state) {
  kms_key_metadata md;
  kms_list_tags_output lo;
  kerr err;
  kms_pair tags[] = {{"team", "blue"}, {"env", "dev"}};
  kms_create_key_input in = {.tags = tags, .ntags = 2};
  OK(kms_op_create_key(dom, &call_a, &in, &md, &e_));
  OK(kms_op_list_resource_tags(dom, &call_a, md.key_id, NULL, &lo, &e_));
  assert_int_equal(lo.ntags, 2);
  assert_string_equal(lo.tags[0].key, "env");
  assert_string_equal(lo.tags[1].value, "blue");
  kms_list_tags_output_clear(&lo);

  kms_pair more[] = {{"team", "red"}, {"cost", ""}};
  OK(kms_op_tag_resource(dom, &call_a, md.arn, more, 2, &e_));
  const char *rm[] = {"env", "absent"};
  OK(kms_op_untag_resource(dom, &call_a, md.key_id, rm, 2, &e_));
  kms_list_input li = {.limit = 1};
  OK(kms_op_list_resource_tags(dom, &call_a, md.key_id, &li, &lo, &e_));
  assert_int_equal(lo.ntags, 1);
  assert_string_equal(lo.tags[0].key, "cost");
  assert_true(lo.truncated);
  kms_list_tags_output lo2;
  li.marker = lo.next_marker;
  OK(kms_op_list_resource_tags(dom, &call_a, md.key_id, &li, &lo2, &e_));
  assert_string_equal(lo2.tags[0].key, "team");
  assert_string_equal(lo2.tags[0].value, "red");
  assert_false(lo2.truncated);
  kms_list_tags_output_clear(&lo);
  kms_list_tags_output_clear(&lo2);

  kms_pair reserved[] = {{"AWS:owner", "x"}};
  assert_int_equal(kms_op_tag_resource(dom, &call_a, md.key_id, reserved, 1, &err), KERR_TAG);
  kms_pair longkey[1];
  char k129[130];
  memset(k129, 'k', 129);
  k129[129] = 0;
  longkey[0] = (kms_pair){k129, "v"};
  assert_int_equal(kms_op_tag_resource(dom, &call_a, md.key_id, longkey, 1, &err), KERR_TAG);
  kms_pair many[49];
  char names[49][8];
  for (int i = 0; i < 49; i++) {
    snprintf(names[i], sizeof names[i], "k%d", i);
    many[i] = (kms_pair){names[i], "v"};
  }
  /* 2 existing + 49 new = 51 > 50 */
  assert_int_equal(kms_op_tag_resource(dom, &call_a, md.key_id, many, 49, &err), KERR_LIMIT_EXCEEDED);
  OK(kms_op_tag_resource(dom, &call_a, md.key_id, many, 48, &e_));
  kms_key_metadata_clear(&md);
}

/* -------------------------------------------------------------- deletion */

static void test_schedule_cancel_and_delete_on_clock(void **state) {
  kms_key_metadata md, md2, d2;
  kms_schedule_deletion_output so;
  kms_encrypt_output eo;
  kms_encrypt_input ei = {.plaintext = (const uint8_t *)"x", .plaintext_len = 1};
  char arn[KMS_ARN_MAX];
  kerr err;
  create_key(&call_a, &md);
  create_key(&call_a, &md2);
  OK(kms_op_create_alias(dom, &call_a, "alias/doomed", md.key_id, &e_));
  assert_int_equal(kms_op_schedule_key_deletion(dom, &call_a, md.key_id, 6, &so, &err), KERR_VALIDATION);
  assert_int_equal(kms_op_schedule_key_deletion(dom, &call_a, md.key_id, 31, &so, &err), KERR_VALIDATION);
  assert_int_equal(kms_op_cancel_key_deletion(dom, &call_a, md.key_id, arn, &err), KERR_INVALID_STATE);

  int64_t before = kclock_now_ms();
  OK(kms_op_schedule_key_deletion(dom, &call_a, md.key_id, 7, &so, &e_));
  assert_string_equal(so.key_id, md.arn);
  assert_string_equal(so.key_state, "PendingDeletion");
  assert_int_equal(so.pending_window_days, 7);
  assert_true(so.deletion_date_ms >= before + 7 * DAY_MS);
  OK(kms_op_describe_key(dom, &call_a, md.key_id, &d2, &e_));
  assert_string_equal(d2.key_state, "PendingDeletion");
  assert_true(d2.has_deletion_date);
  assert_int_equal(d2.pending_deletion_window_days, 7);
  kms_key_metadata_clear(&d2);
  ei.key_id = md.key_id;
  assert_int_equal(kms_op_encrypt(dom, &call_a, &ei, &eo, &err), KERR_INVALID_STATE);
  assert_non_null(strstr(err.msg, "is pending deletion."));
  assert_int_equal(kms_op_enable_key(dom, &call_a, md.key_id, &err), KERR_INVALID_STATE);
  assert_int_equal(kms_op_schedule_key_deletion(dom, &call_a, md.key_id, 7, &so, &err), KERR_INVALID_STATE);

  /* cancel -> Disabled; schedule again */
  OK(kms_op_cancel_key_deletion(dom, &call_a, md.key_id, arn, &e_));
  assert_string_equal(arn, md.arn);
  OK(kms_op_describe_key(dom, &call_a, md.key_id, &d2, &e_));
  assert_string_equal(d2.key_state, "Disabled");
  assert_false(d2.has_deletion_date);
  kms_key_metadata_clear(&d2);
  OK(kms_op_schedule_key_deletion(dom, &call_a, md.key_id, 7, &so, &e_));
  OK(kms_op_schedule_key_deletion(dom, &call_a, md2.key_id, 30, &so, &e_));

  /* 6 days: still there; 8 days: the sweeper deletes the first key only */
  kclock_advance_ms(6 * DAY_MS);
  OK(kms_domain_sweep(dom, &e_));
  OK(kms_op_describe_key(dom, &call_a, md.key_id, &d2, &e_));
  kms_key_metadata_clear(&d2);
  kclock_advance_ms(2 * DAY_MS);
  OK(kms_domain_sweep(dom, &e_));
  assert_int_equal(kms_op_describe_key(dom, &call_a, md.key_id, &d2, &err), KERR_NOT_FOUND);
  assert_int_equal(kms_op_describe_key(dom, &call_a, "alias/doomed", &d2, &err), KERR_NOT_FOUND);
  OK(kms_op_describe_key(dom, &call_a, md2.key_id, &d2, &e_));
  kms_key_metadata_clear(&d2);

  /* 30 days: deleted lazily on touch, without a sweep */
  kclock_advance_ms(23 * DAY_MS);
  assert_int_equal(kms_op_describe_key(dom, &call_a, md2.key_id, &d2, &err), KERR_NOT_FOUND);
  kms_list_keys_output lo;
  OK(kms_op_list_keys(dom, &call_a, NULL, &lo, &e_));
  assert_int_equal(lo.nkeys, 0);
  kms_list_keys_output_clear(&lo);
  kms_key_metadata_clear(&md);
  kms_key_metadata_clear(&md2);
}

/* -------------------------------------------------------------- rotation */

static void test_rotation_on_clock_and_on_demand(void **state) {
  kms_key_metadata md, d2;
  kms_rotation_status rs;
  kms_encrypt_output old_ct, new_ct;
  kms_decrypt_output dout;
  kms_list_rotations_output lr;
  char id[UUID_STR_LEN];
  kerr err;
  create_key(&call_a, &md);
  encrypt(md.key_id, "before rotation", NULL, 0, &old_ct);

  OK(kms_op_get_key_rotation_status(dom, &call_a, md.key_id, &rs, &e_));
  assert_false(rs.enabled);
  assert_int_equal(rs.rotation_period_days, 0);
  assert_int_equal(kms_op_enable_key_rotation(dom, &call_a, md.key_id, 89, &err), KERR_VALIDATION);
  assert_int_equal(kms_op_enable_key_rotation(dom, &call_a, md.key_id, 2561, &err), KERR_VALIDATION);
  int64_t now = kclock_now_ms();
  OK(kms_op_enable_key_rotation(dom, &call_a, md.key_id, 0, &e_));
  OK(kms_op_get_key_rotation_status(dom, &call_a, md.arn, &rs, &e_));
  assert_true(rs.enabled);
  assert_int_equal(rs.rotation_period_days, 365);
  assert_true(rs.has_next_rotation_date);
  assert_true(rs.next_rotation_date_ms >= now + 365 * DAY_MS);
  assert_string_equal(rs.key_id, md.arn);
  OK(kms_op_enable_key_rotation(dom, &call_a, md.key_id, 90, &e_));
  OK(kms_op_get_key_rotation_status(dom, &call_a, md.key_id, &rs, &e_));
  assert_int_equal(rs.rotation_period_days, 90);

  /* nothing rotated yet */
  OK(kms_op_list_key_rotations(dom, &call_a, md.key_id, NULL, NULL, &lr, &e_));
  assert_int_equal(lr.nrotations, 0);
  kms_list_rotations_output_clear(&lr);

  /* 91 days later the sweeper rotates */
  kclock_advance_ms(91 * DAY_MS);
  OK(kms_domain_sweep(dom, &e_));
  OK(kms_op_describe_key(dom, &call_a, md.key_id, &d2, &e_));
  assert_string_not_equal(d2.current_key_material_id, md.current_key_material_id);
  OK(kms_op_list_key_rotations(dom, &call_a, md.key_id, NULL, NULL, &lr, &e_));
  assert_int_equal(lr.nrotations, 1);
  assert_string_equal(lr.rotations[0].rotation_type, "AUTOMATIC");
  assert_string_equal(lr.rotations[0].key_material_state, "CURRENT");
  assert_string_equal(lr.rotations[0].key_material_id, d2.current_key_material_id);
  kms_list_rotations_output_clear(&lr);
  OK(kms_op_get_key_rotation_status(dom, &call_a, md.key_id, &rs, &e_));
  assert_true(rs.next_rotation_date_ms > kclock_now_ms());

  /* new ciphertexts use the new material; old ones still decrypt */
  encrypt(md.key_id, "after rotation", NULL, 0, &new_ct);
  OK(decrypt(&call_a, new_ct.ciphertext, new_ct.ciphertext_len, NULL, NULL, 0, &dout, &e_));
  assert_string_equal(dout.key_material_id, d2.current_key_material_id);
  kms_decrypt_output_clear(&dout);
  OK(decrypt(&call_a, old_ct.ciphertext, old_ct.ciphertext_len, NULL, NULL, 0, &dout, &e_));
  assert_memory_equal(dout.plaintext.data, "before rotation", dout.plaintext.len);
  assert_string_equal(dout.key_material_id, md.current_key_material_id);
  kms_decrypt_output_clear(&dout);
  kms_key_metadata_clear(&d2);

  /* rotation also happens lazily on use */
  kclock_advance_ms(91 * DAY_MS);
  kms_encrypt_output_clear(&new_ct);
  encrypt(md.key_id, "lazy", NULL, 0, &new_ct);
  OK(kms_op_list_key_rotations(dom, &call_a, md.key_id, NULL, NULL, &lr, &e_));
  assert_int_equal(lr.nrotations, 2);
  kms_list_rotations_output_clear(&lr);

  /* on demand */
  OK(kms_op_rotate_key_on_demand(dom, &call_a, md.key_id, id, &e_));
  assert_string_equal(id, md.key_id);
  kms_list_input li = {.limit = 2};
  OK(kms_op_list_key_rotations(dom, &call_a, md.key_id, "ALL_KEY_MATERIAL", &li, &lr, &e_));
  assert_int_equal(lr.nrotations, 2);
  assert_true(lr.truncated);
  assert_null(lr.rotations[0].rotation_type); /* the original material */
  assert_string_equal(lr.rotations[0].key_material_state, "NON_CURRENT");
  kms_list_rotations_output lr2;
  li.marker = lr.next_marker;
  OK(kms_op_list_key_rotations(dom, &call_a, md.key_id, "ALL_KEY_MATERIAL", &li, &lr2, &e_));
  assert_int_equal(lr2.nrotations, 2);
  assert_false(lr2.truncated);
  assert_string_equal(lr2.rotations[1].rotation_type, "ON_DEMAND");
  assert_string_equal(lr2.rotations[1].key_material_state, "CURRENT");
  kms_list_rotations_output_clear(&lr);
  kms_list_rotations_output_clear(&lr2);
  OK(decrypt(&call_a, old_ct.ciphertext, old_ct.ciphertext_len, NULL, NULL, 0, &dout, &e_));
  kms_decrypt_output_clear(&dout);
  assert_int_equal(kms_op_list_key_rotations(dom, &call_a, md.key_id, "SOME", NULL, &lr, &err), KERR_VALIDATION);

  /* disabled keys: rotation calls say so */
  OK(kms_op_disable_key(dom, &call_a, md.key_id, &e_));
  assert_int_equal(kms_op_rotate_key_on_demand(dom, &call_a, md.key_id, id, &err), KERR_DISABLED);
  assert_int_equal(kms_op_enable_key_rotation(dom, &call_a, md.key_id, 0, &err), KERR_DISABLED);
  OK(kms_op_enable_key(dom, &call_a, md.key_id, &e_));
  OK(kms_op_disable_key_rotation(dom, &call_a, md.key_id, &e_));
  OK(kms_op_get_key_rotation_status(dom, &call_a, md.key_id, &rs, &e_));
  assert_false(rs.enabled);
  assert_false(rs.has_next_rotation_date);

  kms_encrypt_output_clear(&old_ct);
  kms_encrypt_output_clear(&new_ct);
  kms_key_metadata_clear(&md);
}

/* ---------------------------------------------------- authz and policies */

static void test_authorization(void **state) {
  kms_key_metadata md, d2;
  kms_encrypt_output eo;
  kms_decrypt_output dout;
  kerr err;
  create_key(&call_a, &md);

  /* a user with no identity policy can do nothing under the default policy */
  kms_create_key_input in = {0};
  assert_int_equal(kms_op_create_key(dom, &call_nopolicy, &in, &d2, &err), KERR_ACCESS_DENIED);
  assert_non_null(strstr(err.msg, "kms:CreateKey"));
  kms_encrypt_input ei = {.key_id = md.key_id, .plaintext = (const uint8_t *)"x", .plaintext_len = 1};
  assert_int_equal(kms_op_encrypt(dom, &call_nopolicy, &ei, &eo, &err), KERR_ACCESS_DENIED);
  assert_non_null(strstr(err.msg, "kms:Encrypt"));
  assert_int_equal(kms_op_describe_key(dom, &call_nopolicy, md.key_id, &d2, &err), KERR_ACCESS_DENIED);
  kms_list_keys_output lo;
  assert_int_equal(kms_op_list_keys(dom, &call_nopolicy, NULL, &lo, &err), KERR_ACCESS_DENIED);
  /* a user with an identity policy is allowed through the account statement */
  OK(kms_op_encrypt(dom, &call_user, &ei, &eo, &e_));

  /* another account: by key id the key is not even found; by ARN the
   * default policy denies it */
  assert_int_equal(kms_op_describe_key(dom, &call_b, md.key_id, &d2, &err), KERR_NOT_FOUND);
  assert_int_equal(kms_op_describe_key(dom, &call_b, md.arn, &d2, &err), KERR_ACCESS_DENIED);
  assert_int_equal(decrypt(&call_b, eo.ciphertext, eo.ciphertext_len, NULL, NULL, 0, &dout, &err),
                   KERR_ACCESS_DENIED);
  /* management operations are never cross-account */
  assert_int_equal(kms_op_disable_key(dom, &call_b, md.arn, &err), KERR_NOT_FOUND);

  /* a policy granting account B Decrypt lets B decrypt A's ciphertext */
  const char *shared =
      "{\"Version\":\"2012-10-17\",\"Statement\":["
      "{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::" ACCT ":root\"},\"Action\":\"kms:*\",\"Resource\":\"*\"},"
      "{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::" ACCT_B ":root\"},\"Action\":[\"kms:Decrypt\",\"kms:DescribeKey\"],\"Resource\":\"*\"}]}";
  OK(kms_op_put_key_policy(dom, &call_a, md.key_id, NULL, shared, false, &e_));
  OK(decrypt(&call_b, eo.ciphertext, eo.ciphertext_len, NULL, NULL, 0, &dout, &e_));
  assert_memory_equal(dout.plaintext.data, "x", 1);
  kms_decrypt_output_clear(&dout);
  OK(kms_op_describe_key(dom, &call_b, md.arn, &d2, &e_));
  kms_key_metadata_clear(&d2);
  ei.key_id = md.arn;
  kms_encrypt_output eo2;
  assert_int_equal(kms_op_encrypt(dom, &call_b, &ei, &eo2, &err), KERR_ACCESS_DENIED);
  kms_encrypt_output_clear(&eo);
  kms_key_metadata_clear(&md);
}

static void test_key_policies(void **state) {
  kms_key_metadata md;
  kms_key_policy_output po;
  kms_list_policies_output lp;
  kerr err;
  create_key(&call_a, &md);
  OK(kms_op_get_key_policy(dom, &call_a, md.key_id, NULL, &po, &e_));
  assert_string_equal(po.policy_name, "default");
  assert_non_null(strstr(po.policy, "arn:aws:iam::111122223333:root"));
  assert_non_null(strstr(po.policy, "key-default-1"));
  kms_key_policy_output_clear(&po);
  assert_int_equal(kms_op_get_key_policy(dom, &call_a, md.key_id, "other", &po, &err), KERR_NOT_FOUND);
  OK(kms_op_list_key_policies(dom, &call_a, md.key_id, NULL, &lp, &e_));
  assert_int_equal(lp.npolicy_names, 1);
  assert_string_equal(lp.policy_names[0], "default");
  kms_list_policies_output_clear(&lp);

  assert_int_equal(kms_op_put_key_policy(dom, &call_a, md.key_id, NULL, "{", false, &err), KERR_MALFORMED_POLICY);
  /* a policy that only lets bob in would lock the caller (root) out */
  const char *lockout =
      "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":"
      "\"arn:aws:iam::111122223333:user/bob\"},\"Action\":\"kms:*\",\"Resource\":\"*\"}]}";
  assert_int_equal(kms_op_put_key_policy(dom, &call_a, md.key_id, "default", lockout, false, &err),
                   KERR_MALFORMED_POLICY);
  assert_non_null(strstr(err.msg, "will not allow you to update the key policy"));
  OK(kms_op_put_key_policy(dom, &call_a, md.key_id, "default", lockout, true, &e_));
  /* the new policy is in force at once (cached parse invalidated) */
  kms_key_metadata d2;
  assert_int_equal(kms_op_describe_key(dom, &call_a, md.key_id, &d2, &err), KERR_ACCESS_DENIED);
  kms_create_key_input in = {.policy = lockout};
  assert_int_equal(kms_op_create_key(dom, &call_a, &in, &d2, &err), KERR_MALFORMED_POLICY);
  kms_key_metadata_clear(&md);
}

/* -------------------------------------------------------------- durability */

static void test_close_and_reopen_keeps_everything(void **state) {
  kms_key_metadata md, d2;
  kms_encrypt_output eo;
  kms_decrypt_output dout;
  kms_list_tags_output lo;
  char id[UUID_STR_LEN];
  kms_pair tags[] = {{"k", "v"}};
  kms_create_key_input in = {.description = "durable", .tags = tags, .ntags = 1};
  OK(kms_op_create_key(dom, &call_a, &in, &md, &e_));
  OK(kms_op_create_alias(dom, &call_a, "alias/keep", md.key_id, &e_));
  encrypt("alias/keep", "persist me", NULL, 0, &eo);
  OK(kms_op_rotate_key_on_demand(dom, &call_a, md.key_id, id, &e_));
  OK(kms_op_enable_key_rotation(dom, &call_a, md.key_id, 180, &e_));

  kms_domain_close(dom);
  dom = NULL;
  open_domain();

  OK(kms_op_describe_key(dom, &call_a, "alias/keep", &d2, &e_));
  assert_string_equal(d2.key_id, md.key_id);
  assert_string_equal(d2.description, "durable");
  assert_string_not_equal(d2.current_key_material_id, md.current_key_material_id);
  kms_key_metadata_clear(&d2);
  OK(decrypt(&call_a, eo.ciphertext, eo.ciphertext_len, NULL, NULL, 0, &dout, &e_));
  assert_memory_equal(dout.plaintext.data, "persist me", dout.plaintext.len);
  kms_decrypt_output_clear(&dout);
  OK(kms_op_list_resource_tags(dom, &call_a, md.key_id, NULL, &lo, &e_));
  assert_int_equal(lo.ntags, 1);
  kms_list_tags_output_clear(&lo);
  kms_rotation_status rs;
  OK(kms_op_get_key_rotation_status(dom, &call_a, md.key_id, &rs, &e_));
  assert_true(rs.enabled);
  assert_int_equal(rs.rotation_period_days, 180);
  kms_encrypt_output_clear(&eo);
  kms_key_metadata_clear(&md);
}

/* A root key without its database, or a database without its root key, is
 * refused rather than silently replaced by a fresh, empty one. */
static void test_half_data_directory_refused(void **state) {
  kms_domain_config cfg = {.data_dir = dir, .sweep_interval_ms = -1};
  kms_domain *other = NULL;
  kerr err;
  char key_path[128], db_path[128], aside[160];
  snprintf(key_path, sizeof key_path, "%s/root.key", dir);
  snprintf(db_path, sizeof db_path, "%s/kmsd.db", dir);
  kms_domain_close(dom);
  dom = NULL;

  snprintf(aside, sizeof aside, "%s.aside", key_path);
  assert_int_equal(rename(key_path, aside), 0);
  assert_int_equal(kms_domain_open(&cfg, &other, &err), KERR_INTERNAL);
  assert_null(other);
  assert_non_null(strstr(err.msg, "Restore root.key"));
  assert_int_equal(access(key_path, F_OK), -1); /* no new root key was made */
  assert_int_equal(rename(aside, key_path), 0);

  snprintf(aside, sizeof aside, "%s.aside", db_path);
  assert_int_equal(rename(db_path, aside), 0);
  assert_int_equal(kms_domain_open(&cfg, &other, &err), KERR_INTERNAL);
  assert_null(other);
  assert_non_null(strstr(err.msg, "restore the database"));
  assert_int_equal(rename(aside, db_path), 0);

  open_domain(); /* both back: opens as before */
}

/* A root.key of another store is refused at open, before anything runs on
 * the store; its own root key opens it as before. */
static void test_root_key_of_another_store_refused(void **state) {
  kms_domain_config cfg = {.data_dir = dir, .sweep_interval_ms = -1};
  kms_domain *other = NULL;
  kms_key_metadata md;
  kerr err;
  char key_path[128], aside[160], stranger[160];
  create_key(&call_a, &md);
  kms_domain_close(dom);
  dom = NULL;
  snprintf(key_path, sizeof key_path, "%s/root.key", dir);
  snprintf(aside, sizeof aside, "%s.own", key_path);
  snprintf(stranger, sizeof stranger, "%s.stranger", key_path);
  assert_int_equal(rename(key_path, aside), 0);
  rootkey *rk = NULL;
  assert_int_equal(rootkey_load_or_create(stranger, &rk, &err), KERR_OK);
  rootkey_free(rk);
  assert_int_equal(rename(stranger, key_path), 0);

  assert_int_equal(kms_domain_open(&cfg, &other, &err), KERR_INTERNAL);
  assert_null(other);
  assert_non_null(strstr(err.msg, "root.key does not belong to this data directory's store"));

  assert_int_equal(rename(aside, key_path), 0);
  open_domain();
  kms_key_metadata d2;
  OK(kms_op_describe_key(dom, &call_a, md.key_id, &d2, &e_));
  kms_key_metadata_clear(&d2);
  kms_key_metadata_clear(&md);
}

/* The background sweeper thread also deletes keys on its own. */
static void test_background_sweeper(void **state) {
  kms_key_metadata md, d2;
  kms_schedule_deletion_output so;
  kerr err;
  kms_domain_close(dom);
  kms_domain_config cfg = {.data_dir = dir, .sweep_interval_ms = 20};
  OK(kms_domain_open(&cfg, &dom, &e_));
  create_key(&call_a, &md);
  OK(kms_op_schedule_key_deletion(dom, &call_a, md.key_id, 7, &so, &e_));
  kclock_advance_ms(8 * DAY_MS);
  /* Poll the store through ListKeys, which does not touch the key itself. */
  size_t remaining = 1;
  for (int i = 0; i < 200 && remaining; i++) {
    kms_list_keys_output lo;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
    OK(kms_op_list_keys(dom, &call_a, NULL, &lo, &e_));
    remaining = lo.nkeys;
    kms_list_keys_output_clear(&lo);
  }
  assert_int_equal(remaining, 0);
  assert_int_equal(kms_op_describe_key(dom, &call_a, md.key_id, &d2, &err), KERR_NOT_FOUND);
  kms_key_metadata_clear(&md);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_create_describe_list, setup, teardown),
      cmocka_unit_test_setup_teardown(test_enable_disable_description, setup, teardown),
      cmocka_unit_test_setup_teardown(test_encrypt_decrypt, setup, teardown),
      cmocka_unit_test_setup_teardown(test_data_keys_and_random, setup, teardown),
      cmocka_unit_test_setup_teardown(test_aliases, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tags, setup, teardown),
      cmocka_unit_test_setup_teardown(test_schedule_cancel_and_delete_on_clock, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rotation_on_clock_and_on_demand, setup, teardown),
      cmocka_unit_test_setup_teardown(test_authorization, setup, teardown),
      cmocka_unit_test_setup_teardown(test_key_policies, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_and_reopen_keeps_everything, setup, teardown),
      cmocka_unit_test_setup_teardown(test_background_sweeper, setup, teardown),
      cmocka_unit_test_setup_teardown(test_half_data_directory_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_root_key_of_another_store_refused, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  iam_policy_free(allow_all);
  return rc;
}
