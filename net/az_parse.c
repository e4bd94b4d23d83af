/*
 * az_parse.c -- Resource Manager JSON into the typed az structs.
 *
 * Pure functions over parsed json-c objects: no I/O, no locks.  A field
 * that the filesystem needs (id) is required; the rest are optional and
 * left NULL / -1 when absent, but a field of the wrong JSON type is an
 * error (-EIO), because it means the answer is not what we think it is.
 * Outputs own malloc'd copies; on failure the caller frees the struct
 * with the matching _free, which accepts partial results.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "az_parse.h"

/* Look up key in o; *v is NULL when absent or JSON null.  -EIO when the
 * member exists with a type other than want. */
static int jget(json_object *o, const char *key, json_type want,
		json_object **v, struct rp_err *err)
{
	json_object *x = NULL;

	*v = NULL;
	if (!o || !json_object_object_get_ex(o, key, &x) || !x)
		return 0;
	if (!json_object_is_type(x, want)) {
		/* Azure sometimes sends numbers as strings (v1 tokens);
		 * callers that accept that ask for json_type_null. */
		rp_err_set(err, 0, "InvalidResponse",
			   "field \"%s\" in Azure's answer has the wrong type",
			   key);
		return -EIO;
	}
	*v = x;
	return 0;
}

/* Copy of the string member key (NULL when absent); -EIO on wrong type. */
static int jstrdup(json_object *o, const char *key, char **out,
		   struct rp_err *err)
{
	json_object *v;
	int rc = jget(o, key, json_type_string, &v, err);

	*out = NULL;
	if (rc || !v)
		return rc;
	*out = strdup(json_object_get_string(v));
	return *out ? 0 : -ENOMEM;
}

/* Follow a path of object keys; NULL when any step is absent. */
static int jpath(json_object *o, const char *const *keys, json_object **v,
		 struct rp_err *err)
{
	int rc;

	*v = o;
	for (size_t i = 0; keys[i] && *v; i++) {
		bool last = keys[i + 1] == NULL;
		json_object *next;

		if (last) {
			json_object_object_get_ex(*v, keys[i], &next);
			*v = next;
			return 0;
		}
		rc = jget(*v, keys[i], json_type_object, &next, err);
		if (rc)
			return rc;
		*v = next;
	}
	return 0;
}

static int jpath_str(json_object *o, const char *const *keys, char **out,
		     struct rp_err *err)
{
	json_object *v;
	int rc = jpath(o, keys, &v, err);

	*out = NULL;
	if (rc || !v || json_object_is_type(v, json_type_null))
		return rc;
	if (!json_object_is_type(v, json_type_string)) {
		rp_err_set(err, 0, "InvalidResponse",
			   "field \"%s\" in Azure's answer is not a string",
			   keys[0]);
		return -EIO;
	}
	*out = strdup(json_object_get_string(v));
	return *out ? 0 : -ENOMEM;
}

static int require_id(json_object *o, const char *what, char **id, char **name,
		      struct rp_err *err)
{
	int rc;

	if (!o || !json_object_is_type(o, json_type_object)) {
		rp_err_set(err, 0, "InvalidResponse",
			   "%s in Azure's answer is not a JSON object", what);
		return -EIO;
	}
	rc = jstrdup(o, "id", id, err);
	if (rc)
		return rc;
	if (!*id || (*id)[0] != '/') {
		rp_err_set(err, 0, "InvalidResponse",
			   "%s in Azure's answer has no valid \"id\"", what);
		return -EIO;
	}
	rc = jstrdup(o, "name", name, err);
	if (rc)
		return rc;
	if (!*name) {
		*name = strdup(az_id_name(*id));
		if (!*name)
			return -ENOMEM;
	}
	return 0;
}

char *az_pretty_json(json_object *o)
{
	const char *s = json_object_to_json_string_ext(
	    o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
		   JSON_C_TO_STRING_NOSLASHESCAPE);
	char *out;

	if (!s)
		return NULL;
	if (asprintf(&out, "%s\n", s) < 0)
		return NULL;
	return out;
}

