/* encctx.h - the canonical byte form of an encryption context.
 *
 * An encryption context is an unordered map of strings; to bind it as AAD it
 * needs one byte form that does not depend on the order a client sent it in:
 * entries sorted by key (bytewise), each key and value length-prefixed, so
 * no two different maps can ever serialize to the same bytes. */
#ifndef KMSD_CRYPTO_ENCCTX_H
#define KMSD_CRYPTO_ENCCTX_H

#include <stddef.h>
#include <stdint.h>

#include "core/kerr.h"

/* Largest canonical form accepted; a bigger context is refused. */
#define ENCCTX_MAX_BYTES 65536

typedef struct encctx_entry {
  const char *key;
  const char *value;
} encctx_entry;

/* Serialize `n` entries as
 *   u32be count, then per entry sorted by key: u32be klen, key, u32be vlen, value.
 * The empty context (n == 0) serializes to the 4 bytes 00 00 00 00.
 * On KERR_OK *out is a new malloc'd buffer (caller frees) of *out_len bytes.
 * Duplicate keys, NULL strings or a form above ENCCTX_MAX_BYTES ->
 * KERR_VALIDATION; *out is left NULL on any failure. `entries` is not
 * modified. */
kerr_code encctx_canonical(const encctx_entry *entries, size_t n, uint8_t **out, size_t *out_len,
                           kerr *err);

#endif
