/*
 * test_net_az_parse.c -- every Microsoft example response in azure-spec
 * becomes the az structs fs/ shows the user (names, sources, states,
 * disks, sizes, replication progress, the SAS); what is not a resource
 * is refused with EIO; ids compare the way ARM compares them.
 *
 * The examples are read from $RPFS_SPEC_DIR, else RPFS_SPEC_DIR as
 * compiled in, else tests/unit/azure-examples: the official swagger
 * examples this test uses, copied into the repository (same relative
 * paths as in azure-spec) so a clone anywhere runs it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arm.h"
#include "az_parse.h"
#include "check.h"

#define CRP                                                                    \
	"compute/resource-manager/Microsoft.Compute/ComputeRP/stable/"         \
	"2025-04-01/examples/"
#define DRP                                                                    \
	"compute/resource-manager/Microsoft.Compute/DiskRP/stable/2025-01-02/" \
	"examples/diskRestorePointExamples/"
#define RPE CRP "restorePointExamples/"

static char spec_dir[4096];

static void find_spec_dir(void)
{
	const char *env = getenv("RPFS_SPEC_DIR");
	const char *marker = "/tests/unit/";
	const char *p;

	if (env && *env) {
		snprintf(spec_dir, sizeof(spec_dir), "%s", env);
		return;
	}
#ifdef RPFS_SPEC_DIR
	snprintf(spec_dir, sizeof(spec_dir), "%s", RPFS_SPEC_DIR);
	return;
#endif
	p = strstr(__FILE__, marker);
	if (p)
		snprintf(spec_dir, sizeof(spec_dir),
			 "%.*s/tests/unit/azure-examples", (int)(p - __FILE__),
			 __FILE__);
	else
		snprintf(spec_dir, sizeof(spec_dir),
			 "tests/unit/azure-examples");
}

/* responses[status].body of an example file (caller puts the root). */
static json_object *example(const char *rel, const char *status,
			    json_object **root)
{
	char path[8192];
	json_object *r, *b;

	snprintf(path, sizeof(path), "%s/%s", spec_dir, rel);
	*root = json_object_from_file(path);
	if (!*root) {
		fprintf(stderr, "cannot read example %s\n", path);
		check_failures++;
		return NULL;
	}
	if (!json_object_object_get_ex(*root, "responses", &r) ||
	    !json_object_object_get_ex(r, status, &r) ||
	    !json_object_object_get_ex(r, "body", &b)) {
		fprintf(stderr, "no body for %s in %s\n", status, rel);
		check_failures++;
		return NULL;
	}
	return b;
}

static const char *tag(const struct az_collection *c, const char *k)
{
	for (size_t i = 0; i < c->ntags; i++) {
		if (strcmp(c->tags[i].key, k) == 0)
			return c->tags[i].value;
	}
	return NULL;
}

static void test_collection_get(void)
{
	json_object *root,
	    *b = example(RPE "RestorePointCollection_Get.json", "200", &root);
	struct az_collection c = {0};

	CHECK_INT(az_parse_collection(b, &c, NULL), 0);
	CHECK_STR(c.name, "myRpc");
	CHECK_STR(c.resource_group, "myResourceGroup");
	CHECK_STR(c.location, "westus");
	CHECK_STR(c.source_location, "eastus");
	CHECK(c.source_id && strstr(c.source_id, "/restorePointCollections/"
						 "myRpc") != NULL);
	CHECK_STR(c.provisioning_state, "Succeeded");
	CHECK_INT(c.ntags, 1);
	CHECK_STR(tag(&c, "myTag1"), "tagValue1");
	/* Pretty JSON for collection.json, newline-terminated. */
	CHECK(c.json && c.json[strlen(c.json) - 1] == '\n');
	CHECK(c.json && strstr(c.json, "\n  \"name\": \"myRpc\"") != NULL);
	CHECK(c.json && strstr(c.json, "\\/") == NULL);
	az_collection_free(&c);
	az_collection_free(&c); /* idempotent on a zeroed struct */
	json_object_put(root);
}

