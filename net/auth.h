/*
 * auth.h -- bearer tokens for Resource Manager (and for the disk audience
 * https://disk.azure.com/ when a disk requires Entra ID on its blob reads).
 *
 * Sources follow the Azure SDK conventions (SPEC section 1): a token file
 * (re-read when its mtime changes and after a 401), the environment
 * (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET or
 * AZURE_CLIENT_CERTIFICATE_PATH, AZURE_AUTHORITY_HOST), managed identity
 * (IDENTITY_ENDPOINT + IDENTITY_HEADER, then the instance metadata
 * endpoint; RPFS_IMDS_ENDPOINT overrides its address for tests), and the
 * Azure CLI (`az account get-access-token`, using expires_on).  AUTH_AUTO
 * tries them in that order and keeps the first that yields a token.
 * Tokens are cached per audience and refreshed five minutes before expiry
 * (halfway through a shorter lifetime).
 * Thread-safe.  Never logs a token.
 */
#ifndef RPFS_AUTH_H
#define RPFS_AUTH_H

#include "err.h"
#include "secret.h"

enum auth_kind {
	AUTH_AUTO,
	AUTH_TOKEN_FILE,
	AUTH_ENV,
	AUTH_MANAGED_IDENTITY,
	AUTH_CLI,
};

#define AUTH_RESOURCE_ARM "https://management.azure.com/"
#define AUTH_RESOURCE_DISK "https://disk.azure.com/"

struct auth_config {
	enum auth_kind kind;
	const char
	    *token_file; /* for AUTH_TOKEN_FILE / AUTH_AUTO; may be NULL */
};

struct auth;

/* Parse "auto", "token-file", "env", "managed-identity", "cli"; -1 if unknown.
 */
int auth_kind_parse(const char *name);

struct auth *auth_new(const struct auth_config *cfg);
void auth_free(struct auth *a);

/*
 * A valid token for resource (AUTH_RESOURCE_ARM or AUTH_RESOURCE_DISK),
 * copied into out.  Returns 0, or -EACCES / -EIO with err filled when no
 * source can provide one.
 */
int auth_token(struct auth *a, const char *resource, struct secret *out,
	       struct rp_err *err);

/* The server rejected the token (401): drop it so the next call refreshes. */
void auth_invalidate(struct auth *a, const char *resource);

#endif
