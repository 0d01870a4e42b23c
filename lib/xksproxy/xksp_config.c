/* xksp_config.c - xks-proxy's configuration: a YAML or JSON file, or the
 * command-line flags, checked into an xksp_config (rules in xksp_config.h
 * and docs/xks-proxy.md, "Configuration file").
 *
 * Both file formats first become one jansson tree, so one validator types
 * and bounds every value whatever its source: JSON as jansson reads it,
 * YAML through libyaml's event stream with every scalar kept as a string.
 * YAML's typing of unquoted scalars ("8" as a number, "yes" as a boolean)
 * is left to the validator, which knows what each key must hold: a quoted
 * YAML scalar is always a string, an unquoted one is a number or a boolean
 * only where the schema asks for one, and then strictly ("8x", "08", "1.0"
 * and "-1" are not integers).  The flags become the same kind of tree, so
 * they are checked by the same code; only the names in messages differ.
 *
 * Anchors, aliases, tags and multiple documents are refused: a
 * configuration needs none of them, and aliases are how a small YAML file
 * expands into a huge tree.  The text, the nesting depth and every string
 * are bounded before anything is built from them.
 *
 * Secrets (PINs, SigV4 secret keys) end in secure_alloc'd strings.  The
 * copies this file makes on the way (the text, the tree's strings, libyaml's
 * reading buffers) are wiped before they are freed; messages never quote a
 * value that could be one. */
#include "xksproxy/xksp_config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "core/log.h"
#include "core/secmem.h"
#include "http/http_server.h"
#include "pkcs11/p11.h"

#define CFG_DEPTH_MAX 16           /* nesting of mappings and lists */
#define CFG_STRING_MAX 8192        /* any scalar or key, in bytes */
#define CFG_SECRET_FILE_MAX 4096   /* pin_file, secret_access_key_file */
#define CFG_PATH_TEXT_MAX 160      /* "key_stores[63].authorization[255].external_key_ids[63]" */
#define CFG_KEY_SHOWN_MAX 64       /* how much of an unknown key a message shows */
#define CFG_PATTERN_MAX XKS_META_STR_MAX
#define CFG_SID_MAX 64
#define CFG_PRIORITY_MAX 1024
#define CFG_SUBJECT_MAX 253        /* a DNS name */
#define CFG_THREADS_MAX 1024
#define CFG_CONNECTIONS_MAX 1000000
#define CFG_IDLE_TIMEOUT_MAX 86400
#define CFG_RPS_MAX 1e6
#define CFG_BURST_MAX 1e9
#define CFG_HEALTH_INTERVAL_MAX 59
#define CFG_DEGRADED_MS_MAX 60000

/* ---- context and messages ------------------------------------------------ */

typedef struct cfg_ctx {
  const char *name;        /* the file, in messages; NULL for flags */
  char dir[XKSP_PATH_MAX]; /* relative paths are resolved against it; "" keeps them */
  int yaml;                /* tree strings are YAML scalars (see is_quoted) */
  int flags;               /* messages name flags instead of key paths */
  json_t **quoted;         /* YAML scalars that were quoted, sorted by address */
  size_t quoted_count, quoted_cap;
  kerr *err;
} cfg_ctx;

/* The flag that sets a key path, for messages about flags.  Entries are
 * prefixes of paths; the first match wins, so longer ones come first. */
static const struct {
  const char *path, *flag;
} flag_names[] = {
    {"key_stores[0].credentials[0].access_key_id", "--access-key-id"},
    {"key_stores[0].credentials[0].secret_access_key", "--secret-access-key"},
    {"key_stores[0].credentials[1].access_key_id", "--access-key-id-2"},
    {"key_stores[0].credentials[1].secret_access_key", "--secret-access-key-2"},
    {"key_stores[0].credentials", "--access-key-id"},
    {"key_stores[0].tokens[0].label", "--token-label"},
    {"key_stores[0].tokens[0].pin_file", "--pin-file"},
    {"key_stores[0].tokens[0].pin", "--pin"},
    {"key_stores[0].tokens", "--token-label"},
    {"key_stores[0].uri_prefix", "--uri-prefix"},
    {"key_stores[0].name", "--uri-prefix"},
    {"key_stores[0].region", "--region"},
    {"key_stores[0].pkcs11_module", "--pkcs11-module"},
    {"key_stores[0].session_pool", "--session-pool"},
    {"key_stores[0].health_key", "--health-key"},
    {"key_stores[0].quota", "--quota-rps"},
    {"tls.client_subjects", "--tls-client-subject"},
    {"tls.client_ca", "--tls-client-ca"},
    {"tls.priority", "--tls-priority"},
    {"tls.cert", "--tls-cert"},
    {"tls.key", "--tls-key"},
    {"tls", "--tls-cert"},
    {"listen", "--listen"},
    {"plain_http", "--plain-http"},
    {"ping_path", "--ping-path"},
    {"threads", "--threads"},
    {"log_level", "--log-level"},
};

static const char *flag_for_path(const char *path) {
  for (size_t i = 0; i < sizeof flag_names / sizeof flag_names[0]; i++)
    if (strncmp(path, flag_names[i].path, strlen(flag_names[i].path)) == 0)
      return flag_names[i].flag;
  return path;
}

