/* handlers_policies.c - key policy operations: PutKeyPolicy, GetKeyPolicy,
 * ListKeyPolicies.
 *
 * Each key has exactly one policy, named "default"; the domain parses and
 * checks policies, this file carries their text. */
#include <stdlib.h>

#include "api/api_json.h"

static kerr_code handle_put_key_policy(const api_request *req, json_t *in, json_t **out,
                                       kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  const char *key_id, *policy_name, *policy;
  bool bypass;

  if ((rc = api_json_get_str(in, "KeyId", true, &key_id, err))) return rc;
  if ((rc = api_json_get_str(in, "PolicyName", false, &policy_name, err))) return rc;
  if ((rc = api_json_get_str(in, "Policy", true, &policy, err))) return rc;
  if ((rc = api_json_get_bool(in, "BypassPolicyLockoutSafetyCheck", false, &bypass, err)))
    return rc;
  rc = kms_op_put_key_policy(req->domain, &call, key_id, policy_name, policy, bypass, err);
  if (rc) return rc;
  return api_json_new_object(out, err);
}

static kerr_code handle_get_key_policy(const api_request *req, json_t *in, json_t **out,
                                       kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  kms_key_policy_output po = {0};
  const char *key_id, *policy_name;
  json_t *reply = NULL;

  if ((rc = api_json_get_str(in, "KeyId", true, &key_id, err))) goto out;
  if ((rc = api_json_get_str(in, "PolicyName", false, &policy_name, err))) goto out;
  if ((rc = kms_op_get_key_policy(req->domain, &call, key_id, policy_name, &po, err))) goto out;
  if ((rc = api_json_new_object(&reply, err))) goto out;
  if ((rc = api_json_set_str(reply, "Policy", po.policy, err))) goto out;
  rc = api_json_set_str(reply, "PolicyName", po.policy_name, err);
out:
  kms_key_policy_output_clear(&po);
  if (rc) {
    json_decref(reply);
    return rc;
  }
  *out = reply;
  return KERR_OK;
}

static kerr_code handle_list_key_policies(const api_request *req, json_t *in, json_t **out,
                                          kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  kms_list_input li;
  kms_list_policies_output lo = {0};
  const char *key_id;
  json_t *reply = NULL, *names = NULL;
  size_t i;

  if ((rc = api_json_get_str(in, "KeyId", true, &key_id, err))) goto out;
  if ((rc = api_json_get_list_input(in, &li, err))) goto out;
  if ((rc = kms_op_list_key_policies(req->domain, &call, key_id, &li, &lo, err))) goto out;
  if ((rc = api_json_new_object(&reply, err))) goto out;
  names = json_array();
  if (!names) {
    rc = kerr_set(err, KERR_INTERNAL, "out of memory");
    goto out;
  }
  for (i = 0; i < lo.npolicy_names; i++) {
    if (json_array_append_new(names, json_string(lo.policy_names[i])) != 0) {
      rc = kerr_set(err, KERR_INTERNAL, "out of memory");
      goto out;
    }
  }
  rc = api_json_set_new(reply, "PolicyNames", names, err);
  names = NULL;
  if (rc) goto out;
  rc = api_json_set_list_tail(reply, lo.truncated, lo.next_marker, err);
out:
  json_decref(names);
  kms_list_policies_output_clear(&lo);
  if (rc) {
    json_decref(reply);
    return rc;
  }
  *out = reply;
  return KERR_OK;
}

const api_handler api_handlers_policies[] = {
    {"GetKeyPolicy", handle_get_key_policy},
    {"ListKeyPolicies", handle_list_key_policies},
    {"PutKeyPolicy", handle_put_key_policy},
};
const size_t api_handlers_policies_count =
    sizeof api_handlers_policies / sizeof api_handlers_policies[0];
