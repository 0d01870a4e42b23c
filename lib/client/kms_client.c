/* kms_client.c - libkms's client: configuration, the generic JSON call and its retries.
 *
 * The implementation of include/kms/kms.h.  A client is resolved once (the
 * AWS configuration chain of lib/client/aws_config.h, the endpoint, the
 * timeouts) and then makes calls through one lib/client/aws_http.h client,
 * whose libcurl handles keep the connection open between calls.  Each call
 * runs the standard retry mode (lib/client/kms_client_retry.h) and turns
 * what happened into one kms_error.
 *
 * Nothing secret leaves this file: debug lines and error messages name the
 * endpoint, the operation, sizes, statuses, error codes and request ids,
 * never a body, a header value that signs, or a credential. */
#include "kms/kms.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/aws_config.h"
#include "client/aws_http.h"
#include "client/kms_client_internal.h"
#include "client/kms_client_retry.h"
#include "core/kerr.h"
#include "core/secmem.h"
#include "core/version.h"

/* The longest reply kms_call_json accepts (kms.h).  Real replies are a few
 * KiB (Decrypt of the largest plaintext: 4 KiB as base64, ListKeys pages of
 * 1,000 keys: ~150 KiB); a decoded reply costs many times its size. */
#define KMS_REPLY_MAX ((size_t)4 * 1024 * 1024)
#define DEFAULT_TIMEOUT_MS 60000L
#define OPERATION_NAME_MAX 128
#define REGION_NAME_MAX 63
#define DEBUG_LINE_MAX 512

struct kms_client {
  kms_service service;
  const char *target_prefix;  /* "TrentService" / "BaldrApiService" */
  aws_config cfg;             /* owns credentials (wiped on free), region, endpoint */
  aws_http_client *http;      /* borrows cfg */
  int max_attempts;
  long max_backoff_ms;
  retry_quota quota;
  void (*debug)(void *ctx, const char *line);
  void *debug_ctx;
};

const char *kms_version(void) { return KMSD_VERSION; }

/* Copy `in` into `out`, control characters blanked, so a hostile server
 * cannot drive a terminal through an error message or a debug line. */
