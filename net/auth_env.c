/*
 * auth_env.c -- the environment credential of the Azure SDKs: a service
 * principal with a client secret (AZURE_CLIENT_SECRET) or a certificate
 * (AZURE_CLIENT_CERTIFICATE_PATH, PEM or PKCS#12, optional
 * AZURE_CLIENT_CERTIFICATE_PASSWORD and AZURE_CLIENT_SEND_CERTIFICATE_CHAIN),
 * against {AZURE_AUTHORITY_HOST}/{tenant}/oauth2/v2.0/token.
 *
 * The certificate path signs a JWT client assertion (RS256, x5t and
 * x5t#S256 thumbprints, 10 minutes) with OpenSSL's libcrypto; no JOSE code
 * of our own beyond base64url and JSON assembly with json-c.  This is the
 * only file of net/ that needs libcrypto.  Stateless; every buffer that
 * held a secret (form body, escaped secret, key material via OpenSSL's own
 * free) is wiped before it is freed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "auth.h"
#include "auth_sources.h"
#include "http.h"
#include "log.h"

#define AUTH_ASSERTION_LIFETIME_S 600

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

char *auth_scope_for(const char *resource)
{
	char *out;

	if (strcmp(resource, AUTH_RESOURCE_DISK) == 0)
		return strdup("https://disk.azure.com//.default");
	if (asprintf(&out, "%s%s.default", resource,
		     resource[0] && resource[strlen(resource) - 1] == '/'
			 ? ""
			 : "/") < 0)
		return NULL;
	return out;
}

static const char *authority_host(char *buf, size_t len)
{
	const char *h = getenv("AZURE_AUTHORITY_HOST");
	size_t n;

	if (!h || !*h)
		h = "https://login.microsoftonline.com";
	snprintf(buf, len, "%s%s", strstr(h, "://") ? "" : "https://", h);
	n = strlen(buf);
	while (n && buf[n - 1] == '/')
		buf[--n] = '\0';
	return buf;
}

/* base64 of n bytes; url-safe without padding when url. malloc'd. */
static char *b64(const unsigned char *p, size_t n, bool url)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	int len;

	if (!out)
		return NULL;
	len = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	if (len < 0) {
		free(out);
		return NULL;
	}
	out[len] = '\0';
	if (url) {
		for (char *c = out; *c; c++) {
			if (*c == '+')
				*c = '-';
			else if (*c == '/')
				*c = '_';
			else if (*c == '=')
				*c = '\0';
		}
	}
	return out;
}

static char *thumbprint(const unsigned char *der, size_t n, const EVP_MD *md)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dl = 0;

	if (!EVP_Digest(der, n, d, &dl, md, NULL))
		return NULL;
	return b64(d, dl, true);
}

struct cred {
	EVP_PKEY *key;
	X509 *cert;	      /* the certificate of key */
	STACK_OF(X509) * all; /* every certificate in the file */
};

static void cred_free(struct cred *c)
{
	EVP_PKEY_free(c->key);
	X509_free(c->cert);
	sk_X509_pop_free(c->all, X509_free);
}

