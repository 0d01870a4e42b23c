/* run.c - one `kms` command from options to printed result.
 *
 * The steps are the AWS CLI's, in its order, because the order decides which
 * error a user sees first: the command is found in the model; a skeleton is
 * printed without any call; the request is built from --cli-input-json/-yaml
 * and the command line (lib/cli/params) and checked against the model as the
 * CLI checks it (lib/cli/validate); the --query expression is compiled; only
 * then is the configuration resolved and the service called, page after page
 * for a paginated command (lib/cli/paging); the reply is rebuilt as the
 * CLI shows it (lib/cli/reply: the model's members and order, timestamps as
 * text), the query applied and the result printed (lib/cli/output), through a pager on a
 * terminal.  Each failure maps to one of the CLI's exit codes. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/jmespath.h"
#include "cli/output.h"
#include "cli/paging.h"
#include "cli/reply.h"
#include "cli/cli_yaml.h"
#include "cli/params.h"
#include "cli/skeleton.h"
#include "cli/validate.h"
#include "kms/kms.h"
#include "kms_tool.h"
#include "pager.h"
#include "settings.h"

/* Largest --cli-input-json / --cli-input-yaml document read from a file. */
#define KMS_INPUT_FILE_MAX (16 * 1024 * 1024)

/* The lines the CLI prints before an argument error. */
static void print_usage_head(void) {
  fputs("usage: kms [options] <command> [parameters]\n"
        "       kms [options] cloudhsmv2 <command> [parameters]\n"
        "To see help text, you can run:\n\n"
        "  kms help\n"
        "  kms <command> help\n",
        stderr);
}

