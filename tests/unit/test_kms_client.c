/* test_kms_client.c - libkms's client (include/kms/kms.h) against a scripted HTTP server.
 *
 * A real libmicrohttpd server on loopback (one thread per connection, so a
 * stalling reply stalls only its own connection) answers each request with
 * the next reply of a script: a status, a body, headers, and timing faults
 * (silence before the headers, a body dripped byte by byte, a body that stops
 * half way, a Content-Length beyond libkms's cap).  The server checks every
 * signed request with kmsd's own SigV4 verifier and records what it saw, so
 * the tests assert on both sides: what the caller gets (kms_error, the
 * reply) and what went over the wire (targets, Authorization, attempts,
 * connections).
 *
 * Covered: success for both services, each retryable class retried and then
 * answered, non-retryable errors answered at once, max_attempts from the
 * option and from AWS_MAX_ATTEMPTS, the retry quota running dry and filling
 * again, bounded backoff, read timeouts (stall before the reply, stall in the
 * body) against a slow but steady reply that must pass, a connect timeout
 * (a listener whose queue is full), a closed port, a
 * reply over the cap (announced and streamed), the AWS error shapes, request
 * ids, unsigned requests, TLS (trusted bundle, untrusted, no verification),
 * configuration errors, and that no debug line or message carries a secret;
 * a 4 KiB session token, credentials given in the options, a success after
 * retries (the caller's error untouched, the quota refunded) and running out
 * of memory while a reply arrives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kms/kms.h"
#include "aws/credentials.h"
#include "aws/sigv4.h"
#include "client/kms_client_retry.h"
#include "core/kclock.h"
#include "core/kerr.h"

#define AKID "AKIDLIBKMSTEST000001"
#define SECRET "libkmsSecretKeyThatMustNeverLeak0123456789"
#define TOKEN_AKID "ASIALIBKMSTEST000002"
#define TOKEN_SECRET "libkmsSessionSecretNeverLeaks987654321"
#define TOKEN "libkmsSessionTokenNeverLeaks+/=="
#define PLAINTEXT_MARK "PlaintextThatMustNotLeak"

static const char *const AWS_VARS[] = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ENDPOINT_URL", "AWS_CA_BUNDLE", "AWS_MAX_ATTEMPTS",
};

/* ------------------------------------------------------------ the server */

/* One scripted reply. */
typedef struct script_reply {
  int status;
  const char *body;            /* NULL: no body */
  const char *error_type;      /* x-amzn-ErrorType header, or NULL */
  long silence_ms;             /* before the headers */
  long drip_ms;                /* body one byte at a time, this far apart */
  size_t stall_after;          /* body: after this many bytes ... */
  long stall_ms;               /* ... stay silent this long, then end */
  uint64_t announce;           /* Content-Length to announce (beyond the body: a lie) */
  size_t stream_bytes;         /* a body of this many 'x', chunked, instead of `body` */
} script_reply;

#define SCRIPT_MAX 64
#define SEEN_MAX 2048

typedef struct server {
  struct MHD_Daemon *daemon;
  uint16_t port;
  char url[64];
  creds_store *creds;
  char dir[64];
  pthread_mutex_t lock;
  script_reply script[SCRIPT_MAX];
  size_t nscript, next;
  volatile int stopping;
  /* What was seen, under `lock`. */
  int requests;
  int connections;
  char target[128];
  char body[SEEN_MAX];
  int had_authorization;
  char verify[256];  /* "" when the signature verified, else the verifier's error */
  char service[16];  /* the signing service the verifier is told to expect */
} server;

typedef struct upload {
  char data[SEEN_MAX];
  size_t len;
} upload;

typedef struct body_reader {
  server *srv;
  script_reply r;
  size_t pos;
} body_reader;

static void quiet_sleep(server *s, long ms) {
  while (ms > 0 && !s->stopping) {
    long slice = ms < 10 ? ms : 10;
    struct timespec ts = {0, slice * 1000000L};
    nanosleep(&ts, NULL);
    ms -= slice;
  }
}

static ssize_t read_body(void *cls, uint64_t pos, char *buf, size_t max) {
  body_reader *b = cls;
  size_t len = b->r.stream_bytes ? b->r.stream_bytes : (b->r.body ? strlen(b->r.body) : 0);
  size_t n;
  (void)pos;
  if (b->srv->stopping) return MHD_CONTENT_READER_END_WITH_ERROR;
  if (b->r.stall_ms && b->pos >= b->r.stall_after) {
    quiet_sleep(b->srv, b->r.stall_ms);
    return MHD_CONTENT_READER_END_WITH_ERROR;
  }
  if (b->pos >= len) /* short of an announced length: drop the connection */
    return b->r.announce > len ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
  n = len - b->pos;
  if (n > max) n = max;
  if (b->r.drip_ms) {
    quiet_sleep(b->srv, b->r.drip_ms);
    n = 1;
  }
  if (b->r.stall_ms && b->pos + n > b->r.stall_after) n = b->r.stall_after - b->pos;
  if (b->r.stream_bytes)
    memset(buf, 'x', n);
  else
    memcpy(buf, b->r.body + b->pos, n);
  b->pos += n;
  return (ssize_t)n;
}

typedef struct header_list {
  http_header h[32];
  size_t n;
} header_list;

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  header_list *l = cls;
  (void)kind;
  if (l->n < 32) l->h[l->n++] = (http_header){key, value ? value : ""};
  return MHD_YES;
}

static void check_signature(server *s, struct MHD_Connection *conn, const upload *u) {
  header_list hl;
  sigv4_request sr;
  sigv4_result who;
  kerr err;
  memset(&hl, 0, sizeof hl);
  MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_header, &hl);
  memset(&sr, 0, sizeof sr);
  sr.method = "POST";
  sr.path = "/";
  sr.headers = hl.h;
  sr.nheaders = hl.n;
  sr.body = (const uint8_t *)u->data;
  sr.body_len = u->len;
  kerr_clear(&err);
  if (sigv4_verify(s->creds, &sr, s->service, kclock_now_s(), &who, &err) != KERR_OK)
    snprintf(s->verify, sizeof s->verify, "%s: %.200s", kerr_name(err.code), err.msg);
  else
    s->verify[0] = '\0';
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *data, size_t *data_size, void **con_cls) {
  server *s = cls;
  upload *u = *con_cls;
  body_reader *b;
  struct MHD_Response *resp;
  const char *target;
  enum MHD_Result ret;
  uint64_t size;
  (void)url;
  (void)method;
  (void)version;

  if (!u) {
    u = calloc(1, sizeof *u);
    *con_cls = u;
    return u ? MHD_YES : MHD_NO;
  }
  if (*data_size) {
    size_t n = *data_size;
    if (n > sizeof u->data - 1 - u->len) n = sizeof u->data - 1 - u->len;
    memcpy(u->data + u->len, data, n);
    u->len += n;
    *data_size = 0;
    return MHD_YES;
  }
  b = calloc(1, sizeof *b);
  if (!b) return MHD_NO;
  b->srv = s;
  pthread_mutex_lock(&s->lock);
  s->requests++;
  target = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Amz-Target");
  snprintf(s->target, sizeof s->target, "%s", target ? target : "");
  snprintf(s->body, sizeof s->body, "%.*s", (int)u->len, u->data);
  s->had_authorization = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization") != NULL;
  if (s->had_authorization) check_signature(s, conn, u);
  /* The script's last reply repeats once the script is used up. */
  b->r = s->script[s->next < s->nscript ? s->next : s->nscript - 1];
  s->next++;
  pthread_mutex_unlock(&s->lock);

  quiet_sleep(s, b->r.silence_ms);
  if (b->r.stream_bytes)
    size = MHD_SIZE_UNKNOWN;
  else if (b->r.announce)
    size = b->r.announce;
  else
    size = b->r.body ? strlen(b->r.body) : 0;
  resp = MHD_create_response_from_callback(size, 64 * 1024, read_body, b, free);
  if (!resp) {
    free(b);
    return MHD_NO;
  }
  MHD_add_response_header(resp, "Content-Type", "application/x-amz-json-1.1");
  MHD_add_response_header(resp, "x-amzn-RequestId", "rid-0001-abcd");
  if (b->r.error_type) MHD_add_response_header(resp, "x-amzn-ErrorType", b->r.error_type);
  ret = MHD_queue_response(conn, (unsigned)b->r.status, resp);
  MHD_destroy_response(resp);
  return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode t) {
  (void)cls;
  (void)conn;
  (void)t;
  free(*con_cls);
  *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code) {
  server *s = cls;
  (void)conn;
  (void)socket_ctx;
  if (code != MHD_CONNECTION_NOTIFY_STARTED) return;
  pthread_mutex_lock(&s->lock);
  s->connections++;
  pthread_mutex_unlock(&s->lock);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
  assert_int_equal(fclose(f), 0);
}

