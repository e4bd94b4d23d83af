/*
 * http.c -- synchronous HTTPS on libcurl with the project's one policy.
 *
 * Policy: TLS always verified against the system CAs plus the configured
 * cafile; connect and stall timeouts; buffered bodies capped; transient
 * failures (408/429/5xx gateway statuses and dropped or refused
 * connections) retried with exponential backoff and jitter, honouring
 * Retry-After, within a bounded total time.
 *
 * CA choice: CURLOPT_CAINFO replaces libcurl's default bundle, so "system
 * plus cafile" is built once at start-up as an in-memory PEM blob (the
 * default bundle that libcurl reports via CURLINFO_CAINFO, then the
 * cafile) and handed to every handle with CURLOPT_CAINFO_BLOB.  Nothing is
 * written to disk.  The blob is owned by this module, never modified after
 * http_global_init, and freed by http_global_cleanup (after every handle).
 *
 * Connections: each thread keeps one easy handle in thread-local storage
 * (freed by a pthread key destructor at thread exit); curl_easy_reset
 * between requests keeps its connection cache, so ARM calls of one thread
 * reuse one TLS connection without any lock.
 *
 * Logging: URLs only through log_redact_url; header values never.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "clock.h"
#include "http.h"
#include "log.h"

#define HTTP_BACKOFF_BASE_MS 500L
#define HTTP_BACKOFF_CAP_MS 30000L
#define HTTP_RETRY_AFTER_CAP_MS 120000L

static struct http_config cfg = {
    .connect_timeout_ms = 10000,
    .stall_timeout_s = 30,
    .max_retries = 6,
    .max_retry_total_ms = 60000,
    .max_body = 16u << 20,
};
static char *cfg_cafile;
static _Atomic long budget_override_ms; /* http_set_retry_budget */
static char *ca_blob; /* system bundle + cafile, PEM; NULL: curl default */
static size_t ca_blob_len;

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t easy_key;

static void easy_destroy(void *p)
{
	curl_easy_cleanup(p);
}

static void key_make(void)
{
	if (pthread_key_create(&easy_key, easy_destroy) != 0)
		abort();
}

/* Append the whole file at path to *buf; 0, or -errno. */
static int slurp_append(const char *path, char **buf, size_t *len)
{
	FILE *f = fopen(path, "re");
	char chunk[16384];
	size_t n;
	int rc = 0;

	if (!f)
		return -errno;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		char *nb = realloc(*buf, *len + n + 2);

		if (!nb) {
			rc = -ENOMEM;
			break;
		}
		*buf = nb;
		memcpy(*buf + *len, chunk, n);
		*len += n;
	}
	if (!rc && ferror(f))
		rc = -EIO;
	fclose(f);
	if (!rc && *buf) {
		/* PEM blocks must not run together across files. */
		(*buf)[(*len)++] = '\n';
		(*buf)[*len] = '\0';
	}
	return rc;
}

static int build_ca_blob(const char *cafile)
{
	const char *sys = NULL;
	CURL *probe = curl_easy_init();
	int rc;

	if (probe) {
		char *p = NULL;

		if (curl_easy_getinfo(probe, CURLINFO_CAINFO, &p) == CURLE_OK)
			sys = p;
	}
	if (!sys)
		sys = "/etc/ssl/certs/ca-certificates.crt";
	rc = slurp_append(sys, &ca_blob, &ca_blob_len);
	if (rc && rc != -ENOENT)
		log_warn("cannot read system CA bundle %s: %s", sys,
			 strerror(-rc));
	if (probe)
		curl_easy_cleanup(probe);
	rc = slurp_append(cafile, &ca_blob, &ca_blob_len);
	if (rc) {
		log_error("cannot read CA file %s: %s", cafile, strerror(-rc));
		free(ca_blob);
		ca_blob = NULL;
		ca_blob_len = 0;
		return rc;
	}
	return 0;
}

int http_global_init(const struct http_config *c)
{
	int rc;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -EIO;
	pthread_once(&key_once, key_make);
	if (!c)
		return 0;
	if (c->connect_timeout_ms > 0)
		cfg.connect_timeout_ms = c->connect_timeout_ms;
	if (c->stall_timeout_s > 0)
		cfg.stall_timeout_s = c->stall_timeout_s;
	/* Zero fields mean "the default"; a negative max_retries means none. */
	if (c->max_retries > 0)
		cfg.max_retries = c->max_retries;
	else if (c->max_retries < 0)
		cfg.max_retries = 0;
	if (c->max_retry_total_ms > 0)
		cfg.max_retry_total_ms = c->max_retry_total_ms;
	if (c->max_body > 0)
		cfg.max_body = c->max_body;
	if (c->cafile && *c->cafile) {
		cfg_cafile = strdup(c->cafile);
		if (!cfg_cafile)
			return -ENOMEM;
		rc = build_ca_blob(c->cafile);
		if (rc)
			return rc;
	}
	cfg.cafile = cfg_cafile;
	return 0;
}

