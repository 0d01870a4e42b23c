/* test_cli_validate.c - unit tests for lib/cli/validate: each rule of the AWS
 * CLI's parameter validation on small requests, with the report botocore's
 * validator gives for them (tests/e2e/test_cli_validate.py keeps comparing
 * against it on generated requests), on the KMS and CloudHSMv2 models and on
 * shapes of this file's own for what those models lack (longs, doubles, map
 * keys with a minimum, maps of lists); then what is ours on purpose: hidden
 * secrets, the report's bound, nesting bounds, the contract. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/validate.h"

#define HEADER "Parameter validation failed:\n"

/* Validate `request_json` for `op` and compare the report with `expected`
 * (NULL: the request must pass). */
static void expect_report_for(const model_op *op, const char *request_json, const char *expected) {
  json_error_t jerr;
  json_t *request = json_loads(request_json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  char *report = (char *)"untouched";
  kerr err;
  kerr_code rc;
  if (!request) fail_msg("bad test JSON %s: %s", request_json, jerr.text);
  rc = cli_validate_request(op, request, &report, &err);
  if (!expected) {
    if (rc != KERR_OK) fail_msg("%s: refused: %s", request_json, report ? report : err.msg);
    assert_null(report);
  } else {
    assert_int_equal(rc, KERR_VALIDATION);
    assert_non_null(report);
    if (strcmp(report, expected) != 0)
      fail_msg("%s:\n got: %s\nwant: %s", request_json, report, expected);
    assert_int_equal(err.code, KERR_VALIDATION);
  }
  free(report);
  json_decref(request);
}

static const model_op *kms_op(const char *name) {
  const model_op *op = model_find_op(&model_kms, name);
  if (!op) fail_msg("no KMS operation %s", name);
  return op;
}

static void expect_kms(const char *op, const char *request_json, const char *expected) {
  expect_report_for(kms_op(op), request_json, expected);
}

/* ---- shapes of this file's own ---------------------------------------------- */

static const model_shape short_string = {.name = "Short", .type = MODEL_STRING, .has_min = 1,
                                         .min = 2, .pattern_index = -1};
static const model_shape any_string = {.name = "Any", .type = MODEL_STRING, .pattern_index = -1};
static const model_shape long_shape = {.name = "Lg", .type = MODEL_LONG, .has_min = 1,
                                       .min = -5, .pattern_index = -1};
static const model_shape double_shape = {.name = "Db", .type = MODEL_DOUBLE, .has_min = 1,
                                         .min = 2, .pattern_index = -1};
/* A map minimum the AWS CLI does not check; its keys' minimum it does. */
static const model_shape short_map = {.name = "Mp", .type = MODEL_MAP, .has_min = 1, .min = 2,
                                      .pattern_index = -1, .key = &short_string,
                                      .value = &short_string};
static const model_shape short_list = {.name = "Lst", .type = MODEL_LIST, .has_min = 1, .min = 2,
                                       .pattern_index = -1, .member = &short_string};
static const model_shape map_of_lists = {.name = "MapOfLists", .type = MODEL_MAP,
                                         .pattern_index = -1, .key = &any_string,
                                         .value = &short_list};
static const model_shape secret_string = {.name = "Secret", .type = MODEL_STRING, .has_min = 1,
                                          .min = 3, .pattern_index = -1, .sensitive = 1};
static const model_shape secret_keyed_map = {.name = "SecretKeys", .type = MODEL_MAP,
                                             .pattern_index = -1, .key = &secret_string,
                                             .value = &any_string};
static const model_shape secret_long = {.name = "SecretLong", .type = MODEL_LONG, .has_min = 1,
                                        .min = 10, .pattern_index = -1, .sensitive = 1};
static const model_member own_members[] = {
    {"R", &short_string, 1, ""},       {"L", &long_shape, 0, ""},
    {"D", &double_shape, 0, ""},       {"M", &short_map, 0, ""},
    {"Li", &short_list, 0, ""},        {"ML", &map_of_lists, 0, ""},
    {"SK", &secret_keyed_map, 0, ""},  {"SL", &secret_long, 0, ""},
};
static const model_shape own_input = {.name = "In", .type = MODEL_STRUCTURE, .pattern_index = -1,
                                      .members = own_members,
                                      .member_count = sizeof own_members / sizeof own_members[0]};
static const model_op own_op = {.name = "Own", .input = &own_input};
static const model_op no_input_op = {.name = "NoInput", .input = NULL};

/* ---- the rules ---------------------------------------------------------------- */

static void test_passes(void **state) {
  (void)state;
  expect_kms("DescribeKey", "{\"KeyId\": \"alias/x\"}", NULL);
  expect_kms("TagResource",
             "{\"KeyId\": \"k\", \"Tags\": [{\"TagKey\": \"a\", \"TagValue\": \"\"}]}",
             NULL);
  expect_kms("Encrypt",
             "{\"KeyId\": \"k\", \"Plaintext\": \"aGk=\", \"EncryptionContext\": {\"\": \"\"},"
             " \"GrantTokens\": [], \"DryRun\": false}",
             NULL);
  /* Maximums, patterns and enums are the server's business. */
  expect_kms("ListKeys", "{\"Limit\": 100000, \"Marker\": \"~~~\"}", NULL);
  expect_kms("CreateKey", "{\"KeyUsage\": \"NOT_AN_ENUM\", \"Tags\": []}", NULL);
}

static void test_order(void **state) {
  (void)state;
  /* Missing required members, then unknown ones in the order given, then the
   * known ones in the order given. */
  expect_kms("TagResource", "{}",
             HEADER "Missing required parameter in input: \"KeyId\"\n"
                    "Missing required parameter in input: \"Tags\"");
  expect_kms("TagResource",
             "{\"Foo\": 1, \"KeyId\": \"\", \"Bar\": 2, \"Tags\": [{\"TagKey\":"
             " \"\", \"Baz\": 1}]}",
             HEADER "Unknown parameter in input: \"Foo\", must be one of: KeyId, Tags\n"
                    "Unknown parameter in input: \"Bar\", must be one of: KeyId, Tags\n"
                    "Invalid length for parameter KeyId, value: 0, valid min length: 1\n"
                    "Missing required parameter in Tags[0]: \"TagValue\"\n"
                    "Unknown parameter in Tags[0]: \"Baz\", must be one of: TagKey, TagValue\n"
                    "Invalid length for parameter Tags[0].TagKey, value: 0, valid min length: 1");
  expect_kms("ListKeys", "{\"Marker\": null, \"Limit\": null}",
             HEADER "Invalid type for parameter Marker, value: None, type: <class 'NoneType'>, "
                    "valid types: <class 'str'>\n"
                    "Invalid type for parameter Limit, value: None, type: <class 'NoneType'>, "
                    "valid types: <class 'int'>");
}

static void test_types(void **state) {
  (void)state;
  expect_kms("ListKeys", "[]",
             HEADER "Invalid type for parameter input, value: [], type: <class 'list'>, valid "
                    "types: <class 'dict'>");
  expect_kms("ListKeys", "\"x\"",
             HEADER "Invalid type for parameter input, value: x, type: <class 'str'>, valid "
                    "types: <class 'dict'>");
  expect_kms("CreateKey", "{\"BypassPolicyLockoutSafetyCheck\": 1}",
             HEADER "Invalid type for parameter BypassPolicyLockoutSafetyCheck, value: 1, type: "
                    "<class 'int'>, valid types: <class 'bool'>");
  expect_kms("CreateKey", "{\"Tags\": {\"a\": 1}}",
             HEADER "Invalid type for parameter Tags, value: {'a': 1}, type: <class 'dict'>, "
                    "valid types: <class 'list'>, <class 'tuple'>");
  expect_kms("CreateKey", "{\"Tags\": [1, \"x\", null, [1]]}",
             HEADER "Invalid type for parameter Tags[0], value: 1, type: <class 'int'>, valid "
                    "types: <class 'dict'>\n"
                    "Invalid type for parameter Tags[1], value: x, type: <class 'str'>, valid "
                    "types: <class 'dict'>\n"
                    "Invalid type for parameter Tags[2], value: None, type: <class 'NoneType'>, "
                    "valid types: <class 'dict'>\n"
                    "Invalid type for parameter Tags[3], value: [1], type: <class 'list'>, valid "
                    "types: <class 'dict'>");
  /* A blob takes any string (base64 on the wire), of any length. */
  expect_kms("Decrypt", "{\"CiphertextBlob\": \"\"}", NULL);
  expect_kms("Decrypt", "{\"CiphertextBlob\": 5}",
             HEADER "Invalid type for parameter CiphertextBlob, value: 5, type: <class 'int'>, "
                    "valid types: <class 'bytes'>, <class 'bytearray'>, file-like object");
  /* A boolean is an integer; a whole real is not. */
  expect_kms("ListKeys", "{\"Limit\": true}", NULL);
  expect_kms("ListKeys", "{\"Limit\": false}",
             HEADER "Invalid value for parameter Limit, value: False, valid min value: 1");
  expect_kms("ListKeys", "{\"Limit\": 1.0}",
             HEADER "Invalid type for parameter Limit, value: 1.0, type: <class 'float'>, valid "
                    "types: <class 'int'>");
  expect_kms("ListKeys", "{\"Limit\": {\"a\": 0}}",
             HEADER "Invalid type for parameter Limit, value: {'a': 0}, type: <class 'dict'>, "
                    "valid types: <class 'int'>");
}

static void test_timestamps(void **state) {
  static const char *const valid[] = {"0", "-1", "true", "253402300799", "-62135596800",
                                      "1e11", "253402300799.4"};
  static const char *const invalid[] = {"253402300800", "-62135596801", "1e12",
                                        "253402300799.9999996", "-62135596800.5", "1e300",
                                        "\"garbage\"", "null"};
  char request[256], expected[512];
  (void)state;
  for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
    snprintf(request, sizeof request,
             "{\"KeyId\": \"k\", \"ImportToken\": \"x\", \"EncryptedKeyMaterial\": \"y\", "
             "\"ValidTo\": %s}", valid[i]);
    expect_kms("ImportKeyMaterial", request, NULL);
  }
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
    json_t *v = json_loads(invalid[i], JSON_DECODE_ANY, NULL);
    const char *printed = json_is_string(v) ? json_string_value(v)
                          : json_is_null(v) ? "None"
                          : i == 2          ? "1000000000000.0"
                          : i == 3          ? "253402300800.0"
                          : i == 4          ? "-62135596800.5"
                          : i == 5          ? "1e+300"
                                            : invalid[i];
    const char *type = json_is_string(v) ? "str" : json_is_null(v) ? "NoneType"
                       : json_is_integer(v) ? "int" : "float";
    snprintf(request, sizeof request,
             "{\"KeyId\": \"k\", \"ImportToken\": \"x\", \"EncryptedKeyMaterial\": \"y\", "
             "\"ValidTo\": %s}", invalid[i]);
    snprintf(expected, sizeof expected,
             HEADER "Invalid type for parameter ValidTo, value: %s, type: <class '%s'>, valid "
                    "types: <class 'datetime.datetime'>, timestamp-string",
             printed, type);
    expect_kms("ImportKeyMaterial", request, expected);
    json_decref(v);
  }
}

