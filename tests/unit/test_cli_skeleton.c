/* test_cli_skeleton.c - unit tests for lib/cli/skeleton: the input, YAML and
 * output templates of every operation, and the round trip of each template
 * through lib/cli/params (as an input document, after its placeholders are
 * filled with values the model's minimums accept).  The byte comparison with
 * the AWS CLI's own templates is tests/e2e/test_cli_params.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/cli_yaml.h"
#include "cli/params.h"
#include "cli/skeleton.h"
#include "cli/validate.h"

static void test_encrypt_templates(void **state) {
  json_t *in = NULL, *out = NULL;
  char *text, *yaml = NULL;
  size_t len = 0;
  kerr err;
  const model_op *op = cli_find_op(&model_kms, "encrypt");
  (void)state;
  assert_int_equal(cli_skeleton_input(op, &in, &err), KERR_OK);
  text = json_dumps(in, JSON_COMPACT);
  assert_string_equal(text, "{\"KeyId\":\"\",\"Plaintext\":null,\"EncryptionContext\":{\"KeyName\":\"\"},"
                            "\"GrantTokens\":[\"\"],\"EncryptionAlgorithm\":\"SYMMETRIC_DEFAULT\",\"DryRun\":true}");
  free(text);
  assert_int_equal(cli_skeleton_output(op, &out, &err), KERR_OK);
  text = json_dumps(out, JSON_COMPACT);
  assert_string_equal(text, "{\"CiphertextBlob\":null,\"KeyId\":\"KeyId\",\"EncryptionAlgorithm\":"
                            "\"EncryptionAlgorithm\"}");
  free(text);
  assert_int_equal(cli_skeleton_yaml_input(op, &yaml, &len, &err), KERR_OK);
  assert_int_equal(strlen(yaml), len);
  assert_non_null(strstr(yaml, "KeyId: '' # [REQUIRED] "));
  assert_non_null(strstr(yaml, "\nEncryptionContext: # "));
  assert_non_null(strstr(yaml, "\n  KeyName: ''\n"));
  assert_non_null(strstr(yaml, "\nGrantTokens: # A list of grant tokens.\n- ''\n"));
  assert_non_null(strstr(yaml, "EncryptionAlgorithm: SYMMETRIC_DEFAULT # "));
  assert_non_null(strstr(yaml, "Valid values are: SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256"));
  free(yaml);
  json_decref(in);
  json_decref(out);
}

static void test_list_of_structures_yaml(void **state) {
  char *yaml = NULL;
  kerr err;
  (void)state;
  assert_int_equal(cli_skeleton_yaml_input(cli_find_op(&model_kms, "create-key"), &yaml, NULL, &err), KERR_OK);
  assert_non_null(strstr(yaml, "\nTags: # Assigns one or more tags to the KMS key.\n- TagKey: '' # [REQUIRED] "));
  assert_non_null(strstr(yaml, "\n  TagValue: '' # [REQUIRED] "));
  free(yaml);
  assert_int_equal(cli_skeleton_yaml_input(NULL, &yaml, NULL, &err), KERR_INTERNAL);
  assert_null(yaml);
}

/* A template with its placeholders replaced by values the client-side
 * checks accept: strings long enough, numbers at their minimum, blobs some
 * base64 text, every list and map kept at its one entry. */
static void fill(json_t *v, const model_shape *shape) {
  if (shape->type == MODEL_STRUCTURE) {
    const char *key;
    json_t *item;
    json_object_foreach(v, key, item) {
      const model_member *m = model_find_member(shape, key);
      assert_non_null(m);
      if (m->shape->type == MODEL_STRUCTURE || m->shape->type == MODEL_LIST || m->shape->type == MODEL_MAP) {
        fill(item, m->shape);
      } else if (m->shape->type == MODEL_STRING && !m->shape->enum_count) {
        char text[256];
        long long n = m->shape->has_min && m->shape->min > 1 ? m->shape->min : 1;
        assert_true(n < (long long)sizeof text);
        memset(text, 'x', (size_t)n);
        text[n] = '\0';
        json_object_set_new(v, key, json_string(text));
      } else if (m->shape->type == MODEL_INTEGER || m->shape->type == MODEL_LONG) {
        json_object_set_new(v, key, json_integer(m->shape->has_min ? m->shape->min : 0));
      } else if (m->shape->type == MODEL_BLOB) {
        json_object_set_new(v, key, json_string("AAAA"));
      }
    }
  } else if (shape->type == MODEL_LIST || shape->type == MODEL_MAP) {
    const model_shape *inner = shape->type == MODEL_LIST ? shape->member : shape->value;
    size_t n = shape->type == MODEL_LIST ? json_array_size(v) : json_object_size(v);
    json_t *item = shape->type == MODEL_LIST ? json_array_get(v, 0) : json_object_get(v, "KeyName");
    assert_int_equal(n, 1);
    if (inner->type == MODEL_STRUCTURE || inner->type == MODEL_LIST || inner->type == MODEL_MAP) {
      fill(item, inner);
    } else if (inner->type == MODEL_STRING && !inner->enum_count) {
      json_t *s = json_string("x");
      if (shape->type == MODEL_LIST) json_array_set_new(v, 0, s);
      else json_object_set_new(v, "KeyName", s);
    } else if (inner->type == MODEL_BLOB) {
      json_t *s = json_string("AAAA");
      if (shape->type == MODEL_LIST) json_array_set_new(v, 0, s);
      else json_object_set_new(v, "KeyName", s);
    }
  }
}

