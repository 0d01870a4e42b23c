/* test_model.c - unit tests of the generated model tables and their lookups:
 * the tables must say what botocore's models say (names, types, constraints,
 * enums, errors, service metadata) and be sorted for binary search. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "model/model.h"

static void test_service_metadata(void **state) {
  (void)state;
  assert_string_equal(model_kms.name, "kms");
  assert_string_equal(model_kms.target_prefix, "TrentService");
  assert_string_equal(model_kms.json_version, "1.1");
  assert_string_equal(model_kms.signing_name, "kms");
  assert_string_equal(model_kms.api_version, "2014-11-01");
  assert_string_equal(model_cloudhsmv2.target_prefix, "BaldrApiService");
  assert_string_equal(model_cloudhsmv2.signing_name, "cloudhsm");
  assert_string_equal(model_cloudhsmv2.json_version, "1.1");
  assert_true(model_kms.op_count > 50);
  assert_true(model_cloudhsmv2.op_count > 10);
}

static void test_tables_sorted_and_consistent(void **state) {
  const model_service *svcs[] = {&model_kms, &model_cloudhsmv2};
  (void)state;
  for (size_t s = 0; s < 2; s++) {
    const model_service *svc = svcs[s];
    for (size_t i = 1; i < svc->op_count; i++)
      assert_true(strcmp(svc->ops[i - 1].name, svc->ops[i].name) < 0);
    for (size_t i = 1; i < svc->shape_count; i++)
      assert_true(strcmp(svc->shapes[i - 1].name, svc->shapes[i].name) < 0);
    /* Every op can be found by its own name and points back at its service. */
    for (size_t i = 0; i < svc->op_count; i++) {
      assert_ptr_equal(model_find_op(svc, svc->ops[i].name), &svc->ops[i]);
      assert_ptr_equal(svc->ops[i].service, svc);
      assert_non_null(svc->ops[i].input);
      assert_int_equal(svc->ops[i].input->type, MODEL_STRUCTURE);
      assert_non_null(svc->ops[i].doc);
      assert_null(strchr(svc->ops[i].doc, '<'));
    }
    for (size_t i = 0; i < svc->shape_count; i++) {
      const model_shape *sh = &svc->shapes[i];
      assert_ptr_equal(model_find_shape(svc, sh->name), sh);
      switch (sh->type) {
      case MODEL_LIST: assert_non_null(sh->member); break;
      case MODEL_MAP:
        assert_non_null(sh->key);
        assert_non_null(sh->value);
        break;
      case MODEL_STRUCTURE:
        for (size_t m = 0; m < sh->member_count; m++) {
          assert_non_null(sh->members[m].shape);
          assert_ptr_equal(model_find_member(sh, sh->members[m].name), &sh->members[m]);
        }
        break;
      default: break;
      }
      if (sh->pattern) {
        assert_true(sh->pattern_index >= 0);
        assert_true((size_t)sh->pattern_index < svc->pattern_count);
        assert_string_equal(svc->patterns[sh->pattern_index], sh->pattern);
      } else {
        assert_int_equal(sh->pattern_index, -1);
      }
    }
  }
}

static void test_find_op(void **state) {
  const model_op *op;
  (void)state;
  op = model_find_op(&model_kms, "Encrypt");
  assert_non_null(op);
  assert_string_equal(op->name, "Encrypt");
  assert_string_equal(op->input->name, "EncryptRequest");
  assert_string_equal(op->output->name, "EncryptResponse");
  assert_true(strncmp(op->doc, "Encrypts plaintext", 18) == 0);
  /* Exact and case-sensitive. */
  assert_null(model_find_op(&model_kms, "encrypt"));
  assert_null(model_find_op(&model_kms, "Encrypt "));
  assert_null(model_find_op(&model_kms, ""));
  assert_null(model_find_op(&model_kms, NULL));
  assert_null(model_find_op(NULL, "Encrypt"));
  /* Ends of the sorted table. */
  assert_non_null(model_find_op(&model_kms, model_kms.ops[0].name));
  assert_non_null(model_find_op(&model_kms, model_kms.ops[model_kms.op_count - 1].name));
  assert_non_null(model_find_op(&model_kms, "ConnectCustomKeyStore"));
  assert_non_null(model_find_op(&model_cloudhsmv2, "DescribeClusters"));
  assert_null(model_find_op(&model_cloudhsmv2, "Encrypt"));
}