static void test_lengths_and_minimums(void **state) {
  (void)state;
  /* Characters, not bytes: 18 two-byte characters are 18 long. */
  expect_kms("CreateCustomKeyStore",
             "{\"CustomKeyStoreName\": \"n\", \"CloudHsmClusterId\": "
             "\"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
             "\\u00e9\\u00e9\\u00e9"
             "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\"}",
             HEADER "Invalid length for parameter CloudHsmClusterId, value: 18, valid min "
                    "length: 19");
  expect_kms("CreateCustomKeyStore",
             "{\"CustomKeyStoreName\": \"n\", \"CloudHsmClusterId\": "
             "\"\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00\\ud83d"
             "\\ude00\\ud83d\\ude00"
             "\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00"
             "\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00"
             "\\ud83d\\ude00\"}",
             NULL);
  expect_kms("ListKeys", "{\"Limit\": -5, \"Marker\": \"\"}",
             HEADER "Invalid value for parameter Limit, value: -5, valid min value: 1\n"
                    "Invalid length for parameter Marker, value: 0, valid min length: 1");
  expect_report_for(model_find_op(&model_cloudhsmv2, "TagResource"),
                    "{\"ResourceId\": \"r\", \"TagList\": []}",
                    HEADER "Invalid length for parameter TagList, value: 0, valid min length: 1");
}

