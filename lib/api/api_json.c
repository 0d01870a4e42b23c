/* api_json.c - typed request members and JSON 1.1 reply values for handlers.
 *
 * Exists so that no handler inspects json_t types or base64 by hand: one
 * place decides how absent members, blobs and timestamps look on the wire. */
#include "api/api_json.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_validate.h"
#include "core/codec.h"

/* AWS names members in validation messages with a lowercase first letter
 * ("Value null at 'keyId' failed to satisfy constraint"). */
static void member_label(const char *name, char *buf, size_t size) {
  snprintf(buf, size, "%s", name);
  if (buf[0]) buf[0] = (char)tolower((unsigned char)buf[0]);
}

static kerr_code missing(const char *name, kerr *err) {
  char label[128];
  member_label(name, label, sizeof label);
  return kerr_set(err, KERR_VALIDATION,
                  "1 validation error detected: Value null at '%s' failed to satisfy "
                  "constraint: Member must not be null",
                  label);
}

/* "Value at 'member' failed to satisfy constraint: <constraint>". */
static kerr_code unsatisfied(const char *name, const char *constraint, kerr *err) {
  char label[128];
  member_label(name, label, sizeof label);
  return kerr_set(err, KERR_VALIDATION,
                  "1 validation error detected: Value at '%s' failed to satisfy constraint: %s",
                  label, constraint);
}

static kerr_code wrong_type(const char *name, const char *type, kerr *err) {
  char constraint[64];
  snprintf(constraint, sizeof constraint, "Member must be %s", type);
  return unsatisfied(name, constraint, err);
}

/* A JSON string with a NUL inside: its C string would be cut short there. */
static bool holds_nul(const json_t *v) {
  return strlen(json_string_value(v)) != json_string_length(v);
}

static kerr_code nul_inside(const char *name, kerr *err) {
  return unsatisfied(name, "Member must not contain the NUL character (U+0000)", err);
}

/* The member, or NULL when absent or JSON null (both mean "not given"). */
static json_t *member(json_t *in, const char *name) {
  json_t *v = json_is_object(in) ? json_object_get(in, name) : NULL;
  return json_is_null(v) ? NULL : v;
}

kerr_code api_json_get_str(json_t *in, const char *name, bool required, const char **out,
                           kerr *err) {
  json_t *v = member(in, name);
  *out = NULL;
  if (!v) return required ? missing(name, err) : KERR_OK;
  if (!json_is_string(v)) return wrong_type(name, "a string", err);
  if (holds_nul(v)) return nul_inside(name, err);
  *out = json_string_value(v);
  return KERR_OK;
}

kerr_code api_json_get_int(json_t *in, const char *name, bool *present, int64_t *out,
                           kerr *err) {
  json_t *v = member(in, name);
  int64_t n = 0;
  *present = false;
  if (!v) return KERR_OK;
  if (api_validate_integral(v, &n) != API_INTEGRAL_OK) return wrong_type(name, "an integer", err);
  *out = n;
  *present = true;
  return KERR_OK;
}

kerr_code api_json_get_bool(json_t *in, const char *name, bool dflt, bool *out, kerr *err) {
  json_t *v = member(in, name);
  *out = dflt;
  if (!v) return KERR_OK;
  if (!json_is_boolean(v)) return wrong_type(name, "a boolean", err);
  *out = json_is_true(v);
  return KERR_OK;
}

