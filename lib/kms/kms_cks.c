/* kms_cks.c - the custom key store operations of the KMS API:
 * CreateCustomKeyStore, DescribeCustomKeyStores, UpdateCustomKeyStore,
 * ConnectCustomKeyStore, DisconnectCustomKeyStore, DeleteCustomKeyStore.
 *
 * CloudHSM key stores (AWS_CLOUDHSM) and external key stores
 * (EXTERNAL_KEY_STORE).  Every rule comes from the AWS model's documentation
 * of the operations; every ConnectionState change goes through
 * kmsi_cks_set_state (kms_cks_conn.c).  What a kind of store checks of its
 * backing system (a CloudHSM cluster, an XKS proxy) is its backend's
 * check_config, inside a transaction, and probe, with none open
 * (kms_backend.h): Create and Update never hold a transaction while a proxy
 * is asked.  The kmsuser password and the XKS secret are kept wrapped under
 * the root key and never returned or logged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/kclock.h"
#include "core/log.h"
#include "kms/kms_backend.h"
#include "kms/kms_internal.h"

#define CKS_MAX_NAME 256
#define CKS_PASSWORD_MIN 7
#define CKS_PASSWORD_MAX 32
#define CKS_TRUST_ANCHOR_MAX 5000
#define CKS_SCAN_PAGE 100

static const char TYPE_CLOUDHSM[] = "AWS_CLOUDHSM";
static const char TYPE_XKS[] = "EXTERNAL_KEY_STORE";

/* ------------------------------------------------------------- helpers */

static const char *static_connection_state(const char *s) {
  static const char *const states[] = {"CONNECTED", "CONNECTING", "FAILED", "DISCONNECTED",
                                       "DISCONNECTING"};
  for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
    if (strcmp(states[i], s) == 0) return states[i];
  return "FAILED";
}

static const char *static_error_code(const char *s) {
  static const char *const codes[] = {
      "INVALID_CREDENTIALS", "CLUSTER_NOT_FOUND",  "NETWORK_ERRORS",   "INTERNAL_ERROR",
      "INSUFFICIENT_CLOUDHSM_HSMS", "USER_LOCKED_OUT", "USER_NOT_FOUND", "USER_LOGGED_IN",
      "SUBNET_NOT_FOUND", "INSUFFICIENT_FREE_ADDRESSES_IN_SUBNET", "XKS_PROXY_ACCESS_DENIED",
      "XKS_PROXY_NOT_REACHABLE", "XKS_VPC_ENDPOINT_SERVICE_NOT_FOUND",
      "XKS_PROXY_INVALID_RESPONSE", "XKS_PROXY_INVALID_CONFIGURATION",
      "XKS_VPC_ENDPOINT_SERVICE_INVALID_CONFIGURATION", "XKS_PROXY_TIMED_OUT",
      "XKS_PROXY_INVALID_TLS_CONFIGURATION"};
  if (!s || !*s) return NULL;
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
    if (strcmp(codes[i], s) == 0) return codes[i];
  return "INTERNAL_ERROR";
}

kerr_code kmsi_cks_check_row(const store_cks *c, kerr *err) {
  const char *bad = NULL;
  size_t name_len = strlen(c->name);
  const kms_backend *b = kmsi_backend_for_type(c->type);
  if (strcmp(c->type, TYPE_CLOUDHSM) != 0 && strcmp(c->type, TYPE_XKS) != 0)
    bad = "type";
  else if (name_len == 0 || name_len > 256)
    bad = "name";
  else if (strcmp(static_connection_state(c->connection_state), c->connection_state) != 0)
    bad = "connection state";
  else if (c->connection_error[0] &&
           strcmp(static_error_code(c->connection_error), c->connection_error) != 0)
    bad = "connection error code";
  else if (c->created_ms <= 0)
    bad = "creation date";
  else if (b && b->check_row)
    b->check_row(c, &bad);
  if (!bad) return KERR_OK;
  /* Only the id and the field's name: the row may hold a wrapped password. */
  log_msg(LOG_ERROR, NULL, "custom key store %.64s: stored record is damaged (%s)", c->cks_id, bad);
  return kerr_set(err, KERR_INTERNAL,
                  "The stored record of custom key store %.64s is damaged (%s); kmsd cannot use it.",
                  c->cks_id, bad);
}

static kerr_code not_found(const char *what, kerr *err) {
  return kerr_set(err, KERR_CKS_NOT_FOUND, "Custom key store %.256s does not exist.", what);
}

/* Read the caller's store `cks_id` in tx; other accounts' and regions'
 * stores do not exist for the caller. */
static kerr_code get_own(kms_domain *d, store_tx *tx, const kms_call *call, const char *cks_id,
                         store_cks *out, kerr *err) {
  kerr_code rc;
  if (!cks_id || !*cks_id) return not_found("''", err);
  rc = d->st->ops->cks_get(tx, cks_id, out, err);
  if (rc == KERR_NOT_FOUND) return not_found(cks_id, err);
  if (rc) return rc;
  if (strcmp(out->account_id, call->caller->account_id) != 0 ||
      strcmp(out->region, call->region) != 0) {
    store_cks_clear(out);
    return not_found(cks_id, err);
  }
  rc = kmsi_cks_check_row(out, err);
  if (rc) store_cks_clear(out);
  return rc;
}

/* Page through the stores of `account_id` (NULL: every account) in
 * `region` for the first one `match` accepts. */
static kerr_code find_store(kms_domain *d, store_tx *tx, const char *account_id,
                            const char *region, kmsi_cks_match_fn match, const void *arg,
                            const char *skip_id, store_cks *found, bool *hit, kerr *err) {
  char after[STORE_CKS_ID_MAX] = "";
  kerr_code rc = KERR_OK;
  *hit = false;
  for (;;) {
    store_cks *list = NULL;
    size_t n = 0;
    rc = d->st->ops->cks_list(tx, account_id, region, after[0] ? after : NULL, CKS_SCAN_PAGE,
                              &list, &n, err);
    if (rc) return rc;
    for (size_t i = 0; i < n && !*hit; i++) {
      if (skip_id && strcmp(list[i].cks_id, skip_id) == 0) continue;
      if (match(&list[i], arg)) {
        if (found) {
          *found = list[i];
          memset(&list[i], 0, sizeof list[i]);
        }
        *hit = true;
      }
    }
    if (n) snprintf(after, sizeof after, "%s", list[n - 1].cks_id);
    store_cks_list_free(list, n);
    if (*hit || n < CKS_SCAN_PAGE) break;
  }
  return rc;
}

