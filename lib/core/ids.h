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

/* `n` (at most RAND_NONCE_MAX) random bytes for a value that must never
 * repeat but is not secret: an AES-GCM IV.  The bytes come from the CSPRNG
 * like rand_bytes', drawn RAND_NONCE_BATCH bytes at a time into a buffer of
 * the calling thread, because one CSPRNG call per Encrypt was a twentieth
 * of its time.  A child process made by fork() never uses bytes drawn
 * before the fork (the parent might use them too).  Never use it for keys
 * or anything else that must stay secret: the batch sits in ordinary
 * memory until used.  0 on success, -1 if the generator failed. */
#define RAND_NONCE_MAX 16
#define RAND_NONCE_BATCH 1024
int rand_nonce(uint8_t *out, size_t n);

/* A random (version 4) UUID in lowercase, e.g. 1234abcd-12ab-34cd-56ef-1234567890ab. */
int uuid_v4(char out[UUID_STR_LEN]);

/* `n` random lowercase hex digits into out (n+1 bytes). */
int rand_hex(char *out, size_t n);

/* A request id shaped like a version 4 UUID, unique within the process and
 * unpredictable across processes, without a CSPRNG call per request: each
 * thread seeds a 128-bit state from the CSPRNG once, then mixes a counter
 * into it.  Request ids identify log lines; they protect nothing, so they
 * need uniqueness, not secrecy.  Never use it for key ids or anything a
 * caller must not guess.  Returns 0, or -1 if the one-time seeding failed. */
int request_id_new(char out[UUID_STR_LEN]);

#endif
