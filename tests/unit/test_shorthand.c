/* test_shorthand.c - unit tests for lib/cli/shorthand: each rule of the AWS
 * CLI's shorthand syntax on small inputs, with the structure and the error
 * messages the AWS CLI's ShorthandParser gives for them (the e2e test
 * tests/e2e/test_cli_shorthand.py keeps comparing against it), plus the
 * contract: limits, encoding, the file-optional callback, ownership. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/shorthand.h"

/* Parse `input` and compare the result, as compact JSON with sorted keys,
 * with `expected`. */
static void expect_ok(const char *input, const char *expected) {
  json_t *out = NULL, *want;
  cli_shorthand_error err;
  json_error_t jerr;
  kerr_code rc = cli_shorthand_parse(input, NULL, NULL, &out, &err);
  if (rc != KERR_OK) fail_msg("%s: refused: %s", input, err.status.msg);
  assert_non_null(out);
  assert_int_equal(err.kind, CLI_SHORTHAND_ERR_NONE);
  assert_null(err.message);
  want = json_loads(expected, 0, &jerr);
  if (!want) fail_msg("bad test JSON %s: %s", expected, jerr.text);
  if (!json_equal(out, want)) {
    char *got = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
    fail_msg("%s: got %s, want %s", input, got, expected);
  }
  json_decref(want);
  json_decref(out);
}

/* Parse `input`, expect a failure of `kind` at byte `offset` whose message,
 * when `message` is not NULL, is exactly that. */
static void expect_error(const char *input, cli_shorthand_error_kind kind, size_t offset,
                         const char *message) {
  json_t *out = (json_t *)1;
  cli_shorthand_error err;
  kerr_code rc = cli_shorthand_parse(input, NULL, NULL, &out, &err);
  if (rc == KERR_OK) fail_msg("%s: accepted", input);
  assert_int_equal(rc, KERR_VALIDATION);
  assert_null(out);
  assert_int_equal(err.status.code, KERR_VALIDATION);
  if (err.kind != kind || err.offset != offset)
    fail_msg("%s: kind %d at %zu, want %d at %zu (%s)", input, (int)err.kind, err.offset,
             (int)kind, offset, err.status.msg);
  assert_non_null(err.message);
  if (message) assert_string_equal(err.message, message);
  cli_shorthand_error_free(&err);
  assert_null(err.message);
}

static void test_scalars_and_csv(void **state) {
  (void)state;
  expect_ok("a=b", "{\"a\":\"b\"}");
  expect_ok("a=b,c=d", "{\"a\":\"b\",\"c\":\"d\"}");
  expect_ok("a=b,c", "{\"a\":[\"b\",\"c\"]}");
  expect_ok("a=b,c,d=e", "{\"a\":[\"b\",\"c\"],\"d\":\"e\"}");
  expect_ok("a=", "{\"a\":\"\"}");
  expect_ok("a=,b=c", "{\"a\":\"\",\"b\":\"c\"}");
  expect_ok("=b", "{\"\":\"b\"}");
  expect_ok("a-b_c.d#e/f:g=h", "{\"a-b_c.d#e/f:g\":\"h\"}");
  /* '=' may follow the first character of a first value, not a second. */
  expect_ok("a=b=c", "{\"a\":\"b=c\"}");
  expect_ok("TagKey=env,TagValue=prod", "{\"TagKey\":\"env\",\"TagValue\":\"prod\"}");
  expect_ok("Operations=Encrypt,Decrypt", "{\"Operations\":[\"Encrypt\",\"Decrypt\"]}");
  /* A bare second value may hold brackets. */
  expect_ok("a=b,c]", "{\"a\":[\"b\",\"c]\"]}");
}

static void test_whitespace(void **state) {
  (void)state;
  expect_ok("a = b ", "{\"a\":\"b\"}");
  /* Not before the first key: the key is then empty and '=' is missing. */
  expect_error(" a=b", CLI_SHORTHAND_ERR_SYNTAX, 1,
               "Expected: '=', received: 'a' for input:\n a=b\n ^");
  expect_ok("a=b c", "{\"a\":\"b c\"}");
  expect_ok("a=b , c = d", "{\"a\":\"b\",\"c\":\"d\"}");
  expect_ok("a=b,\nc=d", "{\"a\":\"b\",\"c\":\"d\"}");
  /* Trailing whitespace is Unicode's, cut from bare words only. */
  expect_ok("a=b\xc2\xa0", "{\"a\":\"b\"}");
  expect_ok("a='b '", "{\"a\":\"b \"}");
  /* U+00A0 may start a word (it is not skipped), and is then cut. */
  expect_ok("a=\xc2\xa0", "{\"a\":\"\"}");
  /* Whitespace after a list is not allowed at the end. */
  expect_error("a=[b] ", CLI_SHORTHAND_ERR_SYNTAX, 6,
               "Expected: ',', received: 'EOF' for input:\na=[b] \n      ^");
}

