/*
 * test_net_arm.c -- what Resource Manager says when it refuses, and how
 * its long-running operations report progress, parsed into values fs/ can
 * act on; malformed or truncated JSON is EIO, never a crash; URLs are
 * built so that no name can address another resource.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arm.h"
#include "check.h"

static void test_arm_error_body_gives_code_and_message(void)
{
	struct rp_err e;
	int n;

	n = arm_error_parse(404,
			    "{\"error\":{\"code\":\"ResourceNotFound\","
			    "\"message\":\"The Resource 'x' was not found.\"}}",
			    NULL, &e);
	CHECK_INT(n, ENOENT);
	CHECK_INT(e.http_status, 404);
	CHECK_STR(e.code, "ResourceNotFound");
	CHECK_STR(e.message, "The Resource 'x' was not found.");

	n = arm_error_parse(409,
			    "{\"error\":{\"code\":\"DiskRestorePointUsedByCust"
			    "omer\",\"message\":\"in use\",\"details\":[]}}",
			    NULL, &e);
	CHECK_INT(n, EBUSY);
	CHECK_STR(e.code, "DiskRestorePointUsedByCustomer");

	n = arm_error_parse(403,
			    "{\"error\":{\"code\":\"AuthorizationFailed\","
			    "\"message\":\"no\"}}",
			    NULL, &e);
	CHECK_INT(n, EACCES);
}

static void test_token_endpoint_error_shape(void)
{
	struct rp_err e;

	CHECK_INT(arm_error_parse(401,
				  "{\"error\":\"invalid_client\","
				  "\"error_description\":\"AADSTS7000215: bad "
				  "secret\"}",
				  NULL, &e),
		  EACCES);
	CHECK_STR(e.code, "invalid_client");
	CHECK_STR(e.message, "AADSTS7000215: bad secret");
}

static void test_error_without_body_uses_header_code(void)
{
	struct rp_err e;

	CHECK_INT(arm_error_parse(503, NULL, "ServerBusy", &e), EAGAIN);
	CHECK_STR(e.code, "ServerBusy");
	CHECK(strstr(e.message, "503") != NULL);
	CHECK_INT(arm_error_parse(500, "<html>oops</html>", NULL, &e), EIO);
	CHECK_STR(e.code, "");
	CHECK_INT(arm_error_parse(400,
				  "{\"error\":{\"code\":\"InvalidParameter"
				  "\"}}",
				  NULL, &e),
		  EINVAL);
	CHECK_STR(e.code, "InvalidParameter");
}

static void test_lro_status_states(void)
{
	enum arm_lro_state st;
	struct rp_err e;
	json_object *o = NULL;

	CHECK_INT(
	    arm_lro_status_parse("{\"status\":\"InProgress\"}", &st, NULL, &e),
	    0);
	CHECK_INT(st, ARM_LRO_RUNNING);
	CHECK_INT(arm_lro_status_parse("{\"status\":\"Succeeded\",\"properties"
				       "\":{\"output\":{\"accessSAS\":\"x\"}}}",
				       &st, &o, &e),
		  0);
	CHECK_INT(st, ARM_LRO_SUCCEEDED);
	CHECK(o != NULL);
	json_object_put(o);
	CHECK_INT(arm_lro_status_parse(
		      "{\"status\":\"Failed\",\"error\":{\"code\":\"Internal"
		      "ExecutionError\",\"message\":\"boom\"}}",
		      &st, NULL, &e),
		  0);
	CHECK_INT(st, ARM_LRO_FAILED);
	CHECK_STR(e.code, "InternalExecutionError");
	CHECK(strstr(e.message, "boom") != NULL);
	CHECK_INT(
	    arm_lro_status_parse("{\"status\":\"Canceled\"}", &st, NULL, &e),
	    0);
	CHECK_INT(st, ARM_LRO_CANCELED);
	CHECK_INT(
	    arm_lro_status_parse("{\"status\":\"succeeded\"}", &st, NULL, &e),
	    0);
	CHECK_INT(st, ARM_LRO_SUCCEEDED);
}

static void test_lro_status_malformed_is_eio(void)
{
	enum arm_lro_state st;
	struct rp_err e;

	CHECK_INT(arm_lro_status_parse("{}", &st, NULL, &e), -EIO);
	CHECK_INT(arm_lro_status_parse("{\"status\":3}", &st, NULL, &e), -EIO);
	CHECK_INT(arm_lro_status_parse("{\"status\":\"InProg", &st, NULL, &e),
		  -EIO);
	CHECK_INT(arm_lro_status_parse("", &st, NULL, &e), -EIO);
	CHECK_INT(arm_lro_status_parse(NULL, &st, NULL, &e), -EIO);
	CHECK_INT(arm_lro_status_parse("[1,2]", &st, NULL, &e), -EIO);
}

static void test_malformed_and_truncated_json_is_eio(void)
{
	const char *bad[] = {
	    "{\"value\":[",
	    "{\"id\":\"/x\",}",
	    "not json",
	    "{\"a\":1} trailing",
	    "\"just a string\"",
	    "{\"a\":\"\\u12\"}",
	    NULL,
	};
	json_object *o;
	struct rp_err e;

	for (int i = 0; bad[i]; i++) {
		rp_err_clear(&e);
		CHECK_INT(arm_json_parse(bad[i], strlen(bad[i]), &o, &e), -EIO);
		CHECK_NULL(o);
		CHECK(e.message[0] != '\0');
	}
	CHECK_INT(arm_json_parse("{\"a\":1}\n", 8, &o, &e), 0);
	json_object_put(o);
	/* A body cut short at every length is EIO, never a crash. */
	{
		const char *full = "{\"value\":[{\"id\":\"/subscriptions/s\","
				   "\"name\":\"n\"}],\"nextLink\":null}";

		for (size_t n = 0; n < strlen(full); n++)
			CHECK_INT(arm_json_parse(full, n, &o, NULL), -EIO);
	}
}

