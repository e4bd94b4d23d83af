/*
 * main.c -- rpfs: mount Azure VM restore points as a filesystem.
 *
 *   rpfs [options] MOUNTPOINT        (rpfs --help lists the options)
 *
 * Parses the command line with fuse_opt (every option both as --name=V /
 * --name V and as -o name=V, so fstab works), mounts, daemonises unless
 * -f, and only then builds the Azure client, the disk manager and the
 * cache: they may start threads, which must not be lost in the fork.
 * The FUSE loop is multithreaded.  On exit (fusermount3 -u or a signal)
 * the disk manager ends every read grant before the process leaves.
 *
 * Ownership: main owns the options, the context handed to the operations
 * (read-only after start) and every long-lived object; all are freed in
 * reverse order of creation.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <fuse.h>
#include <fuse_lowlevel.h>

#include "../net/auth.h"
#include "../net/az.h"
#include "../net/http.h"
#include "../net/log.h"
#include "cache.h"
#include "disk.h"
#include "ops.h"
#include "readahead.h"

/* Retry budget (and longest attempt) of every request after the unmount:
 * the EndGetAccess calls, and blob transfers still running. */
#define MAIN_UNMOUNT_RETRY_MS 10000

struct main_opts {
	char *subscription;
	char *resource_group;
	char *endpoint;
	char *cafile;
	char *token_file;
	char *auth;
	char *cache_timeout;
	char *sas_duration;
	char *linger_ms;
	char *chunk_size;
	char *readahead;
	char *parallel;
	char *near_us;
	char *pagelist;
	char *stall_timeout;
	char *cache_max;
	char *log_level;
	char *compute_api;
	char *disk_api;
	int ro;
	int allow_delete;
	int direct_io; /* -1 until an option says: the default is on */
	int allow_other;
	int show_help;
	int show_version;
};

enum {
	MAIN_KEY_RO,
	MAIN_KEY_ALLOW_OTHER,
	MAIN_KEY_HELP,
	MAIN_KEY_VERSION,
};

/*
 * One string option in its three spellings.  fuse_opt applies every
 * matching template in order, and "--name %s" also matches "--name=V"
 * (with "=V" as value), so the "=" template must come after it to win.
 */
#define MAIN_STR(name, field)                                                  \
	{"--" name " %s", offsetof(struct main_opts, field), 0},               \
	    {"--" name "=%s", offsetof(struct main_opts, field), 0},           \
	{                                                                      \
		name "=%s", offsetof(struct main_opts, field), 0               \
	}

static const struct fuse_opt main_spec[] = {
    MAIN_STR("subscription", subscription),
    MAIN_STR("resource-group", resource_group),
    MAIN_STR("resource_group", resource_group),
    MAIN_STR("endpoint", endpoint),
    MAIN_STR("cafile", cafile),
    MAIN_STR("token-file", token_file),
    MAIN_STR("token_file", token_file),
    MAIN_STR("auth", auth),
    MAIN_STR("cache_timeout", cache_timeout),
    MAIN_STR("sas_duration", sas_duration),
    MAIN_STR("linger_ms", linger_ms),
    MAIN_STR("chunk_size", chunk_size),
    MAIN_STR("readahead", readahead),
    MAIN_STR("parallel", parallel),
    MAIN_STR("near_us", near_us),
    MAIN_STR("pagelist", pagelist),
    MAIN_STR("stall_timeout", stall_timeout),
    MAIN_STR("cache_max", cache_max),
    MAIN_STR("log_level", log_level),
    MAIN_STR("log-level", log_level),
    MAIN_STR("compute_api", compute_api),
    MAIN_STR("disk_api", disk_api),
    {"allow_delete", offsetof(struct main_opts, allow_delete), 1},
    {"--allow-delete", offsetof(struct main_opts, allow_delete), 1},
    {"direct_io", offsetof(struct main_opts, direct_io), 1},
    {"--direct-io", offsetof(struct main_opts, direct_io), 1},
    {"page_cache", offsetof(struct main_opts, direct_io), 0},
    {"--page-cache", offsetof(struct main_opts, direct_io), 0},
    FUSE_OPT_KEY("ro", MAIN_KEY_RO),
    FUSE_OPT_KEY("allow_other", MAIN_KEY_ALLOW_OTHER),
    FUSE_OPT_KEY("-h", MAIN_KEY_HELP),
    FUSE_OPT_KEY("--help", MAIN_KEY_HELP),
    FUSE_OPT_KEY("-V", MAIN_KEY_VERSION),
    FUSE_OPT_KEY("--version", MAIN_KEY_VERSION),
    FUSE_OPT_END,
};

static int main_opt_proc(void *data, const char *arg, int key,
			 struct fuse_args *outargs)
{
	struct main_opts *o = data;

