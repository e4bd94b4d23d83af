/*
 * pagemap.h -- which parts of a disk blob hold data and which are holes,
 * from Get Page Ranges.  Pure data structure: no locking (the owner's
 * mutex guards it), no I/O.
 *
 * The map is authoritative for [0, known); beyond `known` everything counts
 * as data, so an unknown or partly fetched map is always safe to use:
 * treating a hole as data costs a transfer of zeros, never a wrong byte.
 * Extents are sorted, disjoint and never adjacent (adjacent ones merge).
 * Their count is capped: past the cap, a new range merges with its
 * neighbour, turning the gap between them into data.
 */
#ifndef RPFS_PAGEMAP_H
#define RPFS_PAGEMAP_H

#include <stdbool.h>
#include <stddef.h>

struct pm_extent {
	long long start, end; /* [start, end) */
};

struct pagemap {
	long long len;	 /* blob length */
	long long known; /* authoritative below this */
	long long limit; /* known never grows past this (len, or where an
			    allocation failed) */
	struct pm_extent *ext;
	size_t n, alloc, max;
	bool capped; /* the cap merged some gaps into data */
};

/* max_extents 0: a default (262144 extents, 4 MiB). */
void pagemap_init(struct pagemap *pm, long long len, size_t max_extents);
void pagemap_free(struct pagemap *pm);

/* Add data [start, end) (clipped to the blob).  Union semantics: adding a
 * range again changes nothing.  Returns 0 or -ENOMEM (the map then treats
 * everything from start on as data, which is safe). */
int pagemap_add(struct pagemap *pm, long long start, long long end);
/* The map now covers [0, upto). */
void pagemap_set_known(struct pagemap *pm, long long upto);

/* Is off data?  *run_end: where this data run or hole ends (<= len). */
bool pagemap_is_data(const struct pagemap *pm, long long off,
		     long long *run_end);
/* lseek semantics (ext4/tmpfs): SEEK_DATA gives the first data offset >=
 * off or -ENXIO when none; SEEK_HOLE the first hole offset >= off, the
 * blob length counting as a hole; both -ENXIO when off >= len. */
long long pagemap_seek_data(const struct pagemap *pm, long long off);
long long pagemap_seek_hole(const struct pagemap *pm, long long off);
/* Data bytes in [start, end): what a transfer of that span would carry
 * that is not zeros by the map. */
long long pagemap_data_in(const struct pagemap *pm, long long start,
			  long long end);
/* Bytes counted as data in the whole blob. */
long long pagemap_allocated(const struct pagemap *pm);

#endif
