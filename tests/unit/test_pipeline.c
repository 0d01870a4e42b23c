/* test_pipeline.c - the request pipeline with a real credentials file, real
 * SigV4 signatures (sigv4_sign), the real model tables and validator, and a
 * small handler table of its own: error shapes and statuses for every stage,
 * x-amzn-RequestId on every reply, the admin clock API, the one log line per
 * request (and that it never holds a body or secret), a request that would
 * block on an event thread asked to run again and then answered once, with
 * its first pass's request id and SigV4 clock, and one call over real
 * loopback HTTP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "api/api_pipeline.h"
#include "aws/credentials.h"
#include "aws/sigv4.h"
#include "core/kclock.h"
#include "core/log.h"
#include "core/version.h"
#include "http/http_server.h"

#define ROOT_KEY "AKIAIOSFODNN7EXAMPLE"
#define ROOT_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define USER_KEY "AKIAI44QH8DHBUSERKEY"
#define USER_SECRET "userSecretKey/EXAMPLE+0123456789abcdefghij"
#define OTHER_ROOT_KEY "AKIAI44QH8DHBOTHROOT"
#define OTHER_ROOT_SECRET "otherRootSecretKey/EXAMPLE+0123456789abcd"
#define PLAINTEXT_MARK "c2VjcmV0LXBsYWludGV4dC1tYXJr" /* base64 of a marker */

static char tmpdir[64];
static creds_store *creds;

/* ------------------------------------------------------------ handlers */

static kerr_code h_list_keys(const api_request *req, json_t *in, json_t **out, kerr *err) {
  (void)in;
  (void)err;
  *out = json_pack("{s:[], s:b, s:s, s:s, s:s}", "Keys", "Truncated", 0, "Caller", req->caller->arn,
                   "Region", req->region, "Operation", req->operation);
  return KERR_OK;
}

static kerr_code h_describe_key(const api_request *req, json_t *in, json_t **out, kerr *err) {
  (void)req;
  (void)out;
  return kerr_set(err, KERR_NOT_FOUND, "Key '%s' does not exist",
                  json_string_value(json_object_get(in, "KeyId")));
}

/* Echoes the plaintext back, as Decrypt does: the log must still not show it. */
static kerr_code h_encrypt(const api_request *req, json_t *in, json_t **out, kerr *err) {
  (void)req;
  (void)err;
  *out = json_pack("{s:O}", "Plaintext", json_object_get(in, "Plaintext"));
  return KERR_OK;
}

/* As a domain call on an external key does: KERR_WOULD_BLOCK when the
 * caller must not wait, else an answer saying what it saw. */
static int waits_calls;
static kerr_code h_waits(const api_request *req, json_t *in, json_t **out, kerr *err) {
  (void)in;
  waits_calls++;
  if (req->wait) snprintf(req->wait->on, sizeof req->wait->on, "cks-1234567890abcdef0");
  if (req->must_not_wait) return kerr_set(err, KERR_WOULD_BLOCK, "would wait");
  if (req->wait) req->wait->waited = true;
  *out = json_pack("{s:s, s:b}", "RequestId", req->request_id, "MustNotWait", req->must_not_wait);
  return KERR_OK;
}

static api_handler_fn test_find(const char *op) {
  if (strcmp(op, "GenerateRandom") == 0) return h_waits;
  if (strcmp(op, "ListKeys") == 0) return h_list_keys;
  if (strcmp(op, "DescribeKey") == 0) return h_describe_key;
  if (strcmp(op, "Encrypt") == 0) return h_encrypt;
  return NULL;
}

/* ------------------------------------------------------------ requests */

typedef struct signed_req {
  http_header headers[8];
  size_t n;
  char date[32];
  char target[160];
  char auth[1024];
  const char *body;
  http_request req;
} signed_req;

typedef struct reply {
  int status;
  int rerun;
  int waited;
  char wait_on[HTTP_WAIT_LANE_MAX];
  char rerun_state[HTTP_RERUN_STATE_MAX];
  json_t *json;
  char request_id[HTTP_HEADER_VALUE_MAX];
  char content_type[HTTP_HEADER_VALUE_MAX];
} reply;

static void amz_date_now(char out[32]) {
  time_t t = (time_t)kclock_now_s();
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 32, "%Y%m%dT%H%M%SZ", &tm);
}

