/*
 * blob_source.c -- where a disk's bytes are: its SAS URL and, for an
 * Entra-ID disk, the bearer token sent with it (see blob.h).
 *
 * Both are struct secret, guarded by the source's mutex together with the
 * generation (bumped by every change) and the SAS expiry parsed from
 * `se`.  Transfers copy what they need under the mutex when they start.
 * Refcounted: the disk and every transfer in flight hold a reference.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "blob_int.h"

struct blob_source *blob_source_new(void)
{
	struct blob_source *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	pthread_mutex_init(&s->mu, NULL);
	atomic_init(&s->refs, 1);
	s->gen = 1;
	return s;
}

void blob_source_ref(struct blob_source *s)
{
	atomic_fetch_add(&s->refs, 1);
}

void blob_source_unref(struct blob_source *s)
{
	if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	secret_clear(&s->sas);
	secret_clear(&s->bearer);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

int blob_source_set_sas(struct blob_source *s, const struct secret *sas)
{
	const char *v = secret_value(sas);
	time_t exp = 0;
	int rc;

	if (!v || strncasecmp(v, "https://", 8) != 0)
		return -EINVAL;
	if (blob_sas_expiry(v, &exp))
		exp = 0;
	pthread_mutex_lock(&s->mu);
	rc = secret_set(&s->sas, v);
	if (!rc) {
		s->gen++;
		s->expiry = exp;
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

int blob_source_set_bearer(struct blob_source *s, const struct secret *token)
{
	int rc;

	pthread_mutex_lock(&s->mu);
	rc = secret_set(&s->bearer, token ? secret_value(token) : NULL);
	s->gen++;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

bool blob_source_has_bearer(struct blob_source *s)
{
	bool b;

	pthread_mutex_lock(&s->mu);
	b = !secret_empty(&s->bearer);
	pthread_mutex_unlock(&s->mu);
	return b;
}

unsigned blob_source_gen(struct blob_source *s)
{
	unsigned g;

	pthread_mutex_lock(&s->mu);
	g = s->gen;
	pthread_mutex_unlock(&s->mu);
	return g;
}

time_t blob_source_expiry(struct blob_source *s)
{
	time_t t;

	pthread_mutex_lock(&s->mu);
	t = s->expiry;
	pthread_mutex_unlock(&s->mu);
	return t;
}
