/* timestamps.c - reply timestamps as `kms` prints them; see timestamps.h.
 *
 * The conversion follows Python's datetime.fromtimestamp, which is what the
 * AWS CLI's output is made of: the fraction of a second is rounded to whole
 * microseconds half to even, a fraction that rounds up to a whole second
 * carries into the seconds, and the zone offset is the local one at that
 * instant (tm_gmtoff), printed as +HH:MM (and :SS when a zone has seconds). */
#include "cli/timestamps.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Deepest nesting of shapes followed; KMS outputs nest four deep. */
#define TS_MAX_DEPTH 32

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

static kerr_code rewrite(json_t *value, const model_shape *shape, int depth, kerr *err);

/* Rewrite one value of `shape` found in a container: a timestamp becomes its
 * text through `replace`, anything else is walked.  `replace` stores the new
 * value where the old one was (object member or array slot). */
typedef int (*replace_fn)(json_t *container, const void *where, json_t *fresh);

static int replace_member(json_t *container, const void *where, json_t *fresh) {
  return json_object_set_new(container, (const char *)where, fresh);
}

static int replace_item(json_t *container, const void *where, json_t *fresh) {
  return json_array_set_new(container, *(const size_t *)where, fresh);
}

static kerr_code visit(json_t *container, const void *where, replace_fn replace, json_t *v,
                       const model_shape *shape, int depth, kerr *err) {
  char text[48];
  if (shape->type != MODEL_TIMESTAMP)
    return rewrite(v, shape, depth + 1, err);
  if (!json_is_number(v) || cli_ts_iso8601(json_number_value(v), text, sizeof text) == NULL)
    return KERR_OK;
  if (replace(container, where, json_string(text)) != 0)
    return kerr_set(err, KERR_INTERNAL, "out of memory");
  return KERR_OK;
}

static kerr_code rewrite(json_t *value, const model_shape *shape, int depth, kerr *err) {
  kerr_code rc = KERR_OK;
  if (shape == NULL || value == NULL || depth > TS_MAX_DEPTH)
    return KERR_OK;
  if (shape->type == MODEL_STRUCTURE && json_is_object(value)) {
    for (size_t i = 0; i < shape->member_count && rc == KERR_OK; i++) {
      json_t *v = json_object_get(value, shape->members[i].name);
      if (v != NULL)
        rc = visit(value, shape->members[i].name, replace_member, v, shape->members[i].shape, depth, err);
    }
  } else if (shape->type == MODEL_LIST && json_is_array(value)) {
    for (size_t i = 0; i < json_array_size(value) && rc == KERR_OK; i++)
      rc = visit(value, &i, replace_item, json_array_get(value, i), shape->member, depth, err);
  } else if (shape->type == MODEL_MAP && json_is_object(value)) {
    const char *key;
    json_t *item;
    json_object_foreach(value, key, item) {
      rc = visit(value, key, replace_member, item, shape->value, depth, err);
      if (rc != KERR_OK)
        break;
    }
  }
  return rc;
}

kerr_code cli_ts_rewrite(json_t *reply, const model_shape *shape, cli_ts_format format, kerr *err) {
  if (format == CLI_TS_WIRE)
    return KERR_OK;
  return rewrite(reply, shape, 0, err);
}
