/*
 * tree.c -- paths to nodes (see tree.h).
 *
 * Parsing is pure.  Resolution asks the cache, and so Azure, for as
 * little as the question needs: whether a group or collection exists is
 * answered from the lists (cached like everything else), so `ls -l` of a
 * group costs no request per collection and probing absent names costs
 * nothing while the list is fresh; whatever lies inside a collection comes from
 * that collection's snapshot (one GET with $expand=restorePoints).  Names
 * of groups, collections and restore points match case-insensitively,
 * like Azure's; fixed file names and disk file names match exactly first.
 * A node holds references to the snapshots its pointers point into, so it
 * stays valid while another thread refreshes the cache.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "names.h"
#include "tree.h"

static const struct {
	const char *name;
	enum tree_file file;
	bool in_rp; /* a restore point's file, else a collection's */
} tree_files[] = {
    {"collection.json", TREE_F_COLL_JSON, false},
    {"source", TREE_F_SOURCE, false},
    {"location", TREE_F_LOCATION, false},
    {"status", TREE_F_STATUS, false},
    {"tags", TREE_F_TAGS, false},
    {"exclude_disks", TREE_F_EXCLUDE, false},
    {"restorepoint.json", TREE_F_RP_JSON, true},
    {"status", TREE_F_RP_STATUS, true},
    {"progress", TREE_F_PROGRESS, true},
};

#define TREE_NFILES (sizeof(tree_files) / sizeof(tree_files[0]))

const char *tree_file_name(enum tree_file f)
{
	for (size_t i = 0; i < TREE_NFILES; i++)
		if (tree_files[i].file == f)
			return tree_files[i].name;
	return NULL;
}

static enum tree_file tree_file_lookup(const char *name, bool in_rp)
{
	for (size_t i = 0; i < TREE_NFILES; i++)
		if (tree_files[i].in_rp == in_rp &&
		    strcmp(tree_files[i].name, name) == 0)
			return tree_files[i].file;
	return TREE_F_NONE;
}

static bool tree_has_suffix(const char *s, const char *suffix)
{
	size_t ls = strlen(s), lx = strlen(suffix);

	return ls > lx && strcmp(s + ls - lx, suffix) == 0;
}

static int tree_copy(char *dst, const char *src, size_t len)
{
	if (len > NAME_MAX)
		return -ENAMETOOLONG;
	memcpy(dst, src, len);
	dst[len] = '\0';
	return 0;
}

int tree_path_parse(const char *path, const char *fixed_rg, struct tree_path *p)
{
	const char *s = path;
	int level = 0, rc;

	memset(p, 0, sizeof(*p));
	p->kind = TREE_ROOT;
	if (fixed_rg) {
		if (strlen(fixed_rg) > NAME_MAX)
			return -ENAMETOOLONG;
		strcpy(p->group, fixed_rg);
		level = 1;
	}
	while (*s) {
		char comp[NAME_MAX + 1];
		size_t len;

		while (*s == '/')
			s++;
		if (!*s)
			break;
		len = strcspn(s, "/");
		rc = tree_copy(comp, s, len);
		if (rc)
			return rc;
		s += len;
		switch (level) {
		case 0:
			strcpy(p->group, comp);
			p->kind = TREE_GROUP;
			break;
		case 1:
			strcpy(p->coll, comp);
			p->kind = TREE_COLL;
			break;
		case 2:
			p->file = tree_file_lookup(comp, false);
			if (p->file != TREE_F_NONE) {
				p->kind = TREE_COLL_FILE;
				break;
			}
			rc = names_rp_from_entry(comp, p->rp, sizeof(p->rp));
			if (rc)
				return rc;
			p->kind = TREE_RP;
			break;
		case 3:
			if (p->kind != TREE_RP) {
				p->kind = TREE_OTHER;
				break;
			}
			p->file = tree_file_lookup(comp, true);
			if (p->file != TREE_F_NONE) {
				p->kind = TREE_RP_FILE;
			} else if (tree_has_suffix(comp, ".vhd")) {
				strcpy(p->disk, comp);
				p->kind = TREE_DISK;
			} else {
				strcpy(p->disk, comp);
				p->kind = TREE_OTHER;
			}
			break;
		default:
			p->kind = TREE_OTHER;
			break;
		}
		level++;
	}
	return 0;
}

void tree_node_release(struct tree_node *n)
{
	cache_groups_put(n->groups);
	cache_colls_put(n->colls);
	cache_coll_put(n->snap);
	if (n->is_pending)
		cache_pending_clear(&n->pending);
	/* Keep the parsed path: callers may still want the names. */
	memset((char *)n + sizeof(n->p), 0, sizeof(*n) - sizeof(n->p));
}

