/*
 * test_net_loopback.c -- the HTTP policy, the ARM client and the az model
 * against a scripted HTTP server on 127.0.0.1 inside this process: what a
 * user of the mount relies on when Azure throttles, drops connections,
 * rotates tokens, pages lists, runs long operations, answers nonsense, or
 * when a retried PUT meets its own first attempt.  The server is
 * loopback.h's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "arm.h"
#include "auth.h"
#include "az.h"
#include "check.h"
#include "http.h"
#include "loopback.h"

static char tmpdir[] = "/tmp/rpfs-loop-XXXXXX";
static char token_path[256];

static void write_token(const char *tok)
{
	FILE *f = fopen(token_path, "w");
	struct timespec ts[2];
	static time_t bump;

	if (!f)
		return;
	fprintf(f, "%s\n", tok);
	fclose(f);
	/* A distinct mtime per write, as a real refresher would give. */
	ts[0].tv_sec = ts[1].tv_sec = time(NULL) + ++bump;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	utimensat(-100 /* AT_FDCWD */, token_path, ts, 0);
}

/* ---- http_do ---- */

static int calls;

static void h_503_twice(const struct req *rq, struct reply *rp)
{
	if (++calls <= 2) {
		rp->status = 503;
		add_header(rp, "Retry-After", calls == 1 ? "1" : "0");
		return;
	}
	reply_json(rp, 200, "{\"ok\":true}");
}

static void test_throttled_request_waits_retry_after_and_succeeds(void)
{
	char url[128];
	struct http_request rq = {.method = "GET", .url = url};
	struct http_response rs;
	double t0 = now_s();

	snprintf(url, sizeof(url), "%s/x", base);
	calls = 0;
	use(h_503_twice);
	CHECK_INT(http_do(&rq, &rs, NULL), 0);
	CHECK_INT(rs.status, 200);
	CHECK_STR(rs.body, "{\"ok\":true}");
	CHECK_INT(requests(), 3);
	CHECK(now_s() - t0 >= 0.95); /* Retry-After: 1 was honoured */
	http_response_free(&rs);
}

static void h_drop_first(const struct req *rq, struct reply *rp)
{
	if (++calls == 1) {
		rp->drop = true;
		return;
	}
	reply_json(rp, 200, "{}");
}

static void test_dropped_connection_is_retried(void)
{
	char url[128];
	struct http_request rq = {.method = "GET", .url = url};
	struct http_response rs;

	snprintf(url, sizeof(url), "%s/drop", base);
	calls = 0;
	use(h_drop_first);
	CHECK_INT(http_do(&rq, &rs, NULL), 0);
	CHECK_INT(rs.status, 200);
	CHECK_INT(requests(), 2);
	http_response_free(&rs);
}

/* A service that takes the request and never answers in time. */
/* A service that takes the request and never answers. */
static void h_hang(const struct req *rq, struct reply *rp)
{
	(void)rq;
	rp->hang = true;
}

/* After the unmount (http_set_retry_budget), one attempt that hangs may
 * not outlast the budget: the stall timeout alone would be 30 s. */
static void test_a_hung_attempt_is_cut_at_the_lowered_budget(void)
{
	char url[128];
	struct http_request rq = {.method = "POST", .url = url};
	struct http_response rs;
	struct rp_err err;
	double t0;
	int rc;

	snprintf(url, sizeof(url), "%s/hang", base);
	use(h_hang);
	http_set_retry_budget(1000);
	t0 = now_s();
	rc = http_do(&rq, &rs, &err);
	http_set_retry_budget(0);
	CHECK(rc < 0);
	CHECK(now_s() - t0 < 3.0);
	CHECK(err.code[0] != 0);
	http_response_free(&rs);
}

static void h_always_429(const struct req *rq, struct reply *rp)
{
	rp->status = 429;
	add_header(rp, "Retry-After", "0");
	reply_json(rp, 429,
		   "{\"error\":{\"code\":\"TooManyRequests\","
		   "\"message\":\"slow down\"}}");
}

