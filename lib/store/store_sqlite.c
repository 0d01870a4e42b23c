/* store_sqlite.c - the embedded SQLite backend of the store (store.h).
 *
 * Durability: WAL journal with synchronous=FULL, so a COMMIT that returned
 * survives SIGKILL and power loss.  Concurrency: a small pool of connections,
 * one per read transaction; WAL lets readers run beside the writer.  Write
 * transactions take turns in-process instead of spinning on SQLITE_BUSY
 * (busy_timeout, store_sqlite_options, still covers other processes: past
 * it the transaction fails instead of hanging), and writers that queue
 * share one COMMIT and its fsync (group commit, see "transactions").  Each
 * connection caches its prepared statements, so the hot path (one key read
 * per Encrypt) prepares nothing. */
#include "store/store.h"
#include "store/store_sql.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define POOL_MAX 16

/* Numbered migrations: index i brings the schema to version i+1.  Never edit
 * a released one; append a new one. */
static const char *const migrations[] = {
    /* 1: keys, key materials, aliases, tags. */
    "CREATE TABLE keys ("
    "  key_id TEXT PRIMARY KEY,"
    "  account_id TEXT NOT NULL,"
    "  region TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  description TEXT NOT NULL DEFAULT '',"
    "  key_state TEXT NOT NULL,"
    "  key_usage TEXT NOT NULL,"
    "  key_spec TEXT NOT NULL,"
    "  origin TEXT NOT NULL,"
    "  custom_key_store_id TEXT,"
    "  xks_key_id TEXT,"
    "  policy TEXT NOT NULL,"
    "  policy_version INTEGER NOT NULL DEFAULT 1,"
    "  deletion_date_ms INTEGER,"
    "  pending_window_days INTEGER,"
    "  rotation_enabled INTEGER NOT NULL DEFAULT 0,"
    "  rotation_period_days INTEGER,"
    "  next_rotation_ms INTEGER,"
    "  on_demand_rotations INTEGER NOT NULL DEFAULT 0,"
    "  current_material_id TEXT"
    ");"
    "CREATE INDEX keys_by_owner ON keys(account_id, region, key_id);"
    "CREATE INDEX keys_by_deletion ON keys(deletion_date_ms) WHERE deletion_date_ms IS NOT NULL;"
    "CREATE INDEX keys_by_rotation ON keys(next_rotation_ms) WHERE next_rotation_ms IS NOT NULL;"
    "CREATE INDEX keys_by_custom_key_store ON keys(custom_key_store_id)"
    "  WHERE custom_key_store_id IS NOT NULL;"
    "CREATE TABLE key_materials ("
    "  material_id TEXT PRIMARY KEY,"
    "  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,"
    "  seq INTEGER NOT NULL,"
    "  wrapped BLOB NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  rotation_type TEXT NOT NULL DEFAULT '',"
    "  UNIQUE (key_id, seq)"
    ");"
    "CREATE TABLE aliases ("
    "  account_id TEXT NOT NULL,"
    "  region TEXT NOT NULL,"
    "  alias_name TEXT NOT NULL,"
    "  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (account_id, region, alias_name)"
    ");"
    "CREATE INDEX aliases_by_key ON aliases(key_id);"
    "CREATE TABLE tags ("
    "  key_id TEXT NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,"
    "  tag_key TEXT NOT NULL,"
    "  tag_value TEXT NOT NULL,"
    "  PRIMARY KEY (key_id, tag_key)"
    ");",
    /* custom key stores (kms_cks*.c); keys name theirs in keys.custom_key_store_id. */
    "CREATE TABLE custom_key_stores ("
    "  cks_id TEXT PRIMARY KEY,"
    "  account_id TEXT NOT NULL,"
    "  region TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  type TEXT NOT NULL,"
    "  cluster_id TEXT NOT NULL DEFAULT '',"
    "  cluster_lineage TEXT NOT NULL DEFAULT '',"
    "  trust_anchor_pem TEXT,"
    "  password_wrapped BLOB,"
    "  pending_password_wrapped BLOB,"
    "  connection_state TEXT NOT NULL,"
    "  connection_error TEXT NOT NULL DEFAULT '',"
    "  created_ms INTEGER NOT NULL,"
    "  state_changed_ms INTEGER NOT NULL,"
    "  xks_config TEXT,"
    "  UNIQUE (account_id, region, name)"
    ");",
    /* 3: HSM clusters, their HSMs, crypto users, key blobs, backups, wrapped
     * secrets (lib/cloudhsm/hsm_*.c). */
    "CREATE TABLE hsm_clusters ("
    "  cluster_id TEXT PRIMARY KEY, account_id TEXT NOT NULL, region TEXT NOT NULL,"
    "  state TEXT NOT NULL, state_message TEXT NOT NULL DEFAULT '',"
    "  hsm_type TEXT NOT NULL, mode TEXT NOT NULL, network_type TEXT NOT NULL,"
    "  lineage TEXT NOT NULL, source_backup_id TEXT NOT NULL DEFAULT '',"
    "  simulated_failure TEXT NOT NULL DEFAULT 'none', security_group TEXT NOT NULL,"
    "  vpc_id TEXT NOT NULL, created_ms INTEGER NOT NULL, subnets TEXT NOT NULL,"
    "  tags TEXT NOT NULL DEFAULT '', csr_pem TEXT, trust_anchor_pem TEXT,"
    "  cluster_cert_pem TEXT"
    ");"
    "CREATE INDEX hsm_clusters_by_owner ON hsm_clusters(account_id, region, cluster_id);"
    "CREATE TABLE hsm_hsms ("
    "  hsm_id TEXT PRIMARY KEY,"
    "  cluster_id TEXT NOT NULL REFERENCES hsm_clusters(cluster_id),"
    "  availability_zone TEXT NOT NULL, subnet_id TEXT NOT NULL, eni_id TEXT NOT NULL,"
    "  eni_ip TEXT NOT NULL, state TEXT NOT NULL, state_message TEXT NOT NULL DEFAULT '',"
    "  created_ms INTEGER NOT NULL, pool_index INTEGER NOT NULL, token_label TEXT NOT NULL"
    ");"
    "CREATE INDEX hsm_hsms_by_cluster ON hsm_hsms(cluster_id);"
    "CREATE TABLE hsm_users ("
    "  cluster_id TEXT NOT NULL REFERENCES hsm_clusters(cluster_id),"
    "  username TEXT NOT NULL, role TEXT NOT NULL, salt BLOB NOT NULL, hash BLOB NOT NULL,"
    "  failed_logins INTEGER NOT NULL DEFAULT 0, locked INTEGER NOT NULL DEFAULT 0,"
    "  logged_in INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (cluster_id, username)"
    ");"
    "CREATE TABLE hsm_key_blobs ("
    "  lineage TEXT NOT NULL, label TEXT NOT NULL, wrapped BLOB NOT NULL,"
    "  created_ms INTEGER NOT NULL, PRIMARY KEY (lineage, label)"
    ");"
    "CREATE TABLE hsm_backups ("
    "  backup_id TEXT PRIMARY KEY, cluster_id TEXT NOT NULL, account_id TEXT NOT NULL,"
    "  region TEXT NOT NULL, lineage TEXT NOT NULL, state TEXT NOT NULL,"
    "  hsm_type TEXT NOT NULL, mode TEXT NOT NULL, created_ms INTEGER NOT NULL"
    ");"
    "CREATE TABLE hsm_secrets ("
    "  owner TEXT NOT NULL, name TEXT NOT NULL, wrapped BLOB NOT NULL,"
    "  PRIMARY KEY (owner, name)"
    ");",
    /* 4: small named values about the store itself: the root key's check
     * value (kms_domain.c), so a root.key of another store is refused at
     * start instead of failing every crypto call. */
    "CREATE TABLE store_meta ("
    "  name TEXT PRIMARY KEY, value BLOB NOT NULL"
    ");",
    /* 5: the settings of external key stores (kms/backend_xks.c), one
     * column each so the domain never parses JSON; the secret access key
     * only wrapped under the root key.  xks_config (2) stays unused. */
    "ALTER TABLE custom_key_stores ADD COLUMN xks_uri_endpoint TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE custom_key_stores ADD COLUMN xks_uri_path TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE custom_key_stores ADD COLUMN xks_connectivity TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE custom_key_stores ADD COLUMN xks_vpc_service_name TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE custom_key_stores ADD COLUMN xks_vpc_service_owner TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE custom_key_stores ADD COLUMN xks_access_key_id TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE custom_key_stores ADD COLUMN xks_secret_wrapped BLOB;",
    /* 6: the number of keys of each account and Region, for CreateKey's
     * quota, which counted the rows under the write lock: a cost that grew
     * with the store and that every writer waited on.  Kept by triggers, so
     * every insert and delete (including another process's, or a
     * hand-made one) moves it in the same transaction; it is never
     * written by kmsd itself.  And a policy changed without its
     * policy_version (by hand, or by another program) gets a new version
     * all the same: the parsed-policy cache trusts the version. */
    "CREATE TABLE key_counts ("
    "  account_id TEXT NOT NULL,"
    "  region TEXT NOT NULL,"
    "  n INTEGER NOT NULL,"
    "  PRIMARY KEY (account_id, region)"
    ") WITHOUT ROWID;"
    "INSERT INTO key_counts (account_id, region, n) "
    "  SELECT account_id, region, COUNT(*) FROM keys GROUP BY account_id, region;"
    "CREATE TRIGGER key_counts_insert AFTER INSERT ON keys BEGIN"
    "  INSERT INTO key_counts (account_id, region, n) VALUES (NEW.account_id, NEW.region, 1)"
    "    ON CONFLICT (account_id, region) DO UPDATE SET n = n + 1;"
    " END;"
    "CREATE TRIGGER key_counts_delete AFTER DELETE ON keys BEGIN"
    "  UPDATE key_counts SET n = n - 1 WHERE account_id = OLD.account_id AND region = OLD.region;"
    " END;"
    "CREATE TRIGGER key_counts_move AFTER UPDATE OF account_id, region ON keys"
    "  WHEN OLD.account_id IS NOT NEW.account_id OR OLD.region IS NOT NEW.region BEGIN"
    "  UPDATE key_counts SET n = n - 1 WHERE account_id = OLD.account_id AND region = OLD.region;"
    "  INSERT INTO key_counts (account_id, region, n) VALUES (NEW.account_id, NEW.region, 1)"
    "    ON CONFLICT (account_id, region) DO UPDATE SET n = n + 1;"
    " END;"
    "CREATE TRIGGER keys_policy_version AFTER UPDATE OF policy ON keys"
    "  WHEN NEW.policy_version IS OLD.policy_version AND NEW.policy IS NOT OLD.policy BEGIN"
    "  UPDATE keys SET policy_version = OLD.policy_version + 1 WHERE key_id = NEW.key_id;"
    " END;",
};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))