static void test_collection_create_and_cross_region_copy(void)
{
	const char *files[] = {
	    RPE "RestorePointCollection_CreateOrUpdate.json",
	    RPE "RestorePointCollection_CreateOrUpdate_ForCrossRegionCopy.json",
	};
	const char *status[] = {"200", "201"};

	for (int f = 0; f < 2; f++) {
		for (int s = 0; s < 2; s++) {
			json_object *root,
			    *b = example(files[f], status[s], &root);
			struct az_collection c = {0};

			CHECK_INT(az_parse_collection(b, &c, NULL), 0);
			CHECK_STR(c.name, "myRpc");
			CHECK_STR(c.location, "norwayeast");
			CHECK_STR(c.source_location, "eastus");
			CHECK_STR(c.resource_group, "myResourceGroup");
			az_collection_free(&c);
			json_object_put(root);
		}
	}
	{
		json_object *root, *b = example(files[1], "201", &root);
		struct az_collection c = {0};

		CHECK_INT(az_parse_collection(b, &c, NULL), 0);
		CHECK(c.source_id &&
		      strstr(c.source_id, "restorePointCollections/"
					  "sourceRpcName") != NULL);
		az_collection_free(&c);
		json_object_put(root);
	}
}

static void test_collection_lists(void)
{
	const char *files[] = {
	    RPE "RestorePointCollection_ListByResourceGroup.json",
	    RPE "RestorePointCollection_ListBySubscription.json"};
	const char *rg2[] = {"myResourceGroup", "resourceGroup2"};

	for (int f = 0; f < 2; f++) {
		json_object *root, *v, *b = example(files[f], "200", &root);
		struct az_collection c[2] = {{0}};

		CHECK(json_object_object_get_ex(b, "value", &v));
		CHECK_INT(json_object_array_length(v), 2);
		for (int i = 0; i < 2; i++)
			CHECK_INT(az_parse_collection(
				      json_object_array_get_idx(v, (size_t)i),
				      &c[i], NULL),
				  0);
		CHECK_STR(c[0].name, "restorePointCollection1");
		CHECK_STR(c[1].name, "restorePointCollection2");
		CHECK_STR(c[1].provisioning_state, "Deleting");
		CHECK_STR(c[1].resource_group, rg2[f]);
		CHECK_STR(c[0].location, "westus");
		az_collection_free(&c[0]);
		az_collection_free(&c[1]);
		json_object_put(root);
	}
}

static void test_collection_update_examples(void)
{
	json_object *root, *b;
	struct az_collection c = {0};
	struct rp_err e;

	b = example(RPE "RestorePointCollection_Update_MaximumSet_Gen.json",
		    "200", &root);
	CHECK_INT(az_parse_collection(b, &c, NULL), 0);
	CHECK_STR(c.name, "myRpc");
	CHECK_INT(c.ntags, 0);
	CHECK_STR(c.provisioning_state, "Successful");
	az_collection_free(&c);
	json_object_put(root);
	/* The generated minimal answer has no id: not a usable resource. */
	b = example(RPE "RestorePointCollection_Update_MinimumSet_Gen.json",
		    "200", &root);
	rp_err_clear(&e);
	CHECK_INT(az_parse_collection(b, &c, &e), -EIO);
	CHECK(strstr(e.message, "id") != NULL);
	az_collection_free(&c);
	json_object_put(root);
}