static void test_encrypt_request_shape(void **state) {
  const model_op *op = model_find_op(&model_kms, "Encrypt");
  const model_member *key_id, *plaintext, *ctx, *grants, *alg;
  (void)state;
  assert_non_null(op);
  key_id = model_find_member(op->input, "KeyId");
  plaintext = model_find_member(op->input, "Plaintext");
  ctx = model_find_member(op->input, "EncryptionContext");
  grants = model_find_member(op->input, "GrantTokens");
  alg = model_find_member(op->input, "EncryptionAlgorithm");
  assert_non_null(key_id);
  assert_true(key_id->required);
  assert_int_equal(key_id->shape->type, MODEL_STRING);
  assert_true(key_id->shape->has_min && key_id->shape->min == 1);
  assert_true(key_id->shape->has_max && key_id->shape->max == 2048);
  assert_true(strlen(key_id->doc) > 0);
  assert_non_null(plaintext);
  assert_true(plaintext->required);
  assert_int_equal(plaintext->shape->type, MODEL_BLOB);
  assert_true(plaintext->shape->sensitive);
  assert_int_equal(plaintext->shape->max, 4096);
  assert_non_null(ctx);
  assert_false(ctx->required);
  assert_int_equal(ctx->shape->type, MODEL_MAP);
  assert_int_equal(ctx->shape->key->type, MODEL_STRING);
  assert_int_equal(ctx->shape->value->type, MODEL_STRING);
  assert_non_null(grants);
  assert_int_equal(grants->shape->type, MODEL_LIST);
  assert_int_equal(grants->shape->max, 10);
  assert_string_equal(grants->shape->member->name, "GrantTokenType");
  assert_non_null(alg);
  assert_int_equal(alg->shape->enum_count, 4);
  assert_string_equal(alg->shape->enum_values[0], "SYMMETRIC_DEFAULT");
  assert_null(model_find_member(op->input, "keyId"));
  assert_null(model_find_member(key_id->shape, "KeyId"));
  /* Members keep the model's order (validation messages depend on it). */
  assert_ptr_equal(&op->input->members[0], key_id);
  assert_ptr_equal(&op->input->members[1], plaintext);
}

static void test_errors_and_exceptions(void **state) {
  const model_op *op = model_find_op(&model_kms, "ConnectCustomKeyStore");
  int found = 0;
  (void)state;
  assert_non_null(op);
  assert_true(op->error_count > 0);
  for (size_t i = 0; i < op->error_count; i++) {
    const model_shape *e = model_find_shape(&model_kms, op->errors[i]);
    assert_non_null(e);
    assert_true(e->exception);
    if (!strcmp(op->errors[i], "CustomKeyStoreInvalidStateException")) found = 1;
  }
  assert_true(found);
  assert_false(model_find_shape(&model_kms, "KeyIdType")->exception);
}

static void test_patterns_and_enums_verbatim(void **state) {
  const model_shape *xks = model_find_shape(&model_kms, "XksKeyIdType");
  const model_shape *policy = model_find_shape(&model_kms, "PolicyType");
  const model_shape *state_type = model_find_shape(&model_kms, "ConnectionStateType");
  (void)state;
  assert_non_null(xks);
  assert_string_equal(xks->pattern, "^[a-zA-Z0-9-_.]+$");
  assert_non_null(policy);
  assert_string_equal(policy->pattern, "[\\u0009\\u000A\\u000D\\u0020-\\u00FF]+");
  assert_non_null(state_type);
  assert_int_equal(state_type->enum_count, 5);
  for (size_t i = 0; i < state_type->enum_count; i++)
    assert_non_null(state_type->enum_values[i]);
  assert_null(model_find_shape(&model_kms, "NoSuchShape"));
  assert_string_equal(model_type_name(MODEL_BLOB), "blob");
  assert_string_equal(model_type_name(MODEL_STRUCTURE), "structure");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_service_metadata),
      cmocka_unit_test(test_tables_sorted_and_consistent),
      cmocka_unit_test(test_find_op),
      cmocka_unit_test(test_encrypt_request_shape),
      cmocka_unit_test(test_errors_and_exceptions),
      cmocka_unit_test(test_patterns_and_enums_verbatim),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
