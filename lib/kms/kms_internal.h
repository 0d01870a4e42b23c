/* kms_internal.h - what the domain's source files share and nobody else sees:
 * the domain struct, key resolution, state checks, authorization, key
 * material access and the list-marker codec.  Not part of the API. */
#ifndef KMSD_KMS_INTERNAL_H
#define KMSD_KMS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "aws/policy.h"
#include "cloudhsm/hsm_service.h"
#include "crypto/blob.h"
#include "crypto/rootkey.h"
#include "kms/kms_domain.h"
#include "store/store.h"

#define KMS_STATE_ENABLED "Enabled"
#define KMS_STATE_DISABLED "Disabled"
#define KMS_STATE_PENDING_DELETION "PendingDeletion"
#define KMS_DEFAULT_LIST_LIMIT 100
#define KMS_MAX_LIST_LIMIT 1000
#define KMS_MAX_DESCRIPTION 8192
#define KMS_MAX_POLICY 32768
#define KMS_MAX_TAGS 50
#define KMS_MAX_ON_DEMAND_ROTATIONS 25
#define KMS_DAY_MS (86400LL * 1000)
#define KMS_DEFAULT_MAX_CUSTOM_KEY_STORES 10

typedef struct kmsi_material_cache kmsi_material_cache;
typedef struct kmsi_policy_cache kmsi_policy_cache;
typedef struct kmsi_key_cache kmsi_key_cache;
typedef struct kmsi_policy_ref kmsi_policy_ref;
typedef struct kmsi_cks_manager kmsi_cks_manager;

struct kms_domain {
  char *data_dir;
  datadir_lock *own_lock; /* NULL when the caller holds the data directory's lock */
  store *st;
  rootkey *rk;
  kmsi_material_cache *materials;
  kmsi_policy_cache *policies;
  kmsi_key_cache *keys; /* NULL: off (kms_domain_config.key_cache_entries) */
  /* The sweeper thread, stopped through stop_cond at close. */
  pthread_t sweeper;
  bool sweeper_running;
  bool stopping;
  int sweep_interval_ms;
  int max_custom_key_stores;
  int max_keys;
  pthread_mutex_t stop_lock;
  pthread_cond_t stop_cond;
  /* Custom key stores: live HSM connections and connect workers (kms_cks_conn.c). */
  kmsi_cks_manager *cks;
  /* The CloudHSM service the domain opened over its store (lib/cloudhsm). */
  hsm_service *hsm;
  /* External key stores (backend_xks.c), from kms_domain_config. */
  char *xks_ca_bundle;
  char **xks_connect_to;
  size_t xks_connect_to_count;
  int xks_timeout_ms;
  unsigned xks_connections;
  int xks_health_interval_ms;
  int64_t xks_next_health_ms;
  kms_vpc_judge_fn vpc_judge;
  void *vpc_arg;
};

/* The material id a key store's kmsuser password is wrapped under (with
 * the key store id as the key id, rootkey.h). */
#define KMSI_CKS_PASSWORD_MATERIAL_ID "kmsuser-password"

/* How an operation may name its key. */
typedef struct kmsi_resolve_opts {
  bool cross_account;   /* "Cross-account use: Yes" in the model */
  bool allow_alias;     /* alias names / alias ARNs accepted */
  bool invalid_arn;     /* malformed ARN -> KERR_INVALID_ARN (else NOT_FOUND) */
  bool any_account_id;  /* a bare key id may name another account's key (the
                           id inside a ciphertext blob) */
} kmsi_resolve_opts;

extern const kmsi_resolve_opts KMSI_CRYPTO;     /* cross-account, aliases, NotFound */
extern const kmsi_resolve_opts KMSI_DESCRIBE;   /* cross-account, aliases, InvalidArn */
extern const kmsi_resolve_opts KMSI_MANAGE;     /* own account, key id/ARN only, InvalidArn */
extern const kmsi_resolve_opts KMSI_MANAGE_ANY; /* own account, aliases too, InvalidArn */
extern const kmsi_resolve_opts KMSI_BLOB;       /* the key id carried by a ciphertext */

/* A resolved key: its row and its ARN. */
typedef struct kmsi_key {
  store_key row;
  char arn[KMS_ARN_MAX];
  /* Filled by resolution for keys in a custom key store: */
  bool cks_unavailable;                          /* its store is not CONNECTED */
  char cloud_hsm_cluster_id[KMS_CLUSTER_ID_MAX]; /* the store's cluster */
} kmsi_key;

void kmsi_key_clear(kmsi_key *k);


