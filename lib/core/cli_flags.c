/* cli_flags.c - the shared command-line parser (cli_flags.h). */
#include "core/cli_flags.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Flag names quoted in errors are cut here: argv is outside input. */
#define QUOTED_MAX 64

void cli_parser_init(cli_parser *p, int argc, char **argv, const cli_flag *flags, size_t nflags) {
  memset(p, 0, sizeof *p);
  p->argc = argc;
  p->argv = argv;
  p->next = 1;
  p->flags = flags;
  p->nflags = nflags;
}

/* The table entry called `name` (its first `len` bytes), or NULL. */
static const cli_flag *find_flag(const cli_parser *p, const char *name, size_t len) {
  for (size_t i = 0; i < p->nflags; i++) {
    const cli_flag *f = &p->flags[i];
    if (strlen(f->name) == len && strncmp(f->name, name, len) == 0) return f;
    if (f->alias && strlen(f->alias) == len && strncmp(f->alias, name, len) == 0) return f;
  }
  return NULL;
}

/* Nothing more is read after an error. */
static cli_item_kind stop(cli_parser *p) {
  p->next = p->argc;
  return CLI_ERROR;
}

cli_item_kind cli_next(cli_parser *p, cli_item *item) {
  memset(item, 0, sizeof *item);
  if (p->next >= p->argc) return CLI_END;
  const char *arg = p->argv[p->next++];

  /* A word: anything not starting with '-', a lone "-" (stdin by
   * convention), or whatever follows "--". */
  if (p->words_only || arg[0] != '-' || strcmp(arg, "-") == 0) {
    item->value = arg;
    return CLI_WORD;
  }
  if (strcmp(arg, "--") == 0) {
    p->words_only = 1;
    return cli_next(p, item);
  }

  const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
  size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
  int shown = name_len > QUOTED_MAX ? QUOTED_MAX : (int)name_len;
  const cli_flag *f = find_flag(p, arg, name_len);
  if (!f) {
    snprintf(item->error, sizeof item->error, "unknown option %.*s", shown, arg);
    return stop(p);
  }
  item->flag = f;
  if (!f->takes_value) {
    if (eq) {
      snprintf(item->error, sizeof item->error, "%.*s takes no value", shown, arg);
      return stop(p);
    }
    return CLI_FLAG;
  }
  if (eq) {
    item->value = eq + 1;
    return CLI_FLAG;
  }
  /* `--listen --threads 4` is a forgotten value, not a listen address. */
  if (p->next >= p->argc || strncmp(p->argv[p->next], "--", 2) == 0) {
    snprintf(item->error, sizeof item->error, "%.*s needs a value", shown, arg);
    return stop(p);
  }
  item->value = p->argv[p->next++];
  return CLI_FLAG;
}

int cli_usage_error(const char *program, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: ", program);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, " (see %s --help)\n", program);
  return CLI_USAGE_EXIT;
}
