/* xksp_server.c - the XKS front end: routing, SigV4, quotas, authorization,
 * dispatch to the backend, the error shape and the per-request log line.
 *
 * The order of the checks is the contract in xksp_server.h.  Everything here
 * is per request and lock-free except the quota bucket; the backend does the
 * slow part (the HSM).  Plaintexts only ever pass through secure buffers,
 * and the log line carries metadata only. */
#include "xksproxy/xksp_server.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/credentials.h"
#include "aws/sigv4.h"
#include "core/kclock.h"
#include "core/log.h"
#include "core/secmem.h"
#include "core/version.h"
#include "xks/xks_msg.h"
#include "xksproxy/xksp_authz.h"
#include "xksproxy/xksp_quota.h"

#define XKS_SIGV4_SERVICE "kms-xks-proxy"
#define LOG_FIELD_MAX 160   /* longest metadata value quoted in a log line */
#define STOP_GRACE_DEFAULT_MS 10000

/* A key store's credentials, counted: the store holds one reference and
 * every request verifying against them holds one, so a reload can swap them
 * at any moment and the old set (and its secrets) is freed, wiped, as soon
 * as the last request using it is done. */
typedef struct creds_ref {
  creds_store *creds;
  unsigned refs;       /* under the store's creds_mu */
} creds_ref;

typedef struct xksp_store {
  const xksp_store_config *cfg;
  pthread_mutex_t creds_mu;
  creds_ref *creds;
  xksp_quota quota;
  void *backend;       /* the backend's handle for this store */
} xksp_store;

struct xksp_proxy {
  const xksp_config *cfg;
  const xksp_backend *backend;
  xksp_store *stores;
  size_t store_count;
  http_server *server;
  char proxy_model[64];
};

static creds_ref *creds_hold(xksp_store *st) {
  creds_ref *r;
  pthread_mutex_lock(&st->creds_mu);
  r = st->creds;
  r->refs++;
  pthread_mutex_unlock(&st->creds_mu);
  return r;
}

/* Drop one reference; the last frees the set (creds_free wipes secrets).
 * SigV4's signing-key cache keeps secure copies of the secrets it derived
 * keys from: it is emptied too, so a rotated-out secret does not outlive
 * its set there (the current ones cost one key derivation again). */
static void creds_drop(xksp_store *st, creds_ref *r) {
  unsigned left;
  if (!r) return;
  pthread_mutex_lock(&st->creds_mu);
  left = --r->refs;
  pthread_mutex_unlock(&st->creds_mu);
  if (left == 0) {
    creds_free(r->creds);
    free(r);
    sigv4_cache_clear();
  }
}

/* What one request did, for its log line. */
typedef struct req_log {
  const char *store;
  const char *op;
  const char *key_id;
  char request_id[LOG_FIELD_MAX];
  char kms_operation[LOG_FIELD_MAX];
  char principal[LOG_FIELD_MAX];
  char access_key_id[ACCESS_KEY_ID_MAX + 1]; /* the credential used: shows when a rotation is complete */
  const char *outcome;   /* "ok" or the errorName */
  char detail[200];      /* why, for errors (never a secret) */
} req_log;

static const char *op_name(xks_op op) {
  switch (op) {
  case XKS_OP_METADATA: return "GetKeyMetadata";
  case XKS_OP_ENCRYPT: return "Encrypt";
  case XKS_OP_DECRYPT: return "Decrypt";
  case XKS_OP_HEALTH: return "GetHealthStatus";
  default: return "-";
  }
}

/* Copy an outside string for a log line: printable ASCII only (anything else
 * becomes '?', so no line can be forged), cut with "..." when long. */
static void log_copy(char *dst, size_t cap, const char *src) {
  size_t i, n;
  if (!src || !*src) {
    snprintf(dst, cap, "-");
    return;
  }
  n = strlen(src);
  for (i = 0; i < n && i + 1 < cap; i++) dst[i] = (src[i] >= 0x21 && src[i] <= 0x7e) ? src[i] : '?';
  dst[i] = '\0';
  if (i < n && cap > 4) memcpy(dst + cap - 4, "...", 4);
}

static void set_json_body(http_response *resp, kbytes *body) {
  resp->body = (char *)body->data;
  resp->body_len = body->len;
  resp->body_free = secure_free;
  body->data = NULL;
  body->len = 0;
  http_response_header(resp, "Content-Type", "application/json");
}

