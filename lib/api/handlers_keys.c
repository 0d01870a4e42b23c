/* handlers_keys.c - KMS key lifecycle operations: CreateKey, DescribeKey,
 * ListKeys, Enable/DisableKey, UpdateKeyDescription, Schedule/CancelKeyDeletion.
 *
 * Each handler maps the validated JSON request onto one kms_* domain call and
 * the domain's result onto the model's output shape; nothing else. */
#include <stdlib.h>

#include "api/api_json.h"

/* KeyMetadata as the model's structure; shared by CreateKey and DescribeKey. */
static kerr_code metadata_to_json(const kms_key_metadata *m, json_t **out, kerr *err) {
  kerr_code rc;
  json_t *md = NULL, *algs = NULL;
  size_t i;

  *out = NULL;
  rc = api_json_new_object(&md, err);
  if (rc) goto out;
  if ((rc = api_json_set_str(md, "AWSAccountId", m->aws_account_id, err))) goto out;
  if ((rc = api_json_set_str(md, "KeyId", m->key_id, err))) goto out;
  if ((rc = api_json_set_str(md, "Arn", m->arn, err))) goto out;
  if ((rc = api_json_set_time_ms(md, "CreationDate", m->creation_date_ms, err))) goto out;
  if ((rc = api_json_set_bool(md, "Enabled", m->enabled, err))) goto out;
  /* AWS answers Description even when empty; SDK users read it unguarded. */
  if ((rc = api_json_set_str(md, "Description", m->description ? m->description : "", err)))
    goto out;
  if ((rc = api_json_set_str(md, "KeyUsage", m->key_usage, err))) goto out;
  if ((rc = api_json_set_str(md, "KeyState", m->key_state, err))) goto out;
  if (m->has_deletion_date &&
      (rc = api_json_set_time_ms(md, "DeletionDate", m->deletion_date_ms, err)))
    goto out;
  if ((rc = api_json_set_str(md, "Origin", m->origin, err))) goto out;
  if ((rc = api_json_set_str_opt(md, "CustomKeyStoreId", m->custom_key_store_id, err))) goto out;
  if ((rc = api_json_set_str_opt(md, "CloudHsmClusterId", m->cloud_hsm_cluster_id, err))) goto out;
  if (m->xks_key_id) {
    json_t *x = NULL;
    if ((rc = api_json_new_object(&x, err))) goto out;
    if ((rc = api_json_set_str(x, "Id", m->xks_key_id, err))) {
      json_decref(x);
      goto out;
    }
    if (json_object_set_new(md, "XksKeyConfiguration", x) != 0) {
      rc = kerr_set(err, KERR_INTERNAL, "out of memory");
      goto out;
    }
  }
  if ((rc = api_json_set_str(md, "KeyManager", m->key_manager, err))) goto out;
  if ((rc = api_json_set_str(md, "CustomerMasterKeySpec", m->customer_master_key_spec, err)))
    goto out;
  if ((rc = api_json_set_str(md, "KeySpec", m->key_spec, err))) goto out;
  if (m->n_encryption_algorithms > 0) {
    algs = json_array();
    if (!algs) {
      rc = kerr_set(err, KERR_INTERNAL, "out of memory");
      goto out;
    }
    for (i = 0; i < m->n_encryption_algorithms; i++) {
      if (json_array_append_new(algs, json_string(m->encryption_algorithms[i])) != 0) {
        rc = kerr_set(err, KERR_INTERNAL, "out of memory");
        goto out;
      }
    }
    rc = api_json_set_new(md, "EncryptionAlgorithms", algs, err);
    algs = NULL; /* taken by set_new, also on failure */
    if (rc) goto out;
  }
  if ((rc = api_json_set_bool(md, "MultiRegion", m->multi_region, err))) goto out;
  if (m->pending_deletion_window_days > 0 &&
      (rc = api_json_set_int(md, "PendingDeletionWindowInDays", m->pending_deletion_window_days,
                             err)))
    goto out;
  if ((rc = api_json_set_str_opt(md, "CurrentKeyMaterialId", m->current_key_material_id, err)))
    goto out;
out:
  json_decref(algs);
  if (rc) {
    json_decref(md);
    return rc;
  }
  *out = md;
  return KERR_OK;
}

