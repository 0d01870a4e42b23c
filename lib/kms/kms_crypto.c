/* kms_crypto.c - the cryptographic operations on symmetric keys: Encrypt,
 * Decrypt, ReEncrypt, GenerateDataKey(WithoutPlaintext), GenerateRandom.
 *
 * Each checks in AWS's order: the request's own shape (lengths, context),
 * then the key is resolved (NotFoundException) and authorized
 * (AccessDeniedException), and only then is what the request asks of that
 * key judged: the algorithm (InvalidKeyUsageException), the key's state,
 * DryRun.  A caller who may not use a key, or names none that exists, so
 * never learns anything about it.  ReEncrypt checks both keys that way,
 * source then destination, before DryRun.  Then each key's call is prepared
 * (key_call): its backend and live connection, and the key material kmsd
 * keeps for it when the backend uses some.  The key comes from the key
 * cache or a read transaction of its own (kmsi_resolve_read), its policy
 * and material from their caches or transactions of their own: each read
 * is of the committed state at that instant, so a change committed while
 * the request is checked may show in the policy and not in the row, as if
 * it had come a moment earlier.  No transaction is open when the key's
 * backend (kms_backend.h: local material, a CloudHSM key store, an external
 * key store's proxy) seals or opens the body of a ciphertext blob
 * (lib/crypto/blob.h) whose header is made and read here, the same for
 * every backend: a proxy that answers slowly holds none of the store's
 * pooled database connections.
 * Plaintexts and materials live only in secure memory and are wiped before
 * returning.  docs/kmsd.md lists the order per operation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/secmem.h"
#include "crypto/blob.h"
#include "crypto/encctx.h"
#include "kms/kms_backend.h"
#include "kms/kms_internal.h"

#define MAX_PLAINTEXT 4096
#define MAX_CIPHERTEXT 6144
#define MAX_DATA_KEY 1024
#define MAX_CONTEXT_ENTRIES 64

static const char invalid_ciphertext_msg[] =
    "The ciphertext is invalid, was altered, or its encryption context does not match.";
static const char dry_run_msg[] = "The request would have succeeded, but the DryRun parameter was set.";

static kerr_code check_algorithm(const char *alg, kerr *err) {
  if (alg && strcmp(alg, "SYMMETRIC_DEFAULT") != 0)
    return kerr_set(err, KERR_INVALID_KEY_USAGE,
                    "The encryption algorithm %.64s is not valid for a SYMMETRIC_DEFAULT key. "
                    "Use SYMMETRIC_DEFAULT.",
                    alg);
  return KERR_OK;
}

/* Canonical AAD form of an encryption context (see encctx.h). */
static kerr_code canonical_context(const kms_pair *pairs, size_t n, uint8_t **out, size_t *len,
                                   kerr *err) {
  encctx_entry entries[MAX_CONTEXT_ENTRIES];
  if (n > MAX_CONTEXT_ENTRIES)
    return kerr_set(err, KERR_VALIDATION, "The encryption context has more than %d entries.",
                    MAX_CONTEXT_ENTRIES);
  if (n && !pairs) return kerr_set(err, KERR_VALIDATION, "The encryption context is missing.");
  for (size_t i = 0; i < n; i++) {
    entries[i].key = pairs[i].key;
    entries[i].value = pairs[i].value;
  }
  return encctx_canonical(entries, n, out, len, err);
}

static kerr_code material_id_bytes(const char *hex, uint8_t out[KBLOB_MATERIAL_ID_LEN], kerr *err) {
  size_t n = 0;
  if (strlen(hex) != 2 * KBLOB_MATERIAL_ID_LEN || hex_decode(hex, strlen(hex), out, &n) ||
      n != KBLOB_MATERIAL_ID_LEN)
    return kerr_set(err, KERR_INTERNAL, "The key has no usable key material.");
  return KERR_OK;
}

/* What a backend is told about a call on key `k` (kms_backend.h). */
static void backend_call(kms_domain *d, const kms_call *call, const char *operation,
                         const kmsi_key *k, kms_backend_ctx *ctx) {
  memset(ctx, 0, sizeof *ctx);
  ctx->d = d;
  ctx->request_id = call->request_id;
  ctx->principal_arn = call->caller->arn;
  ctx->operation = operation;
  ctx->key_arn = k->arn;
}

