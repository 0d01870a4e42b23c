/* kms_cks_keys.c - the custom-key-store halves of the KMS key operations:
 * CreateKey in a key store (the backing key made or adopted there), key
 * deletion (its material removed there), GenerateRandom from a CloudHSM
 * cluster, and the lookup of the backend and live connection that the
 * cryptographic operations of a key use.  Each goes through this node's
 * connection to the store (kms_cks_conn.c) and the store's backend method
 * table (kms_backend.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/secmem.h"
#include "kms/kms_backend.h"
#include "kms/kms_internal.h"

static const char *const STATE_CONNECTED = "CONNECTED";

const kms_backend *kmsi_backend_for_type(const char *type) {
  static const kms_backend *const custom[] = {&kms_backend_cloudhsm, &kms_backend_xks};
  for (size_t i = 0; type && i < sizeof custom / sizeof *custom; i++)
    if (strcmp(custom[i]->type, type) == 0) return custom[i];
  return NULL;
}

kerr_code kmsi_backend_acquire(kms_domain *d, const kmsi_key *k, const kms_backend **b,
                               kms_backend_conn **conn, kerr *err) {
  const char *cks_id = k->row.custom_key_store_id;
  if (!cks_id) {
    *b = &kms_backend_local;
    *conn = NULL;
    return KERR_OK;
  }
  if (!kmsi_cks_conn_acquire(d, cks_id, b, conn))
    return kerr_set(err, KERR_INVALID_STATE,
                    "%s is unavailable: its custom key store %s is not connected.", k->arn, cks_id);
  return KERR_OK;
}

void kmsi_backend_release(kms_domain *d, const kmsi_key *k, kms_backend_conn *conn) {
  if (conn && k->row.custom_key_store_id)
    kmsi_cks_conn_release(d, k->row.custom_key_store_id, conn);
}

/* The caller's key store `cks_id` (its account and Region), read in its own
 * short transaction and checked for damage.  Another account's store, or
 * none, is KERR_CKS_NOT_FOUND.  On failure `c` is left empty. */
static kerr_code load_own_store(kms_domain *d, const kms_call *call, const char *cks_id,
                                store_cks *c, kerr *err) {
  store_tx *tx = NULL;
  kerr_code rc = kmsi_begin(d, false, &tx, err);
  if (rc) return rc;
  rc = d->st->ops->cks_get(tx, cks_id, c, err);
  d->st->ops->rollback(tx);
  if (rc == KERR_NOT_FOUND ||
      (rc == KERR_OK && (strcmp(c->account_id, call->caller->account_id) != 0 ||
                         strcmp(c->region, call->region) != 0)))
    rc = kerr_set(err, KERR_CKS_NOT_FOUND, "Custom key store %.64s does not exist.", cks_id);
  if (!rc) rc = kmsi_cks_check_row(c, err);
  if (rc) store_cks_clear(c);
  return rc;
}

kerr_code kmsi_cks_create_key(kms_domain *d, const kms_call *call, const char *cks_id,
                              const char *key_id, const char *origin, const char *xks_key_id,
                              char *type_out, char *cluster_id_out, kerr *err) {
  store_cks c;
  const kms_backend *b = NULL, *live_b = NULL;
  kms_backend_conn *conn = NULL;
  kms_backend_ctx ctx;
  bool xks;
  kerr_code rc;

  memset(&c, 0, sizeof c);
  cluster_id_out[0] = '\0';
  type_out[0] = '\0';
  rc = load_own_store(d, call, cks_id, &c, err);
  if (rc) goto out;
  b = kmsi_backend_for_type(c.type);
  if (!b || !b->create_key) {
    rc = kerr_set(err, KERR_UNSUPPORTED_OPERATION,
                  "kmsd cannot create keys in key stores of type %s.", c.type);
    goto out;
  }
  /* The store's type decides the origin (given or implied) and whether an
   * XksKeyId belongs. */
  xks = strcmp(c.type, "EXTERNAL_KEY_STORE") == 0;
  if (origin && strcmp(origin, xks ? "EXTERNAL_KEY_STORE" : "AWS_CLOUDHSM") != 0) {
    rc = kerr_set(err, KERR_UNSUPPORTED_OPERATION,
                  "Origin %.64s is not valid for a key in %s key store %s; use %s.", origin,
                  xks ? "external" : "CloudHSM", cks_id,
                  xks ? "EXTERNAL_KEY_STORE" : "AWS_CLOUDHSM");
    goto out;
  }
  if (xks && !xks_key_id) {
    rc = kerr_set(err, KERR_VALIDATION,
                  "XksKeyId is required for a KMS key in an external key store.");
    goto out;
  }
  if (!xks && xks_key_id) {
    rc = kerr_set(err, KERR_VALIDATION,
                  "XksKeyId is only valid for keys in an external key store.");
    goto out;
  }
  if (strcmp(c.connection_state, STATE_CONNECTED) != 0) {
    rc = kerr_set(err, KERR_CKS_INVALID_STATE,
                  "Custom key store %s is %s; it must be CONNECTED to create keys in it.", cks_id,
                  c.connection_state);
    goto out;
  }
  rc = kmsi_may_wait(call, b, cks_id, err); /* before CreateKey writes anything */
  if (rc) goto out;
  if (!kmsi_cks_conn_acquire(d, cks_id, &live_b, &conn)) {
    rc = kerr_set(err, KERR_CKS_INVALID_STATE, "Custom key store %s is not connected.", cks_id);
    goto out;
  }
  memset(&ctx, 0, sizeof ctx);
  ctx.d = d;
  ctx.request_id = call->request_id;
  ctx.principal_arn = call->caller->arn;
  ctx.operation = "CreateKey";
  rc = live_b->create_key(conn, &ctx, &c, key_id, xks_key_id, err);
  kmsi_cks_conn_release(d, cks_id, conn);
  if (rc) goto out;
  snprintf(cluster_id_out, KMS_CLUSTER_ID_MAX, "%s", c.cluster_id);
  snprintf(type_out, STORE_ENUM_MAX, "%s", c.type);
out:
  store_cks_clear(&c);
  return rc;
}

