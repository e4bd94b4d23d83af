/*
 * fuzz_blob_error.c -- a Storage error body (<Error><Code/><Message/>)
 * through blob_parse_error_xml with output buffers of fuzzer-chosen sizes
 * (including 0 and 1), allocated exactly so that ASan catches a write one
 * byte past them.  Outputs must stay NUL-terminated and on one line.
 */
#include "blob.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t codelen, msglen;
	char *code, *msg;

	if (size < 2)
		return 0;
	codelen = data[0] % 100;
	msglen = data[1];
	data += 2;
	size -= 2;
	code = malloc(codelen ? codelen : 1);
	msg = malloc(msglen ? msglen : 1);
	FUZZ_ASSERT(code && msg);
	(void)blob_parse_error_xml((const char *)data, size, code, codelen, msg,
				   msglen);
	if (codelen) {
		FUZZ_ASSERT(fuzz_terminated(code, codelen));
		FUZZ_ASSERT(!strchr(code, '\n'));
	}
	if (msglen) {
		FUZZ_ASSERT(fuzz_terminated(msg, msglen));
		FUZZ_ASSERT(!strchr(msg, '\n') && !strchr(msg, '\r'));
	}
	free(code);
	free(msg);
	return 0;
}
