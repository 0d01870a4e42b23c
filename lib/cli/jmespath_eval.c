/* jmespath_eval.c - evaluates a compiled JMESPath syntax tree against a
 * jansson document, and the value semantics the functions share: truthiness,
 * equality, number and string order, and the compact JSON text to_string
 * writes.
 *
 * Every evaluation returns a new reference and borrows its input, so a
 * result may share values with the document instead of copying them.  That
 * sharing is what makes the work budget necessary: `[@,@]|[@,@]|...` builds
 * a result of exponential size out of a few references, and only what is
 * walked or compared later costs; the budget (JMES_STEPS_MAX) turns such
 * expressions into a RESOURCE error instead of a hang. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/jmespath_internal.h"

kerr_code jmes_spend(jmes_ctx *ctx, size_t n) {
  if (ctx->steps_left < n) {
    ctx->steps_left = 0;
    return jmes_fail(ctx->err, JMES_ERR_RESOURCE,
                     "jmespath: the query needs more work than its budget allows");
  }
  ctx->steps_left -= n;
  return KERR_OK;
}

kerr_code jmes_build(jmes_ctx *ctx, size_t bytes) {
  if (ctx->build_left < bytes) {
    ctx->build_left = 0;
    return jmes_fail(ctx->err, JMES_ERR_RESOURCE,
                     "jmespath: the query builds more strings than its budget allows");
  }
  ctx->build_left -= bytes;
  return KERR_OK;
}

kerr_code jmes_spend_bytes(jmes_ctx *ctx, size_t bytes) {
  return jmes_spend(ctx, 1 + bytes / JMES_BYTES_PER_STEP);
}

static kerr_code too_deep(jmes_ctx *ctx) {
  return jmes_fail(ctx->err, JMES_ERR_RESOURCE, "jmespath: a value is nested deeper than %u levels",
                   JMES_DATA_DEPTH_MAX);
}

/* JMESPath truthiness: false, null, "", [] and {} are false. */
static int jmes_truthy(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_OBJECT: return json_object_size(v) > 0;
    case JSON_ARRAY: return json_array_size(v) > 0;
    case JSON_STRING: return json_string_length(v) > 0;
    case JSON_INTEGER:
    case JSON_REAL:
    case JSON_TRUE: return 1;
    case JSON_FALSE:
    case JSON_NULL: return 0;
  }
  return 0;
}

/* Order of the integer `i` and the finite real `d`, exactly: converting `i`
 * to a double would round it above 2^53 and make 2^53 + 1 equal 2^53.  A
 * real outside the int64 range decides by itself; otherwise the integers
 * are compared with the real's whole part, and a fraction breaks the tie. */
static int integer_real_cmp(json_int_t i, double d) {
  double whole;
  json_int_t w;
  if (d >= 9223372036854775808.0) return -1;
  if (d < -9223372036854775808.0) return 1;
  whole = floor(d);
  w = (json_int_t)whole;
  if (i != w) return (i > w) - (i < w);
  return d > whole ? -1 : 0;
}

int jmes_number_cmp(const json_t *a, const json_t *b) {
  if (json_is_integer(a) && json_is_integer(b)) {
    json_int_t x = json_integer_value(a), y = json_integer_value(b);
    return (x > y) - (x < y);
  }
  if (json_is_integer(a)) return integer_real_cmp(json_integer_value(a), json_real_value(b));
  if (json_is_integer(b)) return -integer_real_cmp(json_integer_value(b), json_real_value(a));
  double x = json_real_value(a), y = json_real_value(b);
  return (x > y) - (x < y);
}

int jmes_string_cmp(const json_t *a, const json_t *b) {
  if (a == b) return 0; /* the same object: a shared 67 MB string need not be read */
  size_t la = json_string_length(a), lb = json_string_length(b);
  int c = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
  if (c != 0) return c < 0 ? -1 : 1;
  return (la > lb) - (la < lb);
}