/* A POST / signed for `key`/`secret`; target NULL leaves X-Amz-Target out,
 * key NULL leaves Authorization out. */
static void build(signed_req *r, const char *target, const char *body, const char *key,
                  const char *secret, const char *content_type) {
  memset(r, 0, sizeof *r);
  amz_date_now(r->date);
  r->body = body;
  r->headers[r->n++] = (http_header){"Host", "kms.us-east-1.amazonaws.com"};
  r->headers[r->n++] = (http_header){"X-Amz-Date", r->date};
  if (content_type) r->headers[r->n++] = (http_header){"Content-Type", content_type};
  if (target) {
    snprintf(r->target, sizeof r->target, "%s", target);
    r->headers[r->n++] = (http_header){"X-Amz-Target", r->target};
  }
  r->req.method = "POST";
  r->req.path = "/";
  r->req.query = NULL;
  r->req.headers = r->headers;
  r->req.nheaders = r->n;
  r->req.body = (const uint8_t *)body;
  r->req.body_len = body ? strlen(body) : 0;
  r->req.peer = "127.0.0.1:1";
  if (key) {
    sigv4_request sr = {"POST", "/", NULL, r->headers, r->n, r->req.body, r->req.body_len};
    kerr err;
    assert_int_equal(sigv4_sign(&sr, key, secret, "us-east-1", "kms", r->date, r->auth, sizeof r->auth, &err),
                     KERR_OK);
    r->headers[r->n++] = (http_header){"Authorization", r->auth};
    r->req.nheaders = r->n;
  }
}

static void run(api_pipeline *p, const http_request *req, reply *out) {
  http_response resp;
  memset(&resp, 0, sizeof resp);
  memset(out, 0, sizeof *out);
  api_pipeline_handle(p, req, &resp);
  out->status = resp.status;
  out->rerun = resp.rerun;
  out->waited = resp.waited;
  memcpy(out->wait_on, resp.wait_on, sizeof out->wait_on);
  memcpy(out->rerun_state, resp.rerun_state, sizeof out->rerun_state);
  for (size_t i = 0; i < resp.nheaders; i++) {
    if (strcasecmp(resp.headers[i].name, "x-amzn-RequestId") == 0)
      snprintf(out->request_id, sizeof out->request_id, "%s", resp.headers[i].value);
    if (strcasecmp(resp.headers[i].name, "Content-Type") == 0)
      snprintf(out->content_type, sizeof out->content_type, "%s", resp.headers[i].value);
  }
  /* Every reply, error or not, carries a UUID request id. */
  assert_int_equal(strlen(out->request_id), 36);
  assert_int_equal(out->request_id[8], '-');
  assert_int_equal(out->request_id[14], '4');
  if (resp.body) {
    out->json = json_loadb(resp.body, resp.body_len, 0, NULL);
    assert_non_null(out->json);
    if (resp.body_free)
      resp.body_free(resp.body, resp.body_len);
    else
      free(resp.body);
  }
}

static void expect_error(const reply *r, int status, const char *type) {
  assert_int_equal(r->status, status);
  assert_non_null(r->json);
  assert_string_equal(json_string_value(json_object_get(r->json, "__type")), type);
  const char *msg = json_string_value(json_object_get(r->json, "message"));
  assert_non_null(msg);
  assert_true(strlen(msg) > 0);
  assert_string_equal(r->content_type, "application/x-amz-json-1.1");
}

static const char *message(const reply *r) {
  return json_string_value(json_object_get(r->json, "message"));
}

static api_pipeline *make_pipeline(int admin) {
  api_pipeline_config cfg = {0};
  cfg.creds = creds;
  cfg.enable_admin_api = admin;
  cfg.find_handler = test_find;
  api_pipeline *p = NULL;
  kerr err;
  assert_int_equal(api_pipeline_new(&cfg, &p, &err), KERR_OK);
  return p;
}

