/*
 * http.h -- synchronous HTTPS requests on libcurl, for Resource Manager,
 * token endpoints and single blob requests.  (Bulk parallel blob reads use
 * blob.h, which shares this module's TLS settings through http_setup_easy.)
 *
 * Policy lives here, once: TLS always verified (system CAs plus the
 * configured cafile), connect and stall timeouts, response bodies capped,
 * retries with exponential backoff and jitter on 429, 500, 502, 503, 504
 * and connection errors, honouring Retry-After, within a bounded total
 * time.  Connections are reused: each thread keeps its own curl handle.
 * URLs are logged only through log_redact_url; header values never.
 */
#ifndef RPFS_HTTP_H
#define RPFS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <curl/curl.h>

#include "err.h"

/* A zero field means "the default" below. */
struct http_config {
	const char *cafile;	 /* extra CA bundle, or NULL */
	long connect_timeout_ms; /* default 10000 */
	long stall_timeout_s; /* abort when < 1 byte/s for this long; default 30
			       */
	int max_retries;      /* default 6; negative: no retries */
	long
	    max_retry_total_ms; /* give up retrying after this; default 60000 */
	size_t max_body; /* cap on a buffered response body; default 16 MiB */
};

/* Once at start-up, before threads. Copies the config. Returns 0 or -errno. */
int http_global_init(const struct http_config *cfg);
void http_global_cleanup(void);
/* Lower the retry budget of every request from now on, http_do's and the
 * blob engine's (0: back to the configured one).  At unmount: a service
 * that does not answer must not hold the process for a full budget per
 * remaining call. */
void http_set_retry_budget(long total_ms);
/*
 * The one retry policy's time limits, asked by http_do and the blob engine
 * alike (one atomic load each).  http_retry_budget_ms: how long a request
 * whose own budget is `configured` ms may keep retrying, counted from its
 * first attempt.  http_attempt_timeout_ms: the whole-transfer limit of one
 * attempt that wants `wanted` ms (<= 0: none), capped while a lowered budget
 * is in force, since a service that takes a request and never answers
 * would otherwise hold it for the stall timeout.
 */
long http_retry_budget_ms(long configured);
long http_attempt_timeout_ms(long wanted);
const struct http_config *http_config_get(void);

struct http_request {
	const char
	    *method;	 /* "GET", "PUT", "POST", "PATCH", "DELETE", "HEAD" */
	const char *url; /* absolute, already escaped */
	const char *const
	    *headers;	  /* NULL-terminated "Name: value" list, or NULL */
	const char *body; /* may be NULL */
	size_t body_len;
	bool no_retry;	 /* caller handles every status itself */
	bool no_proxy;	 /* never through a proxy (instance metadata) */
	long timeout_ms; /* whole-transfer limit per attempt; 0: none */
};

struct http_response {
	long status; /* final HTTP status; 0 if no answer */
	char *body;  /* NUL-terminated; NULL for none */
	size_t body_len;
	char *location;		  /* Location header or NULL */
	char *async_operation;	  /* Azure-AsyncOperation header or NULL */
	char *content_range;	  /* Content-Range header or NULL */
	char *error_code;	  /* x-ms-error-code header or NULL */
	char *www_authenticate;	  /* WWW-Authenticate header or NULL */
	char *request_id;	  /* x-ms-request-id header or NULL */
	long long content_length; /* -1 when absent */
	long retry_after_ms; /* parsed Retry-After (seconds or HTTP-date), -1
				when absent */
};

/*
 * Perform req, retrying transient failures per the policy above.  On
 * return resp holds the last answer (free it with http_response_free),
 * whatever its status: a 4xx is not an error of this function.  Returns
 * 0 when an HTTP answer was received, or a negative errno (-EIO, -ETIMEDOUT,
 * -EHOSTUNREACH, -EFBIG for an over-long body) with err filled.
 */
int http_do(const struct http_request *req, struct http_response *resp,
	    struct rp_err *err);
void http_response_free(struct http_response *resp);

/* Apply the TLS and timeout policy to a curl easy handle made elsewhere. */
void http_setup_easy(CURL *easy);

/* Milliseconds to wait before retry attempt n (0-based), honouring
 * retry_after_ms when >= 0; exponential with jitter, capped. */
long http_backoff_ms(int attempt, long retry_after_ms);

/* A Retry-After value (delta seconds or HTTP-date, relative to now) in
 * milliseconds, capped at two minutes; -1 when absent or unparsable. */
long http_parse_retry_after(const char *value, time_t now);

/* True for statuses worth retrying: 408, 429, 500, 502, 503, 504. */
bool http_status_transient(long status);

#endif
