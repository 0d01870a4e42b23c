/* aws_config.c - resolve credentials, region and endpoint like the aws CLI.
 *
 * The lookup order is botocore's (see aws_config.h).  The two INI files are
 * read whole into secure memory, because the credentials file holds secret
 * keys, and parsed in place; the parser keeps configparser's strictness
 * (duplicates and keys outside a section are errors) so a file the aws CLI
 * refuses is refused here too, with the file and line named. */
#include "client/aws_config.h"

#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/secmem.h"

#define INI_FILE_MAX (1024 * 1024)
#define INI_ENTRIES_MAX 4096
#define INI_SECTIONS_MAX 1024
#define PATH_MAX_LEN 4096

typedef struct ini_entry {
  const char *section;
  const char *key;    /* lowercased */
  const char *value;
} ini_entry;

/* One parsed file: the text lives in `buf` (secure memory), every pointer of
 * `entries` and `sections` points into it. */
typedef struct ini_file {
  char *buf;
  size_t buf_size;
  const char *sections[INI_SECTIONS_MAX];
  size_t nsections;
  ini_entry entries[INI_ENTRIES_MAX];
  size_t nentries;
} ini_file;

static void ini_free(ini_file *f) {
  if (!f) return;
  secure_free(f->buf, f->buf_size);
  free(f);
}

static char *trim(char *s) {
  char *end;
  while (*s && isspace((unsigned char)*s)) s++;
  end = s + strlen(s);
  while (end > s && isspace((unsigned char)end[-1])) *--end = '\0';
  return s;
}

static int ini_has_section(const ini_file *f, const char *name) {
  size_t i;
  if (!f) return 0;
  for (i = 0; i < f->nsections; i++)
    if (strcmp(f->sections[i], name) == 0) return 1;
  return 0;
}

static const char *ini_get(const ini_file *f, const char *section, const char *key) {
  size_t i;
  if (!f) return NULL;
  for (i = 0; i < f->nentries; i++)
    if (strcmp(f->entries[i].section, section) == 0 && strcmp(f->entries[i].key, key) == 0)
      return f->entries[i].value;
  return NULL;
}

/* Parse f->buf in place. */
static kerr_code ini_parse(ini_file *f, const char *path, kerr *err) {
  char *line = f->buf, *next;
  const char *section = NULL;
  int lineno = 0, open_key = 0;

  for (; line; line = next) {
    char *s, *delim, *key, *value;
    size_t i;
    lineno++;
    next = strchr(line, '\n');
    if (next) *next++ = '\0';
    if (*line && line[strlen(line) - 1] == '\r') line[strlen(line) - 1] = '\0';
    s = trim(line);
    if (!*s || *s == '#' || *s == ';') continue;
    /* An indented line after a key continues that key's value (nested
     * settings such as `s3 =` blocks); none of the keys read here uses one. */
    if ((line[0] == ' ' || line[0] == '\t') && open_key) continue;
    if (*s == '[') {
      size_t len = strlen(s);
      if (s[len - 1] != ']' || len < 3)
        return kerr_set(err, KERR_VALIDATION, "Unable to parse config file: %s, line %d: bad section header",
                        path, lineno);
      s[len - 1] = '\0';
      s = trim(s + 1);
      if (ini_has_section(f, s))
        return kerr_set(err, KERR_VALIDATION, "Unable to parse config file: %s, line %d: section [%s] appears twice",
                        path, lineno, s);
      if (f->nsections == INI_SECTIONS_MAX)
        return kerr_set(err, KERR_VALIDATION, "Unable to parse config file: %s: more than %d sections", path,
                        INI_SECTIONS_MAX);
      f->sections[f->nsections++] = s;
      section = s;
      open_key = 0;
      continue;
    }
    if (!section)
      return kerr_set(err, KERR_VALIDATION, "Unable to parse config file: %s, line %d: setting outside any [section]",
                      path, lineno);
    delim = s + strcspn(s, "=:");
    if (!*delim)
      return kerr_set(err, KERR_VALIDATION, "Unable to parse config file: %s, line %d: expected `key = value`", path,
                      lineno);
    *delim = '\0';
    key = trim(s);
    value = trim(delim + 1);
    if (!*key)
      return kerr_set(err, KERR_VALIDATION, "Unable to parse config file: %s, line %d: empty key", path, lineno);
    for (i = 0; key[i]; i++) key[i] = (char)tolower((unsigned char)key[i]);
    if (ini_get(f, section, key))
      return kerr_set(err, KERR_VALIDATION, "Unable to parse config file: %s, line %d: `%s` appears twice in [%s]",
                      path, lineno, key, section);
    if (f->nentries == INI_ENTRIES_MAX)
      return kerr_set(err, KERR_VALIDATION, "Unable to parse config file: %s: more than %d settings", path,
                      INI_ENTRIES_MAX);
    f->entries[f->nentries].section = section;
    f->entries[f->nentries].key = key;
    f->entries[f->nentries].value = value;
    f->nentries++;
    open_key = 1;
  }
  return KERR_OK;
}

