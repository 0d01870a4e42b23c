/* kms_codec.c - the engine behind libkms's typed operations: input structs to
 * JSON requests, JSON replies to output structs, freeing, and paging.
 *
 * The generated tables (lib/client/kms_ops.c) describe each struct; this file
 * is the only code that reads or writes a typed struct, so the rules of the
 * whole typed API live here: present members only, required members checked
 * before sending, blobs as base64, strict member types in replies, bounded
 * lists and maps, wiped secrets.  Messages name members, never values. */
#include "client/kms_codec.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/kms_client_internal.h"
#include "core/codec.h"
#include "core/fnv.h"

/* A blob as both kms_blob and kms_blob_ref of kms_ops.h lay it out. */
typedef struct codec_blob {
  unsigned char *data;
  size_t len;
} codec_blob;

/* The dotted path of the member being handled, for messages ("Tags[1].TagKey"). */
typedef struct codec_path {
  char text[256];
  size_t len;
} codec_path;

/* Append to the path; returns the previous length, to restore with path_pop. */
__attribute__((format(printf, 2, 3))) static size_t path_push(codec_path *p, const char *fmt, ...) {
  size_t before = p->len;
  if (p->len < sizeof p->text - 1) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p->text + p->len, sizeof p->text - p->len, fmt, ap);
    va_end(ap);
    if (n > 0) p->len += (size_t)n;
    if (p->len > sizeof p->text - 1) p->len = sizeof p->text - 1;
  }
  return before;
}

/* The first out_size - 1 bytes of a server-supplied name, control characters
 * blanked, so that a hostile reply cannot drive a terminal through a message. */