static kerr_code equal_at(jmes_ctx *ctx, const json_t *a, const json_t *b, unsigned depth, int *equal) {
  kerr_code rc;
  *equal = 0;
  if (a == b) {
    *equal = 1;
    return KERR_OK;
  }
  if (depth > JMES_DATA_DEPTH_MAX) return too_deep(ctx);
  rc = jmes_spend(ctx, 1);
  if (rc != KERR_OK) return rc;
  if (json_is_number(a) && json_is_number(b)) {
    *equal = jmes_number_cmp(a, b) == 0;
    return KERR_OK;
  }
  if (json_typeof(a) != json_typeof(b)) return KERR_OK;
  switch (json_typeof(a)) {
    case JSON_STRING:
      /* Strings of different lengths differ without reading them; equal
       * lengths cost by the bytes compared. */
      if (json_string_length(a) != json_string_length(b)) return KERR_OK;
      rc = jmes_spend_bytes(ctx, json_string_length(a));
      if (rc == KERR_OK) *equal = jmes_string_cmp(a, b) == 0;
      return rc;
    case JSON_ARRAY:
      if (json_array_size(a) != json_array_size(b)) return KERR_OK;
      for (size_t i = 0; i < json_array_size(a); i++) {
        rc = equal_at(ctx, json_array_get(a, i), json_array_get(b, i), depth + 1, equal);
        if (rc != KERR_OK || !*equal) return rc;
      }
      *equal = 1;
      return KERR_OK;
    case JSON_OBJECT:
      if (json_object_size(a) != json_object_size(b)) return KERR_OK;
      for (void *it = json_object_iter((json_t *)a); it; it = json_object_iter_next((json_t *)a, it)) {
        const json_t *other =
            json_object_getn(b, json_object_iter_key(it), json_object_iter_key_len(it));
        if (!other) {
          *equal = 0;
          return KERR_OK;
        }
        rc = equal_at(ctx, json_object_iter_value(it), other, depth + 1, equal);
        if (rc != KERR_OK || !*equal) return rc;
      }
      *equal = 1;
      return KERR_OK;
    default: *equal = 1; return KERR_OK; /* true, false, null */
  }
}

kerr_code jmes_equal(jmes_ctx *ctx, const json_t *a, const json_t *b, int *equal) {
  return equal_at(ctx, a, b, 0, equal);
}

/* ---- compact JSON text -------------------------------------------------- */

typedef struct text_buf {
  char *s;
  size_t len, cap;
} text_buf;

static kerr_code put(jmes_ctx *ctx, text_buf *b, const char *s, size_t n) {
  kerr_code rc;
  if (n > JMES_STRING_MAX - b->len)
    return jmes_fail(ctx->err, JMES_ERR_RESOURCE, "jmespath: a string would exceed %u bytes",
                     JMES_STRING_MAX);
  rc = jmes_build(ctx, n);
  if (rc != KERR_OK) return rc;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    char *grown;
    while (cap < b->len + n + 1) cap *= 2;
    grown = realloc(b->s, cap);
    if (!grown) return jmes_oom(ctx->err);
    b->s = grown;
    b->cap = cap;
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
  return KERR_OK;
}

/* A real as Python's repr writes it (what the compliance suite expects of
 * to_string): the fewest digits that read back as the same double, fixed
 * notation with at least one decimal for exponents -4..15, else e-notation. */
static void format_real(double d, char *out, size_t cap) {
  char probe[40];
  int digits, exp10;
  const char *e;
  for (digits = 1; digits < 17; digits++) {
    snprintf(probe, sizeof probe, "%.*e", digits - 1, d);
    if (strtod(probe, NULL) == d) break;
  }
  snprintf(probe, sizeof probe, "%.*e", digits - 1, d);
  e = strchr(probe, 'e');
  exp10 = e ? (int)strtol(e + 1, NULL, 10) : 0;
  if (exp10 < -4 || exp10 >= 16) {
    snprintf(out, cap, "%s", probe);
    return;
  }
  snprintf(out, cap, "%.*f", digits - 1 - exp10 > 0 ? digits - 1 - exp10 : 0, d);
  if (!strchr(out, '.')) strncat(out, ".0", cap - strlen(out) - 1);
}

