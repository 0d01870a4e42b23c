/* store_pg.c - the PostgreSQL backend of the store (store.h, store_pg.h).
 *
 * Why PostgreSQL: several kmsd nodes must share one durable state, and
 * operators already run PostgreSQL with its replication and failover; kmsd
 * builds no replication of its own (docs/multi-node.md).
 *
 * Transactions keep the SQLite backend's semantics, so the domain's checks
 * (name uniqueness, quotas, state transitions: read, decide, write) stay
 * correct when the writers are on several machines:
 *  - a write transaction takes one transaction-scoped advisory lock
 *    (WRITE_LOCK) before anything else, as SQLite's BEGIN IMMEDIATE takes
 *    its write lock, and runs at READ COMMITTED: every statement sees every
 *    commit made before the lock was granted, and no other writer can commit
 *    until it ends.  Writes are thus serial cluster-wide, which no
 *    isolation level alone gives for the domain's check-then-insert, and no
 *    serialization failure or deadlock can happen between kmsd writers;
 *  - a read transaction is REPEATABLE READ, READ ONLY: one snapshot, and a
 *    write through it is refused by the server.
 * COMMIT's own answer decides: a transaction the server aborted answers
 * COMMIT with ROLLBACK, and is reported as failed, never acknowledged.
 *
 * Connections come from a pool, one per transaction; writers take turns
 * in the process before they take one (as SQLite's do), so that queued
 * writers never hold every connection.  A connection that failed (the
 * server restarted, the network broke) is closed when its transaction ends
 * instead of going back; a BEGIN that finds its connection dead closes the
 * idle ones too and runs on a new one.  So kmsd recovers by itself when the
 * database returns; meanwhile calls fail at once (or within
 * STORE_PG_CONNECT_TIMEOUT_S) with KERR_INTERNAL.  Statements of the hot
 * path are prepared once per connection.
 *
 * Any error inside a PostgreSQL transaction aborts all of it, where SQLite
 * fails the one statement; so inserts say ON CONFLICT DO NOTHING and a row
 * not inserted is KERR_ALREADY_EXISTS, and a caller that goes on after one
 * (as the SQLite backend allows) still can.
 *
 * Several nodes: background work runs under a lease, and a few
 * cluster-wide steps under named locks, both session advisory locks that
 * the server drops with a dead node's session (see "the lease").
 *
 * Text columns use the "C" collation, so ordering and pagination compare
 * bytes as SQLite does, whatever the database's locale.  Values travel as
 * text except blobs, which are sent in binary; results come back as text
 * (bytea in hex). */
#include "store/store_pg.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/codec.h"
#include "core/log.h"
#include "store/store_sql.h"

#define POOL_MAX 16
#define MAX_PARAMS 24
#define KEEPER_INTERVAL_MS 1000 /* how often the lease's connection is checked */
#define NAMED_LOCK_POLL_MS 20   /* how often a waiting lock_named asks again */
#define LEASE_PING_MS 1500 /* how long the lease's session may take to answer a tick */
#define LOCK_PING_MS 30000 /* how long a named lock's session may take to answer */
/* How long a session may sit idle inside a transaction before the server
 * ends it: longer than any step kmsd takes inside one (an HSM call is
 * bounded by --hsm-timeout, at most 600 s, but is not idle-in-transaction
 * for long in practice), short enough that an orphaned session's write
 * lock does not outlive it by hours. */
#define IDLE_IN_TX_S 600

/* Advisory lock ids (one 64-bit space per database): "kmsd" in ASCII, then
 * what the lock is for. */
#define WRITE_LOCK 0x6b6d736401LL   /* every write transaction */
#define MIGRATE_LOCK 0x6b6d736402LL /* applying migrations */
#define LEASE_LOCK 0x6b6d736403LL   /* the lease on background work */
/* The first key of named locks (two int4 keys): "kmsd" in ASCII. */
#define NAMED_LOCK_CLASS 0x6b6d7364

#define T "TEXT COLLATE \"C\""

/* Numbered migrations: index i brings the schema to version i+1.  Never
 * edit a released one; append.  1 is the SQLite schema's version 6 as one
 * step, in PostgreSQL's words (triggers keep key_counts and policy_version
 * as they do there). */
static const char *const migrations[] = {
    "CREATE TABLE keys ("
    "  key_id " T " PRIMARY KEY, account_id " T " NOT NULL, region " T " NOT NULL,"
    "  created_ms BIGINT NOT NULL, description " T " NOT NULL DEFAULT '',"
    "  key_state " T " NOT NULL, key_usage " T " NOT NULL, key_spec " T " NOT NULL,"
    "  origin " T " NOT NULL, custom_key_store_id " T ", xks_key_id " T ","
    "  policy " T " NOT NULL, policy_version BIGINT NOT NULL DEFAULT 1,"
    "  deletion_date_ms BIGINT, pending_window_days INTEGER,"
    "  rotation_enabled INTEGER NOT NULL DEFAULT 0, rotation_period_days INTEGER,"
    "  next_rotation_ms BIGINT, on_demand_rotations INTEGER NOT NULL DEFAULT 0,"
    "  current_material_id " T ");"
    "CREATE INDEX keys_by_owner ON keys(account_id, region, key_id);"
    "CREATE INDEX keys_by_deletion ON keys(deletion_date_ms) WHERE deletion_date_ms IS NOT NULL;"
    "CREATE INDEX keys_by_rotation ON keys(next_rotation_ms) WHERE next_rotation_ms IS NOT NULL;"
    "CREATE INDEX keys_by_custom_key_store ON keys(custom_key_store_id, xks_key_id)"
    "  WHERE custom_key_store_id IS NOT NULL;"
    "CREATE TABLE key_materials ("
    "  material_id " T " PRIMARY KEY,"
    "  key_id " T " NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,"
    "  seq BIGINT NOT NULL, wrapped BYTEA NOT NULL, created_ms BIGINT NOT NULL,"
    "  rotation_type " T " NOT NULL DEFAULT '', UNIQUE (key_id, seq));"
    "CREATE TABLE aliases ("
    "  account_id " T " NOT NULL, region " T " NOT NULL, alias_name " T " NOT NULL,"
    "  key_id " T " NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,"
    "  created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL,"
    "  PRIMARY KEY (account_id, region, alias_name));"
    "CREATE INDEX aliases_by_key ON aliases(key_id);"
    "CREATE TABLE tags ("
    "  key_id " T " NOT NULL REFERENCES keys(key_id) ON DELETE CASCADE,"
    "  tag_key " T " NOT NULL, tag_value " T " NOT NULL, PRIMARY KEY (key_id, tag_key));"
    "CREATE TABLE custom_key_stores ("
    "  cks_id " T " PRIMARY KEY, account_id " T " NOT NULL, region " T " NOT NULL,"
    "  name " T " NOT NULL, type " T " NOT NULL, cluster_id " T " NOT NULL DEFAULT '',"
    "  cluster_lineage " T " NOT NULL DEFAULT '', trust_anchor_pem " T ","
    "  password_wrapped BYTEA, pending_password_wrapped BYTEA,"
    "  connection_state " T " NOT NULL, connection_error " T " NOT NULL DEFAULT '',"
    "  created_ms BIGINT NOT NULL, state_changed_ms BIGINT NOT NULL,"
    "  xks_uri_endpoint " T " NOT NULL DEFAULT '', xks_uri_path " T " NOT NULL DEFAULT '',"
    "  xks_connectivity " T " NOT NULL DEFAULT '', xks_vpc_service_name " T " NOT NULL DEFAULT '',"
    "  xks_vpc_service_owner " T " NOT NULL DEFAULT '',"
    "  xks_access_key_id " T " NOT NULL DEFAULT '', xks_secret_wrapped BYTEA,"
    "  CONSTRAINT custom_key_stores_name UNIQUE (account_id, region, name));"
    "CREATE TABLE hsm_clusters ("
    "  cluster_id " T " PRIMARY KEY, account_id " T " NOT NULL, region " T " NOT NULL,"
    "  state " T " NOT NULL, state_message " T " NOT NULL DEFAULT '',"
    "  hsm_type " T " NOT NULL, mode " T " NOT NULL, network_type " T " NOT NULL,"
    "  lineage " T " NOT NULL, source_backup_id " T " NOT NULL DEFAULT '',"
    "  simulated_failure " T " NOT NULL DEFAULT 'none', security_group " T " NOT NULL,"
    "  vpc_id " T " NOT NULL, created_ms BIGINT NOT NULL, subnets " T " NOT NULL,"
    "  tags " T " NOT NULL DEFAULT '', csr_pem " T ", trust_anchor_pem " T ","
    "  cluster_cert_pem " T ");"
    "CREATE INDEX hsm_clusters_by_owner ON hsm_clusters(account_id, region, cluster_id);"
    "CREATE TABLE hsm_hsms ("
    "  hsm_id " T " PRIMARY KEY,"
    "  cluster_id " T " NOT NULL REFERENCES hsm_clusters(cluster_id),"
    "  availability_zone " T " NOT NULL, subnet_id " T " NOT NULL, eni_id " T " NOT NULL,"
    "  eni_ip " T " NOT NULL, state " T " NOT NULL, state_message " T " NOT NULL DEFAULT '',"
    "  created_ms BIGINT NOT NULL, pool_index INTEGER NOT NULL, token_label " T " NOT NULL);"
    "CREATE INDEX hsm_hsms_by_cluster ON hsm_hsms(cluster_id);"
    "CREATE TABLE hsm_users ("
    "  cluster_id " T " NOT NULL REFERENCES hsm_clusters(cluster_id),"
    "  username " T " NOT NULL, role " T " NOT NULL, salt BYTEA NOT NULL, hash BYTEA NOT NULL,"
    "  failed_logins INTEGER NOT NULL DEFAULT 0, locked INTEGER NOT NULL DEFAULT 0,"
    "  logged_in INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (cluster_id, username));"
    "CREATE TABLE hsm_key_blobs ("
    "  lineage " T " NOT NULL, label " T " NOT NULL, wrapped BYTEA NOT NULL,"
    "  created_ms BIGINT NOT NULL, PRIMARY KEY (lineage, label));"
    "CREATE TABLE hsm_backups ("
    "  backup_id " T " PRIMARY KEY, cluster_id " T " NOT NULL, account_id " T " NOT NULL,"
    "  region " T " NOT NULL, lineage " T " NOT NULL, state " T " NOT NULL,"
    "  hsm_type " T " NOT NULL, mode " T " NOT NULL, created_ms BIGINT NOT NULL);"
    "CREATE TABLE hsm_secrets ("
    "  owner " T " NOT NULL, name " T " NOT NULL, wrapped BYTEA NOT NULL,"
    "  PRIMARY KEY (owner, name));"
    "CREATE TABLE store_meta (name " T " PRIMARY KEY, value BYTEA NOT NULL);"
    "CREATE TABLE key_counts ("
    "  account_id " T " NOT NULL, region " T " NOT NULL, n BIGINT NOT NULL,"
    "  PRIMARY KEY (account_id, region));"
    "CREATE FUNCTION kmsd_key_counts() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    "  IF TG_OP IN ('UPDATE', 'DELETE') THEN"
    "    UPDATE key_counts SET n = n - 1"
    "      WHERE account_id = OLD.account_id AND region = OLD.region;"
    "  END IF;"
    "  IF TG_OP IN ('UPDATE', 'INSERT') THEN"
    "    INSERT INTO key_counts (account_id, region, n) VALUES (NEW.account_id, NEW.region, 1)"
    "      ON CONFLICT (account_id, region) DO UPDATE SET n = key_counts.n + 1;"
    "  END IF;"
    "  RETURN NULL; END $$;"
    "CREATE TRIGGER key_counts_change AFTER INSERT OR DELETE ON keys"
    "  FOR EACH ROW EXECUTE FUNCTION kmsd_key_counts();"
    "CREATE TRIGGER key_counts_move AFTER UPDATE OF account_id, region ON keys FOR EACH ROW"
    "  WHEN (OLD.account_id IS DISTINCT FROM NEW.account_id OR OLD.region IS DISTINCT FROM"
    "        NEW.region) EXECUTE FUNCTION kmsd_key_counts();"
    "CREATE FUNCTION kmsd_policy_version() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    "  NEW.policy_version := OLD.policy_version + 1; RETURN NEW; END $$;"
    "CREATE TRIGGER keys_policy_version BEFORE UPDATE OF policy ON keys FOR EACH ROW"
    "  WHEN (NEW.policy_version = OLD.policy_version AND NEW.policy IS DISTINCT FROM"
    "        OLD.policy) EXECUTE FUNCTION kmsd_policy_version();",
    /* 2: the change stamp (pg_change_stamp): a value every statement that
     * writes a table moves, whoever runs it (kmsd, another node, an operator's
     * psql), in the writer's own transaction.  A new random value rather than
     * a count: a database restored to an earlier state cannot bring back a
     * stamp that meant other contents, unless it brings those contents too. */
    "CREATE TABLE kmsd_changes (id INTEGER PRIMARY KEY CHECK (id = 1), stamp BIGINT NOT NULL);"
    "INSERT INTO kmsd_changes VALUES (1, (random() * 9.2e18)::bigint);"
    "CREATE FUNCTION kmsd_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    "  UPDATE kmsd_changes SET stamp = (random() * 9.2e18)::bigint WHERE id = 1;"
    "  RETURN NULL; END $$;"
    "CREATE TRIGGER keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON keys"
    "  FOR EACH STATEMENT EXECUTE FUNCTION kmsd_changed();"
    "CREATE TRIGGER key_materials_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON key_materials"
    "  FOR EACH STATEMENT EXECUTE FUNCTION kmsd_changed();"
    "CREATE TRIGGER aliases_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON aliases"
    "  FOR EACH STATEMENT EXECUTE FUNCTION kmsd_changed();"
    "CREATE TRIGGER tags_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tags"
    "  FOR EACH STATEMENT EXECUTE FUNCTION kmsd_changed();"
    "CREATE TRIGGER custom_key_stores_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON custom_key_stores"
    "  FOR EACH STATEMENT EXECUTE FUNCTION kmsd_changed();"
    "CREATE TRIGGER hsm_clusters_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON hsm_clusters"
    "  FOR EACH STATEMENT EXECUTE FUNCTION kmsd_changed();"
    "CREATE TRIGGER hsm_hsms_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON hsm_hsms"
    "  FOR EACH STATEMENT EXECUTE FUNCTION kmsd_changed();"
    "CREATE TRIGGER hsm_users_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON hsm_users"
    "  FOR EACH STATEMENT EXECUTE FUNCTION kmsd_changed();"
    "CREATE TRIGGER hsm_key_blobs_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON hsm_key_blobs"
    "  FOR EACH STATEMENT EXECUTE FUNCTION kmsd_changed();"
    "CREATE TRIGGER hsm_backups_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON hsm_backups"
    "  FOR EACH STATEMENT EXECUTE FUNCTION kmsd_changed();"
    "CREATE TRIGGER hsm_secrets_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON hsm_secrets"
    "  FOR EACH STATEMENT EXECUTE FUNCTION kmsd_changed();"
    "CREATE TRIGGER store_meta_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON store_meta"
    "  FOR EACH STATEMENT EXECUTE FUNCTION kmsd_changed();",
};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))




