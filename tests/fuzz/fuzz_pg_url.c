/* fuzz_pg_url.c - libFuzzer target for naming a PostgreSQL store in logs
 * (store/store_pg.h): kmsd --store takes the URL from its command line and
 * shows it, password hidden, in its start-up line and its flag errors.
 *
 * The first input byte picks the output size (1..256), the rest is the URL
 * (bytes after a NUL are ignored).  Invariants:
 *   - store_pg_redact always ends its output with a NUL inside the buffer;
 *   - a string that is not a URI is never shown;
 *   - the password of the user information, which runs (as libpq reads it)
 *     to the last '@' before the first '/', shows as "***" (checked when
 *     the output was not cut);
 *   - the query shows as "?***" whatever it held (a password may hide
 *     under a percent-encoded name), checked when the output was not cut;
 *   - store_pg_is_url is true exactly for the two schemes. */
#include <string.h>

#include "fuzz_common.h"
#include "store/store_pg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t cap = 1 + data[0] % 256;
  char *url = fuzz_strndup(data + 1, size - 1);
  char *out = malloc(cap + 16);
  if (!url || !out) abort();
  memset(out, 'Z', cap + 16);

  store_pg_redact(url, out, cap);
  FUZZ_CHECK(memchr(out, '\0', cap) != NULL, "output NUL-terminated within its buffer");
  for (size_t i = cap; i < cap + 16; i++) FUZZ_CHECK(out[i] == 'Z', "nothing written past the buffer");

  /* The parts as libpq reads a URI: the authority runs to the first '/',
   * the user information to the authority's last '@'. */
  const char *scheme_end =
      url + strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
  if (scheme_end == url || strncmp(scheme_end, "://", 3) != 0) scheme_end = NULL;
  const char *at = NULL;
  for (const char *c = scheme_end ? scheme_end + 3 : ""; *c && *c != '/'; c++)
    if (*c == '@') at = c;
  const char *colon = at ? memchr(scheme_end + 3, ':', (size_t)(at - scheme_end - 3)) : NULL;
  bool whole = strlen(out) + 1 < cap; /* not cut by the buffer */
  if (!scheme_end) FUZZ_CHECK(strncmp(out, "(a connection string)", strlen(out)) == 0,
                              "a string that is not a URI is never shown");
  if (colon && whole) FUZZ_CHECK(strstr(out, ":***@") != NULL, "userinfo password hidden");
  /* The query (its first '?' after the user information) shows as "?***"
   * at the end of the output, whatever it held. */
  const char *in_q = scheme_end ? strchr(at ? at + 1 : scheme_end + 3, '?') : NULL;
  if (whole && in_q && in_q[1]) {
    size_t n = strlen(out);
    FUZZ_CHECK(n >= 4 && strcmp(out + n - 4, "?***") == 0, "query values hidden");
    /* and nothing after the query's start: the output is no longer than
     * the text before it (with "***" for a password) plus "?***". */
    FUZZ_CHECK(n <= (size_t)(in_q - url) + 3 + 4, "nothing of the query shown");
  }

  bool is = store_pg_is_url(url);
  FUZZ_CHECK(is == (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0),
             "store_pg_is_url matches the two schemes");
  free(url);
  free(out);
  return 0;
}
