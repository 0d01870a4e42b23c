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
typedef struct out_buf {
  char *data;
  size_t len;
  size_t alloc;
  size_t cap;
  kerr *err;
} out_buf;

/* Append: KERR_OK, or KERR_VALIDATION when the output would pass `cap`,
 * or KERR_INTERNAL out of memory; the error is filled in b->err. */
kerr_code out_put(out_buf *b, const char *s, size_t n);
kerr_code out_puts(out_buf *b, const char *s);
kerr_code out_putc(out_buf *b, char c);
/* `count` copies of `s` (count <= 0: nothing). */
kerr_code out_repeat(out_buf *b, const char *s, long count);
void out_free(out_buf *b);

/* Python's repr() of a float: the shortest digits that read back to the
 * same double, "1e+16", "1.5e-07", "0.1", "100.0", "-0.0".  buf holds at
 * least 32 bytes. */
void out_float_repr(double v, char buf[32]);

/* Python's str() of a scalar (a string as is, True, False, None, numbers
 * as repr) or, for an array or object, its repr() as Python prints a list
 * or a dict: "[1, 'x']", "{'a': None}". */
kerr_code out_py_str(out_buf *b, const json_t *v);

/* Is `v` a scalar for the text and table formats: anything but an array or
 * an object. */
int out_is_scalar(const json_t *v);

/* Decode one code point of valid UTF-8 at s[*i] and advance *i; jansson's
 * strings are always valid UTF-8. */
uint32_t out_utf8_next(const char *s, size_t len, size_t *i);

/* Width in table columns of a UTF-8 string (cli_uni_columns per character). */
long out_text_columns(const char *s, size_t len);

/* An object's keys sorted as Python sorts str (by code point, which is
 * UTF-8 byte order).  *keys is malloc'd (free() it); pointers point into
 * the object. */
kerr_code out_sorted_keys(const json_t *obj, const char ***keys, size_t *n, kerr *err);

kerr_code out_render_json(const json_t *doc, out_buf *b);
kerr_code out_render_text(const json_t *doc, out_buf *b);
kerr_code out_render_table(const json_t *doc, const cli_output_opts *opts, out_buf *b);
kerr_code out_render_yaml(const json_t *doc, int as_stream, out_buf *b);

#endif