static void test_retries_are_bounded(void)
{
	char url[128];
	struct http_request rq = {.method = "GET", .url = url};
	struct http_response rs;

	snprintf(url, sizeof(url), "%s/busy", base);
	use(h_always_429);
	CHECK_INT(http_do(&rq, &rs, NULL), 0);
	CHECK_INT(rs.status, 429);
	CHECK_INT(requests(), http_config_get()->max_retries + 1);
	http_response_free(&rs);
	/* no_retry: one request only. */
	rq.no_retry = true;
	use(h_always_429);
	CHECK_INT(http_do(&rq, &rs, NULL), 0);
	CHECK_INT(requests(), 1);
	http_response_free(&rs);
}

static void h_404(const struct req *rq, struct reply *rp)
{
	reply_json(rp, 404,
		   "{\"error\":{\"code\":\"NotFound\",\"message\":"
		   "\"nope\"}}");
}

static void h_huge(const struct req *rq, struct reply *rp)
{
	rp->status = 200;
	rp->body_len = 3u << 20;
	rp->body = calloc(1, rp->body_len);
	if (rp->body)
		memset(rp->body, 'a', rp->body_len);
	else
		rp->body_len = 0;
}

static void test_client_errors_are_not_retried_and_bodies_capped(void)
{
	char url[128];
	struct http_request rq = {.method = "GET", .url = url};
	struct http_response rs;
	struct rp_err e;

	snprintf(url, sizeof(url), "%s/none", base);
	use(h_404);
	CHECK_INT(http_do(&rq, &rs, NULL), 0);
	CHECK_INT(rs.status, 404);
	CHECK_INT(requests(), 1);
	http_response_free(&rs);
	use(h_huge);
	rp_err_clear(&e);
	CHECK_INT(http_do(&rq, &rs, &e), -EFBIG);
	CHECK_INT(requests(), 1);
	CHECK_STR(e.code, "ResponseTooLarge");
	http_response_free(&rs);
}

static void test_refused_connection_gives_clear_error(void)
{
	struct http_request rq = {.method = "GET",
				  .url = "http://127.0.0.1:1/?sig=SECRET",
				  .no_retry = true};
	struct http_response rs;
	struct rp_err e;

	rp_err_clear(&e);
	CHECK_INT(http_do(&rq, &rs, &e), -EHOSTUNREACH);
	CHECK_STR(e.code, "ConnectionError");
	CHECK(strstr(e.message, "SECRET") == NULL);
	CHECK(strstr(e.message, "sig=REDACTED") != NULL);
	http_response_free(&rs);
}

/* ---- ARM: tokens, paging, operations ---- */

static void h_token_rotation(const struct req *rq, struct reply *rp)
{
	if (strcmp(rq->authz, "Bearer new-token") != 0) {
		/* An outside refresher writes the new token meanwhile. */
		write_token("new-token");
		add_header(rp, "WWW-Authenticate", "Bearer");
		reply_json(rp, 401,
			   "{\"error\":{\"code\":\"InvalidAuthentic"
			   "ationTokenExpired\",\"message\":\"expired"
			   "\"}}");
		return;
	}
	reply_json(rp, 200, "{\"id\":\"/x\"}");
}

static void h_token_never(const struct req *rq, struct reply *rp)
{
	reply_json(rp, 401,
		   "{\"error\":{\"code\":\"InvalidAuthentication"
		   "Token\",\"message\":\"The access token is "
		   "invalid.\"}}");
}

static void test_expired_token_is_refreshed_from_the_file(struct arm *arm)
{
	char url[128];
	json_object *o = NULL;
	struct rp_err e;

	snprintf(url, sizeof(url), "%s/subscriptions/s?api-version=1", base);
	write_token("old-token");
	use(h_token_rotation);
	CHECK_INT(arm_get_json(arm, url, &o, NULL), 0);
	CHECK_INT(requests(), 2);
	CHECK_STR(last_req.authz, "Bearer new-token");
	/* Each request has its own client request id. */
	CHECK(ids_seen[0][0] != '\0');
	CHECK(strlen(ids_seen[0]) == 36);
	CHECK(strcmp(ids_seen[0], ids_seen[1]) != 0);
	json_object_put(o);
	/* A token that stays invalid: one retry only, then EACCES. */
	use(h_token_never);
	rp_err_clear(&e);
	CHECK_INT(arm_get_json(arm, url, &o, &e), -EACCES);
	CHECK_INT(requests(), 2);
	CHECK_STR(e.code, "InvalidAuthenticationToken");
	CHECK_INT(e.http_status, 401);
}

