/* fuzz_xks_flatjson.c - libFuzzer target for the flat JSON reader in front
 * of jansson (xks/xks_flatjson.h), differential against jansson itself.
 *
 * The whole input is a body.  Whenever the reader builds a tree, jansson
 * (json_loadb with JSON_REJECT_DUPLICATES, what the XKS parsers use) must
 * accept the same bytes and build an equal tree: the reader may only ever
 * take the fast road to jansson's own answer, never refuse a body jansson
 * accepts with another result nor accept one it refuses.  When the reader
 * gives up, nothing is checked: jansson then parses the body itself.  The
 * tree is an object nested at most XKS_FLATJSON_DEPTH deep whose leaves are
 * strings. */
#include <string.h>

#include "fuzz_common.h"
#include "xks/xks_flatjson.h"

#include <jansson.h>

/* Objects at most `left` deep, every other value a string. */
static int flat_shape(const json_t *v, int left) {
  const char *key;
  json_t *member;
  if (json_is_string(v)) return 1;
  if (!json_is_object(v) || left == 0) return 0;
  json_object_foreach((json_t *)v, key, member) {
    if (!flat_shape(member, left - 1)) return 0;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_t *fast = xks_flatjson_load((const char *)data, size);
  json_error_t jerr;
  json_t *ref;
  if (!fast) return 0;
  ref = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
  FUZZ_CHECK(ref != NULL, "jansson accepts every body the flat reader reads");
  FUZZ_CHECK(json_equal(fast, ref), "the flat reader builds jansson's tree");
  FUZZ_CHECK(json_object_size(fast) == json_object_size(ref), "same members");
  FUZZ_CHECK(json_is_object(fast) && flat_shape(fast, XKS_FLATJSON_DEPTH), "the flat shape");
  json_decref(ref);
  json_decref(fast);
  return 0;
}