/* Read and parse `path`.  A file that does not exist gives *out == NULL and
 * KERR_OK: the aws CLI treats a missing file as an empty one. */
static kerr_code ini_load(const char *path, ini_file **out, kerr *err) {
  ini_file *f = NULL;
  FILE *fp = NULL;
  struct stat st;
  size_t got = 0;
  kerr_code rc = KERR_OK;

  *out = NULL;
  fp = fopen(path, "rb");
  if (!fp) {
    if (errno == ENOENT || errno == ENOTDIR) return KERR_OK;
    return kerr_set(err, KERR_VALIDATION, "cannot read %s: %s", path, strerror(errno));
  }
  if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
    rc = kerr_set(err, KERR_VALIDATION, "cannot read %s: it is a directory", path);
    goto out;
  }
  f = calloc(1, sizeof *f);
  if (!f) {
    rc = kerr_set(err, KERR_INTERNAL, "out of memory");
    goto out;
  }
  /* Read through a bounded buffer rather than trusting st_size: /dev/null
   * and pipes report 0, and the file may grow while we read. */
  f->buf_size = INI_FILE_MAX + 1;
  f->buf = secure_alloc(f->buf_size);
  if (!f->buf) {
    rc = kerr_set(err, KERR_INTERNAL, "out of memory");
    goto out;
  }
  for (;;) {
    size_t n = fread(f->buf + got, 1, INI_FILE_MAX - got, fp);
    got += n;
    if (n == 0 || got == INI_FILE_MAX) break;
  }
  if (ferror(fp)) {
    rc = kerr_set(err, KERR_VALIDATION, "cannot read %s: %s", path, strerror(errno));
    goto out;
  }
  if (got == INI_FILE_MAX && fgetc(fp) != EOF) {
    rc = kerr_set(err, KERR_VALIDATION, "%s is larger than %d bytes", path, INI_FILE_MAX);
    goto out;
  }
  if (memchr(f->buf, '\0', got)) {
    rc = kerr_set(err, KERR_VALIDATION, "Unable to parse config file: %s: it contains a NUL byte", path);
    goto out;
  }
  f->buf[got] = '\0';
  rc = ini_parse(f, path, err);
out:
  if (fp) fclose(fp);
  if (rc) {
    ini_free(f);
    f = NULL;
  }
  *out = f;
  return rc;
}

