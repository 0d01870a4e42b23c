/* kms_backend.h - the key-store backend interface: where a KMS key's
 * cryptography happens, as one method table per kind of backing store, in
 * the spirit of SQLite's VFS and of the store's own method table
 * (store/store.h).
 *
 * Why: KMS keys live in one of several places - in kmsd itself (AWS_KMS:
 * key material wrapped under the root key), in a CloudHSM cluster
 * (AWS_CLOUDHSM custom key stores, lib/cloudhsm), and next behind an
 * external key store proxy (EXTERNAL_KEY_STORE).  The domain's operations
 * and the connection manager of custom key stores (kms_cks_conn.c: the
 * ConnectionState machine, connect workers, attempts, recovery) are the same
 * for all of them, so they call a backend only through this table and a new
 * kind of store is one more table (backend_<kind>.c), not code threaded
 * through the domain.
 *
 * Implementations: kms_backend_local (backend_local.c),
 * kms_backend_cloudhsm (backend_cloudhsm.c) and kms_backend_xks
 * (backend_xks.c).  kmsi_backend_for_type finds
 * the table of a CustomKeyStoreType.
 *
 * Conventions: every method returns a kerr_code and fills `err` (worded for
 * the KMS caller, never holding a secret); NULL methods are operations the
 * kind of store does not have (see each).  Methods that take a connection
 * are called only with one that `connect` (or `attach`) returned and
 * `disconnect` has not closed; the manager keeps a connection alive while
 * any call uses it (a counted reference per call, kms_cks_slot.h), and
 * calls may run on many threads at once, on a connection that has already
 * been replaced by a newer one.
 *
 * Transactions: the methods that may wait on a backing system (probe,
 * connect, health, create_key, delete_key, encrypt, decrypt, random) are
 * never called while the caller holds a transaction on the store, so a
 * proxy or an HSM that answers slowly holds no pooled database connection
 * and no write lock.  What such a call needs of the store the caller reads
 * first and hands over (the row of a check or a connect, the key material
 * of kms_backend_key).  A backend that must write the store itself (the
 * CloudHSM connect records kmsuser's rotated password) opens a short
 * transaction of its own between two waits, never across one.  Only
 * check_config runs inside the caller's transaction, and so it must not
 * call out over the network (kms_backend_check).
 *
 * Threads that must not wait: a request's thread may be one that serves
 * many connections (kmsd's HTTP event threads).  Before a request's thread
 * calls a waiting method of a backend that waits_on_network, it asks
 * kmsi_may_wait, which answers KERR_WOULD_BLOCK when the call says
 * must_not_wait (aws/call.h); the operation then stops before it has
 * changed anything, and kmsd runs the request again on a thread that may
 * wait.  Only request threads ask: connect workers, the health sweep and
 * the key sweeper are kmsd's own threads and may wait. */
#ifndef KMSD_KMS_KMS_BACKEND_H
#define KMSD_KMS_KMS_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/kerr.h"
#include "core/secmem.h"
#include "kms/kms_domain.h"
#include "store/store.h"

/* A backend's live connection to one custom key store; each backend defines
 * the struct (backend_cloudhsm.c: a logged-in hsm_conn). */
typedef struct kms_backend_conn kms_backend_conn;

/* What one backend call is about: who asks, in which KMS operation, for
 * which KMS key.  A struct so that it can grow with what backends need (an
 * external key store sends these as its requestMetadata).  Fields not known
 * to the caller are NULL. */
typedef struct kms_backend_ctx {
  kms_domain *d;
  const char *request_id;     /* the KMS request id ("recovery", "sweeper"
                                 for kmsd's own work) */
  const char *principal_arn;  /* the caller's ARN; NULL for kmsd's own work */
  const char *operation;      /* the KMS operation: "Encrypt", "Decrypt",
                                 "ReEncrypt", "GenerateDataKey", "CreateKey",
                                 "GenerateRandom", ... */
  const char *key_arn;        /* the KMS key's ARN; NULL when no key */
  const char *via_service;    /* kms:ViaService; NULL */
} kms_backend_ctx;

