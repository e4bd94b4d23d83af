/*
 * auth_sources.c -- where tokens come from: a token file, the environment
 * (see auth_env.c), managed identity (App Service
 * style IDENTITY_ENDPOINT, or the instance metadata endpoint), and the
 * Azure CLI.  Plus the parsers of their answers.
 *
 * The environment source (client secret or certificate) is in auth_env.c,
 * the only part that needs libcrypto.
 *
 * Stateless: auth.c caches and locks.  Every token is checked to be
 * printable ASCII without spaces before use, because it ends up in an HTTP
 * header.  Secrets (client secret, identity header, tokens) are held in
 * buffers that are wiped before they are freed, and never logged; the CLI
 * is run with posix_spawnp, its arguments carry no secret, and its output
 * is read through a pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "arm.h"
#include "auth.h"
#include "auth_sources.h"
#include "clock.h"
#include "http.h"
#include "log.h"

#define AUTH_MAX_TOKEN 16384
#define AUTH_CLI_TIMEOUT_MS 60000
#define AUTH_IMDS_PROBE_MS 2000

extern char **environ;

static bool token_ok(const char *t)
{
	size_t n = 0;

	if (!t)
		return false;
	for (; t[n]; n++) {
		if ((unsigned char)t[n] <= 0x20 || (unsigned char)t[n] >= 0x7f)
			return false;
	}
	return n > 0 && n <= AUTH_MAX_TOKEN;
}

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/*
 * Expiry fields are epoch seconds or a lifetime in seconds.  Anything past
 * this bound (year ~5138) is garbage, and refusing it keeps "now + n" and
 * the double-to-integer conversion free of overflow.
 */
#define JNUM_MAX 100000000000LL

/* A number or a numeric string member in 0..JNUM_MAX; -1 when absent,
 * unparsable or out of range. */
static long long jnum(json_object *o, const char *key)
{
	json_object *v;
	const char *s;
	char *end;
	long long n;
	double d;

	if (!json_object_object_get_ex(o, key, &v) || !v)
		return -1;
	if (json_object_is_type(v, json_type_int)) {
		n = json_object_get_int64(v);
		return n >= 0 && n <= JNUM_MAX ? n : -1;
	}
	if (json_object_is_type(v, json_type_double)) {
		d = json_object_get_double(v);
		return d >= 0 && d <= (double)JNUM_MAX ? (long long)d : -1;
	}
	if (!json_object_is_type(v, json_type_string))
		return -1;
	s = json_object_get_string(v);
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno || end == s || *end || n < 0 || n > JNUM_MAX)
		return -1;
	return n;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int take_token(const char *t, struct secret *tok, struct rp_err *err)
{
	if (!token_ok(t)) {
		rp_err_set(err, 0, "InvalidToken",
			   "the credential source returned no usable token");
		return -EIO;
	}
	return secret_set(tok, t);
}

int auth_parse_token_response(const char *body, time_t now, struct secret *tok,
			      time_t *exp, struct rp_err *err)
{
	json_object *o = NULL;
	long long on, in;
	int rc;

	rc = arm_json_parse(body, body ? strlen(body) : 0, &o, err);
	if (rc)
		return rc;
	rc = take_token(jstr(o, "access_token"), tok, err);
	if (!rc) {
		on = jnum(o, "expires_on");
		in = jnum(o, "expires_in");
		if (on > 0)
			*exp = (time_t)on;
		else if (in >= 0)
			*exp = now + (time_t)in;
		else
			*exp = now + 600; /* unknown: refresh soon */
	}
	json_object_put(o);
	return rc;
}

/* "2023-10-31 21:59:10.000000" in local time. */
static time_t parse_local_time(const char *s)
{
	struct tm tm;
	int y, mo, d, h, mi, sec;

	if (!s ||
	    sscanf(s, "%d-%d-%d %d:%d:%d", &y, &mo, &d, &h, &mi, &sec) != 6)
		return (time_t)-1;
	/* Out-of-range fields would overflow y - 1900 and mean nothing. */
	if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 ||
	    h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 60)
		return (time_t)-1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	tm.tm_isdst = -1;
	return mktime(&tm);
}

int auth_parse_cli_output(const char *out, time_t now, struct secret *tok,
			  time_t *exp, struct rp_err *err)
{
	json_object *o = NULL;
	long long on;
	int rc;

	rc = arm_json_parse(out, out ? strlen(out) : 0, &o, err);
	if (rc) {
		rp_err_set(
		    err, 0, "InvalidCliOutput",
		    "az account get-access-token printed no JSON object");
		return rc;
	}
	rc = take_token(jstr(o, "accessToken"), tok, err);
	if (!rc) {
		on = jnum(o, "expires_on");
		if (on > 0) {
			*exp = (time_t)on;
		} else {
			time_t t = parse_local_time(jstr(o, "expiresOn"));

			*exp = t != (time_t)-1 ? t : now + 600;
		}
	}
	json_object_put(o);
	return rc;
}

