/*
 * test_fs_readahead.c -- the arithmetic behind disk reads: the sparse map
 * (merging, caps, lseek SEEK_DATA/SEEK_HOLE semantics, what counts as
 * data while the map is partial), the read-ahead policy (what is
 * sequential, how the window grows, what a random read fetches), a
 * cache whose map says "hole" serving zeros without a single request, and
 * a handle that has just given up not asking a dead server again.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "blob.h"
#include "check.h"
#include "http.h"
#include "pagemap.h"
#include "readahead.h"
#include "secret.h"

#define KiB 1024LL
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)

static void test_map_merges_adjacent_and_repeated_ranges(void)
{
	struct pagemap pm;

	pagemap_init(&pm, 10 * MiB, 0);
	CHECK_INT(pagemap_add(&pm, 0, 512), 0);
	CHECK_INT(pagemap_add(&pm, 512, 4096), 0); /* adjacent: merges */
	CHECK_INT(pm.n, 1);
	CHECK_INT(pagemap_add(&pm, 1 * MiB, 2 * MiB), 0);
	CHECK_INT(pagemap_add(&pm, 0, 512), 0); /* a retried page again */
	CHECK_INT(pagemap_add(&pm, 1 * MiB + 512, 1 * MiB + 1024), 0);
	CHECK_INT(pm.n, 2);
	CHECK_INT(pagemap_add(&pm, 3 * MiB, 4 * MiB), 0);
	CHECK_INT(pagemap_add(&pm, 2 * MiB - 512, 3 * MiB + 512), 0);
	CHECK_INT(pm.n, 2); /* bridged two extents */
	CHECK_INT(pm.ext[1].start, 1 * MiB);
	CHECK_INT(pm.ext[1].end, 4 * MiB);
	CHECK_INT(pagemap_add(&pm, 8 * MiB, 20 * MiB), 0); /* clipped */
	CHECK_INT(pm.ext[2].end, 10 * MiB);
	CHECK_INT(pagemap_add(&pm, 5 * MiB, 5 * MiB), 0); /* empty */
	CHECK_INT(pm.n, 3);
	pagemap_free(&pm);
}

static void test_map_cap_turns_gaps_into_data(void)
{
	struct pagemap pm;
	int i;

	pagemap_init(&pm, 1 * GiB, 4);
	for (i = 0; i < 8; i++)
		CHECK_INT(pagemap_add(&pm, i * MiB, i * MiB + 4096), 0);
	pagemap_set_known(&pm, 1 * GiB);
	CHECK_INT(pm.n, 4);
	CHECK(pm.capped);
	/* nothing that was data became a hole */
	for (i = 0; i < 8; i++) {
		long long r;

		CHECK(pagemap_is_data(&pm, i * MiB, &r));
		CHECK(pagemap_is_data(&pm, i * MiB + 4095, &r));
	}
	CHECK(pagemap_allocated(&pm) >= 8 * 4096);
	pagemap_free(&pm);
}

/* The sparse image of the emulator, in small: data, holes, footer. */
static void sparse_map(struct pagemap *pm)
{
	pagemap_init(pm, 16 * MiB + 512, 0);
	pagemap_add(pm, 0, 1 * MiB);
	pagemap_add(pm, 4 * MiB, 4 * MiB + 64 * KiB);
	pagemap_add(pm, 15 * MiB, 16 * MiB + 512); /* last MiB + footer */
	pagemap_set_known(pm, 16 * MiB + 512);
}

