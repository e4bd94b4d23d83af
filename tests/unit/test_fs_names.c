/*
 * test_fs_names.c -- the name rules of the tree: which names rpfs creates,
 * how a restore point named like a fixed file stays reachable, how disk
 * files are named (also when two disks share a name), the pieces of ARM
 * ids fs/ reads, and Azure's timestamps.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "names.h"

static void test_resource_names(void)
{
	char long80[81], long81[82];

	memset(long80, 'a', 80);
	long80[80] = '\0';
	memset(long81, 'a', 81);
	long81[81] = '\0';

	CHECK(names_valid_resource("coll1"));
	CHECK(names_valid_resource("Daily_2024-01-01.full"));
	CHECK(names_valid_resource("_x"));
	CHECK(names_valid_resource("a"));
	CHECK(names_valid_resource(long80));
	CHECK(!names_valid_resource(long81));
	CHECK(!names_valid_resource(""));
	CHECK(!names_valid_resource(NULL));
	CHECK(!names_valid_resource("ends."));
	CHECK(!names_valid_resource(".hidden"));
	CHECK(!names_valid_resource("-option"));
	CHECK(!names_valid_resource("has space"));
	CHECK(!names_valid_resource("slash/inside"));
	CHECK(!names_valid_resource("@status"));
	CHECK(!names_valid_resource("caf\xc3\xa9"));
	CHECK(!names_valid_resource("a#b"));

	CHECK(names_valid_vm("vm1"));
	CHECK(!names_valid_vm("vm1-"));
	CHECK(!names_valid_vm("_vm"));
	CHECK(!names_valid_vm("a b"));
	CHECK(names_valid_location("eastus2"));
	CHECK(!names_valid_location("east us"));
	CHECK(!names_valid_location(""));
	CHECK(names_valid_disk("vm1-data"));
	CHECK(!names_valid_disk("vm1,data"));
}

static void test_clash_scheme(void)
{
	char out[64];

	CHECK(names_is_collection_file("status"));
	CHECK(names_is_collection_file("collection.json"));
	CHECK(names_is_collection_file("exclude_disks"));
	CHECK(!names_is_collection_file("Status"));
	CHECK(!names_is_collection_file("progress"));

	CHECK_INT(names_rp_entry("rp1", out, sizeof(out)), 0);
	CHECK_STR(out, "rp1");
	CHECK_INT(names_rp_entry("status", out, sizeof(out)), 0);
	CHECK_STR(out, "@status");
	CHECK_INT(names_rp_entry("tags", out, sizeof(out)), 0);
	CHECK_STR(out, "@tags");
	/* progress is a restore point's file, not a collection's */
	CHECK_INT(names_rp_entry("progress", out, sizeof(out)), 0);
	CHECK_STR(out, "progress");
	CHECK_INT(names_rp_entry("status", out, 7), -ENAMETOOLONG);

	CHECK_INT(names_rp_from_entry("rp1", out, sizeof(out)), 0);
	CHECK_STR(out, "rp1");
	CHECK_INT(names_rp_from_entry("@status", out, sizeof(out)), 0);
	CHECK_STR(out, "status");
	CHECK_INT(names_rp_from_entry("@collection.json", out, sizeof(out)), 0);
	CHECK_STR(out, "collection.json");
	/* the fixed file itself is not a restore point */
	CHECK_INT(names_rp_from_entry("status", out, sizeof(out)), -ENOENT);
	/* only the canonical form exists */
	CHECK_INT(names_rp_from_entry("@rp1", out, sizeof(out)), -ENOENT);
	CHECK_INT(names_rp_from_entry("@", out, sizeof(out)), -ENOENT);
}

#define DRP(name)                                                              \
	"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/"      \
	"restorePointCollections/c/restorePoints/rp/diskRestorePoints/" name

static void test_disk_files(void)
{
	struct az_disk d[4] = {
	    {.name = "os", .drp_id = DRP("os_1111")},
	    {.name = "data", .drp_id = DRP("data_2222")},
	    {.name = "DATA", .drp_id = DRP("DATA_3333")},
	    {.name = NULL, .drp_id = DRP("noname_4444")},
	};
	struct az_disk bare = {.name = NULL, .drp_id = NULL};
	char **files = NULL;

	CHECK_INT(names_disk_files(d, 4, &files), 0);
	CHECK_STR(files[0], "os.vhd");
	/* same name (any case): both named after their disk restore point */
	CHECK_STR(files[1], "data_2222.vhd");
	CHECK_STR(files[2], "DATA_3333.vhd");
	CHECK_STR(files[3], "noname_4444.vhd");
	names_list_free(files, 4);

	/* the order of the disks does not change the names */
	{
		struct az_disk r[2] = {d[2], d[1]};

		CHECK_INT(names_disk_files(r, 2, &files), 0);
		CHECK_STR(files[0], "DATA_3333.vhd");
		CHECK_STR(files[1], "data_2222.vhd");
		names_list_free(files, 2);
	}

	CHECK_INT(names_disk_files(&bare, 1, &files), 0);
	CHECK_STR(files[0], "disk0.vhd");
	names_list_free(files, 1);

	CHECK_INT(names_disk_files(NULL, 0, &files), 0);
	names_list_free(files, 0);
}

static void test_id_parts(void)
{
	const char *id = "/subscriptions/s/resourcegroups/RG-PROD/providers/"
			 "microsoft.compute/restorepointcollections/coll1";
	char out[32];

	CHECK_INT(names_id_part(id, "resourceGroups", out, sizeof(out)), 0);
	CHECK_STR(out, "RG-PROD");
	CHECK_INT(
	    names_id_part(id, "restorePointCollections", out, sizeof(out)), 0);
	CHECK_STR(out, "coll1");
	CHECK_INT(names_id_part(id, "virtualMachines", out, sizeof(out)),
		  -ENOENT);
	CHECK_INT(names_id_part(id, "resourceGroups", out, 3), -ENAMETOOLONG);
	CHECK_INT(names_id_part("/a/resourceGroups/", "resourceGroups", out,
				sizeof(out)),
		  -ENOENT);
	CHECK(names_id_is_collection(id));
	CHECK(!names_id_is_collection("/subscriptions/s/resourceGroups/rg/"
				      "providers/Microsoft.Compute/"
				      "virtualMachines/vm1"));
}

static void test_times(void)
{
	time_t t;

	CHECK_INT(names_parse_time("2021-01-27T20:35:05.8401519+00:00", &t), 0);
	CHECK_INT(t, 1611779705);
	CHECK_INT(names_parse_time("2021-01-27T20:35:05Z", &t), 0);
	CHECK_INT(t, 1611779705);
	CHECK_INT(names_parse_time("2021-01-27T22:35:05.1+02:00", &t), 0);
	CHECK_INT(t, 1611779705);
	CHECK_INT(names_parse_time("1970-01-01T00:00:00Z", &t), 0);
	CHECK_INT(t, 0);
	CHECK_INT(names_parse_time("2024-02-29T12:00:00Z", &t), 0);
	CHECK_INT(t, 1709208000);
	CHECK_INT(names_parse_time("yesterday", &t), -EINVAL);
	CHECK_INT(names_parse_time("2021-13-01T00:00:00Z", &t), -EINVAL);
	CHECK_INT(names_parse_time("2021-01-01T00:00:00Zjunk", &t), -EINVAL);
	CHECK_INT(names_parse_time(NULL, &t), -EINVAL);
}

int main(void)
{
	test_resource_names();
	test_clash_scheme();
	test_disk_files();
	test_id_parts();
	test_times();
	return CHECK_DONE();
}
