/* test_cli_yaml.c - unit tests for lib/cli/cli_yaml: YAML 1.1 scalar typing,
 * collections, tags, and every refusal (aliases, several documents, depth,
 * size, non-JSON numbers).  The comparison with PyYAML's safe loader is in
 * tests/e2e/test_cli_params.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/cli_yaml.h"

/* The document's compact JSON, or NULL (with err) when refused. */
static char *load(const char *text, kerr *err) {
  json_t *v = NULL;
  char *out;
  if (cli_yaml_load(text, strlen(text), &v, err) != KERR_OK) {
    assert_null(v);
    return NULL;
  }
  out = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  json_decref(v);
  return out;
}

static void expect(const char *text, const char *json) {
  kerr err;
  char *got = load(text, &err);
  if (!got) fail_msg("refused %s: %s", text, err.msg);
  assert_string_equal(got, json);
  free(got);
}

static void expect_refused(const char *text, const char *fragment) {
  kerr err;
  char *got = load(text, &err);
  if (got) fail_msg("accepted %s as %s", text, got);
  assert_int_equal(err.code, KERR_VALIDATION);
  assert_non_null(strstr(err.msg, fragment));
}

static void test_scalars(void **state) {
  static const char *const cases[][2] = {
      {"v: yes", "{\"v\":true}"},          {"v: NO", "{\"v\":false}"},         {"v: On", "{\"v\":true}"},
      {"v: off", "{\"v\":false}"},         {"v: y", "{\"v\":\"y\"}"},          {"v: True", "{\"v\":true}"},
      {"v: ~", "{\"v\":null}"},            {"v:", "{\"v\":null}"},             {"v: Null", "{\"v\":null}"},
      {"v: 0x10", "{\"v\":16}"},           {"v: -0x1F", "{\"v\":-31}"},        {"v: 010", "{\"v\":8}"},
      {"v: 0b101", "{\"v\":5}"},           {"v: 1_000", "{\"v\":1000}"},       {"v: 1:30", "{\"v\":90}"},
      {"v: +12", "{\"v\":12}"},            {"v: 0o10", "{\"v\":\"0o10\"}"},    {"v: 1e3", "{\"v\":\"1e3\"}"},
      {"v: 1.0e+3", "{\"v\":1000.0}"},     {"v: .5", "{\"v\":0.5}"},           {"v: -.5", "{\"v\":\"-.5\"}"},
      {"v: 1.", "{\"v\":1.0}"},            {"v: 089", "{\"v\":\"089\"}"},      {"v: 12:60", "{\"v\":\"12:60\"}"},
      {"v: 2001-12-14", "{\"v\":\"2001-12-14\"}"},
      {"v: 9223372036854775807", "{\"v\":9223372036854775807}"},
      {"v: -9223372036854775808", "{\"v\":-9223372036854775808}"},
      {"v: 'yes'", "{\"v\":\"yes\"}"},     {"v: \"0x10\"", "{\"v\":\"0x10\"}"},
      {"v: !!str 12", "{\"v\":\"12\"}"},   {"v: !!int '12'", "{\"v\":12}"},    {"v: !!float 3", "{\"v\":3.0}"},
      {"v: !!bool yes", "{\"v\":true}"},   {"v: !!null ''", "{\"v\":null}"},
      {"v: !!binary aGVs\n  bG8=", "{\"v\":\"aGVsbG8=\"}"},
      {"v: caf\xc3\xa9", "{\"v\":\"caf\xc3\xa9\"}"},
  };
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) expect(cases[i][0], cases[i][1]);
}

