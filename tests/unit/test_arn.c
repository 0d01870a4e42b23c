/* test_arn.c - ARN parsing, formatting and the KMS key/alias builders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "aws/arn.h"

static void test_parse_kms_key(void **state) {
  arn_parts a;
  kerr err;
  int is_alias = -1;
  (void)state;
  assert_int_equal(arn_parse("arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", &a, &err),
                   KERR_OK);
  assert_string_equal(a.partition, "aws");
  assert_string_equal(a.service, "kms");
  assert_string_equal(a.region, "us-east-1");
  assert_string_equal(a.account, "111122223333");
  assert_string_equal(a.resource, "key/1234abcd-12ab-34cd-56ef-1234567890ab");
  assert_string_equal(arn_resource_id(&a), "1234abcd-12ab-34cd-56ef-1234567890ab");
  assert_int_equal(arn_parse_kms("arn:aws:kms:us-east-1:111122223333:key/abc", &a, &is_alias, &err), KERR_OK);
  assert_int_equal(is_alias, 0);
  assert_int_equal(arn_parse_kms("arn:aws:kms:eu-west-1:111122223333:alias/aws/ebs", &a, &is_alias, &err), KERR_OK);
  assert_int_equal(is_alias, 1);
  assert_string_equal(arn_resource_id(&a), "aws/ebs");
}

static void test_parse_iam_and_colons(void **state) {
  arn_parts a;
  kerr err;
  (void)state;
  assert_int_equal(arn_parse("arn:aws:iam::111122223333:root", &a, &err), KERR_OK);
  assert_string_equal(a.region, "");
  assert_string_equal(a.resource, "root");
  assert_int_equal(arn_parse("arn:aws:iam::111122223333:user/division/bob", &a, &err), KERR_OK);
  assert_string_equal(a.resource, "user/division/bob");
  /* The resource keeps any further colons. */
  assert_int_equal(arn_parse("arn:aws-cn:logs:cn-north-1:111122223333:log-group:x:*", &a, &err), KERR_OK);
  assert_string_equal(a.partition, "aws-cn");
  assert_string_equal(a.resource, "log-group:x:*");
  assert_int_equal(arn_parse("arn:aws:s3:::bucket", &a, &err), KERR_OK);
  assert_string_equal(a.account, "");
}

static void test_parse_rejects(void **state) {
  static const char *bad[] = {
      "",
      "arn",
      "arn:",
      "nra:aws:kms:us-east-1:111122223333:key/x",
      "arn:aws:kms:us-east-1:111122223333",
      "arn:aws:kms:us-east-1:111122223333:",
      "arn::kms:us-east-1:111122223333:key/x",
      "arn:aws::us-east-1:111122223333:key/x",
      "arn:AWS:kms:us-east-1:111122223333:key/x",
      "arn:aws:kms:us_east_1:111122223333:key/x",
      "arn:aws:kms:us-east-1:11112222333:key/x",
      "arn:aws:kms:us-east-1:1111222233334:key/x",
      "arn:aws:kms:us-east-1:11112222333a:key/x",
      "arn:aws:kms:us-east-1:111122223333:key/has space",
      "arn:aws:kms:us-east-1:111122223333:key/\x01",
  };
  arn_parts a;
  kerr err;
  size_t i;
  char longarn[ARN_MAX + 64];
  (void)state;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    kerr_clear(&err);
    if (arn_parse(bad[i], &a, &err) != KERR_INVALID_ARN) fail_msg("accepted '%s'", bad[i]);
    assert_int_equal(err.code, KERR_INVALID_ARN);
    assert_true(strlen(err.msg) > 0);
  }
  assert_int_equal(arn_parse(NULL, &a, &err), KERR_INVALID_ARN);
  strcpy(longarn, "arn:aws:kms:us-east-1:111122223333:key/");
  memset(longarn + strlen(longarn), 'k', sizeof longarn - strlen(longarn) - 1);
  longarn[sizeof longarn - 1] = '\0';
  assert_int_equal(arn_parse(longarn, &a, &err), KERR_INVALID_ARN);
  assert_non_null(strstr(err.msg, "longer than"));
  /* KMS-specific shape checks. */
  assert_int_equal(arn_parse_kms("arn:aws:iam::111122223333:root", &a, NULL, &err), KERR_INVALID_ARN);
  assert_int_equal(arn_parse_kms("arn:aws:kms:us-east-1:111122223333:key/", &a, NULL, &err), KERR_INVALID_ARN);
  assert_int_equal(arn_parse_kms("arn:aws:kms:us-east-1:111122223333:grant/x", &a, NULL, &err), KERR_INVALID_ARN);
  assert_int_equal(arn_parse_kms("arn:aws:kms::111122223333:key/x", &a, NULL, &err), KERR_INVALID_ARN);
}

