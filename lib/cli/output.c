/* output.c - the `kms` command line's --output formats: the entry point, the
 * json and text formats, and the Python spellings of values the AWS CLI's
 * formats are built from (its str(), repr() and json.dump()).
 *
 * The AWS CLI is Python: what it prints is Python's own spelling of the
 * response after json.loads.  Reproducing it byte for byte means spelling
 * reals the way repr(float) does (shortest round-trip digits), booleans as
 * True/False, and a container met where a scalar was expected as the repr of
 * a dict or list.  The table format is in output_table.c, YAML in
 * output_yaml.c. */
#include "cli/output.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/output_internal.h"

/* ---- the buffer ------------------------------------------------------------ */

void cli_output_buf_free(cli_output_buf *buf) {
  if (!buf) return;
  free(buf->data);
  buf->data = NULL;
  buf->len = 0;
  buf->cap = 0;
}

/* Room for `extra` more bytes plus the terminating NUL. */
static int buf_reserve(cli_output_buf *b, size_t extra) {
  size_t need, cap;
  char *grown;
  if (extra > (size_t)-1 / 2 - b->len) return -1;
  need = b->len + extra + 1;
  if (need <= b->cap) return 0;
  cap = b->cap ? b->cap : 256;
  while (cap < need) cap *= 2;
  grown = realloc(b->data, cap);
  if (!grown) return -1;
  b->data = grown;
  b->cap = cap;
  return 0;
}

int cli_buf_put(cli_output_buf *b, const char *s, size_t n) {
  if (buf_reserve(b, n) != 0) return -1;
  if (n) memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int cli_buf_puts(cli_output_buf *b, const char *s) { return cli_buf_put(b, s, strlen(s)); }

int cli_buf_putc(cli_output_buf *b, char c) { return cli_buf_put(b, &c, 1); }

int cli_buf_repeat(cli_output_buf *b, char c, long count) {
  if (count <= 0) return 0;
  if (buf_reserve(b, (size_t)count) != 0) return -1;
  memset(b->data + b->len, c, (size_t)count);
  b->len += (size_t)count;
  b->data[b->len] = '\0';
  return 0;
}

/* ---- UTF-8 and the Unicode tables ---------------------------------------- */

/* Decode the code point at s[*i] and advance *i.  jansson hands out valid
 * UTF-8 only; a stray byte is still taken as one code point so a bad string
 * can never stall the loop. */
static uint32_t utf8_next(const char *s, size_t n, size_t *i) {
  const unsigned char *u = (const unsigned char *)s;
  unsigned char lead = u[*i];
  size_t more;
  uint32_t cp;
  if (lead >= 0xC0 && lead < 0xE0) {
    more = 1;
    cp = lead & 0x1Fu;
  } else if (lead >= 0xE0 && lead < 0xF0) {
    more = 2;
    cp = lead & 0x0Fu;
  } else if (lead >= 0xF0 && lead < 0xF8) {
    more = 3;
    cp = lead & 0x07u;
  } else {
    (*i)++;
    return lead;
  }
  if (more >= n - *i) {
    (*i)++;
    return lead;
  }
  for (size_t k = 1; k <= more; k++) {
    if ((u[*i + k] & 0xC0) != 0x80) {
      (*i)++;
      return lead;
    }
    cp = (cp << 6) | (u[*i + k] & 0x3Fu);
  }
  *i += more + 1;
  return cp;
}

static int in_ranges(const cli_cp_range *r, size_t count, uint32_t cp) {
  size_t lo = 0, hi = count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (cp < r[mid].first)
      hi = mid;
    else if (cp > r[mid].last)
      lo = mid + 1;
    else
      return 1;
  }
  return 0;
}

size_t cli_text_width(const char *s, size_t n) {
  size_t width = 0, i = 0;
  while (i < n) {
    uint32_t cp = utf8_next(s, n, &i);
    width += (cp >= 0xA1 && in_ranges(cli_wide_ranges, cli_wide_ranges_count, cp)) ? 2 : 1;
  }
  return width;
}

/* ---- keys ------------------------------------------------------------------ */

