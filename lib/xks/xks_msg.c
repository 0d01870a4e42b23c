/* xks_msg.c - XKS Proxy API v1 request and response bodies (parse, check,
 * build) and the spec's two byte constructions, the key-manager AAD and the
 * ciphertext data integrity value.  Rules in xks_msg.h and docs/xks.md.
 *
 * Bodies that carry secrets (plaintext, AAD) are built by hand into secure
 * buffers: base64 text needs no JSON escaping, so only the non-secret
 * strings go through jansson.  When a parsed body held a secret, its string
 * inside jansson's tree is wiped before the tree is freed. */
#include "xks/xks_msg.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/evp_algs.h"
#include "xks/xks_flatjson.h"

#define BAD_REPLY KERR_XKS_PROXY_INVALID_RESPONSE

/* ---- a growing secure text buffer -------------------------------------- */

typedef struct sbuf {
  char *p;
  size_t len, cap;
  int failed;
} sbuf;

static void sb_reserve(sbuf *b, size_t more) {
  size_t want, ncap;
  char *np;

  if (b->failed) return;
  if (more > XKS_BODY_MAX * 4 || b->len + more + 1 > XKS_BODY_MAX * 4) {
    b->failed = 1;
    return;
  }
  want = b->len + more + 1;
  if (want <= b->cap) return;
  ncap = b->cap ? b->cap : 256;
  while (ncap < want) ncap *= 2;
  np = secure_alloc(ncap);
  if (!np) {
    b->failed = 1;
    return;
  }
  if (b->p) memcpy(np, b->p, b->len);
  secure_free(b->p, b->cap);
  b->p = np;
  b->cap = ncap;
}

static void sb_put(sbuf *b, const char *s, size_t n) {
  sb_reserve(b, n);
  if (b->failed) return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A JSON string literal of `s` (must be UTF-8 without NUL). */
static void sb_json_str(sbuf *b, const char *s) {
  json_t *v;
  char *text;

  if (b->failed) return;
  v = json_string(s);
  text = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
  json_decref(v);
  if (!text) {
    b->failed = 1;
    return;
  }
  sb_str(b, text);
  free(text);
}

/* ,"key":"<base64 of d>"  (the leading comma unless `first`). */
static void sb_b64_field(sbuf *b, int first, const char *key, const uint8_t *d, size_t n) {
  size_t need = b64_encoded_size(n);

  if (!first) sb_str(b, ",");
  sb_str(b, "\"");
  sb_str(b, key);
  sb_str(b, "\":\"");
  sb_reserve(b, need);
  if (b->failed) return;
  b->len += b64_encode(d, n, b->p + b->len);
  sb_str(b, "\"");
}

static void sb_str_field(sbuf *b, int first, const char *key, const char *val) {
  if (!first) sb_str(b, ",");
  sb_str(b, "\"");
  sb_str(b, key);
  sb_str(b, "\":");
  sb_json_str(b, val);
}

/* Hand the text to *out, or fail with KERR_INTERNAL and wipe it. */
static kerr_code sb_finish(sbuf *b, kbytes *out, kerr *err) {
  if (b->failed || !b->p) {
    secure_free(b->p, b->cap);
    memset(b, 0, sizeof *b);
    return kerr_set(err, KERR_INTERNAL, "Could not build the XKS message.");
  }
  out->data = (uint8_t *)b->p;
  out->len = b->len;
  /* kbytes_wipe_free wipes len bytes; the rest of the capacity is zero. */
  memset(b, 0, sizeof *b);
  return KERR_OK;
}

/* ---- field readers ----------------------------------------------------- */

static kerr_code load_object(const char *body, size_t len, int reply, json_t **root, kerr *err) {
  json_error_t jerr;

  *root = NULL;
  if (!body || len == 0) {
    if (reply) return kerr_set(err, BAD_REPLY, "The XKS proxy reply is empty.");
    return kerr_set(err, KERR_VALIDATION, "The request body is empty.");
  }
  if (len > XKS_BODY_MAX) {
    if (reply) return kerr_set(err, BAD_REPLY, "The XKS proxy reply is too large.");
    return kerr_set(err, KERR_UNSUPPORTED_OPERATION, "The request body is larger than %zu bytes.",
                    XKS_BODY_MAX);
  }
  /* The common flat shape without jansson's lexer; anything else (and every
   * refusal) is jansson's. */
  *root = xks_flatjson_load(body, len);
  if (!*root) *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!*root || !json_is_object(*root)) {
    json_decref(*root);
    *root = NULL;
    if (reply) return kerr_set(err, BAD_REPLY, "The XKS proxy reply is not a JSON object.");
    return kerr_set(err, KERR_VALIDATION, "The request body is not a JSON object.");
  }
  return KERR_OK;
}

/* Read string `key` of `obj` into a malloc'd copy (NULL when absent and not
 * required).  `bad` is the code of every failure but memory. */