static int start_daemon(server *s, const char *tls_key, const char *tls_cert) {
  const union MHD_DaemonInfo *info;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (tls_key) flags |= MHD_USE_TLS;
  if (tls_key)
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &addr,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION,
                                 on_connection, s, MHD_OPTION_HTTPS_MEM_KEY, tls_key, MHD_OPTION_HTTPS_MEM_CERT,
                                 tls_cert, MHD_OPTION_END);
  else
    s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &addr,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION,
                                 on_connection, s, MHD_OPTION_END);
  if (!s->daemon) return -1;
  info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
  if (!info) return -1;
  s->port = info->port;
  snprintf(s->url, sizeof s->url, "%s://127.0.0.1:%u", tls_key ? "https" : "http", (unsigned)s->port);
  return 0;
}

static int setup(void **state) {
  server *s = calloc(1, sizeof *s);
  char path[128];
  kerr err;
  size_t i;
  if (!s) return -1;
  snprintf(s->dir, sizeof s->dir, "/tmp/test_kms_client.XXXXXX");
  if (!mkdtemp(s->dir)) return -1;
  pthread_mutex_init(&s->lock, NULL);
  snprintf(s->service, sizeof s->service, "kms");
  snprintf(path, sizeof path, "%s/principals.json", s->dir);
  write_file(path, "{\"principals\":[{\"accessKeyId\":\"" AKID "\",\"secretAccessKey\":\"" SECRET "\","
                   "\"accountId\":\"111122223333\",\"arn\":\"arn:aws:iam::111122223333:root\"},"
                   "{\"accessKeyId\":\"" TOKEN_AKID "\",\"secretAccessKey\":\"" TOKEN_SECRET "\","
                   "\"sessionToken\":\"" TOKEN "\",\"accountId\":\"111122223333\","
                   "\"arn\":\"arn:aws:iam::111122223333:user/s\"}]}");
  if (creds_load(path, 0, &s->creds, &err) != KERR_OK) return -1;
  /* A clean AWS environment: empty files, keys and region from the environment. */
  for (i = 0; i < sizeof AWS_VARS / sizeof *AWS_VARS; i++) unsetenv(AWS_VARS[i]);
  snprintf(path, sizeof path, "%s/config", s->dir);
  write_file(path, "");
  setenv("AWS_CONFIG_FILE", path, 1);
  snprintf(path, sizeof path, "%s/credentials", s->dir);
  write_file(path, "");
  setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
  setenv("AWS_ACCESS_KEY_ID", AKID, 1);
  setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
  setenv("AWS_REGION", "eu-west-1", 1);
  if (start_daemon(s, NULL, NULL) != 0) return -1;
  *state = s;
  return 0;
}

static int teardown(void **state) {
  server *s = *state;
  char cmd[128];
  s->stopping = 1;
  MHD_stop_daemon(s->daemon);
  creds_free(s->creds);
  pthread_mutex_destroy(&s->lock);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
  if (system(cmd) != 0) return -1;
  free(s);
  return 0;
}

/* Replace the script; the counters restart. */
static void script(server *s, const script_reply *replies, size_t n) {
  pthread_mutex_lock(&s->lock);
  assert_true(n > 0 && n <= SCRIPT_MAX);
  memcpy(s->script, replies, n * sizeof *replies);
  s->nscript = n;
  s->next = 0;
  s->requests = 0;
  s->connections = 0;
  pthread_mutex_unlock(&s->lock);
}

static int requests_seen(server *s) {
  int n;
  pthread_mutex_lock(&s->lock);
  n = s->requests;
  pthread_mutex_unlock(&s->lock);
  return n;
}

/* ------------------------------------------------------------ the client side */

typedef struct debug_log {
  char text[64 * 1024];
  size_t len;
  int lines;
} debug_log;

/* Keeps the latest lines: when the buffer is full it starts over. */
static void collect_debug(void *ctx, const char *line) {
  debug_log *d = ctx;
  int w;
  if (strlen(line) + 2 > sizeof d->text - d->len) d->len = 0;
  w = snprintf(d->text + d->len, sizeof d->text - d->len, "%s\n", line);
  if (w > 0 && (size_t)w < sizeof d->text - d->len) d->len += (size_t)w;
  d->lines++;
}

static kms_client_options options_for(const server *s) {
  kms_client_options o;
  memset(&o, 0, sizeof o);
  o.endpoint_url = s->url;
  o.max_backoff_ms = 1;
  return o;
}

static kms_client *client_with(kms_service svc, const kms_client_options *o) {
  kms_client *c = NULL;
  kms_error err;
  int rc = kms_client_new(svc, o, &c, &err);
  if (rc) fail_msg("kms_client_new: %d %s: %s", rc, err.code, err.message);
  return c;
}

/* A call that must fail; the error is returned for inspection. */
static kms_error call_fails(kms_client *c, const char *op, const char *body) {
  kms_error err;
  char *reply = (char *)1;
  size_t len = 99;
  memset(&err, 0, sizeof err);
  assert_int_not_equal(kms_call_json(c, op, body, strlen(body), &reply, &len, &err), KMS_OK);
  assert_null(reply);
  assert_int_equal(len, 0);
  assert_int_equal(err.kind != KMS_OK, 1);
  return err;
}

