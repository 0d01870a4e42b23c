/* kms_typed_driver.c - runs one typed libkms call (or page walk) per command
 * and prints what came back as one JSON object, for tests/e2e/test_kms_typed.py,
 * which compiles it against the installed library (pkg-config libkms) and
 * compares its view of a real kmsd with boto3's.
 *
 *   kms_typed_driver create-key DESCRIPTION TAGKEY TAGVALUE
 *   kms_typed_driver describe-key KEY_ID
 *   kms_typed_driver encrypt KEY_ID PLAINTEXT_HEX      (context {"test": "typed"})
 *   kms_typed_driver decrypt CIPHERTEXT_HEX
 *   kms_typed_driver list-keys LIMIT                   (every page, through the paginator)
 *   kms_typed_driver create-alias NAME KEY_ID
 *   kms_typed_driver list-aliases LIMIT
 *   kms_typed_driver create-store NAME CLUSTER_ID TRUST_ANCHOR_FILE PASSWORD
 *   kms_typed_driver describe-store ID
 *   kms_typed_driver describe-cluster CLUSTER_ID       (CloudHSMv2)
 *   kms_typed_driver encrypt-without-key               (a missing required member)
 *
 * A failed call prints {"error": {...every kms_error field...}} and exits 3.
 * The AWS configuration (AWS_* variables) says where and as whom. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kms/kms_ops.h>

static const kms_string_pair_in test_context[] = {{"test", "typed"}};

static int usage(void) {
  fprintf(stderr, "usage: kms_typed_driver COMMAND ARGS... (see the source)\n");
  return 2;
}

static int print_json(json_t *j) {
  char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(j);
  if (!text) return 1;
  puts(text);
  free(text);
  return 0;
}

static int print_error(int rc, const kms_error *e) {
  print_json(json_pack("{s:{s:i,s:i,s:s,s:s,s:i,s:s,s:i,s:i}}", "error", "rc", rc, "kind", (int)e->kind, "code",
                       e->code, "message", e->message, "http_status", e->http_status, "request_id", e->request_id,
                       "retryable", e->retryable, "attempts", e->attempts));
  return 3;
}

static json_t *hex_of(const unsigned char *data, size_t len) {
  char *text = malloc(2 * len + 1);
  if (!text) return NULL;
  for (size_t i = 0; i < len; i++) sprintf(text + 2 * i, "%02x", data[i]);
  text[2 * len] = '\0';
  json_t *j = json_string(text);
  free(text);
  return j;
}

/* Hex text to bytes (malloc'd, *len set); NULL when malformed. */
static unsigned char *bytes_of(const char *hex, size_t *len) {
  size_t n = strlen(hex);
  if (n % 2) return NULL;
  unsigned char *out = malloc(n / 2 + 1);
  for (size_t i = 0; out && i < n / 2; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
      free(out);
      return NULL;
    }
    out[i] = (unsigned char)v;
  }
  *len = n / 2;
  return out;
}

static json_t *opt_str(const char *s) {
  return s ? json_string(s) : json_null();
}

static json_t *string_list(char **items, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(a, json_string(items[i]));
  return a;
}

static json_t *key_metadata(const kms_key_metadata *m) {
  return json_pack("{s:s,s:o,s:o,s:o,s:b,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "KeyId", m->key_id, "Arn", opt_str(m->arn),
                   "KeyState", opt_str(m->key_state), "Description", opt_str(m->description), "Enabled",
                   m->has_enabled && m->enabled, "CreationDate",
                   m->has_creation_date ? json_real(m->creation_date) : json_null(), "KeySpec",
                   opt_str(m->key_spec), "KeyUsage", opt_str(m->key_usage), "Origin", opt_str(m->origin),
                   "KeyManager", opt_str(m->key_manager), "CustomKeyStoreId", opt_str(m->custom_key_store_id),
                   "EncryptionAlgorithms", string_list(m->encryption_algorithms, m->encryption_algorithms_count));
}

