/* jmespath_func.c - the built-in functions of JMESPath: their signatures,
 * the argument type check every call goes through, and the functions
 * themselves.
 *
 * Types are checked before a function runs, from its signature, so each
 * built-in may assume its arguments have the declared types; only what a
 * signature cannot say (the keys an expression reference yields for
 * sort_by, max_by and min_by) is checked inside. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/jmespath_internal.h"

static const char *type_name(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER:
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
  }
  return "null";
}

static kerr_code wrong_type(jmes_ctx *ctx, const char *func, const char *what) {
  return jmes_fail(ctx->err, JMES_ERR_INVALID_TYPE, "jmespath: %s() %s", func, what);
}

/* A number as jansson holds it: an integer when `d` is a whole number that
 * fits, else a real. */
static json_t *whole_or_real(double d) {
  if (d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0)
    return json_integer((json_int_t)d);
  return json_real(d);
}

static kerr_code give(jmes_ctx *ctx, json_t *v, json_t **out) {
  *out = v;
  return v ? KERR_OK : jmes_oom(ctx->err);
}

/* A real result of `func`.  JSON cannot say infinity (and jansson refuses to
 * hold it), so a result that overflowed is an error about the data rather
 * than the out-of-memory that json_real's NULL would otherwise look like. */
static kerr_code give_real(jmes_ctx *ctx, const char *func, double d, json_t **out) {
  *out = NULL;
  if (!isfinite(d))
    return jmes_fail(ctx->err, JMES_ERR_INVALID_VALUE, "jmespath: %s() overflows a double", func);
  return give(ctx, json_real(d), out);
}

/* ---- numbers ------------------------------------------------------------ */

static kerr_code fn_abs(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  json_t *v = a[0].value;
  if (json_is_integer(v)) {
    json_int_t i = json_integer_value(v);
    if (i == INT64_MIN) return give_real(ctx, "abs", -(double)i, out);
    return give(ctx, json_integer(i < 0 ? -i : i), out);
  }
  return give_real(ctx, "abs", fabs(json_real_value(v)), out);
}

static kerr_code fn_ceil(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  json_t *v = a[0].value;
  if (json_is_integer(v)) return give(ctx, json_incref(v), out);
  return give(ctx, whole_or_real(ceil(json_real_value(v))), out);
}

static kerr_code fn_floor(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  json_t *v = a[0].value;
  if (json_is_integer(v)) return give(ctx, json_incref(v), out);
  return give(ctx, whole_or_real(floor(json_real_value(v))), out);
}

/* The sum of an array of numbers: exact while every term is an integer and
 * no sum overflows, in doubles (added left to right) from then on.  *exact
 * tells which: *whole holds an exact sum, *real any other (perhaps not
 * finite). */
static void sum_of(const json_t *list, int *exact_out, json_int_t *whole_out, double *real_out) {
  json_int_t whole = 0;
  double real = 0;
  int exact = 1;
  for (size_t i = 0; i < json_array_size(list); i++) {
    const json_t *v = json_array_get(list, i);
    json_int_t next;
    if (exact && json_is_integer(v) && !__builtin_add_overflow(whole, json_integer_value(v), &next)) {
      whole = next;
      continue;
    }
    if (exact) {
      real = (double)whole;
      exact = 0;
    }
    real += json_number_value(v);
  }
  *exact_out = exact;
  *whole_out = whole;
  *real_out = real;
}

static kerr_code fn_sum(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  int exact;
  json_int_t whole;
  double real;
  sum_of(a[0].value, &exact, &whole, &real);
  return exact ? give(ctx, json_integer(whole), out) : give_real(ctx, "sum", real, out);
}

static kerr_code fn_avg(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  int exact;
  json_int_t whole;
  double real;
  size_t count = json_array_size(a[0].value);
  if (count == 0) return give(ctx, json_null(), out);
  sum_of(a[0].value, &exact, &whole, &real);
  return give_real(ctx, "avg", (exact ? (double)whole : real) / (double)count, out);
}

/* ---- strings ------------------------------------------------------------ */

static kerr_code fn_starts_with(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  size_t len = json_string_length(a[0].value), plen = json_string_length(a[1].value);
  kerr_code rc = jmes_spend_bytes(ctx, plen <= len ? plen : 0);
  if (rc != KERR_OK) return rc;
  *out = json_boolean(plen <= len &&
                      memcmp(json_string_value(a[0].value), json_string_value(a[1].value), plen) == 0);
  return KERR_OK;
}