enum stmt_id {
  ST_KEY_INSERT,
  ST_KEY_GET,
  ST_KEY_UPDATE,
  ST_KEY_SET_POLICY,
  ST_KEY_GET_POLICY,
  ST_KEY_DELETE,
  ST_KEY_LIST,
  ST_KEY_LIST_AFTER,
  ST_KEYS_DUE,
  ST_MAT_INSERT,
  ST_MAT_GET,
  ST_MAT_LIST,
  ST_ALIAS_INSERT,
  ST_ALIAS_GET,
  ST_ALIAS_UPDATE,
  ST_ALIAS_DELETE,
  ST_ALIAS_LIST,
  ST_ALIAS_LIST_BY_KEY,
  ST_TAG_PUT,
  ST_TAG_DELETE,
  ST_TAG_LIST,
  /* custom key stores */
  ST_CKS_INSERT,
  ST_CKS_GET,
  ST_CKS_STATE,
  ST_CKS_UPDATE,
  ST_CKS_DELETE,
  ST_CKS_LIST,
  ST_CKS_KEY_COUNT,
  ST_KEY_COUNT,
  ST_CKS_KEY_BY_XKS_ID,
  ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_KEY_INSERT] = "INSERT INTO keys (" KEY_COLUMNS ", policy) VALUES "
                      "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)",
    [ST_KEY_GET] = "SELECT " KEY_COLUMNS " FROM keys WHERE key_id = ?1",
    [ST_KEY_UPDATE] = "UPDATE keys SET description=?2, key_state=?3, deletion_date_ms=?4, "
                      "pending_window_days=?5, rotation_enabled=?6, rotation_period_days=?7, "
                      "next_rotation_ms=?8, on_demand_rotations=?9, current_material_id=?10, "
                      "custom_key_store_id=?11, xks_key_id=?12 WHERE key_id=?1",
    [ST_KEY_SET_POLICY] = "UPDATE keys SET policy=?2, policy_version=policy_version+1 "
                          "WHERE key_id=?1 RETURNING policy_version",
    [ST_KEY_GET_POLICY] = "SELECT policy, policy_version FROM keys WHERE key_id=?1",
    [ST_KEY_DELETE] = "DELETE FROM keys WHERE key_id=?1",
    [ST_KEY_LIST] = "SELECT key_id FROM keys WHERE account_id=?1 AND region=?2 "
                    "ORDER BY key_id LIMIT ?3",
    [ST_KEY_LIST_AFTER] = "SELECT key_id FROM keys WHERE account_id=?1 AND region=?2 AND "
                          "key_id > ?4 ORDER BY key_id LIMIT ?3",
    [ST_KEYS_DUE] = "SELECT key_id FROM keys WHERE deletion_date_ms <= ?1 "
                    "AND key_state = 'PendingDeletion' UNION "
                    "SELECT key_id FROM keys WHERE next_rotation_ms <= ?1 "
                    "AND key_state = 'Enabled' AND rotation_enabled = 1 LIMIT ?2",
    [ST_MAT_INSERT] = "INSERT INTO key_materials (material_id, key_id, seq, wrapped, created_ms, "
                      "rotation_type) VALUES (?1,?2,?3,?4,?5,?6)",
    [ST_MAT_GET] = "SELECT material_id, key_id, seq, wrapped, created_ms, rotation_type "
                   "FROM key_materials WHERE material_id=?1",
    [ST_MAT_LIST] = "SELECT material_id, key_id, seq, wrapped, created_ms, rotation_type "
                    "FROM key_materials WHERE key_id=?1 ORDER BY seq",
    [ST_ALIAS_INSERT] = "INSERT INTO aliases (account_id, region, alias_name, key_id, created_ms, "
                        "updated_ms) VALUES (?1,?2,?3,?4,?5,?6)",
    [ST_ALIAS_GET] = "SELECT account_id, region, alias_name, key_id, created_ms, updated_ms "
                     "FROM aliases WHERE account_id=?1 AND region=?2 AND alias_name=?3",
    [ST_ALIAS_UPDATE] = "UPDATE aliases SET key_id=?4, updated_ms=?6 "
                        "WHERE account_id=?1 AND region=?2 AND alias_name=?3",
    [ST_ALIAS_DELETE] = "DELETE FROM aliases WHERE account_id=?1 AND region=?2 AND alias_name=?3",
    /* ?4 is '' on the first page: every alias name is longer.  A plain
     * range, not "?4 IS NULL OR ...", so that a page starts where the
     * previous one ended instead of at the account's first alias. */
    [ST_ALIAS_LIST] = "SELECT account_id, region, alias_name, key_id, created_ms, updated_ms "
                      "FROM aliases WHERE account_id=?1 AND region=?2 AND alias_name > ?4 "
                      "ORDER BY alias_name LIMIT ?5",
    /* The aliases of one key, through aliases_by_key: the unary + keeps the
     * planner from walking the account's whole primary-key range instead. */
    [ST_ALIAS_LIST_BY_KEY] = "SELECT account_id, region, alias_name, key_id, created_ms, updated_ms "
                             "FROM aliases WHERE key_id=?3 AND +account_id=?1 AND +region=?2 "
                             "AND alias_name > ?4 ORDER BY alias_name LIMIT ?5",
    [ST_TAG_PUT] = "INSERT INTO tags (key_id, tag_key, tag_value) VALUES (?1,?2,?3) "
                   "ON CONFLICT (key_id, tag_key) DO UPDATE SET tag_value=excluded.tag_value",
    [ST_TAG_DELETE] = "DELETE FROM tags WHERE key_id=?1 AND tag_key=?2",
    [ST_TAG_LIST] = "SELECT tag_key, tag_value FROM tags WHERE key_id=?1 ORDER BY tag_key",
    /* custom key stores */
    [ST_CKS_INSERT] = "INSERT INTO custom_key_stores (" CKS_COLUMNS ") VALUES "
                      "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21)",
    [ST_CKS_GET] = "SELECT " CKS_COLUMNS " FROM custom_key_stores WHERE cks_id=?1",
    [ST_CKS_STATE] = "SELECT connection_state, cluster_id FROM custom_key_stores WHERE cks_id=?1",
    [ST_CKS_UPDATE] = "UPDATE custom_key_stores SET name=?4, cluster_id=?6, trust_anchor_pem=?7, "
                      "password_wrapped=?8, pending_password_wrapped=?9, connection_state=?10, "
                      "connection_error=?11, state_changed_ms=?13, cluster_lineage=?14, "
                      "xks_uri_endpoint=?15, xks_uri_path=?16, xks_connectivity=?17, "
                      "xks_vpc_service_name=?18, xks_vpc_service_owner=?19, "
                      "xks_access_key_id=?20, xks_secret_wrapped=?21 WHERE cks_id=?1",
    [ST_CKS_DELETE] = "DELETE FROM custom_key_stores WHERE cks_id=?1",
    [ST_CKS_LIST] = "SELECT " CKS_COLUMNS " FROM custom_key_stores WHERE "
                    "(?1 IS NULL OR account_id=?1) AND (?2 IS NULL OR region=?2) AND "
                    "(?3 IS NULL OR cks_id > ?3) "
                    "ORDER BY cks_id LIMIT ?4",
    [ST_CKS_KEY_COUNT] = "SELECT COUNT(*) FROM keys WHERE custom_key_store_id=?1",
    [ST_KEY_COUNT] = "SELECT COALESCE((SELECT n FROM key_counts WHERE account_id=?1 "
                     "AND region=?2), 0)",
    [ST_CKS_KEY_BY_XKS_ID] = "SELECT key_id FROM keys WHERE custom_key_store_id=?1 AND "
                             "xks_key_id=?2 LIMIT 1",
};

typedef struct sq_conn sq_conn;

typedef struct sq_store {
  store base;
  char *path;
  pthread_mutex_t pool_lock;
  pthread_cond_t pool_cond;
  sq_conn *idle[POOL_MAX];
  size_t nidle;
  size_t nopen;
  int busy_timeout_ms; /* every connection of the pool gets the same */
  int group_window_ms;
  /* Group commit (see "transactions"), all under group_lock. */
  pthread_mutex_t group_lock;
  pthread_cond_t group_cond;
  bool writing;                 /* a write transaction runs, or a batch ends */
  unsigned waiting;             /* write transactions waiting for their turn */
  sq_conn *batch;               /* the open batch's connection, or NULL */
  struct group_member *members; /* committed into the batch, waiting on it */
  unsigned turns;               /* write transactions run in the batch so far */
  int64_t first_member_ms;      /* monotonic: when the batch's first member committed */
  bool poisoned;                /* a member's undo failed: the batch must not commit */
  uint64_t commits, writes;     /* store_sqlite_stats */
  /* The change stamp (see "change stamp"): a connection used for nothing
   * else, which keeps the WAL index mapped, and that index's first region;
   * NULL when the stamp is off. */
  sq_conn *stamp_conn;
  const volatile uint32_t *wal_index;
} sq_store;

/* A transaction is a borrowed connection; it goes back to the pool at commit
 * or rollback. */
/* Transaction control statements, prepared once per connection: running
 * them through sqlite3_exec re-parsed the SQL on every request. */
enum {
  TXC_BEGIN,
  TXC_BEGIN_IMMEDIATE,
  TXC_COMMIT,
  TXC_ROLLBACK,
  TXC_SAVEPOINT,
  TXC_RELEASE,
  TXC_ROLLBACK_TO,
  TXC_COUNT
};
static const char *const txc_sql[TXC_COUNT] = {
    "BEGIN",          "BEGIN IMMEDIATE",  "COMMIT", "ROLLBACK", "SAVEPOINT member",
    "RELEASE member", "ROLLBACK TO member"};

struct store_tx {
  sq_store *owner;
  sqlite3 *db;
  sqlite3_stmt *txc[TXC_COUNT];
  sqlite3_stmt *stmts[ST_COUNT];
  bool write;
  bool in_tx;
};

struct sq_conn {
  store_tx tx;
};

static kerr_code db_error(sqlite3 *db, const char *what, kerr *err) {
  return kerr_set(err, KERR_INTERNAL, "Storage error while %s: %s", what,
                  db ? sqlite3_errmsg(db) : "cannot open database");
}

/* Grow *arr (cap elements of `size` bytes) to hold element n; zero-fills
 * new space.  The new element, or NULL when out of memory. */
static void *grow_array(void **arr, size_t *cap, size_t n, size_t size) {
  if (n < *cap) return (char *)*arr + n * size;
  size_t ncap = *cap ? *cap * 2 : 8;
  void *p = realloc(*arr, ncap * size);
  if (!p) return NULL;
  *arr = p;
  *cap = ncap;
  memset((char *)p + n * size, 0, (ncap - n) * size);
  return (char *)p + n * size;
}

/* Step `st` to the end, reading each row with `read` into a new element of
 * a growing array of `size`-byte elements.  On KERR_OK *out owns the array
 * (n elements; NULL when none); on failure nothing is left allocated
 * (`release`, when given, frees what `read` put into the elements). */
typedef kerr_code (*row_reader)(sqlite3_stmt *st, void *elem, kerr *err);

static kerr_code collect_rows(store_tx *tx, sqlite3_stmt *st, size_t size, row_reader read,
                              void (*release)(void *list, size_t n), const char *what,
                              void **out, size_t *n, kerr *err) {
  void *arr = NULL;
  size_t cap = 0, count = 0;
  kerr_code rc = KERR_OK;
  int r;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    void *elem = grow_array(&arr, &cap, count, size);
    if (!elem) {
      rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
      goto out;
    }
    rc = read(st, elem, err);
    if (rc) {
      count++; /* the element may hold part of a row: release it too */
      goto out;
    }
    count++;
  }
  if (r != SQLITE_DONE) {
    rc = db_error(tx->db, what, err);
    goto out;
  }
  *out = arr;
  *n = count;
  return KERR_OK;
out:
  if (release) release(arr, count);
  else free(arr);
  return rc;
}

static kerr_code exec_sql(sqlite3 *db, const char *sql, const char *what, kerr *err) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    kerr_code rc = kerr_set(err, KERR_INTERNAL, "Storage error while %s: %s", what,
                            msg ? msg : "unknown");
    sqlite3_free(msg);
    return rc;
  }
  return KERR_OK;
}

/* Run one transaction control statement (TXC_*) on tx's connection. */
static kerr_code tx_control(store_tx *tx, int which, const char *what, kerr *err) {
  sqlite3_stmt **st = &tx->txc[which];
  if (!*st && sqlite3_prepare_v3(tx->db, txc_sql[which], -1, SQLITE_PREPARE_PERSISTENT, st, NULL) !=
                  SQLITE_OK)
    return db_error(tx->db, what, err);
  int rc = sqlite3_step(*st);
  sqlite3_reset(*st);
  return rc == SQLITE_DONE ? KERR_OK : db_error(tx->db, what, err);
}

static void conn_free(sq_conn *c) {
  if (!c) return;
  for (int i = 0; i < TXC_COUNT; i++) sqlite3_finalize(c->tx.txc[i]);
  for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(c->tx.stmts[i]);
  sqlite3_close(c->tx.db);
  free(c);
}

static kerr_code conn_open(sq_store *s, sq_conn **out, kerr *err) {
  kerr_code rc = KERR_OK;
  sq_conn *c = calloc(1, sizeof *c);
  *out = NULL;
  if (!c) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  c->tx.owner = s;
  if (sqlite3_open_v2(s->path, &c->tx.db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      NULL) != SQLITE_OK) {
    rc = db_error(c->tx.db, "opening the database", err);
    goto out;
  }
  sqlite3_busy_timeout(c->tx.db, s->busy_timeout_ms);
  rc = exec_sql(c->tx.db,
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
                "configuring the database", err);
  if (rc) goto out;
  *out = c;
  c = NULL;
out:
  conn_free(c);
  return rc;
}

static sqlite3_stmt *stmt(store_tx *tx, enum stmt_id id, kerr *err) {
  if (!tx->stmts[id]) {
    if (sqlite3_prepare_v3(tx->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &tx->stmts[id],
                           NULL) != SQLITE_OK) {
      db_error(tx->db, "preparing a statement", err);
      tx->stmts[id] = NULL;
      return NULL;
    }
  }
  return tx->stmts[id];
}

static void stmt_done(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *v) {
  if (v)
    sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
  else
    sqlite3_bind_null(st, i);
}

