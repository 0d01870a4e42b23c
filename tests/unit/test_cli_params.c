/* test_cli_params.c - unit tests for lib/cli/params: every kind of value,
 * every refusal with its exit code and message, file:// and fileb://, the
 * merge with an input document, and the bounds.  The comparison with the
 * AWS CLI itself is tests/e2e/test_cli_params.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/params.h"
#include "cli/validate.h"

#define END ((const char *)NULL)

static const model_op *kms_op(const char *command) {
  const model_op *op = cli_find_op(&model_kms, command);
  assert_non_null(op);
  return op;
}

/* Build `command` from the NULL-terminated tokens; returns the exit code,
 * with the request's compact JSON or the message in `out`. */
static int run(const model_service *svc, const char *command, const cli_params_opts *opts, char *out, size_t size,
               ...) {
  const char *argv[64];
  int argc = 0, exit_code = -1;
  va_list ap;
  json_t *request = NULL;
  char *report = NULL;
  kerr err;
  const model_op *op = cli_find_op(svc, command);
  assert_non_null(op);
  va_start(ap, size);
  for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
    assert_true(argc < 64);
    argv[argc++] = a;
  }
  va_end(ap);
  if (cli_params_build(op, argc, (char *const *)argv, opts, &request, &exit_code, &err) == KERR_OK &&
      cli_validate_request(op, request, &report, &err) != KERR_OK) {
    /* The program checks what it built: a report exits 252. */
    assert_non_null(report);
    snprintf(out, size, "%s", report);
    free(report);
    json_decref(request);
    return 252;
  }
  if (request) {
    char *text = json_dumps(request, JSON_COMPACT);
    assert_int_equal(exit_code, 0);
    assert_non_null(text);
    snprintf(out, size, "%s", text);
    free(text);
    json_decref(request);
  } else {
    assert_true(exit_code == 2 || exit_code == 252);
    snprintf(out, size, "%s", err.msg);
  }
  return exit_code;
}

#define KMS(cmd, ...) run(&model_kms, cmd, NULL, out, sizeof out, __VA_ARGS__, END)
#define KMS_OPTS(opts, cmd, ...) run(&model_kms, cmd, opts, out, sizeof out, __VA_ARGS__, END)
#define HSM(cmd, ...) run(&model_cloudhsmv2, cmd, NULL, out, sizeof out, __VA_ARGS__, END)

static void test_kebab_names(void **state) {
  char buf[64];
  (void)state;
  assert_string_equal(cli_kebab_name("CustomKeyStoreId", buf, sizeof buf), "custom-key-store-id");
  assert_string_equal(cli_kebab_name("XksProxyUriPath", buf, sizeof buf), "xks-proxy-uri-path");
  assert_string_equal(cli_kebab_name("CloudHsmClusterId", buf, sizeof buf), "cloud-hsm-cluster-id");
  assert_string_equal(cli_kebab_name("AWSAccountId", buf, sizeof buf), "aws-account-id");
  assert_string_equal(cli_kebab_name("KeyARN", buf, sizeof buf), "key-arn");
  assert_string_equal(cli_kebab_name("ReEncrypt", buf, sizeof buf), "re-encrypt");
  assert_string_equal(cli_kebab_name("Sha256Value", buf, sizeof buf), "sha256-value");
  assert_string_equal(cli_kebab_name("DryRun", buf, 4), "dry");
  assert_null(cli_find_op(&model_kms, "no-such-command"));
  assert_string_equal(cli_find_op(&model_kms, "generate-data-key-pair-without-plaintext")->name,
                      "GenerateDataKeyPairWithoutPlaintext");
  assert_string_equal(cli_find_op(&model_cloudhsmv2, "describe-clusters")->name, "DescribeClusters");
}

