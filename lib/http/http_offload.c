/* http_offload.c - the pool of threads that run requests which may wait
 * (see http_offload.h): one mutex, one FIFO of intrusive jobs, threads made
 * on demand, and a small table of the lanes that have jobs running.
 *
 * A job may start when its lane has fewer than lane_cap jobs running; the
 * first such job in the FIFO is the one a free thread takes (the FIFO is
 * scanned past jobs of full lanes: it holds at most queue_max jobs, and in
 * practice the first one may start).  Threads are woken, or started, only
 * for a job that may start, and a thread that ends a job looks for the
 * next one itself before it sleeps.
 *
 * Counting: `pending` is every place taken in the queue, reserved or
 * filled; `queued` the filled ones (the list).  The bound applies to
 * `pending`, so a reservation is a promise that the job will fit.  Stop
 * runs every pending job itself, refused, as soon as it is queued - a job
 * reserved on an event thread just before the stop included - rather than
 * leave it to threads that may be busy with a slow job for a while yet. */
#include "http/http_offload.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* A lane with jobs running. */
typedef struct lane_use {
  char name[HTTP_WAIT_LANE_MAX];
  unsigned running;
} lane_use;

struct http_offload {
  pthread_mutex_t lock;
  pthread_cond_t work;         /* a job queued, or stopping */
  pthread_cond_t filled;       /* while stopping: a place filled or given back */
  unsigned max_threads;
  unsigned queue_max;
  pthread_t *threads;          /* max_threads slots; nthreads started */
  unsigned nthreads;
  unsigned idle;               /* threads waiting for work */
  unsigned wakeups;            /* of those, signalled and not yet awake (about) */
  unsigned pending;            /* places taken: reserved + queued */
  unsigned running;
  unsigned lane_cap;           /* 0: none */
  lane_use *lanes;             /* max_threads entries; nlanes in use */
  unsigned nlanes;
  http_offload_job *head, *tail;
  bool stopping;
  bool stopped;
};

kerr_code http_offload_new(unsigned threads, unsigned queue_max, unsigned lane_cap,
                           http_offload **out, kerr *err) {
  http_offload *p = NULL;
  *out = NULL;
  if (threads < 1 || threads > HTTP_WAIT_THREADS_MAX)
    return kerr_set(err, KERR_VALIDATION, "waiting threads must be 1-%d", HTTP_WAIT_THREADS_MAX);
  if (queue_max < 1 || queue_max > HTTP_WAIT_QUEUE_MAX)
    return kerr_set(err, KERR_VALIDATION, "the waiting queue must hold 1-%d requests",
                    HTTP_WAIT_QUEUE_MAX);
  p = calloc(1, sizeof *p);
  if (!p) return kerr_set(err, KERR_INTERNAL, "out of memory");
  p->threads = calloc(threads, sizeof *p->threads);
  p->lanes = calloc(threads, sizeof *p->lanes); /* a running job per thread at most */
  if (!p->threads || !p->lanes) {
    free(p->threads);
    free(p->lanes);
    free(p);
    return kerr_set(err, KERR_INTERNAL, "out of memory");
  }
  p->lane_cap = lane_cap;
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->work, NULL);
  pthread_cond_init(&p->filled, NULL);
  p->max_threads = threads;
  p->queue_max = queue_max;
  *out = p;
  return KERR_OK;
}

/* The entry of running lane `name`, or NULL; p->lock held. */
static lane_use *lane_find(http_offload *p, const char *name) {
  for (unsigned i = 0; i < p->nlanes; i++)
    if (strcmp(p->lanes[i].name, name) == 0) return &p->lanes[i];
  return NULL;
}

/* Whether `job` may start now; p->lock held. */
static bool may_start(http_offload *p, const http_offload_job *job) {
  const lane_use *u;
  if (!p->lane_cap || !job->lane[0]) return true;
  u = lane_find(p, job->lane);
  return !u || u->running < p->lane_cap;
}

/* Count a job of lane `name` as running, or as ended; p->lock held.  There
 * is room: every running job has a thread, and the table has a slot per
 * thread. */
static void lane_start(http_offload *p, const char *name) {
  lane_use *u;
  if (!p->lane_cap || !name[0]) return;
  u = lane_find(p, name);
  if (!u && p->nlanes < p->max_threads) {
    u = &p->lanes[p->nlanes++];
    memcpy(u->name, name, sizeof u->name);
    u->running = 0;
  }
  if (u) u->running++;
}

static void lane_end(http_offload *p, const char *name) {
  lane_use *u;
  if (!p->lane_cap || !name[0] || !(u = lane_find(p, name))) return;
  if (--u->running == 0) *u = p->lanes[--p->nlanes];
}

/* Take `job` (after `prev`, NULL for the head) off the queue; p->lock
 * held. */
static void unlink_locked(http_offload *p, http_offload_job *prev, http_offload_job *job) {
  if (prev)
    prev->next = job->next;
  else
    p->head = job->next;
  if (p->tail == job) p->tail = prev;
  job->next = NULL;
  p->pending--;
}

/* The first job queued, taken off the queue; p->lock held, queue not
 * empty. */
static http_offload_job *pop_locked(http_offload *p) {
  http_offload_job *job = p->head;
  unlink_locked(p, NULL, job);
  return job;
}

/* The first job queued that may start, taken off the queue and counted in
 * its lane; NULL when none may; p->lock held. */
