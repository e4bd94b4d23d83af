/*
 * fuzz.h -- helpers shared by the libFuzzer targets of tests/fuzz.
 *
 * Every target is one file with LLVMFuzzerTestOneInput: it feeds the bytes
 * to one parser of outside input (what Resource Manager, Storage or a token
 * endpoint sends, or a name a user types), checks the invariants the
 * parser's header promises, and frees everything (LeakSanitizer runs at
 * the end of each input).  A broken invariant calls FUZZ_ASSERT, which
 * aborts so libFuzzer saves the input as a crash.
 */
#ifndef RPFS_FUZZ_H
#define RPFS_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ASSERT(cond)                                                      \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: invariant broken: %s\n",       \
				__FILE__, __LINE__, #cond);                    \
			abort();                                               \
		}                                                              \
	} while (0)

/*
 * Known bugs, reported and reproduced under tests/fuzz/crashes/: run.sh
 * replays those reproducers without this, then fuzzes with
 * RPFS_FUZZ_SKIP_KNOWN=1 so that the search goes past a known bug instead
 * of finding it again at once.  Each use names the bug; remove it when
 * the bug is fixed.
 */
static inline int fuzz_skip_known(void)
{
	static int v = -1;

	if (v < 0) {
		const char *e = getenv("RPFS_FUZZ_SKIP_KNOWN");

		v = e && *e == '1';
	}
	return v;
}

/* The input as a NUL-terminated heap string (ASan sees its exact end). */
static inline char *fuzz_str(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/*
 * Split the input at the first occurrence of sep: *rest points after it
 * (and *restlen is its size), or is NULL when sep is absent.  Returns the
 * first part as a heap string.
 */
static inline char *fuzz_split(const uint8_t *data, size_t size,
			       const char *sep, const uint8_t **rest,
			       size_t *restlen)
{
	size_t sl = strlen(sep);

	for (size_t i = 0; i + sl <= size; i++) {
		if (memcmp(data + i, sep, sl) == 0) {
			*rest = data + i + sl;
			*restlen = size - i - sl;
			return fuzz_str(data, i);
		}
	}
	*rest = NULL;
	*restlen = 0;
	return fuzz_str(data, size);
}

/* A string that ends at its NUL within max bytes. */
static inline int fuzz_terminated(const char *s, size_t max)
{
	return memchr(s, '\0', max) != NULL;
}

#endif