static void test_collection_with_contained_restore_points(void)
{
	json_object *root, *b, *rps;
	struct az_restore_point rp = {0};

	b = example(RPE "RestorePointCollection_Get_WithContainedRestorePoints."
			"json",
		    "200", &root);
	CHECK(json_object_object_get_ex(b, "properties", &rps));
	CHECK(json_object_object_get_ex(rps, "restorePoints", &rps));
	CHECK_INT(az_parse_restore_point(json_object_array_get_idx(rps, 0), &rp,
					 NULL),
		  0);
	CHECK_STR(rp.name, "restorePointName");
	CHECK_STR(rp.provisioning_state, "Succeeded");
	CHECK_INT(rp.ndisks, 2);
	if (rp.ndisks == 2) {
		CHECK(rp.disks[0].is_os_disk);
		CHECK(!rp.disks[1].is_os_disk);
		CHECK_STR(rp.disks[1].name, "testingexcludedisk_DataDisk_1");
		CHECK_INT(rp.disks[0].size_bytes, -1);
		CHECK_INT(rp.disks[0].completion_percent, -1);
		CHECK_NULL(rp.disks[0].replication_state);
	}
	az_restore_point_free(&rp);
	json_object_put(root);
}

static void test_restore_point_create_and_copy(void)
{
	const char *files[] = {RPE "RestorePoint_Create.json",
			       RPE "RestorePoint_Copy_BetweenRegions.json"};
	const char *state[] = {"Succeeded", "Creating"};

	for (int f = 0; f < 2; f++) {
		json_object *root, *b = example(files[f], "201", &root);
		struct az_restore_point rp = {0};

		CHECK_INT(az_parse_restore_point(b, &rp, NULL), 0);
		CHECK_STR(rp.name, "rpName");
		CHECK_STR(rp.provisioning_state, state[f]);
		CHECK_INT(rp.ndisks, 2);
		if (rp.ndisks == 2) {
			CHECK_STR(rp.disks[0].name, "osDisk123");
			CHECK(rp.disks[0].is_os_disk);
			CHECK_STR(rp.disks[1].name, "dataDisk123");
			CHECK(strstr(rp.disks[0].drp_id,
				     "/diskRestorePoints/"
				     "osDisk123_22b4bdfe") != NULL);
			CHECK(rp.disks[0].source_disk_id != NULL);
		}
		if (f == 1)
			CHECK(rp.source_rp_id &&
			      strstr(rp.source_rp_id, "sourceRpName") != NULL);
		else
			CHECK_NULL(rp.source_rp_id);
		az_restore_point_free(&rp);
		json_object_put(root);
	}
}

static void test_restore_point_with_instance_view(void)
{
	json_object *root, *b = example(RPE "RestorePoint_Get_WithInstanceView."
					    "json",
					"200", &root);
	struct az_restore_point rp = {0};

	CHECK_INT(az_parse_restore_point(b, &rp, NULL), 0);
	CHECK_STR(rp.time_created, "2021-01-27T20:35:05.8401519+00:00");
	CHECK_INT(rp.ndisks, 2);
	if (rp.ndisks == 2) {
		CHECK_STR(rp.disks[0].name,
			  "testingexcludedisk_OsDisk_1_74cdaed"
			  "cea50483d9833c96adefa100f");
		CHECK_STR(rp.disks[0].replication_state, "Succeeded");
		CHECK_INT(rp.disks[0].completion_percent, 100);
		CHECK_NULL(rp.disks[0].access_state);
		CHECK_STR(rp.disks[1].replication_state, "Succeeded");
		CHECK_STR(rp.disks[1].access_state,
			  "AvailableWithInstantAccess");
		CHECK_INT(rp.disks[1].completion_percent, 100);
	}
	CHECK(rp.json && strstr(rp.json, "instanceView") != NULL);
	az_restore_point_free(&rp);
	json_object_put(root);

	/* Plain GET: the same disks, no instance view values. */
	b = example(RPE "RestorePoint_Get.json", "200", &root);
	CHECK_INT(az_parse_restore_point(b, &rp, NULL), 0);
	CHECK_INT(rp.ndisks, 2);
	if (rp.ndisks == 2)
		CHECK_INT(rp.disks[1].completion_percent, -1);
	az_restore_point_free(&rp);
	json_object_put(root);
}

