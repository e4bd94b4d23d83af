/*
 * blob.c -- the blob engine: HEAD, ranged GET and Get Page Ranges on a
 * disk's SAS URL, many at once, with retries.
 *
 * Shape: an engine owns W worker threads; each owns a curl multi handle, a
 * queue of pending transfers (some waiting out a backoff) and the list of
 * transfers it is running.  blob_*_async puts a transfer on the least
 * loaded worker's queue and wakes it (curl_multi_wakeup); the worker starts
 * what is due, drives curl, and on completion either re-queues the transfer
 * with a backoff (transient failure) or calls its done callback.  Sync
 * calls are async calls plus a condition variable.  Every transfer uses
 * HTTP/1.1, so ranges in flight run on separate connections; the multi
 * handle keeps them alive between requests, and a share handle lets all
 * workers reuse TLS sessions.
 *
 * Ownership and locks: a transfer (struct xfer) belongs to the worker
 * whose queue or multi handle holds it; w->mu guards the queue, the active
 * list and the cancelled flags, nothing else.  Response state is touched
 * only by the worker thread.  A blob_source has its own mutex around the
 * SAS, the token and the generation; a transfer copies what it needs when
 * it starts (URL and Authorization header, wiped when done).
 *
 * Correctness of data: a GET writes into the caller's buffer only after
 * the status (206) and Content-Range (exactly the range asked for, total
 * equal to the blob length) were checked, never past the requested length,
 * and completes only with the full count.  After a cut connection it
 * resumes at the first missing byte.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "blob.h"
#include "http.h"
#include "log.h"

#define BLOB_XMS_VERSION "2021-08-06"
#define BLOB_ERRBODY_MAX 4096

/* ---- sources ---- */

struct blob_source {
	pthread_mutex_t mu;
	atomic_int refs;
	struct secret sas;
	struct secret bearer;
	unsigned gen;
	time_t expiry;
};

struct blob_source *blob_source_new(void)
{
	struct blob_source *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	pthread_mutex_init(&s->mu, NULL);
	atomic_init(&s->refs, 1);
	s->gen = 1;
	return s;
}

void blob_source_ref(struct blob_source *s)
{
	atomic_fetch_add(&s->refs, 1);
}

