/* test_credentials.c - loading the credentials file from real files:
 * validation of every field, duplicates, the default file, creds_any. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aws/credentials.h"
#include "aws/policy.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

static char tmpdir[256];

static int setup(void **state) {
  (void)state;
  strcpy(tmpdir, "/tmp/test_credentials.XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  char cmd[300];
  (void)state;
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static kerr_code load_text(const char *text, creds_store **out, kerr *err) {
  char path[512];
  snprintf(path, sizeof path, "%s/creds.json", tmpdir);
  write_file(path, text);
  kerr_clear(err);
  return creds_load(path, 0, out, err);
}

static void expect_invalid(const char *text, const char *msg_part) {
  creds_store *s = (creds_store *)0x1;
  kerr err;
  if (load_text(text, &s, &err) != KERR_VALIDATION) fail_msg("accepted: %s", text);
  assert_null(s);
  if (!strstr(err.msg, msg_part)) fail_msg("message '%s' lacks '%s'", err.msg, msg_part);
  /* The secret is never echoed, whatever went wrong. */
  assert_null(strstr(err.msg, SECRET));
  assert_null(strstr(err.msg, "TOPSECRET"));
}

#define P(akid, secret, acct, arn, extra)                                                          \
  "{\"accessKeyId\":\"" akid "\",\"secretAccessKey\":\"" secret "\",\"accountId\":\"" acct       \
  "\",\"arn\":\"" arn "\"" extra "}"

static void test_load_and_lookup(void **state) {
  creds_store *s = NULL;
  const cred_entry *e;
  kerr err;
  (void)state;
  assert_int_equal(
      load_text("{\"principals\":["
                P("AKIAZZZZZZZZZZZZZZZZ", "s1", "111122223333", "arn:aws:iam::111122223333:user/bob",
                  ",\"policy\":{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\","
                  "\"Action\":\"kms:Encrypt\",\"Resource\":\"*\"}]}")
                "," P("AKIAIOSFODNN7EXAMPLE", SECRET, "111122223333", "arn:aws:iam::111122223333:root", "")
                "," P("AKIABBBBBBBBBBBBBBBB", "s3", "444455556666", "arn:aws:iam::444455556666:user/carol",
                      ",\"sessionToken\":\"tok\"")
                "]}",
                &s, &err),
      KERR_OK);
  assert_false(creds_is_any(s));
  e = creds_lookup(s, "AKIAIOSFODNN7EXAMPLE");
  assert_non_null(e);
  assert_true(e->who.is_root);
  assert_string_equal(e->secret_access_key, SECRET);
  assert_null(e->session_token);
  assert_null(e->who.identity_policy);
  assert_string_equal(e->who.account_id, "111122223333");

  e = creds_lookup(s, "AKIAZZZZZZZZZZZZZZZZ");
  assert_non_null(e);
  assert_false(e->who.is_root);
  assert_string_equal(e->who.arn, "arn:aws:iam::111122223333:user/bob");
  assert_non_null(e->who.identity_policy);
  assert_int_equal(iam_policy_evaluate(e->who.identity_policy, e->who.arn, e->who.account_id, "kms:Encrypt", "*"),
                   IAM_ALLOW);
  assert_int_equal(iam_policy_evaluate(e->who.identity_policy, e->who.arn, e->who.account_id, "kms:Decrypt", "*"),
                   IAM_NO_MATCH);

  e = creds_lookup(s, "AKIABBBBBBBBBBBBBBBB");
  assert_non_null(e);
  assert_string_equal(e->session_token, "tok");
  assert_string_equal(e->who.account_id, "444455556666");

  assert_null(creds_lookup(s, "AKIANOTTHERE0000000"));
  assert_null(creds_lookup(s, ""));
  assert_null(creds_lookup(s, NULL));
  creds_free(s);
}

