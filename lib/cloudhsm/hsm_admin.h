/* hsm_admin.h - the C API of the CloudHSM service (hsm_service.h): the
 * CloudHSMv2 operations (BaldrApiService) and kmsd's own cluster
 * administration (KmsdHsmAdmin, what hsm-cli calls), as kms_domain.h is for KMS.
 *
 * The protocol layer (handlers_cloudhsm.c, handlers_hsm_admin.c) maps JSON
 * onto these calls, with the service kms_domain_cloudhsm gives.  Conventions
 * are kms_domain.h's: an aws_call (aws/call.h) says who calls and
 * where (clusters live per account + region), every operation authorizes
 * with authz_check ("cloudhsm:<Operation>" on the cluster's ARN, "*" for
 * CreateCluster / DescribeClusters / DescribeBackups), outputs are zeroed
 * caller structs freed by the matching *_clear, and errors are the
 * CloudHSMv2 codes of kerr.h (KERR_HSM_*) worded for callers, never
 * containing a password or PIN.  Design: docs/hsm-clusters.md. */
#ifndef KMSD_CLOUDHSM_HSM_ADMIN_H
#define KMSD_CLOUDHSM_HSM_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/kerr.h"
#include "aws/call.h"
#include "cloudhsm/hsm_service.h"
#include "store/store.h"

/* ------------------------------------------------------------- HSM pool */

#define HSM_POOL_MAX 1024
#define HSM_POOL_PATH_MAX 4096

/* One operator-provisioned PKCS#11 token (kmsd --hsm-pool).  CreateHsm takes
 * a free one instead of making a SoftHSM2 token. */
typedef struct hsm_pool_entry {
  char *module;              /* absolute path of the PKCS#11 module */
  char *token_label;         /* 1..32 bytes */
  char *so_pin;              /* the token's SO PIN (4..32 bytes) */
  char *availability_zone;   /* NULL: any zone */
} hsm_pool_entry;

/* The pool the next hsm_service_open of this process starts with (what kmsd
 * --hsm-pool calls, before opening the domain, which opens the service, and
 * before other threads exist).  Process-wide because SoftHSM2's
 * configuration is: a service that
 * starts with a non-empty pool writes no SoftHSM2 configuration of its own
 * and leaves SOFTHSM2_CONF as the operator set it, so pool tokens that are
 * SoftHSM2 tokens in the operator's directory are reachable; CreateHsm then
 * only takes pool tokens.  The domain refuses to open when its store holds an
 * HSM (not DELETED) that it could not reach: a SoftHSM2 token it made earlier
 * under the data directory, or a pool token the pool no longer lists.  Pool
 * HSMs are matched to entries by token label, so the file may be reordered.
 * Entries are validated and copied (SO PINs in wiped memory); n == 0 clears
 * the preset.  Bad entries -> KERR_VALIDATION and the preset is unchanged. */
kerr_code hsm_clusters_preset_pool(const hsm_pool_entry *entries, size_t n, kerr *err);

/* Replace the pool of a running service (same validation and label matching
 * as above, against the HSMs in the store).  A domain that started without a
 * pool keeps its own SoftHSM2 directory, so a pool set this way can only
 * reach SoftHSM2 tokens of that directory (other modules are fine).  A
 * domain that started with a pool cannot be given an empty one.  On failure
 * nothing changes. */
kerr_code hsm_clusters_set_pool(hsm_service *svc, const hsm_pool_entry *entries, size_t n, kerr *err);

/* Free an array of entries made by hsm_pool_file_load or by hand (SO PINs
 * wiped).  NULL is allowed. */
void hsm_pool_entries_free(hsm_pool_entry *entries, size_t n);

/* ---------------------------------------------------------- CloudHSMv2 */

/* A cluster as DescribeClusters shows it: the row plus its HSMs (DELETED
 * ones left out) and which certificates the state allows to show. */
typedef struct hsm_cluster_desc {
  store_hsm_cluster c;
  store_hsm *hsms;           /* owned */
  size_t nhsms;
  bool show_csr;             /* Certificates.ClusterCsr */
  bool show_cluster_cert;    /* Certificates.ClusterCertificate */
} hsm_cluster_desc;

void hsm_cluster_desc_clear(hsm_cluster_desc *c);

typedef struct hsm_create_cluster_input {
  const char *hsm_type;               /* required */
  const char *const *subnet_ids;      /* 1..10, distinct; zone a, b, c... in this order */
  size_t nsubnets;
  const char *source_backup_id;       /* NULL, a backup id or a backup ARN */
  const char *mode;                   /* NULL: FIPS */
  const char *network_type;           /* NULL: IPV4 */
  const aws_pair *tags;
  size_t ntags;
} hsm_create_cluster_input;

kerr_code hsm_create_cluster(hsm_service *svc, const aws_call *call,
                             const hsm_create_cluster_input *in, hsm_cluster_desc *out, kerr *err);

typedef struct hsm_filter {
  const char *name;                   /* "clusterIds", "states", "vpcIds", "backupIds" */
  const char *const *values;
  size_t nvalues;
} hsm_filter;

