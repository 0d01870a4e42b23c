/* test_cli_output.c - unit tests for lib/cli/output: each --output format's
 * rules on small documents, with the text the AWS CLI prints for them (the
 * expected strings were taken from awscli's own formatters; the e2e test
 * tests/e2e/test_cli_output.py keeps comparing against them), plus the
 * contract: depth bound, output cap, nothing returned on failure, format
 * names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml.h>

#include "cli/output.h"

static json_t *parse(const char *text) {
  json_error_t err;
  json_t *doc = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
  if (!doc) fail_msg("bad test JSON: %s", err.text);
  return doc;
}

/* Format `doc_text` with the options and compare with `expected` exactly. */
static void expect_output_opts(const cli_output_opts *opts, const char *doc_text, const char *expected) {
  json_t *doc = parse(doc_text);
  char *out = NULL;
  size_t len = 0;
  kerr e;
  if (cli_output_render(doc, opts, &out, &len, &e) != KERR_OK) fail_msg("%s: refused: %s", doc_text, e.msg);
  assert_non_null(out);
  assert_int_equal(out[len], '\0');
  if (len != strlen(expected) || memcmp(out, expected, len) != 0)
    fail_msg("%s: got\n%s\nwanted\n%s", doc_text, out, expected);
  free(out);
  json_decref(doc);
}

static void expect_output(cli_format format, const char *title, const char *doc_text,
                          const char *expected) {
  cli_output_opts opts = {format, title, 0, 0, 0};
  expect_output_opts(&opts, doc_text, expected);
}

static void test_json_numbers_strings_containers(void **state) {
  (void)state;
  expect_output(CLI_FORMAT_JSON, "X", "{\"a\":1733000000.123,\"b\":1,\"c\":1e16,\"d\":1e-5,\"e\":-0.0,\"f\":\"é\\n\\t\\\"\\\\\\u0001\",\"g\":[],\"h\":{},\"i\":[1,{\"j\":null}],\"k\":true,\"l\":0.1,\"m\":1e15,\"n\":0.0001,\"o\":1.5e-7,\"p\":123456789012345678.0}",
      "{\n"
      "    \"a\": 1733000000.123,\n"
      "    \"b\": 1,\n"
      "    \"c\": 1e+16,\n"
      "    \"d\": 1e-05,\n"
      "    \"e\": -0.0,\n"
      "    \"f\": \"é\\n\\t\\\"\\\\\\u0001\",\n"
      "    \"g\": [],\n"
      "    \"h\": {},\n"
      "    \"i\": [\n"
      "        1,\n"
      "        {\n"
      "            \"j\": null\n"
      "        }\n"
      "    ],\n"
      "    \"k\": true,\n"
      "    \"l\": 0.1,\n"
      "    \"m\": 1000000000000000.0,\n"
      "    \"n\": 0.0001,\n"
      "    \"o\": 1.5e-07,\n"
      "    \"p\": 1.2345678901234568e+17\n"
      "}\n"
      "");
}

static void test_text_nested_rows(void **state) {
  (void)state;
  expect_output(CLI_FORMAT_TEXT, "X", "{\"KeyMetadata\":{\"KeyId\":\"k1\",\"Enabled\":true,\"Description\":null,\"EncryptionAlgorithms\":[\"A\",\"B\"],\"Multi\":{\"Type\":\"PRIMARY\",\"Replicas\":[{\"Region\":\"r1\",\"Arn\":\"a1\"},{\"Region\":\"r2\"}]}},\"Truncated\":false}",
      "False\n"
      "KEYMETADATA\tNone\tTrue\tk1\n"
      "ENCRYPTIONALGORITHMS\tA\n"
      "ENCRYPTIONALGORITHMS\tB\n"
      "MULTI\tPRIMARY\n"
      "REPLICAS\ta1\tr1\n"
      "REPLICAS\t\tr2\n"
      "");
}

static void test_text_list_of_objects_union(void **state) {
  (void)state;
  expect_output(CLI_FORMAT_TEXT, "X", "{\"Grants\":[{\"Name\":\"g1\",\"Ops\":[\"Decrypt\"],\"C\":{\"K\":\"v\"}},{\"Name\":\"g2\",\"Extra\":1.5,\"C\":\"scalar-here\"}]}",
      "GRANTS\t{'K': 'v'}\t\tg1\n"
      "OPS\tDecrypt\n"
      "GRANTS\tscalar-here\t1.5\tg2\n"
      "");
}

static void test_text_bare_lists(void **state) {
  (void)state;
  expect_output(CLI_FORMAT_TEXT, "X", "[[\"a\",\"b\"],\"c\",[[\"d\"]]]",
      "c\n"
      "a\tb\n"
      "d\n"
      "");
}

