/* reply.h - a reply as the AWS CLI shows it: the model's members in the
 * model's order, timestamps as text.
 *
 * The AWS CLI does not print the service's JSON as it came: its parser
 * builds the result from the operation's output shape, so a member the model
 * does not name is left out, a member whose value is null is left out, and
 * the members of every structure come in the model's order, whatever order
 * the service wrote them in.  `kms` must print the same bytes, so it rebuilds
 * the reply the same way.
 *
 * On the wire a KMS timestamp is a JSON number of seconds since the epoch
 * (CreationDate: 1764761234.123).  The AWS CLI v2 prints it as ISO 8601 in the
 * local time zone by default ("2025-12-03T11:27:14.123000+00:00", Python's
 * datetime.isoformat: microseconds only when not zero) and as sent with
 * `cli_timestamp_format = wire`.  Which members are timestamps only the model
 * knows, so the reply is walked along its output shape. */
#ifndef KMSD_CLI_REPLY_H
#define KMSD_CLI_REPLY_H

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

/* The reply `reply` (borrowed) rebuilt along `shape` (the operation's output
 * shape; NULL: an operation without output, which shows as an empty object):
 * structures keep the members the shape names, in its order, without nulls;
 * lists and maps keep every item, in order; timestamps become text when
 * `format` is CLI_TS_ISO8601.  A value whose JSON type is not what the shape
 * says is kept as it came (the reply is shown rather than refused for a
 * detail).  *out is a new reference owned by the caller.  KERR_INTERNAL only
 * when out of memory; *out is NULL then. */
kerr_code cli_reply_shape(const json_t *reply, const model_shape *shape, cli_ts_format format, json_t **out,
                          kerr *err);

/* ISO 8601 text of `seconds` since the epoch in the local time zone, as
 * Python's datetime.fromtimestamp(seconds, tzlocal()).isoformat() writes it,
 * into `buf` (at least 40 bytes).  Returns buf, or NULL when the time cannot be
 * represented (beyond year 9999 or before year 1). */
const char *cli_ts_iso8601(double seconds, char *buf, size_t size);

#endif
