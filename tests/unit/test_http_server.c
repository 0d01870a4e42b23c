/* test_http_server.c - the libmicrohttpd wrapper, driven over real loopback
 * HTTP with libcurl: what the callback sees, keep-alive, the body cap (413
 * before the body is read, and for chunked bodies), concurrency across the
 * thread pool, graceful stop with a request in flight, TLS, and reruns: a
 * request the callback sends to a waiting thread (the event thread serves
 * on meanwhile), a full queue, stopping with reruns queued and running, and
 * a client that leaves while its request waits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <microhttpd.h>

#include "http/http_server.h"

/* ------------------------------------------------------------ test server */

typedef struct test_ctx {
  atomic_int calls;
  atomic_int active;
  atomic_int max_active;
  atomic_int saw_too_large;
  int sleep_ms;
} test_ctx;

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Echoes what it received so tests can check the request as delivered. */
static void echo_handler(void *ctx, const http_request *req, http_response *resp) {
  test_ctx *t = ctx;
  atomic_fetch_add(&t->calls, 1);
  int now = atomic_fetch_add(&t->active, 1) + 1;
  int prev = atomic_load(&t->max_active);
  while (now > prev && !atomic_compare_exchange_weak(&t->max_active, &prev, now)) {
  }
  if (t->sleep_ms) sleep_ms(t->sleep_ms);

  if (req->body_too_large) {
    atomic_fetch_add(&t->saw_too_large, 1);
    resp->status = 413;
    resp->body = strdup("{\"__type\":\"RequestEntityTooLargeException\",\"message\":\"too big\"}");
    resp->body_len = strlen(resp->body);
    atomic_fetch_sub(&t->active, 1);
    return;
  }
  if (strcmp(req->path, "/missing") == 0) {
    resp->status = 404;
    atomic_fetch_sub(&t->active, 1);
    return;
  }
  const char *xt = http_request_header(req, "x-test");
  char buf[512];
  int n = snprintf(buf, sizeof buf, "method=%s path=%s query=%s body=%zu x-test=%s peer=%s", req->method,
                   req->path, req->query ? req->query : "(none)", req->body_len, xt ? xt : "(none)",
                   strncmp(req->peer, "127.0.0.1:", 10) == 0 ? "loopback" : req->peer);
  resp->status = 200;
  resp->body = strndup(buf, (size_t)n);
  resp->body_len = (size_t)n;
  http_response_header(resp, "Content-Type", "text/plain");
  http_response_header(resp, "X-Echo", "yes");
  atomic_fetch_sub(&t->active, 1);
}

static http_server *start(test_ctx *t, size_t max_body, unsigned threads) {
  http_server_config cfg = {0};
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  cfg.threads = threads;
  cfg.max_body = max_body;
  cfg.handler = echo_handler;
  cfg.handler_ctx = t;
  http_server *s = NULL;
  kerr err;
  kerr_clear(&err);
  assert_int_equal(http_server_start(&cfg, &s, &err), KERR_OK);
  assert_non_null(s);
  assert_true(http_server_port(s) > 0);
  return s;
}

/* ------------------------------------------------------------ curl helper */

typedef struct buf {
  char data[8192];
  size_t len;
} buf;

static size_t write_cb(char *p, size_t size, size_t nmemb, void *ud) {
  buf *b = ud;
  size_t n = size * nmemb;
  size_t room = sizeof b->data - 1 - b->len;
  size_t take = n < room ? n : room;
  memcpy(b->data + b->len, p, take);
  b->len += take;
  b->data[b->len] = '\0';
  return n;
}

static CURL *make_easy(buf *body, buf *hdrs) {
  CURL *c = curl_easy_init();
  assert_non_null(c);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
  if (hdrs) {
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, hdrs);
  }
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  return c;
}

static long do_request(CURL *c, const char *url, const char *post, long post_len) {
  curl_easy_setopt(c, CURLOPT_URL, url);
  if (post) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, post_len);
  }
  CURLcode cc = curl_easy_perform(c);
  assert_int_equal(cc, CURLE_OK);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  return status;
}

/* ------------------------------------------------------------------ tests */

