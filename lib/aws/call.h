/* call.h - who calls and where, as every API of the services kmsd serves
 * takes it: the SigV4 principal, the Region from the credential scope and
 * the request id (for logs); and the {key, value} pair that tags and
 * encryption contexts are made of.
 *
 * Why here: the KMS domain (lib/kms, where these are kms_call / kms_pair)
 * and the CloudHSM service (lib/cloudhsm) both take them, and neither may
 * depend on the other's headers. */
#ifndef KMSD_AWS_CALL_H
#define KMSD_AWS_CALL_H

#include "aws/principal.h"
#include "core/kerr.h"

/* Who calls and where.  All fields must be non-NULL. */
typedef struct aws_call {
  const principal *caller;
  const char *region;      /* from the SigV4 credential scope, e.g. "us-east-1" */
  const char *request_id;
} aws_call;

/* One encryption-context entry or one tag (both are {key, value} strings). */
typedef struct aws_pair {
  const char *key;
  const char *value;
} aws_pair;

/* Longest Region name accepted (STORE_REGION_MAX - 1, the store's column). */
#define AWS_REGION_MAX 63

/* KERR_OK when `call` has a caller and a well-formed Region ([a-z0-9-],
 * 1..AWS_REGION_MAX characters); no caller -> KERR_INTERNAL, a bad Region
 * -> KERR_VALIDATION "Invalid region.". */
kerr_code aws_call_check(const aws_call *call, kerr *err);

#endif
