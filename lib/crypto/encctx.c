/* encctx.c - canonical serialization of encryption contexts (see encctx.h). */
#include "crypto/encctx.h"

#include <stdlib.h>
#include <string.h>

static int entry_cmp(const void *a, const void *b) {
  const encctx_entry *x = *(const encctx_entry *const *)a;
  const encctx_entry *y = *(const encctx_entry *const *)b;
  return strcmp(x->key, y->key);
}

static void put_u32(uint8_t *p, size_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

kerr_code encctx_canonical(const encctx_entry *entries, size_t n, uint8_t **out, size_t *out_len,
                           kerr *err) {
  kerr_code rc = KERR_OK;
  const encctx_entry **sorted = NULL;
  uint8_t *buf = NULL;
  size_t total = 4, pos = 0;

  *out = NULL;
  *out_len = 0;
  if (n > ENCCTX_MAX_BYTES / 8) {
    rc = kerr_set(err, KERR_VALIDATION, "The encryption context has too many entries.");
    goto out;
  }
  if (n) {
    sorted = calloc(n, sizeof *sorted);
    if (!sorted) {
      rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
      goto out;
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (!entries[i].key || !entries[i].value) {
      rc = kerr_set(err, KERR_VALIDATION, "Encryption context keys and values must be strings.");
      goto out;
    }
    size_t kl = strlen(entries[i].key), vl = strlen(entries[i].value);
    if (kl > ENCCTX_MAX_BYTES || vl > ENCCTX_MAX_BYTES) {
      rc = kerr_set(err, KERR_VALIDATION, "The encryption context is too large.");
      goto out;
    }
    total += 8 + kl + vl;
    if (total > ENCCTX_MAX_BYTES) {
      rc = kerr_set(err, KERR_VALIDATION, "The encryption context is too large.");
      goto out;
    }
    sorted[i] = &entries[i];
  }
  if (n > 1) qsort(sorted, n, sizeof *sorted, entry_cmp);
  for (size_t i = 1; i < n; i++) {
    if (strcmp(sorted[i - 1]->key, sorted[i]->key) == 0) {
      rc = kerr_set(err, KERR_VALIDATION, "The encryption context has a duplicate key.");
      goto out;
    }
  }
  buf = malloc(total);
  if (!buf) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  put_u32(buf, n);
  pos = 4;
  for (size_t i = 0; i < n; i++) {
    size_t kl = strlen(sorted[i]->key), vl = strlen(sorted[i]->value);
    put_u32(buf + pos, kl);
    memcpy(buf + pos + 4, sorted[i]->key, kl);
    pos += 4 + kl;
    put_u32(buf + pos, vl);
    memcpy(buf + pos + 4, sorted[i]->value, vl);
    pos += 4 + vl;
  }
  *out = buf;
  *out_len = total;
  buf = NULL;
out:
  free(sorted);
  free(buf);
  return rc;
}
