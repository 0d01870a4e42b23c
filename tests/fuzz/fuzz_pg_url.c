/* fuzz_pg_url.c - libFuzzer target for naming a PostgreSQL store in logs
 * (store/store_pg.h): kmsd --store takes the URL from its command line and
 * shows it, password hidden, in its start-up line and its flag errors.
 *
 * The first input byte picks the output size (1..256), the rest is the URL
 * (bytes after a NUL are ignored).  Invariants:
 *   - store_pg_redact always ends its output with a NUL inside the buffer;
 *   - the userinfo password of a "scheme://user:password@" URL shows as
 *     "***" (checked when the output was not cut);
 *   - every "password=" parameter of the output's query has the value
 *     "***", or nothing when the buffer cut it;
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

  const char *scheme_end =
      url + strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
  if (scheme_end == url || strncmp(scheme_end, "://", 3) != 0) scheme_end = NULL;
  const char *at = NULL; /* the authority's last '@' */
  for (const char *c = scheme_end ? scheme_end + 3 : ""; *c && !strchr("/?#", *c); c++)
    if (*c == '@') at = c;
  const char *colon = at ? memchr(scheme_end + 3, ':', (size_t)(at - scheme_end - 3)) : NULL;
  bool whole = strlen(out) + 1 < cap; /* not cut by the buffer */
  if (colon && whole) FUZZ_CHECK(strstr(out, ":***@") != NULL, "userinfo password hidden");
  /* Every password= parameter of the query shows *** (or ends the cut output). */
  for (const char *p = strchr(out, '?'); p && *p; p = strchr(p, '&')) {
    p++;
    if (strncmp(p, "password=", 9) != 0) continue;
    const char *v = p + 9;
    FUZZ_CHECK(strncmp(v, "***", 3) == 0 ? (v[3] == '\0' || v[3] == '&') : *v == '\0',
               "a query password shown as ***");
  }

  bool is = store_pg_is_url(url);
  FUZZ_CHECK(is == (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0),
             "store_pg_is_url matches the two schemes");
  free(url);
  free(out);
  return 0;
}
