/* args.c - the options of `kms` that are not the operation's own.
 *
 * The AWS CLI reads its global options wherever they stand, before or after
 * the command, and so does `kms`: one pass over argv takes every option this
 * file knows (with its value, as `--name value` or `--name=value`; the last
 * of a repeated option wins, as with the CLI) and leaves the rest, in order,
 * for the operation's parameters.  The first bare word is the command, or
 * the service `cloudhsmv2` and then the command. */
#include <stdlib.h>
#include <string.h>

#include "kms_tool.h"

/* What an option takes. */
typedef enum { TAKES_FLAG, TAKES_VALUE, TAKES_OPTIONAL_VALUE } takes;

typedef struct option_def {
  const char *name;   /* without the leading "--" */
  takes kind;
  size_t offset;      /* of the field in kms_args */
  int flag_value;     /* what a flag stores */
} option_def;

#define VALUE(n, f) {n, TAKES_VALUE, offsetof(kms_args, f), 0}
#define FLAG(n, f, v) {n, TAKES_FLAG, offsetof(kms_args, f), v}

static const option_def options[] = {
    FLAG("debug", debug, 1),
    FLAG("no-verify-ssl", no_verify_ssl, 1),
    FLAG("no-paginate", no_paginate, 1),
    FLAG("no-sign-request", no_sign_request, 1),
    FLAG("no-cli-pager", no_cli_pager, 1),
    FLAG("version", version, 1),
    FLAG("cli-auto-prompt", auto_prompt, 1),
    FLAG("no-cli-auto-prompt", auto_prompt, 0),
    VALUE("endpoint-url", endpoint_url),
    VALUE("output", output),
    VALUE("query", query),
    VALUE("profile", profile),
    VALUE("region", region),
    VALUE("color", color),
    VALUE("ca-bundle", ca_bundle),
    VALUE("cli-read-timeout", read_timeout),
    VALUE("cli-connect-timeout", connect_timeout),
    VALUE("cli-binary-format", binary_format),
    VALUE("cli-input-json", cli_input_json),
    VALUE("cli-input-yaml", cli_input_yaml),
    VALUE("starting-token", starting_token),
    VALUE("max-items", max_items),
    VALUE("page-size", page_size),
    {"generate-cli-skeleton", TAKES_OPTIONAL_VALUE, offsetof(kms_args, skeleton), 0},
};

/* The option `arg` names ("--output" or "--output=json"), or NULL. */
static const option_def *find_option(const char *arg, const char **inline_value) {
  *inline_value = NULL;
  if (strncmp(arg, "--", 2) != 0)
    return NULL;
  const char *name = arg + 2, *eq = strchr(name, '=');
  size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
  for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
    if (strlen(options[i].name) == len && strncmp(options[i].name, name, len) == 0) {
      if (eq != NULL)
        *inline_value = eq + 1;
      return &options[i];
    }
  return NULL;
}

/* A token that the CLI's parser would take for an option rather than a value. */
static int looks_like_option(const char *s) { return s[0] == '-' && s[1] == '-'; }

kerr_code kms_args_parse(int argc, char **argv, kms_args *out, kerr *err) {
  memset(out, 0, sizeof *out);
  out->auto_prompt = -1;
  out->params = calloc((size_t)argc + 1, sizeof *out->params);
  if (out->params == NULL)
    return kerr_set(err, KERR_INTERNAL, "out of memory");
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i], *value = NULL;
    const option_def *opt = find_option(arg, &value);
    if (opt == NULL) {
      if (!looks_like_option(arg) && out->command == NULL) {
        if (out->service == NULL && strcmp(arg, "cloudhsmv2") == 0)
          out->service = arg;
        else
          out->command = arg;
      } else {
        out->params[out->param_count++] = argv[i];
      }
      continue;
    }
    char *field = (char *)out + opt->offset;
    if (opt->kind == TAKES_FLAG) {
      if (value != NULL)
        return kerr_set(err, KERR_VALIDATION, "argument --%s: ignored explicit argument '%s'", opt->name, value);
      *(int *)(void *)field = opt->flag_value;
      continue;
    }
    if (value == NULL && i + 1 < argc && !looks_like_option(argv[i + 1]))
      value = argv[++i];
    if (value == NULL) {
      if (opt->kind == TAKES_VALUE)
        return kerr_set(err, KERR_VALIDATION, "argument --%s: expected one argument", opt->name);
      value = "input";
    }
    *(const char **)(void *)field = value;
  }
  return KERR_OK;
}

void kms_args_free(kms_args *a) {
  free(a->params);
  a->params = NULL;
  a->param_count = 0;
}

int kms_option_takes_value(const char *arg) {
  const char *inline_value;
  const option_def *opt = find_option(arg, &inline_value);
  return opt != NULL && inline_value == NULL && opt->kind != TAKES_FLAG;
}
