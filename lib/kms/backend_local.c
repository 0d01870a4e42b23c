/* backend_local.c - the key-store backend of AWS_KMS keys (kms_backend.h):
 * key material made by kmsd, kept in the store wrapped under the root key,
 * unwrapped into a bounded cache of wiped memory (kmsi_material) by the
 * caller inside its transaction (uses_material), and used for AES-256-GCM
 * in this process.  No connection: a local key is always reachable, so the
 * table has no connect, disconnect or health.  The external key store
 * backend reuses encrypt and decrypt for its inner layer.
 *
 * Also the AES-GCM body layout (IV || tag || ciphertext) that the CloudHSM
 * backend shares, so a blob of either kind has the layout of crypto/blob.h. */
#include <stdlib.h>
#include <string.h>

#include "core/ids.h"
#include "core/secmem.h"
#include "crypto/aesgcm.h"
#include "crypto/blob.h"
#include "kms/kms_backend.h"
#include "kms/kms_internal.h"

kerr_code kmsi_gcm_body_new(size_t pt_len, uint8_t **body, size_t *len, kerr *err) {
  *body = NULL;
  *len = 0;
  if (pt_len == 0 || pt_len > KBLOB_MAX_PLAINTEXT)
    return kerr_set(err, KERR_VALIDATION, "Plaintext must be 1 to %d bytes.", KBLOB_MAX_PLAINTEXT);
  *body = calloc(1, AESGCM_IV_LEN + AESGCM_TAG_LEN + pt_len);
  if (!*body) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  *len = AESGCM_IV_LEN + AESGCM_TAG_LEN + pt_len;
  return KERR_OK;
}

/* A caller that did not read the material (kms_backend.h: uses_material). */
static kerr_code no_material(kerr *err) {
  return kerr_set(err, KERR_INTERNAL, "The key material for this call was not loaded.");
}

static kerr_code local_encrypt(kms_backend_conn *c, const kms_backend_ctx *ctx,
                               const kms_backend_key *k, const uint8_t *pt, size_t pt_len,
                               const uint8_t *aad, size_t aad_len, uint8_t **body,
                               size_t *body_len, kerr *err) {
  uint8_t *out = NULL;
  size_t len = 0;
  kerr_code rc;

  *body = NULL;
  *body_len = 0;
  if (!k->material) return no_material(err);
  rc = kmsi_gcm_body_new(pt_len, &out, &len, err);
  if (rc) goto out;
  if (rand_nonce(out, AESGCM_IV_LEN)) {
    rc = kerr_set(err, KERR_INTERNAL, "The random number generator failed.");
    goto out;
  }
  rc = aesgcm_seal(k->material, out, aad, aad_len, pt, pt_len,
                   out + AESGCM_IV_LEN + AESGCM_TAG_LEN, out + AESGCM_IV_LEN, err);
  if (rc) goto out;
  *body = out;
  *body_len = len;
  out = NULL;
out:
  free(out);
  return rc;
}

static kerr_code local_decrypt(kms_backend_conn *c, const kms_backend_ctx *ctx,
                               const kms_backend_key *k, const uint8_t *body, size_t body_len,
                               const uint8_t *aad, size_t aad_len, kbytes *pt, kerr *err) {
  kbytes out = {0};
  kerr_code rc;

  pt->data = NULL;
  pt->len = 0;
  if (body_len < AESGCM_IV_LEN + AESGCM_TAG_LEN)
    return kerr_set(err, KERR_INVALID_CIPHERTEXT, "The ciphertext is too short.");
  /* The caller read the material the blob names, and only if it is the
   * key's own (kmsi_material refuses others). */
  if (!k->material) return no_material(err);
  out.len = body_len - AESGCM_IV_LEN - AESGCM_TAG_LEN;
  out.data = secure_alloc(out.len ? out.len : 1);
  if (!out.data) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  rc = aesgcm_open(k->material, body, aad, aad_len, body + AESGCM_IV_LEN + AESGCM_TAG_LEN, out.len,
                   body + AESGCM_IV_LEN, out.data, err);
  if (rc) goto out;
  *pt = out;
  out.data = NULL;
  out.len = 0;
out:
  kbytes_wipe_free(&out);
  return rc;
}

static kerr_code local_random(kms_backend_conn *c, const kms_backend_ctx *ctx, uint8_t *out,
                              size_t n, kerr *err) {
  if (rand_bytes(out, n)) return kerr_set(err, KERR_INTERNAL, "The random number generator failed.");
  return KERR_OK;
}

const kms_backend kms_backend_local = {
    .type = "AWS_KMS",
    .waits_on_network = false, /* kmsd's own memory */
    .uses_material = true,
    .encrypt = local_encrypt,
    .decrypt = local_decrypt,
    .random = local_random,
};