static kerr_code fn_ends_with(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  size_t len = json_string_length(a[0].value), slen = json_string_length(a[1].value);
  kerr_code rc = jmes_spend_bytes(ctx, slen <= len ? slen : 0);
  if (rc != KERR_OK) return rc;
  *out = json_boolean(slen <= len && memcmp(json_string_value(a[0].value) + len - slen,
                                            json_string_value(a[1].value), slen) == 0);
  return KERR_OK;
}

static kerr_code fn_join(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  const json_t *glue = a[0].value, *list = a[1].value;
  size_t total = 0, glue_len = json_string_length(glue), at = 0;
  char *buf;
  kerr_code rc;
  for (size_t i = 0; i < json_array_size(list); i++) {
    size_t part = json_string_length(json_array_get(list, i)) + (i > 0 ? glue_len : 0);
    if (part > JMES_STRING_MAX - total)
      return jmes_fail(ctx->err, JMES_ERR_RESOURCE, "jmespath: join() would exceed %u bytes",
                       JMES_STRING_MAX);
    total += part;
  }
  rc = jmes_spend_bytes(ctx, total);
  if (rc == KERR_OK) rc = jmes_build(ctx, total);
  if (rc != KERR_OK) return rc;
  buf = malloc(total + 1);
  if (!buf) return jmes_oom(ctx->err);
  for (size_t i = 0; i < json_array_size(list); i++) {
    const json_t *s = json_array_get(list, i);
    if (i > 0) {
      memcpy(buf + at, json_string_value(glue), glue_len);
      at += glue_len;
    }
    memcpy(buf + at, json_string_value(s), json_string_length(s));
    at += json_string_length(s);
  }
  *out = json_stringn_nocheck(buf, at);
  free(buf);
  return *out ? KERR_OK : jmes_oom(ctx->err);
}

/* Reverse a UTF-8 string by code point, not by byte. */
static json_t *reverse_string(const json_t *v) {
  const char *s = json_string_value(v);
  size_t len = json_string_length(v), at = 0;
  char *buf = malloc(len + 1);
  json_t *r;
  if (!buf) return NULL;
  for (size_t end = len; end > 0;) {
    size_t start = end - 1;
    while (start > 0 && ((unsigned char)s[start] & 0xc0) == 0x80) start--;
    memcpy(buf + at, s + start, end - start);
    at += end - start;
    end = start;
  }
  r = json_stringn_nocheck(buf, at);
  free(buf);
  return r;
}

static kerr_code fn_reverse(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  json_t *v = a[0].value, *list;
  kerr_code rc = json_is_array(v) ? jmes_spend(ctx, json_array_size(v)) : jmes_spend_bytes(ctx, json_string_length(v));
  if (rc == KERR_OK && json_is_string(v)) rc = jmes_build(ctx, json_string_length(v));
  if (rc != KERR_OK) return rc;
  if (json_is_string(v)) return give(ctx, reverse_string(v), out);
  list = json_array();
  if (!list) return jmes_oom(ctx->err);
  for (size_t i = json_array_size(v); i > 0; i--) {
    if (json_array_append(list, json_array_get(v, i - 1)) != 0) {
      json_decref(list);
      return jmes_oom(ctx->err);
    }
  }
  *out = list;
  return KERR_OK;
}

static kerr_code fn_length(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  json_t *v = a[0].value;
  size_t count = 0;
  if (json_is_string(v)) {
    /* Code points: every byte but UTF-8's continuation bytes starts one. */
    const char *s = json_string_value(v);
    kerr_code rc = jmes_spend_bytes(ctx, json_string_length(v));
    if (rc != KERR_OK) return rc;
    for (size_t i = 0; i < json_string_length(v); i++)
      if (((unsigned char)s[i] & 0xc0) != 0x80) count++;
  } else {
    count = json_is_array(v) ? json_array_size(v) : json_object_size(v);
  }
  return give(ctx, json_integer((json_int_t)count), out);
}

/* A string that is a JSON number, as a number; anything else is null.  A
 * number too large for a double is an error (JSON cannot say infinity). */
