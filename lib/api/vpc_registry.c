/* vpc_registry.c - read kmsd's VPC endpoint service registry file and judge a
 * service against AWS's requirements for external key stores (see
 * vpc_registry.h).  It lives in the protocol layer because it is JSON; the
 * domain only ever sees the verdict and the fault bits. */
#include "api/vpc_registry.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api_validate.h"
#include "model/model.h"

#define PATH_TEXT_MAX 64          /* "services[255].allowed_principals[63]" fits */
#define DEFAULT_NAME "vpc-endpoint-services"

typedef struct ctx {
  const char *name;               /* file name for messages */
  kerr *err;
} ctx;

/* Fill err with "NAME: PATH: reason" (or "NAME: reason" without a path). */
static void fail_fill(ctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_fill(ctx *c, const char *path, const char *fmt, ...) {
  char reason[KERR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  if (path && *path)
    kerr_fill(c->err, KERR_VALIDATION, "%s: %s: %s", c->name, path, reason);
  else
    kerr_fill(c->err, KERR_VALIDATION, "%s: %s", c->name, reason);
}

/* fail_fill, yielding KERR_VALIDATION where it is used (as kerr_set does),
 * so static analysers see that a failure path returns non-zero. */
#define fail(c, path, ...) (fail_fill((c), (path), __VA_ARGS__), KERR_VALIDATION)
#define oom(c) kerr_set((c)->err, KERR_INTERNAL, "out of memory reading the VPC endpoint service registry")

/* ---- small checks -------------------------------------------------------- */

/* Does `v` match the KMS model shape `shape_name` (length and pattern)? */
static int matches_shape(const char *shape_name, const char *v) {
  const model_shape *shape = model_find_shape(&model_kms, shape_name);
  size_t n = strlen(v);
  if (!shape) return 0;
  if ((shape->has_min && (long long)n < shape->min) || (shape->has_max && (long long)n > shape->max))
    return 0;
  return api_validate_pattern_matches(shape, v, n) == 1;
}

static int printable(const char *s) {
  for (; *s; s++)
    if (*s <= 0x20 || *s > 0x7e) return 0;
  return 1;
}

/* A DNS host name: labels of 1..63 letters, digits and hyphens (not at
 * either end), dot-separated, 1..253 bytes, no trailing dot. */
static int dns_name(const char *s) {
  size_t label = 0, n = strlen(s);
  if (n == 0 || n > VPCR_DNS_NAME_MAX) return 0;
  for (size_t i = 0; i <= n; i++) {
    char ch = s[i];
    if (ch == '.' || ch == '\0') {
      if (label == 0 || s[i - 1] == '-') return 0;
      label = 0;
      continue;
    }
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '-'))
      return 0;
    if (label == 0 && ch == '-') return 0;
    if (++label > 63) return 0;
  }
  return 1;
}

/* An IPv6 address text: hex digits, colons and dots (an IPv4 tail), 2..45
 * bytes, at least two colons.  A shape check only; connecting decides. */
static int ipv6_text(const char *s, size_t n) {
  size_t colons = 0;
  if (n < 2 || n > 45) return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (ch == ':') colons++;
    else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') ||
               ch == '.'))
      return 0;
  }
  return colons >= 2;
}

/* "host:port" or "[v6]:port" into host/port. */
static int parse_forward(const char *v, char host[VPCR_DNS_NAME_MAX + 1], unsigned *port) {
  const char *colon, *p;
  unsigned long n = 0;
  size_t hlen;
  if (v[0] == '[') {
    const char *close = strchr(v, ']');
    if (!close || close[1] != ':') return 0;
    hlen = (size_t)(close - v - 1);
    if (!ipv6_text(v + 1, hlen)) return 0;
    memcpy(host, v + 1, hlen);
    host[hlen] = '\0';
    colon = close + 1;
  } else {
    colon = strrchr(v, ':');
    if (!colon) return 0;
    hlen = (size_t)(colon - v);
    if (hlen == 0 || hlen > VPCR_DNS_NAME_MAX) return 0;
    memcpy(host, v, hlen);
    host[hlen] = '\0';
    if (!dns_name(host)) return 0; /* also covers dotted IPv4 */
  }
  p = colon + 1;
  if (*p == '\0' || *p == '0' || strlen(p) > 5) return 0;
  for (; *p; p++) {
    if (*p < '0' || *p > '9') return 0;
    n = n * 10 + (unsigned long)(*p - '0');
  }
  if (n < 1 || n > 65535) return 0;
  *port = (unsigned)n;
  return 1;
}

