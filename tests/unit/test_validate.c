/* test_validate.c - unit tests of api_validate: request bodies checked
 * against real operations of the generated KMS and CloudHSMv2 models, with
 * the exact SerializationException / ValidationException texts clients see. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "api/api_validate.h"
#include "core/codec.h"

/* Validate `json` (parsed here) as the input of `op_name` in `svc`. */
static kerr_code validate_in(const model_service *svc, const char *op_name, const char *json,
                             kerr *err) {
  json_error_t jerr;
  json_t *body = json_loads(json, JSON_DECODE_ANY, &jerr);
  const model_op *op = model_find_op(svc, op_name);
  kerr_code rc;

  assert_non_null(op);
  if (!body) fail_msg("test body does not parse: %s", jerr.text);
  kerr_clear(err);
  rc = api_validate_input(op, body, err);
  json_decref(body);
  return rc;
}

static kerr_code validate(const char *op_name, const char *json, kerr *err) {
  return validate_in(&model_kms, op_name, json, err);
}

/* A JSON string literal holding base64 of `n` bytes of 'A'. */
static char *b64_of_size(size_t n) {
  uint8_t *raw = malloc(n ? n : 1);
  char *text = malloc(b64_encoded_size(n) + 2);
  assert_non_null(raw);
  assert_non_null(text);
  memset(raw, 'A', n);
  text[0] = '"';
  b64_encode(raw, n, text + 1);
  strcat(text, "\"");
  free(raw);
  return text;
}

/* Many threads validating at once, racing on the first use of the patterns. */
static void *validate_many(void *arg) {
  long *bad_out = arg;
  long bad = 0;
  for (int i = 0; i < 300; i++) {
    kerr err;
    if (validate("CreateKey", "{\"XksKeyId\":\"abc-1\"}", &err) != KERR_OK) bad++;
    if (validate("CreateKey", "{\"XksKeyId\":\"a b\"}", &err) != KERR_VALIDATION) bad++;
    if (validate_in(&model_cloudhsmv2, "DescribeClusters", "{\"Filters\":{\"a b\":[]}}",
                    &err) != KERR_VALIDATION)
      bad++;
  }
  *bad_out = bad;
  return NULL;
}

static void test_concurrent_first_use(void **state) {
  pthread_t threads[8];
  long bad[8] = {0};
  (void)state;
  for (int i = 0; i < 8; i++)
    assert_int_equal(pthread_create(&threads[i], NULL, validate_many, &bad[i]), 0);
  for (int i = 0; i < 8; i++) {
    assert_int_equal(pthread_join(threads[i], NULL), 0);
    assert_int_equal(bad[i], 0);
  }
}

static void test_valid_requests_pass(void **state) {
  kerr err;
  (void)state;
  assert_int_equal(validate("Encrypt", "{\"KeyId\":\"alias/x\",\"Plaintext\":\"aGVsbG8=\","
                                       "\"EncryptionContext\":{\"a\":\"b\"},"
                                       "\"GrantTokens\":[\"t\"],\"EncryptionAlgorithm\":"
                                       "\"SYMMETRIC_DEFAULT\",\"DryRun\":false}", &err),
                   KERR_OK);
  assert_int_equal(validate("CreateKey", "{}", &err), KERR_OK);
  assert_int_equal(validate("CreateKey", "{\"KeySpec\":\"SYMMETRIC_DEFAULT\",\"Description\":\"\","
                                         "\"Tags\":[{\"TagKey\":\"k\",\"TagValue\":\"\"}],"
                                         "\"XksKeyId\":\"ab-c_d.9\",\"MultiRegion\":true}", &err),
                   KERR_OK);
  assert_int_equal(validate("GenerateRandom", "{\"NumberOfBytes\":1024}", &err), KERR_OK);
  assert_int_equal(validate("GenerateDataKey", "{\"KeyId\":\"k\",\"NumberOfBytes\":1}", &err),
                   KERR_OK);
  /* JSON null is "absent", and unknown members are ignored as AWS does. */
  assert_int_equal(validate("CreateKey", "{\"Description\":null,\"NoSuchMember\":[1,{}]}", &err),
                   KERR_OK);
}