static kerr_code parse_number(jmes_ctx *ctx, const char *s, size_t len, json_t **out) {
  size_t i = 0;
  int whole = 1;
  char *copy;
  kerr_code rc = KERR_OK;
  *out = json_null();
  if (i < len && s[i] == '-') i++;
  if (i < len && s[i] == '0') {
    i++;
  } else if (i < len && s[i] >= '1' && s[i] <= '9') {
    while (i < len && s[i] >= '0' && s[i] <= '9') i++;
  } else {
    return KERR_OK;
  }
  if (i < len && s[i] == '.') {
    whole = 0;
    if (++i >= len || s[i] < '0' || s[i] > '9') return KERR_OK;
    while (i < len && s[i] >= '0' && s[i] <= '9') i++;
  }
  if (i < len && (s[i] == 'e' || s[i] == 'E')) {
    whole = 0;
    if (++i < len && (s[i] == '+' || s[i] == '-')) i++;
    if (i >= len || s[i] < '0' || s[i] > '9') return KERR_OK;
    while (i < len && s[i] >= '0' && s[i] <= '9') i++;
  }
  if (i != len) return KERR_OK;
  rc = jmes_spend_bytes(ctx, len);
  if (rc == KERR_OK) rc = jmes_build(ctx, len);
  if (rc != KERR_OK) {
    *out = NULL;
    return rc;
  }
  copy = malloc(len + 1);
  if (!copy) {
    *out = NULL;
    return jmes_oom(ctx->err);
  }
  memcpy(copy, s, len);
  copy[len] = '\0';
  if (whole) {
    long long v;
    errno = 0;
    v = strtoll(copy, NULL, 10);
    if (errno == 0) rc = give(ctx, json_integer(v), out);
    else whole = 0; /* beyond 64 bits: a real still says it */
  }
  if (!whole) rc = give_real(ctx, "to_number", strtod(copy, NULL), out);
  free(copy);
  return rc;
}

static kerr_code fn_to_number(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  json_t *v = a[0].value;
  if (json_is_number(v)) return give(ctx, json_incref(v), out);
  if (json_is_string(v)) return parse_number(ctx, json_string_value(v), json_string_length(v), out);
  *out = json_null();
  return KERR_OK;
}

static kerr_code fn_to_string(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  char *text = NULL;
  size_t len = 0;
  kerr_code rc;
  if (json_is_string(a[0].value)) return give(ctx, json_incref(a[0].value), out);
  rc = jmes_to_json(ctx, a[0].value, &text, &len);
  if (rc != KERR_OK) return rc;
  *out = json_stringn_nocheck(text, len);
  free(text);
  return *out ? KERR_OK : jmes_oom(ctx->err);
}

/* ---- values ------------------------------------------------------------- */

/* Whether `needle` occurs in `hay`.  Each place tried costs work, so a
 * pathological pair (a long run of 'a's searched for "aa...ab") ends in a
 * RESOURCE error rather than quadratic time. */
static kerr_code find_substring(jmes_ctx *ctx, const char *hay, size_t hay_len, const char *needle,
                                size_t needle_len, int *found) {
  const char *at = hay, *end = hay + hay_len;
  kerr_code rc = KERR_OK;
  *found = needle_len == 0;
  while (rc == KERR_OK && !*found && (size_t)(end - at) >= needle_len) {
    size_t span = (size_t)(end - at) - needle_len + 1;
    const char *hit = memchr(at, needle[0], span);
    /* The bytes the scan passed over cost as much as those compared. */
    rc = jmes_spend_bytes(ctx, (hit ? (size_t)(hit - at) : span) + (hit ? needle_len : 0));
    if (rc != KERR_OK || !hit) break;
    *found = memcmp(hit, needle, needle_len) == 0;
    at = hit + 1;
  }
  return rc;
}

static kerr_code fn_contains(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  json_t *subject = a[0].value, *search = a[1].value;
  int found = 0;
  kerr_code rc = KERR_OK;
  if (json_is_string(subject)) {
    /* A string contains only strings. */
    if (json_is_string(search))
      rc = find_substring(ctx, json_string_value(subject), json_string_length(subject),
                          json_string_value(search), json_string_length(search), &found);
  } else {
    for (size_t i = 0; rc == KERR_OK && !found && i < json_array_size(subject); i++)
      rc = jmes_equal(ctx, json_array_get(subject, i), search, &found);
  }
  if (rc == KERR_OK) *out = json_boolean(found);
  return rc;
}