static void test_table_list_of_objects(void **state) {
  (void)state;
  expect_output(CLI_FORMAT_TABLE, "ListKeys", "{\"Keys\":[{\"KeyId\":\"k1\",\"KeyArn\":\"arn:1\"},{\"KeyId\":\"k2\",\"KeyArn\":\"arn:2\"}],\"Truncated\":false}",
      "------------------------\n"
      "|       ListKeys       |\n"
      "+------------+---------+\n"
      "|  Truncated |  False  |\n"
      "+------------+---------+\n"
      "||        Keys        ||\n"
      "|+----------+---------+|\n"
      "||  KeyArn  |  KeyId  ||\n"
      "|+----------+---------+|\n"
      "||  arn:1   |  k1     ||\n"
      "||  arn:2   |  k2     ||\n"
      "|+----------+---------+|\n"
      "");
}

/* Width sharing can leave a column narrower than its text and the two
 * spaces before it: the CLI then writes the text at the bar. */
static void test_table_cell_in_a_narrowed_column(void **state) {
  (void)state;
  expect_output(CLI_FORMAT_TABLE, "T", "{\"a\":\"x\",\"bbbbbbbbbbb\":\"y\",\"ccccccccccc\":\"y\",\"ddddddddddd\":\"y\"}",
                "----------------------------------------------------\n"
                "|                         T                        |\n"
                "+--+---------------+---------------+---------------+\n"
                "| a|  bbbbbbbbbbb  |  ccccccccccc  |  ddddddddddd  |\n"
                "+--+---------------+---------------+---------------+\n"
                "|x |  y            |  y            |  y            |\n"
                "+--+---------------+---------------+---------------+\n");
}

static void test_table_multiline_value(void **state) {
  (void)state;
  expect_output(CLI_FORMAT_TABLE, "GetKeyPolicy", "{\"Policy\":\"{\\n  \\\"a\\\": 1\\n}\"}",
      "----------------------------\n"
      "|       GetKeyPolicy       |\n"
      "+---------+----------------+\n"
      "|  Policy |  {\n"
      "  \"a\": 1\n"
      "}  |\n"
      "+---------+----------------+\n"
      "");
}

static void test_table_wide_characters(void **state) {
  (void)state;
  expect_output(CLI_FORMAT_TABLE, "Tags", "{\"Tags\":[{\"TagKey\":\"名前\",\"TagValue\":\"値\"}]}",
      "--------------------------\n"
      "|          Tags          |\n"
      "+------------------------+\n"
      "||         Tags         ||\n"
      "|+---------+------------+|\n"
      "|| TagKey  | TagValue   ||\n"
      "|+---------+------------+|\n"
      "||  名前   |  値        ||\n"
      "|+---------+------------+|\n"
      "");
}

static void test_table_repeated_header_with_subtables(void **state) {
  (void)state;
  expect_output(CLI_FORMAT_TABLE, "Grants", "{\"Grants\":[{\"Name\":\"g1\",\"Ops\":[\"Decrypt\",\"Encrypt\"]},{\"Name\":\"g2\",\"Ops\":[\"Sign\"]}]}",
      "-----------------\n"
      "|    Grants     |\n"
      "+---------------+\n"
      "||   Grants    ||\n"
      "|+-------------+|\n"
      "||    Name     ||\n"
      "|+-------------+|\n"
      "||  g1         ||\n"
      "|+-------------+|\n"
      "|||    Ops    |||\n"
      "||+-----------+||\n"
      "|||  Decrypt  |||\n"
      "|||  Encrypt  |||\n"
      "||+-----------+||\n"
      "||   Grants    ||\n"
      "|+-------------+|\n"
      "||    Name     ||\n"
      "|+-------------+|\n"
      "||  g2         ||\n"
      "|+-------------+|\n"
      "|||    Ops    |||\n"
      "||+-----------+||\n"
      "|||  Sign     |||\n"
      "||+-----------+||\n"
      "");
}

static void test_table_vertical_when_too_wide(void **state) {
  (void)state;
  expect_output(CLI_FORMAT_TABLE, "DescribeKey", "{\"KeyMetadata\":{\"KeyId\":\"1234abcd-12ab-34cd-56ef-1234567890ab\",\"Arn\":\"arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\",\"Enabled\":true}}",
      "----------------------------------------------------------------------------------------------\n"
      "|                                         DescribeKey                                        |\n"
      "+--------------------------------------------------------------------------------------------+\n"
      "||                                        KeyMetadata                                       ||\n"
      "|+---------+--------------------------------------------------------------------------------+|\n"
      "||  Arn    |  arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab   ||\n"
      "||  Enabled|  True                                                                          ||\n"
      "||  KeyId  |  1234abcd-12ab-34cd-56ef-1234567890ab                                          ||\n"
      "|+---------+--------------------------------------------------------------------------------+|\n"
      "");
}

