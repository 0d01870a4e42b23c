/* xks_msg.h - the messages of the XKS Proxy API v1, shared by xks-proxy
 * (the server side) and kmsd's XKS client: URI routing, request parsing and
 * building, response building and parsing, the error shape, and the two byte
 * constructions of the spec (the AES-GCM AAD that binds ciphertextMetadata,
 * and the ciphertext data integrity value).  docs/xks.md describes the rules.
 *
 * Errors.  Fallible functions return a kerr_code and fill a `kerr` like the
 * rest of kmsd.  XKS error names are not KMS errors (the same word,
 * ValidationException, means another thing, and kmsd's client must map them
 * to KMS exceptions rather than pass them through), so they are not added to
 * kerr_code: they live in `xks_error` below, and xks_error_from_kerr() maps
 * the few kerr codes this module produces (KERR_VALIDATION,
 * KERR_INVALID_CIPHERTEXT, KERR_UNSUPPORTED_OPERATION, KERR_INTERNAL) to
 * the XKS name the proxy replies with.  Response parsers fail with
 * KERR_XKS_PROXY_INVALID_RESPONSE ("cannot interpret the proxy's reply").
 *
 * Secrets.  Plaintexts and AADs are decoded into secure_alloc'd buffers and
 * wiped on free; serialized messages that carry them are secure buffers too.
 * Error messages name fields, never their values. */
#ifndef KMSD_XKS_MSG_H
#define KMSD_XKS_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "core/kerr.h"
#include "core/secmem.h"

/* Limits (docs/xks.md).  Spec minimums that this implementation also uses
 * as its maximums: a larger value is UnsupportedOperationException (501),
 * which the spec allows only above its minimums. */
#define XKS_URI_PATH_MAX 128        /* XksProxyUriPath */
#define XKS_URI_MAX 256             /* a whole request path */
#define XKS_KEY_ID_MAX 128          /* externalKeyId */
#define XKS_META_STR_MAX 2048       /* any requestMetadata string (ARNs: 2048) */
#define XKS_DATA_MAX 4300           /* plaintext / ciphertext bytes */
#define XKS_AAD_MAX 8192            /* additionalAuthenticatedData bytes */
#define XKS_CT_METADATA_MAX 20      /* ciphertextMetadata bytes (a spec limit) */
#define XKS_BODY_MAX ((size_t)64 * 1024) /* a request or response body */
#define XKS_IV_MAX 16               /* IVs are 12 or 16 bytes */
#define XKS_TAG_LEN 16
#define XKS_CDIV_LEN 32             /* SHA-256 */
#define XKS_KEY_USAGE_MAX 10
#define XKS_EKM_MAX 10
#define XKS_ERROR_MESSAGE_MAX 511   /* errorMessage: < 512 printable ASCII characters */

/* The XKS error names (checklist section 11) plus "none". */
typedef enum xks_error {
  XKS_ERR_NONE = 0,
  XKS_ERR_VALIDATION,             /* 400 ValidationException */
  XKS_ERR_INVALID_STATE,          /* 400 InvalidStateException */
  XKS_ERR_INVALID_CIPHERTEXT,     /* 400 InvalidCiphertextException */
  XKS_ERR_INVALID_KEY_USAGE,      /* 400 InvalidKeyUsageException */
  XKS_ERR_AUTHENTICATION_FAILED,  /* 401 AuthenticationFailedException */
  XKS_ERR_ACCESS_DENIED,          /* 403 AccessDeniedException */
  XKS_ERR_KEY_NOT_FOUND,          /* 404 KeyNotFoundException */
  XKS_ERR_INVALID_URI_PATH,       /* 404 InvalidUriPathException */
  XKS_ERR_THROTTLING,             /* 429 ThrottlingException */
  XKS_ERR_UNSUPPORTED_OPERATION,  /* 501 UnsupportedOperationException */
  XKS_ERR_DEPENDENCY_TIMEOUT,     /* 503 DependencyTimeoutException */
  XKS_ERR_INTERNAL,               /* 500 InternalException */
  XKS_ERR_COUNT_
} xks_error;

