/* secmem.c - wiping allocator for secrets. */
#include "core/secmem.h"

#include <openssl/crypto.h>
#include <stdlib.h>

void secure_wipe(void *p, size_t n) {
  if (p && n) OPENSSL_cleanse(p, n);
}

void *secure_alloc(size_t n) { return calloc(1, n ? n : 1); }

void secure_free(void *p, size_t n) {
  if (!p) return;
  secure_wipe(p, n);
  free(p);
}

void kbytes_wipe_free(kbytes *b) {
  if (!b) return;
  secure_free(b->data, b->len);
  b->data = NULL;
  b->len = 0;
}

int secure_memcmp(const void *a, const void *b, size_t n) { return CRYPTO_memcmp(a, b, n); }