void http_global_cleanup(void)
{
	CURL *mine;

	pthread_once(&key_once, key_make);
	mine = pthread_getspecific(easy_key);
	if (mine) {
		curl_easy_cleanup(mine);
		pthread_setspecific(easy_key, NULL);
	}
	free(ca_blob);
	ca_blob = NULL;
	ca_blob_len = 0;
	free(cfg_cafile);
	cfg_cafile = NULL;
	cfg.cafile = NULL;
	curl_global_cleanup();
}

const struct http_config *http_config_get(void)
{
	return &cfg;
}

void http_setup_easy(CURL *easy)
{
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(easy, CURLOPT_SSLVERSION,
			 (long)CURL_SSLVERSION_TLSv1_2);
	if (ca_blob) {
		struct curl_blob b = {
		    .data = ca_blob,
		    .len = ca_blob_len,
		    .flags = CURL_BLOB_NOCOPY,
		};

		curl_easy_setopt(easy, CURLOPT_CAINFO_BLOB, &b);
	}
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
			 cfg.connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, cfg.stall_timeout_s);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "rpfs/" RPFS_VERSION);
}

bool http_status_transient(long status)
{
	switch (status) {
	case 408:
	case 429:
	case 500:
	case 502:
	case 503:
	case 504:
		return true;
	default:
		return false;
	}
}

static bool curl_code_transient(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

/* A per-thread xorshift generator, seeded from the kernel, for jitter. */
static unsigned long long jitter_rand(void)
{
	static __thread unsigned long long s;

	if (!s) {
		if (getrandom(&s, sizeof(s), 0) != (ssize_t)sizeof(s) || !s)
			s = (unsigned long long)time(NULL) * 2654435761ULL | 1;
	}
	s ^= s << 13;
	s ^= s >> 7;
	s ^= s << 17;
	return s;
}

long http_backoff_ms(int attempt, long retry_after_ms)
{
	long d = HTTP_BACKOFF_BASE_MS;

	if (retry_after_ms >= 0)
		return retry_after_ms > HTTP_RETRY_AFTER_CAP_MS
			   ? HTTP_RETRY_AFTER_CAP_MS
			   : retry_after_ms;
	if (attempt < 0)
		attempt = 0;
	for (int i = 0; i < attempt && d < HTTP_BACKOFF_CAP_MS; i++)
		d *= 2;
	if (d > HTTP_BACKOFF_CAP_MS)
		d = HTTP_BACKOFF_CAP_MS;
	/* "Equal jitter": half fixed, half random, so retries spread out
	 * but never collapse to zero. */
	return d / 2 + (long)(jitter_rand() % (unsigned long long)(d / 2 + 1));
}

long http_parse_retry_after(const char *value, time_t now)
{
	char *end;
	long long secs;
	time_t t;

	if (!value)
		return -1;
	while (*value == ' ' || *value == '\t')
		value++;
	if (!*value)
		return -1;
	if (*value >= '0' && *value <= '9') {
		errno = 0;
		secs = strtoll(value, &end, 10);
		while (*end == ' ' || *end == '\t' || *end == '\r' ||
		       *end == '\n')
			end++;
		if (errno || *end || secs < 0)
			return -1;
		if (secs > HTTP_RETRY_AFTER_CAP_MS / 1000)
			secs = HTTP_RETRY_AFTER_CAP_MS / 1000;
		return (long)secs * 1000;
	}
	t = curl_getdate(value, NULL);
	if (t == (time_t)-1)
		return -1;
	if (t <= now)
		return 0;
	if (t - now > HTTP_RETRY_AFTER_CAP_MS / 1000)
		return HTTP_RETRY_AFTER_CAP_MS;
	return (long)(t - now) * 1000;
}

/* State of one transfer attempt, shared with the curl callbacks. */
struct xfer {
	struct http_response *resp;
	size_t cap;
	size_t alloc;
	bool too_big;
	long retry_after_ms_hdr; /* retry-after-ms style headers */
};

static void response_headers_reset(struct http_response *r)
{
	free(r->location);
	free(r->async_operation);
	free(r->content_range);
	free(r->error_code);
	free(r->www_authenticate);
	free(r->request_id);
	r->location = r->async_operation = r->content_range = NULL;
	r->error_code = r->www_authenticate = r->request_id = NULL;
	r->content_length = -1;
	r->retry_after_ms = -1;
}

void http_response_free(struct http_response *resp)
{
	if (!resp)
		return;
	response_headers_reset(resp);
	free(resp->body);
	resp->body = NULL;
	resp->body_len = 0;
	resp->status = 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	struct http_response *r = x->resp;
	size_t n = size * nmemb;

	if (r->body_len + n > x->cap) {
		x->too_big = true;
		return 0;
	}
	if (r->body_len + n + 1 > x->alloc) {
		size_t want = x->alloc ? x->alloc : 4096;
		char *nb;

		while (want < r->body_len + n + 1)
			want *= 2;
		nb = realloc(r->body, want);
		if (!nb)
			return 0;
		r->body = nb;
		x->alloc = want;
	}
	memcpy(r->body + r->body_len, data, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
	return n;
}

/* Trimmed copy of a header value; NULL on allocation failure. */
static char *header_value(const char *v, size_t n)
{
	while (n && (*v == ' ' || *v == '\t')) {
		v++;
		n--;
	}
	while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' ||
		     v[n - 1] == '\t'))
		n--;
	return strndup(v, n);
}

