/* output_unicode.h - the Unicode facts the --output formats need, as Python
 * (and so the AWS CLI) sees them: how many columns a table gives a
 * character, whether repr() shows it or escapes it, what str.upper() makes
 * of it.  Tables in output_unicode.c; every function takes any code point
 * and needs no locale. */
#ifndef KMSD_CLI_OUTPUT_UNICODE_H
#define KMSD_CLI_OUTPUT_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* 2 where Python's unicodedata.east_asian_width() says W, F or A (the AWS
 * CLI's table counts those as two columns), else 1. */
int cli_uni_columns(uint32_t cp);

/* 1 where Python's str.isprintable() is true for the character alone. */
int cli_uni_printable(uint32_t cp);

/* Python's str.upper() of the character: writes 1 to 3 code points into
 * out and returns how many. */
size_t cli_uni_upper(uint32_t cp, uint32_t out[3]);

#endif
