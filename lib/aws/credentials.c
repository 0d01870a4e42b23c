/* credentials.c - the credentials file: access key id -> secret + identity.
 *
 * kmsd authenticates callers against a local JSON file instead of IAM.  The
 * file is read once at start-up, validated field by field (a typo must stop
 * the server, not open it), and kept sorted so a lookup per request is a
 * binary search.  Secrets live in wiped allocations; no message ever
 * contains one. */
#include "aws/credentials.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aws/arn.h"
#include "aws/policy.h"
#include "core/secmem.h"
#include "core/strlist.h"

#define CREDS_FILE_MAX (1024 * 1024)
#define CREDS_MAX_PRINCIPALS 10000
#define SECRET_MAX 1024
#define SESSION_TOKEN_MAX 8192

#define DEFAULT_ACCESS_KEY "AKIAIOSFODNN7EXAMPLE"
#define DEFAULT_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define DEFAULT_ACCOUNT "111122223333"

struct creds_store {
  cred_entry *entries;    /* sorted by access key id */
  iam_policy **policies;  /* policies[i] owns entries[i].who.identity_policy */
  size_t n;
  int any;                /* made by creds_any: every key maps to entries[0] */
};

static void wipe_string(char *s) {
  if (s) secure_free(s, strlen(s) + 1);
}

/* A copy of s in a wiped allocation. */
static char *secret_dup(const char *s) {
  size_t n = strlen(s);
  char *d = secure_alloc(n + 1);
  if (d) memcpy(d, s, n + 1);
  return d;
}

void creds_free(creds_store *s) {
  size_t i;
  if (!s) return;
  for (i = 0; i < s->n; i++) {
    wipe_string(s->entries[i].secret_access_key);
    wipe_string(s->entries[i].session_token);
    if (s->policies) iam_policy_free(s->policies[i]);
  }
  free(s->entries);
  free(s->policies);
  free(s);
}

int creds_is_any(const creds_store *s) { return s && s->any; }

static int cmp_entry(const void *a, const void *b) {
  return strcmp(((const cred_entry *)a)->who.access_key_id, ((const cred_entry *)b)->who.access_key_id);
}

const cred_entry *creds_lookup(const creds_store *s, const char *access_key_id) {
  cred_entry probe;
  size_t n;
  if (!s || !access_key_id || s->n == 0) return NULL;
  if (s->any) return &s->entries[0];
  n = strnlen(access_key_id, ACCESS_KEY_ID_MAX + 1);
  if (n > ACCESS_KEY_ID_MAX) return NULL;
  memcpy(probe.who.access_key_id, access_key_id, n + 1);
  return bsearch(&probe, s->entries, s->n, sizeof *s->entries, cmp_entry);
}

static int valid_access_key(const char *s) {
  size_t n = strnlen(s, ACCESS_KEY_ID_MAX + 1), i;
  if (n < 16 || n > ACCESS_KEY_ID_MAX) return 0;
  for (i = 0; i < n; i++)
    if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9'))) return 0;
  return 1;
}

static int is_root_arn(const char *arn, const char *account) {
  return strncmp(arn, "arn:aws:iam::", 13) == 0 && strncmp(arn + 13, account, ACCOUNT_ID_LEN) == 0 &&
         strcmp(arn + 13 + ACCOUNT_ID_LEN, ":root") == 0;
}

