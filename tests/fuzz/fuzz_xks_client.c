/* fuzz_xks_client.c - libFuzzer target for the settings kmsd's XKS client
 * accepts (xks/xks_client.h, xks_client_new): the proxy endpoint and URI
 * path come from a CreateCustomKeyStore caller, the connect-to overrides
 * from an operator, and the client checks them with hand-written scanners.
 * This target checks those scanners against the model's own regular
 * expressions run by PCRE2.
 *
 * Input: "endpoint\nuri_path\nconnect_to" (the third line optional).  The
 * client is built with a valid region and credential, so its answer depends
 * on these three only.  Invariants: the client is accepted exactly when
 *   - the endpoint matches ^https://[a-zA-Z0-9.-]+(:[0-9]{1,5})?$ with a
 *     port of 1..65535 and is 10..128 characters (the model's
 *     XksProxyUriEndpoint pattern plus the port kmsd allows),
 *   - the path matches the model's XksProxyUriPathType pattern and is
 *     10..128 characters,
 *   - the connect-to (when given) is HOST:PORT:TO_HOST:TO_PORT as curl
 *     reads it, each HOST empty, of [A-Za-z0-9.-] or a bracketed IPv6
 *     address, each PORT empty or 1..65535;
 * a refusal is KERR_VALIDATION with a message and no client, and never
 * quotes the secret (unless the settings given carry its text); an accepted client reports the endpoint and path it
 * was given.  No connection is made (xks_client_new sends nothing). */
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "fuzz_common.h"
#include "xks/xks_client.h"

#define SECRET "c2VjcmV0LW9uZS1zZWNyZXQtb25lLXNlY3JldC1vbmUK"

static pcre2_code *endpoint_re, *path_re, *connect_to_re;

static pcre2_code *compile(const char *pattern) {
  int code;
  PCRE2_SIZE off;
  /* DOLLAR_ENDONLY: "$" must not match before a final newline. */
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_DOLLAR_ENDONLY,
                                 &code, &off, NULL);
  FUZZ_CHECK(re != NULL, "pattern compiles");
  return re;
}

/* Whether `s` matches `re`; the capture groups' values go to `groups`
 * (start, end pairs) when it does. */
static int matches(pcre2_code *re, const char *s, PCRE2_SIZE *groups, size_t ngroups) {
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
  int rc;
  FUZZ_CHECK(md != NULL, "match data");
  rc = pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL);
  if (rc > 0 && groups) {
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    for (size_t i = 0; i < 2 * ngroups; i++) groups[i] = ov[i];
  }
  pcre2_match_data_free(md);
  return rc > 0;
}

/* A port as text from s[a] to s[b]: empty is fine when `empty_ok`. */
static int port_ok(const char *s, PCRE2_SIZE a, PCRE2_SIZE b, int empty_ok) {
  long v = 0;
  if (a == PCRE2_UNSET || a == b) return empty_ok;
  for (PCRE2_SIZE i = a; i < b; i++) v = v * 10 + (s[i] - '0');
  return v >= 1 && v <= 65535;
}

/* Whether the input holds the secret's text anywhere. */
static int has_secret(const uint8_t *d, size_t n) {
  size_t k = strlen(SECRET);
  for (size_t i = 0; i + k <= n; i++)
    if (memcmp(d + i, SECRET, k) == 0) return 1;
  return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  endpoint_re = compile("^https://[a-zA-Z0-9.-]+(?::([0-9]{1,5}))?$");
  /* XksProxyUriPathType, as the model writes it. */
  path_re = compile("^(/[a-zA-Z0-9\\/_-]+/kms/xks/v\\d{1,2})$|^(/kms/xks/v\\d{1,2})$");
  connect_to_re = compile("^(?:\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]*):([0-9]{0,5}):"
                          "(?:\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]*):([0-9]{0,5})$");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *in, *path, *ct;
  const char *cts[1];
  xks_client_config cfg;
  xks_client *c = NULL;
  kerr err;
  PCRE2_SIZE g[6];
  size_t elen, plen;
  int want;

  if (size > 1024) return 0;
  in = fuzz_strndup(data, size);
  path = strchr(in, '\n');
  if (!path) {
    free(in);
    return 0;
  }
  *path++ = '\0';
  ct = strchr(path, '\n');
  if (ct) *ct++ = '\0';

  memset(&cfg, 0, sizeof cfg);
  cfg.endpoint = in;
  cfg.uri_path = path;
  cfg.region = "us-east-1";
  cfg.access_key_id = "ABCDEFGHIJKLMNOPQRST";
  cfg.secret_access_key = SECRET;
  cts[0] = ct;
  cfg.connect_to = cts;
  cfg.connect_to_count = ct ? 1 : 0;

  elen = strlen(in);
  plen = strlen(path);
  want = elen >= 10 && elen <= XKS_CLIENT_ENDPOINT_MAX && matches(endpoint_re, in, g, 2) &&
         port_ok(in, g[2], g[3], 1) && plen >= 10 && plen <= 128 &&
         matches(path_re, path, NULL, 0);
  if (want && ct)
    want = strlen(ct) <= XKS_CLIENT_CONNECT_TO_LEN_MAX && matches(connect_to_re, ct, g, 3) &&
           port_ok(ct, g[2], g[3], 1) && port_ok(ct, g[4], g[5], 1);

  if (xks_client_new(&cfg, &c, &err) == KERR_OK) {
    FUZZ_CHECK(want, "accepted only what the patterns accept");
    FUZZ_CHECK(c != NULL, "a client");
    FUZZ_CHECK(strcmp(xks_client_endpoint(c), in) == 0, "endpoint kept");
    FUZZ_CHECK(strcmp(xks_client_uri_path(c), path) == 0, "path kept");
    xks_client_free(c);
  } else {
    FUZZ_CHECK(!want, "refused only what the patterns refuse");
    FUZZ_CHECK(c == NULL, "no client after a refusal");
    FUZZ_CHECK(err.code == KERR_VALIDATION, "a refusal is a validation error");
    FUZZ_CHECK(fuzz_msg_ok(err.msg, sizeof err.msg), "refusal has a message");
    /* Settings are quoted in messages; the secret never is (unless the
     * input itself carries its text, which the fuzzer does find). */
    FUZZ_CHECK(strstr(err.msg, SECRET) == NULL || has_secret(data, size),
               "the secret is never quoted");
  }
  free(in);
  return 0;
}
