/* test_p11.c - unit tests for lib/pkcs11 against real SoftHSM2 tokens created
 * in a temporary directory: provisioning, login and PIN handling, key
 * attributes, in-token AES-GCM, copying keys between tokens under a wrapping
 * key agreed by ECDH, the session pool under concurrent use, reinitializing
 * a module under the tokens that use it, and the checks that keep such a
 * reinitialization from leaving a session unauthenticated or a slot id
 * stale (scrubbing, provisioning). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pkcs11/p11.h"
#include "pkcs11/p11_softhsm.h"
#include "softhsm_tokens.h"

#define SO_PIN "so-secret-1234"
#define USER_PIN "kmsuser-pin-5678"

static char data_dir[] = "/tmp/kmsd-p11-test-XXXXXX";
static char module_path[PATH_MAX];
static p11_module *module;

static int group_setup(void **state) {
  (void)state;
  const char *labels[] = {"hsm-a", "hsm-b", "hsm-lock", "hsm-pin", "hsm-pool"};
  return softhsm_tokens_setup(data_dir, module_path, sizeof module_path, &module, labels,
                              sizeof labels / sizeof labels[0], SO_PIN, USER_PIN);
}

static int group_teardown(void **state) {
  (void)state;
  return softhsm_tokens_teardown(data_dir, module);
}

static p11_token *open_logged_in(const char *label, size_t pool) {
  p11_token *tok = NULL;
  p11_err err;
  assert_int_equal(p11_token_open(module, label, pool, &tok, &err), KERR_OK);
  assert_int_equal(p11_token_login(tok, USER_PIN, &err), KERR_OK);
  return tok;
}

/* ---- errors and modules ------------------------------------------------- */

