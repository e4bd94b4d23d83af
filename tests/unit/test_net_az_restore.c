/*
 * test_net_az_restore.c -- what rpfs-restore decides before it talks to
 * Azure: which new disk names Azure would accept, and what an id read
 * from user.azure.id names (ids come back in any casing).
 */
#include <stdlib.h>
#include <string.h>

#include "az_restore.h"
#include "check.h"

#define RP                                                                     \
	"/subscriptions/s1/resourceGroups/rg-prod/providers/"                  \
	"Microsoft.Compute/restorePointCollections/coll1/restorePoints/rp1"

static void test_disk_names_follow_azure_rules(void)
{
	char long_name[82];

	CHECK(az_restore_disk_name_valid("vm1-os-restored"));
	CHECK(az_restore_disk_name_valid("a"));
	CHECK(az_restore_disk_name_valid("Disk_01.data_"));
	CHECK(az_restore_disk_name_valid("9lives"));
	CHECK(!az_restore_disk_name_valid(""));
	CHECK(!az_restore_disk_name_valid(NULL));
	CHECK(!az_restore_disk_name_valid("-leading-hyphen"));
	CHECK(!az_restore_disk_name_valid("_leading"));
	CHECK(!az_restore_disk_name_valid(".hidden"));
	CHECK(!az_restore_disk_name_valid("trailing-"));
	CHECK(!az_restore_disk_name_valid("trailing."));
	CHECK(!az_restore_disk_name_valid("with space"));
	CHECK(!az_restore_disk_name_valid("slash/inside"));
	CHECK(!az_restore_disk_name_valid("vm1-os.vhd@"));
	memset(long_name, 'a', 80);
	long_name[80] = '\0';
	CHECK(az_restore_disk_name_valid(long_name));
	long_name[80] = 'a';
	long_name[81] = '\0';
	CHECK(!az_restore_disk_name_valid(long_name));
}

static void test_id_kinds_in_any_casing(void)
{
	CHECK_INT(az_restore_id_kind(RP "/diskRestorePoints/vm1-os_abc"),
		  AZ_RESTORE_ID_DISK_RP);
	CHECK_INT(az_restore_id_kind(
		      "/SUBSCRIPTIONS/s1/resourcegroups/RG-PROD/providers/"
		      "microsoft.compute/restorepointcollections/coll1/"
		      "restorepoints/rp1/diskrestorepoints/d1/"),
		  AZ_RESTORE_ID_DISK_RP);
	CHECK_INT(az_restore_id_kind(RP), AZ_RESTORE_ID_RESTORE_POINT);
	CHECK_INT(az_restore_id_kind(
		      "/subscriptions/s1/resourceGroups/rg-prod/providers/"
		      "Microsoft.Compute/restorePointCollections/coll1"),
		  AZ_RESTORE_ID_COLLECTION);
	CHECK_INT(az_restore_id_kind("/subscriptions/s1/resourceGroups/rg"),
		  AZ_RESTORE_ID_OTHER);
	CHECK_INT(
	    az_restore_id_kind("/subscriptions/s1/resourceGroups/rg/providers/"
			       "Microsoft.Compute/disks/vm1-os"),
	    AZ_RESTORE_ID_OTHER);
	/* A disk restore point under another provider is no restore source. */
	CHECK_INT(az_restore_id_kind(
		      "/subscriptions/s1/resourceGroups/rg/providers/"
		      "Other.Provider/restorePointCollections/c/restorePoints/"
		      "r/diskRestorePoints/d"),
		  AZ_RESTORE_ID_OTHER);
	CHECK_INT(az_restore_id_kind(RP "/diskRestorePoints"),
		  AZ_RESTORE_ID_OTHER);
	CHECK_INT(az_restore_id_kind("relative/id"), AZ_RESTORE_ID_OTHER);
	CHECK_INT(az_restore_id_kind(""), AZ_RESTORE_ID_OTHER);
	CHECK_INT(az_restore_id_kind(NULL), AZ_RESTORE_ID_OTHER);
}

static void test_disk_belongs_to_its_restore_point(void)
{
	CHECK(az_restore_id_within(RP "/diskRestorePoints/d1", RP));
	CHECK(az_restore_id_within(
	    "/subscriptions/S1/resourcegroups/RG-PROD/providers/"
	    "microsoft.compute/restorepointcollections/COLL1/restorepoints/"
	    "RP1/diskrestorepoints/d1",
	    RP "/"));
	CHECK(!az_restore_id_within(
	    "/subscriptions/s1/resourceGroups/rg-prod/providers/"
	    "Microsoft.Compute/restorePointCollections/coll1/restorePoints/"
	    "rp2/diskRestorePoints/d1",
	    RP));
	CHECK(!az_restore_id_within(RP, RP));
	CHECK(!az_restore_id_within(RP "/diskRestorePoints/d1",
				    RP "/diskRestorePoints/d1"));
}

static void test_id_parts(void)
{
	char *s =
	    az_restore_id_part(RP "/diskRestorePoints/d1", "SUBSCRIPTIONS");

	CHECK_STR(s, "s1");
	free(s);
	s = az_restore_id_part(RP, "resourcegroups");
	CHECK_STR(s, "rg-prod");
	free(s);
	s = az_restore_id_part(RP, "disks");
	CHECK_NULL(s);
	s = az_restore_id_part("not-an-id", "subscriptions");
	CHECK_NULL(s);
}

int main(void)
{
	test_disk_names_follow_azure_rules();
	test_id_kinds_in_any_casing();
	test_disk_belongs_to_its_restore_point();
	test_id_parts();
	return CHECK_DONE();
}