/* The key id the key's store knows it by: an external key store's XksKeyId,
 * else (CloudHSM) the KMS key id, which labels its key in the HSMs. */
static const char *backing_key_id(const kmsi_key *k) {
  if (!k->row.custom_key_store_id) return NULL;
  return k->row.xks_key_id ? k->row.xks_key_id : k->row.key_id;
}

/* The AAD of a blob: its header followed by the canonical context. */
static kerr_code blob_aad(const uint8_t header[KBLOB_AAD_HEADER_LEN], const uint8_t *ctx,
                          size_t ctx_len, uint8_t **aad, kerr *err) {
  *aad = malloc(KBLOB_AAD_HEADER_LEN + ctx_len);
  if (!*aad) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  memcpy(*aad, header, KBLOB_AAD_HEADER_LEN);
  if (ctx_len) memcpy(*aad + KBLOB_AAD_HEADER_LEN, ctx, ctx_len);
  return KERR_OK;
}

/* One backend call on a resolved, authorized key, prepared before it so
 * that the call itself reads nothing from the store: the key's backend and
 * live connection (held until call_end), and, for a backend that
 * uses_material, the unwrapped material in secure memory. */
typedef struct key_call {
  const kmsi_key *k;
  const kms_backend *b;
  kms_backend_conn *conn;
  bool acquired;
  uint8_t *material;                       /* secure_alloc'd, AESGCM_KEY_LEN; or NULL */
  char material_id[KMS_MATERIAL_ID_LEN];   /* hex */
  kms_backend_key bkey;
} key_call;

/* Prepare a call on key `k` with its material `material_hex` (the current
 * one to encrypt, the one the blob names to decrypt), from the material
 * cache or a read transaction of its own:
 * a store that is not connected -> KERR_INVALID_STATE; a caller that must
 * not wait on the key's backend -> KERR_WOULD_BLOCK (kmsi_may_wait: these
 * operations only read, so every check before is answered as usual and the
 * rerun changes nothing twice); a material that is not the key's ->
 * KERR_INVALID_CIPHERTEXT (kmsi_material).  call_end `kc` in every case;
 * `k` must outlive it. */
static kerr_code call_prepare(kms_domain *d, const kms_call *call, const kmsi_key *k,
                              const char *material_hex, key_call *kc, kerr *err) {
  kerr_code rc;
  memset(kc, 0, sizeof *kc);
  kc->k = k;
  snprintf(kc->material_id, sizeof kc->material_id, "%s", material_hex);
  rc = kmsi_backend_acquire(d, k, &kc->b, &kc->conn, err);
  if (rc) return rc;
  kc->acquired = true;
  rc = kmsi_may_wait(call, kc->b, k->row.custom_key_store_id, err);
  if (rc) return rc;
  if (kc->b->uses_material) {
    kc->material = secure_alloc(AESGCM_KEY_LEN);
    if (!kc->material) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
    rc = kmsi_material(d, NULL, k->row.key_id, kc->material_id, kc->material, err);
    /* The key's current material is gone only when the key is: it was
     * deleted after it was resolved (kmsi_resolve_read). */
    if (rc == KERR_INVALID_CIPHERTEXT && strcmp(material_hex, k->row.current_material_id) == 0)
      return kerr_set(err, KERR_NOT_FOUND, "Key '%s' does not exist", k->arn);
    if (rc) return rc;
  }
  kc->bkey.key_id = k->row.key_id;
  kc->bkey.backing_key_id = backing_key_id(k);
  kc->bkey.material_id = kc->material_id;
  kc->bkey.current_material_id = k->row.current_material_id;
  kc->bkey.material = kc->material;
  return KERR_OK;
}

/* Give back the connection and wipe the material.  Safe on a zeroed or
 * half-prepared `kc`. */
static void call_end(kms_domain *d, key_call *kc) {
  if (kc->acquired) kmsi_backend_release(d, kc->k, kc->conn);
  secure_free(kc->material, AESGCM_KEY_LEN);
  memset(kc, 0, sizeof *kc);
}

