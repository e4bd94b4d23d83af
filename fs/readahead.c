/*
 * readahead.c -- chunk cache and read-ahead policy of an open disk (see
 * readahead.h for the contract).
 *
 * Entries: byte spans [start, end) of the blob, each with its own buffer,
 * fetched by one ranged GET.  They may overlap (a random read's small span
 * inside a chunk fetched later); the blob is immutable, so any entry that
 * covers an offset holds the right bytes.  States: INFLIGHT (the engine
 * writes the buffer), READY, FAILED.  An entry is freed only when no
 * reader holds a reference (refs) and no transfer writes into it; readers
 * copy out without the lock, holding a reference.
 *
 * Policy: a read that continues a stream of its handle is sequential; it
 * fetches the rest of the chunk it falls in (only the data part, by the
 * page map) and starts read-ahead fetches for the following chunks until
 * the stream's window of data bytes is covered, `parallel` fetches are in
 * flight, or memory is short.  Holes are skipped.  Other reads fetch the
 * `unit`-aligned span around them and start no read-ahead.
 *
 * Eviction, when a new entry needs room: failed entries, then chunks read
 * through (all their data bytes copied out), then random reads' small
 * entries and chunks a reader left partly read well behind it (reading
 * only what a file system uses), least recently used first.  Other
 * chunks not read through -- read-ahead nobody came for yet, or a chunk
 * near the reader -- go only for a demand read or when stale: readers
 * with several reads in flight (qemu-img convert runs 8) finish a chunk
 * out of order, and read-ahead must not evict the part they have not
 * reached yet.  A read-ahead fetch that finds no room is simply not made.
 *
 * Locks: c->mu guards everything in the cache, the page map and the
 * streams passed in; the engine's completion callback takes it briefly.
 * Lock order: c->mu, then the engine's queue lock (inside submit).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../net/clock.h"
#include "../net/log.h"
#include "pagemap.h"
#include "readahead_int.h"

enum ra_state { E_INFLIGHT, E_READY, E_FAILED };

struct ra_entry {
	struct ra_entry *next, *prev;
	struct ra_cache *c;
	long long start, end;
	enum ra_state state;
	char *buf;
	size_t cap; /* of buf */
	int refs;
	bool linked;	  /* on the cache's list (findable) */
	bool prefetched;  /* made by read-ahead, not for a waiting reader */
	bool streamed;	  /* a chunk of a sequential stream (demand or ahead) */
	bool touched;	  /* a reader used it */
	bool consumed;	  /* a streamed chunk whose every byte was read */
	long long served; /* bytes readers copied out of it */
	long long need;	  /* its data bytes (holes are read from the map) */
	unsigned long long used;
	struct blob_result res;
};

struct ra_cache {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct ra_config cfg;
	struct blob_engine *eng;
	long long len;
	/* The least server wait (request to first byte) of this disk's
	 * fetches, -1 before the first: its distance.  Not an average: the
	 * others add the queueing and scheduling that ranges in flight on
	 * busy CPUs cause themselves (on loopback the average climbs from
	 * 0.02 to 6 ms as soon as 16 are in flight). */
	long long wait_us;
	struct pagemap pm;
	struct ra_entry *head;
	size_t nentries; /* on the list */
	size_t bytes;
	int inflight, pf_inflight;
	unsigned long long tick;
	struct ra_stats st;
};

/* Lookups scan the list: keep it short.  Small random-read entries are
 * what would grow it; the kernel's page cache holds those pages anyway. */
#define RA_MAX_ENTRIES 128

/* ---- cache ---- */

struct ra_cache *ra_cache_new(const struct ra_config *cfg,
			      struct blob_engine *eng, long long len)
{
	struct ra_cache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->cfg = *cfg;
	ra_config_defaults(&c->cfg);
	c->eng = eng;
	c->len = len;
	c->wait_us = -1;
	ra_pool_init(c->cfg.chunk);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	pagemap_init(&c->pm, len, c->cfg.map_extents);
	return c;
}

static void entry_unlink(struct ra_cache *c, struct ra_entry *e)
{
	if (!e->linked)
		return;
	c->nentries--;
	if (e->prev)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	e->next = e->prev = NULL;
	e->linked = false;
}

