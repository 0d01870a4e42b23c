/* kms_tags.c - TagResource, UntagResource and ListResourceTags. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kms/kms_internal.h"

#define TAGS_DEFAULT_LIMIT 50

typedef struct tag_arg {
  const kms_pair *tags;
  size_t ntags;
  const char *const *keys;
  size_t nkeys;
} tag_arg;

static kerr_code tag_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err) {
  tag_arg *a = arg;
  store_tag *existing = NULL;
  size_t nexisting = 0, total;
  kerr_code rc = kmsi_check_state(k, KMSI_NEED_NOT_PENDING, err);
  if (rc) return rc;
  rc = d->st->ops->tag_list(tx, k->row.key_id, &existing, &nexisting, err);
  if (rc) return rc;
  /* New keys add to the count; existing ones are overwritten in place. */
  total = nexisting;
  for (size_t i = 0; i < a->ntags; i++) {
    bool found = false;
    for (size_t j = 0; j < nexisting && !found; j++)
      found = strcmp(existing[j].key, a->tags[i].key) == 0;
    if (!found) total++;
  }
  store_tag_list_free(existing, nexisting);
  if (total > KMS_MAX_TAGS)
    return kerr_set(err, KERR_LIMIT_EXCEEDED, "A KMS key can have at most %d tags.", KMS_MAX_TAGS);
  for (size_t i = 0; i < a->ntags && !rc; i++)
    rc = d->st->ops->tag_put(tx, k->row.key_id, a->tags[i].key, a->tags[i].value, err);
  return rc;
}

kerr_code kms_op_tag_resource(kms_domain *d, const kms_call *call, const char *key_id,
                           const kms_pair *tags, size_t ntags, kerr *err) {
  tag_arg a = {tags, ntags, NULL, 0};
  kerr_code rc = kmsi_validate_tags(tags, ntags, err);
  if (rc) return rc;
  return kmsi_with_key(d, call, key_id, &KMSI_MANAGE, true, "kms:TagResource", tag_fn, &a, err);
}

static kerr_code untag_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err) {
  tag_arg *a = arg;
  kerr_code rc = kmsi_check_state(k, KMSI_NEED_NOT_PENDING, err);
  for (size_t i = 0; i < a->nkeys && !rc; i++)
    rc = d->st->ops->tag_delete(tx, k->row.key_id, a->keys[i], err);
  return rc;
}

kerr_code kms_op_untag_resource(kms_domain *d, const kms_call *call, const char *key_id,
                             const char *const *tag_keys, size_t nkeys, kerr *err) {
  tag_arg a = {NULL, 0, tag_keys, nkeys};
  if (nkeys && !tag_keys) return kerr_set(err, KERR_TAG, "Tag keys are required.");
  if (nkeys > KMS_MAX_TAGS)
    return kerr_set(err, KERR_TAG, "At most %d tag keys can be removed at once.", KMS_MAX_TAGS);
  for (size_t i = 0; i < nkeys; i++) {
    size_t n = tag_keys[i] ? strlen(tag_keys[i]) : 0;
    if (n < 1 || n > 128 * 4)
      return kerr_set(err, KERR_TAG, "Tag key must be 1 to 128 characters long.");
    if (strncasecmp(tag_keys[i], "aws:", 4) == 0)
      return kerr_set(err, KERR_TAG, "Tags beginning with aws: are reserved.");
  }
  return kmsi_with_key(d, call, key_id, &KMSI_MANAGE, true, "kms:UntagResource", untag_fn, &a,
                       err);
}

typedef struct list_tags_arg {
  size_t limit;
  const char *after;
  kms_list_tags_output *out;
} list_tags_arg;

static kerr_code list_fn(kms_domain *d, store_tx *tx, kmsi_key *k, void *arg, kerr *err) {
  list_tags_arg *a = arg;
  store_tag *all = NULL;
  size_t nall = 0, start = 0, n;
  kerr_code rc = d->st->ops->tag_list(tx, k->row.key_id, &all, &nall, err);
  if (rc) return rc;
  if (a->after)
    while (start < nall && strcmp(all[start].key, a->after) <= 0) start++;
  n = nall - start;
  a->out->truncated = n > a->limit;
  if (a->out->truncated) n = a->limit;
  a->out->tags = calloc(n ? n : 1, sizeof *a->out->tags);
  if (!a->out->tags) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  /* Hand the strings over instead of copying them. */
  for (size_t i = 0; i < n; i++) {
    a->out->tags[i].key = all[start + i].key;
    a->out->tags[i].value = all[start + i].value;
    all[start + i].key = all[start + i].value = NULL;
  }
  a->out->ntags = n;
  if (a->out->truncated) {
    a->out->next_marker = kmsi_marker_make('T', a->out->tags[n - 1].key);
    if (!a->out->next_marker) rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
out:
  store_tag_list_free(all, nall);
  return rc;
}

void kms_list_tags_output_clear(kms_list_tags_output *o) {
  if (!o) return;
  for (size_t i = 0; i < o->ntags; i++) {
    free(o->tags[i].key);
    free(o->tags[i].value);
  }
  free(o->tags);
  free(o->next_marker);
  memset(o, 0, sizeof *o);
}

kerr_code kms_op_list_resource_tags(kms_domain *d, const kms_call *call, const char *key_id,
                                 const kms_list_input *in, kms_list_tags_output *out, kerr *err) {
  char after[600];
  list_tags_arg a = {0, NULL, out};
  memset(out, 0, sizeof *out);
  kerr_code rc = kmsi_limit(in ? in->limit : 0, TAGS_DEFAULT_LIMIT, KMS_MAX_LIST_LIMIT, &a.limit, err);
  if (rc) return rc;
  if (in && in->marker) {
    rc = kmsi_marker_parse('T', in->marker, after, sizeof after, err);
    if (rc) return rc;
    a.after = after;
  }
  rc = kmsi_with_key(d, call, key_id, &KMSI_MANAGE, false, "kms:ListResourceTags", list_fn, &a,
                     err);
  if (rc) kms_list_tags_output_clear(out);
  return rc;
}
