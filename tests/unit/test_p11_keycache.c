/* test_p11_keycache.c - unit tests for working copies (lib/pkcs11/p11.c)
 * and the cache that keeps them (lib/pkcs11/p11_keycache.c), against a real
 * SoftHSM2 token in a temporary directory: what a copy is (a session object,
 * sensitive, never extractable, not counted as a second key), that it dies
 * with its login, that the cache serves a copy until its refresh time, a
 * logout, a forget or a stale handle, that a copy out of the cache is
 * destroyed only when the last request holding it gives it back, and that
 * no copy is left behind (the token's session objects are counted). */
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

#include "pkcs11/p11.h"
#include "pkcs11/p11_keycache.h"
#include "pkcs11/p11_softhsm.h"
#include "softhsm_tokens.h"

#define SO_PIN "so-secret-1234"
#define USER_PIN "kmsuser-pin-5678"
#define LABEL "hsm-cache"

static char data_dir[] = "/tmp/kmsd-p11-keycache-test-XXXXXX";
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

/* A logged-in token and one of its sessions, for one test. */
typedef struct fixture {
  p11_token *tok;
  p11_session *s;
} fixture;

static int setup(void **state) {
  static fixture f;
  p11_err err;
  memset(&f, 0, sizeof f);
  if (p11_token_open(module, LABEL, 4, &f.tok, &err)) return -1;
  if (p11_token_login(f.tok, USER_PIN, &err)) return -1;
  if (p11_session_acquire_as(f.tok, CKU_USER, &f.s, &err)) return -1;
  *state = &f;
  return 0;
}

/* Destroys every object the test made (token keys and copies alike). */
static int teardown(void **state) {
  fixture *f = *state;
  p11_err err;
  p11_objects_destroy_all(f->s, NULL, &err);
  p11_session_release(f->s);
  p11_token_close(f->tok);
  return 0;
}

/* How many session objects (working copies) the token holds. */
static size_t session_objects(p11_session *s) {
  const CK_FUNCTION_LIST *fn = p11_module_functions(module);
  CK_BBOOL off_token = CK_FALSE;
  CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &off_token, sizeof off_token}};
  CK_OBJECT_HANDLE found[64];
  CK_ULONG n = 0;
  assert_int_equal(fn->C_FindObjectsInit(p11_session_handle(s), tmpl, 1), CKR_OK);
  assert_int_equal(fn->C_FindObjects(p11_session_handle(s), found, 64, &n), CKR_OK);
  assert_int_equal(fn->C_FindObjectsFinal(p11_session_handle(s)), CKR_OK);
  return n;
}

static CK_RV attribute_bool(p11_session *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                            CK_BBOOL *out) {
  CK_ATTRIBUTE a = {type, out, sizeof *out};
  return p11_module_functions(module)->C_GetAttributeValue(p11_session_handle(s), h, &a, 1);
}

static int exists(p11_session *s, CK_OBJECT_HANDLE h) {
  CK_BBOOL b;
  return attribute_bool(s, h, CKA_TOKEN, &b) == CKR_OK;
}

/* Encrypt with `key` and decrypt the result with `other`: both are the same key. */
static void assert_same_key(p11_session *s, CK_OBJECT_HANDLE key, CK_OBJECT_HANDLE other) {
  static const uint8_t msg[] = "working copy";
  uint8_t iv[P11_GCM_IV_BYTES];
  kbytes ct = {0}, pt = {0};
  p11_err err;
  assert_int_equal(p11_gcm_encrypt(s, key, NULL, 0, msg, sizeof msg, iv, &ct, &err), KERR_OK);
  assert_int_equal(p11_gcm_decrypt(s, other, iv, NULL, 0, ct.data, ct.len, &pt, &err), KERR_OK);
  assert_int_equal(pt.len, sizeof msg);
  assert_memory_equal(pt.data, msg, sizeof msg);
  kbytes_wipe_free(&ct);
  kbytes_wipe_free(&pt);
}

static CK_OBJECT_HANDLE make_key(p11_session *s, const char *id) {
  CK_OBJECT_HANDLE key;
  p11_err err;
  assert_int_equal(p11_key_generate(s, id, P11_KEY_DATA, &key, &err), KERR_OK);
  return key;
}

