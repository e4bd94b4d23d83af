/*
 * test_net_redact.c -- secrets never reach a log line: SAS signatures and
 * other credential query parameters are redacted, secret_print shows only
 * a length, and rp_err / errno mapping follow SPEC section 3.
 */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "err.h"
#include "log.h"
#include "secret.h"

static void test_sas_signature_is_redacted(void)
{
	char out[512];
	const char *sas = "https://md-x.blob.storage.azure.net/c/abcd?sv=2014-"
			  "02-14&sr=b&sk=key1&sig=SECRETSIG%2B%3D&st=2021-05-"
			  "24T18:02:34Z&se=2021-05-24T18:19:14Z&sp=r";

	log_redact_url(sas, out, sizeof(out));
	CHECK(strstr(out, "SECRETSIG") == NULL);
	CHECK(strstr(out, "sig=REDACTED") != NULL);
	CHECK(strstr(out, "sv=2014-02-14") != NULL);
	CHECK(strstr(out, "sp=r") != NULL);
	CHECK(strstr(out, "https://md-x.blob.storage.azure.net/c/abcd?") ==
	      out);
}

static void test_every_secret_parameter_is_redacted(void)
{
	char out[512];
	const char *names[] = {"sig",	"SIG",		 "skoid",
			       "sktid", "code",		 "access_token",
			       "ske",	"client_secret", "client_assertion",
			       NULL};

	for (int i = 0; names[i]; i++) {
		char url[256];

		snprintf(url, sizeof(url), "https://h/p?a=1&%s=TOPSECRET&b=2",
			 names[i]);
		log_redact_url(url, out, sizeof(out));
		CHECK(strstr(out, "TOPSECRET") == NULL);
		CHECK(strstr(out, "a=1") != NULL);
		CHECK(strstr(out, "b=2") != NULL);
	}
	/* First parameter, and a value that is empty. */
	log_redact_url("https://h/p?sig=S1", out, sizeof(out));
	CHECK_STR(out, "https://h/p?sig=REDACTED");
	log_redact_url("https://h/p?sig=", out, sizeof(out));
	CHECK_STR(out, "https://h/p?sig=REDACTED");
}

static void test_userinfo_and_fragment_are_dropped(void)
{
	char out[256];

	log_redact_url("https://user:pass@host/x?y=1", out, sizeof(out));
	CHECK(strstr(out, "pass") == NULL);
	CHECK_STR(out, "https://REDACTED@host/x?y=1");
	log_redact_url("https://host/x?y=1#access_token=T", out, sizeof(out));
	CHECK(strstr(out, "access_token=T") == NULL);
}

static void test_truncation_never_exposes_a_secret(void)
{
	char out[40];
	const char *url = "https://host/path?aaaaaaaaaa=1&sig=ABCDEFGHIJKLMN";

	for (size_t len = 1; len <= sizeof(out); len++) {
		log_redact_url(url, out, len);
		CHECK(strlen(out) < len);
		CHECK(strstr(out, "ABC") == NULL);
	}
	log_redact_url(NULL, out, sizeof(out));
	CHECK_STR(out, "");
	log_redact_url("https://h/no-query", out, sizeof(out));
	CHECK_STR(out, "https://h/no-query");
}

static void test_secret_print_shows_only_length(void)
{
	struct secret s = {0};
	char buf[64];

	CHECK(secret_empty(&s));
	CHECK_INT(secret_set(&s, "eyJhbGciOi.token"), 0);
	CHECK(!secret_empty(&s));
	CHECK_STR(secret_value(&s), "eyJhbGciOi.token");
	secret_print(&s, buf, sizeof(buf));
	CHECK(strstr(buf, "eyJ") == NULL);
	CHECK_STR(buf, "[redacted 16 chars]");
	CHECK_INT(secret_set(&s, NULL), 0);
	CHECK(secret_empty(&s));
	CHECK_NULL(secret_value(&s));
	secret_clear(&s);
}

static void test_errno_follows_http_status(void)
{
	CHECK_INT(rp_errno_from_http(404, "ResourceNotFound"), ENOENT);
	CHECK_INT(rp_errno_from_http(401, NULL), EACCES);
	CHECK_INT(rp_errno_from_http(403, "AuthorizationFailed"), EACCES);
	CHECK_INT(rp_errno_from_http(409, NULL), EEXIST);
	CHECK_INT(rp_errno_from_http(409, "DiskRestorePointUsedByCustomer"),
		  EBUSY);
	CHECK_INT(rp_errno_from_http(409, "OperationNotAllowed"), EBUSY);
	CHECK_INT(rp_errno_from_http(409, "conflict"), EBUSY);
	CHECK_INT(rp_errno_from_http(400, "BadRequest"), EINVAL);
	CHECK_INT(rp_errno_from_http(429, NULL), EAGAIN);
	CHECK_INT(rp_errno_from_http(503, NULL), EAGAIN);
	CHECK_INT(rp_errno_from_http(500, NULL), EIO);
}

static void test_rp_err_formats_and_accepts_null(void)
{
	struct rp_err e;

	rp_err_set(NULL, 1, "x", "ignored %d", 1);
	rp_err_clear(NULL);
	rp_err_set(&e, 404, "NotFound", "missing %s", "rp1");
	CHECK_INT(e.http_status, 404);
	CHECK_STR(e.code, "NotFound");
	CHECK_STR(e.message, "missing rp1");
	rp_err_clear(&e);
	CHECK_STR(e.code, "");
	CHECK_INT(e.http_status, 0);
}

static void test_log_level_names(void)
{
	CHECK_INT(log_level_parse("debug"), LOG_LVL_DEBUG);
	CHECK_INT(log_level_parse("error"), LOG_LVL_ERROR);
	CHECK_INT(log_level_parse("warn"), LOG_LVL_WARN);
	CHECK_INT(log_level_parse("info"), LOG_LVL_INFO);
	CHECK_INT(log_level_parse("loud"), -1);
	CHECK_INT(log_level_parse(NULL), -1);
}

int main(void)
{
	test_sas_signature_is_redacted();
	test_every_secret_parameter_is_redacted();
	test_userinfo_and_fragment_are_dropped();
	test_truncation_never_exposes_a_secret();
	test_secret_print_shows_only_length();
	test_errno_follows_http_status();
	test_rp_err_formats_and_accepts_null();
	test_log_level_names();
	return CHECK_DONE();
}
