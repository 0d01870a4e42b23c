/* kms_cks_conn.c - the connection manager of custom key stores: the one
 * function that changes a store's ConnectionState, the asynchronous connect
 * workers, the live HSM connections that KMS keys in CloudHSM key stores use
 * for their cryptography, and recovery after a restart.
 *
 * Why a manager: ConnectCustomKeyStore must answer at once while logging in
 * to every HSM of a cluster takes real time, and a disconnect must not pull
 * a connection from under an Encrypt in flight.  So each store has a small
 * in-memory record (`live`) holding its connection with a use count, and an
 * "attempt" number: a connect worker may only publish its connection when no
 * disconnect or newer connect has happened since it started.  Workers of
 * one store run one at a time (connect_lock), so a stale worker that rotates
 * the kmsuser password finishes persisting it before the next one reads it.
 *
 * The kmsuser password is rotated after every successful login to a random
 * one only kmsd knows.  Changing it is one C_SetPIN per HSM, so a crash or a
 * failing HSM can stop it between two HSMs.  What makes that harmless is one
 * invariant, kept at every instant by the order of the steps below:
 *
 *   every HSM's kmsuser password is one of the store's stored passwords,
 *   {current, pending} (both wrapped under the root key in its row).
 *
 * The connect worker logs in to each HSM with whichever of the two it takes
 * (hsm_cluster_connect), then repairs: if any HSM took pending, the others
 * are moved to pending and pending is promoted to current.  Only then does
 * it rotate: a fresh password is stored as pending (no HSM has the old
 * pending any more), set on each HSM, and promoted.  A connect after a crash
 * anywhere in this therefore logs in and finishes the job; a PIN change that
 * fails ends the connect FAILED, and the next connect finishes the change.
 * A worker that a disconnect overtakes stops at its next step, and the
 * disconnect waits for it, so nothing changes a store's passwords after it
 * is DISCONNECTED. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/kclock.h"
#include "core/log.h"
#include "core/secmem.h"
#include "cloudhsm/hsm_cluster.h"
#include "kms/kms_internal.h"

#define PASSWORD_MATERIAL_ID KMSI_CKS_PASSWORD_MATERIAL_ID
#define ROTATED_PASSWORD_LEN 32
#define PASSWORD_BUF (ROTATED_PASSWORD_LEN + 1)
#define RECOVERY_PAGE 100
#define REQUEST_ID_MAX 64

typedef struct cks_live {
  char cks_id[STORE_CKS_ID_MAX];
  hsm_conn *conn;               /* NULL unless CONNECTED */
  int users;                    /* threads using conn now */
  uint64_t attempt;             /* bumped by every connect and disconnect */
  pthread_mutex_t connect_lock; /* one connect worker per store at a time */
  struct cks_live *next;
} cks_live;

typedef struct cks_worker {
  pthread_t thread;
  bool done;
  kms_domain *d;
  cks_live *live;
  uint64_t attempt;
  char request_id[REQUEST_ID_MAX];
  struct cks_worker *next;
} cks_worker;

struct kmsi_cks_manager {
  pthread_mutex_t lock;
  pthread_cond_t released; /* a connection's use count dropped */
  cks_live *live;
  cks_worker *workers;
};

static const char *const STATE_CONNECTING = "CONNECTING";
static const char *const STATE_CONNECTED = "CONNECTED";
static const char *const STATE_FAILED = "FAILED";
static const char *const STATE_DISCONNECTING = "DISCONNECTING";
static const char *const STATE_DISCONNECTED = "DISCONNECTED";

/* ------------------------------------------------------------ passwords */

kerr_code kmsi_cks_wrap_password(kms_domain *d, const char *cks_id, const char *password,
                                 uint8_t **out, size_t *out_len, kerr *err) {
  uint8_t *padded = secure_alloc(AESGCM_KEY_LEN);
  size_t n = password ? strlen(password) : 0;
  kerr_code rc = KERR_OK;

  *out = NULL;
  *out_len = 0;
  if (!padded) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  if (n < 1 || n > AESGCM_KEY_LEN) {
    rc = kerr_set(err, KERR_VALIDATION, "The key store password must be 1 to %d characters.",
                  AESGCM_KEY_LEN);
    goto out;
  }
  /* NUL padding to the root key's fixed 32-byte unit; a password is never
   * allowed to contain NUL, so the length is recovered exactly. */
  memcpy(padded, password, n);
  *out = malloc(ROOTKEY_WRAPPED_LEN);
  if (!*out) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  rc = rootkey_wrap(d->rk, cks_id, PASSWORD_MATERIAL_ID, padded, *out, err);
  if (rc) {
    free(*out);
    *out = NULL;
    goto out;
  }
  *out_len = ROOTKEY_WRAPPED_LEN;
out:
  secure_free(padded, AESGCM_KEY_LEN);
  return rc;
}

