/* kclock.c - wall clock plus an adjustable offset shared by all threads. */
#include "core/kclock.h"

#include <stdatomic.h>
#include <time.h>

static _Atomic int64_t kclock_offset = 0;

int64_t kclock_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + atomic_load(&kclock_offset);
}

int64_t kclock_now_s(void) { return kclock_now_ms() / 1000; }

int64_t kclock_advance_ms(int64_t delta_ms) {
  return atomic_fetch_add(&kclock_offset, delta_ms) + delta_ms;
}

int64_t kclock_set_offset_ms(int64_t offset_ms) {
  return atomic_exchange(&kclock_offset, offset_ms);
}

int64_t kclock_offset_ms(void) { return atomic_load(&kclock_offset); }
