/* kms_key_cache.c - resolved keys in front of the store (kms_key_cache.h).
 *
 * A direct-mapped table: the hash of (ref, account, Region, options) picks
 * one slot, and a fill replaces what the slot held.  No recency list to
 * keep: a slot is rewritten only on a miss, and every commit to the store
 * makes every entry a miss anyway.  Slots share a few striped mutexes; the
 * critical sections are a compare and a copy. */
#include "kms/kms_key_cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fnv.h"

/* Slots share this many mutexes (slot index modulo LOCKS): two threads
 * wait on each other only when their keys' slots share one, and the cache
 * needs no mutex per slot. */
#define LOCKS 64

typedef struct key_slot {
  bool used;
  uint64_t hash;
  unsigned opts;
  store_stamp stamp;
  char account[ACCOUNT_ID_LEN + 1];
  char region[STORE_REGION_MAX];
  char *ref; /* owned */
  kmsi_key key; /* owned strings */
} key_slot;

struct kmsi_key_cache {
  size_t nslots;
  key_slot *slots;
  pthread_mutex_t locks[LOCKS];
  atomic_uint_fast64_t hits, misses;
};

/* The parts are joined by a byte none of them holds, so ("ab", "c") and
 * ("a", "bc") hash apart. */
static uint64_t slot_hash(const char *account, const char *region, unsigned opts,
                          const char *ref) {
  uint64_t h = fnv1a_str(FNV1A_START ^ opts, ref);
  h = fnv1a_str(fnv1a_str(h, "\x1f"), account);
  return fnv1a_str(fnv1a_str(h, "\x1f"), region);
}

static char *dup_or_null(const char *s, bool *failed) {
  char *d;
  if (!s) return NULL;
  d = strdup(s);
  if (!d) *failed = true;
  return d;
}

/* A deep copy of `k` into `out`; false (and *out zeroed) when out of
 * memory. */
static bool key_copy(const kmsi_key *k, kmsi_key *out) {
  bool failed = false;
  *out = *k;
  out->row.description = dup_or_null(k->row.description, &failed);
  out->row.custom_key_store_id = dup_or_null(k->row.custom_key_store_id, &failed);
  out->row.xks_key_id = dup_or_null(k->row.xks_key_id, &failed);
  if (failed) kmsi_key_clear(out);
  return !failed;
}

static void slot_clear(key_slot *s) {
  free(s->ref);
  kmsi_key_clear(&s->key);
  memset(s, 0, sizeof *s);
}

kerr_code kmsi_key_cache_new(size_t slots, kmsi_key_cache **out, kerr *err) {
  kmsi_key_cache *c;
  *out = NULL;
  if (slots < 1 || slots > KMS_CACHE_ENTRIES_MAX)
    return kerr_set(err, KERR_VALIDATION, "The key cache must have 1 to %d entries, not %zu.",
                    KMS_CACHE_ENTRIES_MAX, slots);
  c = calloc(1, sizeof *c);
  if (!c) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  c->slots = calloc(slots, sizeof *c->slots);
  if (!c->slots) {
    free(c);
    return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
  c->nslots = slots;
  for (int i = 0; i < LOCKS; i++) pthread_mutex_init(&c->locks[i], NULL);
  atomic_init(&c->hits, 0);
  atomic_init(&c->misses, 0);
  *out = c;
  return KERR_OK;
}

void kmsi_key_cache_free(kmsi_key_cache *c) {
  if (!c) return;
  for (size_t i = 0; i < c->nslots; i++) slot_clear(&c->slots[i]);
  for (int i = 0; i < LOCKS; i++) pthread_mutex_destroy(&c->locks[i]);
  free(c->slots);
  free(c);
}

/* Every field of kmsi_resolve_opts changes what a reference resolves to, so
 * each must have its bit here: a field added there needs one. */
unsigned kmsi_key_cache_opts(const kmsi_resolve_opts *opts) {
  return (opts->cross_account ? 1u : 0u) | (opts->allow_alias ? 2u : 0u) |
         (opts->invalid_arn ? 4u : 0u) | (opts->any_account_id ? 8u : 0u);
}

bool kmsi_key_cache_get(kmsi_key_cache *c, const store_stamp *now, const char *account,
                        const char *region, unsigned opts, const char *ref, kmsi_key *out) {
  uint64_t h = slot_hash(account, region, opts, ref);
  size_t i = h % c->nslots;
  key_slot *s = &c->slots[i];
  bool hit = false;

  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&c->locks[i % LOCKS]);
  if (s->used && s->hash == h && s->opts == opts && store_stamp_equal(&s->stamp, now) &&
      strcmp(s->ref, ref) == 0 && strcmp(s->account, account) == 0 &&
      strcmp(s->region, region) == 0)
    hit = key_copy(&s->key, out);
  pthread_mutex_unlock(&c->locks[i % LOCKS]);
  atomic_fetch_add_explicit(hit ? &c->hits : &c->misses, 1, memory_order_relaxed);
  return hit;
}

void kmsi_key_cache_put(kmsi_key_cache *c, const store_stamp *stamp, const char *account,
                        const char *region, unsigned opts, const char *ref, const kmsi_key *k) {
  uint64_t h = slot_hash(account, region, opts, ref);
  size_t i = h % c->nslots;
  key_slot fresh, old;

  if (k->row.description && strlen(k->row.description) > KMSI_KEY_CACHE_DESCRIPTION_MAX) return;
  if (strlen(account) >= sizeof fresh.account || strlen(region) >= sizeof fresh.region) return;
  memset(&fresh, 0, sizeof fresh);
  fresh.ref = strdup(ref);
  if (!fresh.ref || !key_copy(k, &fresh.key)) {
    free(fresh.ref);
    return;
  }
  fresh.used = true;
  fresh.hash = h;
  fresh.opts = opts;
  fresh.stamp = *stamp;
  snprintf(fresh.account, sizeof fresh.account, "%s", account);
  snprintf(fresh.region, sizeof fresh.region, "%s", region);
  pthread_mutex_lock(&c->locks[i % LOCKS]);
  old = c->slots[i];
  c->slots[i] = fresh;
  pthread_mutex_unlock(&c->locks[i % LOCKS]);
  if (old.used) slot_clear(&old); /* frees outside the lock */
}

void kmsi_key_cache_counts(kmsi_key_cache *c, uint64_t *hits, uint64_t *misses) {
  if (hits) *hits = c ? atomic_load(&c->hits) : 0;
  if (misses) *misses = c ? atomic_load(&c->misses) : 0;
}
