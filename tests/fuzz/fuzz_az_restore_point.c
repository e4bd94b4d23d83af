/*
 * fuzz_az_restore_point.c -- a restore point with $expand=instanceView
 * (GET) or as a PUT answer: sourceMetadata.storageProfile disks merged
 * with instanceView.diskRestorePoints by id (az_parse_restore_point).
 * On success the disks must be consistent enough for fs/ to name files
 * after them and show their progress.
 */
#include "fuzz_az.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_object *o = fuzz_json(data, size);
	struct az_restore_point rp = {0};
	struct rp_err err;
	int rc;

	if (!o)
		return 0;
	rc = az_parse_restore_point(o, &rp, &err);
	fuzz_check_err(rc, &err);
	if (rc == 0)
		fuzz_check_rp(&rp);
	az_restore_point_free(&rp);
	json_object_put(o);
	return 0;
}
