/* kms_cks_conn.c - the connection manager of custom key stores, shared by
 * every kind of key store (kms_backend.h): the one function that changes a
 * store's ConnectionState, the asynchronous connect workers, the live
 * backend connections that KMS keys in custom key stores use for their
 * cryptography (kept in line with the stores' rows across nodes), and the
 * lease holder's scan (recovery, takeover of connects, health
 * checks).  The custom-key-store halves of the key operations are in
 * kms_cks_keys.c.  It reaches a backing store only through its backend's
 * method table.
 *
 * Why a manager: ConnectCustomKeyStore must answer at once while connecting
 * to a backing store (logging in to every HSM of a cluster, asking an
 * external proxy for its health) takes real time, and a disconnect must not
 * pull a connection from under an Encrypt in flight.  So each store has a
 * small in-memory record (`live`) holding its connection in a slot of
 * counted references (kms_cks_slot.h: a new connection replaces the old one
 * at once, and the old one is closed by its last user), and an "attempt"
 * number: a connect worker may only publish its connection when no
 * disconnect or newer connect has happened since it started, and a
 * backend's connect asks (still_current) before each step that changes
 * anything outside it.  Workers of one store run one at a time
 * (connect_lock), so a stale worker that changes the store's secrets (the
 * CloudHSM backend rotates kmsuser's password) finishes persisting them
 * before the next one reads them.
 *
 * Several nodes on one store: the connection state is the row's; each node
 * has its own live records and connections, and "still current" also means
 * that the row is still what the worker started from.  Steps that must not
 * overlap across nodes take cluster-wide named locks (see "cluster-wide
 * locks").
 *
 * Locks, outermost first: a store's cluster-wide "disconnect" lock (held by
 * a disconnect throughout), its connect_lock (held by its connect worker,
 * refresh or attach for the whole of it), its cluster-wide "connect" lock
 * (taken by a worker under connect_lock; by a disconnect after dropping
 * it), the manager's lock (the list of live records, attempts, workers;
 * never held across a backend call, a database call or a wait), a slot's
 * lock (kms_cks_slot.c).  Live records are freed only by kmsi_cks_stop, so
 * a pointer to one stays valid without the manager's lock and the list can
 * be walked a record at a time, dropping the lock between records (the
 * scan, reconcile_all); new records are only ever added at its head. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fnv.h"
#include "core/kclock.h"
#include "core/log.h"
#include "kms/kms_backend.h"
#include "kms/kms_cks_slot.h"
#include "kms/kms_internal.h"

#define RECOVERY_PAGE 100
#define REQUEST_ID_MAX 64

typedef struct cks_live {
  char cks_id[STORE_CKS_ID_MAX];
  kmsi_slot slot;               /* this node's connection; empty unless CONNECTED */
  uint64_t attempt;             /* bumped by every connect and disconnect here */
  pthread_mutex_t connect_lock; /* one connect, refresh or attach per store at a time */
  /* Under the manager's lock: */
  uint64_t settings;            /* settings_of() the row the slot's connection was made
                                   for */
  store_stamp checked;          /* the change stamp when the slot was last found in
                                   line with the row */
  bool checked_valid;
  int64_t next_attach_ms;       /* no attach before (one failed) */
  char attach_error[KMS_CONNECTION_ERROR_MAX]; /* the last attach's failure; "" */
  bool attach_final;            /* that failure is the credentials': no retry ... */
  uint64_t attach_failed_for;   /* ... until the row differs from this version_of() */
  int workers;                  /* connect workers of the store running here */
  int disconnects;              /* DisconnectCustomKeyStore calls in flight here */
  struct cks_live *next;
} cks_live;

typedef struct cks_worker {
  pthread_t thread;
  bool done;
  kms_domain *d;
  cks_live *live;
  uint64_t attempt;
  /* The row a connect must still find (still_current): its state and when
   * that state began.  NULL state: not read yet. */
  const char *expect_state;
  int64_t expect_changed_ms;
  store_lock *lock; /* the store's cluster-wide connect lock, held; NULL: none */
  char request_id[REQUEST_ID_MAX];
  struct cks_worker *next;
} cks_worker;

struct kmsi_cks_manager {
  pthread_mutex_t lock;
  cks_live *live;
  cks_worker *workers;
};

static const char *const STATE_CONNECTING = "CONNECTING";
static const char *const STATE_CONNECTED = "CONNECTED";
static const char *const STATE_FAILED = "FAILED";
static const char *const STATE_DISCONNECTING = "DISCONNECTING";
static const char *const STATE_DISCONNECTED = "DISCONNECTED";

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

/* The store's row now, in a short read transaction of its own. */
static kerr_code read_row(kms_domain *d, const char *cks_id, store_cks *c, kerr *err) {
  store_tx *tx = NULL;
  kerr_code rc = kmsi_begin(d, false, &tx, err);
  if (rc) return rc;
  rc = d->st->ops->cks_get(tx, cks_id, c, err);
  d->st->ops->rollback(tx);
  return rc;
}

/* What a connection is made from and for, as one number: the settings of
 * `c` that reach its backing system, and when its CONNECTED state began (a
 * reconnect through any node, which may have rotated kmsuser's password,
 * makes every node open a new connection).  kmsuser's password itself is
 * not in it: the refresh of an external key store's credential is. */