/* Fill entry i of s from the JSON object jp; `path` is only for messages. */
static kerr_code load_principal(creds_store *s, size_t i, json_t *jp, const char *path, kerr *err) {
  cred_entry *e = &s->entries[i];
  const char *key, *akid, *secret, *acct, *arn, *token = NULL;
  json_t *v, *jpolicy;
  arn_parts parts;
  kerr perr;
  char *text = NULL;
  kerr_code rc;

  if (!json_is_object(jp))
    return kerr_set(err, KERR_VALIDATION, "credentials file %s: principals[%zu] must be an object", path, i);
  json_object_foreach(jp, key, v) {
    static const char *const fields[] = {"accessKeyId", "secretAccessKey", "sessionToken", "accountId",
                                         "arn",         "policy",          "admin",        NULL};
    if (!strlist_contains(fields, key))
      return kerr_set(err, KERR_VALIDATION, "credentials file %s: principals[%zu] has an unknown field '%.64s'",
                      path, i, key);
  }
  akid = json_string_value(json_object_get(jp, "accessKeyId"));
  if (!akid || !valid_access_key(akid))
    return kerr_set(err, KERR_VALIDATION,
                    "credentials file %s: principals[%zu].accessKeyId must be 16 to %d characters of A-Z and 0-9",
                    path, i, ACCESS_KEY_ID_MAX);
  secret = json_string_value(json_object_get(jp, "secretAccessKey"));
  if (!secret || !*secret || strlen(secret) > SECRET_MAX)
    return kerr_set(err, KERR_VALIDATION,
                    "credentials file %s: principals[%zu].secretAccessKey must be a non-empty string of at most %d characters",
                    path, i, SECRET_MAX);
  v = json_object_get(jp, "sessionToken");
  if (v) {
    token = json_string_value(v);
    if (!token || !*token || strlen(token) > SESSION_TOKEN_MAX)
      return kerr_set(err, KERR_VALIDATION,
                      "credentials file %s: principals[%zu].sessionToken must be a non-empty string of at most %d characters",
                      path, i, SESSION_TOKEN_MAX);
  }
  acct = json_string_value(json_object_get(jp, "accountId"));
  if (!acct || !arn_is_account_id(acct))
    return kerr_set(err, KERR_VALIDATION, "credentials file %s: principals[%zu].accountId must be 12 digits",
                    path, i);
  arn = json_string_value(json_object_get(jp, "arn"));
  if (!arn || strlen(arn) > PRINCIPAL_ARN_MAX || strncmp(arn, "arn:aws:iam::", 13) != 0 ||
      strncmp(arn + 13, acct, ACCOUNT_ID_LEN) != 0 || arn[13 + ACCOUNT_ID_LEN] != ':' ||
      arn_parse(arn, &parts, &perr) != KERR_OK)
    return kerr_set(err, KERR_VALIDATION,
                    "credentials file %s: principals[%zu].arn must be an ARN starting with arn:aws:iam::%s:",
                    path, i, acct);

  /* A mistyped "admin": "true" must stop the server, not quietly deny. */
  v = json_object_get(jp, "admin");
  if (v && !json_is_boolean(v))
    return kerr_set(err, KERR_VALIDATION, "credentials file %s: principals[%zu].admin must be true or false",
                    path, i);

  strcpy(e->who.access_key_id, akid);
  strcpy(e->who.account_id, acct);
  strcpy(e->who.arn, arn);
  e->who.is_root = is_root_arn(arn, acct);
  e->who.is_admin = json_is_true(v);
  e->secret_access_key = secret_dup(secret);
  if (!e->secret_access_key) return kerr_set(err, KERR_INTERNAL, "out of memory loading credentials");
  if (token && !(e->session_token = secret_dup(token)))
    return kerr_set(err, KERR_INTERNAL, "out of memory loading credentials");

  jpolicy = json_object_get(jp, "policy");
  if (jpolicy) {
    if (!json_is_object(jpolicy))
      return kerr_set(err, KERR_VALIDATION, "credentials file %s: principals[%zu].policy must be an object",
                      path, i);
    text = json_dumps(jpolicy, JSON_COMPACT);
    if (!text) return kerr_set(err, KERR_INTERNAL, "out of memory loading credentials");
    rc = iam_policy_parse(text, strlen(text), IAM_POLICY_IDENTITY, &s->policies[i], &perr);
    free(text);
    if (rc)
      return kerr_set(err, KERR_VALIDATION, "credentials file %s: principals[%zu].policy: %s", path, i,
                      perr.msg);
    e->who.identity_policy = s->policies[i];
  }
  return KERR_OK;
}

/* Parse the file's text (not NUL-terminated) into a new store. */
static kerr_code load_text(const char *text, size_t len, const char *path, creds_store **out, kerr *err) {
  json_t *root = NULL, *arr;
  json_error_t jerr;
  creds_store *s = NULL;
  size_t i, n;
  kerr_code rc = KERR_OK;

  root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    /* jerr.text may quote the offending input, which can be a secret. */
    rc = kerr_set(err, KERR_VALIDATION, "credentials file %s: invalid JSON at line %d, column %d", path,
                  jerr.line, jerr.column);
    goto out;
  }
  arr = json_object_get(root, "principals");
  if (!json_is_object(root) || !json_is_array(arr) || json_array_size(arr) == 0) {
    rc = kerr_set(err, KERR_VALIDATION, "credentials file %s: must be an object with a non-empty \"principals\" array",
                  path);
    goto out;
  }
  n = json_array_size(arr);
  if (n > CREDS_MAX_PRINCIPALS) {
    rc = kerr_set(err, KERR_VALIDATION, "credentials file %s: more than %d principals", path,
                  CREDS_MAX_PRINCIPALS);
    goto out;
  }
  s = calloc(1, sizeof *s);
  if (!s || !(s->entries = calloc(n, sizeof *s->entries)) || !(s->policies = calloc(n, sizeof *s->policies))) {
    rc = kerr_set(err, KERR_INTERNAL, "out of memory loading credentials");
    goto out;
  }
  s->n = n;
  for (i = 0; i < n; i++) {
    rc = load_principal(s, i, json_array_get(arr, i), path, err);
    if (rc) goto out;
  }
  /* Sorting moves entries, so the policy pointers travel with them inside
   * `who`; re-derive the whole owning array before any check can fail, or
   * creds_free would see some policies twice and others never. */
  qsort(s->entries, n, sizeof *s->entries, cmp_entry);
  for (i = 0; i < n; i++) s->policies[i] = (iam_policy *)s->entries[i].who.identity_policy;
  for (i = 1; i < n; i++) {
    if (strcmp(s->entries[i - 1].who.access_key_id, s->entries[i].who.access_key_id) == 0) {
      rc = kerr_set(err, KERR_VALIDATION, "credentials file %s: access key %s appears more than once", path,
                    s->entries[i].who.access_key_id);
      goto out;
    }
  }
  *out = s;
  s = NULL;
