/* xksp_ivbatch.h - GCM IVs from a token's random number generator, drawn
 * XKSP_IV_BATCH at a time.
 *
 * With iv_source hsm (or auto on a token with CKF_RNG) every Encrypt needs
 * 12 random bytes from the token.  One C_GenerateRandom per request cost
 * about a twentieth of the proxy's CPU time on SoftHSM2, for a few bytes;
 * asking the token for XKSP_IV_BATCH IVs at once and handing them out one
 * by one keeps every IV's randomness the token's while the module call
 * happens once per batch.  Each IV is handed out once: its slot is wiped as
 * it is taken, and xksp_iv_batch_wipe wipes whatever is left.
 *
 * Not thread-safe: the owner (one per token) serializes calls with its own
 * lock. */
#ifndef KMSD_XKSPROXY_XKSP_IVBATCH_H
#define KMSD_XKSPROXY_XKSP_IVBATCH_H

#include <stddef.h>
#include <stdint.h>

#define XKSP_IV_BYTES 12
#define XKSP_IV_BATCH 64

typedef struct xksp_iv_batch {
  uint8_t iv[XKSP_IV_BATCH][XKSP_IV_BYTES]; /* slots 0..left-1 are unused IVs; the rest are zero */
  size_t left;
} xksp_iv_batch;

/* Move one unused IV into `out` and wipe its slot: 1, or 0 (out untouched)
 * when none is left. */
int xksp_iv_batch_take(xksp_iv_batch *b, uint8_t out[XKSP_IV_BYTES]);

/* Keep as many of the `count` IVs at `fresh` (count * XKSP_IV_BYTES bytes,
 * never handed out before) as there are free slots; returns how many were
 * kept.  The caller wipes `fresh`. */
size_t xksp_iv_batch_add(xksp_iv_batch *b, const uint8_t *fresh, size_t count);

/* Wipe every slot; none is left afterwards. */
void xksp_iv_batch_wipe(xksp_iv_batch *b);

#endif