static void test_encrypt_missing_key_id(void **state) {
  kerr err;
  (void)state;
  assert_int_equal(validate("Encrypt", "{\"Plaintext\":\"aGVsbG8=\"}", &err), KERR_VALIDATION);
  assert_string_equal(err.msg, "1 validation error detected: Value null at 'keyId' failed to "
                               "satisfy constraint: Member must not be null");
  assert_int_equal(err.code, KERR_VALIDATION);
}

static void test_encrypt_empty_key_id(void **state) {
  kerr err;
  (void)state;
  assert_int_equal(validate("Encrypt", "{\"KeyId\":\"\",\"Plaintext\":\"aGVsbG8=\"}", &err),
                   KERR_VALIDATION);
  assert_string_equal(err.msg, "1 validation error detected: Value '' at 'keyId' failed to "
                               "satisfy constraint: Member must have length greater than or "
                               "equal to 1");
}

static void test_encrypt_plaintext_size_counts_decoded_bytes(void **state) {
  kerr err;
  char body[8192];
  char *b64;
  (void)state;

  /* 4096 decoded bytes are 5464 base64 characters: allowed. */
  b64 = b64_of_size(4096);
  snprintf(body, sizeof body, "{\"KeyId\":\"k\",\"Plaintext\":%s}", b64);
  free(b64);
  assert_int_equal(validate("Encrypt", body, &err), KERR_OK);

  b64 = b64_of_size(4097);
  snprintf(body, sizeof body, "{\"KeyId\":\"k\",\"Plaintext\":%s}", b64);
  free(b64);
  assert_int_equal(validate("Encrypt", body, &err), KERR_VALIDATION);
  /* Sensitive: the value is never echoed. */
  assert_string_equal(err.msg, "1 validation error detected: Value at 'plaintext' failed to "
                               "satisfy constraint: Member must have length less than or equal "
                               "to 4096");
  assert_null(strstr(err.msg, "QUFB"));

  /* Empty plaintext decodes to 0 bytes. */
  assert_int_equal(validate("Encrypt", "{\"KeyId\":\"k\",\"Plaintext\":\"\"}", &err),
                   KERR_VALIDATION);
  assert_string_equal(err.msg, "1 validation error detected: Value at 'plaintext' failed to "
                               "satisfy constraint: Member must have length greater than or "
                               "equal to 1");
}

static void test_encrypt_plaintext_not_base64(void **state) {
  kerr err;
  (void)state;
  assert_int_equal(validate("Encrypt", "{\"KeyId\":\"k\",\"Plaintext\":\"not base64!\"}", &err),
                   KERR_SERIALIZATION);
  assert_non_null(strstr(err.msg, "plaintext"));
  assert_non_null(strstr(err.msg, "base64"));
  assert_null(strstr(err.msg, "not base64!"));
  /* Missing padding and URL-safe characters are not standard base64. */
  assert_int_equal(validate("Encrypt", "{\"KeyId\":\"k\",\"Plaintext\":\"aGVsbG8\"}", &err),
                   KERR_SERIALIZATION);
  assert_int_equal(validate("Encrypt", "{\"KeyId\":\"k\",\"Plaintext\":\"-_-_\"}", &err),
                   KERR_SERIALIZATION);
}

static void test_generate_data_key_number_of_bytes(void **state) {
  kerr err;
  (void)state;
  assert_int_equal(validate("GenerateDataKey", "{\"KeyId\":\"k\",\"NumberOfBytes\":0}", &err),
                   KERR_VALIDATION);
  assert_string_equal(err.msg, "1 validation error detected: Value '0' at 'numberOfBytes' "
                               "failed to satisfy constraint: Member must have value greater "
                               "than or equal to 1");
  assert_int_equal(validate("GenerateDataKey", "{\"KeyId\":\"k\",\"NumberOfBytes\":1025}", &err),
                   KERR_VALIDATION);
  assert_string_equal(err.msg, "1 validation error detected: Value '1025' at 'numberOfBytes' "
                               "failed to satisfy constraint: Member must have value less than "
                               "or equal to 1024");
}

