/* policy.h - IAM-style policy documents: parse once, evaluate many times.
 *
 * Used for identity policies (from the credentials file) and key policies
 * (CreateKey, PutKeyPolicy).  A parsed policy is immutable, so any number of
 * threads may evaluate it at once. */
#ifndef KMSD_AWS_POLICY_H
#define KMSD_AWS_POLICY_H

#include <stddef.h>

#include "core/kerr.h"

typedef struct iam_policy iam_policy;

typedef enum iam_policy_kind {
  IAM_POLICY_IDENTITY = 0, /* statements have no Principal */
  IAM_POLICY_KEY = 1,      /* resource policy: every statement names a Principal */
} iam_policy_kind;

/* The outcome of matching one request against one policy. */
typedef enum iam_decision {
  IAM_NO_MATCH = 0,       /* no statement applies: implicit deny */
  IAM_ALLOW = 1,          /* an Allow statement matched the caller directly ("*" or its ARN) */
  IAM_ALLOW_ACCOUNT = 2,  /* key policies: Allow matched only through the caller's account root */
  IAM_DENY = 3,           /* an explicit Deny matched */
} iam_decision;

/* Parse `len` bytes of JSON.  On success *out owns a new policy (free with
 * iam_policy_free).  On failure returns KERR_MALFORMED_POLICY (bad JSON, bad
 * Version, missing Effect/Action/Principal...) with a message saying what is
 * wrong; *out is left NULL. */
kerr_code iam_policy_parse(const char *json, size_t len, iam_policy_kind kind, iam_policy **out,
                           kerr *err);

void iam_policy_free(iam_policy *p);

/* Match (principal, action, resource) against the policy's statements.
 * `principal_arn`/`principal_account` are not matched against a Principal in
 * identity policies (they have none), but feed the condition keys
 * aws:PrincipalArn, aws:PrincipalAccount and kms:CallerAccount in both kinds.
 * Conditions kmsd cannot evaluate fail closed: such an Allow never applies,
 * such a Deny always does (see policy.c).
 * Action and Resource support `*` and `?` wildcards; actions compare
 * case-insensitively ("kms:*CustomKeyStore*"), resources case-sensitively. */
iam_decision iam_policy_evaluate(const iam_policy *p, const char *principal_arn,
                                 const char *principal_account, const char *action,
                                 const char *resource_arn);

#endif
