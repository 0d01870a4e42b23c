/* test_authz.c - the authorization matrix: same-account root and users,
 * identity allows, explicit denies in either policy, cross-account access,
 * key-less actions and wildcard actions, with AWS's denial wording. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "aws/authz.h"
#include "aws/policy.h"

#define ACCT_A "111122223333"
#define ACCT_B "444455556666"
#define KEY_A "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

static iam_policy *parse(const char *json, iam_policy_kind kind) {
  iam_policy *p = NULL;
  kerr err;
  if (iam_policy_parse(json, strlen(json), kind, &p, &err) != KERR_OK) fail_msg("parse: %s", err.msg);
  return p;
}

static principal make_principal(const char *account, const char *arn, int root, const iam_policy *policy) {
  principal p;
  memset(&p, 0, sizeof p);
  strcpy(p.access_key_id, "AKIAEXAMPLE00000");
  strcpy(p.account_id, account);
  strcpy(p.arn, arn);
  p.is_root = root;
  p.identity_policy = policy;
  return p;
}

static void expect_allowed(const principal *who, const char *action, const char *resource, const char *res_acct,
                           const iam_policy *key_policy) {
  authz_request r = {who, action, resource, res_acct, key_policy};
  kerr err;
  kerr_clear(&err);
  if (authz_check(&r, &err) != KERR_OK) fail_msg("%s %s denied: %s", who->arn, action, err.msg);
}

static void expect_denied(const principal *who, const char *action, const char *resource, const char *res_acct,
                          const iam_policy *key_policy, const char *message) {
  authz_request r = {who, action, resource, res_acct, key_policy};
  kerr err;
  kerr_clear(&err);
  if (authz_check(&r, &err) != KERR_ACCESS_DENIED) fail_msg("%s %s allowed", who->arn, action);
  assert_int_equal(err.code, KERR_ACCESS_DENIED);
  if (strcmp(err.msg, message) != 0) fail_msg("message\n  '%s'\nexpected\n  '%s'", err.msg, message);
}

static iam_policy *default_key_policy;   /* the account root, like KMS's default */
static iam_policy *shared_key_policy;    /* default + account B may Decrypt/Encrypt */
static iam_policy *bob_direct_policy;    /* names bob directly; denies ScheduleKeyDeletion to all */
static iam_policy *allow_encrypt;        /* identity: kms:Encrypt on everything */
static iam_policy *allow_all_deny_delete;/* identity: kms:* but explicit deny of ScheduleKeyDeletion */
static iam_policy *allow_cks;            /* identity: kms:*CustomKeyStore* */

static int setup(void **state) {
  (void)state;
  default_key_policy = parse("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Sid\":\"Enable IAM User Permissions\","
                             "\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::111122223333:root\"},"
                             "\"Action\":\"kms:*\",\"Resource\":\"*\"}]}",
                             IAM_POLICY_KEY);
  shared_key_policy = parse("{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"111122223333\"},"
                            "\"Action\":\"kms:*\",\"Resource\":\"*\"},"
                            "{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::444455556666:root\"},"
                            "\"Action\":[\"kms:Encrypt\",\"kms:Decrypt\"],\"Resource\":\"*\"}]}",
                            IAM_POLICY_KEY);
  bob_direct_policy = parse("{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":"
                            "\"arn:aws:iam::111122223333:user/bob\"},\"Action\":\"kms:*\",\"Resource\":\"*\"},"
                            "{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":\"arn:aws:iam::111122223333:root\"},"
                            "\"Action\":\"kms:*\",\"Resource\":\"*\"},"
                            "{\"Effect\":\"Deny\",\"Principal\":\"*\",\"Action\":\"kms:ScheduleKeyDeletion\","
                            "\"Resource\":\"*\"}]}",
                            IAM_POLICY_KEY);
  allow_encrypt = parse("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kms:Encrypt\",\"Resource\":\"*\"}}",
                        IAM_POLICY_IDENTITY);
  allow_all_deny_delete = parse("{\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\"},"
                                "{\"Effect\":\"Deny\",\"Action\":\"kms:ScheduleKeyDeletion\",\"Resource\":\"*\"}]}",
                                IAM_POLICY_IDENTITY);
  allow_cks = parse("{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"kms:*CustomKeyStore*\",\"Resource\":\"*\"}}",
                    IAM_POLICY_IDENTITY);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  iam_policy_free(default_key_policy);
  iam_policy_free(shared_key_policy);
  iam_policy_free(bob_direct_policy);
  iam_policy_free(allow_encrypt);
  iam_policy_free(allow_all_deny_delete);
  iam_policy_free(allow_cks);
  return 0;
}