/* Start of the segment after "/<segment>/" in id (case-insensitive). */
static const char *segment_after(const char *id, const char *segment,
				 size_t *len)
{
	size_t sl = strlen(segment);

	for (const char *p = id; p && *p; p = strchr(p + 1, '/')) {
		if (*p != '/')
			continue;
		if (strncasecmp(p + 1, segment, sl) == 0 && p[1 + sl] == '/') {
			const char *v = p + 2 + sl;
			const char *e = strchr(v, '/');

			*len = e ? (size_t)(e - v) : strlen(v);
			return *len ? v : NULL;
		}
	}
	return NULL;
}

char *az_id_resource_group(const char *id)
{
	size_t n;
	const char *v = id ? segment_after(id, "resourceGroups", &n) : NULL;

	return v ? strndup(v, n) : NULL;
}

char *az_id_prefix(const char *id, const char *segment)
{
	size_t n;
	const char *v = id ? segment_after(id, segment, &n) : NULL;

	return v ? strndup(id, (size_t)(v - id) + n) : NULL;
}

bool az_id_equal(const char *a, const char *b)
{
	size_t la, lb;

	if (!a || !b)
		return false;
	la = strlen(a);
	lb = strlen(b);
	while (la && a[la - 1] == '/')
		la--;
	while (lb && b[lb - 1] == '/')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

const char *az_id_name(const char *id)
{
	size_t n;
	const char *end, *p;

	if (!id)
		return "";
	n = strlen(id);
	while (n && id[n - 1] == '/')
		n--;
	end = id + n;
	p = end;
	while (p > id && p[-1] != '/')
		p--;
	/* A trailing slash: the name ends before it, but we return a
	 * pointer into id, so only an id without one yields a clean string;
	 * ids from Azure never end in '/'. */
	return p;
}

static int parse_tags(json_object *o, struct az_tag **tags, size_t *ntags,
		      struct rp_err *err)
{
	json_object *t;
	int rc = jget(o, "tags", json_type_object, &t, err);
	size_t n, i = 0;

	*tags = NULL;
	*ntags = 0;
	if (rc || !t)
		return rc;
	n = (size_t)json_object_object_length(t);
	if (!n)
		return 0;
	*tags = calloc(n, sizeof(**tags));
	if (!*tags)
		return -ENOMEM;
	json_object_object_foreach(t, k, v)
	{
		if (i >= n)
			break;
		if (v && !json_object_is_type(v, json_type_string)) {
			rp_err_set(err, 0, "InvalidResponse",
				   "tag \"%.64s\" is not a string", k);
			return -EIO;
		}
		(*tags)[i].key = strdup(k);
		(*tags)[i].value = strdup(v ? json_object_get_string(v) : "");
		*ntags = ++i;
		if (!(*tags)[i - 1].key || !(*tags)[i - 1].value)
			return -ENOMEM;
	}
	return 0;
}

int az_parse_group(json_object *o, struct az_group *g, struct rp_err *err)
{
	int rc = require_id(o, "resource group", &g->id, &g->name, err);

	if (!rc)
		rc = jstrdup(o, "location", &g->location, err);
	return rc;
}

int az_parse_collection(json_object *o, struct az_collection *c,
			struct rp_err *err)
{
	static const char *const src_id[] = {"properties", "source", "id",
					     NULL};
	static const char *const src_loc[] = {"properties", "source",
					      "location", NULL};
	static const char *const state[] = {"properties", "provisioningState",
					    NULL};
	json_object *props;
	int rc;

	rc = require_id(o, "restore point collection", &c->id, &c->name, err);
	if (rc)
		return rc;
	c->resource_group = az_id_resource_group(c->id);
	if (!c->resource_group) {
		rp_err_set(err, 0, "InvalidResponse",
			   "collection id has no resource group: %.200s",
			   c->id);
		return -EIO;
	}
	if ((rc = jget(o, "properties", json_type_object, &props, err)) ||
	    (rc = jstrdup(o, "location", &c->location, err)) ||
	    (rc = jpath_str(o, src_id, &c->source_id, err)) ||
	    (rc = jpath_str(o, src_loc, &c->source_location, err)) ||
	    (rc = jpath_str(o, state, &c->provisioning_state, err)) ||
	    (rc = parse_tags(o, &c->tags, &c->ntags, err)))
		return rc;
	c->json = az_pretty_json(o);
	return c->json ? 0 : -ENOMEM;
}

void az_disk_free(struct az_disk *d)
{
	if (!d)
		return;
	free(d->name);
	free(d->drp_id);
	free(d->source_disk_id);
	free(d->replication_state);
	free(d->access_state);
	memset(d, 0, sizeof(*d));
}

static struct az_disk *disk_add(struct az_restore_point *rp)
{
	struct az_disk *nd = realloc(rp->disks, (rp->ndisks + 1) * sizeof(*nd));

	if (!nd)
		return NULL;
	rp->disks = nd;
	nd = &rp->disks[rp->ndisks++];
	memset(nd, 0, sizeof(*nd));
	nd->size_bytes = -1;
	nd->completion_percent = -1;
	return nd;
}

/* One osDisk / dataDisks[] entry of sourceMetadata.storageProfile. */
static int parse_profile_disk(json_object *o, bool os,
			      struct az_restore_point *rp, struct rp_err *err)
{
	static const char *const drp[] = {"diskRestorePoint", "id", NULL};
	static const char *const md[] = {"managedDisk", "id", NULL};
	struct az_disk *d;
	json_object *sz;
	char *drp_id = NULL;
	int rc;

	if (!json_object_is_type(o, json_type_object)) {
		rp_err_set(err, 0, "InvalidResponse",
			   "a disk of the restore point is not an object");
		return -EIO;
	}
	rc = jpath_str(o, drp, &drp_id, err);
	if (rc)
		return rc;
	if (!drp_id)
		return 0; /* excluded, or not yet created: nothing to read */
	d = disk_add(rp);
	if (!d) {
		free(drp_id);
		return -ENOMEM;
	}
	d->drp_id = drp_id;
	d->is_os_disk = os;
	if ((rc = jstrdup(o, "name", &d->name, err)) ||
	    (rc = jpath_str(o, md, &d->source_disk_id, err)))
		return rc;
	if (!d->name && !(d->name = strdup(az_id_name(d->drp_id))))
		return -ENOMEM;
	if (json_object_object_get_ex(o, "diskSizeGB", &sz) && sz &&
	    !json_object_is_type(sz, json_type_null)) {
		long long gb;

		if (!json_object_is_type(sz, json_type_int)) {
			rp_err_set(err, 0, "InvalidResponse",
				   "diskSizeGB of disk %.100s is not a number",
				   d->name);
			return -EIO;
		}
		gb = json_object_get_int64(sz);
		if (gb < 0 || gb > (1LL << 24)) {
			rp_err_set(err, 0, "InvalidResponse",
				   "diskSizeGB of disk %.100s is out of range",
				   d->name);
			return -EIO;
		}
		d->size_bytes = gb << 30;
	}
	return 0;
}

/* A completion percentage as az.h promises it: 0..100, whatever Azure sent
 * (NaN and huge values included, which a plain cast would make undefined). */
static int percent_clamp(double p)
{
	if (!(p > 0))
		return 0;
	return p >= 100 ? 100 : (int)p;
}

/* One instanceView.diskRestorePoints[] entry: merge into the disk with
 * the same id, or add the disk when sourceMetadata did not list it. */
static int parse_iv_disk(json_object *o, struct az_restore_point *rp,
			 struct rp_err *err)
{
	static const char *const disp[] = {"replicationStatus", "status",
					   "displayStatus", NULL};
	static const char *const code[] = {"replicationStatus", "status",
					   "code", NULL};
	static const char *const pct[] = {"replicationStatus",
					  "completionPercent", NULL};
	struct az_disk *d = NULL;
	json_object *v;
	char *id = NULL;
	int rc;

	if (!json_object_is_type(o, json_type_object)) {
		rp_err_set(err, 0, "InvalidResponse",
			   "instance view disk entry is not an object");
		return -EIO;
	}
	rc = jstrdup(o, "id", &id, err);
	if (rc)
		return rc;
	if (!id) {
		rp_err_set(err, 0, "InvalidResponse",
			   "instance view disk entry has no id");
		return -EIO;
	}
	for (size_t i = 0; i < rp->ndisks; i++) {
		if (az_id_equal(rp->disks[i].drp_id, id)) {
			d = &rp->disks[i];
			break;
		}
	}
	if (!d) {
		d = disk_add(rp);
		if (!d) {
			free(id);
			return -ENOMEM;
		}
		d->drp_id = id;
		d->name = strdup(az_id_name(id));
		if (!d->name)
			return -ENOMEM;
	} else {
		free(id);
	}
	free(d->replication_state);
	d->replication_state = NULL;
	free(d->access_state);
	d->access_state = NULL;
	if ((rc = jpath_str(o, disp, &d->replication_state, err)))
		return rc;
	if (!d->replication_state) {
		char *c = NULL;

		if ((rc = jpath_str(o, code, &c, err)))
			return rc;
		if (c) {
			/* "ReplicationState/succeeded" -> "succeeded" */
			const char *slash = strrchr(c, '/');

			d->replication_state = strdup(slash ? slash + 1 : c);
			free(c);
			if (!d->replication_state)
				return -ENOMEM;
		}
	}
	if ((rc = jpath(o, pct, &v, err)))
		return rc;
	if (v && !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_int) &&
		    !json_object_is_type(v, json_type_double)) {
			rp_err_set(err, 0, "InvalidResponse",
				   "completionPercent is not a number");
			return -EIO;
		}
		d->completion_percent =
		    percent_clamp(json_object_get_double(v));
	}
	return jstrdup(o, "snapshotAccessState", &d->access_state, err);
}

