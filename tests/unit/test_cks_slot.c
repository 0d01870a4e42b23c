/* test_cks_slot.c - the counted references of a custom key store's live
 * connection (lib/kms/kms_cks_slot.c), alone: a backend whose connections
 * record their users and their close, used from many threads while the
 * connection is replaced and cleared under them.
 *
 * What must hold: a replacement is immediate however busy the old
 * connection is; a call never uses a closed connection; every connection is
 * closed exactly once, by whoever dropped its last reference; drain returns
 * only once every retired connection is closed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kms/kms_cks_slot.h"

/* A test connection: who uses it, and whether (and how often) it was closed. */
struct kms_backend_conn {
  atomic_int users;
  atomic_int closes;
  atomic_int used_after_close; /* a call saw it closed: must stay 0 */
};

static atomic_int closes_total;
static atomic_int closed_while_used;

static void fake_disconnect(kms_backend_conn *c) {
  if (atomic_load(&c->users) != 0) atomic_fetch_add(&closed_while_used, 1);
  atomic_fetch_add(&c->closes, 1);
  atomic_fetch_add(&closes_total, 1);
  /* Not freed: the test inspects it afterwards. */
}

static const kms_backend fake_backend = {.type = "TEST", .disconnect = fake_disconnect};

static kms_backend_conn *new_conn(void) {
  kms_backend_conn *c = calloc(1, sizeof *c);
  assert_non_null(c);
  return c;
}

static void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
  nanosleep(&ts, NULL);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void install(kmsi_slot *s, kms_backend_conn *c) {
  kmsi_slot_ref *old = NULL;
  assert_true(kmsi_slot_install(s, &fake_backend, c, &old));
  kmsi_slot_close_retired(s, old);
}

static void setup_counts(void) {
  atomic_store(&closes_total, 0);
  atomic_store(&closed_while_used, 0);
}

/* One thread, step by step: who closes what, and when. */
static void test_replace_and_clear_single_thread(void **state) {
  kmsi_slot s;
  const kms_backend *b;
  kms_backend_conn *a = new_conn(), *c2 = new_conn(), *got, *got2;
  kmsi_slot_ref *old = NULL;
  (void)state;
  setup_counts();
  kmsi_slot_init(&s);
  assert_false(kmsi_slot_acquire(&s, &b, &got));
  assert_null(got);
  assert_false(kmsi_slot_current(&s, NULL));

  install(&s, a);
  assert_true(kmsi_slot_current(&s, &b));
  assert_ptr_equal(b, &fake_backend);
  assert_true(kmsi_slot_acquire(&s, &b, &got));
  assert_ptr_equal(got, a);

  /* Replaced while a call holds it: nothing to close now, new calls get the
   * new one at once. */
  assert_true(kmsi_slot_install(&s, &fake_backend, c2, &old));
  assert_null(old);
  assert_int_equal(atomic_load(&a->closes), 0);
  assert_true(kmsi_slot_acquire(&s, &b, &got2));
  assert_ptr_equal(got2, c2);

  /* The last user of the old one closes it. */
  assert_true(kmsi_slot_release(&s, a));
  assert_int_equal(atomic_load(&a->closes), 1);
  assert_false(kmsi_slot_release(&s, a)); /* not the slot's any more */

  /* Cleared while unused by anyone but one call: that call closes it. */
  kmsi_slot_clear(&s, &old);
  assert_null(old);
  assert_false(kmsi_slot_acquire(&s, &b, &got));
  assert_int_equal(atomic_load(&c2->closes), 0);
  assert_true(kmsi_slot_release(&s, c2));
  assert_int_equal(atomic_load(&c2->closes), 1);
  kmsi_slot_drain(&s); /* nothing retired: returns */

  /* Replaced while unused: handed back for the caller to close. */
  kms_backend_conn *d = new_conn(), *e = new_conn();
  install(&s, d);
  assert_true(kmsi_slot_install(&s, &fake_backend, e, &old));
  assert_non_null(old);
  assert_int_equal(atomic_load(&d->closes), 0);
  kmsi_slot_close_retired(&s, old);
  assert_int_equal(atomic_load(&d->closes), 1);

  /* Destroy closes what is left. */
  kmsi_slot_destroy(&s);
  assert_int_equal(atomic_load(&e->closes), 1);
  assert_int_equal(atomic_load(&closes_total), 4);
  assert_int_equal(atomic_load(&closed_while_used), 0);
  free(a);
  free(c2);
  free(d);
  free(e);
}

/* ---------------------------------------------------------- many threads */

#define USERS 8
#define SWAPS 200

typedef struct stress {
  kmsi_slot slot;
  atomic_bool stop;
  atomic_long calls;
  atomic_long empty; /* acquires that found no connection */
} stress;

