/*
 * test_fs_tags.c -- the `tags` and `exclude_disks` file formats: what a
 * user may write, what is refused (and nothing half-applied), how the
 * hidden rpfs-exclude-disks tag stays out of `tags` and survives a tags
 * rewrite.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "names.h"
#include "tags.h"

static int parse(const char *text, struct az_tag **t, size_t *n)
{
	char why[200];

	return tags_parse(text, strlen(text), t, n, why, sizeof(why));
}

static void test_tags_round_trip(void)
{
	struct az_tag *t = NULL;
	size_t n = 0;
	char *text;

	CHECK_INT(parse("env=prod\nowner=ops team\n\nempty=\n", &t, &n), 0);
	CHECK_INT(n, 3);
	CHECK_STR(t[0].key, "env");
	CHECK_STR(t[0].value, "prod");
	CHECK_STR(t[1].value, "ops team");
	CHECK_STR(t[2].key, "empty");
	CHECK_STR(t[2].value, "");
	CHECK_STR(tags_find(t, n, "ENV"), "prod");
	CHECK_NULL(tags_find(t, n, "nope"));
	text = tags_format(t, n);
	CHECK_STR(text, "env=prod\nowner=ops team\nempty=\n");
	free(text);
	tags_free(t, n);

	/* value may hold '=', CRLF endings, no final newline */
	CHECK_INT(parse("k=a=b\r\nx=y", &t, &n), 0);
	CHECK_INT(n, 2);
	CHECK_STR(t[0].value, "a=b");
	CHECK_STR(t[1].value, "y");
	tags_free(t, n);

	/* empty text: no tags */
	CHECK_INT(parse("", &t, &n), 0);
	CHECK_INT(n, 0);
	tags_free(t, n);
}

static void test_tags_refused(void)
{
	struct az_tag *t = NULL;
	size_t n = 0;
	char why[200] = "";
	char big[700];

	CHECK_INT(tags_parse("noequals\n", 9, &t, &n, why, sizeof(why)),
		  -EINVAL);
	CHECK(strstr(why, "line 1") != NULL);
	CHECK_INT(parse("a=1\n=2\n", &t, &n), -EINVAL);
	CHECK_INT(parse("a=1\nA=2\n", &t, &n), -EINVAL);
	CHECK_INT(parse("a/b=1\n", &t, &n), -EINVAL);
	CHECK_INT(parse("a%b=1\n", &t, &n), -EINVAL);
	CHECK_INT(parse("rpfs-exclude-disks=x\n", &t, &n), -EINVAL);
	CHECK_INT(parse("RPFS-Exclude-Disks=x\n", &t, &n), -EINVAL);
	CHECK_INT(tags_parse("a=1\0b=2\n", 8, &t, &n, why, sizeof(why)),
		  -EINVAL);
	memset(big, 'v', sizeof(big));
	memcpy(big, "k=", 2);
	big[2 + 257] = '\0';
	CHECK_INT(parse(big, &t, &n), -EINVAL);
	big[2 + 256] = '\0';
	CHECK_INT(parse(big, &t, &n), 0);
	tags_free(t, n);
	memset(big, 'k', 513);
	strcpy(big + 513, "=v");
	CHECK_INT(parse(big, &t, &n), -EINVAL);
	{
		char many[51 * 8 + 1] = "";

		for (int i = 0; i < 51; i++)
			sprintf(many + strlen(many), "t%02d=x\n", i);
		CHECK_INT(parse(many, &t, &n), -EINVAL);
	}
}

static void test_hidden_tag(void)
{
	struct az_tag stored[3] = {
	    {.key = "env", .value = "prod"},
	    {.key = TAGS_EXCLUDE_KEY, .value = "vm1-data,vm1-sparse"},
	    {.key = "team", .value = "a"},
	};
	struct az_tag *user = NULL, *all = NULL;
	size_t nuser = 0, nall = 0;
	char *text = tags_format(stored, 3);

	/* hidden from the tags file */
	CHECK_STR(text, "env=prod\nteam=a\n");
	free(text);

	/* a tags rewrite keeps the exclude list */
	CHECK_INT(parse("new=1\n", &user, &nuser), 0);
	CHECK_INT(tags_merge(user, nuser,
			     tags_find(stored, 3, TAGS_EXCLUDE_KEY), &all,
			     &nall),
		  0);
	CHECK_INT(nall, 2);
	CHECK_STR(all[0].key, "new");
	CHECK_STR(all[1].key, TAGS_EXCLUDE_KEY);
	CHECK_STR(all[1].value, "vm1-data,vm1-sparse");
	tags_free(all, nall);
	tags_free(user, nuser);

	/* an exclude rewrite keeps the user's tags, drops the old value */
	CHECK_INT(tags_merge(stored, 3, NULL, &all, &nall), 0);
	CHECK_INT(nall, 2);
	CHECK_NULL(tags_find(all, nall, TAGS_EXCLUDE_KEY));
	tags_free(all, nall);
}

static void test_exclude(void)
{
	char **names = NULL, *value = NULL, *text, why[200];
	size_t n = 0;
	const char *in = "vm1-data\n  vm1-sparse \n\nVM1-DATA\n";

	CHECK_INT(
	    tags_parse_exclude(in, strlen(in), &names, &n, why, sizeof(why)),
	    0);
	CHECK_INT(n, 2); /* duplicate dropped */
	CHECK_STR(names[0], "vm1-data");
	CHECK_STR(names[1], "vm1-sparse");
	CHECK_INT(tags_exclude_value(names, n, &value, why, sizeof(why)), 0);
	CHECK_STR(value, "vm1-data,vm1-sparse");
	text = tags_format_exclude(names, n);
	CHECK_STR(text, "vm1-data\nvm1-sparse\n");
	free(text);
	names_list_free(names, n);

	CHECK_INT(tags_exclude_from_value(value, &names, &n), 0);
	CHECK_INT(n, 2);
	CHECK_STR(names[1], "vm1-sparse");
	names_list_free(names, n);
	free(value);

	CHECK_INT(tags_exclude_from_value(NULL, &names, &n), 0);
	CHECK_INT(n, 0);
	names_list_free(names, n);

	/* nothing to exclude: no tag at all */
	CHECK_INT(tags_exclude_value(NULL, 0, &value, why, sizeof(why)), 0);
	CHECK_NULL(value);

	CHECK_INT(
	    tags_parse_exclude("bad,name\n", 9, &names, &n, why, sizeof(why)),
	    -EINVAL);
	CHECK(strstr(why, "bad,name") != NULL);
	CHECK_INT(tags_parse_exclude("a b\n", 4, &names, &n, why, sizeof(why)),
		  -EINVAL);

	/* more than a tag value holds */
	{
		char *many[4];
		char buf[4][81];

		for (int i = 0; i < 4; i++) {
			memset(buf[i], 'a' + i, 80);
			buf[i][80] = '\0';
			many[i] = buf[i];
		}
		CHECK_INT(tags_exclude_value(many, 4, &value, why, sizeof(why)),
			  -EINVAL);
		CHECK_INT(tags_exclude_value(many, 3, &value, why, sizeof(why)),
			  0);
		free(value);
	}
}

int main(void)
{
	test_tags_round_trip();
	test_tags_refused();
	test_hidden_tag();
	test_exclude();
	return CHECK_DONE();
}
