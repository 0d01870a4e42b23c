/* hsm_manager.c - the cluster manager: the one open handle per HSM token,
 * the worker thread that moves clusters and HSMs through their asynchronous
 * states, token provisioning and scrubbing, and the small helpers (ids,
 * wrapped secrets, password hashes) the other hsm_*.c files share.
 *
 * Why a worker: CloudHSM's CreateCluster, InitializeCluster, CreateHsm,
 * DeleteHsm and DeleteCluster return at once and finish later.  The API
 * records the *_IN_PROGRESS state; the worker polls the store for such rows
 * and finishes them.  Because the state is durable, a restart simply
 * resumes: there is no in-memory queue to lose.  With several nodes on one
 * store, only the node holding the lease (store_ops.lease_held) runs it,
 * and another takes over where a dead one stopped. */
#include "cloudhsm/hsm_internal.h"

#include <errno.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ids.h"
#include "core/kclock.h"
#include "core/log.h"
#include "core/secmem.h"
#include "crypto/rootkey.h"
#include "pkcs11/p11_softhsm.h"

#define WORKER_TICK_MS 50
#define PBKDF2_ITERATIONS 20000

/* ------------------------------------------------------------- helpers */

kerr_code hsmi_begin(hsm_service *svc, bool write, store_tx **tx, kerr *err) {
  return svc->st->ops->begin(svc->st, write, tx, err);
}

kerr_code hsmi_from_p11(const p11_err *pe, kerr *err) {
  kerr_code code = pe->e.code ? pe->e.code : KERR_INTERNAL;
  return kerr_set(err, code, "%s", pe->e.msg[0] ? pe->e.msg : "PKCS#11 failure");
}

kerr_code hsmi_new_id(const char *prefix, char *out, size_t cap, kerr *err) {
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
  uint8_t raw[11];
  size_t plen = strlen(prefix);
  if (cap < plen + sizeof raw + 1) return kerr_set(err, KERR_INTERNAL, "id buffer too small");
  if (rand_bytes(raw, sizeof raw) != 0) return kerr_set(err, KERR_INTERNAL, "RNG failure");
  memcpy(out, prefix, plen);
  for (size_t i = 0; i < sizeof raw; i++) out[plen + i] = alphabet[raw[i] & 31];
  out[plen + sizeof raw] = '\0';
  return KERR_OK;
}

kerr_code hsmi_secret_put_raw(hsm_service *svc, store_tx *tx, const char *owner, const char *name,
                              const uint8_t value[32], kerr *err) {
  uint8_t wrapped[ROOTKEY_WRAPPED_LEN];
  kerr_code rc = rootkey_wrap(svc->rk, owner, name, value, wrapped, err);
  if (rc) return rc;
  return svc->st->ops->hsm->secret_put(tx, owner, name, wrapped, sizeof wrapped, err);
}

kerr_code hsmi_secret_get_raw(hsm_service *svc, store_tx *tx, const char *owner, const char *name,
                              uint8_t out[32], kerr *err) {
  uint8_t *wrapped = NULL;
  size_t len = 0;
  kerr_code rc = svc->st->ops->hsm->secret_get(tx, owner, name, &wrapped, &len, err);
  if (rc) return rc;
  rc = rootkey_unwrap(svc->rk, owner, name, wrapped, len, out, err);
  free(wrapped);
  return rc;
}

kerr_code hsmi_secret_put_text(hsm_service *svc, store_tx *tx, const char *owner, const char *name,
                               const char *value, kerr *err) {
  uint8_t buf[32] = {0};
  size_t n = strlen(value);
  if (n == 0 || n > HSMI_PIN_MAX) return kerr_set(err, KERR_INTERNAL, "secret of a bad length");
  memcpy(buf, value, n);
  kerr_code rc = hsmi_secret_put_raw(svc, tx, owner, name, buf, err);
  secure_wipe(buf, sizeof buf);
  return rc;
}

kerr_code hsmi_secret_get_text(hsm_service *svc, store_tx *tx, const char *owner, const char *name,
                               char out[HSMI_PIN_MAX + 1], kerr *err) {
  uint8_t buf[32];
  kerr_code rc = hsmi_secret_get_raw(svc, tx, owner, name, buf, err);
  if (rc) return rc;
  memcpy(out, buf, 32);
  out[32] = '\0';
  secure_wipe(buf, sizeof buf);
  return KERR_OK;
}

/* A random PIN of 32 characters from [a-z2-7]. */
kerr_code hsmi_random_pin(char out[HSMI_PIN_MAX + 1], kerr *err) {
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
  uint8_t raw[HSMI_PIN_MAX];
  if (rand_bytes(raw, sizeof raw) != 0) return kerr_set(err, KERR_INTERNAL, "RNG failure");
  for (size_t i = 0; i < sizeof raw; i++) out[i] = alphabet[raw[i] & 31];
  out[HSMI_PIN_MAX] = '\0';
  secure_wipe(raw, sizeof raw);
  return KERR_OK;
}

static void pbkdf2(const char *password, const uint8_t salt[16], uint8_t out[32]) {
  PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, 16, PBKDF2_ITERATIONS, EVP_sha256(),
                    32, out);
}

kerr_code hsmi_password_set(store_hsm_user *u, const char *password, kerr *err) {
  if (rand_bytes(u->salt, sizeof u->salt) != 0) return kerr_set(err, KERR_INTERNAL, "RNG failure");
  pbkdf2(password, u->salt, u->hash);
  return KERR_OK;
}

int hsmi_password_ok(const store_hsm_user *u, const char *password) {
  uint8_t h[32];
  pbkdf2(password, u->salt, h);
  int ok = secure_memcmp(h, u->hash, sizeof h) == 0;
  secure_wipe(h, sizeof h);
  return ok;
}

kerr_code hsmi_cluster_set_state(hsm_service *svc, store_tx *tx, store_hsm_cluster *c,
                                 const char *state, const char *message, kerr *err) {
  char old[STORE_ENUM_MAX];
  snprintf(old, sizeof old, "%s", c->state);
  snprintf(c->state, sizeof c->state, "%s", state);
  snprintf(c->state_message, sizeof c->state_message, "%s", message ? message : "");
  kerr_code rc = svc->st->ops->hsm->cluster_update(tx, c, err);
  if (!rc) log_msg(LOG_INFO, NULL, "cluster %s: %s -> %s", c->cluster_id, old, state);
  return rc;
}

kerr_code hsmi_hsm_set_state(hsm_service *svc, store_tx *tx, store_hsm *h, const char *state,
                             const char *message, kerr *err) {
  char old[STORE_ENUM_MAX];
  snprintf(old, sizeof old, "%s", h->state);
  snprintf(h->state, sizeof h->state, "%s", state);
  snprintf(h->state_message, sizeof h->state_message, "%s", message ? message : "");
  kerr_code rc = svc->st->ops->hsm->hsm_update(tx, h, err);
  if (!rc) {
    log_msg(LOG_INFO, NULL, "hsm %s of %s: %s -> %s", h->hsm_id, h->cluster_id, old, state);
    hsmi_bump(svc);
  }
  return rc;
}

/* The ACTIVE HSMs of a cluster. */
kerr_code hsmi_active_hsms(hsm_service *svc, store_tx *tx, const char *cluster_id, store_hsm **out,
                             size_t *n, kerr *err) {
  store_hsm *all = NULL;
  size_t nall = 0, k = 0;
  kerr_code rc = svc->st->ops->hsm->hsm_list(tx, cluster_id, &all, &nall, err);
  if (rc) return rc;
  for (size_t i = 0; i < nall; i++)
    if (strcmp(all[i].state, "ACTIVE") == 0) all[k++] = all[i];
  *out = all;
  *n = k;
  return KERR_OK;
}

