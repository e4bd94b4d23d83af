/* clock.c -- see clock.h. */
#define _POSIX_C_SOURCE 200809L

#include "clock.h"

#include <errno.h>
#include <time.h>

long long rp_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec rp_deadline_ts(long long at_ms)
{
	struct timespec ts;

	if (at_ms < 0)
		at_ms = 0;
	ts.tv_sec = (time_t)(at_ms / 1000);
	ts.tv_nsec = (long)(at_ms % 1000) * 1000000L;
	return ts;
}

void rp_sleep_ms(long long ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = (time_t)(ms / 1000);
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}
