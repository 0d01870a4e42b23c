/* test_hsm_clusters.c - HSM clusters through their domain C API
 * (hsm_admin.h, hsm_cluster.h) on real parts: SoftHSM2 tokens under a
 * temporary data directory, a real SQLite store, certificates made with the
 * openssl command line.  Covers the cluster life cycle and its certificate
 * rules, HSM provisioning and keys reaching a new HSM after the old ones are
 * gone, the five-failure lockout, the order of hsm_cluster_connect's
 * ConnectionErrorCodes, a connect given several passwords and a password
 * change through the connection, that a cluster key's value cannot be
 * read from a token even by kmsuser (CKR_ATTRIBUTE_SENSITIVE), and that a
 * deleted HSM whose token cannot be scrubbed is never reported DELETED. */
#include "domain_fixture.h"

#include "cloudhsm/hsm_cluster.h"
#include "cloudhsm/hsm_internal.h"
#include "pkcs11/p11.h"
#include "pkcs11/p11_softhsm.h"

#define ACCT FIXTURE_ACCT
#define REGION FIXTURE_REGION
#define KMSUSER_PW "kmsuser-pw-1"

/* Wait for the cluster's state and exactly `active` ACTIVE HSMs with none
 * in progress. */
static void wait_cluster(const char *cluster_id, const char *state, int active) {
  wait_cluster_hsms(cluster_id, state, active, true);
}

static int setup(void **state) {
  (void)state;
  if (fixture_open("test-hsm-clusters", "req-hsm-clusters") != 0) return -1;
  /* The customer's CA, and a second CA that has nothing to do with it. */
  run("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 "
      "-subj /CN=customer-ca");
  run("openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.crt -days 30 "
      "-subj /CN=customer-ca");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return fixture_close();
}

/* CreateCluster with two subnets; waits for UNINITIALIZED and returns the CSR. */
static char *new_cluster(char cluster_id[STORE_HSM_ID_MAX]) {
  const char *subnets[] = {"subnet-0a1b2c3d", "subnet-0e1f2a3b"};
  hsm_create_cluster_input ci;
  hsm_cluster_desc c;
  kerr err;
  memset(&ci, 0, sizeof ci);
  ci.hsm_type = "hsm1.medium";
  ci.subnet_ids = subnets;
  ci.nsubnets = 2;
  if (hsm_create_cluster(kms_domain_cloudhsm(dom), &call, &ci, &c, &err) != KERR_OK) fail_msg("create: %s", err.msg);
  snprintf(cluster_id, STORE_HSM_ID_MAX, "%s", c.c.cluster_id);
  hsm_cluster_desc_clear(&c);
  wait_cluster(cluster_id, "UNINITIALIZED", 0);
  describe(cluster_id, &c);
  assert_true(c.show_csr);
  assert_false(c.show_cluster_cert);
  assert_non_null(strstr(c.c.csr_pem, "BEGIN CERTIFICATE REQUEST"));
  char *csr = strdup(c.c.csr_pem);
  hsm_cluster_desc_clear(&c);
  return csr;
}

/* Sign `csr` with CA `ca` ("ca" or "other"); returns the certificate PEM. */
static char *sign(const char *csr, const char *ca) {
  char cmd[256];
  write_in_dir("req.csr", csr);
  snprintf(cmd, sizeof cmd,
           "openssl x509 -req -in req.csr -CA %s.crt -CAkey %s.key -set_serial 9 -days 30 "
           "-out signed.crt", ca, ca);
  run(cmd);
  return read_in_dir("signed.crt");
}

static void create_hsm(const char *cluster_id, char zone_letter, char hsm_id[STORE_HSM_ID_MAX]) {
  char zone[16];
  store_hsm h;
  kerr err;
  snprintf(zone, sizeof zone, REGION "%c", zone_letter);
  memset(&h, 0, sizeof h);
  if (hsm_create_hsm(kms_domain_cloudhsm(dom), &call, cluster_id, zone, NULL, &h, &err)) fail_msg("create_hsm: %s", err.msg);
  assert_string_equal(h.state, "CREATE_IN_PROGRESS");
  if (hsm_id) snprintf(hsm_id, STORE_HSM_ID_MAX, "%s", h.hsm_id);
}

static void delete_hsm(const char *cluster_id, const char *hsm_id) {
  char out[STORE_HSM_ID_MAX];
  kerr err;
  if (hsm_delete_hsm(kms_domain_cloudhsm(dom), &call, cluster_id, hsm_id, NULL, NULL, out, &err))
    fail_msg("delete_hsm: %s", err.msg);
  assert_string_equal(out, hsm_id);
}