static int load_pem(const char *path, const char *password, struct cred *c)
{
	BIO *b = BIO_new_file(path, "r");
	X509 *x;

	if (!b)
		return -1;
	c->key = PEM_read_bio_PrivateKey(b, NULL, NULL, (void *)password);
	BIO_free(b);
	b = BIO_new_file(path, "r");
	if (!b)
		return -1;
	c->all = sk_X509_new_null();
	while (c->all && (x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
		if (!sk_X509_push(c->all, x)) {
			X509_free(x);
			break;
		}
	}
	BIO_free(b);
	return c->key && c->all && sk_X509_num(c->all) > 0 ? 0 : -1;
}

static int load_p12(const char *path, const char *password, struct cred *c)
{
	BIO *b = BIO_new_file(path, "rb");
	PKCS12 *p12 = b ? d2i_PKCS12_bio(b, NULL) : NULL;
	X509 *leaf = NULL;
	STACK_OF(X509) *ca = NULL;
	int rc = -1;

	BIO_free(b);
	if (!p12)
		return -1;
	if (PKCS12_parse(p12, password ? password : "", &c->key, &leaf, &ca) &&
	    c->key && leaf) {
		c->all = ca ? ca : sk_X509_new_null();
		ca = NULL;
		if (c->all && sk_X509_insert(c->all, leaf, 0)) {
			leaf = NULL;
			rc = 0;
		}
	}
	X509_free(leaf);
	sk_X509_pop_free(ca, X509_free);
	PKCS12_free(p12);
	return rc;
}

static int load_cred(const char *path, const char *password, struct cred *c,
		     struct rp_err *err)
{
	memset(c, 0, sizeof(*c));
	if (load_pem(path, password, c) != 0) {
		cred_free(c);
		memset(c, 0, sizeof(*c));
		if (load_p12(path, password, c) != 0) {
			cred_free(c);
			memset(c, 0, sizeof(*c));
			rp_err_set(err, 0, "InvalidCertificate",
				   "%s holds no private key with its "
				   "certificate (PEM or PKCS#12; wrong "
				   "AZURE_CLIENT_CERTIFICATE_PASSWORD?)",
				   path);
			return -EACCES;
		}
	}
	for (int i = 0; i < sk_X509_num(c->all); i++) {
		X509 *x = sk_X509_value(c->all, i);

		if (X509_check_private_key(x, c->key) == 1) {
			X509_up_ref(x);
			c->cert = x;
			break;
		}
	}
	if (!c->cert || EVP_PKEY_get_base_id(c->key) != EVP_PKEY_RSA) {
		rp_err_set(err, 0, "InvalidCertificate",
			   "%s: no RSA certificate matches the private key",
			   path);
		cred_free(c);
		return -EACCES;
	}
	return 0;
}

static char *der_of(X509 *x, size_t *n)
{
	unsigned char *der = NULL;
	int len = i2d_X509(x, &der);

	if (len <= 0)
		return NULL;
	*n = (size_t)len;
	return (char *)der;
}

static char *json_b64url(json_object *o)
{
	const char *s = json_object_to_json_string_ext(
	    o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

	return s ? b64((const unsigned char *)s, strlen(s), true) : NULL;
}

static json_object *jwt_header(const struct cred *c, bool send_chain)
{
	json_object *h = json_object_new_object();
	size_t n = 0;
	char *der = der_of(c->cert, &n);
	char *t1 = der ? thumbprint((unsigned char *)der, n, EVP_sha1()) : NULL;
	char *t256 =
	    der ? thumbprint((unsigned char *)der, n, EVP_sha256()) : NULL;

	OPENSSL_free(der);
	if (!h || !t1 || !t256)
		goto fail;
	json_object_object_add(h, "alg", json_object_new_string("RS256"));
	json_object_object_add(h, "typ", json_object_new_string("JWT"));
	json_object_object_add(h, "x5t", json_object_new_string(t1));
	json_object_object_add(h, "x5t#S256", json_object_new_string(t256));
	if (send_chain) {
		json_object *arr = json_object_new_array();

		if (!arr)
			goto fail;
		json_object_object_add(h, "x5c", arr);
		for (int i = -1; i < sk_X509_num(c->all); i++) {
			X509 *x = i < 0 ? c->cert : sk_X509_value(c->all, i);
			char *d, *e;

			if (i >= 0 && X509_cmp(x, c->cert) == 0)
				continue;
			d = der_of(x, &n);
			e = d ? b64((unsigned char *)d, n, false) : NULL;
			OPENSSL_free(d);
			if (!e)
				goto fail;
			json_object_array_add(arr, json_object_new_string(e));
			free(e);
		}
	}
	free(t1);
	free(t256);
	return h;
fail:
	free(t1);
	free(t256);
	json_object_put(h);
	return NULL;
}

static json_object *jwt_claims(const char *client_id, const char *aud,
			       time_t now)
{
	json_object *p = json_object_new_object();
	unsigned char r[16];
	char jti[40];

	if (!p || RAND_bytes(r, sizeof(r)) != 1) {
		json_object_put(p);
		return NULL;
	}
	r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
	r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
	snprintf(jti, sizeof(jti),
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
		 "%02x%02x%02x%02x%02x%02x",
		 r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
		 r[10], r[11], r[12], r[13], r[14], r[15]);
	json_object_object_add(p, "aud", json_object_new_string(aud));
	json_object_object_add(p, "iss", json_object_new_string(client_id));
	json_object_object_add(p, "sub", json_object_new_string(client_id));
	json_object_object_add(p, "jti", json_object_new_string(jti));
	json_object_object_add(p, "iat", json_object_new_int64(now));
	json_object_object_add(p, "nbf", json_object_new_int64(now));
	json_object_object_add(
	    p, "exp", json_object_new_int64(now + AUTH_ASSERTION_LIFETIME_S));
	return p;
}

int auth_cert_assertion(const char *cert_path, const char *password,
			const char *client_id, const char *aud, bool send_chain,
			time_t now, char **jwt, struct rp_err *err)
{
	struct cred c;
	json_object *h = NULL, *p = NULL;
	char *hb = NULL, *pb = NULL, *input = NULL, *sigb = NULL;
	unsigned char *sig = NULL;
	size_t siglen = 0;
	EVP_MD_CTX *ctx = NULL;
	int rc;

	*jwt = NULL;
	rc = load_cred(cert_path, password, &c, err);
	if (rc)
		return rc;
	rc = -ENOMEM;
	h = jwt_header(&c, send_chain);
	p = jwt_claims(client_id, aud, now);
	hb = h ? json_b64url(h) : NULL;
	pb = p ? json_b64url(p) : NULL;
	if (!hb || !pb || asprintf(&input, "%s.%s", hb, pb) < 0) {
		input = NULL;
		goto out;
	}
	ctx = EVP_MD_CTX_new();
	if (!ctx ||
	    EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, c.key) != 1 ||
	    EVP_DigestSign(ctx, NULL, &siglen, (unsigned char *)input,
			   strlen(input)) != 1 ||
	    !(sig = malloc(siglen)) ||
	    EVP_DigestSign(ctx, sig, &siglen, (unsigned char *)input,
			   strlen(input)) != 1) {
		rp_err_set(err, 0, "SigningFailed",
			   "cannot sign the client assertion with %s",
			   cert_path);
		rc = -EACCES;
		goto out;
	}
	sigb = b64(sig, siglen, true);
	if (!sigb || asprintf(jwt, "%s.%s", input, sigb) < 0) {
		*jwt = NULL;
		goto out;
	}
	rc = 0;
out:
	EVP_MD_CTX_free(ctx);
	free(sig);
	free(sigb);
	free(input);
	free(hb);
	free(pb);
	json_object_put(h);
	json_object_put(p);
	cred_free(&c);
	return rc;
}

static bool env_true(const char *name)
{
	const char *v = getenv(name);

	return v && (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0);
}

int auth_src_env(const char *resource, struct secret *tok, time_t *exp,
		 struct rp_err *err)
{
	const char *tenant = getenv("AZURE_TENANT_ID");
	const char *client = getenv("AZURE_CLIENT_ID");
	const char *secret = getenv("AZURE_CLIENT_SECRET");
	const char *cert = getenv("AZURE_CLIENT_CERTIFICATE_PATH");
	char host[512], *url = NULL, *body = NULL, *jwt = NULL;
	char *etenant = NULL, *eclient = NULL, *ecred = NULL, *escope = NULL;
	char *scope = NULL;
	const char *hdrs[] = {"Content-Type: application/x-www-form-urlencoded",
			      "Accept: application/json", NULL};
	struct http_request req = {.method = "POST", .headers = hdrs};
	bool use_secret = secret && *secret;
	int rc = -ENOMEM;

	if (!tenant || !*tenant || !client || !*client ||
	    (!use_secret && (!cert || !*cert))) {
		rp_err_set(err, 0, "NoEnvironmentCredentials",
			   "AZURE_TENANT_ID, AZURE_CLIENT_ID and "
			   "AZURE_CLIENT_SECRET (or "
			   "AZURE_CLIENT_CERTIFICATE_PATH) are not all set");
		return -ENOENT;
	}
	scope = auth_scope_for(resource);
	etenant = auth_escape(tenant);
	eclient = auth_escape(client);
	escope = scope ? auth_escape(scope) : NULL;
	if (!etenant || !eclient || !escope)
		goto out;
	if (asprintf(&url, "%s/%s/oauth2/v2.0/token",
		     authority_host(host, sizeof(host)), etenant) < 0) {
		url = NULL;
		goto out;
	}
	if (use_secret) {
		ecred = auth_escape(secret);
		if (!ecred)
			goto out;
		rc = asprintf(&body,
			      "grant_type=client_credentials&client_id=%s"
			      "&client_secret=%s&scope=%s",
			      eclient, ecred, escope);
	} else {
		rc = auth_cert_assertion(
		    cert, getenv("AZURE_CLIENT_CERTIFICATE_PASSWORD"), client,
		    url, env_true("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN"),
		    time(NULL), &jwt, err);
		if (rc)
			goto out;
		rc = asprintf(&body,
			      "grant_type=client_credentials&client_id=%s"
			      "&client_assertion_type=urn%%3Aietf%%3Aparams%%3A"
			      "oauth%%3Aclient-assertion-type%%3Ajwt-bearer"
			      "&client_assertion=%s&scope=%s",
			      eclient, jwt, escope);
	}
	if (rc < 0) {
		body = NULL;
		rc = -ENOMEM;
		goto out;
	}
	req.url = url;
	req.body = body;
	req.body_len = strlen(body);
	rc = auth_token_request(
	    &req, use_secret ? "client secret" : "client certificate", tok, exp,
	    err);
out:
	free(scope);
	free(etenant);
	free(eclient);
	wipe_free(ecred);
	wipe_free(jwt);
	free(escope);
	free(url);
	wipe_free(body);
	return rc;
}