static void test_instance_view_matches_disks_case_insensitively(void)
{
	const char *body =
	    "{\"id\":\"/subscriptions/s/resourceGroups/RG/providers/Microsoft."
	    "Compute/restorePointCollections/c/restorePoints/rp1\","
	    "\"properties\":{\"provisioningState\":\"Succeeded\","
	    "\"sourceMetadata\":{\"storageProfile\":{"
	    "\"osDisk\":{\"name\":\"vm1-os\",\"diskSizeGB\":1,"
	    "\"managedDisk\":{\"id\":\"/d/vm1-os\"},"
	    "\"diskRestorePoint\":{\"id\":\"/subscriptions/s/resourceGroups/"
	    "RG/providers/Microsoft.Compute/restorePointCollections/c/"
	    "restorePoints/rp1/diskRestorePoints/vm1-os_1\"}},"
	    "\"dataDisks\":[{\"name\":\"excluded\",\"managedDisk\":{\"id\":"
	    "\"/d/x\"}}]}},"
	    "\"instanceView\":{\"diskRestorePoints\":[{\"id\":\"/SUBSCRIPTIONS/"
	    "s/resourcegroups/rg/providers/microsoft.compute/"
	    "restorepointcollections/C/restorePoints/RP1/diskRestorePoints/"
	    "VM1-OS_1/\",\"replicationStatus\":{\"status\":{\"code\":"
	    "\"ReplicationState/inProgress\"},\"completionPercent\":42},"
	    "\"snapshotAccessState\":\"Pending\"},"
	    "{\"id\":\"/x/diskRestorePoints/only-in-view_2\"}]}}}";
	json_object *o = NULL;
	struct az_restore_point rp = {0};

	CHECK_INT(arm_json_parse(body, strlen(body), &o, NULL), 0);
	CHECK_INT(az_parse_restore_point(o, &rp, NULL), 0);
	CHECK_INT(rp.ndisks, 2);
	if (rp.ndisks == 2) {
		CHECK_STR(rp.disks[0].name, "vm1-os");
		CHECK_INT(rp.disks[0].size_bytes, 1LL << 30);
		CHECK_STR(rp.disks[0].replication_state, "inProgress");
		CHECK_INT(rp.disks[0].completion_percent, 42);
		CHECK_STR(rp.disks[0].access_state, "Pending");
		CHECK_STR(rp.disks[1].name, "only-in-view_2");
	}
	az_restore_point_free(&rp);
	json_object_put(o);
}

static void test_disk_restore_point_examples(void)
{
	const char *files[] = {
	    DRP "DiskRestorePoint_Get.json",
	    DRP "DiskRestorePoint_Get_WhenSourceResourceIsFromDifferentRegion."
		"json"};

	for (int f = 0; f < 2; f++) {
		json_object *root, *b = example(files[f], "200", &root);
		struct az_disk d;

		CHECK_INT(az_parse_drp(b, &d, NULL), 0);
		CHECK_STR(d.name, "TestDisk45ceb03433006d1baee0_b70cd924-3362-"
				  "4a80-93c2-9415eaa12745");
		CHECK(d.source_disk_id &&
		      strstr(d.source_disk_id, "/disks/TestDisk45ceb03433006d1"
					       "baee0") != NULL);
		if (f == 1) {
			CHECK_STR(d.replication_state, "Succeeded");
			CHECK_INT(d.completion_percent, 100);
		} else {
			CHECK_INT(d.completion_percent, -1);
		}
		az_disk_free(&d);
		json_object_put(root);
	}
	{
		json_object *root, *v,
		    *b = example(DRP
				 "DiskRestorePoint_ListByVmRestorePoint.json",
				 "200", &root);
		struct az_disk d;

		CHECK(json_object_object_get_ex(b, "value", &v));
		CHECK_INT(
		    az_parse_drp(json_object_array_get_idx(v, 0), &d, NULL), 0);
		CHECK(strncmp(d.name, "TestDisk45ceb", 13) == 0);
		az_disk_free(&d);
		json_object_put(root);
	}
}

