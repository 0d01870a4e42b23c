/* backend_cloudhsm.c - the key-store backend of AWS_CLOUDHSM custom key
 * stores (kms_backend.h): KMS keys whose AES-256 keys live in the HSMs of a
 * cluster of the CloudHSM service (lib/cloudhsm), used as the crypto user
 * `kmsuser`.  The connection manager (kms_cks_conn.c) calls it only through
 * kms_backend_cloudhsm; the KMS operations never see a cluster.
 *
 * Connecting keeps kmsuser's password rotated.  After every successful login
 * the password becomes a random one only kmsd knows.  Changing it is one
 * C_SetPIN per HSM, so a crash or a failing HSM can stop it between two
 * HSMs.  What makes that harmless is one invariant, kept at every instant by
 * the order of the steps below:
 *
 *   every HSM's kmsuser password is one of the store's stored passwords,
 *   {current, pending} (both wrapped under the root key in its row).
 *
 * connect logs in to each HSM with whichever of the two it takes
 * (hsm_cluster_connect), then repairs: if any HSM took pending, the others
 * are moved to pending and pending is promoted to current.  Only then does
 * it rotate: a fresh password is stored as pending (no HSM has the old
 * pending any more), set on each HSM, and promoted.  A connect after a crash
 * anywhere in this therefore logs in and finishes the job; a PIN change that
 * fails ends the connect FAILED, and the next connect finishes the change.
 * A connect that a disconnect overtakes stops at its next step (the
 * manager's still_current), and the disconnect waits for it, so nothing
 * changes a store's passwords after it is DISCONNECTED. */
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudhsm/hsm_cluster.h"
#include "core/log.h"
#include "core/secmem.h"
#include "crypto/aesgcm.h"
#include "kms/kms_backend.h"
#include "kms/kms_internal.h"

#define PASSWORD_MATERIAL_ID KMSI_CKS_PASSWORD_MATERIAL_ID
#define ROTATED_PASSWORD_LEN 32
#define PASSWORD_BUF (ROTATED_PASSWORD_LEN + 1)

static const char TYPE_CLOUDHSM[] = "AWS_CLOUDHSM";

/* A connection is the cluster's hsm_conn itself, cast to and from the
 * interface's opaque type. */
static hsm_conn *conn_of(kms_backend_conn *c) { return (hsm_conn *)c; }

/* ------------------------------------------------------------ passwords */

kerr_code kmsi_cks_wrap_password(kms_domain *d, const char *cks_id, const char *password,
                                 uint8_t **out, size_t *out_len, kerr *err) {
  uint8_t *padded = secure_alloc(AESGCM_KEY_LEN);
  size_t n = password ? strlen(password) : 0;
  kerr_code rc = KERR_OK;

  *out = NULL;
  *out_len = 0;
  if (!padded) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  if (n < 1 || n > AESGCM_KEY_LEN) {
    rc = kerr_set(err, KERR_VALIDATION, "The key store password must be 1 to %d characters.",
                  AESGCM_KEY_LEN);
    goto out;
  }
  /* NUL padding to the root key's fixed 32-byte unit; a password is never
   * allowed to contain NUL, so the length is recovered exactly. */
  memcpy(padded, password, n);
  *out = malloc(ROOTKEY_WRAPPED_LEN);
  if (!*out) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  rc = rootkey_wrap(d->rk, cks_id, PASSWORD_MATERIAL_ID, padded, *out, err);
  if (rc) {
    free(*out);
    *out = NULL;
    goto out;
  }
  *out_len = ROOTKEY_WRAPPED_LEN;
out:
  secure_free(padded, AESGCM_KEY_LEN);
  return rc;
}

/* Unwrap into `out` (PASSWORD_BUF bytes of secret memory, NUL-terminated). */
static kerr_code unwrap_password(kms_domain *d, const char *cks_id, const uint8_t *wrapped,
                                 size_t len, char *out, kerr *err) {
  kerr_code rc = rootkey_unwrap(d->rk, cks_id, PASSWORD_MATERIAL_ID, wrapped, len,
                                (uint8_t *)out, err);
  out[AESGCM_KEY_LEN] = '\0';
  return rc;
}

