/* fuzz_blob.c - libFuzzer target for the ciphertext blob parser
 * (crypto/blob.h): Decrypt and ReEncrypt hand it whatever bytes a caller
 * sends as CiphertextBlob.
 *
 * The whole input is the blob.  Invariants:
 *   - kblob_parse accepts exactly the lengths and version blob.h documents and
 *     answers KERR_INVALID_CIPHERTEXT with a message otherwise;
 *   - a parsed view points into the input at the documented offsets, and
 *     header || iv || tag || ct re-serializes to the input byte for byte, with
 *     the key id text converting back to the same 16 bytes;
 *   - kblob_open under the target's fixed key either fails cleanly with an
 *     empty plaintext or, if the input really was sealed under that key (the
 *     "sealed-*" seeds are), returns ct_len bytes; then flipping any byte of
 *     the blob must make it fail (everything is authenticated);
 *   - any input of 1..4096 bytes sealed as a plaintext parses and opens back
 *     to itself, and does not open under a different encryption context. */
#include <string.h>

#include "crypto/blob.h"
#include "crypto/encctx.h"
#include "fuzz_common.h"

/* The fixed key material of the "sealed-*" seeds: bytes 0x00..0x1f. */
static uint8_t material[AESGCM_KEY_LEN];
static const uint8_t empty_ctx[4] = {0, 0, 0, 0};
static const uint8_t other_ctx[] = {0, 0, 0, 1, 0, 0, 0, 1, 'k', 0, 0, 0, 1, 'v'};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  for (size_t i = 0; i < sizeof material; i++) material[i] = (uint8_t)i;
  return 0;
}

static void check_parse(const uint8_t *data, size_t size) {
  kblob_view v;
  kerr err;
  kbytes pt = {0};
  uint8_t id_bytes[16], *copy;
  int want_ok = size > KBLOB_OVERHEAD && size <= KBLOB_OVERHEAD + KBLOB_MAX_PLAINTEXT &&
                data[0] == KBLOB_VERSION;
  kerr_code rc;

  kerr_clear(&err);
  rc = kblob_parse(data, size, &v, &err);
  if (!want_ok) {
    FUZZ_CHECK(rc == KERR_INVALID_CIPHERTEXT, "malformed blob is InvalidCiphertext");
    FUZZ_CHECK(fuzz_msg_ok(err.msg, sizeof err.msg), "error has a message");
    return;
  }
  FUZZ_CHECK(rc == KERR_OK, "well-formed blob parses");
  FUZZ_CHECK(v.header == data, "header is the blob start");
  FUZZ_CHECK(v.iv == data + KBLOB_AAD_HEADER_LEN, "iv offset");
  FUZZ_CHECK(v.tag == v.iv + AESGCM_IV_LEN, "tag offset");
  FUZZ_CHECK(v.ct == v.tag + AESGCM_TAG_LEN, "ciphertext offset");
  FUZZ_CHECK(v.ct_len == size - KBLOB_OVERHEAD, "ciphertext length");
  FUZZ_CHECK(memcmp(v.material_id, data + 17, KBLOB_MATERIAL_ID_LEN) == 0, "material id copied");
  FUZZ_CHECK(kblob_uuid_to_bytes(v.key_id, id_bytes) == 0, "key id text is a UUID");
  FUZZ_CHECK(memcmp(id_bytes, data + 1, 16) == 0, "key id text maps back to the blob's bytes");

  /* Re-serialize from the view alone. */
  copy = malloc(size);
  if (!copy) abort();
  memcpy(copy, v.header, KBLOB_AAD_HEADER_LEN);
  memcpy(copy + KBLOB_AAD_HEADER_LEN, v.iv, AESGCM_IV_LEN);
  memcpy(copy + KBLOB_AAD_HEADER_LEN + AESGCM_IV_LEN, v.tag, AESGCM_TAG_LEN);
  memcpy(copy + KBLOB_OVERHEAD, v.ct, v.ct_len);
  FUZZ_CHECK(memcmp(copy, data, size) == 0, "parsed blob re-serializes identically");

  rc = kblob_open(material, &v, empty_ctx, sizeof empty_ctx, &pt, &err);
  if (rc != KERR_OK) {
    FUZZ_CHECK(rc == KERR_INVALID_CIPHERTEXT, "a blob that does not open is InvalidCiphertext");
    FUZZ_CHECK(pt.data == NULL && pt.len == 0, "no plaintext after a failed open");
    free(copy);
    return;
  }
  FUZZ_CHECK(pt.len == v.ct_len, "plaintext length equals ciphertext length");
  kbytes_wipe_free(&pt);
  /* A genuine blob: every byte is authenticated, so any flip must fail. */
  for (size_t i = 0; i < size; i++) {
    kblob_view tv;
    copy[i] ^= 0x01;
    if (kblob_parse(copy, size, &tv, &err) == KERR_OK) {
      rc = kblob_open(material, &tv, empty_ctx, sizeof empty_ctx, &pt, &err);
      FUZZ_CHECK(rc == KERR_INVALID_CIPHERTEXT, "a tampered blob does not open");
      FUZZ_CHECK(pt.data == NULL, "no plaintext for a tampered blob");
    }
    copy[i] ^= 0x01;
  }
  rc = kblob_open(material, &v, other_ctx, sizeof other_ctx, &pt, &err);
  FUZZ_CHECK(rc == KERR_INVALID_CIPHERTEXT, "a blob does not open under another context");
  free(copy);
}

static void check_seal(const uint8_t *data, size_t size) {
  static const char key_id[] = "1234abcd-12ab-34cd-56ef-1234567890ab";
  uint8_t mid[KBLOB_MATERIAL_ID_LEN], *blob = NULL;
  size_t blob_len = 0;
  kblob_view v;
  kbytes pt = {0};
  kerr err;
  kerr_code rc;

  if (size == 0 || size > KBLOB_MAX_PLAINTEXT) return;
  memset(mid, 0xa5, sizeof mid);
  rc = kblob_seal(material, key_id, mid, empty_ctx, sizeof empty_ctx, data, size, &blob, &blob_len,
                  &err);
  FUZZ_CHECK(rc == KERR_OK, "a 1..4096 byte plaintext seals");
  FUZZ_CHECK(blob_len == size + KBLOB_OVERHEAD, "blob length is plaintext plus overhead");
  FUZZ_CHECK(kblob_parse(blob, blob_len, &v, &err) == KERR_OK, "own blob parses");
  FUZZ_CHECK(strcmp(v.key_id, key_id) == 0, "own blob names its key");
  FUZZ_CHECK(kblob_open(material, &v, empty_ctx, sizeof empty_ctx, &pt, &err) == KERR_OK,
             "own blob opens");
  FUZZ_CHECK(pt.len == size && memcmp(pt.data, data, size) == 0, "seal/open round-trips");
  kbytes_wipe_free(&pt);
  FUZZ_CHECK(kblob_open(material, &v, other_ctx, sizeof other_ctx, &pt, &err) ==
                 KERR_INVALID_CIPHERTEXT,
             "own blob does not open under another context");
  free(blob);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* An exact-size copy: ASan then catches any read past the blob's end. */
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf) abort();
  memcpy(buf, data, size);
  check_parse(buf, size);
  check_seal(buf, size);
  free(buf);
  return 0;
}
