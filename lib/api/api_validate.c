/* api_validate.c - validate JSON 1.1 request bodies against the AWS model.
 *
 * AWS's JSON services deserialize a request first (a wrong JSON type or bad
 * base64 is a SerializationException) and then check every constraint of the
 * input shape, reporting all violations at once in a fixed wording that SDKs
 * and scripts show to people.  This file does both in one walk over the body,
 * driven only by the generated model tables, so no handler sees a request the
 * model forbids.
 *
 * Two rules go beyond the model's constraints, both decided in
 * docs/kmsd.md: an integer member also takes a JSON number whose fraction is
 * zero (1.0, 1e3) as the integer it denotes, never a fraction; and a string
 * that passes every constraint of its shape must still hold no NUL character
 * (the \u0000 escape), since kmsd carries strings as C strings and a NUL
 * would silently cut them short (an encryption context "a\u0000b" would bind
 * like "a").
 *
 * Patterns are Java regexes; they are translated to PCRE2 and compiled once
 * per process (pthread_once), then shared read-only by every thread, each
 * match using its own match data. */
#include "api/api_validate.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/secmem.h"

/* Echoed values are cut to this many characters so messages stay bounded. */
#define ECHO_MAX_CHARS 256
/* Room for the joined violations; kerr truncates the final message anyway,
 * but every violation is still counted. */
#define VIOLATIONS_TEXT_MAX (2 * KERR_MSG_MAX)
#define PATH_MAX_LEN 512
#define CONSTRAINT_MAX 1024
/* Bounds backtracking of a single match, so no value can make a pattern
 * spin; the model's patterns need a tiny fraction of this. */
#define PATTERN_MATCH_LIMIT 1000000

/* ---- Pattern cache ------------------------------------------------------ */

typedef struct pattern_cache {
  const model_service *svc;
  pcre2_code **codes;          /* pattern_count slots; NULL where compile failed */
  kerr_code rc;                /* first failure, KERR_OK if all compiled */
  char msg[KERR_MSG_MAX];
} pattern_cache;

static pattern_cache pattern_caches[] = {{&model_kms, NULL, KERR_OK, ""},
                                         {&model_cloudhsmv2, NULL, KERR_OK, ""}};
static pcre2_match_context *pattern_match_ctx;
static pthread_once_t pattern_once = PTHREAD_ONCE_INIT;

static int is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Java regex text -> PCRE2 text that must match the whole subject.  Java's
 * \uXXXX escape has no PCRE2 spelling but \x{XXXX}; an escaped backslash is
 * copied as a pair so "\\u" is left alone.  Returns a malloc'd string or NULL
 * when out of memory. */
static char *translate_pattern(const char *java) {
  size_t n = strlen(java);
  /* Each 6-byte \uXXXX becomes 8 bytes; plus the (?: ) wrapper and NUL. */
  char *out = malloc(n * 2 + 8);
  size_t o = 0;

  if (!out) return NULL;
  memcpy(out, "(?:", 3);
  o = 3;
  for (size_t i = 0; i < n; i++) {
    if (java[i] == '\\' && i + 5 < n && java[i + 1] == 'u' && is_hex(java[i + 2]) &&
        is_hex(java[i + 3]) && is_hex(java[i + 4]) && is_hex(java[i + 5])) {
      o += (size_t)sprintf(out + o, "\\x{%.4s}", java + i + 2);
      i += 5;
    } else if (java[i] == '\\' && i + 1 < n) {
      out[o++] = java[i++];
      out[o++] = java[i];
    } else {
      out[o++] = java[i];
    }
  }
  out[o++] = ')';
  out[o] = '\0';
  return out;
}

