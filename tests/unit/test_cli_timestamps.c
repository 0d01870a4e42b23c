/* test_cli_timestamps.c - unit tests for lib/cli/timestamps: epoch seconds
 * printed as the AWS CLI prints them (the expected texts are Python's
 * datetime.fromtimestamp(v, tzlocal()).isoformat() in the same zones), and a
 * reply rewritten along its model shape. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cli/timestamps.h"

static void in_zone(const char *tz) {
  setenv("TZ", tz, 1);
  tzset();
}

static void expect_iso(double v, const char *want) {
  char buf[48];
  const char *got = cli_ts_iso8601(v, buf, sizeof buf);
  assert_non_null(got);
  assert_string_equal(got, want);
}

static void test_iso8601_utc(void **state) {
  (void)state;
  in_zone("UTC");
  expect_iso(1764761234, "2025-12-03T11:27:14+00:00");
  expect_iso(1764761234.5, "2025-12-03T11:27:14.500000+00:00");
  expect_iso(1764761234.123, "2025-12-03T11:27:14.123000+00:00");
  expect_iso(1764761234.1234567, "2025-12-03T11:27:14.123457+00:00");
  expect_iso(0.0000005, "1970-01-01T00:00:00+00:00"); /* half to even: 0 */
  expect_iso(1.0000015, "1970-01-01T00:00:01.000001+00:00");
  expect_iso(-1.5, "1969-12-31T23:59:58.500000+00:00");
  expect_iso(0.9999999, "1970-01-01T00:00:01+00:00"); /* rounds into the next second */
}

static void test_iso8601_zones(void **state) {
  (void)state;
  in_zone("America/Los_Angeles");
  expect_iso(1764761234.25, "2025-12-03T03:27:14.250000-08:00");
  in_zone("Asia/Kolkata");
  expect_iso(1764761234.25, "2025-12-03T16:57:14.250000+05:30");
  in_zone("UTC");
}

static void test_unrepresentable(void **state) {
  (void)state;
  char buf[48];
  assert_null(cli_ts_iso8601(1e300, buf, sizeof buf));
  assert_null(cli_ts_iso8601(-1e300, buf, sizeof buf));
  assert_null(cli_ts_iso8601(1764761234, buf, 10)); /* no room */
}

static void test_format_names(void **state) {
  (void)state;
  cli_ts_format f;
  kerr err;
  assert_int_equal(cli_ts_format_parse("iso8601", &f, &err), KERR_OK);
  assert_int_equal(f, CLI_TS_ISO8601);
  assert_int_equal(cli_ts_format_parse("wire", &f, &err), KERR_OK);
  assert_int_equal(f, CLI_TS_WIRE);
  assert_int_equal(cli_ts_format_parse("none", &f, &err), KERR_OK);
  assert_int_equal(f, CLI_TS_WIRE);
  assert_int_equal(cli_ts_format_parse("epoch", &f, &err), KERR_VALIDATION);
}

/* DescribeKey: KeyMetadata.CreationDate and ValidTo are timestamps, the rest
 * is left alone, including a number where the model has no timestamp. */
static void test_rewrite_along_shape(void **state) {
  (void)state;
  in_zone("UTC");
  const model_op *op = model_find_op(&model_kms, "DescribeKey");
  assert_non_null(op);
  json_t *reply = json_loads("{\"KeyMetadata\":{\"KeyId\":\"k\",\"CreationDate\":1764761234.5,"
                             "\"ValidTo\":1764761234,\"PendingDeletionWindowInDays\":7,\"Unknown\":12}}",
                             0, NULL);
  kerr err;
  assert_int_equal(cli_ts_rewrite(reply, op->output, CLI_TS_ISO8601, &err), KERR_OK);
  json_t *md = json_object_get(reply, "KeyMetadata");
  assert_string_equal(json_string_value(json_object_get(md, "CreationDate")), "2025-12-03T11:27:14.500000+00:00");
  assert_string_equal(json_string_value(json_object_get(md, "ValidTo")), "2025-12-03T11:27:14+00:00");
  assert_int_equal(json_integer_value(json_object_get(md, "PendingDeletionWindowInDays")), 7);
  assert_int_equal(json_integer_value(json_object_get(md, "Unknown")), 12);
  json_decref(reply);
}

/* A list of structures (ListKeyRotations.Rotations[].RotationDate), and the
 * wire format leaving everything as sent. */
static void test_rewrite_lists_and_wire(void **state) {
  (void)state;
  in_zone("UTC");
  const model_op *op = model_find_op(&model_kms, "ListKeyRotations");
  assert_non_null(op);
  const char *text = "{\"Rotations\":[{\"KeyId\":\"k\",\"RotationDate\":0},{\"RotationDate\":\"x\"}],\"Truncated\":false}";
  json_t *reply = json_loads(text, 0, NULL), *orig = json_deep_copy(reply);
  kerr err;
  assert_int_equal(cli_ts_rewrite(reply, op->output, CLI_TS_WIRE, &err), KERR_OK);
  assert_true(json_equal(reply, orig));
  assert_int_equal(cli_ts_rewrite(reply, op->output, CLI_TS_ISO8601, &err), KERR_OK);
  json_t *rot = json_object_get(reply, "Rotations");
  assert_string_equal(json_string_value(json_object_get(json_array_get(rot, 0), "RotationDate")),
                      "1970-01-01T00:00:00+00:00");
  assert_string_equal(json_string_value(json_object_get(json_array_get(rot, 1), "RotationDate")), "x");
  assert_int_equal(cli_ts_rewrite(reply, NULL, CLI_TS_ISO8601, &err), KERR_OK);
  json_decref(orig);
  json_decref(reply);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_iso8601_utc),          cmocka_unit_test(test_iso8601_zones),
      cmocka_unit_test(test_unrepresentable),      cmocka_unit_test(test_format_names),
      cmocka_unit_test(test_rewrite_along_shape),  cmocka_unit_test(test_rewrite_lists_and_wire),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
