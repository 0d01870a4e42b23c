/* output_internal.h - what the --output format modules (output_*.c) share:
 * a bounded output buffer and the way Python writes a scalar, which the AWS
 * CLI's formats inherit.  Not for use outside lib/cli/output*.c. */
#ifndef KMSD_CLI_OUTPUT_INTERNAL_H
#define KMSD_CLI_OUTPUT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cli/output.h"
#include "core/kerr.h"

/* A growing byte string that refuses to grow past `cap` bytes.  `data` is
 * malloc'd (NULL until the first append) and kept NUL-terminated. */
typedef struct cli_out_buf {
  char *data;
  size_t len;
  size_t alloc;
  size_t cap;
  kerr *err;
} cli_out_buf;

/* Append: KERR_OK, or KERR_VALIDATION when the output would pass `cap`,
 * or KERR_INTERNAL out of memory; the error is filled in b->err. */
kerr_code cli_out_put(cli_out_buf *b, const char *s, size_t n);
/* The two failures every format shares, filled in `err`: output past the
 * cap (KERR_VALIDATION) and out of memory (KERR_INTERNAL). */
kerr_code cli_out_too_large(kerr *err, size_t cap);
kerr_code cli_out_no_memory(kerr *err);
kerr_code cli_out_puts(cli_out_buf *b, const char *s);
kerr_code cli_out_putc(cli_out_buf *b, char c);
/* `count` copies of `s` (count <= 0: nothing). */
kerr_code cli_out_repeat(cli_out_buf *b, const char *s, long count);
void cli_out_free(cli_out_buf *b);

/* Python's repr() of a float: the shortest digits that read back to the
 * same double, "1e+16", "1.5e-07", "0.1", "100.0", "-0.0".  buf holds at
 * least 32 bytes. */
void cli_out_float_repr(double v, char buf[32]);

/* Python's str() of a scalar (a string as is, True, False, None, numbers
 * as repr) or, for an array or object, its repr() as Python prints a list
 * or a dict: "[1, 'x']", "{'a': None}". */
kerr_code cli_out_py_str(cli_out_buf *b, const json_t *v);

/* Is `v` a scalar for the text and table formats: anything but an array or
 * an object. */
int cli_out_is_scalar(const json_t *v);

/* Decode one code point of UTF-8 at s[*i] and advance *i.  jansson checks
 * the strings it parses, but its *_nocheck constructors do not, so a
 * malformed sequence is read byte by byte rather than trusted; every call
 * advances at least one byte and never reads past `len`. */
uint32_t cli_out_utf8_next(const char *s, size_t len, size_t *i);

/* Width in table columns of a UTF-8 string (cli_uni_columns per character). */
long cli_out_text_columns(const char *s, size_t len);

/* One member of an object: its key (which may hold NUL bytes, so it always
 * travels with its length) and its value. */
typedef struct cli_out_member {
  const char *key;
  size_t key_len;
  json_t *value;
} cli_out_member;

/* Order of two keys as Python orders str: by code point, which for UTF-8
 * is byte order, a key that is a prefix of another first. */
int cli_out_key_cmp(const char *a, size_t a_len, const char *b, size_t b_len);

/* qsort() comparison of two cli_out_member by key. */
int cli_out_member_order(const void *a, const void *b);

/* An object's members sorted by key (cli_out_key_cmp).  *members is
 * malloc'd (free() it; NULL for an empty object); keys and values point
 * into the object. */
kerr_code cli_out_sorted_members(const json_t *obj, cli_out_member **members, size_t *n, kerr *err);

/* Sort keys[0..n) by key and keep one of each key, in place; returns how
 * many are kept. */
size_t cli_out_unique_members(cli_out_member *keys, size_t n);

kerr_code cli_out_render_json(const json_t *doc, cli_out_buf *b);
kerr_code cli_out_render_text(const json_t *doc, cli_out_buf *b);
kerr_code cli_out_render_table(const json_t *doc, const cli_output_opts *opts, cli_out_buf *b);
kerr_code cli_out_render_yaml(const json_t *doc, int as_stream, cli_out_buf *b);

#endif
