/* test_jmespath.c - lib/cli/jmespath: every construct, every built-in
 * function, every kind of error, the caps that keep a hostile expression
 * from crashing or hanging the kms tool, and who owns what. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/jmespath.h"

/* A document most cases search: a small list of keys as `kms list-keys`
 * might print it, plus values of every JSON type. */
static const char *const doc_text =
    "{\"Keys\": [{\"KeyId\": \"k1\", \"Enabled\": true, \"Size\": 256, \"Tags\": [\"a\", \"b\"]},"
    "          {\"KeyId\": \"k2\", \"Enabled\": false, \"Size\": 128, \"Tags\": []},"
    "          {\"KeyId\": \"k3\", \"Enabled\": true, \"Size\": 384.5}],"
    " \"Truncated\": false, \"Marker\": null, \"Count\": 3, \"Name\": \"kmsd\","
    " \"Nested\": [[1, 2], [3, [4, 5]], 6, null],"
    " \"Map\": {\"x\": 1, \"y\": 2, \"z\": 3}, \"Empty\": {}, \"None\": []}";

static json_t *parse(const char *text) {
  json_error_t jerr;
  json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
  if (!v) fail_msg("bad test JSON %s: %s", text, jerr.text);
  return v;
}

/* Search `expr` in `data` (JSON text) and compare the compact JSON of the
 * result with `want` (itself compact JSON, keys in the order produced). */
static void expect_on(const char *expr, const char *data, const char *want) {
  jmes_expr *e = NULL;
  jmes_error err;
  json_t *doc = parse(data), *got = NULL;
  char *text;
  if (jmes_compile(expr, &e, &err) != KERR_OK) fail_msg("%s: compile: %s", expr, err.status.msg);
  if (jmes_search(e, doc, &got, &err) != KERR_OK) fail_msg("%s: search: %s", expr, err.status.msg);
  text = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);
  if (strcmp(text, want) != 0) fail_msg("%s: got %s, want %s", expr, text, want);
  free(text);
  json_decref(got);
  json_decref(doc);
  jmes_free(e);
}

static void expect(const char *expr, const char *want) { expect_on(expr, doc_text, want); }

/* `expr` must fail, at compile or search time, with `kind`. */
static void expect_error_on(const char *expr, const char *data, jmes_error_kind kind) {
  jmes_expr *e = NULL;
  jmes_error err;
  json_t *doc = parse(data), *got = NULL;
  kerr_code rc = jmes_compile(expr, &e, &err);
  if (rc == KERR_OK) {
    rc = jmes_search(e, doc, &got, &err);
    assert_null(rc == KERR_OK ? NULL : got);
  } else {
    assert_null(e);
  }
  if (rc == KERR_OK) fail_msg("%s: no error, want %s", expr, jmes_error_kind_name(kind));
  if (err.kind != kind)
    fail_msg("%s: error %s (%s), want %s", expr, jmes_error_kind_name(err.kind), err.status.msg,
             jmes_error_kind_name(kind));
  assert_true(err.status.msg[0] != '\0');
  assert_int_equal(rc, err.status.code);
  json_decref(got);
  json_decref(doc);
  jmes_free(e);
}

/* `expr` must run out of a small work budget: what the default budget would
 * also refuse, only sooner (the tests run under valgrind too). */
static void expect_out_of_work(const char *expr, const char *data) {
  jmes_expr *e = NULL;
  jmes_error err;
  json_t *doc = parse(data), *got = NULL;
  assert_int_equal(jmes_compile(expr, &e, &err), KERR_OK);
  assert_int_equal(jmes_search_bounded(e, doc, 200000, &got, &err), KERR_VALIDATION);
  assert_null(got);
  assert_int_equal(err.kind, JMES_ERR_RESOURCE);
  json_decref(doc);
  jmes_free(e);
}

static void expect_error(const char *expr, jmes_error_kind kind) {
  expect_error_on(expr, doc_text, kind);
}

/* ---- expressions ------------------------------------------------------- */

static void test_fields_and_subexpressions(void **state) {
  (void)state;
  expect("Name", "\"kmsd\"");
  expect("Missing", "null");
  expect("Map.y", "2");
  expect("Map.y.deeper", "null");
  expect("Name.length", "null"); /* a field of a string is null */
  expect("\"Name\"", "\"kmsd\"");
  expect_on("\"with space\".\"a.b\"", "{\"with space\": {\"a.b\": 1}}", "1");
  expect_on("\"\\u00e9t\\u00e9\"", "{\"\xc3\xa9t\xc3\xa9\": \"summer\"}", "\"summer\"");
  expect_on("\"\\ud83d\\ude00\"", "{\"\xf0\x9f\x98\x80\": 1}", "1");
  expect_on("\"tab\\there\"", "{\"tab\\there\": 2}", "2");
  expect("@", "{\"Keys\":[{\"KeyId\":\"k1\",\"Enabled\":true,\"Size\":256,\"Tags\":[\"a\",\"b\"]},"
              "{\"KeyId\":\"k2\",\"Enabled\":false,\"Size\":128,\"Tags\":[]},"
              "{\"KeyId\":\"k3\",\"Enabled\":true,\"Size\":384.5}],"
              "\"Truncated\":false,\"Marker\":null,\"Count\":3,\"Name\":\"kmsd\","
              "\"Nested\":[[1,2],[3,[4,5]],6,null],"
              "\"Map\":{\"x\":1,\"y\":2,\"z\":3},\"Empty\":{},\"None\":[]}");
  expect("@.Map | @.x", "1");
}

