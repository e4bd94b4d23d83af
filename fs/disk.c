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

#include "../net/blob.h"
#include "../net/log.h"
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
};

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The name part of an id, for log lines. */
static const char *short_id(const char *id)
{
	const char *s = strrchr(id, '/');

	return s && s[1] ? s + 1 : id;
}

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

/* ---- grants ---- */

/* Turn a refused BeginGetAccess into the errno the contract promises. */
static int grant_errno(struct disk *d, int rc, const struct rp_err *err)
{
	const char *name = short_id(d->drp_id);

	if (err && err->http_status == 409) {
		if (strcasestr(err->message, "SAS") ||
		    strcasestr(err->message, "maximum number")) {
			log_error(
			    "disk %s: Azure refuses another read grant on "
			    "this disk's snapshot family (%s: %s); close "
			    "other files of the same disk and retry",
			    name, err->code, err->message);
			return -EBUSY;
		}
		log_error("disk %s: not readable yet (%s: %s)", name, err->code,
			  err->message);
		return -EAGAIN;
	}
	log_error("disk %s: BeginGetAccess failed: %s (%s%s%s)", name,
		  strerror(-rc), err && err->code[0] ? err->code : "no code",
		  err && err->message[0] ? ": " : "", err ? err->message : "");
	return rc;
}

/* When to renew: well before `se`, leaving time for the grant itself. */
static void plan_renewal(struct disk *d)
{
	struct disk_mgr *m = d->m;
	time_t se = blob_source_expiry(d->src), now = time(NULL);
	double life = se > now ? (double)(se - now) : m->cfg.sas_duration_s;
	double margin = life * 0.2, half = life * 0.5;

	if (half > 300)
		half = 300;
	if (margin < half)
		margin = half;
	pthread_mutex_lock(&m->mu);
	d->renew_at = mono_ms() + (long long)((life - margin) * 1000);
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

/* BeginGetAccess and install the SAS.  d->grant_mu held by the caller. */
static int do_grant(struct disk *d, struct rp_err *err)
{
	struct secret sas = {0};
	int rc;

	rc = az_grant_access(d->m->az, d->drp_id, d->m->cfg.sas_duration_s,
			     &sas, err);
	if (rc)
		return grant_errno(d, rc, err);
	rc = blob_source_set_sas(d->src, &sas);
	secret_clear(&sas);
	if (rc) {
		rp_err_set(err, 0, "BadSAS",
			   "the grant returned no usable URL");
		return -EIO;
	}
	plan_renewal(d);
	return 0;
}

/* Get a bearer token for the disk audience.  d->grant_mu held. */
static int do_token(struct disk *d, bool had_bearer, struct rp_err *err)
{
	struct secret tok = {0};
	int rc;

	if (!d->m->auth) {
		rp_err_set(err, 401, "NoCredential",
			   "the disk requires an Entra ID token and no "
			   "credential is configured for blob reads");
		return -EACCES;
	}
	if (had_bearer)
		auth_invalidate(d->m->auth, AUTH_RESOURCE_DISK);
	rc = auth_token(d->m->auth, AUTH_RESOURCE_DISK, &tok, err);
	if (rc)
		return rc;
	rc = blob_source_set_bearer(d->src, &tok);
	secret_clear(&tok);
	if (!rc)
		log_info("disk %s: reading with an Entra ID token (disk "
			 "requires it)",
			 short_id(d->drp_id));
	return rc;
}

struct fixes {
	int n, regrants, tokens;
};

/*
 * React to BLOB_EXPIRED / BLOB_NEED_TOKEN: re-grant or fetch a token, once
 * each per operation, unless someone already did since the failure.
 * Returns 0 to retry, or -errno (err filled).
 */
static int fix_auth(struct disk *d, const struct blob_result *res,
		    struct fixes *f, struct rp_err *err)
{
	int rc = 0;

	if (res->status != BLOB_EXPIRED && res->status != BLOB_NEED_TOKEN) {
		if (err)
			*err = res->err;
		return res->error ? res->error : -EIO;
	}
	if (++f->n > READ_FIXES_MAX)
		goto give_up;
	pthread_mutex_lock(&d->grant_mu);
	if (blob_source_gen(d->src) != res->gen) {
		pthread_mutex_unlock(&d->grant_mu);
		return 0; /* renewed meanwhile: just retry */
	}
	if (res->status == BLOB_EXPIRED) {
		if (f->regrants++ >= 1) {
			pthread_mutex_unlock(&d->grant_mu);
			goto give_up;
		}
		log_info("disk %s: SAS refused (%s), re-granting",
			 short_id(d->drp_id), res->err.code);
		rc = do_grant(d, err);
	} else {
		if (f->tokens++ >= 1) {
			pthread_mutex_unlock(&d->grant_mu);
			goto give_up;
		}
		rc = do_token(d, res->had_bearer, err);
	}
	pthread_mutex_unlock(&d->grant_mu);
	return rc;
give_up:
	if (err)
		*err = res->err;
	return res->error ? res->error : -EACCES;
}

/* ---- page map ---- */

static int map_cb(void *arg, long long start, long long end)
{
	struct disk *d = arg;

	(void)ra_map_add(d->cache, start, end); /* -ENOMEM stays safe */
	return 0;
}

/* Fetch the page map in windows.  Any failure: the rest is data. */
static void fetch_map(struct disk *d)
{
	long long t0 = mono_ms(), w;
	const char *name = short_id(d->drp_id);

	/* the VHD footer is data whatever the map says */
	(void)ra_map_add(d->cache, d->len - 512, d->len);
	if (d->len % 512) {
		log_info("disk %s: length not 512-aligned, no page map", name);
		return;
	}
	for (w = 0; w < d->len; w += MAP_WINDOW) {
		long long we =
		    w + MAP_WINDOW < d->len ? w + MAP_WINDOW : d->len;
		struct blob_result res;
		struct fixes f = {0};
		struct rp_err err;
		int rc;

		for (;;) {
			rc = blob_page_ranges(d->m->eng, d->src, w, we, map_cb,
					      d, &res);
			if (!rc || fix_auth(d, &res, &f, &err))
				break;
		}
		if (rc) {
			log_warn("disk %s: page ranges unavailable (HTTP %d "
				 "%s: %s); reading it as all data from offset "
				 "%lld",
				 name, res.err.http_status, res.err.code,
				 res.err.message, w);
			return;
		}
		ra_map_known(d->cache, we);
		if (mono_ms() - t0 > MAP_BUDGET_MS && we < d->len) {
			log_info("disk %s: page map stopped at %lld of %lld "
				 "bytes (time budget); the rest counts as data",
				 name, we, d->len);
			return;
		}
	}
	log_debug("disk %s: page map: %lld of %lld bytes hold data", name,
		  ra_map_allocated(d->cache), d->len);
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
	struct fixes f = {0};
	int rc;

	d->src = blob_source_new();
	if (!d->src)
		return -ENOMEM;
	pthread_mutex_lock(&d->grant_mu);
	rc = do_grant(d, err);
	pthread_mutex_unlock(&d->grant_mu);
	if (rc)
		return rc;
	for (;;) {
		rc = blob_head(m->eng, d->src, &d->len, &res);
		if (!rc)
			break;
		rc = fix_auth(d, &res, &f, err);
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
			 short_id(d->drp_id), strerror(-rc),
			 err ? err->code : "", err ? err->message : "");
		if (az_revoke_access(m->az, d->drp_id, &e2))
			log_warn("disk %s: EndGetAccess failed: %s",
				 short_id(d->drp_id), e2.message);
		return rc;
	}
	if (m->cfg.use_pagelist)
		fetch_map(d);
	else
		ra_map_known(d->cache, 0);
	log_info("disk %s: open, %lld bytes", short_id(d->drp_id), d->len);
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
		h->d->linger_at = mono_ms() + m->cfg.linger_ms;
		pthread_cond_broadcast(&m->cv);
	}
	pthread_mutex_unlock(&m->mu);
	free(h);
}

