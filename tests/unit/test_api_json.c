/* test_api_json.c - unit tests of api_json: the wire text of reply values
 * (timestamps serialized exactly as the pipeline serializes replies), request
 * bodies parsed exactly as the pipeline parses them, the typed access to
 * request members with the validator's rules for integers and NULs, and
 * the reply writer's bytes against jansson's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api_json.h"
#include "api/api_validate.h"

/* The reply text of {"T": <epoch_ms as a timestamp>}, as the pipeline sends
 * it.  Caller frees. */
static char *time_reply(int64_t epoch_ms) {
  json_t *o = json_object();
  kerr err;
  char *text;

  assert_non_null(o);
  assert_int_equal(api_json_set_time_ms(o, "T", epoch_ms, &err), KERR_OK);
  text = json_dumps(o, API_JSON_ENCODE_FLAGS);
  json_decref(o);
  assert_non_null(text);
  return text;
}

/* What AWS sends for epoch_ms: whole seconds as an integer, otherwise the
 * seconds with the fewest decimals (at most three) that say the exact
 * milliseconds.  Made with integer arithmetic only. */
static void expected_reply(int64_t epoch_ms, char *buf, size_t size) {
  int64_t s = epoch_ms / 1000, ms = epoch_ms % 1000;
  char frac[8];

  if (ms == 0 || epoch_ms >= API_JSON_MAX_FRACTIONAL_MS) {
    snprintf(buf, size, "{\"T\":%lld}", (long long)s);
    return;
  }
  snprintf(frac, sizeof frac, "%03lld", (long long)ms);
  for (size_t n = strlen(frac); n > 0 && frac[n - 1] == '0'; n--) frac[n - 1] = '\0';
  snprintf(buf, size, "{\"T\":%lld.%s}", (long long)s, frac);
}

static void check_time(int64_t epoch_ms) {
  char want[64];
  char *got = time_reply(epoch_ms);
  expected_reply(epoch_ms, want, sizeof want);
  if (strcmp(got, want) != 0) fail_msg("%lld ms: sent %s, want %s", (long long)epoch_ms, got, want);
  free(got);
}

static void test_time_examples(void **state) {
  (void)state;
  char *text = time_reply(1796187467432LL);
  /* The value the outside probe saw as 1796187467.4319999. */
  assert_string_equal(text, "{\"T\":1796187467.432}");
  free(text);
  check_time(1796187467000LL);
  check_time(1796187467001LL);
  check_time(1796187467010LL);
  check_time(1796187467100LL);
  check_time(1796187467999LL);
  check_time(1);
  check_time(999);
  check_time(1000);
  check_time(API_JSON_MAX_FRACTIONAL_MS - 1);
  check_time(API_JSON_MAX_FRACTIONAL_MS);
  check_time(API_JSON_MAX_FRACTIONAL_MS + 123);
  check_time(INT64_MAX);
}

/* Every millisecond of a few stretches of 200 s (today's epoch, the 2038
 * boundary, and far future), and a spread over the whole range below the
 * limit.  Under valgrind (scripts/valgrind.sh sets KMSD_TEST_UNDER_VALGRIND),
 * which looks for memory errors rather than wrong digits, 2 s of each. */
static void test_time_exhaustive(void **state) {
  (void)state;
  static const int64_t starts[] = {1796180000000LL, 2147483000000LL, 99999999000000LL};
  const int64_t span = getenv("KMSD_TEST_UNDER_VALGRIND") ? 2000 : 200000;
  for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++)
    for (int64_t ms = starts[i]; ms < starts[i] + span; ms++) check_time(ms);
  for (int64_t ms = 7; ms < API_JSON_MAX_FRACTIONAL_MS; ms = ms * 3 + 1) check_time(ms);
}

static void test_time_absent(void **state) {
  (void)state;
  json_t *o = json_object();
  kerr err;
  assert_int_equal(api_json_set_time_ms(o, "T", 0, &err), KERR_OK);
  assert_int_equal(api_json_set_time_ms(o, "U", -5, &err), KERR_OK);
  assert_int_equal(json_object_size(o), 0);
  json_decref(o);
}