/* Fail with "FILE: PATH: reason" (flags: "--flag: reason"). */
static kerr_code fail(cfg_ctx *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kerr_code fail(cfg_ctx *c, const char *path, const char *fmt, ...) {
  char reason[KERR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  if (c->flags)
    kerr_fill(c->err, KERR_VALIDATION, "%s: %s", path ? flag_for_path(path) : c->name, reason);
  else if (path && *path)
    kerr_fill(c->err, KERR_VALIDATION, "%s: %s: %s", c->name, path, reason);
  else
    kerr_fill(c->err, KERR_VALIDATION, "%s: %s", c->name, reason);
  return KERR_VALIDATION;
}

static kerr_code oom(cfg_ctx *c) {
  return kerr_set(c->err, KERR_INTERNAL, "out of memory reading the xks-proxy configuration");
}

/* "parent.key" (or "key" at the top).  Paths are made of the schema's keys
 * and bounded indexes, so they fit; a cut one would still be readable. */
static void path_key(char out[CFG_PATH_TEXT_MAX], const char *parent, const char *key) {
  if (snprintf(out, CFG_PATH_TEXT_MAX, "%s%s%s", parent, *parent ? "." : "", key) >= CFG_PATH_TEXT_MAX)
    out[CFG_PATH_TEXT_MAX - 1] = '\0';
}

/* "parent[i]". */
static void path_index(char out[CFG_PATH_TEXT_MAX], const char *parent, size_t i) {
  if (snprintf(out, CFG_PATH_TEXT_MAX, "%s[%zu]", parent, i) >= CFG_PATH_TEXT_MAX)
    out[CFG_PATH_TEXT_MAX - 1] = '\0';
}

/* A key as a message may show it: printable ASCII, shortened. */
static void shown_key(char out[CFG_KEY_SHOWN_MAX + 4], const char *key) {
  size_t i;
  for (i = 0; key[i] && i < CFG_KEY_SHOWN_MAX; i++)
    out[i] = (key[i] >= 0x20 && key[i] < 0x7f) ? key[i] : '?';
  if (key[i]) {
    memcpy(out + i, "...", 3);
    i += 3;
  }
  out[i] = '\0';
}

/* ---- the tree's secrets ----------------------------------------------- */

/* Wipe every string inside the tree (values may be secrets), then free it. */
static void tree_wipe(json_t *v) {
  const char *key;
  json_t *child;
  size_t i;
  if (!v) return;
  if (json_is_string(v)) {
    secure_wipe((char *)json_string_value(v), json_string_length(v));
  } else if (json_is_object(v)) {
    json_object_foreach(v, key, child) tree_wipe(child);
  } else if (json_is_array(v)) {
    json_array_foreach(v, i, child) tree_wipe(child);
  }
}

static void tree_free(json_t *root) {
  tree_wipe(root);
  json_decref(root);
}

/* ---- YAML -> tree ------------------------------------------------------- */

static int ptr_cmp(const void *a, const void *b) {
  uintptr_t x = (uintptr_t) * (json_t *const *)a, y = (uintptr_t) * (json_t *const *)b;
  return x < y ? -1 : x > y;
}

static int is_quoted(const cfg_ctx *c, const json_t *v) {
  if (!c->yaml || c->quoted_count == 0) return 0;
  return bsearch(&v, c->quoted, c->quoted_count, sizeof *c->quoted, ptr_cmp) != NULL;
}

static int remember_quoted(cfg_ctx *c, json_t *v) {
  if (c->quoted_count == c->quoted_cap) {
    size_t ncap = c->quoted_cap ? c->quoted_cap * 2 : 64;
    json_t **n = realloc(c->quoted, ncap * sizeof *n);
    if (!n) return -1;
    c->quoted = n;
    c->quoted_cap = ncap;
  }
  c->quoted[c->quoted_count++] = v;
  return 0;
}

typedef struct yframe {
  json_t *node;  /* an object or an array */
  char *key;     /* objects: the key waiting for its value, or NULL */
} yframe;

/* Wipe what libyaml read: its buffers hold the configuration's text. */
static void yaml_wipe_parser(yaml_parser_t *p) {
  if (p->buffer.start) secure_wipe(p->buffer.start, (size_t)(p->buffer.end - p->buffer.start));
  if (p->raw_buffer.start)
    secure_wipe(p->raw_buffer.start, (size_t)(p->raw_buffer.end - p->raw_buffer.start));
}

static void yaml_wipe_event(yaml_event_t *ev) {
  if (ev->type == YAML_SCALAR_EVENT && ev->data.scalar.value)
    secure_wipe(ev->data.scalar.value, ev->data.scalar.length);
}

/* Attach `v` (a new reference) to the innermost container, or make it the
 * root.  Fails on a duplicate key (already checked) or no memory. */
static kerr_code yaml_attach(cfg_ctx *c, yframe *stack, size_t depth, json_t **root, json_t *v,
                             const yaml_mark_t *mark) {
  yframe *top;
  if (depth == 0) {
    *root = v;
    return KERR_OK;
  }
  top = &stack[depth - 1];
  if (json_is_array(top->node)) {
    if (json_array_append_new(top->node, v) != 0) return oom(c);
    return KERR_OK;
  }
  if (json_object_set_new(top->node, top->key, v) != 0) return oom(c);
  free(top->key);
  top->key = NULL;
  return KERR_OK;
}

static kerr_code yaml_to_tree(cfg_ctx *c, const char *text, size_t len, json_t **out) {
  yaml_parser_t parser;
  yaml_event_t ev;
  yframe stack[CFG_DEPTH_MAX];
  size_t depth = 0, i;
  json_t *root = NULL, *v;
  int done = 0, documents = 0, have_event = 0;
  kerr_code rc = KERR_OK;

  *out = NULL;
  memset(stack, 0, sizeof stack);
  if (!yaml_parser_initialize(&parser)) return oom(c);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  while (!done) {
    const yaml_mark_t *m;
    if (!yaml_parser_parse(&parser, &ev)) {
      if (parser.error == YAML_MEMORY_ERROR) {
        rc = oom(c);
      } else {
        /* libyaml's problems are fixed phrases; they never quote the text. */
        rc = fail(c, NULL, "line %zu, column %zu: invalid YAML: %s", parser.problem_mark.line + 1,
                  parser.problem_mark.column + 1, parser.problem ? parser.problem : "syntax error");
      }
      break;
    }
    have_event = 1;
    m = &ev.start_mark;
    switch (ev.type) {
    case YAML_STREAM_START_EVENT:
    case YAML_DOCUMENT_END_EVENT:
      break;
    case YAML_STREAM_END_EVENT:
      done = 1;
      break;
    case YAML_DOCUMENT_START_EVENT:
      if (++documents > 1) {
        rc = fail(c, NULL, "line %zu: only one YAML document is allowed", m->line + 1);
      } else if (ev.data.document_start.tag_directives.start !=
                 ev.data.document_start.tag_directives.end) {
        rc = fail(c, NULL, "line %zu: YAML tags are not allowed", m->line + 1);
      }
      break;
    case YAML_ALIAS_EVENT:
      rc = fail(c, NULL, "line %zu, column %zu: YAML aliases are not allowed", m->line + 1,
                m->column + 1);
      break;
    case YAML_SCALAR_EVENT:
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
      const yaml_char_t *anchor, *tag;
      if (ev.type == YAML_SCALAR_EVENT) {
        anchor = ev.data.scalar.anchor;
        tag = ev.data.scalar.tag;
      } else if (ev.type == YAML_SEQUENCE_START_EVENT) {
        anchor = ev.data.sequence_start.anchor;
        tag = ev.data.sequence_start.tag;
      } else {
        anchor = ev.data.mapping_start.anchor;
        tag = ev.data.mapping_start.tag;
      }
      if (anchor) {
        rc = fail(c, NULL, "line %zu, column %zu: YAML anchors are not allowed", m->line + 1,
                  m->column + 1);
        break;
      }
      if (tag) {
        rc = fail(c, NULL, "line %zu, column %zu: YAML tags are not allowed", m->line + 1,
                  m->column + 1);
        break;
      }
      if (depth > 0 && json_is_object(stack[depth - 1].node) && !stack[depth - 1].key) {
        /* A mapping key. */
        const char *k = (const char *)ev.data.scalar.value;
        if (ev.type != YAML_SCALAR_EVENT) {
          rc = fail(c, NULL, "line %zu, column %zu: a mapping key must be a plain string",
                    m->line + 1, m->column + 1);
          break;
        }
        if (ev.data.scalar.length > CFG_STRING_MAX || memchr(k, '\0', ev.data.scalar.length)) {
          rc = fail(c, NULL, "line %zu, column %zu: a key longer than %d bytes or with a NUL",
                    m->line + 1, m->column + 1, CFG_STRING_MAX);
          break;
        }
        if (json_object_get(stack[depth - 1].node, k)) {
          char shown[CFG_KEY_SHOWN_MAX + 4];
          shown_key(shown, k);
          rc = fail(c, NULL, "line %zu, column %zu: duplicate key '%s'", m->line + 1, m->column + 1,
                    shown);
          break;
        }
        if (!(stack[depth - 1].key = strdup(k))) rc = oom(c);
        break;
      }
      if (ev.type == YAML_SCALAR_EVENT) {
        if (ev.data.scalar.length > CFG_STRING_MAX) {
          rc = fail(c, NULL, "line %zu, column %zu: a value longer than %d bytes", m->line + 1,
                    m->column + 1, CFG_STRING_MAX);
          break;
        }
        v = json_stringn_nocheck((const char *)ev.data.scalar.value, ev.data.scalar.length);
        if (!v) {
          rc = oom(c);
          break;
        }
        if (ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE && remember_quoted(c, v) != 0) {
          json_decref(v);
          rc = oom(c);
          break;
        }
        rc = yaml_attach(c, stack, depth, &root, v, m);
        break;
      }
      if (depth == CFG_DEPTH_MAX) {
        rc = fail(c, NULL, "line %zu, column %zu: nested deeper than %d levels", m->line + 1,
                  m->column + 1, CFG_DEPTH_MAX);
        break;
      }
      v = ev.type == YAML_SEQUENCE_START_EVENT ? json_array() : json_object();
      if (!v) {
        rc = oom(c);
        break;
      }
      /* The container joins its parent now (the parent keeps it alive) and
       * is filled through the stack. */
      if ((rc = yaml_attach(c, stack, depth, &root, v, m)) != KERR_OK) break;
      stack[depth].node = v;
      stack[depth].key = NULL;
      depth++;
      break;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
      if (depth > 0) {
        depth--;
        free(stack[depth].key); /* libyaml never ends a mapping after a lone key */
        stack[depth].key = NULL;
      }
      break;
    default:
      break;
    }
    yaml_wipe_event(&ev);
    yaml_event_delete(&ev);
    have_event = 0;
    if (rc != KERR_OK) break;
  }
  if (have_event) {
    yaml_wipe_event(&ev);
    yaml_event_delete(&ev);
  }
  for (i = 0; i < CFG_DEPTH_MAX; i++) free(stack[i].key);
  yaml_wipe_parser(&parser);
  yaml_parser_delete(&parser);
  if (rc == KERR_OK && !root) rc = fail(c, NULL, "the configuration is empty");
  if (rc != KERR_OK) {
    tree_free(root);
    return rc;
  }
  qsort(c->quoted, c->quoted_count, sizeof *c->quoted, ptr_cmp);
  *out = root;
  return KERR_OK;
}

/* ---- JSON -> tree --------------------------------------------------------- */

/* The bounds YAML checks while building: depth and string sizes. */
static kerr_code json_bounds(cfg_ctx *c, json_t *v, int depth) {
  const char *key;
  json_t *child;
  size_t i;
  if (json_is_string(v)) {
    if (json_string_length(v) > CFG_STRING_MAX)
      return fail(c, NULL, "a value is longer than %d bytes", CFG_STRING_MAX);
    return KERR_OK;
  }
  if (!json_is_object(v) && !json_is_array(v)) return KERR_OK;
  if (depth >= CFG_DEPTH_MAX) return fail(c, NULL, "nested deeper than %d levels", CFG_DEPTH_MAX);
  if (json_is_object(v)) {
    json_object_foreach(v, key, child) {
      if (strlen(key) > CFG_STRING_MAX)
        return fail(c, NULL, "a key is longer than %d bytes", CFG_STRING_MAX);
      if (json_bounds(c, child, depth + 1) != KERR_OK) return KERR_VALIDATION;
    }
  } else {
    json_array_foreach(v, i, child) if (json_bounds(c, child, depth + 1) != KERR_OK) return KERR_VALIDATION;
  }
  return KERR_OK;
}

static kerr_code json_to_tree(cfg_ctx *c, const char *text, size_t len, json_t **out) {
  json_error_t jerr;
  json_t *root;
  *out = NULL;
  root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    /* jerr.text may quote the input, which can be a secret. */
    if (json_error_code(&jerr) == json_error_duplicate_key)
      return fail(c, NULL, "line %d, column %d: duplicate key", jerr.line, jerr.column);
    return fail(c, NULL, "line %d, column %d: invalid JSON", jerr.line, jerr.column);
  }
  if (json_bounds(c, root, 0) != KERR_OK) {
    tree_free(root);
    return KERR_VALIDATION;
  }
  *out = root;
  return KERR_OK;
}

/* ---- typed values ---------------------------------------------------------- */

static int printable(const char *s) {
  for (; *s; s++)
    if (*s < 0x20 || *s > 0x7e) return 0;
  return 1;
}

/* The string of `v` when it is one without a NUL, else NULL: for values
 * compared against a fixed set of words. */
static const char *word(json_t *v) {
  if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) return NULL;
  return json_string_value(v);
}