static void test_rv_names_and_codes(void **state) {
  (void)state;
  assert_string_equal(p11_rv_name(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
  assert_string_equal(p11_rv_name(CKR_TOKEN_NOT_PRESENT), "CKR_TOKEN_NOT_PRESENT");
  assert_string_equal(p11_rv_name(CKR_OK), "CKR_OK");
  assert_string_equal(p11_rv_name(CKR_VENDOR_DEFINED | 7), "CKR_VENDOR_DEFINED");
  assert_string_equal(p11_rv_name(0x7777), "CKR_UNKNOWN");
  assert_int_equal(p11_rv_to_kerr(CKR_PIN_INCORRECT), KERR_ACCESS_DENIED);
  assert_int_equal(p11_rv_to_kerr(CKR_PIN_LOCKED), KERR_ACCESS_DENIED);
  assert_int_equal(p11_rv_to_kerr(CKR_USER_ALREADY_LOGGED_IN), KERR_INVALID_STATE);
  assert_int_equal(p11_rv_to_kerr(CKR_USER_NOT_LOGGED_IN), KERR_INVALID_STATE);
  assert_int_equal(p11_rv_to_kerr(CKR_TOKEN_NOT_PRESENT), KERR_KEY_UNAVAILABLE);
  assert_int_equal(p11_rv_to_kerr(CKR_DEVICE_ERROR), KERR_KEY_UNAVAILABLE);
  assert_int_equal(p11_rv_to_kerr(CKR_ENCRYPTED_DATA_INVALID), KERR_INVALID_CIPHERTEXT);
  assert_int_equal(p11_rv_to_kerr(CKR_OBJECT_HANDLE_INVALID), KERR_NOT_FOUND);
  assert_int_equal(p11_rv_to_kerr(CKR_SESSION_COUNT), KERR_LIMIT_EXCEEDED);
  assert_int_equal(p11_rv_to_kerr(CKR_MECHANISM_INVALID), KERR_INTERNAL);
}

static void test_module_sharing_and_bad_paths(void **state) {
  (void)state;
  p11_module *again = NULL;
  p11_err err;
  assert_int_equal(p11_module_load(module_path, &again, &err), KERR_OK);
  assert_ptr_equal(again, module); /* one C_Initialize per module per process */
  p11_module_release(again);

  assert_int_equal(p11_module_load("relative/lib.so", &again, &err), KERR_VALIDATION);
  assert_null(again);
  assert_int_equal(p11_module_load("/nonexistent/libnothing.so", &again, &err), KERR_NOT_FOUND);
  /* A shared library that is not a PKCS#11 module. */
  char not_module[PATH_MAX];
  snprintf(not_module, sizeof not_module, "%s/hsm/softhsm2.conf", data_dir);
  assert_int_equal(p11_module_load(not_module, &again, &err), KERR_INTERNAL);
  assert_null(again);

  /* The module still works after the failed loads. */
  CK_SLOT_ID slot;
  assert_int_equal(p11_find_token(module, "hsm-a", &slot, &err), KERR_OK);
}

static void test_softhsm_configuration(void **state) {
  (void)state;
  char conf[PATH_MAX], text[4096], expect[PATH_MAX + 64], real[PATH_MAX];
  p11_err err;
  const char *before = getenv("SOFTHSM2_CONF");
  assert_non_null(before);
  char saved[PATH_MAX];
  snprintf(saved, sizeof saved, "%s", before);

  assert_int_equal(p11_softhsm_configure(data_dir, conf, sizeof conf, &err), KERR_OK);
  assert_string_equal(getenv("SOFTHSM2_CONF"), conf);
  struct stat st;
  assert_int_equal(stat(conf, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  FILE *f = fopen(conf, "r");
  assert_non_null(f);
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = '\0';
  assert_non_null(realpath(data_dir, real));
  snprintf(expect, sizeof expect, "directories.tokendir = %s/hsm/tokens\n", real);
  assert_non_null(strstr(text, expect));
  assert_non_null(strstr(text, "objectstore.backend = file\n"));
  assert_non_null(strstr(text, "log.level = ERROR\n"));
  snprintf(expect, sizeof expect, "%s/hsm/tokens", real);
  assert_int_equal(stat(expect, &st), 0);
  assert_true(S_ISDIR(st.st_mode));

  assert_int_equal(p11_softhsm_configure("/nonexistent/kmsd-data", NULL, 0, &err), KERR_NOT_FOUND);
  assert_string_equal(getenv("SOFTHSM2_CONF"), saved);

  char path[PATH_MAX];
  assert_int_equal(p11_softhsm_find_module("/nonexistent/libsofthsm2.so", path, sizeof path, &err),
                   KERR_NOT_FOUND);
  assert_int_equal(p11_softhsm_find_module(module_path, path, sizeof path, &err), KERR_OK);
  assert_string_equal(path, module_path);
  char tiny[4];
  assert_int_equal(p11_softhsm_find_module(NULL, tiny, sizeof tiny, &err), KERR_VALIDATION);
}

/* ---- tokens ------------------------------------------------------------- */

static void test_find_and_provision_tokens(void **state) {
  (void)state;
  CK_SLOT_ID a, b, again;
  p11_err err;
  assert_int_equal(p11_find_token(module, "hsm-a", &a, &err), KERR_OK);
  assert_int_equal(p11_find_token(module, "hsm-b", &b, &err), KERR_OK);
  assert_true(a != b);
  assert_int_equal(p11_find_token(module, "no-such-hsm", &again, &err), KERR_NOT_FOUND);
  assert_int_equal(p11_find_token(module, "", &again, &err), KERR_VALIDATION);
  assert_int_equal(p11_find_token(module, "a-label-that-is-longer-than-32-bytes", &again, &err),
                   KERR_VALIDATION);
  assert_int_equal(p11_find_token(module, "bad\nlabel", &again, &err), KERR_VALIDATION);
  /* Labels are unique: the second provisioning is refused and creates nothing. */
  assert_int_equal(p11_softhsm_provision(module, "hsm-a", SO_PIN, USER_PIN, &again, &err),
                   KERR_ALREADY_EXISTS);
  assert_int_equal(p11_find_token(module, "hsm-a", &again, &err), KERR_OK);
  assert_true(again == a);
  /* PINs outside the bounds never reach the module. */
  assert_int_equal(p11_softhsm_provision(module, "hsm-short", "abc", USER_PIN, &again, &err),
                   KERR_VALIDATION);
  assert_int_equal(err.rv, CKR_OK);
  assert_int_equal(p11_find_token(module, "hsm-short", &again, &err), KERR_NOT_FOUND);
  /* SoftHSM2 keeps a free slot for the next token. */
  assert_int_equal(p11_find_free_slot(module, &again, &err), KERR_OK);
}

static void test_login_logout_and_wrong_pin(void **state) {
  (void)state;
  p11_token *tok = NULL;
  p11_session *s = NULL;
  p11_err err;
  CK_OBJECT_HANDLE key;
  assert_int_equal(p11_token_open(module, "hsm-a", 2, &tok, &err), KERR_OK);
  assert_false(p11_token_logged_in(tok));

  assert_int_equal(p11_token_login(tok, "not-the-pin", &err), KERR_ACCESS_DENIED);
  assert_int_equal(err.rv, CKR_PIN_INCORRECT);
  assert_non_null(strstr(err.e.msg, "C_Login"));
  assert_non_null(strstr(err.e.msg, "CKR_PIN_INCORRECT"));
  assert_null(strstr(err.e.msg, "not-the-pin"));
  assert_false(p11_token_logged_in(tok));

  /* Without a login, private objects cannot be made. */
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  assert_int_not_equal(p11_key_generate(s, "before-login", P11_KEY_DATA, &key, &err), KERR_OK);
  assert_int_equal(err.rv, CKR_USER_NOT_LOGGED_IN);
  p11_session_release(s);

  assert_int_equal(p11_token_login(tok, USER_PIN, &err), KERR_OK);
  assert_true(p11_token_logged_in(tok));
  assert_int_equal(p11_token_login(tok, USER_PIN, &err), KERR_INVALID_STATE);
  assert_int_equal(err.rv, CKR_USER_ALREADY_LOGGED_IN);
  /* The SO cannot log in while the user is. */
  assert_int_equal(p11_token_login_so(tok, SO_PIN, &err), KERR_INVALID_STATE);
  assert_int_equal(err.rv, CKR_USER_ANOTHER_ALREADY_LOGGED_IN);

  /* A session opened after the login shares it. */
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  assert_int_equal(p11_key_generate(s, "login-test", P11_KEY_DATA, &key, &err), KERR_OK);
  assert_int_equal(p11_key_destroy(s, key, &err), KERR_OK);
  p11_session_release(s);

  assert_int_equal(p11_token_logout(tok, &err), KERR_OK);
  assert_false(p11_token_logged_in(tok));
  assert_int_equal(p11_token_open_sessions(tok), 0);
  assert_int_equal(p11_token_logout(tok, &err), KERR_OK); /* idempotent */

  /* Logging out ends the login for every session of the token. */
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  assert_int_not_equal(p11_key_find(s, "login-test", &key, &err), KERR_OK);
  p11_session_release(s);
  p11_token_close(tok);

  assert_int_equal(p11_token_open(module, "no-such-hsm", 2, &tok, &err), KERR_NOT_FOUND);
  assert_null(tok);
  assert_int_equal(p11_token_open(module, "hsm-a", 0, &tok, &err), KERR_VALIDATION);
  assert_int_equal(p11_token_open(module, "hsm-a", P11_POOL_MAX + 1, &tok, &err), KERR_VALIDATION);
}

/* SoftHSM2 2.6 counts nothing: it never locks the user PIN, however many wrong
 * PINs are tried, and never raises CKF_USER_PIN_LOCKED.  Rate limiting PIN
 * attempts is therefore the job of the layer above (docs/pkcs11.md).  This
 * test pins that behaviour down so a SoftHSM2 upgrade that changes it is
 * noticed. */
static void test_softhsm_pin_lockout_behaviour(void **state) {
  (void)state;
  p11_token *tok = NULL;
  p11_err err;
  CK_TOKEN_INFO info;
  assert_int_equal(p11_token_open(module, "hsm-lock", 1, &tok, &err), KERR_OK);
  for (int i = 0; i < 20; i++) {
    assert_int_equal(p11_token_login(tok, "wrong-pin-guess", &err), KERR_ACCESS_DENIED);
    assert_int_equal(err.rv, CKR_PIN_INCORRECT);
  }
  assert_int_equal(p11_module_functions(module)->C_GetTokenInfo(p11_token_slot(tok), &info), CKR_OK);
  assert_int_equal(info.flags & CKF_USER_PIN_LOCKED, 0);
  assert_int_equal(p11_token_login(tok, USER_PIN, &err), KERR_OK);
  assert_int_equal(p11_token_logout(tok, &err), KERR_OK);
  p11_token_close(tok);
}

static void test_change_pin(void **state) {
  (void)state;
  const char *new_pin = "rotated-kmsuser-pin";
  p11_token *tok = NULL;
  p11_err err;
  assert_int_equal(p11_token_open(module, "hsm-pin", 1, &tok, &err), KERR_OK);
  /* Not logged in: refused before reaching the module. */
  assert_int_equal(p11_token_set_pin(tok, USER_PIN, new_pin, &err), KERR_INVALID_STATE);
  assert_int_equal(err.rv, CKR_USER_NOT_LOGGED_IN);

  assert_int_equal(p11_token_login(tok, USER_PIN, &err), KERR_OK);
  assert_int_equal(p11_token_set_pin(tok, "wrong-old-pin", new_pin, &err), KERR_ACCESS_DENIED);
  assert_int_equal(err.rv, CKR_PIN_INCORRECT);
  assert_int_equal(p11_token_set_pin(tok, USER_PIN, "abc", &err), KERR_VALIDATION);
  assert_int_equal(p11_token_set_pin(tok, USER_PIN, new_pin, &err), KERR_OK);
  assert_true(p11_token_logged_in(tok)); /* the login survives the change */
  assert_int_equal(p11_token_logout(tok, &err), KERR_OK);

  assert_int_equal(p11_token_login(tok, USER_PIN, &err), KERR_ACCESS_DENIED);
  assert_int_equal(err.rv, CKR_PIN_INCORRECT);
  assert_int_equal(p11_token_login(tok, new_pin, &err), KERR_OK);
  assert_int_equal(p11_token_set_pin(tok, new_pin, USER_PIN, &err), KERR_OK);
  assert_int_equal(p11_token_logout(tok, &err), KERR_OK);
  assert_int_equal(p11_token_login(tok, USER_PIN, &err), KERR_OK);
  p11_token_close(tok);
}

/* ---- keys --------------------------------------------------------------- */

/* The value of a key made here must never be readable. */
static void assert_value_unreadable(p11_session *s, CK_OBJECT_HANDLE key) {
  uint8_t value[64];
  CK_ATTRIBUTE a = {CKA_VALUE, value, sizeof value};
  CK_RV rv = p11_module_functions(module)->C_GetAttributeValue(p11_session_handle(s), key, &a, 1);
  assert_int_equal(rv, CKR_ATTRIBUTE_SENSITIVE);
  assert_true(a.ulValueLen == CK_UNAVAILABLE_INFORMATION);
}

static void test_generate_find_destroy(void **state) {
  (void)state;
  p11_token *tok = open_logged_in("hsm-a", 2);
  p11_session *s = NULL;
  p11_err err;
  p11_key_info info;
  CK_OBJECT_HANDLE key, found, wrap, other;
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);

  assert_int_equal(p11_key_generate(s, "1234abcd-12ab-34cd-56ef-1234567890ab", P11_KEY_DATA, &key,
                                    &err), KERR_OK);
  assert_int_equal(p11_key_get_info(s, key, &info, &err), KERR_OK);
  assert_int_equal(info.key_type, CKK_AES);
  assert_int_equal(info.value_len, 32);
  assert_true(info.sensitive && info.always_sensitive && info.never_extractable);
  assert_false(info.extractable);
  assert_true(info.token && info.private_);
  assert_true(info.encrypt && info.decrypt);
  assert_false(info.wrap || info.unwrap);
  assert_value_unreadable(s, key);

  assert_int_equal(p11_key_find(s, "1234abcd-12ab-34cd-56ef-1234567890ab", &found, &err), KERR_OK);
  assert_int_equal(found, key);
  assert_int_equal(p11_key_generate(s, "1234abcd-12ab-34cd-56ef-1234567890ab", P11_KEY_DATA,
                                    &other, &err), KERR_ALREADY_EXISTS);
  assert_int_equal(p11_key_find(s, "absent", &found, &err), KERR_NOT_FOUND);
  assert_int_equal(p11_key_find(s, "", &found, &err), KERR_VALIDATION);
  assert_int_equal(p11_key_generate(s, "bad\x01id", P11_KEY_DATA, &other, &err), KERR_VALIDATION);
  assert_int_equal(p11_key_generate(s, "kind", (p11_key_kind)9, &other, &err), KERR_VALIDATION);

  assert_int_equal(p11_key_generate(s, "user-wrapping", P11_KEY_WRAPPING, &wrap, &err), KERR_OK);
  assert_int_equal(p11_key_get_info(s, wrap, &info, &err), KERR_OK);
  assert_true(info.wrap && info.unwrap && info.sensitive);
  assert_false(info.encrypt || info.decrypt || info.extractable || info.trusted);
  assert_value_unreadable(s, wrap);

  assert_int_equal(p11_key_destroy(s, key, &err), KERR_OK);
  assert_int_equal(p11_key_find(s, "1234abcd-12ab-34cd-56ef-1234567890ab", &found, &err),
                   KERR_NOT_FOUND);
  assert_int_equal(p11_key_destroy(s, key, &err), KERR_NOT_FOUND);
  assert_int_equal(p11_key_destroy(s, wrap, &err), KERR_OK);
  p11_session_release(s);
  p11_token_close(tok);
}

/* ---- finding a key by label while copies of it are made ------------------ */

struct copier {
  p11_token *tok;
  CK_OBJECT_HANDLE key;
  atomic_int stop;
  int copies, failures;
};

/* Session copies of the key, made and destroyed as fast as the module goes:
 * what the XKS proxy's working copies do. */
static void *copy_worker(void *arg) {
  struct copier *c = arg;
  p11_session *s = NULL;
  p11_err err;
  if (p11_session_acquire(c->tok, &s, &err)) {
    c->failures++;
    return NULL;
  }
  const CK_FUNCTION_LIST *f = p11_module_functions(module);
  CK_BBOOL off_token = CK_FALSE;
  CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &off_token, sizeof off_token}};
  while (!atomic_load(&c->stop)) {
    CK_OBJECT_HANDLE copy;
    if (f->C_CopyObject(p11_session_handle(s), c->key, tmpl, 1, &copy) != CKR_OK ||
        f->C_DestroyObject(p11_session_handle(s), copy) != CKR_OK) {
      c->failures++;
      break;
    }
    c->copies++;
  }
  p11_session_release(s);
  return NULL;
}

/* A session copy being made is not a second token key (SoftHSM2 shows it
 * with CKA_TOKEN true for a moment); two token keys with one label are. */
static void test_find_label_while_copies_are_made(void **state) {
  (void)state;
  p11_token *tok = open_logged_in("hsm-a", 3);
  p11_session *s = NULL;
  p11_err err;
  CK_OBJECT_HANDLE key, found, twin;
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  assert_int_equal(p11_key_generate_usage(s, "label-key", 1, 1, &key, &err), KERR_OK);

  struct copier c = {.tok = tok, .key = key};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, copy_worker, &c), 0);
  int wrong = 0;
  for (int i = 0; i < 2000; i++) {
    kerr_code rc = p11_key_find_label(s, "label-key", &found, &err);
    if (rc != KERR_OK || found != key) {
      fprintf(stderr, "search %d: %s\n", i, rc ? err.e.msg : "another handle");
      wrong++;
    }
  }
  atomic_store(&c.stop, 1);
  pthread_join(th, NULL);
  assert_int_equal(c.failures, 0);
  assert_true(c.copies > 0);
  assert_int_equal(wrong, 0);

  /* A real twin on the token. */
  const CK_FUNCTION_LIST *f = p11_module_functions(module);
  CK_BBOOL on_token = CK_TRUE;
  CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &on_token, sizeof on_token}};
  assert_int_equal(f->C_CopyObject(p11_session_handle(s), key, tmpl, 1, &twin), CKR_OK);
  assert_int_equal(p11_key_find_label(s, "label-key", &found, &err), KERR_CONFLICT);
  assert_int_equal(p11_key_destroy(s, twin, &err), KERR_OK);
  assert_int_equal(p11_key_find_label(s, "label-key", &found, &err), KERR_OK);
  assert_int_equal(found, key);
  assert_int_equal(p11_key_destroy(s, key, &err), KERR_OK);
  p11_session_release(s);
  p11_token_close(tok);
}