	switch (key) {
	case MAIN_KEY_RO:
		o->ro = 1;
		return 1; /* keep: the kernel mount is read-only too */
	case MAIN_KEY_ALLOW_OTHER:
		o->allow_other = 1;
		return 1;
	case MAIN_KEY_HELP:
		o->show_help = 1;
		return 0;
	case MAIN_KEY_VERSION:
		o->show_version = 1;
		return 0;
	default:
		return 1;
	}
}

static void main_usage(const char *prog)
{
	printf(
	    "usage: %s [options] MOUNTPOINT\n"
	    "\n"
	    "Mounts Azure VM restore points: groups, collections and restore\n"
	    "points are directories, disk restore points are .vhd files.\n"
	    "Each option is --name=V (or --name V) and -o name=V.\n"
	    "\n"
	    "Azure:\n"
	    "    --subscription=ID      subscription (env "
	    "AZURE_SUBSCRIPTION_ID)\n"
	    "    --resource-group=RG    mount one resource group only\n"
	    "    --endpoint=URL         Resource Manager endpoint\n"
	    "                           (default "
	    "https://management.azure.com)\n"
	    "    --cafile=PATH          extra CA bundle (TLS is always "
	    "verified)\n"
	    "    --token-file=PATH      bearer token file (re-read on change)\n"
	    "    --auth=KIND            "
	    "auto|token-file|env|managed-identity|cli\n"
	    "    -o compute_api=V       ComputeRP api-version (2025-04-01)\n"
	    "    -o disk_api=V          DiskRP api-version (2025-01-02)\n"
	    "Behaviour:\n"
	    "    -o ro                  read-only: changes fail with EROFS\n"
	    "    -o allow_delete        rmdir may delete Azure resources\n"
	    "    -o cache_timeout=S     keep listings/attributes S seconds "
	    "(10)\n"
	    "    -o log_level=L         error|warn|info|debug (warn)\n"
	    "Disk reads:\n"
	    "    -o sas_duration=S      read grant lifetime in seconds (3600)\n"
	    "    -o linger_ms=MS        keep a grant after the last close "
	    "(2000)\n"
	    "    -o chunk_size=BYTES    bytes per ranged GET (4194304)\n"
	    "    -o readahead=BYTES     largest read-ahead window (67108864)\n"
	    "    -o parallel=N          ranges in flight per disk (16; 4 while "
	    "the\n"
	    "                           server answers within near_us)\n"
	    "    -o near_us=US          a server whose first byte comes "
	    "within US\n"
	    "                           microseconds is near (1000; 0: "
	    "never)\n"
	    "    -o pagelist=0|1        use the page map for holes (1)\n"
	    "    -o direct_io           disk reads bypass the page cache "
	    "(default)\n"
	    "    -o page_cache          disk reads through the page cache "
	    "(mmap works)\n"
	    "    -o cache_max=BYTES     chunk cache for all disks (2 * "
	    "readahead)\n"
	    "    -o stall_timeout=S     retry a transfer slower than 1 KiB/s "
	    "for S\n"
	    "                           seconds (30)\n"
	    "Other:\n"
	    "    -h, --help             this help\n"
	    "    -V, --version          versions\n"
	    "\n",
	    prog);
}

/* Parse a number in [min, max] (a whole one when integer); returns 0 or
 * -1 after a message. */
static int main_number(const char *name, const char *s, double min, double max,
		       bool integer, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || isnan(v) || !(v >= min && v <= max) ||
	    (integer && v != (double)(long long)v)) {
		fprintf(stderr, "rpfs: bad %s '%s' (want %s %g..%g)\n", name, s,
			integer ? "a whole number" : "a number", min, max);
		return -1;
	}
	*out = v;
	return 0;
}

struct main_tuning {
	double cache_timeout;
	struct disk_config disk;
	int log_level;
	int auth_kind;
};

static int main_tuning(const struct main_opts *o, bool debug,
		       struct main_tuning *t)
{
	double v;