/* An ACTIVE cluster with HSMs in zones a and b; kmsuser unless !with_kmsuser. */
static void active_cluster(char cluster_id[STORE_HSM_ID_MAX], bool with_kmsuser) {
  char st[STORE_ENUM_MAX];
  kerr err;
  char *csr = new_cluster(cluster_id);
  char *cert = sign(csr, "ca");
  char *anchor = read_in_dir("ca.crt");
  if (hsm_initialize_cluster(kms_domain_cloudhsm(dom), &call, cluster_id, cert, anchor, st, &err))
    fail_msg("initialize: %s", err.msg);
  wait_cluster(cluster_id, "INITIALIZED", 0);
  create_hsm(cluster_id, 'a', NULL);
  create_hsm(cluster_id, 'b', NULL);
  wait_cluster(cluster_id, "INITIALIZED", 2);
  assert_int_equal(hsm_admin_activate(kms_domain_cloudhsm(dom), &call, cluster_id, "admin-pw-1", &err), KERR_OK);
  wait_cluster(cluster_id, "ACTIVE", 2);
  if (with_kmsuser)
    assert_int_equal(hsm_admin_create_user(kms_domain_cloudhsm(dom), &call, cluster_id, "kmsuser", "crypto-user",
                                           KMSUSER_PW, &err), KERR_OK);
  free(csr);
  free(cert);
  free(anchor);
}

/* hsm_cluster_connect with one password. */
static kerr_code connect_with(const char *account, const char *cluster_id, const char *password,
                              hsm_conn **conn, const char **code, kerr *err) {
  const char *passwords[] = {password};
  return hsm_cluster_connect(kms_domain_cloudhsm(dom), account, REGION, cluster_id, passwords, 1, conn, code, err);
}

/* kmsuser's failed-login count in `cluster_id`. */
static int kmsuser_failed_logins(const char *cluster_id) {
  store_hsm_user *users = NULL;
  size_t n = 0;
  int failed = -1;
  kerr err;
  assert_int_equal(hsm_admin_list_users(kms_domain_cloudhsm(dom), &call, cluster_id, &users, &n, &err), KERR_OK);
  for (size_t i = 0; i < n; i++)
    if (strcmp(users[i].username, "kmsuser") == 0) failed = users[i].failed_logins;
  free(users);
  assert_true(failed >= 0);
  return failed;
}

/* ------------------------------------------------------------- tests */

static void test_lifecycle_and_certificates(void **state) {
  char cluster_id[STORE_HSM_ID_MAX], hsm_a[STORE_HSM_ID_MAX], hsm_b[STORE_HSM_ID_MAX];
  char st[STORE_ENUM_MAX];
  hsm_cluster_desc c;
  store_hsm h;
  kerr err;
  (void)state;

  char *csr = new_cluster(cluster_id);
  describe(cluster_id, &c);
  assert_string_equal(c.c.subnets, "subnet-0a1b2c3d,subnet-0e1f2a3b");
  hsm_cluster_desc_clear(&c);

  /* Signed by another CA (same subject name, different key): refused. */
  char *anchor = read_in_dir("ca.crt");
  char *foreign = sign(csr, "other");
  assert_int_equal(hsm_initialize_cluster(kms_domain_cloudhsm(dom), &call, cluster_id, foreign, anchor, st, &err),
                   KERR_HSM_INVALID_REQUEST);
  assert_non_null(strstr(err.msg, "not signed by TrustAnchor"));
  /* Signed by the right CA but for a key that is not the CSR's: refused. */
  run("openssl req -new -newkey rsa:2048 -nodes -keyout stranger.key -out stranger.csr "
      "-subj /CN=stranger");
  char *stranger_csr = read_in_dir("stranger.csr");
  char *stranger = sign(stranger_csr, "ca");
  assert_int_equal(hsm_initialize_cluster(kms_domain_cloudhsm(dom), &call, cluster_id, stranger, anchor, st, &err),
                   KERR_HSM_INVALID_REQUEST);
  assert_non_null(strstr(err.msg, "public key of the cluster's CSR"));
  /* A trust anchor that is not self-signed: refused. */
  assert_int_equal(hsm_initialize_cluster(kms_domain_cloudhsm(dom), &call, cluster_id, stranger, stranger, st, &err),
                   KERR_HSM_INVALID_REQUEST);
  assert_non_null(strstr(err.msg, "self-signed"));
  assert_int_equal(hsm_initialize_cluster(kms_domain_cloudhsm(dom), &call, cluster_id, "not a cert", anchor, st, &err),
                   KERR_HSM_INVALID_REQUEST);
  describe(cluster_id, &c);
  assert_string_equal(c.c.state, "UNINITIALIZED"); /* nothing changed */
  hsm_cluster_desc_clear(&c);

  char *good = sign(csr, "ca");
  assert_int_equal(hsm_initialize_cluster(kms_domain_cloudhsm(dom), &call, cluster_id, good, anchor, st, &err), KERR_OK);
  assert_string_equal(st, "INITIALIZE_IN_PROGRESS");
  assert_int_equal(hsm_initialize_cluster(kms_domain_cloudhsm(dom), &call, cluster_id, good, anchor, st, &err),
                   KERR_HSM_INVALID_REQUEST);
  wait_cluster(cluster_id, "INITIALIZED", 0);
  describe(cluster_id, &c);
  assert_false(c.show_csr); /* the CSR exists only while UNINITIALIZED */
  assert_true(c.show_cluster_cert);
  assert_string_equal(c.c.cluster_cert_pem, good);
  assert_string_equal(c.c.trust_anchor_pem, anchor);
  hsm_cluster_desc_clear(&c);

  /* Activation needs an ACTIVE HSM; a zone without a subnet is refused. */
  assert_int_equal(hsm_admin_activate(kms_domain_cloudhsm(dom), &call, cluster_id, "admin-pw-1", &err),
                   KERR_HSM_INVALID_REQUEST);
  memset(&h, 0, sizeof h);
  assert_int_equal(hsm_create_hsm(kms_domain_cloudhsm(dom), &call, cluster_id, REGION "c", NULL, &h, &err),
                   KERR_HSM_INVALID_REQUEST);
  create_hsm(cluster_id, 'a', hsm_a);
  create_hsm(cluster_id, 'b', hsm_b);
  wait_cluster(cluster_id, "INITIALIZED", 2);
  describe(cluster_id, &c);
  for (size_t i = 0; i < c.nhsms; i++) {
    assert_non_null(strstr(c.hsms[i].eni_ip, strcmp(c.hsms[i].availability_zone, REGION "a") == 0
                                                 ? "10.0.0."
                                                 : "10.0.1."));
    assert_string_equal(c.hsms[i].token_label, c.hsms[i].hsm_id); /* a SoftHSM2 token of ours */
  }
  hsm_cluster_desc_clear(&c);
  assert_int_equal(hsm_admin_activate(kms_domain_cloudhsm(dom), &call, cluster_id, "short", &err), KERR_HSM_INVALID_REQUEST);
  assert_int_equal(hsm_admin_activate(kms_domain_cloudhsm(dom), &call, cluster_id, "admin-pw-1", &err), KERR_OK);
  wait_cluster(cluster_id, "ACTIVE", 2);

  /* A cluster with HSMs cannot be deleted; without them it goes to DELETED. */
  assert_int_equal(hsm_delete_cluster(kms_domain_cloudhsm(dom), &call, cluster_id, &c, &err), KERR_HSM_INVALID_REQUEST);
  delete_hsm(cluster_id, hsm_a);
  delete_hsm(cluster_id, hsm_b);
  wait_cluster(cluster_id, "ACTIVE", 0);
  assert_int_equal(hsm_delete_cluster(kms_domain_cloudhsm(dom), &call, cluster_id, &c, &err), KERR_OK);
  assert_string_equal(c.c.state, "DELETE_IN_PROGRESS");
  hsm_cluster_desc_clear(&c);
  wait_cluster(cluster_id, "DELETED", 0);
  hsm_cluster_view v;
  assert_int_equal(hsm_cluster_describe(kms_domain_cloudhsm(dom), ACCT, REGION, cluster_id, &v, &err),
                   KERR_HSM_CLUSTER_NOT_FOUND);

  free(csr);
  free(anchor);
  free(foreign);
  free(stranger_csr);
  free(stranger);
  free(good);
}