static int parse_array(json_object *o, const char *key, bool os,
		       int (*fn)(json_object *, bool, struct az_restore_point *,
				 struct rp_err *),
		       struct az_restore_point *rp, struct rp_err *err)
{
	json_object *arr;
	int rc = jget(o, key, json_type_array, &arr, err);

	for (size_t i = 0; !rc && arr && i < json_object_array_length(arr); i++)
		rc = fn(json_object_array_get_idx(arr, i), os, rp, err);
	return rc;
}

static int iv_adapter(json_object *o, bool unused, struct az_restore_point *rp,
		      struct rp_err *err)
{
	return parse_iv_disk(o, rp, err);
}

int az_parse_restore_point(json_object *o, struct az_restore_point *rp,
			   struct rp_err *err)
{
	static const char *const sp[] = {"properties", "sourceMetadata",
					 "storageProfile", NULL};
	static const char *const iv[] = {"properties", "instanceView", NULL};
	static const char *const state[] = {"properties", "provisioningState",
					    NULL};
	static const char *const src[] = {"properties", "sourceRestorePoint",
					  "id", NULL};
	static const char *const tc[] = {"properties", "timeCreated", NULL};
	json_object *props, *prof, *view, *os;
	int rc;

	rc = require_id(o, "restore point", &rp->id, &rp->name, err);
	if (rc)
		return rc;
	if ((rc = jget(o, "properties", json_type_object, &props, err)) ||
	    (rc = jpath_str(o, state, &rp->provisioning_state, err)) ||
	    (rc = jpath_str(o, src, &rp->source_rp_id, err)) ||
	    (rc = jpath_str(o, tc, &rp->time_created, err)) ||
	    (rc = jpath(o, sp, &prof, err)) || (rc = jpath(o, iv, &view, err)))
		return rc;
	if (prof && !json_object_is_type(prof, json_type_object)) {
		rp_err_set(err, 0, "InvalidResponse",
			   "storageProfile is not an object");
		return -EIO;
	}
	if (view && !json_object_is_type(view, json_type_object) &&
	    !json_object_is_type(view, json_type_null)) {
		rp_err_set(err, 0, "InvalidResponse",
			   "instanceView is not an object");
		return -EIO;
	}
	if (prof) {
		rc = jget(prof, "osDisk", json_type_object, &os, err);
		if (!rc && os)
			rc = parse_profile_disk(os, true, rp, err);
		if (!rc)
			rc = parse_array(prof, "dataDisks", false,
					 parse_profile_disk, rp, err);
		if (rc)
			return rc;
	}
	if (view && json_object_is_type(view, json_type_object)) {
		rc = parse_array(view, "diskRestorePoints", false, iv_adapter,
				 rp, err);
		if (rc)
			return rc;
	}
	rp->json = az_pretty_json(o);
	return rp->json ? 0 : -ENOMEM;
}

