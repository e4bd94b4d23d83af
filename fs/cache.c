/*
 * cache.c -- snapshots of Azure answers with an expiry, and the pending
 * collections of this mount (see cache.h for the model).
 *
 * Invariants:
 *   - a slot (groups, colls, one entry of coll[]) holds one reference to
 *     its snapshot; every caller that got a snapshot holds another, so the
 *     snapshot is freed by whoever drops the last reference;
 *   - snapshots never change after they are published;
 *   - c->lock guards the slots and the pending list, never a request:
 *     a fetch runs unlocked and publishes its result afterwards (two
 *     threads may fetch the same thing at once; the later answer wins,
 *     which is harmless since both are fresh).
 * The per-collection slots are a flat array searched linearly: a mount
 * sees at most a few thousand collections and the search is in memory.
 * Expired snapshots are dropped when a new one is stored.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../net/clock.h"
#include "cache.h"
#include "names.h"
#include "tags.h"

struct cache {
	struct az *az;
	char *fixed_rg;
	double timeout_s;

	pthread_mutex_t lock;
	struct cache_groups *groups;
	struct cache_colls *colls;
	struct cache_coll **coll;
	size_t ncoll;
	struct cache_pending *pending;
	size_t npending;
};

static double cache_now(void)
{
	return (double)rp_mono_ms() / 1000.0;
}

static bool cache_fresh(const struct cache *c, double at)
{
	return c->timeout_s > 0 && cache_now() - at < c->timeout_s;
}

struct cache *cache_new(struct az *az, const struct cache_config *cfg)
{
	struct cache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->az = az;
	c->timeout_s = cfg->timeout_s;
	if (cfg->fixed_rg) {
		c->fixed_rg = strdup(cfg->fixed_rg);
		if (!c->fixed_rg) {
			free(c);
			return NULL;
		}
	}
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

void cache_groups_put(struct cache_groups *g)
{
	if (!g || atomic_fetch_sub(&g->refs, 1) != 1)
		return;
	az_groups_free(g->v, g->n);
	free(g);
}

void cache_colls_put(struct cache_colls *l)
{
	if (!l || atomic_fetch_sub(&l->refs, 1) != 1)
		return;
	az_collections_free(l->v, l->n);
	free(l);
}

void cache_coll_put(struct cache_coll *s)
{
	if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	if (s->files)
		for (size_t i = 0; i < s->nrps; i++)
			names_list_free(s->files[i], s->rps[i].ndisks);
	free(s->files);
	az_collection_free(&s->c);
	az_restore_points_free(s->rps, s->nrps);
	free(s->key);
	free(s);
}

void cache_pending_clear(struct cache_pending *p)
{
	free(p->rg);
	free(p->name);
	free(p->location);
	tags_free(p->tags, p->ntags);
	names_list_free(p->exclude, p->nexclude);
	memset(p, 0, sizeof(*p));
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	cache_groups_put(c->groups);
	cache_colls_put(c->colls);
	for (size_t i = 0; i < c->ncoll; i++)
		cache_coll_put(c->coll[i]);
	free(c->coll);
	for (size_t i = 0; i < c->npending; i++)
		cache_pending_clear(&c->pending[i]);
	free(c->pending);
	pthread_mutex_destroy(&c->lock);
	free(c->fixed_rg);
	free(c);
}

int cache_groups(struct cache *c, enum cache_mode mode,
		 struct cache_groups **out, struct rp_err *err)
{
	struct cache_groups *g, *old;
	int rc;

	if (mode != CACHE_FRESH) {
		pthread_mutex_lock(&c->lock);
		g = c->groups;
		if (g && cache_fresh(c, g->at)) {
			atomic_fetch_add(&g->refs, 1);
			pthread_mutex_unlock(&c->lock);
			*out = g;
			return 0;
		}
		pthread_mutex_unlock(&c->lock);
		if (mode == CACHE_PEEK)
			return -EAGAIN;
	}
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	rc = az_list_groups(c->az, &g->v, &g->n, err);
	if (rc) {
		free(g);
		return rc;
	}
	g->at = cache_now();
	atomic_init(&g->refs, 2); /* the slot's and the caller's */
	pthread_mutex_lock(&c->lock);
	old = c->groups;
	c->groups = g;
	pthread_mutex_unlock(&c->lock);
	cache_groups_put(old);
	*out = g;
	return 0;
}

int cache_colls(struct cache *c, enum cache_mode mode, struct cache_colls **out,
		struct rp_err *err)
{
	struct cache_colls *l, *old;
	int rc;