static void test_seek_data_and_hole_like_ext4(void)
{
	struct pagemap pm;
	long long len = 16 * MiB + 512;

	sparse_map(&pm);
	CHECK_INT(pagemap_seek_data(&pm, 0), 0);
	CHECK_INT(pagemap_seek_hole(&pm, 0), 1 * MiB);
	CHECK_INT(pagemap_seek_data(&pm, 1 * MiB), 4 * MiB);
	CHECK_INT(pagemap_seek_hole(&pm, 1 * MiB), 1 * MiB);
	CHECK_INT(pagemap_seek_data(&pm, 4 * MiB + 100), 4 * MiB + 100);
	CHECK_INT(pagemap_seek_hole(&pm, 4 * MiB + 100), 4 * MiB + 64 * KiB);
	CHECK_INT(pagemap_seek_data(&pm, 5 * MiB), 15 * MiB);
	/* data runs to EOF: the hole is at the end of the file */
	CHECK_INT(pagemap_seek_hole(&pm, 15 * MiB), len);
	CHECK_INT(pagemap_seek_hole(&pm, len - 1), len);
	CHECK_INT(pagemap_seek_data(&pm, len - 1), len - 1);
	/* at or past EOF: ENXIO for both */
	CHECK_INT(pagemap_seek_data(&pm, len), -ENXIO);
	CHECK_INT(pagemap_seek_hole(&pm, len), -ENXIO);
	CHECK_INT(pagemap_seek_data(&pm, len + 4096), -ENXIO);
	CHECK_INT(pagemap_seek_data(&pm, -1), -EINVAL);
	CHECK_INT(pagemap_allocated(&pm), 1 * MiB + 64 * KiB + 1 * MiB + 512);
	CHECK_INT(pagemap_data_in(&pm, 512 * KiB, 4 * MiB + 4 * KiB),
		  512 * KiB + 4 * KiB);
	pagemap_free(&pm);

	/* trailing hole before the end: SEEK_DATA past the data is ENXIO */
	pagemap_init(&pm, 8 * MiB, 0);
	pagemap_add(&pm, 0, 4096);
	pagemap_set_known(&pm, 8 * MiB);
	CHECK_INT(pagemap_seek_data(&pm, 4096), -ENXIO);
	CHECK_INT(pagemap_seek_hole(&pm, 4096), 4096);
	pagemap_free(&pm);
}

static void test_partial_map_counts_the_unknown_as_data(void)
{
	struct pagemap pm;
	long long r;

	pagemap_init(&pm, 4 * GiB, 0);
	/* nothing known yet: all data, one run to the end */
	CHECK(pagemap_is_data(&pm, 123, &r));
	CHECK_INT(r, 4 * GiB);
	CHECK_INT(pagemap_seek_hole(&pm, 0), 4 * GiB);
	CHECK_INT(pagemap_allocated(&pm), 4 * GiB);
	/* first window fetched: a data run ending at the window edge goes on */
	pagemap_add(&pm, 0, 1 * MiB);
	pagemap_add(&pm, 1 * GiB - 1 * MiB, 1 * GiB);
	pagemap_set_known(&pm, 1 * GiB);
	CHECK(!pagemap_is_data(&pm, 2 * MiB, &r));
	CHECK_INT(r, 1 * GiB - 1 * MiB);
	CHECK(pagemap_is_data(&pm, 1 * GiB - 4096, &r));
	CHECK_INT(r, 4 * GiB);
	CHECK_INT(pagemap_allocated(&pm), 2 * MiB + 3 * GiB);
	/* a hole ending at the known edge stops there */
	pagemap_free(&pm);
	pagemap_init(&pm, 4 * GiB, 0);
	pagemap_add(&pm, 0, 1 * MiB);
	pagemap_set_known(&pm, 1 * GiB);
	CHECK(!pagemap_is_data(&pm, 2 * MiB, &r));
	CHECK_INT(r, 1 * GiB);
	CHECK_INT(pagemap_seek_data(&pm, 2 * MiB), 1 * GiB);
	pagemap_free(&pm);
}

static struct ra_config cfg_default(void)
{
	struct ra_config c = {0};

	ra_config_defaults(&c);
	return c;
}

static void test_defaults_and_alignment(void)
{
	struct ra_config c = cfg_default();

	CHECK_INT(c.chunk, 4 * MiB);
	CHECK_INT(c.window_min, 8 * MiB);
	CHECK_INT(c.window_max, 64 * MiB);
	CHECK_INT(c.unit, 4 * KiB);
	CHECK_INT(c.parallel, 16);
	c = (struct ra_config){.chunk = 1000000, .window_max = 100};
	ra_config_defaults(&c);
	CHECK_INT(c.chunk % 512, 0);
	CHECK(c.window_max >= c.chunk);
	CHECK(c.window_min <= c.window_max);
}

