/* output_internal.h - what the parts of the `kms` output formatter share
 * (lib/cli/output.c, output_table.c, output_yaml.c, output_unicode.c): the
 * byte buffer, Python's spelling of values, sorted object keys and the
 * Unicode tables.  Not for use outside lib/cli/output*.c. */
#ifndef KMSD_CLI_OUTPUT_INTERNAL_H
#define KMSD_CLI_OUTPUT_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/output.h"
#include "core/kerr.h"

/* An inclusive range of Unicode code points. */
typedef struct cli_cp_range {
  uint32_t first;
  uint32_t last;
} cli_cp_range;

/* Generated tables (output_unicode.c); see scripts/gen_cli_unicode.py. */
extern const cli_cp_range cli_wide_ranges[];
extern const size_t cli_wide_ranges_count;
extern const cli_cp_range cli_unprintable_ranges[];
extern const size_t cli_unprintable_ranges_count;

/* Appends to `b`; each returns 0, or -1 when memory ran out (the buffer
 * then keeps what it had). */
int cli_buf_put(cli_output_buf *b, const char *s, size_t n);
int cli_buf_puts(cli_output_buf *b, const char *s);
int cli_buf_putc(cli_output_buf *b, char c);
int cli_buf_repeat(cli_output_buf *b, char c, long count); /* count <= 0: nothing */

/* Python's str() of a JSON value as the CLI sees it: a string as itself, an
 * integer in decimal, a real as repr(float), True, False, None, and an object
 * or array as Python's repr of the dict or list. */
int cli_py_str(cli_output_buf *b, const json_t *v);

/* Python's repr(float) of `d` (finite). */
int cli_py_float(cli_output_buf *b, double d);

/* The columns the CLI gives `n` bytes of UTF-8: one per code point, two for
 * East Asian wide, full-width and ambiguous ones. */
size_t cli_text_width(const char *s, size_t n);

/* One member name of an object. */
typedef struct cli_key {
  const char *s;
  size_t len;
} cli_key;

/* Compare two keys as Python compares str (by code point; UTF-8 byte order
 * is the same order). */
int cli_key_cmp(const cli_key *a, const cli_key *b);

/* The member names of `obj`, sorted by cli_key_cmp, in a malloc'd array the
 * caller frees (NULL with *count 0 for an empty object).  -1 on no memory. */
int cli_sorted_keys(const json_t *obj, cli_key **keys, size_t *count);

/* Nonzero when `v` is no object or array (the CLI's "scalar"). */
int cli_is_scalar(const json_t *v);

/* The table and YAML formats (output_table.c, output_yaml.c).  Both append
 * to `out` and may leave partial text on failure: cli_output_render rolls
 * the buffer back. */
kerr_code cli_output_table(const json_t *doc, const cli_output_opts *opts, cli_output_buf *out,
                           kerr *e);
kerr_code cli_output_yaml(const json_t *doc, int stream, cli_output_buf *out, kerr *e);

#endif