static kerr_code fn_keys_or_values(jmes_ctx *ctx, const jmes_arg *a, int want_keys, json_t **out) {
  json_t *obj = a[0].value, *list = json_array();
  kerr_code rc = KERR_OK;
  if (!list) return jmes_oom(ctx->err);
  for (void *it = json_object_iter(obj); rc == KERR_OK && it; it = json_object_iter_next(obj, it)) {
    int failed;
    /* keys() copies every key. */
    rc = jmes_spend_bytes(ctx, want_keys ? json_object_iter_key_len(it) : 0);
    if (rc == KERR_OK && want_keys) rc = jmes_build(ctx, json_object_iter_key_len(it));
    if (rc != KERR_OK) break;
    failed = want_keys ? json_array_append_new(list, json_stringn_nocheck(json_object_iter_key(it),
                                                                              json_object_iter_key_len(it)))
                           : json_array_append(list, json_object_iter_value(it));
    if (failed) rc = jmes_oom(ctx->err);
  }
  if (rc != KERR_OK) {
    json_decref(list);
    return rc;
  }
  *out = list;
  return KERR_OK;
}

static kerr_code fn_keys(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  return fn_keys_or_values(ctx, a, 1, out);
}

static kerr_code fn_values(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  return fn_keys_or_values(ctx, a, 0, out);
}

static kerr_code fn_merge(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  json_t *merged = json_object();
  kerr_code rc = KERR_OK;
  if (!merged) return jmes_oom(ctx->err);
  for (size_t i = 0; rc == KERR_OK && i < n; i++) {
    rc = jmes_spend(ctx, json_object_size(a[i].value));
    if (rc == KERR_OK && json_object_update(merged, a[i].value) != 0) rc = jmes_oom(ctx->err);
  }
  if (rc != KERR_OK) {
    json_decref(merged);
    return rc;
  }
  *out = merged;
  return KERR_OK;
}

static kerr_code fn_not_null(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  for (size_t i = 0; i < n; i++)
    if (!json_is_null(a[i].value)) return give(ctx, json_incref(a[i].value), out);
  *out = json_null();
  return KERR_OK;
}

static kerr_code fn_to_array(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  json_t *list;
  if (json_is_array(a[0].value)) return give(ctx, json_incref(a[0].value), out);
  list = json_array();
  if (!list || json_array_append(list, a[0].value) != 0) {
    json_decref(list);
    return jmes_oom(ctx->err);
  }
  *out = list;
  return KERR_OK;
}

static kerr_code fn_type(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  return give(ctx, json_string(type_name(a[0].value)), out);
}

static kerr_code fn_map(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  json_t *list = json_array(), *v = NULL;
  kerr_code rc = KERR_OK;
  if (!list) return jmes_oom(ctx->err);
  for (size_t i = 0; rc == KERR_OK && i < json_array_size(a[1].value); i++) {
    rc = jmes_eval(ctx, a[0].ref, json_array_get(a[1].value, i), &v);
    /* Unlike a projection, map keeps nulls: one result per element. */
    if (rc == KERR_OK && json_array_append_new(list, v) != 0) rc = jmes_oom(ctx->err);
  }
  if (rc != KERR_OK) {
    json_decref(list);
    return rc;
  }
  *out = list;
  return KERR_OK;
}

/* ---- ordering ----------------------------------------------------------- */

/* Order of two sort keys already checked to be both numbers or both
 * strings: one unit, and for two different strings the bytes compared. */
static kerr_code key_cmp(jmes_ctx *ctx, const json_t *a, const json_t *b, int *order) {
  kerr_code rc;
  *order = 0;
  if (json_is_number(a)) {
    rc = jmes_spend(ctx, 1);
    if (rc == KERR_OK) *order = jmes_number_cmp(a, b);
    return rc;
  }
  size_t la = json_string_length(a), lb = json_string_length(b);
  rc = jmes_spend_bytes(ctx, a == b ? 0 : la < lb ? la : lb);
  if (rc == KERR_OK) *order = jmes_string_cmp(a, b);
  return rc;
}

/* Check that `keys` (n of them) are all numbers or all strings. */
static kerr_code check_keys(jmes_ctx *ctx, const char *func, json_t *const *keys, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int ok = i == 0 ? json_is_number(keys[0]) || json_is_string(keys[0])
                    : json_is_number(keys[i]) == json_is_number(keys[0]) &&
                          json_is_string(keys[i]) == json_is_string(keys[0]);
    if (!ok) return wrong_type(ctx, func, "needs keys that are all numbers or all strings");
  }
  return KERR_OK;
}