static void test_gcm_round_trip_and_tampering(void **state) {
  (void)state;
  p11_token *tok = open_logged_in("hsm-a", 2);
  p11_session *s = NULL;
  p11_err err;
  CK_OBJECT_HANDLE key, other;
  const uint8_t aad[] = "{\"Department\":\"10jqk\"}";
  const uint8_t msg[] = "attack at dawn, bring snacks";
  uint8_t iv[P11_GCM_IV_BYTES], iv2[P11_GCM_IV_BYTES];
  kbytes ct = {0}, ct2 = {0}, pt = {0};
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  assert_int_equal(p11_key_generate(s, "gcm-key", P11_KEY_DATA, &key, &err), KERR_OK);
  assert_int_equal(p11_key_generate(s, "gcm-other", P11_KEY_DATA, &other, &err), KERR_OK);

  assert_int_equal(p11_gcm_encrypt(s, key, aad, sizeof aad, msg, sizeof msg, iv, &ct, &err), KERR_OK);
  assert_int_equal(ct.len, sizeof msg + P11_GCM_TAG_BYTES);
  assert_memory_not_equal(ct.data, msg, sizeof msg);
  assert_int_equal(p11_gcm_decrypt(s, key, iv, aad, sizeof aad, ct.data, ct.len, &pt, &err), KERR_OK);
  assert_int_equal(pt.len, sizeof msg);
  assert_memory_equal(pt.data, msg, sizeof msg);
  kbytes_wipe_free(&pt);

  /* A fresh IV per encryption. */
  assert_int_equal(p11_gcm_encrypt(s, key, aad, sizeof aad, msg, sizeof msg, iv2, &ct2, &err), KERR_OK);
  assert_memory_not_equal(iv, iv2, sizeof iv);
  kbytes_wipe_free(&ct2);

  /* Every tampered input fails authentication, and the output stays empty. */
  ct.data[0] ^= 0x01;
  assert_int_equal(p11_gcm_decrypt(s, key, iv, aad, sizeof aad, ct.data, ct.len, &pt, &err),
                   KERR_INVALID_CIPHERTEXT);
  assert_null(pt.data);
  p11_session_release(s); /* the failed session is discarded, not reused */
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  ct.data[0] ^= 0x01;
  ct.data[ct.len - 1] ^= 0x80; /* the tag */
  assert_int_equal(p11_gcm_decrypt(s, key, iv, aad, sizeof aad, ct.data, ct.len, &pt, &err),
                   KERR_INVALID_CIPHERTEXT);
  ct.data[ct.len - 1] ^= 0x80;
  p11_session_release(s);
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  const uint8_t wrong_aad[] = "{\"Department\":\"10jqK\"}";
  assert_int_equal(p11_gcm_decrypt(s, key, iv, wrong_aad, sizeof wrong_aad, ct.data, ct.len, &pt,
                                   &err), KERR_INVALID_CIPHERTEXT);
  p11_session_release(s);
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  assert_int_equal(p11_gcm_decrypt(s, key, iv, NULL, 0, ct.data, ct.len, &pt, &err),
                   KERR_INVALID_CIPHERTEXT);
  p11_session_release(s);
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  iv[3] ^= 0x10;
  assert_int_equal(p11_gcm_decrypt(s, key, iv, aad, sizeof aad, ct.data, ct.len, &pt, &err),
                   KERR_INVALID_CIPHERTEXT);
  iv[3] ^= 0x10;
  p11_session_release(s);
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  assert_int_equal(p11_gcm_decrypt(s, other, iv, aad, sizeof aad, ct.data, ct.len, &pt, &err),
                   KERR_INVALID_CIPHERTEXT);
  p11_session_release(s);
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  /* Too short to hold a tag: refused before the module sees it. */
  assert_int_equal(p11_gcm_decrypt(s, key, iv, aad, sizeof aad, ct.data, 15, &pt, &err),
                   KERR_INVALID_CIPHERTEXT);
  assert_int_equal(err.rv, CKR_OK);
  /* The untouched ciphertext still decrypts. */
  assert_int_equal(p11_gcm_decrypt(s, key, iv, aad, sizeof aad, ct.data, ct.len, &pt, &err), KERR_OK);
  assert_memory_equal(pt.data, msg, sizeof msg);
  kbytes_wipe_free(&pt);
  kbytes_wipe_free(&ct);

  /* Empty plaintext without AAD: just a tag. */
  assert_int_equal(p11_gcm_encrypt(s, key, NULL, 0, NULL, 0, iv, &ct, &err), KERR_OK);
  assert_int_equal(ct.len, P11_GCM_TAG_BYTES);
  assert_int_equal(p11_gcm_decrypt(s, key, iv, NULL, 0, ct.data, ct.len, &pt, &err), KERR_OK);
  assert_int_equal(pt.len, 0);
  kbytes_wipe_free(&pt);
  kbytes_wipe_free(&ct);

  /* Bounds. */
  assert_int_equal(p11_gcm_encrypt(s, key, NULL, 0, msg, (size_t)P11_GCM_MAX_INPUT + 1, iv, &ct,
                                   &err), KERR_VALIDATION);
  assert_int_equal(p11_gcm_encrypt(s, key, aad, (size_t)P11_GCM_MAX_AAD + 1, msg, sizeof msg, iv,
                                   &ct, &err), KERR_VALIDATION);
  /* A wrapping key cannot encrypt. */
  CK_OBJECT_HANDLE wrap;
  assert_int_equal(p11_key_generate(s, "gcm-wrap", P11_KEY_WRAPPING, &wrap, &err), KERR_OK);
  assert_int_not_equal(p11_gcm_encrypt(s, wrap, NULL, 0, msg, sizeof msg, iv, &ct, &err), KERR_OK);
  assert_int_equal(err.rv, CKR_KEY_FUNCTION_NOT_PERMITTED);
  assert_null(ct.data);

  p11_key_destroy(s, key, &err);
  p11_key_destroy(s, other, &err);
  p11_key_destroy(s, wrap, &err);
  p11_session_release(s);
  p11_token_close(tok);
}

