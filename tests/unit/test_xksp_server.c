/* test_xksp_server.c - the xks-proxy front end (lib/xksproxy/xksp_server.c)
 * with a fake backend: the order of the checks, every status it produces by
 * itself (404, 405, 401 in each form, 429, 403, 400, 501), that backend
 * errors become the spec's names, the ping path, and the authorization and
 * quota modules it uses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws/sigv4.h"
#include "core/kclock.h"
#include "core/log.h"
#include "core/secmem.h"
#include "xksproxy/xksp_authz.h"
#include "xksproxy/xksp_quota.h"
#include "xksproxy/xksp_server.h"

#define PREFIX "/t1/kms/xks/v1"
#define AKID1 "ABCDEFGHIJKLMNOPQRST"
#define SECRET1 "c2VjcmV0LW9uZS1zZWNyZXQtb25lLXNlY3JldC1vbmUK"
#define AKID2 "ZYXWVUTSRQPONMLKJIHG"
#define SECRET2 "c2VjcmV0LXR3by1zZWNyZXQtdHdvLXNlY3JldC10d28K"
#define REGION "us-east-1"

/* ---- a fake backend ---------------------------------------------------- */

static kerr_code fake_next_error; /* the next key call fails with this */
static int fake_calls;

static kerr_code fake_open(const xksp_store_config *s, void **out, kerr *err) {
  (void)s;
  (void)err;
  *out = &fake_calls;
  return KERR_OK;
}
static void fake_close(void *be) { (void)be; }
static kerr_code fail_if_asked(kerr *err) {
  kerr_code rc = fake_next_error;
  fake_calls++;
  fake_next_error = KERR_OK;
  return rc ? kerr_set(err, rc, "fake backend failure") : KERR_OK;
}
static kerr_code fake_metadata(void *be, const char *id, xks_key_metadata *m, kerr *err) {
  (void)be;
  if (fail_if_asked(err)) return err->code;
  if (strcmp(id, "missing") == 0) return kerr_set(err, KERR_NOT_FOUND, "no key %s", id);
  m->key_spec = strdup("AES_256");
  m->key_usage[0] = strdup("ENCRYPT");
  m->key_usage[1] = strdup("DECRYPT");
  m->key_usage_count = 2;
  m->key_status = strdup("ENABLED");
  return KERR_OK;
}
static kerr_code fake_encrypt(void *be, const char *id, const xks_request *req, xks_encrypt_result *r,
                              kerr *err) {
  (void)be;
  (void)id;
  if (fail_if_asked(err)) return err->code;
  r->ciphertext.data = malloc(req->plaintext.len);
  r->ciphertext.len = req->plaintext.len;
  memset(r->ciphertext.data, 0xcc, r->ciphertext.len);
  r->iv_len = 12;
  return KERR_OK;
}
static kerr_code fake_decrypt(void *be, const char *id, const xks_request *req, xks_decrypt_result *r,
                              kerr *err) {
  (void)be;
  (void)id;
  if (fail_if_asked(err)) return err->code;
  r->plaintext.data = secure_alloc(req->ciphertext.len);
  r->plaintext.len = req->ciphertext.len;
  return KERR_OK;
}
static kerr_code fake_health(void *be, xks_health *h, kerr *err) {
  (void)be;
  if (fail_if_asked(err)) return err->code;
  h->ekm[0].id = strdup("token-1");
  h->ekm[0].model = strdup("fake");
  h->ekm[0].health_status = strdup("ACTIVE");
  h->ekm_count = 1;
  return KERR_OK;
}
static const xksp_backend fake_backend = {"fake", fake_open, NULL, fake_close, fake_metadata,
                                          fake_encrypt, fake_decrypt, fake_health};

/* ---- a hand-made configuration ----------------------------------------- */

static xksp_config cfg;
static xksp_rule rules[2];
static char *deny_principals[] = {"arn:aws:iam::999999999999:*"};
static char *allow_ops[] = {"Encrypt", "Decrypt", "CreateKey", "Generate*"};