static void set_hdr(char **slot, const char *v, size_t n)
{
	free(*slot);
	*slot = header_value(v, n);
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
	struct xfer *x = ud;
	struct http_response *r = x->resp;
	size_t n = size * nmemb;
	const char *colon;
	size_t nlen;

	/* A new status line (after 100 Continue, say) starts afresh. */
	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		response_headers_reset(r);
		x->retry_after_ms_hdr = -1;
		return n;
	}
	colon = memchr(data, ':', n);
	if (!colon)
		return n;
	nlen = (size_t)(colon - data);
	colon++;
#define IS(name) (nlen == strlen(name) && strncasecmp(data, name, nlen) == 0)
	if (IS("location")) {
		set_hdr(&r->location, colon, n - nlen - 1);
	} else if (IS("azure-asyncoperation")) {
		set_hdr(&r->async_operation, colon, n - nlen - 1);
	} else if (IS("content-range")) {
		set_hdr(&r->content_range, colon, n - nlen - 1);
	} else if (IS("x-ms-error-code")) {
		set_hdr(&r->error_code, colon, n - nlen - 1);
	} else if (IS("www-authenticate")) {
		set_hdr(&r->www_authenticate, colon, n - nlen - 1);
	} else if (IS("x-ms-request-id")) {
		set_hdr(&r->request_id, colon, n - nlen - 1);
	} else if (IS("content-length")) {
		char *v = header_value(colon, n - nlen - 1);

		if (v)
			r->content_length = strtoll(v, NULL, 10);
		free(v);
	} else if (IS("retry-after")) {
		char *v = header_value(colon, n - nlen - 1);

		r->retry_after_ms = http_parse_retry_after(v, time(NULL));
		free(v);
	} else if (IS("retry-after-ms") || IS("x-ms-retry-after-ms")) {
		char *v = header_value(colon, n - nlen - 1);

		if (v && *v >= '0' && *v <= '9')
			x->retry_after_ms_hdr = strtol(v, NULL, 10);
		free(v);
	}
#undef IS
	return n;
}

static CURL *thread_easy(void)
{
	CURL *h;

	pthread_once(&key_once, key_make);
	h = pthread_getspecific(easy_key);
	if (!h) {
		h = curl_easy_init();
		if (h && pthread_setspecific(easy_key, h) != 0) {
			curl_easy_cleanup(h);
			h = NULL;
		}
	} else {
		/* Keeps live connections and the session cache. */
		curl_easy_reset(h);
	}
	return h;
}

static int curl_errno(CURLcode c, bool too_big)
{
	if (too_big)
		return -EFBIG;
	switch (c) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
		return -EHOSTUNREACH;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

/* One attempt: 0 with resp filled when an answer came, else -errno. */
static int attempt(CURL *h, const struct http_request *req,
		   struct curl_slist *hdrs, struct http_response *resp,
		   CURLcode *cc, char *errbuf, bool *too_big)
{
	struct xfer x = {
	    .resp = resp, .cap = cfg.max_body, .retry_after_ms_hdr = -1};
	const char *m = req->method ? req->method : "GET";
	long status = 0;

	http_setup_easy(h);
	errbuf[0] = '\0';
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_URL, req->url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
	if (req->no_proxy)
		curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	/* Set every time: the handle is reused. */
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
			 http_attempt_timeout_ms(req->timeout_ms));
	if (strcmp(m, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(m, "GET") != 0) {
		if (strcmp(m, "POST") != 0)
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m);
		if (req->body || strcmp(m, "POST") == 0 ||
		    strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0) {
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
					 (curl_off_t)req->body_len);
			curl_easy_setopt(h, CURLOPT_POSTFIELDS,
					 req->body ? req->body : "");
		}
	}
	response_headers_reset(resp);
	*cc = curl_easy_perform(h);
	*too_big = x.too_big;
	if (*cc != CURLE_OK)
		return curl_errno(*cc, x.too_big);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	resp->status = status;
	if (resp->retry_after_ms < 0 && x.retry_after_ms_hdr >= 0)
		resp->retry_after_ms = x.retry_after_ms_hdr;
	return 0;
}