static void test_empty_and_false_responses(void **state) {
  (void)state;
  /* An empty response prints nothing in json, table and yaml; text has no
   * row for it either. */
  for (int f = CLI_FORMAT_JSON; f <= CLI_FORMAT_YAML_STREAM; f++) expect_output((cli_format)f, "CreateAlias", "{}", "");
  expect_output(CLI_FORMAT_TABLE, "X", "[]", "");
  expect_output(CLI_FORMAT_TABLE, "X", "false", "");
  expect_output(CLI_FORMAT_TABLE, "X", "\"\"", "");
  expect_output(CLI_FORMAT_TEXT, "X", "{\"Aliases\":[]}", "");
  expect_output(CLI_FORMAT_JSON, "X", "{\"Aliases\":[]}", "{\n    \"Aliases\": []\n}\n");
}

static void test_scalars_at_top_level(void **state) {
  (void)state;
  /* A --query result may be a scalar: Python's spelling of it. */
  expect_output(CLI_FORMAT_TEXT, "X", "true", "True\n");
  expect_output(CLI_FORMAT_TEXT, "X", "null", "None\n");
  expect_output(CLI_FORMAT_TEXT, "X", "2.50", "2.5\n");
  expect_output(CLI_FORMAT_TEXT, "X", "\"a\\tb\"", "a\tb\n");
  expect_output(CLI_FORMAT_JSON, "X", "null", "null\n");
  expect_output(CLI_FORMAT_JSON, "X", "\"日本\"", "\"日本\"\n");
  expect_output(CLI_FORMAT_TABLE, "Op", "42", "----\n|Op|\n+--+\n");
}

static void test_text_python_repr_of_nested_value(void **state) {
  (void)state;
  /* A member that is a scalar in one list element and a container in
   * another is printed with Python's repr, quotes and escapes included. */
  expect_output(CLI_FORMAT_TEXT, "X",
                "{\"L\":[{\"a\":1},{\"a\":{\"k\":[true,null,\"it's\",\"q\\\"'\",\"\\u0007\\u00e9\\u200b\"]}}]}",
                "L\t1\nL\t{'k': [True, None, \"it's\", 'q\"\\'', '\\x07é\\u200b']}\n");
}

static void test_table_color(void **state) {
  cli_output_opts opts = {CLI_FORMAT_TABLE, "Op", 0, 1, 0};
  (void)state;
  expect_output_opts(&opts, "{\"A\":\"x\",\"L\":[\"v\"]}",
                     "------------\n"
                     "|    Op    |\n"
                     "+----+-----+\n"
                     "|  \x1b[1m\x1b[34mA\x1b[0m |  \x1b[1m\x1b[34mx\x1b[0m  |\n"
                     "+----+-----+\n"
                     "\x1b[2m\x1b[33m|\x1b[0m|    L   |\x1b[2m\x1b[33m|\x1b[0m\n"
                     "\x1b[2m\x1b[33m|\x1b[0m+--------+\x1b[2m\x1b[33m|\x1b[0m\n"
                     "\x1b[2m\x1b[33m|\x1b[0m|  \x1b[1m\x1b[34mv\x1b[0m     |\x1b[2m\x1b[33m|\x1b[0m\n"
                     "\x1b[2m\x1b[33m|\x1b[0m+--------+\x1b[2m\x1b[33m|\x1b[0m\n");
}

static void test_table_terminal_width(void **state) {
  /* Wide enough: the single-row section keeps its header row. */
  cli_output_opts opts = {CLI_FORMAT_TABLE, "T", 200, 0, 0};
  (void)state;
  expect_output_opts(&opts, "{\"A\":\"1\",\"B\":\"2\"}",
                     "------------\n"
                     "|     T    |\n"
                     "+----+-----+\n"
                     "|  A |  B  |\n"
                     "+----+-----+\n"
                     "|  1 |  2  |\n"
                     "+----+-----+\n");
  /* Narrower than the table: name/value rows. */
  opts.width = 5;
  expect_output_opts(&opts, "{\"A\":\"1\",\"B\":\"2\"}",
                     "------------\n"
                     "|     T    |\n"
                     "+----+-----+\n"
                     "|  A |  1  |\n"
                     "|  B |  2  |\n"
                     "+----+-----+\n");
}

static void test_yaml_quoting_and_look(void **state) {
  (void)state;
  expect_output(CLI_FORMAT_YAML, "X",
                "{\"z\":\"12\",\"a\":\"yes\",\"b\":\"\",\"c\":\"2024-01-01\",\"d\":\"arn:aws:kms:r:1:key/k\","
                "\"e\":1e16,\"f\":[],\"g\":{},\"h\":[{\"k\":null,\"j\":false}],\"i\":\"1234abcd-12ab\",\"n\":7}",
                "a: 'yes'\n"
                "b: ''\n"
                "c: '2024-01-01'\n"
                "d: arn:aws:kms:r:1:key/k\n"
                "e: 1.0e+16\n"
                "f: []\n"
                "g: {}\n"
                "h:\n"
                "- j: false\n"
                "  k: null\n"
                "i: 1234abcd-12ab\n"
                "'n': 7\n"
                "z: '12'\n");
  expect_output(CLI_FORMAT_YAML_STREAM, "X", "{\"K\":{\"A\":1}}", "- K:\n    A: 1\n");
  expect_output(CLI_FORMAT_YAML, "X", "{\"t\":\"a\\tb\",\"z\":\"\\u0000\"}", "t: \"a\\tb\"\nz: \"\\0\"\n");
}