/* Unwrap into `out` (PASSWORD_BUF bytes of secret memory, NUL-terminated). */
static kerr_code unwrap_password(kms_domain *d, const char *cks_id, const uint8_t *wrapped,
                                 size_t len, char *out, kerr *err) {
  kerr_code rc = rootkey_unwrap(d->rk, cks_id, PASSWORD_MATERIAL_ID, wrapped, len,
                                (uint8_t *)out, err);
  out[AESGCM_KEY_LEN] = '\0';
  return rc;
}

bool kmsi_cks_password_is(kms_domain *d, const char *cks_id, const uint8_t *wrapped, size_t len,
                          const char *password) {
  char *pw = secure_alloc(PASSWORD_BUF);
  kerr ignored;
  bool same = false;
  if (!pw || !wrapped || !password) goto out;
  if (unwrap_password(d, cks_id, wrapped, len, pw, &ignored) == KERR_OK)
    same = strcmp(pw, password) == 0;
out:
  secure_free(pw, PASSWORD_BUF);
  return same;
}

/* A fresh random password of ROTATED_PASSWORD_LEN letters and digits. */
static kerr_code random_password(char out[PASSWORD_BUF], kerr *err) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  size_t filled = 0;
  uint8_t b[64];
  while (filled < ROTATED_PASSWORD_LEN) {
    if (rand_bytes(b, sizeof b)) return kerr_set(err, KERR_INTERNAL, "The random number generator failed.");
    for (size_t i = 0; i < sizeof b && filled < ROTATED_PASSWORD_LEN; i++)
      if (b[i] < 248) out[filled++] = alphabet[b[i] % 62]; /* 248 = 4*62: no bias */
  }
  secure_wipe(b, sizeof b);
  out[ROTATED_PASSWORD_LEN] = '\0';
  return KERR_OK;
}

/* ---------------------------------------------------------- state change */

static bool state_in(const char *state, const char *const *list) {
  if (!list) return true;
  for (; *list; list++)
    if (strcmp(state, *list) == 0) return true;
  return false;
}

kerr_code kmsi_cks_set_state(kms_domain *d, const char *cks_id, const char *const *from,
                             const char *to, const char *error_code, const char *request_id,
                             char *prev_out, kerr *err) {
  store_tx *tx = NULL;
  store_cks c;
  char prev[STORE_ENUM_MAX];
  kerr_code rc;

  memset(&c, 0, sizeof c);
  rc = kmsi_begin(d, true, &tx, err);
  if (rc) return rc;
  rc = d->st->ops->cks_get(tx, cks_id, &c, err);
  if (rc == KERR_NOT_FOUND) {
    rc = kerr_set(err, KERR_CKS_NOT_FOUND, "Custom key store %s does not exist.", cks_id);
    goto out;
  }
  if (rc) goto out;
  snprintf(prev, sizeof prev, "%s", c.connection_state);
  if (prev_out) snprintf(prev_out, STORE_ENUM_MAX, "%s", prev);
  if (!state_in(prev, from)) {
    rc = kerr_set(err, KERR_CONFLICT, "Custom key store %s is %s.", cks_id, prev);
    goto out;
  }
  snprintf(c.connection_state, sizeof c.connection_state, "%s", to);
  snprintf(c.connection_error, sizeof c.connection_error, "%s", error_code ? error_code : "");
  c.state_changed_ms = kclock_now_ms();
  rc = d->st->ops->cks_update(tx, &c, err);
  if (rc) goto out;
  rc = d->st->ops->commit(tx, err);
  tx = NULL;
  if (rc) goto out;
  log_msg(error_code ? LOG_WARN : LOG_INFO, request_id, "custom key store %s: %s -> %s%s%s",
          cks_id, prev, to, error_code ? " " : "", error_code ? error_code : "");
out:
  if (tx) d->st->ops->rollback(tx);
  store_cks_clear(&c);
  return rc;
}

/* ------------------------------------------------------- live registry */

/* The live record of `cks_id`, created on first use.  Caller holds m->lock. */
static cks_live *live_get_locked(kmsi_cks_manager *m, const char *cks_id) {
  cks_live *l;
  for (l = m->live; l; l = l->next)
    if (strcmp(l->cks_id, cks_id) == 0) return l;
  l = calloc(1, sizeof *l);
  if (!l) return NULL;
  snprintf(l->cks_id, sizeof l->cks_id, "%s", cks_id);
  pthread_mutex_init(&l->connect_lock, NULL);
  l->next = m->live;
  m->live = l;
  return l;
}

/* Borrow the live connection of `cks_id`; NULL when not connected.  Give
 * it back with conn_release. */
static hsm_conn *conn_acquire(kms_domain *d, const char *cks_id) {
  kmsi_cks_manager *m = d->cks;
  hsm_conn *c = NULL;
  if (!m) return NULL;
  pthread_mutex_lock(&m->lock);
  for (cks_live *l = m->live; l; l = l->next) {
    if (strcmp(l->cks_id, cks_id) == 0 && l->conn) {
      l->users++;
      c = l->conn;
      break;
    }
  }
  pthread_mutex_unlock(&m->lock);
  return c;
}

