/*
 * tags.c -- `tags` and `exclude_disks` text formats (see tags.h).
 *
 * Parsing is all-or-nothing: a file with one bad line changes nothing in
 * Azure, because the whole text is parsed before any request is made.
 * Pure functions; no state.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "names.h"
#include "tags.h"

static void tags_why(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void tags_why(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	if (!why || whylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

void tags_free(struct az_tag *tags, size_t n)
{
	if (!tags)
		return;
	for (size_t i = 0; i < n; i++) {
		free(tags[i].key);
		free(tags[i].value);
	}
	free(tags);
}

const char *tags_find(const struct az_tag *tags, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (tags[i].key && strcasecmp(tags[i].key, key) == 0)
			return tags[i].value ? tags[i].value : "";
	return NULL;
}

/* Append a copy of key/value (lengths given) to *tags. */
static int tags_push(struct az_tag **tags, size_t *n, const char *key,
		     size_t klen, const char *value, size_t vlen)
{
	struct az_tag *grown = realloc(*tags, (*n + 1) * sizeof(**tags));

	if (!grown)
		return -ENOMEM;
	*tags = grown;
	grown[*n].key = strndup(key, klen);
	grown[*n].value = strndup(value, vlen);
	if (!grown[*n].key || !grown[*n].value) {
		free(grown[*n].key);
		free(grown[*n].value);
		return -ENOMEM;
	}
	(*n)++;
	return 0;
}

static int tags_check_line(const char *line, size_t len, size_t lineno,
			   const char **eq, char *why, size_t whylen)
{
	static const char forbidden[] = "<>%&\\?/";

	*eq = memchr(line, '=', len);
	if (!*eq) {
		tags_why(why, whylen, "line %zu: no '=' (want key=value)",
			 lineno);
		return -EINVAL;
	}
	if (*eq == line) {
		tags_why(why, whylen, "line %zu: empty key", lineno);
		return -EINVAL;
	}
	if ((size_t)(*eq - line) > TAGS_KEY_MAX) {
		tags_why(why, whylen, "line %zu: key longer than %d", lineno,
			 TAGS_KEY_MAX);
		return -EINVAL;
	}
	if (len - (size_t)(*eq - line) - 1 > TAGS_VALUE_MAX) {
		tags_why(why, whylen, "line %zu: value longer than %d", lineno,
			 TAGS_VALUE_MAX);
		return -EINVAL;
	}
	for (const char *p = line; p < *eq; p++) {
		if (strchr(forbidden, *p)) {
			tags_why(why, whylen,
				 "line %zu: key has '%c' (Azure forbids "
				 "<>%%&\\?/ in tag names)",
				 lineno, *p);
			return -EINVAL;
		}
	}
	return 0;
}

int tags_parse(const char *text, size_t len, struct az_tag **tags, size_t *n,
	       char *why, size_t whylen)
{
	struct az_tag *out = NULL;
	size_t nout = 0, lineno = 0, pos = 0;
	int rc = 0;

	if (memchr(text, '\0', len)) {
		tags_why(why, whylen, "text contains a NUL byte");
		return -EINVAL;
	}
	while (pos < len && rc == 0) {
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t llen = nl ? (size_t)(nl - line) : len - pos;
		const char *eq;

		pos += llen + (nl ? 1 : 0);
		lineno++;
		if (llen > 0 && line[llen - 1] == '\r')
			llen--;
		if (llen == 0)
			continue;
		rc = tags_check_line(line, llen, lineno, &eq, why, whylen);
		if (rc)
			break;
		if (strncasecmp(line, TAGS_EXCLUDE_KEY, (size_t)(eq - line)) ==
			0 &&
		    (size_t)(eq - line) == strlen(TAGS_EXCLUDE_KEY)) {
			tags_why(why, whylen,
				 "line %zu: tag %s is reserved (write "
				 "exclude_disks instead)",
				 lineno, TAGS_EXCLUDE_KEY);
			rc = -EINVAL;
			break;
		}
		for (size_t i = 0; i < nout; i++) {
			if (strlen(out[i].key) == (size_t)(eq - line) &&
			    strncasecmp(out[i].key, line,
					(size_t)(eq - line)) == 0) {
				tags_why(why, whylen,
					 "line %zu: duplicate key '%s'", lineno,
					 out[i].key);
				rc = -EINVAL;
			}
		}
		if (rc)
			break;
		if (nout >= TAGS_COUNT_MAX) {
			tags_why(why, whylen, "more than %d tags",
				 TAGS_COUNT_MAX);
			rc = -EINVAL;
			break;
		}
		rc = tags_push(&out, &nout, line, (size_t)(eq - line), eq + 1,
			       llen - (size_t)(eq - line) - 1);
	}
	if (rc) {
		tags_free(out, nout);
		return rc;
	}
	*tags = out;
	*n = nout;
	return 0;
}

char *tags_format(const struct az_tag *tags, size_t n)
{
	size_t total = 1, off = 0;
	char *buf;

	for (size_t i = 0; i < n; i++)
		total += strlen(tags[i].key) +
			 strlen(tags[i].value ? tags[i].value : "") + 2;
	buf = malloc(total);
	if (!buf)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (strcasecmp(tags[i].key, TAGS_EXCLUDE_KEY) == 0)
			continue;
		off += (size_t)sprintf(buf + off, "%s=%s\n", tags[i].key,
				       tags[i].value ? tags[i].value : "");
	}
	buf[off] = '\0';
	return buf;
}

