/*
 * rpfs-restore.c -- create managed disks from the disk restore points of
 * a mounted restore point (the seed how-to's "Create a disk using disk
 * restore point" and "Restore a VM using VM restore point").
 *
 *   rpfs-restore -g RG [options] PATH...     (rpfs-restore --help)
 *
 * A PATH is a disk file of an rpfs mount (.../<rp>/<disk>.vhd) or a
 * restore point directory (every disk of it: a whole VM).  The tool knows
 * nothing of the tree's layout: it reads the ARM id from the extended
 * attribute user.azure.id that rpfs puts on every file and directory,
 * checks what kind of id it is, and lists *.vhd in a directory.  New disks
 * are named <disk><suffix> (default suffix "-restored") or --name.
 *
 * Flow: collect jobs from the paths (a bad path is reported and skipped,
 * like cp does), refuse the whole run on a usage error (two disks that
 * would get one name, --name with several disks), then restore all disks
 * at once, one thread per disk up to RESTORE_MAX_THREADS (each restore is
 * a long-running operation that mostly waits), and print the new ids in
 * the order of the paths.  Exit status 0 only when every disk was
 * restored.  Credentials come from net/auth.h exactly as for rpfs; no
 * secret is ever taken from the command line.
 *
 * Ownership: main owns the job array; each worker thread writes only its
 * own jobs' result fields, read by main after joining.  The next-job index
 * is the one shared variable, guarded by next_lock.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "auth.h"
#include "az_restore.h"
#include "http.h"
#include "log.h"

#define RESTORE_PROG "rpfs-restore"
#define RESTORE_MAX_THREADS 8
#define RESTORE_XATTR_MAX 4096

struct restore_opts {
	const char *resource_group;
	const char *name;
	const char *suffix;
	const char *location;
	const char *subscription;
	const char *endpoint;
	const char *cafile;
	const char *token_file;
	const char *auth;
	const char *sku;
	const char *compute_api;
	const char *disk_api;
	int verbose;
};

struct restore_job {
	char *path;	    /* the disk file, as the user can find it */
	char *drp_id;	    /* from user.azure.id */
	char *location;	    /* from user.azure.location, or NULL */
	char *name;	    /* the new disk's name */
	char *subscription; /* of the new disk */
	/* Results, written by one worker. */
	char *disk_id;
	struct rp_err err;
	int rc;
};

struct restore_run {
	struct az_restore *az;
	const struct restore_opts *o;
	struct restore_job *jobs;
	size_t njobs;
	size_t next; /* guarded by next_lock */
	pthread_mutex_t next_lock;
};

static void restore_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: " RESTORE_PROG " -g RG [options] PATH...\n"
	    "\n"
	    "Creates managed disks from the disk restore points of an rpfs\n"
	    "mount.  PATH is a disk file (.../<restore-point>/<disk>.vhd) or\n"
	    "a restore point directory (all its disks: a whole VM).  Prints\n"
	    "each new disk's id on stdout, one per line.\n"
	    "\n"
	    "Target:\n"
	    "    -g, --resource-group=RG  group of the new disks (required)\n"
	    "    -n, --name=NAME          name of the new disk (one disk "
	    "only)\n"
	    "    -s, --suffix=SUFFIX      new names are <disk>SUFFIX\n"
	    "                             (default \"-restored\")\n"
	    "    -l, --location=REGION    region of the new disks (default:\n"
	    "                             the restore point's region)\n"
	    "        --sku=SKU            e.g. Premium_LRS, StandardSSD_LRS\n"
	    "                             (default: Azure's)\n"
	    "Azure:\n"
	    "    --subscription=ID        subscription of the new disks (env\n"
	    "                             AZURE_SUBSCRIPTION_ID, else the\n"
	    "                             restore point's)\n"
	    "    --endpoint=URL           Resource Manager endpoint\n"
	    "                             (default "
	    "https://management.azure.com)\n"
	    "    --cafile=PATH            extra CA bundle (TLS is always "
	    "verified)\n"
	    "    --token-file=PATH        bearer token file\n"
	    "    --auth=KIND              auto|token-file|env|managed-identity|"
	    "cli\n"
	    "    --compute-api=V          ComputeRP api-version (2025-04-01)\n"
	    "    --disk-api=V             DiskRP api-version (2025-01-02)\n"
	    "Other:\n"
	    "    -v, --verbose            log requests (twice: debug)\n"
	    "    -h, --help               this help\n"
	    "    -V, --version            version\n"
	    "\n"
	    "Exit status: 0 when every disk was restored, 1 otherwise.\n");
}