static void conn_release(kms_domain *d, const char *cks_id) {
  kmsi_cks_manager *m = d->cks;
  pthread_mutex_lock(&m->lock);
  for (cks_live *l = m->live; l; l = l->next) {
    if (strcmp(l->cks_id, cks_id) == 0) {
      l->users--;
      break;
    }
  }
  pthread_cond_broadcast(&m->released);
  pthread_mutex_unlock(&m->lock);
}

/* Take `l`'s connection away once nobody uses it.  Caller holds m->lock. */
static hsm_conn *conn_take_locked(kmsi_cks_manager *m, cks_live *l) {
  hsm_conn *c;
  while (l->users > 0) pthread_cond_wait(&m->released, &m->lock);
  c = l->conn;
  l->conn = NULL;
  return c;
}

void kmsi_cks_detach(kms_domain *d, const char *cks_id) {
  kmsi_cks_manager *m = d->cks;
  hsm_conn *c = NULL;
  cks_live *l;
  if (!m) return;
  pthread_mutex_lock(&m->lock);
  l = live_get_locked(m, cks_id);
  if (l) {
    l->attempt++;
    c = conn_take_locked(m, l);
  }
  pthread_mutex_unlock(&m->lock);
  hsm_conn_close(c);
  /* Wait for a worker still running for the store: it sees the new attempt
   * at its next step and stops, changing no state.  After this returns no
   * worker touches the store's HSMs or passwords, so what the operator does
   * next (UpdateCustomKeyStore, hsm-cli) is not raced by a stale rotation.
   * Live records live as long as the manager, so `l` stays valid. */
  if (l) {
    pthread_mutex_lock(&l->connect_lock);
    pthread_mutex_unlock(&l->connect_lock);
  }
}

/* ------------------------------------------------------- connect worker */

/* Copy `len` bytes of `src` into a new allocation (*dst; NULL for NULL). */
static kerr_code dup_bytes(const uint8_t *src, size_t len, uint8_t **dst, kerr *err) {
  *dst = NULL;
  if (!src) return KERR_OK;
  *dst = malloc(len ? len : 1);
  if (!*dst) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  if (len) memcpy(*dst, src, len);
  return KERR_OK;
}

static bool same_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen) {
  if (!a || !b) return a == b;
  return alen == blen && memcmp(a, b, alen) == 0;
}

/* Set the wrapped passwords of store `c->cks_id` to `current` (never NULL)
 * and `pending` (NULL: none), provided the row still holds the two that `c`
 * holds; then `c` holds the new ones.  A row whose passwords changed under
 * the worker (an UpdateCustomKeyStore after a disconnect) is the operator's:
 * KERR_CONFLICT, nothing written.  Not a state change.  On failure `c` and
 * the row are unchanged. */
static kerr_code store_passwords(kms_domain *d, store_cks *c, const uint8_t *current,
                                 size_t current_len, const uint8_t *pending, size_t pending_len,
                                 kerr *err) {
  store_tx *tx = NULL;
  store_cks row;
  uint8_t *new_current = NULL, *new_pending = NULL, *mirror_current = NULL,
          *mirror_pending = NULL;
  kerr_code rc;
  memset(&row, 0, sizeof row);
  rc = dup_bytes(current, current_len, &new_current, err);
  if (!rc) rc = dup_bytes(pending, pending_len, &new_pending, err);
  if (!rc) rc = dup_bytes(current, current_len, &mirror_current, err);
  if (!rc) rc = dup_bytes(pending, pending_len, &mirror_pending, err);
  if (rc) goto out;
  rc = kmsi_begin(d, true, &tx, err);
  if (rc) goto out;
  rc = d->st->ops->cks_get(tx, c->cks_id, &row, err);
  if (rc) goto out;
  if (!same_bytes(row.password_wrapped, row.password_wrapped_len, c->password_wrapped,
                  c->password_wrapped_len) ||
      !same_bytes(row.pending_password_wrapped, row.pending_password_wrapped_len,
                  c->pending_password_wrapped, c->pending_password_wrapped_len)) {
    rc = kerr_set(err, KERR_CONFLICT,
                  "The kmsuser password of custom key store %s was changed meanwhile.", c->cks_id);
    goto out;
  }
  free(row.password_wrapped);
  row.password_wrapped = new_current;
  row.password_wrapped_len = current_len;
  new_current = NULL;
  free(row.pending_password_wrapped);
  row.pending_password_wrapped = new_pending;
  row.pending_password_wrapped_len = new_pending ? pending_len : 0;
  new_pending = NULL;
  rc = d->st->ops->cks_update(tx, &row, err);
  if (rc) goto out;
  rc = d->st->ops->commit(tx, err);
  tx = NULL;
  if (rc) goto out;
  free(c->password_wrapped);
  c->password_wrapped = mirror_current;
  c->password_wrapped_len = current_len;
  mirror_current = NULL;
  free(c->pending_password_wrapped);
  c->pending_password_wrapped = mirror_pending;
  c->pending_password_wrapped_len = mirror_pending ? pending_len : 0;
  mirror_pending = NULL;
out:
  if (tx) d->st->ops->rollback(tx);
  free(new_current);
  free(new_pending);
  free(mirror_current);
  free(mirror_pending);
  store_cks_clear(&row);
  return rc;
}

