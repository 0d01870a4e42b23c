/* complete.c - bash completion for `kms`, from the model.
 *
 * scripts/kms-completion.bash registers a function that runs
 * `kms --cli-complete` with bash's COMP_LINE and COMP_POINT in the
 * environment; this file prints the candidates for the word under the
 * cursor, one per line: the commands (and `cloudhsmv2`), an operation's
 * options (each member as --kebab-name, --no-name for booleans, the
 * pagination options of a paginated command, the global options), the valid
 * values of an enum member or of --output, --color and the like.  Options
 * already on the line are not offered again.  Everything comes from the
 * model tables, so a new operation completes without a change here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/params.h"
#include "kms_tool.h"

#define COMPLETE_MAX_WORDS 256
#define COMPLETE_MAX_LINE 65536

/* The global options and the options every command takes (without "--"). */
static const char *const global_options[] = {
    "debug", "endpoint-url", "no-verify-ssl", "no-paginate", "output", "query", "profile", "region", "version",
    "color", "no-sign-request", "ca-bundle", "cli-read-timeout", "cli-connect-timeout", "cli-binary-format",
    "no-cli-pager", "cli-auto-prompt", "no-cli-auto-prompt", "cli-input-json", "cli-input-yaml",
    "generate-cli-skeleton",
};

static const char *const paging_options[] = {"starting-token", "page-size", "max-items"};

/* Fixed choices of global options. */
typedef struct choice_list {
  const char *option;
  const char *const *values;
} choice_list;

static const char *const output_values[] = {"json", "text", "table", "yaml", "yaml-stream", NULL};
static const char *const color_values[] = {"on", "off", "auto", NULL};
static const char *const binary_values[] = {"base64", "raw-in-base64-out", NULL};
static const char *const skeleton_values[] = {"input", "output", "yaml-input", NULL};
static const choice_list global_choices[] = {
    {"--output", output_values},
    {"--color", color_values},
    {"--cli-binary-format", binary_values},
    {"--generate-cli-skeleton", skeleton_values},
};

/* The words of the line up to the cursor, split at blanks; quotes are kept
 * out of the words (enough for option names and enum values). */
typedef struct words {
  char *buf;
  char *w[COMPLETE_MAX_WORDS];
  int n;
} words;

static int split_line(const char *line, size_t point, words *out) {
  size_t len = strlen(line);
  if (point > len)
    point = len;
  if (point > COMPLETE_MAX_LINE)
    return -1;
  out->buf = malloc(point + 1);
  if (out->buf == NULL)
    return -1;
  out->n = 0;
  char *dst = out->buf, *start = NULL;
  char quote = 0;
  for (size_t i = 0; i < point; i++) {
    char c = line[i];
    if (quote != 0) {
      if (c == quote)
        quote = 0;
      else
        *dst++ = c;
      continue;
    }
    if (c == ' ' || c == '\t') {
      if (start != NULL) {
        *dst++ = '\0';
        start = NULL;
      }
      continue;
    }
    if (start == NULL) {
      if (out->n == COMPLETE_MAX_WORDS)
        return -1;
      start = dst;
      out->w[out->n++] = start;
    }
    if (c == '\'' || c == '"')
      quote = c;
    else
      *dst++ = c;
  }
  *dst = '\0';
  /* A line ending in a blank is completing a new, empty word. */
  if (start == NULL) {
    if (out->n == COMPLETE_MAX_WORDS)
      return -1;
    out->w[out->n++] = dst;
  }
  return 0;
}

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* Was `--name` given before the current word? */
static int already_given(const words *w, const char *name) {
  for (int i = 1; i < w->n - 1; i++)
    if (starts_with(w->w[i], "--") && strcmp(w->w[i] + 2, name) == 0)
      return 1;
  return 0;
}

/* Where candidates go: printed for bash, gathered for the prompt. */
typedef struct sink {
  void (*emit)(void *ctx, const char *candidate);
  void *ctx;
} sink;

static void offer(const sink *out, const char *candidate, const char *cur) {
  if (starts_with(candidate, cur))
    out->emit(out->ctx, candidate);
}

