/* store.h - the durable state of the KMS domain behind a method table.
 *
 * The domain (lib/kms) talks to storage only through `store_ops`, so a
 * PostgreSQL backend can be added beside store_sqlite.c without touching the
 * domain.  Every domain API call opens one transaction (store_tx), makes all
 * its reads and writes through it and commits before returning: a successful
 * reply means the change is durable.
 *
 * Records are plain structs.  Fixed-size text fields hold bounded values;
 * `char *` fields are heap strings owned by the record and freed by its
 * *_clear function.  Missing rows come back as KERR_NOT_FOUND with no message
 * worth showing (the domain writes AWS-worded messages); any other failure is
 * KERR_INTERNAL with a message that never contains key material.
 *
 * A store is safe to use from many threads; a store_tx belongs to the one
 * thread that began it. */
#ifndef KMSD_STORE_STORE_H
#define KMSD_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aws/principal.h"
#include "core/ids.h"
#include "core/kerr.h"

#define STORE_REGION_MAX 64      /* region text incl. NUL */
#define STORE_ENUM_MAX 32        /* enum-valued text incl. NUL */
#define STORE_MATERIAL_ID_MAX 65 /* 64 hex digits incl. NUL */
#define STORE_ALIAS_MAX 257      /* alias name incl. NUL */

typedef struct store store;
typedef struct store_tx store_tx;
typedef struct store_lock store_lock;

/* One KMS key (everything but its policy text, which can be large and is
 * read separately only when the parsed-policy cache misses). */
typedef struct store_key {
  char key_id[UUID_STR_LEN];
  char account_id[ACCOUNT_ID_LEN + 1];
  char region[STORE_REGION_MAX];
  int64_t created_ms;
  char *description;                        /* owned, never NULL once read */
  char key_state[STORE_ENUM_MAX];           /* "Enabled", "Disabled", "PendingDeletion", ... */
  char key_usage[STORE_ENUM_MAX];
  char key_spec[STORE_ENUM_MAX];
  char origin[STORE_ENUM_MAX];
  char *custom_key_store_id;                /* owned; NULL when none */
  char *xks_key_id;                         /* owned; NULL when none */
  int64_t policy_version;                   /* bumped by every policy change */
  int64_t deletion_date_ms;                 /* 0: not pending deletion */
  int pending_window_days;                  /* 0: not pending deletion */
  bool rotation_enabled;
  int rotation_period_days;                 /* 0: none */
  int64_t next_rotation_ms;                 /* 0: none */
  int on_demand_rotations;
  char current_material_id[STORE_MATERIAL_ID_MAX]; /* "" when the key has none */
} store_key;

void store_key_clear(store_key *k);

/* One generation of a key's material, wrapped under the root key. */
typedef struct store_material {
  char material_id[STORE_MATERIAL_ID_MAX];
  char key_id[UUID_STR_LEN];
  int64_t seq;                              /* 0 for the original, then 1, 2, ... */
  uint8_t *wrapped;                         /* owned */
  size_t wrapped_len;
  int64_t created_ms;
  char rotation_type[STORE_ENUM_MAX];       /* "" original, "AUTOMATIC", "ON_DEMAND" */
} store_material;

void store_material_clear(store_material *m);
void store_material_list_free(store_material *list, size_t n);

typedef struct store_alias {
  char account_id[ACCOUNT_ID_LEN + 1];
  char region[STORE_REGION_MAX];
  char alias_name[STORE_ALIAS_MAX];
  char key_id[UUID_STR_LEN];
  int64_t created_ms;
  int64_t updated_ms;
} store_alias;

typedef struct store_tag {
  char *key;                                /* owned */
  char *value;                              /* owned */
} store_tag;

void store_tag_list_free(store_tag *list, size_t n);

/* ---- custom key stores (kms_cks*.c) ---- */