kerr_code kmsi_cks_find_own(kms_domain *d, store_tx *tx, const kms_call *call,
                            kmsi_cks_match_fn match, const void *arg, const char *skip_id,
                            store_cks *found, bool *hit, kerr *err) {
  return find_store(d, tx, call->caller->account_id, call->region, match, arg, skip_id, found,
                    hit, err);
}

kerr_code kmsi_cks_find_in_region(kms_domain *d, store_tx *tx, const kms_call *call,
                                  kmsi_cks_match_fn match, const void *arg, const char *skip_id,
                                  store_cks *found, bool *hit, kerr *err) {
  return find_store(d, tx, NULL, call->region, match, arg, skip_id, found, hit, err);
}

static bool match_name(const store_cks *c, const void *arg) {
  return strcmp(c->name, (const char *)arg) == 0;
}

static kerr_code check_password(const char *pw, kerr *err) {
  size_t n = strlen(pw);
  if (n < CKS_PASSWORD_MIN || n > CKS_PASSWORD_MAX)
    return kerr_set(err, KERR_VALIDATION,
                    "1 validation error detected: Value at 'keyStorePassword' failed to satisfy "
                    "constraint: Member must have length between %d and %d",
                    CKS_PASSWORD_MIN, CKS_PASSWORD_MAX);
  return KERR_OK;
}

static kerr_code check_name(const char *name, const char *member, kerr *err) {
  size_t n = strlen(name);
  if (n < 1 || n > CKS_MAX_NAME)
    return kerr_set(err, KERR_VALIDATION,
                    "1 validation error detected: Value at '%s' failed to satisfy constraint: "
                    "Member must have length between 1 and %d",
                    member, CKS_MAX_NAME);
  return KERR_OK;
}

/* Never matches; counts what it sees (find_own over a whole account). */
static bool match_count(const store_cks *c, const void *varg) {
  (void)c;
  ++*(size_t *)varg;
  return false;
}

/* ------------------------------------------------- CreateCustomKeyStore */

static const char CONN_PUBLIC[] = "PUBLIC_ENDPOINT";
static const char CONN_VPC[] = "VPC_ENDPOINT_SERVICE";

/* Copy an Xks* setting into a row field, refusing what does not fit (the
 * API checked the model's pattern already; the domain bounds it again). */
static kerr_code put_setting(const char *v, const char *member, size_t min, size_t max, char *dst,
                             size_t cap, kerr *err) {
  size_t n = strlen(v);
  if (n < min || n > max || n >= cap)
    return kerr_set(err, KERR_VALIDATION,
                    "1 validation error detected: Value at '%s' failed to satisfy constraint: "
                    "Member must have length between %zu and %zu",
                    member, min, max);
  memcpy(dst, v, n + 1);
  return KERR_OK;
}

static kerr_code check_connectivity(const char *v, kerr *err) {
  if (strcmp(v, CONN_PUBLIC) == 0 || strcmp(v, CONN_VPC) == 0) return KERR_OK;
  return kerr_set(err, KERR_VALIDATION,
                  "1 validation error detected: Value at 'xksProxyConnectivity' failed to satisfy "
                  "constraint: Member must satisfy enum value set: [PUBLIC_ENDPOINT, "
                  "VPC_ENDPOINT_SERVICE]");
}

/* The Xks* members of `x` into row `c`, for a new store (all that apply
 * required) or an update (only those given; `c` holds the current ones). */
static kerr_code put_xks_settings(const kms_xks_input *x, bool create, store_cks *c, kerr *err) {
  kerr_code rc = KERR_OK;
  if (create && (!x->connectivity || !x->uri_endpoint || !x->uri_path || !x->access_key_id ||
                 !x->secret_access_key))
    return kerr_set(err, KERR_VALIDATION,
                    "An external key store needs XksProxyConnectivity, XksProxyUriEndpoint, "
                    "XksProxyUriPath and XksProxyAuthenticationCredential.");
  if ((x->access_key_id == NULL) != (x->secret_access_key == NULL))
    return kerr_set(err, KERR_VALIDATION,
                    "XksProxyAuthenticationCredential needs both AccessKeyId and "
                    "RawSecretAccessKey.");
  if (x->connectivity) {
    rc = check_connectivity(x->connectivity, err);
    if (rc) return rc;
    snprintf(c->xks_connectivity, sizeof c->xks_connectivity, "%s", x->connectivity);
  }
  if (x->uri_endpoint &&
      (rc = put_setting(x->uri_endpoint, "xksProxyUriEndpoint", 10, 128, c->xks_uri_endpoint,
                        sizeof c->xks_uri_endpoint, err)))
    return rc;
  if (x->uri_path && (rc = put_setting(x->uri_path, "xksProxyUriPath", 10, 128, c->xks_uri_path,
                                       sizeof c->xks_uri_path, err)))
    return rc;
  if (x->vpc_service_name) {
    if (!*x->vpc_service_name && !create)
      c->xks_vpc_service_name[0] = '\0';
    else if ((rc = put_setting(x->vpc_service_name, "xksProxyVpcEndpointServiceName", 20, 64,
                               c->xks_vpc_service_name, sizeof c->xks_vpc_service_name, err)))
      return rc;
  }
  if (x->vpc_service_owner &&
      (rc = put_setting(x->vpc_service_owner, "xksProxyVpcEndpointServiceOwner", 12, 12,
                        c->xks_vpc_service_owner, sizeof c->xks_vpc_service_owner, err)))
    return rc;
  if (x->access_key_id &&
      (rc = put_setting(x->access_key_id, "xksProxyAuthenticationCredential.accessKeyId", 20, 30,
                        c->xks_access_key_id, sizeof c->xks_access_key_id, err)))
    return rc;
  if (x->secret_access_key) {
    size_t n = strlen(x->secret_access_key);
    if (n < 43 || n > 64)
      return kerr_set(err, KERR_VALIDATION,
                      "1 validation error detected: Value at "
                      "'xksProxyAuthenticationCredential.rawSecretAccessKey' failed to satisfy "
                      "constraint: Member must have length between 43 and 64");
  }
  /* What each connectivity needs and refuses. */
  if (strcmp(c->xks_connectivity, CONN_VPC) == 0) {
    if (!c->xks_vpc_service_name[0])
      return kerr_set(err, KERR_VALIDATION,
                      "An external key store with VPC_ENDPOINT_SERVICE connectivity needs "
                      "XksProxyVpcEndpointServiceName.");
  } else if (c->xks_vpc_service_name[0] || c->xks_vpc_service_owner[0]) {
    if (create || x->vpc_service_name == NULL || *x->vpc_service_name)
      return kerr_set(err, KERR_VALIDATION,
                      "XksProxyVpcEndpointServiceName and XksProxyVpcEndpointServiceOwner are "
                      "valid only with VPC_ENDPOINT_SERVICE connectivity.");
    c->xks_vpc_service_owner[0] = '\0';
  }
  return KERR_OK;
}

