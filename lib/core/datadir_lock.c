/* datadir_lock.c - the exclusive lock on a data directory (datadir_lock.h). */
#include "core/datadir_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The holder writes its pid right after locking; a process refused in that
 * instant waits this long for the pid to appear before saying "unknown". */
#define PID_READ_ATTEMPTS 50
#define PID_READ_PAUSE_NS (10 * 1000 * 1000L)
#define PATH_CAP 4200

struct datadir_lock {
  int fd;
  char *dir;
};

/* The pid recorded in the lock file, or 0 when there is none (yet). */
static long read_holder_pid(int fd) {
  char buf[32];
  for (int attempt = 0; attempt < PID_READ_ATTEMPTS; attempt++) {
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n > 0) {
      char *end = NULL;
      buf[n] = '\0';
      errno = 0;
      long pid = strtol(buf, &end, 10);
      if (!errno && end != buf && *end == '\n' && pid > 0) return pid;
    }
    struct timespec pause = {0, PID_READ_PAUSE_NS};
    nanosleep(&pause, NULL);
  }
  return 0;
}

static kerr_code write_own_pid(int fd, const char *path, kerr *err) {
  char buf[32];
  int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len)
    return kerr_set(err, KERR_INTERNAL, "Cannot write %s: %s", path, strerror(errno));
  return KERR_OK;
}

kerr_code datadir_lock_take(const char *dir, datadir_lock **out, kerr *err) {
  kerr_code rc = KERR_OK;
  char path[PATH_CAP];
  struct stat st;
  datadir_lock *lock = NULL;
  int fd = -1;

  *out = NULL;
  if (!dir || !*dir || strlen(dir) + sizeof DATADIR_LOCK_FILE + 1 > sizeof path)
    return kerr_set(err, KERR_INTERNAL, "Bad data directory name.");
  snprintf(path, sizeof path, "%s/%s", dir, DATADIR_LOCK_FILE);
  fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    rc = kerr_set(err, KERR_INTERNAL, "Cannot open %s: %s", path, strerror(errno));
    goto out;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    rc = kerr_set(err, KERR_INTERNAL, "%s is not a regular file.", path);
    goto out;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) {
      rc = kerr_set(err, KERR_INTERNAL, "Cannot lock %s: %s", path, strerror(errno));
      goto out;
    }
    long pid = read_holder_pid(fd);
    if (pid > 0)
      rc = kerr_set(err, KERR_CONFLICT, "data directory %s is in use by kmsd (pid %ld)", dir, pid);
    else
      rc = kerr_set(err, KERR_CONFLICT, "data directory %s is in use by another process (%s is locked)",
                    dir, path);
    goto out;
  }
  rc = write_own_pid(fd, path, err);
  if (rc) goto out;
  lock = calloc(1, sizeof *lock);
  if (lock) lock->dir = strdup(dir);
  if (!lock || !lock->dir) {
    free(lock);
    lock = NULL;
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  lock->fd = fd;
  fd = -1;
  *out = lock;
out:
  if (fd >= 0) close(fd); /* also drops a lock taken before a later failure */
  return rc;
}

const char *datadir_lock_dir(const datadir_lock *lock) { return lock ? lock->dir : NULL; }

void datadir_lock_release(datadir_lock *lock) {
  if (!lock) return;
  /* A stale pid would name an unrelated process in someone's error. */
  if (ftruncate(lock->fd, 0) != 0) {
    /* Nothing to do: the lock itself goes with the descriptor below. */
  }
  close(lock->fd);
  free(lock->dir);
  free(lock);
}
