/* format_driver.c - prints a JSON document in one of the `kms` --output
 * formats (lib/cli/output.h), so tests/e2e/test_cli_output.py can compare
 * it byte for byte with what the AWS CLI's own formatters print.
 *
 * usage: cli_format_driver FORMAT [TITLE [--color] [--width N]] < document.json
 * Exit status: 0 printed; 1 the formatter refused (its message on stderr);
 * 2 usage or unreadable input.  Built by CMake for the tests, never
 * installed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/output.h"

int main(int argc, char **argv) {
  cli_output_opts opts = {0};
  cli_output_buf out = {0};
  json_error_t jerr;
  json_t *doc;
  kerr e;
  int rc = 0;
  if (argc < 2) {
    fprintf(stderr, "usage: %s FORMAT [TITLE [--color] [--width N]] < document.json\n", argv[0]);
    return 2;
  }
  if (cli_output_parse_format(argv[1], &opts.format, &e) != KERR_OK) {
    fprintf(stderr, "%s\n", e.msg);
    return 2;
  }
  opts.title = argc > 2 ? argv[2] : "";
  for (int i = 3; i < argc; i++) {
    if (strcmp(argv[i], "--color") == 0) {
      opts.color = 1;
    } else if (strcmp(argv[i], "--width") == 0 && i + 1 < argc) {
      char *end;
      long width = strtol(argv[++i], &end, 10);
      if (*end != '\0' || width < 0 || width > 100000) {
        fprintf(stderr, "bad --width %s\n", argv[i]);
        return 2;
      }
      opts.terminal_width = (int)width;
    } else {
      fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  /* JSON_ALLOW_NUL: "\u0000" in a string is valid JSON and the CLI prints it. */
  doc = json_loadf(stdin, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (!doc) {
    fprintf(stderr, "bad JSON: %s (line %d)\n", jerr.text, jerr.line);
    return 2;
  }
  if (cli_output_render(doc, &opts, &out, &e) != KERR_OK) {
    fprintf(stderr, "%s\n", e.msg);
    rc = 1;
  } else if (out.len && fwrite(out.data, 1, out.len, stdout) != out.len) {
    rc = 2;
  }
  cli_output_buf_free(&out);
  json_decref(doc);
  return rc;
}