/* Compile one model pattern.  Returns NULL and fills `why` on failure. */
static pcre2_code *compile_pattern(const char *java, char *why, size_t why_len) {
  int errcode = 0;
  PCRE2_SIZE erroffset = 0;
  pcre2_code *code;
  char *text = translate_pattern(java);

  if (!text) {
    snprintf(why, why_len, "out of memory");
    return NULL;
  }
  /* ANCHORED|ENDANCHORED give Java's matches(): the whole value or nothing. */
  code = pcre2_compile((PCRE2_SPTR)text, PCRE2_ZERO_TERMINATED,
                       PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED, &errcode,
                       &erroffset, NULL);
  free(text);
  if (!code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(errcode, buf, sizeof buf);
    snprintf(why, why_len, "%s at offset %zu", (const char *)buf, (size_t)erroffset);
    return NULL;
  }
  /* JIT is an optimisation only; the interpreter is used when it fails. */
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return code;
}

static void compile_all_patterns(void) {
  pattern_match_ctx = pcre2_match_context_create(NULL);
  if (pattern_match_ctx) pcre2_set_match_limit(pattern_match_ctx, PATTERN_MATCH_LIMIT);

  for (size_t c = 0; c < sizeof pattern_caches / sizeof *pattern_caches; c++) {
    pattern_cache *pc = &pattern_caches[c];
    const model_service *svc = pc->svc;

    if (!svc->pattern_count) continue;
    pc->codes = calloc(svc->pattern_count, sizeof(pcre2_code *));
    if (!pc->codes) {
      pc->rc = KERR_INTERNAL;
      snprintf(pc->msg, sizeof pc->msg, "out of memory compiling %s model patterns", svc->name);
      continue;
    }
    for (size_t s = 0; s < svc->shape_count; s++) {
      const model_shape *shape = &svc->shapes[s];
      char why[300];

      if (!shape->pattern || shape->pattern_index < 0 ||
          (size_t)shape->pattern_index >= svc->pattern_count)
        continue;
      pc->codes[shape->pattern_index] = compile_pattern(shape->pattern, why, sizeof why);
      if (!pc->codes[shape->pattern_index] && pc->rc == KERR_OK) {
        pc->rc = KERR_INTERNAL;
        snprintf(pc->msg, sizeof pc->msg, "pattern of %s shape %s does not compile: %s",
                 svc->name, shape->name, why);
      }
    }
  }
}

/* The cache of the service whose table holds `shape`, or NULL. */
static pattern_cache *cache_for_shape(const model_shape *shape) {
  uintptr_t p = (uintptr_t)shape;

  for (size_t c = 0; c < sizeof pattern_caches / sizeof *pattern_caches; c++) {
    const model_service *svc = pattern_caches[c].svc;
    uintptr_t lo = (uintptr_t)svc->shapes, hi = (uintptr_t)(svc->shapes + svc->shape_count);
    if (p >= lo && p < hi) return &pattern_caches[c];
  }
  return NULL;
}

api_integral api_validate_integral(const json_t *v, int64_t *out) {
  double d;
  if (json_is_integer(v)) {
    *out = (int64_t)json_integer_value(v);
    return API_INTEGRAL_OK;
  }
  if (!json_is_real(v)) return API_INTEGRAL_NOT_NUMBER;
  d = json_real_value(v);
  /* Both bounds are exact doubles (-2^63 and 2^63); NaN fails them too. */
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return API_INTEGRAL_RANGE;
  if ((double)(int64_t)d != d) return API_INTEGRAL_FRACTION;
  *out = (int64_t)d;
  return API_INTEGRAL_OK;
}

int api_validate_pattern_matches(const model_shape *shape, const char *value, size_t len) {
  pattern_cache *pc;
  pcre2_code *code;
  pcre2_match_data *md;
  int rc;

  if (!shape || !shape->pattern) return 1;
  pthread_once(&pattern_once, compile_all_patterns);
  pc = cache_for_shape(shape);
  if (!pc || !pc->codes || shape->pattern_index < 0 ||
      (size_t)shape->pattern_index >= pc->svc->pattern_count)
    return -1;
  code = pc->codes[shape->pattern_index];
  if (!code) return -1;
  md = pcre2_match_data_create_from_pattern(code, NULL);
  if (!md) return -1;
  rc = pcre2_match(code, (PCRE2_SPTR)value, len, 0, 0, md, pattern_match_ctx);
  pcre2_match_data_free(md);
  /* A value that hits the match limit (or is not UTF-8) is not proven to
   * match, so it fails the constraint like any other mismatch. */
  return rc >= 0 ? 1 : 0;
}