static void test_indexes_and_slices(void **state) {
  (void)state;
  expect("Keys[0].KeyId", "\"k1\"");
  expect("Keys[-1].KeyId", "\"k3\"");
  expect("Keys[3]", "null");
  expect("Keys[-4]", "null");
  expect("Map[0]", "null");
  expect_on("[0]", "[\"a\"]", "\"a\"");
  expect_on("[99999999999999999999999]", "[\"a\"]", "null");
  const char *ten = "[0,1,2,3,4,5,6,7,8,9]";
  expect_on("[:]", ten, "[0,1,2,3,4,5,6,7,8,9]");
  expect_on("[2:5]", ten, "[2,3,4]");
  expect_on("[::3]", ten, "[0,3,6,9]");
  expect_on("[::-1]", ten, "[9,8,7,6,5,4,3,2,1,0]");
  expect_on("[-3:]", ten, "[7,8,9]");
  expect_on("[7:2:-2]", ten, "[7,5,3]");
  expect_on("[-100:100]", ten, "[0,1,2,3,4,5,6,7,8,9]");
  expect_on("[100:-100:-4]", ten, "[9,5,1]");
  expect_on("[5:1]", ten, "[]");
  expect_on("[0:10:99999999999999999999]", ten, "[0]");
  expect_on("[1:3]", "\"a string\"", "null");
  /* A slice is a projection: what follows applies to each element. */
  expect("Keys[:2].KeyId", "[\"k1\",\"k2\"]");
  expect_error("Keys[::0]", JMES_ERR_INVALID_VALUE);
}

static void test_projections(void **state) {
  (void)state;
  expect("Keys[*].KeyId", "[\"k1\",\"k2\",\"k3\"]");
  expect("Keys[*].Tags[0]", "[\"a\"]"); /* nulls are dropped */
  expect("Keys[*].Tags", "[[\"a\",\"b\"],[]]");
  expect("Map.*", "[1,2,3]");
  expect("*.x", "[1]");
  expect("Map.*.x", "[]");
  expect("Name[*]", "null");
  expect("Name.*", "null");
  expect("Nested[]", "[1,2,3,[4,5],6]");
  expect("Nested[][]", "[1,2,3,4,5,6]");
  expect("Keys[].Tags[]", "[\"a\",\"b\"]");
  expect("Keys[*].Tags[*]", "[[\"a\",\"b\"],[]]");
  expect("Name[]", "null");
  /* A pipe stops a projection; an index after it applies to the whole. */
  expect("Keys[*].KeyId | [0]", "\"k1\"");
  expect("Keys[*].KeyId[0]", "[]");
  expect("Keys[*].[KeyId, Size]", "[[\"k1\",256],[\"k2\",128],[\"k3\",384.5]]");
  expect("Keys[*].{id: KeyId}", "[{\"id\":\"k1\"},{\"id\":\"k2\"},{\"id\":\"k3\"}]");
}

static void test_filters(void **state) {
  (void)state;
  expect("Keys[?Enabled].KeyId", "[\"k1\",\"k3\"]");
  expect("Keys[?!Enabled].KeyId", "[\"k2\"]");
  expect("Keys[?Size > `200`].KeyId", "[\"k1\",\"k3\"]");
  expect("Keys[?Size >= `256`].KeyId", "[\"k1\",\"k3\"]");
  expect("Keys[?Size < `256`].KeyId", "[\"k2\"]");
  expect("Keys[?Size <= `256`].KeyId", "[\"k1\",\"k2\"]");
  expect("Keys[?Size == `384.5`].KeyId", "[\"k3\"]");
  expect("Keys[?Size != `256`].KeyId", "[\"k2\",\"k3\"]");
  expect("Keys[?KeyId == 'k2'].Size", "[128]");
  expect("Keys[?Enabled && Size > `300`].KeyId", "[\"k3\"]");
  expect("Keys[?!Enabled || Size > `300`].KeyId", "[\"k2\",\"k3\"]");
  expect("Keys[?Tags].KeyId", "[\"k1\"]"); /* [] and missing are false */
  expect("Keys[?contains(Tags || `[]`, 'b')].KeyId", "[\"k1\"]");
  expect("Keys[?KeyId > 'k1'].KeyId", "[]"); /* strings have no order */
  expect("Nested[?@ == `6`]", "[6]");
  expect("Map[?x]", "null");
  expect_on("[?a][]", "[{\"a\": [1]}, {\"a\": 0}]", "[{\"a\":[1]},{\"a\":0}]");
}

static void test_pipes_and_booleans(void **state) {
  (void)state;
  expect("Map | y", "2");
  expect("Keys | [1] | KeyId", "\"k2\"");
  expect("Missing || Name", "\"kmsd\"");
  expect("Truncated || Empty || None || Count", "3");
  expect("Marker || Missing", "null");
  expect("Count && Name", "\"kmsd\"");
  expect("None && Name", "[]");
  expect("!Count", "false");
  expect("!Empty", "true");
  expect("!!Name", "true");
  expect("(Missing || Map).x", "1");
  expect("Count == `3`", "true");
  expect("Count == `3.0`", "true"); /* numbers compare by value */
  expect("Truncated == `0`", "false"); /* but booleans are not numbers */
  expect("Map == `{\"z\": 3, \"y\": 2, \"x\": 1}`", "true");
  expect("Keys[0].Tags == `[\"a\", \"b\"]`", "true");
  expect("Keys[0].Tags != `[\"b\", \"a\"]`", "true");
  expect("Name < `5`", "null");
  expect("`1` < `2` == `true`", "true");
  expect("Count > `2.5`", "true");
}

