/* xks_flatjson.h - a one-pass reader for the flat JSON bodies of the XKS
 * API, in front of jansson's parser.
 *
 * XKS bodies are JSON objects whose values are strings, plus one object of
 * strings (requestMetadata).  jansson's lexer decodes every character
 * through its UTF-8 reader and was a tenth of xks-proxy's CPU time per
 * Encrypt; a body of that simple shape is read here with a few comparisons
 * per character, into the same jansson tree.
 *
 * The reader accepts a strict subset of what json_loadb(...,
 * JSON_REJECT_DUPLICATES, ...) accepts and builds, for it, a tree equal to
 * jansson's: an object (after optional JSON whitespace), nested at most
 * XKS_FLATJSON_DEPTH deep, whose values are strings or objects; strings of
 * printable ASCII without any escape; no key twice in one object; nothing
 * but whitespace after it.  Anything else (numbers, literals, arrays,
 * escapes, other bytes, a duplicate key, running out of memory) gives NULL,
 * and the caller parses the body with json_loadb, whose answer stands:
 * this reader never refuses a body on its own.  tests/fuzz/fuzz_xks_flatjson.c
 * checks both properties against jansson on every input.
 *
 * Strings are copied into the tree as jansson's parser copies them, so the
 * tree can be handled (and its secrets wiped) exactly like json_loadb's. */
#ifndef KMSD_XKS_XKS_FLATJSON_H
#define KMSD_XKS_XKS_FLATJSON_H

#include <jansson.h>
#include <stddef.h>

#define XKS_FLATJSON_DEPTH 2  /* the body, and requestMetadata inside it */

/* The tree of `body` (`len` bytes, need not be NUL-terminated) when it has
 * the shape above: a new reference the caller releases with json_decref.
 * NULL otherwise. */
json_t *xks_flatjson_load(const char *body, size_t len);

#endif
