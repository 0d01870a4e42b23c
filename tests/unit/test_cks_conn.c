/* test_cks_conn.c - the connection manager of custom key stores
 * (lib/kms/kms_cks_conn.c) across a restart, on a real SQLite file, with no
 * proxy answering (every XKS call goes to a closed port on loopback):
 *
 *  - a store that was CONNECTED stays CONNECTED, and its connection opens on
 *    first use (an external key store's client is rebuilt without asking
 *    the proxy), and the health check that follows fails, logged, changing
 *    nothing;
 *  - a CloudHSM store that was CONNECTED stays CONNECTED though its cluster
 *    is gone: its attach fails, logged, and calls find no connection (a
 *    restart of one node never changes a state every node shares);
 *  - a damaged row that was CONNECTED ends FAILED, and one left CONNECTING
 *    connects for real and ends FAILED with its ConnectionErrorCode;
 *  - one round of the scan health-checks every CONNECTED external key
 *    store, more than the 100 an earlier version checked;
 *  - opening and closing domains with a running sweeper and recovery work
 *    to do: the sweeper and the recovery workers start only once the domain
 *    is whole (this program is clean under ThreadSanitizer). */
#include "domain_fixture.h"

#include <fcntl.h>
#include <unistd.h>

#include "core/kclock.h"
#include "kms/kms_backend.h"
#include "kms/kms_internal.h"
#include "store/store.h"

#define SECRET "Y29ubmVjdGlvbi1tYW5hZ2VyLXVuaXQtdGVzdC1zZWNyZXQ="
/* Nothing listens on port 1: every connection is refused at once. */
static const char *const CONNECT_TO[] = {"xks.example.test:443:127.0.0.1:1"};

static int setup(void **state) {
  (void)state;
  return fixture_open("test-cks-conn", "req-cks-conn");
}

static int teardown(void **state) {
  (void)state;
  return fixture_close();
}

static void insert(store_cks *c) {
  store_tx *tx = NULL;
  kerr err;
  c->created_ms = kclock_now_ms();
  c->state_changed_ms = c->created_ms;
  assert_int_equal(dom->st->ops->begin(dom->st, true, &tx, &err), KERR_OK);
  assert_int_equal(dom->st->ops->cks_insert(tx, c, &err), KERR_OK);
  assert_int_equal(dom->st->ops->commit(tx, &err), KERR_OK);
  store_cks_clear(c);
}

/* An external key store record as CreateCustomKeyStore writes it, in
 * `state`; `damaged`: its wrapped secret cut short. */
static void put_xks(const char *id, int n, const char *state, bool damaged) {
  store_cks c;
  kerr err;
  memset(&c, 0, sizeof c);
  snprintf(c.cks_id, sizeof c.cks_id, "%s", id);
  snprintf(c.account_id, sizeof c.account_id, FIXTURE_ACCT);
  snprintf(c.region, sizeof c.region, FIXTURE_REGION);
  snprintf(c.name, sizeof c.name, "xks-%d", n);
  snprintf(c.type, sizeof c.type, "EXTERNAL_KEY_STORE");
  snprintf(c.connection_state, sizeof c.connection_state, "%s", state);
  snprintf(c.xks_uri_endpoint, sizeof c.xks_uri_endpoint, "https://xks.example.test");
  snprintf(c.xks_uri_path, sizeof c.xks_uri_path, "/s%04d/kms/xks/v1", n);
  snprintf(c.xks_connectivity, sizeof c.xks_connectivity, "PUBLIC_ENDPOINT");
  snprintf(c.xks_access_key_id, sizeof c.xks_access_key_id, "ABCDEFGHIJKLMNOPQRST");
  assert_int_equal(kmsi_xks_wrap_secret(dom, c.cks_id, SECRET, &c.xks_secret_wrapped,
                                        &c.xks_secret_wrapped_len, &err),
                   KERR_OK);
  if (damaged) c.xks_secret_wrapped_len -= 1;
  insert(&c);
}

