/* xksp_quota.h - a request quota per key store: a token bucket.
 *
 * KMS's default quota for an external key store is 1,800 requests per
 * second; a proxy that serves several tenants (one per URI prefix) gives
 * each its own bucket so one cannot starve the others.  The bucket holds at
 * most `burst` tokens, refills at `rate` per second, and a request takes one
 * or is refused (ThrottlingException, 429). */
#ifndef KMSD_XKSPROXY_XKSP_QUOTA_H
#define KMSD_XKSPROXY_XKSP_QUOTA_H

#include <pthread.h>
#include <stdint.h>

typedef struct xksp_quota {
  pthread_mutex_t mu;
  double rate;       /* tokens per second; 0: no quota */
  double burst;      /* capacity */
  double tokens;
  int64_t last_ns;   /* monotonic time of the last refill */
} xksp_quota;

/* Start full.  rate 0 disables the quota (every take succeeds).  burst <= 0
 * means `rate`, and is at least 1. */
void xksp_quota_init(xksp_quota *q, double rate, double burst);
void xksp_quota_destroy(xksp_quota *q);

/* Take one token at monotonic time `now_ns`: 1 when granted, 0 when the
 * bucket is empty.  Thread-safe. */
int xksp_quota_take(xksp_quota *q, int64_t now_ns);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t xksp_monotonic_ns(void);

#endif