static kerr_code get_str(json_t *obj, const char *where, const char *key, int required,
                         size_t max, kerr_code bad, char **out, kerr *err) {
  json_t *v = json_object_get(obj, key);

  *out = NULL;
  if (!v) {
    if (required) return kerr_set(err, bad, "%s%s is missing.", where, key);
    return KERR_OK;
  }
  if (!json_is_string(v)) return kerr_set(err, bad, "%s%s must be a string.", where, key);
  if (json_string_length(v) > max)
    return kerr_set(err, bad == KERR_VALIDATION ? KERR_UNSUPPORTED_OPERATION : bad,
                    "%s%s is longer than %zu characters.", where, key, max);
  if (strlen(json_string_value(v)) != json_string_length(v))
    return kerr_set(err, bad, "%s%s contains a NUL character.", where, key);
  *out = strdup(json_string_value(v));
  if (!*out) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  return KERR_OK;
}

/* Read the base64 string `key` of `obj` into out (secure_alloc'd when
 * `secret`, then the text inside the tree is wiped too).  Absent and not
 * required: out stays empty, *present = 0.  Failures: missing, not a string,
 * bad base64 -> `bad`; more than `max` bytes -> `too_long`. */
static kerr_code get_b64(json_t *obj, const char *key, int required, size_t max, int secret,
                         kerr_code bad, kerr_code too_long, kbytes *out, int *present,
                         kerr *err) {
  json_t *v = json_object_get(obj, key);
  kerr_code rc = KERR_OK;
  const char *text;
  size_t n, cap = 0, dlen = 0;
  uint8_t *buf = NULL;

  out->data = NULL;
  out->len = 0;
  if (present) *present = 0;
  if (!v) {
    if (required) return kerr_set(err, bad, "%s is missing.", key);
    return KERR_OK;
  }
  if (!json_is_string(v)) return kerr_set(err, bad, "%s must be a base64 string.", key);
  text = json_string_value(v);
  n = json_string_length(v);
  /* Decode before the size check, whatever the size (the body is capped),
   * so that malformed text is always reported as malformed. */
  cap = b64_decoded_max(n) + 1;
  buf = secret ? secure_alloc(cap) : malloc(cap);
  if (!buf) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  if (strlen(text) != n || b64_decode(text, n, buf, &dlen) != 0) {
    rc = kerr_set(err, bad, "%s is not valid base64 (standard alphabet, padded).", key);
    goto out;
  }
  if (dlen > max) {
    rc = kerr_set(err, too_long, "%s is longer than %zu bytes.", key, max);
    goto out;
  }
  out->data = buf;
  out->len = dlen;
  buf = NULL;
  if (present) *present = 1;
out:
  if (buf) {
    if (secret)
      secure_free(buf, cap);
    else
      free(buf);
  }
  /* jansson owns the text; a secret must not outlive the tree in the heap. */
  if (secret) secure_wipe((char *)text, n);
  return rc;
}

static void bytes_free(kbytes *b) {
  free(b->data);
  b->data = NULL;
  b->len = 0;
}

/* ---- requests ---------------------------------------------------------- */

static void meta_free(xks_req_meta *m) {
  free(m->aws_principal_arn);
  free(m->aws_source_vpc);
  free(m->aws_source_vpce);
  free(m->kms_key_arn);
  free(m->kms_operation);
  free(m->kms_request_id);
  free(m->kms_via_service);
  memset(m, 0, sizeof *m);
}

void xks_request_free(xks_request *req) {
  if (!req) return;
  meta_free(&req->meta);
  kbytes_wipe_free(&req->plaintext);
  kbytes_wipe_free(&req->aad);
  bytes_free(&req->ciphertext);
  bytes_free(&req->ct_metadata);
  memset(req, 0, sizeof *req);
}

static kerr_code parse_meta(xks_op op, json_t *root, xks_req_meta *m, kerr *err) {
  static const char w[] = "requestMetadata.";
  json_t *obj = json_object_get(root, "requestMetadata");
  kerr_code rc;
  int key_op = op != XKS_OP_HEALTH, crypto = op == XKS_OP_ENCRYPT || op == XKS_OP_DECRYPT;

  if (!obj) return kerr_set(err, KERR_VALIDATION, "requestMetadata is missing.");
  if (!json_is_object(obj))
    return kerr_set(err, KERR_VALIDATION, "requestMetadata must be an object.");
  rc = get_str(obj, w, "kmsRequestId", 1, XKS_META_STR_MAX, KERR_VALIDATION, &m->kms_request_id,
               err);
  if (!rc)
    rc = get_str(obj, w, "kmsOperation", 1, XKS_META_STR_MAX, KERR_VALIDATION, &m->kms_operation,
                 err);
  if (!rc && key_op)
    rc = get_str(obj, w, "awsPrincipalArn", 1, XKS_META_STR_MAX, KERR_VALIDATION,
                 &m->aws_principal_arn, err);
  if (!rc && key_op)
    rc = get_str(obj, w, "awsSourceVpc", 0, XKS_META_STR_MAX, KERR_VALIDATION, &m->aws_source_vpc,
                 err);
  if (!rc && key_op)
    rc = get_str(obj, w, "awsSourceVpce", 0, XKS_META_STR_MAX, KERR_VALIDATION,
                 &m->aws_source_vpce, err);
  if (!rc && key_op)
    rc = get_str(obj, w, "kmsKeyArn", crypto, XKS_META_STR_MAX, KERR_VALIDATION, &m->kms_key_arn,
                 err);
  if (!rc && crypto)
    rc = get_str(obj, w, "kmsViaService", 0, XKS_META_STR_MAX, KERR_VALIDATION,
                 &m->kms_via_service, err);
  return rc;
}