static void test_working_copy(void **state) {
  fixture *f = *state;
  p11_err err;
  CK_OBJECT_HANDLE key = make_key(f->s, "copy-me"), copy, found;
  CK_BBOOL b;
  assert_int_equal(p11_key_copy_working(f->s, key, &copy, &err), KERR_OK);
  assert_true(copy != key);
  assert_int_equal(attribute_bool(f->s, copy, CKA_TOKEN, &b), CKR_OK);
  assert_false(b);
  assert_int_equal(attribute_bool(f->s, copy, CKA_SENSITIVE, &b), CKR_OK);
  assert_true(b);
  assert_int_equal(attribute_bool(f->s, copy, CKA_EXTRACTABLE, &b), CKR_OK);
  assert_false(b);
  assert_int_equal(attribute_bool(f->s, copy, CKA_PRIVATE, &b), CKR_OK);
  assert_true(b);
  uint8_t value[64];
  CK_ATTRIBUTE a = {CKA_VALUE, value, sizeof value};
  assert_int_equal(p11_module_functions(module)->C_GetAttributeValue(p11_session_handle(f->s), copy,
                                                                     &a, 1),
                   CKR_ATTRIBUTE_SENSITIVE);
  /* The copy carries the key's id but is not a second key. */
  assert_int_equal(p11_key_find(f->s, "copy-me", &found, &err), KERR_OK);
  assert_int_equal(found, key);
  assert_same_key(f->s, copy, key);
  assert_int_equal(session_objects(f->s), 1);
  p11_key_drop_working(f->s, copy, p11_session_generation(f->s));
  assert_false(exists(f->s, copy));
  assert_int_equal(session_objects(f->s), 0);
}

/* A logout ends every copy of the login; a session of the old generation
 * can make no new one, and dropping an old copy touches nothing. */
static void test_copy_dies_with_its_login(void **state) {
  fixture *f = *state;
  p11_err err;
  CK_OBJECT_HANDLE key = make_key(f->s, "login-bound"), copy, other;
  unsigned old_generation = p11_session_generation(f->s);
  assert_int_equal(p11_key_copy_working(f->s, key, &copy, &err), KERR_OK);
  assert_int_equal(p11_token_logout(f->tok, &err), KERR_OK);
  assert_int_equal(p11_key_copy_working(f->s, key, &other, &err), KERR_INVALID_STATE);
  assert_int_equal(err.rv, CKR_USER_NOT_LOGGED_IN);
  p11_session_release(f->s);
  f->s = NULL;
  assert_int_equal(p11_token_login(f->tok, USER_PIN, &err), KERR_OK);
  assert_int_equal(p11_session_acquire_as(f->tok, CKU_USER, &f->s, &err), KERR_OK);
  assert_true(p11_session_generation(f->s) != old_generation);
  assert_false(exists(f->s, copy));
  assert_int_equal(session_objects(f->s), 0);
  p11_key_drop_working(f->s, copy, old_generation); /* a no-op: the generation is gone */
  /* (A logout ends the handles of private objects too: find the key again.) */
  assert_int_equal(p11_key_find(f->s, "login-bound", &key, &err), KERR_OK);
  assert_true(exists(f->s, key));
}

static void test_bounds_and_no_cache(void **state) {
  fixture *f = *state;
  p11_keycache *c = (p11_keycache *)1;
  p11_keyref ref;
  p11_err err;
  assert_int_equal(p11_keycache_new(P11_KEYCACHE_SLOTS_MAX + 1, 1000, &c, &err), KERR_VALIDATION);
  assert_null(c);
  assert_int_equal(p11_keycache_new(4, 0, &c, &err), KERR_VALIDATION);
  assert_int_equal(p11_keycache_new(4, 3600001, &c, &err), KERR_VALIDATION);
  /* No slots: no cache, and every get finds the token key itself. */
  assert_int_equal(p11_keycache_new(0, 1000, &c, &err), KERR_OK);
  assert_null(c);
  CK_OBJECT_HANDLE key = make_key(f->s, "uncached");
  assert_int_equal(p11_keycache_get(NULL, f->s, "uncached", &ref, &err), KERR_OK);
  assert_int_equal(ref.handle, key);
  assert_null(ref.entry);
  p11_keycache_put(NULL, f->s, &ref);
  assert_int_equal(p11_keycache_get(NULL, f->s, "absent", &ref, &err), KERR_NOT_FOUND);
  assert_int_equal(session_objects(f->s), 0);
}

