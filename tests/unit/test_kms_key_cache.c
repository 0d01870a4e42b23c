/* test_kms_key_cache.c - the resolved-key cache (lib/kms/kms_key_cache.h):
 * an entry is served only for the stamp it was filled at and for exactly
 * the question it answers (reference, account, Region, options); a copy
 * handed out is the caller's; a long description is not kept; the bound
 * holds (one entry per slot); threads sharing slots never see a mix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms/kms_key_cache.h"

#define KEY "00000000-0000-4000-8000-000000000001"
#define ACCOUNT "111122223333"
#define REGION "us-east-1"

static void make_key(kmsi_key *k, const char *description) {
  memset(k, 0, sizeof *k);
  strcpy(k->row.key_id, KEY);
  strcpy(k->row.account_id, ACCOUNT);
  strcpy(k->row.region, REGION);
  strcpy(k->row.key_state, "Enabled");
  k->row.description = strdup(description);
  k->row.custom_key_store_id = strdup("cks-1234567890abcdef0");
  k->row.policy_version = 7;
  strcpy(k->arn, "arn:aws:kms:us-east-1:111122223333:key/" KEY);
}

static store_stamp stamp_of(uint32_t v) {
  store_stamp s;
  memset(&s, 0, sizeof s);
  s.w[2] = v;
  return s;
}

static void test_bounds(void **state) {
  kmsi_key_cache *c = NULL;
  kerr err;
  (void)state;
  assert_int_equal(kmsi_key_cache_new(0, &c, &err), KERR_VALIDATION);
  assert_null(c);
  assert_int_equal(kmsi_key_cache_new(KMS_CACHE_ENTRIES_MAX + 1, &c, &err), KERR_VALIDATION);
  assert_null(c);
  assert_int_equal(kmsi_key_cache_new(1, &c, &err), KERR_OK);
  kmsi_key_cache_free(c);
  kmsi_key_cache_free(NULL);
}

static void test_hit_only_for_its_stamp_and_question(void **state) {
  kmsi_key_cache *c = NULL;
  kmsi_key k, got;
  kerr err;
  store_stamp s1 = stamp_of(1), s2 = stamp_of(2);
  unsigned crypto = kmsi_key_cache_opts(&KMSI_CRYPTO), blob = kmsi_key_cache_opts(&KMSI_BLOB);
  uint64_t hits, misses;
  (void)state;
  assert_int_not_equal(crypto, blob);
  assert_int_equal(kmsi_key_cache_new(64, &c, &err), KERR_OK);
  make_key(&k, "first");
  assert_false(kmsi_key_cache_get(c, &s1, ACCOUNT, REGION, crypto, "alias/a", &got));
  kmsi_key_cache_put(c, &s1, ACCOUNT, REGION, crypto, "alias/a", &k);

  assert_true(kmsi_key_cache_get(c, &s1, ACCOUNT, REGION, crypto, "alias/a", &got));
  assert_string_equal(got.row.key_id, KEY);
  assert_string_equal(got.row.description, "first");
  assert_string_equal(got.row.custom_key_store_id, "cks-1234567890abcdef0");
  assert_null(got.row.xks_key_id);
  assert_int_equal(got.row.policy_version, 7);
  assert_string_equal(got.arn, k.arn);
  /* the copy is the caller's: changing it changes no entry */
  got.row.description[0] = 'X';
  kmsi_key_clear(&got);
  assert_true(kmsi_key_cache_get(c, &s1, ACCOUNT, REGION, crypto, "alias/a", &got));
  assert_string_equal(got.row.description, "first");
  kmsi_key_clear(&got);

  /* anything committed since: a miss, and the copy is zeroed */
  assert_false(kmsi_key_cache_get(c, &s2, ACCOUNT, REGION, crypto, "alias/a", &got));
  assert_null(got.row.description);
  /* another question: reference, account, Region, options */
  assert_false(kmsi_key_cache_get(c, &s1, ACCOUNT, REGION, crypto, "alias/b", &got));
  assert_false(kmsi_key_cache_get(c, &s1, "444455556666", REGION, crypto, "alias/a", &got));
  assert_false(kmsi_key_cache_get(c, &s1, ACCOUNT, "eu-west-1", crypto, "alias/a", &got));
  assert_false(kmsi_key_cache_get(c, &s1, ACCOUNT, REGION, blob, "alias/a", &got));

  /* a refill at the new stamp replaces the entry */
  kmsi_key_clear(&k);
  make_key(&k, "second");
  kmsi_key_cache_put(c, &s2, ACCOUNT, REGION, crypto, "alias/a", &k);
  assert_false(kmsi_key_cache_get(c, &s1, ACCOUNT, REGION, crypto, "alias/a", &got));
  assert_true(kmsi_key_cache_get(c, &s2, ACCOUNT, REGION, crypto, "alias/a", &got));
  assert_string_equal(got.row.description, "second");
  kmsi_key_clear(&got);

  kmsi_key_cache_counts(c, &hits, &misses);
  assert_int_equal(hits, 3);
  assert_int_equal(misses, 7);
  kmsi_key_clear(&k);
  kmsi_key_cache_free(c);
}

