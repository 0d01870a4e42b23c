/* fuzz_shorthand.c - libFuzzer target for the AWS CLI shorthand syntax
 * parser of the `kms` command line (cli/shorthand.h): whatever the user types
 * after `--tags` or `--grant-constraints` reaches it unchecked.
 *
 * The input is the value (cut at its first NUL, as a command-line argument
 * would be).  Invariants:
 *   - accepted: the result is an object whose members are strings, arrays
 *     and objects only, nested no deeper than CLI_SHORTHAND_MAX_DEPTH;
 *   - refused: a validation error of a known kind, at an offset within the
 *     input, with a message; nothing is returned;
 *   - the same input parsed again, now with a file-optional callback that
 *     hands every value back as a new string of the same text, gives an
 *     equal result or the same error: the callback's replacements are owned
 *     and placed correctly, and parsing keeps no state between calls. */
#include <jansson.h>
#include <string.h>

#include "cli/shorthand.h"
#include "fuzz_common.h"

static kerr_code same_text(void *ctx, const char *value, size_t len, json_t **replacement,
                           kerr *e) {
  size_t *calls = ctx;
  FUZZ_CHECK(strlen(value) == len, "a file-optional value is NUL-terminated at its length");
  (*calls)++;
  *replacement = json_stringn(value, len);
  return *replacement ? KERR_OK : kerr_set(e, KERR_INTERNAL, "out of memory");
}

static void check_value(const json_t *v, unsigned depth) {
  const char *key;
  json_t *member;
  size_t i;
  FUZZ_CHECK(depth <= CLI_SHORTHAND_MAX_DEPTH + 1, "nesting within the bound");
  if (json_is_string(v)) return;
  if (json_is_array(v)) {
    json_array_foreach(v, i, member) check_value(member, depth + 1);
    return;
  }
  FUZZ_CHECK(json_is_object(v), "only strings, arrays and objects");
  json_object_foreach((json_t *)v, key, member) check_value(member, depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = fuzz_strndup(data, size);
  size_t len = strlen(text), calls = 0;
  json_t *a = NULL, *b = NULL;
  cli_shorthand_error ea, eb;
  kerr_code ra, rb;

  ra = cli_shorthand_parse(text, NULL, NULL, &a, &ea);
  if (ra == KERR_OK) {
    FUZZ_CHECK(a && json_is_object(a), "the result is an object");
    FUZZ_CHECK(ea.message == NULL, "no message on success");
    check_value(a, 0);
  } else {
    FUZZ_CHECK(a == NULL, "nothing returned after a failure");
    FUZZ_CHECK(ra == KERR_VALIDATION || ra == KERR_INTERNAL, "a refusal is a validation error");
    FUZZ_CHECK(ea.kind != CLI_SHORTHAND_ERR_NONE && ea.kind != CLI_SHORTHAND_ERR_FILE,
               "the error has a kind");
    FUZZ_CHECK(ea.offset <= len, "the offset lies within the input");
    FUZZ_CHECK(fuzz_msg_ok(ea.status.msg, sizeof ea.status.msg), "the failure has a message");
  }

  rb = cli_shorthand_parse(text, same_text, &calls, &b, &eb);
  FUZZ_CHECK(rb == ra, "the callback changes nothing");
  if (ra == KERR_OK) {
    FUZZ_CHECK(json_equal(a, b), "values handed back in place give the same result");
  } else {
    FUZZ_CHECK(ea.kind == eb.kind && ea.offset == eb.offset, "the same error again");
    FUZZ_CHECK((ea.message == NULL) == (eb.message == NULL) &&
                   (ea.message == NULL || strcmp(ea.message, eb.message) == 0),
               "the same message again");
  }
  if (!memchr(text, '@', len)) FUZZ_CHECK(calls == 0, "no file-optional value without '@'");

  cli_shorthand_error_free(&ea);
  cli_shorthand_error_free(&eb);
  json_decref(a);
  json_decref(b);
  free(text);
  return 0;
}
