/*
 * ops_file.c -- open, read, flush, release and lseek (see ops.h).
 *
 * Metadata files are small: open renders the whole content into the
 * handle and reads copy from it, so one open sees one consistent value.
 * They are opened with direct_io, so the kernel never serves a stale
 * page and never cuts a read at a stale size.  The live files -- status
 * and progress, and restorepoint.json with its instance view -- ask Azure
 * afresh on every open and are never cached; a collection's status too.
 *
 * Disk files: open fetches the restore point afresh and refuses (EAGAIN,
 * with a log line saying why) while it is not usable, then hands over to
 * disk.h, which owns grants, sizes and reads.  When the open learned a
 * size different from what stat had shown, the kernel's attributes of the
 * file are invalidated so that fstat shows the exact length.
 *
 * Each handle belongs to one open file; FUSE serialises nothing for us,
 * but a handle is only touched by the calls made on its file descriptor.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../net/log.h"
#include "names.h"
#include "ops.h"

/*
 * Every handle is on one list, so that the ones the kernel never
 * released (a lazy unmount with files open) are still freed at exit.
 * open_mu guards the list only.
 */
static pthread_mutex_t open_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ops_handle *open_list;

static void ops_handle_unlink(struct ops_handle *h)
{
	pthread_mutex_lock(&open_mu);
	if (h->prev)
		h->prev->next = h->next;
	else if (open_list == h)
		open_list = h->next;
	if (h->next)
		h->next->prev = h->prev;
	h->prev = h->next = NULL;
	pthread_mutex_unlock(&open_mu);
}

void ops_handles_free_all(void)
{
	for (;;) {
		struct ops_handle *h;

		pthread_mutex_lock(&open_mu);
		h = open_list;
		pthread_mutex_unlock(&open_mu);
		if (!h)
			break;
		ops_handle_free(h);
	}
}

void ops_handle_free(struct ops_handle *h)
{
	if (!h)
		return;
	ops_handle_unlink(h);
	if (h->disk)
		disk_close(h->disk);
	free(h->buf);
	free(h->path);
	free(h);
}

struct ops_handle *ops_handle_new(const char *path, const struct tree_path *p)
{
	struct ops_handle *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->path = strdup(path);
	if (!h->path) {
		free(h);
		return NULL;
	}
	h->p = *p;
	pthread_mutex_lock(&open_mu);
	h->next = open_list;
	if (open_list)
		open_list->prev = h;
	open_list = h;
	pthread_mutex_unlock(&open_mu);
	return h;
}

/* The state word of a fresh collection GET ("Pending" needs no request). */
static int ops_coll_status(struct ops_ctx *ctx, const char *path,
			   const struct tree_node *n, char **out)
{
	struct az_collection c = {0};
	struct rp_err err;
	int rc;

	if (n->is_pending) {
		*out = strdup("Pending\n");
		return *out ? 0 : -ENOMEM;
	}
	rp_err_clear(&err);
	rc = az_get_collection(ctx->az, ops_node_group(ctx, n), n->c->name, &c,
			       NULL, NULL, &err);
	if (rc) {
		if (rc == -ENOENT)
			cache_invalidate(ctx->cache, ops_node_group(ctx, n),
					 n->c->name);
		return ops_fail("read", path, rc, &err);
	}
	rc = asprintf(out, "%s\n",
		      c.provisioning_state ? c.provisioning_state : "Unknown");
	az_collection_free(&c);
	return rc < 0 ? -ENOMEM : 0;
}

static const char *ops_or(const char *s, const char *dflt)
{
	return s && *s ? s : dflt;
}

/* progress: one line per disk, "<disk> <state> <percent>". */
static int ops_progress(const struct az_restore_point *rp, char **out)
{
	char **files = NULL, *buf;
	size_t cap = 1, off = 0;
	bool done = rp->provisioning_state &&
		    strcasecmp(rp->provisioning_state, "Succeeded") == 0;

	if (names_disk_files(rp->disks, rp->ndisks, &files))
		return -ENOMEM;
	for (size_t j = 0; j < rp->ndisks; j++)
		cap += strlen(files[j]) + 64 +
		       strlen(ops_or(rp->disks[j].replication_state, "")) +
		       strlen(ops_or(rp->provisioning_state, ""));
	buf = malloc(cap);
	if (!buf) {
		names_list_free(files, rp->ndisks);
		return -ENOMEM;
	}
	for (size_t j = 0; j < rp->ndisks; j++) {
		const struct az_disk *d = &rp->disks[j];
		size_t base = strlen(files[j]) - 4; /* without ".vhd" */
		int pct = d->completion_percent;
		const char *state =
		    ops_or(d->replication_state,
			   ops_or(rp->provisioning_state, "Unknown"));

		if (pct < 0)
			pct = done ? 100 : 0;
		off += (size_t)snprintf(buf + off, cap - off, "%.*s %s %d\n",
					(int)base, files[j], state, pct);
	}
	buf[off] = '\0';
	names_list_free(files, rp->ndisks);
	*out = buf;
	return 0;
}

