/* softhsm_tokens.h - what the PKCS#11 unit tests share: SoftHSM2 pointed at a
 * fresh temporary directory with tokens provisioned in it (real tokens, no
 * mocks), and its removal.  Header-only: each test is its own program. */
#ifndef KMSD_TESTS_SOFTHSM_TOKENS_H
#define KMSD_TESTS_SOFTHSM_TOKENS_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "pkcs11/p11.h"
#include "pkcs11/p11_softhsm.h"

/* mkdtemp(dir_template), configure SoftHSM2 there, load it into *mod (its
 * path into module_path when not NULL) and provision the n tokens `labels`
 * with the two PINs.  0, or -1 with the reason on stderr. */
static inline int softhsm_tokens_setup(char *dir_template, char *module_path, size_t module_path_size,
                                       p11_module **mod, const char *const *labels, size_t n,
                                       const char *so_pin, const char *user_pin) {
  char path[PATH_MAX];
  p11_err err;
  if (!mkdtemp(dir_template)) return -1;
  if (!module_path) {
    module_path = path;
    module_path_size = sizeof path;
  }
  if (p11_softhsm_find_module(NULL, module_path, module_path_size, &err) ||
      p11_softhsm_configure(dir_template, NULL, 0, &err) ||
      p11_module_load(module_path, mod, &err)) {
    fprintf(stderr, "softhsm: %s\n", err.e.msg);
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    CK_SLOT_ID slot;
    if (p11_softhsm_provision(*mod, labels[i], so_pin, user_pin, &slot, &err)) {
      fprintf(stderr, "provision %s: %s\n", labels[i], err.e.msg);
      return -1;
    }
  }
  return 0;
}

/* Release `mod` and remove `dir`.  0, or -1 when the removal failed. */
static inline int softhsm_tokens_teardown(const char *dir, p11_module *mod) {
  char cmd[PATH_MAX + 16];
  p11_module_release(mod);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

#endif
