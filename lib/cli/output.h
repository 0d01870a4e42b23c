/* output.h - how the `kms` command line prints a reply: the AWS CLI's
 * `--output json|text|table|yaml|yaml-stream`.
 *
 * Scripts written for the AWS CLI parse what it prints (`--output text` cut
 * by tabs, `--output json` fed to jq), so for json, text and table `kms`
 * prints byte for byte what the AWS CLI (v1, `--color off`) prints for the
 * same data.  yaml and yaml-stream, which the v1 CLI lacks, print YAML that
 * loads back to the same data.  The rules, learned by running the AWS CLI's
 * formatters on chosen inputs, are described where they are implemented:
 * output_json.c, output_text.c, output_table.c, output_yaml.c.
 *
 * The document comes from outside (a server's reply, narrowed by --query),
 * so it is bounded: nesting deeper than CLI_OUTPUT_MAX_DEPTH, or output
 * larger than the caller's max_bytes, is refused, never a crash, a hang or
 * unbounded memory.  Where the AWS CLI itself fails on a document (a table
 * whose rows have different lengths, text of a list mixing objects with
 * other values), `kms` refuses it too, with a message that says so. */
#ifndef KMSD_CLI_OUTPUT_H
#define KMSD_CLI_OUTPUT_H

#include <stddef.h>

#include <jansson.h>

#include "core/kerr.h"

/* Deepest nesting of arrays and objects printed: {"a":[1]} nests 2.  KMS
 * replies nest 4 deep at most. */
#define CLI_OUTPUT_MAX_DEPTH 64
/* Output cap when cli_output_opts.max_bytes is 0. */
#define CLI_OUTPUT_DEFAULT_MAX_BYTES (256u * 1024u * 1024u)
/* Table width when cli_output_opts.width is 0: the AWS CLI's width when
 * stdout is not a terminal. */
#define CLI_OUTPUT_DEFAULT_WIDTH 80

typedef enum cli_format {
  CLI_FORMAT_JSON,
  CLI_FORMAT_TEXT,
  CLI_FORMAT_TABLE,
  CLI_FORMAT_YAML,
  CLI_FORMAT_YAML_STREAM
} cli_format;

/* "json", "text", "table", "yaml" or "yaml-stream" -> *out.  Anything else
 * (NULL too) is KERR_VALIDATION with the AWS CLI's message for an invalid
 * --output choice. */
kerr_code cli_format_parse(const char *name, cli_format *out, kerr *err);

typedef struct cli_output_opts {
  cli_format format;
  const char *title;  /* table title: the operation name ("DescribeKey"); NULL = none */
  int width;          /* table width in columns; 0 = CLI_OUTPUT_DEFAULT_WIDTH.  The
                       * AWS CLI uses the terminal's width when stdout is one. */
  int color;          /* 1 = the ANSI colours of `--color on` (table), 0 = off */
  size_t max_bytes;   /* refuse output larger than this; 0 = CLI_OUTPUT_DEFAULT_MAX_BYTES */
} cli_output_opts;

/* Render `doc` (any JSON value, null included) in opts->format.
 *
 * On KERR_OK, *out is a malloc'd NUL-terminated string of *out_len bytes
 * (possibly 0: the AWS CLI prints nothing for an empty object, for
 * instance); the caller frees it with free().  Strings holding "\u0000"
 * print it as a NUL byte in text and table, as the AWS CLI does, so use
 * *out_len, not strlen().
 *
 * On failure *out is NULL and *out_len 0, and `err` says why:
 *   KERR_VALIDATION  the document cannot be printed in this format (as the
 *                    AWS CLI cannot), nests deeper than CLI_OUTPUT_MAX_DEPTH,
 *                    or its output would exceed max_bytes;
 *   KERR_INTERNAL    out of memory, or libyaml failed.
 * For yaml-stream, one call prints one page as the AWS CLI prints each page
 * of a paginated reply; the caller calls it once per page. */
kerr_code cli_output_render(const json_t *doc, const cli_output_opts *opts, char **out, size_t *out_len,
                            kerr *err);

#endif
