/* test_xksp_hsm.c - unit tests for lib/xksproxy/xksp_hsm.c on real SoftHSM2
 * tokens in a temporary directory: create-key, metadata, the allow-list and
 * disabled keys, XKS AES-GCM (AAD, ciphertextMetadata binding, 12- and
 * 16-byte IVs, CDIV recomputed independently, usage refusals), health, and
 * failover between two tokens while one of them is made to fail through the
 * test module p11shim (P11SHIM_FAIL_FILE). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <pthread.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The XKS headers first: p11-kit's pkcs11.h defines `iv_len` as a macro. */
#include "xksproxy/xksp_backend.h"
#include "xksproxy/xksp_hsm.h"
#include "pkcs11/p11_ivbatch.h"
#include "softhsm_tokens.h"
#include "pkcs11/p11.h"
#include "pkcs11/p11_softhsm.h"

#undef iv_len /* p11-kit's alias; here it is the XKS field */

#define SO_PIN "so-secret-1234"
#define USER_PIN "xks-user-pin-5678"

static char data_dir[] = "/tmp/kmsd-xksp-hsm-XXXXXX";
static char softhsm[PATH_MAX];
static char fail_file[PATH_MAX];
static p11_module *module; /* SoftHSM2 itself, held for the whole run */
static char pin[] = USER_PIN;

static const char *const key_names[] = {"k-ed", "k-e", "k-d", "k-none", "health"};
static const xksp_usage key_usages[] = {XKSP_USAGE_ENCRYPT_DECRYPT, XKSP_USAGE_ENCRYPT,
                                        XKSP_USAGE_DECRYPT, XKSP_USAGE_NONE,
                                        XKSP_USAGE_ENCRYPT_DECRYPT};

static int group_setup(void **state) {
  (void)state;
  p11_err err;
  kerr e;
  if (!mkdtemp(data_dir)) return -1;
  if (p11_softhsm_find_module(NULL, softhsm, sizeof softhsm, &err)) return -1;
  if (p11_softhsm_configure(data_dir, NULL, 0, &err)) return -1;
  snprintf(fail_file, sizeof fail_file, "%s/hsm-down", data_dir);
  setenv("P11SHIM_MODULE", softhsm, 1);
  setenv("P11SHIM_FAIL_FILE", fail_file, 1);
  /* Loaded (initialized) first, so the shim, loaded later, never finalizes it. */
  if (p11_module_load(softhsm, &module, &err)) return -1;
  const char *labels[] = {"xa", "xb"};
  for (size_t i = 0; i < 2; i++) {
    CK_SLOT_ID slot;
    if (p11_softhsm_provision(module, labels[i], SO_PIN, USER_PIN, &slot, &err)) return -1;
    for (size_t k = 0; k < sizeof key_names / sizeof key_names[0]; k++)
      if (xksp_create_key(softhsm, labels[i], USER_PIN, key_names[k], key_usages[k], &e)) {
        fprintf(stderr, "create %s: %s\n", key_names[k], e.msg);
        return -1;
      }
  }
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  return softhsm_tokens_teardown(data_dir, module);
}

/* A store of the given tokens ("xa" or "xb"), each through `modules[i]`. */
static void make_store(xksp_store_config *c, size_t n, const char *const *labels,
                       const char *const *modules) {
  memset(c, 0, sizeof *c);
  snprintf(c->name, sizeof c->name, "test");
  c->token_count = n;
  for (size_t i = 0; i < n; i++) {
    snprintf(c->tokens[i].label, sizeof c->tokens[i].label, "%s", labels[i]);
    c->tokens[i].pin = pin;
    c->tokens[i].module = (char *)modules[i];
  }
  c->session_pool = 4;
  c->health_interval_s = 1;
  c->degraded_ms = 5000;
}

static xksp_hsm *open_store(xksp_store_config *c) {
  xksp_hsm *h = NULL;
  kerr e;
  assert_int_equal(xksp_hsm_open(c, &h, &e), KERR_OK);
  assert_non_null(h);
  return h;
}

/* The error of this thread's last failed encrypt or decrypt, for reports. */
static _Thread_local kerr last_error;

static kerr_code encrypt(xksp_hsm *h, const char *key, const uint8_t *pt, size_t n,
                         const char *aad, int cdiv, xks_encrypt_result *r) {
  xks_request req = {0};
  kerr e;
  req.plaintext.data = (uint8_t *)pt;
  req.plaintext.len = n;
  if (aad) {
    req.aad.data = (uint8_t *)aad;
    req.aad.len = strlen(aad);
    req.has_aad = 1;
  }
  req.want_cdiv = cdiv;
  kerr_code rc = xksp_hsm_encrypt(h, key, &req, r, &e);
  if (rc) last_error = e;
  return rc;
}

/* Decrypt ct/iv/tag with the given AAD and ciphertextMetadata (may be NULL). */
static kerr_code decrypt(xksp_hsm *h, const char *key, const uint8_t *ct, size_t ct_len,
                         const uint8_t *iv, size_t iv_len, const uint8_t *tag, const char *aad,
                         const char *md, xks_decrypt_result *r) {
  xks_request req = {0};
  kerr e;
  req.ciphertext.data = (uint8_t *)ct;
  req.ciphertext.len = ct_len;
  memcpy(req.iv, iv, iv_len);
  req.iv_len = iv_len;
  memcpy(req.tag, tag, XKS_TAG_LEN);
  if (aad) {
    req.aad.data = (uint8_t *)aad;
    req.aad.len = strlen(aad);
    req.has_aad = 1;
  }
  if (md) {
    req.ct_metadata.data = (uint8_t *)md;
    req.ct_metadata.len = strlen(md);
    req.has_ct_metadata = 1;
  }
  kerr_code rc = xksp_hsm_decrypt(h, key, &req, r, &e);
  if (rc) last_error = e;
  return rc;
}

