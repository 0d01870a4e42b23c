/* store_walk.h - what every store backend must do alike, run by each
 * backend's own test (test_store.c for SQLite, test_store_pg.c for
 * PostgreSQL) over a store it opens: every record type written, read,
 * listed, updated, rolled back and deleted with its dependents, and all of
 * it still there after a reopen.  Included by one test file each; its
 * functions are static. */
#ifndef KMSD_TESTS_STORE_WALK_H
#define KMSD_TESTS_STORE_WALK_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

#define K1 "00000000-0000-4000-8000-000000000001"
#define K2 "00000000-0000-4000-8000-000000000002"

static void make_key(store_key *k, const char *id) {
  memset(k, 0, sizeof *k);
  snprintf(k->key_id, sizeof k->key_id, "%s", id);
  strcpy(k->account_id, "111122223333");
  strcpy(k->region, "us-east-1");
  k->created_ms = 1000;
  k->description = "desc";
  strcpy(k->key_state, "Enabled");
  strcpy(k->key_usage, "ENCRYPT_DECRYPT");
  strcpy(k->key_spec, "SYMMETRIC_DEFAULT");
  strcpy(k->origin, "AWS_KMS");
}

/* Opens (creating or reopening) the store under test. */
typedef kerr_code (*store_walk_open)(store **out, kerr *err);