static uint64_t settings_of(const store_cks *c) {
  const char *const parts[] = {c->type,           c->cluster_id,           c->xks_uri_endpoint,
                               c->xks_uri_path,   c->xks_connectivity,     c->xks_vpc_service_name,
                               c->xks_vpc_service_owner, c->xks_access_key_id};
  uint64_t h = FNV1A_START;
  for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
    h = fnv1a_str(fnv1a_str(h, parts[i]), "\x1f");
  if (c->xks_secret_wrapped) h = fnv1a_bytes(h, c->xks_secret_wrapped, c->xks_secret_wrapped_len);
  return fnv1a_bytes(h, &c->state_changed_ms, sizeof c->state_changed_ms);
}

/* settings_of and kmsuser's stored passwords: a row an attach refused on
 * credentials is not tried again until this changes. */
static uint64_t version_of(const store_cks *c) {
  uint64_t h = settings_of(c);
  if (c->password_wrapped) h = fnv1a_bytes(h, c->password_wrapped, c->password_wrapped_len);
  h = fnv1a_str(h, "\x1f");
  if (c->pending_password_wrapped)
    h = fnv1a_bytes(h, c->pending_password_wrapped, c->pending_password_wrapped_len);
  return h;
}

/* Whether an attach that failed with ConnectionErrorCode `code` would fail
 * the same way until the row changes: the credentials were refused. */
static bool attach_failure_final(const char *code) {
  return code && (strcmp(code, "INVALID_CREDENTIALS") == 0 ||
                  strcmp(code, "USER_LOCKED_OUT") == 0 || strcmp(code, "USER_NOT_FOUND") == 0);
}

/* ------------------------------------------------------- live registry */

/* The live record of `cks_id`, or NULL.  Caller holds m->lock. */
static cks_live *live_find_locked(kmsi_cks_manager *m, const char *cks_id) {
  for (cks_live *l = m->live; l; l = l->next)
    if (strcmp(l->cks_id, cks_id) == 0) return l;
  return NULL;
}

/* The live record of `cks_id`, created on first use.  Caller holds m->lock. */
static cks_live *live_get_locked(kmsi_cks_manager *m, const char *cks_id) {
  cks_live *l = live_find_locked(m, cks_id);
  if (l) return l;
  l = calloc(1, sizeof *l);
  if (!l) return NULL;
  snprintf(l->cks_id, sizeof l->cks_id, "%s", cks_id);
  kmsi_slot_init(&l->slot);
  pthread_mutex_init(&l->connect_lock, NULL);
  l->next = m->live;
  m->live = l;
  return l;
}

static cks_live *live_get(kmsi_cks_manager *m, const char *cks_id) {
  cks_live *l;
  pthread_mutex_lock(&m->lock);
  l = live_get_locked(m, cks_id);
  pthread_mutex_unlock(&m->lock);
  return l;
}

static cks_live *live_find(kmsi_cks_manager *m, const char *cks_id) {
  cks_live *l;
  pthread_mutex_lock(&m->lock);
  l = live_find_locked(m, cks_id);
  pthread_mutex_unlock(&m->lock);
  return l;
}

static bool attempt_current(kmsi_cks_manager *m, cks_live *l, uint64_t attempt) {
  bool ok;
  pthread_mutex_lock(&m->lock);
  ok = l->attempt == attempt;
  pthread_mutex_unlock(&m->lock);
  return ok;
}

/* KERR_CONFLICT when a disconnect or a newer connect overtook the worker
 * of connect `cx`, on this node (its attempt) or on another (the row is no
 * longer what the worker started from): what the backend asks before each
 * step that changes anything outside it, so a stale worker stops at the
 * next step. */
static kerr_code still_current(const kms_backend_connect_ctx *cx, kerr *err) {
  const cks_worker *w = cx->manager_arg;
  store_cks c;
  kerr_code rc;
  if (!attempt_current(w->d->cks, w->live, w->attempt))
    return kerr_set(err, KERR_CONFLICT,
                    "The connect was overtaken by a disconnect or a newer connect.");
  if (w->lock && w->d->st->ops->lock_held && !w->d->st->ops->lock_held(w->lock))
    return kerr_set(err, KERR_CONFLICT,
                    "The connect lost its lock: its database session ended, and another node may "
                    "be connecting the store.");
  if (!w->expect_state) return KERR_OK;
  memset(&c, 0, sizeof c);
  rc = read_row(w->d, w->live->cks_id, &c, err);
  if (rc == KERR_OK && (strcmp(c.connection_state, w->expect_state) != 0 ||
                        c.state_changed_ms != w->expect_changed_ms))
    rc = kerr_set(err, KERR_CONFLICT, "The connect was overtaken: the store is %s now.",
                  c.connection_state);
  else if (rc == KERR_NOT_FOUND)
    rc = kerr_set(err, KERR_CONFLICT, "The custom key store was deleted meanwhile.");
  store_cks_clear(&c);
  return rc;
}

/* Publish `conn` (of backend `b`, made for settings `settings`) as the live
 * connection of `l` if `attempt` is still the store's, replacing any other
 * at once.  Caller holds m->lock; a replaced connection nobody uses comes
 * back in *to_close, for kmsi_slot_close_retired once the lock is dropped.
 * KERR_CONFLICT when overtaken, KERR_INTERNAL when out of memory; the
 * caller keeps `conn` unless KERR_OK. */
static kerr_code publish_locked(cks_live *l, uint64_t attempt, const kms_backend *b,
                                kms_backend_conn *conn, uint64_t settings,
                                kmsi_slot_ref **to_close, kerr *err) {
  *to_close = NULL;
  if (l->attempt != attempt)
    return kerr_set(err, KERR_CONFLICT,
                    "The connect was overtaken by a disconnect or a newer connect.");
  if (!kmsi_slot_install(&l->slot, b, conn, to_close))
    return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  l->settings = settings;
  l->checked_valid = false;
  l->attach_error[0] = '\0';
  l->attach_final = false;
  return KERR_OK;
}

