/* test_cli_paging.c - unit tests for lib/cli/paging: pages gathered into one
 * result, --max-items cuts, resume tokens and starting tokens.  The expected
 * items and tokens are what the AWS SDK for Python's paginator (the AWS CLI's
 * own) gives for the same three pages; tests/e2e compares the whole `kms`
 * command with `aws` against kmsd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/paging.h"

static const cli_paging_spec list_keys = {"Marker", "NextMarker", "Truncated", "Limit", "Keys"};

/* Three pages of ListKeys: k0-k2 (next m1), k3-k5 (next m2), k6-k7 (last). */
static json_t *page(int n) {
  static const char *const pages[] = {
      "{\"Keys\":[{\"KeyId\":\"k0\"},{\"KeyId\":\"k1\"},{\"KeyId\":\"k2\"}],\"NextMarker\":\"m1\",\"Truncated\":true}",
      "{\"Keys\":[{\"KeyId\":\"k3\"},{\"KeyId\":\"k4\"},{\"KeyId\":\"k5\"}],\"NextMarker\":\"m2\",\"Truncated\":true}",
      "{\"Keys\":[{\"KeyId\":\"k6\"},{\"KeyId\":\"k7\"}],\"Truncated\":false}",
  };
  json_t *p = json_loads(pages[n], 0, NULL);
  assert_non_null(p);
  return p;
}

/* The page a request asks for: by its Marker. */
static int page_for(const json_t *request) {
  const char *m = json_string_value(json_object_get(request, "Marker"));
  if (m == NULL)
    return 0;
  if (strcmp(m, "m1") == 0)
    return 1;
  if (strcmp(m, "m2") == 0)
    return 2;
  fail_msg("request for an unknown marker %s", m);
  return -1;
}

/* Run a listing and compare the key ids ("k0 k1") and the token (NULL: none). */
static void expect_listing(const char *token, long long max_items, const char *want_keys, const char *want_token) {
  cli_paging_opts opts = {token, max_items, 0};
  cli_paging *p = NULL;
  kerr err;
  json_t *request = json_object();
  char got[256] = "";
  assert_int_equal(cli_paging_new(&list_keys, &opts, &p, &err), KERR_OK);
  int fetched = 0;
  while (cli_paging_prepare(p, request)) {
    json_t *reply = page(page_for(request));
    assert_int_equal(cli_paging_add(p, reply, NULL, &err), KERR_OK);
    json_decref(reply);
    assert_true(++fetched <= 3);
  }
  json_t *result = cli_paging_result(p);
  assert_non_null(result);
  size_t i;
  json_t *item;
  json_array_foreach(json_object_get(result, "Keys"), i, item) {
    if (i > 0)
      strcat(got, " ");
    strcat(got, json_string_value(json_object_get(item, "KeyId")));
  }
  assert_string_equal(got, want_keys);
  const char *tok = json_string_value(json_object_get(result, "NextToken"));
  if (want_token == NULL)
    assert_null(tok);
  else
    assert_string_equal(tok != NULL ? tok : "(none)", want_token);
  if (tok != NULL)
    assert_string_equal(cli_paging_next_token(p), tok);
  json_decref(result);
  json_decref(request);
  cli_paging_free(p);
}

/* {"Marker": null, "boto_truncate_amount": 2} and friends, base64. */
#define T_NULL_2 "eyJNYXJrZXIiOiBudWxsLCAiYm90b190cnVuY2F0ZV9hbW91bnQiOiAyfQ=="
#define T_NULL_1 "eyJNYXJrZXIiOiBudWxsLCAiYm90b190cnVuY2F0ZV9hbW91bnQiOiAxfQ=="
#define T_M1 "eyJNYXJrZXIiOiAibTEifQ=="
#define T_M1_1 "eyJNYXJrZXIiOiAibTEiLCAiYm90b190cnVuY2F0ZV9hbW91bnQiOiAxfQ=="
#define T_M1_2 "eyJNYXJrZXIiOiAibTEiLCAiYm90b190cnVuY2F0ZV9hbW91bnQiOiAyfQ=="
#define T_M2 "eyJNYXJrZXIiOiAibTIifQ=="
#define T_M2_1 "eyJNYXJrZXIiOiAibTIiLCAiYm90b190cnVuY2F0ZV9hbW91bnQiOiAxfQ=="