void blob_source_unref(struct blob_source *s)
{
	if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	secret_clear(&s->sas);
	secret_clear(&s->bearer);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

int blob_source_set_sas(struct blob_source *s, const struct secret *sas)
{
	const char *v = secret_value(sas);
	time_t exp = 0;
	int rc;

	if (!v || strncasecmp(v, "https://", 8) != 0)
		return -EINVAL;
	if (blob_sas_expiry(v, &exp))
		exp = 0;
	pthread_mutex_lock(&s->mu);
	rc = secret_set(&s->sas, v);
	if (!rc) {
		s->gen++;
		s->expiry = exp;
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int blob_source_set_bearer(struct blob_source *s, const struct secret *token)
{
	int rc;

	pthread_mutex_lock(&s->mu);
	rc = secret_set(&s->bearer, token ? secret_value(token) : NULL);
	s->gen++;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

bool blob_source_has_bearer(struct blob_source *s)
{
	bool b;

	pthread_mutex_lock(&s->mu);
	b = !secret_empty(&s->bearer);
	pthread_mutex_unlock(&s->mu);
	return b;
}

unsigned blob_source_gen(struct blob_source *s)
{
	unsigned g;

	pthread_mutex_lock(&s->mu);
	g = s->gen;
	pthread_mutex_unlock(&s->mu);
	return g;
}

time_t blob_source_expiry(struct blob_source *s)
{
	time_t t;

	pthread_mutex_lock(&s->mu);
	t = s->expiry;
	pthread_mutex_unlock(&s->mu);
	return t;
}

/* ---- transfers ---- */

enum xfer_kind { X_GET, X_HEAD, X_PAGELIST };

struct worker;

struct xfer {
	struct xfer *next, *prev; /* queue or active list of w */
	struct worker *w;
	struct blob_engine *e;
	bool direct; /* runs on the caller's thread with its own handle */
	enum xfer_kind kind;
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

struct worker {
	struct blob_engine *e;
	pthread_t th;
	pthread_mutex_t mu;
	CURLM *multi;
	struct xfer *queue;  /* pending, FIFO through prev/next */
	struct xfer *active; /* running in multi */
	atomic_int load;
	bool stop;
};

struct blob_engine {
	struct worker *w;
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

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void list_push_tail(struct xfer **head, struct xfer *x)
{
	x->next = NULL;
	if (!*head) {
		x->prev = x;
		*head = x;
		return;
	}
	x->prev = (*head)->prev;
	(*head)->prev->next = x;
	(*head)->prev = x;
}

static void list_remove(struct xfer **head, struct xfer *x)
{
	if (x == *head) {
		*head = x->next;
		if (*head)
			(*head)->prev = x->prev;
	} else {
		x->prev->next = x->next;
		if (x->next)
			x->next->prev = x->prev;
		else
			(*head)->prev = x->prev;
	}
	x->next = x->prev = NULL;
}

static void wipe_str(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* Drop what one attempt allocated; secrets are wiped. */
static void attempt_cleanup(struct xfer *x)
{
	struct curl_slist *h;

	if (x->easy && !x->direct)
		curl_easy_cleanup(x->easy);
	x->easy = NULL;
	for (h = x->hdrs; h; h = h->next)
		explicit_bzero(h->data, strlen(h->data));
	curl_slist_free_all(x->hdrs);
	x->hdrs = NULL;
	wipe_str(x->url);
	x->url = NULL;
	free(x->errbody);
	x->errbody = NULL;
	x->errbody_len = 0;
	blob_pl_parser_free(x->pp);
	x->pp = NULL;
}

static void xfer_free(struct xfer *x)
{
	attempt_cleanup(x);
	blob_source_unref(x->src);
	free(x->marker);
	free(x->next_marker);
	free(x);
}

/* Hand the result to the caller and free the transfer. */
static void xfer_finish(struct xfer *x)
{
	x->res.gen = x->gen;
	x->res.had_bearer = x->had_bearer;
	x->done(x->arg, &x->res);
	xfer_free(x);
}

static void xfer_cancelled(struct xfer *x)
{
	x->res.status = BLOB_FAILED;
	x->res.error = -ECANCELED;
	rp_err_set(&x->res.err, 0, "Cancelled", "request cancelled");
	xfer_finish(x);
}

/* ---- curl callbacks (worker thread) ---- */

static bool hdr_is(const char *line, size_t n, const char *name, size_t *vofs)
{
	size_t k = strlen(name);

	if (n <= k || line[k] != ':' || strncasecmp(line, name, k) != 0)
		return false;
	k++;
	while (k < n && (line[k] == ' ' || line[k] == '\t'))
		k++;
	*vofs = k;
	return true;
}

/* Copy a header value (without CRLF) into dst. */
static void hdr_copy(char *dst, size_t dlen, const char *v, size_t n)
{
	while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
		n--;
	if (n >= dlen)
		n = dlen - 1;
	memcpy(dst, v, n);
	dst[n] = 0;
}

/* A Content-Length value: decimal digits only, else -1. */
static long long parse_length(const char *s)
{
	long long v = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (INT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb, v;
	char tmp[128];

	if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) {
		/* a new response (after a 100 Continue, say): forget the old */
		x->content_range[0] = 0;
		x->err_code[0] = 0;
		x->www_bearer = false;
		x->retry_after_ms = -1;
		x->content_length = -1;
	} else if (hdr_is(p, n, "Content-Range", &v)) {
		hdr_copy(x->content_range, sizeof(x->content_range), p + v,
			 n - v);
	} else if (hdr_is(p, n, "x-ms-error-code", &v)) {
		hdr_copy(x->err_code, sizeof(x->err_code), p + v, n - v);
	} else if (hdr_is(p, n, "WWW-Authenticate", &v)) {
		x->www_bearer =
		    n - v >= 6 && strncasecmp(p + v, "Bearer", 6) == 0;
	} else if (hdr_is(p, n, "Retry-After", &v)) {
		hdr_copy(tmp, sizeof(tmp), p + v, n - v);
		x->retry_after_ms = http_parse_retry_after(tmp, time(NULL));
	} else if (hdr_is(p, n, "Content-Length", &v)) {
		hdr_copy(tmp, sizeof(tmp), p + v, n - v);
		x->content_length = parse_length(tmp);
	}
	return n;
}

static void abort_with(struct xfer *x, int err, bool final, const char *why,
		       const char *detail)
{
	x->abort_err = err;
	x->abort_final = final;
	rp_err_set(&x->res.err, 0, "BadResponse", "%s%s%s", why,
		   detail ? ": " : "", detail ? detail : "");
}

/* First body bytes: decide whether this is data or an error body. */
static bool check_response(struct xfer *x)
{
	long st = 0;
	long long s, e, t;

	x->checked = true;
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &st);
	if (st < 200 || st > 299) {
		x->error_body = true;
		return true;
	}
	if (x->kind == X_PAGELIST) {
		if (st == 200)
			return true;
		abort_with(x, -EIO, false, "page list answered without 200",
			   NULL);
		return false;
	}
	if (st == 200 && x->req_start == 0 && x->len == x->total &&
	    x->content_length == x->len)
		return true;
	if (st != 206) {
		abort_with(x, -EIO, false, "range request answered without 206",
			   NULL);
		return false;
	}
	if (blob_parse_content_range(x->content_range, &s, &e, &t)) {
		abort_with(x, -EIO, false, "bad Content-Range",
			   x->content_range);
		return false;
	}
	if (s != x->req_start || e != x->off + x->len - 1 ||
	    (x->total >= 0 && t != x->total) ||
	    (x->content_length >= 0 && x->content_length != e - s + 1)) {
		abort_with(x, -EIO, false,
			   "Content-Range does not match the request",
			   x->content_range);
		return false;
	}
	return true;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	size_t n = size * nmemb;

	if (!x->checked && !check_response(x))
		return 0;
	if (x->error_body) {
		size_t room = BLOB_ERRBODY_MAX - x->errbody_len;

		if (!x->errbody) {
			x->errbody = malloc(BLOB_ERRBODY_MAX + 1);
			if (!x->errbody)
				return n;
		}
		if (n < room)
			room = n;
		memcpy(x->errbody + x->errbody_len, p, room);
		x->errbody_len += room;
		x->errbody[x->errbody_len] = 0;
		return n;
	}
	if (x->kind == X_PAGELIST) {
		if (blob_pl_parser_feed(x->pp, p, n, false)) {
			abort_with(x, -EIO, true, "malformed page list",
				   blob_pl_parser_error(x->pp));
			return 0;
		}
		return n;
	}
	if (x->kind != X_GET || x->got + (long long)n > x->len) {
		abort_with(x, -EIO, false,
			   "server sent more bytes than asked for", NULL);
		return 0;
	}
	memcpy(x->buf + x->got, p, n);
	x->got += (long long)n;
	atomic_fetch_add(&x->e->n_bytes, n);
	return n;
}

/* ---- starting an attempt ---- */

/* URL for this attempt: the SAS, plus comp=pagelist[&marker=] for a page
 * list.  Also the auth header.  Caller frees/wipes. */
static int build_request(struct xfer *x)
{
	struct blob_source *s = x->src;
	struct curl_slist *h;
	char hdr[128];
	int rc = 0;

	pthread_mutex_lock(&s->mu);
	x->gen = s->gen;
	x->had_bearer = !secret_empty(&s->bearer);
	if (secret_empty(&s->sas)) {
		rc = -EINVAL;
	} else if (x->kind != X_PAGELIST) {
		x->url = strdup(secret_value(&s->sas));
		if (!x->url)
			rc = -ENOMEM;
	} else {
		CURLU *u = curl_url();
		char *out = NULL;

		if (!u ||
		    curl_url_set(u, CURLUPART_URL, secret_value(&s->sas), 0) !=
			CURLUE_OK ||
		    curl_url_set(u, CURLUPART_QUERY, "comp=pagelist",
				 CURLU_APPENDQUERY) != CURLUE_OK)
			rc = -EINVAL;
		if (!rc && x->marker) {
			size_t ml = strlen(x->marker) + 8;
			char *m = malloc(ml);

			if (!m)
				rc = -ENOMEM;
			else {
				snprintf(m, ml, "marker=%s", x->marker);
				if (curl_url_set(u, CURLUPART_QUERY, m,
						 CURLU_APPENDQUERY |
						     CURLU_URLENCODE) !=
				    CURLUE_OK)
					rc = -EINVAL;
				free(m);
			}
		}
		if (!rc && curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK)
			rc = -EINVAL;
		if (!rc) {
			x->url = strdup(out);
			if (!x->url)
				rc = -ENOMEM;
		}
		if (out) {
			explicit_bzero(out, strlen(out));
			curl_free(out);
		}
		curl_url_cleanup(u);
	}
	if (!rc && x->had_bearer) {
		const char *tok = secret_value(&s->bearer);
		size_t l = strlen(tok) + 32;
		char *a = malloc(l);
		struct curl_slist *n;

		if (!a) {
			rc = -ENOMEM;
		} else {
			snprintf(a, l, "Authorization: Bearer %s", tok);
			n = curl_slist_append(x->hdrs, a);
			explicit_bzero(a, l);
			free(a);
			if (!n)
				rc = -ENOMEM;
			else
				x->hdrs = n;
			n = curl_slist_append(
			    x->hdrs, "x-ms-version: " BLOB_XMS_VERSION);
			if (!n)
				rc = -ENOMEM;
			else
				x->hdrs = n;
		}
	}
	pthread_mutex_unlock(&s->mu);
	if (rc)
		return rc;
	if (x->kind == X_GET) {
		/* Range too (x-ms-range wins at Azure), so that a plain HTTP
		 * server in front of the bytes (a cache, nginx) answers it */
		x->req_start = x->off + x->got;
		snprintf(hdr, sizeof(hdr), "Range: bytes=%lld-%lld",
			 x->req_start, x->off + x->len - 1);
		if (!(h = curl_slist_append(x->hdrs, hdr)))
			return -ENOMEM;
		x->hdrs = h;
		snprintf(hdr, sizeof(hdr), "x-ms-range: bytes=%lld-%lld",
			 x->req_start, x->off + x->len - 1);
	} else if (x->kind == X_PAGELIST) {
		snprintf(hdr, sizeof(hdr), "x-ms-range: bytes=%lld-%lld",
			 x->pl_start, x->pl_end - 1);
	} else {
		hdr[0] = 0;
	}
	if (hdr[0]) {
		struct curl_slist *n = curl_slist_append(x->hdrs, hdr);

		if (!n)
			return -ENOMEM;
		x->hdrs = n;
	}
	return 0;
}

/*
 * The same trust as http.c's policy (system CAs plus the configured
 * cafile), given as a file and the system's hashed CA directory instead
 * of one in-memory PEM bundle: libcurl clones and compares a CA blob on
 * every transfer while it looks for a connection to reuse (about 220 KB
 * copied and compared per request), which made a 4 KiB read cost more
 * CPU than its TLS.  Without the directory the blob stays.
 */
static void blob_trust(CURL *c)
{
	const struct http_config *hc = http_config_get();
	static const char sysdir[] = "/etc/ssl/certs";
	static atomic_int have_dir = -1;
	int d = atomic_load(&have_dir);

	if (!hc || !hc->cafile)
		return;
	if (d < 0) {
		d = access(sysdir, R_OK | X_OK) == 0;
		atomic_store(&have_dir, d);
	}
	if (!d)
		return;
	curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, NULL);
	curl_easy_setopt(c, CURLOPT_CAINFO, hc->cafile);
	curl_easy_setopt(c, CURLOPT_CAPATH, sysdir);
}

/* Prepare one attempt of x on handle c (fresh, or a reused one after
 * curl_easy_reset). */
static int setup_attempt(struct blob_engine *e, struct xfer *x, CURL *c)
{
	int rc;

	x->checked = x->error_body = false;
	x->abort_err = 0;
	x->abort_final = false;
	x->content_range[0] = x->err_code[0] = 0;
	x->www_bearer = false;
	x->retry_after_ms = -1;
	x->content_length = -1;
	rp_err_clear(&x->res.err);
	rc = build_request(x);
	if (rc)
		return rc;
	if (x->kind == X_PAGELIST) {
		x->pp = blob_pl_parser_new(x->pl_start, x->pl_end, x->cb,
					   x->cb_arg);
		if (!x->pp)
			return -ENOMEM;
	}
	x->easy = c;
	http_setup_easy(c);
	blob_trust(c);
	curl_easy_setopt(c, CURLOPT_URL, x->url);
	curl_easy_setopt(c, CURLOPT_PRIVATE, x);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 0L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, e->stall_s);
	curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, x->hdrs);
	curl_easy_setopt(c, CURLOPT_SHARE, e->share);
	if (x->kind == X_HEAD)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	atomic_fetch_add(&e->n_requests, 1);
	return 0;
}

static int start_attempt(struct worker *w, struct xfer *x)
{
	CURL *c = curl_easy_init();
	int rc;

	if (!c)
		return -ENOMEM;
	rc = setup_attempt(w->e, x, c);
	if (rc) {
		x->easy = c; /* attempt_cleanup frees it */
		return rc;
	}
	if (curl_multi_add_handle(w->multi, c) != CURLM_OK)
		return -EIO;
	return 0;
}

/* ---- finishing an attempt ---- */

static bool curl_transient(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_WEIRD_SERVER_REPLY:
		return true;
	default:
		return false;
	}
}

/* Fill res.err from a Storage error answer. */
static void record_http_error(struct xfer *x, long st)
{
	char code[96] = "", msg[512] = "";

	if (x->errbody_len)
		(void)blob_parse_error_xml(x->errbody, x->errbody_len, code,
					   sizeof(code), msg, sizeof(msg));
	if (x->err_code[0])
		snprintf(code, sizeof(code), "%s", x->err_code);
	rp_err_set(&x->res.err, (int)st, code[0] ? code : NULL, "%s",
		   msg[0] ? msg : "blob request failed");
}

/* Decide: 1 = done (res filled), 0 = retry. */
static int classify(struct xfer *x, CURLcode cc, long st)
{
	struct blob_result *r = &x->res;

	if (cc == CURLE_OK && st >= 200 && st <= 299) {
		if (x->kind == X_HEAD) {
			if (x->content_length < 0) {
				r->status = BLOB_FAILED;
				r->error = -EIO;
				rp_err_set(
				    &r->err, (int)st, "BadResponse",
				    "HEAD answer without Content-Length");
				return 1;
			}
			x->head_len = x->content_length;
		} else if (x->kind == X_PAGELIST) {
			if (!x->checked && !check_response(x))
				return 0;
			if (blob_pl_parser_feed(x->pp, "", 0, true)) {
				r->status = BLOB_FAILED;
				r->error = -EIO;
				rp_err_set(&r->err, (int)st, "BadResponse",
					   "malformed page list: %s",
					   blob_pl_parser_error(x->pp));
				return 1;
			}
			free(x->next_marker);
			x->next_marker = NULL;
			if (blob_pl_parser_marker(x->pp)) {
				x->next_marker =
				    strdup(blob_pl_parser_marker(x->pp));
				if (!x->next_marker) {
					r->status = BLOB_FAILED;
					r->error = -ENOMEM;
					return 1;
				}
			}
		} else if (x->got != x->len) {
			rp_err_set(&r->err, (int)st, "ShortBody",
				   "got %lld of %lld bytes", x->got, x->len);
			return 0;
		}
		r->status = BLOB_OK;
		r->error = 0;
		return 1;
	}
	if (x->abort_err) {
		if (!x->abort_final)
			return 0;
		r->status = BLOB_FAILED;
		r->error = x->abort_err;
		return 1;
	}
	if (st >= 300) {
		record_http_error(x, st);
		if (st == 401) {
			r->status =
			    x->www_bearer ? BLOB_NEED_TOKEN : BLOB_FAILED;
			r->error = -EACCES;
			return 1;
		}
		if (st == 403 || st == 404) {
			r->status = BLOB_EXPIRED;
			r->error = st == 403 ? -EACCES : -ENOENT;
			return 1;
		}
		if (http_status_transient(st))
			return 0;
		r->status = BLOB_FAILED;
		r->error = -EIO;
		return 1;
	}
	rp_err_set(&r->err, 0, "ConnectionFailed", "%s",
		   curl_easy_strerror(cc));
	if (curl_transient(cc))
		return 0;
	r->status = BLOB_FAILED;
	r->error = -EIO;
	return 1;
}

static void enqueue(struct worker *w, struct xfer *x)
{
	pthread_mutex_lock(&w->mu);
	list_push_tail(&w->queue, x);
	pthread_mutex_unlock(&w->mu);
	curl_multi_wakeup(w->multi);
}

/*
 * After an attempt that ended with status st: 1 when x is finished (res
 * filled; failures logged), 0 when it should be tried again after
 * *delay_ms (transient failure, within the policy bounds).
 */
static int judge(struct xfer *x, CURLcode cc, long st, long *delay_ms)
{
	struct blob_engine *e = x->e;
	char red[256];
	long long now;

	if (classify(x, cc, st)) {
		if (x->res.status != BLOB_OK)
			log_debug("blob: %s failed: HTTP %ld %s: %s",
				  log_redact_url(x->url, red, sizeof(red)), st,
				  x->res.err.code, x->res.err.message);
		return 1;
	}
	*delay_ms = http_backoff_ms(x->attempt, x->retry_after_ms);
	now = mono_ms();
	if (x->attempt >= e->max_retries ||
	    now + *delay_ms - x->first_ms > e->max_retry_total_ms) {
		log_warn("blob: giving up on %s after %d attempts: %s %s",
			 log_redact_url(x->url, red, sizeof(red)),
			 x->attempt + 1, x->res.err.code, x->res.err.message);
		x->res.status = BLOB_FAILED;
		x->res.error = -EIO;
		if (!x->res.err.http_status && st >= 300)
			x->res.err.http_status = (int)st;
		return 1;
	}
	log_info("blob: retrying %s in %ld ms (attempt %d): HTTP %ld %s %s",
		 log_redact_url(x->url, red, sizeof(red)), *delay_ms,
		 x->attempt + 1, st, x->res.err.code, x->res.err.message);
	x->attempt++;
	atomic_fetch_add(&e->n_retries, 1);
	return 0;
}

static void attempt_done(struct worker *w, struct xfer *x, CURLcode cc)
{
	long st = 0, delay = 0;

	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &st);
	curl_multi_remove_handle(w->multi, x->easy);
	atomic_fetch_sub(&w->e->running, 1);
	if (judge(x, cc, st, &delay)) {
		attempt_cleanup(x);
		atomic_fetch_sub(&w->load, 1);
		xfer_finish(x);
		return;
	}
	attempt_cleanup(x);
	x->not_before_ms = mono_ms() + delay;
	pthread_mutex_lock(&w->mu);
	list_push_tail(&w->queue, x);
	pthread_mutex_unlock(&w->mu);
}

/* ---- the worker loop ---- */

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct blob_engine *e = w->e;

	for (;;) {
		struct xfer *start = NULL, *dead = NULL, *x, *nx;
		long long now = mono_ms(), next = now + 1000;
		bool stop;
		int still, timeout;
		CURLMsg *m;

		pthread_mutex_lock(&w->mu);
		stop = w->stop;
		for (x = w->queue; x; x = nx) {
			nx = x->next;
			if (x->cancelled || stop) {
				list_remove(&w->queue, x);
				list_push_tail(&dead, x);
			} else if (x->not_before_ms > now) {
				if (x->not_before_ms < next)
					next = x->not_before_ms;
			} else if (atomic_load(&e->running) < e->max_conns) {
				list_remove(&w->queue, x);
				list_push_tail(&start, x);
				atomic_fetch_add(&e->running, 1);
			}
		}
		for (x = w->active; x; x = nx) {
			nx = x->next;
			if (x->cancelled || stop) {
				list_remove(&w->active, x);
				list_push_tail(&dead, x);
			}
		}
		pthread_mutex_unlock(&w->mu);

		for (x = dead; x; x = nx) {
			nx = x->next;
			if (x->easy) {
				curl_multi_remove_handle(w->multi, x->easy);
				atomic_fetch_sub(&e->running, 1);
			}
			attempt_cleanup(x);
			atomic_fetch_sub(&w->load, 1);
			xfer_cancelled(x);
		}
		if (stop)
			break;
		for (x = start; x; x = nx) {
			int rc;

			nx = x->next;
			x->next = x->prev = NULL;
			rc = start_attempt(w, x);
			if (rc) {
				atomic_fetch_sub(&e->running, 1);
				attempt_cleanup(x);
				x->res.status = BLOB_FAILED;
				x->res.error = rc;
				rp_err_set(&x->res.err, 0, "RequestSetup",
					   "could not start the request");
				atomic_fetch_sub(&w->load, 1);
				xfer_finish(x);
				continue;
			}
			pthread_mutex_lock(&w->mu);
			list_push_tail(&w->active, x);
			pthread_mutex_unlock(&w->mu);
		}

		curl_multi_perform(w->multi, &still);
		while ((m = curl_multi_info_read(w->multi, &still))) {
			struct xfer *d = NULL;

			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE,
					  (char **)&d);
			pthread_mutex_lock(&w->mu);
			list_remove(&w->active, d);
			pthread_mutex_unlock(&w->mu);
			attempt_done(w, d, m->data.result);
		}
		now = mono_ms();
		pthread_mutex_lock(&w->mu);
		for (x = w->queue; x; x = x->next)
			if (x->not_before_ms < next)
				next = x->not_before_ms;
		pthread_mutex_unlock(&w->mu);
		timeout = next <= now ? 0 : (int)(next - now);
		curl_multi_poll(w->multi, NULL, 0, timeout, NULL);
	}
	return NULL;
}