/* A KMS key as a backend's crypto methods see it. */
typedef struct kms_backend_key {
  const char *key_id;              /* the KMS key id (UUID) */
  const char *backing_key_id;      /* the store's own id of the key: the HSM
                                      key label (== key_id) for CloudHSM, the
                                      XksKeyId for an external key store;
                                      NULL for local keys */
  const char *material_id;         /* hex id of the key material to use: the
                                      current one to encrypt, the one the
                                      ciphertext names to decrypt */
  const char *current_material_id; /* the key's current material (hex) */
  const uint8_t *material;         /* when the backend uses_material: the
                                      unwrapped key material `material_id`
                                      names (AESGCM_KEY_LEN bytes), read by
                                      the caller inside its transaction and
                                      held in secure memory (core/secmem.h)
                                      that the caller wipes after the call;
                                      NULL for other backends */
} kms_backend_key;

/* What a connect is given.  `row` is the store's record as read for this
 * connect; the backend may change its own fields of it (and of the stored
 * row, through the store) while connecting, as CloudHSM does when it
 * rotates kmsuser's password.  `still_current` answers KERR_CONFLICT once a
 * disconnect or a newer connect overtook this one: a backend that changes
 * anything outside itself asks it before each such step and stops. */
typedef struct kms_backend_connect_ctx {
  kms_domain *d;
  store_cks *row;
  const char *request_id;
  kerr_code (*still_current)(const struct kms_backend_connect_ctx *cx, kerr *err);
  void *manager_arg;          /* the manager's, for still_current */
} kms_backend_connect_ctx;

/* When check_config runs.  Create and Update run in three steps, so that
 * the backing system is never asked while the store is locked: the checks
 * of what the store knows in a read transaction (CREATE, UPDATE), then the
 * backend's `probe` with no transaction open, then the checks that
 * concurrent requests could race again under the write lock just before
 * the row is written (INSERT, UPDATE_LOCKED).  check_config itself must not
 * call out to a backing system over the network: except for CONNECT (no
 * transaction), it runs inside the caller's transaction. */
typedef enum kms_backend_check {
  KMS_BACKEND_CHECK_CREATE,   /* CreateCustomKeyStore, in its read
                                 transaction: resolve and judge the backing
                                 configuration in `proposed` and complete
                                 the backend's fields of it */
  KMS_BACKEND_CHECK_INSERT,   /* CreateCustomKeyStore again, under the
                                 write lock just before the row is inserted:
                                 what concurrent creates could race
                                 (uniqueness) */
  KMS_BACKEND_CHECK_UPDATE,   /* UpdateCustomKeyStore, in a read
                                 transaction: `current` is the stored row,
                                 `proposed` the changed one */
  KMS_BACKEND_CHECK_UPDATE_LOCKED, /* UpdateCustomKeyStore again, in its
                                 write transaction just before the row is
                                 written, on the row as read again there
                                 (`current`) and the change recomputed from
                                 it (`proposed`): what concurrent requests
                                 could race (uniqueness) */
  KMS_BACKEND_CHECK_CONNECT,  /* ConnectCustomKeyStore, before the store
                                 moves to CONNECTING, no transaction open:
                                 what the API answers at once (the rest is
                                 the worker's, as a ConnectionErrorCode) */
} kms_backend_check;

