/* test_xks_msg.c - the XKS Proxy API v1 message module (lib/xks): every
 * routing rule, every request field's required/optional/limit/base64 rule
 * with its error name and HTTP status, round trips of every reply shape, the
 * AAD and CDIV constructions against bytes assembled here, and that no error
 * message repeats a secret. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "xks/xks_msg.h"

#define PREFIX "/tenant-1/kms/xks/v1"

/* ---- helpers ----------------------------------------------------------- */

static char *b64(const uint8_t *d, size_t n) {
  char *s = malloc(b64_encoded_size(n));
  assert_non_null(s);
  b64_encode(d, n, s);
  return s;
}

/* base64 of n bytes of value v */
static char *b64_fill(size_t n, uint8_t v) {
  uint8_t *d = malloc(n + 1);
  char *s;
  assert_non_null(d);
  memset(d, v, n);
  s = b64(d, n);
  free(d);
  return s;
}

static void route(const char *method, const char *path, xks_route *r) {
  xks_route_classify(PREFIX, method, path, strlen(path), r);
}

static char *str_rep(char c, size_t n) {
  char *s = malloc(n + 1);
  assert_non_null(s);
  memset(s, c, n);
  s[n] = '\0';
  return s;
}

/* A valid request body of `op` as a jansson object, to be edited by tests. */
static json_t *good_body(xks_op op) {
  json_t *m = json_object(), *b = json_object();
  json_object_set_new(m, "kmsRequestId", json_string("4112f4d6-db54-4af4-ae30-c55a22a8dfae"));
  json_object_set_new(m, "kmsOperation", json_string(op == XKS_OP_HEALTH ? "KmsHealthCheck"
                                                                          : "Encrypt"));
  if (op != XKS_OP_HEALTH)
    json_object_set_new(m, "awsPrincipalArn", json_string("arn:aws:iam::123456789012:user/Alice"));
  if (op == XKS_OP_ENCRYPT || op == XKS_OP_DECRYPT)
    json_object_set_new(m, "kmsKeyArn",
                        json_string("arn:aws:kms:us-east-1:123456789012:key/"
                                    "1234abcd-12ab-34cd-56ef-1234567890ab"));
  json_object_set_new(b, "requestMetadata", m);
  if (op == XKS_OP_ENCRYPT) {
    json_object_set_new(b, "plaintext", json_string("SGVsbG8gV29ybGQh")); /* Hello World! */
    json_object_set_new(b, "encryptionAlgorithm", json_string("AES_GCM"));
  } else if (op == XKS_OP_DECRYPT) {
    json_object_set_new(b, "ciphertext", json_string("ghxkK1txeDNn3q8Y"));
    json_object_set_new(b, "encryptionAlgorithm", json_string("AES_GCM"));
    json_object_set_new(b, "initializationVector", json_string("HMrlRw85cAJUd5Ax"));
    json_object_set_new(b, "authenticationTag", json_string("vBxN2ncH1oEkR8WVXpmyYQ=="));
  }
  return b;
}

static json_t *meta_of(json_t *b) { return json_object_get(b, "requestMetadata"); }

/* Parse `b` (consumed) as `op`; return the code, and the XKS error in *xe. */
static kerr_code parse_json(xks_op op, json_t *b, xks_error *xe, kerr *err) {
  char *text = json_dumps(b, JSON_COMPACT);
  xks_request r;
  kerr_code rc;
  assert_non_null(text);
  json_decref(b);
  kerr_clear(err);
  rc = xks_request_parse(op, text, strlen(text), &r, err);
  if (xe) *xe = xks_error_from_kerr(rc);
  if (!rc) xks_request_free(&r);
  free(text);
  return rc;
}

/* Expect `b` to fail as `op` with XKS error `want` (and its HTTP status). */
static void expect_fail(xks_op op, json_t *b, xks_error want, int status) {
  kerr err;
  xks_error xe;
  kerr_code rc = parse_json(op, b, &xe, &err);
  if (rc == KERR_OK) fail_msg("accepted");
  if (xe != want) fail_msg("got %s (%s)", xks_error_name(xe), err.msg);
  assert_int_equal(xks_error_status(xe), status);
  assert_true(strlen(err.msg) > 0);
}

static void expect_ok(xks_op op, json_t *b) {
  kerr err;
  if (parse_json(op, b, NULL, &err) != KERR_OK) fail_msg("refused: %s", err.msg);
}

/* ---- errors ------------------------------------------------------------ */

static void test_error_table(void **state) {
  static const struct {
    xks_error e;
    const char *name;
    int status;
  } t[] = {
      {XKS_ERR_VALIDATION, "ValidationException", 400},
      {XKS_ERR_INVALID_STATE, "InvalidStateException", 400},
      {XKS_ERR_INVALID_CIPHERTEXT, "InvalidCiphertextException", 400},
      {XKS_ERR_INVALID_KEY_USAGE, "InvalidKeyUsageException", 400},
      {XKS_ERR_AUTHENTICATION_FAILED, "AuthenticationFailedException", 401},
      {XKS_ERR_ACCESS_DENIED, "AccessDeniedException", 403},
      {XKS_ERR_KEY_NOT_FOUND, "KeyNotFoundException", 404},
      {XKS_ERR_INVALID_URI_PATH, "InvalidUriPathException", 404},
      {XKS_ERR_THROTTLING, "ThrottlingException", 429},
      {XKS_ERR_UNSUPPORTED_OPERATION, "UnsupportedOperationException", 501},
      {XKS_ERR_DEPENDENCY_TIMEOUT, "DependencyTimeoutException", 503},
      {XKS_ERR_INTERNAL, "InternalException", 500},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    assert_string_equal(xks_error_name(t[i].e), t[i].name);
    assert_int_equal(xks_error_status(t[i].e), t[i].status);
    assert_int_equal(xks_error_from_name(t[i].name), t[i].e);
  }
  assert_null(xks_error_name(XKS_ERR_NONE));
  assert_null(xks_error_name(XKS_ERR_COUNT_));
  assert_int_equal(xks_error_from_name("validationexception"), XKS_ERR_NONE);
  assert_int_equal(xks_error_from_kerr(KERR_VALIDATION), XKS_ERR_VALIDATION);
  assert_int_equal(xks_error_from_kerr(KERR_INVALID_CIPHERTEXT), XKS_ERR_INVALID_CIPHERTEXT);
  assert_int_equal(xks_error_from_kerr(KERR_UNSUPPORTED_OPERATION), XKS_ERR_UNSUPPORTED_OPERATION);
  assert_int_equal(xks_error_from_kerr(KERR_NOT_FOUND), XKS_ERR_KEY_NOT_FOUND);
  assert_int_equal(xks_error_from_kerr(KERR_INTERNAL), XKS_ERR_INTERNAL);
  assert_int_equal(xks_error_from_kerr(KERR_OK), XKS_ERR_NONE);
}