#define STORE_CKS_ID_MAX 32      /* "cks-" + 17 hex digits incl. NUL, with room */
#define STORE_CKS_NAME_MAX 257   /* CustomKeyStoreName is 1..256 */
#define STORE_CLUSTER_ID_MAX 32  /* cluster-[2-7a-zA-Z]{11,16} incl. NUL */
#define STORE_CKS_ERROR_MAX 64   /* a ConnectionErrorCode incl. NUL */
#define STORE_XKS_URI_MAX 129    /* XksProxyUriEndpoint / XksProxyUriPath: 10..128 */
#define STORE_XKS_VPCE_MAX 65    /* XksProxyVpcEndpointServiceName: 20..64 */
#define STORE_XKS_ACCESS_KEY_MAX 31 /* AccessKeyId: 20..30 */

/* One custom key store.  The kmsuser password is stored only wrapped under
 * the root key (rootkey.h); `pending_password_wrapped` holds a rotated
 * password between the moment it is chosen and the moment the HSMs are known
 * to have it, so a crash in between cannot lose it.
 *
 * External key stores (EXTERNAL_KEY_STORE) keep their XksProxy* settings in
 * plain columns (all "" for AWS_CLOUDHSM) and the credential's secret access
 * key only wrapped under the root key (`xks_secret_wrapped`, see
 * kms/backend_xks.c); its AccessKeyId is not a secret and is stored as is.
 * The older `xks_config` column of the table is unused. */
typedef struct store_cks {
  char cks_id[STORE_CKS_ID_MAX];
  char account_id[ACCOUNT_ID_LEN + 1];
  char region[STORE_REGION_MAX];
  char name[STORE_CKS_NAME_MAX];
  char type[STORE_ENUM_MAX];                /* "AWS_CLOUDHSM" | "EXTERNAL_KEY_STORE" */
  char cluster_id[STORE_CLUSTER_ID_MAX];    /* "" for external key stores */
  char cluster_lineage[64];                 /* the cluster's backup lineage when the
                                               store was created or re-pointed: what
                                               "related cluster" is checked against */
  char *trust_anchor_pem;                   /* owned; NULL for external key stores */
  uint8_t *password_wrapped;                /* owned; NULL when none */
  size_t password_wrapped_len;
  uint8_t *pending_password_wrapped;        /* owned; NULL when none */
  size_t pending_password_wrapped_len;
  char connection_state[STORE_ENUM_MAX];    /* ConnectionState of the model */
  char connection_error[STORE_CKS_ERROR_MAX]; /* "" unless FAILED */
  int64_t created_ms;
  int64_t state_changed_ms;
  /* EXTERNAL_KEY_STORE only ("" otherwise): */
  char xks_uri_endpoint[STORE_XKS_URI_MAX]; /* "https://host" */
  char xks_uri_path[STORE_XKS_URI_MAX];     /* ".../kms/xks/v1" */
  char xks_connectivity[STORE_ENUM_MAX];    /* PUBLIC_ENDPOINT | VPC_ENDPOINT_SERVICE */
  char xks_vpc_service_name[STORE_XKS_VPCE_MAX]; /* "" unless VPC_ENDPOINT_SERVICE */
  char xks_vpc_service_owner[ACCOUNT_ID_LEN + 1]; /* "" when not given */
  char xks_access_key_id[STORE_XKS_ACCESS_KEY_MAX];
  uint8_t *xks_secret_wrapped;              /* owned; NULL for AWS_CLOUDHSM */
  size_t xks_secret_wrapped_len;
} store_cks;

void store_cks_clear(store_cks *c);
void store_cks_list_free(store_cks *list, size_t n);

/* ---- HSM clusters (lib/cloudhsm/hsm_*.c) ------------------------------------
 * Clusters, their HSMs, crypto users, the wrapped key blobs every new HSM
 * is restored from, backups, and small root-key-wrapped secrets (PINs, the
 * backup wrapping key).  Kept in their own method table so the key-store
 * side and the cluster side grow independently. */
#define STORE_HSM_ID_MAX 32       /* cluster-/hsm-/backup- ids incl. NUL */
#define STORE_HSM_TEXT_MAX 128    /* short free text incl. NUL */

