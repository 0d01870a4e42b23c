/* fuzz_xks.c - libFuzzer target for the XKS Proxy API v1 messages
 * (xks/xks_msg.h): the router and request parsers the proxy runs on bytes
 * from the network, and the reply parsers kmsd's client runs on bytes from
 * a proxy.
 *
 * The first input byte picks what is fuzzed (modulo 10); the rest is:
 *   0    "<prefix>\n<method>\n<path>" for xks_route_classify: the status is
 *        200, 404 or 405; 404 exactly when no operation is found; a routed
 *        path is at most 256 characters, starts with the prefix (which passed
 *        xks_uri_prefix_check) and a key operation's externalKeyId is 1..128
 *        characters of A-Z a-z 0-9 - . _ found in the path;
 *   1-4  a request body of GetKeyMetadata, Encrypt, Decrypt, GetHealthStatus:
 *        a refusal has a usable message that does not repeat the plaintext
 *        or AAD text; an accepted request respects every bound, serializes,
 *        re-parses to the same values and serializes to the same bytes;
 *   5-9  a reply body for the key metadata, encrypt, decrypt, health and
 *        error parsers (for encrypt and decrypt, two bytes first give the
 *        expected length, and one bit whether a CDIV was asked for): an
 *        accepted reply respects every bound, and except for the error reply
 *        (whose message is sanitized), serializes and re-parses to the same
 *        values. */
#include <string.h>

#include "core/codec.h"
#include "fuzz_common.h"
#include "xks/xks_msg.h"

#include <jansson.h>

/* Every fixed word a message of the request parser uses; a secret value
 * that is a substring of this may appear in a message by coincidence. */
static const char msg_words[] =
    "requestMetadata.kmsRequestId requestMetadata.kmsOperation requestMetadata.awsPrincipalArn "
    "requestMetadata.awsSourceVpc requestMetadata.awsSourceVpce requestMetadata.kmsKeyArn "
    "requestMetadata.kmsViaService plaintext ciphertext encryptionAlgorithm "
    "additionalAuthenticatedData ciphertextDataIntegrityValueAlgorithm initializationVector "
    "authenticationTag ciphertextMetadata requestMetadata is missing. must be a string. "
    "must be an object. is longer than characters. bytes. contains a NUL character. "
    "must be a base64 string. is not valid base64 (standard alphabet, padded). must not be "
    "empty. must be AES_GCM. SHA_256. The request body is not a JSON object. larger than "
    "initializationVector must be 12 or 16 bytes. authenticationTag must be 16 bytes. "
    "Out of memory. Not an XKS operation.";

