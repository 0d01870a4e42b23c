/* kms_keys.c - the key lifecycle operations: CreateKey, DescribeKey,
 * ListKeys, Enable/DisableKey, UpdateKeyDescription, Schedule/CancelKeyDeletion,
 * and the key policy operations (Put/GetKeyPolicy, ListKeyPolicies). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/kclock.h"
#include "core/log.h"
#include "kms/kms_internal.h"

static const char *const symmetric_algorithms[] = {"SYMMETRIC_DEFAULT"};
static const char *const policy_names[] = {"default"};

/* Map stored enum text to the static strings the metadata hands out. */
static const char *static_state(const char *s) {
  static const char *const states[] = {"Creating",      "Enabled",     "Disabled",
                                       "PendingDeletion", "PendingImport",
                                       "PendingReplicaDeletion", "Unavailable", "Updating"};
  for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
    if (strcmp(states[i], s) == 0) return states[i];
  return "Unavailable";
}

static const char *static_origin(const char *s) {
  static const char *const origins[] = {"AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"};
  for (size_t i = 0; i < sizeof origins / sizeof origins[0]; i++)
    if (strcmp(origins[i], s) == 0) return origins[i];
  return "AWS_KMS";
}

static kerr_code fill_metadata(const kmsi_key *k, kms_key_metadata *out, kerr *err) {
  kerr_code rc;
  memset(out, 0, sizeof *out);
  snprintf(out->aws_account_id, sizeof out->aws_account_id, "%s", k->row.account_id);
  snprintf(out->key_id, sizeof out->key_id, "%s", k->row.key_id);
  snprintf(out->arn, sizeof out->arn, "%s", k->arn);
  out->creation_date_ms = k->row.created_ms;
  out->enabled = strcmp(k->row.key_state, KMS_STATE_ENABLED) == 0;
  rc = kmsi_strdup(k->row.description, &out->description, err);
  if (rc) goto fail;
  if (k->row.custom_key_store_id) {
    rc = kmsi_strdup(k->row.custom_key_store_id, &out->custom_key_store_id, err);
    if (rc) goto fail;
  }
  if (k->row.xks_key_id) {
    rc = kmsi_strdup(k->row.xks_key_id, &out->xks_key_id, err);
    if (rc) goto fail;
  }
  out->key_usage = "ENCRYPT_DECRYPT";
  out->key_state = static_state(k->row.key_state);
  /* custom key stores: a key whose store is not CONNECTED is Unavailable */
  if (k->cks_unavailable && strcmp(k->row.key_state, KMS_STATE_PENDING_DELETION) != 0)
    out->key_state = static_state(KMS_STATE_UNAVAILABLE);
  snprintf(out->cloud_hsm_cluster_id, sizeof out->cloud_hsm_cluster_id, "%s",
           k->cloud_hsm_cluster_id);
  if (strcmp(k->row.key_state, KMS_STATE_PENDING_DELETION) == 0) {
    out->has_deletion_date = true;
    out->deletion_date_ms = k->row.deletion_date_ms;
    out->pending_deletion_window_days = k->row.pending_window_days;
  }
  out->origin = static_origin(k->row.origin);
  out->key_manager = "CUSTOMER";
  out->key_spec = "SYMMETRIC_DEFAULT";
  out->customer_master_key_spec = "SYMMETRIC_DEFAULT";
  out->encryption_algorithms = symmetric_algorithms;
  out->n_encryption_algorithms = 1;
  out->multi_region = false;
  snprintf(out->current_key_material_id, sizeof out->current_key_material_id, "%s",
           k->row.current_material_id);
  return KERR_OK;
fail:
  kms_key_metadata_clear(out);
  return rc;
}

