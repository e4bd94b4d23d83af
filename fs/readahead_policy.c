/*
 * readahead_policy.c -- the parts of the read-ahead module that hold no
 * cache: the policy (what is sequential, how the window grows, what a
 * random read fetches; pure functions, unit-tested) and the memory of all
 * caches (the global cap and the pool of chunk buffers).
 *
 * Memory: buffers of chunk size come from mmap and go back to a free list
 * (pool_mu) when their entry dies, so a sequential read keeps reusing warm
 * pages; in-use plus pooled bytes stay within the global cap.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "readahead_int.h"

/* ---- global memory ---- */

/*
 * Buffers of chunk size or more come from mmap and go back to a free list
 * when their entry dies, so a sequential read keeps reusing warm pages: a
 * fresh 4 MiB mapping costs a page fault and a page clear per 4 KiB,
 * which at GB/s was a fifth of rpfs's CPU time.  In-use plus pooled bytes
 * stay within the global cap; smaller buffers (random reads) use malloc.
 * g_bytes counts buffers in use by capacity.
 */
#define BIG_MIN (256 * KiB)

static atomic_size_t g_bytes;
static atomic_size_t g_cap = 128 * MiB;
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static char *pool[64];
static int npool;
static size_t pool_size; /* capacity of pooled buffers: the chunk size */

void ra_global_set_cap(size_t bytes)
{
	atomic_store(&g_cap, bytes);
}

size_t ra_global_bytes(void)
{
	return atomic_load(&g_bytes);
}

/* Capacity of the buffer that holds size bytes. */
size_t ra_buf_cap(size_t size)
{
	return size >= BIG_MIN && size <= pool_size ? pool_size : size;
}

char *ra_buf_get(size_t size, size_t *cap)
{
	char *b = NULL;

	pthread_mutex_lock(&pool_mu);
	*cap = ra_buf_cap(size);
	if (*cap == pool_size && npool > 0)
		b = pool[--npool];
	pthread_mutex_unlock(&pool_mu);
	if (!b && *cap >= BIG_MIN) {
		b = mmap(NULL, *cap, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (b == MAP_FAILED)
			b = NULL;
	} else if (!b) {
		b = malloc(*cap);
	}
	if (b)
		atomic_fetch_add(&g_bytes, *cap);
	return b;
}

void ra_buf_put(char *b, size_t cap)
{
	size_t used;

	if (!b)
		return;
	used = atomic_fetch_sub(&g_bytes, cap) - cap;
	if (cap < BIG_MIN) {
		free(b);
		return;
	}
	pthread_mutex_lock(&pool_mu);
	if (cap == pool_size && npool < (int)(sizeof(pool) / sizeof(pool[0])) &&
	    used + (size_t)(npool + 1) * pool_size <= atomic_load(&g_cap)) {
		pool[npool++] = b;
		b = NULL;
	}
	pthread_mutex_unlock(&pool_mu);
	if (b)
		munmap(b, cap);
}

/* The first cache fixes the pooled size (all disks share chunk_size). */
void ra_pool_init(size_t chunk)
{
	pthread_mutex_lock(&pool_mu);
	if (!pool_size)
		pool_size = chunk;
	pthread_mutex_unlock(&pool_mu);
}

/* ---- policy ---- */

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) / a * a;
}

void ra_config_defaults(struct ra_config *cfg)
{
	if (!cfg->chunk)
		cfg->chunk = 4 * MiB;
	cfg->chunk = align_up(cfg->chunk, 512);
	if (!cfg->window_max)
		cfg->window_max = 64 * MiB;
	if (cfg->window_max < cfg->chunk)
		cfg->window_max = cfg->chunk;
	if (!cfg->window_min)
		cfg->window_min = 2 * cfg->chunk;
	if (cfg->window_min > cfg->window_max)
		cfg->window_min = cfg->window_max;
	if (!cfg->unit)
		cfg->unit = 4 * KiB;
	cfg->unit = align_up(cfg->unit, 512);
	if (cfg->parallel <= 0)
		cfg->parallel = 16;
}

int ra_parallel_now(const struct ra_config *cfg, long long wait_us)
{
	if (cfg->near_parallel > 0 && cfg->near_parallel < cfg->parallel &&
	    wait_us >= 0 && wait_us < cfg->near_wait_us)
		return cfg->near_parallel;
	return cfg->parallel;
}

size_t ra_window_next(size_t cur, const struct ra_config *cfg)
{
	if (cur < cfg->window_min)
		return cfg->window_min;
	if (cur >= cfg->window_max / 2)
		return cfg->window_max;
	return cur * 2;
}

struct ra_stream *ra_stream_update(struct ra_streams *st,
				   const struct ra_config *cfg, long long off,
				   size_t size, bool *sequential)
{
	long long slack =
	    cfg->chunk > (size_t)MiB ? (long long)cfg->chunk : MiB;
	long long end = off + (long long)size;
	struct ra_stream *s = NULL, *lru = &st->s[0];
	long long chunk;

	for (int i = 0; i < RA_STREAMS; i++) {
		struct ra_stream *c = &st->s[i];

		if (c->used && off >= c->next - slack &&
		    off <= c->next + slack) {
			s = c;
			break;
		}
		if (c->used < lru->used)
			lru = c;
	}
	if (!s) {
		s = lru;
		s->next = end;
		s->window = cfg->window_min;
		s->hits = 0;
		s->chunk_at = off / (long long)cfg->chunk;
		s->used = ++st->tick;
		*sequential = false;
		return s;
	}
	/* A read that starts where the stream ended continues it; one that
	 * merely lands near it does so only once the stream has been
	 * continued before.  Random reads over a large disk land within the
	 * slack of some stream now and then (4 streams of +-4 MiB cover
	 * 0.8 % of 4 GiB), and each such chance would otherwise fetch a
	 * chunk and a read-ahead window the reader never asked for. */
	*sequential = off == s->next || s->hits >= 1;
	s->hits++;
	if (end > s->next)
		s->next = end;
	s->used = ++st->tick;
	chunk = (end - 1) / (long long)cfg->chunk;
	if (chunk > s->chunk_at) {
		s->chunk_at = chunk;
		s->window = ra_window_next(s->window, cfg);
	}
	return s;
}

void ra_random_span(const struct ra_config *cfg, long long off, size_t size,
		    long long len, long long *start, long long *end)
{
	long long u = (long long)cfg->unit;
	long long s = off / u * u;
	long long e = (off + (long long)size + u - 1) / u * u;

	if (e > len)
		e = len;
	if (s > e)
		s = e;
	*start = s;
	*end = e;
}

size_t ra_global_cap(void)
{
	return atomic_load(&g_cap);
}