/* {"KeyMetadata": {...}}: the reply of CreateKey and DescribeKey. */
static kerr_code metadata_reply(const kms_key_metadata *m, json_t **out, kerr *err) {
  kerr_code rc;
  json_t *reply = NULL, *md = NULL;

  rc = metadata_to_json(m, &md, err);
  if (rc) return rc;
  rc = api_json_new_object(&reply, err);
  if (rc) {
    json_decref(md);
    return rc;
  }
  rc = api_json_set_new(reply, "KeyMetadata", md, err);
  if (rc) {
    json_decref(reply);
    return rc;
  }
  *out = reply;
  return KERR_OK;
}

static kerr_code handle_create_key(const api_request *req, json_t *in, json_t **out,
                                   kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  kms_create_key_input ki = {0};
  kms_key_metadata md = {0};
  kms_pair *tags = NULL;

  if ((rc = api_json_get_str(in, "Policy", false, &ki.policy, err))) goto out;
  if ((rc = api_json_get_str(in, "Description", false, &ki.description, err))) goto out;
  if ((rc = api_json_get_str(in, "KeyUsage", false, &ki.key_usage, err))) goto out;
  if ((rc = api_json_get_str(in, "CustomerMasterKeySpec", false, &ki.customer_master_key_spec,
                             err)))
    goto out;
  if ((rc = api_json_get_str(in, "KeySpec", false, &ki.key_spec, err))) goto out;
  if ((rc = api_json_get_str(in, "Origin", false, &ki.origin, err))) goto out;
  if ((rc = api_json_get_str(in, "CustomKeyStoreId", false, &ki.custom_key_store_id, err)))
    goto out;
  if ((rc = api_json_get_str(in, "XksKeyId", false, &ki.xks_key_id, err))) goto out;
  if ((rc = api_json_get_bool(in, "BypassPolicyLockoutSafetyCheck", false,
                              &ki.bypass_policy_lockout_safety_check, err)))
    goto out;
  if ((rc = api_json_get_bool(in, "MultiRegion", false, &ki.multi_region, err))) goto out;
  if ((rc = api_json_get_tags(in, "Tags", false, &tags, &ki.ntags, err))) goto out;
  ki.tags = tags;

  rc = kms_op_create_key(req->domain, &call, &ki, &md, err);
  if (rc) goto out;
  rc = metadata_reply(&md, out, err);
out:
  kms_key_metadata_clear(&md);
  free(tags);
  return rc;
}

static kerr_code handle_describe_key(const api_request *req, json_t *in, json_t **out,
                                     kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  kms_key_metadata md = {0};
  const char *key_id;

  /* GrantTokens only matter for eventual consistency of grants, and
   * DescribeKey lists no grant-token error, so they are ignored here. */
  if ((rc = api_json_get_str(in, "KeyId", true, &key_id, err))) goto out;
  rc = kms_op_describe_key(req->domain, &call, key_id, &md, err);
  if (rc) goto out;
  rc = metadata_reply(&md, out, err);
out:
  kms_key_metadata_clear(&md);
  return rc;
}

static kerr_code handle_list_keys(const api_request *req, json_t *in, json_t **out,
                                  kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  kms_list_input li;
  kms_list_keys_output lo = {0};
  json_t *reply = NULL, *keys = NULL;
  size_t i;

  if ((rc = api_json_get_list_input(in, &li, err))) goto out;
  rc = kms_op_list_keys(req->domain, &call, &li, &lo, err);
  if (rc) goto out;
  if ((rc = api_json_new_object(&reply, err))) goto out;
  keys = json_array();
  if (!keys) {
    rc = kerr_set(err, KERR_INTERNAL, "out of memory");
    goto out;
  }
  for (i = 0; i < lo.nkeys; i++) {
    json_t *entry = json_pack("{s:s, s:s}", "KeyId", lo.keys[i].key_id, "KeyArn",
                              lo.keys[i].key_arn);
    if (!entry || json_array_append_new(keys, entry) != 0) {
      rc = kerr_set(err, KERR_INTERNAL, "out of memory");
      goto out;
    }
  }
  rc = api_json_set_new(reply, "Keys", keys, err);
  keys = NULL;
  if (rc) goto out;
  rc = api_json_set_list_tail(reply, lo.truncated, lo.next_marker, err);
out:
  json_decref(keys);
  kms_list_keys_output_clear(&lo);
  if (rc) {
    json_decref(reply);
    return rc;
  }
  *out = reply;
  return KERR_OK;
}

