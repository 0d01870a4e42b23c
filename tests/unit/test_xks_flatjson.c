/* test_xks_flatjson.c - unit tests for lib/xks/xks_flatjson.c: the flat
 * bodies XKS sends are read into the tree jansson builds for them, and
 * every body outside that shape (or one jansson refuses) is left to
 * jansson (NULL), never refused or read differently. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "xks/xks_flatjson.h"

/* The reader reads `body`, and jansson builds an equal tree for it. */
static void same_as_jansson(const char *body) {
  json_error_t e;
  json_t *fast = xks_flatjson_load(body, strlen(body));
  json_t *ref = json_loadb(body, strlen(body), JSON_REJECT_DUPLICATES, &e);
  if (!fast) fail_msg("not read: %s", body);
  assert_non_null(ref);
  assert_true(json_equal(fast, ref));
  json_decref(fast);
  json_decref(ref);
}

static void left_to_jansson(const char *body, size_t len) {
  assert_null(xks_flatjson_load(body, len));
}

static void test_flat_bodies(void **state) {
  (void)state;
  same_as_jansson(
      "{\"requestMetadata\":{\"awsPrincipalArn\":\"arn:aws:iam::123456789012:user/Alice\","
      "\"kmsKeyArn\":\"arn:aws:kms:us-east-1:123456789012:key/k\",\"kmsOperation\":\"Encrypt\","
      "\"kmsRequestId\":\"4112f4d6-db54-4af4-ae30-c55a22a8dfae\"},\"plaintext\":\"SGVsbG8=\","
      "\"encryptionAlgorithm\":\"AES_GCM\",\"ciphertextDataIntegrityValueAlgorithm\":\"SHA_256\"}");
  same_as_jansson("{}");
  same_as_jansson(" \t\r\n{ \"a\" : \"\" , \"\" : { } ,\"b\":{\"c\":\"d\",\"e\":\"f\"}}\n ");
  same_as_jansson("{\"sp ace~!#$%&'()*+,-./:;<=>?@[]^_`{|}\":\"~\"}");
}

static void test_other_shapes_left_to_jansson(void **state) {
  static const char *const bodies[] = {
      "",
      "   ",
      "[]",
      "\"s\"",
      "{\"a\":1}",
      "{\"a\":true}",
      "{\"a\":null}",
      "{\"a\":[\"b\"]}",
      "{\"a\":{\"b\":{\"c\":\"d\"}}}", /* deeper than requestMetadata */
      "{\"a\":\"\\/\"}",               /* any escape */
      "{\"a\\u0062\":\"c\"}",
      "{\"a\":\"caf\xc3\xa9\"}",       /* non-ASCII: jansson checks UTF-8 */
      "{\"a\":\"\x7f\"}",
      "{\"a\":\"tab\there\"}",         /* a raw control character */
      "{\"a\":\"b\",\"a\":\"c\"}",     /* duplicate key: jansson refuses */
      "{\"m\":{\"a\":\"b\",\"a\":\"b\"}}",
      "{\"a\":\"b\",}",
      "{\"a\":\"b\"",
      "{\"a\" \"b\"}",
      "{\"a\":\"b\"} x",
      "{\"a\":\"b\"}{}",
      "\xef\xbb\xbf{}",                /* a byte-order mark */
      "{\"a\":\"b\"\f}",               /* not JSON whitespace */
      "{a:\"b\"}",
  };
  (void)state;
  for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
    left_to_jansson(bodies[i], strlen(bodies[i]));
  /* Length-bounded: a NUL inside or after the object is not whitespace. */
  left_to_jansson("{\"a\":\"b\"}\0", 10);
  left_to_jansson("{\"a\":\"b\0c\"}", 11);
  /* Cut anywhere, the body is incomplete. */
  static const char whole[] = "{\"a\":{\"b\":\"c\"},\"d\":\"e\"}";
  for (size_t n = 0; n < sizeof whole - 1; n++) left_to_jansson(whole, n);
  assert_null(xks_flatjson_load(NULL, 0));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_flat_bodies),
      cmocka_unit_test(test_other_shapes_left_to_jansson),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