static void test_random(void **state) {
  (void)state;
  p11_token *tok = open_logged_in("hsm-b", 1);
  p11_session *s = NULL;
  p11_err err;
  uint8_t a[32], b[32], zero[32] = {0};
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  assert_int_equal(p11_random(s, a, sizeof a, &err), KERR_OK);
  assert_int_equal(p11_random(s, b, sizeof b, &err), KERR_OK);
  assert_memory_not_equal(a, b, sizeof a);
  assert_memory_not_equal(a, zero, sizeof a);
  assert_int_equal(p11_random(s, a, 0, &err), KERR_VALIDATION);
  assert_int_equal(p11_random(s, a, P11_RANDOM_MAX + 1, &err), KERR_VALIDATION);
  p11_session_release(s);
  p11_token_close(tok);
}

/* ---- copying keys between tokens ---------------------------------------- */

/* Agree one trusted wrapping key on both tokens with the SOs logged in. */
static void agree_wrapping_key(p11_token *ta, p11_token *tb, const char *id) {
  p11_session *sa = NULL, *sb = NULL;
  p11_agreement aa, ab;
  uint8_t pa[P11_EC_POINT_BYTES], pb[P11_EC_POINT_BYTES];
  CK_OBJECT_HANDLE wa, wb;
  p11_key_info info;
  p11_err err;
  assert_int_equal(p11_token_login_so(ta, SO_PIN, &err), KERR_OK);
  assert_int_equal(p11_token_login_so(tb, SO_PIN, &err), KERR_OK);
  assert_int_equal(p11_session_acquire(ta, &sa, &err), KERR_OK);
  assert_int_equal(p11_session_acquire(tb, &sb, &err), KERR_OK);
  assert_int_equal(p11_agree_begin(sa, &aa, pa, &err), KERR_OK);
  assert_int_equal(p11_agree_begin(sb, &ab, pb, &err), KERR_OK);
  assert_int_equal(pa[0], 0x04);
  assert_memory_not_equal(pa, pb, sizeof pa);
  assert_int_equal(p11_agree_finish(sa, &aa, pb, id, &wa, &err), KERR_OK);
  assert_int_equal(p11_agree_finish(sb, &ab, pa, id, &wb, &err), KERR_OK);
  assert_int_equal(p11_key_get_info(sa, wa, &info, &err), KERR_OK);
  assert_true(info.trusted && info.wrap && info.unwrap && info.sensitive && info.token);
  assert_false(info.extractable || info.encrypt || info.private_);
  assert_int_equal(info.value_len, 32);
  assert_value_unreadable(sa, wa);
  assert_value_unreadable(sb, wb);
  p11_session_release(sa);
  p11_session_release(sb);
  assert_int_equal(p11_token_logout(ta, &err), KERR_OK);
  assert_int_equal(p11_token_logout(tb, &err), KERR_OK);
}

