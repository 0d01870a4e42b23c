/* store.c - backend-independent helpers of the store records (store.h). */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

void store_key_clear(store_key *k) {
  if (!k) return;
  free(k->description);
  free(k->custom_key_store_id);
  free(k->xks_key_id);
  memset(k, 0, sizeof *k);
}

void store_material_clear(store_material *m) {
  if (!m) return;
  /* Wrapped material is not secret, but there is no reason to leave it around. */
  if (m->wrapped) memset(m->wrapped, 0, m->wrapped_len);
  free(m->wrapped);
  memset(m, 0, sizeof *m);
}

void store_material_list_free(store_material *list, size_t n) {
  if (!list) return;
  for (size_t i = 0; i < n; i++) store_material_clear(&list[i]);
  free(list);
}

void store_tag_list_free(store_tag *list, size_t n) {
  if (!list) return;
  for (size_t i = 0; i < n; i++) {
    free(list[i].key);
    free(list[i].value);
  }
  free(list);
}

void store_wrapped_sample_clear(store_wrapped_sample *w) {
  if (!w) return;
  free(w->wrapped);
  memset(w, 0, sizeof *w);
}

bool store_stamp_equal(const store_stamp *a, const store_stamp *b) {
  return memcmp(a->w, b->w, sizeof a->w) == 0;
}

void store_cks_clear(store_cks *c) {
  if (!c) return;
  free(c->trust_anchor_pem);
  free(c->password_wrapped);
  free(c->pending_password_wrapped);
  free(c->xks_secret_wrapped);
  memset(c, 0, sizeof *c);
}

void store_cks_list_free(store_cks *list, size_t n) {
  if (!list) return;
  for (size_t i = 0; i < n; i++) store_cks_clear(&list[i]);
  free(list);
}

void store_hsm_cluster_clear(store_hsm_cluster *c) {
  if (!c) return;
  free(c->subnets);
  free(c->tags);
  free(c->csr_pem);
  free(c->trust_anchor_pem);
  free(c->cluster_cert_pem);
  memset(c, 0, sizeof *c);
}

void store_hsm_cluster_list_free(store_hsm_cluster *list, size_t n) {
  if (!list) return;
  for (size_t i = 0; i < n; i++) store_hsm_cluster_clear(&list[i]);
  free(list);
}
