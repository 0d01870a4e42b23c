/* help.c - `kms help` and `kms <command> help`, from the model.
 *
 * The AWS CLI prints a manual page per command: what the operation does,
 * its synopsis, every parameter with its type, whether it is required, its
 * documentation and its possible values, the global options, and the shape
 * of the output.  `kms` prints the same sections, laid out like a manual
 * page (section titles at the margin, text indented seven columns, wrapped
 * at 79), from the model tables (names, types, enums, required flags) and
 * the documentation tables (lib/model/model_docs.h).  Help goes through the
 * pager on a terminal, as the CLI's does. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/params.h"
#include "kms_tool.h"
#include "model/model_docs.h"
#include "pager.h"

#define HELP_WIDTH 79
#define HELP_MAX_DEPTH 6

/* Help text is gathered in memory and then written through the pager. */
typedef struct text_buf {
  char *data;
  size_t len, cap;
  int failed;
} text_buf;

static void put(text_buf *b, const char *s, size_t n) {
  if (b->failed)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 8192;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *d = realloc(b->data, cap);
    if (d == NULL) {
      b->failed = 1;
      return;
    }
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

static void puts_buf(text_buf *b, const char *s) { put(b, s, strlen(s)); }

static void printf_buf(text_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void printf_buf(text_buf *b, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n > 0)
    put(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* One paragraph, wrapped at HELP_WIDTH with `indent` columns before each
 * line; a list item's continuation lines line up after its "* ". */
static void wrap(text_buf *b, const char *text, size_t len, int indent) {
  int hang = 0;
  while (len > 0 && *text == ' ') {
    text++;
    len--;
    indent++;
  }
  if (len >= 2 && text[0] == '*' && text[1] == ' ')
    hang = 2;
  int col = 0, first = 1;
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *w = p;
    while (w < end && *w != ' ')
      w++;
    size_t wl = (size_t)(w - p);
    if (!first && col + 1 + (int)wl > HELP_WIDTH) {
      puts_buf(b, "\n");
      col = 0;
    }
    if (col == 0) {
      int pad = indent + (first ? 0 : hang);
      for (int i = 0; i < pad; i++)
        puts_buf(b, " ");
      col = pad;
    } else {
      puts_buf(b, " ");
      col++;
    }
    put(b, p, wl);
    col += (int)wl;
    first = 0;
    p = w;
    while (p < end && *p == ' ')
      p++;
  }
  puts_buf(b, "\n\n");
}

/* Every paragraph of a documentation text. */
static void doc_text(text_buf *b, const char *text, int indent) {
  if (text == NULL || *text == '\0') {
    wrap(b, "None", 4, indent);
    return;
  }
  while (*text != '\0') {
    const char *nl = strchr(text, '\n');
    size_t n = nl != NULL ? (size_t)(nl - text) : strlen(text);
    wrap(b, text, n, indent);
    text += n + (nl != NULL);
  }
}

static const char *type_name(const model_shape *s) {
  switch (s->type) {
  case MODEL_STRUCTURE:
    return "structure";
  case MODEL_LIST:
    return "list";
  case MODEL_MAP:
    return "map";
  default:
    return model_type_name(s->type);
  }
}

static const char *const global_help[][2] = {
    {"--debug (boolean)", "Turn on debug logging."},
    {"--endpoint-url (string)", "Override command's default URL with the given URL."},
    {"--no-verify-ssl (boolean)", "By default, kms uses SSL when communicating with AWS services and verifies "
                                  "the certificates. This option overrides the default behavior of verifying "
                                  "SSL certificates."},
    {"--no-paginate (boolean)", "Disable automatic pagination. If automatic pagination is disabled, kms will "
                                "only make one call, for the first page of results."},
    {"--output (string)", "The formatting style for command output: json, text, table, yaml, yaml-stream."},
    {"--query (string)", "A JMESPath query to use in filtering the response data."},
    {"--profile (string)", "Use a specific profile from your credential file."},
    {"--region (string)", "The region to use. Overrides config/env settings."},
    {"--version (string)", "Display the version of this tool."},
    {"--color (string)", "Turn on/off color output: on, off, auto."},
    {"--no-sign-request (boolean)", "Do not sign requests. Credentials will not be loaded if this argument is "
                                    "provided."},
    {"--ca-bundle (string)", "The CA certificate bundle to use when verifying SSL certificates. Overrides "
                             "config/env settings."},
    {"--cli-read-timeout (int)", "The maximum socket read time in seconds. If the value is set to 0, the "
                                 "socket read will be blocking and not timeout. The default value is 60 seconds."},
    {"--cli-connect-timeout (int)", "The maximum socket connect time in seconds. If the value is set to 0, "
                                    "the socket connect will be blocking and not timeout. The default value is "
                                    "60 seconds."},
    {"--cli-binary-format (string)", "The formatting style to be used for binary blobs: base64 (the default) "
                                     "or raw-in-base64-out."},
    {"--no-cli-pager (boolean)", "Disable cli pager for output."},
    {"--cli-auto-prompt (boolean)", "Automatically prompt for CLI input parameters."},
    {"--no-cli-auto-prompt (boolean)", "Disable automatically prompt for CLI input parameters."},
};

static void global_options(text_buf *b) {
  puts_buf(b, "GLOBAL OPTIONS\n");
  for (size_t i = 0; i < sizeof global_help / sizeof global_help[0]; i++) {
    printf_buf(b, "       %s\n\n", global_help[i][0]);
    wrap(b, global_help[i][1], strlen(global_help[i][1]), 10);
  }
}

/* The members of a structure shape as the OUTPUT section lists them, with
 * their documentation, nested structures and list items indented. */
static void shape_tree(text_buf *b, const model_docs *docs, const model_shape *s, int indent, int depth) {
  char key[256];
  if (s == NULL || depth > HELP_MAX_DEPTH)
    return;
  if (s->type == MODEL_LIST) {
    shape_tree(b, docs, s->member, indent, depth + 1);
    return;
  }
  if (s->type == MODEL_MAP) {
    printf_buf(b, "%*skey -> (%s)\n\n", indent, "", type_name(s->key));
    printf_buf(b, "%*svalue -> (%s)\n\n", indent, "", type_name(s->value));
    shape_tree(b, docs, s->value, indent + 3, depth + 1);
    return;
  }
  if (s->type != MODEL_STRUCTURE)
    return;
  for (size_t i = 0; i < s->member_count; i++) {
    const model_member *m = &s->members[i];
    printf_buf(b, "%*s%s -> (%s)\n\n", indent, "", m->name, type_name(m->shape));
    snprintf(key, sizeof key, "member:%s.%s", s->name, m->name);
    doc_text(b, model_doc_find(docs, key), indent + 3);
    shape_tree(b, docs, m->shape, indent + 3, depth + 1);
  }
}

static void command_help(text_buf *b, const model_service *svc, const model_docs *docs, const model_op *op) {
  char cmd[128], name[160], key[256];
  cli_kebab_name(op->name, cmd, sizeof cmd);
  printf_buf(b, "%s()\n\nNAME\n       %s -\n\nDESCRIPTION\n", cmd, cmd);
  snprintf(key, sizeof key, "op:%s", op->name);
  doc_text(b, model_doc_find(docs, key), 7);
  printf_buf(b, "SYNOPSIS\n            %s%s\n", svc == &model_cloudhsmv2 ? "cloudhsmv2 " : "", cmd);
  const model_shape *in = op->input;
  for (size_t i = 0; in != NULL && i < in->member_count; i++) {
    const model_member *m = &in->members[i];
    cli_kebab_name(m->name, name, sizeof name);
    if (op->paginator != NULL &&
        (strcmp(m->name, op->paginator->input_token) == 0 ||
         (op->paginator->limit_key != NULL && strcmp(m->name, op->paginator->limit_key) == 0)))
      continue; /* replaced by --starting-token and --page-size */
    if (m->shape->type == MODEL_BOOLEAN)
      printf_buf(b, "          [--%s | --no-%s]\n", name, name);
    else if (m->required)
      printf_buf(b, "          --%s <value>\n", name);
    else
      printf_buf(b, "          [--%s <value>]\n", name);
  }
  puts_buf(b, "          [--cli-input-json | --cli-input-yaml]\n");
  if (op->paginator != NULL)
    puts_buf(b, "          [--starting-token <value>]\n          [--page-size <value>]\n"
                "          [--max-items <value>]\n");
  puts_buf(b, "          [--generate-cli-skeleton <value>]\n          [--debug]\n          [--endpoint-url <value>]\n"
              "          [--no-verify-ssl]\n          [--no-paginate]\n          [--output <value>]\n"
              "          [--query <value>]\n          [--profile <value>]\n          [--region <value>]\n"
              "          [--version <value>]\n          [--color <value>]\n          [--no-sign-request]\n"
              "          [--ca-bundle <value>]\n          [--cli-read-timeout <value>]\n"
              "          [--cli-connect-timeout <value>]\n          [--cli-binary-format <value>]\n"
              "          [--no-cli-pager]\n          [--cli-auto-prompt]\n          [--no-cli-auto-prompt]\n\n");
  puts_buf(b, "OPTIONS\n");
  if (in == NULL || in->member_count == 0)
    puts_buf(b, "       None\n\n");
  for (size_t i = 0; in != NULL && i < in->member_count; i++) {
    const model_member *m = &in->members[i];
    cli_kebab_name(m->name, name, sizeof name);
    printf_buf(b, "       --%s (%s)%s\n\n", name, type_name(m->shape), m->required ? " [required]" : "");
    snprintf(key, sizeof key, "member:%s.%s", in->name, m->name);
    doc_text(b, model_doc_find(docs, key), 10);
    if (m->shape->enum_values != NULL) {
      puts_buf(b, "          Possible values:\n\n");
      for (size_t k = 0; k < m->shape->enum_count; k++)
        printf_buf(b, "          * %s\n\n", m->shape->enum_values[k]);
    }
    if (m->shape->type == MODEL_STRUCTURE || m->shape->type == MODEL_LIST || m->shape->type == MODEL_MAP)
      shape_tree(b, docs, m->shape, 10, 0);
  }
  static const char input_doc[] = "Reads arguments from the JSON string provided, or from the YAML string. The "
                                  "JSON string follows the format provided by --generate-cli-skeleton. Values "
                                  "given on the command line replace the values of the input.";
  static const char skeleton_doc[] = "Prints a skeleton to standard output without sending an API request: input "
                                     "(JSON, the default), yaml-input, or output (a sample of the reply).";
  puts_buf(b, "       --cli-input-json | --cli-input-yaml (string)\n\n");
  wrap(b, input_doc, sizeof input_doc - 1, 10);
  if (op->paginator != NULL) {
    puts_buf(b, "       --starting-token (string)\n\n");
    static const char start_doc[] = "A token to specify where to start paginating. This is the NextToken from a "
                                    "previously truncated response.";
    wrap(b, start_doc, sizeof start_doc - 1, 10);
    puts_buf(b, "       --page-size (integer)\n\n");
    static const char size_doc[] = "The size of each page to get in the service call. This does not affect the "
                                   "number of items returned in the command's output.";
    wrap(b, size_doc, sizeof size_doc - 1, 10);
    puts_buf(b, "       --max-items (integer)\n\n");
    static const char max_doc[] = "The total number of items to return in the command's output. If the total "
                                  "number of items available is more than the value specified, a NextToken is "
                                  "provided in the command's output. To resume pagination, provide the NextToken "
                                  "value in the starting-token argument of a subsequent command.";
    wrap(b, max_doc, sizeof max_doc - 1, 10);
  }
  puts_buf(b, "       --generate-cli-skeleton (string)\n\n");
  wrap(b, skeleton_doc, sizeof skeleton_doc - 1, 10);
  global_options(b);
  puts_buf(b, "OUTPUT\n");
  if (op->output == NULL || op->output->member_count == 0)
    puts_buf(b, "       None\n\n");
  else
    shape_tree(b, docs, op->output, 7, 0);
}

static void overview(text_buf *b, const model_service *svc, const model_docs *docs) {
  char name[160];
  printf_buf(b, "%s()\n\nNAME\n       %s -\n\nDESCRIPTION\n", svc == &model_kms ? "KMS" : "CLOUDHSMV2",
             svc == &model_kms ? "kms" : "cloudhsmv2");
  doc_text(b, model_doc_find(docs, "service"), 7);
  printf_buf(b, "SYNOPSIS\n       kms [options] %s<command> [parameters]\n\n",
             svc == &model_kms ? "" : "cloudhsmv2 ");
  static const char use_doc[] = "Use kms <command> help for a command's parameters and output. kms cloudhsmv2 "
                                "<command> reaches the CloudHSMv2 API of the same endpoint.";
  wrap(b, use_doc, sizeof use_doc - 1, 7);
  global_options(b);
  puts_buf(b, "AVAILABLE COMMANDS\n");
  if (svc == &model_kms)
    puts_buf(b, "       o cloudhsmv2\n\n");
  for (size_t i = 0; i < svc->op_count; i++)
    printf_buf(b, "       o %s\n\n", cli_kebab_name(svc->ops[i].name, name, sizeof name));
  puts_buf(b, "       o help\n\n");
}

int kms_help(const model_service *svc, const model_op *op, int no_pager, const char *pager_setting) {
  text_buf b;
  kms_pager pager;
  const model_docs *docs = svc == &model_cloudhsmv2 ? &model_cloudhsmv2_docs : &model_kms_docs;
  memset(&b, 0, sizeof b);
  if (op != NULL)
    command_help(&b, svc, docs, op);
  else
    overview(&b, svc, docs);
  if (b.failed) {
    free(b.data);
    fputs("\nout of memory\n", stderr);
    return KMS_EXIT_OTHER;
  }
  kms_pager_open(&pager, no_pager, pager_setting);
  int code = kms_pager_write(&pager, b.data, b.len) == 0 ? KMS_EXIT_OK : KMS_EXIT_OTHER;
  kms_pager_close(&pager);
  free(b.data);
  return code;
}
