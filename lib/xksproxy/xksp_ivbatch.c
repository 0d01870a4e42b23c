/* xksp_ivbatch.c - the IV batch of xksp_ivbatch.h.  IVs are taken from the
 * top of the batch, so the unused ones always sit in slots 0..left-1 and
 * every other slot has been wiped. */
#include "xksproxy/xksp_ivbatch.h"

#include <string.h>

#include "core/secmem.h"

int xksp_iv_batch_take(xksp_iv_batch *b, uint8_t out[XKSP_IV_BYTES]) {
  if (b->left == 0) return 0;
  b->left--;
  memcpy(out, b->iv[b->left], XKSP_IV_BYTES);
  secure_wipe(b->iv[b->left], XKSP_IV_BYTES);
  return 1;
}

size_t xksp_iv_batch_add(xksp_iv_batch *b, const uint8_t *fresh, size_t count) {
  size_t room = XKSP_IV_BATCH - b->left;
  size_t n = count < room ? count : room;
  if (n) memcpy(b->iv[b->left], fresh, n * XKSP_IV_BYTES);
  b->left += n;
  return n;
}

void xksp_iv_batch_wipe(xksp_iv_batch *b) {
  secure_wipe(b, sizeof *b);
  b->left = 0;
}