static void test_multiselect_and_literals(void **state) {
  (void)state;
  expect("[Name, Count, Missing]", "[\"kmsd\",3,null]");
  expect("{n: Name, c: Count, \"quoted key\": Map.x}", "{\"n\":\"kmsd\",\"c\":3,\"quoted key\":1}");
  expect("{a: Name, a: Count}", "{\"a\":3}");
  expect("Missing.[a, b]", "null");
  expect("Missing.{a: a}", "null");
  expect("[[Name], {c: Count}]", "[[\"kmsd\"],{\"c\":3}]");
  expect("`[1, {\"a\": null}]`", "[1,{\"a\":null}]");
  expect("`\"text\"`", "\"text\"");
  expect("`  true  `", "true");
  expect("`2.5`", "2.5");
  expect("`12345678901234567890123`", "1.2345678901234568e22");
  expect("`legacy`", "\"legacy\"");       /* the old unquoted form */
  expect("`a\\`b`", "\"a`b\"");           /* an escaped backtick */
  expect("``", "\"\"");
  expect("'raw'", "\"raw\"");
  expect("'it\\'s'", "\"it's\"");
  expect("'c:\\dir\\n'", "\"c:\\\\dir\\\\n\""); /* other backslashes stay */
  expect("''", "\"\"");
  expect("'\xe2\x9c\x93'", "\"\xe2\x9c\x93\"");
}

/* ---- functions --------------------------------------------------------- */

static void test_number_functions(void **state) {
  (void)state;
  expect("abs(`-3`)", "3");
  expect("abs(`-2.5`)", "2.5");
  expect("abs(`-9223372036854775808`)", "9.2233720368547758e18");
  expect("ceil(`1.2`)", "2");
  expect("ceil(`-1.2`)", "-1");
  expect("ceil(`4`)", "4");
  expect("floor(`1.8`)", "1");
  expect("floor(`-1.2`)", "-2");
  expect("floor(`1e300`)", "1.0000000000000001e300");
  expect("sum(Keys[*].Size)", "768.5");
  expect("sum(`[1, 2, 3]`)", "6");
  expect("sum(`[]`)", "0");
  expect("sum(`[9223372036854775807, 1]`)", "9.2233720368547758e18");
  expect("avg(`[1, 2, 3, 4]`)", "2.5");
  expect("avg(`[2, 4]`)", "3.0");
  expect("avg(`[]`)", "null");
}

/* JSON has no infinity: a number function whose result would not be finite
 * fails with invalid-value (a validation error about the data), not as if
 * memory had run out. */
static void expect_not_finite(const char *expr) {
  jmes_expr *e = NULL;
  jmes_error err;
  json_t *doc = parse(doc_text), *got = NULL;
  assert_int_equal(jmes_compile(expr, &e, &err), KERR_OK);
  if (jmes_search(e, doc, &got, &err) != KERR_VALIDATION || err.kind != JMES_ERR_INVALID_VALUE)
    fail_msg("%s: want invalid-value, got %s (%s)", expr, jmes_error_kind_name(err.kind), err.status.msg);
  assert_null(got);
  assert_non_null(strstr(err.status.msg, "double"));
  json_decref(doc);
  jmes_free(e);
}

/* An integer and a real compare by their exact values, as in Python: 2^53 + 1
 * is not 2^53 although both round to the same double. */
static void test_mixed_number_comparison(void **state) {
  (void)state;
  expect("`9007199254740993` == `9007199254740992.0`", "false");
  expect("`9007199254740993` != `9007199254740992.0`", "true");
  expect("`9007199254740993` > `9007199254740992.0`", "true");
  expect("`9007199254740993` >= `9007199254740992.0`", "true");
  expect("`9007199254740992.0` < `9007199254740993`", "true");
  expect("`9007199254740992.0` <= `9007199254740993`", "true");
  expect("`9007199254740992` == `9007199254740992.0`", "true");
  expect("`9223372036854775807` < `9223372036854775808.0`", "true");
  expect("`-9223372036854775808` == `-9223372036854775808.0`", "true");
  expect("`-9223372036854775808` > `-1e19`", "true");
  expect("`2` > `1.5`", "true");
  expect("`1` < `1.5`", "true");
  expect("`-2` < `-1.5`", "true");
  expect("`-1` > `-1.5`", "true");
  expect("`[9007199254740993]` == `[9007199254740992.0]`", "false");
  expect("sort(`[9007199254740993, 9007199254740992.0, 9007199254740992]`)",
         "[9007199254740992.0,9007199254740992,9007199254740993]");
  expect("max(`[9007199254740992.0, 9007199254740993]`)", "9007199254740993");
  expect("min(`[9007199254740993, 9007199254740992.0]`)", "9007199254740992.0");
  expect("contains(`[9007199254740993]`, `9007199254740992.0`)", "false");
}

static void test_number_overflow(void **state) {
  (void)state;
  expect_not_finite("sum(`[1e308, 1e308]`)");
  expect_not_finite("sum(`[-1e308, -1e308]`)");
  expect_not_finite("sum(`[9223372036854775807, 1e308, 1e308]`)");
  expect_not_finite("avg(`[1e308, 1e308]`)");
  expect_not_finite("avg(`[1e308, 1e308, -1e308]`)"); /* added left to right, as Python does */
  expect_not_finite("to_number('1e999')");
  expect_not_finite("to_number('-1e999')");
  /* What stays finite still works at the edges. */
  expect("sum(`[1e308, -1e308, 1e308]`)", "1e308");
  expect("max(`[1e308, 1.7976931348623157e308]`)", "1.7976931348623157e308");
  expect("abs(`-1.7976931348623157e308`)", "1.7976931348623157e308");
  expect("ceil(`1.7976931348623157e308`)", "1.7976931348623157e308");
  expect("floor(`-1.7976931348623157e308`)", "-1.7976931348623157e308");
  expect("to_number('1e308')", "1e308");
  expect("max(`[3, 1.5, 7]`)", "7");
  expect("min(`[3, 1.5, 7]`)", "1.5");
  expect("max(`[\"b\", \"c\", \"a\"]`)", "\"c\"");
  expect("min(`[\"b\", \"c\", \"a\"]`)", "\"a\"");
  expect("max(`[]`)", "null");
  expect("min(None)", "null");
  expect_error("abs(Name)", JMES_ERR_INVALID_TYPE);
  expect_error("ceil(`true`)", JMES_ERR_INVALID_TYPE);
  expect_error("floor(Marker)", JMES_ERR_INVALID_TYPE);
  expect_error("sum(`[1, \"2\"]`)", JMES_ERR_INVALID_TYPE);
  expect_error("avg(Map)", JMES_ERR_INVALID_TYPE);
  expect_error("max(`[1, \"a\"]`)", JMES_ERR_INVALID_TYPE);
  expect_error("min(`[true]`)", JMES_ERR_INVALID_TYPE);
}

