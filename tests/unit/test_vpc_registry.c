/* test_vpc_registry.c - kmsd's VPC endpoint service registry
 * (lib/api/vpc_registry): a full file read back field by field, defaults,
 * the lookup, every refusal with the path it names, the file checks of
 * vpc_registry_load, and each AWS requirement failed alone with the verdict
 * (NotFound or InvalidConfiguration) it leads to. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/vpc_registry.h"

#define SVC1 "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0"
#define SVC2 "com.amazonaws.vpce.us-east-1.vpce-svc-0fedcba9876543210"
#define SVC_EU "com.amazonaws.vpce.eu-west-1.vpce-svc-00112233445566778"
#define OWNER "111122223333"
#define KMS_US "cks.kms.us-east-1.amazonaws.com"

/* A service that meets every requirement; %s slots let a test replace the
 * members after "owner" (EXTRA) or before the closing brace (TAIL). */
#define GOOD_SERVICE(name)                                                        \
  "{\"service_name\": \"" name "\", \"owner\": \"" OWNER "\","                   \
  " \"private_dns_name\": \"xks.example.com\", \"private_dns_state\": \"verified\"," \
  " \"acceptance_required\": false,"                                               \
  " \"allowed_principals\": [\"" KMS_US "\"],"                                     \
  " \"availability_zones\": [\"us-east-1a\", \"us-east-1b\"],"                     \
  " \"forward_to\": \"127.0.0.1:8443\"}"

static const char *full_file =
    "{\"description\": \"test services\", \"services\": ["
    "{\"service_name\": \"" SVC1 "\", \"owner\": \"" OWNER "\", \"region\": \"us-east-1\","
    " \"service_type\": \"Interface\", \"state\": \"Available\","
    " \"private_dns_name\": \"xks.example.com\", \"private_dns_state\": \"verified\","
    " \"acceptance_required\": false,"
    " \"allowed_principals\": [\"" KMS_US "\", \"arn:aws:iam::111122223333:root\"],"
    " \"availability_zones\": [\"us-east-1a\", \"us-east-1b\", \"us-east-1c\"],"
    " \"forward_to\": \"127.0.0.1:8443\", \"description\": \"the good one\"},"
    "{\"service_name\": \"" SVC2 "\", \"owner\": \"444455556666\","
    " \"acceptance_required\": true, \"allowed_principals\": [],"
    " \"availability_zones\": [\"us-east-1a\"], \"forward_to\": \"[::1]:443\"}"
    "]}";

static vpc_registry *parse_ok(const char *text) {
  vpc_registry *r = NULL;
  kerr err;
  kerr_clear(&err);
  if (vpc_registry_parse(text, strlen(text), "svc.json", &r, &err) != KERR_OK)
    fail_msg("refused: %s", err.msg);
  assert_non_null(r);
  return r;
}

/* Parse `text`, expect a refusal whose message contains `needle`. */
static void refused(const char *text, const char *needle) {
  vpc_registry *r = (vpc_registry *)1;
  kerr err;
  kerr_clear(&err);
  assert_int_equal(vpc_registry_parse(text, strlen(text), "svc.json", &r, &err), KERR_VALIDATION);
  assert_null(r);
  assert_int_equal(err.code, KERR_VALIDATION);
  if (strncmp(err.msg, "svc.json: ", 10) != 0 || !strstr(err.msg, needle))
    fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
}

/* A file with one service: GOOD_SERVICE with `from` replaced by `to`. */
static void one_service(char *out, size_t cap, const char *from, const char *to) {
  const char *good = GOOD_SERVICE(SVC1);
  const char *at = from ? strstr(good, from) : NULL;
  if (from && !at) fail_msg("test bug: \"%s\" not in the service", from);
  if (!at) {
    snprintf(out, cap, "{\"services\": [%s]}", good);
    return;
  }
  snprintf(out, cap, "{\"services\": [%.*s%s%s]}", (int)(at - good), good, to, at + strlen(from));
}

/* ---- reading ---------------------------------------------------------------- */