/* A document of `levels` nested arrays around 1. */
static json_t *nested(int levels) {
  json_t *v = json_integer(1);
  for (int i = 0; i < levels; i++) {
    json_t *a = json_array();
    json_array_append_new(a, v);
    v = a;
  }
  return v;
}

/* Render expecting a refusal with `code`: nothing is returned. */
static void expect_refusal(const json_t *doc, const cli_output_opts *opts, kerr_code code, const char *words) {
  char *out = (char *)"untouched";
  size_t len = 99;
  kerr e;
  assert_int_equal(cli_output_render(doc, opts, &out, &len, &e), code);
  assert_null(out);
  assert_int_equal(len, 0);
  assert_int_equal(e.code, code);
  if (!strstr(e.msg, words)) fail_msg("message \"%s\" lacks \"%s\"", e.msg, words);
}

static void test_depth_bound(void **state) {
  json_t *ok = nested(CLI_OUTPUT_MAX_DEPTH), *deep = nested(CLI_OUTPUT_MAX_DEPTH + 1);
  (void)state;
  for (int f = CLI_FORMAT_JSON; f <= CLI_FORMAT_YAML_STREAM; f++) {
    cli_output_opts opts = {(cli_format)f, "Deep", 0, 0, 0};
    char *out = NULL;
    size_t len = 0;
    kerr e;
    assert_int_equal(cli_output_render(ok, &opts, &out, &len, &e), KERR_OK);
    assert_true(len > 0);
    free(out);
    expect_refusal(deep, &opts, KERR_VALIDATION, "deeper");
  }
  json_decref(ok);
  json_decref(deep);
}

static void test_unprintable_data_refused(void **state) {
  cli_output_opts text = {CLI_FORMAT_TEXT, "X", 0, 0, 0}, table = {CLI_FORMAT_TABLE, "X", 0, 0, 0};
  json_t *mixed = parse("{\"L\":[{\"a\":1},2]}"), *ragged = parse("{\"L\":[[1,2],[3]]}");
  json_t *wider_header = parse("[[1],[{\"a\":1,\"b\":2}]]");
  /* A "" record where another record nests under the key "": the CLI looks
   * the key up in the string and fails. */
  json_t *blank_under_empty_key = parse("[{\"\":[1]},\"\"]");
  (void)state;
  /* The AWS CLI raises on these; printing something else would mislead. */
  expect_refusal(mixed, &text, KERR_VALIDATION, "output cannot show");
  expect_refusal(mixed, &table, KERR_VALIDATION, "output cannot show");
  expect_refusal(ragged, &table, KERR_VALIDATION, "output cannot show");
  expect_refusal(wider_header, &table, KERR_VALIDATION, "output cannot show");
  expect_refusal(blank_under_empty_key, &table, KERR_VALIDATION, "output cannot show");
  json_decref(blank_under_empty_key);
  json_decref(mixed);
  json_decref(ragged);
  json_decref(wider_header);
}

static void test_output_cap(void **state) {
  json_t *doc = parse("{\"Values\":[\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\",\"y\",\"y\",\"y\",\"y\"]}");
  char *out = NULL;
  size_t len = 0;
  kerr e;
  (void)state;
  for (int f = CLI_FORMAT_JSON; f <= CLI_FORMAT_YAML_STREAM; f++) {
    cli_output_opts opts = {(cli_format)f, "Cap", 0, 0, 40};
    expect_refusal(doc, &opts, KERR_VALIDATION, "larger than the limit of 40 bytes");
    /* With room, the same document prints, and exactly the cap is allowed. */
    opts.max_bytes = 0;
    assert_int_equal(cli_output_render(doc, &opts, &out, &len, &e), KERR_OK);
    free(out);
    opts.max_bytes = len;
    assert_int_equal(cli_output_render(doc, &opts, &out, &len, &e), KERR_OK);
    assert_int_equal(len, opts.max_bytes);
    free(out);
    opts.max_bytes = len - 1;
    expect_refusal(doc, &opts, KERR_VALIDATION, "larger than the limit");
  }
  json_decref(doc);
}

/* Records that each have a key of their own: the table gets a column per
 * key and a row per record, a cell for every pair; it is refused while it is
 * laid out, before those cells exist. */
static void test_table_cap_counts_cells(void **state) {
  cli_output_opts opts = {CLI_FORMAT_TABLE, "Records", 0, 0, 1000000};
  json_t *records = json_array();
  json_t *doc = json_pack("{s:o}", "Items", records);
  (void)state;
  for (int i = 0; i < 3000; i++) {
    char key[16];
    snprintf(key, sizeof key, "k%d", i);
    json_array_append_new(records, json_pack("{s:i}", key, i));
  }
  expect_refusal(doc, &opts, KERR_VALIDATION, "larger than the limit of 1000000 bytes");
  json_decref(doc);
}