static kerr_code check_literal(json_t *root, const char *key, const char *want, int required,
                               kerr_code bad, int *present, kerr *err) {
  json_t *v = json_object_get(root, key);

  if (present) *present = v != NULL;
  if (!v) return required ? kerr_set(err, bad, "%s is missing.", key) : KERR_OK;
  if (!json_is_string(v) || strcmp(json_string_value(v), want) != 0 ||
      json_string_length(v) != strlen(want))
    return kerr_set(err, bad, "%s must be %s.", key, want);
  return KERR_OK;
}

kerr_code xks_request_parse(xks_op op, const char *body, size_t len, xks_request *out,
                            kerr *err) {
  json_t *root = NULL;
  kerr_code rc;
  kbytes iv = {0}, tag = {0};

  memset(out, 0, sizeof *out);
  if (op != XKS_OP_METADATA && op != XKS_OP_ENCRYPT && op != XKS_OP_DECRYPT &&
      op != XKS_OP_HEALTH) {
    rc = kerr_set(err, KERR_INTERNAL, "Not an XKS operation.");
    goto out;
  }
  out->op = op;
  rc = load_object(body, len, 0, &root, err);
  if (rc) goto out;
  rc = parse_meta(op, root, &out->meta, err);
  if (rc) goto out;
  if (op == XKS_OP_ENCRYPT) {
    rc = get_b64(root, "plaintext", 1, XKS_DATA_MAX, 1, KERR_VALIDATION,
                 KERR_UNSUPPORTED_OPERATION, &out->plaintext, NULL, err);
    if (!rc && out->plaintext.len == 0)
      rc = kerr_set(err, KERR_VALIDATION, "plaintext must not be empty.");
    if (!rc)
      rc = check_literal(root, "encryptionAlgorithm", "AES_GCM", 1, KERR_VALIDATION, NULL, err);
    if (!rc)
      rc = get_b64(root, "additionalAuthenticatedData", 0, XKS_AAD_MAX, 1, KERR_VALIDATION,
                   KERR_UNSUPPORTED_OPERATION, &out->aad, &out->has_aad, err);
    if (!rc)
      rc = check_literal(root, "ciphertextDataIntegrityValueAlgorithm", "SHA_256", 0,
                         KERR_VALIDATION, &out->want_cdiv, err);
  } else if (op == XKS_OP_DECRYPT) {
    rc = get_b64(root, "ciphertext", 1, XKS_DATA_MAX, 0, KERR_VALIDATION,
                 KERR_UNSUPPORTED_OPERATION, &out->ciphertext, NULL, err);
    if (!rc && out->ciphertext.len == 0)
      rc = kerr_set(err, KERR_INVALID_CIPHERTEXT, "ciphertext must not be empty.");
    if (!rc)
      rc = check_literal(root, "encryptionAlgorithm", "AES_GCM", 1, KERR_VALIDATION, NULL, err);
    if (!rc)
      rc = get_b64(root, "initializationVector", 1, XKS_IV_MAX, 0, KERR_VALIDATION,
                   KERR_INVALID_CIPHERTEXT, &iv, NULL, err);
    if (!rc && iv.len != 12 && iv.len != 16)
      rc = kerr_set(err, KERR_INVALID_CIPHERTEXT, "initializationVector must be 12 or 16 bytes.");
    if (!rc)
      rc = get_b64(root, "authenticationTag", 1, XKS_TAG_LEN, 0, KERR_VALIDATION,
                   KERR_INVALID_CIPHERTEXT, &tag, NULL, err);
    if (!rc && tag.len != XKS_TAG_LEN)
      rc = kerr_set(err, KERR_INVALID_CIPHERTEXT, "authenticationTag must be 16 bytes.");
    if (!rc)
      rc = get_b64(root, "additionalAuthenticatedData", 0, XKS_AAD_MAX, 1, KERR_VALIDATION,
                   KERR_UNSUPPORTED_OPERATION, &out->aad, &out->has_aad, err);
    if (!rc)
      rc = get_b64(root, "ciphertextMetadata", 0, XKS_CT_METADATA_MAX, 0, KERR_VALIDATION,
                   KERR_INVALID_CIPHERTEXT, &out->ct_metadata, &out->has_ct_metadata, err);
    if (!rc) {
      memcpy(out->iv, iv.data, iv.len);
      out->iv_len = iv.len;
      memcpy(out->tag, tag.data, XKS_TAG_LEN);
    }
  }
out:
  bytes_free(&iv);
  bytes_free(&tag);
  json_decref(root);
  if (rc) xks_request_free(out);
  return rc;
}

