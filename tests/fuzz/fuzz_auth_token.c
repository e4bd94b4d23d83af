/*
 * fuzz_auth_token.c -- what a token endpoint answers (OAuth v2 / v1,
 * managed identity, instance metadata: auth_parse_token_response), what
 * `az account get-access-token -o json` prints (auth_parse_cli_output),
 * and the exp claim of a JWT (auth_jwt_exp).  A token accepted must be
 * non-empty printable ASCII without spaces (it goes into a header line).
 */
#include <errno.h>
#include <stdio.h>
#include <time.h>

#include <json-c/json.h>

#include "auth_sources.h"
#include "fuzz.h"
#include "secret.h"

static void check_token(int rc, const struct secret *tok)
{
	const char *v = secret_value(tok);

	FUZZ_ASSERT(rc <= 0);
	if (rc)
		return;
	FUZZ_ASSERT(v && *v);
	for (const char *c = v; *c; c++)
		FUZZ_ASSERT((unsigned char)*c > 0x20 &&
			    (unsigned char)*c < 0x7f);
}

static int b64(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-' || c == '+')
		return 62;
	if (c == '_' || c == '/')
		return 63;
	return -1;
}

/*
 * Known bug 1: a number member expires_on / expires_in / exp that is a
 * double out of the range of long long (cast: undefined behaviour) or an
 * integer so large that now + it overflows.  jwt: s is a JWT whose
 * payload (second part, base64url) holds the JSON.  Known bug 5: a CLI
 * expiresOn whose year is near INT_MIN (y - 1900 overflows).
 */
static int huge_expiry(const char *s, int jwt)
{
	static const char *const keys[] = {"expires_on", "expires_in", "exp"};
	char *buf = NULL;
	json_object *o;
	int huge = 0;

	if (jwt) {
		const char *p = strchr(s, '.'), *q;
		unsigned acc = 0;
		int bits = 0;
		size_t n = 0;

		if (!p || !(q = strchr(++p, '.')))
			return 0;
		buf = malloc((size_t)(q - p) + 1);
		FUZZ_ASSERT(buf != NULL);
		for (; p < q && b64((unsigned char)*p) >= 0; p++) {
			acc = acc << 6 | (unsigned)b64((unsigned char)*p);
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				buf[n++] = (char)(acc >> bits);
			}
		}
		buf[n] = '\0';
		s = buf;
	}
	o = json_tokener_parse(s);
	for (size_t i = 0; o && i < 3; i++) {
		json_object *v;
		double d;

		if (!json_object_is_type(o, json_type_object) ||
		    !json_object_object_get_ex(o, keys[i], &v))
			continue;
		if (json_object_is_type(v, json_type_string))
			d = strtod(json_object_get_string(v), NULL);
		else
			d = json_object_get_double(v);
		if (!(d > -1e15 && d < 1e15))
			huge = 1;
	}
	/* ... and a CLI expiresOn with a field beyond int once offset
	 * (y - 1900, mo - 1). */
	if (o && json_object_is_type(o, json_type_object)) {
		json_object *v;
		long long f[6];

		if (json_object_object_get_ex(o, "expiresOn", &v) &&
		    json_object_is_type(v, json_type_string) &&
		    sscanf(json_object_get_string(v),
			   "%lld-%lld-%lld %lld:%lld:%lld", &f[0], &f[1], &f[2],
			   &f[3], &f[4], &f[5]) == 6)
			for (int i = 0; i < 6; i++)
				if (f[i] < -1000000000LL || f[i] > 1000000000LL)
					huge = 1;
	}
	json_object_put(o);
	free(buf);
	return huge;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const time_t now = 1767323045;
	struct secret tok = {0};
	struct rp_err err;
	time_t exp = 0;
	char *s;
	int rc;

	if (size < 1)
		return 0;
	s = fuzz_str(data + 1, size - 1);
	/* Known bug 1: a huge expires_on / expires_in / exp. */
	if (fuzz_skip_known() && huge_expiry(s, data[0] % 3 == 2)) {
		free(s);
		return 0;
	}
	switch (data[0] % 3) {
	case 0:
		rc = auth_parse_token_response(s, now, &tok, &exp, &err);
		check_token(rc, &tok);
		break;
	case 1:
		rc = auth_parse_cli_output(s, now, &tok, &exp, &err);
		check_token(rc, &tok);
		break;
	default:
		(void)auth_jwt_exp(s);
		break;
	}
	secret_clear(&tok);
	free(s);
	return 0;
}