/* The statements of the key-store side, prepared once per connection; the
 * cluster side's run far less often and go unprepared (pq_exec). */
enum stmt_id {
  ST_KEY_INSERT,
  ST_KEY_GET,
  ST_KEY_UPDATE,
  ST_KEY_SET_POLICY,
  ST_KEY_GET_POLICY,
  ST_KEY_DELETE,
  ST_KEY_LIST,
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
  ST_CKS_INSERT,
  ST_CKS_GET,
  ST_CKS_STATE,
  ST_CKS_UPDATE,
  ST_CKS_DELETE,
  ST_CKS_LIST,
  ST_CKS_KEY_COUNT,
  ST_KEY_COUNT,
  ST_CKS_KEY_BY_XKS_ID,
  ST_CHANGE_STAMP,
  ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_KEY_INSERT] = "INSERT INTO keys (" KEY_COLUMNS ", policy) VALUES "
                      "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20) "
                      "ON CONFLICT DO NOTHING",
    [ST_KEY_GET] = "SELECT " KEY_COLUMNS " FROM keys WHERE key_id = $1",
    [ST_KEY_UPDATE] = "UPDATE keys SET description=$2, key_state=$3, deletion_date_ms=$4, "
                      "pending_window_days=$5, rotation_enabled=$6, rotation_period_days=$7, "
                      "next_rotation_ms=$8, on_demand_rotations=$9, current_material_id=$10, "
                      "custom_key_store_id=$11, xks_key_id=$12 WHERE key_id=$1",
    [ST_KEY_SET_POLICY] = "UPDATE keys SET policy=$2, policy_version=policy_version+1 "
                          "WHERE key_id=$1 RETURNING policy_version",
    [ST_KEY_GET_POLICY] = "SELECT policy, policy_version FROM keys WHERE key_id=$1",
    [ST_KEY_DELETE] = "DELETE FROM keys WHERE key_id=$1",
    /* $4 is '' on the first page: every key id is longer. */
    [ST_KEY_LIST] = "SELECT key_id FROM keys WHERE account_id=$1 AND region=$2 AND "
                    "key_id > $4 ORDER BY key_id LIMIT $3",
    [ST_KEYS_DUE] = "SELECT key_id FROM keys WHERE deletion_date_ms <= $1 "
                    "AND key_state = 'PendingDeletion' UNION "
                    "SELECT key_id FROM keys WHERE next_rotation_ms <= $1 "
                    "AND key_state = 'Enabled' AND rotation_enabled = 1 LIMIT $2",
    [ST_MAT_INSERT] = "INSERT INTO key_materials (" MATERIAL_COLUMNS ") VALUES ($1,$2,$3,$4,$5,$6) "
                      "ON CONFLICT DO NOTHING",
    [ST_MAT_GET] = "SELECT " MATERIAL_COLUMNS " FROM key_materials WHERE material_id=$1",
    [ST_MAT_LIST] = "SELECT " MATERIAL_COLUMNS " FROM key_materials WHERE key_id=$1 ORDER BY seq",
    [ST_ALIAS_INSERT] = "INSERT INTO aliases (" ALIAS_COLUMNS ") VALUES ($1,$2,$3,$4,$5,$6) "
                        "ON CONFLICT DO NOTHING",
    [ST_ALIAS_GET] = "SELECT " ALIAS_COLUMNS " FROM aliases "
                     "WHERE account_id=$1 AND region=$2 AND alias_name=$3",
    [ST_ALIAS_UPDATE] = "UPDATE aliases SET key_id=$4, updated_ms=$5 "
                        "WHERE account_id=$1 AND region=$2 AND alias_name=$3",
    [ST_ALIAS_DELETE] = "DELETE FROM aliases WHERE account_id=$1 AND region=$2 AND alias_name=$3",
    [ST_ALIAS_LIST] = "SELECT " ALIAS_COLUMNS " FROM aliases WHERE account_id=$1 AND region=$2 "
                      "AND alias_name > $3 ORDER BY alias_name LIMIT $4",
    [ST_ALIAS_LIST_BY_KEY] = "SELECT " ALIAS_COLUMNS " FROM aliases WHERE key_id=$5 AND "
                             "account_id=$1 AND region=$2 AND alias_name > $3 "
                             "ORDER BY alias_name LIMIT $4",
    [ST_TAG_PUT] = "INSERT INTO tags (key_id, tag_key, tag_value) VALUES ($1,$2,$3) "
                   "ON CONFLICT (key_id, tag_key) DO UPDATE SET tag_value=EXCLUDED.tag_value",
    [ST_TAG_DELETE] = "DELETE FROM tags WHERE key_id=$1 AND tag_key=$2",
    [ST_TAG_LIST] = "SELECT tag_key, tag_value FROM tags WHERE key_id=$1 ORDER BY tag_key",
    [ST_CKS_INSERT] = "INSERT INTO custom_key_stores (" CKS_COLUMNS ") VALUES "
                      "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21) "
                      "ON CONFLICT DO NOTHING",
    [ST_CKS_GET] = "SELECT " CKS_COLUMNS " FROM custom_key_stores WHERE cks_id=$1",
    [ST_CKS_STATE] = "SELECT connection_state, cluster_id FROM custom_key_stores WHERE cks_id=$1",
    /* The same 21 parameters as the insert: id, owner, type and creation,
     * which never change, select the row. */
    [ST_CKS_UPDATE] = "UPDATE custom_key_stores SET name=$4, cluster_id=$6, trust_anchor_pem=$7, "
                      "password_wrapped=$8, pending_password_wrapped=$9, connection_state=$10, "
                      "connection_error=$11, state_changed_ms=$13, cluster_lineage=$14, "
                      "xks_uri_endpoint=$15, xks_uri_path=$16, xks_connectivity=$17, "
                      "xks_vpc_service_name=$18, xks_vpc_service_owner=$19, "
                      "xks_access_key_id=$20, xks_secret_wrapped=$21 WHERE cks_id=$1 "
                      "AND account_id=$2 AND region=$3 AND type=$5 AND created_ms=$12",
    [ST_CKS_DELETE] = "DELETE FROM custom_key_stores WHERE cks_id=$1",
    [ST_CKS_LIST] = "SELECT " CKS_COLUMNS " FROM custom_key_stores WHERE "
                    "($1::text IS NULL OR account_id=$1) AND ($2::text IS NULL OR region=$2) AND "
                    "($3::text IS NULL OR cks_id > $3) ORDER BY cks_id LIMIT $4",
    [ST_CKS_KEY_COUNT] = "SELECT COUNT(*) FROM keys WHERE custom_key_store_id=$1",
    [ST_KEY_COUNT] = "SELECT COALESCE((SELECT n FROM key_counts WHERE account_id=$1 "
                     "AND region=$2), 0)",
    [ST_CHANGE_STAMP] = "SELECT stamp FROM kmsd_changes WHERE id = 1",
    [ST_CKS_KEY_BY_XKS_ID] = "SELECT key_id FROM keys WHERE custom_key_store_id=$1 AND "
                             "xks_key_id=$2 LIMIT 1",
};

typedef struct pg_store {
  store base;
  char *url;
  int busy_timeout_ms;
  pthread_mutex_t pool_lock;
  pthread_cond_t pool_cond;
  pthread_mutex_t writer_gate; /* held by the write transaction running */
  store_tx *idle[POOL_MAX];
  size_t nidle;
  size_t nopen;
  /* The lease (see "the lease"): its connection, used only by open and
   * then by the keeper thread. */
  PGconn *lease_conn;
  int lease_pid;     /* the server's pid of the session holding it; 0: not held */
  int old_lease_pid; /* the one before, whose end the server may not have seen */
  atomic_bool lease; /* held now */
  bool lease_ping_pending; /* a keeper's SELECT 1 not answered yet (keeper only) */
  pthread_t keeper;
  bool keeper_running;
  bool stopping;                /* under keeper_lock */
  pthread_mutex_t keeper_lock;
  pthread_cond_t keeper_cond;
  atomic_bool reachable; /* the database's answer to the last begin or connect */
} pg_store;

/* A transaction is a borrowed connection; it goes back to the pool (or is
 * closed, when it failed) at commit or rollback. */
struct store_tx {
  pg_store *owner;
  PGconn *db;
  bool prepared[ST_COUNT];
  bool write;
  bool in_tx;
  char xid[24]; /* a write transaction's id (txid_current), for pg_commit */
};

/* The parameters of one statement: text values (or NULL), blobs in binary. */
typedef struct pq_params {
  int n;
  const char *values[MAX_PARAMS];
  int lengths[MAX_PARAMS];
  int formats[MAX_PARAMS];
  char numbers[MAX_PARAMS][24];
} pq_params;

static void p_text(pq_params *p, const char *v) {
  p->values[p->n] = v;
  p->lengths[p->n] = 0;
  p->formats[p->n] = 0;
  p->n++;
}

static void p_int(pq_params *p, int64_t v) {
  snprintf(p->numbers[p->n], sizeof p->numbers[p->n], "%lld", (long long)v);
  p_text(p, p->numbers[p->n]);
}

/* 0 is stored as NULL, as the SQLite backend does. */
static void p_int_or_null(pq_params *p, int64_t v) {
  if (v)
    p_int(p, v);
  else
    p_text(p, NULL);
}

static void p_blob(pq_params *p, const uint8_t *v, size_t len) {
  static const char empty[1];
  p->values[p->n] = v ? (const char *)v : empty;
  p->lengths[p->n] = (int)len;
  p->formats[p->n] = 1;
  p->n++;
}

static void p_blob_or_null(pq_params *p, const uint8_t *v, size_t len) {
  if (v && len)
    p_blob(p, v, len);
  else
    p_text(p, NULL);
}

/* libpq's messages end with a newline; keep the first line only. */
static const char *first_line(const char *msg, char *buf, size_t cap) {
  size_t n = 0;
  if (!msg) msg = "unknown error";
  while (msg[n] && msg[n] != '\n' && n + 1 < cap) n++;
  memcpy(buf, msg, n);
  buf[n] = '\0';
  return buf;
}

/* libpq's reason names the database's host, address, port and user: it
 * goes to the log (at most every CONN_LOG_INTERVAL_MS, a database that is
 * down fails every call), and callers, API clients among them, get the
 * fact only. */
#define CONN_LOG_INTERVAL_MS 5000
static kerr_code conn_error(PGconn *db, const char *what, kerr *err) {
  static _Atomic int64_t last_logged_ms;
  struct timespec now;
  char line[256];
  clock_gettime(CLOCK_MONOTONIC, &now);
  int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
  int64_t last = atomic_load(&last_logged_ms);
  if ((last == 0 || now_ms - last >= CONN_LOG_INTERVAL_MS) &&
      atomic_compare_exchange_strong(&last_logged_ms, &last, now_ms))
    log_msg(LOG_ERROR, NULL, "store: %s: %s", what,
            first_line(db ? PQerrorMessage(db) : NULL, line, sizeof line));
  return kerr_set(err, KERR_INTERNAL,
                  "Storage error while %s: the database cannot be reached (the log says why).",
                  what);
}

/* The server's primary message only: its DETAIL may quote a row's values. */
static kerr_code result_error(PGresult *res, PGconn *db, const char *what, kerr *err) {
  const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  char line[256];
  if (!primary) return conn_error(db, what, err);
  return kerr_set(err, KERR_INTERNAL, "Storage error while %s: %s (SQLSTATE %s)", what,
                  first_line(primary, line, sizeof line), state ? state : "?");
}

static bool is_sqlstate(PGresult *res, const char *code) {
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  return state && strcmp(state, code) == 0;
}

