/*
 * blob_int.h -- what the files of the blob module share and nobody else
 * sees: the source, one transfer (struct blob_xfer) and the engine.
 *
 * net/blob_source.c  the SAS and token of a disk (struct blob_source)
 * net/blob_xfer.c    one request: URL and headers, curl callbacks, the
 *                    checks of status and Content-Range, retry decisions
 * net/blob.c         the engine (workers on curl multi handles), sync and
 *                    direct (caller's thread) forms
 * net/blob_parse.c   pure parsers (Content-Range, `se`, XML)
 */
#ifndef RPFS_BLOB_INT_H
#define RPFS_BLOB_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <curl/curl.h>

#include "blob.h"

#define BLOB_XMS_VERSION "2021-08-06"
#define BLOB_ERRBODY_MAX 4096
#define BLOB_PL_GARBLED_TRIES 3 /* page-list answers that fail to parse */

struct blob_source {
	pthread_mutex_t mu;
	atomic_int refs;
	struct secret sas;
	struct secret bearer;
	unsigned gen;
	time_t expiry;
};

enum blob_xfer_kind { BLOB_X_GET, BLOB_X_HEAD, BLOB_X_PAGELIST };

struct blob_worker;

struct blob_xfer {
	struct blob_xfer *next, *prev; /* queue or active list of w */
	struct blob_worker *w;
	struct blob_engine *e;
	bool direct; /* runs on the caller's thread with its own handle */
	enum blob_xfer_kind kind;
	struct blob_source *src; /* a reference */
	void *owner;
	blob_done_fn done;
	void *arg;
	bool cancelled;

	/* what to fetch */
	long long off, len, total; /* GET: [off, off+len) of a blob of total */
	char *buf;
	long long got; /* GET: bytes already in buf (survives retries) */
	long long pl_start, pl_end;
	char *marker; /* PAGELIST: continuation from the previous page */
	blob_range_cb cb;
	void *cb_arg;

	/* retry bookkeeping */
	int attempt;
	int pl_garbled; /* PAGELIST answers that did not parse */
	long long first_ms, not_before_ms;

	/* one attempt */
	CURL *easy;
	struct curl_slist *hdrs;
	char *url;
	long long req_start;
	bool checked;	  /* status and Content-Range looked at */
	bool error_body;  /* collecting an error body, not data */
	int abort_err;	  /* we stopped the transfer: why */
	bool abort_final; /* and it is not worth retrying */
	char content_range[96];
	char err_code[96];
	bool www_bearer;
	long retry_after_ms;
	long long content_length;
	char *errbody;
	size_t errbody_len;
	struct blob_pl_parser *pp;
	unsigned gen;
	bool had_bearer;

	/* results */
	struct blob_result res;
	long long head_len;
	char *next_marker;
};

struct blob_worker {
	struct blob_engine *e;
	pthread_t th;
	pthread_mutex_t mu;
	CURLM *multi;
	struct blob_xfer *queue;  /* pending, FIFO through prev/next */
	struct blob_xfer *active; /* running in multi */
	atomic_int load;
	bool stop;
};

struct blob_engine {
	struct blob_worker *w;
	int nw;
	CURLSH *share;
	pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
	atomic_int running;
	int max_conns;
	long stall_s;
	int max_retries;
	long max_retry_total_ms;
	atomic_ullong n_requests, n_retries, n_bytes;
};

/* Drop what one attempt allocated (secrets wiped); keeps the transfer. */
void blob_xfer_cleanup(struct blob_xfer *x);
void blob_xfer_free(struct blob_xfer *x);
/* Prepare one attempt of x on handle c (new, or reused without reset). */
int blob_xfer_setup(struct blob_engine *e, struct blob_xfer *x, CURL *c);
/* After an attempt: 1 = finished (x->res filled), 0 = retry after
 * *delay_ms. */
int blob_xfer_judge(struct blob_xfer *x, CURLcode cc, long st, long *delay_ms);

#endif
