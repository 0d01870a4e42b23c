/* fuzz_vpc_registry.c - kmsd's VPC endpoint service registry parser
 * (lib/api/vpc_registry) on arbitrary text.  Properties: no crash, leak or
 * undefined behaviour; a refusal is KERR_VALIDATION (or KERR_INTERNAL when
 * memory runs out) with a message that starts with the file name and leaves
 * *out NULL; an accepted registry keeps every bound the header promises, its
 * lookup finds each service, and judging each one gives a verdict that
 * agrees with its fault bits. */
#include <string.h>

#include "api/vpc_registry.h"
#include "fuzz_common.h"

#define NAME "fuzz.json"

static int bounded(const char *s, size_t cap) { return memchr(s, '\0', cap) != NULL; }

static void check_service(const vpc_registry *r, const vpc_service *s) {
  vpc_expectation want = {.region = "us-east-1", .owner = "111122223333",
                          .endpoint_host = "xks.example.com"};
  unsigned faults = 0;
  const vpc_service *found = NULL;
  vpcr_verdict v;
  char text[512];

  FUZZ_CHECK(bounded(s->name, sizeof s->name) && strlen(s->name) >= VPCR_NAME_MIN, "name bounded");
  FUZZ_CHECK(strlen(s->owner) == VPCR_ACCOUNT_LEN, "owner is 12 digits");
  FUZZ_CHECK(s->region[0] != '\0' && bounded(s->region, sizeof s->region), "region from the name");
  FUZZ_CHECK(strstr(s->name, s->region) != NULL, "region is part of the name");
  FUZZ_CHECK(bounded(s->private_dns_name, sizeof s->private_dns_name), "dns name bounded");
  FUZZ_CHECK(s->private_dns_name[0] || s->private_dns_state == VPCR_DNS_PENDING, "no name, no state");
  FUZZ_CHECK(s->allowed_principal_count <= VPCR_PRINCIPALS_MAX, "principals bounded");
  FUZZ_CHECK(s->zone_count >= 1 && s->zone_count <= VPCR_ZONES_MAX, "zones bounded");
  for (size_t i = 0; i < s->allowed_principal_count; i++)
    FUZZ_CHECK(s->allowed_principals[i] && strlen(s->allowed_principals[i]) >= 1 &&
                   strlen(s->allowed_principals[i]) <= VPCR_PRINCIPAL_MAX,
               "principal length");
  for (size_t i = 0; i < s->zone_count; i++)
    FUZZ_CHECK(strncmp(s->zones[i], s->region, strlen(s->region)) == 0, "zone in the region");
  FUZZ_CHECK(s->forward_host[0] != '\0' && bounded(s->forward_host, sizeof s->forward_host),
             "forward host");
  FUZZ_CHECK(s->forward_port >= 1 && s->forward_port <= 65535, "forward port");

  FUZZ_CHECK(vpc_registry_find(r, s->name) == s, "lookup finds the service");
  v = vpc_registry_judge(r, s->name, &want, &faults, &found);
  FUZZ_CHECK(found == s, "judge names the service");
  FUZZ_CHECK(!(faults & VPCR_FAULT_UNKNOWN), "a listed service is known");
  FUZZ_CHECK((v == VPCR_NOT_FOUND) == !!(faults & VPCR_FAULTS_NOT_FOUND), "not-found verdict");
  FUZZ_CHECK(v != VPCR_OK || faults == 0, "ok means no fault");
  FUZZ_CHECK(faults == vpc_service_check(s, &want), "judge and check agree");
  vpc_faults_describe(faults, text, sizeof text);
  FUZZ_CHECK(bounded(text, sizeof text) && (faults == 0) == (text[0] == '\0'), "description");
}

int LLVMFuzzerInitialize(int *argc, char ***argv) { return 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  vpc_registry *r = NULL;
  kerr err;

  if (size > VPCR_FILE_MAX + 16) return 0;
  kerr_clear(&err);
  if (vpc_registry_parse((const char *)data, size, NAME, &r, &err) != KERR_OK) {
    FUZZ_CHECK(r == NULL, "refusal leaves *out NULL");
    FUZZ_CHECK(err.code == KERR_VALIDATION || err.code == KERR_INTERNAL, "refusal code");
    FUZZ_CHECK(fuzz_msg_ok(err.msg, sizeof err.msg), "refusal has a message");
    FUZZ_CHECK(err.code != KERR_VALIDATION || strncmp(err.msg, NAME ": ", strlen(NAME) + 2) == 0,
               "refusal names the file");
    return 0;
  }
  FUZZ_CHECK(r != NULL && r->count <= VPCR_SERVICES_MAX, "services bounded");
  for (size_t i = 0; i < r->count; i++) {
    check_service(r, &r->services[i]);
    for (size_t j = 0; j < i; j++)
      FUZZ_CHECK(strcmp(r->services[i].name, r->services[j].name) != 0, "names distinct");
  }
  vpc_registry_free(r);
  return 0;
}