static void test_window_doubles_up_to_the_max(void)
{
	struct ra_config c = cfg_default();
	size_t w = 0;
	size_t seen[8];

	for (int i = 0; i < 8; i++)
		seen[i] = w = ra_window_next(w, &c);
	CHECK_INT(seen[0], 8 * MiB);
	CHECK_INT(seen[1], 16 * MiB);
	CHECK_INT(seen[2], 32 * MiB);
	CHECK_INT(seen[3], 64 * MiB);
	CHECK_INT(seen[7], 64 * MiB);
}

static void test_sequential_reader_is_recognised_and_grows(void)
{
	struct ra_config c = cfg_default();
	struct ra_streams st = {0};
	struct ra_stream *s = NULL;
	bool seq;
	long long off;

	s = ra_stream_update(&st, &c, 0, 128 * KiB, &seq);
	CHECK(!seq); /* one read is not a pattern yet */
	for (off = 128 * KiB; off < 32 * MiB; off += 128 * KiB) {
		s = ra_stream_update(&st, &c, off, 128 * KiB, &seq);
		if (!seq)
			break;
	}
	CHECK(seq);
	CHECK_INT(s->next, 32 * MiB);
	CHECK_INT(s->window, 64 * MiB); /* crossed 7 chunks: grown to max */
	/* FUSE threads deliver readahead slightly out of order */
	s = ra_stream_update(&st, &c, 32 * MiB + 256 * KiB, 128 * KiB, &seq);
	CHECK(seq);
	s = ra_stream_update(&st, &c, 32 * MiB + 128 * KiB, 128 * KiB, &seq);
	CHECK(seq);
	CHECK_INT(s->next, 32 * MiB + 384 * KiB);
}

static void test_random_reads_are_not_sequential(void)
{
	struct ra_config c = cfg_default();
	struct ra_streams st = {0};
	unsigned int seed = 7;
	int seqs = 0;
	bool seq;

	for (int i = 0; i < 2000; i++) {
		long long off = (long long)(rand_r(&seed) % (1 << 18)) * 4096;

		ra_stream_update(&st, &c, off, 4096, &seq);
		seqs += seq;
	}
	/* 4 streams of +-4 MiB cover 3 % of 1 GiB: a read lands near one
	 * now and then, but two chance landings on one stream are rare */
	CHECK(seqs <= 2);
}

static void test_a_read_near_a_stream_is_not_yet_sequential(void)
{
	struct ra_config c = cfg_default();
	struct ra_streams st = {0};
	bool seq;

	ra_stream_update(&st, &c, 100 * MiB, 4096, &seq);
	CHECK(!seq);
	/* 1 MiB past the last read's end: within the slack, not contiguous */
	ra_stream_update(&st, &c, 101 * MiB + 4096, 4096, &seq);
	CHECK(!seq);
	/* a second landing near it makes a pattern */
	ra_stream_update(&st, &c, 101 * MiB + 65536, 4096, &seq);
	CHECK(seq);
	/* a read where a stream ended continues it at once */
	ra_stream_update(&st, &c, 700 * MiB, 4096, &seq);
	ra_stream_update(&st, &c, 700 * MiB + 4096, 4096, &seq);
	CHECK(seq);
}

static void test_two_readers_keep_their_streams(void)
{
	struct ra_config c = cfg_default();
	struct ra_streams st = {0};
	bool seq;
	int seqs = 0;

	for (long long i = 0; i < 64; i++) {
		ra_stream_update(&st, &c, i * 128 * KiB, 128 * KiB, &seq);
		seqs += seq;
		ra_stream_update(&st, &c, 512 * MiB + i * 128 * KiB, 128 * KiB,
				 &seq);
		seqs += seq;
	}
	CHECK_INT(seqs, 126);
}

/* A near server gets a few ranges in flight, a far or unknown one all of
 * them; -o parallel (near_parallel 0) is never adapted. */
