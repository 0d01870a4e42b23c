/* api_validate.h - validate a JSON 1.1 request body against the AWS model.
 *
 * The pipeline runs this after parsing the body and before any handler, so
 * handlers can rely on types, required members, lengths, ranges, enums and
 * patterns being what the model says.  Errors are worded exactly as AWS words
 * them, because clients and tests compare messages. */
#ifndef KMSD_API_API_VALIDATE_H
#define KMSD_API_API_VALIDATE_H

#include <jansson.h>
#include <stdint.h>

#include "core/kerr.h"
#include "model/model.h"

/* Deepest nesting of JSON containers accepted in a request body; deeper
 * bodies get KERR_SERIALIZATION instead of unbounded recursion. */
#define API_VALIDATE_MAX_DEPTH 32

/* Validate `body` against `op`'s input shape.
 *
 * Returns KERR_OK when the body is acceptable (unknown members are ignored,
 * as AWS ignores them).  Returns KERR_SERIALIZATION when the body is not a
 * JSON object, a member has the wrong JSON type, a blob is not standard
 * base64, or nesting is too deep.  Returns KERR_VALIDATION with every
 * constraint violation, in order, in AWS's wording:
 *   "2 validation errors detected: Value '' at 'keyId' failed to satisfy
 *    constraint: Member must have length greater than or equal to 1; Value
 *    null at 'plaintext' failed to satisfy constraint: Member must not be null"
 * An integer member accepts a number with a zero fraction (1.0) as that
 * integer; a fraction (1.5) is KERR_SERIALIZATION.  A string that holds a NUL
 * character (\u0000) but meets its shape's constraints is a KERR_VALIDATION
 * ("Member must not contain the NUL character (U+0000)").
 * Values of sensitive shapes and blobs are never echoed.  An operation with no
 * input shape accepts any JSON object.  Returns KERR_INTERNAL if a model
 * pattern cannot be compiled.  `body` is not modified; nothing to free; `err`
 * is filled on failure only. */
kerr_code api_validate_input(const model_op *op, const json_t *body, kerr *err);

/* Compile every pattern of `svc` (the work api_validate_input does once, on
 * first use).  Returns KERR_OK, or KERR_INTERNAL naming the first shape whose
 * pattern does not compile.  Thread-safe; compiled patterns are cached for
 * the life of the process. */
kerr_code api_validate_check_patterns(const model_service *svc, kerr *err);

/* Whether a Java-syntax pattern (as the model spells it) compiles with the
 * translation validation uses.  Returns KERR_OK, or KERR_INTERNAL with the
 * PCRE2 error and offset in `err`.  Nothing is cached; nothing to free. */
kerr_code api_validate_pattern_compiles(const char *java_pattern, kerr *err);

/* How a JSON value stands as the model's integer or long. */
typedef enum api_integral {
  API_INTEGRAL_OK,         /* an integer, or a number with no fraction (1.0, 1e3) */
  API_INTEGRAL_NOT_NUMBER, /* not a JSON number at all */
  API_INTEGRAL_FRACTION,   /* a number with a fractional part (1.5) */
  API_INTEGRAL_RANGE,      /* a number beyond the int64 range */
} api_integral;

/* Classify `v`; on API_INTEGRAL_OK *out is the integer it denotes, otherwise
 * *out is untouched.  Range checks of the member itself (int32, min, max)
 * are the caller's. */
api_integral api_validate_integral(const json_t *v, int64_t *out);

/* Whether `value` (UTF-8, `len` bytes) matches `shape`'s pattern as a Java
 * `matches()` would: the whole value.  Returns 1 on a match or when the shape
 * has no pattern, 0 when it does not match (a value that exhausts the match
 * limit counts as no match), -1 when the pattern cannot be used (it does not
 * compile, the shape is not in a known service's table, out of memory). */
int api_validate_pattern_matches(const model_shape *shape, const char *value, size_t len);

#endif
