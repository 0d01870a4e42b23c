/* xksp_quota.c - the token bucket of xksp_quota.h. */
#include "xksproxy/xksp_quota.h"

#include <time.h>

void xksp_quota_init(xksp_quota *q, double rate, double burst) {
  pthread_mutex_init(&q->mu, NULL);
  q->rate = rate > 0 ? rate : 0;
  q->burst = burst > 0 ? burst : q->rate;
  if (q->burst < 1) q->burst = 1;
  q->tokens = q->burst;
  q->last_ns = xksp_monotonic_ns();
}

void xksp_quota_destroy(xksp_quota *q) { pthread_mutex_destroy(&q->mu); }

int xksp_quota_take(xksp_quota *q, int64_t now_ns) {
  int granted;
  if (q->rate == 0) return 1;
  pthread_mutex_lock(&q->mu);
  if (now_ns > q->last_ns) {
    q->tokens += (double)(now_ns - q->last_ns) * q->rate / 1e9;
    if (q->tokens > q->burst) q->tokens = q->burst;
    q->last_ns = now_ns;
  }
  granted = q->tokens >= 1.0;
  if (granted) q->tokens -= 1.0;
  pthread_mutex_unlock(&q->mu);
  return granted;
}

int64_t xksp_monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