/* hsm_cluster_connect's documented order: each check is made to fail while
 * every later one would fail too, and the earlier one must be reported. */
static void test_connect_error_order(void **state) {
  char cluster_id[STORE_HSM_ID_MAX], hsm_c[STORE_HSM_ID_MAX];
  hsm_conn *conn = NULL;
  const char *code = NULL;
  kerr err;
  (void)state;

  assert_int_equal(connect_with(ACCT, "cluster-234567abcde", KMSUSER_PW, &conn, &code, &err),
                   KERR_HSM_CLUSTER_NOT_FOUND);
  assert_string_equal(code, "CLUSTER_NOT_FOUND");

  active_cluster(cluster_id, false);
  /* Another account sees no such cluster. */
  code = NULL;
  assert_int_not_equal(connect_with("444455556666", cluster_id, KMSUSER_PW, &conn, &code, &err),
                       KERR_OK);
  assert_string_equal(code, "CLUSTER_NOT_FOUND");

  /* No active HSM beats a simulated network failure and a missing kmsuser. */
  hsm_cluster_desc c;
  describe(cluster_id, &c);
  for (size_t i = 0; i < c.nhsms; i++) delete_hsm(cluster_id, c.hsms[i].hsm_id);
  hsm_cluster_desc_clear(&c);
  wait_cluster(cluster_id, "ACTIVE", 0);
  assert_int_equal(hsm_admin_simulate_failure(kms_domain_cloudhsm(dom), &call, cluster_id, "network-errors", &err), KERR_OK);
  assert_int_not_equal(connect_with(ACCT, cluster_id, KMSUSER_PW, &conn, &code, &err), KERR_OK);
  assert_string_equal(code, "INSUFFICIENT_CLOUDHSM_HSMS");

  create_hsm(cluster_id, 'a', hsm_c);
  wait_cluster(cluster_id, "ACTIVE", 1);
  /* Each simulated failure beats the missing kmsuser. */
  static const char *const kinds[][2] = {
      {"network-errors", "NETWORK_ERRORS"},
      {"subnet-not-found", "SUBNET_NOT_FOUND"},
      {"no-free-addresses", "INSUFFICIENT_FREE_ADDRESSES_IN_SUBNET"},
      {"internal-error", "INTERNAL_ERROR"},
  };
  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(hsm_admin_simulate_failure(kms_domain_cloudhsm(dom), &call, cluster_id, kinds[i][0], &err), KERR_OK);
    assert_int_not_equal(connect_with(ACCT, cluster_id, KMSUSER_PW, &conn, &code, &err), KERR_OK);
    assert_string_equal(code, kinds[i][1]);
  }
  assert_int_equal(hsm_admin_simulate_failure(kms_domain_cloudhsm(dom), &call, cluster_id, "bogus", &err),
                   KERR_HSM_INVALID_REQUEST);
  assert_int_equal(hsm_admin_simulate_failure(kms_domain_cloudhsm(dom), &call, cluster_id, "none", &err), KERR_OK);
  assert_int_not_equal(connect_with(ACCT, cluster_id, KMSUSER_PW, &conn, &code, &err), KERR_OK);
  assert_string_equal(code, "USER_NOT_FOUND");

  /* kmsuser locked and logged in: the lockout is reported first. */
  assert_int_equal(hsm_admin_create_user(kms_domain_cloudhsm(dom), &call, cluster_id, "kmsuser", "crypto-user",
                                         KMSUSER_PW, &err), KERR_OK);
  assert_int_equal(hsm_admin_login(kms_domain_cloudhsm(dom), &call, cluster_id, "kmsuser", KMSUSER_PW, &err), KERR_OK);
  for (int i = 0; i < 5; i++)
    assert_int_equal(hsm_admin_login(kms_domain_cloudhsm(dom), &call, cluster_id, "kmsuser", "wrong-pw-1", &err),
                     KERR_HSM_ACCESS_DENIED);
  assert_int_not_equal(connect_with(ACCT, cluster_id, KMSUSER_PW, &conn, &code, &err), KERR_OK);
  assert_string_equal(code, "USER_LOCKED_OUT");
  /* Unlocked but still logged in through hsm-cli. */
  assert_int_equal(hsm_admin_change_password(kms_domain_cloudhsm(dom), &call, cluster_id, "kmsuser", KMSUSER_PW, &err),
                   KERR_OK);
  assert_int_not_equal(connect_with(ACCT, cluster_id, "wrong-pw-1", &conn, &code, &err), KERR_OK);
  assert_string_equal(code, "USER_LOGGED_IN");
  assert_int_equal(hsm_admin_logout(kms_domain_cloudhsm(dom), &call, cluster_id, "kmsuser", &err), KERR_OK);
  assert_int_not_equal(connect_with(ACCT, cluster_id, "wrong-pw-1", &conn, &code, &err), KERR_OK);
  assert_string_equal(code, "INVALID_CREDENTIALS");
  assert_int_equal(connect_with(ACCT, cluster_id, KMSUSER_PW, &conn, &code, &err), KERR_OK);
  assert_non_null(conn);
  hsm_conn_close(conn);
}