static void test_nesting_names(void **state) {
  (void)state;
  expect_kms("Encrypt",
             "{\"KeyId\": \"k\", \"Plaintext\": \"x\", \"EncryptionContext\": "
             "{\"\": \"\", \"a\": 1, \"b\": [1]}}",
             HEADER "Invalid type for parameter EncryptionContext.a, value: 1, type: <class "
                    "'int'>, valid types: <class 'str'>\n"
                    "Invalid type for parameter EncryptionContext.b, value: [1], type: <class "
                    "'list'>, valid types: <class 'str'>");
  expect_kms("CreateGrant",
             "{\"KeyId\": \"k\", \"GranteePrincipal\": \"\", \"Operations\": [], \"Constraints\": "
             "{\"EncryptionContextSubset\": {\"a\": 1}, \"X\": 1}}",
             HEADER "Invalid length for parameter GranteePrincipal, value: 0, valid min length: 1\n"
                    "Unknown parameter in Constraints: \"X\", must be one of: "
                    "EncryptionContextSubset, EncryptionContextEquals\n"
                    "Invalid type for parameter Constraints.EncryptionContextSubset.a, value: 1, "
                    "type: <class 'int'>, valid types: <class 'str'>");
  expect_report_for(model_find_op(&model_cloudhsmv2, "DescribeClusters"),
                    "{\"Filters\": {\"states\": [\"a\", 2], \"\": null}}",
                    HEADER "Invalid type for parameter Filters.states[1], value: 2, type: <class "
                           "'int'>, valid types: <class 'str'>\n"
                           "Invalid type for parameter Filters., value: None, type: <class "
                           "'NoneType'>, valid types: <class 'list'>, <class 'tuple'>");
}

