/*
 * disk.c -- open disk files: one shared access grant per disk restore
 * point, the blob's real length, reads through the read-ahead cache, the
 * sparse map, SAS renewal and the linger before EndGetAccess.
 *
 * Life of a struct disk: the first disk_open creates it (GRANTING),
 * calls BeginGetAccess, HEADs the SAS for the length, fetches the page
 * map, and makes it READY; later opens share it.  The last close starts
 * the linger; a reopen within it reuses the grant; when it runs out the
 * manager thread marks the disk REVOKING, cancels what is in flight,
 * calls EndGetAccess and frees it.  disk_release_grant and disk_mgr_free
 * do the same at once.  The manager thread also renews each SAS well
 * before its `se` expiry, so reads never wait for it; a read that still
 * meets a 403 re-grants (once) itself and retries.
 *
 * Locks: m->mu guards the disk list, each disk's state, open count,
 * linger and renewal deadlines, and the table of known sizes; m->cv
 * announces state changes and wakes the manager thread.  d->grant_mu
 * serialises changes of a disk's SAS and token (BeginGetAccess, token
 * fetch) so a burst of 403s costs one re-grant: whoever holds it compares
 * the source generation it failed with against the current one.  The
 * cache has its own lock (readahead.c).  Order: m->mu is never held across
 * a network call; d->grant_mu is held across BeginGetAccess only.
 *
 * This file never sees a URL: the SAS goes from az_grant_access straight
 * into a blob_source as a struct secret.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "../net/clock.h"
#include "../net/log.h"
#include "disk_int.h"

static struct disk *find_disk(struct disk_mgr *m, const char *drp_id)
{
	for (struct disk *d = m->disks; d; d = d->next)
		if (az_id_equal(d->drp_id, drp_id))
			return d;
	return NULL;
}

static struct disk_known *find_known(struct disk_mgr *m, const char *drp_id)
{
	for (struct disk_known *k = m->known; k; k = k->next)
		if (az_id_equal(k->drp_id, drp_id))
			return k;
	return NULL;
}

/* Remember size (and allocation when the map is complete). m->mu held. */
static void remember(struct disk_mgr *m, struct disk *d)
{
	struct disk_known *k = find_known(m, d->drp_id);

	if (!k) {
		k = calloc(1, sizeof(*k));
		if (!k)
			return;
		k->drp_id = strdup(d->drp_id);
		if (!k->drp_id) {
			free(k);
			return;
		}
		k->allocated = -1;
		k->next = m->known;
		m->known = k;
	}
	k->size = d->len;
	if (d->cache && ra_map_complete(d->cache))
		k->allocated = ra_map_allocated(d->cache);
}

/* ---- open / close ---- */

static void disk_free(struct disk *d)
{
	if (!d)
		return;
	ra_cache_free(d->cache);
	blob_source_unref(d->src);
	pthread_mutex_destroy(&d->grant_mu);
	free(d->drp_id);
	free(d);
}

/* Grant, HEAD, cache, map.  On failure the grant (if any) is ended. */
static int disk_setup(struct disk *d, struct rp_err *err)
{
	struct disk_mgr *m = d->m;
	struct blob_result res;
	struct disk_fixes f = {0};
	int rc;

	d->src = blob_source_new();
	if (!d->src)
		return -ENOMEM;
	pthread_mutex_lock(&d->grant_mu);
	rc = disk_grant(d, err);
	pthread_mutex_unlock(&d->grant_mu);
	if (rc)
		return rc;
	for (;;) {
		rc = blob_head(m->eng, d->src, &d->len, &res);
		if (!rc)
			break;
		rc = disk_fix_auth(d, &res, &f, err);
		if (rc)
			break;
	}
	if (!rc && d->len < 512) {
		rp_err_set(err, 0, "BadBlob",
			   "blob of %lld bytes has no footer", d->len);
		rc = -EIO;
	}
	if (!rc) {
		d->cache = ra_cache_new(&m->ra, m->eng, d->len);
		if (!d->cache)
			rc = -ENOMEM;
	}
	if (rc) {
		struct rp_err e2;

		log_warn("disk %s: cannot read the granted blob: %s (%s %s)",
			 disk_short_id(d->drp_id), strerror(-rc),
			 err ? err->code : "", err ? err->message : "");
		if (az_revoke_access(m->az, d->drp_id, &e2))
			log_warn("disk %s: EndGetAccess failed: %s",
				 disk_short_id(d->drp_id), e2.message);
		return rc;
	}
	if (m->cfg.use_pagelist)
		disk_fetch_map(d);
	else
		ra_map_known(d->cache, 0);
	log_info("disk %s: open, %lld bytes", disk_short_id(d->drp_id), d->len);
	return 0;
}

int disk_open(struct disk_mgr *m, const char *drp_id, struct disk_handle **h,
	      struct rp_err *err)
{
	struct disk_handle *nh = calloc(1, sizeof(*nh));
	struct disk *d;
	int rc;

