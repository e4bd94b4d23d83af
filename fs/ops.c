/*
 * ops.c -- attributes and listings of the tree, the operations rpfs
 * refuses, and the operation table (see ops.h).
 *
 * Attributes come from the cache (tree_resolve), never from a request of
 * their own when a fresh listing has the answer: the kernel keeps them
 * for cache_timeout seconds too (entry/attr timeouts set in ops_init).
 * Sizes of the live files (status, progress, restorepoint.json) are those
 * of the cached value or 0; they are opened with direct_io, so readers get
 * the fresh content whatever the size says.  Disk files report the blob's
 * exact length once an open has learned it (disk_known_size), else the
 * disk size from the restore point plus the 512-byte footer.
 *
 * No state of its own: everything lives in struct ops_ctx (read-only after
 * start-up) and in the cache (which locks itself).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "../net/log.h"
#include "names.h"
#include "ops.h"
#include "tags.h"

struct ops_ctx *ops_ctx(void)
{
	return fuse_get_context()->private_data;
}

/* Operations for which "no such name" is an answer, not a failure. */
static bool ops_is_lookup(const char *op)
{
	return strcmp(op, "stat") == 0 || strcmp(op, "access") == 0 ||
	       strcmp(op, "getxattr") == 0 || strcmp(op, "listxattr") == 0;
}

int ops_fail(const char *op, const char *path, int rc, const struct rp_err *err)
{
	if (rc == -ENOENT && ops_is_lookup(op))
		log_debug("%s %s: %s", op, path, strerror(-rc));
	else if (err && (err->http_status || err->code[0]))
		log_warn("%s %s: %s (%s%s%s, HTTP %d)", op, path, strerror(-rc),
			 err->code[0] ? err->code : "no code",
			 err->message[0] ? ": " : "", err->message,
			 err->http_status);
	else if (rc == -ENOENT)
		log_debug("%s %s: %s", op, path, strerror(-rc));
	else
		log_warn("%s %s: %s", op, path, strerror(-rc));
	return rc;
}

int ops_refuse(const char *op, const char *path, int rc, const char *why)
{
	log_warn("%s %s refused: %s (%s)", op, path, strerror(-rc), why);
	return rc;
}

const char *ops_node_group(const struct ops_ctx *ctx, const struct tree_node *n)
{
	return ctx->fixed_rg ? ctx->fixed_rg : n->p.group;
}

bool ops_file_writable(const struct tree_node *n)
{
	if (n->p.kind != TREE_COLL_FILE)
		return false;
	switch (n->p.file) {
	case TREE_F_TAGS:
	case TREE_F_EXCLUDE:
		return true;
	case TREE_F_SOURCE:
	case TREE_F_LOCATION:
		return n->is_pending;
	default:
		return false;
	}
}

static char *ops_line(const char *s)
{
	char *out;

	if (!s || !*s)
		return strdup("");
	if (asprintf(&out, "%s\n", s) < 0)
		return NULL;
	return out;
}

static char *ops_exclude_text(const struct tree_node *n)
{
	char **names = NULL, *text;
	size_t nn = 0;

	if (n->is_pending)
		return tags_format_exclude(n->pending.exclude,
					   n->pending.nexclude);
	if (tags_exclude_from_value(
		tags_find(n->c->tags, n->c->ntags, TAGS_EXCLUDE_KEY), &names,
		&nn))
		return NULL;
	text = tags_format_exclude(names, nn);
	names_list_free(names, nn);
	return text;
}

int ops_file_content(const struct tree_node *n, char **buf, size_t *len)
{
	const struct cache_pending *pd = n->is_pending ? &n->pending : NULL;
	char *out = NULL;

	switch (n->p.file) {
	case TREE_F_COLL_JSON:
		out = strdup(n->c->json ? n->c->json : "{}\n");
		break;
	case TREE_F_SOURCE:
		out = ops_line(pd ? NULL : n->c->source_id);
		break;
	case TREE_F_LOCATION:
		out = ops_line(pd ? pd->location : n->c->location);
		break;
	case TREE_F_STATUS:
		out = ops_line(pd ? "Pending"
			       : n->c->provisioning_state
				   ? n->c->provisioning_state
				   : "Unknown");
		break;
	case TREE_F_TAGS:
		out = pd ? tags_format(pd->tags, pd->ntags)
			 : tags_format(n->c->tags, n->c->ntags);
		break;
	case TREE_F_EXCLUDE:
		out = ops_exclude_text(n);
		break;
	case TREE_F_RP_JSON:
		out = strdup(n->rp->json ? n->rp->json : "{}\n");
		break;
	case TREE_F_RP_STATUS:
		out = ops_line(n->rp->provisioning_state
				   ? n->rp->provisioning_state
				   : "Unknown");
		break;
	case TREE_F_PROGRESS:
		out = strdup("");
		break;
	default:
		return -EINVAL;
	}
	if (!out)
		return -ENOMEM;
	*buf = out;
	*len = strlen(out);
	return 0;
}

