/*
 * check.h -- the smallest assertion kit for the C unit tests.
 *
 * CHECK* macros report file:line and the values, count failures, and
 * keep going so one run shows every broken case; CHECK_DONE() returns the
 * process exit status (0 only when nothing failed), which ctest reads.
 */
#ifndef RPFS_CHECK_H
#define RPFS_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                            \
	do {                                                                   \
		check_count++;                                                 \
		if (!(cond)) {                                                 \
			check_failures++;                                      \
			fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, \
				__LINE__, #cond);                              \
		}                                                              \
	} while (0)

#define CHECK_INT(a, b)                                                        \
	do {                                                                   \
		long long check_a_ = (long long)(a);                           \
		long long check_b_ = (long long)(b);                           \
		check_count++;                                                 \
		if (check_a_ != check_b_) {                                    \
			check_failures++;                                      \
			fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n",  \
				__FILE__, __LINE__, #a, check_a_, check_b_);   \
		}                                                              \
	} while (0)

#define CHECK_STR(a, b)                                                        \
	do {                                                                   \
		const char *check_a_ = (a);                                    \
		const char *check_b_ = (b);                                    \
		check_count++;                                                 \
		if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_)) {    \
			check_failures++;                                      \
			fprintf(stderr,                                        \
				"%s:%d: %s == \"%s\", expected \"%s\"\n",      \
				__FILE__, __LINE__, #a,                        \
				check_a_ ? check_a_ : "(null)",                \
				check_b_ ? check_b_ : "(null)");               \
		}                                                              \
	} while (0)

#define CHECK_NULL(a) CHECK((a) == NULL)

#define CHECK_DONE()                                                           \
	(fprintf(stderr, "%d checks, %d failed\n", check_count,                \
		 check_failures),                                              \
	 check_failures ? 1 : 0)

#endif
