/* test_aws_config.c - the client side of kmsd's tools: config lookup and the signed HTTP client.
 *
 * Part 1: the credential and region lookup follows the aws CLI.
 * Each test builds a real HOME with ~/.aws/credentials and ~/.aws/config (or
 * files named by AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE) in a fresh
 * temporary directory and a clean AWS_* environment, then checks what
 * aws_config_load resolves: the precedence between flags, environment and
 * files, profile naming in both files, the INI dialect, and that malformed
 * or partial configurations fail with a message that names the problem and
 * never the secret, and with the rule broken in aws_config.problem;
 * max_attempts from AWS_MAX_ATTEMPTS or the profile.
 *
 * Part 2: aws_http against a real HTTP server on loopback (lib/http) that
 * verifies every request with sigv4_verify for service `cloudhsm`, so the
 * client's signatures (with and without a session token) are proven
 * acceptable to kmsd's own verifier; the server's scripted replies exercise
 * the AWS error shapes (namespaced __type, x-amzn-ErrorType, "Message",
 * non-JSON bodies), the reply cap and connection failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "aws/credentials.h"
#include "aws/sigv4.h"
#include "client/aws_config.h"
#include "client/aws_http.h"
#include "core/kclock.h"
#include "http/http_server.h"

static const char *const AWS_VARS[] = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ENDPOINT_URL", "AWS_CA_BUNDLE", "AWS_MAX_ATTEMPTS",
};

typedef struct fixture {
  char home[256];
  char aws_dir[300];
  char creds[320];
  char config[320];
} fixture;

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
  assert_int_equal(fclose(f), 0);
}

static int setup(void **state) {
  fixture *fx = calloc(1, sizeof *fx);
  size_t i;
  if (!fx) return -1;
  snprintf(fx->home, sizeof fx->home, "/tmp/test_aws_config.XXXXXX");
  if (!mkdtemp(fx->home)) return -1;
  snprintf(fx->aws_dir, sizeof fx->aws_dir, "%s/.aws", fx->home);
  if (mkdir(fx->aws_dir, 0700) != 0) return -1;
  snprintf(fx->creds, sizeof fx->creds, "%s/credentials", fx->aws_dir);
  snprintf(fx->config, sizeof fx->config, "%s/config", fx->aws_dir);
  for (i = 0; i < sizeof AWS_VARS / sizeof *AWS_VARS; i++) unsetenv(AWS_VARS[i]);
  setenv("HOME", fx->home, 1);
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fixture *fx = *state;
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->home);
  if (system(cmd) != 0) return -1;
  free(fx);
  return 0;
}

static kerr_code load(const aws_config_opts *o, aws_config *c, kerr *err) {
  kerr_clear(err);
  return aws_config_load(o, c, err);
}

/* Without HOME, "~" is the password database's home directory of the user
 * (read with getpwuid_r, safe in threaded programs). */
static void test_home_from_password_database(void **state) {
  (void)state;
  aws_config c;
  kerr err;
  struct passwd pwd, *pw = NULL;
  char buf[4096], want[600];
  assert_int_equal(getpwuid_r(getuid(), &pwd, buf, sizeof buf, &pw), 0);
  assert_non_null(pw);
  unsetenv("HOME");
  setenv("AWS_CA_BUNDLE", "~/kmsd-test-bundle.pem", 1);
  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  snprintf(want, sizeof want, "%s/kmsd-test-bundle.pem", pw->pw_dir);
  assert_string_equal(c.ca_bundle, want);
  aws_config_free(&c);
}

/* Credentials a program hands over come first, whole or not at all. */
static void test_explicit_credentials(void **state) {
  fixture *fx = *state;
  aws_config c;
  kerr err;
  aws_config_credentials given = {"AKIAGIVEN", "givensecret", "giventoken"};
  write_file(fx->creds, "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = filesecret\n");
  /* Even half an environment pair does not matter then. */
  setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
  kerr_clear(&err);
  assert_int_equal(aws_config_load_with(NULL, &given, &c, &err), KERR_OK);
  assert_string_equal(c.access_key_id, "AKIAGIVEN");
  assert_string_equal(c.secret_access_key, "givensecret");
  assert_string_equal(c.session_token, "giventoken");
  assert_int_equal(c.source, AWS_CRED_EXPLICIT);
  assert_string_equal(aws_cred_source_name(c.source), "the client options");
  aws_config_free(&c);
  given.secret_access_key = NULL;
  kerr_clear(&err);
  assert_int_equal(aws_config_load_with(NULL, &given, &c, &err), KERR_VALIDATION);
  assert_int_equal(c.problem, AWS_CONFIG_PARTIAL_CREDENTIALS);
  assert_null(strstr(err.msg, "AKIAGIVEN"));
  assert_null(strstr(err.msg, "giventoken"));
  /* All NULL: the usual chain (here the half environment pair is refused). */
  aws_config_credentials none = {NULL, NULL, NULL};
  kerr_clear(&err);
  assert_int_equal(aws_config_load_with(NULL, &none, &c, &err), KERR_VALIDATION);
  assert_int_equal(c.problem, AWS_CONFIG_PARTIAL_CREDENTIALS);
}