int cli_key_cmp(const cli_key *a, const cli_key *b) {
  size_t n = a->len < b->len ? a->len : b->len;
  int c = n ? memcmp(a->s, b->s, n) : 0;
  if (c != 0) return c;
  return (a->len > b->len) - (a->len < b->len);
}

static int key_qsort_cmp(const void *a, const void *b) { return cli_key_cmp(a, b); }

int cli_sorted_keys(const json_t *obj, cli_key **keys, size_t *count) {
  size_t n = json_object_size(obj), i = 0;
  cli_key *k;
  *keys = NULL;
  *count = 0;
  if (n == 0) return 0;
  k = malloc(n * sizeof *k);
  if (!k) return -1;
  /* jansson's iterator API takes a non-const object; it does not modify it. */
  for (void *it = json_object_iter((json_t *)obj); it && i < n;
       it = json_object_iter_next((json_t *)obj, it)) {
    k[i].s = json_object_iter_key(it);
    k[i].len = json_object_iter_key_len(it);
    i++;
  }
  qsort(k, i, sizeof *k, key_qsort_cmp);
  *keys = k;
  *count = i;
  return 0;
}

int cli_is_scalar(const json_t *v) { return !json_is_object(v) && !json_is_array(v); }

/* ---- Python spellings ------------------------------------------------------ */

int cli_py_float(cli_output_buf *b, double d) {
  char digits[40], out[64];
  int prec, exp10 = 0, ndig = 0, decpt, pos = 0;
  if (d == 0) return cli_buf_puts(b, signbit(d) ? "-0.0" : "0.0");
  /* The fewest significant digits that read back as the same double: what
   * Python's repr(float) prints. */
  for (prec = 1; prec <= 17; prec++) {
    snprintf(digits, sizeof digits, "%.*e", prec - 1, d);
    if (strtod(digits, NULL) == d) break;
  }
  /* digits is "[-]D[.DDD]e[+-]XX": gather the digit string and exponent. */
  {
    char mant[32];
    const char *p = digits;
    if (*p == '-') {
      out[pos++] = '-';
      p++;
    }
    for (; *p && *p != 'e'; p++)
      if (*p != '.' && ndig < (int)sizeof mant - 1) mant[ndig++] = *p;
    mant[ndig] = '\0';
    if (*p == 'e') exp10 = (int)strtol(p + 1, NULL, 10);
    while (ndig > 1 && mant[ndig - 1] == '0') mant[--ndig] = '\0';
    decpt = exp10 + 1; /* value = 0.mant * 10^decpt */
    if (decpt > -4 && decpt <= 16) {
      /* Fixed notation, always with a fractional part. */
      if (decpt <= 0) {
        out[pos++] = '0';
        out[pos++] = '.';
        for (int z = 0; z < -decpt; z++) out[pos++] = '0';
        for (int k = 0; k < ndig; k++) out[pos++] = mant[k];
      } else {
        for (int k = 0; k < decpt; k++) out[pos++] = k < ndig ? mant[k] : '0';
        out[pos++] = '.';
        if (ndig > decpt)
          for (int k = decpt; k < ndig; k++) out[pos++] = mant[k];
        else
          out[pos++] = '0';
      }
      out[pos] = '\0';
    } else {
      /* Exponent notation: "1e+16", "1.5e-07" (two exponent digits at least). */
      out[pos++] = mant[0];
      if (ndig > 1) {
        out[pos++] = '.';
        for (int k = 1; k < ndig; k++) out[pos++] = mant[k];
      }
      snprintf(out + pos, sizeof out - (size_t)pos, "e%c%02d", exp10 < 0 ? '-' : '+',
               exp10 < 0 ? -exp10 : exp10);
    }
  }
  return cli_buf_puts(b, out);
}

static int put_int(cli_output_buf *b, json_int_t i) {
  char tmp[32];
  snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, i);
  return cli_buf_puts(b, tmp);
}

static int put_hex_escape(cli_output_buf *b, const char *prefix, uint32_t cp, int digits) {
  char tmp[16];
  snprintf(tmp, sizeof tmp, "%s%0*x", prefix, digits, (unsigned)cp);
  return cli_buf_puts(b, tmp);
}

/* Python's repr(str): single quotes unless the text holds a single quote and
 * no double quote; backslash escapes for the quote, backslash, \t \n \r and
 * every code point str.isprintable() rejects. */