static bool any_xks(const kms_xks_input *x) {
  return x->uri_endpoint || x->uri_path || x->vpc_service_name || x->vpc_service_owner ||
         x->connectivity || x->access_key_id || x->secret_access_key;
}

kerr_code kms_op_create_custom_key_store(kms_domain *d, const kms_call *call,
                                      const kms_create_cks_input *in,
                                      char id_out[KMS_CKS_ID_MAX], kerr *err) {
  store_tx *tx = NULL;
  store_cks c;
  const kms_backend *b = &kms_backend_cloudhsm;
  bool hit = false, xks;
  kerr_code rc;
  int64_t now = kclock_now_ms();

  memset(&c, 0, sizeof c);
  id_out[0] = '\0';
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  rc = kmsi_authorize(d, NULL, call, NULL, "kms:CreateCustomKeyStore", err);
  if (rc) return rc;
  if (in->custom_key_store_type && strcmp(in->custom_key_store_type, TYPE_XKS) != 0 &&
      strcmp(in->custom_key_store_type, TYPE_CLOUDHSM) != 0)
    return kerr_set(err, KERR_VALIDATION, "Unknown CustomKeyStoreType.");
  xks = in->custom_key_store_type && strcmp(in->custom_key_store_type, TYPE_XKS) == 0;
  if (!in->custom_key_store_name) return kerr_set(err, KERR_VALIDATION, "CustomKeyStoreName is required.");
  rc = check_name(in->custom_key_store_name, "customKeyStoreName", err);
  if (rc) return rc;
  if (xks) {
    b = &kms_backend_xks;
    if (in->cloud_hsm_cluster_id || in->trust_anchor_certificate || in->key_store_password)
      return kerr_set(err, KERR_VALIDATION,
                      "CloudHsmClusterId, TrustAnchorCertificate and KeyStorePassword are valid "
                      "only for a custom key store of type AWS_CLOUDHSM.");
    rc = put_xks_settings(&in->xks, true, &c, err);
    if (rc) goto out;
  } else {
    if (in->has_xks_members || any_xks(&in->xks))
      return kerr_set(err, KERR_VALIDATION,
                      "Xks* parameters are valid only for a custom key store of type "
                      "EXTERNAL_KEY_STORE.");
    if (!in->cloud_hsm_cluster_id || !in->trust_anchor_certificate || !in->key_store_password)
      return kerr_set(err, KERR_VALIDATION,
                      "A CloudHSM key store needs CloudHsmClusterId, TrustAnchorCertificate and "
                      "KeyStorePassword.");
    rc = check_password(in->key_store_password, err);
    if (rc) return rc;
    if (strlen(in->cloud_hsm_cluster_id) >= KMS_CLUSTER_ID_MAX)
      return kerr_set(err, KERR_VALIDATION, "CloudHsmClusterId is too long.");
    if (strlen(in->trust_anchor_certificate) > CKS_TRUST_ANCHOR_MAX)
      return kerr_set(err, KERR_VALIDATION, "TrustAnchorCertificate is longer than %d characters.",
                      CKS_TRUST_ANCHOR_MAX);
    snprintf(c.cluster_id, sizeof c.cluster_id, "%s", in->cloud_hsm_cluster_id);
    rc = kmsi_strdup(in->trust_anchor_certificate, &c.trust_anchor_pem, err);
    if (rc) goto out;
  }

  /* The store as it will be, for its backend to judge and complete: its id
   * first, since its secret is wrapped bound to it (and an external key
   * store's backend unwraps it to ask the proxy). */
  snprintf(c.account_id, sizeof c.account_id, "%s", call->caller->account_id);
  snprintf(c.region, sizeof c.region, "%s", call->region);
  snprintf(c.name, sizeof c.name, "%s", in->custom_key_store_name);
  snprintf(c.type, sizeof c.type, "%s", b->type);
  memcpy(c.cks_id, "cks-", 4);
  if (rand_hex(c.cks_id + 4, 17)) {
    rc = kerr_set(err, KERR_INTERNAL, "The random number generator failed.");
    goto out;
  }
  if (xks)
    rc = kmsi_xks_wrap_secret(d, c.cks_id, in->xks.secret_access_key, &c.xks_secret_wrapped,
                              &c.xks_secret_wrapped_len, err);
  else
    rc = kmsi_cks_wrap_password(d, c.cks_id, in->key_store_password, &c.password_wrapped,
                                &c.password_wrapped_len, err);
  if (rc) goto out;
  snprintf(c.connection_state, sizeof c.connection_state, "DISCONNECTED");
  c.created_ms = now;
  c.state_changed_ms = now;

  rc = kmsi_begin(d, false, &tx, err);
  if (rc) goto out;
  rc = kmsi_cks_find_own(d, tx, call, match_name, in->custom_key_store_name, NULL, NULL, &hit, err);
  if (rc) goto out;
  if (hit) {
    rc = kerr_set(err, KERR_CKS_NAME_IN_USE, "Custom key store name %.256s is already in use.",
                  in->custom_key_store_name);
    goto out;
  }
  rc = b->check_config(d, call, tx, KMS_BACKEND_CHECK_CREATE, NULL, &c, err);
  if (rc) goto out;
  d->st->ops->rollback(tx);
  tx = NULL;
  /* The backing system is asked (an external key store's GetHealthStatus)
   * with no transaction open: a slow proxy holds no database connection. */
  if (b->probe) {
    rc = kmsi_may_wait(call, b, NULL, err); /* nothing written yet */
    if (rc) goto out;
    rc = b->probe(d, call, "CreateCustomKeyStore", &c, err);
    if (rc) goto out;
  }

  rc = kmsi_begin(d, true, &tx, err);
  if (rc) goto out;
  /* The checks above ran in a read transaction; under the write lock, count
   * against the quota and let the backend look again for what two concurrent
   * creates could both pass (a store on the cluster, a used proxy URI).  The
   * unique index decides names. */
  {
    size_t count = 0;
    rc = kmsi_cks_find_own(d, tx, call, match_count, &count, NULL, NULL, &hit, err);
    if (rc) goto out;
    if (count >= (size_t)d->max_custom_key_stores) {
      rc = kerr_set(err, KERR_LIMIT_EXCEEDED,
                    "This account already has %zu custom key stores in %s; the limit is %d.",
                    count, call->region, d->max_custom_key_stores);
      goto out;
    }
    rc = b->check_config(d, call, tx, KMS_BACKEND_CHECK_INSERT, NULL, &c, err);
    if (rc) goto out;
  }
  rc = d->st->ops->cks_insert(tx, &c, err);
  if (rc == KERR_ALREADY_EXISTS) {
    rc = kerr_set(err, KERR_CKS_NAME_IN_USE, "Custom key store name %.256s is already in use.",
                  in->custom_key_store_name);
    goto out;
  }
  if (rc) goto out;
  rc = d->st->ops->commit(tx, err);
  tx = NULL;
  if (rc) goto out;
  if (xks)
    log_msg(LOG_INFO, call->request_id,
            "custom key store %s created for external key store proxy %s%s (%s, DISCONNECTED)",
            c.cks_id, c.xks_uri_endpoint, c.xks_uri_path, c.xks_connectivity);
  else
    log_msg(LOG_INFO, call->request_id, "custom key store %s created for cluster %s (DISCONNECTED)",
            c.cks_id, c.cluster_id);
  snprintf(id_out, KMS_CKS_ID_MAX, "%s", c.cks_id);
out:
  if (tx) d->st->ops->rollback(tx);
  store_cks_clear(&c);
  return rc;
}

