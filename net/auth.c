/*
 * auth.c -- bearer tokens: the cache, the AUTH_AUTO chain, invalidation.
 *
 * One mutex guards everything in struct auth: the per-audience cache and
 * the token file's last-seen identity (mtime, size, inode).  It is held
 * while a source is asked for a token, so concurrent callers wait for one
 * fetch instead of stampeding the token endpoint.  A cached token is
 * served until five minutes before its expiry (halfway through a
 * lifetime shorter than ten minutes); a token file is also
 * re-read whenever its mtime (or size or inode) changes, and after
 * auth_invalidate (a 401).  AUTH_AUTO remembers the first source that
 * gave a token and keeps using it.  Tokens live only in struct secret.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "auth.h"
#include "auth_sources.h"
#include "log.h"

#define AUTH_REFRESH_EARLY_S 300
#define AUTH_NSLOTS 4

struct auth_slot {
	char *resource;	   /* NULL: free slot */
	struct secret tok; /* empty: must fetch */
	time_t expires;	   /* 0: unknown (token file without a JWT exp) */
	time_t fetched;	   /* when the token was obtained */
	bool from_file;
};

struct auth {
	pthread_mutex_t lock;
	enum auth_kind kind;
	enum auth_kind chosen; /* AUTH_AUTO until a source worked */
	char *token_file;
	struct timespec file_mtime;
	off_t file_size;
	ino_t file_ino;
	struct auth_slot slots[AUTH_NSLOTS];
};

int auth_kind_parse(const char *name)
{
	static const struct {
		const char *name;
		enum auth_kind kind;
	} names[] = {
	    {"auto", AUTH_AUTO},
	    {"token-file", AUTH_TOKEN_FILE},
	    {"token_file", AUTH_TOKEN_FILE},
	    {"env", AUTH_ENV},
	    {"environment", AUTH_ENV},
	    {"managed-identity", AUTH_MANAGED_IDENTITY},
	    {"managed_identity", AUTH_MANAGED_IDENTITY},
	    {"msi", AUTH_MANAGED_IDENTITY},
	    {"cli", AUTH_CLI},
	    {"az", AUTH_CLI},
	};

	if (!name)
		return -1;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i].name) == 0)
			return (int)names[i].kind;
	}
	return -1;
}

struct auth *auth_new(const struct auth_config *cfg)
{
	struct auth *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	if (pthread_mutex_init(&a->lock, NULL) != 0) {
		free(a);
		return NULL;
	}
	a->kind = cfg ? cfg->kind : AUTH_AUTO;
	a->chosen = a->kind;
	if (cfg && cfg->token_file && *cfg->token_file) {
		a->token_file = strdup(cfg->token_file);
		if (!a->token_file) {
			auth_free(a);
			return NULL;
		}
	}
	return a;
}