static void entry_destroy(struct ra_cache *c, struct ra_entry *e)
{
	entry_unlink(c, e);
	c->bytes -= e->cap;
	ra_buf_put(e->buf, e->cap);
	free(e);
}

/* Drop a reference; an unlinked entry goes with its last one. */
static void entry_release(struct ra_cache *c, struct ra_entry *e)
{
	if (--e->refs == 0 && !e->linked && e->state != E_INFLIGHT)
		entry_destroy(c, e);
}

void ra_cache_free(struct ra_cache *c)
{
	struct ra_entry *e;

	if (!c)
		return;
	if (c->eng)
		blob_engine_cancel(c->eng, c);
	pthread_mutex_lock(&c->mu);
	while (c->inflight > 0)
		pthread_cond_wait(&c->cv, &c->mu);
	while ((e = c->head))
		entry_destroy(c, e);
	pthread_mutex_unlock(&c->mu);
	pagemap_free(&c->pm);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}

/* A fetch's server wait: keep the least, and say when it moves the
 * disk between near and far.  c->mu held. */
static void note_wait(struct ra_cache *c, long long us)
{
	int was;

	if (c->wait_us >= 0 && c->wait_us <= us)
		return;
	was = ra_parallel_now(&c->cfg, c->wait_us);
	c->wait_us = us;
	if (ra_parallel_now(&c->cfg, us) != was)
		log_debug("readahead: the server answers in %.2f ms: %d ranges "
			  "in flight",
			  us / 1000.0, ra_parallel_now(&c->cfg, us));
}

/* A fetch ended.  c->mu held. */
static void entry_complete(struct ra_cache *c, struct ra_entry *e,
			   const struct blob_result *res)
{
	c->inflight--;
	if (e->prefetched)
		c->pf_inflight--;
	if (res->status == BLOB_OK) {
		e->state = E_READY;
		c->st.fetched += (unsigned long long)(e->end - e->start);
		if (res->wait_us > 0)
			note_wait(c, res->wait_us);
	} else {
		e->state = E_FAILED;
		e->res = *res;
	}
	if (!e->linked && e->refs == 0)
		entry_destroy(c, e);
	pthread_cond_broadcast(&c->cv);
}

static void entry_done(void *arg, const struct blob_result *res)
{
	struct ra_entry *e = arg;
	struct ra_cache *c = e->c;

	pthread_mutex_lock(&c->mu);
	entry_complete(c, e, res);
	pthread_mutex_unlock(&c->mu);
}

/* The best entry covering off: ready, else in flight, else failed. */
static struct ra_entry *find_entry(struct ra_cache *c, long long off)
{
	struct ra_entry *best = NULL;

	for (struct ra_entry *e = c->head; e; e = e->next) {
		if (off < e->start || off >= e->end)
			continue;
		if (e->state == E_READY)
			return e;
		if (!best || (best->state == E_FAILED && e->state != E_FAILED))
			best = e;
	}
	return best;
}

static size_t cache_budget(const struct ra_cache *c)
{
	return c->cfg.window_max + 2 * c->cfg.chunk;
}

/* A chunk not read through (read-ahead nobody came for, or one a reader
 * left half read) that was not used in this many reads is stale. */
static bool entry_stale(const struct ra_cache *c, const struct ra_entry *e)
{
	unsigned long long limit = 4 * c->cfg.window_max / (64 * KiB);

	return c->tick - e->used > limit;
}

/* How far behind a sequential reader its chunks are kept from its own
 * read-ahead: readers with several reads in flight finish chunks out of
 * order within this span (qemu-img convert: 8 x 2 MiB).  At most half
 * the window, so that read-ahead keeps room to work with. */
#define RA_SPREAD (16 * MiB)

static long long keep_span(const struct ra_cache *c)
{
	long long half = (long long)c->cfg.window_max / 2;

	return half < RA_SPREAD ? half : RA_SPREAD;
}

/* Victim rank: lower goes first; -1 = not evictable now.  keep_from: a
 * read-ahead's stream position less keep_span(); a chunk readers used
 * that ends at or before it was left behind (LLONG_MIN: none was). */