/* ---------------------------------------------- DescribeCustomKeyStores */

void kms_describe_cks_output_clear(kms_describe_cks_output *o) {
  if (!o) return;
  for (size_t i = 0; o->stores && i < o->nstores; i++) {
    free(o->stores[i].custom_key_store_name);
    free(o->stores[i].trust_anchor_certificate);
  }
  free(o->stores);
  free(o->next_marker);
  memset(o, 0, sizeof *o);
}

static kerr_code fill_entry(const store_cks *c, kms_custom_key_store *e, kerr *err) {
  kerr_code rc;
  memset(e, 0, sizeof *e);
  /* A damaged row is an internal fault, never shown as some other store. */
  rc = kmsi_cks_check_row(c, err);
  if (rc) return rc;
  snprintf(e->custom_key_store_id, sizeof e->custom_key_store_id, "%s", c->cks_id);
  rc = kmsi_strdup(c->name, &e->custom_key_store_name, err);
  if (rc) return rc;
  e->custom_key_store_type = strcmp(c->type, TYPE_XKS) == 0 ? TYPE_XKS : TYPE_CLOUDHSM;
  snprintf(e->cloud_hsm_cluster_id, sizeof e->cloud_hsm_cluster_id, "%s", c->cluster_id);
  if (c->trust_anchor_pem) {
    rc = kmsi_strdup(c->trust_anchor_pem, &e->trust_anchor_certificate, err);
    if (rc) return rc;
  }
  e->connection_state = static_connection_state(c->connection_state);
  e->connection_error_code =
      strcmp(e->connection_state, "FAILED") == 0 ? static_error_code(c->connection_error) : NULL;
  if (strcmp(e->connection_state, "FAILED") == 0 && !e->connection_error_code)
    e->connection_error_code = "INTERNAL_ERROR";
  e->creation_date_ms = c->created_ms;
  if (strcmp(c->type, TYPE_XKS) == 0) {
    e->has_xks = true;
    e->xks_connectivity = strcmp(c->xks_connectivity, CONN_VPC) == 0 ? CONN_VPC : CONN_PUBLIC;
    snprintf(e->xks_access_key_id, sizeof e->xks_access_key_id, "%s", c->xks_access_key_id);
    snprintf(e->xks_uri_endpoint, sizeof e->xks_uri_endpoint, "%s", c->xks_uri_endpoint);
    snprintf(e->xks_uri_path, sizeof e->xks_uri_path, "%s", c->xks_uri_path);
    snprintf(e->xks_vpc_service_name, sizeof e->xks_vpc_service_name, "%s",
             c->xks_vpc_service_name);
    /* XksProxyVpcEndpointServiceOwner: "If not provided, the Amazon Web
     * Services account ID calling the action will be used" (Create's
     * model), and Describe shows it for every VPC_ENDPOINT_SERVICE store
     * ("This field appears only when the XKS uses an VPC endpoint service").
     * The store's account is the account that created or updated it. */
    if (strcmp(c->xks_connectivity, CONN_VPC) == 0)
      snprintf(e->xks_vpc_service_owner, sizeof e->xks_vpc_service_owner, "%s",
               c->xks_vpc_service_owner[0] ? c->xks_vpc_service_owner : c->account_id);
  }
  return KERR_OK;
}

