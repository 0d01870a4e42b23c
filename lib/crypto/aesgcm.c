/* aesgcm.c - AES-256-GCM with a 12-byte IV and a 16-byte tag via OpenSSL EVP.
 *
 * A fresh EVP context per call keeps the functions reentrant, and its key
 * schedule is wiped when the context is freed (none outlives the call).
 * The cipher itself is fetched once (core/evp_algs.h). */
#include "crypto/aesgcm.h"

#include <limits.h>
#include <openssl/evp.h>

#include "core/evp_algs.h"
#include "core/secmem.h"

kerr_code aesgcm_seal(const uint8_t key[AESGCM_KEY_LEN], const uint8_t iv[AESGCM_IV_LEN],
                      const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t pt_len,
                      uint8_t *ct, uint8_t tag[AESGCM_TAG_LEN], kerr *err) {
  kerr_code rc = KERR_INTERNAL;
  int len = 0;
  uint8_t fin[AESGCM_TAG_LEN];
  EVP_CIPHER_CTX *ctx = NULL;

  if (aad_len > INT_MAX || pt_len > INT_MAX) goto fail;
  ctx = EVP_CIPHER_CTX_new();
  if (!ctx) goto fail;
  if (EVP_EncryptInit_ex(ctx, evp_aes256gcm(), NULL, NULL, NULL) != 1) goto fail;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, AESGCM_IV_LEN, NULL) != 1) goto fail;
  if (EVP_EncryptInit_ex(ctx, NULL, NULL, key, iv) != 1) goto fail;
  if (aad_len && EVP_EncryptUpdate(ctx, NULL, &len, aad, (int)aad_len) != 1) goto fail;
  if (pt_len && EVP_EncryptUpdate(ctx, ct, &len, pt, (int)pt_len) != 1) goto fail;
  /* GCM is a stream mode: Final writes nothing, but wants a buffer. */
  if (EVP_EncryptFinal_ex(ctx, fin, &len) != 1) goto fail;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, AESGCM_TAG_LEN, tag) != 1) goto fail;
  rc = KERR_OK;
  goto out;
fail:
  kerr_set(err, KERR_INTERNAL, "Encryption failed in the cryptographic library.");
out:
  EVP_CIPHER_CTX_free(ctx);
  return rc;
}

kerr_code aesgcm_open(const uint8_t key[AESGCM_KEY_LEN], const uint8_t iv[AESGCM_IV_LEN],
                      const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t ct_len,
                      const uint8_t tag[AESGCM_TAG_LEN], uint8_t *pt, kerr *err) {
  kerr_code rc = KERR_INTERNAL;
  int len = 0;
  uint8_t fin[AESGCM_TAG_LEN];
  uint8_t tagcopy[AESGCM_TAG_LEN];
  EVP_CIPHER_CTX *ctx = NULL;

  if (aad_len > INT_MAX || ct_len > INT_MAX) goto fail;
  ctx = EVP_CIPHER_CTX_new();
  if (!ctx) goto fail;
  if (EVP_DecryptInit_ex(ctx, evp_aes256gcm(), NULL, NULL, NULL) != 1) goto fail;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, AESGCM_IV_LEN, NULL) != 1) goto fail;
  if (EVP_DecryptInit_ex(ctx, NULL, NULL, key, iv) != 1) goto fail;
  if (aad_len && EVP_DecryptUpdate(ctx, NULL, &len, aad, (int)aad_len) != 1) goto fail;
  if (ct_len && EVP_DecryptUpdate(ctx, pt, &len, ct, (int)ct_len) != 1) goto fail;
  /* EVP wants a mutable tag buffer. */
  for (size_t i = 0; i < AESGCM_TAG_LEN; i++) tagcopy[i] = tag[i];
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, AESGCM_TAG_LEN, tagcopy) != 1) goto fail;
  if (EVP_DecryptFinal_ex(ctx, fin, &len) != 1) {
    /* Authentication failed: never hand out unverified plaintext. */
    if (ct_len) secure_wipe(pt, ct_len);
    rc = kerr_set(err, KERR_INVALID_CIPHERTEXT, "The ciphertext failed authentication.");
    goto out;
  }
  rc = KERR_OK;
  goto out;
fail:
  if (ct_len && pt) secure_wipe(pt, ct_len);
  kerr_set(err, KERR_INTERNAL, "Decryption failed in the cryptographic library.");
out:
  EVP_CIPHER_CTX_free(ctx);
  return rc;
}