static void test_parse_listen(void **state) {
  (void)state;
  char host[HTTP_HOST_MAX];
  uint16_t port = 1;
  kerr err;
  assert_int_equal(http_parse_listen("127.0.0.1:4599", host, &port, &err), KERR_OK);
  assert_string_equal(host, "127.0.0.1");
  assert_int_equal(port, 4599);
  assert_int_equal(http_parse_listen("[::1]:8080", host, &port, &err), KERR_OK);
  assert_string_equal(host, "::1");
  assert_int_equal(port, 8080);
  assert_int_equal(http_parse_listen("localhost:0", host, &port, &err), KERR_OK);
  assert_string_equal(host, "127.0.0.1");
  assert_int_equal(port, 0);
  assert_int_equal(http_parse_listen("0.0.0.0:443", host, &port, &err), KERR_OK);

  const char *bad[] = {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
                       "127.0.0.1:80x", "::1:80", "[::1]80", "[::1:80", "example.com:80",
                       "999.1.1.1:80", "[127.0.0.1]:80", ":80", "127.0.0.1:123456"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    kerr_clear(&err);
    assert_int_equal(http_parse_listen(bad[i], host, &port, &err), KERR_VALIDATION);
    assert_true(err.msg[0] != '\0');
  }
}

static void test_loopback(void **state) {
  (void)state;
  assert_true(http_host_is_loopback("127.0.0.1"));
  assert_true(http_host_is_loopback("127.5.6.7"));
  assert_true(http_host_is_loopback("::1"));
  assert_true(http_host_is_loopback("::ffff:127.0.0.1"));
  assert_false(http_host_is_loopback("0.0.0.0"));
  assert_false(http_host_is_loopback("10.0.0.1"));
  assert_false(http_host_is_loopback("::"));
  assert_false(http_host_is_loopback("128.0.0.1"));
  assert_false(http_host_is_loopback("localhost"));
  assert_false(http_host_is_loopback(NULL));
}

static void test_response_header_rejects_injection(void **state) {
  (void)state;
  http_response r;
  memset(&r, 0, sizeof r);
  assert_int_equal(http_response_header(&r, "X-A", "ok"), 0);
  assert_int_equal(http_response_header(&r, "X-B", "bad\r\nSet-Cookie: x"), -1);
  assert_int_equal(http_response_header(&r, "X-C:", "v"), -1);
  assert_int_equal(http_response_header(&r, "", "v"), -1);
  for (int i = 1; i < HTTP_RESPONSE_HEADERS_MAX; i++)
    assert_int_equal(http_response_header(&r, "X-N", "v"), 0);
  assert_int_equal(http_response_header(&r, "X-Full", "v"), -1);
  assert_int_equal(r.nheaders, HTTP_RESPONSE_HEADERS_MAX);
}

static void test_request_as_delivered(void **state) {
  (void)state;
  test_ctx t = {0};
  http_server *s = start(&t, 0, 2);
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%u/a%%20b/c?x=1&y=%%2F", http_server_port(s));
  buf body = {0}, hdrs = {0};
  CURL *c = make_easy(&body, &hdrs);
  struct curl_slist *h = curl_slist_append(NULL, "X-Test: hello");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  assert_int_equal(do_request(c, url, "hello", 5), 200);
  /* The path and query arrive raw, still percent-encoded, as SigV4 signs them. */
  assert_string_equal(body.data,
                      "method=POST path=/a%20b/c query=x=1&y=%2F body=5 x-test=hello peer=loopback");
  assert_non_null(strstr(hdrs.data, "X-Echo: yes"));
  assert_non_null(strstr(hdrs.data, "Content-Type: text/plain"));

  /* A fragment (never sent by a client, but a target may hold one) starts at
   * the first '#', also before a '?': nothing after it is path or query. */
  const char *const targets[][2] = {{"/a#b?c=d", "path=/a query=(none)"},
                                    {"/a?c=d#e?f", "path=/a query=c=d "}};
  for (size_t i = 0; i < 2; i++) {
    body.len = 0;
    curl_easy_setopt(c, CURLOPT_REQUEST_TARGET, targets[i][0]);
    assert_int_equal(do_request(c, url, "hello", 5), 200);
    if (!strstr(body.data, targets[i][1]))
      fail_msg("target %s delivered as '%s'", targets[i][0], body.data);
  }
  curl_easy_setopt(c, CURLOPT_REQUEST_TARGET, NULL);

  /* Unknown paths are the callback's to answer; a GET without a body works. */
  body.len = 0;
  snprintf(url, sizeof url, "http://127.0.0.1:%u/missing", http_server_port(s));
  curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  assert_int_equal(do_request(c, url, NULL, 0), 404);
  assert_int_equal(body.len, 0);

  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  http_server_stop(s, 1000);
  assert_int_equal(atomic_load(&t.calls), 4);
}