/* Begin a transaction on the domain's store. */
kerr_code kmsi_begin(kms_domain *d, bool write, store_tx **tx, kerr *err);

/* Resolve `ref` for `call` inside *tx.  A key whose deletion or automatic
 * rotation is due is first brought up to date in its own write transaction:
 * *tx is then rolled back and replaced by a fresh one of the same kind (only
 * call this before any write in *tx).  On KERR_OK *out is filled
 * (kmsi_key_clear).  Unknown -> KERR_NOT_FOUND with AWS's wording. */
kerr_code kmsi_resolve(kms_domain *d, store_tx **tx, bool write, const kms_call *call,
                       const char *ref, const kmsi_resolve_opts *opts, kmsi_key *out, kerr *err);

/* kmsi_resolve for an operation that only reads, with no transaction of
 * its own: from the key cache (kms_key_cache.h) when nothing was committed
 * to the store since the entry was filled, else in a read transaction that
 * ends before this returns (and fills the cache).  The same answers as
 * kmsi_resolve in a read transaction begun now, maintenance of a due key
 * included.  Pass a NULL tx to kmsi_authorize and kmsi_material after it. */
kerr_code kmsi_resolve_read(kms_domain *d, const kms_call *call, const char *ref,
                            const kmsi_resolve_opts *opts, kmsi_key *out, kerr *err);

/* Check the key state for a kind of operation. */
typedef enum kmsi_need {
  KMSI_NEED_ANY = 0,        /* DescribeKey, tags listing, policies... */
  KMSI_NEED_USABLE,         /* crypto: Disabled -> KERR_DISABLED, others -> INVALID_STATE */
  KMSI_NEED_NOT_PENDING,    /* changes: PendingDeletion -> KERR_INVALID_STATE */
} kmsi_need;

kerr_code kmsi_check_state(const kmsi_key *k, kmsi_need need, kerr *err);

/* authz_check for `action` on key `k` (NULL: resource "*").  `tx` NULL:
 * a key policy not in the parsed-policy cache is read in a read transaction
 * of its own. */
kerr_code kmsi_authorize(kms_domain *d, store_tx *tx, const kms_call *call, const kmsi_key *k,
                         const char *action, kerr *err);

/* Validate a key policy document for `account`'s key `key_arn` and, unless
 * `bypass`, make sure `call`'s caller could still PutKeyPolicy under it.
 * KERR_MALFORMED_POLICY / KERR_LIMIT_EXCEEDED on failure. */
kerr_code kmsi_check_new_policy(const kms_call *call, const char *key_arn, const char *account,
                                const char *policy, bool bypass, kerr *err);

/* AWS's default key policy for `account`; new heap string (caller frees). */
char *kmsi_default_policy(const char *account);

/* Forget the cached parsed policy of a key (after PutKeyPolicy, deletion). */
void kmsi_policy_forget(kms_domain *d, const char *key_id);

/* Fetch the unwrapped material `material_id` of key `key_id` into `out`
 * (caller's secret buffer, wiped by the caller), from the cache or the store
 * (through `tx`, or, when it is NULL, a read transaction of its own).
 * A material that does not exist or does not belong to the key ->
 * KERR_INVALID_CIPHERTEXT, with the same message whether or not the material
 * is cached; `out` holds nothing usable after a failure. */
kerr_code kmsi_material(kms_domain *d, store_tx *tx, const char *key_id,
                        const char *material_id, uint8_t out[AESGCM_KEY_LEN], kerr *err);

/* Create, wrap and store a fresh material for `key_id` with sequence `seq`
 * and rotation type ("" for the original); its id goes to material_id. */
kerr_code kmsi_new_material(kms_domain *d, store_tx *tx, const char *key_id, int64_t seq,
                            const char *rotation_type, int64_t now_ms,
                            char material_id[KMS_MATERIAL_ID_LEN], kerr *err);

/* Rotate key `k` (row updated in place and written back). */
kerr_code kmsi_rotate(kms_domain *d, store_tx *tx, store_key *k, const char *rotation_type,
                      int64_t now_ms, kerr *err);

/* Opaque pagination markers: base64 of "<kind>:<position>".  make returns a
 * new heap string (NULL on OOM); parse fills pos (cap bytes) or returns
 * KERR_INVALID_MARKER. */
char *kmsi_marker_make(char kind, const char *pos);
kerr_code kmsi_marker_parse(char kind, const char *marker, char *pos, size_t cap, kerr *err);

