/* log.c - stderr logger; one write(2) per line so concurrent lines never mix. */
#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_min_level = LOG_INFO;

void log_set_level(log_level level) { atomic_store(&log_min_level, (int)level); }

int log_level_parse(const char *name) {
  static const char *names[] = {"debug", "info", "warn", "error"};
  for (int i = 0; i < 4; i++)
    if (name && strcmp(name, names[i]) == 0) return i;
  return -1;
}

void log_msg(log_level level, const char *request_id, const char *fmt, ...) {
  static const char *tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
  if ((int)level < atomic_load(&log_min_level)) return;

  char line[4096];
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%s] ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, (long)(tv.tv_usec / 1000), tags[level & 3],
                   request_id ? request_id : "-");
  if (n < 0) return;
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
  if (len > sizeof line - 2) len = sizeof line - 2;
  /* Control characters from callers' data must not forge extra log lines. */
  for (size_t i = (size_t)n; i < len; i++)
    if ((unsigned char)line[i] < 0x20) line[i] = ' ';
  line[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
}