static void h_pages(const struct req *rq, struct reply *rp)
{
	char body[512];

	if (strstr(rq->target, "page2")) {
		reply_json(rp, 200,
			   "{\"value\":[{\"id\":\"/c\"}],"
			   "\"nextLink\":null}");
		return;
	}
	snprintf(body, sizeof(body),
		 "{\"value\":[{\"id\":\"/a\"},{\"id\":\"/b\"}],\"nextLink\":"
		 "\"%s/page2?api-version=2025-04-01&%%24skiptoken=Zm9v%%3D\"}",
		 base);
	reply_json(rp, 200, body);
}

static int count_item(json_object *it, void *ud, struct rp_err *err)
{
	(*(int *)ud)++;
	return 0;
}

static void h_foreign_next(const struct req *rq, struct reply *rp)
{
	reply_json(rp, 200,
		   "{\"value\":[],\"nextLink\":\"http://evil.example"
		   "/steal\"}");
}

static void h_no_value(const struct req *rq, struct reply *rp)
{
	reply_json(rp, 200, "{\"values\":[]}");
}

static void test_lists_follow_next_link_verbatim(struct arm *arm)
{
	char url[128];
	int n = 0;
	struct rp_err e;

	write_token("new-token");
	snprintf(url, sizeof(url), "%s/list?api-version=1", base);
	use(h_pages);
	CHECK_INT(arm_list(arm, url, count_item, &n, NULL), 0);
	CHECK_INT(n, 3);
	CHECK_INT(requests(), 2);
	CHECK_STR(last_req.target,
		  "/page2?api-version=2025-04-01&%24skiptoken=Zm9v%3D");
	/* The token never goes to another host. */
	use(h_foreign_next);
	rp_err_clear(&e);
	CHECK_INT(arm_list(arm, url, count_item, &n, &e), -EIO);
	CHECK_INT(requests(), 1);
	CHECK_STR(e.code, "ForeignUrl");
	use(h_no_value);
	CHECK_INT(arm_list(arm, url, count_item, &n, NULL), -EIO);
}

static int polls;

static void h_lro(const struct req *rq, struct reply *rp)
{
	char hdr[256];

	if (strcmp(rq->method, "DELETE") == 0) {
		polls = 0;
		rp->status = 202;
		snprintf(hdr, sizeof(hdr), "%s/op/1?api-version=x", base);
		add_header(rp, "Azure-AsyncOperation", hdr);
		snprintf(hdr, sizeof(hdr), "%s/loc/1?api-version=x", base);
		add_header(rp, "Location", hdr);
		add_header(rp, "Retry-After", "0");
		return;
	}
	if (strstr(rq->target, "/op/1")) {
		add_header(rp, "Retry-After", "0");
		reply_json(rp, 200,
			   ++polls < 3 ? "{\"status\":\"InProgress\"}"
				       : "{\"status\":\"Succeeded\"}");
		return;
	}
	rp->status = 500;
}

static void h_lro_fail(const struct req *rq, struct reply *rp)
{
	char hdr[256];

	if (strcmp(rq->method, "DELETE") == 0) {
		rp->status = 202;
		snprintf(hdr, sizeof(hdr), "%s/op/2", base);
		add_header(rp, "Azure-AsyncOperation", hdr);
		add_header(rp, "Retry-After", "0");
		return;
	}
	reply_json(rp, 200,
		   "{\"status\":\"Failed\",\"error\":{\"code\":"
		   "\"DiskRestorePointUsedByCustomer\",\"message\":"
		   "\"a SAS is active\"}}");
}

