/* kclock.h - the one clock every time rule reads.
 *
 * Key deletion windows, rotation schedules and SigV4 clock-skew checks all
 * call kclock_now_ms().  Tests move it forward (kmsd --clock-offset, or the
 * admin endpoint) so that a seven-day window passes in a second.  The offset
 * only ever applies to this clock, never to the system's. */
#ifndef KMSD_CORE_KCLOCK_H
#define KMSD_CORE_KCLOCK_H

#include <stdint.h>

/* Milliseconds since the Unix epoch, plus the current offset. Thread-safe. */
int64_t kclock_now_ms(void);

/* Seconds since the epoch (kclock_now_ms() / 1000). */
int64_t kclock_now_s(void);

/* Add `delta_ms` (may be negative) to the offset; returns the new offset. */
int64_t kclock_advance_ms(int64_t delta_ms);

/* Set the offset outright; returns the previous one. */
int64_t kclock_set_offset_ms(int64_t offset_ms);

/* The current offset in milliseconds. */
int64_t kclock_offset_ms(void);

#endif
