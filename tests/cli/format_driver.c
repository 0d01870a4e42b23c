/* format_driver.c - prints a JSON document in one of the `kms` --output
 * formats (lib/cli/output.h), so tests/e2e/test_cli_output.py can compare
 * it byte for byte with what the AWS CLI's own formatters print.
 *
 * usage: cli_format_driver FORMAT [TITLE] [--color] [--width N] [--max-bytes N] < document.json
 * Exit status: 0 printed; 1 the formatter refused (its message on stderr);
 * 2 usage or unreadable input.  Built by CMake for the tests, never
 * installed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/output.h"

static int parse_count(const char *s, long max, long *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < 0 || v > max) return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  cli_output_opts opts = {0};
  json_error_t jerr;
  json_t *doc;
  char *text = NULL;
  size_t len = 0;
  kerr e;
  int rc = 0, i = 2;
  if (argc < 2) {
    fprintf(stderr, "usage: %s FORMAT [TITLE] [--color] [--width N] [--max-bytes N] < document.json\n", argv[0]);
    return 2;
  }
  if (cli_format_parse(argv[1], &opts.format, &e) != KERR_OK) {
    fprintf(stderr, "%s\n", e.msg);
    return 2;
  }
  opts.title = "";
  if (argc > 2 && strncmp(argv[2], "--", 2) != 0) {
    opts.title = argv[2];
    i = 3;
  }
  for (; i < argc; i++) {
    long v;
    if (strcmp(argv[i], "--color") == 0) {
      opts.color = 1;
    } else if (strcmp(argv[i], "--width") == 0 && i + 1 < argc && parse_count(argv[i + 1], 100000, &v) == 0) {
      opts.width = (int)v;
      i++;
    } else if (strcmp(argv[i], "--max-bytes") == 0 && i + 1 < argc &&
               parse_count(argv[i + 1], 1L << 30, &v) == 0) {
      opts.max_bytes = (size_t)v;
      i++;
    } else {
      fprintf(stderr, "bad argument %s\n", argv[i]);
      return 2;
    }
  }
  /* JSON_ALLOW_NUL: "\u0000" in a string is valid JSON and the CLI prints it. */
  doc = json_loadf(stdin, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (!doc) {
    fprintf(stderr, "bad JSON: %s (line %d)\n", jerr.text, jerr.line);
    return 2;
  }
  if (cli_output_render(doc, &opts, &text, &len, &e) != KERR_OK) {
    fprintf(stderr, "%s\n", e.msg);
    rc = 1;
  } else if (len && fwrite(text, 1, len, stdout) != len) {
    rc = 2;
  }
  free(text);
  json_decref(doc);
  return rc;
}