static void test_begin_get_access_sas_from_all_three_places(void)
{
	json_object *root, *b = example(DRP "DiskRestorePoint_BeginGetAccess."
					    "json",
					"200", &root);
	struct secret s = {0};
	json_object *st = NULL, *loc = NULL;
	struct rp_err e;

	/* 1: immediate 200 body */
	CHECK_INT(az_parse_access_sas(NULL, NULL, b, &s, NULL), 0);
	CHECK(strncmp(secret_value(&s),
		      "https://md-gpvmcxzlzxgd.partition."
		      "blob.storage.azure.net/",
		      56) == 0);
	CHECK(strstr(secret_value(&s), "sig=XXX") != NULL);
	secret_clear(&s);
	/* 2: final GET of Location */
	CHECK_INT(arm_json_parse("{\"accessSAS\":\"https://l/b?sig=L\"}", 33,
				 &loc, NULL),
		  0);
	/* 3: operation status properties.output */
	CHECK_INT(
	    arm_json_parse("{\"status\":\"Succeeded\",\"properties\":{"
			   "\"output\":{\"accessSAS\":\"https://s/b?sig=S"
			   "\"}}}",
			   strlen("{\"status\":\"Succeeded\",\"properties\":"
				  "{\"output\":{\"accessSAS\":\"https://"
				  "s/b?sig=S\"}}}"),
			   &st, NULL),
	    0);
	CHECK_INT(az_parse_access_sas(loc, st, NULL, &s, NULL), 0);
	CHECK_STR(secret_value(&s), "https://l/b?sig=L");
	CHECK_INT(az_parse_access_sas(NULL, st, NULL, &s, NULL), 0);
	CHECK_STR(secret_value(&s), "https://s/b?sig=S");
	/* None of them: EIO with a message that does not hold a SAS. */
	CHECK_INT(az_parse_access_sas(NULL, NULL, NULL, &s, &e), -EIO);
	CHECK(strstr(e.message, "accessSAS") != NULL);
	secret_clear(&s);
	json_object_put(st);
	json_object_put(loc);
	json_object_put(root);
}

static void test_resource_group_and_vm(void)
{
	json_object *root, *b;
	struct az_group g = {0};
	struct az_vm vm = {0};

	b = example("resources/resource-manager/Microsoft.Resources/resources/"
		    "stable/2024-11-01/examples/CreateResourceGroup.json",
		    "200", &root);
	CHECK_INT(az_parse_group(b, &g, NULL), 0);
	CHECK_STR(g.name, "my-resource-group");
	CHECK_STR(g.location, "eastus");
	az_groups_free(NULL, 0);
	az_group_free(&g);
	json_object_put(root);

	b = example(CRP "virtualMachineExamples/VirtualMachine_Create_"
			"WithDataDisksFromSourceResource.json",
		    "200", &root);
	CHECK_INT(az_parse_vm(b, &vm, NULL), 0);
	CHECK_STR(vm.name, "myVM");
	CHECK_STR(vm.location, "westus");
	CHECK_INT(vm.ndisks, 0); /* a request-shaped example: no disk ids */
	az_vm_free(&vm);
	json_object_put(root);
}