static void test_keep_alive(void **state) {
  (void)state;
  test_ctx t = {0};
  http_server *s = start(&t, 0, 2);
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%u/", http_server_port(s));
  buf body = {0};
  CURL *c = make_easy(&body, NULL);
  for (int i = 0; i < 5; i++) {
    body.len = 0;
    assert_int_equal(do_request(c, url, "{}", 2), 200);
    long new_conns = -1;
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &new_conns);
    /* The first request opens the connection; every later one reuses it. */
    assert_int_equal(new_conns, i == 0 ? 1 : 0);
  }
  curl_easy_cleanup(c);
  http_server_stop(s, 1000);
}

static void test_body_cap(void **state) {
  (void)state;
  test_ctx t = {0};
  http_server *s = start(&t, 1024, 2);
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%u/", http_server_port(s));
  char *big = malloc(64 * 1024);
  assert_non_null(big);
  memset(big, 'a', 64 * 1024);

  /* Exactly at the cap: accepted. */
  buf body = {0};
  CURL *c = make_easy(&body, NULL);
  assert_int_equal(do_request(c, url, big, 1024), 200);
  assert_non_null(strstr(body.data, "body=1024"));
  curl_easy_cleanup(c);

  /* Announced by Content-Length: read and dropped, never buffered, then 413. */
  body.len = 0;
  c = make_easy(&body, NULL);
  assert_int_equal(do_request(c, url, big, 64 * 1024), 413);
  assert_non_null(strstr(body.data, "RequestEntityTooLargeException"));
  curl_easy_cleanup(c);

  /* Chunked, so the size is only known while reading. */
  body.len = 0;
  c = make_easy(&body, NULL);
  struct curl_slist *h = curl_slist_append(NULL, "Transfer-Encoding: chunked");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, big);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 64L * 1024);
  CURLcode cc = curl_easy_perform(c);
  if (cc == CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    assert_int_equal(status, 413);
    assert_non_null(strstr(body.data, "RequestEntityTooLargeException"));
  }
  curl_slist_free_all(h);
  curl_easy_cleanup(c);

  /* The server still serves after refusing. */
  body.len = 0;
  c = make_easy(&body, NULL);
  assert_int_equal(do_request(c, url, "ok", 2), 200);
  curl_easy_cleanup(c);

  http_server_stop(s, 1000);
  assert_true(atomic_load(&t.saw_too_large) >= 2);
  free(big);
}

/* A callback that ignores the oversized flag must not turn it into a 200. */
static void careless_handler(void *ctx, const http_request *req, http_response *resp) {
  (void)ctx;
  (void)req;
  resp->status = 200;
  resp->body = strdup("fine");
  resp->body_len = 4;
}

static void test_body_cap_enforced_by_server(void **state) {
  (void)state;
  http_server_config cfg = {0};
  cfg.host = "127.0.0.1";
  cfg.max_body = 16;
  cfg.threads = 1;
  cfg.handler = careless_handler;
  http_server *s = NULL;
  kerr err;
  assert_int_equal(http_server_start(&cfg, &s, &err), KERR_OK);
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%u/", http_server_port(s));
  buf body = {0};
  CURL *c = make_easy(&body, NULL);
  assert_int_equal(do_request(c, url, "0123456789abcdefXYZ", 19), 413);
  assert_non_null(strstr(body.data, "\"__type\":\"RequestEntityTooLargeException\""));
  curl_easy_cleanup(c);
  http_server_stop(s, 1000);
}

