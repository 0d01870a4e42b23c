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

/* `*dst` = the environment variable `env` when set (replacing what the
 * profile said), else what the profile said. */
static kerr_code prefer_env(char **dst, const char *env, kerr *err) {
  const char *v = env_value(env);
  if (v == NULL)
    return KERR_OK;
  free(*dst);
  *dst = strdup(v);
  return *dst != NULL ? KERR_OK : kerr_set(err, KERR_INTERNAL, "out of memory");
}

kerr_code kms_settings_load(const char *profile, kms_settings *out, kerr *err) {
  static const char *const keys[] = {"output", "cli_timestamp_format", "cli_binary_format", "cli_pager"};
  char *values[4];
  kerr_code rc;
  memset(out, 0, sizeof *out);
  /* One read of the config file for every setting. */
  rc = aws_config_settings(profile, keys, 4, values, err);
  if (rc != KERR_OK)
    return rc;
  out->output = values[0];
  out->timestamp_format = values[1];
  out->binary_format = values[2];
  out->pager = values[3];
  rc = prefer_env(&out->output, "AWS_DEFAULT_OUTPUT", err);
  /* AWS_PAGER wins over the profile, which wins over PAGER.  An empty
   * AWS_PAGER means "no pager", so it is looked at even when empty. */
  const char *aws_pager = getenv("AWS_PAGER");
  if (rc == KERR_OK && aws_pager != NULL) {
    free(out->pager);
    out->pager = strdup(aws_pager);
    if (out->pager == NULL)
      rc = kerr_set(err, KERR_INTERNAL, "out of memory");
  } else if (rc == KERR_OK && out->pager == NULL) {
    rc = prefer_env(&out->pager, "PAGER", err);
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
