/*
 * test_net_blob_engine.c -- the blob engine (net/blob.c, net/blob_xfer.c)
 * against loopback.h's server (HTTPS): its retries obey the one retry
 * policy of http.h, a lowered budget (http_set_retry_budget, at unmount)
 * included, and a garbled page list is asked for again, a bounded number
 * of times.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "blob_int.h" /* BLOB_PL_GARBLED_TRIES */
#include "check.h"
#include "http.h"
#include "loopback.h"
#include "secret.h"

#define BLOB_LEN (1024 * 1024)

static char tmpdir[] = "/tmp/rpfs-blob-XXXXXX";
static char cafile[256];
static struct blob_engine *eng;
static struct blob_source *src;

/* ---- a lowered retry budget reaches the engine ---- */

/* A service that takes the request and never answers. */
static void h_hang(const struct req *rq, struct reply *rp)
{
	(void)rq;
	rp->hang = true;
}

/* After http_set_retry_budget, one blob attempt that hangs is cut at the
 * lowered budget: the stall timeout alone would hold it 30 s.  Both ways
 * a read runs: on an engine worker and on the caller's thread. */
static void test_a_hung_blob_read_is_cut_at_the_lowered_budget(void)
{
	static char buf[4096];
	struct blob_result res;
	double t0;
	int rc;

	use(h_hang);
	http_set_retry_budget(1000);
	t0 = now_s();
	rc = blob_read(eng, src, 0, sizeof(buf), BLOB_LEN, buf, &res);
	CHECK(now_s() - t0 < 3.0);
	CHECK_INT(rc, -EIO);
	CHECK_INT(res.status, BLOB_FAILED);
	CHECK(requests() >= 1);

	t0 = now_s();
	rc = blob_read_direct(eng, src, 0, sizeof(buf), BLOB_LEN, buf, &res);
	CHECK(now_s() - t0 < 3.0);
	CHECK_INT(rc, -EIO);
	CHECK_INT(res.status, BLOB_FAILED);
	http_set_retry_budget(0);
}

static void h_503(const struct req *rq, struct reply *rp)
{
	(void)rq;
	add_header(rp, "Retry-After", "1");
	reply_xml(rp, 503,
		  "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>"
		  "ServerBusy</Code><Message>busy</Message></Error>");
}

/* A service that answers 503 forever: the engine's own budget (20 s,
 * 6 retries) would wait out six Retry-After: 1; the lowered one of
 * 1.5 s allows one. */
static void test_blob_retries_stop_at_the_lowered_budget(void)
{
	static char buf[4096];
	struct blob_result res;
	double t0;
	int rc;

	use(h_503);
	http_set_retry_budget(1500);
	t0 = now_s();
	rc = blob_read(eng, src, 0, sizeof(buf), BLOB_LEN, buf, &res);
	http_set_retry_budget(0);
	CHECK(now_s() - t0 < 2.5);
	CHECK_INT(rc, -EIO);
	CHECK_INT(res.status, BLOB_FAILED);
	CHECK_INT(res.err.http_status, 503);
	CHECK_STR(res.err.code, "ServerBusy");
	CHECK(requests() >= 1 && requests() <= 2);
}

/* ---- garbled page lists ---- */