static void test_collections(void **state) {
  (void)state;
  expect("", "null");
  expect("# only a comment\n", "null");
  expect("KeyId: k\nTags:\n- TagKey: a\n  TagValue: b\n- {TagKey: c, TagValue: d}\n",
         "{\"KeyId\":\"k\",\"Tags\":[{\"TagKey\":\"a\",\"TagValue\":\"b\"},{\"TagKey\":\"c\",\"TagValue\":\"d\"}]}");
  expect("[1, [2, [3]], {}]", "[1,[2,[3]],{}]");
  expect("a: 1\na: 2\n", "{\"a\":2}");
  expect("1: x\nyes: y\n", "{\"1\":\"x\",\"yes\":\"y\"}");
  expect("--- \nv: 1\n...\n", "{\"v\":1}");
  expect("plain", "\"plain\"");
}

static void test_refusals(void **state) {
  char deep[2 * (CLI_YAML_MAX_DEPTH + 2) + 1];
  (void)state;
  expect_refused("a: &x [1]\nb: *x\n", "aliases");
  expect_refused("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n", "aliases");
  expect_refused("a: 1\n---\nb: 2\n", "single document");
  expect_refused("v: .inf", "NaN or infinity");
  expect_refused("v: -.INF", "NaN or infinity");
  expect_refused("v: .nan", "NaN or infinity");
  expect_refused("v: 99999999999999999999", "64-bit");
  expect_refused("v: !!int abc", "not a 64-bit integer");
  expect_refused("v: !!bool maybe", "not a boolean");
  expect_refused("v: !custom x", "unsupported tag");
  expect_refused("? [a]\n: b\n", "must be a scalar");
  expect_refused("a: 'unterminated\n", "YAML: ");
  expect_refused("a: [1, 2\n", "YAML: ");
  memset(deep, '[', CLI_YAML_MAX_DEPTH + 1);
  memset(deep + CLI_YAML_MAX_DEPTH + 1, ']', CLI_YAML_MAX_DEPTH + 1);
  deep[2 * (CLI_YAML_MAX_DEPTH + 1)] = '\0';
  expect_refused(deep, "nested deeper");
  deep[CLI_YAML_MAX_DEPTH] = ']';
  deep[CLI_YAML_MAX_DEPTH + CLI_YAML_MAX_DEPTH + 1] = '\0';
  {
    /* Exactly the bound nests fine. */
    json_t *v = NULL;
    kerr err;
    char ok[2 * CLI_YAML_MAX_DEPTH + 1];
    memset(ok, '[', CLI_YAML_MAX_DEPTH);
    memset(ok + CLI_YAML_MAX_DEPTH, ']', CLI_YAML_MAX_DEPTH);
    ok[2 * CLI_YAML_MAX_DEPTH] = '\0';
    assert_int_equal(cli_yaml_load(ok, strlen(ok), &v, &err), KERR_OK);
    json_decref(v);
  }
}

static void test_bounds_and_arguments(void **state) {
  json_t *v = NULL;
  kerr err;
  char *big;
  size_t n = CLI_YAML_MAX_INPUT + 1;
  (void)state;
  big = malloc(n);
  assert_non_null(big);
  memset(big, 'a', n);
  assert_int_equal(cli_yaml_load(big, n, &v, &err), KERR_VALIDATION);
  assert_non_null(strstr(err.msg, "larger than"));
  free(big);
  /* Not NUL-terminated: only `len` bytes are read. */
  assert_int_equal(cli_yaml_load("v: 1XXXX", 4, &v, &err), KERR_OK);
  assert_int_equal(json_integer_value(json_object_get(v, "v")), 1);
  json_decref(v);
  /* A NUL inside a scalar. */
  assert_int_equal(cli_yaml_load("v: \"a\\0b\"", 10, &v, &err), KERR_VALIDATION);
  assert_int_equal(cli_yaml_load("v: 1", 4, NULL, &err), KERR_INTERNAL);
  assert_int_equal(cli_yaml_load(NULL, 3, &v, NULL), KERR_INTERNAL);
  assert_int_equal(cli_yaml_load(NULL, 0, &v, NULL), KERR_OK);
  assert_true(json_is_null(v));
  json_decref(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_scalars),
      cmocka_unit_test(test_collections),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_bounds_and_arguments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