static void test_copy_key_between_tokens(void **state) {
  (void)state;
  p11_token *ta = NULL, *tb = NULL;
  p11_session *sa = NULL, *sb = NULL;
  p11_err err;
  p11_key_info info;
  CK_OBJECT_HANDLE wa, wb, key, plain_key, user_wrap, copy, found;
  kbytes blob = {0}, ct = {0}, pt = {0};
  uint8_t iv[P11_GCM_IV_BYTES];
  const uint8_t aad[] = "aws:ebs:id=vol-0abc";
  const uint8_t msg[] = "a data key made on hsm-a";

  assert_int_equal(p11_token_open(module, "hsm-a", 2, &ta, &err), KERR_OK);
  assert_int_equal(p11_token_open(module, "hsm-b", 2, &tb, &err), KERR_OK);
  agree_wrapping_key(ta, tb, "cluster-wrapping-key");

  assert_int_equal(p11_token_login(ta, USER_PIN, &err), KERR_OK);
  assert_int_equal(p11_token_login(tb, USER_PIN, &err), KERR_OK);
  assert_int_equal(p11_session_acquire(ta, &sa, &err), KERR_OK);
  assert_int_equal(p11_session_acquire(tb, &sb, &err), KERR_OK);
  /* The user sees the SO's (public) wrapping key. */
  assert_int_equal(p11_key_find(sa, "cluster-wrapping-key", &wa, &err), KERR_OK);
  assert_int_equal(p11_key_find(sb, "cluster-wrapping-key", &wb, &err), KERR_OK);

  assert_int_equal(p11_key_generate(sa, "copy-me", P11_KEY_DATA_COPYABLE, &key, &err), KERR_OK);
  assert_int_equal(p11_key_get_info(sa, key, &info, &err), KERR_OK);
  assert_true(info.extractable && info.wrap_with_trusted && info.sensitive);
  assert_value_unreadable(sa, key);
  assert_int_equal(p11_gcm_encrypt(sa, key, aad, sizeof aad, msg, sizeof msg, iv, &ct, &err), KERR_OK);

  /* Copy to B as a non-extractable key; B decrypts what A encrypted. */
  assert_int_equal(p11_key_copy(sa, wa, sb, wb, "copy-me", P11_KEY_DATA, &copy, &err), KERR_OK);
  assert_int_equal(p11_key_find(sb, "copy-me", &found, &err), KERR_OK);
  assert_int_equal(found, copy);
  assert_int_equal(p11_key_get_info(sb, copy, &info, &err), KERR_OK);
  assert_true(info.sensitive && info.token && info.private_ && info.encrypt && info.decrypt);
  assert_false(info.extractable);
  /* SoftHSM2 2.6 leaves CKA_VALUE_LEN unset on unwrapped keys; the decrypt below proves the key. */
  assert_true(info.value_len == 0 || info.value_len == 32);
  assert_value_unreadable(sb, copy);
  assert_int_equal(p11_gcm_decrypt(sb, copy, iv, aad, sizeof aad, ct.data, ct.len, &pt, &err), KERR_OK);
  assert_memory_equal(pt.data, msg, sizeof msg);
  kbytes_wipe_free(&pt);
  kbytes_wipe_free(&ct);
  /* The non-extractable copy cannot travel further. */
  assert_int_not_equal(p11_key_wrap(sb, wb, copy, &blob, &err), KERR_OK);
  assert_int_equal(err.rv, CKR_KEY_UNEXTRACTABLE);
  /* A second copy under the same id is refused. */
  assert_int_equal(p11_key_copy(sa, wa, sb, wb, "copy-me", P11_KEY_DATA, &found, &err),
                   KERR_ALREADY_EXISTS);

  /* A non-copyable key cannot be wrapped at all. */
  assert_int_equal(p11_key_generate(sa, "stay-home", P11_KEY_DATA, &plain_key, &err), KERR_OK);
  assert_int_not_equal(p11_key_wrap(sa, wa, plain_key, &blob, &err), KERR_OK);
  assert_int_equal(err.rv, CKR_KEY_UNEXTRACTABLE);
  assert_null(blob.data);
  /* A wrapping key the user made is not trusted: it cannot take a copyable
   * key out (this is what stops a user from wrapping under a key it knows). */
  assert_int_equal(p11_key_generate(sa, "user-wrap", P11_KEY_WRAPPING, &user_wrap, &err), KERR_OK);
  assert_int_not_equal(p11_key_wrap(sa, user_wrap, key, &blob, &err), KERR_OK);
  assert_int_equal(err.rv, CKR_KEY_NOT_WRAPPABLE);
  /* Nor can the user mark a key trusted. */
  CK_BBOOL yes = CK_TRUE;
  CK_ATTRIBUTE trusted = {CKA_TRUSTED, &yes, sizeof yes};
  assert_int_not_equal(p11_module_functions(module)->C_SetAttributeValue(p11_session_handle(sa),
                                                                         user_wrap, &trusted, 1),
                       CKR_OK);

  /* Unwrap bounds and a corrupted blob. */
  assert_int_equal(p11_key_wrap(sa, wa, key, &blob, &err), KERR_OK);
  assert_int_equal(blob.len, P11_WRAPPED_AES256_BYTES);
  blob.data[5] ^= 0x20;
  assert_int_not_equal(p11_key_unwrap(sb, wb, blob.data, blob.len, "corrupt", P11_KEY_DATA, &found,
                                      &err), KERR_OK);
  assert_int_equal(p11_key_find(sb, "corrupt", &found, &err), KERR_NOT_FOUND);
  assert_int_equal(p11_key_unwrap(sb, wb, blob.data, blob.len - 8, "short", P11_KEY_DATA,
                                  &found, &err), KERR_VALIDATION);
  kbytes_wipe_free(&blob);

  /* A copyable copy stays copyable (a third HSM could receive it). */
  assert_int_equal(p11_key_copy(sa, wa, sb, wb, "copy-me", P11_KEY_DATA_COPYABLE, &found, &err),
                   KERR_ALREADY_EXISTS);
  assert_int_equal(p11_key_destroy(sb, copy, &err), KERR_OK);
  assert_int_equal(p11_key_copy(sa, wa, sb, wb, "copy-me", P11_KEY_DATA_COPYABLE, &copy, &err),
                   KERR_OK);
  assert_int_equal(p11_key_get_info(sb, copy, &info, &err), KERR_OK);
  assert_true(info.extractable && info.wrap_with_trusted && info.sensitive);
  assert_value_unreadable(sb, copy);

  p11_key_destroy(sa, key, &err);
  p11_key_destroy(sa, plain_key, &err);
  p11_key_destroy(sa, user_wrap, &err);
  p11_key_destroy(sb, copy, &err);
  p11_session_release(sa);
  p11_session_release(sb);
  p11_token_close(ta);
  p11_token_close(tb);
}

