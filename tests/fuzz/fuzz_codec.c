/* fuzz_codec.c - libFuzzer target for the strict base64 and hex codecs
 * (core/codec.h), which decode every blob and every hex field that reaches
 * kmsd from outside.
 *
 * The first input byte picks a property; the rest is the text or the bytes:
 *   0  base64 text: a decode that succeeds must re-encode to exactly the same
 *      text (the decoder claims to accept canonical input only) and fit in
 *      b64_decoded_max;
 *   1  bytes: encode then decode gives the bytes back, with the advertised
 *      encoded length;
 *   2  hex text: a decode that succeeds re-encodes to the lowercased text;
 *   3  bytes: hex encode then decode gives the bytes back.
 * Every buffer is an exact-size heap allocation so ASan sees any overrun. */
#include <ctype.h>
#include <string.h>

#include "core/codec.h"
#include "fuzz_common.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";

static void check_b64_text(const uint8_t *in, size_t n) {
  char *text = malloc(n ? n : 1);
  size_t cap = b64_decoded_max(n), out_len = (size_t)-1;
  uint8_t *out = malloc(cap);
  if (!text || !out) abort();
  memcpy(text, in, n);
  if (b64_decode(text, n, out, &out_len) == 0) {
    char *again;
    FUZZ_CHECK(out_len <= cap, "decoded length within b64_decoded_max");
    FUZZ_CHECK(n % 4 == 0, "accepted base64 has a length that is a multiple of 4");
    FUZZ_CHECK(out_len == n / 4 * 3 - (n && text[n - 1] == '=') - (n > 1 && text[n - 2] == '='),
               "decoded length matches the padding");
    again = malloc(b64_encoded_size(out_len));
    if (!again) abort();
    FUZZ_CHECK(b64_encode(out, out_len, again) == n, "re-encoded length equals the input length");
    FUZZ_CHECK(memcmp(again, text, n) == 0, "accepted base64 is canonical: it re-encodes identically");
    free(again);
  }
  free(text);
  free(out);
}

static void check_b64_bytes(const uint8_t *in, size_t n) {
  size_t enc_size = b64_encoded_size(n), len, cap, out_len = 0;
  char *text = malloc(enc_size);
  uint8_t *out;
  if (!text) abort();
  len = b64_encode(in, n, text);
  FUZZ_CHECK(len + 1 == enc_size, "b64_encoded_size is exact");
  FUZZ_CHECK(strlen(text) == len, "encoded text is NUL-terminated at its length");
  for (size_t i = 0; i < len; i++)
    FUZZ_CHECK(strchr(b64_alphabet, text[i]) != NULL, "encoder emits only the standard alphabet");
  cap = b64_decoded_max(len);
  out = malloc(cap);
  if (!out) abort();
  FUZZ_CHECK(b64_decode(text, len, out, &out_len) == 0, "own encoding decodes");
  FUZZ_CHECK(out_len == n && memcmp(out, in, n) == 0, "encode/decode round-trips");
  free(out);
  free(text);
}

static void check_hex_text(const uint8_t *in, size_t n) {
  char *text = malloc(n ? n : 1), *again;
  uint8_t *out = malloc(n / 2 + 1);
  size_t out_len = 0;
  if (!text || !out) abort();
  memcpy(text, in, n);
  if (hex_decode(text, n, out, &out_len) == 0) {
    FUZZ_CHECK(out_len * 2 == n, "hex decodes two digits per byte");
    again = malloc(2 * out_len + 1);
    if (!again) abort();
    hex_encode(out, out_len, again);
    for (size_t i = 0; i < n; i++)
      FUZZ_CHECK(again[i] == (char)tolower((unsigned char)text[i]), "accepted hex re-encodes lowercased");
    free(again);
  }
  free(text);
  free(out);
}

static void check_hex_bytes(const uint8_t *in, size_t n) {
  char *text = malloc(2 * n + 1);
  uint8_t *out = malloc(n ? n : 1);
  size_t out_len = 0;
  if (!text || !out) abort();
  hex_encode(in, n, text);
  FUZZ_CHECK(strlen(text) == 2 * n, "hex text is two digits per byte");
  for (size_t i = 0; i < 2 * n; i++)
    FUZZ_CHECK(isdigit((unsigned char)text[i]) || (text[i] >= 'a' && text[i] <= 'f'),
               "hex encoder emits lowercase digits");
  FUZZ_CHECK(hex_decode(text, 2 * n, out, &out_len) == 0, "own hex decodes");
  FUZZ_CHECK(out_len == n && memcmp(out, in, n) == 0, "hex round-trips");
  free(text);
  free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  switch (data[0] & 3) {
    case 0: check_b64_text(data + 1, size - 1); break;
    case 1: check_b64_bytes(data + 1, size - 1); break;
    case 2: check_hex_text(data + 1, size - 1); break;
    case 3: check_hex_bytes(data + 1, size - 1); break;
  }
  return 0;
}
