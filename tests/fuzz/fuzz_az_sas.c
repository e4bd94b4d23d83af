/*
 * fuzz_az_sas.c -- the three bodies a beginGetAccess may carry its SAS in
 * (the final Location body, the operation status body, the immediate 200
 * body; azure-spec README 4.3), separated in the input by a line "@@@".
 * az_parse_access_sas must give an http(s) URL or -EIO, and the SAS
 * expiry parser (blob_sas_expiry) must cope with whatever it got.
 */
#include <strings.h>

#include "blob.h"
#include "fuzz_az.h"

#define SEP "\n@@@\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_object *body[3] = {NULL, NULL, NULL};
	const uint8_t *p = data;
	size_t n = size;
	struct secret sas = {0};
	struct rp_err err;
	int rc;

	for (int i = 0; i < 3 && p; i++) {
		const uint8_t *rest;
		size_t restlen;
		char *part = fuzz_split(p, n, SEP, &rest, &restlen);

		body[i] = fuzz_json((const uint8_t *)part, strlen(part));
		free(part);
		p = rest;
		n = restlen;
	}
	rc = az_parse_access_sas(body[0], body[1], body[2], &sas, &err);
	fuzz_check_err(rc, &err);
	if (rc == 0) {
		const char *v = secret_value(&sas);
		time_t t;
		char shown[64];

		FUZZ_ASSERT(v && (strncasecmp(v, "https://", 8) == 0 ||
				  strncasecmp(v, "http://", 7) == 0));
		(void)blob_sas_expiry(v, &t);
		/* The printer never shows the value. */
		secret_print(&sas, shown, sizeof(shown));
		FUZZ_ASSERT(strlen(v) < 12 || !strstr(shown, v + 8));
	}
	secret_clear(&sas);
	for (int i = 0; i < 3; i++)
		json_object_put(body[i]);
	return 0;
}
