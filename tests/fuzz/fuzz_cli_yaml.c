/* fuzz_cli_yaml.c - libFuzzer target for the YAML reader of the `kms`
 * command line (cli/cli_yaml.h): `--cli-input-yaml` hands it a whole file of
 * the user's, unchecked.
 *
 * The input is the YAML text (any bytes, NULs included: the reader takes a
 * length).  Invariants:
 *   - accepted: a JSON value nested no deeper than CLI_YAML_MAX_DEPTH, with
 *     no NaN or infinity; dumped and loaded again by jansson it is equal
 *     (every string is UTF-8, every number a JSON number); loading the same
 *     text again gives an equal value (no state kept between calls);
 *   - refused: a validation error (or out of memory) with a message
 *     starting "YAML: ", and nothing returned;
 *   - nothing expands: aliases are refused, so an accepted value has at
 *     most a couple of nodes per input byte (a lone `?` is already an
 *     object, a key and a null; checked as nodes <= 2 * length + 2). */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "cli/cli_yaml.h"
#include "fuzz_common.h"

static size_t check_value(const json_t *v, unsigned depth) {
  size_t nodes = 1;
  FUZZ_CHECK(depth <= CLI_YAML_MAX_DEPTH + 1, "nesting stays within the bound");
  if (json_is_real(v)) FUZZ_CHECK(isfinite(json_real_value(v)), "no NaN or infinity");
  if (json_is_array(v)) {
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) nodes += check_value(item, depth + 1);
  } else if (json_is_object(v)) {
    const char *key;
    json_t *item;
    json_object_foreach((json_t *)v, key, item) nodes += 1 + check_value(item, depth + 1);
  }
  return nodes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_t *v = NULL, *again = NULL, *reloaded;
  kerr err;
  kerr_code rc = cli_yaml_load((const char *)data, size, &v, &err);
  char *dump;
  if (rc != KERR_OK) {
    FUZZ_CHECK(v == NULL, "a refusal returns nothing");
    FUZZ_CHECK(rc == KERR_VALIDATION || rc == KERR_INTERNAL, "a refusal is Validation or Internal");
    FUZZ_CHECK(rc != KERR_VALIDATION || strncmp(err.msg, "YAML: ", 6) == 0, "a refusal says it is YAML's");
    return 0;
  }
  FUZZ_CHECK(v != NULL, "an acceptance returns a value");
  FUZZ_CHECK(check_value(v, 0) <= 2 * size + 2, "nodes grow linearly with the input: nothing expands");
  dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  FUZZ_CHECK(dump != NULL, "the value serializes");
  reloaded = json_loads(dump, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
  FUZZ_CHECK(reloaded != NULL && json_equal(reloaded, v), "the value survives a JSON round trip");
  FUZZ_CHECK(cli_yaml_load((const char *)data, size, &again, &err) == KERR_OK && json_equal(again, v),
             "a second load gives the same value");
  free(dump);
  json_decref(reloaded);
  json_decref(again);
  json_decref(v);
  return 0;
}