static void bind_int64_or_null(sqlite3_stmt *st, int i, int64_t v) {
  if (v)
    sqlite3_bind_int64(st, i, v);
  else
    sqlite3_bind_null(st, i);
}

static void copy_col(sqlite3_stmt *st, int i, char *dst, size_t cap) {
  if (cap == 0) return; /* no room even for the NUL */
  const unsigned char *t = sqlite3_column_text(st, i);
  size_t n = t ? strlen((const char *)t) : 0;
  if (n >= cap) n = cap - 1;
  if (n) memcpy(dst, t, n);
  dst[n] = '\0';
}

static kerr_code dup_col(sqlite3_stmt *st, int i, bool nullable, char **out, kerr *err) {
  const unsigned char *t = sqlite3_column_text(st, i);
  *out = NULL;
  if (!t && nullable) return KERR_OK;
  *out = strdup(t ? (const char *)t : "");
  if (!*out) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  return KERR_OK;
}

/* ---------------------------------------------------------- transactions
 *
 * A read transaction borrows a connection of the pool for its length.
 *
 * Writes use group commit.  SQLite makes one fsync per COMMIT, so with one
 * SQLite transaction per write the store managed the disk's fsync rate
 * (about 230 writes/s here) however many callers queued.  Write
 * transactions still run one at a time, but each inside a savepoint of a
 * shared SQLite transaction, the batch, on one connection.  A caller that
 * commits releases its savepoint into the batch; if other writers are
 * waiting it lets the next one run and sleeps until the batch ends, and
 * the last of them (or the GROUP_MAX-th) commits the batch for all.  So no
 * commit returns before a COMMIT holding its changes has returned, and
 * durability is what it was; a rollback undoes its own savepoint only.  If
 * the batch is lost (its COMMIT fails, or SQLite abandons the transaction
 * after an I/O error), the commit of every member fails: none has been
 * acknowledged.  A lone writer pays two statements more than before. */

/* A batch takes at most GROUP_MAX turns (write transactions, committed or
 * not) and is handed on only within the group window (store_sqlite_options)
 * after its first member committed: together they bound how long a
 * committed writer waits for the ones after it.  A write transaction that
 * is slow by itself (the HSM manager's steps) still delays the members
 * before it by its length; with one COMMIT per write it delayed every
 * writer queued behind it instead. */
#define GROUP_MAX 64

/* A write transaction that committed into the batch, on its caller's stack
 * until the batch ends. */
typedef struct group_member {
  struct group_member *next;
  bool done;
  kerr outcome; /* the batch's */
} group_member;

static int64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static kerr_code pool_take(sq_store *s, sq_conn **out, kerr *err) {
  sq_conn *c = NULL;
  kerr_code rc;
  *out = NULL;
  pthread_mutex_lock(&s->pool_lock);
  while (!s->nidle && s->nopen >= POOL_MAX) pthread_cond_wait(&s->pool_cond, &s->pool_lock);
  if (s->nidle) {
    c = s->idle[--s->nidle];
  } else {
    s->nopen++;
  }
  pthread_mutex_unlock(&s->pool_lock);
  if (c) {
    *out = c;
    return KERR_OK;
  }
  rc = conn_open(s, &c, err);
  if (rc || !c) {
    pthread_mutex_lock(&s->pool_lock);
    s->nopen--;
    pthread_cond_signal(&s->pool_cond);
    pthread_mutex_unlock(&s->pool_lock);
    return rc ? rc : kerr_set(err, KERR_INTERNAL, "Storage error while opening the database.");
  }
  *out = c;
  return KERR_OK;
}

static void pool_give(sq_store *s, sq_conn *c) {
  c->tx.in_tx = false;
  c->tx.write = false;
  pthread_mutex_lock(&s->pool_lock);
  s->idle[s->nidle++] = c;
  pthread_cond_signal(&s->pool_cond);
  pthread_mutex_unlock(&s->pool_lock);
}

static kerr_code read_begin(sq_store *s, store_tx **out, kerr *err) {
  sq_conn *c = NULL;
  kerr_code rc = pool_take(s, &c, err);
  if (rc) return rc;
  rc = tx_control(&c->tx, TXC_BEGIN, "starting a transaction", err);
  if (rc) {
    pool_give(s, c);
    return rc;
  }
  c->tx.in_tx = true;
  *out = &c->tx;
  return KERR_OK;
}

/* End the batch: commit what its members released, or roll it back when
 * there is nothing to keep or it was lost.  Called by the running writer
 * (s->writing) with group_lock not held; tells every member the outcome. */
static void batch_end(sq_store *s) {
  sq_conn *c;
  group_member *list;
  kerr outcome = {KERR_OK, ""};
  bool open;

  bool poisoned;

  pthread_mutex_lock(&s->group_lock);
  c = s->batch;
  list = s->members;
  poisoned = s->poisoned;
  s->batch = NULL;
  s->members = NULL;
  s->turns = 0;
  s->poisoned = false;
  pthread_mutex_unlock(&s->group_lock);

  open = sqlite3_get_autocommit(c->tx.db) == 0;
  if (!open) {
    if (list)
      kerr_set(&outcome, KERR_INTERNAL,
               "Storage error while committing: the database abandoned the transaction.");
  } else if (poisoned) {
    if (list)
      kerr_set(&outcome, KERR_INTERNAL,
               "Storage error while committing: a write could not be undone, so none was kept.");
  } else if (list && tx_control(&c->tx, TXC_COMMIT, "committing", &outcome) == KERR_OK) {
    open = false;
  }
  if (open) tx_control(&c->tx, TXC_ROLLBACK, "rolling back", NULL);
  pool_give(s, c);

  pthread_mutex_lock(&s->group_lock);
  if (list && !outcome.code) s->commits++;
  for (group_member *m = list; m; m = m->next) {
    m->outcome = outcome;
    m->done = true;
    if (!outcome.code) s->writes++;
  }
  s->writing = false;
  pthread_cond_broadcast(&s->group_cond);
  pthread_mutex_unlock(&s->group_lock);
}

/* The running writer is done with its part: `m` when it released its
 * savepoint into the batch, NULL when it undid it.  Hands the turn to a
 * waiting writer while the batch may grow, else ends the batch; returns
 * once the batch holding `m` has ended, with its outcome in m->outcome. */
static void writer_done(sq_store *s, group_member *m) {
  bool lost = sqlite3_get_autocommit(s->batch->tx.db) != 0;
  int64_t now = monotonic_ms();
  pthread_mutex_lock(&s->group_lock);
  if (m) {
    if (!s->members) s->first_member_ms = now;
    m->next = s->members;
    s->members = m;
  }
  s->turns++;
  if (!lost && !s->poisoned && s->waiting > 0 && s->turns < GROUP_MAX &&
      (!s->members || now - s->first_member_ms < s->group_window_ms)) {
    s->writing = false;
    pthread_cond_broadcast(&s->group_cond);
    while (m && !m->done) pthread_cond_wait(&s->group_cond, &s->group_lock);
    pthread_mutex_unlock(&s->group_lock);
    return;
  }
  pthread_mutex_unlock(&s->group_lock);
  batch_end(s);
}

static kerr_code write_begin(sq_store *s, store_tx **out, kerr *err) {
  sq_conn *c;
  kerr_code rc = KERR_OK;

  pthread_mutex_lock(&s->group_lock);
  s->waiting++;
  while (s->writing) pthread_cond_wait(&s->group_cond, &s->group_lock);
  s->waiting--;
  s->writing = true;
  c = s->batch;
  pthread_mutex_unlock(&s->group_lock);

  if (!c) {
    rc = pool_take(s, &c, err);
    if (!rc) {
      rc = tx_control(&c->tx, TXC_BEGIN_IMMEDIATE, "starting a transaction", err);
      if (rc) pool_give(s, c);
    }
    if (rc) {
      pthread_mutex_lock(&s->group_lock);
      s->writing = false;
      pthread_cond_broadcast(&s->group_cond);
      pthread_mutex_unlock(&s->group_lock);
      return rc;
    }
    pthread_mutex_lock(&s->group_lock);
    s->batch = c;
    pthread_mutex_unlock(&s->group_lock);
  }
  rc = tx_control(&c->tx, TXC_SAVEPOINT, "starting a transaction", err);
  if (rc) {
    writer_done(s, NULL);
    return rc;
  }
  c->tx.write = true;
  c->tx.in_tx = true;
  *out = &c->tx;
  return KERR_OK;
}

/* Undo the running writer's savepoint.  If that fails while the batch is
 * still open, its changes would be committed with the others': poison the
 * batch instead, so that no member's commit succeeds. */
static void member_undo(store_tx *tx) {
  sq_store *s = tx->owner;
  if (sqlite3_get_autocommit(tx->db)) return; /* the whole batch is gone already */
  if (tx_control(tx, TXC_ROLLBACK_TO, "rolling back", NULL) == KERR_OK &&
      tx_control(tx, TXC_RELEASE, "rolling back", NULL) == KERR_OK)
    return;
  pthread_mutex_lock(&s->group_lock);
  s->poisoned = true;
  pthread_mutex_unlock(&s->group_lock);
}

static kerr_code sq_begin(store *base, bool write, store_tx **out, kerr *err) {
  sq_store *s = (sq_store *)base;
  *out = NULL;
  return write ? write_begin(s, out, err) : read_begin(s, out, err);
}

static kerr_code sq_commit(store_tx *tx, kerr *err) {
  sq_store *s = tx->owner;
  group_member m = {NULL, false, {KERR_OK, ""}};
  kerr_code rc;

  if (!tx->write) {
    rc = tx_control(tx, TXC_COMMIT, "committing", err);
    if (rc) tx_control(tx, TXC_ROLLBACK, "rolling back", NULL);
    pool_give(s, (sq_conn *)tx);
    return rc;
  }
  tx->in_tx = false; /* the next writer may take tx over inside writer_done */
  rc = tx_control(tx, TXC_RELEASE, "committing", err);
  if (rc) {
    member_undo(tx);
    writer_done(s, NULL);
    return rc;
  }
  writer_done(s, &m);
  if (m.outcome.code && err) *err = m.outcome;
  return m.outcome.code;
}

static void sq_rollback(store_tx *tx) {
  if (!tx) return;
  if (!tx->write) {
    if (tx->in_tx) tx_control(tx, TXC_ROLLBACK, "rolling back", NULL);
    pool_give(tx->owner, (sq_conn *)tx);
    return;
  }
  tx->in_tx = false;
  member_undo(tx);
  writer_done(tx->owner, NULL);
}

static bool sq_reads_uncommitted(store_tx *tx) { return tx->write; }

void store_sqlite_stats_get(store *base, store_sqlite_stats *out) {
  sq_store *s = (sq_store *)base;
  pthread_mutex_lock(&s->group_lock);
  out->commits = s->commits;
  out->writes = s->writes;
  out->waiting = s->waiting;
  pthread_mutex_unlock(&s->group_lock);
}

/* ------------------------------------------------------------------ keys */