static void h_lro_location(const struct req *rq, struct reply *rp)
{
	char hdr[256];

	if (strcmp(rq->method, "DELETE") == 0) {
		polls = 0;
		rp->status = 202;
		snprintf(hdr, sizeof(hdr), "%s/loc/9", base);
		add_header(rp, "Location", hdr);
		add_header(rp, "Retry-After", "0");
		return;
	}
	if (++polls < 2) {
		rp->status = 202;
		add_header(rp, "Retry-After", "0");
		return;
	}
	rp->status = 204;
}

static void test_long_running_operations(struct arm *arm)
{
	char url[128];
	struct http_response rs;
	struct rp_err e;

	snprintf(url, sizeof(url), "%s/res?api-version=1", base);
	use(h_lro);
	CHECK_INT(arm_call(arm, "DELETE", url, NULL, &rs, NULL), 0);
	CHECK_INT(arm_lro_wait(arm, &rs, 10000, NULL, NULL, NULL), 0);
	CHECK_INT(polls, 3);
	http_response_free(&rs);

	use(h_lro_fail);
	CHECK_INT(arm_call(arm, "DELETE", url, NULL, &rs, NULL), 0);
	rp_err_clear(&e);
	CHECK_INT(arm_lro_wait(arm, &rs, 10000, NULL, NULL, &e), -EBUSY);
	CHECK_STR(e.code, "DiskRestorePointUsedByCustomer");
	CHECK(strstr(e.message, "a SAS is active") != NULL);
	http_response_free(&rs);

	use(h_lro_location);
	CHECK_INT(arm_call(arm, "DELETE", url, NULL, &rs, NULL), 0);
	CHECK_INT(arm_lro_wait(arm, &rs, 10000, NULL, NULL, NULL), 0);
	CHECK_INT(polls, 2);
	http_response_free(&rs);
}

static void h_lro_forever(const struct req *rq, struct reply *rp)
{
	char hdr[256];

	if (strcmp(rq->method, "DELETE") == 0) {
		rp->status = 202;
		snprintf(hdr, sizeof(hdr), "%s/op/3", base);
		add_header(rp, "Azure-AsyncOperation", hdr);
		return;
	}
	add_header(rp, "Retry-After", "1");
	reply_json(rp, 200, "{\"status\":\"InProgress\"}");
}

static void test_operation_wait_is_bounded(struct arm *arm)
{
	char url[128];
	struct http_response rs;
	struct rp_err e;
	double t0 = now_s();

	snprintf(url, sizeof(url), "%s/res?api-version=1", base);
	use(h_lro_forever);
	CHECK_INT(arm_call(arm, "DELETE", url, NULL, &rs, NULL), 0);
	rp_err_clear(&e);
	CHECK_INT(arm_lro_wait(arm, &rs, 2500, NULL, NULL, &e), -ETIMEDOUT);
	CHECK(now_s() - t0 < 6.0);
	CHECK(strstr(e.message, "still running") != NULL);
	http_response_free(&rs);
}

static void h_imds(const struct req *rq, struct reply *rp)
{
	CHECK(strncmp(rq->target, "/metadata/identity/oauth2/token?", 32) == 0);
	CHECK(strstr(rq->target, "resource=https%3A%2F%2Fmanagement.azure.com"
				 "%2F") != NULL);
	reply_json(rp, 200,
		   "{\"access_token\":\"imds-token\",\"expires_on\":"
		   "\"4102444800\",\"expires_in\":\"3599\"}");
}

static void test_instance_metadata_never_goes_through_a_proxy(void)
{
	struct auth_config ac = {.kind = AUTH_MANAGED_IDENTITY};
	struct auth *a = auth_new(&ac);
	struct secret t = {0};
	char url[128];
	struct http_request rq = {
	    .method = "GET", .url = url, .no_retry = true};
	struct http_response rs;

	/* A proxy that does not exist: anything sent through it fails. */
	setenv("http_proxy", "http://127.0.0.1:1", 1);
	setenv("RPFS_IMDS_ENDPOINT", base, 1);
	unsetenv("IDENTITY_ENDPOINT");
	unsetenv("no_proxy");
	unsetenv("NO_PROXY");
	use(h_imds);
	CHECK_INT(auth_token(a, AUTH_RESOURCE_ARM, &t, NULL), 0);
	CHECK_STR(secret_value(&t), "imds-token");
	CHECK_INT(requests(), 1);
	/* Control: an ordinary request does honour the proxy variable. */
	snprintf(url, sizeof(url), "%s/x", base);
	CHECK(http_do(&rq, &rs, NULL) != 0);
	http_response_free(&rs);
	unsetenv("http_proxy");
	unsetenv("RPFS_IMDS_ENDPOINT");
	secret_clear(&t);
	auth_free(a);
}

