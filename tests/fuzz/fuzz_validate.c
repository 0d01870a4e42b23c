/* fuzz_validate.c - libFuzzer target for request validation
 * (api/api_validate.h): every JSON 1.1 body kmsd serves is checked by
 * api_validate_input against the generated model tables before a handler
 * sees it.
 *
 * Input: an operation name, '\n', then the request body.  A name that is not
 * an operation of the KMS or CloudHSMv2 model still selects one (by hash), so
 * no input is wasted.  The body is parsed exactly as the pipeline parses it
 * (API_JSON_DECODE_FLAGS: duplicates rejected, \u0000 allowed in strings;
 * empty body = {}); bodies jansson refuses never reach the validator and are
 * skipped.  Invariants:
 *   - the result is KERR_OK, KERR_VALIDATION or KERR_SERIALIZATION (a model
 *     pattern that cannot be used, KERR_INTERNAL, is a finding too);
 *   - on error the message is non-empty and bounded; on success `err` is left
 *     untouched; a VALIDATION message starts "N validation error(s) detected";
 *   - the body is not modified, and validating twice gives the same answer;
 *   - secrets are never echoed: every value of a sensitive or blob shape is
 *     replaced by filler of the same length that satisfies the same
 *     constraints, and the message must not change at all; a value that
 *     could not be replaced like that (8 characters or more, and not part of
 *     its pattern's text) must at least not appear in the message unless it
 *     also appears with the filler in place. */
#include <jansson.h>
#include <string.h>

#include "api/api_json.h"
#include "api/api_validate.h"
#include "core/codec.h"
#include "fuzz_common.h"
#include "model/model.h"

#define NAME_MAX_LEN 64
#define MAX_SECRETS 32
#define SECRET_CHECK_MIN 8 /* shorter values may occur in any message's wording */

typedef struct secret_value {
  char *text;            /* the original value (copy) */
  int equivalent;        /* the filler satisfies exactly the constraints the value does */
  const char *pattern;   /* the shape's pattern, whose text a message may quote */
} secret_value;

typedef struct secrets {
  secret_value v[MAX_SECRETS];
  size_t n;
} secrets;

static const model_op *pick_op(const char *name, size_t len) {
  char buf[NAME_MAX_LEN + 1];
  const model_op *op;
  size_t total, h = 5381;

  memcpy(buf, name, len);
  buf[len] = '\0';
  op = model_find_op(&model_kms, buf);
  if (!op) op = model_find_op(&model_cloudhsmv2, buf);
  if (op) return op;
  for (size_t i = 0; i < len; i++) h = h * 33 + (unsigned char)name[i];
  total = model_kms.op_count + model_cloudhsmv2.op_count;
  h %= total;
  return h < model_kms.op_count ? &model_kms.ops[h] : &model_cloudhsmv2.ops[h - model_kms.op_count];
}

/* Same-length filler for a string of `shape`: 'A' for base64 (canonical,
 * same decoded length), 'Q' per character otherwise (it satisfies every
 * sensitive pattern of the model: [A-Z2-7], [a-zA-Z0-9/+=]). */
static char *filler_for(const model_shape *shape, const char *s, size_t len) {
  char *f = malloc(len + 1);
  size_t o = 0;
  if (!f) abort();
  for (size_t i = 0; i < len; i++) {
    if (shape->type == MODEL_BLOB)
      f[o++] = s[i] == '=' ? '=' : 'A';
    else if (((unsigned char)s[i] & 0xC0) != 0x80)
      f[o++] = 'Q';
  }
  f[o] = '\0';
  return f;
}

static int blob_is_valid(const char *s, size_t len) {
  size_t cap = b64_decoded_max(len), out_len = 0;
  uint8_t *buf = malloc(cap);
  int ok;
  if (!buf) abort();
  ok = b64_decode(s, len, buf, &out_len) == 0;
  free(buf);
  return ok;
}

/* Replace, in `copy` (a deep copy of the body), every string value of a
 * sensitive or blob member of structure `shape`, recursing into structures. */