/* ---- engine life ---- */

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *ud)
{
	struct blob_engine *e = ud;

	(void)h;
	(void)a;
	pthread_mutex_lock(&e->share_mu[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *ud)
{
	struct blob_engine *e = ud;

	(void)h;
	pthread_mutex_unlock(&e->share_mu[d]);
}

struct blob_engine *blob_engine_new(const struct blob_engine_config *cfg)
{
	const struct http_config *hc = http_config_get();
	struct blob_engine *e = calloc(1, sizeof(*e));
	int i;

	if (!e)
		return NULL;
	e->nw = cfg && cfg->threads > 0 ? cfg->threads : 1;
	e->max_conns =
	    cfg && cfg->max_connections > 0 ? cfg->max_connections : 64;
	e->stall_s = cfg && cfg->stall_timeout_s > 0 ? cfg->stall_timeout_s
		     : hc && hc->stall_timeout_s > 0 ? hc->stall_timeout_s
						     : 30;
	e->max_retries = cfg && cfg->max_retries > 0 ? cfg->max_retries
			 : hc && hc->max_retries > 0 ? hc->max_retries
						     : 6;
	e->max_retry_total_ms =
	    cfg && cfg->max_retry_total_ms > 0 ? cfg->max_retry_total_ms
	    : hc && hc->max_retry_total_ms > 0 ? hc->max_retry_total_ms
					       : 60000;
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&e->share_mu[i], NULL);
	e->share = curl_share_init();
	if (!e->share)
		goto fail;
	curl_share_setopt(e->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(e->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(e->share, CURLSHOPT_USERDATA, e);
	curl_share_setopt(e->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(e->share, CURLSHOPT_SHARE,
			  CURL_LOCK_DATA_SSL_SESSION);
	e->w = calloc((size_t)e->nw, sizeof(*e->w));
	if (!e->w)
		goto fail;
	for (i = 0; i < e->nw; i++) {
		struct worker *w = &e->w[i];

		w->e = e;
		pthread_mutex_init(&w->mu, NULL);
		w->multi = curl_multi_init();
		if (!w->multi)
			goto fail_workers;
		curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS,
				  (long)e->max_conns);
		if (pthread_create(&w->th, NULL, worker_main, w)) {
			curl_multi_cleanup(w->multi);
			w->multi = NULL;
			goto fail_workers;
		}
	}
	return e;
fail_workers:
	e->nw = i;
	blob_engine_free(e);
	return NULL;
fail:
	if (e->share)
		curl_share_cleanup(e->share);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&e->share_mu[i]);
	free(e->w);
	free(e);
	return NULL;
}

void blob_engine_free(struct blob_engine *e)
{
	int i;

	if (!e)
		return;
	for (i = 0; i < e->nw; i++) {
		struct worker *w = &e->w[i];

		pthread_mutex_lock(&w->mu);
		w->stop = true;
		pthread_mutex_unlock(&w->mu);
		curl_multi_wakeup(w->multi);
		pthread_join(w->th, NULL);
		curl_multi_cleanup(w->multi);
		pthread_mutex_destroy(&w->mu);
	}
	curl_share_cleanup(e->share);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&e->share_mu[i]);
	free(e->w);
	free(e);
}

static struct xfer *xfer_new(struct blob_engine *e, enum xfer_kind kind,
			     struct blob_source *src, void *owner,
			     blob_done_fn done, void *arg)
{
	struct xfer *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->kind = kind;
	x->e = e;
	blob_source_ref(src);
	x->src = src;
	x->owner = owner;
	x->done = done;
	x->arg = arg;
	x->total = -1;
	x->first_ms = mono_ms();
	x->retry_after_ms = -1;
	return x;
}

static void submit(struct blob_engine *e, struct xfer *x)
{
	struct worker *best = &e->w[0];

	for (int i = 1; i < e->nw; i++)
		if (atomic_load(&e->w[i].load) < atomic_load(&best->load))
			best = &e->w[i];
	x->w = best;
	atomic_fetch_add(&best->load, 1);
	enqueue(best, x);
}

int blob_read_async(struct blob_engine *e, struct blob_source *src,
		    long long off, size_t len, long long total, char *buf,
		    void *owner, blob_done_fn done, void *arg)
{
	struct xfer *x;

	if (!len || off < 0 || (total >= 0 && off + (long long)len > total))
		return -EINVAL;
	x = xfer_new(e, X_GET, src, owner, done, arg);
	if (!x)
		return -ENOMEM;
	x->off = off;
	x->len = (long long)len;
	x->total = total;
	x->buf = buf;
	submit(e, x);
	return 0;
}

void blob_engine_cancel(struct blob_engine *e, void *owner)
{
	if (!owner)
		return;
	for (int i = 0; i < e->nw; i++) {
		struct worker *w = &e->w[i];
		struct xfer *x;
		bool any = false;

		pthread_mutex_lock(&w->mu);
		for (x = w->queue; x; x = x->next)
			if (x->owner == owner)
				any = x->cancelled = true;
		for (x = w->active; x; x = x->next)
			if (x->owner == owner)
				any = x->cancelled = true;
		pthread_mutex_unlock(&w->mu);
		if (any)
			curl_multi_wakeup(w->multi);
	}
}

void blob_engine_stats(struct blob_engine *e, struct blob_stats *out)
{
	out->requests = atomic_load(&e->n_requests);
	out->retries = atomic_load(&e->n_retries);
	out->bytes = atomic_load(&e->n_bytes);
}

/* ---- synchronous calls ---- */

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	struct blob_result res;
	long long head_len;
	char *marker;
	struct xfer *x; /* to pick results off before it is freed */
};

