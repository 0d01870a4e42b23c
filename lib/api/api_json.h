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

#include "api/api.h"
#include "core/kerr.h"
#include "core/secmem.h"
#include "kms/kms_domain.h"

/* How every request body is parsed (the pipeline and the decoder's fuzz
 * target use exactly this): duplicate member names are refused, and the
 * escape \u0000 is accepted in string values as AWS accepts it, so that a NUL
 * is judged by the member's validation (api_validate.h), not reported as
 * malformed JSON.  jansson still refuses a NUL in a member name. */
#define API_JSON_DECODE_FLAGS (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

/* How every reply is serialized (the pipeline uses exactly this): compact,
 * and JSON reals printed with 15 significant digits.  The only reals in
 * replies are timestamps (api_json_set_time_ms), and 15 digits render each of
 * them as its exact milliseconds with no binary noise, where jansson's default
 * of 17 prints 1796187467.432 as 1796187467.4319999. */
#define API_JSON_REAL_DIGITS 15
#define API_JSON_ENCODE_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(API_JSON_REAL_DIGITS))

/* json_dumps(obj, API_JSON_ENCODE_FLAGS), byte for byte, and faster for the
 * replies of the cryptographic operations: an object whose members are all
 * strings that need no escape (printable ASCII but '"' and '\\') is written
 * in one pass; anything else is jansson's.  Returns a string allocated with
 * jansson's allocator (free it with json_get_alloc_funcs' free, after
 * wiping: it may hold a plaintext) and its length in *len; NULL when out of
 * memory. */
char *api_json_dump(const json_t *obj, size_t *len);

/* String member `name` of object `in`.  *out points into `in` (valid while
 * `in` lives; do not free) or is NULL when the member is absent or JSON null.
 * KERR_VALIDATION when `required` and absent, when it is not a string, or
 * when it holds a NUL character (C strings cannot carry it; the validator
 * refuses it first for every operation of the model); *out is NULL after a
 * failure. */
kerr_code api_json_get_str(json_t *in, const char *name, bool required, const char **out,
                           kerr *err);

/* Integer member `name`: a JSON integer, or a number with no fraction (1.0)
 * as the validator accepts it.  *present tells whether it was given; *out is
 * left untouched when absent (so callers preset the default).
 * KERR_VALIDATION when the member is not such a number. */
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
 * number of seconds as AWS sends them, an integer for whole seconds, else at
 * most three decimals with no binary-float noise ("1796187467.432") once
 * serialized with API_JSON_ENCODE_FLAGS.  Times from the year 33658 on
 * (API_JSON_MAX_FRACTIONAL_MS) are sent as whole seconds, rounded down.
 * A value <= 0 means "no such time" and leaves the member out. */
#define API_JSON_MAX_FRACTIONAL_MS 1000000000000000LL
kerr_code api_json_set_time_ms(json_t *out, const char *name, int64_t epoch_ms, kerr *err);

/* Set `name` to the base64 text of `len` bytes at `data`.  The temporary
 * text lives in secure memory and is wiped; the copy inside the JSON value
 * belongs to `out`.  len == 0 leaves the member out. */
kerr_code api_json_set_blob(json_t *out, const char *name, const uint8_t *data, size_t len,
                            kerr *err);

/* Set `name` to `value`, taking the caller's reference in every case (also
 * on failure, when the value is released).  KERR_INTERNAL when out of memory. */
kerr_code api_json_set_new(json_t *out, const char *name, json_t *value, kerr *err);

/* A new reply object holding the one string member `name` (e.g. the KeyId
 * that CancelKeyDeletion and RotateKeyOnDemand answer with).  The caller
 * owns *out; on failure *out is untouched. */
kerr_code api_json_reply_str(json_t **out, const char *name, const char *value, kerr *err);

/* A new empty reply object, or KERR_INTERNAL.  The caller owns *out. */
kerr_code api_json_new_object(json_t **out, kerr *err);

/* ------------------------------------------- JSON <-> domain conversions */

/* The domain's view of who calls: borrows every field of `req`. */
kms_call api_json_call(const api_request *req);

/* Map member `name` (EncryptionContextType) as an array of kms_pair whose
 * strings point into `in`.  *out is NULL and *n 0 when absent or empty.
 * The caller frees *out with free() (the strings stay owned by `in`).
 * KERR_VALIDATION when the member is not a map of strings, KERR_INTERNAL when
 * out of memory; *out is NULL after a failure. */
kerr_code api_json_get_pairs(json_t *in, const char *name, kms_pair **out, size_t *n,
                             kerr *err);

/* List member `name` of Tag structures ({"TagKey", "TagValue"}) as kms_pair
 * (key = TagKey, value = TagValue), borrowing strings from `in`; free *out
 * with free().  KERR_VALIDATION when `required` and absent or an entry lacks
 * TagKey/TagValue; *out is NULL after a failure. */
kerr_code api_json_get_tags(json_t *in, const char *name, bool required, kms_pair **out,
                            size_t *n, kerr *err);

/* List member `name` of strings as an array of borrowed pointers; free *out
 * with free().  KERR_VALIDATION when `required` and absent or an entry is not
 * a string; *out is NULL after a failure. */
kerr_code api_json_get_str_list(json_t *in, const char *name, bool required,
                                const char ***out, size_t *n, kerr *err);

/* The Limit and Marker members of a List* request (Marker borrowed from
 * `in`; limit 0 when absent).  KERR_VALIDATION on wrong types. */
kerr_code api_json_get_list_input(json_t *in, kms_list_input *out, kerr *err);

/* Turns one element of a domain output array into a new JSON value. */
typedef kerr_code (*api_json_entry_fn)(const void *item, json_t **out, kerr *err);

/* Set `name` to a JSON array made of the `n` elements (each `size` bytes) at
 * `items`, converted by `to_json`.  On failure `out` is unchanged. */
kerr_code api_json_set_array(json_t *out, const char *name, const void *items, size_t n,
                             size_t size, api_json_entry_fn to_json, kerr *err);

/* The tail every List* reply shares: "Truncated" always, "NextMarker" only
 * when truncated and a marker is given. */
kerr_code api_json_set_list_tail(json_t *out, bool truncated, const char *next_marker,
                                 kerr *err);

/* Reject members kmsd cannot honour rather than silently ignore them:
 * a non-empty GrantTokens list (kmsd has no grants, so no token can be
 * valid: KERR_INVALID_GRANT_TOKEN) and a Recipient (attested enclave
 * delivery: KERR_UNSUPPORTED_OPERATION). */
kerr_code api_json_reject_unsupported(json_t *in, kerr *err);

/* ------------------------------------------ handler tables of each area */

/* Each handlers_<area>.c exports its table; kms_handlers.c searches them. */
extern const api_handler api_handlers_keys[];
extern const size_t api_handlers_keys_count;
extern const api_handler api_handlers_crypto[];
extern const size_t api_handlers_crypto_count;
extern const api_handler api_handlers_aliases[];
extern const size_t api_handlers_aliases_count;
extern const api_handler api_handlers_tags[];
extern const size_t api_handlers_tags_count;
extern const api_handler api_handlers_rotation[];
extern const size_t api_handlers_rotation_count;
extern const api_handler api_handlers_policies[];
extern const size_t api_handlers_policies_count;

#endif