	if (mode != CACHE_FRESH) {
		pthread_mutex_lock(&c->lock);
		l = c->colls;
		if (l && cache_fresh(c, l->at)) {
			atomic_fetch_add(&l->refs, 1);
			pthread_mutex_unlock(&c->lock);
			*out = l;
			return 0;
		}
		pthread_mutex_unlock(&c->lock);
		if (mode == CACHE_PEEK)
			return -EAGAIN;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	rc = az_list_collections(c->az, c->fixed_rg, &l->v, &l->n, err);
	if (rc) {
		free(l);
		return rc;
	}
	l->at = cache_now();
	atomic_init(&l->refs, 2);
	pthread_mutex_lock(&c->lock);
	old = c->colls;
	c->colls = l;
	pthread_mutex_unlock(&c->lock);
	cache_colls_put(old);
	*out = l;
	return 0;
}

/* "rg/name" in lower case: Azure names are case-insensitive. */
static char *cache_key(const char *rg, const char *name)
{
	char *key;

	if (asprintf(&key, "%s/%s", rg, name) < 0)
		return NULL;
	for (char *p = key; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return key;
}

/* Index of key in c->coll, or -1.  Called with c->lock held. */
static long cache_find_locked(struct cache *c, const char *key)
{
	for (size_t i = 0; i < c->ncoll; i++)
		if (strcmp(c->coll[i]->key, key) == 0)
			return (long)i;
	return -1;
}

static int cache_coll_fetch(struct cache *c, const char *rg, const char *name,
			    char *key, struct cache_coll **out,
			    struct rp_err *err)
{
	struct cache_coll *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	s->key = key;
	rc = az_get_collection(c->az, rg, name, &s->c, &s->rps, &s->nrps, err);
	if (rc) {
		free(s);
		return rc;
	}
	s->files = calloc(s->nrps ? s->nrps : 1, sizeof(*s->files));
	if (!s->files)
		goto nomem;
	for (size_t i = 0; i < s->nrps; i++)
		if (names_disk_files(s->rps[i].disks, s->rps[i].ndisks,
				     &s->files[i]))
			goto nomem;
	s->at = cache_now();
	atomic_init(&s->refs, 1);
	*out = s;
	return 0;
nomem:
	s->key = NULL; /* the caller still owns key */
	atomic_init(&s->refs, 1);
	cache_coll_put(s);
	return -ENOMEM;
}

/* Store s (one reference given to the slot) and drop expired slots. */
static void cache_store_coll(struct cache *c, struct cache_coll *s)
{
	struct cache_coll **grown, *drop = NULL;
	long at;
	size_t keep = 0;

	pthread_mutex_lock(&c->lock);
	at = cache_find_locked(c, s->key);
	if (at >= 0) {
		drop = c->coll[at];
		c->coll[at] = s;
	} else {
		grown = realloc(c->coll, (c->ncoll + 1) * sizeof(*grown));
		if (!grown) {
			pthread_mutex_unlock(&c->lock);
			cache_coll_put(
			    s); /* not cached; the caller's ref stays */
			return;
		}
		c->coll = grown;
		c->coll[c->ncoll++] = s;
	}
	/* Compact: expired snapshots are refetched anyway. */
	for (size_t i = 0; i < c->ncoll; i++) {
		if (c->coll[i] != s && !cache_fresh(c, c->coll[i]->at)) {
			cache_coll_put(c->coll[i]);
			continue;
		}
		c->coll[keep++] = c->coll[i];
	}
	c->ncoll = keep;
	pthread_mutex_unlock(&c->lock);
	cache_coll_put(drop);
}

int cache_coll(struct cache *c, const char *rg, const char *name,
	       enum cache_mode mode, struct cache_coll **out,
	       struct rp_err *err)
{
	struct cache_coll *s;
	char *key = cache_key(rg, name);
	int rc;

	if (!key)
		return -ENOMEM;
	if (mode != CACHE_FRESH) {
		long at;

		pthread_mutex_lock(&c->lock);
		at = cache_find_locked(c, key);
		if (at >= 0 && cache_fresh(c, c->coll[at]->at)) {
			s = c->coll[at];
			atomic_fetch_add(&s->refs, 1);
			pthread_mutex_unlock(&c->lock);
			free(key);
			*out = s;
			return 0;
		}
		pthread_mutex_unlock(&c->lock);
		if (mode == CACHE_PEEK) {
			free(key);
			return -EAGAIN;
		}
	}
	rc = cache_coll_fetch(c, rg, name, key, &s, err);
	if (rc) {
		free(key);
		return rc;
	}
	atomic_fetch_add(&s->refs, 1); /* the caller's */
	cache_store_coll(c, s);
	*out = s;
	return 0;
}

void cache_invalidate(struct cache *c, const char *rg, const char *name)
{
	struct cache_colls *l;
	struct cache_coll *s = NULL;

	pthread_mutex_lock(&c->lock);
	l = c->colls;
	c->colls = NULL;
	if (name) {
		char *key = cache_key(rg, name);
		long at = key ? cache_find_locked(c, key) : -1;

		if (at >= 0) {
			s = c->coll[at];
			c->coll[at] = c->coll[--c->ncoll];
		}
		free(key);
	}
	pthread_mutex_unlock(&c->lock);
	cache_colls_put(l);
	cache_coll_put(s);
}

/* Pending collections ------------------------------------------------- */

static long cache_pending_find_locked(struct cache *c, const char *rg,
				      const char *name)
{
	for (size_t i = 0; i < c->npending; i++)
		if (strcasecmp(c->pending[i].rg, rg) == 0 &&
		    strcasecmp(c->pending[i].name, name) == 0)
			return (long)i;
	return -1;
}

int cache_pending_copy(const struct cache_pending *src,
		       struct cache_pending *dst)
{
	memset(dst, 0, sizeof(*dst));
	dst->rg = strdup(src->rg);
	dst->name = strdup(src->name);
	if (!dst->rg || !dst->name)
		goto nomem;
	if (src->location) {
		dst->location = strdup(src->location);
		if (!dst->location)
			goto nomem;
	}
	if (src->ntags &&
	    tags_merge(src->tags, src->ntags, NULL, &dst->tags, &dst->ntags))
		goto nomem;
	if (src->nexclude) {
		dst->exclude = calloc(src->nexclude, sizeof(char *));
		if (!dst->exclude)
			goto nomem;
		for (size_t i = 0; i < src->nexclude; i++) {
			dst->exclude[i] = strdup(src->exclude[i]);
			dst->nexclude = i + 1;
			if (!dst->exclude[i])
				goto nomem;
		}
	}
	return 0;
nomem:
	cache_pending_clear(dst);
	return -ENOMEM;
}

int cache_pending_add(struct cache *c, const char *rg, const char *name)
{
	struct cache_pending p = {0}, *grown;
	int rc = 0;

	p.rg = strdup(rg);
	p.name = strdup(name);
	if (!p.rg || !p.name) {
		cache_pending_clear(&p);
		return -ENOMEM;
	}
	pthread_mutex_lock(&c->lock);
	if (cache_pending_find_locked(c, rg, name) >= 0) {
		rc = -EEXIST;
	} else {
		grown = realloc(c->pending, (c->npending + 1) * sizeof(*grown));
		if (!grown) {
			rc = -ENOMEM;
		} else {
			c->pending = grown;
			c->pending[c->npending++] = p;
		}
	}
	pthread_mutex_unlock(&c->lock);
	if (rc)
		cache_pending_clear(&p);
	return rc;
}

int cache_pending_get(struct cache *c, const char *rg, const char *name,
		      struct cache_pending *out)
{
	long at;
	int rc;

	pthread_mutex_lock(&c->lock);
	at = cache_pending_find_locked(c, rg, name);
	rc = at < 0 ? -ENOENT : cache_pending_copy(&c->pending[at], out);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int cache_pending_update(struct cache *c, const struct cache_pending *p,
			 unsigned what)
{
	struct cache_pending copy;
	long at;
	int rc = cache_pending_copy(p, &copy);

	if (rc)
		return rc;
	pthread_mutex_lock(&c->lock);
	at = cache_pending_find_locked(c, p->rg, p->name);
	if (at >= 0) {
		/* Swap the chosen fields; the old ones leave in copy. */
		struct cache_pending *slot = &c->pending[at];
		struct cache_pending old = *slot;

		if (what & CACHE_PENDING_LOCATION) {
			slot->location = copy.location;
			copy.location = old.location;
		}
		if (what & CACHE_PENDING_TAGS) {
			slot->tags = copy.tags;
			slot->ntags = copy.ntags;
			copy.tags = old.tags;
			copy.ntags = old.ntags;
		}
		if (what & CACHE_PENDING_EXCLUDE) {
			slot->exclude = copy.exclude;
			slot->nexclude = copy.nexclude;
			copy.exclude = old.exclude;
			copy.nexclude = old.nexclude;
		}
	}
	pthread_mutex_unlock(&c->lock);
	rc = at < 0 ? -ENOENT : 0;
	cache_pending_clear(&copy);
	return rc;
}

int cache_pending_remove(struct cache *c, const char *rg, const char *name)
{
	struct cache_pending gone = {0};
	long at;

	pthread_mutex_lock(&c->lock);
	at = cache_pending_find_locked(c, rg, name);
	if (at >= 0) {
		gone = c->pending[at];
		c->pending[at] = c->pending[--c->npending];
	}
	pthread_mutex_unlock(&c->lock);
	if (at < 0)
		return -ENOENT;
	cache_pending_clear(&gone);
	return 0;
}

int cache_pending_names(struct cache *c, const char *rg, char ***names,
			size_t *n)
{
	char **out = NULL;
	size_t nout = 0;
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	if (c->npending) {
		out = calloc(c->npending, sizeof(*out));
		if (!out)
			rc = -ENOMEM;
	}
	for (size_t i = 0; rc == 0 && i < c->npending; i++) {
		if (strcasecmp(c->pending[i].rg, rg) != 0)
			continue;
		out[nout] = strdup(c->pending[i].name);
		if (!out[nout])
			rc = -ENOMEM;
		else
			nout++;
	}
	pthread_mutex_unlock(&c->lock);
	if (rc) {
		names_list_free(out, nout);
		return rc;
	}
	*names = out;
	*n = nout;
	return 0;
}