/* ---- create-key and metadata -------------------------------------------- */

static void test_usage_parse_and_create_key(void **state) {
  (void)state;
  kerr e;
  assert_int_equal(xksp_usage_parse("encrypt,decrypt"), XKSP_USAGE_ENCRYPT_DECRYPT);
  assert_int_equal(xksp_usage_parse("decrypt,encrypt"), XKSP_USAGE_ENCRYPT_DECRYPT);
  assert_int_equal(xksp_usage_parse("encrypt"), XKSP_USAGE_ENCRYPT);
  assert_int_equal(xksp_usage_parse("decrypt"), XKSP_USAGE_DECRYPT);
  assert_int_equal(xksp_usage_parse("none"), XKSP_USAGE_NONE);
  assert_int_equal(xksp_usage_parse("sign"), -1);
  assert_int_equal(xksp_usage_parse(NULL), -1);
  assert_int_equal(xksp_create_key(softhsm, "xa", USER_PIN, "k-ed", XKSP_USAGE_ENCRYPT, &e),
                   KERR_ALREADY_EXISTS);
  assert_int_equal(xksp_create_key(softhsm, "xa", USER_PIN, "bad/label", XKSP_USAGE_ENCRYPT, &e),
                   KERR_VALIDATION);
  assert_int_equal(xksp_create_key(softhsm, "nosuch", USER_PIN, "k-x", XKSP_USAGE_ENCRYPT, &e),
                   KERR_VALIDATION);
  assert_int_equal(xksp_create_key("/nonexistent/lib.so", "xa", USER_PIN, "k-x",
                                   XKSP_USAGE_ENCRYPT, &e),
                   KERR_VALIDATION);
  assert_int_equal(xksp_create_key(softhsm, "xa", "wrong-pin-0000", "k-x", XKSP_USAGE_ENCRYPT, &e),
                   KERR_ACCESS_DENIED);
  assert_null(strstr(e.msg, "wrong-pin-0000"));
}

static void test_metadata(void **state) {
  (void)state;
  xksp_store_config c;
  const char *labels[] = {"xa"}, *mods[] = {softhsm};
  make_store(&c, 1, labels, mods);
  xksp_hsm *h = open_store(&c);
  static const struct {
    const char *key;
    size_t n;
    const char *usage[2];
    const char *status;
  } want[] = {{"k-ed", 2, {"ENCRYPT", "DECRYPT"}, "ENABLED"},
              {"k-e", 1, {"ENCRYPT"}, "ENABLED"},
              {"k-d", 1, {"DECRYPT"}, "ENABLED"},
              {"k-none", 0, {NULL}, "DISABLED"}};
  for (size_t i = 0; i < 4; i++) {
    xks_key_metadata m;
    kerr e;
    assert_int_equal(xksp_hsm_metadata(h, want[i].key, &m, &e), KERR_OK);
    assert_string_equal(m.key_spec, "AES_256");
    assert_int_equal(m.key_usage_count, want[i].n);
    for (size_t u = 0; u < want[i].n; u++) assert_string_equal(m.key_usage[u], want[i].usage[u]);
    assert_string_equal(m.key_status, want[i].status);
    xks_key_metadata_free(&m);
  }
  xks_key_metadata m;
  kerr e;
  assert_int_equal(xksp_hsm_metadata(h, "absent", &m, &e), KERR_NOT_FOUND);
  xksp_hsm_close(h);

  /* Allow-list: a key not listed is absent; disabled_keys: DISABLED and refused. */
  char *allow[] = {"k-ed", "k-e"}, *off[] = {"k-e"};
  c.keys = allow;
  c.key_count = 2;
  c.disabled_keys = off;
  c.disabled_key_count = 1;
  h = open_store(&c);
  assert_int_equal(xksp_hsm_metadata(h, "k-d", &m, &e), KERR_NOT_FOUND);
  assert_int_equal(xksp_hsm_metadata(h, "k-e", &m, &e), KERR_OK);
  assert_string_equal(m.key_status, "DISABLED");
  xks_key_metadata_free(&m);
  xks_encrypt_result r;
  assert_int_equal(encrypt(h, "k-e", (const uint8_t *)"x", 1, NULL, 0, &r), KERR_INVALID_STATE);
  assert_int_equal(encrypt(h, "k-d", (const uint8_t *)"x", 1, NULL, 0, &r), KERR_NOT_FOUND);
  assert_int_equal(encrypt(h, "k-ed", (const uint8_t *)"x", 1, NULL, 0, &r), KERR_OK);
  xks_encrypt_result_free(&r);
  xksp_hsm_close(h);
}

/* ---- encrypt and decrypt ------------------------------------------------ */

static void check_cdiv(const char *aad, const xks_encrypt_result *r) {
  uint8_t want[32];
  unsigned int n = 0;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  assert_non_null(ctx);
  assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
  if (aad) EVP_DigestUpdate(ctx, aad, strlen(aad));
  EVP_DigestUpdate(ctx, r->iv, r->iv_len);
  EVP_DigestUpdate(ctx, r->ciphertext.data, r->ciphertext.len);
  EVP_DigestUpdate(ctx, r->tag, XKS_TAG_LEN);
  assert_int_equal(EVP_DigestFinal_ex(ctx, want, &n), 1);
  EVP_MD_CTX_free(ctx);
  assert_int_equal(n, 32);
  assert_true(r->has_cdiv);
  assert_memory_equal(r->cdiv, want, sizeof want);
}