typedef struct hsm_list_input {
  const hsm_filter *filters;
  size_t nfilters;
  int max_results;                    /* 0: all */
  const char *next_token;             /* NULL: from the start */
  bool sort_ascending;                /* DescribeBackups */
} hsm_list_input;

typedef struct hsm_cluster_list {
  hsm_cluster_desc *items;            /* owned */
  size_t n;
  char *next_token;                   /* owned; NULL when no more */
} hsm_cluster_list;

void hsm_cluster_list_clear(hsm_cluster_list *l);

/* DescribeClusters.  An unknown filter name or a bad token ->
 * KERR_HSM_INVALID_REQUEST. */
kerr_code hsm_describe_clusters(hsm_service *svc, const aws_call *call, const hsm_list_input *in,
                                hsm_cluster_list *out, kerr *err);

/* InitializeCluster: UNINITIALIZED -> INITIALIZE_IN_PROGRESS (-> INITIALIZED
 * by the worker).  SignedCert must verify under TrustAnchor and carry the
 * cluster CSR's public key.  `state_out` gets the new state. */
kerr_code hsm_initialize_cluster(hsm_service *svc, const aws_call *call, const char *cluster_id,
                                 const char *signed_cert, const char *trust_anchor,
                                 char state_out[STORE_ENUM_MAX], kerr *err);

/* CreateHsm in one of the cluster's zones; ip_address optional (must lie in
 * that zone's subnet, 10.0.<zone index>.0/24, and be free). */
kerr_code hsm_create_hsm(hsm_service *svc, const aws_call *call, const char *cluster_id,
                         const char *availability_zone, const char *ip_address, store_hsm *out,
                         kerr *err);

/* DeleteHsm by HSM id, ENI id or ENI IP (at least one). */
kerr_code hsm_delete_hsm(hsm_service *svc, const aws_call *call, const char *cluster_id,
                         const char *hsm_id, const char *eni_id, const char *eni_ip,
                         char hsm_id_out[STORE_HSM_ID_MAX], kerr *err);

/* DeleteCluster: a cluster with HSMs left -> KERR_HSM_INVALID_REQUEST. */
kerr_code hsm_delete_cluster(hsm_service *svc, const aws_call *call, const char *cluster_id,
                             hsm_cluster_desc *out, kerr *err);

typedef struct hsm_backup_list {
  store_hsm_backup *items;            /* owned */
  size_t n;
  char *next_token;                   /* owned; NULL when no more */
} hsm_backup_list;

void hsm_backup_list_clear(hsm_backup_list *l);

/* DescribeBackups (filters backupIds, clusterIds, states). */
kerr_code hsm_describe_backups(hsm_service *svc, const aws_call *call, const hsm_list_input *in,
                               hsm_backup_list *out, kerr *err);

/* ------------------------------------------------------ KmsdHsmAdmin */

#define HSM_PASSWORD_MIN 7
#define HSM_PASSWORD_MAX 32
#define HSM_USERNAME_MAX 31

/* ActivateCluster: INITIALIZED -> ACTIVE; `password` becomes the admin's. */
kerr_code hsm_admin_activate(hsm_service *svc, const aws_call *call, const char *cluster_id,
                             const char *password, kerr *err);

/* CreateUser (role "crypto-user" | "admin").  kmsuser's password also
 * becomes the user PIN of every HSM of the cluster. */
kerr_code hsm_admin_create_user(hsm_service *svc, const aws_call *call, const char *cluster_id,
                                const char *username, const char *role, const char *password,
                                kerr *err);

kerr_code hsm_admin_delete_user(hsm_service *svc, const aws_call *call, const char *cluster_id,
                                const char *username, kerr *err);

/* ListUsers: *out is a new array ordered by name (free()); no hashes leave
 * the service that matter (the salted hash is in the record; do not show it). */
kerr_code hsm_admin_list_users(hsm_service *svc, const aws_call *call, const char *cluster_id,
                               store_hsm_user **out, size_t *n, kerr *err);

/* ChangePassword: also clears the lockout and the failed-attempt count. */
kerr_code hsm_admin_change_password(hsm_service *svc, const aws_call *call, const char *cluster_id,
                                    const char *username, const char *password, kerr *err);

/* Login: wrong password counts a failure (the 5th in a row locks);
 * locked -> KERR_HSM_ACCESS_DENIED "user is locked out". */
kerr_code hsm_admin_login(hsm_service *svc, const aws_call *call, const char *cluster_id,
                          const char *username, const char *password, kerr *err);

kerr_code hsm_admin_logout(hsm_service *svc, const aws_call *call, const char *cluster_id,
                           const char *username, kerr *err);

/* SimulateFailure: kind "none" | "network-errors" | "subnet-not-found" |
 * "no-free-addresses" | "internal-error". */
kerr_code hsm_admin_simulate_failure(hsm_service *svc, const aws_call *call, const char *cluster_id,
                                     const char *kind, kerr *err);

#endif