/* ---- routing ----------------------------------------------------------- */

static void test_prefix_rules(void **state) {
  kerr err;
  char buf[200];
  assert_int_equal(xks_uri_prefix_check("/kms/xks/v1", &err), KERR_OK);
  assert_int_equal(xks_uri_prefix_check("/a-b_C9/x/kms/xks/v1", &err), KERR_OK);
  /* 128 characters: accepted; 129: refused */
  memset(buf, 'a', sizeof buf);
  buf[0] = '/';
  strcpy(buf + 128 - 11, "/kms/xks/v1");
  assert_int_equal(strlen(buf), 128);
  assert_int_equal(xks_uri_prefix_check(buf, &err), KERR_OK);
  memset(buf, 'a', sizeof buf);
  buf[0] = '/';
  strcpy(buf + 129 - 11, "/kms/xks/v1");
  assert_int_equal(xks_uri_prefix_check(buf, &err), KERR_VALIDATION);
  assert_int_equal(xks_uri_prefix_check("kms/xks/v1", &err), KERR_VALIDATION);
  assert_int_equal(xks_uri_prefix_check("/kms/xks/v2", &err), KERR_VALIDATION);
  assert_int_equal(xks_uri_prefix_check("/kms/xks/v1/", &err), KERR_VALIDATION);
  assert_int_equal(xks_uri_prefix_check("/a.b/kms/xks/v1", &err), KERR_VALIDATION);
  assert_int_equal(xks_uri_prefix_check("/a%20/kms/xks/v1", &err), KERR_VALIDATION);
  assert_int_equal(xks_uri_prefix_check("", &err), KERR_VALIDATION);
  assert_int_equal(xks_uri_prefix_check(NULL, &err), KERR_VALIDATION);
}

static void test_route_operations(void **state) {
  xks_route r;
  route("POST", PREFIX "/keys/abc-1.2_Z/metadata", &r);
  assert_int_equal(r.op, XKS_OP_METADATA);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.error, XKS_ERR_NONE);
  assert_string_equal(r.key_id, "abc-1.2_Z");
  route("POST", PREFIX "/keys/k/encrypt", &r);
  assert_int_equal(r.op, XKS_OP_ENCRYPT);
  route("POST", PREFIX "/keys/k/decrypt", &r);
  assert_int_equal(r.op, XKS_OP_DECRYPT);
  route("POST", PREFIX "/health", &r);
  assert_int_equal(r.op, XKS_OP_HEALTH);
  assert_string_equal(r.key_id, "");
  /* the raw path need not be NUL-terminated */
  xks_route_classify(PREFIX, "POST", PREFIX "/healthXYZ", strlen(PREFIX "/health"), &r);
  assert_int_equal(r.op, XKS_OP_HEALTH);
}

static void expect_404(const char *method, const char *path) {
  xks_route r;
  route(method, path, &r);
  if (r.status != 404) fail_msg("not 404: %s", path);
  assert_int_equal(r.op, XKS_OP_NONE);
  assert_int_equal(r.error, XKS_ERR_INVALID_URI_PATH);
  assert_int_equal(xks_error_status(r.error), 404);
}

static void test_route_not_api(void **state) {
  const char *bad[] = {
      "/kms/xks/v1/health",                     /* another prefix */
      "/tenant-2/kms/xks/v1/health",            /* another prefix */
      "/tenant-1/kms/xks/v2/health",            /* another version */
      PREFIX,                                   /* the base alone */
      PREFIX "/",                               /* */
      PREFIX "/health/",                        /* trailing slash */
      PREFIX "/health?x=1",                     /* query */
      PREFIX "/health#f",                       /* fragment */
      PREFIX "/keys/k/sign",                    /* unknown op */
      PREFIX "/keys/k/encrypt/",                /* */
      PREFIX "/keys/k/encrypt?x",               /* query */
      PREFIX "/keys//encrypt",                  /* empty key id */
      PREFIX "/keys/a/b/encrypt",               /* '/' in key id */
      PREFIX "/keys/a%2Fb/encrypt",             /* percent-encoding */
      PREFIX "/keys/a+b/encrypt",               /* charset */
      PREFIX "/keys/a b/encrypt",               /* charset */
      PREFIX "/keys/a~b/encrypt",               /* charset */
      PREFIX "/keys/k",                         /* no op */
      PREFIX "/keys/",                          /* */
      PREFIX "/key/k/encrypt",                  /* */
      PREFIX "/HEALTH",                         /* case */
      PREFIX "/keys/k/Encrypt",                 /* case */
      "",                                       /* */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    expect_404("POST", bad[i]);
    expect_404("GET", bad[i]);
  }
  /* an unusable configured prefix routes nothing */
  xks_route r;
  xks_route_classify("/bad/prefix", "POST", "/bad/prefix/health", 18, &r);
  assert_int_equal(r.status, 404);
  /* a NUL inside the path */
  xks_route_classify(PREFIX, "POST", PREFIX "/keys/a\0b/encrypt", strlen(PREFIX) + 17, &r);
  assert_int_equal(r.status, 404);
}

static void test_route_methods(void **state) {
  const char *paths[] = {PREFIX "/keys/k/metadata", PREFIX "/keys/k/encrypt",
                         PREFIX "/keys/k/decrypt", PREFIX "/health"};
  const char *methods[] = {"GET", "PUT", "DELETE", "HEAD", "post", "PATCH"};
  for (size_t p = 0; p < 4; p++)
    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
      xks_route r;
      route(methods[m], paths[p], &r);
      assert_int_equal(r.status, 405);
      assert_int_not_equal(r.op, XKS_OP_NONE); /* the operation is still known */
      assert_int_equal(r.error, XKS_ERR_NONE);
    }
}

static void test_route_limits(void **state) {
  xks_route r;
  char *id = str_rep('k', 128), path[600];
  /* key id: 128 accepted, 129 refused */
  snprintf(path, sizeof path, "%s/keys/%s/decrypt", PREFIX, id);
  route("POST", path, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.key_id, id);
  free(id);
  id = str_rep('k', 129);
  snprintf(path, sizeof path, "%s/keys/%s/decrypt", PREFIX, id);
  expect_404("POST", path);
  free(id);
  /* the whole path: 256 characters accepted, 257 refused (needs a long prefix) */
  size_t fixed;
  /* 257 with a 128-char prefix and a key id under 128 characters */
  char pre[129];
  memset(pre, 'p', sizeof pre);
  pre[0] = '/';
  strcpy(pre + 128 - 11, "/kms/xks/v1");
  fixed = 128 + strlen("/keys//metadata");
  id = str_rep('b', 257 - fixed);
  snprintf(path, sizeof path, "%s/keys/%s/metadata", pre, id);
  assert_int_equal(strlen(path), 257);
  xks_route_classify(pre, "POST", path, strlen(path), &r);
  assert_int_equal(r.status, 404);
  free(id);
  id = str_rep('b', 256 - fixed);
  snprintf(path, sizeof path, "%s/keys/%s/metadata", pre, id);
  xks_route_classify(pre, "POST", path, strlen(path), &r);
  assert_int_equal(r.status, 200);
  free(id);
}

