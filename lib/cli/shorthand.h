/* shorthand.h - the AWS CLI's shorthand syntax for parameter values, for the
 * `kms` command line: `--tags TagKey=env,TagValue=prod`,
 * `--grant-constraints EncryptionContextSubset={k1=v1,k2=v2}`.
 *
 * Users paste commands written for the AWS CLI, so `kms` must read a value
 * into exactly the structure the AWS CLI's purely syntactic parser builds,
 * and refuse what it refuses, with a message of the same shape.  One
 * difference on purpose: a `key@=` value that the parse drops while it
 * backtracks is never handed to the file callback, where the AWS CLI has
 * already tried to read that file (and fails the command if it cannot).  This
 * module is that syntactic parser and nothing more: it knows no model.  The
 * AWS CLI then adjusts the result with the parameter's model (a lone string
 * where the model wants a list becomes a one-element list, "true" becomes a
 * boolean, digits become numbers, document types are refused); that step
 * belongs to the caller, which holds the model.
 *
 * The grammar, as the AWS CLI reads it:
 *   parameter  = keyval *("," keyval)          whitespace around the commas
 *   keyval     = key "=" values / key "@=" values
 *   key        = *(ALPHA / DIGIT / "-" / "_" / "." / "#" / "/" / ":")  (may be empty)
 *   values     = csv-list / explicit-list / hash-literal   (nothing: "")
 *   csv-list   = first-value *("," second-value)   one value alone is a string
 *   explicit-list = "[" [item *("," item)] [","] "]"
 *   hash-literal  = "{" [key "=" item *("," key "=" item)] [","] "}"
 *   item       = explicit-list / hash-literal / first-value
 * first-value and second-value are a quoted string or a bare word; what a
 * bare word may hold, how `\,` escapes a comma, where a csv list gives up
 * and leaves the rest for the next key, how quotes are escaped, the rule on
 * a repeated key: each is described where shorthand.c implements it.
 *
 * Results are objects whose values are strings, arrays and objects only.
 * The input is outside data (whatever the user typed), so it is bounded:
 * CLI_SHORTHAND_MAX_INPUT bytes, CLI_SHORTHAND_MAX_DEPTH nested brackets;
 * past either is an error, never a crash, a hang or unbounded memory. */
#ifndef KMSD_CLI_SHORTHAND_H
#define KMSD_CLI_SHORTHAND_H

#include <stddef.h>

#include <jansson.h>

#include "core/kerr.h"

/* Longest input accepted, in bytes.  A shorthand value is typed on a command
 * line; file contents arrive through `@=` and the caller, not here. */
#define CLI_SHORTHAND_MAX_INPUT (1024u * 1024u)
/* Deepest nesting of explicit lists and hash literals: `a=[[x]]` nests 2.
 * KMS parameters nest at most 2 deep; the bound keeps the recursion bounded.
 * (The AWS CLI has no bound of its own but Python's recursion limit.) */
#define CLI_SHORTHAND_MAX_DEPTH 64u

typedef enum cli_shorthand_error_kind {
  CLI_SHORTHAND_ERR_NONE = 0,
  CLI_SHORTHAND_ERR_SYNTAX,    /* "Expected: '=', received: 'EOF' for input: ..." */
  CLI_SHORTHAND_ERR_DUPLICATE, /* "Second instance of key "a" encountered for input: ..." */
  CLI_SHORTHAND_ERR_LIMIT,     /* longer than CLI_SHORTHAND_MAX_INPUT or nested too deep */
  CLI_SHORTHAND_ERR_ENCODING,  /* not UTF-8 (the AWS CLI receives decoded text) */
  CLI_SHORTHAND_ERR_FILE,      /* the `@=` callback failed; its code and message */
  CLI_SHORTHAND_ERR_NOMEM,     /* out of memory */
} cli_shorthand_error_kind;

/* Filled by a failing cli_shorthand_parse.
 *   offset   byte offset in the input where the error was found (the AWS CLI
 *            counts characters; the caret line of the message does too);
 *   message  the whole message, as the AWS CLI words it for SYNTAX and
 *            DUPLICATE: the input, a newline, a caret under `offset`, the
 *            rest of the input's line; malloc'd and owned by the error: free
 *            it with cli_shorthand_error_free.  NULL on success and when
 *            memory ran out while building it;
 *   status   the code returned, and the message cut to KERR_MSG_MAX. */
typedef struct cli_shorthand_error {
  cli_shorthand_error_kind kind;
  size_t offset;
  char *message;
  kerr status;
} cli_shorthand_error;

/* Called for each value that follows `key@=` (a file-optional value) and
 * ends up in the result: `value` is its text after unquoting and unescaping
 * (`len` bytes, NUL-terminated, borrowed for the call).  The AWS CLI reads
 * `file://PATH` and `fileb://PATH` there and keeps any other text; the
 * callback does that, or anything else: it sets *replacement to a new
 * reference that takes the value's place (the parser owns it afterwards), or
 * leaves it NULL to keep the text.  On failure it fills `e` and returns its
 * code; the parse then fails with that code (kind CLI_SHORTHAND_ERR_FILE).
 *
 * Which values count as file-optional is the AWS CLI's rule: the `@` of the
 * key read most recently, wherever it was read.  So in `a@=[{b=c},d]` the
 * value d follows the key b, not a, and is taken as it is; in `a=[{b@=c},d]`
 * both c and d are file-optional.  An empty value written as nothing
 * (`a@=`, `a@=[,x]`'s first item) is never passed; `a@=''` is. */
typedef kerr_code (*cli_shorthand_file_fn)(void *ctx, const char *value, size_t len,
                                           json_t **replacement, kerr *e);

/* Parse the NUL-terminated `input`.  `file_fn` (may be NULL: file-optional
 * values are then kept as text) is called with `file_ctx` as described
 * above.  `out` must not be NULL (KERR_INTERNAL if it is, nothing parsed).
 * On success *out is a new object the caller owns (json_decref) and
 * `err` (may be NULL) is cleared.  On failure *out is NULL and `err` is
 * filled (release it with cli_shorthand_error_free).  `err` need not be
 * initialised: it is overwritten, and a message it held before is not freed.
 * The code is
 * KERR_VALIDATION (SYNTAX, DUPLICATE, LIMIT, ENCODING), KERR_INTERNAL
 * (NOMEM), or the callback's own code (FILE). */
kerr_code cli_shorthand_parse(const char *input, cli_shorthand_file_fn file_fn, void *file_ctx,
                              json_t **out, cli_shorthand_error *err);

/* Free the message an error owns and clear it; NULL and cleared errors are
 * fine. */
void cli_shorthand_error_free(cli_shorthand_error *err);

#endif
