/* p11_keycache.c - p11_keycache.h: working copies of a token's keys.
 *
 * Entries live on the heap and are counted: a slot points at its entry, and
 * each request holding the entry adds one.  An entry out of its slot
 * (`cached` 0) is released by whoever drops the last count: its copy is
 * destroyed (p11_key_drop_working checks the generation, so a copy of an
 * ended login is only forgotten) and the entry freed. */
#include "pkcs11/p11_keycache.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/fnv.h"

struct p11_keycache_entry {
  char id[P11_ID_MAX + 1];
  CK_OBJECT_HANDLE handle; /* the working copy */
  int gone;             /* a copy's handle was refused: never destroy it */
  int cached;           /* still in its slot */
  unsigned generation;  /* of the session it was made with */
  long long found_ms;   /* monotonic */
  unsigned refs;        /* requests holding it */
};

typedef struct p11_keycache_entry entry;

struct p11_keycache {
  pthread_mutex_t lock; /* slots, every entry's refs and cached, counts */
  size_t nslots;
  long refresh_ms;
  entry **slots;
  uint64_t hits, misses;
  uint64_t forgets;     /* forget and stale calls so far: a miss that saw one
                           happen during its search keeps nothing */
};

static long long monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t slot_of(const p11_keycache *c, const char *id) {
  return (size_t)(fnv1a_str(FNV1A_START, id) % c->nslots);
}

kerr_code p11_keycache_new(size_t slots, long refresh_ms, p11_keycache **out, p11_err *err) {
  p11_err_clear(err);
  *out = NULL;
  if (slots > P11_KEYCACHE_SLOTS_MAX || refresh_ms < 1 || refresh_ms > 3600000) {
    if (err) kerr_set(&err->e, KERR_VALIDATION, "key cache: %zu slots (at most %d), refresh %ld ms (1 to 3600000)",
                      slots, P11_KEYCACHE_SLOTS_MAX, refresh_ms);
    return KERR_VALIDATION;
  }
  if (slots == 0) return KERR_OK;
  p11_keycache *c = calloc(1, sizeof *c);
  if (c) c->slots = calloc(slots, sizeof *c->slots);
  if (!c || !c->slots) {
    free(c);
    if (err) kerr_set(&err->e, KERR_INTERNAL, "Out of memory.");
    return KERR_INTERNAL;
  }
  pthread_mutex_init(&c->lock, NULL);
  c->nslots = slots;
  c->refresh_ms = refresh_ms;
  *out = c;
  return KERR_OK;
}