static void call_ok(kms_client *c, const char *op, const char *body, const char *want_reply) {
  kms_error err;
  char *reply = NULL;
  size_t len = 0;
  int rc = kms_call_json(c, op, body, body ? strlen(body) : 0, &reply, &len, &err);
  if (rc) fail_msg("%s: %d %s: %s", op, rc, err.code, err.message);
  assert_non_null(reply);
  assert_int_equal(len, strlen(want_reply));
  assert_string_equal(reply, want_reply);
  kms_reply_free(reply, len);
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ tests */

static void test_success_both_services(void **state) {
  server *s = *state;
  script_reply ok = {.status = 200, .body = "{\"KeyMetadata\":{\"KeyId\":\"k-1\"}}"};
  kms_client_options o = options_for(s);
  kms_client *c;

  script(s, &ok, 1);
  c = client_with(KMS_SERVICE_KMS, &o);
  assert_string_equal(kms_client_region(c), "eu-west-1");
  assert_string_equal(kms_client_endpoint(c), s->url);
  call_ok(c, "CreateKey", "{\"Description\":\"d\"}", "{\"KeyMetadata\":{\"KeyId\":\"k-1\"}}");
  assert_string_equal(s->target, "TrentService.CreateKey");
  assert_string_equal(s->body, "{\"Description\":\"d\"}");
  assert_true(s->had_authorization);
  assert_string_equal(s->verify, "");
  /* The second call rides the same connection and is signed afresh. */
  call_ok(c, "ListKeys", "{}", "{\"KeyMetadata\":{\"KeyId\":\"k-1\"}}");
  assert_string_equal(s->verify, "");
  assert_int_equal(requests_seen(s), 2);
  assert_int_equal(s->connections, 1);
  /* NULL input is "{}". */
  call_ok(c, "ListAliases", NULL, "{\"KeyMetadata\":{\"KeyId\":\"k-1\"}}");
  assert_string_equal(s->body, "{}");
  kms_client_free(c);

  /* CloudHSMv2: its own target prefix and signing name. */
  snprintf(s->service, sizeof s->service, "cloudhsm");
  c = client_with(KMS_SERVICE_CLOUDHSMV2, &o);
  call_ok(c, "DescribeClusters", "{}", "{\"KeyMetadata\":{\"KeyId\":\"k-1\"}}");
  assert_string_equal(s->target, "BaldrApiService.DescribeClusters");
  assert_string_equal(s->verify, "");
  kms_client_free(c);

  /* A session key signs with its token. */
  snprintf(s->service, sizeof s->service, "kms");
  setenv("AWS_ACCESS_KEY_ID", TOKEN_AKID, 1);
  setenv("AWS_SECRET_ACCESS_KEY", TOKEN_SECRET, 1);
  setenv("AWS_SESSION_TOKEN", TOKEN, 1);
  c = client_with(KMS_SERVICE_KMS, &o);
  call_ok(c, "ListKeys", "{}", "{\"KeyMetadata\":{\"KeyId\":\"k-1\"}}");
  assert_string_equal(s->verify, "");
  kms_client_free(c);

  /* An empty success body is a valid answer (operations without output). */
  ok.body = NULL;
  script(s, &ok, 1);
  c = client_with(KMS_SERVICE_KMS, &o);
  call_ok(c, "EnableKey", "{\"KeyId\":\"k-1\"}", "");
  kms_client_free(c);
}

static void test_each_retryable_class_is_retried(void **state) {
  server *s = *state;
  static const char *const codes[] = {
      "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
      "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
      "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled", "SlowDown",
      "EC2ThrottledException", "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete",
  };
  static const int statuses[] = {500, 502, 503, 504};
  kms_client_options o = options_for(s);
  debug_log dbg;
  kms_client *c;
  size_t i;
  char body[256];

  memset(&dbg, 0, sizeof dbg);
  o.debug = collect_debug;
  o.debug_ctx = &dbg;
  c = client_with(KMS_SERVICE_KMS, &o);
  for (i = 0; i < sizeof codes / sizeof *codes; i++) {
    script_reply replies[2] = {{.status = 400, .body = body}, {.status = 200, .body = "{\"ok\":1}"}};
    snprintf(body, sizeof body, "{\"__type\":\"com.amazonaws.kms#%s\",\"message\":\"again\"}", codes[i]);
    script(s, replies, 2);
    call_ok(c, "Encrypt", "{}", "{\"ok\":1}");
    if (requests_seen(s) != 2) fail_msg("%s: %d requests, want 2", codes[i], requests_seen(s));
  }
  for (i = 0; i < sizeof statuses / sizeof *statuses; i++) {
    script_reply replies[2] = {{.status = statuses[i]}, {.status = 200, .body = "{\"ok\":2}"}};
    script(s, replies, 2);
    call_ok(c, "Decrypt", "{}", "{\"ok\":2}");
    if (requests_seen(s) != 2) fail_msg("HTTP %d: %d requests, want 2", statuses[i], requests_seen(s));
  }
  /* A dropped connection (the server ends the body early) is retried too. */
  {
    script_reply replies[2] = {{.status = 200, .body = "{\"cut\":", .announce = 100},
                               {.status = 200, .body = "{\"ok\":3}"}};
    script(s, replies, 2);
    call_ok(c, "Decrypt", "{}", "{\"ok\":3}");
  }
  assert_non_null(strstr(dbg.text, "retrying in"));
  assert_non_null(strstr(dbg.text, "after ThrottlingException"));
  kms_client_free(c);
}

static void test_non_retryable_errors_answer_at_once(void **state) {
  server *s = *state;
  script_reply nf = {.status = 400,
                     .body = "{\"__type\":\"com.amazonaws.kms#NotFoundException\","
                             "\"message\":\"Key 'k' does not exist\"}"};
  script_reply cap = {.status = 400, .body = "{\"__type\":\"ValidationException\",\"Message\":\"1 validation error\"}"};
  script_reply not_impl = {.status = 501, .body = "{\"__type\":\"NotImplemented\"}"};
  kms_client_options o = options_for(s);
  kms_client *c = client_with(KMS_SERVICE_KMS, &o);
  kms_error e;

  script(s, &nf, 1);
  e = call_fails(c, "DescribeKey", "{\"KeyId\":\"k\"}");
  assert_int_equal(e.kind, KMS_ERR_SERVICE);
  assert_string_equal(e.code, "NotFoundException");
  assert_string_equal(e.message, "Key 'k' does not exist");
  assert_int_equal(e.http_status, 400);
  assert_string_equal(e.request_id, "rid-0001-abcd");
  assert_int_equal(e.retryable, 0);
  assert_int_equal(e.attempts, 1);
  assert_int_equal(requests_seen(s), 1);

  script(s, &cap, 1);
  e = call_fails(c, "CreateAlias", "{}");
  assert_string_equal(e.code, "ValidationException");
  assert_string_equal(e.message, "1 validation error");
  assert_int_equal(e.attempts, 1);

  script(s, &not_impl, 1);
  e = call_fails(c, "CreateAlias", "{}");
  assert_string_equal(e.code, "NotImplemented");
  assert_int_equal(e.http_status, 501);
  assert_int_equal(e.retryable, 0);
  assert_int_equal(requests_seen(s), 1);
  kms_client_free(c);
}

static void test_max_attempts(void **state) {
  server *s = *state;
  script_reply busy = {.status = 503, .body = "{\"__type\":\"ServiceUnavailableException\"}"};
  kms_client_options o = options_for(s);
  kms_client *c;
  kms_error e;

  script(s, &busy, 1);
  c = client_with(KMS_SERVICE_KMS, &o);
  e = call_fails(c, "Encrypt", "{}");
  assert_int_equal(e.attempts, 3); /* the standard mode's default */
  assert_int_equal(e.retryable, 1);
  assert_int_equal(e.http_status, 503);
  assert_int_equal(requests_seen(s), 3);
  kms_client_free(c);

  o.max_attempts = 5;
  script(s, &busy, 1);
  c = client_with(KMS_SERVICE_KMS, &o);
  e = call_fails(c, "Encrypt", "{}");
  assert_int_equal(e.attempts, 5);
  assert_int_equal(requests_seen(s), 5);
  kms_client_free(c);

  o.max_attempts = 1; /* no retries at all */
  script(s, &busy, 1);
  c = client_with(KMS_SERVICE_KMS, &o);
  e = call_fails(c, "Encrypt", "{}");
  assert_int_equal(e.attempts, 1);
  assert_int_equal(e.retryable, 1);
  assert_int_equal(requests_seen(s), 1);
  kms_client_free(c);

  /* AWS_MAX_ATTEMPTS when the option is 0; the option wins over it. */
  setenv("AWS_MAX_ATTEMPTS", "2", 1);
  o.max_attempts = 0;
  script(s, &busy, 1);
  c = client_with(KMS_SERVICE_KMS, &o);
  e = call_fails(c, "Encrypt", "{}");
  assert_int_equal(e.attempts, 2);
  assert_int_equal(requests_seen(s), 2);
  kms_client_free(c);
  o.max_attempts = 4;
  script(s, &busy, 1);
  c = client_with(KMS_SERVICE_KMS, &o);
  e = call_fails(c, "Encrypt", "{}");
  assert_int_equal(e.attempts, 4);
  kms_client_free(c);

  /* The profile's max_attempts when the environment says nothing. */
  unsetenv("AWS_MAX_ATTEMPTS");
  {
    char path[128];
    snprintf(path, sizeof path, "%s/config", s->dir);
    write_file(path, "[default]\nmax_attempts = 6\n");
  }
  o.max_attempts = 0;
  script(s, &busy, 1);
  c = client_with(KMS_SERVICE_KMS, &o);
  e = call_fails(c, "Encrypt", "{}");
  assert_int_equal(e.attempts, 6);
  kms_client_free(c);

  /* Nonsense is refused when the client is made. */
  setenv("AWS_MAX_ATTEMPTS", "0", 1);
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, &o, &c, &e), KMS_ERR_CONFIG);
  assert_null(c);
  assert_string_equal(e.code, "InvalidConfigError");
  assert_non_null(strstr(e.message, "AWS_MAX_ATTEMPTS"));
  setenv("AWS_MAX_ATTEMPTS", "three", 1);
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, &o, &c, &e), KMS_ERR_CONFIG);
  unsetenv("AWS_MAX_ATTEMPTS");
  o.max_attempts = -1;
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, &o, &c, &e), KMS_ERR_PARAM);
}

