/* test_p11_ivbatch.c - unit tests for lib/pkcs11/p11_ivbatch.c: every
 * IV of a batch is handed out once, its slot wiped as it goes; an empty
 * batch says so (the caller then asks the token for a new one) and takes a
 * refill at that boundary; adding more than fits keeps what fits; wiping
 * leaves nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "pkcs11/p11_ivbatch.h"

/* `count` distinct IVs: IV i is 12 bytes of (seed + i), never all zero. */
static void make_ivs(uint8_t *out, size_t count, unsigned seed) {
  for (size_t i = 0; i < count; i++) {
    memset(out + i * P11_GCM_IV_BYTES, (int)((seed + i) & 0xff), P11_GCM_IV_BYTES);
    out[i * P11_GCM_IV_BYTES] = (uint8_t)((seed + i) >> 8) | 0x80;
  }
}

static int all_zero(const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i]) return 0;
  return 1;
}

static void test_each_iv_once_and_wiped(void **state) {
  (void)state;
  static uint8_t fresh[P11_IV_BATCH * P11_GCM_IV_BYTES];
  static uint8_t got[P11_IV_BATCH][P11_GCM_IV_BYTES];
  p11_iv_batch b;
  uint8_t iv[P11_GCM_IV_BYTES];
  memset(&b, 0, sizeof b);
  assert_int_equal(p11_iv_batch_take(&b, iv), 0);

  make_ivs(fresh, P11_IV_BATCH, 1);
  assert_int_equal(p11_iv_batch_add(&b, fresh, P11_IV_BATCH), P11_IV_BATCH);
  for (size_t i = 0; i < P11_IV_BATCH; i++) {
    assert_int_equal(p11_iv_batch_take(&b, got[i]), 1);
    assert_int_equal(b.left, P11_IV_BATCH - 1 - i);
    /* The slot it came from, and every slot past the unused ones, is wiped. */
    assert_true(all_zero(b.iv[b.left], (P11_IV_BATCH - b.left) * P11_GCM_IV_BYTES));
  }
  /* Each of the batch came out exactly once, and nothing else did. */
  for (size_t i = 0; i < P11_IV_BATCH; i++) {
    size_t seen = 0;
    for (size_t j = 0; j < P11_IV_BATCH; j++)
      if (memcmp(got[j], fresh + i * P11_GCM_IV_BYTES, P11_GCM_IV_BYTES) == 0) seen++;
    assert_int_equal(seen, 1);
  }
  /* Empty at the boundary: the next take fails and leaves `iv` alone. */
  memset(iv, 0x5a, sizeof iv);
  assert_int_equal(p11_iv_batch_take(&b, iv), 0);
  for (size_t i = 0; i < sizeof iv; i++) assert_int_equal(iv[i], 0x5a);
  assert_true(all_zero(&b, sizeof b));
}

static void test_refill_at_the_boundary(void **state) {
  (void)state;
  static uint8_t first[P11_IV_BATCH * P11_GCM_IV_BYTES], second[P11_IV_BATCH * P11_GCM_IV_BYTES];
  p11_iv_batch b;
  uint8_t iv[P11_GCM_IV_BYTES];
  memset(&b, 0, sizeof b);
  make_ivs(first, P11_IV_BATCH, 1);
  make_ivs(second, P11_IV_BATCH, 1000);
  /* The caller keeps the first IV of a new batch and adds the rest. */
  assert_int_equal(p11_iv_batch_add(&b, first + P11_GCM_IV_BYTES, P11_IV_BATCH - 1),
                   P11_IV_BATCH - 1);
  for (size_t i = 0; i < P11_IV_BATCH - 1; i++) assert_int_equal(p11_iv_batch_take(&b, iv), 1);
  assert_int_equal(p11_iv_batch_take(&b, iv), 0);
  assert_int_equal(p11_iv_batch_add(&b, second + P11_GCM_IV_BYTES, P11_IV_BATCH - 1),
                   P11_IV_BATCH - 1);
  assert_int_equal(p11_iv_batch_take(&b, iv), 1);
  /* From the second batch, never the first. */
  int from_second = 0;
  for (size_t i = 0; i < P11_IV_BATCH; i++) {
    assert_memory_not_equal(iv, first + i * P11_GCM_IV_BYTES, P11_GCM_IV_BYTES);
    from_second += memcmp(iv, second + i * P11_GCM_IV_BYTES, P11_GCM_IV_BYTES) == 0;
  }
  assert_int_equal(from_second, 1);
}

static void test_add_keeps_what_fits(void **state) {
  (void)state;
  static uint8_t fresh[P11_IV_BATCH * P11_GCM_IV_BYTES];
  p11_iv_batch b;
  uint8_t iv[P11_GCM_IV_BYTES];
  memset(&b, 0, sizeof b);
  make_ivs(fresh, P11_IV_BATCH, 7);
  assert_int_equal(p11_iv_batch_add(&b, fresh, 10), 10);
  /* Two threads that both found the batch empty: the second one's leftovers
   * fill what is free and the rest is not kept. */
  assert_int_equal(p11_iv_batch_add(&b, fresh + 10 * P11_GCM_IV_BYTES, P11_IV_BATCH - 10),
                   P11_IV_BATCH - 10);
  assert_int_equal(p11_iv_batch_add(&b, fresh, 5), 0);
  assert_int_equal(b.left, P11_IV_BATCH);
  assert_int_equal(p11_iv_batch_take(&b, iv), 1);
  assert_int_equal(p11_iv_batch_add(&b, fresh, 5), 1);
  assert_int_equal(b.left, P11_IV_BATCH);
}

static void test_wipe(void **state) {
  (void)state;
  static uint8_t fresh[P11_IV_BATCH * P11_GCM_IV_BYTES];
  p11_iv_batch b;
  uint8_t iv[P11_GCM_IV_BYTES];
  memset(&b, 0, sizeof b);
  make_ivs(fresh, P11_IV_BATCH, 3);
  p11_iv_batch_add(&b, fresh, P11_IV_BATCH);
  p11_iv_batch_take(&b, iv);
  p11_iv_batch_wipe(&b);
  assert_true(all_zero(&b, sizeof b));
  assert_int_equal(p11_iv_batch_take(&b, iv), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_each_iv_once_and_wiped),
      cmocka_unit_test(test_refill_at_the_boundary),
      cmocka_unit_test(test_add_keeps_what_fits),
      cmocka_unit_test(test_wipe),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
