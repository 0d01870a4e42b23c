/* kms_cks.c - the custom key store operations of the KMS API:
 * CreateCustomKeyStore, DescribeCustomKeyStores, UpdateCustomKeyStore,
 * ConnectCustomKeyStore, DisconnectCustomKeyStore, DeleteCustomKeyStore.
 *
 * Only CloudHSM key stores (AWS_CLOUDHSM) exist for now; the record keeps
 * room for external key stores (type, xks_config), which are refused with
 * UnsupportedOperationException until they are built.  Every rule comes from
 * the AWS model's documentation of the operations; every ConnectionState
 * change goes through kmsi_cks_set_state (kms_cks_conn.c).  What a kind of
 * store checks of its backing system (a CloudHSM cluster) is its backend's
 * check_config (kms_backend.h).  The kmsuser password is kept wrapped
 * under the root key and never returned or logged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
      "SUBNET_NOT_FOUND", "INSUFFICIENT_FREE_ADDRESSES_IN_SUBNET"};
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

static kerr_code xks_unsupported(kerr *err) {
  return kerr_set(err, KERR_UNSUPPORTED_OPERATION,
                  "External key stores (EXTERNAL_KEY_STORE) are not supported yet.");
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

kerr_code kmsi_cks_find_own(kms_domain *d, store_tx *tx, const kms_call *call,
                            kmsi_cks_match_fn match, const void *arg, const char *skip_id,
                            store_cks *found, bool *hit, kerr *err) {
  char after[STORE_CKS_ID_MAX] = "";
  kerr_code rc = KERR_OK;
  *hit = false;
  for (;;) {
    store_cks *list = NULL;
    size_t n = 0;
    rc = d->st->ops->cks_list(tx, call->caller->account_id, call->region,
                              after[0] ? after : NULL, CKS_SCAN_PAGE, &list, &n, err);
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

kerr_code kms_create_custom_key_store(kms_domain *d, const kms_call *call,
                                      const kms_create_cks_input *in,
                                      char id_out[KMS_CKS_ID_MAX], kerr *err) {
  store_tx *tx = NULL;
  store_cks c;
  const kms_backend *b = &kms_backend_cloudhsm;
  bool hit = false;
  kerr_code rc;
  int64_t now = kclock_now_ms();

  memset(&c, 0, sizeof c);
  id_out[0] = '\0';
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  rc = kmsi_authorize(d, NULL, call, NULL, "kms:CreateCustomKeyStore", err);
  if (rc) return rc;
  if (in->custom_key_store_type && strcmp(in->custom_key_store_type, TYPE_XKS) == 0)
    return xks_unsupported(err);
  if (in->custom_key_store_type && strcmp(in->custom_key_store_type, TYPE_CLOUDHSM) != 0)
    return kerr_set(err, KERR_VALIDATION, "Unknown CustomKeyStoreType.");
  if (in->has_xks_members)
    return kerr_set(err, KERR_VALIDATION,
                    "Xks* parameters are valid only for a custom key store of type "
                    "EXTERNAL_KEY_STORE.");
  if (!in->custom_key_store_name) return kerr_set(err, KERR_VALIDATION, "CustomKeyStoreName is required.");
  rc = check_name(in->custom_key_store_name, "customKeyStoreName", err);
  if (rc) return rc;
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

  rc = kmsi_begin(d, false, &tx, err);
  if (rc) return rc;
  rc = kmsi_cks_find_own(d, tx, call, match_name, in->custom_key_store_name, NULL, NULL, &hit, err);
  if (rc) goto out;
  if (hit) {
    rc = kerr_set(err, KERR_CKS_NAME_IN_USE, "Custom key store name %.256s is already in use.",
                  in->custom_key_store_name);
    goto out;
  }
  /* The store as it will be, for its backend to judge and complete. */
  snprintf(c.account_id, sizeof c.account_id, "%s", call->caller->account_id);
  snprintf(c.region, sizeof c.region, "%s", call->region);
  snprintf(c.name, sizeof c.name, "%s", in->custom_key_store_name);
  snprintf(c.type, sizeof c.type, "%s", b->type);
  snprintf(c.cluster_id, sizeof c.cluster_id, "%s", in->cloud_hsm_cluster_id);
  rc = kmsi_strdup(in->trust_anchor_certificate, &c.trust_anchor_pem, err);
  if (rc) goto out;
  rc = b->check_config(d, call, tx, KMS_BACKEND_CHECK_CREATE, NULL, &c, err);
  if (rc) goto out;
  d->st->ops->rollback(tx);
  tx = NULL;

  memcpy(c.cks_id, "cks-", 4);
  if (rand_hex(c.cks_id + 4, 17)) {
    rc = kerr_set(err, KERR_INTERNAL, "The random number generator failed.");
    goto out;
  }
  rc = kmsi_cks_wrap_password(d, c.cks_id, in->key_store_password, &c.password_wrapped,
                              &c.password_wrapped_len, err);
  if (rc) goto out;
  snprintf(c.connection_state, sizeof c.connection_state, "DISCONNECTED");
  c.created_ms = now;
  c.state_changed_ms = now;

  rc = kmsi_begin(d, true, &tx, err);
  if (rc) goto out;
  /* The checks above ran in a read transaction; under the write lock, count
   * against the quota and let the backend look again for what two concurrent
   * creates could both pass (a store on the cluster).  The unique index
   * decides names. */
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
  return KERR_OK;
}