static void test_hits_until_logout(void **state) {
  fixture *f = *state;
  p11_keycache *c = NULL;
  p11_keyref a, b;
  p11_err err;
  uint64_t hits, misses;
  CK_OBJECT_HANDLE key = make_key(f->s, "hot");
  assert_int_equal(p11_keycache_new(16, 60000, &c, &err), KERR_OK);
  assert_int_equal(p11_keycache_get(c, f->s, "hot", &a, &err), KERR_OK);
  assert_true(a.handle != key);
  assert_same_key(f->s, a.handle, key);
  p11_keycache_put(c, f->s, &a);
  assert_int_equal(p11_keycache_get(c, f->s, "hot", &b, &err), KERR_OK);
  CK_OBJECT_HANDLE first = b.handle;
  p11_keycache_put(c, f->s, &b);
  p11_keycache_counts(c, &hits, &misses);
  assert_int_equal(hits, 1);
  assert_int_equal(misses, 1);
  assert_int_equal(session_objects(f->s), 1);

  /* Log out and in: the cached copy belongs to the old login. */
  p11_session_release(f->s);
  assert_int_equal(p11_token_logout(f->tok, &err), KERR_OK);
  assert_int_equal(p11_token_login(f->tok, USER_PIN, &err), KERR_OK);
  assert_int_equal(p11_session_acquire_as(f->tok, CKU_USER, &f->s, &err), KERR_OK);
  assert_int_equal(p11_key_find(f->s, "hot", &key, &err), KERR_OK); /* its handle ended too */
  assert_int_equal(p11_keycache_get(c, f->s, "hot", &a, &err), KERR_OK);
  assert_true(a.handle != first);
  assert_same_key(f->s, a.handle, key);
  p11_keycache_put(c, f->s, &a);
  p11_keycache_counts(c, &hits, &misses);
  assert_int_equal(misses, 2);
  assert_int_equal(session_objects(f->s), 1);
  p11_keycache_free(c);
}

/* A forgotten copy still serves the request holding it, and is destroyed
 * when that request gives it back; a key gone from the token is a miss
 * that answers KERR_NOT_FOUND. */
static void test_forget_waits_for_holders(void **state) {
  fixture *f = *state;
  p11_keycache *c = NULL;
  p11_keyref held, next;
  p11_err err;
  CK_OBJECT_HANDLE key = make_key(f->s, "doomed");
  assert_int_equal(p11_keycache_new(16, 60000, &c, &err), KERR_OK);
  assert_int_equal(p11_keycache_get(c, f->s, "doomed", &held, &err), KERR_OK);
  p11_keycache_forget(c, f->s, "doomed");
  assert_true(exists(f->s, held.handle));
  assert_int_equal(p11_keycache_get(c, f->s, "doomed", &next, &err), KERR_OK);
  assert_true(next.handle != held.handle);
  assert_int_equal(session_objects(f->s), 2);
  CK_OBJECT_HANDLE old = held.handle;
  assert_same_key(f->s, old, key);
  p11_keycache_put(c, f->s, &held);
  assert_false(exists(f->s, old));
  assert_true(exists(f->s, next.handle));
  p11_keycache_put(c, f->s, &next);
  assert_int_equal(session_objects(f->s), 1);

  /* Deleted on the token: forget, then the next get finds nothing. */
  assert_int_equal(p11_key_destroy(f->s, key, &err), KERR_OK);
  p11_keycache_forget(c, f->s, "doomed");
  assert_int_equal(session_objects(f->s), 0);
  assert_int_equal(p11_keycache_get(c, f->s, "doomed", &next, &err), KERR_NOT_FOUND);
  p11_keycache_forget(c, f->s, "never-cached"); /* harmless */
  p11_keycache_free(c);
}

