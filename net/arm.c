/*
 * arm.c -- generic Azure Resource Manager client: requests, errors,
 * paging and long-running operations.
 *
 * Every request carries "Authorization: Bearer" from auth.c and a fresh
 * x-ms-client-request-id; a 401 drops the cached token (auth_invalidate)
 * and the request is sent once more with a new one.  The bearer header is
 * built in a stack buffer that is wiped before return, and it is only sent
 * to URLs whose scheme, host and port are the configured endpoint's, so a
 * nextLink or operation URL pointing elsewhere cannot leak the token.
 * Failures are logged with Azure's x-ms-request-id (never a header value
 * that could hold a secret) and the URL redacted.
 *
 * struct arm is immutable after arm_new; no locks.  JSON objects returned
 * to callers are theirs to json_object_put.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "arm.h"
#include "clock.h"
#include "log.h"

#define ARM_MAX_PAGES 10000
#define ARM_POLL_FIRST_MS 1000L
#define ARM_POLL_CAP_MS 15000L

struct arm {
	char *endpoint; /* without trailing '/' */
	char *scheme;
	char *host;
	char *port;
	struct auth *auth;
};

/* scheme, host (lower-cased) and port (default filled) of url. */
static int url_origin(const char *url, char **scheme, char **host, char **port)
{
	CURLU *u = curl_url();
	int rc = -EINVAL;

	*scheme = *host = *port = NULL;
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_SCHEME, scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, port, CURLU_DEFAULT_PORT) !=
		CURLUE_OK)
		goto out;
	rc = 0;
out:
	if (rc) {
		curl_free(*scheme);
		curl_free(*host);
		curl_free(*port);
		*scheme = *host = *port = NULL;
	}
	curl_url_cleanup(u);
	return rc;
}

struct arm *arm_new(const char *endpoint, struct auth *auth)
{
	struct arm *a;
	size_t n;

	if (!endpoint)
		return NULL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->endpoint = strdup(endpoint);
	if (!a->endpoint)
		goto fail;
	n = strlen(a->endpoint);
	while (n && a->endpoint[n - 1] == '/')
		a->endpoint[--n] = '\0';
	if (url_origin(a->endpoint, &a->scheme, &a->host, &a->port)) {
		log_error("invalid Resource Manager endpoint: %s", endpoint);
		goto fail;
	}
	a->auth = auth;
	return a;
fail:
	arm_free(a);
	return NULL;
}

void arm_free(struct arm *a)
{
	if (!a)
		return;
	free(a->endpoint);
	curl_free(a->scheme);
	curl_free(a->host);
	curl_free(a->port);
	free(a);
}

static bool same_origin(const struct arm *a, const char *url)
{
	char *s, *h, *p;
	bool ok;

	if (url_origin(url, &s, &h, &p))
		return false;
	ok = strcasecmp(s, a->scheme) == 0 && strcasecmp(h, a->host) == 0 &&
	     strcmp(p, a->port) == 0;
	curl_free(s);
	curl_free(h);
	curl_free(p);
	return ok;
}

int arm_url(const struct arm *a, const char *path, const char *api_version,
	    const char *extra_query, char **url, struct rp_err *err)
{
	CURLU *u;
	char *full = NULL, *query = NULL;
	char *got = NULL;
	int rc = -EINVAL;

	*url = NULL;
	if (!path || path[0] != '/' || strpbrk(path, "?# \t\r\n")) {
		rp_err_set(err, 0, "InvalidId", "not a resource path: %.200s",
			   path ? path : "(null)");
		return -EINVAL;
	}
	u = curl_url();
	if (!u)
		return -ENOMEM;
	if (asprintf(&full, "%s%s", a->endpoint, path) < 0) {
		full = NULL;
		rc = -ENOMEM;
		goto out;
	}
	if (asprintf(&query, "api-version=%s%s%s", api_version,
		     extra_query ? "&" : "",
		     extra_query ? extra_query : "") < 0) {
		query = NULL;
		rc = -ENOMEM;
		goto out;
	}
	/* The path is used as given: ids exactly as Azure returned them. */
	if (curl_url_set(u, CURLUPART_URL, full, CURLU_PATH_AS_IS) !=
		CURLUE_OK ||
	    curl_url_set(u, CURLUPART_QUERY, query, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_URL, &got, 0) != CURLUE_OK) {
		rp_err_set(err, 0, "InvalidId", "cannot build a URL for %.200s",
			   path);
		goto out;
	}
	*url = strdup(got);
	rc = *url ? 0 : -ENOMEM;
out:
	curl_free(got);
	free(full);
	free(query);
	curl_url_cleanup(u);
	return rc;
}