/* Answer with the XKS error shape.  `msg` must not carry a secret. */
static void reply_error(http_response *resp, req_log *lg, int status, xks_error e, const char *msg) {
  kbytes body = {0};
  kerr err = {0};
  resp->status = status;
  lg->outcome = e != XKS_ERR_NONE ? xks_error_name(e) : "MethodNotAllowed";
  snprintf(lg->detail, sizeof lg->detail, "%s", msg ? msg : "");
  if (e == XKS_ERR_NONE) e = XKS_ERR_VALIDATION; /* 405: the spec gives no name; the body says why */
  if (xks_error_serialize(e, msg, &body, &err) == KERR_OK) set_json_body(resp, &body);
}

static void reply_kerr(http_response *resp, req_log *lg, kerr_code code, const char *msg) {
  xks_error e = xks_error_from_kerr(code);
  reply_error(resp, lg, xks_error_status(e), e, msg);
}

static void reply_ok(http_response *resp, req_log *lg, kbytes *body) {
  resp->status = 200;
  lg->outcome = "ok";
  set_json_body(resp, body);
}

static void write_log(const req_log *lg, int status, int64_t t0_ns) {
  int64_t us = (xksp_monotonic_ns() - t0_ns) / 1000;
  log_level level = status >= 500 ? LOG_WARN : LOG_INFO;
  log_msg(level, lg->request_id[0] ? lg->request_id : NULL,
          "xks store=%s op=%s key=%s kmsOperation=%s principal=%s credential=%s outcome=%s status=%d "
          "latency_us=%" PRId64 "%s%s",
          lg->store ? lg->store : "-", lg->op ? lg->op : "-", lg->key_id && *lg->key_id ? lg->key_id : "-",
          lg->kms_operation[0] ? lg->kms_operation : "-", lg->principal[0] ? lg->principal : "-",
          lg->access_key_id[0] ? lg->access_key_id : "-", lg->outcome ? lg->outcome : "-", status, us, lg->detail[0] ? " reason=" : "", lg->detail);
}

/* The store whose prefix routes `path`, with the route; NULL when none does
 * (every store said 404). */
static xksp_store *route(xksp_proxy *p, const http_request *req, xks_route *rt) {
  size_t i;
  for (i = 0; i < p->store_count; i++) {
    xks_route_classify(p->stores[i].cfg->uri_prefix, req->method, req->path, strlen(req->path), rt);
    if (rt->status != 404) return &p->stores[i];
  }
  return NULL;
}

static int is_ping(const xksp_proxy *p, const http_request *req) {
  return req->query == NULL && strcmp(req->path, p->cfg->ping_path) == 0 &&
         (strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0);
}

static kerr_code authenticate(xksp_store *st, const http_request *req, req_log *lg, kerr *err) {
  sigv4_request sr = {req->method, req->path, req->query, req->headers, req->nheaders, req->body,
                      req->body_len};
  sigv4_result res;
  creds_ref *held = creds_hold(st);
  kerr_code rc = sigv4_verify(held->creds, &sr, XKS_SIGV4_SERVICE, kclock_now_s(), &res, err);
  if (rc == KERR_OK) {
    snprintf(lg->access_key_id, sizeof lg->access_key_id, "%s", res.cred->who.access_key_id);
    if (strcmp(res.region, st->cfg->region) != 0)
      rc = kerr_set(err, KERR_INVALID_SIGNATURE,
                    "the credential scope names region %.32s; this key store is in %s", res.region,
                    st->cfg->region);
  }
  creds_drop(st, held);
  return rc;
}