void kms_key_metadata_clear(kms_key_metadata *m) {
  if (!m) return;
  free(m->description);
  free(m->custom_key_store_id);
  free(m->xks_key_id);
  memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------- CreateKey */

static kerr_code check_create_input(const kms_create_key_input *in, kerr *err) {
  const char *spec = in->key_spec ? in->key_spec : in->customer_master_key_spec;
  if (in->key_spec && in->customer_master_key_spec)
    return kerr_set(err, KERR_VALIDATION,
                    "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. "
                    "CustomerMasterKeySpec parameter is deprecated. Use KeySpec parameter.");
  if (spec && strcmp(spec, "SYMMETRIC_DEFAULT") != 0)
    return kerr_set(err, KERR_UNSUPPORTED_OPERATION,
                    "KeySpec %.64s is not supported: this service supports SYMMETRIC_DEFAULT keys only.",
                    spec);
  if (in->key_usage && strcmp(in->key_usage, "ENCRYPT_DECRYPT") != 0)
    return kerr_set(err, KERR_UNSUPPORTED_OPERATION,
                    "KeyUsage %.64s is not supported for SYMMETRIC_DEFAULT keys; use ENCRYPT_DECRYPT.",
                    in->key_usage);
  /* custom key stores: Origin AWS_CLOUDHSM needs a store id; a store id
   * implies AWS_CLOUDHSM when Origin is omitted (the store's type decides,
   * and only CloudHSM key stores exist for now). */
  if (in->origin && strcmp(in->origin, "AWS_CLOUDHSM") == 0 && !in->custom_key_store_id)
    return kerr_set(err, KERR_VALIDATION,
                    "Origin AWS_CLOUDHSM requires the CustomKeyStoreId of a CloudHSM key store.");
  if (in->origin && strcmp(in->origin, "EXTERNAL_KEY_STORE") == 0 && !in->custom_key_store_id)
    return kerr_set(err, KERR_VALIDATION,
                    "Origin EXTERNAL_KEY_STORE requires the CustomKeyStoreId of an external key "
                    "store.");
  if (in->origin && strcmp(in->origin, "AWS_KMS") != 0 && strcmp(in->origin, "AWS_CLOUDHSM") != 0 &&
      strcmp(in->origin, "EXTERNAL_KEY_STORE") != 0)
    return kerr_set(err, KERR_UNSUPPORTED_OPERATION,
                    "Origin %.64s is not supported yet: this service creates AWS_KMS keys and "
                    "keys in custom key stores only.",
                    in->origin);
  if (in->custom_key_store_id && in->origin && strcmp(in->origin, "AWS_KMS") == 0)
    return kerr_set(err, KERR_UNSUPPORTED_OPERATION,
                    "Origin AWS_KMS is not valid for a key in a custom key store.");
  if (in->xks_key_id && !in->custom_key_store_id)
    return kerr_set(err, KERR_VALIDATION,
                    "XksKeyId is only valid for keys in an external key store.");
  if (in->multi_region)
    return kerr_set(err, KERR_UNSUPPORTED_OPERATION, "Multi-Region keys are not supported.");
  if (in->description && strlen(in->description) > KMS_MAX_DESCRIPTION)
    return kerr_set(err, KERR_VALIDATION,
                    "1 validation error detected: Value at 'description' failed to satisfy "
                    "constraint: Member must have length less than or equal to %d",
                    KMS_MAX_DESCRIPTION);
  if (in->policy && !*in->policy)
    return kerr_set(err, KERR_MALFORMED_POLICY, "The key policy document is empty.");
  return kmsi_validate_tags(in->tags, in->ntags, err);
}

kerr_code kms_op_create_key(kms_domain *d, const kms_call *call, const kms_create_key_input *in,
                         kms_key_metadata *out, kerr *err) {
  kerr_code rc;
  store_tx *tx = NULL;
  char *default_policy = NULL;
  const char *policy;
  kmsi_key k;
  int64_t now = kclock_now_ms();
  bool hsm_key_made = false, xks = false;
  char store_type[STORE_ENUM_MAX] = "";

  memset(&k, 0, sizeof k);
  memset(out, 0, sizeof *out);
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  rc = check_create_input(in, err);
  if (rc) return rc;
  rc = kmsi_authorize(d, NULL, call, NULL, "kms:CreateKey", err);
  if (rc) return rc;
  if (in->ntags) {
    rc = kmsi_authorize(d, NULL, call, NULL, "kms:TagResource", err);
    if (rc) return rc;
  }

  if (uuid_v4(k.row.key_id)) return kerr_set(err, KERR_INTERNAL, "The random number generator failed.");
  snprintf(k.row.account_id, sizeof k.row.account_id, "%s", call->caller->account_id);
  snprintf(k.row.region, sizeof k.row.region, "%s", call->region);
  kmsi_key_arn(&k.row, k.arn);
  if (in->policy) {
    policy = in->policy;
  } else {
    default_policy = kmsi_default_policy(k.row.account_id);
    if (!default_policy) {
      rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
      goto out;
    }
    policy = default_policy;
  }
  rc = kmsi_check_new_policy(call, k.arn, k.row.account_id, policy,
                             in->bypass_policy_lockout_safety_check, err);
  if (rc) goto out;

  k.row.created_ms = now;
  rc = kmsi_strdup(in->description, &k.row.description, err);
  if (rc) goto out;
  snprintf(k.row.key_state, sizeof k.row.key_state, "%s", KMS_STATE_ENABLED);
  snprintf(k.row.key_usage, sizeof k.row.key_usage, "ENCRYPT_DECRYPT");
  snprintf(k.row.key_spec, sizeof k.row.key_spec, "SYMMETRIC_DEFAULT");
  snprintf(k.row.origin, sizeof k.row.origin, "AWS_KMS");
  k.row.policy_version = 1;

  /* custom key stores: the key is generated in the store's HSMs first; the
   * row carries no material, only a fixed material id for its blobs. */
  if (in->custom_key_store_id) {
    rc = kmsi_cks_create_key(d, call, in->custom_key_store_id, k.row.key_id, in->origin,
                             in->xks_key_id, store_type, k.cloud_hsm_cluster_id, err);
    if (rc) goto out;
    hsm_key_made = true;
    xks = strcmp(store_type, "EXTERNAL_KEY_STORE") == 0;
    snprintf(k.row.origin, sizeof k.row.origin, "%s", xks ? "EXTERNAL_KEY_STORE" : "AWS_CLOUDHSM");
    rc = kmsi_strdup(in->custom_key_store_id, &k.row.custom_key_store_id, err);
    if (rc) goto out;
    if (xks) {
      /* Double encryption: the inner layer is under key material kmsd
       * makes for the key below (as for AWS_KMS keys), the outer one by the
       * proxy under XksKeyId. */
      rc = kmsi_strdup(in->xks_key_id, &k.row.xks_key_id, err);
      if (rc) goto out;
    } else if (rand_hex(k.row.current_material_id, 64)) {
      rc = kerr_set(err, KERR_INTERNAL, "The random number generator failed.");
      goto out;
    }
  }

  rc = kmsi_begin(d, true, &tx, err);
  if (rc) goto out;
  /* The key quota, counted under the write lock so that concurrent creates
   * cannot both take the last place. */
  {
    int64_t count = 0;
    rc = d->st->ops->key_count(tx, k.row.account_id, k.row.region, &count, err);
    if (rc) goto out;
    if (count >= d->max_keys) {
      rc = kerr_set(err, KERR_LIMIT_EXCEEDED,
                    "This account already has %lld KMS keys in %s; the limit is %d.",
                    (long long)count, k.row.region, d->max_keys);
      goto out;
    }
  }
  /* Each KMS key of an external key store has its own external key. */
  if (xks) {
    char other[UUID_STR_LEN];
    bool used = false;
    rc = d->st->ops->cks_key_by_xks_id(tx, in->custom_key_store_id, in->xks_key_id, other, &used,
                                       err);
    if (rc) goto out;
    if (used) {
      rc = kerr_set(err, KERR_XKS_KEY_IN_USE,
                    "XksKeyId %.128s is already associated with KMS key %s in this external key "
                    "store.",
                    in->xks_key_id, other);
      goto out;
    }
  }
  /* The key row first (materials reference it), then its material. */
  rc = d->st->ops->key_insert(tx, &k.row, policy, err);
  if (rc) goto out;
  if (!in->custom_key_store_id || xks) {
    rc = kmsi_new_material(d, tx, k.row.key_id, 0, "", now, k.row.current_material_id, err);
    if (rc) goto out;
    rc = d->st->ops->key_update(tx, &k.row, err);
    if (rc) goto out;
  }
  for (size_t i = 0; i < in->ntags; i++) {
    rc = d->st->ops->tag_put(tx, k.row.key_id, in->tags[i].key, in->tags[i].value, err);
    if (rc) goto out;
  }
  rc = d->st->ops->commit(tx, err);
  tx = NULL;
  if (rc) goto out;
  log_msg(LOG_INFO, call->request_id, "created key %s", k.arn);
  hsm_key_made = false;
  rc = fill_metadata(&k, out, err);
out:
  if (tx) d->st->ops->rollback(tx);
  /* custom key stores: a key the store never recorded must not stay in the HSMs */
  if (hsm_key_made && !xks) kmsi_cks_delete_key(d, in->custom_key_store_id, k.row.key_id);
  free(default_policy);
  kmsi_key_clear(&k);
  return rc;
}

/* ----------------------------------------------------------- DescribeKey */

static kerr_code describe_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err) {
  return fill_metadata(k, arg, err);
}

