/* test_policy.c - the IAM policy subset: parsing, malformed documents,
 * wildcards, principals, conditions and their fail-closed treatment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/policy.h"

#define KEY_ARN "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
#define ROOT_A "arn:aws:iam::111122223333:root"
#define BOB_A "arn:aws:iam::111122223333:user/bob"
#define ALICE_A "arn:aws:iam::111122223333:user/alice"
#define CAROL_B "arn:aws:iam::444455556666:user/carol"

static iam_policy *parse_ok(const char *json, iam_policy_kind kind) {
  iam_policy *p = NULL;
  kerr err;
  if (iam_policy_parse(json, strlen(json), kind, &p, &err) != KERR_OK) fail_msg("parse failed: %s", err.msg);
  assert_non_null(p);
  return p;
}

static void expect_malformed(const char *json, iam_policy_kind kind, const char *msg_part) {
  iam_policy *p = (iam_policy *)0x1;
  kerr err;
  kerr_clear(&err);
  if (iam_policy_parse(json, strlen(json), kind, &p, &err) != KERR_MALFORMED_POLICY)
    fail_msg("accepted: %s", json);
  assert_null(p);
  assert_int_equal(err.code, KERR_MALFORMED_POLICY);
  if (msg_part && !strstr(err.msg, msg_part)) fail_msg("message '%s' lacks '%s'", err.msg, msg_part);
}

static iam_decision id_eval(const iam_policy *p, const char *action, const char *resource) {
  return iam_policy_evaluate(p, BOB_A, "111122223333", action, resource);
}

static void test_identity_actions_and_wildcards(void **state) {
  iam_policy *p = parse_ok("{\"Version\":\"2012-10-17\",\"Statement\":{\"Effect\":\"Allow\","
                           "\"Action\":[\"kms:Encrypt\",\"kms:*CustomKeyStore*\",\"kms:Describe?ey\"],"
                           "\"Resource\":\"*\"}}",
                           IAM_POLICY_IDENTITY);
  (void)state;
  assert_int_equal(id_eval(p, "kms:Encrypt", KEY_ARN), IAM_ALLOW);
  assert_int_equal(id_eval(p, "KMS:ENCRYPT", KEY_ARN), IAM_ALLOW); /* actions are case-insensitive */
  assert_int_equal(id_eval(p, "kms:ConnectCustomKeyStore", "*"), IAM_ALLOW);
  assert_int_equal(id_eval(p, "kms:CreateCustomKeyStore", "*"), IAM_ALLOW);
  assert_int_equal(id_eval(p, "kms:DescribeCustomKeyStores", "*"), IAM_ALLOW);
  assert_int_equal(id_eval(p, "kms:DescribeKey", KEY_ARN), IAM_ALLOW);
  assert_int_equal(id_eval(p, "kms:DescribeKeys", KEY_ARN), IAM_NO_MATCH);
  assert_int_equal(id_eval(p, "kms:Decrypt", KEY_ARN), IAM_NO_MATCH);
  assert_int_equal(id_eval(p, "kms:EncryptX", KEY_ARN), IAM_NO_MATCH);
  iam_policy_free(p);
}

static void test_resources_case_sensitive_and_not(void **state) {
  iam_policy *p = parse_ok("{\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"kms:*\","
                           "\"Resource\":\"arn:aws:kms:us-east-1:111122223333:key/1234*\"},"
                           "{\"Effect\":\"Deny\",\"NotAction\":[\"kms:Encrypt\",\"kms:Decrypt\"],"
                           "\"NotResource\":\"arn:aws:kms:*:111122223333:key/9*\"}]}",
                           IAM_POLICY_IDENTITY);
  (void)state;
  assert_int_equal(id_eval(p, "kms:Encrypt", KEY_ARN), IAM_ALLOW);
  assert_int_equal(id_eval(p, "kms:Encrypt", "arn:aws:kms:us-east-1:111122223333:key/5678"), IAM_NO_MATCH);
  /* Resource ARNs are case-sensitive. */
  assert_int_equal(id_eval(p, "kms:Encrypt", "ARN:aws:kms:us-east-1:111122223333:key/1234"), IAM_NO_MATCH);
  /* NotAction + NotResource deny: any other action on any key not starting with 9. */
  assert_int_equal(id_eval(p, "kms:DescribeKey", KEY_ARN), IAM_DENY);
  assert_int_equal(id_eval(p, "kms:DescribeKey", "arn:aws:kms:us-east-1:111122223333:key/9abc"), IAM_NO_MATCH);
  iam_policy_free(p);
}