typedef struct kms_backend {
  const char *type;  /* "AWS_KMS" (local) or the CustomKeyStoreType served */

  /* Whether the methods that may wait (see Transactions) wait on a system
   * reached over the network: true for an external key store's proxy, false
   * for local keys and for CloudHSM key stores, whose PKCS#11 tokens are
   * kmsd's own (a library call, however slow).  A request that must not
   * wait is stopped before such a method (kmsi_may_wait). */
  bool waits_on_network;

  /* Whether encrypt and decrypt use key material kmsd keeps for the KMS key
   * (wrapped under the root key): the local backend's only layer, an
   * external key store's inner one.  The caller then reads the material
   * the call needs into kms_backend_key.material before it ends its
   * transaction. */
  bool uses_material;

  /* A custom key store row read from the store is whole for this backend
   * (its own fields; the manager checks the common ones).  The name of the
   * damaged field into *bad (never a value); NULL *bad when whole.  NULL
   * method: nothing to check. */
  void (*check_row)(const store_cks *row, const char **bad);

  /* Check a store's configuration against what kmsd knows of its backing
   * system (see kms_backend_check).  `tx` is the operation's transaction on
   * the store (NULL for CONNECT); `current` is NULL except for UPDATE and
   * UPDATE_LOCKED.  Errors are the operation's model exceptions (e.g.
   * CloudHsmClusterNotFound, ...InUse, IncorrectTrustAnchor).  NULL method:
   * any configuration is accepted. */
  kerr_code (*check_config)(kms_domain *d, const kms_call *call, store_tx *tx,
                            kms_backend_check when, const store_cks *current,
                            store_cks *proposed, kerr *err);

  /* Ask the backing system whether the configuration `proposed` works (an
   * external key store's GetHealthStatus with its settings), for
   * `operation` ("CreateCustomKeyStore" or "UpdateCustomKeyStore").  Called
   * with no transaction open, between check_config CREATE and INSERT, and
   * for Update between UPDATE and UPDATE_LOCKED when probe_differs says the
   * update changes what reaches the backing system.  May wait up to the
   * backend's own deadline.  Errors are the operation's model exceptions.
   * NULL: the backend asks nothing (a CloudHSM cluster is kmsd's own, and
   * check_config judges it). */
  kerr_code (*probe)(kms_domain *d, const kms_call *call, const char *operation,
                     const store_cks *proposed, kerr *err);

  /* Whether what `probe` sends differs between rows `a` and `b` of one
   * store.  Update asks it to decide whether to probe, and again under the
   * write lock whether a concurrent update changed what was probed.
   * Required when `probe` is set. */
  bool (*probe_differs)(kms_domain *d, const store_cks *a, const store_cks *b);

  /* Connect to the store described by cx->row.  Runs on the manager's
   * connect worker, may take long, and must not hold the store's write lock
   * while it waits on the backing system.  On KERR_OK *out is a new
   * connection (disconnect); on failure *connection_error points at a static
   * ConnectionErrorCode of the model ("CLUSTER_NOT_FOUND",
   * "INVALID_CREDENTIALS", "XKS_PROXY_TIMED_OUT", ...), err says more for the
   * log, and nothing is left open.  A failure after cx->still_current said
   * KERR_CONFLICT changes no state (the manager checks).  NULL for local. */
  kerr_code (*connect)(const kms_backend_connect_ctx *cx, kms_backend_conn **out,
                       const char **connection_error, kerr *err);

  /* Close a connection.  NULL is allowed.  NULL for local. */
  void (*disconnect)(kms_backend_conn *c);

  /* Open this node's own connection to a store that is CONNECTED already:
   * connected by another node, or by this one before a restart.  Changes
   * nothing outside kmsd and nothing in cx->row; asks the backing system at
   * most what a login needs (CloudHSM logs in to each HSM with the stored
   * passwords; an external key store's client is only settings and a
   * credential, and sends nothing).  The periodic `health` checks find a
   * backing system that stopped answering, as for any running store.  On
   * failure *connection_error is set as for connect, and the store stays
   * CONNECTED: this node tries again later (kms_cks_conn.c).  NULL for
   * local. */
  kerr_code (*attach)(const kms_backend_connect_ctx *cx, kms_backend_conn **out,
                      const char **connection_error, kerr *err);

  /* Whether a connected store still works: KERR_OK, or a failure with
   * *connection_error as for connect.  For periodic checks of CONNECTED
   * stores (an external key store's GetHealthStatus).  NULL: no check. */
  kerr_code (*health)(kms_backend_conn *c, const kms_backend_ctx *ctx,
                      const char **connection_error, kerr *err);

  /* Create or adopt the backing key of new KMS key `key_id` in store `row`
   * (CreateKey in a custom key store; the store is CONNECTED).
   * `backing_key_id` is the key the caller names in the store (an external
   * key store's XksKeyId, checked with GetKeyMetadata), NULL when the store
   * makes a new one (CloudHSM).  Errors are CreateKey's exceptions.  NULL
   * for local keys, whose first key material CreateKey makes itself. */
  kerr_code (*create_key)(kms_backend_conn *c, const kms_backend_ctx *ctx, const store_cks *row,
                          const char *key_id, const char *backing_key_id, kerr *err);

  /* Remove the backing key `backing_key_id` (a deleted KMS key).  A key
   * already absent is not an error.  NULL: nothing to remove. */
  kerr_code (*delete_key)(kms_backend_conn *c, const kms_backend_ctx *ctx,
                          const char *backing_key_id, kerr *err);

  /* encrypt and decrypt are called with no transaction of the caller
   * open (see Transactions above): everything they need of the store is in
   * `k`.  They may wait on the network (an external key store's proxy) or
   * an HSM for as long as the backend's own deadline allows.
   *
   * Encrypt `pt` (1..KBLOB_MAX_PLAINTEXT bytes) under key `k`, binding
   * `aad` (the ciphertext blob's header and the canonical encryption
   * context).  On KERR_OK *body is a new buffer (free) of *body_len bytes:
   * what follows the header in the ciphertext blob (crypto/blob.h), in the
   * backend's own layout - AES-GCM's IV || tag || ciphertext for local and
   * CloudHSM keys.  A key the store does not have -> KERR_KEY_UNAVAILABLE. */
  kerr_code (*encrypt)(kms_backend_conn *c, const kms_backend_ctx *ctx, const kms_backend_key *k,
                       const uint8_t *pt, size_t pt_len, const uint8_t *aad, size_t aad_len,
                       uint8_t **body, size_t *body_len, kerr *err);

  /* The inverse: open `body` (body_len bytes after the blob's header) of
   * key `k` with `aad`.  On KERR_OK *pt is the plaintext in wiped-on-free
   * memory (kbytes_wipe_free).  Anything that does not open under this key -
   * a foreign material, a wrong context, a flipped bit - is
   * KERR_INVALID_CIPHERTEXT, all alike. */
  kerr_code (*decrypt)(kms_backend_conn *c, const kms_backend_ctx *ctx, const kms_backend_key *k,
                       const uint8_t *body, size_t body_len, const uint8_t *aad, size_t aad_len,
                       kbytes *pt, kerr *err);

  /* `n` random bytes into `out` (GenerateRandom).  NULL: the kind of store
   * does not generate random bytes (external key stores). */
  kerr_code (*random)(kms_backend_conn *c, const kms_backend_ctx *ctx, uint8_t *out, size_t n,
                      kerr *err);
} kms_backend;

