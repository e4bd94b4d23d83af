/*
 * ops_dir.c -- mkdir and rmdir: creating and deleting Azure resources.
 *
 *   mkdir <rg>/<coll>       a pending collection (this mount only)
 *   mkdir <rg>/<coll>/<rp>  PUT the restore point at once; in a copy
 *                           collection it copies the source collection's
 *                           restore point of the same name; exclude_disks
 *                           (the rpfs-exclude-disks tag) is honoured
 *   rmdir <rg>/<coll>       pending: forgotten; real: DELETE, only with
 *                           -o allow_delete and when it holds no restore
 *                           points
 *   rmdir <rg>/<coll>/<rp>  DELETE with -o allow_delete, after ending the
 *                           read grants of its disks (EBUSY while open)
 * Names Azure would refuse fail with EINVAL before any request.  Checks
 * that decide whether a change may happen use fresh GETs, not the cache;
 * the cache is invalidated after every change so the next `ls` shows it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../net/log.h"
#include "names.h"
#include "ops.h"
#include "tags.h"

static const char *ops_dir_group(const struct tree_path *p)
{
	struct ops_ctx *ctx = ops_ctx();

	return ctx->fixed_rg ? ctx->fixed_rg : p->group;
}

static int ops_mkdir_coll(const char *path, const struct tree_path *p)
{
	struct ops_ctx *ctx = ops_ctx();
	const char *rg = ops_dir_group(p);
	struct az_collection c = {0};
	struct cache_pending pd;
	struct tree_node n;
	struct rp_err err;
	char parent[NAME_MAX + 2];
	int rc;

	if (!names_valid_resource(p->coll))
		return ops_refuse("mkdir", path, -EINVAL,
				  "a collection name is 1-80 letters, digits, "
				  "'_', '-', '.', starting with a letter, "
				  "digit or '_', not ending with '.'");
	if (!ctx->fixed_rg) {
		snprintf(parent, sizeof(parent), "/%s", p->group);
		rp_err_clear(&err);
		rc = tree_resolve(ctx->cache, NULL, parent, TREE_NEED_EXIST, &n,
				  &err);
		if (rc)
			return ops_fail("mkdir", path, rc, &err);
		tree_node_release(&n);
	}
	if (cache_pending_get(ctx->cache, rg, p->coll, &pd) == 0) {
		cache_pending_clear(&pd);
		return -EEXIST;
	}
	rp_err_clear(&err);
	rc = az_get_collection(ctx->az, rg, p->coll, &c, NULL, NULL, &err);
	az_collection_free(&c);
	if (rc == 0)
		return -EEXIST;
	if (rc != -ENOENT)
		return ops_fail("mkdir", path, rc, &err);
	rc = cache_pending_add(ctx->cache, rg, p->coll);
	if (rc)
		return rc;
	log_info("collection %s/%s is pending: write its source file to "
		 "create it",
		 rg, p->coll);
	return 0;
}

/* The id of the source collection's restore point named name (copies). */
static int ops_copy_source(const char *path, const struct az_collection *c,
			   const char *name, char **src_rp_id)
{
	struct ops_ctx *ctx = ops_ctx();
	struct az_collection sc = {0};
	struct az_restore_point *rps = NULL;
	size_t nrps = 0;
	char srg[NAME_MAX + 1], sname[NAME_MAX + 1], why[NAME_MAX + 128];
	struct rp_err err;
	int rc;

	if (names_id_part(c->source_id, "resourceGroups", srg, sizeof(srg)) ||
	    names_id_part(c->source_id, "restorePointCollections", sname,
			  sizeof(sname)))
		return ops_refuse("mkdir", path, -EINVAL,
				  "the collection's source id is malformed");
	rp_err_clear(&err);
	rc = az_get_collection(ctx->az, srg, sname, &sc, &rps, &nrps, &err);
	if (rc)
		return ops_fail("mkdir", path, rc, &err);
	rc = -ENOENT;
	for (size_t i = 0; i < nrps; i++) {
		if (rps[i].name && strcasecmp(rps[i].name, name) == 0 &&
		    rps[i].id) {
			*src_rp_id = strdup(rps[i].id);
			rc = *src_rp_id ? 0 : -ENOMEM;
			break;
		}
	}
	if (rc == -ENOENT) {
		snprintf(why, sizeof(why),
			 "source collection %s has no restore point named %s",
			 sname, name);
		ops_refuse("mkdir", path, rc, why);
	}
	az_restore_points_free(rps, nrps);
	az_collection_free(&sc);
	return rc;
}