static bool attempt_current(kmsi_cks_manager *m, cks_live *l, uint64_t attempt) {
  bool ok;
  pthread_mutex_lock(&m->lock);
  ok = l->attempt == attempt;
  pthread_mutex_unlock(&m->lock);
  return ok;
}

/* KERR_CONFLICT when a disconnect or a newer connect overtook worker `w`:
 * checked before each step of a password change that touches the HSMs or
 * the stored passwords, so a stale worker stops at the next step (every
 * step leaves the invariant above true). */
static kerr_code check_current(const cks_worker *w, kerr *err) {
  if (attempt_current(w->d->cks, w->live, w->attempt)) return KERR_OK;
  return kerr_set(err, KERR_CONFLICT, "The connect was overtaken by a disconnect or a newer connect.");
}

/* Log in to the cluster with the store's passwords: each HSM with the one it
 * takes of current and pending.  On KERR_OK *conn is live; else *code is the
 * ConnectionErrorCode. */
static kerr_code login_cluster(kms_domain *d, const store_cks *c, hsm_conn **conn,
                               const char **code, kerr *err) {
  char *current = secure_alloc(PASSWORD_BUF);
  char *pending = secure_alloc(PASSWORD_BUF);
  const char *passwords[HSM_CONNECT_PASSWORDS_MAX];
  size_t n = 0;
  kerr_code rc = KERR_OK;

  *conn = NULL;
  *code = "INTERNAL_ERROR";
  if (!current || !pending) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  if (!c->password_wrapped) {
    rc = kerr_set(err, KERR_INTERNAL, "The key store has no kmsuser password.");
    goto out;
  }
  rc = unwrap_password(d, c->cks_id, c->password_wrapped, c->password_wrapped_len, current, err);
  if (rc) goto out;
  passwords[n++] = current;
  if (c->pending_password_wrapped) {
    rc = unwrap_password(d, c->cks_id, c->pending_password_wrapped,
                         c->pending_password_wrapped_len, pending, err);
    if (rc) goto out;
    passwords[n++] = pending;
  }
  rc = hsm_cluster_connect(d->hsm, c->account_id, c->region, c->cluster_id, passwords, n, conn, code,
                           err);
out:
  secure_free(current, PASSWORD_BUF);
  secure_free(pending, PASSWORD_BUF);
  if (rc && !*code) *code = "INTERNAL_ERROR";
  return rc;
}

/* Finish a change of kmsuser's password that a crash or a failing HSM cut
 * short: if any HSM has the pending password, give it to the others and make
 * it current.  Nothing to do when no HSM has it. */
static kerr_code repair_password(const cks_worker *w, store_cks *c, hsm_conn *conn, kerr *err) {
  kms_domain *d = w->d;
  char *pw = NULL;
  kerr_code rc = KERR_OK;
  if (!c->pending_password_wrapped) return KERR_OK;
  pw = secure_alloc(PASSWORD_BUF);
  if (!pw) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  rc = unwrap_password(d, c->cks_id, c->pending_password_wrapped, c->pending_password_wrapped_len,
                       pw, err);
  if (rc || !hsm_conn_has_password(conn, pw)) goto out;
  rc = check_current(w, err);
  if (!rc) rc = hsm_conn_set_password(conn, pw, err);
  if (!rc) rc = check_current(w, err);
  if (rc) goto out;
  rc = store_passwords(d, c, c->pending_password_wrapped, c->pending_password_wrapped_len, NULL, 0,
                       err);
out:
  secure_free(pw, PASSWORD_BUF);
  return rc;
}

/* Rotate kmsuser's password on the connected cluster, every HSM of which has
 * the current one (after repair_password): store a new one as pending (the
 * old pending, if any, is on no HSM), set it on the HSMs, promote it. */
static kerr_code rotate_password(const cks_worker *w, store_cks *c, hsm_conn *conn, kerr *err) {
  kms_domain *d = w->d;
  char *pw = secure_alloc(PASSWORD_BUF);
  uint8_t *wrapped = NULL;
  size_t wrapped_len = 0;
  kerr_code rc;

  if (!pw) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  rc = random_password(pw, err);
  if (rc) goto out;
  rc = kmsi_cks_wrap_password(d, c->cks_id, pw, &wrapped, &wrapped_len, err);
  if (rc) goto out;
  rc = check_current(w, err);
  if (!rc)
    rc = store_passwords(d, c, c->password_wrapped, c->password_wrapped_len, wrapped, wrapped_len,
                         err);
  if (!rc) rc = check_current(w, err);
  if (!rc) rc = hsm_conn_set_password(conn, pw, err);
  if (!rc) rc = check_current(w, err);
  if (rc) goto out;
  rc = store_passwords(d, c, wrapped, wrapped_len, NULL, 0, err);
out:
  free(wrapped);
  secure_free(pw, PASSWORD_BUF);
  return rc;
}