void auth_free(struct auth *a)
{
	if (!a)
		return;
	for (int i = 0; i < AUTH_NSLOTS; i++) {
		secret_clear(&a->slots[i].tok);
		free(a->slots[i].resource);
	}
	free(a->token_file);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

static struct auth_slot *slot_for(struct auth *a, const char *resource)
{
	struct auth_slot *free_slot = NULL;

	for (int i = 0; i < AUTH_NSLOTS; i++) {
		if (a->slots[i].resource &&
		    strcmp(a->slots[i].resource, resource) == 0)
			return &a->slots[i];
		if (!a->slots[i].resource && !free_slot)
			free_slot = &a->slots[i];
	}
	if (!free_slot) {
		/* More audiences than slots: reuse the first. */
		free_slot = &a->slots[0];
		secret_clear(&free_slot->tok);
		free(free_slot->resource);
		free_slot->resource = NULL;
	}
	free_slot->resource = strdup(resource);
	return free_slot->resource ? free_slot : NULL;
}

/* True when the token file changed since we last read it. */
static bool file_changed(struct auth *a)
{
	struct stat st;

	if (!a->token_file || stat(a->token_file, &st) != 0)
		return false;
	return st.st_mtim.tv_sec != a->file_mtime.tv_sec ||
	       st.st_mtim.tv_nsec != a->file_mtime.tv_nsec ||
	       st.st_size != a->file_size || st.st_ino != a->file_ino;
}

static void file_remember(struct auth *a)
{
	struct stat st;

	if (a->token_file && stat(a->token_file, &st) == 0) {
		a->file_mtime = st.st_mtim;
		a->file_size = st.st_size;
		a->file_ino = st.st_ino;
	}
}

static bool slot_fresh(struct auth *a, const struct auth_slot *s)
{
	if (secret_empty(&s->tok))
		return false;
	if (s->from_file && file_changed(a))
		return false;
	if (s->expires == 0)
		return true;
	/* Five minutes early, or halfway for tokens that live less than
	 * ten minutes, so a short-lived token is not fetched per request. */
	{
		time_t life = s->expires - s->fetched;
		time_t early = AUTH_REFRESH_EARLY_S;

		if (life > 0 && life / 2 < early)
			early = life / 2;
		return time(NULL) < s->expires - early;
	}
}

/* Ask one source. -ENOENT: not configured (AUTH_AUTO moves on). */
static int ask(struct auth *a, enum auth_kind kind, bool probe,
	       const char *resource, struct secret *tok, time_t *exp,
	       struct rp_err *err)
{
	switch (kind) {
	case AUTH_TOKEN_FILE:
		if (!a->token_file) {
			rp_err_set(err, 0, "NoTokenFile",
				   "no token file configured (--token-file)");
			return -ENOENT;
		}
		if (strcmp(resource, AUTH_RESOURCE_ARM) != 0) {
			rp_err_set(err, 0, "NoToken",
				   "the token file holds a Resource Manager "
				   "token, not one for %s",
				   resource);
			return -ENOENT;
		}
		file_remember(a);
		return auth_src_file(a->token_file, tok, exp, err);
	case AUTH_ENV:
		return auth_src_env(resource, tok, exp, err);
	case AUTH_MANAGED_IDENTITY:
		return auth_src_managed_identity(resource, probe, tok, exp,
						 err);
	case AUTH_CLI:
		return auth_src_cli(resource, tok, exp, err);
	default:
		return -ENOENT;
	}
}

static int fetch(struct auth *a, const char *resource, struct auth_slot *s,
		 struct rp_err *err)
{
	static const enum auth_kind chain[] = {AUTH_TOKEN_FILE, AUTH_ENV,
					       AUTH_MANAGED_IDENTITY, AUTH_CLI};
	time_t exp = 0;
	int rc;

	secret_clear(&s->tok);
	if (a->chosen != AUTH_AUTO) {
		rc = ask(a, a->chosen, false, resource, &s->tok, &exp, err);
		/* A fixed source that is not configured is an error. */
		if (rc == -ENOENT)
			rc = -EACCES;
		if (rc == 0 || a->kind != AUTH_AUTO)
			goto done;
		/* AUTO stuck to a source that now fails for this audience:
		 * fall back to the whole chain. */
	}
	rc = -ENOENT;
	for (size_t i = 0; i < sizeof(chain) / sizeof(chain[0]); i++) {
		struct rp_err e;

		rp_err_clear(&e);
		rc = ask(a, chain[i], true, resource, &s->tok, &exp, &e);
		if (rc == 0) {
			if (a->chosen == AUTH_AUTO)
				a->chosen = chain[i];
			s->from_file = chain[i] == AUTH_TOKEN_FILE;
			break;
		}
		if (rc != -ENOENT) {
			/* Configured but failing: report it, stop here. */
			if (err)
				*err = e;
			break;
		}
	}
	if (rc == -ENOENT) {
		rp_err_set(
		    err, 0, "NoCredentials",
		    "no credentials found: give --token-file, set "
		    "AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET, "
		    "run on Azure with a managed identity, or `az login`");
		rc = -EACCES;
	}
	s->expires = rc ? 0 : exp;
	s->fetched = time(NULL);
	return rc;
done:
	s->from_file = a->chosen == AUTH_TOKEN_FILE;
	s->expires = rc ? 0 : exp;
	s->fetched = time(NULL);
	return rc;
}

int auth_token(struct auth *a, const char *resource, struct secret *out,
	       struct rp_err *err)
{
	struct auth_slot *s;
	int rc;

	if (!a || !resource)
		return -EINVAL;
	pthread_mutex_lock(&a->lock);
	s = slot_for(a, resource);
	if (!s) {
		pthread_mutex_unlock(&a->lock);
		return -ENOMEM;
	}
	rc = 0;
	if (!slot_fresh(a, s)) {
		rc = fetch(a, resource, s, err);
		if (rc)
			log_warn("cannot get a token for %s: %s", resource,
				 err ? err->message : "no credentials");
		else
			log_debug("new token for %s", resource);
	}
	if (!rc)
		rc = secret_set(out, secret_value(&s->tok));
	pthread_mutex_unlock(&a->lock);
	return rc;
}

void auth_invalidate(struct auth *a, const char *resource)
{
	if (!a || !resource)
		return;
	pthread_mutex_lock(&a->lock);
	for (int i = 0; i < AUTH_NSLOTS; i++) {
		if (a->slots[i].resource &&
		    strcmp(a->slots[i].resource, resource) == 0) {
			secret_clear(&a->slots[i].tok);
			a->slots[i].expires = 0;
		}
	}
	pthread_mutex_unlock(&a->lock);
}
