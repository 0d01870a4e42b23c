/* fuzz_xksp_server.c - libFuzzer target for xks-proxy's request path
 * (xksproxy/xksp_server.h): routing, SigV4, body parsing, authorization and
 * dispatch, on requests that are validly signed unless the input says
 * otherwise, so the fuzzer gets past authentication and reaches the body
 * parser and the rules.  The backend is a stand-in that answers from the
 * parsed request (the PKCS#11 one is tested against real tokens elsewhere).
 *
 * Input: byte 0 picks the method (POST, GET, PUT, HEAD) and, with bit 4,
 * spoils the signature; then "<path>\n<body>".  Invariants for every answer:
 * a status among those the spec names (or 405); a body that is one JSON
 * object on one line; an error body with a known errorName whose status is
 * the spec's (405 aside); 200 only on an API URI with POST; a spoiled
 * signature never gets past 401 (404 and 405 come first, by design). */
#include <string.h>

#include "aws/sigv4.h"
#include "core/kclock.h"
#include "core/log.h"
#include "core/secmem.h"
#include "fuzz_common.h"
#include "xks/xks_msg.h"
#include "xksproxy/xksp_server.h"

#include <jansson.h>
#include <time.h>

#define PREFIX "/f/kms/xks/v1"
#define AKID "ABCDEFGHIJKLMNOPQRST"
#define SECRET "ZnV6ei1zZWNyZXQtZnV6ei1zZWNyZXQtZnV6ei1zZWNyZXQK"

static kerr_code be_open(const xksp_store_config *s, void **out, kerr *err) {
  (void)s;
  (void)err;
  *out = (void *)1;
  return KERR_OK;
}
static void be_close(void *be) { (void)be; }
static kerr_code be_metadata(void *be, const char *id, xks_key_metadata *m, kerr *err) {
  (void)be;
  if (id[0] == 'x') return kerr_set(err, KERR_NOT_FOUND, "no such key");
  m->key_spec = strdup("AES_256");
  m->key_usage[0] = strdup("ENCRYPT");
  m->key_usage_count = 1;
  m->key_status = strdup("ENABLED");
  return KERR_OK;
}
static kerr_code be_encrypt(void *be, const char *id, const xks_request *req, xks_encrypt_result *r,
                            kerr *err) {
  (void)be;
  if (id[0] == 'd') return kerr_set(err, KERR_INVALID_STATE, "key disabled");
  r->ciphertext.data = malloc(req->plaintext.len);
  if (!r->ciphertext.data) abort();
  memcpy(r->ciphertext.data, req->plaintext.data, req->plaintext.len);
  r->ciphertext.len = req->plaintext.len;
  r->iv_len = 12;
  r->has_cdiv = req->want_cdiv;
  return KERR_OK;
}
static kerr_code be_decrypt(void *be, const char *id, const xks_request *req, xks_decrypt_result *r,
                            kerr *err) {
  (void)be;
  if (id[0] == 'c') return kerr_set(err, KERR_INVALID_CIPHERTEXT, "tag mismatch");
  r->plaintext.data = secure_alloc(req->ciphertext.len);
  if (!r->plaintext.data) abort();
  r->plaintext.len = req->ciphertext.len;
  return KERR_OK;
}
static kerr_code be_health(void *be, xks_health *h, kerr *err) {
  (void)be;
  (void)err;
  h->ekm[0].id = strdup("t");
  h->ekm[0].model = strdup("m");
  h->ekm[0].health_status = strdup("ACTIVE");
  h->ekm_count = 1;
  return KERR_OK;
}
static const xksp_backend backend = {"fuzz", be_open, NULL, be_close, be_metadata,
                                     be_encrypt, be_decrypt, be_health};

