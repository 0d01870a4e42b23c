/* kms_client_retry.h - libkms's retry policy: the "standard" retry mode of the AWS SDKs.
 *
 * Kept apart from the transport (kms_client.c) so the rules can be read, and
 * tested, on their own:
 *   - which failures are worth another attempt: throttling error codes,
 *     transient error codes, HTTP 500/502/503/504, connection failures and
 *     timeouts;
 *   - how long to wait before attempt n+1: a random fraction of 2^n seconds,
 *     never more than the client's cap (20 s by default);
 *   - the retry quota, a per-client budget that stops retry storms: every
 *     retry spends tokens (more after a timeout), every call that succeeds at
 *     the first attempt earns one back, a call that succeeds after retrying
 *     returns what its last retry spent.
 * The rules are those of AWS's "Retry behavior" page of the SDKs and Tools
 * reference guide; the names and structure here are libkms's own. */
#ifndef KMSD_CLIENT_KMS_CLIENT_RETRY_H
#define KMSD_CLIENT_KMS_CLIENT_RETRY_H

#include <stdint.h>

/* The quota's size and prices, in tokens. */
#define RETRY_QUOTA_CAPACITY 500
#define RETRY_COST 5
#define RETRY_COST_TIMEOUT 10
#define RETRY_REFUND_FIRST_TRY 1
/* The SDKs' cap on one delay. */
#define RETRY_MAX_BACKOFF_MS_DEFAULT 20000L

/* What kind of failure a retry decision looks at. */
typedef enum retry_class {
  RETRY_NEVER = 0,      /* the caller's or the service's final answer */
  RETRY_THROTTLED,      /* a throttling error code */
  RETRY_TRANSIENT,      /* a transient error code, a 5xx status, a broken connection */
  RETRY_TIMEOUT,        /* a connect or read timeout: the expensive kind */
} retry_class;

/* The class of a service error: `status` the HTTP status, `code` the AWS
 * error code without namespace (may be "" or NULL). */
retry_class retry_classify_reply(long status, const char *code);

/* The retry quota of one client. */
typedef struct retry_quota {
  int tokens;
} retry_quota;

void retry_quota_init(retry_quota *q);

/* Take the price of one retry after a failure of class `cls`.  Returns the
 * tokens taken (> 0), or 0 when the quota cannot pay: no retry then. */
int retry_quota_take(retry_quota *q, retry_class cls);

/* Book a successful call: `last_cost` is what its last retry took (0 when
 * the first attempt succeeded).  The quota never exceeds its capacity. */
void retry_quota_success(retry_quota *q, int last_cost);

/* The delay before the next attempt after `failed_attempts` (>= 1) failures:
 * `unit_random` (in [0, 1]) times 2^failed_attempts seconds, capped at
 * `max_backoff_ms`. */
long retry_backoff_ms(int failed_attempts, long max_backoff_ms, double unit_random);

/* A uniformly random number in [0, 1] for retry_backoff_ms (jitter, not a
 * secret: 1.0 when the random source fails, the longest wait). */
double retry_jitter(void);

#endif
