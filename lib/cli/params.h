/* params.h - the `kms` command line's parameters: the tokens after a command
 * name turned into the operation's JSON request, as the AWS CLI version 2
 * builds it from the AWS model.
 *
 * Users paste commands written for the AWS CLI, so an option's name, the
 * syntax of its value and every refusal must be the AWS CLI's:
 *   - each input member is an option `--kebab-case-name` (cli_kebab_name);
 *     a boolean member is a flag `--name` and its negation `--no-name`;
 *   - options are read as the AWS CLI's argument parser reads them: `--x v`
 *     and `--x=v`, an unambiguous prefix of a name stands for it, a token
 *     that starts with `-` is an option unless it looks like a negative
 *     number or holds a space, `--` ends the options, and an option given
 *     twice keeps its last value (the AWS CLI does not refuse it).  The
 *     AWS CLI matches the global options' prefixes first, so the caller
 *     resolves those before it hands the rest over (`--no` is ambiguous
 *     there, between --no-paginate and --no-verify-ssl);
 *   - a list option takes every value up to the next option, none included
 *     (`--grant-tokens a b c`; `--grant-tokens` alone is []), or one JSON
 *     array, or for structures several JSON objects; structures, maps and
 *     lists of structures take JSON or shorthand (lib/cli/shorthand.h),
 *     converted by the model as the AWS CLI converts them (a lone value
 *     where a list is wanted becomes a one-item list, digits become
 *     integers, "true" a boolean);
 *   - any value may be `file://PATH` (UTF-8 text) or `fileb://PATH` (bytes,
 *     for blobs), read here, at most CLI_PARAMS_MAX_FILE bytes;
 *   - blobs are base64 text by default (version 2's rule; version 1 took
 *     raw text) or raw text with `--cli-binary-format raw-in-base64-out`;
 *     timestamps are ISO 8601 or epoch seconds.
 * The request is the wire form: blobs base64, timestamps epoch seconds.
 * A value of the wrong type is passed through as it is: the caller then
 * checks the request with cli_validate_request (lib/cli/validate.h), as the
 * AWS SDK's client-side validation checks it, and exits 252 on its report.
 *
 * Exit codes are version 2's: 2 for what the argument parser refuses (a
 * required option missing, an option without its value, an ambiguous
 * prefix, a value after a flag), 252 for everything else (unknown options,
 * a value that does not parse, bad base64; and parameter validation, which
 * is the caller's).  Version 1 answers 255
 * where version 2 answers 252; the messages are the same.
 *
 * Known differences, on purpose or by nature: a JSON syntax error is worded
 * by jansson, not by Python's json module ("Invalid JSON: <reason>\nJSON
 * received: <value>" keeps the AWS CLI's frame); an integer beyond 64 bits
 * is refused here (Python has no limit; the server would refuse it); JSON
 * true/false is not an integer here (Python's bool is one); base64 is read
 * strictly (the standard alphabet, padded; no whitespace).
 *
 * Secrets: a value of a sensitive shape (Plaintext, KeyStorePassword, ...)
 * is never quoted in a message, where the AWS CLI would quote it. */
#ifndef KMSD_CLI_PARAMS_H
#define KMSD_CLI_PARAMS_H

#include <stddef.h>

#include <jansson.h>

#include "core/kerr.h"
#include "model/model.h"

/* Largest file read through file:// or fileb://, in bytes.  KMS's largest
 * text parameter is a 32 KiB key policy; a key material blob is 6 KiB. */
#define CLI_PARAMS_MAX_FILE (1024u * 1024u)
/* Largest request built, serialized as compact JSON, in bytes. */
#define CLI_PARAMS_MAX_REQUEST (4u * 1024u * 1024u)
/* Deepest nesting of objects and arrays in a value (JSON or cli_input). */
#define CLI_PARAMS_MAX_DEPTH 32u
/* Most entries in one list or map. */
#define CLI_PARAMS_MAX_ITEMS 10000u
/* Most tokens read after the command name. */
#define CLI_PARAMS_MAX_ARGS 10000

typedef struct cli_params_opts {
  int binary_raw_in_base64_out;   /* --cli-binary-format raw-in-base64-out */
  const json_t *cli_input;        /* the parsed --cli-input-json/--cli-input-yaml document, or NULL */
} cli_params_opts;

/* The exit codes of a failed build. */
#define CLI_PARAMS_EXIT_USAGE 2
#define CLI_PARAMS_EXIT_PARAM 252

/* Build op's request from argv[0..argc) (the tokens after the command name;
 * the global options and --cli-input-json/--cli-input-yaml/
 * --generate-cli-skeleton already removed by the caller).  `opts` may be
 * NULL (base64 blobs, no input document).
 *
 * cli_input is merged underneath the command line: a member given on the
 * command line replaces the document's member of the same name (top level
 * only).  With cli_input, a required member missing is left to the
 * validation (252) rather than refused by the argument parser (2), as in
 * the AWS CLI.
 *
 * On success *request is a new object owned by the caller (json_decref),
 * *exit_code is 0 and `err` is cleared.  On failure *request is NULL,
 * *exit_code is CLI_PARAMS_EXIT_USAGE or CLI_PARAMS_EXIT_PARAM and
 * err->message is the text the AWS CLI prints for it, WITHOUT any prefix:
 * for exit 2 the caller prints the usage lines and then
 * "kms: error: " MESSAGE (the AWS CLI's "aws: error: "); for 252 the caller
 * prints MESSAGE alone.  The code is KERR_VALIDATION, or KERR_INTERNAL when
 * memory ran out (exit code 255 then). */
kerr_code cli_params_build(const model_op *op, int argc, char *const argv[], const cli_params_opts *opts,
                           json_t **request, int *exit_code, kerr *err);

/* The kebab-case CLI name of a model name (operation or member), as the AWS
 * CLI forms it: a dash before each capital that follows a lowercase letter
 * or a digit, and before the last capital of a run of capitals followed by
 * a lowercase letter; all lowercase.  "CustomKeyStoreId" ->
 * "custom-key-store-id", "AWSAccountId" -> "aws-account-id".  Writes into
 * `buf` (`size` bytes, NUL-terminated) and returns it; a name that does not
 * fit is cut (callers size buf at 2 * strlen + 1). */
const char *cli_kebab_name(const char *model_name, char *buf, size_t size);

/* Find the operation of `svc` whose CLI name is `kebab` ("create-key"), or
 * NULL.  Static data. */
const model_op *cli_find_op(const model_service *svc, const char *kebab);

#endif
