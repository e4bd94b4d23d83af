/*
 * names.c -- name rules of the tree (see names.h and docs/tree.md).
 *
 * Validation is deliberately strict and local: a name Azure would reject
 * is refused with EINVAL before any request, so a typo never costs a
 * round trip or leaves a half-made resource.  Everything here is a pure
 * function of its arguments; no state, no locks.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "names.h"

static const char *const names_collection_files[] = {
    "collection.json", "source", "location", "status", "tags", "exclude_disks",
};

static bool names_charset_ok(const char *s, size_t max)
{
	size_t len = strlen(s);

	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (!isascii(ch))
			return false;
		if (!isalnum(ch) && ch != '_' && ch != '.' && ch != '-')
			return false;
	}
	return true;
}

bool names_valid_resource(const char *name)
{
	size_t len;

	if (!name || !names_charset_ok(name, NAMES_RESOURCE_MAX))
		return false;
	len = strlen(name);
	if (name[0] == '.' || name[0] == '-')
		return false;
	return name[len - 1] != '.';
}

bool names_valid_disk(const char *name)
{
	return names_valid_resource(name);
}

bool names_valid_vm(const char *name)
{
	size_t len;

	if (!name || !names_charset_ok(name, 64))
		return false;
	len = strlen(name);
	if (name[0] == '_' || name[0] == '.' || name[0] == '-')
		return false;
	return name[len - 1] != '.' && name[len - 1] != '-';
}

bool names_valid_location(const char *name)
{
	size_t len;

	if (!name)
		return false;
	len = strlen(name);
	if (len == 0 || len > 64)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];

		if (!isascii(ch) || !isalnum(ch))
			return false;
	}
	return true;
}

bool names_is_collection_file(const char *name)
{
	size_t n =
	    sizeof(names_collection_files) / sizeof(names_collection_files[0]);

	for (size_t i = 0; i < n; i++)
		if (strcmp(name, names_collection_files[i]) == 0)
			return true;
	return false;
}

int names_rp_entry(const char *rp_name, char *out, size_t outlen)
{
	int len;

	if (names_is_collection_file(rp_name))
		len =
		    snprintf(out, outlen, "%c%s", NAMES_CLASH_PREFIX, rp_name);
	else
		len = snprintf(out, outlen, "%s", rp_name);
	if (len < 0 || (size_t)len >= outlen)
		return -ENAMETOOLONG;
	return 0;
}

int names_rp_from_entry(const char *entry, char *out, size_t outlen)
{
	const char *name = entry;

	if (names_is_collection_file(entry))
		return -ENOENT;
	if (entry[0] == NAMES_CLASH_PREFIX) {
		name = entry + 1;
		/* Only the canonical form: "@x" exists only for fixed x. */
		if (!names_is_collection_file(name))
			return -ENOENT;
	}
	if (strlen(name) >= outlen)
		return -ENAMETOOLONG;
	strcpy(out, name);
	return 0;
}

void names_list_free(char **list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

static const char *names_drp_name(const struct az_disk *d)
{
	if (!d->drp_id || !*d->drp_id)
		return NULL;
	return az_id_name(d->drp_id);
}

/* The name a disk gets when it is alone: its own name, else its DRP's. */
static const char *names_disk_base(const struct az_disk *d)
{
	if (d->name && *d->name && !strchr(d->name, '/'))
		return d->name;
	return names_drp_name(d);
}

static bool names_taken(char **list, size_t n, size_t self, const char *name)
{
	for (size_t j = 0; j < n; j++)
		if (j != self && list[j] && strcasecmp(list[j], name) == 0)
			return true;
	return false;
}

/*
 * A disk's own name can still equal another disk's DRP name after the
 * renaming above.  Every disk must stay reachable, so a later duplicate
 * becomes "<name>~<k>.vhd" with the smallest free k.
 */
static int names_make_unique(char **out, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		bool earlier = false;

		for (size_t j = 0; j < i && !earlier; j++)
			earlier = strcasecmp(out[i], out[j]) == 0;
		if (!earlier)
			continue;
		size_t stem = strlen(out[i]) - strlen(".vhd");
		for (unsigned k = 1;; k++) {
			char *alt;

			if (asprintf(&alt, "%.*s~%u.vhd", (int)stem, out[i],
				     k) < 0)
				return -ENOMEM;
			if (!names_taken(out, n, i, alt)) {
				free(out[i]);
				out[i] = alt;
				break;
			}
			free(alt);
		}
	}
	return 0;
}

int names_disk_files(const struct az_disk *disks, size_t n, char ***files)
{
	char **out = calloc(n ? n : 1, sizeof(*out));

	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *base = names_disk_base(&disks[i]);
		bool dup = false;
		int len;

		for (size_t j = 0; base && j < n && !dup; j++) {
			const char *other = names_disk_base(&disks[j]);

			if (j != i && other && strcasecmp(base, other) == 0)
				dup = true;
		}
		if (dup && names_drp_name(&disks[i]))
			base = names_drp_name(&disks[i]);
		if (base && *base)
			len = asprintf(&out[i], "%s.vhd", base);
		else
			len = asprintf(&out[i], "disk%zu.vhd", i);
		if (len < 0) {
			out[i] = NULL;
			names_list_free(out, n);
			return -ENOMEM;
		}
	}
	if (names_make_unique(out, n)) {
		names_list_free(out, n);
		return -ENOMEM;
	}
	*files = out;
	return 0;
}

int names_id_part(const char *id, const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key);
	const char *p = id;

	while (p && *p) {
		const char *seg;
		size_t slen;

		while (*p == '/')
			p++;
		seg = p;
		slen = strcspn(seg, "/");
		p = seg + slen;
		if (slen == klen && strncasecmp(seg, key, klen) == 0) {
			const char *val;
			size_t vlen;

			while (*p == '/')
				p++;
			val = p;
			vlen = strcspn(val, "/");
			if (vlen == 0)
				return -ENOENT;
			if (vlen >= outlen)
				return -ENAMETOOLONG;
			memcpy(out, val, vlen);
			out[vlen] = '\0';
			return 0;
		}
	}
	return -ENOENT;
}

bool names_id_is_collection(const char *id)
{
	char tmp[256];

	return names_id_part(id, "restorePointCollections", tmp, sizeof(tmp)) ==
	       0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static long long names_days_from_civil(int y, int m, int d)
{
	long long era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int names_parse_time(const char *s, time_t *out)
{
	int y, mo, d, h, mi, sec, used = 0;
	const char *p;
	long long t;

	if (!s ||
	    sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec,
		   &used) != 6 ||
	    used == 0)
		return -EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    sec > 60 || h < 0 || mi < 0 || sec < 0)
		return -EINVAL;
	p = s + used;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		while (isdigit((unsigned char)*p))
			p++;
	}
	t = names_days_from_civil(y, mo, d) * 86400LL + h * 3600LL + mi * 60LL +
	    sec;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om, n = 0;
		int sign = *p == '-' ? -1 : 1;

		if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5)
			return -EINVAL;
		t -= sign * (oh * 3600LL + om * 60LL);
		p += 1 + n;
	} else if (*p) {
		return -EINVAL;
	}
	if (*p)
		return -EINVAL;
	*out = (time_t)t;
	return 0;
}
