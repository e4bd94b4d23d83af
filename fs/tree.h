/*
 * tree.h -- the node model: what a path of the mount stands for.
 *
 *   /<rg>/<collection>/{collection.json,source,location,status,tags,
 *                        exclude_disks,<rp>/}
 *   /<rg>/<collection>/<rp>/{restorepoint.json,status,progress,<disk>.vhd}
 *
 * With --resource-group the <rg> level is absent (the mountpoint is that
 * group).  tree_path_parse turns a path into names (pure, no requests);
 * tree_resolve checks them against Azure through the cache and hands back
 * a node that holds references to the snapshots it points into.
 */
#ifndef RPFS_TREE_H
#define RPFS_TREE_H

#include <limits.h>
#include <stdbool.h>

#include "../net/az.h"
#include "cache.h"

enum tree_kind {
	TREE_ROOT,	/* the mountpoint (with a fixed group: that group) */
	TREE_GROUP,	/* /<rg> */
	TREE_COLL,	/* /<rg>/<coll> */
	TREE_COLL_FILE, /* /<rg>/<coll>/<fixed file> */
	TREE_RP,	/* /<rg>/<coll>/<rp> */
	TREE_RP_FILE,	/* /<rg>/<coll>/<rp>/<fixed file> */
	TREE_DISK,	/* /<rg>/<coll>/<rp>/<disk>.vhd */
	TREE_OTHER,	/* anything else below a restore point, or deeper */
};

enum tree_file {
	TREE_F_NONE,
	TREE_F_COLL_JSON,
	TREE_F_SOURCE,
	TREE_F_LOCATION,
	TREE_F_STATUS,
	TREE_F_TAGS,
	TREE_F_EXCLUDE,
	TREE_F_RP_JSON,
	TREE_F_RP_STATUS,
	TREE_F_PROGRESS,
};

struct tree_path {
	enum tree_kind kind;
	enum tree_file file;
	char group[NAME_MAX + 1];
	char coll[NAME_MAX + 1];
	char rp[NAME_MAX + 1];	 /* the restore point's Azure name */
	char disk[NAME_MAX + 1]; /* the disk file's entry name */
};

/*
 * Parse path (absolute, as FUSE gives it).  fixed_rg: the mounted group
 * with --resource-group, else NULL.  Returns 0, -ENOENT for a name that
 * can not exist (an "@x" entry for a non-fixed x), -ENAMETOOLONG.
 * Paths deeper than the tree parse as TREE_OTHER.
 */
int tree_path_parse(const char *path, const char *fixed_rg,
		    struct tree_path *p);

/* The entry name of a fixed file, and the file kind of an entry name. */
const char *tree_file_name(enum tree_file f);

/* How much of the collection a resolve needs. */
enum tree_need {
	TREE_NEED_EXIST,   /* the node exists (a list entry is enough) */
	TREE_NEED_CONTENT, /* the collection with its restore points */
};

struct tree_node {
	struct tree_path p; /* first: kept by tree_node_release */
	/* References held by the node (tree_node_release drops them). */
	struct cache_groups *groups;
	struct cache_colls *colls;
	struct cache_coll *snap;
	/* Pointers into the snapshots above, NULL when not applicable. */
	const struct az_group *group;
	const struct az_collection *c; /* into snap, or into colls */
	const struct az_restore_point *rp;
	char *const *rp_files; /* disk file names of rp */
	const struct az_disk *disk;
	/* A pending collection: a private copy. */
	bool is_pending;
	struct cache_pending pending;
};

/*
 * Resolve path to a node that exists.  Returns 0, or -ENOENT / the
 * -errno of a failed request (err filled).  On success release the node
 * with tree_node_release; on failure it holds nothing (but n->p is
 * filled when the path parsed).
 */
int tree_resolve(struct cache *cache, const char *fixed_rg, const char *path,
		 enum tree_need need, struct tree_node *n, struct rp_err *err);
void tree_node_release(struct tree_node *n);

/* Is the collection a copy (its source is another collection)? */
bool tree_coll_is_copy(const struct az_collection *c);

#endif