/* Managed disk ids of the exclude_disks names, from the source VM. */
static int ops_exclude_ids(const char *path, const struct az_collection *c,
			   char ***ids, size_t *nids)
{
	struct ops_ctx *ctx = ops_ctx();
	const char *value = tags_find(c->tags, c->ntags, TAGS_EXCLUDE_KEY);
	char **names = NULL, **out = NULL, why[NAME_MAX + 128];
	size_t n = 0, k = 0;
	struct az_vm vm = {0};
	struct rp_err err;
	int rc;

	*ids = NULL;
	*nids = 0;
	rc = tags_exclude_from_value(value, &names, &n);
	if (rc || n == 0)
		return rc;
	rp_err_clear(&err);
	rc = az_get_vm(ctx->az, c->source_id, &vm, &err);
	if (rc) {
		names_list_free(names, n);
		return ops_fail("mkdir", path, rc, &err);
	}
	out = calloc(n, sizeof(*out));
	if (!out)
		rc = -ENOMEM;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		size_t j;

		for (j = 0; j < vm.ndisks; j++)
			if (vm.disk_names[j] &&
			    strcasecmp(vm.disk_names[j], names[i]) == 0)
				break;
		if (j == vm.ndisks) {
			snprintf(why, sizeof(why),
				 "exclude_disks names %s, which VM %s does "
				 "not have",
				 names[i], vm.name ? vm.name : "?");
			rc = ops_refuse("mkdir", path, -EINVAL, why);
			break;
		}
		out[k] = strdup(vm.disk_ids[j]);
		if (!out[k])
			rc = -ENOMEM;
		else
			k++;
	}
	names_list_free(names, n);
	az_vm_free(&vm);
	if (rc) {
		names_list_free(out, k);
		return rc;
	}
	*ids = out;
	*nids = k;
	return 0;
}

static int ops_mkdir_rp(const char *path, const struct tree_path *p)
{
	struct ops_ctx *ctx = ops_ctx();
	const char *rg = ops_dir_group(p);
	struct az_collection c = {0};
	struct az_restore_point *rps = NULL, made = {0};
	size_t nrps = 0, nids = 0;
	char **ids = NULL, *src_rp = NULL;
	struct cache_pending pd;
	struct rp_err err;
	int rc;

	if (!names_valid_resource(p->rp))
		return ops_refuse("mkdir", path, -EINVAL,
				  "a restore point name is 1-80 letters, "
				  "digits, '_', '-', '.', starting with a "
				  "letter, digit or '_', not ending with '.'");
	if (cache_pending_get(ctx->cache, rg, p->coll, &pd) == 0) {
		cache_pending_clear(&pd);
		return ops_refuse("mkdir", path, -EPERM,
				  "the collection is pending: write its "
				  "source file first");
	}
	rp_err_clear(&err);
	rc = az_get_collection(ctx->az, rg, p->coll, &c, &rps, &nrps, &err);
	if (rc)
		return ops_fail("mkdir", path, rc, &err);
	for (size_t i = 0; i < nrps && rc == 0; i++)
		if (rps[i].name && strcasecmp(rps[i].name, p->rp) == 0)
			rc = -EEXIST;
	if (rc == 0 && !c.source_id)
		rc = ops_refuse("mkdir", path, -EINVAL,
				"the collection has no source");
	if (rc == 0 && tree_coll_is_copy(&c))
		rc = ops_copy_source(path, &c, p->rp, &src_rp);
	else if (rc == 0)
		rc = ops_exclude_ids(path, &c, &ids, &nids);
	if (rc == 0) {
		rp_err_clear(&err);
		rc = az_create_restore_point(ctx->az, c.id, p->rp,
					     (const char *const *)ids, nids,
					     src_rp, &made, &err);
		if (rc)
			rc = ops_fail("create restore point", path, rc, &err);
		else
			log_info("restore point %s/%s is being created", c.name,
				 p->rp);
	}
	cache_invalidate(ctx->cache, rg, p->coll);
	names_list_free(ids, nids);
	free(src_rp);
	az_restore_point_free(&made);
	az_restore_points_free(rps, nrps);
	az_collection_free(&c);
	return rc;
}

