/*
 * err.h -- how a failure travels from net/ up to the FUSE layer.
 *
 * Every net/ function returns 0 on success or a negative errno.  When it
 * fails it may also fill a struct rp_err with what Azure said (HTTP status,
 * Azure's error code and message) so that fs/, which alone turns failures
 * into FUSE replies, can log a line a user can act on.  The struct is plain
 * data on the caller's stack: no allocation, safe to pass NULL.
 */
#ifndef RPFS_ERR_H
#define RPFS_ERR_H

struct rp_err {
	int http_status;   /* 0 when the failure was not an HTTP answer */
	char code[96];	   /* Azure's error code, or a short local one */
	char message[512]; /* Azure's message, or ours; never holds a secret */
};

/* Reset to "no error". Accepts NULL. */
void rp_err_clear(struct rp_err *e);

/* Record a failure. Accepts NULL e. code may be NULL. */
void rp_err_set(struct rp_err *e, int http_status, const char *code,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * The errno a user would guess for an HTTP status and Azure error code
 * (SPEC section 3): 404 ENOENT, 401/403 EACCES, 409 EEXIST or EBUSY,
 * 400 EINVAL, 429/5xx after retries EAGAIN or EIO.  Returns a positive
 * errno.
 */
int rp_errno_from_http(int http_status, const char *code);

#endif
