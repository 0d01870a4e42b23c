/* fnv.h - FNV-1a (64-bit), the one string hash of kmsd's caches.
 *
 * What picks a slot in a direct-mapped cache (resolved keys, materials,
 * policies, SigV4 signing keys, HSM working copies, the client's seen
 * tokens): fast, no allocation, good enough spread for ids and ARNs.  Not a
 * defence against chosen collisions: every cache that uses it bounds its
 * entries and checks the full key on a hit, so a collision only costs a
 * miss. */
#ifndef KMSD_CORE_FNV_H
#define KMSD_CORE_FNV_H

#include <stddef.h>
#include <stdint.h>

#define FNV1A_START 14695981039346656037ULL /* the offset basis: a fresh hash */

/* The hash `h` continued over the bytes of the string `s`.  Parts joined as
 * fnv1a_str(fnv1a_str(h, a), "\x1f") hash apart from the same bytes split
 * elsewhere, as long as no part holds the separator. */
static inline uint64_t fnv1a_str(uint64_t h, const char *s) {
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ULL;
  return h;
}

/* The hash `h` continued over `n` bytes at `p`. */
static inline uint64_t fnv1a_bytes(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
  return h;
}

#endif