static void test_urls_escape_names_and_keep_ids(void)
{
	struct arm *a = arm_new("https://management.azure.com/", NULL);
	struct rp_err e;
	char *u = NULL, *n;

	CHECK(a != NULL);
	CHECK_INT(arm_url(a,
			  "/subscriptions/S/resourceGroups/RG/providers/"
			  "microsoft.compute/restorePointCollections/c",
			  "2025-04-01", "$expand=restorePoints", &u, &e),
		  0);
	CHECK_STR(u, "https://management.azure.com/subscriptions/S/"
		     "resourceGroups/RG/providers/microsoft.compute/"
		     "restorePointCollections/c?api-version=2025-04-01&$expand="
		     "restorePoints");
	free(u);
	n = arm_escape("a/../b c?d#e", &e);
	CHECK_STR(n, "a%2F..%2Fb%20c%3Fd%23e");
	free(n);
	CHECK_NULL(arm_escape("..", &e));
	CHECK_NULL(arm_escape(".", &e));
	CHECK_NULL(arm_escape("", &e));
	CHECK_INT(arm_url(a, "relative/id", "1", NULL, &u, &e), -EINVAL);
	CHECK_INT(arm_url(a, "/x?inject=1", "1", NULL, &u, &e), -EINVAL);
	arm_free(a);
}

static void test_errno_for_failed_operation_codes(void)
{
	CHECK_INT(arm_errno_from_code("DiskRestorePointUsedByCustomer"), EBUSY);
	CHECK_INT(arm_errno_from_code("NotFound"), ENOENT);
	CHECK_INT(arm_errno_from_code("SomethingNew"), EIO);
	CHECK_INT(arm_errno_from_code(NULL), EIO);
}

int main(void)
{
	test_arm_error_body_gives_code_and_message();
	test_token_endpoint_error_shape();
	test_error_without_body_uses_header_code();
	test_lro_status_states();
	test_lro_status_malformed_is_eio();
	test_malformed_and_truncated_json_is_eio();
	test_urls_escape_names_and_keep_ids();
	test_errno_for_failed_operation_codes();
	return CHECK_DONE();
}