void kms_usage_error(const char *fmt, ...) {
  va_list ap;
  print_usage_head();
  fputs("kms: error: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

/* The CLI's way of showing any other error: a blank line, then the message. */
static void print_error(const char *msg) { fprintf(stderr, "\n%s\n", msg); }

/* "argument operation: Invalid choice, valid choices are:" and the list, two
 * to a line as the CLI lays them out. */
static void print_invalid_command(const model_service *svc) {
  char name[128];
  print_usage_head();
  fputs("kms: error: argument operation: Invalid choice, valid choices are:\n\n", stderr);
  for (size_t i = 0; i < svc->op_count; i++) {
    cli_kebab_name(svc->ops[i].name, name, sizeof name);
    if (i % 2 == 0)
      fprintf(stderr, "%-40s | ", name);
    else
      fprintf(stderr, "%-40s\n", name);
  }
  if (svc->op_count % 2 == 1)
    fputc('\n', stderr);
}

/* The text of a --cli-input-* value: "file://PATH" is read (bounded), any
 * other value is the text itself.  *out is malloc'd (caller frees). */
static kerr_code input_text(const char *value, char **out, size_t *len, kerr *err) {
  kerr_code rc = KERR_OK;
  FILE *f = NULL;
  char *buf = NULL;
  size_t n = 0;
  *out = NULL;
  if (strncmp(value, "file://", 7) != 0) {
    *out = strdup(value);
    if (*out == NULL)
      return kerr_set(err, KERR_INTERNAL, "out of memory");
    *len = strlen(value);
    return KERR_OK;
  }
  f = fopen(value + 7, "rb");
  if (f == NULL)
    return kerr_set(err, KERR_VALIDATION, "Error parsing parameter 'cli-input': Unable to load paramfile %s: %s",
                    value, strerror(errno));
  buf = malloc(KMS_INPUT_FILE_MAX + 1);
  if (buf == NULL) {
    rc = kerr_set(err, KERR_INTERNAL, "out of memory");
    goto out;
  }
  n = fread(buf, 1, KMS_INPUT_FILE_MAX + 1, f);
  if (ferror(f)) {
    rc = kerr_set(err, KERR_VALIDATION, "Unable to read %s", value);
    goto out;
  }
  if (n > KMS_INPUT_FILE_MAX) {
    rc = kerr_set(err, KERR_VALIDATION, "%s is larger than %d bytes", value, KMS_INPUT_FILE_MAX);
    goto out;
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  buf = NULL;
out:
  free(buf);
  fclose(f);
  return rc;
}

/* The parsed --cli-input-json or --cli-input-yaml document, or NULL. */
static kerr_code load_cli_input(const kms_args *a, json_t **out, kerr *err) {
  kerr_code rc = KERR_OK;
  char *text = NULL;
  size_t len = 0;
  *out = NULL;
  if (a->cli_input_json == NULL && a->cli_input_yaml == NULL)
    return KERR_OK;
  if (a->cli_input_json != NULL && a->cli_input_yaml != NULL)
    return kerr_set(err, KERR_VALIDATION, "Only one --cli-input-json or --cli-input-yaml may be given");
  rc = input_text(a->cli_input_json != NULL ? a->cli_input_json : a->cli_input_yaml, &text, &len, err);
  if (rc != KERR_OK)
    goto out;
  if (a->cli_input_json != NULL) {
    json_error_t jerr;
    *out = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
    if (*out == NULL)
      rc = kerr_set(err, KERR_VALIDATION, "Invalid JSON received: %s", jerr.text);
  } else {
    rc = cli_yaml_load(text, len, out, err);
  }
  if (rc == KERR_OK && !json_is_object(*out)) {
    rc = kerr_set(err, KERR_VALIDATION, "Invalid type for --cli-input-%s: expected a mapping",
                  a->cli_input_json != NULL ? "json" : "yaml");
    json_decref(*out);
    *out = NULL;
  }
out:
  free(text);
  return rc;
}

/* A non-negative count given as text (--max-items, --page-size, timeouts). */
static kerr_code read_count(const char *option, const char *text, long long *out, kerr *err) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < 0)
    return kerr_set(err, KERR_VALIDATION, "argument --%s: invalid int value: '%s'", option, text);
  *out = v;
  return KERR_OK;
}

/* Everything one command needs after its options are read. */
typedef struct run_ctx {
  const kms_args *a;
  const model_service *svc;
  const model_op *op;
  cli_output_opts out;
  cli_ts_format ts;
  jmes_expr *query;
  kms_client *client;
  kms_pager pager;
  kms_settings settings;
} run_ctx;

/* Render `doc` (after the query) and write it out. */
static int print_doc(run_ctx *r, json_t *doc, int apply_query) {
  json_t *shown = NULL;
  char *text = NULL;
  size_t len = 0;
  kerr err;
  int code = KMS_EXIT_OK;
  if (apply_query && r->query != NULL) {
    jmes_error jerr;
    if (jmes_search(r->query, doc, &shown, &jerr) != KERR_OK) {
      print_error(jerr.status.msg);
      return KMS_EXIT_OTHER;
    }
  } else {
    shown = json_incref(doc);
  }
  if (cli_output_render(shown, &r->out, &text, &len, &err) != KERR_OK) {
    print_error(err.msg);
    code = KMS_EXIT_OTHER;
  } else if (kms_pager_write(&r->pager, text, len) != 0) {
    code = KMS_EXIT_OTHER;
  }
  free(text);
  json_decref(shown);
  return code;
}

/* The exit code and message of a failed call. */
static int report_call_error(const run_ctx *r, const kms_error *e) {
  char msg[2048];
  switch (e->kind) {
  case KMS_ERR_SERVICE: {
    char retries[64] = "";
    if (e->retryable && e->attempts > 1)
      snprintf(retries, sizeof retries, " (reached max retries: %d)", e->attempts - 1);
    snprintf(msg, sizeof msg, "An error occurred (%s) when calling the %s operation%s: %s", e->code, r->op->name,
             retries, e->message[0] != '\0' ? e->message : "Unknown");
    print_error(msg);
    return KMS_EXIT_SERVICE;
  }
  case KMS_ERR_CONFIG:
    /* The two a new user meets first, in the AWS CLI's words. */
    if (strcmp(e->code, "NoCredentialsError") == 0)
      fputs("Unable to locate credentials. You can configure credentials by running \"aws configure\".\n", stderr);
    else if (strcmp(e->code, "NoRegionError") == 0)
      fputs("You must specify a region. You can also configure your region by running \"aws configure\".\n", stderr);
    else
      print_error(e->message);
    return KMS_EXIT_CONFIG;
  case KMS_ERR_PARAM:
    print_error(e->message);
    return KMS_EXIT_PARAM;
  case KMS_ERR_CONNECTION:
    /* The CLI names the URL it posted to: the endpoint and its "/". */
    if (strcmp(e->code, "EndpointConnectionError") == 0 && r->client != NULL) {
      const char *url = kms_client_endpoint(r->client);
      size_t n = strlen(url);
      snprintf(msg, sizeof msg, "Could not connect to the endpoint URL: \"%s%s\"", url,
               n > 0 && url[n - 1] == '/' ? "" : "/");
      print_error(msg);
      return KMS_EXIT_OTHER;
    }
    print_error(e->message);
    return KMS_EXIT_OTHER;
  default:
    print_error(e->message);
    return KMS_EXIT_OTHER;
  }
}

/* One call, without pagination. */
static int call_once(run_ctx *r, json_t *request) {
  char *body = json_dumps(request, JSON_COMPACT), *reply = NULL;
  size_t reply_len = 0;
  kms_error e;
  json_t *doc = NULL, *shaped = NULL;
  int code;
  if (body == NULL) {
    print_error("out of memory");
    return KMS_EXIT_OTHER;
  }
  memset(&e, 0, sizeof e);
  if (kms_call_json(r->client, r->op->name, body, strlen(body), &reply, &reply_len, &e) != 0) {
    code = report_call_error(r, &e);
    goto out;
  }
  json_error_t jerr;
  doc = reply_len == 0 ? json_object() : json_loadb(reply, reply_len, 0, &jerr);
  if (!json_is_object(doc)) {
    print_error("The service's reply is not a JSON object");
    code = KMS_EXIT_OTHER;
    goto out;
  }
  kerr err;
  if (cli_reply_shape(doc, r->op->output, r->ts, &shaped, &err) != KERR_OK) {
    print_error(err.msg);
    code = KMS_EXIT_OTHER;
    goto out;
  }
  code = print_doc(r, shaped, 1);
out:
  json_decref(shaped);
  json_decref(doc);
  kms_reply_free(reply, reply_len);
  free(body);
  return code;
}

/* Page after page.  json, table and yaml print one document at the end;
 * text and yaml-stream print each page as it comes, as the CLI does. */
static int call_paged(run_ctx *r, json_t *request, const cli_paging_spec *spec, const cli_paging_opts *popts) {
  cli_paging *p = NULL;
  kerr err;
  int code = KMS_EXIT_OK;
  int per_page = r->out.format == CLI_FORMAT_TEXT || r->out.format == CLI_FORMAT_YAML_STREAM;
  if (cli_paging_new(spec, popts, &p, &err) != KERR_OK) {
    print_error(err.msg);
    return KMS_EXIT_PARAM;
  }
  while (code == KMS_EXIT_OK && cli_paging_prepare(p, request)) {
    char *body = json_dumps(request, JSON_COMPACT), *reply = NULL;
    size_t reply_len = 0;
    kms_error e;
    json_t *doc = NULL, *shaped = NULL, *shown = NULL;
    memset(&e, 0, sizeof e);
    if (body == NULL) {
      print_error("out of memory");
      code = KMS_EXIT_OTHER;
    } else if (kms_call_json(r->client, r->op->name, body, strlen(body), &reply, &reply_len, &e) != 0) {
      code = report_call_error(r, &e);
    } else if ((doc = json_loadb(reply, reply_len, 0, NULL)) == NULL || !json_is_object(doc)) {
      print_error("The service's reply is not a JSON object");
      code = KMS_EXIT_OTHER;
    } else if (cli_reply_shape(doc, r->op->output, r->ts, &shaped, &err) != KERR_OK ||
               cli_paging_add(p, shaped, per_page ? &shown : NULL, &err) != KERR_OK) {
      print_error(err.msg);
      code = KMS_EXIT_OTHER;
    } else if (per_page) {
      /* text shows only the result member of each page; yaml-stream the page */
      json_t *page_doc = shown;
      if (r->out.format == CLI_FORMAT_TEXT) {
        page_doc = json_object();
        json_t *items = json_object_get(shown, spec->result_key);
        if (items != NULL)
          json_object_set(page_doc, spec->result_key, items);
      } else {
        json_incref(page_doc);
      }
      code = print_doc(r, page_doc, 1);
      json_decref(page_doc);
    }
    json_decref(shown);
    json_decref(shaped);
    json_decref(doc);
    kms_reply_free(reply, reply_len);
    free(body);
  }
  if (code == KMS_EXIT_OK) {
    if (!per_page) {
      json_t *result = cli_paging_result(p);
      code = result != NULL ? print_doc(r, result, 1) : KMS_EXIT_OTHER;
      json_decref(result);
    } else if (cli_paging_next_token(p) != NULL && r->out.format == CLI_FORMAT_TEXT) {
      json_t *tail = json_pack("{s:{s:s}}", "NextToken", "NextToken", cli_paging_next_token(p));
      code = tail != NULL ? print_doc(r, tail, 1) : KMS_EXIT_OTHER;
      json_decref(tail);
    }
  }
  cli_paging_free(p);
  return code;
}

/* The operation's paginator as lib/cli/paging wants it; 0 when it has none. */
static int paging_spec(const model_op *op, cli_paging_spec *spec) {
  const model_paginator *pg = op->paginator;
  /* Every KMS and CloudHSMv2 paginator adds up one list; one with several
   * would need lib/cli/paging to gather them all, so it pages by hand. */
  if (pg == NULL || pg->result_key_count != 1)
    return 0;
  spec->input_token = pg->input_token;
  spec->output_token = pg->output_token;
  spec->more_results = pg->more_results;
  spec->limit_key = pg->limit_key;
  spec->result_key = pg->result_keys[0];
  return 1;
}

/* Print the skeleton --generate-cli-skeleton asks for. */
static int print_skeleton(run_ctx *r) {
  kerr err;
  json_t *doc = NULL;
  const char *kind = r->a->skeleton;
  if (strcmp(kind, "yaml-input") == 0) {
    char *text = NULL;
    size_t len = 0;
    if (cli_skeleton_yaml_input(r->op, &text, &len, &err) != KERR_OK) {
      print_error(err.msg);
      return KMS_EXIT_OTHER;
    }
    int code = kms_pager_write(&r->pager, text, len) == 0 ? KMS_EXIT_OK : KMS_EXIT_OTHER;
    free(text);
    return code;
  }
  if (strcmp(kind, "input") == 0) {
    if (cli_skeleton_input(r->op, &doc, &err) != KERR_OK) {
      print_error(err.msg);
      return KMS_EXIT_OTHER;
    }
    r->out.format = CLI_FORMAT_JSON; /* the input skeleton is always JSON */
    int code = print_doc(r, doc, 0);
    json_decref(doc);
    return code;
  }
  if (strcmp(kind, "output") == 0) {
    if (cli_skeleton_output(r->op, &doc, &err) != KERR_OK) {
      print_error(err.msg);
      return KMS_EXIT_OTHER;
    }
    int code = print_doc(r, doc, 1);
    json_decref(doc);
    return code;
  }
  kms_usage_error("argument --generate-cli-skeleton: Invalid choice, valid choices are:\n\n"
                    "input                                    | output                                  \n"
                    "yaml-input                              ");
  return KMS_EXIT_USAGE;
}

/* The client's options from the command line. */
static int client_options(const kms_args *a, kms_client_options *o) {
  kerr err;
  long long secs;
  memset(o, 0, sizeof *o);
  o->profile = a->profile;
  o->region = a->region;
  o->endpoint_url = a->endpoint_url;
  o->ca_bundle = a->ca_bundle;
  o->no_verify_ssl = a->no_verify_ssl;
  o->no_sign_request = a->no_sign_request;
  if (a->debug)
    o->debug = kms_debug_line;
  if (a->connect_timeout != NULL) {
    if (read_count("cli-connect-timeout", a->connect_timeout, &secs, &err) != KERR_OK || secs > LONG_MAX / 1000) {
      kms_usage_error("argument --cli-connect-timeout: invalid int value: '%s'", a->connect_timeout);
      return KMS_EXIT_USAGE;
    }
    o->connect_timeout_ms = secs == 0 ? KMS_TIMEOUT_NONE : (long)secs * 1000;
  }
  if (a->read_timeout != NULL) {
    if (read_count("cli-read-timeout", a->read_timeout, &secs, &err) != KERR_OK || secs > LONG_MAX / 1000) {
      kms_usage_error("argument --cli-read-timeout: invalid int value: '%s'", a->read_timeout);
      return KMS_EXIT_USAGE;
    }
    o->read_timeout_ms = secs == 0 ? KMS_TIMEOUT_NONE : (long)secs * 1000;
  }
  return KMS_EXIT_OK;
}

/* Settings that the profile or the environment may also give. */
static int cli_settings(run_ctx *r) {
  const kms_args *a = r->a;
  kerr err;
  const char *format = a->output != NULL ? a->output : r->settings.output;
  if (format == NULL)
    format = "json";
  if (cli_format_parse(format, &r->out.format, &err) != KERR_OK) {
    if (a->output != NULL) {
      kms_usage_error("argument --output: Invalid choice, valid choices are:\n\n"
                        "json                                     | text                                    \n"
                        "table                                    | yaml                                    \n"
                        "yaml-stream                             ");
      return KMS_EXIT_USAGE;
    }
    print_error(err.msg);
    return KMS_EXIT_CONFIG;
  }
  const char *ts = r->settings.timestamp_format;
  if (cli_ts_format_parse(ts != NULL ? ts : "iso8601", &r->ts, &err) != KERR_OK) {
    print_error(err.msg);
    return KMS_EXIT_CONFIG;
  }
  const char *color = a->color != NULL ? a->color : "auto";
  if (strcmp(color, "on") == 0)
    r->out.color = 1;
  else if (strcmp(color, "off") == 0)
    r->out.color = 0;
  else if (strcmp(color, "auto") == 0)
    r->out.color = isatty(STDOUT_FILENO);
  else {
    kms_usage_error("argument --color: Invalid choice, valid choices are:\n\non                                       "
                      "| off                                     \nauto                                    ");
    return KMS_EXIT_USAGE;
  }
  r->out.title = r->op->name;
  r->out.width = kms_terminal_width();
  return KMS_EXIT_OK;
}

int kms_run(const kms_args *a) {
  run_ctx r;
  kerr err;
  json_t *cli_input = NULL, *request = NULL;
  char *report = NULL;
  int code = KMS_EXIT_OK, exit_code = KMS_EXIT_PARAM;
  memset(&r, 0, sizeof r);
  r.a = a;
  r.svc = a->service != NULL ? &model_cloudhsmv2 : &model_kms;
  if (kms_settings_load(a->profile, &r.settings, &err) != KERR_OK) {
    print_error(err.msg);
    kms_settings_free(&r.settings);
    return KMS_EXIT_CONFIG;
  }
  if (a->command == NULL && a->service != NULL && a->param_count == 0) {
    kms_usage_error("the following arguments are required: operation");
    code = KMS_EXIT_USAGE;
  } else if (a->command == NULL) {
    kms_usage_error("the following arguments are required: command");
    code = KMS_EXIT_USAGE;
  } else if (strcmp(a->command, "help") == 0) {
    code = kms_help(r.svc, NULL, a->no_cli_pager, r.settings.pager);
  } else if ((r.op = cli_find_op(r.svc, a->command)) == NULL) {
    print_invalid_command(r.svc);
    code = KMS_EXIT_USAGE;
  } else if (a->param_count > 0 && strcmp(a->params[a->param_count - 1], "help") == 0) {
    code = kms_help(r.svc, r.op, a->no_cli_pager, r.settings.pager);
  } else {
    code = -1; /* go on: run the command */
  }
  if (code != -1) {
    kms_settings_free(&r.settings);
    return code;
  }
  code = cli_settings(&r);
  if (code != KMS_EXIT_OK) {
    kms_settings_free(&r.settings);
    return code;
  }
  kms_pager_open(&r.pager, a->no_cli_pager, r.settings.pager);

  if (a->skeleton != NULL) {
    code = print_skeleton(&r);
    goto out;
  }
  if (load_cli_input(a, &cli_input, &err) != KERR_OK) {
    print_error(err.msg);
    code = KMS_EXIT_PARAM;
    goto out;
  }
  cli_params_opts popts = {0, cli_input};
  const char *binary = a->binary_format != NULL ? a->binary_format : r.settings.binary_format;
  if (binary != NULL && strcmp(binary, "raw-in-base64-out") == 0)
    popts.binary_raw_in_base64_out = 1;
  else if (binary != NULL && strcmp(binary, "base64") != 0) {
    kms_usage_error("argument --cli-binary-format: Invalid choice, valid choices are:\n\n"
                      "base64                                   | raw-in-base64-out                       ");
    code = KMS_EXIT_USAGE;
    goto out;
  }
  if (cli_params_build(r.op, a->param_count, a->params, &popts, &request, &exit_code, &err) != KERR_OK) {
    if (exit_code == KMS_EXIT_USAGE)
      kms_usage_error("%s", err.msg);
    else
      print_error(err.msg);
    code = exit_code;
    goto out;
  }
  if (cli_validate_request(r.op, request, &report, &err) != KERR_OK) {
    print_error(report != NULL ? report : err.msg);
    code = KMS_EXIT_PARAM;
    goto out;
  }
  if (a->query != NULL) {
    jmes_error jerr;
    if (jmes_compile(a->query, &r.query, &jerr) != KERR_OK) {
      fprintf(stderr, "\nBad value for --query %s: %s\n", a->query, jerr.status.msg);
      code = KMS_EXIT_PARAM;
      goto out;
    }
  }
  kms_client_options copts;
  code = client_options(a, &copts);
  if (code != KMS_EXIT_OK)
    goto out;
  kms_error e;
  memset(&e, 0, sizeof e);
  if (kms_client_new(a->service != NULL ? KMS_SERVICE_CLOUDHSMV2 : KMS_SERVICE_KMS, &copts, &r.client, &e) != 0) {
    code = report_call_error(&r, &e);
    goto out;
  }

  cli_paging_spec spec;
  if (a->no_paginate && (a->starting_token != NULL || a->page_size != NULL || a->max_items != NULL)) {
    char given[64] = "";
    const char *names[] = {a->starting_token ? "--starting-token" : NULL, a->page_size ? "--page-size" : NULL,
                           a->max_items ? "--max-items" : NULL};
    for (size_t i = 0; i < 3; i++)
      if (names[i] != NULL) {
        if (given[0] != '\0')
          strcat(given, ", ");
        strcat(given, names[i]);
      }
    fprintf(stderr, "\nError during pagination: Cannot specify --no-paginate along with pagination arguments: %s\n",
            given);
    code = KMS_EXIT_PARAM;
    goto out;
  }
  int paged = !a->no_paginate && paging_spec(r.op, &spec);
  /* A user who sets the position or the page size member by hand asks for
   * that one page: the CLI then turns pagination off. */
  if (paged && (json_object_get(request, spec.input_token) != NULL ||
                (spec.limit_key != NULL && json_object_get(request, spec.limit_key) != NULL)))
    paged = 0;
  if (paged) {
    cli_paging_opts pg = {a->starting_token, 0, 0};
    if ((a->max_items != NULL && read_count("max-items", a->max_items, &pg.max_items, &err) != KERR_OK) ||
        (a->page_size != NULL && read_count("page-size", a->page_size, &pg.page_size, &err) != KERR_OK)) {
      kms_usage_error("%s", err.msg);
      code = KMS_EXIT_USAGE;
      goto out;
    }
    code = call_paged(&r, request, &spec, &pg);
  } else {
    code = call_once(&r, request);
  }
out:
  kms_pager_close(&r.pager);
  kms_settings_free(&r.settings);
  kms_client_free(r.client);
  jmes_free(r.query);
  free(report);
  json_decref(request);
  json_decref(cli_input);
  return code;
}