static void waiter_done(void *arg, const struct blob_result *res)
{
	struct waiter *wt = arg;

	pthread_mutex_lock(&wt->mu);
	wt->res = *res;
	if (wt->x) {
		wt->head_len = wt->x->head_len;
		wt->marker = wt->x->next_marker;
		wt->x->next_marker = NULL;
	}
	wt->done = true;
	pthread_cond_signal(&wt->cv);
	pthread_mutex_unlock(&wt->mu);
}

static int run_sync(struct blob_engine *e, struct xfer *x, struct waiter *wt,
		    struct blob_result *res)
{
	wt->x = x;
	submit(e, x);
	pthread_mutex_lock(&wt->mu);
	while (!wt->done)
		pthread_cond_wait(&wt->cv, &wt->mu);
	pthread_mutex_unlock(&wt->mu);
	pthread_mutex_destroy(&wt->mu);
	pthread_cond_destroy(&wt->cv);
	*res = wt->res;
	return res->error;
}

#define WAITER_INIT                                                            \
	{                                                                      \
		.mu = PTHREAD_MUTEX_INITIALIZER,                               \
		.cv = PTHREAD_COND_INITIALIZER,                                \
	}

int blob_read(struct blob_engine *e, struct blob_source *src, long long off,
	      size_t len, long long total, char *buf, struct blob_result *res)
{
	struct waiter wt = WAITER_INIT;
	struct xfer *x;

	memset(res, 0, sizeof(*res));
	if (!len || off < 0 || (total >= 0 && off + (long long)len > total))
		return res->error = -EINVAL;
	x = xfer_new(e, X_GET, src, NULL, waiter_done, &wt);
	if (!x)
		return res->error = -ENOMEM;
	x->off = off;
	x->len = (long long)len;
	x->total = total;
	x->buf = buf;
	return run_sync(e, x, &wt, res);
}

