/* test_cks_hsm.c - a KMS key in a CloudHSM key store, down to the PKCS#11
 * token: a real cluster (SoftHSM2 tokens, certificates signed with the
 * openssl command line), a connected store, a key made through CreateKey;
 * then the test logs into an HSM token as kmsuser with the password kmsd
 * rotated to (unwrapped from the store with the root key) and shows that
 * C_GetAttributeValue(CKA_VALUE) of the key fails: its value never leaves the
 * HSM.  Also: connect rotated the password away from the one the customer
 * gave, and the ciphertext made in the HSM decrypts. */
#include "domain_fixture.h"

#include "kms/kms_internal.h"
#include "pkcs11/p11.h"
#include "pkcs11/p11_softhsm.h"

#define ACCT FIXTURE_ACCT
#define REGION FIXTURE_REGION
#define KMSUSER_PW "kmsuser-given-pw"
#define WAIT_MS FIXTURE_WAIT_MS

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
  fclose(f);
}

static void wait_cluster(const char *cluster_id, const char *state, int active_hsms) {
  wait_cluster_hsms(cluster_id, state, active_hsms, false);
}

static void wait_store(const char *cks_id, const char *state) {
  for (int waited = 0; waited < WAIT_MS; waited += 20) {
    kms_describe_cks_input in;
    kms_describe_cks_output out;
    kerr err;
    bool done;
    memset(&in, 0, sizeof in);
    in.custom_key_store_id = cks_id;
    assert_int_equal(kms_op_describe_custom_key_stores(dom, &call, &in, &out, &err), KERR_OK);
    done = strcmp(out.stores[0].connection_state, state) == 0;
    if (strcmp(out.stores[0].connection_state, "FAILED") == 0)
      fail_msg("store failed: %s", out.stores[0].connection_error_code);
    kms_describe_cks_output_clear(&out);
    if (done) return;
    sleep_ms(20);
  }
  fail_msg("store %s never reached %s", cks_id, state);
}

static int setup(void **state) {
  (void)state;
  return fixture_open("test-cks-hsm", "req-cks-hsm");
}

static int teardown(void **state) {
  (void)state;
  return fixture_close();
}

/* A cluster made as a customer makes it: create, sign the CSR with their
 * own CA, initialize, two HSMs in two zones, activate, kmsuser. */
static void make_cluster(char cluster_id[STORE_HSM_ID_MAX], char **trust_anchor) {
  const char *subnets[] = {"subnet-0a1b2c3d", "subnet-0e1f2a3b"};
  hsm_create_cluster_input ci;
  hsm_cluster_desc c;
  store_hsm h;
  char path[128], st[STORE_ENUM_MAX], *signed_pem;
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
  assert_non_null(c.c.csr_pem);
  snprintf(path, sizeof path, "%s/cluster.csr", dir);
  write_file(path, c.c.csr_pem);
  hsm_cluster_desc_clear(&c);
  run("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 "
      "-subj /CN=test-ca");
  run("openssl x509 -req -in cluster.csr -CA ca.crt -CAkey ca.key -set_serial 7 -days 30 "
      "-out cluster.crt");
  snprintf(path, sizeof path, "%s/cluster.crt", dir);
  signed_pem = read_file(path);
  snprintf(path, sizeof path, "%s/ca.crt", dir);
  *trust_anchor = read_file(path);
  assert_non_null(signed_pem);
  assert_non_null(*trust_anchor);
  if (hsm_initialize_cluster(kms_domain_cloudhsm(dom), &call, cluster_id, signed_pem, *trust_anchor, st, &err))
    fail_msg("initialize: %s", err.msg);
  free(signed_pem);
  wait_cluster(cluster_id, "INITIALIZED", 0);
  for (int z = 0; z < 2; z++) {
    char zone[16];
    snprintf(zone, sizeof zone, REGION "%c", 'a' + z);
    memset(&h, 0, sizeof h);
    if (hsm_create_hsm(kms_domain_cloudhsm(dom), &call, cluster_id, zone, NULL, &h, &err))
      fail_msg("create_hsm: %s", err.msg);
  }
  wait_cluster(cluster_id, "INITIALIZED", 2);
  if (hsm_admin_activate(kms_domain_cloudhsm(dom), &call, cluster_id, "admin-password", &err))
    fail_msg("activate: %s", err.msg);
  wait_cluster(cluster_id, "ACTIVE", 2);
  if (hsm_admin_create_user(kms_domain_cloudhsm(dom), &call, cluster_id, "kmsuser", "crypto-user", KMSUSER_PW, &err))
    fail_msg("create_user: %s", err.msg);
}

/* The kmsuser password kmsd rotated to, unwrapped from the store. */
static void rotated_password(const char *cks_id, char out[33]) {
  store_tx *tx = NULL;
  store_cks c;
  uint8_t pw[AESGCM_KEY_LEN];
  kerr err;
  assert_int_equal(dom->st->ops->begin(dom->st, false, &tx, &err), KERR_OK);
  assert_int_equal(dom->st->ops->cks_get(tx, cks_id, &c, &err), KERR_OK);
  dom->st->ops->rollback(tx);
  assert_non_null(c.password_wrapped);
  assert_null(c.pending_password_wrapped);
  assert_int_equal(rootkey_unwrap(dom->rk, cks_id, "kmsuser-password", c.password_wrapped,
                                  c.password_wrapped_len, pw, &err),
                   KERR_OK);
  memcpy(out, pw, AESGCM_KEY_LEN);
  out[AESGCM_KEY_LEN] = '\0';
  store_cks_clear(&c);
}