static xksp_config cfg;
static xksp_rule rule;
static char *deny_ops[] = {"Deny*"};
static xksp_proxy *proxy;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  kerr err = {0};
  (void)argc;
  (void)argv;
  log_set_level(LOG_ERROR);
  strcpy(cfg.ping_path, "/ping");
  cfg.store_count = 1;
  strcpy(cfg.stores[0].name, "f");
  strcpy(cfg.stores[0].uri_prefix, PREFIX);
  strcpy(cfg.stores[0].region, "us-east-1");
  strcpy(cfg.stores[0].credentials[0].access_key_id, AKID);
  cfg.stores[0].credentials[0].secret_access_key = SECRET;
  cfg.stores[0].credential_count = 1;
  rule.sid = "deny";
  rule.effect = XKSP_DENY;
  rule.operations.items = deny_ops;
  rule.operations.count = 1;
  cfg.stores[0].rules = &rule;
  cfg.stores[0].rule_count = 1;
  if (xksp_proxy_new(&cfg, &backend, &proxy, &err) != KERR_OK) abort();
  return 0;
}

static int allowed_status(int s) {
  static const int ok[] = {200, 400, 401, 403, 404, 405, 429, 500, 501, 503};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    if (s == ok[i]) return 1;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *methods[] = {"POST", "GET", "PUT", "HEAD"};
  char *text, *nl, date[17], auth[512];
  const char *method, *body;
  http_request req;
  http_response resp;
  kerr err = {0};
  int spoil;
  json_t *j;

  if (size < 1) return 0;
  method = methods[data[0] & 3];
  spoil = (data[0] & 0x10) != 0;
  text = fuzz_strndup(data + 1, size - 1);
  nl = strchr(text, '\n');
  if (!nl || strlen(text) > 300 || text[0] != '/') {
    free(text);
    return 0;
  }
  *nl = '\0';
  body = nl + 1;

  time_t t = (time_t)kclock_now_s();
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", &tm);
  http_header h[4] = {{"Host", "xks.example.test"}, {"X-Amz-Date", date},
                      {"Content-Type", "application/json"}, {"Authorization", auth}};
  sigv4_request sr = {method, text, NULL, h, 3, (const uint8_t *)body, strlen(body)};
  if (sigv4_sign(&sr, AKID, SECRET, "us-east-1", "kms-xks-proxy", date, auth, sizeof auth, &err) != KERR_OK) {
    free(text); /* a path SigV4 cannot sign (e.g. bad percent-encoding) */
    return 0;
  }
  if (spoil) auth[strlen(auth) - 1] ^= 1;

  memset(&req, 0, sizeof req);
  memset(&resp, 0, sizeof resp);
  req.method = method;
  req.path = text;
  req.headers = h;
  req.nheaders = 4;
  req.body = (const uint8_t *)body;
  req.body_len = strlen(body);
  req.peer = "127.0.0.1:1";
  xksp_proxy_handle(proxy, &req, &resp);

  FUZZ_CHECK(allowed_status(resp.status), "a status the spec names");
  FUZZ_CHECK(resp.body != NULL && resp.body_len > 0, "every answer has a body");
  FUZZ_CHECK(memchr(resp.body, '\n', resp.body_len) == NULL, "the body is one line");
  j = json_loadb(resp.body, resp.body_len, 0, NULL);
  FUZZ_CHECK(json_is_object(j), "the body is a JSON object");
  if (resp.status != 200) {
    const char *name = json_string_value(json_object_get(j, "errorName"));
    FUZZ_CHECK(name != NULL, "an error has an errorName");
    xks_error e = xks_error_from_name(name);
    FUZZ_CHECK(e != XKS_ERR_NONE, "a known errorName");
    if (resp.status != 405) FUZZ_CHECK(xks_error_status(e) == resp.status, "the spec's status for the name");
  } else {
    FUZZ_CHECK(strcmp(method, "POST") == 0 || strcmp(text, "/ping") == 0, "200 only for POST (or the ping)");
    FUZZ_CHECK(!spoil || strcmp(text, "/ping") == 0, "a spoiled signature never succeeds");
  }
  if (spoil) FUZZ_CHECK(resp.status == 401 || resp.status == 404 || resp.status == 405 || resp.status == 200,
                        "a spoiled signature stops at routing or authentication");
  json_decref(j);
  if (resp.body_free)
    resp.body_free(resp.body, resp.body_len);
  else
    free(resp.body);
  free(text);
  return 0;
}