static void sb_meta(sbuf *b, const xks_req_meta *m) {
  static const struct {
    const char *key;
    size_t off;
  } f[] = {
      {"awsPrincipalArn", offsetof(xks_req_meta, aws_principal_arn)},
      {"awsSourceVpc", offsetof(xks_req_meta, aws_source_vpc)},
      {"awsSourceVpce", offsetof(xks_req_meta, aws_source_vpce)},
      {"kmsKeyArn", offsetof(xks_req_meta, kms_key_arn)},
      {"kmsOperation", offsetof(xks_req_meta, kms_operation)},
      {"kmsRequestId", offsetof(xks_req_meta, kms_request_id)},
      {"kmsViaService", offsetof(xks_req_meta, kms_via_service)},
  };
  int first = 1;

  sb_str(b, "\"requestMetadata\":{");
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    const char *v = *(char *const *)((const char *)m + f[i].off);
    if (!v) continue;
    sb_str_field(b, first, f[i].key, v);
    first = 0;
  }
  sb_str(b, "}");
}

/* The same rules xks_request_parse applies, on a request built in memory. */
static kerr_code check_request(const xks_request *r, kerr *err) {
  const xks_req_meta *m = &r->meta;
  const char *s[] = {m->aws_principal_arn, m->aws_source_vpc, m->aws_source_vpce,
                     m->kms_key_arn,       m->kms_operation,  m->kms_request_id,
                     m->kms_via_service};
  int key_op = r->op != XKS_OP_HEALTH, crypto = r->op == XKS_OP_ENCRYPT || r->op == XKS_OP_DECRYPT;

  if (r->op != XKS_OP_METADATA && r->op != XKS_OP_ENCRYPT && r->op != XKS_OP_DECRYPT &&
      r->op != XKS_OP_HEALTH)
    return kerr_set(err, KERR_VALIDATION, "Not an XKS operation.");
  for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
    if (s[i] && strlen(s[i]) > XKS_META_STR_MAX)
      return kerr_set(err, KERR_VALIDATION, "A requestMetadata value is too long.");
  if (!m->kms_request_id || !m->kms_operation || (key_op && !m->aws_principal_arn) ||
      (crypto && !m->kms_key_arn))
    return kerr_set(err, KERR_VALIDATION, "A required requestMetadata field is missing.");
  if (r->op == XKS_OP_ENCRYPT &&
      (!r->plaintext.data || r->plaintext.len == 0 || r->plaintext.len > XKS_DATA_MAX))
    return kerr_set(err, KERR_VALIDATION, "plaintext must be 1 to %d bytes.", XKS_DATA_MAX);
  if (crypto && r->has_aad && (!r->aad.data || r->aad.len > XKS_AAD_MAX))
    return kerr_set(err, KERR_VALIDATION, "additionalAuthenticatedData is longer than %d bytes.",
                    XKS_AAD_MAX);
  if (r->op == XKS_OP_DECRYPT) {
    if (!r->ciphertext.data || r->ciphertext.len == 0 || r->ciphertext.len > XKS_DATA_MAX)
      return kerr_set(err, KERR_VALIDATION, "ciphertext must be 1 to %d bytes.", XKS_DATA_MAX);
    if (r->iv_len != 12 && r->iv_len != 16)
      return kerr_set(err, KERR_VALIDATION, "initializationVector must be 12 or 16 bytes.");
    if (r->has_ct_metadata && (!r->ct_metadata.data || r->ct_metadata.len > XKS_CT_METADATA_MAX))
      return kerr_set(err, KERR_VALIDATION, "ciphertextMetadata is longer than %d bytes.",
                      XKS_CT_METADATA_MAX);
  }
  return KERR_OK;
}

kerr_code xks_request_serialize(const xks_request *req, kbytes *out, kerr *err) {
  sbuf b = {0};
  kerr_code rc;

  out->data = NULL;
  out->len = 0;
  rc = check_request(req, err);
  if (rc) return rc;
  sb_str(&b, "{");
  sb_meta(&b, &req->meta);
  if (req->op == XKS_OP_ENCRYPT) {
    sb_b64_field(&b, 0, "plaintext", req->plaintext.data, req->plaintext.len);
    sb_str_field(&b, 0, "encryptionAlgorithm", "AES_GCM");
    if (req->has_aad)
      sb_b64_field(&b, 0, "additionalAuthenticatedData", req->aad.data, req->aad.len);
    if (req->want_cdiv) sb_str_field(&b, 0, "ciphertextDataIntegrityValueAlgorithm", "SHA_256");
  } else if (req->op == XKS_OP_DECRYPT) {
    sb_b64_field(&b, 0, "ciphertext", req->ciphertext.data, req->ciphertext.len);
    sb_str_field(&b, 0, "encryptionAlgorithm", "AES_GCM");
    sb_b64_field(&b, 0, "initializationVector", req->iv, req->iv_len);
    sb_b64_field(&b, 0, "authenticationTag", req->tag, XKS_TAG_LEN);
    if (req->has_aad)
      sb_b64_field(&b, 0, "additionalAuthenticatedData", req->aad.data, req->aad.len);
    if (req->has_ct_metadata)
      sb_b64_field(&b, 0, "ciphertextMetadata", req->ct_metadata.data, req->ct_metadata.len);
  }
  sb_str(&b, "}");
  return sb_finish(&b, out, err);
}