/* Every member of every operation answers to its option name. */
static void test_every_member_is_an_option(void **state) {
  const model_service *svcs[] = {&model_kms, &model_cloudhsmv2};
  (void)state;
  for (size_t s = 0; s < 2; s++) {
    for (size_t i = 0; i < svcs[s]->op_count; i++) {
      const model_op *op = &svcs[s]->ops[i];
      for (size_t k = 0; op->input && k < op->input->member_count; k++) {
        const model_member *m = &op->input->members[k];
        char kebab[128], opt[140];
        const char *argv[2];
        json_t *req = NULL;
        int code = 0;
        kerr err;
        cli_params_opts opts = {.cli_input = NULL};
        json_t *doc = json_object(); /* an input document: no required-option check */
        opts.cli_input = doc;
        snprintf(opt, sizeof opt, "--%s", cli_kebab_name(m->name, kebab, sizeof kebab));
        argv[0] = opt;
        argv[1] = "1";
        (void)cli_params_build(op, m->shape->type == MODEL_BOOLEAN ? 1 : 2, (char *const *)argv, &opts, &req,
                               &code, &err);
        /* Accepted, or refused for its value or a missing member: never as unknown. */
        if (code != 0) assert_null(strstr(err.msg, "Unknown options"));
        if (code == 2) assert_non_null(strstr(err.msg, "argument"));
        json_decref(req);
        json_decref(doc);
      }
    }
  }
}

static void test_scalars(void **state) {
  char out[2048];
  (void)state;
  assert_int_equal(KMS("describe-key", "--key-id", "alias/x"), 0);
  assert_string_equal(out, "{\"KeyId\":\"alias/x\"}");
  assert_int_equal(KMS("list-keys", "--limit", " +1_0 ", "--marker", "m"), 0);
  assert_string_equal(out, "{\"Limit\":10,\"Marker\":\"m\"}");
  assert_int_equal(KMS("list-keys", "--limit", "-5"), 252);
  assert_string_equal(out, "Parameter validation failed:\nInvalid value for parameter Limit, value: -5, valid min "
                           "value: 1");
  assert_int_equal(KMS("list-keys", "--limit", "0x10"), 252);
  assert_string_equal(out, "invalid literal for int() with base 10: '0x10'");
  assert_int_equal(KMS("list-keys", "--limit", "99999999999999999999"), 252);
  assert_int_equal(KMS("list-keys", "--marker", ""), 252);
  assert_string_equal(out, "Parameter validation failed:\nInvalid length for parameter Marker, value: 0, valid min "
                           "length: 1");
  /* Booleans: flags, the last one wins, no value after them. */
  assert_int_equal(KMS("create-key", "--multi-region", "--no-bypass-policy-lockout-safety-check"), 0);
  assert_string_equal(out, "{\"BypassPolicyLockoutSafetyCheck\":false,\"MultiRegion\":true}");
  assert_int_equal(KMS("create-key", "--multi-region", "--no-multi-region"), 0);
  assert_string_equal(out, "{\"MultiRegion\":false}");
  assert_int_equal(KMS("create-key", "--multi-region=false"), 2);
  assert_string_equal(out, "argument --multi-region: ignored explicit argument 'false'");
  assert_int_equal(KMS("create-key", "--multi-region", "true"), 252);
  assert_string_equal(out, "Unknown options: true");
  /* A value that looks like a negative number or holds a space is a value. */
  assert_int_equal(KMS("describe-key", "--key-id", "-1.5"), 0);
  assert_int_equal(KMS("describe-key", "--key-id", "-x y"), 0);
  assert_string_equal(out, "{\"KeyId\":\"-x y\"}");
  assert_int_equal(KMS("describe-key", "--key-id=--x"), 0);
  assert_string_equal(out, "{\"KeyId\":\"--x\"}");
}