/* Fetch the restore point of node n with its instance view, afresh. */
static int ops_fresh_rp(struct ops_ctx *ctx, const char *path,
			const struct tree_node *n, struct az_restore_point *rp)
{
	struct rp_err err;
	int rc;

	rp_err_clear(&err);
	rc = az_get_restore_point(ctx->az, n->c->id, n->rp->name, rp, &err);
	if (rc) {
		if (rc == -ENOENT)
			cache_invalidate(ctx->cache, ops_node_group(ctx, n),
					 n->c->name);
		return ops_fail("open", path, rc, &err);
	}
	return 0;
}

static int ops_rp_file(struct ops_ctx *ctx, const char *path,
		       const struct tree_node *n, char **out)
{
	struct az_restore_point rp = {0};
	int rc = ops_fresh_rp(ctx, path, n, &rp);

	if (rc)
		return rc;
	switch (n->p.file) {
	case TREE_F_RP_STATUS:
		rc = asprintf(out, "%s\n",
			      ops_or(rp.provisioning_state, "Unknown")) < 0
			 ? -ENOMEM
			 : 0;
		break;
	case TREE_F_PROGRESS:
		rc = ops_progress(&rp, out);
		break;
	default:
		*out = strdup(rp.json ? rp.json : "{}\n");
		rc = *out ? 0 : -ENOMEM;
		break;
	}
	az_restore_point_free(&rp);
	return rc;
}

/* Why a disk of rp can not be read yet, or NULL when it can. *rc: the
 * errno to give. */
static const char *ops_unusable(const struct az_restore_point *rp,
				const struct az_disk *d, int *rc, char *buf,
				size_t len)
{
	const char *prov = ops_or(rp->provisioning_state, "Unknown");
	const char *acc = d->access_state;

	*rc = -EAGAIN;
	if (strcasecmp(prov, "Failed") == 0) {
		*rc = -EIO;
		return "the restore point failed (provisioningState Failed)";
	}
	if (strcasecmp(prov, "Succeeded") != 0) {
		snprintf(buf, len, "the restore point is still %s", prov);
		return buf;
	}
	if (d->completion_percent >= 0 && d->completion_percent < 100) {
		snprintf(buf, len, "the copy is at %d%% (replication %s)",
			 d->completion_percent,
			 ops_or(d->replication_state, "in progress"));
		return buf;
	}
	if (acc && (strcasecmp(acc, "InstantAccess") == 0 ||
		    strcasecmp(acc, "Pending") == 0)) {
		snprintf(buf, len,
			 "its snapshot is not downloadable yet "
			 "(snapshotAccessState %s)",
			 acc);
		return buf;
	}
	return NULL;
}

static int ops_open_disk(struct ops_ctx *ctx, const char *path,
			 const struct tree_node *n, struct ops_handle *h)
{
	struct az_restore_point rp = {0};
	const struct az_disk *d = NULL;
	char **files = NULL, why[160];
	const char *reason;
	long long size = 0, blocks = 0;
	struct rp_err err;
	int rc = ops_fresh_rp(ctx, path, n, &rp);

	if (rc)
		return rc;
	rc = names_disk_files(rp.disks, rp.ndisks, &files);
	for (size_t j = 0; rc == 0 && j < rp.ndisks && !d; j++)
		if (strcasecmp(files[j], n->p.disk) == 0)
			d = &rp.disks[j];
	if (rc == 0 && (!d || !d->drp_id))
		rc = ops_refuse("open", path, -ENOENT,
				"the restore point no longer lists this disk");
	if (rc == 0) {
		reason = ops_unusable(&rp, d, &rc, why, sizeof(why));
		if (reason)
			rc = ops_refuse("open", path, rc, reason);
		else
			rc = 0;
	}
	if (rc == 0) {
		/* What stat showed so far (before learning the blob). */
		size = ops_disk_size(ctx, d);
		blocks = ops_disk_blocks_bytes(ctx, d->drp_id, size);
		rp_err_clear(&err);
		rc = disk_open(ctx->disks, d->drp_id, &h->disk, &err);
		if (rc)
			rc = ops_fail("open", path, rc, &err);
	}
	if (rc == 0 && (disk_size(h->disk) != size ||
			ops_disk_blocks_bytes(ctx, d->drp_id,
					      disk_size(h->disk)) != blocks))
		/* The kernel still holds the estimate: let fstat (and
		 * cp --sparse=auto, which reads st_blocks) see the truth. */
		fuse_invalidate_path(fuse_get_context()->fuse, path);
	names_list_free(files, rp.ndisks);
	az_restore_point_free(&rp);
	return rc;
}

