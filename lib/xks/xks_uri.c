/* xks_uri.c - XKS error names and statuses, and the routing of a request
 * path to an XKS operation (rules in xks_msg.h and docs/xks.md).  Kept apart
 * from the JSON code because the router is a pure function the proxy calls
 * before it reads a body. */
#include <string.h>

#include "xks/xks_msg.h"

static const struct {
  const char *name;
  int status;
} error_table[XKS_ERR_COUNT_] = {
    [XKS_ERR_NONE] = {NULL, 200},
    [XKS_ERR_VALIDATION] = {"ValidationException", 400},
    [XKS_ERR_INVALID_STATE] = {"InvalidStateException", 400},
    [XKS_ERR_INVALID_CIPHERTEXT] = {"InvalidCiphertextException", 400},
    [XKS_ERR_INVALID_KEY_USAGE] = {"InvalidKeyUsageException", 400},
    [XKS_ERR_AUTHENTICATION_FAILED] = {"AuthenticationFailedException", 401},
    [XKS_ERR_ACCESS_DENIED] = {"AccessDeniedException", 403},
    [XKS_ERR_KEY_NOT_FOUND] = {"KeyNotFoundException", 404},
    [XKS_ERR_INVALID_URI_PATH] = {"InvalidUriPathException", 404},
    [XKS_ERR_THROTTLING] = {"ThrottlingException", 429},
    [XKS_ERR_UNSUPPORTED_OPERATION] = {"UnsupportedOperationException", 501},
    [XKS_ERR_DEPENDENCY_TIMEOUT] = {"DependencyTimeoutException", 503},
    [XKS_ERR_INTERNAL] = {"InternalException", 500},
};

const char *xks_error_name(xks_error e) {
  if ((int)e <= 0 || e >= XKS_ERR_COUNT_) return NULL;
  return error_table[e].name;
}

int xks_error_status(xks_error e) {
  if ((int)e <= 0 || e >= XKS_ERR_COUNT_) return 500;
  return error_table[e].status;
}

xks_error xks_error_from_name(const char *name) {
  if (!name) return XKS_ERR_NONE;
  for (int i = 1; i < XKS_ERR_COUNT_; i++)
    if (strcmp(error_table[i].name, name) == 0) return (xks_error)i;
  return XKS_ERR_NONE;
}

xks_error xks_error_from_kerr(kerr_code code) {
  switch (code) {
  case KERR_OK: return XKS_ERR_NONE;
  case KERR_VALIDATION: return XKS_ERR_VALIDATION;
  case KERR_INVALID_CIPHERTEXT: return XKS_ERR_INVALID_CIPHERTEXT;
  case KERR_INVALID_KEY_USAGE: return XKS_ERR_INVALID_KEY_USAGE;
  case KERR_INVALID_STATE: return XKS_ERR_INVALID_STATE;
  case KERR_NOT_FOUND: return XKS_ERR_KEY_NOT_FOUND;
  case KERR_ACCESS_DENIED: return XKS_ERR_ACCESS_DENIED;
  case KERR_THROTTLING: return XKS_ERR_THROTTLING;
  case KERR_UNSUPPORTED_OPERATION: return XKS_ERR_UNSUPPORTED_OPERATION;
  case KERR_DEPENDENCY_TIMEOUT: return XKS_ERR_DEPENDENCY_TIMEOUT;
  default: return XKS_ERR_INTERNAL;
  }
}

static int prefix_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' ||
         c == '-' || c == '_';
}

static int key_id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

#define PREFIX_SUFFIX "/kms/xks/v1"

kerr_code xks_uri_prefix_check(const char *prefix, kerr *err) {
  size_t n, sl = strlen(PREFIX_SUFFIX);

  if (!prefix) return kerr_set(err, KERR_VALIDATION, "The XKS proxy URI path is missing.");
  n = strlen(prefix);
  if (n > XKS_URI_PATH_MAX)
    return kerr_set(err, KERR_VALIDATION, "The XKS proxy URI path is longer than %d characters.",
                    XKS_URI_PATH_MAX);
  for (size_t i = 0; i < n; i++)
    if (!prefix_char(prefix[i]))
      return kerr_set(err, KERR_VALIDATION,
                      "The XKS proxy URI path may contain only a-z A-Z 0-9 / - _ characters.");
  if (n < sl || prefix[0] != '/' || memcmp(prefix + n - sl, PREFIX_SUFFIX, sl) != 0)
    return kerr_set(err, KERR_VALIDATION,
                    "The XKS proxy URI path must start with '/' and end with " PREFIX_SUFFIX ".");
  return KERR_OK;
}

static void route_404(xks_route *out) {
  out->op = XKS_OP_NONE;
  out->status = 404;
  out->error = XKS_ERR_INVALID_URI_PATH;
  out->key_id[0] = '\0';
}

/* Whether `s` (n bytes) is exactly the NUL-terminated `lit`. */
static int eq(const char *s, size_t n, const char *lit) {
  return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

void xks_route_classify(const char *prefix, const char *method, const char *path,
                        size_t path_len, xks_route *out) {
  size_t plen, rest_len, id_len;
  const char *rest, *slash;
  xks_op op = XKS_OP_NONE;

  memset(out, 0, sizeof *out);
  route_404(out);
  if (!prefix || !path || xks_uri_prefix_check(prefix, NULL) != KERR_OK) return;
  if (path_len == 0 || path_len > XKS_URI_MAX) return;
  plen = strlen(prefix);
  if (path_len <= plen || memcmp(path, prefix, plen) != 0) return;
  rest = path + plen;
  rest_len = path_len - plen;
  if (eq(rest, rest_len, "/health")) {
    op = XKS_OP_HEALTH;
  } else {
    if (rest_len < 6 || memcmp(rest, "/keys/", 6) != 0) return;
    rest += 6;
    rest_len -= 6;
    slash = memchr(rest, '/', rest_len);
    if (!slash) return;
    id_len = (size_t)(slash - rest);
    if (id_len == 0 || id_len > XKS_KEY_ID_MAX) return;
    for (size_t i = 0; i < id_len; i++)
      if (!key_id_char(rest[i])) return;
    if (eq(slash, rest_len - id_len, "/metadata"))
      op = XKS_OP_METADATA;
    else if (eq(slash, rest_len - id_len, "/encrypt"))
      op = XKS_OP_ENCRYPT;
    else if (eq(slash, rest_len - id_len, "/decrypt"))
      op = XKS_OP_DECRYPT;
    else
      return;
    memcpy(out->key_id, rest, id_len);
    out->key_id[id_len] = '\0';
  }
  out->op = op;
  out->error = XKS_ERR_NONE;
  out->status = (method && strcmp(method, "POST") == 0) ? 200 : 405;
}
