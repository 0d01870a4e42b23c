/* kms_domain.c - the domain's lifecycle and shared machinery: open/close,
 * the deletion/rotation sweeper, key resolution, state checks,
 * authorization with a parsed-policy cache, and key material access with a
 * bounded cache of unwrapped material in wiped memory. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "aws/arn.h"
#include "aws/authz.h"
#include "core/codec.h"
#include "core/fnv.h"
#include "core/kclock.h"
#include "core/log.h"
#include "core/secmem.h"
#include "crypto/blob.h"
#include "kms/kms_internal.h"
#include "kms/kms_key_cache.h"
#include "pkcs11/p11.h"
#include "store/store_pg.h"

const kmsi_resolve_opts KMSI_CRYPTO = {.cross_account = true, .allow_alias = true, .invalid_arn = false};
const kmsi_resolve_opts KMSI_DESCRIBE = {.cross_account = true, .allow_alias = true, .invalid_arn = true};
const kmsi_resolve_opts KMSI_MANAGE = {.cross_account = false, .allow_alias = false, .invalid_arn = true};
const kmsi_resolve_opts KMSI_MANAGE_ANY = {.cross_account = false, .allow_alias = true, .invalid_arn = true};
const kmsi_resolve_opts KMSI_BLOB = {.cross_account = true, .allow_alias = false, .invalid_arn = false,
                                     .any_account_id = true};

#define DEFAULT_SWEEP_MS 1000
#define SWEEP_BATCH 100

static kerr_code key_not_found(const char *region, const char *account, const char *key_id,
                               kerr *err);

/* ------------------------------------------------------------ small utils */

static uint64_t fnv1a(const char *s) { return fnv1a_str(FNV1A_START, s); }

kerr_code kmsi_strdup(const char *s, char **out, kerr *err) {
  *out = strdup(s ? s : "");
  if (!*out) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  return KERR_OK;
}

void kmsi_key_arn(const store_key *k, char out[KMS_ARN_MAX]) {
  if (arn_kms_key(k->region, k->account_id, k->key_id, out, KMS_ARN_MAX, NULL) != KERR_OK)
    snprintf(out, KMS_ARN_MAX, "arn:aws:kms:%s:%s:key/%s", k->region, k->account_id, k->key_id);
}

void kmsi_key_clear(kmsi_key *k) {
  if (!k) return;
  store_key_clear(&k->row);
  memset(k, 0, sizeof *k);
}

kerr_code kmsi_limit(int limit, int def, int max, size_t *out, kerr *err) {
  if (limit == 0) {
    *out = (size_t)def;
    return KERR_OK;
  }
  if (limit < 1 || limit > max)
    return kerr_set(err, KERR_VALIDATION,
                    "1 validation error detected: Value '%d' at 'limit' failed to satisfy "
                    "constraint: Member must have value between 1 and %d",
                    limit, max);
  *out = (size_t)limit;
  return KERR_OK;
}

char *kmsi_marker_make(char kind, const char *pos) {
  size_t n = strlen(pos) + 2;
  char *raw = malloc(n + 1), *out = NULL;
  if (!raw) return NULL;
  raw[0] = kind;
  raw[1] = ':';
  memcpy(raw + 2, pos, n - 1);
  out = malloc(b64_encoded_size(n));
  if (out) b64_encode((const uint8_t *)raw, n, out);
  free(raw);
  return out;
}

kerr_code kmsi_marker_parse(char kind, const char *marker, char *pos, size_t cap, kerr *err) {
  size_t len = strlen(marker), n = 0;
  uint8_t *raw = NULL;
  kerr_code rc = KERR_OK;

  if (len == 0 || len > 1024) goto bad;
  raw = malloc(b64_decoded_max(len) + 1);
  if (!raw) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  if (b64_decode(marker, len, raw, &n) || n < 3 || raw[0] != (uint8_t)kind || raw[1] != ':' ||
      n - 2 >= cap)
    goto bad;
  for (size_t i = 2; i < n; i++)
    if (raw[i] < 0x20 || raw[i] == 0x7f) goto bad;
  memcpy(pos, raw + 2, n - 2);
  pos[n - 2] = '\0';
  goto out;
bad:
  rc = kerr_set(err, KERR_INVALID_MARKER, "Invalid marker");
out:
  free(raw);
  return rc;
}

static bool uuid_ok(const char *s) {
  uint8_t b[16];
  if (kblob_uuid_to_bytes(s, b)) return false;
  for (const char *p = s; *p; p++)
    if (*p >= 'A' && *p <= 'F') return false; /* key ids are lowercase */
  return true;
}

kerr_code kmsi_begin(kms_domain *d, bool write, store_tx **tx, kerr *err) {
  return d->st->ops->begin(d->st, write, tx, err);
}

/* -------------------------------------------------------- material cache */

/* A slot holds one key's material: the owning key id is part of the entry
 * and of every lookup, so a material id copied into another key's blob can
 * never be served from here for that other key. */
typedef struct material_slot {
  char key_id[UUID_STR_LEN];
  char material_id[KMS_MATERIAL_ID_LEN];
  uint8_t material[AESGCM_KEY_LEN];
  bool used;
} material_slot;

struct kmsi_material_cache {
  pthread_mutex_t lock;
  size_t nslots;
  material_slot *slots; /* secure_alloc'd: wiped on free */
};