int tags_merge(const struct az_tag *user, size_t nuser,
	       const char *exclude_value, struct az_tag **out, size_t *nout)
{
	struct az_tag *v = NULL;
	size_t n = 0;
	int rc = 0;

	for (size_t i = 0; i < nuser && rc == 0; i++) {
		const char *val = user[i].value ? user[i].value : "";

		if (strcasecmp(user[i].key, TAGS_EXCLUDE_KEY) == 0)
			continue;
		rc = tags_push(&v, &n, user[i].key, strlen(user[i].key), val,
			       strlen(val));
	}
	if (rc == 0 && exclude_value)
		rc = tags_push(&v, &n, TAGS_EXCLUDE_KEY,
			       strlen(TAGS_EXCLUDE_KEY), exclude_value,
			       strlen(exclude_value));
	if (rc) {
		tags_free(v, n);
		return rc;
	}
	*out = v;
	*nout = n;
	return 0;
}

static int tags_push_name(char ***names, size_t *n, const char *s, size_t len)
{
	char **grown;

	for (size_t i = 0; i < *n; i++)
		if (strlen((*names)[i]) == len &&
		    strncasecmp((*names)[i], s, len) == 0)
			return 0; /* duplicate: keep the first */
	grown = realloc(*names, (*n + 1) * sizeof(**names));
	if (!grown)
		return -ENOMEM;
	*names = grown;
	grown[*n] = strndup(s, len);
	if (!grown[*n])
		return -ENOMEM;
	(*n)++;
	return 0;
}

int tags_parse_exclude(const char *text, size_t len, char ***names, size_t *n,
		       char *why, size_t whylen)
{
	char **out = NULL;
	size_t nout = 0, pos = 0, lineno = 0;
	int rc = 0;

	if (memchr(text, '\0', len)) {
		tags_why(why, whylen, "text contains a NUL byte");
		return -EINVAL;
	}
	while (pos < len && rc == 0) {
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t llen = nl ? (size_t)(nl - line) : len - pos;
		char name[NAMES_RESOURCE_MAX + 1];

		pos += llen + (nl ? 1 : 0);
		lineno++;
		while (llen > 0 && strchr(" \t\r", line[0])) {
			line++;
			llen--;
		}
		while (llen > 0 && strchr(" \t\r", line[llen - 1]))
			llen--;
		if (llen == 0)
			continue;
		if (llen > NAMES_RESOURCE_MAX) {
			tags_why(why, whylen, "line %zu: disk name too long",
				 lineno);
			rc = -EINVAL;
			break;
		}
		memcpy(name, line, llen);
		name[llen] = '\0';
		if (!names_valid_disk(name)) {
			tags_why(why, whylen,
				 "line %zu: '%s' is not a valid disk name",
				 lineno, name);
			rc = -EINVAL;
			break;
		}
		rc = tags_push_name(&out, &nout, line, llen);
	}
	if (rc) {
		names_list_free(out, nout);
		return rc;
	}
	*names = out;
	*n = nout;
	return 0;
}

char *tags_format_exclude(char *const *names, size_t n)
{
	size_t total = 1, off = 0;
	char *buf;

	for (size_t i = 0; i < n; i++)
		total += strlen(names[i]) + 1;
	buf = malloc(total);
	if (!buf)
		return NULL;
	for (size_t i = 0; i < n; i++)
		off += (size_t)sprintf(buf + off, "%s\n", names[i]);
	buf[off] = '\0';
	return buf;
}

int tags_exclude_value(char *const *names, size_t n, char **value, char *why,
		       size_t whylen)
{
	size_t total = 1, off = 0;
	char *buf;

	*value = NULL;
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		total += strlen(names[i]) + 1;
	if (total - 2 > TAGS_VALUE_MAX) {
		tags_why(why, whylen,
			 "the names take %zu characters; the %s tag holds at "
			 "most %d",
			 total - 2, TAGS_EXCLUDE_KEY, TAGS_VALUE_MAX);
		return -EINVAL;
	}
	buf = malloc(total);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		off +=
		    (size_t)sprintf(buf + off, "%s%s", i ? "," : "", names[i]);
	buf[off] = '\0';
	*value = buf;
	return 0;
}

int tags_exclude_from_value(const char *value, char ***names, size_t *n)
{
	char **out = NULL;
	size_t nout = 0;
	const char *p = value ? value : "";

	while (*p) {
		size_t len = strcspn(p, ",");
		const char *s = p;
		size_t slen = len;
		int rc;

		while (slen > 0 && *s == ' ') {
			s++;
			slen--;
		}
		while (slen > 0 && s[slen - 1] == ' ')
			slen--;
		if (slen > 0) {
			rc = tags_push_name(&out, &nout, s, slen);
			if (rc) {
				names_list_free(out, nout);
				return rc;
			}
		}
		p += len;
		if (*p == ',')
			p++;
	}
	*names = out;
	*n = nout;
	return 0;
}