static int py_repr_str(cli_output_buf *b, const char *s, size_t n) {
  char quote = (memchr(s, '\'', n) && !memchr(s, '"', n)) ? '"' : '\'';
  size_t i = 0;
  if (cli_buf_putc(b, quote) != 0) return -1;
  while (i < n) {
    size_t start = i;
    uint32_t cp = utf8_next(s, n, &i);
    int rc;
    if (cp == (uint32_t)quote || cp == '\\') {
      rc = cli_buf_putc(b, '\\') || cli_buf_putc(b, (char)cp);
    } else if (cp == '\t') {
      rc = cli_buf_puts(b, "\\t");
    } else if (cp == '\n') {
      rc = cli_buf_puts(b, "\\n");
    } else if (cp == '\r') {
      rc = cli_buf_puts(b, "\\r");
    } else if (cp < 0x20 || cp == 0x7F) {
      rc = put_hex_escape(b, "\\x", cp, 2);
    } else if (cp < 0x7F) {
      rc = cli_buf_putc(b, (char)cp);
    } else if (in_ranges(cli_unprintable_ranges, cli_unprintable_ranges_count, cp)) {
      if (cp <= 0xFF)
        rc = put_hex_escape(b, "\\x", cp, 2);
      else if (cp <= 0xFFFF)
        rc = put_hex_escape(b, "\\u", cp, 4);
      else
        rc = put_hex_escape(b, "\\U", cp, 8);
    } else {
      rc = cli_buf_put(b, s + start, i - start);
    }
    if (rc != 0) return -1;
  }
  return cli_buf_putc(b, quote);
}

/* Python's repr() of the dict, list or scalar a JSON value loads as. */
static int py_repr(cli_output_buf *b, const json_t *v) {
  if (json_is_string(v)) return py_repr_str(b, json_string_value(v), json_string_length(v));
  if (json_is_object(v)) {
    int first = 1;
    if (cli_buf_putc(b, '{') != 0) return -1;
    for (void *it = json_object_iter((json_t *)v); it; it = json_object_iter_next((json_t *)v, it)) {
      if ((!first && cli_buf_puts(b, ", ") != 0) ||
          py_repr_str(b, json_object_iter_key(it), json_object_iter_key_len(it)) != 0 ||
          cli_buf_puts(b, ": ") != 0 || py_repr(b, json_object_iter_value(it)) != 0)
        return -1;
      first = 0;
    }
    return cli_buf_putc(b, '}');
  }
  if (json_is_array(v)) {
    if (cli_buf_putc(b, '[') != 0) return -1;
    for (size_t i = 0; i < json_array_size(v); i++)
      if ((i && cli_buf_puts(b, ", ") != 0) || py_repr(b, json_array_get(v, i)) != 0) return -1;
    return cli_buf_putc(b, ']');
  }
  return cli_py_str(b, v);
}

int cli_py_str(cli_output_buf *b, const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_STRING:
      return cli_buf_put(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
      return put_int(b, json_integer_value(v));
    case JSON_REAL:
      return cli_py_float(b, json_real_value(v));
    case JSON_TRUE:
      return cli_buf_puts(b, "True");
    case JSON_FALSE:
      return cli_buf_puts(b, "False");
    case JSON_NULL:
      return cli_buf_puts(b, "None");
    case JSON_OBJECT:
    case JSON_ARRAY:
      return py_repr(b, v);
  }
  return -1;
}

/* ---- json ------------------------------------------------------------------ */

/* A JSON string as Python's json module writes it with ensure_ascii=False:
 * only the quote, the backslash and control characters are escaped. */
static int json_put_string(cli_output_buf *b, const char *s, size_t n) {
  size_t run = 0;
  if (cli_buf_putc(b, '"') != 0) return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *esc = NULL;
    char hex[8];
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    switch (c) {
      case '"': esc = "\\\""; break;
      case '\\': esc = "\\\\"; break;
      case '\n': esc = "\\n"; break;
      case '\r': esc = "\\r"; break;
      case '\t': esc = "\\t"; break;
      case '\b': esc = "\\b"; break;
      case '\f': esc = "\\f"; break;
      default:
        snprintf(hex, sizeof hex, "\\u%04x", c);
        esc = hex;
    }
    if (cli_buf_put(b, s + run, i - run) != 0 || cli_buf_puts(b, esc) != 0) return -1;
    run = i + 1;
  }
  if (cli_buf_put(b, s + run, n - run) != 0) return -1;
  return cli_buf_putc(b, '"');
}