static void test_concurrent(void **state) {
  (void)state;
  test_ctx t = {0};
  t.sleep_ms = 100;
  http_server *s = start(&t, 0, 4);
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%u/", http_server_port(s));

  enum { N = 16 };
  CURLM *m = curl_multi_init();
  CURL *easy[N];
  buf bodies[N];
  memset(bodies, 0, sizeof bodies);
  for (int i = 0; i < N; i++) {
    easy[i] = make_easy(&bodies[i], NULL);
    curl_easy_setopt(easy[i], CURLOPT_URL, url);
    curl_easy_setopt(easy[i], CURLOPT_POSTFIELDS, "{}");
    curl_multi_add_handle(m, easy[i]);
  }
  int running = 1;
  while (running) {
    curl_multi_perform(m, &running);
    if (running) curl_multi_poll(m, NULL, 0, 100, NULL);
  }
  for (int i = 0; i < N; i++) {
    long status = 0;
    curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &status);
    assert_int_equal(status, 200);
    assert_non_null(strstr(bodies[i].data, "method=POST"));
    curl_multi_remove_handle(m, easy[i]);
    curl_easy_cleanup(easy[i]);
  }
  curl_multi_cleanup(m);
  http_server_stop(s, 1000);
  assert_int_equal(atomic_load(&t.calls), N);
}

typedef struct slow_req {
  char url[128];
  long status;
  buf body;
} slow_req;

static void *slow_client(void *arg) {
  slow_req *r = arg;
  CURL *c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, r->url);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{}");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
  if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
  curl_easy_cleanup(c);
  return NULL;
}

/* A worker busy in the callback does not accept: connections opened while
 * earlier requests are being handled land on the other workers, so all four
 * slow requests run at the same time. */
static void test_workers_run_in_parallel(void **state) {
  (void)state;
  enum { W = 4 };
  test_ctx t = {0};
  t.sleep_ms = 400;
  http_server *s = start(&t, 0, W);
  slow_req reqs[W];
  pthread_t th[W];
  memset(reqs, 0, sizeof reqs);
  for (int i = 0; i < W; i++) {
    snprintf(reqs[i].url, sizeof reqs[i].url, "http://127.0.0.1:%u/", http_server_port(s));
    assert_int_equal(pthread_create(&th[i], NULL, slow_client, &reqs[i]), 0);
    for (int k = 0; k < 200 && atomic_load(&t.active) < i + 1; k++) sleep_ms(2);
  }
  for (int i = 0; i < W; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(reqs[i].status, 200);
  }
  http_server_stop(s, 1000);
  assert_int_equal(atomic_load(&t.max_active), W);
}

static void test_stop_finishes_in_flight(void **state) {
  (void)state;
  test_ctx t = {0};
  t.sleep_ms = 300;
  http_server *s = start(&t, 0, 2);
  slow_req r = {0};
  snprintf(r.url, sizeof r.url, "http://127.0.0.1:%u/", http_server_port(s));
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, slow_client, &r), 0);
  for (int i = 0; i < 200 && atomic_load(&t.active) == 0; i++) sleep_ms(5);
  assert_int_equal(atomic_load(&t.active), 1);
  http_server_stop(s, 5000);
  pthread_join(th, NULL);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body.data, "method=POST"));
}

static void test_port_in_use(void **state) {
  (void)state;
  test_ctx t = {0};
  http_server *s = start(&t, 0, 1);
  http_server_config cfg = {0};
  cfg.host = "127.0.0.1";
  cfg.port = http_server_port(s);
  cfg.threads = 1;
  cfg.handler = echo_handler;
  cfg.handler_ctx = &t;
  http_server *s2 = NULL;
  kerr err;
  kerr_clear(&err);
  assert_int_not_equal(http_server_start(&cfg, &s2, &err), KERR_OK);
  assert_null(s2);
  assert_non_null(strstr(err.msg, "cannot listen"));
  http_server_stop(s, 1000);
}