	t->cache_timeout = 10;
	t->disk = (struct disk_config){
	    .sas_duration_s = 3600,
	    .linger_ms = 2000,
	    .chunk_size = 4u << 20,
	    .readahead_max = 64u << 20,
	    .max_parallel = 16,
	    .near_us = RA_NEAR_WAIT_US,
	    .use_pagelist = true,
	};
	if (o->cache_timeout && main_number("cache_timeout", o->cache_timeout,
					    0, 86400, false, &t->cache_timeout))
		return -1;
#define MAIN_NUM(field, name, lo, hi, dst, type)                               \
	do {                                                                   \
		if (o->field) {                                                \
			if (main_number(name, o->field, lo, hi, true, &v))     \
				return -1;                                     \
			dst = (type)v;                                         \
		}                                                              \
	} while (0)
	MAIN_NUM(sas_duration, "sas_duration", 300, 86400,
		 t->disk.sas_duration_s, int);
	MAIN_NUM(linger_ms, "linger_ms", 0, 3600000, t->disk.linger_ms, int);
	MAIN_NUM(chunk_size, "chunk_size", 4096, 256.0 * 1024 * 1024,
		 t->disk.chunk_size, size_t);
	MAIN_NUM(readahead, "readahead", 0, 4096.0 * 1024 * 1024,
		 t->disk.readahead_max, size_t);
	MAIN_NUM(parallel, "parallel", 1, 64, t->disk.max_parallel, int);
	t->disk.parallel_fixed = o->parallel != NULL;
	MAIN_NUM(near_us, "near_us", 0, 1000000, t->disk.near_us, long);
	MAIN_NUM(pagelist, "pagelist", 0, 1, t->disk.use_pagelist, bool);
	MAIN_NUM(stall_timeout, "stall_timeout", 1, 3600,
		 t->disk.stall_timeout_s, long);
	MAIN_NUM(cache_max, "cache_max", 0, 64.0 * 1024 * 1024 * 1024,
		 t->disk.cache_max, size_t);
#undef MAIN_NUM
	t->log_level = debug ? LOG_LVL_DEBUG : LOG_LVL_WARN;
	if (o->log_level) {
		t->log_level = log_level_parse(o->log_level);
		if (t->log_level < 0) {
			fprintf(stderr,
				"rpfs: bad log_level '%s' (want "
				"error|warn|info|debug)\n",
				o->log_level);
			return -1;
		}
	}
	t->auth_kind = AUTH_AUTO;
	if (o->auth) {
		t->auth_kind = auth_kind_parse(o->auth);
		if (t->auth_kind < 0) {
			fprintf(stderr,
				"rpfs: bad auth '%s' (want auto|token-file|"
				"env|managed-identity|cli)\n",
				o->auth);
			return -1;
		}
	}
	return 0;
}

static void main_free_opts(struct main_opts *o)
{
	char **fields[] = {
	    &o->subscription,  &o->resource_group, &o->endpoint,
	    &o->cafile,	       &o->token_file,	   &o->auth,
	    &o->cache_timeout, &o->sas_duration,   &o->linger_ms,
	    &o->chunk_size,    &o->readahead,	   &o->parallel,
	    &o->near_us,       &o->pagelist,	   &o->log_level,
	    &o->compute_api,   &o->disk_api,	   &o->stall_timeout,
	    &o->cache_max,
	};

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		free(*fields[i]);
		*fields[i] = NULL;
	}
}

/* Everything that talks to Azure; built after daemonising. */
struct main_world {
	struct auth *auth;
	struct az *az;
	struct disk_mgr *disks;
	struct cache *cache;
	bool http;
};

static int main_build(const struct main_opts *o, const struct main_tuning *t,
		      struct main_world *w, struct ops_ctx *ctx)
{
	struct http_config hcfg = {.cafile = o->cafile,
				   .stall_timeout_s = t->disk.stall_timeout_s};
	struct disk_config dcfg = t->disk;
	struct auth_config acfg = {.kind = t->auth_kind,
				   .token_file = o->token_file};
	struct az_config zcfg = {
	    .endpoint =
		o->endpoint ? o->endpoint : "https://management.azure.com",
	    .subscription = o->subscription,
	    .compute_api = o->compute_api,
	    .disk_api = o->disk_api,
	};
	struct cache_config ccfg = {.fixed_rg = o->resource_group,
				    .timeout_s = t->cache_timeout};
	int rc = http_global_init(&hcfg);

	if (rc) {
		log_error("cannot set up HTTP: %s", strerror(-rc));
		return -1;
	}
	w->http = true;
	w->auth = auth_new(&acfg);
	if (!w->auth) {
		log_error("cannot set up authentication");
		return -1;
	}
	w->az = az_new(&zcfg, w->auth);
	if (!w->az) {
		log_error("cannot set up the Azure client");
		return -1;
	}
	dcfg.auth = w->auth; /* disks that need an Entra ID token */
	w->disks = disk_mgr_new(w->az, &dcfg);
	w->cache = cache_new(w->az, &ccfg);
	if (!w->disks || !w->cache) {
		log_error("out of memory");
		return -1;
	}
	ctx->az = w->az;
	ctx->disks = w->disks;
	ctx->cache = w->cache;
	return 0;
}

