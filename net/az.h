/*
 * az.h -- the typed Azure model that fs/ uses: resource groups, restore
 * point collections, restore points, disk restore points, and the calls
 * that create, change and delete them or grant read access to a disk.
 *
 * fs/ never builds a URL or parses JSON: it hands this module names and
 * the ids that earlier answers returned, and gets back plain structs.
 * Inside, URLs are built from ids exactly as Azure returned them plus
 * percent-encoded names (curl_easy_escape), so no name can address another
 * resource; api-versions are chosen per resource family (ComputeRP for
 * collections and restore points, DiskRP for disk restore points and
 * disks, Resources for groups); nextLink is followed verbatim; long-running
 * operations are polled through Azure-AsyncOperation or Location with
 * Retry-After; ids are compared case-insensitively.
 *
 * Every function returns 0 or a negative errno and fills err (may be NULL)
 * with Azure's code and message.  Malformed JSON gives -EIO.  Output
 * structs are owned by the caller and released with the matching _free
 * (which accepts zeroed structs).  Thread-safe.
 */
#ifndef RPFS_AZ_H
#define RPFS_AZ_H

#include <stdbool.h>
#include <stddef.h>

#include "auth.h"
#include "err.h"
#include "secret.h"

struct az_config {
	const char *endpoint; /* e.g. "https://management.azure.com" */
	const char *subscription;
	const char *compute_api;   /* NULL: "2025-04-01" */
	const char *disk_api;	   /* NULL: "2025-01-02" */
	const char *resources_api; /* NULL: "2021-04-01" */
};

struct az;

struct az *az_new(const struct az_config *cfg, struct auth *auth);
void az_free(struct az *az);

struct az_tag {
	char *key;
	char *value;
};

struct az_group {
	char *id;
	char *name;
	char *location;
};

struct az_collection {
	char *id;
	char *name;
	char *resource_group; /* from the id, as Azure spelled it */
	char *location;
	char *source_id; /* VM id, or source collection id for a copy */
	char *source_location;
	char *provisioning_state;
	struct az_tag *tags;
	size_t ntags;
	char *json; /* the resource, pretty-printed, ending "\n" */
};

/* One disk restore point, as seen from its restore point. */
struct az_disk {
	char *name; /* source disk name from sourceMetadata, else the DRP's name
		     */
	char *drp_id;	      /* the disk restore point's id */
	char *source_disk_id; /* managedDisk.id: the snapshot family, or NULL */
	long long size_bytes; /* diskSizeGB * 2^30, or -1 when unknown */
	bool is_os_disk;
	/* From the instance view (az_get_restore_point); NULL / -1 otherwise.
	 */
	char *replication_state; /* e.g. "Succeeded", "InProgress" */
	int completion_percent;	 /* 0..100, -1 unknown */
	char *access_state;	 /* snapshotAccessState, e.g. "Available",
				    "InstantAccess" */
};

struct az_restore_point {
	char *id;
	char *name;
	char *
	    provisioning_state; /* Creating, Succeeded, Failed, Deleting, ... */
	char *source_rp_id;	/* set on copies */
	char *time_created;
	struct az_disk *disks;
	size_t ndisks;
	char *json; /* pretty-printed, ending "\n" */
};

struct az_vm {
	char *id;
	char *name;
	char *location;
	char **disk_ids; /* managed disk ids: OS disk first, then data disks */
	char **disk_names;
	size_t ndisks;
};

/* Resource groups of the subscription (all pages). */
int az_list_groups(struct az *az, struct az_group **groups, size_t *n,
		   struct rp_err *err);

/* Collections of one group, or of the whole subscription when rg is NULL
 * (all pages). */
int az_list_collections(struct az *az, const char *rg,
			struct az_collection **colls, size_t *n,
			struct rp_err *err);

/* One collection by group and name; with rps non-NULL also its restore
 * points ($expand=restorePoints, without instance views). */
int az_get_collection(struct az *az, const char *rg, const char *name,
		      struct az_collection *coll, struct az_restore_point **rps,
		      size_t *nrps, struct rp_err *err);

/* One restore point with $expand=instanceView, always fresh. */
int az_get_restore_point(struct az *az, const char *collection_id,
			 const char *name, struct az_restore_point *rp,
			 struct rp_err *err);

int az_get_vm(struct az *az, const char *vm_id, struct az_vm *vm,
	      struct rp_err *err);

/* The ARM id of VM name in group rg, built from the subscription. */
int az_vm_id(struct az *az, const char *rg, const char *vm_name, char **id);

/* PUT a collection (synchronous). location NULL: the source's region. */
int az_create_collection(struct az *az, const char *rg, const char *name,
			 const char *location, const char *source_id,
			 const struct az_tag *tags, size_t ntags,
			 struct az_collection *out, struct rp_err *err);

/* PATCH the collection's tags, replacing them all. */
int az_set_collection_tags(struct az *az, const char *collection_id,
			   const struct az_tag *tags, size_t ntags,
			   struct az_collection *out, struct rp_err *err);

/* DELETE, waiting for the long-running operation to finish. */
int az_delete_collection(struct az *az, const char *collection_id,
			 struct rp_err *err);

/*
 * PUT a restore point.  Returns once Azure accepted it (201); the creation
 * goes on in Azure and az_get_restore_point shows its progress.
 * exclude_disk_ids: managed disk ids to leave out.  source_rp_id: for a
 * copy between regions, else NULL.  A retried PUT never duplicates.
 */
int az_create_restore_point(struct az *az, const char *collection_id,
			    const char *name,
			    const char *const *exclude_disk_ids,
			    size_t nexclude, const char *source_rp_id,
			    struct az_restore_point *out, struct rp_err *err);

/* DELETE, waiting for the long-running operation to finish. */
int az_delete_restore_point(struct az *az, const char *rp_id,
			    struct rp_err *err);

/* BeginGetAccess (Read, duration_s), waiting for the SAS. */
int az_grant_access(struct az *az, const char *drp_id, int duration_s,
		    struct secret *sas_url, struct rp_err *err);

/* EndGetAccess, waiting for it to finish. */
int az_revoke_access(struct az *az, const char *drp_id, struct rp_err *err);

/* Restoring managed disks from disk restore points: see az_restore.h. */

/* Case-insensitive id comparison, ignoring a trailing '/'. */
bool az_id_equal(const char *a, const char *b);

/* The last path segment of an id (a pointer into id). */
const char *az_id_name(const char *id);

void az_groups_free(struct az_group *groups, size_t n);
void az_collection_free(struct az_collection *c);
void az_collections_free(struct az_collection *colls, size_t n);
void az_restore_point_free(struct az_restore_point *rp);
void az_restore_points_free(struct az_restore_point *rps, size_t n);
void az_vm_free(struct az_vm *vm);

#endif
