/* api_json.h - typed access to JSON 1.1 request members and reply building.
 *
 * Handlers read a request body that the pipeline has already validated
 * against the AWS model, so a member present is of the right type; these
 * helpers still check types (a defence, not the validation) and answer
 * absent optional members explicitly.  Replies follow the JSON 1.1 wire
 * rules of the AWS SDKs: blobs are base64 strings, timestamps are numbers of
 * seconds since the epoch, empty optional members are left out.
 *
 * Blobs that hold secrets (plaintexts, data keys) are decoded into
 * secure_alloc memory and wiped by their owner with kbytes_wipe_free(). */
#ifndef KMSD_API_API_JSON_H
#define KMSD_API_API_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/kerr.h"
#include "core/secmem.h"

/* String member `name` of object `in`.  *out points into `in` (valid while
 * `in` lives; do not free) or is NULL when the member is absent or JSON null.
 * KERR_VALIDATION when `required` and absent, or when it is not a string;
 * *out is NULL after a failure. */
kerr_code api_json_get_str(json_t *in, const char *name, bool required, const char **out,
                           kerr *err);

/* Integer member `name`.  *present tells whether it was given; *out is left
 * untouched when absent (so callers preset the default).  KERR_VALIDATION when
 * the member is not an integer. */
kerr_code api_json_get_int(json_t *in, const char *name, bool *present, int64_t *out,
                           kerr *err);

/* Boolean member `name`; *out = `dflt` when absent.  KERR_VALIDATION when the
 * member is not a boolean. */
kerr_code api_json_get_bool(json_t *in, const char *name, bool dflt, bool *out, kerr *err);

/* Base64 blob member `name`, decoded into a secure_alloc buffer that the
 * caller frees with kbytes_wipe_free(out).  out->data is NULL and out->len 0
 * when the member is absent (KERR_VALIDATION if `required`).
 * KERR_VALIDATION when it is not a string of canonical base64; *out is empty
 * after any failure. */
kerr_code api_json_get_blob(json_t *in, const char *name, bool required, kbytes *out,
                            kerr *err);

/* Object member `name` whose values must all be strings (the model's
 * EncryptionContextType).  *out is a borrowed reference into `in` or NULL
 * when absent or empty.  KERR_VALIDATION when it is not such an object. */
kerr_code api_json_get_str_map(json_t *in, const char *name, json_t **out, kerr *err);

/* Array member `name`; *out is borrowed (or NULL when absent).
 * KERR_VALIDATION when `required` and absent, or when not an array. */
kerr_code api_json_get_list(json_t *in, const char *name, bool required, json_t **out,
                            kerr *err);

/* Set `name` to the string `value` (copied).  A NULL value leaves the member
 * out.  KERR_INTERNAL when out of memory or the value is not UTF-8. */
kerr_code api_json_set_str(json_t *out, const char *name, const char *value, kerr *err);

/* Like api_json_set_str but also leaves out an empty string: the JSON 1.1
 * rule for empty optional members. */
kerr_code api_json_set_str_opt(json_t *out, const char *name, const char *value, kerr *err);

/* Set `name` to an integer or a boolean.  KERR_INTERNAL when out of memory. */
kerr_code api_json_set_int(json_t *out, const char *name, int64_t value, kerr *err);
kerr_code api_json_set_bool(json_t *out, const char *name, bool value, kerr *err);

/* Set `name` to a timestamp given in milliseconds since the epoch: a JSON
 * number of seconds, fractional when the milliseconds are not whole seconds.
 * A value <= 0 means "no such time" and leaves the member out. */
kerr_code api_json_set_time_ms(json_t *out, const char *name, int64_t epoch_ms, kerr *err);

/* Set `name` to the base64 text of `len` bytes at `data`.  The temporary
 * text lives in secure memory and is wiped; the copy inside the JSON value
 * belongs to `out`.  len == 0 leaves the member out. */
kerr_code api_json_set_blob(json_t *out, const char *name, const uint8_t *data, size_t len,
                            kerr *err);

/* Set `name` to `value`, taking the caller's reference in every case (also
 * on failure, when the value is released).  KERR_INTERNAL when out of memory. */
kerr_code api_json_set_new(json_t *out, const char *name, json_t *value, kerr *err);

/* A new empty reply object, or KERR_INTERNAL.  The caller owns *out. */
kerr_code api_json_new_object(json_t **out, kerr *err);

#endif