static void test_escapes(void **state) {
  (void)state;
  expect_ok("a=b\\,c", "{\"a\":\"b,c\"}");
  expect_ok("a=\\,", "{\"a\":\",\"}");
  expect_ok("a=b\\\\,c", "{\"a\":\"b\\\\,c\"}");
  expect_ok("a=b\\n", "{\"a\":\"b\\\\n\"}");
  /* Backing up goes to the escaped comma: the CLI reads d=e. */
  expect_ok("a=b,c\\,d=e", "{\"a\":\"b\",\"d\":\"e\"}");
}

static void test_quoted(void **state) {
  (void)state;
  expect_ok("a='b,c'", "{\"a\":\"b,c\"}");
  expect_ok("a=\"b,c\"", "{\"a\":\"b,c\"}");
  expect_ok("a='b\\'c'", "{\"a\":\"b'c\"}");
  expect_ok("a=\"b\\\"c\"", "{\"a\":\"b\\\"c\"}");
  expect_ok("a='b\\\\c'", "{\"a\":\"b\\\\c\"}");
  expect_ok("a=\"b\\'c\"", "{\"a\":\"b\\\\'c\"}");
  expect_ok("a=''", "{\"a\":\"\"}");
  expect_ok("a='\n'", "{\"a\":\"\\n\"}");
  /* No bare closing quote: the last escaped one closes. */
  expect_ok("a='x\\'", "{\"a\":\"x\\\\\"}");
  expect_ok("a='x\\'y\\'", "{\"a\":\"x'y\\\\\"}");
  expect_ok("a=b,'c,d'", "{\"a\":[\"b\",\"c,d\"]}");
  expect_error("a='bc", CLI_SHORTHAND_ERR_SYNTAX, 2,
               "Expected: '<singled quoted>', received: '<none>' for input:\na='bc\n  ^");
  expect_error("a=\"bc", CLI_SHORTHAND_ERR_SYNTAX, 2, NULL);
  expect_error("a='b'c", CLI_SHORTHAND_ERR_SYNTAX, 5, NULL);
}

static void test_lists(void **state) {
  (void)state;
  expect_ok("a=[]", "{\"a\":[]}");
  expect_ok("a=[ b , c ]", "{\"a\":[\"b\",\"c\"]}");
  expect_ok("a=[b,]", "{\"a\":[\"b\"]}");
  expect_ok("a=[,b]", "{\"a\":[\"\",\"b\"]}");
  expect_ok("a=[[b],[]]", "{\"a\":[[\"b\"],[]]}");
  expect_ok("a=[{k=v},{k=w}]", "{\"a\":[{\"k\":\"v\"},{\"k\":\"w\"}]}");
  expect_ok("a=[b=c]", "{\"a\":[\"b=c\"]}");
  expect_ok("a=[b],c=d", "{\"a\":[\"b\"],\"c\":\"d\"}");
  expect_error("a=[b", CLI_SHORTHAND_ERR_SYNTAX, 4,
               "Expected: ',', received: 'EOF' for input:\na=[b\n    ^");
  expect_error("a=[b}]", CLI_SHORTHAND_ERR_SYNTAX, 4, NULL);
}

static void test_hashes(void **state) {
  (void)state;
  expect_ok("EncryptionContextSubset={k1=v1,k2=v2}",
            "{\"EncryptionContextSubset\":{\"k1\":\"v1\",\"k2\":\"v2\"}}");
  expect_ok("a={}", "{\"a\":{}}");
  expect_ok("a={ b = c , }", "{\"a\":{\"b\":\"c\"}}");
  expect_ok("a={b=[c,d],e={f=g}}", "{\"a\":{\"b\":[\"c\",\"d\"],\"e\":{\"f\":\"g\"}}}");
  /* A repeated key inside a hash takes the later value. */
  expect_ok("a={b=c,b=d}", "{\"a\":{\"b\":\"d\"}}");
  expect_ok("a={b=c d}", "{\"a\":{\"b\":\"c d\"}}");
  expect_error("a={b}", CLI_SHORTHAND_ERR_SYNTAX, 4,
               "Expected: '=', received: '}' for input:\na={b}\n    ^");
  expect_error("a={b=c", CLI_SHORTHAND_ERR_SYNTAX, 6, NULL);
}