static void test_full_file(void **state) {
  vpc_registry *r = parse_ok(full_file);
  const vpc_service *s;
  (void)state;
  assert_int_equal(r->count, 2);
  s = vpc_registry_find(r, SVC1);
  assert_ptr_equal(s, &r->services[0]);
  assert_string_equal(s->name, SVC1);
  assert_string_equal(s->owner, OWNER);
  assert_string_equal(s->region, "us-east-1");
  assert_int_equal(s->type, VPCR_TYPE_INTERFACE);
  assert_int_equal(s->state, VPCR_STATE_AVAILABLE);
  assert_string_equal(s->private_dns_name, "xks.example.com");
  assert_int_equal(s->private_dns_state, VPCR_DNS_VERIFIED);
  assert_int_equal(s->acceptance_required, 0);
  assert_int_equal(s->allowed_principal_count, 2);
  assert_string_equal(s->allowed_principals[1], "arn:aws:iam::111122223333:root");
  assert_int_equal(s->zone_count, 3);
  assert_string_equal(s->zones[2], "us-east-1c");
  assert_string_equal(s->forward_host, "127.0.0.1");
  assert_int_equal(s->forward_port, 8443);

  s = vpc_registry_find(r, SVC2);
  assert_non_null(s);
  assert_string_equal(s->owner, "444455556666");
  assert_string_equal(s->private_dns_name, "");
  assert_int_equal(s->private_dns_state, VPCR_DNS_PENDING);
  assert_int_equal(s->acceptance_required, 1);
  assert_int_equal(s->allowed_principal_count, 0);
  assert_string_equal(s->forward_host, "::1");
  assert_int_equal(s->forward_port, 443);

  assert_null(vpc_registry_find(r, SVC_EU));
  assert_null(vpc_registry_find(r, NULL));
  assert_null(vpc_registry_find(NULL, SVC1));
  assert_null(vpc_registry_find(r, "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef"));
  vpc_registry_free(r);
  vpc_registry_free(NULL);
}

static void test_empty_and_defaults(void **state) {
  char text[2048];
  vpc_registry *r = parse_ok("{\"services\": []}");
  (void)state;
  assert_int_equal(r->count, 0);
  vpc_registry_free(r);

  one_service(text, sizeof text, " \"private_dns_state\": \"verified\",", "");
  r = parse_ok(text);
  assert_int_equal(r->services[0].type, VPCR_TYPE_INTERFACE);
  assert_int_equal(r->services[0].state, VPCR_STATE_AVAILABLE);
  assert_int_equal(r->services[0].private_dns_state, VPCR_DNS_PENDING);
  vpc_registry_free(r);

  one_service(text, sizeof text, "\"127.0.0.1:8443\"", "\"proxy-1.internal.example:65535\"");
  r = parse_ok(text);
  assert_string_equal(r->services[0].forward_host, "proxy-1.internal.example");
  assert_int_equal(r->services[0].forward_port, 65535);
  vpc_registry_free(r);

  /* The European Sovereign Cloud prefix of the model's pattern. */
  r = parse_ok("{\"services\": [{\"service_name\": \"eu.amazonaws.vpce.eusc-de-east-1.vpce-svc-1a\","
               " \"owner\": \"" OWNER "\", \"acceptance_required\": false,"
               " \"allowed_principals\": [\"*\"], \"availability_zones\": [\"eusc-de-east-1a\"],"
               " \"forward_to\": \"localhost:1\"}]}");
  assert_string_equal(r->services[0].region, "eusc-de-east-1");
  vpc_registry_free(r);
}

