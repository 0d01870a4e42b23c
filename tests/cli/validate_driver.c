/* validate_driver.c - runs lib/cli/validate.h's check over requests read as
 * JSON lines and prints each report, so tests/e2e/test_cli_validate.py can
 * compare them with the AWS CLI's own parameter validation.
 *
 * usage: cli_validate_driver < requests
 *        cli_validate_driver --list
 * Each input line is {"service": "kms"|"cloudhsmv2", "op": NAME, "request":
 * ANY JSON}.  For each, one line of compact JSON is printed: {"ok": true},
 * {"report": TEXT} (the whole report, header included), or {"error": MESSAGE}
 * for an unknown service or operation or an internal failure.  --list prints
 * {"service": S, "ops": [NAMES]} for each service instead.
 * Strings may hold NUL characters (\u0000).
 * Exit status: 0 all read; 2 usage or an unreadable line.  Built by CMake
 * for the tests, never installed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/validate.h"

static const model_service *const services[] = {&model_kms, &model_cloudhsmv2};

static const model_service *find_service(const char *name) {
  for (size_t i = 0; i < sizeof services / sizeof services[0]; i++)
    if (name && strcmp(services[i]->name, name) == 0) return services[i];
  return NULL;
}

static int print_row(json_t *row) {
  char *text = row ? json_dumps(row, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  json_decref(row);
  if (!text) {
    fprintf(stderr, "out of memory\n");
    return 0;
  }
  printf("%s\n", text);
  free(text);
  return 1;
}

static int list_ops(void) {
  for (size_t i = 0; i < sizeof services / sizeof services[0]; i++) {
    json_t *ops = json_array();
    for (size_t k = 0; ops && k < services[i]->op_count; k++)
      json_array_append_new(ops, json_string(services[i]->ops[k].name));
    if (!print_row(json_pack("{s:s,s:o}", "service", services[i]->name, "ops", ops))) return 2;
  }
  return 0;
}

/* One input line to one output row; NULL when the line is unreadable. */
static json_t *run_line(const char *line, size_t len) {
  json_error_t jerr;
  json_t *in = json_loadb(line, len, JSON_ALLOW_NUL, &jerr), *row;
  const char *svc_name = NULL, *op_name = NULL;
  json_t *request = NULL;
  const model_service *svc;
  const model_op *op;
  char *report = NULL;
  kerr e;
  if (!in || json_unpack_ex(in, &jerr, 0, "{s:s,s:s,s:o}", "service", &svc_name, "op", &op_name,
                            "request", &request) != 0) {
    fprintf(stderr, "bad input line: %s\n", jerr.text);
    json_decref(in);
    return NULL;
  }
  svc = find_service(svc_name);
  op = svc ? model_find_op(svc, op_name) : NULL;
  if (!op) {
    row = json_pack("{s:s}", "error", "no such service or operation");
  } else {
    switch (cli_validate_request(op, request, &report, &e)) {
    case KERR_OK: row = json_pack("{s:b}", "ok", 1); break;
    case KERR_VALIDATION: row = json_pack("{s:s}", "report", report); break;
    default: row = json_pack("{s:s}", "error", e.msg); break;
    }
  }
  free(report);
  json_decref(in);
  return row ? row : json_null();
}

int main(int argc, char **argv) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int status = 0;
  if (argc == 2 && strcmp(argv[1], "--list") == 0) return list_ops();
  if (argc != 1) {
    fprintf(stderr, "usage: %s [--list] < requests\n", argv[0]);
    return 2;
  }
  while ((n = getline(&line, &cap, stdin)) > 0) {
    json_t *row = run_line(line, (size_t)n);
    if (!row || !print_row(row)) {
      status = 2;
      break;
    }
  }
  free(line);
  return status;
}