bool kmsi_cks_password_is(kms_domain *d, const char *cks_id, const uint8_t *wrapped, size_t len,
                          const char *password) {
  char *pw = secure_alloc(PASSWORD_BUF);
  kerr ignored;
  bool same = false;
  if (!pw || !wrapped || !password) goto out;
  if (unwrap_password(d, cks_id, wrapped, len, pw, &ignored) == KERR_OK)
    same = strcmp(pw, password) == 0;
out:
  secure_free(pw, PASSWORD_BUF);
  return same;
}

/* A fresh random password of ROTATED_PASSWORD_LEN letters and digits. */
static kerr_code random_password(char out[PASSWORD_BUF], kerr *err) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  size_t filled = 0;
  uint8_t b[64];
  while (filled < ROTATED_PASSWORD_LEN) {
    if (rand_bytes(b, sizeof b)) return kerr_set(err, KERR_INTERNAL, "The random number generator failed.");
    for (size_t i = 0; i < sizeof b && filled < ROTATED_PASSWORD_LEN; i++)
      if (b[i] < 248) out[filled++] = alphabet[b[i] % 62]; /* 248 = 4*62: no bias */
  }
  secure_wipe(b, sizeof b);
  out[ROTATED_PASSWORD_LEN] = '\0';
  return KERR_OK;
}

/* ------------------------------------------------------------- connect */

/* Copy `len` bytes of `src` into a new allocation (*dst; NULL for NULL). */
static kerr_code dup_bytes(const uint8_t *src, size_t len, uint8_t **dst, kerr *err) {
  *dst = NULL;
  if (!src) return KERR_OK;
  *dst = malloc(len ? len : 1);
  if (!*dst) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  if (len) memcpy(*dst, src, len);
  return KERR_OK;
}

static bool same_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen) {
  if (!a || !b) return a == b;
  return alen == blen && memcmp(a, b, alen) == 0;
}

/* Set the wrapped passwords of store `c->cks_id` to `current` (never NULL)
 * and `pending` (NULL: none), provided the row still holds the two that `c`
 * holds and is in the state (and since the time) `c` was read in; then `c`
 * holds the new ones.  A row whose passwords changed under
 * the worker (an UpdateCustomKeyStore after a disconnect) is the operator's:
 * KERR_CONFLICT, nothing written.  Not a state change.  On failure `c` and
 * the row are unchanged. */
static kerr_code store_passwords(kms_domain *d, store_cks *c, const uint8_t *current,
                                 size_t current_len, const uint8_t *pending, size_t pending_len,
                                 kerr *err) {
  store_tx *tx = NULL;
  store_cks row;
  uint8_t *new_current = NULL, *new_pending = NULL, *mirror_current = NULL,
          *mirror_pending = NULL;
  kerr_code rc;
  memset(&row, 0, sizeof row);
  rc = dup_bytes(current, current_len, &new_current, err);
  if (!rc) rc = dup_bytes(pending, pending_len, &new_pending, err);
  if (!rc) rc = dup_bytes(current, current_len, &mirror_current, err);
  if (!rc) rc = dup_bytes(pending, pending_len, &mirror_pending, err);
  if (rc) goto out;
  rc = kmsi_begin(d, true, &tx, err);
  if (rc) goto out;
  rc = d->st->ops->cks_get(tx, c->cks_id, &row, err);
  if (rc) goto out;
  /* The row must still be the one the connect started from: a disconnect
   * (through any node) moved it on, and then the passwords are the
   * operator's to change, not this worker's to record. */
  if (strcmp(row.connection_state, c->connection_state) != 0 ||
      row.state_changed_ms != c->state_changed_ms) {
    rc = kerr_set(err, KERR_CONFLICT,
                  "Custom key store %s was disconnected meanwhile: the kmsuser password is not "
                  "recorded.", c->cks_id);
    goto out;
  }
  if (!same_bytes(row.password_wrapped, row.password_wrapped_len, c->password_wrapped,
                  c->password_wrapped_len) ||
      !same_bytes(row.pending_password_wrapped, row.pending_password_wrapped_len,
                  c->pending_password_wrapped, c->pending_password_wrapped_len)) {
    rc = kerr_set(err, KERR_CONFLICT,
                  "The kmsuser password of custom key store %s was changed meanwhile.", c->cks_id);
    goto out;
  }
  free(row.password_wrapped);
  row.password_wrapped = new_current;
  row.password_wrapped_len = current_len;
  new_current = NULL;
  free(row.pending_password_wrapped);
  row.pending_password_wrapped = new_pending;
  row.pending_password_wrapped_len = new_pending ? pending_len : 0;
  new_pending = NULL;
  rc = d->st->ops->cks_update(tx, &row, err);
  if (rc) goto out;
  rc = d->st->ops->commit(tx, err);
  tx = NULL;
  if (rc) goto out;
  free(c->password_wrapped);
  c->password_wrapped = mirror_current;
  c->password_wrapped_len = current_len;
  mirror_current = NULL;
  free(c->pending_password_wrapped);
  c->pending_password_wrapped = mirror_pending;
  c->pending_password_wrapped_len = mirror_pending ? pending_len : 0;
  mirror_pending = NULL;
out:
  if (tx) d->st->ops->rollback(tx);
  free(new_current);
  free(new_pending);
  free(mirror_current);
  free(mirror_pending);
  store_cks_clear(&row);
  return rc;
}