static void test_refused(void **state) {
  char text[4096];
  (void)state;
  refused("", "invalid JSON");
  refused("{\"services\": [}", "line 1");
  refused("[]", "must be a JSON object");
  refused("{}", "services: is required");
  refused("{\"services\": {}}", "services: must be an array");
  refused("{\"services\": [], \"extra\": 1}", "unknown top-level key");
  refused("{\"services\": [], \"services\": []}", "duplicate key");
  refused("{\"services\": [1]}", "services[0]: must be an object");
  refused("{\"services\": [], \"description\": 5}", "description: must be a string");

  struct {
    const char *from, *to, *needle;
  } cases[] = {
      {"\"service_name\": \"" SVC1 "\", ", "", "services[0].service_name: is required"},
      {SVC1, "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789ABCDEF0", "service_name: must be a VPC"},
      {SVC1, "com.amazonaws.vpce.useast1.vpce-svc-01", "service_name: must be a VPC"},
      {SVC1, "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0123456789abcdef", "must be a VPC"},
      {"\"" SVC1 "\"", "7", "service_name: must be a string"},
      {OWNER, "11112222333", "owner: must be a 12-digit account id"},
      {OWNER, "11112222333a", "owner: must be a 12-digit account id"},
      {"\"owner\": \"" OWNER "\",", "\"owner\": \"" OWNER "\", \"region\": \"us-west-2\",",
       "region: must be the Region of service_name (us-east-1)"},
      {"\"owner\": \"" OWNER "\",", "\"owner\": \"" OWNER "\", \"service_type\": \"Gateway\",",
       "service_type: must be one of Interface, GatewayLoadBalancer"},
      {"\"owner\": \"" OWNER "\",", "\"owner\": \"" OWNER "\", \"state\": \"available\",",
       "state: must be one of Available"},
      {"\"owner\": \"" OWNER "\",", "\"owner\": \"" OWNER "\", \"colour\": 1,", "services[0]: unknown key \"colour\""},
      {"xks.example.com", "xks..example.com", "private_dns_name: must be a fully qualified DNS name"},
      {"xks.example.com", "localhost", "private_dns_name: must be a fully qualified DNS name"},
      {"xks.example.com", "-xks.example.com", "private_dns_name: must be"},
      {"\"verified\"", "\"Verified\"", "private_dns_state: must be one of pendingVerification"},
      {" \"private_dns_name\": \"xks.example.com\",", "", "private_dns_state: needs private_dns_name"},
      {"false", "\"no\"", "acceptance_required: must be true or false"},
      {" \"acceptance_required\": false,", "", "acceptance_required: is required"},
      {"[\"" KMS_US "\"]", "\"" KMS_US "\"", "allowed_principals: must be an array"},
      {"[\"" KMS_US "\"]", "[\"" KMS_US "\", \"" KMS_US "\"]", "allowed_principals[1]: repeats"},
      {"[\"" KMS_US "\"]", "[\"a b\"]", "allowed_principals[0]: must be a principal"},
      {"[\"" KMS_US "\"]", "[\"\"]", "allowed_principals[0]: must be a principal"},
      {"[\"" KMS_US "\"]", "[3]", "allowed_principals[0]: must be a string"},
      {"[\"us-east-1a\", \"us-east-1b\"]", "[]", "availability_zones: must hold 1 to 16 entries"},
      {"\"us-east-1b\"", "\"eu-west-1b\"", "availability_zones[1]: must be an Availability Zone"},
      {"\"us-east-1b\"", "\"us-east-1\"", "availability_zones[1]: must be an Availability Zone"},
      {"\"us-east-1b\"", "\"us-east-1B\"", "availability_zones[1]: must be an Availability Zone"},
      {"\"us-east-1b\"", "\"us-east-1a\"", "availability_zones[1]: repeats"},
      {"127.0.0.1:8443", "127.0.0.1", "forward_to: must be HOST:PORT"},
      {"127.0.0.1:8443", "127.0.0.1:0", "forward_to: must be HOST:PORT"},
      {"127.0.0.1:8443", "127.0.0.1:65536", "forward_to: must be HOST:PORT"},
      {"127.0.0.1:8443", "127.0.0.1:08443", "forward_to: must be HOST:PORT"},
      {"127.0.0.1:8443", ":8443", "forward_to: must be HOST:PORT"},
      {"127.0.0.1:8443", "[::1:8443", "forward_to: must be HOST:PORT"},
      {"127.0.0.1:8443", "[xyz]:8443", "forward_to: must be HOST:PORT"},
      {"127.0.0.1:8443", "a b:1", "forward_to: must be HOST:PORT"},
      {"127.0.0.1:8443", "127.0.0.1:+1", "forward_to: must be HOST:PORT"},
      {", \"forward_to\": \"127.0.0.1:8443\"", "", "forward_to: is required"},
      {"127.0.0.1:8443", "x\\u0000y:1", "invalid JSON"}, /* jansson refuses NUL */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    one_service(text, sizeof text, cases[i].from, cases[i].to);
    refused(text, cases[i].needle);
  }

  /* Two services of one name. */
  snprintf(text, sizeof text, "{\"services\": [%s, %s]}", GOOD_SERVICE(SVC1), GOOD_SERVICE(SVC1));
  refused(text, "services[1]: service_name repeats services[0]");

  /* Too many services, principals, zones. */
  {
    size_t cap = 300 * 400, used;
    char *many = malloc(cap);
    assert_non_null(many);
    used = (size_t)snprintf(many, cap, "{\"services\": [");
    for (int i = 0; i <= VPCR_SERVICES_MAX; i++)
      used += (size_t)snprintf(many + used, cap - used, "%s{}", i ? "," : "");
    snprintf(many + used, cap - used, "]}");
    refused(many, "services: must hold at most 256 entries");

    used = (size_t)snprintf(many, cap, "%s", "{\"services\": [{\"service_name\": \"" SVC1 "\", "
                                             "\"owner\": \"" OWNER "\", \"acceptance_required\": false, "
                                             "\"allowed_principals\": [");
    for (int i = 0; i <= VPCR_PRINCIPALS_MAX; i++)
      used += (size_t)snprintf(many + used, cap - used, "%s\"p%d\"", i ? "," : "", i);
    snprintf(many + used, cap - used, "], \"availability_zones\": [\"us-east-1a\"], \"forward_to\": \"h:1\"}]}");
    refused(many, "allowed_principals: must hold 0 to 64 entries");

    used = (size_t)snprintf(many, cap, "%s", "{\"services\": [{\"service_name\": \"" SVC1 "\", "
                                             "\"owner\": \"" OWNER "\", \"acceptance_required\": false, "
                                             "\"allowed_principals\": [], \"availability_zones\": [");
    for (int i = 0; i <= VPCR_ZONES_MAX; i++)
      used += (size_t)snprintf(many + used, cap - used, "%s\"us-east-1z%d\"", i ? "," : "", i);
    snprintf(many + used, cap - used, "], \"forward_to\": \"h:1\"}]}");
    refused(many, "availability_zones: must hold 1 to 16 entries");

    /* A principal one byte too long. */
    used = (size_t)snprintf(many, cap, "%s", "{\"services\": [{\"service_name\": \"" SVC1 "\", "
                                             "\"owner\": \"" OWNER "\", \"acceptance_required\": false, "
                                             "\"allowed_principals\": [\"");
    memset(many + used, 'p', VPCR_PRINCIPAL_MAX + 1);
    used += VPCR_PRINCIPAL_MAX + 1;
    snprintf(many + used, cap - used, "\"], \"availability_zones\": [\"us-east-1a\"], \"forward_to\": \"h:1\"}]}");
    refused(many, "allowed_principals[0]: must be a principal");
    free(many);
  }

  /* Over the size cap, whatever the content. */
  {
    char *huge = malloc(VPCR_FILE_MAX + 2);
    vpc_registry *r = NULL;
    kerr err;
    assert_non_null(huge);
    memset(huge, ' ', VPCR_FILE_MAX + 1);
    huge[VPCR_FILE_MAX + 1] = '\0';
    assert_int_equal(vpc_registry_parse(huge, VPCR_FILE_MAX + 1, NULL, &r, &err), KERR_VALIDATION);
    assert_non_null(strstr(err.msg, "vpc-endpoint-services: larger than"));
    free(huge);
  }
}