void hsmi_kick(hsm_service *m) {
  if (!m) return;
  pthread_mutex_lock(&m->lock);
  m->kicked = true;
  pthread_cond_signal(&m->cond);
  pthread_mutex_unlock(&m->lock);
}

void hsmi_bump(hsm_service *m) {
  if (!m) return;
  pthread_mutex_lock(&m->lock);
  m->gen++;
  pthread_mutex_unlock(&m->lock);
}

uint64_t hsmi_gen(hsm_service *m) {
  pthread_mutex_lock(&m->lock);
  uint64_t g = m->gen;
  pthread_mutex_unlock(&m->lock);
  return g;
}

/* ------------------------------------------------------------ the pool */

void hsm_pool_entries_free(hsm_pool_entry *pool, size_t n) {
  if (!pool) return;
  for (size_t i = 0; i < n; i++) {
    free(pool[i].module);
    free(pool[i].token_label);
    if (pool[i].so_pin) secure_free(pool[i].so_pin, strlen(pool[i].so_pin) + 1);
    free(pool[i].availability_zone);
  }
  free(pool);
}

static void pool_free(hsm_pool_entry *pool, size_t n) { hsm_pool_entries_free(pool, n); }

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

/* Validate `entries` and copy them into *out (SO PINs in wiped memory). */
static kerr_code pool_copy(const hsm_pool_entry *entries, size_t n, hsm_pool_entry **out,
                           kerr *err) {
  hsm_pool_entry *copy = NULL;
  *out = NULL;
  if (n > HSM_POOL_MAX) return kerr_set(err, KERR_VALIDATION, "HSM pool: at most %d entries", HSM_POOL_MAX);
  for (size_t i = 0; i < n; i++) {
    const hsm_pool_entry *e = &entries[i];
    size_t ll = e->token_label ? strlen(e->token_label) : 0;
    size_t pl = e->so_pin ? strlen(e->so_pin) : 0;
    if (!e->module || e->module[0] != '/' || strlen(e->module) > HSM_POOL_PATH_MAX)
      return kerr_set(err, KERR_VALIDATION,
                      "HSM pool entry %zu: module must be an absolute path of at most %d bytes", i,
                      HSM_POOL_PATH_MAX);
    if (ll < 1 || ll > P11_LABEL_MAX)
      return kerr_set(err, KERR_VALIDATION, "HSM pool entry %zu: tokenLabel must be 1..32 bytes", i);
    if (pl < P11_PIN_MIN || pl > HSMI_PIN_MAX)
      return kerr_set(err, KERR_VALIDATION, "HSM pool entry %zu: soPin must be 4..32 bytes", i);
    if (e->availability_zone &&
        (!e->availability_zone[0] || strlen(e->availability_zone) > STORE_REGION_MAX))
      return kerr_set(err, KERR_VALIDATION, "HSM pool entry %zu: availabilityZone is empty or too long", i);
    for (size_t j = 0; j < i; j++)
      if (strcmp(entries[j].token_label, e->token_label) == 0 &&
          strcmp(entries[j].module, e->module) == 0)
        return kerr_set(err, KERR_VALIDATION, "HSM pool entry %zu repeats token %s", i,
                        e->token_label);
  }
  copy = calloc(n ? n : 1, sizeof *copy);
  if (!copy) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  for (size_t i = 0; i < n; i++) {
    size_t pl = strlen(entries[i].so_pin);
    copy[i].module = strdup(entries[i].module);
    copy[i].token_label = strdup(entries[i].token_label);
    copy[i].availability_zone = dup_or_null(entries[i].availability_zone);
    copy[i].so_pin = secure_alloc(pl + 1);
    if (copy[i].so_pin) memcpy(copy[i].so_pin, entries[i].so_pin, pl);
    if (!copy[i].module || !copy[i].token_label || !copy[i].so_pin ||
        (entries[i].availability_zone && !copy[i].availability_zone)) {
      pool_free(copy, n);
      return kerr_set(err, KERR_INTERNAL, "Out of memory.");
    }
  }
  *out = copy;
  return KERR_OK;
}

/* Pool HSMs are recorded by their entry's index; the operator may reorder or
 * extend the file between runs.  Point every HSM that is not DELETED at the
 * entry carrying its token label, so a reordered file never hands one HSM's
 * token to another.  An HSM whose token the pool no longer lists, or (when
 * `softhsm_reachable` is false) an HSM kmsd made as a SoftHSM2 token under
 * the data directory, cannot be served: KERR_VALIDATION naming it, and the
 * store is left unchanged. */
static kerr_code pool_reconcile(hsm_service *svc, const hsm_pool_entry *pool, size_t n,
                                bool softhsm_reachable, kerr *err) {
  const store_hsm_ops *o = svc->st->ops->hsm;
  store_tx *tx = NULL;
  store_hsm *hs = NULL;
  size_t nhs = 0;
  kerr_code rc = hsmi_begin(svc, true, &tx, err);
  if (rc) return rc;
  rc = o->hsm_list(tx, NULL, &hs, &nhs, err);
  for (size_t i = 0; !rc && i < nhs; i++) {
    store_hsm *h = &hs[i];
    size_t matches = 0, match = 0;
    if (strcmp(h->state, "DELETED") == 0) continue;
    if (h->pool_index < 0) {
      if (!softhsm_reachable)
        rc = kerr_set(err, KERR_VALIDATION,
                      "HSM %s of cluster %s is a SoftHSM2 token kmsd made under its data "
                      "directory, which kmsd does not use while an HSM pool is configured; "
                      "delete that HSM first or start without --hsm-pool",
                      h->hsm_id, h->cluster_id);
      continue;
    }
    if ((size_t)h->pool_index < n && strcmp(pool[h->pool_index].token_label, h->token_label) == 0)
      continue;
    for (size_t j = 0; j < n; j++)
      if (strcmp(pool[j].token_label, h->token_label) == 0) {
        matches++;
        match = j;
      }
    if (matches != 1) {
      rc = kerr_set(err, KERR_VALIDATION,
                    matches ? "HSM %s of cluster %s uses pool token \"%s\", which the HSM pool "
                              "lists more than once (under different modules)"
                            : "HSM %s of cluster %s uses pool token \"%s\", which the HSM pool "
                              "no longer lists",
                    h->hsm_id, h->cluster_id, h->token_label);
      continue;
    }
    log_msg(LOG_INFO, NULL, "hsm %s of %s: pool token %s is now pool entry %zu (was %d)", h->hsm_id,
            h->cluster_id, h->token_label, match, h->pool_index);
    h->pool_index = (int)match;
    rc = o->hsm_update(tx, h, err);
  }
  free(hs);
  if (rc) {
    svc->st->ops->rollback(tx);
    return rc;
  }
  return svc->st->ops->commit(tx, err);
}

/* The pool kmsd --hsm-pool gives before the domain opens (see
 * hsm_clusters_preset_pool); taken by the next hsm_service_open. */
static hsm_pool_entry *preset_pool;
static size_t preset_npool;
static pthread_mutex_t preset_lock = PTHREAD_MUTEX_INITIALIZER;

kerr_code hsm_clusters_preset_pool(const hsm_pool_entry *entries, size_t n, kerr *err) {
  hsm_pool_entry *copy = NULL;
  kerr_code rc = KERR_OK;
  if (n > 0) {
    rc = pool_copy(entries, n, &copy, err);
    if (rc) return rc;
  }
  pthread_mutex_lock(&preset_lock);
  pool_free(preset_pool, preset_npool);
  preset_pool = copy;
  preset_npool = copy ? n : 0;
  pthread_mutex_unlock(&preset_lock);
  return KERR_OK;
}

