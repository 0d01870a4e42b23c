/* hsm_conn.c - hsm_cluster.h: what custom key stores use of a cluster.
 *
 * A connection is the cluster id, the list of the cluster's ACTIVE HSMs
 * (shared live tokens, see hsm_internal.h) and, per HSM, the kmsuser password
 * that HSM has.  The list is refreshed whenever the manager's HSM generation
 * moves, so an HSM added or replaced after connecting is picked up without
 * reconnecting: that is what keeps old ciphertexts decrypting across HSM
 * replacement.
 *
 * Why a password per HSM: changing kmsuser's password is one C_SetPIN per
 * HSM, so a crash or a failing HSM can leave HSMs with different passwords.
 * The key store keeps every password an HSM may have (docs/custom-key-stores.md,
 * "Passwords"); a login tries those on each HSM and remembers the one that
 * worked, and a new HSM (given the cluster's password when it was made) is
 * logged in with the first of the known passwords it accepts.
 *
 * Keys: generated once in one HSM as a copyable key, wrapped there under the
 * lineage's trusted wrapping key into a backup blob (kept in the store),
 * destroyed, and unwrapped on every active HSM as a non-extractable key.
 * New HSMs unwrap the same blobs when they are provisioned. */
#include "cloudhsm/hsm_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/secmem.h"

/* Passwords a connection remembers as ones an HSM may have: the connect's
 * candidates and each password hsm_conn_set_password gave (a connect worker
 * sets at most two, so four never drops one still in use). */
#define KNOWN_PASSWORDS_MAX 4
#define PIN_BUF (HSMI_PIN_MAX + 1)

/* The kmsuser password one HSM has. */
typedef struct hsm_pin {
  char hsm_id[STORE_HSM_ID_MAX];
  char pin[PIN_BUF];
} hsm_pin;

struct hsm_conn {
  hsm_service *svc;
  char cluster_id[STORE_HSM_ID_MAX];
  char lineage[64];
  pthread_mutex_t lock;        /* lives, n, gen, rr, pins, known */
  hsm_live **lives;
  size_t n;
  uint64_t gen;
  unsigned rr;
  hsm_pin *pins;               /* secure memory, pins_cap entries */
  size_t npins, pins_cap;
  char known[KNOWN_PASSWORDS_MAX][PIN_BUF]; /* newest first */
  size_t nknown;
};

void hsm_cluster_view_clear(hsm_cluster_view *v) {
  if (!v) return;
  free(v->trust_anchor_pem);
  memset(v, 0, sizeof *v);
}

/* A cluster of (account, region) that is not DELETED. */
static kerr_code visible_cluster(hsm_service *svc, store_tx *tx, const char *account_id,
                                 const char *region, const char *cluster_id, store_hsm_cluster *c,
                                 kerr *err) {
  kerr_code rc = svc->st->ops->hsm->cluster_get(tx, cluster_id, c, err);
  if (rc == KERR_NOT_FOUND || (!rc && (strcmp(c->account_id, account_id) != 0 ||
                                       strcmp(c->region, region) != 0 ||
                                       strcmp(c->state, "DELETED") == 0))) {
    store_hsm_cluster_clear(c);
    return kerr_set(err, KERR_HSM_CLUSTER_NOT_FOUND,
                    "AWS CloudHSM cluster %s does not exist in this account and Region", cluster_id);
  }
  return rc;
}