/* ------------------------------------------------------------ fixtures */

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/kmsd-pipeline-XXXXXX");
  if (!mkdtemp(tmpdir)) return -1;
  char path[128];
  snprintf(path, sizeof path, "%s/credentials.json", tmpdir);
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fprintf(f,
          "{\"principals\": ["
          "{\"accessKeyId\": \"" ROOT_KEY "\", \"secretAccessKey\": \"" ROOT_SECRET "\","
          " \"accountId\": \"111122223333\", \"arn\": \"arn:aws:iam::111122223333:root\", \"admin\": true},"
          "{\"accessKeyId\": \"" OTHER_ROOT_KEY "\", \"secretAccessKey\": \"" OTHER_ROOT_SECRET "\","
          " \"accountId\": \"444455556666\", \"arn\": \"arn:aws:iam::444455556666:root\"},"
          "{\"accessKeyId\": \"" USER_KEY "\", \"secretAccessKey\": \"" USER_SECRET "\","
          " \"accountId\": \"111122223333\", \"arn\": \"arn:aws:iam::111122223333:user/alice\","
          " \"policy\": {\"Version\": \"2012-10-17\", \"Statement\": [{\"Effect\": \"Allow\","
          " \"Action\": \"kms:*\", \"Resource\": \"*\"}]}}]}");
  fclose(f);
  chmod(path, 0600);
  kerr err;
  kerr_clear(&err);
  if (creds_load(path, 0, &creds, &err) != KERR_OK) {
    fprintf(stderr, "creds_load: %s\n", err.msg);
    return -1;
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char path[128];
  creds_free(creds);
  snprintf(path, sizeof path, "%s/credentials.json", tmpdir);
  unlink(path);
  rmdir(tmpdir);
  return 0;
}

/* ------------------------------------------------------------ tests */

