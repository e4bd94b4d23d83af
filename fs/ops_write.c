/*
 * ops_write.c -- writing a collection's metadata files (see ops.h).
 *
 * Writes are buffered per open handle and applied once, on flush (so
 * `echo ... > file` gets the error from close) or at the latest on
 * release.  The whole text is parsed before any request, so a malformed
 * file changes nothing.  What a file means when written:
 *   location       (pending collection) the target region, kept locally;
 *   source         (pending collection) creates it in Azure (PUT);
 *   tags           replaces the user's tags (PATCH; the hidden
 *                  rpfs-exclude-disks tag is kept as it is);
 *   exclude_disks  replaces the rpfs-exclude-disks tag (PATCH), so the
 *                  list survives a remount and is shared by all mounts.
 * Changes to a real collection start from a fresh GET, never from the
 * cache, so one tag file can not wipe the other's change; afterwards the
 * cache is invalidated so the next `ls`/`cat` shows the result.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../net/log.h"
#include "names.h"
#include "ops.h"
#include "tags.h"

int ops_open_write(struct ops_ctx *ctx, const char *path,
		   const struct tree_node *n, struct fuse_file_info *fi,
		   struct ops_handle **out)
{
	struct ops_handle *h;
	int rc;

	if (n->p.kind != TREE_COLL_FILE && n->p.kind != TREE_RP_FILE &&
	    n->p.kind != TREE_DISK)
		return -EISDIR;
	if (ctx->ro)
		return ops_refuse("write", path, -EROFS, "read-only mount");
	if (!ops_file_writable(n)) {
		const char *why = "this file is read-only";

		if (n->p.file == TREE_F_SOURCE || n->p.file == TREE_F_LOCATION)
			why = "source and location can be written only "
			      "while the collection is pending (after "
			      "mkdir, before source is written)";
		return ops_refuse("write", path, -EACCES, why);
	}
	h = ops_handle_new(path, &n->p);
	if (!h)
		return -ENOMEM;
	h->writable = true;
	h->append = (fi->flags & O_APPEND) != 0;
	if (fi->flags & O_TRUNC) {
		h->truncated = true;
	} else {
		rc = ops_file_content(n, &h->buf, &h->len);
		if (rc) {
			ops_handle_free(h);
			return rc;
		}
		h->cap = h->len + 1;
	}
	fi->direct_io = 1;
	*out = h;
	return 0;
}

static int ops_reserve(struct ops_handle *h, size_t need)
{
	char *grown;
	size_t cap = h->cap ? h->cap : 256;

	if (need > OPS_WRITE_MAX)
		return -EFBIG;
	if (need + 1 <= h->cap)
		return 0;
	while (cap < need + 1)
		cap *= 2;
	grown = realloc(h->buf, cap);
	if (!grown)
		return -ENOMEM;
	h->buf = grown;
	h->cap = cap;
	return 0;
}

static void ops_set_len(struct ops_handle *h, size_t len)
{
	if (len > h->len)
		memset(h->buf + h->len, 0, len - h->len);
	h->len = len;
	h->buf[len] = '\0';
}

/* Single-line files take effect as soon as their line is complete. */
static bool ops_eager(const struct ops_handle *h)
{
	return (h->p.file == TREE_F_SOURCE || h->p.file == TREE_F_LOCATION) &&
	       h->len > 0 && h->buf[h->len - 1] == '\n';
}

int ops_write(const char *path, const char *buf, size_t size, off_t off,
	      struct fuse_file_info *fi)
{
	struct ops_handle *h = (struct ops_handle *)(uintptr_t)fi->fh;
	char why[200];
	int rc;

	if (!h || !h->writable)
		return -EBADF;
	if (off < 0)
		return -EINVAL;
	if (h->failed)
		return h->failed;
	if (h->append) /* the kernel's idea of the end may be stale */
		off = (off_t)h->len;
	rc = ops_reserve(h, (size_t)off + size);
	if (rc)
		return ops_refuse("write", path, rc,
				  "metadata files are small");
	if ((size_t)off > h->len)
		ops_set_len(h, (size_t)off);
	memcpy(h->buf + off, buf, size);
	if ((size_t)off + size > h->len)
		h->len = (size_t)off + size;
	h->buf[h->len] = '\0';
	h->dirty = true;
	/* Refuse malformed lines now: shells report write errors, not close
	 * errors, and nothing must be applied from a malformed file. */
	rc = ops_check(h->p.file, h->buf, h->len, false, why, sizeof(why));
	if (rc) {
		h->failed = rc;
		return ops_refuse("write", path, rc, why);
	}
	if (ops_eager(h)) {
		h->dirty = false;
		h->truncated = false;
		rc = ops_apply(path, &h->p, h->buf, h->len);
		if (rc) {
			h->failed = rc;
			return rc;
		}
	}
	return (int)size;
}