static void test_string_functions(void **state) {
  (void)state;
  expect("starts_with(Name, 'km')", "true");
  expect("starts_with(Name, 'sd')", "false");
  expect("starts_with(Name, '')", "true");
  expect("ends_with(Name, 'sd')", "true");
  expect("ends_with(Name, 'kmsdx')", "false");
  expect("contains(Name, 'ms')", "true");
  expect("contains(Name, 'x')", "false");
  expect("contains(Name, '')", "true");
  expect("contains(Name, `1`)", "false");
  expect("contains(Keys[0].Tags, 'b')", "true");
  expect("contains(`[1, [2]]`, `[2]`)", "true");
  expect("contains(`[1.0]`, `1`)", "true");
  expect("join(', ', Keys[*].KeyId)", "\"k1, k2, k3\"");
  expect("join('', `[]`)", "\"\"");
  expect("length(Name)", "4");
  expect("length('\xc3\xa9t\xc3\xa9')", "3"); /* code points, not bytes */
  expect("length(Keys)", "3");
  expect("length(Map)", "3");
  expect("reverse('abc')", "\"cba\"");
  expect("reverse('a\xc3\xa9\xf0\x9f\x98\x80')", "\"\xf0\x9f\x98\x80\xc3\xa9" "a\"");
  expect("reverse(Keys[*].KeyId)", "[\"k3\",\"k2\",\"k1\"]");
  expect_error("starts_with(Count, 'a')", JMES_ERR_INVALID_TYPE);
  expect_error("ends_with(Name, `1`)", JMES_ERR_INVALID_TYPE);
  expect_error("contains(Count, `1`)", JMES_ERR_INVALID_TYPE);
  expect_error("join(`1`, `[\"a\"]`)", JMES_ERR_INVALID_TYPE);
  expect_error("join(',', Keys[*].Size)", JMES_ERR_INVALID_TYPE);
  expect_error("length(Count)", JMES_ERR_INVALID_TYPE);
  expect_error("reverse(Map)", JMES_ERR_INVALID_TYPE);
}

static void test_object_and_conversion_functions(void **state) {
  (void)state;
  expect("keys(Map)", "[\"x\",\"y\",\"z\"]");
  expect("values(Map)", "[1,2,3]");
  expect("keys(Empty)", "[]");
  expect("merge(Map, `{\"y\": 20, \"w\": 0}`)", "{\"x\":1,\"y\":20,\"z\":3,\"w\":0}");
  expect("merge(Empty)", "{}");
  expect("not_null(Missing, Marker, Name)", "\"kmsd\"");
  expect("not_null(Missing, Marker)", "null");
  expect("to_array(Name)", "[\"kmsd\"]");
  expect("to_array(Keys[0].Tags)", "[\"a\",\"b\"]");
  expect("to_array(Marker)", "[null]");
  expect("to_number('42')", "42");
  expect("to_number('-1.5e2')", "-150.0");
  expect("to_number('1.0')", "1.0");
  expect("to_number(Count)", "3");
  expect("to_number('12abc')", "null");
  expect("to_number('')", "null");
  expect("to_number('01')", "null");
  expect("to_number('99999999999999999999')", "1e20");
  /* As jmespath.h documents: an integer beyond int64 becomes a real, and
   * to_string keeps non-ASCII text as UTF-8 rather than escaping it. */
  expect("`99999999999999999999`", "1e20");
  expect("type(`99999999999999999999`)", "\"number\"");
  expect_on("to_string(@)", "[\"\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80\"]", "\"[\\\"\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80\\\"]\"");
  expect("to_number(Map)", "null");
  expect("to_string(Name)", "\"kmsd\"");
  expect("to_string(Count)", "\"3\"");
  expect("to_string(Keys[2])", "\"{\\\"KeyId\\\":\\\"k3\\\",\\\"Enabled\\\":true,\\\"Size\\\":384.5}\"");
  expect("to_string(`[1.5, 0.1, 1e21, 100.0, 1e-7, null, \"q\\\"\\n\"]`)",
         "\"[1.5,0.1,1e+21,100.0,1e-07,null,\\\"q\\\\\\\"\\\\n\\\"]\"");
  expect("to_string(`-0.0`)", "\"-0.0\"");
  expect("type(Name)", "\"string\"");
  expect("type(Count)", "\"number\"");
  expect("type(Keys[2].Size)", "\"number\"");
  expect("type(Truncated)", "\"boolean\"");
  expect("type(Marker)", "\"null\"");
  expect("type(Keys)", "\"array\"");
  expect("type(Map)", "\"object\"");
  expect_error("keys(Keys)", JMES_ERR_INVALID_TYPE);
  expect_error("values(Name)", JMES_ERR_INVALID_TYPE);
  expect_error("merge(Map, Keys)", JMES_ERR_INVALID_TYPE);
  /* Every argument of a variadic function is checked against its own entry
   * of the signature, however many there are. */
  expect_error("merge(Map, Map, Map, Keys)", JMES_ERR_INVALID_TYPE);
  expect_error("merge(Map, Map, &Map)", JMES_ERR_INVALID_TYPE);
  expect_error("not_null(Marker, Marker, &Name)", JMES_ERR_INVALID_TYPE);
  expect("merge(Map, Empty, `{\"w\": 0}`).w", "0");
}

