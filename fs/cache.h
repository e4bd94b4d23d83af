/*
 * cache.h -- what rpfs remembers of Azure, and for how long.
 *
 * Three kinds of snapshot, each an immutable, reference-counted copy of
 * one answer from az.h, stamped with the time it was fetched:
 *   - the resource groups of the subscription (az_list_groups);
 *   - the collections of the subscription, or of the mounted group with
 *     --resource-group (az_list_collections, all pages);
 *   - one collection with its restore points (az_get_collection with
 *     $expand=restorePoints), plus the file name of every disk.
 * A snapshot younger than the cache timeout is served as is; an older one
 * is fetched again on the next use.  Callers hold a reference while they
 * read a snapshot and drop it with the matching _put, so a refresh by
 * another thread never frees data under a reader.  Requests are made
 * without the lock held, so slow answers never block other lookups.
 *
 * Pending collections (mkdir of a collection before its source is known)
 * live here too: they exist only in this mount, until their source is
 * written or they are removed.
 *
 * Thread-safe: one mutex guards the snapshot slots and the pending list.
 */
#ifndef RPFS_CACHE_H
#define RPFS_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "../net/az.h"

struct cache_config {
	const char *fixed_rg; /* --resource-group, or NULL */
	double timeout_s;     /* listings and attributes; 0 disables */
};

struct cache_groups {
	atomic_int refs;
	double at;
	struct az_group *v;
	size_t n;
};

struct cache_colls {
	atomic_int refs;
	double at;
	struct az_collection *v;
	size_t n;
};

struct cache_coll {
	atomic_int refs;
	double at;
	char *key; /* "rg/name", lower case: the slot's key */
	struct az_collection c;
	struct az_restore_point *rps;
	size_t nrps;
	char ***files; /* files[i][j]: file name of disk j of rps[i] */
};

/* A pending collection (a private copy when handed out). */
struct cache_pending {
	char *rg;
	char *name;
	char *location; /* NULL: the source's region */
	struct az_tag *tags;
	size_t ntags;
	char **exclude;
	size_t nexclude;
};

enum cache_mode {
	CACHE_FETCH, /* cached if fresh, else fetched */
	CACHE_PEEK,  /* cached if fresh, else -EAGAIN without a request */
	CACHE_FRESH, /* always fetched (and stored) */
};

struct cache;

struct cache *cache_new(struct az *az, const struct cache_config *cfg);
void cache_free(struct cache *c);

/* Each returns 0 with a reference in *out, or -errno with err filled. */
int cache_groups(struct cache *c, enum cache_mode mode,
		 struct cache_groups **out, struct rp_err *err);
int cache_colls(struct cache *c, enum cache_mode mode, struct cache_colls **out,
		struct rp_err *err);
int cache_coll(struct cache *c, const char *rg, const char *name,
	       enum cache_mode mode, struct cache_coll **out,
	       struct rp_err *err);

void cache_groups_put(struct cache_groups *g);
void cache_colls_put(struct cache_colls *l);
void cache_coll_put(struct cache_coll *s);

/* Forget the collection list and, when name is non-NULL, the snapshot of
 * collection rg/name: the next use fetches them again. */
void cache_invalidate(struct cache *c, const char *rg, const char *name);

/* Pending collections.  _add fails with -EEXIST. */
int cache_pending_add(struct cache *c, const char *rg, const char *name);
/* Copy of the pending collection into *out (free with
 * cache_pending_clear), or -ENOENT. */
int cache_pending_get(struct cache *c, const char *rg, const char *name,
		      struct cache_pending *out);
/* Replace the fields chosen by what (CACHE_PENDING_*) of the pending
 * collection p->rg / p->name with copies of p's, leaving the others as
 * they are (a concurrent write of another file is not undone).
 * -ENOENT when it is gone. */
#define CACHE_PENDING_LOCATION 1u
#define CACHE_PENDING_TAGS 2u
#define CACHE_PENDING_EXCLUDE 4u
int cache_pending_update(struct cache *c, const struct cache_pending *p,
			 unsigned what);
int cache_pending_remove(struct cache *c, const char *rg, const char *name);
/* Names of the pending collections of group rg. */
int cache_pending_names(struct cache *c, const char *rg, char ***names,
			size_t *n);
void cache_pending_clear(struct cache_pending *p);
int cache_pending_copy(const struct cache_pending *src,
		       struct cache_pending *dst);

#endif
