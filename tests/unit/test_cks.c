/* test_cks.c - custom key stores below the protocol layer: the store's
 * records (real SQLite file: round trip, unique names, key counts, the
 * password never in clear on disk) and the domain's rules that need no
 * cluster (not-found errors, validation, pagination markers, external key
 * store members checked, every ConnectionState change persisted). */
#include "domain_fixture.h"

#include "core/kclock.h"
#include "kms/kms_internal.h"
#include "store/store.h"

#define ACCT FIXTURE_ACCT
#define REGION FIXTURE_REGION
#define PASSWORD "kmsuser-secret-pw"


static int setup(void **state) {
  (void)state;
  return fixture_open("test-cks", "req-cks");
}

static int teardown(void **state) {
  (void)state;
  return fixture_close();
}

/* A store record written straight through the store, as CreateCustomKeyStore does. */
static void put_record(const char *id, const char *name, const char *state) {
  store_tx *tx = NULL;
  store_cks c;
  kerr err;
  memset(&c, 0, sizeof c);
  snprintf(c.cks_id, sizeof c.cks_id, "%s", id);
  snprintf(c.account_id, sizeof c.account_id, ACCT);
  snprintf(c.region, sizeof c.region, REGION);
  snprintf(c.name, sizeof c.name, "%s", name);
  snprintf(c.type, sizeof c.type, "AWS_CLOUDHSM");
  snprintf(c.cluster_id, sizeof c.cluster_id, "cluster-abcdefghijk");
  snprintf(c.cluster_lineage, sizeof c.cluster_lineage, "lineage-1");
  c.trust_anchor_pem = strdup("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
  assert_int_equal(kmsi_cks_wrap_password(dom, c.cks_id, PASSWORD, &c.password_wrapped,
                                          &c.password_wrapped_len, &err),
                   KERR_OK);
  snprintf(c.connection_state, sizeof c.connection_state, "%s", state);
  c.created_ms = kclock_now_ms();
  c.state_changed_ms = c.created_ms;
  assert_int_equal(dom->st->ops->begin(dom->st, true, &tx, &err), KERR_OK);
  assert_int_equal(dom->st->ops->cks_insert(tx, &c, &err), KERR_OK);
  assert_int_equal(dom->st->ops->commit(tx, &err), KERR_OK);
  store_cks_clear(&c);
}

static void get_record(const char *id, store_cks *out) {
  store_tx *tx = NULL;
  kerr err;
  assert_int_equal(dom->st->ops->begin(dom->st, false, &tx, &err), KERR_OK);
  assert_int_equal(dom->st->ops->cks_get(tx, id, out, &err), KERR_OK);
  dom->st->ops->rollback(tx);
}

static void test_store_round_trip_and_unique_names(void **state) {
  store_tx *tx = NULL;
  store_cks c, dup, *list = NULL;
  size_t n = 0;
  int64_t count = -1;
  kerr err;
  (void)state;

  put_record("cks-00000000000000001", "first", "DISCONNECTED");
  put_record("cks-00000000000000002", "second", "DISCONNECTED");
  get_record("cks-00000000000000001", &c);
  assert_string_equal(c.name, "first");
  {
    /* The state alone, as crypto calls read it; cut to the caller's room. */
    char st[STORE_ENUM_MAX], cluster[STORE_CLUSTER_ID_MAX], tiny[5];
    assert_int_equal(dom->st->ops->begin(dom->st, false, &tx, &err), KERR_OK);
    assert_int_equal(dom->st->ops->cks_state(tx, "cks-00000000000000001", st, sizeof st, cluster,
                                             sizeof cluster, &err),
                     KERR_OK);
    assert_string_equal(st, "DISCONNECTED");
    assert_string_equal(cluster, c.cluster_id);
    assert_int_equal(dom->st->ops->cks_state(tx, "cks-00000000000000001", tiny, sizeof tiny,
                                             cluster, sizeof cluster, &err),
                     KERR_OK);
    assert_string_equal(tiny, "DISC");
    assert_int_equal(dom->st->ops->cks_state(tx, "cks-00000000000000009", st, sizeof st, cluster,
                                             sizeof cluster, &err),
                     KERR_NOT_FOUND);
    dom->st->ops->rollback(tx);
    tx = NULL;
  }
  assert_string_equal(c.cluster_lineage, "lineage-1");
  assert_non_null(c.password_wrapped);
  assert_int_equal(c.password_wrapped_len, ROOTKEY_WRAPPED_LEN);
  assert_null(c.pending_password_wrapped);

  /* A second store may not take a used name, neither by insert nor update. */
  memset(&dup, 0, sizeof dup);
  dup = c;
  snprintf(dup.cks_id, sizeof dup.cks_id, "cks-00000000000000003");
  assert_int_equal(dom->st->ops->begin(dom->st, true, &tx, &err), KERR_OK);
  assert_int_equal(dom->st->ops->cks_insert(tx, &dup, &err), KERR_ALREADY_EXISTS);
  snprintf(c.name, sizeof c.name, "second");
  assert_int_equal(dom->st->ops->cks_update(tx, &c, &err), KERR_ALREADY_EXISTS);
  dom->st->ops->rollback(tx);

  assert_int_equal(dom->st->ops->begin(dom->st, false, &tx, &err), KERR_OK);
  assert_int_equal(dom->st->ops->cks_list(tx, ACCT, REGION, NULL, 10, &list, &n, &err), KERR_OK);
  assert_int_equal(n, 2);
  assert_string_equal(list[0].cks_id, "cks-00000000000000001");
  store_cks_list_free(list, n);
  assert_int_equal(dom->st->ops->cks_list(tx, ACCT, REGION, "cks-00000000000000001", 10, &list, &n,
                                          &err),
                   KERR_OK);
  assert_int_equal(n, 1);
  store_cks_list_free(list, n);
  assert_int_equal(dom->st->ops->cks_list(tx, "444455556666", REGION, NULL, 10, &list, &n, &err),
                   KERR_OK);
  assert_int_equal(n, 0);
  store_cks_list_free(list, n);
  assert_int_equal(dom->st->ops->cks_key_count(tx, "cks-00000000000000001", &count, &err), KERR_OK);
  assert_int_equal(count, 0);
  dom->st->ops->rollback(tx);
  store_cks_clear(&c);
}

/* Listing by Region alone (account NULL) gives every account's stores of
 * that Region and no other Region's: what must be unique in a Region (an
 * external key store's proxy address) is checked over it. */
static void test_store_list_by_region(void **state) {
  static const struct {
    const char *id, *account, *region;
  } rows[] = {
      {"cks-00000000000000a01", ACCT, "eu-west-3"},
      {"cks-00000000000000a02", "444455556666", "eu-west-3"},
      {"cks-00000000000000a03", "444455556666", "ap-south-2"},
  };
  store_tx *tx = NULL;
  store_cks *list = NULL;
  size_t n = 0;
  kerr err;
  (void)state;
  for (size_t i = 0; i < 3; i++) {
    store_cks c;
    memset(&c, 0, sizeof c);
    snprintf(c.cks_id, sizeof c.cks_id, "%s", rows[i].id);
    snprintf(c.account_id, sizeof c.account_id, "%s", rows[i].account);
    snprintf(c.region, sizeof c.region, "%s", rows[i].region);
    snprintf(c.name, sizeof c.name, "by-region-%zu", i);
    snprintf(c.type, sizeof c.type, "AWS_CLOUDHSM");
    snprintf(c.cluster_id, sizeof c.cluster_id, "cluster-abcdefghijk");
    snprintf(c.connection_state, sizeof c.connection_state, "DISCONNECTED");
    c.created_ms = c.state_changed_ms = kclock_now_ms();
    assert_int_equal(dom->st->ops->begin(dom->st, true, &tx, &err), KERR_OK);
    assert_int_equal(dom->st->ops->cks_insert(tx, &c, &err), KERR_OK);
    assert_int_equal(dom->st->ops->commit(tx, &err), KERR_OK);
  }
  assert_int_equal(dom->st->ops->begin(dom->st, false, &tx, &err), KERR_OK);
  assert_int_equal(dom->st->ops->cks_list(tx, NULL, "eu-west-3", NULL, 10, &list, &n, &err),
                   KERR_OK);
  assert_int_equal(n, 2);
  assert_string_equal(list[0].cks_id, rows[0].id);
  assert_string_equal(list[1].cks_id, rows[1].id);
  assert_string_equal(list[1].account_id, "444455556666");
  store_cks_list_free(list, n);
  assert_int_equal(dom->st->ops->cks_list(tx, NULL, "eu-west-3", rows[0].id, 10, &list, &n, &err),
                   KERR_OK);
  assert_int_equal(n, 1);
  store_cks_list_free(list, n);
  assert_int_equal(dom->st->ops->cks_list(tx, "444455556666", "eu-west-3", NULL, 10, &list, &n,
                                          &err),
                   KERR_OK);
  assert_int_equal(n, 1);
  assert_string_equal(list[0].cks_id, rows[1].id);
  store_cks_list_free(list, n);
  /* Both NULL: every store (restart recovery), these three among them. */
  assert_int_equal(dom->st->ops->cks_list(tx, NULL, NULL, "cks-00000000000000a00", 10, &list, &n,
                                          &err),
                   KERR_OK);
  assert_true(n >= 3);
  assert_string_equal(list[2].cks_id, rows[2].id);
  store_cks_list_free(list, n);
  dom->st->ops->rollback(tx);
  assert_int_equal(dom->st->ops->begin(dom->st, true, &tx, &err), KERR_OK);
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(dom->st->ops->cks_delete(tx, rows[i].id, &err), KERR_OK);
  assert_int_equal(dom->st->ops->commit(tx, &err), KERR_OK);
}

/* The settings of an external key store survive a round trip through their
 * own columns (migration 5); an update changes them; the wrapped secret is
 * kept as given. */
static void test_store_round_trip_xks_settings(void **state) {
  store_tx *tx = NULL;
  store_cks c, got;
  static const uint8_t wrapped[] = {1, 2, 3, 4, 5, 6, 7, 8};
  kerr err;
  (void)state;

  memset(&c, 0, sizeof c);
  memset(&got, 0, sizeof got);
  snprintf(c.cks_id, sizeof c.cks_id, "cks-00000000000000007");
  snprintf(c.account_id, sizeof c.account_id, ACCT);
  snprintf(c.region, sizeof c.region, REGION);
  snprintf(c.name, sizeof c.name, "external");
  snprintf(c.type, sizeof c.type, "EXTERNAL_KEY_STORE");
  snprintf(c.connection_state, sizeof c.connection_state, "DISCONNECTED");
  snprintf(c.xks_uri_endpoint, sizeof c.xks_uri_endpoint, "https://xks.example.com");
  snprintf(c.xks_uri_path, sizeof c.xks_uri_path, "/example/kms/xks/v1");
  snprintf(c.xks_connectivity, sizeof c.xks_connectivity, "VPC_ENDPOINT_SERVICE");
  snprintf(c.xks_vpc_service_name, sizeof c.xks_vpc_service_name,
           "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0");
  snprintf(c.xks_vpc_service_owner, sizeof c.xks_vpc_service_owner, "111122223333");
  snprintf(c.xks_access_key_id, sizeof c.xks_access_key_id, "ABCDEFGHIJKLMNOPQRST");
  c.xks_secret_wrapped = malloc(sizeof wrapped);
  assert_non_null(c.xks_secret_wrapped);
  memcpy(c.xks_secret_wrapped, wrapped, sizeof wrapped);
  c.xks_secret_wrapped_len = sizeof wrapped;
  c.created_ms = kclock_now_ms();
  c.state_changed_ms = c.created_ms;
  assert_int_equal(dom->st->ops->begin(dom->st, true, &tx, &err), KERR_OK);
  assert_int_equal(dom->st->ops->cks_insert(tx, &c, &err), KERR_OK);
  assert_int_equal(dom->st->ops->commit(tx, &err), KERR_OK);

  get_record(c.cks_id, &got);
  assert_string_equal(got.type, "EXTERNAL_KEY_STORE");
  assert_string_equal(got.xks_uri_endpoint, c.xks_uri_endpoint);
  assert_string_equal(got.xks_uri_path, c.xks_uri_path);
  assert_string_equal(got.xks_connectivity, c.xks_connectivity);
  assert_string_equal(got.xks_vpc_service_name, c.xks_vpc_service_name);
  assert_string_equal(got.xks_vpc_service_owner, c.xks_vpc_service_owner);
  assert_string_equal(got.xks_access_key_id, c.xks_access_key_id);
  assert_int_equal(got.xks_secret_wrapped_len, sizeof wrapped);
  assert_memory_equal(got.xks_secret_wrapped, wrapped, sizeof wrapped);
  assert_null(got.password_wrapped);
  assert_string_equal(got.cluster_id, "");

  snprintf(got.xks_uri_path, sizeof got.xks_uri_path, "/other/kms/xks/v1");
  snprintf(got.xks_connectivity, sizeof got.xks_connectivity, "PUBLIC_ENDPOINT");
  got.xks_vpc_service_name[0] = '\0';
  assert_int_equal(dom->st->ops->begin(dom->st, true, &tx, &err), KERR_OK);
  assert_int_equal(dom->st->ops->cks_update(tx, &got, &err), KERR_OK);
  assert_int_equal(dom->st->ops->commit(tx, &err), KERR_OK);
  store_cks_clear(&got);
  get_record(c.cks_id, &got);
  assert_string_equal(got.xks_uri_path, "/other/kms/xks/v1");
  assert_string_equal(got.xks_connectivity, "PUBLIC_ENDPOINT");
  assert_string_equal(got.xks_vpc_service_name, "");
  assert_string_equal(got.xks_access_key_id, "ABCDEFGHIJKLMNOPQRST");
  store_cks_clear(&got);
  store_cks_clear(&c);
}

static bool contains(const char *hay, size_t n, const char *needle) {
  size_t m = strlen(needle);
  for (size_t i = 0; i + m <= n; i++)
    if (memcmp(hay + i, needle, m) == 0) return true;
  return false;
}

static void test_password_never_in_clear_on_disk(void **state) {
  char path[128], *buf;
  FILE *f;
  long len;
  (void)state;
  put_record("cks-00000000000000001", "pw-store", "DISCONNECTED");
  kms_domain_close(dom); /* checkpoint the WAL into the file */
  dom = NULL;
  snprintf(path, sizeof path, "%s/kmsd.db", dir);
  f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  len = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc((size_t)len + 1);
  assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  assert_false(contains(buf, (size_t)len, PASSWORD));
  assert_true(contains(buf, (size_t)len, "pw-store"));
  free(buf);
  {
    kms_domain_config cfg = {.data_dir = dir, .sweep_interval_ms = -1};
    kerr err;
    assert_int_equal(kms_domain_open(&cfg, &dom, &err), KERR_OK);
  }
}

static void test_state_changes_persist_and_check_origin(void **state) {
  static const char *const from_disconnected[] = {"DISCONNECTED", NULL};
  char prev[STORE_ENUM_MAX];
  store_cks c;
  kerr err;
  (void)state;
  put_record("cks-00000000000000001", "states", "DISCONNECTED");
  assert_int_equal(kmsi_cks_set_state(dom, "cks-00000000000000001", from_disconnected, "FAILED",
                                      "NETWORK_ERRORS", "req", prev, &err),
                   KERR_OK);
  assert_string_equal(prev, "DISCONNECTED");
  get_record("cks-00000000000000001", &c);
  assert_string_equal(c.connection_state, "FAILED");
  assert_string_equal(c.connection_error, "NETWORK_ERRORS");
  store_cks_clear(&c);
  /* Not from FAILED: refused, nothing changes. */
  assert_int_equal(kmsi_cks_set_state(dom, "cks-00000000000000001", from_disconnected,
                                      "CONNECTING", NULL, "req", prev, &err),
                   KERR_CONFLICT);
  assert_string_equal(prev, "FAILED");
  get_record("cks-00000000000000001", &c);
  assert_string_equal(c.connection_state, "FAILED");
  store_cks_clear(&c);
  assert_int_equal(kmsi_cks_set_state(dom, "cks-0000000000000000f", NULL, "FAILED", NULL, "req",
                                      NULL, &err),
                   KERR_CKS_NOT_FOUND);
}

static void test_restart_finishes_disconnecting(void **state) {
  kms_domain_config cfg = {.data_dir = dir, .sweep_interval_ms = -1};
  kms_describe_cks_input in;
  kms_describe_cks_output out;
  kerr err;
  (void)state;
  put_record("cks-00000000000000001", "half-disconnected", "DISCONNECTING");
  kms_domain_close(dom);
  assert_int_equal(kms_domain_open(&cfg, &dom, &err), KERR_OK);
  memset(&in, 0, sizeof in);
  in.custom_key_store_id = "cks-00000000000000001";
  assert_int_equal(kms_op_describe_custom_key_stores(dom, &call, &in, &out, &err), KERR_OK);
  assert_int_equal(out.nstores, 1);
  assert_string_equal(out.stores[0].connection_state, "DISCONNECTED");
  assert_null(out.stores[0].connection_error_code);
  kms_describe_cks_output_clear(&out);
}

static void test_describe_pages_and_errors(void **state) {
  kms_describe_cks_input in;
  kms_describe_cks_output out;
  char marker[256];
  kerr err;
  (void)state;
  put_record("cks-00000000000000001", "a", "DISCONNECTED");
  put_record("cks-00000000000000002", "b", "FAILED");
  put_record("cks-00000000000000003", "c", "DISCONNECTED");
  memset(&in, 0, sizeof in);
  in.list.limit = 2;
  assert_int_equal(kms_op_describe_custom_key_stores(dom, &call, &in, &out, &err), KERR_OK);
  assert_int_equal(out.nstores, 2);
  assert_true(out.truncated);
  assert_non_null(out.next_marker);
  /* A FAILED store without a stored code still names one. */
  assert_string_equal(out.stores[1].connection_error_code, "INTERNAL_ERROR");
  snprintf(marker, sizeof marker, "%s", out.next_marker);
  kms_describe_cks_output_clear(&out);
  in.list.marker = marker;
  assert_int_equal(kms_op_describe_custom_key_stores(dom, &call, &in, &out, &err), KERR_OK);
  assert_int_equal(out.nstores, 1);
  assert_false(out.truncated);
  assert_string_equal(out.stores[0].custom_key_store_name, "c");
  kms_describe_cks_output_clear(&out);

  in.list.marker = "garbage";
  assert_int_equal(kms_op_describe_custom_key_stores(dom, &call, &in, &out, &err),
                   KERR_INVALID_MARKER);
  memset(&in, 0, sizeof in);
  in.custom_key_store_name = "nope";
  assert_int_equal(kms_op_describe_custom_key_stores(dom, &call, &in, &out, &err),
                   KERR_CKS_NOT_FOUND);
  in.custom_key_store_id = "cks-00000000000000001";
  assert_int_equal(kms_op_describe_custom_key_stores(dom, &call, &in, &out, &err), KERR_VALIDATION);
}

static void test_operations_without_a_cluster(void **state) {
  kms_create_cks_input ci;
  kms_update_cks_input ui;
  kms_create_key_input ki;
  kms_key_metadata md;
  kms_generate_random_input gi;
  kbytes rnd = {0};
  char id[KMS_CKS_ID_MAX];
  kerr err;
  (void)state;

  memset(&ci, 0, sizeof ci);
  ci.custom_key_store_name = "store";
  ci.cloud_hsm_cluster_id = "cluster-abcdefghijk";
  ci.trust_anchor_certificate = "-----BEGIN CERTIFICATE-----";
  ci.key_store_password = PASSWORD;
  assert_int_equal(kms_op_create_custom_key_store(dom, &call, &ci, id, &err),
                   KERR_HSM_CLUSTER_NOT_FOUND);
  ci.key_store_password = "short";
  assert_int_equal(kms_op_create_custom_key_store(dom, &call, &ci, id, &err), KERR_VALIDATION);
  /* An external key store refuses CloudHSM members and needs its own. */
  ci.custom_key_store_type = "EXTERNAL_KEY_STORE";
  assert_int_equal(kms_op_create_custom_key_store(dom, &call, &ci, id, &err), KERR_VALIDATION);

  put_record("cks-00000000000000001", "existing", "DISCONNECTED");
  ci.custom_key_store_type = NULL;
  ci.key_store_password = PASSWORD;
  ci.custom_key_store_name = "existing";
  assert_int_equal(kms_op_create_custom_key_store(dom, &call, &ci, id, &err), KERR_CKS_NAME_IN_USE);

  memset(&ui, 0, sizeof ui);
  ui.custom_key_store_id = "cks-00000000000000001";
  ui.cloud_hsm_cluster_id = "cluster-bbbbbbbbbbb";
  assert_int_equal(kms_op_update_custom_key_store(dom, &call, &ui, &err), KERR_HSM_CLUSTER_NOT_FOUND);
  ui.cloud_hsm_cluster_id = NULL;
  ui.new_custom_key_store_name = "renamed";
  assert_int_equal(kms_op_update_custom_key_store(dom, &call, &ui, &err), KERR_OK);

  assert_int_equal(kms_op_disconnect_custom_key_store(dom, &call, "cks-00000000000000001", &err),
                   KERR_CKS_INVALID_STATE);
  memset(&ki, 0, sizeof ki);
  ki.origin = "AWS_CLOUDHSM";
  ki.custom_key_store_id = "cks-00000000000000001";
  assert_int_equal(kms_op_create_key(dom, &call, &ki, &md, &err), KERR_CKS_INVALID_STATE);
  ki.custom_key_store_id = "cks-0000000000000000f";
  assert_int_equal(kms_op_create_key(dom, &call, &ki, &md, &err), KERR_CKS_NOT_FOUND);
  ki.custom_key_store_id = NULL;
  assert_int_equal(kms_op_create_key(dom, &call, &ki, &md, &err), KERR_VALIDATION);

  memset(&gi, 0, sizeof gi);
  gi.has_number_of_bytes = true;
  gi.number_of_bytes = 16;
  gi.custom_key_store_id = "cks-00000000000000001";
  assert_int_equal(kms_op_generate_random(dom, &call, &gi, &rnd, &err), KERR_CKS_INVALID_STATE);
  gi.custom_key_store_id = "cks-0000000000000000f";
  assert_int_equal(kms_op_generate_random(dom, &call, &gi, &rnd, &err), KERR_CKS_NOT_FOUND);

  assert_int_equal(kms_op_delete_custom_key_store(dom, &call, "cks-00000000000000001", &err), KERR_OK);
  assert_int_equal(kms_op_delete_custom_key_store(dom, &call, "cks-00000000000000001", &err),
                   KERR_CKS_NOT_FOUND);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_store_round_trip_and_unique_names, setup, teardown),
      cmocka_unit_test_setup_teardown(test_store_list_by_region, setup, teardown),
      cmocka_unit_test_setup_teardown(test_store_round_trip_xks_settings, setup, teardown),
      cmocka_unit_test_setup_teardown(test_password_never_in_clear_on_disk, setup, teardown),
      cmocka_unit_test_setup_teardown(test_state_changes_persist_and_check_origin, setup, teardown),
      cmocka_unit_test_setup_teardown(test_restart_finishes_disconnecting, setup, teardown),
      cmocka_unit_test_setup_teardown(test_describe_pages_and_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_operations_without_a_cluster, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