static void make_config(double quota) {
  memset(&cfg, 0, sizeof cfg);
  strcpy(cfg.ping_path, "/ping");
  cfg.store_count = 1;
  xksp_store_config *s = &cfg.stores[0];
  strcpy(s->name, "t1");
  strcpy(s->uri_prefix, PREFIX);
  strcpy(s->region, REGION);
  strcpy(s->credentials[0].access_key_id, AKID1);
  s->credentials[0].secret_access_key = SECRET1;
  strcpy(s->credentials[1].access_key_id, AKID2);
  s->credentials[1].secret_access_key = SECRET2;
  s->credential_count = 2;
  s->quota_rps = quota;
  s->quota_burst = quota;
  memset(rules, 0, sizeof rules);
  rules[0].sid = "deny-other-account";
  rules[0].effect = XKSP_DENY;
  rules[0].principals.items = deny_principals;
  rules[0].principals.count = 1;
  rules[1].sid = "allow-crypto";
  rules[1].effect = XKSP_ALLOW;
  rules[1].operations.items = allow_ops;
  rules[1].operations.count = 4;
  s->rules = rules;
  s->rule_count = 2;
}

/* ---- requests ----------------------------------------------------------- */

typedef struct sent {
  http_response resp;
  json_t *body;
} sent;

