/* datadir_lock.h - one process per data directory.
 *
 * A data directory (store, root key, SoftHSM2 tokens) belongs to one kmsd at
 * a time: a second process that opened it would run start-up recovery on
 * the first one's live database and strand its key stores.  The owner holds
 * an exclusive flock(2) on <dir>/kmsd.lock for its whole life and writes its
 * pid into the file so a refused process can say who holds it.  The kernel
 * drops the lock when the holder exits in any way (SIGKILL included), so a
 * lock file left behind never blocks anyone. */
#ifndef KMSD_CORE_DATADIR_LOCK_H
#define KMSD_CORE_DATADIR_LOCK_H

#include "core/kerr.h"

#define DATADIR_LOCK_FILE "kmsd.lock"

typedef struct datadir_lock datadir_lock;

/* Take the lock of the existing directory `dir` without waiting.  On KERR_OK
 * *out holds it until datadir_lock_release.  When another process holds it:
 * KERR_CONFLICT, "data directory DIR is in use by kmsd (pid N)" (or "by
 * another process" when its pid cannot be read).  Any other failure (no such
 * directory, no permission, a lock file that is not a regular file):
 * KERR_INTERNAL naming the path.  *out is NULL after a failure and nothing
 * is left open. */
kerr_code datadir_lock_take(const char *dir, datadir_lock **out, kerr *err);

/* The directory `lock` was taken on, as given to datadir_lock_take. */
const char *datadir_lock_dir(const datadir_lock *lock);

/* Empty the pid from the file, drop the lock and free `lock`.  The file
 * itself stays: removing it would let two processes lock two different
 * files of one name.  NULL is allowed. */
void datadir_lock_release(datadir_lock *lock);

#endif