/* Limit 0 -> def, else must lie in 1..max (KERR_VALIDATION). */
kerr_code kmsi_limit(int limit, int def, int max, size_t *out, kerr *err);

/* strdup that reports OOM as KERR_INTERNAL. */
kerr_code kmsi_strdup(const char *s, char **out, kerr *err);

/* Key ARN of a stored key into out (KMS_ARN_MAX). */
void kmsi_key_arn(const store_key *k, char out[KMS_ARN_MAX]);

/* Validate tags per TagException rules (and count limits against
 * `existing`, the tag count already on the key). */
kerr_code kmsi_validate_tags(const kms_pair *tags, size_t ntags, kerr *err);

/* The shape of most operations: begin, resolve `ref`, authorize `action`,
 * run `fn` on the key, commit (write) or roll back (read).  `fn` may write
 * through tx only when `write` is set. */
typedef kerr_code (*kmsi_key_fn)(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err);

kerr_code kmsi_with_key(kms_domain *d, const kms_call *call, const char *ref,
                        const kmsi_resolve_opts *opts, bool write, const char *action,
                        kmsi_key_fn fn, void *arg, kerr *err);

/* KERR_VALIDATION unless call, caller and a well-formed region are present. */
kerr_code kmsi_check_call(const kms_call *call, kerr *err);

/* ---------------------------------------- custom key stores (kms_cks*.c) */

#define KMS_STATE_UNAVAILABLE "Unavailable"

/* How long a node waits after an attach that failed before the next
 * (kms_cks_conn.c); calls meanwhile find no connection. */
#define KMSI_CKS_ATTACH_RETRY_MS 1000
/* How long a connect worker waits for another node's worker of the same
 * store to finish before it leaves the store to the next scan. */
#define KMSI_CKS_CONNECT_LOCK_WAIT_MS 2000
/* How long a disconnect waits for a connect worker of the store on another
 * node to stop (it stops at its next step). */
#define KMSI_CKS_DETACH_LOCK_WAIT_MS 30000

/* Whether this node runs the background work: it holds the store's lease
 * (store_ops.lease_held), or the store is this process's alone. */
bool kmsi_lease_held(kms_domain *d);

/* Create the connection manager (d->cks) and, when this node holds the
 * lease, run one kmsi_cks_scan without health checks: stores a previous
 * run left mid-transition move on.  Connects run on worker threads; this
 * returns at once.  Call it once the rest of the domain is built (its
 * workers read it).  On failure nothing is left running. */
kerr_code kmsi_cks_start(kms_domain *d, kerr *err);

/* The lease holder's round over every custom key store (the sweeper calls
 * it each tick; only one node runs it at a time):
 *  - CONNECTING with no connect worker here -> a worker (the store's
 *    connect was asked of another node, or its node died mid-connect; the
 *    worker takes over, ending CONNECTED or FAILED);
 *  - DISCONNECTING with no disconnect running anywhere -> DISCONNECTED;
 *  - CONNECTED with a row damaged at rest -> FAILED (INTERNAL_ERROR);
 *  - CONNECTED external key stores, with `with_health` once per
 *    d->xks_health_interval_ms: GetHealthStatus, each bounded by
 *    --xks-timeout.  A failing check is logged (with its
 *    ConnectionErrorCode) and leaves the store CONNECTED, as in KMS.
 * Touches d->xks_next_health_ms, so only one thread may run it.  Stops
 * between stores when the domain is closing.  KERR_OK or the store's
 * error listing the stores. */
kerr_code kmsi_cks_scan(kms_domain *d, bool with_health, kerr *err);

/* Every node, each sweeper tick: bring this node's open connections in
 * line with their rows (a store disconnected or changed through another
 * node loses or replaces its connection here). */
void kmsi_cks_reconcile_all(kms_domain *d);

/* DisconnectCustomKeyStore's state change: CONNECTED, CONNECTING or
 * FAILED -> DISCONNECTING, every connection and connect worker of the
 * store stopped (kmsi_cks_detach), -> DISCONNECTED.  KERR_OK also when the
 * store is left DISCONNECTING because another node's connect worker has
 * not stopped within KMSI_CKS_DETACH_LOCK_WAIT_MS (the scan finishes it).
 * *prev_out (may be NULL; STORE_ENUM_MAX bytes) gets the state found;
 * KERR_CONFLICT when it was none of those. */
kerr_code kmsi_cks_disconnect(kms_domain *d, const char *cks_id, const char *request_id,
                              char *prev_out, kerr *err);

