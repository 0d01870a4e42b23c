/* p11_ivbatch.c - the IV batch of p11_ivbatch.h.  IVs are taken from the
 * top of the batch, so the unused ones always sit in slots 0..left-1 and
 * every other slot has been wiped. */
#include "pkcs11/p11_ivbatch.h"

#include <string.h>

#include "core/secmem.h"

int p11_iv_batch_take(p11_iv_batch *b, uint8_t out[P11_GCM_IV_BYTES]) {
  if (b->left == 0) return 0;
  b->left--;
  memcpy(out, b->iv[b->left], P11_GCM_IV_BYTES);
  secure_wipe(b->iv[b->left], P11_GCM_IV_BYTES);
  return 1;
}

size_t p11_iv_batch_add(p11_iv_batch *b, const uint8_t *fresh, size_t count) {
  size_t room = P11_IV_BATCH - b->left;
  size_t n = count < room ? count : room;
  if (n) memcpy(b->iv[b->left], fresh, n * P11_GCM_IV_BYTES);
  b->left += n;
  return n;
}

kerr_code p11_iv_batch_next(p11_iv_batch *b, pthread_mutex_t *lock, p11_session *s,
                            uint8_t iv[P11_GCM_IV_BYTES], p11_err *pe) {
  uint8_t fresh[P11_IV_BATCH * P11_GCM_IV_BYTES];
  pthread_mutex_lock(lock);
  int taken = p11_iv_batch_take(b, iv);
  pthread_mutex_unlock(lock);
  if (taken) return KERR_OK;
  kerr_code rc = p11_random(s, fresh, sizeof fresh, pe);
  if (!rc) {
    memcpy(iv, fresh, P11_GCM_IV_BYTES);
    pthread_mutex_lock(lock);
    p11_iv_batch_add(b, fresh + P11_GCM_IV_BYTES, P11_IV_BATCH - 1);
    pthread_mutex_unlock(lock);
  }
  secure_wipe(fresh, sizeof fresh);
  return rc;
}

void p11_iv_batch_wipe(p11_iv_batch *b) {
  secure_wipe(b, sizeof *b);
  b->left = 0;
}