static void worker_run(cks_worker *w) {
  kms_domain *d = w->d;
  kmsi_cks_manager *m = d->cks;
  static const char *const from_connecting[] = {"CONNECTING", NULL};
  store_tx *tx = NULL;
  store_cks c;
  hsm_conn *conn = NULL;
  const char *code = NULL;
  bool published = false;
  kerr e;
  kerr_code rc;

  memset(&c, 0, sizeof c);
  kerr_clear(&e);
  pthread_mutex_lock(&w->live->connect_lock);
  if (!attempt_current(m, w->live, w->attempt)) goto out;
  rc = kmsi_begin(d, false, &tx, &e);
  if (rc == KERR_OK) rc = d->st->ops->cks_get(tx, w->live->cks_id, &c, &e);
  if (tx) d->st->ops->rollback(tx);
  if (rc) {
    log_msg(LOG_WARN, w->request_id, "custom key store %s: cannot read it to connect: %s",
            w->live->cks_id, e.msg);
    goto out;
  }
  if (strcmp(c.connection_state, STATE_CONNECTING) != 0) goto out;

  rc = login_cluster(d, &c, &conn, &code, &e);
  if (rc) goto failed;
  if (!attempt_current(m, w->live, w->attempt)) goto out;
  /* A repair or rotation cut short leaves the invariant true, so the next
   * connect finishes it.  This one still fails: an HSM that refused
   * C_SetPIN may refuse what follows too (SoftHSM2 keeps a token it could
   * not write broken until its module is reinitialized, which the next
   * connect's login does), and a store must not look CONNECTED while one of
   * its HSMs is in doubt. */
  rc = repair_password(w, &c, conn, &e);
  if (rc == KERR_OK) rc = rotate_password(w, &c, conn, &e);
  if (rc && !attempt_current(m, w->live, w->attempt)) goto out; /* overtaken: no state change */
  if (rc) {
    log_msg(LOG_WARN, w->request_id,
            "custom key store %s: kmsuser's password change is unfinished (the next connect "
            "finishes it)",
            c.cks_id);
    code = "INTERNAL_ERROR";
    goto failed;
  }
  pthread_mutex_lock(&m->lock);
  if (w->live->attempt == w->attempt) {
    w->live->conn = conn;
    conn = NULL;
    published = true;
  }
  pthread_mutex_unlock(&m->lock);
  if (!published) goto out;
  rc = kmsi_cks_set_state(d, c.cks_id, from_connecting, STATE_CONNECTED, NULL, w->request_id,
                          NULL, &e);
  if (rc) {
    /* Overtaken by a disconnect, which also takes the connection away. */
    log_msg(LOG_INFO, w->request_id, "custom key store %s: connect overtaken: %s", c.cks_id, e.msg);
  }
  goto out;

failed:
  log_msg(LOG_WARN, w->request_id, "custom key store %s: connect failed (%s): %s", c.cks_id,
          code ? code : "INTERNAL_ERROR", e.msg);
  if (attempt_current(m, w->live, w->attempt)) {
    kerr e2;
    kerr_clear(&e2);
    kmsi_cks_set_state(d, c.cks_id, from_connecting, STATE_FAILED,
                       code ? code : "INTERNAL_ERROR", w->request_id, NULL, &e2);
  }
out:
  hsm_conn_close(conn);
  store_cks_clear(&c);
  pthread_mutex_unlock(&w->live->connect_lock);
}

static void *worker_main(void *arg) {
  cks_worker *w = arg;
  worker_run(w);
  pthread_mutex_lock(&w->d->cks->lock);
  w->done = true;
  pthread_mutex_unlock(&w->d->cks->lock);
  return NULL;
}

/* Join and free finished workers.  Caller holds m->lock; joining a done
 * worker does not block (it only has to return from worker_main). */
static void reap_locked(kmsi_cks_manager *m) {
  cks_worker **pp = &m->workers;
  while (*pp) {
    cks_worker *w = *pp;
    if (w->done) {
      *pp = w->next;
      pthread_join(w->thread, NULL);
      free(w);
    } else {
      pp = &w->next;
    }
  }
}

kerr_code kmsi_cks_connect_async(kms_domain *d, const char *cks_id, const char *request_id,
                                 kerr *err) {
  kmsi_cks_manager *m = d->cks;
  cks_worker *w;
  cks_live *l;

  if (!m) return kerr_set(err, KERR_INTERNAL, "Custom key stores are not running.");
  w = calloc(1, sizeof *w);
  if (!w) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  w->d = d;
  snprintf(w->request_id, sizeof w->request_id, "%s", request_id ? request_id : "");
  pthread_mutex_lock(&m->lock);
  reap_locked(m);
  l = live_get_locked(m, cks_id);
  if (!l) {
    pthread_mutex_unlock(&m->lock);
    free(w);
    return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
  w->live = l;
  w->attempt = ++l->attempt;
  if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
    pthread_mutex_unlock(&m->lock);
    free(w);
    return kerr_set(err, KERR_INTERNAL, "Cannot start a connect worker.");
  }
  w->next = m->workers;
  m->workers = w;
  pthread_mutex_unlock(&m->lock);
  return KERR_OK;
}