char *arm_escape(const char *name, struct rp_err *err)
{
	char *e, *copy;

	if (!name || !*name || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0 || strlen(name) > 260) {
		rp_err_set(err, 0, "InvalidResourceName",
			   "invalid resource name '%.100s'", name ? name : "");
		return NULL;
	}
	e = curl_easy_escape(NULL, name, 0);
	if (!e)
		return NULL;
	copy = strdup(e);
	curl_free(e);
	return copy;
}

static void make_request_id(char out[37])
{
	unsigned char b[16];

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
		unsigned long long t = (unsigned long long)time(NULL);

		for (size_t i = 0; i < sizeof(b); i++)
			b[i] = (unsigned char)(t >> (i % 8 * 8)) ^
			       (unsigned char)(i * 37);
	}
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
		 "%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
		 b[10], b[11], b[12], b[13], b[14], b[15]);
}

static int send_once(struct arm *a, const char *method, const char *url,
		     const char *body, struct http_response *resp,
		     struct rp_err *err)
{
	struct secret tok = {0};
	char authz[8192];
	char reqid[37];
	char reqid_hdr[80];
	const char *hdrs[6];
	size_t nh = 0;
	struct http_request req = {
	    .method = method,
	    .url = url,
	    .body = body,
	    .body_len = body ? strlen(body) : 0,
	};
	int rc;

	authz[0] = '\0';
	if (a->auth) {
		rc = auth_token(a->auth, AUTH_RESOURCE_ARM, &tok, err);
		if (rc)
			return rc;
		if (snprintf(authz, sizeof(authz), "Authorization: Bearer %s",
			     secret_value(&tok)) >= (int)sizeof(authz)) {
			secret_clear(&tok);
			explicit_bzero(authz, sizeof(authz));
			rp_err_set(err, 0, "InvalidToken",
				   "bearer token too long");
			return -EACCES;
		}
		secret_clear(&tok);
		hdrs[nh++] = authz;
	}
	make_request_id(reqid);
	snprintf(reqid_hdr, sizeof(reqid_hdr), "x-ms-client-request-id: %s",
		 reqid);
	hdrs[nh++] = reqid_hdr;
	hdrs[nh++] = "Accept: application/json";
	if (body)
		hdrs[nh++] = "Content-Type: application/json";
	hdrs[nh] = NULL;
	req.headers = hdrs;
	rc = http_do(&req, resp, err);
	explicit_bzero(authz, sizeof(authz));
	if (rc == 0 && resp->status >= 400)
		log_debug("ARM %s: HTTP %ld, client-request-id %s", method,
			  resp->status, reqid);
	return rc;
}

int arm_send(struct arm *a, const char *method, const char *url,
	     const char *body, struct http_response *resp, struct rp_err *err)
{
	char safe[512];
	int rc;

	/* resp is always freeable on return, even when no request went out. */
	memset(resp, 0, sizeof(*resp));
	resp->content_length = -1;
	resp->retry_after_ms = -1;
	if (!same_origin(a, url)) {
		log_redact_url(url, safe, sizeof(safe));
		log_error("refusing to send credentials to %s: not the "
			  "Resource Manager endpoint",
			  safe);
		rp_err_set(err, 0, "ForeignUrl",
			   "Azure returned a URL outside %s", a->endpoint);
		return -EIO;
	}
	rc = send_once(a, method, url, body, resp, err);
	if (rc == 0 && resp->status == 401 && a->auth) {
		log_info("Resource Manager rejected the token (401); "
			 "refreshing it");
		auth_invalidate(a->auth, AUTH_RESOURCE_ARM);
		http_response_free(resp);
		rc = send_once(a, method, url, body, resp, err);
	}
	return rc;
}

int arm_json_parse(const char *body, size_t len, json_object **out,
		   struct rp_err *err)
{
	struct json_tokener *tok;
	json_object *o;

