/* kms_cks.c - the custom key store operations of the KMS API:
 * CreateCustomKeyStore, DescribeCustomKeyStores, UpdateCustomKeyStore,
 * ConnectCustomKeyStore, DisconnectCustomKeyStore, DeleteCustomKeyStore.
 *
 * Only CloudHSM key stores (AWS_CLOUDHSM) exist for now; the record keeps
 * room for external key stores (type, xks_config), which are refused with
 * UnsupportedOperationException until they are built.  Every rule comes from
 * the AWS model's documentation of the operations; every ConnectionState
 * change goes through kmsi_cks_set_state (kms_cks_conn.c).  Clusters are
 * reached only through hsm_cluster.h.  The kmsuser password is kept wrapped
 * under the root key and never returned or logged. */
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/kclock.h"
#include "core/log.h"
#include "cloudhsm/hsm_cluster.h"
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

/* cluster-[2-7a-zA-Z]{11,16}, the model's pattern. */
static bool cluster_id_ok(const char *s) {
  size_t n;
  if (strncmp(s, "cluster-", 8) != 0) return false;
  s += 8;
  for (n = 0; s[n]; n++)
    if (!((s[n] >= '2' && s[n] <= '7') || (s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z')))
      return false;
  return n >= 11 && n <= 16;
}

kerr_code kmsi_cks_check_row(const store_cks *c, kerr *err) {
  const char *bad = NULL;
  size_t name_len = strlen(c->name);
  bool cloudhsm = strcmp(c->type, TYPE_CLOUDHSM) == 0;
  if (!cloudhsm && strcmp(c->type, TYPE_XKS) != 0)
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
  else if (cloudhsm && !cluster_id_ok(c->cluster_id))
    bad = "cluster id";
  else if (cloudhsm && (!c->trust_anchor_pem ||
                        strncmp(c->trust_anchor_pem, "-----BEGIN CERTIFICATE-----", 27) != 0))
    bad = "trust anchor certificate";
  else if (cloudhsm && (!c->password_wrapped || c->password_wrapped_len == 0))
    bad = "kmsuser password";
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

/* Scan the caller's stores (account+region), skipping `skip_id`, for the
 * first one `match` accepts: *hit tells whether there is one, and when
 * `found` is given it receives that store (store_cks_clear). */
typedef bool (*cks_match_fn)(const store_cks *c, const void *arg);

static kerr_code find_own(kms_domain *d, store_tx *tx, const kms_call *call, cks_match_fn match,
                          const void *arg, const char *skip_id, store_cks *found, bool *hit,
                          kerr *err) {
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

/* Whether two PEM certificates are the same certificate (whitespace and
 * PEM line breaks aside).  Unparsable input is "not the same". */
static bool same_certificate(const char *a_pem, const char *b_pem) {
  BIO *a_bio = NULL, *b_bio = NULL;
  X509 *a = NULL, *b = NULL;
  bool same = false;
  if (!a_pem || !b_pem) return false;
  a_bio = BIO_new_mem_buf(a_pem, -1);
  b_bio = BIO_new_mem_buf(b_pem, -1);
  if (!a_bio || !b_bio) goto out;
  a = PEM_read_bio_X509(a_bio, NULL, NULL, NULL);
  b = PEM_read_bio_X509(b_bio, NULL, NULL, NULL);
  same = a && b && X509_cmp(a, b) == 0;
out:
  X509_free(a);
  X509_free(b);
  BIO_free(a_bio);
  BIO_free(b_bio);
  return same;
}

static kerr_code describe_cluster(kms_domain *d, const kms_call *call, const char *cluster_id,
                                  hsm_cluster_view *v, kerr *err) {
  kerr_code rc = hsm_cluster_describe(d->hsm, call->caller->account_id, call->region, cluster_id, v, err);
  if (rc == KERR_HSM_CLUSTER_NOT_FOUND || rc == KERR_NOT_FOUND || rc == KERR_HSM_RESOURCE_NOT_FOUND)
    return kerr_set(err, KERR_HSM_CLUSTER_NOT_FOUND, "AWS CloudHSM cluster %.64s not found.",
                    cluster_id);
  return rc;
}

static kerr_code check_cluster_active(const hsm_cluster_view *v, kerr *err) {
  if (strcmp(v->state, "ACTIVE") != 0)
    return kerr_set(err, KERR_HSM_CLUSTER_NOT_ACTIVE,
                    "AWS CloudHSM cluster %s is not active (it is %s). Initialize and activate it.",
                    v->cluster_id, v->state);
  return KERR_OK;
}

/* Two or more active HSMs in different Availability Zones: what the model
 * requires of a cluster behind a key store that creates keys. */
static kerr_code check_cluster_config(const hsm_cluster_view *v, kerr *err) {
  if (v->active_hsms < 2 || v->active_zones < 2)
    return kerr_set(err, KERR_HSM_CLUSTER_INVALID_CONFIG,
                    "AWS CloudHSM cluster %s must have at least two active HSMs in different "
                    "Availability Zones (it has %d active HSM(s) in %d zone(s)).",
                    v->cluster_id, v->active_hsms, v->active_zones);
  return KERR_OK;
}

typedef struct in_use_arg {
  kms_domain *d;
  const kms_call *call;
  const char *cluster_id;
  const char *lineage;
} in_use_arg;

/* A store uses the cluster, or a cluster sharing its backup history. */
static bool match_cluster_in_use(const store_cks *c, const void *varg) {
  const in_use_arg *a = varg;
  if (strcmp(c->type, TYPE_CLOUDHSM) != 0) return false;
  if (strcmp(c->cluster_id, a->cluster_id) == 0) return true;
  return a->lineage[0] && strcmp(c->cluster_lineage, a->lineage) == 0;
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
  store_cks c, other;
  hsm_cluster_view v;
  in_use_arg use;
  bool hit = false;
  kerr_code rc;
  int64_t now = kclock_now_ms();

  memset(&c, 0, sizeof c);
  memset(&other, 0, sizeof other);
  memset(&v, 0, sizeof v);
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
  rc = find_own(d, tx, call, match_name, in->custom_key_store_name, NULL, NULL, &hit, err);
  if (rc) goto out;
  if (hit) {
    rc = kerr_set(err, KERR_CKS_NAME_IN_USE, "Custom key store name %.256s is already in use.",
                  in->custom_key_store_name);
    goto out;
  }
  rc = describe_cluster(d, call, in->cloud_hsm_cluster_id, &v, err);
  if (rc) goto out;
  use.d = d;
  use.call = call;
  use.cluster_id = v.cluster_id;
  use.lineage = v.lineage;
  rc = find_own(d, tx, call, match_cluster_in_use, &use, NULL, &other, &hit, err);
  if (rc) goto out;
  if (hit) {
    rc = kerr_set(err, KERR_HSM_CLUSTER_IN_USE,
                  "AWS CloudHSM cluster %s (or a cluster sharing its backup history) is already "
                  "associated with custom key store %s.",
                  v.cluster_id, other.cks_id);
    goto out;
  }
  rc = check_cluster_active(&v, err);
  if (rc) goto out;
  rc = check_cluster_config(&v, err);
  if (rc) goto out;
  if (!same_certificate(in->trust_anchor_certificate, v.trust_anchor_pem)) {
    rc = kerr_set(err, KERR_INCORRECT_TRUST_ANCHOR,
                  "The trust anchor certificate is not the trust anchor of AWS CloudHSM cluster %s.",
                  v.cluster_id);
    goto out;
  }
  d->st->ops->rollback(tx);
  tx = NULL;

  memcpy(c.cks_id, "cks-", 4);
  if (rand_hex(c.cks_id + 4, 17)) {
    rc = kerr_set(err, KERR_INTERNAL, "The random number generator failed.");
    goto out;
  }
  snprintf(c.account_id, sizeof c.account_id, "%s", call->caller->account_id);
  snprintf(c.region, sizeof c.region, "%s", call->region);
  snprintf(c.name, sizeof c.name, "%s", in->custom_key_store_name);
  snprintf(c.type, sizeof c.type, "%s", TYPE_CLOUDHSM);
  snprintf(c.cluster_id, sizeof c.cluster_id, "%s", v.cluster_id);
  snprintf(c.cluster_lineage, sizeof c.cluster_lineage, "%s", v.lineage);
  rc = kmsi_strdup(in->trust_anchor_certificate, &c.trust_anchor_pem, err);
  if (rc) goto out;
  rc = kmsi_cks_wrap_password(d, c.cks_id, in->key_store_password, &c.password_wrapped,
                              &c.password_wrapped_len, err);
  if (rc) goto out;
  snprintf(c.connection_state, sizeof c.connection_state, "DISCONNECTED");
  c.created_ms = now;
  c.state_changed_ms = now;

  rc = kmsi_begin(d, true, &tx, err);
  if (rc) goto out;
  /* The checks above ran in a read transaction; under the write lock, count
   * against the quota and look again for a store on the cluster, so two
   * concurrent creates cannot both pass.  The unique index decides names. */
  {
    size_t count = 0;
    rc = find_own(d, tx, call, match_count, &count, NULL, NULL, &hit, err);
    if (rc) goto out;
    if (count >= (size_t)d->max_custom_key_stores) {
      rc = kerr_set(err, KERR_LIMIT_EXCEEDED,
                    "This account already has %zu custom key stores in %s; the limit is %d.",
                    count, call->region, d->max_custom_key_stores);
      goto out;
    }
    rc = find_own(d, tx, call, match_cluster_in_use, &use, NULL, NULL, &hit, err);
    if (rc) goto out;
    if (hit) {
      rc = kerr_set(err, KERR_HSM_CLUSTER_IN_USE,
                    "AWS CloudHSM cluster %s (or a cluster sharing its backup history) is already "
                    "associated with a custom key store.",
                    v.cluster_id);
      goto out;
    }
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
  hsm_cluster_view_clear(&v);
  store_cks_clear(&c);
  store_cks_clear(&other);
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
      rc = find_own(d, tx, call, match_name, in->custom_key_store_name, NULL, &one, &hit, err);
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
  store_cks c;
  hsm_cluster_view nv, ov;
  bool hit = false, disconnected, connected;
  bool changes_more = in->key_store_password || in->cloud_hsm_cluster_id;
  kerr_code rc;

  memset(&c, 0, sizeof c);
  memset(&nv, 0, sizeof nv);
  memset(&ov, 0, sizeof ov);
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
  if (strcmp(c.type, TYPE_CLOUDHSM) != 0) {
    rc = xks_unsupported(err);
    goto out;
  }
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
    rc = find_own(d, tx, call, match_name, in->new_custom_key_store_name, c.cks_id, NULL, &hit,
                  err);
    if (rc) goto out;
    if (hit) {
      rc = kerr_set(err, KERR_CKS_NAME_IN_USE, "Custom key store name %.256s is already in use.",
                    in->new_custom_key_store_name);
      goto out;
    }
    snprintf(c.name, sizeof c.name, "%s", in->new_custom_key_store_name);
  }
  if (in->cloud_hsm_cluster_id && strcmp(in->cloud_hsm_cluster_id, c.cluster_id) != 0) {
    const char *old_lineage = c.cluster_lineage;
    rc = describe_cluster(d, call, in->cloud_hsm_cluster_id, &nv, err);
    if (rc) goto out;
    /* Stores made before lineage was recorded ask the old cluster. */
    if (!old_lineage[0] &&
        hsm_cluster_describe(d->hsm, c.account_id, c.region, c.cluster_id, &ov, NULL) == KERR_OK)
      old_lineage = ov.lineage;
    if (!old_lineage[0] || strcmp(old_lineage, nv.lineage) != 0) {
      rc = kerr_set(err, KERR_HSM_CLUSTER_NOT_RELATED,
                    "AWS CloudHSM cluster %s does not share a backup history with cluster %s.",
                    nv.cluster_id, c.cluster_id);
      goto out;
    }
    rc = check_cluster_active(&nv, err);
    if (rc) goto out;
    rc = check_cluster_config(&nv, err);
    if (rc) goto out;
    snprintf(c.cluster_id, sizeof c.cluster_id, "%s", nv.cluster_id);
    snprintf(c.cluster_lineage, sizeof c.cluster_lineage, "%s", nv.lineage);
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
  hsm_cluster_view_clear(&nv);
  hsm_cluster_view_clear(&ov);
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
  hsm_cluster_view v;
  char prev[STORE_ENUM_MAX] = "";
  kerr_code rc;

  memset(&c, 0, sizeof c);
  memset(&v, 0, sizeof v);
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  rc = kmsi_authorize(d, NULL, call, NULL, "kms:ConnectCustomKeyStore", err);
  if (rc) return rc;
  rc = read_own(d, call, custom_key_store_id, &c, err);
  if (rc) goto out;
  if (strcmp(c.type, TYPE_CLOUDHSM) != 0) {
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
  /* A missing cluster is reported by the worker (CLUSTER_NOT_FOUND), as
   * AWS does; a present one must be active, and able to survive a zone. */
  rc = hsm_cluster_describe(d->hsm, c.account_id, c.region, c.cluster_id, &v, err);
  if (rc == KERR_OK) {
    rc = check_cluster_active(&v, err);
    if (rc) goto out;
    if (v.active_hsms >= 2 && v.active_zones < 2) {
      rc = check_cluster_config(&v, err);
      goto out;
    }
  } else if (rc != KERR_HSM_CLUSTER_NOT_FOUND) {
    goto out;
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
  hsm_cluster_view_clear(&v);
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
  if (strcmp(c.type, TYPE_CLOUDHSM) != 0) {
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