kerr_code hsm_clusters_set_pool(hsm_service *m, const hsm_pool_entry *entries, size_t n, kerr *err) {
  hsm_pool_entry *copy = NULL;
  if (!m) return kerr_set(err, KERR_INTERNAL, "cluster manager not started");
  if (n == 0 && !m->own_softhsm)
    return kerr_set(err, KERR_VALIDATION,
                    "kmsd started with an HSM pool and makes no SoftHSM2 tokens of its own; "
                    "the pool cannot be emptied");
  kerr_code rc = pool_copy(entries, n, &copy, err);
  if (rc) return rc;
  rc = pool_reconcile(m, copy, n, m->own_softhsm, err);
  if (rc) {
    pool_free(copy, n);
    return rc;
  }
  pthread_mutex_lock(&m->lock);
  pool_free(m->pool, m->npool);
  m->pool = copy;
  m->npool = n;
  m->gen++;
  m->kicked = true;
  pthread_cond_signal(&m->cond);
  pthread_mutex_unlock(&m->lock);
  log_msg(LOG_INFO, NULL, "HSM pool: %zu operator-provisioned token(s)", n);
  return KERR_OK;
}

/* ---------------------------------------------------------- live tokens */

static void live_free(hsm_live *l) {
  if (!l) return;
  p11_token_close(l->tok);
  p11_keycache_free(l->keys);
  p11_iv_batch_wipe(&l->ivs);
  pthread_mutex_destroy(&l->ivs_lock);
  p11_module_release(l->mod);
  pthread_rwlock_destroy(&l->lock);
  free(l);
}

/* With m->lock held: SoftHSM2, loaded on first use. */
static kerr_code softhsm_locked(hsm_service *m, p11_err *pe) {
  kerr_code rc;
  if (m->softhsm) return KERR_OK;
  rc = p11_softhsm_find_module(NULL, m->softhsm_path, sizeof m->softhsm_path, pe);
  if (rc) return rc;
  return p11_module_load(m->softhsm_path, &m->softhsm, pe);
}

bool hsm_service_key_cache_counts(hsm_service *svc, uint64_t *hits, uint64_t *misses) {
  *hits = *misses = 0;
  if (!svc || svc->key_cache == 0) return false;
  pthread_mutex_lock(&svc->lock);
  for (hsm_live *l = svc->lives; l; l = l->next) {
    uint64_t h, m;
    p11_keycache_counts(l->keys, &h, &m);
    *hits += h;
    *misses += m;
  }
  pthread_mutex_unlock(&svc->lock);
  return true;
}

