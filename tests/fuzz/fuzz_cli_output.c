/* fuzz_cli_output.c - libFuzzer target for the `kms` --output formatter
 * (cli/output.h), which prints every response the command line receives.
 *
 * The input is a JSON document (any value; "\u0000" allowed).  The first
 * byte also picks the table's terminal width and colour, so both layouts
 * of a table are reached.  The document is printed in every format and:
 *   - formatting succeeds, or is refused with KERR_VALIDATION (too deep, or
 *     data the AWS CLI cannot print either) leaving the buffer untouched;
 *   - every output is valid UTF-8 (jansson only holds valid UTF-8 strings);
 *   - json output parses back to data equal to the input;
 *   - yaml and yaml-stream output parse as YAML without error. */
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

/* One byte, '>', in the buffer before formatting. */
static int cli_buf_prefill(cli_output_buf *b) {
  b->data = malloc(2);
  if (!b->data) return -1;
  b->data[0] = '>';
  b->data[1] = '\0';
  b->len = 1;
  b->cap = 2;
  return 0;
}

static int yaml_parses(const char *text, size_t n) {
  yaml_parser_t parser;
  yaml_event_t ev;
  int ok = 1, done = 0;
  if (!yaml_parser_initialize(&parser)) abort();
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, n);
  while (!done) {
    if (!yaml_parser_parse(&parser, &ev)) {
      ok = 0;
      break;
    }
    done = ev.type == YAML_STREAM_END_EVENT;
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t jerr;
  json_t *doc;
  static const int widths[] = {0, 1, 40, 80, 200, 100000};
  if (size == 0) return 0;
  doc = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (!doc) return 0;
  for (int f = CLI_OUTPUT_JSON; f <= CLI_OUTPUT_YAML_STREAM; f++) {
    cli_output_opts opts = {(cli_output_format)f, (data[0] & 1) ? "Operation" : "",
                            widths[(data[0] >> 1) % 6], (data[0] >> 4) & 1};
    cli_output_buf out = {0};
    kerr e;
    kerr_code rc;
    /* Something already in the buffer: a refusal must leave it as it was. */
    if (cli_buf_prefill(&out) != 0) abort();
    rc = cli_output_render(doc, &opts, &out, &e);
    FUZZ_CHECK(rc == KERR_OK || rc == KERR_VALIDATION, "only refusals for the data itself");
    if (rc != KERR_OK) {
      FUZZ_CHECK(out.len == 1 && out.data[0] == '>' && out.data[1] == '\0', "a refusal appends nothing");
      FUZZ_CHECK(fuzz_msg_ok(e.msg, sizeof e.msg), "a refusal says why");
      cli_output_buf_free(&out);
      continue;
    }
    FUZZ_CHECK(out.data[out.len] == '\0', "the buffer stays NUL-terminated");
    FUZZ_CHECK(valid_utf8((const unsigned char *)out.data, out.len), "output is valid UTF-8");
    if (f == CLI_OUTPUT_JSON && out.len > 1) {
      json_t *again = json_loadb(out.data + 1, out.len - 1, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
      FUZZ_CHECK(again != NULL, "json output parses");
      FUZZ_CHECK(json_equal(again, doc), "json output holds the same data");
      json_decref(again);
    }
    if ((f == CLI_OUTPUT_YAML || f == CLI_OUTPUT_YAML_STREAM) && out.len > 1)
      FUZZ_CHECK(yaml_parses(out.data + 1, out.len - 1), "yaml output parses");
    cli_output_buf_free(&out);
  }
  json_decref(doc);
  return 0;
}
