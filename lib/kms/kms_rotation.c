/* kms_rotation.c - key material rotation: Enable/DisableKeyRotation,
 * GetKeyRotationStatus, RotateKeyOnDemand and ListKeyRotations.
 *
 * A rotation adds a new key material generation and makes it current; older
 * generations stay stored so their ciphertexts keep decrypting (the blob
 * names the material it was sealed with).  Automatic rotation runs when
 * NextRotationDate passes on the kclock (kms_domain.c's sweeper, or lazily
 * when the key is next used). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/kclock.h"
#include "kms/kms_internal.h"

#define DEFAULT_ROTATION_DAYS 365
#define MIN_ROTATION_DAYS 90
#define MAX_ROTATION_DAYS 2560

/* GetKeyRotationStatus works across accounts, by key id or key ARN. */
static const kmsi_resolve_opts status_opts = {.cross_account = true, .allow_alias = false,
                                              .invalid_arn = true};

static kerr_code check_rotatable(const kmsi_key *k, kerr *err) {
  kerr_code rc = kmsi_check_state(k, KMSI_NEED_USABLE, err);
  if (rc) return rc;
  if (strcmp(k->row.origin, "AWS_KMS") != 0)
    return kerr_set(err, KERR_UNSUPPORTED_OPERATION,
                    "%s has origin %s; only keys with AWS_KMS key material can be rotated.",
                    k->arn, k->row.origin);
  return KERR_OK;
}

static kerr_code enable_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err) {
  int days = *(int *)arg;
  kerr_code rc = check_rotatable(k, err);
  if (rc) return rc;
  if (days == 0)
    days = k->row.rotation_enabled && k->row.rotation_period_days ? k->row.rotation_period_days
                                                                  : DEFAULT_ROTATION_DAYS;
  if (!k->row.rotation_enabled || k->row.rotation_period_days != days)
    k->row.next_rotation_ms = kclock_now_ms() + (int64_t)days * KMS_DAY_MS;
  k->row.rotation_enabled = true;
  k->row.rotation_period_days = days;
  return d->st->ops->key_update(tx, &k->row, err);
}

kerr_code kms_op_enable_key_rotation(kms_domain *d, const kms_call *call, const char *key_id,
                                  int rotation_period_days, kerr *err) {
  if (rotation_period_days != 0 &&
      (rotation_period_days < MIN_ROTATION_DAYS || rotation_period_days > MAX_ROTATION_DAYS))
    return kerr_set(err, KERR_VALIDATION,
                    "1 validation error detected: Value '%d' at 'rotationPeriodInDays' failed to "
                    "satisfy constraint: Member must have value between %d and %d",
                    rotation_period_days, MIN_ROTATION_DAYS, MAX_ROTATION_DAYS);
  return kmsi_with_key(d, call, key_id, &KMSI_MANAGE, true, "kms:EnableKeyRotation", enable_fn,
                       &rotation_period_days, err);
}

static kerr_code disable_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err) {
  kerr_code rc = check_rotatable(k, err);
  if (rc) return rc;
  k->row.rotation_enabled = false;
  k->row.rotation_period_days = 0;
  k->row.next_rotation_ms = 0;
  return d->st->ops->key_update(tx, &k->row, err);
}

kerr_code kms_op_disable_key_rotation(kms_domain *d, const kms_call *call, const char *key_id,
                                   kerr *err) {
  return kmsi_with_key(d, call, key_id, &KMSI_MANAGE, true, "kms:DisableKeyRotation", disable_fn,
                       NULL, err);
}

static kerr_code status_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err) {
  kms_rotation_status *o = arg;
  snprintf(o->key_id, sizeof o->key_id, "%s", k->arn);
  o->enabled = k->row.rotation_enabled;
  if (o->enabled) {
    o->rotation_period_days = k->row.rotation_period_days;
    o->has_next_rotation_date = k->row.next_rotation_ms != 0;
    o->next_rotation_date_ms = k->row.next_rotation_ms;
  }
  /* On-demand rotations complete inside the call, so none is ever in progress. */
  o->has_on_demand_rotation_start_date = false;
  return KERR_OK;
}

kerr_code kms_op_get_key_rotation_status(kms_domain *d, const kms_call *call, const char *key_id,
                                      kms_rotation_status *out, kerr *err) {
  memset(out, 0, sizeof *out);
  kerr_code rc = kmsi_with_key(d, call, key_id, &status_opts, false, "kms:GetKeyRotationStatus",
                               status_fn, out, err);
  if (rc) memset(out, 0, sizeof *out);
  return rc;
}