kerr_code hsmi_live_get(hsm_service *m, const store_hsm *h, hsm_live **out, p11_err *pe) {
  kerr_code rc = KERR_OK;
  hsm_live *l;
  p11_module *mod = NULL;
  *out = NULL;
  pthread_mutex_lock(&m->lock);
  for (l = m->lives; l; l = l->next)
    if (!l->dead && strcmp(l->hsm_id, h->hsm_id) == 0) {
      l->refs++;
      *out = l;
      goto out;
    }
  if (h->pool_index >= 0) {
    if ((size_t)h->pool_index >= m->npool) {
      p11_err_clear(pe);
      rc = kerr_set(&pe->e, KERR_KEY_UNAVAILABLE,
                    "HSM %s is a pool token but the HSM pool has no entry %d", h->hsm_id,
                    h->pool_index);
      goto out;
    }
    rc = p11_module_load(m->pool[h->pool_index].module, &mod, pe);
  } else {
    rc = softhsm_locked(m, pe);
    if (!rc) rc = p11_module_load(m->softhsm_path, &mod, pe);
  }
  /* KERR_NOT_FOUND must mean "the module answered and no token carries the
   * label" (a deleted HSM's scrub takes it for "nothing to scrub"), never
   * "the module is missing", after which its token may well come back. */
  if (rc == KERR_NOT_FOUND) rc = pe->e.code = KERR_KEY_UNAVAILABLE;
  if (rc) goto out;
  l = calloc(1, sizeof *l);
  if (!l) {
    p11_err_clear(pe);
    rc = kerr_set(&pe->e, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  snprintf(l->hsm_id, sizeof l->hsm_id, "%s", h->hsm_id);
  snprintf(l->cluster_id, sizeof l->cluster_id, "%s", h->cluster_id);
  snprintf(l->zone, sizeof l->zone, "%s", h->availability_zone);
  pthread_rwlock_init(&l->lock, NULL);
  pthread_mutex_init(&l->ivs_lock, NULL);
  l->mod = mod;
  mod = NULL;
  rc = p11_token_open(l->mod, h->token_label, HSMI_POOL_SIZE, &l->tok, pe);
  /* The operator's --hsm-timeout: how long a request waits for one of this
   * HSM's sessions when all are busy (DependencyTimeoutException after). */
  if (!rc) rc = p11_token_set_acquire_timeout(l->tok, m->timeout_ms, pe);
  if (!rc) rc = p11_keycache_new(m->key_cache, HSMI_KEY_REFRESH_MS, &l->keys, pe);
  if (rc) {
    live_free(l);
    goto out;
  }
  l->refs = 1;
  l->next = m->lives;
  m->lives = l;
  *out = l;
out:
  pthread_mutex_unlock(&m->lock);
  p11_module_release(mod);
  return rc;
}

/* With m->lock held: unlink and free `l` if it is dead and unreferenced. */
static void live_reap_locked(hsm_service *m, hsm_live *l) {
  if (!l->dead || l->refs > 0) return;
  for (hsm_live **pp = &m->lives; *pp; pp = &(*pp)->next)
    if (*pp == l) {
      *pp = l->next;
      live_free(l);
      return;
    }
}

void hsmi_live_put(hsm_service *m, hsm_live *l) {
  if (!l) return;
  pthread_mutex_lock(&m->lock);
  l->refs--;
  live_reap_locked(m, l);
  pthread_mutex_unlock(&m->lock);
}

void hsmi_live_kill(hsm_service *m, const char *hsm_id) {
  hsm_live *victim = NULL;
  pthread_mutex_lock(&m->lock);
  for (hsm_live *l = m->lives; l; l = l->next)
    if (!l->dead && strcmp(l->hsm_id, hsm_id) == 0) {
      l->dead = true;
      l->refs++; /* ours, until it is logged out below */
      victim = l;
      break;
    }
  m->gen++;
  pthread_mutex_unlock(&m->lock);
  if (!victim) return;
  /* Connections may hold the entry a little longer (until they next refresh
   * their HSM list).  Log it out for good now: PKCS#11 login state belongs to
   * the process and token, so a lingering login would break the next handle
   * on this token (scrubbing it, or a pool token going to a new HSM). */
  pthread_rwlock_wrlock(&victim->lock);
  victim->retired = true;
  p11_token_logout(victim->tok, NULL);
  pthread_rwlock_unlock(&victim->lock);
  hsmi_live_put(m, victim);
}

kerr_code hsmi_login_locked(hsm_live *l, const char *pin, bool force, p11_err *pe) {
  if (l->retired) {
    p11_err_clear(pe);
    return kerr_set(&pe->e, KERR_KEY_UNAVAILABLE, "HSM %s has been deleted", l->hsm_id);
  }
  if (force) p11_token_logout(l->tok, NULL);
  if (p11_token_logged_in(l->tok)) return KERR_OK;
  kerr_code rc = p11_token_login(l->tok, pin, pe);
  /* A module may keep a token broken in memory after the fault that broke
   * it is gone (SoftHSM2 after one failed write answers CKR_GENERAL_ERROR to
   * every later C_Login of that token).  Only reinitializing the module
   * brings it back, and that logs out every token of the module in this
   * process, so it is tried only on the deliberate logins (connecting,
   * provisioning, scrubbing), never on the lazy ones of crypto calls: a
   * token that stays broken then costs one reinitialization per connect
   * attempt, not one per request. */
  if (rc && force && p11_rv_module_state(pe->rv)) {
    p11_err re;
    p11_err_clear(&re);
    log_msg(LOG_WARN, NULL, "hsm %s: %s; reinitializing its PKCS#11 module", l->hsm_id, pe->e.msg);
    if (p11_token_recover(l->tok, &re) == KERR_OK)
      rc = p11_token_login(l->tok, pin, pe);
    else
      log_msg(LOG_WARN, NULL, "hsm %s: cannot reinitialize its PKCS#11 module: %s", l->hsm_id,
              re.e.msg);
  }
  return rc;
}

kerr_code hsmi_session_as(hsm_live *l, CK_USER_TYPE user, const hsmi_login *how,
                          p11_session **s, p11_err *pe) {
  *s = NULL;
  for (int attempt = 0; attempt < HSMI_LOGIN_ATTEMPTS; attempt++) {
    kerr_code rc = how->login(l, how->ctx, pe);
    if (rc) return rc;
    rc = p11_session_acquire_as(l->tok, user, s, pe);
    if (!rc) return KERR_OK;
    if (how->unlock) how->unlock(l, how->ctx);
    /* Anything but a login lost since `login` is final. */
    if (pe->rv != CKR_USER_NOT_LOGGED_IN) return rc;
  }
  p11_err_clear(pe);
  return kerr_set(&pe->e, KERR_KEY_UNAVAILABLE,
                  "HSM %s: its PKCS#11 module was reinitialized %d times in a row", l->hsm_id,
                  HSMI_LOGIN_ATTEMPTS);
}

/* With l->lock held for writing: log in as SO (the user is logged out). */
static kerr_code so_login_locked(hsm_live *l, const char *so_pin, p11_err *pe) {
  p11_token_logout(l->tok, NULL);
  return p11_token_login_so(l->tok, so_pin, pe);
}

static kerr_code so_login_cb(hsm_live *l, void *ctx, p11_err *pe) {
  return so_login_locked(l, ctx, pe);
}

/* A forced user login (hsmi_login_locked), which may reinitialize a module
 * that keeps the token broken. */
static kerr_code user_login_cb(hsm_live *l, void *ctx, p11_err *pe) {
  return hsmi_login_locked(l, ctx, true, pe);
}

/* With l->lock held for writing: a session logged in as SO / as the user
 * with a forced login.  The token stays logged in after release. */
static kerr_code so_session_locked(hsm_live *l, const char *so_pin, p11_session **s,
                                   p11_err *pe) {
  hsmi_login how = {so_login_cb, NULL, (void *)so_pin};
  return hsmi_session_as(l, CKU_SO, &how, s, pe);
}

static kerr_code user_session_locked(hsm_live *l, const char *pin, p11_session **s,
                                     p11_err *pe) {
  hsmi_login how = {user_login_cb, NULL, (void *)pin};
  return hsmi_session_as(l, CKU_USER, &how, s, pe);
}

/* With l->lock held for writing: set the user PIN as SO (C_InitPIN).  The
 * token is left logged out. */
static kerr_code init_pin_locked(hsm_live *l, const char *so_pin, const char *user_pin,
                                 p11_err *pe) {
  p11_session *s = NULL;
  kerr_code rc = so_session_locked(l, so_pin, &s, pe);
  if (rc) goto out;
  const CK_FUNCTION_LIST *fl = p11_module_functions(l->mod);
  CK_RV rv = fl->C_InitPIN(p11_session_handle(s), (CK_UTF8CHAR_PTR)user_pin,
                           (CK_ULONG)strlen(user_pin));
  if (rv != CKR_OK) {
    p11_err_clear(pe);
    pe->rv = rv;
    rc = kerr_set(&pe->e, p11_rv_to_kerr(rv), "C_InitPIN failed: %s", p11_rv_name(rv));
  }
out:
  p11_session_release(s);
  p11_token_logout(l->tok, NULL);
  return rc;
}

/* With l->lock held for writing: import the lineage's backup wrapping key
 * as the SO (a trusted, sensitive, non-extractable public object, so only
 * it may wrap the cluster's copyable keys).  Present already: nothing to do. */
static kerr_code import_wrap_key_locked(hsm_live *l, const char *so_pin, const uint8_t key[32],
                                        p11_err *pe) {
  p11_session *s = NULL;
  CK_OBJECT_HANDLE h;
  kerr_code rc = so_session_locked(l, so_pin, &s, pe);
  if (rc) goto out;
  rc = p11_key_find(s, HSMI_WRAP_KEY_ID, &h, pe);
  if (rc != KERR_NOT_FOUND) goto out;
  {
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_BBOOL t = CK_TRUE, f = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_TOKEN, &t, sizeof t},
        {CKA_PRIVATE, &f, sizeof f},
        {CKA_SENSITIVE, &t, sizeof t},
        {CKA_EXTRACTABLE, &f, sizeof f},
        {CKA_WRAP, &t, sizeof t},
        {CKA_UNWRAP, &t, sizeof t},
        {CKA_ENCRYPT, &f, sizeof f},
        {CKA_DECRYPT, &f, sizeof f},
        {CKA_TRUSTED, &t, sizeof t},
        {CKA_ID, (void *)HSMI_WRAP_KEY_ID, sizeof HSMI_WRAP_KEY_ID - 1},
        {CKA_LABEL, (void *)HSMI_WRAP_KEY_ID, sizeof HSMI_WRAP_KEY_ID - 1},
        {CKA_VALUE, (void *)key, 32},
    };
    const CK_FUNCTION_LIST *fl = p11_module_functions(l->mod);
    CK_RV rv = fl->C_CreateObject(p11_session_handle(s), tmpl, sizeof tmpl / sizeof tmpl[0], &h);
    p11_err_clear(pe);
    rc = KERR_OK;
    if (rv != CKR_OK) {
      pe->rv = rv;
      rc = kerr_set(&pe->e, p11_rv_to_kerr(rv), "C_CreateObject (wrapping key) failed: %s",
                    p11_rv_name(rv));
    }
  }
out:
  p11_session_release(s);
  p11_token_logout(l->tok, NULL);
  return rc;
}

/* With l->lock held for writing: log in as the user with `user_pin`
 * (forced) and unwrap every key blob of the lineage the token lacks, as a
 * non-extractable key.  The token stays logged in. */
static kerr_code sync_blobs_locked(hsm_live *l, const char *user_pin,
                                   const store_hsm_blob *blobs, size_t n, p11_err *pe) {
  p11_session *s = NULL;
  CK_OBJECT_HANDLE wrap, h;
  kerr_code rc = user_session_locked(l, user_pin, &s, pe);
  if (rc) return rc;
  rc = p11_key_find(s, HSMI_WRAP_KEY_ID, &wrap, pe);
  for (size_t i = 0; !rc && i < n; i++) {
    rc = p11_key_find(s, blobs[i].label, &h, pe);
    if (rc == KERR_NOT_FOUND)
      rc = p11_key_unwrap(s, wrap, blobs[i].wrapped, blobs[i].wrapped_len, blobs[i].label,
                          P11_KEY_DATA, &h, pe);
  }
  p11_session_release(s);
  return rc;
}

/* With l->lock held for writing, on the token of an HSM being deleted:
 * destroy every object the user can see (keys, the public wrapping key),
 * leaving the token empty, and log out.  Fails, rather than reporting a
 * clean token, when it cannot log in, when the session is not logged in as
 * the user (it would see the public objects only), or when any search or
 * destruction fails; the token may then still hold keys and must not be
 * used again before a scrub succeeds. */
