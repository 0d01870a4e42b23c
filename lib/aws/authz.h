/* authz.h - the authorization decision for one KMS action.
 *
 * Combines the caller's identity policy with the key policy of the target key
 * the way AWS KMS does:
 *   - an explicit Deny in either policy wins;
 *   - same account: allowed when the key policy allows the caller directly
 *     (its ARN, or "*"), or when the key policy allows the caller's account
 *     (arn:aws:iam::ACCOUNT:root or "ACCOUNT") and the identity policy allows
 *     the action (the account root needs no identity policy);
 *   - another account: the key policy must allow the caller or its account
 *     AND the caller's identity policy must allow the action;
 *   - no key (CreateKey, ListKeys, GenerateRandom, custom key stores...):
 *     the identity policy alone decides (the account root is allowed).
 * A denial fills `err` with KERR_ACCESS_DENIED worded like AWS:
 *   User: arn:aws:iam::111122223333:user/bob is not authorized to perform:
 *   kms:Encrypt on resource: arn:aws:kms:us-east-1:111122223333:key/... because ... */
#ifndef KMSD_AWS_AUTHZ_H
#define KMSD_AWS_AUTHZ_H

#include "aws/principal.h"
#include "core/kerr.h"

struct iam_policy;

typedef struct authz_request {
  const principal *caller;
  const char *action;            /* "kms:Encrypt" */
  const char *resource_arn;      /* key ARN; "*" for actions on no particular resource */
  const char *resource_account;  /* account that owns the resource (caller's for "*") */
  const struct iam_policy *key_policy; /* the target key's policy; NULL when no key */
} authz_request;

/* KERR_OK when allowed; else KERR_ACCESS_DENIED with the AWS wording in err. */
kerr_code authz_check(const authz_request *req, kerr *err);

#endif
