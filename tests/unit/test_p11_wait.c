/* test_p11_wait.c - unit tests for the session pool's acquire timeout
 * (p11_token_set_acquire_timeout, what kmsd --hsm-timeout sets) against a real
 * SoftHSM2 token in a temporary directory: the bound is checked, a full pool
 * fails after the configured wait and not the default one, and a session
 * released during the wait is handed over. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pkcs11/p11.h"
#include "pkcs11/p11_softhsm.h"
#include "softhsm_tokens.h"

#define SO_PIN "so-secret-1234"
#define USER_PIN "kmsuser-pin-5678"
#define LABEL "hsm-wait"

static char data_dir[] = "/tmp/kmsd-p11-wait-XXXXXX";
static p11_module *module;

static int group_setup(void **state) {
  (void)state;
  const char *labels[] = {LABEL};
  return softhsm_tokens_setup(data_dir, NULL, 0, &module, labels, 1, SO_PIN, USER_PIN);
}

static int group_teardown(void **state) {
  (void)state;
  return softhsm_tokens_teardown(data_dir, module);
}

static long elapsed_ms(const struct timespec *from) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - from->tv_sec) * 1000L + (now.tv_nsec - from->tv_nsec) / 1000000L;
}

static void test_timeout_bounds_and_full_pool(void **state) {
  (void)state;
  p11_token *tok = NULL;
  p11_session *held = NULL, *other = NULL;
  p11_err err;
  struct timespec t0;
  assert_int_equal(p11_token_open(module, LABEL, 1, &tok, &err), KERR_OK);
  assert_int_equal(p11_token_login(tok, USER_PIN, &err), KERR_OK);

  assert_int_equal(p11_token_set_acquire_timeout(tok, 150, &err), KERR_OK);
  /* Out of range: refused, and the 150 ms stays. */
  assert_int_equal(p11_token_set_acquire_timeout(tok, 0, &err), KERR_VALIDATION);
  assert_int_equal(p11_token_set_acquire_timeout(tok, P11_POOL_WAIT_MAX_MS + 1, &err),
                   KERR_VALIDATION);
  assert_int_equal(p11_token_set_acquire_timeout(tok, -1, &err), KERR_VALIDATION);

  assert_int_equal(p11_session_acquire(tok, &held, &err), KERR_OK);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(p11_session_acquire(tok, &other, &err), KERR_DEPENDENCY_TIMEOUT);
  long waited = elapsed_ms(&t0);
  assert_null(other);
  assert_true(waited >= 140);
  assert_true(waited < 2000); /* the configured wait, far from the 10 s default */
  assert_non_null(strstr(err.e.msg, "150 ms"));
  assert_int_equal(err.rv, CKR_OK); /* we gave up; the module said nothing */
  /* The held session still works, and the pool is whole afterwards. */
  uint8_t buf[16];
  assert_int_equal(p11_random(held, buf, sizeof buf, &err), KERR_OK);
  p11_session_release(held);
  assert_int_equal(p11_session_acquire(tok, &other, &err), KERR_OK);
  p11_session_release(other);
  assert_int_equal(p11_token_open_sessions(tok), 1);
  p11_token_close(tok);
}

typedef struct releaser {
  p11_session *s;
  useconds_t after_us;
} releaser;

static void *release_later(void *arg) {
  releaser *r = arg;
  usleep(r->after_us);
  p11_session_release(r->s);
  return NULL;
}

static void test_release_during_wait_is_handed_over(void **state) {
  (void)state;
  p11_token *tok = NULL;
  p11_session *s = NULL;
  p11_err err;
  pthread_t th;
  struct timespec t0;
  assert_int_equal(p11_token_open(module, LABEL, 1, &tok, &err), KERR_OK);
  assert_int_equal(p11_token_login(tok, USER_PIN, &err), KERR_OK);
  assert_int_equal(p11_token_set_acquire_timeout(tok, 5000, &err), KERR_OK);
  releaser r = {NULL, 100000};
  assert_int_equal(p11_session_acquire(tok, &r.s, &err), KERR_OK);
  assert_int_equal(pthread_create(&th, NULL, release_later, &r), 0);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  long waited = elapsed_ms(&t0);
  pthread_join(th, NULL);
  assert_true(waited >= 80);
  assert_true(waited < 4000); /* woken by the release, not by the deadline */
  p11_session_release(s);
  p11_token_close(tok);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_timeout_bounds_and_full_pool),
      cmocka_unit_test(test_release_during_wait_is_handed_over),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