static void test_same_account_root(void **state) {
  principal root = make_principal(ACCT_A, "arn:aws:iam::111122223333:root", 1, NULL);
  (void)state;
  expect_allowed(&root, "kms:Encrypt", KEY_A, ACCT_A, default_key_policy);
  expect_allowed(&root, "kms:ScheduleKeyDeletion", KEY_A, ACCT_A, default_key_policy);
  expect_allowed(&root, "kms:CreateKey", "*", ACCT_A, NULL);
  /* Even the root is locked out when the key policy does not allow it. */
  {
    iam_policy *alice_only = parse("{\"Statement\":{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":"
                                   "\"arn:aws:iam::111122223333:user/alice\"},\"Action\":\"kms:*\",\"Resource\":\"*\"}}",
                                   IAM_POLICY_KEY);
    expect_denied(&root, "kms:Encrypt", KEY_A, ACCT_A, alice_only,
                  "User: arn:aws:iam::111122223333:root is not authorized to perform: kms:Encrypt on resource: " KEY_A
                  " because no resource-based policy allows the kms:Encrypt action");
    iam_policy_free(alice_only);
  }
}

static void test_same_account_user(void **state) {
  principal none = make_principal(ACCT_A, "arn:aws:iam::111122223333:user/nobody", 0, NULL);
  principal enc = make_principal(ACCT_A, "arn:aws:iam::111122223333:user/alice", 0, allow_encrypt);
  (void)state;
  /* No identity policy: the key policy only delegates to the account. */
  expect_denied(&none, "kms:Encrypt", KEY_A, ACCT_A, default_key_policy,
                "User: arn:aws:iam::111122223333:user/nobody is not authorized to perform: kms:Encrypt on resource: "
                KEY_A " because no identity-based policy allows the kms:Encrypt action");
  expect_denied(&none, "kms:CreateKey", "*", ACCT_A, NULL,
                "User: arn:aws:iam::111122223333:user/nobody is not authorized to perform: kms:CreateKey on "
                "resource: * because no identity-based policy allows the kms:CreateKey action");
  /* With an identity allow for exactly that action. */
  expect_allowed(&enc, "kms:Encrypt", KEY_A, ACCT_A, default_key_policy);
  expect_denied(&enc, "kms:Decrypt", KEY_A, ACCT_A, default_key_policy,
                "User: arn:aws:iam::111122223333:user/alice is not authorized to perform: kms:Decrypt on resource: "
                KEY_A " because no identity-based policy allows the kms:Decrypt action");
}

static void test_key_policy_names_user_directly(void **state) {
  principal bob = make_principal(ACCT_A, "arn:aws:iam::111122223333:user/bob", 0, NULL);
  (void)state;
  /* Named directly in the key policy: no identity policy needed. */
  expect_allowed(&bob, "kms:Decrypt", KEY_A, ACCT_A, bob_direct_policy);
  /* Explicit deny in the key policy wins over the direct allow. */
  expect_denied(&bob, "kms:ScheduleKeyDeletion", KEY_A, ACCT_A, bob_direct_policy,
                "User: arn:aws:iam::111122223333:user/bob is not authorized to perform: kms:ScheduleKeyDeletion on "
                "resource: " KEY_A " with an explicit deny in a resource-based policy");
}

static void test_explicit_identity_deny(void **state) {
  principal dan = make_principal(ACCT_A, "arn:aws:iam::111122223333:user/dan", 0, allow_all_deny_delete);
  principal bob = make_principal(ACCT_A, "arn:aws:iam::111122223333:user/bob", 0, allow_all_deny_delete);
  principal root = make_principal(ACCT_A, "arn:aws:iam::111122223333:root", 1, allow_all_deny_delete);
  (void)state;
  expect_allowed(&dan, "kms:Encrypt", KEY_A, ACCT_A, default_key_policy);
  expect_denied(&dan, "kms:ScheduleKeyDeletion", KEY_A, ACCT_A, default_key_policy,
                "User: arn:aws:iam::111122223333:user/dan is not authorized to perform: kms:ScheduleKeyDeletion on "
                "resource: " KEY_A " with an explicit deny in an identity-based policy");
  /* The identity deny wins even over a key policy naming the user directly. */
  expect_denied(&bob, "kms:ScheduleKeyDeletion", KEY_A, ACCT_A, default_key_policy,
                "User: arn:aws:iam::111122223333:user/bob is not authorized to perform: kms:ScheduleKeyDeletion on "
                "resource: " KEY_A " with an explicit deny in an identity-based policy");
  /* ... and over the root's implicit permissions, and for key-less actions. */
  expect_denied(&root, "kms:ScheduleKeyDeletion", "*", ACCT_A, NULL,
                "User: arn:aws:iam::111122223333:root is not authorized to perform: kms:ScheduleKeyDeletion on "
                "resource: * with an explicit deny in an identity-based policy");
}

