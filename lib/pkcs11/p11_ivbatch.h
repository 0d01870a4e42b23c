/* p11_ivbatch.h - GCM IVs from a token's random number generator, drawn
 * P11_IV_BATCH at a time.
 *
 * Every Encrypt under a key in a token (an xks-proxy key with iv_source hsm,
 * a CloudHSM key store's key) needs 12 random bytes from the token.  One
 * C_GenerateRandom per request cost about a twentieth of the CPU time on
 * SoftHSM2, for a few bytes; asking the token for P11_IV_BATCH IVs at once
 * and handing them out one by one keeps every IV's randomness the token's
 * while the module call happens once per batch.  Each IV is handed out once:
 * its slot is wiped as it is taken, and p11_iv_batch_wipe wipes whatever is
 * left.
 *
 * Not thread-safe: the owner (one per token) serializes calls with its own
 * lock. */
#ifndef KMSD_PKCS11_P11_IVBATCH_H
#define KMSD_PKCS11_P11_IVBATCH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "pkcs11/p11.h"

#define P11_IV_BATCH 64

_Static_assert(P11_IV_BATCH * P11_GCM_IV_BYTES <= P11_RANDOM_MAX, "one C_GenerateRandom fills a batch");

typedef struct p11_iv_batch {
  uint8_t iv[P11_IV_BATCH][P11_GCM_IV_BYTES]; /* slots 0..left-1 are unused IVs; the rest are zero */
  size_t left;
} p11_iv_batch;

/* Move one unused IV into `out` and wipe its slot: 1, or 0 (out untouched)
 * when none is left. */
int p11_iv_batch_take(p11_iv_batch *b, uint8_t out[P11_GCM_IV_BYTES]);

/* Keep as many of the `count` IVs at `fresh` (count * P11_GCM_IV_BYTES bytes,
 * never handed out before) as there are free slots; returns how many were
 * kept.  The caller wipes `fresh`. */
size_t p11_iv_batch_add(p11_iv_batch *b, const uint8_t *fresh, size_t count);

/* A GCM IV never used before, from the token of `s`: out of batch `b`,
 * and when that is empty one C_GenerateRandom on `s` makes a new batch,
 * made outside `lock` (which guards `b`) so that no other request waits on
 * the module; what this call does not use joins the batch.  The module's
 * refusal otherwise. */
kerr_code p11_iv_batch_next(p11_iv_batch *b, pthread_mutex_t *lock, p11_session *s,
                            uint8_t iv[P11_GCM_IV_BYTES], p11_err *pe);

/* Wipe every slot; none is left afterwards. */
void p11_iv_batch_wipe(p11_iv_batch *b);

#endif