static void test_lockout_after_five_failures(void **state) {
  char cluster_id[STORE_HSM_ID_MAX];
  store_hsm_user *users = NULL;
  size_t n = 0;
  hsm_conn *conn = NULL;
  const char *code = NULL;
  kerr err;
  (void)state;
  active_cluster(cluster_id, true);

  for (int i = 0; i < 4; i++)
    assert_int_equal(hsm_admin_login(kms_domain_cloudhsm(dom), &call, cluster_id, "kmsuser", "wrong-pw-1", &err),
                     KERR_HSM_ACCESS_DENIED);
  /* A success resets the count: four more failures do not lock. */
  assert_int_equal(hsm_admin_login(kms_domain_cloudhsm(dom), &call, cluster_id, "kmsuser", KMSUSER_PW, &err), KERR_OK);
  assert_int_equal(hsm_admin_logout(kms_domain_cloudhsm(dom), &call, cluster_id, "kmsuser", &err), KERR_OK);
  for (int i = 0; i < 4; i++)
    assert_int_equal(hsm_admin_login(kms_domain_cloudhsm(dom), &call, cluster_id, "kmsuser", "wrong-pw-1", &err),
                     KERR_HSM_ACCESS_DENIED);
  assert_int_equal(hsm_admin_list_users(kms_domain_cloudhsm(dom), &call, cluster_id, &users, &n, &err), KERR_OK);
  for (size_t i = 0; i < n; i++)
    if (strcmp(users[i].username, "kmsuser") == 0) assert_false(users[i].locked);
  free(users);
  /* The fifth in a row locks; then even the right password is refused. */
  assert_int_equal(hsm_admin_login(kms_domain_cloudhsm(dom), &call, cluster_id, "kmsuser", "wrong-pw-1", &err),
                   KERR_HSM_ACCESS_DENIED);
  assert_int_equal(hsm_admin_login(kms_domain_cloudhsm(dom), &call, cluster_id, "kmsuser", KMSUSER_PW, &err),
                   KERR_HSM_ACCESS_DENIED);
  assert_non_null(strstr(err.msg, "locked out"));
  assert_null(strstr(err.msg, KMSUSER_PW));
  assert_int_equal(hsm_admin_list_users(kms_domain_cloudhsm(dom), &call, cluster_id, &users, &n, &err), KERR_OK);
  bool seen = false;
  for (size_t i = 0; i < n; i++)
    if (strcmp(users[i].username, "kmsuser") == 0) {
      seen = true;
      assert_true(users[i].locked);
    }
  assert_true(seen);
  free(users);
  /* Failed KMS connections count too: a new password, then five bad connects. */
  assert_int_equal(hsm_admin_change_password(kms_domain_cloudhsm(dom), &call, cluster_id, "kmsuser", KMSUSER_PW, &err),
                   KERR_OK);
  for (int i = 0; i < 5; i++) {
    assert_int_not_equal(connect_with(ACCT, cluster_id, "wrong-pw-1", &conn, &code, &err), KERR_OK);
    assert_string_equal(code, "INVALID_CREDENTIALS");
  }
  assert_int_not_equal(connect_with(ACCT, cluster_id, KMSUSER_PW, &conn, &code, &err), KERR_OK);
  assert_string_equal(code, "USER_LOCKED_OUT");
  assert_int_equal(hsm_admin_change_password(kms_domain_cloudhsm(dom), &call, cluster_id, "kmsuser", KMSUSER_PW, &err),
                   KERR_OK);
  assert_int_equal(connect_with(ACCT, cluster_id, KMSUSER_PW, &conn, &code, &err), KERR_OK);
  hsm_conn_close(conn);
}