static void test_environment_credentials_win_over_files(void **state) {
  fixture *fx = *state;
  aws_config c;
  kerr err;
  write_file(fx->creds, "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = filesecret\n");
  setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
  setenv("AWS_SESSION_TOKEN", "envtoken", 1);
  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  assert_string_equal(c.access_key_id, "AKIAENV");
  assert_string_equal(c.secret_access_key, "envsecret");
  assert_string_equal(c.session_token, "envtoken");
  assert_int_equal(c.source, AWS_CRED_ENV);
  assert_string_equal(c.profile, "default");
  aws_config_free(&c);
  assert_null(c.access_key_id);
}

static void test_shared_file_default_profile(void **state) {
  fixture *fx = *state;
  aws_config c;
  kerr err;
  write_file(fx->creds, "# comment\n; another\n[default]\r\nAWS_ACCESS_KEY_ID: AKIAFILE\r\n"
                        "aws_secret_access_key=  file/secret+x  \r\naws_security_token = legacy\r\n");
  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  assert_string_equal(c.access_key_id, "AKIAFILE");
  assert_string_equal(c.secret_access_key, "file/secret+x");
  assert_string_equal(c.session_token, "legacy");
  assert_int_equal(c.source, AWS_CRED_SHARED_FILE);
  assert_null(c.region);
  assert_int_equal(aws_config_require(&c, &err), KERR_VALIDATION);
  assert_non_null(strstr(err.msg, "region"));
  aws_config_free(&c);
}

static void test_explicit_profile_overrides_environment(void **state) {
  fixture *fx = *state;
  aws_config c;
  aws_config_opts o = {.profile = "dev"};
  kerr err;
  write_file(fx->creds, "[default]\naws_access_key_id = AKIADEF\naws_secret_access_key = d\n"
                        "[dev]\naws_access_key_id = AKIADEV\naws_secret_access_key = devsecret\n");
  write_file(fx->config, "[default]\nregion = eu-west-1\n[profile dev]\nregion = ap-south-1\n");
  setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
  assert_int_equal(load(&o, &c, &err), KERR_OK);
  assert_string_equal(c.access_key_id, "AKIADEV");
  assert_string_equal(c.region, "ap-south-1");
  assert_string_equal(c.profile, "dev");
  aws_config_free(&c);
}

static void test_aws_profile_env_keeps_env_credentials(void **state) {
  fixture *fx = *state;
  aws_config c;
  kerr err;
  write_file(fx->creds, "[dev]\naws_access_key_id = AKIADEV\naws_secret_access_key = devsecret\n");
  write_file(fx->config, "[profile dev]\nregion = ap-south-1\n");
  setenv("AWS_PROFILE", "dev", 1);
  setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  assert_string_equal(c.access_key_id, "AKIAENV");  /* botocore keeps env credentials */
  assert_string_equal(c.region, "ap-south-1");      /* but the profile's settings apply */
  aws_config_free(&c);

  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  assert_string_equal(c.access_key_id, "AKIADEV");
  assert_string_equal(c.profile, "dev");
  aws_config_free(&c);

  /* AWS_DEFAULT_PROFILE is looked at before AWS_PROFILE, as botocore does. */
  setenv("AWS_DEFAULT_PROFILE", "nosuch", 1);
  assert_int_equal(load(NULL, &c, &err), KERR_VALIDATION);
  assert_string_equal(err.msg, "The config profile (nosuch) could not be found");
}