/* A string value of 1..max bytes without NUL.  */
static kerr_code get_string(cfg_ctx *c, json_t *v, const char *path, size_t min, size_t max,
                            const char **out) {
  size_t n;
  if (!json_is_string(v)) return fail(c, path, "must be a string");
  n = json_string_length(v);
  if (strlen(json_string_value(v)) != n) return fail(c, path, "must not contain a NUL character");
  if (n < min || n > max) return fail(c, path, "must be %zu to %zu bytes long", min, max);
  *out = json_string_value(v);
  return KERR_OK;
}

/* Strict unsigned decimal: digits only, no sign, no leading zero. */
static int parse_uint_text(const char *s, unsigned long long *out) {
  unsigned long long n = 0;
  if (!*s || (s[0] == '0' && s[1])) return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return -1;
    if (n > (ULLONG_MAX - 9) / 10) return -1;
    n = n * 10 + (unsigned)(*s - '0');
  }
  *out = n;
  return 0;
}

static kerr_code get_uint(cfg_ctx *c, json_t *v, const char *path, unsigned min, unsigned max,
                          unsigned *out) {
  unsigned long long n;
  int ok = 0;
  if (json_is_integer(v)) {
    json_int_t i = json_integer_value(v);
    ok = i >= 0;
    n = (unsigned long long)i;
  } else if (json_is_string(v) && c->yaml && !is_quoted(c, v)) {
    ok = strlen(json_string_value(v)) == json_string_length(v) &&
         parse_uint_text(json_string_value(v), &n) == 0;
  }
  if (!ok || n < min || n > max) return fail(c, path, "must be an integer from %u to %u", min, max);
  *out = (unsigned)n;
  return KERR_OK;
}

/* A decimal number: digits, optionally '.' digits, optionally e[+-]digits. */
static int parse_number_text(const char *s, double *out) {
  const char *p = s;
  char *end;
  if (*p < '0' || *p > '9') return -1;
  while (*p >= '0' && *p <= '9') p++;
  if (*p == '.') {
    p++;
    if (*p < '0' || *p > '9') return -1;
    while (*p >= '0' && *p <= '9') p++;
  }
  if (*p == 'e' || *p == 'E') {
    p++;
    if (*p == '+' || *p == '-') p++;
    if (*p < '0' || *p > '9') return -1;
    while (*p >= '0' && *p <= '9') p++;
  }
  if (*p) return -1;
  errno = 0;
  *out = strtod(s, &end);
  if (*end || errno == ERANGE || !isfinite(*out)) return -1;
  return 0;
}

static kerr_code get_number(cfg_ctx *c, json_t *v, const char *path, double min_excl, double min,
                            double max, double *out) {
  double d = 0;
  int ok = 0;
  if (json_is_integer(v) || json_is_real(v)) {
    d = json_number_value(v);
    ok = isfinite(d);
  } else if (json_is_string(v) && c->yaml && !is_quoted(c, v)) {
    ok = strlen(json_string_value(v)) == json_string_length(v) &&
         parse_number_text(json_string_value(v), &d) == 0;
  }
  if (!ok || d <= min_excl || d < min || d > max) {
    if (min_excl >= min) return fail(c, path, "must be a number above %g and at most %g", min_excl, max);
    return fail(c, path, "must be a number from %g to %g", min, max);
  }
  *out = d;
  return KERR_OK;
}

static kerr_code get_bool(cfg_ctx *c, json_t *v, const char *path, int *out) {
  if (json_is_boolean(v)) {
    *out = json_is_true(v);
    return KERR_OK;
  }
  if (word(v) && c->yaml && !is_quoted(c, v)) {
    const char *s = word(v);
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
      *out = s[0] == 't';
      return KERR_OK;
    }
  }
  return fail(c, path, "must be true or false");
}

/* Refuse keys of `obj` not in `allowed` (NULL-terminated). */
static kerr_code check_keys(cfg_ctx *c, json_t *obj, const char *path, const char *const *allowed) {
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    size_t i;
    int known = 0;
    for (i = 0; allowed[i]; i++)
      if (strcmp(allowed[i], key) == 0) known = 1;
    if (!known) {
      char shown[CFG_KEY_SHOWN_MAX + 4], where[CFG_PATH_TEXT_MAX];
      shown_key(shown, key);
      path_key(where, path, shown);
      return fail(c, where, "unknown key");
    }
  }
  return KERR_OK;
}

static kerr_code need_object(cfg_ctx *c, json_t *v, const char *path) {
  return json_is_object(v) ? KERR_OK : fail(c, path, "must be a mapping");
}

/* A list of min..max entries. */
static kerr_code need_list(cfg_ctx *c, json_t *v, const char *path, size_t min, size_t max) {
  if (!json_is_array(v)) return fail(c, path, "must be a list");
  if (json_array_size(v) < min || json_array_size(v) > max)
    return fail(c, path, "must have %zu to %zu entries", min, max);
  return KERR_OK;
}

/* Copy a string into a fixed buffer that the checks above sized. */
static void copy_fixed(char *dst, size_t cap, const char *src) {
  snprintf(dst, cap, "%s", src);
}

static char *secret_dup(const char *s) {
  size_t n = strlen(s);
  char *d = secure_alloc(n + 1);
  if (d) memcpy(d, s, n + 1);
  return d;
}

static void secret_free(char *s) {
  if (s) secure_free(s, strlen(s) + 1);
}

static int all_in(const char *s, const char *set) { return strspn(s, set) == strlen(s); }

#define LOWER "abcdefghijklmnopqrstuvwxyz"
#define UPPER "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#define DIGITS "0123456789"
#define KEY_ID_CHARS UPPER LOWER DIGITS "-._"

static int valid_key_id(const char *s) {
  size_t n = strlen(s);
  return n >= 1 && n <= XKS_KEY_ID_MAX && all_in(s, KEY_ID_CHARS);
}