/* Log into `label` as kmsuser with `pin` and check the key `key_label` is
 * there and its value cannot be read. */
static void assert_key_sealed(const char *token_label, const char *pin, const char *key_label) {
  char module_path[512];
  p11_module *mod = NULL;
  p11_token *tok = NULL;
  p11_session *s = NULL;
  CK_OBJECT_HANDLE key;
  uint8_t value[64];
  CK_ATTRIBUTE attr = {CKA_VALUE, value, sizeof value};
  p11_key_info info;
  p11_err perr;
  assert_int_equal(p11_softhsm_find_module(NULL, module_path, sizeof module_path, &perr), KERR_OK);
  assert_int_equal(p11_module_load(module_path, &mod, &perr), KERR_OK);
  assert_int_equal(p11_token_open(mod, token_label, 1, &tok, &perr), KERR_OK);
  kerr_code lrc = p11_token_login(tok, pin, &perr);
  /* This process's cluster manager may hold the login already (PKCS#11
   * login state is per application); it is the same PIN. */
  if (lrc != KERR_OK) assert_int_equal(perr.rv, CKR_USER_ALREADY_LOGGED_IN);
  assert_int_equal(p11_session_acquire(tok, &s, &perr), KERR_OK);
  assert_int_equal(p11_key_find(s, key_label, &key, &perr), KERR_OK);
  CK_RV rv = p11_module_functions(mod)->C_GetAttributeValue(p11_session_handle(s), key, &attr, 1);
  assert_int_equal(rv, CKR_ATTRIBUTE_SENSITIVE);
  assert_int_equal(attr.ulValueLen, CK_UNAVAILABLE_INFORMATION);
  assert_int_equal(p11_key_get_info(s, key, &info, &perr), KERR_OK);
  assert_int_equal(info.sensitive, 1);
  assert_int_equal(info.extractable, 0); /* copies on the HSMs are never extractable */
  p11_session_release(s);
  if (lrc == KERR_OK) p11_token_logout(tok, &perr);
  p11_token_close(tok);
  p11_module_release(mod);
}

/* A connect takes, on each HSM, the first of its passwords that HSM accepts;
 * the ones refused on the way are not failed logins.  A password change
 * through the connection reaches every HSM and the cluster's record. */