/* Longs, doubles, map keys with a minimum, maps of lists: shapes the two
 * models do not have, with botocore's reports for the same shapes. */
static void test_own_shapes(void **state) {
  (void)state;
  expect_report_for(&own_op, "{\"R\": \"ab\", \"L\": -6, \"D\": 1.0}",
                    HEADER "Invalid value for parameter L, value: -6, valid min value: -5\n"
                           "Invalid value for parameter D, value: 1.0, valid min value: 2");
  expect_report_for(&own_op,
                    "{\"R\": \"ab\", \"L\": 1.0, \"D\": true, \"M\": {\"a\": \"b\", \"\": \"xy\", "
                    "\"cd\": \"ef\"}}",
                    HEADER "Invalid type for parameter L, value: 1.0, type: <class 'float'>, valid "
                           "types: <class 'int'>\n"
                           "Invalid value for parameter D, value: True, valid min value: 2\n"
                           "Invalid length for parameter M (key: a), value: 1,"
                           " valid min length: 2\n"
                           "Invalid length for parameter M.a, value: 1, valid min length: 2\n"
                           "Invalid length for parameter M (key: ), value: 0, valid min length: 2");
  expect_report_for(&own_op,
                    "{\"R\": \"ab\", \"L\": 9223372036854775807, \"D\": -9223372036854775808}",
                    HEADER "Invalid value for parameter D, value: -9223372036854775808, valid min "
                           "value: 2");
  expect_report_for(&own_op, "{\"R\": \"ab\", \"D\": 1.999, \"Li\": [\"\\u00e9\"]}",
                    HEADER "Invalid value for parameter D, value: 1.999, valid min value: 2\n"
                           "Invalid length for parameter Li, value: 1, valid min length: 2\n"
                           "Invalid length for parameter Li[0], value: 1, valid min length: 2");
  expect_report_for(&own_op,
                    "{\"R\": \"ab\", \"ML\": {\"k\": [\"a\"], \"j\": [1, \"bb\"], \"\": null}}",
                    HEADER "Invalid length for parameter ML.k, value: 1, valid min length: 2\n"
                           "Invalid length for parameter ML.k[0], value: 1, valid min length: 2\n"
                           "Invalid type for parameter ML.j[0], value: 1, type: <class 'int'>, "
                           "valid types: <class 'str'>\n"
                           "Invalid type for parameter ML., value: None, type: <class 'NoneType'>, "
                           "valid types: <class 'list'>, <class 'tuple'>");
  expect_report_for(&own_op, "{\"R\": \"ab\", \"D\": \"2\"}",
                    HEADER "Invalid type for parameter D, value: 2, type: <class 'str'>, valid "
                           "types: <class 'float'>, <class 'decimal.Decimal'>, <class 'int'>");
  expect_report_for(&own_op, "{\"M\": {}, \"Li\": [], \"ML\": {}}",
                    HEADER "Missing required parameter in input: \"R\"\n"
                           "Invalid length for parameter Li, value: 0, valid min length: 2");
  /* Without an input shape only an empty object passes. */
  expect_report_for(&no_input_op, "{}", NULL);
  expect_report_for(&no_input_op, "{\"Foo\": 1, \"Bar\": [1]}",
                    HEADER "Unknown parameter in input: \"Foo\", must be one of: \n"
                           "Unknown parameter in input: \"Bar\", must be one of: ");
  expect_report_for(&no_input_op, "null",
                    HEADER "Invalid type for parameter input, value: None, type: <class "
                           "'NoneType'>, valid types: <class 'dict'>");
}