static void test_all_pages(void **state) {
  (void)state;
  expect_listing(NULL, 0, "k0 k1 k2 k3 k4 k5 k6 k7", NULL);
}

static void test_max_items(void **state) {
  (void)state;
  expect_listing(NULL, 1, "k0", T_NULL_1);
  expect_listing(NULL, 2, "k0 k1", T_NULL_2);
  expect_listing(NULL, 3, "k0 k1 k2", T_M1);        /* at a page's end: the next position */
  expect_listing(NULL, 4, "k0 k1 k2 k3", T_M1_1);
  expect_listing(NULL, 6, "k0 k1 k2 k3 k4 k5", T_M2);
  expect_listing(NULL, 7, "k0 k1 k2 k3 k4 k5 k6", T_M2_1);
  expect_listing(NULL, 8, "k0 k1 k2 k3 k4 k5 k6 k7", NULL); /* the listing ended: nothing to resume */
  expect_listing(NULL, 9, "k0 k1 k2 k3 k4 k5 k6 k7", NULL);
}

static void test_starting_tokens(void **state) {
  (void)state;
  expect_listing(T_NULL_2, 0, "k2 k3 k4 k5 k6 k7", NULL);
  expect_listing(T_NULL_2, 1, "k2", T_M1);
  expect_listing(T_NULL_2, 2, "k2 k3", T_M1_1);
  expect_listing(T_NULL_2, 4, "k2 k3 k4 k5", T_M2);
  expect_listing(T_M1_1, 0, "k4 k5 k6 k7", NULL);
  expect_listing(T_M1_1, 1, "k4", T_M1_2);
  expect_listing(T_M1_1, 2, "k4 k5", T_M2);
}

/* The older plain forms: a bare marker, and "<marker>___<count>". */
static void test_plain_tokens(void **state) {
  (void)state;
  expect_listing("m1", 0, "k3 k4 k5 k6 k7", NULL);
  expect_listing("m1", 2, "k3 k4", T_M1_2);
  expect_listing("m1", 4, "k3 k4 k5 k6", T_M2_1);
  expect_listing("m1___2", 0, "k5 k6 k7", NULL);
  expect_listing("m1___2", 1, "k5", T_M2);
  expect_listing("m1___2", 2, "k5 k6", T_M2_1);
}

/* --page-size sets the limit member of every request; the position member
 * is set only when there is one. */
static void test_page_size_and_request(void **state) {
  (void)state;
  cli_paging_opts opts = {NULL, 0, 25};
  cli_paging *p = NULL;
  kerr err;
  json_t *request = json_pack("{s:s}", "Marker", "stale");
  assert_int_equal(cli_paging_new(&list_keys, &opts, &p, &err), KERR_OK);
  assert_int_equal(cli_paging_prepare(p, request), 1);
  assert_null(json_object_get(request, "Marker"));
  assert_int_equal(json_integer_value(json_object_get(request, "Limit")), 25);
  json_t *reply = page(0), *shown = NULL;
  assert_int_equal(cli_paging_add(p, reply, &shown, &err), KERR_OK);
  assert_true(json_equal(shown, reply)); /* nothing cut: the page as it came */
  json_decref(shown);
  json_decref(reply);
  assert_int_equal(cli_paging_prepare(p, request), 1);
  assert_string_equal(json_string_value(json_object_get(request, "Marker")), "m1");
  json_decref(request);
  cli_paging_free(p);
}

/* A page cut by --max-items is shown cut; the reply is not changed. */
static void test_page_shown_cut(void **state) {
  (void)state;
  cli_paging_opts opts = {NULL, 2, 0};
  cli_paging *p = NULL;
  kerr err;
  json_t *request = json_object(), *reply = page(0), *shown = NULL;
  assert_int_equal(cli_paging_new(&list_keys, &opts, &p, &err), KERR_OK);
  assert_int_equal(cli_paging_prepare(p, request), 1);
  assert_int_equal(cli_paging_add(p, reply, &shown, &err), KERR_OK);
  assert_int_equal(json_array_size(json_object_get(shown, "Keys")), 2);
  assert_int_equal(json_array_size(json_object_get(reply, "Keys")), 3);
  assert_string_equal(json_string_value(json_object_get(shown, "NextMarker")), "m1");
  assert_int_equal(cli_paging_prepare(p, request), 0);
  json_decref(shown);
  json_decref(reply);
  json_decref(request);
  cli_paging_free(p);
}

