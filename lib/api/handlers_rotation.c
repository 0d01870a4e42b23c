/* handlers_rotation.c - key material rotation: EnableKeyRotation,
 * DisableKeyRotation, GetKeyRotationStatus, RotateKeyOnDemand,
 * ListKeyRotations.
 *
 * Scheduling and the rotation itself belong to the domain and its sweeper;
 * these handlers only translate requests and replies. */
#include <stdlib.h>

#include "api/api_json.h"

static kerr_code handle_enable_key_rotation(const api_request *req, json_t *in, json_t **out,
                                            kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  const char *key_id;
  bool has_period;
  int64_t period = 0;

  if ((rc = api_json_get_str(in, "KeyId", true, &key_id, err))) return rc;
  if ((rc = api_json_get_int(in, "RotationPeriodInDays", &has_period, &period, err))) return rc;
  if (has_period && (period < 90 || period > 2560))
    return kerr_set(err, KERR_VALIDATION,
                    "1 validation error detected: Value '%lld' at 'rotationPeriodInDays' failed "
                    "to satisfy constraint: Member must have value between 90 and 2560",
                    (long long)period);
  rc = kms_op_enable_key_rotation(req->domain, &call, key_id, has_period ? (int)period : 0, err);
  if (rc) return rc;
  return api_json_new_object(out, err);
}

static kerr_code handle_disable_key_rotation(const api_request *req, json_t *in, json_t **out,
                                             kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  const char *key_id;

  if ((rc = api_json_get_str(in, "KeyId", true, &key_id, err))) return rc;
  if ((rc = kms_op_disable_key_rotation(req->domain, &call, key_id, err))) return rc;
  return api_json_new_object(out, err);
}

static kerr_code handle_get_key_rotation_status(const api_request *req, json_t *in,
                                                json_t **out, kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  kms_rotation_status st = {0};
  const char *key_id;
  json_t *reply = NULL;

  if ((rc = api_json_get_str(in, "KeyId", true, &key_id, err))) return rc;
  if ((rc = kms_op_get_key_rotation_status(req->domain, &call, key_id, &st, err))) return rc;
  if ((rc = api_json_new_object(&reply, err))) return rc;
  if ((rc = api_json_set_bool(reply, "KeyRotationEnabled", st.enabled, err))) goto out;
  if ((rc = api_json_set_str(reply, "KeyId", st.key_id, err))) goto out;
  if (st.rotation_period_days > 0 &&
      (rc = api_json_set_int(reply, "RotationPeriodInDays", st.rotation_period_days, err)))
    goto out;
  if (st.has_next_rotation_date &&
      (rc = api_json_set_time_ms(reply, "NextRotationDate", st.next_rotation_date_ms, err)))
    goto out;
  if (st.has_on_demand_rotation_start_date &&
      (rc = api_json_set_time_ms(reply, "OnDemandRotationStartDate",
                                 st.on_demand_rotation_start_date_ms, err)))
    goto out;
out:
  if (rc) {
    json_decref(reply);
    return rc;
  }
  *out = reply;
  return KERR_OK;
}

static kerr_code handle_rotate_key_on_demand(const api_request *req, json_t *in, json_t **out,
                                             kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  char key_id_out[UUID_STR_LEN] = "";
  const char *key_id;

  if ((rc = api_json_get_str(in, "KeyId", true, &key_id, err))) return rc;
  if ((rc = kms_op_rotate_key_on_demand(req->domain, &call, key_id, key_id_out, err))) return rc;
  return api_json_reply_str(out, "KeyId", key_id_out, err);
}

/* One RotationsListEntry of the model into *out (owned by the caller). */
static kerr_code rotation_entry_json(const void *item, json_t **out, kerr *err) {
  const kms_rotation_entry *r = item;
  kerr_code rc;
  json_t *entry = NULL;

  if ((rc = api_json_new_object(&entry, err))) return rc;
  if ((rc = api_json_set_str(entry, "KeyId", r->key_id, err)) ||
      (rc = api_json_set_str_opt(entry, "KeyMaterialId", r->key_material_id, err)) ||
      (rc = api_json_set_str(entry, "KeyMaterialState", r->key_material_state, err)) ||
      (rc = api_json_set_str(entry, "ExpirationModel", r->expiration_model, err)) ||
      (r->has_rotation_date &&
       (rc = api_json_set_time_ms(entry, "RotationDate", r->rotation_date_ms, err))) ||
      (rc = api_json_set_str(entry, "RotationType", r->rotation_type, err))) {
    json_decref(entry);
    return rc;
  }
  *out = entry;
  return KERR_OK;
}

static kerr_code handle_list_key_rotations(const api_request *req, json_t *in, json_t **out,
                                           kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  kms_list_input li;
  kms_list_rotations_output lo = {0};
  const char *key_id, *include;
  json_t *reply = NULL;

  if ((rc = api_json_get_str(in, "KeyId", true, &key_id, err))) goto out;
  if ((rc = api_json_get_str(in, "IncludeKeyMaterial", false, &include, err))) goto out;
  if ((rc = api_json_get_list_input(in, &li, err))) goto out;
  rc = kms_op_list_key_rotations(req->domain, &call, key_id, include, &li, &lo, err);
  if (rc) goto out;
  if ((rc = api_json_new_object(&reply, err))) goto out;
  rc = api_json_set_array(reply, "Rotations", lo.rotations, lo.nrotations, sizeof lo.rotations[0],
                          rotation_entry_json, err);
  if (rc) goto out;
  rc = api_json_set_list_tail(reply, lo.truncated, lo.next_marker, err);
out:
  kms_list_rotations_output_clear(&lo);
  if (rc) {
    json_decref(reply);
    return rc;
  }
  *out = reply;
  return KERR_OK;
}

const api_handler api_handlers_rotation[] = {
    {"DisableKeyRotation", handle_disable_key_rotation},
    {"EnableKeyRotation", handle_enable_key_rotation},
    {"GetKeyRotationStatus", handle_get_key_rotation_status},
    {"ListKeyRotations", handle_list_key_rotations},
    {"RotateKeyOnDemand", handle_rotate_key_on_demand},
};
const size_t api_handlers_rotation_count =
    sizeof api_handlers_rotation / sizeof api_handlers_rotation[0];