static int json_put_value(cli_output_buf *b, const json_t *v, long level) {
  if (json_is_string(v)) return json_put_string(b, json_string_value(v), json_string_length(v));
  if (json_is_true(v)) return cli_buf_puts(b, "true");
  if (json_is_false(v)) return cli_buf_puts(b, "false");
  if (json_is_null(v)) return cli_buf_puts(b, "null");
  if (json_is_integer(v) || json_is_real(v)) return cli_py_str(b, v);
  if (json_is_object(v)) {
    int first = 1;
    if (json_object_size(v) == 0) return cli_buf_puts(b, "{}");
    if (cli_buf_putc(b, '{') != 0) return -1;
    for (void *it = json_object_iter((json_t *)v); it; it = json_object_iter_next((json_t *)v, it)) {
      if (cli_buf_puts(b, first ? "\n" : ",\n") != 0 || cli_buf_repeat(b, ' ', (level + 1) * 4) != 0 ||
          json_put_string(b, json_object_iter_key(it), json_object_iter_key_len(it)) != 0 ||
          cli_buf_puts(b, ": ") != 0 || json_put_value(b, json_object_iter_value(it), level + 1) != 0)
        return -1;
      first = 0;
    }
  } else {
    if (json_array_size(v) == 0) return cli_buf_puts(b, "[]");
    if (cli_buf_putc(b, '[') != 0) return -1;
    for (size_t i = 0; i < json_array_size(v); i++)
      if (cli_buf_puts(b, i ? ",\n" : "\n") != 0 || cli_buf_repeat(b, ' ', (level + 1) * 4) != 0 ||
          json_put_value(b, json_array_get(v, i), level + 1) != 0)
        return -1;
  }
  if (cli_buf_putc(b, '\n') != 0 || cli_buf_repeat(b, ' ', level * 4) != 0) return -1;
  return cli_buf_putc(b, json_is_object(v) ? '}' : ']');
}

/* ---- text ------------------------------------------------------------------ */

/* The text format's outcome, beyond 0 (written) and -1 (no memory). */
#define TEXT_UNPRINTABLE (-2) /* data the CLI's text format fails on */

static int text_value(cli_output_buf *b, const json_t *v, const cli_key *ident,
                      const cli_key *scalar_keys, size_t nscalar, int have_scalar_keys);

/* The row label: the member name upper-cased (ASCII letters only). */
static int text_ident(cli_output_buf *b, const cli_key *ident) {
  for (size_t i = 0; i < ident->len; i++) {
    char c = ident->s[i];
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    if (cli_buf_putc(b, c) != 0) return -1;
  }
  return 0;
}

/* Scalars of a list: one "LABEL\tvalue" row each under a label, else one
 * tab-joined row. */
static int text_scalar_list(cli_output_buf *b, const json_t *list, const cli_key *ident) {
  int first = 1;
  for (size_t i = 0; i < json_array_size(list); i++) {
    const json_t *el = json_array_get(list, i);
    if (!cli_is_scalar(el)) continue;
    if (ident) {
      if (text_ident(b, ident) != 0 || cli_buf_putc(b, '\t') != 0 || cli_py_str(b, el) != 0 ||
          cli_buf_putc(b, '\n') != 0)
        return -1;
    } else {
      if ((!first && cli_buf_putc(b, '\t') != 0) || cli_py_str(b, el) != 0) return -1;
    }
    first = 0;
  }
  return ident ? 0 : cli_buf_putc(b, '\n');
}

/* The sorted, distinct names of members holding a scalar in any object of
 * `list` (each element is an object: the caller checked). */
