/* aws_config.h - credentials, region and endpoint resolved the way the aws CLI does.
 *
 * Command-line clients of kmsd (hsm-cli, the kms CLI) must pick up exactly the
 * credentials an `aws` command would use in the same shell, so that a user who
 * can run `aws --endpoint-url ... kms ...` can run them too without any other
 * setup.  The rules follow botocore's credential chain and configuration
 * lookup (see docs/hsm-cli.md, "Credentials"):
 *
 *   profile      --profile, else AWS_DEFAULT_PROFILE, else AWS_PROFILE, else
 *                "default".  A profile named by --profile or the environment
 *                must exist in one of the two files.
 *   credentials  1. AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN
 *                   or AWS_SECURITY_TOKEN), unless --profile was given: an
 *                   explicit profile overrides the environment, as in botocore;
 *                2. aws_access_key_id / aws_secret_access_key / aws_session_token
 *                   of the profile in the shared credentials file
 *                   (AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials,
 *                   section [name]);
 *                3. the same keys in the config file (AWS_CONFIG_FILE, default
 *                   ~/.aws/config, section [profile name], or [default]).
 *   region       --region, AWS_REGION, AWS_DEFAULT_REGION, the profile's `region`.
 *   endpoint     --endpoint-url, AWS_ENDPOINT_URL, the profile's `endpoint_url`.
 *   ca bundle    --ca-bundle, AWS_CA_BUNDLE, the profile's `ca_bundle`.
 *   attempts     AWS_MAX_ATTEMPTS, the profile's `max_attempts` (a whole
 *                number from 1 to AWS_CONFIG_MAX_ATTEMPTS_LIMIT).
 *
 * A profile value in the credentials file wins over the same key in the config
 * file (botocore merges the two files that way).  Files are INI as Python's
 * configparser reads them: `key = value` or `key: value`, full-line `#`/`;`
 * comments, indented continuation lines (nested settings, ignored here),
 * keys case-insensitive, duplicate sections or keys rejected.
 *
 * Secrets (the secret key and the session token) live in secure memory and
 * are wiped by aws_config_free; they never appear in an error message. */
#ifndef KMSD_CLIENT_AWS_CONFIG_H
#define KMSD_CLIENT_AWS_CONFIG_H

#include "core/kerr.h"

/* Values given on the command line; each may be NULL (not given). */
typedef struct aws_config_opts {
  const char *profile;       /* --profile */
  const char *region;        /* --region */
  const char *endpoint_url;  /* --endpoint-url */
  const char *ca_bundle;     /* --ca-bundle */
} aws_config_opts;

/* Where the credentials came from, for messages and --debug output. */
typedef enum aws_cred_source {
  AWS_CRED_NONE = 0,
  AWS_CRED_ENV,                /* AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY */
  AWS_CRED_SHARED_FILE,        /* the shared credentials file */
  AWS_CRED_CONFIG_FILE,        /* the config file */
  AWS_CRED_EXPLICIT,           /* given by the program (aws_config_load_with) */
} aws_cred_source;

/* Which rule a failed aws_config_load broke, so that a library can name the
 * failure ("ProfileNotFound") without reading the message. */
typedef enum aws_config_problem {
  AWS_CONFIG_NO_PROBLEM = 0,
  AWS_CONFIG_PROFILE_NOT_FOUND,     /* a named profile is in neither file */
  AWS_CONFIG_BAD_FILE,              /* unreadable, unparsable or oversized file, bad path */
  AWS_CONFIG_PARTIAL_CREDENTIALS,   /* an access key without its secret, or the reverse */
  AWS_CONFIG_UNSUPPORTED_CREDENTIALS, /* role_arn, credential_process, SSO, ... */
  AWS_CONFIG_BAD_VALUE,             /* a setting with a value out of its range */
} aws_config_problem;

/* Larger values of max_attempts are refused rather than trusted: the retry
 * quota would stop a client long before anyway. */
#define AWS_CONFIG_MAX_ATTEMPTS_LIMIT 100

/* The resolved configuration.  Every string is owned by the struct and freed
 * by aws_config_free; NULL means "not configured". */
typedef struct aws_config {
  char *profile;            /* the profile consulted (never NULL after a load) */
  char *access_key_id;
  char *secret_access_key;  /* secure memory */
  char *session_token;      /* secure memory; NULL when none */
  char *region;
  char *endpoint_url;
  char *ca_bundle;
  aws_cred_source source;
  int max_attempts;         /* AWS_MAX_ATTEMPTS / max_attempts; 0 when not configured */
  aws_config_problem problem; /* after a failed load: which rule failed; else 0 */
} aws_config;

/* Resolve credentials, region, endpoint and CA bundle from `opts` (may be
 * NULL), the process environment and the two files, as described above.
 *
 * Missing credentials or a missing region are not errors here (the fields
 * stay NULL), so a caller can say precisely what is missing; see
 * aws_config_require.  Errors: KERR_VALIDATION when a named profile exists in
 * neither file ("The config profile (x) could not be found"), when a
 * file cannot be parsed (file name and line), or when credentials are partial
 * (an access key without its secret, or the reverse), or when max_attempts
 * is not a whole number in range.  On failure *out owns nothing (every
 * pointer NULL) and out->problem says which rule failed (0 for running out
 * of memory, KERR_INTERNAL). */
kerr_code aws_config_load(const aws_config_opts *opts, aws_config *out, kerr *err);

/* Credentials a program hands over itself (libkms's kms_client_options). */
typedef struct aws_config_credentials {
  const char *access_key_id;
  const char *secret_access_key;
  const char *session_token;  /* NULL: none */
} aws_config_credentials;

/* aws_config_load, with `creds` (may be NULL, or all NULL) before every
 * other source: when any of its members is set, the environment's and the
 * profiles' credentials are not consulted.  Key and secret go together:
 * one without the other, or a token without both, is KERR_VALIDATION with
 * problem AWS_CONFIG_PARTIAL_CREDENTIALS.  The secret and the token are
 * copied into secure memory (wiped by aws_config_free). */
kerr_code aws_config_load_with(const aws_config_opts *opts, const aws_config_credentials *creds, aws_config *out,
                               kerr *err);

/* KERR_OK when `c` holds an access key, its secret and a region; otherwise
 * KERR_MISSING_AUTH_TOKEN ("Unable to locate credentials ...") or
 * KERR_VALIDATION ("You must specify a region ...") with the aws CLI's advice. */
kerr_code aws_config_require(const aws_config *c, kerr *err);

/* Wipe the secrets and free every field; `c` is zeroed.  NULL is allowed. */
void aws_config_free(aws_config *c);

/* "environment", "shared credentials file", "config file" or "none". */
const char *aws_cred_source_name(aws_cred_source s);

/* The value of `key` in the config file's section of `profile` (NULL: the
 * profile AWS_DEFAULT_PROFILE / AWS_PROFILE / "default" names), for settings
 * that are not credentials: the CLI's `output`, `cli_timestamp_format`,
 * `cli_binary_format`, `cli_pager`.  *out is a malloc'd copy the caller
 * frees, or NULL when the profile has no such key (a missing file or profile
 * is not an error here: aws_config_load reports those).  Errors:
 * KERR_VALIDATION when the file cannot be read or parsed. */
kerr_code aws_config_setting(const char *profile, const char *key, char **out, kerr *err);

/* aws_config_setting for `n` keys with one read of the file: out[i] is the
 * value of keys[i] or NULL, each a malloc'd copy the caller frees.  On
 * failure every out[i] is NULL. */
kerr_code aws_config_settings(const char *profile, const char *const keys[], size_t n, char *out[], kerr *err);

#endif
