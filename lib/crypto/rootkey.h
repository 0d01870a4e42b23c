/* rootkey.h - the root key that wraps every stored key material.
 *
 * <data-dir>/root.key holds 32 random bytes.  It is created on first start
 * (O_EXCL, mode 0600) and refused afterwards if group or others may read or
 * write it.  Key material never reaches the store in clear: it is sealed
 * with AES-256-GCM under the root key, with the key id and material id as
 * AAD so a wrapped material cannot be moved to another key or generation.
 *
 * Wrapped form (ROOTKEY_WRAPPED_LEN bytes):
 *   1 byte version (1) | 12-byte IV | 32-byte ciphertext | 16-byte tag
 * AAD: "kmsd-wrap-v1" NUL key-id NUL material-id (both as text). */
#ifndef KMSD_CRYPTO_ROOTKEY_H
#define KMSD_CRYPTO_ROOTKEY_H

#include <stddef.h>
#include <stdint.h>

#include "core/kerr.h"
#include "crypto/aesgcm.h"

#define ROOTKEY_LEN 32
#define ROOTKEY_WRAPPED_LEN (1 + AESGCM_IV_LEN + AESGCM_KEY_LEN + AESGCM_TAG_LEN)

typedef struct rootkey rootkey;

/* Load `path`, or create it if it does not exist.  On KERR_OK *out owns the
 * key in wiped-on-free memory (rootkey_free).  A file with group/other
 * permissions, of the wrong size, or not a regular file -> KERR_INTERNAL with
 * a message naming the path; *out stays NULL on failure. */
kerr_code rootkey_load_or_create(const char *path, rootkey **out, kerr *err);

/* Wipe and free. NULL is allowed. */
void rootkey_free(rootkey *rk);

/* Wrap 32 bytes of key material for (key_id, material_id) into `out`.
 * KERR_INTERNAL if OpenSSL or the RNG fails. */
kerr_code rootkey_wrap(const rootkey *rk, const char *key_id, const char *material_id,
                       const uint8_t material[AESGCM_KEY_LEN], uint8_t out[ROOTKEY_WRAPPED_LEN],
                       kerr *err);

/* Unwrap into `material` (32 bytes, caller-provided secret memory).  A wrong
 * length, version, key id, material id or root key -> KERR_INTERNAL ("stored
 * key material failed integrity check"); `material` is wiped on failure. */
kerr_code rootkey_unwrap(const rootkey *rk, const char *key_id, const char *material_id,
                         const uint8_t *wrapped, size_t wrapped_len,
                         uint8_t material[AESGCM_KEY_LEN], kerr *err);

/* The check value a store keeps to recognise its root key: a wrap (as
 * above) of 32 zero bytes bound to a label no key id can take.  It tells
 * nothing about the key, and a store opened with another root key fails to
 * open it, so a root.key from another data directory is refused at start
 * rather than at the first crypto call. */
#define ROOTKEY_CHECK_LEN ROOTKEY_WRAPPED_LEN

/* Make a fresh check value for `rk` into `out`.  KERR_INTERNAL if OpenSSL or
 * the RNG fails. */
kerr_code rootkey_check_value_make(const rootkey *rk, uint8_t out[ROOTKEY_CHECK_LEN], kerr *err);

/* Non-zero when `value` (`len` bytes) is a check value made under `rk`;
 * zero for another root key, a damaged value or a wrong length. */
int rootkey_check_value_matches(const rootkey *rk, const uint8_t *value, size_t len);

#endif
