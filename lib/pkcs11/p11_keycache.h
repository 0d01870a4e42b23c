/* p11_keycache.h - working copies of a token's keys, found by CKA_ID.
 *
 * Why it exists: a module that keeps token keys in storage may read that
 * storage on every search and every use of a key (SoftHSM2 re-reads and
 * decrypts the key's file at each C_FindObjects and C_EncryptInit: most of
 * an HSM-backed Encrypt's cost).  A cache per token keeps, per key id, a
 * working copy of the key (p11.h) and hands it to requests, so a warm
 * request neither searches nor touches storage.
 *
 * The rules that keep it exact:
 *  - An entry belongs to the session generation its copy was made in; a
 *    session of another generation never uses it (the copy died with that
 *    login).
 *  - An entry serves for `refresh_ms` from when its token key was found;
 *    then the key is found and copied afresh, so a key deleted or changed on
 *    the token by someone else is seen within that time.  Whoever deletes a
 *    key through this process calls p11_keycache_forget first.
 *  - A copy that leaves the cache (replaced, evicted, forgotten) is
 *    destroyed only when the last request holding it gives it back: a module
 *    may fail a request oddly when its key vanishes under it.
 *  - A module that refuses C_CopyObject: each request finds the token key
 *    and nothing is kept (a token key's handle number may be handed out
 *    again after a deletion behind kmsd's back; a copy's cannot while the
 *    copy exists).
 *  - A forget during a miss's search keeps that miss's copy out of the
 *    cache: it serves its request and is destroyed (a key deleted while a
 *    request was copying it leaves no copy behind).
 *  - Sessions of one generation only: the caller keeps logouts out while it
 *    holds a session it passes here (kmsd: the HSM's lock, held for reading
 *    around every request, for writing around every logout).
 *  - Direct-mapped: `slots` entries, the id hashed; a colliding id replaces.
 *
 * Thread-safe: one lock per cache, never held across a module call. */
#ifndef KMSD_PKCS11_P11_KEYCACHE_H
#define KMSD_PKCS11_P11_KEYCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "pkcs11/p11.h"

typedef struct p11_keycache p11_keycache;

/* What a request holds while it uses a key: `handle` is usable on the
 * session it was got with until p11_keycache_put.  Treat `entry` as opaque. */
typedef struct p11_keyref {
  CK_OBJECT_HANDLE handle;
  struct p11_keycache_entry *entry; /* NULL when not cached */
} p11_keyref;

#define P11_KEYCACHE_SLOTS_MAX 1048576

/* A cache of `slots` entries (0 .. P11_KEYCACHE_SLOTS_MAX; 0 gives *out
 * NULL, a cache that keeps nothing: every get finds the token key) whose
 * entries serve `refresh_ms` (1 .. 3600000).  On KERR_OK *out is new
 * (p11_keycache_free). */
kerr_code p11_keycache_new(size_t slots, long refresh_ms, p11_keycache **out, p11_err *err);

/* Free the cache.  No reference may be held.  Copies are not destroyed
 * here: they end with the token's login (close or log out the token).
 * NULL is allowed. */
void p11_keycache_free(p11_keycache *c);

/* The key whose CKA_ID is `id`, for use on `s` (a session logged in as the
 * user).  A hit takes the cache's lock only; a miss searches with
 * p11_key_find (its answers, KERR_NOT_FOUND included, are this call's; a
 * key found missing is forgotten), makes a working copy and keeps it.  On
 * KERR_OK give *ref back with p11_keycache_put before releasing `s`. */
kerr_code p11_keycache_get(p11_keycache *c, p11_session *s, const char *id, p11_keyref *ref,
                           p11_err *err);

/* Give back what p11_keycache_get gave, with the same session still held
 * (a copy destroyed now needs it). */
void p11_keycache_put(p11_keycache *c, p11_session *s, p11_keyref *ref);

/* Forget the entry of `id` (its key is being deleted, or was found gone),
 * with `s` a held session of the token. */
void p11_keycache_forget(p11_keycache *c, p11_session *s, const char *id);

/* The module refused ref's handle (CKR_KEY_HANDLE_INVALID...), so it may
 * have dropped other copies too: every entry is forgotten, none destroyed
 * (a dropped copy's number may name another object by now), and the next
 * get finds its key again.  Call before p11_keycache_put. */
void p11_keycache_stale(p11_keycache *c, const p11_keyref *ref);

/* Requests answered from the cache and searches made, since creation. */
void p11_keycache_counts(p11_keycache *c, uint64_t *hits, uint64_t *misses);

#endif