static void test_tls(void **state) {
  (void)state;
  /* scripts/install-deps.sh installs a TLS-capable libmicrohttpd. */
  if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
    fail_msg("this libmicrohttpd was built without TLS support");
  char dir[] = "/tmp/kmsd-tls-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char cmd[1024], cert[64], key[64];
  snprintf(cert, sizeof cert, "%s/cert.pem", dir);
  snprintf(key, sizeof key, "%s/key.pem", dir);
  snprintf(cmd, sizeof cmd,
           "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 1 "
           "-subj /CN=127.0.0.1 >/dev/null 2>&1",
           key, cert);
  if (system(cmd) != 0) fail_msg("openssl could not make a test certificate");
  char *cert_pem = NULL, *key_pem = NULL;
  kerr err;
  assert_int_equal(http_read_pem_file(cert, 65536, &cert_pem, &err), KERR_OK);
  assert_int_equal(http_read_pem_file(key, 65536, &key_pem, &err), KERR_OK);
  char *missing = (char *)"x";
  assert_int_equal(http_read_pem_file("/nonexistent/x.pem", 65536, &missing, &err), KERR_VALIDATION);
  assert_null(missing);
  /* Not PEM at all, and over the size limit. */
  char *other = (char *)"x";
  assert_int_equal(http_read_pem_file("/etc/hostname", 65536, &other, &err), KERR_VALIDATION);
  assert_null(other);
  assert_int_equal(http_read_pem_file(cert, 16, &other, &err), KERR_VALIDATION);
  assert_null(other);

  test_ctx t = {0};
  http_server_config cfg = {0};
  cfg.host = "127.0.0.1";
  cfg.threads = 1;
  cfg.handler = echo_handler;
  cfg.handler_ctx = &t;
  cfg.tls_cert_pem = cert_pem;
  cfg.tls_key_pem = key_pem;
  http_server *s = NULL;
  assert_int_equal(http_server_start(&cfg, &s, &err), KERR_OK);
  free(cert_pem);
  free(key_pem);

  char url[128];
  snprintf(url, sizeof url, "https://127.0.0.1:%u/tls", http_server_port(s));
  buf body = {0};
  CURL *c = make_easy(&body, NULL);
  curl_easy_setopt(c, CURLOPT_CAINFO, cert);
  assert_int_equal(do_request(c, url, "x", 1), 200);
  assert_non_null(strstr(body.data, "path=/tls"));
  curl_easy_cleanup(c);
  http_server_stop(s, 1000);

  unlink(cert);
  unlink(key);
  rmdir(dir);
}

/* ------------------------------------------------------------- reruns */

/* A callback that will not serve /slow... on an event thread: it asks for
 * a rerun, and on the rerun waits for the test's gate (at most 5 s), then
 * echoes what it saw.  /twice asks for a rerun even where it may wait.
 * /waits asks for a rerun on an event thread and says it waited where it
 * may (http_response.waited); anything else is answered where it arrives. */
typedef struct rerun_ctx {
  atomic_int first_passes;
  atomic_int reruns;
  atomic_int running;           /* reruns inside the callback now */
  atomic_int refused_full;
  atomic_int refused_stopping;
  atomic_int gate;              /* reruns wait while 0 */
} rerun_ctx;

