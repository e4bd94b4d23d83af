/*
 * blob.h -- reading an Azure page blob (a disk restore point exported as a
 * fixed VHD) through its SAS URL: HEAD for the length, ranged GETs, and Get
 * Page Ranges for the sparse map.
 *
 * Who calls it: fs/disk.c and fs/readahead.c.  They hold the SAS only as a
 * struct secret inside a blob_source and never see a URL, a header or XML.
 *
 * Transfers run on an engine: worker threads, each driving a curl multi
 * handle, so many ranges are in flight on separate HTTP/1.1 connections at
 * once.  Transient failures (429, 500, 502, 503, 504, 408, dropped or
 * stalled connections, a malformed answer) are retried inside the engine
 * with backoff honouring Retry-After, within the http.h policy bounds
 * (http_set_retry_budget lowers them for the engine too); a
 * ranged GET cut off mid-body resumes where it stopped.  What the engine
 * cannot fix it reports as a blob_status so that the caller can act:
 * BLOB_EXPIRED (403/404: re-grant the SAS and retry) and BLOB_NEED_TOKEN
 * (401 with WWW-Authenticate: Bearer: the disk wants an Entra ID token for
 * https://disk.azure.com/).
 *
 * A ranged GET completes only with exactly the bytes asked for: status 206,
 * Content-Range "bytes START-END/TOTAL" equal to the request (and TOTAL
 * equal to the blob length the caller expects), and the full count.
 */
#ifndef RPFS_BLOB_H
#define RPFS_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "err.h"
#include "secret.h"

/* ---- pure helpers (net/blob_parse.c; no network) ---- */

/*
 * Parse a Content-Range value "bytes START-END/TOTAL" (TOTAL may be "*",
 * giving -1).  Strict: decimal digits only, START <= END, END < TOTAL.
 * Returns 0 or -EINVAL.
 */
int blob_parse_content_range(const char *value, long long *start,
			     long long *end, long long *total);

/*
 * The expiry (`se` query parameter, ISO 8601 UTC) of a SAS URL as a
 * time_t.  Returns 0, -ENOENT when the URL carries no `se`, or -EINVAL.
 */
int blob_sas_expiry(const char *sas_url, time_t *out);

/*
 * Streaming parser of a Get Page Ranges answer (<PageList>) built on expat.
 * Every <PageRange> is checked (Start/End decimal, 512-aligned, End >=
 * Start, ascending and non-overlapping), clipped to [win_start, win_end)
 * and handed to cb as a half-open [start, end).  <ClearRange> and unknown
 * elements are ignored; <NextMarker> is kept for the next request.  A
 * document type declaration, a root other than <PageList>, or any other
 * malformation fails with -EIO.  cb returns 0 or a negative errno that
 * stops the parse.
 */
typedef int (*blob_range_cb)(void *arg, long long start, long long end);
struct blob_pl_parser;
struct blob_pl_parser *blob_pl_parser_new(long long win_start,
					  long long win_end, blob_range_cb cb,
					  void *arg);
/* Feed bytes; final=true after the last. Returns 0 or -errno. */
int blob_pl_parser_feed(struct blob_pl_parser *p, const char *data, size_t len,
			bool final);
/* The <NextMarker> text, or NULL when absent or empty.  Owned by p. */
const char *blob_pl_parser_marker(const struct blob_pl_parser *p);
/* Why the parse failed (for logs), or "" */
const char *blob_pl_parser_error(const struct blob_pl_parser *p);
void blob_pl_parser_free(struct blob_pl_parser *p);

/*
 * Pull Code and Message out of a Storage error body
 * (<Error><Code>..</Code><Message>..</Message></Error>).  Either output
 * is left empty when missing.  Returns 0 or -EIO for malformed XML.
 */
int blob_parse_error_xml(const char *body, size_t len, char *code,
			 size_t codelen, char *msg, size_t msglen);

/* ---- where the bytes live ---- */

/*
 * A blob_source holds the SAS URL of one disk (and, for Entra-ID disks,
 * the bearer token sent with it).  Replacing either bumps its generation,
 * so a caller that saw BLOB_EXPIRED with generation g can tell whether
 * someone already renewed it.  Transfers read the source when they start
 * (and again on every retry), so a renewed SAS is used at once.
 * Refcounted; thread-safe.
 */
struct blob_source;

