/* output_yaml.c - the `kms` command line's --output yaml and yaml-stream
 * (formats of the AWS CLI v2), emitted with libyaml.
 *
 * The AWS CLI v2 dumps the response with ruamel.yaml in block style; this
 * reproduces that look: keys sorted, two-space indentation, sequences not
 * indented under their key, `{}` and `[]` for empty containers, UTF-8 kept.
 * libyaml's emitter picks plain, single- or double-quoted style from the
 * characters, but it does not know what a plain scalar would read back as,
 * so every string a YAML 1.1 or 1.2 reader would take for a number, boolean,
 * null or timestamp is forced into quotes here: a script parsing the output
 * must get back exactly the response.  The check errs on the side of
 * quoting. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "cli/output_internal.h"

/* libyaml's output callback: 1 on success, as libyaml wants. */
static int yaml_sink(void *data, unsigned char *buffer, size_t size) {
  return cli_buf_put(data, (const char *)buffer, size) == 0;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* The index of the first byte from `i` on that is not in `set`. */
static size_t span(const char *s, size_t n, size_t i, const char *set) {
  while (i < n && s[i] != '\0' && strchr(set, s[i])) i++;
  return i;
}

/* Integers (0x/0o/0b, sexagesimal 1:30, digits with '_') and floats (with a
 * point, an exponent or both) as YAML 1.1 or 1.2 resolvers match them. */
static int looks_numeric(const char *s, size_t n) {
  size_t i = 0, j, digits = 0;
  if (i < n && (s[i] == '-' || s[i] == '+')) i++;
  if (i + 1 < n && s[i] == '0' && strchr("xXoObB", s[i + 1]) && s[i + 1] != '\0') {
    j = span(s, n, i + 2, "0123456789abcdefABCDEF_");
    return j == n && j > i + 2;
  }
  j = span(s, n, i, "0123456789_:");
  if (j < n && s[j] == '.') j = span(s, n, j + 1, "0123456789_");
  for (size_t k = i; k < j; k++) digits += is_digit(s[k]) != 0;
  if (digits == 0) return 0;
  if (j < n && (s[j] == 'e' || s[j] == 'E')) {
    size_t k;
    j++;
    if (j < n && (s[j] == '-' || s[j] == '+')) j++;
    k = span(s, n, j, "0123456789");
    if (k == j) return 0;
    j = k;
  }
  return j == n;
}

/* YAML 1.1 timestamps: "2024-11-30", "2024-11-30T22:53:20.123+00:00". */
static int looks_timestamp(const char *s, size_t n) {
  if (n < 6 || !is_digit(s[0]) || !is_digit(s[1]) || !is_digit(s[2]) || !is_digit(s[3]) || s[4] != '-' ||
      !is_digit(s[5]))
    return 0;
  return span(s, n, 0, "0123456789-:.+TtZz \t") == n;
}

/* Whether a plain scalar `s` would be read as something other than a
 * string by PyYAML (YAML 1.1) or ruamel.yaml (YAML 1.2). */
static int needs_quotes(const char *s, size_t n) {
  static const char *const words[] = {
      "~",    "null", "Null", "NULL",  "yes",   "Yes",   "YES", "no",   "No",   "NO",
      "true", "True", "TRUE", "false", "False", "FALSE", "on",  "On",   "ON",   "off",
      "Off",  "OFF",  "=",    "<<",    ".inf",  ".Inf",  ".INF", ".nan", ".NaN", ".NAN"};
  if (n == 0) return 1;
  for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
    size_t len = strlen(words[w]);
    if (n == len && memcmp(s, words[w], n) == 0) return 1;
  }
  /* Signed infinities: "-.inf", "+.Inf". */
  if (n == 5 && (s[0] == '-' || s[0] == '+') && s[1] == '.' &&
      (memcmp(s + 2, "inf", 3) == 0 || memcmp(s + 2, "Inf", 3) == 0 || memcmp(s + 2, "INF", 3) == 0))
    return 1;
  return looks_numeric(s, n) || looks_timestamp(s, n);
}

typedef struct yaml_ctx {
  yaml_emitter_t emitter;
  yaml_event_t event;
} yaml_ctx;

static int emit_scalar(yaml_ctx *y, const char *s, size_t n, int quote_if_ambiguous, int string) {
  int quoted = string && quote_if_ambiguous && needs_quotes(s, n);
  if (n > INT_MAX) return -1;
  if (!yaml_scalar_event_initialize(&y->event, NULL, (yaml_char_t *)(string ? YAML_STR_TAG : NULL),
                                    (const yaml_char_t *)s, (int)n, !quoted, 1,
                                    quoted ? YAML_SINGLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE))
    return -1;
  return yaml_emitter_emit(&y->emitter, &y->event) ? 0 : -1;
}

/* A real as ruamel.yaml writes one: repr(float), with ".0" put before an
 * exponent that has no point ("1e+16" would read back as a string). */