static void test_invalid_fields(void **state) {
  (void)state;
  expect_invalid("not json", "invalid JSON");
  expect_invalid("[]", "principals");
  expect_invalid("{\"principals\":[]}", "principals");
  expect_invalid("{\"principals\":[1]}", "principals[0] must be an object");
  expect_invalid("{\"principals\":[" P("AKIASHORT", "TOPSECRET", "111122223333", "arn:aws:iam::111122223333:root", "")
                 "]}",
                 "principals[0].accessKeyId");
  expect_invalid("{\"principals\":[" P("akiaiosfodnn7example", "TOPSECRET", "111122223333",
                                       "arn:aws:iam::111122223333:root", "") "]}",
                 "accessKeyId");
  expect_invalid("{\"principals\":[" P("AKIAIOSFODNN7EXAMPLE", "", "111122223333", "arn:aws:iam::111122223333:root",
                                       "") "]}",
                 "secretAccessKey");
  expect_invalid("{\"principals\":[" P("AKIAIOSFODNN7EXAMPLE", "TOPSECRET", "11112222333",
                                       "arn:aws:iam::111122223333:root", "") "]}",
                 "accountId must be 12 digits");
  expect_invalid("{\"principals\":[" P("AKIAIOSFODNN7EXAMPLE", "TOPSECRET", "111122223333",
                                       "arn:aws:iam::444455556666:root", "") "]}",
                 "arn must be an ARN starting with arn:aws:iam::111122223333:");
  expect_invalid("{\"principals\":[" P("AKIAIOSFODNN7EXAMPLE", "TOPSECRET", "111122223333",
                                       "arn:aws:iam::111122223333:", "") "]}",
                 "arn must be");
  expect_invalid("{\"principals\":[" P("AKIAIOSFODNN7EXAMPLE", "TOPSECRET", "111122223333",
                                       "arn:aws:iam::111122223333:root", ",\"sessionToken\":\"\"") "]}",
                 "sessionToken");
  expect_invalid("{\"principals\":[" P("AKIAIOSFODNN7EXAMPLE", "TOPSECRET", "111122223333",
                                       "arn:aws:iam::111122223333:root", ",\"sesionToken\":\"x\"") "]}",
                 "unknown field 'sesionToken'");
  expect_invalid("{\"principals\":[" P("AKIAIOSFODNN7EXAMPLE", "TOPSECRET", "111122223333",
                                       "arn:aws:iam::111122223333:root", ",\"policy\":\"kms:*\"") "]}",
                 "policy must be an object");
  expect_invalid("{\"principals\":[" P("AKIAIOSFODNN7EXAMPLE", "TOPSECRET", "111122223333",
                                       "arn:aws:iam::111122223333:root",
                                       ",\"policy\":{\"Statement\":{\"Effect\":\"Maybe\",\"Action\":\"*\","
                                       "\"Resource\":\"*\"}}") "]}",
                 "principals[0].policy: Policy statement Effect");
  /* The second principal is wrong: the message says which. */
  expect_invalid("{\"principals\":[" P("AKIAIOSFODNN7EXAMPLE", "TOPSECRET", "111122223333",
                                       "arn:aws:iam::111122223333:root", "")
                 "," P("AKIAIOSFODNN7EXAMPLE", "TOPSECRET", "111122223333", "arn:aws:iam::111122223333:user/x", "")
                 "]}",
                 "access key AKIAIOSFODNN7EXAMPLE appears more than once");
  /* A repeated key found early in the sorted order while later principals
   * (out of order in the file) carry policies: each policy is freed once
   * (under ASan a double free or a leak fails this test). */
  expect_invalid("{\"principals\":["
                 P("AKIAZZZZZZZZZZZZZZZZ", "TOPSECRET", "111122223333", "arn:aws:iam::111122223333:root",
                   ",\"policy\":{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"*\",\"Resource\":\"*\"}}")
                 "," P("AKIAAAAAAAAAAAAAAAAA", "TOPSECRET", "111122223333", "arn:aws:iam::111122223333:user/a", "")
                 "," P("AKIAAAAAAAAAAAAAAAAA", "TOPSECRET", "111122223333", "arn:aws:iam::111122223333:user/b", "")
                 "," P("AKIAYYYYYYYYYYYYYYYY", "TOPSECRET", "111122223333", "arn:aws:iam::111122223333:user/y",
                   ",\"policy\":{\"Statement\":{\"Effect\":\"Deny\",\"Action\":\"*\",\"Resource\":\"*\"}}")
                 "]}",
                 "access key AKIAAAAAAAAAAAAAAAAA appears more than once");
  expect_invalid("{\"principals\":[" P("AKIAIOSFODNN7EXAMPLE", "TOPSECRET", "111122223333",
                                       "arn:aws:iam::111122223333:root", "")
                 "," P("AKIAIOSFODNN7EXAMPl", "TOPSECRET", "111122223333", "arn:aws:iam::111122223333:user/x", "")
                 "]}",
                 "principals[1].accessKeyId");
}