bool tree_coll_is_copy(const struct az_collection *c)
{
	return c->source_id && names_id_is_collection(c->source_id);
}

/* Does collection c belong to group rg?  (Its id's group, any case.) */
static bool tree_in_group(const struct az_collection *c, const char *rg)
{
	char idrg[NAME_MAX + 1];

	if (c->resource_group)
		return strcasecmp(c->resource_group, rg) == 0;
	if (c->id &&
	    names_id_part(c->id, "resourceGroups", idrg, sizeof(idrg)) == 0)
		return strcasecmp(idrg, rg) == 0;
	return false;
}

static int tree_resolve_group(struct cache *cache, struct tree_node *n,
			      struct rp_err *err)
{
	int rc = cache_groups(cache, CACHE_FETCH, &n->groups, err);

	if (rc)
		return rc;
	for (size_t i = 0; i < n->groups->n; i++) {
		if (strcasecmp(n->groups->v[i].name, n->p.group) == 0) {
			n->group = &n->groups->v[i];
			return 0;
		}
	}
	return -ENOENT;
}

/* The collection from the list (fetched when not fresh), so that probing
 * absent names (shells and tools do it all the time) costs no request
 * each. */
static int tree_coll_from_list(struct cache *cache, struct tree_node *n,
			       struct rp_err *err)
{
	int rc = cache_colls(cache, CACHE_FETCH, &n->colls, err);

	if (rc)
		return rc;
	for (size_t i = 0; i < n->colls->n; i++) {
		const struct az_collection *c = &n->colls->v[i];

		if (c->name && strcasecmp(c->name, n->p.coll) == 0 &&
		    tree_in_group(c, n->p.group)) {
			n->c = c;
			return 0;
		}
	}
	return -ENOENT;
}

static int tree_resolve_rp(struct tree_node *n)
{
	const struct cache_coll *s = n->snap;

	for (size_t i = 0; i < s->nrps; i++) {
		if (s->rps[i].name &&
		    strcasecmp(s->rps[i].name, n->p.rp) == 0) {
			n->rp = &s->rps[i];
			n->rp_files = s->files[i];
			return 0;
		}
	}
	return -ENOENT;
}

static int tree_resolve_disk(struct tree_node *n)
{
	const struct az_restore_point *rp = n->rp;

	for (size_t j = 0; j < rp->ndisks; j++) {
		if (strcmp(n->rp_files[j], n->p.disk) == 0) {
			n->disk = &rp->disks[j];
			return 0;
		}
	}
	for (size_t j = 0; j < rp->ndisks; j++) {
		if (strcasecmp(n->rp_files[j], n->p.disk) == 0) {
			n->disk = &rp->disks[j];
			return 0;
		}
	}
	return -ENOENT;
}

static int tree_resolve_inside(struct cache *cache, struct tree_node *n,
			       enum tree_need need, struct rp_err *err)
{
	int rc;

	if (cache_pending_get(cache, n->p.group, n->p.coll, &n->pending) == 0) {
		n->is_pending = true;
		if (n->p.kind == TREE_COLL)
			return 0;
		if (n->p.kind == TREE_COLL_FILE &&
		    n->p.file != TREE_F_COLL_JSON)
			return 0;
		return -ENOENT;
	}
	if (n->p.kind == TREE_COLL && need == TREE_NEED_EXIST)
		return tree_coll_from_list(cache, n, err);
	rc = cache_coll(cache, n->p.group, n->p.coll, CACHE_FETCH, &n->snap,
			err);
	if (rc)
		return rc;
	n->c = &n->snap->c;
	if (n->p.kind == TREE_COLL || n->p.kind == TREE_COLL_FILE)
		return 0;
	rc = tree_resolve_rp(n);
	if (rc || n->p.kind == TREE_RP || n->p.kind == TREE_RP_FILE)
		return rc;
	if (n->p.kind == TREE_DISK)
		return tree_resolve_disk(n);
	return -ENOENT;
}

int tree_resolve(struct cache *cache, const char *fixed_rg, const char *path,
		 enum tree_need need, struct tree_node *n, struct rp_err *err)
{
	int rc;

	memset(n, 0, sizeof(*n));
	rc = tree_path_parse(path, fixed_rg, &n->p);
	if (rc)
		return rc == -ENAMETOOLONG ? -ENOENT : rc;
	switch (n->p.kind) {
	case TREE_ROOT:
		return 0;
	case TREE_GROUP:
		rc = fixed_rg ? 0 : tree_resolve_group(cache, n, err);
		break;
	case TREE_OTHER:
		rc = -ENOENT;
		break;
	default:
		rc = tree_resolve_inside(cache, n, need, err);
		break;
	}
	if (rc)
		tree_node_release(n);
	return rc;
}
