/*
 * blob_xfer.c -- one blob request, from its URL and headers to the verdict
 * on its answer.  Used by the engine (net/blob.c) for every attempt.
 *
 * Correctness of data: a GET writes into the caller's buffer only after
 * the status (206) and Content-Range (exactly the range asked for, total
 * equal to the blob length) were checked, never past the requested length,
 * and completes only with the full count.  After a cut connection it
 * resumes at the first missing byte.  Page lists are parsed while they
 * arrive (expat, constant memory).  Secrets (the SAS in the URL, the
 * token in a header) live in the transfer only during an attempt and are
 * wiped when it ends.  All of it runs on the thread that drives the
 * attempt (a worker, or the reader for direct reads); no locks but the
 * source's, taken while the request is built.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "blob_int.h"
#include "clock.h"
#include "http.h"
#include "log.h"

static void wipe_str(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* Drop what one attempt allocated; secrets are wiped. */
void blob_xfer_cleanup(struct blob_xfer *x)
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

void blob_xfer_free(struct blob_xfer *x)
{
	blob_xfer_cleanup(x);
	blob_source_unref(x->src);
	free(x->marker);
	free(x->next_marker);
	free(x);
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
	struct blob_xfer *x = ud;
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

static void abort_with(struct blob_xfer *x, int err, bool final,
		       const char *why, const char *detail)
{
	x->abort_err = err;
	x->abort_final = final;
	rp_err_set(&x->res.err, 0, "BadResponse", "%s%s%s", why,
		   detail ? ": " : "", detail ? detail : "");
}

/*
 * A page list that does not parse is asked for again, like a dropped
 * connection, but only BLOB_PL_GARBLED_TRIES times in all: the caller's
 * fallback ("the whole blob is data") turns a sparse copy into a full one,
 * so it is worth a retry, yet a server that always garbles it must not
 * cost the whole retry budget.  Ranges parsed before the damage are
 * reported again by the next attempt; callers merge them.  true: retry.
 */
static bool pl_garbled_retry(struct blob_xfer *x)
{
	return ++x->pl_garbled < BLOB_PL_GARBLED_TRIES;
}

/* First body bytes: decide whether this is data or an error body. */
static bool check_response(struct blob_xfer *x)
{
	long st = 0;
	long long s, e, t;

	x->checked = true;
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &st);
	if (st < 200 || st > 299) {
		x->error_body = true;
		return true;
	}
	if (x->kind == BLOB_X_PAGELIST) {
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
	struct blob_xfer *x = ud;
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
	if (x->kind == BLOB_X_PAGELIST) {
		if (blob_pl_parser_feed(x->pp, p, n, false)) {
			abort_with(x, -EIO, !pl_garbled_retry(x),
				   "malformed page list",
				   blob_pl_parser_error(x->pp));
			return 0;
		}
		return n;
	}
	if (x->kind != BLOB_X_GET || x->got + (long long)n > x->len) {
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
static int build_request(struct blob_xfer *x)
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
	} else if (x->kind != BLOB_X_PAGELIST) {
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
	if (x->kind == BLOB_X_GET) {
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
	} else if (x->kind == BLOB_X_PAGELIST) {
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
int blob_xfer_setup(struct blob_engine *e, struct blob_xfer *x, CURL *c)
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
	if (x->kind == BLOB_X_PAGELIST) {
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
	/* none (long ranged GETs are legit; stalls are caught below) but
	 * the lowered budget after http_set_retry_budget */
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, http_attempt_timeout_ms(0));
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, e->stall_s);
	curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, x->hdrs);
	curl_easy_setopt(c, CURLOPT_SHARE, e->share);
	if (x->kind == BLOB_X_HEAD)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	atomic_fetch_add(&e->n_requests, 1);
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
static void record_http_error(struct blob_xfer *x, long st)
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

/* From request sent to first byte, in microseconds (0 if unknown). */
static long long wait_us(struct blob_xfer *x)
{
	curl_off_t sent = 0, first = 0;

	if (curl_easy_getinfo(x->easy, CURLINFO_PRETRANSFER_TIME_T, &sent) ||
	    curl_easy_getinfo(x->easy, CURLINFO_STARTTRANSFER_TIME_T, &first))
		return 0;
	return first > sent ? (long long)(first - sent) : 0;
}

/* Decide: 1 = done (res filled), 0 = retry. */
static int classify(struct blob_xfer *x, CURLcode cc, long st)
{
	struct blob_result *r = &x->res;

	if (cc == CURLE_OK && st >= 200 && st <= 299) {
		if (x->kind == BLOB_X_HEAD) {
			if (x->content_length < 0) {
				r->status = BLOB_FAILED;
				r->error = -EIO;
				rp_err_set(
				    &r->err, (int)st, "BadResponse",
				    "HEAD answer without Content-Length");
				return 1;
			}
			x->head_len = x->content_length;
		} else if (x->kind == BLOB_X_PAGELIST) {
			if (!x->checked && !check_response(x))
				return 0;
			if (blob_pl_parser_feed(x->pp, "", 0, true)) {
				rp_err_set(&r->err, (int)st, "BadResponse",
					   "malformed page list: %s",
					   blob_pl_parser_error(x->pp));
				if (pl_garbled_retry(x))
					return 0;
				r->status = BLOB_FAILED;
				r->error = -EIO;
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
		r->wait_us = wait_us(x);
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

/*
 * After an attempt that ended with status st: 1 when x is finished (res
 * filled; failures logged), 0 when it should be tried again after
 * *delay_ms (transient failure, within the policy bounds).
 */
int blob_xfer_judge(struct blob_xfer *x, CURLcode cc, long st, long *delay_ms)
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
	now = rp_mono_ms();
	if (x->attempt >= e->max_retries ||
	    now + *delay_ms - x->first_ms >
		http_retry_budget_ms(e->max_retry_total_ms)) {
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