kerr_code api_json_get_blob(json_t *in, const char *name, bool required, kbytes *out,
                            kerr *err) {
  kerr_code rc = KERR_OK;
  json_t *v = member(in, name);
  const char *text;
  size_t text_len, cap;

  out->data = NULL;
  out->len = 0;
  if (!v) return required ? missing(name, err) : KERR_OK;
  if (!json_is_string(v)) return wrong_type(name, "a base64-encoded string", err);
  text = json_string_value(v);
  text_len = json_string_length(v);
  cap = b64_decoded_max(text_len);
  out->data = secure_alloc(cap);
  if (!out->data) {
    rc = kerr_set(err, KERR_INTERNAL, "out of memory");
    goto out;
  }
  if (b64_decode(text, text_len, out->data, &out->len) != 0) {
    char label[128];
    member_label(name, label, sizeof label);
    rc = kerr_set(err, KERR_VALIDATION,
                  "1 validation error detected: Value at '%s' failed to satisfy constraint: "
                  "Member must be valid base64",
                  label);
    goto out;
  }
out:
  /* On success kbytes_wipe_free() later wipes out->len bytes; the slack up
   * to `cap` was zeroed at birth and b64_decode never writes past out->len,
   * so nothing secret is left unwiped. */
  if (rc) {
    secure_free(out->data, cap);
    out->data = NULL;
    out->len = 0;
  }
  return rc;
}

kerr_code api_json_get_str_map(json_t *in, const char *name, json_t **out, kerr *err) {
  json_t *v = member(in, name);
  const char *key;
  json_t *value;

  *out = NULL;
  if (!v) return KERR_OK;
  if (!json_is_object(v)) return wrong_type(name, "a map of strings", err);
  json_object_foreach(v, key, value) {
    if (!json_is_string(value)) return wrong_type(name, "a map of strings", err);
    if (holds_nul(value)) return nul_inside(name, err);
  }
  if (json_object_size(v) > 0) *out = v;
  return KERR_OK;
}

kerr_code api_json_get_list(json_t *in, const char *name, bool required, json_t **out,
                            kerr *err) {
  json_t *v = member(in, name);
  *out = NULL;
  if (!v) return required ? missing(name, err) : KERR_OK;
  if (!json_is_array(v)) return wrong_type(name, "a list", err);
  *out = v;
  return KERR_OK;
}

kerr_code api_json_set_new(json_t *out, const char *name, json_t *value, kerr *err) {
  /* json_object_set_new releases `value` on failure as well. */
  if (!value || json_object_set_new(out, name, value) != 0)
    return kerr_set(err, KERR_INTERNAL, "could not build the reply");
  return KERR_OK;
}

kerr_code api_json_set_str(json_t *out, const char *name, const char *value, kerr *err) {
  if (!value) return KERR_OK;
  return api_json_set_new(out, name, json_string(value), err);
}

kerr_code api_json_set_str_opt(json_t *out, const char *name, const char *value, kerr *err) {
  if (!value || !value[0]) return KERR_OK;
  return api_json_set_new(out, name, json_string(value), err);
}

kerr_code api_json_set_int(json_t *out, const char *name, int64_t value, kerr *err) {
  return api_json_set_new(out, name, json_integer((json_int_t)value), err);
}

kerr_code api_json_set_bool(json_t *out, const char *name, bool value, kerr *err) {
  return api_json_set_new(out, name, json_boolean(value), err);
}

kerr_code api_json_set_time_ms(json_t *out, const char *name, int64_t epoch_ms, kerr *err) {
  if (epoch_ms <= 0) return KERR_OK;
  if (epoch_ms % 1000 == 0 || epoch_ms >= API_JSON_MAX_FRACTIONAL_MS)
    return api_json_set_new(out, name, json_integer((json_int_t)(epoch_ms / 1000)), err);
  /* epoch_ms / 1000 is a decimal of at most 15 significant digits.  The
   * double nearest to it is within 2^-53 of it relatively, far less than half
   * a unit of the 15th digit, so printing API_JSON_REAL_DIGITS digits (%.15g,
   * trailing zeros dropped) gives back exactly that decimal. */
  return api_json_set_new(out, name, json_real((double)epoch_ms / 1000.0), err);
}