static void round_trips(xksp_iv_source source) {
  xksp_store_config c;
  const char *labels[] = {"xa"}, *mods[] = {softhsm};
  make_store(&c, 1, labels, mods);
  c.iv_source = source;
  xksp_hsm *h = open_store(&c);
  static uint8_t big[XKS_DATA_MAX];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 7);
  const size_t sizes[] = {1, XKS_DATA_MAX};
  const char *aads[] = {NULL, "context=a"};
  for (size_t si = 0; si < 2; si++) {
    for (size_t ai = 0; ai < 2; ai++) {
      xks_encrypt_result r;
      xks_decrypt_result d;
      assert_int_equal(encrypt(h, "k-ed", big, sizes[si], aads[ai], 1, &r), KERR_OK);
      assert_int_equal(r.iv_len, 12);
      assert_int_equal(r.ciphertext.len, sizes[si]);
      assert_false(r.has_ct_metadata);
      check_cdiv(aads[ai], &r);
      assert_int_equal(decrypt(h, "k-ed", r.ciphertext.data, r.ciphertext.len, r.iv, 12, r.tag,
                               aads[ai], NULL, &d),
                       KERR_OK);
      assert_int_equal(d.plaintext.len, sizes[si]);
      assert_memory_equal(d.plaintext.data, big, sizes[si]);
      xks_decrypt_result_free(&d);

      /* Tampering of every input. */
      uint8_t iv[12], tag[16];
      memcpy(iv, r.iv, 12);
      memcpy(tag, r.tag, 16);
      r.ciphertext.data[0] ^= 1;
      assert_int_equal(decrypt(h, "k-ed", r.ciphertext.data, r.ciphertext.len, iv, 12, tag,
                               aads[ai], NULL, &d),
                       KERR_INVALID_CIPHERTEXT);
      r.ciphertext.data[0] ^= 1;
      tag[15] ^= 0x80;
      assert_int_equal(decrypt(h, "k-ed", r.ciphertext.data, r.ciphertext.len, iv, 12, tag,
                               aads[ai], NULL, &d),
                       KERR_INVALID_CIPHERTEXT);
      tag[15] ^= 0x80;
      iv[3] ^= 1;
      assert_int_equal(decrypt(h, "k-ed", r.ciphertext.data, r.ciphertext.len, iv, 12, tag,
                               aads[ai], NULL, &d),
                       KERR_INVALID_CIPHERTEXT);
      iv[3] ^= 1;
      assert_int_equal(decrypt(h, "k-ed", r.ciphertext.data, r.ciphertext.len, iv, 12, tag,
                               aads[ai] ? "context=b" : "extra", NULL, &d),
                       KERR_INVALID_CIPHERTEXT);
      assert_int_equal(decrypt(h, "k-ed", r.ciphertext.data, r.ciphertext.len, iv, 12, tag,
                               aads[ai], "v1", &d),
                       KERR_INVALID_CIPHERTEXT);
      /* Untampered still works. */
      assert_int_equal(decrypt(h, "k-ed", r.ciphertext.data, r.ciphertext.len, iv, 12, tag,
                               aads[ai], NULL, &d),
                       KERR_OK);
      xks_decrypt_result_free(&d);
      xks_encrypt_result_free(&r);
    }
  }
  /* Without CDIV: none returned. */
  xks_encrypt_result r;
  assert_int_equal(encrypt(h, "k-ed", big, 5, NULL, 0, &r), KERR_OK);
  assert_false(r.has_cdiv);
  xks_encrypt_result_free(&r);
  xksp_hsm_close(h);
}

static void test_round_trip_iv_drbg(void **state) {
  (void)state;
  round_trips(XKSP_IV_DRBG);
}

static void test_round_trip_iv_hsm(void **state) {
  (void)state;
  round_trips(XKSP_IV_HSM);
}

/* IVs from the token come out of batches of P11_IV_BATCH: over several
 * batches, and from several threads at once, no IV is ever handed out
 * twice, and each ciphertext decrypts with the IV it was returned with. */
#define IV_THREADS 4
#define IV_PER_THREAD (P11_IV_BATCH + P11_IV_BATCH / 2 + 3)

typedef struct iv_worker {
  xksp_hsm *h;
  uint8_t iv[IV_PER_THREAD][12];
  kerr_code rc;
} iv_worker;

static void *iv_worker_main(void *arg) {
  iv_worker *w = arg;
  static const uint8_t pt[] = "iv";
  for (size_t i = 0; i < IV_PER_THREAD && w->rc == KERR_OK; i++) {
    xks_encrypt_result r;
    xks_decrypt_result d;
    w->rc = encrypt(w->h, "k-ed", pt, sizeof pt, NULL, 0, &r);
    if (w->rc) break;
    memcpy(w->iv[i], r.iv, 12);
    w->rc = decrypt(w->h, "k-ed", r.ciphertext.data, r.ciphertext.len, r.iv, 12, r.tag, NULL, NULL, &d);
    if (!w->rc && (d.plaintext.len != sizeof pt || memcmp(d.plaintext.data, pt, sizeof pt) != 0))
      w->rc = KERR_INTERNAL;
    if (!w->rc) xks_decrypt_result_free(&d);
    xks_encrypt_result_free(&r);
  }
  if (w->rc) fprintf(stderr, "IV worker failed (%d): %s\n", (int)w->rc, last_error.msg);
  return NULL;
}

static int cmp_iv(const void *a, const void *b) { return memcmp(a, b, 12); }

