/* kms_client_retry.c - libkms's retry policy (see kms_client_retry.h).
 *
 * The error code lists are those AWS documents for the standard retry mode;
 * they are matched exactly (codes are case-sensitive in the AWS protocols). */
#include "client/kms_client_retry.h"

#include <openssl/rand.h>
#include <string.h>

/* Codes a service uses to say "too many requests, slow down". */
static const char *const THROTTLING_CODES[] = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "EC2ThrottledException",
};

/* Codes of failures that a second try of the same request may not meet. */
static const char *const TRANSIENT_CODES[] = {
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
};

static int code_in(const char *code, const char *const *list, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (strcmp(code, list[i]) == 0) return 1;
  return 0;
}

retry_class retry_classify_reply(long status, const char *code) {
  if (code && *code) {
    if (code_in(code, THROTTLING_CODES, sizeof THROTTLING_CODES / sizeof *THROTTLING_CODES)) return RETRY_THROTTLED;
    if (code_in(code, TRANSIENT_CODES, sizeof TRANSIENT_CODES / sizeof *TRANSIENT_CODES)) return RETRY_TRANSIENT;
  }
  if (status == 500 || status == 502 || status == 503 || status == 504) return RETRY_TRANSIENT;
  return RETRY_NEVER;
}

void retry_quota_init(retry_quota *q) { q->tokens = RETRY_QUOTA_CAPACITY; }

int retry_quota_take(retry_quota *q, retry_class cls) {
  int cost = cls == RETRY_TIMEOUT ? RETRY_COST_TIMEOUT : RETRY_COST;
  if (cls == RETRY_NEVER || q->tokens < cost) return 0;
  q->tokens -= cost;
  return cost;
}

void retry_quota_success(retry_quota *q, int last_cost) {
  q->tokens += last_cost > 0 ? last_cost : RETRY_REFUND_FIRST_TRY;
  if (q->tokens > RETRY_QUOTA_CAPACITY) q->tokens = RETRY_QUOTA_CAPACITY;
}

long retry_backoff_ms(int failed_attempts, long max_backoff_ms, double unit_random) {
  double ceiling_ms;
  int exponent = failed_attempts < 1 ? 1 : failed_attempts;
  /* 2^31 s is beyond any cap; stop doubling long before a double would care. */
  if (exponent > 31) exponent = 31;
  if (unit_random < 0) unit_random = 0;
  if (unit_random > 1) unit_random = 1;
  ceiling_ms = 1000.0 * (double)(1UL << exponent);
  ceiling_ms *= unit_random;
  if (ceiling_ms > (double)max_backoff_ms) return max_backoff_ms;
  return (long)ceiling_ms;
}

double retry_jitter(void) {
  uint32_t r;
  if (RAND_bytes((unsigned char *)&r, sizeof r) != 1) return 1.0;
  return (double)r / (double)UINT32_MAX;
}