static kerr_code sq_key_insert(store_tx *tx, const store_key *k, const char *policy, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_KEY_INSERT, err);
  kerr_code rc = KERR_OK;
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, k->key_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, k->account_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, k->region, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 4, k->created_ms);
  sqlite3_bind_text(st, 5, k->description ? k->description : "", -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 6, k->key_state, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 7, k->key_usage, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 8, k->key_spec, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 9, k->origin, -1, SQLITE_STATIC);
  bind_text_or_null(st, 10, k->custom_key_store_id);
  bind_text_or_null(st, 11, k->xks_key_id);
  sqlite3_bind_int64(st, 12, k->policy_version ? k->policy_version : 1);
  bind_int64_or_null(st, 13, k->deletion_date_ms);
  bind_int64_or_null(st, 14, k->pending_window_days);
  sqlite3_bind_int(st, 15, k->rotation_enabled ? 1 : 0);
  bind_int64_or_null(st, 16, k->rotation_period_days);
  bind_int64_or_null(st, 17, k->next_rotation_ms);
  sqlite3_bind_int(st, 18, k->on_demand_rotations);
  bind_text_or_null(st, 19, k->current_material_id[0] ? k->current_material_id : NULL);
  sqlite3_bind_text(st, 20, policy, -1, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_DONE) {
    if (sqlite3_extended_errcode(tx->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
      rc = kerr_set(err, KERR_ALREADY_EXISTS, "Key %s already exists.", k->key_id);
    else
      rc = db_error(tx->db, "inserting a key", err);
  }
  stmt_done(st);
  return rc;
}

static kerr_code read_key_row(sqlite3_stmt *st, store_key *k, kerr *err) {
  kerr_code rc;
  memset(k, 0, sizeof *k);
  copy_col(st, 0, k->key_id, sizeof k->key_id);
  copy_col(st, 1, k->account_id, sizeof k->account_id);
  copy_col(st, 2, k->region, sizeof k->region);
  k->created_ms = sqlite3_column_int64(st, 3);
  rc = dup_col(st, 4, false, &k->description, err);
  if (rc) return rc;
  copy_col(st, 5, k->key_state, sizeof k->key_state);
  copy_col(st, 6, k->key_usage, sizeof k->key_usage);
  copy_col(st, 7, k->key_spec, sizeof k->key_spec);
  copy_col(st, 8, k->origin, sizeof k->origin);
  rc = dup_col(st, 9, true, &k->custom_key_store_id, err);
  if (rc) return rc;
  rc = dup_col(st, 10, true, &k->xks_key_id, err);
  if (rc) return rc;
  k->policy_version = sqlite3_column_int64(st, 11);
  k->deletion_date_ms = sqlite3_column_int64(st, 12);
  k->pending_window_days = sqlite3_column_int(st, 13);
  k->rotation_enabled = sqlite3_column_int(st, 14) != 0;
  k->rotation_period_days = sqlite3_column_int(st, 15);
  k->next_rotation_ms = sqlite3_column_int64(st, 16);
  k->on_demand_rotations = sqlite3_column_int(st, 17);
  copy_col(st, 18, k->current_material_id, sizeof k->current_material_id);
  return KERR_OK;
}

static kerr_code sq_key_get(store_tx *tx, const char *key_id, store_key *out, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_KEY_GET, err);
  kerr_code rc = KERR_OK;
  int step;
  memset(out, 0, sizeof *out);
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
  step = sqlite3_step(st);
  if (step == SQLITE_ROW) {
    rc = read_key_row(st, out, err);
    if (rc) store_key_clear(out);
  } else if (step == SQLITE_DONE) {
    rc = kerr_set(err, KERR_NOT_FOUND, "Key '%s' does not exist", key_id);
  } else {
    rc = db_error(tx->db, "reading a key", err);
  }
  stmt_done(st);
  return rc;
}

static kerr_code sq_key_update(store_tx *tx, const store_key *k, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_KEY_UPDATE, err);
  kerr_code rc = KERR_OK;
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, k->key_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, k->description ? k->description : "", -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, k->key_state, -1, SQLITE_STATIC);
  bind_int64_or_null(st, 4, k->deletion_date_ms);
  bind_int64_or_null(st, 5, k->pending_window_days);
  sqlite3_bind_int(st, 6, k->rotation_enabled ? 1 : 0);
  bind_int64_or_null(st, 7, k->rotation_period_days);
  bind_int64_or_null(st, 8, k->next_rotation_ms);
  sqlite3_bind_int(st, 9, k->on_demand_rotations);
  bind_text_or_null(st, 10, k->current_material_id[0] ? k->current_material_id : NULL);
  bind_text_or_null(st, 11, k->custom_key_store_id);
  bind_text_or_null(st, 12, k->xks_key_id);
  if (sqlite3_step(st) != SQLITE_DONE)
    rc = db_error(tx->db, "updating a key", err);
  else if (sqlite3_changes(tx->db) == 0)
    rc = kerr_set(err, KERR_NOT_FOUND, "Key '%s' does not exist", k->key_id);
  stmt_done(st);
  return rc;
}

static kerr_code sq_key_set_policy(store_tx *tx, const char *key_id, const char *policy,
                                   int64_t *new_version, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_KEY_SET_POLICY, err);
  kerr_code rc = KERR_OK;
  int step;
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, policy, -1, SQLITE_STATIC);
  step = sqlite3_step(st);
  if (step == SQLITE_ROW) {
    if (new_version) *new_version = sqlite3_column_int64(st, 0);
  } else if (step == SQLITE_DONE) {
    rc = kerr_set(err, KERR_NOT_FOUND, "Key '%s' does not exist", key_id);
  } else {
    rc = db_error(tx->db, "updating a key policy", err);
  }
  stmt_done(st);
  return rc;
}

static kerr_code sq_key_get_policy(store_tx *tx, const char *key_id, char **policy,
                                   int64_t *version, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_KEY_GET_POLICY, err);
  kerr_code rc = KERR_OK;
  int step;
  *policy = NULL;
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
  step = sqlite3_step(st);
  if (step == SQLITE_ROW) {
    rc = dup_col(st, 0, false, policy, err);
    if (version) *version = sqlite3_column_int64(st, 1);
  } else if (step == SQLITE_DONE) {
    rc = kerr_set(err, KERR_NOT_FOUND, "Key '%s' does not exist", key_id);
  } else {
    rc = db_error(tx->db, "reading a key policy", err);
  }
  stmt_done(st);
  return rc;
}

static kerr_code sq_key_delete(store_tx *tx, const char *key_id, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_KEY_DELETE, err);
  kerr_code rc = KERR_OK;
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_DONE) rc = db_error(tx->db, "deleting a key", err);
  stmt_done(st);
  return rc;
}

/* Collect the first column of every row as key ids. */
static kerr_code collect_ids(store_tx *tx, sqlite3_stmt *st, size_t limit,
                             char (**ids)[UUID_STR_LEN], size_t *n, kerr *err) {
  kerr_code rc = KERR_OK;
  char(*arr)[UUID_STR_LEN] = calloc(limit ? limit : 1, UUID_STR_LEN);
  size_t count = 0;
  int step;
  *ids = NULL;
  *n = 0;
  if (!arr) {
    stmt_done(st);
    return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
  while ((step = sqlite3_step(st)) == SQLITE_ROW && count < limit)
    copy_col(st, 0, arr[count++], UUID_STR_LEN);
  if (step != SQLITE_ROW && step != SQLITE_DONE) {
    rc = db_error(tx->db, "listing keys", err);
    free(arr);
  } else {
    *ids = arr;
    *n = count;
  }
  stmt_done(st);
  return rc;
}

static kerr_code sq_key_list(store_tx *tx, const char *account_id, const char *region,
                             const char *after, size_t limit, char (**ids)[UUID_STR_LEN],
                             size_t *n, kerr *err) {
  sqlite3_stmt *st = stmt(tx, after ? ST_KEY_LIST_AFTER : ST_KEY_LIST, err);
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, account_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, region, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
  if (after) sqlite3_bind_text(st, 4, after, -1, SQLITE_STATIC);
  return collect_ids(tx, st, limit, ids, n, err);
}

static kerr_code sq_keys_due(store_tx *tx, int64_t now_ms, size_t limit,
                             char (**ids)[UUID_STR_LEN], size_t *n, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_KEYS_DUE, err);
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_int64(st, 1, now_ms);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
  return collect_ids(tx, st, limit, ids, n, err);
}

/* ------------------------------------------------------------- materials */

static kerr_code sq_material_insert(store_tx *tx, const store_material *m, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_MAT_INSERT, err);
  kerr_code rc = KERR_OK;
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, m->material_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, m->key_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, m->seq);
  sqlite3_bind_blob(st, 4, m->wrapped, (int)m->wrapped_len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 5, m->created_ms);
  sqlite3_bind_text(st, 6, m->rotation_type, -1, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_DONE) rc = db_error(tx->db, "storing key material", err);
  stmt_done(st);
  return rc;
}

static kerr_code read_material_row(sqlite3_stmt *st, store_material *m, kerr *err) {
  const void *blob = sqlite3_column_blob(st, 3);
  int len = sqlite3_column_bytes(st, 3);
  memset(m, 0, sizeof *m);
  copy_col(st, 0, m->material_id, sizeof m->material_id);
  copy_col(st, 1, m->key_id, sizeof m->key_id);
  m->seq = sqlite3_column_int64(st, 2);
  m->wrapped = malloc(len > 0 ? (size_t)len : 1);
  if (!m->wrapped) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  if (len > 0) memcpy(m->wrapped, blob, (size_t)len);
  m->wrapped_len = len > 0 ? (size_t)len : 0;
  m->created_ms = sqlite3_column_int64(st, 4);
  copy_col(st, 5, m->rotation_type, sizeof m->rotation_type);
  return KERR_OK;
}

static kerr_code sq_material_get(store_tx *tx, const char *material_id, store_material *out,
                                 kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_MAT_GET, err);
  kerr_code rc = KERR_OK;
  int step;
  memset(out, 0, sizeof *out);
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, material_id, -1, SQLITE_STATIC);
  step = sqlite3_step(st);
  if (step == SQLITE_ROW)
    rc = read_material_row(st, out, err);
  else if (step == SQLITE_DONE)
    rc = kerr_set(err, KERR_NOT_FOUND, "Key material not found.");
  else
    rc = db_error(tx->db, "reading key material", err);
  stmt_done(st);
  return rc;
}

static kerr_code row_material(sqlite3_stmt *st, void *elem, kerr *err) {
  return read_material_row(st, elem, err);
}

static void release_materials(void *list, size_t n) { store_material_list_free(list, n); }

static kerr_code sq_material_list(store_tx *tx, const char *key_id, store_material **out,
                                  size_t *n, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_MAT_LIST, err);
  kerr_code rc = KERR_OK;
  *out = NULL;
  *n = 0;
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
  void *list = NULL;
  rc = collect_rows(tx, st, sizeof(store_material), row_material, release_materials,
                      "listing key materials", &list, n, err);
  stmt_done(st);
  *out = list;
  return rc;
}

/* --------------------------------------------------------------- aliases */

static void bind_alias(sqlite3_stmt *st, const store_alias *a) {
  sqlite3_bind_text(st, 1, a->account_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, a->region, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, a->alias_name, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, a->key_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 5, a->created_ms);
  sqlite3_bind_int64(st, 6, a->updated_ms);
}

static void read_alias_row(sqlite3_stmt *st, store_alias *a) {
  memset(a, 0, sizeof *a);
  copy_col(st, 0, a->account_id, sizeof a->account_id);
  copy_col(st, 1, a->region, sizeof a->region);
  copy_col(st, 2, a->alias_name, sizeof a->alias_name);
  copy_col(st, 3, a->key_id, sizeof a->key_id);
  a->created_ms = sqlite3_column_int64(st, 4);
  a->updated_ms = sqlite3_column_int64(st, 5);
}

static kerr_code sq_alias_insert(store_tx *tx, const store_alias *a, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_ALIAS_INSERT, err);
  kerr_code rc = KERR_OK;
  if (!st) return KERR_INTERNAL;
  bind_alias(st, a);
  if (sqlite3_step(st) != SQLITE_DONE) {
    if (sqlite3_extended_errcode(tx->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
      rc = kerr_set(err, KERR_ALREADY_EXISTS, "Alias %s already exists.", a->alias_name);
    else
      rc = db_error(tx->db, "creating an alias", err);
  }
  stmt_done(st);
  return rc;
}

static kerr_code sq_alias_get(store_tx *tx, const char *account_id, const char *region,
                              const char *alias_name, store_alias *out, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_ALIAS_GET, err);
  kerr_code rc = KERR_OK;
  int step;
  memset(out, 0, sizeof *out);
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, account_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, region, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, alias_name, -1, SQLITE_STATIC);
  step = sqlite3_step(st);
  if (step == SQLITE_ROW)
    read_alias_row(st, out);
  else if (step == SQLITE_DONE)
    rc = kerr_set(err, KERR_NOT_FOUND, "Alias %s is not found.", alias_name);
  else
    rc = db_error(tx->db, "reading an alias", err);
  stmt_done(st);
  return rc;
}

static kerr_code sq_alias_update(store_tx *tx, const store_alias *a, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_ALIAS_UPDATE, err);
  kerr_code rc = KERR_OK;
  if (!st) return KERR_INTERNAL;
  bind_alias(st, a);
  if (sqlite3_step(st) != SQLITE_DONE)
    rc = db_error(tx->db, "updating an alias", err);
  else if (sqlite3_changes(tx->db) == 0)
    rc = kerr_set(err, KERR_NOT_FOUND, "Alias %s is not found.", a->alias_name);
  stmt_done(st);
  return rc;
}

static kerr_code sq_alias_delete(store_tx *tx, const char *account_id, const char *region,
                                 const char *alias_name, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_ALIAS_DELETE, err);
  kerr_code rc = KERR_OK;
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, account_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, region, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, alias_name, -1, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_DONE)
    rc = db_error(tx->db, "deleting an alias", err);
  else if (sqlite3_changes(tx->db) == 0)
    rc = kerr_set(err, KERR_NOT_FOUND, "Alias %s is not found.", alias_name);
  stmt_done(st);
  return rc;
}