/* Seal `pt` with a prepared call (no transaction open): a blob
 * (crypto/blob.h) whose header names key and material and whose body the
 * key's backend makes over AAD = header || context. */
static kerr_code seal_with_key(kms_domain *d, const kms_call *call, const char *operation,
                               const key_call *kc, const uint8_t *ctx, size_t ctx_len,
                               const uint8_t *pt, size_t pt_len, uint8_t **blob, size_t *blob_len,
                               kerr *err) {
  uint8_t header[KBLOB_AAD_HEADER_LEN];
  uint8_t *aad = NULL, *body = NULL;
  size_t body_len = 0;
  kms_backend_ctx bctx;
  kerr_code rc;

  *blob = NULL;
  *blob_len = 0;
  header[0] = KBLOB_VERSION;
  if (kblob_uuid_to_bytes(kc->k->row.key_id, header + 1))
    return kerr_set(err, KERR_INTERNAL, "Malformed key id for a ciphertext blob.");
  rc = material_id_bytes(kc->material_id, header + 17, err);
  if (rc) return rc;
  rc = blob_aad(header, ctx, ctx_len, &aad, err);
  if (rc) return rc;
  backend_call(d, call, operation, kc->k, &bctx);
  rc = kc->b->encrypt(kc->conn, &bctx, &kc->bkey, pt, pt_len, aad, KBLOB_AAD_HEADER_LEN + ctx_len,
                      &body, &body_len, err);
  if (rc) goto out;
  *blob = malloc(KBLOB_AAD_HEADER_LEN + body_len);
  if (!*blob) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  memcpy(*blob, header, KBLOB_AAD_HEADER_LEN);
  memcpy(*blob + KBLOB_AAD_HEADER_LEN, body, body_len);
  *blob_len = KBLOB_AAD_HEADER_LEN + body_len;
out:
  free(aad);
  free(body);
  return rc;
}

/* The inverse, with a prepared call (no transaction open), for blob `blob`
 * (parsed into `v`).  Every blob that does not open under this key is one
 * InvalidCiphertextException. */
static kerr_code open_with_key(kms_domain *d, const kms_call *call, const char *operation,
                               const key_call *kc, const uint8_t *blob, size_t blob_len,
                               const kblob_view *v, const uint8_t *ctx, size_t ctx_len,
                               kbytes *pt, kerr *err) {
  uint8_t *aad = NULL;
  kms_backend_ctx bctx;
  kerr_code rc = blob_aad(v->header, ctx, ctx_len, &aad, err);
  if (rc) return rc;
  backend_call(d, call, operation, kc->k, &bctx);
  rc = kc->b->decrypt(kc->conn, &bctx, &kc->bkey, blob + KBLOB_AAD_HEADER_LEN,
                      blob_len - KBLOB_AAD_HEADER_LEN, aad, KBLOB_AAD_HEADER_LEN + ctx_len, pt,
                      err);
  free(aad);
  return rc;
}

/* One answer for every blob that does not open under its key: a foreign
 * or unknown material id (refused while the call is prepared), a wrong
 * context and a flipped bit must not be told apart, or the difference
 * leaks what other keys' blobs carry. */
static kerr_code same_invalid_ciphertext(kerr_code rc, kerr *err) {
  if (rc == KERR_INVALID_CIPHERTEXT) kerr_set(err, KERR_INVALID_CIPHERTEXT, "%s", invalid_ciphertext_msg);
  return rc;
}

/* ---------------------------------------------------------------- Encrypt */

void kms_encrypt_output_clear(kms_encrypt_output *o) {
  if (!o) return;
  free(o->ciphertext);
  memset(o, 0, sizeof *o);
}