static void test_success(void **state) {
  (void)state;
  api_pipeline *p = make_pipeline(0);
  signed_req r;
  reply rep;
  build(&r, "TrentService.ListKeys", "{\"Limit\": 5}", ROOT_KEY, ROOT_SECRET, "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  assert_int_equal(rep.status, 200);
  assert_string_equal(rep.content_type, "application/x-amz-json-1.1");
  assert_string_equal(json_string_value(json_object_get(rep.json, "Caller")), "arn:aws:iam::111122223333:root");
  assert_string_equal(json_string_value(json_object_get(rep.json, "Region")), "us-east-1");
  assert_string_equal(json_string_value(json_object_get(rep.json, "Operation")), "ListKeys");
  char first_id[HTTP_HEADER_VALUE_MAX];
  snprintf(first_id, sizeof first_id, "%s", rep.request_id);
  json_decref(rep.json);

  /* application/json is accepted too; an empty body is {}. */
  build(&r, "TrentService.ListKeys", "", USER_KEY, USER_SECRET, "application/json; charset=utf-8");
  run(p, &r.req, &rep);
  assert_int_equal(rep.status, 200);
  assert_string_equal(json_string_value(json_object_get(rep.json, "Caller")),
                      "arn:aws:iam::111122223333:user/alice");
  assert_string_not_equal(rep.request_id, first_id);
  json_decref(rep.json);
  api_pipeline_free(p);
}

static void test_authentication_errors(void **state) {
  (void)state;
  api_pipeline *p = make_pipeline(0);
  signed_req r;
  reply rep;

  build(&r, "TrentService.ListKeys", "{}", NULL, NULL, "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  expect_error(&rep, 400, "MissingAuthenticationTokenException");
  json_decref(rep.json);

  build(&r, "TrentService.ListKeys", "{}", ROOT_KEY, "wrong-secret", "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  expect_error(&rep, 400, "InvalidSignatureException");
  assert_null(strstr(message(&rep), ROOT_SECRET));
  json_decref(rep.json);

  build(&r, "TrentService.ListKeys", "{}", "AKIANOBODYKNOWSTHIS", "x", "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  expect_error(&rep, 400, "UnrecognizedClientException");
  json_decref(rep.json);

  /* Authentication comes before everything: an unsigned request to an
   * unknown operation learns only that it is not signed. */
  build(&r, "NoSuch.Thing", "{not json", NULL, NULL, NULL);
  run(p, &r.req, &rep);
  expect_error(&rep, 400, "MissingAuthenticationTokenException");
  json_decref(rep.json);

  /* The body is part of the signature. */
  build(&r, "TrentService.ListKeys", "{\"Limit\": 5}", ROOT_KEY, ROOT_SECRET, "application/x-amz-json-1.1");
  r.req.body = (const uint8_t *)"{\"Limit\": 6}";
  run(p, &r.req, &rep);
  expect_error(&rep, 400, "InvalidSignatureException");
  json_decref(rep.json);
  api_pipeline_free(p);
}

static void test_bad_targets(void **state) {
  (void)state;
  api_pipeline *p = make_pipeline(0);
  signed_req r;
  reply rep;
  const char *targets[] = {"TrentService.NoSuchOperation", "TrentService.", "NotAService.ListKeys",
                           "TrentService.listkeys", "TrentService", "TrentService.List Keys",
                           "KmsdAdmin.GetClock", "TrentService.ListKeys.Extra"};
  for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
    build(&r, targets[i], "{}", ROOT_KEY, ROOT_SECRET, "application/x-amz-json-1.1");
    run(p, &r.req, &rep);
    expect_error(&rep, 400, "UnknownOperationException");
    json_decref(rep.json);
  }
  build(&r, NULL, "{}", ROOT_KEY, ROOT_SECRET, "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  expect_error(&rep, 400, "UnknownOperationException");
  json_decref(rep.json);

  char longt[300];
  memset(longt, 'A', sizeof longt - 1);
  longt[sizeof longt - 1] = '\0';
  memcpy(longt, "TrentService.", 13);
  build(&r, longt, "{}", ROOT_KEY, ROOT_SECRET, "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  expect_error(&rep, 400, "UnknownOperationException");
  json_decref(rep.json);

  /* In the model, but no handler. */
  build(&r, "TrentService.ReplicateKey",
        "{\"KeyId\": \"mrk-1234abcd12ab34cd56ef1234567890ab\", \"ReplicaRegion\": \"us-west-2\"}",
        ROOT_KEY, ROOT_SECRET, "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  expect_error(&rep, 400, "UnsupportedOperationException");
  assert_string_equal(message(&rep), "kmsd does not support ReplicateKey yet");
  json_decref(rep.json);
  api_pipeline_free(p);
}

static void test_body_errors(void **state) {
  (void)state;
  api_pipeline *p = make_pipeline(0);
  signed_req r;
  reply rep;
  const char *bad[] = {"{not json", "{\"Limit\": 1", "\xff\xfe", "{\"Limit\": 1} trailing", "[]",
                       "\"str\"", "{\"Limit\": 1, \"Limit\": 2}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    build(&r, "TrentService.ListKeys", bad[i], ROOT_KEY, ROOT_SECRET, "application/x-amz-json-1.1");
    run(p, &r.req, &rep);
    expect_error(&rep, 400, "SerializationException");
    json_decref(rep.json);
  }

  build(&r, "TrentService.ListKeys", "{}", ROOT_KEY, ROOT_SECRET, "application/x-www-form-urlencoded");
  run(p, &r.req, &rep);
  expect_error(&rep, 400, "SerializationException");
  assert_non_null(strstr(message(&rep), "Content-Type"));
  json_decref(rep.json);

  build(&r, "TrentService.ListKeys", "{}", ROOT_KEY, ROOT_SECRET, NULL);
  run(p, &r.req, &rep);
  expect_error(&rep, 400, "SerializationException");
  json_decref(rep.json);

  /* Model validation, worded as AWS words it. */
  build(&r, "TrentService.Encrypt", "{\"KeyId\": \"\", \"Plaintext\": \"aGk=\"}", ROOT_KEY, ROOT_SECRET,
        "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  expect_error(&rep, 400, "ValidationException");
  assert_string_equal(message(&rep),
                      "1 validation error detected: Value '' at 'keyId' failed to satisfy constraint: "
                      "Member must have length greater than or equal to 1");
  json_decref(rep.json);

  build(&r, "TrentService.DescribeKey", "{}", ROOT_KEY, ROOT_SECRET, "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  expect_error(&rep, 400, "ValidationException");
  assert_non_null(strstr(message(&rep), "Member must not be null"));
  json_decref(rep.json);

  /* A handler's own error keeps its name and status. */
  build(&r, "TrentService.DescribeKey", "{\"KeyId\": \"alias/nope\"}", ROOT_KEY, ROOT_SECRET,
        "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  expect_error(&rep, 400, "NotFoundException");
  assert_string_equal(message(&rep), "Key 'alias/nope' does not exist");
  json_decref(rep.json);

  /* Oversized bodies, as the HTTP server flags them. */
  build(&r, "TrentService.ListKeys", NULL, ROOT_KEY, ROOT_SECRET, "application/x-amz-json-1.1");
  r.req.body_too_large = 1;
  run(p, &r.req, &rep);
  expect_error(&rep, 413, "RequestEntityTooLargeException");
  json_decref(rep.json);

  /* Requests the HTTP layer refused keep its status and reason. */
  build(&r, "TrentService.ListKeys", NULL, ROOT_KEY, ROOT_SECRET, "application/x-amz-json-1.1");
  r.req.refusal_status = 414;
  r.req.refusal_reason = "The request target is longer than the server accepts";
  run(p, &r.req, &rep);
  expect_error(&rep, 414, "ValidationException");
  assert_string_equal(message(&rep), "The request target is longer than the server accepts");
  json_decref(rep.json);
  api_pipeline_free(p);
}

static void test_paths_and_health(void **state) {
  (void)state;
  api_pipeline *p = make_pipeline(0);
  reply rep;
  http_request req = {0};
  req.method = "GET";
  req.path = "/health";
  req.peer = "127.0.0.1:1";
  run(p, &req, &rep);
  assert_int_equal(rep.status, 200);
  assert_string_equal(json_string_value(json_object_get(rep.json, "status")), "ok");
  assert_string_equal(json_string_value(json_object_get(rep.json, "version")), KMSD_VERSION);
  json_decref(rep.json);

  req.path = "/no/such/thing";
  run(p, &req, &rep);
  expect_error(&rep, 404, "UnknownOperationException");
  json_decref(rep.json);

  req.path = "/";
  run(p, &req, &rep);
  expect_error(&rep, 405, "UnknownOperationException");
  json_decref(rep.json);

  req.method = "POST";
  req.path = "/health";
  run(p, &req, &rep);
  expect_error(&rep, 404, "UnknownOperationException");
  json_decref(rep.json);
  api_pipeline_free(p);
}

static void test_admin_api(void **state) {
  (void)state;
  api_pipeline *p = make_pipeline(1);
  signed_req r;
  reply rep;
  int64_t before = kclock_offset_ms();

  build(&r, "KmsdAdmin.GetClock", "{}", ROOT_KEY, ROOT_SECRET, "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  assert_int_equal(rep.status, 200);
  assert_int_equal(json_integer_value(json_object_get(rep.json, "OffsetSeconds")), before / 1000);
  int64_t now = json_integer_value(json_object_get(rep.json, "Now"));
  assert_true(llabs((long long)(now - (int64_t)time(NULL))) < 5);
  json_decref(rep.json);

  build(&r, "KmsdAdmin.AdvanceClock", "{\"Seconds\": 604800}", ROOT_KEY, ROOT_SECRET,
        "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  assert_int_equal(rep.status, 200);
  assert_int_equal(json_integer_value(json_object_get(rep.json, "OffsetSeconds")), before / 1000 + 604800);
  assert_int_equal(kclock_offset_ms(), before + 604800000LL);
  json_decref(rep.json);

  /* Requests are now signed on the moved clock, as clients of a server
   * whose clock moved must do; back again with a negative move. */
  build(&r, "KmsdAdmin.AdvanceClock", "{\"Seconds\": -604800}", ROOT_KEY, ROOT_SECRET,
        "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  assert_int_equal(rep.status, 200);
  assert_int_equal(kclock_offset_ms(), before);
  json_decref(rep.json);

  const char *bad[] = {"{}", "{\"Seconds\": \"10\"}", "{\"Seconds\": 1.5}", "{\"Seconds\": 315360001}",
                       "{\"Seconds\": -315360001}", "{\"Seconds\": null}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    build(&r, "KmsdAdmin.AdvanceClock", bad[i], ROOT_KEY, ROOT_SECRET, "application/x-amz-json-1.1");
    run(p, &r.req, &rep);
    expect_error(&rep, 400, "ValidationException");
    json_decref(rep.json);
  }
  assert_int_equal(kclock_offset_ms(), before);

  /* Not admin: denied, even with kms:* in its policy ... */
  build(&r, "KmsdAdmin.AdvanceClock", "{\"Seconds\": 10}", USER_KEY, USER_SECRET, "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  expect_error(&rep, 400, "AccessDeniedException");
  assert_non_null(strstr(message(&rep), "user/alice"));
  json_decref(rep.json);
  /* ... and even as another account's root: the clock is every account's. */
  const char *ops[] = {"KmsdAdmin.AdvanceClock", "KmsdAdmin.GetClock", "KmsdAdmin.Sweep"};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    build(&r, ops[i], "{\"Seconds\": 10}", OTHER_ROOT_KEY, OTHER_ROOT_SECRET, "application/x-amz-json-1.1");
    run(p, &r.req, &rep);
    expect_error(&rep, 400, "AccessDeniedException");
    assert_non_null(strstr(message(&rep), "User: arn:aws:iam::444455556666:root is not authorized"));
    assert_non_null(strstr(message(&rep), "not marked admin"));
    json_decref(rep.json);
  }
  assert_int_equal(kclock_offset_ms(), before);

  build(&r, "KmsdAdmin.Reboot", "{}", ROOT_KEY, ROOT_SECRET, "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  expect_error(&rep, 400, "UnknownOperationException");
  json_decref(rep.json);

  /* Unsigned admin calls are refused like any other. */
  build(&r, "KmsdAdmin.AdvanceClock", "{\"Seconds\": 10}", NULL, NULL, "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  expect_error(&rep, 400, "MissingAuthenticationTokenException");
  json_decref(rep.json);
  assert_int_equal(kclock_offset_ms(), before);
  api_pipeline_free(p);
}

/* Run one request with stderr captured into a file; returns what was logged. */
static char *logged_by(api_pipeline *p, const http_request *req, reply *rep) {
  char path[128];
  snprintf(path, sizeof path, "%s/log.txt", tmpdir);
  fflush(stderr);
  int saved = dup(2);
  int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
  assert_true(fd >= 0);
  dup2(fd, 2);
  close(fd);
  run(p, req, rep);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char *text = calloc(1, 8192);
  size_t n = fread(text, 1, 8191, f);
  text[n] = '\0';
  fclose(f);
  unlink(path);
  return text;
}

static void test_log_line(void **state) {
  (void)state;
  api_pipeline *p = make_pipeline(0);
  signed_req r;
  reply rep;
  log_set_level(LOG_INFO);

  build(&r, "TrentService.Encrypt",
        "{\"KeyId\": \"alias/x\", \"Plaintext\": \"" PLAINTEXT_MARK "\"}", ROOT_KEY, ROOT_SECRET,
        "application/x-amz-json-1.1");
  char *log = logged_by(p, &r.req, &rep);
  assert_int_equal(rep.status, 200);
  /* Exactly one line, with id, caller, operation, outcome, status, latency. */
  assert_non_null(strchr(log, '\n'));
  assert_null(strchr(strchr(log, '\n') + 1, '\n'));
  assert_non_null(strstr(log, rep.request_id));
  assert_non_null(strstr(log, "principal=arn:aws:iam::111122223333:root"));
  assert_non_null(strstr(log, "op=Encrypt"));
  assert_non_null(strstr(log, "outcome=OK"));
  assert_non_null(strstr(log, "status=200"));
  assert_non_null(strstr(log, "latency_us="));
  /* Never a body, a plaintext, a signature or a secret. */
  assert_null(strstr(log, PLAINTEXT_MARK));
  assert_null(strstr(log, ROOT_SECRET));
  assert_null(strstr(log, "Signature="));
  json_decref(rep.json);
  free(log);

  build(&r, "TrentService.DescribeKey", "{\"KeyId\": \"alias/y\"}", NULL, NULL, "application/x-amz-json-1.1");
  log = logged_by(p, &r.req, &rep);
  assert_non_null(strstr(log, "principal=-"));
  assert_non_null(strstr(log, "outcome=MissingAuthenticationTokenException"));
  assert_non_null(strstr(log, "status=400"));
  assert_non_null(strstr(log, rep.request_id));
  json_decref(rep.json);
  free(log);
  log_set_level(LOG_WARN);
  api_pipeline_free(p);
}

/* A request the handler cannot serve without waiting: the first pass (on
 * an event thread) asks for a rerun and writes no log line; the rerun
 * (may_wait) answers under the first pass's request id with one line; a
 * rerun the server refused is ThrottlingException or, while stopping,
 * KMSInternalException.  The rerun is judged at the first pass's SigV4
 * clock: a request that waited past the skew window still passes, while
 * a fresh one signed at the same time does not. */
static void test_rerun(void **state) {
  (void)state;
  api_pipeline *p = make_pipeline(0);
  signed_req r;
  reply first, rep;
  char *log;
  log_set_level(LOG_INFO);
  build(&r, "TrentService.GenerateRandom", "{}", ROOT_KEY, ROOT_SECRET,
        "application/x-amz-json-1.1");

  waits_calls = 0;
  log = logged_by(p, &r.req, &first);
  assert_int_equal(first.rerun, 1);
  assert_int_equal(first.waited, 0);
  assert_string_equal(first.wait_on, "cks-1234567890abcdef0"); /* its lane among waiting threads */
  assert_null(first.json);
  assert_int_equal(waits_calls, 1);
  assert_string_equal(log, "");
  free(log);
  assert_non_null(strstr(first.rerun_state, first.request_id));

  /* Waiting in the queue for longer than the skew window (5 minutes). */
  kclock_advance_ms(10 * 60 * 1000);
  r.req.may_wait = 1;
  r.req.rerun_state = first.rerun_state;
  log = logged_by(p, &r.req, &rep);
  assert_int_equal(rep.rerun, 0);
  assert_int_equal(rep.status, 200);
  assert_int_equal(rep.waited, 1); /* the server's hint for the connection's next request */
  assert_string_equal(rep.wait_on, "cks-1234567890abcdef0");
  assert_string_equal(rep.request_id, first.request_id);
  assert_string_equal(json_string_value(json_object_get(rep.json, "RequestId")), first.request_id);
  assert_false(json_is_true(json_object_get(rep.json, "MustNotWait")));
  assert_non_null(strchr(log, '\n'));
  assert_null(strchr(strchr(log, '\n') + 1, '\n'));
  assert_non_null(strstr(log, first.request_id));
  assert_non_null(strstr(log, "op=GenerateRandom outcome=OK status=200"));
  json_decref(rep.json);
  free(log);

  /* The same request arriving now is too old. */
  r.req.may_wait = 0;
  r.req.rerun_state = NULL;
  run(p, &r.req, &rep);
  expect_error(&rep, 400, "InvalidSignatureException");
  assert_non_null(strstr(message(&rep), "Signature expired"));
  json_decref(rep.json);
  kclock_advance_ms(-10 * 60 * 1000);

  /* No room for the rerun, or stopping: answered at once, not waiting. */
  r.req.rerun_state = first.rerun_state;
  r.req.wait_refused = HTTP_WAIT_QUEUE_FULL;
  log = logged_by(p, &r.req, &rep);
  expect_error(&rep, 400, "ThrottlingException");
  assert_non_null(strstr(message(&rep), "Rate exceeded"));
  assert_string_equal(rep.request_id, first.request_id);
  assert_non_null(strstr(log, "outcome=ThrottlingException status=400"));
  assert_null(strchr(strchr(log, '\n') + 1, '\n'));
  json_decref(rep.json);
  free(log);
  r.req.wait_refused = HTTP_WAIT_STOPPING;
  run(p, &r.req, &rep);
  expect_error(&rep, 500, "KMSInternalException");
  assert_non_null(strstr(message(&rep), "shutting down"));
  json_decref(rep.json);

  /* Operations that do not wait are answered on the first pass. */
  build(&r, "TrentService.ListKeys", "{}", ROOT_KEY, ROOT_SECRET, "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  assert_int_equal(rep.rerun, 0);
  assert_int_equal(rep.status, 200);
  assert_int_equal(rep.waited, 0);
  json_decref(rep.json);
  /* ... and where they may wait, say they did not (the hint then ends). */
  r.req.may_wait = 1;
  run(p, &r.req, &rep);
  assert_int_equal(rep.status, 200);
  assert_int_equal(rep.waited, 0);
  json_decref(rep.json);
  log_set_level(LOG_WARN);
  api_pipeline_free(p);
}

typedef struct capture {
  char data[4096];
  size_t len;
} capture;

static size_t capture_cb(char *ptr, size_t size, size_t nmemb, void *ud) {
  capture *c = ud;
  size_t n = size * nmemb, room = sizeof c->data - 1 - c->len;
  size_t take = n < room ? n : room;
  memcpy(c->data + c->len, ptr, take);
  c->len += take;
  c->data[c->len] = '\0';
  return n;
}

static void test_over_http(void **state) {
  (void)state;
  api_pipeline *p = make_pipeline(0);
  http_server_config cfg = {0};
  cfg.host = "127.0.0.1";
  cfg.threads = 2;
  cfg.max_body = 2048;
  cfg.handler = api_pipeline_handle;
  cfg.handler_ctx = p;
  http_server *s = NULL;
  kerr err;
  assert_int_equal(http_server_start(&cfg, &s, &err), KERR_OK);

  char host[64], url[96];
  snprintf(host, sizeof host, "127.0.0.1:%u", http_server_port(s));
  snprintf(url, sizeof url, "http://%s/", host);
  signed_req r;
  build(&r, "TrentService.ListKeys", "{}", NULL, NULL, "application/x-amz-json-1.1");
  r.headers[0].value = host; /* what curl sends as Host */
  sigv4_request sr = {"POST", "/", NULL, r.headers, r.n, r.req.body, r.req.body_len};
  assert_int_equal(sigv4_sign(&sr, ROOT_KEY, ROOT_SECRET, "us-east-1", "kms", r.date, r.auth, sizeof r.auth, &err),
                   KERR_OK);

  struct curl_slist *hl = NULL;
  char line[1200];
  for (size_t i = 1; i < r.n; i++) {
    snprintf(line, sizeof line, "%s: %s", r.headers[i].name, r.headers[i].value);
    hl = curl_slist_append(hl, line);
  }
  snprintf(line, sizeof line, "Authorization: %s", r.auth);
  hl = curl_slist_append(hl, line);
  hl = curl_slist_append(hl, "Expect:");

  capture body = {0}, hdrs = {0};
  CURL *c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{}");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, capture_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, capture_cb);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &hdrs);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  assert_int_equal(curl_easy_perform(c), CURLE_OK);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  assert_int_equal(status, 200);
  assert_non_null(strstr(body.data, "\"Caller\":\"arn:aws:iam::111122223333:root\""));
  assert_non_null(strstr(hdrs.data, "x-amzn-RequestId: "));
  assert_non_null(strstr(hdrs.data, "application/x-amz-json-1.1"));

  /* Over the body cap: 413 in the AWS shape, request id included. */
  char *big = malloc(4096);
  memset(big, ' ', 4096);
  body.len = 0;
  hdrs.len = 0;
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, big);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 4096L);
  assert_int_equal(curl_easy_perform(c), CURLE_OK);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  assert_int_equal(status, 413);
  assert_non_null(strstr(body.data, "RequestEntityTooLargeException"));
  assert_non_null(strstr(hdrs.data, "x-amzn-RequestId: "));
  free(big);

  curl_slist_free_all(hl);
  curl_easy_cleanup(c);
  http_server_stop(s, 1000);
  api_pipeline_free(p);
}

static void test_config_checked(void **state) {
  (void)state;
  api_pipeline_config cfg = {0};
  api_pipeline *p = (api_pipeline *)1;
  kerr err;
  assert_int_not_equal(api_pipeline_new(&cfg, &p, &err), KERR_OK);
  assert_null(p);

  /* No signature checks and not on loopback: refused. */
  creds_store *any = NULL;
  assert_int_equal(creds_any(&any, &err), KERR_OK);
  cfg.creds = any;
  cfg.find_handler = test_find;
  p = (api_pipeline *)1;
  assert_int_equal(api_pipeline_new(&cfg, &p, &err), KERR_VALIDATION);
  assert_null(p);
  assert_non_null(strstr(err.msg, "loopback"));
  cfg.loopback_only = 1;
  assert_int_equal(api_pipeline_new(&cfg, &p, &err), KERR_OK);

  /* And then any access key is the default root, whatever the signature. */
  signed_req r;
  reply rep;
  build(&r, "TrentService.ListKeys", "{}", "AKIAMADEUPKEY1234567", "made-up", "application/x-amz-json-1.1");
  run(p, &r.req, &rep);
  assert_int_equal(rep.status, 200);
  assert_string_equal(json_string_value(json_object_get(rep.json, "Caller")), "arn:aws:iam::111122223333:root");
  json_decref(rep.json);
  api_pipeline_free(p);
  creds_free(any);
}

int main(void) {
  curl_global_init(CURL_GLOBAL_ALL);
  log_set_level(LOG_WARN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_checked),
      cmocka_unit_test(test_success),
      cmocka_unit_test(test_authentication_errors),
      cmocka_unit_test(test_bad_targets),
      cmocka_unit_test(test_body_errors),
      cmocka_unit_test(test_paths_and_health),
      cmocka_unit_test(test_admin_api),
      cmocka_unit_test(test_log_line),
      cmocka_unit_test(test_rerun),
      cmocka_unit_test(test_over_http),
  };
  int rc = cmocka_run_group_tests(tests, setup, teardown);
  curl_global_cleanup();
  return rc;
}
