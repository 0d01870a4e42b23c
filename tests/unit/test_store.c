/* test_store.c - the SQLite store on real database files: migrations from
 * empty and on reopen, WAL/durability settings, every record type, rollback,
 * concurrent writers from several threads, group commit (writers that
 * queue share one COMMIT; a lost batch, or one whose member could not undo
 * its write, fails every member's commit), the
 * key counts that the quota reads (kept by triggers, whoever writes) and
 * the alias listings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "store_walk.h"

static char dir[64];
static char path[128];

static int setup(void **state) {
  snprintf(dir, sizeof dir, "/tmp/kmsd-test-store-XXXXXX");
  if (!mkdtemp(dir)) return -1;
  snprintf(path, sizeof path, "%s/kmsd.db", dir);
  return 0;
}

static int teardown(void **state) {
  char cmd[160];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}


static void test_migrations_and_pragmas(void **state) {
  store *s = NULL;
  kerr err;
  int v = -1;
  assert_int_equal(store_sqlite_open(path, &s, &err), KERR_OK);
  assert_int_equal(s->ops->schema_version(s, &v, &err), KERR_OK);
  assert_int_equal(v, store_sqlite_latest_version());
  s->ops->close(s);
  /* reopening runs nothing new and keeps the version */
  assert_int_equal(store_sqlite_open(path, &s, &err), KERR_OK);
  assert_int_equal(s->ops->schema_version(s, &v, &err), KERR_OK);
  assert_int_equal(v, store_sqlite_latest_version());
  s->ops->close(s);

  /* the file is in WAL mode (persistent) and has one schema_version row per migration */
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
  sqlite3_finalize(st);
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM schema_version", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), store_sqlite_latest_version());
  sqlite3_finalize(st);
  /* a database from a newer program is refused */
  assert_int_equal(sqlite3_exec(db, "INSERT INTO schema_version VALUES (999, 0)", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(store_sqlite_open(path, &s, &err), KERR_INTERNAL);
  assert_null(s);
  assert_non_null(strstr(err.msg, "newer"));
}

static kerr_code open_sqlite(store **out, kerr *err) { return store_sqlite_open(path, out, err); }

static void test_keys_materials_aliases_tags(void **state) {
  (void)state;
  store_walk_records(open_sqlite);
}

#define THREADS 8
#define PER_THREAD 25

static void *writer(void *arg) {
  store *s = arg;
  kerr err;
  for (int i = 0; i < PER_THREAD; i++) {
    store_tx *tx = NULL;
    store_key k;
    char id[UUID_STR_LEN];
    snprintf(id, sizeof id, "%08lx-0000-4000-8000-%012d", (unsigned long)pthread_self() & 0xffffffffUL, i);
    make_key(&k, id);
    if (s->ops->begin(s, true, &tx, &err) != KERR_OK) return (void *)1;
    if (s->ops->key_insert(tx, &k, "{}", &err) != KERR_OK) {
      s->ops->rollback(tx);
      return (void *)1;
    }
    if (s->ops->commit(tx, &err) != KERR_OK) return (void *)1;
  }
  return NULL;
}

static void test_concurrent_writers(void **state) {
  store *s = NULL;
  kerr err;
  pthread_t th[THREADS];
  assert_int_equal(store_sqlite_open(path, &s, &err), KERR_OK);
  for (int i = 0; i < THREADS; i++) assert_int_equal(pthread_create(&th[i], NULL, writer, s), 0);
  for (int i = 0; i < THREADS; i++) {
    void *ret = (void *)1;
    pthread_join(th[i], &ret);
    assert_null(ret);
  }
  store_tx *tx = NULL;
  char(*ids)[UUID_STR_LEN] = NULL;
  size_t n = 0;
  assert_int_equal(s->ops->begin(s, false, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->key_list(tx, "111122223333", "us-east-1", NULL, 1000, &ids, &n, &err), KERR_OK);
  assert_int_equal(n, THREADS * PER_THREAD);
  free(ids);
  s->ops->rollback(tx);
  s->ops->close(s);
}

static int64_t count_of(store *s, const char *account, const char *region) {
  store_tx *tx = NULL;
  kerr err;
  int64_t n = -1;
  assert_int_equal(s->ops->begin(s, false, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->key_count(tx, account, region, &n, &err), KERR_OK);
  s->ops->rollback(tx);
  return n;
}

static void raw_exec(const char *sql) {
  sqlite3 *db = NULL;
  char *msg = NULL;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
  sqlite3_close(db);
}

/* The quota's count moves with every insert and delete, whether the store
 * or another connection made it, and a database from before the counts
 * (schema 5) gets them from its rows when it is opened. */
static void test_key_counts(void **state) {
  store *s = NULL;
  store_tx *tx = NULL;
  store_key k;
  kerr err;
  char id[UUID_STR_LEN];
  assert_int_equal(store_sqlite_open(path, &s, &err), KERR_OK);
  assert_int_equal(count_of(s, "111122223333", "us-east-1"), 0);
  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  for (int i = 0; i < 5; i++) {
    snprintf(id, sizeof id, "00000000-0000-4000-8000-%012d", i);
    make_key(&k, id);
    if (i == 4) strcpy(k.region, "eu-west-1");
    assert_int_equal(s->ops->key_insert(tx, &k, "{}", &err), KERR_OK);
  }
  int64_t in_tx = 0; /* the transaction's own inserts count at once */
  assert_int_equal(s->ops->key_count(tx, "111122223333", "us-east-1", &in_tx, &err), KERR_OK);
  assert_int_equal(in_tx, 4);
  assert_int_equal(s->ops->commit(tx, &err), KERR_OK);
  assert_int_equal(count_of(s, "111122223333", "us-east-1"), 4);
  assert_int_equal(count_of(s, "111122223333", "eu-west-1"), 1);
  assert_int_equal(count_of(s, "444455556666", "us-east-1"), 0);

  /* a rolled back insert counts nothing; a delete counts down */
  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  make_key(&k, "00000000-0000-4000-8000-000000000099");
  assert_int_equal(s->ops->key_insert(tx, &k, "{}", &err), KERR_OK);
  s->ops->rollback(tx);
  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->key_delete(tx, "00000000-0000-4000-8000-000000000000", &err), KERR_OK);
  assert_int_equal(s->ops->commit(tx, &err), KERR_OK);
  assert_int_equal(count_of(s, "111122223333", "us-east-1"), 3);

  /* writes behind the store's back, through another connection */
  raw_exec("INSERT INTO keys (key_id, account_id, region, created_ms, key_state, key_usage, "
           "key_spec, origin, policy) SELECT 'other-' || key_id, account_id, region, created_ms, "
           "key_state, key_usage, key_spec, origin, policy FROM keys");
  assert_int_equal(count_of(s, "111122223333", "us-east-1"), 6);
  assert_int_equal(count_of(s, "111122223333", "eu-west-1"), 2);
  raw_exec("UPDATE keys SET region='ap-south-1' WHERE key_id LIKE 'other-%'");
  assert_int_equal(count_of(s, "111122223333", "us-east-1"), 3);
  assert_int_equal(count_of(s, "111122223333", "eu-west-1"), 1);
  assert_int_equal(count_of(s, "111122223333", "ap-south-1"), 4);
  raw_exec("DELETE FROM keys WHERE key_id LIKE 'other-%'");
  assert_int_equal(count_of(s, "111122223333", "ap-south-1"), 0);
  s->ops->close(s);

  /* back to schema 5, rows and all: opening it counts them */
  raw_exec("DROP TRIGGER key_counts_insert; DROP TRIGGER key_counts_delete; "
           "DROP TRIGGER key_counts_move; DROP TRIGGER keys_policy_version; DROP TABLE key_counts; "
           "DELETE FROM schema_version WHERE version = 6");
  assert_int_equal(store_sqlite_open(path, &s, &err), KERR_OK);
  assert_int_equal(count_of(s, "111122223333", "us-east-1"), 3);
  assert_int_equal(count_of(s, "111122223333", "eu-west-1"), 1);
  s->ops->close(s);
}

/* A policy changed behind the store's back without its version gets a new
 * version all the same (the parsed-policy cache keys on it); the store's
 * own change moves it by one, not two. */
static void test_policy_version_follows_policy(void **state) {
  store *s = NULL;
  store_tx *tx = NULL;
  store_key k;
  kerr err;
  int64_t ver = 0;
  char *pol = NULL;
  assert_int_equal(store_sqlite_open(path, &s, &err), KERR_OK);
  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  make_key(&k, K1);
  assert_int_equal(s->ops->key_insert(tx, &k, "{\"v\":1}", &err), KERR_OK);
  assert_int_equal(s->ops->key_set_policy(tx, K1, "{\"v\":2}", &ver, &err), KERR_OK);
  assert_int_equal(ver, 2);
  assert_int_equal(s->ops->commit(tx, &err), KERR_OK);
  raw_exec("UPDATE keys SET policy = '{\"v\":3}'");
  raw_exec("UPDATE keys SET policy = '{\"v\":3}'"); /* the same text: no change */
  raw_exec("UPDATE keys SET description = 'other'");
  assert_int_equal(s->ops->begin(s, false, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->key_get_policy(tx, K1, &pol, &ver, &err), KERR_OK);
  assert_string_equal(pol, "{\"v\":3}");
  assert_int_equal(ver, 3);
  free(pol);
  s->ops->rollback(tx);
  s->ops->close(s);
}

/* Aliases listed by name, a page at a time, for the account or for one key. */
static void test_alias_lists(void **state) {
  store *s = NULL;
  store_tx *tx = NULL;
  store_key k;
  store_alias a = {.created_ms = 1, .updated_ms = 1}, *list = NULL;
  size_t n = 0;
  kerr err;
  assert_int_equal(store_sqlite_open(path, &s, &err), KERR_OK);
  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  make_key(&k, K1);
  assert_int_equal(s->ops->key_insert(tx, &k, "{}", &err), KERR_OK);
  make_key(&k, K2);
  assert_int_equal(s->ops->key_insert(tx, &k, "{}", &err), KERR_OK);
  strcpy(a.account_id, "111122223333");
  strcpy(a.region, "us-east-1");
  for (int i = 0; i < 6; i++) {
    snprintf(a.alias_name, sizeof a.alias_name, "alias/n%d", 5 - i);
    strcpy(a.key_id, i % 2 ? K2 : K1); /* K1: n5 n3 n1; K2: n4 n2 n0 */
    assert_int_equal(s->ops->alias_insert(tx, &a, &err), KERR_OK);
  }
  strcpy(a.region, "eu-west-1");
  strcpy(a.alias_name, "alias/elsewhere");
  strcpy(a.key_id, K1);
  assert_int_equal(s->ops->alias_insert(tx, &a, &err), KERR_OK);
  assert_int_equal(s->ops->commit(tx, &err), KERR_OK);

  assert_int_equal(s->ops->begin(s, false, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->alias_list(tx, "111122223333", "us-east-1", NULL, NULL, 4, &list, &n, &err), KERR_OK);
  assert_int_equal(n, 4);
  assert_string_equal(list[0].alias_name, "alias/n0");
  assert_string_equal(list[3].alias_name, "alias/n3");
  free(list);
  assert_int_equal(s->ops->alias_list(tx, "111122223333", "us-east-1", NULL, "alias/n3", 4, &list, &n, &err), KERR_OK);
  assert_int_equal(n, 2);
  assert_string_equal(list[0].alias_name, "alias/n4");
  assert_string_equal(list[1].alias_name, "alias/n5");
  free(list);
  assert_int_equal(s->ops->alias_list(tx, "111122223333", "us-east-1", K1, NULL, 2, &list, &n, &err), KERR_OK);
  assert_int_equal(n, 2);
  assert_string_equal(list[0].alias_name, "alias/n1");
  assert_string_equal(list[1].alias_name, "alias/n3");
  free(list);
  assert_int_equal(s->ops->alias_list(tx, "111122223333", "us-east-1", K1, "alias/n3", 2, &list, &n, &err), KERR_OK);
  assert_int_equal(n, 1);
  assert_string_equal(list[0].alias_name, "alias/n5");
  assert_string_equal(list[0].key_id, K1);
  free(list);
  assert_int_equal(s->ops->alias_list(tx, "111122223333", "eu-west-1", K1, NULL, 10, &list, &n, &err), KERR_OK);
  assert_int_equal(n, 1);
  assert_string_equal(list[0].alias_name, "alias/elsewhere");
  free(list);
  assert_int_equal(s->ops->alias_list(tx, "111122223333", "eu-west-1", K2, NULL, 10, &list, &n, &err), KERR_OK);
  assert_int_equal(n, 0);
  free(list);
  s->ops->rollback(tx);
  s->ops->close(s);
}

/* ---- group commit ---- */

/* The group tests open the store with a window far longer than any test,
 * so that whether a batch is handed on never depends on timing (a slow
 * machine, valgrind): only on who waits and on the turn bound. */
static kerr_code open_for_groups(store **s, kerr *err) {
  store_sqlite_options o = {0, STORE_SQLITE_GROUP_WINDOW_MAX_MS};
  return store_sqlite_open_with(path, &o, s, err);
}

static bool key_exists(store *s, const char *id) {
  store_tx *tx = NULL;
  store_key got;
  kerr err;
  kerr_code rc;
  assert_int_equal(s->ops->begin(s, false, &tx, &err), KERR_OK);
  rc = s->ops->key_get(tx, id, &got, &err);
  if (rc == KERR_OK) store_key_clear(&got);
  s->ops->rollback(tx);
  assert_true(rc == KERR_OK || rc == KERR_NOT_FOUND);
  return rc == KERR_OK;
}

typedef struct second_writer {
  store *s;
  const char *id;
  char *description;
  kerr_code insert_rc, end_rc;
  bool roll_back; /* after a successful insert */
} second_writer;

/* Begins a write transaction (waiting for the main thread's to end),
 * inserts a key and commits (or rolls back when asked to, or when the
 * insert failed). */
static void *second_writer_run(void *arg) {
  second_writer *w = arg;
  store_tx *tx = NULL;
  store_key k;
  kerr err;
  w->end_rc = w->s->ops->begin(w->s, true, &tx, &err);
  if (w->end_rc) return NULL;
  make_key(&k, w->id);
  k.description = w->description;
  w->insert_rc = w->s->ops->key_insert(tx, &k, "{}", &err);
  if (w->insert_rc || w->roll_back) {
    w->s->ops->rollback(tx);
    return NULL;
  }
  w->end_rc = w->s->ops->commit(tx, &err);
  return NULL;
}

static void wait_for_waiting(store *s, unsigned n) {
  store_sqlite_stats st;
  for (int i = 0;; i++) { /* 10 s at most */
    store_sqlite_stats_get(s, &st);
    if (st.waiting == n) return;
    assert_true(i < 10000);
    usleep(1000);
  }
}

/* The main thread holds a write transaction with key `first` in it and
 * commits once a second writer waits for its turn: both land in one batch,
 * whose outcome the main thread's commit returns. */
static kerr_code commit_beside(store *s, second_writer *w, const char *first, kerr *err) {
  store_tx *tx = NULL;
  store_key k;
  pthread_t th;
  kerr_code rc;
  assert_int_equal(s->ops->begin(s, true, &tx, err), KERR_OK);
  make_key(&k, first);
  assert_int_equal(s->ops->key_insert(tx, &k, "{}", err), KERR_OK);
  assert_int_equal(pthread_create(&th, NULL, second_writer_run, w), 0);
  wait_for_waiting(s, 1);
  rc = s->ops->commit(tx, err);
  pthread_join(th, NULL);
  return rc;
}

static void test_group_commit_one_batch(void **state) {
  store *s = NULL;
  kerr err;
  store_sqlite_stats st;
  second_writer w = {NULL, K2, (char[]){"second"}, -1, -1, false};
  store_sqlite_options bad = {0, STORE_SQLITE_GROUP_WINDOW_MAX_MS + 1};
  assert_int_equal(store_sqlite_open_with(path, &bad, &s, &err), KERR_VALIDATION);
  assert_null(s);
  assert_int_equal(open_for_groups(&s, &err), KERR_OK);
  w.s = s;
  assert_int_equal(commit_beside(s, &w, K1, &err), KERR_OK);
  assert_int_equal(w.insert_rc, KERR_OK);
  assert_int_equal(w.end_rc, KERR_OK);
  store_sqlite_stats_get(s, &st);
  assert_int_equal(st.commits, 1);
  assert_int_equal(st.writes, 2);
  assert_int_equal(st.waiting, 0);
  assert_true(key_exists(s, K1));
  assert_true(key_exists(s, K2));
  s->ops->close(s);
}

/* The second writer's insert makes SQLite abandon the whole transaction
 * (RAISE(ROLLBACK) in a trigger, as an I/O error can): the main thread's
 * commit, already released into the batch, must fail and keep nothing;
 * the next write starts a new batch. */
static void test_group_commit_lost_batch(void **state) {
  store *s = NULL;
  kerr err;
  store_sqlite_stats st;
  second_writer w = {NULL, K2, (char[]){"poison"}, -1, -1, false};
  assert_int_equal(open_for_groups(&s, &err), KERR_OK);
  raw_exec("CREATE TRIGGER poison AFTER INSERT ON keys WHEN NEW.description = 'poison' "
           "BEGIN SELECT RAISE(ROLLBACK, 'poisoned'); END");
  w.s = s;
  assert_int_equal(commit_beside(s, &w, K1, &err), KERR_INTERNAL);
  assert_non_null(strstr(err.msg, "Storage error"));
  assert_int_not_equal(w.insert_rc, KERR_OK);
  assert_false(key_exists(s, K1));
  assert_false(key_exists(s, K2));
  store_sqlite_stats_get(s, &st);
  assert_int_equal(st.commits, 0);
  assert_int_equal(st.writes, 0);

  second_writer again = {s, K2, (char[]){"fine"}, -1, -1, false};
  second_writer_run(&again);
  assert_int_equal(again.end_rc, KERR_OK);
  assert_true(key_exists(s, K2));
  s->ops->close(s);
}

/* A member whose undo fails (ROLLBACK TO refused) poisons its batch: its
 * insert is still in the open transaction, so committing the batch would
 * keep a write its caller was told was rolled back.  Every member's commit
 * fails instead and nothing is kept.  The refusal is real SQLite: an
 * authorizer, installed on every connection this process opens (an
 * auto-extension), denies ROLLBACK TO while the flag is up.  SQLite asks
 * the authorizer when a statement is prepared, and the store prepares its
 * transaction statements on first use: the batch's connection prepares
 * ROLLBACK TO for the first time here, so the denial lands on it. */
static _Atomic bool deny_rollback_to;

static int deny_auth(void *unused, int action, const char *a1, const char *a2, const char *a3,
                     const char *a4) {
  (void)unused, (void)a2, (void)a3, (void)a4;
  if (deny_rollback_to && action == SQLITE_SAVEPOINT && a1 && strcmp(a1, "ROLLBACK") == 0)
    return SQLITE_DENY;
  return SQLITE_OK;
}

static int install_deny_auth(sqlite3 *db, char **msg, const sqlite3_api_routines *api) {
  (void)msg, (void)api;
  sqlite3_set_authorizer(db, deny_auth, NULL);
  return SQLITE_OK;
}

static void test_group_commit_poisoned_batch(void **state) {
  store *s = NULL;
  kerr err;
  store_sqlite_stats st;
  second_writer w = {NULL, K2, (char[]){"undo refused"}, -1, -1, true};
  assert_int_equal(sqlite3_auto_extension((void (*)(void))install_deny_auth), SQLITE_OK);
  assert_int_equal(open_for_groups(&s, &err), KERR_OK);
  w.s = s;
  deny_rollback_to = true;
  assert_int_equal(commit_beside(s, &w, K1, &err), KERR_INTERNAL);
  deny_rollback_to = false;
  assert_non_null(strstr(err.msg, "could not be undone"));
  assert_int_equal(w.insert_rc, KERR_OK); /* it inserted, then asked to roll back */
  assert_false(key_exists(s, K1));
  assert_false(key_exists(s, K2));
  store_sqlite_stats_get(s, &st);
  assert_int_equal(st.commits, 0);
  assert_int_equal(st.writes, 0);

  /* The next batch is a new one, and undo works again. */
  second_writer undone = {s, K2, (char[]){"undone"}, -1, -1, true};
  second_writer kept = {s, K1, (char[]){"kept"}, -1, -1, false};
  second_writer_run(&undone);
  second_writer_run(&kept);
  assert_int_equal(kept.end_rc, KERR_OK);
  assert_true(key_exists(s, K1));
  assert_false(key_exists(s, K2));
  s->ops->close(s);
}

/* Also after a failed assertion: no later test may meet the authorizer. */
static int teardown_deny_auth(void **state) {
  deny_rollback_to = false;
  sqlite3_cancel_auto_extension((void (*)(void))install_deny_auth);
  return teardown(state);
}

/* A commits while B and C wait; B rolls back, C commits: one batch, one
 * COMMIT for A and C, nothing of B. */
static void test_group_commit_rollback_inside(void **state) {
  store *s = NULL;
  store_tx *tx = NULL;
  store_key k;
  kerr err;
  store_sqlite_stats st;
  pthread_t tb, tc;
  second_writer b = {NULL, K2, (char[]){"undone"}, -1, -1, true};
  second_writer c = {NULL, "00000000-0000-4000-8000-000000000003", (char[]){"kept"}, -1, -1, false};
  assert_int_equal(open_for_groups(&s, &err), KERR_OK);
  b.s = c.s = s;
  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  make_key(&k, K1);
  assert_int_equal(s->ops->key_insert(tx, &k, "{}", &err), KERR_OK);
  assert_int_equal(pthread_create(&tb, NULL, second_writer_run, &b), 0);
  wait_for_waiting(s, 1);
  assert_int_equal(pthread_create(&tc, NULL, second_writer_run, &c), 0);
  wait_for_waiting(s, 2);
  assert_int_equal(s->ops->commit(tx, &err), KERR_OK);
  pthread_join(tb, NULL);
  pthread_join(tc, NULL);
  assert_int_equal(c.end_rc, KERR_OK);
  store_sqlite_stats_get(s, &st);
  assert_int_equal(st.commits, 1);
  assert_int_equal(st.writes, 2);
  assert_true(key_exists(s, K1));
  assert_false(key_exists(s, K2));
  assert_true(key_exists(s, c.id));
  s->ops->close(s);
}

/* Writers that keep coming and rolling back cannot hold a committed
 * writer's batch open: the batch ends after a bounded number of turns
 * (without the bound, this test never ends). */
static _Atomic bool churn_stop;

static void *churn(void *arg) {
  store *s = arg;
  kerr err;
  while (!churn_stop) {
    store_tx *tx = NULL;
    if (s->ops->begin(s, true, &tx, &err) != KERR_OK) return (void *)1;
    s->ops->rollback(tx);
  }
  return NULL;
}

static void test_group_commit_bounded(void **state) {
  store *s = NULL;
  store_tx *tx = NULL;
  store_key k;
  kerr err;
  pthread_t th[3];
  assert_int_equal(open_for_groups(&s, &err), KERR_OK);
  churn_stop = false;
  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  make_key(&k, K1);
  assert_int_equal(s->ops->key_insert(tx, &k, "{}", &err), KERR_OK);
  for (int i = 0; i < 3; i++) assert_int_equal(pthread_create(&th[i], NULL, churn, s), 0);
  wait_for_waiting(s, 3);
  assert_int_equal(s->ops->commit(tx, &err), KERR_OK);
  churn_stop = true;
  for (int i = 0; i < 3; i++) {
    void *ret = (void *)1;
    pthread_join(th[i], &ret);
    assert_null(ret);
  }
  assert_true(key_exists(s, K1));
  s->ops->close(s);
}

/* Many writers, a third of them rolling back: exactly the committed ones
 * are kept, each counted once. */
#define MIXED_THREADS 6
#define MIXED_PER_THREAD 30

static void *mixed_writer(void *arg) {
  store *s = arg;
  kerr err;
  static _Atomic unsigned next;
  for (int i = 0; i < MIXED_PER_THREAD; i++) {
    store_tx *tx = NULL;
    store_key k;
    char id[UUID_STR_LEN];
    unsigned n = next++;
    snprintf(id, sizeof id, "00000000-0000-4000-8000-%012u", n);
    make_key(&k, id);
    if (s->ops->begin(s, true, &tx, &err) != KERR_OK) return (void *)1;
    if (s->ops->key_insert(tx, &k, "{}", &err) != KERR_OK) {
      s->ops->rollback(tx);
      return (void *)1;
    }
    usleep(200); /* hold the turn a little, so that writers queue */
    if (n % 3 == 0) {
      s->ops->rollback(tx);
    } else if (s->ops->commit(tx, &err) != KERR_OK) {
      return (void *)1;
    }
  }
  return NULL;
}

static void test_group_commit_mixed(void **state) {
  store *s = NULL;
  kerr err;
  pthread_t th[MIXED_THREADS];
  store_sqlite_stats st;
  unsigned total = MIXED_THREADS * MIXED_PER_THREAD, kept = 0;
  assert_int_equal(store_sqlite_open(path, &s, &err), KERR_OK);
  for (int i = 0; i < MIXED_THREADS; i++)
    assert_int_equal(pthread_create(&th[i], NULL, mixed_writer, s), 0);
  for (int i = 0; i < MIXED_THREADS; i++) {
    void *ret = (void *)1;
    pthread_join(th[i], &ret);
    assert_null(ret);
  }
  for (unsigned n = 0; n < total; n++) {
    char id[UUID_STR_LEN];
    snprintf(id, sizeof id, "00000000-0000-4000-8000-%012u", n);
    assert_int_equal(key_exists(s, id), n % 3 != 0);
    kept += n % 3 != 0;
  }
  assert_int_equal(count_of(s, "111122223333", "us-east-1"), kept);
  store_sqlite_stats_get(s, &st);
  assert_int_equal(st.writes, kept);
  assert_true(st.commits >= 1 && st.commits <= st.writes);
  s->ops->close(s);
}

/* The change stamp (store.h): unchanged by reads, by a rolled back write and
 * by a passive checkpoint; changed by every commit, the store's own and one
 * made behind its back through another connection (as another process
 * makes it), including a commit after the WAL was truncated and restarted. */
static void test_change_stamp(void **state) {
  store *s = NULL;
  store_tx *tx = NULL;
  store_key k, got;
  store_stamp a, b;
  kerr err;
  (void)state;
  assert_int_equal(store_sqlite_open(path, &s, &err), KERR_OK);
  assert_true(store_sqlite_stamp_on(s));
  assert_true(s->ops->change_stamp(s, &a));

  /* a read and a rolled back write change nothing */
  assert_int_equal(s->ops->begin(s, false, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->key_get(tx, K1, &got, &err), KERR_NOT_FOUND);
  s->ops->rollback(tx);
  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  make_key(&k, K1);
  assert_int_equal(s->ops->key_insert(tx, &k, "{}", &err), KERR_OK);
  s->ops->rollback(tx);
  assert_true(s->ops->change_stamp(s, &b));
  assert_true(store_stamp_equal(&a, &b));

  /* the store's own commit */
  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->key_insert(tx, &k, "{}", &err), KERR_OK);
  assert_int_equal(s->ops->commit(tx, &err), KERR_OK);
  assert_true(s->ops->change_stamp(s, &b));
  assert_false(store_stamp_equal(&a, &b));

  /* a commit through another connection, which the store never sees */
  a = b;
  raw_exec("UPDATE keys SET key_state='Disabled' WHERE key_id='" K1 "'");
  assert_true(s->ops->change_stamp(s, &b));
  assert_false(store_stamp_equal(&a, &b));

  /* a passive checkpoint changes no data and no stamp */
  a = b;
  raw_exec("PRAGMA wal_checkpoint(PASSIVE)");
  assert_true(s->ops->change_stamp(s, &b));
  assert_true(store_stamp_equal(&a, &b));
  /* one that truncates the WAL may rewrite the header (a refill, no harm);
   * the next commit restarts the WAL from its beginning (new salts) and
   * changes the stamp */
  raw_exec("PRAGMA wal_checkpoint(TRUNCATE)");
  assert_true(s->ops->change_stamp(s, &a));
  raw_exec("UPDATE keys SET key_state='Enabled' WHERE key_id='" K1 "'");
  assert_true(s->ops->change_stamp(s, &b));
  assert_false(store_stamp_equal(&a, &b));
  /* and so does the commit after it */
  a = b;
  raw_exec("UPDATE keys SET key_state='Disabled' WHERE key_id='" K1 "'");
  assert_true(s->ops->change_stamp(s, &b));
  assert_false(store_stamp_equal(&a, &b));
  s->ops->close(s);
}

/* The stamp is refused, never guessed, when the WAL-index header cannot be
 * trusted: its two copies differ (a writer caught half-way), its checksum
 * does not hold, or it is not initialized.  The header is changed in the
 * -shm file itself, which SQLite maps shared, and put back. */
static void shm_rw(int fd, void *buf, size_t n, bool write) {
  ssize_t done = write ? pwrite(fd, buf, n, 0) : pread(fd, buf, n, 0);
  assert_int_equal(done, (ssize_t)n);
}

static void test_change_stamp_refused(void **state) {
  store *s = NULL;
  store_stamp a, b;
  kerr err;
  uint8_t good[96], bad[96];
  char shm[160];
  int fd;
  (void)state;
  assert_int_equal(store_sqlite_open(path, &s, &err), KERR_OK);
  assert_true(s->ops->change_stamp(s, &a));
  snprintf(shm, sizeof shm, "%s-shm", path);
  fd = open(shm, O_RDWR);
  assert_true(fd >= 0);
  shm_rw(fd, good, sizeof good, false);

  memcpy(bad, good, sizeof bad);
  bad[48 + 8] ^= 1; /* copy 1's iChange: the copies differ */
  shm_rw(fd, bad, sizeof bad, true);
  assert_false(s->ops->change_stamp(s, &b));
  memcpy(bad, good, sizeof bad);
  bad[8] ^= 1; /* iChange in both copies: the checksum fails */
  bad[48 + 8] ^= 1;
  shm_rw(fd, bad, sizeof bad, true);
  assert_false(s->ops->change_stamp(s, &b));
  memcpy(bad, good, sizeof bad);
  bad[12] = 0; /* isInit in both copies */
  bad[48 + 12] = 0;
  shm_rw(fd, bad, sizeof bad, true);
  assert_false(s->ops->change_stamp(s, &b));

  shm_rw(fd, good, sizeof good, true);
  assert_true(s->ops->change_stamp(s, &b));
  assert_true(store_stamp_equal(&a, &b));
  close(fd);
  s->ops->close(s);
}

/* The store's metadata and one wrapped value of each kind (what a root
 * key is tried on when the store has no check value yet). */
static void test_meta_and_wrapped_samples(void **state) {
  store *s = NULL;
  store_tx *tx = NULL;
  store_key k;
  store_wrapped_sample w;
  uint8_t *value = NULL, blob[61];
  size_t len = 0;
  kerr err;
  (void)state;
  assert_int_equal(store_sqlite_open(path, &s, &err), KERR_OK);
  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->meta_get(tx, "check", &value, &len, &err), KERR_NOT_FOUND);
  assert_null(value);
  for (int kind = STORE_WRAPPED_KEY_MATERIAL; kind <= STORE_WRAPPED_HSM_SECRET; kind++)
    assert_int_equal(s->ops->wrapped_sample(tx, (store_wrapped_kind)kind, &w, &err), KERR_NOT_FOUND);

  assert_int_equal(s->ops->meta_put(tx, "check", (const uint8_t *)"one", 3, &err), KERR_OK);
  assert_int_equal(s->ops->meta_put(tx, "check", (const uint8_t *)"second", 6, &err), KERR_OK);
  make_key(&k, K1);
  assert_int_equal(s->ops->key_insert(tx, &k, "{}", &err), KERR_OK);
  memset(blob, 9, sizeof blob);
  store_material m = {.seq = 0, .wrapped = blob, .wrapped_len = sizeof blob, .created_ms = 5};
  strcpy(m.material_id, "m1");
  strcpy(m.key_id, K1);
  assert_int_equal(s->ops->material_insert(tx, &m, &err), KERR_OK);
  assert_int_equal(s->ops->hsm->secret_put(tx, "cluster-x", "pin", blob, 7, &err), KERR_OK);
  assert_int_equal(s->ops->commit(tx, &err), KERR_OK);
  s->ops->close(s);

  /* durable across a reopen */
  assert_int_equal(store_sqlite_open(path, &s, &err), KERR_OK);
  assert_int_equal(s->ops->begin(s, false, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->meta_get(tx, "check", &value, &len, &err), KERR_OK);
  assert_int_equal(len, 6);
  assert_memory_equal(value, "second", 6);
  free(value);
  assert_int_equal(s->ops->wrapped_sample(tx, STORE_WRAPPED_KEY_MATERIAL, &w, &err), KERR_OK);
  assert_string_equal(w.owner, K1);
  assert_string_equal(w.name, "m1");
  assert_int_equal(w.wrapped_len, sizeof blob);
  assert_memory_equal(w.wrapped, blob, sizeof blob);
  store_wrapped_sample_clear(&w);
  assert_null(w.wrapped);
  assert_int_equal(s->ops->wrapped_sample(tx, STORE_WRAPPED_HSM_SECRET, &w, &err), KERR_OK);
  assert_string_equal(w.owner, "cluster-x");
  assert_string_equal(w.name, "pin");
  assert_int_equal(w.wrapped_len, 7);
  store_wrapped_sample_clear(&w);
  assert_int_equal(s->ops->wrapped_sample(tx, STORE_WRAPPED_CKS_PASSWORD, &w, &err), KERR_NOT_FOUND);
  s->ops->rollback(tx);
  s->ops->close(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_migrations_and_pragmas, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keys_materials_aliases_tags, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_meta_and_wrapped_samples, setup, teardown),
      cmocka_unit_test_setup_teardown(test_key_counts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_alias_lists, setup, teardown),
      cmocka_unit_test_setup_teardown(test_policy_version_follows_policy, setup, teardown),
      cmocka_unit_test_setup_teardown(test_group_commit_one_batch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_group_commit_lost_batch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_group_commit_rollback_inside, setup, teardown),
      cmocka_unit_test_setup_teardown(test_group_commit_poisoned_batch, setup, teardown_deny_auth),
      cmocka_unit_test_setup_teardown(test_group_commit_bounded, setup, teardown),
      cmocka_unit_test_setup_teardown(test_change_stamp, setup, teardown),
      cmocka_unit_test_setup_teardown(test_change_stamp_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_group_commit_mixed, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