/* ---- paths and files --------------------------------------------------- */

/* Resolve `p` against the configuration's directory into a new string. */
static kerr_code resolve_path(cfg_ctx *c, const char *p, const char *path, char **out) {
  size_t need;
  *out = NULL;
  if (p[0] == '/' || !c->dir[0]) {
    need = strlen(p) + 1;
    if (need > XKSP_PATH_MAX) return fail(c, path, "is longer than %d bytes", XKSP_PATH_MAX - 1);
    if (!(*out = strdup(p))) return oom(c);
    return KERR_OK;
  }
  need = strlen(c->dir) + 1 + strlen(p) + 1;
  if (need > XKSP_PATH_MAX)
    return fail(c, path, "is longer than %d bytes once made absolute", XKSP_PATH_MAX - 1);
  if (!(*out = malloc(need))) return oom(c);
  snprintf(*out, need, "%s/%s", c->dir, p);
  return KERR_OK;
}

/* A path value: a string, resolved. */
static kerr_code get_path(cfg_ctx *c, json_t *v, const char *path, char **out) {
  const char *s;
  kerr_code rc = get_string(c, v, path, 1, XKSP_PATH_MAX - 1, &s);
  if (rc != KERR_OK) return rc;
  return resolve_path(c, s, path, out);
}

/* A file that must exist and be a regular file we can read. */
static kerr_code check_readable_file(cfg_ctx *c, const char *file, const char *path) {
  struct stat st;
  if (stat(file, &st) != 0) return fail(c, path, "%s: %s", file, strerror(errno));
  if (!S_ISREG(st.st_mode)) return fail(c, path, "%s: not a regular file", file);
  if (access(file, R_OK) != 0) return fail(c, path, "%s: %s", file, strerror(errno));
  return KERR_OK;
}

/* Read a secret file (<= CFG_SECRET_FILE_MAX bytes) into a secure string,
 * one trailing newline (LF or CRLF) removed.  Messages name the file, never
 * its contents. */
static kerr_code read_secret_file(cfg_ctx *c, const char *file, const char *path, char **out) {
  struct stat st;
  char *buf = NULL;
  size_t len = 0;
  int fd;
  kerr_code rc = KERR_OK;

  *out = NULL;
  fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(c, path, "%s: %s", file, strerror(errno));
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    rc = fail(c, path, "%s: not a regular file", file);
    goto out;
  }
  if (st.st_size > CFG_SECRET_FILE_MAX) {
    rc = fail(c, path, "%s: larger than %d bytes", file, CFG_SECRET_FILE_MAX);
    goto out;
  }
  if (!(buf = secure_alloc(CFG_SECRET_FILE_MAX + 2))) {
    rc = oom(c);
    goto out;
  }
  /* Read one byte past the limit: the file may have grown since fstat. */
  while (len < CFG_SECRET_FILE_MAX + 1) {
    ssize_t r = read(fd, buf + len, CFG_SECRET_FILE_MAX + 1 - len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      rc = fail(c, path, "%s: %s", file, strerror(errno));
      goto out;
    }
    if (r == 0) break;
    len += (size_t)r;
  }
  if (len > CFG_SECRET_FILE_MAX) {
    rc = fail(c, path, "%s: larger than %d bytes", file, CFG_SECRET_FILE_MAX);
    goto out;
  }
  if (memchr(buf, '\0', len)) {
    rc = fail(c, path, "%s: contains a NUL byte", file);
    goto out;
  }
  if (len > 0 && buf[len - 1] == '\n') len--;
  if (len > 0 && buf[len - 1] == '\r') len--;
  buf[len] = '\0';
  if (!(*out = secret_dup(buf))) rc = oom(c);
out:
  if (buf) secure_free(buf, CFG_SECRET_FILE_MAX + 2);
  close(fd);
  return rc;
}

/* The secret of `obj`: exactly one of `inline_key` and `file_key`. */
static kerr_code get_secret(cfg_ctx *c, json_t *obj, const char *path, const char *inline_key,
                            const char *file_key, char **out, char *where) {
  json_t *vi = json_object_get(obj, inline_key), *vf = json_object_get(obj, file_key);
  char *file = NULL;
  const char *s;
  kerr_code rc;

  *out = NULL;
  if (vi && vf) {
    path_key(where, path, file_key);
    return fail(c, where, "give %s or %s, not both", inline_key, file_key);
  }
  if (!vi && !vf) {
    path_key(where, path, inline_key);
    return fail(c, where, "is required (or %s)", file_key);
  }
  if (vi) {
    path_key(where, path, inline_key);
    if (!json_is_string(vi)) return fail(c, where, "must be a string");
    s = json_string_value(vi);
    if (strlen(s) != json_string_length(vi)) return fail(c, where, "must not contain a NUL character");
    if (!(*out = secret_dup(s))) return oom(c);
    return KERR_OK;
  }
  path_key(where, path, file_key);
  if ((rc = get_path(c, vf, where, &file)) != KERR_OK) return rc;
  rc = read_secret_file(c, file, where, out);
  free(file);
  return rc;
}

/* ---- the sections -------------------------------------------------------- */

static kerr_code read_credential(cfg_ctx *c, json_t *v, const char *path, xksp_credential *cr) {
  static const char *const keys[] = {"access_key_id", "secret_access_key", "secret_access_key_file",
                                     NULL};
  char where[CFG_PATH_TEXT_MAX];
  const char *akid;
  size_t n;
  kerr_code rc;

  if ((rc = need_object(c, v, path)) || (rc = check_keys(c, v, path, keys))) return rc;
  path_key(where, path, "access_key_id");
  if (!json_object_get(v, "access_key_id")) return fail(c, where, "is required");
  if (!json_is_string(json_object_get(v, "access_key_id")) ||
      get_string(c, json_object_get(v, "access_key_id"), where, 0, CFG_STRING_MAX, &akid) != KERR_OK ||
      (n = strlen(akid)) < XKSP_AKID_MIN || n > XKSP_AKID_MAX || !all_in(akid, UPPER "234567"))
    return fail(c, where, "must be %d to %d characters of A-Z and 2-7", XKSP_AKID_MIN, XKSP_AKID_MAX);
  copy_fixed(cr->access_key_id, sizeof cr->access_key_id, akid);
  if ((rc = get_secret(c, v, path, "secret_access_key", "secret_access_key_file",
                       &cr->secret_access_key, where)) != KERR_OK)
    return rc;
  n = strlen(cr->secret_access_key);
  if (n < XKSP_SECRET_MIN || n > XKSP_SECRET_MAX ||
      !all_in(cr->secret_access_key, UPPER LOWER DIGITS "+/="))
    return fail(c, where, "must be %d to %d characters of A-Z a-z 0-9 + / =", XKSP_SECRET_MIN,
                XKSP_SECRET_MAX);
  return KERR_OK;
}

static kerr_code read_token(cfg_ctx *c, json_t *v, const char *path, xksp_token_config *t) {
  static const char *const keys[] = {"label", "pin", "pin_file", "pkcs11_module", NULL};
  char where[CFG_PATH_TEXT_MAX];
  const char *label;
  json_t *m;
  size_t n;
  kerr_code rc;

  if ((rc = need_object(c, v, path)) || (rc = check_keys(c, v, path, keys))) return rc;
  path_key(where, path, "label");
  if (!json_object_get(v, "label")) return fail(c, where, "is required");
  if (get_string(c, json_object_get(v, "label"), where, 1, sizeof t->label - 1, &label) != KERR_OK ||
      !printable(label))
    return fail(c, where, "must be 1 to %zu printable ASCII characters", sizeof t->label - 1);
  copy_fixed(t->label, sizeof t->label, label);
  if ((rc = get_secret(c, v, path, "pin", "pin_file", &t->pin, where)) != KERR_OK) return rc;
  n = strlen(t->pin);
  if (n < P11_PIN_MIN || n > P11_PIN_MAX)
    return fail(c, where, "must be %d to %d bytes", P11_PIN_MIN, P11_PIN_MAX);
  if ((m = json_object_get(v, "pkcs11_module"))) {
    path_key(where, path, "pkcs11_module");
    if ((rc = get_path(c, m, where, &t->module)) || (rc = check_readable_file(c, t->module, where)))
      return rc;
  }
  return KERR_OK;
}