void p11_keycache_free(p11_keycache *c) {
  if (!c) return;
  for (size_t i = 0; i < c->nslots; i++) free(c->slots[i]);
  free(c->slots);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

/* Destroy e's copy (unless the module already refused it) and free it.
 * Called without the lock, by whoever took e's last count or its slot. */
static void release(p11_session *s, entry *e) {
  if (!e) return;
  if (!e->gone) p11_key_drop_working(s, e->handle, e->generation);
  free(e);
}

/* Take e out of its slot, with the lock held.  Returns e when nobody holds
 * it (the caller releases it after unlocking), else NULL (the last put does). */
static entry *unslot_locked(p11_keycache *c, size_t i) {
  entry *e = c->slots[i];
  c->slots[i] = NULL;
  e->cached = 0;
  return e->refs == 0 ? e : NULL;
}

kerr_code p11_keycache_get(p11_keycache *c, p11_session *s, const char *id, p11_keyref *ref,
                           p11_err *err) {
  CK_OBJECT_HANDLE key;
  ref->handle = CK_INVALID_HANDLE;
  ref->entry = NULL;
  if (!c) return p11_key_find(s, id, &ref->handle, err);
  p11_err_clear(err);
  unsigned generation = p11_session_generation(s);
  size_t i = slot_of(c, id);
  long long now = monotonic_ms();
  pthread_mutex_lock(&c->lock);
  entry *e = c->slots[i];
  if (e && e->generation == generation && now - e->found_ms < c->refresh_ms && strcmp(e->id, id) == 0) {
    e->refs++;
    c->hits++;
    pthread_mutex_unlock(&c->lock);
    ref->handle = e->handle;
    ref->entry = e;
    return KERR_OK;
  }
  c->misses++;
  uint64_t forgets = c->forgets;
  pthread_mutex_unlock(&c->lock);

  kerr_code rc = p11_key_find(s, id, &key, err);
  if (rc) {
    if (rc == KERR_NOT_FOUND) p11_keycache_forget(c, s, id);
    return rc;
  }
  /* No copy (out of memory, or a module that refuses C_CopyObject): this
   * request uses the token key it found, and nothing is kept.  A token key's
   * handle is not cached: on a module that hands out a freed number again,
   * it could name another object after a deletion behind kmsd's back. */
  p11_err copy_err;
  entry *fresh = calloc(1, sizeof *fresh);
  if (!fresh || p11_key_copy_working(s, key, &fresh->handle, &copy_err) != KERR_OK) {
    free(fresh);
    ref->handle = key;
    return KERR_OK;
  }
  snprintf(fresh->id, sizeof fresh->id, "%s", id);
  fresh->generation = generation;
  fresh->found_ms = now;
  fresh->refs = 1;
  entry *doomed = NULL;
  pthread_mutex_lock(&c->lock);
  /* A forget during the search (the key being deleted, a copy refused) may
   * have been about this very key: then the copy serves this request only,
   * and put destroys it. */
  if (c->forgets == forgets) {
    fresh->cached = 1;
    doomed = c->slots[i] ? unslot_locked(c, i) : NULL;
    c->slots[i] = fresh;
  }
  pthread_mutex_unlock(&c->lock);
  release(s, doomed);
  ref->handle = fresh->handle;
  ref->entry = fresh;
  return KERR_OK;
}

void p11_keycache_put(p11_keycache *c, p11_session *s, p11_keyref *ref) {
  entry *e = ref->entry, *doomed = NULL;
  ref->entry = NULL;
  ref->handle = CK_INVALID_HANDLE;
  if (!c || !e) return;
  pthread_mutex_lock(&c->lock);
  if (--e->refs == 0 && !e->cached) doomed = e;
  pthread_mutex_unlock(&c->lock);
  release(s, doomed);
}

void p11_keycache_forget(p11_keycache *c, p11_session *s, const char *id) {
  entry *doomed = NULL;
  if (!c) return;
  size_t i = slot_of(c, id);
  pthread_mutex_lock(&c->lock);
  c->forgets++;
  if (c->slots[i] && strcmp(c->slots[i]->id, id) == 0) doomed = unslot_locked(c, i);
  pthread_mutex_unlock(&c->lock);
  release(s, doomed);
}

/* A module that drops one copy without ending the login may have dropped
 * them all, and a dropped copy's number may be handed out again: so every
 * entry goes, and none is destroyed (a live one among them stays in the
 * HSM until the login ends, at most one per slot). */
void p11_keycache_stale(p11_keycache *c, const p11_keyref *ref) {
  if (!c || !ref->entry) return;
  pthread_mutex_lock(&c->lock);
  c->forgets++;
  ref->entry->gone = 1;
  for (size_t i = 0; i < c->nslots; i++) {
    if (!c->slots[i]) continue;
    c->slots[i]->gone = 1;
    free(unslot_locked(c, i)); /* NULL while held: the last put frees it */
  }
  pthread_mutex_unlock(&c->lock);
}

void p11_keycache_counts(p11_keycache *c, uint64_t *hits, uint64_t *misses) {
  *hits = *misses = 0;
  if (!c) return;
  pthread_mutex_lock(&c->lock);
  *hits = c->hits;
  *misses = c->misses;
  pthread_mutex_unlock(&c->lock);
}