struct blob_source *blob_source_new(void);
void blob_source_ref(struct blob_source *s);
void blob_source_unref(struct blob_source *s);
/* Copy the SAS in; returns 0 or -ENOMEM / -EINVAL (not a URL). */
int blob_source_set_sas(struct blob_source *s, const struct secret *sas);
/* Send "Authorization: Bearer" + x-ms-version 2021-08-06 from now on;
 * NULL or empty token stops it. */
int blob_source_set_bearer(struct blob_source *s, const struct secret *token);
bool blob_source_has_bearer(struct blob_source *s);
unsigned blob_source_gen(struct blob_source *s);
/* Expiry of the current SAS from its `se`, or 0 when unknown. */
time_t blob_source_expiry(struct blob_source *s);

/* ---- the engine ---- */

struct blob_engine_config {
	int threads;		 /* worker threads (multi handles); default 1 */
	int max_connections;	 /* cap across all workers; default 64 */
	long stall_timeout_s;	 /* <1 KiB/s this long = stalled; default from
				    http_config, else 30 */
	int max_retries;	 /* default from http_config, else 6 */
	long max_retry_total_ms; /* default from http_config, else 60000 */
};

struct blob_engine;

/* Needs http_global_init done first (TLS policy).  NULL on failure. */
struct blob_engine *blob_engine_new(const struct blob_engine_config *cfg);
/* Cancels what is still queued or running (callbacks get -ECANCELED). */
void blob_engine_free(struct blob_engine *e);

enum blob_status {
	BLOB_OK = 0,
	BLOB_EXPIRED,	 /* 403 / 404: SAS expired or revoked: re-grant */
	BLOB_NEED_TOKEN, /* 401 + WWW-Authenticate: Bearer */
	BLOB_FAILED,	 /* anything else, after retries */
};

struct blob_result {
	enum blob_status status;
	int error;	   /* 0, or a negative errno */
	unsigned gen;	   /* source generation the last attempt used */
	bool had_bearer;   /* the last attempt sent a bearer token */
	long long wait_us; /* BLOB_OK: from request sent to first byte of the
			      answer (the server's round trip), else 0 */
	struct rp_err err;
};

typedef void (*blob_done_fn)(void *arg, const struct blob_result *res);

/*
 * Read [off, off+len) into buf asynchronously.  total: the blob length the
 * caller knows (checked against Content-Range), or -1.  done runs once, on
 * an engine thread (or on the caller's when cancelled), and must not block;
 * buf must stay valid until it ran.  owner tags the request for
 * blob_engine_cancel.  Returns 0, or -errno when it could not be queued
 * (done is then not called).
 */
int blob_read_async(struct blob_engine *e, struct blob_source *src,
		    long long off, size_t len, long long total, char *buf,
		    void *owner, blob_done_fn done, void *arg);

/* Abort every queued or running request tagged owner; their done gets
 * -ECANCELED (perhaps after this returns).  NULL owner: no-op. */
void blob_engine_cancel(struct blob_engine *e, void *owner);

/* Synchronous forms (they wait on the engine).  Return 0 or -errno, res
 * always filled. */
int blob_read(struct blob_engine *e, struct blob_source *src, long long off,
	      size_t len, long long total, char *buf, struct blob_result *res);

/*
 * Like blob_read, but on the calling thread with a curl handle (and its
 * keep-alive connection) kept per thread: no hand-off to the engine, so
 * the lowest latency for a small read someone waits for.  Same checks
 * and retries.
 */
int blob_read_direct(struct blob_engine *e, struct blob_source *src,
		     long long off, size_t len, long long total, char *buf,
		     struct blob_result *res);

/* Get Blob Properties: the blob's length. */
int blob_head(struct blob_engine *e, struct blob_source *src, long long *length,
	      struct blob_result *res);

/*
 * Get Page Ranges of [start, end) (x-ms-range, 512-aligned; end may be the
 * blob length), following NextMarker, handing each data range to cb in
 * ascending order.  On a retried request ranges may be handed again; cb
 * must accept ranges it has already seen (union semantics).
 */
int blob_page_ranges(struct blob_engine *e, struct blob_source *src,
		     long long start, long long end, blob_range_cb cb,
		     void *arg, struct blob_result *res);

/* Counters for tests and the benchmark. */
struct blob_stats {
	unsigned long long requests, retries, bytes;
};
void blob_engine_stats(struct blob_engine *e, struct blob_stats *out);

#endif