static void test_retry_quota(void **state) {
  server *s = *state;
  script_reply fail = {.status = 500};
  script_reply ok = {.status = 200, .body = "{}"};
  kms_client_options o = options_for(s);
  debug_log dbg;
  kms_client *c;
  kms_error e;
  int i;

  memset(&dbg, 0, sizeof dbg);
  o.max_attempts = 2;
  o.debug = collect_debug;
  o.debug_ctx = &dbg;
  c = client_with(KMS_SERVICE_KMS, &o);
  /* Each failing call retries once and spends RETRY_COST: the quota pays for
   * exactly CAPACITY / COST of them. */
  script(s, &fail, 1);
  for (i = 0; i < RETRY_QUOTA_CAPACITY / RETRY_COST; i++) {
    e = call_fails(c, "Encrypt", "{}");
    if (e.attempts != 2) fail_msg("call %d: %d attempts, want 2", i + 1, e.attempts);
  }
  assert_int_equal(requests_seen(s), 2 * (RETRY_QUOTA_CAPACITY / RETRY_COST));
  /* Dry: the next failure is not retried, though still retryable. */
  script(s, &fail, 1);
  e = call_fails(c, "Encrypt", "{}");
  assert_int_equal(e.attempts, 1);
  assert_int_equal(e.retryable, 1);
  assert_int_equal(requests_seen(s), 1);
  assert_non_null(strstr(dbg.text, "not retrying: retry quota exhausted (0 tokens left)"));
  /* Each first-try success earns one token; RETRY_COST of them buy a retry. */
  for (i = 0; i < RETRY_COST - 1; i++) {
    script(s, &ok, 1);
    call_ok(c, "Encrypt", "{}", "{}");
  }
  script(s, &fail, 1);
  e = call_fails(c, "Encrypt", "{}");
  assert_int_equal(e.attempts, 1);
  script(s, &ok, 1);
  call_ok(c, "Encrypt", "{}", "{}");
  script(s, &fail, 1);
  e = call_fails(c, "Encrypt", "{}");
  assert_int_equal(e.attempts, 2);
  kms_client_free(c);

  /* The quota belongs to the client: a new client starts full. */
  c = client_with(KMS_SERVICE_KMS, &o);
  script(s, &fail, 1);
  e = call_fails(c, "Encrypt", "{}");
  assert_int_equal(e.attempts, 2);
  kms_client_free(c);

  /* The accounting itself: timeouts cost more, success refunds the last cost. */
  {
    retry_quota q;
    retry_quota_init(&q);
    assert_int_equal(retry_quota_take(&q, RETRY_TIMEOUT), RETRY_COST_TIMEOUT);
    assert_int_equal(retry_quota_take(&q, RETRY_THROTTLED), RETRY_COST);
    assert_int_equal(retry_quota_take(&q, RETRY_NEVER), 0);
    assert_int_equal(q.tokens, RETRY_QUOTA_CAPACITY - RETRY_COST_TIMEOUT - RETRY_COST);
    retry_quota_success(&q, RETRY_COST);
    assert_int_equal(q.tokens, RETRY_QUOTA_CAPACITY - RETRY_COST_TIMEOUT);
    retry_quota_success(&q, RETRY_COST_TIMEOUT);
    retry_quota_success(&q, 0);
    assert_int_equal(q.tokens, RETRY_QUOTA_CAPACITY);
    q.tokens = RETRY_COST_TIMEOUT - 1;
    assert_int_equal(retry_quota_take(&q, RETRY_TIMEOUT), 0);
    assert_int_equal(retry_quota_take(&q, RETRY_TRANSIENT), RETRY_COST);
  }
}

static void test_backoff_is_bounded(void **state) {
  server *s = *state;
  script_reply busy = {.status = 503};
  kms_client_options o = options_for(s);
  debug_log dbg;
  kms_client *c;
  kms_error e;
  int64_t t0, spent;
  const char *p;
  int i;

  /* The formula: a random fraction of 2^n seconds, capped. */
  assert_int_equal(retry_backoff_ms(1, 20000, 1.0), 2000);
  assert_int_equal(retry_backoff_ms(2, 20000, 1.0), 4000);
  assert_int_equal(retry_backoff_ms(3, 20000, 0.5), 4000);
  assert_int_equal(retry_backoff_ms(5, 20000, 1.0), 20000);
  assert_int_equal(retry_backoff_ms(60, 20000, 1.0), 20000);
  assert_int_equal(retry_backoff_ms(1, 20000, 0.0), 0);
  assert_int_equal(retry_backoff_ms(4, 50, 0.9), 50);
  for (i = 0; i < 1000; i++) {
    double j = retry_jitter();
    assert_true(j >= 0.0 && j <= 1.0);
  }

  memset(&dbg, 0, sizeof dbg);
  o.max_attempts = 4;
  o.max_backoff_ms = 40;
  o.debug = collect_debug;
  o.debug_ctx = &dbg;
  c = client_with(KMS_SERVICE_KMS, &o);
  script(s, &busy, 1);
  t0 = mono_ms();
  e = call_fails(c, "Encrypt", "{}");
  spent = mono_ms() - t0;
  assert_int_equal(e.attempts, 4);
  /* Three delays of at most 40 ms each, plus four loopback round trips. */
  assert_true(spent < 3 * 40 + 1000);
  for (p = dbg.text, i = 0; (p = strstr(p, "retrying in ")) != NULL; p++, i++) {
    long ms = strtol(p + strlen("retrying in "), NULL, 10);
    assert_true(ms >= 0 && ms <= 40);
  }
  assert_int_equal(i, 3);
  kms_client_free(c);
}

