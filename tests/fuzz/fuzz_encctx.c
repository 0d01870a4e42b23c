/* fuzz_encctx.c - libFuzzer target for the encryption context path: a
 * caller's EncryptionContext map (JSON, parsed as the pipeline parses a
 * body) read by api_json_get_pairs and turned into the canonical AAD bytes
 * by encctx_canonical (crypto/encctx.h).  A flaw here would let a ciphertext
 * open under a context it was not sealed with.
 *
 * The input is the map's JSON.  Invariants, whenever the map is accepted:
 *   - the canonical form decodes (u32be count, then u32be-length-prefixed
 *     key and value per entry) to exactly the map's entries, byte for byte,
 *     with keys strictly ascending: the form is injective;
 *   - it does not depend on the order entries arrive in (reversed input
 *     gives the same bytes);
 *   - a map that is not an object of strings, or holds a NUL in a value
 *     (\u0000: a C string would end there, and "a\u0000b" would bind like
 *     "a"), is a validation error with a message, and nothing is returned. */
#include <jansson.h>
#include <string.h>

#include "api/api_json.h"
#include "crypto/encctx.h"
#include "fuzz_common.h"

static uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Decode one length-prefixed field at *pos; returns its start. */
static const uint8_t *field(const uint8_t *buf, size_t len, size_t *pos, size_t *flen) {
  const uint8_t *start;
  FUZZ_CHECK(*pos + 4 <= len, "canonical form holds a length prefix");
  *flen = get_u32(buf + *pos);
  *pos += 4;
  FUZZ_CHECK(*flen <= len - *pos, "canonical field fits");
  start = buf + *pos;
  *pos += *flen;
  return start;
}

static void check_canonical(const uint8_t *buf, size_t len, json_t *map) {
  size_t pos = 4, count, prev_len = 0;
  const uint8_t *prev = NULL;

  FUZZ_CHECK(len >= 4, "canonical form has a count");
  count = get_u32(buf);
  FUZZ_CHECK(count == json_object_size(map), "count equals the map size");
  for (size_t i = 0; i < count; i++) {
    size_t klen, vlen, cmp_len;
    const uint8_t *k = field(buf, len, &pos, &klen), *v = field(buf, len, &pos, &vlen);
    json_t *jv = json_object_getn(map, (const char *)k, klen);
    FUZZ_CHECK(jv != NULL, "every canonical key is a key of the map, byte for byte");
    FUZZ_CHECK(json_string_length(jv) == vlen && memcmp(json_string_value(jv), v, vlen) == 0,
               "every canonical value is its key's value, byte for byte");
    if (prev) {
      cmp_len = prev_len < klen ? prev_len : klen;
      int c = memcmp(prev, k, cmp_len);
      FUZZ_CHECK(c < 0 || (c == 0 && prev_len < klen), "keys strictly ascending");
    }
    prev = k;
    prev_len = klen;
  }
  FUZZ_CHECK(pos == len, "nothing after the last entry");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_t *map, *wrapper;
  kms_pair *pairs = NULL;
  encctx_entry *fwd = NULL, *rev = NULL;
  size_t n = 0, len1 = 0, len2 = 0;
  uint8_t *c1 = NULL, *c2 = NULL;
  kerr err;
  kerr_code rc;

  map = json_loadb((const char *)data, size, API_JSON_DECODE_FLAGS, NULL);
  if (!map) return 0;
  wrapper = json_object();
  if (!wrapper || json_object_set(wrapper, "EncryptionContext", map)) abort();

  kerr_clear(&err);
  rc = api_json_get_pairs(wrapper, "EncryptionContext", &pairs, &n, &err);
  if (rc != KERR_OK) {
    FUZZ_CHECK(rc == KERR_VALIDATION, "a bad map is a validation error");
    FUZZ_CHECK(pairs == NULL && n == 0, "nothing returned after a failure");
    FUZZ_CHECK(fuzz_msg_ok(err.msg, sizeof err.msg), "the failure has a message");
    goto out;
  }
  FUZZ_CHECK(json_is_object(map), "only an object is accepted");
  FUZZ_CHECK(n == json_object_size(map), "one pair per entry");
  fwd = calloc(n + 1, sizeof *fwd);
  rev = calloc(n + 1, sizeof *rev);
  if (!fwd || !rev) abort();
  for (size_t i = 0; i < n; i++) {
    fwd[i] = (encctx_entry){pairs[i].key, pairs[i].value};
    rev[n - 1 - i] = fwd[i];
  }
  rc = encctx_canonical(fwd, n, &c1, &len1, &err);
  if (rc != KERR_OK) {
    FUZZ_CHECK(rc == KERR_VALIDATION && c1 == NULL, "a refused context returns nothing");
    goto out;
  }
  check_canonical(c1, len1, map);
  FUZZ_CHECK(encctx_canonical(rev, n, &c2, &len2, &err) == KERR_OK, "reversed order is accepted");
  FUZZ_CHECK(len1 == len2 && memcmp(c1, c2, len1) == 0, "the canonical form ignores entry order");
out:
  free(c1);
  free(c2);
  free(fwd);
  free(rev);
  free(pairs);
  json_decref(wrapper);
  json_decref(map);
  return 0;
}