static void test_long_description_not_kept(void **state) {
  kmsi_key_cache *c = NULL;
  kmsi_key k, got;
  kerr err;
  store_stamp s1 = stamp_of(1);
  unsigned crypto = kmsi_key_cache_opts(&KMSI_CRYPTO);
  char *long_text = malloc(KMSI_KEY_CACHE_DESCRIPTION_MAX + 2);
  (void)state;
  assert_non_null(long_text);
  memset(long_text, 'd', KMSI_KEY_CACHE_DESCRIPTION_MAX + 1);
  long_text[KMSI_KEY_CACHE_DESCRIPTION_MAX + 1] = '\0';
  assert_int_equal(kmsi_key_cache_new(8, &c, &err), KERR_OK);
  make_key(&k, long_text);
  kmsi_key_cache_put(c, &s1, ACCOUNT, REGION, crypto, KEY, &k);
  assert_false(kmsi_key_cache_get(c, &s1, ACCOUNT, REGION, crypto, KEY, &got));
  long_text[KMSI_KEY_CACHE_DESCRIPTION_MAX] = '\0'; /* at the limit: kept */
  kmsi_key_clear(&k);
  make_key(&k, long_text);
  kmsi_key_cache_put(c, &s1, ACCOUNT, REGION, crypto, KEY, &k);
  assert_true(kmsi_key_cache_get(c, &s1, ACCOUNT, REGION, crypto, KEY, &got));
  kmsi_key_clear(&got);
  kmsi_key_clear(&k);
  kmsi_key_cache_free(c);
  free(long_text);
}

/* One slot: every fill replaces the last, and the cache never holds more. */
static void test_one_slot(void **state) {
  kmsi_key_cache *c = NULL;
  kmsi_key k, got;
  kerr err;
  store_stamp s1 = stamp_of(1);
  unsigned crypto = kmsi_key_cache_opts(&KMSI_CRYPTO);
  (void)state;
  assert_int_equal(kmsi_key_cache_new(1, &c, &err), KERR_OK);
  make_key(&k, "k");
  kmsi_key_cache_put(c, &s1, ACCOUNT, REGION, crypto, "alias/a", &k);
  kmsi_key_cache_put(c, &s1, ACCOUNT, REGION, crypto, "alias/b", &k);
  assert_false(kmsi_key_cache_get(c, &s1, ACCOUNT, REGION, crypto, "alias/a", &got));
  assert_true(kmsi_key_cache_get(c, &s1, ACCOUNT, REGION, crypto, "alias/b", &got));
  kmsi_key_clear(&got);
  kmsi_key_clear(&k);
  kmsi_key_cache_free(c);
}

/* Threads filling and reading the same few slots at changing stamps: every
 * hit is the entry of exactly that stamp (its description names it), and
 * nothing leaks or is freed twice (ASan). */
#define THREADS 4
#define ROUNDS 20000

typedef struct worker_arg {
  kmsi_key_cache *c;
  unsigned seed;
  int wrong;
} worker_arg;

static void *worker(void *varg) {
  worker_arg *a = varg;
  unsigned crypto = kmsi_key_cache_opts(&KMSI_CRYPTO);
  static const char *const refs[] = {"alias/a", "alias/b", "alias/c"};
  for (int i = 0; i < ROUNDS; i++) {
    unsigned r = rand_r(&a->seed);
    uint32_t v = r % 5;
    store_stamp st = stamp_of(v);
    const char *ref = refs[(r / 5) % 3];
    char text[16];
    kmsi_key k, got;
    snprintf(text, sizeof text, "stamp-%u", (unsigned)v);
    if ((r / 15) % 2) {
      make_key(&k, text);
      kmsi_key_cache_put(a->c, &st, ACCOUNT, REGION, crypto, ref, &k);
      kmsi_key_clear(&k);
    } else if (kmsi_key_cache_get(a->c, &st, ACCOUNT, REGION, crypto, ref, &got)) {
      if (strcmp(got.row.description, text) != 0) a->wrong++;
      kmsi_key_clear(&got);
    }
  }
  return NULL;
}

static void test_threads(void **state) {
  kmsi_key_cache *c = NULL;
  kerr err;
  pthread_t t[THREADS];
  worker_arg args[THREADS];
  uint64_t hits, misses;
  (void)state;
  assert_int_equal(kmsi_key_cache_new(2, &c, &err), KERR_OK); /* slots shared on purpose */
  for (int i = 0; i < THREADS; i++) {
    args[i] = (worker_arg){c, (unsigned)i + 1, 0};
    assert_int_equal(pthread_create(&t[i], NULL, worker, &args[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) {
    assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(args[i].wrong, 0);
  }
  kmsi_key_cache_counts(c, &hits, &misses);
  assert_true(hits > 0 && misses > 0);
  kmsi_key_cache_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bounds),
      cmocka_unit_test(test_hit_only_for_its_stamp_and_question),
      cmocka_unit_test(test_long_description_not_kept),
      cmocka_unit_test(test_one_slot),
      cmocka_unit_test(test_threads),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
