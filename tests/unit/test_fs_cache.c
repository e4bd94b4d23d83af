/*
 * test_fs_cache.c -- how long rpfs trusts what Azure said: a fresh answer
 * is reused without a request, an expired one is fetched again, PEEK never
 * asks, invalidation forces the next fetch, a reader keeps its snapshot
 * while another refresh replaces it, and pending collections live and die
 * in this mount only.
 *
 * The three az.h calls the cache makes are replaced here by fakes that
 * count calls (the linker takes these before net/az.c's), so no network.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "check.h"

static int calls_groups, calls_colls, calls_coll, fail_next;

int az_list_groups(struct az *az, struct az_group **groups, size_t *n,
		   struct rp_err *err)
{
	calls_groups++;
	*groups = calloc(2, sizeof(**groups));
	(*groups)[0].name = strdup("rg-a");
	(*groups)[1].name = strdup("rg-b");
	*n = 2;
	return 0;
}

int az_list_collections(struct az *az, const char *rg,
			struct az_collection **colls, size_t *n,
			struct rp_err *err)
{
	calls_colls++;
	if (fail_next) {
		fail_next = 0;
		rp_err_set(err, 403, "AuthorizationFailed", "no");
		return -EACCES;
	}
	*colls = calloc(1, sizeof(**colls));
	(*colls)[0].name = strdup(rg ? rg : "all");
	*n = 1;
	return 0;
}

int az_get_collection(struct az *az, const char *rg, const char *name,
		      struct az_collection *coll, struct az_restore_point **rps,
		      size_t *nrps, struct rp_err *err)
{
	calls_coll++;
	memset(coll, 0, sizeof(*coll));
	if (strcmp(name, "missing") == 0) {
		rp_err_set(err, 404, "ResourceNotFound", "gone");
		return -ENOENT;
	}
	coll->name = strdup(name);
	coll->resource_group = strdup(rg);
	if (rps) {
		*rps = calloc(1, sizeof(**rps));
		(*rps)[0].name = strdup("rp1");
		(*rps)[0].disks = calloc(2, sizeof(struct az_disk));
		(*rps)[0].disks[0].name = strdup("os");
		(*rps)[0].disks[1].name = strdup("data");
		(*rps)[0].ndisks = 2;
		*nrps = 1;
	}
	return 0;
}

static void nap(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};

	nanosleep(&ts, NULL);
}

static void test_fresh_then_expired(void)
{
	struct cache_config cfg = {.fixed_rg = NULL, .timeout_s = 0.3};
	struct cache *c = cache_new(NULL, &cfg);
	struct cache_groups *g1, *g2;
	struct cache_coll *s1, *s2;
	struct rp_err err;

	calls_groups = calls_coll = 0;
	CHECK_INT(cache_groups(c, CACHE_FETCH, &g1, &err), 0);
	CHECK_INT(cache_groups(c, CACHE_FETCH, &g2, &err), 0);
	CHECK_INT(calls_groups, 1);
	CHECK(g1 == g2);
	CHECK_INT(g1->n, 2);
	cache_groups_put(g2);

	CHECK_INT(cache_coll(c, "rg-a", "c1", CACHE_FETCH, &s1, &err), 0);
	CHECK_INT(cache_coll(c, "RG-A", "C1", CACHE_FETCH, &s2, &err), 0);
	CHECK_INT(calls_coll, 1); /* names are case-insensitive */
	CHECK(s1 == s2);
	CHECK_STR(s1->files[0][0], "os.vhd");
	CHECK_STR(s1->files[0][1], "data.vhd");
	cache_coll_put(s2);

	nap(0.35);
	CHECK_INT(cache_groups(c, CACHE_PEEK, &g2, &err), -EAGAIN);
	CHECK_INT(cache_groups(c, CACHE_FETCH, &g2, &err), 0);
	CHECK_INT(calls_groups, 2);
	CHECK(g2 != g1);
	/* the old snapshot is still readable by its holder */
	CHECK_STR(g1->v[1].name, "rg-b");
	cache_groups_put(g1);
	cache_groups_put(g2);

	CHECK_INT(cache_coll(c, "rg-a", "c1", CACHE_FETCH, &s2, &err), 0);
	CHECK_INT(calls_coll, 2);
	CHECK_STR(s1->c.name, "c1");
	cache_coll_put(s1);
	cache_coll_put(s2);

	CHECK_INT(cache_coll(c, "rg-a", "c1", CACHE_FRESH, &s2, &err), 0);
	CHECK_INT(calls_coll, 3);
	cache_coll_put(s2);
	cache_free(c);
}

