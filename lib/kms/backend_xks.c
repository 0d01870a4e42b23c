/* backend_xks.c - the key-store backend of EXTERNAL_KEY_STORE custom key
 * stores (kms_backend.h): KMS keys whose outer layer of encryption is done
 * by an external key store proxy (XKS Proxy API v1) with a key of the
 * customer's external key manager, reached with lib/xks's client.
 *
 * Why here: the connection manager (kms_cks_conn.c) and the operations
 * (kms_cks.c) are the same for every kind of store; what is particular to
 * external key stores is how a store's settings turn into a client (the
 * endpoint, the path, the credential, a VPC endpoint service that says where
 * the traffic goes), how GetHealthStatus decides a connect, and how the
 * client's outcomes map to ConnectionErrorCodes and to the exceptions the
 * model lists for CreateCustomKeyStore and UpdateCustomKeyStore.
 *
 * The credential's secret access key is kept only wrapped under the root
 * key (two 32-byte units, rootkey.h, bound to the store id), unwrapped into
 * secure memory for the moment a client is built, and never logged or put
 * in an error message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/secmem.h"
#include "crypto/aesgcm.h"
#include "crypto/blob.h"
#include "kms/kms_backend.h"
#include "kms/kms_internal.h"
#include "xks/xks_client.h"

static const char TYPE_XKS[] = "EXTERNAL_KEY_STORE";
static const char CONN_PUBLIC[] = "PUBLIC_ENDPOINT";
static const char CONN_VPC[] = "VPC_ENDPOINT_SERVICE";

/* The secret is 43..64 characters: two root-key units, NUL padded. */
#define SECRET_UNITS 2
#define SECRET_BUF (SECRET_UNITS * AESGCM_KEY_LEN + 1)
static const char *const SECRET_LABEL[SECRET_UNITS] = {"xks-secret-0", "xks-secret-1"};

typedef struct xks_conn {
  xks_client *client;
} xks_conn;

/* ---------------------------------------------------------------- secret */

kerr_code kmsi_xks_wrap_secret(kms_domain *d, const char *cks_id, const char *secret,
                               uint8_t **out, size_t *out_len, kerr *err) {
  uint8_t *padded = secure_alloc(SECRET_UNITS * AESGCM_KEY_LEN);
  size_t n = secret ? strlen(secret) : 0;
  kerr_code rc = KERR_OK;

  *out = NULL;
  *out_len = 0;
  if (!padded) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  if (n < 1 || n > SECRET_UNITS * AESGCM_KEY_LEN) {
    rc = kerr_set(err, KERR_VALIDATION, "The secret access key must be 1 to %d characters.",
                  SECRET_UNITS * AESGCM_KEY_LEN);
    goto out;
  }
  memcpy(padded, secret, n);
  *out = malloc(SECRET_UNITS * ROOTKEY_WRAPPED_LEN);
  if (!*out) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  for (int i = 0; i < SECRET_UNITS && !rc; i++)
    rc = rootkey_wrap(d->rk, cks_id, SECRET_LABEL[i], padded + i * AESGCM_KEY_LEN,
                      *out + i * ROOTKEY_WRAPPED_LEN, err);
  if (rc) {
    free(*out);
    *out = NULL;
    goto out;
  }
  *out_len = SECRET_UNITS * ROOTKEY_WRAPPED_LEN;
out:
  secure_free(padded, SECRET_UNITS * AESGCM_KEY_LEN);
  return rc;
}

/* Unwrap the secret of `row` into `out` (SECRET_BUF bytes of secure memory,
 * NUL-terminated). */
static kerr_code unwrap_secret(kms_domain *d, const store_cks *row, char *out, kerr *err) {
  kerr_code rc = KERR_OK;
  if (!row->xks_secret_wrapped || row->xks_secret_wrapped_len != SECRET_UNITS * ROOTKEY_WRAPPED_LEN)
    return kerr_set(err, KERR_INTERNAL, "The stored secret of custom key store %s is damaged.",
                    row->cks_id);
  for (int i = 0; i < SECRET_UNITS && !rc; i++)
    rc = rootkey_unwrap(d->rk, row->cks_id, SECRET_LABEL[i],
                        row->xks_secret_wrapped + i * ROOTKEY_WRAPPED_LEN, ROOTKEY_WRAPPED_LEN,
                        (uint8_t *)out + i * AESGCM_KEY_LEN, err);
  out[SECRET_UNITS * AESGCM_KEY_LEN] = '\0';
  return rc;
}

/* --------------------------------------------------------------- mapping */

/* A 403 reply: the proxy's authorization denied KMS.  The spec's table
 * gives GetHealthStatus no AccessDeniedException (health requests are
 * exempt from authorization), so the client calls such a reply
 * INVALID_RESPONSE; KMS's XKS_PROXY_ACCESS_DENIED is about exactly this
 * case, so a 403 on health counts as a denial whatever its body. */
static bool denied(const xks_call_status *st) {
  return st->http_status == 403 &&
         (st->outcome == XKS_OUTCOME_INVALID_RESPONSE ||
          (st->outcome == XKS_OUTCOME_PROXY_ERROR && st->proxy_error == XKS_ERR_ACCESS_DENIED));
}