int blob_head(struct blob_engine *e, struct blob_source *src, long long *length,
	      struct blob_result *res)
{
	struct waiter wt = WAITER_INIT;
	struct xfer *x;
	int rc;

	memset(res, 0, sizeof(*res));
	x = xfer_new(e, X_HEAD, src, NULL, waiter_done, &wt);
	if (!x)
		return res->error = -ENOMEM;
	rc = run_sync(e, x, &wt, res);
	if (!rc)
		*length = wt.head_len;
	return rc;
}

int blob_page_ranges(struct blob_engine *e, struct blob_source *src,
		     long long start, long long end, blob_range_cb cb,
		     void *arg, struct blob_result *res)
{
	char *marker = NULL;
	int rc, pages = 0;

	memset(res, 0, sizeof(*res));
	if (start < 0 || end <= start || start % 512 || end % 512)
		return res->error = -EINVAL;
	do {
		struct waiter wt = WAITER_INIT;
		struct xfer *x =
		    xfer_new(e, X_PAGELIST, src, NULL, waiter_done, &wt);

		if (!x) {
			free(marker);
			return res->error = -ENOMEM;
		}
		x->pl_start = start;
		x->pl_end = end;
		x->cb = cb;
		x->cb_arg = arg;
		x->marker = marker;
		rc = run_sync(e, x, &wt, res);
		marker = wt.marker;
		if (rc) {
			free(marker);
			return rc;
		}
	} while (marker && ++pages < 100000);
	free(marker);
	return 0;
}