static void test_wrong_types_and_missing_fields_are_eio(void)
{
	const char *bad[] = {
	    "{\"name\":\"x\"}",
	    "{\"id\":7}",
	    "{\"id\":\"relative\"}",
	    "{\"id\":\"/subscriptions/s/resourceGroups/r/p/x\",\"tags\":[]}",
	    "{\"id\":\"/subscriptions/s/resourceGroups/r/p/x\",\"properties\":"
	    "\"nope\"}",
	    "{\"id\":\"/subscriptions/s/resourceGroups/r/p/x\",\"properties\":{"
	    "\"source\":{\"id\":5}}}",
	    "{\"id\":\"/subscriptions/s/noGroup/x\"}",
	    NULL,
	};
	const char *bad_rp[] = {
	    "{\"id\":\"/a/rp\",\"properties\":{\"sourceMetadata\":{"
	    "\"storageProfile\":{\"dataDisks\":{}}}}}",
	    "{\"id\":\"/a/rp\",\"properties\":{\"sourceMetadata\":{"
	    "\"storageProfile\":{\"osDisk\":{\"diskSizeGB\":\"big\","
	    "\"diskRestorePoint\":{\"id\":\"/a/d\"}}}}}}",
	    "{\"id\":\"/a/rp\",\"properties\":{\"instanceView\":{"
	    "\"diskRestorePoints\":[{\"replicationStatus\":{}}]}}}",
	    "{\"id\":\"/a/rp\",\"properties\":{\"instanceView\":{"
	    "\"diskRestorePoints\":[{\"id\":\"/a/d\",\"replicationStatus\":{"
	    "\"completionPercent\":\"x\"}}]}}}",
	    "{\"id\":\"/a/rp\",\"properties\":{\"provisioningState\":[]}}",
	    NULL,
	};

	for (int i = 0; bad[i]; i++) {
		json_object *o = json_tokener_parse(bad[i]);
		struct az_collection c = {0};
		struct rp_err e;

		rp_err_clear(&e);
		CHECK(o != NULL);
		CHECK_INT(az_parse_collection(o, &c, &e), -EIO);
		CHECK(e.message[0] != '\0');
		az_collection_free(&c);
		json_object_put(o);
	}
	for (int i = 0; bad_rp[i]; i++) {
		json_object *o = json_tokener_parse(bad_rp[i]);
		struct az_restore_point rp = {0};

		CHECK(o != NULL);
		CHECK_INT(az_parse_restore_point(o, &rp, NULL), -EIO);
		az_restore_point_free(&rp);
		json_object_put(o);
	}
	{
		struct az_collection c = {0};
		json_object *arr = json_tokener_parse("[1]");

		CHECK_INT(az_parse_collection(arr, &c, NULL), -EIO);
		CHECK_INT(az_parse_collection(NULL, &c, NULL), -EIO);
		json_object_put(arr);
	}
}

static void test_id_helpers(void)
{
	char *s;

	CHECK(az_id_equal("/subscriptions/S/resourceGroups/RG/x",
			  "/SUBSCRIPTIONS/s/resourcegroups/rg/X/"));
	CHECK(!az_id_equal("/subscriptions/S/resourceGroups/RG/x",
			   "/subscriptions/S/resourceGroups/RG/xy"));
	CHECK(!az_id_equal(NULL, "/a"));
	CHECK(az_id_equal("/a//", "/A"));
	CHECK_STR(az_id_name("/subscriptions/s/resourceGroups/rg/providers/"
			     "Microsoft.Compute/restorePointCollections/coll1"),
		  "coll1");
	CHECK_STR(az_id_name("plain"), "plain");
	CHECK_STR(az_id_name(NULL), "");
	s = az_id_resource_group("/subscriptions/s/RESOURCEGROUPS/Rg-Prod/"
				 "providers/x");
	CHECK_STR(s, "Rg-Prod");
	free(s);
	CHECK_NULL(az_id_resource_group("/subscriptions/s/providers/x"));
	s = az_id_prefix("/subscriptions/s/resourceGroups/rg/providers/M/"
			 "restorepointcollections/c1/restorePoints/rp/"
			 "diskRestorePoints/d",
			 "restorePointCollections");
	CHECK_STR(s, "/subscriptions/s/resourceGroups/rg/providers/M/"
		     "restorepointcollections/c1");
	free(s);
}

int main(void)
{
	find_spec_dir();
	test_collection_get();
	test_collection_create_and_cross_region_copy();
	test_collection_lists();
	test_collection_update_examples();
	test_collection_with_contained_restore_points();
	test_restore_point_create_and_copy();
	test_restore_point_with_instance_view();
	test_instance_view_matches_disks_case_insensitively();
	test_disk_restore_point_examples();
	test_begin_get_access_sas_from_all_three_places();
	test_resource_group_and_vm();
	test_wrong_types_and_missing_fields_are_eio();
	test_id_helpers();
	return CHECK_DONE();
}