/* "admin" is an optional boolean, false unless set; roots are not admin by
 * being roots. */
static void test_admin_member(void **state) {
  creds_store *s = NULL;
  kerr err;
  (void)state;
  assert_int_equal(
      load_text("{\"principals\":["
                P("AKIAIOSFODNN7EXAMPLE", SECRET, "111122223333", "arn:aws:iam::111122223333:root", "")
                "," P("AKIAZZZZZZZZZZZZZZZZ", "s1", "111122223333", "arn:aws:iam::111122223333:user/ops",
                      ",\"admin\":true")
                "," P("AKIABBBBBBBBBBBBBBBB", "s2", "444455556666", "arn:aws:iam::444455556666:root",
                      ",\"admin\":false")
                "]}",
                &s, &err),
      KERR_OK);
  assert_false(creds_lookup(s, "AKIAIOSFODNN7EXAMPLE")->who.is_admin);
  assert_true(creds_lookup(s, "AKIAZZZZZZZZZZZZZZZZ")->who.is_admin);
  assert_false(creds_lookup(s, "AKIAZZZZZZZZZZZZZZZZ")->who.is_root);
  assert_false(creds_lookup(s, "AKIABBBBBBBBBBBBBBBB")->who.is_admin);
  creds_free(s);
  expect_invalid("{\"principals\":[" P("AKIAIOSFODNN7EXAMPLE", "TOPSECRET", "111122223333",
                                       "arn:aws:iam::111122223333:root", ",\"admin\":\"true\"") "]}",
                 "principals[0].admin must be true or false");
  expect_invalid("{\"principals\":[" P("AKIAIOSFODNN7EXAMPLE", "TOPSECRET", "111122223333",
                                       "arn:aws:iam::111122223333:root", ",\"admin\":1") "]}",
                 "principals[0].admin must be true or false");
  expect_invalid("{\"principals\":[" P("AKIAIOSFODNN7EXAMPLE", "TOPSECRET", "111122223333",
                                       "arn:aws:iam::111122223333:root", ",\"admin\":null") "]}",
                 "principals[0].admin must be true or false");
}

static void test_missing_file(void **state) {
  char path[512];
  creds_store *s = NULL;
  kerr err;
  (void)state;
  snprintf(path, sizeof path, "%s/none.json", tmpdir);
  assert_int_equal(creds_load(path, 0, &s, &err), KERR_VALIDATION);
  assert_null(s);
  assert_non_null(strstr(err.msg, "cannot open"));
  /* A directory is not a credentials file. */
  assert_int_equal(creds_load(tmpdir, 0, &s, &err), KERR_VALIDATION);
}

static void test_create_default(void **state) {
  char path[512];
  creds_store *s = NULL, *again = NULL;
  const cred_entry *e;
  struct stat st;
  kerr err;
  (void)state;
  snprintf(path, sizeof path, "%s/default.json", tmpdir);
  assert_int_equal(creds_load(path, 1, &s, &err), KERR_OK);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  e = creds_lookup(s, "AKIAIOSFODNN7EXAMPLE");
  assert_non_null(e);
  assert_string_equal(e->secret_access_key, SECRET);
  assert_string_equal(e->who.arn, "arn:aws:iam::111122223333:root");
  assert_true(e->who.is_root);
  assert_true(e->who.is_admin); /* the admin API works out of the box */
  assert_non_null(e->who.identity_policy);
  assert_int_equal(iam_policy_evaluate(e->who.identity_policy, e->who.arn, "111122223333", "kms:CreateKey", "*"),
                   IAM_ALLOW);
  /* Loading again reads the file written, it does not rewrite it. */
  write_file(path, "{\"principals\":[" P("AKIAEDITEDEDITED0000", "x", "111122223333",
                                         "arn:aws:iam::111122223333:root", "") "]}");
  assert_int_equal(creds_load(path, 1, &again, &err), KERR_OK);
  assert_null(creds_lookup(again, "AKIAIOSFODNN7EXAMPLE"));
  assert_non_null(creds_lookup(again, "AKIAEDITEDEDITED0000"));
  creds_free(again);
  creds_free(s);
  /* No temporary file is left behind. */
  {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", tmpdir);
    assert_int_not_equal(system(cmd), 0);
  }
  /* In a directory that does not exist, creation fails cleanly. */
  snprintf(path, sizeof path, "%s/no/such/dir/creds.json", tmpdir);
  assert_int_equal(creds_load(path, 1, &s, &err), KERR_VALIDATION);
  assert_null(s);
}

