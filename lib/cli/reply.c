/* reply.c - a reply rebuilt along its output shape, as the AWS CLI shows it;
 * see reply.h.
 *
 * Timestamps follow Python's datetime.fromtimestamp, which is what the AWS
 * CLI's output is made of: the fraction of a second is rounded to whole
 * microseconds half to even, a fraction that rounds up to a whole second
 * carries into the seconds, and the zone offset is the local one at that
 * instant (tm_gmtoff), printed as +HH:MM (and :SS when a zone has seconds). */
#include "cli/reply.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Deepest nesting of shapes followed; KMS outputs nest four deep. */
#define REPLY_MAX_DEPTH 32

kerr_code cli_ts_format_parse(const char *name, cli_ts_format *out, kerr *err) {
  if (strcmp(name, "iso8601") == 0) {
    *out = CLI_TS_ISO8601;
    return KERR_OK;
  }
  if (strcmp(name, "wire") == 0 || strcmp(name, "none") == 0) {
    *out = CLI_TS_WIRE;
    return KERR_OK;
  }
  return kerr_set(err, KERR_VALIDATION, "Unknown cli_timestamp_format value: %s, valid values are: wire or iso8601",
                  name);
}

const char *cli_ts_iso8601(double seconds, char *buf, size_t size) {
  double whole;
  double frac = modf(seconds, &whole);
  double us = nearbyint(frac * 1e6);  /* the default rounding mode: half to even */
  if (us >= 1e6) {
    whole += 1;
    us -= 1e6;
  } else if (us < 0) {
    whole -= 1;
    us += 1e6;
  }
  if (!isfinite(whole) || whole < -62135596800.0 || whole > 253402300799.0)
    return NULL;
  time_t t = (time_t)whole;
  struct tm tm;
  if (localtime_r(&t, &tm) == NULL || tm.tm_year + 1900 < 1 || tm.tm_year + 1900 > 9999)
    return NULL;
  char date[64], micro[16] = "", zone[32];
  if (strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
    return NULL;
  if (tm.tm_year + 1900 < 1000) /* strftime's %Y does not pad; Python does */
    snprintf(date, sizeof date, "%04d-%02d-%02dT%02d:%02d:%02d", (tm.tm_year + 1900) % 10000, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
  if (us > 0)
    snprintf(micro, sizeof micro, ".%06ld", (long)us);
  long off = tm.tm_gmtoff;
  char sign = off < 0 ? '-' : '+';
  if (off < 0)
    off = -off;
  int hh = (int)(off / 3600 % 100), mm = (int)(off / 60 % 60), ss = (int)(off % 60);
  if (ss != 0)
    snprintf(zone, sizeof zone, "%c%02d:%02d:%02d", sign, hh, mm, ss);
  else
    snprintf(zone, sizeof zone, "%c%02d:%02d", sign, hh, mm);
  int n = snprintf(buf, size, "%s%s%s", date, micro, zone);
  return (n < 0 || (size_t)n >= size) ? NULL : buf;
}

/* A copy of `v` shaped by `shape`; NULL when out of memory. */
static json_t *shape_value(const json_t *v, const model_shape *shape, cli_ts_format format, int depth) {
  if (shape == NULL || depth > REPLY_MAX_DEPTH)
    return json_deep_copy(v);
  switch (shape->type) {
  case MODEL_TIMESTAMP: {
    char text[48];
    if (format == CLI_TS_ISO8601 && json_is_number(v) &&
        cli_ts_iso8601(json_number_value(v), text, sizeof text) != NULL)
      return json_string(text);
    return json_deep_copy(v);
  }
  case MODEL_STRUCTURE: {
    if (!json_is_object(v))
      return json_deep_copy(v);
    json_t *out = json_object();
    for (size_t i = 0; out != NULL && i < shape->member_count; i++) {
      const json_t *m = json_object_get(v, shape->members[i].name);
      if (m == NULL || json_is_null(m))
        continue;
      json_t *copy = shape_value(m, shape->members[i].shape, format, depth + 1);
      if (copy == NULL || json_object_set_new(out, shape->members[i].name, copy) != 0) {
        json_decref(out);
        out = NULL;
      }
    }
    return out;
  }
  case MODEL_LIST: {
    if (!json_is_array(v))
      return json_deep_copy(v);
    json_t *out = json_array();
    for (size_t i = 0; out != NULL && i < json_array_size(v); i++) {
      json_t *copy = shape_value(json_array_get(v, i), shape->member, format, depth + 1);
      if (copy == NULL || json_array_append_new(out, copy) != 0) {
        json_decref(out);
        out = NULL;
      }
    }
    return out;
  }
  case MODEL_MAP: {
    if (!json_is_object(v))
      return json_deep_copy(v);
    json_t *out = json_object();
    const char *key;
    json_t *item;
    json_object_foreach((json_t *)v, key, item) {
      json_t *copy = shape_value(item, shape->value, format, depth + 1);
      if (out == NULL || copy == NULL || json_object_set_new(out, key, copy) != 0) {
        json_decref(out);
        return NULL;
      }
    }
    return out;
  }
  default:
    return json_deep_copy(v);
  }
}

kerr_code cli_reply_shape(const json_t *reply, const model_shape *shape, cli_ts_format format, json_t **out,
                          kerr *err) {
  *out = shape != NULL ? shape_value(reply, shape, format, 0) : json_object();
  if (*out == NULL)
    return kerr_set(err, KERR_INTERNAL, "out of memory");
  return KERR_OK;
}