/* ------------------------------------------------------------ lifecycle */

/* Bring one store left mid-transition by the previous run forward. */
static void recover_store(kms_domain *d, const store_cks *c) {
  static const char *const from_disconnecting[] = {"DISCONNECTING", NULL};
  static const char *const from_connected[] = {"CONNECTED", NULL};
  kerr e;
  kerr_clear(&e);
  if (strcmp(c->connection_state, STATE_DISCONNECTING) == 0) {
    kmsi_cks_set_state(d, c->cks_id, from_disconnecting, STATE_DISCONNECTED, NULL, "recovery",
                       NULL, &e);
  } else if (strcmp(c->connection_state, STATE_CONNECTED) == 0) {
    if (kmsi_cks_set_state(d, c->cks_id, from_connected, STATE_CONNECTING, NULL, "recovery",
                           NULL, &e) == KERR_OK)
      kmsi_cks_connect_async(d, c->cks_id, "recovery", &e);
  } else if (strcmp(c->connection_state, STATE_CONNECTING) == 0) {
    kmsi_cks_connect_async(d, c->cks_id, "recovery", &e);
  }
  if (e.code) log_msg(LOG_WARN, "recovery", "custom key store %s: %s", c->cks_id, e.msg);
}

kerr_code kmsi_cks_start(kms_domain *d, kerr *err) {
  kmsi_cks_manager *m = calloc(1, sizeof *m);
  char after[STORE_CKS_ID_MAX] = "";
  kerr_code rc = KERR_OK;

  if (!m) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  pthread_mutex_init(&m->lock, NULL);
  pthread_cond_init(&m->released, NULL);
  d->cks = m;
  for (;;) {
    store_tx *tx = NULL;
    store_cks *list = NULL;
    size_t n = 0;
    rc = kmsi_begin(d, false, &tx, err);
    if (rc) break;
    rc = d->st->ops->cks_list(tx, NULL, NULL, after[0] ? after : NULL, RECOVERY_PAGE, &list, &n,
                              err);
    d->st->ops->rollback(tx);
    if (rc) break;
    for (size_t i = 0; i < n; i++) recover_store(d, &list[i]);
    if (n) snprintf(after, sizeof after, "%s", list[n - 1].cks_id);
    store_cks_list_free(list, n);
    if (n < RECOVERY_PAGE) break;
  }
  if (rc) kmsi_cks_stop(d);
  return rc;
}

void kmsi_cks_stop(kms_domain *d) {
  kmsi_cks_manager *m = d ? d->cks : NULL;
  if (!m) return;
  /* Invalidate every attempt so running workers stop at their next check,
   * then wait for them: they may still be inside an HSM login. */
  pthread_mutex_lock(&m->lock);
  for (cks_live *l = m->live; l; l = l->next) l->attempt++;
  pthread_mutex_unlock(&m->lock);
  for (;;) {
    cks_worker *w;
    pthread_mutex_lock(&m->lock);
    w = m->workers;
    if (w) m->workers = w->next;
    pthread_mutex_unlock(&m->lock);
    if (!w) break;
    pthread_join(w->thread, NULL);
    free(w);
  }
  while (m->live) {
    cks_live *l = m->live;
    m->live = l->next;
    hsm_conn_close(l->conn);
    pthread_mutex_destroy(&l->connect_lock);
    free(l);
  }
  pthread_mutex_destroy(&m->lock);
  pthread_cond_destroy(&m->released);
  free(m);
  d->cks = NULL;
}

/* ------------------------------------------------- keys in a key store */

static kerr_code not_connected(const char *key_arn, const char *cks_id, kerr *err) {
  return kerr_set(err, KERR_INVALID_STATE,
                  "%s is unavailable: its custom key store %s is not connected.", key_arn, cks_id);
}

static kerr_code map_hsm_error(kerr_code rc, const char *key_arn, kerr *err) {
  if (rc == KERR_NOT_FOUND)
    return kerr_set(err, KERR_KEY_UNAVAILABLE,
                    "The key material of %s is not in the CloudHSM cluster.", key_arn);
  return rc;
}