out:
  creds_free(s);
  json_decref(root);
  return rc;
}

static const char default_file[] =
    "{\n"
    "  \"principals\": [\n"
    "    {\n"
    "      \"accessKeyId\": \"" DEFAULT_ACCESS_KEY "\",\n"
    "      \"secretAccessKey\": \"" DEFAULT_SECRET "\",\n"
    "      \"accountId\": \"" DEFAULT_ACCOUNT "\",\n"
    "      \"arn\": \"arn:aws:iam::" DEFAULT_ACCOUNT ":root\",\n"
    "      \"admin\": true,\n"
    "      \"policy\": {\n"
    "        \"Version\": \"2012-10-17\",\n"
    "        \"Statement\": [ { \"Effect\": \"Allow\", \"Action\": \"kms:*\", \"Resource\": \"*\" } ]\n"
    "      }\n"
    "    }\n"
    "  ]\n"
    "}\n";

/* Write the default file: temp file, fsync, rename, fsync the directory, so
 * a crash leaves either no file or a whole one, never a torn one. */
static kerr_code write_default(const char *path, kerr *err) {
  char *tmp = NULL, *dir = NULL, *slash;
  size_t plen = strlen(path), off = 0, total = sizeof default_file - 1;
  int fd = -1, dfd;
  kerr_code rc = KERR_OK;

  tmp = calloc(1, plen + 16);
  dir = strdup(path);
  if (!tmp || !dir) {
    rc = kerr_set(err, KERR_INTERNAL, "out of memory writing credentials file");
    goto out;
  }
  snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
  fd = mkstemp(tmp);  /* mode 0600 */
  if (fd < 0) {
    rc = kerr_set(err, KERR_VALIDATION, "credentials file %s: cannot create: %s", path, strerror(errno));
    tmp[0] = '\0';
    goto out;
  }
  if (fchmod(fd, 0600) != 0) goto io_error;
  while (off < total) {
    ssize_t w = write(fd, default_file + off, total - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) goto io_error;
    off += (size_t)w;
  }
  if (fsync(fd) != 0) goto io_error;
  if (close(fd) != 0) {
    fd = -1;
    goto io_error;
  }
  fd = -1;
  if (rename(tmp, path) != 0) goto io_error;
  tmp[0] = '\0';
  slash = strrchr(dir, '/');
  if (slash == dir)
    slash[1] = '\0';
  else if (slash)
    *slash = '\0';
  else
    strcpy(dir, ".");
  dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    (void)fsync(dfd);
    close(dfd);
  }
  goto out;
io_error:
  rc = kerr_set(err, KERR_VALIDATION, "credentials file %s: cannot write: %s", path, strerror(errno));
out:
  if (fd >= 0) close(fd);
  if (tmp && tmp[0]) unlink(tmp);
  free(tmp);
  free(dir);
  return rc;
}