static kerr_code scrub_locked(hsm_live *l, const char *so_pin, const char *user_pin,
                              p11_err *pe) {
  p11_session *s = NULL;
  size_t destroyed = 0;
  kerr_code rc = user_session_locked(l, user_pin, &s, pe);
  /* The token may refuse the cluster's user PIN: an HSM that never became
   * ACTIVE missed every later change of kmsuser's password, and a change
   * may have stopped half way.  The SO then sets it, which is harmless on a
   * token being deleted (its old handle is retired), so that the scrub can
   * see the private keys. */
  if (rc && (pe->e.code == KERR_ACCESS_DENIED || pe->rv == CKR_USER_PIN_NOT_INITIALIZED)) {
    log_msg(LOG_INFO, NULL, "hsm %s: %s; setting the user PIN as the SO to scrub the token",
            l->hsm_id, pe->e.msg);
    rc = init_pin_locked(l, so_pin, user_pin, pe);
    if (!rc) rc = user_session_locked(l, user_pin, &s, pe);
  }
  if (!rc) rc = p11_objects_destroy_all(s, &destroyed, pe);
  p11_session_release(s);
  p11_token_logout(l->tok, NULL);
  if (!rc) log_msg(LOG_INFO, NULL, "hsm %s: token scrubbed (%zu object(s) destroyed)", l->hsm_id,
                   destroyed);
  return rc;
}

/* The SO PIN of HSM `h`: the pool's or the cluster's. */
static kerr_code so_pin_of(hsm_service *m, store_tx *tx, const store_hsm *h,
                           char out[HSMI_PIN_MAX + 1], kerr *err) {
  if (h->pool_index < 0) return hsmi_secret_get_text(m, tx, h->cluster_id, HSMI_SECRET_SO_PIN, out, err);
  pthread_mutex_lock(&m->lock);
  kerr_code rc = KERR_OK;
  if ((size_t)h->pool_index < m->npool)
    snprintf(out, HSMI_PIN_MAX + 1, "%s", m->pool[h->pool_index].so_pin);
  else
    rc = kerr_set(err, KERR_KEY_UNAVAILABLE, "the HSM pool has no entry %d", h->pool_index);
  pthread_mutex_unlock(&m->lock);
  return rc;
}

kerr_code hsmi_set_user_pin(hsm_service *svc, store_tx *tx, const store_hsm_cluster *c,
                            const char *pin, kerr *err) {
  store_hsm *hsms = NULL;
  size_t n = 0;
  char so_pin[HSMI_PIN_MAX + 1] = {0};
  p11_err pe;
  kerr_code rc = hsmi_active_hsms(svc, tx, c->cluster_id, &hsms, &n, err);
  if (rc) return rc;
  for (size_t i = 0; i < n; i++) {
    hsm_live *l = NULL;
    rc = so_pin_of(svc, tx, &hsms[i], so_pin, err);
    if (rc) goto out;
    p11_err_clear(&pe);
    rc = hsmi_live_get(svc, &hsms[i], &l, &pe);
    if (!rc) {
      pthread_rwlock_wrlock(&l->lock);
      rc = init_pin_locked(l, so_pin, pin, &pe);
      pthread_rwlock_unlock(&l->lock);
    }
    hsmi_live_put(svc, l);
    if (rc) {
      rc = kerr_set(err, KERR_HSM_INTERNAL_FAILURE, "Cannot set the user PIN of HSM %s: %s",
                    hsms[i].hsm_id, pe.e.msg);
      goto out;
    }
  }
  rc = hsmi_secret_put_text(svc, tx, c->cluster_id, HSMI_SECRET_USER_PIN, pin, err);
out:
  secure_wipe(so_pin, sizeof so_pin);
  free(hsms);
  return rc;
}

/* ------------------------------------------------------- worker steps */

/* A deleted HSM whose scrub failed stays DELETE_IN_PROGRESS and is tried
 * again after a pause that doubles from SCRUB_RETRY_MIN_MS up to
 * SCRUB_RETRY_MAX_MS: a token that stays unusable then costs one attempt
 * (and perhaps one module reinitialization, which logs out every token of
 * the module) per pause, not one per worker tick.  In memory only: after a
 * restart the first attempt comes at once. */
#define SCRUB_RETRY_MIN_MS 1000
#define SCRUB_RETRY_MAX_MS 60000

struct scrub_retry {
  struct scrub_retry *next;
  char hsm_id[STORE_HSM_ID_MAX];
  struct timespec not_before;    /* CLOCK_MONOTONIC */
  unsigned failures;
};

static bool before(const struct timespec *a, const struct timespec *b) {
  return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* With m->lock held. */
static struct scrub_retry **scrub_retry_find_locked(hsm_service *m, const char *hsm_id) {
  struct scrub_retry **pp = &m->scrub_retries;
  while (*pp && strcmp((*pp)->hsm_id, hsm_id) != 0) pp = &(*pp)->next;
  return pp;
}

/* false while HSM `hsm_id`'s last failed scrub is still pausing. */
static bool scrub_due(hsm_service *m, const char *hsm_id) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  pthread_mutex_lock(&m->lock);
  struct scrub_retry *r = *scrub_retry_find_locked(m, hsm_id);
  bool due = !r || !before(&now, &r->not_before);
  pthread_mutex_unlock(&m->lock);
  return due;
}

/* Record a failed scrub of `hsm_id`; returns the pause before the next one
 * in ms.  Out of memory: no pause (retried at the next tick). */
static long scrub_failed(hsm_service *m, const char *hsm_id) {
  long pause = 0;
  pthread_mutex_lock(&m->lock);
  struct scrub_retry **pp = scrub_retry_find_locked(m, hsm_id);
  if (!*pp && (*pp = calloc(1, sizeof **pp)) != NULL)
    snprintf((*pp)->hsm_id, sizeof (*pp)->hsm_id, "%s", hsm_id);
  if (*pp) {
    struct scrub_retry *r = *pp;
    pause = SCRUB_RETRY_MIN_MS;
    for (unsigned i = 0; i < r->failures && pause < SCRUB_RETRY_MAX_MS; i++) pause *= 2;
    if (pause > SCRUB_RETRY_MAX_MS) pause = SCRUB_RETRY_MAX_MS;
    r->failures++;
    clock_gettime(CLOCK_MONOTONIC, &r->not_before);
    r->not_before.tv_sec += pause / 1000;
    r->not_before.tv_nsec += (pause % 1000) * 1000000L;
    if (r->not_before.tv_nsec >= 1000000000L) {
      r->not_before.tv_sec++;
      r->not_before.tv_nsec -= 1000000000L;
    }
  }
  pthread_mutex_unlock(&m->lock);
  return pause;
}

static void scrub_forget(hsm_service *m, const char *hsm_id) {
  pthread_mutex_lock(&m->lock);
  struct scrub_retry **pp = scrub_retry_find_locked(m, hsm_id);
  struct scrub_retry *r = *pp;
  if (r) *pp = r->next;
  pthread_mutex_unlock(&m->lock);
  free(r);
}

/* A P-256 key pair and a CSR for the cluster; the private scalar is kept
 * wrapped under the root key. */
