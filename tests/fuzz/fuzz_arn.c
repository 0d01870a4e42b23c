/* fuzz_arn.c - libFuzzer target for ARN parsing (aws/arn.h): KeyId
 * parameters, key policies and the credentials file all hand it caller text.
 *
 * The input is the ARN text (bytes after a NUL are ignored, as they would be
 * in a C string).  Invariants:
 *   - arn_parse either fails with KERR_INVALID_ARN and a message, or yields
 *     parts obeying arn.h (alphabets, a 12-digit or empty account, a
 *     non-empty printable resource) that arn_format turns back into exactly
 *     the input, and that parse again to the same parts;
 *   - arn_parse_kms accepts only what arn_parse accepts, with service "kms",
 *     a region, an account and a key/ or alias/ resource, and its key id or
 *     alias name rebuilds the same ARN through arn_kms_key / arn_kms_alias
 *     when the partition is "aws". */
#include <string.h>

#include "aws/arn.h"
#include "fuzz_common.h"

static int all_name_chars(const char *s) {
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-')) return 0;
  return 1;
}

static int printable(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e) return 0;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = fuzz_strndup(data, size);
  char *formatted = malloc(ARN_MAX + 1), *rebuilt = malloc(ARN_MAX + 1);
  arn_parts *a = malloc(sizeof *a), *b = malloc(sizeof *b);
  kerr err;
  kerr_code rc, kms_rc;
  int is_alias = -1;

  if (!formatted || !rebuilt || !a || !b) abort();
  kerr_clear(&err);
  rc = arn_parse(s, a, &err);
  if (rc != KERR_OK) {
    FUZZ_CHECK(rc == KERR_INVALID_ARN, "a rejected ARN is InvalidArn");
    FUZZ_CHECK(fuzz_msg_ok(err.msg, sizeof err.msg), "rejection has a message");
    kms_rc = arn_parse_kms(s, b, &is_alias, &err);
    FUZZ_CHECK(kms_rc == KERR_INVALID_ARN, "arn_parse_kms rejects what arn_parse rejects");
    goto out;
  }
  FUZZ_CHECK(strlen(s) <= ARN_MAX, "accepted ARN within ARN_MAX");
  FUZZ_CHECK(a->partition[0] && all_name_chars(a->partition), "partition alphabet");
  FUZZ_CHECK(a->service[0] && all_name_chars(a->service), "service alphabet");
  FUZZ_CHECK(all_name_chars(a->region), "region alphabet");
  FUZZ_CHECK(a->account[0] == '\0' || arn_is_account_id(a->account), "account is empty or 12 digits");
  FUZZ_CHECK(a->resource[0] && printable(a->resource), "resource is non-empty printable ASCII");

  FUZZ_CHECK(arn_format(a, formatted, ARN_MAX + 1, &err) == KERR_OK, "parsed ARN formats");
  FUZZ_CHECK(strcmp(formatted, s) == 0, "format(parse(s)) == s");
  FUZZ_CHECK(arn_parse(formatted, b, &err) == KERR_OK, "formatted ARN parses");
  FUZZ_CHECK(strcmp(a->partition, b->partition) == 0 && strcmp(a->service, b->service) == 0 &&
                 strcmp(a->region, b->region) == 0 && strcmp(a->account, b->account) == 0 &&
                 strcmp(a->resource, b->resource) == 0,
             "parse(format(parts)) == parts");

  kms_rc = arn_parse_kms(s, b, &is_alias, &err);
  if (kms_rc == KERR_OK) {
    const char *id = arn_resource_id(b);
    FUZZ_CHECK(strcmp(b->service, "kms") == 0 && b->region[0] && b->account[0], "KMS ARN has scope");
    FUZZ_CHECK(is_alias == 0 || is_alias == 1, "is_alias is set");
    FUZZ_CHECK(strncmp(b->resource, is_alias ? "alias/" : "key/", is_alias ? 6 : 4) == 0,
               "resource kind matches is_alias");
    FUZZ_CHECK(id && *id, "KMS ARN names a key id or alias");
    if (strcmp(b->partition, "aws") == 0) {
      rc = is_alias ? arn_kms_alias(b->region, b->account, b->resource, rebuilt, ARN_MAX + 1, &err)
                    : arn_kms_key(b->region, b->account, id, rebuilt, ARN_MAX + 1, &err);
      FUZZ_CHECK(rc == KERR_OK, "a parsed KMS ARN rebuilds");
      FUZZ_CHECK(strcmp(rebuilt, s) == 0, "rebuilt KMS ARN equals the input");
    }
  } else {
    FUZZ_CHECK(kms_rc == KERR_INVALID_ARN, "a non-KMS ARN is InvalidArn");
    FUZZ_CHECK(fuzz_msg_ok(err.msg, sizeof err.msg), "rejection has a message");
  }
out:
  free(s);
  free(formatted);
  free(rebuilt);
  free(a);
  free(b);
  return 0;
}