/* ---- the session pool --------------------------------------------------- */

#define WORKERS 8
#define ROUNDS 40

struct worker {
  p11_token *tok;
  CK_OBJECT_HANDLE key;
  int index;
  int failures;
  char last_error[KERR_MSG_MAX];
};

static void *encrypt_worker(void *arg) {
  struct worker *w = arg;
  for (int i = 0; i < ROUNDS; i++) {
    p11_session *s = NULL;
    p11_err err;
    uint8_t msg[48], iv[P11_GCM_IV_BYTES];
    kbytes ct = {0}, pt = {0};
    int n = snprintf((char *)msg, sizeof msg, "worker %d round %d", w->index, i);
    if (p11_session_acquire(w->tok, &s, &err) ||
        p11_gcm_encrypt(s, w->key, msg, 4, msg, (size_t)n, iv, &ct, &err) ||
        p11_gcm_decrypt(s, w->key, iv, msg, 4, ct.data, ct.len, &pt, &err) ||
        pt.len != (size_t)n || memcmp(pt.data, msg, (size_t)n) != 0) {
      w->failures++;
      snprintf(w->last_error, sizeof w->last_error, "%s", err.e.msg);
    }
    kbytes_wipe_free(&ct);
    kbytes_wipe_free(&pt);
    p11_session_release(s);
  }
  return NULL;
}

static void test_pool_concurrent_encrypts(void **state) {
  (void)state;
  p11_token *tok = open_logged_in("hsm-pool", 3);
  p11_session *s = NULL;
  p11_err err;
  CK_OBJECT_HANDLE key;
  pthread_t threads[WORKERS];
  struct worker workers[WORKERS];
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  assert_int_equal(p11_key_generate(s, "pool-key", P11_KEY_DATA, &key, &err), KERR_OK);
  p11_session_release(s);

  for (int i = 0; i < WORKERS; i++) {
    workers[i] = (struct worker){.tok = tok, .key = key, .index = i};
    assert_int_equal(pthread_create(&threads[i], NULL, encrypt_worker, &workers[i]), 0);
  }
  for (int i = 0; i < WORKERS; i++) {
    pthread_join(threads[i], NULL);
    if (workers[i].failures) fprintf(stderr, "worker %d: %s\n", i, workers[i].last_error);
    assert_int_equal(workers[i].failures, 0);
  }
  /* Eight threads shared at most three sessions. */
  assert_true(p11_token_open_sessions(tok) >= 1);
  assert_true(p11_token_open_sessions(tok) <= 3);

  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  assert_int_equal(p11_key_destroy(s, key, &err), KERR_OK);
  p11_session_release(s);
  p11_token_close(tok);
}

struct delayed_release {
  p11_session *s;
};

static void *release_later(void *arg) {
  struct delayed_release *d = arg;
  usleep(100 * 1000);
  p11_session_release(d->s);
  return NULL;
}

static void test_pool_waits_for_a_free_session(void **state) {
  (void)state;
  p11_token *tok = open_logged_in("hsm-pool", 1);
  p11_session *first = NULL, *second = NULL;
  p11_err err;
  pthread_t t;
  assert_int_equal(p11_session_acquire(tok, &first, &err), KERR_OK);
  CK_SESSION_HANDLE h = p11_session_handle(first);
  struct delayed_release d = {first};
  assert_int_equal(pthread_create(&t, NULL, release_later, &d), 0);
  /* Blocks until the other thread gives the only session back. */
  assert_int_equal(p11_session_acquire(tok, &second, &err), KERR_OK);
  pthread_join(t, NULL);
  assert_int_equal(p11_session_handle(second), h);
  assert_int_equal(p11_token_open_sessions(tok), 1);

  /* A session still held across logout is closed when it comes back. */
  assert_int_equal(p11_token_logout(tok, &err), KERR_OK);
  assert_int_equal(p11_token_open_sessions(tok), 1);
  p11_session_release(second);
  assert_int_equal(p11_token_open_sessions(tok), 0);
  p11_token_close(tok);
}

