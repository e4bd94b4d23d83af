/*
 * fuzz_names.c -- the name rules of the tree (fs/names.c) and the ARM id
 * helpers of net/az_parse.c, on arbitrary strings: what a user types
 * (mkdir, lookup) and what Azure returns as ids and timestamps.
 *
 * Invariants: a valid resource name is never a fixed file name of a
 * collection once mapped to its entry, and entry <-> name is a bijection
 * (names_rp_entry / names_rp_from_entry); names_id_part returns a
 * segment of the id; disk file names are unique within a restore point
 * and end in ".vhd"; no function reads or writes past its buffers.
 */
#include <errno.h>
#include <stdbool.h>
#include <strings.h>

#include "az_parse.h"
#include "fuzz.h"
#include "names.h"

static void entry_roundtrip(const char *name)
{
	char entry[128], back[128];
	int rc = names_rp_entry(name, entry, sizeof(entry));

	if (rc) {
		FUZZ_ASSERT(rc == -ENAMETOOLONG);
		return;
	}
	FUZZ_ASSERT(!names_is_collection_file(entry));
	rc = names_rp_from_entry(entry, back, sizeof(back));
	if (names_valid_resource(name)) {
		FUZZ_ASSERT(rc == 0 && strcmp(back, name) == 0);
	}
	/* A lookup of any entry maps back to a name whose entry it is. */
	rc = names_rp_from_entry(name, back, sizeof(back));
	if (rc == 0) {
		char again[130];

		FUZZ_ASSERT(names_rp_entry(back, again, sizeof(again)) == 0);
		FUZZ_ASSERT(strcmp(again, name) == 0);
	}
}

static void id_parts(const char *id)
{
	static const char *const keys[] = {
	    "resourceGroups",	 "restorePointCollections", "restorePoints",
	    "diskRestorePoints", "subscriptions",	    "providers"};
	char out[64];
	char *rg, *pre;
	time_t t;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		int rc = names_id_part(id, keys[i], out, sizeof(out));

		FUZZ_ASSERT(rc == 0 || rc == -ENOENT || rc == -ENAMETOOLONG);
		if (rc == 0) {
			FUZZ_ASSERT(out[0] && !strchr(out, '/'));
			FUZZ_ASSERT(strstr(id, out) != NULL);
		}
		pre = az_id_prefix(id, keys[i]);
		if (pre) {
			FUZZ_ASSERT(strlen(pre) <= strlen(id));
			FUZZ_ASSERT(strncasecmp(pre, id, strlen(pre)) == 0);
		}
		free(pre);
	}
	(void)names_id_is_collection(id);
	rg = az_id_resource_group(id);
	if (rg)
		FUZZ_ASSERT(strstr(id, rg) != NULL);
	free(rg);
	FUZZ_ASSERT(az_id_name(id) >= id && az_id_name(id) <= id + strlen(id));
	FUZZ_ASSERT(az_id_equal(id, id));
	(void)names_parse_time(id, &t);
}

static bool drp_names_distinct(const struct az_disk *d, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!d[i].drp_id || !*az_id_name(d[i].drp_id))
			return false;
		for (size_t j = i + 1; j < n; j++)
			if (d[j].drp_id &&
			    strcasecmp(az_id_name(d[i].drp_id),
				       az_id_name(d[j].drp_id)) == 0)
				return false;
	}
	return true;
}

/* Disks from lines "name\tdrp_id" (either may be empty: absent). */
static void disk_files(char *s)
{
	struct az_disk disks[16];
	char **files = NULL;
	size_t n = 0;
	char *save = NULL;

	memset(disks, 0, sizeof(disks));
	for (char *line = strtok_r(s, "\n", &save); line && n < 16;
	     line = strtok_r(NULL, "\n", &save)) {
		char *tab = strchr(line, '\t');

		if (tab)
			*tab = '\0';
		disks[n].name = line[0] ? line : NULL;
		disks[n].drp_id = tab && tab[1] ? tab + 1 : NULL;
		n++;
	}
	FUZZ_ASSERT(names_disk_files(disks, n, &files) == 0);
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(files[i]);

		FUZZ_ASSERT(l > 4 && strcmp(files[i] + l - 4, ".vhd") == 0);
	}
	/* Azure keeps disk restore point names unique within a restore
	 * point, and names.h promises unique file names on that ground:
	 * with distinct, '/'-free drp names, no two files may share a name
	 * (one disk would be unreachable). */
	if (drp_names_distinct(disks, n))
		for (size_t i = 0; i < n; i++)
			for (size_t j = i + 1; j < n; j++)
				FUZZ_ASSERT(strcasecmp(files[i], files[j]) !=
					    0);
	names_list_free(files, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size < 1)
		return 0;
	s = fuzz_str(data + 1, size - 1);
	switch (data[0] % 3) {
	case 0:
		(void)names_valid_disk(s);
		(void)names_valid_vm(s);
		(void)names_valid_location(s);
		entry_roundtrip(s);
		break;
	case 1:
		id_parts(s);
		break;
	default:
		disk_files(s);
		break;
	}
	free(s);
	return 0;
}
