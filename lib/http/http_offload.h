/* http_offload.h - a bounded queue of jobs and the pool of threads that run
 * them: where the HTTP server runs again the requests that may wait on a
 * slow backing system.
 *
 * Why: libmicrohttpd keeps each connection on the event thread that
 * accepted it, and one event thread serves many connections.  A request
 * that waits there (an external key store's proxy, up to --xks-timeout)
 * stalls every other connection of that thread, kept-alive ones included.
 * So such a request is stopped before it waits, its connection suspended,
 * and the request handed to this pool (http_server.c), whose threads may
 * wait as long as a request needs.
 *
 * The pool knows nothing of HTTP: a job is a struct with a `run` function
 * and a lane.  Threads are started on demand, up to `threads`, and stay
 * until http_offload_stop.  At most `queue_max` jobs wait for a thread
 * (accepted but not yet running); past that the pool refuses new ones.
 *
 * Lanes: jobs that wait on the same system (an external key store) name
 * the same lane, and at most `lane_cap` jobs of one lane run at once; the
 * others stay queued, behind which jobs of other lanes still start.  The
 * cap is the number of calls the system takes at once (the XKS client's
 * connections per store): a thread more would only wait for one of them,
 * and be woken for it - on a small virtual machine every such wake-up
 * costs as much as a good part of the request.  It also keeps one slow
 * store from taking every thread.  A thread that ends a job takes the
 * next one it may run itself, so a busy lane moves without wake-ups.
 *
 * Submitting is two steps, so that the submitter can make its job
 * runnable (libmicrohttpd: suspend the connection) between knowing there
 * is room and the job being picked up:
 *   http_offload_reserve -> (prepare) -> http_offload_submit
 *   or, when preparing failed,  -> http_offload_cancel. */
#ifndef KMSD_HTTP_HTTP_OFFLOAD_H
#define KMSD_HTTP_HTTP_OFFLOAD_H

#include "core/kerr.h"

/* Why a job could not be queued, or why a job is run without leave to wait
 * (also http_request.wait_refused). */
#define HTTP_WAIT_QUEUE_FULL 1 /* queue_max jobs are waiting already */
#define HTTP_WAIT_STOPPING 2   /* the pool is stopping */

#define HTTP_DEFAULT_WAIT_THREADS 32
#define HTTP_DEFAULT_WAIT_QUEUE 256
#define HTTP_WAIT_THREADS_MAX 1024
#define HTTP_WAIT_QUEUE_MAX 65536
#define HTTP_WAIT_LANE_MAX 64 /* a lane's name, NUL included */

typedef struct http_offload_job {
  struct http_offload_job *next; /* the pool's */
  /* Run the job on a pool thread, with `refused` 0 (the job may wait); or,
   * for a job still queued when the pool was stopped, on the thread that
   * stops it, with HTTP_WAIT_STOPPING: it must then finish without waiting
   * (answer at once).  The pool does not touch the job after run returns:
   * run frees it or hands it on. */
  void (*run)(struct http_offload_job *job, int refused);
  /* The job's lane; "" for none (no cap).  Set before submitting. */
  char lane[HTTP_WAIT_LANE_MAX];
} http_offload_job;

typedef struct http_offload http_offload;

/* A pool of at most `threads` threads (1..HTTP_WAIT_THREADS_MAX), at most
 * `queue_max` waiting jobs (1..HTTP_WAIT_QUEUE_MAX) and at most `lane_cap`
 * running jobs per lane (0: no cap).  No thread is started yet.  On
 * KERR_OK *out is the pool (http_offload_free); otherwise *out is NULL:
 * KERR_VALIDATION for a bound out of range, KERR_INTERNAL when out of
 * memory. */
kerr_code http_offload_new(unsigned threads, unsigned queue_max, unsigned lane_cap,
                           http_offload **out, kerr *err);

/* Take a place in the queue: 0, after which the caller must call
 * http_offload_submit or http_offload_cancel exactly once; or
 * HTTP_WAIT_QUEUE_FULL / HTTP_WAIT_STOPPING, and nothing is held.  Starts
 * the first thread (none may be started: HTTP_WAIT_QUEUE_FULL).  Never
 * waits on a job: safe on an event thread. */
int http_offload_reserve(http_offload *p);

/* Queue `job` in the place reserved; a pool thread runs it soon: in
 * submission order among the jobs whose lane is under its cap.  Wakes an
 * idle thread, or starts one, only when the job may start now.  `job`
 * must stay valid until its run. */
void http_offload_submit(http_offload *p, http_offload_job *job);

/* Give back a place reserved and not used. */
void http_offload_cancel(http_offload *p);

/* Stop: refuse new reservations (HTTP_WAIT_STOPPING); run every job still
 * queued - and every one submitted in a place reserved before - on the
 * calling thread at once, with refused = HTTP_WAIT_STOPPING; wait for the
 * jobs running; join the threads.  After it returns every job ever
 * submitted has been run.  Calling it again does nothing. */
void http_offload_stop(http_offload *p);

/* Jobs queued (reserved places included) and running now, for tests and
 * logs; either pointer may be NULL. */
void http_offload_counts(http_offload *p, unsigned *queued, unsigned *running);

/* http_offload_stop, then free the pool.  NULL is allowed. */
void http_offload_free(http_offload *p);

#endif
