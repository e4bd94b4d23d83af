/*
 * readahead.h -- the chunk cache of one open disk and the read-ahead
 * policy that fills it.  Called by fs/disk.c only.
 *
 * A read is served from cache entries (byte spans of the blob fetched by
 * the blob engine), from the page map (holes read as zeros, no transfer),
 * or by fetching: a sequential reader gets whole chunks and a read-ahead
 * window of further chunks in flight that doubles while the reader keeps
 * coming back, up to window_max; a random reader gets only the span of
 * its read, aligned to 4 KiB, fetched on its own thread (no hand-off).
 * Memory: entries of one cache stay within window_max + 2 chunks (demand
 * reads may pass it briefly), and all caches together within a global
 * cap (ra_global_set_cap); read-ahead is skipped, never waited for, when a
 * bound is reached.
 *
 * Thread-safe: one mutex per cache guards its entries, its page map and
 * the stream state of the handles reading it.
 */
#ifndef RPFS_READAHEAD_H
#define RPFS_READAHEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "../net/blob.h"

struct ra_config {
	size_t chunk;	    /* sequential fetch size (512-aligned); 4 MiB */
	size_t window_min;  /* first read-ahead window; 2 chunks */
	size_t window_max;  /* largest window; 64 MiB */
	size_t unit;	    /* random reads fetch this alignment; 4 KiB */
	int parallel;	    /* read-ahead fetches in flight; 16 */
	int near_parallel;  /* ... while the server is near; 0: always
			       parallel */
	long near_wait_us;  /* near: least wait under this; 0: never */
	bool off;	    /* no read-ahead at all (readahead=0) */
	size_t map_extents; /* page map cap; 0 = default */
};

/* Fill unset (0) fields with defaults and round sizes to 512. */
void ra_config_defaults(struct ra_config *cfg);

/* The cap on cache memory across all disks (default 128 MiB) and what is
 * in use now. */
void ra_global_set_cap(size_t bytes);
size_t ra_global_bytes(void);

/* ---- policy (pure, unit-tested) ---- */

#define RA_STREAMS 4

/* One sequential reader within a handle. */
struct ra_stream {
	long long next;	    /* end of the furthest read seen */
	size_t window;	    /* current read-ahead window, bytes */
	unsigned hits;	    /* reads that continued it */
	long long chunk_at; /* last chunk index the reader entered */
	unsigned long long used;
};

struct ra_streams {
	struct ra_stream s[RA_STREAMS];
	unsigned long long tick;
	/* A fetch for this handle gave up (its whole retry budget spent):
	 * until fail_until (CLOCK_MONOTONIC, ms) reads through the handle
	 * that need the network fail at once with the same error.  The
	 * kernel re-reads synchronously what its failed read-ahead asked
	 * for, and each re-read would otherwise cost another full budget
	 * against a hung service.  Other handles (a new open) try again. */
	long long fail_until;
	int fail_error;
	struct rp_err fail_err;
};

/* How long a handle remembers a give-up. */
#define RA_FAIL_HOLD_MS 5000

/*
 * The stream a read [off, off+size) continues, or a new one replacing the
 * least recently used.  *sequential: the read continues a stream that was
 * read before (reads may arrive slightly out of order: FUSE runs them on
 * several threads).  Grows the stream's window when the reader enters a
 * new chunk.
 */
struct ra_stream *ra_stream_update(struct ra_streams *st,
				   const struct ra_config *cfg, long long off,
				   size_t size, bool *sequential);
/*
 * Read-ahead fetches in flight for a server whose answers begin wait_us
 * after the request (the least seen on this disk; -1: none yet).  A server
 * on this host or as close (under 1 ms) fills the reader's need with a
 * few ranges in flight, and more only cost CPU and memory; any other
 * (Azure: several ms; the cloud-like bench link: 20 ms) needs them all,
 * because each range pays the round trip and connections are
 * rate-limited.
 */
#define RA_NEAR_WAIT_US 1000 /* the default near_wait_us (-o near_us) */
#define RA_NEAR_PARALLEL 4   /* the default near_parallel */
int ra_parallel_now(const struct ra_config *cfg, long long wait_us);
/* Doubling, capped at window_max. */
size_t ra_window_next(size_t cur, const struct ra_config *cfg);
/* The span a random read fetches: [off, off+size) widened to `unit`
 * alignment, clipped to [0, len). */
void ra_random_span(const struct ra_config *cfg, long long off, size_t size,
		    long long len, long long *start, long long *end);

/* ---- the cache ---- */

struct ra_cache;

struct ra_cache *ra_cache_new(const struct ra_config *cfg,
			      struct blob_engine *eng, long long len);
/* Cancels fetches in flight, waits for them, frees everything. */
void ra_cache_free(struct ra_cache *c);

/* Page map updates (from the page-list fetch) and queries. */
int ra_map_add(struct ra_cache *c, long long start, long long end);
void ra_map_known(struct ra_cache *c, long long upto);
bool ra_map_complete(struct ra_cache *c);
long long ra_map_allocated(struct ra_cache *c);
/* SEEK_DATA / SEEK_HOLE; -ENXIO past the data / the end. */
off_t ra_seek(struct ra_cache *c, off_t off, int whence);

/* Why a read stopped when the blob engine needs the caller to act. */
struct ra_fault {
	struct blob_result res; /* status BLOB_EXPIRED or BLOB_NEED_TOKEN */
};

/*
 * Read exactly min(size, len - off) bytes at off into buf using streams
 * (the handle's reader state).  Returns the count, a negative errno, or
 * -EKEYEXPIRED with *fault filled when the SAS or token must be renewed
 * (then call again).  Other errors fill err.
 */
ssize_t ra_read(struct ra_cache *c, struct ra_streams *streams,
		struct blob_source *src, char *buf, size_t size, off_t off,
		struct ra_fault *fault, struct rp_err *err);

/* Counters for tests: bytes fetched, fetches, read-ahead fetches. */
struct ra_stats {
	unsigned long long fetched, fetches, prefetches, hole_bytes;
};
void ra_cache_stats(struct ra_cache *c, struct ra_stats *out);

#endif