kerr_code hsm_cluster_describe(hsm_service *svc, const char *account_id, const char *region,
                               const char *cluster_id, hsm_cluster_view *out, kerr *err) {
  store_tx *tx = NULL;
  store_hsm_cluster c;
  store_hsm *hsms = NULL;
  size_t n = 0;
  memset(&c, 0, sizeof c);
  memset(out, 0, sizeof *out);
  kerr_code rc = hsmi_begin(svc, false, &tx, err);
  if (rc) return rc;
  rc = visible_cluster(svc, tx, account_id, region, cluster_id, &c, err);
  if (rc) goto out;
  rc = hsmi_active_hsms(svc, tx, cluster_id, &hsms, &n, err);
  if (rc) goto out;
  snprintf(out->cluster_id, sizeof out->cluster_id, "%.24s", c.cluster_id);
  snprintf(out->state, sizeof out->state, "%s", c.state);
  snprintf(out->lineage, sizeof out->lineage, "%s", c.lineage);
  snprintf(out->simulated_failure, sizeof out->simulated_failure, "%s", c.simulated_failure);
  out->active_hsms = (int)n;
  for (size_t i = 0; i < n; i++) {
    bool seen = false;
    for (size_t j = 0; j < i; j++)
      if (strcmp(hsms[i].availability_zone, hsms[j].availability_zone) == 0) seen = true;
    if (!seen) out->active_zones++;
  }
  if (c.trust_anchor_pem) {
    out->trust_anchor_pem = strdup(c.trust_anchor_pem);
    if (!out->trust_anchor_pem) rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
out:
  if (tx) svc->st->ops->rollback(tx);
  free(hsms);
  store_hsm_cluster_clear(&c);
  if (rc) hsm_cluster_view_clear(out);
  return rc;
}

/* ------------------------------------------------------------- the list */

static void drop_lives(hsm_service *svc, hsm_live **lives, size_t n) {
  for (size_t i = 0; lives && i < n; i++) hsmi_live_put(svc, lives[i]);
  free(lives);
}

/* Bring c's HSM list up to date with the store.  With c->lock held. */
static kerr_code refresh_locked(hsm_conn *c, kerr *err) {
  uint64_t gen = hsmi_gen(c->svc);
  store_tx *tx = NULL;
  store_hsm *hsms = NULL;
  size_t n = 0, k = 0;
  hsm_live **lives = NULL;
  p11_err pe;
  if (c->lives && gen == c->gen) return KERR_OK;
  kerr_code rc = hsmi_begin(c->svc, false, &tx, err);
  if (rc) return rc;
  rc = hsmi_active_hsms(c->svc, tx, c->cluster_id, &hsms, &n, err);
  c->svc->st->ops->rollback(tx);
  if (rc) return rc;
  lives = calloc(n ? n : 1, sizeof *lives);
  if (!lives) {
    free(hsms);
    return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
  for (size_t i = 0; i < n; i++) {
    p11_err_clear(&pe);
    if (hsmi_live_get(c->svc, &hsms[i], &lives[k], &pe) == KERR_OK)
      k++;
    else
      log_msg(LOG_WARN, NULL, "hsm %s unreachable: %s", hsms[i].hsm_id, pe.e.msg);
  }
  free(hsms);
  drop_lives(c->svc, c->lives, c->n);
  c->lives = lives;
  c->n = k;
  c->gen = gen;
  return KERR_OK;
}

/* A snapshot of the HSM list with a reference on each (drop_lives). */
static kerr_code snapshot(hsm_conn *c, hsm_live ***out, size_t *n, kerr *err) {
  pthread_mutex_lock(&c->lock);
  kerr_code rc = refresh_locked(c, err);
  *out = NULL;
  *n = 0;
  if (!rc) {
    hsm_live **arr = calloc(c->n ? c->n : 1, sizeof *arr);
    if (!arr) {
      rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    } else {
      /* Start at a rotating index so load spreads over the HSMs. */
      unsigned start = c->n ? c->rr++ % (unsigned)c->n : 0;
      pthread_mutex_lock(&c->svc->lock);
      for (size_t i = 0; i < c->n; i++) {
        arr[i] = c->lives[(start + i) % c->n];
        arr[i]->refs++;
      }
      pthread_mutex_unlock(&c->svc->lock);
      *out = arr;
      *n = c->n;
    }
  }
  pthread_mutex_unlock(&c->lock);
  return rc;
}

/* ------------------------------------------------------ per-HSM passwords */

static bool same_password(const char *a, const char *b) {
  size_t n = strlen(a);
  return n == strlen(b) && secure_memcmp(a, b, n) == 0;
}

/* The password record of HSM `hsm_id`, or NULL.  With c->lock held. */
static hsm_pin *pin_find_locked(hsm_conn *c, const char *hsm_id) {
  for (size_t i = 0; i < c->npins; i++)
    if (strcmp(c->pins[i].hsm_id, hsm_id) == 0) return &c->pins[i];
  return NULL;
}

/* Record that HSM `hsm_id` has `pin`.  With c->lock held. */
static kerr_code pin_record_locked(hsm_conn *c, const char *hsm_id, const char *pin, kerr *err) {
  hsm_pin *p = pin_find_locked(c, hsm_id);
  if (!p) {
    if (c->npins == c->pins_cap) {
      size_t cap = c->pins_cap ? 2 * c->pins_cap : 4;
      hsm_pin *grown = secure_alloc(cap * sizeof *grown);
      if (!grown) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
      if (c->npins) memcpy(grown, c->pins, c->npins * sizeof *grown);
      secure_free(c->pins, c->pins_cap * sizeof *c->pins);
      c->pins = grown;
      c->pins_cap = cap;
    }
    p = &c->pins[c->npins++];
    snprintf(p->hsm_id, sizeof p->hsm_id, "%s", hsm_id);
  }
  snprintf(p->pin, sizeof p->pin, "%s", pin);
  return KERR_OK;
}

/* Remember `password` as one an HSM may have, newest first.  With c->lock held. */
static void known_add_locked(hsm_conn *c, const char *password) {
  size_t i;
  for (i = 0; i < c->nknown; i++)
    if (same_password(c->known[i], password)) break;
  if (i == c->nknown && c->nknown < KNOWN_PASSWORDS_MAX) c->nknown++;
  if (i == KNOWN_PASSWORDS_MAX) i--;
  for (; i > 0; i--) memcpy(c->known[i], c->known[i - 1], PIN_BUF);
  snprintf(c->known[0], PIN_BUF, "%s", password);
}

/* With l->lock held for writing: log l in as kmsuser with the first of
 * `tries` (ntries PINs) it accepts and set *taken to its index.  `force`
 * logs out first (the token may be logged in with a stale PIN).  A refused
 * PIN moves on to the next; any other failure is final.  On failure pe
 * holds the last failure (CKR_PIN_INCORRECT when every PIN was refused). */
static kerr_code login_first_accepted_locked(hsm_live *l, char (*tries)[PIN_BUF], size_t ntries,
                                             bool force, size_t *taken, p11_err *pe) {
  kerr_code rc = KERR_OK;
  p11_err_clear(pe);
  if (ntries == 0) {
    pe->rv = CKR_PIN_INCORRECT;
    return kerr_set(&pe->e, KERR_ACCESS_DENIED, "no kmsuser password to try on HSM %s",
                    l->hsm_id);
  }
  for (int round = 0; round < 2; round++) {
    for (size_t i = 0; i < ntries; i++) {
      p11_err_clear(pe);
      rc = hsmi_login_locked(l, tries[i], force && i == 0 && round == 0, pe);
      if (rc == KERR_OK) {
        *taken = i;
        return KERR_OK;
      }
      if (pe->rv != CKR_PIN_INCORRECT && pe->rv != CKR_PIN_LEN_RANGE) return rc;
    }
    /* Every password refused.  A module may check PINs against what it read
     * when it opened the token: SoftHSM2 does, so a token on storage that
     * several kmsd nodes share keeps, in this process, the PIN it had before
     * another node's connect rotated it.  On a deliberate login only (a
     * connect, an attach), reinitialize the module once and try again. */
    if (!force || round == 1 || pe->rv != CKR_PIN_INCORRECT) break;
    p11_err re;
    p11_err_clear(&re);
    log_msg(LOG_INFO, NULL, "hsm %s: no kmsuser password taken; reloading its PKCS#11 module "
            "in case another process changed the PIN", l->hsm_id);
    if (p11_token_recover(l->tok, &re) != KERR_OK) break;
  }
  return rc;
}

/* With l->lock held for writing: log l in again (its session was closed,
 * or with `force` because its password is unknown) with the password
 * recorded for it, else the first known one it takes, and record that. */
static kerr_code relogin_locked(hsm_conn *c, hsm_live *l, bool force, p11_err *pe) {
  char tries[KNOWN_PASSWORDS_MAX + 1][PIN_BUF];
  size_t ntries = 0, taken = 0;
  kerr e;
  pthread_mutex_lock(&c->lock);
  hsm_pin *p = pin_find_locked(c, l->hsm_id);
  if (p) snprintf(tries[ntries++], PIN_BUF, "%s", p->pin);
  for (size_t i = 0; i < c->nknown; i++)
    if (!p || !same_password(p->pin, c->known[i]))
      snprintf(tries[ntries++], PIN_BUF, "%s", c->known[i]);
  pthread_mutex_unlock(&c->lock);
  kerr_code rc = login_first_accepted_locked(l, tries, ntries, force, &taken, pe);
  if (rc == KERR_OK) {
    pthread_mutex_lock(&c->lock);
    rc = pin_record_locked(c, l->hsm_id, tries[taken], &e);
    pthread_mutex_unlock(&c->lock);
    if (rc) {
      p11_err_clear(pe);
      rc = kerr_set(&pe->e, rc, "%s", e.msg);
    }
  }
  secure_wipe(tries, sizeof tries);
  return rc;
}

/* Take l's lock for reading with the user logged in. */
static kerr_code read_lock_logged_in(hsm_conn *c, hsm_live *l, p11_err *pe) {
  for (;;) {
    pthread_rwlock_rdlock(&l->lock);
    if (p11_token_logged_in(l->tok)) return KERR_OK;
    pthread_rwlock_unlock(&l->lock);
    pthread_rwlock_wrlock(&l->lock);
    kerr_code rc = p11_token_logged_in(l->tok) ? KERR_OK : relogin_locked(c, l, false, pe);
    pthread_rwlock_unlock(&l->lock);
    if (rc) return rc;
  }
}

static kerr_code read_lock_cb(hsm_live *l, void *ctx, p11_err *pe) {
  return read_lock_logged_in(ctx, l, pe);
}

static void read_unlock_cb(hsm_live *l, void *ctx) {
  (void)ctx;
  pthread_rwlock_unlock(&l->lock);
}

/* Take l's lock for reading and a pooled session of its token, logged in as
 * the user (hsmi_session_as: a reinitialization of the token's module on
 * behalf of another HSM of the same module may end the login between the
 * check and the acquire; the login is then redone).  On success both are
 * held (release the session, then unlock); on failure neither is. */
static kerr_code acquire_logged_in(hsm_conn *c, hsm_live *l, p11_session **s, p11_err *pe) {
  hsmi_login how = {read_lock_cb, read_unlock_cb, c};
  return hsmi_session_as(l, CKU_USER, &how, s, pe);
}

/* --------------------------------------------------------------- connect */

static kerr_code count_failed_login(hsm_service *svc, const char *cluster_id, bool *locked_now,
                                    kerr *err) {
  store_tx *tx = NULL;
  store_hsm_user u;
  *locked_now = false;
  kerr_code rc = hsmi_begin(svc, true, &tx, err);
  if (rc) return rc;
  rc = svc->st->ops->hsm->user_get(tx, cluster_id, HSMI_KMSUSER, &u, err);
  if (!rc) {
    u.failed_logins++;
    if (u.failed_logins >= HSMI_MAX_LOGIN_FAILURES) u.locked = *locked_now = true;
    rc = svc->st->ops->hsm->user_put(tx, &u, err);
  }
  if (rc) {
    svc->st->ops->rollback(tx);
    return rc;
  }
  return svc->st->ops->commit(tx, err);
}

static kerr_code reset_failed_logins(hsm_service *svc, const char *cluster_id, kerr *err) {
  store_tx *tx = NULL;
  store_hsm_user u;
  kerr_code rc = hsmi_begin(svc, true, &tx, err);
  if (rc) return rc;
  rc = svc->st->ops->hsm->user_get(tx, cluster_id, HSMI_KMSUSER, &u, err);
  if (!rc && u.failed_logins) {
    u.failed_logins = 0;
    rc = svc->st->ops->hsm->user_put(tx, &u, err);
  }
  if (rc) {
    svc->st->ops->rollback(tx);
    return rc;
  }
  return svc->st->ops->commit(tx, err);
}

static const char *simulated_code(const char *kind) {
  if (strcmp(kind, "network-errors") == 0) return "NETWORK_ERRORS";
  if (strcmp(kind, "subnet-not-found") == 0) return "SUBNET_NOT_FOUND";
  if (strcmp(kind, "no-free-addresses") == 0) return "INSUFFICIENT_FREE_ADDRESSES_IN_SUBNET";
  if (strcmp(kind, "internal-error") == 0) return "INTERNAL_ERROR";
  return NULL;
}

/* hsm_cluster_connect, and with `attach` hsm_cluster_attach: the same
 * login, which then neither counts a refusal nor resets the count. */
static kerr_code cluster_login(hsm_service *svc, const char *account_id, const char *region,
                               const char *cluster_id, const char *const *passwords,
                               size_t npasswords, bool attach, hsm_conn **out,
                               const char **connection_error, kerr *err) {
  store_tx *tx = NULL;
  store_hsm_cluster c;
  store_hsm *hsms = NULL;
  store_hsm_user u;
  size_t n = 0, hint = 0, logged_in = 0;
  hsm_conn *conn = NULL;
  char tries[HSM_CONNECT_PASSWORDS_MAX][PIN_BUF];
  const char *code = "INTERNAL_ERROR";
  kerr_code rc;
  memset(&c, 0, sizeof c);
  memset(tries, 0, sizeof tries);
  *out = NULL;
  *connection_error = NULL;

  rc = hsmi_begin(svc, false, &tx, err);
  if (rc) goto out;
  rc = visible_cluster(svc, tx, account_id, region, cluster_id, &c, err);
  if (rc) {
    if (rc == KERR_HSM_CLUSTER_NOT_FOUND) code = "CLUSTER_NOT_FOUND";
    goto out;
  }
  rc = hsmi_active_hsms(svc, tx, cluster_id, &hsms, &n, err);
  if (rc) goto out;
  if (n == 0) {
    code = "INSUFFICIENT_CLOUDHSM_HSMS";
    rc = kerr_set(err, KERR_HSM_CLUSTER_INVALID_CONFIG, "Cluster %s has no active HSM", cluster_id);
    goto out;
  }
  const char *sim = simulated_code(c.simulated_failure);
  if (sim) {
    code = sim;
    rc = kerr_set(err, KERR_HSM_INTERNAL_FAILURE, "Simulated failure (%s) on cluster %s",
                  c.simulated_failure, cluster_id);
    goto out;
  }
  rc = svc->st->ops->hsm->user_get(tx, cluster_id, HSMI_KMSUSER, &u, err);
  if (rc == KERR_NOT_FOUND) {
    code = "USER_NOT_FOUND";
    rc = kerr_set(err, KERR_HSM_RESOURCE_NOT_FOUND, "Cluster %s has no kmsuser crypto user",
                  cluster_id);
    goto out;
  }
  if (rc) goto out;
  if (u.locked) {
    code = "USER_LOCKED_OUT";
    rc = kerr_set(err, KERR_HSM_ACCESS_DENIED, "kmsuser is locked out of cluster %s", cluster_id);
    goto out;
  }
  if (u.logged_in) {
    code = "USER_LOGGED_IN";
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST, "kmsuser is logged in to cluster %s elsewhere",
                  cluster_id);
    goto out;
  }
  svc->st->ops->rollback(tx);
  tx = NULL;

  if (npasswords < 1 || npasswords > HSM_CONNECT_PASSWORDS_MAX) {
    code = "INVALID_CREDENTIALS";
    rc = kerr_set(err, KERR_ACCESS_DENIED, "No usable kmsuser password");
    goto out;
  }
  for (size_t k = 0; k < npasswords; k++) {
    size_t plen = passwords[k] ? strlen(passwords[k]) : 0;
    if (plen < 1 || plen > HSMI_PIN_MAX) {
      code = "INVALID_CREDENTIALS";
      rc = kerr_set(err, KERR_ACCESS_DENIED, "The kmsuser password is not valid");
      goto out;
    }
  }
  conn = secure_alloc(sizeof *conn);
  if (!conn) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  conn->svc = svc;
  snprintf(conn->cluster_id, sizeof conn->cluster_id, "%s", cluster_id);
  snprintf(conn->lineage, sizeof conn->lineage, "%s", c.lineage);
  pthread_mutex_init(&conn->lock, NULL);
  for (size_t k = npasswords; k > 0; k--) known_add_locked(conn, passwords[k - 1]);

  /* The real check: a PKCS#11 login on every HSM with a password it takes.
   * HSMs changed one after the other are a prefix on the newer password,
   * so trying first what the previous HSM took misses at most once. */
  for (size_t i = 0; i < n; i++) {
    hsm_live *l = NULL;
    size_t ntries = 0, taken = 0;
    p11_err pe;
    p11_err_clear(&pe);
    snprintf(tries[ntries++], PIN_BUF, "%s", passwords[hint]);
    for (size_t k = 0; k < npasswords; k++)
      if (k != hint) snprintf(tries[ntries++], PIN_BUF, "%s", passwords[k]);
    rc = hsmi_live_get(svc, &hsms[i], &l, &pe);
    if (!rc) {
      pthread_rwlock_wrlock(&l->lock);
      rc = login_first_accepted_locked(l, tries, ntries, true, &taken, &pe);
      pthread_rwlock_unlock(&l->lock);
    }
    hsmi_live_put(svc, l);
    if (rc) {
      bool locked_now = false;
      if (pe.rv == CKR_PIN_INCORRECT || pe.rv == CKR_PIN_LEN_RANGE) {
        code = "INVALID_CREDENTIALS";
        if (!attach) count_failed_login(svc, cluster_id, &locked_now, err);
        rc = kerr_set(err, KERR_ACCESS_DENIED, "kmsuser's password was rejected by HSM %s%s",
                      hsms[i].hsm_id, locked_now ? "; kmsuser is now locked out" : "");
      } else if (pe.rv == CKR_PIN_LOCKED) {
        code = "USER_LOCKED_OUT";
        rc = kerr_set(err, KERR_HSM_ACCESS_DENIED, "HSM %s reports kmsuser locked", hsms[i].hsm_id);
      } else {
        rc = kerr_set(err, KERR_HSM_INTERNAL_FAILURE, "HSM %s: %s", hsms[i].hsm_id, pe.e.msg);
      }
      goto out;
    }
    for (size_t k = 0; k < npasswords; k++)
      if (same_password(passwords[k], tries[taken])) hint = k;
    logged_in = i + 1;
    pthread_mutex_lock(&conn->lock);
    rc = pin_record_locked(conn, hsms[i].hsm_id, tries[taken], err);
    pthread_mutex_unlock(&conn->lock);
    if (rc) goto out;
  }
  if (!attach) {
    rc = reset_failed_logins(svc, cluster_id, err);
    if (rc) goto out;
  }

  pthread_mutex_lock(&conn->lock);
  rc = refresh_locked(conn, err);
  pthread_mutex_unlock(&conn->lock);
  if (rc) goto out;
  log_msg(LOG_INFO, NULL, "cluster %s: kmsuser connected to %zu HSM(s)", cluster_id, conn->n);
  *out = conn;
  conn = NULL;
  code = NULL;
out:
  if (tx) svc->st->ops->rollback(tx);
  if (conn) hsm_conn_close(conn);
  /* A connect that failed after some HSMs took a password leaves none of
   * them logged in: the connection never held them, so closing it did not
   * log them out. */
  for (size_t i = 0; rc && i < logged_in; i++) {
    hsm_live *l = NULL;
    p11_err pe;
    p11_err_clear(&pe);
    if (hsmi_live_get(svc, &hsms[i], &l, &pe) == KERR_OK) {
      pthread_rwlock_wrlock(&l->lock);
      p11_token_logout(l->tok, NULL);
      pthread_rwlock_unlock(&l->lock);
    }
    hsmi_live_put(svc, l);
  }
  secure_wipe(tries, sizeof tries);
  free(hsms);
  store_hsm_cluster_clear(&c);
  if (rc) *connection_error = code;
  return rc;
}

kerr_code hsm_cluster_connect(hsm_service *svc, const char *account_id, const char *region,
                              const char *cluster_id, const char *const *passwords,
                              size_t npasswords, hsm_conn **out, const char **connection_error,
                              kerr *err) {
  return cluster_login(svc, account_id, region, cluster_id, passwords, npasswords, false, out,
                       connection_error, err);
}

kerr_code hsm_cluster_attach(hsm_service *svc, const char *account_id, const char *region,
                             const char *cluster_id, const char *const *passwords,
                             size_t npasswords, hsm_conn **out, const char **connection_error,
                             kerr *err) {
  return cluster_login(svc, account_id, region, cluster_id, passwords, npasswords, true, out,
                       connection_error, err);
}

void hsm_conn_close(hsm_conn *c) {
  if (!c) return;
  /* Log out of each token so a disconnected store really holds no session. */
  for (size_t i = 0; i < c->n; i++) {
    pthread_rwlock_wrlock(&c->lives[i]->lock);
    p11_token_logout(c->lives[i]->tok, NULL);
    pthread_rwlock_unlock(&c->lives[i]->lock);
  }
  drop_lives(c->svc, c->lives, c->n);
  pthread_mutex_destroy(&c->lock);
  secure_free(c->pins, c->pins_cap * sizeof *c->pins);
  secure_free(c, sizeof *c);
}

bool hsm_conn_has_password(hsm_conn *c, const char *password) {
  bool found = false;
  if (!c || !password) return false;
  pthread_mutex_lock(&c->lock);
  for (size_t i = 0; i < c->npins && !found; i++) found = same_password(c->pins[i].pin, password);
  pthread_mutex_unlock(&c->lock);
  return found;
}

/* With l->lock held for writing: give l `new_password` from the password it
 * has, unless it has it already, and record it. */
static kerr_code set_pin_locked(hsm_conn *c, hsm_live *l, const char *new_password, p11_err *pe) {
  char old[PIN_BUF] = {0};
  kerr e;
  kerr_code rc = KERR_OK;
  pthread_mutex_lock(&c->lock);
  bool known = pin_find_locked(c, l->hsm_id) != NULL;
  pthread_mutex_unlock(&c->lock);
  /* An HSM that joined after the connect may be logged in already (by its
   * provisioning): log in afresh to learn which password it has. */
  if (!known || !p11_token_logged_in(l->tok)) rc = relogin_locked(c, l, !known, pe);
  if (rc) return rc;
  pthread_mutex_lock(&c->lock);
  hsm_pin *p = pin_find_locked(c, l->hsm_id);
  if (p) snprintf(old, sizeof old, "%s", p->pin);
  pthread_mutex_unlock(&c->lock);
  if (same_password(old, new_password)) goto out;
  rc = p11_token_set_pin(l->tok, old, new_password, pe);
  if (rc) goto out;
  pthread_mutex_lock(&c->lock);
  rc = pin_record_locked(c, l->hsm_id, new_password, &e);
  pthread_mutex_unlock(&c->lock);
  if (rc) {
    p11_err_clear(pe);
    rc = kerr_set(&pe->e, rc, "%s", e.msg);
  }
out:
  secure_wipe(old, sizeof old);
  return rc;
}

/* Inside `tx`: fail unless every ACTIVE HSM of the cluster has
 * `new_password` (an HSM that became active during the change has the
 * cluster's old password). */
static kerr_code check_all_changed(hsm_conn *c, store_tx *tx, const char *new_password,
                                   kerr *err) {
  store_hsm *hsms = NULL;
  size_t n = 0;
  kerr_code rc = hsmi_active_hsms(c->svc, tx, c->cluster_id, &hsms, &n, err);
  if (rc) return rc;
  pthread_mutex_lock(&c->lock);
  for (size_t i = 0; i < n && !rc; i++) {
    hsm_pin *p = pin_find_locked(c, hsms[i].hsm_id);
    if (!p || !same_password(p->pin, new_password))
      rc = kerr_set(err, KERR_HSM_INTERNAL_FAILURE,
                    "HSM %s became active during the change of kmsuser's password",
                    hsms[i].hsm_id);
  }
  pthread_mutex_unlock(&c->lock);
  free(hsms);
  return rc;
}

kerr_code hsm_conn_set_password(hsm_conn *c, const char *new_password, kerr *err) {
  hsm_live **lives = NULL;
  size_t n = 0;
  p11_err pe;
  store_tx *tx = NULL;
  store_hsm_user u;
  size_t plen = new_password ? strlen(new_password) : 0;
  if (plen < HSM_PASSWORD_MIN || plen > HSMI_PIN_MAX)
    return kerr_set(err, KERR_VALIDATION, "kmsuser passwords are 7 to 32 characters");
  /* Known before any HSM has it: a lost session on a changed HSM logs in again. */
  pthread_mutex_lock(&c->lock);
  known_add_locked(c, new_password);
  pthread_mutex_unlock(&c->lock);
  /* The cluster's record of kmsuser as it was before any HSM changed: an
   * operator who sets kmsuser's password meanwhile (hsm-cli) owns it, and
   * this change must not write over theirs at the end. */
  uint8_t hash_before[sizeof u.hash];
  kerr_code rc = hsmi_begin(c->svc, false, &tx, err);
  if (rc) return rc;
  rc = c->svc->st->ops->hsm->user_get(tx, c->cluster_id, HSMI_KMSUSER, &u, err);
  c->svc->st->ops->rollback(tx);
  tx = NULL;
  if (rc) return rc;
  memcpy(hash_before, u.hash, sizeof hash_before);
  rc = snapshot(c, &lives, &n, err);
  if (rc) return rc;
  for (size_t i = 0; i < n; i++) {
    p11_err_clear(&pe);
    pthread_rwlock_wrlock(&lives[i]->lock);
    rc = set_pin_locked(c, lives[i], new_password, &pe);
    pthread_rwlock_unlock(&lives[i]->lock);
    if (rc) {
      rc = kerr_set(err, KERR_HSM_INTERNAL_FAILURE, "Cannot change kmsuser's PIN on HSM %s: %s",
                    lives[i]->hsm_id, pe.e.msg);
      goto out;
    }
  }
  /* Only now is it the cluster's password (what new HSMs get). */
  rc = hsmi_begin(c->svc, true, &tx, err);
  if (rc) goto out;
  rc = check_all_changed(c, tx, new_password, err);
  if (!rc) rc = c->svc->st->ops->hsm->user_get(tx, c->cluster_id, HSMI_KMSUSER, &u, err);
  if (!rc && memcmp(u.hash, hash_before, sizeof hash_before) != 0)
    rc = kerr_set(err, KERR_CONFLICT,
                  "kmsuser's password of cluster %s was changed by an operator during the change",
                  c->cluster_id);
  if (!rc) rc = hsmi_password_set(&u, new_password, err);
  if (!rc) rc = c->svc->st->ops->hsm->user_put(tx, &u, err);
  if (!rc)
    rc = hsmi_secret_put_text(c->svc, tx, c->cluster_id, HSMI_SECRET_USER_PIN, new_password, err);
  if (rc) {
    c->svc->st->ops->rollback(tx);
    goto out;
  }
  rc = c->svc->st->ops->commit(tx, err);
out:
  drop_lives(c->svc, lives, n);
  return rc;
}

/* ------------------------------------------------------------------ keys */

kerr_code hsm_conn_create_key(hsm_conn *c, const char *label, kerr *err) {
  hsm_live **lives = NULL;
  size_t n = 0;
  p11_err pe;
  p11_session *s = NULL;
  store_hsm_blob blob;
  kbytes wrapped = {0};
  CK_OBJECT_HANDLE key, wrap;
  store_tx *tx = NULL;
  bool stored = false;
  memset(&blob, 0, sizeof blob);
  p11_err_clear(&pe);
  if (!label || !*label || strlen(label) >= sizeof blob.label)
    return kerr_set(err, KERR_VALIDATION, "bad key label");
  kerr_code rc = snapshot(c, &lives, &n, err);
  if (rc) return rc;
  if (n < 2) {
    rc = kerr_set(err, KERR_HSM_CLUSTER_INVALID_CONFIG,
                  "The AWS CloudHSM cluster %s has %zu active HSM(s); creating a key needs two",
                  c->cluster_id, n);
    goto out;
  }
  /* Make the key once, as a copy-able key, and turn it into a backup blob. */
  rc = acquire_logged_in(c, lives[0], &s, &pe);
  if (rc) goto p11fail;
  rc = p11_key_find(s, HSMI_WRAP_KEY_ID, &wrap, &pe);
  if (!rc) rc = p11_key_generate(s, label, P11_KEY_DATA_COPYABLE, &key, &pe);
  if (!rc) {
    rc = p11_key_wrap(s, wrap, key, &wrapped, &pe);
    p11_key_destroy(s, key, NULL);
  }
  p11_session_release(s);
  s = NULL;
  pthread_rwlock_unlock(&lives[0]->lock);
  if (rc) goto p11fail;
  if (wrapped.len > sizeof blob.wrapped) {
    rc = kerr_set(err, KERR_HSM_INTERNAL_FAILURE, "wrapped key too large");
    goto out;
  }
  snprintf(blob.label, sizeof blob.label, "%s", label);
  memcpy(blob.wrapped, wrapped.data, wrapped.len);
  blob.wrapped_len = wrapped.len;
  rc = hsmi_begin(c->svc, true, &tx, err);
  if (rc) goto out;
  rc = c->svc->st->ops->hsm->blob_put(tx, c->lineage, &blob, err);
  if (rc) {
    c->svc->st->ops->rollback(tx);
    goto out;
  }
  rc = c->svc->st->ops->commit(tx, err);
  if (rc) goto out;
  stored = true;
  /* Every active HSM gets the key as a non-extractable key. */
  for (size_t i = 0; i < n; i++) {
    rc = acquire_logged_in(c, lives[i], &s, &pe);
    if (rc) goto p11fail;
    rc = p11_key_find(s, HSMI_WRAP_KEY_ID, &wrap, &pe);
    if (!rc) rc = p11_key_unwrap(s, wrap, blob.wrapped, blob.wrapped_len, label, P11_KEY_DATA, &key, &pe);
    p11_session_release(s);
    s = NULL;
    pthread_rwlock_unlock(&lives[i]->lock);
    if (rc) goto p11fail;
  }
  goto out;
p11fail:
  /* An HSM whose sessions all stayed busy past --hsm-timeout did not fail:
   * it did not answer in time, and the caller may retry. */
  rc = kerr_set(err, rc == KERR_ALREADY_EXISTS || rc == KERR_DEPENDENCY_TIMEOUT ? rc
                                                                                : KERR_HSM_INTERNAL_FAILURE,
                "%s", pe.e.msg);
out:
  if (rc && stored) hsm_conn_delete_key(c, label, NULL);
  kbytes_wipe_free(&wrapped);
  drop_lives(c->svc, lives, n);
  return rc;
}

kerr_code hsm_conn_delete_key(hsm_conn *c, const char *label, kerr *err) {
  hsm_live **lives = NULL;
  size_t n = 0;
  p11_err pe;
  store_tx *tx = NULL;
  kerr_code rc = snapshot(c, &lives, &n, err);
  if (rc) return rc;
  for (size_t i = 0; i < n; i++) {
    p11_session *s = NULL;
    CK_OBJECT_HANDLE key;
    p11_err_clear(&pe);
    rc = acquire_logged_in(c, lives[i], &s, &pe);
    if (rc) goto p11fail;
    /* Its working copy goes too, before and after: a request that found
     * the key just before it was destroyed may have kept a new one. */
    p11_keycache_forget(lives[i]->keys, s, label);
    rc = p11_key_find(s, label, &key, &pe);
    if (!rc) rc = p11_key_destroy(s, key, &pe);
    if (rc == KERR_NOT_FOUND) rc = KERR_OK;
    p11_keycache_forget(lives[i]->keys, s, label);
    p11_session_release(s);
    pthread_rwlock_unlock(&lives[i]->lock);
    if (rc) goto p11fail;
  }
  rc = hsmi_begin(c->svc, true, &tx, err);
  if (rc) goto out;
  rc = c->svc->st->ops->hsm->blob_delete(tx, c->lineage, label, err);
  if (rc)
    c->svc->st->ops->rollback(tx);
  else
    rc = c->svc->st->ops->commit(tx, err);
  goto out;
p11fail:
  rc = kerr_set(err, KERR_HSM_INTERNAL_FAILURE, "%s", pe.e.msg);
out:
  drop_lives(c->svc, lives, n);
  return rc;
}

/* Run `fn` on the first HSM that answers; a missing key or a bad ciphertext
 * is final, an unreachable or busy HSM moves on to the next.  When none
 * answered and at least one was only busy (no free session within
 * --hsm-timeout), the answer is KERR_DEPENDENCY_TIMEOUT: retrying may work. */
typedef kerr_code (*hsm_op_fn)(hsm_live *l, p11_session *s, void *arg, p11_err *pe);

static kerr_code on_some_hsm(hsm_conn *c, hsm_op_fn fn, void *arg, kerr *err) {
  hsm_live **lives = NULL;
  size_t n = 0;
  p11_err pe;
  bool busy = false;
  p11_err_clear(&pe);
  kerr_code rc = snapshot(c, &lives, &n, err);
  if (rc) return rc;
  rc = kerr_set(err, KERR_KEY_UNAVAILABLE, "The AWS CloudHSM cluster %s has no reachable HSM",
                c->cluster_id);
  for (size_t i = 0; i < n; i++) {
    p11_session *s = NULL;
    p11_err_clear(&pe);
    rc = acquire_logged_in(c, lives[i], &s, &pe);
    if (rc) {
      if (rc == KERR_DEPENDENCY_TIMEOUT) busy = true;
      rc = kerr_set(err, KERR_KEY_UNAVAILABLE, "HSM %s: %s", lives[i]->hsm_id, pe.e.msg);
      continue;
    }
    rc = fn(lives[i], s, arg, &pe);
    p11_session_release(s);
    pthread_rwlock_unlock(&lives[i]->lock);
    if (!rc) break;
    rc = kerr_set(err, rc == KERR_NOT_FOUND || rc == KERR_INVALID_CIPHERTEXT ? rc : KERR_KEY_UNAVAILABLE,
                  "HSM %s: %s", lives[i]->hsm_id, pe.e.msg);
    if (rc != KERR_KEY_UNAVAILABLE) break;
  }
  if (rc == KERR_KEY_UNAVAILABLE && busy)
    rc = kerr_set(err, KERR_DEPENDENCY_TIMEOUT,
                  "The AWS CloudHSM cluster %s did not answer in time: every HSM's sessions "
                  "stayed busy.",
                  c->cluster_id);
  drop_lives(c->svc, lives, n);
  return rc;
}

typedef struct gcm_arg {
  const char *label;
  const uint8_t *in;
  size_t len;
  const uint8_t *aad;
  size_t aad_len;
  uint8_t *iv;        /* in or out */
  uint8_t *tag;       /* in or out */
  uint8_t *out;
} gcm_arg;

typedef kerr_code (*gcm_fn)(hsm_live *l, p11_session *s, CK_OBJECT_HANDLE key, gcm_arg *a,
                            p11_err *pe);

/* Run `use` with a's key on l, from l's working copies (p11_keycache.h).  A
 * copy the module no longer knows is forgotten and the key found once more. */
static kerr_code with_key(hsm_live *l, p11_session *s, gcm_arg *a, gcm_fn use, p11_err *pe) {
  for (int attempt = 0;; attempt++) {
    p11_keyref key;
    kerr_code rc = p11_keycache_get(l->keys, s, a->label, &key, pe);
    if (rc) return rc;
    rc = use(l, s, key.handle, a, pe);
    bool stale = rc && attempt == 0 && key.entry &&
                 (pe->rv == CKR_KEY_HANDLE_INVALID || pe->rv == CKR_OBJECT_HANDLE_INVALID);
    if (stale) p11_keycache_stale(l->keys, &key);
    p11_keycache_put(l->keys, s, &key);
    if (!stale) return rc;
  }
}

/* The IV is the HSM's: drawn from its random generator, a batch at a time. */
static kerr_code encrypt_with(hsm_live *l, p11_session *s, CK_OBJECT_HANDLE key, gcm_arg *a,
                              p11_err *pe) {
  kbytes ct = {0};
  kerr_code rc = p11_iv_batch_next(&l->ivs, &l->ivs_lock, s, a->iv, pe);
  if (!rc)
    rc = p11_gcm_encrypt_iv(s, key, a->iv, HSM_GCM_IV_LEN, a->aad, a->aad_len, a->in, a->len, &ct, pe);
  if (!rc && ct.len != a->len + HSM_GCM_TAG_LEN) rc = kerr_set(&pe->e, KERR_INTERNAL, "bad GCM output length");
  if (!rc) {
    memcpy(a->out, ct.data, a->len);
    memcpy(a->tag, ct.data + a->len, HSM_GCM_TAG_LEN);
  }
  kbytes_wipe_free(&ct);
  return rc;
}

static kerr_code decrypt_with(hsm_live *l, p11_session *s, CK_OBJECT_HANDLE key, gcm_arg *a,
                              p11_err *pe) {
  kbytes pt = {0};
  (void)l;
  uint8_t *buf = malloc(a->len + HSM_GCM_TAG_LEN);
  if (!buf) return kerr_set(&pe->e, KERR_INTERNAL, "Out of memory.");
  if (a->len) memcpy(buf, a->in, a->len);
  memcpy(buf + a->len, a->tag, HSM_GCM_TAG_LEN);
  kerr_code rc = p11_gcm_decrypt(s, key, a->iv, a->aad, a->aad_len, buf, a->len + HSM_GCM_TAG_LEN, &pt, pe);
  if (!rc && pt.len != a->len) rc = kerr_set(&pe->e, KERR_INTERNAL, "bad GCM output length");
  if (!rc && a->len) memcpy(a->out, pt.data, a->len);
  kbytes_wipe_free(&pt);
  free(buf);
  return rc;
}

static kerr_code do_encrypt(hsm_live *l, p11_session *s, void *arg, p11_err *pe) {
  return with_key(l, s, arg, encrypt_with, pe);
}

static kerr_code do_decrypt(hsm_live *l, p11_session *s, void *arg, p11_err *pe) {
  return with_key(l, s, arg, decrypt_with, pe);
}

kerr_code hsm_conn_encrypt(hsm_conn *c, const char *label, const uint8_t *pt, size_t len,
                           const uint8_t *aad, size_t aad_len, uint8_t iv_out[HSM_GCM_IV_LEN],
                           uint8_t *ct_out, uint8_t tag_out[HSM_GCM_TAG_LEN], kerr *err) {
  gcm_arg a = {label, pt, len, aad, aad_len, iv_out, tag_out, ct_out};
  return on_some_hsm(c, do_encrypt, &a, err);
}

kerr_code hsm_conn_decrypt(hsm_conn *c, const char *label, const uint8_t *ct, size_t len,
                           const uint8_t *aad, size_t aad_len,
                           const uint8_t iv[HSM_GCM_IV_LEN], const uint8_t tag[HSM_GCM_TAG_LEN],
                           uint8_t *pt_out, kerr *err) {
  gcm_arg a = {label, ct, len, aad, aad_len, (uint8_t *)iv, (uint8_t *)tag, pt_out};
  kerr_code rc = on_some_hsm(c, do_decrypt, &a, err);
  if (rc && len) secure_wipe(pt_out, len);
  return rc;
}

typedef struct random_arg {
  uint8_t *out;
  size_t n;
} random_arg;

static kerr_code do_random(hsm_live *l, p11_session *s, void *arg, p11_err *pe) {
  random_arg *a = arg;
  (void)l;
  for (size_t off = 0; off < a->n;) {
    size_t chunk = a->n - off > P11_RANDOM_MAX ? P11_RANDOM_MAX : a->n - off;
    kerr_code rc = p11_random(s, a->out + off, chunk, pe);
    if (rc) return rc;
    off += chunk;
  }
  return KERR_OK;
}

kerr_code hsm_conn_random(hsm_conn *c, uint8_t *out, size_t n, kerr *err) {
  random_arg a = {out, n};
  if (n == 0) return KERR_OK;
  return on_some_hsm(c, do_random, &a, err);
}
