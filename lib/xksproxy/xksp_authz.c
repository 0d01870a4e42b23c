/* xksp_authz.c - the secondary authorization rules of a key store.
 *
 * Kept apart from the server so the decision is a pure function of the
 * configuration and the request metadata, testable without HTTP or HSMs. */
#include "xksproxy/xksp_authz.h"

#include <stddef.h>

int xksp_pattern_match(const char *pattern, const char *value) {
  /* Greedy match with one remembered star: when a later literal fails, the
   * last star takes one more character.  O(len(pattern) * len(value)) at
   * worst, no recursion. */
  const char *p = pattern, *v = value, *star = NULL, *star_v = NULL;
  if (!pattern || !value) return 0;
  while (*v) {
    if (*p == '*') {
      star = p++;
      star_v = v;
    } else if (*p == '?' || *p == *v) {
      p++;
      v++;
    } else if (star) {
      p = star + 1;
      v = ++star_v;
    } else {
      return 0;
    }
  }
  while (*p == '*') p++;
  return *p == '\0';
}

/* A condition matches when it is absent, or when the field is present and
 * one of its patterns matches it. */
static int condition_matches(const xksp_patterns *c, const char *value) {
  size_t i;
  if (c->count == 0) return 1;
  if (!value) return 0;
  for (i = 0; i < c->count; i++)
    if (xksp_pattern_match(c->items[i], value)) return 1;
  return 0;
}

static int rule_matches(const xksp_rule *r, const char *key_id, const xks_req_meta *m) {
  return condition_matches(&r->principals, m->aws_principal_arn) &&
         condition_matches(&r->operations, m->kms_operation) &&
         condition_matches(&r->key_arns, m->kms_key_arn) &&
         condition_matches(&r->via_services, m->kms_via_service) &&
         condition_matches(&r->external_key_ids, key_id);
}

void xksp_authz_decide(const xksp_store_config *store, const char *external_key_id,
                       const xks_req_meta *meta, xksp_authz_decision *out) {
  const xksp_rule *allow = NULL;
  int has_allow = 0;
  size_t i;
  for (i = 0; i < store->rule_count; i++) {
    const xksp_rule *r = &store->rules[i];
    if (r->effect == XKSP_ALLOW) has_allow = 1;
    if (!rule_matches(r, external_key_id, meta)) continue;
    if (r->effect == XKSP_DENY) {
      out->allowed = 0;
      out->rule = r;
      return;
    }
    if (!allow) allow = r;
  }
  out->rule = allow;
  out->allowed = allow != NULL || !has_allow;
}