/* Past its refresh time an entry is found and copied again; the old copy goes. */
static void test_refresh(void **state) {
  fixture *f = *state;
  p11_keycache *c = NULL;
  p11_keyref ref;
  p11_err err;
  uint64_t hits, misses;
  CK_OBJECT_HANDLE key = make_key(f->s, "refreshed");
  assert_int_equal(p11_keycache_new(16, 1, &c, &err), KERR_OK);
  assert_int_equal(p11_keycache_get(c, f->s, "refreshed", &ref, &err), KERR_OK);
  CK_OBJECT_HANDLE first = ref.handle;
  p11_keycache_put(c, f->s, &ref);
  struct timespec pause = {0, 5 * 1000 * 1000};
  nanosleep(&pause, NULL);
  assert_int_equal(p11_keycache_get(c, f->s, "refreshed", &ref, &err), KERR_OK);
  assert_true(ref.handle != first);
  assert_false(exists(f->s, first));
  assert_same_key(f->s, ref.handle, key);
  p11_keycache_put(c, f->s, &ref);
  p11_keycache_counts(c, &hits, &misses);
  assert_int_equal(hits, 0);
  assert_int_equal(misses, 2);
  assert_int_equal(session_objects(f->s), 1);
  p11_keycache_free(c);
}

/* A copy the module no longer knows: the whole cache is forgotten (the
 * module may have dropped the others too), no entry is destroyed (a
 * dropped copy's number may name another object by then), and each key is
 * found and copied again at its next get. */
static void test_stale_handle(void **state) {
  fixture *f = *state;
  p11_keycache *c = NULL;
  p11_keyref ref, other;
  p11_err err;
  uint64_t hits, misses;
  uint8_t iv[P11_GCM_IV_BYTES];
  kbytes ct = {0};
  CK_OBJECT_HANDLE key = make_key(f->s, "vanishing"), bystander = make_key(f->s, "bystander");
  assert_int_equal(p11_keycache_new(16, 60000, &c, &err), KERR_OK);
  assert_int_equal(p11_keycache_get(c, f->s, "bystander", &other, &err), KERR_OK);
  CK_OBJECT_HANDLE bystander_copy = other.handle;
  p11_keycache_put(c, f->s, &other);
  assert_int_equal(p11_keycache_get(c, f->s, "vanishing", &ref, &err), KERR_OK);
  assert_int_equal(p11_key_destroy(f->s, ref.handle, &err), KERR_OK);
  assert_int_not_equal(p11_gcm_encrypt(f->s, ref.handle, NULL, 0, (const uint8_t *)"x", 1, iv, &ct, &err),
                       KERR_OK);
  assert_true(err.rv == CKR_KEY_HANDLE_INVALID || err.rv == CKR_OBJECT_HANDLE_INVALID);
  p11_keycache_stale(c, &ref);
  p11_keycache_put(c, f->s, &ref);
  assert_true(exists(f->s, key));
  assert_true(exists(f->s, bystander_copy)); /* forgotten, not destroyed */
  assert_int_equal(p11_keycache_get(c, f->s, "vanishing", &ref, &err), KERR_OK);
  assert_same_key(f->s, ref.handle, key);
  p11_keycache_put(c, f->s, &ref);
  assert_int_equal(p11_keycache_get(c, f->s, "bystander", &other, &err), KERR_OK);
  assert_true(other.handle != bystander_copy);
  assert_same_key(f->s, other.handle, bystander);
  p11_keycache_put(c, f->s, &other);
  p11_keycache_counts(c, &hits, &misses);
  assert_int_equal(hits, 0);
  assert_int_equal(misses, 4);
  assert_int_equal(session_objects(f->s), 3); /* two cached, the bystander's old one */
  p11_keycache_free(c);
}

/* One slot, two keys: each get of the other key replaces the entry, and
 * the replaced copy goes at once when nobody holds it. */
