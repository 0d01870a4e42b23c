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

#include <stdbool.h>

#include "aws/principal.h"
#include "core/kerr.h"

/* Who calls and where.  The three pointers must be non-NULL. */
typedef struct aws_call {
  const principal *caller;
  const char *region;      /* from the SigV4 credential scope, e.g. "us-east-1" */
  const char *request_id;
  /* true: the calling thread must not wait on a backing system over the
   * network (an external key store's proxy).  An operation that would have
   * to - at any point, before or after its checks - answers
   * KERR_WOULD_BLOCK instead, and does so before it has written, logged as
   * done, or otherwise changed anything, so that running the whole request
   * again from the start with must_not_wait false is exactly what running
   * it once would have been.  Errors that need no such wait (validation,
   * NotFound, AccessDenied, a store that is not connected...) are still
   * answered at once.  Waits on local resources (the store, a PKCS#11
   * token of kmsd's own) are allowed.  kmsd sets it on the HTTP server's
   * event threads, which serve many connections each (lib/http).  false
   * (the zero value): the thread may wait. */
  bool must_not_wait;
  /* When not NULL, what the operation waits on is noted here (see
   * aws_wait).  May be NULL. */
  struct aws_wait *wait;
} aws_call;

/* What a call waited on, or would have: the HTTP server runs a
 * connection's next request where it may wait at once after one waited,
 * and lets requests that wait on one system share a cap on the threads
 * they take (lib/http). */
#define AWS_WAIT_ON_MAX 64
typedef struct aws_wait {
  /* Set once the operation reached a point where it waits on a backing
   * system over the network (where, with must_not_wait, it answered
   * KERR_WOULD_BLOCK instead); never cleared. */
  bool waited;
  /* Which system, when it is known: an external key store's ID.  Set at
   * the same point as `waited`, and also where KERR_WOULD_BLOCK is
   * answered.  "" when unknown. */
  char on[AWS_WAIT_ON_MAX];
} aws_wait;

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