kerr_code kms_op_describe_custom_key_stores(kms_domain *d, const kms_call *call,
                                         const kms_describe_cks_input *in,
                                         kms_describe_cks_output *out, kerr *err) {
  store_tx *tx = NULL;
  store_cks one, *list = NULL;
  size_t limit = 0, n = 0, nlist = 0;
  char after[STORE_CKS_ID_MAX + 1];
  bool hit = false;
  kerr_code rc;

  memset(&one, 0, sizeof one);
  memset(out, 0, sizeof *out);
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  rc = kmsi_authorize(d, NULL, call, NULL, "kms:DescribeCustomKeyStores", err);
  if (rc) return rc;
  if (in->custom_key_store_id && in->custom_key_store_name)
    return kerr_set(err, KERR_VALIDATION,
                    "Specify either CustomKeyStoreId or CustomKeyStoreName, but not both.");
  rc = kmsi_limit(in->list.limit, KMS_DEFAULT_LIST_LIMIT, KMS_MAX_LIST_LIMIT, &limit, err);
  if (rc) return rc;
  if (in->list.marker) {
    rc = kmsi_marker_parse('C', in->list.marker, after, sizeof after, err);
    if (rc) return rc;
  }
  rc = kmsi_begin(d, false, &tx, err);
  if (rc) return rc;
  if (in->custom_key_store_id || in->custom_key_store_name) {
    if (in->custom_key_store_id) {
      rc = get_own(d, tx, call, in->custom_key_store_id, &one, err);
      if (rc) goto out;
    } else {
      rc = kmsi_cks_find_own(d, tx, call, match_name, in->custom_key_store_name, NULL, &one, &hit, err);
      if (rc) goto out;
      if (!hit) {
        rc = not_found(in->custom_key_store_name, err);
        goto out;
      }
    }
    /* One store: a marker past it leaves nothing to show. */
    out->stores = calloc(1, sizeof *out->stores);
    if (!out->stores) {
      rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
      goto out;
    }
    if (in->list.marker && strcmp(one.cks_id, after) <= 0) goto out;
    out->nstores = 1;
    rc = fill_entry(&one, &out->stores[0], err);
    goto out;
  }
  rc = d->st->ops->cks_list(tx, call->caller->account_id, call->region,
                            in->list.marker ? after : NULL, limit + 1, &list, &nlist, err);
  if (rc) goto out;
  n = nlist;
  out->truncated = n > limit;
  if (out->truncated) n = limit;
  out->stores = calloc(n ? n : 1, sizeof *out->stores);
  if (!out->stores) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    out->nstores = i + 1;
    rc = fill_entry(&list[i], &out->stores[i], err);
    if (rc) goto out;
  }
  if (out->truncated) {
    out->next_marker = kmsi_marker_make('C', list[n - 1].cks_id);
    if (!out->next_marker) rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
out:
  if (tx) d->st->ops->rollback(tx);
  store_cks_list_free(list, nlist);
  store_cks_clear(&one);
  if (rc) kms_describe_cks_output_clear(out);
  return rc;
}

/* ------------------------------------------------- UpdateCustomKeyStore */

/* Which changes the store's state allows (UpdateCustomKeyStore's
 * documentation): for CloudHSM the name while CONNECTED or DISCONNECTED and
 * the rest DISCONNECTED; for external key stores the name, the credential
 * and the path while CONNECTED or DISCONNECTED, and the endpoint, the
 * connectivity and the VPC endpoint service only while DISCONNECTED. */
static kerr_code check_update_state(const kms_update_cks_input *in, const store_cks *c, bool xks,
                                    kerr *err) {
  bool disconnected = strcmp(c->connection_state, "DISCONNECTED") == 0;
  bool connected = strcmp(c->connection_state, "CONNECTED") == 0;
  bool needs_disconnected =
      xks ? (in->xks.uri_endpoint || in->xks.connectivity || in->xks.vpc_service_name ||
             in->xks.vpc_service_owner)
          : (in->key_store_password || in->cloud_hsm_cluster_id);
  if (needs_disconnected ? disconnected : (disconnected || connected)) return KERR_OK;
  if (needs_disconnected)
    return kerr_set(err, KERR_CKS_INVALID_STATE,
                    xks ? "Custom key store %s is %s: disconnect it before changing its "
                          "XksProxyUriEndpoint, XksProxyConnectivity or VPC endpoint service."
                        : "Custom key store %s is %s: disconnect it before changing its password "
                          "or cluster.",
                    c->cks_id, c->connection_state);
  return kerr_set(err, KERR_CKS_INVALID_STATE,
                  "Custom key store %s is %s: it can change only while it is CONNECTED or "
                  "DISCONNECTED.",
                  c->cks_id, c->connection_state);
}

/* How many times an update starts over when concurrent requests changed,
 * between its GetHealthStatus and its write, what that GetHealthStatus
 * checked; then KMSInternalException, which the model calls retryable. */
#define UPDATE_ATTEMPTS 3

/* `src` into `dst` for comparison: the plain fields and an owned copy of
 * the wrapped XKS secret; the CloudHSM password and trust anchor are left
 * out (NULL).  store_cks_clear `dst`, also after a failure. */
static kerr_code copy_row(const store_cks *src, store_cks *dst, kerr *err) {
  *dst = *src;
  dst->trust_anchor_pem = NULL;
  dst->password_wrapped = NULL;
  dst->password_wrapped_len = 0;
  dst->pending_password_wrapped = NULL;
  dst->pending_password_wrapped_len = 0;
  dst->xks_secret_wrapped = NULL;
  dst->xks_secret_wrapped_len = 0;
  if (!src->xks_secret_wrapped) return KERR_OK;
  dst->xks_secret_wrapped = malloc(src->xks_secret_wrapped_len);
  if (!dst->xks_secret_wrapped) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  memcpy(dst->xks_secret_wrapped, src->xks_secret_wrapped, src->xks_secret_wrapped_len);
  dst->xks_secret_wrapped_len = src->xks_secret_wrapped_len;
  return KERR_OK;
}

/* Everything UpdateCustomKeyStore decides from the stored row, in `tx`
 * (`when`: KMS_BACKEND_CHECK_UPDATE in a read transaction, ..._LOCKED in
 * the write transaction that then writes `c`): read the caller's store,
 * check the request against its type and ConnectionState, compute the row
 * as it will be, check the name and let the backend's check_config judge
 * it.  The errors are the operation's, in its order.  On KERR_OK *bp is the
 * store's backend, `cur` a copy of the stored row (copy_row) and `c` the
 * new row; store_cks_clear both, also after a failure. */