static void test_no_credentials_fail_cleanly_before_any_request(void)
{
	struct auth_config ac = {.kind = AUTH_TOKEN_FILE,
				 .token_file = "/nonexistent/rpfs-token"};
	struct auth *a = auth_new(&ac);
	struct arm *arm = arm_new(base, a);
	char url[128];
	json_object *o = NULL;
	struct http_response rs;
	struct rp_err e;

	snprintf(url, sizeof(url), "%s/subscriptions/s?api-version=1", base);
	use(h_404);
	rp_err_clear(&e);
	CHECK_INT(arm_get_json(arm, url, &o, &e), -EACCES);
	CHECK_NULL(o);
	CHECK(strstr(e.message, "/nonexistent/rpfs-token") != NULL);
	CHECK_INT(arm_call(arm, "DELETE", url, NULL, &rs, NULL), -EACCES);
	http_response_free(&rs); /* always freeable */
	CHECK_INT(requests(), 0);
	arm_free(arm);
	auth_free(a);
}

/* ---- az: grants, idempotent PUT, errors ---- */

#define DRP_ID                                                                 \
	"/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/"    \
	"restorePointCollections/c/restorePoints/rp/diskRestorePoints/d_1"

static void h_grant_202(const struct req *rq, struct reply *rp)
{
	char hdr[256];

	if (strcmp(rq->method, "POST") == 0) {
		CHECK(strstr(rq->target,
			     "/beginGetAccess?api-version=2025-01-02") != NULL);
		CHECK(strstr(rq->body, "\"durationInSeconds\":600") != NULL);
		rp->status = 202;
		snprintf(hdr, sizeof(hdr), "%s/op/g", base);
		add_header(rp, "Azure-AsyncOperation", hdr);
		/* Location as DiskRP writes it: not even a valid query. */
		snprintf(hdr, sizeof(hdr),
			 "%s/locations/x/operations/g&monitor=true&"
			 "api-version=2025-01-02",
			 base);
		add_header(rp, "Location", hdr);
		add_header(rp, "Retry-After", "0");
		return;
	}
	if (strstr(rq->target, "/op/g")) {
		reply_json(rp, 200, "{\"status\":\"Succeeded\"}");
		return;
	}
	CHECK(strstr(rq->target, "operations/g&monitor=true") != NULL);
	reply_json(rp, 200,
		   "{\"accessSAS\":\"https://md-x.blob/c/abcd?sv=1&"
		   "sig=LOC\"}");
}

static void h_grant_in_status(const struct req *rq, struct reply *rp)
{
	char hdr[256];

	if (strcmp(rq->method, "POST") == 0) {
		rp->status = 202;
		snprintf(hdr, sizeof(hdr), "%s/op/s", base);
		add_header(rp, "Azure-AsyncOperation", hdr);
		add_header(rp, "Retry-After", "0");
		return;
	}
	reply_json(rp, 200,
		   "{\"status\":\"Succeeded\",\"properties\":{"
		   "\"output\":{\"accessSAS\":\"https://md-y/c/d?"
		   "sig=STATUS\"}}}");
}

static void h_grant_200(const struct req *rq, struct reply *rp)
{
	reply_json(rp, 200, "{\"accessSAS\":\"https://md-z/c/d?sig=NOW\"}");
}