static void test_read_timeout(void **state) {
  server *s = *state;
  script_reply silent = {.status = 200, .body = "{}", .silence_ms = 3000};
  script_reply cut = {.status = 200, .body = "{\"Plaintext\":\"AAAA\"}", .stall_after = 5, .stall_ms = 3000};
  script_reply drip = {.status = 200, .body = "{\"a\":\"bcdefg\"}", .drip_ms = 100};
  kms_client_options o = options_for(s);
  kms_client *c;
  kms_error e;
  int64_t t0, spent;

  o.read_timeout_ms = 300;
  o.max_attempts = 1;
  c = client_with(KMS_SERVICE_KMS, &o);

  /* Silence before the reply. */
  script(s, &silent, 1);
  t0 = mono_ms();
  e = call_fails(c, "Encrypt", "{}");
  spent = mono_ms() - t0;
  assert_int_equal(e.kind, KMS_ERR_TIMEOUT);
  assert_string_equal(e.code, "ReadTimeoutError");
  assert_int_equal(e.retryable, 1);
  assert_int_equal(e.http_status, 0);
  assert_true(spent >= 290 && spent < 1500);

  /* Silence in the middle of the body. */
  script(s, &cut, 1);
  t0 = mono_ms();
  e = call_fails(c, "Decrypt", "{}");
  spent = mono_ms() - t0;
  assert_int_equal(e.kind, KMS_ERR_TIMEOUT);
  assert_string_equal(e.code, "ReadTimeoutError");
  assert_true(spent >= 290 && spent < 1500);
  /* The part of the body that did arrive is not quoted. */
  assert_null(strstr(e.message, "{\"Pla"));

  /* Slow but steady: 14 bytes 100 ms apart take 1.4 s in all, yet no gap
   * reaches 300 ms -- the timeout is between reads, not for the call. */
  script(s, &drip, 1);
  t0 = mono_ms();
  call_ok(c, "Decrypt", "{}", "{\"a\":\"bcdefg\"}");
  assert_true(mono_ms() - t0 >= 1000);
  kms_client_free(c);

  /* Timeouts are retried (and cost the quota more). */
  o.max_attempts = 2;
  o.read_timeout_ms = 200;
  c = client_with(KMS_SERVICE_KMS, &o);
  script(s, &silent, 1);
  e = call_fails(c, "Encrypt", "{}");
  assert_int_equal(e.attempts, 2);
  assert_int_equal(requests_seen(s), 2);
  kms_client_free(c);
}

static void test_connect_failure(void **state) {
  server *s = *state;
  kms_client_options o = options_for(s);
  struct sockaddr_in addr;
  socklen_t alen = sizeof addr;
  char url[64];
  kms_client *c;
  kms_error e;
  int fd;

  /* A port that was just free: bound, read, closed. */
  fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &alen), 0);
  close(fd);
  snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)ntohs(addr.sin_port));
  o.endpoint_url = url;
  o.connect_timeout_ms = 2000;
  c = client_with(KMS_SERVICE_KMS, &o);
  e = call_fails(c, "ListKeys", "{}");
  assert_int_equal(e.kind, KMS_ERR_CONNECTION);
  assert_string_equal(e.code, "EndpointConnectionError");
  assert_non_null(strstr(e.message, url));
  assert_int_equal(e.http_status, 0);
  assert_string_equal(e.request_id, "");
  assert_int_equal(e.retryable, 1);
  assert_int_equal(e.attempts, 3);
  kms_client_free(c);
}

/* A listener that never accepts, its queue filled: further SYNs are dropped,
 * so a connect hangs until the client's connect timeout. */
static void test_connect_timeout(void **state) {
  server *s = *state;
  kms_client_options o = options_for(s);
  struct sockaddr_in addr;
  socklen_t alen = sizeof addr;
  int listener, fillers[8], nfill = 0, i;
  char url[64];
  kms_client *c;
  kms_error e;
  int64_t t0, spent;

  listener = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(listener >= 0);
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(listener, (struct sockaddr *)&addr, sizeof addr), 0);
  assert_int_equal(getsockname(listener, (struct sockaddr *)&addr, &alen), 0);
  assert_int_equal(listen(listener, 0), 0);
  for (i = 0; i < 8; i++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    (void)connect(fd, (struct sockaddr *)&addr, sizeof addr);
    fillers[nfill++] = fd;
  }
  snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)ntohs(addr.sin_port));
  o.endpoint_url = url;
  o.connect_timeout_ms = 300;
  o.max_attempts = 1;
  c = client_with(KMS_SERVICE_KMS, &o);
  t0 = mono_ms();
  e = call_fails(c, "ListKeys", "{}");
  spent = mono_ms() - t0;
  assert_int_equal(e.kind, KMS_ERR_TIMEOUT);
  assert_string_equal(e.code, "ConnectTimeoutError");
  assert_int_equal(e.retryable, 1);
  assert_true(spent >= 250 && spent < 2000);
  kms_client_free(c);
  for (i = 0; i < nfill; i++) close(fillers[i]);
  close(listener);
}

static void test_reply_too_large(void **state) {
  server *s = *state;
  script_reply announced = {.status = 200, .body = "{", .announce = (uint64_t)5 * 1024 * 1024};
  script_reply streamed = {.status = 200, .stream_bytes = (size_t)4 * 1024 * 1024 + 1};
  script_reply at_cap = {.status = 200, .stream_bytes = (size_t)4 * 1024 * 1024};
  kms_client_options o = options_for(s);
  kms_client *c = client_with(KMS_SERVICE_KMS, &o);
  kms_error e;
  int64_t t0;

  /* Refused on its Content-Length, before the body. */
  script(s, &announced, 1);
  t0 = mono_ms();
  e = call_fails(c, "Decrypt", "{}");
  assert_int_equal(e.kind, KMS_ERR_RESPONSE);
  assert_string_equal(e.code, "ResponseTooLarge");
  assert_int_equal(e.retryable, 0);
  assert_int_equal(e.attempts, 1);
  assert_true(mono_ms() - t0 < 1500);
  /* Without a length (chunked): refused at the first byte past 4 MiB. */
  script(s, &streamed, 1);
  e = call_fails(c, "Decrypt", "{}");
  assert_int_equal(e.kind, KMS_ERR_RESPONSE);
  assert_string_equal(e.code, "ResponseTooLarge");
  assert_int_equal(requests_seen(s), 1);
  /* Exactly 4 MiB is accepted (and then found not to be a JSON object). */
  script(s, &at_cap, 1);
  e = call_fails(c, "Decrypt", "{}");
  assert_string_equal(e.code, "InvalidResponse");
  kms_client_free(c);
}