	*h = NULL;
	if (!nh)
		return -ENOMEM;
	pthread_mutex_lock(&m->mu);
	for (;;) {
		d = find_disk(m, drp_id);
		if (!d || d->state == D_READY)
			break;
		pthread_cond_wait(&m->cv, &m->mu); /* granting or revoking */
	}
	if (d) {
		d->nopen++;
		d->linger_at = 0;
		pthread_mutex_unlock(&m->mu);
		nh->d = d;
		*h = nh;
		return 0;
	}
	d = calloc(1, sizeof(*d));
	if (!d || !(d->drp_id = strdup(drp_id))) {
		pthread_mutex_unlock(&m->mu);
		free(d);
		free(nh);
		return -ENOMEM;
	}
	d->m = m;
	d->state = D_GRANTING;
	pthread_mutex_init(&d->grant_mu, NULL);
	d->next = m->disks;
	m->disks = d;
	pthread_mutex_unlock(&m->mu);

	rc = disk_setup(d, err);

	pthread_mutex_lock(&m->mu);
	if (rc) {
		struct disk **pp = &m->disks;

		while (*pp != d)
			pp = &(*pp)->next;
		*pp = d->next;
	} else {
		d->state = D_READY;
		d->nopen = 1;
		remember(m, d);
	}
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	if (rc) {
		disk_free(d);
		free(nh);
		return rc;
	}
	nh->d = d;
	*h = nh;
	return 0;
}

void disk_close(struct disk_handle *h)
{
	struct disk_mgr *m;

	if (!h)
		return;
	m = h->d->m;
	pthread_mutex_lock(&m->mu);
	if (--h->d->nopen == 0) {
		h->d->linger_at = rp_mono_ms() + m->cfg.linger_ms;
		pthread_cond_broadcast(&m->cv);
	}
	pthread_mutex_unlock(&m->mu);
	free(h);
}

/* End a disk that is unlinked from m->disks (state REVOKING). */
static void disk_teardown(struct disk_mgr *m, struct disk *d)
{
	struct rp_err err;
	bool stopping, skip;
	int rc;

	pthread_mutex_lock(&m->mu);
	remember(m, d);
	stopping = m->stop;
	skip = m->unreachable; /* only ever set while stopping */
	pthread_mutex_unlock(&m->mu);
	ra_cache_free(d->cache);
	d->cache = NULL;
	if (skip) {
		log_warn("disk %s: read grant not ended (Azure unreachable at "
			 "unmount); it expires by itself after sas_duration",
			 disk_short_id(d->drp_id));
		return;
	}
	rp_err_clear(&err);
	rc = az_revoke_access(m->az, d->drp_id, &err);
	if (rc)
		log_warn("disk %s: EndGetAccess failed: %s (%s: %s)",
			 disk_short_id(d->drp_id), strerror(-rc), err.code,
			 err.message);
	else
		log_info("disk %s: read grant ended", disk_short_id(d->drp_id));
	/* At unmount, one EndGetAccess that got no answer at all has spent
	 * the whole retry budget: the others would each spend it again. */
	if (rc && stopping && err.http_status == 0) {
		pthread_mutex_lock(&m->mu);
		m->unreachable = true;
		pthread_mutex_unlock(&m->mu);
	}
}

/* Take d out of service: m->mu held on entry and exit, dropped inside. */
static void revoke_locked(struct disk_mgr *m, struct disk *d)
{
	struct disk **pp = &m->disks;

	d->state = D_REVOKING;
	pthread_mutex_unlock(&m->mu);
	disk_teardown(m, d);
	pthread_mutex_lock(&m->mu);
	while (*pp != d)
		pp = &(*pp)->next;
	*pp = d->next;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	disk_free(d);
	pthread_mutex_lock(&m->mu);
}