/* Reinitializing a module (C_Finalize + C_Initialize, the way back from a
 * token the module keeps broken in memory) ends every session and login of
 * its tokens in the process.  It waits for held sessions; afterwards token
 * handles forget their old session handles without closing them (the
 * module reuses the numbers for new sessions of other tokens), find their
 * token again, and work after a new login. */
static void test_module_reinitialize(void **state) {
  (void)state;
  p11_token *tok = open_logged_in("hsm-pool", 2);
  p11_token *other = open_logged_in("hsm-b", 2);
  p11_session *s = NULL, *os = NULL;
  CK_OBJECT_HANDLE key;
  p11_err err;
  uint8_t iv[P11_GCM_IV_BYTES], rnd[16];
  static const uint8_t plain[] = "kept across a reinitialization";
  kbytes ct = {0}, pt = {0};

  assert_true(p11_rv_module_state(CKR_GENERAL_ERROR));
  assert_true(p11_rv_module_state(CKR_DEVICE_ERROR));
  assert_true(p11_rv_module_state(CKR_TOKEN_NOT_PRESENT));
  assert_false(p11_rv_module_state(CKR_OK));
  assert_false(p11_rv_module_state(CKR_PIN_INCORRECT));
  assert_false(p11_rv_module_state(CKR_USER_NOT_LOGGED_IN));

  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  assert_int_equal(p11_key_generate(s, "reinit-key", P11_KEY_DATA, &key, &err), KERR_OK);
  assert_int_equal(p11_gcm_encrypt(s, key, NULL, 0, plain, sizeof plain, iv, &ct, &err), KERR_OK);

  /* A held session keeps a reinitialization out, up to its wait. */
  unsigned long epoch = p11_module_epoch(module);
  assert_int_equal(p11_module_reinitialize(module, epoch, 50, &err), KERR_DEPENDENCY_TIMEOUT);
  assert_int_equal(p11_module_epoch(module), epoch);
  assert_true(p11_token_logged_in(tok));
  assert_int_equal(p11_random(s, rnd, sizeof rnd, &err), KERR_OK);
  p11_session_release(s);
  assert_int_equal(p11_module_reinitialize(module, epoch, 0, &err), KERR_VALIDATION);

  assert_int_equal(p11_module_reinitialize(module, epoch, 2000, &err), KERR_OK);
  assert_int_equal(p11_module_epoch(module), epoch + 1);
  /* Reinitialized since `epoch` already: nothing more happens. */
  assert_int_equal(p11_module_reinitialize(module, epoch, 2000, &err), KERR_OK);
  assert_int_equal(p11_module_epoch(module), epoch + 1);
  assert_false(p11_token_logged_in(tok));
  assert_false(p11_token_logged_in(other));

  /* Logged out by the reinitialization: the private key shows again after
   * a new login, and still decrypts what it encrypted before. */
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  assert_int_equal(p11_key_find(s, "reinit-key", &key, &err), KERR_NOT_FOUND);
  p11_session_release(s);
  assert_int_equal(p11_token_login(tok, USER_PIN, &err), KERR_OK);
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  assert_int_equal(p11_key_find(s, "reinit-key", &key, &err), KERR_OK);
  assert_int_equal(p11_gcm_decrypt(s, key, iv, NULL, 0, ct.data, ct.len, &pt, &err), KERR_OK);
  assert_int_equal(pt.len, sizeof plain);
  assert_memory_equal(pt.data, plain, sizeof plain);
  assert_int_equal(p11_key_destroy(s, key, &err), KERR_OK);
  p11_session_release(s);

  /* p11_token_recover reinitializes once for a token whose handles are
   * current.  The first token's anchor and idle session were the first
   * handles of the last epoch; the other token now opens the first handles
   * of the new one, so they carry the same numbers.  Forgetting the stale
   * ones must not close them. */
  assert_int_equal(p11_token_recover(tok, &err), KERR_OK);
  assert_int_equal(p11_module_epoch(module), epoch + 2);
  assert_false(p11_token_logged_in(tok));
  assert_int_equal(p11_token_login(other, USER_PIN, &err), KERR_OK);
  assert_int_equal(p11_session_acquire(other, &os, &err), KERR_OK);
  assert_int_equal(p11_token_logout(tok, &err), KERR_OK);
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  p11_session_release(s);
  assert_int_equal(p11_random(os, rnd, sizeof rnd, &err), KERR_OK);
  assert_true(p11_token_logged_in(other));
  p11_session_release(os);
  assert_int_equal(p11_session_acquire(other, &os, &err), KERR_OK);
  assert_int_equal(p11_random(os, rnd, sizeof rnd, &err), KERR_OK);
  p11_session_release(os);

  kbytes_wipe_free(&ct);
  kbytes_wipe_free(&pt);
  p11_token_close(tok);
  p11_token_close(other);
}

/* "Log in, then take a session" is checked where the session is taken.  A
 * reinitialization of the module between the two steps (on behalf of
 * another token of the module) ends the login quietly; a session taken then
 * sees only public objects, and a scrub with it used to destroy those alone
 * and report the token clean, leaving its private keys. */