static int ops_open_read(struct ops_ctx *ctx, const char *path,
			 const struct tree_node *n, struct ops_handle *h,
			 struct fuse_file_info *fi)
{
	int rc;

	switch (n->p.kind) {
	case TREE_DISK:
		/* Direct I/O by default: replies go straight to the reader's
		 * buffer, with no page-cache pages to fill, which costs a
		 * third of the CPU of a bulk copy and keeps a 100 GiB copy
		 * from evicting the host's page cache (docs/performance.md).
		 * -o page_cache: the blob never changes, so the pages one
		 * open read serve the next; a restore point re-made under the
		 * same name has another mtime, and the kernel drops the pages
		 * when it sees it (auto_inval_data, libfuse 3's default). */
		if (ctx->direct_io)
			fi->direct_io = 1;
		else
			fi->keep_cache = 1;
		return ops_open_disk(ctx, path, n, h);
	case TREE_COLL_FILE:
		fi->direct_io = 1;
		if (n->p.file == TREE_F_STATUS)
			rc = ops_coll_status(ctx, path, n, &h->buf);
		else
			rc = ops_file_content(n, &h->buf, &h->len);
		break;
	case TREE_RP_FILE:
		fi->direct_io = 1;
		rc = ops_rp_file(ctx, path, n, &h->buf);
		break;
	default:
		return -EISDIR;
	}
	if (rc == 0)
		h->len = strlen(h->buf);
	return rc;
}

int ops_open(const char *path, struct fuse_file_info *fi)
{
	struct ops_ctx *ctx = ops_ctx();
	struct ops_handle *h = NULL;
	struct tree_node n;
	struct rp_err err;
	int rc;

	rp_err_clear(&err);
	rc = tree_resolve(ctx->cache, ctx->fixed_rg, path, TREE_NEED_EXIST, &n,
			  &err);
	if (rc)
		return ops_fail("open", path, rc, &err);
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		rc = ops_open_write(ctx, path, &n, fi, &h);
	} else {
		h = ops_handle_new(path, &n.p);
		rc = h ? ops_open_read(ctx, path, &n, h, fi) : -ENOMEM;
	}
	tree_node_release(&n);
	if (rc) {
		ops_handle_free(h);
		return rc;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	return 0;
}

int ops_read(const char *path, char *buf, size_t size, off_t off,
	     struct fuse_file_info *fi)
{
	struct ops_handle *h = (struct ops_handle *)(uintptr_t)fi->fh;
	struct rp_err err;
	ssize_t got;

	if (!h)
		return -EBADF;
	if (h->disk) {
		rp_err_clear(&err);
		got = disk_read(h->disk, buf, size, off, &err);
		if (got < 0)
			return ops_fail("read", h->path, (int)got, &err);
		return (int)got;
	}
	if (off < 0)
		return -EINVAL;
	if ((size_t)off >= h->len)
		return 0;
	if (size > h->len - (size_t)off)
		size = h->len - (size_t)off;
	memcpy(buf, h->buf + off, size);
	return (int)size;
}

/*
 * Apply a written handle.  flush applies what was written since the last
 * apply (so close(2) returns Azure's verdict); release also applies a
 * bare truncation (`: > tags`).  A handle with a refused write applies
 * nothing: the file keeps its old content.
 */
static int ops_commit(struct ops_handle *h, bool releasing)
{
	bool go;

	if (!h->writable)
		return 0;
	if (h->failed)
		return releasing ? 0 : h->failed;
	go = h->dirty || (releasing && h->truncated);
	if (!go)
		return 0;
	h->dirty = false;
	h->truncated = false;
	return ops_apply(h->path, &h->p, h->buf ? h->buf : "", h->len);
}

int ops_flush(const char *path, struct fuse_file_info *fi)
{
	struct ops_handle *h = (struct ops_handle *)(uintptr_t)fi->fh;

	return h ? ops_commit(h, false) : 0;
}

int ops_release(const char *path, struct fuse_file_info *fi)
{
	struct ops_handle *h = (struct ops_handle *)(uintptr_t)fi->fh;

	if (h)
		(void)ops_commit(h, true); /* logged; close can't fail here */
	ops_handle_free(h);
	fi->fh = 0;
	return 0;
}

off_t ops_lseek(const char *path, off_t off, int whence,
		struct fuse_file_info *fi)
{
	struct ops_handle *h = (struct ops_handle *)(uintptr_t)fi->fh;

	if (!h)
		return -EBADF;
	if (h->disk)
		return disk_seek(h->disk, off, whence);
	switch (whence) {
	case SEEK_DATA:
		return off < (off_t)h->len ? off : -ENXIO;
	case SEEK_HOLE:
		return off < (off_t)h->len ? (off_t)h->len : -ENXIO;
	default:
		return -EINVAL;
	}
}