static void test_cross_account(void **state) {
  principal carol_none = make_principal(ACCT_B, "arn:aws:iam::444455556666:user/carol", 0, NULL);
  principal carol = make_principal(ACCT_B, "arn:aws:iam::444455556666:user/carol", 0, allow_encrypt);
  principal root_b = make_principal(ACCT_B, "arn:aws:iam::444455556666:root", 1, NULL);
  principal eve = make_principal("777788889999", "arn:aws:iam::777788889999:user/eve", 0, allow_all_deny_delete);
  (void)state;
  /* Key policy allows account B, identity policy allows: allowed. */
  expect_allowed(&carol, "kms:Encrypt", KEY_A, ACCT_A, shared_key_policy);
  /* Key policy allows account B, but no identity policy: denied. */
  expect_denied(&carol_none, "kms:Encrypt", KEY_A, ACCT_A, shared_key_policy,
                "User: arn:aws:iam::444455556666:user/carol is not authorized to perform: kms:Encrypt on resource: "
                KEY_A " because no identity-based policy allows the kms:Encrypt action");
  /* Identity policy allows Decrypt? No: carol's allows only Encrypt. */
  expect_denied(&carol, "kms:Decrypt", KEY_A, ACCT_A, shared_key_policy,
                "User: arn:aws:iam::444455556666:user/carol is not authorized to perform: kms:Decrypt on resource: "
                KEY_A " because no identity-based policy allows the kms:Decrypt action");
  /* Key policy does not allow account B for this action. */
  expect_denied(&carol, "kms:Encrypt", KEY_A, ACCT_A, default_key_policy,
                "User: arn:aws:iam::444455556666:user/carol is not authorized to perform: kms:Encrypt on resource: "
                KEY_A " because no resource-based policy allows the kms:Encrypt action");
  /* Account B's root: key policy names it, root needs no identity policy. */
  expect_allowed(&root_b, "kms:Decrypt", KEY_A, ACCT_A, shared_key_policy);
  expect_denied(&root_b, "kms:DescribeKey", KEY_A, ACCT_A, shared_key_policy,
                "User: arn:aws:iam::444455556666:root is not authorized to perform: kms:DescribeKey on resource: "
                KEY_A " because no resource-based policy allows the kms:DescribeKey action");
  /* A third account with a generous identity policy gets nothing. */
  expect_denied(&eve, "kms:Encrypt", KEY_A, ACCT_A, shared_key_policy,
                "User: arn:aws:iam::777788889999:user/eve is not authorized to perform: kms:Encrypt on resource: "
                KEY_A " because no resource-based policy allows the kms:Encrypt action");
}

static void test_cross_account_direct_name_still_needs_identity(void **state) {
  iam_policy *kp = parse("{\"Statement\":{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":"
                         "\"arn:aws:iam::444455556666:user/carol\"},\"Action\":\"kms:*\",\"Resource\":\"*\"}}",
                         IAM_POLICY_KEY);
  principal carol_none = make_principal(ACCT_B, "arn:aws:iam::444455556666:user/carol", 0, NULL);
  principal carol = make_principal(ACCT_B, "arn:aws:iam::444455556666:user/carol", 0, allow_encrypt);
  (void)state;
  expect_denied(&carol_none, "kms:Encrypt", KEY_A, ACCT_A, kp,
                "User: arn:aws:iam::444455556666:user/carol is not authorized to perform: kms:Encrypt on resource: "
                KEY_A " because no identity-based policy allows the kms:Encrypt action");
  expect_allowed(&carol, "kms:Encrypt", KEY_A, ACCT_A, kp);
  iam_policy_free(kp);
}

static void test_wildcard_actions(void **state) {
  principal ops = make_principal(ACCT_A, "arn:aws:iam::111122223333:user/ops", 0, allow_cks);
  (void)state;
  expect_allowed(&ops, "kms:CreateCustomKeyStore", "*", ACCT_A, NULL);
  expect_allowed(&ops, "kms:ConnectCustomKeyStore", "*", ACCT_A, NULL);
  expect_allowed(&ops, "kms:DisconnectCustomKeyStore", "*", ACCT_A, NULL);
  expect_allowed(&ops, "kms:DescribeCustomKeyStores", "*", ACCT_A, NULL);
  expect_allowed(&ops, "kms:UpdateCustomKeyStore", "*", ACCT_A, NULL);
  expect_denied(&ops, "kms:CreateKey", "*", ACCT_A, NULL,
                "User: arn:aws:iam::111122223333:user/ops is not authorized to perform: kms:CreateKey on resource: * "
                "because no identity-based policy allows the kms:CreateKey action");
}

static void test_incomplete_request(void **state) {
  authz_request r;
  kerr err;
  (void)state;
  memset(&r, 0, sizeof r);
  assert_int_equal(authz_check(&r, &err), KERR_INTERNAL);
  assert_int_equal(authz_check(NULL, &err), KERR_INTERNAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_same_account_root),
      cmocka_unit_test(test_same_account_user),
      cmocka_unit_test(test_key_policy_names_user_directly),
      cmocka_unit_test(test_explicit_identity_deny),
      cmocka_unit_test(test_cross_account),
      cmocka_unit_test(test_cross_account_direct_name_still_needs_identity),
      cmocka_unit_test(test_wildcard_actions),
      cmocka_unit_test(test_incomplete_request),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