static kerr_code put_string(jmes_ctx *ctx, text_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t run = 0;
  kerr_code rc = jmes_spend_bytes(ctx, n);
  if (rc == KERR_OK) rc = put(ctx, b, "\"", 1);
  for (size_t i = 0; rc == KERR_OK && i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[7];
    size_t esc_len = 2;
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    rc = put(ctx, b, s + run, i - run);
    run = i + 1;
    esc[0] = '\\';
    switch (c) {
      case '"': esc[1] = '"'; break;
      case '\\': esc[1] = '\\'; break;
      case '\n': esc[1] = 'n'; break;
      case '\r': esc[1] = 'r'; break;
      case '\t': esc[1] = 't'; break;
      case '\b': esc[1] = 'b'; break;
      case '\f': esc[1] = 'f'; break;
      default:
        memcpy(esc + 1, "u00", 3);
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 15];
        esc_len = 6;
    }
    if (rc == KERR_OK) rc = put(ctx, b, esc, esc_len);
  }
  if (rc == KERR_OK) rc = put(ctx, b, s + run, n - run);
  if (rc == KERR_OK) rc = put(ctx, b, "\"", 1);
  return rc;
}

static kerr_code put_value(jmes_ctx *ctx, text_buf *b, const json_t *v, unsigned depth) {
  char num[64];
  kerr_code rc;
  if (depth > JMES_DATA_DEPTH_MAX) return too_deep(ctx);
  rc = jmes_spend(ctx, 1);
  if (rc != KERR_OK) return rc;
  switch (json_typeof(v)) {
    case JSON_NULL: return put(ctx, b, "null", 4);
    case JSON_TRUE: return put(ctx, b, "true", 4);
    case JSON_FALSE: return put(ctx, b, "false", 5);
    case JSON_INTEGER:
      snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
      return put(ctx, b, num, strlen(num));
    case JSON_REAL:
      format_real(json_real_value(v), num, sizeof num);
      return put(ctx, b, num, strlen(num));
    case JSON_STRING: return put_string(ctx, b, json_string_value(v), json_string_length(v));
    case JSON_ARRAY:
      rc = put(ctx, b, "[", 1);
      for (size_t i = 0; rc == KERR_OK && i < json_array_size(v); i++) {
        if (i > 0) rc = put(ctx, b, ",", 1);
        if (rc == KERR_OK) rc = put_value(ctx, b, json_array_get(v, i), depth + 1);
      }
      return rc == KERR_OK ? put(ctx, b, "]", 1) : rc;
    case JSON_OBJECT:
      rc = put(ctx, b, "{", 1);
      for (void *it = json_object_iter((json_t *)v); rc == KERR_OK && it;
           it = json_object_iter_next((json_t *)v, it)) {
        if (it != json_object_iter((json_t *)v)) rc = put(ctx, b, ",", 1);
        if (rc == KERR_OK)
          rc = put_string(ctx, b, json_object_iter_key(it), json_object_iter_key_len(it));
        if (rc == KERR_OK) rc = put(ctx, b, ":", 1);
        if (rc == KERR_OK) rc = put_value(ctx, b, json_object_iter_value(it), depth + 1);
      }
      return rc == KERR_OK ? put(ctx, b, "}", 1) : rc;
  }
  return KERR_OK;
}

kerr_code jmes_to_json(jmes_ctx *ctx, const json_t *v, char **text, size_t *len) {
  text_buf b = {0};
  kerr_code rc = put_value(ctx, &b, v, 0);
  if (rc == KERR_OK && !b.s) rc = put(ctx, &b, "", 0);
  if (rc != KERR_OK) {
    free(b.s);
    *text = NULL;
    *len = 0;
    return rc;
  }
  *text = b.s;
  *len = b.len;
  return KERR_OK;
}

/* ---- evaluation --------------------------------------------------------- */

/* Append `v` (taken) to `list` unless it is null: projections drop nulls. */
static kerr_code collect(jmes_ctx *ctx, json_t *list, json_t *v) {
  if (json_is_null(v)) return KERR_OK;
  if (json_array_append_new(list, v) != 0) return jmes_oom(ctx->err);
  return KERR_OK;
}

