/* test_crypto.c - AES-GCM, canonical encryption contexts, ciphertext blobs
 * and root-key wrapping: round trips, tamper detection, and the root key
 * file's creation and permission rules, on real OpenSSL and real files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ids.h"
#include "core/secmem.h"
#include "crypto/aesgcm.h"
#include "crypto/blob.h"
#include "crypto/encctx.h"
#include "crypto/rootkey.h"

static const char *KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab";

static void test_aesgcm_round_trip_and_tamper(void **state) {
  uint8_t key[32], iv[12], tag[16], pt[100], ct[100], back[100];
  kerr err;
  rand_bytes(key, sizeof key);
  rand_bytes(iv, sizeof iv);
  rand_bytes(pt, sizeof pt);
  assert_int_equal(aesgcm_seal(key, iv, (const uint8_t *)"aad", 3, pt, sizeof pt, ct, tag, &err), KERR_OK);
  assert_memory_not_equal(pt, ct, sizeof pt);
  assert_int_equal(aesgcm_open(key, iv, (const uint8_t *)"aad", 3, ct, sizeof ct, tag, back, &err), KERR_OK);
  assert_memory_equal(pt, back, sizeof pt);
  /* wrong AAD, flipped ciphertext bit, flipped tag bit all fail */
  assert_int_equal(aesgcm_open(key, iv, (const uint8_t *)"aaX", 3, ct, sizeof ct, tag, back, &err),
                   KERR_INVALID_CIPHERTEXT);
  ct[5] ^= 1;
  assert_int_equal(aesgcm_open(key, iv, (const uint8_t *)"aad", 3, ct, sizeof ct, tag, back, &err),
                   KERR_INVALID_CIPHERTEXT);
  ct[5] ^= 1;
  tag[0] ^= 0x80;
  assert_int_equal(aesgcm_open(key, iv, (const uint8_t *)"aad", 3, ct, sizeof ct, tag, back, &err),
                   KERR_INVALID_CIPHERTEXT);
}

static void test_encctx_canonical_is_order_independent(void **state) {
  encctx_entry a[] = {{"b", "2"}, {"a", "1"}, {"c", ""}};
  encctx_entry b[] = {{"c", ""}, {"a", "1"}, {"b", "2"}};
  uint8_t *x = NULL, *y = NULL;
  size_t xl = 0, yl = 0;
  kerr err;
  assert_int_equal(encctx_canonical(a, 3, &x, &xl, &err), KERR_OK);
  assert_int_equal(encctx_canonical(b, 3, &y, &yl, &err), KERR_OK);
  assert_int_equal(xl, yl);
  assert_memory_equal(x, y, xl);
  /* count(3) then "a" first: 00000003 00000001 'a' 00000001 '1' ... */
  static const uint8_t head[] = {0, 0, 0, 3, 0, 0, 0, 1, 'a', 0, 0, 0, 1, '1'};
  assert_memory_equal(x, head, sizeof head);
  free(x);
  free(y);

  /* length prefixes keep {"ab":"c"} and {"a":"bc"} apart */
  encctx_entry c1[] = {{"ab", "c"}}, c2[] = {{"a", "bc"}};
  assert_int_equal(encctx_canonical(c1, 1, &x, &xl, &err), KERR_OK);
  assert_int_equal(encctx_canonical(c2, 1, &y, &yl, &err), KERR_OK);
  assert_int_equal(xl, yl);
  assert_memory_not_equal(x, y, xl);
  free(x);
  free(y);

  encctx_entry dup[] = {{"a", "1"}, {"a", "2"}};
  assert_int_equal(encctx_canonical(dup, 2, &x, &xl, &err), KERR_VALIDATION);
  assert_null(x);
  assert_int_equal(encctx_canonical(NULL, 0, &x, &xl, &err), KERR_OK);
  assert_int_equal(xl, 4);
  free(x);
}