/* Steps 9: the backend, and the success body. */
static void dispatch(xksp_proxy *p, xksp_store *st, const xks_route *rt, const xks_request *xreq,
                     http_response *resp, req_log *lg) {
  kerr err = {0};
  kbytes body = {0};
  kerr_code rc = KERR_OK;
  void *be = st->backend;
  switch (rt->op) {
  case XKS_OP_METADATA: {
    xks_key_metadata m = {0};
    rc = p->backend->metadata(be, rt->key_id, &m, &err);
    if (!rc) rc = xks_key_metadata_serialize(&m, &body, &err);
    xks_key_metadata_free(&m);
    break;
  }
  case XKS_OP_ENCRYPT: {
    xks_encrypt_result r = {0};
    rc = p->backend->encrypt(be, rt->key_id, xreq, &r, &err);
    if (!rc) rc = xks_encrypt_result_serialize(&r, &body, &err);
    xks_encrypt_result_free(&r);
    break;
  }
  case XKS_OP_DECRYPT: {
    xks_decrypt_result r = {0};
    rc = p->backend->decrypt(be, rt->key_id, xreq, &r, &err);
    if (!rc) rc = xks_decrypt_result_serialize(&r, &body, &err);
    xks_decrypt_result_free(&r);
    break;
  }
  case XKS_OP_HEALTH: {
    xks_health h = {0};
    rc = p->backend->health(be, &h, &err);
    if (!rc) {
      h.fleet_size = XKSP_FLEET_SIZE;
      h.proxy_vendor = strdup(XKSP_PROXY_VENDOR);
      h.proxy_model = strdup(p->proxy_model);
      if (!h.ekm_vendor) h.ekm_vendor = strdup("unknown");
      if (!h.proxy_vendor || !h.proxy_model || !h.ekm_vendor)
        rc = kerr_set(&err, KERR_INTERNAL, "out of memory");
      else
        rc = xks_health_serialize(&h, &body, &err);
    }
    xks_health_free(&h);
    break;
  }
  default:
    rc = kerr_set(&err, KERR_INTERNAL, "unrouted operation");
  }
  if (rc) {
    kbytes_wipe_free(&body);
    reply_kerr(resp, lg, rc, err.msg);
    return;
  }
  reply_ok(resp, lg, &body);
}

/* For the log line of a request whose body was refused: its kmsRequestId
 * and kmsOperation when the body is JSON that carries them as strings, so a
 * refusal can still be matched with KMS's side. */
static void peek_log_meta(req_log *lg, const http_request *req) {
  json_t *root, *md;
  if (!req->body || req->body_len == 0 || req->body_len > XKS_BODY_MAX) return;
  root = json_loadb((const char *)req->body, req->body_len, 0, NULL);
  md = json_object_get(root, "requestMetadata");
  if (json_is_string(json_object_get(md, "kmsRequestId")))
    log_copy(lg->request_id, sizeof lg->request_id, json_string_value(json_object_get(md, "kmsRequestId")));
  if (json_is_string(json_object_get(md, "kmsOperation")))
    log_copy(lg->kms_operation, sizeof lg->kms_operation,
             json_string_value(json_object_get(md, "kmsOperation")));
  json_decref(root);
}

static void fill_log_meta(req_log *lg, const xks_req_meta *m) {
  log_copy(lg->request_id, sizeof lg->request_id, m->kms_request_id);
  log_copy(lg->kms_operation, sizeof lg->kms_operation, m->kms_operation);
  if (m->aws_principal_arn) log_copy(lg->principal, sizeof lg->principal, m->aws_principal_arn);
}