/* Python's slice endpoints: negative counts from the end, and anything out
 * of range is clamped to where the walk in the direction of `step` starts
 * or stops. */
static long long slice_endpoint(long long v, long long len, long long step) {
  if (v < 0) {
    v += len;
    if (v < 0) v = step < 0 ? -1 : 0;
  } else if (v >= len) {
    v = step < 0 ? len - 1 : len;
  }
  return v;
}

static kerr_code eval_slice(jmes_ctx *ctx, const jmes_node *n, json_t *cur, json_t **out) {
  long long len, step, start, stop;
  json_t *list;
  kerr_code rc = KERR_OK;
  if (!json_is_array(cur)) {
    *out = json_null();
    return KERR_OK;
  }
  len = (long long)json_array_size(cur);
  step = n->slice_given[2] ? n->slice[2] : 1;
  start = n->slice_given[0] ? slice_endpoint(n->slice[0], len, step) : step < 0 ? len - 1 : 0;
  stop = n->slice_given[1] ? slice_endpoint(n->slice[1], len, step) : step < 0 ? -1 : len;
  list = json_array();
  if (!list) return jmes_oom(ctx->err);
  for (long long i = start; rc == KERR_OK && (step > 0 ? i < stop : i > stop); i += step) {
    rc = jmes_spend(ctx, 1);
    if (rc == KERR_OK && json_array_append(list, json_array_get(cur, (size_t)i)) != 0)
      rc = jmes_oom(ctx->err);
  }
  if (rc != KERR_OK) {
    json_decref(list);
    return rc;
  }
  *out = list;
  return KERR_OK;
}

/* The three projections: rhs over the elements of an array (list, filter)
 * or the values of an object; a base of the wrong type projects to null. */
static kerr_code eval_projection(jmes_ctx *ctx, const jmes_node *n, json_t *cur, json_t **out) {
  json_t *base = NULL, *list = NULL, *v = NULL;
  void *it = NULL;
  size_t i = 0;
  kerr_code rc = jmes_eval(ctx, n->lhs, cur, &base);
  if (rc != KERR_OK) return rc;
  if (n->kind == JN_PROJECT_VALUES ? !json_is_object(base) : !json_is_array(base)) {
    json_decref(base);
    *out = json_null();
    return KERR_OK;
  }
  list = json_array();
  if (!list) rc = jmes_oom(ctx->err);
  if (n->kind == JN_PROJECT_VALUES) it = json_object_iter(base);
  while (rc == KERR_OK) {
    json_t *elem;
    if (n->kind == JN_PROJECT_VALUES) {
      if (!it) break;
      elem = json_object_iter_value(it);
      it = json_object_iter_next(base, it);
    } else {
      if (i == json_array_size(base)) break;
      elem = json_array_get(base, i++);
    }
    rc = jmes_spend(ctx, 1);
    if (rc == KERR_OK && n->cond) {
      json_t *keep = NULL;
      rc = jmes_eval(ctx, n->cond, elem, &keep);
      if (rc == KERR_OK && !jmes_truthy(keep)) {
        json_decref(keep);
        continue;
      }
      json_decref(keep);
    }
    if (rc == KERR_OK) rc = jmes_eval(ctx, n->rhs, elem, &v);
    if (rc == KERR_OK) rc = collect(ctx, list, v);
  }
  json_decref(base);
  if (rc != KERR_OK) {
    json_decref(list);
    return rc;
  }
  *out = list;
  return KERR_OK;
}

static kerr_code eval_flatten(jmes_ctx *ctx, const jmes_node *n, json_t *cur, json_t **out) {
  json_t *base = NULL, *list = NULL;
  kerr_code rc = jmes_eval(ctx, n->lhs, cur, &base);
  if (rc != KERR_OK) return rc;
  if (!json_is_array(base)) {
    json_decref(base);
    *out = json_null();
    return KERR_OK;
  }
  list = json_array();
  if (!list) rc = jmes_oom(ctx->err);
  for (size_t i = 0; rc == KERR_OK && i < json_array_size(base); i++) {
    json_t *elem = json_array_get(base, i);
    rc = jmes_spend(ctx, json_is_array(elem) ? json_array_size(elem) + 1 : 1);
    if (rc != KERR_OK) break;
    if (json_is_array(elem) ? json_array_extend(list, elem) : json_array_append(list, elem))
      rc = jmes_oom(ctx->err);
  }
  json_decref(base);
  if (rc != KERR_OK) {
    json_decref(list);
    return rc;
  }
  *out = list;
  return KERR_OK;
}