/* ------------------------------------------- this node's connections
 *
 * The connection state is the row's, shared by every node; each node holds
 * its own connection to a CONNECTED store.  A node brings its connection in
 * line with the row (reconcile) before using it whenever anything was
 * committed since it last looked (the store's change stamp moved), and
 * every sweeper tick: none while the row is not CONNECTED, one made for
 * the row's settings while it is (attached on first use when another node
 * connected the store). */

/* Retire this node's connection of `l`, if any, without touching
 * attempts (a worker here, if any, decides for itself).  `why`: the row's
 * state, for the log. */
static void drop_conn(cks_live *l, kmsi_cks_manager *m, const char *why) {
  kmsi_slot_ref *to_close = NULL;
  bool had;
  pthread_mutex_lock(&m->lock);
  had = kmsi_slot_current(&l->slot, NULL);
  kmsi_slot_clear(&l->slot, &to_close);
  l->checked_valid = false;
  pthread_mutex_unlock(&m->lock);
  kmsi_slot_close_retired(&l->slot, to_close);
  if (had)
    log_msg(LOG_INFO, NULL, "custom key store %s: this node's connection is closed (the store "
            "is %s)", l->cks_id, why);
}

/* Open this node's connection to CONNECTED row `c` (kms_backend.attach) and
 * publish it.  Caller holds l->connect_lock. */
static void attach_conn(kms_domain *d, cks_live *l, store_cks *c) {
  kmsi_cks_manager *m = d->cks;
  const kms_backend *b = kmsi_backend_for_type(c->type);
  kms_backend_conn *conn = NULL;
  kmsi_slot_ref *to_close = NULL;
  kms_backend_connect_ctx cx;
  cks_worker w;
  const char *code = NULL;
  int64_t now = kclock_now_ms();
  kerr e;
  kerr_code rc;

  if (!b || !b->attach) return;
  memset(&w, 0, sizeof w);
  kerr_clear(&e);
  pthread_mutex_lock(&m->lock);
  if (now < l->next_attach_ms || (l->attach_final && l->attach_failed_for == version_of(c))) {
    pthread_mutex_unlock(&m->lock);
    return;
  }
  l->next_attach_ms = now + KMSI_CKS_ATTACH_RETRY_MS;
  w.attempt = l->attempt;
  pthread_mutex_unlock(&m->lock);
  w.d = d;
  w.live = l;
  snprintf(w.request_id, sizeof w.request_id, "attach");
  memset(&cx, 0, sizeof cx);
  cx.d = d;
  cx.row = c;
  cx.request_id = w.request_id;
  cx.still_current = still_current;
  cx.manager_arg = &w;
  rc = kmsi_cks_check_row(c, &e);
  if (rc == KERR_OK) rc = b->attach(&cx, &conn, &code, &e);
  if (rc) {
    log_msg(LOG_WARN, "attach",
            "custom key store %s is CONNECTED, but this node cannot open its connection (%s): %s",
            c->cks_id, code ? code : "INTERNAL_ERROR", e.msg);
    pthread_mutex_lock(&m->lock);
    snprintf(l->attach_error, sizeof l->attach_error, "%s", code ? code : "INTERNAL_ERROR");
    /* Refused credentials are not tried again until the row changes (a
     * reconnect, an update): a login every second would be noise on the
     * HSMs, and on a module that must be reloaded to see a new PIN, a
     * disruption of every other store's sessions. */
    l->attach_final = attach_failure_final(code);
    l->attach_failed_for = version_of(c);
    pthread_mutex_unlock(&m->lock);
    return;
  }
  pthread_mutex_lock(&m->lock);
  rc = publish_locked(l, w.attempt, b, conn, settings_of(c), &to_close, &e);
  if (rc == KERR_OK) l->next_attach_ms = 0;
  pthread_mutex_unlock(&m->lock);
  kmsi_slot_close_retired(&l->slot, to_close);
  if (rc) {
    b->disconnect(conn);
    return;
  }
  log_msg(LOG_INFO, "attach", "custom key store %s: this node's connection is open",
          c->cks_id);
}

/* Whether the connection of `l` was made for CONNECTED row `c`.  Caller
 * holds m->lock. */
static bool slot_in_line_locked(cks_live *l, const store_cks *c) {
  const kms_backend *b = NULL;
  return kmsi_slot_current(&l->slot, &b) && l->settings == settings_of(c) &&
         b == kmsi_backend_for_type(c->type);
}

/* Bring this node's connection of `l` in line with its row (see above).
 * `now`: the change stamp read before this call (NULL when the store cannot
 * tell: the row is read every time).  While a connect, refresh or attach
 * runs here, the connection it is replacing is used as it is; with
 * `may_wait` and no connection yet, this waits for it (a call that would
 * otherwise fail while another thread attaches), else returns.  Never
 * fails: a row that cannot be read leaves the connection as it is. */
