/* fuzz_credentials.c - libFuzzer target for the credentials file loader
 * (aws/credentials.h).  The file is operator input, but it holds every
 * secret kmsd has, and a typo in it must stop the server with a clear
 * message, never crash it or print a secret.
 *
 * The input is the file's content, loaded through creds_load from an
 * in-memory file (memfd), exactly as kmsd reads it.  Invariants:
 *   - creds_load returns KERR_OK with a store, or KERR_VALIDATION with a
 *     message and *out left NULL;
 *   - a loaded store answers creds_lookup for every principal of the file
 *     with exactly its account, ARN, secret, session token and policy, and
 *     answers NULL for keys it does not hold;
 *   - the outcome never depends on secret content: the same document with
 *     every secretAccessKey and sessionToken replaced by filler of the same
 *     length loads with the same code and the very same message. */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "aws/credentials.h"
#include "aws/principal.h"
#include "fuzz_common.h"

static int mem_fd = -1;
static char mem_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  mem_fd = memfd_create("kmsd-fuzz-credentials", MFD_CLOEXEC);
  if (mem_fd < 0) abort();
  snprintf(mem_path, sizeof mem_path, "/proc/self/fd/%d", mem_fd);
  return 0;
}

static kerr_code load(const void *text, size_t len, creds_store **out, kerr *err) {
  kerr_code rc;
  if (ftruncate(mem_fd, 0) != 0) abort();
  if (len && pwrite(mem_fd, text, len, 0) != (ssize_t)len) abort();
  *out = (creds_store *)1;
  kerr_clear(err);
  rc = creds_load(mem_path, 0, out, err);
  FUZZ_CHECK(rc == KERR_OK || rc == KERR_VALIDATION,
             "the loader answers OK or a validation error");
  if (rc == KERR_OK) {
    FUZZ_CHECK(*out != NULL && *out != (creds_store *)1, "a store after success");
  } else {
    FUZZ_CHECK(*out == NULL, "no store after a failure");
    FUZZ_CHECK(fuzz_msg_ok(err->msg, sizeof err->msg), "a failure has a message");
  }
  return rc;
}

static const char *str_member(json_t *o, const char *name) {
  return json_string_value(json_object_get(o, name));
}

/* Every principal of the (loaded) document is found with its own fields. */
static void check_lookups(const creds_store *s, json_t *doc) {
  json_t *arr = json_object_get(doc, "principals"), *p;
  size_t i;
  char long_key[ACCESS_KEY_ID_MAX + 2];

  json_array_foreach(arr, i, p) {
    const char *akid = str_member(p, "accessKeyId"), *token = str_member(p, "sessionToken");
    const cred_entry *e = creds_lookup(s, akid);
    FUZZ_CHECK(e != NULL, "every principal of the file is found");
    FUZZ_CHECK(strcmp(e->who.access_key_id, akid) == 0, "found under its own key");
    FUZZ_CHECK(strcmp(e->secret_access_key, str_member(p, "secretAccessKey")) == 0, "its secret");
    FUZZ_CHECK(strcmp(e->who.account_id, str_member(p, "accountId")) == 0, "its account");
    FUZZ_CHECK(strcmp(e->who.arn, str_member(p, "arn")) == 0, "its ARN");
    FUZZ_CHECK(token ? e->session_token && strcmp(e->session_token, token) == 0
                     : e->session_token == NULL,
               "its session token");
    FUZZ_CHECK((json_object_get(p, "policy") != NULL) == (e->who.identity_policy != NULL),
               "its identity policy");
  }
  memset(long_key, 'A', sizeof long_key - 1);
  long_key[sizeof long_key - 1] = '\0';
  FUZZ_CHECK(creds_lookup(s, long_key) == NULL, "an over-long key is not found");
  FUZZ_CHECK(creds_lookup(s, "") == NULL, "the empty key is not found");
  FUZZ_CHECK(creds_lookup(s, NULL) == NULL, "no key, no principal");
}

/* Replace the secrets of a copy of `doc` with same-length filler. */
static int blank_secrets(json_t *doc) {
  static const char *const fields[] = {"secretAccessKey", "sessionToken"};
  json_t *arr = json_object_get(doc, "principals"), *p;
  size_t i;
  int replaced = 0;

  if (!json_is_array(arr)) return 0;
  json_array_foreach(arr, i, p) {
    for (size_t f = 0; f < 2; f++) {
      json_t *v = json_is_object(p) ? json_object_get(p, fields[f]) : NULL;
      size_t len;
      char *fill;
      if (!json_is_string(v)) continue;
      len = strlen(json_string_value(v));
      fill = malloc(len + 1);
      if (!fill) abort();
      memset(fill, '#', len);
      fill[len] = '\0';
      json_object_set_new(p, fields[f], json_string(fill));
      free(fill);
      replaced = 1;
    }
  }
  return replaced;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  creds_store *s = NULL, *s2 = NULL;
  kerr err, err2;
  kerr_code rc, rc2;
  json_t *doc, *blank;
  char *text, *blank_text;

  rc = load(data, size, &s, &err);
  doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
  if (rc == KERR_OK) {
    FUZZ_CHECK(doc != NULL, "a loaded file is JSON");
    check_lookups(s, doc);
  }
  creds_free(s);
  if (!doc) return 0;

  /* The differential: same document, secrets blanked, same answer. */
  blank = json_deep_copy(doc);
  if (!blank) abort();
  if (blank_secrets(blank)) {
    text = json_dumps(doc, 0);
    blank_text = json_dumps(blank, 0);
    if (!text || !blank_text) abort();
    rc = load(text, strlen(text), &s, &err);
    rc2 = load(blank_text, strlen(blank_text), &s2, &err2);
    FUZZ_CHECK(rc == rc2, "the outcome does not depend on secret content");
    FUZZ_CHECK(rc == KERR_OK || strcmp(err.msg, err2.msg) == 0,
               "the message does not depend on secret content");
    creds_free(s);
    creds_free(s2);
    free(text);
    free(blank_text);
  }
  json_decref(blank);
  json_decref(doc);
  return 0;
}
