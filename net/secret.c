/*
 * secret.c -- the one type for secrets and its one printer.
 *
 * A struct secret owns a heap copy of its value; clearing wipes the bytes
 * with explicit_bzero before freeing, so a token does not linger in freed
 * memory.  secret_print never looks at the content, only its length.
 * Not locked: a secret belongs to one owner at a time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secret.h"

int secret_set(struct secret *sec, const char *s)
{
	char *copy = NULL;

	if (s) {
		copy = strdup(s);
		if (!copy)
			return -ENOMEM;
	}
	secret_clear(sec);
	sec->value = copy;
	return 0;
}

const char *secret_value(const struct secret *sec)
{
	return sec ? sec->value : NULL;
}

bool secret_empty(const struct secret *sec)
{
	return !sec || !sec->value || !sec->value[0];
}

void secret_clear(struct secret *sec)
{
	if (!sec || !sec->value)
		return;
	explicit_bzero(sec->value, strlen(sec->value));
	free(sec->value);
	sec->value = NULL;
}

const char *secret_print(const struct secret *sec, char *buf, int buflen)
{
	if (!buf || buflen <= 0)
		return "";
	if (secret_empty(sec))
		snprintf(buf, (size_t)buflen, "[empty]");
	else
		snprintf(buf, (size_t)buflen, "[redacted %zu chars]",
			 strlen(sec->value));
	return buf;
}