static void test_timestamps(void **state) {
  char out[2048];
  static const struct {
    const char *text;
    long long epoch;
  } good[] = {{"2030-01-01T00:00:00Z", 1893456000},
              {"2030-01-01", 1893456000},
              {"2030-01-01T00:00:00.5+02:00", 1893448800},
              {"2030-01-01 01:30-0130", 1893456000 + 5400 + 5400},
              {"1893456000", 1893456000},
              {"1893456000.9", 1893456000},
              {"1970-01-01T00:00:00", 0},
              {"2024-02-29T12:00:00Z", 1709208000}};
  (void)state;
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    char expect[256];
    assert_int_equal(KMS("import-key-material", "--key-id", "k", "--import-token", "AAAA",
                         "--encrypted-key-material", "AAAA", "--valid-to", good[i].text),
                     0);
    snprintf(expect, sizeof expect,
             "{\"KeyId\":\"k\",\"ImportToken\":\"AAAA\",\"EncryptedKeyMaterial\":\"AAAA\",\"ValidTo\":%lld}",
             good[i].epoch);
    assert_string_equal(out, expect);
  }
  for (const char *const *bad = (const char *const[]){"garbage", "2023-02-29", "2030-13-01", "2030-01-01T25:00",
                                                      "2030-01-01T00:00:00Q", "", NULL};
       *bad; bad++) {
    assert_int_equal(KMS("import-key-material", "--key-id", "k", "--import-token", "AAAA",
                         "--encrypted-key-material", "AAAA", "--valid-to", *bad),
                     252);
    assert_non_null(strstr(out, "Invalid type for parameter ValidTo"));
    assert_non_null(strstr(out, "valid types: <class 'datetime.datetime'>, timestamp-string"));
  }
}

static void test_blobs(void **state) {
  char out[2048];
  cli_params_opts raw = {.binary_raw_in_base64_out = 1};
  (void)state;
  assert_int_equal(KMS("encrypt", "--key-id", "k", "--plaintext", "aGVsbG8="), 0);
  assert_string_equal(out, "{\"KeyId\":\"k\",\"Plaintext\":\"aGVsbG8=\"}");
  /* Bits under the padding are dropped, as the CLI's decoder drops them. */
  assert_int_equal(KMS("encrypt", "--key-id", "k", "--plaintext", "aGVsbG9="), 0);
  assert_string_equal(out, "{\"KeyId\":\"k\",\"Plaintext\":\"aGVsbG8=\"}");
  /* Bad base64: version 2's message, without the secret. */
  assert_int_equal(KMS("encrypt", "--key-id", "k", "--plaintext", "secret text"), 252);
  assert_string_equal(out, "Invalid base64: \"" CLI_VALIDATE_HIDDEN "\"");
  assert_int_equal(KMS("encrypt", "--key-id", "k", "--plaintext", "aGVsbG8"), 252);
  assert_int_equal(KMS("generate-random", "--recipient", "AttestationDocument=a@b"), 252);
  assert_string_equal(out, "Invalid base64: \"a@b\"");
  assert_int_equal(KMS_OPTS(&raw, "encrypt", "--key-id", "k", "--plaintext", "hello"), 0);
  assert_string_equal(out, "{\"KeyId\":\"k\",\"Plaintext\":\"aGVsbG8=\"}");
  assert_int_equal(KMS_OPTS(&raw, "generate-random", "--recipient", "{\"AttestationDocument\":\"hello\"}"), 0);
  assert_string_equal(out, "{\"Recipient\":{\"AttestationDocument\":\"aGVsbG8=\"}}");
}

static char *temp_file(const void *data, size_t n) {
  char path[] = "/tmp/test_cli_params_XXXXXX";
  int fd = mkstemp(path);
  char *url;
  assert_true(fd >= 0);
  assert_int_equal(write(fd, data, n), (ssize_t)n);
  close(fd);
  url = malloc(strlen(path) + 9);
  assert_non_null(url);
  sprintf(url, "%s", path);
  return url;
}

