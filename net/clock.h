/*
 * clock.h -- the one clock rpfs measures time with.
 *
 * Deadlines, retry budgets, cache ages and grant renewals all use the
 * monotonic clock in milliseconds: wall-clock jumps (NTP, a suspended VM)
 * must neither expire a cache early nor stretch a retry budget.
 */
#ifndef RPFS_CLOCK_H
#define RPFS_CLOCK_H

#include <time.h>

/* Milliseconds on CLOCK_MONOTONIC (an arbitrary origin). */
long long rp_mono_ms(void);

/* Sleep ms milliseconds, resuming after signals; ms <= 0 returns at once. */
void rp_sleep_ms(long long ms);

/* The deadline at_ms (a rp_mono_ms() value) as the absolute time that
 * pthread_cond_timedwait takes, for a condition variable whose clock is
 * CLOCK_MONOTONIC (pthread_condattr_setclock).  Negative: the origin. */
struct timespec rp_deadline_ts(long long at_ms);

#endif