typedef struct store_hsm_cluster {
  char cluster_id[STORE_HSM_ID_MAX];
  char account_id[ACCOUNT_ID_LEN + 1];
  char region[STORE_REGION_MAX];
  char state[STORE_ENUM_MAX];
  char state_message[STORE_HSM_TEXT_MAX];
  char hsm_type[STORE_ENUM_MAX + 8];
  char mode[STORE_ENUM_MAX];
  char network_type[STORE_ENUM_MAX];
  char lineage[64];
  char source_backup_id[STORE_HSM_ID_MAX];     /* "" when none */
  char simulated_failure[STORE_ENUM_MAX];
  char security_group[STORE_HSM_ID_MAX];
  char vpc_id[STORE_HSM_ID_MAX];
  int64_t created_ms;
  char *subnets;          /* owned: subnet ids in zone order, comma-separated */
  char *tags;             /* owned: "key\tvalue\n" lines; "" when none */
  char *csr_pem;          /* owned; NULL when none */
  char *trust_anchor_pem; /* owned; NULL when none */
  char *cluster_cert_pem; /* owned; NULL when none */
} store_hsm_cluster;

void store_hsm_cluster_clear(store_hsm_cluster *c);
void store_hsm_cluster_list_free(store_hsm_cluster *list, size_t n);

typedef struct store_hsm {
  char hsm_id[STORE_HSM_ID_MAX];
  char cluster_id[STORE_HSM_ID_MAX];
  char availability_zone[STORE_REGION_MAX + 2];
  char subnet_id[STORE_HSM_ID_MAX];
  char eni_id[STORE_HSM_ID_MAX];
  char eni_ip[16];
  char state[STORE_ENUM_MAX];
  char state_message[STORE_HSM_TEXT_MAX];
  int64_t created_ms;
  int pool_index;          /* -1: a SoftHSM2 token kmsd made; else --hsm-pool entry */
  char token_label[33];
} store_hsm;

typedef struct store_hsm_user {
  char cluster_id[STORE_HSM_ID_MAX];
  char username[32];
  char role[16];
  uint8_t salt[16];
  uint8_t hash[32];
  int failed_logins;
  bool locked;
  bool logged_in;
} store_hsm_user;

typedef struct store_hsm_blob {
  char label[STORE_HSM_TEXT_MAX];
  uint8_t wrapped[512];
  size_t wrapped_len;
} store_hsm_blob;

typedef struct store_hsm_backup {
  char backup_id[STORE_HSM_ID_MAX];
  char cluster_id[STORE_HSM_ID_MAX];
  char account_id[ACCOUNT_ID_LEN + 1];
  char region[STORE_REGION_MAX];
  char lineage[64];
  char state[STORE_ENUM_MAX];
  char hsm_type[STORE_ENUM_MAX + 8];
  char mode[STORE_ENUM_MAX];
  int64_t created_ms;
} store_hsm_backup;

/* Every list returns a new array (free(), or store_hsm_cluster_list_free
 * for clusters); get of a missing row -> KERR_NOT_FOUND. */