static void test_key_value_never_leaves_the_hsm(void **state) {
  char cluster_id[STORE_HSM_ID_MAX], cks_id[KMS_CKS_ID_MAX], pw[33], module_path[512];
  char *trust_anchor = NULL;
  kms_create_cks_input ci;
  kms_create_key_input ki;
  kms_key_metadata md;
  kms_encrypt_input ei;
  kms_encrypt_output eo;
  kms_decrypt_input di;
  kms_decrypt_output dout;
  hsm_cluster_desc c;
  p11_module *mod = NULL;
  kerr err;
  p11_err perr;
  (void)state;

  make_cluster(cluster_id, &trust_anchor);
  memset(&ci, 0, sizeof ci);
  ci.custom_key_store_name = "hsm-store";
  ci.cloud_hsm_cluster_id = cluster_id;
  ci.trust_anchor_certificate = trust_anchor;
  ci.key_store_password = KMSUSER_PW;
  if (kms_op_create_custom_key_store(dom, &call, &ci, cks_id, &err)) fail_msg("create store: %s", err.msg);
  free(trust_anchor);
  assert_int_equal(kms_op_connect_custom_key_store(dom, &call, cks_id, &err), KERR_OK);
  wait_store(cks_id, "CONNECTED");

  memset(&ki, 0, sizeof ki);
  ki.origin = "AWS_CLOUDHSM";
  ki.custom_key_store_id = cks_id;
  if (kms_op_create_key(dom, &call, &ki, &md, &err)) fail_msg("create key: %s", err.msg);
  assert_string_equal(md.origin, "AWS_CLOUDHSM");
  assert_string_equal(md.cloud_hsm_cluster_id, cluster_id);

  memset(&ei, 0, sizeof ei);
  ei.key_id = md.key_id;
  ei.plaintext = (const uint8_t *)"in the hsm";
  ei.plaintext_len = 10;
  assert_int_equal(kms_op_encrypt(dom, &call, &ei, &eo, &err), KERR_OK);
  memset(&di, 0, sizeof di);
  di.ciphertext = eo.ciphertext;
  di.ciphertext_len = eo.ciphertext_len;
  assert_int_equal(kms_op_decrypt(dom, &call, &di, &dout, &err), KERR_OK);
  assert_int_equal(dout.plaintext.len, 10);
  assert_memory_equal(dout.plaintext.data, "in the hsm", 10);
  kms_decrypt_output_clear(&dout);
  kms_encrypt_output_clear(&eo);

  /* Connect rotated kmsuser's password to one only kmsd knows. */
  rotated_password(cks_id, pw);
  assert_int_equal(strlen(pw), 32);
  assert_string_not_equal(pw, KMSUSER_PW);

  /* Disconnect (kmsd logs out), then log into each HSM token as kmsuser. */
  assert_int_equal(kms_op_disconnect_custom_key_store(dom, &call, cks_id, &err), KERR_OK);
  describe(cluster_id, &c);
  assert_true(c.nhsms >= 2);
  assert_int_equal(p11_softhsm_find_module(NULL, module_path, sizeof module_path, &perr), KERR_OK);
  assert_int_equal(p11_module_load(module_path, &mod, &perr), KERR_OK);
  for (size_t i = 0; i < c.nhsms; i++) {
    p11_token *tok = NULL;
    p11_session *s = NULL;
    CK_OBJECT_HANDLE key;
    uint8_t value[64];
    CK_ATTRIBUTE attr = {CKA_VALUE, value, sizeof value};
    p11_key_info info;
    CK_RV rv;
    kerr_code lrc;
    if (strcmp(c.hsms[i].state, "ACTIVE") != 0) continue;
    assert_int_equal(p11_token_open(mod, c.hsms[i].token_label, 1, &tok, &perr), KERR_OK);
    lrc = p11_token_login(tok, pw, &perr);
    /* The cluster manager of this process may hold the user login already
     * (PKCS#11 login state is per application); that is the same PIN. */
    if (lrc != KERR_OK) assert_int_equal(perr.rv, CKR_USER_ALREADY_LOGGED_IN);
    assert_int_equal(p11_session_acquire(tok, &s, &perr), KERR_OK);
    assert_int_equal(p11_key_find(s, md.key_id, &key, &perr), KERR_OK);
    rv = p11_module_functions(mod)->C_GetAttributeValue(p11_session_handle(s), key, &attr, 1);
    assert_int_equal(rv, CKR_ATTRIBUTE_SENSITIVE);
    assert_int_equal(attr.ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_int_equal(p11_key_get_info(s, key, &info, &perr), KERR_OK);
    /* CKA_ALWAYS_SENSITIVE is not asserted: a copy made by C_UnwrapKey on
     * another HSM lacks it by definition, yet is just as sensitive. */
    assert_int_equal(info.sensitive, 1);
    assert_true(!info.extractable || info.wrap_with_trusted);
    p11_session_release(s);
    if (lrc == KERR_OK) p11_token_logout(tok, &perr);
    p11_token_close(tok);
  }
  p11_module_release(mod);
  hsm_cluster_desc_clear(&c);
  kms_key_metadata_clear(&md);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_key_value_never_leaves_the_hsm, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