static void test_ranges_in_flight_follow_the_servers_distance(void)
{
	struct ra_config cfg = {.parallel = 16,
				.near_parallel = 4,
				.near_wait_us = RA_NEAR_WAIT_US};

	ra_config_defaults(&cfg);
	CHECK_INT(ra_parallel_now(&cfg, -1), 16);
	CHECK_INT(ra_parallel_now(&cfg, 300), 4);
	CHECK_INT(ra_parallel_now(&cfg, RA_NEAR_WAIT_US - 1), 4);
	CHECK_INT(ra_parallel_now(&cfg, RA_NEAR_WAIT_US), 16);
	CHECK_INT(ra_parallel_now(&cfg, 20000), 16);
	cfg.near_parallel = 0;
	CHECK_INT(ra_parallel_now(&cfg, 300), 16);
	cfg.parallel = 2; /* fewer than the near figure: kept */
	cfg.near_parallel = 4;
	CHECK_INT(ra_parallel_now(&cfg, 300), 2);
	cfg.parallel = 16; /* -o near_us=50000 */
	cfg.near_wait_us = 50000;
	CHECK_INT(ra_parallel_now(&cfg, 20000), 4);
	CHECK_INT(ra_parallel_now(&cfg, 50000), 16);
	cfg.near_wait_us = 0; /* -o near_us=0: never near */
	CHECK_INT(ra_parallel_now(&cfg, 0), 16);
}

static void test_random_read_fetches_a_small_aligned_span(void)
{
	struct ra_config c = cfg_default();
	long long s, e;

	/* a 4 KiB read fetches its page, not a chunk */
	ra_random_span(&c, 5 * MiB + 4096, 4096, 1 * GiB, &s, &e);
	CHECK_INT(s, 5 * MiB + 4096);
	CHECK_INT(e, 5 * MiB + 8192);
	/* unaligned and straddling a page boundary: both pages */
	ra_random_span(&c, 64 * KiB - 512, 1024, 1 * GiB, &s, &e);
	CHECK_INT(s, 60 * KiB);
	CHECK_INT(e, 68 * KiB);
	/* a larger unit widens the span to it */
	c.unit = 64 * KiB;
	ra_random_span(&c, 5 * MiB + 4096, 4096, 1 * GiB, &s, &e);
	CHECK_INT(s, 5 * MiB);
	CHECK_INT(e, 5 * MiB + 64 * KiB);
	c.unit = 4 * KiB;
	/* a 1 MiB FUSE read: its own size */
	ra_random_span(&c, 3 * MiB, 1 * MiB, 1 * GiB, &s, &e);
	CHECK_INT(e - s, 1 * MiB);
	/* the end of the blob (the footer) */
	ra_random_span(&c, 1 * GiB + 100, 100, 1 * GiB + 512, &s, &e);
	CHECK_INT(s, 1 * GiB);
	CHECK_INT(e, 1 * GiB + 512);
}

static void test_holes_read_as_zeros_without_a_request(void)
{
	struct ra_config c = cfg_default();
	/* no engine at all: any fetch attempt would crash the test */
	struct ra_cache *rc = ra_cache_new(&c, NULL, 64 * MiB + 512);
	struct ra_streams st = {0};
	struct ra_fault fault;
	struct ra_stats stats;
	char *buf = malloc(1 * MiB);
	ssize_t n;

	ra_map_known(rc, 64 * MiB + 512); /* known and empty: all holes */
	memset(buf, 0xAA, 1 * MiB);
	n = ra_read(rc, &st, NULL, buf, 1 * MiB, 8 * MiB, &fault, NULL);
	CHECK_INT(n, 1 * MiB);
	CHECK(buf[0] == 0 && buf[1 * MiB - 1] == 0);
	for (long long off = 0; off < 64 * MiB; off += 1 * MiB)
		CHECK_INT(
		    ra_read(rc, &st, NULL, buf, 1 * MiB, off, &fault, NULL),
		    1 * MiB);
	/* reads end at the blob's end, and past it read nothing */
	CHECK_INT(ra_read(rc, &st, NULL, buf, 1 * MiB, 64 * MiB, &fault, NULL),
		  512);
	CHECK_INT(ra_read(rc, &st, NULL, buf, 1 * MiB, 65 * MiB, &fault, NULL),
		  0);
	ra_cache_stats(rc, &stats);
	CHECK_INT(stats.fetches, 0);
	CHECK_INT(stats.prefetches, 0);
	CHECK_INT(stats.hole_bytes, 65 * MiB + 512);
	CHECK_INT(ra_seek(rc, 0, SEEK_DATA), -ENXIO);
	CHECK_INT(ra_seek(rc, 0, SEEK_HOLE), 0);
	CHECK_INT(ra_map_allocated(rc), 0);
	ra_cache_free(rc);
	free(buf);
}

