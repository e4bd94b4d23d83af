/*
 * ops_xattr.c -- extended attributes: the Azure facts of a node
 * (user.azure.id and friends; see docs/tree.md for the list).
 *
 * Values come from the same cached snapshots as stat, so getfattr costs
 * no request while the cache is fresh.  Read-only: setxattr and
 * removexattr are refused in ops.c.  No state of its own.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ops.h"

struct ops_xattr {
	const char *name;
	const char *value;
};

#define OPS_XATTR_MAX 6

static size_t ops_xattrs(struct ops_ctx *ctx, const struct tree_node *n,
			 char *idbuf, size_t idlen, struct ops_xattr *x)
{
	size_t k = 0;

#define OPS_X(nm, val)                                                         \
	do {                                                                   \
		if ((val) && *(val) && k < OPS_XATTR_MAX) {                    \
			x[k].name = (nm);                                      \
			x[k].value = (val);                                    \
			k++;                                                   \
		}                                                              \
	} while (0)
	switch (n->p.kind) {
	case TREE_ROOT:
		if (ctx->fixed_rg)
			snprintf(idbuf, idlen,
				 "/subscriptions/%s/resourceGroups/%s",
				 ctx->subscription, ctx->fixed_rg);
		else
			snprintf(idbuf, idlen, "/subscriptions/%s",
				 ctx->subscription);
		OPS_X("user.azure.id", idbuf);
		break;
	case TREE_GROUP:
		OPS_X("user.azure.id", n->group->id);
		OPS_X("user.azure.location", n->group->location);
		break;
	case TREE_COLL:
		if (n->is_pending) {
			OPS_X("user.azure.location", n->pending.location);
			OPS_X("user.azure.provisioning_state", "Pending");
			break;
		}
		OPS_X("user.azure.id", n->c->id);
		OPS_X("user.azure.location", n->c->location);
		OPS_X("user.azure.provisioning_state",
		      n->c->provisioning_state);
		OPS_X("user.azure.source", n->c->source_id);
		break;
	case TREE_RP:
		OPS_X("user.azure.id", n->rp->id);
		OPS_X("user.azure.provisioning_state",
		      n->rp->provisioning_state);
		OPS_X("user.azure.time_created", n->rp->time_created);
		OPS_X("user.azure.source", n->rp->source_rp_id);
		break;
	case TREE_DISK:
		OPS_X("user.azure.id", n->disk->drp_id);
		OPS_X("user.azure.source_disk_id", n->disk->source_disk_id);
		break;
	default:
		break;
	}
#undef OPS_X
	return k;
}

int ops_getxattr(const char *path, const char *name, char *value, size_t size)
{
	struct ops_ctx *ctx = ops_ctx();
	struct ops_xattr x[OPS_XATTR_MAX];
	char idbuf[512];
	struct tree_node n;
	struct rp_err err;
	size_t k, len;
	int rc = -ENODATA;

	rp_err_clear(&err);
	rc = tree_resolve(ctx->cache, ctx->fixed_rg, path, TREE_NEED_EXIST, &n,
			  &err);
	if (rc)
		return ops_fail("getxattr", path, rc, &err);
	rc = -ENODATA;
	k = ops_xattrs(ctx, &n, idbuf, sizeof(idbuf), x);
	for (size_t i = 0; i < k; i++) {
		if (strcmp(x[i].name, name) != 0)
			continue;
		len = strlen(x[i].value);
		if (size == 0)
			rc = (int)len;
		else if (size < len)
			rc = -ERANGE;
		else {
			memcpy(value, x[i].value, len);
			rc = (int)len;
		}
		break;
	}
	tree_node_release(&n);
	return rc;
}

int ops_listxattr(const char *path, char *list, size_t size)
{
	struct ops_ctx *ctx = ops_ctx();
	struct ops_xattr x[OPS_XATTR_MAX];
	char idbuf[512];
	struct tree_node n;
	struct rp_err err;
	size_t k, total = 0;
	int rc;

	rp_err_clear(&err);
	rc = tree_resolve(ctx->cache, ctx->fixed_rg, path, TREE_NEED_EXIST, &n,
			  &err);
	if (rc)
		return ops_fail("listxattr", path, rc, &err);
	k = ops_xattrs(ctx, &n, idbuf, sizeof(idbuf), x);
	for (size_t i = 0; i < k; i++)
		total += strlen(x[i].name) + 1;
	if (size == 0) {
		rc = (int)total;
	} else if (size < total) {
		rc = -ERANGE;
	} else {
		size_t off = 0;

		for (size_t i = 0; i < k; i++) {
			memcpy(list + off, x[i].name, strlen(x[i].name) + 1);
			off += strlen(x[i].name) + 1;
		}
		rc = (int)total;
	}
	tree_node_release(&n);
	return rc;
}
