/*
 * test_net_retry.c -- throttling is waited out the way Azure asks:
 * Retry-After in seconds or as an HTTP-date, exponential backoff with
 * jitter inside fixed bounds, and only transient statuses retried.
 */
#include <time.h>

#include "check.h"
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

int main(void)
{
	test_retry_after_in_seconds();
	test_retry_after_as_http_date();
	test_retry_after_garbage_is_ignored();
	test_backoff_grows_with_jitter_within_bounds();
	test_backoff_honours_retry_after();
	test_only_transient_statuses_are_retried();
	test_lowered_budget_bounds_budgets_and_attempts();
	return CHECK_DONE();
}
