/*
 * auth_sources.h -- the credential sources behind auth.c (internal to
 * net/; the parsers are exposed for unit tests).
 *
 * Each source fetches one token for one resource and reports its expiry
 * as Unix seconds.  A source that is not configured in the environment
 * returns -ENOENT (so AUTH_AUTO moves on); a configured source that
 * fails returns -EACCES or -EIO with err filled.  No source keeps state;
 * auth.c caches and locks.
 */
#ifndef RPFS_AUTH_SOURCES_H
#define RPFS_AUTH_SOURCES_H

#include <stdbool.h>
#include <time.h>

#include "err.h"
#include "secret.h"

int auth_src_file(const char *path, struct secret *tok, time_t *exp,
		  struct rp_err *err);
int auth_src_env(const char *resource, struct secret *tok, time_t *exp,
		 struct rp_err *err);
/* probe: part of the AUTH_AUTO chain, so an unreachable instance
 * metadata endpoint is "not configured" and is asked only briefly. */
int auth_src_managed_identity(const char *resource, bool probe,
			      struct secret *tok, time_t *exp,
			      struct rp_err *err);
int auth_src_cli(const char *resource, struct secret *tok, time_t *exp,
		 struct rp_err *err);

/* Send a token request (GET or POST) and parse the answer; a refusal is
 * -EACCES with Entra's error and description in err. */
struct http_request;
int auth_token_request(const struct http_request *req, const char *what,
		       struct secret *tok, time_t *exp, struct rp_err *err);

/* curl_easy_escape into a malloc'd copy (the curl buffer wiped). */
char *auth_escape(const char *s);

/*
 * A signed client assertion (RS256 JWT with x5t and x5t#S256 headers, x5c
 * too when send_chain) for the certificate and private key in the PEM or
 * PKCS#12 file at cert_path, as Entra ID expects for certificate
 * credentials.  aud is the token endpoint URL.  *jwt is malloc'd.
 */
int auth_cert_assertion(const char *cert_path, const char *password,
			const char *client_id, const char *aud, bool send_chain,
			time_t now, char **jwt, struct rp_err *err);

/*
 * An OAuth / managed identity token response: access_token, and expiry
 * from expires_on (Unix seconds, number or string) or else now +
 * expires_in (number or string).  -EIO when malformed or without token.
 */
int auth_parse_token_response(const char *body, time_t now, struct secret *tok,
			      time_t *exp, struct rp_err *err);

/* `az account get-access-token -o json` output: accessToken, expiry from
 * expires_on, else expiresOn (local time "YYYY-MM-DD HH:MM:SS[.ffffff]"). */
int auth_parse_cli_output(const char *out, time_t now, struct secret *tok,
			  time_t *exp, struct rp_err *err);

/* The "exp" claim of a JWT (no signature check: only to know when to
 * refresh); -1 when token is not a JWT with exp. */
long long auth_jwt_exp(const char *token);

/* The OAuth v2 scope for a resource ("https://disk.azure.com//.default"
 * for the disk audience, as Entra expects). malloc'd. */
char *auth_scope_for(const char *resource);

#endif