/* The ConnectionErrorCode of a failed call (static). */
static const char *connection_code(const xks_call_status *st) {
  if (denied(st)) return "XKS_PROXY_ACCESS_DENIED";
  switch (st->outcome) {
  case XKS_OUTCOME_OK: return NULL;
  case XKS_OUTCOME_TIMED_OUT: return "XKS_PROXY_TIMED_OUT";
  case XKS_OUTCOME_NOT_REACHABLE: return "XKS_PROXY_NOT_REACHABLE";
  case XKS_OUTCOME_TLS_ERROR: return "XKS_PROXY_INVALID_TLS_CONFIGURATION";
  case XKS_OUTCOME_INVALID_RESPONSE: return "XKS_PROXY_INVALID_RESPONSE";
  case XKS_OUTCOME_BAD_INPUT: return "XKS_PROXY_INVALID_CONFIGURATION";
  case XKS_OUTCOME_LOCAL_ERROR: return "INTERNAL_ERROR";
  case XKS_OUTCOME_PROXY_ERROR:
    switch (st->proxy_error) {
    case XKS_ERR_AUTHENTICATION_FAILED: return "INVALID_CREDENTIALS";
    case XKS_ERR_ACCESS_DENIED: return "XKS_PROXY_ACCESS_DENIED";
    case XKS_ERR_INVALID_URI_PATH: return "XKS_PROXY_INVALID_CONFIGURATION";
    case XKS_ERR_DEPENDENCY_TIMEOUT: return "XKS_PROXY_TIMED_OUT";
    case XKS_ERR_THROTTLING: return "XKS_PROXY_NOT_REACHABLE";
    default: return "XKS_PROXY_INVALID_RESPONSE";
    }
  }
  return "INTERNAL_ERROR";
}

/* The exception of CreateCustomKeyStore / UpdateCustomKeyStore for a failed
 * GetHealthStatus: the spec's table (xks_client_kerr), except that
 * AccessDenied, which the table gives as KMSInvalidStateException, is
 * XksProxyInvalidConfigurationException: the model lists no
 * KMSInvalidStateException for either operation, and a proxy that denies
 * KMS is a proxy configured against it. */
static kerr_code create_error(const xks_call_status *st, const char *cks_what, kerr *err) {
  kerr_code code = xks_client_kerr(st);
  const char *why;
  if (denied(st)) code = KERR_XKS_PROXY_INVALID_CONFIG;
  switch (code) {
  case KERR_XKS_PROXY_URI_UNREACHABLE:
    why = st->outcome == XKS_OUTCOME_TLS_ERROR
              ? "KMS cannot reach the external key store proxy: the TLS connection failed (check "
                "its certificate, host name, CA and TLS version)."
          : st->outcome == XKS_OUTCOME_TIMED_OUT
              ? "KMS cannot reach the external key store proxy: it did not answer in time."
              : "KMS cannot reach the external key store proxy at its XksProxyUriEndpoint and "
                "XksProxyUriPath.";
    break;
  case KERR_XKS_PROXY_BAD_CREDENTIAL:
    why = "The external key store proxy rejected the XksProxyAuthenticationCredential.";
    break;
  case KERR_XKS_PROXY_INVALID_CONFIG:
    why = denied(st)
              ? "The external key store proxy denied KMS access (check its authorization rules)."
              : "The external key store proxy does not serve the XksProxyUriPath.";
    break;
  case KERR_XKS_PROXY_INVALID_RESPONSE:
    why = "KMS cannot interpret the response of the external key store proxy.";
    break;
  case KERR_VALIDATION:
    code = KERR_XKS_PROXY_INVALID_CONFIG;
    why = "The settings of the external key store cannot form a request to its proxy.";
    break;
  default:
    code = KERR_INTERNAL;
    why = "KMS could not complete the request to the external key store proxy.";
    break;
  }
  return kerr_set(err, code, "%s (%s)", why, cks_what);
}

/* ---------------------------------------------------------------- client */

/* The host of "https://host[:port]" into host (cap bytes). */
static void endpoint_host(const char *endpoint, char *host, size_t cap) {
  const char *h = strncmp(endpoint, "https://", 8) == 0 ? endpoint + 8 : endpoint;
  size_t n = strcspn(h, ":/");
  if (n >= cap) n = cap - 1;
  memcpy(host, h, n);
  host[n] = '\0';
}

static kms_vpc_verdict vpc_judge(kms_domain *d, const store_cks *row, kms_vpc_answer *ans) {
  char host[XKS_CLIENT_ENDPOINT_MAX + 1];
  memset(ans, 0, sizeof *ans);
  if (!d->vpc_judge) {
    ans->verdict = KMS_VPC_NOT_FOUND;
    snprintf(ans->why, sizeof ans->why, "kmsd knows no VPC endpoint services");
    return ans->verdict;
  }
  endpoint_host(row->xks_uri_endpoint, host, sizeof host);
  d->vpc_judge(d->vpc_arg, row->xks_vpc_service_name, row->region,
               row->xks_vpc_service_owner[0] ? row->xks_vpc_service_owner : row->account_id, host,
               ans);
  return ans->verdict;
}

/* Judge a VPC_ENDPOINT_SERVICE store's service with the registry, without
 * contacting the proxy.  On KERR_OK *ans says where its traffic goes; on
 * failure *code is the ConnectionErrorCode and err the exception of
 * Create/UpdateCustomKeyStore. */
static kerr_code vpc_check(kms_domain *d, const store_cks *row, kms_vpc_answer *ans,
                           const char **code, kerr *err) {
  switch (vpc_judge(d, row, ans)) {
  case KMS_VPC_OK:
    return KERR_OK;
  case KMS_VPC_NOT_FOUND:
    *code = "XKS_VPC_ENDPOINT_SERVICE_NOT_FOUND";
    return kerr_set(err, KERR_XKS_VPCE_SERVICE_NOT_FOUND,
                    "KMS cannot find the VPC endpoint service %.64s: %s.",
                    row->xks_vpc_service_name, ans->why);
  default:
    *code = "XKS_VPC_ENDPOINT_SERVICE_INVALID_CONFIGURATION";
    return kerr_set(err, KERR_XKS_VPCE_SERVICE_INVALID_CONFIG,
                    "The VPC endpoint service %.64s does not meet the requirements of an "
                    "external key store: %s.",
                    row->xks_vpc_service_name, ans->why);
  }
}