static void reconcile(kms_domain *d, cks_live *l, const store_stamp *now, bool may_wait) {
  kmsi_cks_manager *m = d->cks;
  store_cks c;
  bool in_line;
  kerr e;
  kerr_code rc;

  if (now) {
    pthread_mutex_lock(&m->lock);
    in_line = l->checked_valid && store_stamp_equal(&l->checked, now);
    pthread_mutex_unlock(&m->lock);
    if (in_line) return;
  }
  if (pthread_mutex_trylock(&l->connect_lock) != 0) {
    if (!may_wait || kmsi_slot_current(&l->slot, NULL)) return;
    pthread_mutex_lock(&l->connect_lock);
    if (kmsi_slot_current(&l->slot, NULL)) {
      pthread_mutex_unlock(&l->connect_lock); /* the other thread opened it */
      return;
    }
  }
  memset(&c, 0, sizeof c);
  kerr_clear(&e);
  rc = read_row(d, l->cks_id, &c, &e);
  if (rc && rc != KERR_NOT_FOUND) goto out;
  bool connected = rc == KERR_OK && strcmp(c.connection_state, STATE_CONNECTED) == 0;
  if (!connected) {
    drop_conn(l, m, rc == KERR_NOT_FOUND ? "deleted" : c.connection_state);
    pthread_mutex_lock(&m->lock);
    l->attach_error[0] = '\0'; /* not CONNECTED: nothing to reach */
    pthread_mutex_unlock(&m->lock);
  } else {
    bool had;
    pthread_mutex_lock(&m->lock);
    in_line = slot_in_line_locked(l, &c);
    had = kmsi_slot_current(&l->slot, NULL);
    pthread_mutex_unlock(&m->lock);
    if (!in_line) {
      /* Made for other settings, or for an earlier connect: never used
       * again, even if the new one cannot be opened. */
      if (had) drop_conn(l, m, "CONNECTED with other settings or by a newer connect");
      attach_conn(d, l, &c);
    }
  }
  pthread_mutex_lock(&m->lock);
  if (now && (!connected || slot_in_line_locked(l, &c))) {
    l->checked = *now;
    l->checked_valid = true;
  }
  pthread_mutex_unlock(&m->lock);
out:
  store_cks_clear(&c);
  pthread_mutex_unlock(&l->connect_lock);
}

bool kmsi_cks_conn_acquire(kms_domain *d, const char *cks_id, const kms_backend **b,
                           kms_backend_conn **c) {
  cks_live *l = d->cks ? live_get(d->cks, cks_id) : NULL;
  store_stamp now;
  *b = NULL;
  *c = NULL;
  if (!l) return false;
  /* A store only this process opens changes only through this process,
   * which brings its connections along itself: nothing to check while one
   * is there. */
  if (!d->st->ops->lock_named && kmsi_slot_acquire(&l->slot, b, c)) return true;
  bool stamped = d->st->ops->change_stamp && d->st->ops->change_stamp(d->st, &now);
  reconcile(d, l, stamped ? &now : NULL, true);
  return kmsi_slot_acquire(&l->slot, b, c);
}

void kmsi_cks_conn_release(kms_domain *d, const char *cks_id, kms_backend_conn *c) {
  cks_live *l = d->cks ? live_find(d->cks, cks_id) : NULL;
  if (!l || !kmsi_slot_release(&l->slot, c))
    log_msg(LOG_ERROR, NULL, "custom key store %s: a connection released twice or never taken",
            cks_id);
}

size_t kms_domain_unreachable_key_stores(kms_domain *d) {
  kmsi_cks_manager *m = d ? d->cks : NULL;
  size_t n = 0;
  if (!m) return 0;
  pthread_mutex_lock(&m->lock);
  for (cks_live *l = m->live; l; l = l->next)
    if (l->attach_error[0]) n++;
  pthread_mutex_unlock(&m->lock);
  return n;
}

void kmsi_cks_reconcile_all(kms_domain *d) {
  kmsi_cks_manager *m = d ? d->cks : NULL;
  store_stamp now;
  cks_live *l;
  if (!m) return;
  bool stamped = d->st->ops->change_stamp && d->st->ops->change_stamp(d->st, &now);
  pthread_mutex_lock(&m->lock);
  l = m->live;
  pthread_mutex_unlock(&m->lock);
  while (l) {
    /* Records with a connection, and those whose attach failed (tried
     * again, at most once a second, so /health clears by itself). */
    pthread_mutex_lock(&m->lock);
    bool failed = l->attach_error[0] != '\0';
    pthread_mutex_unlock(&m->lock);
    if (failed || kmsi_slot_current(&l->slot, NULL))
      reconcile(d, l, stamped ? &now : NULL, false);
    pthread_mutex_lock(&m->lock);
    l = l->next;
    pthread_mutex_unlock(&m->lock);
  }
}

/* ----------------------------------------------------- cluster-wide locks
 *
 * Two steps must not overlap across nodes: a connect worker (which may
 * change kmsuser's password on the HSMs) and the end of a disconnect (after
 * which the operator may change that password).  Each connect worker holds
 * the store's "connect" lock for its whole run, and a disconnect, once the
 * store is DISCONNECTING (so the worker stops at its next step), waits for
 * that lock before it says DISCONNECTED.  A disconnect also holds the
 * store's "disconnect" lock throughout, so that the recovery of stores left
 * DISCONNECTING by a dead node (kmsi_cks_scan) leaves a live one alone.
 * On a store only this process opens (SQLite), the connect lock and the
 * live record's counters are enough. */

static kerr_code cluster_lock(kms_domain *d, const char *what, const char *cks_id, int wait_ms,
                              store_lock **out, kerr *err) {
  char name[STORE_CKS_ID_MAX + 32];
  *out = NULL;
  if (!d->st->ops->lock_named) return KERR_OK;
  snprintf(name, sizeof name, "custom key store %s %s", cks_id, what);
  return d->st->ops->lock_named(d->st, name, wait_ms, out, err);
}

static void cluster_unlock(kms_domain *d, store_lock *l) {
  if (l) d->st->ops->unlock_named(l);
}

/* --------------------------------------------------- connect workers */