static void test_files(void **state) {
  char out[4096], text_url[128], bin_url[128], bad_url[128];
  static const unsigned char bytes[] = {0, 1, 'b', 'l', 'o', 'b', 0xff};
  char *text = temp_file("caf\xc3\xa9\n", 6), *bin = temp_file(bytes, sizeof bytes), *big;
  char *filler = malloc(CLI_PARAMS_MAX_FILE + 1);
  (void)state;
  snprintf(text_url, sizeof text_url, "file://%s", text);
  snprintf(bin_url, sizeof bin_url, "fileb://%s", bin);
  assert_int_equal(KMS("describe-key", "--key-id", text_url), 0);
  assert_string_equal(out, "{\"KeyId\":\"caf\xc3\xa9\\n\"}");
  assert_int_equal(KMS("encrypt", "--key-id", "k", "--plaintext", bin_url), 0);
  assert_string_equal(out, "{\"KeyId\":\"k\",\"Plaintext\":\"AAFibG9i/w==\"}");
  /* Bytes where text is wanted, as file://, and as fileb:// for a string. */
  snprintf(bad_url, sizeof bad_url, "file://%s", bin);
  assert_int_equal(KMS("describe-key", "--key-id", bad_url), 252);
  assert_non_null(strstr(out, "text contents could not be decoded"));
  assert_int_equal(KMS("describe-key", "--key-id", bin_url), 252);
  assert_non_null(strstr(out, "type: <class 'bytes'>"));
  /* file:// inside shorthand, after @=. */
  {
    char value[200];
    snprintf(value, sizeof value, "TagKey=a,TagValue@=%s", text_url);
    assert_int_equal(KMS("create-key", "--tags", value), 0);
    assert_string_equal(out, "{\"Tags\":[{\"TagKey\":\"a\",\"TagValue\":\"caf\xc3\xa9\\n\"}]}");
  }
  assert_int_equal(KMS("describe-key", "--key-id", "file:///nonexistent/dir/x"), 252);
  assert_string_equal(out, "Error parsing parameter '--key-id': Unable to load paramfile file:///nonexistent/dir/x: "
                           "[Errno 2] No such file or directory: '/nonexistent/dir/x'");
  assert_int_equal(KMS("describe-key", "--key-id", "file:///tmp"), 252);
  /* The size cap. */
  assert_non_null(filler);
  memset(filler, 'a', CLI_PARAMS_MAX_FILE + 1);
  big = temp_file(filler, CLI_PARAMS_MAX_FILE + 1);
  snprintf(bad_url, sizeof bad_url, "file://%s", big);
  assert_int_equal(KMS("describe-key", "--key-id", bad_url), 252);
  assert_non_null(strstr(out, "larger than"));
  unlink(big);
  big = (free(big), temp_file(filler, CLI_PARAMS_MAX_FILE));
  snprintf(bad_url, sizeof bad_url, "file://%s", big);
  assert_int_equal(KMS("describe-key", "--key-id", bad_url), 0);
  unlink(big);
  unlink(text);
  unlink(bin);
  free(big);
  free(text);
  free(bin);
  free(filler);
}