/* ---- responses: serializers -------------------------------------------- */

static int known_status(const char *s, const char *const *set, size_t n) {
  for (size_t i = 0; s && i < n; i++)
    if (strcmp(s, set[i]) == 0) return 1;
  return 0;
}

static const char *const key_statuses[] = {"ENABLED", "DISABLED"};
static const char *const ekm_statuses[] = {"ACTIVE", "DEGRADED", "UNAVAILABLE"};

kerr_code xks_key_metadata_serialize(const xks_key_metadata *m, kbytes *out, kerr *err) {
  sbuf b = {0};

  out->data = NULL;
  out->len = 0;
  if (!m->key_spec || m->key_usage_count > XKS_KEY_USAGE_MAX ||
      !known_status(m->key_status, key_statuses, 2))
    return kerr_set(err, KERR_INTERNAL, "The key metadata reply is incomplete.");
  for (size_t i = 0; i < m->key_usage_count; i++)
    if (!m->key_usage[i]) return kerr_set(err, KERR_INTERNAL, "A key usage is missing.");
  sb_str(&b, "{");
  sb_str_field(&b, 1, "keySpec", m->key_spec);
  sb_str(&b, ",\"keyUsage\":[");
  for (size_t i = 0; i < m->key_usage_count; i++) {
    if (i) sb_str(&b, ",");
    sb_json_str(&b, m->key_usage[i]);
  }
  sb_str(&b, "]");
  sb_str_field(&b, 0, "keyStatus", m->key_status);
  sb_str(&b, "}");
  return sb_finish(&b, out, err);
}

kerr_code xks_encrypt_result_serialize(const xks_encrypt_result *r, kbytes *out, kerr *err) {
  sbuf b = {0};

  out->data = NULL;
  out->len = 0;
  if (!r->ciphertext.data || r->ciphertext.len == 0 || r->ciphertext.len > XKS_DATA_MAX ||
      (r->iv_len != 12 && r->iv_len != 16) ||
      (r->has_ct_metadata && (!r->ct_metadata.data || r->ct_metadata.len > XKS_CT_METADATA_MAX)))
    return kerr_set(err, KERR_INTERNAL, "The encrypt reply breaks the XKS size rules.");
  sb_str(&b, "{");
  sb_b64_field(&b, 1, "authenticationTag", r->tag, XKS_TAG_LEN);
  sb_b64_field(&b, 0, "ciphertext", r->ciphertext.data, r->ciphertext.len);
  sb_b64_field(&b, 0, "initializationVector", r->iv, r->iv_len);
  if (r->has_ct_metadata)
    sb_b64_field(&b, 0, "ciphertextMetadata", r->ct_metadata.data, r->ct_metadata.len);
  if (r->has_cdiv) sb_b64_field(&b, 0, "ciphertextDataIntegrityValue", r->cdiv, XKS_CDIV_LEN);
  sb_str(&b, "}");
  return sb_finish(&b, out, err);
}

kerr_code xks_decrypt_result_serialize(const xks_decrypt_result *r, kbytes *out, kerr *err) {
  sbuf b = {0};

  out->data = NULL;
  out->len = 0;
  if (!r->plaintext.data || r->plaintext.len == 0 || r->plaintext.len > XKS_DATA_MAX)
    return kerr_set(err, KERR_INTERNAL, "The decrypt reply breaks the XKS size rules.");
  sb_str(&b, "{");
  sb_b64_field(&b, 1, "plaintext", r->plaintext.data, r->plaintext.len);
  sb_str(&b, "}");
  return sb_finish(&b, out, err);
}