static void worker_run(cks_worker *w) {
  kms_domain *d = w->d;
  kmsi_cks_manager *m = d->cks;
  static const char *const from_connecting[] = {"CONNECTING", NULL};
  store_cks c;
  store_lock *lock = NULL;
  const kms_backend *b = NULL;
  kms_backend_conn *conn = NULL;
  kmsi_slot_ref *to_close = NULL;
  kms_backend_connect_ctx cx;
  const char *code = NULL;
  kerr e;
  kerr_code rc;

  memset(&c, 0, sizeof c);
  memset(&cx, 0, sizeof cx);
  kerr_clear(&e);
  pthread_mutex_lock(&w->live->connect_lock);
  if (!attempt_current(m, w->live, w->attempt)) goto out;
  rc = cluster_lock(d, "connect", w->live->cks_id, KMSI_CKS_CONNECT_LOCK_WAIT_MS, &lock, &e);
  w->lock = lock;
  if (rc) {
    /* Another node's worker, cut off from its lease, is still at it; the
     * next scan tries again. */
    log_msg(LOG_INFO, w->request_id, "custom key store %s: connect deferred: %s",
            w->live->cks_id, e.msg);
    goto out;
  }
  rc = read_row(d, w->live->cks_id, &c, &e);
  if (rc) {
    log_msg(LOG_WARN, w->request_id, "custom key store %s: cannot read it to connect: %s",
            w->live->cks_id, e.msg);
    goto out;
  }
  if (strcmp(c.connection_state, STATE_CONNECTING) != 0) goto out;
  w->expect_state = STATE_CONNECTING;
  w->expect_changed_ms = c.state_changed_ms;
  cx.d = d;
  cx.row = &c;
  cx.request_id = w->request_id;
  cx.still_current = still_current;
  cx.manager_arg = w;
  b = kmsi_backend_for_type(c.type);
  if (!b || !b->connect) {
    kerr_set(&e, KERR_INTERNAL, "kmsd has no backend for key stores of type %s.", c.type);
    goto failed;
  }
  rc = b->connect(&cx, &conn, &code, &e);
  if (rc) goto failed;
  /* Still this worker's to finish?  (A backend asks before each step that
   * changes something; an external key store's connect changes nothing, so
   * this is its only check.) */
  if (still_current(&cx, &e) != KERR_OK) {
    log_msg(LOG_INFO, w->request_id, "custom key store %s: connect stopped: %s", c.cks_id, e.msg);
    goto out;
  }
  /* A connection should not be in the slot, but one that is (left by any
   * path that failed to clear it) is retired and closed by its last user,
   * not leaked. */
  pthread_mutex_lock(&m->lock);
  rc = publish_locked(w->live, w->attempt, b, conn, settings_of(&c), &to_close, &e);
  pthread_mutex_unlock(&m->lock);
  kmsi_slot_close_retired(&w->live->slot, to_close);
  if (rc == KERR_CONFLICT) goto out;
  if (rc) {
    code = "INTERNAL_ERROR";
    goto failed;
  }
  conn = NULL;
  rc = kmsi_cks_set_state(d, c.cks_id, from_connecting, STATE_CONNECTED, NULL, w->request_id,
                          NULL, &e);
  if (rc) {
    /* Overtaken by a disconnect: through this node, it took the connection
     * away already; through another, it waits for this worker, and the
     * connection just published goes now. */
    log_msg(LOG_INFO, w->request_id, "custom key store %s: connect overtaken: %s", c.cks_id, e.msg);
    drop_conn(w->live, m, "no longer CONNECTING");
  } else {
    /* The connection is for the CONNECTED state that began just now: the
     * row says when (settings_of), and this node's calls must not take it
     * for an older one's. */
    store_cks now_row;
    memset(&now_row, 0, sizeof now_row);
    if (read_row(d, c.cks_id, &now_row, &e) == KERR_OK &&
        strcmp(now_row.connection_state, STATE_CONNECTED) == 0) {
      pthread_mutex_lock(&m->lock);
      if (w->live->attempt == w->attempt) w->live->settings = settings_of(&now_row);
      pthread_mutex_unlock(&m->lock);
    }
    store_cks_clear(&now_row);
  }
  goto out;

failed:
  {
    kerr why;
    kerr_clear(&why);
    if (still_current(&cx, &why) != KERR_OK) { /* overtaken: no state change */
      log_msg(LOG_INFO, w->request_id, "custom key store %s: connect stopped: %s", c.cks_id,
              why.msg);
      goto out;
    }
  }
  log_msg(LOG_WARN, w->request_id, "custom key store %s: connect failed (%s): %s", c.cks_id,
          code ? code : "INTERNAL_ERROR", e.msg);
  {
    kerr e2;
    kerr_clear(&e2);
    kmsi_cks_set_state(d, c.cks_id, from_connecting, STATE_FAILED,
                       code ? code : "INTERNAL_ERROR", w->request_id, NULL, &e2);
  }
out:
  if (conn) b->disconnect(conn);
  store_cks_clear(&c);
  w->lock = NULL;
  cluster_unlock(d, lock);
  pthread_mutex_unlock(&w->live->connect_lock);
}