static kerr_code sq_alias_list(store_tx *tx, const char *account_id, const char *region,
                               const char *key_id, const char *after, size_t limit,
                               store_alias **out, size_t *n, kerr *err) {
  sqlite3_stmt *st = stmt(tx, key_id ? ST_ALIAS_LIST_BY_KEY : ST_ALIAS_LIST, err);
  kerr_code rc = KERR_OK;
  store_alias *arr = NULL;
  size_t count = 0;
  int step;
  *out = NULL;
  *n = 0;
  if (!st) return KERR_INTERNAL;
  arr = calloc(limit ? limit : 1, sizeof *arr);
  if (!arr) {
    stmt_done(st);
    return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
  sqlite3_bind_text(st, 1, account_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, region, -1, SQLITE_STATIC);
  bind_text_or_null(st, 3, key_id);
  sqlite3_bind_text(st, 4, after ? after : "", -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 5, (sqlite3_int64)limit);
  while ((step = sqlite3_step(st)) == SQLITE_ROW && count < limit) read_alias_row(st, &arr[count++]);
  if (step != SQLITE_ROW && step != SQLITE_DONE) {
    rc = db_error(tx->db, "listing aliases", err);
    free(arr);
  } else {
    *out = arr;
    *n = count;
  }
  stmt_done(st);
  return rc;
}

/* ------------------------------------------------------------------ tags */

static kerr_code sq_tag_put(store_tx *tx, const char *key_id, const char *tag_key,
                            const char *tag_value, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_TAG_PUT, err);
  kerr_code rc = KERR_OK;
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, tag_key, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, tag_value, -1, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_DONE) rc = db_error(tx->db, "storing a tag", err);
  stmt_done(st);
  return rc;
}

static kerr_code sq_tag_delete(store_tx *tx, const char *key_id, const char *tag_key,
                               kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_TAG_DELETE, err);
  kerr_code rc = KERR_OK;
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, tag_key, -1, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_DONE) rc = db_error(tx->db, "deleting a tag", err);
  stmt_done(st);
  return rc;
}

static kerr_code row_tag(sqlite3_stmt *st, void *elem, kerr *err) {
  store_tag *t = elem;
  kerr_code rc = dup_col(st, 0, false, &t->key, err);
  return rc ? rc : dup_col(st, 1, false, &t->value, err);
}

static void release_tags(void *list, size_t n) { store_tag_list_free(list, n); }

static kerr_code sq_tag_list(store_tx *tx, const char *key_id, store_tag **out, size_t *n,
                             kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_TAG_LIST, err);
  kerr_code rc = KERR_OK;
  *out = NULL;
  *n = 0;
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
  void *list = NULL;
  rc = collect_rows(tx, st, sizeof(store_tag), row_tag, release_tags, "listing tags", &list,
                    n, err);
  stmt_done(st);
  *out = list;
  return rc;
}

/* ---------------------------------------------------- custom key stores */

static void bind_blob_or_null(sqlite3_stmt *st, int i, const uint8_t *v, size_t len) {
  if (v && len)
    sqlite3_bind_blob(st, i, v, (int)len, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, i);
}

static void bind_cks(sqlite3_stmt *st, const store_cks *c) {
  sqlite3_bind_text(st, 1, c->cks_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, c->account_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, c->region, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, c->name, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, c->type, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 6, c->cluster_id, -1, SQLITE_STATIC);
  bind_text_or_null(st, 7, c->trust_anchor_pem);
  bind_blob_or_null(st, 8, c->password_wrapped, c->password_wrapped_len);
  bind_blob_or_null(st, 9, c->pending_password_wrapped, c->pending_password_wrapped_len);
  sqlite3_bind_text(st, 10, c->connection_state, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 11, c->connection_error, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 12, c->created_ms);
  sqlite3_bind_int64(st, 13, c->state_changed_ms);
  sqlite3_bind_text(st, 14, c->cluster_lineage, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 15, c->xks_uri_endpoint, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 16, c->xks_uri_path, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 17, c->xks_connectivity, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 18, c->xks_vpc_service_name, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 19, c->xks_vpc_service_owner, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 20, c->xks_access_key_id, -1, SQLITE_STATIC);
  bind_blob_or_null(st, 21, c->xks_secret_wrapped, c->xks_secret_wrapped_len);
}

static kerr_code dup_blob_col(sqlite3_stmt *st, int i, uint8_t **out, size_t *len, kerr *err) {
  const void *b = sqlite3_column_blob(st, i);
  int n = sqlite3_column_bytes(st, i);
  *out = NULL;
  *len = 0;
  if (!b || n <= 0) return KERR_OK;
  *out = malloc((size_t)n);
  if (!*out) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  memcpy(*out, b, (size_t)n);
  *len = (size_t)n;
  return KERR_OK;
}

static kerr_code read_cks_row(sqlite3_stmt *st, store_cks *c, kerr *err) {
  kerr_code rc;
  memset(c, 0, sizeof *c);
  copy_col(st, 0, c->cks_id, sizeof c->cks_id);
  copy_col(st, 1, c->account_id, sizeof c->account_id);
  copy_col(st, 2, c->region, sizeof c->region);
  copy_col(st, 3, c->name, sizeof c->name);
  copy_col(st, 4, c->type, sizeof c->type);
  copy_col(st, 5, c->cluster_id, sizeof c->cluster_id);
  if ((rc = dup_col(st, 6, true, &c->trust_anchor_pem, err))) goto fail;
  if ((rc = dup_blob_col(st, 7, &c->password_wrapped, &c->password_wrapped_len, err))) goto fail;
  if ((rc = dup_blob_col(st, 8, &c->pending_password_wrapped, &c->pending_password_wrapped_len,
                         err)))
    goto fail;
  copy_col(st, 9, c->connection_state, sizeof c->connection_state);
  copy_col(st, 10, c->connection_error, sizeof c->connection_error);
  c->created_ms = sqlite3_column_int64(st, 11);
  c->state_changed_ms = sqlite3_column_int64(st, 12);
  copy_col(st, 13, c->cluster_lineage, sizeof c->cluster_lineage);
  copy_col(st, 14, c->xks_uri_endpoint, sizeof c->xks_uri_endpoint);
  copy_col(st, 15, c->xks_uri_path, sizeof c->xks_uri_path);
  copy_col(st, 16, c->xks_connectivity, sizeof c->xks_connectivity);
  copy_col(st, 17, c->xks_vpc_service_name, sizeof c->xks_vpc_service_name);
  copy_col(st, 18, c->xks_vpc_service_owner, sizeof c->xks_vpc_service_owner);
  copy_col(st, 19, c->xks_access_key_id, sizeof c->xks_access_key_id);
  if ((rc = dup_blob_col(st, 20, &c->xks_secret_wrapped, &c->xks_secret_wrapped_len, err)))
    goto fail;
  return KERR_OK;
fail:
  store_cks_clear(c);
  return rc;
}

static kerr_code cks_write(store_tx *tx, enum stmt_id id, const store_cks *c, kerr *err) {
  sqlite3_stmt *st = stmt(tx, id, err);
  kerr_code rc = KERR_OK;
  if (!st) return KERR_INTERNAL;
  bind_cks(st, c);
  if (sqlite3_step(st) != SQLITE_DONE) {
    if (sqlite3_extended_errcode(tx->db) == SQLITE_CONSTRAINT_UNIQUE)
      rc = kerr_set(err, KERR_ALREADY_EXISTS, "Custom key store name %s is in use.", c->name);
    else if (sqlite3_extended_errcode(tx->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
      rc = kerr_set(err, KERR_ALREADY_EXISTS, "Custom key store %s already exists.", c->cks_id);
    else
      rc = db_error(tx->db, "writing a custom key store", err);
  } else if (id == ST_CKS_UPDATE && sqlite3_changes(tx->db) == 0) {
    rc = kerr_set(err, KERR_NOT_FOUND, "Custom key store %s not found.", c->cks_id);
  }
  stmt_done(st);
  return rc;
}

static kerr_code sq_cks_insert(store_tx *tx, const store_cks *c, kerr *err) {
  return cks_write(tx, ST_CKS_INSERT, c, err);
}

static kerr_code sq_cks_update(store_tx *tx, const store_cks *c, kerr *err) {
  return cks_write(tx, ST_CKS_UPDATE, c, err);
}

static kerr_code sq_cks_get(store_tx *tx, const char *cks_id, store_cks *out, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_CKS_GET, err);
  kerr_code rc = KERR_OK;
  int step;
  memset(out, 0, sizeof *out);
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, cks_id, -1, SQLITE_STATIC);
  step = sqlite3_step(st);
  if (step == SQLITE_ROW)
    rc = read_cks_row(st, out, err);
  else if (step == SQLITE_DONE)
    rc = kerr_set(err, KERR_NOT_FOUND, "Custom key store not found.");
  else
    rc = db_error(tx->db, "reading a custom key store", err);
  stmt_done(st);
  return rc;
}

static kerr_code sq_cks_state(store_tx *tx, const char *cks_id, char *state, size_t state_size,
                              char *cluster_id, size_t cluster_size, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_CKS_STATE, err);
  kerr_code rc = KERR_OK;
  int step;
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, cks_id, -1, SQLITE_STATIC);
  step = sqlite3_step(st);
  if (step == SQLITE_ROW) {
    copy_col(st, 0, state, state_size);
    copy_col(st, 1, cluster_id, cluster_size);
  } else if (step == SQLITE_DONE) {
    rc = kerr_set(err, KERR_NOT_FOUND, "Custom key store not found.");
  } else {
    rc = db_error(tx->db, "reading a custom key store's state", err);
  }
  stmt_done(st);
  return rc;
}

static kerr_code sq_cks_delete(store_tx *tx, const char *cks_id, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_CKS_DELETE, err);
  kerr_code rc = KERR_OK;
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, cks_id, -1, SQLITE_STATIC);
  if (sqlite3_step(st) != SQLITE_DONE)
    rc = db_error(tx->db, "deleting a custom key store", err);
  else if (sqlite3_changes(tx->db) == 0)
    rc = kerr_set(err, KERR_NOT_FOUND, "Custom key store not found.");
  stmt_done(st);
  return rc;
}

static kerr_code sq_cks_list(store_tx *tx, const char *account_id, const char *region,
                             const char *after, size_t limit, store_cks **out, size_t *n,
                             kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_CKS_LIST, err);
  kerr_code rc = KERR_OK;
  store_cks *arr = NULL;
  size_t count = 0;
  int step = SQLITE_DONE;
  *out = NULL;
  *n = 0;
  if (!st) return KERR_INTERNAL;
  arr = calloc(limit ? limit : 1, sizeof *arr);
  if (!arr) {
    stmt_done(st);
    return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
  bind_text_or_null(st, 1, account_id);
  bind_text_or_null(st, 2, region);
  bind_text_or_null(st, 3, after);
  sqlite3_bind_int64(st, 4, (sqlite3_int64)limit);
  while (count < limit && (step = sqlite3_step(st)) == SQLITE_ROW) {
    rc = read_cks_row(st, &arr[count], err);
    if (rc) goto out;
    count++;
  }
  if (count < limit && step != SQLITE_DONE) {
    rc = db_error(tx->db, "listing custom key stores", err);
    goto out;
  }
  *out = arr;
  *n = count;
  arr = NULL;
  count = 0;
out:
  store_cks_list_free(arr, count);
  stmt_done(st);
  return rc;
}

static kerr_code sq_cks_key_count(store_tx *tx, const char *cks_id, int64_t *count, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_CKS_KEY_COUNT, err);
  kerr_code rc = KERR_OK;
  *count = 0;
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, cks_id, -1, SQLITE_STATIC);
  if (sqlite3_step(st) == SQLITE_ROW)
    *count = sqlite3_column_int64(st, 0);
  else
    rc = db_error(tx->db, "counting the keys of a custom key store", err);
  stmt_done(st);
  return rc;
}

/* One row of key_counts (migration 6), kept by triggers. */
static kerr_code sq_key_count(store_tx *tx, const char *account_id, const char *region,
                              int64_t *count, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_KEY_COUNT, err);
  kerr_code rc = KERR_OK;
  *count = 0;
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, account_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, region, -1, SQLITE_STATIC);
  if (sqlite3_step(st) == SQLITE_ROW)
    *count = sqlite3_column_int64(st, 0);
  else
    rc = db_error(tx->db, "counting keys", err);
  stmt_done(st);
  return rc;
}