static void printable_prefix(const char *in, char *out, size_t out_size) {
  size_t j = 0;
  for (; *in && j + 1 < out_size; in++) {
    unsigned char ch = (unsigned char)*in;
    out[j++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
  }
  out[j] = '\0';
}

static void path_pop(codec_path *p, size_t before) {
  p->len = before;
  p->text[before] = '\0';
}

/* Fill *err (when given) with a libkms-side failure and return `kind`. */
__attribute__((format(printf, 4, 5))) static int codec_fail(kms_error *err, kms_error_kind kind, const char *code,
                                                        const char *fmt, ...) {
  if (err) {
    memset(err, 0, sizeof *err);
    err->kind = kind;
    snprintf(err->code, sizeof err->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
  }
  return (int)kind;
}

static int out_of_memory(kms_error *err) {
  return codec_fail(err, KMS_ERR_MEMORY, "MemoryError", "out of memory");
}

static void wipe(void *p, size_t n) {
  if (p && n) explicit_bzero(p, n);
}

#define AT(base, off) ((char *)(base) + (off))
#define CAT(base, off) ((const char *)(base) + (off))

/* ------------------------------------------------------------------ encode */

static int encode_struct(const kms_codec_struct *st, const void *base, json_t **out, codec_path *path,
                         int depth, kms_error *err);

/* Is the member `f` of the struct at `base` set? */
static int field_present(const kms_codec_field *f, const void *base) {
  switch (f->value->type) {
    case MODEL_INTEGER:
    case MODEL_LONG:
    case MODEL_BOOLEAN:
    case MODEL_TIMESTAMP:
    case MODEL_DOUBLE:
      return *(const int *)CAT(base, f->aux_off) != 0;
    case MODEL_BLOB:
      return ((const codec_blob *)CAT(base, f->off))->data != NULL;
    default:
      return *(void *const *)CAT(base, f->off) != NULL;
  }
}

static int bad_param(kms_error *err, const codec_path *path, const char *what) {
  return codec_fail(err, KMS_ERR_PARAM, "InvalidParameter", "input member %s %s", path->text, what);
}

/* The JSON of the value at `addr`.  `count` is the item count of a list or
 * map; `inline_struct` says a structure sits at `addr` itself (a list item)
 * rather than behind a pointer there (a member). */
static int encode_value(const kms_codec_value *v, const void *addr, size_t count, int inline_struct,
                        json_t **out, codec_path *path, int depth, kms_error *err) {
  json_t *j = NULL;
  int rc = KMS_OK;
  *out = NULL;
  if (depth > KMS_CODEC_MAX_DEPTH) return bad_param(err, path, "is nested too deeply");
  switch (v->type) {
    case MODEL_STRING: {
      const char *s = *(const char *const *)addr;
      if (!s) return bad_param(err, path, "is NULL");
      if (!(j = json_string(s))) return bad_param(err, path, "is not valid UTF-8");
      break;
    }
    case MODEL_BLOB: {
      const codec_blob *b = addr;
      if (!b->data) return bad_param(err, path, "has no data");
      if (b->len > (SIZE_MAX - 3) / 4 * 3 - 3) return bad_param(err, path, "is too large");
      size_t cap = b64_encoded_size(b->len);
      char *text = malloc(cap);
      if (!text) return out_of_memory(err);
      size_t n = b64_encode(b->data, b->len, text);
      j = json_stringn(text, n);
      wipe(text, cap);
      free(text);
      break;
    }
    case MODEL_INTEGER:
      j = json_integer(*(const int *)addr);
      break;
    case MODEL_LONG:
      j = json_integer(*(const long long *)addr);
      break;
    case MODEL_BOOLEAN:
      j = json_boolean(*(const int *)addr);
      break;
    case MODEL_TIMESTAMP:
    case MODEL_DOUBLE: {
      double d = *(const double *)addr;
      if (!isfinite(d)) return bad_param(err, path, "is not a finite number");
      /* Whole seconds go out as integers, as the SDKs send them. */
      if (d == floor(d) && fabs(d) < 9.0e15)
        j = json_integer((json_int_t)d);
      else
        j = json_real(d);
      break;
    }
    case MODEL_LIST: {
      const char *items = *(const char *const *)addr;
      if (!items && count) return bad_param(err, path, "is NULL");
      if (!(j = json_array())) return out_of_memory(err);
      for (size_t i = 0; i < count; i++) {
        json_t *item = NULL;
        size_t mark = path_push(path, "[%zu]", i);
        rc = encode_value(v->item, items + i * v->item_size, 0, 1, &item, path, depth + 1, err);
        path_pop(path, mark);
        if (rc) goto out;
        if (json_array_append_new(j, item)) {
          rc = out_of_memory(err);
          goto out;
        }
      }
      break;
    }
    case MODEL_MAP: {
      const char *pairs = *(const char *const *)addr;
      if (!pairs && count) return bad_param(err, path, "is NULL");
      if (!(j = json_object())) return out_of_memory(err);
      for (size_t i = 0; i < count; i++) {
        const char *pair = pairs + i * v->item_size;
        const char *key = *(const char *const *)pair;
        size_t mark = path_push(path, "[%zu]", i);
        if (!key) {
          rc = bad_param(err, path, "has a NULL key");
          path_pop(path, mark);
          goto out;
        }
        size_t value_count = v->item->type == MODEL_LIST ? *(const size_t *)(pair + v->value_aux_off) : 0;
        json_t *value = NULL;
        rc = encode_value(v->item, pair + v->value_off, value_count, 0, &value, path, depth + 1, err);
        path_pop(path, mark);
        if (rc) goto out;
        if (json_object_set_new(j, key, value)) {
          path_push(path, "[%zu]", i);
          rc = bad_param(err, path, "has a key that is not valid UTF-8");
          goto out;
        }
      }
      break;
    }
    case MODEL_STRUCTURE: {
      const void *sbase = inline_struct ? addr : *(const void *const *)addr;
      if (!sbase) return bad_param(err, path, "is NULL");
      return encode_struct(v->fields, sbase, out, path, depth + 1, err);
    }
  }
  if (!j) return out_of_memory(err);
out:
  if (rc) {
    kms_codec_json_wipe(j);
    json_decref(j);
    return rc;
  }
  *out = j;
  return KMS_OK;
}

static int encode_struct(const kms_codec_struct *st, const void *base, json_t **out, codec_path *path,
                         int depth, kms_error *err) {
  int rc = KMS_OK;
  json_t *obj = json_object();
  *out = NULL;
  if (!obj) return out_of_memory(err);
  for (size_t i = 0; i < st->field_count; i++) {
    const kms_codec_field *f = &st->fields[i];
    size_t mark = path_push(path, "%s%s", path->len ? "." : "", f->wire_name);
    if (!field_present(f, base)) {
      if (f->required) rc = codec_fail(err, KMS_ERR_PARAM, "InvalidParameter",
                                       "missing required input member %s", path->text);
      path_pop(path, mark);
      if (rc) goto out;
      continue;
    }
    size_t count = 0;
    if (f->value->type == MODEL_LIST || f->value->type == MODEL_MAP) count = *(const size_t *)CAT(base, f->aux_off);
    json_t *value = NULL;
    rc = encode_value(f->value, CAT(base, f->off), count, 0, &value, path, depth, err);
    path_pop(path, mark);
    if (rc) goto out;
    if (json_object_set_new(obj, f->wire_name, value)) {
      rc = out_of_memory(err);
      goto out;
    }
  }
out:
  if (rc) {
    kms_codec_json_wipe(obj);
    json_decref(obj);
    return rc;
  }
  *out = obj;
  return KMS_OK;
}

int kms_codec_encode(const kms_codec_struct *st, const void *in, json_t **out, kms_error *err) {
  codec_path path = {.text = "", .len = 0};
  if (!out) return codec_fail(err, KMS_ERR_PARAM, "InvalidParameter", "no place for the request");
  *out = NULL;
  if (!st || !in) return codec_fail(err, KMS_ERR_PARAM, "InvalidParameter", "the input is NULL");
  return encode_struct(st, in, out, &path, 0, err);
}

/* ------------------------------------------------------------------ decode */

static int decode_struct(const kms_codec_struct *st, const json_t *obj, void *base, codec_path *path,
                         int depth, kms_error *err);

static int bad_reply(kms_error *err, const codec_path *path, const char *what) {
  return codec_fail(err, KMS_ERR_RESPONSE, "InvalidResponse", "reply member %s %s", path->text, what);
}

static int expect(int ok, kms_error *err, const codec_path *path, const char *json_type) {
  if (ok) return KMS_OK;
  char what[64];
  snprintf(what, sizeof what, "is not a JSON %s", json_type);
  return bad_reply(err, path, what);
}

/* Fill the value at `addr` from `j`.  `aux` is the has_ flag of a scalar or
 * the count of a list or map (NULL for list items, which are always there). */
static int decode_value(const kms_codec_value *v, const json_t *j, void *addr, void *aux, int inline_struct,
                        codec_path *path, int depth, kms_error *err) {
  int rc;
  if (depth > KMS_CODEC_MAX_DEPTH) return bad_reply(err, path, "is nested too deeply");
  switch (v->type) {
    case MODEL_STRING: {
      if ((rc = expect(json_is_string(j), err, path, "string"))) return rc;
      size_t n = json_string_length(j);
      const char *s = json_string_value(j);
      if (memchr(s, '\0', n)) return bad_reply(err, path, "holds a NUL character");
      char *copy = malloc(n + 1);
      if (!copy) return out_of_memory(err);
      memcpy(copy, s, n + 1);
      *(char **)addr = copy;
      return KMS_OK;
    }
    case MODEL_BLOB: {
      if ((rc = expect(json_is_string(j), err, path, "string"))) return rc;
      size_t n = json_string_length(j);
      unsigned char *data = malloc(b64_decoded_max(n) + 1);
      size_t len = 0;
      if (!data) return out_of_memory(err);
      if (b64_decode(json_string_value(j), n, data, &len) != 0) {
        wipe(data, b64_decoded_max(n) + 1);
        free(data);
        return bad_reply(err, path, "is not base64");
      }
      ((codec_blob *)addr)->data = data;
      ((codec_blob *)addr)->len = len;
      return KMS_OK;
    }
    case MODEL_INTEGER: {
      if ((rc = expect(json_is_integer(j), err, path, "integer"))) return rc;
      json_int_t n = json_integer_value(j);
      if (n < INT_MIN || n > INT_MAX) return bad_reply(err, path, "is out of range");
      *(int *)addr = (int)n;
      break;
    }
    case MODEL_LONG:
      if ((rc = expect(json_is_integer(j), err, path, "integer"))) return rc;
      *(long long *)addr = json_integer_value(j);
      break;
    case MODEL_BOOLEAN:
      if ((rc = expect(json_is_boolean(j), err, path, "boolean"))) return rc;
      *(int *)addr = json_is_true(j);
      break;
    case MODEL_TIMESTAMP:
    case MODEL_DOUBLE:
      if ((rc = expect(json_is_number(j), err, path, "number"))) return rc;
      *(double *)addr = json_number_value(j);
      break;
    case MODEL_LIST: {
      if ((rc = expect(json_is_array(j), err, path, "array"))) return rc;
      size_t n = json_array_size(j);
      if (n > KMS_CODEC_MAX_ITEMS) return bad_reply(err, path, "has too many items");
      char *items = calloc(n ? n : 1, v->item_size);
      if (!items) return out_of_memory(err);
      /* Owned by the struct from here on, so a failure below frees it. */
      *(char **)addr = items;
      *(size_t *)aux = n;
      for (size_t i = 0; i < n; i++) {
        size_t mark = path_push(path, "[%zu]", i);
        rc = decode_value(v->item, json_array_get(j, i), items + i * v->item_size, NULL, 1, path, depth + 1, err);
        path_pop(path, mark);
        if (rc) return rc;
      }
      return KMS_OK;
    }
    case MODEL_MAP: {
      if ((rc = expect(json_is_object(j), err, path, "object"))) return rc;
      size_t n = json_object_size(j);
      if (n > KMS_CODEC_MAX_ITEMS) return bad_reply(err, path, "has too many entries");
      char *pairs = calloc(n ? n : 1, v->item_size);
      if (!pairs) return out_of_memory(err);
      *(char **)addr = pairs;
      size_t i = 0;
      const char *key;
      json_t *value;
      json_object_foreach((json_t *)j, key, value) {
        char *pair = pairs + i * v->item_size;
        if (!(*(char **)pair = strdup(key))) return out_of_memory(err);
        /* Counted as soon as its key is owned, so a failure frees it. */
        *(size_t *)aux = ++i;
        char shown[41];
        printable_prefix(key, shown, sizeof shown);
        size_t mark = path_push(path, "[\"%s\"]", shown);
        rc = decode_value(v->item, value, pair + v->value_off,
                          v->item->type == MODEL_LIST ? pair + v->value_aux_off : NULL, 0, path, depth + 1, err);
        path_pop(path, mark);
        if (rc) return rc;
      }
      return KMS_OK;
    }
    case MODEL_STRUCTURE: {
      if ((rc = expect(json_is_object(j), err, path, "object"))) return rc;
      void *sbase = addr;
      if (!inline_struct) {
        if (!(sbase = calloc(1, v->fields->size))) return out_of_memory(err);
        *(void **)addr = sbase;
      }
      return decode_struct(v->fields, j, sbase, path, depth + 1, err);
    }
  }
  /* A scalar member: it is there. */
  if (aux) *(int *)aux = 1;
  return KMS_OK;
}

static int decode_struct(const kms_codec_struct *st, const json_t *obj, void *base, codec_path *path,
                         int depth, kms_error *err) {
  for (size_t i = 0; i < st->field_count; i++) {
    const kms_codec_field *f = &st->fields[i];
    const json_t *j = json_object_get(obj, f->wire_name);
    if (!j || json_is_null(j)) continue;
    size_t mark = path_push(path, "%s%s", path->len ? "." : "", f->wire_name);
    int rc = decode_value(f->value, j, AT(base, f->off), AT(base, f->aux_off), 0, path, depth, err);
    path_pop(path, mark);
    if (rc) return rc;
  }
  return KMS_OK;
}

int kms_codec_decode(const kms_codec_struct *st, const json_t *obj, void *out, kms_error *err) {
  codec_path path = {.text = "", .len = 0};
  if (!st || !out) return codec_fail(err, KMS_ERR_PARAM, "InvalidParameter", "no output struct");
  memset(out, 0, st->size);
  if (!json_is_object(obj))
    return codec_fail(err, KMS_ERR_RESPONSE, "InvalidResponse", "the reply is not a JSON object");
  int rc = decode_struct(st, obj, out, &path, 0, err);
  if (rc) kms_codec_free(st, out);
  return rc;
}

/* -------------------------------------------------------------------- free */

static void free_struct(const kms_codec_struct *st, void *base);

/* `aux` is the count of a list or map; the tables never put a list or map
 * directly in a list (where there is no count), and NULL is read as none. */
static void free_value(const kms_codec_value *v, void *addr, void *aux, int inline_struct) {
  switch (v->type) {
    case MODEL_STRING: {
      char *s = *(char **)addr;
      if (s && v->sensitive) wipe(s, strlen(s));
      free(s);
      *(char **)addr = NULL;
      break;
    }
    case MODEL_BLOB: {
      codec_blob *b = addr;
      wipe(b->data, b->len);
      free(b->data);
      b->data = NULL;
      b->len = 0;
      break;
    }
    case MODEL_LIST: {
      char *items = *(char **)addr;
      size_t n = items && aux ? *(size_t *)aux : 0;
      for (size_t i = 0; i < n; i++) free_value(v->item, items + i * v->item_size, NULL, 1);
      free(items);
      *(char **)addr = NULL;
      if (aux) *(size_t *)aux = 0;
      break;
    }
    case MODEL_MAP: {
      char *pairs = *(char **)addr;
      size_t n = pairs && aux ? *(size_t *)aux : 0;
      for (size_t i = 0; i < n; i++) {
        char *pair = pairs + i * v->item_size;
        free(*(char **)pair);
        free_value(v->item, pair + v->value_off, v->item->type == MODEL_LIST ? pair + v->value_aux_off : NULL, 0);
      }
      free(pairs);
      *(char **)addr = NULL;
      if (aux) *(size_t *)aux = 0;
      break;
    }
    case MODEL_STRUCTURE:
      if (inline_struct) {
        free_struct(v->fields, addr);
      } else {
        void *sbase = *(void **)addr;
        if (sbase) free_struct(v->fields, sbase);
        free(sbase);
        *(void **)addr = NULL;
      }
      break;
    default:
      break;  /* scalars live in the struct itself */
  }
}

static void free_struct(const kms_codec_struct *st, void *base) {
  for (size_t i = 0; i < st->field_count; i++) {
    const kms_codec_field *f = &st->fields[i];
    free_value(f->value, AT(base, f->off), AT(base, f->aux_off), 0);
  }
}

void kms_codec_free(const kms_codec_struct *st, void *out) {
  if (!st || !out) return;
  free_struct(st, out);
  memset(out, 0, st->size);
}

void kms_codec_json_wipe(json_t *j) {
  if (!j) return;
  if (json_is_string(j)) {
    wipe((char *)json_string_value(j), json_string_length(j));
  } else if (json_is_array(j)) {
    for (size_t i = 0; i < json_array_size(j); i++) kms_codec_json_wipe(json_array_get(j, i));
  } else if (json_is_object(j)) {
    const char *key;
    json_t *value;
    json_object_foreach(j, key, value) {
      kms_codec_json_wipe(value);
    }
  }
}

/* -------------------------------------------------------------------- call */

/* Is `op` one of `service`'s operations?  (A KMS request sent to a CloudHSMv2
 * endpoint would be signed for the wrong service, and the reverse.) */
static int op_is_of_service(const kms_codec_op *op, kms_service service) {
  size_t n = 0;
  const kms_codec_op *const *ops = kms_codec_ops(service, &n);
  for (size_t i = 0; i < n; i++)
    if (ops[i] == op) return 1;
  return 0;
}

int kms_codec_call(kms_client *c, const kms_codec_op *op, const void *in, void *out, kms_error *err) {
  json_t *request = NULL, *reply_json = NULL;
  char *body = NULL, *reply = NULL;
  size_t body_len = 0, reply_len = 0;
  kms_error call_err;
  json_error_t jerr;
  int rc;

  if (!out) return codec_fail(err, KMS_ERR_PARAM, "InvalidParameter", "%s: the output is NULL", op->name);
  memset(out, 0, op->output->size);
  if (!c) return codec_fail(err, KMS_ERR_PARAM, "InvalidParameter", "%s: the client is NULL", op->name);
  if (!op_is_of_service(op, kms_client_service(c)))
    return codec_fail(err, KMS_ERR_PARAM, "InvalidParameter", "%s: the client is not for this operation's service",
                      op->name);
  if ((rc = kms_codec_encode(op->input, in, &request, err))) goto out;
  if (!(body = json_dumps(request, JSON_COMPACT))) {
    rc = out_of_memory(err);
    goto out;
  }
  body_len = strlen(body);
  /* A zeroed error of our own, copied out on failure: the caller's *err may be
   * uninitialised, and whatever the runtime leaves unset must read as empty. */
  memset(&call_err, 0, sizeof call_err);
  if ((rc = kms_call_json(c, op->name, body, body_len, &reply, &reply_len, &call_err))) {
    if (err) *err = call_err;
    goto out;
  }

  /* Operations without output may answer with an empty body. */
  if (reply_len == 0) goto out;
  if (!(reply_json = json_loadb(reply, reply_len, JSON_REJECT_DUPLICATES, &jerr))) {
    /* Only where it breaks: jansson's text quotes the bad token, which may be
     * a piece of plaintext. */
    rc = codec_fail(err, KMS_ERR_RESPONSE, "InvalidResponse",
                    "%s: the reply is not JSON (line %d, column %d, byte %d)", op->name, jerr.line, jerr.column,
                    jerr.position);
    goto out;
  }
  rc = kms_codec_decode(op->output, reply_json, out, err);
out:
  wipe(body, body_len);
  free(body);
  kms_codec_json_wipe(request);
  json_decref(request);
  kms_codec_json_wipe(reply_json);
  json_decref(reply_json);
  kms_reply_free(reply, reply_len);
  return rc;
}

/* ------------------------------------------------------------------ paging */

struct kms_codec_pager {
  kms_client *client;
  const kms_codec_op *op;
  kms_codec_pager_spec spec;
  void *input;   /* shallow copy of the caller's input; its token member is ours */
  char *token;   /* the token of the next page; NULL for the first page */
  int done;
  size_t pages;  /* pages fetched */
  /* Hashes of every token sent so far, open addressing (0 marks a free
   * slot): a service that leads back to a page it already gave (A -> B -> A)
   * is caught at once.  A hash collision can only end a listing early with
   * an error, never loop. */
  uint64_t *seen;
  size_t seen_cap;    /* slots, a power of two, or 0 */
  size_t seen_count;
};

static uint64_t token_hash(const char *t) {
  uint64_t h = fnv1a_str(FNV1A_START, t);
  return h ? h : 1;
}

/* Remember `token`; 1 when it was seen before, 0 when new, -1 out of memory. */
static int pager_seen_before(kms_codec_pager *p, const char *token) {
  uint64_t h = token_hash(token);
  if ((p->seen_count + 1) * 2 > p->seen_cap) {
    size_t cap = p->seen_cap ? p->seen_cap * 2 : 64;
    uint64_t *grown = calloc(cap, sizeof *grown);
    if (!grown) return -1;
    for (size_t i = 0; i < p->seen_cap; i++) {
      if (!p->seen[i]) continue;
      size_t k = (size_t)p->seen[i] & (cap - 1);
      while (grown[k]) k = (k + 1) & (cap - 1);
      grown[k] = p->seen[i];
    }
    free(p->seen);
    p->seen = grown;
    p->seen_cap = cap;
  }
  size_t k = (size_t)h & (p->seen_cap - 1);
  while (p->seen[k]) {
    if (p->seen[k] == h) return 1;
    k = (k + 1) & (p->seen_cap - 1);
  }
  p->seen[k] = h;
  p->seen_count++;
  return 0;
}

int kms_codec_pager_new(kms_client *c, const kms_codec_op *op, const kms_codec_pager_spec *spec, const void *in,
                        kms_codec_pager **out, kms_error *err) {
  kms_codec_pager *p = NULL;
  int rc = KMS_OK;
  if (!out) return codec_fail(err, KMS_ERR_PARAM, "InvalidParameter", "%s: no place for the paginator", op->name);
  *out = NULL;
  if (!c || !in) return codec_fail(err, KMS_ERR_PARAM, "InvalidParameter", "%s: the client or input is NULL",
                                   op->name);
  if (!(p = calloc(1, sizeof *p)) || !(p->input = malloc(op->input->size))) {
    rc = out_of_memory(err);
    goto out;
  }
  p->client = c;
  p->op = op;
  p->spec = *spec;
  memcpy(p->input, in, op->input->size);
  /* A token in the caller's input resumes a listing where it stopped. */
  const char *start = *(const char *const *)CAT(in, spec->input_token_off);
  if (start && (!(p->token = strdup(start)) || pager_seen_before(p, start) < 0)) {
    rc = out_of_memory(err);
    goto out;
  }
  *out = p;
  p = NULL;
out:
  kms_codec_pager_free(p);
  return rc;
}

int kms_codec_pager_next(kms_codec_pager *p, void *out, kms_error *err) {
  if (!p || !out) {
    codec_fail(err, KMS_ERR_PARAM, "InvalidParameter", "the paginator or output is NULL");
    return -1;
  }
  memset(out, 0, p->op->output->size);
  if (p->done) return 0;
  *(const char **)AT(p->input, p->spec.input_token_off) = p->token;
  if (kms_codec_call(p->client, p->op, p->input, out, err)) {
    p->done = 1;
    return -1;
  }
  const char *next = *(char *const *)CAT(out, p->spec.output_token_off);
  int more;
  if (p->spec.has_more_results)
    more = *(const int *)CAT(out, p->spec.more_results_has_off) && *(const int *)CAT(out, p->spec.more_results_off);
  else
    more = next != NULL;
  /* "More" without a token to ask for it cannot be followed: this page is the last. */
  if (!next || !*next) more = 0;
  p->pages++;
  if (more) {
    int seen = p->pages >= KMS_CODEC_MAX_PAGES ? 1 : pager_seen_before(p, next);
    if (seen) {
      kms_codec_free(p->op->output, out);
      p->done = 1;
      if (seen < 0)
        out_of_memory(err);
      else if (p->pages >= KMS_CODEC_MAX_PAGES)
        codec_fail(err, KMS_ERR_RESPONSE, "PaginationError", "%s: more than %u pages", p->op->name,
                   KMS_CODEC_MAX_PAGES);
      else
        codec_fail(err, KMS_ERR_RESPONSE, "PaginationError",
                   "%s: the service sent a page token it returned before (the listing would loop)", p->op->name);
      return -1;
    }
  }
  char *copy = NULL;
  if (more && !(copy = strdup(next))) {
    kms_codec_free(p->op->output, out);
    p->done = 1;
    out_of_memory(err);
    return -1;
  }
  free(p->token);
  p->token = copy;
  p->done = !more;
  return 1;
}

void kms_codec_pager_free(kms_codec_pager *p) {
  if (!p) return;
  free(p->token);
  free(p->seen);
  free(p->input);
  free(p);
}