static void test_deny_wins(void **state) {
  iam_policy *p = parse_ok("{\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"},"
                           "{\"Effect\":\"Deny\",\"Action\":\"kms:ScheduleKeyDeletion\",\"Resource\":\"*\"}]}",
                           IAM_POLICY_IDENTITY);
  (void)state;
  assert_int_equal(id_eval(p, "kms:Encrypt", KEY_ARN), IAM_ALLOW);
  assert_int_equal(id_eval(p, "kms:ScheduleKeyDeletion", KEY_ARN), IAM_DENY);
  iam_policy_free(p);
}

static void test_key_policy_principals(void **state) {
  iam_policy *p = parse_ok(
      "{\"Version\":\"2012-10-17\",\"Id\":\"key-default-1\",\"Statement\":["
      "{\"Sid\":\"Enable IAM User Permissions\",\"Effect\":\"Allow\","
      "\"Principal\":{\"AWS\":\"arn:aws:iam::111122223333:root\"},\"Action\":\"kms:*\",\"Resource\":\"*\"},"
      "{\"Sid\":\"Alice\",\"Effect\":\"Allow\",\"Principal\":{\"AWS\":[\"" ALICE_A "\"]},"
      "\"Action\":[\"kms:Encrypt\"],\"Resource\":\"*\"},"
      "{\"Sid\":\"Other account\",\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"444455556666\"},"
      "\"Action\":\"kms:Decrypt\",\"Resource\":\"*\"},"
      "{\"Sid\":\"Service\",\"Effect\":\"Allow\",\"Principal\":{\"Service\":[\"logs.amazonaws.com\"]},"
      "\"Action\":\"kms:*\",\"Resource\":\"*\"}]}",
      IAM_POLICY_KEY);
  (void)state;
  /* The account root is the named principal itself. */
  assert_int_equal(iam_policy_evaluate(p, ROOT_A, "111122223333", "kms:Encrypt", KEY_ARN), IAM_ALLOW);
  /* Bob only through the account: authz must also see an identity allow. */
  assert_int_equal(iam_policy_evaluate(p, BOB_A, "111122223333", "kms:Encrypt", KEY_ARN), IAM_ALLOW_ACCOUNT);
  /* Alice is named directly for Encrypt. */
  assert_int_equal(iam_policy_evaluate(p, ALICE_A, "111122223333", "kms:Encrypt", KEY_ARN), IAM_ALLOW);
  assert_int_equal(iam_policy_evaluate(p, ALICE_A, "111122223333", "kms:Decrypt", KEY_ARN), IAM_ALLOW_ACCOUNT);
  /* The other account via its bare account id. */
  assert_int_equal(iam_policy_evaluate(p, CAROL_B, "444455556666", "kms:Decrypt", KEY_ARN), IAM_ALLOW_ACCOUNT);
  assert_int_equal(iam_policy_evaluate(p, "arn:aws:iam::444455556666:root", "444455556666", "kms:Decrypt", KEY_ARN),
                   IAM_ALLOW);
  assert_int_equal(iam_policy_evaluate(p, CAROL_B, "444455556666", "kms:Encrypt", KEY_ARN), IAM_NO_MATCH);
  /* A third account matches nothing; the service principal never matches a user. */
  assert_int_equal(iam_policy_evaluate(p, "arn:aws:iam::777788889999:user/x", "777788889999", "kms:Encrypt",
                                       KEY_ARN),
                   IAM_NO_MATCH);
  assert_int_equal(iam_policy_evaluate(p, NULL, NULL, "kms:Encrypt", KEY_ARN), IAM_NO_MATCH);
  iam_policy_free(p);

  p = parse_ok("{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"kms:Encrypt\","
               "\"Resource\":\"*\"},{\"Effect\":\"Deny\",\"Principal\":{\"AWS\":\"*\"},"
               "\"Action\":\"kms:Decrypt\",\"Resource\":\"*\"},"
               "{\"Effect\":\"Deny\",\"Principal\":{\"AWS\":\"arn:aws:iam::444455556666:root\"},"
               "\"Action\":\"kms:Encrypt\",\"Resource\":\"*\"}]}",
               IAM_POLICY_KEY);
  assert_int_equal(iam_policy_evaluate(p, BOB_A, "111122223333", "kms:Encrypt", KEY_ARN), IAM_ALLOW);
  assert_int_equal(iam_policy_evaluate(p, BOB_A, "111122223333", "kms:Decrypt", KEY_ARN), IAM_DENY);
  /* A Deny naming an account applies to every principal of that account. */
  assert_int_equal(iam_policy_evaluate(p, CAROL_B, "444455556666", "kms:Encrypt", KEY_ARN), IAM_DENY);
  iam_policy_free(p);
}