static void test_config_file_credentials_and_merge(void **state) {
  fixture *fx = *state;
  aws_config c;
  aws_config_opts o = {.profile = "ops"};
  kerr err;
  /* Credentials only in the config file; a region in both files: the
   * credentials file's wins, as botocore merges them. */
  write_file(fx->config, "[profile ops]\naws_access_key_id = AKIACFG\naws_secret_access_key = cfgsecret\n"
                         "aws_session_token = cfgtoken\nregion = us-west-2\n"
                         "s3 =\n  max_concurrent_requests = 20\n  region = nested-not-a-region\n"
                         "endpoint_url = http://127.0.0.1:4599\nca_bundle = ~/ca.pem\n");
  write_file(fx->creds, "[ops]\nregion = eu-north-1\n");
  assert_int_equal(load(&o, &c, &err), KERR_OK);
  assert_string_equal(c.access_key_id, "AKIACFG");
  assert_string_equal(c.secret_access_key, "cfgsecret");
  assert_string_equal(c.session_token, "cfgtoken");
  assert_int_equal(c.source, AWS_CRED_CONFIG_FILE);
  assert_string_equal(c.region, "eu-north-1");
  assert_string_equal(c.endpoint_url, "http://127.0.0.1:4599");
  {
    char expect[400];
    snprintf(expect, sizeof expect, "%s/ca.pem", fx->home);
    assert_string_equal(c.ca_bundle, expect);
  }
  assert_int_equal(aws_config_require(&c, &err), KERR_OK);
  aws_config_free(&c);
}

static void test_region_endpoint_precedence(void **state) {
  fixture *fx = *state;
  aws_config c;
  aws_config_opts flags = {.region = "sa-east-1", .endpoint_url = "http://flag", .ca_bundle = "/flag.pem"};
  kerr err;
  write_file(fx->config, "[default]\nregion = eu-west-1\nendpoint_url = http://file\n");
  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  assert_string_equal(c.region, "eu-west-1");
  assert_string_equal(c.endpoint_url, "http://file");
  aws_config_free(&c);
  setenv("AWS_DEFAULT_REGION", "us-east-2", 1);
  setenv("AWS_ENDPOINT_URL", "http://env", 1);
  setenv("AWS_CA_BUNDLE", "/env.pem", 1);
  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  assert_string_equal(c.region, "us-east-2");
  assert_string_equal(c.endpoint_url, "http://env");
  assert_string_equal(c.ca_bundle, "/env.pem");
  aws_config_free(&c);
  setenv("AWS_REGION", "ca-central-1", 1);
  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  assert_string_equal(c.region, "ca-central-1");
  aws_config_free(&c);
  assert_int_equal(load(&flags, &c, &err), KERR_OK);
  assert_string_equal(c.region, "sa-east-1");
  assert_string_equal(c.endpoint_url, "http://flag");
  assert_string_equal(c.ca_bundle, "/flag.pem");
  aws_config_free(&c);
}

static void test_file_locations_from_environment(void **state) {
  fixture *fx = *state;
  aws_config c;
  kerr err;
  char path[400];
  /* The default files hold other values; the named files must be the ones read. */
  write_file(fx->creds, "[default]\naws_access_key_id = AKIAHOME\naws_secret_access_key = h\n");
  snprintf(path, sizeof path, "%s/elsewhere-creds", fx->home);
  write_file(path, "[default]\naws_access_key_id = AKIAELSE\naws_secret_access_key = e\n");
  setenv("AWS_SHARED_CREDENTIALS_FILE", "~/elsewhere-creds", 1);
  snprintf(path, sizeof path, "%s/elsewhere-config", fx->home);
  write_file(path, "[default]\nregion = me-south-1\n");
  setenv("AWS_CONFIG_FILE", path, 1);
  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  assert_string_equal(c.access_key_id, "AKIAELSE");
  assert_string_equal(c.region, "me-south-1");
  aws_config_free(&c);

  /* /dev/null, as test harnesses set it, is an empty file. */
  setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null", 1);
  setenv("AWS_CONFIG_FILE", "/dev/null", 1);
  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  assert_null(c.access_key_id);
  assert_int_equal(aws_config_require(&c, &err), KERR_MISSING_AUTH_TOKEN);
  assert_non_null(strstr(err.msg, "Unable to locate credentials"));
  aws_config_free(&c);
}

static void test_missing_files_and_profiles(void **state) {
  aws_config c;
  aws_config_opts o = {.profile = "ghost"};
  kerr err;
  (void)state;
  /* No files at all: nothing configured, not an error. */
  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  assert_null(c.access_key_id);
  assert_null(c.region);
  assert_int_equal(c.source, AWS_CRED_NONE);
  aws_config_free(&c);
  /* A named profile must exist. */
  assert_int_equal(load(&o, &c, &err), KERR_VALIDATION);
  assert_string_equal(err.msg, "The config profile (ghost) could not be found");
  assert_null(c.profile);
}

static void test_partial_credentials(void **state) {
  fixture *fx = *state;
  aws_config c;
  kerr err;
  setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
  assert_int_equal(load(NULL, &c, &err), KERR_VALIDATION);
  assert_string_equal(err.msg, "Partial credentials found in env, missing: AWS_SECRET_ACCESS_KEY");
  unsetenv("AWS_ACCESS_KEY_ID");
  write_file(fx->creds, "[default]\naws_secret_access_key = topsecret-value\n");
  assert_int_equal(load(NULL, &c, &err), KERR_VALIDATION);
  assert_string_equal(err.msg, "Partial credentials found in shared-credentials-file, missing: aws_access_key_id");
  assert_null(strstr(err.msg, "topsecret"));
}