/* External key stores (backend_xks.c).  Wrap the credential's secret access
 * key (1..64 characters) under the root key, bound to store `cks_id`; *out
 * is a new buffer (free) of *out_len bytes; nothing on failure. */
kerr_code kmsi_xks_wrap_secret(kms_domain *d, const char *cks_id, const char *secret,
                               uint8_t **out, size_t *out_len, kerr *err);

/* Build a client from `row` (its wrapped secret unwrapped) and call
 * GetHealthStatus once: KERR_OK, or the exception CreateCustomKeyStore and
 * UpdateCustomKeyStore give (XksProxyUriUnreachable..., VPC endpoint
 * service NotFound / InvalidConfiguration, ...). */
kerr_code kmsi_xks_probe(kms_domain *d, const store_cks *row, const char *request_id,
                         const char *operation, kerr *err);

/* Whether the settings that reach the proxy (endpoint, path, connectivity,
 * VPC endpoint service, credential) differ between two rows of one
 * external key store. */
bool kmsi_xks_settings_differ(kms_domain *d, const store_cks *a, const store_cks *b);

/* Rebuild the live connection of CONNECTED store `cks_id` from its stored
 * row (UpdateCustomKeyStore changed its credential or path while
 * CONNECTED).  The new connection replaces the old one as soon as it is
 * connected, however busy the old one is: calls in flight finish on the old
 * one, which the last of them closes.  Returns after the backend's connect
 * (for an external key store one GetHealthStatus, within --xks-timeout).
 * When the new connect fails the old connection stays and the failure is
 * logged. */
void kmsi_cks_refresh(kms_domain *d, const char *cks_id, const char *request_id);

/* Stop: join every connect worker and close every HSM connection.  No call
 * on `d` may be in flight.  Safe when kmsi_cks_start never ran. */
void kmsi_cks_stop(kms_domain *d);

/* Fill k->cks_unavailable and k->cloud_hsm_cluster_id for a key in a
 * custom key store (no-op for others).  A store that has vanished counts as
 * unavailable. */
kerr_code kmsi_cks_key_info(kms_domain *d, store_tx *tx, kmsi_key *k, kerr *err);

/* For CreateKey in store `cks_id`: check the store (exists in the caller's
 * account+region, type, CONNECTED) and its cluster (two active HSMs in two
 * zones), then generate the key labelled `key_id` in the HSMs; for an
 * external key store, check `xks_key_id` with GetKeyMetadata.  `origin`
 * (NULL: implied) must be the store type's.  On KERR_OK type_out
 * (STORE_ENUM_MAX) holds the store's type and cluster_id_out
 * (KMS_CLUSTER_ID_MAX) its cluster ("" for external key stores); the caller
 * must kmsi_cks_delete_key if it then fails to record the key. */
kerr_code kmsi_cks_create_key(kms_domain *d, const kms_call *call, const char *cks_id,
                              const char *key_id, const char *origin, const char *xks_key_id,
                              char *type_out, char *cluster_id_out, kerr *err);

/* Remove key `key_id` from the HSMs of store `cks_id` if it is connected;
 * otherwise log that its material stays in the cluster.  Best effort: the
 * KMS key is gone either way. */
void kmsi_cks_delete_key(kms_domain *d, const char *cks_id, const char *key_id);

/* The backend that does the cryptography of key `k` (kms_backend.h) and
 * its connection: the local backend (no connection) for keys outside
 * custom key stores, else the live connection of the key's store, held
 * until kmsi_backend_release.  A store that is not connected ->
 * KERR_INVALID_STATE. */
struct kms_backend;
struct kms_backend_conn;
kerr_code kmsi_backend_acquire(kms_domain *d, const kmsi_key *k, const struct kms_backend **b,
                               struct kms_backend_conn **conn, kerr *err);
void kmsi_backend_release(kms_domain *d, const kmsi_key *k, struct kms_backend_conn *conn);

/* Take a reference on this node's connection to custom key store `cks_id`
 * and its backend, brought in line with the store's row first (opened on
 * first use when the store is CONNECTED); false when there is none.  Give
 * it back with kmsi_cks_conn_release, on any thread; the last reference of
 * a connection replaced meanwhile closes it there. */
bool kmsi_cks_conn_acquire(kms_domain *d, const char *cks_id, const struct kms_backend **b,
                           struct kms_backend_conn **c);
void kmsi_cks_conn_release(kms_domain *d, const char *cks_id, struct kms_backend_conn *c);

/* A zeroed AES-GCM ciphertext body for `pt_len` (1..KBLOB_MAX_PLAINTEXT)
 * bytes: IV || tag || ciphertext, the layout after a blob's header
 * (crypto/blob.h).  *body is new (free). */