/* A list of strings, each 1..item_max bytes passing `ok` (NULL: printable);
 * `rule` completes the message "must be ...". */
static kerr_code read_string_list(cfg_ctx *c, json_t *v, const char *path, size_t min, size_t max,
                                  size_t item_max, int (*ok)(const char *), const char *rule,
                                  char ***items, size_t *count) {
  char where[CFG_PATH_TEXT_MAX];
  json_t *e;
  size_t i;
  kerr_code rc;

  *items = NULL;
  *count = 0;
  if ((rc = need_list(c, v, path, min, max)) != KERR_OK) return rc;
  if (!(*items = calloc(json_array_size(v) + 1, sizeof **items))) return oom(c);
  json_array_foreach(v, i, e) {
    const char *s;
    path_index(where, path, i);
    if (get_string(c, e, where, 1, item_max, &s) != KERR_OK || !(ok ? ok(s) : printable(s)))
      return fail(c, where, "must be %s", rule);
    if (!((*items)[i] = strdup(s))) return oom(c);
    *count = i + 1;
  }
  return KERR_OK;
}

static int printable_str(const char *s) { return printable(s); }

static kerr_code read_rule(cfg_ctx *c, json_t *v, const char *path, size_t index, xksp_rule *r) {
  static const char *const keys[] = {"sid",    "effect",       "principals",       "operations",
                                     "key_arns", "via_services", "external_key_ids", NULL};
  static const char *const conds[] = {"principals", "operations", "key_arns", "via_services",
                                      "external_key_ids"};
  xksp_patterns *lists[] = {&r->principals, &r->operations, &r->key_arns, &r->via_services,
                            &r->external_key_ids};
  char where[CFG_PATH_TEXT_MAX], rule_text[64];
  const char *s;
  json_t *x;
  size_t i;
  int any = 0;
  kerr_code rc;

  if ((rc = need_object(c, v, path)) || (rc = check_keys(c, v, path, keys))) return rc;
  if ((x = json_object_get(v, "sid"))) {
    path_key(where, path, "sid");
    if (get_string(c, x, where, 1, CFG_SID_MAX, &s) != KERR_OK || !printable(s))
      return fail(c, where, "must be 1 to %d printable ASCII characters", CFG_SID_MAX);
    r->sid = strdup(s);
  } else {
    char dflt[32];
    snprintf(dflt, sizeof dflt, "rule %zu", index + 1);
    r->sid = strdup(dflt);
  }
  if (!r->sid) return oom(c);
  path_key(where, path, "effect");
  if (!(x = json_object_get(v, "effect"))) return fail(c, where, "is required (allow or deny)");
  s = word(x) ? word(x) : "";
  if (strcmp(s, "allow") != 0 && strcmp(s, "deny") != 0) return fail(c, where, "must be allow or deny");
  r->effect = s[0] == 'a' ? XKSP_ALLOW : XKSP_DENY;
  snprintf(rule_text, sizeof rule_text, "1 to %d printable ASCII characters", CFG_PATTERN_MAX);
  for (i = 0; i < 5; i++) {
    if (!(x = json_object_get(v, conds[i]))) continue;
    path_key(where, path, conds[i]);
    if ((rc = read_string_list(c, x, where, 1, XKSP_PATTERNS_MAX, CFG_PATTERN_MAX, printable_str,
                               rule_text, &lists[i]->items, &lists[i]->count)) != KERR_OK)
      return rc;
    any = 1;
  }
  if (!any)
    return fail(c, path,
                "has no condition (it would match every request; write principals: [\"*\"] "
                "to mean that)");
  return KERR_OK;
}

static int valid_region(const char *s) {
  size_t n = strlen(s);
  return n >= 1 && n <= XKSP_REGION_MAX && all_in(s, LOWER DIGITS "-");
}

static kerr_code read_store(cfg_ctx *c, json_t *v, const char *path, xksp_store_config *st) {
  static const char *const keys[] = {
      "name",   "uri_prefix", "region",     "credentials",  "pkcs11_module",          "tokens",
      "session_pool", "iv_source", "health_key", "health_interval_seconds", "degraded_ms", "keys",
      "disabled_keys", "quota",    "authorization", NULL};
  char where[CFG_PATH_TEXT_MAX], sub[CFG_PATH_TEXT_MAX];
  const char *s;
  json_t *x, *e;
  size_t i, j;
  kerr perr;
  kerr_code rc;

  if ((rc = need_object(c, v, path)) || (rc = check_keys(c, v, path, keys))) return rc;

  path_key(where, path, "uri_prefix");
  if (!(x = json_object_get(v, "uri_prefix"))) return fail(c, where, "is required");
  if ((rc = get_string(c, x, where, 1, XKS_URI_PATH_MAX, &s)) != KERR_OK) return rc;
  if (xks_uri_prefix_check(s, &perr) != KERR_OK) return fail(c, where, "%s", perr.msg);
  copy_fixed(st->uri_prefix, sizeof st->uri_prefix, s);

  path_key(where, path, "name");
  if ((x = json_object_get(v, "name"))) {
    if (get_string(c, x, where, 1, XKSP_NAME_MAX, &s) != KERR_OK || !printable(s))
      return fail(c, where, "must be 1 to %d printable ASCII characters", XKSP_NAME_MAX);
    copy_fixed(st->name, sizeof st->name, s);
  } else if (strlen(st->uri_prefix) <= XKSP_NAME_MAX) {
    copy_fixed(st->name, sizeof st->name, st->uri_prefix);
  } else {
    /* Long prefixes differ at their start more often than at their end
     * (which is always /kms/xks/v1): keep the start. */
    snprintf(st->name, sizeof st->name, "%.*s...", XKSP_NAME_MAX - 3, st->uri_prefix);
  }

  path_key(where, path, "region");
  if (!(x = json_object_get(v, "region"))) return fail(c, where, "is required");
  if (get_string(c, x, where, 1, XKSP_REGION_MAX, &s) != KERR_OK || !valid_region(s))
    return fail(c, where, "must be 1 to %d characters of a-z 0-9 -", XKSP_REGION_MAX);
  copy_fixed(st->region, sizeof st->region, s);

  path_key(where, path, "credentials");
  if (!(x = json_object_get(v, "credentials"))) return fail(c, where, "is required");
  if ((rc = need_list(c, x, where, 1, XKSP_CREDENTIALS_MAX)) != KERR_OK) return rc;
  json_array_foreach(x, i, e) {
    path_index(sub, where, i);
    st->credential_count = i + 1;
    if ((rc = read_credential(c, e, sub, &st->credentials[i])) != KERR_OK) return rc;
  }

  path_key(where, path, "pkcs11_module");
  if (!(x = json_object_get(v, "pkcs11_module"))) return fail(c, where, "is required");
  if ((rc = get_path(c, x, where, &st->pkcs11_module)) ||
      (rc = check_readable_file(c, st->pkcs11_module, where)))
    return rc;

  path_key(where, path, "tokens");
  if (!(x = json_object_get(v, "tokens"))) return fail(c, where, "is required");
  if ((rc = need_list(c, x, where, 1, XKSP_TOKENS_MAX)) != KERR_OK) return rc;
  json_array_foreach(x, i, e) {
    path_index(sub, where, i);
    st->token_count = i + 1;
    if ((rc = read_token(c, e, sub, &st->tokens[i])) != KERR_OK) return rc;
    for (j = 0; j < i; j++)
      if (strcmp(st->tokens[j].label, st->tokens[i].label) == 0) {
        char lw[CFG_PATH_TEXT_MAX];
        path_key(lw, sub, "label");
        return fail(c, lw, "'%s' is also the label of tokens[%zu]", st->tokens[i].label, j);
      }
  }

  st->session_pool = XKSP_DEFAULT_POOL;
  path_key(where, path, "session_pool");
  if ((x = json_object_get(v, "session_pool")) &&
      (rc = get_uint(c, x, where, 1, P11_POOL_MAX, &st->session_pool)) != KERR_OK)
    return rc;

  st->iv_source = XKSP_IV_AUTO;
  path_key(where, path, "iv_source");
  if ((x = json_object_get(v, "iv_source"))) {
    s = word(x) ? word(x) : "";
    if (strcmp(s, "auto") == 0)
      st->iv_source = XKSP_IV_AUTO;
    else if (strcmp(s, "hsm") == 0)
      st->iv_source = XKSP_IV_HSM;
    else if (strcmp(s, "drbg") == 0)
      st->iv_source = XKSP_IV_DRBG;
    else
      return fail(c, where, "must be auto, hsm or drbg");
  }

  path_key(where, path, "health_key");
  if ((x = json_object_get(v, "health_key"))) {
    if (get_string(c, x, where, 1, XKS_KEY_ID_MAX, &s) != KERR_OK || !valid_key_id(s))
      return fail(c, where, "must be 1 to %d characters of A-Z a-z 0-9 - . _", XKS_KEY_ID_MAX);
    if (!(st->health_key = strdup(s))) return oom(c);
  }

  st->health_interval_s = XKSP_DEFAULT_HEALTH_INTERVAL_S;
  path_key(where, path, "health_interval_seconds");
  if ((x = json_object_get(v, "health_interval_seconds")) &&
      (rc = get_uint(c, x, where, 1, CFG_HEALTH_INTERVAL_MAX, &st->health_interval_s)) != KERR_OK)
    return rc;

  st->degraded_ms = XKSP_DEFAULT_DEGRADED_MS;
  path_key(where, path, "degraded_ms");
  if ((x = json_object_get(v, "degraded_ms")) &&
      (rc = get_uint(c, x, where, 1, CFG_DEGRADED_MS_MAX, &st->degraded_ms)) != KERR_OK)
    return rc;

  path_key(where, path, "keys");
  if ((x = json_object_get(v, "keys")) &&
      (rc = read_string_list(c, x, where, 1, XKSP_KEY_LIST_MAX, XKS_KEY_ID_MAX, valid_key_id,
                             "1 to 128 characters of A-Z a-z 0-9 - . _", &st->keys,
                             &st->key_count)) != KERR_OK)
    return rc;
  path_key(where, path, "disabled_keys");
  if ((x = json_object_get(v, "disabled_keys")) &&
      (rc = read_string_list(c, x, where, 1, XKSP_KEY_LIST_MAX, XKS_KEY_ID_MAX, valid_key_id,
                             "1 to 128 characters of A-Z a-z 0-9 - . _", &st->disabled_keys,
                             &st->disabled_key_count)) != KERR_OK)
    return rc;

  path_key(where, path, "quota");
  if ((x = json_object_get(v, "quota"))) {
    static const char *const qkeys[] = {"requests_per_second", "burst", NULL};
    if ((rc = need_object(c, x, where)) || (rc = check_keys(c, x, where, qkeys))) return rc;
    path_key(sub, where, "requests_per_second");
    if (!(e = json_object_get(x, "requests_per_second"))) return fail(c, sub, "is required");
    if ((rc = get_number(c, e, sub, 0, 0, CFG_RPS_MAX, &st->quota_rps)) != KERR_OK) return rc;
    /* A bucket smaller than one request would refuse everything. */
    st->quota_burst = st->quota_rps < 1 ? 1 : st->quota_rps;
    path_key(sub, where, "burst");
    if ((e = json_object_get(x, "burst")) &&
        (rc = get_number(c, e, sub, -1, 1, CFG_BURST_MAX, &st->quota_burst)) != KERR_OK)
      return rc;
  }

  path_key(where, path, "authorization");
  if ((x = json_object_get(v, "authorization"))) {
    if ((rc = need_list(c, x, where, 0, XKSP_RULES_MAX)) != KERR_OK) return rc;
    if (json_array_size(x) > 0 && !(st->rules = calloc(json_array_size(x), sizeof *st->rules)))
      return oom(c);
    json_array_foreach(x, i, e) {
      path_index(sub, where, i);
      st->rule_count = i + 1;
      if ((rc = read_rule(c, e, sub, i, &st->rules[i])) != KERR_OK) return rc;
    }
  }
  return KERR_OK;
}