static void copy_printable(char *out, size_t out_size, const char *in) {
  size_t j = 0;
  if (!out_size) return;
  for (; in && *in && j + 1 < out_size; in++) {
    unsigned char ch = (unsigned char)*in;
    out[j++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
  }
  out[j] = '\0';
}

/* Fill `e` (never NULL here) with a failure of this library; returns `kind`. */
__attribute__((format(printf, 4, 5))) static int set_error(kms_error *e, kms_error_kind kind, const char *code,
                                                           const char *fmt, ...) {
  va_list ap;
  memset(e, 0, sizeof *e);
  e->kind = kind;
  copy_printable(e->code, sizeof e->code, code);
  va_start(ap, fmt);
  vsnprintf(e->message, sizeof e->message, fmt, ap);
  va_end(ap);
  return kind;
}

__attribute__((format(printf, 2, 3))) static void debug_line(const kms_client *c, const char *fmt, ...) {
  char line[DEBUG_LINE_MAX];
  va_list ap;
  if (!c->debug) return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  c->debug(c->debug_ctx, line);
}

/* A region name as the SDKs accept it: letters, digits and inner hyphens.
 * It becomes part of a host name and of the signature's scope. */
static int region_is_valid(const char *r) {
  size_t i, n = strlen(r);
  if (n == 0 || n > REGION_NAME_MAX || r[0] == '-' || r[n - 1] == '-') return 0;
  for (i = 0; i < n; i++) {
    char ch = r[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-')) return 0;
  }
  return 1;
}

/* A timeout option as kms.h defines it, into aws_http's terms (0 = no limit). */
static int timeout_option(long value, long *out_ms) {
  if (value == KMS_TIMEOUT_NONE) {
    *out_ms = 0;
    return 1;
  }
  if (value < 0) return 0;
  *out_ms = value ? value : DEFAULT_TIMEOUT_MS;
  return 1;
}

static const char *config_problem_code(aws_config_problem p) {
  switch (p) {
    case AWS_CONFIG_PROFILE_NOT_FOUND: return "ProfileNotFound";
    case AWS_CONFIG_BAD_FILE: return "ConfigParseError";
    case AWS_CONFIG_PARTIAL_CREDENTIALS: return "PartialCredentialsError";
    case AWS_CONFIG_UNSUPPORTED_CREDENTIALS: return "UnsupportedCredentialsError";
    case AWS_CONFIG_BAD_VALUE: return "InvalidConfigError";
    case AWS_CONFIG_NO_PROBLEM: break;
  }
  return "InvalidConfigError";
}

/* The options' own checks, before any file is read. */
static int check_options(kms_service service, const kms_client_options *o, kms_error *e) {
  long unused;
  if (service != KMS_SERVICE_KMS && service != KMS_SERVICE_CLOUDHSMV2)
    return set_error(e, KMS_ERR_PARAM, "InvalidParameter", "kms_client_new: unknown service %d", (int)service);
  if (o->max_attempts < 0 || o->max_attempts > AWS_CONFIG_MAX_ATTEMPTS_LIMIT)
    return set_error(e, KMS_ERR_PARAM, "InvalidParameter",
                     "kms_client_new: max_attempts must be from 1 to %d (0: default)", AWS_CONFIG_MAX_ATTEMPTS_LIMIT);
  if (!timeout_option(o->connect_timeout_ms, &unused) || !timeout_option(o->read_timeout_ms, &unused))
    return set_error(e, KMS_ERR_PARAM, "InvalidParameter",
                     "kms_client_new: a timeout must be positive, 0 (default) or KMS_TIMEOUT_NONE");
  if (o->max_backoff_ms < 0)
    return set_error(e, KMS_ERR_PARAM, "InvalidParameter", "kms_client_new: max_backoff_ms must not be negative");
  return KMS_OK;
}

/* Resolve the endpoint: the configured URL, else the service's AWS URL for
 * the region.  Writes into c->cfg.endpoint_url. */
static int resolve_endpoint(kms_client *c, kms_error *e) {
  char url[160];
  if (c->cfg.endpoint_url) return KMS_OK;
  snprintf(url, sizeof url, "https://%s.%s.amazonaws.com", c->service == KMS_SERVICE_KMS ? "kms" : "cloudhsmv2",
           c->cfg.region);
  c->cfg.endpoint_url = strdup(url);
  if (!c->cfg.endpoint_url) return set_error(e, KMS_ERR_MEMORY, "MemoryError", "out of memory");
  return KMS_OK;
}

int kms_client_new(kms_service service, const kms_client_options *opts, kms_client **out, kms_error *err) {
  static const kms_client_options defaults;
  kms_error scratch;
  kms_error *e;
  aws_config_opts copts;
  aws_config_credentials given;
  aws_http_options hopts;
  kms_client *c = NULL;
  kerr kerror;
  kerr_code krc;
  int rc = KMS_OK;

  /* With err NULL, failures are written to a scratch error and dropped. */
  memset(&scratch, 0, sizeof scratch);
  e = err ? err : &scratch;
  if (!out) return set_error(e, KMS_ERR_PARAM, "InvalidParameter", "kms_client_new: out is NULL");
  *out = NULL;
  if (!opts) opts = &defaults;
  rc = check_options(service, opts, e);
  if (rc) return rc;

  c = calloc(1, sizeof *c);
  if (!c) return set_error(e, KMS_ERR_MEMORY, "MemoryError", "out of memory");
  c->service = service;
  c->target_prefix = service == KMS_SERVICE_KMS ? "TrentService" : "BaldrApiService";
  c->debug = opts->debug;
  c->debug_ctx = opts->debug_ctx;
  retry_quota_init(&c->quota);

  memset(&copts, 0, sizeof copts);
  copts.profile = opts->profile;
  copts.region = opts->region;
  copts.endpoint_url = opts->endpoint_url;
  copts.ca_bundle = opts->ca_bundle;
  memset(&given, 0, sizeof given);
  given.access_key_id = opts->access_key_id;
  given.secret_access_key = opts->secret_access_key;
  given.session_token = opts->session_token;
  kerr_clear(&kerror);
  krc = aws_config_load_with(&copts, &given, &c->cfg, &kerror);
  if (krc) {
    rc = krc == KERR_INTERNAL ? set_error(e, KMS_ERR_MEMORY, "MemoryError", "%s", kerror.msg)
                              : set_error(e, KMS_ERR_CONFIG, config_problem_code(c->cfg.problem), "%s", kerror.msg);
    goto out;
  }
  if (!c->cfg.region) {
    rc = set_error(e, KMS_ERR_CONFIG, "NoRegionError",
                   "You must specify a region: the region option, AWS_REGION, or the profile's region");
    goto out;
  }
  if (!region_is_valid(c->cfg.region)) {
    char shown[REGION_NAME_MAX + 2];
    copy_printable(shown, sizeof shown, c->cfg.region);
    rc = set_error(e, KMS_ERR_CONFIG, "InvalidRegionError",
                   "Provided region_name '%s' doesn't match a supported format", shown);
    goto out;
  }
  if (!opts->no_sign_request && (!c->cfg.access_key_id || !c->cfg.secret_access_key)) {
    rc = set_error(e, KMS_ERR_CONFIG, "NoCredentialsError",
                   "Unable to locate credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or a profile's "
                   "aws_access_key_id and aws_secret_access_key");
    goto out;
  }
  rc = resolve_endpoint(c, e);
  if (rc) goto out;

  c->max_attempts = opts->max_attempts ? opts->max_attempts : c->cfg.max_attempts ? c->cfg.max_attempts : 3;
  c->max_backoff_ms = opts->max_backoff_ms ? opts->max_backoff_ms : RETRY_MAX_BACKOFF_MS_DEFAULT;
  memset(&hopts, 0, sizeof hopts);
  (void)timeout_option(opts->connect_timeout_ms, &hopts.connect_timeout_ms);
  (void)timeout_option(opts->read_timeout_ms, &hopts.read_timeout_ms);
  hopts.reply_max = KMS_REPLY_MAX;
  hopts.no_verify_ssl = opts->no_verify_ssl;
  hopts.no_sign = opts->no_sign_request;
  hopts.user_agent = "libkms/" KMSD_VERSION;
  kerr_clear(&kerror);
  krc = aws_http_client_new_with(&c->cfg, service == KMS_SERVICE_KMS ? "kms" : "cloudhsm", &hopts, &c->http, &kerror);
  if (krc) {
    rc = krc == KERR_INTERNAL ? set_error(e, KMS_ERR_INTERNAL, "HTTPClientError", "%s", kerror.msg)
                              : set_error(e, KMS_ERR_CONFIG, "InvalidEndpointError", "%s", kerror.msg);
    goto out;
  }
  debug_line(c, "libkms: client for %s at %s, region %s, credentials from %s, up to %d attempts", c->target_prefix,
             c->cfg.endpoint_url, c->cfg.region,
             opts->no_sign_request ? "nowhere (unsigned requests)" : aws_cred_source_name(c->cfg.source),
             c->max_attempts);
out:
  if (rc) {
    kms_client_free(c);
    c = NULL;
  }
  *out = c;
  return rc;
}

void kms_client_free(kms_client *c) {
  if (!c) return;
  aws_http_client_free(c->http);
  aws_config_free(&c->cfg);
  free(c);
}

kms_service kms_client_service(const kms_client *c) { return c->service; }

const char *kms_client_region(const kms_client *c) { return c ? c->cfg.region : NULL; }

const char *kms_client_endpoint(const kms_client *c) { return c ? c->cfg.endpoint_url : NULL; }

void kms_reply_free(char *reply, size_t reply_len) { secure_free(reply, reply_len + 1); }

/* An operation name is a model name: letters and digits only.  It goes into
 * a header, so nothing else may pass. */
static int operation_is_valid(const char *op) {
  size_t n = 0;
  for (; op[n]; n++) {
    char ch = op[n];
    if (n >= OPERATION_NAME_MAX) return 0;
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))) return 0;
  }
  return n > 0;
}

