/* credentials.h - the principals kmsd knows: access key id -> secret + identity.
 *
 * Loaded from a JSON file (kmsd --credentials FILE, default
 * <data-dir>/credentials.json; docs/kmsd.md describes every member):
 *
 *   { "principals": [ {
 *       "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
 *       "secretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
 *       "sessionToken": "...",               optional: required on requests when set
 *       "accountId": "111122223333",
 *       "arn": "arn:aws:iam::111122223333:root",
 *       "policy": { "Version": "2012-10-17", "Statement": [ ... ] },  optional
 *       "admin": true                        optional, default false: may use the
 *                                            admin API (KmsdAdmin.*)
 *   } ] }
 *
 * The store owns every principal and secret; they live until creds_free. */
#ifndef KMSD_AWS_CREDENTIALS_H
#define KMSD_AWS_CREDENTIALS_H

#include <stddef.h>

#include "aws/principal.h"
#include "core/kerr.h"

typedef struct creds_store creds_store;

/* One known access key. The secret is wiped when the store is freed. */
typedef struct cred_entry {
  principal who;
  char *secret_access_key;  /* owned by the store */
  char *session_token;      /* owned by the store; NULL when none is required */
} cred_entry;

/* Load `path`.  If the file does not exist and `create_default` is non-zero,
 * first write one (mode 0600) holding AWS's documented example key pair as
 * the root of account 111122223333 with full access, marked admin.  Returns KERR_OK and a
 * new store in *out, or KERR_VALIDATION with a message naming the file and
 * the problem (never the secret). */
kerr_code creds_load(const char *path, int create_default, creds_store **out, kerr *err);

/* A store that accepts any access key without checking signatures
 * (--insecure-any-credentials): every caller becomes the root of account
 * 111122223333, not admin (no file says so).  The pipeline must still
 * refuse it off loopback. */
kerr_code creds_any(creds_store **out, kerr *err);

/* A store of bare key pairs, for servers whose callers are not IAM
 * principals (xks-proxy: the SigV4 credentials of a key store): n entries
 * (1..10000) of access_key_ids[i] with secrets[i], copied (secrets into wiped
 * memory); each principal has only its access key id (no account, ARN or
 * policy).  KERR_VALIDATION for an empty or over-long id, an empty secret or a
 * repeated id (the message names ids, never secrets).  The caller frees *out
 * with creds_free. */
kerr_code creds_from_keys(const char *const *access_key_ids, const char *const *secrets, size_t n,
                          creds_store **out, kerr *err);

/* Nonzero when the store was made by creds_any. */
int creds_is_any(const creds_store *s);

/* The entry for `access_key_id`, or NULL. The pointer lives as long as `s`. */
const cred_entry *creds_lookup(const creds_store *s, const char *access_key_id);

void creds_free(creds_store *s);

#endif
