/* handlers_tags.c - tag operations on KMS keys: TagResource, UntagResource,
 * ListResourceTags.
 *
 * The domain enforces tag rules (lengths, reserved "aws:" prefix, the
 * per-key quota) so that CreateKey's Tags and TagResource share them. */
#include <stdlib.h>

#include "api/api_json.h"

static kerr_code handle_tag_resource(const api_request *req, json_t *in, json_t **out,
                                     kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  const char *key_id;
  kms_pair *tags = NULL;
  size_t ntags = 0;

  if ((rc = api_json_get_str(in, "KeyId", true, &key_id, err))) goto out;
  if ((rc = api_json_get_tags(in, "Tags", true, &tags, &ntags, err))) goto out;
  if ((rc = kms_op_tag_resource(req->domain, &call, key_id, tags, ntags, err))) goto out;
  rc = api_json_new_object(out, err);
out:
  free(tags);
  return rc;
}

static kerr_code handle_untag_resource(const api_request *req, json_t *in, json_t **out,
                                       kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  const char *key_id;
  const char **tag_keys = NULL;
  size_t nkeys = 0;

  if ((rc = api_json_get_str(in, "KeyId", true, &key_id, err))) goto out;
  if ((rc = api_json_get_str_list(in, "TagKeys", true, &tag_keys, &nkeys, err))) goto out;
  if ((rc = kms_op_untag_resource(req->domain, &call, key_id, tag_keys, nkeys, err))) goto out;
  rc = api_json_new_object(out, err);
out:
  free(tag_keys);
  return rc;
}

static kerr_code handle_list_resource_tags(const api_request *req, json_t *in, json_t **out,
                                           kerr *err) {
  kerr_code rc;
  kms_call call = api_json_call(req);
  kms_list_input li;
  kms_list_tags_output lo = {0};
  const char *key_id;
  json_t *reply = NULL, *list = NULL;
  size_t i;

  if ((rc = api_json_get_str(in, "KeyId", true, &key_id, err))) goto out;
  if ((rc = api_json_get_list_input(in, &li, err))) goto out;
  rc = kms_op_list_resource_tags(req->domain, &call, key_id, &li, &lo, err);
  if (rc) goto out;
  if ((rc = api_json_new_object(&reply, err))) goto out;
  list = json_array();
  if (!list) {
    rc = kerr_set(err, KERR_INTERNAL, "out of memory");
    goto out;
  }
  for (i = 0; i < lo.ntags; i++) {
    json_t *tag = json_pack("{s:s, s:s}", "TagKey", lo.tags[i].key, "TagValue",
                            lo.tags[i].value ? lo.tags[i].value : "");
    if (!tag || json_array_append_new(list, tag) != 0) {
      rc = kerr_set(err, KERR_INTERNAL, "out of memory");
      goto out;
    }
  }
  rc = api_json_set_new(reply, "Tags", list, err);
  list = NULL;
  if (rc) goto out;
  rc = api_json_set_list_tail(reply, lo.truncated, lo.next_marker, err);
out:
  json_decref(list);
  kms_list_tags_output_clear(&lo);
  if (rc) {
    json_decref(reply);
    return rc;
  }
  *out = reply;
  return KERR_OK;
}

const api_handler api_handlers_tags[] = {
    {"ListResourceTags", handle_list_resource_tags},
    {"TagResource", handle_tag_resource},
    {"UntagResource", handle_untag_resource},
};
const size_t api_handlers_tags_count = sizeof api_handlers_tags / sizeof api_handlers_tags[0];