typedef struct store_hsm_ops {
  kerr_code (*cluster_insert)(store_tx *tx, const store_hsm_cluster *c, kerr *err);
  kerr_code (*cluster_get)(store_tx *tx, const char *cluster_id, store_hsm_cluster *out,
                           kerr *err);
  /* Writes back every column but the ids, owner and creation time. */
  kerr_code (*cluster_update)(store_tx *tx, const store_hsm_cluster *c, kerr *err);
  /* Clusters of (account, region) ordered by id; account NULL: every cluster. */
  kerr_code (*cluster_list)(store_tx *tx, const char *account_id, const char *region,
                            store_hsm_cluster **out, size_t *n, kerr *err);
  kerr_code (*hsm_insert)(store_tx *tx, const store_hsm *h, kerr *err);
  kerr_code (*hsm_update)(store_tx *tx, const store_hsm *h, kerr *err);
  /* HSMs of a cluster (NULL: all) ordered by creation, DELETED ones included. */
  kerr_code (*hsm_list)(store_tx *tx, const char *cluster_id, store_hsm **out, size_t *n,
                        kerr *err);
  /* Insert or replace. */
  kerr_code (*user_put)(store_tx *tx, const store_hsm_user *u, kerr *err);
  kerr_code (*user_get)(store_tx *tx, const char *cluster_id, const char *username,
                        store_hsm_user *out, kerr *err);
  kerr_code (*user_delete)(store_tx *tx, const char *cluster_id, const char *username,
                           kerr *err);
  kerr_code (*user_list)(store_tx *tx, const char *cluster_id, store_hsm_user **out, size_t *n,
                         kerr *err);
  /* Key blobs of a lineage: put inserts or replaces, delete of an absent one is
   * not an error. */
  kerr_code (*blob_put)(store_tx *tx, const char *lineage, const store_hsm_blob *b, kerr *err);
  kerr_code (*blob_delete)(store_tx *tx, const char *lineage, const char *label, kerr *err);
  kerr_code (*blob_list)(store_tx *tx, const char *lineage, store_hsm_blob **out, size_t *n,
                         kerr *err);
  kerr_code (*backup_insert)(store_tx *tx, const store_hsm_backup *b, kerr *err);
  kerr_code (*backup_get)(store_tx *tx, const char *backup_id, store_hsm_backup *out, kerr *err);
  kerr_code (*backup_list)(store_tx *tx, const char *account_id, const char *region,
                           store_hsm_backup **out, size_t *n, kerr *err);
  /* Root-key-wrapped secrets by (owner id, name): put inserts or replaces. */
  kerr_code (*secret_put)(store_tx *tx, const char *owner, const char *name,
                          const uint8_t *wrapped, size_t len, kerr *err);
  /* *out is a new buffer (free()). */
  kerr_code (*secret_get)(store_tx *tx, const char *owner, const char *name, uint8_t **out,
                          size_t *len, kerr *err);
} store_hsm_ops;

/* ---- the store's own metadata --------------------------------------- */

#define STORE_META_NAME_MAX 64        /* a metadata name incl. NUL */
#define STORE_WRAPPED_ID_MAX 128      /* an owner or name of a wrapped value incl. NUL */

/* The kinds of root-key-wrapped values a store holds (rootkey.h): what a
 * root key is tried on when the store predates its check value. */
typedef enum store_wrapped_kind {
  STORE_WRAPPED_KEY_MATERIAL,   /* owner: key id, name: material id */
  STORE_WRAPPED_CKS_PASSWORD,   /* owner: key store id, name: "" (the domain's) */
  STORE_WRAPPED_HSM_SECRET,     /* owner and name as stored */
} store_wrapped_kind;

/* One wrapped value and the ids it is bound to. */
typedef struct store_wrapped_sample {
  char owner[STORE_WRAPPED_ID_MAX];
  char name[STORE_WRAPPED_ID_MAX];
  uint8_t *wrapped;             /* owned: store_wrapped_sample_clear */
  size_t wrapped_len;
} store_wrapped_sample;

void store_wrapped_sample_clear(store_wrapped_sample *w);

/* A value that changes whenever anything is committed to the store, by this
 * process or any other: what a cache in front of the store compares to know
 * that nothing it holds can have changed (store_ops.change_stamp). */
typedef struct store_stamp {
  uint32_t w[12];
} store_stamp;

bool store_stamp_equal(const store_stamp *a, const store_stamp *b);

