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
 * What one request does and how its answer is judged is in blob_xfer.c;
 * this file moves transfers between queues, threads and curl handles.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "blob_int.h"
#include "clock.h"
#include "http.h"
#include "log.h"

static void list_push_tail(struct blob_xfer **head, struct blob_xfer *x)
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

static void list_remove(struct blob_xfer **head, struct blob_xfer *x)
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

/* Hand the result to the caller and free the transfer. */
static void xfer_finish(struct blob_xfer *x)
{
	x->res.gen = x->gen;
	x->res.had_bearer = x->had_bearer;
	x->done(x->arg, &x->res);
	blob_xfer_free(x);
}

static void xfer_cancelled(struct blob_xfer *x)
{
	x->res.status = BLOB_FAILED;
	x->res.error = -ECANCELED;
	rp_err_set(&x->res.err, 0, "Cancelled", "request cancelled");
	xfer_finish(x);
}

static int start_attempt(struct blob_worker *w, struct blob_xfer *x)
{
	CURL *c = curl_easy_init();
	int rc;

	if (!c)
		return -ENOMEM;
	rc = blob_xfer_setup(w->e, x, c);
	if (rc) {
		x->easy = c; /* attempt_cleanup frees it */
		return rc;
	}
	if (curl_multi_add_handle(w->multi, c) != CURLM_OK)
		return -EIO;
	return 0;
}

static void enqueue(struct blob_worker *w, struct blob_xfer *x)
{
	pthread_mutex_lock(&w->mu);
	list_push_tail(&w->queue, x);
	pthread_mutex_unlock(&w->mu);
	curl_multi_wakeup(w->multi);
}

static void attempt_done(struct blob_worker *w, struct blob_xfer *x,
			 CURLcode cc)
{
	long st = 0, delay = 0;

	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &st);
	curl_multi_remove_handle(w->multi, x->easy);
	atomic_fetch_sub(&w->e->running, 1);
	if (blob_xfer_judge(x, cc, st, &delay)) {
		blob_xfer_cleanup(x);
		atomic_fetch_sub(&w->load, 1);
		xfer_finish(x);
		return;
	}
	blob_xfer_cleanup(x);
	x->not_before_ms = rp_mono_ms() + delay;
	pthread_mutex_lock(&w->mu);
	list_push_tail(&w->queue, x);
	pthread_mutex_unlock(&w->mu);
}

/* ---- the worker loop ---- */

static void *worker_main(void *arg)
{
	struct blob_worker *w = arg;
	struct blob_engine *e = w->e;

	for (;;) {
		struct blob_xfer *start = NULL, *dead = NULL, *x, *nx;
		long long now = rp_mono_ms(), next = now + 1000;
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
			blob_xfer_cleanup(x);
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
				blob_xfer_cleanup(x);
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
			struct blob_xfer *d = NULL;

			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE,
					  (char **)&d);
			pthread_mutex_lock(&w->mu);
			list_remove(&w->active, d);
			pthread_mutex_unlock(&w->mu);
			attempt_done(w, d, m->data.result);
		}
		now = rp_mono_ms();
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
		struct blob_worker *w = &e->w[i];

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
		struct blob_worker *w = &e->w[i];

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

static struct blob_xfer *xfer_new(struct blob_engine *e,
				  enum blob_xfer_kind kind,
				  struct blob_source *src, void *owner,
				  blob_done_fn done, void *arg)
{
	struct blob_xfer *x = calloc(1, sizeof(*x));

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
	x->first_ms = rp_mono_ms();
	x->retry_after_ms = -1;
	return x;
}

static void submit(struct blob_engine *e, struct blob_xfer *x)
{
	struct blob_worker *best = &e->w[0];

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
	struct blob_xfer *x;

	if (!len || off < 0 || (total >= 0 && off + (long long)len > total))
		return -EINVAL;
	x = xfer_new(e, BLOB_X_GET, src, owner, done, arg);
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
		struct blob_worker *w = &e->w[i];
		struct blob_xfer *x;
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
	struct blob_xfer *x; /* to pick results off before it is freed */
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

static int run_sync(struct blob_engine *e, struct blob_xfer *x,
		    struct waiter *wt, struct blob_result *res)
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
	struct blob_xfer *x;

	memset(res, 0, sizeof(*res));
	if (!len || off < 0 || (total >= 0 && off + (long long)len > total))
		return res->error = -EINVAL;
	x = xfer_new(e, BLOB_X_GET, src, NULL, waiter_done, &wt);
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
	struct blob_xfer *x;
	int rc;

	memset(res, 0, sizeof(*res));
	x = xfer_new(e, BLOB_X_HEAD, src, NULL, waiter_done, &wt);
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
		struct blob_xfer *x =
		    xfer_new(e, BLOB_X_PAGELIST, src, NULL, waiter_done, &wt);

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
	struct blob_xfer *x;
	int rc;

	memset(res, 0, sizeof(*res));
	if (!len || off < 0 || (total >= 0 && off + (long long)len > total))
		return res->error = -EINVAL;
	if (!c)
		return blob_read(e, src, off, len, total, buf, res);
	x = xfer_new(e, BLOB_X_GET, src, NULL, NULL, NULL);
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

		/* no curl_easy_reset: every option is set again below */
		rc = blob_xfer_setup(e, x, c);
		if (rc) {
			x->res.status = BLOB_FAILED;
			x->res.error = rc;
			rp_err_set(&x->res.err, 0, "RequestSetup",
				   "could not start the request");
			break;
		}
		cc = curl_easy_perform(c);
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
		if (blob_xfer_judge(x, cc, st, &delay))
			break;
		blob_xfer_cleanup(x);
		rp_sleep_ms(delay);
	}
	*res = x->res;
	res->gen = x->gen;
	res->had_bearer = x->had_bearer;
	rc = res->error;
	blob_xfer_free(x);
	return rc;
}