/* Stable bottom-up merge sort of the permutation `perm` (n entries) by
 * keys[perm[i]]. */
static kerr_code sort_perm(jmes_ctx *ctx, json_t *const *keys, size_t *perm, size_t n) {
  size_t *tmp;
  kerr_code rc = KERR_OK;
  if (n < 2) return KERR_OK;
  tmp = malloc(n * sizeof *tmp);
  if (!tmp) return jmes_oom(ctx->err);
  for (size_t width = 1; rc == KERR_OK && width < n; width *= 2) {
    rc = jmes_spend(ctx, n);
    for (size_t lo = 0; rc == KERR_OK && lo < n; lo += 2 * width) {
      size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
      size_t i = lo, j = mid, o = lo;
      while (rc == KERR_OK && i < mid && j < hi) {
        int order = 0;
        rc = key_cmp(ctx, keys[perm[j]], keys[perm[i]], &order);
        tmp[o++] = order < 0 ? perm[j++] : perm[i++];
      }
      while (i < mid) tmp[o++] = perm[i++];
      while (j < hi) tmp[o++] = perm[j++];
    }
    if (rc == KERR_OK) memcpy(perm, tmp, n * sizeof *perm);
  }
  free(tmp);
  return rc;
}

/* The sort key of every element of `list`: the element itself, or what the
 * expression reference `by` makes of it.  *keys_out: n new references. */
static kerr_code compute_keys(jmes_ctx *ctx, const char *func, json_t *list, const jmes_node *by,
                              json_t ***keys_out) {
  size_t n = json_array_size(list);
  json_t **keys = calloc(n ? n : 1, sizeof *keys);
  /* Without `by` the keys are the elements: still a unit each. */
  kerr_code rc = by ? KERR_OK : jmes_spend(ctx, n);
  *keys_out = NULL;
  if (!keys) return jmes_oom(ctx->err);
  for (size_t i = 0; rc == KERR_OK && i < n; i++) {
    if (by) rc = jmes_eval(ctx, by, json_array_get(list, i), &keys[i]);
    else keys[i] = json_incref(json_array_get(list, i));
  }
  if (rc == KERR_OK) rc = check_keys(ctx, func, keys, n);
  if (rc != KERR_OK) {
    for (size_t i = 0; i < n; i++) json_decref(keys[i]);
    free(keys);
    return rc;
  }
  *keys_out = keys;
  return KERR_OK;
}

static void free_keys(json_t **keys, size_t n) {
  if (!keys) return;
  for (size_t i = 0; i < n; i++) json_decref(keys[i]);
  free(keys);
}

static kerr_code sort_common(jmes_ctx *ctx, const char *func, json_t *list, const jmes_node *by,
                             json_t **out) {
  size_t n = json_array_size(list), *perm = NULL;
  json_t **keys = NULL, *sorted = NULL;
  kerr_code rc = compute_keys(ctx, func, list, by, &keys);
  if (rc == KERR_OK) {
    perm = malloc((n ? n : 1) * sizeof *perm);
    sorted = json_array();
    if (!perm || !sorted) rc = jmes_oom(ctx->err);
  }
  for (size_t i = 0; rc == KERR_OK && i < n; i++) perm[i] = i;
  if (rc == KERR_OK) rc = sort_perm(ctx, keys, perm, n);
  for (size_t i = 0; rc == KERR_OK && i < n; i++)
    if (json_array_append(sorted, json_array_get(list, perm[i])) != 0) rc = jmes_oom(ctx->err);
  free_keys(keys, n);
  free(perm);
  if (rc != KERR_OK) {
    json_decref(sorted);
    return rc;
  }
  *out = sorted;
  return KERR_OK;
}

static kerr_code fn_sort(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  return sort_common(ctx, "sort", a[0].value, NULL, out);
}

static kerr_code fn_sort_by(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  return sort_common(ctx, "sort_by", a[0].value, a[1].ref, out);
}

/* The element of `list` with the largest (want > 0) or smallest (want < 0)
 * key; the first of equal ones; null for an empty list. */