static int text_all_scalar_keys(const json_t *list, cli_key **out, size_t *count) {
  size_t cap = 0, n = 0;
  cli_key *keys = NULL;
  for (size_t i = 0; i < json_array_size(list); i++) cap += json_object_size(json_array_get(list, i));
  *out = NULL;
  *count = 0;
  if (cap == 0) return 0;
  keys = malloc(cap * sizeof *keys);
  if (!keys) return -1;
  for (size_t i = 0; i < json_array_size(list); i++) {
    json_t *obj = json_array_get(list, i);
    for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
      if (!cli_is_scalar(json_object_iter_value(it))) continue;
      keys[n].s = json_object_iter_key(it);
      keys[n].len = json_object_iter_key_len(it);
      n++;
    }
  }
  if (n) qsort(keys, n, sizeof *keys, key_qsort_cmp);
  {
    size_t w = 0;
    for (size_t r = 0; r < n; r++)
      if (w == 0 || cli_key_cmp(&keys[w - 1], &keys[r]) != 0) keys[w++] = keys[r];
    n = w;
  }
  *out = keys;
  *count = n;
  return 0;
}

static int text_list(cli_output_buf *b, const json_t *list, const cli_key *ident) {
  size_t n = json_array_size(list), objects = 0, lists = 0;
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    objects += json_is_object(json_array_get(list, i)) != 0;
    lists += json_is_array(json_array_get(list, i)) != 0;
  }
  if (objects) {
    cli_key *keys;
    size_t nkeys;
    int rc = 0;
    /* The CLI gathers the columns with dict.items() on every element: a list
     * mixing objects with anything else is an error there. */
    if (objects != n) return TEXT_UNPRINTABLE;
    if (text_all_scalar_keys(list, &keys, &nkeys) != 0) return -1;
    for (size_t i = 0; i < n && rc == 0; i++) rc = text_value(b, json_array_get(list, i), ident, keys, nkeys, 1);
    free(keys);
    return rc;
  }
  if (lists) {
    if (lists < n && text_scalar_list(b, list, ident) != 0) return -1;
    for (size_t i = 0; i < n; i++) {
      const json_t *el = json_array_get(list, i);
      int rc;
      if (cli_is_scalar(el)) continue;
      rc = text_value(b, el, ident, NULL, 0, 0);
      if (rc != 0) return rc;
    }
    return 0;
  }
  return text_scalar_list(b, list, ident);
}

/* An object: one row of its scalars (in `scalar_keys` order when given, a
 * missing one empty; else in sorted key order), then each remaining member
 * under its own name. */
static int text_object(cli_output_buf *b, const json_t *obj, const cli_key *ident,
                       const cli_key *scalar_keys, size_t nscalar, int have_scalar_keys) {
  cli_key *keys;
  size_t nkeys;
  int rc = 0, any = 0;
  if (cli_sorted_keys(obj, &keys, &nkeys) != 0) return -1;
  if (have_scalar_keys) {
    for (size_t k = 0; k < nscalar && rc == 0; k++) {
      const json_t *v = json_object_getn(obj, scalar_keys[k].s, scalar_keys[k].len);
      if (!any && ident && (text_ident(b, ident) != 0 || cli_buf_putc(b, '\t') != 0)) rc = -1;
      if (rc == 0 && any && cli_buf_putc(b, '\t') != 0) rc = -1;
      if (rc == 0 && v && cli_py_str(b, v) != 0) rc = -1;
      any = 1;
    }
  } else {
    for (size_t k = 0; k < nkeys && rc == 0; k++) {
      const json_t *v = json_object_getn(obj, keys[k].s, keys[k].len);
      if (!cli_is_scalar(v)) continue;
      if (!any && ident && (text_ident(b, ident) != 0 || cli_buf_putc(b, '\t') != 0)) rc = -1;
      if (rc == 0 && any && cli_buf_putc(b, '\t') != 0) rc = -1;
      if (rc == 0 && cli_py_str(b, v) != 0) rc = -1;
      any = 1;
    }
  }
  if (rc == 0 && any && cli_buf_putc(b, '\n') != 0) rc = -1;
  for (size_t k = 0; k < nkeys && rc == 0; k++) {
    const json_t *v = json_object_getn(obj, keys[k].s, keys[k].len);
    if (have_scalar_keys) {
      /* Members not among the columns, whatever their value. */
      const cli_key *hit = nscalar ? bsearch(&keys[k], scalar_keys, nscalar, sizeof *scalar_keys,
                                             key_qsort_cmp)
                                   : NULL;
      if (hit) continue;
    } else if (cli_is_scalar(v)) {
      continue;
    }
    rc = text_value(b, v, &keys[k], NULL, 0, 0);
  }
  free(keys);
  return rc;
}