kerr_code xks_health_serialize(const xks_health *h, kbytes *out, kerr *err) {
  sbuf b = {0};
  char num[32];

  out->data = NULL;
  out->len = 0;
  if (h->fleet_size <= 0 || !h->proxy_vendor || !h->proxy_model || !h->ekm_vendor ||
      h->ekm_count == 0 || h->ekm_count > XKS_EKM_MAX)
    return kerr_set(err, KERR_INTERNAL, "The health reply is incomplete.");
  for (size_t i = 0; i < h->ekm_count; i++)
    if (!h->ekm[i].id || !h->ekm[i].model ||
        !known_status(h->ekm[i].health_status, ekm_statuses, 3))
      return kerr_set(err, KERR_INTERNAL, "An ekmFleetDetails entry is incomplete.");
  snprintf(num, sizeof num, "%lld", h->fleet_size);
  sb_str(&b, "{\"xksProxyFleetSize\":");
  sb_str(&b, num);
  sb_str_field(&b, 0, "xksProxyVendor", h->proxy_vendor);
  sb_str_field(&b, 0, "xksProxyModel", h->proxy_model);
  sb_str_field(&b, 0, "ekmVendor", h->ekm_vendor);
  sb_str(&b, ",\"ekmFleetDetails\":[");
  for (size_t i = 0; i < h->ekm_count; i++) {
    sb_str(&b, i ? ",{" : "{");
    sb_str_field(&b, 1, "id", h->ekm[i].id);
    sb_str_field(&b, 0, "model", h->ekm[i].model);
    sb_str_field(&b, 0, "healthStatus", h->ekm[i].health_status);
    sb_str(&b, "}");
  }
  sb_str(&b, "]}");
  return sb_finish(&b, out, err);
}

kerr_code xks_error_serialize(xks_error e, const char *msg, kbytes *out, kerr *err) {
  sbuf b = {0};
  char clean[XKS_ERROR_MESSAGE_MAX + 1];
  size_t n = 0;

  out->data = NULL;
  out->len = 0;
  if (!xks_error_name(e)) return kerr_set(err, KERR_INTERNAL, "Not an XKS error.");
  sb_str(&b, "{");
  sb_str_field(&b, 1, "errorName", xks_error_name(e));
  if (msg) {
    for (; n < XKS_ERROR_MESSAGE_MAX && msg[n]; n++)
      clean[n] = (msg[n] >= 0x20 && msg[n] <= 0x7e) ? msg[n] : '?';
    clean[n] = '\0';
    sb_str_field(&b, 0, "errorMessage", clean);
  }
  sb_str(&b, "}");
  return sb_finish(&b, out, err);
}

/* ---- responses: parsers ------------------------------------------------ */

void xks_key_metadata_free(xks_key_metadata *m) {
  if (!m) return;
  free(m->key_spec);
  for (size_t i = 0; i < XKS_KEY_USAGE_MAX; i++) free(m->key_usage[i]);
  free(m->key_status);
  memset(m, 0, sizeof *m);
}

void xks_encrypt_result_free(xks_encrypt_result *r) {
  if (!r) return;
  bytes_free(&r->ciphertext);
  bytes_free(&r->ct_metadata);
  memset(r, 0, sizeof *r);
}

void xks_decrypt_result_free(xks_decrypt_result *r) {
  if (!r) return;
  kbytes_wipe_free(&r->plaintext);
  memset(r, 0, sizeof *r);
}

void xks_health_free(xks_health *h) {
  if (!h) return;
  free(h->proxy_vendor);
  free(h->proxy_model);
  free(h->ekm_vendor);
  for (size_t i = 0; i < XKS_EKM_MAX; i++) {
    free(h->ekm[i].id);
    free(h->ekm[i].model);
    free(h->ekm[i].health_status);
  }
  memset(h, 0, sizeof *h);
}

kerr_code xks_key_metadata_parse(const char *body, size_t len, xks_key_metadata *out, kerr *err) {
  json_t *root = NULL, *usage;
  kerr_code rc;

  memset(out, 0, sizeof *out);
  rc = load_object(body, len, 1, &root, err);
  if (rc) goto out;
  rc = get_str(root, "", "keySpec", 1, XKS_META_STR_MAX, BAD_REPLY, &out->key_spec, err);
  if (!rc)
    rc = get_str(root, "", "keyStatus", 1, XKS_META_STR_MAX, BAD_REPLY, &out->key_status, err);
  if (!rc && !known_status(out->key_status, key_statuses, 2))
    rc = kerr_set(err, BAD_REPLY, "keyStatus is neither ENABLED nor DISABLED.");
  if (rc) goto out;
  usage = json_object_get(root, "keyUsage");
  if (!json_is_array(usage) || json_array_size(usage) > XKS_KEY_USAGE_MAX) {
    rc = kerr_set(err, BAD_REPLY, "keyUsage must be a list of at most %d strings.",
                  XKS_KEY_USAGE_MAX);
    goto out;
  }
  for (size_t i = 0; i < json_array_size(usage); i++) {
    json_t *v = json_array_get(usage, i);
    if (!json_is_string(v) || json_string_length(v) > XKS_META_STR_MAX ||
        strlen(json_string_value(v)) != json_string_length(v)) {
      rc = kerr_set(err, BAD_REPLY, "keyUsage must be a list of strings.");
      goto out;
    }
    out->key_usage[i] = strdup(json_string_value(v));
    if (!out->key_usage[i]) {
      rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
      goto out;
    }
    out->key_usage_count = i + 1;
  }
out:
  json_decref(root);
  if (rc) xks_key_metadata_free(out);
  return rc;
}

