/* xksp_backend.h - the method table between the XKS front end and the keys.
 *
 * The front end (xksp_server.c) speaks HTTP, SigV4, quotas and
 * authorization; everything about where external keys live sits behind this
 * table, in the manner of SQLite's VFS.  xks-proxy ships one implementation,
 * PKCS#11 tokens (xksp_hsm_backend, xksp_hsm.h); tests and the fuzz target
 * plug in others.
 *
 * Contract of every method: it may be called from many threads at once; it
 * returns KERR_OK and fills its output, or a kerr_code with a message that
 * names no secret and leaves the output empty.  The codes a method may
 * return, and the XKS errors the front end turns them into
 * (xks_error_from_kerr): KERR_NOT_FOUND (KeyNotFoundException),
 * KERR_VALIDATION (ValidationException: a request refused before any key
 * is touched, such as an encrypt's plaintext or an AAD or ciphertextMetadata
 * out of bounds), KERR_INVALID_STATE, KERR_INVALID_KEY_USAGE, KERR_INVALID_CIPHERTEXT,
 * KERR_DEPENDENCY_TIMEOUT, KERR_KEY_UNAVAILABLE and KERR_INTERNAL
 * (InternalException). */
#ifndef KMSD_XKSPROXY_XKSP_BACKEND_H
#define KMSD_XKSPROXY_XKSP_BACKEND_H

#include "core/kerr.h"
#include "xks/xks_msg.h"
#include "xksproxy/xksp_config.h"

typedef struct xksp_backend {
  const char *name;  /* "pkcs11" */
  /* Open the keys of one key store; `store` outlives the handle. */
  kerr_code (*open)(const xksp_store_config *store, void **out, kerr *err);
  /* Start background work (health probing); NULL when there is none. */
  kerr_code (*start)(void *be, kerr *err);
  /* Stop and free; no call may be in progress.  NULL allowed. */
  void (*close)(void *be);
  kerr_code (*metadata)(void *be, const char *key_id, xks_key_metadata *out, kerr *err);
  kerr_code (*encrypt)(void *be, const char *key_id, const xks_request *req,
                       xks_encrypt_result *out, kerr *err);
  kerr_code (*decrypt)(void *be, const char *key_id, const xks_request *req,
                       xks_decrypt_result *out, kerr *err);
  /* Fill out->ekm[] and out->ekm_count (1..10) and may set out->ekm_vendor
   * (malloc'd); the front end fills the proxy's own fields. */
  kerr_code (*health)(void *be, xks_health *out, kerr *err);
} xksp_backend;

/* The PKCS#11 implementation (xksp_hsm.c). */
extern const xksp_backend xksp_hsm_backend;

#endif