static void expect_parse_error(fixture *fx, const char *text, const char *needle) {
  aws_config c;
  kerr err;
  write_file(fx->creds, text);
  assert_int_equal(load(NULL, &c, &err), KERR_VALIDATION);
  if (!strstr(err.msg, needle)) fail_msg("message %s lacks %s", err.msg, needle);
  assert_non_null(strstr(err.msg, fx->creds));
  assert_null(strstr(err.msg, "s3cr3t"));
  assert_null(c.access_key_id);
}

static void test_malformed_files(void **state) {
  fixture *fx = *state;
  expect_parse_error(fx, "aws_secret_access_key = s3cr3t\n", "line 1: setting outside any [section]");
  expect_parse_error(fx, "[default]\naws_secret_access_key = s3cr3t\n[default]\n", "line 3: section [default] appears twice");
  expect_parse_error(fx, "[default]\naws_secret_access_key = s3cr3t\nAWS_SECRET_ACCESS_KEY = s3cr3t\n",
                     "line 3: `aws_secret_access_key` appears twice in [default]");
  expect_parse_error(fx, "[default]\njust-a-word-s3cr3t\n", "line 2: expected `key = value`");
  expect_parse_error(fx, "[default\n", "line 1: bad section header");
  expect_parse_error(fx, "[]\n", "line 1: bad section header");
}

static void test_oversized_file(void **state) {
  fixture *fx = *state;
  aws_config c;
  kerr err;
  size_t n = 1024 * 1024 + 10, i;
  char *big = malloc(n + 1);
  assert_non_null(big);
  memcpy(big, "[default]\n", 10);
  for (i = 10; i < n; i++) big[i] = (i % 64 == 63) ? '\n' : '#';
  big[n] = '\0';
  write_file(fx->creds, big);
  free(big);
  assert_int_equal(load(NULL, &c, &err), KERR_VALIDATION);
  assert_non_null(strstr(err.msg, "larger than"));
}

static void test_unsupported_credential_styles(void **state) {
  fixture *fx = *state;
  aws_config c;
  aws_config_opts o = {.profile = "role"};
  kerr err;
  write_file(fx->config, "[profile role]\nrole_arn = arn:aws:iam::111122223333:role/x\nsource_profile = default\n");
  assert_int_equal(load(&o, &c, &err), KERR_VALIDATION);
  assert_non_null(strstr(err.msg, "role_arn"));
}