static int emit_real(yaml_ctx *y, double d) {
  cli_output_buf tmp = {0};
  int rc;
  if (cli_py_float(&tmp, d) != 0) return -1;
  if (!memchr(tmp.data, '.', tmp.len)) {
    char *e = memchr(tmp.data, 'e', tmp.len);
    if (e) {
      size_t at = (size_t)(e - tmp.data);
      cli_output_buf fixed = {0};
      if (cli_buf_put(&fixed, tmp.data, at) != 0 || cli_buf_puts(&fixed, ".0") != 0 ||
          cli_buf_put(&fixed, tmp.data + at, tmp.len - at) != 0) {
        cli_output_buf_free(&fixed);
        cli_output_buf_free(&tmp);
        return -1;
      }
      cli_output_buf_free(&tmp);
      tmp = fixed;
    }
  }
  rc = emit_scalar(y, tmp.data, tmp.len, 0, 0);
  cli_output_buf_free(&tmp);
  return rc;
}

static int emit_value(yaml_ctx *y, const json_t *v) {
  char num[32];
  switch (json_typeof(v)) {
    case JSON_STRING:
      return emit_scalar(y, json_string_value(v), json_string_length(v), 1, 1);
    case JSON_INTEGER:
      snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
      return emit_scalar(y, num, strlen(num), 0, 0);
    case JSON_REAL:
      return emit_real(y, json_real_value(v));
    case JSON_TRUE:
      return emit_scalar(y, "true", 4, 0, 0);
    case JSON_FALSE:
      return emit_scalar(y, "false", 5, 0, 0);
    case JSON_NULL:
      return emit_scalar(y, "null", 4, 0, 0);
    case JSON_ARRAY:
      if (!yaml_sequence_start_event_initialize(&y->event, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE) ||
          !yaml_emitter_emit(&y->emitter, &y->event))
        return -1;
      for (size_t i = 0; i < json_array_size(v); i++)
        if (emit_value(y, json_array_get(v, i)) != 0) return -1;
      if (!yaml_sequence_end_event_initialize(&y->event) || !yaml_emitter_emit(&y->emitter, &y->event))
        return -1;
      return 0;
    case JSON_OBJECT: {
      cli_key *keys;
      size_t n;
      int rc = 0;
      if (cli_sorted_keys(v, &keys, &n) != 0) return -1;
      if (!yaml_mapping_start_event_initialize(&y->event, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) ||
          !yaml_emitter_emit(&y->emitter, &y->event))
        rc = -1;
      for (size_t i = 0; i < n && rc == 0; i++) {
        rc = emit_scalar(y, keys[i].s, keys[i].len, 1, 1);
        if (rc == 0) rc = emit_value(y, json_object_getn(v, keys[i].s, keys[i].len));
      }
      free(keys);
      if (rc == 0 && (!yaml_mapping_end_event_initialize(&y->event) || !yaml_emitter_emit(&y->emitter, &y->event)))
        rc = -1;
      return rc;
    }
  }
  return -1;
}

kerr_code cli_output_yaml(const json_t *doc, int stream, cli_output_buf *out, kerr *e) {
  yaml_ctx y;
  int ok;
  /* As for json: an empty response prints nothing. */
  if (json_is_object(doc) && json_object_size(doc) == 0) return KERR_OK;
  memset(&y, 0, sizeof y);
  if (!yaml_emitter_initialize(&y.emitter)) return kerr_set(e, KERR_INTERNAL, "out of memory formatting YAML");
  yaml_emitter_set_output(&y.emitter, yaml_sink, out);
  yaml_emitter_set_unicode(&y.emitter, 1);
  yaml_emitter_set_indent(&y.emitter, 2);
  yaml_emitter_set_width(&y.emitter, 80);
  ok = yaml_stream_start_event_initialize(&y.event, YAML_UTF8_ENCODING) &&
       yaml_emitter_emit(&y.emitter, &y.event) &&
       yaml_document_start_event_initialize(&y.event, NULL, NULL, NULL, 1) &&
       yaml_emitter_emit(&y.emitter, &y.event);
  /* yaml-stream: the response is one item of a sequence, as v2 prints each
   * page of a paginated response. */
  if (ok && stream)
    ok = yaml_sequence_start_event_initialize(&y.event, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE) &&
         yaml_emitter_emit(&y.emitter, &y.event);
  if (ok) ok = emit_value(&y, doc) == 0;
  if (ok && stream)
    ok = yaml_sequence_end_event_initialize(&y.event) && yaml_emitter_emit(&y.emitter, &y.event);
  if (ok)
    ok = yaml_document_end_event_initialize(&y.event, 1) && yaml_emitter_emit(&y.emitter, &y.event) &&
         yaml_stream_end_event_initialize(&y.event) && yaml_emitter_emit(&y.emitter, &y.event) &&
         yaml_emitter_flush(&y.emitter);
  yaml_emitter_delete(&y.emitter);
  if (!ok) return kerr_set(e, KERR_INTERNAL, "the YAML emitter failed");
  return KERR_OK;
}