/* ---- requests ---------------------------------------------------------- */

static void test_request_minimal_bodies(void **state) {
  expect_ok(XKS_OP_METADATA, good_body(XKS_OP_METADATA));
  expect_ok(XKS_OP_ENCRYPT, good_body(XKS_OP_ENCRYPT));
  expect_ok(XKS_OP_DECRYPT, good_body(XKS_OP_DECRYPT));
  expect_ok(XKS_OP_HEALTH, good_body(XKS_OP_HEALTH));
}

static void test_request_json_strictness(void **state) {
  static const char *bad[] = {
      "", "[]", "\"x\"", "{", "{}x",
      "{\"requestMetadata\":{\"kmsRequestId\":\"a\",\"kmsOperation\":\"b\"},"
      "\"requestMetadata\":{\"kmsRequestId\":\"a\",\"kmsOperation\":\"b\"}}",
      "{\"requestMetadata\":{\"kmsRequestId\":\"a\",\"kmsRequestId\":\"c\",\"kmsOperation\":\"b\"}}",
  };
  xks_request r;
  kerr err;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(xks_request_parse(XKS_OP_HEALTH, bad[i], strlen(bad[i]), &r, &err),
                     KERR_VALIDATION);
    assert_null(r.meta.kms_request_id);
  }
  /* over the body cap: 501 before any parsing */
  size_t n = XKS_BODY_MAX + 1;
  char *big = str_rep(' ', n);
  assert_int_equal(xks_request_parse(XKS_OP_HEALTH, big, n, &r, &err), KERR_UNSUPPORTED_OPERATION);
  free(big);
  /* not an operation */
  assert_int_equal(xks_request_parse(XKS_OP_NONE, "{}", 2, &r, &err), KERR_INTERNAL);
}

static void test_request_metadata_fields(void **state) {
  struct {
    const char *field;
    xks_op op;
    int required;
  } t[] = {
      {"kmsRequestId", XKS_OP_HEALTH, 1},     {"kmsOperation", XKS_OP_HEALTH, 1},
      {"kmsRequestId", XKS_OP_METADATA, 1},   {"kmsOperation", XKS_OP_METADATA, 1},
      {"awsPrincipalArn", XKS_OP_METADATA, 1}, {"awsPrincipalArn", XKS_OP_ENCRYPT, 1},
      {"awsPrincipalArn", XKS_OP_DECRYPT, 1}, {"kmsKeyArn", XKS_OP_ENCRYPT, 1},
      {"kmsKeyArn", XKS_OP_DECRYPT, 1},       {"kmsKeyArn", XKS_OP_METADATA, 0},
      {"awsSourceVpc", XKS_OP_ENCRYPT, 0},    {"awsSourceVpce", XKS_OP_DECRYPT, 0},
      {"awsSourceVpc", XKS_OP_METADATA, 0},   {"kmsViaService", XKS_OP_ENCRYPT, 0},
      {"kmsViaService", XKS_OP_DECRYPT, 0},   {"kmsRequestId", XKS_OP_ENCRYPT, 1},
      {"kmsOperation", XKS_OP_DECRYPT, 1},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    json_t *b = good_body(t[i].op);
    char *s2048 = str_rep('a', 2048), *s2049 = str_rep('a', 2049);
    json_object_del(meta_of(b), t[i].field);
    if (t[i].required)
      expect_fail(t[i].op, b, XKS_ERR_VALIDATION, 400);
    else
      expect_ok(t[i].op, b);
    /* wrong type */
    b = good_body(t[i].op);
    json_object_set_new(meta_of(b), t[i].field, json_integer(5));
    expect_fail(t[i].op, b, XKS_ERR_VALIDATION, 400);
    /* 2048 characters accepted; 2049 above this implementation's maximum */
    b = good_body(t[i].op);
    json_object_set_new(meta_of(b), t[i].field, json_string(s2048));
    expect_ok(t[i].op, b);
    b = good_body(t[i].op);
    json_object_set_new(meta_of(b), t[i].field, json_string(s2049));
    expect_fail(t[i].op, b, XKS_ERR_UNSUPPORTED_OPERATION, 501);
    free(s2048);
    free(s2049);
  }
  /* requestMetadata missing or not an object */
  for (xks_op op = XKS_OP_METADATA; op <= XKS_OP_HEALTH; op++) {
    json_t *b = good_body(op);
    json_object_del(b, "requestMetadata");
    expect_fail(op, b, XKS_ERR_VALIDATION, 400);
    b = good_body(op);
    json_object_set_new(b, "requestMetadata", json_string("x"));
    expect_fail(op, b, XKS_ERR_VALIDATION, 400);
  }
  /* unknown kmsOperation, any kmsRequestId, unknown and foreign fields: accepted */
  json_t *b = good_body(XKS_OP_ENCRYPT);
  json_object_set_new(meta_of(b), "kmsOperation", json_string("SomeFutureApi"));
  json_object_set_new(meta_of(b), "kmsRequestId", json_string(""));
  json_object_set_new(meta_of(b), "kmsRecipientAttestationPCR0", json_string("00"));
  json_object_set_new(b, "somethingNew", json_true());
  expect_ok(XKS_OP_ENCRYPT, b);
  b = good_body(XKS_OP_HEALTH);
  json_object_set_new(meta_of(b), "awsPrincipalArn", json_integer(1)); /* not a health field */
  expect_ok(XKS_OP_HEALTH, b);
  /* values are kept */
  b = good_body(XKS_OP_DECRYPT);
  json_object_set_new(meta_of(b), "kmsViaService", json_string("ebs"));
  json_object_set_new(meta_of(b), "awsSourceVpce", json_string("vpce-1"));
  char *text = json_dumps(b, JSON_COMPACT);
  json_decref(b);
  xks_request r;
  kerr err;
  assert_int_equal(xks_request_parse(XKS_OP_DECRYPT, text, strlen(text), &r, &err), KERR_OK);
  assert_string_equal(r.meta.kms_via_service, "ebs");
  assert_string_equal(r.meta.aws_source_vpce, "vpce-1");
  assert_null(r.meta.aws_source_vpc);
  assert_string_equal(r.meta.kms_operation, "Encrypt");
  xks_request_free(&r);
  free(text);
}

/* Set field `f` of a fresh `op` body to `v` (consumed) and expect the result. */
static void field_case(xks_op op, const char *f, json_t *v, xks_error want, int status) {
  json_t *b = good_body(op);
  if (v)
    json_object_set_new(b, f, v);
  else
    json_object_del(b, f);
  if (want == XKS_ERR_NONE)
    expect_ok(op, b);
  else
    expect_fail(op, b, want, status);
}

