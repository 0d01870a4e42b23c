/* aesgcm.h - AES-256-GCM sealing and opening over OpenSSL EVP.
 *
 * The one AEAD primitive of kmsd: ciphertext blobs and wrapped key material
 * both go through here, so there is exactly one place that drives EVP. */
#ifndef KMSD_CRYPTO_AESGCM_H
#define KMSD_CRYPTO_AESGCM_H

#include <stddef.h>
#include <stdint.h>

#include "core/kerr.h"

#define AESGCM_KEY_LEN 32
#define AESGCM_IV_LEN 12
#define AESGCM_TAG_LEN 16

/* Encrypt `pt_len` bytes of `pt` into `ct` (same length) under `key` and
 * `iv`, authenticating `aad` too; the 16-byte tag goes to `tag`.  `pt` may be
 * NULL when pt_len is 0.  Returns KERR_OK, or KERR_INTERNAL if OpenSSL fails
 * (then `ct` and `tag` hold no usable data). */
kerr_code aesgcm_seal(const uint8_t key[AESGCM_KEY_LEN], const uint8_t iv[AESGCM_IV_LEN],
                      const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t pt_len,
                      uint8_t *ct, uint8_t tag[AESGCM_TAG_LEN], kerr *err);

/* Decrypt and verify.  Returns KERR_OK with the plaintext in `pt` (ct_len
 * bytes), or KERR_INVALID_CIPHERTEXT when the tag does not verify (then `pt`
 * has been wiped), or KERR_INTERNAL if OpenSSL fails. */
kerr_code aesgcm_open(const uint8_t key[AESGCM_KEY_LEN], const uint8_t iv[AESGCM_IV_LEN],
                      const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t ct_len,
                      const uint8_t tag[AESGCM_TAG_LEN], uint8_t *pt, kerr *err);

#endif
