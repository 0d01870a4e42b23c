/* handlers_aliases.c - alias operations: CreateAlias, UpdateAlias,
 * DeleteAlias, ListAliases.
 *
 * Aliases are friendly names for keys; the domain owns every naming rule,
 * this file only moves names between JSON and kms_* calls. */
#include <stdlib.h>

#include "api/api_json.h"

static kerr_code handle_create_alias(const api_request *req, json_t *in, json_t **out,
                                     kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  const char *alias_name, *target;

  if ((rc = api_json_get_str(in, "AliasName", true, &alias_name, err))) return rc;
  if ((rc = api_json_get_str(in, "TargetKeyId", true, &target, err))) return rc;
  if ((rc = kms_op_create_alias(req->domain, &call, alias_name, target, err))) return rc;
  return api_json_new_object(out, err);
}

static kerr_code handle_update_alias(const api_request *req, json_t *in, json_t **out,
                                     kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  const char *alias_name, *target;

  if ((rc = api_json_get_str(in, "AliasName", true, &alias_name, err))) return rc;
  if ((rc = api_json_get_str(in, "TargetKeyId", true, &target, err))) return rc;
  if ((rc = kms_op_update_alias(req->domain, &call, alias_name, target, err))) return rc;
  return api_json_new_object(out, err);
}

static kerr_code handle_delete_alias(const api_request *req, json_t *in, json_t **out,
                                     kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  const char *alias_name;

  if ((rc = api_json_get_str(in, "AliasName", true, &alias_name, err))) return rc;
  if ((rc = kms_op_delete_alias(req->domain, &call, alias_name, err))) return rc;
  return api_json_new_object(out, err);
}

/* One AliasListEntry of the model into *out (owned by the caller). */
static kerr_code alias_entry_json(const void *item, json_t **out, kerr *err) {
  const kms_alias_entry *a = item;
  kerr_code rc;
  json_t *entry = NULL;

  if ((rc = api_json_new_object(&entry, err))) return rc;
  if ((rc = api_json_set_str(entry, "AliasName", a->alias_name, err)) ||
      (rc = api_json_set_str(entry, "AliasArn", a->alias_arn, err)) ||
      (rc = api_json_set_str_opt(entry, "TargetKeyId", a->target_key_id, err)) ||
      (rc = api_json_set_time_ms(entry, "CreationDate", a->creation_date_ms, err)) ||
      (rc = api_json_set_time_ms(entry, "LastUpdatedDate", a->last_updated_date_ms, err))) {
    json_decref(entry);
    return rc;
  }
  *out = entry;
  return KERR_OK;
}

static kerr_code handle_list_aliases(const api_request *req, json_t *in, json_t **out,
                                     kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  kms_list_input li;
  kms_list_aliases_output lo = {0};
  const char *key_id;
  json_t *reply = NULL;

  if ((rc = api_json_get_str(in, "KeyId", false, &key_id, err))) goto out;
  if ((rc = api_json_get_list_input(in, &li, err))) goto out;
  rc = kms_op_list_aliases(req->domain, &call, key_id, &li, &lo, err);
  if (rc) goto out;
  if ((rc = api_json_new_object(&reply, err))) goto out;
  rc = api_json_set_array(reply, "Aliases", lo.aliases, lo.naliases, sizeof lo.aliases[0],
                          alias_entry_json, err);
  if (rc) goto out;
  rc = api_json_set_list_tail(reply, lo.truncated, lo.next_marker, err);
out:
  kms_list_aliases_output_clear(&lo);
  if (rc) {
    json_decref(reply);
    return rc;
  }
  *out = reply;
  return KERR_OK;
}

const api_handler api_handlers_aliases[] = {
    {"CreateAlias", handle_create_alias},
    {"DeleteAlias", handle_delete_alias},
    {"ListAliases", handle_list_aliases},
    {"UpdateAlias", handle_update_alias},
};
const size_t api_handlers_aliases_count =
    sizeof api_handlers_aliases / sizeof api_handlers_aliases[0];