int az_parse_drp(json_object *o, struct az_disk *d, struct rp_err *err)
{
	static const char *const rs[] = {"properties", "replicationState",
					 NULL};
	static const char *const src[] = {"properties", "sourceResourceId",
					  NULL};
	static const char *const pct[] = {"properties", "completionPercent",
					  NULL};
	json_object *v;
	int rc;

	memset(d, 0, sizeof(*d));
	d->size_bytes = -1;
	d->completion_percent = -1;
	rc = require_id(o, "disk restore point", &d->drp_id, &d->name, err);
	if (rc)
		return rc;
	if ((rc = jpath_str(o, src, &d->source_disk_id, err)) ||
	    (rc = jpath_str(o, rs, &d->replication_state, err)) ||
	    (rc = jpath(o, pct, &v, err)))
		return rc;
	if (v && !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_int) &&
		    !json_object_is_type(v, json_type_double)) {
			rp_err_set(err, 0, "InvalidResponse",
				   "completionPercent is not a number");
			return -EIO;
		}
		d->completion_percent =
		    percent_clamp(json_object_get_double(v));
	}
	return 0;
}

static int vm_disk_add(struct az_vm *vm, json_object *d, struct rp_err *err)
{
	static const char *const md[] = {"managedDisk", "id", NULL};
	char *id = NULL, *name = NULL;
	char **ids, **names;
	int rc;

	if (!json_object_is_type(d, json_type_object)) {
		rp_err_set(err, 0, "InvalidResponse",
			   "a disk of the VM is not an object");
		return -EIO;
	}
	if ((rc = jpath_str(d, md, &id, err)) ||
	    (rc = jstrdup(d, "name", &name, err))) {
		free(id);
		return rc;
	}
	if (!id) {
		free(name);
		return 0; /* unmanaged disk: not part of a restore point */
	}
	if (!name && !(name = strdup(az_id_name(id)))) {
		free(id);
		return -ENOMEM;
	}
	ids = realloc(vm->disk_ids, (vm->ndisks + 1) * sizeof(*ids));
	if (ids)
		vm->disk_ids = ids;
	names = realloc(vm->disk_names, (vm->ndisks + 1) * sizeof(*names));
	if (names)
		vm->disk_names = names;
	if (!ids || !names) {
		free(id);
		free(name);
		return -ENOMEM;
	}
	vm->disk_ids[vm->ndisks] = id;
	vm->disk_names[vm->ndisks] = name;
	vm->ndisks++;
	return 0;
}

