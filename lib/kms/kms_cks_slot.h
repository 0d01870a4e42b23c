/* kms_cks_slot.h - one custom key store's live backend connection, shared
 * by the calls that use it through counted references; used by the
 * connection manager (kms_cks_conn.c) for every kind of store.
 *
 * Why: a store's connection must be replaceable at once (an
 * UpdateCustomKeyStore gives a CONNECTED external key store a new
 * credential) and closable (DisconnectCustomKeyStore) without being pulled
 * from under a call in flight - and without waiting for a moment when no
 * call uses it, because under steady traffic that moment need not come.  So
 * a slot holds its current connection with one reference of its own, every
 * call takes one more on the connection it got, a replaced connection leaves
 * the slot at once (new calls get the new one), and whoever drops a
 * connection's last reference closes it (the backend's disconnect).
 *
 * Locking: each slot has one mutex guarding its current connection, its
 * list of retired ones and every reference count; it is held only for a few
 * pointer and counter updates, never across a backend call, so a slot never
 * waits for a backing store.  A connection is closed outside the mutex by
 * the one thread that dropped its last reference; it stays on the retired
 * list, marked closing, until it is closed, and the condition variable
 * `closed` announces each one, so kmsi_slot_drain returns only when every
 * retired connection is really closed.  The slot mutex is always the
 * innermost lock: a caller may hold locks of its own around
 * kmsi_slot_acquire, _install, _clear and _current, which never block for
 * long, but not around _release, _close_retired, _drain or _destroy, which
 * may close a connection (a backend call) or wait for calls to end. */
#ifndef KMSD_KMS_KMS_CKS_SLOT_H
#define KMSD_KMS_KMS_CKS_SLOT_H

#include <pthread.h>
#include <stdbool.h>

#include "kms/kms_backend.h"

/* One connection and its references (opaque). */
typedef struct kmsi_slot_ref kmsi_slot_ref;

typedef struct kmsi_slot {
  pthread_mutex_t lock;
  pthread_cond_t closed;  /* a retired connection was closed */
  kmsi_slot_ref *cur;     /* the current connection; NULL: none */
  kmsi_slot_ref *retired; /* replaced or cleared ones not closed yet */
} kmsi_slot;

/* An empty slot. */
void kmsi_slot_init(kmsi_slot *s);

/* Close every connection the slot still has (current and retired) and free
 * the slot's resources.  No reference may be held any more. */
void kmsi_slot_destroy(kmsi_slot *s);

/* Take a reference on the current connection: true with its backend and
 * connection in *b and *c, which stay open until kmsi_slot_release(s, *c);
 * false (NULLs) when the slot is empty. */
bool kmsi_slot_acquire(kmsi_slot *s, const kms_backend **b, kms_backend_conn **c);

/* Drop a reference taken by kmsi_slot_acquire.  When it was the last one of
 * a retired connection, that connection is closed here, by the caller's
 * thread.  False when `c` is no connection of the slot (a bug of the
 * caller; nothing changes). */
bool kmsi_slot_release(kmsi_slot *s, kms_backend_conn *c);

/* Make (b, c) the current connection at once, the slot holding one
 * reference to it; it is closed later by whoever drops its last reference.
 * The connection it replaces, if any, is retired: calls holding it finish on
 * it, new calls get `c`.  When the replaced one is unused, it is returned
 * for the caller to close with kmsi_slot_close_retired (after dropping its
 * own locks); otherwise NULL.  On failure (out of memory) returns false and
 * takes nothing: the caller still owns `c`. */
bool kmsi_slot_install(kmsi_slot *s, const kms_backend *b, kms_backend_conn *c,
                       kmsi_slot_ref **to_close);

/* Retire the current connection, if any (the slot becomes empty): as for a
 * replaced one in kmsi_slot_install, *to_close gets it when it is unused. */
void kmsi_slot_clear(kmsi_slot *s, kmsi_slot_ref **to_close);

/* Close a connection kmsi_slot_install or kmsi_slot_clear handed back.  NULL
 * is allowed. */
void kmsi_slot_close_retired(kmsi_slot *s, kmsi_slot_ref *r);

/* Wait until every retired connection has been closed (calls in flight on
 * them finished).  It ends once those calls end: new calls cannot take a
 * retired connection. */
void kmsi_slot_drain(kmsi_slot *s);

/* Whether the slot has a current connection; its backend into *b (may be
 * NULL) when it has. */
bool kmsi_slot_current(kmsi_slot *s, const kms_backend **b);

#endif