static void test_generate_random(void **state) {
  kerr err;
  (void)state;
  assert_int_equal(validate("GenerateRandom", "{\"NumberOfBytes\":-5,\"CustomKeyStoreId\":\"\"}",
                            &err),
                   KERR_VALIDATION);
  assert_string_equal(err.msg,
                      "2 validation errors detected: Value '-5' at 'numberOfBytes' failed to "
                      "satisfy constraint: Member must have value greater than or equal to 1; "
                      "Value '' at 'customKeyStoreId' failed to satisfy constraint: Member must "
                      "have length greater than or equal to 1");
  /* Nested structure: the enum of Recipient.KeyEncryptionAlgorithm. */
  assert_int_equal(validate("GenerateRandom",
                            "{\"Recipient\":{\"KeyEncryptionAlgorithm\":\"RSA\"}}", &err),
                   KERR_VALIDATION);
  assert_string_equal(err.msg, "1 validation error detected: Value 'RSA' at "
                               "'recipient.keyEncryptionAlgorithm' failed to satisfy constraint: "
                               "Member must satisfy enum value set: [RSAES_OAEP_SHA_256]");
  /* An integer too large for Java's int is a deserialization failure. */
  assert_int_equal(validate("GenerateRandom", "{\"NumberOfBytes\":4294967296}", &err),
                   KERR_SERIALIZATION);
}

static void test_create_key_enum(void **state) {
  kerr err;
  (void)state;
  assert_int_equal(validate("CreateKey", "{\"KeySpec\":\"AES_256\"}", &err), KERR_VALIDATION);
  assert_string_equal(err.msg,
                      "1 validation error detected: Value 'AES_256' at 'keySpec' failed to "
                      "satisfy constraint: Member must satisfy enum value set: [RSA_2048, "
                      "RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521, "
                      "ECC_SECG_P256K1, SYMMETRIC_DEFAULT, HMAC_224, HMAC_256, HMAC_384, "
                      "HMAC_512, SM2, ML_DSA_44, ML_DSA_65, ML_DSA_87, ECC_NIST_EDWARDS25519]");
  /* Enums are case-sensitive. */
  assert_int_equal(validate("CreateKey", "{\"KeySpec\":\"symmetric_default\"}", &err),
                   KERR_VALIDATION);
}

static void test_create_key_description_length(void **state) {
  kerr err;
  char *body = malloc(8300);
  size_t o;
  (void)state;
  assert_non_null(body);
  o = (size_t)sprintf(body, "{\"Description\":\"");
  memset(body + o, 'd', 8193);
  strcpy(body + o + 8193, "\"}");
  assert_int_equal(validate("CreateKey", body, &err), KERR_VALIDATION);
  free(body);
  assert_non_null(strstr(err.msg, "' at 'description' failed to satisfy constraint: Member must "
                                  "have length less than or equal to 8192"));
  /* The echo is cut to 256 characters so the message stays bounded. */
  assert_true(strlen(err.msg) < 256 + 200);
  assert_non_null(strstr(err.msg, "Value 'dddd"));

  /* Length counts characters, not bytes: 8192 two-byte characters pass. */
  body = malloc(8192 * 2 + 64);
  assert_non_null(body);
  o = (size_t)sprintf(body, "{\"Description\":\"");
  for (int i = 0; i < 8192; i++) {
    body[o++] = (char)0xC3;
    body[o++] = (char)0xA9;
  }
  strcpy(body + o, "\"}");
  assert_int_equal(validate("CreateKey", body, &err), KERR_OK);
  free(body);
}

static void test_create_key_tags(void **state) {
  kerr err;
  (void)state;
  assert_int_equal(validate("CreateKey", "{\"Tags\":[{\"TagKey\":\"ok\",\"TagValue\":\"v\"},"
                                         "{\"TagKey\":\"\",\"TagValue\":\"v\"}]}", &err),
                   KERR_VALIDATION);
  assert_string_equal(err.msg, "1 validation error detected: Value '' at 'tags.2.member.tagKey' "
                               "failed to satisfy constraint: Member must have length greater "
                               "than or equal to 1");
  assert_int_equal(validate("CreateKey", "{\"Tags\":[{\"TagValue\":\"v\"}]}", &err),
                   KERR_VALIDATION);
  assert_string_equal(err.msg, "1 validation error detected: Value null at 'tags.1.member.tagKey' "
                               "failed to satisfy constraint: Member must not be null");
}

