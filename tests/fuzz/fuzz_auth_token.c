/*
 * fuzz_auth_token.c -- what a token endpoint answers (OAuth v2 / v1,
 * managed identity, instance metadata: auth_parse_token_response), what
 * `az account get-access-token -o json` prints (auth_parse_cli_output),
 * and the exp claim of a JWT (auth_jwt_exp).  A token accepted must be
 * non-empty printable ASCII without spaces (it goes into a header line).
 */
#include <errno.h>
#include <time.h>

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