static bool result_ok(PGresult *res) {
  ExecStatusType st = PQresultStatus(res);
  return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* Run a prepared statement of the key-store side.  *out is the result
 * (PQclear it) whatever happened, or NULL when libpq had no memory; the
 * return says whether it succeeded.  A unique violation is
 * KERR_ALREADY_EXISTS with no message worth showing (the caller words it);
 * anything else KERR_INTERNAL. */
static kerr_code pq_run(store_tx *tx, enum stmt_id id, const pq_params *p, PGresult **out,
                        const char *what, kerr *err) {
  char name[16];
  *out = NULL;
  snprintf(name, sizeof name, "k%d", (int)id);
  if (!tx->prepared[id]) {
    PGresult *prep = PQprepare(tx->db, name, stmt_sql[id], 0, NULL);
    if (!result_ok(prep)) {
      kerr_code rc = result_error(prep, tx->db, "preparing a statement", err);
      PQclear(prep);
      return rc;
    }
    PQclear(prep);
    tx->prepared[id] = true;
  }
  *out = PQexecPrepared(tx->db, name, p->n, p->values, p->lengths, p->formats, 0);
  if (result_ok(*out)) {
    if (strncmp(stmt_sql[id], "INSERT", 6) == 0 && strcmp(PQcmdStatus(*out), "INSERT 0 0") == 0)
      return kerr_set(err, KERR_ALREADY_EXISTS, "already exists");
    return KERR_OK;
  }
  if (is_sqlstate(*out, "23505")) return kerr_set(err, KERR_ALREADY_EXISTS, "already exists");
  return result_error(*out, tx->db, what, err);
}

/* The same for a statement run once (the cluster side, migrations). */
static kerr_code pq_exec(store_tx *tx, const char *sql, const pq_params *p, PGresult **out,
                         const char *what, kerr *err) {
  *out = PQexecParams(tx->db, sql, p ? p->n : 0, NULL, p ? p->values : NULL,
                      p ? p->lengths : NULL, p ? p->formats : NULL, 0);
  if (result_ok(*out)) return KERR_OK;
  /* Any integrity violation, as the SQLite backend's SQLITE_CONSTRAINT. */
  if (*out && PQresultErrorField(*out, PG_DIAG_SQLSTATE) &&
      strncmp(PQresultErrorField(*out, PG_DIAG_SQLSTATE), "23", 2) == 0)
    return kerr_set(err, KERR_ALREADY_EXISTS, "already exists");
  return result_error(*out, tx->db, what, err);
}

/* Run a statement that returns no rows: its error, or `if_none` (with
 * `missing`) when no row changed and `if_none` is not KERR_OK. */
static kerr_code pq_change(store_tx *tx, const char *sql, const pq_params *p, kerr_code if_none,
                           const char *what, const char *missing, kerr *err) {
  PGresult *res;
  kerr_code rc = pq_exec(tx, sql, p, &res, what, err);
  if (!rc && if_none != KERR_OK && strcmp(PQcmdTuples(res), "0") == 0)
    rc = kerr_set(err, if_none, "%s", missing);
  PQclear(res);
  return rc;
}

/* ------------------------------------------------------------ columns */

static const char *col(PGresult *r, int row, int c) {
  return PQgetisnull(r, row, c) ? NULL : PQgetvalue(r, row, c);
}

static void copy_col(PGresult *r, int row, int c, char *dst, size_t cap) {
  const char *t = col(r, row, c);
  size_t n = t ? strlen(t) : 0;
  if (cap == 0) return;
  if (n >= cap) n = cap - 1;
  if (n) memcpy(dst, t, n);
  dst[n] = '\0';
}

static int64_t int_col(PGresult *r, int row, int c) {
  const char *t = col(r, row, c);
  return t ? strtoll(t, NULL, 10) : 0;
}

static kerr_code dup_col(PGresult *r, int row, int c, bool nullable, char **out, kerr *err) {
  const char *t = col(r, row, c);
  *out = NULL;
  if (!t && nullable) return KERR_OK;
  *out = strdup(t ? t : "");
  return *out ? KERR_OK : kerr_set(err, KERR_INTERNAL, "Out of memory.");
}

/* A bytea column (text result, hex format "\x...") into a new buffer;
 * NULL / empty -> *out NULL, *len 0.  `cap` bounds the size (0: none). */
static kerr_code blob_col(PGresult *r, int row, int c, size_t cap, uint8_t **out, size_t *len,
                          kerr *err) {
  const char *t = col(r, row, c);
  size_t hex;
  *out = NULL;
  *len = 0;
  if (!t || !*t) return KERR_OK;
  if (t[0] != '\\' || t[1] != 'x' || (hex = strlen(t + 2)) % 2)
    return kerr_set(err, KERR_INTERNAL, "Storage error: a stored value is not in hex form.");
  if (hex == 0) return KERR_OK;
  if (cap && hex / 2 > cap)
    return kerr_set(err, KERR_INTERNAL, "Storage error: a stored value is too long.");
  uint8_t *b = malloc(hex / 2);
  size_t n = 0;
  if (!b) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  if (hex_decode(t + 2, hex, b, &n) != 0) {
    free(b);
    return kerr_set(err, KERR_INTERNAL, "Storage error: a stored value is not in hex form.");
  }
  *out = b;
  *len = hex / 2;
  return KERR_OK;
}

/* Grow *arr (cap elements of `size` bytes) to hold element n; zero-fills. */
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

typedef kerr_code (*row_reader)(PGresult *r, int row, void *elem, kerr *err);

/* Every row of `r` through `read` into a new array; on failure nothing is
 * left (`release` frees what `read` put into the elements). */
static kerr_code collect_rows(PGresult *r, size_t size, row_reader read,
                              void (*release)(void *list, size_t n), void **out, size_t *n,
                              kerr *err) {
  void *arr = NULL;
  size_t cap = 0, count = 0;
  int rows = PQntuples(r);
  *out = NULL;
  *n = 0;
  for (int i = 0; i < rows; i++) {
    void *elem = grow_array(&arr, &cap, count, size);
    kerr_code rc = elem ? read(r, i, elem, err) : kerr_set(err, KERR_INTERNAL, "Out of memory.");
    if (elem) count++; /* the element may hold part of a row: release it too */
    if (rc) {
      if (release)
        release(arr, count);
      else
        free(arr);
      return rc;
    }
  }
  *out = arr;
  *n = count;
  return KERR_OK;
}

/* ------------------------------------------------------- connections */

/* `app` is the application_name the server shows for the connection. */
static kerr_code conn_open(const char *url, const char *app, int busy_timeout_ms, PGconn **out,
                           kerr *err) {
  /* Later keywords win: the URL's own settings override ours.  Keepalives
   * and tcp_user_timeout bound how long a call can hang on a connection
   * whose other end is gone without a word (a NAT or balancer reset, a
   * partition). */
  char timeout[16];
  const char *keys[] = {"connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
                        "keepalives_count", "tcp_user_timeout", "application_name", "dbname",
                        NULL};
  const char *values[] = {timeout, "1", "10", "5", "3", "30000", app, url, NULL};
  PGconn *db;
  snprintf(timeout, sizeof timeout, "%d", STORE_PG_CONNECT_TIMEOUT_S);
  *out = NULL;
  db = PQconnectdbParams(keys, values, 1);
  if (!db) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  if (PQstatus(db) != CONNECTION_OK) {
    kerr_code rc = conn_error(db, "connecting to the database", err);
    PQfinish(db);
    return rc;
  }
  /* The session: what the reads parse is pinned whatever the database or
   * role says (bytea in hex, UTF-8); and the server, too, notices a client
   * gone without a word, so that a session of a vanished kmsd cannot keep
   * the write lock: keepalives on its side, a check of the client during
   * long statements, and at most IDLE_IN_TX_S idle inside a transaction. */
  char sql[512];
  snprintf(sql, sizeof sql,
           "SET lock_timeout = %d; SET client_min_messages = warning; SET TIME ZONE 'UTC';"
           "SET bytea_output = hex; SET client_encoding = 'UTF8';"
           "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5;"
           "SET tcp_keepalives_count = 3; SET client_connection_check_interval = 10000;"
           "SET idle_in_transaction_session_timeout = %d",
           busy_timeout_ms, IDLE_IN_TX_S * 1000);
  /* A server or role setting idle_session_timeout would end the lease's
   * and the named locks' sessions, which sit idle by design (PostgreSQL 14
   * and later have the setting). */
  if (PQserverVersion(db) >= 140000)
    snprintf(sql + strlen(sql), sizeof sql - strlen(sql), "; SET idle_session_timeout = 0");
  PGresult *res = PQexec(db, sql);
  if (!result_ok(res)) {
    kerr_code rc = result_error(res, db, "configuring the connection", err);
    PQclear(res);
    PQfinish(db);
    return rc;
  }
  PQclear(res);
  *out = db;
  return KERR_OK;
}

static kerr_code pool_take(pg_store *s, store_tx **out, kerr *err) {
  store_tx *tx = NULL;
  kerr_code rc;
  *out = NULL;
  pthread_mutex_lock(&s->pool_lock);
  while (!s->nidle && s->nopen >= POOL_MAX) pthread_cond_wait(&s->pool_cond, &s->pool_lock);
  if (s->nidle)
    tx = s->idle[--s->nidle];
  else
    s->nopen++;
  pthread_mutex_unlock(&s->pool_lock);
  if (tx) {
    *out = tx;
    return KERR_OK;
  }
  tx = calloc(1, sizeof *tx);
  rc = tx ? conn_open(s->url, "kmsd", s->busy_timeout_ms, &tx->db, err)
          : kerr_set(err, KERR_INTERNAL, "Out of memory.");
  if (rc) {
    if (tx) atomic_store(&s->reachable, false);
    free(tx);
    pthread_mutex_lock(&s->pool_lock);
    s->nopen--;
    pthread_cond_signal(&s->pool_cond);
    pthread_mutex_unlock(&s->pool_lock);
    return rc;
  }
  tx->owner = s;
  *out = tx;
  return KERR_OK;
}

/* Back to the pool when the connection is sound and outside any
 * transaction; closed otherwise, and the next transaction opens another. */
static void pool_give(pg_store *s, store_tx *tx) {
  bool sound = PQstatus(tx->db) == CONNECTION_OK;
  bool keep = sound && PQtransactionStatus(tx->db) == PQTRANS_IDLE;
  if (!sound) atomic_store(&s->reachable, false);
  tx->in_tx = false;
  tx->write = false;
  if (!keep) {
    PQfinish(tx->db);
    free(tx);
  }
  pthread_mutex_lock(&s->pool_lock);
  if (keep)
    s->idle[s->nidle++] = tx;
  else
    s->nopen--;
  pthread_cond_signal(&s->pool_cond);
  pthread_mutex_unlock(&s->pool_lock);
}

/* ------------------------------------------------------ transactions */

/* Close every idle connection: after one was found dead (the server
 * restarted, a failover), the others went with it, and each would fail a
 * call before being dropped. */
static void pool_flush_idle(pg_store *s) {
  store_tx *dead[POOL_MAX];
  size_t n;
  pthread_mutex_lock(&s->pool_lock);
  n = s->nidle;
  memcpy(dead, s->idle, n * sizeof *dead);
  s->nidle = 0;
  s->nopen -= n;
  pthread_cond_broadcast(&s->pool_cond);
  pthread_mutex_unlock(&s->pool_lock);
  for (size_t i = 0; i < n; i++) {
    PQfinish(dead[i]->db);
    free(dead[i]);
  }
}

/* BEGIN on a pooled connection.  On failure the connection goes back (or
 * is dropped), and *dead says it turned out dead before anything ran: the
 * caller may try a fresh one.  A write transaction also takes the write
 * lock and learns its transaction id (for pg_commit's outcome check). */
static kerr_code begin_on(pg_store *s, store_tx *tx, bool write, bool *dead, kerr *err) {
  char sql[160];
  if (write)
    snprintf(sql, sizeof sql,
             "BEGIN ISOLATION LEVEL READ COMMITTED; "
             "SELECT pg_advisory_xact_lock(%lld), txid_current()",
             (long long)WRITE_LOCK);
  else
    snprintf(sql, sizeof sql, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
  PGresult *res = PQexec(tx->db, sql);
  *dead = false;
  if (!result_ok(res)) {
    *dead = PQstatus(tx->db) != CONNECTION_OK;
    result_error(res, tx->db, "starting a transaction", err);
    PQclear(res);
    if (!*dead && PQtransactionStatus(tx->db) != PQTRANS_IDLE) PQclear(PQexec(tx->db, "ROLLBACK"));
    pool_give(s, tx);
    return KERR_INTERNAL;
  }
  tx->xid[0] = '\0';
  if (write && PQntuples(res) == 1)
    snprintf(tx->xid, sizeof tx->xid, "%s", PQgetvalue(res, 0, 1));
  PQclear(res);
  return KERR_OK;
}

static kerr_code pg_begin(store *base, bool write, store_tx **out, kerr *err) {
  pg_store *s = (pg_store *)base;
  store_tx *tx;
  kerr_code rc;
  *out = NULL;
  /* Writers take turns here, before a connection: queued on the database's
   * write lock instead, each would hold one of the pool's connections, and
   * a read (one nested in a write transaction among them) could find none. */
  if (write) pthread_mutex_lock(&s->writer_gate);
  for (int attempt = 0;; attempt++) {
    bool dead = false;
    rc = pool_take(s, &tx, err);
    if (rc) break;
    rc = begin_on(s, tx, write, &dead, err);
    if (!rc || !dead || attempt == 1) break;
    /* Nothing ran: drop the idle connections, which share its fate, and
     * try once on a new one. */
    pool_flush_idle(s);
  }
  if (rc) {
    if (write) pthread_mutex_unlock(&s->writer_gate);
    return rc;
  }
  if (!atomic_exchange(&s->reachable, true)) {
    /* The database is back: the keeper need not wait for its next tick to
     * check the lease's connection and try for the lease. */
    pthread_mutex_lock(&s->keeper_lock);
    pthread_cond_signal(&s->keeper_cond);
    pthread_mutex_unlock(&s->keeper_lock);
  }
  tx->write = write;
  tx->in_tx = true;
  *out = tx;
  return KERR_OK;
}

static bool pg_reachable(store *base) {
  pg_store *s = (pg_store *)base;
  return atomic_load(&s->reachable);
}

/* The outcome of write transaction `xid` whose COMMIT got no answer (the
 * connection broke under it), asked on a new connection: true and
 * *committed when the server knows it.  The old session may still be
 * finishing: "in progress" is asked again for a moment. */
static bool commit_outcome(pg_store *s, const char *xid, bool *committed) {
  PGconn *db = NULL;
  bool known = false;
  kerr ignored;
  if (!xid[0] || conn_open(s->url, "kmsd", s->busy_timeout_ms, &db, &ignored) != KERR_OK)
    return false;
  const char *values[1] = {xid};
  for (int i = 0; i < 50 && !known; i++) {
    PGresult *res = PQexecParams(db, "SELECT txid_status($1::bigint)", 1, NULL, values, NULL,
                                 NULL, 0);
    if (result_ok(res) && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
      const char *status = PQgetvalue(res, 0, 0);
      if (strcmp(status, "committed") == 0 || strcmp(status, "aborted") == 0) {
        *committed = status[0] == 'c';
        known = true;
      }
    } else if (!result_ok(res)) {
      PQclear(res);
      break;
    }
    PQclear(res);
    if (!known) {
      struct timespec pause = {0, 100 * 1000000L};
      nanosleep(&pause, NULL);
    }
  }
  PQfinish(db);
  return known;
}

static kerr_code pg_commit(store_tx *tx, kerr *err) {
  pg_store *s = tx->owner;
  bool write = tx->write;
  char xid[24];
  kerr_code rc = KERR_OK;
  snprintf(xid, sizeof xid, "%s", tx->xid);
  PGresult *res = PQexec(tx->db, "COMMIT");
  bool lost = !result_ok(res) && PQstatus(tx->db) != CONNECTION_OK;
  /* An aborted transaction answers COMMIT with ROLLBACK: nothing was kept. */
  if (!result_ok(res))
    rc = result_error(res, tx->db, "committing", err);
  else if (strcmp(PQcmdStatus(res), "COMMIT") != 0)
    rc = kerr_set(err, KERR_INTERNAL,
                  "Storage error while committing: the database rolled the transaction back.");
  PQclear(res);
  pool_give(s, tx);
  if (lost && write) {
    /* No answer to COMMIT: it may have happened.  Find out rather than
     * report a failure that callers would undo (an HSM key destroyed under
     * a committed row). */
    bool committed = false;
    if (!commit_outcome(s, xid, &committed))
      rc = kerr_set(err, KERR_INTERNAL,
                    "Storage error while committing: the connection to the database broke, and "
                    "whether the change was kept is not known.");
    else if (committed)
      rc = KERR_OK;
  }
  if (write) pthread_mutex_unlock(&s->writer_gate);
  return rc;
}

static void pg_rollback(store_tx *tx) {
  if (!tx) return;
  pg_store *s = tx->owner;
  bool write = tx->write;
  if (tx->in_tx && PQstatus(tx->db) == CONNECTION_OK) PQclear(PQexec(tx->db, "ROLLBACK"));
  pool_give(s, tx);
  if (write) pthread_mutex_unlock(&s->writer_gate);
}

static bool pg_reads_uncommitted(store_tx *tx) {
  (void)tx;
  return false;
}

/* The change stamp: kmsd_changes' value (migration 2), read on a pooled
 * connection outside any transaction, so it is the latest committed one.
 * One round trip where a read would take three (BEGIN, the row, COMMIT),
 * and exact across nodes: every writing statement moves it in its own
 * transaction.  A stamp read before a transaction begins is never newer
 * than what that transaction sees, as store.h asks. */
static bool pg_change_stamp(store *base, store_stamp *out) {
  pg_store *s = (pg_store *)base;
  store_tx *tx = NULL;
  PGresult *res = NULL;
  pq_params p = {0};
  bool ok = false;
  if (pool_take(s, &tx, NULL) != KERR_OK) return false;
  if (pq_run(tx, ST_CHANGE_STAMP, &p, &res, "reading the change stamp", NULL) == KERR_OK &&
      PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
    uint64_t v = (uint64_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    memset(out, 0, sizeof *out);
    out->w[0] = (uint32_t)v;
    out->w[1] = (uint32_t)(v >> 32);
    ok = true;
  }
  PQclear(res);
  pool_give(s, tx);
  return ok;
}

/* ---------------------------------------------------------------- keys */

static kerr_code pg_key_insert(store_tx *tx, const store_key *k, const char *policy, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  p_text(&p, k->key_id);
  p_text(&p, k->account_id);
  p_text(&p, k->region);
  p_int(&p, k->created_ms);
  p_text(&p, k->description ? k->description : "");
  p_text(&p, k->key_state);
  p_text(&p, k->key_usage);
  p_text(&p, k->key_spec);
  p_text(&p, k->origin);
  p_text(&p, k->custom_key_store_id);
  p_text(&p, k->xks_key_id);
  p_int(&p, k->policy_version ? k->policy_version : 1);
  p_int_or_null(&p, k->deletion_date_ms);
  p_int_or_null(&p, k->pending_window_days);
  p_int(&p, k->rotation_enabled ? 1 : 0);
  p_int_or_null(&p, k->rotation_period_days);
  p_int_or_null(&p, k->next_rotation_ms);
  p_int(&p, k->on_demand_rotations);
  p_text(&p, k->current_material_id[0] ? k->current_material_id : NULL);
  p_text(&p, policy);
  kerr_code rc = pq_run(tx, ST_KEY_INSERT, &p, &res, "inserting a key", err);
  if (rc == KERR_ALREADY_EXISTS) kerr_set(err, rc, "Key %s already exists.", k->key_id);
  PQclear(res);
  return rc;
}

static kerr_code read_key_row(PGresult *r, int row, store_key *k, kerr *err) {
  kerr_code rc;
  memset(k, 0, sizeof *k);
  copy_col(r, row, 0, k->key_id, sizeof k->key_id);
  copy_col(r, row, 1, k->account_id, sizeof k->account_id);
  copy_col(r, row, 2, k->region, sizeof k->region);
  k->created_ms = int_col(r, row, 3);
  if ((rc = dup_col(r, row, 4, false, &k->description, err))) return rc;
  copy_col(r, row, 5, k->key_state, sizeof k->key_state);
  copy_col(r, row, 6, k->key_usage, sizeof k->key_usage);
  copy_col(r, row, 7, k->key_spec, sizeof k->key_spec);
  copy_col(r, row, 8, k->origin, sizeof k->origin);
  if ((rc = dup_col(r, row, 9, true, &k->custom_key_store_id, err))) return rc;
  if ((rc = dup_col(r, row, 10, true, &k->xks_key_id, err))) return rc;
  k->policy_version = int_col(r, row, 11);
  k->deletion_date_ms = int_col(r, row, 12);
  k->pending_window_days = (int)int_col(r, row, 13);
  k->rotation_enabled = int_col(r, row, 14) != 0;
  k->rotation_period_days = (int)int_col(r, row, 15);
  k->next_rotation_ms = int_col(r, row, 16);
  k->on_demand_rotations = (int)int_col(r, row, 17);
  copy_col(r, row, 18, k->current_material_id, sizeof k->current_material_id);
  return KERR_OK;
}

static kerr_code pg_key_get(store_tx *tx, const char *key_id, store_key *out, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  memset(out, 0, sizeof *out);
  p_text(&p, key_id);
  kerr_code rc = pq_run(tx, ST_KEY_GET, &p, &res, "reading a key", err);
  if (!rc && PQntuples(res) == 0)
    rc = kerr_set(err, KERR_NOT_FOUND, "Key '%s' does not exist", key_id);
  if (!rc && (rc = read_key_row(res, 0, out, err))) store_key_clear(out);
  PQclear(res);
  return rc;
}

static kerr_code pg_key_update(store_tx *tx, const store_key *k, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  p_text(&p, k->key_id);
  p_text(&p, k->description ? k->description : "");
  p_text(&p, k->key_state);
  p_int_or_null(&p, k->deletion_date_ms);
  p_int_or_null(&p, k->pending_window_days);
  p_int(&p, k->rotation_enabled ? 1 : 0);
  p_int_or_null(&p, k->rotation_period_days);
  p_int_or_null(&p, k->next_rotation_ms);
  p_int(&p, k->on_demand_rotations);
  p_text(&p, k->current_material_id[0] ? k->current_material_id : NULL);
  p_text(&p, k->custom_key_store_id);
  p_text(&p, k->xks_key_id);
  kerr_code rc = pq_run(tx, ST_KEY_UPDATE, &p, &res, "updating a key", err);
  if (!rc && strcmp(PQcmdTuples(res), "0") == 0)
    rc = kerr_set(err, KERR_NOT_FOUND, "Key '%s' does not exist", k->key_id);
  PQclear(res);
  return rc;
}

static kerr_code pg_key_set_policy(store_tx *tx, const char *key_id, const char *policy,
                                   int64_t *new_version, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  p_text(&p, key_id);
  p_text(&p, policy);
  kerr_code rc = pq_run(tx, ST_KEY_SET_POLICY, &p, &res, "updating a key policy", err);
  if (!rc && PQntuples(res) == 0)
    rc = kerr_set(err, KERR_NOT_FOUND, "Key '%s' does not exist", key_id);
  else if (!rc && new_version)
    *new_version = int_col(res, 0, 0);
  PQclear(res);
  return rc;
}

static kerr_code pg_key_get_policy(store_tx *tx, const char *key_id, char **policy,
                                   int64_t *version, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  *policy = NULL;
  p_text(&p, key_id);
  kerr_code rc = pq_run(tx, ST_KEY_GET_POLICY, &p, &res, "reading a key policy", err);
  if (!rc && PQntuples(res) == 0)
    rc = kerr_set(err, KERR_NOT_FOUND, "Key '%s' does not exist", key_id);
  if (!rc) {
    rc = dup_col(res, 0, 0, false, policy, err);
    if (version) *version = int_col(res, 0, 1);
  }
  PQclear(res);
  return rc;
}

static kerr_code pg_key_delete(store_tx *tx, const char *key_id, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  p_text(&p, key_id);
  kerr_code rc = pq_run(tx, ST_KEY_DELETE, &p, &res, "deleting a key", err);
  PQclear(res);
  return rc;
}

/* The first column of every row (at most `limit`) as key ids. */
static kerr_code collect_ids(PGresult *r, size_t limit, char (**ids)[UUID_STR_LEN], size_t *n,
                             kerr *err) {
  size_t rows = (size_t)PQntuples(r);
  char(*arr)[UUID_STR_LEN] = calloc(limit ? limit : 1, UUID_STR_LEN);
  *ids = NULL;
  *n = 0;
  if (!arr) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  if (rows > limit) rows = limit;
  for (size_t i = 0; i < rows; i++) copy_col(r, (int)i, 0, arr[i], UUID_STR_LEN);
  *ids = arr;
  *n = rows;
  return KERR_OK;
}

static kerr_code pg_key_list(store_tx *tx, const char *account_id, const char *region,
                             const char *after, size_t limit, char (**ids)[UUID_STR_LEN],
                             size_t *n, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  *ids = NULL;
  *n = 0;
  p_text(&p, account_id);
  p_text(&p, region);
  p_int(&p, (int64_t)limit);
  p_text(&p, after ? after : "");
  kerr_code rc = pq_run(tx, ST_KEY_LIST, &p, &res, "listing keys", err);
  if (!rc) rc = collect_ids(res, limit, ids, n, err);
  PQclear(res);
  return rc;
}

static kerr_code pg_keys_due(store_tx *tx, int64_t now_ms, size_t limit,
                             char (**ids)[UUID_STR_LEN], size_t *n, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  *ids = NULL;
  *n = 0;
  p_int(&p, now_ms);
  p_int(&p, (int64_t)limit);
  kerr_code rc = pq_run(tx, ST_KEYS_DUE, &p, &res, "listing keys due", err);
  if (!rc) rc = collect_ids(res, limit, ids, n, err);
  PQclear(res);
  return rc;
}

static kerr_code pg_key_count(store_tx *tx, const char *account_id, const char *region,
                              int64_t *count, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  *count = 0;
  p_text(&p, account_id);
  p_text(&p, region);
  kerr_code rc = pq_run(tx, ST_KEY_COUNT, &p, &res, "counting keys", err);
  if (!rc && PQntuples(res) == 1) *count = int_col(res, 0, 0);
  PQclear(res);
  return rc;
}

/* ----------------------------------------------------------- materials */

static kerr_code pg_material_insert(store_tx *tx, const store_material *m, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  p_text(&p, m->material_id);
  p_text(&p, m->key_id);
  p_int(&p, m->seq);
  p_blob(&p, m->wrapped, m->wrapped_len);
  p_int(&p, m->created_ms);
  p_text(&p, m->rotation_type);
  kerr_code rc = pq_run(tx, ST_MAT_INSERT, &p, &res, "storing key material", err);
  if (rc == KERR_ALREADY_EXISTS)
    rc = kerr_set(err, KERR_INTERNAL, "Storage error while storing key material: it exists.");
  PQclear(res);
  return rc;
}

static kerr_code read_material_row(PGresult *r, int row, store_material *m, kerr *err) {
  memset(m, 0, sizeof *m);
  copy_col(r, row, 0, m->material_id, sizeof m->material_id);
  copy_col(r, row, 1, m->key_id, sizeof m->key_id);
  m->seq = int_col(r, row, 2);
  kerr_code rc = blob_col(r, row, 3, 0, &m->wrapped, &m->wrapped_len, err);
  if (rc) return rc;
  if (!m->wrapped && !(m->wrapped = malloc(1)))
    return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  m->created_ms = int_col(r, row, 4);
  copy_col(r, row, 5, m->rotation_type, sizeof m->rotation_type);
  return KERR_OK;
}

static kerr_code pg_material_get(store_tx *tx, const char *material_id, store_material *out,
                                 kerr *err) {
  pq_params p = {0};
  PGresult *res;
  memset(out, 0, sizeof *out);
  p_text(&p, material_id);
  kerr_code rc = pq_run(tx, ST_MAT_GET, &p, &res, "reading key material", err);
  if (!rc && PQntuples(res) == 0) rc = kerr_set(err, KERR_NOT_FOUND, "Key material not found.");
  if (!rc && (rc = read_material_row(res, 0, out, err))) store_material_clear(out);
  PQclear(res);
  return rc;
}

static kerr_code row_material(PGresult *r, int row, void *elem, kerr *err) {
  return read_material_row(r, row, elem, err);
}

static void release_materials(void *list, size_t n) { store_material_list_free(list, n); }

static kerr_code pg_material_list(store_tx *tx, const char *key_id, store_material **out,
                                  size_t *n, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  void *list = NULL;
  *out = NULL;
  *n = 0;
  p_text(&p, key_id);
  kerr_code rc = pq_run(tx, ST_MAT_LIST, &p, &res, "listing key materials", err);
  if (!rc)
    rc = collect_rows(res, sizeof(store_material), row_material, release_materials, &list, n, err);
  PQclear(res);
  *out = list;
  return rc;
}

/* ------------------------------------------------------------- aliases */

static void alias_params(pq_params *p, const store_alias *a) {
  p_text(p, a->account_id);
  p_text(p, a->region);
  p_text(p, a->alias_name);
  p_text(p, a->key_id);
}

static void read_alias_row(PGresult *r, int row, store_alias *a) {
  memset(a, 0, sizeof *a);
  copy_col(r, row, 0, a->account_id, sizeof a->account_id);
  copy_col(r, row, 1, a->region, sizeof a->region);
  copy_col(r, row, 2, a->alias_name, sizeof a->alias_name);
  copy_col(r, row, 3, a->key_id, sizeof a->key_id);
  a->created_ms = int_col(r, row, 4);
  a->updated_ms = int_col(r, row, 5);
}

static kerr_code pg_alias_insert(store_tx *tx, const store_alias *a, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  alias_params(&p, a);
  p_int(&p, a->created_ms);
  p_int(&p, a->updated_ms);
  kerr_code rc = pq_run(tx, ST_ALIAS_INSERT, &p, &res, "creating an alias", err);
  if (rc == KERR_ALREADY_EXISTS) kerr_set(err, rc, "Alias %s already exists.", a->alias_name);
  PQclear(res);
  return rc;
}

static kerr_code pg_alias_get(store_tx *tx, const char *account_id, const char *region,
                              const char *alias_name, store_alias *out, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  memset(out, 0, sizeof *out);
  p_text(&p, account_id);
  p_text(&p, region);
  p_text(&p, alias_name);
  kerr_code rc = pq_run(tx, ST_ALIAS_GET, &p, &res, "reading an alias", err);
  if (!rc && PQntuples(res) == 0)
    rc = kerr_set(err, KERR_NOT_FOUND, "Alias %s is not found.", alias_name);
  else if (!rc)
    read_alias_row(res, 0, out);
  PQclear(res);
  return rc;
}

static kerr_code pg_alias_update(store_tx *tx, const store_alias *a, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  alias_params(&p, a);
  p_int(&p, a->updated_ms);
  kerr_code rc = pq_run(tx, ST_ALIAS_UPDATE, &p, &res, "updating an alias", err);
  if (!rc && strcmp(PQcmdTuples(res), "0") == 0)
    rc = kerr_set(err, KERR_NOT_FOUND, "Alias %s is not found.", a->alias_name);
  PQclear(res);
  return rc;
}

static kerr_code pg_alias_delete(store_tx *tx, const char *account_id, const char *region,
                                 const char *alias_name, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  p_text(&p, account_id);
  p_text(&p, region);
  p_text(&p, alias_name);
  kerr_code rc = pq_run(tx, ST_ALIAS_DELETE, &p, &res, "deleting an alias", err);
  if (!rc && strcmp(PQcmdTuples(res), "0") == 0)
    rc = kerr_set(err, KERR_NOT_FOUND, "Alias %s is not found.", alias_name);
  PQclear(res);
  return rc;
}

static kerr_code pg_alias_list(store_tx *tx, const char *account_id, const char *region,
                               const char *key_id, const char *after, size_t limit,
                               store_alias **out, size_t *n, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  *out = NULL;
  *n = 0;
  p_text(&p, account_id);
  p_text(&p, region);
  p_text(&p, after ? after : "");
  p_int(&p, (int64_t)limit);
  if (key_id) p_text(&p, key_id);
  kerr_code rc = pq_run(tx, key_id ? ST_ALIAS_LIST_BY_KEY : ST_ALIAS_LIST, &p, &res,
                        "listing aliases", err);
  if (!rc) {
    size_t rows = (size_t)PQntuples(res);
    store_alias *arr = calloc(limit ? limit : 1, sizeof *arr);
    if (rows > limit) rows = limit;
    if (!arr) {
      rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    } else {
      for (size_t i = 0; i < rows; i++) read_alias_row(res, (int)i, &arr[i]);
      *out = arr;
      *n = rows;
    }
  }
  PQclear(res);
  return rc;
}

/* ---------------------------------------------------------------- tags */

static kerr_code pg_tag_put(store_tx *tx, const char *key_id, const char *tag_key,
                            const char *tag_value, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  p_text(&p, key_id);
  p_text(&p, tag_key);
  p_text(&p, tag_value);
  kerr_code rc = pq_run(tx, ST_TAG_PUT, &p, &res, "storing a tag", err);
  PQclear(res);
  return rc;
}

static kerr_code pg_tag_delete(store_tx *tx, const char *key_id, const char *tag_key, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  p_text(&p, key_id);
  p_text(&p, tag_key);
  kerr_code rc = pq_run(tx, ST_TAG_DELETE, &p, &res, "deleting a tag", err);
  PQclear(res);
  return rc;
}

static kerr_code row_tag(PGresult *r, int row, void *elem, kerr *err) {
  store_tag *t = elem;
  kerr_code rc = dup_col(r, row, 0, false, &t->key, err);
  return rc ? rc : dup_col(r, row, 1, false, &t->value, err);
}

static void release_tags(void *list, size_t n) { store_tag_list_free(list, n); }

static kerr_code pg_tag_list(store_tx *tx, const char *key_id, store_tag **out, size_t *n,
                             kerr *err) {
  pq_params p = {0};
  PGresult *res;
  void *list = NULL;
  *out = NULL;
  *n = 0;
  p_text(&p, key_id);
  kerr_code rc = pq_run(tx, ST_TAG_LIST, &p, &res, "listing tags", err);
  if (!rc) rc = collect_rows(res, sizeof(store_tag), row_tag, release_tags, &list, n, err);
  PQclear(res);
  *out = list;
  return rc;
}

/* --------------------------------------------------- custom key stores */

static void cks_params(pq_params *p, const store_cks *c) {
  p_text(p, c->cks_id);
  p_text(p, c->account_id);
  p_text(p, c->region);
  p_text(p, c->name);
  p_text(p, c->type);
  p_text(p, c->cluster_id);
  p_text(p, c->trust_anchor_pem);
  p_blob_or_null(p, c->password_wrapped, c->password_wrapped_len);
  p_blob_or_null(p, c->pending_password_wrapped, c->pending_password_wrapped_len);
  p_text(p, c->connection_state);
  p_text(p, c->connection_error);
  p_int(p, c->created_ms);
  p_int(p, c->state_changed_ms);
  p_text(p, c->cluster_lineage);
  p_text(p, c->xks_uri_endpoint);
  p_text(p, c->xks_uri_path);
  p_text(p, c->xks_connectivity);
  p_text(p, c->xks_vpc_service_name);
  p_text(p, c->xks_vpc_service_owner);
  p_text(p, c->xks_access_key_id);
  p_blob_or_null(p, c->xks_secret_wrapped, c->xks_secret_wrapped_len);
}

static kerr_code read_cks_row(PGresult *r, int row, store_cks *c, kerr *err) {
  kerr_code rc;
  memset(c, 0, sizeof *c);
  copy_col(r, row, 0, c->cks_id, sizeof c->cks_id);
  copy_col(r, row, 1, c->account_id, sizeof c->account_id);
  copy_col(r, row, 2, c->region, sizeof c->region);
  copy_col(r, row, 3, c->name, sizeof c->name);
  copy_col(r, row, 4, c->type, sizeof c->type);
  copy_col(r, row, 5, c->cluster_id, sizeof c->cluster_id);
  if ((rc = dup_col(r, row, 6, true, &c->trust_anchor_pem, err)) ||
      (rc = blob_col(r, row, 7, 0, &c->password_wrapped, &c->password_wrapped_len, err)) ||
      (rc = blob_col(r, row, 8, 0, &c->pending_password_wrapped, &c->pending_password_wrapped_len,
                     err)))
    goto fail;
  copy_col(r, row, 9, c->connection_state, sizeof c->connection_state);
  copy_col(r, row, 10, c->connection_error, sizeof c->connection_error);
  c->created_ms = int_col(r, row, 11);
  c->state_changed_ms = int_col(r, row, 12);
  copy_col(r, row, 13, c->cluster_lineage, sizeof c->cluster_lineage);
  copy_col(r, row, 14, c->xks_uri_endpoint, sizeof c->xks_uri_endpoint);
  copy_col(r, row, 15, c->xks_uri_path, sizeof c->xks_uri_path);
  copy_col(r, row, 16, c->xks_connectivity, sizeof c->xks_connectivity);
  copy_col(r, row, 17, c->xks_vpc_service_name, sizeof c->xks_vpc_service_name);
  copy_col(r, row, 18, c->xks_vpc_service_owner, sizeof c->xks_vpc_service_owner);
  copy_col(r, row, 19, c->xks_access_key_id, sizeof c->xks_access_key_id);
  if ((rc = blob_col(r, row, 20, 0, &c->xks_secret_wrapped, &c->xks_secret_wrapped_len, err)))
    goto fail;
  return KERR_OK;
fail:
  store_cks_clear(c);
  return rc;
}

static kerr_code cks_write(store_tx *tx, enum stmt_id id, const store_cks *c, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  cks_params(&p, c);
  kerr_code rc = pq_run(tx, id, &p, &res, "writing a custom key store", err);
  if (rc == KERR_ALREADY_EXISTS && id == ST_CKS_UPDATE) {
    /* Only the name is unique among what an update writes.  (The server
     * aborted the transaction: the caller can only roll it back.) */
    kerr_set(err, rc, "Custom key store name %s is in use.", c->name);
  } else if (rc == KERR_ALREADY_EXISTS) {
    /* Not inserted (ON CONFLICT DO NOTHING): the id or the name is taken. */
    pq_params q = {0};
    PGresult *found;
    p_text(&q, c->cks_id);
    rc = pq_exec(tx, "SELECT 1 FROM custom_key_stores WHERE cks_id=$1", &q, &found,
                 "writing a custom key store", err);
    if (!rc && PQntuples(found) > 0)
      rc = kerr_set(err, KERR_ALREADY_EXISTS, "Custom key store %s already exists.", c->cks_id);
    else if (!rc)
      rc = kerr_set(err, KERR_ALREADY_EXISTS, "Custom key store name %s is in use.", c->name);
    PQclear(found);
  } else if (!rc && id == ST_CKS_UPDATE && strcmp(PQcmdTuples(res), "0") == 0) {
    rc = kerr_set(err, KERR_NOT_FOUND, "Custom key store %s not found.", c->cks_id);
  }
  PQclear(res);
  return rc;
}

static kerr_code pg_cks_insert(store_tx *tx, const store_cks *c, kerr *err) {
  return cks_write(tx, ST_CKS_INSERT, c, err);
}

static kerr_code pg_cks_update(store_tx *tx, const store_cks *c, kerr *err) {
  return cks_write(tx, ST_CKS_UPDATE, c, err);
}

static kerr_code pg_cks_get(store_tx *tx, const char *cks_id, store_cks *out, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  memset(out, 0, sizeof *out);
  p_text(&p, cks_id);
  kerr_code rc = pq_run(tx, ST_CKS_GET, &p, &res, "reading a custom key store", err);
  if (!rc && PQntuples(res) == 0) rc = kerr_set(err, KERR_NOT_FOUND, "Custom key store not found.");
  if (!rc) rc = read_cks_row(res, 0, out, err);
  PQclear(res);
  return rc;
}

static kerr_code pg_cks_state(store_tx *tx, const char *cks_id, char *state, size_t state_size,
                              char *cluster_id, size_t cluster_size, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  p_text(&p, cks_id);
  kerr_code rc = pq_run(tx, ST_CKS_STATE, &p, &res, "reading a custom key store's state", err);
  if (!rc && PQntuples(res) == 0) rc = kerr_set(err, KERR_NOT_FOUND, "Custom key store not found.");
  if (!rc) {
    copy_col(res, 0, 0, state, state_size);
    copy_col(res, 0, 1, cluster_id, cluster_size);
  }
  PQclear(res);
  return rc;
}

static kerr_code pg_cks_delete(store_tx *tx, const char *cks_id, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  p_text(&p, cks_id);
  kerr_code rc = pq_run(tx, ST_CKS_DELETE, &p, &res, "deleting a custom key store", err);
  if (!rc && strcmp(PQcmdTuples(res), "0") == 0)
    rc = kerr_set(err, KERR_NOT_FOUND, "Custom key store not found.");
  PQclear(res);
  return rc;
}

static kerr_code pg_cks_list(store_tx *tx, const char *account_id, const char *region,
                             const char *after, size_t limit, store_cks **out, size_t *n,
                             kerr *err) {
  pq_params p = {0};
  PGresult *res;
  store_cks *arr = NULL;
  size_t count = 0;
  *out = NULL;
  *n = 0;
  p_text(&p, account_id);
  p_text(&p, region);
  p_text(&p, after);
  p_int(&p, (int64_t)limit);
  kerr_code rc = pq_run(tx, ST_CKS_LIST, &p, &res, "listing custom key stores", err);
  if (rc) goto out;
  arr = calloc(limit ? limit : 1, sizeof *arr);
  if (!arr) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  for (int i = 0; i < PQntuples(res) && count < limit; i++) {
    rc = read_cks_row(res, i, &arr[count], err);
    if (rc) goto out;
    count++;
  }
  *out = arr;
  *n = count;
  arr = NULL;
  count = 0;
out:
  store_cks_list_free(arr, count);
  PQclear(res);
  return rc;
}

static kerr_code pg_cks_key_count(store_tx *tx, const char *cks_id, int64_t *count, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  *count = 0;
  p_text(&p, cks_id);
  kerr_code rc = pq_run(tx, ST_CKS_KEY_COUNT, &p, &res, "counting the keys of a custom key store",
                        err);
  if (!rc && PQntuples(res) == 1) *count = int_col(res, 0, 0);
  PQclear(res);
  return rc;
}

static kerr_code pg_cks_key_by_xks_id(store_tx *tx, const char *cks_id, const char *xks_key_id,
                                      char *key_id_out, bool *found, kerr *err) {
  pq_params p = {0};
  PGresult *res;
  key_id_out[0] = '\0';
  *found = false;
  p_text(&p, cks_id);
  p_text(&p, xks_key_id);
  kerr_code rc = pq_run(tx, ST_CKS_KEY_BY_XKS_ID, &p, &res, "looking up a key by XksKeyId", err);
  if (!rc && PQntuples(res) == 1) {
    copy_col(res, 0, 0, key_id_out, UUID_STR_LEN);
    *found = true;
  }
  PQclear(res);
  return rc;
}

/* -------------------------------------------------------- HSM clusters */

/* The one row `sql` (run once) gives, through `read` into *out, or
 * KERR_NOT_FOUND with `missing` when there is none. */
static kerr_code get_row(store_tx *tx, const char *sql, const pq_params *p, row_reader read,
                         void *out, const char *what, const char *missing, kerr *err) {
  PGresult *res;
  kerr_code rc = pq_exec(tx, sql, p, &res, what, err);
  if (!rc && PQntuples(res) == 0) rc = kerr_set(err, KERR_NOT_FOUND, "%s", missing);
  if (!rc) rc = read(res, 0, out, err);
  PQclear(res);
  return rc;
}

/* Every row `sql` (run once) gives, through `read` into a new array
 * (collect_rows); on failure *out is NULL. */
static kerr_code list_rows(store_tx *tx, const char *sql, const pq_params *p, size_t size,
                           row_reader read, void (*release)(void *list, size_t n),
                           const char *what, void **out, size_t *n, kerr *err) {
  PGresult *res;
  *out = NULL;
  *n = 0;
  kerr_code rc = pq_exec(tx, sql, p, &res, what, err);
  if (!rc) rc = collect_rows(res, size, read, release, out, n, err);
  PQclear(res);
  return rc;
}



static void cluster_params(pq_params *p, const store_hsm_cluster *c) {
  p_text(p, c->cluster_id);
  p_text(p, c->account_id);
  p_text(p, c->region);
  p_text(p, c->state);
  p_text(p, c->state_message);
  p_text(p, c->hsm_type);
  p_text(p, c->mode);
  p_text(p, c->network_type);
  p_text(p, c->lineage);
  p_text(p, c->source_backup_id);
  p_text(p, c->simulated_failure);
  p_text(p, c->security_group);
  p_text(p, c->vpc_id);
  p_int(p, c->created_ms);
  p_text(p, c->subnets ? c->subnets : "");
  p_text(p, c->tags ? c->tags : "");
  p_text(p, c->csr_pem);
  p_text(p, c->trust_anchor_pem);
  p_text(p, c->cluster_cert_pem);
}

static kerr_code read_cluster(PGresult *r, int row, void *elem, kerr *err) {
  store_hsm_cluster *c = elem;
  kerr_code rc;
  memset(c, 0, sizeof *c);
  copy_col(r, row, 0, c->cluster_id, sizeof c->cluster_id);
  copy_col(r, row, 1, c->account_id, sizeof c->account_id);
  copy_col(r, row, 2, c->region, sizeof c->region);
  copy_col(r, row, 3, c->state, sizeof c->state);
  copy_col(r, row, 4, c->state_message, sizeof c->state_message);
  copy_col(r, row, 5, c->hsm_type, sizeof c->hsm_type);
  copy_col(r, row, 6, c->mode, sizeof c->mode);
  copy_col(r, row, 7, c->network_type, sizeof c->network_type);
  copy_col(r, row, 8, c->lineage, sizeof c->lineage);
  copy_col(r, row, 9, c->source_backup_id, sizeof c->source_backup_id);
  copy_col(r, row, 10, c->simulated_failure, sizeof c->simulated_failure);
  copy_col(r, row, 11, c->security_group, sizeof c->security_group);
  copy_col(r, row, 12, c->vpc_id, sizeof c->vpc_id);
  c->created_ms = int_col(r, row, 13);
  if ((rc = dup_col(r, row, 14, false, &c->subnets, err)) ||
      (rc = dup_col(r, row, 15, false, &c->tags, err)) ||
      (rc = dup_col(r, row, 16, true, &c->csr_pem, err)) ||
      (rc = dup_col(r, row, 17, true, &c->trust_anchor_pem, err)) ||
      (rc = dup_col(r, row, 18, true, &c->cluster_cert_pem, err))) {
    store_hsm_cluster_clear(c);
    return rc;
  }
  return KERR_OK;
}

static void release_clusters(void *list, size_t n) { store_hsm_cluster_list_free(list, n); }

static kerr_code hp_cluster_insert(store_tx *tx, const store_hsm_cluster *c, kerr *err) {
  pq_params p = {0};
  cluster_params(&p, c);
  return pq_change(tx,
                   "INSERT INTO hsm_clusters (" HSM_CLUSTER_COLUMNS ") VALUES ($1,$2,$3,$4,$5,"
                   "$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19) ON CONFLICT DO NOTHING",
                   &p, KERR_ALREADY_EXISTS, "inserting a cluster", "already exists", err);
}

static kerr_code hp_cluster_update(store_tx *tx, const store_hsm_cluster *c, kerr *err) {
  pq_params p = {0};
  cluster_params(&p, c);
  return pq_change(tx,
                   "UPDATE hsm_clusters SET state=$4, state_message=$5, hsm_type=$6, mode=$7, "
                   "network_type=$8, lineage=$9, source_backup_id=$10, simulated_failure=$11, "
                   "security_group=$12, vpc_id=$13, subnets=$15, tags=$16, csr_pem=$17, "
                   "trust_anchor_pem=$18, cluster_cert_pem=$19 WHERE cluster_id=$1 AND "
                   "account_id=$2 AND region=$3 AND created_ms=$14",
                   &p, KERR_NOT_FOUND, "updating a cluster", "no such cluster", err);
}

static kerr_code hp_cluster_get(store_tx *tx, const char *cluster_id, store_hsm_cluster *out,
                                kerr *err) {
  pq_params p = {0};
  memset(out, 0, sizeof *out);
  p_text(&p, cluster_id);
  return get_row(tx,
                 "SELECT " HSM_CLUSTER_COLUMNS " FROM hsm_clusters WHERE cluster_id=$1",
                 &p, read_cluster, out, "reading a cluster", "no such cluster", err);
}

static kerr_code hp_cluster_list(store_tx *tx, const char *account_id, const char *region,
                                 store_hsm_cluster **out, size_t *n, kerr *err) {
  pq_params p = {0};
  void *list = NULL;
  p_text(&p, account_id);
  p_text(&p, region);
  kerr_code rc = list_rows(tx,
                           "SELECT " HSM_CLUSTER_COLUMNS " FROM hsm_clusters WHERE ($1::text IS "
                           "NULL OR (account_id=$1 AND region=$2::text)) ORDER BY cluster_id",
                           &p, sizeof(store_hsm_cluster), read_cluster, release_clusters,
                           "listing clusters", &list, n, err);
  *out = list;
  return rc;
}


static void hsm_params(pq_params *p, const store_hsm *h) {
  p_text(p, h->hsm_id);
  p_text(p, h->cluster_id);
  p_text(p, h->availability_zone);
  p_text(p, h->subnet_id);
  p_text(p, h->eni_id);
  p_text(p, h->eni_ip);
  p_text(p, h->state);
  p_text(p, h->state_message);
  p_int(p, h->created_ms);
  p_int(p, h->pool_index);
  p_text(p, h->token_label);
}

static kerr_code hp_hsm_insert(store_tx *tx, const store_hsm *h, kerr *err) {
  pq_params p = {0};
  hsm_params(&p, h);
  return pq_change(tx,
                   "INSERT INTO hsm_hsms (" HSM_HSM_COLUMNS ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,"
                   "$9,$10,$11) ON CONFLICT DO NOTHING",
                   &p, KERR_ALREADY_EXISTS, "inserting an HSM", "already exists", err);
}

static kerr_code hp_hsm_update(store_tx *tx, const store_hsm *h, kerr *err) {
  pq_params p = {0};
  hsm_params(&p, h);
  return pq_change(tx,
                   "UPDATE hsm_hsms SET availability_zone=$3, subnet_id=$4, eni_id=$5, eni_ip=$6, "
                   "state=$7, state_message=$8, pool_index=$10, token_label=$11 WHERE hsm_id=$1 "
                   "AND cluster_id=$2 AND created_ms=$9",
                   &p, KERR_NOT_FOUND, "updating an HSM", "no such HSM", err);
}

static kerr_code read_hsm(PGresult *r, int row, void *elem, kerr *err) {
  store_hsm *h = elem;
  (void)err;
  copy_col(r, row, 0, h->hsm_id, sizeof h->hsm_id);
  copy_col(r, row, 1, h->cluster_id, sizeof h->cluster_id);
  copy_col(r, row, 2, h->availability_zone, sizeof h->availability_zone);
  copy_col(r, row, 3, h->subnet_id, sizeof h->subnet_id);
  copy_col(r, row, 4, h->eni_id, sizeof h->eni_id);
  copy_col(r, row, 5, h->eni_ip, sizeof h->eni_ip);
  copy_col(r, row, 6, h->state, sizeof h->state);
  copy_col(r, row, 7, h->state_message, sizeof h->state_message);
  h->created_ms = int_col(r, row, 8);
  h->pool_index = (int)int_col(r, row, 9);
  copy_col(r, row, 10, h->token_label, sizeof h->token_label);
  return KERR_OK;
}

static kerr_code hp_hsm_list(store_tx *tx, const char *cluster_id, store_hsm **out, size_t *n,
                             kerr *err) {
  pq_params p = {0};
  void *list = NULL;
  p_text(&p, cluster_id);
  kerr_code rc = list_rows(tx,
                           "SELECT " HSM_HSM_COLUMNS " FROM hsm_hsms WHERE ($1::text IS NULL OR "
                           "cluster_id=$1) ORDER BY created_ms, hsm_id",
                           &p, sizeof(store_hsm), read_hsm, NULL, "listing HSMs", &list, n, err);
  *out = list;
  return rc;
}


/* A fixed-size bytea column into dst[size]; left zero when the size differs. */
static void fixed_blob_col(PGresult *r, int row, int c, uint8_t *dst, size_t size) {
  uint8_t *b = NULL;
  size_t len = 0;
  if (blob_col(r, row, c, size, &b, &len, NULL) == KERR_OK && len == size) memcpy(dst, b, size);
  free(b);
}

static kerr_code read_user(PGresult *r, int row, void *elem, kerr *err) {
  store_hsm_user *u = elem;
  (void)err;
  memset(u, 0, sizeof *u);
  copy_col(r, row, 0, u->cluster_id, sizeof u->cluster_id);
  copy_col(r, row, 1, u->username, sizeof u->username);
  copy_col(r, row, 2, u->role, sizeof u->role);
  fixed_blob_col(r, row, 3, u->salt, sizeof u->salt);
  fixed_blob_col(r, row, 4, u->hash, sizeof u->hash);
  u->failed_logins = (int)int_col(r, row, 5);
  u->locked = int_col(r, row, 6) != 0;
  u->logged_in = int_col(r, row, 7) != 0;
  return KERR_OK;
}

static kerr_code hp_user_put(store_tx *tx, const store_hsm_user *u, kerr *err) {
  pq_params p = {0};
  p_text(&p, u->cluster_id);
  p_text(&p, u->username);
  p_text(&p, u->role);
  p_blob(&p, u->salt, sizeof u->salt);
  p_blob(&p, u->hash, sizeof u->hash);
  p_int(&p, u->failed_logins);
  p_int(&p, u->locked ? 1 : 0);
  p_int(&p, u->logged_in ? 1 : 0);
  return pq_change(tx,
                   "INSERT INTO hsm_users (" HSM_USER_COLUMNS ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8) "
                   "ON CONFLICT (cluster_id, username) DO UPDATE SET role=EXCLUDED.role, "
                   "salt=EXCLUDED.salt, hash=EXCLUDED.hash, failed_logins=EXCLUDED.failed_logins, "
                   "locked=EXCLUDED.locked, logged_in=EXCLUDED.logged_in",
                   &p, KERR_OK, "writing a user", NULL, err);
}

static kerr_code hp_user_get(store_tx *tx, const char *cluster_id, const char *username,
                             store_hsm_user *out, kerr *err) {
  pq_params p = {0};
  p_text(&p, cluster_id);
  p_text(&p, username);
  return get_row(tx,
                 "SELECT " HSM_USER_COLUMNS " FROM hsm_users WHERE cluster_id=$1 AND "
                 "username=$2", &p, read_user, out, "reading a user", "no such user", err);
}

static kerr_code hp_user_delete(store_tx *tx, const char *cluster_id, const char *username,
                                kerr *err) {
  pq_params p = {0};
  p_text(&p, cluster_id);
  p_text(&p, username);
  return pq_change(tx, "DELETE FROM hsm_users WHERE cluster_id=$1 AND username=$2", &p,
                   KERR_NOT_FOUND, "deleting a user", "no such user", err);
}

static kerr_code hp_user_list(store_tx *tx, const char *cluster_id, store_hsm_user **out,
                              size_t *n, kerr *err) {
  pq_params p = {0};
  void *list = NULL;
  p_text(&p, cluster_id);
  kerr_code rc = list_rows(tx,
                           "SELECT " HSM_USER_COLUMNS " FROM hsm_users WHERE cluster_id=$1 "
                           "ORDER BY username",
                           &p, sizeof(store_hsm_user), read_user, NULL, "listing users", &list, n,
                           err);
  *out = list;
  return rc;
}

static kerr_code hp_blob_put(store_tx *tx, const char *lineage, const store_hsm_blob *b,
                             kerr *err) {
  pq_params p = {0};
  p_text(&p, lineage);
  p_text(&p, b->label);
  p_blob(&p, b->wrapped, b->wrapped_len);
  return pq_change(tx,
                   "INSERT INTO hsm_key_blobs (lineage, label, wrapped, created_ms) VALUES "
                   "($1,$2,$3, (extract(epoch FROM clock_timestamp()) * 1000)::bigint) "
                   "ON CONFLICT (lineage, label) DO UPDATE SET wrapped=EXCLUDED.wrapped, "
                   "created_ms=EXCLUDED.created_ms",
                   &p, KERR_OK, "writing a key blob", NULL, err);
}

static kerr_code hp_blob_delete(store_tx *tx, const char *lineage, const char *label, kerr *err) {
  pq_params p = {0};
  p_text(&p, lineage);
  p_text(&p, label);
  return pq_change(tx, "DELETE FROM hsm_key_blobs WHERE lineage=$1 AND label=$2", &p,
                   KERR_OK, "deleting a key blob", NULL, err);
}

static kerr_code read_blob(PGresult *r, int row, void *elem, kerr *err) {
  store_hsm_blob *b = elem;
  uint8_t *bytes = NULL;
  size_t len = 0;
  copy_col(r, row, 0, b->label, sizeof b->label);
  kerr_code rc = blob_col(r, row, 1, sizeof b->wrapped, &bytes, &len, err);
  if (rc) return kerr_set(err, KERR_INTERNAL, "stored key blob has a bad length");
  if (len) memcpy(b->wrapped, bytes, len);
  b->wrapped_len = len;
  free(bytes);
  return KERR_OK;
}

static kerr_code hp_blob_list(store_tx *tx, const char *lineage, store_hsm_blob **out, size_t *n,
                              kerr *err) {
  pq_params p = {0};
  void *list = NULL;
  p_text(&p, lineage);
  kerr_code rc = list_rows(tx,
                           "SELECT label, wrapped FROM hsm_key_blobs WHERE lineage=$1 "
                           "ORDER BY created_ms, label",
                           &p, sizeof(store_hsm_blob), read_blob, NULL, "listing key blobs", &list,
                           n, err);
  *out = list;
  return rc;
}


static kerr_code read_backup(PGresult *r, int row, void *elem, kerr *err) {
  store_hsm_backup *b = elem;
  (void)err;
  memset(b, 0, sizeof *b);
  copy_col(r, row, 0, b->backup_id, sizeof b->backup_id);
  copy_col(r, row, 1, b->cluster_id, sizeof b->cluster_id);
  copy_col(r, row, 2, b->account_id, sizeof b->account_id);
  copy_col(r, row, 3, b->region, sizeof b->region);
  copy_col(r, row, 4, b->lineage, sizeof b->lineage);
  copy_col(r, row, 5, b->state, sizeof b->state);
  copy_col(r, row, 6, b->hsm_type, sizeof b->hsm_type);
  copy_col(r, row, 7, b->mode, sizeof b->mode);
  b->created_ms = int_col(r, row, 8);
  return KERR_OK;
}

static kerr_code hp_backup_insert(store_tx *tx, const store_hsm_backup *b, kerr *err) {
  pq_params p = {0};
  p_text(&p, b->backup_id);
  p_text(&p, b->cluster_id);
  p_text(&p, b->account_id);
  p_text(&p, b->region);
  p_text(&p, b->lineage);
  p_text(&p, b->state);
  p_text(&p, b->hsm_type);
  p_text(&p, b->mode);
  p_int(&p, b->created_ms);
  return pq_change(tx,
                   "INSERT INTO hsm_backups (" HSM_BACKUP_COLUMNS ") VALUES ($1,$2,$3,$4,$5,$6,"
                   "$7,$8,$9) ON CONFLICT DO NOTHING",
                   &p, KERR_ALREADY_EXISTS, "inserting a backup", "already exists", err);
}

static kerr_code hp_backup_get(store_tx *tx, const char *backup_id, store_hsm_backup *out,
                               kerr *err) {
  pq_params p = {0};
  p_text(&p, backup_id);
  return get_row(tx,
                 "SELECT " HSM_BACKUP_COLUMNS " FROM hsm_backups WHERE backup_id=$1",
                 &p, read_backup, out, "reading a backup", "no such backup", err);
}

static kerr_code hp_backup_list(store_tx *tx, const char *account_id, const char *region,
                                store_hsm_backup **out, size_t *n, kerr *err) {
  pq_params p = {0};
  void *list = NULL;
  p_text(&p, account_id);
  p_text(&p, region);
  kerr_code rc = list_rows(tx,
                           "SELECT " HSM_BACKUP_COLUMNS " FROM hsm_backups WHERE account_id=$1 "
                           "AND region=$2 ORDER BY created_ms, backup_id",
                           &p, sizeof(store_hsm_backup), read_backup, NULL, "listing backups",
                           &list, n, err);
  *out = list;
  return rc;
}

static kerr_code hp_secret_put(store_tx *tx, const char *owner, const char *name,
                               const uint8_t *wrapped, size_t len, kerr *err) {
  pq_params p = {0};
  p_text(&p, owner);
  p_text(&p, name);
  p_blob(&p, wrapped, len);
  return pq_change(tx,
                   "INSERT INTO hsm_secrets (owner, name, wrapped) VALUES ($1,$2,$3) "
                   "ON CONFLICT (owner, name) DO UPDATE SET wrapped=EXCLUDED.wrapped",
                   &p, KERR_OK, "writing a wrapped secret", NULL, err);
}

/* One bytea value of a one-column query, or KERR_NOT_FOUND with `missing`. */
static kerr_code get_one_blob(store_tx *tx, const char *sql, const pq_params *p,
                              const char *what, const char *missing, uint8_t **out, size_t *len,
                              kerr *err) {
  PGresult *res;
  *out = NULL;
  *len = 0;
  kerr_code rc = pq_exec(tx, sql, p, &res, what, err);
  if (!rc && PQntuples(res) == 0) rc = kerr_set(err, KERR_NOT_FOUND, "%s", missing);
  if (!rc) rc = blob_col(res, 0, 0, 0, out, len, err);
  if (!rc && !*out && !(*out = malloc(1))) rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
  PQclear(res);
  return rc;
}

static kerr_code hp_secret_get(store_tx *tx, const char *owner, const char *name, uint8_t **out,
                               size_t *len, kerr *err) {
  pq_params p = {0};
  p_text(&p, owner);
  p_text(&p, name);
  return get_one_blob(tx, "SELECT wrapped FROM hsm_secrets WHERE owner=$1 AND name=$2", &p,
                      "reading a wrapped secret", "no such secret", out, len, err);
}

static const store_hsm_ops pg_hsm_ops = {
    .cluster_insert = hp_cluster_insert,
    .cluster_get = hp_cluster_get,
    .cluster_update = hp_cluster_update,
    .cluster_list = hp_cluster_list,
    .hsm_insert = hp_hsm_insert,
    .hsm_update = hp_hsm_update,
    .hsm_list = hp_hsm_list,
    .user_put = hp_user_put,
    .user_get = hp_user_get,
    .user_delete = hp_user_delete,
    .user_list = hp_user_list,
    .blob_put = hp_blob_put,
    .blob_delete = hp_blob_delete,
    .blob_list = hp_blob_list,
    .backup_insert = hp_backup_insert,
    .backup_get = hp_backup_get,
    .backup_list = hp_backup_list,
    .secret_put = hp_secret_put,
    .secret_get = hp_secret_get,
};

/* ------------------------------------------------------ store metadata */

static kerr_code pg_meta_get(store_tx *tx, const char *name, uint8_t **value, size_t *len,
                             kerr *err) {
  pq_params p = {0};
  p_text(&p, name);
  return get_one_blob(tx, "SELECT value FROM store_meta WHERE name=$1", &p,
                      "reading the store's metadata", "no such metadata", value, len, err);
}

static kerr_code pg_meta_put(store_tx *tx, const char *name, const uint8_t *value, size_t len,
                             kerr *err) {
  pq_params p = {0};
  p_text(&p, name);
  p_blob(&p, value, len);
  return pq_change(tx,
                   "INSERT INTO store_meta (name, value) VALUES ($1,$2) "
                   "ON CONFLICT (name) DO UPDATE SET value=EXCLUDED.value",
                   &p, KERR_OK, "writing the store's metadata", NULL, err);
}

static kerr_code pg_wrapped_sample(store_tx *tx, store_wrapped_kind kind, store_wrapped_sample *out,
                                   kerr *err) {
  static const char *const sql[] = {
      [STORE_WRAPPED_KEY_MATERIAL] = "SELECT key_id, material_id, wrapped FROM key_materials LIMIT 1",
      [STORE_WRAPPED_CKS_PASSWORD] = "SELECT cks_id, '', password_wrapped FROM custom_key_stores "
                                     "WHERE password_wrapped IS NOT NULL LIMIT 1",
      [STORE_WRAPPED_HSM_SECRET] = "SELECT owner, name, wrapped FROM hsm_secrets LIMIT 1",
  };
  PGresult *res;
  memset(out, 0, sizeof *out);
  if ((unsigned)kind >= sizeof sql / sizeof *sql)
    return kerr_set(err, KERR_INTERNAL, "unknown kind of wrapped value");
  kerr_code rc = pq_exec(tx, sql[kind], NULL, &res, "reading a wrapped value", err);
  if (!rc && PQntuples(res) == 0)
    rc = kerr_set(err, KERR_NOT_FOUND, "no wrapped value of that kind");
  if (!rc) {
    copy_col(res, 0, 0, out->owner, sizeof out->owner);
    copy_col(res, 0, 1, out->name, sizeof out->name);
    rc = blob_col(res, 0, 2, 0, &out->wrapped, &out->wrapped_len, err);
    if (!rc && !out->wrapped && !(out->wrapped = malloc(1)))
      rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
  PQclear(res);
  return rc;
}

/* ------------------------------------------------------------ the lease
 *
 * Background work (sweeps, connect workers, recoveries, health checks) runs
 * in one node at a time: the one holding the lease, a session advisory lock
 * (LEASE_LOCK) on a connection of its own.  The server releases it when
 * that session ends, at once when the node is killed (its sockets close).
 * A keeper thread checks the connection every KEEPER_INTERVAL_MS: a holder
 * whose connection ended stops holding the lease (lease_held turns false)
 * and tries to take it again with the others; a node without the lease
 * tries to take it.  The server may not have seen this node's old session
 * end (a break on this side only): that session, still holding the lease,
 * is ended, since nobody else can use it. */

/* Connect the lease's connection (if needed) and try to take the lease:
 * KERR_OK (held; s->lease_pid is the session), KERR_CONFLICT when another
 * session holds it, else KERR_INTERNAL. */
static kerr_code try_lease(pg_store *s, kerr *err) {
  char sql[96];
  PGresult *res;
  kerr_code rc = KERR_OK;
  if (!s->lease_conn) {
    rc = conn_open(s->url, "kmsd lease", s->busy_timeout_ms, &s->lease_conn, err);
    if (rc) return rc;
  }
  snprintf(sql, sizeof sql, "SELECT pg_try_advisory_lock(%lld)", (long long)LEASE_LOCK);
  res = PQexec(s->lease_conn, sql);
  if (!result_ok(res) || PQntuples(res) != 1) {
    result_error(res, s->lease_conn, "taking the lease", err);
    rc = KERR_INTERNAL;
  } else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
    rc = kerr_set(err, KERR_CONFLICT, "Another kmsd holds the lease.");
  } else {
    s->lease_pid = PQbackendPID(s->lease_conn);
    s->old_lease_pid = 0; /* its pid may be another session's some day */
    atomic_store(&s->lease, true);
  }
  PQclear(res);
  return rc;
}

/* The backend holding the lease now (0: none, or not known). */
static int lease_holder(pg_store *s) {
  char sql[320];
  int pid = 0;
  snprintf(sql, sizeof sql,
           "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
           "database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND "
           "((classid::bigint << 32) | objid::bigint) = %lld AND objsubid = 1 LIMIT 1",
           (long long)LEASE_LOCK);
  PGresult *res = PQexec(s->lease_conn, sql);
  if (result_ok(res) && PQntuples(res) == 1) pid = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
  PQclear(res);
  return pid;
}

/* What became of a SELECT 1 on a session (ping_wait). */
typedef enum { PING_OK, PING_PENDING, PING_FAILED } ping_result;

/* Send a SELECT 1 on `db` (with `send`; else one sent earlier is still out)
 * and wait up to `deadline_ms` for its whole answer.  A connection whose
 * other end vanished without a word would block a plain PQexec until the
 * kernel gives up (tcp_user_timeout, 30 s); this returns PING_PENDING at the
 * deadline instead, the query still out: ask again with send false, or
 * close the connection.  PING_FAILED: the session is gone or refused. */
static ping_result ping_wait(PGconn *db, bool send, int deadline_ms) {
  struct timespec start, now;
  bool ok = false, bad = false;
  if (!db || PQstatus(db) != CONNECTION_OK) return PING_FAILED;
  if (send && !PQsendQuery(db, "SELECT 1")) return PING_FAILED;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    if (!PQconsumeInput(db)) return PING_FAILED;
    if (!PQisBusy(db)) {
      /* A whole result is in: taking it does not block.  NULL once the
       * server said it is ready for the next query. */
      PGresult *res = PQgetResult(db);
      if (!res) return ok && !bad ? PING_OK : PING_FAILED;
      if (PQresultStatus(res) == PGRES_TUPLES_OK)
        ok = true;
      else
        bad = true;
      PQclear(res);
      continue;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t left = deadline_ms - ((now.tv_sec - start.tv_sec) * 1000 +
                                  (now.tv_nsec - start.tv_nsec) / 1000000);
    if (left <= 0) return PING_PENDING;
    struct pollfd pfd = {PQsocket(db), POLLIN, 0};
    if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR) return PING_FAILED;
  }
}

/* One tick of the keeper (see above). */
static void keep_lease(pg_store *s) {
  kerr e;
  kerr_code rc;
  bool lost_now = false;
  if (atomic_load(&s->lease) || s->lease_ping_pending) {
    ping_result r = ping_wait(s->lease_conn, !s->lease_ping_pending, LEASE_PING_MS);
    if (r == PING_OK) {
      s->lease_ping_pending = false;
      if (!atomic_exchange(&s->lease, true))
        log_msg(LOG_INFO, NULL, "store: the lease's connection answers again: this node runs the "
                "background work again");
      return;
    }
    if (r == PING_PENDING) {
      /* A stall or a silent break.  The background work pauses, but the
       * lease stays this node's while the server keeps its session, so no
       * other node can take it meanwhile: a stall costs no overlap. */
      s->lease_ping_pending = true;
      if (atomic_exchange(&s->lease, false))
        log_msg(LOG_WARN, NULL, "store: the lease's connection does not answer; background work "
                "paused until it does");
      return;
    }
    s->lease_ping_pending = false;
    lost_now = true;
    atomic_store(&s->lease, false);
    s->old_lease_pid = s->lease_pid;
    s->lease_pid = 0;
    log_msg(LOG_WARN, NULL,
            "store: the lease's connection to the database ended; this node runs no background "
            "work until it holds the lease again");
  }
  if (s->lease_conn && (lost_now || PQstatus(s->lease_conn) != CONNECTION_OK)) {
    /* Lost just now, or dead: a connection that did not answer in time
     * cannot be trusted with the next query either. */
    PQfinish(s->lease_conn);
    s->lease_conn = NULL;
  }
  kerr_clear(&e);
  rc = try_lease(s, &e);
  if (rc == KERR_OK) {
    log_msg(LOG_INFO, NULL, "store: this node holds the lease: it runs the background work");
    return;
  }
  if (rc != KERR_CONFLICT) {
    if (s->lease_conn && PQstatus(s->lease_conn) != CONNECTION_OK) {
      PQfinish(s->lease_conn);
      s->lease_conn = NULL;
    }
    return; /* the database does not answer: tried again at the next tick */
  }
  /* Held by this node's own old session, which the server has not seen end
   * (the break was on this side only)?  End it: the lease is free at the
   * next tick, for whichever node takes it first. */
  int holder = lease_holder(s);
  if (holder && holder == s->old_lease_pid) {
    char sql[64];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", holder);
    PQclear(PQexec(s->lease_conn, sql));
    log_msg(LOG_WARN, NULL, "store: ended this node's old session (%d), which kept the lease",
            holder);
  }
  /* Ended, or gone since another session holds the lease (or none does):
   * its pid may be another session's some day. */
  s->old_lease_pid = 0;
}

static void *keeper_main(void *arg) {
  pg_store *s = arg;
  pthread_mutex_lock(&s->keeper_lock);
  while (!s->stopping) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += KEEPER_INTERVAL_MS / 1000;
    ts.tv_nsec += (long)(KEEPER_INTERVAL_MS % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->keeper_cond, &s->keeper_lock, &ts);
    if (s->stopping) break;
    pthread_mutex_unlock(&s->keeper_lock);
    keep_lease(s);
    pthread_mutex_lock(&s->keeper_lock);
  }
  pthread_mutex_unlock(&s->keeper_lock);
  return NULL;
}