static void test_lists_maps_structures(void **state) {
  char out[4096];
  (void)state;
  assert_int_equal(KMS("create-grant", "--key-id", "k", "--grantee-principal", "p", "--operations", "Encrypt",
                       "Decrypt", "--grant-tokens", "a,b"),
                   0);
  assert_string_equal(out, "{\"KeyId\":\"k\",\"GranteePrincipal\":\"p\",\"Operations\":[\"Encrypt\",\"Decrypt\"],"
                           "\"GrantTokens\":[\"a,b\"]}");
  assert_int_equal(KMS("create-grant", "--key-id", "k", "--grantee-principal", "p", "--operations", " [\"Encrypt\"]",
                       "--constraints", "EncryptionContextSubset={a=b,c=d}"),
                   0);
  assert_string_equal(out, "{\"KeyId\":\"k\",\"GranteePrincipal\":\"p\",\"Operations\":[\"Encrypt\"],"
                           "\"Constraints\":{\"EncryptionContextSubset\":{\"a\":\"b\",\"c\":\"d\"}}}");
  assert_int_equal(KMS("create-grant", "--key-id", "k", "--grantee-principal", "p", "--operations", "[Encrypt]"),
                   252);
  assert_non_null(strstr(out, "Error parsing parameter '--operations': Invalid JSON: "));
  assert_non_null(strstr(out, "\nJSON received: [Encrypt]"));
  assert_int_equal(KMS("create-key", "--tags", "TagKey=a,TagValue=b", "TagKey=c,TagValue=d"), 0);
  assert_string_equal(out, "{\"Tags\":[{\"TagKey\":\"a\",\"TagValue\":\"b\"},{\"TagKey\":\"c\",\"TagValue\":\"d\"}]}");
  assert_int_equal(KMS("create-key", "--tags", "{\"TagKey\":\"a\",\"TagValue\":\"b\"}"), 0);
  assert_string_equal(out, "{\"Tags\":[{\"TagKey\":\"a\",\"TagValue\":\"b\"}]}");
  assert_int_equal(KMS("create-key", "--tags", "TagKey=a,TagValue=b,TagKey=c"), 252);
  assert_non_null(strstr(out, "Error parsing parameter '--tags': Second instance of key \"TagKey\""));
  assert_int_equal(KMS("encrypt", "--key-id", "k", "--plaintext", "YQ==", "--encryption-context", "[1]"), 252);
  assert_string_equal(out, "Error parsing parameter '--encryption-context': Invalid JSON:\n[1]");
  assert_int_equal(KMS("encrypt", "--key-id", "k", "--plaintext", "YQ==", "--encryption-context", "{\"a\":0.1}"), 252);
  assert_string_equal(out, "Parameter validation failed:\nInvalid type for parameter EncryptionContext.a, value: 0.1, "
                           "type: <class 'float'>, valid types: <class 'str'>");
  assert_int_equal(KMS("encrypt", "--key-id", "k", "--plaintext", "YQ==", "--encryption-context", "{\"a\":2.0}"), 252);
  assert_non_null(strstr(out, "value: 2.0, type: <class 'float'>"));
  assert_int_equal(KMS("encrypt", "--key-id", "k", "--plaintext", "YQ==", "--encryption-context", "{\"a\":1}"), 252);
  assert_string_equal(out, "Parameter validation failed:\nInvalid type for parameter EncryptionContext.a, value: 1, "
                           "type: <class 'int'>, valid types: <class 'str'>");
  /* Shorthand scalars are converted by the model: a lone value into a list. */
  assert_int_equal(HSM("describe-clusters", "--filters", "clusterIds=a", "--max-results", "5"), 0);
  assert_string_equal(out, "{\"Filters\":{\"clusterIds\":[\"a\"]},\"MaxResults\":5}");
  assert_int_equal(HSM("describe-clusters", "--filters", "{\"clusterIds\":\"a\"}"), 252);
  assert_string_equal(out, "Parameter validation failed:\nInvalid type for parameter Filters.clusterIds, value: a, "
                           "type: <class 'str'>, valid types: <class 'list'>, <class 'tuple'>");
  assert_int_equal(HSM("create-cluster", "--subnet-ids", "s1", "s2", "--hsm-type", "h", "--backup-retention-policy",
                       "Type=DAYS,Value=90"),
                   0);
  assert_string_equal(out, "{\"BackupRetentionPolicy\":{\"Type\":\"DAYS\",\"Value\":\"90\"},\"HsmType\":\"h\","
                           "\"SubnetIds\":[\"s1\",\"s2\"]}");
  /* Nested validation: every problem, in the SDK's order. */
  assert_int_equal(KMS("create-key", "--tags", "[{\"TagKey\":\"a\",\"Bogus\":\"x\"}]"), 252);
  assert_string_equal(out, "Parameter validation failed:\nMissing required parameter in Tags[0]: \"TagValue\"\n"
                           "Unknown parameter in Tags[0]: \"Bogus\", must be one of: TagKey, TagValue");
}