kerr_code api_validate_check_patterns(const model_service *svc, kerr *err) {
  pthread_once(&pattern_once, compile_all_patterns);
  for (size_t c = 0; c < sizeof pattern_caches / sizeof *pattern_caches; c++) {
    pattern_cache *pc = &pattern_caches[c];
    if (pc->svc != svc) continue;
    if (pc->rc) return kerr_set(err, pc->rc, "%s", pc->msg);
    return KERR_OK;
  }
  return kerr_set(err, KERR_INTERNAL, "no pattern cache for this service model");
}

kerr_code api_validate_pattern_compiles(const char *java_pattern, kerr *err) {
  char why[300];
  pcre2_code *code;

  if (!java_pattern) return kerr_set(err, KERR_INTERNAL, "no pattern");
  code = compile_pattern(java_pattern, why, sizeof why);
  if (!code) return kerr_set(err, KERR_INTERNAL, "pattern does not compile: %s", why);
  pcre2_code_free(code);
  return KERR_OK;
}

/* ---- The walk ----------------------------------------------------------- */

typedef struct vstate {
  unsigned violations;
  size_t text_len;
  char text[VIOLATIONS_TEXT_MAX];
  size_t path_len;
  char path[PATH_MAX_LEN];
  kerr_code fatal;             /* SERIALIZATION or INTERNAL: stop the walk */
  kerr *err;
} vstate;

/* Constraint kinds, in the order a value's violations are reported. */
enum {
  FAIL_ENUM = 1 << 0,
  FAIL_PATTERN = 1 << 1,
  FAIL_MIN_LEN = 1 << 2,
  FAIL_MAX_LEN = 1 << 3,
  FAIL_MIN_VAL = 1 << 4,
  FAIL_MAX_VAL = 1 << 5,
  FAIL_NUL = 1 << 6,
};
#define FAIL_KINDS 7

