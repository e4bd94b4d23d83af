/*
 * az_restore.c -- restore a managed disk from a disk restore point: check
 * that the name is free, PUT the disk, follow the long-running operation,
 * and read the disk back until Azure calls it Succeeded.
 *
 * Why the disk is read back after the operation: the operation says the
 * request finished, the disk's provisioningState says the disk is usable
 * (and some answers carry no operation header at all, so reading the disk
 * is the only place the state shows).  Why the existence check first:
 * a PUT on an existing disk is an update in Resource Manager's model, and
 * a restore must never touch a disk it did not create.  The check and the
 * PUT are not atomic; two restores racing for one name are Azure's to
 * settle (one of them fails).
 *
 * Ids are taken as Azure returned them (odd casing included) and compared
 * case-insensitively; names are escaped with arm_escape.  struct
 * az_restore is immutable after az_restore_new: no locks.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "arm.h"
#include "az.h"
#include "az_parse.h"
#include "az_restore.h"
#include "clock.h"

#define AZ_RESTORE_COMPUTE_API "2025-04-01"
#define AZ_RESTORE_DISK_API "2025-01-02"
#define AZ_RESTORE_WAIT_MS (30L * 60 * 1000)
/* How often the disk is read while Azure still shows it in progress. */
#define AZ_RESTORE_POLL_MS 2000L

struct az_restore {
	struct arm *arm;
	char *compute_api;
	char *disk_api;
	long max_wait_ms;
};

struct az_restore *az_restore_new(const struct az_restore_config *cfg,
				  struct auth *auth)
{
	struct az_restore *r = calloc(1, sizeof(*r));
	const char *ep = cfg && cfg->endpoint ? cfg->endpoint
					      : "https://management.azure.com";

	if (!r)
		return NULL;
	r->arm = arm_new(ep, auth);
	r->compute_api =
	    strdup(cfg && cfg->compute_api ? cfg->compute_api
					   : AZ_RESTORE_COMPUTE_API);
	r->disk_api =
	    strdup(cfg && cfg->disk_api ? cfg->disk_api : AZ_RESTORE_DISK_API);
	r->max_wait_ms =
	    cfg && cfg->max_wait_ms > 0 ? cfg->max_wait_ms : AZ_RESTORE_WAIT_MS;
	if (!r->arm || !r->compute_api || !r->disk_api) {
		az_restore_free(r);
		return NULL;
	}
	return r;
}

void az_restore_free(struct az_restore *r)
{
	if (!r)
		return;
	arm_free(r->arm);
	free(r->compute_api);
	free(r->disk_api);
	free(r);
}

/* --- ids and names --- */

/* Splits id ("/a/b/c") into at most max segments, pointers into copy. */
static int id_segments(const char *id, char **copy, char **seg, int max)
{
	char *p, *save = NULL;
	int n = 0;

	*copy = NULL;
	if (!id || strncasecmp(id, "/subscriptions/", 15) != 0)
		return -1;
	*copy = strdup(id);
	if (!*copy)
		return -1;
	for (p = strtok_r(*copy, "/", &save); p;
	     p = strtok_r(NULL, "/", &save)) {
		if (n == max)
			return -1;
		seg[n++] = p;
	}
	return n;
}

#define AZ_RESTORE_MAX_SEGS 32

enum az_restore_id_kind az_restore_id_kind(const char *id)
{
	char *copy, *s[AZ_RESTORE_MAX_SEGS];
	int n = id_segments(id, &copy, s, AZ_RESTORE_MAX_SEGS);
	enum az_restore_id_kind kind = AZ_RESTORE_ID_OTHER;

	/* subscriptions/S/resourceGroups/G/providers/P/restorePointCollections/C
	 * [/restorePoints/R[/diskRestorePoints/D]] */
	if (n >= 8 && n % 2 == 0 && strcasecmp(s[2], "resourceGroups") == 0 &&
	    strcasecmp(s[4], "providers") == 0 &&
	    strcasecmp(s[5], "Microsoft.Compute") == 0 &&
	    strcasecmp(s[6], "restorePointCollections") == 0) {
		if (n == 8)
			kind = AZ_RESTORE_ID_COLLECTION;
		else if (n == 10 && strcasecmp(s[8], "restorePoints") == 0)
			kind = AZ_RESTORE_ID_RESTORE_POINT;
		else if (n == 12 && strcasecmp(s[8], "restorePoints") == 0 &&
			 strcasecmp(s[10], "diskRestorePoints") == 0)
			kind = AZ_RESTORE_ID_DISK_RP;
	}
	free(copy);
	return kind;
}