static void *user_main(void *arg) {
  stress *st = arg;
  unsigned seed = (unsigned)(uintptr_t)&seed;
  while (!atomic_load(&st->stop)) {
    const kms_backend *b;
    kms_backend_conn *c;
    if (!kmsi_slot_acquire(&st->slot, &b, &c)) {
      /* Pause rather than spin: a spinning thread starves the others on
       * one CPU, and under valgrind, which runs one thread at a time. */
      atomic_fetch_add(&st->empty, 1);
      sleep_us(100);
      continue;
    }
    atomic_fetch_add(&c->users, 1);
    if (atomic_load(&c->closes) != 0) atomic_fetch_add(&c->used_after_close, 1);
    sleep_us(50 + rand_r(&seed) % 200); /* a call in flight */
    if (atomic_load(&c->closes) != 0) atomic_fetch_add(&c->used_after_close, 1);
    atomic_fetch_sub(&c->users, 1);
    if (!kmsi_slot_release(&st->slot, c)) atomic_fetch_add(&c->used_after_close, 1);
    atomic_fetch_add(&st->calls, 1);
  }
  return NULL;
}

/* Busy users never leave the connection idle; each replacement still takes
 * effect at once, each old connection is closed once by its last user, and
 * none is closed under a user. */
static void test_replace_under_steady_use(void **state) {
  stress st;
  pthread_t users[USERS];
  kms_backend_conn *conns[SWAPS + 1];
  int64_t slowest = 0;
  (void)state;
  setup_counts();
  memset(&st, 0, sizeof st);
  kmsi_slot_init(&st.slot);
  conns[0] = new_conn();
  install(&st.slot, conns[0]);
  for (int i = 0; i < USERS; i++) assert_int_equal(pthread_create(&users[i], NULL, user_main, &st), 0);
  for (int i = 1; i <= SWAPS; i++) {
    const kms_backend *b;
    kms_backend_conn *now;
    int64_t t0;
    sleep_us(500);
    conns[i] = new_conn();
    t0 = now_ms();
    install(&st.slot, conns[i]);
    if (now_ms() - t0 > slowest) slowest = now_ms() - t0;
    /* New calls get the new connection at once. */
    assert_true(kmsi_slot_acquire(&st.slot, &b, &now));
    assert_ptr_equal(now, conns[i]);
    assert_true(kmsi_slot_release(&st.slot, now));
  }
  /* A replacement only swaps pointers; a generous bound for a loaded
   * machine or a sanitizer build, far below any call's duration sum. */
  assert_true(slowest < 1000);
  /* Disconnect: clear, then drain waits for the calls in flight. */
  {
    kmsi_slot_ref *old = NULL;
    kmsi_slot_clear(&st.slot, &old);
    kmsi_slot_close_retired(&st.slot, old);
  }
  kmsi_slot_drain(&st.slot);
  for (int i = 0; i <= SWAPS; i++) assert_int_equal(atomic_load(&conns[i]->closes), 1);
  atomic_store(&st.stop, true);
  for (int i = 0; i < USERS; i++) pthread_join(users[i], NULL);
  assert_true(atomic_load(&st.calls) > SWAPS);
  for (int i = 0; i <= SWAPS; i++) {
    assert_int_equal(atomic_load(&conns[i]->used_after_close), 0);
    free(conns[i]);
  }
  assert_int_equal(atomic_load(&closes_total), SWAPS + 1);
  assert_int_equal(atomic_load(&closed_while_used), 0);
  kmsi_slot_destroy(&st.slot);
}

typedef struct holder {
  kmsi_slot *slot;
  kms_backend_conn *conn;
  atomic_bool drained;
} holder;

static void *drain_main(void *arg) {
  holder *h = arg;
  kmsi_slot_drain(h->slot);
  atomic_store(&h->drained, true);
  return NULL;
}

/* Drain waits for a call still holding a cleared connection, and returns
 * once that call released it (and it was closed). */
static void test_drain_waits_for_calls_in_flight(void **state) {
  kmsi_slot s;
  holder h;
  pthread_t t;
  const kms_backend *b;
  kms_backend_conn *c = new_conn(), *got;
  kmsi_slot_ref *old = NULL;
  (void)state;
  setup_counts();
  kmsi_slot_init(&s);
  install(&s, c);
  assert_true(kmsi_slot_acquire(&s, &b, &got));
  kmsi_slot_clear(&s, &old);
  assert_null(old); /* in use: closed by the call */
  memset(&h, 0, sizeof h);
  h.slot = &s;
  assert_int_equal(pthread_create(&t, NULL, drain_main, &h), 0);
  sleep_us(100000);
  assert_false(atomic_load(&h.drained));
  assert_int_equal(atomic_load(&c->closes), 0);
  assert_true(kmsi_slot_release(&s, got));
  pthread_join(t, NULL);
  assert_true(atomic_load(&h.drained));
  assert_int_equal(atomic_load(&c->closes), 1);
  kmsi_slot_destroy(&s);
  assert_int_equal(atomic_load(&closes_total), 1);
  free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_replace_and_clear_single_thread),
      cmocka_unit_test(test_replace_under_steady_use),
      cmocka_unit_test(test_drain_waits_for_calls_in_flight),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