static kerr_code rotate_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err) {
  kerr_code rc = check_rotatable(k, err);
  if (rc) return rc;
  if (k->row.on_demand_rotations >= KMS_MAX_ON_DEMAND_ROTATIONS)
    return kerr_set(err, KERR_LIMIT_EXCEEDED,
                    "%s has reached the limit of %d on-demand rotations.", k->arn,
                    KMS_MAX_ON_DEMAND_ROTATIONS);
  rc = kmsi_rotate(d, tx, &k->row, "ON_DEMAND", kclock_now_ms(), err);
  if (rc) return rc;
  snprintf(arg, UUID_STR_LEN, "%s", k->row.key_id);
  return KERR_OK;
}

kerr_code kms_op_rotate_key_on_demand(kms_domain *d, const kms_call *call, const char *key_id,
                                   char key_id_out[UUID_STR_LEN], kerr *err) {
  key_id_out[0] = '\0';
  return kmsi_with_key(d, call, key_id, &KMSI_MANAGE, true, "kms:RotateKeyOnDemand", rotate_fn,
                       key_id_out, err);
}

typedef struct list_rot_arg {
  bool all;
  size_t limit;
  size_t start;
  kms_list_rotations_output *out;
} list_rot_arg;

static kerr_code list_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err) {
  list_rot_arg *a = arg;
  store_material *mats = NULL;
  size_t nmats = 0, nsel = 0, n;
  kerr_code rc = d->st->ops->material_list(tx, k->row.key_id, &mats, &nmats, err);
  if (rc) return rc;
  a->out->rotations = calloc(nmats ? nmats : 1, sizeof *a->out->rotations);
  if (!a->out->rotations) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  /* Select, then page over the selection by position. */
  for (size_t i = 0; i < nmats; i++) {
    const store_material *m = &mats[i];
    if (!a->all && !m->rotation_type[0]) continue;
    if (nsel++ < a->start) continue;
    kms_rotation_entry *e = &a->out->rotations[a->out->nrotations];
    if (a->out->nrotations == a->limit) {
      a->out->truncated = true;
      break;
    }
    snprintf(e->key_id, sizeof e->key_id, "%s", k->row.key_id);
    snprintf(e->key_material_id, sizeof e->key_material_id, "%s", m->material_id);
    e->key_material_state =
        strcmp(m->material_id, k->row.current_material_id) == 0 ? "CURRENT" : "NON_CURRENT";
    e->expiration_model = "KEY_MATERIAL_DOES_NOT_EXPIRE";
    if (m->rotation_type[0]) {
      e->rotation_type = strcmp(m->rotation_type, "AUTOMATIC") == 0 ? "AUTOMATIC" : "ON_DEMAND";
      e->has_rotation_date = true;
      e->rotation_date_ms = m->created_ms;
    }
    a->out->nrotations++;
  }
  if (a->out->truncated) {
    char pos[32];
    n = a->start + a->out->nrotations;
    snprintf(pos, sizeof pos, "%zu", n);
    a->out->next_marker = kmsi_marker_make('R', pos);
    if (!a->out->next_marker) rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
out:
  store_material_list_free(mats, nmats);
  return rc;
}

void kms_list_rotations_output_clear(kms_list_rotations_output *o) {
  if (!o) return;
  free(o->rotations);
  free(o->next_marker);
  memset(o, 0, sizeof *o);
}

kerr_code kms_op_list_key_rotations(kms_domain *d, const kms_call *call, const char *key_id,
                                 const char *include_key_material, const kms_list_input *in,
                                 kms_list_rotations_output *out, kerr *err) {
  list_rot_arg a = {false, 0, 0, out};
  char pos[32];
  memset(out, 0, sizeof *out);
  if (include_key_material) {
    if (strcmp(include_key_material, "ALL_KEY_MATERIAL") == 0)
      a.all = true;
    else if (strcmp(include_key_material, "ROTATIONS_ONLY") != 0)
      return kerr_set(err, KERR_VALIDATION,
                      "1 validation error detected: Value '%.64s' at 'includeKeyMaterial' failed "
                      "to satisfy constraint: Member must satisfy enum value set: "
                      "[ALL_KEY_MATERIAL, ROTATIONS_ONLY]",
                      include_key_material);
  }
  kerr_code rc = kmsi_limit(in ? in->limit : 0, KMS_DEFAULT_LIST_LIMIT, KMS_MAX_LIST_LIMIT,
                            &a.limit, err);
  if (rc) return rc;
  if (in && in->marker) {
    char *end = NULL;
    rc = kmsi_marker_parse('R', in->marker, pos, sizeof pos, err);
    if (rc) return rc;
    unsigned long long v = strtoull(pos, &end, 10);
    if (!*pos || *end || v > 1000000)
      return kerr_set(err, KERR_INVALID_MARKER, "Invalid marker");
    a.start = (size_t)v;
  }
  rc = kmsi_with_key(d, call, key_id, &KMSI_MANAGE, false, "kms:ListKeyRotations", list_fn, &a,
                     err);
  if (rc) kms_list_rotations_output_clear(out);
  return rc;
}
