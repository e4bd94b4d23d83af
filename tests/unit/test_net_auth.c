/*
 * test_net_auth.c -- tokens reach Resource Manager from every source the
 * Azure SDKs know, without a network: token endpoint answers (v2 integer
 * expires_in, v1/managed identity strings), `az account get-access-token`
 * output (expires_on, then expiresOn), a token file that is re-read when
 * it changes and after a 401, and a fake `az` on PATH.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "auth_sources.h"
#include "check.h"

static char tmpdir[] = "/tmp/rpfs-auth-XXXXXX";

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	CHECK(f != NULL);
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

static void test_v2_token_response(void)
{
	struct secret t = {0};
	time_t exp = 0;

	CHECK_INT(auth_parse_token_response(
		      "{\"token_type\":\"Bearer\",\"expires_in\":3599,"
		      "\"ext_expires_in\":3599,\"access_token\":\"eyJ0.a.b\"}",
		      1000, &t, &exp, NULL),
		  0);
	CHECK_STR(secret_value(&t), "eyJ0.a.b");
	CHECK_INT(exp, 1000 + 3599);
	secret_clear(&t);
}

static void test_v1_and_managed_identity_token_response(void)
{
	struct secret t = {0};
	time_t exp = 0;

	CHECK_INT(auth_parse_token_response(
		      "{\"access_token\":\"tok\",\"expires_in\":\"3599\","
		      "\"expires_on\":\"1700003600\",\"resource\":\"https://"
		      "management.azure.com/\",\"token_type\":\"Bearer\"}",
		      1000, &t, &exp, NULL),
		  0);
	CHECK_INT(exp, 1700003600);
	CHECK_INT(
	    auth_parse_token_response(
		"{\"access_token\":\"tok\",\"expires_on\":\"1700000001\"}",
		1000, &t, &exp, NULL),
	    0);
	CHECK_INT(exp, 1700000001);
	secret_clear(&t);
}

static void test_bad_token_responses_are_refused(void)
{
	const char *bad[] = {
	    "{\"expires_in\":3599}",
	    "{\"access_token\":\"\"}",
	    "{\"access_token\":\"two words\"}",
	    "{\"access_token\":\"inject\\r\\nX-Evil: 1\"}",
	    "{\"access_token\":5}",
	    "{\"access_token\":\"t\"",
	    "",
	    NULL,
	};

	for (int i = 0; bad[i]; i++) {
		struct secret t = {0};
		time_t exp = 0;

		CHECK_INT(auth_parse_token_response(bad[i], 0, &t, &exp, NULL),
			  -EIO);
		CHECK(secret_empty(&t));
	}
}

static void test_cli_output(void)
{
	struct secret t = {0};
	time_t exp = 0;
	struct tm tm = {0};

	CHECK_INT(auth_parse_cli_output(
		      "{\"accessToken\":\"cli-tok\",\"expiresOn\":\"2023-10-31 "
		      "21:59:10.000000\",\"expires_on\":1698760750,"
		      "\"subscription\":\"s\",\"tenant\":\"t\",\"tokenType\":"
		      "\"Bearer\"}",
		      0, &t, &exp, NULL),
		  0);
	CHECK_STR(secret_value(&t), "cli-tok");
	CHECK_INT(exp, 1698760750);
	/* Older CLI: only expiresOn, in local time. */
	CHECK_INT(
	    auth_parse_cli_output("{\"accessToken\":\"old\",\"expiresOn\":"
				  "\"2023-10-31 21:59:10.000000\"}",
				  0, &t, &exp, NULL),
	    0);
	tm.tm_year = 123;
	tm.tm_mon = 9;
	tm.tm_mday = 31;
	tm.tm_hour = 21;
	tm.tm_min = 59;
	tm.tm_sec = 10;
	tm.tm_isdst = -1;
	CHECK_INT(exp, mktime(&tm));
	CHECK_INT(auth_parse_cli_output("ERROR: Please run 'az login'", 0, &t,
					&exp, NULL),
		  -EIO);
	secret_clear(&t);
}

static void test_jwt_exp_and_scope(void)
{
	char *s;

	/* {"alg":"none"}.{"exp":1700000000}.sig */
	CHECK_INT(auth_jwt_exp("eyJhbGciOiJub25lIn0.eyJleHAiOjE3MDAwMDAwMDB9."
			       "c2ln"),
		  1700000000);
	CHECK_INT(auth_jwt_exp("opaque-token"), -1);
	CHECK_INT(auth_jwt_exp("a.!!!.c"), -1);
	s = auth_scope_for(AUTH_RESOURCE_ARM);
	CHECK_STR(s, "https://management.azure.com/.default");
	free(s);
	s = auth_scope_for(AUTH_RESOURCE_DISK);
	CHECK_STR(s, "https://disk.azure.com//.default");
	free(s);
}

