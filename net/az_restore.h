/*
 * az_restore.h -- managed disks restored from disk restore points, for
 * the rpfs-restore tool (the seed how-to's "Create a disk using disk
 * restore point" and "Restore a VM").
 *
 * Why beside az.h: the mount never restores, and a restore needs what
 * the mount's az handle does not have: the SKU is the user's choice, an
 * existing disk of the same name must be refused rather than PUT over,
 * and the subscription comes from the command line or from the source
 * id.  Built on arm.h like az.c, with the same conventions: ids used as
 * Azure returned them, names escaped with arm_escape, 0 or a negative
 * errno with err holding Azure's code and message.  A struct az_restore
 * is immutable after az_restore_new and thread-safe (arm and auth are).
 */
#ifndef RPFS_AZ_RESTORE_H
#define RPFS_AZ_RESTORE_H

#include <stdbool.h>

#include "auth.h"
#include "err.h"

struct az_restore_config {
	const char *endpoint;	 /* NULL: "https://management.azure.com" */
	const char *compute_api; /* NULL: as az.c ("2025-04-01") */
	const char *disk_api;	 /* NULL: as az.c ("2025-01-02") */
	long max_wait_ms;	 /* per disk; 0: 30 minutes */
};

struct az_restore;

struct az_restore *az_restore_new(const struct az_restore_config *cfg,
				  struct auth *auth);
void az_restore_free(struct az_restore *r);

struct az_restore_disk_req {
	const char *subscription;   /* of the new disk */
	const char *resource_group; /* of the new disk; must exist */
	const char *name;	    /* the new disk's name */
	const char *drp_id;	    /* the disk restore point's id */
	const char *location; /* NULL: the restore point collection's region */
	const char *sku;      /* e.g. "Premium_LRS"; NULL: Azure's default */
};

/*
 * Create the disk (PUT, createOption Restore, sourceResourceId drp_id)
 * and wait until Azure reports it Succeeded.  Refuses with -EEXIST
 * (code DiskAlreadyExists) when a disk of that name is already in the
 * group, and gives Azure's 404 (ResourceGroupNotFound) for a missing
 * group before anything is created.  *disk_id receives the new disk's id
 * as Azure returns it (malloc'd).
 */
int az_restore_disk(struct az_restore *r, const struct az_restore_disk_req *req,
		    char **disk_id, struct rp_err *err);

/* Azure's rule for managed disk names: 1-80 characters from
 * [A-Za-z0-9_.-], starting with a letter or digit, ending with a letter,
 * digit or '_'. */
bool az_restore_disk_name_valid(const char *name);

enum az_restore_id_kind {
	AZ_RESTORE_ID_OTHER,
	AZ_RESTORE_ID_COLLECTION,    /* .../restorePointCollections/C */
	AZ_RESTORE_ID_RESTORE_POINT, /* .../restorePoints/R */
	AZ_RESTORE_ID_DISK_RP,	     /* .../diskRestorePoints/D */
};

/* What an ARM id names, judged by its last type segment (case-insensitive,
 * a trailing '/' ignored); ids must start with "/subscriptions/". */
enum az_restore_id_kind az_restore_id_kind(const char *id);

/*
 * The segment after key in id ("subscriptions", "resourceGroups", ...),
 * compared case-insensitively; malloc'd, NULL when absent.
 */
char *az_restore_id_part(const char *id, const char *key);

/* Is drp_id a disk restore point of restore point rp_id? */
bool az_restore_id_within(const char *drp_id, const char *rp_id);

#endif