static kerr_code material_cache_new(size_t nslots, kmsi_material_cache **out, kerr *err) {
  kmsi_material_cache *c = calloc(1, sizeof *c);
  *out = NULL;
  if (!c) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  c->nslots = nslots;
  c->slots = secure_alloc(nslots * sizeof *c->slots);
  if (!c->slots) {
    free(c);
    return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
  pthread_mutex_init(&c->lock, NULL);
  *out = c;
  return KERR_OK;
}

static void material_cache_free(kmsi_material_cache *c) {
  if (!c) return;
  secure_free(c->slots, c->nslots * sizeof *c->slots);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

static bool material_cache_get(kmsi_material_cache *c, const char *key_id, const char *id,
                               uint8_t out[AESGCM_KEY_LEN]) {
  material_slot *s = &c->slots[fnv1a(id) % c->nslots];
  bool hit = false;
  pthread_mutex_lock(&c->lock);
  if (s->used && strcmp(s->material_id, id) == 0 && strcmp(s->key_id, key_id) == 0) {
    memcpy(out, s->material, AESGCM_KEY_LEN);
    hit = true;
  }
  pthread_mutex_unlock(&c->lock);
  return hit;
}

static void material_cache_put(kmsi_material_cache *c, const char *key_id, const char *id,
                               const uint8_t material[AESGCM_KEY_LEN]) {
  material_slot *s = &c->slots[fnv1a(id) % c->nslots];
  pthread_mutex_lock(&c->lock);
  snprintf(s->key_id, sizeof s->key_id, "%s", key_id);
  snprintf(s->material_id, sizeof s->material_id, "%s", id);
  memcpy(s->material, material, AESGCM_KEY_LEN);
  s->used = true;
  pthread_mutex_unlock(&c->lock);
}

kerr_code kmsi_material(kms_domain *d, store_tx *tx, const char *key_id,
                        const char *material_id, uint8_t out[AESGCM_KEY_LEN], kerr *err) {
  store_material m;
  kerr_code rc;
  kerr ignored;

  /* A hit needs both the material id and its owning key to match, so the
   * ownership check holds on every path: a material id taken from another
   * key's blob misses here and is refused below exactly as when it was never
   * cached (no answer may depend on what other callers used recently). */
  if (material_cache_get(d->materials, key_id, material_id, out)) return KERR_OK;
  if (tx) {
    rc = d->st->ops->material_get(tx, material_id, &m, &ignored);
  } else {
    store_tx *own = NULL;
    rc = kmsi_begin(d, false, &own, err);
    if (rc) return rc;
    rc = d->st->ops->material_get(own, material_id, &m, &ignored);
    d->st->ops->rollback(own);
  }
  if (rc == KERR_NOT_FOUND || (rc == KERR_OK && strcmp(m.key_id, key_id) != 0)) {
    store_material_clear(&m);
    return kerr_set(err, KERR_INVALID_CIPHERTEXT,
                    "The ciphertext refers to key material that does not exist for this key.");
  }
  if (rc) {
    if (err) *err = ignored;
    return rc;
  }
  rc = rootkey_unwrap(d->rk, key_id, m.material_id, m.wrapped, m.wrapped_len, out, err);
  store_material_clear(&m);
  if (rc) return rc;
  material_cache_put(d->materials, key_id, material_id, out);
  return KERR_OK;
}

kerr_code kmsi_new_material(kms_domain *d, store_tx *tx, const char *key_id, int64_t seq,
                            const char *rotation_type, int64_t now_ms,
                            char material_id[KMS_MATERIAL_ID_LEN], kerr *err) {
  kerr_code rc = KERR_OK;
  uint8_t *material = secure_alloc(AESGCM_KEY_LEN);
  uint8_t wrapped[ROOTKEY_WRAPPED_LEN];
  store_material m;

  memset(&m, 0, sizeof m);
  if (!material) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  if (rand_bytes(material, AESGCM_KEY_LEN) || rand_hex(m.material_id, 64)) {
    rc = kerr_set(err, KERR_INTERNAL, "The random number generator failed.");
    goto out;
  }
  rc = rootkey_wrap(d->rk, key_id, m.material_id, material, wrapped, err);
  if (rc) goto out;
  snprintf(m.key_id, sizeof m.key_id, "%s", key_id);
  m.seq = seq;
  m.wrapped = wrapped;
  m.wrapped_len = sizeof wrapped;
  m.created_ms = now_ms;
  snprintf(m.rotation_type, sizeof m.rotation_type, "%s", rotation_type ? rotation_type : "");
  rc = d->st->ops->material_insert(tx, &m, err);
  if (rc) goto out;
  /* Not cached yet: the transaction may still roll back. */
  memcpy(material_id, m.material_id, KMS_MATERIAL_ID_LEN);
out:
  secure_free(material, AESGCM_KEY_LEN);
  return rc;
}

kerr_code kmsi_rotate(kms_domain *d, store_tx *tx, store_key *k, const char *rotation_type,
                      int64_t now_ms, kerr *err) {
  store_material *list = NULL;
  size_t n = 0;
  char material_id[KMS_MATERIAL_ID_LEN];
  kerr_code rc = d->st->ops->material_list(tx, k->key_id, &list, &n, err);
  if (rc) return rc;
  int64_t seq = n ? list[n - 1].seq + 1 : 0;
  store_material_list_free(list, n);
  rc = kmsi_new_material(d, tx, k->key_id, seq, rotation_type, now_ms, material_id, err);
  if (rc) return rc;
  snprintf(k->current_material_id, sizeof k->current_material_id, "%s", material_id);
  if (strcmp(rotation_type, "ON_DEMAND") == 0) k->on_demand_rotations++;
  return d->st->ops->key_update(tx, k, err);
}

/* ---------------------------------------------------------- policy cache */

struct kmsi_policy_ref {
  int refs;
  iam_policy *policy;
};

typedef struct policy_slot {
  char key_id[UUID_STR_LEN];
  int64_t version;
  kmsi_policy_ref *ref;
} policy_slot;

struct kmsi_policy_cache {
  pthread_mutex_t lock;
  size_t nslots;
  policy_slot *slots;
};

static void policy_ref_drop_locked(kmsi_policy_ref *r) {
  if (r && --r->refs == 0) {
    iam_policy_free(r->policy);
    free(r);
  }
}

static void policy_release(kms_domain *d, kmsi_policy_ref *r) {
  if (!r) return;
  pthread_mutex_lock(&d->policies->lock);
  policy_ref_drop_locked(r);
  pthread_mutex_unlock(&d->policies->lock);
}

void kmsi_policy_forget(kms_domain *d, const char *key_id) {
  policy_slot *s = &d->policies->slots[fnv1a(key_id) % d->policies->nslots];
  pthread_mutex_lock(&d->policies->lock);
  if (s->ref && strcmp(s->key_id, key_id) == 0) {
    policy_ref_drop_locked(s->ref);
    memset(s, 0, sizeof *s);
  }
  pthread_mutex_unlock(&d->policies->lock);
}

/* The parsed policy of key `k`, shared and reference-counted so a slot can
 * be replaced while another thread still evaluates the old policy.  The
 * row's policy_version tells whether a cached parse is current. */
static kerr_code policy_get(kms_domain *d, store_tx *tx, const store_key *k,
                            kmsi_policy_ref **out, kerr *err) {
  policy_slot *s = &d->policies->slots[fnv1a(k->key_id) % d->policies->nslots];
  kmsi_policy_ref *r = NULL;
  char *text = NULL;
  int64_t version = 0;
  bool uncommitted = false;
  kerr_code rc;

  *out = NULL;
  pthread_mutex_lock(&d->policies->lock);
  if (s->ref && s->version == k->policy_version && strcmp(s->key_id, k->key_id) == 0) {
    r = s->ref;
    r->refs++;
  }
  pthread_mutex_unlock(&d->policies->lock);
  if (r) {
    *out = r;
    return KERR_OK;
  }
  if (tx) {
    rc = d->st->ops->key_get_policy(tx, k->key_id, &text, &version, err);
    /* What a write transaction reads may belong to a batch that is lost
     * (store.h, reads_uncommitted), and its policy_version may then come
     * back with another policy: only committed policies are cached. */
    uncommitted = d->st->ops->reads_uncommitted && d->st->ops->reads_uncommitted(tx);
  } else {
    store_tx *own = NULL;
    rc = kmsi_begin(d, false, &own, err);
    if (rc) return rc;
    rc = d->st->ops->key_get_policy(own, k->key_id, &text, &version, err);
    d->st->ops->rollback(own);
  }
  if (rc) return rc;
  r = calloc(1, sizeof *r);
  if (!r) {
    free(text);
    return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
  rc = iam_policy_parse(text, strlen(text), IAM_POLICY_KEY, &r->policy, err);
  free(text);
  if (rc) {
    free(r);
    /* A stored policy was validated when written; failing now is ours. */
    return kerr_set(err, KERR_INTERNAL, "The stored key policy of %s cannot be parsed.", k->key_id);
  }
  if (uncommitted) {
    r->refs = 1;
    *out = r;
    return KERR_OK;
  }
  r->refs = 2; /* the caller's and the cache's */
  pthread_mutex_lock(&d->policies->lock);
  policy_ref_drop_locked(s->ref);
  snprintf(s->key_id, sizeof s->key_id, "%s", k->key_id);
  s->version = version;
  s->ref = r;
  pthread_mutex_unlock(&d->policies->lock);
  *out = r;
  return KERR_OK;
}

static kerr_code policy_cache_new(size_t nslots, kmsi_policy_cache **out, kerr *err) {
  kmsi_policy_cache *c = calloc(1, sizeof *c);
  *out = NULL;
  if (c) c->slots = calloc(nslots, sizeof *c->slots);
  if (!c || !c->slots) {
    free(c);
    return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
  c->nslots = nslots;
  pthread_mutex_init(&c->lock, NULL);
  *out = c;
  return KERR_OK;
}

static void policy_cache_free(kmsi_policy_cache *c) {
  if (!c) return;
  for (size_t i = 0; i < c->nslots; i++) policy_ref_drop_locked(c->slots[i].ref);
  pthread_mutex_destroy(&c->lock);
  free(c->slots);
  free(c);
}

kerr_code kmsi_authorize(kms_domain *d, store_tx *tx, const kms_call *call, const kmsi_key *k,
                         const char *action, kerr *err) {
  kmsi_policy_ref *ref = NULL;
  kerr_code rc = KERR_OK;
  authz_request req;

  memset(&req, 0, sizeof req);
  req.caller = call->caller;
  req.action = action;
  if (k) {
    rc = policy_get(d, tx, &k->row, &ref, err);
    /* Read apart from the key's resolution (tx NULL), the key may have been
     * deleted in between: answered as a resolution a moment later would
     * be, naming the caller's account (not the owner's, before any
     * authorization). */
    if (rc == KERR_NOT_FOUND && !tx)
      return key_not_found(call->region, call->caller->account_id, k->row.key_id, err);
    if (rc) return rc;
    req.resource_arn = k->arn;
    req.resource_account = k->row.account_id;
    req.key_policy = ref->policy;
  } else {
    req.resource_arn = "*";
    req.resource_account = call->caller->account_id;
  }
  rc = authz_check(&req, err);
  policy_release(d, ref);
  return rc;
}

char *kmsi_default_policy(const char *account) {
  static const char fmt[] =
      "{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"key-default-1\",\n  \"Statement\" : [ {\n"
      "    \"Sid\" : \"Enable IAM User Permissions\",\n    \"Effect\" : \"Allow\",\n"
      "    \"Principal\" : {\n      \"AWS\" : \"arn:aws:iam::%s:root\"\n    },\n"
      "    \"Action\" : \"kms:*\",\n    \"Resource\" : \"*\"\n  } ]\n}";
  size_t n = sizeof fmt + strlen(account);
  char *out = malloc(n);
  if (out) snprintf(out, n, fmt, account);
  return out;
}

kerr_code kmsi_check_new_policy(const kms_call *call, const char *key_arn, const char *account,
                                const char *policy, bool bypass, kerr *err) {
  iam_policy *p = NULL;
  kerr ignored;
  kerr_code rc;
  size_t len = strlen(policy);
  authz_request req;

  if (len > KMS_MAX_POLICY)
    return kerr_set(err, KERR_LIMIT_EXCEEDED,
                    "The key policy document exceeds the maximum size of %d bytes.", KMS_MAX_POLICY);
  rc = iam_policy_parse(policy, len, IAM_POLICY_KEY, &p, err);
  if (rc == KERR_MALFORMED_POLICY) return rc;
  if (rc) return kerr_set(err, KERR_MALFORMED_POLICY, "The key policy document is malformed.");
  if (!bypass) {
    memset(&req, 0, sizeof req);
    req.caller = call->caller;
    req.action = "kms:PutKeyPolicy";
    req.resource_arn = key_arn;
    req.resource_account = account;
    req.key_policy = p;
    if (authz_check(&req, &ignored) != KERR_OK)
      rc = kerr_set(err, KERR_MALFORMED_POLICY,
                    "The new key policy will not allow you to update the key policy in the future.");
  }
  iam_policy_free(p);
  return rc;
}

/* ----------------------------------------------------------- resolution */

kerr_code kmsi_check_state(const kmsi_key *k, kmsi_need need, kerr *err) {
  const char *st = k->row.key_state;
  if (need == KMSI_NEED_ANY) return KERR_OK;
  /* custom key stores: a key whose store is not CONNECTED cannot be used */
  if (need == KMSI_NEED_USABLE && k->cks_unavailable && strcmp(st, KMS_STATE_PENDING_DELETION) != 0)
    return kerr_set(err, KERR_INVALID_STATE,
                    "%s is unavailable: its custom key store is not connected.", k->arn);
  if (strcmp(st, KMS_STATE_ENABLED) == 0) return KERR_OK;
  if (strcmp(st, KMS_STATE_PENDING_DELETION) == 0)
    return kerr_set(err, KERR_INVALID_STATE, "%s is pending deletion.", k->arn);
  if (need == KMSI_NEED_NOT_PENDING) return KERR_OK;
  if (strcmp(st, KMS_STATE_DISABLED) == 0)
    return kerr_set(err, KERR_DISABLED, "%s is disabled.", k->arn);
  return kerr_set(err, KERR_INVALID_STATE, "%s is %s.", k->arn, st);
}

static kerr_code key_not_found(const char *region, const char *account, const char *key_id,
                               kerr *err) {
  return kerr_set(err, KERR_NOT_FOUND, "Key 'arn:aws:kms:%s:%s:key/%s' does not exist", region,
                  account, key_id);
}

static kerr_code resolve_once(kms_domain *d, store_tx *tx, const kms_call *call, const char *ref,
                              const kmsi_resolve_opts *opts, kmsi_key *out, kerr *err) {
  const char *account = call->caller->account_id;
  const char *key_id = NULL, *alias = NULL;
  char alias_buf[STORE_ALIAS_MAX];
  arn_parts parts;
  store_alias a;
  kerr_code rc;

  memset(out, 0, sizeof *out);
  if (!ref || !*ref) return kerr_set(err, KERR_NOT_FOUND, "Invalid keyId ''");
  rc = aws_call_check(call, err);
  if (rc) return rc;
  if (strncmp(ref, "arn:", 4) == 0) {
    int is_alias = 0;
    kerr perr;
    if (arn_parse_kms(ref, &parts, &is_alias, &perr) != KERR_OK || !arn_is_account_id(parts.account)) {
      if (opts->invalid_arn) return kerr_set(err, KERR_INVALID_ARN, "Invalid arn %.200s", ref);
      return kerr_set(err, KERR_NOT_FOUND, "Invalid arn %.200s", ref);
    }
    if (strcmp(parts.partition, "aws") != 0 || strcmp(parts.region, call->region) != 0)
      return kerr_set(err, KERR_NOT_FOUND, "%s '%.300s' %s", is_alias ? "Alias" : "Key", ref,
                      is_alias ? "is not found." : "does not exist");
    if (strcmp(parts.account, account) != 0 && !opts->cross_account)
      return kerr_set(err, KERR_NOT_FOUND, "%s '%.300s' %s", is_alias ? "Alias" : "Key", ref,
                      is_alias ? "is not found." : "does not exist");
    account = parts.account;
    if (is_alias) {
      snprintf(alias_buf, sizeof alias_buf, "alias/%s", arn_resource_id(&parts));
      alias = alias_buf;
    } else {
      key_id = arn_resource_id(&parts);
    }
  } else if (strncmp(ref, "alias/", 6) == 0) {
    alias = ref;
  } else {
    key_id = ref;
  }

  if (alias) {
    if (!opts->allow_alias || strlen(alias) >= STORE_ALIAS_MAX)
      return kerr_set(err, KERR_NOT_FOUND, "Alias 'arn:aws:kms:%s:%s:%.256s' is not found.",
                      call->region, account, alias);
    rc = d->st->ops->alias_get(tx, account, call->region, alias, &a, err);
    if (rc == KERR_NOT_FOUND)
      return kerr_set(err, KERR_NOT_FOUND, "Alias 'arn:aws:kms:%s:%s:%s' is not found.",
                      call->region, account, alias);
    if (rc) return rc;
    key_id = a.key_id;
  }
  if (!uuid_ok(key_id)) return kerr_set(err, KERR_NOT_FOUND, "Invalid keyId '%.300s'", key_id);
  rc = d->st->ops->key_get(tx, key_id, &out->row, err);
  if (rc == KERR_NOT_FOUND) return key_not_found(call->region, account, key_id, err);
  if (rc) return rc;
  if ((strcmp(out->row.account_id, account) != 0 && !(opts->any_account_id && key_id == ref)) ||
      strcmp(out->row.region, call->region) != 0) {
    store_key_clear(&out->row);
    return key_not_found(call->region, account, key_id, err);
  }
  kmsi_key_arn(&out->row, out->arn);
  /* custom key stores: the store's connection state and cluster */
  if (out->row.custom_key_store_id) {
    rc = kmsi_cks_key_info(d, tx, out, err);
    if (rc) {
      kmsi_key_clear(out);
      return rc;
    }
  }
  return KERR_OK;
}

static bool maintenance_due(const store_key *k, int64_t now) {
  if (strcmp(k->key_state, KMS_STATE_PENDING_DELETION) == 0 && k->deletion_date_ms &&
      k->deletion_date_ms <= now)
    return true;
  return strcmp(k->key_state, KMS_STATE_ENABLED) == 0 && k->rotation_enabled &&
         k->next_rotation_ms && k->next_rotation_ms <= now;
}

/* Bring one key up to date with the clock: delete it when its deletion date
 * has passed, rotate it when its automatic rotation is due. */
static kerr_code maintain_key(kms_domain *d, const char *key_id, kerr *err) {
  store_tx *tx = NULL;
  store_key k;
  kerr_code rc;
  int64_t now = kclock_now_ms();
  bool deleted = false;

  memset(&k, 0, sizeof k);
  rc = kmsi_begin(d, true, &tx, err);
  if (rc) return rc;
  rc = d->st->ops->key_get(tx, key_id, &k, err);
  if (rc == KERR_NOT_FOUND) {
    rc = KERR_OK;
    goto out;
  }
  if (rc) goto out;
  if (strcmp(k.key_state, KMS_STATE_PENDING_DELETION) == 0 && k.deletion_date_ms &&
      k.deletion_date_ms <= now) {
    rc = d->st->ops->key_delete(tx, key_id, err);
    deleted = true;
  } else if (maintenance_due(&k, now)) {
    /* The schedule restarts from now: a server that was down for two periods
     * rotates once, not twice. */
    k.next_rotation_ms = now + (int64_t)k.rotation_period_days * KMS_DAY_MS;
    rc = kmsi_rotate(d, tx, &k, "AUTOMATIC", now, err);
  }
  if (rc) goto out;
  rc = d->st->ops->commit(tx, err);
  tx = NULL;
  if (rc) goto out;
  if (deleted) {
    kmsi_policy_forget(d, key_id);
    /* custom key stores: the KMS key is gone; now its material in the HSMs
     * (an external key store's external key is the customer's: kept) */
    if (k.custom_key_store_id && !k.xks_key_id)
      kmsi_cks_delete_key(d, k.custom_key_store_id, key_id);
    log_msg(LOG_INFO, NULL, "key %s deleted at the end of its waiting period", key_id);
  } else {
    log_msg(LOG_INFO, NULL, "key %s rotated automatically", key_id);
  }
out:
  if (tx) d->st->ops->rollback(tx);
  store_key_clear(&k);
  return rc;
}

kerr_code kmsi_resolve(kms_domain *d, store_tx **tx, bool write, const kms_call *call,
                       const char *ref, const kmsi_resolve_opts *opts, kmsi_key *out, kerr *err) {
  char key_id[UUID_STR_LEN];
  kerr_code rc = resolve_once(d, *tx, call, ref, opts, out, err);
  if (rc || !maintenance_due(&out->row, kclock_now_ms())) return rc;
  snprintf(key_id, sizeof key_id, "%s", out->row.key_id);
  kmsi_key_clear(out);
  d->st->ops->rollback(*tx);
  *tx = NULL;
  rc = maintain_key(d, key_id, err);
  if (rc) return rc;
  rc = kmsi_begin(d, write, tx, err);
  if (rc) return rc;
  return resolve_once(d, *tx, call, ref, opts, out, err);
}

kerr_code kmsi_resolve_read(kms_domain *d, const kms_call *call, const char *ref,
                            const kmsi_resolve_opts *opts, kmsi_key *out, kerr *err) {
  store_tx *tx = NULL;
  store_stamp stamp;
  unsigned bits = kmsi_key_cache_opts(opts);
  /* The stamp is read before the transaction begins: an entry is tagged with
   * a stamp no newer than what it holds, so it is never served after a
   * commit it did not see. */
  bool cacheable = d->keys && ref && d->st->ops->change_stamp &&
                   d->st->ops->change_stamp(d->st, &stamp);
  kerr_code rc = aws_call_check(call, err);
  if (rc) return rc;
  if (cacheable &&
      kmsi_key_cache_get(d->keys, &stamp, call->caller->account_id, call->region, bits, ref, out)) {
    if (!maintenance_due(&out->row, kclock_now_ms())) return KERR_OK;
    kmsi_key_clear(out); /* kmsi_resolve below brings it up to date */
  }
  rc = kmsi_begin(d, false, &tx, err);
  if (rc) return rc;
  rc = kmsi_resolve(d, &tx, false, call, ref, opts, out, err);
  d->st->ops->rollback(tx);
  if (rc == KERR_OK && cacheable)
    kmsi_key_cache_put(d->keys, &stamp, call->caller->account_id, call->region, bits, ref, out);
  return rc;
}

kerr_code kmsi_check_call(const kms_call *call, kerr *err) { return aws_call_check(call, err); }

bool kmsi_lease_held(kms_domain *d) {
  return !d->st->ops->lease_held || d->st->ops->lease_held(d->st);
}

bool kms_domain_lease_held(kms_domain *d) { return kmsi_lease_held(d); }

hsm_service *kms_domain_cloudhsm(kms_domain *d) { return d->hsm; }

bool kms_domain_key_cache_counts(kms_domain *d, uint64_t *hits, uint64_t *misses) {
  kmsi_key_cache_counts(d->keys, hits, misses);
  return d->keys != NULL;
}

bool kms_domain_hsm_key_cache_counts(kms_domain *d, uint64_t *hits, uint64_t *misses) {
  return hsm_service_key_cache_counts(d->hsm, hits, misses);
}

const char *kms_domain_store_name(kms_domain *d) { return d->st->ops->name; }

bool kms_domain_store_reachable(kms_domain *d) {
  return !d->st->ops->reachable || d->st->ops->reachable(d->st);
}

kerr_code kmsi_with_key(kms_domain *d, const kms_call *call, const char *ref,
                        const kmsi_resolve_opts *opts, bool write, const char *action,
                        kmsi_key_fn fn, void *arg, kerr *err) {
  store_tx *tx = NULL;
  kmsi_key k;
  kerr_code rc;

  memset(&k, 0, sizeof k);
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  rc = kmsi_begin(d, write, &tx, err);
  if (rc) return rc;
  rc = kmsi_resolve(d, &tx, write, call, ref, opts, &k, err);
  if (rc) goto out;
  rc = kmsi_authorize(d, tx, call, &k, action, err);
  if (rc) goto out;
  /* custom key stores: AWS does not rotate keys whose material is in an HSM */
  if (k.row.custom_key_store_id &&
      (strcmp(action, "kms:EnableKeyRotation") == 0 || strcmp(action, "kms:RotateKeyOnDemand") == 0)) {
    rc = kerr_set(err, KERR_UNSUPPORTED_OPERATION,
                  "%s is in a custom key store: its key material cannot be rotated.", k.arn);
    goto out;
  }
  rc = fn(d, tx, &k, arg, err);
  if (rc) goto out;
  if (write) {
    rc = d->st->ops->commit(tx, err);
    tx = NULL;
  }
out:
  if (tx) d->st->ops->rollback(tx);
  kmsi_key_clear(&k);
  return rc;
}

/* ------------------------------------------------------------------ tags */

static size_t utf8_chars(const char *s) {
  size_t n = 0;
  for (; *s; s++)
    if (((uint8_t)*s & 0xc0) != 0x80) n++;
  return n;
}

kerr_code kmsi_validate_tags(const kms_pair *tags, size_t ntags, kerr *err) {
  if (ntags > KMS_MAX_TAGS)
    return kerr_set(err, KERR_LIMIT_EXCEEDED, "A KMS key can have at most %d tags.", KMS_MAX_TAGS);
  for (size_t i = 0; i < ntags; i++) {
    const char *k = tags[i].key, *v = tags[i].value;
    if (!k || !v) return kerr_set(err, KERR_TAG, "Tag keys and values are required.");
    size_t kl = utf8_chars(k), vl = utf8_chars(v);
    if (kl < 1 || kl > 128)
      return kerr_set(err, KERR_TAG, "Tag key must be 1 to 128 characters long.");
    if (vl > 256) return kerr_set(err, KERR_TAG, "Tag value must be at most 256 characters long.");
    if (strncasecmp(k, "aws:", 4) == 0)
      return kerr_set(err, KERR_TAG, "Tags beginning with aws: are reserved.");
    for (const char *p = k; *p; p++)
      if ((uint8_t)*p < 0x20 || *p == 0x7f)
        return kerr_set(err, KERR_TAG, "Tag key contains an invalid character.");
    for (const char *p = v; *p; p++)
      if ((uint8_t)*p < 0x20 || *p == 0x7f)
        return kerr_set(err, KERR_TAG, "Tag value contains an invalid character.");
    for (size_t j = 0; j < i; j++)
      if (strcmp(tags[j].key, k) == 0)
        return kerr_set(err, KERR_TAG, "Duplicate tag key: %.128s", k);
  }
  return KERR_OK;
}

/* ------------------------------------------------------------- lifecycle */

kerr_code kms_domain_sweep(kms_domain *d, kerr *err) {
  kerr_code rc = KERR_OK;
  for (int round = 0; round < 100; round++) {
    store_tx *tx = NULL;
    char(*ids)[UUID_STR_LEN] = NULL;
    size_t n = 0;
    rc = kmsi_begin(d, false, &tx, err);
    if (rc) return rc;
    rc = d->st->ops->keys_due(tx, kclock_now_ms(), SWEEP_BATCH, &ids, &n, err);
    d->st->ops->rollback(tx);
    if (rc) return rc;
    for (size_t i = 0; i < n && !rc; i++) rc = maintain_key(d, ids[i], err);
    free(ids);
    if (rc || n < SWEEP_BATCH) break;
  }
  return rc;
}

static void *sweeper_main(void *arg) {
  kms_domain *d = arg;
  pthread_mutex_lock(&d->stop_lock);
  while (!d->stopping) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += d->sweep_interval_ms / 1000;
    ts.tv_nsec += (long)(d->sweep_interval_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&d->stop_cond, &d->stop_lock, &ts);
    if (d->stopping) break;
    pthread_mutex_unlock(&d->stop_lock);
    kerr e;
    kerr_clear(&e);
    /* A node the database stopped answering asks again each tick, so that
     * /health turns 200 by itself, with no request needed (a load balancer
     * sends none to a node that answers 503). */
    if (!kms_domain_store_reachable(d)) {
      store_tx *tx = NULL;
      if (kmsi_begin(d, false, &tx, &e) == KERR_OK) d->st->ops->rollback(tx);
      kerr_clear(&e);
    }
    /* Every node keeps its own connections in line with the rows; the
     * rest runs on the node holding the lease only. */
    kmsi_cks_reconcile_all(d);
    if (kmsi_lease_held(d)) {
      if (kms_domain_sweep(d, &e) != KERR_OK) log_msg(LOG_WARN, NULL, "key sweeper: %s", e.msg);
      kerr_clear(&e);
      if (kmsi_cks_scan(d, true, &e) != KERR_OK)
        log_msg(LOG_WARN, NULL, "custom key store scan: %s", e.msg);
    }
    pthread_mutex_lock(&d->stop_lock);
  }
  pthread_mutex_unlock(&d->stop_lock);
  return NULL;
}

static kerr_code make_dir(const char *path, kerr *err) {
  struct stat st;
  if (mkdir(path, 0700) == 0) return KERR_OK;
  if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return KERR_OK;
  return kerr_set(err, KERR_INTERNAL, "Cannot create data directory %s: %s", path, strerror(errno));
}

_Static_assert(KMS_DB_BUSY_TIMEOUT_DEFAULT_MS == STORE_SQLITE_BUSY_TIMEOUT_DEFAULT_MS &&
                   KMS_DB_BUSY_TIMEOUT_MIN_MS == STORE_SQLITE_BUSY_TIMEOUT_MIN_MS &&
                   KMS_DB_BUSY_TIMEOUT_MAX_MS == STORE_SQLITE_BUSY_TIMEOUT_MAX_MS,
               "kms_domain.h and store.h disagree on the database busy timeout");

/* The root key and the database belong together: one without the other is a
 * half-restored backup or an unmounted disk, never a first start.  Making a
 * new root key beside an old database would leave every stored key
 * unreadable, and an empty database beside an old root key would silently
 * serve nothing; so refuse, and say which file to restore. */
static kerr_code check_data_files(const char *data_dir, kerr *err) {
  char key_path[4096], db_path[4096];
  struct stat st;
  snprintf(key_path, sizeof key_path, "%s/root.key", data_dir);
  snprintf(db_path, sizeof db_path, "%s/kmsd.db", data_dir);
  bool have_key = lstat(key_path, &st) == 0, have_db = lstat(db_path, &st) == 0;
  if (have_db && !have_key)
    return kerr_set(err, KERR_INTERNAL,
                    "%s exists but %s does not: without the root key no stored key can be read. "
                    "Restore root.key, or move kmsd.db away to start with an empty store.",
                    db_path, key_path);
  if (have_key && !have_db)
    return kerr_set(err, KERR_INTERNAL,
                    "%s exists but %s does not: restore the database, or remove root.key to "
                    "start with an empty store.",
                    key_path, db_path);
  return KERR_OK;
}

_Static_assert(KMS_HSM_TIMEOUT_DEFAULT_MS == P11_POOL_WAIT_MS &&
                   KMS_HSM_TIMEOUT_MIN_MS == P11_POOL_WAIT_MIN_MS &&
                   KMS_HSM_TIMEOUT_MAX_MS == P11_POOL_WAIT_MAX_MS,
               "kms_domain.h and p11.h disagree on the HSM session wait");

#define ROOT_KEY_CHECK_META "root_key_check"

static bool shared_store(const kms_domain *d) { return d->st && strcmp(d->st->ops->name, "sqlite") != 0; }

static kerr_code root_key_mismatch(const kms_domain *d, kerr *err) {
  if (shared_store(d))
    return kerr_set(err, KERR_INTERNAL,
                    "root.key does not belong to this store: %s/root.key does not open what the "
                    "database holds. Every node of one database needs the same root.key: copy it "
                    "from a node that serves this database.",
                    d->data_dir);
  return kerr_set(err, KERR_INTERNAL,
                  "root.key does not belong to this data directory's store: %s/root.key does not "
                  "open what %s/kmsd.db holds. Restore the root.key that was made with this store.",
                  d->data_dir, d->data_dir);
}

/* A shared store that already has a root key's check value and a node
 * without root.key: making a new key would only be refused by
 * check_root_key, and leave a wrong root.key behind.  Say what to do. */
static kerr_code root_key_needed(kms_domain *d, const char *key_path, kerr *err) {
  struct stat st;
  store_tx *tx = NULL;
  uint8_t *value = NULL;
  size_t len = 0;
  if (lstat(key_path, &st) == 0) return KERR_OK;
  kerr_code rc = kmsi_begin(d, false, &tx, err);
  if (rc) return rc;
  rc = d->st->ops->meta_get(tx, ROOT_KEY_CHECK_META, &value, &len, err);
  d->st->ops->rollback(tx);
  free(value);
  if (rc == KERR_NOT_FOUND) return KERR_OK;
  if (rc) return rc;
  return kerr_set(err, KERR_INTERNAL,
                  "%s does not exist, and the database already holds keys wrapped under a root "
                  "key. Copy root.key from a node that serves this database.",
                  key_path);
}

/* A store without a check value predates it: before trusting the root key
 * with a new one, it must open one wrapped value of every kind the store
 * holds (an empty store proves nothing and accepts any key). */
static kerr_code root_key_opens_store(kms_domain *d, store_tx *tx, kerr *err) {
  static const store_wrapped_kind kinds[] = {STORE_WRAPPED_KEY_MATERIAL, STORE_WRAPPED_CKS_PASSWORD,
                                             STORE_WRAPPED_HSM_SECRET};
  uint8_t *opened = secure_alloc(AESGCM_KEY_LEN);
  kerr_code rc = KERR_OK;
  if (!opened) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  for (size_t i = 0; i < sizeof kinds / sizeof *kinds && !rc; i++) {
    store_wrapped_sample w;
    kerr ignored;
    rc = d->st->ops->wrapped_sample(tx, kinds[i], &w, err);
    if (rc == KERR_NOT_FOUND) {
      rc = KERR_OK;
      continue;
    }
    if (rc) break;
    const char *name = kinds[i] == STORE_WRAPPED_CKS_PASSWORD ? KMSI_CKS_PASSWORD_MATERIAL_ID : w.name;
    if (rootkey_unwrap(d->rk, w.owner, name, w.wrapped, w.wrapped_len, opened, &ignored) != KERR_OK)
      rc = root_key_mismatch(d, err);
    store_wrapped_sample_clear(&w);
  }
  secure_free(opened, AESGCM_KEY_LEN);
  return rc;
}

/* Make sure root.key is the one this store was written with, before
 * anything (recovery, the sweep, HSM tokens) reads or writes through it.
 * A mismatch changes nothing in the store. */
static kerr_code check_root_key(kms_domain *d, kerr *err) {
  store_tx *tx = NULL;
  uint8_t *value = NULL, fresh[ROOTKEY_CHECK_LEN];
  size_t len = 0;
  kerr_code rc = kmsi_begin(d, false, &tx, err);
  if (rc) return rc;
  rc = d->st->ops->meta_get(tx, ROOT_KEY_CHECK_META, &value, &len, err);
  d->st->ops->rollback(tx);
  tx = NULL;
  if (rc == KERR_OK) {
    if (!rootkey_check_value_matches(d->rk, value, len)) rc = root_key_mismatch(d, err);
    goto out;
  }
  if (rc != KERR_NOT_FOUND) goto out;
  /* First start of a new store, or of one made before check values. */
  rc = kmsi_begin(d, true, &tx, err);
  if (rc) goto out;
  rc = root_key_opens_store(d, tx, err);
  if (!rc) rc = rootkey_check_value_make(d->rk, fresh, err);
  if (!rc) rc = d->st->ops->meta_put(tx, ROOT_KEY_CHECK_META, fresh, sizeof fresh, err);
  if (rc) goto out;
  rc = d->st->ops->commit(tx, err);
  tx = NULL;
out:
  if (tx) d->st->ops->rollback(tx);
  free(value);
  return rc;
}

kerr_code kms_domain_open(const kms_domain_config *cfg, kms_domain **out, kerr *err) {
  kerr_code rc = KERR_OK;
  kms_domain *d = NULL;
  char *path = NULL;
  size_t plen;

  *out = NULL;
  if (!cfg || !cfg->data_dir || !*cfg->data_dir)
    return kerr_set(err, KERR_VALIDATION, "A data directory is required.");
  if (cfg->material_cache_entries > KMS_CACHE_ENTRIES_MAX ||
      cfg->policy_cache_entries > KMS_CACHE_ENTRIES_MAX ||
      cfg->key_cache_entries > KMS_CACHE_ENTRIES_MAX ||
      cfg->hsm_key_cache_entries > KMS_CACHE_ENTRIES_MAX)
    return kerr_set(err, KERR_VALIDATION, "A cache may have at most %d entries.",
                    KMS_CACHE_ENTRIES_MAX);
  d = calloc(1, sizeof *d);
  if (!d) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  pthread_mutex_init(&d->stop_lock, NULL);
  pthread_cond_init(&d->stop_cond, NULL);
  rc = kmsi_strdup(cfg->data_dir, &d->data_dir, err);
  if (rc) goto out;
  rc = make_dir(d->data_dir, err);
  if (rc) goto out;
  /* Before anything in the directory is read: recovery and the sweep below
   * write to the store, and must never run under another kmsd's feet. */
  if (cfg->data_dir_lock) {
    if (strcmp(datadir_lock_dir(cfg->data_dir_lock), cfg->data_dir) != 0) {
      rc = kerr_set(err, KERR_INTERNAL, "The lock held is not on data directory %s.", cfg->data_dir);
      goto out;
    }
  } else {
    rc = datadir_lock_take(d->data_dir, &d->own_lock, err);
    if (rc) goto out;
  }
  plen = strlen(d->data_dir) + 32;
  path = malloc(plen);
  if (!path) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  if (cfg->store_url) {
    /* A shared database: kmsd.db is not here, and root.key must be the
     * one every other node has. */
    rc = store_pg_open(cfg->store_url, cfg->db_busy_timeout_ms, &d->st, err);
    if (rc) goto out;
    snprintf(path, plen, "%s/root.key", d->data_dir);
    rc = root_key_needed(d, path, err);
    if (rc) goto out;
    rc = rootkey_load_or_create(path, &d->rk, err);
    if (rc) goto out;
  } else {
    rc = check_data_files(d->data_dir, err);
    if (rc) goto out;
    snprintf(path, plen, "%s/root.key", d->data_dir);
    rc = rootkey_load_or_create(path, &d->rk, err);
    if (rc) goto out;
    store_sqlite_options sopts;
    memset(&sopts, 0, sizeof sopts);
    sopts.busy_timeout_ms = cfg->db_busy_timeout_ms;
    snprintf(path, plen, "%s/kmsd.db", d->data_dir);
    rc = store_sqlite_open_with(path, &sopts, &d->st, err);
    if (rc) goto out;
  }
  rc = check_root_key(d, err);
  if (rc) goto out;
  if (cfg->hsm_timeout_ms &&
      (cfg->hsm_timeout_ms < KMS_HSM_TIMEOUT_MIN_MS || cfg->hsm_timeout_ms > KMS_HSM_TIMEOUT_MAX_MS)) {
    rc = kerr_set(err, KERR_VALIDATION, "The HSM timeout must be %d to %d ms.",
                  KMS_HSM_TIMEOUT_MIN_MS, KMS_HSM_TIMEOUT_MAX_MS);
    goto out;
  }
  if (cfg->xks_timeout_ms &&
      (cfg->xks_timeout_ms < KMS_XKS_TIMEOUT_MIN_MS || cfg->xks_timeout_ms > KMS_XKS_TIMEOUT_MAX_MS)) {
    rc = kerr_set(err, KERR_VALIDATION, "The XKS timeout must be %d to %d ms.",
                  KMS_XKS_TIMEOUT_MIN_MS, KMS_XKS_TIMEOUT_MAX_MS);
    goto out;
  }
  if (cfg->xks_health_interval_ms > 0 &&
      (cfg->xks_health_interval_ms < KMS_XKS_HEALTH_INTERVAL_MIN_MS ||
       cfg->xks_health_interval_ms > KMS_XKS_HEALTH_INTERVAL_MAX_MS)) {
    rc = kerr_set(err, KERR_VALIDATION, "The XKS health-check interval must be %d to %d ms.",
                  KMS_XKS_HEALTH_INTERVAL_MIN_MS, KMS_XKS_HEALTH_INTERVAL_MAX_MS);
    goto out;
  }
  if (cfg->xks_connections > KMS_XKS_CONNECTIONS_MAX) {
    rc = kerr_set(err, KERR_VALIDATION, "At most %d connections to each XKS proxy.",
                  KMS_XKS_CONNECTIONS_MAX);
    goto out;
  }
  if (cfg->xks_connect_to_count > KMS_XKS_CONNECT_TO_MAX) {
    rc = kerr_set(err, KERR_VALIDATION, "At most %d XKS connect-to overrides.",
                  KMS_XKS_CONNECT_TO_MAX);
    goto out;
  }
  d->xks_timeout_ms = cfg->xks_timeout_ms ? cfg->xks_timeout_ms : KMS_XKS_TIMEOUT_DEFAULT_MS;
  d->xks_connections = cfg->xks_connections ? cfg->xks_connections : KMS_XKS_CONNECTIONS_DEFAULT;
  d->xks_health_interval_ms = cfg->xks_health_interval_ms ? cfg->xks_health_interval_ms
                                                          : KMS_XKS_HEALTH_INTERVAL_DEFAULT_MS;
  d->vpc_judge = cfg->vpc_judge;
  d->vpc_arg = cfg->vpc_arg;
  if (cfg->xks_ca_bundle) {
    rc = kmsi_strdup(cfg->xks_ca_bundle, &d->xks_ca_bundle, err);
    if (rc) goto out;
  }
  if (cfg->xks_connect_to_count) {
    d->xks_connect_to = calloc(cfg->xks_connect_to_count, sizeof *d->xks_connect_to);
    if (!d->xks_connect_to) {
      rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
      goto out;
    }
    d->xks_connect_to_count = cfg->xks_connect_to_count;
    for (size_t i = 0; i < cfg->xks_connect_to_count; i++) {
      rc = kmsi_strdup(cfg->xks_connect_to[i], &d->xks_connect_to[i], err);
      if (rc) goto out;
    }
  }
  hsm_service_config hcfg = {.st = d->st, .rk = d->rk, .data_dir = d->data_dir,
                             .timeout_ms = cfg->hsm_timeout_ms ? cfg->hsm_timeout_ms
                                                               : KMS_HSM_TIMEOUT_DEFAULT_MS,
                             .key_cache = cfg->hsm_key_cache_entries < 0 ? 0
                                          : cfg->hsm_key_cache_entries
                                              ? (size_t)cfg->hsm_key_cache_entries
                                              : KMS_HSM_KEY_CACHE_DEFAULT};
  rc = hsm_service_open(&hcfg, &d->hsm, err);
  if (rc) goto out;
  rc = material_cache_new(cfg->material_cache_entries ? cfg->material_cache_entries
                                                      : KMS_MATERIAL_CACHE_DEFAULT,
                          &d->materials, err);
  if (rc) goto out;
  rc = policy_cache_new(cfg->policy_cache_entries ? cfg->policy_cache_entries
                                                  : KMS_POLICY_CACHE_DEFAULT,
                        &d->policies, err);
  if (rc) goto out;
  if (cfg->key_cache_entries >= 0) {
    store_stamp probe;
    rc = kmsi_key_cache_new(cfg->key_cache_entries ? (size_t)cfg->key_cache_entries
                                                   : KMS_KEY_CACHE_DEFAULT,
                            &d->keys, err);
    if (rc) goto out;
    /* Without a stamp the cache never serves: say so once, not per request. */
    if (!d->st->ops->change_stamp || !d->st->ops->change_stamp(d->st, &probe))
      log_msg(LOG_WARN, NULL,
              "the store gives no change stamp: every key is read from it (no key cache)");
  }
  /* Catch up on whatever came due while the server was down (the node
   * holding the lease does, for every node). */
  if (kmsi_lease_held(d)) {
    rc = kms_domain_sweep(d, err);
    if (rc) goto out;
  }
  d->sweep_interval_ms = cfg->sweep_interval_ms ? cfg->sweep_interval_ms : DEFAULT_SWEEP_MS;
  d->max_custom_key_stores = cfg->max_custom_key_stores > 0 ? cfg->max_custom_key_stores
                                                            : KMS_DEFAULT_MAX_CUSTOM_KEY_STORES;
  d->max_keys = cfg->max_keys > 0 ? cfg->max_keys : KMS_DEFAULT_MAX_KEYS;
  /* Threads start last, once the domain is whole: pthread_create orders
   * every write above before anything a new thread reads, and nothing a
   * thread reads is written after it starts.  The connection manager (and
   * its recovery workers) before the sweeper, whose key deletions and
   * health checks use d->cks. */
  rc = kmsi_cks_start(d, err); /* finishes what a previous run left mid-transition */
  if (rc) goto out;
  if (d->sweep_interval_ms > 0) {
    if (pthread_create(&d->sweeper, NULL, sweeper_main, d) != 0) {
      rc = kerr_set(err, KERR_INTERNAL, "Cannot start the key sweeper thread.");
      goto out;
    }
    d->sweeper_running = true;
  }
  *out = d;
  d = NULL;
out:
  free(path);
  kms_domain_close(d);
  return rc;
}

void kms_domain_close(kms_domain *d) {
  if (!d) return;
  if (d->sweeper_running) {
    pthread_mutex_lock(&d->stop_lock);
    d->stopping = true;
    pthread_cond_signal(&d->stop_cond);
    pthread_mutex_unlock(&d->stop_lock);
    pthread_join(d->sweeper, NULL);
  }
  kmsi_cks_stop(d); /* custom key stores: before the clusters they use */
  hsm_service_close(d->hsm);
  if (d->st) d->st->ops->close(d->st);
  material_cache_free(d->materials);
  policy_cache_free(d->policies);
  kmsi_key_cache_free(d->keys);
  rootkey_free(d->rk);
  datadir_lock_release(d->own_lock);
  pthread_mutex_destroy(&d->stop_lock);
  pthread_cond_destroy(&d->stop_cond);
  for (size_t i = 0; d->xks_connect_to && i < d->xks_connect_to_count; i++)
    free(d->xks_connect_to[i]);
  free(d->xks_connect_to);
  free(d->xks_ca_bundle);
  free(d->data_dir);
  free(d);
}