static bool pg_lease_held(store *base) {
  pg_store *s = (pg_store *)base;
  return atomic_load(&s->lease);
}

/* ------------------------------------------------------ named locks */

/* A named lock is a session advisory lock on a connection of its own,
 * outside the pool: held across waits on HSMs and proxies without taking a
 * connection from requests, and released by the server if this process
 * dies.  Its key is (NAMED_LOCK_CLASS, hashtext(name)): two names that hash
 * alike only share a lock. */
struct store_lock {
  PGconn *db;
};

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static kerr_code pg_lock_named(store *base, const char *name, int wait_ms, store_lock **out,
                               kerr *err) {
  pg_store *s = (pg_store *)base;
  store_lock *l;
  char cls[16];
  const char *params[2] = {cls, name};
  struct timespec start, now;
  kerr_code rc;
  *out = NULL;
  clock_gettime(CLOCK_MONOTONIC, &start);
  l = calloc(1, sizeof *l);
  if (!l) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  rc = conn_open(s->url, "kmsd lock", s->busy_timeout_ms, &l->db, err);
  if (rc) {
    atomic_store(&s->reachable, false);
    free(l);
    return rc;
  }
  snprintf(cls, sizeof cls, "%d", NAMED_LOCK_CLASS);
  for (;;) {
    PGresult *res = PQexecParams(l->db, "SELECT pg_try_advisory_lock($1::int, hashtext($2))", 2,
                                 NULL, params, NULL, NULL, 0);
    bool ok = result_ok(res) && PQntuples(res) == 1;
    bool got = ok && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    if (!ok) rc = result_error(res, l->db, "taking a lock", err);
    PQclear(res);
    if (!ok || got) break;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 >= wait_ms) {
      rc = kerr_set(err, KERR_CONFLICT, "The lock %s is held elsewhere.", name);
      break;
    }
    sleep_ms(NAMED_LOCK_POLL_MS);
  }
  if (rc) {
    PQfinish(l->db);
    free(l);
    return rc;
  }
  *out = l;
  return KERR_OK;
}