typedef struct store_ops {
  const char *name; /* "sqlite" */

  /* Transactions.  `write` nonzero takes the write lock at once (no upgrade
   * deadlocks).  commit makes every write durable before returning and frees
   * the tx, also on failure (then nothing was written).  rollback frees the
   * tx and discards its writes; NULL is allowed. */
  kerr_code (*begin)(store *s, bool write, store_tx **out, kerr *err);
  kerr_code (*commit)(store_tx *tx, kerr *err);
  void (*rollback)(store_tx *tx);
  /* Whether `tx` may read changes of other transactions that are not
   * committed yet and may still be lost: a write transaction of a backend
   * with group commit reads the batch it is part of.  A cache shared
   * between transactions must not keep what such a tx reads (a version
   * number seen there may come back later with other contents). */
  bool (*reads_uncommitted)(store_tx *tx);
  /* The store's change stamp now: true and *out filled, or false when it
   * cannot be told at this instant (then nothing may be served from a
   * cache).  Contract: if two calls return equal stamps, no change was
   * committed between them, whoever made it (a transaction that changed
   * nothing may leave the stamp as it was); a transaction begun after a
   * call sees every commit that call's stamp covers.  Safe from any thread,
   * takes no lock another caller could wait on, and far cheaper than the
   * reads it saves: SQLite's reads shared memory; a server's backend may
   * ask its server in one round trip (store_pg.c).  NULL when the backend
   * has no such value.  A backend that is not sure its value follows every
   * commit returns false, always. */
  bool (*change_stamp)(store *s, store_stamp *out);
  /* Whether the database answered the last time this process needed it:
   * false from a connection that could not be opened or broke until a
   * transaction begins again.  No I/O, safe from any thread; NULL for a
   * store in the process itself (SQLite), which is always there. */
  bool (*reachable)(store *s);

  /* Several processes on one store (store_pg.c).  Both NULL for a store
   * that one process opens alone (SQLite, under the data directory's lock):
   * that process always holds the lease, and its own threads' locks are
   * enough.
   *
   * lease_held: whether this process holds the lease on the background
   * work (sweeps, connect workers, recoveries, health checks), which runs
   * in one process at a time.  No I/O, safe from any thread.  The server
   * ends a lease with its holder's session (at once when the holder is
   * killed), and another process takes it within about a second.  A holder
   * cut off from the database stops believing it holds the lease within
   * about three seconds; the server may see its session end later than that
   * (its keepalives), and only then can another process take the lease.
   *
   * lock_named: a lock on `name` among every process on the store, held
   * until unlock_named or until this process's session ends (so a killed
   * process never keeps one).  Waits up to wait_ms (0: tries once);
   * KERR_CONFLICT when another holder kept it that long, KERR_INTERNAL
   * when the database cannot be reached.  On KERR_OK *out is the lock,
   * released and freed by unlock_named (NULL allowed).  Not reentrant: a
   * second lock_named of one name in one process waits like any other.
   *
   * lock_held: whether `l` is still held, asked of the server (one round
   * trip): false once its session ended (a restart, a broken connection),
   * after which another process may hold it.  A holder doing something in
   * steps asks before each step. */
  bool (*lease_held)(store *s);
  kerr_code (*lock_named)(store *s, const char *name, int wait_ms, store_lock **out, kerr *err);
  void (*unlock_named)(store_lock *l);
  bool (*lock_held)(store_lock *l);

  /* Keys. key_get fills *out (clear it with store_key_clear). */
  kerr_code (*key_insert)(store_tx *tx, const store_key *k, const char *policy, kerr *err);
  kerr_code (*key_get)(store_tx *tx, const char *key_id, store_key *out, kerr *err);
  /* Write back every mutable column of `k` (all but ids, policy, created). */
  kerr_code (*key_update)(store_tx *tx, const store_key *k, kerr *err);
  /* Replace the policy text and bump policy_version; *new_version gets it. */
  kerr_code (*key_set_policy)(store_tx *tx, const char *key_id, const char *policy,
                              int64_t *new_version, kerr *err);
  /* *policy is a new heap string (caller frees). */
  kerr_code (*key_get_policy)(store_tx *tx, const char *key_id, char **policy,
                              int64_t *version, kerr *err);
  /* Delete a key with its materials, aliases and tags. */
  kerr_code (*key_delete)(store_tx *tx, const char *key_id, kerr *err);
  /* Key ids of (account, region) ordered by id, strictly after `after`
   * (NULL: from the start), at most `limit`.  *ids is a new array. */
  kerr_code (*key_list)(store_tx *tx, const char *account_id, const char *region,
                        const char *after, size_t limit, char (**ids)[UUID_STR_LEN], size_t *n,
                        kerr *err);
  /* Number of keys of (account, region) in any state, pending deletion and
   * custom key stores included (the per-Region key quota counts them all).
   * Constant time: one row kept by the store as keys come and go, however
   * they are written. */
  kerr_code (*key_count)(store_tx *tx, const char *account_id, const char *region,
                         int64_t *count, kerr *err);
  /* Ids of keys due for maintenance at now_ms: PendingDeletion keys whose
   * deletion date has passed, Enabled keys whose automatic rotation is due. */
  kerr_code (*keys_due)(store_tx *tx, int64_t now_ms, size_t limit,
                        char (**ids)[UUID_STR_LEN], size_t *n, kerr *err);

  /* Key materials. material_list is ordered by seq. */
  kerr_code (*material_insert)(store_tx *tx, const store_material *m, kerr *err);
  kerr_code (*material_get)(store_tx *tx, const char *material_id, store_material *out,
                            kerr *err);
  kerr_code (*material_list)(store_tx *tx, const char *key_id, store_material **out, size_t *n,
                             kerr *err);

  /* Aliases; names are unique per (account, region): insert of an existing
   * one -> KERR_ALREADY_EXISTS. */
  kerr_code (*alias_insert)(store_tx *tx, const store_alias *a, kerr *err);
  kerr_code (*alias_get)(store_tx *tx, const char *account_id, const char *region,
                         const char *alias_name, store_alias *out, kerr *err);
  kerr_code (*alias_update)(store_tx *tx, const store_alias *a, kerr *err);
  kerr_code (*alias_delete)(store_tx *tx, const char *account_id, const char *region,
                            const char *alias_name, kerr *err);
  /* Ordered by name, strictly after `after`, optionally only those of
   * `key_id`; *out is a new array (free()). */
  kerr_code (*alias_list)(store_tx *tx, const char *account_id, const char *region,
                          const char *key_id, const char *after, size_t limit,
                          store_alias **out, size_t *n, kerr *err);

  /* Tags: put inserts or overwrites; delete of an absent key is not an error. */
  kerr_code (*tag_put)(store_tx *tx, const char *key_id, const char *tag_key,
                       const char *tag_value, kerr *err);
  kerr_code (*tag_delete)(store_tx *tx, const char *key_id, const char *tag_key, kerr *err);
  /* All tags of a key ordered by tag key; *out is new (store_tag_list_free). */
  kerr_code (*tag_list)(store_tx *tx, const char *key_id, store_tag **out, size_t *n,
                        kerr *err);

  /* Custom key stores.  Names are unique per (account, region): an insert
   * or update that would repeat one -> KERR_ALREADY_EXISTS.  cks_update
   * writes every mutable column of `c` (all but ids, type and creation).
   * cks_list returns stores ordered by id strictly after `after` (NULL:
   * from the start), at most `limit`, of (account, region); account_id NULL
   * lists every account's stores of `region` (uniqueness across accounts),
   * both NULL every store (restart recovery); *out is new
   * (store_cks_list_free).  cks_key_count counts the keys of a store in any
   * state, pending deletion included. */
  kerr_code (*cks_insert)(store_tx *tx, const store_cks *c, kerr *err);
  kerr_code (*cks_get)(store_tx *tx, const char *cks_id, store_cks *out, kerr *err);
  /* Of the store `cks_id`, only its connection state and cluster ID (what
   * every crypto call on one of its keys checks), copied NUL-terminated
   * into state[state_size] and cluster_id[cluster_size], cut to fit: the
   * whole row (certificates, wrapped secrets) costs more to read.
   * KERR_NOT_FOUND when there is no such store. */
  kerr_code (*cks_state)(store_tx *tx, const char *cks_id, char *state, size_t state_size,
                         char *cluster_id, size_t cluster_size, kerr *err);
  kerr_code (*cks_update)(store_tx *tx, const store_cks *c, kerr *err);
  kerr_code (*cks_delete)(store_tx *tx, const char *cks_id, kerr *err);
  kerr_code (*cks_list)(store_tx *tx, const char *account_id, const char *region,
                        const char *after, size_t limit, store_cks **out, size_t *n, kerr *err);
  kerr_code (*cks_key_count)(store_tx *tx, const char *cks_id, int64_t *count, kerr *err);
  /* The KMS key of external key store `cks_id` whose XksKeyId is
   * `xks_key_id`, in any state: its id into key_id_out (UUID_STR_LEN) and
   * *found; "" and false when there is none. */
  kerr_code (*cks_key_by_xks_id)(store_tx *tx, const char *cks_id, const char *xks_key_id,
                                 char *key_id_out, bool *found, kerr *err);

  /* Small named values about the store itself (the root key's check value,
   * kms_domain.c).  meta_get: *value is a new buffer (free()), a missing
   * name -> KERR_NOT_FOUND.  meta_put inserts or replaces. */
  kerr_code (*meta_get)(store_tx *tx, const char *name, uint8_t **value, size_t *len, kerr *err);
  kerr_code (*meta_put)(store_tx *tx, const char *name, const uint8_t *value, size_t len,
                        kerr *err);
  /* Any one wrapped value of `kind` (fill *out; clear it with
   * store_wrapped_sample_clear), or KERR_NOT_FOUND when the store holds
   * none of that kind. */
  kerr_code (*wrapped_sample)(store_tx *tx, store_wrapped_kind kind, store_wrapped_sample *out,
                              kerr *err);

  /* The schema version the store is at (for tests and diagnostics). */
  kerr_code (*schema_version)(store *s, int *version, kerr *err);

  void (*close)(store *s);

  /* HSM clusters (see store_hsm_ops above). */
  const store_hsm_ops *hsm;
} store_ops;