/* The Region part of a service name that matched the model's pattern:
 * "<com|eu>.amazonaws.vpce.<region>.vpce-svc-...". */
static void region_of(const char *name, char out[VPCR_REGION_MAX + 1]) {
  const char *p = name;
  size_t n;
  for (int dots = 0; dots < 3 && p; dots++) {
    p = strchr(p, '.');
    if (p) p++;
  }
  out[0] = '\0';
  if (!p) return;
  n = strcspn(p, ".");
  if (n > VPCR_REGION_MAX) n = VPCR_REGION_MAX;
  memcpy(out, p, n);
  out[n] = '\0';
}

/* ---- typed members --------------------------------------------------------- */

static void path_key(char out[PATH_TEXT_MAX], const char *parent, const char *key) {
  if (snprintf(out, PATH_TEXT_MAX, "%s.%s", parent, key) >= PATH_TEXT_MAX) out[PATH_TEXT_MAX - 1] = '\0';
}

static void path_index(char out[PATH_TEXT_MAX], const char *parent, size_t i) {
  if (snprintf(out, PATH_TEXT_MAX, "%s[%zu]", parent, i) >= PATH_TEXT_MAX) out[PATH_TEXT_MAX - 1] = '\0';
}

/* A string of min..max bytes without NUL; absent: *out NULL (an error when
 * required). */
static kerr_code get_string(ctx *c, json_t *obj, const char *parent, const char *key, int required,
                            size_t min, size_t max, const char **out) {
  char path[PATH_TEXT_MAX];
  json_t *v = json_object_get(obj, key);
  size_t n;
  *out = NULL;
  path_key(path, parent, key);
  if (!v) return required ? fail(c, path, "is required") : KERR_OK;
  if (!json_is_string(v)) return fail(c, path, "must be a string");
  n = json_string_length(v);
  if (strlen(json_string_value(v)) != n) return fail(c, path, "must not contain NUL");
  if (n < min || n > max) return fail(c, path, "must be %zu to %zu characters", min, max);
  *out = json_string_value(v);
  return KERR_OK;
}

static kerr_code get_bool(ctx *c, json_t *obj, const char *parent, const char *key, int required,
                          int dflt, int *out) {
  char path[PATH_TEXT_MAX];
  json_t *v = json_object_get(obj, key);
  *out = dflt;
  path_key(path, parent, key);
  if (!v) return required ? fail(c, path, "is required") : KERR_OK;
  if (!json_is_boolean(v)) return fail(c, path, "must be true or false");
  *out = json_is_true(v);
  return KERR_OK;
}

/* One of `words` (count n); *out is its index, `dflt` when absent. */
static kerr_code get_word(ctx *c, json_t *obj, const char *parent, const char *key,
                          const char *const *words, int n, int dflt, int *out) {
  char path[PATH_TEXT_MAX], list[256] = "";
  const char *v;
  kerr_code rc = get_string(c, obj, parent, key, 0, 1, 64, &v);
  *out = dflt;
  if (rc != KERR_OK || !v) return rc;
  for (int i = 0; i < n; i++) {
    if (strcmp(v, words[i]) == 0) {
      *out = i;
      return KERR_OK;
    }
    if (i) strncat(list, ", ", sizeof list - strlen(list) - 1);
    strncat(list, words[i], sizeof list - strlen(list) - 1);
  }
  path_key(path, parent, key);
  return fail(c, path, "must be one of %s", list);
}

/* An array of 1..max distinct strings, each passing `ok` (or just printable)
 * and at most `len_max` bytes; *items is a new array of copies. */
