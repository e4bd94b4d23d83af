/*
 * err.c -- the error value that travels from net/ to fs/.
 *
 * struct rp_err is plain data on the caller's stack; these helpers only
 * format into it.  rp_errno_from_http is the one place that decides which
 * errno a user sees for an HTTP status and Azure error code (SPEC 3).
 * No state, no locks.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "err.h"

void rp_err_clear(struct rp_err *e)
{
	if (!e)
		return;
	e->http_status = 0;
	e->code[0] = '\0';
	e->message[0] = '\0';
}

void rp_err_set(struct rp_err *e, int http_status, const char *code,
		const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return;
	e->http_status = http_status;
	snprintf(e->code, sizeof(e->code), "%s", code ? code : "");
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
}

/* Codes that mean "busy with something else", not "already exists". */
static const char *const busy_codes[] = {
    "DiskRestorePointUsedByCustomer",
    "OperationNotAllowed",
    "Conflict",
    "ConflictingUserInput",
    "OperationPreempted",
    "AnotherOperationInProgress",
    "VMRestorePointClientError",
    "RetryableError",
    NULL,
};

static int code_in(const char *code, const char *const *list)
{
	if (!code || !*code)
		return 0;
	for (size_t i = 0; list[i]; i++) {
		if (strcasecmp(code, list[i]) == 0)
			return 1;
	}
	return 0;
}

int rp_errno_from_http(int http_status, const char *code)
{
	switch (http_status) {
	case 400:
		return EINVAL;
	case 401:
	case 403:
		return EACCES;
	case 404:
	case 410:
		return ENOENT;
	case 409:
		return code_in(code, busy_codes) ? EBUSY : EEXIST;
	case 408:
	case 429:
	case 503:
	case 504:
		return EAGAIN;
	case 412:
		return EBUSY;
	case 413:
		return EFBIG;
	default:
		break;
	}
	if (http_status >= 500)
		return EIO;
	if (http_status >= 400)
		return EINVAL;
	return EIO;
}