static kerr_code sq_cks_key_by_xks_id(store_tx *tx, const char *cks_id, const char *xks_key_id,
                                      char *key_id_out, bool *found, kerr *err) {
  sqlite3_stmt *st = stmt(tx, ST_CKS_KEY_BY_XKS_ID, err);
  kerr_code rc = KERR_OK;
  int r;
  key_id_out[0] = '\0';
  *found = false;
  if (!st) return KERR_INTERNAL;
  sqlite3_bind_text(st, 1, cks_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, xks_key_id, -1, SQLITE_STATIC);
  r = sqlite3_step(st);
  if (r == SQLITE_ROW) {
    copy_col(st, 0, key_id_out, UUID_STR_LEN);
    *found = true;
  } else if (r != SQLITE_DONE) {
    rc = db_error(tx->db, "looking up a key by XksKeyId", err);
  }
  stmt_done(st);
  return rc;
}

/* ------------------------------------------------------------ HSM clusters
 * The cluster side's tables (store_hsm_ops).  These statements run far less
 * often than key reads, so they are prepared per call instead of cached. */

static kerr_code hq_prepare(store_tx *tx, const char *sql, sqlite3_stmt **st, kerr *err) {
  if (sqlite3_prepare_v2(tx->db, sql, -1, st, NULL) != SQLITE_OK) {
    *st = NULL;
    return db_error(tx->db, "preparing a statement", err);
  }
  return KERR_OK;
}

/* Run a statement that returns no rows, then finalize it. */
static kerr_code hq_exec(store_tx *tx, sqlite3_stmt *st, const char *what, kerr *err) {
  int r = sqlite3_step(st);
  kerr_code rc = KERR_OK;
  if (r == SQLITE_CONSTRAINT)
    rc = kerr_set(err, KERR_ALREADY_EXISTS, "already exists");
  else if (r != SQLITE_DONE)
    rc = db_error(tx->db, what, err);
  sqlite3_finalize(st);
  return rc;
}


static void hq_bind_cluster(sqlite3_stmt *st, const store_hsm_cluster *c) {
  sqlite3_bind_text(st, 1, c->cluster_id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, c->account_id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 3, c->region, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 4, c->state, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 5, c->state_message, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 6, c->hsm_type, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 7, c->mode, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 8, c->network_type, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 9, c->lineage, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 10, c->source_backup_id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 11, c->simulated_failure, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 12, c->security_group, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 13, c->vpc_id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 14, c->created_ms);
  sqlite3_bind_text(st, 15, c->subnets ? c->subnets : "", -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 16, c->tags ? c->tags : "", -1, SQLITE_TRANSIENT);
  bind_text_or_null(st, 17, c->csr_pem);
  bind_text_or_null(st, 18, c->trust_anchor_pem);
  bind_text_or_null(st, 19, c->cluster_cert_pem);
}

static kerr_code hq_read_cluster(sqlite3_stmt *st, store_hsm_cluster *c, kerr *err) {
  kerr_code rc;
  memset(c, 0, sizeof *c);
  copy_col(st, 0, c->cluster_id, sizeof c->cluster_id);
  copy_col(st, 1, c->account_id, sizeof c->account_id);
  copy_col(st, 2, c->region, sizeof c->region);
  copy_col(st, 3, c->state, sizeof c->state);
  copy_col(st, 4, c->state_message, sizeof c->state_message);
  copy_col(st, 5, c->hsm_type, sizeof c->hsm_type);
  copy_col(st, 6, c->mode, sizeof c->mode);
  copy_col(st, 7, c->network_type, sizeof c->network_type);
  copy_col(st, 8, c->lineage, sizeof c->lineage);
  copy_col(st, 9, c->source_backup_id, sizeof c->source_backup_id);
  copy_col(st, 10, c->simulated_failure, sizeof c->simulated_failure);
  copy_col(st, 11, c->security_group, sizeof c->security_group);
  copy_col(st, 12, c->vpc_id, sizeof c->vpc_id);
  c->created_ms = sqlite3_column_int64(st, 13);
  if ((rc = dup_col(st, 14, false, &c->subnets, err)) || (rc = dup_col(st, 15, false, &c->tags, err)) ||
      (rc = dup_col(st, 16, true, &c->csr_pem, err)) ||
      (rc = dup_col(st, 17, true, &c->trust_anchor_pem, err)) ||
      (rc = dup_col(st, 18, true, &c->cluster_cert_pem, err))) {
    store_hsm_cluster_clear(c);
    return rc;
  }
  return KERR_OK;
}

static kerr_code hq_cluster_insert(store_tx *tx, const store_hsm_cluster *c, kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(tx,
                            "INSERT INTO hsm_clusters (" HSM_CLUSTER_COLUMNS ") VALUES "
                            "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19)",
                            &st, err);
  if (rc) return rc;
  hq_bind_cluster(st, c);
  return hq_exec(tx, st, "inserting a cluster", err);
}

static kerr_code hq_cluster_update(store_tx *tx, const store_hsm_cluster *c, kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(tx,
                            "UPDATE hsm_clusters SET state=?4, state_message=?5, hsm_type=?6, "
                            "mode=?7, network_type=?8, lineage=?9, source_backup_id=?10, "
                            "simulated_failure=?11, security_group=?12, vpc_id=?13, subnets=?15, "
                            "tags=?16, csr_pem=?17, trust_anchor_pem=?18, cluster_cert_pem=?19 "
                            "WHERE cluster_id=?1 AND account_id=?2 AND region=?3 "
                            "AND created_ms=?14",
                            &st, err);
  if (rc) return rc;
  hq_bind_cluster(st, c);
  rc = hq_exec(tx, st, "updating a cluster", err);
  if (!rc && sqlite3_changes(tx->db) == 0) rc = kerr_set(err, KERR_NOT_FOUND, "no such cluster");
  return rc;
}

static kerr_code hq_cluster_get(store_tx *tx, const char *cluster_id, store_hsm_cluster *out,
                                kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(
      tx, "SELECT " HSM_CLUSTER_COLUMNS " FROM hsm_clusters WHERE cluster_id=?1", &st, err);
  if (rc) return rc;
  sqlite3_bind_text(st, 1, cluster_id, -1, SQLITE_TRANSIENT);
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW)
    rc = hq_read_cluster(st, out, err);
  else if (r == SQLITE_DONE)
    rc = kerr_set(err, KERR_NOT_FOUND, "no such cluster");
  else
    rc = db_error(tx->db, "reading a cluster", err);
  sqlite3_finalize(st);
  return rc;
}

static kerr_code hq_row_cluster(sqlite3_stmt *st, void *elem, kerr *err) {
  return hq_read_cluster(st, elem, err);
}

static void hq_release_clusters(void *list, size_t n) { store_hsm_cluster_list_free(list, n); }

static kerr_code hq_cluster_list(store_tx *tx, const char *account_id, const char *region,
                                 store_hsm_cluster **out, size_t *n, kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(tx,
                            "SELECT " HSM_CLUSTER_COLUMNS " FROM hsm_clusters WHERE "
                            "(?1 IS NULL OR (account_id=?1 AND region=?2)) ORDER BY cluster_id",
                            &st, err);
  *out = NULL;
  *n = 0;
  if (rc) return rc;
  bind_text_or_null(st, 1, account_id);
  bind_text_or_null(st, 2, region);
  void *list = NULL;
  rc = collect_rows(tx, st, sizeof(store_hsm_cluster), hq_row_cluster, hq_release_clusters,
                    "listing clusters", &list, n, err);
  sqlite3_finalize(st);
  *out = list;
  return rc;
}


static void hq_bind_hsm(sqlite3_stmt *st, const store_hsm *h) {
  sqlite3_bind_text(st, 1, h->hsm_id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, h->cluster_id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 3, h->availability_zone, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 4, h->subnet_id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 5, h->eni_id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 6, h->eni_ip, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 7, h->state, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 8, h->state_message, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 9, h->created_ms);
  sqlite3_bind_int(st, 10, h->pool_index);
  sqlite3_bind_text(st, 11, h->token_label, -1, SQLITE_TRANSIENT);
}

static kerr_code hq_hsm_insert(store_tx *tx, const store_hsm *h, kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(tx,
                            "INSERT INTO hsm_hsms (" HSM_HSM_COLUMNS ") VALUES "
                            "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)",
                            &st, err);
  if (rc) return rc;
  hq_bind_hsm(st, h);
  return hq_exec(tx, st, "inserting an HSM", err);
}

static kerr_code hq_hsm_update(store_tx *tx, const store_hsm *h, kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(tx,
                            "UPDATE hsm_hsms SET availability_zone=?3, subnet_id=?4, eni_id=?5, "
                            "eni_ip=?6, state=?7, state_message=?8, pool_index=?10, "
                            "token_label=?11 WHERE hsm_id=?1 AND cluster_id=?2 AND created_ms=?9",
                            &st, err);
  if (rc) return rc;
  hq_bind_hsm(st, h);
  rc = hq_exec(tx, st, "updating an HSM", err);
  if (!rc && sqlite3_changes(tx->db) == 0) rc = kerr_set(err, KERR_NOT_FOUND, "no such HSM");
  return rc;
}

static kerr_code hq_row_hsm(sqlite3_stmt *st, void *elem, kerr *err) {
  store_hsm *h = elem;
  (void)err;
  copy_col(st, 0, h->hsm_id, sizeof h->hsm_id);
  copy_col(st, 1, h->cluster_id, sizeof h->cluster_id);
  copy_col(st, 2, h->availability_zone, sizeof h->availability_zone);
  copy_col(st, 3, h->subnet_id, sizeof h->subnet_id);
  copy_col(st, 4, h->eni_id, sizeof h->eni_id);
  copy_col(st, 5, h->eni_ip, sizeof h->eni_ip);
  copy_col(st, 6, h->state, sizeof h->state);
  copy_col(st, 7, h->state_message, sizeof h->state_message);
  h->created_ms = sqlite3_column_int64(st, 8);
  h->pool_index = sqlite3_column_int(st, 9);
  copy_col(st, 10, h->token_label, sizeof h->token_label);
  return KERR_OK;
}

static kerr_code hq_hsm_list(store_tx *tx, const char *cluster_id, store_hsm **out, size_t *n,
                             kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(tx,
                            "SELECT " HSM_HSM_COLUMNS " FROM hsm_hsms WHERE "
                            "(?1 IS NULL OR cluster_id=?1) ORDER BY created_ms, hsm_id",
                            &st, err);
  *out = NULL;
  *n = 0;
  if (rc) return rc;
  bind_text_or_null(st, 1, cluster_id);
  void *list = NULL;
  rc = collect_rows(tx, st, sizeof(store_hsm), hq_row_hsm, NULL,
                    "listing HSMs", &list, n, err);
  sqlite3_finalize(st);
  *out = list;
  return rc;
}

static void hq_read_user(sqlite3_stmt *st, store_hsm_user *u) {
  memset(u, 0, sizeof *u);
  copy_col(st, 0, u->cluster_id, sizeof u->cluster_id);
  copy_col(st, 1, u->username, sizeof u->username);
  copy_col(st, 2, u->role, sizeof u->role);
  if (sqlite3_column_bytes(st, 3) == (int)sizeof u->salt)
    memcpy(u->salt, sqlite3_column_blob(st, 3), sizeof u->salt);
  if (sqlite3_column_bytes(st, 4) == (int)sizeof u->hash)
    memcpy(u->hash, sqlite3_column_blob(st, 4), sizeof u->hash);
  u->failed_logins = sqlite3_column_int(st, 5);
  u->locked = sqlite3_column_int(st, 6) != 0;
  u->logged_in = sqlite3_column_int(st, 7) != 0;
}


static kerr_code hq_user_put(store_tx *tx, const store_hsm_user *u, kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(tx,
                            "INSERT OR REPLACE INTO hsm_users (" HSM_USER_COLUMNS
                            ") VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
                            &st, err);
  if (rc) return rc;
  sqlite3_bind_text(st, 1, u->cluster_id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, u->username, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 3, u->role, -1, SQLITE_TRANSIENT);
  sqlite3_bind_blob(st, 4, u->salt, sizeof u->salt, SQLITE_TRANSIENT);
  sqlite3_bind_blob(st, 5, u->hash, sizeof u->hash, SQLITE_TRANSIENT);
  sqlite3_bind_int(st, 6, u->failed_logins);
  sqlite3_bind_int(st, 7, u->locked ? 1 : 0);
  sqlite3_bind_int(st, 8, u->logged_in ? 1 : 0);
  return hq_exec(tx, st, "writing a user", err);
}

static kerr_code hq_user_get(store_tx *tx, const char *cluster_id, const char *username,
                             store_hsm_user *out, kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(tx,
                            "SELECT " HSM_USER_COLUMNS
                            " FROM hsm_users WHERE cluster_id=?1 AND username=?2",
                            &st, err);
  if (rc) return rc;
  sqlite3_bind_text(st, 1, cluster_id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, username, -1, SQLITE_TRANSIENT);
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW)
    hq_read_user(st, out);
  else if (r == SQLITE_DONE)
    rc = kerr_set(err, KERR_NOT_FOUND, "no such user");
  else
    rc = db_error(tx->db, "reading a user", err);
  sqlite3_finalize(st);
  return rc;
}