static void test_error_shapes(void **state) {
  server *s = *state;
  script_reply header_only = {.status = 400, .body = "{\"message\":\"by header\"}",
                              .error_type = "AccessDeniedException:http://internal.amazon.com/coral/"};
  script_reply empty = {.status = 400};
  script_reply text = {.status = 403, .body = "<html>denied</html>"};
  script_reply ctl = {.status = 400, .body = "{\"__type\":\"Bad\\u001b[31m\",\"message\":\"a\\nb\\u0007c\"}"};
  script_reply html_ok = {.status = 200, .body = "<html>ok</html>"};
  kms_client_options o = options_for(s);
  kms_client *c;
  kms_error e;

  o.max_attempts = 1;
  c = client_with(KMS_SERVICE_KMS, &o);
  script(s, &header_only, 1);
  e = call_fails(c, "Encrypt", "{}");
  assert_string_equal(e.code, "AccessDeniedException");
  assert_string_equal(e.message, "by header");

  /* No body at all: the status is the code. */
  script(s, &empty, 1);
  e = call_fails(c, "Encrypt", "{}");
  assert_int_equal(e.kind, KMS_ERR_SERVICE);
  assert_string_equal(e.code, "400");
  assert_int_equal(e.http_status, 400);
  assert_string_equal(e.request_id, "rid-0001-abcd");
  assert_true(e.message[0] != '\0');

  script(s, &text, 1);
  e = call_fails(c, "Encrypt", "{}");
  assert_string_equal(e.code, "403");
  assert_string_equal(e.message, "<html>denied</html>");

  /* Control characters from the server never reach the caller. */
  script(s, &ctl, 1);
  e = call_fails(c, "Encrypt", "{}");
  assert_null(strchr(e.code, 0x1b));
  assert_null(strchr(e.message, '\n'));
  assert_null(strchr(e.message, 0x07));

  /* An error body over 64 KiB is not parsed (a reply of many small JSON
   * values would cost many times its size): the status is the code. */
  {
    size_t big = 70 * 1024;
    char *body = malloc(big + 64);
    script_reply huge = {.status = 400};
    assert_non_null(body);
    strcpy(body, "{\"__type\":\"BigError\",\"message\":\"");
    memset(body + strlen(body), 'm', big);
    body[strlen("{\"__type\":\"BigError\",\"message\":\"") + big] = '\0';
    strcat(body, "\"}");
    huge.body = body;
    script(s, &huge, 1);
    e = call_fails(c, "Encrypt", "{}");
    assert_int_equal(e.kind, KMS_ERR_SERVICE);
    assert_string_equal(e.code, "400");
    assert_int_equal(e.http_status, 400);
    free(body);
  }

  /* A success status with a body that is not a JSON object. */
  script(s, &html_ok, 1);
  e = call_fails(c, "Encrypt", "{}");
  assert_int_equal(e.kind, KMS_ERR_RESPONSE);
  assert_string_equal(e.code, "InvalidResponse");
  assert_int_equal(e.http_status, 200);
  kms_client_free(c);
}

static void test_unsigned_requests(void **state) {
  server *s = *state;
  script_reply ok = {.status = 200, .body = "{}"};
  kms_client_options o = options_for(s);
  kms_client *c = NULL;
  kms_error e;

  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, &o, &c, &e), KMS_ERR_CONFIG);
  assert_string_equal(e.code, "NoCredentialsError");
  assert_null(c);
  o.no_sign_request = 1;
  c = client_with(KMS_SERVICE_KMS, &o);
  script(s, &ok, 1);
  call_ok(c, "ListKeys", "{}", "{}");
  assert_int_equal(s->had_authorization, 0);
  assert_string_equal(s->target, "TrentService.ListKeys");
  kms_client_free(c);
  /* Unsigned even when credentials exist. */
  setenv("AWS_ACCESS_KEY_ID", AKID, 1);
  setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
  c = client_with(KMS_SERVICE_KMS, &o);
  call_ok(c, "ListKeys", "{}", "{}");
  assert_int_equal(s->had_authorization, 0);
  kms_client_free(c);
}

static void test_debug_and_errors_hold_no_secret(void **state) {
  server *s = *state;
  script_reply replies[3] = {
      {.status = 400, .body = "{\"__type\":\"ThrottlingException\"}"},
      {.status = 200, .body = "{\"Plaintext\":\"" PLAINTEXT_MARK "\"}"},
      {.status = 400, .body = "{\"__type\":\"InvalidCiphertextException\"}"},
  };
  const char *body = "{\"Plaintext\":\"" PLAINTEXT_MARK "\",\"KeyId\":\"k\"}";
  kms_client_options o = options_for(s);
  debug_log dbg;
  kms_client *c;
  kms_error e;
  char *reply = NULL;
  size_t len = 0;

  setenv("AWS_ACCESS_KEY_ID", TOKEN_AKID, 1);
  setenv("AWS_SECRET_ACCESS_KEY", TOKEN_SECRET, 1);
  setenv("AWS_SESSION_TOKEN", TOKEN, 1);
  memset(&dbg, 0, sizeof dbg);
  o.debug = collect_debug;
  o.debug_ctx = &dbg;
  c = client_with(KMS_SERVICE_KMS, &o);
  script(s, replies, 3);
  assert_int_equal(kms_call_json(c, "Encrypt", body, strlen(body), &reply, &len, &e), KMS_OK);
  assert_non_null(strstr(reply, PLAINTEXT_MARK));
  kms_reply_free(reply, len);
  e = call_fails(c, "Decrypt", body);
  assert_string_equal(e.code, "InvalidCiphertextException");
  kms_client_free(c);

  /* One line for the client, then per attempt a request and a reply line,
   * and one line for the retry. */
  assert_int_equal(dbg.lines, 1 + 2 * 2 + 1 + 2);
  assert_non_null(strstr(dbg.text, "TrentService.Encrypt"));
  assert_non_null(strstr(dbg.text, "rid-0001-abcd"));
  assert_null(strstr(dbg.text, TOKEN_SECRET));
  assert_null(strstr(dbg.text, TOKEN));
  assert_null(strstr(dbg.text, PLAINTEXT_MARK));
  assert_null(strstr(dbg.text, "Authorization"));
  assert_null(strstr(dbg.text, "Signature="));
  assert_null(strstr(e.message, TOKEN_SECRET));
  assert_null(strstr(e.message, PLAINTEXT_MARK));
}