char *az_restore_id_part(const char *id, const char *key)
{
	char *copy, *s[AZ_RESTORE_MAX_SEGS], *out = NULL;
	int n = id_segments(id, &copy, s, AZ_RESTORE_MAX_SEGS);

	for (int i = 0; i + 1 < n; i++) {
		if (strcasecmp(s[i], key) == 0) {
			out = strdup(s[i + 1]);
			break;
		}
	}
	free(copy);
	return out;
}

bool az_restore_id_within(const char *drp_id, const char *rp_id)
{
	char *rp;
	bool in;

	if (az_restore_id_kind(drp_id) != AZ_RESTORE_ID_DISK_RP ||
	    az_restore_id_kind(rp_id) != AZ_RESTORE_ID_RESTORE_POINT)
		return false;
	rp = az_id_prefix(drp_id, "restorePoints");
	in = rp && az_id_equal(rp, rp_id);
	free(rp);
	return in;
}

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

bool az_restore_disk_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n < 1 || n > 80 || !name_char(name[0]))
		return false;
	if (!name_char(name[n - 1]) && name[n - 1] != '_')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!name_char(name[i]) && !strchr("_.-", name[i]))
			return false;
	}
	return true;
}

/* --- requests --- */

static const char *str_at(json_object *o, const char *a, const char *b)
{
	json_object *v;

	if (!json_object_object_get_ex(o, a, &v))
		return NULL;
	if (b && !json_object_object_get_ex(v, b, &v))
		return NULL;
	return json_object_is_type(v, json_type_string)
		   ? json_object_get_string(v)
		   : NULL;
}

static int disk_url(struct az_restore *r, const struct az_restore_disk_req *q,
		    char **url, struct rp_err *err)
{
	char *sub = arm_escape(q->subscription, err);
	char *rg = sub ? arm_escape(q->resource_group, err) : NULL;
	char *name = rg ? arm_escape(q->name, err) : NULL;
	char *path = NULL;
	int rc = -EINVAL;

	*url = NULL;
	if (name && asprintf(&path,
			     "/subscriptions/%s/resourceGroups/%s/providers/"
			     "Microsoft.Compute/disks/%s",
			     sub, rg, name) < 0) {
		path = NULL;
		rc = -ENOMEM;
	}
	if (path)
		rc = arm_url(r->arm, path, r->disk_api, NULL, url, err);
	free(sub);
	free(rg);
	free(name);
	free(path);
	return rc;
}

/* 0 when no disk of that name exists yet; -EEXIST, or the error of a
 * missing group, otherwise. */
static int disk_absent(struct az_restore *r,
		       const struct az_restore_disk_req *q, const char *url,
		       struct rp_err *err)
{
	struct rp_err e = {0};
	json_object *o = NULL;
	int rc = arm_get_json(r->arm, url, &o, &e);

	json_object_put(o);
	if (rc == 0) {
		rp_err_set(err, 409, "DiskAlreadyExists",
			   "a disk named '%.80s' already exists in resource "
			   "group '%.90s'; choose another name",
			   q->name, q->resource_group);
		return -EEXIST;
	}
	/* Only "no such disk" lets the restore go on; a missing group or
	 * subscription is the user's error, reported before any PUT. */
	if (rc == -ENOENT &&
	    (strcasecmp(e.code, "ResourceNotFound") == 0 ||
	     strcasecmp(e.code, "NotFound") == 0 || !e.code[0]))
		return 0;
	if (err)
		*err = e;
	return rc;
}

/* The region of the disk restore point's collection. */
static int drp_location(struct az_restore *r, const char *drp_id, char **loc,
			struct rp_err *err)
{
	char *coll = az_id_prefix(drp_id, "restorePointCollections");
	json_object *o = NULL;
	char *url = NULL;
	const char *l;
	int rc;

	*loc = NULL;
	if (!coll)
		return -ENOMEM;
	rc = arm_url(r->arm, coll, r->compute_api, NULL, &url, err);
	if (!rc)
		rc = arm_get_json(r->arm, url, &o, err);
	if (!rc) {
		l = str_at(o, "location", NULL);
		if (l && *l) {
			*loc = strdup(l);
			rc = *loc ? 0 : -ENOMEM;
		} else {
			rp_err_set(err, 0, "InvalidResponse",
				   "restore point collection %.200s has no "
				   "location",
				   coll);
			rc = -EIO;
		}
	}
	json_object_put(o);
	free(url);
	free(coll);
	return rc;
}

