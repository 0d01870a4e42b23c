/* p11_softhsm.c - SoftHSM2 module discovery, configuration under the data
 * directory, and token provisioning (see p11_softhsm.h). */
#include "pkcs11/p11_softhsm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where distributions install the module, most specific first. */
static const char *const known_module_paths[] = {
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/arm-linux-gnueabihf/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib/pkcs11/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
};

static kerr_code fail(p11_err *err, kerr_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kerr_code fail(p11_err *err, kerr_code code, const char *fmt, ...) {
  if (!err) return code;
  va_list ap;
  err->rv = CKR_OK;
  err->e.code = code;
  va_start(ap, fmt);
  vsnprintf(err->e.msg, sizeof err->e.msg, fmt, ap);
  va_end(ap);
  return code;
}

static int copy_path(const char *path, char *out, size_t out_size) {
  size_t n = strlen(path);
  if (n + 1 > out_size) return -1;
  memcpy(out, path, n + 1);
  return 0;
}

kerr_code p11_softhsm_find_module(const char *override, char *out, size_t out_size, p11_err *err) {
  p11_err_clear(err);
  const char *chosen = override && *override ? override : getenv(P11_SOFTHSM_MODULE_ENV);
  if (chosen && *chosen) {
    if (chosen[0] != '/' || access(chosen, R_OK) != 0)
      return fail(err, KERR_NOT_FOUND, "SoftHSM2 module %s is not a readable absolute path", chosen);
    if (copy_path(chosen, out, out_size))
      return fail(err, KERR_VALIDATION, "SoftHSM2 module path is too long");
    return KERR_OK;
  }
  for (size_t i = 0; i < sizeof known_module_paths / sizeof known_module_paths[0]; i++) {
    if (access(known_module_paths[i], R_OK) == 0) {
      if (copy_path(known_module_paths[i], out, out_size))
        return fail(err, KERR_VALIDATION, "output buffer too small for the SoftHSM2 module path");
      return KERR_OK;
    }
  }
  return fail(err, KERR_NOT_FOUND,
              "SoftHSM2 module not found (looked in /usr/lib/softhsm, the multiarch "
              "directories, /usr/lib64, /usr/local/lib/softhsm; set %s)",
              P11_SOFTHSM_MODULE_ENV);
}

/* mkdir that accepts an existing directory but insists on it being one. */
static int ensure_dir(const char *path) {
  struct stat st;
  if (mkdir(path, 0700) == 0) return 0;
  if (errno != EEXIST) return -1;
  if (stat(path, &st) != 0) return -1;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

kerr_code p11_softhsm_configure(const char *data_dir, char *conf_path, size_t conf_size,
                                p11_err *err) {
  char base[PATH_MAX], hsm_dir[PATH_MAX], tokens[PATH_MAX], conf[PATH_MAX], tmp[PATH_MAX];
  char text[PATH_MAX + 256];
  int fd = -1;
  kerr_code rc = KERR_OK;
  p11_err_clear(err);
  if (!data_dir || !*data_dir || strnlen(data_dir, PATH_MAX) >= PATH_MAX - 64)
    return fail(err, KERR_VALIDATION, "data directory path is empty or too long");
  if (!realpath(data_dir, base))
    return fail(err, KERR_NOT_FOUND, "data directory %s: %s", data_dir, strerror(errno));
  /* The path goes into a line-based config file: no control characters. */
  for (const char *p = base; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      return fail(err, KERR_VALIDATION, "data directory path contains control characters");
  if ((size_t)snprintf(hsm_dir, sizeof hsm_dir, "%s/hsm", base) >= sizeof hsm_dir ||
      (size_t)snprintf(tokens, sizeof tokens, "%s/tokens", hsm_dir) >= sizeof tokens ||
      (size_t)snprintf(conf, sizeof conf, "%s/softhsm2.conf", hsm_dir) >= sizeof conf ||
      (size_t)snprintf(tmp, sizeof tmp, "%s/softhsm2.conf.tmp", hsm_dir) >= sizeof tmp)
    return fail(err, KERR_VALIDATION, "data directory path is too long");
  if (ensure_dir(hsm_dir) || ensure_dir(tokens))
    return fail(err, KERR_INTERNAL, "cannot create %s: %s", tokens, strerror(errno));

  int len = snprintf(text, sizeof text,
                     "# SoftHSM2 configuration for the HSM clusters of this data directory.\n"
                     "# Rewritten at every start; edits are lost.\n"
                     "directories.tokendir = %s\n"
                     "objectstore.backend = file\n"
                     "log.level = ERROR\n"
                     "slots.removable = false\n"
                     "slots.mechanisms = ALL\n"
                     "library.reset_on_fork = false\n",
                     tokens);
  if (len < 0 || (size_t)len >= sizeof text)
    return fail(err, KERR_VALIDATION, "data directory path is too long");
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail(err, KERR_INTERNAL, "cannot write %s: %s", tmp, strerror(errno));
  for (size_t off = 0; off < (size_t)len;) {
    ssize_t w = write(fd, text + off, (size_t)len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      rc = fail(err, KERR_INTERNAL, "cannot write %s: %s", tmp, strerror(errno));
      goto out;
    }
    off += (size_t)w;
  }
  if (fsync(fd) != 0) {
    rc = fail(err, KERR_INTERNAL, "cannot sync %s: %s", tmp, strerror(errno));
    goto out;
  }
  close(fd);
  fd = -1;
  if (rename(tmp, conf) != 0) {
    rc = fail(err, KERR_INTERNAL, "cannot install %s: %s", conf, strerror(errno));
    goto out;
  }
  if (conf_path && copy_path(conf, conf_path, conf_size)) {
    rc = fail(err, KERR_VALIDATION, "output buffer too small for the configuration path");
    goto out;
  }
  if (setenv("SOFTHSM2_CONF", conf, 1) != 0)
    rc = fail(err, KERR_INTERNAL, "cannot set SOFTHSM2_CONF: %s", strerror(errno));
out:
  if (fd >= 0) {
    close(fd);
    unlink(tmp);
  }
  return rc;
}

kerr_code p11_softhsm_provision(p11_module *mod, const char *label, const char *so_pin,
                                const char *user_pin, CK_SLOT_ID *slot, p11_err *err) {
  /* One step (the label check included): a free slot found in one gate
   * entry and initialized in another could be another token's by then. */
  return p11_init_free_token(mod, label, so_pin, user_pin, slot, err);
}