static kerr_code make_csr(hsm_service *svc, store_tx *tx, store_hsm_cluster *c, kerr *err) {
  kerr_code rc = KERR_OK;
  EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  X509_REQ *req = X509_REQ_new();
  X509_NAME *name = X509_NAME_new();
  BIO *bio = BIO_new(BIO_s_mem());
  BIGNUM *priv = NULL;
  uint8_t scalar[32];
  char *pem = NULL;
  if (!key || !req || !name || !bio) {
    rc = kerr_set(err, KERR_INTERNAL, "OpenSSL could not make the cluster key");
    goto out;
  }
  X509_NAME_add_entry_by_txt(name, "C", MBSTRING_ASC, (const unsigned char *)"US", -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"kmsd", -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_ASC, (const unsigned char *)c->account_id, -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)c->cluster_id, -1, -1, 0);
  if (X509_REQ_set_version(req, 0) != 1 || X509_REQ_set_subject_name(req, name) != 1 ||
      X509_REQ_set_pubkey(req, key) != 1 || X509_REQ_sign(req, key, EVP_sha256()) <= 0 ||
      PEM_write_bio_X509_REQ(bio, req) != 1 ||
      EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &priv) != 1 ||
      BN_bn2binpad(priv, scalar, sizeof scalar) != (int)sizeof scalar) {
    rc = kerr_set(err, KERR_INTERNAL, "OpenSSL could not make the cluster CSR");
    goto out;
  }
  {
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    pem = malloc((size_t)len + 1);
    if (!pem) {
      rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
      goto out;
    }
    memcpy(pem, data, (size_t)len);
    pem[len] = '\0';
  }
  rc = hsmi_secret_put_raw(svc, tx, c->cluster_id, HSMI_SECRET_CSR_KEY, scalar, err);
  if (rc) goto out;
  free(c->csr_pem);
  c->csr_pem = pem;
  pem = NULL;
out:
  secure_wipe(scalar, sizeof scalar);
  BN_clear_free(priv);
  free(pem);
  BIO_free(bio);
  X509_NAME_free(name);
  X509_REQ_free(req);
  EVP_PKEY_free(key);
  return rc;
}

static kerr_code record_backup(hsm_service *svc, store_tx *tx, const store_hsm_cluster *c, kerr *err) {
  store_hsm_backup b;
  memset(&b, 0, sizeof b);
  kerr_code rc = hsmi_new_id("backup-", b.backup_id, sizeof b.backup_id, err);
  if (rc) return rc;
  snprintf(b.cluster_id, sizeof b.cluster_id, "%s", c->cluster_id);
  snprintf(b.account_id, sizeof b.account_id, "%s", c->account_id);
  snprintf(b.region, sizeof b.region, "%s", c->region);
  snprintf(b.lineage, sizeof b.lineage, "%s", c->lineage);
  snprintf(b.state, sizeof b.state, "READY");
  snprintf(b.hsm_type, sizeof b.hsm_type, "%s", c->hsm_type);
  snprintf(b.mode, sizeof b.mode, "%s", c->mode);
  b.created_ms = kclock_now_ms();
  return svc->st->ops->hsm->backup_insert(tx, &b, err);
}

/* A cluster made from a backup inherits the source cluster's users,
 * certificates and user PIN; its keys come from the shared lineage. */
static kerr_code restore_from_backup(hsm_service *svc, store_tx *tx, store_hsm_cluster *c, kerr *err) {
  const store_hsm_ops *o = svc->st->ops->hsm;
  store_hsm_backup b;
  store_hsm_cluster src;
  store_hsm_user *users = NULL;
  size_t n = 0;
  char pin[HSMI_PIN_MAX + 1] = {0};
  memset(&src, 0, sizeof src);
  kerr_code rc = o->backup_get(tx, c->source_backup_id, &b, err);
  if (rc) goto out;
  rc = o->cluster_get(tx, b.cluster_id, &src, err);
  if (rc) goto out;
  rc = o->user_list(tx, src.cluster_id, &users, &n, err);
  if (rc) goto out;
  for (size_t i = 0; i < n; i++) {
    snprintf(users[i].cluster_id, sizeof users[i].cluster_id, "%s", c->cluster_id);
    users[i].logged_in = false;
    rc = o->user_put(tx, &users[i], err);
    if (rc) goto out;
  }
  rc = hsmi_secret_get_text(svc, tx, src.cluster_id, HSMI_SECRET_USER_PIN, pin, err);
  if (rc) goto out;
  rc = hsmi_secret_put_text(svc, tx, c->cluster_id, HSMI_SECRET_USER_PIN, pin, err);
  if (rc) goto out;
  free(c->csr_pem);
  free(c->trust_anchor_pem);
  free(c->cluster_cert_pem);
  c->csr_pem = src.csr_pem;
  c->trust_anchor_pem = src.trust_anchor_pem;
  c->cluster_cert_pem = src.cluster_cert_pem;
  src.csr_pem = src.trust_anchor_pem = src.cluster_cert_pem = NULL;
out:
  secure_wipe(pin, sizeof pin);
  free(users);
  store_hsm_cluster_clear(&src);
  return rc;
}

static void step_cluster(hsm_service *svc, const char *cluster_id) {
  const store_hsm_ops *o = svc->st->ops->hsm;
  store_tx *tx = NULL;
  store_hsm_cluster c;
  kerr err;
  memset(&c, 0, sizeof c);
  kerr_code rc = hsmi_begin(svc, true, &tx, &err);
  if (rc) goto out;
  rc = o->cluster_get(tx, cluster_id, &c, &err);
  if (rc) goto out;
  if (strcmp(c.state, "CREATE_IN_PROGRESS") == 0) {
    if (c.source_backup_id[0]) {
      rc = restore_from_backup(svc, tx, &c, &err);
      if (!rc) rc = hsmi_cluster_set_state(svc, tx, &c, "ACTIVE", "Cluster restored from backup", &err);
    } else {
      rc = make_csr(svc, tx, &c, &err);
      if (!rc) rc = hsmi_cluster_set_state(svc, tx, &c, "UNINITIALIZED", "", &err);
    }
  } else if (strcmp(c.state, "INITIALIZE_IN_PROGRESS") == 0) {
    rc = hsmi_cluster_set_state(svc, tx, &c, "INITIALIZED", "Cluster is initialized", &err);
  } else if (strcmp(c.state, "DELETE_IN_PROGRESS") == 0) {
    rc = hsmi_cluster_set_state(svc, tx, &c, "DELETED", "", &err);
  }
  if (rc) goto out;
  rc = svc->st->ops->commit(tx, &err);
  tx = NULL;
out:
  if (tx) svc->st->ops->rollback(tx);
  if (rc) log_msg(LOG_ERROR, NULL, "cluster %s: worker step failed: %s", cluster_id, err.msg);
  store_hsm_cluster_clear(&c);
}

/* Secrets a token step needs, read in one short transaction. */
typedef struct token_secrets {
  char so_pin[HSMI_PIN_MAX + 1];
  char user_pin[HSMI_PIN_MAX + 1];
  uint8_t wrap_key[32];
  store_hsm_blob *blobs;
  size_t nblobs;
} token_secrets;

static void token_secrets_clear(token_secrets *t) {
  free(t->blobs);
  secure_wipe(t, sizeof *t);
}

static kerr_code read_token_secrets(hsm_service *svc, const store_hsm *h, token_secrets *t,
                                    bool need_blobs, kerr *err) {
  const store_hsm_ops *o = svc->st->ops->hsm;
  store_tx *tx = NULL;
  store_hsm_cluster c;
  memset(&c, 0, sizeof c);
  kerr_code rc = hsmi_begin(svc, false, &tx, err);
  if (rc) return rc;
  rc = o->cluster_get(tx, h->cluster_id, &c, err);
  if (!rc) rc = so_pin_of(svc, tx, h, t->so_pin, err);
  if (!rc) rc = hsmi_secret_get_text(svc, tx, h->cluster_id, HSMI_SECRET_USER_PIN, t->user_pin, err);
  if (!rc && need_blobs) rc = hsmi_secret_get_raw(svc, tx, c.lineage, HSMI_SECRET_WRAP_KEY, t->wrap_key, err);
  if (!rc && need_blobs) rc = o->blob_list(tx, c.lineage, &t->blobs, &t->nblobs, err);
  svc->st->ops->rollback(tx);
  store_hsm_cluster_clear(&c);
  return rc;
}