static void test_connect_with_candidates_and_change(void **state) {
  char cluster_id[STORE_HSM_ID_MAX];
  hsm_conn *conn = NULL;
  const char *code = NULL;
  const char *wrong_then_right[] = {"wrong-pw-1", KMSUSER_PW};
  const char *old_then_new[] = {KMSUSER_PW, "rotated-pw-12"};
  kerr err;
  (void)state;
  active_cluster(cluster_id, true);

  assert_int_equal(hsm_cluster_connect(kms_domain_cloudhsm(dom), ACCT, REGION, cluster_id, wrong_then_right, 2, &conn,
                                       &code, &err), KERR_OK);
  assert_true(hsm_conn_has_password(conn, KMSUSER_PW));
  assert_false(hsm_conn_has_password(conn, "wrong-pw-1"));
  assert_int_equal(kmsuser_failed_logins(cluster_id), 0);

  assert_int_equal(hsm_conn_set_password(conn, "rotated-pw-12", &err), KERR_OK);
  assert_true(hsm_conn_has_password(conn, "rotated-pw-12"));
  assert_false(hsm_conn_has_password(conn, KMSUSER_PW));
  /* Changing to the password the HSMs have already is a no-op. */
  assert_int_equal(hsm_conn_set_password(conn, "rotated-pw-12", &err), KERR_OK);
  hsm_conn_close(conn);
  conn = NULL;

  /* Every HSM has the new password: the old one alone is refused (one
   * failed login), the pair connects and resets the count. */
  assert_int_not_equal(connect_with(ACCT, cluster_id, KMSUSER_PW, &conn, &code, &err), KERR_OK);
  assert_string_equal(code, "INVALID_CREDENTIALS");
  assert_null(strstr(err.msg, KMSUSER_PW));
  assert_int_equal(kmsuser_failed_logins(cluster_id), 1);
  assert_int_equal(hsm_cluster_connect(kms_domain_cloudhsm(dom), ACCT, REGION, cluster_id, old_then_new, 2, &conn,
                                       &code, &err), KERR_OK);
  assert_int_equal(kmsuser_failed_logins(cluster_id), 0);
  hsm_conn_close(conn);
  /* The cluster's record followed: hsm-cli's login checks the new one. */
  assert_int_equal(hsm_admin_login(kms_domain_cloudhsm(dom), &call, cluster_id, "kmsuser", "rotated-pw-12", &err),
                   KERR_OK);
  assert_int_equal(hsm_admin_logout(kms_domain_cloudhsm(dom), &call, cluster_id, "kmsuser", &err), KERR_OK);
}

/* A connect that fails on a later HSM leaves none of the HSMs before it
 * logged in as kmsuser: the store is not connected, so it holds nothing. */
static void test_failed_connect_leaves_no_login(void **state) {
  char cluster_id[STORE_HSM_ID_MAX];
  store_tx *tx = NULL;
  store_hsm *hsms = NULL;
  size_t n = 0;
  hsm_live *l = NULL;
  hsm_conn *conn = NULL;
  const char *code = NULL;
  p11_err pe;
  kerr err;
  (void)state;
  active_cluster(cluster_id, true);
  assert_int_equal(hsmi_begin(kms_domain_cloudhsm(dom), false, &tx, &err), KERR_OK);
  assert_int_equal(hsmi_active_hsms(kms_domain_cloudhsm(dom), tx, cluster_id, &hsms, &n, &err), KERR_OK);
  kms_domain_cloudhsm(dom)->st->ops->rollback(tx);
  assert_int_equal(n, 2);

  /* The last HSM a connect reaches gets a kmsuser PIN of its own. */
  assert_int_equal(hsmi_live_get(kms_domain_cloudhsm(dom), &hsms[n - 1], &l, &pe), KERR_OK);
  pthread_rwlock_wrlock(&l->lock);
  assert_int_equal(hsmi_login_locked(l, KMSUSER_PW, true, &pe), KERR_OK);
  assert_int_equal(p11_token_set_pin(l->tok, KMSUSER_PW, "its-own-pin-77", &pe), KERR_OK);
  p11_token_logout(l->tok, NULL);
  pthread_rwlock_unlock(&l->lock);
  hsmi_live_put(kms_domain_cloudhsm(dom), l);

  assert_int_not_equal(connect_with(ACCT, cluster_id, KMSUSER_PW, &conn, &code, &err), KERR_OK);
  assert_null(conn);
  assert_string_equal(code, "INVALID_CREDENTIALS");
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(hsmi_live_get(kms_domain_cloudhsm(dom), &hsms[i], &l, &pe), KERR_OK);
    pthread_rwlock_rdlock(&l->lock);
    int logged_in = p11_token_logged_in(l->tok);
    pthread_rwlock_unlock(&l->lock);
    hsmi_live_put(kms_domain_cloudhsm(dom), l);
    if (logged_in) fail_msg("HSM %s is still logged in after a failed connect", hsms[i].hsm_id);
  }
  free(hsms);
}

