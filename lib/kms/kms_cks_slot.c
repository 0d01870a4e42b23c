/* kms_cks_slot.c - counted references to a custom key store's live backend
 * connections (kms_cks_slot.h): how a connection is replaced or cleared at
 * once while calls in flight keep theirs, and closed by its last user.
 *
 * Invariants, all under s->lock:
 *   - s->cur, when set, has refs >= 1: the slot's own reference plus one per
 *     call holding it; it is on no list and not closing.
 *   - every other connection of the slot is on s->retired with refs = the
 *     calls still holding it; refs == 0 only once it is marked closing, and
 *     then exactly one thread (the one that saw it reach 0) closes it, outside
 *     the lock, and unlinks it afterwards.
 * So a connection is closed exactly once, only after the last reference is
 * gone, and a call never sees a closed connection: it took its reference
 * under the lock while the connection was current. */
#include <stdlib.h>

#include "kms/kms_cks_slot.h"

struct kmsi_slot_ref {
  const kms_backend *backend;
  kms_backend_conn *conn;
  unsigned long refs;
  bool closing;              /* refs reached 0: being closed, by one thread */
  struct kmsi_slot_ref *next; /* on s->retired */
};

void kmsi_slot_init(kmsi_slot *s) {
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->closed, NULL);
  s->cur = NULL;
  s->retired = NULL;
}

static void close_ref(kmsi_slot_ref *r) {
  if (r->conn && r->backend && r->backend->disconnect) r->backend->disconnect(r->conn);
  free(r);
}

void kmsi_slot_destroy(kmsi_slot *s) {
  while (s->retired) {
    kmsi_slot_ref *r = s->retired;
    s->retired = r->next;
    close_ref(r);
  }
  if (s->cur) close_ref(s->cur);
  s->cur = NULL;
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->closed);
}

bool kmsi_slot_acquire(kmsi_slot *s, const kms_backend **b, kms_backend_conn **c) {
  pthread_mutex_lock(&s->lock);
  if (s->cur) {
    s->cur->refs++;
    *b = s->cur->backend;
    *c = s->cur->conn;
  } else {
    *b = NULL;
    *c = NULL;
  }
  pthread_mutex_unlock(&s->lock);
  return *c != NULL;
}

/* Move `r` (the former current connection) to the retired list, dropping
 * the slot's reference.  Returns it when that was the last one (the caller
 * closes it), else NULL.  Caller holds s->lock. */
static kmsi_slot_ref *retire_locked(kmsi_slot *s, kmsi_slot_ref *r) {
  r->next = s->retired;
  s->retired = r;
  if (--r->refs > 0) return NULL;
  r->closing = true;
  return r;
}

void kmsi_slot_close_retired(kmsi_slot *s, kmsi_slot_ref *r) {
  kmsi_slot_ref **pp;
  if (!r) return;
  /* Marked closing, so nobody else touches it; it stays listed until it is
   * closed, so that kmsi_slot_drain waits for the close itself. */
  if (r->conn && r->backend && r->backend->disconnect) r->backend->disconnect(r->conn);
  pthread_mutex_lock(&s->lock);
  for (pp = &s->retired; *pp; pp = &(*pp)->next) {
    if (*pp == r) {
      *pp = r->next;
      break;
    }
  }
  pthread_cond_broadcast(&s->closed);
  pthread_mutex_unlock(&s->lock);
  free(r);
}

bool kmsi_slot_release(kmsi_slot *s, kms_backend_conn *c) {
  kmsi_slot_ref *r, *to_close = NULL;
  bool found = false;
  if (!c) return false;
  pthread_mutex_lock(&s->lock);
  /* The connection is open while we hold a reference, so no other entry of
   * the slot can have the same pointer. */
  if (s->cur && s->cur->conn == c) {
    s->cur->refs--; /* the slot's own reference keeps it above 0 */
    found = true;
  } else {
    for (r = s->retired; r; r = r->next) {
      if (r->conn == c && !r->closing && r->refs > 0) {
        found = true;
        if (--r->refs == 0) {
          r->closing = true;
          to_close = r;
        }
        break;
      }
    }
  }
  pthread_mutex_unlock(&s->lock);
  kmsi_slot_close_retired(s, to_close);
  return found;
}

bool kmsi_slot_install(kmsi_slot *s, const kms_backend *b, kms_backend_conn *c,
                       kmsi_slot_ref **to_close) {
  kmsi_slot_ref *r = calloc(1, sizeof *r);
  *to_close = NULL;
  if (!r) return false;
  r->backend = b;
  r->conn = c;
  r->refs = 1; /* the slot's */
  pthread_mutex_lock(&s->lock);
  if (s->cur) *to_close = retire_locked(s, s->cur);
  s->cur = r;
  pthread_mutex_unlock(&s->lock);
  return true;
}

void kmsi_slot_clear(kmsi_slot *s, kmsi_slot_ref **to_close) {
  *to_close = NULL;
  pthread_mutex_lock(&s->lock);
  if (s->cur) *to_close = retire_locked(s, s->cur);
  s->cur = NULL;
  pthread_mutex_unlock(&s->lock);
}

void kmsi_slot_drain(kmsi_slot *s) {
  pthread_mutex_lock(&s->lock);
  while (s->retired) pthread_cond_wait(&s->closed, &s->lock);
  pthread_mutex_unlock(&s->lock);
}

bool kmsi_slot_current(kmsi_slot *s, const kms_backend **b) {
  bool have;
  pthread_mutex_lock(&s->lock);
  have = s->cur != NULL;
  if (b) *b = have ? s->cur->backend : NULL;
  pthread_mutex_unlock(&s->lock);
  return have;
}