/* A worker may wait for the database: only a session that is gone (or does
 * not answer within LOCK_PING_MS) counts as a lost lock, not a slow one. */
static bool pg_lock_held(store_lock *l) {
  return l && ping_wait(l->db, true, LOCK_PING_MS) == PING_OK;
}

/* Ending the session releases the lock: no unlock statement to lose. */
static void pg_unlock_named(store_lock *l) {
  if (!l) return;
  PQfinish(l->db);
  free(l);
}

/* ----------------------------------------------------------- lifecycle */

static kerr_code read_version(store_tx *tx, int *version, kerr *err) {
  PGresult *res;
  kerr_code rc = pq_exec(tx, "SELECT COALESCE(MAX(version), 0) FROM schema_version", NULL, &res,
                         "reading the schema version", err);
  *version = rc || PQntuples(res) != 1 ? 0 : (int)int_col(res, 0, 0);
  PQclear(res);
  return rc;
}

static kerr_code pg_schema_version(store *base, int *version, kerr *err) {
  store_tx *tx = NULL;
  kerr_code rc = pg_begin(base, false, &tx, err);
  if (rc) return rc;
  rc = read_version(tx, version, err);
  pg_rollback(tx);
  return rc;
}

static kerr_code simple(PGconn *db, const char *sql, const char *what, kerr *err) {
  PGresult *res = PQexec(db, sql);
  kerr_code rc = result_ok(res) ? KERR_OK : result_error(res, db, what, err);
  PQclear(res);
  return rc;
}