static kerr_code extreme(jmes_ctx *ctx, const char *func, json_t *list, const jmes_node *by, int want,
                         json_t **out) {
  size_t n = json_array_size(list), best = 0;
  json_t **keys = NULL;
  kerr_code rc;
  if (n == 0) {
    *out = json_null();
    return KERR_OK;
  }
  rc = compute_keys(ctx, func, list, by, &keys);
  if (rc != KERR_OK) return rc;
  for (size_t i = 1; rc == KERR_OK && i < n; i++) {
    int order = 0;
    rc = key_cmp(ctx, keys[i], keys[best], &order);
    if (order * want > 0) best = i;
  }
  free_keys(keys, n);
  *out = rc == KERR_OK ? json_incref(json_array_get(list, best)) : NULL;
  return rc;
}

static kerr_code fn_max(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  return extreme(ctx, "max", a[0].value, NULL, 1, out);
}

static kerr_code fn_min(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  return extreme(ctx, "min", a[0].value, NULL, -1, out);
}

static kerr_code fn_max_by(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  return extreme(ctx, "max_by", a[0].value, a[1].ref, 1, out);
}

static kerr_code fn_min_by(jmes_ctx *ctx, const jmes_arg *a, size_t n, json_t **out) {
  return extreme(ctx, "min_by", a[0].value, a[1].ref, -1, out);
}

/* ---- the table and the call --------------------------------------------- */

#define NUMS (JT_ARRAY_NUMBER)
#define NUMS_OR_STRS (JT_ARRAY_NUMBER | JT_ARRAY_STRING)

/* Sorted by name for the binary search in jmes_function_find. */
static const jmes_function functions[] = {
    {"abs", 1, 1, {JT_NUMBER}, fn_abs},
    {"avg", 1, 1, {NUMS}, fn_avg},
    {"ceil", 1, 1, {JT_NUMBER}, fn_ceil},
    {"contains", 2, 2, {JT_ARRAY | JT_STRING, JT_ANY}, fn_contains},
    {"ends_with", 2, 2, {JT_STRING, JT_STRING}, fn_ends_with},
    {"floor", 1, 1, {JT_NUMBER}, fn_floor},
    {"join", 2, 2, {JT_STRING, JT_ARRAY_STRING}, fn_join},
    {"keys", 1, 1, {JT_OBJECT}, fn_keys},
    {"length", 1, 1, {JT_STRING | JT_ARRAY | JT_OBJECT}, fn_length},
    {"map", 2, 2, {JT_EXPREF, JT_ARRAY}, fn_map},
    {"max", 1, 1, {NUMS_OR_STRS}, fn_max},
    {"max_by", 2, 2, {JT_ARRAY, JT_EXPREF}, fn_max_by},
    {"merge", 1, SIZE_MAX, {JT_OBJECT, JT_OBJECT}, fn_merge},
    {"min", 1, 1, {NUMS_OR_STRS}, fn_min},
    {"min_by", 2, 2, {JT_ARRAY, JT_EXPREF}, fn_min_by},
    {"not_null", 1, SIZE_MAX, {JT_ANY, JT_ANY}, fn_not_null},
    {"reverse", 1, 1, {JT_STRING | JT_ARRAY}, fn_reverse},
    {"sort", 1, 1, {NUMS_OR_STRS}, fn_sort},
    {"sort_by", 2, 2, {JT_ARRAY, JT_EXPREF}, fn_sort_by},
    {"starts_with", 2, 2, {JT_STRING, JT_STRING}, fn_starts_with},
    {"sum", 1, 1, {NUMS}, fn_sum},
    {"to_array", 1, 1, {JT_ANY}, fn_to_array},
    {"to_number", 1, 1, {JT_ANY}, fn_to_number},
    {"to_string", 1, 1, {JT_ANY}, fn_to_string},
    {"type", 1, 1, {JT_ANY}, fn_type},
    {"values", 1, 1, {JT_OBJECT}, fn_values},
};

const jmes_function *jmes_function_find(const char *name, size_t len) {
  size_t lo = 0, hi = sizeof functions / sizeof functions[0];
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const char *f = functions[mid].name;
    size_t flen = strlen(f);
    int c = memcmp(name, f, len < flen ? len : flen);
    if (c == 0) c = (len > flen) - (len < flen);
    if (c == 0) return &functions[mid];
    if (c < 0) hi = mid;
    else lo = mid + 1;
  }
  return NULL;
}