static kerr_code eval_compare(jmes_ctx *ctx, const jmes_node *n, json_t *cur, json_t **out) {
  json_t *a = NULL, *b = NULL;
  int equal = 0, order;
  kerr_code rc = jmes_eval(ctx, n->lhs, cur, &a);
  if (rc == KERR_OK) rc = jmes_eval(ctx, n->rhs, cur, &b);
  if (rc == KERR_OK) {
    switch (n->cmp) {
      case JC_EQ:
      case JC_NE:
        rc = jmes_equal(ctx, a, b, &equal);
        *out = json_boolean(n->cmp == JC_EQ ? equal : !equal);
        break;
      default:
        /* Order is defined for numbers only; anything else compares to null. */
        if (!json_is_number(a) || !json_is_number(b)) {
          *out = json_null();
          break;
        }
        order = jmes_number_cmp(a, b);
        *out = json_boolean(n->cmp == JC_LT ? order < 0 : n->cmp == JC_LE ? order <= 0 :
                            n->cmp == JC_GT ? order > 0 : order >= 0);
    }
  }
  json_decref(a);
  json_decref(b);
  if (rc != KERR_OK) *out = NULL;
  return rc;
}

static kerr_code eval_multi(jmes_ctx *ctx, const jmes_node *n, json_t *cur, json_t **out) {
  json_t *whole, *v = NULL;
  kerr_code rc = KERR_OK;
  if (json_is_null(cur)) {
    *out = json_null();
    return KERR_OK;
  }
  whole = n->kind == JN_MULTI_LIST ? json_array() : json_object();
  if (!whole) return jmes_oom(ctx->err);
  for (size_t i = 0; rc == KERR_OK && i < n->n_items; i++) {
    rc = jmes_eval(ctx, n->items[i], cur, &v);
    if (rc != KERR_OK) break;
    if (n->kind == JN_MULTI_LIST ? json_array_append_new(whole, v)
                                 : json_object_setn_new(whole, n->keys[i].s, n->keys[i].len, v))
      rc = jmes_oom(ctx->err);
  }
  if (rc != KERR_OK) {
    json_decref(whole);
    return rc;
  }
  *out = whole;
  return KERR_OK;
}

kerr_code jmes_eval(jmes_ctx *ctx, const jmes_node *n, json_t *cur, json_t **out) {
  json_t *left = NULL, *v;
  long long i, len;
  kerr_code rc = jmes_spend(ctx, 1);
  *out = NULL;
  if (rc != KERR_OK) return rc;
  switch (n->kind) {
    case JN_CURRENT: *out = json_incref(cur); return KERR_OK;
    case JN_LITERAL: *out = json_incref(n->literal); return KERR_OK;
    case JN_FIELD:
      v = json_is_object(cur) ? json_object_getn(cur, n->name.s, n->name.len) : NULL;
      *out = v ? json_incref(v) : json_null();
      return KERR_OK;
    case JN_INDEX:
      if (!json_is_array(cur)) {
        *out = json_null();
        return KERR_OK;
      }
      len = (long long)json_array_size(cur);
      i = n->index < 0 ? n->index + len : n->index;
      *out = i >= 0 && i < len ? json_incref(json_array_get(cur, (size_t)i)) : json_null();
      return KERR_OK;
    case JN_SLICE: return eval_slice(ctx, n, cur, out);
    case JN_SUBEXPR:
    case JN_INDEX_EXPR:
    case JN_PIPE:
      rc = jmes_eval(ctx, n->lhs, cur, &left);
      if (rc == KERR_OK) rc = jmes_eval(ctx, n->rhs, left, out);
      json_decref(left);
      return rc;
    case JN_PROJECT_LIST:
    case JN_PROJECT_VALUES:
    case JN_PROJECT_FILTER: return eval_projection(ctx, n, cur, out);
    case JN_FLATTEN: return eval_flatten(ctx, n, cur, out);
    case JN_OR:
    case JN_AND:
      rc = jmes_eval(ctx, n->lhs, cur, &left);
      if (rc != KERR_OK) return rc;
      if (jmes_truthy(left) == (n->kind == JN_OR)) {
        *out = left;
        return KERR_OK;
      }
      json_decref(left);
      return jmes_eval(ctx, n->rhs, cur, out);
    case JN_NOT:
      rc = jmes_eval(ctx, n->lhs, cur, &left);
      if (rc == KERR_OK) *out = json_boolean(!jmes_truthy(left));
      json_decref(left);
      return rc;
    case JN_COMPARE: return eval_compare(ctx, n, cur, out);
    case JN_MULTI_LIST:
    case JN_MULTI_HASH: return eval_multi(ctx, n, cur, out);
    case JN_FUNCTION: return jmes_call(ctx, n, cur, out);
    case JN_EXPREF:
      /* Only a function can use an expression reference; anywhere else it
       * has no JSON value. */
      *out = json_null();
      return KERR_OK;
  }
  *out = json_null();
  return KERR_OK;
}

