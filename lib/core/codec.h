/* codec.h - base64 (RFC 4648 standard alphabet, padded) and lowercase hex.
 *
 * Decoders are strict: they reject bad characters, bad padding and
 * non-canonical trailing bits, because every decoded input comes from outside. */
#ifndef KMSD_CORE_CODEC_H
#define KMSD_CORE_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Bytes needed to hold the base64 text of `n` bytes, including the NUL. */
size_t b64_encoded_size(size_t n);

/* Encode `n` bytes into `out` (b64_encoded_size(n) bytes); NUL-terminates.
 * Returns the text length. */
size_t b64_encode(const uint8_t *in, size_t n, char *out);

/* Upper bound of the decoded size of `len` base64 characters. */
size_t b64_decoded_max(size_t len);

/* Decode `len` characters of `in` into `out` (b64_decoded_max(len) bytes).
 * Returns 0 and sets *out_len, or -1 on any malformed input. */
int b64_decode(const char *in, size_t len, uint8_t *out, size_t *out_len);

/* Lowercase hex of `n` bytes into `out` (2n+1 bytes, NUL-terminated). */
void hex_encode(const uint8_t *in, size_t n, char *out);

/* Decode exactly 2n hex digits (either case) into n bytes; -1 if malformed. */
int hex_decode(const char *in, size_t len, uint8_t *out, size_t *out_len);

#endif