static void test_sorting_and_expression_references(void **state) {
  (void)state;
  expect("sort(`[3, 1.5, 2]`)", "[1.5,2,3]");
  expect("sort(`[\"b\", \"a\", \"B\"]`)", "[\"B\",\"a\",\"b\"]");
  expect("sort(`[]`)", "[]");
  expect("sort_by(Keys, &Size)[*].KeyId", "[\"k2\",\"k1\",\"k3\"]");
  expect("sort_by(Keys, &KeyId)[*].KeyId", "[\"k1\",\"k2\",\"k3\"]");
  expect("sort_by(`[{\"a\": 1, \"i\": 0}, {\"a\": 0, \"i\": 1}, {\"a\": 1, \"i\": 2}, {\"a\": 0, \"i\": 3}]`, &a)[*].i",
         "[1,3,0,2]"); /* stable */
  expect("max_by(Keys, &Size).KeyId", "\"k3\"");
  expect("min_by(Keys, &Size).KeyId", "\"k2\"");
  expect("max_by(Keys, &KeyId).KeyId", "\"k3\"");
  expect("min_by(`[]`, &a)", "null");
  expect("map(&KeyId, Keys)", "[\"k1\",\"k2\",\"k3\"]");
  expect("map(&Tags[0], Keys)", "[\"a\",null,null]"); /* map keeps nulls */
  expect("map(&(Size > `200`), Keys)", "[true,false,true]");
  expect("map(&[], Nested)", "[[1,2],[3,4,5],null,null]");
  expect("Keys[*].to_string(Size)", "[\"256\",\"128\",\"384.5\"]");
  expect("&Name", "null"); /* a reference has no JSON value of its own */
  expect_error("sort(`[1, \"a\"]`)", JMES_ERR_INVALID_TYPE);
  expect_error("sort(Map)", JMES_ERR_INVALID_TYPE);
  expect_error("sort_by(Keys, &Tags)", JMES_ERR_INVALID_TYPE);
  expect_error("sort_by(Keys, &Tags[0])", JMES_ERR_INVALID_TYPE);
  expect_error("sort_by(Keys, KeyId)", JMES_ERR_INVALID_TYPE);
  expect_error("max_by(Keys, &Enabled)", JMES_ERR_INVALID_TYPE);
  expect_error("min_by(Map, &x)", JMES_ERR_INVALID_TYPE);
  expect_error("map(KeyId, Keys)", JMES_ERR_INVALID_TYPE);
  expect_error("map(&KeyId, Map)", JMES_ERR_INVALID_TYPE);
  expect_error("length(&Name)", JMES_ERR_INVALID_TYPE);
}

/* ---- errors ------------------------------------------------------------ */

static void test_syntax_errors(void **state) {
  static const char *const bad[] = {
      "", " ", "foo.", ".foo", "foo..bar", "foo[", "foo]", "foo[0", "foo[a]", "foo[0, 1]",
      "[:::]", "[1:2:3:4]", "[1 2]", "{", "{a}", "{a:}", "{a: b,}", "{1: a}", "a{b: c}", "[a,]",
      "[,]", "(a", "a)", "()", "!", "a ||", "|| a", "a | | b", "a = b", "a <> b", "a ^ b",
      "\"unterminated", "'unterminated", "`unterminated", "`{\"a\": \"b`", "`\"a\" x`",
      "\"\\q\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00x\"", "foo.`1`", "foo.'raw'", "foo.@",
      "\"f\"(a)", "@(a)", "f(a b)", "f(a,)", "abs(,)", "a.1", "-", "-a", "#", "a[?]", "a[? b",
      "foo[*]bar", "*foo", "a.(b)", "a b", "&", "a[]b", "\xff\xfe",
  };
  (void)state;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) expect_error(bad[i], JMES_ERR_SYNTAX);
}

static void test_syntax_error_message_names_position(void **state) {
  jmes_expr *e = (jmes_expr *)(uintptr_t)1;
  jmes_error err;
  (void)state;
  assert_int_equal(jmes_compile("Keys[0", &e, &err), KERR_VALIDATION);
  assert_null(e);
  assert_int_equal(err.kind, JMES_ERR_SYNTAX);
  assert_int_equal(err.offset, 6);
  assert_non_null(strstr(err.status.msg, "Bad jmespath expression:"));
  assert_non_null(strstr(err.status.msg, "']'"));
  assert_non_null(strstr(err.status.msg, "offset 6"));
  assert_string_equal(jmes_error_kind_name(err.kind), "syntax");
  assert_int_equal(jmes_compile(NULL, &e, &err), KERR_VALIDATION);
  assert_int_equal(err.kind, JMES_ERR_SYNTAX);
}

static void test_function_errors(void **state) {
  (void)state;
  expect_error("nope(Name)", JMES_ERR_UNKNOWN_FUNCTION);
  expect_error("Keys[*].nope(@)", JMES_ERR_UNKNOWN_FUNCTION);
  expect_error("Missing || nope()", JMES_ERR_UNKNOWN_FUNCTION); /* found before searching */
  expect_error("abs()", JMES_ERR_INVALID_ARITY);
  expect_error("abs(`1`, `2`)", JMES_ERR_INVALID_ARITY);
  expect_error("merge()", JMES_ERR_INVALID_ARITY);
  expect_error("not_null()", JMES_ERR_INVALID_ARITY);
  expect_error("sort_by(Keys)", JMES_ERR_INVALID_ARITY);
  expect_error("map(&a)", JMES_ERR_INVALID_ARITY);
  expect_error("type(`1`, `2`, `3`, `4`)", JMES_ERR_INVALID_ARITY);
  expect_error("[::0]", JMES_ERR_INVALID_VALUE);
  assert_string_equal(jmes_error_kind_name(JMES_ERR_INVALID_TYPE), "invalid-type");
  assert_string_equal(jmes_error_kind_name(JMES_ERR_INVALID_VALUE), "invalid-value");
  assert_string_equal(jmes_error_kind_name(JMES_ERR_INVALID_ARITY), "invalid-arity");
  assert_string_equal(jmes_error_kind_name(JMES_ERR_UNKNOWN_FUNCTION), "unknown-function");
  assert_string_equal(jmes_error_kind_name(JMES_ERR_RESOURCE), "resource");
  assert_string_equal(jmes_error_kind_name(JMES_ERR_NONE), "none");
}