static void field_b64_len(xks_op op, const char *f, size_t n, xks_error want, int status) {
  char *s = b64_fill(n, 0x41);
  field_case(op, f, json_string(s), want, status);
  free(s);
}

/* Rules every base64 field shares: type, alphabet, padding. */
static void b64_syntax(xks_op op, const char *f) {
  field_case(op, f, json_integer(3), XKS_ERR_VALIDATION, 400);
  field_case(op, f, json_null(), XKS_ERR_VALIDATION, 400);
  field_case(op, f, json_string("AAAAAAAAAAAAAAAAAAAAAA"), XKS_ERR_VALIDATION, 400); /* no pad */
  field_case(op, f, json_string("AAAAAAAAAAAAAAAAAAAA-_=="), XKS_ERR_VALIDATION, 400); /* url */
  field_case(op, f, json_string("AAAAAAAAAAAAAAAAAAAAAB=="), XKS_ERR_VALIDATION, 400); /* bits */
  field_case(op, f, json_string("AAAA AAAAAAAAAAAAAAAAA=="), XKS_ERR_VALIDATION, 400);
  field_case(op, f, json_string("AAAAAAAAAAAAAAAAAAAAAA==\n"), XKS_ERR_VALIDATION, 400);
}

static void test_request_encrypt_fields(void **state) {
  xks_op E = XKS_OP_ENCRYPT;
  field_case(E, "plaintext", NULL, XKS_ERR_VALIDATION, 400);
  field_case(E, "plaintext", json_string(""), XKS_ERR_VALIDATION, 400);
  b64_syntax(E, "plaintext");
  field_b64_len(E, "plaintext", 1, XKS_ERR_NONE, 200);
  field_b64_len(E, "plaintext", 4300, XKS_ERR_NONE, 200);
  field_b64_len(E, "plaintext", 4301, XKS_ERR_UNSUPPORTED_OPERATION, 501);
  field_b64_len(E, "plaintext", 100000, XKS_ERR_UNSUPPORTED_OPERATION, 501);
  field_case(E, "encryptionAlgorithm", NULL, XKS_ERR_VALIDATION, 400);
  field_case(E, "encryptionAlgorithm", json_string("AES_CBC"), XKS_ERR_VALIDATION, 400);
  field_case(E, "encryptionAlgorithm", json_string("aes_gcm"), XKS_ERR_VALIDATION, 400);
  field_case(E, "encryptionAlgorithm", json_integer(1), XKS_ERR_VALIDATION, 400);
  field_case(E, "additionalAuthenticatedData", NULL, XKS_ERR_NONE, 200);
  field_case(E, "additionalAuthenticatedData", json_string(""), XKS_ERR_NONE, 200);
  b64_syntax(E, "additionalAuthenticatedData");
  field_b64_len(E, "additionalAuthenticatedData", 8192, XKS_ERR_NONE, 200);
  field_b64_len(E, "additionalAuthenticatedData", 8193, XKS_ERR_UNSUPPORTED_OPERATION, 501);
  field_case(E, "ciphertextDataIntegrityValueAlgorithm", NULL, XKS_ERR_NONE, 200);
  field_case(E, "ciphertextDataIntegrityValueAlgorithm", json_string("SHA_256"), XKS_ERR_NONE, 200);
  field_case(E, "ciphertextDataIntegrityValueAlgorithm", json_string("SHA_384"),
             XKS_ERR_VALIDATION, 400);
  field_case(E, "ciphertextDataIntegrityValueAlgorithm", json_false(), XKS_ERR_VALIDATION, 400);

  /* what a parse keeps */
  json_t *b = good_body(E);
  json_object_set_new(b, "additionalAuthenticatedData", json_string("YWFk"));
  json_object_set_new(b, "ciphertextDataIntegrityValueAlgorithm", json_string("SHA_256"));
  char *text = json_dumps(b, JSON_COMPACT);
  json_decref(b);
  xks_request r;
  kerr err;
  assert_int_equal(xks_request_parse(E, text, strlen(text), &r, &err), KERR_OK);
  assert_int_equal(r.plaintext.len, 12);
  assert_memory_equal(r.plaintext.data, "Hello World!", 12);
  assert_true(r.has_aad);
  assert_memory_equal(r.aad.data, "aad", 3);
  assert_true(r.want_cdiv);
  xks_request_free(&r);
  free(text);
}

static void test_request_decrypt_fields(void **state) {
  xks_op D = XKS_OP_DECRYPT;
  field_case(D, "ciphertext", NULL, XKS_ERR_VALIDATION, 400);
  field_case(D, "ciphertext", json_string(""), XKS_ERR_INVALID_CIPHERTEXT, 400);
  b64_syntax(D, "ciphertext");
  field_b64_len(D, "ciphertext", 4300, XKS_ERR_NONE, 200);
  field_b64_len(D, "ciphertext", 4301, XKS_ERR_UNSUPPORTED_OPERATION, 501);
  field_case(D, "encryptionAlgorithm", NULL, XKS_ERR_VALIDATION, 400);
  field_case(D, "encryptionAlgorithm", json_string("AES_GCM "), XKS_ERR_VALIDATION, 400);
  field_case(D, "initializationVector", NULL, XKS_ERR_VALIDATION, 400);
  b64_syntax(D, "initializationVector");
  field_b64_len(D, "initializationVector", 12, XKS_ERR_NONE, 200);
  field_b64_len(D, "initializationVector", 16, XKS_ERR_NONE, 200);
  field_b64_len(D, "initializationVector", 11, XKS_ERR_INVALID_CIPHERTEXT, 400);
  field_b64_len(D, "initializationVector", 13, XKS_ERR_INVALID_CIPHERTEXT, 400);
  field_b64_len(D, "initializationVector", 17, XKS_ERR_INVALID_CIPHERTEXT, 400);
  field_b64_len(D, "initializationVector", 0, XKS_ERR_INVALID_CIPHERTEXT, 400);
  field_case(D, "authenticationTag", NULL, XKS_ERR_VALIDATION, 400);
  b64_syntax(D, "authenticationTag");
  field_b64_len(D, "authenticationTag", 15, XKS_ERR_INVALID_CIPHERTEXT, 400);
  field_b64_len(D, "authenticationTag", 17, XKS_ERR_INVALID_CIPHERTEXT, 400);
  field_b64_len(D, "authenticationTag", 64, XKS_ERR_INVALID_CIPHERTEXT, 400);
  field_case(D, "additionalAuthenticatedData", NULL, XKS_ERR_NONE, 200);
  b64_syntax(D, "additionalAuthenticatedData");
  field_b64_len(D, "additionalAuthenticatedData", 8192, XKS_ERR_NONE, 200);
  field_b64_len(D, "additionalAuthenticatedData", 8193, XKS_ERR_UNSUPPORTED_OPERATION, 501);
  field_case(D, "ciphertextMetadata", NULL, XKS_ERR_NONE, 200);
  b64_syntax(D, "ciphertextMetadata");
  field_b64_len(D, "ciphertextMetadata", 0, XKS_ERR_NONE, 200);
  field_b64_len(D, "ciphertextMetadata", 20, XKS_ERR_NONE, 200);
  field_b64_len(D, "ciphertextMetadata", 21, XKS_ERR_INVALID_CIPHERTEXT, 400);
}