int ops_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct ops_ctx *ctx = ops_ctx();
	struct ops_handle *h =
	    fi ? (struct ops_handle *)(uintptr_t)fi->fh : NULL;
	struct tree_node n;
	struct rp_err err;
	char *content;
	size_t len;
	int rc;

	if (size < 0)
		return -EINVAL;
	if (h) {
		if (!h->writable)
			return -EACCES;
		rc = ops_reserve(h, (size_t)size);
		if (rc)
			return rc;
		ops_set_len(h, (size_t)size);
		h->truncated = true;
		return 0;
	}
	/* truncate(2) by path: apply the shortened content at once. */
	rp_err_clear(&err);
	rc = tree_resolve(ctx->cache, ctx->fixed_rg, path, TREE_NEED_EXIST, &n,
			  &err);
	if (rc)
		return ops_fail("truncate", path, rc, &err);
	if (ctx->ro)
		rc = ops_refuse("truncate", path, -EROFS, "read-only mount");
	else if (!ops_file_writable(&n))
		rc = ops_refuse("truncate", path, -EACCES,
				"this file is read-only");
	else
		rc = ops_file_content(&n, &content, &len);
	if (rc == 0) {
		if ((size_t)size < len)
			len = (size_t)size;
		rc = ops_apply(path, &n.p, content, len);
		free(content);
	}
	tree_node_release(&n);
	return rc;
}

/* Copy s without surrounding blanks and newlines. */
static char *ops_trim(const char *s, size_t len)
{
	while (len > 0 && isspace((unsigned char)*s)) {
		s++;
		len--;
	}
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		len--;
	return strndup(s, len);
}

static const char *ops_group(const struct tree_path *p)
{
	struct ops_ctx *ctx = ops_ctx();

	return ctx->fixed_rg ? ctx->fixed_rg : p->group;
}

static int ops_apply_location(const char *path, struct cache_pending *pd,
			      const char *buf, size_t len)
{
	struct ops_ctx *ctx = ops_ctx();
	char *loc = ops_trim(buf, len);
	int rc;

	if (!loc)
		return -ENOMEM;
	if (*loc && !names_valid_location(loc)) {
		free(loc);
		return ops_refuse("write", path, -EINVAL,
				  "a region name is letters and digits, "
				  "e.g. eastus");
	}
	free(pd->location);
	pd->location = *loc ? loc : NULL;
	if (!*loc)
		free(loc);
	rc = cache_pending_update(ctx->cache, pd, CACHE_PENDING_LOCATION);
	return rc ? ops_fail("write", path, rc, NULL) : 0;
}

/* The ARM id a `source` text names: an id as is, or a bare VM name. */
static int ops_source_id(const char *path, const char *rg, const char *text,
			 char **id)
{
	struct ops_ctx *ctx = ops_ctx();
	char tmp[NAME_MAX + 1];
	int rc;

	if (text[0] == '/') {
		if (names_id_part(text, "virtualMachines", tmp, sizeof(tmp)) &&
		    names_id_part(text, "restorePointCollections", tmp,
				  sizeof(tmp)))
			return ops_refuse("write", path, -EINVAL,
					  "source must be a VM id, a VM name "
					  "or a restore point collection id");
		*id = strdup(text);
		return *id ? 0 : -ENOMEM;
	}
	if (!names_valid_vm(text))
		return ops_refuse("write", path, -EINVAL,
				  "not a valid VM name (or an id starting "
				  "with /subscriptions/)");
	rc = az_vm_id(ctx->az, rg, text, id);
	return rc ? ops_fail("write", path, rc, NULL) : 0;
}