static void test_create_key_xks_key_id_pattern(void **state) {
  kerr err;
  (void)state;
  assert_int_equal(validate("CreateKey", "{\"XksKeyId\":\"bad key!\"}", &err), KERR_VALIDATION);
  assert_string_equal(err.msg, "1 validation error detected: Value 'bad key!' at 'xksKeyId' "
                               "failed to satisfy constraint: Member must satisfy regular "
                               "expression pattern: ^[a-zA-Z0-9-_.]+$");
  /* The whole value must match: a valid prefix is not enough, nor is a
   * trailing newline that '$' alone would accept. */
  assert_int_equal(validate("CreateKey", "{\"XksKeyId\":\"abc\\n\"}", &err), KERR_VALIDATION);
  assert_int_equal(validate("CreateKey", "{\"XksKeyId\":\"abc def\"}", &err), KERR_VALIDATION);
}

static void test_several_violations_in_order(void **state) {
  kerr err;
  (void)state;
  assert_int_equal(validate("Encrypt", "{\"KeyId\":\"\",\"GrantTokens\":[\"\"],"
                                       "\"EncryptionAlgorithm\":\"NOPE\"}", &err),
                   KERR_VALIDATION);
  assert_string_equal(err.msg,
                      "4 validation errors detected: "
                      "Value '' at 'keyId' failed to satisfy constraint: Member must have length "
                      "greater than or equal to 1; "
                      "Value null at 'plaintext' failed to satisfy constraint: Member must not be "
                      "null; "
                      "Value '' at 'grantTokens.1.member' failed to satisfy constraint: Member "
                      "must have length greater than or equal to 1; "
                      "Value 'NOPE' at 'encryptionAlgorithm' failed to satisfy constraint: Member "
                      "must satisfy enum value set: [SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, "
                      "RSAES_OAEP_SHA_256, SM2PKE]");
}

static void test_list_length(void **state) {
  kerr err;
  (void)state;
  assert_int_equal(validate("Encrypt", "{\"KeyId\":\"k\",\"Plaintext\":\"AA==\",\"GrantTokens\":"
                                       "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\","
                                       "\"j\",\"k\"]}", &err),
                   KERR_VALIDATION);
  assert_string_equal(err.msg, "1 validation error detected: Value '[a, b, c, d, e, f, g, h, i, "
                               "j, k]' at 'grantTokens' failed to satisfy constraint: Member must "
                               "have length less than or equal to 10");
}

static void test_encryption_context_map(void **state) {
  kerr err;
  (void)state;
  assert_int_equal(validate("Encrypt", "{\"KeyId\":\"k\",\"Plaintext\":\"AA==\","
                                       "\"EncryptionContext\":{}}", &err),
                   KERR_OK);
  /* Map values must be strings. */
  assert_int_equal(validate("Encrypt", "{\"KeyId\":\"k\",\"Plaintext\":\"AA==\","
                                       "\"EncryptionContext\":{\"a\":1}}", &err),
                   KERR_SERIALIZATION);
  assert_int_equal(validate("Encrypt", "{\"KeyId\":\"k\",\"Plaintext\":\"AA==\","
                                       "\"EncryptionContext\":[\"a\"]}", &err),
                   KERR_SERIALIZATION);
  assert_string_equal(err.msg, "Start of list found where not expected.");
}

static void test_map_key_constraints(void **state) {
  kerr err;
  (void)state;
  /* CloudHSMv2 Filters: map of Field (pattern) to a list of strings. */
  assert_int_equal(validate_in(&model_cloudhsmv2, "DescribeClusters",
                               "{\"Filters\":{\"clusterIds\":[\"cluster-abc\"]}}", &err),
                   KERR_OK);
  assert_int_equal(validate_in(&model_cloudhsmv2, "DescribeClusters",
                               "{\"Filters\":{\"bad key\":[\"x\"]}}", &err),
                   KERR_VALIDATION);
  assert_string_equal(err.msg, "1 validation error detected: Value '{bad key=[x]}' at 'filters' "
                               "failed to satisfy constraint: Map keys must satisfy constraint: "
                               "[Member must satisfy regular expression pattern: "
                               "[a-zA-Z0-9_-]+]");
  assert_int_equal(validate_in(&model_cloudhsmv2, "DescribeClusters",
                               "{\"Filters\":{\"states\":\"ACTIVE\"}}", &err),
                   KERR_SERIALIZATION);
}