/* Add to *bytes about what the compact JSON text of `v` takes, counting a
 * value each time it is referenced: what printing the result would cost. */
static kerr_code measure(jmes_ctx *ctx, const json_t *v, unsigned depth, size_t *bytes) {
  kerr_code rc;
  if (depth > JMES_DATA_DEPTH_MAX) return too_deep(ctx);
  rc = jmes_spend(ctx, 1);
  if (rc != KERR_OK) return rc;
  *bytes += 8;
  if (json_is_string(v)) *bytes += json_string_length(v);
  if (json_is_array(v)) {
    for (size_t i = 0; rc == KERR_OK && i < json_array_size(v); i++)
      rc = measure(ctx, json_array_get(v, i), depth + 1, bytes);
  } else if (json_is_object(v)) {
    for (void *it = json_object_iter((json_t *)v); rc == KERR_OK && it;
         it = json_object_iter_next((json_t *)v, it)) {
      *bytes += json_object_iter_key_len(it);
      rc = measure(ctx, json_object_iter_value(it), depth + 1, bytes);
    }
  }
  if (rc == KERR_OK && *bytes > JMES_RESULT_MAX)
    rc = jmes_fail(ctx->err, JMES_ERR_RESOURCE, "jmespath: the result would exceed %u bytes",
                   JMES_RESULT_MAX);
  return rc;
}

kerr_code jmes_search(const jmes_expr *e, json_t *data, json_t **result, jmes_error *err) {
  return jmes_search_limited(e, data, NULL, result, err);
}

kerr_code jmes_search_bounded(const jmes_expr *e, json_t *data, size_t max_steps, json_t **result,
                              jmes_error *err) {
  jmes_limits limits = {max_steps, 0};
  return jmes_search_limited(e, data, &limits, result, err);
}

kerr_code jmes_search_limited(const jmes_expr *e, json_t *data, const jmes_limits *limits,
                              json_t **result, jmes_error *err) {
  jmes_ctx ctx = {err, limits && limits->max_steps ? limits->max_steps : JMES_STEPS_MAX,
                  limits && limits->max_build ? limits->max_build : JMES_BUILD_MAX};
  json_t *v = NULL;
  size_t bytes = 0;
  kerr_code rc;
  *result = NULL;
  if (err) {
    err->kind = JMES_ERR_NONE;
    err->offset = 0;
    kerr_clear(&err->status);
  }
  if (!e) return jmes_fail(err, JMES_ERR_SYNTAX, "jmespath: no compiled expression");
  rc = jmes_eval(&ctx, e->root, data ? data : json_null(), &v);
  if (rc == KERR_OK) rc = measure(&ctx, v, 0, &bytes);
  if (rc != KERR_OK) {
    json_decref(v);
    return rc;
  }
  *result = v;
  return KERR_OK;
}