static const char *env_nonempty(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

/* `path` with a leading "~/" replaced by the home directory, into `out`. */
static kerr_code expand_home(const char *path, char *out, size_t out_size, kerr *err) {
  const char *home;
  int w;
  if (path[0] != '~' || (path[1] != '/' && path[1] != '\0')) {
    w = snprintf(out, out_size, "%s", path);
  } else {
    home = env_nonempty("HOME");
    if (!home) {
      /* getpwuid_r, not getpwuid: libkms clients live in threaded programs. */
      struct passwd pwd, *pw = NULL;
      char buf[4096];
      if (getpwuid_r(getuid(), &pwd, buf, sizeof buf, &pw) != 0 || !pw || !pw->pw_dir)
        return kerr_set(err, KERR_VALIDATION, "cannot expand %s: no home directory", path);
      w = snprintf(out, out_size, "%s%s", pw->pw_dir, path + 1);
    } else {
      w = snprintf(out, out_size, "%s%s", home, path + 1);
    }
  }
  if (w < 0 || (size_t)w >= out_size) return kerr_set(err, KERR_VALIDATION, "path too long: %.64s...", path);
  return KERR_OK;
}

static char *dup_plain(const char *s) { return s ? strdup(s) : NULL; }

/* *dst = a copy of `v` (NULL stays NULL). */
static kerr_code set_copy(char **dst, const char *v, kerr *err) {
  *dst = NULL;
  if (!v) return KERR_OK;
  *dst = strdup(v);
  return *dst ? KERR_OK : kerr_set(err, KERR_INTERNAL, "out of memory");
}

static char *dup_secret(const char *s) {
  size_t n;
  char *p;
  if (!s) return NULL;
  n = strlen(s) + 1;
  p = secure_alloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

static void free_secret(char *s) {
  if (s) secure_free(s, strlen(s) + 1);
}

/* Profile value lookup: the credentials file's [name] first, then the config
 * file's [profile name] (or [default] for the default profile). */
typedef struct profile_files {
  ini_file *creds;
  ini_file *config;
  const char *name;
  char config_section[300];
} profile_files;

static const char *profile_get_creds(const profile_files *p, const char *key) {
  return ini_get(p->creds, p->name, key);
}

static const char *profile_get_config(const profile_files *p, const char *key) {
  const char *v = ini_get(p->config, p->config_section, key);
  if (!v && strcmp(p->name, "default") == 0) v = ini_get(p->config, "default", key);
  return v;
}

static const char *profile_get(const profile_files *p, const char *key) {
  const char *v = profile_get_creds(p, key);
  if (v && *v) return v;
  v = profile_get_config(p, key);
  return v && *v ? v : NULL;
}

/* Credentials from one file section; KERR_VALIDATION when only half present. */
static kerr_code creds_from(const char *akid, const char *secret, const char *token, const char *where,
                            aws_cred_source source, aws_config *out, kerr *err) {
  if (akid && !*akid) akid = NULL;
  if (secret && !*secret) secret = NULL;
  if (!akid && !secret) return KERR_OK;
  if (!akid || !secret)
    return kerr_set(err, KERR_VALIDATION, "Partial credentials found in %s, missing: %s", where,
                    source == AWS_CRED_ENV ? (akid ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID")
                                           : (akid ? "aws_secret_access_key" : "aws_access_key_id"));
  out->access_key_id = dup_plain(akid);
  out->secret_access_key = dup_secret(secret);
  out->session_token = token && *token ? dup_secret(token) : NULL;
  if (!out->access_key_id || !out->secret_access_key || (token && *token && !out->session_token))
    return kerr_set(err, KERR_INTERNAL, "out of memory");
  out->source = source;
  return KERR_OK;
}

static const char *first_of(const char *a, const char *b) { return a && *a ? a : b && *b ? b : NULL; }

/* max_attempts as the SDKs read it: a positive whole number.  `where` names
 * the source for the message (the value itself is not secret). */
static kerr_code parse_max_attempts(const char *text, const char *where, int *out, kerr *err) {
  long n = 0;
  const char *s = text;
  while (*s == ' ' || *s == '\t') s++;
  if (!*s) goto bad;
  for (; *s >= '0' && *s <= '9'; s++) {
    n = n * 10 + (*s - '0');
    if (n > AWS_CONFIG_MAX_ATTEMPTS_LIMIT) goto bad;
  }
  while (*s == ' ' || *s == '\t') s++;
  if (*s || n < 1) goto bad;
  *out = (int)n;
  return KERR_OK;
bad:
  return kerr_set(err, KERR_VALIDATION, "Bad value for %s: \"%.32s\": expected a whole number from 1 to %d", where,
                  text, AWS_CONFIG_MAX_ATTEMPTS_LIMIT);
}

kerr_code aws_config_load(const aws_config_opts *opts, aws_config *out, kerr *err) {
  return aws_config_load_with(opts, NULL, out, err);
}

kerr_code aws_config_load_with(const aws_config_opts *opts, const aws_config_credentials *creds, aws_config *out,
                               kerr *err) {
  static const aws_config_opts no_opts;
  profile_files pf;
  char creds_path[PATH_MAX_LEN], config_path[PATH_MAX_LEN];
  const char *profile, *v;
  int explicit_flag, explicit_env;
  aws_config_problem problem = AWS_CONFIG_NO_PROBLEM;
  kerr_code rc;

  memset(out, 0, sizeof *out);
  memset(&pf, 0, sizeof pf);
  if (!opts) opts = &no_opts;

  explicit_flag = opts->profile && *opts->profile;
  profile = explicit_flag ? opts->profile : first_of(getenv("AWS_DEFAULT_PROFILE"), getenv("AWS_PROFILE"));
  explicit_env = !explicit_flag && profile != NULL;
  if (!profile) profile = "default";
  if (strlen(profile) > 256) {
    problem = AWS_CONFIG_BAD_VALUE;
    rc = kerr_set(err, KERR_VALIDATION, "profile name is longer than 256 characters");
    goto out;
  }
  pf.name = profile;
  snprintf(pf.config_section, sizeof pf.config_section, "profile %s", profile);

  /* Until the profile is known, every failure is about a file. */
  problem = AWS_CONFIG_BAD_FILE;
  rc = expand_home(first_of(getenv("AWS_SHARED_CREDENTIALS_FILE"), "~/.aws/credentials"), creds_path,
                   sizeof creds_path, err);
  if (rc) goto out;
  rc = expand_home(first_of(getenv("AWS_CONFIG_FILE"), "~/.aws/config"), config_path, sizeof config_path, err);
  if (rc) goto out;
  rc = ini_load(creds_path, &pf.creds, err);
  if (rc) goto out;
  rc = ini_load(config_path, &pf.config, err);
  if (rc) goto out;

  if ((explicit_flag || explicit_env) && !ini_has_section(pf.creds, profile) &&
      !ini_has_section(pf.config, pf.config_section) &&
      !(strcmp(profile, "default") == 0 && ini_has_section(pf.config, "default"))) {
    problem = AWS_CONFIG_PROFILE_NOT_FOUND;
    rc = kerr_set(err, KERR_VALIDATION, "The config profile (%s) could not be found", profile);
    goto out;
  }
  problem = AWS_CONFIG_NO_PROBLEM;
  out->profile = dup_plain(profile);
  if (!out->profile) {
    rc = kerr_set(err, KERR_INTERNAL, "out of memory");
    goto out;
  }

  /* An explicit --profile takes precedence over environment credentials;
   * AWS_PROFILE does not (botocore keeps its environment provider then). */
  problem = AWS_CONFIG_PARTIAL_CREDENTIALS;
  if (creds && (creds->access_key_id || creds->secret_access_key || creds->session_token)) {
    if (!creds->access_key_id || !*creds->access_key_id || !creds->secret_access_key ||
        !*creds->secret_access_key) {
      rc = kerr_set(err, KERR_VALIDATION,
                    "Partial credentials found in the client options: access_key_id and secret_access_key go "
                    "together (and a session_token needs both)");
      goto out;
    }
    rc = creds_from(creds->access_key_id, creds->secret_access_key, creds->session_token, "the client options",
                    AWS_CRED_EXPLICIT, out, err);
    if (rc) goto out;
  }
  if (!explicit_flag && out->source == AWS_CRED_NONE) {
    rc = creds_from(getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"),
                    first_of(getenv("AWS_SESSION_TOKEN"), getenv("AWS_SECURITY_TOKEN")), "env", AWS_CRED_ENV, out,
                    err);
    if (rc) goto out;
  }
  if (out->source == AWS_CRED_NONE) {
    rc = creds_from(profile_get_creds(&pf, "aws_access_key_id"), profile_get_creds(&pf, "aws_secret_access_key"),
                    first_of(profile_get_creds(&pf, "aws_session_token"),
                             profile_get_creds(&pf, "aws_security_token")),
                    "shared-credentials-file", AWS_CRED_SHARED_FILE, out, err);
    if (rc) goto out;
  }
  if (out->source == AWS_CRED_NONE) {
    rc = creds_from(profile_get_config(&pf, "aws_access_key_id"), profile_get_config(&pf, "aws_secret_access_key"),
                    first_of(profile_get_config(&pf, "aws_session_token"),
                             profile_get_config(&pf, "aws_security_token")),
                    "config-file", AWS_CRED_CONFIG_FILE, out, err);
    if (rc) goto out;
  }
  if (out->source == AWS_CRED_NONE) {
    /* Say plainly which credential styles the aws CLI would have used but
     * this client does not implement, instead of "no credentials". */
    static const char *const unsupported[] = {"role_arn", "credential_process", "sso_start_url", "sso_session",
                                              "web_identity_token_file"};
    size_t i;
    for (i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
      if (profile_get(&pf, unsupported[i])) {
        problem = AWS_CONFIG_UNSUPPORTED_CREDENTIALS;
        rc = kerr_set(err, KERR_VALIDATION,
                      "profile (%s) gets its credentials through %s, which this client does not support; "
                      "use access keys (aws_access_key_id) or AWS_ACCESS_KEY_ID",
                      profile, unsupported[i]);
        goto out;
      }
  }

  problem = AWS_CONFIG_NO_PROBLEM;
  v = first_of(opts->region, first_of(getenv("AWS_REGION"), getenv("AWS_DEFAULT_REGION")));
  rc = set_copy(&out->region, v ? v : profile_get(&pf, "region"), err);
  if (rc) goto out;
  v = first_of(opts->endpoint_url, getenv("AWS_ENDPOINT_URL"));
  rc = set_copy(&out->endpoint_url, v ? v : profile_get(&pf, "endpoint_url"), err);
  if (rc) goto out;
  v = first_of(opts->ca_bundle, getenv("AWS_CA_BUNDLE"));
  if (!v) v = profile_get(&pf, "ca_bundle");
  if (v) {
    char expanded[PATH_MAX_LEN];
    problem = AWS_CONFIG_BAD_FILE;
    rc = expand_home(v, expanded, sizeof expanded, err);
    if (rc) goto out;
    problem = AWS_CONFIG_NO_PROBLEM;
    rc = set_copy(&out->ca_bundle, expanded, err);
    if (rc) goto out;
  }
  v = env_nonempty("AWS_MAX_ATTEMPTS");
  if (v) {
    problem = AWS_CONFIG_BAD_VALUE;
    rc = parse_max_attempts(v, "AWS_MAX_ATTEMPTS", &out->max_attempts, err);
    if (rc) goto out;
  } else if ((v = profile_get(&pf, "max_attempts")) != NULL) {
    problem = AWS_CONFIG_BAD_VALUE;
    rc = parse_max_attempts(v, "max_attempts", &out->max_attempts, err);
    if (rc) goto out;
  }
  problem = AWS_CONFIG_NO_PROBLEM;
  rc = KERR_OK;
out:
  ini_free(pf.creds);
  ini_free(pf.config);
  if (rc) {
    aws_config_free(out);
    /* Running out of memory is not a configuration problem. */
    out->problem = rc == KERR_INTERNAL ? AWS_CONFIG_NO_PROBLEM : problem;
  }
  return rc;
}

kerr_code aws_config_require(const aws_config *c, kerr *err) {
  if (!c || !c->access_key_id || !c->secret_access_key)
    return kerr_set(err, KERR_MISSING_AUTH_TOKEN,
                    "Unable to locate credentials. You can configure credentials by running \"aws configure\" "
                    "or setting AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
  if (!c->region)
    return kerr_set(err, KERR_VALIDATION,
                    "You must specify a region. You can also configure your region by running \"aws configure\" "
                    "or setting AWS_REGION");
  return KERR_OK;
}

void aws_config_free(aws_config *c) {
  if (!c) return;
  free(c->profile);
  free(c->access_key_id);
  free_secret(c->secret_access_key);
  free_secret(c->session_token);
  free(c->region);
  free(c->endpoint_url);
  free(c->ca_bundle);
  memset(c, 0, sizeof *c);
}

const char *aws_cred_source_name(aws_cred_source s) {
  switch (s) {
    case AWS_CRED_ENV: return "environment";
    case AWS_CRED_SHARED_FILE: return "shared credentials file";
    case AWS_CRED_CONFIG_FILE: return "config file";
    case AWS_CRED_EXPLICIT: return "the client options";
    case AWS_CRED_NONE: break;
  }
  return "none";
}

kerr_code aws_config_settings(const char *profile, const char *const keys[], size_t n, char *out[], kerr *err) {
  char config_path[PATH_MAX_LEN];
  profile_files pf;
  kerr_code rc;
  size_t i;
  for (i = 0; i < n; i++) out[i] = NULL;
  memset(&pf, 0, sizeof pf);
  if (!profile || !*profile) profile = first_of(getenv("AWS_DEFAULT_PROFILE"), getenv("AWS_PROFILE"));
  if (!profile) profile = "default";
  if (strlen(profile) > 256) return kerr_set(err, KERR_VALIDATION, "profile name is longer than 256 characters");
  pf.name = profile;
  snprintf(pf.config_section, sizeof pf.config_section, "profile %s", profile);
  rc = expand_home(first_of(getenv("AWS_CONFIG_FILE"), "~/.aws/config"), config_path, sizeof config_path, err);
  if (rc) return rc;
  rc = ini_load(config_path, &pf.config, err);
  if (rc) return rc;
  for (i = 0; i < n && rc == KERR_OK; i++) {
    const char *v = profile_get_config(&pf, keys[i]);
    if (v && !(out[i] = strdup(v))) rc = kerr_set(err, KERR_INTERNAL, "out of memory");
  }
  ini_free(pf.config);
  if (rc) {
    for (i = 0; i < n; i++) {
      free(out[i]);
      out[i] = NULL;
    }
  }
  return rc;
}

kerr_code aws_config_setting(const char *profile, const char *key, char **out, kerr *err) {
  return aws_config_settings(profile, &key, 1, out, err);
}