extern const kms_backend kms_backend_local;
extern const kms_backend kms_backend_cloudhsm;
extern const kms_backend kms_backend_xks;

/* The backend of CustomKeyStoreType `type`; NULL when kmsd has none. */
const kms_backend *kmsi_backend_for_type(const char *type);

/* The one check before a request's thread calls a method of `b` that may
 * wait (probe, create_key, delete_key, encrypt, decrypt, random; connect
 * and health when a request runs them): KERR_OK when it may, and
 * KERR_WOULD_BLOCK with `err` filled when kcall->must_not_wait is set and
 * `b` waits_on_network; either way it notes in kcall->wait that the call
 * waits, and on which store (`cks_id`, NULL when none is known yet).  The
 * caller must not have changed anything yet (no
 * write, no state change, no log line saying something was done): it
 * returns the code as is, and the request runs again from the start.
 * Inline and without allocation or lock: it sits on the path of every
 * crypto call on every key. */
static inline kerr_code kmsi_may_wait_for(const kms_call *kcall, const char *what,
                                          const char *cks_id, kerr *err);

static inline kerr_code kmsi_may_wait(const kms_call *kcall, const kms_backend *b,
                                      const char *cks_id, kerr *err) {
  if (!b->waits_on_network) return KERR_OK;
  return kmsi_may_wait_for(kcall, b->type, cks_id, err);
}

/* kmsi_may_wait for a wait that is not on a backend's network but as long
 * (another node's connect worker, through a cluster-wide lock): the same
 * answer whatever the store's backend.  `what` names the store's type for
 * the message. */
static inline kerr_code kmsi_may_wait_for(const kms_call *kcall, const char *what,
                                          const char *cks_id, kerr *err) {
  if (kcall->wait) {
    size_t n = 0;
    if (cks_id)
      while (n < sizeof kcall->wait->on - 1 && cks_id[n]) n++;
    memcpy(kcall->wait->on, cks_id ? cks_id : "", n);
    kcall->wait->on[n] = '\0';
    if (!kcall->must_not_wait) kcall->wait->waited = true;
  }
  if (!kcall->must_not_wait) return KERR_OK;
  return kerr_set(err, KERR_WOULD_BLOCK,
                  "A call to a %s key store's backing system would wait on the network here.",
                  what);
}

#endif