static void test_conditions(void **state) {
  iam_policy *p = parse_ok(
      "{\"Statement\":["
      "{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"*\"},\"Action\":\"kms:Encrypt\",\"Resource\":\"*\","
      "\"Condition\":{\"StringEquals\":{\"kms:CallerAccount\":[\"111122223333\",\"444455556666\"]}}},"
      "{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"*\"},\"Action\":\"kms:Decrypt\",\"Resource\":\"*\","
      "\"Condition\":{\"StringLike\":{\"aws:PrincipalArn\":\"arn:aws:iam::*:user/a*\"},"
      "\"StringNotEquals\":{\"AWS:PrincipalAccount\":\"444455556666\"}}},"
      "{\"Effect\":\"Deny\",\"Principal\":{\"AWS\":\"*\"},\"Action\":\"kms:GenerateDataKey\",\"Resource\":\"*\","
      "\"Condition\":{\"StringNotLike\":{\"aws:PrincipalArn\":\"arn:aws:iam::111122223333:*\"}}},"
      "{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"*\"},\"Action\":\"kms:GenerateDataKey\",\"Resource\":\"*\","
      "\"Condition\":{\"StringEqualsIfExists\":{\"kms:CallerAccount\":\"111122223333\"}}}]}",
      IAM_POLICY_KEY);
  (void)state;
  assert_int_equal(iam_policy_evaluate(p, BOB_A, "111122223333", "kms:Encrypt", KEY_ARN), IAM_ALLOW);
  assert_int_equal(iam_policy_evaluate(p, CAROL_B, "444455556666", "kms:Encrypt", KEY_ARN), IAM_ALLOW);
  assert_int_equal(iam_policy_evaluate(p, "arn:aws:iam::777788889999:user/z", "777788889999", "kms:Encrypt", KEY_ARN),
                   IAM_NO_MATCH);
  /* StringLike and StringNotEquals together (AND). */
  assert_int_equal(iam_policy_evaluate(p, ALICE_A, "111122223333", "kms:Decrypt", KEY_ARN), IAM_ALLOW);
  assert_int_equal(iam_policy_evaluate(p, BOB_A, "111122223333", "kms:Decrypt", KEY_ARN), IAM_NO_MATCH);
  assert_int_equal(iam_policy_evaluate(p, "arn:aws:iam::444455556666:user/ann", "444455556666", "kms:Decrypt", KEY_ARN),
                   IAM_NO_MATCH);
  /* StringNotLike in a Deny: outsiders denied. */
  assert_int_equal(iam_policy_evaluate(p, CAROL_B, "444455556666", "kms:GenerateDataKey", KEY_ARN), IAM_DENY);
  assert_int_equal(iam_policy_evaluate(p, BOB_A, "111122223333", "kms:GenerateDataKey", KEY_ARN), IAM_ALLOW);
  iam_policy_free(p);

  p = parse_ok("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\","
               "\"Condition\":{\"Bool\":{\"kms:CallerAccount\":true}}}}",
               IAM_POLICY_IDENTITY);
  assert_int_equal(id_eval(p, "kms:Encrypt", KEY_ARN), IAM_NO_MATCH);
  iam_policy_free(p);
}

