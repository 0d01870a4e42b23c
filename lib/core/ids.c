/* ids.c - identifiers and nonces from the CSPRNG. */
#include "core/ids.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/codec.h"

int rand_bytes(uint8_t *out, size_t n) {
  if (n == 0) return 0;
  if (n > 0x7fffffff) return -1;
  return RAND_bytes(out, (int)n) == 1 ? 0 : -1;
}

/* Bumped in a child after fork(): a thread's batch drawn under another
 * generation is thrown away, so parent and child never share an IV. */
static atomic_uint fork_generation;
static pthread_once_t fork_hook_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void) { atomic_fetch_add(&fork_generation, 1); }
static void install_fork_hook(void) { pthread_atfork(NULL, NULL, on_fork_child); }

int rand_nonce(uint8_t *out, size_t n) {
  static _Thread_local uint8_t batch[RAND_NONCE_BATCH];
  static _Thread_local size_t used = RAND_NONCE_BATCH; /* empty until drawn */
  static _Thread_local unsigned generation;
  unsigned now;

  if (n > RAND_NONCE_MAX) return -1;
  pthread_once(&fork_hook_once, install_fork_hook);
  now = atomic_load(&fork_generation);
  if (now != generation || RAND_NONCE_BATCH - used < n) {
    if (rand_bytes(batch, sizeof batch)) return -1;
    used = 0;
    generation = now;
  }
  memcpy(out, batch + used, n);
  memset(batch + used, 0, n); /* handed out once */
  used += n;
  return 0;
}

int uuid_v4(char out[UUID_STR_LEN]) {
  uint8_t b[16];
  if (rand_bytes(b, sizeof b)) return -1;
  b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
  b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
  snprintf(out, UUID_STR_LEN,
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
           b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
  return 0;
}

/* splitmix64: a bijective mixer, so distinct counters give distinct outputs. */
static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

int request_id_new(char out[UUID_STR_LEN]) {
  static _Thread_local uint64_t seed[2];
  static _Thread_local uint64_t counter;
  static _Thread_local int seeded;
  if (!seeded) {
    if (rand_bytes((uint8_t *)seed, sizeof seed)) return -1;
    seeded = 1;
  }
  /* The first half is fixed per thread (distinct threads differ with
   * overwhelming probability); the second is a bijection of the counter, so
   * one thread never repeats itself. */
  uint64_t hi = seed[0], lo = mix64(seed[1] + counter++);
  uint8_t b[16];
  for (int i = 0; i < 8; i++) {
    b[i] = (uint8_t)(hi >> (56 - 8 * i));
    b[8 + i] = (uint8_t)(lo >> (56 - 8 * i));
  }
  b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
  b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
  char hex[33];
  hex_encode(b, 16, hex);
  snprintf(out, UUID_STR_LEN, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
  return 0;
}

int rand_hex(char *out, size_t n) {
  uint8_t buf[64];
  size_t done = 0;
  while (done < n) {
    size_t take = (n - done + 1) / 2;
    if (take > sizeof buf) take = sizeof buf;
    if (rand_bytes(buf, take)) return -1;
    char hex[2 * sizeof buf + 1];
    hex_encode(buf, take, hex);
    for (size_t i = 0; i < 2 * take && done < n; i++) out[done++] = hex[i];
  }
  out[n] = '\0';
  return 0;
}