static int ops_apply_source(const char *path, const struct tree_path *p,
			    struct cache_pending *pd, const char *buf,
			    size_t len)
{
	struct ops_ctx *ctx = ops_ctx();
	const char *rg = ops_group(p);
	struct az_collection existing = {0}, made = {0};
	struct az_tag *tags = NULL;
	size_t ntags = 0;
	char *text = ops_trim(buf, len), *id = NULL, *exval = NULL, why[160];
	struct rp_err err;
	int rc;

	if (!text)
		return -ENOMEM;
	if (!*text) {
		free(text);
		return ops_refuse("write", path, -EINVAL, "empty source");
	}
	rc = ops_source_id(path, rg, text, &id);
	free(text);
	if (rc)
		return rc;
	rc = tags_exclude_value(pd->exclude, pd->nexclude, &exval, why,
				sizeof(why));
	if (rc == -EINVAL)
		rc = ops_refuse("write", path, rc, why);
	if (rc == 0)
		rc = tags_merge(pd->tags, pd->ntags, exval, &tags, &ntags);
	/* A PUT on an existing collection would change it: refuse. */
	rp_err_clear(&err);
	if (rc == 0) {
		rc = az_get_collection(ctx->az, rg, p->coll, &existing, NULL,
				       NULL, &err);
		if (rc == 0)
			rc = ops_refuse("write", path, -EEXIST,
					"a collection of that name exists in "
					"Azure");
		else if (rc == -ENOENT)
			rc = 0;
		else
			rc = ops_fail("write", path, rc, &err);
	}
	if (rc == 0) {
		rp_err_clear(&err);
		rc = az_create_collection(ctx->az, rg, p->coll, pd->location,
					  id, tags, ntags, &made, &err);
		if (rc)
			rc = ops_fail("create collection", path, rc, &err);
	}
	if (rc == 0) {
		log_info("created collection %s (source %s)",
			 made.id ? made.id : p->coll, id);
		cache_pending_remove(ctx->cache, rg, p->coll);
		cache_invalidate(ctx->cache, rg, p->coll);
	}
	az_collection_free(&existing);
	az_collection_free(&made);
	tags_free(tags, ntags);
	free(exval);
	free(id);
	return rc;
}

/* PATCH the tags of real collection p: user tags (NULL: keep the current
 * ones) and the exclude value (keep_exclude: keep the current one). */
static int ops_patch_tags(const char *path, const struct tree_path *p,
			  const struct az_tag *user, size_t nuser,
			  bool keep_user, const char *exclude,
			  bool keep_exclude)
{
	struct ops_ctx *ctx = ops_ctx();
	const char *rg = ops_group(p);
	struct az_collection cur = {0}, out = {0};
	struct az_tag *tags = NULL;
	size_t ntags = 0;
	struct rp_err err;
	int rc;

	rp_err_clear(&err);
	rc = az_get_collection(ctx->az, rg, p->coll, &cur, NULL, NULL, &err);
	if (rc)
		return ops_fail("write", path, rc, &err);
	if (keep_user) {
		user = cur.tags;
		nuser = cur.ntags;
	}
	if (keep_exclude)
		exclude = tags_find(cur.tags, cur.ntags, TAGS_EXCLUDE_KEY);
	rc = tags_merge(user, nuser, exclude, &tags, &ntags);
	if (rc == 0 && ntags > TAGS_COUNT_MAX)
		rc = ops_refuse("write", path, -EINVAL,
				"Azure allows 50 tags per resource");
	if (rc == 0) {
		rp_err_clear(&err);
		rc = az_set_collection_tags(ctx->az, cur.id, tags, ntags, &out,
					    &err);
		if (rc)
			rc = ops_fail("write", path, rc, &err);
	}
	cache_invalidate(ctx->cache, rg, p->coll);
	tags_free(tags, ntags);
	az_collection_free(&cur);
	az_collection_free(&out);
	return rc;
}

static int ops_apply_tags(const char *path, const struct tree_path *p,
			  struct cache_pending *pd, const char *buf, size_t len)
{
	struct ops_ctx *ctx = ops_ctx();
	struct az_tag *tags = NULL;
	size_t ntags = 0;
	char why[200];
	int rc;

	rc = tags_parse(buf, len, &tags, &ntags, why, sizeof(why));
	if (rc == -EINVAL)
		return ops_refuse("write", path, rc, why);
	if (rc)
		return rc;
	if (pd) {
		tags_free(pd->tags, pd->ntags);
		pd->tags = tags;
		pd->ntags = ntags;
		rc = cache_pending_update(ctx->cache, pd, CACHE_PENDING_TAGS);
		return rc ? ops_fail("write", path, rc, NULL) : 0;
	}
	rc = ops_patch_tags(path, p, tags, ntags, false, NULL, true);
	tags_free(tags, ntags);
	return rc;
}

