/* api_pipeline.c - kmsd's single request path, from an HTTP request to an
 * AWS JSON 1.1 reply.
 *
 * Everything a request must pass before a handler sees it lives here, in one
 * straight line (see api_pipeline.h for the order), so that no operation can
 * skip authentication or validation and every reply has the same shape,
 * request id and log line.
 *
 * A request served on one of the HTTP server's event threads must not wait
 * on an external key store's proxy there: its domain call says
 * must_not_wait, and when the domain answers KERR_WOULD_BLOCK (before it
 * changed anything) the pipeline asks the server for a rerun instead of
 * answering.  The rerun goes through every step again - SigV4,
 * authorization, validation - on a waiting thread, with the same request
 * id, the same start time (the log line's latency is the whole request's)
 * and the same SigV4 clock reading as the first pass, so that it is
 * judged exactly as if it had run at once (a request signed near the edge
 * of the skew window is not refused for having waited in the queue).
 * Those three travel in http_response.rerun_state; only the pass that
 * answers writes the log line. */
#include "api/api_pipeline.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/api_json.h"
#include "api/api_validate.h"
#include "aws/sigv4.h"
#include "core/ids.h"
#include "core/kclock.h"
#include "core/log.h"
#include "core/secmem.h"
#include "core/version.h"
#include "model/model.h"

#define JSON_CONTENT_TYPE "application/x-amz-json-1.1"
#define OPERATION_NAME_MAX 64

struct api_pipeline {
  api_pipeline_config cfg;
};

/* What one request did, for its log line. */
typedef struct request_outcome {
  char request_id[UUID_STR_LEN];
  int64_t started_us;            /* monotonic, when the request was first seen */
  int64_t now_s;                 /* the service clock SigV4 is checked against */
  const char *principal_arn;     /* "-" until SigV4 passes */
  char operation[API_TARGET_MAX + 1];
  kerr err;                      /* code KERR_OK on success */
  int status;
  aws_wait wait;                 /* what the domain waited on (aws_call.wait) */
} request_outcome;

kerr_code api_pipeline_new(const api_pipeline_config *cfg, api_pipeline **out, kerr *err) {
  *out = NULL;
  if (!cfg || !cfg->creds || !cfg->find_handler)
    return kerr_set(err, KERR_INTERNAL, "pipeline needs a credentials store and a handler lookup");
  /* Second line of defence behind kmsd's flag check: a store that accepts
   * any caller must never face a network. */
  if (creds_is_any(cfg->creds) && !cfg->loopback_only)
    return kerr_set(err, KERR_VALIDATION,
                    "--insecure-any-credentials is only allowed on a loopback address");
  api_pipeline *p = calloc(1, sizeof *p);
  if (!p) return kerr_set(err, KERR_INTERNAL, "out of memory");
  p->cfg = *cfg;
  *out = p;
  return KERR_OK;
}

void api_pipeline_free(api_pipeline *p) { free(p); }

/* Reply bodies may carry plaintexts (Decrypt, GenerateDataKey): wipe them
 * before the memory goes back to the allocator jansson used. */
static void wipe_json_text(void *body, size_t len) {
  json_malloc_t m;
  json_free_t f;
  if (!body) return;
  secure_wipe(body, len);
  json_get_alloc_funcs(&m, &f);
  f(body);
}

static int64_t monotonic_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Serialize `obj` (a JSON object) as the reply body.  0 on success. */
static int set_json_body(http_response *resp, const json_t *obj) {
  size_t len;
  char *text = api_json_dump(obj, &len);
  if (!text) return -1;
  resp->body = text;
  resp->body_len = len;
  resp->body_free = wipe_json_text;
  return 0;
}

static void set_error(http_response *resp, request_outcome *o, int status_override) {
  json_t *obj = json_object();
  const char *name = kerr_name(o->err.code);
  resp->status = status_override ? status_override : kerr_http_status(o->err.code);
  o->status = resp->status;
  if (obj) {
    json_object_set_new(obj, "__type", json_string(name));
    /* A message that is not valid UTF-8 cannot go into JSON; say so instead. */
    json_t *msg = json_string(o->err.msg);
    json_object_set_new(obj, "message", msg ? msg : json_string("(message not representable)"));
  }
  if (!obj || set_json_body(resp, obj) != 0) {
    resp->status = 500;
    o->status = 500;
  }
  json_decref(obj);
  http_response_header(resp, "Content-Type", JSON_CONTENT_TYPE);
}

