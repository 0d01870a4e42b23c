/* secmem.h - allocations that hold secrets (key material, plaintexts,
 * passwords).  They are wiped before they are freed, so a secret does not
 * linger in freed heap memory. */
#ifndef KMSD_CORE_SECMEM_H
#define KMSD_CORE_SECMEM_H

#include <stddef.h>
#include <stdint.h>

/* A length-carrying byte buffer. `data` is owned by whoever holds the struct. */
typedef struct kbytes {
  uint8_t *data;
  size_t len;
} kbytes;

/* Overwrite `n` bytes at `p` with zeros in a way the compiler keeps. */
void secure_wipe(void *p, size_t n);

/* Allocate `n` zeroed bytes for a secret (n may be 0: a 1-byte allocation).
 * Returns NULL on failure. Free with secure_free(p, n). */
void *secure_alloc(size_t n);

/* Wipe `n` bytes at `p` then free it. NULL is allowed. */
void secure_free(void *p, size_t n);

/* Wipe and free b->data, then zero the struct. NULL or empty is allowed. */
void kbytes_wipe_free(kbytes *b);

/* Constant-time comparison of two equal-length buffers; 0 when equal. */
int secure_memcmp(const void *a, const void *b, size_t n);

#endif