/* A success body must be empty or a JSON object: a proxy's HTML page with
 * status 200 is not an answer of the service.  The check is shallow on
 * purpose: the body may hold plaintext, and decoding it is the caller's
 * business (a decoder leaves copies in memory it does not wipe). */
static int body_looks_like_object(const char *body, size_t len) {
  size_t start = 0, end = len;
  while (start < end && (body[start] == ' ' || body[start] == '\t' || body[start] == '\r' || body[start] == '\n'))
    start++;
  while (end > start && (body[end - 1] == ' ' || body[end - 1] == '\t' || body[end - 1] == '\r' ||
                         body[end - 1] == '\n'))
    end--;
  if (start == end) return 1;
  return body[start] == '{' && body[end - 1] == '}' && memchr(body, '\0', len) == NULL;
}

/* One attempt's outcome, as the retry loop needs it. */
typedef struct attempt_result {
  int ok;            /* a success reply is in hand */
  retry_class cls;   /* when !ok: how the failure may be retried */
} attempt_result;

static attempt_result judge_transport(const aws_http_reply *r, const char *msg, kms_error *e) {
  attempt_result a = {0, RETRY_NEVER};
  switch (r->failure) {
    case AWS_HTTP_FAIL_CONNECT:
      set_error(e, KMS_ERR_CONNECTION, "EndpointConnectionError", "%s", msg);
      a.cls = RETRY_TRANSIENT;
      break;
    case AWS_HTTP_FAIL_CLOSED:
      set_error(e, KMS_ERR_CONNECTION, "ConnectionClosedError", "%s", msg);
      a.cls = RETRY_TRANSIENT;
      break;
    case AWS_HTTP_FAIL_CERTIFICATE:
      /* The same certificate will be refused again: no retry. */
      set_error(e, KMS_ERR_CONNECTION, "SSLError", "%s", msg);
      break;
    case AWS_HTTP_FAIL_CONNECT_TIMEOUT:
      set_error(e, KMS_ERR_TIMEOUT, "ConnectTimeoutError", "%s", msg);
      a.cls = RETRY_TIMEOUT;
      break;
    case AWS_HTTP_FAIL_READ_TIMEOUT:
      set_error(e, KMS_ERR_TIMEOUT, "ReadTimeoutError", "%s", msg);
      a.cls = RETRY_TIMEOUT;
      break;
    case AWS_HTTP_FAIL_TOO_LARGE:
      set_error(e, KMS_ERR_RESPONSE, "ResponseTooLarge", "%s", msg);
      break;
    case AWS_HTTP_FAIL_MEMORY:
      set_error(e, KMS_ERR_MEMORY, "MemoryError", "%s", msg);
      break;
    case AWS_HTTP_FAIL_OTHER:
    case AWS_HTTP_NO_FAILURE:
      set_error(e, KMS_ERR_INTERNAL, "HTTPClientError", "%s", msg);
      break;
  }
  e->http_status = 0;
  copy_printable(e->request_id, sizeof e->request_id, r->request_id);
  return a;
}