static void test_secrets_are_copies(void **state) {
  fixture *fx = *state;
  aws_config c;
  kerr err;
  (void)fx;
  setenv("AWS_ACCESS_KEY_ID", "AKIAENV", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  /* The struct owns its strings: the environment may change afterwards. */
  assert_ptr_not_equal(c.secret_access_key, getenv("AWS_SECRET_ACCESS_KEY"));
  setenv("AWS_SECRET_ACCESS_KEY", "changed", 1);
  assert_string_equal(c.secret_access_key, "envsecret");
  assert_string_equal(aws_cred_source_name(c.source), "environment");
  aws_config_free(&c);
  aws_config_free(NULL);
}


/* ------------------------------------------------------------ aws_http */

#define AKID "AKIAIOSFODNN7EXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define TOKEN_AKID "AKIASESSIONEXAMPLE01"
#define TOKEN_SECRET "session-secret-key-00000000000000000000"
#define TOKEN "session-token-example"

typedef struct http_fixture {
  http_server *server;
  creds_store *creds;
  char url[64];
  char dir[64];
  char last_body[256];     /* what the server received */
  char last_verify[1200];  /* "" when the signature verified */
} http_fixture;

static void reply(http_response *r, int status, const char *body) {
  r->status = status;
  r->body = strdup(body);
  r->body_len = strlen(body);
}

static const char *header_of(const http_request *req, const char *name) {
  size_t i;
  for (i = 0; i < req->nheaders; i++)
    if (strcasecmp(req->headers[i].name, name) == 0) return req->headers[i].value;
  return "";
}

static void handle(void *ctx, const http_request *req, http_response *resp) {
  http_fixture *fx = ctx;
  sigv4_request sr;
  sigv4_result who;
  kerr err;
  const char *target = header_of(req, "X-Amz-Target");

  memset(&sr, 0, sizeof sr);
  sr.method = req->method;
  sr.path = req->path;
  sr.query = req->query;
  sr.headers = req->headers;
  sr.nheaders = req->nheaders;
  sr.body = req->body;
  sr.body_len = req->body_len;
  kerr_clear(&err);
  if (sigv4_verify(fx->creds, &sr, "cloudhsm", kclock_now_s(), &who, &err) != KERR_OK)
    snprintf(fx->last_verify, sizeof fx->last_verify, "%s: %s", kerr_name(err.code), err.msg);
  else
    fx->last_verify[0] = '\0';
  snprintf(fx->last_body, sizeof fx->last_body, "%.*s", (int)req->body_len, req->body ? (const char *)req->body : "");
  http_response_header(resp, "x-amzn-RequestId", "req-1234");
  if (strcmp(target, "T.Ok") == 0) {
    reply(resp, 200, "{\"State\":\"ACTIVE\"}");
  } else if (strcmp(target, "T.Empty") == 0) {
    reply(resp, 200, "");
  } else if (strcmp(target, "T.NsErr") == 0) {
    reply(resp, 400, "{\"__type\":\"com.amazonaws.kms#NotFoundException\",\"message\":\"no such key\"}");
  } else if (strcmp(target, "T.HeaderErr") == 0) {
    http_response_header(resp, "x-amzn-ErrorType", "ThrottlingException:http://internal.amazon.com/");
    reply(resp, 400, "{\"Message\":\"slow down\"}");
  } else if (strcmp(target, "T.Text") == 0) {
    reply(resp, 502, "Bad gateway\n\x1b[31mred");
  } else if (strcmp(target, "T.Huge") == 0) {
    size_t n = AWS_HTTP_REPLY_MAX + 100;
    resp->status = 200;
    resp->body = malloc(n);
    memset(resp->body, 'x', n);
    resp->body_len = n;
  } else {
    reply(resp, 400, "{\"__type\":\"UnknownOperationException\"}");
  }
}

static int http_setup(void **state) {
  http_fixture *fx = calloc(1, sizeof *fx);
  http_server_config cfg;
  kerr err;
  char path[128];
  FILE *f;
  if (!fx) return -1;
  snprintf(fx->dir, sizeof fx->dir, "/tmp/test_aws_http.XXXXXX");
  if (!mkdtemp(fx->dir)) return -1;
  snprintf(path, sizeof path, "%s/credentials.json", fx->dir);
  f = fopen(path, "w");
  if (!f) return -1;
  fprintf(f, "{\"principals\":[{\"accessKeyId\":\"" AKID "\",\"secretAccessKey\":\"" SECRET "\","
             "\"accountId\":\"111122223333\",\"arn\":\"arn:aws:iam::111122223333:root\"},"
             "{\"accessKeyId\":\"" TOKEN_AKID "\",\"secretAccessKey\":\"" TOKEN_SECRET "\","
             "\"sessionToken\":\"" TOKEN "\",\"accountId\":\"111122223333\","
             "\"arn\":\"arn:aws:iam::111122223333:user/s\"}]}");
  fclose(f);
  if (creds_load(path, 0, &fx->creds, &err) != KERR_OK) return -1;
  memset(&cfg, 0, sizeof cfg);
  cfg.host = "127.0.0.1";
  cfg.threads = 1;
  cfg.handler = handle;
  cfg.handler_ctx = fx;
  if (http_server_start(&cfg, &fx->server, &err) != KERR_OK) return -1;
  snprintf(fx->url, sizeof fx->url, "http://127.0.0.1:%u", (unsigned)http_server_port(fx->server));
  *state = fx;
  return 0;
}

static int http_teardown(void **state) {
  http_fixture *fx = *state;
  char cmd[128];
  http_server_stop(fx->server, 1000);
  creds_free(fx->creds);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
  if (system(cmd) != 0) return -1;
  free(fx);
  return 0;
}

static aws_config test_config(const char *url, const char *akid, const char *secret, const char *token) {
  aws_config c;
  memset(&c, 0, sizeof c);
  c.profile = (char *)"default";
  c.access_key_id = (char *)akid;
  c.secret_access_key = (char *)secret;
  c.session_token = (char *)token;
  c.region = (char *)"eu-west-1";
  c.endpoint_url = (char *)url;
  return c;
}

static void call(aws_http_client *client, const char *target, const char *body, aws_http_reply *r, kerr_code want) {
  kerr err;
  kerr_clear(&err);
  kerr_code rc = aws_http_call(client, target, body, strlen(body), r, &err);
  if (rc != want) fail_msg("%s: got %d (%s), want %d", target, rc, err.msg, want);
}

static void test_http_signed_calls_verify(void **state) {
  http_fixture *fx = *state;
  aws_config cfg = test_config(fx->url, AKID, SECRET, NULL);
  aws_http_client *client = NULL;
  aws_http_reply r;
  kerr err;

  assert_int_equal(aws_http_client_new(&cfg, "cloudhsm", &client, &err), KERR_OK);
  assert_string_equal(aws_http_client_endpoint(client), fx->url);
  call(client, "T.Ok", "{\"ClusterId\":\"cluster-abcdefghijk\"}", &r, KERR_OK);
  assert_string_equal(fx->last_verify, "");
  assert_string_equal(fx->last_body, "{\"ClusterId\":\"cluster-abcdefghijk\"}");
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"State\":\"ACTIVE\"}");
  assert_string_equal(r.request_id, "req-1234");
  assert_string_equal(r.error_type, "");
  aws_http_reply_free(&r);
  /* The connection is reused; the second call is signed afresh. */
  call(client, "T.Empty", "", &r, KERR_OK);
  assert_string_equal(fx->last_verify, "");
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, 0);
  assert_non_null(r.body);
  aws_http_reply_free(&r);
  aws_http_client_free(client);

  /* A wrong secret is caught by the verifier, and a session key needs its token. */
  cfg = test_config(fx->url, AKID, "not-the-secret", NULL);
  assert_int_equal(aws_http_client_new(&cfg, "cloudhsm", &client, &err), KERR_OK);
  call(client, "T.Ok", "{}", &r, KERR_OK);
  assert_non_null(strstr(fx->last_verify, "InvalidSignatureException"));
  aws_http_reply_free(&r);
  aws_http_client_free(client);
  cfg = test_config(fx->url, TOKEN_AKID, TOKEN_SECRET, TOKEN);
  assert_int_equal(aws_http_client_new(&cfg, "cloudhsm", &client, &err), KERR_OK);
  call(client, "T.Ok", "{}", &r, KERR_OK);
  assert_string_equal(fx->last_verify, "");
  aws_http_reply_free(&r);
  aws_http_client_free(client);
  /* Signed for the wrong service: kmsd's verifier refuses the scope. */
  cfg = test_config(fx->url, AKID, SECRET, NULL);
  assert_int_equal(aws_http_client_new(&cfg, "kms", &client, &err), KERR_OK);
  call(client, "T.Ok", "{}", &r, KERR_OK);
  assert_non_null(strstr(fx->last_verify, "InvalidSignatureException"));
  aws_http_reply_free(&r);
  aws_http_client_free(client);
}