static void rerun_handler(void *ctx, const http_request *req, http_response *resp) {
  rerun_ctx *t = ctx;
  char text[1024];
  int slow = strncmp(req->path, "/slow", 5) == 0, twice = strcmp(req->path, "/twice") == 0;
  int waits = strcmp(req->path, "/waits") == 0;
  if (((slow || waits) && !req->may_wait && !req->wait_refused) || twice) {
    atomic_fetch_add(&t->first_passes, 1);
    resp->rerun = 1;
    snprintf(resp->rerun_state, sizeof resp->rerun_state, "state-of-%s",
             req->query ? req->query : "-");
    /* Anything else in the answer is dropped (and freed). */
    resp->status = 200;
    resp->body = strdup("dropped");
    resp->body_len = 7;
    http_response_header(resp, "X-Dropped", "yes");
    return;
  }
  if (req->wait_refused) {
    atomic_fetch_add(req->wait_refused == HTTP_WAIT_QUEUE_FULL ? &t->refused_full
                                                               : &t->refused_stopping,
                     1);
    int n = snprintf(text, sizeof text, "refused=%d state=%s", req->wait_refused,
                     req->rerun_state ? req->rerun_state : "(none)");
    resp->status = 503;
    resp->body = strndup(text, (size_t)n);
    resp->body_len = (size_t)n;
    return;
  }
  if (slow) {
    atomic_fetch_add(&t->reruns, 1);
    atomic_fetch_add(&t->running, 1);
    for (int i = 0; i < 2500 && !atomic_load(&t->gate); i++) sleep_ms(2);
    atomic_fetch_sub(&t->running, 1);
  }
  const char *xt = http_request_header(req, "x-test");
  int n = snprintf(text, sizeof text, "may_wait=%d state=%s path=%s query=%s body=%.*s x-test=%s",
                   req->may_wait, req->rerun_state ? req->rerun_state : "(none)", req->path,
                   req->query ? req->query : "(none)", (int)req->body_len,
                   req->body ? (const char *)req->body : "", xt ? xt : "(none)");
  resp->status = 200;
  resp->body = strndup(text, (size_t)n);
  resp->body_len = (size_t)n;
  resp->waited = waits && req->may_wait;
  http_response_header(resp, "X-Echo", "yes");
}

static http_server *start_rerun(rerun_ctx *t, unsigned wait_threads, unsigned wait_queue) {
  http_server_config cfg = {0};
  cfg.host = "127.0.0.1";
  cfg.threads = 1; /* every connection on the one event thread */
  cfg.wait_threads = wait_threads;
  cfg.wait_queue = wait_queue;
  cfg.handler = rerun_handler;
  cfg.handler_ctx = t;
  http_server *s = NULL;
  kerr err;
  kerr_clear(&err);
  assert_int_equal(http_server_start(&cfg, &s, &err), KERR_OK);
  return s;
}

typedef struct rerun_client {
  char url[160];
  long timeout_ms;
  long status;
  CURLcode cc;
  buf body;
  pthread_t th;
} rerun_client;

static void *rerun_client_run(void *arg) {
  rerun_client *r = arg;
  CURL *c = curl_easy_init();
  struct curl_slist *h = curl_slist_append(NULL, "X-Test: hello");
  curl_easy_setopt(c, CURLOPT_URL, r->url);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"a\":1}");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, r->timeout_ms ? r->timeout_ms : 10000L);
  r->cc = curl_easy_perform(c);
  if (r->cc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
  curl_easy_cleanup(c);
  curl_slist_free_all(h);
  return NULL;
}

static void rerun_client_start(rerun_client *r, http_server *s, const char *path_query) {
  memset(r, 0, sizeof *r);
  snprintf(r->url, sizeof r->url, "http://127.0.0.1:%u%s", http_server_port(s), path_query);
  assert_int_equal(pthread_create(&r->th, NULL, rerun_client_run, r), 0);
}

static void wait_until(atomic_int *v, int at_least) {
  for (int i = 0; i < 2500 && atomic_load(v) < at_least; i++) sleep_ms(2);
  assert_true(atomic_load(v) >= at_least);
}

/* While a rerun waits on a waiting thread, the single event thread serves a
 * kept-alive connection; the rerun then answers with the request exactly
 * as first delivered and the first pass's state. */
static void test_rerun_frees_the_event_thread(void **state) {
  (void)state;
  rerun_ctx t = {0};
  http_server *s = start_rerun(&t, 2, 0);
  rerun_client slow;
  rerun_client_start(&slow, s, "/slow?q=1");
  wait_until(&t.running, 1);

  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%u/fast", http_server_port(s));
  buf body = {0};
  CURL *c = make_easy(&body, NULL);
  for (int i = 0; i < 3; i++) {
    body.len = 0;
    assert_int_equal(do_request(c, url, "{}", 2), 200);
    assert_non_null(strstr(body.data, "may_wait=0 state=(none) path=/fast"));
  }
  long conns = -1;
  curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &conns);
  assert_int_equal(conns, 0); /* the last two on the first one's connection */
  assert_int_equal(atomic_load(&t.running), 1); /* the rerun still waits */

  atomic_store(&t.gate, 1);
  pthread_join(slow.th, NULL);
  assert_int_equal(slow.cc, CURLE_OK);
  assert_int_equal(slow.status, 200);
  assert_string_equal(slow.body.data,
                      "may_wait=1 state=state-of-q=1 path=/slow query=q=1 body={\"a\":1} "
                      "x-test=hello");
  assert_int_equal(atomic_load(&t.first_passes), 1);
  assert_int_equal(atomic_load(&t.reruns), 1);
  /* The connection of the rerun is kept alive and serves on. */
  body.len = 0;
  assert_int_equal(do_request(c, url, "{}", 2), 200);
  curl_easy_cleanup(c);

  /* A callback that asks for a rerun where it may wait is answered 500. */
  rerun_client twice;
  rerun_client_start(&twice, s, "/twice");
  pthread_join(twice.th, NULL);
  assert_int_equal(twice.status, 500);
  assert_non_null(strstr(twice.body.data, "KMSInternalException"));
  http_server_stop(s, 1000);
}

