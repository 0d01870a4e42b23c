/* hsm_pool_file.h - read the operator's HSM pool file (kmsd --hsm-pool).
 *
 * The file lists PKCS#11 tokens the operator provisioned for kmsd's HSM
 * clusters, with their SO PINs, so it is checked like a key file: owner-only
 * permissions, bounded size, strict JSON with no unknown fields.  The result
 * feeds hsm_clusters_preset_pool (lib/cloudhsm/hsm_admin.h). */
#ifndef KMSD_API_HSM_POOL_FILE_H
#define KMSD_API_HSM_POOL_FILE_H

#include <stddef.h>

#include "core/kerr.h"
#include "cloudhsm/hsm_admin.h"

#define HSM_POOL_FILE_MAX (256 * 1024)

/* Read `path`: a JSON array of 1..HSM_POOL_MAX objects
 *   {"module": "/abs/lib.so", "tokenLabel": "...", "soPin": "...",
 *    "availabilityZone": "us-east-1a"}   (availabilityZone optional)
 * The file must be a regular file of at most HSM_POOL_FILE_MAX bytes that
 * neither group nor others may read or write; each module must be a readable
 * file; labels are 1..32 bytes, SO PINs 4..32 bytes, neither with control
 * characters; (module, tokenLabel) pairs are distinct.  On KERR_OK *out is a
 * new array of *n entries (free with hsm_pool_entries_free; SO PINs in wiped
 * memory).  On failure *out is NULL and err names the file, the entry and
 * the field (KERR_VALIDATION; never a PIN or any quoted file content). */
kerr_code hsm_pool_file_load(const char *path, hsm_pool_entry **out, size_t *n, kerr *err);

#endif
