/* settings.h - the AWS CLI settings `kms` reads besides its options.
 *
 * A user of the AWS CLI keeps defaults in the profile (`output = table`,
 * `cli_timestamp_format = wire`, `cli_binary_format`, `cli_pager`) or in the
 * environment (AWS_DEFAULT_OUTPUT, AWS_PAGER); `kms` honours the same ones
 * with the same precedence: option, environment, profile, default. */
#ifndef KMS_SETTINGS_H
#define KMS_SETTINGS_H

#include "core/kerr.h"

typedef struct kms_settings {
  char *output;              /* AWS_DEFAULT_OUTPUT, else the profile's `output` */
  char *timestamp_format;    /* the profile's `cli_timestamp_format` */
  char *binary_format;       /* the profile's `cli_binary_format` */
  char *pager;               /* AWS_PAGER, else the profile's `cli_pager`, else PAGER; NULL: none set */
} kms_settings;

/* Read the settings of `profile` (NULL: the default profile as the AWS CLI
 * picks it), reading the config file once.  Fields not set stay NULL; a
 * profile the file lacks sets nothing (the client reports it).
 * KERR_VALIDATION when the config file cannot be read or parsed.  Free with
 * kms_settings_free (also after a failure). */
kerr_code kms_settings_load(const char *profile, kms_settings *out, kerr *err);

void kms_settings_free(kms_settings *s);

#endif