static kerr_code get_list(ctx *c, json_t *obj, const char *parent, const char *key, size_t min,
                          size_t max, size_t len_max, int (*ok)(const char *, const void *),
                          const void *arg, const char *what, char ***items, size_t *count) {
  char path[PATH_TEXT_MAX], ipath[PATH_TEXT_MAX];
  json_t *v = json_object_get(obj, key), *item;
  size_t i, n;
  *items = NULL;
  *count = 0;
  path_key(path, parent, key);
  if (!v) return fail(c, path, "is required");
  if (!json_is_array(v)) return fail(c, path, "must be an array");
  n = json_array_size(v);
  if (n < min || n > max) return fail(c, path, "must hold %zu to %zu entries", min, max);
  if (n == 0) return KERR_OK;
  if (!(*items = calloc(n, sizeof **items))) return oom(c);
  for (i = 0; i < n; i++) {
    const char *s;
    size_t sl;
    item = json_array_get(v, i);
    path_index(ipath, path, i);
    if (!json_is_string(item)) return fail(c, ipath, "must be a string");
    s = json_string_value(item);
    sl = json_string_length(item);
    if (strlen(s) != sl || sl == 0 || sl > len_max || !printable(s) || (ok && !ok(s, arg)))
      return fail(c, ipath, "must be %s", what);
    for (size_t j = 0; j < i; j++)
      if (strcmp((*items)[j], s) == 0) return fail(c, ipath, "repeats an earlier entry");
    if (!((*items)[i] = strdup(s))) return oom(c);
    *count = i + 1;
  }
  return KERR_OK;
}

/* An Availability Zone of the service's Region: the Region's name followed
 * by lower-case letters, digits and hyphens ("us-east-1a", "us-east-1-bos-1a"). */
static int zone_ok(const char *z, const void *arg) {
  const char *region = arg;
  size_t rl = strlen(region);
  if (strncmp(z, region, rl) != 0 || z[rl] == '\0') return 0;
  for (const char *p = z + rl; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) return 0;
  return 1;
}

/* ---- one service ------------------------------------------------------------- */

static const char *const service_keys[] = {
    "service_name", "owner", "region", "service_type", "state", "private_dns_name",
    "private_dns_state", "acceptance_required", "allowed_principals", "availability_zones",
    "forward_to", "description",
};
static const char *const type_words[] = {"Interface", "GatewayLoadBalancer"};
static const char *const state_words[] = {"Available", "Pending", "Deleting", "Deleted", "Failed"};
static const char *const dns_words[] = {"pendingVerification", "verified", "failed"};

static void service_free(vpc_service *s) {
  for (size_t i = 0; i < s->allowed_principal_count; i++) free(s->allowed_principals[i]);
  free(s->allowed_principals);
  for (size_t i = 0; i < s->zone_count; i++) free(s->zones[i]);
  free(s->zones);
  memset(s, 0, sizeof *s);
}