kerr_code creds_load(const char *path, int create_default, creds_store **out, kerr *err) {
  char *buf = NULL;
  size_t cap = 0, len = 0;
  struct stat st;
  int fd = -1;
  kerr_code rc = KERR_OK;

  if (out) *out = NULL;
  if (!path || !out) return kerr_set(err, KERR_VALIDATION, "credentials file path is missing");
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && create_default) {
    rc = write_default(path, err);
    if (rc) goto out;
    fd = open(path, O_RDONLY | O_CLOEXEC);
  }
  if (fd < 0) {
    rc = kerr_set(err, KERR_VALIDATION, "credentials file %s: cannot open: %s", path, strerror(errno));
    goto out;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    rc = kerr_set(err, KERR_VALIDATION, "credentials file %s: not a regular file", path);
    goto out;
  }
  if (st.st_size > CREDS_FILE_MAX) {
    rc = kerr_set(err, KERR_VALIDATION, "credentials file %s: larger than %d bytes", path, CREDS_FILE_MAX);
    goto out;
  }
  /* The text holds every secret: read it into a wiped allocation. */
  cap = (size_t)st.st_size + 1;
  buf = secure_alloc(cap);
  if (!buf) {
    rc = kerr_set(err, KERR_INTERNAL, "out of memory loading credentials");
    goto out;
  }
  while (len < cap) {
    ssize_t r = read(fd, buf + len, cap - len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      rc = kerr_set(err, KERR_VALIDATION, "credentials file %s: cannot read: %s", path, strerror(errno));
      goto out;
    }
    if (r == 0) break;
    len += (size_t)r;
  }
  if (len >= cap) {
    rc = kerr_set(err, KERR_VALIDATION, "credentials file %s: changed while being read", path);
    goto out;
  }
  rc = load_text(buf, len, path, out, err);
out:
  if (fd >= 0) close(fd);
  secure_free(buf, cap);
  return rc;
}

kerr_code creds_any(creds_store **out, kerr *err) {
  creds_store *s;
  if (!out) return kerr_set(err, KERR_INTERNAL, "creds_any: no output");
  *out = NULL;
  s = calloc(1, sizeof *s);
  if (!s || !(s->entries = calloc(1, sizeof *s->entries)) || !(s->policies = calloc(1, sizeof *s->policies))) {
    creds_free(s);
    return kerr_set(err, KERR_INTERNAL, "out of memory");
  }
  s->n = 1;
  s->any = 1;
  strcpy(s->entries[0].who.access_key_id, DEFAULT_ACCESS_KEY);
  strcpy(s->entries[0].who.account_id, DEFAULT_ACCOUNT);
  strcpy(s->entries[0].who.arn, "arn:aws:iam::" DEFAULT_ACCOUNT ":root");
  s->entries[0].who.is_root = true;
  /* No file marks this caller admin, and any key pair becomes it. */
  s->entries[0].who.is_admin = false;
  s->entries[0].secret_access_key = secret_dup(DEFAULT_SECRET);
  if (!s->entries[0].secret_access_key) {
    creds_free(s);
    return kerr_set(err, KERR_INTERNAL, "out of memory");
  }
  *out = s;
  return KERR_OK;
}

kerr_code creds_from_keys(const char *const *access_key_ids, const char *const *secrets, size_t n,
                          creds_store **out, kerr *err) {
  creds_store *s;
  size_t i;
  if (!out) return kerr_set(err, KERR_INTERNAL, "creds_from_keys: no output");
  *out = NULL;
  if (n == 0 || n > CREDS_MAX_PRINCIPALS)
    return kerr_set(err, KERR_VALIDATION, "between 1 and %d access keys are needed", CREDS_MAX_PRINCIPALS);
  s = calloc(1, sizeof *s);
  if (!s || !(s->entries = calloc(n, sizeof *s->entries)) || !(s->policies = calloc(n, sizeof *s->policies))) {
    creds_free(s);
    return kerr_set(err, KERR_INTERNAL, "out of memory");
  }
  s->n = n;
  for (i = 0; i < n; i++) {
    size_t kl = strlen(access_key_ids[i]);
    if (kl == 0 || kl > ACCESS_KEY_ID_MAX || !secrets[i] || !secrets[i][0]) {
      creds_free(s);
      return kerr_set(err, KERR_VALIDATION, "access key %zu: empty or longer than %d characters", i + 1,
                      ACCESS_KEY_ID_MAX);
    }
    memcpy(s->entries[i].who.access_key_id, access_key_ids[i], kl + 1);
    s->entries[i].secret_access_key = secret_dup(secrets[i]);
    if (!s->entries[i].secret_access_key) {
      creds_free(s);
      return kerr_set(err, KERR_INTERNAL, "out of memory");
    }
  }
  qsort(s->entries, n, sizeof *s->entries, cmp_entry);
  for (i = 1; i < n; i++)
    if (strcmp(s->entries[i - 1].who.access_key_id, s->entries[i].who.access_key_id) == 0) {
      kerr_set(err, KERR_VALIDATION, "access key %s appears more than once", s->entries[i].who.access_key_id);
      creds_free(s);
      return KERR_VALIDATION;
    }
  *out = s;
  return KERR_OK;
}