/* The manager thread: lingers and renewals. */
static void *mgr_main(void *arg)
{
	struct disk_mgr *m = arg;

	pthread_mutex_lock(&m->mu);
	while (!m->stop) {
		long long now = rp_mono_ms(), next = now + 60000;
		struct disk *d;
		struct timespec ts;

		for (d = m->disks; d; d = d->next) {
			if (d->state != D_READY || d->renewing)
				continue;
			if (d->nopen == 0 && d->linger_at &&
			    d->linger_at <= now)
				break;
			if (d->renew_at && d->renew_at <= now)
				break;
			if (d->nopen == 0 && d->linger_at &&
			    d->linger_at < next)
				next = d->linger_at;
			if (d->renew_at && d->renew_at < next)
				next = d->renew_at;
		}
		if (d && d->nopen == 0 && d->linger_at && d->linger_at <= now) {
			revoke_locked(m, d);
			continue;
		}
		if (d) {
			d->renew_at = 0;
			d->renewing = true;
			pthread_mutex_unlock(&m->mu);
			disk_renew(d);
			pthread_mutex_lock(&m->mu);
			d->renewing = false;
			pthread_cond_broadcast(&m->cv);
			continue;
		}
		ts = rp_deadline_ts(next);
		pthread_cond_timedwait(&m->cv, &m->mu, &ts);
	}
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

/* ---- the manager ---- */

struct disk_mgr *disk_mgr_new(struct az *az, const struct disk_config *cfg)
{
	struct disk_mgr *m = calloc(1, sizeof(*m));
	struct blob_engine_config ec = {0};
	pthread_condattr_t ca;
	long ncpu;

	if (!m)
		return NULL;
	m->az = az;
	m->cfg = *cfg;
	m->auth = cfg->auth;
	if (m->cfg.sas_duration_s <= 0)
		m->cfg.sas_duration_s = 3600;
	if (m->cfg.linger_ms < 0)
		m->cfg.linger_ms = 2000;
	m->ra.chunk = m->cfg.chunk_size;
	m->ra.window_max = m->cfg.readahead_max;
	m->ra.off = m->cfg.readahead_max == 0; /* readahead=0: none */
	m->ra.parallel = m->cfg.max_parallel;
	m->ra.near_parallel = m->cfg.parallel_fixed ? 0 : RA_NEAR_PARALLEL;
	m->ra.near_wait_us = m->cfg.near_us;
	ra_config_defaults(&m->ra);
	ra_global_set_cap(m->cfg.cache_max
			      ? m->cfg.cache_max
			      : m->ra.window_max + 4 * m->ra.chunk);
	ec.max_connections = 4 * m->ra.parallel + 8;
	ec.stall_timeout_s = m->cfg.stall_timeout_s;
	/* one worker decrypts ~1 GB/s; more help only with cores to spare */
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	ec.threads = ncpu >= 4 ? (int)(ncpu / 2 < 4 ? ncpu / 2 : 4) : 1;
	m->eng = blob_engine_new(&ec);
	if (!m->eng) {
		free(m);
		return NULL;
	}
	pthread_mutex_init(&m->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&m->th, NULL, mgr_main, m)) {
		blob_engine_free(m->eng);
		pthread_cond_destroy(&m->cv);
		pthread_mutex_destroy(&m->mu);
		free(m);
		return NULL;
	}
	m->th_started = true;
	return m;
}

void disk_mgr_free(struct disk_mgr *m)
{
	struct disk_known *k;

	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	m->stop = true;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	if (m->th_started)
		pthread_join(m->th, NULL);
	pthread_mutex_lock(&m->mu);
	while (m->disks) {
		struct disk *d = m->disks;

		if (d->state != D_READY) {
			pthread_cond_wait(&m->cv, &m->mu);
			continue;
		}
		if (d->nopen)
			log_warn("disk %s: still open at unmount",
				 disk_short_id(d->drp_id));
		revoke_locked(m, d);
	}
	pthread_mutex_unlock(&m->mu);
	blob_engine_free(m->eng);
	while ((k = m->known)) {
		m->known = k->next;
		free(k->drp_id);
		free(k);
	}
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

int disk_release_grant(struct disk_mgr *m, const char *drp_id,
		       struct rp_err *err)
{
	struct disk *d;

	pthread_mutex_lock(&m->mu);
	for (;;) {
		d = find_disk(m, drp_id);
		if (!d || (d->state == D_READY && !d->renewing))
			break;
		pthread_cond_wait(&m->cv, &m->mu);
	}
	if (d && d->nopen > 0) {
		pthread_mutex_unlock(&m->mu);
		rp_err_set(err, 0, "DiskOpen",
			   "the disk file is still open; close it first");
		return -EBUSY;
	}
	if (d)
		revoke_locked(m, d);
	pthread_mutex_unlock(&m->mu);
	return 0;
}

/* ---- queries and reads ---- */

long long disk_size(const struct disk_handle *h)
{
	return h->d->len;
}

long long disk_allocated(const struct disk_handle *h)
{
	return ra_map_allocated(h->d->cache);
}

long long disk_known_size(struct disk_mgr *m, const char *drp_id)
{
	struct disk_known *k;
	long long v = -1;

	pthread_mutex_lock(&m->mu);
	k = find_known(m, drp_id);
	if (k)
		v = k->size;
	pthread_mutex_unlock(&m->mu);
	return v;
}

long long disk_known_allocated(struct disk_mgr *m, const char *drp_id)
{
	struct disk *d;
	struct disk_known *k;
	long long v = -1;

	pthread_mutex_lock(&m->mu);
	d = find_disk(m, drp_id);
	if (d && d->state == D_READY && ra_map_complete(d->cache))
		v = ra_map_allocated(d->cache);
	else if ((k = find_known(m, drp_id)))
		v = k->allocated;
	pthread_mutex_unlock(&m->mu);
	return v;
}

ssize_t disk_read(struct disk_handle *h, char *buf, size_t size, off_t off,
		  struct rp_err *err)
{
	struct disk *d = h->d;
	struct disk_fixes f = {0};

	for (;;) {
		struct ra_fault fault;
		ssize_t n = ra_read(d->cache, &h->streams, d->src, buf, size,
				    off, &fault, err);
		int rc;

		if (n != -EKEYEXPIRED)
			return n;
		rc = disk_fix_auth(d, &fault.res, &f, err);
		if (rc)
			return rc;
	}
}

off_t disk_seek(struct disk_handle *h, off_t off, int whence)
{
	return ra_seek(h->d->cache, off, whence);
}