/* Values as Python's str() and repr() print them. */
static void test_python_values(void **state) {
  (void)state;
  expect_kms("DescribeKey",
             "{\"KeyId\": [1.0, 1e16, 1e15, 1e-5, 1e-4, 0.1, 123456789.125, 1e300, -0.0, 0.0,"
             " 1.7976931348623157e308, 5e-324, 2.5e-300, 0.30000000000000004, 1e22,"
             " 12345678901234567.0, 9007199254740993.0, 0.001, 1234.5e-10, -2.5]}",
             HEADER "Invalid type for parameter KeyId, value: [1.0, 1e+16, 1000000000000000.0, "
                    "1e-05, 0.0001, 0.1, 123456789.125, 1e+300, -0.0, 0.0, "
                    "1.7976931348623157e+308, 5e-324, 2.5e-300, 0.30000000000000004, 1e+22, "
                    "1.2345678901234568e+16, 9007199254740992.0, 0.001, 1.2345e-07, -2.5], type: "
                    "<class 'list'>, valid types: <class 'str'>");
  expect_kms("DescribeKey",
             "{\"KeyId\": [\"a\", \"b\\\"\", \"c'\", \"d'\\\"\", \"\\\\\", \"\\u0000\\u001f\","
             " \"\\u00e9\\n\\t\\r\\u2028\\u007f\\u00a0\\ud83d\\ude00\","
             " \"\\u00ad\\u0378\\udb40\\udc01\\u3000 \\u00a0 \\udbff\\udfff\","
             " {\"k\": null, \"t\": true, \"f\": false, \"'\": {}}, [], -7]}",
             HEADER "Invalid type for parameter KeyId, value: ['a', 'b\"', \"c'\", 'd\\'\"', "
                    "'\\\\', '\\x00\\x1f', '\xc3\xa9\\n\\t\\r\\u2028\\x7f\\xa0\xf0\x9f\x98\x80', "
                    "'\\xad\\u0378\\U000e0001\\u3000 \\xa0 \\U0010ffff', "
                    "{'k': None, 't': True, 'f': False, \"'\": {}}, [], -7], type: <class "
                    "'list'>, valid types: <class 'str'>");
  /* A string printed bare, as str() does, escapes nothing but NUL. */
  expect_kms("ListKeys", "{\"Limit\": \"a\\n'\\\"\\u2028b\\u0000c\"}",
             HEADER "Invalid type for parameter Limit, value: a\n'\"\xe2\x80\xa8" "b\\x00c, type: "
                    "<class 'str'>, valid types: <class 'int'>");
}

/* ---- ours on purpose ---------------------------------------------------------- */