static int valid_ping_path(const char *s) {
  return s[0] == '/' && all_in(s, UPPER LOWER DIGITS "/-_.");
}

static int valid_subject(const char *s) { return all_in(s, UPPER LOWER DIGITS "-.*"); }

static kerr_code read_tls(cfg_ctx *c, json_t *v, xksp_config *cfg) {
  static const char *const keys[] = {"cert", "key", "client_ca", "client_subjects", "priority", NULL};
  json_t *x;
  const char *s;
  kerr_code rc;

  if ((rc = need_object(c, v, "tls")) || (rc = check_keys(c, v, "tls", keys))) return rc;
  if (!(x = json_object_get(v, "cert"))) return fail(c, "tls.cert", "is required (or plain_http: true)");
  if ((rc = get_path(c, x, "tls.cert", &cfg->tls_cert)) != KERR_OK) return rc;
  if (!(x = json_object_get(v, "key"))) return fail(c, "tls.key", "is required (or plain_http: true)");
  if ((rc = get_path(c, x, "tls.key", &cfg->tls_key)) != KERR_OK) return rc;
  if ((x = json_object_get(v, "client_ca")) &&
      (rc = get_path(c, x, "tls.client_ca", &cfg->tls_client_ca)) != KERR_OK)
    return rc;
  if ((x = json_object_get(v, "client_subjects"))) {
    char **items = NULL;
    size_t n = 0, i;
    if (!cfg->tls_client_ca)
      return fail(c, "tls.client_subjects", "needs tls.client_ca (subjects are checked on client certificates)");
    rc = read_string_list(c, x, "tls.client_subjects", 1, XKSP_CLIENT_SUBJECTS_MAX, CFG_SUBJECT_MAX,
                          valid_subject, "a DNS name (A-Z a-z 0-9 - . *)", &items, &n);
    /* The list holds at most XKSP_CLIENT_SUBJECTS_MAX entries: move them. */
    for (i = 0; i < n; i++) cfg->tls_client_subjects[i] = items[i];
    cfg->tls_client_subject_count = n;
    free(items);
    if (rc != KERR_OK) return rc;
  }
  if ((x = json_object_get(v, "priority"))) {
    if (get_string(c, x, "tls.priority", 1, CFG_PRIORITY_MAX, &s) != KERR_OK || !printable(s))
      return fail(c, "tls.priority", "must be 1 to %d printable ASCII characters", CFG_PRIORITY_MAX);
    if (!(cfg->tls_priority = strdup(s))) return oom(c);
  }
  return KERR_OK;
}

/* With a client CA and no subjects: KMS's name in each region served. */
static kerr_code default_subjects(cfg_ctx *c, xksp_config *cfg) {
  size_t i, j;
  if (!cfg->tls_client_ca || cfg->tls_client_subject_count > 0) return KERR_OK;
  for (i = 0; i < cfg->store_count; i++) {
    char name[XKSP_REGION_MAX + 32];
    int seen = 0;
    snprintf(name, sizeof name, "cks.kms.%s.amazonaws.com", cfg->stores[i].region);
    for (j = 0; j < cfg->tls_client_subject_count; j++)
      if (strcmp(cfg->tls_client_subjects[j], name) == 0) seen = 1;
    if (seen) continue;
    if (cfg->tls_client_subject_count == XKSP_CLIENT_SUBJECTS_MAX)
      return fail(c, "tls.client_subjects",
                  "the key stores span more than %d regions: list the client subjects",
                  XKSP_CLIENT_SUBJECTS_MAX);
    if (!(cfg->tls_client_subjects[cfg->tls_client_subject_count] = strdup(name))) return oom(c);
    cfg->tls_client_subject_count++;
  }
  return KERR_OK;
}

