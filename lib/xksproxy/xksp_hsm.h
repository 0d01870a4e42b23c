/* xksp_hsm.h - the external keys of one key store, in its PKCS#11 tokens.
 *
 * An external key is an AES secret key object whose CKA_LABEL is the
 * externalKeyId, on every token of the key store (the operator keeps the
 * tokens' keys the same, as an HSM cluster does).  Requests are served by
 * the first token, in configured order, that is usable; a token that fails
 * with a device-class error is marked failed, the request moves to the next
 * one, and the failed token is re-opened (module reinitialized when it has
 * to be, logged in again), so a token that comes back is used again
 * without an operator.  With the prober running (xksp_hsm_start_prober)
 * only the prober re-opens: requests skip failed tokens, a request that
 * fails a token wakes the prober at once, and each token is re-opened with
 * a backoff of XKSP_REOPEN_BACKOFF_MS doubling to 30 s (reset when it
 * opens).  Without a prober the next request that needs a failed token
 * re-opens it, at most once per XKSP_REOPEN_BACKOFF_MS.  A token that
 * cannot be made ready (absent, module restarted without it, login
 * refused) is unavailable, never "key not found".
 *
 * No login per request: each token is logged in once and keeps a pool of
 * sessions (p11.h).  Key handles and attributes are cached per token and
 * dropped when a call says the handle is stale.
 *
 * Threads: every function may be called from any number of threads at
 * once; a background prober (xksp_hsm_start_prober) refreshes the health
 * of every token. */
#ifndef KMSD_XKSPROXY_XKSP_HSM_H
#define KMSD_XKSPROXY_XKSP_HSM_H

#include <stddef.h>
#include <stdint.h>

#include "core/kerr.h"
#include "core/secmem.h"
#include "xks/xks_msg.h"
#include "xksproxy/xksp_config.h"

#define XKSP_REOPEN_BACKOFF_MS 1000

typedef struct xksp_hsm xksp_hsm;

/* Open the tokens of `store` (which must outlive the handle): load the
 * modules, find each token by label, log in, open the pool.  A token that
 * cannot be opened now is not an error (it is retried as above and reported
 * UNAVAILABLE); a configuration no token could ever serve (module missing or
 * not a PKCS#11 module) is KERR_VALIDATION naming the module.  A wrong PIN is
 * KERR_VALIDATION naming the token (never the PIN): a proxy must not keep
 * trying a wrong PIN until the HSM locks the user out.  On success *out is
 * the caller's, freed by xksp_hsm_close; on failure NULL. */
kerr_code xksp_hsm_open(const xksp_store_config *store, xksp_hsm **out, kerr *err);

/* Stop the prober, close every session and token, release the modules.
 * No call may be in progress.  NULL allowed.  The prober stops between
 * tokens; a module call that never returns (a hung HSM: PKCS#11 cannot
 * cancel a call) still blocks this until it does. */
void xksp_hsm_close(xksp_hsm *h);

/* Start the background thread that probes every token each
 * store->health_interval_s seconds (the first probe runs before this
 * returns).  KERR_INTERNAL if the thread cannot start. */
kerr_code xksp_hsm_start_prober(xksp_hsm *h, kerr *err);

/* GetKeyMetadata: fill `m` (caller frees with xks_key_metadata_free) for the
 * key labelled `key_id`.  keySpec "AES_256" (or "AES_128"/"AES_192" for
 * other AES sizes, which then cannot be used); keyUsage ENCRYPT / DECRYPT
 * from CKA_ENCRYPT / CKA_DECRYPT (WRAP / UNWRAP too when set); keyStatus
 * ENABLED when the key can encrypt or decrypt and is not in disabled_keys.
 * Errors: KERR_NOT_FOUND (no such key, or not in the allow-list),
 * KERR_INTERNAL (the label names two keys), KERR_KEY_UNAVAILABLE (no token
 * can serve), KERR_DEPENDENCY_TIMEOUT (no session freed in time). */
kerr_code xksp_hsm_metadata(xksp_hsm *h, const char *key_id, xks_key_metadata *m, kerr *err);

/* Encrypt: AES-256-GCM of req->plaintext under the key, with the AAD of
 * xks_gcm_aad(req->aad, no ciphertextMetadata), a fresh 12-byte IV (from the
 * token, drawn P11_IV_BATCH at a time (p11_ivbatch.h), or the DRBG per
 * iv_source) and a 16-byte tag split from the
 * token's output.  When req->want_cdiv: the CDIV is computed over that
 * output at once, then the output is decrypted again through the decrypt
 * path and compared (the spec's order), and only then returned.  Fills
 * `r` (caller frees with xks_encrypt_result_free).  Errors as metadata,
 * plus KERR_INVALID_STATE (key disabled in the configuration, or DISABLED),
 * KERR_INVALID_KEY_USAGE (key without CKA_ENCRYPT, or not AES-256). */
kerr_code xksp_hsm_encrypt(xksp_hsm *h, const char *key_id, const xks_request *req,
                           xks_encrypt_result *r, kerr *err);

/* Decrypt req->ciphertext with req->iv (12 or 16 bytes), req->tag and the
 * AAD of xks_gcm_aad(req->aad, req->ct_metadata).  Any authentication
 * failure is KERR_INVALID_CIPHERTEXT; usage as encrypt (CKA_DECRYPT).  Fills
 * `r` (plaintext in secure memory; caller frees with
 * xks_decrypt_result_free). */
kerr_code xksp_hsm_decrypt(xksp_hsm *h, const char *key_id, const xks_request *req,
                           xks_decrypt_result *r, kerr *err);

/* Health of each token as last probed: ACTIVE, DEGRADED (answers, but its probe took longer than
 * degraded_ms or the health key's round trip failed) or UNAVAILABLE.
 * Fills h->ekm[0..token_count-1] with id = the token label, model = the
 * token's manufacturer, model and firmware as it reports them, and the
 * status; the caller frees with xks_health_free after filling the rest. */
kerr_code xksp_hsm_health(xksp_hsm *h, xks_health *out, kerr *err);

/* Run one probe of every token now (what the prober does), for tests. */
void xksp_hsm_probe_now(xksp_hsm *h);

/* ---- create-key: making external keys for tests and demos --------------- */

/* Which operations a key made by xksp_create_key allows. */
typedef enum xksp_usage {
  XKSP_USAGE_ENCRYPT_DECRYPT = 0,
  XKSP_USAGE_ENCRYPT = 1,
  XKSP_USAGE_DECRYPT = 2,
  XKSP_USAGE_NONE = 3,
} xksp_usage;

/* Parse "encrypt,decrypt" (or "decrypt,encrypt"), "encrypt", "decrypt" or
 * "none".  -1 when unknown. */
int xksp_usage_parse(const char *s);

/* Generate an AES-256 token key labelled `label` (a valid externalKeyId:
 * 1..128 of A-Z a-z 0-9 - . _, but at most P11_ID_MAX bytes) on the token
 * `token_label` of `module`, logged in with `pin`: sensitive, never
 * extractable, CKA_ENCRYPT / CKA_DECRYPT per `usage`, CKA_ID = CKA_LABEL =
 * label.  KERR_ALREADY_EXISTS if a key with that label exists; KERR_VALIDATION
 * for a bad label, module or token; KERR_ACCESS_DENIED for a wrong PIN. */
kerr_code xksp_create_key(const char *module, const char *token_label, const char *pin,
                          const char *label, xksp_usage usage, kerr *err);

#endif
