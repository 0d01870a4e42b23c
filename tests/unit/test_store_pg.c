/* test_store_pg.c - the PostgreSQL store on a real PostgreSQL server: the
 * migrations, the lease and named locks, every record type (the same walk as
 * test_store.c's for SQLite), an error inside a write transaction (the
 * server aborts the whole transaction: COMMIT must then fail, and an insert
 * that finds its row taken must not abort it), read transactions that
 * refuse writes, writers on many connections that check then insert, the
 * triggers that keep key_counts and policy_version whoever writes, the
 * change stamp (moved by every committed write, anyone's, and only then), a
 * connection the server drops, and the password kept out of messages.
 *
 * The server is KMSD_TEST_PG_URL's (a base URL, scripts/pg-test-server.sh)
 * when set, else one this test starts and stops through that script; each
 * test gets a database of its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store_pg.h"
#include "store_walk.h"

static char server_dir[64];   /* "" when KMSD_TEST_PG_URL names the server */
static char base_url[512];    /* .../postgres */
static char url[600];         /* the current test's database */
static int db_seq;

/* Run `sql` on database `dbname` of the server (a connection of its own). */
static void admin_sql(const char *dbname, const char *sql) {
  char u[600];
  const char *slash = strrchr(base_url, '/');
  snprintf(u, sizeof u, "%.*s/%s", (int)(slash - base_url), base_url, dbname);
  PGconn *db = PQconnectdb(u);
  if (PQstatus(db) != CONNECTION_OK) fail_msg("connect: %s", PQerrorMessage(db));
  PGresult *res = PQexec(db, sql);
  if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
    fail_msg("%s: %s", sql, PQerrorMessage(db));
  PQclear(res);
  PQfinish(db);
}

static int group_setup(void **state) {
  (void)state;
  const char *given = getenv("KMSD_TEST_PG_URL");
  if (given && *given) {
    snprintf(base_url, sizeof base_url, "%s", given);
    return 0;
  }
  snprintf(server_dir, sizeof server_dir, "/tmp/kmsd-test-store-pg-XXXXXX");
  /* Open to others: the server runs as another user (postgres, when root). */
  if (!mkdtemp(server_dir) || chmod(server_dir, 0755) != 0) return -1;
  char cmd[256];
  snprintf(cmd, sizeof cmd, "'%s' start '%s/pg'", PG_TEST_SERVER, server_dir);
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  if (!fgets(base_url, sizeof base_url, p)) base_url[0] = '\0';
  int rc = pclose(p);
  base_url[strcspn(base_url, "\n")] = '\0';
  return rc == 0 && base_url[0] ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  if (!server_dir[0]) return 0;
  char cmd[256];
  snprintf(cmd, sizeof cmd, "'%s' stop '%s/pg' && rmdir '%s'", PG_TEST_SERVER, server_dir,
           server_dir);
  return system(cmd) == 0 ? 0 : -1;
}

/* A new, empty database for the test; `url` names it. */
static int setup(void **state) {
  (void)state;
  char name[64], sql[128];
  snprintf(name, sizeof name, "store_pg_%ld_%d", (long)getpid(), ++db_seq);
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
  admin_sql("postgres", sql);
  const char *slash = strrchr(base_url, '/');
  snprintf(url, sizeof url, "%.*s/%s", (int)(slash - base_url), base_url, name);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char sql[160];
  const char *name = strrchr(url, '/') + 1;
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
  admin_sql("postgres", sql);
  return 0;
}


static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

typedef struct held_lock {
  store *s;
  store_lock *l;
} held_lock;

static void *unlock_later(void *arg) {
  held_lock *h = arg;
  sleep_ms(200);
  h->s->ops->unlock_named(h->l);
  return NULL;
}