/* ---- the file ---------------------------------------------------------------- */

static void test_load(void **state) {
  char dir[] = "/tmp/vpc-registry-XXXXXX", path[128], missing[128];
  vpc_registry *r = NULL;
  kerr err;
  FILE *f;
  (void)state;
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/services.json", dir);
  snprintf(missing, sizeof missing, "%s/none.json", dir);

  f = fopen(path, "w");
  assert_non_null(f);
  fputs(full_file, f);
  fclose(f);
  assert_int_equal(vpc_registry_load(path, &r, &err), KERR_OK);
  assert_int_equal(r->count, 2);
  vpc_registry_free(r);

  f = fopen(path, "w");
  assert_non_null(f);
  fputs("{\"services\": [{}]}", f);
  fclose(f);
  assert_int_equal(vpc_registry_load(path, &r, &err), KERR_VALIDATION);
  assert_null(r);
  assert_int_equal(strncmp(err.msg, path, strlen(path)), 0);
  assert_non_null(strstr(err.msg, ": services[0].service_name: is required"));

  assert_int_equal(vpc_registry_load(missing, &r, &err), KERR_VALIDATION);
  assert_non_null(strstr(err.msg, "No such file"));
  assert_int_equal(vpc_registry_load(dir, &r, &err), KERR_VALIDATION);
  assert_non_null(strstr(err.msg, "not a regular file"));

  assert_int_equal(truncate(path, (off_t)VPCR_FILE_MAX + 1), 0);
  assert_int_equal(vpc_registry_load(path, &r, &err), KERR_VALIDATION);
  assert_non_null(strstr(err.msg, "larger than"));

  unlink(path);
  rmdir(dir);
}

