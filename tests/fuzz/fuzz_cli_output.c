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
 *   - yaml and yaml-stream output parse as YAML without error;
 *   - a refusal for size happens only with a small cap, and the same
 *     document then prints under the default cap. */
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
    if (f == CLI_FORMAT_JSON && len > 0) {
      json_t *again = json_loadb(out, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
      FUZZ_CHECK(again != NULL, "json output parses");
      FUZZ_CHECK(json_equal(again, doc), "json output holds the same data");
      json_decref(again);
    }
    if ((f == CLI_FORMAT_YAML || f == CLI_FORMAT_YAML_STREAM) && len > 0)
      FUZZ_CHECK(yaml_parses(out, len), "yaml output parses");
    free(out);
  }
  json_decref(doc);
  return 0;
}