/* Apply each pending migration in its own transaction, under a session
 * advisory lock held from before the version is read to after the last
 * commit: two nodes starting on a new database apply each step once. */
static kerr_code migrate(store_tx *tx, kerr *err) {
  char sql[160];
  kerr_code rc;
  snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%lld)", (long long)MIGRATE_LOCK);
  rc = simple(tx->db, sql, "waiting for the migration lock", err);
  if (rc) return rc;
  rc = simple(tx->db,
              "CREATE TABLE IF NOT EXISTS schema_version ("
              " version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL)",
              "creating the schema_version table", err);
  for (; !rc;) {
    int version = 0;
    rc = simple(tx->db, "BEGIN", "starting a migration", err);
    if (rc) break;
    rc = read_version(tx, &version, err);
    if (!rc && version > N_MIGRATIONS)
      rc = kerr_set(err, KERR_INTERNAL,
                    "The database schema (version %d) is newer than this program (%d).", version,
                    N_MIGRATIONS);
    if (!rc && version == N_MIGRATIONS) {
      rc = simple(tx->db, "COMMIT", "finishing migrations", err);
      break;
    }
    if (!rc) rc = simple(tx->db, migrations[version], "migrating the schema", err);
    if (!rc) {
      snprintf(sql, sizeof sql,
               "INSERT INTO schema_version (version, applied_ms) VALUES "
               "(%d, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)",
               version + 1);
      rc = simple(tx->db, sql, "recording the schema version", err);
    }
    if (!rc) rc = simple(tx->db, "COMMIT", "committing a migration", err);
    if (rc && PQtransactionStatus(tx->db) != PQTRANS_IDLE) PQclear(PQexec(tx->db, "ROLLBACK"));
  }
  snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(%lld)", (long long)MIGRATE_LOCK);
  PQclear(PQexec(tx->db, sql));
  return rc;
}