static kerr_code update_plan(kms_domain *d, const kms_call *call, const kms_update_cks_input *in,
                             store_tx *tx, kms_backend_check when, const kms_backend **bp,
                             store_cks *cur, store_cks *c, kerr *err) {
  const kms_backend *b;
  bool hit = false, xks;
  kerr_code rc;

  rc = get_own(d, tx, call, in->custom_key_store_id, c, err);
  if (rc) return rc;
  b = kmsi_backend_for_type(c->type);
  if (!b) return kerr_set(err, KERR_INTERNAL, "kmsd has no backend for key stores of type %s.", c->type);
  *bp = b;
  xks = strcmp(c->type, TYPE_XKS) == 0;
  rc = copy_row(c, cur, err);
  if (rc) return rc;
  if (!xks && (in->has_xks_members || any_xks(&in->xks)))
    return kerr_set(err, KERR_VALIDATION,
                    "Xks* parameters are valid only for external key stores; %s is a CloudHSM key "
                    "store.",
                    c->cks_id);
  if (xks && (in->key_store_password || in->cloud_hsm_cluster_id))
    return kerr_set(err, KERR_VALIDATION,
                    "KeyStorePassword and CloudHsmClusterId are valid only for CloudHSM key stores; "
                    "%s is an external key store.",
                    c->cks_id);
  rc = check_update_state(in, c, xks, err);
  if (rc) return rc;
  if (xks) {
    /* A change of connectivity comes with a new endpoint (and, to
     * VPC_ENDPOINT_SERVICE, a service name; to PUBLIC_ENDPOINT, none). */
    if (in->xks.connectivity && strcmp(in->xks.connectivity, c->xks_connectivity) != 0) {
      bool to_vpc = strcmp(in->xks.connectivity, CONN_VPC) == 0;
      if (!in->xks.uri_endpoint || strcasecmp(in->xks.uri_endpoint, c->xks_uri_endpoint) == 0 ||
          (to_vpc && (!in->xks.vpc_service_name || !*in->xks.vpc_service_name)))
        return kerr_set(err, KERR_VALIDATION,
                        to_vpc ? "Changing XksProxyConnectivity to VPC_ENDPOINT_SERVICE needs a new "
                                 "XksProxyUriEndpoint and an XksProxyVpcEndpointServiceName."
                               : "Changing XksProxyConnectivity to PUBLIC_ENDPOINT needs a new "
                                 "XksProxyUriEndpoint.");
      if (!to_vpc && in->xks.vpc_service_name == NULL) {
        c->xks_vpc_service_name[0] = '\0';
        c->xks_vpc_service_owner[0] = '\0';
      }
    }
    rc = put_xks_settings(&in->xks, false, c, err);
    if (rc) return rc;
    if (in->xks.secret_access_key) {
      free(c->xks_secret_wrapped);
      c->xks_secret_wrapped = NULL;
      c->xks_secret_wrapped_len = 0;
      rc = kmsi_xks_wrap_secret(d, c->cks_id, in->xks.secret_access_key, &c->xks_secret_wrapped,
                                &c->xks_secret_wrapped_len, err);
      if (rc) return rc;
    }
  }
  if (in->new_custom_key_store_name && strcmp(in->new_custom_key_store_name, c->name) != 0) {
    rc = kmsi_cks_find_own(d, tx, call, match_name, in->new_custom_key_store_name, c->cks_id, NULL,
                           &hit, err);
    if (rc) return rc;
    if (hit)
      return kerr_set(err, KERR_CKS_NAME_IN_USE, "Custom key store name %.256s is already in use.",
                      in->new_custom_key_store_name);
    snprintf(c->name, sizeof c->name, "%s", in->new_custom_key_store_name);
  }
  if (in->cloud_hsm_cluster_id)
    snprintf(c->cluster_id, sizeof c->cluster_id, "%s", in->cloud_hsm_cluster_id);
  if (b->check_config) {
    rc = b->check_config(d, call, tx, when, cur, c, err);
    if (rc) return rc;
  }
  if (in->key_store_password) {
    /* The pending password may be on some HSMs (a change of kmsuser's
     * password cut short), and only the next connect moves the others to
     * it.  Told the password the store already has, keep pending as a
     * candidate; told a new one, the operator has set it on every HSM
     * (hsm-cli), so no HSM has pending any more. */
    bool keep_pending = c->pending_password_wrapped &&
                        kmsi_cks_password_is(d, c->cks_id, c->password_wrapped,
                                             c->password_wrapped_len, in->key_store_password);
    free(c->password_wrapped);
    c->password_wrapped = NULL;
    c->password_wrapped_len = 0;
    if (!keep_pending) {
      free(c->pending_password_wrapped);
      c->pending_password_wrapped = NULL;
      c->pending_password_wrapped_len = 0;
    }
    rc = kmsi_cks_wrap_password(d, c->cks_id, in->key_store_password, &c->password_wrapped,
                                &c->password_wrapped_len, err);
    if (rc) return rc;
  }
  return KERR_OK;
}

/* UpdateCustomKeyStore runs in three steps, so that no transaction is open
 * while the backing system is asked (an external key store's
 * GetHealthStatus may take up to --xks-timeout):
 *
 *   1. in a read transaction, every check the store answers (update_plan
 *      with KMS_BACKEND_CHECK_UPDATE): the errors and their order are the
 *      operation's;
 *   2. with no transaction open, the backend's probe of the new settings,
 *      when the update changes what reaches the backing system;
 *   3. in the write transaction, the row read again and every check of
 *      step 1 run again on it (..._LOCKED: uniqueness under the lock), then
 *      the write.
 *
 * Between 1 and 3 other requests may have changed the store.  A change the
 * checks of step 3 judge (its ConnectionState, a name or a proxy URI taken
 * meanwhile) is answered as if it had come first, as with one transaction:
 * a store another request moved to CONNECTING meanwhile is
 * CustomKeyStoreInvalidStateException.  A change of what step 2 checked
 * (another update changed the path while this one changes the credential,
 * say) means that the settings about to be written were never asked about
 * together: the update starts over from step 1 (at most UPDATE_ATTEMPTS
 * times), so that what is written is always what the proxy accepted, and
 * the other request's change is kept. */
