/*
 * test_net_retry.c -- throttling is waited out the way Azure asks:
 * Retry-After in seconds or as an HTTP-date, exponential backoff with
 * jitter inside fixed bounds, and only transient statuses retried; and
 * the monotonic deadlines that waits are timed with.
 */
#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "check.h"
#include "clock.h"
#include "http.h"

static void test_retry_after_in_seconds(void)
{
	time_t now = 1700000000;

	CHECK_INT(http_parse_retry_after("5", now), 5000);
	CHECK_INT(http_parse_retry_after(" 0", now), 0);
	CHECK_INT(http_parse_retry_after("17\r\n", now), 17000);
	/* Absurd values are capped at two minutes, not obeyed. */
	CHECK_INT(http_parse_retry_after("999999", now), 120000);
}

static void test_retry_after_as_http_date(void)
{
	/* Tue, 14 Nov 2023 22:13:20 GMT == 1700000000 */
	time_t now = 1700000000;

	CHECK_INT(http_parse_retry_after("Tue, 14 Nov 2023 22:13:30 GMT", now),
		  10000);
	/* A date in the past means "now". */
	CHECK_INT(http_parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now),
		  0);
	CHECK_INT(http_parse_retry_after("Wed, 15 Nov 2023 22:13:20 GMT", now),
		  120000);
}

static void test_retry_after_garbage_is_ignored(void)
{
	CHECK_INT(http_parse_retry_after(NULL, 0), -1);
	CHECK_INT(http_parse_retry_after("", 0), -1);
	CHECK_INT(http_parse_retry_after("soon", 0), -1);
	CHECK_INT(http_parse_retry_after("5x", 0), -1);
	CHECK_INT(http_parse_retry_after("-3", 0), -1);
}

static void test_backoff_grows_with_jitter_within_bounds(void)
{
	for (int attempt = 0; attempt < 12; attempt++) {
		long full = 500L << (attempt < 7 ? attempt : 7);

		if (full > 30000)
			full = 30000;
		for (int i = 0; i < 200; i++) {
			long d = http_backoff_ms(attempt, -1);

			CHECK(d >= full / 2);
			CHECK(d <= full);
		}
	}
	/* Jitter: 200 draws at one attempt are not all equal. */
	{
		long first = http_backoff_ms(4, -1);
		int differ = 0;

		for (int i = 0; i < 200; i++)
			differ += http_backoff_ms(4, -1) != first;
		CHECK(differ > 0);
	}
}

static void test_backoff_honours_retry_after(void)
{
	CHECK_INT(http_backoff_ms(0, 7000), 7000);
	CHECK_INT(http_backoff_ms(5, 0), 0);
	CHECK_INT(http_backoff_ms(1, 10000000), 120000);
}

static void test_only_transient_statuses_are_retried(void)
{
	long yes[] = {408, 429, 500, 502, 503, 504};
	long no[] = {200, 201, 202, 204, 301, 400, 401,
		     403, 404, 409, 412, 416, 501, 505};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		CHECK(http_status_transient(yes[i]));
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		CHECK(!http_status_transient(no[i]));
}

/* The one place that decides how long to retry: a lowered budget only
 * ever lowers, and caps one attempt while it is in force. */
static void test_lowered_budget_bounds_budgets_and_attempts(void)
{
	CHECK_INT(http_retry_budget_ms(60000), 60000);
	CHECK_INT(http_attempt_timeout_ms(0), 0);
	CHECK_INT(http_attempt_timeout_ms(-5), 0);
	CHECK_INT(http_attempt_timeout_ms(2000), 2000);
	http_set_retry_budget(10000);
	CHECK_INT(http_retry_budget_ms(60000), 10000);
	CHECK_INT(http_retry_budget_ms(5000), 5000);
	CHECK_INT(http_attempt_timeout_ms(0), 10000);
	CHECK_INT(http_attempt_timeout_ms(2000), 2000);
	CHECK_INT(http_attempt_timeout_ms(30000), 10000);
	http_set_retry_budget(0);
	CHECK_INT(http_retry_budget_ms(60000), 60000);
	CHECK_INT(http_attempt_timeout_ms(0), 0);
}

/* rp_deadline_ts is the instant rp_mono_ms names, and a condition
 * variable on CLOCK_MONOTONIC waits until then, not longer. */
static void test_deadline_timespec_is_the_monotonic_instant(void)
{
	pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
	pthread_condattr_t ca;
	pthread_cond_t cv;
	struct timespec ts, now;
	long long t0, waited;
	int rc = 0;

	ts = rp_deadline_ts(12345678);
	CHECK_INT(ts.tv_sec, 12345);
	CHECK_INT(ts.tv_nsec, 678000000);
	ts = rp_deadline_ts(-1);
	CHECK_INT(ts.tv_sec, 0);
	CHECK_INT(ts.tv_nsec, 0);

	CHECK_INT(pthread_condattr_init(&ca), 0);
	CHECK_INT(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC), 0);
	CHECK_INT(pthread_cond_init(&cv, &ca), 0);
	pthread_condattr_destroy(&ca);
	t0 = rp_mono_ms();
	ts = rp_deadline_ts(t0 + 100);
	clock_gettime(CLOCK_MONOTONIC, &now);
	/* a wrong clock or unit could wait for ages: only wait on a
	 * deadline within a second of now */
	CHECK(ts.tv_sec >= now.tv_sec && ts.tv_sec <= now.tv_sec + 1);
	if (ts.tv_sec >= now.tv_sec && ts.tv_sec <= now.tv_sec + 1) {
		pthread_mutex_lock(&mu);
		while (rc == 0) /* 0: a spurious wake-up */
			rc = pthread_cond_timedwait(&cv, &mu, &ts);
		pthread_mutex_unlock(&mu);
		waited = rp_mono_ms() - t0;
		CHECK_INT(rc, ETIMEDOUT);
		CHECK(waited >= 99 && waited < 2000);
	}
	pthread_cond_destroy(&cv);
}

int main(void)
{
	test_retry_after_in_seconds();
	test_retry_after_as_http_date();
	test_retry_after_garbage_is_ignored();
	test_backoff_grows_with_jitter_within_bounds();
	test_backoff_honours_retry_after();
	test_only_transient_statuses_are_retried();
	test_lowered_budget_bounds_budgets_and_attempts();
	test_deadline_timespec_is_the_monotonic_instant();
	return CHECK_DONE();
}