static void test_grant_access_finds_the_sas(struct az *az)
{
	struct secret s = {0};

	use(h_grant_202);
	CHECK_INT(az_grant_access(az, DRP_ID, 600, &s, NULL), 0);
	CHECK_STR(secret_value(&s), "https://md-x.blob/c/abcd?sv=1&sig=LOC");
	use(h_grant_in_status);
	CHECK_INT(az_grant_access(az, DRP_ID, 600, &s, NULL), 0);
	CHECK_STR(secret_value(&s), "https://md-y/c/d?sig=STATUS");
	use(h_grant_200);
	CHECK_INT(az_grant_access(az, DRP_ID, 600, &s, NULL), 0);
	CHECK_STR(secret_value(&s), "https://md-z/c/d?sig=NOW");
	CHECK_INT(requests(), 1);
	secret_clear(&s);
}

#define COLL_ID                                                                \
	"/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/"    \
	"restorePointCollections/c"

static void h_put_conflict_exists(const struct req *rq, struct reply *rp)
{
	if (strcmp(rq->method, "PUT") == 0) {
		reply_json(rp, 409,
			   "{\"error\":{\"code\":\"Conflict\","
			   "\"message\":\"exists\"}}");
		return;
	}
	CHECK(strstr(rq->target, "$expand=instanceView") != NULL);
	reply_json(rp, 200,
		   "{\"id\":\"" COLL_ID "/restorePoints/rp2\","
		   "\"name\":\"rp2\",\"properties\":{"
		   "\"provisioningState\":\"Creating\"}}");
}

static void h_put_conflict_absent(const struct req *rq, struct reply *rp)
{
	if (strcmp(rq->method, "PUT") == 0) {
		reply_json(rp, 409,
			   "{\"error\":{\"code\":\"OperationNot"
			   "Allowed\",\"message\":\"busy VM\"}}");
		return;
	}
	reply_json(rp, 404, "{\"error\":{\"code\":\"NotFound\"}}");
}

static void h_put_201(const struct req *rq, struct reply *rp)
{
	CHECK(strstr(rq->body, "\"excludeDisks\":[{\"id\":\"/d/x\"}]") != NULL);
	CHECK(strstr(rq->target, "/restorePoints/rp%20new?") != NULL);
	reply_json(rp, 201,
		   "{\"id\":\"" COLL_ID "/restorePoints/rp new\","
		   "\"properties\":{\"provisioningState\":"
		   "\"Creating\"}}");
}

static void test_restore_point_put_is_idempotent(struct az *az)
{
	struct az_restore_point rp;
	struct rp_err e;
	const char *ex[] = {"/d/x"};

	use(h_put_conflict_exists);
	CHECK_INT(az_create_restore_point(az, COLL_ID, "rp2", NULL, 0, NULL,
					  &rp, NULL),
		  0);
	CHECK_STR(rp.name, "rp2");
	CHECK_STR(rp.provisioning_state, "Creating");
	az_restore_point_free(&rp);
	use(h_put_conflict_absent);
	rp_err_clear(&e);
	CHECK_INT(
	    az_create_restore_point(az, COLL_ID, "rp2", NULL, 0, NULL, &rp, &e),
	    -EBUSY);
	CHECK_STR(e.code, "OperationNotAllowed");
	use(h_put_201);
	CHECK_INT(az_create_restore_point(az, COLL_ID, "rp new", ex, 1, NULL,
					  &rp, NULL),
		  0);
	CHECK_STR(rp.name, "rp new");
	CHECK_INT(requests(), 1); /* not waiting for the operation */
	az_restore_point_free(&rp);
}

static void h_malformed(const struct req *rq, struct reply *rp)
{
	reply_json(rp, 200,
		   "{\"id\": \"/subscriptions/sub/resourceGroups/rg"
		   "/providers/Microsoft.Compute/restorePointCollec");
}

static void h_forbidden(const struct req *rq, struct reply *rp)
{
	reply_json(rp, 403,
		   "{\"error\":{\"code\":\"AuthorizationFailed\","
		   "\"message\":\"The client does not have "
		   "authorization\"}}");
}

