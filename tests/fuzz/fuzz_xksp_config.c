/* fuzz_xksp_config.c - xks-proxy's configuration parser on arbitrary text
 * (YAML or JSON, as xksp_config_parse decides).  Properties: no crash, leak
 * or undefined behaviour; a refusal is KERR_VALIDATION (or KERR_INTERNAL
 * when memory runs out) with a message that starts with the file name and
 * leaves *out NULL; an accepted configuration keeps every bound the header
 * promises.  Files named in the text (PIN and secret files) are only read;
 * module checks fail on paths that do not exist, which is fine here. */
#include <string.h>

#include "fuzz_common.h"
#include "pkcs11/p11.h"
#include "xksproxy/xksp_config.h"

#define NAME "fuzz.yaml"

static void check_accepted(const xksp_config *c) {
  FUZZ_CHECK(c->store_count >= 1 && c->store_count <= XKSP_STORES_MAX, "1..64 stores");
  FUZZ_CHECK(c->plain_http || (c->tls_cert && c->tls_key), "TLS unless plain_http");
  FUZZ_CHECK(!c->plain_http || (!c->tls_cert && !c->tls_key), "no TLS files with plain_http");
  FUZZ_CHECK(c->tls_client_subject_count <= XKSP_CLIENT_SUBJECTS_MAX, "subjects bounded");
  FUZZ_CHECK(c->ping_path[0] == '/', "ping path starts with /");
  for (size_t i = 0; i < c->store_count; i++) {
    const xksp_store_config *s = &c->stores[i];
    FUZZ_CHECK(xks_uri_prefix_check(s->uri_prefix, NULL) == KERR_OK, "prefix valid");
    FUZZ_CHECK(xksp_config_find_store(c, s->uri_prefix) == (int)i, "prefixes unique");
    FUZZ_CHECK(s->credential_count >= 1 && s->credential_count <= XKSP_CREDENTIALS_MAX, "1..2 credentials");
    FUZZ_CHECK(s->token_count >= 1 && s->token_count <= XKSP_TOKENS_MAX, "1..10 tokens");
    FUZZ_CHECK(s->session_pool >= 1 && s->session_pool <= P11_POOL_MAX, "pool bounded");
    FUZZ_CHECK(s->health_interval_s >= 1 && s->health_interval_s <= 59, "interval bounded");
    FUZZ_CHECK(s->rule_count <= XKSP_RULES_MAX, "rules bounded");
    for (size_t j = 0; j < s->token_count; j++) {
      size_t n = strlen(s->tokens[j].pin);
      FUZZ_CHECK(n >= P11_PIN_MIN && n <= P11_PIN_MAX, "PIN length");
    }
    for (size_t j = 0; j < s->credential_count; j++) {
      size_t n = strlen(s->credentials[j].secret_access_key);
      FUZZ_CHECK(n >= XKSP_SECRET_MIN && n <= XKSP_SECRET_MAX, "secret length");
    }
    for (size_t j = 0; j < s->rule_count; j++) {
      const xksp_rule *r = &s->rules[j];
      FUZZ_CHECK(r->sid && (r->principals.count || r->operations.count || r->key_arns.count ||
                            r->via_services.count || r->external_key_ids.count),
                 "a rule has a name and a condition");
    }
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) { return 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  xksp_config *c = NULL;
  kerr err;

  if (size > 256 * 1024) return 0;
  kerr_clear(&err);
  if (xksp_config_parse((const char *)data, size, NAME, &c, &err) != KERR_OK) {
    FUZZ_CHECK(c == NULL, "refusal leaves *out NULL");
    FUZZ_CHECK(err.code == KERR_VALIDATION || err.code == KERR_INTERNAL, "refusal code");
    FUZZ_CHECK(fuzz_msg_ok(err.msg, sizeof err.msg), "refusal has a message");
    FUZZ_CHECK(err.code != KERR_VALIDATION || strncmp(err.msg, NAME ": ", strlen(NAME) + 2) == 0,
               "refusal names the file");
    return 0;
  }
  check_accepted(c);
  xksp_config_free(c);
  return 0;
}