static void test_login_checked_at_acquire_and_scrub(void **state) {
  (void)state;
  p11_token *tok = NULL;
  p11_session *s = NULL;
  CK_OBJECT_HANDLE key, wrap;
  CK_SLOT_ID slot;
  size_t n = 99;
  p11_err err;

  assert_int_equal(p11_init_free_token(module, "hsm-scrub", SO_PIN, USER_PIN, &slot, &err),
                   KERR_OK);
  assert_int_equal(p11_token_open(module, "hsm-scrub", 2, &tok, &err), KERR_OK);
  assert_int_equal(p11_session_acquire_as(tok, CKU_USER, &s, &err), KERR_INVALID_STATE);
  assert_int_equal(err.rv, CKR_USER_NOT_LOGGED_IN);
  assert_null(s);
  assert_int_equal(p11_session_acquire_as(tok, CKU_CONTEXT_SPECIFIC, &s, &err), KERR_VALIDATION);

  /* A public object made as the SO, two private keys made as the user. */
  assert_int_equal(p11_token_login_so(tok, SO_PIN, &err), KERR_OK);
  assert_int_equal(p11_session_acquire_as(tok, CKU_USER, &s, &err), KERR_INVALID_STATE);
  assert_int_equal(p11_session_acquire_as(tok, CKU_SO, &s, &err), KERR_OK);
  assert_int_equal(p11_key_generate_so(s, "scrub-wrap", &wrap, &err), KERR_OK);
  p11_session_release(s);
  assert_int_equal(p11_token_logout(tok, &err), KERR_OK);
  assert_int_equal(p11_token_login(tok, USER_PIN, &err), KERR_OK);
  assert_int_equal(p11_session_acquire_as(tok, CKU_USER, &s, &err), KERR_OK);
  assert_int_equal(p11_key_generate(s, "scrub-1", P11_KEY_DATA, &key, &err), KERR_OK);
  assert_int_equal(p11_key_generate(s, "scrub-2", P11_KEY_DATA_COPYABLE, &key, &err), KERR_OK);
  p11_session_release(s);
  assert_int_equal(p11_token_open_sessions(tok), 1);

  /* Logged in; then another token's recovery reinitializes the module. */
  assert_int_equal(p11_module_reinitialize(module, p11_module_epoch(module), 2000, &err), KERR_OK);
  assert_int_equal(p11_session_acquire_as(tok, CKU_USER, &s, &err), KERR_INVALID_STATE);
  assert_int_equal(err.rv, CKR_USER_NOT_LOGGED_IN);
  assert_null(s);
  assert_int_equal(p11_token_open_sessions(tok), 0); /* the refusal kept no session */

  /* A scrub handed such a session refuses and destroys nothing. */
  assert_int_equal(p11_session_acquire(tok, &s, &err), KERR_OK);
  assert_int_equal(p11_objects_destroy_all(s, &n, &err), KERR_INVALID_STATE);
  assert_int_equal(err.rv, CKR_USER_NOT_LOGGED_IN);
  assert_int_equal(n, 0);
  p11_session_release(s);

  /* Logged in again, it destroys the private and the public objects. */
  assert_int_equal(p11_token_login(tok, USER_PIN, &err), KERR_OK);
  assert_int_equal(p11_session_acquire_as(tok, CKU_USER, &s, &err), KERR_OK);
  assert_int_equal(p11_key_find(s, "scrub-1", &key, &err), KERR_OK);
  assert_int_equal(p11_objects_destroy_all(s, &n, &err), KERR_OK);
  assert_int_equal(n, 3);
  assert_int_equal(p11_key_find(s, "scrub-1", &key, &err), KERR_NOT_FOUND);
  assert_int_equal(p11_key_find(s, "scrub-2", &key, &err), KERR_NOT_FOUND);
  assert_int_equal(p11_key_find(s, "scrub-wrap", &key, &err), KERR_NOT_FOUND);
  assert_int_equal(p11_objects_destroy_all(s, &n, &err), KERR_OK);
  assert_int_equal(n, 0);
  p11_session_release(s);
  p11_token_close(tok);
}

struct provisioner {
  char label[P11_LABEL_MAX + 1];
  kerr_code rc;
  p11_err err;
};

static void *provision_worker(void *arg) {
  struct provisioner *p = arg;
  CK_SLOT_ID slot;
  p->rc = p11_softhsm_provision(module, p->label, SO_PIN, USER_PIN, &slot, &p->err);
  return NULL;
}

/* C_InitToken never runs on a slot whose token is initialized: a slot id
 * kept across a reinitialization of the module may name another token by
 * then, and since HSMs of one cluster share their SO PIN, C_InitToken would
 * wipe it.  Provisioning finds its free slot and initializes it in one step,
 * one thread at a time, while reinitializations come and go. */
static void test_init_token_never_reuses_a_slot(void **state) {
  (void)state;
  p11_token *b = NULL;
  p11_session *s = NULL;
  CK_OBJECT_HANDLE key;
  CK_SLOT_ID slot_b, slot;
  struct provisioner prov[4];
  pthread_t threads[4];
  p11_err err;

  b = open_logged_in("hsm-b", 2);
  assert_int_equal(p11_session_acquire_as(b, CKU_USER, &s, &err), KERR_OK);
  assert_int_equal(p11_key_generate(s, "sibling-key", P11_KEY_DATA, &key, &err), KERR_OK);
  p11_session_release(s);
  assert_int_equal(p11_find_token(module, "hsm-b", &slot_b, &err), KERR_OK);

  /* The stale slot id now names hsm-b: refused, hsm-b untouched. */
  assert_int_equal(p11_init_token(module, slot_b, "hsm-usurper", SO_PIN, USER_PIN, &slot, &err),
                   KERR_CONFLICT);
  assert_int_equal(err.rv, CKR_OK);
  assert_int_equal(p11_find_token(module, "hsm-usurper", &slot, &err), KERR_NOT_FOUND);
  assert_int_equal(p11_session_acquire_as(b, CKU_USER, &s, &err), KERR_OK);
  assert_int_equal(p11_key_find(s, "sibling-key", &key, &err), KERR_OK);
  p11_session_release(s);

  /* Four provisionings at once, and reinitializations meanwhile. */
  for (int i = 0; i < 4; i++) {
    snprintf(prov[i].label, sizeof prov[i].label, "hsm-race-%d", i);
    assert_int_equal(pthread_create(&threads[i], NULL, provision_worker, &prov[i]), 0);
  }
  for (int i = 0; i < 3; i++)
    assert_int_equal(p11_module_reinitialize(module, p11_module_epoch(module), 10000, &err),
                     KERR_OK);
  for (int i = 0; i < 4; i++) {
    pthread_join(threads[i], NULL);
    if (prov[i].rc) fail_msg("provisioning %s: %s", prov[i].label, prov[i].err.e.msg);
  }
  for (int i = 0; i < 4; i++) {
    p11_token *t = open_logged_in(prov[i].label, 1);
    p11_token_close(t);
  }
  /* hsm-b kept its key through all of it. */
  assert_int_equal(p11_token_login(b, USER_PIN, &err), KERR_OK);
  assert_int_equal(p11_session_acquire_as(b, CKU_USER, &s, &err), KERR_OK);
  assert_int_equal(p11_key_find(s, "sibling-key", &key, &err), KERR_OK);
  assert_int_equal(p11_key_destroy(s, key, &err), KERR_OK);
  p11_session_release(s);
  p11_token_close(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rv_names_and_codes),
      cmocka_unit_test(test_module_sharing_and_bad_paths),
      cmocka_unit_test(test_softhsm_configuration),
      cmocka_unit_test(test_find_and_provision_tokens),
      cmocka_unit_test(test_login_logout_and_wrong_pin),
      cmocka_unit_test(test_softhsm_pin_lockout_behaviour),
      cmocka_unit_test(test_change_pin),
      cmocka_unit_test(test_generate_find_destroy),
      cmocka_unit_test(test_find_label_while_copies_are_made),
      cmocka_unit_test(test_gcm_round_trip_and_tampering),
      cmocka_unit_test(test_random),
      cmocka_unit_test(test_copy_key_between_tokens),
      cmocka_unit_test(test_pool_concurrent_encrypts),
      cmocka_unit_test(test_pool_waits_for_a_free_session),
      cmocka_unit_test(test_module_reinitialize),
      cmocka_unit_test(test_login_checked_at_acquire_and_scrub),
      cmocka_unit_test(test_init_token_never_reuses_a_slot),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