static int b64url_val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-' || c == '+')
		return 62;
	if (c == '_' || c == '/')
		return 63;
	return -1;
}

long long auth_jwt_exp(const char *token)
{
	const char *p, *q;
	char *json;
	size_t n = 0;
	unsigned acc = 0;
	int bits = 0;
	json_object *o;
	long long exp = -1;

	if (!token)
		return -1;
	p = strchr(token, '.');
	if (!p)
		return -1;
	q = strchr(++p, '.');
	if (!q || q - p > 8192)
		return -1;
	json = malloc((size_t)(q - p) + 1);
	if (!json)
		return -1;
	for (const char *c = p; c < q; c++) {
		int v = b64url_val((unsigned char)*c);

		if (v < 0) {
			if (*c == '=')
				break;
			free(json);
			return -1;
		}
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			json[n++] = (char)((acc >> bits) & 0xff);
		}
	}
	json[n] = '\0';
	if (arm_json_parse(json, n, &o, NULL) == 0) {
		exp = jnum(o, "exp");
		json_object_put(o);
	}
	free(json);
	return exp;
}

int auth_src_file(const char *path, struct secret *tok, time_t *exp,
		  struct rp_err *err)
{
	char buf[AUTH_MAX_TOKEN + 2];
	size_t n, s = 0;
	int fd;
	ssize_t r;
	int rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = errno;
		rp_err_set(err, 0, "TokenFileUnreadable",
			   "cannot read token file %s: %s", path, strerror(rc));
		return -EACCES;
	}
	while (s < sizeof(buf) - 1 &&
	       (r = read(fd, buf + s, sizeof(buf) - 1 - s)) > 0)
		s += (size_t)r;
	close(fd);
	buf[s] = '\0';
	/* Trim surrounding whitespace (a trailing newline, typically). */
	n = s;
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
		     buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		buf[--n] = '\0';
	{
		char *t = buf;

		while (*t == ' ' || *t == '\t' || *t == '\n' || *t == '\r')
			t++;
		if (*t == '{') {
			/* A saved token response, e.g. from az or curl. */
			json_object *o = NULL;

			rc = arm_json_parse(t, strlen(t), &o, NULL);
			if (!rc) {
				const char *v = jstr(o, "access_token");
				long long on = jnum(o, "expires_on");

				if (!v)
					v = jstr(o, "accessToken");
				rc = take_token(v, tok, err);
				*exp = on > 0 ? (time_t)on : 0;
				json_object_put(o);
			}
		} else {
			long long je;

			rc = take_token(t, tok, err);
			je = rc ? -1 : auth_jwt_exp(t);
			*exp = je > 0 ? (time_t)je : 0;
		}
	}
	explicit_bzero(buf, sizeof(buf));
	if (rc) {
		rp_err_set(err, 0, "InvalidTokenFile",
			   "token file %s holds no usable token", path);
		return -EACCES;
	}
	return 0;
}

/* GET or POST a token endpoint; parse its answer. */
int auth_token_request(const struct http_request *req, const char *what,
		       struct secret *tok, time_t *exp, struct rp_err *err)
{
	struct http_response resp;
	int rc;

	rc = http_do(req, &resp, err);
	if (rc) {
		http_response_free(&resp);
		return rc;
	}
	if (resp.status != 200) {
		int e = arm_error_parse((int)resp.status, resp.body,
					resp.error_code, err);

		log_warn("%s token request refused: HTTP %ld %s", what,
			 resp.status, err ? err->code : "");
		http_response_free(&resp);
		if (e == EINVAL || e == ENOENT)
			e = EACCES;
		return -e;
	}
	rc = auth_parse_token_response(resp.body, time(NULL), tok, exp, err);
	if (resp.body)
		explicit_bzero(resp.body, resp.body_len);
	http_response_free(&resp);
	return rc;
}

char *auth_escape(const char *s)
{
	char *e = curl_easy_escape(NULL, s, 0);
	char *copy;

	if (!e)
		return NULL;
	copy = strdup(e);
	explicit_bzero(e, strlen(e));
	curl_free(e);
	return copy;
}

int auth_src_managed_identity(const char *resource, bool probe,
			      struct secret *tok, time_t *exp,
			      struct rp_err *err)
{
	const char *ep = getenv("IDENTITY_ENDPOINT");
	const char *hdr = getenv("IDENTITY_HEADER");
	const char *imds = getenv("RPFS_IMDS_ENDPOINT");
	char *eres = auth_escape(resource);
	char *url = NULL, *h = NULL;
	const char *hdrs[3] = {NULL, "Accept: application/json", NULL};
	struct http_request req = {.method = "GET", .headers = hdrs};
	struct http_response resp;
	int rc;