static int text_value(cli_output_buf *b, const json_t *v, const cli_key *ident,
                      const cli_key *scalar_keys, size_t nscalar, int have_scalar_keys) {
  if (json_is_object(v)) return text_object(b, v, ident, scalar_keys, nscalar, have_scalar_keys);
  if (json_is_array(v)) return text_list(b, v, ident);
  if (cli_py_str(b, v) != 0) return -1;
  return cli_buf_putc(b, '\n');
}

/* ---- the entry points ------------------------------------------------------ */

kerr_code cli_output_parse_format(const char *name, cli_output_format *out, kerr *e) {
  static const struct {
    const char *name;
    cli_output_format format;
  } formats[] = {{"json", CLI_OUTPUT_JSON},
                 {"text", CLI_OUTPUT_TEXT},
                 {"table", CLI_OUTPUT_TABLE},
                 {"yaml", CLI_OUTPUT_YAML},
                 {"yaml-stream", CLI_OUTPUT_YAML_STREAM}};
  for (size_t i = 0; name && i < sizeof formats / sizeof formats[0]; i++) {
    if (strcmp(name, formats[i].name) == 0) {
      *out = formats[i].format;
      return KERR_OK;
    }
  }
  return kerr_set(e, KERR_VALIDATION,
                  "Invalid value for --output: choose from json, text, table, yaml, yaml-stream");
}

/* Whether `v` nests no deeper than `budget` objects and arrays. */
static int depth_within(const json_t *v, int budget) {
  if (cli_is_scalar(v)) return 1;
  if (budget <= 0) return 0;
  if (json_is_object(v)) {
    for (void *it = json_object_iter((json_t *)v); it; it = json_object_iter_next((json_t *)v, it))
      if (!depth_within(json_object_iter_value(it), budget - 1)) return 0;
  } else {
    for (size_t i = 0; i < json_array_size(v); i++)
      if (!depth_within(json_array_get(v, i), budget - 1)) return 0;
  }
  return 1;
}

kerr_code cli_output_render(const json_t *doc, const cli_output_opts *opts, cli_output_buf *out,
                            kerr *e) {
  size_t start;
  kerr_code rc = KERR_OK;
  int wrote = 0;
  if (!doc || !opts || !out) return kerr_set(e, KERR_INTERNAL, "cli_output_render: missing argument");
  start = out->len;
  if (!depth_within(doc, CLI_OUTPUT_MAX_DEPTH))
    return kerr_set(e, KERR_VALIDATION, "the response nests deeper than %d levels; not printed",
                    CLI_OUTPUT_MAX_DEPTH);
  switch (opts->format) {
    case CLI_OUTPUT_JSON:
      /* The CLI prints nothing for an empty object (an operation without a
       * response body). */
      if (json_is_object(doc) && json_object_size(doc) == 0) break;
      if (json_put_value(out, doc, 0) != 0 || cli_buf_putc(out, '\n') != 0) wrote = -1;
      break;
    case CLI_OUTPUT_TEXT:
      wrote = text_value(out, doc, NULL, NULL, 0, 0);
      if (wrote == TEXT_UNPRINTABLE)
        rc = kerr_set(e, KERR_VALIDATION, "text output cannot show a list mixing objects and other values");
      break;
    case CLI_OUTPUT_TABLE:
      rc = cli_output_table(doc, opts, out, e);
      break;
    case CLI_OUTPUT_YAML:
    case CLI_OUTPUT_YAML_STREAM:
      rc = cli_output_yaml(doc, opts->format == CLI_OUTPUT_YAML_STREAM, out, e);
      break;
    default:
      rc = kerr_set(e, KERR_VALIDATION, "unknown output format %d", (int)opts->format);
  }
  if (rc == KERR_OK && wrote == -1) rc = kerr_set(e, KERR_INTERNAL, "out of memory formatting output");
  if (rc != KERR_OK) {
    /* Nothing partial: the caller's buffer is as it was. */
    out->len = start;
    if (out->data) out->data[start] = '\0';
  }
  return rc;
}
