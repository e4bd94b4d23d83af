/*
 * test_fs_tree.c -- what a path of the mount stands for: levels, fixed
 * files, clash names, disk files, paths that can not exist, and the same
 * with --resource-group (no group level).
 */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "tree.h"

static struct tree_path p;

static int parse(const char *path)
{
	return tree_path_parse(path, NULL, &p);
}

static void test_levels(void)
{
	CHECK_INT(parse("/"), 0);
	CHECK_INT(p.kind, TREE_ROOT);

	CHECK_INT(parse("/rg-prod"), 0);
	CHECK_INT(p.kind, TREE_GROUP);
	CHECK_STR(p.group, "rg-prod");

	CHECK_INT(parse("/rg-prod/coll1"), 0);
	CHECK_INT(p.kind, TREE_COLL);
	CHECK_STR(p.coll, "coll1");

	CHECK_INT(parse("/rg-prod/coll1/tags"), 0);
	CHECK_INT(p.kind, TREE_COLL_FILE);
	CHECK_INT(p.file, TREE_F_TAGS);

	CHECK_INT(parse("/rg-prod/coll1/collection.json"), 0);
	CHECK_INT(p.file, TREE_F_COLL_JSON);

	CHECK_INT(parse("/rg-prod/coll1/rp1"), 0);
	CHECK_INT(p.kind, TREE_RP);
	CHECK_STR(p.rp, "rp1");

	CHECK_INT(parse("/rg-prod/coll1/rp1/status"), 0);
	CHECK_INT(p.kind, TREE_RP_FILE);
	CHECK_INT(p.file, TREE_F_RP_STATUS);

	CHECK_INT(parse("/rg-prod/coll1/rp1/progress"), 0);
	CHECK_INT(p.file, TREE_F_PROGRESS);

	CHECK_INT(parse("/rg-prod/coll1/rp1/restorepoint.json"), 0);
	CHECK_INT(p.file, TREE_F_RP_JSON);

	CHECK_INT(parse("/rg-prod/coll1/rp1/vm1-os.vhd"), 0);
	CHECK_INT(p.kind, TREE_DISK);
	CHECK_STR(p.disk, "vm1-os.vhd");
	CHECK_STR(p.group, "rg-prod");
	CHECK_STR(p.coll, "coll1");
	CHECK_STR(p.rp, "rp1");
}

static void test_clash_and_oddities(void)
{
	/* a restore point named like a fixed file */
	CHECK_INT(parse("/rg/c/@status"), 0);
	CHECK_INT(p.kind, TREE_RP);
	CHECK_STR(p.rp, "status");
	CHECK_INT(parse("/rg/c/@status/progress"), 0);
	CHECK_INT(p.kind, TREE_RP_FILE);
	CHECK_STR(p.rp, "status");
	CHECK_INT(parse("/rg/c/@rp1"), -ENOENT);

	/* "progress" is no fixed file of a collection: a restore point */
	CHECK_INT(parse("/rg/c/progress"), 0);
	CHECK_INT(p.kind, TREE_RP);

	/* inside a restore point: only its files and disks */
	CHECK_INT(parse("/rg/c/rp/notes.txt"), 0);
	CHECK_INT(p.kind, TREE_OTHER);
	CHECK_INT(parse("/rg/c/rp/tags"), 0);
	CHECK_INT(p.kind, TREE_OTHER);
	CHECK_INT(parse("/rg/c/rp/.vhd"), 0);
	CHECK_INT(p.kind, TREE_OTHER);
	CHECK_INT(parse("/rg/c/rp/d.vhd/x"), 0);
	CHECK_INT(p.kind, TREE_OTHER);
	CHECK_INT(parse("/rg/c/tags/x"), 0);
	CHECK_INT(p.kind, TREE_OTHER);

	/* slashes are forgiving */
	CHECK_INT(parse("//rg//c/"), 0);
	CHECK_INT(p.kind, TREE_COLL);
	CHECK_STR(p.coll, "c");

	{
		char longp[400] = "/rg/";

		memset(longp + 4, 'x', 300);
		longp[304] = '\0';
		CHECK_INT(parse(longp), -ENAMETOOLONG);
	}
}

static void test_fixed_group(void)
{
	CHECK_INT(tree_path_parse("/", "rg-prod", &p), 0);
	CHECK_INT(p.kind, TREE_ROOT);
	CHECK_STR(p.group, "rg-prod");

	CHECK_INT(tree_path_parse("/coll1", "rg-prod", &p), 0);
	CHECK_INT(p.kind, TREE_COLL);
	CHECK_STR(p.group, "rg-prod");
	CHECK_STR(p.coll, "coll1");

	CHECK_INT(tree_path_parse("/coll1/rp1/vm1-os.vhd", "rg-prod", &p), 0);
	CHECK_INT(p.kind, TREE_DISK);
	CHECK_STR(p.rp, "rp1");
}

static void test_file_names(void)
{
	CHECK_STR(tree_file_name(TREE_F_EXCLUDE), "exclude_disks");
	CHECK_STR(tree_file_name(TREE_F_RP_JSON), "restorepoint.json");
	CHECK_NULL(tree_file_name(TREE_F_NONE));
}

int main(void)
{
	test_levels();
	test_clash_and_oddities();
	test_fixed_group();
	test_file_names();
	return CHECK_DONE();
}