static void test_blob_round_trip_tamper_and_context(void **state) {
  uint8_t material[32], other[32], mid[KBLOB_MATERIAL_ID_LEN];
  uint8_t *blob = NULL;
  size_t blob_len = 0;
  kblob_view v;
  kbytes pt = {0};
  kerr err;
  const char *msg = "attack at dawn";
  rand_bytes(material, sizeof material);
  rand_bytes(other, sizeof other);
  rand_bytes(mid, sizeof mid);

  assert_int_equal(kblob_seal(material, KEY_ID, mid, (const uint8_t *)"ctx", 3, (const uint8_t *)msg,
                              strlen(msg), &blob, &blob_len, &err),
                   KERR_OK);
  assert_int_equal(blob_len, KBLOB_OVERHEAD + strlen(msg));
  assert_int_equal(blob[0], KBLOB_VERSION);
  assert_int_equal(kblob_parse(blob, blob_len, &v, &err), KERR_OK);
  assert_string_equal(v.key_id, KEY_ID);
  assert_memory_equal(v.material_id, mid, sizeof mid);
  assert_int_equal(kblob_open(material, &v, (const uint8_t *)"ctx", 3, &pt, &err), KERR_OK);
  assert_int_equal(pt.len, strlen(msg));
  assert_memory_equal(pt.data, msg, pt.len);
  kbytes_wipe_free(&pt);

  /* wrong context, wrong material */
  assert_int_equal(kblob_open(material, &v, (const uint8_t *)"ctX", 3, &pt, &err), KERR_INVALID_CIPHERTEXT);
  assert_null(pt.data);
  assert_int_equal(kblob_open(other, &v, (const uint8_t *)"ctx", 3, &pt, &err), KERR_INVALID_CIPHERTEXT);

  /* every single-byte flip anywhere in the blob is detected */
  for (size_t i = 0; i < blob_len; i++) {
    blob[i] ^= 0x01;
    kerr_code rc = kblob_parse(blob, blob_len, &v, &err);
    if (rc == KERR_OK) rc = kblob_open(material, &v, (const uint8_t *)"ctx", 3, &pt, &err);
    assert_int_equal(rc, KERR_INVALID_CIPHERTEXT);
    blob[i] ^= 0x01;
  }
  /* truncated, empty, oversized, bad version */
  assert_int_equal(kblob_parse(blob, KBLOB_OVERHEAD, &v, &err), KERR_INVALID_CIPHERTEXT);
  assert_int_equal(kblob_parse(blob, 0, &v, &err), KERR_INVALID_CIPHERTEXT);
  assert_int_equal(kblob_parse(blob, KBLOB_OVERHEAD + KBLOB_MAX_PLAINTEXT + KBLOB_MAX_BODY_EXTRA + 1, &v, &err),
                   KERR_INVALID_CIPHERTEXT);
  blob[0] = 9;
  assert_int_equal(kblob_parse(blob, blob_len, &v, &err), KERR_INVALID_CIPHERTEXT);
  free(blob);
}

static void test_uuid_bytes(void **state) {
  uint8_t b[16];
  char back[UUID_STR_LEN];
  assert_int_equal(kblob_uuid_to_bytes(KEY_ID, b), 0);
  kblob_uuid_from_bytes(b, back);
  assert_string_equal(back, KEY_ID);
  assert_int_equal(kblob_uuid_to_bytes("1234abcd-12ab-34cd-56ef-1234567890a", b), -1);
  assert_int_equal(kblob_uuid_to_bytes("1234abcd_12ab-34cd-56ef-1234567890ab", b), -1);
  assert_int_equal(kblob_uuid_to_bytes("1234abcd-12ab-34cd-56ef-1234567890ag", b), -1);
}

