/* blob.c - build, parse and open kmsd ciphertext blobs (format in blob.h). */
#include "crypto/blob.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/ids.h"

int kblob_uuid_to_bytes(const char *uuid, uint8_t out[16]) {
  char hex[33];
  size_t n = 0, outn = 0;
  static const int dash_at[] = {8, 13, 18, 23};

  if (!uuid || strlen(uuid) != 36) return -1;
  for (size_t i = 0, d = 0; i < 36; i++) {
    if (d < 4 && (int)i == dash_at[d]) {
      if (uuid[i] != '-') return -1;
      d++;
      continue;
    }
    hex[n++] = uuid[i];
  }
  hex[n] = '\0';
  if (hex_decode(hex, 32, out, &outn) || outn != 16) return -1;
  return 0;
}

void kblob_uuid_from_bytes(const uint8_t in[16], char out[UUID_STR_LEN]) {
  snprintf(out, UUID_STR_LEN,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", in[0], in[1],
           in[2], in[3], in[4], in[5], in[6], in[7], in[8], in[9], in[10], in[11], in[12], in[13],
           in[14], in[15]);
}

kerr_code kblob_parse(const uint8_t *blob, size_t len, kblob_view *out, kerr *err) {
  memset(out, 0, sizeof *out);
  if (!blob || len <= KBLOB_OVERHEAD || len > KBLOB_OVERHEAD + KBLOB_MAX_PLAINTEXT + KBLOB_MAX_BODY_EXTRA ||
      blob[0] != KBLOB_VERSION)
    return kerr_set(err, KERR_INVALID_CIPHERTEXT, "The ciphertext is not a valid ciphertext blob.");
  kblob_uuid_from_bytes(blob + 1, out->key_id);
  memcpy(out->material_id, blob + 17, KBLOB_MATERIAL_ID_LEN);
  out->header = blob;
  out->iv = blob + KBLOB_AAD_HEADER_LEN;
  out->tag = out->iv + AESGCM_IV_LEN;
  out->ct = out->tag + AESGCM_TAG_LEN;
  out->ct_len = len - KBLOB_OVERHEAD;
  return KERR_OK;
}

/* AAD = blob header || canonical context, in one buffer for EVP. */
static kerr_code build_aad(const uint8_t *header, const uint8_t *ctx, size_t ctx_len,
                           uint8_t **aad, size_t *aad_len, kerr *err) {
  *aad_len = KBLOB_AAD_HEADER_LEN + ctx_len;
  *aad = malloc(*aad_len);
  if (!*aad) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  memcpy(*aad, header, KBLOB_AAD_HEADER_LEN);
  if (ctx_len) memcpy(*aad + KBLOB_AAD_HEADER_LEN, ctx, ctx_len);
  return KERR_OK;
}

kerr_code kblob_seal(const uint8_t material[AESGCM_KEY_LEN], const char *key_id,
                     const uint8_t material_id[KBLOB_MATERIAL_ID_LEN], const uint8_t *ctx,
                     size_t ctx_len, const uint8_t *pt, size_t pt_len, uint8_t **blob_out,
                     size_t *blob_len, kerr *err) {
  kerr_code rc = KERR_OK;
  uint8_t *blob = NULL, *aad = NULL;
  size_t aad_len = 0, len = KBLOB_OVERHEAD + pt_len;

  *blob_out = NULL;
  *blob_len = 0;
  if (pt_len == 0 || pt_len > KBLOB_MAX_PLAINTEXT) {
    rc = kerr_set(err, KERR_VALIDATION, "Plaintext must be 1 to %d bytes.", KBLOB_MAX_PLAINTEXT);
    goto out;
  }
  blob = malloc(len);
  if (!blob) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  blob[0] = KBLOB_VERSION;
  if (kblob_uuid_to_bytes(key_id, blob + 1)) {
    rc = kerr_set(err, KERR_INTERNAL, "Malformed key id for a ciphertext blob.");
    goto out;
  }
  memcpy(blob + 17, material_id, KBLOB_MATERIAL_ID_LEN);
  if (rand_nonce(blob + KBLOB_AAD_HEADER_LEN, AESGCM_IV_LEN)) {
    rc = kerr_set(err, KERR_INTERNAL, "The random number generator failed.");
    goto out;
  }
  rc = build_aad(blob, ctx, ctx_len, &aad, &aad_len, err);
  if (rc) goto out;
  rc = aesgcm_seal(material, blob + KBLOB_AAD_HEADER_LEN, aad, aad_len, pt, pt_len,
                   blob + KBLOB_OVERHEAD, blob + KBLOB_AAD_HEADER_LEN + AESGCM_IV_LEN, err);
  if (rc) goto out;
  *blob_out = blob;
  *blob_len = len;
  blob = NULL;
out:
  free(blob);
  free(aad);
  return rc;
}

kerr_code kblob_open(const uint8_t material[AESGCM_KEY_LEN], const kblob_view *v,
                     const uint8_t *ctx, size_t ctx_len, kbytes *pt_out, kerr *err) {
  kerr_code rc = KERR_OK;
  uint8_t *aad = NULL;
  size_t aad_len = 0;
  kbytes pt = {0};

  pt_out->data = NULL;
  pt_out->len = 0;
  rc = build_aad(v->header, ctx, ctx_len, &aad, &aad_len, err);
  if (rc) goto out;
  pt.data = secure_alloc(v->ct_len);
  if (!pt.data) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  pt.len = v->ct_len;
  rc = aesgcm_open(material, v->iv, aad, aad_len, v->ct, v->ct_len, v->tag, pt.data, err);
  if (rc) goto out;
  *pt_out = pt;
  pt.data = NULL;
  pt.len = 0;
out:
  kbytes_wipe_free(&pt);
  free(aad);
  return rc;
}