static void test_unsupported_conditions_fail_closed(void **state) {
  iam_policy *p = parse_ok(
      "{\"Statement\":["
      "{\"Effect\":\"Allow\",\"Action\":\"kms:Encrypt\",\"Resource\":\"*\","
      "\"Condition\":{\"IpAddress\":{\"aws:SourceIp\":\"10.0.0.0/8\"}}},"
      "{\"Effect\":\"Allow\",\"Action\":\"kms:Decrypt\",\"Resource\":\"*\","
      "\"Condition\":{\"StringEquals\":{\"kms:EncryptionContext:app\":\"x\"}}},"
      "{\"Effect\":\"Deny\",\"Action\":\"kms:DisableKey\",\"Resource\":\"*\","
      "\"Condition\":{\"NumericLessThan\":{\"kms:PendingWindowInDays\":7}}},"
      "{\"Effect\":\"Deny\",\"Action\":\"kms:DeleteAlias\",\"Resource\":\"*\","
      "\"Condition\":{\"DateGreaterThan\":{\"aws:CurrentTime\":\"2020-01-01T00:00:00Z\"},"
      "\"StringEquals\":{\"aws:PrincipalAccount\":\"999999999999\"}}},"
      "{\"Effect\":\"Allow\",\"Action\":[\"kms:DisableKey\",\"kms:DeleteAlias\"],\"Resource\":\"*\"}]}",
      IAM_POLICY_IDENTITY);
  (void)state;
  /* Allow with something kmsd cannot evaluate never grants. */
  assert_int_equal(id_eval(p, "kms:Encrypt", KEY_ARN), IAM_NO_MATCH);
  assert_int_equal(id_eval(p, "kms:Decrypt", KEY_ARN), IAM_NO_MATCH);
  /* Deny with it always applies ... */
  assert_int_equal(id_eval(p, "kms:DisableKey", KEY_ARN), IAM_DENY);
  /* ... unless a supported condition in the same statement rules it out. */
  assert_int_equal(id_eval(p, "kms:DeleteAlias", KEY_ARN), IAM_ALLOW);
  iam_policy_free(p);
}