kerr_code api_json_set_blob(json_t *out, const char *name, const uint8_t *data, size_t len,
                            kerr *err) {
  kerr_code rc;
  size_t size;
  char *text;

  if (len == 0) return KERR_OK;
  size = b64_encoded_size(len);
  text = secure_alloc(size);
  if (!text) return kerr_set(err, KERR_INTERNAL, "out of memory");
  b64_encode(data, len, text);
  rc = api_json_set_new(out, name, json_string(text), err);
  secure_free(text, size);
  return rc;
}

kerr_code api_json_new_object(json_t **out, kerr *err) {
  *out = json_object();
  if (!*out) return kerr_set(err, KERR_INTERNAL, "out of memory");
  return KERR_OK;
}

/* ---------------------------------------------------------------- domain */

kms_call api_json_call(const api_request *req) {
  kms_call call = {req->caller, req->region, req->request_id, req->must_not_wait, req->wait};
  return call;
}

kerr_code api_json_get_pairs(json_t *in, const char *name, kms_pair **out, size_t *n,
                             kerr *err) {
  kerr_code rc;
  json_t *map, *value;
  const char *key;
  size_t i = 0;

  *out = NULL;
  *n = 0;
  rc = api_json_get_str_map(in, name, &map, err);
  if (rc || !map) return rc;
  *out = calloc(json_object_size(map), sizeof **out);
  if (!*out) return kerr_set(err, KERR_INTERNAL, "out of memory");
  json_object_foreach(map, key, value) {
    (*out)[i].key = key;
    (*out)[i].value = json_string_value(value);
    i++;
  }
  *n = i;
  return KERR_OK;
}

kerr_code api_json_get_tags(json_t *in, const char *name, bool required, kms_pair **out,
                            size_t *n, kerr *err) {
  kerr_code rc;
  json_t *list, *tag;
  size_t i;

  *out = NULL;
  *n = 0;
  rc = api_json_get_list(in, name, required, &list, err);
  if (rc || !list || json_array_size(list) == 0) return rc;
  *out = calloc(json_array_size(list), sizeof **out);
  if (!*out) return kerr_set(err, KERR_INTERNAL, "out of memory");
  json_array_foreach(list, i, tag) {
    rc = api_json_get_str(tag, "TagKey", true, &(*out)[i].key, err);
    if (rc) goto out;
    rc = api_json_get_str(tag, "TagValue", true, &(*out)[i].value, err);
    if (rc) goto out;
  }
  *n = json_array_size(list);
out:
  if (rc) {
    free(*out);
    *out = NULL;
  }
  return rc;
}

kerr_code api_json_get_str_list(json_t *in, const char *name, bool required,
                                const char ***out, size_t *n, kerr *err) {
  kerr_code rc;
  json_t *list, *item;
  size_t i;

  *out = NULL;
  *n = 0;
  rc = api_json_get_list(in, name, required, &list, err);
  if (rc || !list || json_array_size(list) == 0) return rc;
  *out = calloc(json_array_size(list), sizeof **out);
  if (!*out) return kerr_set(err, KERR_INTERNAL, "out of memory");
  json_array_foreach(list, i, item) {
    if (!json_is_string(item) || holds_nul(item)) {
      rc = json_is_string(item) ? nul_inside(name, err) : wrong_type(name, "a list of strings", err);
      free(*out);
      *out = NULL;
      return rc;
    }
    (*out)[i] = json_string_value(item);
  }
  *n = json_array_size(list);
  return KERR_OK;
}

kerr_code api_json_get_list_input(json_t *in, kms_list_input *out, kerr *err) {
  kerr_code rc;
  bool has_limit;
  int64_t limit = 0;

  out->limit = 0;
  out->marker = NULL;
  rc = api_json_get_int(in, "Limit", &has_limit, &limit, err);
  if (rc) return rc;
  /* The model bounds Limit to 1..1000; keep the conversion to int safe
   * should a caller skip validation. */
  if (has_limit && (limit < 1 || limit > 1000))
    return kerr_set(err, KERR_VALIDATION,
                    "1 validation error detected: Value '%lld' at 'limit' failed to satisfy "
                    "constraint: Member must have value between 1 and 1000",
                    (long long)limit);
  out->limit = (int)limit;
  return api_json_get_str(in, "Marker", false, &out->marker, err);
}

