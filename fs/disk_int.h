/*
 * disk_int.h -- what the files of the disk module share: the structs of
 * an open disk and of the manager, and the access functions.
 *
 * fs/disk.c         open, close, linger, the manager thread, reads
 * fs/disk_access.c  grants and their renewal, tokens for Entra-ID disks,
 *                   fix-ups after 403/401, the page map fetch
 * Locks are described in fs/disk.c.
 */
#ifndef RPFS_DISK_INT_H
#define RPFS_DISK_INT_H

#include <pthread.h>
#include <stdbool.h>

#include "../net/blob.h"
#include "disk.h"
#include "readahead.h"

#define GiB (1024LL * 1024 * 1024)
#define MAP_WINDOW GiB	    /* x-ms-range of one page-list request */
#define MAP_BUDGET_MS 20000 /* at open; past it the rest counts as data */
#define READ_FIXES_MAX 8    /* auth fix-ups in one operation, all kinds */

enum disk_state { D_GRANTING, D_READY, D_REVOKING };

struct disk {
	struct disk *next;
	struct disk_mgr *m;
	char *drp_id;
	enum disk_state state;
	int nopen;
	bool renewing;
	long long linger_at; /* monotonic ms; 0: none */
	long long renew_at;  /* monotonic ms; 0: none */
	long long len;
	struct blob_source *src;
	struct ra_cache *cache;
	pthread_mutex_t grant_mu;
};

struct disk_handle {
	struct disk *d;
	struct ra_streams streams; /* guarded by the cache's lock */
};

struct disk_known {
	struct disk_known *next;
	char *drp_id;
	long long size, allocated;
};

struct disk_mgr {
	struct az *az;
	struct auth *auth;
	struct disk_config cfg;
	struct ra_config ra;
	struct blob_engine *eng;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct disk *disks;
	struct disk_known *known;
	pthread_t th;
	bool stop, th_started;
	bool unreachable; /* at unmount, an EndGetAccess got no answer */
};

struct disk_fixes {
	int n, regrants, tokens;
};

/* The name part of an id, for log lines. */
const char *disk_short_id(const char *id);
/* BeginGetAccess and install the SAS; plans the renewal.  d->grant_mu
 * held.  Maps refusals to EBUSY / EAGAIN and logs them. */
int disk_grant(struct disk *d, struct rp_err *err);
/* React to BLOB_EXPIRED / BLOB_NEED_TOKEN: 0 to retry, or -errno. */
int disk_fix_auth(struct disk *d, const struct blob_result *res,
		  struct disk_fixes *f, struct rp_err *err);
/* Renew the SAS (and token) ahead of expiry; manager thread. */
void disk_renew(struct disk *d);
/* Fetch the page map into d->cache; failures leave data. */
void disk_fetch_map(struct disk *d);

#endif