static void test_wrong_json_types(void **state) {
  kerr err;
  (void)state;
  assert_int_equal(validate("GenerateRandom", "{\"NumberOfBytes\":\"32\"}", &err),
                   KERR_SERIALIZATION);
  assert_string_equal(err.msg, "class java.lang.String can not be converted to an Integer");
  assert_int_equal(validate("GenerateRandom", "{\"NumberOfBytes\":3.5}", &err),
                   KERR_SERIALIZATION);
  assert_int_equal(validate("Encrypt", "{\"KeyId\":{\"a\":1},\"Plaintext\":\"AA==\"}", &err),
                   KERR_SERIALIZATION);
  assert_string_equal(err.msg, "Start of structure or map found where not expected.");
  assert_int_equal(validate("Encrypt", "{\"KeyId\":[\"k\"],\"Plaintext\":\"AA==\"}", &err),
                   KERR_SERIALIZATION);
  assert_string_equal(err.msg, "Start of list found where not expected.");
  assert_int_equal(validate("Encrypt", "{\"KeyId\":5,\"Plaintext\":\"AA==\"}", &err),
                   KERR_SERIALIZATION);
  assert_string_equal(err.msg, "Found a number at 'keyId' where a String is expected.");
  assert_int_equal(validate("Encrypt", "{\"KeyId\":\"k\",\"Plaintext\":\"AA==\",\"DryRun\":"
                                       "\"true\"}", &err),
                   KERR_SERIALIZATION);
  assert_int_equal(validate("CreateKey", "{\"Tags\":{\"TagKey\":\"k\"}}", &err),
                   KERR_SERIALIZATION);
  assert_int_equal(validate("CreateKey", "{\"Tags\":[\"k\"]}", &err), KERR_SERIALIZATION);
  assert_int_equal(validate("GenerateRandom", "{\"Recipient\":\"x\"}", &err), KERR_SERIALIZATION);
  /* The body itself must be an object. */
  assert_int_equal(validate("GenerateRandom", "[]", &err), KERR_SERIALIZATION);
  assert_int_equal(validate("GenerateRandom", "\"x\"", &err), KERR_SERIALIZATION);
  assert_int_equal(api_validate_input(model_find_op(&model_kms, "Encrypt"), NULL, &err),
                   KERR_SERIALIZATION);
}

static void test_serialization_wins_over_violations(void **state) {
  kerr err;
  (void)state;
  /* AWS deserializes before it validates: a type error hides violations. */
  assert_int_equal(validate("Encrypt", "{\"KeyId\":\"\",\"Plaintext\":7}", &err),
                   KERR_SERIALIZATION);
}

static void test_sensitive_values_never_echoed(void **state) {
  kerr err;
  (void)state;
  /* XksProxyAuthenticationCredential's secret is sensitive with a pattern. */
  assert_int_equal(validate("CreateCustomKeyStore",
                            "{\"CustomKeyStoreName\":\"s\",\"XksProxyAuthenticationCredential\":"
                            "{\"AccessKeyId\":\"ABCDEFGHIJKLMNOPQRST\",\"RawSecretAccessKey\":"
                            "\"SECRET-SECRET-SECRET-SECRET-SECRET!!\"}}", &err),
                   KERR_VALIDATION);
  assert_null(strstr(err.msg, "SECRET"));
  assert_non_null(strstr(err.msg, "Value at 'xksProxyAuthenticationCredential.rawSecretAccessKey' "
                                  "failed to satisfy constraint: Member must satisfy regular "
                                  "expression pattern: ^[a-zA-Z0-9\\/+=]+$"));
  /* KeyStorePassword too short: sensitive, not echoed. */
  assert_int_equal(validate("CreateCustomKeyStore",
                            "{\"CustomKeyStoreName\":\"s\",\"KeyStorePassword\":\"pw\"}", &err),
                   KERR_VALIDATION);
  assert_null(strstr(err.msg, "'pw'"));
  assert_non_null(strstr(err.msg, "Value at 'keyStorePassword' failed"));
}

