/* jmespath_internal.h - what the three parts of the JMESPath implementation
 * share: the syntax tree the parser (jmespath_parse.c) builds, the
 * evaluator's context (jmespath_eval.c) and the table of built-in functions
 * (jmespath_func.c).  Not part of the API: only lib/cli/jmespath_*.c include
 * it. */
#ifndef KMSD_CLI_JMESPATH_INTERNAL_H
#define KMSD_CLI_JMESPATH_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>

#include <jansson.h>

#include "cli/jmespath.h"

typedef enum jmes_node_kind {
  JN_CURRENT,        /* @, and the implicit right side of a projection */
  JN_FIELD,          /* name */
  JN_LITERAL,        /* `json`, 'raw' */
  JN_SUBEXPR,        /* lhs.rhs */
  JN_INDEX_EXPR,     /* lhs[index] (rhs is a JN_INDEX or JN_SLICE) */
  JN_INDEX,          /* [n] applied to the current node */
  JN_SLICE,          /* [a:b:c] applied to the current node */
  JN_PROJECT_LIST,   /* rhs applied to each element of the array lhs */
  JN_PROJECT_VALUES, /* rhs applied to each value of the object lhs */
  JN_PROJECT_FILTER, /* rhs applied to each element of lhs where cond holds */
  JN_FLATTEN,        /* lhs with nested arrays merged one level */
  JN_PIPE,           /* lhs | rhs */
  JN_OR,             /* lhs || rhs */
  JN_AND,            /* lhs && rhs */
  JN_NOT,            /* !lhs */
  JN_COMPARE,        /* lhs <cmp> rhs */
  JN_MULTI_LIST,     /* [items...] */
  JN_MULTI_HASH,     /* {keys: items...} */
  JN_FUNCTION,       /* func(items...) */
  JN_EXPREF,         /* &lhs, only meaningful as a function argument */
} jmes_node_kind;

typedef enum jmes_cmp { JC_EQ, JC_NE, JC_LT, JC_LE, JC_GT, JC_GE } jmes_cmp;

/* A byte string that may hold NUL (a quoted identifier may say \u0000). */
typedef struct jmes_str {
  char *s;
  size_t len;
} jmes_str;

struct jmes_function;

typedef struct jmes_node jmes_node;
struct jmes_node {
  jmes_node_kind kind;
  unsigned height;             /* 1 + the tallest child: bounds recursion */
  jmes_node *lhs, *rhs, *cond; /* owned */
  jmes_node **items;           /* owned, n_items of them */
  jmes_str *keys;              /* JN_MULTI_HASH: one per item */
  size_t n_items;
  jmes_str name;               /* JN_FIELD */
  json_t *literal;             /* JN_LITERAL: owned reference */
  long long index;             /* JN_INDEX */
  long long slice[3];          /* JN_SLICE: start, stop, step */
  unsigned char slice_given[3];
  jmes_cmp cmp;                /* JN_COMPARE */
  const struct jmes_function *func; /* JN_FUNCTION */
};

struct jmes_expr {
  jmes_node *root;
};

/* One search's state: the error to fill, the work still allowed and the
 * bytes of string it may still build. */
typedef struct jmes_ctx {
  jmes_error *err;
  size_t steps_left;
  size_t build_left;
} jmes_ctx;

/* A function's argument: a value (owned by the caller of the built-in), or
 * for an expression reference the node to evaluate and no value. */
typedef struct jmes_arg {
  json_t *value;
  const jmes_node *ref;
} jmes_arg;

/* Argument type bits of a function signature. */
enum {
  JT_NUMBER = 1u << 0,
  JT_STRING = 1u << 1,
  JT_BOOLEAN = 1u << 2,
  JT_ARRAY = 1u << 3,
  JT_OBJECT = 1u << 4,
  JT_NULL = 1u << 5,
  JT_EXPREF = 1u << 6,
  JT_ARRAY_NUMBER = 1u << 7, /* an array whose elements are all numbers */
  JT_ARRAY_STRING = 1u << 8, /* an array whose elements are all strings */
  JT_ANY = JT_NUMBER | JT_STRING | JT_BOOLEAN | JT_ARRAY | JT_OBJECT | JT_NULL,
};