/* Log in to the cluster with the store's passwords: each HSM with the one it
 * takes of current and pending.  On KERR_OK *conn is live; else *code is the
 * ConnectionErrorCode. */
static kerr_code login_cluster(kms_domain *d, const store_cks *c, bool attach, hsm_conn **conn,
                               const char **code, kerr *err) {
  char *current = secure_alloc(PASSWORD_BUF);
  char *pending = secure_alloc(PASSWORD_BUF);
  const char *passwords[HSM_CONNECT_PASSWORDS_MAX];
  size_t n = 0;
  kerr_code rc = KERR_OK;

  *conn = NULL;
  *code = "INTERNAL_ERROR";
  if (!current || !pending) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  if (!c->password_wrapped) {
    rc = kerr_set(err, KERR_INTERNAL, "The key store has no kmsuser password.");
    goto out;
  }
  rc = unwrap_password(d, c->cks_id, c->password_wrapped, c->password_wrapped_len, current, err);
  if (rc) goto out;
  passwords[n++] = current;
  if (c->pending_password_wrapped) {
    rc = unwrap_password(d, c->cks_id, c->pending_password_wrapped,
                         c->pending_password_wrapped_len, pending, err);
    if (rc) goto out;
    passwords[n++] = pending;
  }
  rc = attach ? hsm_cluster_attach(d->hsm, c->account_id, c->region, c->cluster_id, passwords, n,
                                   conn, code, err)
              : hsm_cluster_connect(d->hsm, c->account_id, c->region, c->cluster_id, passwords, n,
                                    conn, code, err);
out:
  secure_free(current, PASSWORD_BUF);
  secure_free(pending, PASSWORD_BUF);
  if (rc && !*code) *code = "INTERNAL_ERROR";
  return rc;
}

/* Finish a change of kmsuser's password that a crash or a failing HSM cut
 * short: if any HSM has the pending password, give it to the others and make
 * it current.  Nothing to do when no HSM has it. */
static kerr_code repair_password(const kms_backend_connect_ctx *cx, store_cks *c, hsm_conn *conn,
                                 kerr *err) {
  kms_domain *d = cx->d;
  char *pw = NULL;
  kerr_code rc = KERR_OK;
  if (!c->pending_password_wrapped) return KERR_OK;
  pw = secure_alloc(PASSWORD_BUF);
  if (!pw) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  rc = unwrap_password(d, c->cks_id, c->pending_password_wrapped, c->pending_password_wrapped_len,
                       pw, err);
  if (rc || !hsm_conn_has_password(conn, pw)) goto out;
  rc = cx->still_current(cx, err);
  if (!rc) rc = hsm_conn_set_password(conn, pw, err);
  if (!rc) rc = cx->still_current(cx, err);
  if (rc) goto out;
  rc = store_passwords(d, c, c->pending_password_wrapped, c->pending_password_wrapped_len, NULL, 0,
                       err);
out:
  secure_free(pw, PASSWORD_BUF);
  return rc;
}

