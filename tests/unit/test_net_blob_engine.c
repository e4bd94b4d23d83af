/*
 * test_net_blob_engine.c -- the blob engine (net/blob.c, net/blob_xfer.c)
 * against loopback.h's server: its retries obey the one retry policy of
 * http.h, a lowered budget (http_set_retry_budget, at unmount) included.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
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

	blob_source_unref(src);
	blob_engine_free(eng);
	secret_clear(&sas);
	http_global_cleanup();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	return CHECK_DONE();
}