static kerr_code build_service(ctx *c, json_t *obj, const char *path, vpc_service *s) {
  char kpath[PATH_TEXT_MAX];
  const char *key, *v;
  json_t *child;
  int word, flag;
  kerr_code rc;

  if (!json_is_object(obj)) return fail(c, path, "must be an object");
  json_object_foreach(obj, key, child) {
    size_t i;
    for (i = 0; i < sizeof service_keys / sizeof service_keys[0]; i++)
      if (strcmp(key, service_keys[i]) == 0) break;
    if (i == sizeof service_keys / sizeof service_keys[0]) {
      char shown[40];
      size_t n;
      for (n = 0; n < 32 && key[n]; n++) shown[n] = (key[n] > 0x20 && key[n] < 0x7f) ? key[n] : '?';
      shown[n] = '\0';
      return fail(c, path, "unknown key \"%s%s\"", shown, key[n] ? "..." : "");
    }
  }

  if ((rc = get_string(c, obj, path, "service_name", 1, 1, 1024, &v)) != KERR_OK) return rc;
  path_key(kpath, path, "service_name");
  if (!matches_shape("XksProxyVpcEndpointServiceNameType", v))
    return fail(c, kpath, "must be a VPC endpoint service name "
                          "(com.amazonaws.vpce.<region>.vpce-svc-<id>, %d to %d characters)",
                VPCR_NAME_MIN, VPCR_NAME_MAX);
  snprintf(s->name, sizeof s->name, "%s", v);
  region_of(s->name, s->region);

  if ((rc = get_string(c, obj, path, "owner", 1, 1, 64, &v)) != KERR_OK) return rc;
  if (!matches_shape("AccountIdType", v)) {
    path_key(kpath, path, "owner");
    return fail(c, kpath, "must be a 12-digit account id");
  }
  snprintf(s->owner, sizeof s->owner, "%s", v);

  if ((rc = get_string(c, obj, path, "region", 0, 1, VPCR_REGION_MAX, &v)) != KERR_OK) return rc;
  if (v && strcmp(v, s->region) != 0) {
    path_key(kpath, path, "region");
    return fail(c, kpath, "must be the Region of service_name (%s)", s->region);
  }

  if ((rc = get_word(c, obj, path, "service_type", type_words, 2, 0, &word)) != KERR_OK) return rc;
  s->type = (vpcr_service_type)word;
  if ((rc = get_word(c, obj, path, "state", state_words, 5, 0, &word)) != KERR_OK) return rc;
  s->state = (vpcr_state)word;

  if ((rc = get_string(c, obj, path, "private_dns_name", 0, 1, VPCR_DNS_NAME_MAX, &v)) != KERR_OK)
    return rc;
  if (v) {
    if (!dns_name(v) || !strchr(v, '.')) {
      path_key(kpath, path, "private_dns_name");
      return fail(c, kpath, "must be a fully qualified DNS name");
    }
    snprintf(s->private_dns_name, sizeof s->private_dns_name, "%s", v);
  }
  if ((rc = get_word(c, obj, path, "private_dns_state", dns_words, 3, 0, &word)) != KERR_OK) return rc;
  s->private_dns_state = (vpcr_dns_state)word;
  if (!s->private_dns_name[0] && json_object_get(obj, "private_dns_state")) {
    path_key(kpath, path, "private_dns_state");
    return fail(c, kpath, "needs private_dns_name");
  }

  if ((rc = get_bool(c, obj, path, "acceptance_required", 1, 1, &flag)) != KERR_OK) return rc;
  s->acceptance_required = flag;

  if ((rc = get_list(c, obj, path, "allowed_principals", 0, VPCR_PRINCIPALS_MAX, VPCR_PRINCIPAL_MAX,
                     NULL, NULL, "a principal (printable, no spaces, at most 2048 characters)",
                     &s->allowed_principals, &s->allowed_principal_count)) != KERR_OK)
    return rc;
  if ((rc = get_list(c, obj, path, "availability_zones", 1, VPCR_ZONES_MAX, VPCR_ZONE_MAX, zone_ok,
                     s->region, "an Availability Zone of the service's Region",
                     &s->zones, &s->zone_count)) != KERR_OK)
    return rc;

  if ((rc = get_string(c, obj, path, "forward_to", 1, 1, VPCR_DNS_NAME_MAX + 8, &v)) != KERR_OK)
    return rc;
  if (!parse_forward(v, s->forward_host, &s->forward_port)) {
    path_key(kpath, path, "forward_to");
    return fail(c, kpath, "must be HOST:PORT (a DNS name, an IPv4 address or [IPv6]; port 1 to 65535)");
  }

  if ((rc = get_string(c, obj, path, "description", 0, 0, 1024, &v)) != KERR_OK) return rc;
  return KERR_OK;
}

/* ---- the file -------------------------------------------------------------------- */

void vpc_registry_free(vpc_registry *r) {
  if (!r) return;
  for (size_t i = 0; i < r->count; i++) service_free(&r->services[i]);
  free(r->services);
  free(r);
}

static kerr_code build(ctx *c, json_t *root, vpc_registry *r) {
  json_t *list, *item;
  const char *key;
  size_t i, n;
  kerr_code rc;

  if (!json_is_object(root)) return fail(c, NULL, "must be a JSON object {\"services\": [...]}");
  json_object_foreach(root, key, item) {
    if (strcmp(key, "services") != 0 && strcmp(key, "description") != 0)
      return fail(c, NULL, "unknown top-level key (only \"services\" and \"description\")");
  }
  item = json_object_get(root, "description");
  if (item && !json_is_string(item)) return fail(c, "description", "must be a string");
  list = json_object_get(root, "services");
  if (!list) return fail(c, "services", "is required");
  if (!json_is_array(list)) return fail(c, "services", "must be an array");
  n = json_array_size(list);
  if (n > VPCR_SERVICES_MAX) return fail(c, "services", "must hold at most %d entries", VPCR_SERVICES_MAX);
  if (n == 0) return KERR_OK;
  if (!(r->services = calloc(n, sizeof *r->services))) return oom(c);
  for (i = 0; i < n; i++) {
    char path[PATH_TEXT_MAX];
    item = json_array_get(list, i);
    path_index(path, "services", i);
    r->count = i + 1; /* so a failure frees what this entry holds */
    if ((rc = build_service(c, item, path, &r->services[i])) != KERR_OK) return rc;
    for (size_t j = 0; j < i; j++)
      if (strcmp(r->services[j].name, r->services[i].name) == 0)
        return fail(c, path, "service_name repeats services[%zu]", j);
  }
  return KERR_OK;
}

