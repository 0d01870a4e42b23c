/* skeleton.h - `--generate-cli-skeleton` for the `kms` command line: the
 * templates the AWS CLI prints for an operation, built from the model.
 *
 *   input       every input member with a placeholder by type, in model
 *               order, as the AWS CLI prints it: "" for strings, the first
 *               value of an enum (the AWS CLI picks one at random), 0 for
 *               numbers, true for booleans, null for blobs,
 *               "1970-01-01T00:00:00" for timestamps, one item in a list,
 *               {"KeyName": ...} for a map;
 *   yaml-input  the same template as YAML, in the style of AWS CLI version 2:
 *               each member followed by a comment with "[REQUIRED]" when it
 *               is, the first sentence of its documentation and, for an
 *               enum, "Valid values are: A, B."; blobs are '' (base64 text)
 *               there, so that the template loads back with cli_yaml_load;
 *   output      a sample output document as AWS CLI version 1 prints it:
 *               strings hold their member's name (a list item its shape's
 *               name; a map value ""), numbers 0, booleans true, blobs null,
 *               timestamps "1970-01-01T00:00:00".  An operation without
 *               output gives an empty object.
 * Nesting is bounded (SKELETON_MAX_DEPTH) in case a model shape refers to
 * itself: deeper members are left out, as the AWS CLI leaves out a shape
 * already being generated. */
#ifndef KMSD_CLI_SKELETON_H
#define KMSD_CLI_SKELETON_H

#include <stddef.h>

#include <jansson.h>

#include "core/kerr.h"
#include "model/model.h"

#define SKELETON_MAX_DEPTH 16

/* *out: a new object the caller owns (json_decref); NULL on failure
 * (KERR_INTERNAL: out of memory, or op NULL). */
kerr_code cli_skeleton_input(const model_op *op, json_t **out, kerr *err);

/* *out: malloc'd NUL-terminated YAML text the caller frees with free();
 * *out_len its length (may be NULL).  NULL on failure. */
kerr_code cli_skeleton_yaml_input(const model_op *op, char **out, size_t *out_len, kerr *err);

/* *out: a new object the caller owns (json_decref); NULL on failure. */
kerr_code cli_skeleton_output(const model_op *op, json_t **out, kerr *err);

#endif
