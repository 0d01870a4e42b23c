/* fuzz_cli_output.c - libFuzzer target for the `kms` --output formatter
 * (cli/output.h), which prints every response the command line receives.
 *
 * The input is a JSON document (any value; "\u0000" allowed).  The first
 * byte also picks the table's terminal width, title, colour and an output
 * cap, so both layouts of a table and the cap are reached.  The document is
 * printed in every format and:
 *   - formatting succeeds, or is refused with KERR_VALIDATION (too deep, too
 *     large, or data the AWS CLI cannot print either) returning nothing;
 *   - output is NUL-terminated, no longer than the cap, and valid UTF-8
 *     (jansson only holds valid UTF-8 strings);
 *   - json output parses back to data equal to the input;
 *   - yaml and yaml-stream output load back (plain scalars resolved as the
 *     emitter writes them) to data equal to the input;
 *   - when the input ends with a space, every object key gets a NUL byte
 *     appended (json_object_setn), as a --query multiselect can make, so
 *     keys holding NUL reach every format;
 *   - a refusal for size happens only with a small cap, and the same
 *     document then prints under the default cap. */
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "cli/output.h"
#include "fuzz_common.h"

static int valid_utf8(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    size_t more;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF) {
      more = 1;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      more = 2;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      more = 3;
      cp = c & 0x07u;
    } else {
      return 0;
    }
    if (more >= n - i) return 0;
    for (size_t k = 1; k <= more; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3Fu);
    }
    if ((more == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (more == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
      return 0;
    i += more + 1;
  }
  return 1;
}

/* A plain scalar as the yaml format writes one: true, false, null, an
 * integer, a float; anything else is a string (quoted when it could be
 * read as one of those). */
static json_t *yaml_plain_value(const char *s, size_t n) {
  char *end;
  size_t i = (n > 0 && s[0] == '-') ? 1 : 0, digits = 0;
  if (n == 4 && memcmp(s, "true", 4) == 0) return json_true();
  if (n == 5 && memcmp(s, "false", 5) == 0) return json_false();
  if (n == 4 && memcmp(s, "null", 4) == 0) return json_null();
  while (i + digits < n && s[i + digits] >= '0' && s[i + digits] <= '9') digits++;
  if (digits > 0 && i + digits == n) return json_integer(strtoll(s, NULL, 10));
  if (digits > 0 && memchr(s, '\0', n) == NULL) {
    double v = strtod(s, &end);
    if (end == s + n) return json_real(v);
  }
  return json_stringn(s, n);
}

/* The node's value as JSON, or NULL if it is not what the yaml format
 * writes.  Depth is bounded by the documents the formatter accepts. */
static json_t *yaml_node_json(yaml_document_t *ydoc, yaml_node_t *node) {
  json_t *v = NULL;
  if (!node) return NULL;
  if (node->type == YAML_SCALAR_NODE) {
    const char *text = (const char *)node->data.scalar.value;
    size_t n = node->data.scalar.length;
    return node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? yaml_plain_value(text, n) : json_stringn(text, n);
  }
  if (node->type == YAML_SEQUENCE_NODE) {
    v = json_array();
    for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top; it++) {
      json_t *item = yaml_node_json(ydoc, yaml_document_get_node(ydoc, *it));
      if (!item || json_array_append_new(v, item) != 0) goto bad;
    }
    return v;
  }
  if (node->type == YAML_MAPPING_NODE) {
    v = json_object();
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
      yaml_node_t *key = yaml_document_get_node(ydoc, p->key);
      json_t *item;
      if (!key || key->type != YAML_SCALAR_NODE) goto bad;
      item = yaml_node_json(ydoc, yaml_document_get_node(ydoc, p->value));
      if (!item || json_object_setn_new(v, (const char *)key->data.scalar.value, key->data.scalar.length, item) != 0)
        goto bad;
    }
    return v;
  }
bad:
  json_decref(v);
  return NULL;
}

/* yaml output loaded back to JSON; NULL when it does not load. */
static json_t *yaml_load_json(const char *text, size_t n) {
  yaml_parser_t parser;
  yaml_document_t ydoc;
  json_t *v = NULL;
  if (!yaml_parser_initialize(&parser)) abort();
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, n);
  if (yaml_parser_load(&parser, &ydoc)) {
    v = yaml_node_json(&ydoc, yaml_document_get_root_node(&ydoc));
    yaml_document_delete(&ydoc);
  }
  yaml_parser_delete(&parser);
  return v;
}

/* json_equal with keys compared by length: jansson's own looks a key up
 * by strlen() and so misses keys holding NUL. */