static void test_http_error_shapes(void **state) {
  http_fixture *fx = *state;
  aws_config cfg = test_config(fx->url, AKID, SECRET, NULL);
  aws_http_client *client = NULL;
  aws_http_reply r;
  kerr err;

  assert_int_equal(aws_http_client_new(&cfg, "cloudhsm", &client, &err), KERR_OK);
  call(client, "T.NsErr", "{}", &r, KERR_OK);
  assert_int_equal(r.status, 400);
  assert_string_equal(r.error_type, "NotFoundException");
  assert_string_equal(r.error_message, "no such key");
  aws_http_reply_free(&r);
  call(client, "T.HeaderErr", "{}", &r, KERR_OK);
  assert_string_equal(r.error_type, "ThrottlingException");
  assert_string_equal(r.error_message, "slow down");
  aws_http_reply_free(&r);
  call(client, "T.Text", "{}", &r, KERR_OK);
  assert_int_equal(r.status, 502);
  assert_string_equal(r.error_type, "502");
  assert_string_equal(r.error_message, "Bad gateway  [31mred"); /* control characters blanked */
  aws_http_reply_free(&r);
  call(client, "T.Other", "{}", &r, KERR_OK);
  assert_string_equal(r.error_type, "UnknownOperationException");
  assert_string_equal(r.error_message, "");
  aws_http_reply_free(&r);
  /* A reply beyond the cap is refused, not buffered. */
  call(client, "T.Huge", "{}", &r, KERR_DEPENDENCY_TIMEOUT);
  assert_int_equal(r.failure, AWS_HTTP_FAIL_TOO_LARGE);
  aws_http_reply_free(&r);
  aws_http_client_free(client);
}