static void test_kind_names(void)
{
	CHECK_INT(auth_kind_parse("auto"), AUTH_AUTO);
	CHECK_INT(auth_kind_parse("token-file"), AUTH_TOKEN_FILE);
	CHECK_INT(auth_kind_parse("env"), AUTH_ENV);
	CHECK_INT(auth_kind_parse("managed-identity"), AUTH_MANAGED_IDENTITY);
	CHECK_INT(auth_kind_parse("cli"), AUTH_CLI);
	CHECK_INT(auth_kind_parse("password"), -1);
	CHECK_INT(auth_kind_parse(NULL), -1);
}

static void test_token_file_is_reread_when_it_changes(void)
{
	char path[256];
	struct auth_config cfg = {.kind = AUTH_TOKEN_FILE, .token_file = path};
	struct auth *a;
	struct secret t = {0};
	struct timespec ts[2] = {{0}, {0}};

	snprintf(path, sizeof(path), "%s/token", tmpdir);
	write_file(path, "first-token\n", 0600);
	a = auth_new(&cfg);
	CHECK(a != NULL);
	CHECK_INT(auth_token(a, AUTH_RESOURCE_ARM, &t, NULL), 0);
	CHECK_STR(secret_value(&t), "first-token");
	/* Same length, new content, new mtime: picked up. */
	write_file(path, "other-token\n", 0600);
	ts[0].tv_sec = ts[1].tv_sec = time(NULL) + 5;
	utimensat(AT_FDCWD, path, ts, 0);
	CHECK_INT(auth_token(a, AUTH_RESOURCE_ARM, &t, NULL), 0);
	CHECK_STR(secret_value(&t), "other-token");
	/* Unchanged file: the cached token; after a 401, read again. */
	CHECK_INT(auth_token(a, AUTH_RESOURCE_ARM, &t, NULL), 0);
	CHECK_STR(secret_value(&t), "other-token");
	auth_invalidate(a, AUTH_RESOURCE_ARM);
	CHECK_INT(auth_token(a, AUTH_RESOURCE_ARM, &t, NULL), 0);
	CHECK_STR(secret_value(&t), "other-token");
	/* A JSON token response saved to the file works too. */
	write_file(path,
		   "{\"access_token\":\"json-tok\",\"expires_on\":"
		   "\"4102444800\"}",
		   0600);
	CHECK_INT(auth_token(a, AUTH_RESOURCE_ARM, &t, NULL), 0);
	CHECK_STR(secret_value(&t), "json-tok");
	secret_clear(&t);
	auth_free(a);
}

static void test_missing_or_empty_token_file_is_eacces(void)
{
	char path[256];
	struct auth_config cfg = {.kind = AUTH_TOKEN_FILE, .token_file = path};
	struct auth *a;
	struct secret t = {0};
	struct rp_err e;

	snprintf(path, sizeof(path), "%s/absent", tmpdir);
	a = auth_new(&cfg);
	rp_err_clear(&e);
	CHECK_INT(auth_token(a, AUTH_RESOURCE_ARM, &t, &e), -EACCES);
	CHECK(strstr(e.message, "absent") != NULL);
	write_file(path, "\n\n", 0600);
	CHECK_INT(auth_token(a, AUTH_RESOURCE_ARM, &t, &e), -EACCES);
	/* The token file is for Resource Manager only. */
	write_file(path, "tok\n", 0600);
	CHECK_INT(auth_token(a, AUTH_RESOURCE_DISK, &t, &e), -EACCES);
	CHECK(secret_empty(&t));
	auth_free(a);
}

static void test_env_source_without_variables_says_what_is_missing(void)
{
	struct auth_config cfg = {.kind = AUTH_ENV};
	struct auth *a = auth_new(&cfg);
	struct secret t = {0};
	struct rp_err e;

	unsetenv("AZURE_CLIENT_SECRET");
	unsetenv("AZURE_CLIENT_CERTIFICATE_PATH");
	rp_err_clear(&e);
	CHECK_INT(auth_token(a, AUTH_RESOURCE_ARM, &t, &e), -EACCES);
	CHECK(strstr(e.message, "AZURE_CLIENT_SECRET") != NULL);
	auth_free(a);
}

