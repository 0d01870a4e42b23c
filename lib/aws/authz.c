/* authz.c - the allow/deny decision for one KMS action (see authz.h).
 *
 * Mirrors how AWS KMS combines an identity policy with a key policy: an
 * explicit Deny anywhere wins; a key policy that names the caller directly
 * is enough on its own; a key policy that only names the caller's account
 * delegates to the identity policy; across accounts both must allow.  The
 * denial messages use AWS's wording so clients and scripts that match on
 * them keep working. */
#include "aws/authz.h"

#include <stdio.h>
#include <string.h>

#include "aws/policy.h"

typedef enum deny_reason {
  NO_IDENTITY_ALLOW,
  NO_RESOURCE_ALLOW,
  IDENTITY_DENY,
  RESOURCE_DENY,
} deny_reason;

static kerr_code deny(const authz_request *req, deny_reason why, kerr *err) {
  const char *who = req->caller->arn, *act = req->action, *res = req->resource_arn;
  switch (why) {
    case NO_IDENTITY_ALLOW:
      return kerr_set(err, KERR_ACCESS_DENIED,
                      "User: %s is not authorized to perform: %s on resource: %s because no identity-based "
                      "policy allows the %s action",
                      who, act, res, act);
    case NO_RESOURCE_ALLOW:
      return kerr_set(err, KERR_ACCESS_DENIED,
                      "User: %s is not authorized to perform: %s on resource: %s because no resource-based "
                      "policy allows the %s action",
                      who, act, res, act);
    case IDENTITY_DENY:
      return kerr_set(err, KERR_ACCESS_DENIED,
                      "User: %s is not authorized to perform: %s on resource: %s with an explicit deny in an "
                      "identity-based policy",
                      who, act, res);
    case RESOURCE_DENY:
      break;
  }
  return kerr_set(err, KERR_ACCESS_DENIED,
                  "User: %s is not authorized to perform: %s on resource: %s with an explicit deny in a "
                  "resource-based policy",
                  who, act, res);
}

kerr_code authz_check(const authz_request *req, kerr *err) {
  const principal *who;
  iam_decision id_dec = IAM_NO_MATCH, key_dec = IAM_NO_MATCH;
  int id_allows, same_account;

  if (!req || !req->caller || !req->action || !req->resource_arn)
    return kerr_set(err, KERR_INTERNAL, "authorization request is incomplete");
  who = req->caller;
  if (who->identity_policy)
    id_dec = iam_policy_evaluate(who->identity_policy, who->arn, who->account_id, req->action,
                                 req->resource_arn);
  if (id_dec == IAM_DENY) return deny(req, IDENTITY_DENY, err);
  if (req->key_policy) {
    key_dec = iam_policy_evaluate(req->key_policy, who->arn, who->account_id, req->action, req->resource_arn);
    if (key_dec == IAM_DENY) return deny(req, RESOURCE_DENY, err);
  }
  /* The root of an account holds every permission in it without a policy,
   * and is the account that other accounts' key policies delegate to. */
  id_allows = who->is_root || id_dec == IAM_ALLOW || id_dec == IAM_ALLOW_ACCOUNT;
  if (!req->key_policy) return id_allows ? KERR_OK : deny(req, NO_IDENTITY_ALLOW, err);

  same_account = !req->resource_account || strcmp(req->resource_account, who->account_id) == 0;
  if (key_dec == IAM_NO_MATCH) return deny(req, NO_RESOURCE_ALLOW, err);
  if (same_account && key_dec == IAM_ALLOW) return KERR_OK;
  return id_allows ? KERR_OK : deny(req, NO_IDENTITY_ALLOW, err);
}
