/*
 * disk.h -- open disk files: access grants, the blob's real size, reads
 * with read-ahead, and the sparse map.  The FUSE operations (ops.c) call
 * only this for disk files; this module calls az.h for grants and blob.h
 * for the bytes.
 *
 * One struct disk per disk restore point that has open handles (or a
 * lingering grant), shared by every handle: BeginGetAccess once, the last
 * close schedules EndGetAccess after a linger, disk_mgr_free ends all.
 * Memory is bounded by the read-ahead window (see docs/design.md).
 * Every function is thread-safe; disk_read may run concurrently on one
 * handle.  Zero-initialise struct disk_config before filling it.
 */
#ifndef RPFS_DISK_H
#define RPFS_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "../net/az.h"
#include "../net/err.h"

struct disk_config {
	int sas_duration_s; /* BeginGetAccess durationInSeconds; default 3600 */
	int linger_ms; /* EndGetAccess this long after the last close; default
			  2000 */
	size_t chunk_size;    /* bytes per ranged GET; default 4 MiB */
	size_t readahead_max; /* largest read-ahead window per disk, bytes;
				 default 64 MiB; 0: no read-ahead */
	int max_parallel;     /* ranges in flight per disk; default 16 */
	bool parallel_fixed;  /* -o parallel given: always max_parallel, else
				 fewer while the server is near
				 (fs/readahead.h, ra_parallel_now) */
	long near_us;	      /* near: least wait (request to first byte)
				 under this; 0: never (main.c's default:
				 RA_NEAR_WAIT_US) */
	bool use_pagelist;    /* fetch page ranges for holes; default true */
	/* Added by the streaming module; zero means the default. */
	struct auth *auth;    /* tokens for Entra-ID disks (audience
				 AUTH_RESOURCE_DISK); NULL: such disks give
				 EACCES */
	size_t cache_max;     /* cache memory across all disks; default
				 readahead_max + 4 * chunk_size */
	long stall_timeout_s; /* a blob transfer below 1 KiB/s this long is
				 retried; default: the http.h stall timeout */
};

struct disk_mgr;
struct disk_handle;

struct disk_mgr *disk_mgr_new(struct az *az, const struct disk_config *cfg);
/* Ends every grant (EndGetAccess) and frees everything: unmount. */
void disk_mgr_free(struct disk_mgr *m);

/*
 * Open a disk restore point: grant (or share the existing grant), learn
 * the blob's length with HEAD, fetch the page map, and return a handle.
 * A disk that answers 401 Bearer on blob reads (Entra ID) is read with a
 * token from cfg->auth from then on.  Returns 0 or -errno (EAGAIN
 * when Azure refuses the grant because the disk is not yet usable, EBUSY
 * when too many grants are active on its family) with err filled.
 */
int disk_open(struct disk_mgr *m, const char *drp_id, struct disk_handle **h,
	      struct rp_err *err);
void disk_close(struct disk_handle *h);

/* Exact length of the blob in bytes (disk + 512-byte footer). */
long long disk_size(const struct disk_handle *h);
/* Length learned by an earlier open of drp_id, or -1: lets getattr show
 * the exact size after the first open. */
long long disk_known_size(struct disk_mgr *m, const char *drp_id);
/* Bytes of data (not holes) of an open disk by its page map (the whole
 * length when the map is unknown): st_blocks for fstat, so that cp sees
 * the file as sparse and uses SEEK_DATA. */
long long disk_allocated(const struct disk_handle *h);
/* Bytes of data (not holes) when the page map is known, else -1. */
long long disk_known_allocated(struct disk_mgr *m, const char *drp_id);

/* Read exactly min(size, disk_size - off) bytes, or fail with -errno. */
ssize_t disk_read(struct disk_handle *h, char *buf, size_t size, off_t off,
		  struct rp_err *err);

/* SEEK_DATA / SEEK_HOLE from the page map (whole blob is data when the
 * map is unknown).  Returns the offset or -ENXIO. */
off_t disk_seek(struct disk_handle *h, off_t off, int whence);

/* End the grant on drp_id now if no handle holds it (before deleting a
 * restore point).  Returns -EBUSY when the disk is still open. */
int disk_release_grant(struct disk_mgr *m, const char *drp_id,
		       struct rp_err *err);

#endif