/* Rotate kmsuser's password on the connected cluster, every HSM of which has
 * the current one (after repair_password): store a new one as pending (the
 * old pending, if any, is on no HSM), set it on the HSMs, promote it. */
static kerr_code rotate_password(const kms_backend_connect_ctx *cx, store_cks *c, hsm_conn *conn,
                                 kerr *err) {
  kms_domain *d = cx->d;
  char *pw = secure_alloc(PASSWORD_BUF);
  uint8_t *wrapped = NULL;
  size_t wrapped_len = 0;
  kerr_code rc;

  if (!pw) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  rc = random_password(pw, err);
  if (rc) goto out;
  rc = kmsi_cks_wrap_password(d, c->cks_id, pw, &wrapped, &wrapped_len, err);
  if (rc) goto out;
  rc = cx->still_current(cx, err);
  if (!rc)
    rc = store_passwords(d, c, c->password_wrapped, c->password_wrapped_len, wrapped, wrapped_len,
                         err);
  if (!rc) rc = cx->still_current(cx, err);
  if (!rc) rc = hsm_conn_set_password(conn, pw, err);
  if (!rc) rc = cx->still_current(cx, err);
  if (rc) goto out;
  rc = store_passwords(d, c, wrapped, wrapped_len, NULL, 0, err);
out:
  free(wrapped);
  secure_free(pw, PASSWORD_BUF);
  return rc;
}

static kerr_code chsm_connect(const kms_backend_connect_ctx *cx, kms_backend_conn **out,
                              const char **connection_error, kerr *err) {
  store_cks *c = cx->row;
  hsm_conn *conn = NULL;
  kerr_code rc;

  *out = NULL;
  rc = login_cluster(cx->d, c, false, &conn, connection_error, err);
  if (rc) return rc;
  rc = cx->still_current(cx, err);
  if (rc) goto out;
  /* A repair or rotation cut short leaves the invariant true, so the next
   * connect finishes it.  This one still fails: an HSM that refused
   * C_SetPIN may refuse what follows too (SoftHSM2 keeps a token it could
   * not write broken until its module is reinitialized, which the next
   * connect's login does), and a store must not look CONNECTED while one of
   * its HSMs is in doubt. */
  rc = repair_password(cx, c, conn, err);
  if (rc == KERR_OK) rc = rotate_password(cx, c, conn, err);
  if (rc && cx->still_current(cx, NULL) == KERR_OK) {
    log_msg(LOG_WARN, cx->request_id,
            "custom key store %s: kmsuser's password change is unfinished (the next connect "
            "finishes it)",
            c->cks_id);
    *connection_error = "INTERNAL_ERROR";
  }
  if (rc) goto out;
  *out = (kms_backend_conn *)conn;
  conn = NULL;
out:
  hsm_conn_close(conn);
  return rc;
}

/* A node that did not connect the store logs in to each HSM with the stored
 * passwords, and changes none: rotating is the connect's, on the node that
 * runs it.  A refusal is not counted toward kmsuser's lockout
 * (hsm_cluster_attach): the node tries again later.  Sessions logged in
 * before a later rotation stay logged in. */
static kerr_code chsm_attach(const kms_backend_connect_ctx *cx, kms_backend_conn **out,
                             const char **connection_error, kerr *err) {
  hsm_conn *conn = NULL;
  kerr_code rc = login_cluster(cx->d, cx->row, true, &conn, connection_error, err);
  *out = rc ? NULL : (kms_backend_conn *)conn;
  return rc;
}

static void chsm_disconnect(kms_backend_conn *c) { hsm_conn_close(conn_of(c)); }

