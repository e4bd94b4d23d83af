/*
 * secret.h -- the one type for secrets (bearer tokens, client secrets,
 * SAS URLs) and its one printer, which redacts.
 *
 * A secret owns a heap copy of its value; secret_clear wipes it with
 * explicit_bzero before freeing.  Code that needs the raw value (to build
 * an Authorization header or to send a SAS request) calls secret_value and
 * must not keep the pointer beyond the secret's lifetime or print it.
 */
#ifndef RPFS_SECRET_H
#define RPFS_SECRET_H

#include <stdbool.h>

struct secret {
	char *value; /* NULL when empty */
};

/* Replace the value with a copy of s (NULL clears). Returns 0 or -ENOMEM. */
int secret_set(struct secret *sec, const char *s);
const char *secret_value(const struct secret *sec);
bool secret_empty(const struct secret *sec);
void secret_clear(struct secret *sec);
/* What logs show instead of the value: "[redacted N chars]". */
const char *secret_print(const struct secret *sec, char *buf, int buflen);

#endif
