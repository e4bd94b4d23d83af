/*
 * fuzz_az_list.c -- one page of a Resource Manager list ({"value": [...],
 * "nextLink": "..."}) as arm_list walks it, each item handed to the
 * parser of the list it came from: resource groups, collections (of a
 * group or the subscription), disk restore points of a restore point, or
 * restore points.  The first input byte picks the list; the rest is the
 * page body.  A page without a "value" array is refused, as arm_list does.
 */
#include "fuzz_az.h"
#include "log.h"

static void item(int kind, json_object *it)
{
	struct rp_err err;
	int rc;

	switch (kind) {
	case 0: {
		struct az_group g = {0};

		rc = az_parse_group(it, &g, &err);
		fuzz_check_err(rc, &err);
		if (rc == 0)
			fuzz_check_id(g.id, g.name);
		az_group_free(&g);
		break;
	}
	case 1: {
		struct az_collection c = {0};

		rc = az_parse_collection(it, &c, &err);
		fuzz_check_err(rc, &err);
		if (rc == 0)
			fuzz_check_collection(&c);
		az_collection_free(&c);
		break;
	}
	case 2: {
		struct az_disk d;

		rc = az_parse_drp(it, &d, &err);
		fuzz_check_err(rc, &err);
		if (rc == 0)
			fuzz_check_disk(&d);
		az_disk_free(&d);
		break;
	}
	default: {
		struct az_restore_point rp = {0};

		rc = az_parse_restore_point(it, &rp, &err);
		fuzz_check_err(rc, &err);
		if (rc == 0)
			fuzz_check_rp(&rp);
		az_restore_point_free(&rp);
		break;
	}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_object *page, *value, *nl;
	int kind;

	if (size < 1)
		return 0;
	kind = data[0] % 4;
	page = fuzz_json(data + 1, size - 1);
	if (!page)
		return 0;
	if (json_object_object_get_ex(page, "value", &value) &&
	    json_object_is_type(value, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(value); i++)
			item(kind, json_object_array_get_idx(value, i));
		if (json_object_object_get_ex(page, "nextLink", &nl) &&
		    json_object_is_type(nl, json_type_string)) {
			char safe[512];

			/* nextLink is logged only redacted. */
			log_redact_url(json_object_get_string(nl), safe,
				       sizeof(safe));
			FUZZ_ASSERT(fuzz_terminated(safe, sizeof(safe)));
		}
	}
	json_object_put(page);
	return 0;
}
