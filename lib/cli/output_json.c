/* output_json.c - `--output json`: the reply as the AWS CLI prints it, which
 * is Python's json.dumps(value, indent=4, ensure_ascii=False) and a newline.
 *
 * That spelling differs from jansson's own dump in ways scripts can see:
 * members are separated by ",\n" with four spaces per level and ": " after
 * a key; empty arrays and objects print as [] and {}; only the quote, the
 * backslash and control characters are escaped ("\n", "\t", "\b", "\f",
 * "\r", else "\u00XX" in lower case), everything else, DEL and non-ASCII
 * included, is written as is; floats print as Python's repr ("1e+16",
 * "1.5e-07", "9007199254740992.0").  Members keep the reply's order. */
#include <stdio.h>
#include <string.h>

#include "cli/output_internal.h"

static kerr_code json_put_string(cli_out_buf *b, const char *s, size_t len) {
  kerr_code rc = cli_out_putc(b, '"');
  size_t run = 0; /* bytes copied as they are, pending */
  for (size_t i = 0; i < len && rc == KERR_OK; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[8];
    const char *named = NULL;
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    rc = cli_out_put(b, s + run, i - run);
    run = i + 1;
    switch (c) {
    case '"': named = "\\\""; break;
    case '\\': named = "\\\\"; break;
    case '\n': named = "\\n"; break;
    case '\r': named = "\\r"; break;
    case '\t': named = "\\t"; break;
    case '\b': named = "\\b"; break;
    case '\f': named = "\\f"; break;
    default:
      snprintf(esc, sizeof esc, "\\u%04x", (unsigned)c);
      named = esc;
    }
    if (rc == KERR_OK) rc = cli_out_puts(b, named);
  }
  if (rc == KERR_OK) rc = cli_out_put(b, s + run, len - run);
  if (rc == KERR_OK) rc = cli_out_putc(b, '"');
  return rc;
}

static kerr_code json_put_indent(cli_out_buf *b, int level) {
  kerr_code rc = cli_out_putc(b, '\n');
  if (rc == KERR_OK) rc = cli_out_repeat(b, "    ", level);
  return rc;
}

static kerr_code json_put_value(cli_out_buf *b, const json_t *v, int level) {
  kerr_code rc = KERR_OK;
  if (json_is_array(v)) {
    size_t i;
    const json_t *item;
    if (json_array_size(v) == 0) return cli_out_puts(b, "[]");
    rc = cli_out_putc(b, '[');
    json_array_foreach(v, i, item) {
      if (rc == KERR_OK && i > 0) rc = cli_out_putc(b, ',');
      if (rc == KERR_OK) rc = json_put_indent(b, level + 1);
      if (rc == KERR_OK) rc = json_put_value(b, item, level + 1);
    }
    if (rc == KERR_OK) rc = json_put_indent(b, level);
    return rc == KERR_OK ? cli_out_putc(b, ']') : rc;
  }
  if (json_is_object(v)) {
    const char *key;
    size_t key_len;
    json_t *item;
    int first = 1;
    if (json_object_size(v) == 0) return cli_out_puts(b, "{}");
    rc = cli_out_putc(b, '{');
    json_object_keylen_foreach((json_t *)v, key, key_len, item) {
      if (rc == KERR_OK && !first) rc = cli_out_putc(b, ',');
      first = 0;
      if (rc == KERR_OK) rc = json_put_indent(b, level + 1);
      if (rc == KERR_OK) rc = json_put_string(b, key, key_len);
      if (rc == KERR_OK) rc = cli_out_puts(b, ": ");
      if (rc == KERR_OK) rc = json_put_value(b, item, level + 1);
    }
    if (rc == KERR_OK) rc = json_put_indent(b, level);
    return rc == KERR_OK ? cli_out_putc(b, '}') : rc;
  }
  if (json_is_string(v)) return json_put_string(b, json_string_value(v), json_string_length(v));
  switch (json_typeof(v)) {
  case JSON_TRUE:
    return cli_out_puts(b, "true");
  case JSON_FALSE:
    return cli_out_puts(b, "false");
  case JSON_NULL:
    return cli_out_puts(b, "null");
  default:
    return cli_out_py_str(b, v); /* numbers: the same digits as Python's str() */
  }
}

kerr_code cli_out_render_json(const json_t *doc, cli_out_buf *b) {
  kerr_code rc = json_put_value(b, doc, 0);
  return rc == KERR_OK ? cli_out_putc(b, '\n') : rc;
}