static void test_configuration_errors(void **state) {
  server *s = *state;
  kms_client_options o = options_for(s);
  kms_client *c = (kms_client *)1;
  kms_error e;
  char *reply;
  size_t len;
  char path[128];

  /* The default endpoints. */
  o.endpoint_url = NULL;
  c = client_with(KMS_SERVICE_KMS, &o);
  assert_string_equal(kms_client_endpoint(c), "https://kms.eu-west-1.amazonaws.com");
  kms_client_free(c);
  o.region = "ap-south-2";
  c = client_with(KMS_SERVICE_CLOUDHSMV2, &o);
  assert_string_equal(kms_client_endpoint(c), "https://cloudhsmv2.ap-south-2.amazonaws.com");
  assert_string_equal(kms_client_region(c), "ap-south-2");
  kms_client_free(c);
  /* AWS_ENDPOINT_URL when the option is not given. */
  setenv("AWS_ENDPOINT_URL", s->url, 1);
  c = client_with(KMS_SERVICE_KMS, &o);
  assert_string_equal(kms_client_endpoint(c), s->url);
  kms_client_free(c);
  unsetenv("AWS_ENDPOINT_URL");

  o = options_for(s);
  unsetenv("AWS_REGION");
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, &o, &c, &e), KMS_ERR_CONFIG);
  assert_null(c);
  assert_string_equal(e.code, "NoRegionError");
  o.region = "eu-west-1/../x";
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, &o, &c, &e), KMS_ERR_CONFIG);
  assert_string_equal(e.code, "InvalidRegionError");
  o.region = "eu-west-1";
  o.profile = "nosuchprofile";
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, &o, &c, &e), KMS_ERR_CONFIG);
  assert_string_equal(e.code, "ProfileNotFound");
  o.profile = NULL;
  o.endpoint_url = "ftp://127.0.0.1/";
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, &o, &c, &e), KMS_ERR_CONFIG);
  assert_string_equal(e.code, "InvalidEndpointError");
  o.endpoint_url = "http://user:" PLAINTEXT_MARK "@127.0.0.1:1/";
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, &o, &c, &e), KMS_ERR_CONFIG);
  assert_string_equal(e.code, "InvalidEndpointError");
  assert_null(strstr(e.message, PLAINTEXT_MARK));
  /* Nor in the messages that quote a URL they refuse. */
  o.endpoint_url = "ftp://user:" PLAINTEXT_MARK "@127.0.0.1/";
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, &o, &c, &e), KMS_ERR_CONFIG);
  assert_string_equal(e.code, "InvalidEndpointError");
  assert_null(strstr(e.message, PLAINTEXT_MARK));
  assert_non_null(strstr(e.message, "ftp://***@127.0.0.1/"));
  o.endpoint_url = "http://user:" PLAINTEXT_MARK "@127.0.0.1:99999999/";
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, &o, &c, &e), KMS_ERR_CONFIG);
  assert_string_equal(e.code, "InvalidEndpointError");
  assert_null(strstr(e.message, PLAINTEXT_MARK));
  o.endpoint_url = s->url;
  snprintf(path, sizeof path, "%s/config", s->dir);
  write_file(path, "region = x\n");
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, &o, &c, &e), KMS_ERR_CONFIG);
  assert_string_equal(e.code, "ConfigParseError");
  write_file(path, "[default]\nregion = eu-central-1\n");
  o.region = NULL;
  c = client_with(KMS_SERVICE_KMS, &o);
  assert_string_equal(kms_client_region(c), "eu-central-1");

  /* The caller's mistakes. */
  assert_int_equal(kms_call_json(c, "TrentService.Encrypt", "{}", 2, &reply, &len, &e), KMS_ERR_PARAM);
  assert_int_equal(kms_call_json(c, "", "{}", 2, &reply, &len, &e), KMS_ERR_PARAM);
  assert_int_equal(kms_call_json(c, "Encrypt", NULL, 2, &reply, &len, &e), KMS_ERR_PARAM);
  assert_int_equal(kms_call_json(c, "Encrypt", "{}", 2, NULL, &len, &e), KMS_ERR_PARAM);
  assert_int_equal(kms_call_json(NULL, "Encrypt", "{}", 2, &reply, &len, NULL), KMS_ERR_PARAM);
  kms_client_free(c);
  o.read_timeout_ms = -5;
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, &o, &c, &e), KMS_ERR_PARAM);
  o.read_timeout_ms = KMS_TIMEOUT_NONE;
  c = client_with(KMS_SERVICE_KMS, &o);
  kms_client_free(c);
  o.max_backoff_ms = -1;
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, &o, &c, &e), KMS_ERR_PARAM);
  assert_int_equal(kms_client_new((kms_service)7, NULL, &c, &e), KMS_ERR_PARAM);
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, NULL, NULL, NULL), KMS_ERR_PARAM);
  kms_client_free(NULL);
  kms_reply_free(NULL, 0);
  assert_null(kms_client_region(NULL));
}

/* ------------------------------------------------------------ TLS */

static char *read_all(const char *path) {
  FILE *f = fopen(path, "rb");
  char *buf;
  long n;
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = calloc(1, (size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  return buf;
}

static void test_tls(void **state) {
  server *plain = *state;
  server tls;
  script_reply ok = {.status = 200, .body = "{\"tls\":true}"};
  char cmd[512], key_path[128], cert_path[128];
  char *key, *cert;
  kms_client_options o;
  kms_client *c;
  kms_error e;

  /* scripts/install-deps.sh installs openssl: missing is a failure, not a skip. */
  if (system("openssl version >/dev/null 2>&1") != 0)
    fail_msg("openssl is missing: the TLS cases cannot run");
  snprintf(key_path, sizeof key_path, "%s/server.key", plain->dir);
  snprintf(cert_path, sizeof cert_path, "%s/server.pem", plain->dir);
  snprintf(cmd, sizeof cmd,
           "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 "
           "-addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s >/dev/null 2>&1",
           key_path, cert_path);
  assert_int_equal(system(cmd), 0);
  key = read_all(key_path);
  cert = read_all(cert_path);
  assert_non_null(key);
  assert_non_null(cert);

  memset(&tls, 0, sizeof tls);
  pthread_mutex_init(&tls.lock, NULL);
  snprintf(tls.service, sizeof tls.service, "kms");
  tls.creds = plain->creds;
  assert_int_equal(start_daemon(&tls, key, cert), 0);
  script(&tls, &ok, 1);

  memset(&o, 0, sizeof o);
  o.endpoint_url = tls.url;
  o.max_backoff_ms = 1;
  /* Trusted through the bundle. */
  o.ca_bundle = cert_path;
  c = client_with(KMS_SERVICE_KMS, &o);
  call_ok(c, "ListKeys", "{}", "{\"tls\":true}");
  assert_string_equal(tls.verify, "");
  kms_client_free(c);
  /* AWS_CA_BUNDLE does the same. */
  o.ca_bundle = NULL;
  setenv("AWS_CA_BUNDLE", cert_path, 1);
  c = client_with(KMS_SERVICE_KMS, &o);
  call_ok(c, "ListKeys", "{}", "{\"tls\":true}");
  kms_client_free(c);
  unsetenv("AWS_CA_BUNDLE");
  /* The system store does not know it: refused, and not retried. */
  script(&tls, &ok, 1);
  c = client_with(KMS_SERVICE_KMS, &o);
  e = call_fails(c, "ListKeys", "{}");
  assert_int_equal(e.kind, KMS_ERR_CONNECTION);
  assert_string_equal(e.code, "SSLError");
  assert_int_equal(e.retryable, 0);
  assert_int_equal(e.attempts, 1);
  assert_int_equal(requests_seen(&tls), 0);
  kms_client_free(c);
  /* Unless verification is off. */
  o.no_verify_ssl = 1;
  c = client_with(KMS_SERVICE_KMS, &o);
  call_ok(c, "ListKeys", "{}", "{\"tls\":true}");
  kms_client_free(c);

  tls.stopping = 1;
  MHD_stop_daemon(tls.daemon);
  pthread_mutex_destroy(&tls.lock);
  free(key);
  free(cert);
}

/* A session token as long as STS and SSO hand out (4 KiB) is sent whole and
 * signs: header lines are sized to what they carry. */
static void test_long_session_token(void **state) {
  server *s = *state;
  script_reply ok = {.status = 200, .body = "{}"};
  kms_client_options o = options_for(s);
  char token[4097], path[128];
  char *principals;
  creds_store *store = NULL;
  kms_client *c;
  kerr err;
  size_t i;

  for (i = 0; i < 4096; i++) token[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(i * 7) % 64];
  token[4096] = '\0';
  principals = malloc(8192);
  assert_non_null(principals);
  snprintf(principals, 8192,
           "{\"principals\":[{\"accessKeyId\":\"" TOKEN_AKID "\",\"secretAccessKey\":\"" TOKEN_SECRET "\","
           "\"sessionToken\":\"%s\",\"accountId\":\"111122223333\",\"arn\":\"arn:aws:iam::111122223333:user/s\"}]}",
           token);
  snprintf(path, sizeof path, "%s/long-token.json", s->dir);
  write_file(path, principals);
  free(principals);
  assert_int_equal(creds_load(path, 0, &store, &err), KERR_OK);
  creds_free(s->creds);
  s->creds = store;
  setenv("AWS_ACCESS_KEY_ID", TOKEN_AKID, 1);
  setenv("AWS_SECRET_ACCESS_KEY", TOKEN_SECRET, 1);
  setenv("AWS_SESSION_TOKEN", token, 1);
  script(s, &ok, 1);
  c = client_with(KMS_SERVICE_KMS, &o);
  call_ok(c, "ListKeys", "{}", "{}");
  assert_true(s->had_authorization);
  assert_string_equal(s->verify, "");
  kms_client_free(c);
}

/* Credentials given in the options win over the environment's; they are
 * copied; half of a key pair is refused. */
static void test_credentials_in_options(void **state) {
  server *s = *state;
  script_reply ok = {.status = 200, .body = "{}"};
  kms_client_options o = options_for(s);
  char akid[] = TOKEN_AKID, secret[] = TOKEN_SECRET, token[] = TOKEN;
  kms_client *c = NULL;
  kms_error e;

  /* Keys in the environment the server does not know: using them fails. */
  setenv("AWS_ACCESS_KEY_ID", "AKIDUNKNOWN000000000", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "unknownSecretKey", 1);
  o.access_key_id = akid;
  o.secret_access_key = secret;
  o.session_token = token;
  script(s, &ok, 1);
  c = client_with(KMS_SERVICE_KMS, &o);
  memset(secret, 'x', sizeof secret - 1);
  memset(token, 'x', sizeof token - 1);
  call_ok(c, "ListKeys", "{}", "{}");
  assert_string_equal(s->verify, "");
  kms_client_free(c);

  /* Without any other source at all. */
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  o.access_key_id = AKID;
  o.secret_access_key = SECRET;
  o.session_token = NULL;
  c = client_with(KMS_SERVICE_KMS, &o);
  call_ok(c, "ListKeys", "{}", "{}");
  assert_string_equal(s->verify, "");
  kms_client_free(c);

  /* All or nothing. */
  o.secret_access_key = NULL;
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, &o, &c, &e), KMS_ERR_CONFIG);
  assert_null(c);
  assert_string_equal(e.code, "PartialCredentialsError");
  assert_null(strstr(e.message, AKID));
  o.access_key_id = NULL;
  o.secret_access_key = SECRET;
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, &o, &c, &e), KMS_ERR_CONFIG);
  assert_string_equal(e.code, "PartialCredentialsError");
  assert_null(strstr(e.message, SECRET));
  o.secret_access_key = NULL;
  o.session_token = TOKEN;
  assert_int_equal(kms_client_new(KMS_SERVICE_KMS, &o, &c, &e), KMS_ERR_CONFIG);
  assert_string_equal(e.code, "PartialCredentialsError");
  assert_null(strstr(e.message, TOKEN));
}