/* Rules between key stores: unique names, prefixes and access key ids. */
static kerr_code check_across_stores(cfg_ctx *c, xksp_config *cfg) {
  char where[CFG_PATH_TEXT_MAX], p[CFG_PATH_TEXT_MAX];
  size_t i, j, a, b;
  for (i = 0; i < cfg->store_count; i++) {
    const xksp_store_config *si = &cfg->stores[i];
    for (j = 0; j < i; j++) {
      const xksp_store_config *sj = &cfg->stores[j];
      path_index(p, "key_stores", i);
      if (strcmp(si->uri_prefix, sj->uri_prefix) == 0) {
        path_key(where, p, "uri_prefix");
        return fail(c, where, "'%s' is also the URI prefix of key_stores[%zu]", si->uri_prefix, j);
      }
      if (strcmp(si->name, sj->name) == 0) {
        path_key(where, p, "name");
        return fail(c, where,
                    "'%s' is also the name of key_stores[%zu] (a name defaults to the URI prefix, "
                    "shortened to %d characters)",
                    si->name, j, XKSP_NAME_MAX);
      }
    }
    for (a = 0; a < si->credential_count; a++)
      for (j = 0; j <= i; j++)
        for (b = 0; b < (j == i ? a : cfg->stores[j].credential_count); b++)
          if (strcmp(si->credentials[a].access_key_id, cfg->stores[j].credentials[b].access_key_id) ==
              0) {
            char cp[CFG_PATH_TEXT_MAX];
            path_index(p, "key_stores", i);
            path_key(cp, p, "credentials");
            path_index(where, cp, a);
            path_key(cp, where, "access_key_id");
            return fail(c, cp, "is also used by key_stores[%zu].credentials[%zu]", j, b);
          }
  }
  return KERR_OK;
}

static kerr_code check_ping_path(cfg_ctx *c, xksp_config *cfg) {
  size_t n = strlen(cfg->ping_path), i;
  for (i = 0; i < cfg->store_count; i++) {
    xks_route r;
    xks_route_classify(cfg->stores[i].uri_prefix, "POST", cfg->ping_path, n, &r);
    if (r.status != 404)
      return fail(c, "ping_path", "'%s' is an XKS API path of key_stores[%zu]", cfg->ping_path, i);
  }
  return KERR_OK;
}

static kerr_code read_root(cfg_ctx *c, json_t *root, xksp_config *cfg) {
  static const char *const keys[] = {"listen",    "plain_http", "tls",      "ping_path",
                                     "threads",   "connection_limit", "idle_timeout_seconds",
                                     "log_level", "key_stores", NULL};
  char where[CFG_PATH_TEXT_MAX];
  const char *s;
  json_t *x, *e;
  size_t i;
  kerr_code rc;

  if (!json_is_object(root)) return fail(c, NULL, "the configuration must be a mapping");
  if ((rc = check_keys(c, root, "", keys)) != KERR_OK) return rc;

  copy_fixed(cfg->listen, sizeof cfg->listen, XKSP_DEFAULT_LISTEN);
  if ((x = json_object_get(root, "listen"))) {
    char host[HTTP_HOST_MAX];
    uint16_t port;
    kerr perr;
    if ((rc = get_string(c, x, "listen", 1, sizeof cfg->listen - 1, &s)) != KERR_OK) return rc;
    if (http_parse_listen(s, host, &port, &perr) != KERR_OK) return fail(c, "listen", "%s", perr.msg);
    copy_fixed(cfg->listen, sizeof cfg->listen, s);
  }
  if ((x = json_object_get(root, "plain_http")) &&
      (rc = get_bool(c, x, "plain_http", &cfg->plain_http)) != KERR_OK)
    return rc;
  x = json_object_get(root, "tls");
  if (cfg->plain_http && x) return fail(c, "tls", "must be absent with plain_http: true");
  if (!cfg->plain_http) {
    if (!x) return fail(c, "tls", "is required (tls.cert and tls.key), or plain_http: true");
    if ((rc = read_tls(c, x, cfg)) != KERR_OK) return rc;
  }

  copy_fixed(cfg->ping_path, sizeof cfg->ping_path, XKSP_DEFAULT_PING_PATH);
  if ((x = json_object_get(root, "ping_path"))) {
    if (get_string(c, x, "ping_path", 1, XKS_URI_MAX, &s) != KERR_OK || !valid_ping_path(s))
      return fail(c, "ping_path", "must start with '/' and be at most %d characters of A-Z a-z 0-9 / - _ .",
                  XKS_URI_MAX);
    copy_fixed(cfg->ping_path, sizeof cfg->ping_path, s);
  }
  if ((x = json_object_get(root, "threads")) &&
      (rc = get_uint(c, x, "threads", 0, CFG_THREADS_MAX, &cfg->threads)) != KERR_OK)
    return rc;
  if ((x = json_object_get(root, "connection_limit")) &&
      (rc = get_uint(c, x, "connection_limit", 0, CFG_CONNECTIONS_MAX, &cfg->connection_limit)) != KERR_OK)
    return rc;
  if ((x = json_object_get(root, "idle_timeout_seconds")) &&
      (rc = get_uint(c, x, "idle_timeout_seconds", 0, CFG_IDLE_TIMEOUT_MAX, &cfg->idle_timeout_s)) !=
          KERR_OK)
    return rc;
  cfg->log_level = LOG_INFO;
  if ((x = json_object_get(root, "log_level"))) {
    int lvl = word(x) ? log_level_parse(word(x)) : -1;
    if (lvl < 0) return fail(c, "log_level", "must be debug, info, warn or error");
    cfg->log_level = lvl;
  }

  if (!(x = json_object_get(root, "key_stores"))) return fail(c, "key_stores", "is required");
  if ((rc = need_list(c, x, "key_stores", 1, XKSP_STORES_MAX)) != KERR_OK) return rc;
  json_array_foreach(x, i, e) {
    path_index(where, "key_stores", i);
    cfg->store_count = i + 1;
    if ((rc = read_store(c, e, where, &cfg->stores[i])) != KERR_OK) return rc;
  }
  if ((rc = check_across_stores(c, cfg)) || (rc = check_ping_path(c, cfg)) ||
      (rc = default_subjects(c, cfg)))
    return rc;
  return KERR_OK;
}

/* ---- entry points ------------------------------------------------------------ */

static void patterns_free(xksp_patterns *p) {
  for (size_t i = 0; i < p->count; i++) free(p->items[i]);
  free(p->items);
}

static void list_free(char **items, size_t n) {
  for (size_t i = 0; i < n; i++) free(items[i]);
  free(items);
}

void xksp_config_free(xksp_config *c) {
  size_t i, j;
  if (!c) return;
  free(c->source);
  free(c->tls_cert);
  free(c->tls_key);
  free(c->tls_client_ca);
  for (i = 0; i < c->tls_client_subject_count; i++) free(c->tls_client_subjects[i]);
  free(c->tls_priority);
  for (i = 0; i < c->store_count; i++) {
    xksp_store_config *s = &c->stores[i];
    for (j = 0; j < XKSP_CREDENTIALS_MAX; j++) secret_free(s->credentials[j].secret_access_key);
    for (j = 0; j < XKSP_TOKENS_MAX; j++) {
      secret_free(s->tokens[j].pin);
      free(s->tokens[j].module);
    }
    free(s->pkcs11_module);
    free(s->health_key);
    list_free(s->keys, s->key_count);
    list_free(s->disabled_keys, s->disabled_key_count);
    for (j = 0; j < s->rule_count; j++) {
      xksp_rule *r = &s->rules[j];
      free(r->sid);
      patterns_free(&r->principals);
      patterns_free(&r->operations);
      patterns_free(&r->key_arns);
      patterns_free(&r->via_services);
      patterns_free(&r->external_key_ids);
    }
    free(s->rules);
  }
  secure_wipe(c, sizeof *c);
  free(c);
}

int xksp_config_find_store(const xksp_config *c, const char *prefix) {
  if (!c || !prefix) return -1;
  for (size_t i = 0; i < c->store_count; i++)
    if (strcmp(c->stores[i].uri_prefix, prefix) == 0) return (int)i;
  return -1;
}

/* Check the tree into a new configuration. */
static kerr_code build(cfg_ctx *c, json_t *root, const char *source, xksp_config **out) {
  xksp_config *cfg = calloc(1, sizeof *cfg);
  kerr_code rc;
  if (!cfg) return oom(c);
  if (!(cfg->source = strdup(source))) {
    free(cfg);
    return oom(c);
  }
  rc = read_root(c, root, cfg);
  if (rc != KERR_OK) {
    /* Counts cover every entry started, so a half-read store frees too. */
    xksp_config_free(cfg);
    return rc;
  }
  *out = cfg;
  return KERR_OK;
}

static int starts_with_brace(const char *text, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n') continue;
    return text[i] == '{';
  }
  return 0;
}