static void test_invalidate_and_errors(void)
{
	struct cache_config cfg = {.fixed_rg = "rg-x", .timeout_s = 60};
	struct cache *c = cache_new(NULL, &cfg);
	struct cache_colls *l;
	struct cache_coll *s;
	struct rp_err err;

	calls_colls = calls_coll = 0;
	CHECK_INT(cache_colls(c, CACHE_PEEK, &l, &err), -EAGAIN);
	CHECK_INT(calls_colls, 0);
	CHECK_INT(cache_colls(c, CACHE_FETCH, &l, &err), 0);
	CHECK_STR(l->v[0].name, "rg-x"); /* the fixed group was listed */
	cache_colls_put(l);
	CHECK_INT(cache_coll(c, "rg-x", "c1", CACHE_FETCH, &s, &err), 0);
	cache_coll_put(s);

	cache_invalidate(c, "RG-X", "C1");
	CHECK_INT(cache_colls(c, CACHE_FETCH, &l, &err), 0);
	cache_colls_put(l);
	CHECK_INT(cache_coll(c, "rg-x", "c1", CACHE_FETCH, &s, &err), 0);
	cache_coll_put(s);
	CHECK_INT(calls_colls, 2);
	CHECK_INT(calls_coll, 2);

	/* failures are returned with Azure's words and not cached */
	cache_invalidate(c, "rg-x", NULL);
	fail_next = 1;
	rp_err_clear(&err);
	CHECK_INT(cache_colls(c, CACHE_FETCH, &l, &err), -EACCES);
	CHECK_INT(err.http_status, 403);
	CHECK_STR(err.code, "AuthorizationFailed");
	CHECK_INT(cache_colls(c, CACHE_FETCH, &l, &err), 0);
	cache_colls_put(l);
	CHECK_INT(cache_coll(c, "rg-x", "missing", CACHE_FETCH, &s, &err),
		  -ENOENT);
	CHECK_INT(cache_coll(c, "rg-x", "missing", CACHE_FETCH, &s, &err),
		  -ENOENT);
	CHECK_INT(calls_coll, 4);
	cache_free(c);
}

static void test_zero_timeout_never_caches(void)
{
	struct cache_config cfg = {.timeout_s = 0};
	struct cache *c = cache_new(NULL, &cfg);
	struct cache_groups *g;
	struct rp_err err;

	calls_groups = 0;
	for (int i = 0; i < 3; i++) {
		CHECK_INT(cache_groups(c, CACHE_FETCH, &g, &err), 0);
		cache_groups_put(g);
	}
	CHECK_INT(calls_groups, 3);
	cache_free(c);
}

/* Drop a copy's tags and exclude list (as if the user had emptied them). */
static void tags_free_for_test(struct cache_pending *p)
{
	struct cache_pending keep = {
	    .rg = p->rg, .name = p->name, .location = p->location};

	p->rg = p->name = p->location = NULL;
	cache_pending_clear(p);
	*p = keep;
}

static void test_pending(void)
{
	struct cache_config cfg = {.timeout_s = 10};
	struct cache *c = cache_new(NULL, &cfg);
	struct cache_pending p;
	struct az_tag tag = {.key = "env", .value = "dev"};
	char *ex[] = {"vm1-data"};
	char **names;
	size_t n;

	CHECK_INT(cache_pending_add(c, "rg", "new1"), 0);
	CHECK_INT(cache_pending_add(c, "RG", "NEW1"), -EEXIST);
	CHECK_INT(cache_pending_add(c, "rg", "new2"), 0);
	CHECK_INT(cache_pending_add(c, "other", "new3"), 0);
	CHECK_INT(cache_pending_names(c, "rg", &names, &n), 0);
	CHECK_INT(n, 2);
	CHECK_STR(names[0], "new1");
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);

	CHECK_INT(cache_pending_get(c, "rg", "new1", &p), 0);
	CHECK_NULL(p.location);
	CHECK_INT(p.ntags, 0);
	free(p.location);
	p.location = strdup("eastus");
	p.tags = NULL;
	p.ntags = 0;
	{
		struct cache_pending q = p;

		q.tags = &tag;
		q.ntags = 1;
		q.exclude = ex;
		q.nexclude = 1;
		CHECK_INT(cache_pending_update(c, &q,
					       CACHE_PENDING_LOCATION |
						   CACHE_PENDING_TAGS |
						   CACHE_PENDING_EXCLUDE),
			  0);
	}
	cache_pending_clear(&p);
	CHECK_INT(cache_pending_get(c, "Rg", "New1", &p), 0);
	CHECK_STR(p.location, "eastus");
	CHECK_INT(p.ntags, 1);
	CHECK_STR(p.tags[0].value, "dev");
	CHECK_INT(p.nexclude, 1);
	CHECK_STR(p.exclude[0], "vm1-data");
	CHECK_STR(p.name, "new1"); /* spelled as made */
	/* Updating one field leaves the others alone. */
	free(p.location);
	p.location = strdup("westus");
	tags_free_for_test(&p);
	CHECK_INT(cache_pending_update(c, &p, CACHE_PENDING_LOCATION), 0);
	cache_pending_clear(&p);
	CHECK_INT(cache_pending_get(c, "rg", "new1", &p), 0);
	CHECK_STR(p.location, "westus");
	CHECK_INT(p.ntags, 1);
	CHECK_INT(p.nexclude, 1);
	cache_pending_clear(&p);

	CHECK_INT(cache_pending_remove(c, "rg", "new1"), 0);
	CHECK_INT(cache_pending_remove(c, "rg", "new1"), -ENOENT);
	CHECK_INT(cache_pending_get(c, "rg", "new1", &p), -ENOENT);
	cache_free(c); /* frees new2 and new3 */
}

int main(void)
{
	test_fresh_then_expired();
	test_invalidate_and_errors();
	test_zero_timeout_never_caches();
	test_pending();
	return CHECK_DONE();
}