kerr_code vpc_registry_parse(const char *text, size_t len, const char *name, vpc_registry **out,
                             kerr *err) {
  ctx c = {.name = name ? name : DEFAULT_NAME, .err = err};
  json_error_t jerr;
  json_t *root = NULL;
  vpc_registry *r = NULL;
  kerr_code rc;

  *out = NULL;
  if (len > VPCR_FILE_MAX) return fail(&c, NULL, "larger than %zu bytes", VPCR_FILE_MAX);
  root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    if (json_error_code(&jerr) == json_error_duplicate_key)
      return fail(&c, NULL, "line %d, column %d: duplicate key", jerr.line, jerr.column);
    return fail(&c, NULL, "line %d, column %d: invalid JSON", jerr.line, jerr.column);
  }
  if (!(r = calloc(1, sizeof *r))) {
    rc = oom(&c);
    goto out;
  }
  rc = build(&c, root, r);
  if (rc == KERR_OK) {
    *out = r;
    r = NULL;
  }
out:
  vpc_registry_free(r);
  json_decref(root);
  return rc;
}

kerr_code vpc_registry_load(const char *path, vpc_registry **out, kerr *err) {
  struct stat st;
  char *buf = NULL;
  size_t len = 0;
  kerr_code rc;
  int fd;

  *out = NULL;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kerr_set(err, KERR_VALIDATION, "%s: %s", path, strerror(errno));
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return kerr_set(err, KERR_VALIDATION, "%s: not a regular file", path);
  }
  if (st.st_size > (off_t)VPCR_FILE_MAX) {
    close(fd);
    return kerr_set(err, KERR_VALIDATION, "%s: larger than %zu bytes", path, VPCR_FILE_MAX);
  }
  if (!(buf = malloc(VPCR_FILE_MAX + 1))) {
    close(fd);
    return kerr_set(err, KERR_INTERNAL, "out of memory reading the VPC endpoint service registry");
  }
  /* Read to EOF (the file may grow after fstat), never past the cap. */
  while (len <= VPCR_FILE_MAX) {
    ssize_t r = read(fd, buf + len, VPCR_FILE_MAX + 1 - len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      rc = kerr_set(err, KERR_VALIDATION, "%s: %s", path, strerror(errno));
      goto out;
    }
    if (r == 0) break;
    len += (size_t)r;
  }
  rc = vpc_registry_parse(buf, len, path, out, err);
out:
  close(fd);
  free(buf);
  return rc;
}

const vpc_service *vpc_registry_find(const vpc_registry *r, const char *name) {
  if (!r || !name) return NULL;
  for (size_t i = 0; i < r->count; i++)
    if (strcmp(r->services[i].name, name) == 0) return &r->services[i];
  return NULL;
}

/* ---- requirements ------------------------------------------------------------------- */

static int kms_allowed(const vpc_service *s, const char *region) {
  char kms[VPCR_REGION_MAX + 32];
  snprintf(kms, sizeof kms, "cks.kms.%s.amazonaws.com", region);
  for (size_t i = 0; i < s->allowed_principal_count; i++)
    if (strcmp(s->allowed_principals[i], "*") == 0 || strcmp(s->allowed_principals[i], kms) == 0)
      return 1;
  return 0;
}