kerr_code kmsi_gcm_body_new(size_t pt_len, uint8_t **body, size_t *len, kerr *err);

/* Scan the caller's stores (account+region), skipping `skip_id`, for the
 * first one `match` accepts: *hit tells whether there is one, and when
 * `found` is given it receives that store (store_cks_clear). */
typedef bool (*kmsi_cks_match_fn)(const store_cks *c, const void *arg);
kerr_code kmsi_cks_find_own(kms_domain *d, store_tx *tx, const kms_call *call,
                            kmsi_cks_match_fn match, const void *arg, const char *skip_id,
                            store_cks *found, bool *hit, kerr *err);

/* The same over the stores of every account in the caller's Region, for
 * what must be unique in a Region (an external key store's proxy address,
 * private DNS name and VPC endpoint service).  A store `found` of another
 * account is the caller's to inspect, never to show: its id and name must
 * not reach a reply. */
kerr_code kmsi_cks_find_in_region(kms_domain *d, store_tx *tx, const kms_call *call,
                                  kmsi_cks_match_fn match, const void *arg, const char *skip_id,
                                  store_cks *found, bool *hit, kerr *err);

/* THE function that changes a store's ConnectionState: in one write
 * transaction, when the stored state is one of `from` (a NULL-terminated
 * list; NULL: any), set `to` and `error_code` (NULL: none), stamp the time,
 * commit, and log the transition.  A state outside `from` -> KERR_CONFLICT
 * and nothing changes; a vanished store -> KERR_CKS_NOT_FOUND.  When
 * `prev_out` (STORE_ENUM_MAX bytes) is given it receives the state found. */
kerr_code kmsi_cks_set_state(kms_domain *d, const char *cks_id, const char *const *from,
                             const char *to, const char *error_code, const char *request_id,
                             char *prev_out, kerr *err);

/* Start a connect worker for store `cks_id`, which the caller has just
 * moved to CONNECTING, on this node when it holds the lease; otherwise the
 * lease holder's next scan starts one.  The worker ends in CONNECTED or
 * FAILED unless a disconnect overtakes it. */
kerr_code kmsi_cks_connect_async(kms_domain *d, const char *cks_id, const char *request_id,
                                 kerr *err);

/* Invalidate any connect in flight for `cks_id` and take this node's
 * connection away at once (new calls find none), then wait until the calls
 * already using it (or an older one it replaced) have finished and it is
 * closed, and for a running connect worker of the store, here or on
 * another node, to stop.  The caller has moved the store out of CONNECTING
 * and CONNECTED first.  KERR_CONFLICT when another node's worker did not
 * stop within KMSI_CKS_DETACH_LOCK_WAIT_MS: the store must then stay
 * DISCONNECTING (kmsi_cks_scan finishes it). */
kerr_code kmsi_cks_detach(kms_domain *d, const char *cks_id, kerr *err);

/* (backend_cloudhsm.c) Whether the wrapped kmsuser password `wrapped` of store `cks_id` is
 * `password`.  False when it does not unwrap. */
bool kmsi_cks_password_is(kms_domain *d, const char *cks_id, const uint8_t *wrapped, size_t len,
                          const char *password);

/* (backend_cloudhsm.c) Wrap a kmsuser password for store `cks_id` under the root key.  On KERR_OK
 * *out is new (free), ROOTKEY_WRAPPED_LEN bytes.  Passwords are 1..32 bytes. */
kerr_code kmsi_cks_wrap_password(kms_domain *d, const char *cks_id, const char *password,
                                 uint8_t **out, size_t *out_len, kerr *err);

/* KERR_OK when a custom key store row read from the store is whole: a known
 * type and connection state, a name, a creation date, and for AWS_CLOUDHSM a
 * well-formed cluster id, a trust anchor and a wrapped password.  Otherwise
 * (data damaged at rest) KERR_INTERNAL naming the store and the field, never
 * a value, and an error log line. */
kerr_code kmsi_cks_check_row(const store_cks *c, kerr *err);

/* GenerateRandom in the HSMs of store `cks_id` (authorization done).  Errors
 * are those the model lists for GenerateRandom: an HSM that did not answer in
 * time -> KERR_DEPENDENCY_TIMEOUT, any other HSM or storage fault ->
 * KERR_INTERNAL. */
kerr_code kmsi_cks_random(kms_domain *d, const kms_call *call, const char *cks_id, size_t n,
                          kbytes *out, kerr *err);

#endif