static void *worker_main(void *arg) {
  cks_worker *w = arg;
  worker_run(w);
  pthread_mutex_lock(&w->d->cks->lock);
  w->done = true;
  w->live->workers--;
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

/* Start a connect worker for `cks_id` on this node.  With `only_if_idle`,
 * none when one is running here already (the scan's takeover). */
static kerr_code start_worker(kms_domain *d, const char *cks_id, const char *request_id,
                              bool only_if_idle, kerr *err) {
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
  if (!l || (only_if_idle && l->workers > 0)) {
    pthread_mutex_unlock(&m->lock);
    free(w);
    return l ? KERR_OK : kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
  w->live = l;
  w->attempt = ++l->attempt;
  if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
    pthread_mutex_unlock(&m->lock);
    free(w);
    return kerr_set(err, KERR_INTERNAL, "Cannot start a connect worker.");
  }
  l->workers++;
  w->next = m->workers;
  m->workers = w;
  pthread_mutex_unlock(&m->lock);
  return KERR_OK;
}

kerr_code kmsi_cks_connect_async(kms_domain *d, const char *cks_id, const char *request_id,
                                 kerr *err) {
  if (!d->cks) return kerr_set(err, KERR_INTERNAL, "Custom key stores are not running.");
  if (!kmsi_lease_held(d)) {
    /* Connect workers run where the background work runs: the node
     * holding the lease takes the store up at its next scan. */
    cks_live *l = live_get(d->cks, cks_id);
    if (l) {
      pthread_mutex_lock(&d->cks->lock);
      l->attempt++; /* a stale worker here, if any, stops */
      pthread_mutex_unlock(&d->cks->lock);
      drop_conn(l, d->cks, "CONNECTING"); /* one from before, if this node missed the disconnect */
    }
    log_msg(LOG_INFO, request_id,
            "custom key store %s: the node holding the lease runs the connect", cks_id);
    return KERR_OK;
  }
  return start_worker(d, cks_id, request_id, false, err);
}

/* ------------------------------------------------------------ disconnect */

kerr_code kmsi_cks_detach(kms_domain *d, const char *cks_id, kerr *err) {
  kmsi_cks_manager *m = d->cks;
  kmsi_slot_ref *to_close = NULL;
  store_lock *lock = NULL;
  cks_live *l;
  kerr e;
  if (!m) return KERR_OK;
  pthread_mutex_lock(&m->lock);
  l = live_get_locked(m, cks_id);
  if (l) {
    l->attempt++;
    kmsi_slot_clear(&l->slot, &to_close);
  }
  pthread_mutex_unlock(&m->lock);
  if (!l) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  /* New calls find no connection from here on, so the wait below ends as
   * soon as the calls already holding it end: no starvation.  The store's
   * HSM sessions (or proxy client) are closed before Disconnect answers. */
  kmsi_slot_close_retired(&l->slot, to_close);
  kmsi_slot_drain(&l->slot);
  /* Wait for a worker still running for the store, here or on another
   * node: it sees the new attempt (or the row no longer CONNECTING) at its
   * next step and stops, changing no state.  After this returns no worker
   * touches the store's backing system or secrets, so what the operator
   * does next (UpdateCustomKeyStore, hsm-cli) is not raced by a stale
   * connect.  Live records live as long as the manager, so `l` stays
   * valid. */
  pthread_mutex_lock(&l->connect_lock);
  /* An attach that read the row before the state changed may have
   * published a connection since: it goes too. */
  pthread_mutex_lock(&m->lock);
  kmsi_slot_clear(&l->slot, &to_close);
  pthread_mutex_unlock(&m->lock);
  pthread_mutex_unlock(&l->connect_lock);
  kmsi_slot_close_retired(&l->slot, to_close);
  kmsi_slot_drain(&l->slot);
  kerr_clear(&e);
  if (cluster_lock(d, "connect", cks_id, KMSI_CKS_DETACH_LOCK_WAIT_MS, &lock, &e) != KERR_OK) {
    /* Not DISCONNECTED while a connect may still change the store's
     * secrets: the store stays DISCONNECTING, and the lease holder's scan
     * finishes the disconnect once that connect has stopped. */
    log_msg(LOG_WARN, NULL, "custom key store %s: a connect on another node has not stopped "
            "yet: %s", cks_id, e.msg);
    return kerr_set(err, KERR_CONFLICT, "Custom key store %s stays DISCONNECTING until a "
                    "connect on another kmsd node stops.", cks_id);
  }
  cluster_unlock(d, lock);
  return KERR_OK;
}

kerr_code kmsi_cks_disconnect(kms_domain *d, const char *cks_id, const char *request_id,
                              char *prev_out, kerr *err) {
  static const char *const from_live[] = {"CONNECTED", "CONNECTING", "FAILED", NULL};
  static const char *const from_disconnecting[] = {"DISCONNECTING", NULL};
  kmsi_cks_manager *m = d->cks;
  store_lock *lock = NULL;
  cks_live *l = m ? live_get(m, cks_id) : NULL;
  kerr_code rc;

  if (!l) return kerr_set(err, KERR_INTERNAL, "Custom key stores are not running.");
  pthread_mutex_lock(&m->lock);
  l->disconnects++;
  pthread_mutex_unlock(&m->lock);
  rc = cluster_lock(d, "disconnect", cks_id, 0, &lock, err);
  if (rc == KERR_CONFLICT) {
    /* Another disconnect of it is running (here, or on another node).  Once
     * that one has made it DISCONNECTING, this one answers as a second
     * disconnect does; before, it waits its turn. */
    store_cks c;
    memset(&c, 0, sizeof c);
    rc = read_row(d, cks_id, &c, err);
    if (rc == KERR_NOT_FOUND) {
      rc = kerr_set(err, KERR_CKS_NOT_FOUND, "Custom key store %s does not exist.", cks_id);
    } else if (rc == KERR_OK && !state_in(c.connection_state, from_live)) {
      if (prev_out) snprintf(prev_out, STORE_ENUM_MAX, "%s", c.connection_state);
      rc = kerr_set(err, KERR_CONFLICT, "Custom key store %s is %s.", cks_id, c.connection_state);
    } else if (rc == KERR_OK) {
      rc = cluster_lock(d, "disconnect", cks_id, KMSI_CKS_DETACH_LOCK_WAIT_MS, &lock, err);
      if (rc == KERR_CONFLICT)
        rc = kerr_set(err, KERR_INTERNAL, "Custom key store %s is being disconnected elsewhere; "
                      "try again.", cks_id);
    }
    store_cks_clear(&c);
  }
  if (rc == KERR_OK)
    rc = kmsi_cks_set_state(d, cks_id, from_live, STATE_DISCONNECTING, NULL, request_id, prev_out,
                            err);
  if (rc == KERR_OK) {
    rc = kmsi_cks_detach(d, cks_id, err);
    if (rc == KERR_CONFLICT) {
      /* Done as far as this call goes: the store is DISCONNECTING, as
       * DescribeCustomKeyStores shows, and the lease holder's scan makes it
       * DISCONNECTED once that connect has stopped (as in KMS, where a
       * disconnect answers before the state reaches DISCONNECTED). */
      kerr_clear(err);
      cluster_unlock(d, lock);
      lock = NULL;
      goto out;
    }
  }
  if (rc == KERR_OK) {
    char now[STORE_ENUM_MAX] = "";
    rc = kmsi_cks_set_state(d, cks_id, from_disconnecting, STATE_DISCONNECTED, NULL, request_id,
                            now, err);
    /* Finished meanwhile by the lease holder's recovery (this node's lock
     * session ended under it): what was asked is done. */
    if (rc == KERR_CONFLICT && strcmp(now, STATE_DISCONNECTED) == 0) {
      rc = KERR_OK;
      kerr_clear(err);
    }
  }
out:
  cluster_unlock(d, lock);
  pthread_mutex_lock(&m->lock);
  l->disconnects--;
  pthread_mutex_unlock(&m->lock);
  return rc;
}

/* ------------------------------------------------------------ lifecycle */

kerr_code kmsi_cks_start(kms_domain *d, kerr *err) {
  kmsi_cks_manager *m = calloc(1, sizeof *m);
  if (!m) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  pthread_mutex_init(&m->lock, NULL);
  d->cks = m;
  if (!kmsi_lease_held(d)) return KERR_OK;
  kerr_code rc = kmsi_cks_scan(d, false, err);
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
    kmsi_slot_destroy(&l->slot); /* closes what is left: no call is in flight */
    pthread_mutex_destroy(&l->connect_lock);
    free(l);
  }
  pthread_mutex_destroy(&m->lock);
  free(m);
  d->cks = NULL;
}