/* ---- requirements ---------------------------------------------------------- */

/* The verdict and faults for the one service of GOOD_SERVICE with `from`
 * replaced by `to`, as a store of account OWNER in us-east-1 at
 * https://xks.example.com would see it. */
static vpcr_verdict judge_one(const char *from, const char *to, unsigned *faults) {
  char text[4096];
  vpc_expectation want = {.region = "us-east-1", .owner = OWNER, .endpoint_host = "xks.example.com"};
  vpc_registry *r;
  vpcr_verdict v;
  const vpc_service *s = NULL;
  one_service(text, sizeof text, from, to);
  r = parse_ok(text);
  v = vpc_registry_judge(r, SVC1, &want, faults, &s);
  assert_ptr_equal(s, &r->services[0]);
  vpc_registry_free(r);
  return v;
}

static void test_requirements(void **state) {
  unsigned faults = 99;
  vpc_expectation want = {.region = "us-east-1", .owner = OWNER, .endpoint_host = NULL};
  vpc_registry *r;
  const vpc_service *s = (const vpc_service *)1;
  (void)state;

  assert_int_equal(judge_one(NULL, NULL, &faults), VPCR_OK);
  assert_int_equal(faults, 0);

  struct {
    const char *from, *to;
    unsigned fault;
    vpcr_verdict verdict;
  } cases[] = {
      {KMS_US, "cks.kms.us-west-2.amazonaws.com", VPCR_FAULT_KMS_NOT_ALLOWED, VPCR_NOT_FOUND},
      {"[\"" KMS_US "\"]", "[]", VPCR_FAULT_KMS_NOT_ALLOWED, VPCR_NOT_FOUND},
      {OWNER "\",", "999988887777\",", VPCR_FAULT_OTHER_OWNER, VPCR_NOT_FOUND},
      {"\"owner\"", "\"state\": \"Deleted\", \"owner\"", VPCR_FAULT_DELETED, VPCR_NOT_FOUND},
      {"\"owner\"", "\"state\": \"Deleting\", \"owner\"", VPCR_FAULT_DELETED, VPCR_NOT_FOUND},
      {"\"owner\"", "\"state\": \"Pending\", \"owner\"", VPCR_FAULT_NOT_AVAILABLE, VPCR_INVALID_CONFIGURATION},
      {"\"owner\"", "\"state\": \"Failed\", \"owner\"", VPCR_FAULT_NOT_AVAILABLE, VPCR_INVALID_CONFIGURATION},
      {"\"owner\"", "\"service_type\": \"GatewayLoadBalancer\", \"owner\"", VPCR_FAULT_NOT_INTERFACE,
       VPCR_INVALID_CONFIGURATION},
      {"\"us-east-1a\", \"us-east-1b\"", "\"us-east-1a\"", VPCR_FAULT_ONE_ZONE, VPCR_INVALID_CONFIGURATION},
      {"false", "true", VPCR_FAULT_ACCEPTANCE_REQUIRED, VPCR_INVALID_CONFIGURATION},
      {" \"private_dns_name\": \"xks.example.com\", \"private_dns_state\": \"verified\",", "",
       VPCR_FAULT_NO_PRIVATE_DNS, VPCR_INVALID_CONFIGURATION},
      {"\"verified\"", "\"pendingVerification\"", VPCR_FAULT_DNS_NOT_VERIFIED, VPCR_INVALID_CONFIGURATION},
      {"\"verified\"", "\"failed\"", VPCR_FAULT_DNS_NOT_VERIFIED, VPCR_INVALID_CONFIGURATION},
      {"xks.example.com", "proxy.example.com", VPCR_FAULT_ENDPOINT_MISMATCH, VPCR_INVALID_CONFIGURATION},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    vpcr_verdict v = judge_one(cases[i].from, cases[i].to, &faults);
    if (faults != cases[i].fault || v != cases[i].verdict)
      fail_msg("case %zu (%s -> %s): faults %#x verdict %d, want %#x %d", i, cases[i].from,
               cases[i].to, faults, (int)v, cases[i].fault, (int)cases[i].verdict);
    assert_non_null(vpc_fault_text(faults));
  }

  /* "*" admits KMS; the endpoint is compared without case. */
  assert_int_equal(judge_one(KMS_US, "*", &faults), VPCR_OK);
  assert_int_equal(judge_one("xks.example.com", "XKS.Example.COM", &faults), VPCR_OK);

  /* Not-found wins over invalid; every fault is reported. */
  r = parse_ok(full_file);
  assert_int_equal(vpc_registry_judge(r, SVC2, &want, &faults, &s), VPCR_NOT_FOUND);
  assert_int_equal(faults, VPCR_FAULT_OTHER_OWNER | VPCR_FAULT_KMS_NOT_ALLOWED | VPCR_FAULT_ONE_ZONE |
                               VPCR_FAULT_ACCEPTANCE_REQUIRED | VPCR_FAULT_NO_PRIVATE_DNS);
  assert_ptr_equal(s, &r->services[1]);

  /* Another Region: KMS looks in its own only, and its principal differs. */
  want.region = "eu-west-1";
  assert_int_equal(vpc_registry_judge(r, SVC1, &want, &faults, NULL), VPCR_NOT_FOUND);
  assert_true(faults & VPCR_FAULT_OTHER_REGION);

  /* Unknown names, and no registry at all. */
  want.region = "us-east-1";
  assert_int_equal(vpc_registry_judge(r, SVC_EU, &want, &faults, &s), VPCR_NOT_FOUND);
  assert_int_equal(faults, VPCR_FAULT_UNKNOWN);
  assert_null(s);
  assert_int_equal(vpc_registry_judge(NULL, SVC1, &want, NULL, NULL), VPCR_NOT_FOUND);

  /* No expectation: only the service's own requirements. */
  assert_int_equal(vpc_service_check(&r->services[0], NULL), 0);
  assert_int_equal(vpc_service_check(NULL, NULL), VPCR_FAULT_UNKNOWN);
  vpc_registry_free(r);

  /* Every bit has a text; the masks split them. */
  for (unsigned bit = VPCR_FAULT_UNKNOWN; bit <= VPCR_FAULT_ENDPOINT_MISMATCH; bit <<= 1) {
    assert_non_null(vpc_fault_text(bit));
    assert_int_equal(!!(bit & VPCR_FAULTS_NOT_FOUND) + !!(bit & VPCR_FAULTS_INVALID), 1);
  }
  assert_null(vpc_fault_text(0));
  assert_null(vpc_fault_text(VPCR_FAULT_UNKNOWN | VPCR_FAULT_ONE_ZONE));
}

static void test_describe(void **state) {
  char buf[512], tiny[20];
  (void)state;
  vpc_faults_describe(VPCR_FAULT_ACCEPTANCE_REQUIRED | VPCR_FAULT_DNS_NOT_VERIFIED, buf, sizeof buf);
  assert_string_equal(buf, "it requires acceptance of connection requests; "
                           "the domain of its private DNS name is not verified");
  vpc_faults_describe(0, buf, sizeof buf);
  assert_string_equal(buf, "");
  vpc_faults_describe(VPCR_FAULTS_NOT_FOUND | VPCR_FAULTS_INVALID, tiny, sizeof tiny);
  assert_true(strlen(tiny) < sizeof tiny);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full_file),
      cmocka_unit_test(test_empty_and_defaults),
      cmocka_unit_test(test_refused),
      cmocka_unit_test(test_load),
      cmocka_unit_test(test_requirements),
      cmocka_unit_test(test_describe),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
