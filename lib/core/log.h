/* log.h - one-line structured logging to stderr.
 *
 * Lines look like `2026-11-22T10:00:00.123Z INFO  [req-id] message`.  The
 * request id ties every line of one request together.  Never pass a secret,
 * key material or a plaintext to these functions. */
#ifndef KMSD_CORE_LOG_H
#define KMSD_CORE_LOG_H

typedef enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 } log_level;

/* Set the lowest level written (default LOG_INFO). Thread-safe. */
void log_set_level(log_level level);

/* Parse "debug", "info", "warn" or "error"; returns -1 when unknown. */
int log_level_parse(const char *name);

/* Write one line. `request_id` may be NULL. Thread-safe; lines never interleave. */
void log_msg(log_level level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
