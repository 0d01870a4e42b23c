/* kms_aliases.c - CreateAlias, UpdateAlias, DeleteAlias and ListAliases.
 *
 * Aliases are friendly names ("alias/app-key") for keys, unique per account
 * and region.  "alias/aws/" is reserved for AWS managed keys, which this
 * service does not create, so no caller may use that prefix. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/arn.h"
#include "core/kclock.h"
#include "kms/kms_internal.h"

#define ALIAS_DEFAULT_LIMIT 50

/* The model's pattern ^[a-zA-Z0-9:/_-]+$ plus the "alias/" prefix. */
static bool alias_name_ok(const char *name) {
  size_t n = name ? strlen(name) : 0;
  if (n <= 6 || n > 256 || strncmp(name, "alias/", 6) != 0) return false;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == ':' || c == '/' || c == '_' || c == '-'))
      return false;
  }
  return true;
}

static bool alias_reserved(const char *name) { return strncmp(name, "alias/aws/", 10) == 0; }

static void alias_arn(const kms_call *call, const char *name, char *out, size_t cap) {
  if (arn_kms_alias(call->region, call->caller->account_id, name, out, cap, NULL) != KERR_OK)
    snprintf(out, cap, "arn:aws:kms:%s:%s:%s", call->region, call->caller->account_id, name);
}

static kerr_code alias_not_found(const kms_call *call, const char *name, kerr *err) {
  char arn[KMS_ARN_MAX];
  alias_arn(call, name ? name : "", arn, sizeof arn);
  return kerr_set(err, KERR_NOT_FOUND, "Alias '%s' is not found.", arn);
}

typedef struct alias_arg {
  const kms_call *call;
  const char *name;
} alias_arg;

/* AWS's "aliases per KMS key" quota: the key `k` may take one more alias.
 * Runs inside the caller's write transaction, so the count cannot go stale
 * before the alias is written. */
static kerr_code check_alias_quota(kms_domain *d, store_tx *tx, const alias_arg *a,
                                   const kmsi_key *k, kerr *err) {
  store_alias *list = NULL;
  size_t n = 0;
  kerr_code rc = d->st->ops->alias_list(tx, a->call->caller->account_id, a->call->region,
                                        k->row.key_id, NULL, KMS_MAX_ALIASES_PER_KEY, &list, &n,
                                        err);
  free(list);
  if (rc) return rc;
  if (n >= KMS_MAX_ALIASES_PER_KEY)
    return kerr_set(err, KERR_LIMIT_EXCEEDED, "The KMS key %s already has %d aliases; the limit is %d.",
                    k->arn, KMS_MAX_ALIASES_PER_KEY, KMS_MAX_ALIASES_PER_KEY);
  return KERR_OK;
}

static kerr_code create_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err) {
  alias_arg *a = arg;
  store_alias row;
  kerr_code rc = kmsi_check_state(k, KMSI_NEED_NOT_PENDING, err);
  if (rc) return rc;
  rc = check_alias_quota(d, tx, a, k, err);
  if (rc) return rc;
  memset(&row, 0, sizeof row);
  snprintf(row.account_id, sizeof row.account_id, "%s", a->call->caller->account_id);
  snprintf(row.region, sizeof row.region, "%s", a->call->region);
  snprintf(row.alias_name, sizeof row.alias_name, "%s", a->name);
  snprintf(row.key_id, sizeof row.key_id, "%s", k->row.key_id);
  row.created_ms = row.updated_ms = kclock_now_ms();
  rc = d->st->ops->alias_insert(tx, &row, err);
  if (rc == KERR_ALREADY_EXISTS) {
    char arn[KMS_ARN_MAX];
    alias_arn(a->call, a->name, arn, sizeof arn);
    return kerr_set(err, KERR_ALREADY_EXISTS, "An alias with the name %s already exists", arn);
  }
  return rc;
}

kerr_code kms_op_create_alias(kms_domain *d, const kms_call *call, const char *alias_name,
                           const char *target_key_id, kerr *err) {
  alias_arg a = {call, alias_name};
  kerr_code rc = kmsi_check_call(call, err);
  if (rc) return rc;
  if (!alias_name_ok(alias_name))
    return kerr_set(err, KERR_INVALID_ALIAS_NAME,
                    "Alias must start with the prefix \"alias/\" and contain only alphanumeric "
                    "characters, forward slashes (/), underscores (_), colons (:) and dashes (-).");
  if (alias_reserved(alias_name))
    return kerr_set(err, KERR_INVALID_ALIAS_NAME,
                    "Alias must not begin with alias/aws/: that prefix is reserved for AWS managed keys.");
  return kmsi_with_key(d, call, target_key_id, &KMSI_MANAGE, true, "kms:CreateAlias", create_fn,
                       &a, err);
}