kerr_code xks_encrypt_result_parse(const char *body, size_t len, size_t plaintext_len,
                                   int want_cdiv, xks_encrypt_result *out, kerr *err) {
  json_t *root = NULL;
  kerr_code rc;
  kbytes iv = {0}, tag = {0}, cdiv = {0};

  memset(out, 0, sizeof *out);
  rc = load_object(body, len, 1, &root, err);
  if (rc) goto out;
  rc = get_b64(root, "ciphertext", 1, XKS_DATA_MAX, 0, BAD_REPLY, BAD_REPLY, &out->ciphertext,
               NULL, err);
  if (!rc && (out->ciphertext.len == 0 || out->ciphertext.len != plaintext_len))
    rc = kerr_set(err, BAD_REPLY, "ciphertext is not as long as the plaintext.");
  if (!rc)
    rc = get_b64(root, "initializationVector", 1, XKS_IV_MAX, 0, BAD_REPLY, BAD_REPLY, &iv, NULL,
                 err);
  if (!rc && iv.len != 12 && iv.len != 16)
    rc = kerr_set(err, BAD_REPLY, "initializationVector is not 12 or 16 bytes.");
  if (!rc)
    rc = get_b64(root, "authenticationTag", 1, XKS_TAG_LEN, 0, BAD_REPLY, BAD_REPLY, &tag, NULL,
                 err);
  if (!rc && tag.len != XKS_TAG_LEN)
    rc = kerr_set(err, BAD_REPLY, "authenticationTag is not 16 bytes.");
  if (!rc)
    rc = get_b64(root, "ciphertextMetadata", 0, XKS_CT_METADATA_MAX, 0, BAD_REPLY, BAD_REPLY,
                 &out->ct_metadata, &out->has_ct_metadata, err);
  if (!rc)
    rc = get_b64(root, "ciphertextDataIntegrityValue", 0, XKS_CDIV_LEN, 0, BAD_REPLY, BAD_REPLY,
                 &cdiv, &out->has_cdiv, err);
  if (!rc && out->has_cdiv != (want_cdiv != 0))
    rc = kerr_set(err, BAD_REPLY,
                  want_cdiv ? "ciphertextDataIntegrityValue is missing."
                            : "ciphertextDataIntegrityValue was not asked for.");
  if (!rc && out->has_cdiv && cdiv.len != XKS_CDIV_LEN)
    rc = kerr_set(err, BAD_REPLY, "ciphertextDataIntegrityValue is not 32 bytes.");
  if (!rc) {
    memcpy(out->iv, iv.data, iv.len);
    out->iv_len = iv.len;
    memcpy(out->tag, tag.data, XKS_TAG_LEN);
    if (out->has_cdiv) memcpy(out->cdiv, cdiv.data, XKS_CDIV_LEN);
  }
out:
  bytes_free(&iv);
  bytes_free(&tag);
  bytes_free(&cdiv);
  json_decref(root);
  if (rc) xks_encrypt_result_free(out);
  return rc;
}

kerr_code xks_decrypt_result_parse(const char *body, size_t len, size_t ciphertext_len,
                                   xks_decrypt_result *out, kerr *err) {
  json_t *root = NULL;
  kerr_code rc;

  memset(out, 0, sizeof *out);
  rc = load_object(body, len, 1, &root, err);
  if (rc) goto out;
  rc = get_b64(root, "plaintext", 1, XKS_DATA_MAX, 1, BAD_REPLY, BAD_REPLY, &out->plaintext,
               NULL, err);
  if (!rc && (out->plaintext.len == 0 || out->plaintext.len != ciphertext_len))
    rc = kerr_set(err, BAD_REPLY, "plaintext is not as long as the ciphertext.");
out:
  json_decref(root);
  if (rc) xks_decrypt_result_free(out);
  return rc;
}