static void pg_close(store *base) {
  pg_store *s = (pg_store *)base;
  if (!s) return;
  if (s->keeper_running) {
    pthread_mutex_lock(&s->keeper_lock);
    s->stopping = true;
    pthread_cond_signal(&s->keeper_cond);
    pthread_mutex_unlock(&s->keeper_lock);
    pthread_join(s->keeper, NULL);
  }
  pthread_mutex_destroy(&s->keeper_lock);
  pthread_cond_destroy(&s->keeper_cond);
  /* Every transaction must be finished: only idle connections remain. */
  for (size_t i = 0; i < s->nidle; i++) {
    PQfinish(s->idle[i]->db);
    free(s->idle[i]);
  }
  if (s->lease_conn) PQfinish(s->lease_conn);
  pthread_mutex_destroy(&s->pool_lock);
  pthread_cond_destroy(&s->pool_cond);
  pthread_mutex_destroy(&s->writer_gate);
  free(s->url);
  free(s);
}

static const store_ops pg_ops = {
    .name = "postgresql",
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .reads_uncommitted = pg_reads_uncommitted,
    .change_stamp = pg_change_stamp,
    .reachable = pg_reachable,
    .lease_held = pg_lease_held,
    .lock_named = pg_lock_named,
    .unlock_named = pg_unlock_named,
    .lock_held = pg_lock_held,
    .key_insert = pg_key_insert,
    .key_get = pg_key_get,
    .key_update = pg_key_update,
    .key_set_policy = pg_key_set_policy,
    .key_get_policy = pg_key_get_policy,
    .key_delete = pg_key_delete,
    .key_list = pg_key_list,
    .key_count = pg_key_count,
    .keys_due = pg_keys_due,
    .material_insert = pg_material_insert,
    .material_get = pg_material_get,
    .material_list = pg_material_list,
    .alias_insert = pg_alias_insert,
    .alias_get = pg_alias_get,
    .alias_update = pg_alias_update,
    .alias_delete = pg_alias_delete,
    .alias_list = pg_alias_list,
    .tag_put = pg_tag_put,
    .tag_delete = pg_tag_delete,
    .tag_list = pg_tag_list,
    .cks_insert = pg_cks_insert,
    .cks_get = pg_cks_get,
    .cks_state = pg_cks_state,
    .cks_update = pg_cks_update,
    .cks_delete = pg_cks_delete,
    .cks_list = pg_cks_list,
    .cks_key_count = pg_cks_key_count,
    .cks_key_by_xks_id = pg_cks_key_by_xks_id,
    .meta_get = pg_meta_get,
    .meta_put = pg_meta_put,
    .wrapped_sample = pg_wrapped_sample,
    .schema_version = pg_schema_version,
    .close = pg_close,
    .hsm = &pg_hsm_ops,
};

