/* call.c - the one check of "who calls and where" (call.h) that the KMS
 * domain and the CloudHSM service both run before any operation. */
#include "aws/call.h"

#include <string.h>

static int region_ok(const char *r) {
  size_t n = r ? strlen(r) : 0;
  if (n == 0 || n > AWS_REGION_MAX) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') || r[i] == '-')) return 0;
  return 1;
}

kerr_code aws_call_check(const aws_call *call, kerr *err) {
  if (!call || !call->caller) return kerr_set(err, KERR_INTERNAL, "No caller for a KMS call.");
  if (!region_ok(call->region)) return kerr_set(err, KERR_VALIDATION, "Invalid region.");
  return KERR_OK;
}