static void h_groups(const struct req *rq, struct reply *rp)
{
	CHECK(strstr(rq->target, "/subscriptions/sub/resourcegroups?api-"
				 "version=2021-04-01") != NULL);
	reply_json(rp, 200,
		   "{\"value\":[{\"id\":\"/subscriptions/sub/"
		   "resourceGroups/rg-prod\",\"name\":\"rg-prod\","
		   "\"location\":\"westeurope\"}]}");
}

static void h_colls_by_sub(const struct req *rq, struct reply *rp)
{
	CHECK(strstr(rq->target, "/subscriptions/sub/providers/Microsoft."
				 "Compute/restorePointCollections?api-version="
				 "2025-04-01") != NULL);
	reply_json(rp, 200,
		   "{\"value\":[{\"id\":\"/SUBSCRIPTIONS/sub/"
		   "RESOURCEGROUPS/RG-PROD/providers/microsoft."
		   "compute/restorepointcollections/coll1\"}]}");
}

static void test_az_errors_and_lists(struct az *az)
{
	struct az_collection c;
	struct az_collection *cs;
	struct az_group *gs;
	size_t n;
	struct rp_err e;

	use(h_malformed);
	rp_err_clear(&e);
	CHECK_INT(az_get_collection(az, "rg", "c", &c, NULL, NULL, &e), -EIO);
	CHECK(strstr(e.message, "malformed JSON") != NULL);
	use(h_forbidden);
	CHECK_INT(az_get_collection(az, "rg", "c", &c, NULL, NULL, &e),
		  -EACCES);
	CHECK_STR(e.code, "AuthorizationFailed");
	use(h_always_429);
	CHECK_INT(az_get_collection(az, "rg", "c", &c, NULL, NULL, &e),
		  -EAGAIN);
	CHECK_INT(az_get_collection(az, "rg", "..", &c, NULL, NULL, &e),
		  -EINVAL);
	use(h_groups);
	CHECK_INT(az_list_groups(az, &gs, &n, NULL), 0);
	CHECK_INT(n, 1);
	if (n == 1)
		CHECK_STR(gs[0].location, "westeurope");
	az_groups_free(gs, n);
	use(h_colls_by_sub);
	CHECK_INT(az_list_collections(az, NULL, &cs, &n, NULL), 0);
	CHECK_INT(n, 1);
	if (n == 1) {
		CHECK_STR(cs[0].resource_group, "RG-PROD");
		CHECK_STR(cs[0].name, "coll1");
	}
	az_collections_free(cs, n);
}

int main(void)
{
	struct http_config hc = {.max_retries = 3,
				 .max_retry_total_ms = 20000,
				 .max_body = 1u << 20,
				 .connect_timeout_ms = 2000};
	struct auth_config ac = {.kind = AUTH_TOKEN_FILE,
				 .token_file = token_path};
	struct az_config zc = {.subscription = "sub"};
	struct auth *auth;
	struct arm *arm;
	struct az *az;
	char cmd[128];

	if (!mkdtemp(tmpdir) || server_start() || http_global_init(&hc))
		return 2;
	snprintf(token_path, sizeof(token_path), "%s/token", tmpdir);
	write_token("new-token");
	auth = auth_new(&ac);
	arm = arm_new(base, auth);
	zc.endpoint = base;
	az = az_new(&zc, auth);
	if (!auth || !arm || !az)
		return 2;

	test_throttled_request_waits_retry_after_and_succeeds();
	test_dropped_connection_is_retried();
	test_retries_are_bounded();
	test_client_errors_are_not_retried_and_bodies_capped();
	test_refused_connection_gives_clear_error();
	test_expired_token_is_refreshed_from_the_file(arm);
	test_lists_follow_next_link_verbatim(arm);
	test_long_running_operations(arm);
	test_operation_wait_is_bounded(arm);
	test_grant_access_finds_the_sas(az);
	test_restore_point_put_is_idempotent(az);
	test_az_errors_and_lists(az);
	test_no_credentials_fail_cleanly_before_any_request();
	test_instance_metadata_never_goes_through_a_proxy();
	test_a_hung_attempt_is_cut_at_the_lowered_budget();

	az_free(az);
	arm_free(arm);
	auth_free(auth);
	http_global_cleanup();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	return CHECK_DONE();
}
