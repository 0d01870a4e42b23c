/* test_cli_reply.c - unit tests for lib/cli/reply: epoch seconds printed as
 * the AWS CLI prints them (the expected texts are Python's
 * datetime.fromtimestamp(v, tzlocal()).isoformat() in the same zones), and a
 * reply rebuilt along its model shape: the model's members in its order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cli/reply.h"

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

static void expect_shaped(const char *op_name, const char *reply, cli_ts_format f, const char *want) {
  const model_op *op = model_find_op(&model_kms, op_name);
  assert_non_null(op);
  json_t *in = json_loads(reply, 0, NULL), *out = NULL;
  assert_non_null(in);
  kerr err;
  assert_int_equal(cli_reply_shape(in, op->output, f, &out, &err), KERR_OK);
  char *got = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
  assert_string_equal(got, want);
  free(got);
  json_decref(out);
  json_decref(in);
}

/* DescribeKey: KeyMetadata's timestamps become text, the members come in
 * the model's order, unknown members and nulls go. */
static void test_shape_structure(void **state) {
  (void)state;
  in_zone("UTC");
  expect_shaped("DescribeKey",
                "{\"KeyMetadata\":{\"Unknown\":12,\"ValidTo\":1764761234,\"CreationDate\":1764761234.5,"
                "\"Description\":null,\"KeyId\":\"k\",\"AWSAccountId\":\"1\"},\"Extra\":1}",
                CLI_TS_ISO8601,
                "{\"KeyMetadata\":{\"AWSAccountId\":\"1\",\"KeyId\":\"k\","
                "\"CreationDate\":\"2025-12-03T11:27:14.500000+00:00\",\"ValidTo\":\"2025-12-03T11:27:14+00:00\"}}");
}

/* Lists of structures keep their items in order; wire timestamps stay numbers;
 * a value of the wrong type is shown as it came. */
static void test_shape_lists_and_wire(void **state) {
  (void)state;
  in_zone("UTC");
  expect_shaped("ListKeyRotations",
                "{\"Truncated\":false,\"Rotations\":[{\"RotationDate\":0,\"KeyId\":\"k\"},"
                "{\"RotationDate\":\"x\"}]}",
                CLI_TS_ISO8601,
                "{\"Rotations\":[{\"KeyId\":\"k\",\"RotationDate\":\"1970-01-01T00:00:00+00:00\"},"
                "{\"RotationDate\":\"x\"}],\"Truncated\":false}");
  expect_shaped("ListKeyRotations", "{\"Truncated\":true,\"Rotations\":[{\"RotationDate\":1.5}]}", CLI_TS_WIRE,
                "{\"Rotations\":[{\"RotationDate\":1.5}],\"Truncated\":true}");
  expect_shaped("ListKeys", "{\"Keys\":{\"not\":\"a list\"}}", CLI_TS_ISO8601, "{\"Keys\":{\"not\":\"a list\"}}");
}

/* Maps keep the service's order; an operation without output shows {}. */
static void test_shape_maps_and_no_output(void **state) {
  (void)state;
  expect_shaped("GenerateDataKey", "{\"KeyId\":\"k\",\"Plaintext\":\"AA==\",\"CiphertextBlob\":\"AQ==\"}",
                CLI_TS_ISO8601, "{\"CiphertextBlob\":\"AQ==\",\"Plaintext\":\"AA==\",\"KeyId\":\"k\"}");
  const model_op *op = model_find_op(&model_kms, "ConnectCustomKeyStore");
  json_t *in = json_loads("{\"Anything\":1}", 0, NULL), *out = NULL;
  kerr err;
  assert_int_equal(cli_reply_shape(in, op->output != NULL && op->output->member_count > 0 ? op->output : NULL,
                                   CLI_TS_ISO8601, &out, &err),
                   KERR_OK);
  assert_int_equal(json_object_size(out), 0);
  json_decref(out);
  json_decref(in);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_iso8601_utc),          cmocka_unit_test(test_iso8601_zones),
      cmocka_unit_test(test_unrepresentable),      cmocka_unit_test(test_format_names),
      cmocka_unit_test(test_shape_structure),      cmocka_unit_test(test_shape_lists_and_wire),
      cmocka_unit_test(test_shape_maps_and_no_output),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