static int ops_apply_exclude(const char *path, const struct tree_path *p,
			     struct cache_pending *pd, const char *buf,
			     size_t len)
{
	struct ops_ctx *ctx = ops_ctx();
	char **names = NULL, *value = NULL, why[200];
	size_t n = 0;
	int rc;

	rc = tags_parse_exclude(buf, len, &names, &n, why, sizeof(why));
	if (rc == 0)
		rc = tags_exclude_value(names, n, &value, why, sizeof(why));
	if (rc == -EINVAL) {
		names_list_free(names, n);
		return ops_refuse("write", path, rc, why);
	}
	if (rc == 0 && pd) {
		names_list_free(pd->exclude, pd->nexclude);
		pd->exclude = names;
		pd->nexclude = n;
		names = NULL;
		n = 0;
		rc =
		    cache_pending_update(ctx->cache, pd, CACHE_PENDING_EXCLUDE);
		if (rc)
			rc = ops_fail("write", path, rc, NULL);
	} else if (rc == 0) {
		rc = ops_patch_tags(path, p, NULL, 0, true, value, false);
	}
	names_list_free(names, n);
	free(value);
	return rc;
}

int ops_check(enum tree_file f, const char *buf, size_t len, bool final,
	      char *why, size_t whylen)
{
	struct az_tag *tags = NULL;
	char **names = NULL, *text;
	size_t n = 0;
	int rc = 0;

	if (!final) {
		/* Only complete lines: the rest may still be coming. */
		while (len > 0 && buf[len - 1] != '\n')
			len--;
		if (len == 0)
			return 0;
	}
	switch (f) {
	case TREE_F_TAGS:
		rc = tags_parse(buf, len, &tags, &n, why, whylen);
		tags_free(tags, n);
		break;
	case TREE_F_EXCLUDE:
		rc = tags_parse_exclude(buf, len, &names, &n, why, whylen);
		names_list_free(names, n);
		break;
	case TREE_F_SOURCE:
	case TREE_F_LOCATION:
		text = ops_trim(buf, len);
		if (!text)
			return -ENOMEM;
		if (strchr(text, '\n')) {
			snprintf(why, whylen, "one line expected");
			rc = -EINVAL;
		} else if (f == TREE_F_LOCATION && *text &&
			   !names_valid_location(text)) {
			snprintf(why, whylen,
				 "a region name is letters and digits, e.g. "
				 "eastus");
			rc = -EINVAL;
		} else if (f == TREE_F_SOURCE && !*text) {
			snprintf(why, whylen, "empty source");
			rc = -EINVAL;
		} else if (f == TREE_F_SOURCE && text[0] != '/' &&
			   !names_valid_vm(text)) {
			snprintf(why, whylen,
				 "not a valid VM name (or an id starting "
				 "with /subscriptions/)");
			rc = -EINVAL;
		}
		free(text);
		break;
	default:
		break;
	}
	return rc;
}

int ops_apply(const char *path, const struct tree_path *p, const char *buf,
	      size_t len)
{
	struct ops_ctx *ctx = ops_ctx();
	struct cache_pending pd;
	bool pending;
	int rc;

	if (ctx->ro)
		return ops_refuse("write", path, -EROFS, "read-only mount");
	pending =
	    cache_pending_get(ctx->cache, ops_group(p), p->coll, &pd) == 0;
	switch (p->file) {
	case TREE_F_LOCATION:
		rc = pending ? ops_apply_location(path, &pd, buf, len)
			     : ops_refuse("write", path, -EACCES,
					  "the location of an existing "
					  "collection can not change");
		break;
	case TREE_F_SOURCE:
		rc = pending ? ops_apply_source(path, p, &pd, buf, len)
			     : ops_refuse("write", path, -EACCES,
					  "the source of an existing "
					  "collection can not change");
		break;
	case TREE_F_TAGS:
		rc = ops_apply_tags(path, p, pending ? &pd : NULL, buf, len);
		break;
	case TREE_F_EXCLUDE:
		rc = ops_apply_exclude(path, p, pending ? &pd : NULL, buf, len);
		break;
	default:
		rc = ops_refuse("write", path, -EACCES,
				"this file is read-only");
		break;
	}
	if (pending)
		cache_pending_clear(&pd);
	return rc;
}