/* ---- limits ------------------------------------------------------------ */

static char *repeat(const char *head, const char *unit, size_t n, const char *tail) {
  size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
  char *s = malloc(hl + ul * n + tl + 1), *p = s;
  assert_non_null(s);
  memcpy(p, head, hl);
  p += hl;
  for (size_t i = 0; i < n; i++, p += ul) memcpy(p, unit, ul);
  memcpy(p, tail, tl + 1);
  return s;
}

static void test_long_expression_is_refused(void **state) {
  char *s = repeat("", "a", JMES_EXPR_MAX + 1, "");
  (void)state;
  expect_error(s, JMES_ERR_RESOURCE);
  free(s);
  /* At the cap it is fine. */
  s = repeat("", "a", JMES_EXPR_MAX, "");
  expect("Name", "\"kmsd\""); /* keep the document parsed once more */
  expect_on(s, "{}", "null");
  free(s);
}

static void test_deep_nesting_is_refused(void **state) {
  static const char *const units[][3] = {
      {"", "(", "a"},    {"", "!", "a"},      {"", "[", "a"},   {"a", ".a", ""},
      {"a", "|a", ""},   {"a", "||a", ""},    {"", "{a:", "a"}, {"a", "[0]", ""},
      {"a", "[*]", ""},  {"", "&", "a"},      {"", "abs(", "a"}, {"a", "[?a", ""},
      {"a", " == a", ""}, {"a", "[]", ""},
  };
  (void)state;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    jmes_expr *e = NULL;
    jmes_error err;
    char *s = repeat(units[i][0], units[i][1], 12000, units[i][2]);
    kerr_code rc = jmes_compile(s, &e, &err);
    assert_int_not_equal(rc, KERR_OK);
    assert_null(e);
    assert_true(err.kind == JMES_ERR_RESOURCE || err.kind == JMES_ERR_SYNTAX);
    free(s);
  }
  /* Nesting below the cap compiles and runs. */
  char *ok = repeat("", "(", 100, "Name");
  char *closed = repeat(ok, ")", 100, "");
  expect(closed, "\"kmsd\"");
  free(ok);
  free(closed);
  ok = repeat("Map", ".x", 100, "");
  expect(ok, "null");
  free(ok);
}

static void test_exponential_work_is_stopped(void **state) {
  char *doubling = repeat("[@,@]", "|[@,@]", 40, "");
  char *flattened = repeat(doubling, "[]", 40, "");
  char *query = malloc(strlen(doubling) * 2 + 64);
  char *hay, *needle, *doc;
  (void)state;
  assert_non_null(query);
  /* The doubled value shares its halves: building it is cheap, but walking,
   * writing or comparing it is not, and the caps say so instead of hanging. */
  expect_out_of_work(doubling, "{}");
  expect_out_of_work(flattened, "{}");
  sprintf(query, "length(to_string(%s))", doubling);
  expect_out_of_work(query, "{}");
  sprintf(query, "(%s) == (%s) && `1`", doubling, doubling);
  expect_out_of_work(query, "{}");
  sprintf(query, "sort_by(%s, &to_string(@))", doubling);
  expect_out_of_work(query, "{}");
  free(query);
  free(flattened);
  free(doubling);
  /* A substring search that would take quadratic time runs out of work. */
  hay = repeat("{\"h\": \"", "a", 40000, "\", ");
  needle = repeat("\"n\": \"", "a", 20000, "b\"}");
  doc = malloc(strlen(hay) + strlen(needle) + 1);
  assert_non_null(doc);
  strcpy(doc, hay);
  strcat(doc, needle);
  expect_out_of_work("contains(h, n)", doc);
  expect_on("contains(h, 'aab')", doc, "false");
  free(doc);
  free(needle);
  free(hay);
}

/* Pieces of expressions whose work grows with string length rather than
 * with the number of values: E8 is eight empty strings, X makes eight
 * references to each element, S64K joins 4096 of them into a 65,520-byte
 * string, and S64K_COPY is another string object with the same text. */
#define E8 "`[\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\"]`"
#define X "[@,@,@,@,@,@,@,@][]"
#define S64K "join('aaaaaaaaaaaaaaaa', " E8 "|" X "|" X "|" X ")"
#define S64K_COPY "join('', [" S64K "])"