static char *put_body(const struct az_restore_disk_req *q, const char *loc)
{
	json_object *body = json_object_new_object();
	json_object *props = json_object_new_object();
	json_object *cd = json_object_new_object();
	json_object *sku = q->sku ? json_object_new_object() : NULL;
	char *out = NULL;

	if (!body || !props || !cd || (q->sku && !sku)) {
		json_object_put(body);
		json_object_put(props);
		json_object_put(cd);
		json_object_put(sku);
		return NULL;
	}
	json_object_object_add(cd, "createOption",
			       json_object_new_string("Restore"));
	json_object_object_add(cd, "sourceResourceId",
			       json_object_new_string(q->drp_id));
	json_object_object_add(props, "creationData", cd);
	json_object_object_add(body, "location", json_object_new_string(loc));
	if (sku) {
		json_object_object_add(sku, "name",
				       json_object_new_string(q->sku));
		json_object_object_add(body, "sku", sku);
	}
	json_object_object_add(body, "properties", props);
	const char *s = json_object_to_json_string_ext(
	    body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (s)
		out = strdup(s);
	json_object_put(body);
	return out;
}

/* Read the disk until its provisioningState is terminal. */
static int wait_disk(struct az_restore *r, const struct az_restore_disk_req *q,
		     const char *url, long deadline, char **disk_id,
		     struct rp_err *err)
{
	for (;;) {
		json_object *o = NULL;
		const char *st, *id;
		int rc = arm_get_json(r->arm, url, &o, err);

		if (rc)
			return rc;
		st = str_at(o, "properties", "provisioningState");
		id = str_at(o, "id", NULL);
		if (st && strcasecmp(st, "Succeeded") == 0) {
			rc = -EIO;
			if (!id)
				rp_err_set(err, 0, "InvalidResponse",
					   "the new disk '%.80s' has no id",
					   q->name);
			else if ((*disk_id = strdup(id)))
				rc = 0;
			else
				rc = -ENOMEM;
			json_object_put(o);
			return rc;
		}
		if (st && (strcasecmp(st, "Failed") == 0 ||
			   strcasecmp(st, "Canceled") == 0)) {
			rp_err_set(err, 0, "DiskProvisioningFailed",
				   "disk '%.80s' ended in state %.40s", q->name,
				   st);
			json_object_put(o);
			return -EIO;
		}
		json_object_put(o);
		if (rp_mono_ms() + AZ_RESTORE_POLL_MS > deadline) {
			rp_err_set(err, 0, "Timeout",
				   "disk '%.80s' was not ready within %ld s",
				   q->name, r->max_wait_ms / 1000);
			return -ETIMEDOUT;
		}
		rp_sleep_ms(AZ_RESTORE_POLL_MS);
	}
}

int az_restore_disk(struct az_restore *r, const struct az_restore_disk_req *q,
		    char **disk_id, struct rp_err *err)
{
	struct http_response resp = {0};
	char *url = NULL, *loc = NULL, *body = NULL;
	long deadline = rp_mono_ms() + r->max_wait_ms;
	int rc;

	*disk_id = NULL;
	rp_err_clear(err);
	if (!az_restore_disk_name_valid(q->name)) {
		rp_err_set(err, 0, "InvalidDiskName",
			   "'%.100s' is not a valid disk name (1-80 letters, "
			   "digits, '_', '.', '-'; starting with a letter or "
			   "digit, ending with a letter, digit or '_')",
			   q->name ? q->name : "");
		return -EINVAL;
	}
	if (az_restore_id_kind(q->drp_id) != AZ_RESTORE_ID_DISK_RP) {
		rp_err_set(err, 0, "InvalidId",
			   "not a disk restore point id: %.200s",
			   q->drp_id ? q->drp_id : "");
		return -EINVAL;
	}
	rc = disk_url(r, q, &url, err);
	if (!rc)
		rc = disk_absent(r, q, url, err);
	if (!rc && !q->location)
		rc = drp_location(r, q->drp_id, &loc, err);
	if (rc)
		goto out;
	body = put_body(q, q->location ? q->location : loc);
	if (!body) {
		rc = -ENOMEM;
		goto out;
	}
	rc = arm_call(r->arm, "PUT", url, body, &resp, err);
	if (!rc)
		rc = arm_lro_wait(r->arm, &resp, r->max_wait_ms, NULL, NULL,
				  err);
	if (!rc)
		rc = wait_disk(r, q, url, deadline, disk_id, err);
out:
	http_response_free(&resp);
	free(url);
	free(loc);
	free(body);
	return rc;
}
