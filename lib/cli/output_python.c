/* output_python.c - scalars written as Python writes them.
 *
 * The AWS CLI hands the reply, as Python values, to formatters that print
 * them with str() and repr(): a boolean is "True", null is "None", a float
 * is the shortest decimal that reads back to the same double, and a list
 * that lands in a text or table cell is shown as Python shows a list, quotes
 * and escapes included.  These helpers reproduce those spellings so the
 * formats agree with the AWS CLI byte for byte. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/output_internal.h"
#include "cli/output_unicode.h"

/* ---- UTF-8 ----------------------------------------------------------------- */

uint32_t cli_out_utf8_next(const char *s, size_t len, size_t *i) {
  const unsigned char *u = (const unsigned char *)s + *i;
  size_t left = len - *i;
  if (u[0] < 0x80 || left < 2) {
    *i += 1;
    return u[0];
  }
  if (u[0] < 0xE0) {
    *i += 2;
    return (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F);
  }
  if (u[0] < 0xF0 || left < 4) {
    if (left < 3) {
      *i += 1;
      return u[0];
    }
    *i += 3;
    return (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F);
  }
  *i += 4;
  return (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 | (uint32_t)(u[2] & 0x3F) << 6 |
         (u[3] & 0x3F);
}

long cli_out_text_columns(const char *s, size_t len) {
  long cols = 0;
  size_t i = 0;
  while (i < len) cols += cli_uni_columns(cli_out_utf8_next(s, len, &i));
  return cols;
}

/* ---- floats ---------------------------------------------------------------- */

/* Digits (no trailing zeros) and decimal exponent of `mantissa` x 10^`scale`. */
static void out_float_digits(long long mantissa, int scale, char digits[24], int *exp10) {
  int n = snprintf(digits, 24, "%lld", mantissa);
  *exp10 = scale + n - 1;
  while (n > 1 && digits[n - 1] == '0') digits[--n] = '\0';
}

/* Whether mantissa x 10^scale reads back as `v`. */
static int out_float_reads_as(long long mantissa, int scale, double v) {
  char text[48];
  snprintf(text, sizeof text, "%llde%d", mantissa, scale);
  return strtod(text, NULL) == v;
}

/* The shortest digits of a positive finite double.  For each length, the
 * correctly rounded decimal is tried first; when it does not read back, the
 * one decimal on the other side of v can (the doubles that read back form
 * an interval around v), and when both neighbours do, the nearer wins. */
static void out_float_shortest(double v, char digits[24], int *exp10) {
  for (int precision = 1; precision <= 17; precision++) {
    char sci[48];
    long long mantissa = 0;
    int scale;
    const char *p;
    snprintf(sci, sizeof sci, "%.*e", precision - 1, v);
    for (p = sci; *p && *p != 'e'; p++)
      if (*p >= '0' && *p <= '9') mantissa = mantissa * 10 + (*p - '0');
    scale = (int)strtol(p + 1, NULL, 10) - (precision - 1);
    if (out_float_reads_as(mantissa, scale, v) || precision == 17) {
      out_float_digits(mantissa, scale, digits, exp10);
      return;
    }
    {
      int up = out_float_reads_as(mantissa + 1, scale, v);
      int down = mantissa > 1 && out_float_reads_as(mantissa - 1, scale, v);
      if (up && down) {
        char text[48];
        snprintf(text, sizeof text, "%llde%d", mantissa, scale);
        /* v above the rounded decimal: the one above is nearer. */
        down = (long double)v < strtold(text, NULL);
        up = !down;
      }
      if (up || down) {
        out_float_digits(up ? mantissa + 1 : mantissa - 1, scale, digits, exp10);
        return;
      }
    }
  }
}

void cli_out_float_repr(double v, char buf[32]) {
  char text[96]; /* at most 24 bytes are ever used; room so no spelling can truncate */
  char digits[24];
  size_t ndigits = 0;
  int exp10 = 0, point;
  const char *sign = signbit(v) ? "-" : "";
  if (v == 0) {
    snprintf(buf, 32, "%s0.0", sign);
    return;
  }
  if (!isfinite(v)) { /* jansson never holds these; Python's spellings */
    snprintf(buf, 32, "%s", isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"));
    return;
  }
  /* The fewest significant digits that read back as the same double, and
   * of those the nearest to it: Python's repr(). */
  out_float_shortest(fabs(v), digits, &exp10);
  ndigits = strlen(digits);
  point = exp10 + 1; /* digits[0] sits just before the decimal point moved `point` places */
  if (point > -4 && point <= 16) {
    if (point <= 0) {
      snprintf(text, sizeof text, "%s0.%.*s%s", sign, -point, "0000", digits);
    } else if ((size_t)point >= ndigits) {
      snprintf(text, sizeof text, "%s%s%.*s.0", sign, digits, point - (int)ndigits, "0000000000000000");
    } else {
      snprintf(text, sizeof text, "%s%.*s.%s", sign, point, digits, digits + point);
    }
  } else {
    snprintf(text, sizeof text, "%s%c%s%se%c%02d", sign, digits[0], ndigits > 1 ? "." : "", digits + 1,
             exp10 < 0 ? '-' : '+', abs(exp10));
  }
  memcpy(buf, text, strnlen(text, 31));
  buf[strnlen(text, 31)] = '\0';
}

/* ---- str() and repr() ------------------------------------------------------ */

int cli_out_is_scalar(const json_t *v) { return !json_is_array(v) && !json_is_object(v); }

/* repr() of a str: quotes chosen as Python chooses them, escapes for the
 * backslash, the quote, control characters and whatever Unicode calls
 * unprintable. */
static kerr_code out_py_repr_string(cli_out_buf *b, const char *s, size_t len) {
  char quote = '\'';
  size_t i = 0;
  kerr_code rc;
  if (memchr(s, '\'', len) && !memchr(s, '"', len)) quote = '"';
  if ((rc = cli_out_putc(b, quote)) != KERR_OK) return rc;
  while (i < len && rc == KERR_OK) {
    size_t start = i;
    uint32_t cp = cli_out_utf8_next(s, len, &i);
    char esc[16];
    if (cp == '\\' || cp == (uint32_t)quote) {
      esc[0] = '\\';
      esc[1] = (char)cp;
      rc = cli_out_put(b, esc, 2);
    } else if (cp == '\t') {
      rc = cli_out_puts(b, "\\t");
    } else if (cp == '\n') {
      rc = cli_out_puts(b, "\\n");
    } else if (cp == '\r') {
      rc = cli_out_puts(b, "\\r");
    } else if (cli_uni_printable(cp)) {
      rc = cli_out_put(b, s + start, i - start);
    } else {
      if (cp <= 0xFF)
        snprintf(esc, sizeof esc, "\\x%02x", (unsigned)cp);
      else if (cp <= 0xFFFF)
        snprintf(esc, sizeof esc, "\\u%04x", (unsigned)cp);
      else
        snprintf(esc, sizeof esc, "\\U%08x", (unsigned)cp);
      rc = cli_out_puts(b, esc);
    }
  }
  if (rc == KERR_OK) rc = cli_out_putc(b, quote);
  return rc;
}

/* repr() of any value: what Python prints for a list or dict and its items. */
static kerr_code out_py_repr(cli_out_buf *b, const json_t *v) {
  kerr_code rc = KERR_OK;
  if (json_is_string(v)) return out_py_repr_string(b, json_string_value(v), json_string_length(v));
  if (json_is_array(v)) {
    size_t i;
    const json_t *item;
    rc = cli_out_putc(b, '[');
    json_array_foreach(v, i, item) {
      if (rc == KERR_OK && i > 0) rc = cli_out_puts(b, ", ");
      if (rc == KERR_OK) rc = out_py_repr(b, item);
    }
    return rc == KERR_OK ? cli_out_putc(b, ']') : rc;
  }
  if (json_is_object(v)) {
    const char *key;
    size_t key_len;
    json_t *item;
    int first = 1;
    rc = cli_out_putc(b, '{');
    json_object_keylen_foreach((json_t *)v, key, key_len, item) {
      if (rc == KERR_OK && !first) rc = cli_out_puts(b, ", ");
      first = 0;
      if (rc == KERR_OK) rc = out_py_repr_string(b, key, key_len);
      if (rc == KERR_OK) rc = cli_out_puts(b, ": ");
      if (rc == KERR_OK) rc = out_py_repr(b, item);
    }
    return rc == KERR_OK ? cli_out_putc(b, '}') : rc;
  }
  return cli_out_py_str(b, v);
}

kerr_code cli_out_py_str(cli_out_buf *b, const json_t *v) {
  char num[32];
  switch (json_typeof(v)) {
  case JSON_STRING:
    return cli_out_put(b, json_string_value(v), json_string_length(v));
  case JSON_TRUE:
    return cli_out_puts(b, "True");
  case JSON_FALSE:
    return cli_out_puts(b, "False");
  case JSON_NULL:
    return cli_out_puts(b, "None");
  case JSON_INTEGER:
    snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return cli_out_puts(b, num);
  case JSON_REAL:
    cli_out_float_repr(json_real_value(v), num);
    return cli_out_puts(b, num);
  default:
    return out_py_repr(b, v);
  }
}

/* ---- keys in Python's order ------------------------------------------------ */

int cli_out_key_cmp(const char *a, size_t a_len, const char *b, size_t b_len) {
  int c = memcmp(a, b, a_len < b_len ? a_len : b_len);
  if (c != 0) return c;
  return a_len < b_len ? -1 : (a_len > b_len ? 1 : 0);
}

int cli_out_member_order(const void *a, const void *b) {
  const cli_out_member *ma = a;
  const cli_out_member *mb = b;
  return cli_out_key_cmp(ma->key, ma->key_len, mb->key, mb->key_len);
}

kerr_code cli_out_sorted_members(const json_t *obj, cli_out_member **members, size_t *n, kerr *err) {
  size_t count = 0;
  void *it;
  *members = NULL;
  *n = 0;
  if (json_object_size(obj) == 0) return KERR_OK;
  *members = malloc(json_object_size(obj) * sizeof **members);
  if (!*members) return kerr_set(err, KERR_INTERNAL, "out of memory formatting the output");
  for (it = json_object_iter((json_t *)obj); it && count < json_object_size(obj);
       it = json_object_iter_next((json_t *)obj, it)) {
    (*members)[count].key = json_object_iter_key(it);
    (*members)[count].key_len = json_object_iter_key_len(it);
    (*members)[count].value = json_object_iter_value(it);
    count++;
  }
  qsort(*members, count, sizeof **members, cli_out_member_order);
  *n = count;
  return KERR_OK;
}

size_t cli_out_unique_members(cli_out_member *keys, size_t n) {
  size_t kept = 0;
  if (n == 0) return 0;
  qsort(keys, n, sizeof *keys, cli_out_member_order);
  for (size_t i = 1; i < n; i++)
    if (cli_out_member_order(&keys[kept], &keys[i]) != 0) keys[++kept] = keys[i];
  return kept + 1;
}
