/*
 * az.c -- the typed Azure model over arm.c: restore point collections,
 * restore points, disk restore point access, resource groups and VMs.
 *
 * URLs are built by arm_url from ids exactly as Azure returned them, or
 * from the subscription and names escaped with arm_escape (so a name can
 * never reach another resource).  Each resource family gets its own
 * api-version: ComputeRP for collections, restore points and VMs, DiskRP
 * for disk restore points and disks, Resources for groups.  Parsing lives
 * in az_parse.c.  struct az is immutable after az_new; no locks (arm and
 * auth are thread-safe).
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
#include "log.h"

#define AZ_COMPUTE_API "2025-04-01"
#define AZ_DISK_API "2025-01-02"
#define AZ_RESOURCES_API "2021-04-01"

/* Bounds on waiting for long-running operations. */
#define AZ_WAIT_DELETE_MS (15L * 60 * 1000)
#define AZ_WAIT_ACCESS_MS (5L * 60 * 1000)
#define AZ_WAIT_DISK_MS (30L * 60 * 1000)

struct az {
	struct arm *arm;
	char *sub; /* escaped subscription id */
	char *compute_api;
	char *disk_api;
	char *resources_api;
};

struct az *az_new(const struct az_config *cfg, struct auth *auth)
{
	struct az *az;

	if (!cfg || !cfg->subscription || !*cfg->subscription)
		return NULL;
	az = calloc(1, sizeof(*az));
	if (!az)
		return NULL;
	az->arm = arm_new(cfg->endpoint ? cfg->endpoint
					: "https://management.azure.com",
			  auth);
	az->sub = arm_escape(cfg->subscription, NULL);
	az->compute_api =
	    strdup(cfg->compute_api ? cfg->compute_api : AZ_COMPUTE_API);
	az->disk_api = strdup(cfg->disk_api ? cfg->disk_api : AZ_DISK_API);
	az->resources_api =
	    strdup(cfg->resources_api ? cfg->resources_api : AZ_RESOURCES_API);
	if (!az->arm || !az->sub || !az->compute_api || !az->disk_api ||
	    !az->resources_api) {
		az_free(az);
		return NULL;
	}
	return az;
}

void az_free(struct az *az)
{
	if (!az)
		return;
	arm_free(az->arm);
	free(az->sub);
	free(az->compute_api);
	free(az->disk_api);
	free(az->resources_api);
	free(az);
}