static const char PL_GOOD[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<PageList>"
    "<PageRange><Start>0</Start><End>1023</End></PageRange>"
    "<PageRange><Start>4096</Start><End>8191</End></PageRange>"
    "</PageList>";
/* Cut off mid-element: every byte parses, the end does not. */
static const char PL_CUT[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<PageList>"
    "<PageRange><Start>0</Start><End>1023</End></PageRange>"
    "<PageRange><Start>4096</Sta";
/* Not XML from the first element on: the parse fails while it arrives. */
static const char PL_NOISE[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<PageList><<\x01>>";

static int pl_calls; /* page-list requests the server saw */
static const char *pl_bad;

static void h_pl_garbled_once(const struct req *rq, struct reply *rp)
{
	if (!strstr(rq->target, "comp=pagelist")) {
		rp->status = 400;
		return;
	}
	reply_xml(rp, 200, ++pl_calls == 1 ? PL_CUT : PL_GOOD);
}

static void h_pl_garbled_always(const struct req *rq, struct reply *rp)
{
	if (!strstr(rq->target, "comp=pagelist")) {
		rp->status = 400;
		return;
	}
	pl_calls++;
	reply_xml(rp, 200, pl_bad);
}

/* The ranges handed over, repeats dropped (a retry hands ranges again). */
struct ranges {
	int n;
	long long s[8], e[8];
};

static int collect(void *arg, long long s, long long e)
{
	struct ranges *r = arg;

	for (int i = 0; i < r->n; i++)
		if (r->s[i] == s && r->e[i] == e)
			return 0;
	if (r->n == 8)
		return -ENOSPC;
	r->s[r->n] = s;
	r->e[r->n++] = e;
	return 0;
}

static void test_a_page_list_garbled_once_is_asked_again(void)
{
	struct ranges got = {0};
	struct blob_result res;

	pl_calls = 0;
	use(h_pl_garbled_once);
	CHECK_INT(blob_page_ranges(eng, src, 0, BLOB_LEN, collect, &got, &res),
		  0);
	CHECK_INT(res.status, BLOB_OK);
	CHECK_INT(pl_calls, 2);
	CHECK_INT(requests(), 2);
	CHECK_INT(got.n, 2);
	CHECK_INT(got.s[0], 0);
	CHECK_INT(got.e[0], 1024);
	CHECK_INT(got.s[1], 4096);
	CHECK_INT(got.e[1], 8192);
}

/* Both ways a page list can be garbled (caught at its end, or while it
 * arrives) cost BLOB_PL_GARBLED_TRIES requests, not the retry budget. */
static void test_a_page_list_always_garbled_fails_after_a_few_tries(void)
{
	const char *bad[] = {PL_CUT, PL_NOISE};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ranges got = {0};
		struct blob_result res;

		pl_calls = 0;
		pl_bad = bad[i];
		use(h_pl_garbled_always);
		CHECK_INT(blob_page_ranges(eng, src, 0, BLOB_LEN, collect, &got,
					   &res),
			  -EIO);
		CHECK_INT(res.status, BLOB_FAILED);
		CHECK_STR(res.err.code, "BadResponse");
		CHECK(strstr(res.err.message, "malformed page list") != NULL);
		CHECK_INT(pl_calls, BLOB_PL_GARBLED_TRIES);
		CHECK_INT(requests(), BLOB_PL_GARBLED_TRIES);
	}
}

/* A range answer after delay_ms: how far the server is. */
static int delay_ms;

static void h_range(const struct req *rq, struct reply *rp)
{
	char cr[64];

	(void)rq;
	rp->status = 206;
	snprintf(cr, sizeof(cr), "bytes 0-4095/%d", BLOB_LEN);
	add_header(rp, "Content-Range", cr);
	rp->body = calloc(1, 4096);
	rp->body_len = rp->body ? 4096 : 0;
	rp->content_type = "application/octet-stream";
	rp->delay_ms = delay_ms;
}

/* Throttled once (503, Retry-After: 1), then answered at once: the wait
 * is the answering attempt's, not the second spent backing off, so a
 * retry never makes a near server look far. */
static int range_calls;

static void h_503_then_range(const struct req *rq, struct reply *rp)
{
	if (range_calls++ == 0)
		h_503(rq, rp);
	else
		h_range(rq, rp);
}

static void test_a_retried_read_reports_the_answering_attempts_wait(void)
{
	static char buf[4096];
	struct blob_result res;

	range_calls = 0;
	delay_ms = 0;
	use(h_503_then_range);
	CHECK_INT(blob_read(eng, src, 0, sizeof(buf), BLOB_LEN, buf, &res), 0);
	CHECK_INT(res.status, BLOB_OK);
	CHECK_INT(range_calls, 2);
	CHECK(res.wait_us > 0 && res.wait_us < 500000);
}

/* A read reports the server's wait (read-ahead sizes its ranges in
 * flight by it, fs/readahead.h): an answer held back 200 ms reports about
 * 200 ms more than one sent at once. */
static void test_a_read_reports_the_servers_wait(void)
{
	static char buf[4096];
	struct blob_result quick, slow;

	use(h_range);
	delay_ms = 0;
	CHECK_INT(blob_read(eng, src, 0, sizeof(buf), BLOB_LEN, buf, &quick),
		  0);
	CHECK_INT(quick.status, BLOB_OK);
	CHECK(quick.wait_us > 0 && quick.wait_us < 20000);
	delay_ms = 200;
	CHECK_INT(blob_read(eng, src, 0, sizeof(buf), BLOB_LEN, buf, &slow), 0);
	CHECK_INT(slow.status, BLOB_OK);
	CHECK(slow.wait_us - quick.wait_us >= 150000);
	CHECK(slow.wait_us < 2000000);
	delay_ms = 0;
}

int main(void)
{
	struct http_config hc = {.max_retries = 6,
				 .max_retry_total_ms = 20000,
				 .connect_timeout_ms = 2000,
				 .cafile = cafile};
	struct secret sas = {0};
	char url[128], cmd[128];

	if (!mkdtemp(tmpdir) ||
	    server_start_tls(tmpdir, cafile, sizeof(cafile)) ||
	    http_global_init(&hc))
		return 2;
	snprintf(url, sizeof(url), "%s/c/disk.vhd?sv=2021-08-06&sig=x", base);
	eng = blob_engine_new(NULL); /* budgets from hc, 30 s stall */
	src = blob_source_new();
	if (!eng || !src || secret_set(&sas, url) ||
	    blob_source_set_sas(src, &sas))
		return 2;

	test_a_hung_blob_read_is_cut_at_the_lowered_budget();
	test_blob_retries_stop_at_the_lowered_budget();
	test_a_page_list_garbled_once_is_asked_again();
	test_a_page_list_always_garbled_fails_after_a_few_tries();
	test_a_read_reports_the_servers_wait();
	test_a_retried_read_reports_the_answering_attempts_wait();

	blob_source_unref(src);
	blob_engine_free(eng);
	secret_clear(&sas);
	http_global_cleanup();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	return CHECK_DONE();
}