kerr_code kms_op_describe_key(kms_domain *d, const kms_call *call, const char *key_id,
                           kms_key_metadata *out, kerr *err) {
  memset(out, 0, sizeof *out);
  return kmsi_with_key(d, call, key_id, &KMSI_DESCRIBE, false, "kms:DescribeKey", describe_fn,
                       out, err);
}

/* -------------------------------------------------------------- ListKeys */

void kms_list_keys_output_clear(kms_list_keys_output *o) {
  if (!o) return;
  free(o->keys);
  free(o->next_marker);
  memset(o, 0, sizeof *o);
}

kerr_code kms_op_list_keys(kms_domain *d, const kms_call *call, const kms_list_input *in,
                        kms_list_keys_output *out, kerr *err) {
  kerr_code rc;
  store_tx *tx = NULL;
  size_t limit = 0, n = 0;
  char after[UUID_STR_LEN + 1];
  char(*ids)[UUID_STR_LEN] = NULL;

  memset(out, 0, sizeof *out);
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  rc = kmsi_authorize(d, NULL, call, NULL, "kms:ListKeys", err);
  if (rc) return rc;
  rc = kmsi_limit(in ? in->limit : 0, KMS_DEFAULT_LIST_LIMIT, KMS_MAX_LIST_LIMIT, &limit, err);
  if (rc) return rc;
  if (in && in->marker) {
    rc = kmsi_marker_parse('K', in->marker, after, sizeof after, err);
    if (rc) return rc;
  }
  rc = kmsi_begin(d, false, &tx, err);
  if (rc) return rc;
  /* One extra row tells whether the list is truncated. */
  rc = d->st->ops->key_list(tx, call->caller->account_id, call->region,
                            in && in->marker ? after : NULL, limit + 1, &ids, &n, err);
  if (rc) goto out;
  out->truncated = n > limit;
  if (out->truncated) n = limit;
  out->keys = calloc(n ? n : 1, sizeof *out->keys);
  if (!out->keys) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    store_key tmp;
    memset(&tmp, 0, sizeof tmp);
    snprintf(tmp.key_id, sizeof tmp.key_id, "%s", ids[i]);
    snprintf(tmp.account_id, sizeof tmp.account_id, "%s", call->caller->account_id);
    snprintf(tmp.region, sizeof tmp.region, "%s", call->region);
    snprintf(out->keys[i].key_id, sizeof out->keys[i].key_id, "%s", ids[i]);
    kmsi_key_arn(&tmp, out->keys[i].key_arn);
  }
  out->nkeys = n;
  if (out->truncated) {
    out->next_marker = kmsi_marker_make('K', ids[n - 1]);
    if (!out->next_marker) rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
out:
  free(ids);
  d->st->ops->rollback(tx);
  if (rc) kms_list_keys_output_clear(out);
  return rc;
}