static void amz_date(int64_t offset_s, char out[17]) {
  time_t t = (time_t)(kclock_now_s() + offset_s);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* Sign and send `body` to `path` with `method`, as `akid`/`secret` in
 * `region` for `service`, dated `skew_s` from now. */
static void send_full(xksp_proxy *p, const char *method, const char *path, const char *body,
                      const char *akid, const char *secret, const char *region, const char *service,
                      int64_t skew_s, sent *out) {
  char date[17], auth[512];
  http_header h[4] = {{"Host", "xks.example.test"}, {"X-Amz-Date", date},
                      {"Content-Type", "application/json"}, {"Authorization", auth}};
  kerr err = {0};
  amz_date(skew_s, date);
  sigv4_request sr = {method, path, NULL, h, 3, (const uint8_t *)body, body ? strlen(body) : 0};
  if (akid)
    assert_int_equal(sigv4_sign(&sr, akid, secret, region, service, date, auth, sizeof auth, &err), KERR_OK);
  http_request req;
  memset(&req, 0, sizeof req);
  req.method = method;
  req.path = path;
  req.headers = h;
  req.nheaders = akid ? 4 : 3;
  req.body = (const uint8_t *)body;
  req.body_len = body ? strlen(body) : 0;
  req.peer = "127.0.0.1:1";
  memset(&out->resp, 0, sizeof out->resp);
  xksp_proxy_handle(p, &req, &out->resp);
  out->body = out->resp.body ? json_loadb(out->resp.body, out->resp.body_len, 0, NULL) : NULL;
}

static void send_req(xksp_proxy *p, const char *method, const char *path, const char *body, sent *out) {
  send_full(p, method, path, body, AKID1, SECRET1, REGION, "kms-xks-proxy", 0, out);
}

static void sent_free(sent *s) {
  if (s->resp.body) {
    if (s->resp.body_free)
      s->resp.body_free(s->resp.body, s->resp.body_len);
    else
      free(s->resp.body);
  }
  json_decref(s->body);
}

static void expect_error(sent *s, int status, const char *name) {
  assert_int_equal(s->resp.status, status);
  assert_non_null(s->body);
  assert_string_equal(json_string_value(json_object_get(s->body, "errorName")), name);
  /* one JSON object on one line */
  assert_null(memchr(s->resp.body, '\n', s->resp.body_len));
}

#define META_KEY                                                                                   \
  "\"requestMetadata\":{\"awsPrincipalArn\":\"arn:aws:iam::111122223333:user/alice\","            \
  "\"kmsKeyArn\":\"arn:aws:kms:us-east-1:111122223333:key/k\",\"kmsOperation\":\"Encrypt\","       \
  "\"kmsRequestId\":\"req-1\"}"
#define ENC_BODY "{" META_KEY ",\"plaintext\":\"aGVsbG8=\",\"encryptionAlgorithm\":\"AES_GCM\"}"
#define HEALTH_BODY "{\"requestMetadata\":{\"kmsRequestId\":\"r\",\"kmsOperation\":\"KmsHealthCheck\"}}"

static xksp_proxy *new_proxy(double quota) {
  xksp_proxy *p = NULL;
  kerr err = {0};
  make_config(quota);
  assert_int_equal(xksp_proxy_new(&cfg, &fake_backend, &p, &err), KERR_OK);
  return p;
}

/* ---- tests -------------------------------------------------------------- */

static void test_happy_paths(void **state) {
  (void)state;
  xksp_proxy *p = new_proxy(0);
  sent s;
  send_req(p, "POST", PREFIX "/keys/k1/encrypt", ENC_BODY, &s);
  assert_int_equal(s.resp.status, 200);
  assert_string_equal(json_string_value(json_object_get(s.body, "ciphertext")), "zMzMzMw=");
  assert_null(memchr(s.resp.body, '\n', s.resp.body_len));
  sent_free(&s);
  send_req(p, "POST", PREFIX "/health", HEALTH_BODY, &s);
  assert_int_equal(s.resp.status, 200);
  assert_int_equal(json_integer_value(json_object_get(s.body, "xksProxyFleetSize")), 1);
  assert_string_equal(json_string_value(json_object_get(s.body, "xksProxyVendor")), "kmsd");
  sent_free(&s);
  /* the second credential works too */
  send_full(p, "POST", PREFIX "/keys/k1/encrypt", ENC_BODY, AKID2, SECRET2, REGION, "kms-xks-proxy", 0, &s);
  assert_int_equal(s.resp.status, 200);
  sent_free(&s);
  xksp_proxy_free(p, 0);
}

static void test_routing(void **state) {
  (void)state;
  xksp_proxy *p = new_proxy(0);
  sent s;
  send_req(p, "POST", "/other/kms/xks/v1/health", HEALTH_BODY, &s);
  expect_error(&s, 404, "InvalidUriPathException");
  sent_free(&s);
  send_req(p, "POST", PREFIX "/keys/k1/sign", ENC_BODY, &s);
  expect_error(&s, 404, "InvalidUriPathException");
  sent_free(&s);
  send_req(p, "GET", PREFIX "/health", NULL, &s);
  assert_int_equal(s.resp.status, 405);
  sent_free(&s);
  send_req(p, "GET", PREFIX "/keys/k1/decrypt", NULL, &s);
  assert_int_equal(s.resp.status, 405);
  sent_free(&s);
  send_req(p, "GET", "/ping", NULL, &s);
  assert_int_equal(s.resp.status, 200);
  sent_free(&s);
  xksp_proxy_free(p, 0);
}

static void test_authentication(void **state) {
  (void)state;
  xksp_proxy *p = new_proxy(0);
  sent s;
  send_full(p, "POST", PREFIX "/health", HEALTH_BODY, AKID1, SECRET2, REGION, "kms-xks-proxy", 0, &s);
  expect_error(&s, 401, "AuthenticationFailedException");
  sent_free(&s);
  send_full(p, "POST", PREFIX "/health", HEALTH_BODY, "AAAAAAAAAAAAAAAAAAAA", SECRET1, REGION,
            "kms-xks-proxy", 0, &s);
  expect_error(&s, 401, "AuthenticationFailedException");
  sent_free(&s);
  send_full(p, "POST", PREFIX "/health", HEALTH_BODY, AKID1, SECRET1, "eu-west-1", "kms-xks-proxy", 0, &s);
  expect_error(&s, 401, "AuthenticationFailedException");
  sent_free(&s);
  send_full(p, "POST", PREFIX "/health", HEALTH_BODY, AKID1, SECRET1, REGION, "kms", 0, &s);
  expect_error(&s, 401, "AuthenticationFailedException");
  sent_free(&s);
  send_full(p, "POST", PREFIX "/health", HEALTH_BODY, AKID1, SECRET1, REGION, "kms-xks-proxy", -360, &s);
  expect_error(&s, 401, "AuthenticationFailedException");
  sent_free(&s);
  send_full(p, "POST", PREFIX "/health", HEALTH_BODY, AKID1, SECRET1, REGION, "kms-xks-proxy", 360, &s);
  expect_error(&s, 401, "AuthenticationFailedException");
  sent_free(&s);
  send_full(p, "POST", PREFIX "/health", HEALTH_BODY, AKID1, SECRET1, REGION, "kms-xks-proxy", 240, &s);
  assert_int_equal(s.resp.status, 200);
  sent_free(&s);
  /* unsigned */
  send_full(p, "POST", PREFIX "/health", HEALTH_BODY, NULL, SECRET1, REGION, "kms-xks-proxy", 0, &s);
  expect_error(&s, 401, "AuthenticationFailedException");
  sent_free(&s);
  xksp_proxy_free(p, 0);
}

static void test_quota(void **state) {
  (void)state;
  xksp_proxy *p = new_proxy(5);
  sent s;
  int ok = 0, throttled = 0, i;
  for (i = 0; i < 20; i++) {
    send_req(p, "POST", PREFIX "/health", HEALTH_BODY, &s);
    if (s.resp.status == 200) ok++;
    if (s.resp.status == 429) {
      expect_error(&s, 429, "ThrottlingException");
      throttled++;
    }
    sent_free(&s);
  }
  assert_in_range(ok, 5, 6);
  assert_int_equal(ok + throttled, 20);
  struct timespec ts = {0, 450 * 1000 * 1000};
  nanosleep(&ts, NULL);
  send_req(p, "POST", PREFIX "/health", HEALTH_BODY, &s);
  assert_int_equal(s.resp.status, 200);
  sent_free(&s);
  xksp_proxy_free(p, 0);
}

static void test_authorization(void **state) {
  (void)state;
  xksp_proxy *p = new_proxy(0);
  sent s;
  /* another account: the deny rule wins over the allow rule */
  send_req(p, "POST", PREFIX "/keys/k1/encrypt",
           "{\"requestMetadata\":{\"awsPrincipalArn\":\"arn:aws:iam::999999999999:root\","
           "\"kmsKeyArn\":\"k\",\"kmsOperation\":\"Encrypt\",\"kmsRequestId\":\"r\"},"
           "\"plaintext\":\"aGVsbG8=\",\"encryptionAlgorithm\":\"AES_GCM\"}",
           &s);
  expect_error(&s, 403, "AccessDeniedException");
  assert_non_null(strstr(json_string_value(json_object_get(s.body, "errorMessage")), "deny-other-account"));
  sent_free(&s);
  /* an operation no allow rule lists */
  send_req(p, "POST", PREFIX "/keys/k1/encrypt",
           "{\"requestMetadata\":{\"awsPrincipalArn\":\"arn:aws:iam::111122223333:root\","
           "\"kmsKeyArn\":\"k\",\"kmsOperation\":\"ReEncrypt\",\"kmsRequestId\":\"r\"},"
           "\"plaintext\":\"aGVsbG8=\",\"encryptionAlgorithm\":\"AES_GCM\"}",
           &s);
  expect_error(&s, 403, "AccessDeniedException");
  sent_free(&s);
  /* a pattern */
  send_req(p, "POST", PREFIX "/keys/k1/encrypt",
           "{\"requestMetadata\":{\"awsPrincipalArn\":\"arn:aws:iam::111122223333:root\","
           "\"kmsKeyArn\":\"k\",\"kmsOperation\":\"GenerateDataKey\",\"kmsRequestId\":\"r\"},"
           "\"plaintext\":\"aGVsbG8=\",\"encryptionAlgorithm\":\"AES_GCM\"}",
           &s);
  assert_int_equal(s.resp.status, 200);
  sent_free(&s);
  /* health is exempt even though no rule allows KmsHealthCheck */
  send_req(p, "POST", PREFIX "/health", HEALTH_BODY, &s);
  assert_int_equal(s.resp.status, 200);
  sent_free(&s);
  xksp_proxy_free(p, 0);
}

static void test_validation_and_backend_errors(void **state) {
  (void)state;
  xksp_proxy *p = new_proxy(0);
  sent s;
  send_req(p, "POST", PREFIX "/keys/k1/encrypt", "{" META_KEY ",\"plaintext\":\"\",\"encryptionAlgorithm\":\"AES_GCM\"}", &s);
  expect_error(&s, 400, "ValidationException");
  sent_free(&s);
  send_req(p, "POST", PREFIX "/keys/missing/metadata",
           "{\"requestMetadata\":{\"awsPrincipalArn\":\"a\",\"kmsOperation\":\"CreateKey\",\"kmsRequestId\":\"r\"}}",
           &s);
  expect_error(&s, 404, "KeyNotFoundException");
  sent_free(&s);
  static const struct { kerr_code code; int status; const char *name; } map[] = {
      {KERR_INVALID_STATE, 400, "InvalidStateException"},
      {KERR_INVALID_KEY_USAGE, 400, "InvalidKeyUsageException"},
      {KERR_INVALID_CIPHERTEXT, 400, "InvalidCiphertextException"},
      {KERR_DEPENDENCY_TIMEOUT, 503, "DependencyTimeoutException"},
      {KERR_KEY_UNAVAILABLE, 500, "InternalException"},
      {KERR_INTERNAL, 500, "InternalException"},
  };
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
    fake_next_error = map[i].code;
    send_req(p, "POST", PREFIX "/keys/k1/encrypt", ENC_BODY, &s);
    expect_error(&s, map[i].status, map[i].name);
    sent_free(&s);
  }
  /* a body over the cap, as the HTTP layer reports it */
  http_request req;
  memset(&req, 0, sizeof req);
  req.method = "POST";
  req.path = PREFIX "/keys/k1/encrypt";
  req.body_too_large = 1;
  memset(&s, 0, sizeof s);
  xksp_proxy_handle(p, &req, &s.resp);
  s.body = json_loadb(s.resp.body, s.resp.body_len, 0, NULL);
  expect_error(&s, 501, "UnsupportedOperationException");
  sent_free(&s);
  /* a query string is not an API URI */
  req.body_too_large = 0;
  req.query = "a=b";
  memset(&s, 0, sizeof s);
  xksp_proxy_handle(p, &req, &s.resp);
  s.body = json_loadb(s.resp.body, s.resp.body_len, 0, NULL);
  expect_error(&s, 404, "InvalidUriPathException");
  sent_free(&s);
  xksp_proxy_free(p, 0);
}