/* A request body parsed as the pipeline parses it.  Caller decrefs. */
static json_t *request(const char *text) {
  json_error_t jerr;
  json_t *v = json_loadb(text, strlen(text), API_JSON_DECODE_FLAGS, &jerr);
  if (!v) fail_msg("%s does not parse: %s", text, jerr.text);
  return v;
}

static kerr_code validate(const char *op, const char *text, kerr *err) {
  json_t *body = request(text);
  kerr_code rc;
  kerr_clear(err);
  rc = api_validate_input(model_find_op(&model_kms, op), body, err);
  json_decref(body);
  return rc;
}

static void test_nul_is_json_then_validation(void **state) {
  (void)state;
  kerr err;
  const char *s = NULL;
  json_t *in = request("{\"Description\": \"a\\u0000b\", \"KeyId\": \"k\"}");

  assert_int_equal(json_string_length(json_object_get(in, "Description")), 3);
  assert_int_equal(api_json_get_str(in, "Description", false, &s, &err), KERR_VALIDATION);
  assert_null(s);
  assert_non_null(strstr(err.msg, "'description'"));
  assert_non_null(strstr(err.msg, "NUL character (U+0000)"));
  assert_int_equal(api_json_get_str(in, "KeyId", true, &s, &err), KERR_OK);
  assert_string_equal(s, "k");
  json_decref(in);

  assert_int_equal(validate("CreateKey", "{\"Description\": \"a\\u0000b\"}", &err),
                   KERR_VALIDATION);
  assert_string_equal(err.msg,
                      "1 validation error detected: Value 'a\\u0000b' at 'description' failed "
                      "to satisfy constraint: Member must not contain the NUL character (U+0000)");
  /* A pattern that excludes NUL reports itself, not the NUL rule as well. */
  assert_int_equal(validate("CreateAlias",
                            "{\"AliasName\": \"alias/\\u0000\", \"TargetKeyId\": \"k\"}", &err),
                   KERR_VALIDATION);
  assert_non_null(strstr(err.msg, "1 validation error detected"));
  assert_non_null(strstr(err.msg, "Member must satisfy regular expression pattern"));
  /* Map values of an encryption context. */
  assert_int_equal(validate("Encrypt",
                            "{\"KeyId\": \"k\", \"Plaintext\": \"eA==\", "
                            "\"EncryptionContext\": {\"a\": \"b\\u0000\"}}",
                            &err),
                   KERR_VALIDATION);
  assert_non_null(strstr(err.msg, "NUL character (U+0000)"));
  /* A member name with a NUL is still refused by the parser. */
  json_error_t jerr;
  assert_null(json_loads("{\"a\\u0000\": 1}", API_JSON_DECODE_FLAGS, &jerr));
}

static void test_integers_with_zero_fraction(void **state) {
  (void)state;
  kerr err;
  bool present = false;
  int64_t n = -1;
  json_t *in = request("{\"A\": 7.0, \"B\": 2.5, \"C\": 12, \"D\": 1e3, \"E\": \"7\"}");

  assert_int_equal(api_json_get_int(in, "A", &present, &n, &err), KERR_OK);
  assert_true(present);
  assert_int_equal(n, 7);
  assert_int_equal(api_json_get_int(in, "C", &present, &n, &err), KERR_OK);
  assert_int_equal(n, 12);
  assert_int_equal(api_json_get_int(in, "D", &present, &n, &err), KERR_OK);
  assert_int_equal(n, 1000);
  assert_int_equal(api_json_get_int(in, "B", &present, &n, &err), KERR_VALIDATION);
  assert_false(present);
  assert_int_equal(api_json_get_int(in, "E", &present, &n, &err), KERR_VALIDATION);
  json_decref(in);

  int64_t v = 0;
  json_t *real = json_real(-9223372036854775808.0);
  assert_int_equal(api_validate_integral(real, &v), API_INTEGRAL_OK);
  assert_true(v == INT64_MIN);
  json_real_set(real, 9223372036854775808.0);
  assert_int_equal(api_validate_integral(real, &v), API_INTEGRAL_RANGE);
  json_real_set(real, -0.5);
  assert_int_equal(api_validate_integral(real, &v), API_INTEGRAL_FRACTION);
  json_decref(real);

  assert_int_equal(validate("ListKeys", "{\"Limit\": 1.0}", &err), KERR_OK);
  assert_int_equal(validate("ListKeys", "{\"Limit\": 1.5}", &err), KERR_SERIALIZATION);
  assert_string_equal(err.msg, "Numeric value (1.5) at 'limit' has a fractional part where an "
                               "integer is expected");
  assert_int_equal(validate("ListKeys", "{\"Limit\": 3e9}", &err), KERR_SERIALIZATION);
  assert_string_equal(err.msg, "Numeric value (3000000000) out of range of int");
  assert_int_equal(validate("ListKeys", "{\"Limit\": 0.0}", &err), KERR_VALIDATION);
  assert_non_null(strstr(err.msg, "Member must have value greater than or equal to 1"));
}