kerr_code kms_op_encrypt(kms_domain *d, const kms_call *call, const kms_encrypt_input *in,
                      kms_encrypt_output *out, kerr *err) {
  kerr_code rc;
  uint8_t *ctx = NULL;
  size_t ctx_len = 0;
  kmsi_key k;
  key_call kc;

  memset(&k, 0, sizeof k);
  memset(&kc, 0, sizeof kc);
  memset(out, 0, sizeof *out);
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  if (!in->plaintext || in->plaintext_len < 1 || in->plaintext_len > MAX_PLAINTEXT)
    return kerr_set(err, KERR_VALIDATION,
                    "1 validation error detected: Value at 'plaintext' failed to satisfy "
                    "constraint: Member must have length between 1 and %d",
                    MAX_PLAINTEXT);
  rc = canonical_context(in->context, in->ncontext, &ctx, &ctx_len, err);
  if (rc) return rc;
  rc = kmsi_resolve_read(d, call, in->key_id, &KMSI_CRYPTO, &k, err);
  if (rc) goto out;
  rc = kmsi_authorize(d, NULL, call, &k, "kms:Encrypt", err);
  if (rc) goto out;
  rc = check_algorithm(in->encryption_algorithm, err);
  if (rc) goto out;
  rc = kmsi_check_state(&k, KMSI_NEED_USABLE, err);
  if (rc) goto out;
  if (in->dry_run) {
    rc = kerr_set(err, KERR_DRY_RUN, "%s", dry_run_msg);
    goto out;
  }
  rc = call_prepare(d, call, &k, k.row.current_material_id, &kc, err);
  if (rc) goto out;
  rc = seal_with_key(d, call, "Encrypt", &kc, ctx, ctx_len, in->plaintext, in->plaintext_len,
                     &out->ciphertext, &out->ciphertext_len, err);
  if (rc) goto out;
  memcpy(out->key_id, k.arn, sizeof out->key_id);
  out->encryption_algorithm = "SYMMETRIC_DEFAULT";
out:
  call_end(d, &kc);
  free(ctx);
  kmsi_key_clear(&k);
  if (rc) kms_encrypt_output_clear(out);
  return rc;
}

/* ---------------------------------------------------------------- Decrypt */

/* The checks of the decrypting half shared by Decrypt and ReEncrypt (keys
 * resolved by kmsi_resolve_read): resolve an explicit key id, parse the
 * blob, resolve the blob's key (or check the explicit one against it),
 * authorize `action`, check `algorithm` and the key's state, then DryRun
 * when `dry_run`.  On KERR_OK *k is the source key, *v the parsed blob
 * (pointing into `blob`), *ctx (free) and *ctx_len the canonical context,
 * material_hex the material the blob names. */
static kerr_code check_blob(kms_domain *d, const kms_call *call,
                            const uint8_t *blob, size_t blob_len, const kms_pair *pairs,
                            size_t npairs, const char *key_id, const char *algorithm,
                            const char *action, bool dry_run, kmsi_key *k, kblob_view *v,
                            uint8_t **ctx, size_t *ctx_len, char material_hex[KMS_MATERIAL_ID_LEN],
                            kerr *err) {
  kerr_code rc;

  *ctx = NULL;
  *ctx_len = 0;
  if (!blob || blob_len < 1 || blob_len > MAX_CIPHERTEXT)
    return kerr_set(err, KERR_VALIDATION,
                    "1 validation error detected: Value at 'ciphertextBlob' failed to satisfy "
                    "constraint: Member must have length between 1 and %d",
                    MAX_CIPHERTEXT);
  rc = canonical_context(pairs, npairs, ctx, ctx_len, err);
  if (rc) return rc;
  /* A key the caller names is looked up before the blob is read: a key that
   * does not exist is NotFoundException whatever the blob holds (an RSA
   * ciphertext, say, is no kmsd blob at all). */
  if (key_id) {
    rc = kmsi_resolve_read(d, call, key_id, &KMSI_CRYPTO, k, err);
    if (rc) return rc;
  }
  rc = kblob_parse(blob, blob_len, v, err);
  if (rc) return rc;
  if (key_id) {
    if (strcmp(k->row.key_id, v->key_id) != 0)
      return kerr_set(err, KERR_INCORRECT_KEY,
                      "The key ID in the request does not identify a KMS key that can perform "
                      "this operation.");
  } else {
    rc = kmsi_resolve_read(d, call, v->key_id, &KMSI_BLOB, k, err);
    if (rc) return rc;
  }
  rc = kmsi_authorize(d, NULL, call, k, action, err);
  if (rc) return rc;
  rc = check_algorithm(algorithm, err);
  if (rc) return rc;
  rc = kmsi_check_state(k, KMSI_NEED_USABLE, err);
  if (rc) return rc;
  if (dry_run) return kerr_set(err, KERR_DRY_RUN, "%s", dry_run_msg);
  hex_encode(v->material_id, KBLOB_MATERIAL_ID_LEN, material_hex);
  return KERR_OK;
}