/* The errorName of `e` ("ValidationException", ...); NULL for XKS_ERR_NONE
 * or an out-of-range value.  Static storage. */
const char *xks_error_name(xks_error e);

/* The HTTP status of `e` per the spec's table; 500 for anything unknown. */
int xks_error_status(xks_error e);

/* The error named `name` (exact, case-sensitive); XKS_ERR_NONE if unknown. */
xks_error xks_error_from_name(const char *name);

/* The XKS error for a kerr code this module (or a proxy backend) returns:
 * VALIDATION, INVALID_CIPHERTEXT, INVALID_KEY_USAGE, INVALID_STATE,
 * NOT_FOUND (KeyNotFound), ACCESS_DENIED, THROTTLING, UNSUPPORTED_OPERATION,
 * DEPENDENCY_TIMEOUT; everything else is InternalException. */
xks_error xks_error_from_kerr(kerr_code code);

/* ---- URI routing ------------------------------------------------------- */

typedef enum xks_op {
  XKS_OP_NONE = 0,   /* not an API URI */
  XKS_OP_METADATA,   /* GetKeyMetadata */
  XKS_OP_ENCRYPT,
  XKS_OP_DECRYPT,
  XKS_OP_HEALTH,     /* GetHealthStatus */
} xks_op;

typedef struct xks_route {
  xks_op op;                          /* XKS_OP_NONE when status is 404 */
  int status;                         /* 200 (go on), 404 or 405 */
  xks_error error;                    /* NONE, INVALID_URI_PATH (404); NONE for 405 */
  char key_id[XKS_KEY_ID_MAX + 1];    /* externalKeyId of a key operation, else "" */
} xks_route;

/* Check a configured XksProxyUriPath: 1..128 characters of a-z A-Z 0-9 / - _,
 * starting with '/' and ending in "/kms/xks/v1".  KERR_VALIDATION with a
 * message naming the rule otherwise; nothing else changes. */
kerr_code xks_uri_prefix_check(const char *prefix, kerr *err);

/* Classify a request.  `prefix` must have passed xks_uri_prefix_check (a
 * prefix that did not routes nothing: every path is 404).  `path` is the raw
 * request target (`path_len` bytes, need not be NUL-terminated); it may not
 * carry a query or fragment, any percent-encoding, or exceed XKS_URI_MAX
 * characters.  An API URI is prefix + "/health" or prefix + "/keys/<id>/"
 * + "metadata" | "encrypt" | "decrypt".  A path that is not one is 404
 * InvalidUriPathException whatever the method; an API URI with a method other
 * than POST is 405.  Pure: fills *out completely, allocates nothing. */
void xks_route_classify(const char *prefix, const char *method, const char *path,
                        size_t path_len, xks_route *out);

/* ---- requests ---------------------------------------------------------- */

/* requestMetadata.  Strings are malloc'd; absent optional fields are NULL.
 * Unknown fields (and fields another operation uses) are ignored. */
typedef struct xks_req_meta {
  char *aws_principal_arn;  /* R for key ops */
  char *aws_source_vpc;     /* O for key ops */
  char *aws_source_vpce;    /* O for key ops */
  char *kms_key_arn;        /* R for encrypt/decrypt; O (older spec) for metadata */
  char *kms_operation;      /* R; any value accepted */
  char *kms_request_id;     /* R; opaque */
  char *kms_via_service;    /* O for encrypt/decrypt */
} xks_req_meta;

/* One request of any operation.  Byte fields are secure_alloc'd (plaintext,
 * AAD) or malloc'd (the rest; a kbytes with data == NULL is absent). */