static void set_fatal(vstate *st, kerr_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_fatal(vstate *st, kerr_code code, const char *fmt, ...) {
  va_list ap;

  if (st->fatal) return;
  st->fatal = code;
  if (st->err) {
    st->err->code = code;
    va_start(ap, fmt);
    vsnprintf(st->err->msg, sizeof st->err->msg, fmt, ap);
    va_end(ap);
  }
}

/* Append printf output to the violations text; silently stops when full so
 * the count stays exact while the text stays bounded. */
static void text_append(vstate *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_append(vstate *st, const char *fmt, ...) {
  va_list ap;
  size_t room = sizeof st->text - st->text_len;
  int n;

  if (room <= 1) return;
  va_start(ap, fmt);
  n = vsnprintf(st->text + st->text_len, room, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  st->text_len += (size_t)n < room ? (size_t)n : room - 1;
}

/* `value_part` is "'echo' ", "null " or "" (value withheld). */
static void add_violation(vstate *st, const char *value_part, const char *constraint) {
  if (st->violations) text_append(st, "; ");
  text_append(st, "Value %sat '%s' failed to satisfy constraint: %s", value_part, st->path,
              constraint);
  st->violations++;
}

/* Push a member onto the path in AWS's lowerCamelCase; returns the length to
 * restore with path_pop. */
static size_t path_push_member(vstate *st, const char *name) {
  size_t saved = st->path_len;
  size_t room = sizeof st->path - st->path_len;
  int n;

  if (room <= 2 || !name[0]) return saved;
  if (st->path_len) {
    st->path[st->path_len++] = '.';
    room--;
  }
  st->path[st->path_len++] = (char)((name[0] >= 'A' && name[0] <= 'Z') ? name[0] + 32 : name[0]);
  room--;
  n = snprintf(st->path + st->path_len, room, "%s", name + 1);
  if (n > 0) st->path_len += (size_t)n < room ? (size_t)n : room - 1;
  st->path[st->path_len] = '\0';
  return saved;
}

static size_t path_push_text(vstate *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static size_t path_push_text(vstate *st, const char *fmt, ...) {
  size_t saved = st->path_len;
  size_t room = sizeof st->path - st->path_len;
  va_list ap;
  int n;

  va_start(ap, fmt);
  n = vsnprintf(st->path + st->path_len, room, fmt, ap);
  va_end(ap);
  if (n > 0) st->path_len += (size_t)n < room ? (size_t)n : room - 1;
  return saved;
}

static void path_pop(vstate *st, size_t saved) {
  st->path_len = saved;
  st->path[saved] = '\0';
}

/* Characters (code points) of valid UTF-8, which jansson guarantees. */
static size_t utf8_chars(const char *s, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++)
    if (((unsigned char)s[i] & 0xC0) != 0x80) n++;
  return n;
}

/* Bytes of the first `max_chars` characters of `s`. */
static size_t utf8_prefix(const char *s, size_t len, size_t max_chars) {
  size_t chars = 0;
  for (size_t i = 0; i < len; i++) {
    if (((unsigned char)s[i] & 0xC0) != 0x80) {
      if (chars == max_chars) return i;
      chars++;
    }
  }
  return len;
}

/* Whether a value of `shape` could carry a secret or binary data, which must
 * never be echoed: sensitive shapes, blobs, and containers of them. */
static int shape_hides_value(const model_shape *shape, int depth) {
  if (!shape || depth > API_VALIDATE_MAX_DEPTH) return 1;
  if (shape->sensitive || shape->type == MODEL_BLOB) return 1;
  switch (shape->type) {
  case MODEL_LIST:
    return shape_hides_value(shape->member, depth + 1);
  case MODEL_MAP:
    return shape_hides_value(shape->key, depth + 1) || shape_hides_value(shape->value, depth + 1);
  case MODEL_STRUCTURE:
    for (size_t i = 0; i < shape->member_count; i++)
      if (shape_hides_value(shape->members[i].shape, depth + 1)) return 1;
    return 0;
  default:
    return 0;
  }
}

typedef struct echo_buf {
  char *s;
  size_t len, cap;
  size_t chars, max_chars;
} echo_buf;

static void echo_bytes(echo_buf *b, const char *p, size_t n) {
  size_t keep = utf8_prefix(p, n, b->max_chars - b->chars);
  if (keep > b->cap - 1 - b->len) keep = b->cap - 1 - b->len;
  memcpy(b->s + b->len, p, keep);
  b->len += keep;
  b->chars += utf8_chars(p, keep);
  b->s[b->len] = '\0';
}

static void echo_str(echo_buf *b, const char *p) { echo_bytes(b, p, strlen(p)); }

/* Java-style text of a value (lists "[a, b]", maps "{k=v}"), bounded by
 * ECHO_MAX_CHARS.  Only called for shapes that hide nothing. */
static void echo_value(echo_buf *b, const json_t *v, int depth) {
  char num[64];

  if (b->chars >= b->max_chars) return;
  switch (json_typeof(v)) {
  case JSON_STRING: {
    /* A NUL would end the message early: it is shown as its JSON escape. */
    const char *p = json_string_value(v), *end = p + json_string_length(v);
    while (p < end) {
      const char *nul = memchr(p, '\0', (size_t)(end - p));
      echo_bytes(b, p, (size_t)((nul ? nul : end) - p));
      if (!nul) break;
      echo_str(b, "\\u0000");
      p = nul + 1;
    }
    break;
  }
  case JSON_INTEGER:
    snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    echo_str(b, num);
    break;
  case JSON_REAL:
    snprintf(num, sizeof num, "%.17g", json_real_value(v));
    echo_str(b, num);
    break;
  case JSON_TRUE:
    echo_str(b, "true");
    break;
  case JSON_FALSE:
    echo_str(b, "false");
    break;
  case JSON_NULL:
    echo_str(b, "null");
    break;
  case JSON_ARRAY: {
    size_t i;
    json_t *item;
    if (depth > API_VALIDATE_MAX_DEPTH) return;
    echo_str(b, "[");
    json_array_foreach(v, i, item) {
      if (i) echo_str(b, ", ");
      echo_value(b, item, depth + 1);
    }
    echo_str(b, "]");
    break;
  }
  case JSON_OBJECT: {
    const char *key;
    json_t *item;
    int first = 1;
    if (depth > API_VALIDATE_MAX_DEPTH) return;
    echo_str(b, "{");
    json_object_foreach((json_t *)v, key, item) {
      if (!first) echo_str(b, ", ");
      first = 0;
      echo_str(b, key);
      echo_str(b, "=");
      echo_value(b, item, depth + 1);
    }
    echo_str(b, "}");
    break;
  }
  }
}

/* The "Value ... " part of a message for `v` of `shape`, into `out`. */
static void value_part(const model_shape *shape, const json_t *v, char *out, size_t cap) {
  char text[ECHO_MAX_CHARS * 4 + 1];
  echo_buf b = {text, 0, sizeof text, 0, ECHO_MAX_CHARS};

  text[0] = '\0';
  if (shape_hides_value(shape, 0)) {
    out[0] = '\0';
    return;
  }
  echo_value(&b, v, 0);
  snprintf(out, cap, "'%s' ", text);
}

static void constraint_text(const model_shape *shape, int kind, char *out, size_t cap) {
  switch (kind) {
  case FAIL_ENUM: {
    size_t o = (size_t)snprintf(out, cap, "Member must satisfy enum value set: [");
    for (size_t i = 0; i < shape->enum_count && o < cap; i++)
      o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? ", " : "", shape->enum_values[i]);
    if (o < cap) snprintf(out + o, cap - o, "]");
    break;
  }
  case FAIL_PATTERN:
    snprintf(out, cap, "Member must satisfy regular expression pattern: %s", shape->pattern);
    break;
  case FAIL_MIN_LEN:
    snprintf(out, cap, "Member must have length greater than or equal to %lld", shape->min);
    break;
  case FAIL_MAX_LEN:
    snprintf(out, cap, "Member must have length less than or equal to %lld", shape->max);
    break;
  case FAIL_MIN_VAL:
    snprintf(out, cap, "Member must have value greater than or equal to %lld", shape->min);
    break;
  case FAIL_MAX_VAL:
    snprintf(out, cap, "Member must have value less than or equal to %lld", shape->max);
    break;
  case FAIL_NUL:
    snprintf(out, cap, "Member must not contain the NUL character (U+0000)");
    break;
  default:
    snprintf(out, cap, "Member is invalid");
  }
}

static const char *json_kind(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "a structure or map";
  case JSON_ARRAY: return "a list";
  case JSON_STRING: return "a string";
  case JSON_INTEGER:
  case JSON_REAL: return "a number";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  case JSON_NULL: return "null";
  }
  return "a value";
}

/* A wrong JSON type is a deserialization failure, worded the way AWS's JSON
 * services word the common cases. */
static void wrong_type(vstate *st, const model_shape *shape, const json_t *v) {
  static const char *const java_names[] = {
      [MODEL_STRING] = "a String",   [MODEL_BLOB] = "a ByteBuffer", [MODEL_INTEGER] = "an Integer",
      [MODEL_LONG] = "a Long",       [MODEL_BOOLEAN] = "a Boolean", [MODEL_TIMESTAMP] = "a Date",
      [MODEL_DOUBLE] = "a Double",   [MODEL_LIST] = "a List",       [MODEL_MAP] = "a Map",
      [MODEL_STRUCTURE] = "a Structure",
  };

  if (json_is_object(v)) {
    set_fatal(st, KERR_SERIALIZATION, "Start of structure or map found where not expected.");
  } else if (json_is_array(v)) {
    set_fatal(st, KERR_SERIALIZATION, "Start of list found where not expected.");
  } else if (json_is_string(v)) {
    set_fatal(st, KERR_SERIALIZATION, "class java.lang.String can not be converted to %s",
              java_names[shape->type]);
  } else {
    set_fatal(st, KERR_SERIALIZATION, "Found %s at '%s' where %s is expected.", json_kind(v),
              st->path, java_names[shape->type]);
  }
}

static unsigned check_length(const model_shape *shape, size_t len) {
  unsigned fails = 0;
  if (shape->has_min && (long long)len < shape->min) fails |= FAIL_MIN_LEN;
  if (shape->has_max && len > (unsigned long long)shape->max) fails |= FAIL_MAX_LEN;
  return fails;
}

/* Check a non-container value against `shape`; returns the failed constraint
 * kinds, or 0 (also when a fatal error was set). */
static unsigned check_scalar(vstate *st, const model_shape *shape, const json_t *v) {
  unsigned fails = 0;

  switch (shape->type) {
  case MODEL_STRING: {
    const char *s;
    size_t len;
    if (!json_is_string(v)) {
      wrong_type(st, shape, v);
      return 0;
    }
    s = json_string_value(v);
    len = json_string_length(v);
    if (shape->enum_values) {
      size_t i;
      for (i = 0; i < shape->enum_count; i++)
        if (strlen(shape->enum_values[i]) == len && !memcmp(shape->enum_values[i], s, len)) break;
      if (i == shape->enum_count) fails |= FAIL_ENUM;
    }
    if (shape->pattern) {
      int m = api_validate_pattern_matches(shape, s, len);
      if (m < 0) {
        set_fatal(st, KERR_INTERNAL, "The pattern of model shape %s cannot be used", shape->name);
        return 0;
      }
      if (m != 1) fails |= FAIL_PATTERN;
    }
    fails |= check_length(shape, utf8_chars(s, len));
    if (!fails && memchr(s, '\0', len)) fails |= FAIL_NUL;
    return fails;
  }
  case MODEL_BLOB: {
    const char *s;
    size_t len, cap, out_len = 0;
    uint8_t *buf;
    int bad;
    if (!json_is_string(v)) {
      wrong_type(st, shape, v);
      return 0;
    }
    s = json_string_value(v);
    len = json_string_length(v);
    /* Blobs often hold plaintexts: decode into memory that is wiped. */
    cap = b64_decoded_max(len);
    buf = secure_alloc(cap);
    if (!buf) {
      set_fatal(st, KERR_INTERNAL, "Out of memory");
      return 0;
    }
    bad = b64_decode(s, len, buf, &out_len);
    secure_free(buf, cap);
    if (bad) {
      set_fatal(st, KERR_SERIALIZATION, "Value at '%s' is not valid base64", st->path);
      return 0;
    }
    return check_length(shape, out_len);
  }
  case MODEL_INTEGER:
  case MODEL_LONG: {
    int64_t n = 0;
    const char *java_type = shape->type == MODEL_INTEGER ? "int" : "long";
    switch (api_validate_integral(v, &n)) {
    case API_INTEGRAL_OK:
      break;
    case API_INTEGRAL_FRACTION:
      set_fatal(st, KERR_SERIALIZATION,
                "Numeric value (%.17g) at '%s' has a fractional part where an integer is "
                "expected",
                json_real_value(v), st->path);
      return 0;
    case API_INTEGRAL_RANGE:
      set_fatal(st, KERR_SERIALIZATION, "Numeric value (%.17g) out of range of %s",
                json_real_value(v), java_type);
      return 0;
    default:
      wrong_type(st, shape, v);
      return 0;
    }
    if (shape->type == MODEL_INTEGER && (n < INT32_MIN || n > INT32_MAX)) {
      set_fatal(st, KERR_SERIALIZATION, "Numeric value (%lld) out of range of int",
                (long long)n);
      return 0;
    }
    if (shape->has_min && n < shape->min) fails |= FAIL_MIN_VAL;
    if (shape->has_max && n > shape->max) fails |= FAIL_MAX_VAL;
    return fails;
  }
  case MODEL_DOUBLE: {
    double d;
    if (!json_is_number(v)) {
      wrong_type(st, shape, v);
      return 0;
    }
    d = json_number_value(v);
    if (shape->has_min && d < (double)shape->min) fails |= FAIL_MIN_VAL;
    if (shape->has_max && d > (double)shape->max) fails |= FAIL_MAX_VAL;
    return fails;
  }
  case MODEL_TIMESTAMP:
    /* JSON 1.1 timestamps are epoch seconds. */
    if (!json_is_number(v)) wrong_type(st, shape, v);
    return 0;
  case MODEL_BOOLEAN:
    if (!json_is_boolean(v)) wrong_type(st, shape, v);
    return 0;
  default:
    set_fatal(st, KERR_INTERNAL, "Model shape %s is not a scalar", shape->name);
    return 0;
  }
}

static void report_fails(vstate *st, const model_shape *shape, const json_t *v, unsigned fails) {
  char vpart[ECHO_MAX_CHARS * 4 + 8];
  char constraint[CONSTRAINT_MAX];

  if (!fails) return;
  value_part(shape, v, vpart, sizeof vpart);
  for (int k = 0; k < FAIL_KINDS; k++) {
    if (!(fails & (1u << k))) continue;
    constraint_text(shape, 1 << k, constraint, sizeof constraint);
    add_violation(st, vpart, constraint);
  }
}

/* "Map keys must satisfy constraint: [c1, c2]" for the union of failures. */
static void report_map_fails(vstate *st, const model_shape *map, const json_t *v,
                             const model_shape *part, unsigned fails, const char *what) {
  char vpart[ECHO_MAX_CHARS * 4 + 8];
  char constraint[CONSTRAINT_MAX];
  char list[CONSTRAINT_MAX * 2];
  size_t o;

  if (!fails) return;
  value_part(map, v, vpart, sizeof vpart);
  o = (size_t)snprintf(list, sizeof list, "%s must satisfy constraint: [", what);
  for (int k = 0, first = 1; k < FAIL_KINDS && o < sizeof list; k++) {
    if (!(fails & (1u << k))) continue;
    constraint_text(part, 1 << k, constraint, sizeof constraint);
    o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", first ? "" : ", ", constraint);
    first = 0;
  }
  if (o < sizeof list) snprintf(list + o, sizeof list - o, "]");
  add_violation(st, vpart, list);
}

static int is_container(const model_shape *shape) {
  return shape->type == MODEL_LIST || shape->type == MODEL_MAP || shape->type == MODEL_STRUCTURE;
}

static void check_value(vstate *st, const model_shape *shape, const json_t *v, int depth);

static void check_structure(vstate *st, const model_shape *shape, const json_t *v, int depth) {
  if (!json_is_object(v)) {
    wrong_type(st, shape, v);
    return;
  }
  for (size_t i = 0; i < shape->member_count && !st->fatal; i++) {
    const model_member *m = &shape->members[i];
    const json_t *mv = json_object_get(v, m->name);
    size_t saved = path_push_member(st, m->name);

    /* JSON null is how SDKs spell "absent". */
    if (!mv || json_is_null(mv)) {
      if (m->required) add_violation(st, "null ", "Member must not be null");
    } else {
      check_value(st, m->shape, mv, depth + 1);
    }
    path_pop(st, saved);
  }
}

static void check_list(vstate *st, const model_shape *shape, const json_t *v, int depth) {
  size_t i;
  json_t *item;

  if (!json_is_array(v)) {
    wrong_type(st, shape, v);
    return;
  }
  report_fails(st, shape, v, check_length(shape, json_array_size(v)));
  json_array_foreach(v, i, item) {
    size_t saved;
    if (st->fatal) break;
    /* AWS numbers list items from 1 and names the item "member". */
    saved = path_push_text(st, ".%zu.member", i + 1);
    if (json_is_null(item))
      add_violation(st, "null ", "Member must not be null");
    else
      check_value(st, shape->member, item, depth + 1);
    path_pop(st, saved);
  }
}

static void check_map(vstate *st, const model_shape *shape, const json_t *v, int depth) {
  const char *key;
  json_t *item;
  unsigned key_fails = 0, value_fails = 0;

  if (!json_is_object(v)) {
    wrong_type(st, shape, v);
    return;
  }
  report_fails(st, shape, v, check_length(shape, json_object_size(v)));
  json_object_foreach((json_t *)v, key, item) {
    json_t *key_json;
    if (st->fatal) return;
    /* Keys are checked as the key shape's strings. */
    key_json = json_string(key);
    if (!key_json) {
      set_fatal(st, KERR_INTERNAL, "Out of memory");
      return;
    }
    key_fails |= check_scalar(st, shape->key, key_json);
    json_decref(key_json);
    if (st->fatal) return;
    if (json_is_null(item)) {
      set_fatal(st, KERR_SERIALIZATION, "Null map value at '%s'", st->path);
      return;
    }
    if (is_container(shape->value)) {
      size_t saved = path_push_text(st, ".%s", key);
      check_value(st, shape->value, item, depth + 1);
      path_pop(st, saved);
    } else {
      value_fails |= check_scalar(st, shape->value, item);
    }
  }
  if (st->fatal) return;
  report_map_fails(st, shape, v, shape->key, key_fails, "Map keys");
  report_map_fails(st, shape, v, shape->value, value_fails, "Map value");
}

static void check_value(vstate *st, const model_shape *shape, const json_t *v, int depth) {
  if (st->fatal) return;
  if (depth > API_VALIDATE_MAX_DEPTH) {
    set_fatal(st, KERR_SERIALIZATION, "Request nests deeper than %d levels",
              API_VALIDATE_MAX_DEPTH);
    return;
  }
  switch (shape->type) {
  case MODEL_STRUCTURE:
    check_structure(st, shape, v, depth);
    break;
  case MODEL_LIST:
    check_list(st, shape, v, depth);
    break;
  case MODEL_MAP:
    check_map(st, shape, v, depth);
    break;
  default:
    report_fails(st, shape, v, check_scalar(st, shape, v));
    break;
  }
}

kerr_code api_validate_input(const model_op *op, const json_t *body, kerr *err) {
  vstate *st;
  kerr_code rc = KERR_OK;

  if (!op) return kerr_set(err, KERR_INTERNAL, "No operation to validate against");
  if (!json_is_object(body)) {
    if (json_is_array(body))
      return kerr_set(err, KERR_SERIALIZATION, "Start of list found where not expected.");
    return kerr_set(err, KERR_SERIALIZATION, "The request body must be a JSON object.");
  }
  if (!op->input) return KERR_OK;

  /* A few KiB of state: on the heap, since handler threads may have small
   * stacks. */
  st = calloc(1, sizeof *st);
  if (!st) return kerr_set(err, KERR_INTERNAL, "Out of memory");
  st->err = err;
  check_value(st, op->input, body, 0);
  if (st->fatal) {
    rc = st->fatal;
    goto out;
  }
  if (st->violations) {
    rc = kerr_set(err, KERR_VALIDATION, "%u validation error%s detected: %s", st->violations,
                  st->violations == 1 ? "" : "s", st->text);
    goto out;
  }

out:
  free(st);
  return rc;
}
