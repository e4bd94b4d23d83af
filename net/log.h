/*
 * log.h -- one logger for the whole program, and the redaction rules.
 *
 * Lines go to stderr in the foreground and to syslog when daemonised.
 * Nothing secret is ever passed to log_msg: URLs that may carry a SAS go
 * through log_redact_url first, and bearer tokens are never formatted at
 * all (see secret.h).  Thread-safe: a line is written with one call.
 */
#ifndef RPFS_LOG_H
#define RPFS_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_init(enum log_level level, bool to_syslog);
enum log_level log_level_get(void);
/* Parse "error", "warn", "info", "debug"; returns -1 when unknown. */
int log_level_parse(const char *name);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

/*
 * Copy url into out (size outlen, always NUL-terminated, truncated if
 * needed) with the value of every secret-bearing query parameter
 * (sig, skoid, sktid, ske, code, access_token, client_secret, ...)
 * replaced by "REDACTED".  Returns out.
 */
char *log_redact_url(const char *url, char *out, size_t outlen);

#endif