void kmsi_cks_refresh(kms_domain *d, const char *cks_id, const char *request_id) {
  kmsi_cks_manager *m = d->cks;
  cks_worker w;
  store_cks c;
  const kms_backend *b, *live_b = NULL;
  kms_backend_conn *conn = NULL;
  kmsi_slot_ref *to_close = NULL;
  kms_backend_connect_ctx cx;
  const char *code = NULL;
  kerr e;
  kerr_code rc;

  if (!m) return;
  memset(&c, 0, sizeof c);
  memset(&w, 0, sizeof w);
  kerr_clear(&e);
  pthread_mutex_lock(&m->lock);
  w.live = live_get_locked(m, cks_id);
  if (!w.live || !kmsi_slot_current(&w.live->slot, NULL)) {
    /* No connection here: this node's next use attaches one made for the
     * new settings. */
    pthread_mutex_unlock(&m->lock);
    return;
  }
  w.attempt = w.live->attempt;
  pthread_mutex_unlock(&m->lock);
  w.d = d;
  snprintf(w.request_id, sizeof w.request_id, "%s", request_id ? request_id : "");
  pthread_mutex_lock(&w.live->connect_lock);
  rc = read_row(d, cks_id, &c, &e);
  b = rc ? NULL : kmsi_backend_for_type(c.type);
  if (b && b->connect && attempt_current(m, w.live, w.attempt)) {
    w.expect_state = STATE_CONNECTED;
    w.expect_changed_ms = c.state_changed_ms;
    memset(&cx, 0, sizeof cx);
    cx.d = d;
    cx.row = &c;
    cx.request_id = w.request_id;
    cx.still_current = still_current;
    cx.manager_arg = &w;
    rc = b->connect(&cx, &conn, &code, &e);
    if (rc == KERR_OK) {
      /* The new connection replaces the old one at once: calls holding the
       * old one finish on it and the last of them closes it; new calls get
       * the new one.  Waiting for a moment when no call holds the old one
       * would starve this (and the UpdateCustomKeyStore waiting on it)
       * under steady traffic. */
      pthread_mutex_lock(&m->lock);
      if (w.live->attempt != w.attempt || !kmsi_slot_current(&w.live->slot, &live_b) ||
          live_b != b) {
        /* A disconnect (or a newer connect) came in meanwhile: the new
         * connection is not published (closed below). */
        rc = KERR_OK;
      } else if (publish_locked(w.live, w.attempt, b, conn, settings_of(&c), &to_close, &e) ==
                 KERR_OK) {
        conn = NULL;
      } else {
        rc = KERR_INTERNAL;
      }
      pthread_mutex_unlock(&m->lock);
      kmsi_slot_close_retired(&w.live->slot, to_close);
    }
  }
  if (rc)
    log_msg(LOG_WARN, request_id, "custom key store %s: new settings not in use yet (%s): %s",
            cks_id, code ? code : "INTERNAL_ERROR", e.msg);
  if (conn) b->disconnect(conn);
  pthread_mutex_unlock(&w.live->connect_lock);
  store_cks_clear(&c);
}