kerr_code api_json_reply_str(json_t **out, const char *name, const char *value, kerr *err) {
  json_t *reply = NULL;
  kerr_code rc = api_json_new_object(&reply, err);
  if (rc) return rc;
  rc = api_json_set_str(reply, name, value, err);
  if (rc) {
    json_decref(reply);
    return rc;
  }
  *out = reply;
  return KERR_OK;
}

kerr_code api_json_set_array(json_t *out, const char *name, const void *items, size_t n,
                             size_t size, api_json_entry_fn to_json, kerr *err) {
  json_t *list = json_array();
  if (!list) return kerr_set(err, KERR_INTERNAL, "out of memory");
  for (size_t i = 0; i < n; i++) {
    json_t *entry = NULL;
    kerr_code rc = to_json((const char *)items + i * size, &entry, err);
    if (rc) {
      json_decref(list);
      return rc;
    }
    if (json_array_append_new(list, entry) != 0) {
      json_decref(list);
      return kerr_set(err, KERR_INTERNAL, "out of memory");
    }
  }
  return api_json_set_new(out, name, list, err);
}

kerr_code api_json_set_list_tail(json_t *out, bool truncated, const char *next_marker,
                                 kerr *err) {
  kerr_code rc = api_json_set_bool(out, "Truncated", truncated, err);
  if (rc || !truncated) return rc;
  return api_json_set_str_opt(out, "NextMarker", next_marker, err);
}

kerr_code api_json_reject_unsupported(json_t *in, kerr *err) {
  kerr_code rc;
  json_t *tokens;

  rc = api_json_get_list(in, "GrantTokens", false, &tokens, err);
  if (rc) return rc;
  if (tokens && json_array_size(tokens) > 0)
    return kerr_set(err, KERR_INVALID_GRANT_TOKEN, "The grant token is not valid.");
  if (member(in, "Recipient"))
    return kerr_set(err, KERR_UNSUPPORTED_OPERATION,
                    "Recipient (attested enclave delivery) is not supported by this service.");
  return KERR_OK;
}

/* ------------------------------------------------------------- replies */

static bool plain_text(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') return false;
  }
  return true;
}

char *api_json_dump(const json_t *obj, size_t *len) {
  const char *key;
  json_t *value;
  json_malloc_t alloc;
  json_free_t release;
  size_t total = 2, n = 0;
  char *out, *p;

  *len = 0;
  if (!json_is_object(obj)) goto jansson;
  /* json_object_foreach walks members in insertion order, as json_dumps
   * prints them without JSON_SORT_KEYS. */
  json_object_foreach((json_t *)obj, key, value) {
    size_t klen = strlen(key);
    if (!json_is_string(value) || !plain_text(key, klen) ||
        !plain_text(json_string_value(value), json_string_length(value)))
      goto jansson;
    total += klen + json_string_length(value) + 5 + (n ? 1 : 0); /* "k":"v" and a comma */
    n++;
  }
  json_get_alloc_funcs(&alloc, &release);
  out = alloc(total + 1);
  if (!out) return NULL;
  p = out;
  *p++ = '{';
  n = 0;
  json_object_foreach((json_t *)obj, key, value) {
    size_t klen = strlen(key), vlen = json_string_length(value);
    if (n++) *p++ = ',';
    *p++ = '"';
    memcpy(p, key, klen);
    p += klen;
    memcpy(p, "\":\"", 3);
    p += 3;
    memcpy(p, json_string_value(value), vlen);
    p += vlen;
    *p++ = '"';
  }
  *p++ = '}';
  *p = '\0';
  *len = total;
  return out;
jansson:
  out = json_dumps(obj, API_JSON_ENCODE_FLAGS);
  if (out) *len = strlen(out);
  return out;
}