static void test_deep_nesting_is_bounded(void **state) {
  kerr err;
  json_t *body = json_object(), *cur = body;
  const model_op *op = model_find_op(&model_kms, "CreateKey");
  (void)state;
  /* Unknown members are not walked, so depth inside them is harmless. */
  for (int i = 0; i < 1000; i++) {
    json_t *next = json_object();
    json_object_set_new(cur, "X", next);
    cur = next;
  }
  assert_int_equal(api_validate_input(op, body, &err), KERR_OK);
  json_decref(body);
}

static void test_cloudhsmv2_integer_range(void **state) {
  kerr err;
  const model_op *op = model_find_op(&model_cloudhsmv2, "DescribeBackups");
  (void)state;
  assert_non_null(op);
  assert_int_equal(validate_in(&model_cloudhsmv2, "DescribeBackups", "{\"MaxResults\":0}", &err),
                   KERR_VALIDATION);
  assert_string_equal(err.msg, "1 validation error detected: Value '0' at 'maxResults' failed "
                               "to satisfy constraint: Member must have value greater than or "
                               "equal to 1");
}

static void test_all_patterns_compile(void **state) {
  kerr err;
  const model_service *svcs[] = {&model_kms, &model_cloudhsmv2};
  (void)state;
  for (size_t s = 0; s < 2; s++) {
    size_t seen = 0;
    kerr_clear(&err);
    if (api_validate_check_patterns(svcs[s], &err) != KERR_OK)
      fail_msg("%s: %s", svcs[s]->name, err.msg);
    /* Every patterned shape has a usable compiled pattern. */
    for (size_t i = 0; i < svcs[s]->shape_count; i++) {
      const model_shape *shape = &svcs[s]->shapes[i];
      if (!shape->pattern) continue;
      seen++;
      if (api_validate_pattern_matches(shape, "", 0) < 0)
        fail_msg("%s: pattern of %s is unusable: %s", svcs[s]->name, shape->name, shape->pattern);
    }
    assert_int_equal(seen, svcs[s]->pattern_count);
    assert_true(seen > 5);
  }
}

/* Every member of every operation of both models, given every JSON kind:
 * the answer is always OK, a validation or a serialization error with a
 * message, never a crash or an internal error. */
static void test_every_member_every_json_kind(void **state) {
  static const char *const values[] = {
      "\"\"", "\"x\"", "\"AAAA\"", "0", "-1", "1.5", "true", "null", "[]", "{}",
      "[\"x\"]", "{\"a\":\"b\"}", "[{}]", "[null]", "{\"a\":null}", "99999999999",
  };
  const model_service *svcs[] = {&model_kms, &model_cloudhsmv2};
  size_t checked = 0;
  (void)state;
  for (size_t s = 0; s < 2; s++) {
    for (size_t o = 0; o < svcs[s]->op_count; o++) {
      const model_op *op = &svcs[s]->ops[o];
      for (size_t m = 0; m < op->input->member_count; m++) {
        for (size_t v = 0; v < sizeof values / sizeof *values; v++) {
          char body[512];
          kerr err;
          kerr_code rc;
          snprintf(body, sizeof body, "{\"%s\":%s}", op->input->members[m].name, values[v]);
          rc = validate_in(svcs[s], op->name, body, &err);
          if (rc != KERR_OK && rc != KERR_VALIDATION && rc != KERR_SERIALIZATION)
            fail_msg("%s %s: unexpected code %d: %s", op->name, body, rc, err.msg);
          if (rc != KERR_OK && !err.msg[0]) fail_msg("%s %s: empty message", op->name, body);
          checked++;
        }
      }
    }
  }
  assert_true(checked > 1000);
}