int http_do(const struct http_request *req, struct http_response *resp,
	    struct rp_err *err)
{
	struct curl_slist *hdrs = NULL, *tmp;
	char errbuf[CURL_ERROR_SIZE];
	char safe[512];
	long long t0;
	CURL *h;
	int rc = -EIO, tries;

	memset(resp, 0, sizeof(*resp));
	resp->content_length = -1;
	resp->retry_after_ms = -1;
	if (!req || !req->url) {
		rp_err_set(err, 0, "InvalidRequest", "no URL to request");
		return -EINVAL;
	}
	h = thread_easy();
	if (!h) {
		rp_err_set(err, 0, "OutOfMemory", "cannot create curl handle");
		return -ENOMEM;
	}
	for (const char *const *p = req->headers; p && *p; p++) {
		tmp = curl_slist_append(hdrs, *p);
		if (!tmp)
			goto oom;
		hdrs = tmp;
	}
	/* No "Expect: 100-continue" round trip on PUT/POST bodies. */
	tmp = curl_slist_append(hdrs, "Expect:");
	if (!tmp)
		goto oom;
	hdrs = tmp;

	log_redact_url(req->url, safe, sizeof(safe));
	t0 = rp_mono_ms();
	tries = req->no_retry ? 0 : cfg.max_retries;
	for (int n = 0;; n++) {
		CURLcode cc = CURLE_OK;
		bool too_big = false, transient;
		long wait;

		http_response_free(resp);
		resp->content_length = -1;
		resp->retry_after_ms = -1;
		rc = attempt(h, req, hdrs, resp, &cc, errbuf, &too_big);
		if (rc == 0) {
			transient = http_status_transient(resp->status);
			log_debug("%s %s -> %ld",
				  req->method ? req->method : "GET", safe,
				  resp->status);
		} else {
			transient = !too_big && curl_code_transient(cc);
			log_debug("%s %s -> %s",
				  req->method ? req->method : "GET", safe,
				  curl_easy_strerror(cc));
		}
		if (!transient || n >= tries)
			break;
		wait = http_backoff_ms(n, rc == 0 ? resp->retry_after_ms : -1);
		if ((rp_mono_ms() - t0) + wait >
		    http_retry_budget_ms(cfg.max_retry_total_ms)) {
			log_info("%s %s: giving up retries after %ld ms",
				 req->method ? req->method : "GET", safe,
				 (long)(rp_mono_ms() - t0));
			break;
		}
		if (rc == 0)
			log_info("%s %s: HTTP %ld, retry %d in %ld ms",
				 req->method ? req->method : "GET", safe,
				 resp->status, n + 1, wait);
		else
			log_info("%s %s: %s, retry %d in %ld ms",
				 req->method ? req->method : "GET", safe,
				 curl_easy_strerror(cc), n + 1, wait);
		rp_sleep_ms(wait);
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(hdrs);
	if (rc == -EFBIG) {
		rp_err_set(err, 0, "ResponseTooLarge",
			   "response from %s exceeds %zu bytes", safe,
			   cfg.max_body);
	} else if (rc) {
		rp_err_set(err, 0, "ConnectionError", "%s: %s", safe,
			   errbuf[0] ? errbuf : "transfer failed");
		log_debug("request failed: %s", err ? err->message : safe);
	}
	return rc;
oom:
	curl_slist_free_all(hdrs);
	rp_err_set(err, 0, "OutOfMemory", "cannot build request headers");
	return -ENOMEM;
}

void http_set_retry_budget(long total_ms)
{
	atomic_store(&budget_override_ms, total_ms > 0 ? total_ms : 0);
}

long http_retry_budget_ms(long configured)
{
	long low = atomic_load(&budget_override_ms);

	return low > 0 && low < configured ? low : configured;
}

long http_attempt_timeout_ms(long wanted)
{
	long low = atomic_load(&budget_override_ms);

	if (wanted < 0)
		wanted = 0;
	return low > 0 && (wanted == 0 || wanted > low) ? low : wanted;
}
