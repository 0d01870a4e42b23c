/* hsm_service.h - the CloudHSM service kmsd simulates, as one object: its
 * clusters, HSMs (PKCS#11 tokens), users and backups live in the store, and
 * a worker thread moves them through their asynchronous states.
 *
 * Why its own context: the service is a backing system the KMS domain uses
 * (through lib/kms/backend_cloudhsm.c), not a part of the domain.  It knows
 * nothing of KMS: whoever opens it lends it the store, the root key that
 * wraps its secrets (PINs, backup keys) and a few options, and the callers
 * of its API (hsm_admin.h, hsm_cluster.h) say who calls with an aws_call.
 * So lib/cloudhsm depends on store, pkcs11, crypto, aws and core only. */
#ifndef KMSD_CLOUDHSM_HSM_SERVICE_H
#define KMSD_CLOUDHSM_HSM_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/kerr.h"
#include "crypto/rootkey.h"
#include "store/store.h"

typedef struct hsm_service hsm_service;

typedef struct hsm_service_config {
  store *st;              /* required; borrowed, must outlive the service */
  rootkey *rk;            /* required; borrowed: wraps PINs and backup keys */
  const char *data_dir;   /* required: SoftHSM2 tokens go under <data_dir>/hsm */
  int timeout_ms;         /* wait for a free PKCS#11 session of a busy HSM
                             before KERR_DEPENDENCY_TIMEOUT; 1..600000 */
  size_t key_cache;       /* working copies of keys kept per HSM
                             (pkcs11/p11_keycache.h); 0 = none, at most
                             P11_KEYCACHE_SLOTS_MAX */
} hsm_service_config;

/* Open the service: take the HSM pool preset by hsm_clusters_preset_pool
 * (hsm_admin.h), configure SoftHSM2 under <data_dir>/hsm when there is no
 * pool (must run before other threads exist), then start the worker that
 * drives clusters and HSMs through their asynchronous states, including
 * those a previous run left mid-way.  On KERR_OK *out is a new service
 * (hsm_service_close); on failure *out is NULL and nothing is left running. */
kerr_code hsm_service_open(const hsm_service_config *cfg, hsm_service **out, kerr *err);

/* Requests the HSMs' working copies of keys served and missed
 * (pkcs11/p11_keycache.h), summed over the HSMs open now; false, and both 0,
 * when kmsd keeps none (key_cache 0). */
bool hsm_service_key_cache_counts(hsm_service *svc, uint64_t *hits, uint64_t *misses);

/* Stop the worker and close every token.  Call after every user of
 * hsm_conn (hsm_cluster.h) has closed its connections.  NULL is allowed. */
void hsm_service_close(hsm_service *svc);

#endif