static void replace_secrets(const model_shape *shape, json_t *copy, secrets *out, int depth) {
  if (!shape || shape->type != MODEL_STRUCTURE || !json_is_object(copy) ||
      depth > API_VALIDATE_MAX_DEPTH)
    return;
  for (size_t i = 0; i < shape->member_count; i++) {
    const model_member *m = &shape->members[i];
    json_t *v = json_object_get(copy, m->name);
    const char *s;
    size_t len;
    char *fill;
    int equivalent;

    if (!v) continue;
    if (m->shape->type == MODEL_STRUCTURE) {
      replace_secrets(m->shape, v, out, depth + 1);
      continue;
    }
    if (!(m->shape->sensitive || m->shape->type == MODEL_BLOB) || !json_is_string(v) ||
        out->n == MAX_SECRETS)
      continue;
    s = json_string_value(v);
    len = json_string_length(v);
    fill = filler_for(m->shape, s, len);
    if (m->shape->type == MODEL_BLOB)
      equivalent = blob_is_valid(s, len);
    else
      /* The filler has no NUL, so it meets the no-NUL rule a value with one
       * fails: such a value is not replaced by an equivalent. */
      equivalent = api_validate_pattern_matches(m->shape, s, len) == 1 &&
                   api_validate_pattern_matches(m->shape, fill, strlen(fill)) == 1 &&
                   !memchr(s, '\0', len);
    out->v[out->n].text = strndup(s, len);
    if (!out->v[out->n].text) abort();
    out->v[out->n].equivalent = equivalent;
    out->v[out->n].pattern = m->shape->pattern;
    out->n++;
    json_object_set_new(copy, m->name, json_string(fill));
    free(fill);
  }
}

static void check_message_shape(kerr_code rc, const kerr *err) {
  FUZZ_CHECK(rc == KERR_OK || rc == KERR_VALIDATION || rc == KERR_SERIALIZATION,
             "validation answers OK, ValidationException or SerializationException");
  if (rc == KERR_OK) {
    FUZZ_CHECK(err->code == (kerr_code)12345 && strcmp(err->msg, "untouched") == 0,
               "err is not written on success");
    return;
  }
  FUZZ_CHECK(err->code == rc, "err carries the returned code");
  FUZZ_CHECK(fuzz_msg_ok(err->msg, sizeof err->msg), "error message is non-empty and bounded");
  if (rc == KERR_VALIDATION) {
    const char *p = err->msg;
    FUZZ_CHECK(*p >= '1' && *p <= '9', "validation message starts with a count");
    while (*p >= '0' && *p <= '9') p++;
    FUZZ_CHECK(strncmp(p, " validation error", 17) == 0, "validation message wording");
  }
}

static kerr_code validate(const model_op *op, const json_t *body, kerr *err) {
  err->code = (kerr_code)12345;
  strcpy(err->msg, "untouched");
  return api_validate_input(op, body, err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nl = memchr(data, '\n', size < NAME_MAX_LEN + 1 ? size : NAME_MAX_LEN + 1);
  const model_op *op;
  json_t *body, *copy;
  char *before, *after;
  kerr err, err2;
  kerr_code rc, rc2;
  secrets sec = {.n = 0};

  if (!nl) return 0;
  op = pick_op((const char *)data, (size_t)(nl - data));
  size -= (size_t)(nl - data) + 1;
  data = nl + 1;
  if (size == 0) {
    body = json_object();
  } else {
    char *buf = malloc(size);
    if (!buf) abort();
    memcpy(buf, data, size);
    body = json_loadb(buf, size, API_JSON_DECODE_FLAGS, NULL);
    free(buf);
  }
  if (!body) return 0;

  before = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
  rc = validate(op, body, &err);
  check_message_shape(rc, &err);
  after = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
  FUZZ_CHECK(before && after && strcmp(before, after) == 0, "the body is not modified");
  free(before);
  free(after);

  rc2 = validate(op, body, &err2);
  FUZZ_CHECK(rc2 == rc && (rc == KERR_OK || strcmp(err.msg, err2.msg) == 0),
             "validation is deterministic");

  if (op->input && json_is_object(body)) {
    copy = json_deep_copy(body);
    if (!copy) abort();
    replace_secrets(op->input, copy, &sec, 0);
    if (sec.n) {
      int all_equivalent = 1;
      rc2 = validate(op, copy, &err2);
      for (size_t i = 0; i < sec.n; i++) {
        if (!sec.v[i].equivalent) all_equivalent = 0;
        /* Short values, or values that are part of the pattern text a
         * message quotes, can appear in a message without being echoed. */
        if (rc != KERR_OK && strlen(sec.v[i].text) >= SECRET_CHECK_MIN &&
            !(sec.v[i].pattern && strstr(sec.v[i].pattern, sec.v[i].text)))
          FUZZ_CHECK(!strstr(err.msg, sec.v[i].text) ||
                         (rc2 != KERR_OK && strstr(err2.msg, sec.v[i].text)),
                     "a sensitive or blob value is never echoed in an error");
      }
      if (all_equivalent) {
        FUZZ_CHECK(rc2 == rc, "the outcome does not depend on secret content");
        FUZZ_CHECK(rc == KERR_OK || strcmp(err.msg, err2.msg) == 0,
                   "the message does not depend on secret content");
      }
      for (size_t i = 0; i < sec.n; i++) free(sec.v[i].text);
    }
    json_decref(copy);
  }
  json_decref(body);
  return 0;
}