static kerr_code hq_user_delete(store_tx *tx, const char *cluster_id, const char *username,
                                kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(tx, "DELETE FROM hsm_users WHERE cluster_id=?1 AND username=?2",
                            &st, err);
  if (rc) return rc;
  sqlite3_bind_text(st, 1, cluster_id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, username, -1, SQLITE_TRANSIENT);
  rc = hq_exec(tx, st, "deleting a user", err);
  if (!rc && sqlite3_changes(tx->db) == 0) rc = kerr_set(err, KERR_NOT_FOUND, "no such user");
  return rc;
}

static kerr_code hq_row_user(sqlite3_stmt *st, void *elem, kerr *err) {
  (void)err;
  hq_read_user(st, elem);
  return KERR_OK;
}

static kerr_code hq_user_list(store_tx *tx, const char *cluster_id, store_hsm_user **out,
                              size_t *n, kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(tx,
                            "SELECT " HSM_USER_COLUMNS
                            " FROM hsm_users WHERE cluster_id=?1 ORDER BY username",
                            &st, err);
  *out = NULL;
  *n = 0;
  if (rc) return rc;
  sqlite3_bind_text(st, 1, cluster_id, -1, SQLITE_TRANSIENT);
  void *list = NULL;
  rc = collect_rows(tx, st, sizeof(store_hsm_user), hq_row_user, NULL,
                    "listing users", &list, n, err);
  sqlite3_finalize(st);
  *out = list;
  return rc;
}

static kerr_code hq_blob_put(store_tx *tx, const char *lineage, const store_hsm_blob *b,
                             kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(tx,
                            "INSERT OR REPLACE INTO hsm_key_blobs (lineage, label, wrapped, "
                            "created_ms) VALUES (?1,?2,?3, CAST((julianday('now') - 2440587.5) "
                            "* 86400000 AS INTEGER))",
                            &st, err);
  if (rc) return rc;
  sqlite3_bind_text(st, 1, lineage, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, b->label, -1, SQLITE_TRANSIENT);
  sqlite3_bind_blob(st, 3, b->wrapped, (int)b->wrapped_len, SQLITE_TRANSIENT);
  return hq_exec(tx, st, "writing a key blob", err);
}

static kerr_code hq_blob_delete(store_tx *tx, const char *lineage, const char *label, kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc =
      hq_prepare(tx, "DELETE FROM hsm_key_blobs WHERE lineage=?1 AND label=?2", &st, err);
  if (rc) return rc;
  sqlite3_bind_text(st, 1, lineage, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, label, -1, SQLITE_TRANSIENT);
  return hq_exec(tx, st, "deleting a key blob", err);
}

static kerr_code hq_row_blob(sqlite3_stmt *st, void *elem, kerr *err) {
  store_hsm_blob *b = elem;
  copy_col(st, 0, b->label, sizeof b->label);
  int len = sqlite3_column_bytes(st, 1);
  if (len < 0 || (size_t)len > sizeof b->wrapped)
    return kerr_set(err, KERR_INTERNAL, "stored key blob has a bad length");
  if (len) memcpy(b->wrapped, sqlite3_column_blob(st, 1), (size_t)len);
  b->wrapped_len = (size_t)len;
  return KERR_OK;
}

static kerr_code hq_blob_list(store_tx *tx, const char *lineage, store_hsm_blob **out, size_t *n,
                              kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(tx,
                            "SELECT label, wrapped FROM hsm_key_blobs WHERE lineage=?1 "
                            "ORDER BY created_ms, label",
                            &st, err);
  *out = NULL;
  *n = 0;
  if (rc) return rc;
  sqlite3_bind_text(st, 1, lineage, -1, SQLITE_TRANSIENT);
  void *list = NULL;
  rc = collect_rows(tx, st, sizeof(store_hsm_blob), hq_row_blob, NULL,
                    "listing key blobs", &list, n, err);
  sqlite3_finalize(st);
  *out = list;
  return rc;
}


static void hq_read_backup(sqlite3_stmt *st, store_hsm_backup *b) {
  memset(b, 0, sizeof *b);
  copy_col(st, 0, b->backup_id, sizeof b->backup_id);
  copy_col(st, 1, b->cluster_id, sizeof b->cluster_id);
  copy_col(st, 2, b->account_id, sizeof b->account_id);
  copy_col(st, 3, b->region, sizeof b->region);
  copy_col(st, 4, b->lineage, sizeof b->lineage);
  copy_col(st, 5, b->state, sizeof b->state);
  copy_col(st, 6, b->hsm_type, sizeof b->hsm_type);
  copy_col(st, 7, b->mode, sizeof b->mode);
  b->created_ms = sqlite3_column_int64(st, 8);
}

static kerr_code hq_backup_insert(store_tx *tx, const store_hsm_backup *b, kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(tx,
                            "INSERT INTO hsm_backups (" HSM_BACKUP_COLUMNS
                            ") VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
                            &st, err);
  if (rc) return rc;
  sqlite3_bind_text(st, 1, b->backup_id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, b->cluster_id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 3, b->account_id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 4, b->region, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 5, b->lineage, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 6, b->state, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 7, b->hsm_type, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 8, b->mode, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 9, b->created_ms);
  return hq_exec(tx, st, "inserting a backup", err);
}

static kerr_code hq_backup_get(store_tx *tx, const char *backup_id, store_hsm_backup *out,
                               kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(
      tx, "SELECT " HSM_BACKUP_COLUMNS " FROM hsm_backups WHERE backup_id=?1", &st, err);
  if (rc) return rc;
  sqlite3_bind_text(st, 1, backup_id, -1, SQLITE_TRANSIENT);
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW)
    hq_read_backup(st, out);
  else if (r == SQLITE_DONE)
    rc = kerr_set(err, KERR_NOT_FOUND, "no such backup");
  else
    rc = db_error(tx->db, "reading a backup", err);
  sqlite3_finalize(st);
  return rc;
}

static kerr_code hq_row_backup(sqlite3_stmt *st, void *elem, kerr *err) {
  (void)err;
  hq_read_backup(st, elem);
  return KERR_OK;
}

static kerr_code hq_backup_list(store_tx *tx, const char *account_id, const char *region,
                                store_hsm_backup **out, size_t *n, kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(tx,
                            "SELECT " HSM_BACKUP_COLUMNS " FROM hsm_backups WHERE account_id=?1 "
                            "AND region=?2 ORDER BY created_ms, backup_id",
                            &st, err);
  *out = NULL;
  *n = 0;
  if (rc) return rc;
  sqlite3_bind_text(st, 1, account_id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, region, -1, SQLITE_TRANSIENT);
  void *list = NULL;
  rc = collect_rows(tx, st, sizeof(store_hsm_backup), hq_row_backup, NULL,
                    "listing backups", &list, n, err);
  sqlite3_finalize(st);
  *out = list;
  return rc;
}

static kerr_code hq_secret_put(store_tx *tx, const char *owner, const char *name,
                               const uint8_t *wrapped, size_t len, kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(
      tx, "INSERT OR REPLACE INTO hsm_secrets (owner, name, wrapped) VALUES (?1,?2,?3)", &st,
      err);
  if (rc) return rc;
  sqlite3_bind_text(st, 1, owner, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
  sqlite3_bind_blob(st, 3, wrapped, (int)len, SQLITE_TRANSIENT);
  return hq_exec(tx, st, "writing a wrapped secret", err);
}

static kerr_code hq_secret_get(store_tx *tx, const char *owner, const char *name, uint8_t **out,
                               size_t *len, kerr *err) {
  sqlite3_stmt *st;
  *out = NULL;
  *len = 0;
  kerr_code rc = hq_prepare(tx, "SELECT wrapped FROM hsm_secrets WHERE owner=?1 AND name=?2",
                            &st, err);
  if (rc) return rc;
  sqlite3_bind_text(st, 1, owner, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW) {
    int n = sqlite3_column_bytes(st, 0);
    *out = malloc(n > 0 ? (size_t)n : 1);
    if (!*out) {
      rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    } else {
      if (n > 0) memcpy(*out, sqlite3_column_blob(st, 0), (size_t)n);
      *len = (size_t)n;
    }
  } else if (r == SQLITE_DONE) {
    rc = kerr_set(err, KERR_NOT_FOUND, "no such secret");
  } else {
    rc = db_error(tx->db, "reading a wrapped secret", err);
  }
  sqlite3_finalize(st);
  return rc;
}

/* A new copy of column `col`'s blob into *out / *len. */
static kerr_code copy_blob(sqlite3_stmt *st, int col, uint8_t **out, size_t *len, kerr *err) {
  int n = sqlite3_column_bytes(st, col);
  *out = malloc(n > 0 ? (size_t)n : 1);
  if (!*out) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  if (n > 0) memcpy(*out, sqlite3_column_blob(st, col), (size_t)n);
  *len = (size_t)n;
  return KERR_OK;
}

static kerr_code sq_meta_get(store_tx *tx, const char *name, uint8_t **value, size_t *len,
                             kerr *err) {
  sqlite3_stmt *st;
  *value = NULL;
  *len = 0;
  kerr_code rc = hq_prepare(tx, "SELECT value FROM store_meta WHERE name=?1", &st, err);
  if (rc) return rc;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW)
    rc = copy_blob(st, 0, value, len, err);
  else if (r == SQLITE_DONE)
    rc = kerr_set(err, KERR_NOT_FOUND, "no such metadata");
  else
    rc = db_error(tx->db, "reading the store's metadata", err);
  sqlite3_finalize(st);
  return rc;
}

static kerr_code sq_meta_put(store_tx *tx, const char *name, const uint8_t *value, size_t len,
                             kerr *err) {
  sqlite3_stmt *st;
  kerr_code rc = hq_prepare(tx, "INSERT OR REPLACE INTO store_meta (name, value) VALUES (?1,?2)",
                            &st, err);
  if (rc) return rc;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
  sqlite3_bind_blob(st, 2, value, (int)len, SQLITE_TRANSIENT);
  return hq_exec(tx, st, "writing the store's metadata", err);
}

static kerr_code sq_wrapped_sample(store_tx *tx, store_wrapped_kind kind, store_wrapped_sample *out,
                                   kerr *err) {
  static const char *const sql[] = {
      [STORE_WRAPPED_KEY_MATERIAL] = "SELECT key_id, material_id, wrapped FROM key_materials LIMIT 1",
      [STORE_WRAPPED_CKS_PASSWORD] = "SELECT cks_id, '', password_wrapped FROM custom_key_stores "
                                     "WHERE password_wrapped IS NOT NULL LIMIT 1",
      [STORE_WRAPPED_HSM_SECRET] = "SELECT owner, name, wrapped FROM hsm_secrets LIMIT 1",
  };
  sqlite3_stmt *st;
  memset(out, 0, sizeof *out);
  if ((unsigned)kind >= sizeof sql / sizeof *sql)
    return kerr_set(err, KERR_INTERNAL, "unknown kind of wrapped value");
  kerr_code rc = hq_prepare(tx, sql[kind], &st, err);
  if (rc) return rc;
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW) {
    const char *owner = (const char *)sqlite3_column_text(st, 0);
    const char *name = (const char *)sqlite3_column_text(st, 1);
    snprintf(out->owner, sizeof out->owner, "%s", owner ? owner : "");
    snprintf(out->name, sizeof out->name, "%s", name ? name : "");
    rc = copy_blob(st, 2, &out->wrapped, &out->wrapped_len, err);
  } else if (r == SQLITE_DONE) {
    rc = kerr_set(err, KERR_NOT_FOUND, "no wrapped value of that kind");
  } else {
    rc = db_error(tx->db, "reading a wrapped value", err);
  }
  sqlite3_finalize(st);
  return rc;
}

static const store_hsm_ops sqlite_hsm_ops = {
    .cluster_insert = hq_cluster_insert,
    .cluster_get = hq_cluster_get,
    .cluster_update = hq_cluster_update,
    .cluster_list = hq_cluster_list,
    .hsm_insert = hq_hsm_insert,
    .hsm_update = hq_hsm_update,
    .hsm_list = hq_hsm_list,
    .user_put = hq_user_put,
    .user_get = hq_user_get,
    .user_delete = hq_user_delete,
    .user_list = hq_user_list,
    .blob_put = hq_blob_put,
    .blob_delete = hq_blob_delete,
    .blob_list = hq_blob_list,
    .backup_insert = hq_backup_insert,
    .backup_get = hq_backup_get,
    .backup_list = hq_backup_list,
    .secret_put = hq_secret_put,
    .secret_get = hq_secret_get,
};

