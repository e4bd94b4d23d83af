/*
 * blob_parse.c -- the parts of blob.h that need no network: Content-Range,
 * the SAS expiry, and the XML of Get Page Ranges and Storage
 * errors.  Kept apart from the engine so that unit tests (and fuzzers) can
 * drive them alone.
 *
 * Everything here reads input that came from a server, so it is strict and
 * bounded: numbers are decimal digits with overflow checks, text captured
 * from XML has a fixed cap, and the XML itself goes through expat with
 * document type declarations refused (no entities, no external anything).
 * The page-list parser is streaming: memory stays constant however long
 * the answer, since ranges go straight to the caller's callback.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <expat.h>

#include "blob.h"

/* Parse decimal digits [p, p+n) into *out; -EINVAL on anything else. */
static int parse_ll(const char *p, size_t n, long long *out)
{
	long long v = 0;

	if (n == 0 || n > 19)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -EINVAL;
		if (v > (LLONG_MAX - (p[i] - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (p[i] - '0');
	}
	*out = v;
	return 0;
}

static size_t span_digits(const char *p)
{
	size_t n = 0;

	while (p[n] >= '0' && p[n] <= '9')
		n++;
	return n;
}

int blob_parse_content_range(const char *value, long long *start,
			     long long *end, long long *total)
{
	const char *p = value;
	long long s, e, t = -1;
	size_t n;

	if (!p)
		return -EINVAL;
	while (*p == ' ' || *p == '\t')
		p++;
	if (strncasecmp(p, "bytes", 5) != 0)
		return -EINVAL;
	p += 5;
	if (*p != ' ')
		return -EINVAL;
	while (*p == ' ')
		p++;
	n = span_digits(p);
	if (parse_ll(p, n, &s))
		return -EINVAL;
	p += n;
	if (*p++ != '-')
		return -EINVAL;
	n = span_digits(p);
	if (parse_ll(p, n, &e))
		return -EINVAL;
	p += n;
	if (*p++ != '/')
		return -EINVAL;
	if (*p == '*') {
		p++;
	} else {
		n = span_digits(p);
		if (parse_ll(p, n, &t))
			return -EINVAL;
		p += n;
	}
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (*p || s > e || (t >= 0 && e >= t))
		return -EINVAL;
	*start = s;
	*end = e;
	*total = t;
	return 0;
}

/* Fixed-width decimal field of a timestamp. */
static int ts_field(const char **p, int width, int *out)
{
	long long v;

	if (parse_ll(*p, (size_t)width, &v))
		return -EINVAL;
	*p += width;
	*out = (int)v;
	return 0;
}

/* YYYY-MM-DD[Thh:mm[:ss[.f+]][Z]] as UTC (the forms a SAS may carry). */
static int parse_iso8601(const char *s, time_t *out)
{
	struct tm tm = {0};
	const char *p = s;
	int y, mo, d, h = 0, mi = 0, sec = 0;
	time_t t;

	if (ts_field(&p, 4, &y) || *p++ != '-' || ts_field(&p, 2, &mo) ||
	    *p++ != '-' || ts_field(&p, 2, &d))
		return -EINVAL;
	if (*p == 'T' || *p == 't') {
		p++;
		if (ts_field(&p, 2, &h) || *p++ != ':' || ts_field(&p, 2, &mi))
			return -EINVAL;
		if (*p == ':') {
			p++;
			if (ts_field(&p, 2, &sec))
				return -EINVAL;
			if (*p == '.') {
				p++;
				if (!span_digits(p))
					return -EINVAL;
				p += span_digits(p);
			}
		}
		if (*p == 'Z' || *p == 'z')
			p++;
	}
	if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    sec > 60)
		return -EINVAL;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*out = t;
	return 0;
}

int blob_sas_expiry(const char *sas_url, time_t *out)
{
	const char *q, *p, *end;
	int rc = -ENOENT;

	if (!sas_url)
		return -EINVAL;
	q = strchr(sas_url, '?');
	if (!q)
		return -ENOENT;
	end = strchr(q, '#');
	if (!end)
		end = q + strlen(q);
	for (p = q + 1; p < end;) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;

		if (stop - p > 3 && strncmp(p, "se=", 3) == 0) {
			int outlen = 0;
			char *v = curl_easy_unescape(
			    NULL, p + 3, (int)(stop - p - 3), &outlen);

			if (!v)
				return -ENOMEM;
			rc = (size_t)outlen == strlen(v) ? parse_iso8601(v, out)
							 : -EINVAL;
			curl_free(v);
			return rc;
		}
		p = stop + 1;
	}
	return rc;
}

/* ---- Get Page Ranges ---- */

enum pl_capture { CAP_NONE, CAP_START, CAP_END, CAP_MARKER };

struct blob_pl_parser {
	XML_Parser xp;
	long long win_start, win_end;
	blob_range_cb cb;
	void *arg;
	int depth;
	int ignore_depth; /* >0: inside an element we skip (ClearRange) */
	bool in_range, have_start, have_end;
	long long start, end, prev_end; /* prev_end: -1 before the first */
	enum pl_capture cap;
	char text[4096]; /* captured character data */
	size_t textlen;
	char *marker;
	int err;
	char why[160];
};