/* A built-in: fills *out with a new reference or fails through ctx. */
typedef kerr_code (*jmes_builtin)(jmes_ctx *ctx, const jmes_arg *args, size_t n_args, json_t **out);

typedef struct jmes_function {
  const char *name;
  size_t min_args;
  size_t max_args;          /* SIZE_MAX: variadic */
  /* The type of every argument, one entry each up to max_args; a variadic
   * function lists its min_args fixed arguments and then, at index min_args,
   * the type of every further one. */
  unsigned arg_types[3];
  jmes_builtin call;
} jmes_function;

/* ---- jmespath_func.c ---- */

/* The built-in called `name` (len bytes), or NULL. */
const jmes_function *jmes_function_find(const char *name, size_t len);

/* Evaluate the arguments of the JN_FUNCTION `n` against `cur`, check their
 * types and call it: *out gets a new reference. */
kerr_code jmes_call(jmes_ctx *ctx, const jmes_node *n, json_t *cur, json_t **out);

/* ---- jmespath_eval.c ---- */

/* Evaluate `n` with `cur` (borrowed) as the current node; *out gets a new
 * reference (json_null() for null). */
kerr_code jmes_eval(jmes_ctx *ctx, const jmes_node *n, json_t *cur, json_t **out);

/* Deep equality with numbers compared by value (1 == 1.0). */
kerr_code jmes_equal(jmes_ctx *ctx, const json_t *a, const json_t *b, int *equal);

/* Order of two numbers: <0, 0, >0. */
int jmes_number_cmp(const json_t *a, const json_t *b);

/* Order of two strings by code point (UTF-8 bytes compare that way).  Free
 * of charge: the caller spends the work (jmes_spend_bytes). */
int jmes_string_cmp(const json_t *a, const json_t *b);

/* Compact JSON text of `v` (as to_string writes it): malloc'd, NUL-
 * terminated, *len bytes; the caller frees. */
kerr_code jmes_to_json(jmes_ctx *ctx, const json_t *v, char **text, size_t *len);

/* Spend `n` units of work; fails with kind RESOURCE when none are left. */
kerr_code jmes_spend(jmes_ctx *ctx, size_t n);

/* Bytes of string data one unit of work pays for. */
#define JMES_BYTES_PER_STEP 64u

/* Spend the work of comparing, scanning or copying `bytes` bytes of string:
 * one unit, plus one per JMES_BYTES_PER_STEP bytes. */
kerr_code jmes_spend_bytes(jmes_ctx *ctx, size_t bytes);

/* Account for `bytes` bytes of string about to be built (JMES_BUILD_MAX);
 * fails with kind RESOURCE past the search's budget. */
kerr_code jmes_build(jmes_ctx *ctx, size_t bytes);

/* ---- errors (jmespath_parse.c) ---- */

/* Fill `err` (may be NULL) with `kind`, code KERR_VALIDATION and the
 * message. */
void jmes_fill(jmes_error *err, jmes_error_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fill `err` for a failed allocation: kind RESOURCE, code KERR_INTERNAL. */
void jmes_fill_oom(jmes_error *err);

/* jmes_fill, then yield KERR_VALIDATION; and the same for running out of
 * memory.  Macros, like kerr_set, so that the failure code is visible where
 * it is returned and static analysers follow failure paths correctly. */
#define jmes_fail(err, kind, ...) kerr_pass((jmes_fill((err), (kind), __VA_ARGS__), KERR_VALIDATION))
#define jmes_oom(err) kerr_pass((jmes_fill_oom(err), KERR_INTERNAL))

#endif