static void test_cli_source_runs_az_from_path(void)
{
	char script[256], path_env[4096], argsfile[256], body[1024];
	const char *old = getenv("PATH");
	struct auth_config cfg = {.kind = AUTH_CLI};
	struct auth *a;
	struct secret t = {0};
	struct rp_err e;
	FILE *f;

	snprintf(script, sizeof(script), "%s/az", tmpdir);
	snprintf(argsfile, sizeof(argsfile), "%s/args", tmpdir);
	snprintf(body, sizeof(body),
		 "#!/bin/sh\necho \"$@\" > %s\n"
		 "echo '{\"accessToken\": \"from-cli\", \"expires_on\": %lld, "
		 "\"tokenType\": \"Bearer\"}'\n",
		 argsfile, (long long)time(NULL) + 3600);
	write_file(script, body, 0700);
	snprintf(path_env, sizeof(path_env), "%s:%s", tmpdir, old ? old : "");
	setenv("PATH", path_env, 1);
	a = auth_new(&cfg);
	CHECK_INT(auth_token(a, AUTH_RESOURCE_ARM, &t, NULL), 0);
	CHECK_STR(secret_value(&t), "from-cli");
	f = fopen(argsfile, "r");
	CHECK(f != NULL);
	if (f) {
		char line[512] = "";

		if (!fgets(line, sizeof(line), f))
			line[0] = '\0';
		fclose(f);
		CHECK_STR(line, "account get-access-token --resource "
				"https://management.azure.com/ -o json\n");
	}
	/* A failing az (not logged in) is EACCES with advice. */
	write_file(script,
		   "#!/bin/sh\necho 'ERROR: run az login' >&2\nexit 1\n", 0700);
	auth_invalidate(a, AUTH_RESOURCE_ARM);
	rp_err_clear(&e);
	CHECK_INT(auth_token(a, AUTH_RESOURCE_ARM, &t, &e), -EACCES);
	CHECK(strstr(e.message, "az login") != NULL);
	setenv("PATH", old ? old : "/usr/bin:/bin", 1);
	secret_clear(&t);
	auth_free(a);
}

static int count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	int n = 0, c;

	if (!f)
		return 0;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static void test_tokens_are_cached_until_near_expiry(void)
{
	char script[256], path_env[4096], calls[256], body[1024];
	const char *old = getenv("PATH");
	struct auth_config cfg = {.kind = AUTH_CLI};
	struct auth *a;
	struct secret t = {0};
	char *saved = old ? strdup(old) : NULL;

	snprintf(script, sizeof(script), "%s/az", tmpdir);
	snprintf(calls, sizeof(calls), "%s/calls", tmpdir);
	/* Lifetime from the file "life" next to the script. */
	snprintf(body, sizeof(body),
		 "#!/bin/sh\necho x >> %s\n"
		 "life=$(cat %s/life)\n"
		 "echo \"{\\\"accessToken\\\": \\\"t\\\", "
		 "\\\"expires_on\\\": $(( $(date +%%s) + life ))}\"\n",
		 calls, tmpdir);
	write_file(script, body, 0700);
	snprintf(path_env, sizeof(path_env), "%s/life", tmpdir);
	write_file(path_env, "3600\n", 0600);
	snprintf(path_env, sizeof(path_env), "%s:%s", tmpdir, old ? old : "");
	setenv("PATH", path_env, 1);
	a = auth_new(&cfg);
	for (int i = 0; i < 5; i++)
		CHECK_INT(auth_token(a, AUTH_RESOURCE_ARM, &t, NULL), 0);
	CHECK_INT(count_lines(calls), 1);
	/* Another audience has its own token. */
	CHECK_INT(auth_token(a, AUTH_RESOURCE_DISK, &t, NULL), 0);
	CHECK_INT(count_lines(calls), 2);
	/* After a 401 (invalidate): fetched again. */
	snprintf(path_env, sizeof(path_env), "%s/life", tmpdir);
	write_file(path_env, "299\n", 0600);
	auth_invalidate(a, AUTH_RESOURCE_ARM);
	CHECK_INT(auth_token(a, AUTH_RESOURCE_ARM, &t, NULL), 0);
	CHECK_INT(count_lines(calls), 3);
	/* A token living under ten minutes is kept for half its life... */
	CHECK_INT(auth_token(a, AUTH_RESOURCE_ARM, &t, NULL), 0);
	CHECK_INT(count_lines(calls), 3);
	write_file(path_env, "2\n", 0600);
	auth_invalidate(a, AUTH_RESOURCE_ARM);
	CHECK_INT(auth_token(a, AUTH_RESOURCE_ARM, &t, NULL), 0);
	CHECK_INT(count_lines(calls), 4);
	/* ...and fetched again once that half has passed. */
	sleep(2);
	CHECK_INT(auth_token(a, AUTH_RESOURCE_ARM, &t, NULL), 0);
	CHECK_INT(count_lines(calls), 5);
	setenv("PATH", saved ? saved : "/usr/bin:/bin", 1);
	free(saved);
	secret_clear(&t);
	auth_free(a);
}

int main(void)
{
	char cmd[512];

	if (!mkdtemp(tmpdir))
		return 2;
	test_v2_token_response();
	test_v1_and_managed_identity_token_response();
	test_bad_token_responses_are_refused();
	test_cli_output();
	test_jwt_exp_and_scope();
	test_kind_names();
	test_token_file_is_reread_when_it_changes();
	test_missing_or_empty_token_file_is_eacces();
	test_env_source_without_variables_says_what_is_missing();
	test_cli_source_runs_az_from_path();
	test_tokens_are_cached_until_near_expiry();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
	return CHECK_DONE();
}
