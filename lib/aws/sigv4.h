/* sigv4.h - AWS Signature Version 4: verify incoming requests, sign outgoing.
 *
 * Verification follows AWS's definition of the canonical request exactly
 * (URI-encoded path segments, sorted query, lowercase trimmed headers, the
 * SignedHeaders list as sent, hex SHA-256 of the body).  Only the
 * Authorization-header form is accepted: a presigned query string is a
 * request without authentication.  The signature must cover Host, the date
 * header used, X-Amz-Target and every X-Amz-* header sent. */
#ifndef KMSD_AWS_SIGV4_H
#define KMSD_AWS_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#include "aws/credentials.h"
#include "core/kerr.h"

typedef struct http_header {
  const char *name;   /* as received; compared case-insensitively */
  const char *value;
} http_header;

typedef struct sigv4_request {
  const char *method;          /* "POST" */
  const char *path;            /* raw request path, e.g. "/" */
  const char *query;           /* raw query string without '?', or NULL */
  const http_header *headers;  /* every header received, repeats allowed */
  size_t nheaders;
  const uint8_t *body;
  size_t body_len;
} sigv4_request;

typedef struct sigv4_result {
  const cred_entry *cred;      /* the caller; lives as long as the creds_store */
  char region[64];             /* from the credential scope */
  char service[64];            /* from the credential scope */
} sigv4_result;

/* Verify `req` against `creds` for `service` ("kms") at time `now_s` (the
 * kclock).  Errors, worded like AWS (but never quoting the Authorization
 * header or more than a short fragment of it):
 *   no Authorization header              -> KERR_MISSING_AUTH_TOKEN
 *   malformed Authorization / X-Amz-Date -> KERR_INCOMPLETE_SIGNATURE
 *   Host not in SignedHeaders            -> KERR_INVALID_SIGNATURE
 *   unknown access key                   -> KERR_UNRECOGNIZED_CLIENT
 *   missing/wrong X-Amz-Security-Token   -> KERR_UNRECOGNIZED_CLIENT
 *   wrong service in scope               -> KERR_INVALID_SIGNATURE
 *   date more than 5 minutes off         -> KERR_INVALID_SIGNATURE ("Signature expired: ...")
 *   the date header, X-Amz-Target or another X-Amz-* header sent but not
 *   in SignedHeaders                     -> KERR_INVALID_SIGNATURE, naming it
 *   signature mismatch                   -> KERR_INVALID_SIGNATURE
 * With a creds_any store the signature is not checked (nor what it covers);
 * the caller is the store's one root principal and the region still comes
 * from the scope.  `out` is filled only on success. */
kerr_code sigv4_verify(const creds_store *creds, const sigv4_request *req, const char *service,
                       int64_t now_s, sigv4_result *out, kerr *err);

/* Client side: compute the Authorization header value for a request that
 * will carry the given headers (must include host and x-amz-date; the names
 * are signed as given).  `out` receives a NUL-terminated value. */
kerr_code sigv4_sign(const sigv4_request *req, const char *access_key_id, const char *secret,
                     const char *region, const char *service, const char *amz_date,
                     char *out, size_t out_size, kerr *err);

/* Signing keys derived during verification and signing are cached per
 * (access key, date, region, service, secret) in a small fixed-size,
 * thread-safe table, so a request costs one HMAC instead of five.  Wipe and
 * empty that table (after reloading credentials, at shutdown, in tests). */
void sigv4_cache_clear(void);

#endif
