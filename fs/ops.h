/*
 * ops.h -- the FUSE operations of rpfs and what they share.
 *
 * main.c fills a struct ops_ctx, passes it as FUSE private data and the
 * table from ops_operations() to fuse_new.  The operations are split by
 * concern: ops.c (attributes, listings, refusals), ops_xattr.c
 * (extended attributes), ops_file.c (open/read/release of metadata and
 * disk files), ops_write.c (buffered writes and what a flush applies),
 * ops_dir.c (mkdir, rmdir).
 * Only these files include FUSE headers; they turn every failure into an
 * errno and log Azure's code and message once, at warn level.
 */
#ifndef RPFS_OPS_H
#define RPFS_OPS_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 35
#endif

#include <fuse.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "../net/az.h"
#include "cache.h"
#include "disk.h"
#include "tree.h"

struct ops_ctx {
	struct az *az;
	struct disk_mgr *disks;
	struct cache *cache;
	const char *fixed_rg; /* --resource-group, or NULL */
	const char *subscription;
	bool ro;
	bool allow_delete;
	bool direct_io; /* disk files skip the page cache (not -o page_cache) */
	double cache_timeout_s;
	uid_t uid;
	gid_t gid;
	time_t mounted_at;
};

/* The table for fuse_new. */
const struct fuse_operations *ops_operations(void);

/* An open file (fi->fh). */
struct ops_handle {
	struct disk_handle *disk; /* disk files; else NULL */
	char *buf;		  /* metadata files: content, or write buffer */
	size_t len;
	size_t cap;
	bool writable;	/* opened for writing */
	bool append;	/* O_APPEND: every write goes to the end */
	bool dirty;	/* data written since the last apply: flush applies */
	bool truncated; /* O_TRUNC or truncate, not applied yet: release
			   applies (so `: > tags` clears the tags) */
	int failed;	/* a write was refused with this -errno: nothing is
			   applied, and flush repeats the error */
	struct tree_path p;
	char *path;
	struct ops_handle *prev, *next; /* the open list (ops_file.c) */
};

/* Free the handles the kernel never released (an unmount with files
 * still open): main calls it after the loop ends, before the disk
 * manager goes, so no disk handle outlives its manager. */
void ops_handles_free_all(void);

/* Largest metadata write accepted (a tags file of 50 long tags fits). */
#define OPS_WRITE_MAX (64 * 1024)

struct ops_ctx *ops_ctx(void);

/*
 * Log a failed operation once, at warn level, with Azure's code and
 * message when err has them, and return rc (a negative errno).
 */
int ops_fail(const char *op, const char *path, int rc,
	     const struct rp_err *err);
/* Log a local refusal (no Azure involved) at warn level; returns rc. */
int ops_refuse(const char *op, const char *path, int rc, const char *why);

/* The group a node lives in, as Azure names it. */
const char *ops_node_group(const struct ops_ctx *ctx,
			   const struct tree_node *n);

/* Is file f of node n writable now (ignoring ro)? */
bool ops_file_writable(const struct tree_node *n);

/* The content of a cached metadata file (not status/progress/json of a
 * restore point).  Returns 0 with *buf malloc'ed, or -errno. */
int ops_file_content(const struct tree_node *n, char **buf, size_t *len);

/* What stat shows for a disk: its size (exact once known), and the bytes
 * st_blocks counts (the data once the page map is known, else size). */
long long ops_disk_size(struct ops_ctx *ctx, const struct az_disk *d);
long long ops_disk_blocks_bytes(struct ops_ctx *ctx, const char *drp_id,
				long long size);

/* ops_xattr.c */
int ops_getxattr(const char *path, const char *name, char *value, size_t size);
int ops_listxattr(const char *path, char *list, size_t size);

/* ops_file.c */
int ops_open(const char *path, struct fuse_file_info *fi);
int ops_read(const char *path, char *buf, size_t size, off_t off,
	     struct fuse_file_info *fi);
int ops_release(const char *path, struct fuse_file_info *fi);
int ops_flush(const char *path, struct fuse_file_info *fi);
off_t ops_lseek(const char *path, off_t off, int whence,
		struct fuse_file_info *fi);
void ops_handle_free(struct ops_handle *h);
struct ops_handle *ops_handle_new(const char *path, const struct tree_path *p);

/* ops_write.c */
/* Open a metadata file for writing: checks, then a buffer (empty with
 * O_TRUNC, else the current content).  Returns 0 or -errno (logged). */
int ops_open_write(struct ops_ctx *ctx, const char *path,
		   const struct tree_node *n, struct fuse_file_info *fi,
		   struct ops_handle **out);
int ops_write(const char *path, const char *buf, size_t size, off_t off,
	      struct fuse_file_info *fi);
int ops_truncate(const char *path, off_t size, struct fuse_file_info *fi);
/* Check the complete lines of what is being written to file f (all of
 * buf when final); -EINVAL with why filled when malformed. */
int ops_check(enum tree_file f, const char *buf, size_t len, bool final,
	      char *why, size_t whylen);
/* Apply the content written to a metadata file (tags, exclude_disks,
 * location, source).  Returns 0 or -errno (already logged). */
int ops_apply(const char *path, const struct tree_path *p, const char *buf,
	      size_t len);

/* ops_dir.c */
int ops_mkdir(const char *path, mode_t mode);
int ops_rmdir(const char *path);

#endif
