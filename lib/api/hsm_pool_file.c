/* hsm_pool_file.c - parse and check kmsd's --hsm-pool file (see
 * hsm_pool_file.h).  It lives in the protocol layer because it is JSON; the
 * domain only ever sees validated hsm_pool_entry structs. */
#include "api/hsm_pool_file.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/secmem.h"

#define LABEL_MAX 32
#define PIN_MIN 4
#define PIN_MAX 32
#define ZONE_MAX 32
#define PATH_MAX_LEN 4096

/* Read the whole file into wiped memory after checking what it is and who
 * may read it.  *text is secure_alloc'ed with *len + 1 bytes. */
static kerr_code read_private_file(const char *path, char **text, size_t *len, kerr *err) {
  kerr_code rc = KERR_OK;
  struct stat st;
  size_t got = 0;
  char *buf = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  *text = NULL;
  *len = 0;
  if (fd < 0) return kerr_set(err, KERR_VALIDATION, "--hsm-pool %s: %s", path, strerror(errno));
  if (fstat(fd, &st) != 0) {
    rc = kerr_set(err, KERR_VALIDATION, "--hsm-pool %s: %s", path, strerror(errno));
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = kerr_set(err, KERR_VALIDATION, "--hsm-pool %s: not a regular file", path);
    goto out;
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    rc = kerr_set(err, KERR_VALIDATION,
                  "--hsm-pool %s: mode %04o lets group or others at it, but it holds SO PINs; "
                  "make it readable by kmsd's user only (chmod 600)",
                  path, (unsigned)(st.st_mode & 07777));
    goto out;
  }
  if (st.st_size <= 0 || st.st_size > HSM_POOL_FILE_MAX) {
    rc = kerr_set(err, KERR_VALIDATION, "--hsm-pool %s: must hold 1 to %d bytes", path,
                  HSM_POOL_FILE_MAX);
    goto out;
  }
  buf = secure_alloc(HSM_POOL_FILE_MAX + 1);
  if (!buf) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  /* Read to EOF (the file may change after fstat), never past the cap. */
  for (;;) {
    ssize_t r = read(fd, buf + got, HSM_POOL_FILE_MAX + 1 - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      rc = kerr_set(err, KERR_VALIDATION, "--hsm-pool %s: %s", path, strerror(errno));
      goto out;
    }
    if (r == 0) break;
    got += (size_t)r;
    if (got > HSM_POOL_FILE_MAX) {
      rc = kerr_set(err, KERR_VALIDATION, "--hsm-pool %s: must hold 1 to %d bytes", path,
                    HSM_POOL_FILE_MAX);
      goto out;
    }
  }
  *text = buf;
  *len = got;
  buf = NULL;
out:
  if (buf) secure_free(buf, HSM_POOL_FILE_MAX + 1);
  close(fd);
  return rc;
}

static bool has_control_chars(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f) return true;
  return false;
}

/* A string member `name` of `obj`: NULL when absent (`*bad` stays false),
 * else its value; a non-string sets *bad. */
static const char *string_member(json_t *obj, const char *name, bool *bad) {
  json_t *v = json_object_get(obj, name);
  if (!v) return NULL;
  if (!json_is_string(v)) {
    *bad = true;
    return NULL;
  }
  return json_string_value(v);
}