int az_parse_vm(json_object *o, struct az_vm *vm, struct rp_err *err)
{
	static const char *const sp[] = {"properties", "storageProfile", NULL};
	json_object *prof, *os, *data;
	int rc;

	rc = require_id(o, "virtual machine", &vm->id, &vm->name, err);
	if (rc)
		return rc;
	if ((rc = jstrdup(o, "location", &vm->location, err)) ||
	    (rc = jpath(o, sp, &prof, err)))
		return rc;
	if (!prof)
		return 0;
	if (!json_object_is_type(prof, json_type_object)) {
		rp_err_set(err, 0, "InvalidResponse",
			   "storageProfile is not an object");
		return -EIO;
	}
	if ((rc = jget(prof, "osDisk", json_type_object, &os, err)) ||
	    (rc = jget(prof, "dataDisks", json_type_array, &data, err)))
		return rc;
	if (os && (rc = vm_disk_add(vm, os, err)))
		return rc;
	for (size_t i = 0; data && i < json_object_array_length(data); i++) {
		rc = vm_disk_add(vm, json_object_array_get_idx(data, i), err);
		if (rc)
			return rc;
	}
	return 0;
}

static const char *sas_in(json_object *o, const char *const *path)
{
	json_object *v = o;

	for (size_t i = 0; v && path[i]; i++) {
		if (!json_object_is_type(v, json_type_object) ||
		    !json_object_object_get_ex(v, path[i], &v))
			return NULL;
	}
	if (!v || !json_object_is_type(v, json_type_string) ||
	    json_object_get_string_len(v) == 0)
		return NULL;
	return json_object_get_string(v);
}