kerr_code xksp_config_parse(const char *text, size_t len, const char *name, xksp_config **out,
                            kerr *err) {
  cfg_ctx c;
  json_t *root = NULL;
  const char *slash;
  kerr_code rc;

  *out = NULL;
  memset(&c, 0, sizeof c);
  c.err = err;
  c.name = name ? name : "configuration";
  slash = strrchr(c.name, '/');
  if (slash) {
    size_t n = (size_t)(slash - c.name);
    if (n == 0) n = 1; /* "/x.yaml": the root */
    if (n >= sizeof c.dir) return fail(&c, NULL, "the file's directory is too long");
    memcpy(c.dir, c.name, n);
    c.dir[n] = '\0';
  }
  if (len > XKSP_CONFIG_FILE_MAX)
    return fail(&c, NULL, "larger than %zu bytes", XKSP_CONFIG_FILE_MAX);
  if (starts_with_brace(text, len)) {
    rc = json_to_tree(&c, text, len, &root);
  } else {
    c.yaml = 1;
    rc = yaml_to_tree(&c, text, len, &root);
  }
  if (rc == KERR_OK) rc = build(&c, root, c.name, out);
  tree_free(root);
  free(c.quoted);
  return rc;
}

kerr_code xksp_config_load(const char *path, xksp_config **out, kerr *err) {
  struct stat st;
  char *buf = NULL;
  size_t len = 0, cap = XKSP_CONFIG_FILE_MAX + 1;
  int fd;
  kerr_code rc;

  *out = NULL;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kerr_set(err, KERR_VALIDATION, "%s: %s", path, strerror(errno));
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return kerr_set(err, KERR_VALIDATION, "%s: not a regular file", path);
  }
  if (st.st_size > (off_t)XKSP_CONFIG_FILE_MAX) {
    close(fd);
    return kerr_set(err, KERR_VALIDATION, "%s: larger than %zu bytes", path, XKSP_CONFIG_FILE_MAX);
  }
  /* The text may hold secrets: keep it in wiped memory. */
  if (!(buf = secure_alloc(cap))) {
    close(fd);
    return kerr_set(err, KERR_INTERNAL, "out of memory reading the xks-proxy configuration");
  }
  while (len < cap) {
    ssize_t r = read(fd, buf + len, cap - len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      rc = kerr_set(err, KERR_VALIDATION, "%s: %s", path, strerror(errno));
      goto out;
    }
    if (r == 0) break;
    len += (size_t)r;
  }
  rc = xksp_config_parse(buf, len, path, out, err);
out:
  close(fd);
  secure_free(buf, cap);
  return rc;
}

/* ---- flags ------------------------------------------------------------------- */

static int set_str(json_t *obj, const char *key, const char *value) {
  json_t *v;
  if (!value) return 0;
  /* A flag's value is any bytes; a tree string must be UTF-8.  Non-UTF-8
   * text fails the validator's character checks anyway. */
  v = json_stringn_nocheck(value, strlen(value));
  return v ? json_object_set_new(obj, key, v) : -1;
}

/* The tree a file holding the flags would make. */
static kerr_code flags_tree(cfg_ctx *c, const xksp_flags *f, json_t **out) {
  json_t *root = json_object(), *store = json_object(), *stores = json_array(), *creds = json_array(),
         *cred = NULL, *tokens = json_array(), *token = json_object(), *tls = NULL;
  int bad = !root || !store || !stores || !creds || !tokens || !token;

  *out = NULL;
  if (!bad) {
    bad |= set_str(root, "listen", f->listen);
    if (f->plain_http) bad |= json_object_set_new(root, "plain_http", json_true());
    if (f->tls_cert || f->tls_key || f->tls_client_ca || f->tls_client_subject || f->tls_priority) {
      bad |= !(tls = json_object()) || json_object_set_new(root, "tls", tls);
      if (tls) {
        bad |= set_str(tls, "cert", f->tls_cert) | set_str(tls, "key", f->tls_key) |
               set_str(tls, "client_ca", f->tls_client_ca) | set_str(tls, "priority", f->tls_priority);
        if (f->tls_client_subject) {
          json_t *subs = json_array();
          bad |= !subs || json_object_set_new(tls, "client_subjects", subs);
          if (subs) {
            json_t *s = json_stringn_nocheck(f->tls_client_subject, strlen(f->tls_client_subject));
            bad |= !s || json_array_append_new(subs, s);
          }
        }
      }
    }
    bad |= set_str(root, "ping_path", f->ping_path) | set_str(root, "log_level", f->log_level);
    if (f->threads) bad |= json_object_set_new(root, "threads", json_integer(f->threads));
    bad |= set_str(store, "uri_prefix", f->uri_prefix) | set_str(store, "region", f->region) |
           set_str(store, "pkcs11_module", f->pkcs11_module) | set_str(store, "health_key", f->health_key);
    if (f->session_pool)
      bad |= json_object_set_new(store, "session_pool", json_integer(f->session_pool));
    if (f->quota_rps != 0) {
      json_t *q = json_object();
      bad |= !q || json_object_set_new(store, "quota", q);
      if (q) bad |= json_object_set_new(q, "requests_per_second", json_real(f->quota_rps));
    }
    if (f->access_key_id || f->secret_access_key) {
      bad |= !(cred = json_object()) || json_array_append_new(creds, cred);
      if (cred)
        bad |= set_str(cred, "access_key_id", f->access_key_id) |
               set_str(cred, "secret_access_key", f->secret_access_key);
    }
    if (f->access_key_id_2 || f->secret_access_key_2) {
      bad |= !(cred = json_object()) || json_array_append_new(creds, cred);
      if (cred)
        bad |= set_str(cred, "access_key_id", f->access_key_id_2) |
               set_str(cred, "secret_access_key", f->secret_access_key_2);
    }
    bad |= json_object_set(store, "credentials", creds);
    bad |= set_str(token, "label", f->token_label) | set_str(token, "pin", f->pin) |
           set_str(token, "pin_file", f->pin_file);
    bad |= json_array_append(tokens, token) | json_object_set(store, "tokens", tokens);
    bad |= json_array_append(stores, store) | json_object_set(root, "key_stores", stores);
  }
  json_decref(creds);
  json_decref(token);
  json_decref(tokens);
  json_decref(store);
  json_decref(stores);
  if (bad) {
    tree_free(root);
    return oom(c);
  }
  *out = root;
  return KERR_OK;
}

kerr_code xksp_config_from_flags(const xksp_flags *f, xksp_config **out, kerr *err) {
  cfg_ctx c;
  json_t *root = NULL;
  kerr_code rc;

  *out = NULL;
  memset(&c, 0, sizeof c);
  c.err = err;
  c.flags = 1;
  c.name = "command line";
  /* The rules between flags, named as flags (the file's messages would
   * name keys the command line does not have). */
  if (f->plain_http && (f->tls_cert || f->tls_key || f->tls_client_ca || f->tls_client_subject ||
                        f->tls_priority))
    return kerr_set(err, KERR_VALIDATION, "--plain-http: excludes --tls-cert, --tls-key and the other --tls-* flags");
  if (!f->plain_http && (!f->tls_cert || !f->tls_key))
    return kerr_set(err, KERR_VALIDATION, "%s: is required (or --plain-http)",
                    f->tls_cert ? "--tls-key" : "--tls-cert");
  if (f->pin && f->pin_file)
    return kerr_set(err, KERR_VALIDATION, "--pin-file: give --pin or --pin-file, not both");
  if (!f->pin && !f->pin_file)
    return kerr_set(err, KERR_VALIDATION, "--pin: is required (or --pin-file)");
  if (!f->access_key_id) return kerr_set(err, KERR_VALIDATION, "--access-key-id: is required");
  if (!f->secret_access_key) return kerr_set(err, KERR_VALIDATION, "--secret-access-key: is required");
  if (!f->access_key_id_2 != !f->secret_access_key_2)
    return kerr_set(err, KERR_VALIDATION, "%s: is required with %s",
                    f->access_key_id_2 ? "--secret-access-key-2" : "--access-key-id-2",
                    f->access_key_id_2 ? "--access-key-id-2" : "--secret-access-key-2");
  if (f->quota_rps < 0 || isnan(f->quota_rps))
    return kerr_set(err, KERR_VALIDATION, "--quota-rps: must be a number above 0 and at most %g", CFG_RPS_MAX);
  if ((rc = flags_tree(&c, f, &root)) == KERR_OK) rc = build(&c, root, "command line", out);
  tree_free(root);
  return rc;
}