long long ops_disk_size(struct ops_ctx *ctx, const struct az_disk *d)
{
	long long known = -1;

	if (ctx->disks && d->drp_id)
		known = disk_known_size(ctx->disks, d->drp_id);
	if (known >= 0)
		return known;
	return d->size_bytes >= 0 ? d->size_bytes + 512 : 0;
}

/* alloc: bytes holding data when known, else -1 (all counts as data). */
static void ops_stat_disk(long long size, long long alloc, struct stat *st)
{
	st->st_mode = S_IFREG | 0444;
	st->st_nlink = 1;
	st->st_size = size;
	st->st_blocks = ((alloc >= 0 ? alloc : size) + 511) / 512;
	st->st_blksize = 1 << 20;
}

long long ops_disk_blocks_bytes(struct ops_ctx *ctx, const char *drp_id,
				long long size)
{
	long long alloc = ctx->disks && drp_id
			      ? disk_known_allocated(ctx->disks, drp_id)
			      : -1;

	return alloc >= 0 ? alloc : size;
}

static int ops_stat_node(struct ops_ctx *ctx, const struct tree_node *n,
			 struct stat *st)
{
	long long size;
	time_t t;
	char *content;
	size_t len;
	int rc;

	switch (n->p.kind) {
	case TREE_RP:
		if (names_parse_time(n->rp->time_created, &t) == 0)
			st->st_mtime = st->st_ctime = t;
		/* fall through */
	case TREE_ROOT:
	case TREE_GROUP:
	case TREE_COLL:
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	case TREE_DISK:
		if (names_parse_time(n->rp->time_created, &t) == 0)
			st->st_mtime = st->st_ctime = t;
		size = ops_disk_size(ctx, n->disk);
		ops_stat_disk(size,
			      ops_disk_blocks_bytes(ctx, n->disk->drp_id, size),
			      st);
		return 0;
	case TREE_COLL_FILE:
	case TREE_RP_FILE:
		rc = ops_file_content(n, &content, &len);
		if (rc)
			return rc;
		free(content);
		st->st_mode = S_IFREG | (ops_file_writable(n) ? 0644 : 0444);
		st->st_nlink = 1;
		st->st_size = (off_t)len;
		st->st_blocks = ((off_t)len + 511) / 512;
		return 0;
	default:
		return -ENOENT;
	}
}

static int ops_getattr(const char *path, struct stat *st,
		       struct fuse_file_info *fi)
{
	struct ops_ctx *ctx = ops_ctx();
	struct ops_handle *h =
	    fi ? (struct ops_handle *)(uintptr_t)fi->fh : NULL;
	struct tree_node n;
	struct rp_err err;
	int rc;

	memset(st, 0, sizeof(*st));
	st->st_uid = ctx->uid;
	st->st_gid = ctx->gid;
	st->st_atime = st->st_mtime = st->st_ctime = ctx->mounted_at;
	if (h && h->disk) {
		/* fstat of an open disk: the blob's exact length. */
		ops_stat_disk(disk_size(h->disk), disk_allocated(h->disk), st);
		return 0;
	}
	if (!path)
		return -ESTALE;
	rp_err_clear(&err);
	rc = tree_resolve(ctx->cache, ctx->fixed_rg, path, TREE_NEED_EXIST, &n,
			  &err);
	if (rc)
		return ops_fail("stat", path, rc, &err);
	rc = ops_stat_node(ctx, &n, st);
	tree_node_release(&n);
	return rc;
}

struct ops_fill {
	void *buf;
	fuse_fill_dir_t filler;
};

static void ops_add(const struct ops_fill *f, const char *name)
{
	f->filler(f->buf, name, NULL, 0, 0);
}