static void test_float_spellings(void **state) {
  (void)state;
  /* 2**-1019: the correctly rounded 16 digits do not read back, the next
   * decimal up does; 2**53 and 2**60 need no exponent; 5e-324 is the
   * smallest double. */
  expect_output(CLI_FORMAT_TEXT, "X",
                "[7.120236347223045e-307, 9007199254740992.0, 1152921504606846976.0, 5e-324, 0.1, 1e16, 1e15, "
                "0.0001, 0.00001, 1.5e-7, -0.0, 0.30000000000000004, 1.7976931348623157e308, 2.5]",
                "7.120236347223045e-307\t9007199254740992.0\t1.152921504606847e+18\t5e-324\t0.1\t1e+16\t"
                "1000000000000000.0\t0.0001\t1e-05\t1.5e-07\t-0.0\t0.30000000000000004\t"
                "1.7976931348623157e+308\t2.5\n");
}

static void test_text_names_upper_cased_beyond_ascii(void **state) {
  (void)state;
  expect_output(CLI_FORMAT_TEXT, "X", "{\"stra\u00dfe\":[1],\"\u00e9t\u00e9\":{\"x\":2},\"\ufb01n\":[3]}",
                "STRASSE\t1\n\u00c9T\u00c9\t2\nFIN\t3\n");
}

static void test_null_error_struct(void **state) {
  cli_output_opts opts = {CLI_FORMAT_JSON, NULL, 0, 0, 0};
  json_t *doc = parse("[1]");
  char *out = NULL;
  size_t len = 0;
  (void)state;
  assert_int_equal(cli_output_render(doc, &opts, &out, &len, NULL), KERR_OK);
  assert_string_equal(out, "[\n    1\n]\n");
  free(out);
  opts.max_bytes = 2;
  assert_int_equal(cli_output_render(doc, &opts, &out, &len, NULL), KERR_VALIDATION);
  assert_null(out);
  json_decref(doc);
}

/* Render `doc` (built in C, so it can hold what JSON text cannot) and compare
 * with `expected` of `expected_len` bytes. */
static void expect_doc(cli_format format, const char *title, const json_t *doc, const char *expected,
                       size_t expected_len) {
  cli_output_opts opts = {format, title, 0, 0, 0};
  char *out = NULL;
  size_t len = 0;
  kerr e;
  if (cli_output_render(doc, &opts, &out, &len, &e) != KERR_OK) fail_msg("refused: %s", e.msg);
  if (len != expected_len || memcmp(out, expected, len) != 0) fail_msg("format %d: got\n%s", (int)format, out);
  free(out);
}

/* What yaml output loads back to, as JSON (block scalars, flow [] and {},
 * strings and plain scalars kept as strings: enough to compare keys). */
static json_t *yaml_keys_of(const char *text, size_t len) {
  yaml_parser_t parser;
  yaml_document_t ydoc;
  json_t *keys = json_array();
  assert_true(yaml_parser_initialize(&parser));
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  assert_true(yaml_parser_load(&parser, &ydoc));
  for (yaml_node_t *n = ydoc.nodes.start; n < ydoc.nodes.top; n++) {
    if (n->type != YAML_MAPPING_NODE) continue;
    for (yaml_node_pair_t *pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top; pair++) {
      yaml_node_t *key = yaml_document_get_node(&ydoc, pair->key);
      json_array_append_new(keys, json_stringn((const char *)key->data.scalar.value, key->data.scalar.length));
    }
  }
  yaml_document_delete(&ydoc);
  yaml_parser_delete(&parser);
  return keys;
}

/* Keys holding a NUL byte (a --query multiselect can make them) print in
 * full in every format, as the AWS CLI prints them. */