	*out = NULL;
	if (!body || len == 0) {
		rp_err_set(err, 0, "InvalidResponse",
			   "empty response from Azure where JSON was expected");
		return -EIO;
	}
	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	/* No trailing commas or other leniencies: a body that is not JSON
	 * is a body we do not understand. */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, body, (int)len);
	if (!o || json_tokener_get_error(tok) != json_tokener_success ||
	    tok->char_offset < (int)len) {
		/* Trailing whitespace after the object is fine. */
		bool only_ws = o != NULL && json_tokener_get_error(tok) ==
						json_tokener_success;

		for (size_t i = only_ws ? (size_t)tok->char_offset : len;
		     i < len; i++) {
			if (body[i] != ' ' && body[i] != '\n' &&
			    body[i] != '\r' && body[i] != '\t') {
				only_ws = false;
				break;
			}
		}
		if (!only_ws) {
			rp_err_set(err, 0, "InvalidResponse",
				   "malformed JSON from Azure: %s",
				   o ? "trailing data"
				     : json_tokener_error_desc(
					   json_tokener_get_error(tok)));
			json_object_put(o);
			json_tokener_free(tok);
			return -EIO;
		}
	}
	json_tokener_free(tok);
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		rp_err_set(err, 0, "InvalidResponse",
			   "JSON from Azure is not an object");
		return -EIO;
	}
	*out = o;
	return 0;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

int arm_error_parse(int http_status, const char *body, const char *hdr_code,
		    struct rp_err *err)
{
	json_object *o = NULL, *e = NULL;
	const char *code = NULL, *msg = NULL;
	int errnum;

	if (body && *body &&
	    arm_json_parse(body, strlen(body), &o, NULL) == 0) {
		if (json_object_object_get_ex(o, "error", &e) &&
		    json_object_is_type(e, json_type_object)) {
			code = jstr(e, "code");
			msg = jstr(e, "message");
		} else if ((code = jstr(o, "error")) != NULL) {
			/* OAuth token endpoint shape. */
			msg = jstr(o, "error_description");
		} else {
			code = jstr(o, "code");
			msg = jstr(o, "message");
		}
	}
	if (!code || !*code)
		code = hdr_code;
	errnum = rp_errno_from_http(http_status, code);
	if (msg && *msg)
		rp_err_set(err, http_status, code, "%s", msg);
	else
		rp_err_set(err, http_status, code, "HTTP %d%s%s", http_status,
			   code ? " " : "", code ? code : "");
	json_object_put(o);
	return errnum;
}

int arm_errno_from_code(const char *code)
{
	static const struct {
		const char *code;
		int errnum;
	} map[] = {
	    {"NotFound", ENOENT},
	    {"ResourceNotFound", ENOENT},
	    {"ResourceGroupNotFound", ENOENT},
	    {"AuthorizationFailed", EACCES},
	    {"LinkedAuthorizationFailed", EACCES},
	    {"Forbidden", EACCES},
	    {"Conflict", EBUSY},
	    {"OperationNotAllowed", EBUSY},
	    {"DiskRestorePointUsedByCustomer", EBUSY},
	    {"VMRestorePointClientError", EBUSY},
	    {"BadRequest", EINVAL},
	    {"InvalidParameter", EINVAL},
	    {"TooManyRequests", EAGAIN},
	    {"OperationTimedOut", EAGAIN},
	};

	if (!code)
		return EIO;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (strcasecmp(code, map[i].code) == 0)
			return map[i].errnum;
	}
	return EIO;
}

int arm_call(struct arm *a, const char *method, const char *url,
	     const char *body, struct http_response *resp, struct rp_err *err)
{
	char safe[512];
	int rc, errnum;

	rc = arm_send(a, method, url, body, resp, err);
	if (rc)
		return rc;
	if (resp->status >= 200 && resp->status < 300)
		return 0;
	errnum = arm_error_parse((int)resp->status, resp->body,
				 resp->error_code, err);
	log_redact_url(url, safe, sizeof(safe));
	if (resp->status == 404)
		log_debug("ARM %s %s: HTTP 404, request-id %s", method, safe,
			  resp->request_id ? resp->request_id : "-");
	else
		log_msg(resp->status >= 500 || resp->status == 429
			    ? LOG_LVL_WARN
			    : LOG_LVL_INFO,
			"ARM %s %s: HTTP %ld %s, request-id %s", method, safe,
			resp->status, err ? err->code : "",
			resp->request_id ? resp->request_id : "-");
	if (resp->status < 400) {
		/* 1xx/3xx: nothing this client follows. */
		rp_err_set(err, (int)resp->status, "UnexpectedStatus",
			   "unexpected HTTP %ld from Resource Manager",
			   resp->status);
		return -EIO;
	}
	return -errnum;
}