static int ops_list_group(struct ops_ctx *ctx, const struct ops_fill *f,
			  const char *rg, const char *path)
{
	struct cache_colls *l;
	struct rp_err err;
	char **pending = NULL;
	size_t npending = 0;
	int rc;

	rp_err_clear(&err);
	rc = cache_colls(ctx->cache, CACHE_FETCH, &l, &err);
	if (rc)
		return ops_fail("readdir", path, rc, &err);
	for (size_t i = 0; i < l->n; i++) {
		const struct az_collection *c = &l->v[i];
		char idrg[NAME_MAX + 1];
		const char *crg = c->resource_group;

		if (!crg && c->id &&
		    names_id_part(c->id, "resourceGroups", idrg,
				  sizeof(idrg)) == 0)
			crg = idrg;
		if (c->name && crg && strcasecmp(crg, rg) == 0)
			ops_add(f, c->name);
	}
	rc = cache_pending_names(ctx->cache, rg, &pending, &npending);
	for (size_t i = 0; rc == 0 && i < npending; i++) {
		bool real = false;

		for (size_t j = 0; j < l->n && !real; j++)
			real = l->v[j].name &&
			       strcasecmp(l->v[j].name, pending[i]) == 0;
		if (!real)
			ops_add(f, pending[i]);
	}
	names_list_free(pending, npending);
	cache_colls_put(l);
	return rc;
}

static int ops_list_node(struct ops_ctx *ctx, const struct tree_node *n,
			 const struct ops_fill *f, const char *path)
{
	static const enum tree_file coll_files[] = {
	    TREE_F_COLL_JSON, TREE_F_SOURCE, TREE_F_LOCATION,
	    TREE_F_STATUS,    TREE_F_TAGS,   TREE_F_EXCLUDE,
	};
	struct cache_groups *g;
	struct rp_err err;
	char entry[NAME_MAX + 1];
	int rc;

	switch (n->p.kind) {
	case TREE_ROOT:
		if (ctx->fixed_rg)
			return ops_list_group(ctx, f, ctx->fixed_rg, path);
		rp_err_clear(&err);
		rc = cache_groups(ctx->cache, CACHE_FETCH, &g, &err);
		if (rc)
			return ops_fail("readdir", path, rc, &err);
		for (size_t i = 0; i < g->n; i++)
			if (g->v[i].name)
				ops_add(f, g->v[i].name);
		cache_groups_put(g);
		return 0;
	case TREE_GROUP:
		return ops_list_group(ctx, f, n->group->name, path);
	case TREE_COLL:
		for (size_t i = 0; i < 6; i++)
			if (!n->is_pending || coll_files[i] != TREE_F_COLL_JSON)
				ops_add(f, tree_file_name(coll_files[i]));
		for (size_t i = 0; n->snap && i < n->snap->nrps; i++) {
			if (!n->snap->rps[i].name ||
			    names_rp_entry(n->snap->rps[i].name, entry,
					   sizeof(entry)))
				continue;
			ops_add(f, entry);
		}
		return 0;
	case TREE_RP:
		ops_add(f, "restorepoint.json");
		ops_add(f, "status");
		ops_add(f, "progress");
		for (size_t j = 0; j < n->rp->ndisks; j++)
			ops_add(f, n->rp_files[j]);
		return 0;
	default:
		return -ENOTDIR;
	}
}

static int ops_readdir(const char *path, void *buf, fuse_fill_dir_t filler,
		       off_t off, struct fuse_file_info *fi,
		       enum fuse_readdir_flags flags)
{
	struct ops_ctx *ctx = ops_ctx();
	struct ops_fill f = {buf, filler};
	struct tree_node n;
	struct rp_err err;
	int rc;

	rp_err_clear(&err);
	rc = tree_resolve(ctx->cache, ctx->fixed_rg, path, TREE_NEED_CONTENT,
			  &n, &err);
	if (rc == -ENOENT && n.p.coll[0])
		/* Gone since its lookup: make the next lookup ask again.
		 * (glibc shows ENOENT from getdents as an empty directory,
		 * as for a local directory removed while open.) */
		cache_invalidate(ctx->cache, ops_node_group(ctx, &n), n.p.coll);
	if (rc)
		return ops_fail("readdir", path, rc, &err);
	ops_add(&f, ".");
	ops_add(&f, "..");
	rc = ops_list_node(ctx, &n, &f, path);
	tree_node_release(&n);
	return rc;
}

/* Refusals and small operations --------------------------------------- */

