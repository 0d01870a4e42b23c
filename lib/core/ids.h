/* ids.h - random bytes and the identifiers kmsd hands out (key ids, request
 * ids, key store ids).  All randomness comes from OpenSSL's CSPRNG. */
#ifndef KMSD_CORE_IDS_H
#define KMSD_CORE_IDS_H

#include <stddef.h>
#include <stdint.h>

#define UUID_STR_LEN 37 /* 36 characters plus NUL */

/* Fill `out` with `n` cryptographically random bytes; 0 on success, -1 if the
 * generator failed (the caller must treat that as an internal error). */
int rand_bytes(uint8_t *out, size_t n);

/* A random (version 4) UUID in lowercase, e.g. 1234abcd-12ab-34cd-56ef-1234567890ab. */
int uuid_v4(char out[UUID_STR_LEN]);

/* `n` random lowercase hex digits into out (n+1 bytes). */
int rand_hex(char *out, size_t n);

#endif
