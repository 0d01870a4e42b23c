/* arn.h - Amazon Resource Names: parse, format, and build KMS key/alias ARNs.
 *
 * ARNs reach kmsd from callers (KeyId parameters, key policies, credentials
 * files), so parsing is strict and bounded: a malformed ARN is an
 * InvalidArnException, never a crash or a silent truncation. */
#ifndef KMSD_AWS_ARN_H
#define KMSD_AWS_ARN_H

#include <stddef.h>

#include "core/kerr.h"

#define ARN_MAX 2048          /* longest ARN accepted (the KMS model's KeyIdType max) */
#define ARN_PARTITION_MAX 32
#define ARN_SERVICE_MAX 64
#define ARN_REGION_MAX 64
#define ARN_ACCOUNT_MAX 12    /* empty or exactly 12 digits */

/* The five parts after "arn:".  Every field is NUL-terminated. */
typedef struct arn_parts {
  char partition[ARN_PARTITION_MAX + 1]; /* "aws", "aws-cn", ... */
  char service[ARN_SERVICE_MAX + 1];     /* "kms", "iam", ... */
  char region[ARN_REGION_MAX + 1];       /* may be empty (iam) */
  char account[ARN_ACCOUNT_MAX + 1];     /* empty or 12 digits */
  char resource[ARN_MAX + 1];            /* "key/1234...", "alias/foo", "user/bob" */
} arn_parts;

/* Split `s` (NUL-terminated, at most ARN_MAX characters) into *out.
 * Partition and service must be non-empty [a-z0-9-]; region is [a-z0-9-]
 * (may be empty); account is empty or 12 digits; resource is non-empty
 * printable ASCII.  Returns KERR_OK, or KERR_INVALID_ARN with a message
 * naming the problem; *out is then unspecified. */
kerr_code arn_parse(const char *s, arn_parts *out, kerr *err);

/* Write "arn:partition:service:region:account:resource" into out.
 * Returns KERR_OK, or KERR_INVALID_ARN if it does not fit in out_size
 * (out then holds an empty string). */
kerr_code arn_format(const arn_parts *a, char *out, size_t out_size, kerr *err);

/* Build arn:aws:kms:REGION:ACCOUNT:key/KEY_ID into out (ARN_MAX+1 bytes is
 * always enough).  Returns KERR_INVALID_ARN if an input is empty, the
 * account is not 12 digits, or the result does not fit; out is then "". */
kerr_code arn_kms_key(const char *region, const char *account, const char *key_id, char *out,
                      size_t out_size, kerr *err);

/* Build arn:aws:kms:REGION:ACCOUNT:alias/NAME.  `alias_name` may be given
 * with or without its "alias/" prefix (the KMS API's AliasName carries it).
 * Errors as for arn_kms_key. */
kerr_code arn_kms_alias(const char *region, const char *account, const char *alias_name,
                        char *out, size_t out_size, kerr *err);

/* Parse a KMS ARN: service "kms" and a resource "key/ID" or "alias/NAME".
 * On success *out holds the parts, and *is_alias (may be NULL) is 1 for an
 * alias ARN; the key id or alias name is out->resource after its '/'
 * (see arn_resource_id).  Else KERR_INVALID_ARN. */
kerr_code arn_parse_kms(const char *s, arn_parts *out, int *is_alias, kerr *err);

/* The part of a resource after its first '/' ("key/abc" -> "abc"), or the
 * whole resource when it has none.  Points into `a`. */
const char *arn_resource_id(const arn_parts *a);

/* Nonzero when `s` is exactly 12 ASCII digits. */
int arn_is_account_id(const char *s);

#endif
