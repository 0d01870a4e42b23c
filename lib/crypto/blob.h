/* blob.h - the ciphertext blob kmsd returns from Encrypt and GenerateDataKey.
 *
 * Layout (all fixed-size fields, then the ciphertext):
 *   offset  0  1 byte   version (KBLOB_VERSION)
 *   offset  1 16 bytes  key id (the UUID's 16 bytes)
 *   offset 17 32 bytes  key material id (which rotation generation sealed it)
 *   offset 49 12 bytes  AES-GCM IV (random per blob)
 *   offset 61 16 bytes  AES-GCM tag
 *   offset 77  n bytes  ciphertext (n == plaintext length)
 * The AAD is the first 49 bytes (version, key id, material id) followed by
 * the canonical encryption context (encctx.h), so a blob moved to another
 * key, another material or another context fails to open.  Because the key
 * id travels in the blob, Decrypt needs no KeyId. */
#ifndef KMSD_CRYPTO_BLOB_H
#define KMSD_CRYPTO_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "core/ids.h"
#include "core/kerr.h"
#include "core/secmem.h"
#include "crypto/aesgcm.h"

#define KBLOB_VERSION 1
#define KBLOB_MATERIAL_ID_LEN 32
#define KBLOB_AAD_HEADER_LEN (1 + 16 + KBLOB_MATERIAL_ID_LEN)
#define KBLOB_OVERHEAD (KBLOB_AAD_HEADER_LEN + AESGCM_IV_LEN + AESGCM_TAG_LEN)
/* Largest plaintext sealed into one blob (GenerateDataKey's 1024 and
 * Encrypt's 4096 both fit). */
#define KBLOB_MAX_PLAINTEXT 4096
/* Room beyond AES-GCM's IV and tag for a backend's own body layout
 * (kms/kms_backend.h): an external key store's body also carries the
 * proxy's IV, tag and ciphertextMetadata around the inner layer. */
#define KBLOB_MAX_BODY_EXTRA 128

/* A parsed blob: pointers into the caller's buffer, valid while it lives. */
typedef struct kblob_view {
  char key_id[UUID_STR_LEN];                       /* lowercase UUID text */
  uint8_t material_id[KBLOB_MATERIAL_ID_LEN];
  const uint8_t *header;                           /* KBLOB_AAD_HEADER_LEN bytes */
  const uint8_t *iv;
  const uint8_t *tag;
  const uint8_t *ct;
  size_t ct_len;
} kblob_view;

/* Parse `len` bytes. Too short, too long, unknown version -> KERR_INVALID_CIPHERTEXT
 * (nothing is decrypted here). */
kerr_code kblob_parse(const uint8_t *blob, size_t len, kblob_view *out, kerr *err);

/* Seal `pt` under the 32-byte `material` for key `key_id` (UUID text) and
 * material `material_id`, binding the canonical context `ctx` (ctx_len
 * bytes).  On KERR_OK *blob_out is a new malloc'd buffer of *blob_len bytes
 * (caller frees; it is not secret).  Bad key id -> KERR_INTERNAL; on failure
 * *blob_out is NULL. */
kerr_code kblob_seal(const uint8_t material[AESGCM_KEY_LEN], const char *key_id,
                     const uint8_t material_id[KBLOB_MATERIAL_ID_LEN], const uint8_t *ctx,
                     size_t ctx_len, const uint8_t *pt, size_t pt_len, uint8_t **blob_out,
                     size_t *blob_len, kerr *err);

/* Open a parsed blob with `material` and the canonical context.  On KERR_OK
 * *pt_out holds the plaintext in wiped-on-free memory (kbytes_wipe_free).
 * Wrong material, context or any tampering -> KERR_INVALID_CIPHERTEXT;
 * *pt_out stays empty on failure. */
kerr_code kblob_open(const uint8_t material[AESGCM_KEY_LEN], const kblob_view *v,
                     const uint8_t *ctx, size_t ctx_len, kbytes *pt_out, kerr *err);

/* Text UUID <-> its 16 bytes. 0 on success, -1 if malformed. */
int kblob_uuid_to_bytes(const char *uuid, uint8_t out[16]);
void kblob_uuid_from_bytes(const uint8_t in[16], char out[UUID_STR_LEN]);

#endif