static void test_malformed(void **state) {
  char *big;
  (void)state;
  expect_malformed("", IAM_POLICY_IDENTITY, "empty");
  expect_malformed("{", IAM_POLICY_IDENTITY, "not valid JSON");
  expect_malformed("[]", IAM_POLICY_IDENTITY, "JSON object");
  expect_malformed("{\"Version\":\"2012-10-17\"}", IAM_POLICY_IDENTITY, "Statement");
  expect_malformed("{\"Statement\":[]}", IAM_POLICY_IDENTITY, "at least one statement");
  expect_malformed("{\"Version\":\"2013-01-01\",\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}}",
                   IAM_POLICY_IDENTITY, "Version");
  expect_malformed("{\"Statment\":[]}", IAM_POLICY_IDENTITY, "unknown field 'Statment'");
  expect_malformed("{\"Statement\":{\"Action\":\"*\",\"Resource\":\"*\"}}", IAM_POLICY_IDENTITY, "Effect");
  expect_malformed("{\"Statement\":{\"Effect\":\"allow\",\"Action\":\"*\",\"Resource\":\"*\"}}", IAM_POLICY_IDENTITY,
                   "Effect");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Resource\":\"*\"}}", IAM_POLICY_IDENTITY, "actions");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"NotAction\":\"*\",\"Resource\":\"*\"}}",
                   IAM_POLICY_IDENTITY, "not both");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"Encrypt\",\"Resource\":\"*\"}}",
                   IAM_POLICY_IDENTITY, "invalid actions");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":[],\"Resource\":\"*\"}}", IAM_POLICY_IDENTITY,
                   "invalid actions");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":[\"kms:Encrypt\",3],\"Resource\":\"*\"}}",
                   IAM_POLICY_IDENTITY, "invalid actions");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kms:*\"}}", IAM_POLICY_IDENTITY, "resources");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"key/1\"}}",
                   IAM_POLICY_IDENTITY, "invalid resources");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\",\"Principal\":\"*\"}}",
                   IAM_POLICY_IDENTITY, "Principal");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\"}}", IAM_POLICY_KEY,
                   "Principal");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\","
                   "\"Principal\":{\"AWS\":\"bob\"}}}",
                   IAM_POLICY_KEY, "Policy contains a statement with one or more invalid principals.");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\","
                   "\"Principal\":{\"AWS\":\"arn:aws:iam::*:root\"}}}",
                   IAM_POLICY_KEY, "invalid principals");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\","
                   "\"Principal\":{\"AWS\":\"arn:aws:kms:us-east-1:111122223333:key/x\"}}}",
                   IAM_POLICY_KEY, "invalid principals");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\","
                   "\"Principal\":{\"Federated\":\"x\"}}}",
                   IAM_POLICY_KEY, "invalid principals");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\","
                   "\"Principal\":\"111122223333\"}}",
                   IAM_POLICY_KEY, "invalid principals");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\","
                   "\"Principal\":{\"AWS\":[]}}}",
                   IAM_POLICY_KEY, "invalid principals");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\","
                   "\"Condition\":{\"StringEquals\":\"x\"}}}",
                   IAM_POLICY_IDENTITY, "Condition");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\","
                   "\"Condition\":{\"StringEquals\":{\"aws:PrincipalArn\":[]}}}}",
                   IAM_POLICY_IDENTITY, "no values");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\","
                   "\"Condition\":{\"StringEquals\":{\"aws:PrincipalArn\":{\"a\":1}}}}}",
                   IAM_POLICY_IDENTITY, "condition value");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\",\"Extra\":1}}",
                   IAM_POLICY_IDENTITY, "unknown field 'Extra'");
  expect_malformed("{\"Statement\":{\"Effect\":\"Allow\",\"Effect\":\"Deny\",\"Action\":\"kms:*\",\"Resource\":\"*\"}}",
                   IAM_POLICY_IDENTITY, "JSON");
  expect_malformed("{\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\"},"
                   "{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\",\"Principal\":\"*\"}]}",
                   IAM_POLICY_IDENTITY, "Principal");
  /* Oversized documents are refused before parsing. */
  big = malloc(40000);
  assert_non_null(big);
  memset(big, ' ', 39999);
  big[0] = '{';
  big[39998] = '}';
  big[39999] = '\0';
  expect_malformed(big, IAM_POLICY_IDENTITY, "larger than");
  free(big);
}

static void test_many_statements_bounded(void **state) {
  char buf[32768];
  size_t pos = 0;
  int i;
  (void)state;
  pos += (size_t)snprintf(buf + pos, sizeof buf - pos, "{\"Statement\":[");
  for (i = 0; i < 300; i++)
    pos += (size_t)snprintf(buf + pos, sizeof buf - pos, "%s{\"Effect\":\"Allow\",\"Action\":\"a:b\",\"Resource\":\"*\"}",
                            i ? "," : "");
  snprintf(buf + pos, sizeof buf - pos, "]}");
  expect_malformed(buf, IAM_POLICY_IDENTITY, "more than 256 statements");
}

static void test_pathological_wildcards(void **state) {
  char pattern[600], action[700];
  iam_policy *p;
  char json[1024];
  (void)state;
  memset(pattern, 0, sizeof pattern);
  strcpy(pattern, "kms:");
  memset(pattern + 4, '*', 200);
  memcpy(pattern + 204, "a*b", 3);
  snprintf(json, sizeof json, "{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"%s\",\"Resource\":\"*\"}}", pattern);
  p = parse_ok(json, IAM_POLICY_IDENTITY);
  strcpy(action, "kms:");
  memset(action + 4, 'a', 600);
  action[604] = '\0';
  assert_int_equal(id_eval(p, action, "*"), IAM_NO_MATCH);
  action[603] = 'b';
  assert_int_equal(id_eval(p, action, "*"), IAM_ALLOW);
  iam_policy_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_identity_actions_and_wildcards),
      cmocka_unit_test(test_resources_case_sensitive_and_not),
      cmocka_unit_test(test_deny_wins),
      cmocka_unit_test(test_key_policy_principals),
      cmocka_unit_test(test_conditions),
      cmocka_unit_test(test_unsupported_conditions_fail_closed),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_many_statements_bounded),
      cmocka_unit_test(test_pathological_wildcards),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
