/*
 * fuzz_blob_pagelist.c -- the Get Page Ranges answer (<PageList>) through
 * the streaming expat parser of net/blob_parse.c.
 *
 * Input: one byte picks the window (whole blob, or a 512-aligned window
 * somewhere), two bytes the chunk size, then the XML.  The same document
 * is parsed twice, in one piece and in chunks of that size, and the two
 * runs must agree exactly (status, ranges, marker): a parse that depends
 * on how TCP cut the answer would give a wrong sparse map.  Every range
 * handed out must be half-open, non-empty, inside the window, and after
 * the previous one -- holes read as zeros, so a wrong range means wrong
 * bytes.
 */
#include <errno.h>
#include <stdbool.h>

#include "blob.h"
#include "fuzz.h"

#define MAX_RANGES 4096

struct ranges {
	long long win_start, win_end;
	long long s[MAX_RANGES], e[MAX_RANGES];
	size_t n;
	bool overflow;
	int stop_after; /* >0: the callback fails at that range */
};

static int on_range(void *arg, long long start, long long end)
{
	struct ranges *r = arg;

	FUZZ_ASSERT(start < end);
	FUZZ_ASSERT(start >= r->win_start && end <= r->win_end);
	if (r->n)
		FUZZ_ASSERT(start >= r->e[r->n - 1]);
	if (r->n == MAX_RANGES) {
		r->overflow = true;
	} else {
		r->s[r->n] = start;
		r->e[r->n] = end;
	}
	r->n++;
	if (r->stop_after && (int)r->n >= r->stop_after)
		return -ECANCELED;
	return 0;
}

static int run(const char *xml, size_t len, size_t chunk, struct ranges *r,
	       char **marker)
{
	struct blob_pl_parser *p =
	    blob_pl_parser_new(r->win_start, r->win_end, on_range, r);
	size_t off = 0;
	int rc = 0;
	const char *m;

	FUZZ_ASSERT(p != NULL);
	do {
		size_t n = len - off < chunk ? len - off : chunk;

		rc = blob_pl_parser_feed(p, xml + off, n, off + n == len);
		off += n;
	} while (!rc && off < len);
	FUZZ_ASSERT(rc <= 0);
	FUZZ_ASSERT(fuzz_terminated(blob_pl_parser_error(p), 160));
	if (rc)
		FUZZ_ASSERT(blob_pl_parser_error(p)[0] != '\0');
	m = blob_pl_parser_marker(p);
	*marker = m ? strdup(m) : NULL;
	blob_pl_parser_free(p);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ranges a, b;
	char *xml, *ma, *mb;
	size_t chunk;
	int ra, rb;

	if (size < 3)
		return 0;
	memset(&a, 0, sizeof(a));
	if (data[0] & 0x80) {
		a.win_start = (long long)(data[0] & 0x0f) * 512;
		a.win_end = a.win_start +
			    (long long)((data[0] >> 4) & 7) * 1024 * 1024 + 512;
	} else {
		a.win_start = 0;
		a.win_end = 1LL << 62;
	}
	a.stop_after = (data[0] & 0x60) == 0x60 ? 3 : 0;
	chunk = (size_t)(data[1] << 8 | data[2]) % 257 + 1;
	data += 3;
	size -= 3;
	b = a;
	xml = fuzz_str(data, size);

	ra = run(xml, size, size ? size : 1, &a, &ma);
	rb = run(xml, size, chunk, &b, &mb);

	FUZZ_ASSERT((ra == 0) == (rb == 0));
	FUZZ_ASSERT(a.n == b.n && a.overflow == b.overflow);
	for (size_t i = 0; i < a.n && i < MAX_RANGES; i++)
		FUZZ_ASSERT(a.s[i] == b.s[i] && a.e[i] == b.e[i]);
	if (ra == 0)
		FUZZ_ASSERT((!ma && !mb) || (ma && mb && !strcmp(ma, mb)));
	free(ma);
	free(mb);
	free(xml);
	return 0;
}
