/* hsm_internal.h - what the CloudHSM service's files (lib/cloudhsm/hsm_*.c)
 * share and nobody else sees: the service struct (the cluster manager), the
 * registry of open tokens, wrapped secrets, ids and password hashing.  Not
 * part of any API.
 *
 * One process holds exactly one p11_token per HSM (the "live" entry): PKCS#11
 * login state belongs to the application, not to a handle, so two handles on
 * one token would log each other in and out.  Everything that touches a
 * token - the worker provisioning it, admin operations changing its PIN, a
 * custom key store's crypto calls - goes through that one entry and its
 * lock. */
#ifndef KMSD_CLOUDHSM_HSM_INTERNAL_H
#define KMSD_CLOUDHSM_HSM_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cloudhsm/hsm_admin.h"
#include "cloudhsm/hsm_cluster.h"
#include "cloudhsm/hsm_service.h"
#include "crypto/rootkey.h"
#include "pkcs11/p11.h"
#include "pkcs11/p11_ivbatch.h"
#include "pkcs11/p11_keycache.h"
#include "store/store.h"

#define HSMI_WRAP_KEY_ID "kmsd-cluster-backup-wrap"
#define HSMI_PIN_MAX 32                /* passwords and PINs we keep: 32 bytes */
#define HSMI_MAX_LOGIN_FAILURES 5
#define HSMI_POOL_SIZE 8               /* PKCS#11 sessions per token */
#define HSMI_KMSUSER "kmsuser"
/* How long a working copy of a key serves before the HSM's key is found and
 * copied again: the longest a key deleted on the HSM behind kmsd's back
 * (hsm-cli, another process) stays usable in this one. */
#define HSMI_KEY_REFRESH_MS 5000

/* Names of wrapped secrets (owner, name) in the store. */
#define HSMI_SECRET_SO_PIN "so-pin"     /* owner: cluster id */
#define HSMI_SECRET_USER_PIN "user-pin" /* owner: cluster id; == kmsuser's password */
#define HSMI_SECRET_WRAP_KEY "wrap-key" /* owner: lineage */
#define HSMI_SECRET_CSR_KEY "csr-key"   /* owner: cluster id; P-256 private scalar */

/* One open token. */
typedef struct hsm_live {
  struct hsm_live *next;
  char hsm_id[STORE_HSM_ID_MAX];
  char cluster_id[STORE_HSM_ID_MAX];
  char zone[STORE_REGION_MAX + 2];
  p11_module *mod;
  p11_token *tok;
  p11_keycache *keys;  /* working copies of its keys; NULL when off */
  pthread_mutex_t ivs_lock;
  p11_iv_batch ivs;    /* GCM IVs from its random generator, not yet used */
  /* Readers: crypto calls.  Writer: anything that changes the login state
   * (login, logout, SO work). */
  pthread_rwlock_t lock;
  int refs;            /* guarded by the manager's lock */
  bool dead;           /* HSM deleted: freed when the last reference goes */
  bool retired;        /* logged out for good (HSM deleted); guarded by lock */
} hsm_live;

struct hsm_service {
  /* Borrowed from the opener (hsm_service_config), alive until close. */
  store *st;
  rootkey *rk;
  char data_dir[4096];
  int timeout_ms;                  /* wait for a free PKCS#11 session */
  size_t key_cache;                /* slots of each HSM's p11_keycache */
  pthread_mutex_t lock;            /* lives, pool, softhsm, gen */
  hsm_live *lives;
  p11_module *softhsm;             /* loaded on first use */
  char softhsm_path[4096];
  hsm_pool_entry *pool;            /* --hsm-pool; owned (secrets wiped) */
  bool own_softhsm;                /* SOFTHSM2_CONF is kmsd's (no pool at start) */
  size_t npool;
  uint64_t gen;                    /* bumped whenever an HSM changes state */
  pthread_t worker;
  bool running, stopping, kicked;
  pthread_cond_t cond;
  struct scrub_retry *scrub_retries; /* deleted HSMs whose scrub failed (hsm_manager.c) */
};

/* Begin a transaction on the service's store. */
kerr_code hsmi_begin(hsm_service *svc, bool write, store_tx **tx, kerr *err);

/* Wake the worker now instead of at its next tick. */
void hsmi_kick(hsm_service *m);

/* Bump the HSM generation (connections refresh their HSM list). */
void hsmi_bump(hsm_service *m);
uint64_t hsmi_gen(hsm_service *m);

/* "<prefix>" + 11 characters of [2-7a-z] into out (cap >= strlen(prefix)+12). */
kerr_code hsmi_new_id(const char *prefix, char *out, size_t cap, kerr *err);

/* Wrap a text secret of 1..32 bytes (a PIN or password) under the root key
 * and store it as (owner, name). */
kerr_code hsmi_secret_put_text(hsm_service *svc, store_tx *tx, const char *owner, const char *name,
                               const char *value, kerr *err);
