/* arn.c - strict, bounded ARN parsing and formatting (see arn.h).
 *
 * Key policies, KeyId parameters and credential files all carry ARNs; one
 * parser keeps their rules identical everywhere. */
#include "aws/arn.h"

#include <stdio.h>
#include <string.h>

int arn_is_account_id(const char *s) {
  size_t i;
  if (!s) return 0;
  for (i = 0; i < ARN_ACCOUNT_MAX; i++)
    if (s[i] < '0' || s[i] > '9') return 0;
  return s[ARN_ACCOUNT_MAX] == '\0';
}

/* Lowercase letters, digits and '-': the alphabet of partitions, services and regions. */
static int is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* Copy the field [start, end) into dst (cap bytes + NUL) if every character
 * passes `ok`; returns 0 or -1. */
static int copy_field(const char *start, const char *end, char *dst, size_t cap,
                      int (*ok)(char)) {
  size_t n = (size_t)(end - start), i;
  if (n > cap) return -1;
  for (i = 0; i < n; i++)
    if (ok && !ok(start[i])) return -1;
  memcpy(dst, start, n);
  dst[n] = '\0';
  return 0;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

kerr_code arn_parse(const char *s, arn_parts *out, kerr *err) {
  const char *p, *colon[5];
  size_t len, i, n;
  int k = 0;

  if (!s || !out) return kerr_set(err, KERR_INVALID_ARN, "ARN is missing");
  len = strnlen(s, ARN_MAX + 1);
  if (len > ARN_MAX) return kerr_set(err, KERR_INVALID_ARN, "ARN is longer than %d characters", ARN_MAX);
  if (strncmp(s, "arn:", 4) != 0)
    return kerr_set(err, KERR_INVALID_ARN, "ARN must start with 'arn:'");
  /* The resource may itself contain ':' (e.g. some services), so only the
   * first five separators after "arn" are structural. */
  for (p = s + 4; *p && k < 5; p++)
    if (*p == ':') colon[k++] = p;
  if (k < 4) return kerr_set(err, KERR_INVALID_ARN, "ARN must have the form arn:partition:service:region:account:resource");
  /* colon[0] ends partition, [1] service, [2] region, [3] account. */
  if (colon[0] == s + 4 ||
      copy_field(s + 4, colon[0], out->partition, ARN_PARTITION_MAX,
                 is_name_char) != 0)
    return kerr_set(err, KERR_INVALID_ARN, "ARN has an invalid partition");
  if (colon[1] == colon[0] + 1 ||
      copy_field(colon[0] + 1, colon[1], out->service, ARN_SERVICE_MAX,
                 is_name_char) != 0)
    return kerr_set(err, KERR_INVALID_ARN, "ARN has an invalid service");
  if (copy_field(colon[1] + 1, colon[2], out->region, ARN_REGION_MAX,
                 is_name_char) != 0)
    return kerr_set(err, KERR_INVALID_ARN, "ARN has an invalid region");
  n = (size_t)(colon[3] - colon[2] - 1);
  if ((n != 0 && n != ARN_ACCOUNT_MAX) ||
      copy_field(colon[2] + 1, colon[3], out->account, ARN_ACCOUNT_MAX, is_digit) != 0)
    return kerr_set(err, KERR_INVALID_ARN, "ARN has an invalid account id");
  p = colon[3] + 1;
  n = len - (size_t)(p - s);
  if (n == 0) return kerr_set(err, KERR_INVALID_ARN, "ARN has an empty resource");
  for (i = 0; i < n; i++)
    if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
      return kerr_set(err, KERR_INVALID_ARN, "ARN resource contains an invalid character");
  memcpy(out->resource, p, n);
  out->resource[n] = '\0';
  return KERR_OK;
}

kerr_code arn_format(const arn_parts *a, char *out, size_t out_size, kerr *err) {
  int n;
  if (!a || !out || out_size == 0) return kerr_set(err, KERR_INVALID_ARN, "no room for ARN");
  n = snprintf(out, out_size, "arn:%s:%s:%s:%s:%s", a->partition, a->service, a->region,
               a->account, a->resource);
  if (n < 0 || (size_t)n >= out_size || (size_t)n > ARN_MAX) {
    out[0] = '\0';
    return kerr_set(err, KERR_INVALID_ARN, "ARN is longer than %d characters", ARN_MAX);
  }
  return KERR_OK;
}

/* Shared body of arn_kms_key and arn_kms_alias. */
static kerr_code build_kms(const char *region, const char *account, const char *kind,
                           const char *id, char *out, size_t out_size, kerr *err) {
  arn_parts a;
  size_t i;
  if (out && out_size) out[0] = '\0';
  if (!region || !*region || strlen(region) > ARN_REGION_MAX)
    return kerr_set(err, KERR_INVALID_ARN, "ARN needs a valid region");
  for (i = 0; region[i]; i++)
    if (!is_name_char(region[i])) return kerr_set(err, KERR_INVALID_ARN, "ARN needs a valid region");
  if (!arn_is_account_id(account))
    return kerr_set(err, KERR_INVALID_ARN, "ARN needs a 12-digit account id");
  if (!id || !*id) return kerr_set(err, KERR_INVALID_ARN, "ARN needs a %s identifier", kind);
  if (strlen(id) + strlen(kind) + 1 > ARN_MAX)
    return kerr_set(err, KERR_INVALID_ARN, "ARN is longer than %d characters", ARN_MAX);
  strcpy(a.partition, "aws");
  strcpy(a.service, "kms");
  strcpy(a.region, region);
  strcpy(a.account, account);
  {
    size_t klen = strlen(kind), ilen = strlen(id);
    memcpy(a.resource, kind, klen);
    a.resource[klen] = '/';
    memcpy(a.resource + klen + 1, id, ilen + 1);
  }
  return arn_format(&a, out, out_size, err);
}

kerr_code arn_kms_key(const char *region, const char *account, const char *key_id, char *out,
                      size_t out_size, kerr *err) {
  return build_kms(region, account, "key", key_id, out, out_size, err);
}

kerr_code arn_kms_alias(const char *region, const char *account, const char *alias_name,
                        char *out, size_t out_size, kerr *err) {
  if (alias_name && strncmp(alias_name, "alias/", 6) == 0) alias_name += 6;
  return build_kms(region, account, "alias", alias_name, out, out_size, err);
}

const char *arn_resource_id(const arn_parts *a) {
  const char *slash = strchr(a->resource, '/');
  return slash ? slash + 1 : a->resource;
}

kerr_code arn_parse_kms(const char *s, arn_parts *out, int *is_alias, kerr *err) {
  kerr_code rc = arn_parse(s, out, err);
  if (rc) return rc;
  if (strcmp(out->service, "kms") != 0)
    return kerr_set(err, KERR_INVALID_ARN, "ARN does not name a KMS resource");
  if (!out->region[0] || !out->account[0])
    return kerr_set(err, KERR_INVALID_ARN, "KMS ARN needs a region and an account id");
  if (strncmp(out->resource, "key/", 4) == 0 && out->resource[4]) {
    if (is_alias) *is_alias = 0;
  } else if (strncmp(out->resource, "alias/", 6) == 0 && out->resource[6]) {
    if (is_alias) *is_alias = 1;
  } else {
    return kerr_set(err, KERR_INVALID_ARN, "KMS ARN resource must be key/ID or alias/NAME");
  }
  return KERR_OK;
}