static void test_secrets_hidden(void **state) {
  static const char *const requests[][2] = {
      {"Encrypt", "{\"KeyId\": \"k\", \"Plaintext\": [\"topsecret\"]}"},
      {"Encrypt", "{\"KeyId\": \"k\", \"Plaintext\": 12345}"},
      {"CreateCustomKeyStore",
       "{\"CustomKeyStoreName\": \"n\", \"KeyStorePassword\": {\"p\": \"topsecret\"}}"},
      {"UpdateCustomKeyStore",
       "{\"CustomKeyStoreId\": \"c\", \"XksProxyAuthenticationCredential\": [\"topsecret\"]}"},
      {"UpdateCustomKeyStore",
       "{\"CustomKeyStoreId\": \"c\", \"XksProxyAuthenticationCredential\": "
       "{\"AccessKeyId\": [\"topsecret\"], \"RawSecretAccessKey\": \"topsecret\"}}"},
  };
  (void)state;
  for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++) {
    json_t *request = json_loads(requests[i][1], 0, NULL);
    char *report = NULL;
    kerr err;
    assert_non_null(request);
    assert_int_equal(cli_validate_request(kms_op(requests[i][0]), request, &report, &err),
                     KERR_VALIDATION);
    assert_non_null(strstr(report, "value: " CLI_VALIDATE_HIDDEN ", type: <class '"));
    assert_null(strstr(report, "topsecret"));
    assert_null(strstr(report, "12345"));
    assert_null(strstr(err.msg, "topsecret"));
    free(report);
    json_decref(request);
  }
  /* A whole request that holds a secret is hidden when it is wrong. */
  expect_kms("Encrypt", "[\"topsecret\"]",
             HEADER "Invalid type for parameter input, value: " CLI_VALIDATE_HIDDEN ", type: "
                    "<class 'list'>, valid types: <class 'dict'>");
  /* A length is a count, not the text: it stays. */
  expect_kms("CreateCustomKeyStore",
             "{\"CustomKeyStoreName\": \"n\", \"KeyStorePassword\": \"abc\"}",
             HEADER "Invalid length for parameter KeyStorePassword, value: 3, valid min length: 7");
  /* Sensitive numbers and map keys are hidden too. */
  expect_report_for(&own_op, "{\"R\": \"ab\", \"SL\": 7, \"SK\": {\"pw\": 1}}",
                    HEADER "Invalid value for parameter SL, value: " CLI_VALIDATE_HIDDEN
                           ", valid min value: 10\n"
                           "Invalid length for parameter SK (key: " CLI_VALIDATE_HIDDEN
                           "), value: 2, valid min length: 3\n"
                           "Invalid type for parameter SK." CLI_VALIDATE_HIDDEN
                           ", value: 1, type: <class 'int'>, valid types: <class 'str'>");
}

static void test_report_bound(void **state) {
  json_t *request = json_object(), *keys = json_array();
  char *report = NULL;
  kerr err;
  size_t len;
  (void)state;
  /* 20000 list items of two-byte characters: far more than the bound. */
  for (int i = 0; i < 20000; i++) json_array_append_new(keys, json_string("\xc3\xa9\xc3\xa9"));
  json_object_set_new(request, "KeyId", keys);
  assert_int_equal(cli_validate_request(kms_op("DescribeKey"), request, &report, &err),
                   KERR_VALIDATION);
  len = strlen(report);
  assert_true(len <= CLI_VALIDATE_MAX_REPORT);
  assert_true(len > CLI_VALIDATE_MAX_REPORT - 64);
  assert_string_equal(report + len - strlen(CLI_VALIDATE_TRUNCATED), CLI_VALIDATE_TRUNCATED);
  assert_int_equal(report[len - strlen(CLI_VALIDATE_TRUNCATED) - 1], '\n');
  /* The cut falls between characters: the byte before the newline ends one. */
  assert_int_not_equal((unsigned char)report[len - strlen(CLI_VALIDATE_TRUNCATED) - 2], 0xC3);
  assert_non_null(strstr(err.msg, "truncated"));
  assert_true(strncmp(report, HEADER "Invalid type for parameter KeyId, value: ['", 50) == 0);
  free(report);
  json_decref(request);

  /* Many faults: the report stops, still bounded. */
  request = json_object();
  keys = json_array();
  for (int i = 0; i < 5000; i++) json_array_append_new(keys, json_integer(i));
  json_object_set_new(request, "GrantTokens", keys);
  json_object_set_new(request, "KeyId", json_string("k"));
  assert_int_equal(cli_validate_request(kms_op("DescribeKey"), request, &report, &err),
                   KERR_VALIDATION);
  assert_true(strlen(report) <= CLI_VALIDATE_MAX_REPORT);
  assert_non_null(strstr(report, "\nInvalid type for parameter GrantTokens[99], value: 99, "));
  assert_null(strstr(report, "GrantTokens[4999]"));
  free(report);
  json_decref(request);
}