static void test_keys_reach_a_new_hsm_and_stay_sealed(void **state) {
  char cluster_id[STORE_HSM_ID_MAX], fresh[STORE_HSM_ID_MAX];
  hsm_conn *conn = NULL;
  const char *code = NULL;
  uint8_t iv[HSM_GCM_IV_LEN], tag[HSM_GCM_TAG_LEN], ct[16], pt[16], rnd[32] = {0}, zero[32] = {0};
  hsm_cluster_desc c;
  kerr err;
  (void)state;
  active_cluster(cluster_id, true);

  assert_int_equal(connect_with(ACCT, cluster_id, KMSUSER_PW, &conn, &code, &err), KERR_OK);
  assert_int_equal(hsm_conn_create_key(conn, "key-one", &err), KERR_OK);
  assert_int_equal(hsm_conn_encrypt(conn, "key-one", (const uint8_t *)"sixteen byte msg", 16,
                                    (const uint8_t *)"aad", 3, iv, ct, tag, &err), KERR_OK);
  assert_memory_not_equal(ct, "sixteen byte msg", 16);
  assert_int_equal(hsm_conn_random(conn, rnd, sizeof rnd, &err), KERR_OK);
  assert_memory_not_equal(rnd, zero, sizeof rnd);

  /* The key is on both HSMs, sealed. */
  describe(cluster_id, &c);
  assert_int_equal(c.nhsms, 2);
  for (size_t i = 0; i < c.nhsms; i++) assert_key_sealed(c.hsms[i].token_label, KMSUSER_PW, "key-one");
  /* Replace both HSMs: a new one in zone a first, then the old ones go. */
  create_hsm(cluster_id, 'a', fresh);
  wait_cluster(cluster_id, "ACTIVE", 3);
  for (size_t i = 0; i < c.nhsms; i++) delete_hsm(cluster_id, c.hsms[i].hsm_id);
  hsm_cluster_desc_clear(&c);
  wait_cluster(cluster_id, "ACTIVE", 1);

  /* The connection follows: the ciphertext decrypts on the new HSM only,
   * where the key arrived wrapped and is sealed too. */
  assert_int_equal(hsm_conn_decrypt(conn, "key-one", ct, 16, (const uint8_t *)"aad", 3, iv, tag, pt,
                                    &err), KERR_OK);
  assert_memory_equal(pt, "sixteen byte msg", 16);
  assert_int_equal(hsm_conn_decrypt(conn, "key-one", ct, 16, (const uint8_t *)"bad", 3, iv, tag, pt,
                                    &err), KERR_INVALID_CIPHERTEXT);
  describe(cluster_id, &c);
  assert_string_equal(c.hsms[0].hsm_id, fresh);
  assert_key_sealed(c.hsms[0].token_label, KMSUSER_PW, "key-one");
  hsm_cluster_desc_clear(&c);

  /* Fewer than two active HSMs: no new keys; deleting removes it. */
  assert_int_equal(hsm_conn_create_key(conn, "key-two", &err), KERR_HSM_CLUSTER_INVALID_CONFIG);
  assert_int_equal(hsm_conn_delete_key(conn, "key-one", &err), KERR_OK);
  assert_int_equal(hsm_conn_encrypt(conn, "key-one", (const uint8_t *)"sixteen byte msg", 16, NULL,
                                    0, iv, ct, tag, &err), KERR_NOT_FOUND);
  hsm_conn_close(conn);
}

/* Replace one of the cluster's stored PINs (HSMI_SECRET_USER_PIN: the one a
 * scrub logs in with; HSMI_SECRET_SO_PIN: the one that can reset it). */
static void put_pin(const char *cluster_id, const char *name, const char *pin) {
  store_tx *tx = NULL;
  kerr err;
  assert_int_equal(hsmi_begin(kms_domain_cloudhsm(dom), true, &tx, &err), KERR_OK);
  assert_int_equal(hsmi_secret_put_text(kms_domain_cloudhsm(dom), tx, cluster_id, name, pin, &err), KERR_OK);
  assert_int_equal(kms_domain_cloudhsm(dom)->st->ops->commit(tx, &err), KERR_OK);
}

static void get_pin(const char *cluster_id, const char *name, char pin[HSMI_PIN_MAX + 1]) {
  store_tx *tx = NULL;
  kerr err;
  assert_int_equal(hsmi_begin(kms_domain_cloudhsm(dom), false, &tx, &err), KERR_OK);
  assert_int_equal(hsmi_secret_get_text(kms_domain_cloudhsm(dom), tx, cluster_id, name, pin, &err), KERR_OK);
  kms_domain_cloudhsm(dom)->st->ops->rollback(tx);
}

/* The state and message of HSM `hsm_id`; false when DescribeClusters no
 * longer lists it (DELETED). */
static bool hsm_state(const char *cluster_id, const char *hsm_id, char state[STORE_ENUM_MAX],
                      char message[STORE_HSM_TEXT_MAX]) {
  hsm_cluster_desc c;
  bool found = false;
  describe(cluster_id, &c);
  for (size_t i = 0; i < c.nhsms; i++)
    if (strcmp(c.hsms[i].hsm_id, hsm_id) == 0) {
      snprintf(state, STORE_ENUM_MAX, "%s", c.hsms[i].state);
      snprintf(message, STORE_HSM_TEXT_MAX, "%s", c.hsms[i].state_message);
      found = true;
    }
  hsm_cluster_desc_clear(&c);
  return found;
}

/* Token `label` shows no object to its user (PIN `pin`). */
static void assert_token_empty(const char *label, const char *pin) {
  char module_path[512];
  p11_module *mod = NULL;
  p11_token *tok = NULL;
  p11_session *s = NULL;
  size_t left = 99;
  p11_err perr;
  assert_int_equal(p11_softhsm_find_module(NULL, module_path, sizeof module_path, &perr), KERR_OK);
  assert_int_equal(p11_module_load(module_path, &mod, &perr), KERR_OK);
  assert_int_equal(p11_token_open(mod, label, 1, &tok, &perr), KERR_OK);
  assert_int_equal(p11_token_login(tok, pin, &perr), KERR_OK);
  assert_int_equal(p11_session_acquire_as(tok, CKU_USER, &s, &perr), KERR_OK);
  assert_int_equal(p11_objects_destroy_all(s, &left, &perr), KERR_OK);
  assert_int_equal(left, 0);
  p11_session_release(s);
  p11_token_close(tok);
  p11_module_release(mod);
}

