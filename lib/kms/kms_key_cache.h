/* kms_key_cache.h - resolved keys kept in front of the store, for the
 * cryptographic operations' hot path.  Internal to lib/kms.
 *
 * Why: an Encrypt, Decrypt or GenerateDataKey that finds its key here opens
 * no transaction at all; the key's row read in a read transaction was about
 * a quarter of such a request's CPU (bench/README.md).
 *
 * Exact, not time-based: every entry carries the store's change stamp
 * (store.h) read *before* the transaction that filled it, and is served
 * only while the stamp is still that value, so no commit at all - by this
 * kmsd, another process, an operator's sqlite3 shell - has happened since:
 * the entry is what a read transaction would return now.  A commit anywhere
 * therefore retires every entry at once; the next request for each key
 * refills it.  Entries are filled from read transactions only (never from a
 * write transaction, which may read a group-commit batch that is later
 * lost).
 *
 * An entry answers one question: "ref", named by an account in a Region
 * with these resolution options, is this key.  Failures are never kept.
 *
 * Bounded: a fixed number of slots (one per hash, the newest fill wins);
 * a key whose description is longer than KMSI_KEY_CACHE_DESCRIPTION_MAX is
 * not kept, so the cache's memory has a ceiling of about slots x 2 KiB.
 * Thread-safe; lookups of different slots rarely share a lock. */
#ifndef KMSD_KMS_KMS_KEY_CACHE_H
#define KMSD_KMS_KMS_KEY_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kms/kms_internal.h"
#include "store/store.h"

#define KMSI_KEY_CACHE_DESCRIPTION_MAX 1024

/* A cache of `slots` entries (1..KMS_CACHE_ENTRIES_MAX).  On KERR_OK *out is
 * the cache (kmsi_key_cache_free); KERR_VALIDATION for a bound out of range,
 * KERR_INTERNAL when out of memory. */
kerr_code kmsi_key_cache_new(size_t slots, kmsi_key_cache **out, kerr *err);

/* Free the cache and every entry.  NULL is allowed. */
void kmsi_key_cache_free(kmsi_key_cache *c);

/* The resolution options as the bits an entry records. */
unsigned kmsi_key_cache_opts(const kmsi_resolve_opts *opts);

/* Look up `ref` as named by `account` in `region` with options `opts`
 * (kmsi_key_cache_opts), for the store at stamp `now`.  true: *out is a
 * copy of the entry (the caller owns it: kmsi_key_clear); false (a miss, a
 * stale entry, or no memory for the copy): *out is zeroed. */
bool kmsi_key_cache_get(kmsi_key_cache *c, const store_stamp *now, const char *account,
                        const char *region, unsigned opts, const char *ref, kmsi_key *out);

/* Keep a copy of `k`, which a read transaction begun after the store read
 * `stamp` resolved from `ref` (same `account`, `region`, `opts`).  Replaces
 * whatever the slot held; does nothing when memory runs out or the key's
 * description is too long. */
void kmsi_key_cache_put(kmsi_key_cache *c, const store_stamp *stamp, const char *account,
                        const char *region, unsigned opts, const char *ref, const kmsi_key *k);

/* Lookups served and missed since the cache was made (for tests and
 * benchmarks); either pointer may be NULL. */
void kmsi_key_cache_counts(kmsi_key_cache *c, uint64_t *hits, uint64_t *misses);

#endif
