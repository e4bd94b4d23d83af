/*
 * pagemap.c -- the sparse map of a disk blob (see pagemap.h).
 *
 * A sorted array of extents, searched by bisection.  Ranges arrive from
 * Get Page Ranges in ascending order, so the common add is an append or a
 * merge with the last extent; out-of-order and repeated ranges (a retried
 * page-list request hands its ranges again) are merged correctly too.
 * Memory is bounded by the extent cap, whatever the disk looks like.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pagemap.h"

#define PM_DEFAULT_MAX 262144

void pagemap_init(struct pagemap *pm, long long len, size_t max_extents)
{
	memset(pm, 0, sizeof(*pm));
	pm->len = len;
	pm->limit = len;
	pm->max = max_extents ? max_extents : PM_DEFAULT_MAX;
}

void pagemap_free(struct pagemap *pm)
{
	free(pm->ext);
	pm->ext = NULL;
	pm->n = pm->alloc = 0;
}

/* First extent whose end is > off (n when none). */
static size_t first_after(const struct pagemap *pm, long long off)
{
	size_t lo = 0, hi = pm->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (pm->ext[mid].end > off)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* First extent whose end is >= off: touching counts, so it merges. */
static size_t first_touching(const struct pagemap *pm, long long off)
{
	return off > 0 ? first_after(pm, off - 1) : 0;
}

int pagemap_add(struct pagemap *pm, long long start, long long end)
{
	size_t i, j;

	if (start < 0)
		start = 0;
	if (end > pm->len)
		end = pm->len;
	if (start >= end)
		return 0;
	i = first_touching(pm, start);
	for (j = i; j < pm->n && pm->ext[j].start <= end; j++)
		;
	if (i < j) {
		if (pm->ext[i].start > start)
			pm->ext[i].start = start;
		if (pm->ext[j - 1].end > end)
			end = pm->ext[j - 1].end;
		pm->ext[i].end = end;
		memmove(&pm->ext[i + 1], &pm->ext[j],
			(pm->n - j) * sizeof(pm->ext[0]));
		pm->n -= j - i - 1;
		return 0;
	}
	if (pm->n >= pm->max) {
		/* capped: merge with a neighbour; the gap becomes data */
		pm->capped = true;
		if (i > 0)
			pm->ext[i - 1].end = end;
		else
			pm->ext[0].start = start;
		return 0;
	}
	if (pm->n == pm->alloc) {
		size_t na = pm->alloc ? pm->alloc * 2 : 64;
		struct pm_extent *ne;

		if (na > pm->max)
			na = pm->max;
		ne = realloc(pm->ext, na * sizeof(*ne));
		if (!ne) {
			/* from here on everything is data: still correct */
			if (pm->known > start)
				pm->known = start;
			if (pm->limit > start)
				pm->limit = start;
			pm->capped = true;
			return -ENOMEM;
		}
		pm->ext = ne;
		pm->alloc = na;
	}
	memmove(&pm->ext[i + 1], &pm->ext[i], (pm->n - i) * sizeof(pm->ext[0]));
	pm->ext[i].start = start;
	pm->ext[i].end = end;
	pm->n++;
	return 0;
}

void pagemap_set_known(struct pagemap *pm, long long upto)
{
	/* after an allocation failure, `known` stays where it stopped */
	if (upto > pm->limit)
		upto = pm->limit;
	if (upto > pm->known)
		pm->known = upto;
}

bool pagemap_is_data(const struct pagemap *pm, long long off,
		     long long *run_end)
{
	size_t i;
	long long r;

	if (off >= pm->len) {
		*run_end = pm->len;
		return false;
	}
	if (off >= pm->known) {
		*run_end = pm->len;
		return true;
	}
	i = first_after(pm, off);
	if (i < pm->n && pm->ext[i].start <= off) {
		r = pm->ext[i].end;
		*run_end = r >= pm->known ? pm->len : r;
		return true;
	}
	r = i < pm->n ? pm->ext[i].start : pm->len;
	*run_end = r < pm->known ? r : pm->known;
	return false;
}

long long pagemap_seek_data(const struct pagemap *pm, long long off)
{
	long long r;

	if (off < 0)
		return -EINVAL;
	if (off >= pm->len)
		return -ENXIO;
	if (pagemap_is_data(pm, off, &r))
		return off;
	return r >= pm->len ? -ENXIO : r;
}

long long pagemap_seek_hole(const struct pagemap *pm, long long off)
{
	long long r;

	if (off < 0)
		return -EINVAL;
	if (off >= pm->len)
		return -ENXIO;
	if (!pagemap_is_data(pm, off, &r))
		return off;
	return r;
}

long long pagemap_data_in(const struct pagemap *pm, long long start,
			  long long end)
{
	long long sum = 0, k;
	size_t i;

	if (end > pm->len)
		end = pm->len;
	if (start < 0)
		start = 0;
	if (start >= end)
		return 0;
	k = pm->known < end ? pm->known : end;
	for (i = first_after(pm, start); i < pm->n && pm->ext[i].start < k;
	     i++) {
		long long s =
		    pm->ext[i].start > start ? pm->ext[i].start : start;
		long long e = pm->ext[i].end < k ? pm->ext[i].end : k;

		if (e > s)
			sum += e - s;
	}
	if (end > pm->known)
		sum += end - (pm->known > start ? pm->known : start);
	return sum;
}

long long pagemap_allocated(const struct pagemap *pm)
{
	return pagemap_data_in(pm, 0, pm->len);
}
