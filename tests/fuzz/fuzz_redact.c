/*
 * fuzz_redact.c -- log_redact_url, the one gate between a SAS URL (or a
 * token endpoint URL) and a log line.
 *
 * Input: one byte picks the output size (truncation must never expose a
 * part of a secret), the rest is the URL.  The target finds, the way a
 * server reads a URL (RFC 3986: the query runs from the first '?' to the
 * first '#', the authority ends at '/', '?' or '#', userinfo ends at its
 * first '@' as libcurl reads it), every value of a secret query parameter and
 * the userinfo, and asserts that the redacted text holds none of them -- unless
 * the same string also occurs in the URL outside any secret, where the redactor
 * rightly keeps it.
 */
#include <stdbool.h>
#include <strings.h>

#include "fuzz.h"
#include "log.h"

/* The names log.h promises to redact (a subset suffices: each checked
 * one must be redacted; more redaction is never wrong). */
static const char *const secret_names[] = {
    "sig",
    "signature",
    "skoid",
    "sktid",
    "ske",
    "code",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "token",
    "password",
    "secret",
    "assertion",
    NULL,
};

static bool is_secret(const char *name, size_t len)
{
	for (size_t i = 0; secret_names[i]; i++)
		if (strlen(secret_names[i]) == len &&
		    strncasecmp(name, secret_names[i], len) == 0)
			return true;
	return false;
}

struct span {
	size_t off, len;
};

static size_t count(const char *hay, size_t haylen, const char *needle,
		    size_t nlen)
{
	size_t n = 0;

	for (size_t i = 0; nlen && i + nlen <= haylen; i++)
		if (memcmp(hay + i, needle, nlen) == 0)
			n++;
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct span sec[64];
	size_t nsec = 0, len, outlen;
	char *url, *out, *rest;
	const char *q, *end, *p;

	if (size < 1)
		return 0;
	outlen = (size_t)data[0] * 4 + 1;
	url = fuzz_str(data + 1, size - 1);
	len = strlen(url); /* the URL is a C string: stop at a NUL */

	/* Userinfo: scheme "://" authority, '@' before the authority ends. */
	p = strstr(url, "://");
	q = strchr(url, '?');
	if (p && (!q || p < q)) {
		const char *auth = p + 3;
		size_t alen = strcspn(auth, "/?#");
		const char *at = NULL;

		for (const char *c = auth; c < auth + alen && !at; c++)
			if (*c == '@')
				at = c;
		if (at && at > auth && nsec < 64)
			sec[nsec++] = (struct span){(size_t)(auth - url),
						    (size_t)(at - auth)};
	}
	/* Secret query parameters. */
	if (q) {
		end = strchr(q, '#');
		if (!end)
			end = url + len;
		for (p = q + 1; p < end;) {
			const char *amp = memchr(p, '&', (size_t)(end - p));
			const char *stop = amp ? amp : end;
			const char *eq = memchr(p, '=', (size_t)(stop - p));

			if (eq && is_secret(p, (size_t)(eq - p)) && nsec < 64)
				sec[nsec++] =
				    (struct span){(size_t)(eq + 1 - url),
						  (size_t)(stop - eq - 1)};
			p = stop + 1;
		}
	}

	out = malloc(outlen);
	FUZZ_ASSERT(out != NULL);
	log_redact_url(url, out, outlen);
	FUZZ_ASSERT(fuzz_terminated(out, outlen));

	/* The URL with every secret blanked: where a secret's text may
	 * legitimately still occur.  Every "REDACTED" the redactor wrote is
	 * blanked in its output, so that it never counts as a secret. */
	rest = strdup(url);
	FUZZ_ASSERT(rest != NULL);
	for (size_t i = 0; i < nsec; i++)
		memset(rest + sec[i].off, '\x01', sec[i].len);
	for (char *r = out; (r = strstr(r, "REDACTED")) != NULL; r += 8)
		memset(r, '\x02', 8);
	/* ... and one cut short by the output size. */
	for (size_t k = 7, ol = strlen(out); k > 0; k--) {
		if (ol >= k && memcmp(out + ol - k, "REDACTED", k) == 0) {
			memset(out + ol - k, '\x02', k);
			break;
		}
	}
	for (size_t i = 0; i < nsec; i++) {
		const char *v = url + sec[i].off;
		size_t vl = sec[i].len;

		if (vl < 4 || memchr(v, '\x01', vl) || memchr(v, '\x02', vl))
			continue;
		if (count(out, strlen(out), v, vl) > count(rest, len, v, vl)) {
			fprintf(stderr, "secret \"%.*s\" in \"%s\"\n", (int)vl,
				v, out);
			FUZZ_ASSERT(!"a secret survived log_redact_url");
		}
	}
	free(rest);
	free(out);
	free(url);
	return 0;
}