/* Content-Type of a JSON 1.1 request: the AWS type, or plain JSON, with any
 * parameters (charset) after a ';'. */
static int content_type_ok(const char *ct) {
  static const char *accepted[] = {JSON_CONTENT_TYPE, "application/json"};
  if (!ct) return 0;
  while (*ct == ' ' || *ct == '\t') ct++;
  size_t len = strcspn(ct, "; \t");
  for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++)
    if (len == strlen(accepted[i]) && strncasecmp(ct, accepted[i], len) == 0) return 1;
  return 0;
}

/* An operation name as the model spells them: letters and digits only. */
static int operation_name_ok(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > OPERATION_NAME_MAX) return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)name[i])) return 0;
  return 1;
}

/* Parse the body; an empty body is the empty object.  Only objects pass. */
static kerr_code parse_body(const http_request *req, json_t **out, kerr *err) {
  json_error_t jerr;
  *out = NULL;
  if (!req->body || req->body_len == 0) {
    *out = json_object();
    return *out ? KERR_OK : kerr_set(err, KERR_INTERNAL, "out of memory");
  }
  json_t *v = json_loadb((const char *)req->body, req->body_len, API_JSON_DECODE_FLAGS, &jerr);
  if (!v)
    /* jansson's own text can quote a piece of the body, which may be a
     * secret: report only where the problem is. */
    return kerr_set(err, KERR_SERIALIZATION, "Malformed JSON request body at line %d, column %d",
                    jerr.line, jerr.column);
  if (!json_is_object(v)) {
    json_decref(v);
    return kerr_set(err, KERR_SERIALIZATION, "The request body must be a JSON object");
  }
  *out = v;
  return KERR_OK;
}

static void log_outcome(const request_outcome *o, const http_request *req) {
  int64_t latency = monotonic_us() - o->started_us;
  log_level level = o->status >= 500 ? LOG_ERROR : LOG_INFO;
  log_msg(level, o->request_id, "%s principal=%s op=%s outcome=%s status=%d latency_us=%lld peer=%s",
          req->method ? req->method : "-", o->principal_arn, o->operation[0] ? o->operation : "-",
          o->err.code == KERR_OK ? "OK" : kerr_name(o->err.code), o->status, (long long)latency,
          req->peer ? req->peer : "-");
  if (o->err.code != KERR_OK) log_msg(LOG_DEBUG, o->request_id, "error detail: %s", o->err.msg);
}

/* What a handler's KERR_WOULD_BLOCK becomes.  On a first pass it stays
 * (the caller asks for a rerun).  When the server had no room for the
 * rerun, or is stopping, it is the answer: ThrottlingException, as AWS KMS
 * answers a caller past a request quota (custom key stores' included) -
 * a client error every AWS SDK retries with backoff, since the request did
 * nothing - or KMSInternalException (500, also retried) while stopping.  A
 * handler that would block where it may wait is a fault. */
static kerr_code would_block(const http_request *req, const char *request_id, kerr *err) {
  if (req->wait_refused == HTTP_WAIT_QUEUE_FULL)
    return kerr_set(err, KERR_THROTTLING,
                    "Rate exceeded: too many requests are waiting on external key store proxies. "
                    "Retry the request.");
  if (req->wait_refused)
    return kerr_set(err, KERR_INTERNAL,
                    "kmsd is shutting down; the request was not run. Retry the request.");
  if (req->may_wait) {
    log_msg(LOG_ERROR, request_id, "a handler would block on a thread that may wait");
    return kerr_set(err, KERR_INTERNAL, "An internal error occurred");
  }
  return KERR_WOULD_BLOCK;
}

/* The first pass's request id, start and SigV4 clock, for its rerun. */
static void save_rerun_state(const request_outcome *o, http_response *resp) {
  snprintf(resp->rerun_state, sizeof resp->rerun_state, "%s %lld %lld", o->request_id,
           (long long)o->started_us, (long long)o->now_s);
}

/* The inverse; 0 on success.  The text is the server's copy of what
 * save_rerun_state wrote, never the client's, but it is checked anyway. */
static int load_rerun_state(const char *text, request_outcome *o) {
  const char *at = text;
  long long v[2];
  char *end = NULL;
  if (strlen(text) < UUID_STR_LEN || text[UUID_STR_LEN - 1] != ' ') return -1;
  at += UUID_STR_LEN;
  for (int i = 0; i < 2; i++) {
    errno = 0;
    v[i] = strtoll(at, &end, 10);
    if (errno || end == at || *end != (i == 0 ? ' ' : '\0')) return -1;
    at = end + 1;
  }
  memcpy(o->request_id, text, UUID_STR_LEN - 1);
  o->request_id[UUID_STR_LEN - 1] = '\0';
  o->started_us = v[0];
  o->now_s = v[1];
  return 0;
}