static void test_collisions_replace(void **state) {
  fixture *f = *state;
  p11_keycache *c = NULL;
  p11_keyref ref;
  p11_err err;
  CK_OBJECT_HANDLE k1 = make_key(f->s, "one"), k2 = make_key(f->s, "two");
  assert_int_equal(p11_keycache_new(1, 60000, &c, &err), KERR_OK);
  for (int i = 0; i < 10; i++) {
    const char *id = i % 2 ? "two" : "one";
    assert_int_equal(p11_keycache_get(c, f->s, id, &ref, &err), KERR_OK);
    assert_same_key(f->s, ref.handle, i % 2 ? k2 : k1);
    p11_keycache_put(c, f->s, &ref);
    assert_int_equal(session_objects(f->s), 1);
  }
  p11_keycache_free(c);
}

/* Threads sharing a two-slot cache with a 1 ms refresh over three keys:
 * every request works with the right key, and no copy is left behind. */
typedef struct worker {
  p11_token *tok;
  p11_keycache *c;
  int failures;
  int forgetter; /* forgets "t-a" instead of encrypting */
} worker;

static void *work(void *arg) {
  worker *w = arg;
  static const char *const ids[] = {"t-a", "t-b", "t-c"};
  for (int i = 0; i < 300; i++) {
    p11_session *s = NULL;
    p11_keyref ref;
    p11_err err;
    CK_OBJECT_HANDLE key;
    if (p11_session_acquire_as(w->tok, CKU_USER, &s, &err)) {
      w->failures++;
      continue;
    }
    const char *id = ids[i % 3];
    if (w->forgetter) {
      p11_keycache_forget(w->c, s, "t-a");
    } else if (p11_keycache_get(w->c, s, id, &ref, &err) == KERR_OK) {
      static const uint8_t msg[] = "threads";
      uint8_t iv[P11_GCM_IV_BYTES];
      kbytes ct = {0}, pt = {0};
      if (p11_gcm_encrypt(s, ref.handle, NULL, 0, msg, sizeof msg, iv, &ct, &err) ||
          p11_key_find(s, id, &key, &err) ||
          p11_gcm_decrypt(s, key, iv, NULL, 0, ct.data, ct.len, &pt, &err) || pt.len != sizeof msg)
        w->failures++;
      kbytes_wipe_free(&ct);
      kbytes_wipe_free(&pt);
      p11_keycache_put(w->c, s, &ref);
    } else {
      w->failures++;
    }
    p11_session_release(s);
  }
  return NULL;
}

/* Four threads over three keys and two slots: with a 1 ms refresh (nearly
 * every request a miss), then with a long one and a fifth thread forgetting
 * one key all along (hits, misses and forgets racing). */
static void run_threads(fixture *f, long refresh_ms, int forgetter) {
  p11_keycache *c = NULL;
  p11_err err;
  pthread_t threads[5];
  worker w[5];
  int n = 4 + forgetter;
  size_t before = session_objects(f->s);
  assert_int_equal(p11_keycache_new(2, refresh_ms, &c, &err), KERR_OK);
  for (int i = 0; i < n; i++) {
    w[i] = (worker){f->tok, c, 0, i == 4};
    assert_int_equal(pthread_create(&threads[i], NULL, work, &w[i]), 0);
  }
  for (int i = 0; i < n; i++) {
    pthread_join(threads[i], NULL);
    assert_int_equal(w[i].failures, 0);
  }
  /* Every copy out of the cache was destroyed.  (Freeing a cache leaves
   * its copies to the login, so an earlier run's are counted too.) */
  assert_true(session_objects(f->s) <= before + 2);
  uint64_t hits, misses;
  p11_keycache_counts(c, &hits, &misses);
  assert_int_equal(hits + misses, 4 * 300);
  if (refresh_ms > 1000) assert_true(hits > 0);
  p11_keycache_free(c);
}

static void test_threads(void **state) {
  fixture *f = *state;
  make_key(f->s, "t-a");
  make_key(f->s, "t-b");
  make_key(f->s, "t-c");
  run_threads(f, 1, 0);
  run_threads(f, 60000, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_working_copy, setup, teardown),
      cmocka_unit_test_setup_teardown(test_copy_dies_with_its_login, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bounds_and_no_cache, setup, teardown),
      cmocka_unit_test_setup_teardown(test_hits_until_logout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_forget_waits_for_holders, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refresh, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stale_handle, setup, teardown),
      cmocka_unit_test_setup_teardown(test_collisions_replace, setup, teardown),
      cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
