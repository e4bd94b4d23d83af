/*
 * fuzz_headers.c -- the HTTP header values rpfs interprets itself:
 * Content-Range (a ranged GET completes only with exactly the bytes asked
 * for, so the parse must be strict), Retry-After (http.c, for Resource
 * Manager and Storage alike; the wait is capped at two minutes)
 * and the `se` expiry of a SAS URL.  The first byte picks the parser.
 */
#include <errno.h>
#include <time.h>

#include "blob.h"
#include "fuzz.h"
#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A fixed "now" keeps runs reproducible. */
	const time_t now = 1767323045; /* 2026-01-02T03:04:05Z */
	long long s = -7, e = -7, t = -7;
	time_t exp;
	char *v;
	long ms;
	int rc;

	if (size < 1)
		return 0;
	v = fuzz_str(data + 1, size - 1);
	switch (data[0] % 3) {
	case 0:
		rc = blob_parse_content_range(v, &s, &e, &t);
		FUZZ_ASSERT(rc == 0 || rc == -EINVAL);
		if (rc == 0) {
			FUZZ_ASSERT(s >= 0 && s <= e);
			FUZZ_ASSERT(t == -1 || e < t);
		} else {
			FUZZ_ASSERT(s == -7 && e == -7 && t == -7);
		}
		break;
	case 1:
		ms = http_parse_retry_after(v, now);
		FUZZ_ASSERT(ms >= -1 && ms <= 120000);
		break;
	default:
		rc = blob_sas_expiry(v, &exp);
		FUZZ_ASSERT(rc == 0 || rc == -ENOENT || rc == -EINVAL ||
			    rc == -ENOMEM);
		break;
	}
	free(v);
	return 0;
}