static void pl_fail(struct blob_pl_parser *p, int err, const char *why)
{
	if (!p->err) {
		p->err = err;
		snprintf(p->why, sizeof(p->why), "%s", why);
	}
	XML_StopParser(p->xp, XML_FALSE);
}

/* Captured text with surrounding whitespace removed. */
static const char *pl_text(struct blob_pl_parser *p, size_t *n)
{
	char *s = p->text, *e = p->text + p->textlen;

	while (s < e && isspace((unsigned char)*s))
		s++;
	while (e > s && isspace((unsigned char)e[-1]))
		e--;
	*n = (size_t)(e - s);
	return s;
}

static void XMLCALL pl_start(void *ud, const XML_Char *name,
			     const XML_Char **attrs)
{
	struct blob_pl_parser *p = ud;
	int d = p->depth++;

	(void)attrs;
	if (p->ignore_depth)
		return;
	if (d == 0) {
		if (strcmp(name, "PageList") != 0)
			pl_fail(p, -EIO, "root element is not PageList");
		return;
	}
	if (d == 1) {
		if (strcmp(name, "PageRange") == 0) {
			p->in_range = true;
			p->have_start = p->have_end = false;
		} else if (strcmp(name, "NextMarker") == 0) {
			p->cap = CAP_MARKER;
			p->textlen = 0;
		} else {
			p->ignore_depth = p->depth; /* ClearRange, unknown */
		}
		return;
	}
	if (d == 2 && p->in_range) {
		if (strcmp(name, "Start") == 0)
			p->cap = CAP_START;
		else if (strcmp(name, "End") == 0)
			p->cap = CAP_END;
		else
			p->ignore_depth = p->depth;
		p->textlen = 0;
		return;
	}
	pl_fail(p, -EIO, "unexpected nesting in PageList");
}

static void XMLCALL pl_chars(void *ud, const XML_Char *s, int len)
{
	struct blob_pl_parser *p = ud;

	if (p->ignore_depth || p->cap == CAP_NONE || len <= 0)
		return;
	if (p->textlen + (size_t)len >= sizeof(p->text)) {
		pl_fail(p, -EIO, "element text too long");
		return;
	}
	memcpy(p->text + p->textlen, s, (size_t)len);
	p->textlen += (size_t)len;
}

static void pl_range_done(struct blob_pl_parser *p)
{
	long long s = p->start, e;
	int rc;

	if (!p->have_start || !p->have_end) {
		pl_fail(p, -EIO, "PageRange without Start or End");
		return;
	}
	/* End is inclusive: End + 1 must not overflow (no blob is that big). */
	if (p->end >= LLONG_MAX - 512) {
		pl_fail(p, -EIO, "PageRange End out of range");
		return;
	}
	if (p->end < p->start || p->start % 512 || (p->end + 1) % 512) {
		pl_fail(p, -EIO, "PageRange not 512-aligned or inverted");
		return;
	}
	if (p->prev_end >= 0 && p->start <= p->prev_end) {
		pl_fail(p, -EIO, "PageRange out of order or overlapping");
		return;
	}
	p->prev_end = p->end;
	e = p->end + 1;
	if (s < p->win_start)
		s = p->win_start;
	if (e > p->win_end)
		e = p->win_end;
	if (s >= e)
		return;
	rc = p->cb(p->arg, s, e);
	if (rc)
		pl_fail(p, rc, "range callback failed");
}

static void XMLCALL pl_end(void *ud, const XML_Char *name)
{
	struct blob_pl_parser *p = ud;
	size_t n;
	const char *t;

	(void)name;
	p->depth--;
	if (p->ignore_depth) {
		if (p->depth < p->ignore_depth)
			p->ignore_depth = 0;
		return;
	}
	switch (p->cap) {
	case CAP_START:
	case CAP_END:
		t = pl_text(p, &n);
		if (parse_ll(t, n, p->cap == CAP_START ? &p->start : &p->end)) {
			pl_fail(p, -EIO, "Start/End is not a number");
			return;
		}
		if (p->cap == CAP_START)
			p->have_start = true;
		else
			p->have_end = true;
		p->cap = CAP_NONE;
		return;
	case CAP_MARKER:
		t = pl_text(p, &n);
		free(p->marker);
		p->marker = NULL;
		if (n) {
			p->marker = strndup(t, n);
			if (!p->marker)
				pl_fail(p, -ENOMEM, "out of memory");
		}
		p->cap = CAP_NONE;
		return;
	case CAP_NONE:
		break;
	}
	if (p->depth == 1 && p->in_range) {
		p->in_range = false;
		pl_range_done(p);
	}
}

static void XMLCALL pl_doctype(void *ud, const XML_Char *name,
			       const XML_Char *sysid, const XML_Char *pubid,
			       int has_internal_subset)
{
	(void)name;
	(void)sysid;
	(void)pubid;
	(void)has_internal_subset;
	pl_fail(ud, -EIO, "document type declarations are refused");
}

