/* settings.c - the AWS CLI settings of the environment and the profile; see
 * settings.h.  The profile's files are read by lib/client/aws_config, the
 * one reader of the AWS configuration, so `kms`, hsm-cli and libkms agree on
 * which profile and which file a value comes from. */
#include "settings.h"

#include <stdlib.h>
#include <string.h>

#include "client/aws_config.h"

static const char *env_value(const char *name) {
  const char *v = getenv(name);
  return v != NULL && v[0] != '\0' ? v : NULL;
}

/* `*dst` = the environment variable `env` if set, else the profile's `key`. */
static kerr_code pick(char **dst, const char *env, const char *profile, const char *key, kerr *err) {
  const char *v = env != NULL ? env_value(env) : NULL;
  if (v != NULL) {
    *dst = strdup(v);
    return *dst != NULL ? KERR_OK : kerr_set(err, KERR_INTERNAL, "out of memory");
  }
  return aws_config_setting(profile, key, dst, err);
}

kerr_code kms_settings_load(const char *profile, kms_settings *out, kerr *err) {
  kerr_code rc;
  memset(out, 0, sizeof *out);
  rc = pick(&out->output, "AWS_DEFAULT_OUTPUT", profile, "output", err);
  if (rc == KERR_OK)
    rc = pick(&out->timestamp_format, NULL, profile, "cli_timestamp_format", err);
  if (rc == KERR_OK)
    rc = pick(&out->binary_format, NULL, profile, "cli_binary_format", err);
  /* AWS_PAGER wins over the profile, which wins over PAGER.  An empty
   * AWS_PAGER means "no pager", so it is looked at even when empty. */
  if (rc == KERR_OK) {
    const char *aws_pager = getenv("AWS_PAGER");
    if (aws_pager != NULL) {
      out->pager = strdup(aws_pager);
      if (out->pager == NULL)
        rc = kerr_set(err, KERR_INTERNAL, "out of memory");
    } else {
      rc = pick(&out->pager, NULL, profile, "cli_pager", err);
      if (rc == KERR_OK && out->pager == NULL && env_value("PAGER") != NULL) {
        out->pager = strdup(env_value("PAGER"));
        if (out->pager == NULL)
          rc = kerr_set(err, KERR_INTERNAL, "out of memory");
      }
    }
  }
  return rc;
}

void kms_settings_free(kms_settings *s) {
  free(s->output);
  free(s->timestamp_format);
  free(s->binary_format);
  free(s->pager);
  memset(s, 0, sizeof *s);
}
