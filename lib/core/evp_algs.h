/* evp_algs.h - OpenSSL algorithms fetched once per process.
 *
 * Given EVP_sha256() or EVP_aes_256_gcm(), OpenSSL 3 looks the algorithm up
 * by name in its provider store (a shared lock and reference counts) at
 * every initialization, a cost paid on every request.  These functions fetch
 * each algorithm once, on first use from any thread, and hand out the same
 * object afterwards; if a fetch fails they return the implicit algorithm,
 * which then fails, or works, the same way at initialization.
 *
 * Ownership: the returned objects belong to this module and live until the
 * process ends; callers never free them. */
#ifndef KMSD_CORE_EVP_ALGS_H
#define KMSD_CORE_EVP_ALGS_H

#include <openssl/evp.h>

const EVP_MD *evp_sha256(void);
const EVP_CIPHER *evp_aes256gcm(void);

#endif