static int victim_rank(const struct ra_cache *c, const struct ra_entry *e,
		       bool demand, long long keep_from)
{
	if (e->refs || e->state == E_INFLIGHT)
		return -1;
	if (e->state == E_FAILED)
		return 0;
	if (e->consumed)
		return 1;
	if (!e->streamed || (e->touched && e->end <= keep_from))
		return 2;
	if (demand || entry_stale(c, e))
		return 3;
	return -1;
}

/* Make room for `need` bytes.  A demand read always proceeds (it may pass
 * the budget by what the waiting readers hold); read-ahead only within
 * the budgets.  Returns true when the allocation may go ahead. */
static bool make_room(struct ra_cache *c, size_t need, bool demand,
		      long long keep_from)
{
	while (c->bytes + need > cache_budget(c) ||
	       c->nentries >= RA_MAX_ENTRIES ||
	       ra_global_bytes() + need > ra_global_cap()) {
		struct ra_entry *v = NULL;
		int vr = 99;

		for (struct ra_entry *e = c->head; e; e = e->next) {
			int r = victim_rank(c, e, demand, keep_from);

			if (r < 0)
				continue;
			if (r < vr || (r == vr && e->used < v->used)) {
				v = e;
				vr = r;
			}
		}
		if (!v)
			return demand;
		entry_destroy(c, v);
	}
	return true;
}

/* Data bytes in [s, e) by the page map (runs past the 64th count as
 * holes: the chunk is then called read through a little early). */
static long long data_bytes_within(struct ra_cache *c, long long s, long long e)
{
	long long p = s, n = 0, run;
	int runs = 0;

	while (p < e && runs++ < 64) {
		bool d = pagemap_is_data(&c->pm, p, &run);

		if (run > e)
			run = e;
		if (d)
			n += run - p;
		p = run;
	}
	return n;
}

/*
 * A new entry for [s, e), in flight.  queue: hand it to the engine now;
 * else the caller fetches it itself (blob_read_direct) and completes it.
 */
static struct ra_entry *entry_fetch(struct ra_cache *c, struct blob_source *src,
				    long long s, long long e, bool prefetched,
				    bool queue, int *rc)
{
	struct ra_entry *n = calloc(1, sizeof(*n));

	*rc = -ENOMEM;
	if (!n)
		return NULL;
	n->buf = ra_buf_get((size_t)(e - s), &n->cap);
	if (!n->buf) {
		free(n);
		return NULL;
	}
	n->c = c;
	n->start = s;
	n->end = e;
	n->state = E_INFLIGHT;
	n->prefetched = prefetched;
	n->streamed = queue;
	n->need = data_bytes_within(c, s, e);
	n->used = c->tick;
	*rc = queue ? blob_read_async(c->eng, src, s, (size_t)(e - s), c->len,
				      n->buf, c, entry_done, n)
		    : 0;
	if (*rc) {
		ra_buf_put(n->buf, n->cap);
		free(n);
		return NULL;
	}
	c->bytes += n->cap;
	n->linked = true;
	c->nentries++;
	n->next = c->head;
	if (c->head)
		c->head->prev = n;
	c->head = n;
	c->inflight++;
	c->st.fetches++;
	if (prefetched) {
		c->pf_inflight++;
		c->st.prefetches++;
	}
	return n;
}

/* End of the data to fetch in [s, ce): past the last data run in it (the
 * page map may split it into runs; holes between them come along). */
static long long data_end_within(struct ra_cache *c, long long s, long long ce)
{
	long long p = s, last = s, run;
	int runs = 0;

	while (p < ce && runs++ < 64) {
		bool d = pagemap_is_data(&c->pm, p, &run);

		if (run > ce)
			run = ce;
		if (d)
			last = run;
		p = run;
	}
	return p < ce ? ce : last;
}

/* A sequential reader at pos: the rest of pos's chunk. */
static void chunk_span(struct ra_cache *c, long long pos, long long *s,
		       long long *e)
{
	long long ch = (long long)c->cfg.chunk;
	long long ce = (pos / ch + 1) * ch;

	if (ce > c->len)
		ce = c->len;
	*s = pos / 512 * 512;
	*e = data_end_within(c, *s, ce);
}