static void test_usage_errors(void **state) {
  char out[2048];
  (void)state;
  assert_int_equal(KMS("encrypt", "--key-id", "k"), 2);
  assert_string_equal(out, "the following arguments are required: --plaintext");
  assert_int_equal(run(&model_kms, "encrypt", NULL, out, sizeof out, END), 2);
  assert_string_equal(out, "the following arguments are required: --key-id, --plaintext");
  assert_int_equal(KMS("encrypt", "--key-id", "k", "--plaintext"), 2);
  assert_string_equal(out, "argument --plaintext: expected one argument");
  assert_int_equal(KMS("encrypt", "--key-id", "-x", "--plaintext", "a"), 2);
  assert_string_equal(out, "argument --key-id: expected one argument");
  assert_int_equal(KMS("create-key", "--tags"), 0);
  assert_string_equal(out, "{\"Tags\":[]}");
  assert_int_equal(KMS("create-key", "--key", "x"), 2);
  assert_string_equal(out, "ambiguous option: --key could match --key-usage, --key-spec");
  assert_int_equal(KMS("encrypt", "--k", "k", "--pl", "YQ=="), 0);
  assert_int_equal(KMS("encrypt", "--key-id", "k", "--", "--plaintext", "a"), 2);
  assert_int_equal(KMS("encrypt", "--key-id", "k", "--plaintext", "YQ==", "--bogus", "x", "-", "-y"), 252);
  assert_string_equal(out, "Unknown options: --bogus, x, -, -y");
  assert_int_equal(KMS("encrypt", "--key-id", "k", "--plaintext", "YQ==", "--key-id", "z"), 0);
  assert_string_equal(out, "{\"KeyId\":\"z\",\"Plaintext\":\"YQ==\"}");
  /* A required boolean is the SDK's to miss, not the argument parser's. */
  assert_int_equal(HSM("modify-backup-attributes", "--backup-id", "backup-abcdefghijk"), 252);
  assert_string_equal(out, "Parameter validation failed:\nMissing required parameter in input: \"NeverExpires\"");
  assert_int_equal(HSM("modify-backup-attributes", "--backup-id", "backup-abcdefghijk", "--no-never-expires"), 0);
}

static void test_input_document(void **state) {
  char out[2048];
  json_t *doc = json_pack("{s:s,s:s,s:{s:s}}", "KeyId", "from-doc", "Plaintext", "YQ==", "EncryptionContext", "a",
                          "b");
  cli_params_opts opts = {.cli_input = doc};
  (void)state;
  assert_int_equal(KMS_OPTS(&opts, "encrypt", "--key-id", "from-argv"), 0);
  assert_string_equal(out, "{\"KeyId\":\"from-argv\",\"Plaintext\":\"YQ==\",\"EncryptionContext\":{\"a\":\"b\"}}");
  /* The document itself is never changed. */
  assert_string_equal(json_string_value(json_object_get(doc, "KeyId")), "from-doc");
  assert_int_equal(KMS_OPTS(&opts, "encrypt", "--encryption-context", "c=d"), 0);
  assert_string_equal(out, "{\"KeyId\":\"from-doc\",\"Plaintext\":\"YQ==\",\"EncryptionContext\":{\"c\":\"d\"}}");
  json_object_set_new(doc, "Bogus", json_integer(1));
  assert_int_equal(KMS_OPTS(&opts, "encrypt", "--key-id", "k"), 252);
  assert_string_equal(out, "Parameter validation failed:\nUnknown parameter in input: \"Bogus\", must be one of: "
                           "KeyId, Plaintext, EncryptionContext, GrantTokens, EncryptionAlgorithm, DryRun");
  json_object_del(doc, "Bogus");
  json_object_del(doc, "Plaintext");
  assert_int_equal(KMS_OPTS(&opts, "encrypt", "--key-id", "k"), 252);
  assert_string_equal(out, "Parameter validation failed:\nMissing required parameter in input: \"Plaintext\"");
  json_decref(doc);
  /* Not an object. */
  doc = json_array();
  opts.cli_input = doc;
  assert_int_equal(KMS_OPTS(&opts, "encrypt", "--key-id", "k"), 252);
  json_decref(doc);
}