void kms_decrypt_output_clear(kms_decrypt_output *o) {
  if (!o) return;
  kbytes_wipe_free(&o->plaintext);
  memset(o, 0, sizeof *o);
}

kerr_code kms_op_decrypt(kms_domain *d, const kms_call *call, const kms_decrypt_input *in,
                      kms_decrypt_output *out, kerr *err) {
  kerr_code rc;
  kmsi_key k;
  kblob_view v;
  key_call kc;
  uint8_t *ctx = NULL;
  size_t ctx_len = 0;

  memset(&k, 0, sizeof k);
  memset(&kc, 0, sizeof kc);
  memset(out, 0, sizeof *out);
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  rc = check_blob(d, call, in->ciphertext, in->ciphertext_len, in->context, in->ncontext,
                  in->key_id, in->encryption_algorithm, "kms:Decrypt", in->dry_run, &k, &v, &ctx,
                  &ctx_len, out->key_material_id, err);
  if (rc) goto out;
  rc = same_invalid_ciphertext(call_prepare(d, call, &k, out->key_material_id, &kc, err), err);
  if (rc) goto out;
  rc = same_invalid_ciphertext(open_with_key(d, call, "Decrypt", &kc, in->ciphertext,
                                             in->ciphertext_len, &v, ctx, ctx_len,
                                             &out->plaintext, err),
                               err);
  if (rc) goto out;
  memcpy(out->key_id, k.arn, sizeof out->key_id);
  out->encryption_algorithm = "SYMMETRIC_DEFAULT";
out:
  call_end(d, &kc);
  free(ctx);
  kmsi_key_clear(&k);
  if (rc) kms_decrypt_output_clear(out);
  return rc;
}

/* -------------------------------------------------------------- ReEncrypt */

void kms_reencrypt_output_clear(kms_reencrypt_output *o) {
  if (!o) return;
  free(o->ciphertext);
  memset(o, 0, sizeof *o);
}

/* Both keys are resolved, authorized and judged, source then destination,
 * before DryRun and before anything is opened (docs/kmsd.md, "Order of
 * checks"); both calls are prepared before the source's backend opens the
 * blob and the destination's seals the plaintext.  Each key is read as
 * committed when it is resolved (kmsi_resolve_read), as two requests
 * would read them. */