static void test_keys_with_nul_bytes(void **state) {
  json_t *doc = json_object(), *inner = json_object(), *keys, *want;
  cli_output_opts yaml = {CLI_FORMAT_YAML, "N", 0, 0, 0};
  char *out = NULL;
  size_t len = 0;
  kerr e;
  static const char json_want[] = "{\n    \"a\\u0000b\": [\n        1\n    ],\n    \"c\": {\n        \"x\\u0000\": 1,\n"
                                  "        \"y\": 2\n    },\n    \"k\\u0000\": \"v\"\n}\n";
  static const char text_want[] = "v\nA\0B\t1\nC\t1\t2\n";
  static const char table_want[] =
      "---------------\n|      N      |\n+------+------+\n|  k\0  |  v   |\n+------+------+\n"
      "||    a\0b    ||\n|+-----------+|\n||  1        ||\n|+-----------+|\n||     c     ||\n"
      "|+-----+-----+|\n|| x\0  |  y  ||\n|+-----+-----+|\n||  1  |  2  ||\n|+-----+-----+|\n";
  (void)state;
  json_object_setn_new(doc, "a\0b", 3, json_pack("[i]", 1));
  json_object_setn_new(inner, "x\0", 2, json_integer(1));
  json_object_set_new(inner, "y", json_integer(2));
  json_object_set_new(doc, "c", inner);
  json_object_setn_new(doc, "k\0", 2, json_string("v"));
  expect_doc(CLI_FORMAT_JSON, "N", doc, json_want, sizeof json_want - 1);
  expect_doc(CLI_FORMAT_TEXT, "N", doc, text_want, sizeof text_want - 1);
  expect_doc(CLI_FORMAT_TABLE, "N", doc, table_want, sizeof table_want - 1);
  assert_int_equal(cli_output_render(doc, &yaml, &out, &len, &e), KERR_OK);
  keys = yaml_keys_of(out, len);
  want = json_array();
  json_array_append_new(want, json_stringn("a\0b", 3));
  json_array_append_new(want, json_string("c"));
  json_array_append_new(want, json_stringn("k\0", 2));
  json_array_append_new(want, json_stringn("x\0", 2));
  json_array_append_new(want, json_string("y"));
  if (!json_equal(keys, want)) fail_msg("yaml keys differ:\n%s", out);
  free(out);
  json_decref(keys);
  json_decref(want);
  json_decref(doc);
}

/* A list box with no title of its own is measured as the AWS CLI measures
 * it (the four characters of "None"), and a list led by an object may hold
 * "" or [], which the AWS CLI passes over. */
static void test_table_untitled_box_and_empty_items(void **state) {
  (void)state;
  expect_output(CLI_FORMAT_TABLE, "T", "[[{\"b\":[[]]},{\"b\":[[]]}]]", "------\n|  T |\n|| b||\n|| b||\n");
  expect_output(CLI_FORMAT_TABLE, "T", "{\"R\":[{\"a\":[1]},\"\"]}",
                "-----------\n|    T    |\n+---------+\n||   R   ||\n|||  a  |||\n||+-----+||\n|||  1  |||\n"
                "||+-----+||\n||   R   ||\n");
  expect_output(CLI_FORMAT_TABLE, "T", "{\"R\":[{\"a\":[1]},[]]}",
                "-----------\n|    T    |\n+---------+\n||   R   ||\n|||  a  |||\n||+-----+||\n|||  1  |||\n"
                "||+-----+||\n||   R   ||\n");
}

/* Render under a 512 MB address-space limit in a child: it must end in a
 * clean refusal or in output, never in a crash or an allocation failure. */
