/* validate.h - the AWS CLI's client-side parameter validation, for the `kms`
 * command line.
 *
 * Before it sends a request the AWS CLI checks it against the operation's
 * input shape and refuses it locally, with a report such as
 *
 *   Parameter validation failed:
 *   Missing required parameter in Tags[0]: "TagValue"
 *   Invalid length for parameter Tags[0].TagKey, value: 0, valid min length: 1
 *
 * Scripts written for the AWS CLI compare that text, so `kms` builds the same
 * report from lib/model's tables, line for line.  The rules, as the AWS CLI
 * applies them:
 *   - a structure reports its missing required members first (model order),
 *     then each unknown member in the order given ("Unknown parameter in
 *     input: "Foo", must be one of: <members in model order>"), then checks
 *     each known member in the order given;
 *   - types: a string wants a JSON string, an integer or long a JSON integer
 *     or boolean (a boolean is an integer to the AWS CLI), a double any
 *     number or boolean, a boolean a boolean, a list an array, a structure
 *     and a map an object.  The request is in wire form, so a blob accepts
 *     any JSON string (its base64 text) and a timestamp any number or
 *     boolean within the years 1 to 9999 (epoch seconds).  A string at a
 *     timestamp is refused as the AWS CLI refuses one it cannot read as a
 *     date: the caller turns the dates it can read into epoch seconds before
 *     this check (the AWS CLI would accept "2020-01-01" here; its date
 *     parser's leniency is not reproduced);
 *   - minimums: string length in characters (code points), list length in
 *     items, and the value of integers, longs and doubles.  Map sizes, blob
 *     lengths, maximums, patterns and enums are the server's business;
 *   - names: `input` for the request itself, `Tags[0].TagKey` below it, a
 *     map's value `EncryptionContext.k` and its key `EncryptionContext (key:
 *     k)`;
 *   - a value is printed as Python's str() prints the JSON value the AWS CLI
 *     would hold: strings bare, containers as Python literals
 *     (`{'a': [1, 2.5, None, True]}`), numbers as Python prints them.
 *
 * Differences on purpose, each one so that the report is safe and bounded:
 *   - a value of a sensitive shape (plaintexts, key store passwords, XKS
 *     credentials), or of a shape that contains one, is never printed: the
 *     report shows CLI_VALIDATE_HIDDEN in its place (a wrong-typed value
 *     there may be the secret itself).  Lengths are still printed: a count,
 *     not the text; so are None, True and False, which say nothing;
 *   - the report is at most CLI_VALIDATE_MAX_REPORT bytes: a longer one is
 *     cut at a character boundary and ends with CLI_VALIDATE_TRUNCATED;
 *   - containers printed as values are written down to CLI_VALIDATE_MAX_DEPTH
 *     levels, deeper ones as `...`; a NUL character in a string printed bare
 *     is written `\x00` so that the report stays one C string;
 *   - a request that goes deeper than CLI_VALIDATE_MAX_DEPTH levels along
 *     the model's shapes is refused with KERR_INTERNAL rather than walked
 *     without bound; only a model nesting that deep allows it (the KMS and
 *     CloudHSMv2 models nest a few levels).
 * Integers beyond int64 cannot reach this module as integers (jansson holds
 * int64); a caller that decodes them as reals gets them reported as floats. */
#ifndef KMSD_CLI_VALIDATE_H
#define KMSD_CLI_VALIDATE_H

#include <jansson.h>

#include "core/kerr.h"
#include "model/model.h"

/* Longest report, in bytes, the NUL not counted. */
#define CLI_VALIDATE_MAX_REPORT (64u * 1024u)
/* Deepest nesting walked in the model or printed in a value. */
#define CLI_VALIDATE_MAX_DEPTH 64u
/* Printed instead of a value of a sensitive shape. */
#define CLI_VALIDATE_HIDDEN "<sensitive value hidden>"
/* The last line of a report cut at CLI_VALIDATE_MAX_REPORT bytes. */
#define CLI_VALIDATE_TRUNCATED "[report truncated at 64 KiB]"

/* Check `request` against `op`'s input shape as the AWS CLI does before
 * sending.  An operation without an input shape accepts only an empty object
 * (its members are unknown parameters).  `op` and `report` must not be NULL
 * (KERR_INTERNAL if either is); a NULL `request` is JSON null.
 *
 * Returns KERR_OK when the request passes: *report is NULL.
 * Returns KERR_VALIDATION when it does not: *report is a new NUL-terminated
 * text the caller frees with free(): "Parameter validation failed:\n" and
 * one line per fault, lines separated by "\n", no newline at the end — the
 * text the AWS CLI prints after an empty line (the caller prints both
 * newlines and chooses the exit status); `err` says how many faults.
 * Returns KERR_INTERNAL when memory runs out or the walk goes too deep (see
 * above): *report is NULL.
 * `err` (may be NULL) is filled on every failure, never with a value. */
kerr_code cli_validate_request(const model_op *op, const json_t *request, char **report, kerr *err);

/* The "valid types" the AWS CLI names for a value of `type`, as in
 * "Invalid type for parameter X, value: 1, type: <class 'int'>, valid
 * types: <class 'str'>".  A static string. */
const char *cli_validate_valid_types(model_type type);

#endif