static void test_string_work_is_charged(void **state) {
  jmes_expr *e = NULL;
  jmes_error err;
  json_t *doc = parse("{}"), *got = NULL;
  (void)state;
  /* A 277-byte expression that builds a 67 MB string and has max() compare
   * 4096 references to it; it ran for a minute when every comparison cost
   * one unit and read all 67 MB.  A string compared with itself is now not
   * read, so what is left (building the string once, length() scanning it
   * once, about 2.2M units) fits the default budget and the answer comes. */
  assert_int_equal(jmes_compile("join(join('aaaaaaaaaaaaaaaa', " E8 "|" X "|" X "|" X "), " E8 "|" X "|" X
                                "|[@,@][]) | [@,@,@,@,@,@,@,@]|" X "|" X "|" X " | max(@) | length(@)",
                                &e, &err),
                   KERR_OK);
  assert_int_equal(jmes_search(e, doc, &got, &err), KERR_OK);
  assert_int_equal(json_integer_value(got), 1023 * 65520);
  json_decref(got);
  jmes_free(e);
  json_decref(doc);
  /* Each way of touching the bytes of a long string costs by its length:
   * comparing two different string objects (ordering and equality), scanning
   * one (length, contains, starts_with, ends_with) and copying one
   * (to_string). */
  expect_out_of_work("[" S64K ", join('', [" S64K ", 'b'])] | " X "|" X "|" X " | max(@)", "{}");
  expect_out_of_work("[" S64K ", join('', [" S64K ", 'b'])] | " X "|" X "|" X " | sort(@) | length(@)", "{}");
  expect_out_of_work("[" S64K ", join('', [" S64K ", 'b'])] | " X "|" X "|" X " | sort_by(@, &@) | length(@)",
                     "{}");
  expect_out_of_work("[" S64K ", join('', [" S64K ", 'b'])] | " X "|" X "|" X " | min_by(@, &@) | length(@)",
                     "{}");
  expect_out_of_work("[[" S64K ", " S64K_COPY "]] | " X "|" X "|" X " | map(&(@[0] == @[1]), @)", "{}");
  expect_out_of_work("[" S64K "] | " X "|" X "|" X " | map(&length(@), @)", "{}");
  expect_out_of_work("[" S64K "] | " X "|" X "|" X " | map(&contains(@, 'b'), @)", "{}");
  expect_out_of_work("[[" S64K ", " S64K_COPY "]] | " X "|" X "|" X " | map(&starts_with(@[0], @[1]), @)", "{}");
  expect_out_of_work("[[" S64K ", " S64K_COPY "]] | " X "|" X "|" X " | map(&ends_with(@[0], @[1]), @)", "{}");
  expect_out_of_work("[" S64K "] | " X "|" X "|" X " | map(&to_string([@]), @) | length(@)", "{}");
  expect_out_of_work("[" S64K "] | " X "|" X "|" X " | map(&reverse(@), @) | length(@)", "{}");
  /* The same string object compared with itself costs nothing more. */
  expect_on("[" S64K "] | " X "|" X "|" X " | [max(@), min(@), sort(@)[0]] | map(&length(@), @)", "{}",
            "[65520,65520,65520]");
  expect_on(S64K_COPY " == " S64K, "{}", "true");
}

/* Search `expr` in {} allowing `max_build` bytes of built strings: want
 * KERR_OK, or a RESOURCE error when `refused`. */
static void expect_build(const char *expr, size_t max_build, int refused) {
  jmes_expr *e = NULL;
  jmes_error err;
  jmes_limits limits = {0, max_build};
  json_t *doc = parse("{}"), *got = NULL;
  kerr_code rc;
  assert_int_equal(jmes_compile(expr, &e, &err), KERR_OK);
  rc = jmes_search_limited(e, doc, &limits, &got, &err);
  if (refused && rc == KERR_OK) fail_msg("%s: answered within %zu built bytes", expr, max_build);
  if (!refused && rc != KERR_OK) fail_msg("%s: %s", expr, err.status.msg);
  if (refused) {
    assert_int_equal(rc, KERR_VALIDATION);
    assert_int_equal(err.kind, JMES_ERR_RESOURCE);
    assert_null(got);
  }
  json_decref(got);
  json_decref(doc);
  jmes_free(e);
}

/* The bytes of string one search builds are capped in all, not only per
 * string: many copies of a long string, each below JMES_STRING_MAX, cannot
 * pile up (a 67 MB string copied by to_string at each of 32 steps held
 * 2 GB).  A small budget stands in for JMES_BUILD_MAX. */
static void test_built_strings_are_capped(void **state) {
  (void)state;
  /* S64K alone builds 65,520 bytes; two copies of it fit 200,000, three
   * (the join, then each to_string) do not. */
  expect_build("[" S64K ", " S64K_COPY "] | length(join('', @))", 400000, 0);
  expect_build("[" S64K ", " S64K_COPY "]", 200000, 0);
  expect_build("[" S64K ", " S64K_COPY ", " S64K_COPY "]", 200000, 1);
  expect_build("[" S64K "] | " X " | map(&to_string([@]), @) | length(@)", 200000, 1);
  expect_build("[" S64K "] | " X " | map(&reverse(@), @) | length(@)", 200000, 1);
  expect_build("[" S64K "] | " X " | join('', @) | length(@)", 200000, 1);
  expect_build("[" S64K "] | " X " | map(&keys({\"k\": @}), @) | length(@)", 200000, 0);
  expect_build("[" S64K "] | " X " | map(&to_string([@]), @) | length(@)", 0, 0); /* the default */
  expect_build("map(&keys(@), [`{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\": 0}`] | "
               X "|" X "|" X ")", 16000, 1);
}

/* A ListKeys response with 1,000 keys: what real queries cost stays far
 * inside the budget. */