kerr_code kms_reencrypt(kms_domain *d, const kms_call *call, const kms_reencrypt_input *in,
                        kms_reencrypt_output *out, kerr *err) {
  kerr_code rc;
  kmsi_key src, dst;
  kblob_view v;
  key_call from, to;
  kbytes pt = {0};
  uint8_t *ctx = NULL, *src_ctx = NULL;
  size_t ctx_len = 0, src_ctx_len = 0;

  memset(&src, 0, sizeof src);
  memset(&dst, 0, sizeof dst);
  memset(&from, 0, sizeof from);
  memset(&to, 0, sizeof to);
  memset(out, 0, sizeof *out);
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  if (!in->destination_key_id)
    return kerr_set(err, KERR_VALIDATION, "DestinationKeyId is required.");
  rc = canonical_context(in->destination_context, in->ndestination_context, &ctx, &ctx_len, err);
  if (rc) return rc;
  /* DryRun is honoured only after both keys passed every check. */
  rc = check_blob(d, call, in->ciphertext, in->ciphertext_len, in->source_context,
                  in->nsource_context, in->source_key_id, in->source_encryption_algorithm,
                  "kms:ReEncryptFrom", false, &src, &v, &src_ctx, &src_ctx_len,
                  out->source_key_material_id, err);
  if (rc) goto out;
  rc = kmsi_resolve_read(d, call, in->destination_key_id, &KMSI_CRYPTO, &dst, err);
  if (rc) goto out;
  rc = kmsi_authorize(d, NULL, call, &dst, "kms:ReEncryptTo", err);
  if (rc) goto out;
  rc = check_algorithm(in->destination_encryption_algorithm, err);
  if (rc) goto out;
  rc = kmsi_check_state(&dst, KMSI_NEED_USABLE, err);
  if (rc) goto out;
  if (in->dry_run) {
    rc = kerr_set(err, KERR_DRY_RUN, "%s", dry_run_msg);
    goto out;
  }
  rc = same_invalid_ciphertext(
      call_prepare(d, call, &src, out->source_key_material_id, &from, err), err);
  if (rc) goto out;
  rc = call_prepare(d, call, &dst, dst.row.current_material_id, &to, err);
  if (rc) goto out;
  rc = same_invalid_ciphertext(open_with_key(d, call, "ReEncrypt", &from, in->ciphertext,
                                             in->ciphertext_len, &v, src_ctx, src_ctx_len, &pt,
                                             err),
                               err);
  if (rc) goto out;
  rc = seal_with_key(d, call, "ReEncrypt", &to, ctx, ctx_len, pt.data, pt.len, &out->ciphertext,
                     &out->ciphertext_len, err);
  if (rc) goto out;
  memcpy(out->source_key_id, src.arn, sizeof out->source_key_id);
  memcpy(out->key_id, dst.arn, sizeof out->key_id);
  out->source_encryption_algorithm = "SYMMETRIC_DEFAULT";
  out->destination_encryption_algorithm = "SYMMETRIC_DEFAULT";
  memcpy(out->destination_key_material_id, dst.row.current_material_id,
         sizeof out->destination_key_material_id);
out:
  call_end(d, &from);
  call_end(d, &to);
  kbytes_wipe_free(&pt);
  free(ctx);
  free(src_ctx);
  kmsi_key_clear(&src);
  kmsi_key_clear(&dst);
  if (rc) kms_reencrypt_output_clear(out);
  return rc;
}

/* -------------------------------------------------------- GenerateDataKey */

void kms_generate_data_key_output_clear(kms_generate_data_key_output *o) {
  if (!o) return;
  free(o->ciphertext);
  kbytes_wipe_free(&o->plaintext);
  memset(o, 0, sizeof *o);
}

static kerr_code data_key_size(const kms_generate_data_key_input *in, size_t *n, kerr *err) {
  if (in->key_spec && in->has_number_of_bytes)
    return kerr_set(err, KERR_VALIDATION,
                    "Please specify either number of bytes or key spec, but not both.");
  if (!in->key_spec && !in->has_number_of_bytes)
    return kerr_set(err, KERR_VALIDATION, "Please specify either number of bytes or key spec.");
  if (in->key_spec) {
    if (strcmp(in->key_spec, "AES_256") == 0)
      *n = 32;
    else if (strcmp(in->key_spec, "AES_128") == 0)
      *n = 16;
    else
      return kerr_set(err, KERR_VALIDATION,
                      "1 validation error detected: Value '%.64s' at 'keySpec' failed to satisfy "
                      "constraint: Member must satisfy enum value set: [AES_256, AES_128]",
                      in->key_spec);
    return KERR_OK;
  }
  if (in->number_of_bytes < 1 || in->number_of_bytes > MAX_DATA_KEY)
    return kerr_set(err, KERR_VALIDATION,
                    "1 validation error detected: Value '%d' at 'numberOfBytes' failed to satisfy "
                    "constraint: Member must have value between 1 and %d",
                    in->number_of_bytes, MAX_DATA_KEY);
  *n = (size_t)in->number_of_bytes;
  return KERR_OK;
}