static void test_credential_rotation(void **state) {
  (void)state;
  xksp_proxy *p = new_proxy(0);
  static xksp_config fresh;
  sent s;
  size_t updated = 99;
  kerr err = {0};
  fresh = cfg;
  /* the next credential replaces the first; the second stays */
  strcpy(fresh.stores[0].credentials[0].access_key_id, "NEWKEYNEWKEYNEWKEY22");
  fresh.stores[0].credentials[0].secret_access_key = "bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldy1zZWNyZXQK";
  assert_int_equal(xksp_proxy_update_credentials(p, &fresh, &updated, &err), KERR_OK);
  assert_int_equal(updated, 1);
  send_req(p, "POST", PREFIX "/health", HEALTH_BODY, &s);
  expect_error(&s, 401, "AuthenticationFailedException");
  sent_free(&s);
  send_full(p, "POST", PREFIX "/health", HEALTH_BODY, "NEWKEYNEWKEYNEWKEY22",
            "bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldy1zZWNyZXQK", REGION, "kms-xks-proxy", 0, &s);
  assert_int_equal(s.resp.status, 200);
  sent_free(&s);
  send_full(p, "POST", PREFIX "/health", HEALTH_BODY, AKID2, SECRET2, REGION, "kms-xks-proxy", 0, &s);
  assert_int_equal(s.resp.status, 200);
  sent_free(&s);
  /* a configuration without this store changes nothing */
  strcpy(fresh.stores[0].uri_prefix, "/other/kms/xks/v1");
  assert_int_equal(xksp_proxy_update_credentials(p, &fresh, &updated, &err), KERR_OK);
  assert_int_equal(updated, 0);
  xksp_proxy_free(p, 0);
}