void xksp_proxy_handle(void *ctx, const http_request *req, http_response *resp) {
  xksp_proxy *p = ctx;
  int64_t t0 = xksp_monotonic_ns();
  req_log lg;
  xks_route rt;
  xksp_store *st;
  xks_request xreq;
  kerr err = {0};
  kerr_code rc;

  memset(&lg, 0, sizeof lg);
  memset(&xreq, 0, sizeof xreq);
  memset(&rt, 0, sizeof rt);

  if (req->refusal_status) { /* 1 */
    reply_error(resp, &lg,
                req->refusal_status, req->refusal_status == 414 ? XKS_ERR_INVALID_URI_PATH : XKS_ERR_VALIDATION,
                req->refusal_reason);
    goto done;
  }
  if (is_ping(p, req)) { /* 2: no log line; balancers probe every few seconds */
    static const char ok[] = "{\"status\":\"OK\"}";
    resp->status = 200;
    resp->body = strdup(ok);
    resp->body_len = resp->body ? sizeof ok - 1 : 0;
    http_response_header(resp, "Content-Type", "application/json");
    return;
  }
  st = req->query ? NULL : route(p, req, &rt); /* 3: the API takes no query string */
  if (!st) {
    reply_error(resp, &lg, 404, XKS_ERR_INVALID_URI_PATH, "no XKS API at this path");
    goto done;
  }
  lg.store = st->cfg->name;
  lg.op = op_name(rt.op);
  lg.key_id = rt.key_id;
  if (rt.status == 405) {
    http_response_header(resp, "Allow", "POST");
    reply_error(resp, &lg, 405, XKS_ERR_NONE, "this URI takes POST only");
    goto done;
  }
  if (req->body_too_large) { /* 4 */
    char m[96];
    snprintf(m, sizeof m, "request body larger than %zu bytes", XKS_BODY_MAX);
    reply_error(resp, &lg, 501, XKS_ERR_UNSUPPORTED_OPERATION, m);
    goto done;
  }
  rc = authenticate(st, req, &lg, &err); /* 5 */
  if (rc == KERR_INTERNAL) { /* memory or a digest failed: not the caller's fault */
    reply_error(resp, &lg, 500, XKS_ERR_INTERNAL, err.msg);
    goto done;
  }
  if (rc) {
    reply_error(resp, &lg, 401, XKS_ERR_AUTHENTICATION_FAILED, err.msg);
    goto done;
  }
  if (!xksp_quota_take(&st->quota, xksp_monotonic_ns())) { /* 6 */
    reply_error(resp, &lg, 429, XKS_ERR_THROTTLING, "request quota of this key store exceeded");
    goto done;
  }
  rc = xks_request_parse(rt.op, (const char *)req->body, req->body_len, &xreq, &err); /* 7 */
  if (rc) {
    peek_log_meta(&lg, req);
    reply_kerr(resp, &lg, rc, err.msg);
    goto done;
  }
  fill_log_meta(&lg, &xreq.meta);
  if (rt.op != XKS_OP_HEALTH) { /* 8 */
    xksp_authz_decision d;
    xksp_authz_decide(st->cfg, rt.key_id, &xreq.meta, &d);
    if (!d.allowed) {
      char m[XKS_ERROR_MESSAGE_MAX];
      if (d.rule)
        snprintf(m, sizeof m, "denied by authorization rule %s", d.rule->sid);
      else
        snprintf(m, sizeof m, "no authorization rule allows this request");
      reply_error(resp, &lg, 403, XKS_ERR_ACCESS_DENIED, m);
      goto done;
    }
  }
  dispatch(p, st, &rt, &xreq, resp, &lg); /* 9 */
done:
  xks_request_free(&xreq);
  write_log(&lg, resp->status, t0);
}

static kerr_code store_creds(const xksp_store_config *sc, creds_ref **out, kerr *err);

kerr_code xksp_proxy_new(const xksp_config *cfg, const xksp_backend *backend, xksp_proxy **out,
                         kerr *err) {
  xksp_proxy *p;
  kerr_code rc = KERR_OK;
  size_t i;
  *out = NULL;
  p = calloc(1, sizeof *p);
  if (!p || !(p->stores = calloc(cfg->store_count ? cfg->store_count : 1, sizeof *p->stores))) {
    free(p);
    return kerr_set(err, KERR_INTERNAL, "out of memory");
  }
  p->cfg = cfg;
  p->backend = backend;
  snprintf(p->proxy_model, sizeof p->proxy_model, "xks-proxy %s", KMSD_VERSION);
  for (i = 0; i < cfg->store_count; i++) {
    const xksp_store_config *sc = &cfg->stores[i];
    xksp_store *st = &p->stores[i];
    kerr e = {0};
    st->cfg = sc;
    xksp_quota_init(&st->quota, sc->quota_rps, sc->quota_burst);
    p->store_count = i + 1;
    pthread_mutex_init(&st->creds_mu, NULL);
    rc = store_creds(sc, &st->creds, &e);
    if (!rc) rc = backend->open(sc, &st->backend, &e);
    if (rc) {
      kerr_set(err, rc, "key store %s: %s", sc->name, e.msg);
      xksp_proxy_free(p, 0);
      return rc;
    }
  }
  *out = p;
  return KERR_OK;
}