static void offer_option(const sink *out, const words *w, const char *name, const char *cur) {
  char full[180];
  snprintf(full, sizeof full, "--%s", name);
  if (!already_given(w, name))
    offer(out, full, cur);
}

/* The member of `op` whose option is `option` ("--key-spec"), or NULL. */
static const model_member *member_of_option(const model_op *op, const char *option) {
  char name[160];
  if (op == NULL || op->input == NULL || !starts_with(option, "--"))
    return NULL;
  for (size_t i = 0; i < op->input->member_count; i++)
    if (strcmp(cli_kebab_name(op->input->members[i].name, name, sizeof name), option + 2) == 0)
      return &op->input->members[i];
  return NULL;
}

static void complete_words(const words *w, const sink *out) {
  const model_service *svc = &model_kms;
  const model_op *op = NULL;
  const char *cur = w->w[w->n - 1];
  const char *prev = w->n >= 2 ? w->w[w->n - 2] : "";
  char name[160];
  /* The service and the command are the first bare words. */
  for (int i = 1; i < w->n - 1; i++) {
    if (starts_with(w->w[i], "-")) {
      if (op == NULL && kms_option_takes_value(w->w[i]))
        i++; /* its value is not the command */
      continue;
    }
    if (op == NULL && svc == &model_kms && strcmp(w->w[i], "cloudhsmv2") == 0) {
      svc = &model_cloudhsmv2;
      continue;
    }
    if (op == NULL) {
      op = cli_find_op(svc, w->w[i]);
      if (op == NULL)
        return; /* an unknown command: nothing sensible to offer */
    }
  }
  for (size_t i = 0; i < sizeof global_choices / sizeof global_choices[0]; i++)
    if (strcmp(prev, global_choices[i].option) == 0) {
      for (const char *const *v = global_choices[i].values; *v != NULL; v++)
        offer(out, *v, cur);
      return;
    }
  const model_member *m = member_of_option(op, prev);
  if (m != NULL && m->shape->enum_values != NULL) {
    for (size_t i = 0; i < m->shape->enum_count; i++)
      offer(out, m->shape->enum_values[i], cur);
    return;
  }
  if (starts_with(cur, "-")) {
    if (op != NULL && op->input != NULL)
      for (size_t i = 0; i < op->input->member_count; i++) {
        const model_member *mm = &op->input->members[i];
        cli_kebab_name(mm->name, name, sizeof name);
        offer_option(out, w, name, cur);
        if (mm->shape->type == MODEL_BOOLEAN) {
          char negated[170];
          snprintf(negated, sizeof negated, "no-%s", name);
          offer_option(out, w, negated, cur);
        }
      }
    if (op != NULL && op->paginator != NULL)
      for (size_t i = 0; i < sizeof paging_options / sizeof paging_options[0]; i++)
        offer_option(out, w, paging_options[i], cur);
    for (size_t i = 0; i < sizeof global_options / sizeof global_options[0]; i++)
      offer_option(out, w, global_options[i], cur);
    return;
  }
  if (op == NULL) {
    if (svc == &model_kms)
      offer(out, "cloudhsmv2", cur);
    for (size_t i = 0; i < svc->op_count; i++)
      offer(out, cli_kebab_name(svc->ops[i].name, name, sizeof name), cur);
  }
}

int kms_complete_line(const char *line, size_t point, void (*emit)(void *ctx, const char *candidate), void *ctx) {
  words w;
  sink out = {emit, ctx};
  memset(&w, 0, sizeof w);
  int rc = split_line(line, point, &w);
  if (rc == 0 && w.n >= 1)
    complete_words(&w, &out);
  free(w.buf);
  return rc;
}

static void print_candidate(void *ctx, const char *candidate) {
  (void)ctx;
  printf("%s\n", candidate);
}

int kms_complete(void) {
  const char *line = getenv("COMP_LINE"), *point = getenv("COMP_POINT");
  if (line == NULL)
    return KMS_EXIT_USAGE;
  size_t at = point != NULL ? strtoul(point, NULL, 10) : strlen(line);
  (void)kms_complete_line(line, at, print_candidate, NULL);
  return KMS_EXIT_OK;
}