/* ------------------------------------------------------ Enable / Disable */

static kerr_code set_state_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err) {
  kerr_code rc = kmsi_check_state(k, KMSI_NEED_NOT_PENDING, err);
  if (rc) return rc;
  snprintf(k->row.key_state, sizeof k->row.key_state, "%s", (const char *)arg);
  return d->st->ops->key_update(tx, &k->row, err);
}

kerr_code kms_op_enable_key(kms_domain *d, const kms_call *call, const char *key_id, kerr *err) {
  return kmsi_with_key(d, call, key_id, &KMSI_MANAGE, true, "kms:EnableKey", set_state_fn,
                       (void *)KMS_STATE_ENABLED, err);
}

kerr_code kms_op_disable_key(kms_domain *d, const kms_call *call, const char *key_id, kerr *err) {
  return kmsi_with_key(d, call, key_id, &KMSI_MANAGE, true, "kms:DisableKey", set_state_fn,
                       (void *)KMS_STATE_DISABLED, err);
}

/* -------------------------------------------------- UpdateKeyDescription */

static kerr_code describe_update_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg,
                                    kerr *err) {
  kerr_code rc = kmsi_check_state(k, KMSI_NEED_NOT_PENDING, err);
  char *copy = NULL;
  if (rc) return rc;
  rc = kmsi_strdup(arg, &copy, err);
  if (rc) return rc;
  free(k->row.description);
  k->row.description = copy;
  return d->st->ops->key_update(tx, &k->row, err);
}