/* URL for a path built from printf pieces (already escaped). */
static int url_for(struct az *az, const char *api, const char *query,
		   char **url, struct rp_err *err, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static int url_for(struct az *az, const char *api, const char *query,
		   char **url, struct rp_err *err, const char *fmt, ...)
{
	va_list ap;
	char *path;
	int rc;

	va_start(ap, fmt);
	rc = vasprintf(&path, fmt, ap);
	va_end(ap);
	if (rc < 0)
		return -ENOMEM;
	rc = arm_url(az->arm, path, api, query, url, err);
	free(path);
	return rc;
}

/* Escape name for a path segment; -EINVAL with err for a bad name. */
static int esc(const char *name, char **out, struct rp_err *err)
{
	*out = arm_escape(name, err);
	if (*out)
		return 0;
	return (name && *name && strcmp(name, ".") && strcmp(name, "..") &&
		strlen(name) <= 260)
		   ? -ENOMEM
		   : -EINVAL;
}

static char *json_body(json_object *o)
{
	const char *s = json_object_to_json_string_ext(
	    o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

	return s ? strdup(s) : NULL;
}

/* --- lists --- */

struct group_list {
	struct az_group *v;
	size_t n;
};

static int group_item(json_object *item, void *ud, struct rp_err *err)
{
	struct group_list *l = ud;
	struct az_group *nv = realloc(l->v, (l->n + 1) * sizeof(*nv));

	if (!nv)
		return -ENOMEM;
	l->v = nv;
	memset(&l->v[l->n], 0, sizeof(l->v[l->n]));
	l->n++;
	return az_parse_group(item, &l->v[l->n - 1], err);
}

int az_list_groups(struct az *az, struct az_group **groups, size_t *n,
		   struct rp_err *err)
{
	struct group_list l = {0};
	char *url;
	int rc;

	*groups = NULL;
	*n = 0;
	rc = url_for(az, az->resources_api, NULL, &url, err,
		     "/subscriptions/%s/resourcegroups", az->sub);
	if (rc)
		return rc;
	rc = arm_list(az->arm, url, group_item, &l, err);
	free(url);
	if (rc) {
		az_groups_free(l.v, l.n);
		return rc;
	}
	*groups = l.v;
	*n = l.n;
	return 0;
}

struct coll_list {
	struct az_collection *v;
	size_t n;
};

static int coll_item(json_object *item, void *ud, struct rp_err *err)
{
	struct coll_list *l = ud;
	struct az_collection *nv = realloc(l->v, (l->n + 1) * sizeof(*nv));

	if (!nv)
		return -ENOMEM;
	l->v = nv;
	memset(&l->v[l->n], 0, sizeof(l->v[l->n]));
	l->n++;
	return az_parse_collection(item, &l->v[l->n - 1], err);
}

int az_list_collections(struct az *az, const char *rg,
			struct az_collection **colls, size_t *n,
			struct rp_err *err)
{
	struct coll_list l = {0};
	char *url = NULL, *erg = NULL;
	int rc;

	*colls = NULL;
	*n = 0;
	if (rg) {
		rc = esc(rg, &erg, err);
		if (rc)
			return rc;
		rc = url_for(az, az->compute_api, NULL, &url, err,
			     "/subscriptions/%s/resourceGroups/%s/providers/"
			     "Microsoft.Compute/restorePointCollections",
			     az->sub, erg);
		free(erg);
	} else {
		rc = url_for(az, az->compute_api, NULL, &url, err,
			     "/subscriptions/%s/providers/Microsoft.Compute/"
			     "restorePointCollections",
			     az->sub);
	}
	if (rc)
		return rc;
	rc = arm_list(az->arm, url, coll_item, &l, err);
	free(url);
	if (rc) {
		az_collections_free(l.v, l.n);
		return rc;
	}
	*colls = l.v;
	*n = l.n;
	return 0;
}

/* --- single resources --- */

static int collection_url(struct az *az, const char *rg, const char *name,
			  const char *query, char **url, struct rp_err *err)
{
	char *erg = NULL, *ename = NULL;
	int rc;

	if ((rc = esc(rg, &erg, err)) || (rc = esc(name, &ename, err))) {
		free(erg);
		return rc;
	}
	rc = url_for(az, az->compute_api, query, url, err,
		     "/subscriptions/%s/resourceGroups/%s/providers/"
		     "Microsoft.Compute/restorePointCollections/%s",
		     az->sub, erg, ename);
	free(erg);
	free(ename);
	return rc;
}

static int parse_contained_rps(json_object *o, struct az_restore_point **rps,
			       size_t *nrps, struct rp_err *err)
{
	json_object *props, *arr;
	size_t n;

	*rps = NULL;
	*nrps = 0;
	if (!json_object_object_get_ex(o, "properties", &props) ||
	    !json_object_object_get_ex(props, "restorePoints", &arr) || !arr)
		return 0;
	if (!json_object_is_type(arr, json_type_array)) {
		rp_err_set(err, 0, "InvalidResponse",
			   "restorePoints of the collection is not an array");
		return -EIO;
	}
	n = json_object_array_length(arr);
	if (!n)
		return 0;
	*rps = calloc(n, sizeof(**rps));
	if (!*rps)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int rc;

		*nrps = i + 1;
		rc = az_parse_restore_point(json_object_array_get_idx(arr, i),
					    &(*rps)[i], err);
		if (rc)
			return rc;
	}
	return 0;
}

int az_get_collection(struct az *az, const char *rg, const char *name,
		      struct az_collection *coll, struct az_restore_point **rps,
		      size_t *nrps, struct rp_err *err)
{
	json_object *o = NULL;
	char *url;
	int rc;

	memset(coll, 0, sizeof(*coll));
	if (rps) {
		*rps = NULL;
		*nrps = 0;
	}
	rc = collection_url(az, rg, name, rps ? "$expand=restorePoints" : NULL,
			    &url, err);
	if (rc)
		return rc;
	rc = arm_get_json(az->arm, url, &o, err);
	free(url);
	if (!rc)
		rc = az_parse_collection(o, coll, err);
	if (!rc && rps)
		rc = parse_contained_rps(o, rps, nrps, err);
	json_object_put(o);
	if (rc) {
		az_collection_free(coll);
		if (rps) {
			az_restore_points_free(*rps, *nrps);
			*rps = NULL;
			*nrps = 0;
		}
	}
	return rc;
}

static int rp_url(struct az *az, const char *collection_id, const char *name,
		  const char *query, char **url, struct rp_err *err)
{
	char *ename;
	int rc = esc(name, &ename, err);

	if (rc)
		return rc;
	rc = url_for(az, az->compute_api, query, url, err,
		     "%s/restorePoints/%s", collection_id, ename);
	free(ename);
	return rc;
}

int az_get_restore_point(struct az *az, const char *collection_id,
			 const char *name, struct az_restore_point *rp,
			 struct rp_err *err)
{
	json_object *o = NULL;
	char *url;
	int rc;

	memset(rp, 0, sizeof(*rp));
	rc = rp_url(az, collection_id, name, "$expand=instanceView", &url, err);
	if (rc)
		return rc;
	rc = arm_get_json(az->arm, url, &o, err);
	free(url);
	if (!rc)
		rc = az_parse_restore_point(o, rp, err);
	json_object_put(o);
	if (rc)
		az_restore_point_free(rp);
	return rc;
}

int az_get_vm(struct az *az, const char *vm_id, struct az_vm *vm,
	      struct rp_err *err)
{
	json_object *o = NULL;
	char *url;
	int rc;

	memset(vm, 0, sizeof(*vm));
	rc = arm_url(az->arm, vm_id, az->compute_api, NULL, &url, err);
	if (rc)
		return rc;
	rc = arm_get_json(az->arm, url, &o, err);
	free(url);
	if (!rc)
		rc = az_parse_vm(o, vm, err);
	json_object_put(o);
	if (rc)
		az_vm_free(vm);
	return rc;
}

int az_vm_id(struct az *az, const char *rg, const char *vm_name, char **id)
{
	char *erg = NULL, *ename = NULL;
	int rc;

	*id = NULL;
	if ((rc = esc(rg, &erg, NULL)) || (rc = esc(vm_name, &ename, NULL))) {
		free(erg);
		return rc;
	}
	rc = asprintf(id,
		      "/subscriptions/%s/resourceGroups/%s/providers/"
		      "Microsoft.Compute/virtualMachines/%s",
		      az->sub, erg, ename);
	free(erg);
	free(ename);
	if (rc < 0) {
		*id = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* The "location" of any resource id (VM or collection). */
static int location_of(struct az *az, const char *id, const char *api,
		       char **loc, struct rp_err *err)
{
	json_object *o = NULL, *v;
	char *url;
	int rc;

	*loc = NULL;
	rc = arm_url(az->arm, id, api, NULL, &url, err);
	if (rc)
		return rc;
	rc = arm_get_json(az->arm, url, &o, err);
	free(url);
	if (rc)
		return rc;
	if (json_object_object_get_ex(o, "location", &v) &&
	    json_object_is_type(v, json_type_string)) {
		*loc = strdup(json_object_get_string(v));
		rc = *loc ? 0 : -ENOMEM;
	} else {
		rp_err_set(err, 0, "InvalidResponse",
			   "resource %.200s has no location", id);
		rc = -EIO;
	}
	json_object_put(o);
	return rc;
}

static json_object *tags_object(const struct az_tag *tags, size_t ntags)
{
	json_object *t = json_object_new_object();

	for (size_t i = 0; t && i < ntags; i++) {
		json_object *v =
		    json_object_new_string(tags[i].value ? tags[i].value : "");

		if (!v || json_object_object_add(t, tags[i].key, v)) {
			json_object_put(v);
			json_object_put(t);
			return NULL;
		}
	}
	return t;
}

/* Send a body-carrying request, parse the answer into a collection. */
static int collection_write(struct az *az, const char *method, const char *url,
			    json_object *body, struct az_collection *out,
			    struct rp_err *err)
{
	struct http_response resp;
	json_object *o = NULL;
	char *b = json_body(body);
	int rc;

	if (!b)
		return -ENOMEM;
	rc = arm_call(az->arm, method, url, b, &resp, err);
	free(b);
	if (!rc)
		rc = arm_json_parse(resp.body, resp.body_len, &o, err);
	http_response_free(&resp);
	if (!rc && out)
		rc = az_parse_collection(o, out, err);
	json_object_put(o);
	if (rc && out)
		az_collection_free(out);
	return rc;
}

int az_create_collection(struct az *az, const char *rg, const char *name,
			 const char *location, const char *source_id,
			 const struct az_tag *tags, size_t ntags,
			 struct az_collection *out, struct rp_err *err)
{
	json_object *body = NULL, *props, *src;
	char *url = NULL, *loc = NULL;
	int rc;

	if (out)
		memset(out, 0, sizeof(*out));
	if (!source_id || source_id[0] != '/') {
		rp_err_set(err, 0, "InvalidParameter",
			   "the source must be an Azure resource id");
		return -EINVAL;
	}
	rc = collection_url(az, rg, name, NULL, &url, err);
	if (rc)
		return rc;
	if (!location) {
		rc = location_of(az, source_id, az->compute_api, &loc, err);
		if (rc)
			goto out;
		location = loc;
	}
	rc = -ENOMEM;
	body = json_object_new_object();
	props = json_object_new_object();
	src = json_object_new_object();
	if (!body || !props || !src) {
		json_object_put(props);
		json_object_put(src);
		goto out;
	}
	json_object_object_add(src, "id", json_object_new_string(source_id));
	json_object_object_add(props, "source", src);
	json_object_object_add(body, "location",
			       json_object_new_string(location));
	if (ntags) {
		json_object *t = tags_object(tags, ntags);

		if (!t)
			goto out_put;
		json_object_object_add(body, "tags", t);
	}
	json_object_object_add(body, "properties", props);
	rc = collection_write(az, "PUT", url, body, out, err);
out_put:
	json_object_put(body);
out:
	free(loc);
	free(url);
	return rc;
}

int az_set_collection_tags(struct az *az, const char *collection_id,
			   const struct az_tag *tags, size_t ntags,
			   struct az_collection *out, struct rp_err *err)
{
	json_object *body, *t;
	char *url;
	int rc;

	if (out)
		memset(out, 0, sizeof(*out));
	rc = arm_url(az->arm, collection_id, az->compute_api, NULL, &url, err);
	if (rc)
		return rc;
	body = json_object_new_object();
	t = tags_object(tags, ntags);
	if (!body || !t) {
		json_object_put(body);
		json_object_put(t);
		free(url);
		return -ENOMEM;
	}
	json_object_object_add(body, "tags", t);
	rc = collection_write(az, "PATCH", url, body, out, err);
	json_object_put(body);
	free(url);
	return rc;
}

/* DELETE id and wait; 404 on the DELETE itself is ENOENT. */
static int delete_and_wait(struct az *az, const char *id, const char *api,
			   struct rp_err *err)
{
	struct http_response resp;
	char *url;
	int rc;

	rc = arm_url(az->arm, id, api, NULL, &url, err);
	if (rc)
		return rc;
	rc = arm_call(az->arm, "DELETE", url, NULL, &resp, err);
	if (!rc)
		rc = arm_lro_wait(az->arm, &resp, AZ_WAIT_DELETE_MS, NULL, NULL,
				  err);
	http_response_free(&resp);
	free(url);
	return rc;
}

int az_delete_collection(struct az *az, const char *collection_id,
			 struct rp_err *err)
{
	return delete_and_wait(az, collection_id, az->compute_api, err);
}

int az_delete_restore_point(struct az *az, const char *rp_id,
			    struct rp_err *err)
{
	return delete_and_wait(az, rp_id, az->compute_api, err);
}

static json_object *rp_body(const char *const *exclude, size_t nexclude,
			    const char *source_rp_id)
{
	json_object *body = json_object_new_object();
	json_object *props = json_object_new_object();

	if (!body || !props)
		goto fail;
	json_object_object_add(body, "properties", props);
	if (nexclude) {
		json_object *arr = json_object_new_array();

		if (!arr)
			goto fail_body;
		json_object_object_add(props, "excludeDisks", arr);
		for (size_t i = 0; i < nexclude; i++) {
			json_object *d = json_object_new_object();

			if (!d)
				goto fail_body;
			json_object_object_add(
			    d, "id", json_object_new_string(exclude[i]));
			json_object_array_add(arr, d);
		}
	}
	if (source_rp_id) {
		json_object *s = json_object_new_object();

		if (!s)
			goto fail_body;
		json_object_object_add(s, "id",
				       json_object_new_string(source_rp_id));
		json_object_object_add(props, "sourceRestorePoint", s);
	}
	return body;
fail:
	json_object_put(props);
fail_body:
	json_object_put(body);
	return NULL;
}

int az_create_restore_point(struct az *az, const char *collection_id,
			    const char *name,
			    const char *const *exclude_disk_ids,
			    size_t nexclude, const char *source_rp_id,
			    struct az_restore_point *out, struct rp_err *err)
{
	struct http_response resp;
	json_object *body, *o = NULL;
	char *url, *b;
	int rc;

	if (out)
		memset(out, 0, sizeof(*out));
	rc = rp_url(az, collection_id, name, NULL, &url, err);
	if (rc)
		return rc;
	body = rp_body(exclude_disk_ids, nexclude, source_rp_id);
	b = body ? json_body(body) : NULL;
	json_object_put(body);
	if (!b) {
		free(url);
		return -ENOMEM;
	}
	rc = arm_call(az->arm, "PUT", url, b, &resp, err);
	free(b);
	free(url);
	if (rc == -EEXIST || rc == -EBUSY) {
		/* PUT is idempotent by name: a 409 after a retry of a PUT
		 * that did succeed means the restore point is there. */
		struct az_restore_point tmp;
		struct rp_err gerr;

		if (resp.status == 409 &&
		    az_get_restore_point(az, collection_id, name, &tmp,
					 &gerr) == 0) {
			log_info("restore point %s already exists after a "
				 "conflicting PUT: taking it as created",
				 name);
			http_response_free(&resp);
			rp_err_clear(err);
			if (out)
				*out = tmp;
			else
				az_restore_point_free(&tmp);
			return 0;
		}
	}
	if (!rc && out) {
		rc = arm_json_parse(resp.body, resp.body_len, &o, err);
		if (!rc)
			rc = az_parse_restore_point(o, out, err);
		json_object_put(o);
		if (rc)
			az_restore_point_free(out);
	}
	http_response_free(&resp);
	return rc;
}

/* POST a beginGetAccess / endGetAccess style action on a DRP. */
static int drp_action(struct az *az, const char *drp_id, const char *action,
		      const char *body, struct http_response *resp,
		      struct rp_err *err)
{
	char *path, *url;
	int rc;

	if (asprintf(&path, "%s/%s", drp_id, action) < 0)
		return -ENOMEM;
	rc = arm_url(az->arm, path, az->disk_api, NULL, &url, err);
	free(path);
	if (rc) {
		memset(resp, 0, sizeof(*resp));
		return rc;
	}
	rc = arm_call(az->arm, "POST", url, body, resp, err);
	free(url);
	return rc;
}

int az_grant_access(struct az *az, const char *drp_id, int duration_s,
		    struct secret *sas_url, struct rp_err *err)
{
	struct http_response resp;
	json_object *first = NULL, *status = NULL, *loc = NULL;
	char body[96];
	int rc;

	if (duration_s <= 0)
		duration_s = 3600;
	snprintf(body, sizeof(body),
		 "{\"access\":\"Read\",\"durationInSeconds\":%d}", duration_s);
	rc = drp_action(az, drp_id, "beginGetAccess", body, &resp, err);
	if (rc) {
		http_response_free(&resp);
		return rc;
	}
	if (resp.body_len > 0 &&
	    arm_json_parse(resp.body, resp.body_len, &first, NULL) != 0)
		first = NULL;
	if (resp.status == 202 || resp.status == 201 ||
	    (resp.async_operation && !first))
		rc = arm_lro_wait(az->arm, &resp, AZ_WAIT_ACCESS_MS, &status,
				  &loc, err);
	if (!rc)
		rc = az_parse_access_sas(loc, status, first, sas_url, err);
	json_object_put(first);
	json_object_put(status);
	json_object_put(loc);
	http_response_free(&resp);
	return rc;
}

int az_revoke_access(struct az *az, const char *drp_id, struct rp_err *err)
{
	struct http_response resp;
	int rc;

	rc = drp_action(az, drp_id, "endGetAccess", NULL, &resp, err);
	if (!rc)
		rc = arm_lro_wait(az->arm, &resp, AZ_WAIT_ACCESS_MS, NULL, NULL,
				  err);
	http_response_free(&resp);
	return rc;
}
