/* fuzz_jmespath.c - libFuzzer target for the JMESPath implementation
 * (cli/jmespath.h) behind the kms tool's --query: the expression is
 * whatever the user typed and the document whatever a server answered.
 *
 * Input: the expression, a NUL byte, then the JSON document.  Without a NUL
 * the whole input is the expression, searched in a fixed document with a
 * value of every type, so the fuzzer need not invent JSON to reach the
 * evaluator.  Properties: compiling and searching never crash, hang, leak or
 * read out of bounds; each call succeeds with its output set or fails with
 * its output NULL, an error kind and a message.  The search gets a smaller
 * work budget than the default so that slow units stay well inside
 * libFuzzer's timeout; the code that spends it is the same. */
#include <string.h>

#include "cli/jmespath.h"
#include "fuzz_common.h"

static const char sample_doc[] =
    "{\"Keys\": [{\"KeyId\": \"k1\", \"Enabled\": true, \"Size\": 256, \"Tags\": [\"a\", \"b\"]},"
    "{\"KeyId\": \"k2\", \"Enabled\": false, \"Size\": 128.5, \"Tags\": []}, null, 7, \"s\"],"
    "\"Map\": {\"x\": 1, \"y\": [1, [2, [3]]], \"z\": {\"w\": \"\\u00e9\"}}, \"Marker\": null, \"Count\": -3}";

static void check_error(const jmes_error *err, kerr_code rc) {
  FUZZ_CHECK(err->kind != JMES_ERR_NONE, "a failure names its kind");
  FUZZ_CHECK(err->status.code == rc, "the error carries the code returned");
  FUZZ_CHECK(rc == KERR_VALIDATION || rc == KERR_INTERNAL, "failures are validation or internal");
  FUZZ_CHECK(fuzz_msg_ok(err->status.msg, sizeof err->status.msg), "a failure has a message");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, 0, size);
  size_t expr_len = nul ? (size_t)(nul - data) : size;
  char *expr = fuzz_strndup(data, expr_len);
  json_t *doc, *result = NULL;
  jmes_expr *e = NULL;
  jmes_error err;
  kerr_code rc;
  if (nul) doc = json_loadb((const char *)nul + 1, size - expr_len - 1, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
  else doc = json_loads(sample_doc, 0, NULL);
  if (!doc) doc = json_null();
  rc = jmes_compile(expr, &e, &err);
  FUZZ_CHECK((rc == KERR_OK) == (e != NULL), "compile sets its output exactly when it succeeds");
  if (rc != KERR_OK) {
    check_error(&err, rc);
  } else {
    rc = jmes_search_bounded(e, doc, 2u * 1024u * 1024u, &result, &err);
    FUZZ_CHECK((rc == KERR_OK) == (result != NULL), "search sets its output exactly when it succeeds");
    if (rc != KERR_OK) {
      check_error(&err, rc);
      FUZZ_CHECK(err.kind != JMES_ERR_SYNTAX && err.kind != JMES_ERR_UNKNOWN_FUNCTION &&
                     err.kind != JMES_ERR_INVALID_ARITY,
                 "what compiles has no syntax, name or arity error left");
    }
  }
  json_decref(result);
  jmes_free(e);
  json_decref(doc);
  free(expr);
  return 0;
}