kerr_code kms_op_update_custom_key_store(kms_domain *d, const kms_call *call,
                                      const kms_update_cks_input *in, kerr *err) {
  store_tx *tx = NULL;
  store_cks c, cur, probed;
  const kms_backend *b = NULL;
  bool have_probe, xks;
  kerr_code rc;

  memset(&c, 0, sizeof c);
  memset(&cur, 0, sizeof cur);
  memset(&probed, 0, sizeof probed);
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  rc = kmsi_authorize(d, NULL, call, NULL, "kms:UpdateCustomKeyStore", err);
  if (rc) return rc;
  if (in->new_custom_key_store_name) {
    rc = check_name(in->new_custom_key_store_name, "newCustomKeyStoreName", err);
    if (rc) return rc;
  }
  if (in->key_store_password) {
    rc = check_password(in->key_store_password, err);
    if (rc) return rc;
  }
  if (in->cloud_hsm_cluster_id && strlen(in->cloud_hsm_cluster_id) >= KMS_CLUSTER_ID_MAX)
    return kerr_set(err, KERR_VALIDATION, "CloudHsmClusterId is too long.");

  for (int attempt = 1;; attempt++) {
    /* 1. What the store answers, in a read transaction. */
    rc = kmsi_begin(d, false, &tx, err);
    if (rc) goto out;
    rc = update_plan(d, call, in, tx, KMS_BACKEND_CHECK_UPDATE, &b, &cur, &c, err);
    d->st->ops->rollback(tx);
    tx = NULL;
    if (rc) goto out;
    /* 2. The backing system, with no transaction open. */
    have_probe = false;
    store_cks_clear(&probed);
    if (b->probe && b->probe_differs(d, &cur, &c)) {
      /* Nothing written yet.  An update that reaches the write without a
       * probe changes nothing the proxy sees, so the kmsi_cks_refresh
       * below (a connect) never runs for a caller that must not wait. */
      rc = kmsi_may_wait(call, b, cur.cks_id, err);
      if (rc) goto out;
      rc = b->probe(d, call, "UpdateCustomKeyStore", &c, err);
      if (rc) goto out;
      rc = copy_row(&c, &probed, err);
      if (rc) goto out;
      have_probe = true;
    }
    store_cks_clear(&cur);
    store_cks_clear(&c);
    /* 3. Under the write lock: the same checks on the row as it is now. */
    rc = kmsi_begin(d, true, &tx, err);
    if (rc) goto out;
    rc = update_plan(d, call, in, tx, KMS_BACKEND_CHECK_UPDATE_LOCKED, &b, &cur, &c, err);
    if (rc) goto out;
    if (!b->probe || !b->probe_differs(d, &cur, &c) ||
        (have_probe && !b->probe_differs(d, &probed, &c)))
      break;
    /* What reaches the proxy now is not what step 2 asked about. */
    d->st->ops->rollback(tx);
    tx = NULL;
    store_cks_clear(&cur);
    store_cks_clear(&c);
    if (attempt == UPDATE_ATTEMPTS) {
      rc = kerr_set(err, KERR_INTERNAL,
                    "Custom key store %.64s kept changing while this update checked its new "
                    "settings with the external key store proxy; nothing was changed. Retry the "
                    "update.",
                    in->custom_key_store_id);
      goto out;
    }
    log_msg(LOG_INFO, call->request_id,
            "custom key store %.64s: changed by another request during its update's "
            "GetHealthStatus; checking the update again",
            in->custom_key_store_id);
  }
  xks = strcmp(c.type, TYPE_XKS) == 0;
  rc = d->st->ops->cks_update(tx, &c, err);
  if (rc == KERR_ALREADY_EXISTS) {
    rc = kerr_set(err, KERR_CKS_NAME_IN_USE, "Custom key store name %.256s is already in use.",
                  c.name);
    goto out;
  }
  if (rc) goto out;
  rc = d->st->ops->commit(tx, err);
  tx = NULL;
  if (rc) goto out;
  log_msg(LOG_INFO, call->request_id, "custom key store %s updated (%s%s%s%s%s)", c.cks_id,
          in->new_custom_key_store_name ? "name " : "", in->key_store_password ? "password " : "",
          in->cloud_hsm_cluster_id ? "cluster " : "", in->xks.access_key_id ? "credential " : "",
          any_xks(&in->xks) ? "proxy settings" : "");
  /* A CONNECTED external key store keeps serving with its new credential
   * or path: its live connection is rebuilt from the stored row. */
  if (xks && strcmp(c.connection_state, "CONNECTED") == 0 && kmsi_xks_settings_differ(d, &cur, &c))
    kmsi_cks_refresh(d, c.cks_id, call->request_id);
out:
  if (tx) d->st->ops->rollback(tx);
  store_cks_clear(&c);
  store_cks_clear(&cur);
  store_cks_clear(&probed);
  return rc;
}

/* ------------------------------------- Connect / Disconnect / Delete */

/* Read the caller's store in its own read transaction. */
static kerr_code read_own(kms_domain *d, const kms_call *call, const char *cks_id, store_cks *c,
                          kerr *err) {
  store_tx *tx = NULL;
  kerr_code rc = kmsi_begin(d, false, &tx, err);
  if (rc) return rc;
  rc = get_own(d, tx, call, cks_id, c, err);
  d->st->ops->rollback(tx);
  return rc;
}