/* api_json_dump gives json_dumps' bytes for every reply: flat objects of
 * plain strings (its own path), and everything else - escapes, non-ASCII,
 * non-strings, nesting, an empty object, a non-object - through jansson.
 * Random flat objects of strings drawn from an alphabet with escapes in it
 * check the boundary between the two. */
static void expect_same(const json_t *v) {
  size_t len = 0;
  char *mine = api_json_dump(v, &len);
  char *theirs = json_dumps(v, API_JSON_ENCODE_FLAGS);
  assert_non_null(mine);
  assert_non_null(theirs);
  assert_string_equal(mine, theirs);
  assert_int_equal(len, strlen(theirs));
  free(mine);
  free(theirs);
}

static void test_dump_matches_jansson(void **state) {
  static const char alphabet[] = "AZaz09+/=:-_ \"\\\n\x01\x7f\xc3\xa9";
  json_t *v;
  unsigned seed = 7;
  (void)state;

  v = json_pack("{s:s, s:s, s:s}", "CiphertextBlob", "AQICAHh+/=", "KeyId",
                "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "EncryptionAlgorithm", "SYMMETRIC_DEFAULT");
  expect_same(v);
  json_decref(v);
  v = json_object();
  expect_same(v); /* {} */
  json_decref(v);
  v = json_pack("{s:s, s:i, s:b, s:n}", "a", "x", "n", 3, "t", 1, "z");
  expect_same(v); /* not all strings */
  json_decref(v);
  v = json_pack("{s:{s:s}, s:[s]}", "o", "k", "v", "l", "e");
  expect_same(v); /* nested */
  json_decref(v);
  v = json_pack("[s, s]", "a", "b");
  expect_same(v); /* not an object */
  json_decref(v);
  v = json_pack("{s:s%}", "nul", "a\0b", (size_t)3);
  expect_same(v); /* a NUL inside a string */
  json_decref(v);

  for (int round = 0; round < 2000; round++) {
    int members = rand_r(&seed) % 4;
    v = json_object();
    assert_non_null(v);
    for (int m = 0; m < members; m++) {
      char key[8], value[24];
      int klen = 1 + rand_r(&seed) % 6, vlen = rand_r(&seed) % 23;
      for (int i = 0; i < klen; i++) key[i] = (char)('a' + rand_r(&seed) % 26);
      key[klen] = '\0';
      for (int i = 0; i < vlen; i++)
        value[i] = alphabet[rand_r(&seed) % (sizeof alphabet - 1)];
      value[vlen] = '\0';
      /* a value that is not UTF-8 (a lone byte of \xc3\xa9) is refused by
       * jansson and then simply not set */
      json_object_set_new(v, key, json_string(value));
    }
    expect_same(v);
    json_decref(v);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_time_examples),
      cmocka_unit_test(test_time_exhaustive),
      cmocka_unit_test(test_time_absent),
      cmocka_unit_test(test_nul_is_json_then_validation),
      cmocka_unit_test(test_integers_with_zero_fraction),
      cmocka_unit_test(test_dump_matches_jansson),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