kerr_code kmsi_cks_seal(kms_domain *d, const kmsi_key *k, const uint8_t *ctx, size_t ctx_len,
                        const uint8_t *pt, size_t pt_len, uint8_t **blob, size_t *blob_len,
                        kerr *err) {
  const char *cks_id = k->row.custom_key_store_id;
  hsm_conn *conn = NULL;
  uint8_t *out = NULL, *aad = NULL;
  size_t n = 0, len = KBLOB_OVERHEAD + pt_len;
  kerr_code rc = KERR_OK;

  *blob = NULL;
  *blob_len = 0;
  if (pt_len > KBLOB_MAX_PLAINTEXT) return kerr_set(err, KERR_VALIDATION, "Plaintext too long.");
  out = calloc(1, len);
  aad = malloc(KBLOB_AAD_HEADER_LEN + ctx_len);
  if (!out || !aad) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  /* The same header as blob.h's, so Decrypt finds key and material. */
  out[0] = KBLOB_VERSION;
  if (kblob_uuid_to_bytes(k->row.key_id, out + 1) ||
      strlen(k->row.current_material_id) != 2 * KBLOB_MATERIAL_ID_LEN ||
      hex_decode(k->row.current_material_id, 2 * KBLOB_MATERIAL_ID_LEN, out + 17, &n) ||
      n != KBLOB_MATERIAL_ID_LEN) {
    rc = kerr_set(err, KERR_INTERNAL, "The key has no usable key material id.");
    goto out;
  }
  memcpy(aad, out, KBLOB_AAD_HEADER_LEN);
  if (ctx_len) memcpy(aad + KBLOB_AAD_HEADER_LEN, ctx, ctx_len);
  conn = conn_acquire(d, cks_id);
  if (!conn) {
    rc = not_connected(k->arn, cks_id, err);
    goto out;
  }
  rc = hsm_conn_encrypt(conn, k->row.key_id, pt, pt_len, aad, KBLOB_AAD_HEADER_LEN + ctx_len,
                        out + KBLOB_AAD_HEADER_LEN, out + KBLOB_OVERHEAD,
                        out + KBLOB_AAD_HEADER_LEN + AESGCM_IV_LEN, err);
  conn_release(d, cks_id);
  if (rc) {
    rc = map_hsm_error(rc, k->arn, err);
    goto out;
  }
  *blob = out;
  *blob_len = len;
  out = NULL;
out:
  free(out);
  free(aad);
  return rc;
}

kerr_code kmsi_cks_open(kms_domain *d, const kmsi_key *k, const kblob_view *v,
                        const uint8_t *ctx, size_t ctx_len, kbytes *pt, kerr *err) {
  const char *cks_id = k->row.custom_key_store_id;
  char material_hex[KMS_MATERIAL_ID_LEN];
  hsm_conn *conn = NULL;
  uint8_t *aad = NULL;
  kbytes out = {0};
  kerr_code rc = KERR_OK;

  pt->data = NULL;
  pt->len = 0;
  hex_encode(v->material_id, KBLOB_MATERIAL_ID_LEN, material_hex);
  if (strcmp(material_hex, k->row.current_material_id) != 0)
    return kerr_set(err, KERR_INVALID_CIPHERTEXT,
                    "The ciphertext refers to key material that does not exist for this key.");
  aad = malloc(KBLOB_AAD_HEADER_LEN + ctx_len);
  out.data = secure_alloc(v->ct_len);
  if (!aad || !out.data) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  out.len = v->ct_len;
  memcpy(aad, v->header, KBLOB_AAD_HEADER_LEN);
  if (ctx_len) memcpy(aad + KBLOB_AAD_HEADER_LEN, ctx, ctx_len);
  conn = conn_acquire(d, cks_id);
  if (!conn) {
    rc = not_connected(k->arn, cks_id, err);
    goto out;
  }
  rc = hsm_conn_decrypt(conn, k->row.key_id, v->ct, v->ct_len, aad, KBLOB_AAD_HEADER_LEN + ctx_len,
                        v->iv, v->tag, out.data, err);
  conn_release(d, cks_id);
  if (rc == KERR_INVALID_CIPHERTEXT)
    kerr_set(err, KERR_INVALID_CIPHERTEXT,
             "The ciphertext is invalid, was altered, or its encryption context does not match.");
  else if (rc)
    rc = map_hsm_error(rc, k->arn, err);
  if (rc) goto out;
  *pt = out;
  out.data = NULL;
  out.len = 0;
out:
  kbytes_wipe_free(&out);
  free(aad);
  return rc;
}

/* The caller's key store `cks_id` (its account and Region), read in its own
 * short transaction and checked for damage.  Another account's store, or
 * none, is KERR_CKS_NOT_FOUND.  On failure `c` is left empty. */
static kerr_code load_own_store(kms_domain *d, const kms_call *call, const char *cks_id,
                                store_cks *c, kerr *err) {
  store_tx *tx = NULL;
  kerr_code rc = kmsi_begin(d, false, &tx, err);
  if (rc) return rc;
  rc = d->st->ops->cks_get(tx, cks_id, c, err);
  d->st->ops->rollback(tx);
  if (rc == KERR_NOT_FOUND ||
      (rc == KERR_OK && (strcmp(c->account_id, call->caller->account_id) != 0 ||
                         strcmp(c->region, call->region) != 0)))
    rc = kerr_set(err, KERR_CKS_NOT_FOUND, "Custom key store %.64s does not exist.", cks_id);
  if (!rc) rc = kmsi_cks_check_row(c, err);
  if (rc) store_cks_clear(c);
  return rc;
}