static void store_walk_records(store_walk_open open_store) {
  store *s = NULL;
  store_tx *tx = NULL;
  store_key k, got;
  kerr err;
  assert_int_equal(open_store(&s, &err), KERR_OK);

  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  make_key(&k, K1);
  assert_int_equal(s->ops->key_insert(tx, &k, "{\"p\":1}", &err), KERR_OK);
  make_key(&k, K2);
  k.description = NULL;
  assert_int_equal(s->ops->key_insert(tx, &k, "{}", &err), KERR_OK);
  /* Taken: reported, and the transaction goes on (as with SQLite). */
  assert_int_equal(s->ops->key_insert(tx, &k, "{}", &err), KERR_ALREADY_EXISTS);
  uint8_t wrapped[61];
  for (size_t i = 0; i < sizeof wrapped; i++) wrapped[i] = (uint8_t)(i * 7); /* 0x00 included */
  store_material m = {.seq = 0, .wrapped = wrapped, .wrapped_len = sizeof wrapped, .created_ms = 5};
  strcpy(m.material_id, "m1");
  strcpy(m.key_id, K1);
  assert_int_equal(s->ops->material_insert(tx, &m, &err), KERR_OK);
  strcpy(m.material_id, "m2");
  m.seq = 1;
  strcpy(m.rotation_type, "ON_DEMAND");
  assert_int_equal(s->ops->material_insert(tx, &m, &err), KERR_OK);
  store_alias a = {.created_ms = 1, .updated_ms = 1};
  strcpy(a.account_id, "111122223333");
  strcpy(a.region, "us-east-1");
  strcpy(a.alias_name, "alias/one");
  strcpy(a.key_id, K1);
  assert_int_equal(s->ops->alias_insert(tx, &a, &err), KERR_OK);
  assert_int_equal(s->ops->alias_insert(tx, &a, &err), KERR_ALREADY_EXISTS);
  assert_int_equal(s->ops->tag_put(tx, K1, "b", "2", &err), KERR_OK);
  assert_int_equal(s->ops->tag_put(tx, K1, "a", "1", &err), KERR_OK);
  assert_int_equal(s->ops->tag_put(tx, K1, "a", "one", &err), KERR_OK);
  assert_int_equal(s->ops->commit(tx, &err), KERR_OK);

  /* a rolled back write leaves nothing */
  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->tag_put(tx, K1, "c", "3", &err), KERR_OK);
  s->ops->rollback(tx);

  assert_int_equal(s->ops->begin(s, false, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->key_get(tx, K1, &got, &err), KERR_OK);
  assert_string_equal(got.description, "desc");
  assert_string_equal(got.key_state, "Enabled");
  assert_int_equal(got.policy_version, 1);
  assert_int_equal(got.created_ms, 1000);
  assert_null(got.custom_key_store_id);
  store_key_clear(&got);
  assert_int_equal(s->ops->key_get(tx, "nope", &got, &err), KERR_NOT_FOUND);
  store_material *mats = NULL;
  size_t n = 0;
  assert_int_equal(s->ops->material_list(tx, K1, &mats, &n, &err), KERR_OK);
  assert_int_equal(n, 2);
  assert_string_equal(mats[0].material_id, "m1");
  assert_string_equal(mats[1].rotation_type, "ON_DEMAND");
  assert_int_equal(mats[1].wrapped_len, 61);
  assert_memory_equal(mats[1].wrapped, wrapped, sizeof wrapped);
  store_material_list_free(mats, n);
  store_tag *tags = NULL;
  assert_int_equal(s->ops->tag_list(tx, K1, &tags, &n, &err), KERR_OK);
  assert_int_equal(n, 2);
  assert_string_equal(tags[0].key, "a");
  assert_string_equal(tags[0].value, "one");
  store_tag_list_free(tags, n);
  char(*ids)[UUID_STR_LEN] = NULL;
  assert_int_equal(s->ops->key_list(tx, "111122223333", "us-east-1", NULL, 10, &ids, &n, &err), KERR_OK);
  assert_int_equal(n, 2);
  assert_string_equal(ids[0], K1);
  free(ids);
  assert_int_equal(s->ops->key_list(tx, "111122223333", "us-east-1", K1, 10, &ids, &n, &err), KERR_OK);
  assert_int_equal(n, 1);
  assert_string_equal(ids[0], K2);
  free(ids);
  int64_t count = 0;
  assert_int_equal(s->ops->key_count(tx, "111122223333", "us-east-1", &count, &err), KERR_OK);
  assert_int_equal(count, 2);
  s->ops->rollback(tx);

  /* policy versions, updates, due keys, cascade on delete */
  assert_int_equal(s->ops->begin(s, true, &tx, &err), KERR_OK);
  int64_t ver = 0;
  char *pol = NULL;
  assert_int_equal(s->ops->key_set_policy(tx, K1, "{\"p\":2}", &ver, &err), KERR_OK);
  assert_int_equal(ver, 2);
  assert_int_equal(s->ops->key_get_policy(tx, K1, &pol, &ver, &err), KERR_OK);
  assert_string_equal(pol, "{\"p\":2}");
  free(pol);
  assert_int_equal(s->ops->key_get(tx, K2, &got, &err), KERR_OK);
  strcpy(got.key_state, "PendingDeletion");
  got.deletion_date_ms = 500;
  assert_int_equal(s->ops->key_update(tx, &got, &err), KERR_OK);
  store_key_clear(&got);
  assert_int_equal(s->ops->keys_due(tx, 499, 10, &ids, &n, &err), KERR_OK);
  assert_int_equal(n, 0);
  free(ids);
  assert_int_equal(s->ops->keys_due(tx, 500, 10, &ids, &n, &err), KERR_OK);
  assert_int_equal(n, 1);
  assert_string_equal(ids[0], K2);
  free(ids);
  assert_int_equal(s->ops->key_delete(tx, K1, &err), KERR_OK);
  assert_int_equal(s->ops->alias_get(tx, "111122223333", "us-east-1", "alias/one", &a, &err), KERR_NOT_FOUND);
  assert_int_equal(s->ops->material_get(tx, "m1", &m, &err), KERR_NOT_FOUND);
  assert_int_equal(s->ops->tag_list(tx, K1, &tags, &n, &err), KERR_OK);
  assert_int_equal(n, 0);
  store_tag_list_free(tags, n);
  assert_int_equal(s->ops->commit(tx, &err), KERR_OK);
  s->ops->close(s);

  /* everything committed survives a reopen */
  assert_int_equal(open_store(&s, &err), KERR_OK);
  assert_int_equal(s->ops->begin(s, false, &tx, &err), KERR_OK);
  assert_int_equal(s->ops->key_get(tx, K2, &got, &err), KERR_OK);
  assert_string_equal(got.key_state, "PendingDeletion");
  assert_string_equal(got.description, "");
  assert_int_equal(got.deletion_date_ms, 500);
  store_key_clear(&got);
  assert_int_equal(s->ops->key_get(tx, K1, &got, &err), KERR_NOT_FOUND);
  assert_int_equal(s->ops->key_count(tx, "111122223333", "us-east-1", &count, &err), KERR_OK);
  assert_int_equal(count, 1);
  s->ops->rollback(tx);
  s->ops->close(s);
}

#endif