/* The authenticated part of POST /: everything after the path and method
 * are known to be right.  Fills resp on success; on failure returns the code
 * with o->err filled and leaves the error reply to the caller. */
static kerr_code serve_call(api_pipeline *p, const http_request *req, http_response *resp,
                            request_outcome *o) {
  kerr *err = &o->err;
  kerr_code rc;
  json_t *in = NULL, *out = NULL;
  sigv4_result auth;
  memset(&auth, 0, sizeof auth);

  /* Known before authentication, for the log line only. */
  const char *target = http_request_header(req, "X-Amz-Target");
  if (target) snprintf(o->operation, sizeof o->operation, "%.*s", API_TARGET_MAX, target);

  if (req->body_too_large) {
    rc = kerr_set(err, KERR_REQUEST_TOO_LARGE, "Request body is larger than the server accepts");
    goto out;
  }

  sigv4_request sreq = {
      .method = req->method,
      .path = req->path,
      .query = req->query,
      .headers = req->headers,
      .nheaders = req->nheaders,
      .body = req->body,
      .body_len = req->body_len,
  };
  /* CloudHSM targets are signed for "cloudhsm", everything else for "kms";
   * the target only picks the service name, the signature still covers it. */
  const char *service = "kms";
  if (target && (strncmp(target, API_CLOUDHSM_TARGET_PREFIX ".",
                         strlen(API_CLOUDHSM_TARGET_PREFIX) + 1) == 0 ||
                 strncmp(target, API_HSM_ADMIN_TARGET_PREFIX ".",
                         strlen(API_HSM_ADMIN_TARGET_PREFIX) + 1) == 0))
    service = "cloudhsm";
  rc = sigv4_verify(p->cfg.creds, &sreq, service, o->now_s, &auth, err);
  if (rc) goto out;
  if (!auth.cred) {
    rc = kerr_set(err, KERR_INTERNAL, "authentication produced no caller");
    goto out;
  }
  o->principal_arn = auth.cred->who.arn;

  /* Operation lookup. */
  if (!target || !*target) {
    rc = kerr_set(err, KERR_UNKNOWN_OPERATION, "Missing X-Amz-Target header");
    goto out;
  }
  if (strlen(target) > API_TARGET_MAX) {
    rc = kerr_set(err, KERR_UNKNOWN_OPERATION, "X-Amz-Target is too long");
    goto out;
  }
  snprintf(o->operation, sizeof o->operation, "%s", target);
  const char *dot = strchr(target, '.');
  const char *op_name = dot ? dot + 1 : "";
  size_t prefix_len = dot ? (size_t)(dot - target) : strlen(target);
  int is_kms = prefix_len == strlen(API_KMS_TARGET_PREFIX) &&
               strncmp(target, API_KMS_TARGET_PREFIX, prefix_len) == 0;
  int is_admin = p->cfg.enable_admin_api && prefix_len == strlen(API_ADMIN_TARGET_PREFIX) &&
                 strncmp(target, API_ADMIN_TARGET_PREFIX, prefix_len) == 0;
  int is_cloudhsm = prefix_len == strlen(API_CLOUDHSM_TARGET_PREFIX) &&
                    strncmp(target, API_CLOUDHSM_TARGET_PREFIX, prefix_len) == 0;
  int is_hsm_admin = prefix_len == strlen(API_HSM_ADMIN_TARGET_PREFIX) &&
                     strncmp(target, API_HSM_ADMIN_TARGET_PREFIX, prefix_len) == 0;
  if ((!is_kms && !is_admin && !is_cloudhsm && !is_hsm_admin) || !operation_name_ok(op_name)) {
    rc = kerr_set(err, KERR_UNKNOWN_OPERATION, "Unknown operation %s", o->operation);
    goto out;
  }
  const model_op *mop = NULL;
  api_handler_fn handler = NULL;
  if (is_kms) {
    snprintf(o->operation, sizeof o->operation, "%s", op_name);
    mop = model_find_op(&model_kms, op_name);
    if (!mop) {
      rc = kerr_set(err, KERR_UNKNOWN_OPERATION, "Unknown operation %s", target);
      goto out;
    }
    /* cppcheck-suppress AssignmentIntegerToAddress ; a function returning a function pointer */
    handler = p->cfg.find_handler(op_name);
    if (!handler) {
      rc = kerr_set(err, KERR_UNSUPPORTED_OPERATION, "kmsd does not support %s yet", op_name);
      goto out;
    }
  }

  if (is_cloudhsm) {
    snprintf(o->operation, sizeof o->operation, "%s", op_name);
    mop = model_find_op(&model_cloudhsmv2, op_name);
    if (!mop) {
      rc = kerr_set(err, KERR_UNKNOWN_OPERATION, "Unknown operation %s", target);
      goto out;
    }
    handler = api_cloudhsm_handler_find(op_name);
    if (!handler) {
      rc = kerr_set(err, KERR_HSM_INVALID_REQUEST, "kmsd does not support %s", op_name);
      goto out;
    }
  }

  if (!content_type_ok(http_request_header(req, "Content-Type"))) {
    rc = kerr_set(err, KERR_SERIALIZATION,
                  "Content-Type must be " JSON_CONTENT_TYPE " (or application/json)");
    goto out;
  }
  rc = parse_body(req, &in, err);
  if (rc) goto out;

  api_request areq = {
      .domain = p->cfg.domain,
      .caller = &auth.cred->who,
      .request_id = o->request_id,
      .operation = op_name,
      .region = auth.region,
      /* An event thread's request must not wait on a proxy; nor may the
       * pass that answers a rerun the server could not take. */
      .must_not_wait = !req->may_wait,
      .wait = &o->wait,
  };
  if (is_admin) {
    rc = api_admin_handle(&areq, op_name, in, &out, err);
    if (rc) goto out;
  } else if (is_hsm_admin) {
    rc = api_hsm_admin_handle(&areq, op_name, in, &out, err);
    if (rc) goto cloudhsm_error;
  } else {
    rc = api_validate_input(mop, in, err);
    if (rc) goto out;
    rc = handler(&areq, in, &out, err);
    if (rc == KERR_WOULD_BLOCK) rc = would_block(req, o->request_id, err);
    if (rc) {
      /* A handler that fails without saying why must still say something. */
      if (!err->msg[0]) kerr_set(err, rc, "%s failed", op_name);
      err->code = rc;
      if (is_cloudhsm) goto cloudhsm_error;
      goto out;
    }
  }
  if (!out) out = json_object();
  if (!out || !json_is_object(out)) {
    rc = kerr_set(err, KERR_INTERNAL, "An internal error occurred");
    log_msg(LOG_ERROR, o->request_id, "handler for %s returned no JSON object", o->operation);
    goto out;
  }
  if (set_json_body(resp, out) != 0) {
    rc = kerr_set(err, KERR_INTERNAL, "An internal error occurred");
    goto out;
  }
  resp->status = 200;
  o->status = 200;
  http_response_header(resp, "Content-Type", JSON_CONTENT_TYPE);
  /* A handler may succeed after an inner step failed and was retried; the
   * log line's outcome must say OK, not that step's error. */
  kerr_clear(err);
  rc = KERR_OK;
  goto out;
cloudhsm_error:
  /* CloudHSM callers speak CloudHSMv2's error names: a fault inside kmsd is
   * CloudHsmInternalFailureException there, a denial
   * CloudHsmAccessDeniedException, never KMS's names. */
  if (rc == KERR_INTERNAL) err->code = rc = KERR_HSM_INTERNAL_FAILURE;
  if (rc == KERR_ACCESS_DENIED) err->code = rc = KERR_HSM_ACCESS_DENIED;
out:
  json_decref(in);
  json_decref(out);
  return rc;
}

