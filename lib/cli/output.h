/* output.h - the `kms` command line's --output formats: json, text, table,
 * yaml and yaml-stream.
 *
 * Scripts written against the AWS CLI parse its output, so `kms` must print
 * exactly what the AWS CLI prints for the same response.  This module is a
 * pure formatter: it takes the response as a jansson value and appends text
 * to a buffer; it does no I/O, reads no terminal and keeps no state.
 *
 * What is printed, per format (the AWS CLI's rules, reproduced):
 *   json   Python's json.dump(indent=4, ensure_ascii=False) plus "\n": member
 *          order kept, non-ASCII kept as UTF-8, only '"', '\\' and control
 *          characters escaped (\n \r \t \b \f, others \u00xx).  Integers in
 *          decimal; reals as Python's repr(float): the shortest digits that
 *          read back to the same double, "1733000000.123", "1.0", "1e+16",
 *          "1e-05".  An empty object prints nothing at all.
 *   text   tab-separated rows: scalars of an object in key order, prefixed by
 *          the upper-cased name of the member holding it (ASCII letters are
 *          upper-cased; Python would also upper-case other scripts, which
 *          KMS member names never use); lists of objects
 *          use the sorted union of their scalar keys as columns; True, False
 *          and None as Python spells them.
 *   table  the CLI's boxed table titled with `title` (the operation name,
 *          e.g. "DescribeKey"); sub-tables per nested member, columns sorted
 *          by name, widths scaled to the widest section; when the table is
 *          wider than `terminal_width`, single-row sections turn vertical.
 *          East Asian wide characters count two columns (the Unicode tables
 *          of output_unicode.c, from scripts/gen_cli_unicode.py).  Empty or
 *          false values print nothing.
 *   yaml   block YAML (AWS CLI v2 only), the look of v2's ruamel.yaml dump:
 *          keys sorted, sequences not indented under their key, strings that
 *          would read back as another type quoted, `{}` and `[]` for empty
 *          containers.  It always parses back to the same data.
 *   yaml-stream  as yaml, the response as the single item of a sequence.
 *
 * Timestamps: the AWS CLI v1 prints them as they arrive on the wire (its
 * default cli_timestamp_format is "wire"), so a KMS CreationDate is the epoch
 * number the service sent, 1733000000.123.  This formatter converts nothing;
 * v2's ISO 8601 default needs the model's shapes and belongs to the caller,
 * which rewrites those members before formatting.  Blobs are printed as the
 * base64 text of the wire, as the CLI does.  The CLI's removal of
 * ResponseMetadata and its --query happen before formatting; so here.
 *
 * Depth: values nested deeper than CLI_OUTPUT_MAX_DEPTH are refused with
 * KERR_VALIDATION before anything is written, so no format recurses without
 * bound. */
#ifndef KMSD_CLI_OUTPUT_H
#define KMSD_CLI_OUTPUT_H

#include <jansson.h>
#include <stddef.h>

#include "core/kerr.h"

/* Deepest nesting accepted: the number of objects and arrays around the
 * innermost value ({"a":[1]} nests 2 deep; a scalar 0).  KMS responses nest at
 * most 4 deep; the bound keeps every format's recursion bounded. */
#define CLI_OUTPUT_MAX_DEPTH 64

/* The terminal width the AWS CLI assumes when stdout is not a terminal. */
#define CLI_OUTPUT_DEFAULT_WIDTH 80

typedef enum cli_output_format {
  CLI_OUTPUT_JSON,
  CLI_OUTPUT_TEXT,
  CLI_OUTPUT_TABLE,
  CLI_OUTPUT_YAML,
  CLI_OUTPUT_YAML_STREAM,
} cli_output_format;

typedef struct cli_output_opts {
  cli_output_format format;
  /* table: the title row, the operation name as the CLI names it
   * ("DescribeKey").  NULL or "" prints no title row.  Unused otherwise. */
  const char *title;
  /* table: the terminal's width in columns; 0 means
   * CLI_OUTPUT_DEFAULT_WIDTH (the CLI's choice when stdout is no terminal). */
  int terminal_width;
  /* table: nonzero colours cells and indentation bars with the ANSI codes of
   * the CLI's `--color on`.  Widths ignore the codes. */
  int color;
} cli_output_opts;

/* A growable byte buffer.  Owned by the caller: zero-initialise it, pass it
 * to cli_output_render (which appends), and release it with
 * cli_output_buf_free.  `data` is NUL-terminated whenever len > 0 (the text
 * itself may hold NUL bytes that were "\u0000" in a string). */
typedef struct cli_output_buf {
  char *data;
  size_t len;
  size_t cap;
} cli_output_buf;

/* Free the buffer's storage and zero it; NULL and zeroed buffers are fine. */
void cli_output_buf_free(cli_output_buf *buf);

/* Map an --output name ("json", "text", "table", "yaml", "yaml-stream") to
 * its format.  KERR_VALIDATION for any other name (NULL included). */
kerr_code cli_output_parse_format(const char *name, cli_output_format *out, kerr *e);

/* Append the text the AWS CLI prints for `doc` in `opts->format` to `out`.
 * `doc` is borrowed and not modified; any jansson value is accepted (a
 * --query result may be a list or a scalar).  On failure `out` is left as it
 * was (nothing partial is appended) and `e` says why:
 *   KERR_VALIDATION  nesting deeper than CLI_OUTPUT_MAX_DEPTH, an unknown
 *                    format, or data the AWS CLI itself cannot print (a table
 *                    of a list mixing objects and other values, rows of
 *                    different lengths in one section); the CLI fails on
 *                    those too;
 *   KERR_INTERNAL    out of memory, or libyaml refused to emit. */
kerr_code cli_output_render(const json_t *doc, const cli_output_opts *opts, cli_output_buf *out,
                            kerr *e);

#endif