static void test_depth_bounds(void **state) {
  enum { CHAIN = CLI_VALIDATE_MAX_DEPTH + 6 };
  static model_shape chain[CHAIN];
  json_t *deep = json_string("x"), *request;
  const char *tail;
  char *report = NULL;
  kerr err;
  model_op chain_op = {.name = "Chain", .input = &chain[0]};
  model_member member = {"Deep", &chain[1], 1, ""};
  (void)state;
  /* A value nested 100 deep is printed down to the bound, then "...". */
  for (int i = 0; i < 100; i++) {
    json_t *wrap = json_array();
    json_array_append_new(wrap, deep);
    deep = wrap;
  }
  request = json_pack("{s:o}", "KeyId", deep);
  assert_int_equal(cli_validate_request(kms_op("DescribeKey"), request, &report, &err),
                   KERR_VALIDATION);
  assert_non_null(strstr(report, "[[[...]]]"));
  /* 64 lists written out, the 65th as "[...]": 65 closing brackets. */
  tail = strstr(report, "...");
  assert_int_equal(strspn(tail + 3, "]"), CLI_VALIDATE_MAX_DEPTH + 1);
  assert_int_equal(strspn(strstr(report, "value: ") + 7, "["), CLI_VALIDATE_MAX_DEPTH + 1);
  free(report);
  json_decref(request);

  /* A model nesting deeper than the bound is refused, not walked. */
  chain[0] = (model_shape){.name = "Top", .type = MODEL_STRUCTURE, .pattern_index = -1,
                           .members = &member, .member_count = 1};
  for (int i = 1; i < CHAIN; i++)
    chain[i] = (model_shape){.name = "Link", .type = i + 1 < CHAIN ? MODEL_LIST : MODEL_STRING,
                             .pattern_index = -1, .member = i + 1 < CHAIN ? &chain[i + 1] : NULL};
  deep = json_string("x");
  for (int i = 1; i < CHAIN - 1; i++) {
    json_t *wrap = json_array();
    json_array_append_new(wrap, deep);
    deep = wrap;
  }
  request = json_pack("{s:o}", "Deep", deep);
  assert_int_equal(cli_validate_request(&chain_op, request, &report, &err), KERR_INTERNAL);
  assert_null(report);
  assert_non_null(strstr(err.msg, "deeper"));
  json_decref(request);
}

static void test_contract(void **state) {
  json_t *request = json_object();
  char *report = (char *)"untouched";
  kerr err;
  (void)state;
  assert_int_equal(cli_validate_request(NULL, request, &report, &err), KERR_INTERNAL);
  assert_null(report);
  assert_int_equal(cli_validate_request(kms_op("ListKeys"), request, NULL, &err), KERR_INTERNAL);
  /* A NULL request is JSON null; a NULL err is fine. */
  assert_int_equal(cli_validate_request(kms_op("ListKeys"), NULL, &report, NULL), KERR_VALIDATION);
  assert_string_equal(report, HEADER "Invalid type for parameter input, value: None, type: "
                                     "<class 'NoneType'>, valid types: <class 'dict'>");
  free(report);
  assert_int_equal(cli_validate_request(kms_op("ListKeys"), request, &report, NULL), KERR_OK);
  assert_null(report);
  /* err names the operation and counts the faults. */
  json_object_set_new(request, "A", json_null());
  json_object_set_new(request, "B", json_null());
  assert_int_equal(cli_validate_request(kms_op("ListKeys"), request, &report, &err),
                   KERR_VALIDATION);
  assert_string_equal(err.msg, "ListKeys: 2 parameter faults");
  free(report);
  json_decref(request);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_passes),         cmocka_unit_test(test_order),
      cmocka_unit_test(test_types),          cmocka_unit_test(test_timestamps),
      cmocka_unit_test(test_lengths_and_minimums), cmocka_unit_test(test_nesting_names),
      cmocka_unit_test(test_own_shapes),     cmocka_unit_test(test_python_values),
      cmocka_unit_test(test_secrets_hidden), cmocka_unit_test(test_report_bound),
      cmocka_unit_test(test_depth_bounds),   cmocka_unit_test(test_contract),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