void api_pipeline_handle(void *ctx, const http_request *req, http_response *resp) {
  api_pipeline *p = ctx;
  request_outcome o;
  memset(&o, 0, sizeof o);
  o.principal_arn = "-";
  kerr_clear(&o.err);

  /* A second pass of one request keeps the first one's id, start and
   * SigV4 clock. */
  if (!req->rerun_state || load_rerun_state(req->rerun_state, &o) != 0) {
    if (req->rerun_state) log_msg(LOG_WARN, NULL, "a rerun came without its first pass's state");
    o.started_us = monotonic_us();
    o.now_s = kclock_now_s();
    if (request_id_new(o.request_id) != 0)
      snprintf(o.request_id, sizeof o.request_id, "%s", "00000000-0000-4000-8000-000000000000");
  }
  http_response_header(resp, "x-amzn-RequestId", o.request_id);

  const char *method = req->method ? req->method : "";
  const char *path = req->path ? req->path : "";

  /* Refused by the HTTP layer before the body was read (see
   * http_request.refusal_status): the same error shape, request id and log
   * line as any other refusal. */
  if (req->refusal_status) {
    kerr_set(&o.err, req->refusal_status == 414 ? KERR_VALIDATION : KERR_SERIALIZATION, "%s",
             req->refusal_reason ? req->refusal_reason : "Malformed HTTP request");
    set_error(resp, &o, req->refusal_status);
    log_outcome(&o, req);
    return;
  }

  if (strcmp(path, "/health") == 0 && (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)) {
    /* The caches' counts tell an operator (and the tests) that they serve:
     * key cache hits that stay at 0 under load mean every request reads the
     * store (docs/storage.md, "The change stamp"); HSM key cache hits that
     * stay at 0, that every request searches the HSM (docs/pkcs11.md). */
    uint64_t hits = 0, misses = 0;
    json_t *cache = p->cfg.domain && kms_domain_key_cache_counts(p->cfg.domain, &hits, &misses)
                        ? json_pack("{s:I, s:I}", "hits", (json_int_t)hits, "misses",
                                    (json_int_t)misses)
                        : json_null();
    json_t *hsm_cache =
        p->cfg.domain && kms_domain_hsm_key_cache_counts(p->cfg.domain, &hits, &misses)
            ? json_pack("{s:I, s:I}", "hits", (json_int_t)hits, "misses", (json_int_t)misses)
            : json_null();
    /* A node whose database stopped answering says so, with 503, so that a
     * load balancer sends requests to the others until it answers again. */
    bool reachable = !p->cfg.domain || kms_domain_store_reachable(p->cfg.domain);
    /* The leases this node holds: with several nodes on one database, the
     * one that lists "background-work" runs the sweeps, connects and
     * recoveries (docs/multi-node.md). */
    json_t *store =
        p->cfg.domain
            ? json_pack("{s:s, s:b, s:[s*]}", "backend", kms_domain_store_name(p->cfg.domain),
                        "reachable", reachable, "leases",
                        kms_domain_lease_held(p->cfg.domain) ? "background-work" : NULL)
            : json_null();
    /* How many CONNECTED custom key stores this node cannot reach (its own
     * connection failed to open): the others may serve them, so the node
     * stays 200.  A count only, since anyone may ask; the log names them. */
    size_t ngone = p->cfg.domain ? kms_domain_unreachable_key_stores(p->cfg.domain) : 0;
    json_t *obj = json_pack("{s:s, s:s, s:o, s:o, s:o, s:{s:I}}", "status",
                            reachable ? "ok" : "store unreachable", "version", KMSD_VERSION,
                            "store", store, "keyCache", cache, "hsmKeyCache", hsm_cache,
                            "customKeyStores", "unreachable", (json_int_t)ngone);
    if (obj && set_json_body(resp, obj) == 0) {
      resp->status = reachable ? 200 : 503;
      http_response_header(resp, "Content-Type", "application/json");
    } else {
      resp->status = 500;
    }
    json_decref(obj);
    /* Health probes are frequent and carry no caller: debug level only. */
    log_msg(LOG_DEBUG, o.request_id, "%s /health status=%d", method, resp->status);
    return;
  }

  if (strcmp(path, "/") != 0) {
    kerr_set(&o.err, KERR_UNKNOWN_OPERATION, "No such resource; KMS requests are POST /");
    set_error(resp, &o, 404);
  } else if (strcmp(method, "POST") != 0) {
    kerr_set(&o.err, KERR_UNKNOWN_OPERATION, "Method %.16s is not allowed; KMS requests are POST /",
             method);
    set_error(resp, &o, 405);
    http_response_header(resp, "Allow", "POST");
  } else {
    kerr_code rc = serve_call(p, req, resp, &o);
    snprintf(resp->wait_on, sizeof resp->wait_on, "%s", o.wait.on);
    if (rc == KERR_WOULD_BLOCK) {
      /* Not answered here: the server runs the request again where it may
       * wait, and that pass writes the reply and the log line. */
      resp->rerun = 1;
      save_rerun_state(&o, resp);
      return;
    }
    if (rc != KERR_OK) set_error(resp, &o, 0);
    resp->waited = o.wait.waited;
  }
  log_outcome(&o, req);
}
