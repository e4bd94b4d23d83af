/*
 * fuzz_az_collection.c -- a restore point collection as Resource Manager
 * returns it (GET, PUT, PATCH answers, and GET with
 * $expand=restorePoints): the body goes through arm_json_parse and
 * az_parse_collection, then every element of properties.restorePoints
 * through az_parse_restore_point, as az_get_collection does.  The id
 * helpers (az_id_resource_group, az_id_prefix) run on the parsed id.
 */
#include "fuzz_az.h"

static void contained(json_object *o)
{
	json_object *props, *arr;

	if (!json_object_object_get_ex(o, "properties", &props) ||
	    !json_object_object_get_ex(props, "restorePoints", &arr) ||
	    !json_object_is_type(arr, json_type_array))
		return;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct az_restore_point rp = {0};
		struct rp_err err;
		int rc = az_parse_restore_point(
		    json_object_array_get_idx(arr, i), &rp, &err);

		fuzz_check_err(rc, &err);
		if (rc == 0)
			fuzz_check_rp(&rp);
		az_restore_point_free(&rp);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_object *o = fuzz_json(data, size);
	struct az_collection c = {0};
	struct rp_err err;
	int rc;

	if (!o)
		return 0;
	rc = az_parse_collection(o, &c, &err);
	fuzz_check_err(rc, &err);
	if (rc == 0) {
		char *rg, *prefix;

		fuzz_check_collection(&c);
		rg = az_id_resource_group(c.id);
		FUZZ_ASSERT(rg && strcmp(rg, c.resource_group) == 0);
		free(rg);
		prefix = az_id_prefix(c.id, "restorePointCollections");
		if (prefix)
			FUZZ_ASSERT(strlen(prefix) <= strlen(c.id));
		free(prefix);
		FUZZ_ASSERT(az_id_equal(c.id, c.id));
		contained(o);
	}
	az_collection_free(&c);
	json_object_put(o);
	return 0;
}