static void test_bad_pattern_fails_loudly(void **state) {
  kerr err;
  (void)state;
  kerr_clear(&err);
  assert_int_equal(api_validate_pattern_compiles("[a-", &err), KERR_INTERNAL);
  assert_non_null(strstr(err.msg, "does not compile"));
  assert_int_equal(api_validate_pattern_compiles("(unclosed", &err), KERR_INTERNAL);
  assert_int_equal(api_validate_pattern_compiles("\\u00e9[\\u0020-\\u00FF]", &err), KERR_OK);
  /* A shape outside the generated tables has no compiled pattern: unusable,
   * never a silent pass. */
  model_shape fake = {.name = "Fake", .type = MODEL_STRING, .pattern = "[a-z]+",
                      .pattern_index = 0};
  assert_int_equal(api_validate_pattern_matches(&fake, "abc", 3), -1);
}

static void test_pattern_translation(void **state) {
  const model_shape *policy = model_find_shape(&model_kms, "PolicyType");
  const model_shape *tag_key = model_find_shape(&model_cloudhsmv2, "TagKey");
  const model_shape *uri_path = model_find_shape(&model_kms, "XksProxyUriPathType");
  (void)state;
  assert_non_null(policy);
  /* [\u0009\u000A\u000D\u0020-\u00FF]+ : tabs and Latin-1, nothing else. */
  assert_int_equal(api_validate_pattern_matches(policy, "{\t\"a\": \"\xc3\xa9\"}\n", 13), 1);
  assert_int_equal(api_validate_pattern_matches(policy, "\x01", 1), 0);
  assert_int_equal(api_validate_pattern_matches(policy, "\xe2\x82\xac", 3), 0); /* U+20AC */
  assert_int_equal(api_validate_pattern_matches(policy, "", 0), 0);
  /* \p{L} with UTF-8 letters. */
  assert_non_null(tag_key);
  assert_int_equal(api_validate_pattern_matches(tag_key, "caf\xc3\xa9 x:1", 9), 1);
  assert_int_equal(api_validate_pattern_matches(tag_key, "a;b", 3), 0);
  /* Alternatives with their own anchors. */
  assert_non_null(uri_path);
  assert_int_equal(api_validate_pattern_matches(uri_path, "/kms/xks/v1", 11), 1);
  assert_int_equal(api_validate_pattern_matches(uri_path, "/p/kms/xks/v12", 14), 1);
  assert_int_equal(api_validate_pattern_matches(uri_path, "/kms/xks/v1/x", 13), 0);
  /* A shape without a pattern accepts anything. */
  assert_int_equal(api_validate_pattern_matches(model_find_shape(&model_kms, "KeyIdType"), "?", 1),
                   1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_concurrent_first_use),
      cmocka_unit_test(test_valid_requests_pass),
      cmocka_unit_test(test_encrypt_missing_key_id),
      cmocka_unit_test(test_encrypt_empty_key_id),
      cmocka_unit_test(test_encrypt_plaintext_size_counts_decoded_bytes),
      cmocka_unit_test(test_encrypt_plaintext_not_base64),
      cmocka_unit_test(test_generate_data_key_number_of_bytes),
      cmocka_unit_test(test_generate_random),
      cmocka_unit_test(test_create_key_enum),
      cmocka_unit_test(test_create_key_description_length),
      cmocka_unit_test(test_create_key_tags),
      cmocka_unit_test(test_create_key_xks_key_id_pattern),
      cmocka_unit_test(test_several_violations_in_order),
      cmocka_unit_test(test_list_length),
      cmocka_unit_test(test_encryption_context_map),
      cmocka_unit_test(test_map_key_constraints),
      cmocka_unit_test(test_wrong_json_types),
      cmocka_unit_test(test_serialization_wins_over_violations),
      cmocka_unit_test(test_sensitive_values_never_echoed),
      cmocka_unit_test(test_deep_nesting_is_bounded),
      cmocka_unit_test(test_cloudhsmv2_integer_range),
      cmocka_unit_test(test_all_patterns_compile),
      cmocka_unit_test(test_every_member_every_json_kind),
      cmocka_unit_test(test_bad_pattern_fails_loudly),
      cmocka_unit_test(test_pattern_translation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