static void main_teardown(struct main_world *w)
{
	/* Handles left open by a lazy unmount go first: they hold disks. */
	ops_handles_free_all();
	/* Ends every read grant (EndGetAccess) before the client goes.  The
	 * mount is gone: a few seconds of retries, not a minute, before a
	 * grant is left to expire by itself (docs/reliability.md). */
	http_set_retry_budget(MAIN_UNMOUNT_RETRY_MS);
	if (w->disks)
		disk_mgr_free(w->disks);
	cache_free(w->cache);
	if (w->az)
		az_free(w->az);
	if (w->auth)
		auth_free(w->auth);
	if (w->http)
		http_global_cleanup();
}

static int main_run(struct fuse *fuse, const struct fuse_cmdline_opts *cmd)
{
	struct fuse_session *se = fuse_get_session(fuse);
	struct fuse_loop_config lcfg = {
	    .clone_fd = cmd->clone_fd,
	    /* UINT_MAX means "unset" in the command line parser */
	    .max_idle_threads =
		cmd->max_idle_threads == UINT_MAX ? 10 : cmd->max_idle_threads,
	};
	int rc;

	if (fuse_set_signal_handlers(se) != 0)
		return 1;
	if (cmd->singlethread)
		rc = fuse_loop(fuse);
	else
		rc = fuse_loop_mt(fuse, &lcfg);
	fuse_remove_signal_handlers(se);
	return rc ? 1 : 0;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts cmd = {0};
	struct main_opts o = {.direct_io = -1};
	struct main_tuning t;
	struct main_world w = {0};
	struct ops_ctx ctx = {0};
	struct fuse *fuse = NULL;
	int rc = 1;

	if (fuse_opt_parse(&args, &o, main_spec, main_opt_proc) == -1)
		goto out;
	if (o.show_help) {
		main_usage(argv[0]);
		printf("FUSE options:\n");
		fuse_cmdline_help();
		fuse_lib_help(&args);
		rc = 0;
		goto out;
	}
	if (o.show_version) {
		printf("rpfs version %s\n", RPFS_VERSION);
		printf("FUSE library version %s\n", fuse_pkgversion());
		fuse_lowlevel_version();
		rc = 0;
		goto out;
	}
	if (!o.subscription && getenv("AZURE_SUBSCRIPTION_ID") &&
	    *getenv("AZURE_SUBSCRIPTION_ID"))
		o.subscription = strdup(getenv("AZURE_SUBSCRIPTION_ID"));
	if (!o.subscription || !*o.subscription) {
		fprintf(stderr, "rpfs: no subscription: give --subscription "
				"or set AZURE_SUBSCRIPTION_ID (see --help)\n");
		goto out;
	}
	if (o.endpoint && strncasecmp(o.endpoint, "https://", 8) != 0) {
		fprintf(stderr,
			"rpfs: endpoint '%s' is not https:// (the token must "
			"never travel in the clear)\n",
			o.endpoint);
		goto out;
	}
	if (fuse_parse_cmdline(&args, &cmd) != 0)
		goto out;
	if (main_tuning(&o, cmd.debug, &t))
		goto out;
	if (!cmd.mountpoint) {
		fprintf(stderr, "rpfs: no mountpoint (see --help)\n");
		goto out;
	}
	if (fuse_opt_add_arg(&args, "-ofsname=rpfs") ||
	    (o.allow_other && fuse_opt_add_arg(&args, "-odefault_permissions")))
		goto out;
	log_init(t.log_level, false);

	ctx.fixed_rg = o.resource_group;
	ctx.subscription = o.subscription;
	ctx.ro = o.ro;
	ctx.allow_delete = o.allow_delete;
	ctx.direct_io = o.direct_io != 0;
	ctx.cache_timeout_s = t.cache_timeout;
	ctx.uid = getuid();
	ctx.gid = getgid();
	ctx.mounted_at = time(NULL);

	fuse = fuse_new(&args, ops_operations(), sizeof(struct fuse_operations),
			&ctx);
	if (!fuse)
		goto out;
	if (fuse_mount(fuse, cmd.mountpoint) != 0)
		goto out_destroy;
	if (fuse_daemonize(cmd.foreground) != 0)
		goto out_unmount;
	if (!cmd.foreground)
		log_init(t.log_level, true);
	if (main_build(&o, &t, &w, &ctx) == 0) {
		log_info("mounted subscription %s%s%s on %s%s%s",
			 o.subscription, o.resource_group ? " group " : "",
			 o.resource_group ? o.resource_group : "",
			 cmd.mountpoint, o.ro ? " (read-only)" : "",
			 o.allow_delete ? " (deletes allowed)" : "");
		rc = main_run(fuse, &cmd);
	}
out_unmount:
	fuse_unmount(fuse);
	main_teardown(&w);
out_destroy:
	fuse_destroy(fuse);
out:
	free(cmd.mountpoint);
	fuse_opt_free_args(&args);
	main_free_opts(&o);
	return rc;
}