/* End a disk that is unlinked from m->disks (state REVOKING). */
static void disk_teardown(struct disk_mgr *m, struct disk *d)
{
	struct rp_err err;
	int rc;

	pthread_mutex_lock(&m->mu);
	remember(m, d);
	pthread_mutex_unlock(&m->mu);
	ra_cache_free(d->cache);
	d->cache = NULL;
	rp_err_clear(&err);
	rc = az_revoke_access(m->az, d->drp_id, &err);
	if (rc)
		log_warn("disk %s: EndGetAccess failed: %s (%s: %s)",
			 short_id(d->drp_id), strerror(-rc), err.code,
			 err.message);
	else
		log_info("disk %s: read grant ended", short_id(d->drp_id));
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

static void renew(struct disk *d)
{
	struct rp_err err;
	int rc;

	rp_err_clear(&err);
	pthread_mutex_lock(&d->grant_mu);
	rc = do_grant(d, &err);
	if (!rc && blob_source_has_bearer(d->src))
		rc = do_token(d, false, &err);
	pthread_mutex_unlock(&d->grant_mu);
	if (rc) {
		log_warn("disk %s: renewing the SAS failed (%s: %s); will "
			 "retry",
			 short_id(d->drp_id), err.code, err.message);
		pthread_mutex_lock(&d->m->mu);
		d->renew_at = mono_ms() + 5000;
		pthread_mutex_unlock(&d->m->mu);
	} else {
		log_debug("disk %s: SAS renewed", short_id(d->drp_id));
	}
}

/* The manager thread: lingers and renewals. */
static void *mgr_main(void *arg)
{
	struct disk_mgr *m = arg;

	pthread_mutex_lock(&m->mu);
	while (!m->stop) {
		long long now = mono_ms(), next = now + 60000;
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
			renew(d);
			pthread_mutex_lock(&m->mu);
			d->renewing = false;
			pthread_cond_broadcast(&m->cv);
			continue;
		}
		ts.tv_sec = next / 1000;
		ts.tv_nsec = (next % 1000) * 1000000;
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
				 short_id(d->drp_id));
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
	struct fixes f = {0};

	for (;;) {
		struct ra_fault fault;
		ssize_t n = ra_read(d->cache, &h->streams, d->src, buf, size,
				    off, &fault, err);
		int rc;

		if (n != -EKEYEXPIRED)
			return n;
		rc = fix_auth(d, &fault.res, &f, err);
		if (rc)
			return rc;
	}
}

off_t disk_seek(struct disk_handle *h, off_t off, int whence)
{
	return ra_seek(h->d->cache, off, whence);
}