/* After a request that waited, the connection's next request is called
 * where it may wait at once, with no first pass and no state, until one
 * answered that way did not wait; other connections are not affected. */
static void test_wait_hint(void **state) {
  (void)state;
  rerun_ctx t = {0};
  http_server *s = start_rerun(&t, 2, 0);
  char local[128], waits[128];
  snprintf(local, sizeof local, "http://127.0.0.1:%u/local", http_server_port(s));
  snprintf(waits, sizeof waits, "http://127.0.0.1:%u/waits", http_server_port(s));
  buf body = {0}, other_body = {0};
  CURL *c = make_easy(&body, NULL), *other = make_easy(&other_body, NULL);
  static const struct {
    int waits;
    const char *answer;
    int first_passes;
  } steps[] = {
      {0, "may_wait=0 state=(none) path=/local", 0},
      {1, "may_wait=1 state=state-of-- path=/waits", 1}, /* a first pass, then its rerun */
      {1, "may_wait=1 state=(none) path=/waits", 1},     /* straight to a waiting thread */
      {1, "may_wait=1 state=(none) path=/waits", 1},
      {0, "may_wait=1 state=(none) path=/local", 1},     /* did not wait: the hint ends */
      {0, "may_wait=0 state=(none) path=/local", 1},
      {1, "may_wait=1 state=state-of-- path=/waits", 2},
  };
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    body.len = 0;
    assert_int_equal(do_request(c, steps[i].waits ? waits : local, "{}", 2), 200);
    assert_non_null(strstr(body.data, steps[i].answer));
    assert_int_equal(atomic_load(&t.first_passes), steps[i].first_passes);
    if (i == 2) {
      /* Another connection has no hint of its own. */
      other_body.len = 0;
      assert_int_equal(do_request(other, local, "{}", 2), 200);
      assert_non_null(strstr(other_body.data, "may_wait=0 state=(none) path=/local"));
    }
  }
  long conns = -1;
  curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &conns);
  assert_int_equal(conns, 0); /* all on the first request's connection */
  curl_easy_cleanup(c);
  curl_easy_cleanup(other);
  http_server_stop(s, 1000);
}

/* One waiting thread and room for one more: the third is refused at once,
 * through the callback (wait_refused), with its first pass's state. */
static void test_rerun_queue_full(void **state) {
  (void)state;
  rerun_ctx t = {0};
  http_server *s = start_rerun(&t, 1, 1);
  rerun_client a, b, c;
  rerun_client_start(&a, s, "/slow?q=a");
  wait_until(&t.running, 1);
  rerun_client_start(&b, s, "/slow?q=b");
  wait_until(&t.first_passes, 2);
  rerun_client_start(&c, s, "/slow?q=c");
  pthread_join(c.th, NULL);
  assert_int_equal(c.status, 503);
  assert_string_equal(c.body.data, "refused=1 state=state-of-q=c");
  assert_int_equal(atomic_load(&t.running), 1); /* answered while a waited */
  atomic_store(&t.gate, 1);
  pthread_join(a.th, NULL);
  pthread_join(b.th, NULL);
  assert_int_equal(a.status, 200);
  assert_int_equal(b.status, 200);
  assert_non_null(strstr(b.body.data, "state=state-of-q=b"));
  assert_int_equal(atomic_load(&t.refused_full), 1);
  assert_int_equal(atomic_load(&t.reruns), 2);
  http_server_stop(s, 1000);
}