/* Make HSM `h` a working member of its cluster: a token with the cluster's
 * PINs, the lineage's wrapping key and every key of the lineage. */
static kerr_code provision(hsm_service *m, const store_hsm *h, char *used_pin, kerr *err) {
  token_secrets t;
  hsm_live *l = NULL;
  p11_err pe;
  memset(&t, 0, sizeof t);
  p11_err_clear(&pe);
  kerr_code rc = read_token_secrets(m, h, &t, true, err);
  if (rc) goto out;
  if (h->pool_index < 0) {
    CK_SLOT_ID slot;
    pthread_mutex_lock(&m->lock);
    rc = softhsm_locked(m, &pe);
    pthread_mutex_unlock(&m->lock);
    if (!rc) rc = p11_softhsm_provision(m->softhsm, h->token_label, t.so_pin, t.user_pin, &slot, &pe);
    if (rc == KERR_ALREADY_EXISTS) rc = KERR_OK; /* a previous run got this far */
    if (rc) goto p11fail;
  }
  rc = hsmi_live_get(m, h, &l, &pe);
  if (rc) goto p11fail;
  pthread_rwlock_wrlock(&l->lock);
  rc = init_pin_locked(l, t.so_pin, t.user_pin, &pe);
  if (!rc) rc = import_wrap_key_locked(l, t.so_pin, t.wrap_key, &pe);
  if (!rc) rc = sync_blobs_locked(l, t.user_pin, t.blobs, t.nblobs, &pe);
  pthread_rwlock_unlock(&l->lock);
  if (rc) goto p11fail;
  snprintf(used_pin, HSMI_PIN_MAX + 1, "%s", t.user_pin);
  goto out;
p11fail:
  rc = kerr_set(err, KERR_HSM_INTERNAL_FAILURE, "%s", pe.e.msg);
out:
  hsmi_live_put(m, l);
  token_secrets_clear(&t);
  return rc;
}

/* Scrub the token of HSM `h`, which is being deleted, and log its handle
 * out for good.  KERR_OK when the token is clean, or when the module
 * answers and no token carries the label (the token was never made).  Any
 * other outcome fails: the token may still hold the cluster's keys. */
static kerr_code scrub_hsm(hsm_service *svc, const store_hsm *h, kerr *err) {
  token_secrets t;
  hsm_live *l = NULL;
  p11_err pe;
  memset(&t, 0, sizeof t);
  p11_err_clear(&pe);
  hsmi_live_kill(svc, h->hsm_id);
  kerr_code rc = read_token_secrets(svc, h, &t, false, err);
  if (rc) goto out;
  rc = hsmi_live_get(svc, h, &l, &pe);
  if (rc == KERR_NOT_FOUND) {
    rc = KERR_OK;
    goto out;
  }
  if (!rc) {
    pthread_rwlock_wrlock(&l->lock);
    rc = scrub_locked(l, t.so_pin, t.user_pin, &pe);
    pthread_rwlock_unlock(&l->lock);
  }
  if (rc) rc = kerr_set(err, KERR_HSM_INTERNAL_FAILURE, "%s", pe.e.msg);
out:
  hsmi_live_put(svc, l);
  hsmi_live_kill(svc, h->hsm_id);
  token_secrets_clear(&t);
  return rc;
}

static void step_hsm(hsm_service *svc, const store_hsm *snapshot) {
  const store_hsm_ops *o = svc->st->ops->hsm;
  store_tx *tx = NULL;
  store_hsm_cluster c;
  store_hsm *all = NULL, *h = NULL;
  size_t n = 0;
  kerr err;
  char used_pin[HSMI_PIN_MAX + 1] = {0}, pin_now[HSMI_PIN_MAX + 1] = {0};
  bool creating = strcmp(snapshot->state, "CREATE_IN_PROGRESS") == 0;
  kerr_code rc, step_rc = KERR_OK;
  memset(&c, 0, sizeof c);
  kerr_clear(&err);

  if (creating) {
    if (snapshot->pool_index >= 0) {
      pthread_mutex_lock(&svc->lock);
      bool loaded = (size_t)snapshot->pool_index < svc->npool;
      pthread_mutex_unlock(&svc->lock);
      if (!loaded) return; /* waits for --hsm-pool */
    }
    step_rc = provision(svc, snapshot, used_pin, &err);
  } else {
    if (!scrub_due(svc, snapshot->hsm_id)) return;
    step_rc = scrub_hsm(svc, snapshot, &err);
    if (step_rc)
      log_msg(LOG_WARN, NULL, "hsm %s: scrubbing its token failed, trying again in %ld ms: %s",
              snapshot->hsm_id, scrub_failed(svc, snapshot->hsm_id), err.msg);
    else
      scrub_forget(svc, snapshot->hsm_id);
  }

  rc = hsmi_begin(svc, true, &tx, &err);
  if (rc) goto out;
  rc = o->cluster_get(tx, snapshot->cluster_id, &c, &err);
  if (rc) goto out;
  rc = o->hsm_list(tx, snapshot->cluster_id, &all, &n, &err);
  if (rc) goto out;
  for (size_t i = 0; i < n; i++)
    if (strcmp(all[i].hsm_id, snapshot->hsm_id) == 0) h = &all[i];
  if (!h || strcmp(h->state, snapshot->state) != 0) goto out; /* changed meanwhile */
  if (creating && step_rc) {
    rc = hsmi_hsm_set_state(svc, tx, h, "DEGRADED", err.msg, &err);
  } else if (creating) {
    /* kmsuser's password may have changed while the token was being made. */
    rc = hsmi_secret_get_text(svc, tx, c.cluster_id, HSMI_SECRET_USER_PIN, pin_now, &err);
    if (!rc) rc = hsmi_hsm_set_state(svc, tx, h, "ACTIVE", "", &err);
    if (!rc && strcmp(pin_now, used_pin) != 0) rc = hsmi_set_user_pin(svc, tx, &c, pin_now, &err);
    if (!rc && (strcmp(c.state, "ACTIVE") == 0 || strcmp(c.state, "INITIALIZED") == 0))
      rc = record_backup(svc, tx, &c, &err);
  } else if (step_rc) {
    /* Not DELETED: that would free a pool token for the next CreateHsm (of
     * any cluster or account) with this cluster's keys on it.  The HSM stays
     * DELETE_IN_PROGRESS, holding its pool entry, and is tried again. */
    static const char prefix[] = "Scrubbing the token failed; retrying: ";
    char msg[STORE_HSM_TEXT_MAX];
    snprintf(msg, sizeof msg, "%s%.*s", prefix, (int)(sizeof msg - sizeof prefix), err.msg);
    if (strcmp(msg, h->state_message) == 0) goto out;
    rc = hsmi_hsm_set_state(svc, tx, h, "DELETE_IN_PROGRESS", msg, &err);
  } else {
    rc = hsmi_hsm_set_state(svc, tx, h, "DELETED", "", &err);
    if (!rc) rc = record_backup(svc, tx, &c, &err);
  }
  if (rc) goto out;
  rc = svc->st->ops->commit(tx, &err);
  tx = NULL;
out:
  if (tx) svc->st->ops->rollback(tx);
  if (rc) log_msg(LOG_ERROR, NULL, "hsm %s: worker step failed: %s", snapshot->hsm_id, err.msg);
  secure_wipe(used_pin, sizeof used_pin);
  secure_wipe(pin_now, sizeof pin_now);
  free(all);
  store_hsm_cluster_clear(&c);
}