static int ops_no(const char *op, const char *path)
{
	struct ops_ctx *ctx = ops_ctx();

	if (ctx->ro)
		return ops_refuse(op, path, -EROFS, "read-only mount");
	return ops_refuse(op, path, -EPERM,
			  "rpfs has no such operation on Azure resources");
}

static int ops_setxattr(const char *path, const char *name, const char *v,
			size_t size, int flags)
{
	return ops_no("setxattr", path);
}

static int ops_removexattr(const char *path, const char *name)
{
	return ops_no("removexattr", path);
}

static int ops_unlink(const char *path)
{
	return ops_no("unlink", path);
}

static int ops_rename(const char *from, const char *to, unsigned int flags)
{
	return ops_no("rename", from);
}

static int ops_symlink(const char *target, const char *path)
{
	return ops_no("symlink", path);
}

static int ops_link(const char *from, const char *to)
{
	return ops_no("link", to);
}

static int ops_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	return ops_no("chmod", path);
}

static int ops_chown(const char *path, uid_t uid, gid_t gid,
		     struct fuse_file_info *fi)
{
	return ops_no("chown", path);
}

static int ops_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	return ops_no("create", path);
}

static int ops_mknod(const char *path, mode_t mode, dev_t dev)
{
	return ops_no("mknod", path);
}

static int ops_utimens(const char *path, const struct timespec tv[2],
		       struct fuse_file_info *fi)
{
	/* Times are Azure's; `touch` of a file is a harmless no-op. */
	return ops_ctx()->ro ? -EROFS : 0;
}

static int ops_access(const char *path, int mask)
{
	struct ops_ctx *ctx = ops_ctx();
	struct tree_node n;
	struct rp_err err;
	bool dir, writable;
	int rc;

	rp_err_clear(&err);
	rc = tree_resolve(ctx->cache, ctx->fixed_rg, path, TREE_NEED_EXIST, &n,
			  &err);
	if (rc)
		return ops_fail("access", path, rc, &err);
	dir = n.p.kind == TREE_ROOT || n.p.kind == TREE_GROUP ||
	      n.p.kind == TREE_COLL || n.p.kind == TREE_RP;
	if (dir)
		writable = n.p.kind == TREE_GROUP ||
			   (n.p.kind == TREE_ROOT && ctx->fixed_rg) ||
			   (n.p.kind == TREE_COLL && !n.is_pending);
	else
		writable = ops_file_writable(&n);
	tree_node_release(&n);
	if ((mask & X_OK) && !dir)
		return -EACCES;
	if (mask & W_OK) {
		if (ctx->ro)
			return -EROFS;
		if (!writable)
			return -EACCES;
	}
	return 0;
}

static int ops_statfs(const char *path, struct statvfs *st)
{
	memset(st, 0, sizeof(*st));
	st->f_bsize = 4096;
	st->f_frsize = 4096;
	st->f_namemax = NAME_MAX;
	if (ops_ctx()->ro)
		st->f_flag |= ST_RDONLY;
	return 0;
}

static void *ops_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	struct ops_ctx *ctx = ops_ctx();

	cfg->entry_timeout = ctx->cache_timeout_s;
	cfg->attr_timeout = ctx->cache_timeout_s;
	cfg->negative_timeout = 0;
	cfg->use_ino = 0;
	cfg->kernel_cache = 0;
	cfg->nullpath_ok = 0;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	return ctx;
}

static const struct fuse_operations ops_table = {
    .init = ops_init,
    .getattr = ops_getattr,
    .readdir = ops_readdir,
    .open = ops_open,
    .read = ops_read,
    .write = ops_write,
    .flush = ops_flush,
    .release = ops_release,
    .truncate = ops_truncate,
    .lseek = ops_lseek,
    .mkdir = ops_mkdir,
    .rmdir = ops_rmdir,
    .getxattr = ops_getxattr,
    .listxattr = ops_listxattr,
    .setxattr = ops_setxattr,
    .removexattr = ops_removexattr,
    .unlink = ops_unlink,
    .rename = ops_rename,
    .symlink = ops_symlink,
    .link = ops_link,
    .chmod = ops_chmod,
    .chown = ops_chown,
    .create = ops_create,
    .mknod = ops_mknod,
    .utimens = ops_utimens,
    .access = ops_access,
    .statfs = ops_statfs,
};

const struct fuse_operations *ops_operations(void)
{
	return &ops_table;
}