static http_offload_job *pop_startable_locked(http_offload *p) {
  http_offload_job *prev = NULL;
  for (http_offload_job *job = p->head; job; prev = job, job = job->next) {
    if (!may_start(p, job)) continue;
    unlink_locked(p, prev, job);
    lane_start(p, job->lane);
    return job;
  }
  return NULL;
}

static void *worker(void *arg) {
  http_offload *p = arg;
  char lane[HTTP_WAIT_LANE_MAX];
  pthread_mutex_lock(&p->lock);
  for (;;) {
    http_offload_job *job = NULL;
    while (!p->stopping && !(job = pop_startable_locked(p))) {
      p->idle++;
      pthread_cond_wait(&p->work, &p->lock);
      p->idle--;
      /* A spurious wake-up may take another's count: the count then only
       * makes a later job wait for a thread that is busy, never lost. */
      if (p->wakeups) p->wakeups--;
    }
    /* Once stopping, what is left is http_offload_stop's. */
    if (!job) break;
    memcpy(lane, job->lane, sizeof lane); /* run may free the job */
    p->running++;
    pthread_mutex_unlock(&p->lock);
    job->run(job, 0); /* the job is not touched again */
    pthread_mutex_lock(&p->lock);
    p->running--;
    lane_end(p, lane);
  }
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

/* One more thread, with p->lock held.  0, or -1 when none could start. */
static int start_thread_locked(http_offload *p) {
  pthread_attr_t attr;
  int r;
  if (p->nthreads >= p->max_threads) return -1;
  if (pthread_attr_init(&attr) != 0) return -1;
  r = pthread_create(&p->threads[p->nthreads], &attr, worker, p);
  pthread_attr_destroy(&attr);
  if (r != 0) return -1;
  p->nthreads++;
  return 0;
}

int http_offload_reserve(http_offload *p) {
  int rc = 0;
  pthread_mutex_lock(&p->lock);
  if (p->stopping) {
    rc = HTTP_WAIT_STOPPING;
  } else if (p->pending >= p->queue_max) {
    rc = HTTP_WAIT_QUEUE_FULL;
  } else {
    p->pending++;
    /* The first thread; the others as jobs that may start need them. */
    if (p->nthreads == 0 && start_thread_locked(p) != 0) {
      p->pending--;
      rc = HTTP_WAIT_QUEUE_FULL;
      log_msg(LOG_WARN, NULL, "http: cannot start a waiting thread");
    }
  }
  pthread_mutex_unlock(&p->lock);
  return rc;
}

void http_offload_submit(http_offload *p, http_offload_job *job) {
  job->next = NULL;
  pthread_mutex_lock(&p->lock);
  if (p->tail)
    p->tail->next = job;
  else
    p->head = job;
  p->tail = job;
  if (p->stopping) {
    pthread_cond_signal(&p->filled);
  } else if (may_start(p, job)) {
    /* An idle thread for it, or one more; when neither, a thread takes it
     * when its job ends.  A job that may not start yet needs none: a job
     * of its lane ends first, and its thread takes this one. */
    if (p->idle > p->wakeups) {
      p->wakeups++;
      pthread_cond_signal(&p->work);
    } else if (p->nthreads < p->max_threads && start_thread_locked(p) != 0)
      log_msg(LOG_WARN, NULL, "http: cannot start a waiting thread (%u running)", p->nthreads);
  }
  pthread_mutex_unlock(&p->lock);
}

void http_offload_cancel(http_offload *p) {
  pthread_mutex_lock(&p->lock);
  p->pending--;
  if (p->stopping) pthread_cond_signal(&p->filled);
  pthread_mutex_unlock(&p->lock);
}

void http_offload_stop(http_offload *p) {
  unsigned n;
  if (!p) return;
  pthread_mutex_lock(&p->lock);
  if (p->stopped) {
    pthread_mutex_unlock(&p->lock);
    return;
  }
  p->stopping = true;
  p->stopped = true;
  /* Idle threads leave; busy ones leave when their job is done. */
  pthread_cond_broadcast(&p->work);
  /* The jobs that never started are answered now, here, without waiting
   * for a thread: each is run refused as soon as its place is filled (an
   * event thread between reserve and submit fills it at once). */
  while (p->pending > 0) {
    if (!p->head) {
      pthread_cond_wait(&p->filled, &p->lock);
      continue;
    }
    http_offload_job *job = pop_locked(p);
    pthread_mutex_unlock(&p->lock);
    job->run(job, HTTP_WAIT_STOPPING);
    pthread_mutex_lock(&p->lock);
  }
  n = p->nthreads;
  pthread_mutex_unlock(&p->lock);
  /* No thread is started once stopping is set, so the first n are all;
   * joining waits for the jobs still running. */
  for (unsigned i = 0; i < n; i++) pthread_join(p->threads[i], NULL);
}

void http_offload_counts(http_offload *p, unsigned *queued, unsigned *running) {
  pthread_mutex_lock(&p->lock);
  if (queued) *queued = p->pending;
  if (running) *running = p->running;
  pthread_mutex_unlock(&p->lock);
}

void http_offload_free(http_offload *p) {
  if (!p) return;
  http_offload_stop(p);
  pthread_cond_destroy(&p->work);
  pthread_cond_destroy(&p->filled);
  pthread_mutex_destroy(&p->lock);
  free(p->threads);
  free(p->lanes);
  free(p);
}