int store_pg_latest_version(void) { return N_MIGRATIONS; }

bool store_pg_is_url(const char *url) {
  return url && (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0);
}

/* Where a URI's parts are, as libpq reads them: its authority runs to the
 * first '/', and its user information to the authority's last '@'.  NULL
 * `at` when it has none; `query` is the first '?' after the user
 * information (NULL: none). */
typedef struct url_parts {
  const char *rest; /* after "://" */
  const char *at;
  const char *colon; /* the ':' before the password, in the user information */
  const char *query;
} url_parts;

static bool split_uri(const char *url, url_parts *u) {
  const char *scheme_end =
      url + strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
  if (scheme_end == url || strncmp(scheme_end, "://", 3) != 0) return false;
  u->rest = scheme_end + 3;
  u->at = NULL;
  for (const char *c = u->rest; *c && *c != '/'; c++)
    if (*c == '@') u->at = c;
  u->colon = u->at ? memchr(u->rest, ':', (size_t)(u->at - u->rest)) : NULL;
  u->query = strchr(u->at ? u->at + 1 : u->rest, '?');
  return true;
}

/* Whether libpq and split_uri can only read `url` the same way: at most one
 * '@' in the authority (libpq splits at the first one) and none in the path
 * (a password holding a raw '/' puts the rest of it there).  Anything else
 * is refused before libpq sees it, so that what kmsd hides as the password
 * is what libpq takes for it. */
static bool uri_unambiguous(const char *url) {
  url_parts u;
  if (!split_uri(url, &u)) return false;
  size_t authority = strcspn(u.rest, "/");
  size_t ats = 0;
  for (size_t i = 0; i < authority; i++) ats += u.rest[i] == '@';
  const char *path = u.rest + authority;
  return ats <= 1 && !memchr(path, '@', strcspn(path, "?"));
}

void store_pg_redact(const char *url, char *out, size_t cap) {
  url_parts u;
  if (!cap) return;
  out[0] = '\0';
  if (!url) return;
  if (!split_uri(url, &u)) {
    /* Not a URI (key=value form): say nothing of what it holds. */
    snprintf(out, cap, "(a connection string)");
    return;
  }
  /* The password of the user information as ***; the query's values, any
   * of which may be a password (under a percent-encoded name, even), as
   * *** too.  Built whole, then cut to fit, so a cut never shows more. */
  size_t len = strlen(url);
  char *shown = malloc(len + 8);
  if (!shown) {
    snprintf(out, cap, "(a connection string)");
    return;
  }
  size_t upto = (size_t)((u.query ? u.query : url + len) - url);
  if (u.colon)
    snprintf(shown, len + 8, "%.*s:***%.*s", (int)(u.colon - url), url,
             (int)(upto - (size_t)(u.at - url)), u.at);
  else
    snprintf(shown, len + 8, "%.*s", (int)upto, url);
  if (u.query && u.query[1]) strcat(shown, "?***");
  snprintf(out, cap, "%s", shown);
  free(shown);
}

kerr_code store_pg_open(const char *url, int busy_timeout_ms, store **out, kerr *err) {
  kerr_code rc = KERR_OK;
  pg_store *s = NULL;
  store_tx *first = NULL;
  char *parse_error = NULL;
  PQconninfoOption *parsed;

  *out = NULL;
  if (!store_pg_is_url(url))
    return kerr_set(err, KERR_VALIDATION, "A PostgreSQL store is named by a postgresql:// URL.");
  if (!uri_unambiguous(url))
    return kerr_set(err, KERR_VALIDATION,
                    "The PostgreSQL URL can be read more than one way: percent-encode '@', '/' "
                    "and ':' in its user name and password (%%40, %%2F, %%3A).");
  /* libpq's message quotes the part it could not parse, which may be the
   * password: give none of it. */
  parsed = PQconninfoParse(url, &parse_error);
  PQfreemem(parse_error);
  if (!parsed) return kerr_set(err, KERR_VALIDATION, "The PostgreSQL URL cannot be parsed.");
  PQconninfoFree(parsed);
  if (busy_timeout_ms == 0) busy_timeout_ms = STORE_SQLITE_BUSY_TIMEOUT_DEFAULT_MS;
  if (busy_timeout_ms < STORE_SQLITE_BUSY_TIMEOUT_MIN_MS ||
      busy_timeout_ms > STORE_SQLITE_BUSY_TIMEOUT_MAX_MS)
    return kerr_set(err, KERR_VALIDATION, "The database busy timeout must be %d to %d ms, not %d.",
                    STORE_SQLITE_BUSY_TIMEOUT_MIN_MS, STORE_SQLITE_BUSY_TIMEOUT_MAX_MS,
                    busy_timeout_ms);

  s = calloc(1, sizeof *s);
  if (!s) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  s->base.ops = &pg_ops;
  s->busy_timeout_ms = busy_timeout_ms;
  atomic_init(&s->reachable, true);
  atomic_init(&s->lease, false);
  pthread_mutex_init(&s->keeper_lock, NULL);
  pthread_cond_init(&s->keeper_cond, NULL);
  pthread_mutex_init(&s->pool_lock, NULL);
  pthread_cond_init(&s->pool_cond, NULL);
  pthread_mutex_init(&s->writer_gate, NULL);
  s->url = strdup(url);
  if (!s->url) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  /* Whether this node holds the lease decides nothing at open: it runs
   * background work when it does, and the keeper tries again every tick.
   * Only a database that does not answer stops the open here. */
  rc = try_lease(s, err);
  if (rc != KERR_OK && rc != KERR_CONFLICT) goto out;
  log_msg(LOG_INFO, NULL, "store: %s",
          rc == KERR_OK ? "this node holds the lease: it runs the background work"
                        : "another node holds the lease and runs the background work");
  kerr_clear(err);
  rc = pool_take(s, &first, err);
  if (rc) goto out;
  rc = migrate(first, err);
  pool_give(s, first);
  if (rc) goto out;
  if (pthread_create(&s->keeper, NULL, keeper_main, s) != 0) {
    rc = kerr_set(err, KERR_INTERNAL, "Cannot start the lease's keeper thread.");
    goto out;
  }
  s->keeper_running = true;
  *out = &s->base;
  s = NULL;
out:
  if (s) pg_close(&s->base);
  return rc;
}