/*
 * A server that is down: it accepts each connection and closes it at once,
 * counting them, so the test sees every request the cache sends.
 */
static atomic_int dead_conns;

static void *dead_server(void *arg)
{
	int ls = *(int *)arg;

	for (;;) {
		int fd = accept(ls, NULL, NULL);

		if (fd < 0)
			return NULL;
		atomic_fetch_add(&dead_conns, 1);
		close(fd);
	}
}

static void test_a_handle_that_gave_up_fails_at_once_for_a_while(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	struct http_config hc = {0};
	struct blob_engine_config ec = {.max_retry_total_ms = 1};
	struct ra_config c = cfg_default();
	struct ra_streams st = {0}, fresh = {0};
	struct ra_fault fault;
	struct secret sas = {0};
	struct blob_engine *eng;
	struct blob_source *src;
	struct ra_cache *rc;
	struct rp_err err;
	char url[128], buf[4096];
	pthread_t th;
	int ls, seen;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ls = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(ls >= 0);
	CHECK_INT(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_INT(listen(ls, 16), 0);
	CHECK_INT(getsockname(ls, (struct sockaddr *)&sa, &sl), 0);
	CHECK_INT(pthread_create(&th, NULL, dead_server, &ls), 0);
	snprintf(url, sizeof(url),
		 "https://127.0.0.1:%d/c/d.vhd?sv=2021-08-06&sig=x",
		 ntohs(sa.sin_port));
	CHECK_INT(http_global_init(&hc), 0);
	eng = blob_engine_new(&ec); /* a 1 ms budget: one attempt each */
	src = blob_source_new();
	CHECK(eng && src);
	CHECK_INT(secret_set(&sas, url), 0);
	CHECK_INT(blob_source_set_sas(src, &sas), 0);
	rc = ra_cache_new(&c, eng, 64 * MiB + 512);
	CHECK(rc != NULL);

	/* the first read asks, and fails with an error, not a hang */
	CHECK_INT(ra_read(rc, &st, src, buf, 4096, 8 * MiB, &fault, &err),
		  -EIO);
	seen = atomic_load(&dead_conns);
	CHECK(seen >= 1);
	/* the kernel's re-read of the same page, and the next read, fail
	 * at once with the same error: no new connection */
	CHECK_INT(ra_read(rc, &st, src, buf, 4096, 8 * MiB, &fault, &err),
		  -EIO);
	CHECK_INT(ra_read(rc, &st, src, buf, 4096, 9 * MiB, &fault, &err),
		  -EIO);
	CHECK_INT(atomic_load(&dead_conns), seen);
	CHECK(err.code[0] != 0);
	/* another handle (a new open) asks again */
	CHECK_INT(ra_read(rc, &fresh, src, buf, 4096, 8 * MiB, &fault, &err),
		  -EIO);
	CHECK(atomic_load(&dead_conns) > seen);

	ra_cache_free(rc);
	blob_source_unref(src);
	blob_engine_free(eng);
	secret_clear(&sas);
	shutdown(ls, SHUT_RDWR);
	close(ls);
	pthread_join(th, NULL);
	http_global_cleanup();
}

int main(void)
{
	test_map_merges_adjacent_and_repeated_ranges();
	test_map_cap_turns_gaps_into_data();
	test_seek_data_and_hole_like_ext4();
	test_partial_map_counts_the_unknown_as_data();
	test_defaults_and_alignment();
	test_window_doubles_up_to_the_max();
	test_sequential_reader_is_recognised_and_grows();
	test_random_reads_are_not_sequential();
	test_a_read_near_a_stream_is_not_yet_sequential();
	test_two_readers_keep_their_streams();
	test_ranges_in_flight_follow_the_servers_distance();
	test_random_read_fetches_a_small_aligned_span();
	test_holes_read_as_zeros_without_a_request();
	test_a_handle_that_gave_up_fails_at_once_for_a_while();
	return CHECK_DONE();
}