static kerr_code generate_data_key(kms_domain *d, const kms_call *call,
                                   const kms_generate_data_key_input *in, bool with_plaintext,
                                   kms_generate_data_key_output *out, kerr *err) {
  kerr_code rc;
  uint8_t *ctx = NULL;
  size_t ctx_len = 0, n = 0;
  kbytes dk = {0};
  kmsi_key k;
  key_call kc;

  memset(&k, 0, sizeof k);
  memset(&kc, 0, sizeof kc);
  memset(out, 0, sizeof *out);
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  rc = data_key_size(in, &n, err);
  if (rc) return rc;
  rc = canonical_context(in->context, in->ncontext, &ctx, &ctx_len, err);
  if (rc) return rc;
  rc = kmsi_resolve_read(d, call, in->key_id, &KMSI_CRYPTO, &k, err);
  if (rc) goto out;
  rc = kmsi_authorize(d, NULL, call, &k,
                      with_plaintext ? "kms:GenerateDataKey" : "kms:GenerateDataKeyWithoutPlaintext",
                      err);
  if (rc) goto out;
  rc = kmsi_check_state(&k, KMSI_NEED_USABLE, err);
  if (rc) goto out;
  if (in->dry_run) {
    rc = kerr_set(err, KERR_DRY_RUN, "%s", dry_run_msg);
    goto out;
  }
  dk.data = secure_alloc(n);
  if (!dk.data) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  dk.len = n;
  if (rand_bytes(dk.data, n)) {
    rc = kerr_set(err, KERR_INTERNAL, "The random number generator failed.");
    goto out;
  }
  rc = call_prepare(d, call, &k, k.row.current_material_id, &kc, err);
  if (rc) goto out;
  rc = seal_with_key(d, call,
                     with_plaintext ? "GenerateDataKey" : "GenerateDataKeyWithoutPlaintext", &kc,
                     ctx, ctx_len, dk.data, dk.len, &out->ciphertext, &out->ciphertext_len, err);
  if (rc) goto out;
  memcpy(out->key_id, k.arn, sizeof out->key_id);
  memcpy(out->key_material_id, k.row.current_material_id, sizeof out->key_material_id);
  if (with_plaintext) {
    out->plaintext = dk;
    dk.data = NULL;
    dk.len = 0;
  }
out:
  call_end(d, &kc);
  kbytes_wipe_free(&dk);
  free(ctx);
  kmsi_key_clear(&k);
  if (rc) kms_generate_data_key_output_clear(out);
  return rc;
}

kerr_code kms_op_generate_data_key(kms_domain *d, const kms_call *call,
                                const kms_generate_data_key_input *in,
                                kms_generate_data_key_output *out, kerr *err) {
  return generate_data_key(d, call, in, true, out, err);
}

kerr_code kms_op_generate_data_key_without_plaintext(kms_domain *d, const kms_call *call,
                                                  const kms_generate_data_key_input *in,
                                                  kms_generate_data_key_output *out, kerr *err) {
  return generate_data_key(d, call, in, false, out, err);
}

/* --------------------------------------------------------- GenerateRandom */

kerr_code kms_op_generate_random(kms_domain *d, const kms_call *call,
                              const kms_generate_random_input *in, kbytes *out, kerr *err) {
  kms_backend_ctx bctx;
  kerr_code rc;
  out->data = NULL;
  out->len = 0;
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  rc = kmsi_authorize(d, NULL, call, NULL, "kms:GenerateRandom", err);
  if (rc) return rc;
  if (!in->has_number_of_bytes)
    return kerr_set(err, KERR_VALIDATION, "NumberOfBytes is required.");
  if (in->number_of_bytes < 1 || in->number_of_bytes > MAX_DATA_KEY)
    return kerr_set(err, KERR_VALIDATION,
                    "1 validation error detected: Value '%d' at 'numberOfBytes' failed to satisfy "
                    "constraint: Member must have value between 1 and %d",
                    in->number_of_bytes, MAX_DATA_KEY);
  /* custom key stores: the bytes come from the store's HSMs */
  if (in->custom_key_store_id)
    return kmsi_cks_random(d, call, in->custom_key_store_id, (size_t)in->number_of_bytes, out,
                           err);
  out->data = secure_alloc((size_t)in->number_of_bytes);
  if (!out->data) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  out->len = (size_t)in->number_of_bytes;
  memset(&bctx, 0, sizeof bctx);
  bctx.d = d;
  bctx.request_id = call->request_id;
  bctx.principal_arn = call->caller->arn;
  bctx.operation = "GenerateRandom";
  rc = kms_backend_local.random(NULL, &bctx, out->data, out->len, err);
  if (rc) kbytes_wipe_free(out);
  return rc;
}