static kerr_code update_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err) {
  alias_arg *a = arg;
  store_alias row;
  kmsi_key old;
  kerr_code rc = kmsi_check_state(k, KMSI_NEED_NOT_PENDING, err);
  if (rc) return rc;
  rc = d->st->ops->alias_get(tx, a->call->caller->account_id, a->call->region, a->name, &row, err);
  if (rc == KERR_NOT_FOUND) return alias_not_found(a->call, a->name, err);
  if (rc) return rc;
  /* Moving an alias also needs permission on the key it leaves. */
  memset(&old, 0, sizeof old);
  rc = d->st->ops->key_get(tx, row.key_id, &old.row, err);
  if (rc == KERR_OK) {
    kmsi_key_arn(&old.row, old.arn);
    rc = kmsi_authorize(d, tx, a->call, &old, "kms:UpdateAlias", err);
  } else if (rc == KERR_NOT_FOUND) {
    rc = KERR_OK;
  }
  kmsi_key_clear(&old);
  if (rc) return rc;
  /* Re-pointing an alias at the key it already names adds nothing. */
  if (strcmp(row.key_id, k->row.key_id) != 0) {
    rc = check_alias_quota(d, tx, a, k, err);
    if (rc) return rc;
  }
  snprintf(row.key_id, sizeof row.key_id, "%s", k->row.key_id);
  row.updated_ms = kclock_now_ms();
  return d->st->ops->alias_update(tx, &row, err);
}

kerr_code kms_op_update_alias(kms_domain *d, const kms_call *call, const char *alias_name,
                           const char *target_key_id, kerr *err) {
  alias_arg a = {call, alias_name};
  kerr_code rc = kmsi_check_call(call, err);
  if (rc) return rc;
  if (!alias_name_ok(alias_name) || alias_reserved(alias_name))
    return alias_not_found(call, alias_name, err);
  return kmsi_with_key(d, call, target_key_id, &KMSI_MANAGE, true, "kms:UpdateAlias", update_fn,
                       &a, err);
}

static kerr_code delete_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err) {
  alias_arg *a = arg;
  kerr_code rc = d->st->ops->alias_delete(tx, a->call->caller->account_id, a->call->region,
                                          a->name, err);
  if (rc == KERR_NOT_FOUND) return alias_not_found(a->call, a->name, err);
  return rc;
}

kerr_code kms_op_delete_alias(kms_domain *d, const kms_call *call, const char *alias_name,
                           kerr *err) {
  alias_arg a = {call, alias_name};
  kerr_code rc = kmsi_check_call(call, err);
  if (rc) return rc;
  if (!alias_name_ok(alias_name)) return alias_not_found(call, alias_name, err);
  /* Resolving the alias finds the key whose policy governs the deletion. */
  return kmsi_with_key(d, call, alias_name, &KMSI_MANAGE_ANY, true, "kms:DeleteAlias", delete_fn,
                       &a, err);
}

void kms_list_aliases_output_clear(kms_list_aliases_output *o) {
  if (!o) return;
  for (size_t i = 0; o->aliases && i < o->naliases; i++) {
    free(o->aliases[i].alias_name);
    free(o->aliases[i].alias_arn);
  }
  free(o->aliases);
  free(o->next_marker);
  memset(o, 0, sizeof *o);
}

kerr_code kms_op_list_aliases(kms_domain *d, const kms_call *call, const char *key_id,
                           const kms_list_input *in, kms_list_aliases_output *out, kerr *err) {
  kerr_code rc;
  store_tx *tx = NULL;
  size_t limit = 0, n = 0;
  char after[STORE_ALIAS_MAX];
  store_alias *rows = NULL;
  kmsi_key k;

  memset(&k, 0, sizeof k);
  memset(out, 0, sizeof *out);
  rc = kmsi_check_call(call, err);
  if (rc) return rc;
  rc = kmsi_limit(in ? in->limit : 0, ALIAS_DEFAULT_LIMIT, KMS_MAX_LIST_LIMIT, &limit, err);
  if (rc) return rc;
  if (in && in->marker) {
    rc = kmsi_marker_parse('A', in->marker, after, sizeof after, err);
    if (rc) return rc;
  }
  rc = kmsi_begin(d, false, &tx, err);
  if (rc) return rc;
  if (key_id) {
    rc = kmsi_resolve(d, &tx, false, call, key_id, &KMSI_MANAGE, &k, err);
    if (rc) goto out;
  }
  rc = kmsi_authorize(d, tx, call, key_id ? &k : NULL, "kms:ListAliases", err);
  if (rc) goto out;
  rc = d->st->ops->alias_list(tx, call->caller->account_id, call->region,
                              key_id ? k.row.key_id : NULL, in && in->marker ? after : NULL,
                              limit + 1, &rows, &n, err);
  if (rc) goto out;
  out->truncated = n > limit;
  if (out->truncated) n = limit;
  out->aliases = calloc(n ? n : 1, sizeof *out->aliases);
  if (!out->aliases) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    kms_alias_entry *e = &out->aliases[i];
    char arn[KMS_ARN_MAX];
    out->naliases = i + 1;
    alias_arn(call, rows[i].alias_name, arn, sizeof arn);
    rc = kmsi_strdup(rows[i].alias_name, &e->alias_name, err);
    if (rc) goto out;
    rc = kmsi_strdup(arn, &e->alias_arn, err);
    if (rc) goto out;
    snprintf(e->target_key_id, sizeof e->target_key_id, "%s", rows[i].key_id);
    e->creation_date_ms = rows[i].created_ms;
    e->last_updated_date_ms = rows[i].updated_ms;
  }
  if (out->truncated) {
    out->next_marker = kmsi_marker_make('A', rows[n - 1].alias_name);
    if (!out->next_marker) rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
out:
  if (tx) d->st->ops->rollback(tx);
  free(rows);
  kmsi_key_clear(&k);
  if (rc) kms_list_aliases_output_clear(out);
  return rc;
}