static void test_errors(void **state) {
  (void)state;
  expect_error("", CLI_SHORTHAND_ERR_SYNTAX, 0,
               "Expected: '=', received: 'EOF' for input:\n\n^");
  expect_error("a", CLI_SHORTHAND_ERR_SYNTAX, 1,
               "Expected: '=', received: 'EOF' for input:\na\n ^");
  expect_error("a==b", CLI_SHORTHAND_ERR_SYNTAX, 2,
               "Expected: ',', received: '=' for input:\na==b\n  ^");
  expect_error("a=b,", CLI_SHORTHAND_ERR_SYNTAX, 4,
               "Expected: '<second>', received: '<none>' for input:\na=b,\n    ^");
  /* The caret counts characters from the last newline; the rest of the
   * input follows the caret line. */
  expect_error("a=b,\nc==d\ne=f", CLI_SHORTHAND_ERR_SYNTAX, 7,
               "Expected: ',', received: '=' for input:\na=b,\nc==d\n  ^\ne=f");
  expect_error("\xc3\xa9=b", CLI_SHORTHAND_ERR_SYNTAX, 0,
               "Expected: '=', received: '\xc3\xa9' for input:\n\xc3\xa9=b\n^");
  expect_error("a=\xc3\xa9\xf0\x9f\x98\x80", CLI_SHORTHAND_ERR_SYNTAX, 4,
               "Expected: ',', received: '\xf0\x9f\x98\x80' for input:\n"
               "a=\xc3\xa9\xf0\x9f\x98\x80\n   ^");
}

static void test_duplicate_key(void **state) {
  (void)state;
  expect_error("a=b,a=c", CLI_SHORTHAND_ERR_DUPLICATE, 4,
               "Second instance of key \"a\" encountered for input:\na=b,a=c\n    ^\n"
               "This is often because there is a preceding \",\" instead of a space.");
  expect_error("TagKey=a,TagValue=b,TagKey=c,TagValue=d", CLI_SHORTHAND_ERR_DUPLICATE, 20,
               NULL);
  /* Case matters: A and a differ. */
  expect_ok("A=b,a=c", "{\"A\":\"b\",\"a\":\"c\"}");
}

/* The file-optional callback records each value it sees and replaces the
 * ones starting "file://". */
typedef struct seen {
  char values[8][32];
  int n;
  int fail;
} seen;

static kerr_code record(void *ctx, const char *value, size_t len, json_t **replacement, kerr *e) {
  seen *s = ctx;
  assert_int_equal(strlen(value), len);
  if (s->fail) return kerr_set(e, KERR_NOT_FOUND, "no such file");
  if (s->n < 8) snprintf(s->values[s->n++], sizeof s->values[0], "%s", value);
  if (strncmp(value, "file://", 7) == 0) *replacement = json_string("contents");
  return KERR_OK;
}

static void test_file_optional(void **state) {
  seen s = {0};
  json_t *out = NULL;
  cli_shorthand_error err;
  (void)state;
  assert_int_equal(cli_shorthand_parse("a@=file://x,b=file://y,c @= [p,'q'],d@=", record, &s,
                                       &out, &err),
                   KERR_OK);
  assert_int_equal(s.n, 3);
  assert_string_equal(s.values[0], "file://x");
  assert_string_equal(s.values[1], "p");
  assert_string_equal(s.values[2], "q");
  assert_string_equal(json_string_value(json_object_get(out, "a")), "contents");
  assert_string_equal(json_string_value(json_object_get(out, "b")), "file://y");
  json_decref(out);

  /* The flag follows the key read last. */
  memset(&s, 0, sizeof s);
  assert_int_equal(cli_shorthand_parse("a@=[{b=c},d],e=[{f@=g},h]", record, &s, &out, &err),
                   KERR_OK);
  assert_int_equal(s.n, 2);
  assert_string_equal(s.values[0], "g");
  assert_string_equal(s.values[1], "h");
  json_decref(out);

  /* A value dropped by backing up is never passed. */
  memset(&s, 0, sizeof s);
  assert_int_equal(cli_shorthand_parse("a@=b,c=d", record, &s, &out, &err), KERR_OK);
  assert_int_equal(s.n, 1);
  assert_string_equal(s.values[0], "b");
  json_decref(out);

  /* A failing callback fails the parse with its code and message. */
  s.fail = 1;
  out = (json_t *)1;
  assert_int_equal(cli_shorthand_parse("x=1,a@=file://nope", record, &s, &out, &err),
                   KERR_NOT_FOUND);
  assert_null(out);
  assert_int_equal(err.kind, CLI_SHORTHAND_ERR_FILE);
  assert_int_equal(err.offset, 7);
  assert_string_equal(err.status.msg, "no such file");
  cli_shorthand_error_free(&err);
}

