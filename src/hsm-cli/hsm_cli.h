/* hsm_cli.h - pieces of hsm-cli shared between its files: reading passwords
 * without leaving them in shell history, and printing replies the way the
 * aws CLI prints them (--output json|text). */
#ifndef KMSD_HSM_CLI_H
#define KMSD_HSM_CLI_H

#include <jansson.h>
#include <stdio.h>

#include "core/kerr.h"

#define HSM_CLI_PASSWORD_MAX 1024

/* The password given as `--password VALUE` (value non-NULL; "-" means read
 * one line from standard input, without echo when it is a terminal) or as
 * `--password-file PATH` (path non-NULL; its first line).  Exactly one of the
 * two must be non-NULL.  A trailing CR/LF is removed.  On KERR_OK *out is a
 * NUL-terminated secure_alloc buffer of HSM_CLI_PASSWORD_MAX + 1 bytes the
 * caller frees with secure_free(*out, HSM_CLI_PASSWORD_MAX + 1).
 * KERR_VALIDATION when the source cannot be read, the password is empty,
 * contains a NUL, or is longer than HSM_CLI_PASSWORD_MAX; the message never
 * contains the password.  *out is NULL after a failure. */
kerr_code hsm_cli_read_password(const char *value, const char *path, char **out, kerr *err);

/* Print `reply` as the aws CLI's text output does: top-level scalars
 * tab-separated on one line in key order; each object of a list on its own
 * line, led by the list's name in capitals, values in key order; booleans
 * as True/False.  Nothing for an empty object. */
void hsm_cli_print_text(json_t *reply, FILE *out);

/* Print `reply` as indented JSON (4 spaces, keys as received), or nothing
 * for an empty object, as the aws CLI does. */
void hsm_cli_print_json(json_t *reply, FILE *out);

/* Replace every occurrence of `secret` in `text` (in place) with '*'s of the
 * same length, so a server that echoes a password cannot get it printed. */
void hsm_cli_mask(char *text, const char *secret);

#endif
