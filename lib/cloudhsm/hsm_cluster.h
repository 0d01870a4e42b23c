/* hsm_cluster.h - HSM clusters as custom key stores use them.
 *
 * kmsd manages CloudHSM-style clusters (the BaldrApiService API, see
 * docs/hsm-clusters.md).  Each HSM of a cluster is a PKCS#11 token; every
 * key of the cluster exists on each of its active HSMs.  This header is the
 * narrow interface the CloudHSM key-store backend
 * (lib/kms/backend_cloudhsm.c) needs from the cluster code (hsm_*.c): read a cluster's configuration, connect to it as
 * the `kmsuser` crypto user, and run key operations inside its HSMs.  It
 * knows nothing of key stores; key stores know nothing of tokens.
 *
 * Keys are named by a label chosen by the caller (the KMS key id); key
 * values never leave an HSM in clear.  All functions are thread-safe; an
 * hsm_conn may be used by many threads at once (it pools PKCS#11 sessions). */
#ifndef KMSD_CLOUDHSM_HSM_CLUSTER_H
#define KMSD_CLOUDHSM_HSM_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/kerr.h"
#include "aws/call.h"
#include "cloudhsm/hsm_service.h"

#define HSM_CLUSTER_ID_MAX 25   /* cluster-[2-7a-zA-Z]{11,16} plus NUL */
#define HSM_STATE_MAX 32
#define HSM_LINEAGE_MAX 64
#define HSM_GCM_IV_LEN 12
#define HSM_GCM_TAG_LEN 16

/* What a custom key store needs to know about a cluster. */
typedef struct hsm_cluster_view {
  char cluster_id[HSM_CLUSTER_ID_MAX];
  char state[HSM_STATE_MAX];        /* ClusterState of the model: "ACTIVE", ... */
  int active_hsms;                  /* HSMs in state ACTIVE */
  int active_zones;                 /* distinct Availability Zones among them */
  char *trust_anchor_pem;           /* owned; the TrustAnchor given to
                                       InitializeCluster; NULL before that */
  char lineage[HSM_LINEAGE_MAX];    /* equal for clusters that share backup
                                       history (one created from a backup of
                                       the other): "related" clusters */
  char simulated_failure[HSM_STATE_MAX]; /* "none", "network-errors",
                                       "subnet-not-found", "no-free-addresses",
                                       "internal-error" (hsm-cli) */
} hsm_cluster_view;

void hsm_cluster_view_clear(hsm_cluster_view *v);

/* The cluster `cluster_id` of the caller's account and region.  No
 * authorization (the KMS operation that asks has been authorized).
 * KERR_HSM_CLUSTER_NOT_FOUND when there is none (or it is DELETED). On
 * KERR_OK *out is filled (hsm_cluster_view_clear). */
kerr_code hsm_cluster_describe(hsm_service *svc, const char *account_id, const char *region,
                               const char *cluster_id, hsm_cluster_view *out, kerr *err);

/* A connection to every active HSM of one cluster, logged in as kmsuser. */
typedef struct hsm_conn hsm_conn;

/* How many passwords hsm_cluster_connect may be given to try. */
#define HSM_CONNECT_PASSWORDS_MAX 2

/* Connect to `cluster_id` as kmsuser, in the order a real connection fails:
 * cluster missing -> "CLUSTER_NOT_FOUND"; no active HSM ->
 * "INSUFFICIENT_CLOUDHSM_HSMS"; a simulated network failure ->
 * "NETWORK_ERRORS" / "SUBNET_NOT_FOUND" / "INSUFFICIENT_FREE_ADDRESSES_IN_SUBNET"
 * / "INTERNAL_ERROR"; then the login: no kmsuser -> "USER_NOT_FOUND"; locked
 * -> "USER_LOCKED_OUT"; logged in elsewhere (hsm-cli login) ->
 * "USER_LOGGED_IN"; an HSM that accepts none of the passwords ->
 * "INVALID_CREDENTIALS"; any PKCS#11 failure -> "INTERNAL_ERROR".
 *
 * `passwords` (1 to HSM_CONNECT_PASSWORDS_MAX of them, in order of
 * preference) are the passwords kmsuser may have: each HSM is logged in with
 * the first of them it accepts (the one the previous HSM took is tried
 * first), so HSMs left with different passwords by an interrupted change
 * still connect, and the connection remembers which password each HSM has.
 * A connect that fails on credentials counts one failed login toward the
 * lockout (as on a real HSM); one that succeeds resets the count, so the
 * passwords an HSM refused on the way never add up.
 *
 * On failure *connection_error points at that static ConnectionErrorCode
 * string and err says more; on KERR_OK *out is a new connection
 * (hsm_conn_close) with a session pool per active HSM. */
