/* http_offload.c - the pool of threads that run requests which may wait
 * (see http_offload.h): one mutex, one FIFO of intrusive jobs, threads made
 * on demand.
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

#include "core/log.h"

struct http_offload {
  pthread_mutex_t lock;
  pthread_cond_t work;         /* a job queued, or stopping */
  pthread_cond_t filled;       /* while stopping: a place filled or given back */
  unsigned max_threads;
  unsigned queue_max;
  pthread_t *threads;          /* max_threads slots; nthreads started */
  unsigned nthreads;
  unsigned idle;               /* threads waiting for work */
  unsigned pending;            /* places taken: reserved + queued */
  unsigned running;
  http_offload_job *head, *tail;
  bool stopping;
  bool stopped;
};

kerr_code http_offload_new(unsigned threads, unsigned queue_max, http_offload **out, kerr *err) {
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
  if (!p->threads) {
    free(p);
    return kerr_set(err, KERR_INTERNAL, "out of memory");
  }
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->work, NULL);
  pthread_cond_init(&p->filled, NULL);
  p->max_threads = threads;
  p->queue_max = queue_max;
  *out = p;
  return KERR_OK;
}

/* The first job queued, taken off the queue; p->lock held, queue not
 * empty. */
static http_offload_job *pop_locked(http_offload *p) {
  http_offload_job *job = p->head;
  p->head = job->next;
  if (!p->head) p->tail = NULL;
  job->next = NULL;
  p->pending--;
  return job;
}

static void *worker(void *arg) {
  http_offload *p = arg;
  pthread_mutex_lock(&p->lock);
  for (;;) {
    while (!p->head && !p->stopping) {
      p->idle++;
      pthread_cond_wait(&p->work, &p->lock);
      p->idle--;
    }
    /* Once stopping, what is left is http_offload_stop's. */
    if (p->stopping) break;
    http_offload_job *job = pop_locked(p);
    p->running++;
    pthread_mutex_unlock(&p->lock);
    job->run(job, 0); /* the job is not touched again */
    pthread_mutex_lock(&p->lock);
    p->running--;
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
    /* A thread for each job that waits, as long as there may be more. */
    if (p->pending > p->idle && p->nthreads < p->max_threads && start_thread_locked(p) != 0) {
      if (p->nthreads == 0) {
        p->pending--;
        rc = HTTP_WAIT_QUEUE_FULL;
      }
      log_msg(LOG_WARN, NULL, "http: cannot start a waiting thread (%u running)", p->nthreads);
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
  pthread_cond_signal(&p->work);
  if (p->stopping) pthread_cond_signal(&p->filled);
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
  free(p);
}
