/*
 * fuzz_arm_error.c -- what Resource Manager (or a token endpoint) says
 * when something fails, and the status bodies of long-running operations.
 *
 * Input: two bytes of HTTP status, a byte count n and n bytes of
 * x-ms-error-code header, then the body.  arm_error_parse must return a
 * positive errno and a terminated err; arm_lro_status_parse must give a
 * state or -EIO; arm_errno_from_code must map any code to an errno.
 */
#include <errno.h>

#include "arm.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rp_err err;
	enum arm_lro_state st;
	json_object *o = NULL;
	char *hdr = NULL, *body;
	int status, e, rc;
	size_t hl;

	if (size < 3)
		return 0;
	status = data[0] << 8 | data[1];
	hl = data[2];
	data += 3;
	size -= 3;
	if (hl > size)
		hl = size;
	if (hl)
		hdr = fuzz_str(data, hl);
	body = fuzz_str(data + hl, size - hl);

	e = arm_error_parse(status, body, hdr, &err);
	FUZZ_ASSERT(e > 0);
	FUZZ_ASSERT(err.http_status == status);
	FUZZ_ASSERT(fuzz_terminated(err.code, sizeof(err.code)));
	FUZZ_ASSERT(fuzz_terminated(err.message, sizeof(err.message)));
	FUZZ_ASSERT(arm_errno_from_code(err.code) > 0);

	rc = arm_lro_status_parse(body, &st, &o, &err);
	FUZZ_ASSERT(rc == 0 || rc == -EIO || rc == -ENOMEM);
	if (rc == 0) {
		FUZZ_ASSERT(o != NULL);
		FUZZ_ASSERT(st == ARM_LRO_RUNNING || st == ARM_LRO_SUCCEEDED ||
			    st == ARM_LRO_FAILED || st == ARM_LRO_CANCELED);
		if (st == ARM_LRO_FAILED || st == ARM_LRO_CANCELED)
			FUZZ_ASSERT(
			    fuzz_terminated(err.message, sizeof(err.message)));
	} else {
		FUZZ_ASSERT(o == NULL);
	}
	json_object_put(o);
	/* The same body without asking for the object back. */
	(void)arm_lro_status_parse(body, &st, NULL, NULL);
	free(hdr);
	free(body);
	return 0;
}
