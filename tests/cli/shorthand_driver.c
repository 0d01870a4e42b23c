/* shorthand_driver.c - reads values in the AWS CLI's shorthand syntax with
 * lib/cli/shorthand.h and prints what came out, so
 * tests/e2e/test_cli_shorthand.py can compare it with the AWS CLI's own
 * parser.
 *
 * usage: cli_shorthand_driver [--mark] < inputs
 * The input holds one JSON string per line (the shorthand text; JSON so that
 * any character, a newline included, fits on a line).  For each, one line of
 * compact JSON is printed: {"ok": RESULT} or {"error": {"kind": K,
 * "offset": BYTES, "message": M}}.  With --mark every file-optional value
 * (after `key@=`) comes back as the string "<@" VALUE ">", which lets the
 * test see which values the parser hands to its caller.
 * Exit status: 0 all read; 2 usage or an unreadable line.  Built by CMake
 * for the tests, never installed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/shorthand.h"

static kerr_code mark(void *ctx, const char *value, size_t len, json_t **replacement, kerr *e) {
  char *s = malloc(len + 3);
  (void)ctx;
  if (!s) return kerr_set(e, KERR_INTERNAL, "out of memory");
  s[0] = '<';
  s[1] = '@';
  memcpy(s + 2, value, len);
  s[len + 2] = '>';
  *replacement = json_stringn(s, len + 3);
  free(s);
  return *replacement ? KERR_OK : kerr_set(e, KERR_INTERNAL, "out of memory");
}

static const char *kind_name(cli_shorthand_error_kind k) {
  switch (k) {
  case CLI_SHORTHAND_ERR_SYNTAX: return "syntax";
  case CLI_SHORTHAND_ERR_DUPLICATE: return "duplicate";
  case CLI_SHORTHAND_ERR_LIMIT: return "limit";
  case CLI_SHORTHAND_ERR_ENCODING: return "encoding";
  case CLI_SHORTHAND_ERR_FILE: return "file";
  case CLI_SHORTHAND_ERR_NOMEM: return "nomem";
  default: return "none";
  }
}

int main(int argc, char **argv) {
  int marking = argc > 1 && strcmp(argv[1], "--mark") == 0;
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  if (argc > 2 || (argc == 2 && !marking)) {
    fprintf(stderr, "usage: %s [--mark] < inputs\n", argv[0]);
    return 2;
  }
  while ((n = getline(&line, &cap, stdin)) > 0) {
    json_error_t jerr;
    json_t *in = json_loadb(line, (size_t)n, JSON_DECODE_ANY, &jerr), *res = NULL, *row;
    cli_shorthand_error err;
    char *text;
    if (!json_is_string(in)) {
      fprintf(stderr, "bad input line: %s\n", jerr.text);
      json_decref(in);
      free(line);
      return 2;
    }
    if (cli_shorthand_parse(json_string_value(in), marking ? mark : NULL, NULL, &res, &err) ==
        KERR_OK) {
      row = json_pack("{s:o}", "ok", res);
    } else {
      row = json_pack("{s:{s:s,s:I,s:s}}", "error", "kind", kind_name(err.kind), "offset",
                      (json_int_t)err.offset, "message",
                      err.message ? err.message : err.status.msg);
      cli_shorthand_error_free(&err);
    }
    text = row ? json_dumps(row, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (!text) {
      fprintf(stderr, "out of memory\n");
      json_decref(row);
      json_decref(in);
      free(line);
      return 2;
    }
    printf("%s\n", text);
    free(text);
    json_decref(row);
    json_decref(in);
  }
  free(line);
  return 0;
}