static void test_request_round_trips(void **state) {
  for (xks_op op = XKS_OP_METADATA; op <= XKS_OP_HEALTH; op++) {
    json_t *b = good_body(op);
    if (op == XKS_OP_ENCRYPT) {
      json_object_set_new(b, "additionalAuthenticatedData", json_string("AAEC"));
      json_object_set_new(b, "ciphertextDataIntegrityValueAlgorithm", json_string("SHA_256"));
      json_object_set_new(meta_of(b), "kmsViaService", json_string("e\"b\\s\u00e9"));
    }
    if (op == XKS_OP_DECRYPT) {
      json_object_set_new(b, "ciphertextMetadata", json_string("a2V5X3ZlcnNpb249MQ=="));
      json_object_set_new(b, "additionalAuthenticatedData", json_string(""));
      json_object_set_new(meta_of(b), "awsSourceVpc", json_string("vpc-1"));
    }
    char *text = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    xks_request r1, r2;
    kbytes out = {0};
    kerr err;
    assert_int_equal(xks_request_parse(op, text, strlen(text), &r1, &err), KERR_OK);
    assert_int_equal(xks_request_serialize(&r1, &out, &err), KERR_OK);
    assert_null(memchr(out.data, '\n', out.len));
    assert_int_equal(strlen((char *)out.data), out.len);
    assert_int_equal(xks_request_parse(op, (char *)out.data, out.len, &r2, &err), KERR_OK);
    /* a second serialization is byte-identical */
    kbytes out2 = {0};
    assert_int_equal(xks_request_serialize(&r2, &out2, &err), KERR_OK);
    assert_int_equal(out.len, out2.len);
    assert_memory_equal(out.data, out2.data, out.len);
    assert_int_equal(r1.plaintext.len, r2.plaintext.len);
    assert_int_equal(r1.has_aad, r2.has_aad);
    assert_int_equal(r1.aad.len, r2.aad.len);
    assert_int_equal(r1.iv_len, r2.iv_len);
    assert_int_equal(r1.has_ct_metadata, r2.has_ct_metadata);
    assert_int_equal(r1.want_cdiv, r2.want_cdiv);
    if (op == XKS_OP_ENCRYPT) assert_string_equal(r2.meta.kms_via_service, "e\"b\\s\u00e9");
    if (op == XKS_OP_DECRYPT) {
      assert_memory_equal(r2.ct_metadata.data, "key_version=1", 13);
      assert_true(r2.has_aad);
      assert_int_equal(r2.aad.len, 0);
    }
    kbytes_wipe_free(&out);
    kbytes_wipe_free(&out2);
    xks_request_free(&r1);
    xks_request_free(&r2);
    free(text);
  }
  /* serializing refuses what the parser would refuse */
  xks_request r = {0};
  kbytes out = {0};
  kerr err;
  r.op = XKS_OP_HEALTH;
  assert_int_equal(xks_request_serialize(&r, &out, &err), KERR_VALIDATION);
  assert_null(out.data);
}

/* No error message repeats a plaintext or AAD value (or its base64). */
static void test_messages_never_quote_secrets(void **state) {
  static const char secret_b64[] = "U2VjcmV0UGxhaW50ZXh0VmFsdWU="; /* SecretPlaintextValue */
  static const char *bad_b64 = "U2VjcmV0UGxhaW50ZXh0VmFsdWU";    /* no padding */
  const char *fields[] = {"plaintext", "additionalAuthenticatedData"};
  for (size_t f = 0; f < 2; f++)
    for (int variant = 0; variant < 4; variant++) {
      json_t *b = good_body(XKS_OP_ENCRYPT);
      json_object_set_new(b, fields[f], json_string(variant == 0 ? bad_b64 : secret_b64));
      if (variant == 1) json_object_set_new(b, "encryptionAlgorithm", json_string("X"));
      if (variant == 2)
        json_object_set_new(b, "ciphertextDataIntegrityValueAlgorithm", json_string("MD5"));
      if (variant == 3) json_object_del(meta_of(b), "kmsKeyArn");
      kerr err;
      assert_int_not_equal(parse_json(XKS_OP_ENCRYPT, b, NULL, &err), KERR_OK);
      assert_null(strstr(err.msg, "SecretPlaintext"));
      assert_null(strstr(err.msg, "U2VjcmV0"));
    }
  /* the decrypt reply parser never quotes the plaintext either */
  xks_decrypt_result d;
  kerr err;
  const char *reply = "{\"plaintext\":\"U2VjcmV0UGxhaW50ZXh0VmFsdWU=\"}";
  assert_int_equal(xks_decrypt_result_parse(reply, strlen(reply), 3, &d, &err),
                   KERR_XKS_PROXY_INVALID_RESPONSE);
  assert_null(strstr(err.msg, "U2VjcmV0"));
  assert_int_equal(xks_decrypt_result_parse(reply, strlen(reply), 20, &d, &err), KERR_OK);
  assert_memory_equal(d.plaintext.data, "SecretPlaintextValue", 20);
  xks_decrypt_result_free(&d);
}

/* ---- replies ----------------------------------------------------------- */