static void test_iv_batches_from_token(void **state) {
  (void)state;
  const xksp_iv_source sources[] = {XKSP_IV_HSM, XKSP_IV_AUTO};
  for (size_t si = 0; si < 2; si++) {
    xksp_store_config c;
    const char *labels[] = {"xa"}, *mods[] = {softhsm};
    make_store(&c, 1, labels, mods);
    c.iv_source = sources[si];
    xksp_hsm *h = open_store(&c);
    static iv_worker w[IV_THREADS];
    pthread_t th[IV_THREADS];
    for (size_t i = 0; i < IV_THREADS; i++) {
      memset(&w[i], 0, sizeof w[i]);
      w[i].h = h;
      assert_int_equal(pthread_create(&th[i], NULL, iv_worker_main, &w[i]), 0);
    }
    for (size_t i = 0; i < IV_THREADS; i++) pthread_join(th[i], NULL);
    static uint8_t all[IV_THREADS * IV_PER_THREAD][12];
    for (size_t i = 0; i < IV_THREADS; i++) {
      assert_int_equal(w[i].rc, KERR_OK);
      memcpy(all[i * IV_PER_THREAD], w[i].iv, sizeof w[i].iv);
    }
    qsort(all, IV_THREADS * IV_PER_THREAD, 12, cmp_iv);
    for (size_t i = 1; i < IV_THREADS * IV_PER_THREAD; i++)
      assert_memory_not_equal(all[i - 1], all[i], 12);
    xksp_hsm_close(h);
  }
}

/* A ciphertext made by another proxy: 16-byte IV and ciphertextMetadata,
 * made here with the raw PKCS#11 call. */