/* Every operation of both services: the templates are made, the YAML one
 * loads back to the JSON one's data (blobs aside: '' there), and, filled,
 * each builds a request through --cli-input-json and --cli-input-yaml. */
static void test_every_operation_round_trips(void **state) {
  const model_service *svcs[] = {&model_kms, &model_cloudhsmv2};
  size_t checked = 0;
  (void)state;
  for (size_t s = 0; s < 2; s++) {
    for (size_t i = 0; i < svcs[s]->op_count; i++) {
      const model_op *op = &svcs[s]->ops[i];
      json_t *in = NULL, *out = NULL, *loaded = NULL, *req = NULL, *req2 = NULL;
      char *yaml = NULL, *filled_text, *report = NULL;
      size_t len = 0;
      int code = 0;
      kerr err;
      cli_params_opts opts = {0};
      assert_int_equal(cli_skeleton_input(op, &in, &err), KERR_OK);
      assert_int_equal(cli_skeleton_output(op, &out, &err), KERR_OK);
      assert_int_equal(cli_skeleton_yaml_input(op, &yaml, &len, &err), KERR_OK);
      if (cli_yaml_load(yaml, len, &loaded, &err) != KERR_OK) fail_msg("%s: %s\n%s", op->name, err.msg, yaml);
      assert_true(json_is_object(loaded));
      assert_int_equal(json_object_size(loaded), json_object_size(in));
      if (op->input) {
        fill(in, op->input);
        fill(loaded, op->input);
      }
      opts.cli_input = in;
      if (cli_params_build(op, 0, NULL, &opts, &req, &code, &err) != KERR_OK)
        fail_msg("%s from JSON: %s", op->name, err.msg);
      if (cli_validate_request(op, req, &report, &err) != KERR_OK)
        fail_msg("%s from JSON: %s", op->name, report ? report : err.msg);
      opts.cli_input = loaded;
      if (cli_params_build(op, 0, NULL, &opts, &req2, &code, &err) != KERR_OK)
        fail_msg("%s from YAML: %s", op->name, err.msg);
      /* Blob placeholders differ (null / ''), both filled the same: the
       * two requests are one. */
      filled_text = json_dumps(req, JSON_COMPACT);
      assert_true(json_equal(req, req2));
      free(filled_text);
      json_decref(in);
      json_decref(out);
      json_decref(loaded);
      json_decref(req);
      json_decref(req2);
      free(yaml);
      checked++;
    }
  }
  assert_int_equal(checked, model_kms.op_count + model_cloudhsmv2.op_count);
}

static void test_unfilled_template_is_refused_like_the_cli(void **state) {
  json_t *in = NULL, *req = NULL;
  char *report = NULL;
  int code = 0;
  kerr err;
  cli_params_opts opts = {0};
  (void)state;
  assert_int_equal(cli_skeleton_input(cli_find_op(&model_kms, "encrypt"), &in, &err), KERR_OK);
  opts.cli_input = in;
  assert_int_equal(cli_params_build(cli_find_op(&model_kms, "encrypt"), 0, NULL, &opts, &req, &code, &err),
                   KERR_OK);
  assert_int_equal(cli_validate_request(cli_find_op(&model_kms, "encrypt"), req, &report, &err), KERR_VALIDATION);
  assert_string_equal(report, "Parameter validation failed:\n"
                               "Invalid length for parameter KeyId, value: 0, valid min length: 1\n"
                               "Invalid type for parameter Plaintext, value: None, type: <class 'NoneType'>, "
                               "valid types: <class 'bytes'>, <class 'bytearray'>, file-like object\n"
                               "Invalid length for parameter GrantTokens[0], value: 0, valid min length: 1");
  free(report);
  json_decref(req);
  json_decref(in);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encrypt_templates),
      cmocka_unit_test(test_list_of_structures_yaml),
      cmocka_unit_test(test_every_operation_round_trips),
      cmocka_unit_test(test_unfilled_template_is_refused_like_the_cli),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