static void test_builders_and_round_trip(void **state) {
  char out[ARN_MAX + 1], small[20];
  arn_parts a;
  kerr err;
  (void)state;
  assert_int_equal(arn_kms_key("us-west-2", "444455556666", "0987dcba-09fe-87dc-65ba-ab0987654321", out, sizeof out,
                               &err),
                   KERR_OK);
  assert_string_equal(out, "arn:aws:kms:us-west-2:444455556666:key/0987dcba-09fe-87dc-65ba-ab0987654321");
  assert_int_equal(arn_parse_kms(out, &a, NULL, &err), KERR_OK);
  assert_int_equal(arn_format(&a, small, sizeof small, &err), KERR_INVALID_ARN);
  assert_string_equal(small, "");
  assert_int_equal(arn_format(&a, out, sizeof out, &err), KERR_OK);
  assert_string_equal(out, "arn:aws:kms:us-west-2:444455556666:key/0987dcba-09fe-87dc-65ba-ab0987654321");

  assert_int_equal(arn_kms_alias("us-west-2", "444455556666", "alias/ExampleAlias", out, sizeof out, &err), KERR_OK);
  assert_string_equal(out, "arn:aws:kms:us-west-2:444455556666:alias/ExampleAlias");
  assert_int_equal(arn_kms_alias("us-west-2", "444455556666", "ExampleAlias", out, sizeof out, &err), KERR_OK);
  assert_string_equal(out, "arn:aws:kms:us-west-2:444455556666:alias/ExampleAlias");

  assert_int_equal(arn_kms_key("", "444455556666", "k", out, sizeof out, &err), KERR_INVALID_ARN);
  assert_string_equal(out, "");
  assert_int_equal(arn_kms_key("us-west-2", "4444", "k", out, sizeof out, &err), KERR_INVALID_ARN);
  assert_int_equal(arn_kms_key("us-west-2", "444455556666", "", out, sizeof out, &err), KERR_INVALID_ARN);
  assert_int_equal(arn_kms_key("US-WEST-2", "444455556666", "k", out, sizeof out, &err), KERR_INVALID_ARN);
  assert_int_equal(arn_kms_alias("us-west-2", "444455556666", "alias/", out, sizeof out, &err), KERR_INVALID_ARN);
  assert_int_equal(arn_kms_key("us-west-2", "444455556666", "k", small, sizeof small, &err), KERR_INVALID_ARN);
}

static void test_account_id(void **state) {
  (void)state;
  assert_true(arn_is_account_id("111122223333"));
  assert_false(arn_is_account_id("11112222333"));
  assert_false(arn_is_account_id("1111222233334"));
  assert_false(arn_is_account_id("11112222333x"));
  assert_false(arn_is_account_id(NULL));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_kms_key),
      cmocka_unit_test(test_parse_iam_and_colons),
      cmocka_unit_test(test_parse_rejects),
      cmocka_unit_test(test_builders_and_round_trip),
      cmocka_unit_test(test_account_id),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
