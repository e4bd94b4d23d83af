/*
 * fuzz_az_vm.c -- a virtual machine (GET, for a collection's source and
 * for exclude_disks): az_parse_vm must give parallel disk id / name
 * arrays, OS disk first, or an error.
 */
#include "fuzz_az.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_object *o = fuzz_json(data, size);
	struct az_vm vm = {0};
	struct rp_err err;
	int rc;

	if (!o)
		return 0;
	rc = az_parse_vm(o, &vm, &err);
	fuzz_check_err(rc, &err);
	if (rc == 0) {
		fuzz_check_id(vm.id, vm.name);
		for (size_t i = 0; i < vm.ndisks; i++)
			FUZZ_ASSERT(vm.disk_ids[i] && vm.disk_names[i]);
	}
	az_vm_free(&vm);
	json_object_put(o);
	return 0;
}
