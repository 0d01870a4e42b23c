/* cli_flags.h - the command-line conventions every kmsd program follows.
 *
 * kmsd and hsm-cli read their flags through this one small parser so that
 * they behave alike: each program lists its flags in a table; a flag takes
 * its value as `--flag value` or `--flag=value`; a flag missing its value
 * (at the end of the line, or followed by another `--flag`) says so instead
 * of taking the next flag as its value; an unknown flag is an error naming
 * it and never swallows the next argument; `--` ends the flags.  A value
 * that itself starts with `--` must be written `--flag=--value`.
 * Conventions for the programs themselves: `-h`/`--help` print usage to
 * stdout and exit 0, `--version` prints "PROGRAM VERSION" (core/version.h)
 * and exits 0, a usage error exits 2 (cli_usage_error). */
#ifndef KMSD_CORE_CLI_FLAGS_H
#define KMSD_CORE_CLI_FLAGS_H

#include <stddef.h>

#define CLI_USAGE_EXIT 2
#define CLI_ERROR_MAX 160

/* One flag a program accepts. */
typedef struct cli_flag {
  const char *name;  /* "--listen" */
  const char *alias; /* another spelling, e.g. "-h" for "--help"; or NULL */
  int id;            /* the program's own identifier */
  int takes_value;   /* non-zero: `--name VALUE` / `--name=VALUE` */
} cli_flag;

typedef struct cli_parser {
  int argc;
  char **argv;
  int next;          /* index of the next argument to read */
  const cli_flag *flags;
  size_t nflags;
  int words_only;    /* a `--` was seen: the rest are words */
} cli_parser;

typedef enum cli_item_kind {
  CLI_END,   /* no arguments left */
  CLI_FLAG,  /* item.flag (with item.value when it takes one) */
  CLI_WORD,  /* item.value: a positional argument */
  CLI_ERROR, /* item.error says what is wrong; stop parsing */
} cli_item_kind;

typedef struct cli_item {
  const cli_flag *flag;         /* CLI_FLAG: the table entry */
  const char *value;            /* CLI_FLAG: its value or NULL; CLI_WORD: the word */
  char error[CLI_ERROR_MAX];    /* CLI_ERROR: "unknown option --x", "--listen needs a value",
                                   "--debug takes no value" */
} cli_item;

/* Start reading argv[1..argc-1] against `flags` (nflags entries).  Nothing
 * is copied: argv and the table must outlive the parser. */
void cli_parser_init(cli_parser *p, int argc, char **argv, const cli_flag *flags, size_t nflags);

/* Read the next item into *item and return its kind.  Values and words
 * point into argv.  After CLI_END or CLI_ERROR further calls return
 * CLI_END. */
cli_item_kind cli_next(cli_parser *p, cli_item *item);

/* Print "PROGRAM: MESSAGE (see PROGRAM --help)" as one line on stderr and
 * return CLI_USAGE_EXIT, for `return cli_usage_error(...)`. */
int cli_usage_error(const char *program, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