	if (!eres)
		return -ENOMEM;
	if (ep && *ep && hdr && *hdr) {
		/* App Service / Container Apps style. */
		rc = asprintf(&url, "%s%sresource=%s&api-version=2019-08-01",
			      ep, strchr(ep, '?') ? "&" : "?", eres);
		if (rc >= 0 && asprintf(&h, "X-IDENTITY-HEADER: %s", hdr) < 0)
			h = NULL;
		free(eres);
		if (rc < 0 || !h) {
			free(url);
			wipe_free(h);
			return -ENOMEM;
		}
		hdrs[0] = h;
		req.url = url;
		rc =
		    auth_token_request(&req, "managed identity", tok, exp, err);
		free(url);
		wipe_free(h);
		return rc;
	}
	/* Instance metadata endpoint: never through a proxy. */
	if (!imds || !*imds)
		imds = "http://169.254.169.254";
	rc = asprintf(&url,
		      "%s/metadata/identity/oauth2/token?"
		      "api-version=2018-02-01&resource=%s",
		      imds, eres);
	free(eres);
	if (rc < 0)
		return -ENOMEM;
	hdrs[0] = "Metadata: true";
	req.url = url;
	req.no_proxy = true;
	if (probe) {
		req.no_retry = true;
		req.timeout_ms = AUTH_IMDS_PROBE_MS;
	}
	rc = http_do(&req, &resp, err);
	free(url);
	if (rc) {
		http_response_free(&resp);
		if (probe) {
			rp_err_set(err, 0, "NoManagedIdentity",
				   "no instance metadata endpoint");
			return -ENOENT;
		}
		return rc;
	}
	if (resp.status != 200) {
		int e = arm_error_parse((int)resp.status, resp.body,
					resp.error_code, err);

		http_response_free(&resp);
		/* 400 from IMDS: this machine has no identity assigned. */
		if (probe && (resp.status == 400 || resp.status == 404))
			return -ENOENT;
		return -(e == EINVAL || e == ENOENT ? EACCES : e);
	}
	rc = auth_parse_token_response(resp.body, time(NULL), tok, exp, err);
	if (resp.body)
		explicit_bzero(resp.body, resp.body_len);
	http_response_free(&resp);
	return rc;
}

/* Read all of fd (up to cap) within timeout_ms; NUL-terminated. */
static int read_all(int fd, char **out, size_t cap, int timeout_ms)
{
	char *buf = malloc(cap + 1);
	size_t n = 0;
	long long deadline = rp_mono_ms() + timeout_ms;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		long long left = deadline - rp_mono_ms();
		ssize_t r;

		if (left <= 0) {
			free(buf);
			return -ETIMEDOUT;
		}
		r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		if (n >= cap) {
			free(buf);
			return -EFBIG;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	*out = buf;
	return 0;
}

int auth_src_cli(const char *resource, struct secret *tok, time_t *exp,
		 struct rp_err *err)
{
	char *argv[] = {"az",
			"account",
			"get-access-token",
			"--resource",
			(char *)resource,
			"-o",
			"json",
			NULL};
	posix_spawn_file_actions_t fa;
	int pfd[2], status = 0, rc;
	char *out = NULL;
	pid_t pid;

	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], STDOUT_FILENO);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null",
					 O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null",
					 O_WRONLY, 0);
	rc = posix_spawnp(&pid, "az", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	if (rc != 0) {
		close(pfd[0]);
		rp_err_set(err, 0, "NoAzureCli",
			   "the Azure CLI (az) is not installed or not on "
			   "PATH");
		return -ENOENT;
	}
	rc = read_all(pfd[0], &out, 1 << 20, AUTH_CLI_TIMEOUT_MS);
	close(pfd[0]);
	if (rc == -ETIMEDOUT)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (rc) {
		rp_err_set(err, 0, "AzureCliFailed",
			   "az account get-access-token: %s", strerror(-rc));
		return -EACCES;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		wipe_free(out);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
			rp_err_set(err, 0, "NoAzureCli",
				   "the Azure CLI (az) could not be run");
			return -ENOENT;
		}
		rp_err_set(err, 0, "AzureCliFailed",
			   "az account get-access-token failed (exit %d); "
			   "run `az login`",
			   WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return -EACCES;
	}
	rc = auth_parse_cli_output(out, time(NULL), tok, exp, err);
	wipe_free(out);
	return rc ? -EACCES : 0;
}
