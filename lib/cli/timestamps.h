/* timestamps.h - how `kms` prints the timestamps of a reply.
 *
 * On the wire a KMS timestamp is a JSON number of seconds since the epoch
 * (CreationDate: 1764761234.123).  The AWS CLI v2 prints it as ISO 8601 in the
 * local time zone by default ("2025-12-03T11:27:14.123000+00:00", Python's
 * datetime.isoformat: microseconds only when not zero) and as sent with
 * `cli_timestamp_format = wire`.  Which members are timestamps only the model
 * knows, so the reply is walked along its output shape. */
#ifndef KMSD_CLI_TIMESTAMPS_H
#define KMSD_CLI_TIMESTAMPS_H

#include <stddef.h>

#include <jansson.h>

#include "core/kerr.h"
#include "model/model.h"

typedef enum cli_ts_format {
  CLI_TS_ISO8601 = 0,  /* the default of the AWS CLI v2 */
  CLI_TS_WIRE = 1,     /* as sent ("wire"; the AWS CLI v1's "none") */
} cli_ts_format;

/* "iso8601" -> CLI_TS_ISO8601, "wire" or "none" -> CLI_TS_WIRE; KERR_VALIDATION
 * with the CLI's message otherwise. */
kerr_code cli_ts_format_parse(const char *name, cli_ts_format *out, kerr *err);

/* Rewrite, in place, every timestamp of `reply` that `shape` (the operation's
 * output shape; NULL: nothing to do) declares, as `format` says.  Members the
 * shape does not know and values that are not numbers are left as they are
 * (a reply is printed as received rather than refused for a detail).
 * KERR_INTERNAL only when out of memory. */
kerr_code cli_ts_rewrite(json_t *reply, const model_shape *shape, cli_ts_format format, kerr *err);

/* ISO 8601 text of `seconds` since the epoch in the local time zone, as
 * Python's datetime.fromtimestamp(seconds, tzlocal()).isoformat() writes it,
 * into `buf` (at least 40 bytes).  Returns buf, or NULL when the time cannot be
 * represented (beyond year 9999 or before year 1). */
const char *cli_ts_iso8601(double seconds, char *buf, size_t size);

#endif