/* Chunks a sequential reader is more than a chunk past go back to the
 * pool now, not when the budget runs out: memory tracks the window. */
static void drop_passed(struct ra_cache *c, const struct ra_stream *st)
{
	long long behind = st->next - (long long)c->cfg.chunk;
	struct ra_entry *e, *nx;

	for (e = c->head; e; e = nx) {
		nx = e->next;
		if (e->consumed && !e->refs && e->state == E_READY &&
		    e->end <= behind)
			entry_destroy(c, e);
	}
}

static void prefetch(struct ra_cache *c, struct blob_source *src,
		     struct ra_stream *st)
{
	long long q = st->next, covered = 0, ch = (long long)c->cfg.chunk;
	int steps = 0;

	if (c->cfg.off)
		return;
	while (covered < (long long)st->window && q < c->len &&
	       c->pf_inflight < ra_parallel_now(&c->cfg, c->wait_us) &&
	       steps++ < 4096) {
		long long run, s, e, ce;
		struct ra_entry *x;
		int rc;

		if (!pagemap_is_data(&c->pm, q, &run)) {
			q = run;
			continue;
		}
		x = find_entry(c, q);
		if (x && x->state != E_FAILED) {
			covered += x->end - q;
			q = x->end;
			continue;
		}
		ce = (q / ch + 1) * ch;
		if (ce > c->len)
			ce = c->len;
		s = q / 512 * 512;
		e = data_end_within(c, s, ce);
		if (!make_room(c, ra_buf_cap((size_t)(e - s)), false,
			       st->next - keep_span(c)))
			break;
		if (!entry_fetch(c, src, s, e, true, true, &rc))
			break;
		covered += e - s;
		q = e;
	}
}

/* A fetch for this handle gave up: remember it (see ra_streams). */
static int remember_failure(struct ra_streams *streams,
			    const struct blob_result *res, struct rp_err *err)
{
	int rc = res->error ? res->error : -EIO;

	streams->fail_until = rp_mono_ms() + RA_FAIL_HOLD_MS;
	streams->fail_error = rc;
	streams->fail_err = res->err;
	if (err)
		*err = res->err;
	return rc;
}

/* The remembered give-up, if it is recent. */
static int recent_failure(const struct ra_streams *streams, struct rp_err *err)
{
	if (!streams->fail_until || rp_mono_ms() >= streams->fail_until)
		return 0;
	if (err)
		*err = streams->fail_err;
	return streams->fail_error;
}

ssize_t ra_read(struct ra_cache *c, struct ra_streams *streams,
		struct blob_source *src, char *buf, size_t size, off_t off,
		struct ra_fault *fault, struct rp_err *err)
{
	struct ra_stream *st;
	long long pos, end;
	bool seq, waited;

