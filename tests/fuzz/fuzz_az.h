/*
 * fuzz_az.h -- invariant checks on the az structs that net/az_parse.c
 * fills, shared by the fuzz_az_* targets.  Each check states what az.h
 * promises fs/ about a successfully parsed resource; fs/ relies on these
 * (it prints ids, names files after names, shows percentages).
 */
#ifndef RPFS_FUZZ_AZ_H
#define RPFS_FUZZ_AZ_H

#include <json-c/json.h>

#include "arm.h"
#include "az_parse.h"
#include "fuzz.h"

static inline void fuzz_check_err(int rc, const struct rp_err *err)
{
	FUZZ_ASSERT(rc <= 0);
	if (rc) {
		FUZZ_ASSERT(fuzz_terminated(err->code, sizeof(err->code)));
		FUZZ_ASSERT(
		    fuzz_terminated(err->message, sizeof(err->message)));
	}
}

static inline void fuzz_check_id(const char *id, const char *name)
{
	FUZZ_ASSERT(id && id[0] == '/');
	FUZZ_ASSERT(name != NULL);
}

static inline void fuzz_check_json_copy(const char *json)
{
	size_t n;

	FUZZ_ASSERT(json != NULL);
	n = strlen(json);
	FUZZ_ASSERT(n > 0 && json[n - 1] == '\n');
}

/* az.h: size_bytes is diskSizeGB * 2^30 or -1; completion_percent is
 * 0..100 or -1. */
static inline void fuzz_check_disk(const struct az_disk *d)
{
	FUZZ_ASSERT(d->drp_id != NULL);
	FUZZ_ASSERT(d->name != NULL);
	FUZZ_ASSERT(d->size_bytes == -1 ||
		    (d->size_bytes >= 0 && d->size_bytes % (1LL << 30) == 0));
	FUZZ_ASSERT(d->completion_percent >= -1 &&
		    d->completion_percent <= 100);
}

static inline void fuzz_check_rp(const struct az_restore_point *rp)
{
	fuzz_check_id(rp->id, rp->name);
	fuzz_check_json_copy(rp->json);
	FUZZ_ASSERT(rp->ndisks == 0 || rp->disks != NULL);
	for (size_t i = 0; i < rp->ndisks; i++)
		fuzz_check_disk(&rp->disks[i]);
}

static inline void fuzz_check_collection(const struct az_collection *c)
{
	fuzz_check_id(c->id, c->name);
	FUZZ_ASSERT(c->resource_group && c->resource_group[0]);
	fuzz_check_json_copy(c->json);
	FUZZ_ASSERT(c->ntags == 0 || c->tags != NULL);
	for (size_t i = 0; i < c->ntags; i++)
		FUZZ_ASSERT(c->tags[i].key && c->tags[i].value);
}

/* Parse the input as Azure's answer would be: NULL when not an object. */
static inline json_object *fuzz_json(const uint8_t *data, size_t size)
{
	json_object *o = NULL;
	struct rp_err err;
	char *s = fuzz_str(data, size);
	int rc = arm_json_parse(s, size, &o, &err);

	free(s);
	if (rc) {
		FUZZ_ASSERT(o == NULL);
		FUZZ_ASSERT(fuzz_terminated(err.message, sizeof(err.message)));
		return NULL;
	}
	FUZZ_ASSERT(json_object_is_type(o, json_type_object));
	return o;
}

#endif