/* ---- reads on the caller's thread ---- */

/*
 * A small read that a reader waits for costs two thread hand-offs on the
 * engine (to the worker and back), which under load is most of its
 * latency.  So it runs here instead, on a curl handle kept per thread:
 * the handle keeps its connection alive between reads, as http.c does.
 */
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;
static bool tl_ok;

static void tl_destroy(void *p)
{
	curl_easy_cleanup(p);
}

static void tl_init(void)
{
	tl_ok = pthread_key_create(&tl_key, tl_destroy) == 0;
}

static CURL *tl_handle(void)
{
	CURL *c;

	pthread_once(&tl_once, tl_init);
	if (!tl_ok)
		return NULL;
	c = pthread_getspecific(tl_key);
	if (c)
		return c;
	c = curl_easy_init();
	if (c && pthread_setspecific(tl_key, c)) {
		curl_easy_cleanup(c);
		c = NULL;
	}
	return c;
}

int blob_read_direct(struct blob_engine *e, struct blob_source *src,
		     long long off, size_t len, long long total, char *buf,
		     struct blob_result *res)
{
	CURL *c = tl_handle();
	struct xfer *x;
	int rc;

	memset(res, 0, sizeof(*res));
	if (!len || off < 0 || (total >= 0 && off + (long long)len > total))
		return res->error = -EINVAL;
	if (!c)
		return blob_read(e, src, off, len, total, buf, res);
	x = xfer_new(e, X_GET, src, NULL, NULL, NULL);
	if (!x)
		return res->error = -ENOMEM;
	x->direct = true;
	x->off = off;
	x->len = (long long)len;
	x->total = total;
	x->buf = buf;
	for (;;) {
		long st = 0, delay = 0;
		CURLcode cc;
		struct timespec ts;

		/* no curl_easy_reset: every option is set again below */
		rc = setup_attempt(e, x, c);
		if (rc) {
			x->res.status = BLOB_FAILED;
			x->res.error = rc;
			rp_err_set(&x->res.err, 0, "RequestSetup",
				   "could not start the request");
			break;
		}
		cc = curl_easy_perform(c);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
		if (judge(x, cc, st, &delay))
			break;
		attempt_cleanup(x);
		ts.tv_sec = delay / 1000;
		ts.tv_nsec = (delay % 1000) * 1000000;
		nanosleep(&ts, NULL);
	}
	*res = x->res;
	res->gen = x->gen;
	res->had_bearer = x->had_bearer;
	rc = res->error;
	xfer_free(x);
	return rc;
}