static void expect_bounded(const json_t *doc) {
  pid_t pid;
  int status = 0;
  fflush(NULL);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    cli_output_opts opts = {CLI_FORMAT_TABLE, "Records", 0, 0, 0};
    char *out = NULL;
    size_t len = 0;
    kerr e;
    kerr_code rc;
#if !defined(__SANITIZE_ADDRESS__)
    /* ASan reserves terabytes of address space, and valgrind's own heap
     * counts against the limit: there the run is only checked to end
     * cleanly (and, under valgrind, to leak nothing). */
    const char *preload = getenv("LD_PRELOAD");
    struct rlimit limit = {512UL << 20, 512UL << 20};
    if (!(preload && strstr(preload, "vgpreload")) && setrlimit(RLIMIT_AS, &limit) != 0) _exit(3);
#endif
    rc = cli_output_render(doc, &opts, &out, &len, &e);
    if (rc == KERR_OK) _exit(out && len > 0 ? 0 : 4);
    _exit(rc == KERR_VALIDATION && strstr(e.msg, "larger than the limit") ? 0 : 5);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

/* Adversarial shapes for the table under the default cap: 8000 records
 * with a key each (110 KB of input, 64 million cells if laid out), and
 * 3000 records whose nested members each open boxes. */
static void test_table_memory_bounded(void **state) {
  json_t *own_keys = json_array(), *nested = json_array();
  json_t *doc1 = json_pack("{s:o}", "Items", own_keys), *doc2 = json_pack("{s:o}", "Items", nested);
  char *text;
  (void)state;
  for (int i = 0; i < 8000; i++) {
    char key[16];
    snprintf(key, sizeof key, "key%05d", i);
    json_array_append_new(own_keys, json_pack("{s:i}", key, i));
  }
  text = json_dumps(doc1, JSON_COMPACT);
  assert_true(strlen(text) > 100000);
  free(text);
  for (int i = 0; i < 3000; i++) {
    char key[16];
    snprintf(key, sizeof key, "m%d", i);
    json_array_append_new(nested, json_pack("{s:i,s:{s:[i,i]},s:[{s:s}]}", "Id", i, key, "Deep", i, i, "List",
                                            key, "value"));
  }
  expect_bounded(doc1);
  expect_bounded(doc2);
  json_decref(doc1);
  json_decref(doc2);
}

/* Text: the scalars of an array come before its arrays; under a name each
 * scalar has a line of its own, without one they share a line.  A key ""
 * still names (the line starts with a tab); an object without scalar
 * members prints no line of its own. */
static void test_text_array_scalars_then_arrays(void **state) {
  (void)state;
  expect_output(CLI_FORMAT_TEXT, "X", "{\"L\":[1,[2,[3]],4],\"M\":[[5,6],7]}",
                "L\t1\nL\t4\nL\t2\nL\t3\nM\t7\nM\t5\nM\t6\n");
  expect_output(CLI_FORMAT_TEXT, "X", "[1,[2,3],4]", "1\t4\n2\t3\n");
  expect_output(CLI_FORMAT_TEXT, "X", "{\"\":[1,2],\"o\":{\"k\":[1]}}", "\t1\n\t2\nK\t1\n");
}

/* Text: a record lacking every column still prints its (empty) line; a
 * list whose records have no scalar at all prints no record lines, only
 * what is under them. */
static void test_text_records_lines(void **state) {
  (void)state;
  expect_output(CLI_FORMAT_TEXT, "X", "{\"R\":[{\"a\":1},{},{\"b\":{\"c\":2}}],\"S\":[{\"x\":[1]},{\"x\":[2]}]}",
                "R\t1\nR\t\nR\t\nB\t2\nX\t1\nX\t2\n");
}

/* Text refuses any array holding an object next to anything else, empty
 * values included, as the AWS CLI fails on it; and a list of records whose
 * lines cannot fit the cap is refused before it is written. */
static void test_text_refusals(void **state) {
  cli_output_opts text = {CLI_FORMAT_TEXT, "X", 0, 0, 0};
  json_t *blank = parse("{\"R\":[{\"a\":1},\"\"]}"), *lead = parse("[[],{\"a\":1}]");
  json_t *records = json_array();
  (void)state;
  expect_refusal(blank, &text, KERR_VALIDATION, "output cannot show");
  expect_refusal(lead, &text, KERR_VALIDATION, "output cannot show");
  for (int i = 0; i < 200; i++) {
    char key[16];
    snprintf(key, sizeof key, "k%d", i);
    json_array_append_new(records, json_pack("{s:i}", key, i));
  }
  text.max_bytes = 200 * 200 - 1;
  expect_refusal(records, &text, KERR_VALIDATION, "larger than the limit of 39999 bytes");
  json_decref(blank);
  json_decref(lead);
  json_decref(records);
}

/* Table: once any record has an array or object, every record gets a box
 * of its own, and so does each key that holds an array or object in some
 * record, wherever the record has a true value for it: a scalar there
 * gives a box with a title only, a false one none. */
static void test_table_record_boxes(void **state) {
  (void)state;
  expect_output(CLI_FORMAT_TABLE, "T", "{\"K\":[{\"a\":1,\"s\":[1]},{\"a\":2,\"s\":\"x\"},{\"a\":3,\"s\":0}]}",
                "----------------\n"
                "|       T      |\n"
                "+--------------+\n"
                "||      K     ||\n"
                "|+----+-------+|\n"
                "||  a |   s   ||\n"
                "|+----+-------+|\n"
                "||  1 |  [1]  ||\n"
                "|+----+-------+|\n"
                "|||     s    |||\n"
                "||+----------+||\n"
                "|||  1       |||\n"
                "||+----------+||\n"
                "||      K     ||\n"
                "|+-----+------+|\n"
                "||  a  |  s   ||\n"
                "|+-----+------+|\n"
                "||  2  |  x   ||\n"
                "|+-----+------+|\n"
                "|||     s    |||\n"
                "||+----------+||\n"
                "||      K     ||\n"
                "|+-----+------+|\n"
                "||  a  |  s   ||\n"
                "|+-----+------+|\n"
                "||  3  |  0   ||\n"
                "|+-----+------+|\n");
  /* "" and [] count as records without members while there is no column. */
  expect_output(CLI_FORMAT_TABLE, "T", "{\"R\":[{\"a\":[1]},\"\",[]]}",
                "-----------\n|    T    |\n+---------+\n||   R   ||\n|||  a  |||\n||+-----+||\n|||  1  |||\n"
                "||+-----+||\n||   R   ||\n||   R   ||\n");
}

/* Table: the items of a plain array add rows to the box opened last, even
 * a sub-box of an earlier item; records found among the items have no
 * title, and their boxes start again from level 0 however deep the array
 * (the e2e corpus checks that at depth 2). */
static void test_table_items_go_to_the_last_box(void **state) {
  (void)state;
  expect_output(CLI_FORMAT_TABLE, "T", "[[{\"a\":1,\"s\":[1]}],[3]]",
                "---------\n|   T   |\n+-------+\n|   a   |\n+-------+\n|  1    |\n+-------+\n||  s  ||\n"
                "|+-----+|\n||  1  ||\n||  3  ||\n|+-----+|\n");
  expect_output(CLI_FORMAT_TABLE, "T", "{\"K\":[[{\"a\":1,\"s\":[1]},{\"a\":5}]]}",
                "---------\n|   T   |\n+-------+\n||  K  ||\n|+-----+|\n||  a  ||\n|+-----+|\n||  1  ||\n"
                "|+-----+|\n||  s  ||\n|+-----+|\n||  1  ||\n|+-----+|\n+-------+\n|   a   |\n+-------+\n"
                "|  5    |\n+-------+\n");
  /* An object item is a row of its keys, in the document's order; an array
   * holding arrays gives its items one by one. */
  expect_output(CLI_FORMAT_TABLE, "T", "{\"R\":[[1,2],{\"b\":1,\"a\":2},[[3,4]]]}",
                "--------------\n|      T     |\n+------------+\n||     R    ||\n|+----+-----+|\n||  1 |  2  ||\n"
                "||  b |  a  ||\n||  3 |  4  ||\n|+----+-----+|\n");
}

/* Table refuses records mixed with values it cannot read as records, as the
 * AWS CLI fails on them; a reply that Python holds false prints nothing. */
static void test_table_refusals_and_false_replies(void **state) {
  cli_output_opts table = {CLI_FORMAT_TABLE, "X", 0, 0, 0};
  json_t *blank = parse("{\"R\":[{\"b\":1},\"\"]}"), *null_rec = parse("{\"R\":[{\"b\":1},null]}");
  json_t *list_rec = parse("[{\"a\":1},[1]]");
  (void)state;
  expect_refusal(blank, &table, KERR_VALIDATION, "output cannot show");
  expect_refusal(null_rec, &table, KERR_VALIDATION, "output cannot show");
  expect_refusal(list_rec, &table, KERR_VALIDATION, "output cannot show");
  expect_output(CLI_FORMAT_TABLE, "X", "0", "");
  expect_output(CLI_FORMAT_TABLE, "X", "0.0", "");
  expect_output(CLI_FORMAT_TABLE, "X", "null", "");
  expect_output(CLI_FORMAT_TABLE, "X", "[[]]", "---\n|X|\n");
  json_decref(blank);
  json_decref(null_rec);
  json_decref(list_rec);
}

static void test_parse_format(void **state) {
  static const char *const names[] = {"json", "text", "table", "yaml", "yaml-stream"};
  cli_format f;
  kerr e;
  (void)state;
  for (int i = 0; i < 5; i++) {
    assert_int_equal(cli_format_parse(names[i], &f, &e), KERR_OK);
    assert_int_equal((int)f, i);
  }
  assert_int_equal(cli_format_parse("JSON", &f, &e), KERR_VALIDATION);
  assert_int_equal(cli_format_parse("", &f, &e), KERR_VALIDATION);
  assert_int_equal(cli_format_parse(NULL, &f, &e), KERR_VALIDATION);
  assert_non_null(strstr(e.msg, "Invalid choice"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_numbers_strings_containers),
      cmocka_unit_test(test_text_nested_rows),
      cmocka_unit_test(test_text_list_of_objects_union),
      cmocka_unit_test(test_text_bare_lists),
      cmocka_unit_test(test_table_list_of_objects),
      cmocka_unit_test(test_table_cell_in_a_narrowed_column),
      cmocka_unit_test(test_table_multiline_value),
      cmocka_unit_test(test_table_wide_characters),
      cmocka_unit_test(test_table_repeated_header_with_subtables),
      cmocka_unit_test(test_table_vertical_when_too_wide),
      cmocka_unit_test(test_empty_and_false_responses),
      cmocka_unit_test(test_scalars_at_top_level),
      cmocka_unit_test(test_text_python_repr_of_nested_value),
      cmocka_unit_test(test_table_color),
      cmocka_unit_test(test_table_terminal_width),
      cmocka_unit_test(test_yaml_quoting_and_look),
      cmocka_unit_test(test_depth_bound),
      cmocka_unit_test(test_unprintable_data_refused),
      cmocka_unit_test(test_output_cap),
      cmocka_unit_test(test_table_cap_counts_cells),
      cmocka_unit_test(test_float_spellings),
      cmocka_unit_test(test_text_names_upper_cased_beyond_ascii),
      cmocka_unit_test(test_null_error_struct),
      cmocka_unit_test(test_keys_with_nul_bytes),
      cmocka_unit_test(test_table_untitled_box_and_empty_items),
      cmocka_unit_test(test_table_memory_bounded),
      cmocka_unit_test(test_parse_format),
      cmocka_unit_test(test_text_array_scalars_then_arrays),
      cmocka_unit_test(test_text_records_lines),
      cmocka_unit_test(test_text_refusals),
      cmocka_unit_test(test_table_record_boxes),
      cmocka_unit_test(test_table_items_go_to_the_last_box),
      cmocka_unit_test(test_table_refusals_and_false_replies),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