/* A success that needed retries leaves *err as the caller had it (kms.h: it
 * is filled only on failure), and gives back to the retry quota what its
 * retry cost: a client whose calls each fail once and then succeed never
 * runs the quota dry. */
static void test_retried_success(void **state) {
  server *s = *state;
  script_reply fail_then_ok[2] = {{.status = 500}, {.status = 200, .body = "{}"}};
  script_reply fail = {.status = 500};
  kms_client_options o = options_for(s);
  kms_client *c;
  kms_error e, before;
  char *reply = NULL;
  size_t len = 0;
  int i;

  o.max_attempts = 2;
  c = client_with(KMS_SERVICE_KMS, &o);
  for (i = 0; i < RETRY_QUOTA_CAPACITY / RETRY_COST + 5; i++) {
    memset(&e, 0x5a, sizeof e);
    before = e;
    script(s, fail_then_ok, 2);
    if (kms_call_json(c, "Encrypt", "{}", 2, &reply, &len, &e) != KMS_OK) fail_msg("call %d failed", i + 1);
    assert_int_equal(requests_seen(s), 2);
    assert_memory_equal(&e, &before, sizeof e);
    kms_reply_free(reply, len);
  }
  /* Still a full quota: the next failure is retried. */
  script(s, &fail, 1);
  e = call_fails(c, "Encrypt", "{}");
  assert_int_equal(e.attempts, 2);
  kms_client_free(c);
}

/* Running out of memory while a reply arrives is KMS_ERR_MEMORY, not a
 * libcurl failure.  A child process caps its own address space a little
 * above what it uses, then receives a 4 MiB reply, whose buffer must grow to
 * 8 MiB.  (Not under AddressSanitizer, whose shadow memory needs an
 * unbounded address space, nor under valgrind, whose own allocator would
 * fail first.) */
static void test_out_of_memory_while_reading(void **state) {
#if defined(__SANITIZE_ADDRESS__)
  (void)state;
  skip();
#else
  server *s = *state;
  script_reply big = {.status = 200, .stream_bytes = (size_t)4 * 1024 * 1024};
  const char *preload = getenv("LD_PRELOAD");
  if (preload && strstr(preload, "vgpreload")) skip();
  kms_client_options o = options_for(s);
  kms_client *c;
  int status = 0;
  pid_t pid;

  o.max_attempts = 1;
  script(s, &big, 1);
  c = client_with(KMS_SERVICE_KMS, &o);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    kms_error e;
    char *reply = NULL;
    size_t len = 0;
    struct rlimit lim;
    void *hold[4096];
    size_t held = 0, i;
    /* No more address space, and the heap's free memory taken: only the
     * last 256 KiB taken are given back, for libcurl's small needs. */
    lim.rlim_cur = lim.rlim_max = 0;
    if (getrlimit(RLIMIT_AS, &lim) != 0) _exit(10);
    {
      FILE *f = fopen("/proc/self/statm", "r");
      unsigned long pages = 0;
      if (!f || fscanf(f, "%lu", &pages) != 1) _exit(10);
      fclose(f);
      lim.rlim_cur = lim.rlim_max = pages * (unsigned long)sysconf(_SC_PAGESIZE);
    }
    if (setrlimit(RLIMIT_AS, &lim) != 0) _exit(11);
    while (held < sizeof hold / sizeof *hold && (hold[held] = malloc(64 * 1024)) != NULL) held++;
    for (i = 0; i < 4 && held > 0; i++) free(hold[--held]);
    memset(&e, 0, sizeof e);
    if (kms_call_json(c, "Decrypt", "{}", 2, &reply, &len, &e) != KMS_ERR_MEMORY) {
      fprintf(stderr, "got %d %s: %s\n", (int)e.kind, e.code, e.message);
      _exit(12);
    }
    _exit(strcmp(e.code, "MemoryError") == 0 && reply == NULL ? 0 : 13);  /* held: freed by _exit */
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  kms_client_free(c);
#endif
}

static void test_version(void **state) {
  int major = -1, minor = -1, patch = -1;
  char tail = 0;
  (void)state;
  assert_int_equal(sscanf(kms_version(), "%d.%d.%d%c", &major, &minor, &patch, &tail), 3);
  assert_true(major >= 0 && minor >= 0 && patch >= 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_success_both_services, setup, teardown),
      cmocka_unit_test_setup_teardown(test_each_retryable_class_is_retried, setup, teardown),
      cmocka_unit_test_setup_teardown(test_non_retryable_errors_answer_at_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_max_attempts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_retry_quota, setup, teardown),
      cmocka_unit_test_setup_teardown(test_backoff_is_bounded, setup, teardown),
      cmocka_unit_test_setup_teardown(test_read_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connect_failure, setup, teardown),
      cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reply_too_large, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_shapes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unsigned_requests, setup, teardown),
      cmocka_unit_test_setup_teardown(test_debug_and_errors_hold_no_secret, setup, teardown),
      cmocka_unit_test_setup_teardown(test_configuration_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
      cmocka_unit_test_setup_teardown(test_long_session_token, setup, teardown),
      cmocka_unit_test_setup_teardown(test_credentials_in_options, setup, teardown),
      cmocka_unit_test_setup_teardown(test_retried_success, setup, teardown),
      cmocka_unit_test_setup_teardown(test_out_of_memory_while_reading, setup, teardown),
      cmocka_unit_test(test_version),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