/* The type a signature needs at argument `i`, read from the table entry for
 * exactly that argument, so an optional or variadic argument never borrows
 * the type of another one.  An index the signature does not cover (the
 * parser refuses such calls) accepts nothing. */
static unsigned wanted_type(const jmes_function *f, size_t i) {
  size_t listed = f->max_args == SIZE_MAX ? f->min_args + 1 : f->max_args;
  if (f->max_args == SIZE_MAX && i > f->min_args) i = f->min_args;
  return i < listed && i < sizeof f->arg_types / sizeof f->arg_types[0] ? f->arg_types[i] : 0;
}

static const char *describe(unsigned types) {
  switch (types) {
    case JT_NUMBER: return "a number";
    case JT_STRING: return "a string";
    case JT_OBJECT: return "an object";
    case JT_ARRAY: return "an array";
    case JT_EXPREF: return "an expression reference (&expr)";
    case NUMS: return "an array of numbers";
    case JT_ARRAY_STRING: return "an array of strings";
    case NUMS_OR_STRS: return "an array of numbers or an array of strings";
    case JT_ARRAY | JT_STRING: return "an array or a string";
    case JT_STRING | JT_ARRAY | JT_OBJECT: return "a string, an array or an object";
    default: return "a value";
  }
}

/* Whether `v` has one of the types in `types`. */
static kerr_code has_type(jmes_ctx *ctx, const json_t *v, unsigned types, int *ok) {
  *ok = 0;
  switch (json_typeof(v)) {
    case JSON_OBJECT: *ok = (types & JT_OBJECT) != 0; break;
    case JSON_STRING: *ok = (types & JT_STRING) != 0; break;
    case JSON_INTEGER:
    case JSON_REAL: *ok = (types & JT_NUMBER) != 0; break;
    case JSON_TRUE:
    case JSON_FALSE: *ok = (types & JT_BOOLEAN) != 0; break;
    case JSON_NULL: *ok = (types & JT_NULL) != 0; break;
    case JSON_ARRAY: {
      int numbers = 1, strings = 1;
      if (types & JT_ARRAY) {
        *ok = 1;
        break;
      }
      kerr_code rc = jmes_spend(ctx, json_array_size(v));
      if (rc != KERR_OK) return rc;
      for (size_t i = 0; i < json_array_size(v); i++) {
        numbers = numbers && json_is_number(json_array_get(v, i));
        strings = strings && json_is_string(json_array_get(v, i));
      }
      *ok = ((types & JT_ARRAY_NUMBER) && numbers) || ((types & JT_ARRAY_STRING) && strings);
      break;
    }
  }
  return KERR_OK;
}

kerr_code jmes_call(jmes_ctx *ctx, const jmes_node *n, json_t *cur, json_t **out) {
  const jmes_function *f = n->func;
  jmes_arg *args = calloc(n->n_items ? n->n_items : 1, sizeof *args);
  kerr_code rc = KERR_OK;
  *out = NULL;
  if (!args) return jmes_oom(ctx->err);
  for (size_t i = 0; rc == KERR_OK && i < n->n_items; i++) {
    unsigned want = wanted_type(f, i);
    int ok = 0;
    if (n->items[i]->kind == JN_EXPREF) {
      args[i].ref = n->items[i]->lhs;
      ok = (want & JT_EXPREF) != 0;
      if (!ok)
        rc = jmes_fail(ctx->err, JMES_ERR_INVALID_TYPE,
                       "jmespath: argument %zu of %s() must be %s, got an expression reference",
                       i + 1, f->name, describe(want));
      continue;
    }
    rc = jmes_eval(ctx, n->items[i], cur, &args[i].value);
    if (rc == KERR_OK) rc = has_type(ctx, args[i].value, want, &ok);
    if (rc == KERR_OK && !ok)
      rc = jmes_fail(ctx->err, JMES_ERR_INVALID_TYPE, "jmespath: argument %zu of %s() must be %s, got %s",
                     i + 1, f->name, describe(want), type_name(args[i].value));
  }
  if (rc == KERR_OK) rc = f->call(ctx, args, n->n_items, out);
  for (size_t i = 0; i < n->n_items; i++) json_decref(args[i].value);
  free(args);
  if (rc != KERR_OK) *out = NULL;
  return rc;
}