static kerr_code handle_enable_key(const api_request *req, json_t *in, json_t **out,
                                   kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  const char *key_id;

  if ((rc = api_json_get_str(in, "KeyId", true, &key_id, err))) return rc;
  if ((rc = kms_op_enable_key(req->domain, &call, key_id, err))) return rc;
  return api_json_new_object(out, err);
}

static kerr_code handle_disable_key(const api_request *req, json_t *in, json_t **out,
                                    kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  const char *key_id;

  if ((rc = api_json_get_str(in, "KeyId", true, &key_id, err))) return rc;
  if ((rc = kms_op_disable_key(req->domain, &call, key_id, err))) return rc;
  return api_json_new_object(out, err);
}

static kerr_code handle_update_key_description(const api_request *req, json_t *in,
                                               json_t **out, kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  const char *key_id, *description;

  if ((rc = api_json_get_str(in, "KeyId", true, &key_id, err))) return rc;
  if ((rc = api_json_get_str(in, "Description", true, &description, err))) return rc;
  if ((rc = kms_op_update_key_description(req->domain, &call, key_id, description, err)))
    return rc;
  return api_json_new_object(out, err);
}

static kerr_code handle_schedule_key_deletion(const api_request *req, json_t *in,
                                              json_t **out, kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  kms_schedule_deletion_output so = {0};
  const char *key_id;
  bool has_window;
  int64_t window = 0;
  json_t *reply = NULL;

  if ((rc = api_json_get_str(in, "KeyId", true, &key_id, err))) return rc;
  if ((rc = api_json_get_int(in, "PendingWindowInDays", &has_window, &window, err))) return rc;
  /* The model allows 1..365 so the pipeline passes 1..6 and 31..365; the
   * domain owns the narrower 7..30 rule.  Only keep the int cast safe. */
  if (has_window && (window < 1 || window > 365))
    return kerr_set(err, KERR_VALIDATION,
                    "1 validation error detected: Value '%lld' at 'pendingWindowInDays' failed "
                    "to satisfy constraint: Member must have value between 1 and 365",
                    (long long)window);
  rc = kms_op_schedule_key_deletion(req->domain, &call, key_id, has_window ? (int)window : 0, &so,
                                 err);
  if (rc) return rc;
  if ((rc = api_json_new_object(&reply, err))) return rc;
  if ((rc = api_json_set_str(reply, "KeyId", so.key_id, err))) goto out;
  if ((rc = api_json_set_time_ms(reply, "DeletionDate", so.deletion_date_ms, err))) goto out;
  if ((rc = api_json_set_str(reply, "KeyState", so.key_state, err))) goto out;
  if (so.pending_window_days > 0 &&
      (rc = api_json_set_int(reply, "PendingWindowInDays", so.pending_window_days, err)))
    goto out;
out:
  if (rc) {
    json_decref(reply);
    return rc;
  }
  *out = reply;
  return KERR_OK;
}

static kerr_code handle_cancel_key_deletion(const api_request *req, json_t *in, json_t **out,
                                            kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  char arn[KMS_ARN_MAX] = "";
  const char *key_id;

  if ((rc = api_json_get_str(in, "KeyId", true, &key_id, err))) return rc;
  if ((rc = kms_op_cancel_key_deletion(req->domain, &call, key_id, arn, err))) return rc;
  return api_json_reply_str(out, "KeyId", arn, err);
}

const api_handler api_handlers_keys[] = {
    {"CancelKeyDeletion", handle_cancel_key_deletion},
    {"CreateKey", handle_create_key},
    {"DescribeKey", handle_describe_key},
    {"DisableKey", handle_disable_key},
    {"EnableKey", handle_enable_key},
    {"ListKeys", handle_list_keys},
    {"ScheduleKeyDeletion", handle_schedule_key_deletion},
    {"UpdateKeyDescription", handle_update_key_description},
};
const size_t api_handlers_keys_count = sizeof api_handlers_keys / sizeof api_handlers_keys[0];