/* A round trip into an HSM of the cluster: its generator answers. */
static kerr_code chsm_health(kms_backend_conn *c, const kms_backend_ctx *ctx,
                             const char **connection_error, kerr *err) {
  uint8_t b[1];
  kerr_code rc = hsm_conn_random(conn_of(c), b, sizeof b, err);
  *connection_error = rc ? "NETWORK_ERRORS" : NULL;
  return rc;
}

/* ------------------------------------------------------- configuration */

/* cluster-[2-7a-zA-Z]{11,16}, the model's pattern. */
static bool cluster_id_ok(const char *s) {
  size_t n;
  if (strncmp(s, "cluster-", 8) != 0) return false;
  s += 8;
  for (n = 0; s[n]; n++)
    if (!((s[n] >= '2' && s[n] <= '7') || (s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z')))
      return false;
  return n >= 11 && n <= 16;
}

/* Whether two PEM certificates are the same certificate (whitespace and
 * PEM line breaks aside).  Unparsable input is "not the same". */
static bool same_certificate(const char *a_pem, const char *b_pem) {
  BIO *a_bio = NULL, *b_bio = NULL;
  X509 *a = NULL, *b = NULL;
  bool same = false;
  if (!a_pem || !b_pem) return false;
  a_bio = BIO_new_mem_buf(a_pem, -1);
  b_bio = BIO_new_mem_buf(b_pem, -1);
  if (!a_bio || !b_bio) goto out;
  a = PEM_read_bio_X509(a_bio, NULL, NULL, NULL);
  b = PEM_read_bio_X509(b_bio, NULL, NULL, NULL);
  same = a && b && X509_cmp(a, b) == 0;
out:
  X509_free(a);
  X509_free(b);
  BIO_free(a_bio);
  BIO_free(b_bio);
  return same;
}

static void chsm_check_row(const store_cks *c, const char **bad) {
  *bad = NULL;
  if (!cluster_id_ok(c->cluster_id))
    *bad = "cluster id";
  else if (!c->trust_anchor_pem ||
           strncmp(c->trust_anchor_pem, "-----BEGIN CERTIFICATE-----", 27) != 0)
    *bad = "trust anchor certificate";
  else if (!c->password_wrapped || c->password_wrapped_len == 0)
    *bad = "kmsuser password";
}

static kerr_code describe_cluster(kms_domain *d, const kms_call *call, const char *cluster_id,
                                  hsm_cluster_view *v, kerr *err) {
  kerr_code rc =
      hsm_cluster_describe(d->hsm, call->caller->account_id, call->region, cluster_id, v, err);
  if (rc == KERR_HSM_CLUSTER_NOT_FOUND || rc == KERR_NOT_FOUND || rc == KERR_HSM_RESOURCE_NOT_FOUND)
    return kerr_set(err, KERR_HSM_CLUSTER_NOT_FOUND, "AWS CloudHSM cluster %.64s not found.",
                    cluster_id);
  return rc;
}

static kerr_code check_cluster_active(const hsm_cluster_view *v, kerr *err) {
  if (strcmp(v->state, "ACTIVE") != 0)
    return kerr_set(err, KERR_HSM_CLUSTER_NOT_ACTIVE,
                    "AWS CloudHSM cluster %s is not active (it is %s). Initialize and activate it.",
                    v->cluster_id, v->state);
  return KERR_OK;
}

/* Two or more active HSMs in different Availability Zones: what the model
 * requires of a cluster behind a key store that creates keys. */
static kerr_code check_cluster_config(const hsm_cluster_view *v, kerr *err) {
  if (v->active_hsms < 2 || v->active_zones < 2)
    return kerr_set(err, KERR_HSM_CLUSTER_INVALID_CONFIG,
                    "AWS CloudHSM cluster %s must have at least two active HSMs in different "
                    "Availability Zones (it has %d active HSM(s) in %d zone(s)).",
                    v->cluster_id, v->active_hsms, v->active_zones);
  return KERR_OK;
}

typedef struct in_use_arg {
  const char *cluster_id;
  const char *lineage;
} in_use_arg;

/* A store uses the cluster, or a cluster sharing its backup history. */
static bool match_cluster_in_use(const store_cks *c, const void *varg) {
  const in_use_arg *a = varg;
  if (strcmp(c->type, TYPE_CLOUDHSM) != 0) return false;
  if (strcmp(c->cluster_id, a->cluster_id) == 0) return true;
  return a->lineage[0] && strcmp(c->cluster_lineage, a->lineage) == 0;
}

/* CreateCustomKeyStore: the cluster exists, no store of the account uses it
 * or a related one, it is active with two HSMs in two zones, and the trust
 * anchor is its own; then the row records its canonical id and lineage. */
static kerr_code check_create(kms_domain *d, const kms_call *call, store_tx *tx, store_cks *p,
                              kerr *err) {
  hsm_cluster_view v;
  store_cks other;
  in_use_arg use;
  bool hit = false;
  kerr_code rc;

  memset(&v, 0, sizeof v);
  memset(&other, 0, sizeof other);
  rc = describe_cluster(d, call, p->cluster_id, &v, err);
  if (rc) goto out;
  use.cluster_id = v.cluster_id;
  use.lineage = v.lineage;
  rc = kmsi_cks_find_own(d, tx, call, match_cluster_in_use, &use, NULL, &other, &hit, err);
  if (rc) goto out;
  if (hit) {
    rc = kerr_set(err, KERR_HSM_CLUSTER_IN_USE,
                  "AWS CloudHSM cluster %s (or a cluster sharing its backup history) is already "
                  "associated with custom key store %s.",
                  v.cluster_id, other.cks_id);
    goto out;
  }
  rc = check_cluster_active(&v, err);
  if (rc) goto out;
  rc = check_cluster_config(&v, err);
  if (rc) goto out;
  if (!same_certificate(p->trust_anchor_pem, v.trust_anchor_pem)) {
    rc = kerr_set(err, KERR_INCORRECT_TRUST_ANCHOR,
                  "The trust anchor certificate is not the trust anchor of AWS CloudHSM cluster %s.",
                  v.cluster_id);
    goto out;
  }
  snprintf(p->cluster_id, sizeof p->cluster_id, "%s", v.cluster_id);
  snprintf(p->cluster_lineage, sizeof p->cluster_lineage, "%s", v.lineage);
out:
  hsm_cluster_view_clear(&v);
  store_cks_clear(&other);
  return rc;
}

/* Under the write lock: a concurrent create may have taken the cluster. */
static kerr_code check_insert(kms_domain *d, const kms_call *call, store_tx *tx,
                              const store_cks *p, kerr *err) {
  in_use_arg use = {p->cluster_id, p->cluster_lineage};
  bool hit = false;
  kerr_code rc = kmsi_cks_find_own(d, tx, call, match_cluster_in_use, &use, NULL, NULL, &hit, err);
  if (rc) return rc;
  if (hit)
    return kerr_set(err, KERR_HSM_CLUSTER_IN_USE,
                    "AWS CloudHSM cluster %s (or a cluster sharing its backup history) is already "
                    "associated with a custom key store.",
                    p->cluster_id);
  return KERR_OK;
}

/* UpdateCustomKeyStore to another cluster: it must share the old one's
 * backup history, be active, and have two HSMs in two zones. */
static kerr_code check_update(kms_domain *d, const kms_call *call, const store_cks *cur,
                              store_cks *p, kerr *err) {
  hsm_cluster_view nv, ov;
  const char *old_lineage = cur->cluster_lineage;
  kerr_code rc;

  if (strcmp(p->cluster_id, cur->cluster_id) == 0) return KERR_OK;
  memset(&nv, 0, sizeof nv);
  memset(&ov, 0, sizeof ov);
  rc = describe_cluster(d, call, p->cluster_id, &nv, err);
  if (rc) goto out;
  /* Stores made before lineage was recorded ask the old cluster. */
  if (!old_lineage[0] &&
      hsm_cluster_describe(d->hsm, cur->account_id, cur->region, cur->cluster_id, &ov, NULL) ==
          KERR_OK)
    old_lineage = ov.lineage;
  if (!old_lineage[0] || strcmp(old_lineage, nv.lineage) != 0) {
    rc = kerr_set(err, KERR_HSM_CLUSTER_NOT_RELATED,
                  "AWS CloudHSM cluster %s does not share a backup history with cluster %s.",
                  nv.cluster_id, cur->cluster_id);
    goto out;
  }
  rc = check_cluster_active(&nv, err);
  if (rc) goto out;
  rc = check_cluster_config(&nv, err);
  if (rc) goto out;
  snprintf(p->cluster_id, sizeof p->cluster_id, "%s", nv.cluster_id);
  snprintf(p->cluster_lineage, sizeof p->cluster_lineage, "%s", nv.lineage);
out:
  hsm_cluster_view_clear(&nv);
  hsm_cluster_view_clear(&ov);
  return rc;
}

/* ConnectCustomKeyStore: a missing cluster is reported by the worker
 * (CLUSTER_NOT_FOUND), as AWS does; a present one must be active, and able
 * to survive a zone. */
static kerr_code check_connect(kms_domain *d, const store_cks *c, kerr *err) {
  hsm_cluster_view v;
  kerr_code rc;
  memset(&v, 0, sizeof v);
  rc = hsm_cluster_describe(d->hsm, c->account_id, c->region, c->cluster_id, &v, err);
  if (rc == KERR_OK) {
    rc = check_cluster_active(&v, err);
    if (!rc && v.active_hsms >= 2 && v.active_zones < 2) rc = check_cluster_config(&v, err);
  } else if (rc == KERR_HSM_CLUSTER_NOT_FOUND) {
    rc = KERR_OK;
    kerr_clear(err);
  }
  hsm_cluster_view_clear(&v);
  return rc;
}

static kerr_code chsm_check_config(kms_domain *d, const kms_call *call, store_tx *tx,
                                   kms_backend_check when, const store_cks *current,
                                   store_cks *proposed, kerr *err) {
  switch (when) {
  case KMS_BACKEND_CHECK_CREATE:
    return check_create(d, call, tx, proposed, err);
  case KMS_BACKEND_CHECK_INSERT:
    return check_insert(d, call, tx, proposed, err);
  case KMS_BACKEND_CHECK_UPDATE:
  case KMS_BACKEND_CHECK_UPDATE_LOCKED:
    /* Both: the cluster is kmsd's own (no network to wait on), so it is
     * judged again under the write lock, on the row as read there. */
    return check_update(d, call, current, proposed, err);
  case KMS_BACKEND_CHECK_CONNECT:
    return check_connect(d, proposed, err);
  }
  return kerr_set(err, KERR_INTERNAL, "Unknown configuration check.");
}

/* ------------------------------------------------------------------ keys */

static kerr_code chsm_create_key(kms_backend_conn *c, const kms_backend_ctx *ctx,
                                 const store_cks *row, const char *key_id,
                                 const char *backing_key_id, kerr *err) {
  hsm_cluster_view v;
  (void)backing_key_id; /* the HSMs make a new key labelled key_id */
  kerr_code rc;
  memset(&v, 0, sizeof v);
  rc = hsm_cluster_describe(ctx->d->hsm, row->account_id, row->region, row->cluster_id, &v, err);
  if (rc == KERR_HSM_CLUSTER_NOT_FOUND) {
    rc = kerr_set(err, KERR_HSM_CLUSTER_INVALID_CONFIG,
                  "The CloudHSM cluster %s of custom key store %s no longer exists.",
                  row->cluster_id, row->cks_id);
    goto out;
  }
  if (rc) goto out;
  if (v.active_hsms < 2 || v.active_zones < 2) {
    rc = kerr_set(err, KERR_HSM_CLUSTER_INVALID_CONFIG,
                  "The CloudHSM cluster %s must have at least two active HSMs in different "
                  "Availability Zones (it has %d active HSM(s) in %d zone(s)).",
                  row->cluster_id, v.active_hsms, v.active_zones);
    goto out;
  }
  rc = hsm_conn_create_key(conn_of(c), key_id, err);
  /* CreateKey's model has no CloudHSM error names: an HSM that failed is
   * KMSInternalException (retryable) there. */
  if (rc == KERR_HSM_INTERNAL_FAILURE || rc == KERR_KEY_UNAVAILABLE) {
    rc = KERR_INTERNAL;
    if (err) err->code = rc;
  }
out:
  hsm_cluster_view_clear(&v);
  return rc;
}

static kerr_code chsm_delete_key(kms_backend_conn *c, const kms_backend_ctx *ctx,
                                 const char *backing_key_id, kerr *err) {
  return hsm_conn_delete_key(conn_of(c), backing_key_id, err);
}

static kerr_code map_hsm_error(kerr_code rc, const char *key_arn, kerr *err) {
  if (rc == KERR_NOT_FOUND)
    return kerr_set(err, KERR_KEY_UNAVAILABLE,
                    "The key material of %s is not in the CloudHSM cluster.", key_arn);
  return rc;
}

/* AES-GCM inside the HSMs, under the key labelled with the KMS key id. */
static kerr_code chsm_encrypt(kms_backend_conn *c, const kms_backend_ctx *ctx,
                              const kms_backend_key *k, const uint8_t *pt, size_t pt_len,
                              const uint8_t *aad, size_t aad_len, uint8_t **body,
                              size_t *body_len, kerr *err) {
  uint8_t *out = NULL;
  size_t len = 0;
  kerr_code rc = kmsi_gcm_body_new(pt_len, &out, &len, err);
  if (rc) return rc;
  rc = hsm_conn_encrypt(conn_of(c), k->backing_key_id, pt, pt_len, aad, aad_len, out,
                        out + AESGCM_IV_LEN + AESGCM_TAG_LEN, out + AESGCM_IV_LEN, err);
  if (rc) {
    free(out);
    return map_hsm_error(rc, ctx->key_arn, err);
  }
  *body = out;
  *body_len = len;
  return KERR_OK;
}

static kerr_code chsm_decrypt(kms_backend_conn *c, const kms_backend_ctx *ctx,
                              const kms_backend_key *k, const uint8_t *body, size_t body_len,
                              const uint8_t *aad, size_t aad_len, kbytes *pt, kerr *err) {
  kbytes out = {0};
  kerr_code rc;

  pt->data = NULL;
  pt->len = 0;
  /* Keys in a key store have one material for life. */
  if (strcmp(k->material_id, k->current_material_id) != 0 || body_len < AESGCM_IV_LEN + AESGCM_TAG_LEN)
    return kerr_set(err, KERR_INVALID_CIPHERTEXT,
                    "The ciphertext refers to key material that does not exist for this key.");
  out.len = body_len - AESGCM_IV_LEN - AESGCM_TAG_LEN;
  out.data = secure_alloc(out.len ? out.len : 1);
  if (!out.data) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  rc = hsm_conn_decrypt(conn_of(c), k->backing_key_id, body + AESGCM_IV_LEN + AESGCM_TAG_LEN,
                        out.len, aad, aad_len, body, body + AESGCM_IV_LEN, out.data, err);
  if (rc && rc != KERR_INVALID_CIPHERTEXT) rc = map_hsm_error(rc, ctx->key_arn, err);
  if (rc) {
    kbytes_wipe_free(&out);
    return rc;
  }
  *pt = out;
  return KERR_OK;
}

static kerr_code chsm_random(kms_backend_conn *c, const kms_backend_ctx *ctx, uint8_t *out,
                             size_t n, kerr *err) {
  return hsm_conn_random(conn_of(c), out, n, err);
}

const kms_backend kms_backend_cloudhsm = {
    .type = TYPE_CLOUDHSM,
    .waits_on_network = false, /* PKCS#11 tokens of kmsd's own */
    .check_row = chsm_check_row,
    .check_config = chsm_check_config,
    .connect = chsm_connect,
    .disconnect = chsm_disconnect,
    .attach = chsm_attach,
    .health = chsm_health,
    .create_key = chsm_create_key,
    .delete_key = chsm_delete_key,
    .encrypt = chsm_encrypt,
    .decrypt = chsm_decrypt,
    .random = chsm_random,
};