kerr_code kmsi_cks_create_key(kms_domain *d, const kms_call *call, const char *cks_id,
                              const char *key_id, char *cluster_id_out, kerr *err) {
  store_cks c;
  hsm_cluster_view v;
  hsm_conn *conn = NULL;
  kerr_code rc;

  memset(&c, 0, sizeof c);
  memset(&v, 0, sizeof v);
  cluster_id_out[0] = '\0';
  rc = load_own_store(d, call, cks_id, &c, err);
  if (rc) goto out;
  if (strcmp(c.type, "AWS_CLOUDHSM") != 0) {
    rc = kerr_set(err, KERR_UNSUPPORTED_OPERATION,
                  "Keys in external key stores are not supported yet.");
    goto out;
  }
  if (strcmp(c.connection_state, STATE_CONNECTED) != 0) {
    rc = kerr_set(err, KERR_CKS_INVALID_STATE,
                  "Custom key store %s is %s; it must be CONNECTED to create keys in it.", cks_id,
                  c.connection_state);
    goto out;
  }
  rc = hsm_cluster_describe(d->hsm, c.account_id, c.region, c.cluster_id, &v, err);
  if (rc == KERR_HSM_CLUSTER_NOT_FOUND) {
    rc = kerr_set(err, KERR_HSM_CLUSTER_INVALID_CONFIG,
                  "The CloudHSM cluster %s of custom key store %s no longer exists.", c.cluster_id,
                  cks_id);
    goto out;
  }
  if (rc) goto out;
  if (v.active_hsms < 2 || v.active_zones < 2) {
    rc = kerr_set(err, KERR_HSM_CLUSTER_INVALID_CONFIG,
                  "The CloudHSM cluster %s must have at least two active HSMs in different "
                  "Availability Zones (it has %d active HSM(s) in %d zone(s)).",
                  c.cluster_id, v.active_hsms, v.active_zones);
    goto out;
  }
  conn = conn_acquire(d, cks_id);
  if (!conn) {
    rc = kerr_set(err, KERR_CKS_INVALID_STATE, "Custom key store %s is not connected.", cks_id);
    goto out;
  }
  rc = hsm_conn_create_key(conn, key_id, err);
  conn_release(d, cks_id);
  /* CreateKey's model has no CloudHSM error names: an HSM that failed is
   * KMSInternalException (retryable) there. */
  if (rc == KERR_HSM_INTERNAL_FAILURE || rc == KERR_KEY_UNAVAILABLE) {
    rc = KERR_INTERNAL;
    if (err) err->code = rc;
  }
  if (rc) goto out;
  snprintf(cluster_id_out, KMS_CLUSTER_ID_MAX, "%s", c.cluster_id);
out:
  hsm_cluster_view_clear(&v);
  store_cks_clear(&c);
  return rc;
}

void kmsi_cks_delete_key(kms_domain *d, const char *cks_id, const char *key_id) {
  hsm_conn *conn = conn_acquire(d, cks_id);
  kerr e;
  kerr_clear(&e);
  if (!conn) {
    log_msg(LOG_WARN, NULL,
            "key %s deleted while custom key store %s is not connected: its key material stays "
            "in the CloudHSM cluster (delete it there by its label)",
            key_id, cks_id);
    return;
  }
  if (hsm_conn_delete_key(conn, key_id, &e) != KERR_OK)
    log_msg(LOG_WARN, NULL, "key %s: removing its material from the HSMs failed: %s", key_id, e.msg);
  else
    log_msg(LOG_INFO, NULL, "key %s: material removed from the HSMs of %s", key_id, cks_id);
  conn_release(d, cks_id);
}

kerr_code kmsi_cks_random(kms_domain *d, const kms_call *call, const char *cks_id, size_t n,
                          kbytes *out, kerr *err) {
  store_cks c;
  hsm_conn *conn = NULL;
  kerr_code rc;

  memset(&c, 0, sizeof c);
  out->data = NULL;
  out->len = 0;
  rc = load_own_store(d, call, cks_id, &c, err);
  if (rc) goto out;
  if (strcmp(c.type, "AWS_CLOUDHSM") != 0) {
    rc = kerr_set(err, KERR_UNSUPPORTED_OPERATION,
                  "GenerateRandom does not accept the ID of an external key store.");
    goto out;
  }
  conn = conn_acquire(d, cks_id);
  if (!conn || strcmp(c.connection_state, STATE_CONNECTED) != 0) {
    rc = kerr_set(err, KERR_CKS_INVALID_STATE,
                  "Custom key store %s is %s; GenerateRandom needs it CONNECTED.", cks_id,
                  c.connection_state);
    goto out;
  }
  out->data = secure_alloc(n);
  if (!out->data) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  out->len = n;
  rc = hsm_conn_random(conn, out->data, n, err);
  /* GenerateRandom's model lists DependencyTimeoutException and
   * KMSInternalException for a backing store that fails, nothing else. */
  if (rc && rc != KERR_DEPENDENCY_TIMEOUT) {
    rc = KERR_INTERNAL;
    if (err) err->code = rc;
  }
  if (rc) kbytes_wipe_free(out);
out:
  if (conn) conn_release(d, cks_id);
  store_cks_clear(&c);
  return rc;
}
