/*
 * disk_access.c -- keeping a disk readable: BeginGetAccess and its
 * renewal before the SAS's `se`, a token for disks that want Entra ID,
 * the one re-grant (or token refresh) after a 403 (or 401 Bearer), and
 * the page map fetched in x-ms-range windows after the grant.
 *
 * d->grant_mu serialises every change of a disk's SAS or token: whoever
 * holds it compares the source generation it failed with against the
 * current one, so a burst of 403s costs one re-grant.  It is held across
 * BeginGetAccess (a long-running operation) and nothing else; m->mu is
 * taken inside it only briefly (plan_renewal).  No URL ever appears here:
 * the SAS goes from az_grant_access into the blob_source as a secret.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../net/clock.h"
#include "../net/log.h"
#include "disk_int.h"

/* The name part of an id, for log lines. */
const char *disk_short_id(const char *id)
{
	const char *s = strrchr(id, '/');

	return s && s[1] ? s + 1 : id;
}

/* Turn a refused BeginGetAccess into the errno the contract promises. */
static int grant_errno(struct disk *d, int rc, const struct rp_err *err)
{
	const char *name = disk_short_id(d->drp_id);

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
	d->renew_at = rp_mono_ms() + (long long)((life - margin) * 1000);
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

/* BeginGetAccess and install the SAS.  d->grant_mu held by the caller. */
int disk_grant(struct disk *d, struct rp_err *err)
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
			 disk_short_id(d->drp_id));
	return rc;
}

/*
 * React to BLOB_EXPIRED / BLOB_NEED_TOKEN: re-grant or fetch a token, once
 * each per operation, unless someone already did since the failure.
 * Returns 0 to retry, or -errno (err filled).
 */
int disk_fix_auth(struct disk *d, const struct blob_result *res,
		  struct disk_fixes *f, struct rp_err *err)
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
			 disk_short_id(d->drp_id), res->err.code);
		rc = disk_grant(d, err);
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

void disk_renew(struct disk *d)
{
	struct rp_err err;
	int rc;

	rp_err_clear(&err);
	pthread_mutex_lock(&d->grant_mu);
	rc = disk_grant(d, &err);
	if (!rc && blob_source_has_bearer(d->src))
		rc = do_token(d, false, &err);
	pthread_mutex_unlock(&d->grant_mu);
	if (rc) {
		log_warn("disk %s: renewing the SAS failed (%s: %s); will "
			 "retry",
			 disk_short_id(d->drp_id), err.code, err.message);
		pthread_mutex_lock(&d->m->mu);
		d->renew_at = rp_mono_ms() + 5000;
		pthread_mutex_unlock(&d->m->mu);
	} else {
		log_debug("disk %s: SAS renewed", disk_short_id(d->drp_id));
	}
}

/* ---- page map ---- */

static int map_cb(void *arg, long long start, long long end)
{
	struct disk *d = arg;

	(void)ra_map_add(d->cache, start, end); /* -ENOMEM stays safe */
	return 0;
}

/* Fetch the page map in windows.  Any failure: the rest is data. */
void disk_fetch_map(struct disk *d)
{
	long long t0 = rp_mono_ms(), w;
	const char *name = disk_short_id(d->drp_id);

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
		struct disk_fixes f = {0};
		struct rp_err err;
		int rc;

		/* net/ has already asked again for a garbled answer; what
		 * is left to fix here is the grant or the token. */
		for (;;) {
			rc = blob_page_ranges(d->m->eng, d->src, w, we, map_cb,
					      d, &res);
			if (!rc || disk_fix_auth(d, &res, &f, &err))
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
		if (rp_mono_ms() - t0 > MAP_BUDGET_MS && we < d->len) {
			log_info("disk %s: page map stopped at %lld of %lld "
				 "bytes (time budget); the rest counts as data",
				 name, we, d->len);
			return;
		}
	}
	log_debug("disk %s: page map: %lld of %lld bytes hold data", name,
		  ra_map_allocated(d->cache), d->len);
}