/* Deleting an HSM scrubs its token, and a scrub that cannot see the private
 * keys fails rather than reporting the token clean.  A token that refuses
 * the cluster's user PIN gets it back from the SO first.  A token that
 * cannot be scrubbed at all (here: the SO PIN is refused too) is not
 * reported DELETED, which for a pool token would hand the cluster's keys to
 * the next CreateHsm of anyone: the HSM stays DELETE_IN_PROGRESS and says
 * why through its retries, and becomes DELETED with an empty token once a
 * scrub succeeds. */
static void test_scrub_before_deleted(void **state) {
  char cluster_id[STORE_HSM_ID_MAX], victim[STORE_HSM_ID_MAX], fresh[STORE_HSM_ID_MAX];
  char label[2][33], so_pin[HSMI_PIN_MAX + 1];
  char st[STORE_ENUM_MAX], msg[STORE_HSM_TEXT_MAX];
  hsm_conn *conn = NULL;
  const char *code = NULL;
  hsm_cluster_desc c;
  kerr err;
  (void)state;
  active_cluster(cluster_id, true);
  create_hsm(cluster_id, 'a', fresh);
  wait_cluster(cluster_id, "ACTIVE", 3);
  assert_int_equal(connect_with(ACCT, cluster_id, KMSUSER_PW, &conn, &code, &err), KERR_OK);
  assert_int_equal(hsm_conn_create_key(conn, "doomed-key", &err), KERR_OK);
  hsm_conn_close(conn);
  describe(cluster_id, &c);
  assert_int_equal(c.nhsms, 3);
  for (int i = 0; i < 2; i++) snprintf(label[i], sizeof label[i], "%s", c.hsms[i].token_label);

  /* The token has kmsuser's password, the store another one: the SO gives
   * the token the stored one, and the scrub goes on. */
  put_pin(cluster_id, HSMI_SECRET_USER_PIN, "not-kmsusers-pin");
  delete_hsm(cluster_id, c.hsms[0].hsm_id);
  wait_cluster(cluster_id, "ACTIVE", 2);
  put_pin(cluster_id, HSMI_SECRET_USER_PIN, KMSUSER_PW);
  assert_token_empty(label[0], "not-kmsusers-pin");

  /* Neither PIN works: no scrub, no DELETED. */
  snprintf(victim, sizeof victim, "%s", c.hsms[1].hsm_id);
  hsm_cluster_desc_clear(&c);
  get_pin(cluster_id, HSMI_SECRET_SO_PIN, so_pin);
  put_pin(cluster_id, HSMI_SECRET_USER_PIN, "not-kmsusers-pin");
  put_pin(cluster_id, HSMI_SECRET_SO_PIN, "not-the-so-pin");
  delete_hsm(cluster_id, victim);
  int waited = 0;
  for (; waited < FIXTURE_WAIT_MS; waited += 20) {
    assert_true(hsm_state(cluster_id, victim, st, msg));
    if (strstr(msg, "Scrubbing the token failed")) break;
    sleep_ms(20);
  }
  assert_true(waited < FIXTURE_WAIT_MS);
  assert_string_equal(st, "DELETE_IN_PROGRESS");
  assert_non_null(strstr(msg, "CKR_PIN_INCORRECT"));
  /* Retried (after 1 s, then 2 s), never DELETED while it fails. */
  sleep_ms(1500);
  assert_true(hsm_state(cluster_id, victim, st, msg));
  assert_string_equal(st, "DELETE_IN_PROGRESS");

  put_pin(cluster_id, HSMI_SECRET_SO_PIN, so_pin);
  put_pin(cluster_id, HSMI_SECRET_USER_PIN, KMSUSER_PW);
  wait_cluster(cluster_id, "ACTIVE", 1);
  assert_false(hsm_state(cluster_id, victim, st, msg));
  assert_token_empty(label[1], KMSUSER_PW);
  describe(cluster_id, &c);
  assert_string_equal(c.hsms[0].hsm_id, fresh);
  assert_key_sealed(c.hsms[0].token_label, KMSUSER_PW, "doomed-key");
  hsm_cluster_desc_clear(&c);
  secure_wipe(so_pin, sizeof so_pin);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lifecycle_and_certificates),
      cmocka_unit_test(test_connect_error_order),
      cmocka_unit_test(test_lockout_after_five_failures),
      cmocka_unit_test(test_connect_with_candidates_and_change),
      cmocka_unit_test(test_failed_connect_leaves_no_login),
      cmocka_unit_test(test_keys_reach_a_new_hsm_and_stay_sealed),
      cmocka_unit_test(test_scrub_before_deleted),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
