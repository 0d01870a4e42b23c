/* rootkey.c - create, load and use the root key file (see rootkey.h). */
#include "crypto/rootkey.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ids.h"
#include "core/secmem.h"

struct rootkey {
  uint8_t key[ROOTKEY_LEN];
};

#define WRAP_LABEL "kmsd-wrap-v1"
/* The ids the check value is bound to; key ids are UUIDs, so no key
 * material can ever be wrapped under the same AAD. */
#define CHECK_OWNER "kmsd-root-key-check"
#define CHECK_NAME "v1"

static kerr_code write_all(int fd, const uint8_t *p, size_t n, const char *path, kerr *err) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return kerr_set(err, KERR_INTERNAL, "Cannot write root key %s: %s", path, strerror(errno));
    p += w;
    n -= (size_t)w;
  }
  return KERR_OK;
}

/* Create the file exclusively so two starting servers never both write one;
 * the loser of the race simply loads the winner's key. */
static kerr_code create_key_file(const char *path, rootkey *rk, int *created, kerr *err) {
  kerr_code rc = KERR_OK;
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  *created = 0;
  if (fd < 0) {
    if (errno == EEXIST) return KERR_OK;
    return kerr_set(err, KERR_INTERNAL, "Cannot create root key %s: %s", path, strerror(errno));
  }
  if (rand_bytes(rk->key, ROOTKEY_LEN)) {
    rc = kerr_set(err, KERR_INTERNAL, "The random number generator failed.");
    goto out;
  }
  rc = write_all(fd, rk->key, ROOTKEY_LEN, path, err);
  if (rc) goto out;
  if (fsync(fd) != 0) {
    rc = kerr_set(err, KERR_INTERNAL, "Cannot sync root key %s: %s", path, strerror(errno));
    goto out;
  }
  *created = 1;
out:
  close(fd);
  if (rc) unlink(path);
  return rc;
}

static kerr_code load_key_file(const char *path, rootkey *rk, kerr *err) {
  kerr_code rc = KERR_OK;
  struct stat st;
  size_t got = 0;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return kerr_set(err, KERR_INTERNAL, "Cannot open root key %s: %s", path, strerror(errno));
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    rc = kerr_set(err, KERR_INTERNAL, "Root key %s is not a regular file.", path);
    goto out;
  }
  if (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) {
    rc = kerr_set(err, KERR_INTERNAL,
                  "Root key %s is accessible by group or others (mode %03o); chmod 600 it.", path,
                  (unsigned)(st.st_mode & 0777));
    goto out;
  }
  if (st.st_size != ROOTKEY_LEN) {
    rc = kerr_set(err, KERR_INTERNAL, "Root key %s must be exactly %d bytes.", path, ROOTKEY_LEN);
    goto out;
  }
  while (got < ROOTKEY_LEN) {
    ssize_t r = read(fd, rk->key + got, ROOTKEY_LEN - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      rc = kerr_set(err, KERR_INTERNAL, "Cannot read root key %s.", path);
      goto out;
    }
    got += (size_t)r;
  }
out:
  close(fd);
  return rc;
}

kerr_code rootkey_load_or_create(const char *path, rootkey **out, kerr *err) {
  kerr_code rc = KERR_OK;
  int created = 0;
  rootkey *rk = secure_alloc(sizeof *rk);

  *out = NULL;
  if (!rk) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  rc = create_key_file(path, rk, &created, err);
  if (rc) goto out;
  if (!created) {
    rc = load_key_file(path, rk, err);
    if (rc) goto out;
  }
  *out = rk;
  rk = NULL;
out:
  rootkey_free(rk);
  return rc;
}

void rootkey_free(rootkey *rk) { secure_free(rk, sizeof *rk); }

static kerr_code wrap_aad(const char *key_id, const char *material_id, uint8_t *buf,
                          size_t cap, size_t *len, kerr *err) {
  size_t l1 = sizeof WRAP_LABEL, l2 = strlen(key_id) + 1, l3 = strlen(material_id);
  if (l1 + l2 + l3 > cap) return kerr_set(err, KERR_INTERNAL, "Key identifiers too long to wrap.");
  memcpy(buf, WRAP_LABEL, l1);
  memcpy(buf + l1, key_id, l2);
  memcpy(buf + l1 + l2, material_id, l3);
  *len = l1 + l2 + l3;
  return KERR_OK;
}

kerr_code rootkey_wrap(const rootkey *rk, const char *key_id, const char *material_id,
                       const uint8_t material[AESGCM_KEY_LEN], uint8_t out[ROOTKEY_WRAPPED_LEN],
                       kerr *err) {
  uint8_t aad[256];
  size_t aad_len = 0;
  kerr_code rc = wrap_aad(key_id, material_id, aad, sizeof aad, &aad_len, err);
  if (rc) return rc;
  out[0] = 1;
  if (rand_bytes(out + 1, AESGCM_IV_LEN))
    return kerr_set(err, KERR_INTERNAL, "The random number generator failed.");
  return aesgcm_seal(rk->key, out + 1, aad, aad_len, material, AESGCM_KEY_LEN,
                     out + 1 + AESGCM_IV_LEN, out + 1 + AESGCM_IV_LEN + AESGCM_KEY_LEN, err);
}

kerr_code rootkey_unwrap(const rootkey *rk, const char *key_id, const char *material_id,
                         const uint8_t *wrapped, size_t wrapped_len,
                         uint8_t material[AESGCM_KEY_LEN], kerr *err) {
  uint8_t aad[256];
  size_t aad_len = 0;
  kerr ignored;
  kerr_code rc;

  if (wrapped_len != ROOTKEY_WRAPPED_LEN || wrapped[0] != 1) goto bad;
  rc = wrap_aad(key_id, material_id, aad, sizeof aad, &aad_len, err);
  if (rc) return rc;
  rc = aesgcm_open(rk->key, wrapped + 1, aad, aad_len, wrapped + 1 + AESGCM_IV_LEN,
                   AESGCM_KEY_LEN, wrapped + 1 + AESGCM_IV_LEN + AESGCM_KEY_LEN, material,
                   &ignored);
  if (rc) goto bad;
  return KERR_OK;
bad:
  secure_wipe(material, AESGCM_KEY_LEN);
  return kerr_set(err, KERR_INTERNAL,
                  "Stored key material failed its integrity check (wrong root key?).");
}

kerr_code rootkey_check_value_make(const rootkey *rk, uint8_t out[ROOTKEY_CHECK_LEN], kerr *err) {
  static const uint8_t zeros[AESGCM_KEY_LEN];
  return rootkey_wrap(rk, CHECK_OWNER, CHECK_NAME, zeros, out, err);
}

int rootkey_check_value_matches(const rootkey *rk, const uint8_t *value, size_t len) {
  static const uint8_t zeros[AESGCM_KEY_LEN];
  uint8_t opened[AESGCM_KEY_LEN];
  kerr ignored;
  int ok = rootkey_unwrap(rk, CHECK_OWNER, CHECK_NAME, value, len, opened, &ignored) == KERR_OK &&
           memcmp(opened, zeros, sizeof zeros) == 0;
  secure_wipe(opened, sizeof opened);
  return ok;
}