int arm_get_json(struct arm *a, const char *url, json_object **out,
		 struct rp_err *err)
{
	struct http_response resp;
	int rc;

	*out = NULL;
	rc = arm_call(a, "GET", url, NULL, &resp, err);
	if (rc == 0)
		rc = arm_json_parse(resp.body, resp.body_len, out, err);
	http_response_free(&resp);
	return rc;
}

int arm_list(struct arm *a, const char *url, arm_item_fn fn, void *ud,
	     struct rp_err *err)
{
	char *next = strdup(url);
	int rc = 0, pages = 0;

	if (!next)
		return -ENOMEM;
	while (next) {
		json_object *page = NULL, *value, *nl;
		char *following = NULL;
		size_t n;

		if (++pages > ARM_MAX_PAGES) {
			rp_err_set(err, 0, "TooManyPages",
				   "listing did not end after %d pages",
				   ARM_MAX_PAGES);
			rc = -EIO;
			break;
		}
		rc = arm_get_json(a, next, &page, err);
		if (rc)
			break;
		if (!json_object_object_get_ex(page, "value", &value) ||
		    !json_object_is_type(value, json_type_array)) {
			rp_err_set(err, 0, "InvalidResponse",
				   "list response has no \"value\" array");
			json_object_put(page);
			rc = -EIO;
			break;
		}
		n = json_object_array_length(value);
		for (size_t i = 0; i < n && !rc; i++)
			rc = fn(json_object_array_get_idx(value, i), ud, err);
		if (!rc && json_object_object_get_ex(page, "nextLink", &nl) &&
		    json_object_is_type(nl, json_type_string) &&
		    json_object_get_string_len(nl) > 0) {
			following = strdup(json_object_get_string(nl));
			if (!following)
				rc = -ENOMEM;
			else if (strcmp(following, next) == 0) {
				rp_err_set(err, 0, "InvalidResponse",
					   "nextLink points to the same page");
				rc = -EIO;
			}
		}
		json_object_put(page);
		free(next);
		next = rc ? NULL : following;
		if (rc)
			free(following);
	}
	free(next);
	return rc;
}

int arm_lro_status_parse(const char *body, enum arm_lro_state *state,
			 json_object **out, struct rp_err *err)
{
	json_object *o = NULL, *e;
	const char *s;
	int rc;

	if (out)
		*out = NULL;
	rc = arm_json_parse(body, body ? strlen(body) : 0, &o, err);
	if (rc)
		return rc;
	s = jstr(o, "status");
	if (!s) {
		rp_err_set(err, 0, "InvalidResponse",
			   "operation status has no \"status\"");
		json_object_put(o);
		return -EIO;
	}
	if (strcasecmp(s, "Succeeded") == 0) {
		*state = ARM_LRO_SUCCEEDED;
	} else if (strcasecmp(s, "Failed") == 0 ||
		   strcasecmp(s, "Canceled") == 0 ||
		   strcasecmp(s, "Cancelled") == 0) {
		const char *code = NULL, *msg = NULL;

		*state = strcasecmp(s, "Failed") == 0 ? ARM_LRO_FAILED
						      : ARM_LRO_CANCELED;
		if (json_object_object_get_ex(o, "error", &e)) {
			code = jstr(e, "code");
			msg = jstr(e, "message");
		}
		rp_err_set(err, 0, code ? code : s, "operation %s%s%s", s,
			   msg ? ": " : "", msg ? msg : "");
	} else {
		*state = ARM_LRO_RUNNING;
	}
	if (out)
		*out = o;
	else
		json_object_put(o);
	return 0;
}

static long poll_wait(const struct http_response *r, long *backoff)
{
	long w = r->retry_after_ms >= 0 ? r->retry_after_ms : *backoff;

	*backoff =
	    *backoff * 2 > ARM_POLL_CAP_MS ? ARM_POLL_CAP_MS : *backoff * 2;
	return w;
}