int az_parse_access_sas(json_object *location_body, json_object *status_body,
			json_object *first_body, struct secret *sas,
			struct rp_err *err)
{
	static const char *const direct[] = {"accessSAS", NULL};
	static const char *const output[] = {"properties", "output",
					     "accessSAS", NULL};
	const char *s = sas_in(location_body, direct);

	if (!s)
		s = sas_in(location_body, output);
	if (!s)
		s = sas_in(status_body, output);
	if (!s)
		s = sas_in(status_body, direct);
	if (!s)
		s = sas_in(first_body, direct);
	if (!s) {
		rp_err_set(err, 0, "InvalidResponse",
			   "Azure granted access but returned no accessSAS");
		return -EIO;
	}
	if (strncasecmp(s, "https://", 8) != 0 &&
	    strncasecmp(s, "http://", 7) != 0) {
		rp_err_set(err, 0, "InvalidResponse",
			   "accessSAS is not an http(s) URL");
		return -EIO;
	}
	return secret_set(sas, s);
}

void az_group_free(struct az_group *g)
{
	if (!g)
		return;
	free(g->id);
	free(g->name);
	free(g->location);
	memset(g, 0, sizeof(*g));
}

void az_groups_free(struct az_group *groups, size_t n)
{
	for (size_t i = 0; groups && i < n; i++)
		az_group_free(&groups[i]);
	free(groups);
}

void az_collection_free(struct az_collection *c)
{
	if (!c)
		return;
	free(c->id);
	free(c->name);
	free(c->resource_group);
	free(c->location);
	free(c->source_id);
	free(c->source_location);
	free(c->provisioning_state);
	for (size_t i = 0; c->tags && i < c->ntags; i++) {
		free(c->tags[i].key);
		free(c->tags[i].value);
	}
	free(c->tags);
	free(c->json);
	memset(c, 0, sizeof(*c));
}

void az_collections_free(struct az_collection *colls, size_t n)
{
	for (size_t i = 0; colls && i < n; i++)
		az_collection_free(&colls[i]);
	free(colls);
}

void az_restore_point_free(struct az_restore_point *rp)
{
	if (!rp)
		return;
	free(rp->id);
	free(rp->name);
	free(rp->provisioning_state);
	free(rp->source_rp_id);
	free(rp->time_created);
	for (size_t i = 0; rp->disks && i < rp->ndisks; i++)
		az_disk_free(&rp->disks[i]);
	free(rp->disks);
	free(rp->json);
	memset(rp, 0, sizeof(*rp));
}

void az_restore_points_free(struct az_restore_point *rps, size_t n)
{
	for (size_t i = 0; rps && i < n; i++)
		az_restore_point_free(&rps[i]);
	free(rps);
}

void az_vm_free(struct az_vm *vm)
{
	if (!vm)
		return;
	free(vm->id);
	free(vm->name);
	free(vm->location);
	for (size_t i = 0; i < vm->ndisks; i++) {
		free(vm->disk_ids ? vm->disk_ids[i] : NULL);
		free(vm->disk_names ? vm->disk_names[i] : NULL);
	}
	free(vm->disk_ids);
	free(vm->disk_names);
	memset(vm, 0, sizeof(*vm));
}