static void check_route(const char *in, size_t n) {
  char *text = fuzz_strndup((const uint8_t *)in, n), *method, *path;
  xks_route r;

  method = strchr(text, '\n');
  if (!method) goto out;
  *method++ = '\0';
  path = strchr(method, '\n');
  if (!path) goto out;
  *path++ = '\0';
  xks_route_classify(text, method, path, n - (size_t)(path - text), &r);
  FUZZ_CHECK(r.status == 200 || r.status == 404 || r.status == 405, "status is 200, 404 or 405");
  FUZZ_CHECK((r.status == 404) == (r.op == XKS_OP_NONE), "404 exactly when no operation");
  FUZZ_CHECK((r.status == 404) == (r.error == XKS_ERR_INVALID_URI_PATH), "404 is InvalidUriPath");
  if (r.status != 404) {
    size_t plen = strlen(text), pathlen = n - (size_t)(path - text), klen = strlen(r.key_id);
    FUZZ_CHECK(xks_uri_prefix_check(text, NULL) == KERR_OK, "routed under a valid prefix");
    FUZZ_CHECK(pathlen <= XKS_URI_MAX, "routed path within 256 characters");
    FUZZ_CHECK(pathlen > plen && memcmp(path, text, plen) == 0, "path starts with the prefix");
    FUZZ_CHECK((r.status == 200) == (strcmp(method, "POST") == 0), "only POST is 200");
    if (r.op == XKS_OP_HEALTH) {
      FUZZ_CHECK(klen == 0, "health has no key id");
    } else {
      FUZZ_CHECK(klen >= 1 && klen <= XKS_KEY_ID_MAX, "key id 1..128");
      FUZZ_CHECK(strspn(r.key_id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._")
                     == klen, "key id charset");
      FUZZ_CHECK(strstr(path, r.key_id) != NULL, "key id comes from the path");
    }
  }
out:
  free(text);
}

static int opt_eq(const char *a, const char *b) {
  if (!a || !b) return a == b;
  return strcmp(a, b) == 0;
}

static int bytes_eq(const kbytes *a, const kbytes *b) {
  return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static void check_request_bounds(const xks_request *r) {
  const xks_req_meta *m = &r->meta;
  FUZZ_CHECK(m->kms_request_id && m->kms_operation, "required metadata present");
  FUZZ_CHECK(strlen(m->kms_request_id) <= XKS_META_STR_MAX, "metadata within 2048");
  FUZZ_CHECK(!m->kms_key_arn || strlen(m->kms_key_arn) <= XKS_META_STR_MAX, "ARN within 2048");
  if (r->op != XKS_OP_HEALTH) FUZZ_CHECK(m->aws_principal_arn != NULL, "principal present");
  if (r->op == XKS_OP_ENCRYPT || r->op == XKS_OP_DECRYPT)
    FUZZ_CHECK(m->kms_key_arn != NULL, "key ARN present");
  if (r->op == XKS_OP_ENCRYPT)
    FUZZ_CHECK(r->plaintext.len >= 1 && r->plaintext.len <= XKS_DATA_MAX, "plaintext 1..4300");
  FUZZ_CHECK(r->aad.len <= XKS_AAD_MAX, "AAD within 8192");
  if (r->op == XKS_OP_DECRYPT) {
    FUZZ_CHECK(r->ciphertext.len >= 1 && r->ciphertext.len <= XKS_DATA_MAX, "ciphertext 1..4300");
    FUZZ_CHECK(r->iv_len == 12 || r->iv_len == 16, "IV 12 or 16");
    FUZZ_CHECK(r->ct_metadata.len <= XKS_CT_METADATA_MAX, "metadata within 20");
  } else {
    FUZZ_CHECK(r->iv_len == 0 && !r->ciphertext.data && !r->has_ct_metadata, "no decrypt fields");
  }
  if (r->op != XKS_OP_ENCRYPT) FUZZ_CHECK(!r->plaintext.data && !r->want_cdiv, "no encrypt fields");
  if (r->op != XKS_OP_ENCRYPT && r->op != XKS_OP_DECRYPT) FUZZ_CHECK(!r->has_aad, "no AAD");
}

/* The string value of `key` in `body` if it is one (for the secrets check). */
static void check_no_secret(const char *body, size_t n, const char *msg) {
  static const char *keys[] = {"plaintext", "additionalAuthenticatedData"};
  json_t *root = json_loadb(body, n, 0, NULL);
  if (!root) return;
  for (size_t i = 0; i < 2; i++) {
    const char *v = json_string_value(json_object_get(root, keys[i]));
    if (v && strlen(v) >= 8 && !strstr(msg_words, v))
      FUZZ_CHECK(strstr(msg, v) == NULL, "a refusal never repeats a secret value");
  }
  json_decref(root);
}

static void check_request(xks_op op, const char *body, size_t n) {
  xks_request r, r2;
  kbytes out = {0}, out2 = {0};
  kerr err;

  kerr_clear(&err);
  if (xks_request_parse(op, body, n, &r, &err) != KERR_OK) {
    FUZZ_CHECK(fuzz_msg_ok(err.msg, sizeof err.msg), "refusal has a message");
    FUZZ_CHECK(err.code == KERR_VALIDATION || err.code == KERR_INVALID_CIPHERTEXT ||
                   err.code == KERR_UNSUPPORTED_OPERATION,
               "refusal is Validation, InvalidCiphertext or UnsupportedOperation");
    FUZZ_CHECK(r.meta.kms_request_id == NULL && r.plaintext.data == NULL, "refusal leaves *out empty");
    check_no_secret(body, n, err.msg);
    return;
  }
  FUZZ_CHECK(r.op == op, "operation kept");
  check_request_bounds(&r);
  FUZZ_CHECK(xks_request_serialize(&r, &out, &err) == KERR_OK, "an accepted request serializes");
  FUZZ_CHECK(xks_request_parse(op, (const char *)out.data, out.len, &r2, &err) == KERR_OK,
             "a serialized request parses");
  FUZZ_CHECK(opt_eq(r.meta.aws_principal_arn, r2.meta.aws_principal_arn) &&
                 opt_eq(r.meta.aws_source_vpc, r2.meta.aws_source_vpc) &&
                 opt_eq(r.meta.aws_source_vpce, r2.meta.aws_source_vpce) &&
                 opt_eq(r.meta.kms_key_arn, r2.meta.kms_key_arn) &&
                 opt_eq(r.meta.kms_operation, r2.meta.kms_operation) &&
                 opt_eq(r.meta.kms_request_id, r2.meta.kms_request_id) &&
                 opt_eq(r.meta.kms_via_service, r2.meta.kms_via_service),
             "metadata survives a round trip");
  FUZZ_CHECK(bytes_eq(&r.plaintext, &r2.plaintext) && bytes_eq(&r.aad, &r2.aad) &&
                 r.has_aad == r2.has_aad && r.want_cdiv == r2.want_cdiv &&
                 bytes_eq(&r.ciphertext, &r2.ciphertext) &&
                 bytes_eq(&r.ct_metadata, &r2.ct_metadata) &&
                 r.has_ct_metadata == r2.has_ct_metadata && r.iv_len == r2.iv_len &&
                 memcmp(r.iv, r2.iv, sizeof r.iv) == 0 && memcmp(r.tag, r2.tag, sizeof r.tag) == 0,
             "fields survive a round trip");
  FUZZ_CHECK(xks_request_serialize(&r2, &out2, &err) == KERR_OK && bytes_eq(&out, &out2),
             "serialization is stable");
  kbytes_wipe_free(&out);
  kbytes_wipe_free(&out2);
  xks_request_free(&r);
  xks_request_free(&r2);
}

static void check_metadata_reply(const char *body, size_t n) {
  xks_key_metadata m, m2;
  kbytes out = {0};
  kerr err;
  if (xks_key_metadata_parse(body, n, &m, &err) != KERR_OK) {
    FUZZ_CHECK(fuzz_msg_ok(err.msg, sizeof err.msg), "refusal has a message");
    return;
  }
  FUZZ_CHECK(m.key_usage_count <= XKS_KEY_USAGE_MAX, "at most 10 usages");
  FUZZ_CHECK(xks_key_metadata_serialize(&m, &out, &err) == KERR_OK, "reply serializes");
  FUZZ_CHECK(xks_key_metadata_parse((const char *)out.data, out.len, &m2, &err) == KERR_OK,
             "reply re-parses");
  FUZZ_CHECK(strcmp(m.key_spec, m2.key_spec) == 0 && strcmp(m.key_status, m2.key_status) == 0 &&
                 m.key_usage_count == m2.key_usage_count,
             "reply survives a round trip");
  for (size_t i = 0; i < m.key_usage_count; i++)
    FUZZ_CHECK(strcmp(m.key_usage[i], m2.key_usage[i]) == 0, "usage survives a round trip");
  kbytes_wipe_free(&out);
  xks_key_metadata_free(&m);
  xks_key_metadata_free(&m2);
}

static void check_encrypt_reply(const char *in, size_t n) {
  xks_encrypt_result r, r2;
  kbytes out = {0};
  kerr err;
  size_t want;
  int cdiv;
  if (n < 2) return;
  want = ((size_t)(uint8_t)in[0] << 8 | (uint8_t)in[1]) & 0x1fff;
  cdiv = (uint8_t)in[0] >> 7;
  if (xks_encrypt_result_parse(in + 2, n - 2, want, cdiv, &r, &err) != KERR_OK) {
    FUZZ_CHECK(fuzz_msg_ok(err.msg, sizeof err.msg), "refusal has a message");
    return;
  }
  FUZZ_CHECK(r.ciphertext.len == want && want >= 1 && want <= XKS_DATA_MAX, "ciphertext length");
  FUZZ_CHECK(r.iv_len == 12 || r.iv_len == 16, "IV 12 or 16");
  FUZZ_CHECK(r.ct_metadata.len <= XKS_CT_METADATA_MAX, "metadata within 20");
  FUZZ_CHECK(r.has_cdiv == cdiv, "CDIV present iff asked");
  FUZZ_CHECK(xks_encrypt_result_serialize(&r, &out, &err) == KERR_OK, "reply serializes");
  FUZZ_CHECK(xks_encrypt_result_parse((const char *)out.data, out.len, want, cdiv, &r2, &err) ==
                 KERR_OK,
             "reply re-parses");
  FUZZ_CHECK(bytes_eq(&r.ciphertext, &r2.ciphertext) && bytes_eq(&r.ct_metadata, &r2.ct_metadata) &&
                 r.iv_len == r2.iv_len && memcmp(r.iv, r2.iv, r.iv_len) == 0 &&
                 memcmp(r.tag, r2.tag, XKS_TAG_LEN) == 0 &&
                 memcmp(r.cdiv, r2.cdiv, XKS_CDIV_LEN) == 0,
             "reply survives a round trip");
  kbytes_wipe_free(&out);
  xks_encrypt_result_free(&r);
  xks_encrypt_result_free(&r2);
}

static void check_decrypt_reply(const char *in, size_t n) {
  xks_decrypt_result r, r2;
  kbytes out = {0};
  kerr err;
  size_t want;
  if (n < 2) return;
  want = ((size_t)(uint8_t)in[0] << 8 | (uint8_t)in[1]) & 0x1fff;
  if (xks_decrypt_result_parse(in + 2, n - 2, want, &r, &err) != KERR_OK) {
    FUZZ_CHECK(fuzz_msg_ok(err.msg, sizeof err.msg), "refusal has a message");
    FUZZ_CHECK(r.plaintext.data == NULL, "refusal leaves *out empty");
    return;
  }
  FUZZ_CHECK(r.plaintext.len == want && want >= 1 && want <= XKS_DATA_MAX, "plaintext length");
  FUZZ_CHECK(xks_decrypt_result_serialize(&r, &out, &err) == KERR_OK, "reply serializes");
  FUZZ_CHECK(xks_decrypt_result_parse((const char *)out.data, out.len, want, &r2, &err) == KERR_OK,
             "reply re-parses");
  FUZZ_CHECK(bytes_eq(&r.plaintext, &r2.plaintext), "reply survives a round trip");
  kbytes_wipe_free(&out);
  xks_decrypt_result_free(&r);
  xks_decrypt_result_free(&r2);
}

static void check_health_reply(const char *body, size_t n) {
  xks_health h, h2;
  kbytes out = {0};
  kerr err;
  if (xks_health_parse(body, n, &h, &err) != KERR_OK) {
    FUZZ_CHECK(fuzz_msg_ok(err.msg, sizeof err.msg), "refusal has a message");
    return;
  }
  FUZZ_CHECK(h.fleet_size > 0 && h.ekm_count >= 1 && h.ekm_count <= XKS_EKM_MAX, "health bounds");
  FUZZ_CHECK(xks_health_serialize(&h, &out, &err) == KERR_OK, "reply serializes");
  FUZZ_CHECK(xks_health_parse((const char *)out.data, out.len, &h2, &err) == KERR_OK,
             "reply re-parses");
  FUZZ_CHECK(h.fleet_size == h2.fleet_size && h.ekm_count == h2.ekm_count &&
                 strcmp(h.proxy_vendor, h2.proxy_vendor) == 0 &&
                 strcmp(h.proxy_model, h2.proxy_model) == 0 &&
                 strcmp(h.ekm_vendor, h2.ekm_vendor) == 0,
             "reply survives a round trip");
  for (size_t i = 0; i < h.ekm_count; i++)
    FUZZ_CHECK(strcmp(h.ekm[i].id, h2.ekm[i].id) == 0 && strcmp(h.ekm[i].model, h2.ekm[i].model) == 0 &&
                   strcmp(h.ekm[i].health_status, h2.ekm[i].health_status) == 0,
               "fleet entry survives a round trip");
  kbytes_wipe_free(&out);
  xks_health_free(&h);
  xks_health_free(&h2);
}

static void check_error_reply(const char *body, size_t n) {
  xks_error e, e2;
  char msg[XKS_ERROR_MESSAGE_MAX + 1], msg2[XKS_ERROR_MESSAGE_MAX + 1];
  kbytes out = {0};
  kerr err;
  if (xks_error_parse(body, n, &e, msg, &err) != KERR_OK) {
    FUZZ_CHECK(fuzz_msg_ok(err.msg, sizeof err.msg), "refusal has a message");
    return;
  }
  FUZZ_CHECK(xks_error_name(e) != NULL, "a known error name");
  FUZZ_CHECK(strlen(msg) <= XKS_ERROR_MESSAGE_MAX, "message within 511");
  for (size_t i = 0; msg[i]; i++) FUZZ_CHECK(msg[i] >= 0x20 && msg[i] <= 0x7e, "printable");
  FUZZ_CHECK(xks_error_serialize(e, msg, &out, &err) == KERR_OK, "error serializes");
  FUZZ_CHECK(xks_error_parse((const char *)out.data, out.len, &e2, msg2, &err) == KERR_OK,
             "error re-parses");
  FUZZ_CHECK(e == e2 && strcmp(msg, msg2) == 0, "error survives a round trip");
  kbytes_wipe_free(&out);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) { return 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *in = (const char *)data + 1;
  size_t n = size ? size - 1 : 0;

  if (size == 0 || size > XKS_BODY_MAX + 16) return 0;
  switch (data[0] % 10) {
  case 0: check_route(in, n); break;
  case 1: check_request(XKS_OP_METADATA, in, n); break;
  case 2: check_request(XKS_OP_ENCRYPT, in, n); break;
  case 3: check_request(XKS_OP_DECRYPT, in, n); break;
  case 4: check_request(XKS_OP_HEALTH, in, n); break;
  case 5: check_metadata_reply(in, n); break;
  case 6: check_encrypt_reply(in, n); break;
  case 7: check_decrypt_reply(in, n); break;
  case 8: check_health_reply(in, n); break;
  default: check_error_reply(in, n); break;
  }
  return 0;
}