unsigned vpc_service_check(const vpc_service *s, const vpc_expectation *want) {
  unsigned f = 0;
  if (!s) return VPCR_FAULT_UNKNOWN;
  if (want && want->region && strcmp(s->region, want->region) != 0) f |= VPCR_FAULT_OTHER_REGION;
  if (want && want->owner && strcmp(s->owner, want->owner) != 0) f |= VPCR_FAULT_OTHER_OWNER;
  if (!kms_allowed(s, want && want->region ? want->region : s->region)) f |= VPCR_FAULT_KMS_NOT_ALLOWED;
  if (s->state == VPCR_STATE_DELETING || s->state == VPCR_STATE_DELETED) f |= VPCR_FAULT_DELETED;
  if (s->state == VPCR_STATE_PENDING || s->state == VPCR_STATE_FAILED) f |= VPCR_FAULT_NOT_AVAILABLE;
  if (s->type != VPCR_TYPE_INTERFACE) f |= VPCR_FAULT_NOT_INTERFACE;
  if (s->zone_count < 2) f |= VPCR_FAULT_ONE_ZONE;
  if (s->acceptance_required) f |= VPCR_FAULT_ACCEPTANCE_REQUIRED;
  if (!s->private_dns_name[0]) f |= VPCR_FAULT_NO_PRIVATE_DNS;
  else if (s->private_dns_state != VPCR_DNS_VERIFIED) f |= VPCR_FAULT_DNS_NOT_VERIFIED;
  if (want && want->endpoint_host && s->private_dns_name[0] &&
      strcasecmp(want->endpoint_host, s->private_dns_name) != 0)
    f |= VPCR_FAULT_ENDPOINT_MISMATCH;
  return f;
}

vpcr_verdict vpc_registry_judge(const vpc_registry *r, const char *name,
                                const vpc_expectation *want, unsigned *faults,
                                const vpc_service **svc) {
  const vpc_service *s = vpc_registry_find(r, name);
  unsigned f = vpc_service_check(s, want);
  if (faults) *faults = f;
  if (svc) *svc = s;
  if (f & VPCR_FAULTS_NOT_FOUND) return VPCR_NOT_FOUND;
  if (f & VPCR_FAULTS_INVALID) return VPCR_INVALID_CONFIGURATION;
  return VPCR_OK;
}

const char *vpc_fault_text(unsigned fault) {
  switch (fault) {
  case VPCR_FAULT_UNKNOWN: return "no VPC endpoint service of that name exists";
  case VPCR_FAULT_OTHER_REGION: return "the VPC endpoint service is in another Region";
  case VPCR_FAULT_OTHER_OWNER: return "the VPC endpoint service is owned by another account";
  case VPCR_FAULT_KMS_NOT_ALLOWED:
    return "its allowed principals do not include the KMS service principal cks.kms.<region>.amazonaws.com";
  case VPCR_FAULT_DELETED: return "the VPC endpoint service is deleted";
  case VPCR_FAULT_NOT_AVAILABLE: return "the VPC endpoint service is not Available";
  case VPCR_FAULT_NOT_INTERFACE: return "it is not an endpoint service for interface endpoints";
  case VPCR_FAULT_ONE_ZONE: return "its network load balancer is not in at least two Availability Zones";
  case VPCR_FAULT_ACCEPTANCE_REQUIRED: return "it requires acceptance of connection requests";
  case VPCR_FAULT_NO_PRIVATE_DNS: return "it has no private DNS name";
  case VPCR_FAULT_DNS_NOT_VERIFIED: return "the domain of its private DNS name is not verified";
  case VPCR_FAULT_ENDPOINT_MISMATCH:
    return "the XksProxyUriEndpoint is not https:// followed by its private DNS name";
  default: return NULL;
  }
}

char *vpc_faults_describe(unsigned faults, char *buf, size_t cap) {
  size_t used = 0;
  if (!buf || cap == 0) return buf;
  buf[0] = '\0';
  for (unsigned bit = 1; bit && bit <= VPCR_FAULT_ENDPOINT_MISMATCH; bit <<= 1) {
    const char *t = (faults & bit) ? vpc_fault_text(bit) : NULL;
    int n;
    if (!t) continue;
    n = snprintf(buf + used, cap - used, "%s%s", used ? "; " : "", t);
    if (n < 0 || (size_t)n >= cap - used) break; /* cut; snprintf left it terminated */
    used += (size_t)n;
  }
  return buf;
}