static void test_http_client_refusals(void **state) {
  http_fixture *fx = *state;
  aws_config cfg;
  aws_http_client *client = (aws_http_client *)1;
  aws_http_reply r;
  kerr err;
  (void)fx;

  cfg = test_config("ftp://127.0.0.1/", AKID, SECRET, NULL);
  assert_int_equal(aws_http_client_new(&cfg, "cloudhsm", &client, &err), KERR_VALIDATION);
  assert_null(client);
  assert_non_null(strstr(err.msg, "scheme must be http or https"));
  cfg = test_config("not a url", AKID, SECRET, NULL);
  assert_int_equal(aws_http_client_new(&cfg, "cloudhsm", &client, &err), KERR_VALIDATION);
  cfg = test_config("http://127.0.0.1:1/?x=1", AKID, SECRET, NULL);
  assert_int_equal(aws_http_client_new(&cfg, "cloudhsm", &client, &err), KERR_VALIDATION);
  cfg = test_config(NULL, AKID, SECRET, NULL);
  assert_int_equal(aws_http_client_new(&cfg, "cloudhsm", &client, &err), KERR_VALIDATION);
  assert_non_null(strstr(err.msg, "--endpoint-url"));
  cfg = test_config("http://127.0.0.1:1", NULL, NULL, NULL);
  assert_int_equal(aws_http_client_new(&cfg, "cloudhsm", &client, &err), KERR_MISSING_AUTH_TOKEN);

  /* Nothing listens on port 1: no reply, and the message says where. */
  cfg = test_config("http://127.0.0.1:1", AKID, SECRET, NULL);
  assert_int_equal(aws_http_client_new(&cfg, "cloudhsm", &client, &err), KERR_OK);
  aws_http_client_set_timeouts(client, 2, 5);
  assert_int_equal(aws_http_call(client, "T.Ok", "{}", 2, &r, &err), KERR_DEPENDENCY_TIMEOUT);
  assert_non_null(strstr(err.msg, "Could not connect to the endpoint URL: \"http://127.0.0.1:1\""));
  assert_null(strstr(err.msg, SECRET));
  assert_int_equal(r.failure, AWS_HTTP_FAIL_CONNECT);
  aws_http_reply_free(&r);
  aws_http_client_free(client);
}

static void test_max_attempts_setting(void **state) {
  fixture *fx = *state;
  static const char *const bad[] = {"0", "-1", "101", "2x", "1.5", " ", "99999999999999999999"};
  aws_config c;
  kerr err;
  size_t i;

  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  assert_int_equal(c.max_attempts, 0); /* not configured: the caller's default */
  aws_config_free(&c);
  write_file(fx->config, "[default]\nmax_attempts = 4\n[profile other]\nmax_attempts=9\n");
  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  assert_int_equal(c.max_attempts, 4);
  aws_config_free(&c);
  {
    aws_config_opts o = {.profile = "other"};
    assert_int_equal(load(&o, &c, &err), KERR_OK);
    assert_int_equal(c.max_attempts, 9);
    aws_config_free(&c);
  }
  /* The environment wins over the profile; an empty variable is unset. */
  setenv("AWS_MAX_ATTEMPTS", "7", 1);
  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  assert_int_equal(c.max_attempts, 7);
  aws_config_free(&c);
  setenv("AWS_MAX_ATTEMPTS", "", 1);
  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  assert_int_equal(c.max_attempts, 4);
  aws_config_free(&c);
  setenv("AWS_MAX_ATTEMPTS", "100", 1);
  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  assert_int_equal(c.max_attempts, AWS_CONFIG_MAX_ATTEMPTS_LIMIT);
  aws_config_free(&c);
  for (i = 0; i < sizeof bad / sizeof *bad; i++) {
    setenv("AWS_MAX_ATTEMPTS", bad[i], 1);
    if (strcmp(bad[i], " ") == 0) continue; /* blank is "set": checked below */
    assert_int_equal(load(NULL, &c, &err), KERR_VALIDATION);
    assert_int_equal(c.problem, AWS_CONFIG_BAD_VALUE);
    assert_null(c.profile);
    assert_non_null(strstr(err.msg, "AWS_MAX_ATTEMPTS"));
  }
  setenv("AWS_MAX_ATTEMPTS", " ", 1);
  assert_int_equal(load(NULL, &c, &err), KERR_VALIDATION);
  unsetenv("AWS_MAX_ATTEMPTS");
  write_file(fx->config, "[default]\nmax_attempts = lots\n");
  assert_int_equal(load(NULL, &c, &err), KERR_VALIDATION);
  assert_int_equal(c.problem, AWS_CONFIG_BAD_VALUE);
  assert_non_null(strstr(err.msg, "max_attempts"));
}