void kmsi_cks_delete_key(kms_domain *d, const char *cks_id, const char *key_id) {
  const kms_backend *b = NULL;
  kms_backend_conn *conn = NULL;
  kms_backend_ctx ctx;
  kerr e;
  kerr_clear(&e);
  if (!kmsi_cks_conn_acquire(d, cks_id, &b, &conn)) {
    log_msg(LOG_WARN, NULL,
            "key %s deleted while custom key store %s is not connected: its key material stays "
            "in the key store (delete it there by its label)",
            key_id, cks_id);
    return;
  }
  memset(&ctx, 0, sizeof ctx);
  ctx.d = d;
  ctx.operation = "DeleteKey";
  if (!b->delete_key)
    ;
  else if (b->delete_key(conn, &ctx, key_id, &e) != KERR_OK)
    log_msg(LOG_WARN, NULL, "key %s: removing its material from the key store failed: %s", key_id,
            e.msg);
  else
    log_msg(LOG_INFO, NULL, "key %s: material removed from custom key store %s", key_id, cks_id);
  kmsi_cks_conn_release(d, cks_id, conn);
}

kerr_code kmsi_cks_random(kms_domain *d, const kms_call *call, const char *cks_id, size_t n,
                          kbytes *out, kerr *err) {
  store_cks c;
  const kms_backend *b = NULL, *live_b = NULL;
  kms_backend_conn *conn = NULL;
  kms_backend_ctx ctx;
  kerr_code rc;

  memset(&c, 0, sizeof c);
  out->data = NULL;
  out->len = 0;
  rc = load_own_store(d, call, cks_id, &c, err);
  if (rc) goto out;
  b = kmsi_backend_for_type(c.type);
  if (!b || !b->random) {
    rc = kerr_set(err, KERR_UNSUPPORTED_OPERATION,
                  "GenerateRandom does not accept the ID of an external key store.");
    goto out;
  }
  rc = kmsi_may_wait(call, b, cks_id, err);
  if (rc) goto out;
  if (!kmsi_cks_conn_acquire(d, cks_id, &live_b, &conn) ||
      strcmp(c.connection_state, STATE_CONNECTED) != 0) {
    rc = kerr_set(err, KERR_CKS_INVALID_STATE,
                  "Custom key store %s is %s; GenerateRandom needs it CONNECTED.", cks_id,
                  c.connection_state);
    goto out;
  }
  out->data = secure_alloc(n);
  if (!out->data) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  out->len = n;
  memset(&ctx, 0, sizeof ctx);
  ctx.d = d;
  ctx.request_id = call->request_id;
  ctx.principal_arn = call->caller->arn;
  ctx.operation = "GenerateRandom";
  rc = live_b->random(conn, &ctx, out->data, n, err);
  /* GenerateRandom's model lists DependencyTimeoutException and
   * KMSInternalException for a backing store that fails, nothing else. */
  if (rc && rc != KERR_DEPENDENCY_TIMEOUT) {
    rc = KERR_INTERNAL;
    if (err) err->code = rc;
  }
  if (rc) kbytes_wipe_free(out);
out:
  if (conn) kmsi_cks_conn_release(d, cks_id, conn);
  store_cks_clear(&c);
  return rc;
}