kerr_code xks_health_parse(const char *body, size_t len, xks_health *out, kerr *err) {
  json_t *root = NULL, *v, *list;
  kerr_code rc;

  memset(out, 0, sizeof *out);
  rc = load_object(body, len, 1, &root, err);
  if (rc) goto out;
  v = json_object_get(root, "xksProxyFleetSize");
  if (!json_is_integer(v) || json_integer_value(v) <= 0) {
    rc = kerr_set(err, BAD_REPLY, "xksProxyFleetSize must be an integer above 0.");
    goto out;
  }
  out->fleet_size = json_integer_value(v);
  rc = get_str(root, "", "xksProxyVendor", 1, XKS_META_STR_MAX, BAD_REPLY, &out->proxy_vendor,
               err);
  if (!rc)
    rc = get_str(root, "", "xksProxyModel", 1, XKS_META_STR_MAX, BAD_REPLY, &out->proxy_model,
                 err);
  if (!rc)
    rc = get_str(root, "", "ekmVendor", 1, XKS_META_STR_MAX, BAD_REPLY, &out->ekm_vendor, err);
  if (rc) goto out;
  list = json_object_get(root, "ekmFleetDetails");
  if (!json_is_array(list) || json_array_size(list) == 0 ||
      json_array_size(list) > XKS_EKM_MAX) {
    rc = kerr_set(err, BAD_REPLY, "ekmFleetDetails must list 1 to %d entries.", XKS_EKM_MAX);
    goto out;
  }
  for (size_t i = 0; i < json_array_size(list); i++) {
    json_t *e = json_array_get(list, i);
    xks_ekm *k = &out->ekm[i];
    if (!json_is_object(e)) {
      rc = kerr_set(err, BAD_REPLY, "An ekmFleetDetails entry is not an object.");
      goto out;
    }
    out->ekm_count = i + 1;
    rc = get_str(e, "ekmFleetDetails.", "id", 1, XKS_META_STR_MAX, BAD_REPLY, &k->id, err);
    if (!rc)
      rc = get_str(e, "ekmFleetDetails.", "model", 1, XKS_META_STR_MAX, BAD_REPLY, &k->model,
                   err);
    if (!rc)
      rc = get_str(e, "ekmFleetDetails.", "healthStatus", 1, XKS_META_STR_MAX, BAD_REPLY,
                   &k->health_status, err);
    if (!rc && !known_status(k->health_status, ekm_statuses, 3))
      rc = kerr_set(err, BAD_REPLY, "An ekmFleetDetails healthStatus is not a known status.");
    if (rc) goto out;
  }
out:
  json_decref(root);
  if (rc) xks_health_free(out);
  return rc;
}

kerr_code xks_error_parse(const char *body, size_t len, xks_error *name, char *msg, kerr *err) {
  json_t *root = NULL;
  kerr_code rc;
  char *n = NULL, *m = NULL;

  *name = XKS_ERR_NONE;
  if (msg) msg[0] = '\0';
  rc = load_object(body, len, 1, &root, err);
  if (rc) goto out;
  rc = get_str(root, "", "errorName", 1, XKS_META_STR_MAX, BAD_REPLY, &n, err);
  if (!rc && xks_error_from_name(n) == XKS_ERR_NONE)
    rc = kerr_set(err, BAD_REPLY, "errorName is not an XKS error name.");
  if (!rc) rc = get_str(root, "", "errorMessage", 0, XKS_META_STR_MAX, BAD_REPLY, &m, err);
  if (rc) goto out;
  *name = xks_error_from_name(n);
  if (msg && m) {
    size_t i;
    for (i = 0; i < XKS_ERROR_MESSAGE_MAX && m[i]; i++)
      msg[i] = (m[i] >= 0x20 && m[i] <= 0x7e) ? m[i] : '?';
    msg[i] = '\0';
  }
out:
  free(n);
  free(m);
  json_decref(root);
  return rc;
}

/* ---- the spec's byte constructions ------------------------------------- */

kerr_code xks_gcm_aad(const uint8_t *aad, size_t aad_len, const uint8_t *md, size_t md_len,
                      kbytes *out, kerr *err) {
  uint8_t *p;
  size_t n;

  out->data = NULL;
  out->len = 0;
  if (aad_len > 0xffff || md_len > 0xff || (aad_len && !aad) || (md_len && !md))
    return kerr_set(err, KERR_VALIDATION, "The AAD or ciphertext metadata is too long.");
  n = 2 + aad_len + 1 + md_len;
  p = secure_alloc(n);
  if (!p) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  p[0] = (uint8_t)(aad_len >> 8);
  p[1] = (uint8_t)aad_len;
  if (aad_len) memcpy(p + 2, aad, aad_len);
  p[2 + aad_len] = (uint8_t)md_len;
  if (md_len) memcpy(p + 3 + aad_len, md, md_len);
  out->data = p;
  out->len = n;
  return KERR_OK;
}

kerr_code xks_cdiv(const uint8_t *aad, size_t aad_len, const uint8_t *md, size_t md_len,
                   const uint8_t *iv, size_t iv_len, const uint8_t *ct, size_t ct_len,
                   const uint8_t *tag, size_t tag_len, uint8_t out[XKS_CDIV_LEN], kerr *err) {
  const uint8_t *part[5] = {aad, md, iv, ct, tag};
  size_t plen[5] = {aad_len, md_len, iv_len, ct_len, tag_len};
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  unsigned int n = 0;
  kerr_code rc = KERR_OK;
  int ok = ctx && EVP_DigestInit_ex(ctx, evp_sha256(), NULL) == 1;

  for (int i = 0; ok && i < 5; i++)
    if (plen[i]) ok = part[i] && EVP_DigestUpdate(ctx, part[i], plen[i]) == 1;
  if (ok) ok = EVP_DigestFinal_ex(ctx, out, &n) == 1 && n == XKS_CDIV_LEN;
  if (!ok) {
    memset(out, 0, XKS_CDIV_LEN);
    rc = kerr_set(err, KERR_INTERNAL, "Could not compute the ciphertext data integrity value.");
  }
  EVP_MD_CTX_free(ctx);
  return rc;
}