/* Read it back into `out` (33 bytes, NUL-terminated; the caller wipes it). */
kerr_code hsmi_secret_get_text(hsm_service *svc, store_tx *tx, const char *owner, const char *name,
                               char out[HSMI_PIN_MAX + 1], kerr *err);
/* The same for exactly 32 raw bytes (the backup wrapping key). */
kerr_code hsmi_secret_put_raw(hsm_service *svc, store_tx *tx, const char *owner, const char *name,
                              const uint8_t value[32], kerr *err);
kerr_code hsmi_secret_get_raw(hsm_service *svc, store_tx *tx, const char *owner, const char *name,
                              uint8_t out[32], kerr *err);

/* A random 32-character PIN of [a-z2-7] (the caller wipes it). */
kerr_code hsmi_random_pin(char out[HSMI_PIN_MAX + 1], kerr *err);

/* Salted PBKDF2-HMAC-SHA256 of `password` into u->hash with a fresh salt. */
kerr_code hsmi_password_set(store_hsm_user *u, const char *password, kerr *err);
/* 1 when `password` matches u's hash (constant time). */
int hsmi_password_ok(const store_hsm_user *u, const char *password);

/* The live entry of HSM `h`, opening its token if needed (not logged in).
 * Holds a reference: give it back with hsmi_live_put.  KERR_NOT_FOUND only
 * when the module answers and no token carries the HSM's label; a module
 * that cannot be found or loaded gives KERR_KEY_UNAVAILABLE. */
kerr_code hsmi_live_get(hsm_service *m, const store_hsm *h, hsm_live **out, p11_err *err);
void hsmi_live_put(hsm_service *m, hsm_live *l);
/* Forget HSM `hsm_id`: its entry is logged out at once (so another handle
 * may log in to the same token) and closed once unreferenced. */
void hsmi_live_kill(hsm_service *m, const char *hsm_id);

/* With l->lock held for writing: make sure the token is logged in as the
 * user with `pin` (logs out and in again when `force`).  A forced login that
 * fails with an answer saying the module's state of the token went bad
 * (p11_rv_module_state) reinitializes the token's module and tries once
 * more; the caller must hold no session of any token then.  An entry
 * retired by hsmi_live_kill refuses (KERR_KEY_UNAVAILABLE). */
kerr_code hsmi_login_locked(hsm_live *l, const char *pin, bool force, p11_err *err);

/* How hsmi_session_as logs l's token in.  `login` runs before every attempt:
 * on success the token is logged in as the user asked for and the caller
 * holds whatever lock of l its session needs; on failure it holds nothing
 * more than before.  `unlock` (may be NULL) gives that lock back after an
 * attempt that failed, before the next `login`. */
typedef struct hsmi_login {
  kerr_code (*login)(hsm_live *l, void *ctx, p11_err *pe);
  void (*unlock)(hsm_live *l, void *ctx);
  void *ctx;
} hsmi_login;

#define HSMI_LOGIN_ATTEMPTS 3

/* A pooled session of l's token logged in as `user` (CKU_USER or CKU_SO).
 * Logging in and then acquiring is not enough: a reinitialization of the
 * token's module on behalf of another HSM of the same module may end the
 * login in between, and the session would work unauthenticated.  So the
 * session is taken with p11_session_acquire_as, which refuses unless the
 * login is still there, and the login is redone, HSMI_LOGIN_ATTEMPTS times
 * at most (then KERR_KEY_UNAVAILABLE).  A held session keeps
 * reinitializations out, so the login lasts until release (a logout needs
 * l->lock for writing).  On success *s and the lock `login` took are held
 * (release the session, then unlock); on failure neither is. */
kerr_code hsmi_session_as(hsm_live *l, CK_USER_TYPE user, const hsmi_login *how,
                          p11_session **s, p11_err *pe);

/* Set the user PIN of every ACTIVE HSM of `cluster_id` to `pin` (SO login +
 * C_InitPIN) and store it as the cluster's user PIN.  Runs inside `tx`. */
kerr_code hsmi_set_user_pin(hsm_service *svc, store_tx *tx, const store_hsm_cluster *c,
                            const char *pin, kerr *err);

/* The active HSMs of a cluster (state ACTIVE) from the store; *out is new (free()). */
kerr_code hsmi_active_hsms(hsm_service *svc, store_tx *tx, const char *cluster_id, store_hsm **out, size_t *n,
                           kerr *err);

/* Copy a p11_err into a kerr with `code` (NULL: keep its own). */
kerr_code hsmi_from_p11(const p11_err *pe, kerr *err);

/* Persist a cluster's new state and log it. */
kerr_code hsmi_cluster_set_state(hsm_service *svc, store_tx *tx, store_hsm_cluster *c,
                                 const char *state, const char *message, kerr *err);
kerr_code hsmi_hsm_set_state(hsm_service *svc, store_tx *tx, store_hsm *h, const char *state,
                             const char *message, kerr *err);

#endif
