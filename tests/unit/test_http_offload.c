/* test_http_offload.c - the waiting threads' pool on its own: bounds,
 * threads started on demand, FIFO order, the queue bound, cancel, lanes
 * (a cap per lane, other lanes unhindered, a busy lane served by its own
 * threads), and stop (queued jobs run refused at once on the stopping
 * thread while a running one is waited for; a place reserved before the
 * stop is still run). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "http/http_offload.h"

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

typedef struct shared {
  atomic_int gate;     /* jobs that wait, wait while 0 */
  atomic_int running;
  atomic_int max_running;
  atomic_int done;
  atomic_int order;    /* next sequence number */
  atomic_int lane_a_running; /* jobs of lane "a" running now, and at most */
  atomic_int lane_a_max;
} shared;

typedef struct job {
  http_offload_job base;
  shared *sh;
  int wait;            /* wait for the gate */
  atomic_int ran;      /* 1 + refused once run */
  int seq;             /* when it ran */
  pthread_t thread;
} job;

static void run_job(http_offload_job *b, int refused) {
  job *j = (job *)b;
  shared *sh = j->sh;
  int now = atomic_fetch_add(&sh->running, 1) + 1;
  int prev = atomic_load(&sh->max_running);
  while (now > prev && !atomic_compare_exchange_weak(&sh->max_running, &prev, now)) {
  }
  int lane_a = strcmp(j->base.lane, "a") == 0;
  if (lane_a) {
    int a = atomic_fetch_add(&sh->lane_a_running, 1) + 1;
    int seen = atomic_load(&sh->lane_a_max);
    while (a > seen && !atomic_compare_exchange_weak(&sh->lane_a_max, &seen, a)) {
    }
  }
  j->seq = atomic_fetch_add(&sh->order, 1);
  j->thread = pthread_self();
  if (j->wait && !refused)
    for (int i = 0; i < 2500 && !atomic_load(&sh->gate); i++) sleep_ms(2);
  if (lane_a) atomic_fetch_sub(&sh->lane_a_running, 1);
  atomic_fetch_sub(&sh->running, 1);
  atomic_store(&j->ran, 1 + refused);
  atomic_fetch_add(&sh->done, 1);
}

static void init_job(job *j, shared *sh, int wait) {
  memset(j, 0, sizeof *j);
  j->base.run = run_job;
  j->sh = sh;
  j->wait = wait;
}

static void submit(http_offload *p, job *j) {
  assert_int_equal(http_offload_reserve(p), 0);
  http_offload_submit(p, &j->base);
}

static void wait_at_least(atomic_int *v, int n) {
  for (int i = 0; i < 2500 && atomic_load(v) < n; i++) sleep_ms(2);
  assert_true(atomic_load(v) >= n);
}

static void test_bounds(void **state) {
  (void)state;
  http_offload *p = NULL;
  kerr err;
  assert_int_equal(http_offload_new(0, 1, 0, &p, &err), KERR_VALIDATION);
  assert_null(p);
  assert_int_equal(http_offload_new(HTTP_WAIT_THREADS_MAX + 1, 1, 0, &p, &err), KERR_VALIDATION);
  assert_int_equal(http_offload_new(1, 0, 0, &p, &err), KERR_VALIDATION);
  assert_int_equal(http_offload_new(1, HTTP_WAIT_QUEUE_MAX + 1, 0, &p, &err), KERR_VALIDATION);
  assert_int_equal(http_offload_new(HTTP_WAIT_THREADS_MAX, HTTP_WAIT_QUEUE_MAX, 0, &p, &err), KERR_OK);
  /* No thread was started: freeing an unused pool is immediate. */
  http_offload_free(p);
  http_offload_free(NULL);
}

/* One thread: jobs run in submission order, one at a time, never on the
 * submitting thread. */
static void test_fifo_on_one_thread(void **state) {
  (void)state;
  shared sh = {0};
  http_offload *p = NULL;
  kerr err;
  job j[5];
  assert_int_equal(http_offload_new(1, 8, 0, &p, &err), KERR_OK);
  atomic_store(&sh.gate, 1);
  for (int i = 0; i < 5; i++) {
    init_job(&j[i], &sh, 1);
    submit(p, &j[i]);
  }
  wait_at_least(&sh.done, 5);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(atomic_load(&j[i].ran), 1);
    assert_int_equal(j[i].seq, i);
    assert_false(pthread_equal(j[i].thread, pthread_self()));
  }
  assert_int_equal(atomic_load(&sh.max_running), 1);
  http_offload_free(p);
}

/* Threads are started as jobs wait, up to the bound; past that, jobs queue
 * up to queue_max, and the next reservation is refused. */
static void test_threads_and_queue_bound(void **state) {
  (void)state;
  shared sh = {0};
  http_offload *p = NULL;
  kerr err;
  job j[5];
  unsigned queued = 99, running = 99;
  assert_int_equal(http_offload_new(3, 2, 0, &p, &err), KERR_OK);
  /* Each taken by a thread before the next: waiting jobs count against
   * the queue until a thread takes them. */
  for (int i = 0; i < 3; i++) {
    init_job(&j[i], &sh, 1);
    submit(p, &j[i]);
    wait_at_least(&sh.running, i + 1);
  }
  for (int i = 3; i < 5; i++) {
    init_job(&j[i], &sh, 1);
    submit(p, &j[i]);
  }
  http_offload_counts(p, &queued, &running);
  assert_int_equal(queued, 2);
  assert_int_equal(running, 3);
  assert_int_equal(http_offload_reserve(p), HTTP_WAIT_QUEUE_FULL);
  atomic_store(&sh.gate, 1);
  wait_at_least(&sh.done, 5);
  assert_int_equal(atomic_load(&sh.max_running), 3);
  /* A place reserved and given back leaves the queue as it was. */
  assert_int_equal(http_offload_reserve(p), 0);
  http_offload_counts(p, &queued, NULL);
  assert_int_equal(queued, 1);
  http_offload_cancel(p);
  http_offload_counts(p, &queued, NULL);
  assert_int_equal(queued, 0);
  http_offload_free(p);
}

