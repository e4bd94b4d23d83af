/*
 * arm.h -- a generic Azure Resource Manager client (internal to net/).
 *
 * Knows the ARM conventions and nothing of restore points: bearer token on
 * every request (one 401 drops the token and retries once), a fresh
 * x-ms-client-request-id per request, ARM error bodies turned into an
 * rp_err and an errno, paging by following nextLink verbatim, and
 * long-running operations polled through Azure-AsyncOperation or Location
 * honouring Retry-After, with a bounded wait.  Credentials are only ever
 * sent to the configured endpoint's scheme, host and port.
 * Thread-safe: a struct arm is immutable after arm_new.
 */
#ifndef RPFS_ARM_H
#define RPFS_ARM_H

#include <stdbool.h>
#include <json-c/json.h>

#include "auth.h"
#include "err.h"
#include "http.h"

struct arm;

/* endpoint e.g. "https://management.azure.com" (a trailing '/' is fine). */
struct arm *arm_new(const char *endpoint, struct auth *auth);
void arm_free(struct arm *a);

/*
 * Build endpoint + path + "?api-version=V" (+ "&" extra_query) with the
 * curl URL API.  path must start with '/' and is used as given (ids from
 * Azure, and names already escaped with arm_escape).  *url is malloc'd.
 */
int arm_url(const struct arm *a, const char *path, const char *api_version,
	    const char *extra_query, char **url, struct rp_err *err);

/* A name percent-encoded for one path segment; NULL (-EINVAL) for names
 * that cannot be a segment ("", ".", ".." or too long).  Free with free(). */
char *arm_escape(const char *name, struct rp_err *err);

/*
 * One request with the bearer token; body is JSON or NULL.  Returns 0 when
 * an HTTP answer arrived (any status; resp holds it) or -errno.
 */
int arm_send(struct arm *a, const char *method, const char *url,
	     const char *body, struct http_response *resp, struct rp_err *err);

/*
 * Like arm_send, but a status >= 400 becomes -errno with err filled from
 * the ARM error body (resp still holds the answer and must be freed).
 */
int arm_call(struct arm *a, const char *method, const char *url,
	     const char *body, struct http_response *resp, struct rp_err *err);

/* GET url and parse the body as a JSON object (*out: caller puts it). */
int arm_get_json(struct arm *a, const char *url, json_object **out,
		 struct rp_err *err);

/* Called once per element of every page's "value" array. */
typedef int (*arm_item_fn)(json_object *item, void *ud, struct rp_err *err);

/* GET url and every nextLink after it, verbatim; -EIO on a page without a
 * "value" array or on a nextLink loop. */
int arm_list(struct arm *a, const char *url, arm_item_fn fn, void *ud,
	     struct rp_err *err);

/*
 * Finish a long-running operation whose first answer is first (2xx).
 * 200/204 without an operation header: done at once.  Otherwise poll
 * Azure-AsyncOperation (status body) or Location (202 = running) until a
 * terminal state or max_wait_ms.  On success *status_body (if non-NULL)
 * receives the last operation status body or NULL, and *location_body (if
 * non-NULL) the body of the final GET of Location when the operation
 * named one (final-state-via: location), or NULL.  Failed/Canceled give
 * -errno with the operation's error code and message; -ETIMEDOUT when
 * max_wait_ms passes first.
 */
int arm_lro_wait(struct arm *a, const struct http_response *first,
		 long max_wait_ms, json_object **status_body,
		 json_object **location_body, struct rp_err *err);

/* --- parsers, exposed for unit tests --- */

/*
 * Fill err from an ARM error body ({"error":{"code","message"}}, or a
 * token endpoint's {"error","error_description"}), falling back to
 * hdr_code (x-ms-error-code) and a generic message.  Returns the positive
 * errno for status and code.
 */
int arm_error_parse(int http_status, const char *body, const char *hdr_code,
		    struct rp_err *err);

enum arm_lro_state {
	ARM_LRO_RUNNING,
	ARM_LRO_SUCCEEDED,
	ARM_LRO_FAILED,
	ARM_LRO_CANCELED,
};

/*
 * Parse an Azure-AsyncOperation status body.  Returns 0 and sets *state
 * (and, for Failed/Canceled, err from its "error"), or -EIO when the body
 * is not a status object.  With out non-NULL the parsed object is
 * returned too (caller puts it).
 */
int arm_lro_status_parse(const char *body, enum arm_lro_state *state,
			 json_object **out, struct rp_err *err);

/* The errno for a failed operation's error code (EIO when unknown). */
int arm_errno_from_code(const char *code);

/* Parse body as a JSON object; -EIO with err on anything else. */
int arm_json_parse(const char *body, size_t len, json_object **out,
		   struct rp_err *err);

#endif