/* ------------------------------------------------------------- lifecycle */

static kerr_code read_version(sqlite3 *db, int *version, kerr *err) {
  sqlite3_stmt *st = NULL;
  kerr_code rc = KERR_OK;
  *version = 0;
  if (sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version), 0) FROM schema_version", -1, &st,
                         NULL) != SQLITE_OK)
    return db_error(db, "reading the schema version", err);
  if (sqlite3_step(st) == SQLITE_ROW)
    *version = sqlite3_column_int(st, 0);
  else
    rc = db_error(db, "reading the schema version", err);
  sqlite3_finalize(st);
  return rc;
}

static kerr_code sq_schema_version(store *base, int *version, kerr *err) {
  store_tx *tx = NULL;
  kerr_code rc = sq_begin(base, false, &tx, err);
  if (rc) return rc;
  rc = read_version(tx->db, version, err);
  sq_rollback(tx);
  return rc;
}

/* Apply each pending migration in its own IMMEDIATE transaction, so two
 * processes opening the same new database cannot both apply one. */
static kerr_code migrate(sqlite3 *db, kerr *err) {
  kerr_code rc = exec_sql(db,
                          "CREATE TABLE IF NOT EXISTS schema_version ("
                          " version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
                          "creating the schema_version table", err);
  if (rc) return rc;
  for (;;) {
    int version = 0;
    char sql[160];
    rc = exec_sql(db, "BEGIN IMMEDIATE", "starting a migration", err);
    if (rc) return rc;
    rc = read_version(db, &version, err);
    if (rc) goto fail;
    if (version > N_MIGRATIONS) {
      rc = kerr_set(err, KERR_INTERNAL,
                    "The database schema (version %d) is newer than this program (%d).", version,
                    N_MIGRATIONS);
      goto fail;
    }
    if (version == N_MIGRATIONS) return exec_sql(db, "COMMIT", "finishing migrations", err);
    rc = exec_sql(db, migrations[version], "migrating the schema", err);
    if (rc) goto fail;
    snprintf(sql, sizeof sql,
             "INSERT INTO schema_version (version, applied_ms) VALUES (%d, "
             "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))",
             version + 1);
    rc = exec_sql(db, sql, "recording the schema version", err);
    if (rc) goto fail;
    rc = exec_sql(db, "COMMIT", "committing a migration", err);
    if (rc) goto fail;
  }
fail:
  exec_sql(db, "ROLLBACK", "rolling back a migration", NULL);
  return rc;
}

static void sq_close(store *base) {
  sq_store *s = (sq_store *)base;
  if (!s) return;
  /* Every transaction must be finished: only idle connections remain. */
  for (size_t i = 0; i < s->nidle; i++) conn_free(s->idle[i]);
  s->wal_index = NULL;
  conn_free(s->stamp_conn);
  pthread_mutex_destroy(&s->pool_lock);
  pthread_cond_destroy(&s->pool_cond);
  pthread_mutex_destroy(&s->group_lock);
  pthread_cond_destroy(&s->group_cond);
  free(s->path);
  free(s);
}

/* ------------------------------------------------------------ change stamp
 *
 * The stamp is the WAL-index header: the first 48 bytes of the -shm file
 * every connection to the database maps, in every process (SQLite's file
 * format, "WAL-index format").  Every commit that writes a page rewrites it:
 * iChange counts transactions, mxFrame and the frame checksums move on, and
 * a WAL that restarts from its beginning gets new salts.  A PASSIVE
 * checkpoint changes neither data nor header; one that truncates the WAL
 * rewrites the header, which only costs the caches a refill.  A writer
 * stores the header twice, the second copy first; a reader takes it only
 * when both copies are equal and its checksum holds, as SQLite's own
 * readers do (walIndexTryHdr).  Reading it costs nanoseconds, against most
 * of a microsecond for PRAGMA data_version on a locked connection and
 * several for a read transaction (bench/README.md, "The key cache").
 *
 * The mapping is region 0 of the WAL index (SQLite's 32 KiB regions), asked
 * of the VFS file of a connection kept for this alone: its shared memory
 * stays mapped until sq_close, whatever the pool does.  A database not in
 * WAL mode, a VFS without shared memory or a header of another version
 * than the documented 3007000 at start turns the stamp off for good; a
 * header caught half-written turns it off for that call.  Caches then go
 * to the store every time, never on a guess. */
#define WALINDEX_REGION_SIZE 32768
#define WALINDEX_VERSION 3007000u
#define WALINDEX_HDR_WORDS 12 /* one copy, 48 bytes */
#define WALINDEX_ISINIT_BYTE 12
#define WALINDEX_CKSUM_WORD 10 /* aCksum[2], over the 40 bytes before it */

static bool read_wal_header(const volatile uint32_t *h, uint32_t out[WALINDEX_HDR_WORDS]) {
  uint32_t second[WALINDEX_HDR_WORDS];
  uint32_t s1 = 0, s2 = 0;
  for (int i = 0; i < WALINDEX_HDR_WORDS; i++) out[i] = h[i];
  atomic_thread_fence(memory_order_acquire);
  for (int i = 0; i < WALINDEX_HDR_WORDS; i++) second[i] = h[WALINDEX_HDR_WORDS + i];
  if (memcmp(out, second, sizeof second) != 0 || out[0] != WALINDEX_VERSION ||
      ((const uint8_t *)out)[WALINDEX_ISINIT_BYTE] == 0)
    return false;
  /* SQLite's checksum of the header, in native byte order. */
  for (int i = 0; i < WALINDEX_CKSUM_WORD; i += 2) {
    s1 += out[i] + s2;
    s2 += out[i + 1] + s1;
  }
  return s1 == out[WALINDEX_CKSUM_WORD] && s2 == out[WALINDEX_CKSUM_WORD + 1];
}

static bool sq_change_stamp(store *base, store_stamp *out) {
  sq_store *s = (sq_store *)base;
  _Static_assert(sizeof out->w == WALINDEX_HDR_WORDS * sizeof(uint32_t), "one header copy");
  return s->wal_index && read_wal_header(s->wal_index, out->w);
}

static bool in_wal_mode(sqlite3 *db) {
  sqlite3_stmt *st = NULL;
  bool wal = false;
  if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    const unsigned char *mode = sqlite3_column_text(st, 0);
    wal = mode && strcmp((const char *)mode, "wal") == 0;
  }
  sqlite3_finalize(st);
  return wal;
}

/* Open the stamp's connection and map the WAL index, or leave the stamp off
 * (and no connection open for it) when anything on the way fails: the store
 * works without it, only slower. */
static void stamp_open(sq_store *s) {
  sqlite3_file *f = NULL;
  void volatile *region = NULL;
  uint32_t hdr[WALINDEX_HDR_WORDS];
  kerr ignored;
  if (conn_open(s, &s->stamp_conn, &ignored) != KERR_OK) return;
  /* A read opens the WAL and maps its index. */
  if (!in_wal_mode(s->stamp_conn->tx.db) ||
      exec_sql(s->stamp_conn->tx.db, "SELECT count(*) FROM schema_version",
               "opening the change stamp", &ignored) != KERR_OK ||
      sqlite3_file_control(s->stamp_conn->tx.db, "main", SQLITE_FCNTL_FILE_POINTER, &f) !=
          SQLITE_OK ||
      !f || !f->pMethods || f->pMethods->iVersion < 2 || !f->pMethods->xShmMap ||
      f->pMethods->xShmMap(f, 0, WALINDEX_REGION_SIZE, 0, &region) != SQLITE_OK || !region ||
      !read_wal_header((const volatile uint32_t *)region, hdr)) {
    conn_free(s->stamp_conn);
    s->stamp_conn = NULL;
    return;
  }
  s->wal_index = (const volatile uint32_t *)region;
}

bool store_sqlite_stamp_on(store *base) { return ((sq_store *)base)->wal_index != NULL; }

static const store_ops sqlite_ops = {
    .name = "sqlite",
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .reads_uncommitted = sq_reads_uncommitted,
    .change_stamp = sq_change_stamp,
    .key_insert = sq_key_insert,
    .key_get = sq_key_get,
    .key_update = sq_key_update,
    .key_set_policy = sq_key_set_policy,
    .key_get_policy = sq_key_get_policy,
    .key_delete = sq_key_delete,
    .key_list = sq_key_list,
    .keys_due = sq_keys_due,
    .material_insert = sq_material_insert,
    .material_get = sq_material_get,
    .material_list = sq_material_list,
    .alias_insert = sq_alias_insert,
    .alias_get = sq_alias_get,
    .alias_update = sq_alias_update,
    .alias_delete = sq_alias_delete,
    .alias_list = sq_alias_list,
    .tag_put = sq_tag_put,
    .tag_delete = sq_tag_delete,
    .tag_list = sq_tag_list,
    .cks_insert = sq_cks_insert,
    .cks_get = sq_cks_get,
    .cks_state = sq_cks_state,
    .cks_update = sq_cks_update,
    .cks_delete = sq_cks_delete,
    .cks_list = sq_cks_list,
    .cks_key_count = sq_cks_key_count,
    .cks_key_by_xks_id = sq_cks_key_by_xks_id,
    .key_count = sq_key_count,
    .meta_get = sq_meta_get,
    .meta_put = sq_meta_put,
    .wrapped_sample = sq_wrapped_sample,
    .schema_version = sq_schema_version,
    .close = sq_close,
    .hsm = &sqlite_hsm_ops,
};

int store_sqlite_latest_version(void) { return N_MIGRATIONS; }

kerr_code store_sqlite_open(const char *path, store **out, kerr *err) {
  return store_sqlite_open_with(path, NULL, out, err);
}

kerr_code store_sqlite_open_with(const char *path, const store_sqlite_options *opts, store **out,
                                 kerr *err) {
  kerr_code rc = KERR_OK;
  sq_store *s = NULL;
  sq_conn *first = NULL;
  int fd;
  int busy_timeout_ms = STORE_SQLITE_BUSY_TIMEOUT_DEFAULT_MS;
  int group_window_ms = STORE_SQLITE_GROUP_WINDOW_DEFAULT_MS;

  *out = NULL;
  if (opts && opts->group_window_ms) {
    if (opts->group_window_ms < 1 || opts->group_window_ms > STORE_SQLITE_GROUP_WINDOW_MAX_MS)
      return kerr_set(err, KERR_VALIDATION, "The group commit window must be 1 to %d ms, not %d.",
                      STORE_SQLITE_GROUP_WINDOW_MAX_MS, opts->group_window_ms);
    group_window_ms = opts->group_window_ms;
  }
  if (opts && opts->busy_timeout_ms) {
    if (opts->busy_timeout_ms < STORE_SQLITE_BUSY_TIMEOUT_MIN_MS ||
        opts->busy_timeout_ms > STORE_SQLITE_BUSY_TIMEOUT_MAX_MS)
      return kerr_set(err, KERR_VALIDATION, "The database busy timeout must be %d to %d ms, not %d.",
                      STORE_SQLITE_BUSY_TIMEOUT_MIN_MS, STORE_SQLITE_BUSY_TIMEOUT_MAX_MS,
                      opts->busy_timeout_ms);
    busy_timeout_ms = opts->busy_timeout_ms;
  }
  if (sqlite3_threadsafe() == 0)
    return kerr_set(err, KERR_INTERNAL, "SQLite was built without thread support.");
  /* Create the file ourselves so it is 0600 from the first byte: it holds
   * wrapped key material.  SQLite gives -wal/-shm the same mode. */
  fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return kerr_set(err, KERR_INTERNAL, "Cannot open database %s: %s", path, strerror(errno));
  close(fd);

  s = calloc(1, sizeof *s);
  if (!s) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  s->base.ops = &sqlite_ops;
  s->busy_timeout_ms = busy_timeout_ms;
  s->group_window_ms = group_window_ms;
  pthread_mutex_init(&s->pool_lock, NULL);
  pthread_cond_init(&s->pool_cond, NULL);
  pthread_mutex_init(&s->group_lock, NULL);
  pthread_cond_init(&s->group_cond, NULL);
  s->path = strdup(path);
  if (!s->path) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  rc = conn_open(s, &first, err);
  if (rc) goto out;
  rc = migrate(first->tx.db, err);
  if (rc) goto out;
  s->idle[s->nidle++] = first;
  s->nopen = 1;
  first = NULL;
  stamp_open(s);
  *out = &s->base;
  s = NULL;
out:
  conn_free(first);
  if (s) sq_close(&s->base);
  return rc;
}