kerr_code kms_describe_custom_key_stores(kms_domain *d, const kms_call *call,
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

kerr_code kms_update_custom_key_store(kms_domain *d, const kms_call *call,
                                      const kms_update_cks_input *in, kerr *err) {
  store_tx *tx = NULL;
  store_cks c, cur;
  const kms_backend *b = NULL;
  bool hit = false, disconnected, connected;
  bool changes_more = in->key_store_password || in->cloud_hsm_cluster_id;
  kerr_code rc;

  memset(&c, 0, sizeof c);
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

  rc = kmsi_begin(d, true, &tx, err);
  if (rc) return rc;
  rc = get_own(d, tx, call, in->custom_key_store_id, &c, err);
  if (rc) goto out;
  b = kmsi_backend_for_type(c.type);
  if (!b) {
    rc = xks_unsupported(err);
    goto out;
  }
  /* The stored row as it was (its fixed fields: owned ones may change). */
  cur = c;
  cur.trust_anchor_pem = NULL;
  cur.password_wrapped = NULL;
  cur.pending_password_wrapped = NULL;
  cur.xks_secret_wrapped = NULL;
  if (in->has_xks_members) {
    rc = kerr_set(err, KERR_VALIDATION,
                  "Xks* parameters are valid only for external key stores; %s is a CloudHSM key "
                  "store.",
                  c.cks_id);
    goto out;
  }
  disconnected = strcmp(c.connection_state, "DISCONNECTED") == 0;
  connected = strcmp(c.connection_state, "CONNECTED") == 0;
  if (changes_more ? !disconnected : !(disconnected || connected)) {
    rc = kerr_set(err, KERR_CKS_INVALID_STATE,
                  changes_more
                      ? "Custom key store %s is %s: disconnect it before changing its password "
                        "or cluster."
                      : "Custom key store %s is %s: its name can change only while it is "
                        "CONNECTED or DISCONNECTED.",
                  c.cks_id, c.connection_state);
    goto out;
  }
  if (in->new_custom_key_store_name && strcmp(in->new_custom_key_store_name, c.name) != 0) {
    rc = kmsi_cks_find_own(d, tx, call, match_name, in->new_custom_key_store_name, c.cks_id, NULL, &hit,
                  err);
    if (rc) goto out;
    if (hit) {
      rc = kerr_set(err, KERR_CKS_NAME_IN_USE, "Custom key store name %.256s is already in use.",
                    in->new_custom_key_store_name);
      goto out;
    }
    snprintf(c.name, sizeof c.name, "%s", in->new_custom_key_store_name);
  }
  if (in->cloud_hsm_cluster_id) snprintf(c.cluster_id, sizeof c.cluster_id, "%s", in->cloud_hsm_cluster_id);
  if (b->check_config) {
    rc = b->check_config(d, call, tx, KMS_BACKEND_CHECK_UPDATE, &cur, &c, err);
    if (rc) goto out;
  }
  if (in->key_store_password) {
    /* The pending password may be on some HSMs (a change of kmsuser's
     * password cut short), and only the next connect moves the others to
     * it.  Told the password the store already has, keep pending as a
     * candidate; told a new one, the operator has set it on every HSM
     * (hsm-cli), so no HSM has pending any more. */
    bool keep_pending = c.pending_password_wrapped &&
                        kmsi_cks_password_is(d, c.cks_id, c.password_wrapped,
                                             c.password_wrapped_len, in->key_store_password);
    free(c.password_wrapped);
    c.password_wrapped = NULL;
    if (!keep_pending) {
      free(c.pending_password_wrapped);
      c.pending_password_wrapped = NULL;
      c.pending_password_wrapped_len = 0;
    }
    rc = kmsi_cks_wrap_password(d, c.cks_id, in->key_store_password, &c.password_wrapped,
                                &c.password_wrapped_len, err);
    if (rc) goto out;
  }
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
  log_msg(LOG_INFO, call->request_id, "custom key store %s updated (%s%s%s)", c.cks_id,
          in->new_custom_key_store_name ? "name " : "", in->key_store_password ? "password " : "",
          in->cloud_hsm_cluster_id ? "cluster" : "");
out:
  if (tx) d->st->ops->rollback(tx);
  store_cks_clear(&c);
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

kerr_code kms_connect_custom_key_store(kms_domain *d, const kms_call *call,
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
    rc = xks_unsupported(err);
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

kerr_code kms_disconnect_custom_key_store(kms_domain *d, const kms_call *call,
                                          const char *custom_key_store_id, kerr *err) {
  static const char *const from_live[] = {"CONNECTED", "CONNECTING", "FAILED", NULL};
  static const char *const from_disconnecting[] = {"DISCONNECTING", NULL};
  store_cks c;
  char prev[STORE_ENUM_MAX] = "";
  kerr_code rc;

  memset(&c, 0, sizeof c);
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  rc = kmsi_authorize(d, NULL, call, NULL, "kms:DisconnectCustomKeyStore", err);
  if (rc) return rc;
  rc = read_own(d, call, custom_key_store_id, &c, err);
  if (rc) goto out;
  if (!kmsi_backend_for_type(c.type)) {
    rc = xks_unsupported(err);
    goto out;
  }
  rc = kmsi_cks_set_state(d, c.cks_id, from_live, "DISCONNECTING", NULL, call->request_id, prev,
                          err);
  if (rc == KERR_CONFLICT) {
    rc = kerr_set(err, KERR_CKS_INVALID_STATE, "Custom key store %s is %s; it cannot be disconnected.",
                  c.cks_id, prev);
    goto out;
  }
  if (rc) goto out;
  kmsi_cks_detach(d, c.cks_id);
  rc = kmsi_cks_set_state(d, c.cks_id, from_disconnecting, "DISCONNECTED", NULL, call->request_id,
                          NULL, err);
out:
  store_cks_clear(&c);
  return rc;
}

kerr_code kms_delete_custom_key_store(kms_domain *d, const kms_call *call,
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
  store_cks c;
  kerr_code rc;
  if (!k->row.custom_key_store_id) return KERR_OK;
  memset(&c, 0, sizeof c);
  rc = d->st->ops->cks_get(tx, k->row.custom_key_store_id, &c, err);
  if (rc == KERR_NOT_FOUND) {
    k->cks_unavailable = true;
    return KERR_OK;
  }
  if (rc) return rc;
  k->cks_unavailable = strcmp(c.connection_state, "CONNECTED") != 0;
  snprintf(k->cloud_hsm_cluster_id, sizeof k->cloud_hsm_cluster_id, "%s", c.cluster_id);
  store_cks_clear(&c);
  return KERR_OK;
}
