/*
 * tags.h -- the text formats of a collection's `tags` and `exclude_disks`
 * files, and where exclude_disks lives in Azure.
 *
 * `tags` shows one "key=value" line per tag; writing it replaces all the
 * user's tags.  `exclude_disks` shows one disk name per line; it is kept in
 * Azure as the collection tag TAGS_EXCLUDE_KEY (comma-separated names), so
 * it survives a remount and is shared by every mount, and that tag is
 * hidden from the `tags` file (and may not be written through it).
 *
 * Pure functions; returned strings and arrays are malloc'ed and owned by
 * the caller.
 */
#ifndef RPFS_TAGS_H
#define RPFS_TAGS_H

#include <stddef.h>

#include "../net/az.h"

#define TAGS_EXCLUDE_KEY "rpfs-exclude-disks"
#define TAGS_KEY_MAX 512   /* Azure: tag names up to 512 characters */
#define TAGS_VALUE_MAX 256 /* Azure: tag values up to 256 characters */
#define TAGS_COUNT_MAX 50  /* Azure: 50 tags per resource */

/*
 * Parse the text written to a `tags` file.  Lines are "key=value" (split
 * at the first '='); empty lines are skipped; a trailing "\r" is dropped.
 * Malformed input -- a line without '=', an empty or over-long key or
 * value, a character Azure forbids in keys (<>%&\?/), a duplicate key
 * (case-insensitive), the reserved key, a NUL byte, too many tags -- gives
 * -EINVAL with a reason in why.  Returns 0 or -EINVAL / -ENOMEM.
 */
int tags_parse(const char *text, size_t len, struct az_tag **tags, size_t *n,
	       char *why, size_t whylen);

/* The `tags` file text: one "key=value\n" per tag except the reserved
 * one, in the order given.  NULL on ENOMEM. */
char *tags_format(const struct az_tag *tags, size_t n);

/* The value of key (case-insensitive), or NULL. */
const char *tags_find(const struct az_tag *tags, size_t n, const char *key);

/*
 * The full tag set to send to Azure: the user's tags without any reserved
 * tag, plus TAGS_EXCLUDE_KEY=exclude_value when exclude_value is non-NULL.
 * Returns 0 or -ENOMEM.
 */
int tags_merge(const struct az_tag *user, size_t nuser,
	       const char *exclude_value, struct az_tag **out, size_t *nout);

void tags_free(struct az_tag *tags, size_t n);

/*
 * Parse the text written to `exclude_disks`: one disk name per line,
 * surrounding blanks ignored, empty lines skipped, duplicates dropped
 * (case-insensitive).  An invalid disk name gives -EINVAL with why.
 */
int tags_parse_exclude(const char *text, size_t len, char ***names, size_t *n,
		       char *why, size_t whylen);

/* The `exclude_disks` file text, one name per line. NULL on ENOMEM. */
char *tags_format_exclude(char *const *names, size_t n);

/*
 * The tag value for names: comma-separated, or *value = NULL when n is 0.
 * -EINVAL when it exceeds TAGS_VALUE_MAX (why filled), -ENOMEM.
 */
int tags_exclude_value(char *const *names, size_t n, char **value, char *why,
		       size_t whylen);

/* Split a stored tag value back into names (empty items skipped). */
int tags_exclude_from_value(const char *value, char ***names, size_t *n);

#endif