static void test_bounds(void **state) {
  char out[2048];
  json_t *doc, *list, *deep;
  cli_params_opts opts = {0};
  const char **argv = calloc(CLI_PARAMS_MAX_ARGS + 1, sizeof *argv);
  json_t *req = NULL;
  int code = 0;
  kerr err;
  (void)state;
  /* Too many tokens. */
  assert_non_null(argv);
  for (int i = 0; i <= CLI_PARAMS_MAX_ARGS; i++) argv[i] = "x";
  assert_int_equal(cli_params_build(kms_op("list-keys"), CLI_PARAMS_MAX_ARGS + 1, (char *const *)argv, NULL, &req,
                                    &code, &err),
                   KERR_VALIDATION);
  assert_int_equal(code, 252);
  free(argv);
  /* A list longer than the bound. */
  list = json_array();
  for (unsigned i = 0; i <= CLI_PARAMS_MAX_ITEMS; i++) json_array_append_new(list, json_string("t"));
  doc = json_pack("{s:s,s:o}", "KeyId", "k", "GrantTokens", list);
  opts.cli_input = doc;
  assert_int_equal(KMS_OPTS(&opts, "describe-key", "--key-id", "k"), 252);
  assert_non_null(strstr(out, "valid max length: 10000"));
  json_decref(doc);
  /* Nesting deeper than the bound. */
  deep = json_string("v");
  for (unsigned i = 0; i < CLI_PARAMS_MAX_DEPTH + 2; i++) deep = json_pack("{s:o}", "a", deep);
  doc = json_pack("{s:s,s:s,s:o}", "KeyId", "k", "Plaintext", "YQ==", "EncryptionContext", deep);
  opts.cli_input = doc;
  assert_int_equal(KMS_OPTS(&opts, "encrypt", "--key-id", "k"), 252);
  json_decref(doc);
  /* A request larger than the bound. */
  {
    char *huge = malloc(CLI_PARAMS_MAX_REQUEST + 1);
    assert_non_null(huge);
    memset(huge, 'p', CLI_PARAMS_MAX_REQUEST);
    huge[CLI_PARAMS_MAX_REQUEST] = '\0';
    doc = json_pack("{s:s,s:s}", "KeyId", "k", "Policy", huge);
    free(huge);
    opts.cli_input = doc;
    assert_int_equal(KMS_OPTS(&opts, "put-key-policy", "--key-id", "k"), 252);
    assert_non_null(strstr(out, "larger than"));
    json_decref(doc);
  }
  /* Arguments the caller must pass. */
  assert_int_equal(cli_params_build(NULL, 0, NULL, NULL, &req, &code, &err), KERR_INTERNAL);
  assert_int_equal(code, 255);
  assert_int_equal(cli_params_build(kms_op("list-keys"), 0, NULL, NULL, NULL, &code, NULL), KERR_INTERNAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kebab_names),       cmocka_unit_test(test_every_member_is_an_option),
      cmocka_unit_test(test_scalars),           cmocka_unit_test(test_timestamps),
      cmocka_unit_test(test_blobs),             cmocka_unit_test(test_files),
      cmocka_unit_test(test_lists_maps_structures), cmocka_unit_test(test_usage_errors),
      cmocka_unit_test(test_input_document),    cmocka_unit_test(test_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