static void test_problem_names_the_rule(void **state) {
  fixture *fx = *state;
  aws_config c;
  aws_config_opts ghost = {.profile = "ghost"};
  kerr err;

  assert_int_equal(load(&ghost, &c, &err), KERR_VALIDATION);
  assert_int_equal(c.problem, AWS_CONFIG_PROFILE_NOT_FOUND);
  write_file(fx->creds, "[default]\naws_access_key_id = AKIAONLY\n");
  assert_int_equal(load(NULL, &c, &err), KERR_VALIDATION);
  assert_int_equal(c.problem, AWS_CONFIG_PARTIAL_CREDENTIALS);
  write_file(fx->creds, "[default]\nrole_arn = arn:aws:iam::111122223333:role/r\n");
  assert_int_equal(load(NULL, &c, &err), KERR_VALIDATION);
  assert_int_equal(c.problem, AWS_CONFIG_UNSUPPORTED_CREDENTIALS);
  write_file(fx->creds, "key = outside\n");
  assert_int_equal(load(NULL, &c, &err), KERR_VALIDATION);
  assert_int_equal(c.problem, AWS_CONFIG_BAD_FILE);
  write_file(fx->creds, "[default]\naws_access_key_id = AKIAOK\naws_secret_access_key = s\n");
  assert_int_equal(load(NULL, &c, &err), KERR_OK);
  assert_int_equal(c.problem, AWS_CONFIG_NO_PROBLEM);
  aws_config_free(&c);
}

/* Settings that are not credentials (the CLI's output, cli_pager, ...) come
 * from the config file's section of the profile; missing is NULL, not an
 * error; the credentials file is not looked at. */
static void test_profile_settings(void **state) {
  fixture *fx = *state;
  kerr err;
  char *v = NULL;
  write_file(fx->config, "[default]\noutput = table\n[profile dev]\ncli_pager = less -S\noutput = text\n");
  write_file(fx->creds, "[default]\ncli_timestamp_format = wire\n");
  assert_int_equal(aws_config_setting(NULL, "output", &v, &err), KERR_OK);
  assert_string_equal(v, "table");
  free(v);
  assert_int_equal(aws_config_setting("dev", "cli_pager", &v, &err), KERR_OK);
  assert_string_equal(v, "less -S");
  free(v);
  setenv("AWS_PROFILE", "dev", 1);
  assert_int_equal(aws_config_setting(NULL, "output", &v, &err), KERR_OK);
  assert_string_equal(v, "text");
  free(v);
  unsetenv("AWS_PROFILE");
  assert_int_equal(aws_config_setting(NULL, "cli_timestamp_format", &v, &err), KERR_OK);
  assert_null(v);
  assert_int_equal(aws_config_setting("nobody", "output", &v, &err), KERR_OK);
  assert_null(v);
  {
    static const char *const keys[] = {"output", "cli_pager", "region"};
    char *vals[3];
    assert_int_equal(aws_config_settings("dev", keys, 3, vals, &err), KERR_OK);
    assert_string_equal(vals[0], "text");
    assert_string_equal(vals[1], "less -S");
    assert_null(vals[2]);
    free(vals[0]);
    free(vals[1]);
  }
  write_file(fx->config, "[default\noutput = table\n");
  assert_int_equal(aws_config_setting(NULL, "output", &v, &err), KERR_VALIDATION);
  assert_null(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_home_from_password_database, setup, teardown),
      cmocka_unit_test_setup_teardown(test_explicit_credentials, setup, teardown),
      cmocka_unit_test_setup_teardown(test_environment_credentials_win_over_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_profile_settings, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shared_file_default_profile, setup, teardown),
      cmocka_unit_test_setup_teardown(test_explicit_profile_overrides_environment, setup, teardown),
      cmocka_unit_test_setup_teardown(test_aws_profile_env_keeps_env_credentials, setup, teardown),
      cmocka_unit_test_setup_teardown(test_config_file_credentials_and_merge, setup, teardown),
      cmocka_unit_test_setup_teardown(test_region_endpoint_precedence, setup, teardown),
      cmocka_unit_test_setup_teardown(test_file_locations_from_environment, setup, teardown),
      cmocka_unit_test_setup_teardown(test_missing_files_and_profiles, setup, teardown),
      cmocka_unit_test_setup_teardown(test_partial_credentials, setup, teardown),
      cmocka_unit_test_setup_teardown(test_malformed_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_oversized_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unsupported_credential_styles, setup, teardown),
      cmocka_unit_test_setup_teardown(test_secrets_are_copies, setup, teardown),
      cmocka_unit_test_setup_teardown(test_max_attempts_setting, setup, teardown),
      cmocka_unit_test_setup_teardown(test_problem_names_the_rule, setup, teardown),
      cmocka_unit_test_setup_teardown(test_http_signed_calls_verify, http_setup, http_teardown),
      cmocka_unit_test_setup_teardown(test_http_error_shapes, http_setup, http_teardown),
      cmocka_unit_test_setup_teardown(test_http_client_refusals, http_setup, http_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