kerr_code xksp_proxy_serve(xksp_proxy *p, kerr *err) {
  const xksp_config *cfg = p->cfg;
  http_server_config sc;
  char host[HTTP_HOST_MAX];
  char *cert = NULL, *key = NULL, *ca = NULL;
  const char *subjects[XKSP_CLIENT_SUBJECTS_MAX];
  kerr_code rc;
  size_t i;

  memset(&sc, 0, sizeof sc);
  rc = http_parse_listen(cfg->listen, host, &sc.port, err);
  if (rc) return rc;
  for (i = 0; i < p->store_count; i++) {
    if (!p->backend->start) continue;
    rc = p->backend->start(p->stores[i].backend, err);
    if (rc) return rc;
  }
  if (!cfg->plain_http) {
    rc = http_read_pem_file(cfg->tls_cert, 1024 * 1024, &cert, err);
    if (!rc) rc = http_read_pem_file(cfg->tls_key, 1024 * 1024, &key, err);
    if (!rc && cfg->tls_client_ca) rc = http_read_pem_file(cfg->tls_client_ca, 1024 * 1024, &ca, err);
    if (rc) goto out;
    for (i = 0; i < cfg->tls_client_subject_count && i < XKSP_CLIENT_SUBJECTS_MAX; i++)
      subjects[i] = cfg->tls_client_subjects[i];
    sc.tls_cert_pem = cert;
    sc.tls_key_pem = key;
    sc.tls_priority = cfg->tls_priority ? cfg->tls_priority : HTTP_TLS_PRIORITY_XKS;
    sc.tls_client_ca_pem = ca;
    sc.tls_client_names = ca ? subjects : NULL;
    sc.tls_client_name_count = ca ? i : 0;
  }
  sc.host = host;
  sc.threads = cfg->threads;
  sc.max_body = XKS_BODY_MAX;
  sc.connection_limit = cfg->connection_limit;
  sc.timeout_s = cfg->idle_timeout_s;
  sc.handler = xksp_proxy_handle;
  sc.handler_ctx = p;
  rc = http_server_start(&sc, &p->server, err);
out:
  if (cert) secure_free(cert, strlen(cert) + 1);
  if (key) secure_free(key, strlen(key) + 1);
  if (ca) secure_free(ca, strlen(ca) + 1);
  return rc;
}

uint16_t xksp_proxy_port(const xksp_proxy *p) { return p->server ? http_server_port(p->server) : 0; }

void xksp_proxy_free(xksp_proxy *p, unsigned grace_ms) {
  size_t i;
  if (!p) return;
  http_server_stop(p->server, grace_ms ? grace_ms : STOP_GRACE_DEFAULT_MS);
  for (i = 0; i < p->store_count; i++) {
    if (p->stores[i].backend && p->backend->close) p->backend->close(p->stores[i].backend);
    creds_drop(&p->stores[i], p->stores[i].creds);
    pthread_mutex_destroy(&p->stores[i].creds_mu);
    xksp_quota_destroy(&p->stores[i].quota);
  }
  free(p->stores);
  free(p);
}

/* A counted credential set (one reference, the store's) of `sc`'s one or
 * two key pairs. */
static kerr_code store_creds(const xksp_store_config *sc, creds_ref **out, kerr *err) {
  const char *ids[XKSP_CREDENTIALS_MAX], *secrets[XKSP_CREDENTIALS_MAX];
  creds_ref *r;
  size_t j;
  kerr_code rc;
  *out = NULL;
  for (j = 0; j < sc->credential_count && j < XKSP_CREDENTIALS_MAX; j++) {
    ids[j] = sc->credentials[j].access_key_id;
    secrets[j] = sc->credentials[j].secret_access_key;
  }
  if (!(r = calloc(1, sizeof *r))) return kerr_set(err, KERR_INTERNAL, "out of memory");
  rc = creds_from_keys(ids, secrets, j, &r->creds, err);
  if (rc) {
    free(r);
    return rc;
  }
  r->refs = 1;
  *out = r;
  return KERR_OK;
}

kerr_code xksp_proxy_update_credentials(xksp_proxy *p, const xksp_config *fresh, size_t *updated,
                                        kerr *err) {
  creds_ref *made[XKSP_STORES_MAX] = {0};
  size_t i;
  kerr_code rc = KERR_OK;
  *updated = 0;
  /* Build every new set first, so a failure changes nothing. */
  for (i = 0; i < p->store_count && i < XKSP_STORES_MAX; i++) {
    int k = xksp_config_find_store(fresh, p->stores[i].cfg->uri_prefix);
    kerr e = {0};
    if (k < 0) continue;
    rc = store_creds(&fresh->stores[k], &made[i], &e);
    if (rc) {
      kerr_set(err, rc, "key store %s: %s", p->stores[i].cfg->name, e.msg);
      for (i = 0; i < p->store_count && i < XKSP_STORES_MAX; i++)
        if (made[i]) {
          creds_free(made[i]->creds);
          free(made[i]);
        }
      return rc;
    }
  }
  for (i = 0; i < p->store_count && i < XKSP_STORES_MAX; i++) {
    xksp_store *st = &p->stores[i];
    creds_ref *old;
    if (!made[i]) continue;
    pthread_mutex_lock(&st->creds_mu);
    old = st->creds;
    st->creds = made[i];
    pthread_mutex_unlock(&st->creds_mu);
    creds_drop(st, old); /* freed now, or by the last request still using it */
    (*updated)++;
  }
  return KERR_OK;
}