static attempt_result judge_reply(const aws_http_reply *r, kms_error *e) {
  attempt_result a = {0, RETRY_NEVER};
  if (r->status >= 200 && r->status < 300) {
    if (!body_looks_like_object(r->body, r->body_len)) {
      set_error(e, KMS_ERR_RESPONSE, "InvalidResponse",
                "the reply (HTTP %ld, %zu bytes) is not a JSON object", r->status, r->body_len);
      e->http_status = (int)r->status;
      copy_printable(e->request_id, sizeof e->request_id, r->request_id);
      return a;
    }
    a.ok = 1;
    return a;
  }
  if (r->error_message[0])
    set_error(e, KMS_ERR_SERVICE, r->error_type, "%s", r->error_message);
  else
    set_error(e, KMS_ERR_SERVICE, r->error_type, "%s (HTTP %ld)", r->error_type, r->status);
  e->http_status = (int)r->status;
  copy_printable(e->request_id, sizeof e->request_id, r->request_id);
  a.cls = retry_classify_reply(r->status, r->error_type);
  return a;
}

static void sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int kms_call_json(kms_client *c, const char *operation, const char *json, size_t len, char **reply,
                  size_t *reply_len, kms_error *err) {
  kms_error scratch, attempt_err;
  kms_error *e;
  char target[OPERATION_NAME_MAX + 32];
  aws_http_reply r;
  int attempt, last_cost = 0;

  /* With err NULL, failures are written to a scratch error and dropped. */
  memset(&scratch, 0, sizeof scratch);
  e = err ? err : &scratch;
  memset(&r, 0, sizeof r);
  if (reply) *reply = NULL;
  if (reply_len) *reply_len = 0;
  if (!c || !operation || !reply || !reply_len || (!json && len))
    return set_error(e, KMS_ERR_PARAM, "InvalidParameter", "kms_call_json: a required argument is NULL");
  if (!operation_is_valid(operation))
    return set_error(e, KMS_ERR_PARAM, "InvalidParameter",
                     "kms_call_json: the operation name must be 1 to %d letters and digits", OPERATION_NAME_MAX);
  if (!json) {
    json = "{}";
    len = 2;
  }
  snprintf(target, sizeof target, "%s.%s", c->target_prefix, operation);

  /* Each attempt's error is kept here and copied out only when the call
   * fails: a success after retries leaves *err as the caller had it. */
  memset(&attempt_err, 0, sizeof attempt_err);
  for (attempt = 1;; attempt++) {
    attempt_result a;
    kerr kerror;
    int64_t started = now_ms();
    int cost;
    long delay;

    debug_line(c, "libkms: POST %s %s (attempt %d of %d, %zu-byte body)", c->cfg.endpoint_url, target, attempt,
               c->max_attempts, len);
    kerr_clear(&kerror);
    if (aws_http_call(c->http, target, json, len, &r, &kerror) != KERR_OK) {
      a = judge_transport(&r, kerror.msg, &attempt_err);
      debug_line(c, "libkms: %s: no reply after %lld ms: %s", target, (long long)(now_ms() - started),
                 attempt_err.code);
    } else {
      char request_id[sizeof r.request_id];
      a = judge_reply(&r, &attempt_err);
      copy_printable(request_id, sizeof request_id, r.request_id);
      debug_line(c, "libkms: %s: HTTP %ld in %lld ms, %zu-byte reply, request id %s%s%s", target, r.status,
                 (long long)(now_ms() - started), r.body_len, request_id[0] ? request_id : "(none)",
                 a.ok ? "" : ", error ", a.ok ? "" : attempt_err.code);
    }
    if (a.ok) {
      retry_quota_success(&c->quota, last_cost);
      *reply = r.body;
      *reply_len = r.body_len;
      r.body = NULL;
      aws_http_reply_free(&r);
      return KMS_OK;
    }
    aws_http_reply_free(&r);
    attempt_err.retryable = a.cls != RETRY_NEVER;
    attempt_err.attempts = attempt;
    if (a.cls == RETRY_NEVER) break;
    if (attempt >= c->max_attempts) {
      debug_line(c, "libkms: %s: giving up after %d attempts", target, attempt);
      break;
    }
    cost = retry_quota_take(&c->quota, a.cls);
    if (!cost) {
      debug_line(c, "libkms: %s: not retrying: retry quota exhausted (%d tokens left)", target, c->quota.tokens);
      break;
    }
    last_cost = cost;
    delay = retry_backoff_ms(attempt, c->max_backoff_ms, retry_jitter());
    debug_line(c, "libkms: %s: retrying in %ld ms after %s (retry quota %d)", target, delay, attempt_err.code,
               c->quota.tokens);
    sleep_ms(delay);
  }
  *e = attempt_err;
  return e->kind;
}