static void test_migrations_and_lease(void **state) {
  (void)state;
  store *s = NULL, *other = NULL;
  kerr err;
  int version = 0;
  assert_int_equal(store_pg_open(url, 0, &s, &err), KERR_OK);
  assert_string_equal(s->ops->name, "postgresql");
  assert_int_equal(s->ops->schema_version(s, &version, &err), KERR_OK);
  assert_int_equal(version, store_pg_latest_version());
  /* Any number of nodes open one database; the first holds the lease. */
  assert_int_equal(store_pg_open(url, 0, &other, &err), KERR_OK);
  assert_true(s->ops->lease_held(s));
  assert_false(other->ops->lease_held(other));
  /* The lease goes with its holder's session, and the other takes it at
   * its keeper's next tick. */
  s->ops->close(s);
  s = NULL;
  for (int i = 0; i < 100 && !other->ops->lease_held(other); i++) sleep_ms(50);
  assert_true(other->ops->lease_held(other));
  other->ops->close(other);
  /* Reopen: nothing left to migrate. */
  assert_int_equal(store_pg_open(url, 0, &s, &err), KERR_OK);
  assert_int_equal(s->ops->schema_version(s, &version, &err), KERR_OK);
  assert_int_equal(version, store_pg_latest_version());
  assert_true(s->ops->lease_held(s));
  s->ops->close(s);
  /* A schema newer than the program is refused. */
  admin_sql(strrchr(url, '/') + 1, "INSERT INTO schema_version VALUES (999, 0)");
  assert_int_equal(store_pg_open(url, 0, &s, &err), KERR_INTERNAL);
  assert_non_null(strstr(err.msg, "newer than this program"));
  assert_int_equal(store_pg_open("postgresql://u@h/db", 600001, &s, &err), KERR_VALIDATION);
}

/* Named locks: one holder among every store on the database, others wait or
 * give up, a closed store's lock is free, and names do not share. */
static void test_named_locks(void **state) {
  (void)state;
  store *a = NULL, *b = NULL;
  store_lock *la = NULL, *lb = NULL, *other = NULL;
  kerr err;
  assert_int_equal(store_pg_open(url, 0, &a, &err), KERR_OK);
  assert_int_equal(store_pg_open(url, 0, &b, &err), KERR_OK);
  assert_int_equal(a->ops->lock_named(a, "cks-1 connect", 0, &la, &err), KERR_OK);
  assert_int_equal(b->ops->lock_named(b, "cks-1 connect", 0, &lb, &err), KERR_CONFLICT);
  assert_null(lb);
  assert_int_equal(b->ops->lock_named(b, "cks-1 connect", 100, &lb, &err), KERR_CONFLICT);
  assert_int_equal(b->ops->lock_named(b, "cks-2 connect", 0, &other, &err), KERR_OK);
  a->ops->unlock_named(la);
  assert_int_equal(b->ops->lock_named(b, "cks-1 connect", 1000, &lb, &err), KERR_OK);
  /* A waiter gets it as soon as the holder lets go. */
  b->ops->unlock_named(other);
  pthread_t t;
  held_lock h = {b, lb};
  assert_int_equal(pthread_create(&t, NULL, unlock_later, &h), 0);
  assert_int_equal(a->ops->lock_named(a, "cks-1 connect", 5000, &la, &err), KERR_OK);
  pthread_join(t, NULL);
  b->ops->close(b);
  a->ops->unlock_named(la);
  a->ops->unlock_named(NULL);
  a->ops->close(a);
}

static kerr_code open_pg(store **out, kerr *err) { return store_pg_open(url, 0, out, err); }

static void test_keys_materials_aliases_tags(void **state) {
  (void)state;
  store_walk_records(open_pg);
}

static void fill_cks(store_cks *c, const char *id, const char *name) {
  memset(c, 0, sizeof *c);
  snprintf(c->cks_id, sizeof c->cks_id, "%s", id);
  strcpy(c->account_id, "111122223333");
  strcpy(c->region, "us-east-1");
  snprintf(c->name, sizeof c->name, "%s", name);
  strcpy(c->type, "EXTERNAL_KEY_STORE");
  strcpy(c->connection_state, "DISCONNECTED");
  c->created_ms = 7;
  c->state_changed_ms = 7;
  strcpy(c->xks_uri_endpoint, "https://xks.example.com");
  strcpy(c->xks_uri_path, "/kms/xks/v1");
  strcpy(c->xks_connectivity, "PUBLIC_ENDPOINT");
  strcpy(c->xks_access_key_id, "ABCDEFGHIJKLMNOPQRST");
}