/* ------------------------------------------ the lease holder's scan */

/* Whether the domain is closing (the scan then stops between stores, so a
 * long round does not hold up shutdown). */
static bool domain_stopping(kms_domain *d) {
  bool stopping;
  pthread_mutex_lock(&d->stop_lock);
  stopping = d->stopping;
  pthread_mutex_unlock(&d->stop_lock);
  return stopping;
}

/* A store left DISCONNECTING by a disconnect that ended without finishing
 * (its node died, or this one before a restart) -> DISCONNECTED, unless a
 * disconnect of it is still running somewhere (its locks are held). */
static void finish_disconnect(kms_domain *d, const char *cks_id) {
  static const char *const from_disconnecting[] = {"DISCONNECTING", NULL};
  kmsi_cks_manager *m = d->cks;
  store_lock *dis = NULL, *con = NULL;
  cks_live *l = live_get(m, cks_id);
  bool busy;
  kerr e;
  if (!l) return;
  pthread_mutex_lock(&m->lock);
  busy = l->disconnects > 0 || l->workers > 0;
  pthread_mutex_unlock(&m->lock);
  if (busy) return;
  kerr_clear(&e);
  if (cluster_lock(d, "disconnect", cks_id, 0, &dis, &e) == KERR_OK &&
      cluster_lock(d, "connect", cks_id, 0, &con, &e) == KERR_OK) {
    /* The state first: the store may have been disconnected and connected
     * again since the scan listed it, and its connection is then the new
     * one's. */
    if (kmsi_cks_set_state(d, cks_id, from_disconnecting, STATE_DISCONNECTED, NULL, "recovery",
                           NULL, &e) == KERR_OK)
      drop_conn(l, m, STATE_DISCONNECTED);
    else if (e.code != KERR_CONFLICT)
      log_msg(LOG_WARN, "recovery", "custom key store %s: %s", cks_id, e.msg);
  }
  cluster_unlock(d, con);
  cluster_unlock(d, dis);
}

/* One GetHealthStatus on this node's connection of external key store
 * `cks_id` (attached first when another node connected it), bounded by
 * --xks-timeout (the client's deadline for every call).  KMS health-checks
 * XKS proxies; a CloudHSM store's HSMs are not probed behind the operator's
 * back.  A failure is logged with its ConnectionErrorCode and changes no
 * state, as in KMS: the operations on the store's keys meet the failure
 * themselves. */
static void check_health(kms_domain *d, const char *cks_id) {
  const kms_backend *b = NULL;
  kms_backend_conn *conn = NULL;
  kms_backend_ctx ctx;
  const char *code = NULL;
  kerr e;
  if (!kmsi_cks_conn_acquire(d, cks_id, &b, &conn)) {
    log_msg(LOG_WARN, "health-check", "custom key store %s: health check failed: this node has "
            "no connection to it", cks_id);
    return;
  }
  if (b->health) {
    memset(&ctx, 0, sizeof ctx);
    ctx.d = d;
    ctx.request_id = "health-check";
    ctx.operation = "KmsHealthCheck";
    kerr_clear(&e);
    if (b->health(conn, &ctx, &code, &e) != KERR_OK)
      log_msg(LOG_WARN, "health-check", "custom key store %s: health check failed (%s): %s",
              cks_id, code ? code : "INTERNAL_ERROR", e.msg);
    else
      log_msg(LOG_DEBUG, "health-check", "custom key store %s: healthy", cks_id);
  }
  kmsi_cks_conn_release(d, cks_id, conn);
}

kerr_code kmsi_cks_scan(kms_domain *d, bool with_health, kerr *err) {
  char after[STORE_CKS_ID_MAX] = "";
  int64_t now = kclock_now_ms();
  bool health = false;
  kerr_code rc = KERR_OK;

  if (!d->cks) return KERR_OK;
  if (with_health && d->xks_health_interval_ms > 0 && now >= d->xks_next_health_ms) {
    health = true;
    d->xks_next_health_ms = now + d->xks_health_interval_ms;
  }
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
    for (size_t i = 0; i < n && !domain_stopping(d); i++) {
      const store_cks *c = &list[i];
      kerr e;
      kerr_clear(&e);
      if (strcmp(c->connection_state, STATE_CONNECTING) == 0) {
        if (start_worker(d, c->cks_id, "recovery", true, &e) != KERR_OK)
          log_msg(LOG_WARN, "recovery", "custom key store %s: %s", c->cks_id, e.msg);
      } else if (strcmp(c->connection_state, STATE_DISCONNECTING) == 0) {
        finish_disconnect(d, c->cks_id);
      } else if (strcmp(c->connection_state, STATE_CONNECTED) == 0 &&
                 kmsi_cks_check_row(c, &e) != KERR_OK) {
        /* Damaged at rest: no node can open a connection from it. */
        static const char *const from_connected[] = {"CONNECTED", NULL};
        kmsi_cks_set_state(d, c->cks_id, from_connected, STATE_FAILED, "INTERNAL_ERROR",
                           "recovery", NULL, &e);
      } else if (health && strcmp(c->connection_state, STATE_CONNECTED) == 0 &&
                 strcmp(c->type, kms_backend_xks.type) == 0) {
        check_health(d, c->cks_id);
      }
    }
    if (n) snprintf(after, sizeof after, "%s", list[n - 1].cks_id);
    store_cks_list_free(list, n);
    if (n < RECOVERY_PAGE) break;
  }
  return rc;
}