static void test_limits_and_encoding(void **state) {
  size_t n = CLI_SHORTHAND_MAX_INPUT + 1;
  char *big = malloc(n + 1), deep[2 * CLI_SHORTHAND_MAX_DEPTH + 8];
  json_t *out;
  cli_shorthand_error err;
  size_t i = 0;
  (void)state;
  assert_non_null(big);
  memset(big, 'a', n);
  big[1] = '=';
  big[n] = '\0';
  assert_int_equal(cli_shorthand_parse(big, NULL, NULL, &out, &err), KERR_VALIDATION);
  assert_int_equal(err.kind, CLI_SHORTHAND_ERR_LIMIT);
  cli_shorthand_error_free(&err);
  big[n - 1] = '\0';
  assert_int_equal(cli_shorthand_parse(big, NULL, NULL, &out, &err), KERR_OK);
  assert_int_equal(json_string_length(json_object_get(out, "a")), n - 3);
  json_decref(out);
  free(big);

  deep[i++] = 'a';
  deep[i++] = '=';
  for (unsigned d = 0; d < CLI_SHORTHAND_MAX_DEPTH; d++) deep[i++] = '[';
  for (unsigned d = 0; d < CLI_SHORTHAND_MAX_DEPTH; d++) deep[i++] = ']';
  deep[i] = '\0';
  assert_int_equal(cli_shorthand_parse(deep, NULL, NULL, &out, &err), KERR_OK);
  json_decref(out);
  /* One level deeper: refused where the 65th bracket opens. */
  i = 2;
  for (unsigned d = 0; d <= CLI_SHORTHAND_MAX_DEPTH; d++) deep[i++] = '[';
  for (unsigned d = 0; d <= CLI_SHORTHAND_MAX_DEPTH; d++) deep[i++] = ']';
  deep[i] = '\0';
  expect_error(deep, CLI_SHORTHAND_ERR_LIMIT, 2 + CLI_SHORTHAND_MAX_DEPTH, NULL);

  expect_error("a=b\xff", CLI_SHORTHAND_ERR_ENCODING, 3, NULL);
  expect_error("a=\xc0\x80", CLI_SHORTHAND_ERR_ENCODING, 2, NULL);
  expect_error("a=\xed\xa0\x80", CLI_SHORTHAND_ERR_ENCODING, 2, NULL);
  expect_error("a=\xf4\x90\x80\x80", CLI_SHORTHAND_ERR_ENCODING, 2, NULL);
  expect_error("a=\xe6\x97", CLI_SHORTHAND_ERR_ENCODING, 2, NULL);
}

static void test_contract(void **state) {
  cli_shorthand_error err;
  json_t *out;
  (void)state;
  /* A NULL error is allowed on both paths. */
  assert_int_equal(cli_shorthand_parse("a=b", NULL, NULL, &out, NULL), KERR_OK);
  json_decref(out);
  assert_int_equal(cli_shorthand_parse("a", NULL, NULL, &out, NULL), KERR_VALIDATION);
  assert_null(out);
  assert_int_equal(cli_shorthand_parse("a=b", NULL, NULL, NULL, &err), KERR_INTERNAL);
  cli_shorthand_error_free(&err);
  cli_shorthand_error_free(NULL);
  /* Every result is one object of strings, lists and objects only. */
  assert_int_equal(cli_shorthand_parse("a=1,b=true,c=null", NULL, NULL, &out, &err), KERR_OK);
  assert_true(json_is_object(out));
  assert_true(json_is_string(json_object_get(out, "a")));
  assert_true(json_is_string(json_object_get(out, "b")));
  assert_true(json_is_string(json_object_get(out, "c")));
  json_decref(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_scalars_and_csv), cmocka_unit_test(test_whitespace),
      cmocka_unit_test(test_escapes),         cmocka_unit_test(test_quoted),
      cmocka_unit_test(test_lists),           cmocka_unit_test(test_hashes),
      cmocka_unit_test(test_errors),          cmocka_unit_test(test_duplicate_key),
      cmocka_unit_test(test_file_optional),   cmocka_unit_test(test_limits_and_encoding),
      cmocka_unit_test(test_contract),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