/* Lane cap 2: of four jobs of lane "a" that wait, two run and two stay
 * queued, while jobs of lane "b" queued after them run at once; when the
 * gate opens the two left run on the threads that ran the first two
 * (taken as each ends, no other thread woken), never more than two at a
 * time. */
static void test_lanes(void **state) {
  (void)state;
  shared sh = {0};
  http_offload *p = NULL;
  kerr err;
  job a[4], b[2];
  unsigned queued = 99, running = 99;
  assert_int_equal(http_offload_new(6, 16, 2, &p, &err), KERR_OK);
  for (int i = 0; i < 4; i++) {
    init_job(&a[i], &sh, 1);
    strcpy(a[i].base.lane, "a");
    submit(p, &a[i]);
  }
  wait_at_least(&sh.running, 2);
  sleep_ms(50);
  http_offload_counts(p, &queued, &running);
  assert_int_equal(running, 2);
  assert_int_equal(queued, 2);
  for (int i = 0; i < 2; i++) {
    init_job(&b[i], &sh, 0);
    strcpy(b[i].base.lane, "b");
    submit(p, &b[i]);
  }
  wait_at_least(&sh.done, 2);
  assert_int_equal(atomic_load(&b[0].ran), 1);
  assert_int_equal(atomic_load(&b[1].ran), 1);
  assert_int_equal(atomic_load(&a[2].ran), 0);
  assert_int_equal(atomic_load(&a[3].ran), 0);
  atomic_store(&sh.gate, 1);
  wait_at_least(&sh.done, 6);
  assert_int_equal(atomic_load(&sh.lane_a_max), 2);
  for (int i = 2; i < 4; i++)
    assert_true(pthread_equal(a[i].thread, a[0].thread) ||
                pthread_equal(a[i].thread, a[1].thread));
  assert_true(a[2].seq < a[3].seq); /* in order within the lane */
  http_offload_free(p);
}

typedef struct stop_arg {
  http_offload *p;
  atomic_int returned;
} stop_arg;

static void *stop_thread(void *arg) {
  stop_arg *a = arg;
  http_offload_stop(a->p);
  atomic_store(&a->returned, 1);
  return NULL;
}

/* Stop runs the queued jobs refused, at once and on its own thread, while
 * the running one still waits; it returns only once that one is done.
 * Afterwards every reservation is refused. */
static void test_stop(void **state) {
  (void)state;
  shared sh = {0};
  http_offload *p = NULL;
  kerr err;
  job j[3];
  stop_arg a = {0};
  pthread_t th;
  assert_int_equal(http_offload_new(1, 4, 0, &p, &err), KERR_OK);
  for (int i = 0; i < 3; i++) init_job(&j[i], &sh, 1);
  submit(p, &j[0]);
  wait_at_least(&sh.running, 1);
  submit(p, &j[1]);
  submit(p, &j[2]);
  a.p = p;
  assert_int_equal(pthread_create(&th, NULL, stop_thread, &a), 0);
  wait_at_least(&sh.done, 2);
  assert_int_equal(atomic_load(&j[1].ran), 1 + HTTP_WAIT_STOPPING);
  assert_int_equal(atomic_load(&j[2].ran), 1 + HTTP_WAIT_STOPPING);
  assert_true(pthread_equal(j[1].thread, th));
  assert_int_equal(atomic_load(&j[0].ran), 0); /* still waiting */
  sleep_ms(50);
  assert_int_equal(atomic_load(&a.returned), 0);
  atomic_store(&sh.gate, 1);
  pthread_join(th, NULL);
  assert_int_equal(atomic_load(&j[0].ran), 1);
  assert_int_equal(http_offload_reserve(p), HTTP_WAIT_STOPPING);
  http_offload_stop(p); /* again: nothing */
  http_offload_free(p);
}

/* A place reserved before the stop (an event thread between reserve and
 * submit): stop waits for it to be filled and runs the job refused; a
 * place given back instead lets it return. */
static void test_stop_waits_for_a_reserved_place(void **state) {
  (void)state;
  shared sh = {0};
  http_offload *p = NULL;
  kerr err;
  job j;
  stop_arg a = {0};
  pthread_t th;
  assert_int_equal(http_offload_new(2, 4, 0, &p, &err), KERR_OK);
  init_job(&j, &sh, 0);
  assert_int_equal(http_offload_reserve(p), 0);
  assert_int_equal(http_offload_reserve(p), 0);
  a.p = p;
  assert_int_equal(pthread_create(&th, NULL, stop_thread, &a), 0);
  sleep_ms(50);
  assert_int_equal(atomic_load(&a.returned), 0);
  http_offload_submit(p, &j.base);
  wait_at_least(&sh.done, 1);
  assert_int_equal(atomic_load(&j.ran), 1 + HTTP_WAIT_STOPPING);
  sleep_ms(50);
  assert_int_equal(atomic_load(&a.returned), 0);
  http_offload_cancel(p);
  pthread_join(th, NULL);
  assert_int_equal(atomic_load(&a.returned), 1);
  http_offload_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bounds),
      cmocka_unit_test(test_fifo_on_one_thread),
      cmocka_unit_test(test_threads_and_queue_bound),
      cmocka_unit_test(test_lanes),
      cmocka_unit_test(test_stop),
      cmocka_unit_test(test_stop_waits_for_a_reserved_place),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