typedef struct xks_request {
  xks_op op;
  xks_req_meta meta;
  kbytes plaintext;            /* encrypt: R, 1..XKS_DATA_MAX bytes; secure */
  kbytes aad;                  /* encrypt/decrypt: O, 0..XKS_AAD_MAX; secure */
  int has_aad;
  int want_cdiv;               /* encrypt: ciphertextDataIntegrityValueAlgorithm SHA_256 */
  kbytes ciphertext;           /* decrypt: R, 1..XKS_DATA_MAX */
  kbytes ct_metadata;          /* decrypt: O, 0..XKS_CT_METADATA_MAX */
  int has_ct_metadata;
  uint8_t iv[XKS_IV_MAX];      /* decrypt: R, 12 or 16 bytes */
  size_t iv_len;
  uint8_t tag[XKS_TAG_LEN];    /* decrypt: R */
} xks_request;

/* Parse and validate the JSON body of operation `op` (not XKS_OP_NONE).
 * Strict JSON (duplicate keys refused), at most XKS_BODY_MAX bytes, one
 * object.  Errors: KERR_VALIDATION (missing, mistyped or malformed field,
 * bad base64, wrong algorithm, a spec size rule), KERR_INVALID_CIPHERTEXT
 * (decrypt: IV, tag, ciphertext or ciphertextMetadata of an impossible
 * size), KERR_UNSUPPORTED_OPERATION (a value above this implementation's
 * maximum, which is the spec's minimum), KERR_INTERNAL (memory).  On success
 * the caller owns *out and frees it with xks_request_free; on failure *out is
 * left empty (freeing it is harmless). */
kerr_code xks_request_parse(xks_op op, const char *body, size_t len, xks_request *out, kerr *err);

/* Build the one-line JSON body of `req` (what kmsd's client sends), checking
 * the same rules the parser checks.  On success *out is a NUL-terminated
 * secure buffer (out->len excludes the NUL) the caller frees with
 * kbytes_wipe_free; on failure *out is empty. */
kerr_code xks_request_serialize(const xks_request *req, kbytes *out, kerr *err);

/* Free everything `req` owns (secrets wiped) and zero it.  NULL is allowed. */
void xks_request_free(xks_request *req);

/* ---- responses --------------------------------------------------------- */

typedef struct xks_key_metadata {
  char *key_spec;                          /* e.g. "AES_256" */
  char *key_usage[XKS_KEY_USAGE_MAX];      /* e.g. "ENCRYPT", "DECRYPT" */
  size_t key_usage_count;                  /* 0..10 */
  char *key_status;                        /* "ENABLED" | "DISABLED" */
} xks_key_metadata;

typedef struct xks_encrypt_result {
  kbytes ciphertext;                       /* 1..XKS_DATA_MAX */
  uint8_t iv[XKS_IV_MAX];
  size_t iv_len;                           /* 12 or 16 */
  uint8_t tag[XKS_TAG_LEN];
  kbytes ct_metadata;                      /* O: 0..20 bytes */
  int has_ct_metadata;
  uint8_t cdiv[XKS_CDIV_LEN];
  int has_cdiv;
} xks_encrypt_result;

typedef struct xks_decrypt_result {
  kbytes plaintext;                        /* secure */
} xks_decrypt_result;

typedef struct xks_ekm {
  char *id;
  char *model;
  char *health_status;                     /* ACTIVE | DEGRADED | UNAVAILABLE */
} xks_ekm;

typedef struct xks_health {
  long long fleet_size;                    /* > 0 */
  char *proxy_vendor;
  char *proxy_model;
  char *ekm_vendor;
  xks_ekm ekm[XKS_EKM_MAX];
  size_t ekm_count;                        /* 1..10 */
} xks_health;

/* Serializers: build the one-line JSON success reply of each operation,
 * checking the shape (KERR_INTERNAL when a field breaks the spec: the proxy
 * would otherwise send a reply KMS rejects).  On success *out is a
 * NUL-terminated secure buffer (len excludes the NUL) the caller frees with
 * kbytes_wipe_free; on failure *out is empty. */