static void put_cloudhsm(const char *id, const char *state) {
  store_cks c;
  kerr err;
  memset(&c, 0, sizeof c);
  snprintf(c.cks_id, sizeof c.cks_id, "%s", id);
  snprintf(c.account_id, sizeof c.account_id, FIXTURE_ACCT);
  snprintf(c.region, sizeof c.region, FIXTURE_REGION);
  snprintf(c.name, sizeof c.name, "hsm");
  snprintf(c.type, sizeof c.type, "AWS_CLOUDHSM");
  snprintf(c.cluster_id, sizeof c.cluster_id, "cluster-abcdefghijk"); /* no such cluster */
  snprintf(c.cluster_lineage, sizeof c.cluster_lineage, "lineage-1");
  c.trust_anchor_pem = strdup("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
  assert_int_equal(kmsi_cks_wrap_password(dom, c.cks_id, "kmsuser-secret-pw", &c.password_wrapped,
                                          &c.password_wrapped_len, &err),
                   KERR_OK);
  snprintf(c.connection_state, sizeof c.connection_state, "%s", state);
  insert(&c);
}

/* Close the domain and open it again on the same directory, as a restart. */
static void reopen(int sweep_interval_ms, int health_interval_ms) {
  kms_domain_config cfg = {.data_dir = dir,
                           .sweep_interval_ms = sweep_interval_ms,
                           .xks_connect_to = CONNECT_TO,
                           .xks_connect_to_count = 1,
                           .xks_timeout_ms = 2000,
                           .xks_health_interval_ms = health_interval_ms};
  kerr err;
  kms_domain_close(dom);
  dom = NULL;
  if (kms_domain_open(&cfg, &dom, &err) != KERR_OK) fail_msg("kms_domain_open: %s", err.msg);
}

static void state_of(const char *id, char *state, char *code) {
  store_tx *tx = NULL;
  store_cks c;
  kerr err;
  memset(&c, 0, sizeof c);
  assert_int_equal(dom->st->ops->begin(dom->st, false, &tx, &err), KERR_OK);
  assert_int_equal(dom->st->ops->cks_get(tx, id, &c, &err), KERR_OK);
  dom->st->ops->rollback(tx);
  snprintf(state, STORE_ENUM_MAX, "%s", c.connection_state);
  if (code) snprintf(code, STORE_CKS_ERROR_MAX, "%s", c.connection_error);
  store_cks_clear(&c);
}

static void wait_failed(const char *id, const char *want_code) {
  char state[STORE_ENUM_MAX], code[STORE_CKS_ERROR_MAX];
  for (int i = 0; i < FIXTURE_WAIT_MS / 20; i++) {
    state_of(id, state, code);
    if (strcmp(state, "CONNECTING") != 0) break;
    sleep_ms(20);
  }
  assert_string_equal(state, "FAILED");
  assert_string_equal(code, want_code);
}

/* Whether the manager has a live connection for store `id` (what a KMS
 * key's Encrypt would use), and of which backend. */
static const kms_backend *live_backend(const char *id) {
  kmsi_key k;
  const kms_backend *b = NULL;
  kms_backend_conn *conn = NULL;
  kerr err;
  memset(&k, 0, sizeof k);
  k.row.custom_key_store_id = (char *)id;
  snprintf(k.arn, sizeof k.arn, "arn:aws:kms:us-east-1:111122223333:key/unit");
  if (kmsi_backend_acquire(dom, &k, &b, &conn, &err) != KERR_OK) return NULL;
  kmsi_backend_release(dom, &k, conn);
  return b;
}

/* Run `fn` with stderr (kmsd's log) going to a file; returns what was
 * logged (caller frees). */
static char *capture_log(void (*fn)(void)) {
  char path[128];
  int saved, fd;
  snprintf(path, sizeof path, "%s/captured.log", dir);
  fflush(stderr);
  saved = dup(STDERR_FILENO);
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(saved >= 0 && fd >= 0);
  dup2(fd, STDERR_FILENO);
  close(fd);
  fn();
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  return read_file(path);
}

static void sweep_now(void) {
  kerr err;
  assert_int_equal(kmsi_cks_scan(dom, true, &err), KERR_OK);
}

/* Run `fn`; what it logged must contain `needle`. */
static void expect_logged(void (*fn)(void), const char *needle) {
  char *log = capture_log(fn);
  assert_non_null(log);
  assert_non_null(strstr(log, needle));
  free(log);
}

static void attach_cloudhsm(void) { assert_null(live_backend("cks-00000000000000003")); }

static size_t count(const char *hay, const char *needle) {
  size_t n = 0;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
  return n;
}

static void test_restart_resumes_connected_external_store(void **state) {
  char st[STORE_ENUM_MAX], code[STORE_CKS_ERROR_MAX];
  kerr err;
  (void)state;
  put_xks("cks-00000000000000001", 1, "CONNECTED", false);
  put_xks("cks-00000000000000002", 2, "CONNECTED", true);
  put_cloudhsm("cks-00000000000000003", "CONNECTED");
  put_xks("cks-00000000000000004", 4, "CONNECTING", false);
  reopen(-1, 60000);

  /* At once, without any proxy: CONNECTED, and a connection to use. */
  state_of("cks-00000000000000001", st, code);
  assert_string_equal(st, "CONNECTED");
  assert_string_equal(code, "");
  assert_ptr_equal(live_backend("cks-00000000000000001"), &kms_backend_xks);

  /* The health check fails (nothing listens), is logged with its code, and
   * changes nothing. */
  expect_logged(sweep_now, "custom key store cks-00000000000000001: health check failed "
                           "(XKS_PROXY_NOT_REACHABLE)");
  state_of("cks-00000000000000001", st, code);
  assert_string_equal(st, "CONNECTED");
  assert_ptr_equal(live_backend("cks-00000000000000001"), &kms_backend_xks);

  /* The damaged one fails; the one left CONNECTING connects for real and
   * fails as a connect does. */
  wait_failed("cks-00000000000000002", "INTERNAL_ERROR");
  wait_failed("cks-00000000000000004", "XKS_PROXY_NOT_REACHABLE");
  assert_null(live_backend("cks-00000000000000002"));

  /* The CloudHSM store stays CONNECTED; its cluster is gone, so this node
   * cannot log in: logged, and no connection to use. */
  expect_logged(attach_cloudhsm, "custom key store cks-00000000000000003 is CONNECTED, but "
                                 "this node cannot open its connection (CLUSTER_NOT_FOUND)");
  state_of("cks-00000000000000003", st, code);
  assert_string_equal(st, "CONNECTED");
  /* /health counts it until a disconnect. */
  assert_int_equal(kms_domain_unreachable_key_stores(dom), 1);
  assert_int_equal(kms_op_disconnect_custom_key_store(dom, &call, "cks-00000000000000003", &err),
                   KERR_OK);
  kmsi_cks_reconcile_all(dom);
  assert_int_equal(kms_domain_unreachable_key_stores(dom), 0);

  /* Disconnect takes the resumed connection away. */
  assert_int_equal(kms_op_disconnect_custom_key_store(dom, &call, "cks-00000000000000001", &err),
                   KERR_OK);
  state_of("cks-00000000000000001", st, NULL);
  assert_string_equal(st, "DISCONNECTED");
  assert_null(live_backend("cks-00000000000000001"));
}

#define MANY 150 /* more than the 100 per round an earlier sweep checked */

static void test_sweep_checks_every_connected_store(void **state) {
  char id[STORE_CKS_ID_MAX], line[128], *log;
  (void)state;
  for (int i = 0; i < MANY; i++) {
    snprintf(id, sizeof id, "cks-%017d", 100 + i);
    put_xks(id, i, "CONNECTED", false);
  }
  put_cloudhsm("cks-00000000000000003", "DISCONNECTED");
  reopen(-1, 60000);
  log = capture_log(sweep_now);
  assert_non_null(log);
  assert_int_equal(count(log, ": health check failed (XKS_PROXY_NOT_REACHABLE)"), MANY);
  for (int i = 0; i < MANY; i++) {
    snprintf(line, sizeof line, "custom key store cks-%017d: health check failed", 100 + i);
    assert_int_equal(count(log, line), 1);
  }
  free(log);
  /* Not again before the interval has passed. */
  log = capture_log(sweep_now);
  assert_non_null(log);
  assert_int_equal(count(log, "health check failed"), 0);
  free(log);
}

static void test_open_close_with_sweeper_running(void **state) {
  char st[STORE_ENUM_MAX];
  (void)state;
  put_xks("cks-00000000000000001", 1, "CONNECTED", false);
  put_xks("cks-00000000000000002", 2, "CONNECTING", false);
  put_cloudhsm("cks-00000000000000003", "CONNECTED");
  for (int i = 0; i < 10; i++) {
    /* A sweeper every millisecond, health checks every 100 ms: the sweeper
     * runs against the manager while recovery work is still going on. */
    reopen(1, 100);
    sleep_ms(i * 15);
  }
  state_of("cks-00000000000000001", st, NULL);
  assert_string_equal(st, "CONNECTED");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_restart_resumes_connected_external_store, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_sweep_checks_every_connected_store, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_close_with_sweeper_running, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
