/* fuzz_kms_reply.c - libFuzzer target for libkms's reply reader: the typed
 * layer's engine (client/kms_codec.h) filling an operation's output struct
 * from the JSON a server sent, which is outside input to every program that
 * uses libkms.
 *
 * The first input byte picks the operation (KMS, then the CloudHSMv2 subset,
 * by index); the rest is the reply body, parsed as kms_codec_call parses it.
 * Invariants:
 *   - a refused reply is KMS_ERR_RESPONSE with a message, and the output
 *     struct is left all zero (a half-filled one was freed);
 *   - an accepted reply encodes back to JSON, and that JSON decodes and
 *     encodes again to the same JSON (nothing the reader keeps is lost or
 *     changed by a second trip);
 *   - the free function leaves the struct all zero; LeakSanitizer sees the rest. */
#include <jansson.h>
#include <string.h>

#include "client/kms_codec.h"
#include "fuzz_common.h"

static int all_zero(const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i]) return 0;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t kms_count = 0, hsm_count = 0;
  const kms_codec_op *const *kms_ops = kms_codec_ops(KMS_SERVICE_KMS, &kms_count);
  const kms_codec_op *const *hsm_ops = kms_codec_ops(KMS_SERVICE_CLOUDHSMV2, &hsm_count);
  if (size < 1) return 0;
  size_t pick = data[0] % (kms_count + hsm_count);
  const kms_codec_op *op = pick < kms_count ? kms_ops[pick] : hsm_ops[pick - kms_count];
  const kms_codec_struct *st = op->output;

  json_t *reply = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, NULL);
  if (!reply) return 0;
  void *out = malloc(st->size);
  void *again = malloc(st->size);
  if (!out || !again) abort();
  memset(out, 0xa5, st->size);  /* decode must not rely on a zeroed struct */
  kms_error err;
  int rc = kms_codec_decode(st, reply, out, &err);
  if (rc) {
    FUZZ_CHECK(rc == KMS_ERR_RESPONSE, "a refused reply is KMS_ERR_RESPONSE");
    FUZZ_CHECK(err.kind == KMS_ERR_RESPONSE && err.message[0], "the refusal has a kind and a message");
    FUZZ_CHECK(all_zero(out, st->size), "a refused reply leaves the output zeroed");
  } else {
    json_t *first = NULL, *second = NULL;
    FUZZ_CHECK(kms_codec_encode(st, out, &first, &err) == KMS_OK, "an accepted reply encodes");
    FUZZ_CHECK(kms_codec_decode(st, first, again, &err) == KMS_OK, "the encoding decodes");
    FUZZ_CHECK(kms_codec_encode(st, again, &second, &err) == KMS_OK, "and encodes again");
    FUZZ_CHECK(json_equal(first, second), "a second trip changes nothing");
    kms_codec_free(st, again);
    FUZZ_CHECK(all_zero(again, st->size), "free zeroes the struct");
    json_decref(first);
    json_decref(second);
  }
  kms_codec_free(st, out);
  FUZZ_CHECK(all_zero(out, st->size), "free zeroes the struct");
  free(out);
  free(again);
  json_decref(reply);
  return 0;
}