static bool in_progress(const char *state) {
  return strcmp(state, "CREATE_IN_PROGRESS") == 0 || strcmp(state, "INITIALIZE_IN_PROGRESS") == 0 ||
         strcmp(state, "DELETE_IN_PROGRESS") == 0;
}

/* One pass over everything mid-transition. */
static bool lease_held(hsm_service *svc) {
  return !svc->st->ops->lease_held || svc->st->ops->lease_held(svc->st);
}

/* The cluster-wide lock of one step on HSM or cluster `id`, tried once
 * (store_ops.lock_named): false when another node's worker is at it (a
 * holder that lost the lease finishing its step), and the step waits for
 * the next pass.  True with *l NULL on a store one process opens alone. */
static bool step_lock(hsm_service *svc, const char *id, store_lock **l) {
  char name[STORE_HSM_ID_MAX + 32];
  kerr e;
  *l = NULL;
  if (!svc->st->ops->lock_named) return true;
  snprintf(name, sizeof name, "cluster worker %s", id);
  return svc->st->ops->lock_named(svc->st, name, 0, l, &e) == KERR_OK;
}

static void step_unlock(hsm_service *svc, store_lock *l) {
  if (l) svc->st->ops->unlock_named(l);
}

static void worker_pass(hsm_service *svc) {
  const store_hsm_ops *o = svc->st->ops->hsm;
  store_tx *tx = NULL;
  store_hsm_cluster *cl = NULL;
  store_hsm *hs = NULL;
  size_t ncl = 0, nhs = 0;
  kerr err;
  /* Several nodes on one store: the one holding the lease moves clusters
   * and HSMs along, the others only serve them (asked again before each
   * step, so a node that lost the lease stops between two). */
  if (!lease_held(svc)) return;
  if (hsmi_begin(svc, false, &tx, &err)) return;
  if (o->cluster_list(tx, NULL, NULL, &cl, &ncl, &err) || o->hsm_list(tx, NULL, &hs, &nhs, &err)) {
    svc->st->ops->rollback(tx);
    log_msg(LOG_ERROR, NULL, "cluster worker: %s", err.msg);
    goto out;
  }
  svc->st->ops->rollback(tx);
  /* HSMs first: a cluster being deleted has none left anyway. */
  for (size_t i = 0; i < nhs && lease_held(svc); i++) {
    store_lock *l = NULL;
    if ((strcmp(hs[i].state, "CREATE_IN_PROGRESS") == 0 ||
         strcmp(hs[i].state, "DELETE_IN_PROGRESS") == 0) &&
        step_lock(svc, hs[i].hsm_id, &l)) {
      step_hsm(svc, &hs[i]);
      step_unlock(svc, l);
    }
  }
  for (size_t i = 0; i < ncl && lease_held(svc); i++) {
    store_lock *l = NULL;
    if (in_progress(cl[i].state) && step_lock(svc, cl[i].cluster_id, &l)) {
      step_cluster(svc, cl[i].cluster_id);
      step_unlock(svc, l);
    }
  }
out:
  store_hsm_cluster_list_free(cl, ncl);
  free(hs);
}

static void *worker_main(void *arg) {
  hsm_service *m = arg;
  pthread_mutex_lock(&m->lock);
  while (!m->stopping) {
    m->kicked = false;
    pthread_mutex_unlock(&m->lock);
    worker_pass(m);
    pthread_mutex_lock(&m->lock);
    if (m->stopping || m->kicked) continue;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)WORKER_TICK_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&m->cond, &m->lock, &ts);
  }
  pthread_mutex_unlock(&m->lock);
  return NULL;
}

/* ------------------------------------------------------------ lifecycle */

kerr_code hsm_service_open(const hsm_service_config *cfg, hsm_service **out, kerr *err) {
  hsm_service *m;
  kerr_code rc = KERR_OK;
  p11_err pe;
  char conf[4096];
  *out = NULL;
  if (!cfg || !cfg->st || !cfg->rk || !cfg->data_dir || strlen(cfg->data_dir) >= sizeof m->data_dir)
    return kerr_set(err, KERR_INTERNAL, "The CloudHSM service needs a store, a root key and a data directory.");
  if (cfg->timeout_ms < P11_POOL_WAIT_MIN_MS || cfg->timeout_ms > P11_POOL_WAIT_MAX_MS)
    return kerr_set(err, KERR_VALIDATION, "The HSM timeout must be %d to %d ms.", P11_POOL_WAIT_MIN_MS,
                    P11_POOL_WAIT_MAX_MS);
  if (cfg->key_cache > P11_KEYCACHE_SLOTS_MAX)
    return kerr_set(err, KERR_VALIDATION, "The HSM key cache holds at most %d keys.",
                    P11_KEYCACHE_SLOTS_MAX);
  m = calloc(1, sizeof *m);
  if (!m) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  m->st = cfg->st;
  m->rk = cfg->rk;
  snprintf(m->data_dir, sizeof m->data_dir, "%s", cfg->data_dir);
  m->timeout_ms = cfg->timeout_ms;
  m->key_cache = cfg->key_cache;
  pthread_mutex_init(&m->lock, NULL);
  pthread_cond_init(&m->cond, NULL);
  p11_err_clear(&pe);
  pthread_mutex_lock(&preset_lock);
  m->pool = preset_pool;
  m->npool = preset_npool;
  preset_pool = NULL;
  preset_npool = 0;
  pthread_mutex_unlock(&preset_lock);
  /* SoftHSM2 reads one configuration per process.  With an operator pool the
   * operator's SOFTHSM2_CONF must win (their pool tokens may be SoftHSM2
   * tokens in their own directory), so kmsd then makes no tokens of its own
   * and leaves the environment alone (docs/hsm-clusters.md). */
  m->own_softhsm = m->npool == 0;
  if (m->own_softhsm && p11_softhsm_configure(m->data_dir, conf, sizeof conf, &pe) != KERR_OK) {
    rc = kerr_set(err, KERR_INTERNAL, "Cannot prepare the HSM directory: %s", pe.e.msg);
    goto fail;
  }
  if (m->npool) {
    rc = pool_reconcile(m, m->pool, m->npool, false, err);
    if (rc) goto fail;
    log_msg(LOG_INFO, NULL, "HSM pool: %zu operator-provisioned token(s); SoftHSM2 reads %s",
            m->npool, getenv("SOFTHSM2_CONF") ? "$SOFTHSM2_CONF" : "its default configuration");
  }
  /* Set before the worker starts: nothing of `m` it can read is written
   * after pthread_create (`running` shares a word with `stopping`). */
  m->running = true;
  if (pthread_create(&m->worker, NULL, worker_main, m) != 0) {
    m->running = false;
    rc = kerr_set(err, KERR_INTERNAL, "Cannot start the cluster worker thread.");
    goto fail;
  }
  *out = m;
  return KERR_OK;
fail:
  pool_free(m->pool, m->npool);
  pthread_mutex_destroy(&m->lock);
  pthread_cond_destroy(&m->cond);
  free(m);
  return rc;
}

void hsm_service_close(hsm_service *m) {
  if (!m) return;
  if (m->running) {
    pthread_mutex_lock(&m->lock);
    m->stopping = true;
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
    pthread_join(m->worker, NULL);
  }
  while (m->lives) {
    hsm_live *l = m->lives;
    m->lives = l->next;
    live_free(l);
  }
  p11_module_release(m->softhsm);
  while (m->scrub_retries) {
    struct scrub_retry *r = m->scrub_retries;
    m->scrub_retries = r->next;
    free(r);
  }
  pool_free(m->pool, m->npool);
  pthread_mutex_destroy(&m->lock);
  pthread_cond_destroy(&m->cond);
  free(m);
}