/* Every backend's handle starts with this. */
struct store {
  const store_ops *ops;
};

/* How long a transaction waits for a database another process holds
 * locked before it fails with KERR_INTERNAL (SQLite's busy_timeout). */
#define STORE_SQLITE_BUSY_TIMEOUT_DEFAULT_MS 10000
#define STORE_SQLITE_BUSY_TIMEOUT_MIN_MS 1
#define STORE_SQLITE_BUSY_TIMEOUT_MAX_MS 600000

/* How long after its first commit a batch of group commit (store_sqlite.c,
 * "transactions") may still be handed to another writer. */
#define STORE_SQLITE_GROUP_WINDOW_DEFAULT_MS 20
#define STORE_SQLITE_GROUP_WINDOW_MAX_MS 600000

/* Tunables of the SQLite backend; a zeroed struct means every default. */
typedef struct store_sqlite_options {
  int busy_timeout_ms;  /* 0: STORE_SQLITE_BUSY_TIMEOUT_DEFAULT_MS; else within
                           STORE_SQLITE_BUSY_TIMEOUT_MIN_MS..MAX_MS */
  int group_window_ms;  /* 0: STORE_SQLITE_GROUP_WINDOW_DEFAULT_MS; else
                           1..STORE_SQLITE_GROUP_WINDOW_MAX_MS */
} store_sqlite_options;