static int same_data(const json_t *a, const json_t *b) {
  if (json_is_object(a) && json_is_object(b)) {
    const char *key;
    size_t key_len;
    json_t *item;
    if (json_object_size(a) != json_object_size(b)) return 0;
    json_object_keylen_foreach((json_t *)a, key, key_len, item) {
      const json_t *other = json_object_getn(b, key, key_len);
      if (!other || !same_data(item, other)) return 0;
    }
    return 1;
  }
  if (json_is_array(a) && json_is_array(b)) {
    if (json_array_size(a) != json_array_size(b)) return 0;
    for (size_t i = 0; i < json_array_size(a); i++)
      if (!same_data(json_array_get(a, i), json_array_get(b, i))) return 0;
    return 1;
  }
  return json_equal(a, b);
}

/* A copy of v where every object key has a NUL byte appended. */
static json_t *with_nul_keys(const json_t *v) {
  if (json_is_array(v)) {
    json_t *copy = json_array();
    size_t i;
    const json_t *item;
    json_array_foreach(v, i, item) json_array_append_new(copy, with_nul_keys(item));
    return copy;
  }
  if (json_is_object(v)) {
    json_t *copy = json_object();
    const char *key;
    size_t key_len;
    json_t *item;
    json_object_keylen_foreach((json_t *)v, key, key_len, item) {
      char *longer = malloc(key_len + 1);
      if (!longer) abort();
      memcpy(longer, key, key_len);
      longer[key_len] = '\0';
      json_object_setn_new(copy, longer, key_len + 1, with_nul_keys(item));
      free(longer);
    }
    return copy;
  }
  return json_deep_copy(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t jerr;
  json_t *doc;
  static const int widths[] = {0, 1, 40, 80, 200, 100000};
  int nul_keys;
  if (size == 0) return 0;
  nul_keys = data[size - 1] == ' ';
  doc = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (!doc) return 0;
  if (nul_keys) {
    json_t *renamed = with_nul_keys(doc);
    json_decref(doc);
    doc = renamed;
  }
  for (int f = CLI_FORMAT_JSON; f <= CLI_FORMAT_YAML_STREAM; f++) {
    size_t cap = (data[0] & 0x80) ? 4096 : 0;
    cli_output_opts opts = {(cli_format)f, (data[0] & 1) ? "Operation" : "", widths[(data[0] >> 1) % 6],
                            (data[0] >> 4) & 1, cap};
    char *out = (char *)"untouched";
    size_t len = 1;
    kerr e;
    kerr_code rc = cli_output_render(doc, &opts, &out, &len, &e);
    FUZZ_CHECK(rc == KERR_OK || rc == KERR_VALIDATION, "only refusals for the data itself");
    if (rc != KERR_OK) {
      FUZZ_CHECK(out == NULL && len == 0, "a refusal returns nothing");
      FUZZ_CHECK(fuzz_msg_ok(e.msg, sizeof e.msg), "a refusal says why");
      if (strstr(e.msg, "larger than the limit")) {
        FUZZ_CHECK(cap != 0, "inputs this small fit the default cap");
        opts.max_bytes = 0;
        FUZZ_CHECK(cli_output_render(doc, &opts, &out, &len, &e) == KERR_OK, "without the small cap it prints");
        free(out);
      }
      continue;
    }
    FUZZ_CHECK(out != NULL && out[len] == '\0', "the output is NUL-terminated");
    FUZZ_CHECK(cap == 0 || len <= cap, "the output respects the cap");
    FUZZ_CHECK(valid_utf8((const unsigned char *)out, len), "output is valid UTF-8");
    if (f == CLI_FORMAT_JSON && len > 0 && !nul_keys) { /* jansson cannot read NUL in keys back */
      json_t *again = json_loadb(out, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
      FUZZ_CHECK(again != NULL, "json output parses");
      FUZZ_CHECK(json_equal(again, doc), "json output holds the same data");
      json_decref(again);
    }
    if ((f == CLI_FORMAT_YAML || f == CLI_FORMAT_YAML_STREAM) && len > 0) {
      json_t *again = yaml_load_json(out, len);
      json_t *want = f == CLI_FORMAT_YAML ? json_incref(doc) : json_pack("[O]", doc);
      FUZZ_CHECK(again != NULL, "yaml output loads");
      FUZZ_CHECK(same_data(again, want), "yaml output holds the same data");
      json_decref(again);
      json_decref(want);
    }
    free(out);
  }
  json_decref(doc);
  return 0;
}