static int run(kms_client *c, kms_client *hsm, int argc, char **argv) {
  const char *cmd = argv[1];
  kms_error err;
  int rc;
#define NEED(n) \
  if (argc != (n) + 2) return usage()

  if (strcmp(cmd, "create-key") == 0) {
    NEED(3);
    kms_tag_in tag = {argv[3], argv[4]};
    kms_create_key_input in = {0};
    kms_create_key_output out;
    in.description = argv[2];
    in.tags = &tag;
    in.tags_count = 1;
    if ((rc = kms_create_key(c, &in, &out, &err))) return print_error(rc, &err);
    print_json(json_pack("{s:o}", "KeyMetadata", key_metadata(out.key_metadata)));
    kms_create_key_output_free(&out);
  } else if (strcmp(cmd, "describe-key") == 0) {
    NEED(1);
    kms_describe_key_input in = {0};
    kms_describe_key_output out;
    in.key_id = argv[2];
    if ((rc = kms_describe_key(c, &in, &out, &err))) return print_error(rc, &err);
    print_json(json_pack("{s:o}", "KeyMetadata", key_metadata(out.key_metadata)));
    kms_describe_key_output_free(&out);
  } else if (strcmp(cmd, "encrypt") == 0) {
    NEED(2);
    kms_encrypt_input in = {0};
    kms_encrypt_output out;
    size_t len = 0;
    unsigned char *plain = bytes_of(argv[3], &len);
    if (!plain) return usage();
    in.key_id = argv[2];
    in.plaintext.data = plain;
    in.plaintext.len = len;
    in.encryption_context = test_context;
    in.encryption_context_count = 1;
    rc = kms_encrypt(c, &in, &out, &err);
    free(plain);
    if (rc) return print_error(rc, &err);
    print_json(json_pack("{s:o,s:o,s:o}", "CiphertextBlob", hex_of(out.ciphertext_blob.data, out.ciphertext_blob.len),
                         "KeyId", opt_str(out.key_id), "EncryptionAlgorithm", opt_str(out.encryption_algorithm)));
    kms_encrypt_output_free(&out);
  } else if (strcmp(cmd, "decrypt") == 0) {
    NEED(1);
    kms_decrypt_input in = {0};
    kms_decrypt_output out;
    size_t len = 0;
    unsigned char *blob = bytes_of(argv[2], &len);
    if (!blob) return usage();
    in.ciphertext_blob.data = blob;
    in.ciphertext_blob.len = len;
    in.encryption_context = test_context;
    in.encryption_context_count = 1;
    rc = kms_decrypt(c, &in, &out, &err);
    free(blob);
    if (rc) return print_error(rc, &err);
    print_json(json_pack("{s:o,s:o}", "Plaintext", hex_of(out.plaintext.data, out.plaintext.len), "KeyId",
                         opt_str(out.key_id)));
    kms_decrypt_output_free(&out);
  } else if (strcmp(cmd, "list-keys") == 0) {
    NEED(1);
    kms_list_keys_input in = {0};
    kms_list_keys_paginator *p;
    kms_list_keys_output page;
    in.has_limit = 1;
    in.limit = atoi(argv[2]);
    if ((rc = kms_list_keys_paginate(c, &in, &p, &err))) return print_error(rc, &err);
    json_t *pages = json_array();
    while ((rc = kms_list_keys_next_page(p, &page, &err)) == 1) {
      json_t *ids = json_array();
      for (size_t i = 0; i < page.keys_count; i++) json_array_append_new(ids, json_string(page.keys[i].key_id));
      json_array_append_new(pages, ids);
      kms_list_keys_output_free(&page);
    }
    kms_list_keys_paginator_free(p);
    if (rc < 0) {
      json_decref(pages);
      return print_error(err.kind, &err);
    }
    print_json(json_pack("{s:o}", "Pages", pages));
  } else if (strcmp(cmd, "create-alias") == 0) {
    NEED(2);
    kms_create_alias_input in = {0};
    kms_create_alias_output out;
    in.alias_name = argv[2];
    in.target_key_id = argv[3];
    if ((rc = kms_create_alias(c, &in, &out, &err))) return print_error(rc, &err);
    kms_create_alias_output_free(&out);
    print_json(json_object());
  } else if (strcmp(cmd, "list-aliases") == 0) {
    NEED(1);
    kms_list_aliases_input in = {0};
    kms_list_aliases_paginator *p;
    kms_list_aliases_output page;
    in.has_limit = 1;
    in.limit = atoi(argv[2]);
    if ((rc = kms_list_aliases_paginate(c, &in, &p, &err))) return print_error(rc, &err);
    json_t *pages = json_array();
    while ((rc = kms_list_aliases_next_page(p, &page, &err)) == 1) {
      json_t *entries = json_array();
      for (size_t i = 0; i < page.aliases_count; i++)
        json_array_append_new(entries, json_pack("{s:o,s:o}", "AliasName", opt_str(page.aliases[i].alias_name),
                                                 "TargetKeyId", opt_str(page.aliases[i].target_key_id)));
      json_array_append_new(pages, entries);
      kms_list_aliases_output_free(&page);
    }
    kms_list_aliases_paginator_free(p);
    if (rc < 0) {
      json_decref(pages);
      return print_error(err.kind, &err);
    }
    print_json(json_pack("{s:o}", "Pages", pages));
  } else if (strcmp(cmd, "create-store") == 0) {
    NEED(4);
    FILE *f = fopen(argv[4], "r");
    char anchor[16384];
    size_t n = f ? fread(anchor, 1, sizeof anchor - 1, f) : 0;
    if (f) fclose(f);
    anchor[n] = '\0';
    kms_create_custom_key_store_input in = {0};
    kms_create_custom_key_store_output out;
    in.custom_key_store_name = argv[2];
    in.cloud_hsm_cluster_id = argv[3];
    in.trust_anchor_certificate = anchor;
    in.key_store_password = argv[5];
    if ((rc = kms_create_custom_key_store(c, &in, &out, &err))) return print_error(rc, &err);
    print_json(json_pack("{s:o}", "CustomKeyStoreId", opt_str(out.custom_key_store_id)));
    kms_create_custom_key_store_output_free(&out);
  } else if (strcmp(cmd, "describe-store") == 0) {
    NEED(1);
    kms_describe_custom_key_stores_input in = {0};
    kms_describe_custom_key_stores_output out;
    in.custom_key_store_id = argv[2];
    if ((rc = kms_describe_custom_key_stores(c, &in, &out, &err))) return print_error(rc, &err);
    json_t *stores = json_array();
    for (size_t i = 0; i < out.custom_key_stores_count; i++) {
      const kms_custom_key_stores_list_entry *s = &out.custom_key_stores[i];
      json_array_append_new(
          stores, json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "CustomKeyStoreId", opt_str(s->custom_key_store_id),
                            "CustomKeyStoreName", opt_str(s->custom_key_store_name), "CloudHsmClusterId",
                            opt_str(s->cloud_hsm_cluster_id), "ConnectionState", opt_str(s->connection_state),
                            "CustomKeyStoreType", opt_str(s->custom_key_store_type), "TrustAnchorCertificate",
                            opt_str(s->trust_anchor_certificate), "CreationDate",
                            s->has_creation_date ? json_real(s->creation_date) : json_null()));
    }
    print_json(json_pack("{s:o}", "CustomKeyStores", stores));
    kms_describe_custom_key_stores_output_free(&out);
  } else if (strcmp(cmd, "describe-cluster") == 0) {
    NEED(1);
    const char *ids[] = {argv[2]};
    kms_cloudhsmv2_filters_entry_in filter = {"clusterIds", ids, 1};
    kms_cloudhsmv2_describe_clusters_input in = {0};
    kms_cloudhsmv2_describe_clusters_output out;
    in.filters = &filter;
    in.filters_count = 1;
    if ((rc = kms_cloudhsmv2_describe_clusters(hsm, &in, &out, &err))) return print_error(rc, &err);
    json_t *clusters = json_array();
    for (size_t i = 0; i < out.clusters_count; i++) {
      const kms_cloudhsmv2_cluster *cl = &out.clusters[i];
      json_t *hsms = json_array();
      for (size_t k = 0; k < cl->hsms_count; k++)
        json_array_append_new(hsms, json_pack("{s:o,s:o,s:o}", "HsmId", opt_str(cl->hsms[k].hsm_id),
                                              "AvailabilityZone", opt_str(cl->hsms[k].availability_zone), "State",
                                              opt_str(cl->hsms[k].state)));
      json_t *subnets = json_object();
      for (size_t k = 0; k < cl->subnet_mapping_count; k++)
        json_object_set_new(subnets, cl->subnet_mapping[k].key, json_string(cl->subnet_mapping[k].value));
      json_array_append_new(clusters, json_pack("{s:o,s:o,s:o,s:o,s:o}", "ClusterId", opt_str(cl->cluster_id),
                                                "State", opt_str(cl->state), "HsmType", opt_str(cl->hsm_type),
                                                "Hsms", hsms, "SubnetMapping", subnets));
    }
    print_json(json_pack("{s:o}", "Clusters", clusters));
    kms_cloudhsmv2_describe_clusters_output_free(&out);
  } else if (strcmp(cmd, "encrypt-without-key") == 0) {
    NEED(0);
    kms_encrypt_input in = {0};
    kms_encrypt_output out;
    in.plaintext.data = (const unsigned char *)"x";
    in.plaintext.len = 1;
    rc = kms_encrypt(c, &in, &out, &err);
    if (rc) return print_error(rc, &err);
    kms_encrypt_output_free(&out);
    print_json(json_object());
  } else {
    return usage();
  }
  return 0;
#undef NEED
}

int main(int argc, char **argv) {
  kms_client *c = NULL, *hsm = NULL;
  kms_error err;
  int rc;
  if (argc < 2) return usage();
  if ((rc = kms_client_new(KMS_SERVICE_KMS, NULL, &c, &err)) ||
      (rc = kms_client_new(KMS_SERVICE_CLOUDHSMV2, NULL, &hsm, &err))) {
    kms_client_free(c);
    return print_error(rc, &err);
  }
  rc = run(c, hsm, argc, argv);
  kms_client_free(hsm);
  kms_client_free(c);
  return rc;
}