static void test_patterns(void **state) {
  (void)state;
  assert_true(xksp_pattern_match("*", ""));
  assert_true(xksp_pattern_match("arn:aws:iam::1111:*", "arn:aws:iam::1111:role/x"));
  assert_false(xksp_pattern_match("arn:aws:iam::1111:*", "arn:aws:iam::2222:role/x"));
  assert_true(xksp_pattern_match("a?c", "abc"));
  assert_false(xksp_pattern_match("a?c", "ac"));
  assert_true(xksp_pattern_match("*a*b*c*", "xxaxxbxxcxx"));
  assert_false(xksp_pattern_match("*a*b*c*d", "xxaxxbxxcxx"));
  assert_false(xksp_pattern_match("Encrypt", "encrypt"));
  /* many stars against a long miss stays quick */
  char v[3000];
  memset(v, 'a', sizeof v - 1);
  v[sizeof v - 1] = '\0';
  assert_false(xksp_pattern_match("*a*a*a*a*a*a*a*a*a*a*b", v));
}

static void test_quota_bucket(void **state) {
  (void)state;
  xksp_quota q;
  xksp_quota_init(&q, 10, 3);
  int64_t t = q.last_ns;
  assert_true(xksp_quota_take(&q, t));
  assert_true(xksp_quota_take(&q, t));
  assert_true(xksp_quota_take(&q, t));
  assert_false(xksp_quota_take(&q, t));
  assert_true(xksp_quota_take(&q, t + 100000000)); /* 0.1 s: one token */
  assert_false(xksp_quota_take(&q, t + 100000000));
  assert_true(xksp_quota_take(&q, t + 10000000000)); /* long idle: refills to burst only */
  assert_true(xksp_quota_take(&q, t + 10000000000));
  assert_true(xksp_quota_take(&q, t + 10000000000));
  assert_false(xksp_quota_take(&q, t + 10000000000));
  xksp_quota_destroy(&q);
}

int main(void) {
  log_set_level(LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_happy_paths),     cmocka_unit_test(test_routing),
      cmocka_unit_test(test_authentication),  cmocka_unit_test(test_quota),
      cmocka_unit_test(test_authorization),   cmocka_unit_test(test_validation_and_backend_errors),
      cmocka_unit_test(test_credential_rotation), cmocka_unit_test(test_patterns),        cmocka_unit_test(test_quota_bucket),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