kerr_code kms_op_connect_custom_key_store(kms_domain *d, const kms_call *call,
                                       const char *custom_key_store_id, kerr *err) {
  static const char *const from_disconnected[] = {"DISCONNECTED", NULL};
  store_cks c;
  const kms_backend *b = NULL;
  char prev[STORE_ENUM_MAX] = "";
  kerr_code rc;

  memset(&c, 0, sizeof c);
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  rc = kmsi_authorize(d, NULL, call, NULL, "kms:ConnectCustomKeyStore", err);
  if (rc) return rc;
  rc = read_own(d, call, custom_key_store_id, &c, err);
  if (rc) goto out;
  b = kmsi_backend_for_type(c.type);
  if (!b) {
    rc = kerr_set(err, KERR_INTERNAL, "kmsd has no backend for key stores of type %s.", c.type);
    goto out;
  }
  if (strcmp(c.connection_state, "CONNECTING") == 0 || strcmp(c.connection_state, "CONNECTED") == 0)
    goto out;
  if (strcmp(c.connection_state, "DISCONNECTED") != 0) {
    rc = kerr_set(err, KERR_CKS_INVALID_STATE,
                  "Custom key store %s is %s. To reconnect it, disconnect it first.", c.cks_id,
                  c.connection_state);
    goto out;
  }
  /* What the API answers at once; the rest is the worker's (a
   * ConnectionErrorCode). */
  if (b->check_config) {
    rc = b->check_config(d, call, NULL, KMS_BACKEND_CHECK_CONNECT, NULL, &c, err);
    if (rc) goto out;
  }
  rc = kmsi_cks_set_state(d, c.cks_id, from_disconnected, "CONNECTING", NULL, call->request_id,
                          prev, err);
  if (rc == KERR_CONFLICT) {
    /* Another request moved it first: answer as the table says for that state. */
    if (strcmp(prev, "CONNECTING") == 0 || strcmp(prev, "CONNECTED") == 0) {
      rc = KERR_OK;
      kerr_clear(err);
    } else {
      rc = kerr_set(err, KERR_CKS_INVALID_STATE, "Custom key store %s is %s.", c.cks_id, prev);
    }
    goto out;
  }
  if (rc) goto out;
  rc = kmsi_cks_connect_async(d, c.cks_id, call->request_id, err);
  if (rc) {
    static const char *const from_connecting[] = {"CONNECTING", NULL};
    kerr e2;
    kerr_clear(&e2);
    kmsi_cks_set_state(d, c.cks_id, from_connecting, "FAILED", "INTERNAL_ERROR", call->request_id,
                       NULL, &e2);
  }
out:
  store_cks_clear(&c);
  return rc;
}

kerr_code kms_op_disconnect_custom_key_store(kms_domain *d, const kms_call *call,
                                          const char *custom_key_store_id, kerr *err) {
  store_cks c;
  const kms_backend *b;
  char prev[STORE_ENUM_MAX] = "";
  kerr_code rc;

  memset(&c, 0, sizeof c);
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  rc = kmsi_authorize(d, NULL, call, NULL, "kms:DisconnectCustomKeyStore", err);
  if (rc) return rc;
  rc = read_own(d, call, custom_key_store_id, &c, err);
  if (rc) goto out;
  b = kmsi_backend_for_type(c.type);
  if (!b) {
    rc = kerr_set(err, KERR_INTERNAL, "kmsd has no backend for key stores of type %s.", c.type);
    goto out;
  }
  /* kmsi_cks_detach waits for the store's calls in flight and for a
   * connect worker's GetHealthStatus: ask before the state changes. */
  rc = kmsi_may_wait(call, b, c.cks_id, err);
  if (rc) goto out;
  /* With several nodes on the store it may also wait for another node's
   * connect worker (a cluster-wide lock), as long as a call to a backing
   * system: never on a thread that must not wait. */
  if (d->st->ops->lock_named) {
    rc = kmsi_may_wait_for(call, c.type, c.cks_id, err);
    if (rc) goto out;
  }
  rc = kmsi_cks_disconnect(d, c.cks_id, call->request_id, prev, err);
  if (rc == KERR_CONFLICT && prev[0])
    rc = kerr_set(err, KERR_CKS_INVALID_STATE, "Custom key store %s is %s; it cannot be disconnected.",
                  c.cks_id, prev);
out:
  store_cks_clear(&c);
  return rc;
}

kerr_code kms_op_delete_custom_key_store(kms_domain *d, const kms_call *call,
                                      const char *custom_key_store_id, kerr *err) {
  store_tx *tx = NULL;
  store_cks c;
  int64_t nkeys = 0;
  kerr_code rc;

  memset(&c, 0, sizeof c);
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  rc = kmsi_authorize(d, NULL, call, NULL, "kms:DeleteCustomKeyStore", err);
  if (rc) return rc;
  rc = kmsi_begin(d, true, &tx, err);
  if (rc) return rc;
  rc = get_own(d, tx, call, custom_key_store_id, &c, err);
  if (rc) goto out;
  if (strcmp(c.connection_state, "DISCONNECTED") != 0) {
    rc = kerr_set(err, KERR_CKS_INVALID_STATE,
                  "Custom key store %s is %s: disconnect it before deleting it.", c.cks_id,
                  c.connection_state);
    goto out;
  }
  rc = d->st->ops->cks_key_count(tx, c.cks_id, &nkeys, err);
  if (rc) goto out;
  if (nkeys > 0) {
    rc = kerr_set(err, KERR_CKS_HAS_CMKS,
                  "Custom key store %s contains %lld KMS key(s), counting keys pending deletion. "
                  "Delete them first.",
                  c.cks_id, (long long)nkeys);
    goto out;
  }
  rc = d->st->ops->cks_delete(tx, c.cks_id, err);
  if (rc) goto out;
  rc = d->st->ops->commit(tx, err);
  tx = NULL;
  if (rc) goto out;
  log_msg(LOG_INFO, call->request_id, "custom key store %s deleted", c.cks_id);
out:
  if (tx) d->st->ops->rollback(tx);
  store_cks_clear(&c);
  return rc;
}

/* ------------------------------------------------ keys, for resolution */

kerr_code kmsi_cks_key_info(kms_domain *d, store_tx *tx, kmsi_key *k, kerr *err) {
  char state[STORE_ENUM_MAX];
  kerr_code rc;
  if (!k->row.custom_key_store_id) return KERR_OK;
  rc = d->st->ops->cks_state(tx, k->row.custom_key_store_id, state, sizeof state,
                             k->cloud_hsm_cluster_id, sizeof k->cloud_hsm_cluster_id, err);
  if (rc == KERR_NOT_FOUND) {
    k->cks_unavailable = true;
    k->cloud_hsm_cluster_id[0] = '\0';
    return KERR_OK;
  }
  if (rc) return rc;
  k->cks_unavailable = strcmp(state, "CONNECTED") != 0;
  return KERR_OK;
}
