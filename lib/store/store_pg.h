/* store_pg.h - the PostgreSQL backend of the store (store.h): one database
 * shared by every kmsd node that names it.
 *
 * Semantics are the SQLite backend's: every transaction commits before it
 * returns, write transactions run one at a time (across every node, under a
 * transaction-scoped advisory lock), read transactions see one snapshot.
 * See store_pg.c for why, and docs/multi-node.md for the operator's view. */
#ifndef KMSD_STORE_STORE_PG_H
#define KMSD_STORE_STORE_PG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/kerr.h"
#include "store/store.h"

/* How long a connection attempt to the database may take before the call
 * that needed it fails with KERR_INTERNAL (libpq's connect_timeout, in s;
 * a connection string's own connect_timeout wins). */
#define STORE_PG_CONNECT_TIMEOUT_S 3

/* Whether `url` names a PostgreSQL database for store_pg_open: it starts
 * with "postgresql://" or "postgres://". */
bool store_pg_is_url(const char *url);

/* Copy `url` into out[cap] (always NUL-terminated, cut to fit) with any
 * password in it replaced by "***", for logs and error messages. */
void store_pg_redact(const char *url, char *out, size_t cap);

/* Connect to the database `url` (a libpq connection URI; its password is
 * never logged nor put in an error message; libpq's PGPASSWORD and pgpass
 * file work as usual), run pending migrations under an advisory lock so
 * that one node at a time applies them, and try for the lease on
 * background work (store_ops.lease_held; a keeper thread keeps trying).
 * Any number of nodes may open one database.  `busy_timeout_ms` (0: the
 * SQLite default, STORE_SQLITE_BUSY_TIMEOUT_DEFAULT_MS) bounds how long a
 * statement waits for a lock.  On KERR_OK *out is a new store (close with
 * (*out)->ops->close); on failure *out is NULL and nothing is left open. */
kerr_code store_pg_open(const char *url, int busy_timeout_ms, store **out, kerr *err);

/* The schema version this build's PostgreSQL migrations lead to. */
int store_pg_latest_version(void);

#endif