static void test_key_metadata_reply(void **state) {
  char spec[] = "AES_256", enc[] = "ENCRYPT", dec[] = "DECRYPT", st[] = "ENABLED";
  xks_key_metadata m = {.key_spec = spec, .key_usage = {enc, dec}, .key_usage_count = 2,
                        .key_status = st}, p;
  kbytes out = {0};
  kerr err;
  assert_int_equal(xks_key_metadata_serialize(&m, &out, &err), KERR_OK);
  assert_string_equal((char *)out.data,
                      "{\"keySpec\":\"AES_256\",\"keyUsage\":[\"ENCRYPT\",\"DECRYPT\"],"
                      "\"keyStatus\":\"ENABLED\"}");
  assert_int_equal(xks_key_metadata_parse((char *)out.data, out.len, &p, &err), KERR_OK);
  assert_string_equal(p.key_spec, "AES_256");
  assert_int_equal(p.key_usage_count, 2);
  assert_string_equal(p.key_usage[1], "DECRYPT");
  assert_string_equal(p.key_status, "ENABLED");
  xks_key_metadata_free(&p);
  kbytes_wipe_free(&out);
  static const char *bad[] = {
      "{\"keyUsage\":[],\"keyStatus\":\"ENABLED\"}",
      "{\"keySpec\":\"AES_256\",\"keyStatus\":\"ENABLED\"}",
      "{\"keySpec\":\"AES_256\",\"keyUsage\":[1],\"keyStatus\":\"ENABLED\"}",
      "{\"keySpec\":\"AES_256\",\"keyUsage\":[],\"keyStatus\":\"PENDING\"}",
      "{\"keySpec\":\"AES_256\",\"keyUsage\":[\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\","
      "\"a\",\"a\"],\"keyStatus\":\"ENABLED\"}",
      "{\"keySpec\":\"AES_256\",\"keySpec\":\"AES_256\",\"keyUsage\":[],\"keyStatus\":\"ENABLED\"}",
      "not json",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(xks_key_metadata_parse(bad[i], strlen(bad[i]), &p, &err),
                     KERR_XKS_PROXY_INVALID_RESPONSE);
  const char *ten = "{\"keySpec\":\"AES_256\",\"keyUsage\":[\"a\",\"a\",\"a\",\"a\",\"a\",\"a\","
                    "\"a\",\"a\",\"a\",\"a\"],\"keyStatus\":\"DISABLED\",\"extra\":1}";
  assert_int_equal(xks_key_metadata_parse(ten, strlen(ten), &p, &err), KERR_OK);
  assert_int_equal(p.key_usage_count, 10);
  xks_key_metadata_free(&p);
  m.key_status = enc; /* not a key status */
  assert_int_equal(xks_key_metadata_serialize(&m, &out, &err), KERR_INTERNAL);
}

static void test_encrypt_reply(void **state) {
  uint8_t ct[5] = {1, 2, 3, 4, 5}, md[3] = {9, 8, 7};
  xks_encrypt_result r = {0}, p;
  kbytes out = {0};
  kerr err;
  r.ciphertext.data = ct;
  r.ciphertext.len = sizeof ct;
  r.iv_len = 12;
  memset(r.iv, 0x11, 12);
  memset(r.tag, 0x22, 16);
  r.ct_metadata.data = md;
  r.ct_metadata.len = 3;
  r.has_ct_metadata = 1;
  r.has_cdiv = 1;
  memset(r.cdiv, 0x33, 32);
  assert_int_equal(xks_encrypt_result_serialize(&r, &out, &err), KERR_OK);
  assert_null(strchr((char *)out.data, '\n'));
  assert_int_equal(xks_encrypt_result_parse((char *)out.data, out.len, 5, 1, &p, &err), KERR_OK);
  assert_memory_equal(p.ciphertext.data, ct, 5);
  assert_int_equal(p.iv_len, 12);
  assert_memory_equal(p.iv, r.iv, 12);
  assert_memory_equal(p.tag, r.tag, 16);
  assert_true(p.has_ct_metadata);
  assert_memory_equal(p.ct_metadata.data, md, 3);
  assert_true(p.has_cdiv);
  assert_memory_equal(p.cdiv, r.cdiv, 32);
  xks_encrypt_result_free(&p);
  /* length, CDIV-presence rules */
  assert_int_equal(xks_encrypt_result_parse((char *)out.data, out.len, 6, 1, &p, &err),
                   KERR_XKS_PROXY_INVALID_RESPONSE);
  assert_int_equal(xks_encrypt_result_parse((char *)out.data, out.len, 5, 0, &p, &err),
                   KERR_XKS_PROXY_INVALID_RESPONSE);
  kbytes_wipe_free(&out);
  r.has_cdiv = 0;
  r.has_ct_metadata = 0;
  r.iv_len = 16;
  assert_int_equal(xks_encrypt_result_serialize(&r, &out, &err), KERR_OK);
  assert_int_equal(xks_encrypt_result_parse((char *)out.data, out.len, 5, 1, &p, &err),
                   KERR_XKS_PROXY_INVALID_RESPONSE);
  assert_int_equal(xks_encrypt_result_parse((char *)out.data, out.len, 5, 0, &p, &err), KERR_OK);
  assert_int_equal(p.iv_len, 16);
  assert_false(p.has_ct_metadata);
  xks_encrypt_result_free(&p);
  kbytes_wipe_free(&out);
  r.iv_len = 13;
  assert_int_equal(xks_encrypt_result_serialize(&r, &out, &err), KERR_INTERNAL);
  r.iv_len = 12;
  r.ct_metadata.len = 21;
  r.ct_metadata.data = (uint8_t *)"012345678901234567890";
  r.has_ct_metadata = 1;
  assert_int_equal(xks_encrypt_result_serialize(&r, &out, &err), KERR_INTERNAL);
  static const char *bad[] = {
      /* IV 11 bytes */
      "{\"ciphertext\":\"AQIDBAU=\",\"initializationVector\":\"AAAAAAAAAAAAAAA=\","
      "\"authenticationTag\":\"AAAAAAAAAAAAAAAAAAAAAA==\"}",
      /* tag 15 bytes */
      "{\"ciphertext\":\"AQIDBAU=\",\"initializationVector\":\"AAAAAAAAAAAAAAAA\","
      "\"authenticationTag\":\"AAAAAAAAAAAAAAAAAAAA\"}",
      /* metadata 21 bytes */
      "{\"ciphertext\":\"AQIDBAU=\",\"initializationVector\":\"AAAAAAAAAAAAAAAA\","
      "\"authenticationTag\":\"AAAAAAAAAAAAAAAAAAAAAA==\",\"ciphertextMetadata\":"
      "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
      /* url-safe ciphertext */
      "{\"ciphertext\":\"AQIDBA-_\",\"initializationVector\":\"AAAAAAAAAAAAAAAA\","
      "\"authenticationTag\":\"AAAAAAAAAAAAAAAAAAAAAA==\"}",
      /* empty ciphertext (index 5) */
      "{\"ciphertext\":\"\",\"initializationVector\":\"AAAAAAAAAAAAAAAA\","
      "\"authenticationTag\":\"AAAAAAAAAAAAAAAAAAAAAA==\"}",
      /* missing tag */
      "{\"ciphertext\":\"AQIDBAU=\",\"initializationVector\":\"AAAAAAAAAAAAAAAA\"}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(xks_encrypt_result_parse(bad[i], strlen(bad[i]), 5, 0, &p, &err),
                     KERR_XKS_PROXY_INVALID_RESPONSE);
  /* an empty ciphertext is refused even when an empty one was expected */
  assert_int_equal(xks_encrypt_result_parse(bad[5], strlen(bad[5]), 0, 0, &p, &err),
                   KERR_XKS_PROXY_INVALID_RESPONSE);
}

static void test_decrypt_reply(void **state) {
  xks_decrypt_result r = {0}, p;
  kbytes out = {0};
  kerr err;
  r.plaintext.data = secure_alloc(4300);
  r.plaintext.len = 4300;
  memset(r.plaintext.data, 0x5a, 4300);
  assert_int_equal(xks_decrypt_result_serialize(&r, &out, &err), KERR_OK);
  assert_int_equal(xks_decrypt_result_parse((char *)out.data, out.len, 4300, &p, &err), KERR_OK);
  assert_memory_equal(p.plaintext.data, r.plaintext.data, 4300);
  xks_decrypt_result_free(&p);
  assert_int_equal(xks_decrypt_result_parse((char *)out.data, out.len, 4299, &p, &err),
                   KERR_XKS_PROXY_INVALID_RESPONSE);
  assert_null(p.plaintext.data);
  kbytes_wipe_free(&out);
  xks_decrypt_result_free(&r);
  assert_int_equal(xks_decrypt_result_serialize(&r, &out, &err), KERR_INTERNAL);
  const char *empty = "{\"plaintext\":\"\"}";
  assert_int_equal(xks_decrypt_result_parse(empty, strlen(empty), 0, &p, &err),
                   KERR_XKS_PROXY_INVALID_RESPONSE);
  const char *missing = "{\"plain\":\"AA==\"}";
  assert_int_equal(xks_decrypt_result_parse(missing, strlen(missing), 1, &p, &err),
                   KERR_XKS_PROXY_INVALID_RESPONSE);
}

static void test_health_reply(void **state) {
  char v[] = "kmsd", mdl[] = "xks-proxy 0.1.0", ev[] = "SoftHSM", id[] = "hsm-1",
       em[] = "SoftHSM 2.6", act[] = "ACTIVE", deg[] = "DEGRADED";
  xks_health h = {.fleet_size = 2, .proxy_vendor = v, .proxy_model = mdl, .ekm_vendor = ev,
                  .ekm = {{id, em, act}, {id, em, deg}}, .ekm_count = 2}, p;
  kbytes out = {0};
  kerr err;
  assert_int_equal(xks_health_serialize(&h, &out, &err), KERR_OK);
  assert_string_equal((char *)out.data,
                      "{\"xksProxyFleetSize\":2,\"xksProxyVendor\":\"kmsd\",\"xksProxyModel\":"
                      "\"xks-proxy 0.1.0\",\"ekmVendor\":\"SoftHSM\",\"ekmFleetDetails\":["
                      "{\"id\":\"hsm-1\",\"model\":\"SoftHSM 2.6\",\"healthStatus\":\"ACTIVE\"},"
                      "{\"id\":\"hsm-1\",\"model\":\"SoftHSM 2.6\",\"healthStatus\":\"DEGRADED\"}]}");
  assert_int_equal(xks_health_parse((char *)out.data, out.len, &p, &err), KERR_OK);
  assert_int_equal(p.fleet_size, 2);
  assert_int_equal(p.ekm_count, 2);
  assert_string_equal(p.ekm[1].health_status, "DEGRADED");
  assert_string_equal(p.proxy_model, "xks-proxy 0.1.0");
  xks_health_free(&p);
  kbytes_wipe_free(&out);
  h.fleet_size = 0;
  assert_int_equal(xks_health_serialize(&h, &out, &err), KERR_INTERNAL);
  h.fleet_size = 1;
  h.ekm_count = 0;
  assert_int_equal(xks_health_serialize(&h, &out, &err), KERR_INTERNAL);
  h.ekm_count = 11;
  assert_int_equal(xks_health_serialize(&h, &out, &err), KERR_INTERNAL);
  static const char *bad[] = {
      "{\"xksProxyFleetSize\":0,\"xksProxyVendor\":\"a\",\"xksProxyModel\":\"b\",\"ekmVendor\":"
      "\"c\",\"ekmFleetDetails\":[{\"id\":\"i\",\"model\":\"m\",\"healthStatus\":\"ACTIVE\"}]}",
      "{\"xksProxyFleetSize\":1.5,\"xksProxyVendor\":\"a\",\"xksProxyModel\":\"b\",\"ekmVendor\":"
      "\"c\",\"ekmFleetDetails\":[{\"id\":\"i\",\"model\":\"m\",\"healthStatus\":\"ACTIVE\"}]}",
      "{\"xksProxyFleetSize\":1,\"xksProxyVendor\":\"a\",\"xksProxyModel\":\"b\",\"ekmVendor\":"
      "\"c\",\"ekmFleetDetails\":[]}",
      "{\"xksProxyFleetSize\":1,\"xksProxyVendor\":\"a\",\"xksProxyModel\":\"b\",\"ekmVendor\":"
      "\"c\",\"ekmFleetDetails\":[{\"id\":\"i\",\"model\":\"m\",\"healthStatus\":\"OK\"}]}",
      "{\"xksProxyFleetSize\":1,\"xksProxyVendor\":\"a\",\"ekmVendor\":"
      "\"c\",\"ekmFleetDetails\":[{\"id\":\"i\",\"model\":\"m\",\"healthStatus\":\"ACTIVE\"}]}",
      "{\"xksProxyFleetSize\":1,\"xksProxyVendor\":\"a\",\"xksProxyModel\":\"b\",\"ekmVendor\":"
      "\"c\",\"ekmFleetDetails\":[{\"id\":\"i\",\"healthStatus\":\"ACTIVE\"}]}",
      "{\"xksProxyFleetSize\":1,\"xksProxyVendor\":\"a\",\"xksProxyModel\":\"b\",\"ekmVendor\":"
      "\"c\",\"ekmFleetDetails\":[7]}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(xks_health_parse(bad[i], strlen(bad[i]), &p, &err),
                     KERR_XKS_PROXY_INVALID_RESPONSE);
  /* eleven entries */
  char big[2048] = "{\"xksProxyFleetSize\":1,\"xksProxyVendor\":\"a\",\"xksProxyModel\":\"b\","
                   "\"ekmVendor\":\"c\",\"ekmFleetDetails\":[";
  for (int i = 0; i < 11; i++)
    strcat(big, i ? ",{\"id\":\"i\",\"model\":\"m\",\"healthStatus\":\"UNAVAILABLE\"}"
                  : "{\"id\":\"i\",\"model\":\"m\",\"healthStatus\":\"UNAVAILABLE\"}");
  strcat(big, "]}");
  assert_int_equal(xks_health_parse(big, strlen(big), &p, &err), KERR_XKS_PROXY_INVALID_RESPONSE);
}

static void test_error_reply(void **state) {
  kbytes out = {0};
  kerr err;
  xks_error e;
  char msg[XKS_ERROR_MESSAGE_MAX + 1];
  assert_int_equal(xks_error_serialize(XKS_ERR_VALIDATION, "plaintext is missing.", &out, &err),
                   KERR_OK);
  assert_string_equal((char *)out.data, "{\"errorName\":\"ValidationException\","
                                        "\"errorMessage\":\"plaintext is missing.\"}");
  assert_int_equal(xks_error_parse((char *)out.data, out.len, &e, msg, &err), KERR_OK);
  assert_int_equal(e, XKS_ERR_VALIDATION);
  assert_string_equal(msg, "plaintext is missing.");
  kbytes_wipe_free(&out);
  /* no message; a message cut to 511 printable characters */
  assert_int_equal(xks_error_serialize(XKS_ERR_INVALID_URI_PATH, NULL, &out, &err), KERR_OK);
  assert_string_equal((char *)out.data, "{\"errorName\":\"InvalidUriPathException\"}");
  assert_int_equal(xks_error_parse((char *)out.data, out.len, &e, msg, &err), KERR_OK);
  assert_int_equal(e, XKS_ERR_INVALID_URI_PATH);
  assert_string_equal(msg, "");
  kbytes_wipe_free(&out);
  char *longmsg = str_rep('x', 600);
  longmsg[3] = '\n';
  longmsg[4] = '\x7f';
  assert_int_equal(xks_error_serialize(XKS_ERR_INTERNAL, longmsg, &out, &err), KERR_OK);
  assert_int_equal(xks_error_parse((char *)out.data, out.len, &e, msg, &err), KERR_OK);
  assert_int_equal(strlen(msg), 511);
  assert_int_equal(msg[3], '?');
  assert_int_equal(msg[4], '?');
  free(longmsg);
  kbytes_wipe_free(&out);
  assert_int_equal(xks_error_serialize(XKS_ERR_NONE, "x", &out, &err), KERR_INTERNAL);
  static const char *bad[] = {"{\"errorMessage\":\"m\"}", "{\"errorName\":\"NoSuchException\"}",
                              "{\"errorName\":3}", "", "{\"errorName\":\"ValidationException\","
                                                       "\"errorMessage\":5}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(xks_error_parse(bad[i], strlen(bad[i]), &e, msg, &err),
                     KERR_XKS_PROXY_INVALID_RESPONSE);
}

/* ---- AAD and CDIV ------------------------------------------------------ */

static void test_gcm_aad(void **state) {
  kbytes a = {0};
  kerr err;
  /* assembled by hand: 00 03 'a' 'a' 'd' 02 'm' 'd' */
  static const uint8_t want[] = {0x00, 0x03, 'a', 'a', 'd', 0x02, 'm', 'd'};
  assert_int_equal(xks_gcm_aad((const uint8_t *)"aad", 3, (const uint8_t *)"md", 2, &a, &err),
                   KERR_OK);
  assert_int_equal(a.len, sizeof want);
  assert_memory_equal(a.data, want, sizeof want);
  kbytes_wipe_free(&a);
  /* both absent: three zero bytes */
  static const uint8_t none[] = {0, 0, 0};
  assert_int_equal(xks_gcm_aad(NULL, 0, NULL, 0, &a, &err), KERR_OK);
  assert_int_equal(a.len, 3);
  assert_memory_equal(a.data, none, 3);
  kbytes_wipe_free(&a);
  /* 8192 bytes of AAD: big-endian 0x2000; metadata moved into the AAD differs */
  uint8_t *big = calloc(1, 8192);
  assert_int_equal(xks_gcm_aad(big, 8192, NULL, 0, &a, &err), KERR_OK);
  assert_int_equal(a.data[0], 0x20);
  assert_int_equal(a.data[1], 0x00);
  assert_int_equal(a.data[8194], 0);
  assert_int_equal(a.len, 8195);
  kbytes_wipe_free(&a);
  kbytes b = {0};
  assert_int_equal(xks_gcm_aad((const uint8_t *)"aadmd", 5, NULL, 0, &a, &err), KERR_OK);
  assert_int_equal(xks_gcm_aad((const uint8_t *)"aad", 3, (const uint8_t *)"md", 2, &b, &err),
                   KERR_OK);
  assert_true(a.len == b.len && memcmp(a.data, b.data, a.len) != 0);
  kbytes_wipe_free(&a);
  kbytes_wipe_free(&b);
  assert_int_equal(xks_gcm_aad(big, 65536, NULL, 0, &a, &err), KERR_VALIDATION);
  assert_int_equal(xks_gcm_aad(big, 0, big, 256, &a, &err), KERR_VALIDATION);
  assert_null(a.data);
  free(big);
}

static void test_cdiv_spec_vector(void **state) {
  uint8_t iv[16], ct[16], tag[16], got[32], want[32], buf[100];
  size_t ivl, ctl, tagl, n = 0;
  kerr err;
  const char *aad = "project=nile,department=marketing", *md = "key_version=1";
  assert_int_equal(b64_decode("HMrlRw85cAJUd5Ax", 16, iv, &ivl), 0);
  assert_int_equal(b64_decode("ghxkK1txeDNn3q8Y", 16, ct, &ctl), 0);
  assert_int_equal(b64_decode("vBxN2ncH1oEkR8WVXpmyYQ==", 24, tag, &tagl), 0);
  assert_int_equal(ivl + ctl + tagl, 40);
  assert_int_equal(xks_cdiv((const uint8_t *)aad, 33, (const uint8_t *)md, 13, iv, ivl, ct, ctl,
                            tag, tagl, got, &err),
                   KERR_OK);
  /* independently: SHA-256 over the 86 bytes laid end to end */
  memcpy(buf + n, aad, 33), n += 33;
  memcpy(buf + n, md, 13), n += 13;
  memcpy(buf + n, iv, ivl), n += ivl;
  memcpy(buf + n, ct, ctl), n += ctl;
  memcpy(buf + n, tag, tagl), n += tagl;
  assert_int_equal(n, 86);
  SHA256(buf, n, want);
  assert_memory_equal(got, want, 32);
  char hex[65], *text = b64(got, 32);
  hex_encode(got, 32, hex);
  assert_string_equal(hex, "a8703f2260bd8791ec2d15ea0b23e65a0631eedcf2a13a65cc82db3f47cf5ec7");
  assert_string_equal(text, "qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc=");
  free(text);
  /* absent AAD and metadata contribute nothing */
  assert_int_equal(xks_cdiv(NULL, 0, NULL, 0, iv, ivl, ct, ctl, tag, tagl, got, &err), KERR_OK);
  SHA256(buf + 46, 40, want);
  assert_memory_equal(got, want, 32);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_error_table),
      cmocka_unit_test(test_prefix_rules),
      cmocka_unit_test(test_route_operations),
      cmocka_unit_test(test_route_not_api),
      cmocka_unit_test(test_route_methods),
      cmocka_unit_test(test_route_limits),
      cmocka_unit_test(test_request_minimal_bodies),
      cmocka_unit_test(test_request_json_strictness),
      cmocka_unit_test(test_request_metadata_fields),
      cmocka_unit_test(test_request_encrypt_fields),
      cmocka_unit_test(test_request_decrypt_fields),
      cmocka_unit_test(test_request_round_trips),
      cmocka_unit_test(test_messages_never_quote_secrets),
      cmocka_unit_test(test_key_metadata_reply),
      cmocka_unit_test(test_encrypt_reply),
      cmocka_unit_test(test_decrypt_reply),
      cmocka_unit_test(test_health_reply),
      cmocka_unit_test(test_error_reply),
      cmocka_unit_test(test_gcm_aad),
      cmocka_unit_test(test_cdiv_spec_vector),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