kerr_code kms_op_update_key_description(kms_domain *d, const kms_call *call, const char *key_id,
                                     const char *description, kerr *err) {
  if (!description) return kerr_set(err, KERR_VALIDATION, "Description is required.");
  if (strlen(description) > KMS_MAX_DESCRIPTION)
    return kerr_set(err, KERR_VALIDATION,
                    "1 validation error detected: Value at 'description' failed to satisfy "
                    "constraint: Member must have length less than or equal to %d",
                    KMS_MAX_DESCRIPTION);
  return kmsi_with_key(d, call, key_id, &KMSI_MANAGE, true, "kms:UpdateKeyDescription",
                       describe_update_fn, (void *)description, err);
}

/* ------------------------------------------------------------- deletion */

typedef struct schedule_arg {
  int days;
  kms_schedule_deletion_output *out;
} schedule_arg;

static kerr_code schedule_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err) {
  schedule_arg *a = arg;
  kerr_code rc = kmsi_check_state(k, KMSI_NEED_NOT_PENDING, err);
  if (rc) return rc;
  snprintf(k->row.key_state, sizeof k->row.key_state, "%s", KMS_STATE_PENDING_DELETION);
  k->row.deletion_date_ms = kclock_now_ms() + (int64_t)a->days * KMS_DAY_MS;
  k->row.pending_window_days = a->days;
  rc = d->st->ops->key_update(tx, &k->row, err);
  if (rc) return rc;
  snprintf(a->out->key_id, sizeof a->out->key_id, "%s", k->arn);
  a->out->deletion_date_ms = k->row.deletion_date_ms;
  a->out->key_state = KMS_STATE_PENDING_DELETION;
  a->out->pending_window_days = a->days;
  return KERR_OK;
}

kerr_code kms_op_schedule_key_deletion(kms_domain *d, const kms_call *call, const char *key_id,
                                    int pending_window_days, kms_schedule_deletion_output *out,
                                    kerr *err) {
  schedule_arg a = {pending_window_days ? pending_window_days : 30, out};
  memset(out, 0, sizeof *out);
  if (a.days < 7 || a.days > 30)
    return kerr_set(err, KERR_VALIDATION,
                    "1 validation error detected: Value '%d' at 'pendingWindowInDays' failed to "
                    "satisfy constraint: Member must have value between 7 and 30",
                    a.days);
  kerr_code rc = kmsi_with_key(d, call, key_id, &KMSI_MANAGE, true, "kms:ScheduleKeyDeletion",
                               schedule_fn, &a, err);
  if (rc) memset(out, 0, sizeof *out);
  return rc;
}

static kerr_code cancel_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err) {
  if (strcmp(k->row.key_state, KMS_STATE_PENDING_DELETION) != 0)
    return kerr_set(err, KERR_INVALID_STATE, "%s is not pending deletion.", k->arn);
  snprintf(k->row.key_state, sizeof k->row.key_state, "%s", KMS_STATE_DISABLED);
  k->row.deletion_date_ms = 0;
  k->row.pending_window_days = 0;
  kerr_code rc = d->st->ops->key_update(tx, &k->row, err);
  if (rc) return rc;
  snprintf(arg, KMS_ARN_MAX, "%s", k->arn);
  return KERR_OK;
}

kerr_code kms_op_cancel_key_deletion(kms_domain *d, const kms_call *call, const char *key_id,
                                  char key_arn_out[KMS_ARN_MAX], kerr *err) {
  key_arn_out[0] = '\0';
  return kmsi_with_key(d, call, key_id, &KMSI_MANAGE, true, "kms:CancelKeyDeletion", cancel_fn,
                       key_arn_out, err);
}

