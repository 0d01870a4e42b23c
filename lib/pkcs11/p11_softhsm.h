/* p11_softhsm.h - SoftHSM2, the default HSM of kmsd's clusters: find the
 * module, point it at a token directory under the data directory, and
 * provision new tokens.
 *
 * Why it exists: kmsd creates its own HSMs when no operator-configured module
 * is given.  SoftHSM2 reads its configuration file (named by SOFTHSM2_CONF)
 * once, when the module is initialized, so the configuration must be written
 * and the variable set before the first p11_module_load of SoftHSM2 in the
 * process; every SoftHSM2 token of the process then lives in that one
 * directory. */
#ifndef KMSD_PKCS11_P11_SOFTHSM_H
#define KMSD_PKCS11_P11_SOFTHSM_H

#include <stddef.h>

#include "pkcs11/p11.h"

/* Environment variable that overrides where the SoftHSM2 module is looked
 * for (an absolute path to libsofthsm2.so). */
#define P11_SOFTHSM_MODULE_ENV "KMSD_SOFTHSM2_MODULE"

/* Locate the SoftHSM2 module.  `override` (may be NULL) wins, then the
 * environment variable above, then the usual install locations (Debian's
 * /usr/lib/softhsm, the multiarch directories, /usr/local, /usr/lib64...).
 * On success the absolute path is copied into `out` (`out_size` bytes).
 * KERR_NOT_FOUND names the places searched when none exists. */
kerr_code p11_softhsm_find_module(const char *override, char *out, size_t out_size, p11_err *err);

/* Create <data_dir>/hsm/tokens (mode 0700), write <data_dir>/hsm/softhsm2.conf
 * (mode 0600: tokendir = that directory, file object store, log level ERROR)
 * atomically, and set SOFTHSM2_CONF to it.  Must run before SoftHSM2 is
 * loaded and before other threads start (setenv is not thread-safe).  If
 * `conf_path` is not NULL the configuration file's path is copied there
 * (`conf_size` bytes).  On failure the environment is unchanged; directories
 * already created stay. */
kerr_code p11_softhsm_configure(const char *data_dir, char *conf_path, size_t conf_size,
                                p11_err *err);

/* Initialize a new SoftHSM2 token labelled `label` in the first free slot,
 * with `so_pin` for the security officer and `user_pin` for the user (the
 * kmsuser crypto user).  *slot receives the token's slot afterwards.
 * KERR_ALREADY_EXISTS when the label is taken; nothing is created then. */
kerr_code p11_softhsm_provision(p11_module *mod, const char *label, const char *so_pin,
                                const char *user_pin, CK_SLOT_ID *slot, p11_err *err);

#endif