struct blob_pl_parser *blob_pl_parser_new(long long win_start,
					  long long win_end, blob_range_cb cb,
					  void *arg)
{
	struct blob_pl_parser *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->xp = XML_ParserCreate("UTF-8");
	if (!p->xp) {
		free(p);
		return NULL;
	}
	p->win_start = win_start;
	p->win_end = win_end;
	p->cb = cb;
	p->arg = arg;
	p->prev_end = -1;
	XML_SetUserData(p->xp, p);
	XML_SetElementHandler(p->xp, pl_start, pl_end);
	XML_SetCharacterDataHandler(p->xp, pl_chars);
	XML_SetStartDoctypeDeclHandler(p->xp, pl_doctype);
	XML_SetParamEntityParsing(p->xp, XML_PARAM_ENTITY_PARSING_NEVER);
	return p;
}

int blob_pl_parser_feed(struct blob_pl_parser *p, const char *data, size_t len,
			bool final)
{
	while (!p->err) {
		int n = len > INT_MAX ? INT_MAX : (int)len;

		if (XML_Parse(p->xp, data, n, final && (size_t)n == len) ==
		    XML_STATUS_ERROR) {
			if (!p->err) {
				p->err = -EIO;
				snprintf(
				    p->why, sizeof(p->why),
				    "XML error at line %lu: %s",
				    (unsigned long)XML_GetCurrentLineNumber(
					p->xp),
				    XML_ErrorString(XML_GetErrorCode(p->xp)));
			}
			break;
		}
		data += n;
		len -= (size_t)n;
		if (!len)
			break;
	}
	if (!p->err && final && p->depth != 0) {
		p->err = -EIO;
		snprintf(p->why, sizeof(p->why), "truncated PageList");
	}
	return p->err;
}

const char *blob_pl_parser_marker(const struct blob_pl_parser *p)
{
	return p->marker;
}

const char *blob_pl_parser_error(const struct blob_pl_parser *p)
{
	return p->why;
}

void blob_pl_parser_free(struct blob_pl_parser *p)
{
	if (!p)
		return;
	XML_ParserFree(p->xp);
	free(p->marker);
	free(p);
}

/* ---- Storage error bodies ---- */

struct err_ctx {
	XML_Parser xp;
	int depth;
	char *cur; /* capture target or NULL */
	size_t curlen, curcap;
	char *code, *msg;
	size_t codelen, msglen;
	bool bad;
};

static void XMLCALL err_start(void *ud, const XML_Char *name,
			      const XML_Char **attrs)
{
	struct err_ctx *c = ud;

	(void)attrs;
	if (c->depth == 0 && strcmp(name, "Error") != 0)
		c->bad = true;
	if (c->depth == 1 && strcmp(name, "Code") == 0) {
		c->cur = c->code;
		c->curcap = c->codelen;
		c->curlen = 0;
	} else if (c->depth == 1 && strcmp(name, "Message") == 0) {
		c->cur = c->msg;
		c->curcap = c->msglen;
		c->curlen = 0;
	} else {
		c->cur = NULL;
	}
	c->depth++;
}

static void XMLCALL err_end(void *ud, const XML_Char *name)
{
	struct err_ctx *c = ud;

	(void)name;
	c->depth--;
	c->cur = NULL;
}

static void XMLCALL err_chars(void *ud, const XML_Char *s, int len)
{
	struct err_ctx *c = ud;

	for (int i = 0; c->cur && i < len && c->curlen + 1 < c->curcap; i++) {
		/* one line: a message may hold newlines and RequestId */
		char ch = s[i] == '\n' || s[i] == '\r' ? ' ' : s[i];

		c->cur[c->curlen++] = ch;
		c->cur[c->curlen] = 0;
	}
}

static void XMLCALL err_doctype(void *ud, const XML_Char *name,
				const XML_Char *sysid, const XML_Char *pubid,
				int has_internal_subset)
{
	struct err_ctx *c = ud;

	(void)name;
	(void)sysid;
	(void)pubid;
	(void)has_internal_subset;
	c->bad = true;
	XML_StopParser(c->xp, XML_FALSE);
}

int blob_parse_error_xml(const char *body, size_t len, char *code,
			 size_t codelen, char *msg, size_t msglen)
{
	struct err_ctx c = {0};
	int rc = 0;

	if (codelen)
		code[0] = 0;
	if (msglen)
		msg[0] = 0;
	if (!body || !len || len > INT_MAX)
		return -EIO;
	c.xp = XML_ParserCreate("UTF-8");
	if (!c.xp)
		return -ENOMEM;
	c.code = code;
	c.codelen = codelen;
	c.msg = msg;
	c.msglen = msglen;
	XML_SetUserData(c.xp, &c);
	XML_SetElementHandler(c.xp, err_start, err_end);
	XML_SetCharacterDataHandler(c.xp, err_chars);
	XML_SetStartDoctypeDeclHandler(c.xp, err_doctype);
	XML_SetParamEntityParsing(c.xp, XML_PARAM_ENTITY_PARSING_NEVER);
	if (XML_Parse(c.xp, body, (int)len, 1) == XML_STATUS_ERROR || c.bad)
		rc = -EIO;
	XML_ParserFree(c.xp);
	return rc;
}