/* ------------------------------------------------------------- policies */

static kerr_code check_policy_name(const char *name, kerr *err) {
  if (name && strcmp(name, "default") != 0)
    return kerr_set(err, KERR_NOT_FOUND, "No such policy exists: %.128s", name);
  return KERR_OK;
}

typedef struct put_policy_arg {
  const kms_call *call;
  const char *policy;
  bool bypass;
} put_policy_arg;

static kerr_code put_policy_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err) {
  put_policy_arg *a = arg;
  kerr_code rc = kmsi_check_new_policy(a->call, k->arn, k->row.account_id, a->policy, a->bypass, err);
  if (rc) return rc;
  rc = d->st->ops->key_set_policy(tx, k->row.key_id, a->policy, NULL, err);
  /* The bumped policy version already invalidates the cached parse; dropping
   * it now only frees it sooner. */
  if (rc == KERR_OK) kmsi_policy_forget(d, k->row.key_id);
  return rc;
}

kerr_code kms_op_put_key_policy(kms_domain *d, const kms_call *call, const char *key_id,
                             const char *policy_name, const char *policy,
                             bool bypass_policy_lockout_safety_check, kerr *err) {
  put_policy_arg a = {call, policy, bypass_policy_lockout_safety_check};
  kerr_code rc = check_policy_name(policy_name, err);
  if (rc) return rc;
  if (!policy || !*policy)
    return kerr_set(err, KERR_MALFORMED_POLICY, "The key policy document is empty.");
  rc = kmsi_with_key(d, call, key_id, &KMSI_MANAGE, true, "kms:PutKeyPolicy", put_policy_fn, &a,
                     err);
  return rc;
}

static kerr_code get_policy_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err) {
  kms_key_policy_output *o = arg;
  kerr_code rc = d->st->ops->key_get_policy(tx, k->row.key_id, &o->policy, NULL, err);
  if (rc) return rc;
  o->policy_name = "default";
  return KERR_OK;
}

void kms_key_policy_output_clear(kms_key_policy_output *o) {
  if (!o) return;
  free(o->policy);
  memset(o, 0, sizeof *o);
}

kerr_code kms_op_get_key_policy(kms_domain *d, const kms_call *call, const char *key_id,
                             const char *policy_name, kms_key_policy_output *out, kerr *err) {
  memset(out, 0, sizeof *out);
  kerr_code rc = check_policy_name(policy_name, err);
  if (rc) return rc;
  rc = kmsi_with_key(d, call, key_id, &KMSI_MANAGE, false, "kms:GetKeyPolicy", get_policy_fn,
                     out, err);
  if (rc) kms_key_policy_output_clear(out);
  return rc;
}

static kerr_code list_policies_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg,
                                  kerr *err) {
  kms_list_policies_output *o = arg;
  o->policy_names = policy_names;
  o->npolicy_names = 1;
  o->truncated = false;
  return KERR_OK;
}

void kms_list_policies_output_clear(kms_list_policies_output *o) {
  if (!o) return;
  free(o->next_marker);
  memset(o, 0, sizeof *o);
}

kerr_code kms_op_list_key_policies(kms_domain *d, const kms_call *call, const char *key_id,
                                const kms_list_input *in, kms_list_policies_output *out,
                                kerr *err) {
  size_t limit = 0;
  char pos[64];
  memset(out, 0, sizeof *out);
  kerr_code rc = kmsi_limit(in ? in->limit : 0, KMS_DEFAULT_LIST_LIMIT, KMS_MAX_LIST_LIMIT,
                            &limit, err);
  if (rc) return rc;
  /* With one policy per key no marker is ever handed out, so none is valid. */
  if (in && in->marker) {
    rc = kmsi_marker_parse('P', in->marker, pos, sizeof pos, err);
    if (rc) return rc;
    return kerr_set(err, KERR_INVALID_MARKER, "Invalid marker");
  }
  return kmsi_with_key(d, call, key_id, &KMSI_MANAGE, false, "kms:ListKeyPolicies",
                       list_policies_fn, out, err);
}