/* Build the client of store `row`.  On failure *code is the
 * ConnectionErrorCode and err the matching exception of
 * CreateCustomKeyStore. */
static kerr_code build_client(kms_domain *d, const store_cks *row, xks_client **out,
                              const char **code, kerr *err) {
  const char *connect_to[KMS_XKS_CONNECT_TO_MAX + 1];
  char vpc_to[XKS_CLIENT_CONNECT_TO_LEN_MAX];
  size_t nconnect = 0;
  char *secret = NULL;
  xks_client_config cfg;
  kerr_code rc;

  *out = NULL;
  *code = NULL;
  for (size_t i = 0; i < d->xks_connect_to_count && nconnect < KMS_XKS_CONNECT_TO_MAX; i++)
    connect_to[nconnect++] = d->xks_connect_to[i];
  if (strcmp(row->xks_connectivity, CONN_VPC) == 0) {
    kms_vpc_answer ans;
    char host[XKS_CLIENT_ENDPOINT_MAX + 1];
    rc = vpc_check(d, row, &ans, code, err);
    if (rc) return rc;
    /* The TCP connection goes where the service forwards; the name checked
     * stays the endpoint's (its private DNS name). */
    endpoint_host(row->xks_uri_endpoint, host, sizeof host);
    snprintf(vpc_to, sizeof vpc_to, strchr(ans.forward_host, ':') ? "%s:443:[%s]:%u" : "%s:443:%s:%u",
             host, ans.forward_host, ans.forward_port);
    /* Ahead of the operator's overrides: curl uses the first match. */
    memmove(connect_to + 1, connect_to, nconnect * sizeof *connect_to);
    connect_to[0] = vpc_to;
    nconnect++;
  }
  secret = secure_alloc(SECRET_BUF);
  if (!secret) {
    *code = "INTERNAL_ERROR";
    return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
  rc = unwrap_secret(d, row, secret, err);
  if (rc) {
    *code = "INTERNAL_ERROR";
    log_msg(LOG_ERROR, NULL, "external key store %s: its stored secret cannot be unwrapped: %s",
            row->cks_id, err->msg);
    rc = kerr_set(err, KERR_INTERNAL,
                  "The stored credential of custom key store %s is damaged; kmsd cannot use it.",
                  row->cks_id);
    goto out;
  }
  memset(&cfg, 0, sizeof cfg);
  cfg.endpoint = row->xks_uri_endpoint;
  cfg.uri_path = row->xks_uri_path;
  cfg.region = row->region;
  cfg.access_key_id = row->xks_access_key_id;
  cfg.secret_access_key = secret;
  cfg.ca_bundle = d->xks_ca_bundle;
  cfg.connect_to = connect_to;
  cfg.connect_to_count = nconnect;
  cfg.timeout_ms = d->xks_timeout_ms;
  cfg.pool_size = d->xks_connections;
  rc = xks_client_new(&cfg, out, err);
  if (rc == KERR_VALIDATION) {
    *code = "XKS_PROXY_INVALID_CONFIGURATION";
    rc = kerr_set(err, KERR_XKS_PROXY_INVALID_CONFIG,
                  "The settings of external key store %s cannot reach a proxy: %s", row->cks_id,
                  err->msg);
  } else if (rc) {
    /* kmsd's own fault (an unreadable --xks-ca-bundle, memory): the
     * detail, which may name a file of the host, is for the operator's
     * log, not for the caller. */
    *code = "INTERNAL_ERROR";
    log_msg(LOG_ERROR, NULL, "external key store %s: kmsd cannot make its XKS client: %s",
            row->cks_id[0] ? row->cks_id : "(new)", err->msg);
    rc = kerr_set(err, KERR_INTERNAL,
                  "KMS could not prepare the request to the external key store proxy (an "
                  "internal error: see kmsd's log).");
  }
out:
  secure_free(secret, SECRET_BUF);
  return rc;
}

/* GetHealthStatus on `client`: KERR_OK when the proxy answers and some
 * external key manager is not UNAVAILABLE.  On failure *code is the
 * ConnectionErrorCode, *st the call's status, and err the exception of
 * Create/UpdateCustomKeyStore. */
static kerr_code health_check(xks_client *client, const char *request_id, const char *operation,
                              const char *cks_what, const char **code, xks_call_status *st,
                              kerr *err) {
  xks_call_meta meta;
  xks_health h;
  kerr_code rc;
  kerr ce;
  bool any_up = false;

  memset(&meta, 0, sizeof meta);
  memset(&h, 0, sizeof h);
  kerr_clear(&ce);
  meta.kms_request_id = request_id && *request_id ? request_id : "kmsd";
  meta.kms_operation = operation;
  *code = NULL;
  rc = xks_client_health(client, &meta, &h, st, &ce);
  if (rc) {
    *code = connection_code(st);
    log_msg(LOG_WARN, request_id, "%s: GetHealthStatus failed: %s", cks_what, ce.msg);
    return create_error(st, cks_what, err);
  }
  for (size_t i = 0; i < h.ekm_count; i++)
    if (h.ekm[i].health_status && strcmp(h.ekm[i].health_status, "UNAVAILABLE") != 0)
      any_up = true;
  xks_health_free(&h);
  if (!any_up) {
    *code = "XKS_PROXY_NOT_REACHABLE";
    return kerr_set(err, KERR_XKS_PROXY_URI_UNREACHABLE,
                    "The external key store proxy reports every external key manager instance "
                    "UNAVAILABLE (%s).",
                    cks_what);
  }
  return KERR_OK;
}

kerr_code kmsi_xks_probe(kms_domain *d, const store_cks *row, const char *request_id,
                         const char *operation, kerr *err) {
  xks_client *client = NULL;
  xks_call_status st;
  const char *code = NULL;
  char what[96];
  kerr_code rc;
  snprintf(what, sizeof what, "external key store %s", row->cks_id[0] ? row->cks_id : "(new)");
  rc = build_client(d, row, &client, &code, err);
  if (rc) return rc;
  rc = health_check(client, request_id, operation, what, &code, &st, err);
  xks_client_free(client);
  return rc;
}

/* ---------------------------------------------------------------- methods */

static void xks_check_row(const store_cks *c, const char **bad) {
  if (strncmp(c->xks_uri_endpoint, "https://", 8) != 0 || strlen(c->xks_uri_endpoint) < 10)
    *bad = "XksProxyUriEndpoint";
  else if (strlen(c->xks_uri_path) < 10)
    *bad = "XksProxyUriPath";
  else if (strcmp(c->xks_connectivity, CONN_PUBLIC) != 0 && strcmp(c->xks_connectivity, CONN_VPC) != 0)
    *bad = "XksProxyConnectivity";
  else if (strcmp(c->xks_connectivity, CONN_VPC) == 0 && strlen(c->xks_vpc_service_name) < 20)
    *bad = "XksProxyVpcEndpointServiceName";
  else if (strlen(c->xks_access_key_id) < 20)
    *bad = "AccessKeyId";
  else if (!c->xks_secret_wrapped || c->xks_secret_wrapped_len != SECRET_UNITS * ROOTKEY_WRAPPED_LEN)
    *bad = "secret access key";
}

/* A connection to the proxy of cx->row: its client, and with `probe` one
 * GetHealthStatus that must succeed (a connect) - without, nothing is sent
 * (an attach, kms_backend.attach). */
static kerr_code open_conn(const kms_backend_connect_ctx *cx, bool probe, kms_backend_conn **out,
                           const char **connection_error, kerr *err) {
  xks_conn *c = NULL;
  xks_client *client = NULL;
  xks_call_status st;
  char what[96];
  kerr_code rc;

  *out = NULL;
  *connection_error = NULL;
  snprintf(what, sizeof what, "external key store %s", cx->row->cks_id);
  rc = build_client(cx->d, cx->row, &client, connection_error, err);
  if (rc) return rc;
  if (probe) {
    rc = health_check(client, cx->request_id, "ConnectCustomKeyStore", what, connection_error,
                      &st, err);
    if (rc) goto fail;
  }
  c = calloc(1, sizeof *c);
  if (!c) {
    *connection_error = "INTERNAL_ERROR";
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto fail;
  }
  c->client = client;
  *out = (kms_backend_conn *)c;
  return KERR_OK;
fail:
  xks_client_free(client);
  return rc;
}

static kerr_code xks_connect(const kms_backend_connect_ctx *cx, kms_backend_conn **out,
                             const char **connection_error, kerr *err) {
  return open_conn(cx, true, out, connection_error, err);
}

/* A node that did not connect the store (another node did, or this one
 * before a restart) builds its client from the stored settings and sends
 * nothing: the store stays CONNECTED whether or not its proxy answers now,
 * and the periodic health check logs a failure. */
static kerr_code xks_attach(const kms_backend_connect_ctx *cx, kms_backend_conn **out,
                            const char **connection_error, kerr *err) {
  return open_conn(cx, false, out, connection_error, err);
}

static void xks_disconnect(kms_backend_conn *bc) {
  xks_conn *c = (xks_conn *)bc;
  if (!c) return;
  xks_client_free(c->client);
  free(c);
}

static kerr_code xks_check_health(kms_backend_conn *bc, const kms_backend_ctx *ctx,
                            const char **connection_error, kerr *err) {
  xks_conn *c = (xks_conn *)bc;
  xks_call_status st;
  return health_check(c->client, ctx->request_id, "KmsHealthCheck", "external key store",
                      connection_error, &st, err);
}

/* ------------------------------------------------------------- keys */

static void call_meta(const kms_backend_ctx *ctx, xks_call_meta *meta) {
  memset(meta, 0, sizeof *meta);
  meta->kms_request_id = ctx->request_id && *ctx->request_id ? ctx->request_id : "kmsd";
  meta->kms_operation = ctx->operation ? ctx->operation : "Unknown";
  meta->aws_principal_arn = ctx->principal_arn ? ctx->principal_arn : "kmsd";
  meta->kms_key_arn = ctx->key_arn;
  meta->kms_via_service = ctx->via_service;
}

/* CreateKey: GetKeyMetadata decides whether XksKeyId can back a KMS key
 * (AES_256, ENCRYPT and DECRYPT, ENABLED).  Failures of the proxy itself
 * are the exceptions CreateKey's model lists: a timeout is
 * DependencyTimeoutException, anything else about the proxy
 * CustomKeyStoreInvalidStateException (the store cannot serve now). */
static kerr_code xks_create_key(kms_backend_conn *bc, const kms_backend_ctx *ctx,
                                const store_cks *row, const char *key_id,
                                const char *backing_key_id, kerr *err) {
  xks_conn *c = (xks_conn *)bc;
  xks_call_meta meta;
  xks_key_metadata md;
  xks_call_status st;
  bool enc = false, dec = false;
  kerr ce;
  kerr_code rc;
  (void)key_id;
  memset(&md, 0, sizeof md);
  kerr_clear(&ce);
  call_meta(ctx, &meta);
  meta.kms_key_arn = NULL; /* CreateKey: the key does not exist yet */
  rc = xks_client_metadata(c->client, &meta, backing_key_id, &md, &st, &ce);
  if (rc) {
    log_msg(LOG_WARN, ctx->request_id, "external key store %s: GetKeyMetadata failed: %s",
            row->cks_id, ce.msg);
    if (st.outcome == XKS_OUTCOME_PROXY_ERROR && st.proxy_error == XKS_ERR_KEY_NOT_FOUND)
      return kerr_set(err, KERR_XKS_KEY_NOT_FOUND,
                      "The external key store proxy cannot find external key %.128s.",
                      backing_key_id);
    if (st.outcome == XKS_OUTCOME_PROXY_ERROR &&
        (st.proxy_error == XKS_ERR_INVALID_STATE || st.proxy_error == XKS_ERR_INVALID_KEY_USAGE))
      return kerr_set(err, KERR_XKS_KEY_INVALID_CONFIG,
                      "External key %.128s must be an enabled AES-256 key for ENCRYPT and "
                      "DECRYPT.",
                      backing_key_id);
    if (st.outcome == XKS_OUTCOME_BAD_INPUT)
      return kerr_set(err, KERR_VALIDATION, "XksKeyId %.128s is not valid for the proxy.",
                      backing_key_id);
    /* kmsd failing itself (its CA bundle unusable for a new connection):
     * not the store's state, as for the crypto operations (crypto_error). */
    if (st.outcome == XKS_OUTCOME_LOCAL_ERROR)
      return kerr_set(err, KERR_INTERNAL, "KMS could not complete the request.");
    if (st.outcome == XKS_OUTCOME_TIMED_OUT ||
        (st.outcome == XKS_OUTCOME_PROXY_ERROR && st.proxy_error == XKS_ERR_DEPENDENCY_TIMEOUT))
      return kerr_set(err, KERR_DEPENDENCY_TIMEOUT,
                      "The external key store proxy of %s did not answer in time.", row->cks_id);
    return kerr_set(err, KERR_CKS_INVALID_STATE,
                    "The external key store proxy of %s cannot serve CreateKey (%s%s%s).",
                    row->cks_id, xks_outcome_name(st.outcome),
                    st.proxy_error ? " " : "", st.proxy_error ? xks_error_name(st.proxy_error) : "");
  }
  for (size_t i = 0; i < md.key_usage_count; i++) {
    if (strcmp(md.key_usage[i], "ENCRYPT") == 0) enc = true;
    if (strcmp(md.key_usage[i], "DECRYPT") == 0) dec = true;
  }
  if (!md.key_spec || strcmp(md.key_spec, "AES_256") != 0 || !enc || !dec || !md.key_status ||
      strcmp(md.key_status, "ENABLED") != 0)
    rc = kerr_set(err, KERR_XKS_KEY_INVALID_CONFIG,
                  "External key %.128s must be an enabled AES_256 key whose usage includes "
                  "ENCRYPT and DECRYPT.",
                  backing_key_id);
  xks_key_metadata_free(&md);
  return rc;
}

/* The exception of a cryptographic operation for a failed proxy call: as
 * AWS documents for external key stores, KMSInvalidStateException for every
 * failure of the proxy or its configuration, except a dependency that did
 * not answer in time (DependencyTimeoutException, which every crypto
 * operation lists). */
static kerr_code crypto_error(const kms_backend_ctx *ctx, const xks_call_status *st,
                              const kerr *ce, kerr *err) {
  log_msg(LOG_WARN, ctx->request_id, "external key store: %s failed: %s",
          ctx->operation ? ctx->operation : "?", ce->msg);
  if (st->outcome == XKS_OUTCOME_TIMED_OUT ||
      (st->outcome == XKS_OUTCOME_PROXY_ERROR && st->proxy_error == XKS_ERR_DEPENDENCY_TIMEOUT))
    return kerr_set(err, KERR_DEPENDENCY_TIMEOUT,
                    "The external key store proxy did not answer %s in time.", ctx->key_arn);
  if (st->outcome == XKS_OUTCOME_LOCAL_ERROR)
    return kerr_set(err, KERR_INTERNAL, "KMS could not complete the request.");
  /* A blob that passed parse_outer but that the proxy cannot open (a bit
   * flipped in its IV, tag, metadata or ciphertext; the external key's
   * material replaced): the spec's table of KMS exceptions gives the
   * proxy's InvalidCiphertextException on Decrypt and ReEncrypt as
   * KMSInvalidStateException, with this message. */
  if (st->outcome == XKS_OUTCOME_PROXY_ERROR && st->proxy_error == XKS_ERR_INVALID_CIPHERTEXT)
    return kerr_set(err, KERR_INVALID_STATE,
                    "The external key store proxy rejected the request because the specified "
                    "ciphertext or encryption context is corrupted, missing, or otherwise "
                    "invalid.");
  /* No answer at all: say so, with the ConnectionErrorCode a connect would
   * report (the store stays CONNECTED, so DescribeCustomKeyStores shows none). */
  if (st->outcome == XKS_OUTCOME_NOT_REACHABLE)
    return kerr_set(err, KERR_INVALID_STATE,
                    "%s is unusable: KMS cannot reach its external key store proxy "
                    "(XKS_PROXY_NOT_REACHABLE).",
                    ctx->key_arn);
  if (st->outcome == XKS_OUTCOME_TLS_ERROR)
    return kerr_set(err, KERR_INVALID_STATE,
                    "%s is unusable: the TLS connection to its external key store proxy failed "
                    "(XKS_PROXY_INVALID_TLS_CONFIGURATION).",
                    ctx->key_arn);
  return kerr_set(err, KERR_INVALID_STATE,
                  "%s is unusable: its external key store proxy answered %s%s%s.", ctx->key_arn,
                  xks_outcome_name(st->outcome), st->proxy_error ? " " : "",
                  st->proxy_error ? xks_error_name(st->proxy_error) : "");
}

/* The AAD the proxy binds: the blob's header (version, key id, material
 * id), the first KBLOB_AAD_HEADER_LEN bytes of `aad`.  The inner layer binds
 * the whole AAD, header and encryption context, so a wrong context fails
 * there, in kmsd, as InvalidCiphertextException, and the context never
 * reaches the proxy. */
static size_t outer_aad_len(size_t aad_len) {
  return aad_len < KBLOB_AAD_HEADER_LEN ? aad_len : KBLOB_AAD_HEADER_LEN;
}

/* Body of a ciphertext of an external key store's key (after the blob
 * header):
 *   iv_len (1) | outer IV | outer tag (16) | md_len (1) | ciphertextMetadata |
 *   outer ciphertext
 * where the outer ciphertext is the proxy's encryption, under XksKeyId, of
 * the inner body (IV | tag | ciphertext) that kmsd's own key material made
 * (backend_local.c). */
static kerr_code xks_encrypt(kms_backend_conn *bc, const kms_backend_ctx *ctx,
                             const kms_backend_key *k, const uint8_t *pt, size_t pt_len,
                             const uint8_t *aad, size_t aad_len, uint8_t **body, size_t *body_len,
                             kerr *err) {
  xks_conn *c = (xks_conn *)bc;
  uint8_t *inner = NULL, *out = NULL;
  size_t inner_len = 0, n;
  xks_call_meta meta;
  xks_encrypt_result res;
  xks_call_status st;
  kerr ce;
  kerr_code rc;

  *body = NULL;
  *body_len = 0;
  memset(&res, 0, sizeof res);
  kerr_clear(&ce);
  rc = kms_backend_local.encrypt(NULL, ctx, k, pt, pt_len, aad, aad_len, &inner, &inner_len, err);
  if (rc) return rc;
  call_meta(ctx, &meta);
  rc = xks_client_encrypt(c->client, &meta, k->backing_key_id, inner, inner_len, aad,
                          outer_aad_len(aad_len), 1, &res, &st, &ce);
  if (rc) {
    rc = crypto_error(ctx, &st, &ce, err);
    goto out;
  }
  if (res.iv_len == 0 || res.iv_len > XKS_IV_MAX || res.ct_metadata.len > 255 ||
      res.ciphertext.len != inner_len) {
    rc = kerr_set(err, KERR_INVALID_STATE, "%s is unusable: its proxy's reply cannot be kept.",
                  ctx->key_arn);
    goto out;
  }
  n = 1 + res.iv_len + XKS_TAG_LEN + 1 + res.ct_metadata.len + res.ciphertext.len;
  out = malloc(n);
  if (!out) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  {
    uint8_t *p = out;
    *p++ = (uint8_t)res.iv_len;
    memcpy(p, res.iv, res.iv_len);
    p += res.iv_len;
    memcpy(p, res.tag, XKS_TAG_LEN);
    p += XKS_TAG_LEN;
    *p++ = (uint8_t)res.ct_metadata.len;
    if (res.ct_metadata.len) memcpy(p, res.ct_metadata.data, res.ct_metadata.len);
    p += res.ct_metadata.len;
    memcpy(p, res.ciphertext.data, res.ciphertext.len);
  }
  *body = out;
  *body_len = n;
  out = NULL;
out:
  free(out);
  free(inner);
  xks_encrypt_result_free(&res);
  return rc;
}

/* The outer layer of a ciphertext of key `k`, framed as xks_encrypt wrote
 * it, into `in` (pointers into `body`).  Everything kmsd's own layout fixes
 * is checked here, before the proxy sees a byte: a blob that fails is not a
 * ciphertext of this key, which is InvalidCiphertextException (the model's
 * "the specified ciphertext ... is corrupted, missing, or otherwise
 * invalid"), and never a question for the proxy, whose refusal a crypto
 * operation must answer as KMSInvalidStateException.
 *   - the material id of the blob's header is the key's own: a key in a
 *     custom key store never rotates, so it has exactly one;
 *   - an IV of 12 or 16 bytes and ciphertextMetadata of at most 20 (what
 *     the spec lets a proxy return, and xks_client_encrypt accepts);
 *   - an outer ciphertext exactly as long as an inner body can be: the
 *     proxy encrypted kmsd's IV, tag and a 1..KBLOB_MAX_PLAINTEXT-byte
 *     ciphertext, and its ciphertext is as long as its plaintext. */
static kerr_code parse_outer(const kms_backend_key *k, const uint8_t *body, size_t body_len,
                             xks_decrypt_input *in, kerr *err) {
  size_t off = 0;
  memset(in, 0, sizeof *in);
  if (!k->material_id || !k->current_material_id ||
      strcmp(k->material_id, k->current_material_id) != 0)
    goto bad;
  if (body_len < 1) goto bad;
  in->iv_len = body[off++];
  if ((in->iv_len != 12 && in->iv_len != 16) || body_len < off + in->iv_len + XKS_TAG_LEN + 1)
    goto bad;
  in->iv = body + off;
  off += in->iv_len;
  in->tag = body + off;
  off += XKS_TAG_LEN;
  in->ct_metadata_len = body[off++];
  if (in->ct_metadata_len > XKS_CT_METADATA_MAX || body_len < off + in->ct_metadata_len) goto bad;
  in->ct_metadata = in->ct_metadata_len ? body + off : NULL;
  off += in->ct_metadata_len;
  in->ciphertext = body + off;
  in->ciphertext_len = body_len - off;
  if (in->ciphertext_len < AESGCM_IV_LEN + AESGCM_TAG_LEN + 1 ||
      in->ciphertext_len > AESGCM_IV_LEN + AESGCM_TAG_LEN + KBLOB_MAX_PLAINTEXT)
    goto bad;
  return KERR_OK;
bad:
  memset(in, 0, sizeof *in);
  return kerr_set(err, KERR_INVALID_CIPHERTEXT, "The ciphertext is not a valid ciphertext blob.");
}

static kerr_code xks_decrypt(kms_backend_conn *bc, const kms_backend_ctx *ctx,
                             const kms_backend_key *k, const uint8_t *body, size_t body_len,
                             const uint8_t *aad, size_t aad_len, kbytes *pt, kerr *err) {
  xks_conn *c = (xks_conn *)bc;
  xks_decrypt_input in;
  xks_decrypt_result res;
  xks_call_meta meta;
  xks_call_status st;
  kerr ce;
  kerr_code rc;

  pt->data = NULL;
  pt->len = 0;
  memset(&res, 0, sizeof res);
  kerr_clear(&ce);
  rc = parse_outer(k, body, body_len, &in, err);
  if (rc) return rc;
  in.aad = aad;
  in.aad_len = outer_aad_len(aad_len);
  call_meta(ctx, &meta);
  rc = xks_client_decrypt(c->client, &meta, k->backing_key_id, &in, &res, &st, &ce);
  if (rc) return crypto_error(ctx, &st, &ce, err);
  rc = kms_backend_local.decrypt(NULL, ctx, k, res.plaintext.data, res.plaintext.len, aad, aad_len,
                                 pt, err);
  xks_decrypt_result_free(&res);
  return rc;
}

/* ------------------------------------------------------- configuration */

typedef struct in_use_arg {
  const store_cks *p;
  kerr_code code;
} in_use_arg;

/* XksProxyUriEndpoint is "https://" and a host name (the model's pattern:
 * no port, no path), and DNS names are case-insensitive: two endpoints are
 * the same whatever the case of their letters.  Each store keeps (and
 * Describe shows) its endpoint as it was given. */
static bool same_endpoint(const char *a, const char *b) { return strcasecmp(a, b) == 0; }

/* Whether store `c` (another one, of any account in the Region) conflicts
 * with the proposed `a->p`; a->code says how.  The model's exceptions give
 * each rule the Region as its scope: "the concatenation of the
 * XksProxyUriEndpoint and XksProxyUriPath is already associated with
 * another external key store in this Amazon Web Services Region",
 * "the XksProxyUriEndpoint is already associated with another external key
 * store in this Amazon Web Services Region", "Each external key store in a
 * Region must use a different Amazon VPC endpoint service"; and the
 * ConnectionErrorCode documentation: "The private DNS name for an external
 * key store with VPC_ENDPOINT_SERVICE connectivity must be unique in its
 * Amazon Web Services Region". */
static bool match_in_use(const store_cks *c, const void *varg) {
  in_use_arg *a = (in_use_arg *)varg;
  const store_cks *p = a->p;
  if (strcmp(c->type, TYPE_XKS) != 0) return false;
  /* URI paths are case-sensitive (RFC 3986), host names are not. */
  if (same_endpoint(c->xks_uri_endpoint, p->xks_uri_endpoint) &&
      strcmp(c->xks_uri_path, p->xks_uri_path) == 0) {
    a->code = KERR_XKS_PROXY_URI_IN_USE;
    return true;
  }
  /* A VPC store's endpoint is its private DNS name: no other store may use
   * it, and it may use no other store's. */
  if (same_endpoint(c->xks_uri_endpoint, p->xks_uri_endpoint) &&
      (strcmp(c->xks_connectivity, CONN_VPC) == 0 || strcmp(p->xks_connectivity, CONN_VPC) == 0)) {
    a->code = KERR_XKS_PROXY_URI_ENDPOINT_IN_USE;
    return true;
  }
  /* Service names are lower case by the model's pattern; an id names one
   * service in a Region whoever owns it. */
  if (strcmp(p->xks_connectivity, CONN_VPC) == 0 && strcmp(c->xks_connectivity, CONN_VPC) == 0 &&
      strcmp(c->xks_vpc_service_name, p->xks_vpc_service_name) == 0) {
    a->code = KERR_XKS_VPCE_SERVICE_IN_USE;
    return true;
  }
  return false;
}

static kerr_code check_in_use(kms_domain *d, const kms_call *call, store_tx *tx,
                              const store_cks *p, kerr *err) {
  in_use_arg a = {.p = p, .code = KERR_OK};
  store_cks other;
  char whose[96];
  bool hit = false;
  kerr_code rc;
  memset(&other, 0, sizeof other);
  rc = kmsi_cks_find_in_region(d, tx, call, match_in_use, &a, p->cks_id[0] ? p->cks_id : NULL,
                               &other, &hit, err);
  if (rc || !hit) return rc;
  /* The caller may learn which of its own stores is in the way; another
   * account's store is not the caller's to know of beyond its existence. */
  if (strcmp(other.account_id, call->caller->account_id) == 0)
    snprintf(whose, sizeof whose, "External key store %s", other.cks_id);
  else
    snprintf(whose, sizeof whose, "An external key store of another account");
  switch (a.code) {
  case KERR_XKS_PROXY_URI_IN_USE:
    rc = kerr_set(err, a.code,
                  "%s in this Region already uses this XksProxyUriEndpoint and XksProxyUriPath.",
                  whose);
    break;
  case KERR_XKS_PROXY_URI_ENDPOINT_IN_USE:
    rc = kerr_set(err, a.code,
                  "%s in this Region already uses this XksProxyUriEndpoint; an external key "
                  "store with VPC_ENDPOINT_SERVICE connectivity needs its own private DNS name.",
                  whose);
    break;
  default:
    rc = kerr_set(err, KERR_XKS_VPCE_SERVICE_IN_USE,
                  "%s in this Region already uses VPC endpoint service %.64s.", whose,
                  p->xks_vpc_service_name);
    break;
  }
  store_cks_clear(&other);
  return rc;
}

bool kmsi_xks_settings_differ(kms_domain *d, const store_cks *a, const store_cks *b) {
  char *sa, *sb;
  kerr ignored;
  bool differ = true;
  if (strcmp(a->xks_uri_endpoint, b->xks_uri_endpoint) != 0 ||
      strcmp(a->xks_uri_path, b->xks_uri_path) != 0 ||
      strcmp(a->xks_connectivity, b->xks_connectivity) != 0 ||
      strcmp(a->xks_vpc_service_name, b->xks_vpc_service_name) != 0 ||
      strcmp(a->xks_vpc_service_owner, b->xks_vpc_service_owner) != 0 ||
      strcmp(a->xks_access_key_id, b->xks_access_key_id) != 0)
    return true;
  /* Wrapping is randomized: compare the secrets themselves. */
  sa = secure_alloc(SECRET_BUF);
  sb = secure_alloc(SECRET_BUF);
  if (sa && sb && unwrap_secret(d, a, sa, &ignored) == KERR_OK &&
      unwrap_secret(d, b, sb, &ignored) == KERR_OK)
    differ = strcmp(sa, sb) != 0;
  secure_free(sa, SECRET_BUF);
  secure_free(sb, SECRET_BUF);
  return differ;
}

/* Uniqueness of the proxy URI and the VPC endpoint service among the
 * external key stores of every account in the Region (check_in_use), in
 * the operation's transaction: in the read transaction first (CREATE,
 * UPDATE), and again under the write lock (INSERT, UPDATE_LOCKED), where a
 * concurrent create or update may have taken them meanwhile.
 * GetHealthStatus is xks_probe's, with no transaction open. */
static kerr_code xks_check_config(kms_domain *d, const kms_call *call, store_tx *tx,
                                  kms_backend_check when, const store_cks *current,
                                  store_cks *proposed, kerr *err) {
  (void)current;
  switch (when) {
  case KMS_BACKEND_CHECK_CREATE:
  {
    /* The model (CreateCustomKeyStore, XksProxyUriEndpoint): "For external
     * key stores with PUBLIC_ENDPOINT connectivity ... KMS connects to the
     * external key store proxy while creating the custom key store. For
     * external key stores with VPC_ENDPOINT_SERVICE connectivity, KMS
     * connects when you call the ConnectCustomKeyStore operation."  The VPC
     * endpoint service itself is still judged here (Create lists its
     * NotFound and InvalidConfiguration exceptions); that asks the
     * registry, not the proxy, and xks_probe skips such a store. */
    kerr_code rc = check_in_use(d, call, tx, proposed, err);
    if (rc) return rc;
    if (strcmp(proposed->xks_connectivity, CONN_VPC) == 0) {
      kms_vpc_answer ans;
      const char *code = NULL;
      return vpc_check(d, proposed, &ans, &code, err);
    }
    return KERR_OK;
  }
  case KMS_BACKEND_CHECK_INSERT:
  case KMS_BACKEND_CHECK_UPDATE:
  case KMS_BACKEND_CHECK_UPDATE_LOCKED:
    return check_in_use(d, call, tx, proposed, err);
  case KMS_BACKEND_CHECK_CONNECT:
    return KERR_OK; /* everything else is the worker's ConnectionErrorCode */
  }
  return KERR_OK;
}

static kerr_code xks_probe(kms_domain *d, const kms_call *call, const char *operation,
                           const store_cks *proposed, kerr *err) {
  /* A VPC_ENDPOINT_SERVICE store's proxy is first contacted at Connect
   * (xks_check_config, CREATE). */
  if (strcmp(operation, "CreateCustomKeyStore") == 0 &&
      strcmp(proposed->xks_connectivity, CONN_VPC) == 0)
    return KERR_OK;
  return kmsi_xks_probe(d, proposed, call->request_id, operation, err);
}

const kms_backend kms_backend_xks = {
    .type = TYPE_XKS,
    .waits_on_network = true, /* the proxy, over HTTPS */
    .uses_material = true, /* the inner layer */
    .check_row = xks_check_row,
    .check_config = xks_check_config,
    .probe = xks_probe,
    .probe_differs = kmsi_xks_settings_differ,
    .connect = xks_connect,
    .disconnect = xks_disconnect,
    .attach = xks_attach,
    .health = xks_check_health,
    .create_key = xks_create_key,
    .delete_key = NULL,  /* the external key is the customer's: never deleted */
    .encrypt = xks_encrypt,
    .decrypt = xks_decrypt,
    .random = NULL,      /* GenerateRandom: not for external key stores */
};