/* Open (creating if needed) the SQLite database at `path`, in WAL mode with
 * synchronous=FULL and foreign keys on, and run pending migrations, with
 * every option at its default.  On KERR_OK *out is a new store (close with
 * (*out)->ops->close); on failure *out is NULL and nothing is left open. */
kerr_code store_sqlite_open(const char *path, store **out, kerr *err);

/* store_sqlite_open with options (`opts` NULL: all defaults).  An option out
 * of range fails with KERR_VALIDATION before anything is opened; otherwise as
 * store_sqlite_open. */
kerr_code store_sqlite_open_with(const char *path, const store_sqlite_options *opts, store **out,
                                 kerr *err);

/* The schema version this build's migrations lead to. */
int store_sqlite_latest_version(void);

/* Group commit (store_sqlite.c, "transactions") as counted since the store
 * was opened: writes / commits is how many write transactions shared each
 * fsync. */
typedef struct store_sqlite_stats {
  uint64_t commits;  /* batches committed, one COMMIT (and fsync) each */
  uint64_t writes;   /* write transactions committed in them */
  unsigned waiting;  /* write transactions waiting for their turn now */
} store_sqlite_stats;

/* Fill *out for `s`, a store from store_sqlite_open. */
void store_sqlite_stats_get(store *s, store_sqlite_stats *out);

/* Whether `s` (from store_sqlite_open) has a change stamp: false when this
 * SQLite's WAL index could not be mapped or is of an unknown version, and
 * then every change_stamp call returns false. */
bool store_sqlite_stamp_on(store *s);

#endif