kerr_code xks_key_metadata_serialize(const xks_key_metadata *m, kbytes *out, kerr *err);
kerr_code xks_encrypt_result_serialize(const xks_encrypt_result *r, kbytes *out, kerr *err);
kerr_code xks_decrypt_result_serialize(const xks_decrypt_result *r, kbytes *out, kerr *err);
kerr_code xks_health_serialize(const xks_health *h, kbytes *out, kerr *err);

/* The error reply {"errorName": ..., "errorMessage": ...} for `e` (not
 * NONE).  `msg` may be NULL (no errorMessage); otherwise it is cut to
 * XKS_ERROR_MESSAGE_MAX characters and every byte outside 0x20..0x7E becomes
 * '?'.  *out as for the serializers. */
kerr_code xks_error_serialize(xks_error e, const char *msg, kbytes *out, kerr *err);

/* Parsers (kmsd's client side): parse a proxy's 200 reply and check every
 * rule of the spec.  Errors: KERR_XKS_PROXY_INVALID_RESPONSE for anything
 * malformed, KERR_INTERNAL for memory.  On success the caller owns *out and
 * frees it with the matching _free; on failure *out is left empty.
 * xks_encrypt_result_parse checks the ciphertext is `plaintext_len` bytes (never 0) and
 * that a CDIV is present exactly when `want_cdiv`; xks_decrypt_result_parse
 * checks the plaintext is `ciphertext_len` bytes (never 0). */
kerr_code xks_key_metadata_parse(const char *body, size_t len, xks_key_metadata *out, kerr *err);
kerr_code xks_encrypt_result_parse(const char *body, size_t len, size_t plaintext_len,
                                   int want_cdiv, xks_encrypt_result *out, kerr *err);
kerr_code xks_decrypt_result_parse(const char *body, size_t len, size_t ciphertext_len,
                                   xks_decrypt_result *out, kerr *err);
kerr_code xks_health_parse(const char *body, size_t len, xks_health *out, kerr *err);

/* Parse an error reply: *name is the known errorName (an unknown name or a
 * malformed body is KERR_XKS_PROXY_INVALID_RESPONSE); `msg` (may be NULL,
 * else XKS_ERROR_MESSAGE_MAX + 1 bytes) receives errorMessage or "".  The
 * message is for logs only: never pass it to a KMS caller. */
kerr_code xks_error_parse(const char *body, size_t len, xks_error *name, char *msg, kerr *err);

/* Free what each result owns (secrets wiped) and zero it.  NULL allowed. */
void xks_key_metadata_free(xks_key_metadata *m);
void xks_encrypt_result_free(xks_encrypt_result *r);
void xks_decrypt_result_free(xks_decrypt_result *r);
void xks_health_free(xks_health *h);

/* ---- the spec's byte constructions ------------------------------------- */

/* The AES-GCM AAD the proxy gives its key manager (checklist section 7):
 *   len16_be(AAD) || AAD || len8(ciphertextMetadata) || ciphertextMetadata
 * over the decoded bytes; an absent field has length 0.  aad_len must be at
 * most 65535 and md_len at most 255 (KERR_VALIDATION otherwise).  On success
 * *out is a secure buffer the caller frees with kbytes_wipe_free; on failure
 * it is empty. */
kerr_code xks_gcm_aad(const uint8_t *aad, size_t aad_len, const uint8_t *md, size_t md_len,
                      kbytes *out, kerr *err);

/* The ciphertext data integrity value (checklist section 10):
 *   SHA-256( AAD || ciphertextMetadata || IV || ciphertext || tag )
 * over the decoded bytes, no length prefixes; absent AAD or metadata add
 * nothing (pass NULL/0).  Writes 32 bytes to `out`; KERR_INTERNAL if the
 * digest fails (out is then zeroed). */
kerr_code xks_cdiv(const uint8_t *aad, size_t aad_len, const uint8_t *md, size_t md_len,
                   const uint8_t *iv, size_t iv_len, const uint8_t *ct, size_t ct_len,
                   const uint8_t *tag, size_t tag_len, uint8_t out[XKS_CDIV_LEN], kerr *err);

#endif
