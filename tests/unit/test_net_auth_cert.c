/*
 * test_net_auth_cert.c -- a service principal with a certificate
 * (AZURE_CLIENT_CERTIFICATE_PATH) gets a client assertion Entra ID will
 * accept: an RS256 JWT whose signature verifies with the certificate's
 * public key, whose x5t / x5t#S256 are the certificate's thumbprints, and
 * whose claims name the client and the token endpoint.  PEM and PKCS#12
 * files both work; a wrong password or a file without a key is EACCES.
 *
 * Keys are made with the openssl command at run time (a test dependency
 * already, for the emulator's CA).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "auth_sources.h"
#include "check.h"

static char dir[] = "/tmp/rpfs-cert-XXXXXX";

/* Run "cd DIR && script" (script may not contain a '%'). */
static int sh_in(const char *d, const char *script)
{
	char cmd[2048];

	snprintf(cmd, sizeof(cmd), "cd '%s' && %s", d, script);
	return system(cmd);
}

/* base64url-decode into a malloc'd buffer. */
static unsigned char *unb64url(const char *s, size_t n, size_t *out_len)
{
	size_t pad = (4 - n % 4) % 4;
	char *std = malloc(n + pad + 1);
	unsigned char *out = malloc(n + 4);
	int len;

	if (!std || !out)
		return NULL;
	for (size_t i = 0; i < n; i++)
		std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	memset(std + n, '=', pad);
	std[n + pad] = '\0';
	len = EVP_DecodeBlock(out, (unsigned char *)std, (int)(n + pad));
	free(std);
	if (len < 0) {
		free(out);
		return NULL;
	}
	*out_len = (size_t)len - pad;
	return out;
}

static json_object *part_json(const char *s, size_t n)
{
	size_t len;
	unsigned char *raw = unb64url(s, n, &len);
	json_object *o;

	if (!raw)
		return NULL;
	raw[len] = '\0';
	o = json_tokener_parse((char *)raw);
	free(raw);
	return o;
}

static const char *jstr(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v)
						   : NULL;
}

static char *thumb(X509 *x, const EVP_MD *md)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dl;
	char *out = malloc(100);

	X509_digest(x, md, d, &dl);
	EVP_EncodeBlock((unsigned char *)out, d, (int)dl);
	for (char *c = out; *c; c++) {
		if (*c == '+')
			*c = '-';
		else if (*c == '/')
			*c = '_';
		else if (*c == '=')
			*c = '\0';
	}
	return out;
}

static void check_assertion(const char *jwt, const char *certpem, time_t now,
			    bool chain)
{
	const char *d1 = strchr(jwt, '.');
	const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	json_object *h, *p, *v;
	FILE *f = fopen(certpem, "r");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	EVP_PKEY *pub = x ? X509_get_pubkey(x) : NULL;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char *sig;
	size_t siglen = 0;
	char *t;

	if (f)
		fclose(f);
	CHECK(d1 && d2 && !strchr(d2 + 1, '.'));
	CHECK(pub != NULL);
	if (!d1 || !d2 || !pub)
		return;
	h = part_json(jwt, (size_t)(d1 - jwt));
	p = part_json(d1 + 1, (size_t)(d2 - d1 - 1));
	CHECK(h && p);
	CHECK_STR(jstr(h, "alg"), "RS256");
	t = thumb(x, EVP_sha1());
	CHECK_STR(jstr(h, "x5t"), t);
	free(t);
	t = thumb(x, EVP_sha256());
	CHECK_STR(jstr(h, "x5t#S256"), t);
	free(t);
	CHECK(json_object_object_get_ex(h, "x5c", &v) == chain);
	CHECK_STR(jstr(p, "aud"), "https://login.example/tenant/oauth2/v2.0/"
				  "token");
	CHECK_STR(jstr(p, "iss"), "client-1");
	CHECK_STR(jstr(p, "sub"), "client-1");
	CHECK(jstr(p, "jti") && strlen(jstr(p, "jti")) == 36);
	CHECK(json_object_object_get_ex(p, "exp", &v) &&
	      json_object_get_int64(v) > now &&
	      json_object_get_int64(v) <= now + 3600);
	/* The signature verifies with the certificate's public key. */
	sig = unb64url(d2 + 1, strlen(d2 + 1), &siglen);
	CHECK(sig != NULL);
	CHECK(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub) == 1);
	CHECK(EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)jwt,
			       (size_t)(d2 - jwt)) == 1);
	/* ...and not for a tampered payload. */
	EVP_MD_CTX_reset(ctx);
	EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub);
	CHECK(EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)jwt,
			       (size_t)(d2 - jwt) - 1) != 1);
	free(sig);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(pub);
	X509_free(x);
	json_object_put(h);
	json_object_put(p);
}

int main(void)
{
	char pem[256], crt[256], p12[256], keyonly[256];
	const char *aud = "https://login.example/tenant/oauth2/v2.0/token";
	time_t now = time(NULL);
	char *jwt = NULL;
	struct rp_err e;

	if (!mkdtemp(dir))
		return 2;
	snprintf(pem, sizeof(pem), "%s/sp.pem", dir);
	snprintf(crt, sizeof(crt), "%s/sp.crt", dir);
	snprintf(p12, sizeof(p12), "%s/sp.p12", dir);
	snprintf(keyonly, sizeof(keyonly), "%s/sp.key", dir);
	if (sh_in(
		dir,
		"openssl req -x509 -newkey rsa:2048 -nodes -days 2 "
		"-subj /CN=rpfs-test -keyout sp.key -out sp.crt 2>/dev/null && "
		"cat sp.key sp.crt > sp.pem && openssl pkcs12 -export "
		"-inkey sp.key -in sp.crt -passout pass:pw -out sp.p12") != 0) {
		fprintf(stderr, "openssl could not make a test certificate\n");
		return 2;
	}

	CHECK_INT(auth_cert_assertion(pem, NULL, "client-1", aud, false, now,
				      &jwt, NULL),
		  0);
	if (jwt)
		check_assertion(jwt, crt, now, false);
	free(jwt);

	CHECK_INT(auth_cert_assertion(pem, NULL, "client-1", aud, true, now,
				      &jwt, NULL),
		  0);
	if (jwt)
		check_assertion(jwt, crt, now, true);
	free(jwt);

	CHECK_INT(auth_cert_assertion(p12, "pw", "client-1", aud, false, now,
				      &jwt, NULL),
		  0);
	if (jwt)
		check_assertion(jwt, crt, now, false);
	free(jwt);

	rp_err_clear(&e);
	CHECK_INT(auth_cert_assertion(p12, "wrong", "client-1", aud, false, now,
				      &jwt, &e),
		  -EACCES);
	CHECK(strstr(e.message, "AZURE_CLIENT_CERTIFICATE_PASSWORD") != NULL);
	CHECK_INT(auth_cert_assertion(crt, NULL, "client-1", aud, false, now,
				      &jwt, &e),
		  -EACCES);
	CHECK_INT(auth_cert_assertion(keyonly, NULL, "client-1", aud, false,
				      now, &jwt, &e),
		  -EACCES);
	CHECK_INT(auth_cert_assertion("/nonexistent.pem", NULL, "client-1", aud,
				      false, now, &jwt, &e),
		  -EACCES);
	CHECK_NULL(jwt);

	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", dir);
	}
	return CHECK_DONE();
}
