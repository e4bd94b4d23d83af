/*
 * az_parse.h -- JSON to az structs (internal to net/, exposed for unit
 * tests).  Each parser takes a parsed json-c object and fills a zeroed
 * struct; on a missing or mistyped required field it returns -EIO with a
 * clear err and leaves the struct freeable (never half-dangling).
 */
#ifndef RPFS_AZ_PARSE_H
#define RPFS_AZ_PARSE_H

#include <json-c/json.h>

#include "az.h"

int az_parse_group(json_object *o, struct az_group *g, struct rp_err *err);
int az_parse_collection(json_object *o, struct az_collection *c,
			struct rp_err *err);
/* Restore point incl. disks from sourceMetadata and, when present, the
 * instance view (disk restore points matched by id, case-insensitively). */
int az_parse_restore_point(json_object *o, struct az_restore_point *rp,
			   struct rp_err *err);
/* A DiskRestorePoint resource (GET / list item) as one az_disk. */
int az_parse_drp(json_object *o, struct az_disk *d, struct rp_err *err);
int az_parse_vm(json_object *o, struct az_vm *vm, struct rp_err *err);

/*
 * The SAS of a beginGetAccess, from whichever of the three places holds
 * it (azure-spec README 4.3): the final Location body, the operation
 * status body's properties.output, or the immediate 200 body.  Any of the
 * objects may be NULL.  -EIO when none has a non-empty accessSAS.
 */
int az_parse_access_sas(json_object *location_body, json_object *status_body,
			json_object *first_body, struct secret *sas,
			struct rp_err *err);

/* The resourceGroups segment of an id (case-insensitive), malloc'd; NULL
 * when the id has none. */
char *az_id_resource_group(const char *id);

/* json_object_to_json_string_ext pretty, plus a trailing newline. */
char *az_pretty_json(json_object *o);

/* The collection id part of a restore point or disk restore point id
 * ("/.../restorePointCollections/NAME"), malloc'd; NULL when absent. */
char *az_id_prefix(const char *id, const char *segment);

void az_disk_free(struct az_disk *d);
void az_group_free(struct az_group *g);

#endif