int ops_mkdir(const char *path, mode_t mode)
{
	struct ops_ctx *ctx = ops_ctx();
	struct tree_path p;
	int rc = tree_path_parse(path, ctx->fixed_rg, &p);

	if (rc == -ENOENT) /* "@x" for a non-fixed x: never a valid name */
		return ops_refuse("mkdir", path, -EINVAL,
				  "'@' is not allowed in Azure names");
	if (rc)
		return rc;
	if (ctx->ro)
		return ops_refuse("mkdir", path, -EROFS, "read-only mount");
	switch (p.kind) {
	case TREE_ROOT:
	case TREE_COLL_FILE:
	case TREE_RP_FILE:
		return -EEXIST;
	case TREE_GROUP:
		return ops_refuse("mkdir", path, -EPERM,
				  "rpfs does not create resource groups");
	case TREE_COLL:
		return ops_mkdir_coll(path, &p);
	case TREE_RP:
		return ops_mkdir_rp(path, &p);
	default:
		return ops_refuse("mkdir", path, -EPERM,
				  "a restore point holds only its disks");
	}
}

static int ops_rmdir_coll(const char *path, const struct tree_path *p)
{
	struct ops_ctx *ctx = ops_ctx();
	const char *rg = ops_dir_group(p);
	struct az_collection c = {0};
	struct az_restore_point *rps = NULL;
	size_t nrps = 0;
	struct rp_err err;
	int rc;

	if (cache_pending_remove(ctx->cache, rg, p->coll) == 0)
		return 0;
	if (!ctx->allow_delete)
		return ops_refuse("rmdir", path, -EPERM,
				  "deleting Azure resources needs -o "
				  "allow_delete");
	rp_err_clear(&err);
	rc = az_get_collection(ctx->az, rg, p->coll, &c, &rps, &nrps, &err);
	if (rc)
		return ops_fail("rmdir", path, rc, &err);
	if (nrps > 0) {
		rc = ops_refuse("rmdir", path, -ENOTEMPTY,
				"the collection still holds restore points");
	} else {
		rp_err_clear(&err);
		rc = az_delete_collection(ctx->az, c.id, &err);
		if (rc)
			rc = ops_fail("rmdir", path, rc, &err);
		else
			log_info("deleted collection %s", c.id);
	}
	cache_invalidate(ctx->cache, rg, p->coll);
	az_restore_points_free(rps, nrps);
	az_collection_free(&c);
	return rc;
}

static int ops_rmdir_rp(const char *path, const struct tree_path *p)
{
	struct ops_ctx *ctx = ops_ctx();
	struct tree_node n;
	struct rp_err err;
	int rc;

	if (!ctx->allow_delete)
		return ops_refuse("rmdir", path, -EPERM,
				  "deleting Azure resources needs -o "
				  "allow_delete");
	rp_err_clear(&err);
	rc = tree_resolve(ctx->cache, ctx->fixed_rg, path, TREE_NEED_EXIST, &n,
			  &err);
	if (rc)
		return ops_fail("rmdir", path, rc, &err);
	/* Azure refuses to delete while a disk has an active SAS. */
	for (size_t j = 0; rc == 0 && j < n.rp->ndisks; j++) {
		const char *drp = n.rp->disks[j].drp_id;

		if (!drp)
			continue;
		rp_err_clear(&err);
		rc = disk_release_grant(ctx->disks, drp, &err);
		if (rc == -EBUSY)
			rc = ops_refuse("rmdir", path, rc,
					"a disk of the restore point is open");
		else if (rc)
			rc = ops_fail("rmdir", path, rc, &err);
	}
	if (rc == 0) {
		rp_err_clear(&err);
		rc = az_delete_restore_point(ctx->az, n.rp->id, &err);
		if (rc)
			rc = ops_fail("rmdir", path, rc, &err);
		else
			log_info("deleted restore point %s", n.rp->id);
	}
	cache_invalidate(ctx->cache, ops_dir_group(p), p->coll);
	tree_node_release(&n);
	return rc;
}

int ops_rmdir(const char *path)
{
	struct ops_ctx *ctx = ops_ctx();
	struct tree_path p;
	int rc = tree_path_parse(path, ctx->fixed_rg, &p);

	if (rc)
		return rc;
	if (ctx->ro)
		return ops_refuse("rmdir", path, -EROFS, "read-only mount");
	switch (p.kind) {
	case TREE_ROOT:
		return -EBUSY;
	case TREE_GROUP:
		return ops_refuse("rmdir", path, -EPERM,
				  "rpfs does not delete resource groups");
	case TREE_COLL:
		return ops_rmdir_coll(path, &p);
	case TREE_RP:
		return ops_rmdir_rp(path, &p);
	case TREE_OTHER:
		return -ENOENT;
	default:
		return -ENOTDIR;
	}
}