static void test_custom_key_stores_and_meta(void **state) {
  (void)state;
  store *s = NULL;
  store_tx *tx = NULL;
  store_cks c, got;
  kerr err;
  uint8_t secret[40];
  memset(secret, 0xa5, sizeof secret);
  assert_int_equal(store_pg_open(url, 0, &s, &err), KERR_OK);
  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  fill_cks(&c, "cks-00000000000000001", "one");
  c.xks_secret_wrapped = secret;
  c.xks_secret_wrapped_len = sizeof secret;
  assert_int_equal(s->ops->cks_insert(tx, &c, &err), KERR_OK);
  assert_int_equal(s->ops->cks_insert(tx, &c, &err), KERR_ALREADY_EXISTS);
  assert_non_null(strstr(err.msg, "already exists"));
  fill_cks(&c, "cks-00000000000000002", "one");
  assert_int_equal(s->ops->cks_insert(tx, &c, &err), KERR_ALREADY_EXISTS);
  assert_non_null(strstr(err.msg, "is in use"));
  fill_cks(&c, "cks-00000000000000002", "two");
  assert_int_equal(s->ops->cks_insert(tx, &c, &err), KERR_OK);
  strcpy(c.connection_state, "CONNECTED");
  assert_int_equal(s->ops->cks_update(tx, &c, &err), KERR_OK);
  fill_cks(&c, "cks-00000000000000009", "nine");
  assert_int_equal(s->ops->cks_update(tx, &c, &err), KERR_NOT_FOUND);
  uint8_t check[5] = {1, 0, 2, 0, 3};
  assert_int_equal(s->ops->meta_put(tx, "root_key_check", check, sizeof check, &err), KERR_OK);
  assert_int_equal(s->ops->commit(tx, &err), KERR_OK);

  assert_int_equal(s->ops->begin(s, false, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->cks_get(tx, "cks-00000000000000001", &got, &err), KERR_OK);
  assert_int_equal(got.xks_secret_wrapped_len, sizeof secret);
  assert_memory_equal(got.xks_secret_wrapped, secret, sizeof secret);
  assert_null(got.password_wrapped);
  assert_null(got.trust_anchor_pem);
  assert_string_equal(got.xks_uri_path, "/kms/xks/v1");
  store_cks_clear(&got);
  char st[32], cluster[32];
  assert_int_equal(s->ops->cks_state(tx, "cks-00000000000000002", st, sizeof st, cluster,
                                     sizeof cluster, &err),
                   KERR_OK);
  assert_string_equal(st, "CONNECTED");
  store_cks *list = NULL;
  size_t n = 0;
  assert_int_equal(s->ops->cks_list(tx, NULL, NULL, NULL, 10, &list, &n, &err), KERR_OK);
  assert_int_equal(n, 2);
  store_cks_list_free(list, n);
  assert_int_equal(s->ops->cks_list(tx, "111122223333", "us-east-1", "cks-00000000000000001", 10,
                                    &list, &n, &err),
                   KERR_OK);
  assert_int_equal(n, 1);
  assert_string_equal(list[0].name, "two");
  store_cks_list_free(list, n);
  uint8_t *value = NULL;
  size_t len = 0;
  assert_int_equal(s->ops->meta_get(tx, "root_key_check", &value, &len, &err), KERR_OK);
  assert_int_equal(len, sizeof check);
  assert_memory_equal(value, check, sizeof check);
  free(value);
  assert_int_equal(s->ops->meta_get(tx, "nothing", &value, &len, &err), KERR_NOT_FOUND);
  s->ops->rollback(tx);
  s->ops->close(s);
}

/* A database (or role) that sets its own output formats: what the reads
 * parse is pinned per session, so blobs still read back. */
static void test_session_settings_pinned(void **state) {
  (void)state;
  store *s = NULL;
  store_tx *tx = NULL;
  kerr err;
  char sql[160];
  const uint8_t value[4] = {0, 1, 0xfe, 0xff};
  uint8_t *got = NULL;
  size_t len = 0;
  snprintf(sql, sizeof sql, "ALTER DATABASE %s SET bytea_output = 'escape'", strrchr(url, '/') + 1);
  admin_sql("postgres", sql);
  assert_int_equal(store_pg_open(url, 0, &s, &err), KERR_OK);
  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->meta_put(tx, "probe", value, sizeof value, &err), KERR_OK);
  assert_int_equal(s->ops->commit(tx, &err), KERR_OK);
  assert_int_equal(s->ops->begin(s, false, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->meta_get(tx, "probe", &got, &len, &err), KERR_OK);
  s->ops->rollback(tx);
  assert_int_equal(len, sizeof value);
  assert_memory_equal(got, value, sizeof value);
  free(got);
  s->ops->close(s);
}

/* An error the server raises inside a write transaction aborts all of it:
 * the commit must fail and nothing of it stay. */
static void test_aborted_transaction_is_not_acknowledged(void **state) {
  (void)state;
  store *s = NULL;
  store_tx *tx = NULL;
  store_key k;
  kerr err;
  assert_int_equal(store_pg_open(url, 0, &s, &err), KERR_OK);
  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  make_key(&k, K1);
  assert_int_equal(s->ops->key_insert(tx, &k, "{}", &err), KERR_OK);
  /* An alias of a key that does not exist: a foreign-key violation. */
  store_alias a = {.created_ms = 1, .updated_ms = 1};
  strcpy(a.account_id, "111122223333");
  strcpy(a.region, "us-east-1");
  strcpy(a.alias_name, "alias/orphan");
  strcpy(a.key_id, K2);
  assert_int_equal(s->ops->alias_insert(tx, &a, &err), KERR_INTERNAL);
  assert_int_equal(s->ops->commit(tx, &err), KERR_INTERNAL);
  assert_non_null(strstr(err.msg, "rolled the transaction back"));
  /* A read transaction refuses writes. */
  assert_int_equal(s->ops->begin(s, false, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->tag_put(tx, K1, "a", "b", &err), KERR_INTERNAL);
  s->ops->rollback(tx);
  assert_int_equal(s->ops->begin(s, false, &tx, &err), KERR_OK);
  store_key got;
  assert_int_equal(s->ops->key_get(tx, K1, &got, &err), KERR_NOT_FOUND);
  s->ops->rollback(tx);
  s->ops->close(s);
}

#define THREADS 8
#define PER_THREAD 10

/* Check, then insert, as CreateKey's quota does: with every write
 * transaction serialized the count read is always the count of rows, so
 * every thread's last insert sees exactly the keys made before it. */
static void *checking_writer(void *arg) {
  store *s = arg;
  kerr err;
  for (int i = 0; i < PER_THREAD; i++) {
    store_tx *tx = NULL;
    store_key k;
    int64_t before = 0, after = 0;
    char id[UUID_STR_LEN];
    snprintf(id, sizeof id, "%08lx-0000-4000-8000-%012d",
             (unsigned long)pthread_self() & 0xffffffffUL, i);
    make_key(&k, id);
    if (s->ops->begin(s, true, &tx, &err) != KERR_OK) return (void *)1;
    if (s->ops->key_count(tx, "111122223333", "us-east-1", &before, &err) != KERR_OK ||
        s->ops->key_insert(tx, &k, "{}", &err) != KERR_OK ||
        s->ops->key_count(tx, "111122223333", "us-east-1", &after, &err) != KERR_OK ||
        after != before + 1) {
      s->ops->rollback(tx);
      return (void *)1;
    }
    if (s->ops->commit(tx, &err) != KERR_OK) return (void *)1;
  }
  return NULL;
}

static void test_concurrent_checking_writers(void **state) {
  (void)state;
  store *s = NULL;
  store_tx *tx = NULL;
  kerr err;
  pthread_t t[THREADS];
  assert_int_equal(store_pg_open(url, 0, &s, &err), KERR_OK);
  for (int i = 0; i < THREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, checking_writer, s), 0);
  for (int i = 0; i < THREADS; i++) {
    void *ret = NULL;
    pthread_join(t[i], &ret);
    assert_null(ret);
  }
  int64_t count = 0;
  assert_int_equal(s->ops->begin(s, false, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->key_count(tx, "111122223333", "us-east-1", &count, &err), KERR_OK);
  assert_int_equal(count, THREADS * PER_THREAD);
  s->ops->rollback(tx);
  s->ops->close(s);
}

/* A read nested in a write transaction (as kms_cks does through the HSM
 * side) while many writers queue: writers wait for their turn before they
 * take a connection, so the nested read always finds one and nobody runs
 * into the lock timeout. */
#define NESTING_WRITERS 24

static void *nesting_writer(void *arg) {
  store *s = arg;
  kerr err;
  store_tx *w = NULL, *r = NULL;
  store_key k, got;
  char id[UUID_STR_LEN];
  snprintf(id, sizeof id, "%08lx-0000-4000-8000-000000000000",
           (unsigned long)pthread_self() & 0xffffffffUL);
  make_key(&k, id);
  if (s->ops->begin(s, true, &w, &err) != KERR_OK) return (void *)1;
  if (s->ops->begin(s, false, &r, &err) != KERR_OK) {
    s->ops->rollback(w);
    return (void *)2;
  }
  kerr_code rc = s->ops->key_get(r, id, &got, &err);
  s->ops->rollback(r);
  if (rc != KERR_NOT_FOUND || s->ops->key_insert(w, &k, "{}", &err) != KERR_OK) {
    s->ops->rollback(w);
    return (void *)3;
  }
  /* Hold the turn a little, as a write with an HSM call in it does. */
  struct timespec pause = {0, 20 * 1000000L};
  nanosleep(&pause, NULL);
  return s->ops->commit(w, &err) == KERR_OK ? NULL : (void *)4;
}

static void test_nested_reads_among_queued_writers(void **state) {
  (void)state;
  store *s = NULL;
  kerr err;
  pthread_t t[NESTING_WRITERS];
  /* A lock timeout shorter than the queue: waiting on the database's lock
   * with a connection held would now fail. */
  assert_int_equal(store_pg_open(url, 200, &s, &err), KERR_OK);
  for (int i = 0; i < NESTING_WRITERS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, nesting_writer, s), 0);
  for (int i = 0; i < NESTING_WRITERS; i++) {
    void *ret = NULL;
    pthread_join(t[i], &ret);
    assert_null(ret);
  }
  s->ops->close(s);
}

/* key_counts and policy_version follow writes made behind kmsd's back. */
static void test_triggers_follow_foreign_writes(void **state) {
  (void)state;
  store *s = NULL;
  store_tx *tx = NULL;
  kerr err;
  const char *db = strrchr(url, '/') + 1;
  assert_int_equal(store_pg_open(url, 0, &s, &err), KERR_OK);
  admin_sql(db,
            "INSERT INTO keys (key_id, account_id, region, created_ms, key_state, key_usage, "
            "key_spec, origin, policy) VALUES ('" K1 "', '111122223333', 'eu-west-1', 1, "
            "'Enabled', 'ENCRYPT_DECRYPT', 'SYMMETRIC_DEFAULT', 'AWS_KMS', '{}')");
  admin_sql(db, "UPDATE keys SET policy = '{\"changed\":1}' WHERE key_id = '" K1 "'");
  int64_t count = 0, version = 0;
  char *policy = NULL;
  assert_int_equal(s->ops->begin(s, false, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->key_count(tx, "111122223333", "eu-west-1", &count, &err), KERR_OK);
  assert_int_equal(count, 1);
  assert_int_equal(s->ops->key_get_policy(tx, K1, &policy, &version, &err), KERR_OK);
  assert_int_equal(version, 2);
  free(policy);
  s->ops->rollback(tx);
  admin_sql(db, "UPDATE keys SET region = 'us-west-2' WHERE key_id = '" K1 "'");
  admin_sql(db, "DELETE FROM keys");
  assert_int_equal(s->ops->begin(s, false, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->key_count(tx, "111122223333", "eu-west-1", &count, &err), KERR_OK);
  assert_int_equal(count, 0);
  assert_int_equal(s->ops->key_count(tx, "111122223333", "us-west-2", &count, &err), KERR_OK);
  assert_int_equal(count, 0);
  s->ops->rollback(tx);
  s->ops->close(s);
}

/* The change stamp moves with every committed write, kmsd's or anyone's,
 * and only then. */
static void test_change_stamp(void **state) {
  (void)state;
  store *s = NULL;
  store_tx *tx = NULL;
  store_key k;
  store_stamp a, b;
  kerr err;
  assert_int_equal(store_pg_open(url, 0, &s, &err), KERR_OK);
  assert_non_null(s->ops->change_stamp);
  assert_true(s->ops->change_stamp(s, &a));
  /* A read, and a write rolled back, leave it. */
  assert_int_equal(s->ops->begin(s, false, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->key_get(tx, K1, &k, &err), KERR_NOT_FOUND);
  s->ops->rollback(tx);
  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  make_key(&k, K1);
  assert_int_equal(s->ops->key_insert(tx, &k, "{}", &err), KERR_OK);
  s->ops->rollback(tx);
  assert_true(s->ops->change_stamp(s, &b));
  assert_true(store_stamp_equal(&a, &b));
  /* Its own commit moves it. */
  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->key_insert(tx, &k, "{}", &err), KERR_OK);
  assert_int_equal(s->ops->commit(tx, &err), KERR_OK);
  assert_true(s->ops->change_stamp(s, &b));
  assert_false(store_stamp_equal(&a, &b));
  /* So does another session's, on any table kmsd keeps. */
  a = b;
  admin_sql(strrchr(url, '/') + 1, "UPDATE keys SET description = 'by hand'");
  assert_true(s->ops->change_stamp(s, &b));
  assert_false(store_stamp_equal(&a, &b));
  a = b;
  admin_sql(strrchr(url, '/') + 1, "DELETE FROM store_meta");
  assert_true(s->ops->change_stamp(s, &b));
  assert_false(store_stamp_equal(&a, &b));
  s->ops->close(s);
}

/* The server drops every kmsd connection, idle ones in the pool included:
 * no call fails for it (a BEGIN that finds its connection dead drops the
 * pool's idle ones and runs on a new connection), and the change stamp
 * comes back. */
static void test_dropped_connections_recover(void **state) {
  (void)state;
  store *s = NULL;
  store_tx *tx[4] = {NULL};
  store_key k;
  store_stamp stamp;
  kerr err;
  assert_int_equal(store_pg_open(url, 0, &s, &err), KERR_OK);
  for (int i = 0; i < 4; i++) assert_int_equal(s->ops->begin(s, false, &tx[i], &err), KERR_OK);
  for (int i = 0; i < 4; i++) s->ops->rollback(tx[i]); /* four idle connections */
  /* Only this test's database: the server may be shared with others. */
  char kill_sql[256];
  snprintf(kill_sql, sizeof kill_sql,
           "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
           "WHERE application_name = 'kmsd' AND datname = '%s'",
           strrchr(url, '/') + 1);
  admin_sql("postgres", kill_sql);
  assert_int_equal(s->ops->begin(s, true, &tx[0], &err), KERR_OK);
  make_key(&k, K1);
  assert_int_equal(s->ops->key_insert(tx[0], &k, "{}", &err), KERR_OK);
  assert_int_equal(s->ops->commit(tx[0], &err), KERR_OK);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(s->ops->begin(s, false, &tx[0], &err), KERR_OK);
    store_key got;
    assert_int_equal(s->ops->key_get(tx[0], K1, &got, &err), KERR_OK);
    store_key_clear(&got);
    s->ops->rollback(tx[0]);
  }
  assert_true(s->ops->change_stamp(s, &stamp));
  s->ops->close(s);
}

static void test_password_never_shown(void **state) {
  (void)state;
  char out[128];
  store *s = NULL;
  kerr err;
  store_pg_redact("postgresql://kmsd:s3cret@db.example.com:5432/kms", out, sizeof out);
  assert_string_equal(out, "postgresql://kmsd:***@db.example.com:5432/kms");
  /* Every query value may be a password (under a percent-encoded name). */
  store_pg_redact("postgres://db/kms?user=k&pass%77ord=s3cret&sslmode=require", out, sizeof out);
  assert_string_equal(out, "postgres://db/kms?***");
  /* libpq reads the user information up to the authority's '@', so a
   * password holding '?' or '#' is still the password. */
  store_pg_redact("postgresql://leak:Zq?s3cret#x@db/kms", out, sizeof out);
  assert_string_equal(out, "postgresql://leak:***@db/kms");
  store_pg_redact("postgresql://db?password=s3cret", out, sizeof out);
  assert_string_equal(out, "postgresql://db?***");
  store_pg_redact("host=db password=s3cret", out, sizeof out);
  assert_string_equal(out, "(a connection string)");
  store_pg_redact("postgresql://kmsd@db/kms", out, sizeof out);
  assert_string_equal(out, "postgresql://kmsd@db/kms");
  store_pg_redact("postgresql://kmsd:s3cret@db/kms", out, 12);
  assert_null(strstr(out, "s3cret"));
  /* URLs libpq would read otherwise than the redaction: refused unquoted. */
  assert_int_equal(store_pg_open("postgresql://leak:Zq/s3cret@db/kms", 0, &s, &err),
                   KERR_VALIDATION);
  assert_null(strstr(err.msg, "s3cret"));
  assert_int_equal(store_pg_open("postgresql://leak:Zq@s3cret@db/kms", 0, &s, &err),
                   KERR_VALIDATION);
  assert_null(strstr(err.msg, "s3cret"));
  /* A URL libpq cannot parse: its message would quote the password. */
  assert_int_equal(store_pg_open("postgresql://kmsd:s3cret@db/kms?bogus=1", 0, &s, &err),
                   KERR_VALIDATION);
  assert_null(strstr(err.msg, "s3cret"));
  /* A wrong password: the server's refusal names the user, not the password. */
  char wrong[600];
  const char *at = strchr(url, '@');
  snprintf(wrong, sizeof wrong, "postgresql://kmsd:n0t-the-s3cret%s", at);
  assert_int_equal(store_pg_open(wrong, 0, &s, &err), KERR_INTERNAL);
  assert_null(strstr(err.msg, "n0t-the-s3cret"));
  /* Nor the server's address: the caller may be an API client. */
  assert_null(strstr(err.msg, "127.0.0.1"));
  assert_null(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_migrations_and_lease, setup, teardown),
      cmocka_unit_test_setup_teardown(test_named_locks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keys_materials_aliases_tags, setup, teardown),
      cmocka_unit_test_setup_teardown(test_custom_key_stores_and_meta, setup, teardown),
      cmocka_unit_test_setup_teardown(test_session_settings_pinned, setup, teardown),
      cmocka_unit_test_setup_teardown(test_aborted_transaction_is_not_acknowledged, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_checking_writers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_nested_reads_among_queued_writers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_triggers_follow_foreign_writes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_change_stamp, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dropped_connections_recover, setup, teardown),
      cmocka_unit_test_setup_teardown(test_password_never_shown, setup, teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