static void test_rootkey_file_and_wrapping(void **state) {
  char dir[] = "/tmp/kmsd-test-crypto-XXXXXX";
  char path[128];
  rootkey *rk = NULL, *rk2 = NULL;
  uint8_t material[32], wrapped[ROOTKEY_WRAPPED_LEN], back[32];
  struct stat st;
  kerr err;
  const char *mid = "aa00000000000000000000000000000000000000000000000000000000000000";

  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/root.key", dir);
  assert_int_equal(rootkey_load_or_create(path, &rk, &err), KERR_OK);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(st.st_size, ROOTKEY_LEN);

  rand_bytes(material, sizeof material);
  assert_int_equal(rootkey_wrap(rk, KEY_ID, mid, material, wrapped, &err), KERR_OK);
  assert_memory_not_equal(wrapped + 1 + 12, material, 32);

  /* reloading the file gives the same key */
  assert_int_equal(rootkey_load_or_create(path, &rk2, &err), KERR_OK);
  assert_int_equal(rootkey_unwrap(rk2, KEY_ID, mid, wrapped, sizeof wrapped, back, &err), KERR_OK);
  assert_memory_equal(back, material, 32);
  /* bound to key id and material id */
  assert_int_equal(rootkey_unwrap(rk2, "1234abcd-12ab-34cd-56ef-1234567890ac", mid, wrapped,
                                  sizeof wrapped, back, &err),
                   KERR_INTERNAL);
  assert_int_equal(rootkey_unwrap(rk2, KEY_ID, "bb", wrapped, sizeof wrapped, back, &err), KERR_INTERNAL);
  wrapped[20] ^= 1;
  assert_int_equal(rootkey_unwrap(rk2, KEY_ID, mid, wrapped, sizeof wrapped, back, &err), KERR_INTERNAL);
  rootkey_free(rk2);
  rk2 = NULL;

  /* group/other-readable key files are refused */
  assert_int_equal(chmod(path, 0644), 0);
  assert_int_equal(rootkey_load_or_create(path, &rk2, &err), KERR_INTERNAL);
  assert_null(rk2);
  assert_non_null(strstr(err.msg, "chmod 600"));
  /* a truncated key file is refused */
  assert_int_equal(chmod(path, 0600), 0);
  assert_int_equal(truncate(path, 16), 0);
  assert_int_equal(rootkey_load_or_create(path, &rk2, &err), KERR_INTERNAL);
  assert_null(rk2);

  rootkey_free(rk);
  unlink(path);
  rmdir(dir);
}

/* The check value recognises its own root key and nothing else. */
static void test_rootkey_check_value(void **state) {
  char dir[] = "/tmp/kmsd-test-check-XXXXXX";
  char path_a[128], path_b[128];
  rootkey *a = NULL, *b = NULL;
  uint8_t check[ROOTKEY_CHECK_LEN], again[ROOTKEY_CHECK_LEN];
  kerr err;
  (void)state;
  assert_non_null(mkdtemp(dir));
  snprintf(path_a, sizeof path_a, "%s/a.key", dir);
  snprintf(path_b, sizeof path_b, "%s/b.key", dir);
  assert_int_equal(rootkey_load_or_create(path_a, &a, &err), KERR_OK);
  assert_int_equal(rootkey_load_or_create(path_b, &b, &err), KERR_OK);

  assert_int_equal(rootkey_check_value_make(a, check, &err), KERR_OK);
  assert_true(rootkey_check_value_matches(a, check, sizeof check));
  assert_false(rootkey_check_value_matches(b, check, sizeof check));
  /* fresh IV each time, both valid */
  assert_int_equal(rootkey_check_value_make(a, again, &err), KERR_OK);
  assert_memory_not_equal(check, again, sizeof check);
  assert_true(rootkey_check_value_matches(a, again, sizeof again));
  /* damaged or cut short: no match */
  assert_false(rootkey_check_value_matches(a, check, sizeof check - 1));
  assert_false(rootkey_check_value_matches(a, check, 0));
  check[sizeof check - 1] ^= 0x80;
  assert_false(rootkey_check_value_matches(a, check, sizeof check));
  /* a material wrapped for a key is not a check value */
  uint8_t material[32] = {0}, wrapped[ROOTKEY_WRAPPED_LEN];
  assert_int_equal(rootkey_wrap(a, KEY_ID, "v1", material, wrapped, &err), KERR_OK);
  assert_false(rootkey_check_value_matches(a, wrapped, sizeof wrapped));

  rootkey_free(a);
  rootkey_free(b);
  unlink(path_a);
  unlink(path_b);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_aesgcm_round_trip_and_tamper),
      cmocka_unit_test(test_encctx_canonical_is_order_independent),
      cmocka_unit_test(test_blob_round_trip_tamper_and_context),
      cmocka_unit_test(test_uuid_bytes),
      cmocka_unit_test(test_rootkey_file_and_wrapping),
      cmocka_unit_test(test_rootkey_check_value),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