/* Replies are outside data: a bad member is an error, a repeated token is
 * not a loop. */
static void test_bad_replies(void **state) {
  (void)state;
  static const char *const bad[] = {
      "{\"Keys\":{\"KeyId\":\"k0\"},\"Truncated\":false}",
      "{\"Keys\":[],\"NextMarker\":7,\"Truncated\":true}",
      "[]",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cli_paging *p = NULL;
    kerr err;
    json_t *reply = json_loads(bad[i], JSON_DECODE_ANY, NULL), *request = json_object();
    assert_int_equal(cli_paging_new(&list_keys, NULL, &p, &err), KERR_OK);
    assert_int_equal(cli_paging_prepare(p, request), 1);
    assert_int_equal(cli_paging_add(p, reply, NULL, &err), KERR_VALIDATION);
    json_decref(reply);
    json_decref(request);
    cli_paging_free(p);
  }
  cli_paging *p = NULL;
  kerr err;
  json_t *request = json_object();
  json_t *again = json_loads("{\"Keys\":[],\"NextMarker\":\"m1\",\"Truncated\":true}", 0, NULL);
  assert_int_equal(cli_paging_new(&list_keys, NULL, &p, &err), KERR_OK);
  assert_int_equal(cli_paging_prepare(p, request), 1);
  assert_int_equal(cli_paging_add(p, again, NULL, &err), KERR_OK);
  assert_int_equal(cli_paging_prepare(p, request), 1);
  assert_int_equal(cli_paging_add(p, again, NULL, &err), KERR_CONFLICT);
  assert_non_null(strstr(err.msg, "The same next token was received twice"));
  json_decref(again);
  json_decref(request);
  cli_paging_free(p);
}

/* A page without the result member adds nothing; none at all: no member. */
static void test_missing_result_member(void **state) {
  (void)state;
  cli_paging *p = NULL;
  kerr err;
  json_t *request = json_object(), *reply = json_loads("{\"Truncated\":false}", 0, NULL);
  assert_int_equal(cli_paging_new(&list_keys, NULL, &p, &err), KERR_OK);
  assert_int_equal(cli_paging_prepare(p, request), 1);
  assert_int_equal(cli_paging_add(p, reply, NULL, &err), KERR_OK);
  assert_int_equal(cli_paging_prepare(p, request), 0);
  json_t *result = cli_paging_result(p);
  assert_int_equal(json_object_size(result), 0);
  json_decref(result);
  json_decref(reply);
  json_decref(request);
  cli_paging_free(p);
}

static void test_bad_options(void **state) {
  (void)state;
  cli_paging *p = (cli_paging *)1;
  kerr err;
  cli_paging_opts negative = {NULL, -1, 0};
  assert_int_equal(cli_paging_new(&list_keys, &negative, &p, &err), KERR_VALIDATION);
  assert_null(p);
  char *huge = malloc(CLI_PAGING_MAX_TOKEN + 2);
  assert_non_null(huge);
  memset(huge, 'A', CLI_PAGING_MAX_TOKEN + 1);
  huge[CLI_PAGING_MAX_TOKEN + 1] = '\0';
  cli_paging_opts long_token = {huge, 0, 0};
  assert_int_equal(cli_paging_new(&list_keys, &long_token, &p, &err), KERR_VALIDATION);
  free(huge);
  /* base64 of a JSON object whose count is not a count */
  cli_paging_opts bad_count = {"eyJNYXJrZXIiOiAibTEiLCAiYm90b190cnVuY2F0ZV9hbW91bnQiOiAieCJ9", 0, 0};
  assert_int_equal(cli_paging_new(&list_keys, &bad_count, &p, &err), KERR_VALIDATION);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_all_pages),
      cmocka_unit_test(test_max_items),
      cmocka_unit_test(test_starting_tokens),
      cmocka_unit_test(test_plain_tokens),
      cmocka_unit_test(test_page_size_and_request),
      cmocka_unit_test(test_page_shown_cut),
      cmocka_unit_test(test_bad_replies),
      cmocka_unit_test(test_missing_result_member),
      cmocka_unit_test(test_bad_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