static void test_sixteen_byte_iv_and_metadata(void **state) {
  (void)state;
  xksp_store_config c;
  const char *labels[] = {"xa"}, *mods[] = {softhsm};
  make_store(&c, 1, labels, mods);
  xksp_hsm *h = open_store(&c);
  p11_token *tok = NULL;
  p11_session *s = NULL;
  p11_err pe;
  kerr e;
  CK_OBJECT_HANDLE key;
  assert_int_equal(p11_token_open(module, "xa", 1, &tok, &pe), KERR_OK);
  /* The store's login is the process's: this handle's own login is refused. */
  kerr_code lrc = p11_token_login(tok, USER_PIN, &pe);
  assert_true(lrc == KERR_OK || pe.rv == CKR_USER_ALREADY_LOGGED_IN);
  assert_int_equal(p11_session_acquire(tok, &s, &pe), KERR_OK);
  assert_int_equal(p11_key_find_label(s, "k-ed", &key, &pe), KERR_OK);
  const uint8_t iv[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  const char *pt = "sixteen byte iv", *aad = "ctx", *md = "kv-7";
  kbytes gaad = {0}, out = {0};
  assert_int_equal(xks_gcm_aad((const uint8_t *)aad, strlen(aad), (const uint8_t *)md,
                               strlen(md), &gaad, &e),
                   KERR_OK);
  assert_int_equal(p11_gcm_encrypt_iv(s, key, iv, 16, gaad.data, gaad.len, (const uint8_t *)pt,
                                      strlen(pt), &out, &pe),
                   KERR_OK);
  p11_session_release(s);
  p11_token_close(tok);
  size_t ct_len = out.len - 16;
  xks_decrypt_result d;
  assert_int_equal(decrypt(h, "k-ed", out.data, ct_len, iv, 16, out.data + ct_len, aad, md, &d),
                   KERR_OK);
  assert_int_equal(d.plaintext.len, strlen(pt));
  assert_memory_equal(d.plaintext.data, pt, strlen(pt));
  xks_decrypt_result_free(&d);
  assert_int_equal(decrypt(h, "k-ed", out.data, ct_len, iv, 16, out.data + ct_len, aad, "kv-8",
                           &d),
                   KERR_INVALID_CIPHERTEXT);
  assert_int_equal(decrypt(h, "k-ed", out.data, ct_len, iv, 16, out.data + ct_len, aad, NULL, &d),
                   KERR_INVALID_CIPHERTEXT);
  assert_int_equal(decrypt(h, "k-ed", out.data, ct_len, iv, 12, out.data + ct_len, aad, md, &d),
                   KERR_INVALID_CIPHERTEXT);
  kbytes_wipe_free(&out);
  kbytes_wipe_free(&gaad);
  xksp_hsm_close(h);
}

static void test_key_usage(void **state) {
  (void)state;
  xksp_store_config c;
  const char *labels[] = {"xa"}, *mods[] = {softhsm};
  make_store(&c, 1, labels, mods);
  xksp_hsm *h = open_store(&c);
  xks_encrypt_result r;
  xks_decrypt_result d;
  const uint8_t pt[] = "usage";
  /* Encrypt-only: encrypts (with a CDIV, without the trial decryption it cannot do). */
  assert_int_equal(encrypt(h, "k-e", pt, sizeof pt, NULL, 1, &r), KERR_OK);
  check_cdiv(NULL, &r);
  assert_int_equal(decrypt(h, "k-e", r.ciphertext.data, r.ciphertext.len, r.iv, 12, r.tag, NULL,
                           NULL, &d),
                   KERR_INVALID_KEY_USAGE);
  xks_encrypt_result_free(&r);
  assert_int_equal(encrypt(h, "k-d", pt, sizeof pt, NULL, 0, &r), KERR_INVALID_KEY_USAGE);
  assert_int_equal(encrypt(h, "k-none", pt, sizeof pt, NULL, 0, &r), KERR_INVALID_STATE);
  /* The token itself refuses too (what the cached-attribute check relies on). */
  p11_token *tok = NULL;
  p11_session *s = NULL;
  p11_err pe;
  CK_OBJECT_HANDLE key;
  kbytes out = {0};
  uint8_t iv[12] = {0};
  assert_int_equal(p11_token_open(module, "xa", 1, &tok, &pe), KERR_OK);
  assert_int_equal(p11_session_acquire(tok, &s, &pe), KERR_OK);
  assert_int_equal(p11_key_find_label(s, "k-d", &key, &pe), KERR_OK);
  assert_int_equal(p11_gcm_encrypt_iv(s, key, iv, 12, NULL, 0, pt, sizeof pt, &out, &pe),
                   KERR_INVALID_KEY_USAGE);
  p11_session_release(s);
  p11_token_close(tok);
  xksp_hsm_close(h);
}

static void expect_health(xksp_hsm *h, const char *const *want, size_t n);
static void sleep_ms(long ms);

/* ---- the key cache across module reinitializations ----------------------- */

static void reinitialize_softhsm(void) {
  p11_err pe;
  assert_int_equal(p11_module_reinitialize(module, p11_module_epoch(module), 2000, &pe), KERR_OK);
}

/* A reinitialization renumbers every object handle (for any token of the
 * module, on behalf of anyone): a handle cached before it may name another
 * key after it.  Here bob, found first after the reinitialization, gets the
 * number alice had; alice's next encryption must still use alice. */
static void test_cache_across_reinitialization(void **state) {
  (void)state;
  kerr e;
  assert_int_equal(xksp_create_key(softhsm, "xa", USER_PIN, "alice", XKSP_USAGE_ENCRYPT_DECRYPT, &e),
                   KERR_OK);
  assert_int_equal(xksp_create_key(softhsm, "xa", USER_PIN, "bob", XKSP_USAGE_ENCRYPT_DECRYPT, &e),
                   KERR_OK);
  reinitialize_softhsm(); /* handle numbers from a known start */
  xksp_store_config c;
  const char *labels[] = {"xa"}, *mods[] = {softhsm};
  make_store(&c, 1, labels, mods);
  xksp_hsm *h = open_store(&c);
  const uint8_t pt[] = "for alice only";
  xks_encrypt_result r;
  assert_int_equal(encrypt(h, "alice", pt, sizeof pt, NULL, 0, &r), KERR_OK);
  xks_encrypt_result_free(&r);
  reinitialize_softhsm();
  assert_int_equal(encrypt(h, "bob", pt, sizeof pt, NULL, 0, &r), KERR_OK);
  xks_encrypt_result_free(&r);
  assert_int_equal(encrypt(h, "alice", pt, sizeof pt, NULL, 0, &r), KERR_OK);
  xksp_hsm_close(h);
  /* A fresh store (empty cache) judges which key made it. */
  h = open_store(&c);
  xks_decrypt_result d;
  assert_int_equal(decrypt(h, "alice", r.ciphertext.data, r.ciphertext.len, r.iv, 12, r.tag, NULL,
                           NULL, &d),
                   KERR_OK);
  assert_memory_equal(d.plaintext.data, pt, sizeof pt);
  xks_decrypt_result_free(&d);
  assert_int_equal(decrypt(h, "bob", r.ciphertext.data, r.ciphertext.len, r.iv, 12, r.tag, NULL,
                           NULL, &d),
                   KERR_INVALID_CIPHERTEXT);
  xks_encrypt_result_free(&r);
  xksp_hsm_close(h);
}

/* A token whose label is gone after a module restart is unavailable, never
 * "key not found": the next token serves, and it is marked failed. */
static void test_token_gone_after_restart(void **state) {
  (void)state;
  p11_err pe;
  kerr e;
  CK_SLOT_ID slot;
  assert_int_equal(p11_softhsm_provision(module, "xgone", SO_PIN, USER_PIN, &slot, &pe), KERR_OK);
  assert_int_equal(xksp_create_key(softhsm, "xgone", USER_PIN, "k-ed", XKSP_USAGE_ENCRYPT_DECRYPT,
                                   &e),
                   KERR_OK);
  xksp_store_config c2, c1;
  const char *labels[] = {"xgone", "xb"}, *mods[] = {softhsm, softhsm};
  make_store(&c2, 2, labels, mods);
  make_store(&c1, 1, labels, mods);
  xksp_hsm *h2 = open_store(&c2), *h1 = open_store(&c1);
  xks_key_metadata m;
  assert_int_equal(xksp_hsm_metadata(h2, "k-ed", &m, &e), KERR_OK);
  xks_key_metadata_free(&m);
  char cmd[PATH_MAX + 160];
  snprintf(cmd, sizeof cmd,
           "for f in '%s'/hsm/tokens/*/token.object; do grep -q -a xgone \"$f\" && "
           "rm -rf \"$(dirname \"$f\")\"; done; true",
           data_dir);
  assert_int_equal(system(cmd), 0);
  reinitialize_softhsm();
  assert_int_equal(xksp_hsm_metadata(h2, "k-ed", &m, &e), KERR_OK); /* xb */
  xks_key_metadata_free(&m);
  assert_int_equal(xksp_hsm_metadata(h1, "k-ed", &m, &e), KERR_KEY_UNAVAILABLE);
  assert_int_equal(xksp_hsm_metadata(h1, "k-ed", &m, &e), KERR_KEY_UNAVAILABLE);
  const char *gone[] = {"UNAVAILABLE"};
  expect_health(h1, gone, 1);
  xksp_hsm_close(h1);
  xksp_hsm_close(h2);
}

/* The login ended under the store's feet (here by a C_Logout through
 * another handle; in production by another thread's re-open): the store
 * logs in again and the request succeeds, with a cached key and with a key
 * it has to find (whose search, not logged in, would come back empty). */
static void test_login_lost(void **state) {
  (void)state;
  xksp_store_config c;
  const char *labels[] = {"xa"}, *mods[] = {softhsm};
  make_store(&c, 1, labels, mods);
  xksp_hsm *h = open_store(&c);
  const uint8_t pt[] = "logged out";
  xks_encrypt_result r;
  xks_key_metadata m;
  kerr e;
  assert_int_equal(encrypt(h, "k-ed", pt, sizeof pt, NULL, 0, &r), KERR_OK);
  xks_encrypt_result_free(&r);
  for (int round = 0; round < 2; round++) {
    p11_token *tok = NULL;
    p11_session *s = NULL;
    p11_err pe;
    assert_int_equal(p11_token_open(module, "xa", 1, &tok, &pe), KERR_OK);
    assert_int_equal(p11_session_acquire(tok, &s, &pe), KERR_OK);
    assert_int_equal(p11_module_functions(module)->C_Logout(p11_session_handle(s)), CKR_OK);
    p11_session_release(s);
    p11_token_close(tok);
    if (round == 0) {
      assert_int_equal(encrypt(h, "k-ed", pt, sizeof pt, NULL, 0, &r), KERR_OK);
      xks_encrypt_result_free(&r);
    } else {
      assert_int_equal(xksp_hsm_metadata(h, "k-e", &m, &e), KERR_OK);
      xks_key_metadata_free(&m);
    }
  }
  xksp_hsm_close(h);
}

/* ---- working copies ----------------------------------------------------- */

/* How many session objects (working copies) labelled `label` the token shows. */
static size_t count_copies(p11_session *s, const char *label) {
  CK_BBOOL off = CK_FALSE;
  CK_ATTRIBUTE t[] = {{CKA_TOKEN, &off, sizeof off}, {CKA_LABEL, (void *)label, strlen(label)}};
  CK_OBJECT_HANDLE found[16];
  CK_ULONG n = 0;
  const CK_FUNCTION_LIST *f = p11_module_functions(module);
  assert_int_equal(f->C_FindObjectsInit(p11_session_handle(s), t, 2), CKR_OK);
  assert_int_equal(f->C_FindObjects(p11_session_handle(s), found, 16, &n), CKR_OK);
  assert_int_equal(f->C_FindObjectsFinal(p11_session_handle(s)), CKR_OK);
  return n;
}

/* Requests run on a session copy of the key, made in a session of its own
 * that a failed request cannot take away; the finders never count a copy as
 * a second key; a cached key is refreshed after the store's refresh time
 * (the old copy retired, and destroyed one refresh later), so a key deleted
 * on the HSM is seen within that time.  The refresh time is shortened here
 * from the default 5 s. */
#define REFRESH_MS 1000

static void test_working_copies(void **state) {
  (void)state;
  kerr e;
  assert_int_equal(xksp_create_key(softhsm, "xa", USER_PIN, "k-copy", XKSP_USAGE_ENCRYPT_DECRYPT, &e), KERR_OK);
  xksp_store_config c;
  const char *labels[] = {"xa"}, *mods[] = {softhsm};
  make_store(&c, 1, labels, mods);
  c.key_refresh_ms = REFRESH_MS;
  xksp_hsm *h = open_store(&c);
  const uint8_t pt[] = "copied";
  xks_encrypt_result r;
  xks_decrypt_result d;
  assert_int_equal(encrypt(h, "k-copy", pt, sizeof pt, NULL, 0, &r), KERR_OK);

  p11_token *tok = NULL;
  p11_session *s = NULL;
  p11_err pe;
  CK_OBJECT_HANDLE key;
  assert_int_equal(p11_token_open(module, "xa", 1, &tok, &pe), KERR_OK);
  assert_int_equal(p11_session_acquire(tok, &s, &pe), KERR_OK);
  assert_int_equal(count_copies(s, "k-copy"), 1);
  assert_int_equal(p11_key_find_label(s, "k-copy", &key, &pe), KERR_OK); /* one key, not two */

  /* A failed decryption may make the pool close its session; the copy lives
   * in a session of its own and survives it. */
  uint8_t bad_tag[XKS_TAG_LEN];
  memcpy(bad_tag, r.tag, sizeof bad_tag);
  bad_tag[0] ^= 1;
  assert_int_equal(decrypt(h, "k-copy", r.ciphertext.data, r.ciphertext.len, r.iv, r.iv_len, bad_tag,
                           NULL, NULL, &d), KERR_INVALID_CIPHERTEXT);
  assert_int_equal(count_copies(s, "k-copy"), 1);

  sleep_ms(REFRESH_MS + 100); /* past the refresh time: the next request makes a fresh copy */
  assert_int_equal(decrypt(h, "k-copy", r.ciphertext.data, r.ciphertext.len, r.iv, r.iv_len, r.tag,
                           NULL, NULL, &d), KERR_OK);
  assert_memory_equal(d.plaintext.data, pt, sizeof pt);
  xks_decrypt_result_free(&d);
  /* The old copy is retired, not destroyed: a request may still hold it. */
  assert_int_equal(count_copies(s, "k-copy"), 2);
  sleep_ms(REFRESH_MS + 100); /* one refresh later the retired copy is destroyed: never more than two */
  assert_int_equal(decrypt(h, "k-copy", r.ciphertext.data, r.ciphertext.len, r.iv, r.iv_len, r.tag,
                           NULL, NULL, &d), KERR_OK);
  xks_decrypt_result_free(&d);
  assert_int_equal(count_copies(s, "k-copy"), 2);

  assert_int_equal(p11_key_destroy(s, key, &pe), KERR_OK); /* deleted on the HSM */
  sleep_ms(REFRESH_MS + 100);
  xks_encrypt_result r2;
  assert_int_equal(encrypt(h, "k-copy", pt, sizeof pt, NULL, 0, &r2), KERR_NOT_FOUND);
  /* Its copies are retired with it and gone one refresh later. */
  sleep_ms(REFRESH_MS + 100);
  assert_int_equal(encrypt(h, "k-ed", pt, sizeof pt, NULL, 0, &r2), KERR_OK); /* a lookup destroys them */
  xks_encrypt_result_free(&r2);
  assert_int_equal(count_copies(s, "k-copy"), 0);
  xks_encrypt_result_free(&r);
  p11_session_release(s);
  p11_token_close(tok);
  xksp_hsm_close(h);
}

/* ---- health and failover ------------------------------------------------ */

static void expect_health(xksp_hsm *h, const char *const *want, size_t n) {
  xks_health hh = {0};
  kerr e;
  assert_int_equal(xksp_hsm_health(h, &hh, &e), KERR_OK);
  assert_int_equal(hh.ekm_count, n);
  for (size_t i = 0; i < n; i++) assert_string_equal(hh.ekm[i].health_status, want[i]);
  assert_non_null(hh.ekm_vendor);
  xks_health_free(&hh);
}

static void test_health(void **state) {
  (void)state;
  xksp_store_config c;
  const char *labels[] = {"xa", "xb"}, *mods[] = {softhsm, softhsm};
  const char *active[] = {"ACTIVE", "ACTIVE"};
  make_store(&c, 2, labels, mods);
  kerr e;
  for (int with_key = 0; with_key < 2; with_key++) {
    c.health_key = with_key ? "health" : NULL;
    xksp_hsm *h = open_store(&c);
    assert_int_equal(xksp_hsm_start_prober(h, &e), KERR_OK);
    expect_health(h, active, 2);
    xks_health hh = {0};
    assert_int_equal(xksp_hsm_health(h, &hh, &e), KERR_OK);
    assert_string_equal(hh.ekm[0].id, "xa");
    assert_string_equal(hh.ekm[1].id, "xb");
    assert_string_equal(hh.ekm_vendor, "SoftHSM project");
    assert_non_null(strstr(hh.ekm[0].model, "SoftHSM"));
    assert_non_null(strstr(hh.ekm[0].model, " fw "));
    assert_true(strlen(hh.ekm[0].model) <= 128);
    xks_health_free(&hh);
    /* Close stops the prober at once, not after its interval. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    xksp_hsm_close(h);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 1 || (t1.tv_sec - t0.tv_sec == 1 && t1.tv_nsec < t0.tv_nsec));
  }
  /* A health key missing on the tokens: they answer, DEGRADED. */
  c.health_key = "no-such-key";
  xksp_hsm *h = open_store(&c);
  xksp_hsm_probe_now(h);
  const char *degraded[] = {"DEGRADED", "DEGRADED"};
  expect_health(h, degraded, 2);
  xksp_hsm_close(h);
  /* A status no probe confirmed for two intervals (here 1 s) is not current. */
  c.health_key = NULL;
  h = open_store(&c);
  xksp_hsm_probe_now(h);
  expect_health(h, active, 2);
  sleep_ms(2100);
  const char *stale[] = {"UNAVAILABLE", "UNAVAILABLE"};
  expect_health(h, stale, 2);
  xksp_hsm_probe_now(h);
  expect_health(h, active, 2);
  xksp_hsm_close(h);
  /* A wrong PIN stops the open, naming the token, not the PIN. */
  char bad[] = "not-the-pin-1";
  c.health_key = NULL;
  c.tokens[1].pin = bad;
  h = NULL;
  assert_int_equal(xksp_hsm_open(&c, &h, &e), KERR_VALIDATION);
  assert_null(h);
  assert_non_null(strstr(e.msg, "\"xb\""));
  assert_null(strstr(e.msg, bad));
  /* The backend table is the same code. */
  assert_string_equal(xksp_hsm_backend.name, "pkcs11");
  c.tokens[1].pin = pin;
  void *be = NULL;
  assert_int_equal(xksp_hsm_backend.open(&c, &be, &e), KERR_OK);
  xks_key_metadata m;
  assert_int_equal(xksp_hsm_backend.metadata(be, "k-ed", &m, &e), KERR_OK);
  xks_key_metadata_free(&m);
  xksp_hsm_backend.close(be);
}

static void set_down(int down) {
  if (down) {
    FILE *f = fopen(fail_file, "w");
    assert_non_null(f);
    fclose(f);
  } else {
    assert_int_equal(unlink(fail_file), 0);
  }
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) continue;
}

static void test_failover_and_recovery(void **state) {
  (void)state;
  xksp_store_config c;
  const char *labels[] = {"xa", "xb"}, *mods[] = {P11SHIM_PATH, softhsm};
  make_store(&c, 2, labels, mods);
  xksp_hsm *h = open_store(&c);
  xks_encrypt_result r0;
  xks_decrypt_result d;
  const uint8_t pt[] = "failover";
  /* Made by xa: the test tokens' keys differ, so only xa can decrypt it. */
  assert_int_equal(encrypt(h, "k-ed", pt, sizeof pt, NULL, 0, &r0), KERR_OK);

  set_down(1);
  xks_encrypt_result r;
  assert_int_equal(encrypt(h, "k-ed", pt, sizeof pt, NULL, 0, &r), KERR_OK); /* by xb */
  assert_int_equal(decrypt(h, "k-ed", r.ciphertext.data, r.ciphertext.len, r.iv, 12, r.tag, NULL,
                           NULL, &d),
                   KERR_OK);
  xks_decrypt_result_free(&d);
  xks_encrypt_result_free(&r);
  /* xa's ciphertext goes to xb, whose key is another: proof xb served. */
  assert_int_equal(decrypt(h, "k-ed", r0.ciphertext.data, r0.ciphertext.len, r0.iv, 12, r0.tag,
                           NULL, NULL, &d),
                   KERR_INVALID_CIPHERTEXT);
  xksp_hsm_probe_now(h);
  const char *first_down[] = {"UNAVAILABLE", "ACTIVE"};
  expect_health(h, first_down, 2);

  set_down(0);
  sleep_ms(XKSP_REOPEN_BACKOFF_MS + 100);
  assert_int_equal(decrypt(h, "k-ed", r0.ciphertext.data, r0.ciphertext.len, r0.iv, 12, r0.tag,
                           NULL, NULL, &d),
                   KERR_OK); /* xa serves again */
  assert_memory_equal(d.plaintext.data, pt, sizeof pt);
  xks_decrypt_result_free(&d);
  xksp_hsm_probe_now(h);
  const char *active[] = {"ACTIVE", "ACTIVE"};
  expect_health(h, active, 2);
  xksp_hsm_close(h);
  xks_encrypt_result_free(&r0);

  /* Every token failing. */
  const char *shim_both[] = {P11SHIM_PATH, P11SHIM_PATH};
  make_store(&c, 2, labels, shim_both);
  h = open_store(&c);
  set_down(1);
  kerr e;
  xks_key_metadata m;
  assert_int_equal(encrypt(h, "k-ed", pt, sizeof pt, NULL, 0, &r), KERR_KEY_UNAVAILABLE);
  assert_int_equal(xksp_hsm_metadata(h, "k-ed", &m, &e), KERR_KEY_UNAVAILABLE);
  assert_int_equal(xks_error_from_kerr(KERR_KEY_UNAVAILABLE), XKS_ERR_INTERNAL);
  xksp_hsm_probe_now(h);
  const char *all_down[] = {"UNAVAILABLE", "UNAVAILABLE"};
  expect_health(h, all_down, 2);
  /* Back: after the backoff the probe re-opens both. */
  set_down(0);
  sleep_ms(XKSP_REOPEN_BACKOFF_MS + 100);
  xksp_hsm_probe_now(h);
  expect_health(h, active, 2);
  assert_int_equal(xksp_hsm_metadata(h, "k-ed", &m, &e), KERR_OK);
  xks_key_metadata_free(&m);
  xksp_hsm_close(h);

  /* A store opened while its only token is down serves once it is back. */
  make_store(&c, 1, labels, shim_both);
  set_down(1);
  h = open_store(&c);
  assert_int_equal(xksp_hsm_metadata(h, "k-ed", &m, &e), KERR_KEY_UNAVAILABLE);
  set_down(0);
  sleep_ms(XKSP_REOPEN_BACKOFF_MS + 100);
  assert_int_equal(xksp_hsm_metadata(h, "k-ed", &m, &e), KERR_OK);
  xks_key_metadata_free(&m);
  xksp_hsm_close(h);

  /* A configured token that does not exist is unavailable, never "key not
   * found": the next token serves, and alone it is KERR_KEY_UNAVAILABLE. */
  const char *missing_first[] = {"absent-token", "xb"}, *direct[] = {softhsm, softhsm};
  make_store(&c, 2, missing_first, direct);
  h = open_store(&c);
  assert_int_equal(xksp_hsm_metadata(h, "k-ed", &m, &e), KERR_OK);
  xks_key_metadata_free(&m);
  xksp_hsm_close(h);
  make_store(&c, 1, missing_first, direct);
  h = open_store(&c);
  assert_int_equal(xksp_hsm_metadata(h, "k-ed", &m, &e), KERR_KEY_UNAVAILABLE);
  sleep_ms(XKSP_REOPEN_BACKOFF_MS + 100);
  assert_int_equal(xksp_hsm_metadata(h, "k-ed", &m, &e), KERR_KEY_UNAVAILABLE);
  xksp_hsm_close(h);
}

/* With the prober running, requests skip a failed token and the prober,
 * woken by the failure, re-opens it within its first backoff step, long
 * before its 30 s interval. */
static void test_prober_recovers(void **state) {
  (void)state;
  xksp_store_config c;
  kerr e;
  const char *labels[] = {"xa", "xb"}, *mods[] = {P11SHIM_PATH, softhsm};
  make_store(&c, 2, labels, mods);
  c.health_interval_s = 30;
  xksp_hsm *h = open_store(&c);
  assert_int_equal(xksp_hsm_start_prober(h, &e), KERR_OK);
  const uint8_t pt[] = "prober";
  xks_encrypt_result r;
  set_down(1);
  assert_int_equal(encrypt(h, "k-ed", pt, sizeof pt, NULL, 0, &r), KERR_OK); /* by xb */
  xks_encrypt_result_free(&r);
  const char *first_down[] = {"UNAVAILABLE", "ACTIVE"}, *active[] = {"ACTIVE", "ACTIVE"};
  expect_health(h, first_down, 2);
  set_down(0);
  int back = 0;
  for (int i = 0; i < 40 && !back; i++) {
    xks_health hh = {0};
    assert_int_equal(xksp_hsm_health(h, &hh, &e), KERR_OK);
    back = strcmp(hh.ekm[0].health_status, "ACTIVE") == 0;
    xks_health_free(&hh);
    if (!back) sleep_ms(100);
  }
  assert_true(back);
  expect_health(h, active, 2);
  xksp_hsm_close(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_usage_parse_and_create_key),
      cmocka_unit_test(test_metadata),
      cmocka_unit_test(test_round_trip_iv_drbg),
      cmocka_unit_test(test_round_trip_iv_hsm),
      cmocka_unit_test(test_iv_batches_from_token),
      cmocka_unit_test(test_sixteen_byte_iv_and_metadata),
      cmocka_unit_test(test_key_usage),
      cmocka_unit_test(test_cache_across_reinitialization),
      cmocka_unit_test(test_token_gone_after_restart),
      cmocka_unit_test(test_login_lost),
      cmocka_unit_test(test_working_copies),
      cmocka_unit_test(test_health),
      cmocka_unit_test(test_failover_and_recovery),
      cmocka_unit_test(test_prober_recovers),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