typedef struct stopper {
  http_server *s;
  unsigned grace_ms;
  pthread_t th;
} stopper;

static void *stop_run(void *arg) {
  stopper *st = arg;
  http_server_stop(st->s, st->grace_ms);
  return NULL;
}

/* Stopping with one rerun running and two queued: near the end of the
 * grace period the queued ones are answered (wait_refused STOPPING) while
 * the running one still waits; it is waited for and answered. */
static void test_stop_with_reruns(void **state) {
  (void)state;
  rerun_ctx t = {0};
  http_server *s = start_rerun(&t, 1, 4);
  rerun_client r[3];
  rerun_client_start(&r[0], s, "/slow?q=0");
  wait_until(&t.running, 1);
  rerun_client_start(&r[1], s, "/slow?q=1");
  rerun_client_start(&r[2], s, "/slow?q=2");
  wait_until(&t.first_passes, 3);
  stopper st = {s, 500, 0};
  assert_int_equal(pthread_create(&st.th, NULL, stop_run, &st), 0);
  wait_until(&t.refused_stopping, 2);
  assert_int_equal(atomic_load(&t.running), 1);
  atomic_store(&t.gate, 1);
  pthread_join(st.th, NULL);
  for (int i = 0; i < 3; i++) pthread_join(r[i].th, NULL);
  assert_int_equal(r[0].status, 200);
  for (int i = 1; i < 3; i++) {
    assert_int_equal(r[i].status, 503);
    assert_non_null(strstr(r[i].body.data, "refused=2"));
  }
  assert_int_equal(atomic_load(&t.reruns), 1);
}

/* A client that gives up while its request waits: the rerun still ends,
 * its answer goes nowhere, and the connection is released (stop does not
 * wait for it). */
static void test_client_gone_during_rerun(void **state) {
  (void)state;
  rerun_ctx t = {0};
  http_server *s = start_rerun(&t, 1, 0);
  rerun_client r;
  memset(&r, 0, sizeof r);
  snprintf(r.url, sizeof r.url, "http://127.0.0.1:%u/slow", http_server_port(s));
  r.timeout_ms = 300;
  assert_int_equal(pthread_create(&r.th, NULL, rerun_client_run, &r), 0);
  pthread_join(r.th, NULL);
  assert_int_equal(r.cc, CURLE_OPERATION_TIMEDOUT);
  assert_int_equal(atomic_load(&t.running), 1);
  atomic_store(&t.gate, 1);
  for (int i = 0; i < 2500 && atomic_load(&t.running) > 0; i++) sleep_ms(2);
  /* Still serving. */
  rerun_client again;
  atomic_store(&t.gate, 1);
  rerun_client_start(&again, s, "/slow?q=again");
  pthread_join(again.th, NULL);
  assert_int_equal(again.status, 200);
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  http_server_stop(s, 5000);
  clock_gettime(CLOCK_MONOTONIC, &b);
  assert_true(b.tv_sec - a.tv_sec < 3);
}

int main(void) {
  curl_global_init(CURL_GLOBAL_ALL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_listen),
      cmocka_unit_test(test_loopback),
      cmocka_unit_test(test_response_header_rejects_injection),
      cmocka_unit_test(test_request_as_delivered),
      cmocka_unit_test(test_keep_alive),
      cmocka_unit_test(test_body_cap),
      cmocka_unit_test(test_body_cap_enforced_by_server),
      cmocka_unit_test(test_concurrent),
      cmocka_unit_test(test_workers_run_in_parallel),
      cmocka_unit_test(test_stop_finishes_in_flight),
      cmocka_unit_test(test_port_in_use),
      cmocka_unit_test(test_tls),
      cmocka_unit_test(test_rerun_frees_the_event_thread),
      cmocka_unit_test(test_rerun_queue_full),
      cmocka_unit_test(test_wait_hint),
      cmocka_unit_test(test_stop_with_reruns),
      cmocka_unit_test(test_client_gone_during_rerun),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