/* Wait before the next poll; -ETIMEDOUT when the deadline would pass. */
static int wait_or_timeout(long wait, long deadline, long max_wait_ms,
			   struct rp_err *err)
{
	long left = deadline - rp_mono_ms();

	if (left <= 0) {
		rp_err_set(err, 0, "OperationTimedOut",
			   "operation still running after %ld s",
			   max_wait_ms / 1000);
		return -ETIMEDOUT;
	}
	rp_sleep_ms(wait < left ? wait : left);
	return 0;
}

/* Poll a Location URL until it stops answering 202. */
static int poll_location(struct arm *a, const char *url, long deadline,
			 long max_wait_ms, long retry_ms, json_object **body,
			 struct rp_err *err)
{
	long backoff = ARM_POLL_FIRST_MS;
	long wait = retry_ms >= 0 ? retry_ms : 0;
	int rc;

	for (;;) {
		struct http_response r;

		if (wait > 0) {
			rc = wait_or_timeout(wait, deadline, max_wait_ms, err);
			if (rc)
				return rc;
		}
		rc = arm_call(a, "GET", url, NULL, &r, err);
		if (rc) {
			http_response_free(&r);
			return rc;
		}
		if (r.status != 202) {
			if (body && r.body_len > 0 &&
			    arm_json_parse(r.body, r.body_len, body, err)) {
				http_response_free(&r);
				return -EIO;
			}
			http_response_free(&r);
			return 0;
		}
		wait = poll_wait(&r, &backoff);
		http_response_free(&r);
	}
}

int arm_lro_wait(struct arm *a, const struct http_response *first,
		 long max_wait_ms, json_object **status_body,
		 json_object **location_body, struct rp_err *err)
{
	long deadline = rp_mono_ms() + max_wait_ms;
	long backoff = ARM_POLL_FIRST_MS;
	long wait;
	const char *op = first->async_operation;
	const char *loc = first->location;
	int rc;

	if (status_body)
		*status_body = NULL;
	if (location_body)
		*location_body = NULL;
	if (op && *op) {
		wait = first->retry_after_ms >= 0 ? first->retry_after_ms
						  : ARM_POLL_FIRST_MS / 2;
		for (;;) {
			struct http_response r;
			enum arm_lro_state st;
			json_object *sb = NULL;

			rc = wait_or_timeout(wait, deadline, max_wait_ms, err);
			if (rc)
				return rc;
			rc = arm_call(a, "GET", op, NULL, &r, err);
			if (rc) {
				http_response_free(&r);
				return rc;
			}
			rc = arm_lro_status_parse(r.body, &st, &sb, err);
			if (rc) {
				http_response_free(&r);
				return rc;
			}
			if (st == ARM_LRO_RUNNING) {
				json_object_put(sb);
				wait = poll_wait(&r, &backoff);
				http_response_free(&r);
				continue;
			}
			http_response_free(&r);
			if (st != ARM_LRO_SUCCEEDED) {
				json_object *e = NULL;
				const char *code = NULL;

				if (json_object_object_get_ex(sb, "error", &e))
					code = jstr(e, "code");
				rc = -arm_errno_from_code(code);
				log_info("Azure operation ended %s: %s",
					 st == ARM_LRO_FAILED ? "Failed"
							      : "Canceled",
					 err ? err->message : "");
				json_object_put(sb);
				return rc;
			}
			if (status_body)
				*status_body = sb;
			else
				json_object_put(sb);
			break;
		}
		/* final-state-via: location; a failure here is not fatal,
		 * the status body may already hold the result. */
		if (location_body && loc && *loc) {
			struct rp_err lerr;

			rp_err_clear(&lerr);
			rc = poll_location(a, loc, deadline, max_wait_ms, -1,
					   location_body, &lerr);
			if (rc) {
				log_debug("final GET of operation Location "
					  "failed: %s",
					  lerr.message);
				if (location_body)
					*location_body = NULL;
			}
		}
		return 0;
	}
	if (loc && *loc && (first->status == 202 || first->status == 201))
		return poll_location(a, loc, deadline, max_wait_ms,
				     first->retry_after_ms >= 0
					 ? first->retry_after_ms
					 : ARM_POLL_FIRST_MS / 2,
				     location_body, err);
	return 0;
}