static void test_realistic_response_within_budget(void **state) {
  jmes_expr *e = NULL;
  jmes_error err;
  json_t *keys = json_array(), *doc, *got = NULL;
  (void)state;
  for (int i = 0; i < 1000; i++) {
    char id[64], arn[128];
    snprintf(id, sizeof id, "%08x-1234-4abc-8def-%012d", (unsigned)(i * 2654435761u), i);
    snprintf(arn, sizeof arn, "arn:aws:kms:eu-west-1:111122223333:key/%s", id);
    json_array_append_new(keys, json_pack("{s:s, s:s}", "KeyId", id, "KeyArn", arn));
  }
  doc = json_pack("{s:o, s:b}", "Keys", keys, "Truncated", 0);
  assert_non_null(doc);
  assert_int_equal(jmes_compile("{first: sort_by(Keys, &KeyArn)[0].KeyId, last: max_by(Keys, &KeyId).KeyId,"
                                " least: min_by(Keys, &KeyArn).KeyId, ids: length(join(',', Keys[].KeyId)),"
                                " sorted: length(sort(Keys[].KeyId)), top: max(Keys[].KeyArn),"
                                " zeros: length(Keys[?contains(KeyId, '-00000000000')]),"
                                " text: length(to_string(Keys)), same: Keys[0] == Keys[0]}",
                                &e, &err),
                   KERR_OK);
  assert_int_equal(jmes_search(e, doc, &got, &err), KERR_OK);
  assert_string_equal(json_string_value(json_object_get(got, "first")), "00000000-1234-4abc-8def-000000000000");
  assert_int_equal(json_integer_value(json_object_get(got, "ids")), 1000 * 36 + 999);
  assert_int_equal(json_integer_value(json_object_get(got, "sorted")), 1000);
  assert_int_equal(json_integer_value(json_object_get(got, "zeros")), 10);
  assert_true(json_is_string(json_object_get(got, "last")));
  assert_true(json_is_string(json_object_get(got, "least")));
  assert_true(json_is_string(json_object_get(got, "top")));
  assert_true(json_integer_value(json_object_get(got, "text")) > 100000);
  assert_true(json_is_true(json_object_get(got, "same")));
  json_decref(got);
  json_decref(doc);
  jmes_free(e);
}

static void test_large_document_within_budget(void **state) {
  jmes_expr *e = NULL;
  jmes_error err;
  json_t *doc = json_array(), *got = NULL;
  (void)state;
  for (int i = 0; i < 20000; i++) json_array_append_new(doc, json_pack("{s:i, s:s}", "n", (i * 7919) % 20000, "id", "key"));
  assert_int_equal(jmes_compile("{top: max_by(@, &n).n, low: sort_by(@, &n)[0].n, many: length([?n >= `10000`]),"
                                " ids: length(map(&join('-', [id, to_string(n)]), @))}", &e, &err), KERR_OK);
  assert_int_equal(jmes_search(e, doc, &got, &err), KERR_OK);
  assert_int_equal(json_integer_value(json_object_get(got, "top")), 19999);
  assert_int_equal(json_integer_value(json_object_get(got, "low")), 0);
  assert_int_equal(json_integer_value(json_object_get(got, "many")), 10000);
  assert_int_equal(json_integer_value(json_object_get(got, "ids")), 20000);
  json_decref(got);
  json_decref(doc);
  jmes_free(e);
}

/* ---- ownership --------------------------------------------------------- */

static void test_result_ownership(void **state) {
  jmes_expr *e = NULL;
  jmes_error err;
  json_t *doc = parse(doc_text), *got = NULL, *map = json_object_get(doc, "Map");
  (void)state;
  assert_int_equal(jmes_compile("Map", &e, &err), KERR_OK);
  /* The result shares the document's value and holds its own reference. */
  assert_int_equal(jmes_search(e, doc, &got, &err), KERR_OK);
  assert_ptr_equal(got, map);
  json_decref(doc);
  assert_int_equal(json_integer_value(json_object_get(got, "x")), 1);
  json_decref(got);
  /* One compiled expression serves any number of searches. */
  for (int i = 0; i < 3; i++) {
    json_t *other = parse("{\"Map\": [1]}");
    assert_int_equal(jmes_search(e, other, &got, &err), KERR_OK);
    assert_int_equal(json_array_size(got), 1);
    json_decref(got);
    json_decref(other);
  }
  /* A null result is json_null(), a null document is allowed. */
  assert_int_equal(jmes_search(e, NULL, &got, &err), KERR_OK);
  assert_true(json_is_null(got));
  json_decref(got);
  jmes_free(e);
  jmes_free(NULL);
  /* Failures leave nothing to free and accept a NULL error. */
  got = (json_t *)(uintptr_t)1;
  assert_int_equal(jmes_compile("abs(Name)", &e, NULL), KERR_OK);
  doc = parse(doc_text);
  assert_int_equal(jmes_search(e, doc, &got, NULL), KERR_VALIDATION);
  assert_null(got);
  assert_int_equal(jmes_search(NULL, doc, &got, &err), KERR_VALIDATION);
  jmes_free(e);
  assert_int_equal(jmes_compile("(", &e, NULL), KERR_VALIDATION);
  assert_null(e);
  json_decref(doc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fields_and_subexpressions),
      cmocka_unit_test(test_indexes_and_slices),
      cmocka_unit_test(test_projections),
      cmocka_unit_test(test_filters),
      cmocka_unit_test(test_pipes_and_booleans),
      cmocka_unit_test(test_multiselect_and_literals),
      cmocka_unit_test(test_number_functions),
      cmocka_unit_test(test_number_overflow),
      cmocka_unit_test(test_mixed_number_comparison),
      cmocka_unit_test(test_string_functions),
      cmocka_unit_test(test_object_and_conversion_functions),
      cmocka_unit_test(test_sorting_and_expression_references),
      cmocka_unit_test(test_syntax_errors),
      cmocka_unit_test(test_syntax_error_message_names_position),
      cmocka_unit_test(test_function_errors),
      cmocka_unit_test(test_long_expression_is_refused),
      cmocka_unit_test(test_deep_nesting_is_refused),
      cmocka_unit_test(test_exponential_work_is_stopped),
      cmocka_unit_test(test_large_document_within_budget),
      cmocka_unit_test(test_string_work_is_charged),
      cmocka_unit_test(test_realistic_response_within_budget),
      cmocka_unit_test(test_built_strings_are_capped),
      cmocka_unit_test(test_result_ownership),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
