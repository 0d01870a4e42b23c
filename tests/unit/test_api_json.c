/* test_api_json.c - unit tests of api_json: the wire text of reply values
 * (timestamps serialized exactly as the pipeline serializes replies) and the
 * typed access to request members. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api_json.h"

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

/* Every millisecond of a few whole days (today's epoch, the 2038 boundary,
 * and far future), and a spread over the whole range below the limit. */
static void test_time_exhaustive(void **state) {
  (void)state;
  static const int64_t starts[] = {1796180000000LL, 2147483000000LL, 99999999000000LL};
  for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++)
    for (int64_t ms = starts[i]; ms < starts[i] + 200000; ms++) check_time(ms);
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_time_examples),
      cmocka_unit_test(test_time_exhaustive),
      cmocka_unit_test(test_time_absent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
