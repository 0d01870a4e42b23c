/* xksp_authz.h - secondary authorization on requestMetadata.
 *
 * SigV4 says the caller is KMS; these rules say which KMS callers may use
 * which external keys (the spec's "secondary authorization", e.g. to pin an
 * external key to one account's principals against a confused deputy).
 * The decision, per key store:
 *   - no rules: allowed;
 *   - a matching deny rule: denied (deny wins);
 *   - else a matching allow rule: allowed;
 *   - else denied when the store has any allow rule (an allow-list), allowed
 *     when it has only deny rules.
 * GetHealthStatus is never subject to the rules (the spec exempts it); the
 * caller does not ask. */
#ifndef KMSD_XKSPROXY_XKSP_AUTHZ_H
#define KMSD_XKSPROXY_XKSP_AUTHZ_H

#include "xks/xks_msg.h"
#include "xksproxy/xksp_config.h"

typedef struct xksp_authz_decision {
  int allowed;
  /* The rule that decided (the deny or allow rule that matched), or NULL when
   * no rule matched; for logs, so an operator can fix the policy. */
  const xksp_rule *rule;
} xksp_authz_decision;

/* Decide for a request on `external_key_id` with metadata `meta` under the
 * rules of `store`.  Pure; never fails. */
void xksp_authz_decide(const xksp_store_config *store, const char *external_key_id,
                       const xks_req_meta *meta, xksp_authz_decision *out);

/* 1 when `value` matches the whole of `pattern`, where '*' stands for any
 * run of characters (also none) and '?' for exactly one; every other
 * character stands for itself (case-sensitive).  Linear in practice: no
 * backtracking blow-up on many stars. */
int xksp_pattern_match(const char *pattern, const char *value);

#endif