static void restore_job_free(struct restore_job *j)
{
	free(j->path);
	free(j->drp_id);
	free(j->location);
	free(j->name);
	free(j->subscription);
	free(j->disk_id);
}

/* An extended attribute as a string: 0, -ENODATA when absent (or the
 * filesystem has none), or -errno. */
static int restore_xattr(const char *path, const char *attr, char **out)
{
	char buf[RESTORE_XATTR_MAX];
	ssize_t n = getxattr(path, attr, buf, sizeof(buf) - 1);

	*out = NULL;
	if (n < 0)
		return errno == ENOTSUP ? -ENODATA : -errno;
	buf[n] = '\0';
	/* Tolerate a trailing newline, as shell tools write them. */
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	if (n == 0)
		return -ENODATA;
	*out = strdup(buf);
	return *out ? 0 : -ENOMEM;
}

static void restore_path_error(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "rpfs-restore: PATH: message" on stderr. */
static void restore_path_error(const char *path, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, RESTORE_PROG ": %s: ", path);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* The id of path, with a clear message when it is not on an rpfs mount. */
static int restore_path_id(const char *path, char **id)
{
	int rc = restore_xattr(path, "user.azure.id", id);

	if (rc == -ENODATA)
		restore_path_error(path,
				   "not a disk file or restore point directory "
				   "of an rpfs mount (it has no %s attribute)",
				   "user.azure.id");
	else if (rc)
		restore_path_error(path, "%s", strerror(-rc));
	return rc;
}

static bool restore_ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Add one job for the disk file path whose id is drp_id (taken over). */
static int restore_add(struct restore_job **jobs, size_t *n, const char *path,
		       char *drp_id, const char *dir_location)
{
	struct restore_job *v = realloc(*jobs, (*n + 1) * sizeof(**jobs));
	struct restore_job *j;

	if (!v) {
		free(drp_id);
		return -ENOMEM;
	}
	*jobs = v;
	j = &v[*n];
	memset(j, 0, sizeof(*j));
	j->drp_id = drp_id;
	j->path = strdup(path);
	if (restore_xattr(path, "user.azure.location", &j->location) &&
	    dir_location)
		j->location = strdup(dir_location);
	(*n)++;
	return j->path ? 0 : -ENOMEM;
}

static int restore_vhd_filter(const struct dirent *d)
{
	return d->d_name[0] != '.' && restore_ends_with(d->d_name, ".vhd");
}

/* Every disk file of a restore point directory. */
static int restore_collect_dir(const char *dir, const char *rp_id,
			       struct restore_job **jobs, size_t *n)
{
	struct dirent **ents = NULL;
	char *loc = NULL;
	int count, rc = 0, found = 0;

	count = scandir(dir, &ents, restore_vhd_filter, alphasort);
	if (count < 0) {
		restore_path_error(dir, "%s", strerror(errno));
		return -1;
	}
	if (restore_xattr(dir, "user.azure.location", &loc) == -ENOMEM)
		rc = -1;
	/* A bad entry is reported and the others still restored. */
	for (int i = 0; i < count; i++) {
		char *path = NULL, *id = NULL;

		if (asprintf(&path, "%s/%s", dir, ents[i]->d_name) < 0) {
			path = NULL;
			rc = -1;
		} else if (restore_path_id(path, &id)) {
			rc = -1;
		} else if (!az_restore_id_within(id, rp_id)) {
			restore_path_error(path,
					   "its id is not a disk restore point "
					   "of this restore point: %s",
					   id);
			free(id);
			rc = -1;
		} else if (restore_add(jobs, n, path, id, loc)) {
			rc = -1;
		} else {
			found++;
		}
		free(path);
		free(ents[i]);
	}
	free(ents);
	free(loc);
	if (count == 0) {
		restore_path_error(dir, "%s", "the restore point has no disks");
		rc = -1;
	}
	return rc;
}

/* Jobs for one PATH argument; -1 after a message on stderr. */
static int restore_collect(const char *path, struct restore_job **jobs,
			   size_t *n)
{
	struct stat st;
	char *id = NULL;
	int rc = -1;

	if (stat(path, &st) != 0) {
		restore_path_error(path, "%s", strerror(errno));
		return -1;
	}
	if (restore_path_id(path, &id))
		return -1;
	switch (az_restore_id_kind(id)) {
	case AZ_RESTORE_ID_DISK_RP:
		if (S_ISREG(st.st_mode)) {
			rc = restore_add(jobs, n, path, id, NULL) ? -1 : 0;
			return rc;
		}
		break;
	case AZ_RESTORE_ID_RESTORE_POINT:
		if (S_ISDIR(st.st_mode))
			rc = restore_collect_dir(path, id, jobs, n);
		free(id);
		return rc;
	case AZ_RESTORE_ID_COLLECTION:
		restore_path_error(path, "%s",
				   "is a restore point collection; give one of "
				   "its restore point directories, or disk "
				   "files");
		free(id);
		return -1;
	default:
		break;
	}
	restore_path_error(path,
			   "not a disk file or restore point directory (its id "
			   "is %s)",
			   id);
	free(id);
	return -1;
}

/* The base name of a disk file without ".vhd". */
static char *restore_disk_name(const char *path)
{
	const char *b = strrchr(path, '/');
	size_t len;

	b = b ? b + 1 : path;
	len = strlen(b);
	if (restore_ends_with(b, ".vhd"))
		len -= 4;
	return strndup(b, len);
}

/* Names and subscriptions of the jobs; -1 after a message on a usage
 * error, which stops the whole run before anything is created. */
static int restore_plan(const struct restore_opts *o, struct restore_job *jobs,
			size_t n)
{
	const char *env = getenv("AZURE_SUBSCRIPTION_ID");
	const char *suffix = o->suffix ? o->suffix : "-restored";

	if (o->name && n > 1) {
		fprintf(stderr,
			RESTORE_PROG ": --name names one disk, but %zu disks "
				     "were given; use --suffix instead\n",
			n);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		struct restore_job *j = &jobs[i];
		char *base;

		if (o->name) {
			j->name = strdup(o->name);
		} else {
			base = restore_disk_name(j->path);
			if (!base ||
			    asprintf(&j->name, "%s%s", base, suffix) < 0)
				j->name = NULL;
			free(base);
		}
		if (o->subscription)
			j->subscription = strdup(o->subscription);
		else if (env && *env)
			j->subscription = strdup(env);
		else
			j->subscription =
			    az_restore_id_part(j->drp_id, "subscriptions");
		if (!j->name || !j->subscription) {
			fprintf(stderr, RESTORE_PROG ": out of memory\n");
			return -1;
		}
		if (!az_restore_disk_name_valid(j->name)) {
			fprintf(stderr,
				RESTORE_PROG ": %s: '%s' is not a valid disk "
					     "name (1-80 letters, digits, '_', "
					     "'.', '-'; starting with a letter "
					     "or digit, ending with a letter, "
					     "digit or '_'); use --name or "
					     "--suffix\n",
				j->path, j->name);
			return -1;
		}
		for (size_t k = 0; k < i; k++) {
			if (strcasecmp(jobs[k].name, j->name) == 0 &&
			    strcasecmp(jobs[k].subscription, j->subscription) ==
				0) {
				fprintf(stderr,
					RESTORE_PROG
					": %s and %s would both "
					"become disk '%s'; restore "
					"them separately with "
					"different --suffix\n",
					jobs[k].path, j->path, j->name);
				return -1;
			}
		}
	}
	return 0;
}

static void *restore_worker(void *arg)
{
	struct restore_run *run = arg;

	for (;;) {
		struct restore_job *j;
		struct az_restore_disk_req req;

		pthread_mutex_lock(&run->next_lock);
		j = run->next < run->njobs ? &run->jobs[run->next++] : NULL;
		pthread_mutex_unlock(&run->next_lock);
		if (!j)
			return NULL;
		req = (struct az_restore_disk_req){
		    .subscription = j->subscription,
		    .resource_group = run->o->resource_group,
		    .name = j->name,
		    .drp_id = j->drp_id,
		    .location =
			run->o->location ? run->o->location : j->location,
		    .sku = run->o->sku,
		};
		log_info("restoring %s into %s/%s", j->drp_id,
			 req.resource_group, j->name);
		j->rc = az_restore_disk(run->az, &req, &j->disk_id, &j->err);
	}
}

/* Restore every job; returns the number that failed. */
static size_t restore_run_all(struct az_restore *az,
			      const struct restore_opts *o,
			      struct restore_job *jobs, size_t n)
{
	struct restore_run run = {.az = az, .o = o, .jobs = jobs, .njobs = n};
	pthread_t tids[RESTORE_MAX_THREADS];
	size_t nthreads = n < RESTORE_MAX_THREADS ? n : RESTORE_MAX_THREADS;
	size_t started = 0, failed = 0;

	pthread_mutex_init(&run.next_lock, NULL);
	for (size_t i = 0; i < nthreads; i++) {
		if (pthread_create(&tids[i], NULL, restore_worker, &run) != 0)
			break;
		started++;
	}
	if (started == 0) /* no thread: do the work here */
		restore_worker(&run);
	for (size_t i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	pthread_mutex_destroy(&run.next_lock);

	for (size_t i = 0; i < n; i++) {
		struct restore_job *j = &jobs[i];

		if (j->rc == 0) {
			printf("%s\n", j->disk_id);
			continue;
		}
		failed++;
		fprintf(stderr,
			RESTORE_PROG ": %s: cannot restore to disk '%s'",
			j->path, j->name);
		if (j->err.code[0])
			fprintf(stderr, ": %s: %s\n", j->err.code,
				j->err.message[0] ? j->err.message
						  : strerror(-j->rc));
		else
			fprintf(stderr, ": %s\n", strerror(-j->rc));
	}
	fflush(stdout);
	return failed;
}

enum {
	OPT_SUBSCRIPTION = 256,
	OPT_ENDPOINT,
	OPT_CAFILE,
	OPT_TOKEN_FILE,
	OPT_AUTH,
	OPT_SKU,
	OPT_COMPUTE_API,
	OPT_DISK_API,
};

/* 0: go on; 1: done (help, version); -1: usage error (message given). */
static int restore_parse(int argc, char **argv, struct restore_opts *o)
{
	static const struct option longopts[] = {
	    {"resource-group", required_argument, NULL, 'g'},
	    {"name", required_argument, NULL, 'n'},
	    {"suffix", required_argument, NULL, 's'},
	    {"location", required_argument, NULL, 'l'},
	    {"sku", required_argument, NULL, OPT_SKU},
	    {"subscription", required_argument, NULL, OPT_SUBSCRIPTION},
	    {"endpoint", required_argument, NULL, OPT_ENDPOINT},
	    {"cafile", required_argument, NULL, OPT_CAFILE},
	    {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
	    {"auth", required_argument, NULL, OPT_AUTH},
	    {"compute-api", required_argument, NULL, OPT_COMPUTE_API},
	    {"disk-api", required_argument, NULL, OPT_DISK_API},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "g:n:s:l:vhV", longopts, NULL)) !=
	       -1) {
		switch (c) {
		case 'g':
			o->resource_group = optarg;
			break;
		case 'n':
			o->name = optarg;
			break;
		case 's':
			o->suffix = optarg;
			break;
		case 'l':
			o->location = optarg;
			break;
		case OPT_SKU:
			o->sku = optarg;
			break;
		case OPT_SUBSCRIPTION:
			o->subscription = optarg;
			break;
		case OPT_ENDPOINT:
			o->endpoint = optarg;
			break;
		case OPT_CAFILE:
			o->cafile = optarg;
			break;
		case OPT_TOKEN_FILE:
			o->token_file = optarg;
			break;
		case OPT_AUTH:
			o->auth = optarg;
			break;
		case OPT_COMPUTE_API:
			o->compute_api = optarg;
			break;
		case OPT_DISK_API:
			o->disk_api = optarg;
			break;
		case 'v':
			o->verbose++;
			break;
		case 'h':
			restore_usage(stdout);
			return 1;
		case 'V':
			printf(RESTORE_PROG " version %s\n", RPFS_VERSION);
			return 1;
		default:
			fprintf(stderr,
				"Try '" RESTORE_PROG " --help' for more "
				"information.\n");
			return -1;
		}
	}
	return 0;
}

/* Option checks that need no network; -1 after a message. */
static int restore_check(const struct restore_opts *o, int npaths,
			 int *auth_kind)
{
	const char *empty = NULL;

	if (!o->resource_group)
		empty = "--resource-group is required";
	else if (npaths == 0)
		empty = "no PATH given";
	else if (o->name && o->suffix)
		empty = "--name and --suffix exclude each other";
	if (empty) {
		fprintf(stderr, RESTORE_PROG ": %s (see --help)\n", empty);
		return -1;
	}
	if (!*o->resource_group || (o->location && !*o->location) ||
	    (o->sku && !*o->sku) || (o->subscription && !*o->subscription)) {
		fprintf(stderr, RESTORE_PROG ": an option has an empty value "
					     "(see --help)\n");
		return -1;
	}
	*auth_kind = AUTH_AUTO;
	if (o->auth) {
		*auth_kind = auth_kind_parse(o->auth);
		if (*auth_kind < 0) {
			fprintf(stderr,
				RESTORE_PROG ": bad auth '%s' (want auto|"
					     "token-file|env|managed-identity|"
					     "cli)\n",
				o->auth);
			return -1;
		}
	}
	if (*auth_kind == AUTH_TOKEN_FILE && !o->token_file) {
		fprintf(stderr, RESTORE_PROG
			": --auth=token-file needs --token-file\n");
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct restore_opts o = {0};
	struct restore_job *jobs = NULL;
	struct az_restore *az = NULL;
	struct auth *auth = NULL;
	size_t njobs = 0, failed = 0;
	int auth_kind, rc, status = 1;
	bool bad_path = false;
	struct http_config hcfg = {0};
	struct auth_config acfg = {0};
	struct az_restore_config zcfg = {0};

	rc = restore_parse(argc, argv, &o);
	if (rc)
		return rc > 0 ? 0 : 1;
	if (restore_check(&o, argc - optind, &auth_kind))
		return 1;
	log_init(o.verbose > 1	 ? LOG_LVL_DEBUG
		 : o.verbose > 0 ? LOG_LVL_INFO
				 : LOG_LVL_WARN,
		 false);

	for (int i = optind; i < argc; i++) {
		if (restore_collect(argv[i], &jobs, &njobs))
			bad_path = true;
	}
	if (njobs == 0 || restore_plan(&o, jobs, njobs))
		goto out;

	hcfg.cafile = o.cafile;
	acfg.kind = auth_kind;
	acfg.token_file = o.token_file;
	zcfg.endpoint = o.endpoint;
	zcfg.compute_api = o.compute_api;
	zcfg.disk_api = o.disk_api;
	rc = http_global_init(&hcfg);
	if (rc) {
		fprintf(stderr, RESTORE_PROG ": cannot set up HTTP: %s\n",
			strerror(-rc));
		goto out;
	}
	auth = auth_new(&acfg);
	az = auth ? az_restore_new(&zcfg, auth) : NULL;
	if (!az) {
		fprintf(stderr,
			RESTORE_PROG ": cannot set up the Azure client\n");
	} else {
		failed = restore_run_all(az, &o, jobs, njobs);
		status = failed || bad_path ? 1 : 0;
	}
	az_restore_free(az);
	auth_free(auth);
	http_global_cleanup();
out:
	for (size_t i = 0; i < njobs; i++)
		restore_job_free(&jobs[i]);
	free(jobs);
	return status;
}