/* Check entry `i` and fill `e` (strings copied; the SO PIN into wiped memory). */
static kerr_code load_entry(const char *path, size_t i, json_t *obj, hsm_pool_entry *e, kerr *err) {
  static const char *const known[] = {"module", "tokenLabel", "soPin", "availabilityZone"};
  const char *key;
  json_t *v;
  bool bad = false;
  if (!json_is_object(obj))
    return kerr_set(err, KERR_VALIDATION, "--hsm-pool %s: entry %zu is not an object", path, i);
  json_object_foreach(obj, key, v) {
    bool ok = false;
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) ok = ok || strcmp(key, known[k]) == 0;
    if (!ok) {
      /* Field names are structure, not secrets, but stay bounded and printable. */
      if (strlen(key) > 40 || has_control_chars(key))
        return kerr_set(err, KERR_VALIDATION, "--hsm-pool %s: entry %zu has an unknown field", path, i);
      return kerr_set(err, KERR_VALIDATION,
                      "--hsm-pool %s: entry %zu: unknown field \"%s\" (allowed: module, "
                      "tokenLabel, soPin, availabilityZone)",
                      path, i, key);
    }
  }
  const char *module = string_member(obj, "module", &bad);
  if (bad || !module)
    return kerr_set(err, KERR_VALIDATION, "--hsm-pool %s: entry %zu: \"module\" (a string) is required", path, i);
  if (module[0] != '/' || strlen(module) > PATH_MAX_LEN || has_control_chars(module))
    return kerr_set(err, KERR_VALIDATION,
                    "--hsm-pool %s: entry %zu: module must be an absolute path of at most %d bytes",
                    path, i, PATH_MAX_LEN);
  struct stat st;
  if (stat(module, &st) != 0 || !S_ISREG(st.st_mode) || access(module, R_OK) != 0)
    return kerr_set(err, KERR_VALIDATION, "--hsm-pool %s: entry %zu: module %s is not a readable file",
                    path, i, module);
  const char *label = string_member(obj, "tokenLabel", &bad);
  if (bad || !label)
    return kerr_set(err, KERR_VALIDATION, "--hsm-pool %s: entry %zu: \"tokenLabel\" (a string) is required", path, i);
  if (!label[0] || strlen(label) > LABEL_MAX || has_control_chars(label))
    return kerr_set(err, KERR_VALIDATION,
                    "--hsm-pool %s: entry %zu: tokenLabel must be 1 to %d bytes without control characters",
                    path, i, LABEL_MAX);
  const char *pin = string_member(obj, "soPin", &bad);
  if (bad || !pin)
    return kerr_set(err, KERR_VALIDATION, "--hsm-pool %s: entry %zu: \"soPin\" (a string) is required", path, i);
  size_t pl = strlen(pin);
  if (pl < PIN_MIN || pl > PIN_MAX || has_control_chars(pin))
    return kerr_set(err, KERR_VALIDATION,
                    "--hsm-pool %s: entry %zu: soPin must be %d to %d bytes without control characters",
                    path, i, PIN_MIN, PIN_MAX);
  const char *zone = string_member(obj, "availabilityZone", &bad);
  if (bad)
    return kerr_set(err, KERR_VALIDATION, "--hsm-pool %s: entry %zu: availabilityZone must be a string", path, i);
  if (zone) {
    size_t zl = strlen(zone);
    bool ok = zl >= 2 && zl <= ZONE_MAX;
    for (size_t k = 0; ok && k < zl; k++)
      ok = (zone[k] >= 'a' && zone[k] <= 'z') || (zone[k] >= '0' && zone[k] <= '9') || zone[k] == '-';
    if (!ok)
      return kerr_set(err, KERR_VALIDATION,
                      "--hsm-pool %s: entry %zu: availabilityZone must look like us-east-1a", path, i);
  }
  e->module = strdup(module);
  e->token_label = strdup(label);
  e->availability_zone = zone ? strdup(zone) : NULL;
  e->so_pin = secure_alloc(pl + 1);
  if (e->so_pin) memcpy(e->so_pin, pin, pl);
  if (!e->module || !e->token_label || !e->so_pin || (zone && !e->availability_zone))
    return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  return KERR_OK;
}

kerr_code hsm_pool_file_load(const char *path, hsm_pool_entry **out, size_t *n, kerr *err) {
  kerr_code rc;
  char *text = NULL;
  size_t len = 0, count = 0;
  json_t *root = NULL;
  json_error_t jerr;
  hsm_pool_entry *entries = NULL;
  *out = NULL;
  *n = 0;
  rc = read_private_file(path, &text, &len, err);
  if (rc) return rc;
  root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    /* jerr.text may quote the input around the error, which can be a PIN. */
    rc = kerr_set(err, KERR_VALIDATION, "--hsm-pool %s: invalid JSON at line %d, column %d", path,
                  jerr.line, jerr.column);
    goto out;
  }
  if (!json_is_array(root) || json_array_size(root) == 0 || json_array_size(root) > HSM_POOL_MAX) {
    rc = kerr_set(err, KERR_VALIDATION,
                  "--hsm-pool %s: must be a JSON array of 1 to %d token objects", path, HSM_POOL_MAX);
    goto out;
  }
  count = json_array_size(root);
  entries = calloc(count, sizeof *entries);
  if (!entries) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  for (size_t i = 0; i < count; i++) {
    rc = load_entry(path, i, json_array_get(root, i), &entries[i], err);
    if (rc) goto out;
    for (size_t j = 0; j < i; j++)
      if (strcmp(entries[j].module, entries[i].module) == 0 &&
          strcmp(entries[j].token_label, entries[i].token_label) == 0) {
        rc = kerr_set(err, KERR_VALIDATION, "--hsm-pool %s: entries %zu and %zu name the same token",
                      path, j, i);
        goto out;
      }
  }
  *out = entries;
  *n = count;
  entries = NULL;
out:
  hsm_pool_entries_free(entries, count);
  json_decref(root);
  secure_free(text, HSM_POOL_FILE_MAX + 1);
  return rc;
}
