/* jmespath.h - JMESPath (https://jmespath.org/specification.html) over
 * jansson values, for the `kms` command line's --query.
 *
 * An expression is compiled once and may then be searched against any number
 * of documents.  The whole specification is implemented: identifiers, sub-
 * expressions, indexes and slices, the three projections, flatten, filters,
 * pipes, multiselect lists and hashes, JSON and raw string literals,
 * comparators, `||` `&&` `!`, `@`, expression references and every built-in
 * function.
 *
 * Numbers are jansson's: an integer is an int64, and an integer written
 * beyond that range (in a JSON literal or given to to_number) becomes a real,
 * with a real's precision.  An integer and a real compare by exact value.
 * to_string writes compact JSON with non-ASCII characters as they are, in
 * UTF-8: Python's json.dumps, which the reference implementation uses,
 * escapes them as \uXXXX, but the specification does not ask for that and
 * both texts denote the same string.
 *
 * The expression is outside input (whatever the user typed), so compiling
 * and searching are bounded: the expression's length, the nesting of its
 * syntax tree, the work one search may do, the strings it builds and the size
 * of its result all have caps below, and going past one is an error of kind
 * JMES_ERR_RESOURCE, never a crash, a hang or unbounded memory. */
#ifndef KMSD_CLI_JMESPATH_H
#define KMSD_CLI_JMESPATH_H

#include <stddef.h>

#include <jansson.h>

#include "core/kerr.h"

/* Longest expression accepted, in bytes. */
#define JMES_EXPR_MAX (64u * 1024u)
/* Deepest syntax tree accepted: `((((a))))`, `!!!!a` and `a.b.c.d` each
 * nest one level per operator.  Every recursion of the parser and the
 * evaluator is bounded by it. */
#define JMES_NEST_MAX 256u
/* Deepest JSON value the evaluator walks (comparisons, to_string, the
 * result); jansson's own parser stops at 2048. */
#define JMES_DATA_DEPTH_MAX 4096u
/* Units of work one search may spend: one per node evaluated, per element
 * visited, per value compared or written, and one more per 64 bytes of
 * string compared, scanned or copied (comparing a string object with itself
 * reads nothing).  Far above any real query over a KMS response; it stops
 * expressions whose work grows exponentially with their length
 * (`[@,@]|[@,@]|...` followed by flattens), also when what is repeated is a
 * long string rather than many values. */
#define JMES_STEPS_MAX (32u * 1024u * 1024u)
/* Largest string a function may build (to_string, join), in bytes. */
#define JMES_STRING_MAX (64u * 1024u * 1024u)
/* Bytes of string one search may build in all (to_string, join, reverse,
 * keys, to_number's copy), counted as they are built and never given back:
 * a string that is built and dropped may still be referenced elsewhere, and
 * this is what keeps `map(&to_string([@]), ...)` over a long string from
 * holding gigabytes between steps. */
#define JMES_BUILD_MAX (256u * 1024u * 1024u)
/* Largest result, counted as its compact JSON text would be (values shared
 * by reference are counted each time they appear), in bytes. */
#define JMES_RESULT_MAX (256u * 1024u * 1024u)

/* What went wrong.  The names the compliance suite uses are given by
 * jmes_error_kind_name. */
typedef enum jmes_error_kind {
  JMES_ERR_NONE = 0,
  JMES_ERR_SYNTAX,           /* the expression does not parse: "syntax" */
  JMES_ERR_INVALID_TYPE,     /* a function got an argument of the wrong type: "invalid-type" */
  JMES_ERR_INVALID_VALUE,    /* a slice step of 0: "invalid-value" */
  JMES_ERR_INVALID_ARITY,    /* a function called with too few or too many arguments */
  JMES_ERR_UNKNOWN_FUNCTION, /* a call of a function that does not exist */
  JMES_ERR_RESOURCE,         /* a cap above was reached, or memory ran out */
} jmes_error_kind;

/* Filled by a failing jmes_compile or jmes_search.  `status.msg` is one
 * line for the user; for a syntax error it reads "Bad jmespath expression:
 * ..." and names the byte offset and what was expected there. */
typedef struct jmes_error {
  jmes_error_kind kind;
  size_t offset;  /* syntax errors: byte offset in the expression; else 0 */
  kerr status;    /* code (as returned) and message */
} jmes_error;

/* A compiled expression: immutable, so one may be searched from several
 * threads at once. */
typedef struct jmes_expr jmes_expr;

/* Compile the NUL-terminated `expr`.  On success *out is a new expression
 * the caller owns (jmes_free).  On failure *out is NULL, `err` (may be NULL)
 * is filled and the code returned is KERR_VALIDATION for a bad expression
 * (kinds SYNTAX, INVALID_VALUE, INVALID_ARITY, UNKNOWN_FUNCTION, RESOURCE for
 * a too long or too deeply nested one) or KERR_INTERNAL when memory ran out
 * (kind RESOURCE).  Function names and argument counts are checked here, so
 * an expression that compiles fails at search time only on the data. */
kerr_code jmes_compile(const char *expr, jmes_expr **out, jmes_error *err);

/* Evaluate `e` against `data` (borrowed; not modified).  On success
 * *result is a new reference the caller owns (json_decref); a null result is
 * json_null().  The result may share values with `data` by reference.
 * On failure *result is NULL, `err` (may be NULL) is filled, and the code is
 * KERR_VALIDATION (kinds INVALID_TYPE, INVALID_VALUE, RESOURCE for a cap) or
 * KERR_INTERNAL (out of memory, kind RESOURCE). */
kerr_code jmes_search(const jmes_expr *e, json_t *data, json_t **result, jmes_error *err);

/* jmes_search with a work budget of `max_steps` units instead of
 * JMES_STEPS_MAX (0 means JMES_STEPS_MAX): for callers that want a query to
 * give up sooner, and for tests of the budget. */
kerr_code jmes_search_bounded(const jmes_expr *e, json_t *data, size_t max_steps, json_t **result,
                              jmes_error *err);

/* Budgets of one search; 0 in a field means its default. */
typedef struct jmes_limits {
  size_t max_steps; /* units of work; default JMES_STEPS_MAX */
  size_t max_build; /* bytes of string built; default JMES_BUILD_MAX */
} jmes_limits;

/* jmes_search with the budgets in `limits` (NULL: all defaults). */
kerr_code jmes_search_limited(const jmes_expr *e, json_t *data, const jmes_limits *limits,
                              json_t **result, jmes_error *err);

/* Free an expression; NULL is allowed. */
void jmes_free(jmes_expr *e);

/* The compliance suite's name for a kind ("syntax", "invalid-type", ...);
 * "resource" and "none" for the two it does not know.  Static storage. */
const char *jmes_error_kind_name(jmes_error_kind kind);

#endif