kerr_code hsm_cluster_connect(hsm_service *svc, const char *account_id, const char *region,
                              const char *cluster_id, const char *const *passwords,
                              size_t npasswords, hsm_conn **out, const char **connection_error,
                              kerr *err);

/* hsm_cluster_connect for a node that opens its own connection to a store
 * another node (or this one before a restart) connected: the same checks
 * and login, but a refused password is not counted toward the lockout (nor
 * a success reset the count), since the node may try again every second;
 * nothing is written. */
kerr_code hsm_cluster_attach(hsm_service *svc, const char *account_id, const char *region,
                             const char *cluster_id, const char *const *passwords,
                             size_t npasswords, hsm_conn **out, const char **connection_error,
                             kerr *err);

/* Whether some HSM of the connection has kmsuser's password `password` (it
 * logged in with it, or hsm_conn_set_password gave it to it). */
bool hsm_conn_has_password(hsm_conn *c, const char *password);

/* Give kmsuser the password `new_password` on every HSM of the connected
 * cluster that does not have it yet, each from the PIN it has (C_SetPIN, one
 * HSM after the other), then record it as the cluster's kmsuser password:
 * the PIN new HSMs get and hsm-cli checks.  KMS rotates it after connecting
 * so only kmsd knows it.  The caller must have stored `new_password` where
 * the next connect will try it first: a crash may leave any HSM with either
 * password.
 *
 * Fails (KERR_HSM_INTERNAL_FAILURE) on the first HSM that refuses the change,
 * or when an HSM became active in the cluster meanwhile without the change;
 * KERR_CONFLICT when the cluster's record of kmsuser's password changed
 * while the HSMs were being changed (an operator's hsm-cli change wins);
 * then the HSMs changed so far have `new_password`, the others their old
 * one, the connection stays logged in to each with the password it has, the
 * cluster's record is unchanged, and calling again finishes the change. */
kerr_code hsm_conn_set_password(hsm_conn *c, const char *new_password, kerr *err);

/* Log out and close every session. NULL is allowed. */
void hsm_conn_close(hsm_conn *c);

/* Generate a non-extractable AES-256 key labelled `label` on every active HSM
 * of the cluster (copied under wrapping, never in clear).  Fewer than two
 * active HSMs -> KERR_HSM_CLUSTER_INVALID_CONFIG. */
kerr_code hsm_conn_create_key(hsm_conn *c, const char *label, kerr *err);

/* Delete the key `label` from every HSM of the cluster (and its backups).
 * A key already absent is not an error. */
kerr_code hsm_conn_delete_key(hsm_conn *c, const char *label, kerr *err);

/* AES-256-GCM inside an HSM with key `label`: the IV comes from the HSM's
 * generator; `ct_out` gets len bytes, `tag_out` the 16-byte tag.  A missing
 * key -> KERR_NOT_FOUND; HSM unreachable -> KERR_KEY_UNAVAILABLE. */
kerr_code hsm_conn_encrypt(hsm_conn *c, const char *label, const uint8_t *pt, size_t len,
                           const uint8_t *aad, size_t aad_len, uint8_t iv_out[HSM_GCM_IV_LEN],
                           uint8_t *ct_out, uint8_t tag_out[HSM_GCM_TAG_LEN], kerr *err);

/* The inverse; an authentication failure -> KERR_INVALID_CIPHERTEXT.
 * `pt_out` (len bytes) is the caller's secret buffer. */
kerr_code hsm_conn_decrypt(hsm_conn *c, const char *label, const uint8_t *ct, size_t len,
                           const uint8_t *aad, size_t aad_len,
                           const uint8_t iv[HSM_GCM_IV_LEN], const uint8_t tag[HSM_GCM_TAG_LEN],
                           uint8_t *pt_out, kerr *err);

/* `n` random bytes from an HSM's generator. */
kerr_code hsm_conn_random(hsm_conn *c, uint8_t *out, size_t n, kerr *err);

#endif