	if (off < 0)
		return -EINVAL;
	if (off >= c->len || !size)
		return 0;
	if ((long long)size > c->len - off)
		size = (size_t)(c->len - off);
	pos = off;
	end = off + (long long)size;
	pthread_mutex_lock(&c->mu);
	st = ra_stream_update(streams, &c->cfg, off, size, &seq);
	while (pos < end) {
		struct ra_entry *e;
		long long run, n;

		if (!pagemap_is_data(&c->pm, pos, &run)) {
			n = (run < end ? run : end) - pos;
			c->st.hole_bytes += (unsigned long long)n;
			pthread_mutex_unlock(&c->mu);
			memset(buf + (pos - off), 0, (size_t)n);
			pthread_mutex_lock(&c->mu);
			pos += n;
			continue;
		}
		e = find_entry(c, pos);
		waited = !e; /* this reader's own fetch */
		if (!e) {
			long long s, x;
			int rc = recent_failure(streams, err);

			if (rc) {
				pthread_mutex_unlock(&c->mu);
				return rc;
			}
			if (seq)
				chunk_span(c, pos, &s, &x);
			else
				ra_random_span(&c->cfg, pos,
					       (size_t)(end - pos), c->len, &s,
					       &x);
			make_room(c, ra_buf_cap((size_t)(x - s)), true,
				  LLONG_MIN);
			/* a sequential reader's chunk goes to the engine with
			 * its read-ahead; a random read is fetched right here
			 */
			e = entry_fetch(c, src, s, x, false, seq, &rc);
			if (!e) {
				pthread_mutex_unlock(&c->mu);
				rp_err_set(err, 0, "ReadFailed",
					   "could not queue a blob read");
				return rc;
			}
			if (!seq) {
				struct blob_result res;

				e->refs++;
				pthread_mutex_unlock(&c->mu);
				blob_read_direct(c->eng, src, s,
						 (size_t)(x - s), c->len,
						 e->buf, &res);
				pthread_mutex_lock(&c->mu);
				e->refs--;
				entry_complete(c, e, &res);
			}
		}
		e->refs++;
		while (e->state == E_INFLIGHT) {
			waited = true;
			pthread_cond_wait(&c->cv, &c->mu);
		}
		if (e->state == E_FAILED) {
			struct blob_result res = e->res;
			bool renew = res.status == BLOB_EXPIRED ||
				     res.status == BLOB_NEED_TOKEN;
			bool prefetched = e->prefetched;
			int rc;

			entry_unlink(c, e);
			entry_release(c, e);
			/* Read-ahead that met an expired SAS: fetch it now,
			 * which renews on the way. */
			if (renew && prefetched)
				continue;
			if (renew) {
				pthread_mutex_unlock(&c->mu);
				fault->res = res;
				return -EKEYEXPIRED;
			}
			/* Any other failure spent the whole retry budget.  A
			 * reader who waited for it gets the error: asking
			 * again would double the wait.  One who finds it
			 * failed earlier asks again, unless its handle gave up
			 * a moment ago. */
			if (!waited && !recent_failure(streams, NULL))
				continue;
			rc = remember_failure(streams, &res, err);
			pthread_mutex_unlock(&c->mu);
			return rc;
		}
		n = (e->end < end ? e->end : end) - pos;
		e->touched = true;
		e->used = ++c->tick;
		pthread_mutex_unlock(&c->mu);
		memcpy(buf + (pos - off), e->buf + (pos - e->start), (size_t)n);
		pthread_mutex_lock(&c->mu);
		pos += n;
		/* Read through, by whichever reads: a reader with several
		 * in flight finishes a chunk out of order. */
		e->served += n;
		if (e->streamed && e->served >= e->need)
			e->consumed = true;
		entry_release(c, e);
	}
	if (seq) {
		drop_passed(c, st);
		prefetch(c, src, st);
	}
	pthread_mutex_unlock(&c->mu);
	return (ssize_t)size;
}

/* ---- page map ---- */

int ra_map_add(struct ra_cache *c, long long start, long long end)
{
	int rc;

	pthread_mutex_lock(&c->mu);
	rc = pagemap_add(&c->pm, start, end);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

void ra_map_known(struct ra_cache *c, long long upto)
{
	pthread_mutex_lock(&c->mu);
	pagemap_set_known(&c->pm, upto);
	pthread_mutex_unlock(&c->mu);
}

bool ra_map_complete(struct ra_cache *c)
{
	bool done;

	pthread_mutex_lock(&c->mu);
	done = c->pm.known >= c->len;
	pthread_mutex_unlock(&c->mu);
	return done;
}

long long ra_map_allocated(struct ra_cache *c)
{
	long long a;

	pthread_mutex_lock(&c->mu);
	a = pagemap_allocated(&c->pm);
	pthread_mutex_unlock(&c->mu);
	return a;
}

off_t ra_seek(struct ra_cache *c, off_t off, int whence)
{
	long long r;

	pthread_mutex_lock(&c->mu);
	if (whence == SEEK_DATA)
		r = pagemap_seek_data(&c->pm, off);
	else if (whence == SEEK_HOLE)
		r = pagemap_seek_hole(&c->pm, off);
	else
		r = -EINVAL;
	pthread_mutex_unlock(&c->mu);
	return (off_t)r;
}

void ra_cache_stats(struct ra_cache *c, struct ra_stats *out)
{
	pthread_mutex_lock(&c->mu);
	*out = c->st;
	pthread_mutex_unlock(&c->mu);
}
