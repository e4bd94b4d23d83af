/*
 * log.c -- the program's one logger and the URL redaction rule.
 *
 * A line is formatted into a local buffer and written with a single
 * write(2) (or one syslog(3) call), so lines from concurrent threads never
 * interleave and no lock is needed.  The level is an atomic int set once
 * at start-up and read everywhere.
 *
 * log_redact_url rewrites the value of every secret-bearing query
 * parameter to "REDACTED" and drops any user:password before the host.
 * It writes only REDACTED in place of a value, so truncating the output
 * can never expose part of a secret.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static atomic_int log_lvl = LOG_LVL_WARN;
static atomic_bool log_syslog;

void log_init(enum log_level level, bool to_syslog)
{
	atomic_store(&log_lvl, (int)level);
	atomic_store(&log_syslog, to_syslog);
	if (to_syslog)
		openlog("rpfs", LOG_PID, LOG_DAEMON);
}

enum log_level log_level_get(void)
{
	return (enum log_level)atomic_load(&log_lvl);
}

int log_level_parse(const char *name)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};

	if (!name)
		return -1;
	for (int i = 0; i < 4; i++) {
		if (strcasecmp(name, names[i]) == 0)
			return i;
	}
	if (strcasecmp(name, "warning") == 0)
		return LOG_LVL_WARN;
	return -1;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const tags[] = {"error", "warn", "info", "debug"};
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	char line[2048];
	size_t len = 0;
	va_list ap;
	int n;

	if ((int)level > atomic_load(&log_lvl) || (int)level < 0)
		return;
	if (!atomic_load(&log_syslog)) {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		len = strftime(line, sizeof(line), "%H:%M:%S", &tm);
		n = snprintf(line + len, sizeof(line) - len,
			     ".%03ld rpfs %s: ", ts.tv_nsec / 1000000,
			     tags[level]);
		if (n > 0)
			len += (size_t)n;
	}
	va_start(ap, fmt);
	n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	len += (size_t)n;
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	if (atomic_load(&log_syslog)) {
		line[len] = '\0';
		syslog(prio[level], "%s", line);
		return;
	}
	line[len++] = '\n';
	/* One write per line; a short write to stderr is not worth a retry. */
	if (write(STDERR_FILENO, line, len) < 0)
		return;
}

/* Query parameters whose value is a credential or gives one away. */
static const char *const secret_params[] = {
    "sig",
    "signature",
    "skoid",
    "sktid",
    "ske",
    "skt",
    "sks",
    "skv",
    "saoid",
    "suoid",
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

static bool param_is_secret(const char *name, size_t len)
{
	for (size_t i = 0; secret_params[i]; i++) {
		if (strlen(secret_params[i]) == len &&
		    strncasecmp(name, secret_params[i], len) == 0)
			return true;
	}
	return false;
}

/* Append n bytes of s to out at *pos, never past outlen - 1. */
static void put(char *out, size_t outlen, size_t *pos, const char *s, size_t n)
{
	if (*pos + 1 >= outlen)
		return;
	if (n > outlen - 1 - *pos)
		n = outlen - 1 - *pos;
	memcpy(out + *pos, s, n);
	*pos += n;
	out[*pos] = '\0';
}

char *log_redact_url(const char *url, char *out, size_t outlen)
{
	size_t pos = 0;
	const char *p, *q, *end;

	if (!out || outlen == 0)
		return out;
	out[0] = '\0';
	if (!url)
		return out;
	end = url + strlen(url);
	q = strchr(url, '?');
	if (!q)
		q = end;
	/* Authority: drop any user:password@ before the host. */
	p = strstr(url, "://");
	if (p && p < q) {
		const char *host = p + 3;
		const char *slash = strchr(host, '/');
		const char *at = strchr(host, '@');

		if (!slash || slash > q)
			slash = q;
		put(out, outlen, &pos, url, (size_t)(host - url));
		if (at && at < slash) {
			put(out, outlen, &pos, "REDACTED@", 9);
			host = at + 1;
		}
		put(out, outlen, &pos, host, (size_t)(q - host));
	} else {
		put(out, outlen, &pos, url, (size_t)(q - url));
	}
	if (*q != '?')
		return out;
	put(out, outlen, &pos, "?", 1);
	p = q + 1;
	while (p < end) {
		const char *amp = strchr(p, '&');
		const char *eq;
		const char *frag = strchr(p, '#');

		if (!amp)
			amp = end;
		if (frag && frag < amp)
			amp = frag;
		eq = memchr(p, '=', (size_t)(amp - p));
		if (eq && param_is_secret(p, (size_t)(eq - p))) {
			put(out, outlen, &pos, p, (size_t)(eq - p) + 1);
			put(out, outlen, &pos, "REDACTED", 8);
		} else {
			put(out, outlen, &pos, p, (size_t)(amp - p));
		}
		if (amp == end)
			break;
		if (*amp == '#') {
			/* A fragment is never sent; drop it rather than judge.
			 */
			put(out, outlen, &pos, "#REDACTED", 9);
			break;
		}
		put(out, outlen, &pos, "&", 1);
		p = amp + 1;
	}
	return out;
}