static void test_any(void **state) {
  creds_store *s = NULL;
  const cred_entry *a, *b;
  kerr err;
  (void)state;
  assert_int_equal(creds_any(&s, &err), KERR_OK);
  assert_true(creds_is_any(s));
  a = creds_lookup(s, "AKIAANYTHING0000");
  b = creds_lookup(s, "whatever");
  assert_non_null(a);
  assert_ptr_equal(a, b);
  assert_true(a->who.is_root);
  assert_false(a->who.is_admin); /* any key pair becomes this caller */
  assert_string_equal(a->who.account_id, "111122223333");
  assert_false(creds_is_any(NULL));
  creds_free(s);
  creds_free(NULL);
}

static void test_oversized_file(void **state) {
  char path[512];
  FILE *f;
  creds_store *s = NULL;
  kerr err;
  int i;
  (void)state;
  snprintf(path, sizeof path, "%s/big.json", tmpdir);
  f = fopen(path, "w");
  assert_non_null(f);
  for (i = 0; i < 1100; i++) fputs("                                                                                                    "
                                   "                                                                                                    "
                                   "                                                                                                    "
                                   "                                                                                                    "
                                   "                                                                                                    "
                                   "                                                                                                    "
                                   "                                                                                                    "
                                   "                                                                                                    "
                                   "                                                                                                    "
                                   "                                                                                                    ", f);
  fclose(f);
  assert_int_equal(creds_load(path, 0, &s, &err), KERR_VALIDATION);
  assert_non_null(strstr(err.msg, "larger than"));
}

/* Bare key pairs (xks-proxy): found by id with their secret, sorted, and a
 * repeated id refused with a message that names the id, never a secret. */
static void test_from_keys(void **state) {
  (void)state;
  const char *ids[] = {"ZZZZZZZZZZZZZZZZZZZZ", "AAAAAAAAAAAAAAAAAAAA"};
  const char *secrets[] = {"secret-of-z-0123456789012345678901234567", "secret-of-a-0123456789012345678901234567"};
  creds_store *s = NULL;
  kerr err;
  kerr_clear(&err);
  assert_int_equal(creds_from_keys(ids, secrets, 2, &s, &err), KERR_OK);
  const cred_entry *e = creds_lookup(s, "AAAAAAAAAAAAAAAAAAAA");
  assert_non_null(e);
  assert_string_equal(e->secret_access_key, secrets[1]);
  assert_null(creds_lookup(s, "BBBBBBBBBBBBBBBBBBBB"));
  creds_free(s);
  const char *dup[] = {"AAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAA"};
  s = NULL;
  assert_int_equal(creds_from_keys(dup, secrets, 2, &s, &err), KERR_VALIDATION);
  assert_null(s);
  assert_non_null(strstr(err.msg, "AAAAAAAAAAAAAAAAAAAA appears more than once"));
  assert_null(strstr(err.msg, "secret-of"));
  assert_int_equal(creds_from_keys(ids, secrets, 0, &s, &err), KERR_VALIDATION);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_load_and_lookup),
      cmocka_unit_test(test_invalid_fields),
      cmocka_unit_test(test_admin_member),
      cmocka_unit_test(test_missing_file),
      cmocka_unit_test(test_create_default),
      cmocka_unit_test(test_any),
      cmocka_unit_test(test_oversized_file),
      cmocka_unit_test(test_from_keys),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
