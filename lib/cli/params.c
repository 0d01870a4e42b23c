/* params.c - argv to an operation's JSON request, per the AWS model, for the
 * `kms` command line (see params.h for the rules and why they are the AWS
 * CLI's).
 *
 * Three passes, in the order the AWS CLI reports its errors:
 *   1. scan: the tokens, read as an argument parser reads them, into one
 *      slot per option (usage errors, exit 2), then the leftovers ("Unknown
 *      options", 252);
 *   2. convert: each option's tokens into a JSON value by its member's
 *      shape (file://, JSON or shorthand, integers, flags; 252);
 *   3. wire: the merged request walked along the model, turning blobs and
 *      timestamps into their wire form (bad base64, 252).
 * Validating the result (types, required and unknown members, minimums) is
 * cli_validate_request's, in lib/cli/validate.c. */
#include "cli/params.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/shorthand.h"
#include "cli/validate.h"
#include "core/codec.h"

/* ---- names ---------------------------------------------------------------- */

const char *cli_kebab_name(const char *model_name, char *buf, size_t size) {
  size_t o = 0;
  if (!buf || size == 0) return buf;
  for (size_t i = 0; model_name && model_name[i]; i++) {
    unsigned char c = (unsigned char)model_name[i];
    if (i > 0 && isupper(c)) {
      unsigned char prev = (unsigned char)model_name[i - 1];
      unsigned char next = (unsigned char)model_name[i + 1];
      int after_lower = islower(prev) || isdigit(prev);
      int ends_capital_run = isupper(prev) && next && islower(next);
      if ((after_lower || ends_capital_run) && o + 1 < size) buf[o++] = '-';
    }
    if (o + 1 < size) buf[o++] = (char)tolower(c);
  }
  buf[o] = '\0';
  return buf;
}

const model_op *cli_find_op(const model_service *svc, const char *kebab) {
  char name[160];
  if (!svc || !kebab) return NULL;
  for (size_t i = 0; i < svc->op_count; i++) {
    cli_kebab_name(svc->ops[i].name, name, sizeof name);
    if (strcmp(name, kebab) == 0) return &svc->ops[i];
  }
  return NULL;
}

/* ---- a growing message ------------------------------------------------------ */

typedef struct msgbuf {
  char text[KERR_MSG_MAX];
  size_t len;
} msgbuf;

static void msg_add(msgbuf *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void msg_add(msgbuf *m, const char *fmt, ...) {
  va_list ap;
  int n;
  if (m->len + 1 >= sizeof m->text) return;
  va_start(ap, fmt);
  n = vsnprintf(m->text + m->len, sizeof m->text - m->len, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  m->len += (size_t)n;
  if (m->len >= sizeof m->text) m->len = sizeof m->text - 1;
}

/* ---- the build ------------------------------------------------------------------ */

typedef struct opt_slot {
  const model_member *member;
  char name[128];          /* "--key-id" */
  char no_name[132];       /* "--no-multi-region" for booleans, else "" */
  int is_flag;             /* boolean member */
  int is_multi;            /* list member: any number of values */
  int seen;
  int flag_value;
  int first, count;        /* tokens argv[first .. first+count) */
  const char *explicit_value; /* the text after '=' in --name=value */
} opt_slot;

typedef struct build {
  const model_op *op;
  int raw_blobs;
  int exit_code;
  kerr *err;
  opt_slot *slots;
  size_t nslots;
  const char *file_error_prefix; /* "Error parsing parameter '--x': " for a whole value, "" inside shorthand */
} build;

static kerr_code fail_usage(build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static kerr_code fail_usage(build *b, const char *fmt, ...) {
  va_list ap;
  char text[KERR_MSG_MAX];
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  b->exit_code = CLI_PARAMS_EXIT_USAGE;
  return kerr_set(b->err, KERR_VALIDATION, "%s", text);
}

static kerr_code fail_param(build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static kerr_code fail_param(build *b, const char *fmt, ...) {
  va_list ap;
  char text[KERR_MSG_MAX];
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  b->exit_code = CLI_PARAMS_EXIT_PARAM;
  return kerr_set(b->err, KERR_VALIDATION, "%s", text);
}

static kerr_code fail_nomem(build *b) {
  b->exit_code = 255;
  return kerr_set(b->err, KERR_INTERNAL, "out of memory");
}

/* ---- pass 1: the scan --------------------------------------------------------- */

typedef enum tok_kind { TOK_VALUE, TOK_OPTION, TOK_UNKNOWN } tok_kind;

/* "-5", "-.5", "-1.25": values, not options (the parser has no option that
 * looks like a negative number). */
static int looks_negative_number(const char *s) {
  const char *p = s + 1;
  const char *dot;
  if (s[0] != '-' || !*p) return 0;
  dot = strchr(p, '.');
  for (const char *q = p; *q; q++) {
    if (q == dot) continue;
    if (!isdigit((unsigned char)*q)) return 0;
  }
  if (dot) return dot[1] != '\0'; /* "-5." is not a number to the parser */
  return 1;
}

/* Classify `tok`; for an option, *slot and *is_no say which and
 * *explicit_value the text after '=' (or NULL).  An ambiguous prefix fails
 * the build (rc non-zero). */
static kerr_code classify(build *b, const char *tok, tok_kind *kind, opt_slot **slot, int *is_no,
                          const char **explicit_value) {
  const char *eq;
  size_t name_len;
  opt_slot *match = NULL;
  int match_no = 0, nmatch = 0;
  char names[KERR_MSG_MAX];
  size_t nl = 0;

  *kind = TOK_VALUE;
  *slot = NULL;
  *is_no = 0;
  *explicit_value = NULL;
  if (tok[0] != '-' || tok[1] == '\0') return KERR_OK;
  eq = strchr(tok, '=');
  name_len = eq ? (size_t)(eq - tok) : strlen(tok);
  /* Exact names first, with or without "=value". */
  for (size_t i = 0; i < b->nslots; i++) {
    opt_slot *s = &b->slots[i];
    if (strlen(s->name) == name_len && strncmp(s->name, tok, name_len) == 0) {
      match = s;
      match_no = 0;
      nmatch = 1;
      break;
    }
    if (s->no_name[0] && strlen(s->no_name) == name_len && strncmp(s->no_name, tok, name_len) == 0) {
      match = s;
      match_no = 1;
      nmatch = 1;
      break;
    }
  }
  /* Then an unambiguous prefix of a long option. */
  if (!nmatch && tok[1] == '-') {
    names[0] = '\0';
    for (size_t i = 0; i < b->nslots; i++) {
      opt_slot *s = &b->slots[i];
      for (int no = 0; no < 2; no++) {
        const char *n = no ? s->no_name : s->name;
        if (!n[0] || strncmp(n, tok, name_len) != 0) continue;
        nmatch++;
        match = s;
        match_no = no;
        if (nl + strlen(n) + 3 < sizeof names) {
          nl += (size_t)snprintf(names + nl, sizeof names - nl, "%s%s", nl ? ", " : "", n);
        }
      }
    }
    if (nmatch > 1) return fail_usage(b, "ambiguous option: %s could match %s", tok, names);
  }
  if (nmatch == 1) {
    *kind = TOK_OPTION;
    *slot = match;
    *is_no = match_no;
    *explicit_value = eq ? eq + 1 : NULL;
    return KERR_OK;
  }
  if (looks_negative_number(tok) || strchr(tok, ' ')) return KERR_OK;
  *kind = TOK_UNKNOWN;
  return KERR_OK;
}

static kerr_code scan(build *b, int argc, char *const argv[], int check_required) {
  kerr_code rc = KERR_OK;
  int after_dashdash = 0;
  msgbuf unknown = {.len = 0};
  int nunknown = 0;

  unknown.text[0] = '\0';
  for (int i = 0; i < argc;) {
    const char *tok = argv[i];
    tok_kind kind = TOK_VALUE;
    opt_slot *s = NULL;
    int is_no = 0;
    const char *explicit_value = NULL;

    if (!after_dashdash && strcmp(tok, "--") == 0) {
      after_dashdash = 1; /* everything after it is a value, never an option */
      i++;
      continue;
    }
    if (!after_dashdash) {
      rc = classify(b, tok, &kind, &s, &is_no, &explicit_value);
      if (rc) return rc;
    }
    if (kind != TOK_OPTION) {
      msg_add(&unknown, "%s%s", nunknown ? ", " : "", tok);
      nunknown++;
      i++;
      continue;
    }
    i++;
    if (s->is_flag) {
      if (explicit_value)
        return fail_usage(b, "argument %s: ignored explicit argument '%s'", is_no ? s->no_name : s->name,
                          explicit_value);
      s->seen = 1;
      s->flag_value = !is_no;
      continue;
    }
    s->explicit_value = explicit_value;
    s->first = i;
    s->count = 0;
    if (!explicit_value) {
      /* Take the values that follow: one, or all of them for a list. */
      while (i < argc && strcmp(argv[i], "--") != 0) {
        tok_kind next = TOK_VALUE;
        opt_slot *ns = NULL;
        int nno = 0;
        const char *nev = NULL;
        rc = classify(b, argv[i], &next, &ns, &nno, &nev);
        if (rc) return rc;
        if (next != TOK_VALUE) break;
        s->count++;
        i++;
        if (!s->is_multi) break;
      }
      /* A list takes zero values or more (`--grant-tokens` alone is an
       * empty list), anything else exactly one. */
      if (s->count == 0 && !s->is_multi) return fail_usage(b, "argument %s: expected one argument", s->name);
    }
    s->seen = 1;
  }
  if (check_required) {
    msgbuf missing = {.len = 0};
    int nmissing = 0;
    missing.text[0] = '\0';
    for (size_t k = 0; k < b->nslots; k++) {
      const opt_slot *s = &b->slots[k];
      if (s->member->required && !s->is_flag && !s->seen) {
        msg_add(&missing, "%s%s", nmissing ? ", " : "", s->name);
        nmissing++;
      }
    }
    if (nmissing) return fail_usage(b, "the following arguments are required: %s", missing.text);
  }
  if (nunknown) return fail_param(b, "Unknown options: %s", unknown.text);
  return KERR_OK;
}

/* ---- files ------------------------------------------------------------------------ */

/* Is s[0..n) well-formed UTF-8 (no overlongs, no surrogates)? */
static int utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t need;
    unsigned cp;
    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF) need = 1, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) need = 2, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) need = 3, cp = c & 0x07;
    else return 0;
    for (size_t k = 1; k <= need; k++) {
      if (i + k >= n || (s[i + k] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
      return 0;
    i += need + 1;
  }
  return 1;
}

/* Read the file a file:// or fileb:// value names.  *data (malloc'd, NUL
 * terminated, owned by the caller) and *len on success. */
static kerr_code read_param_file(build *b, const char *value, const char *path, int binary, char **data,
                                 size_t *len) {
  FILE *f = NULL;
  struct stat st;
  char *buf = NULL;
  size_t n = 0;
  kerr_code rc = KERR_OK;

  *data = NULL;
  *len = 0;
  f = fopen(path, "rb");
  if (!f) {
    int e = errno;
    rc = fail_param(b, "%sUnable to load paramfile %s: [Errno %d] %s: '%s'", b->file_error_prefix, value, e,
                    strerror(e), path);
    goto out;
  }
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    rc = fail_param(b, "%sUnable to load paramfile %s: [Errno %d] %s: '%s'", b->file_error_prefix, value, EISDIR,
                    strerror(EISDIR), path);
    goto out;
  }
  buf = malloc(CLI_PARAMS_MAX_FILE + 2);
  if (!buf) {
    rc = fail_nomem(b);
    goto out;
  }
  n = fread(buf, 1, CLI_PARAMS_MAX_FILE + 1, f);
  if (ferror(f)) {
    int e = errno ? errno : EIO;
    rc = fail_param(b, "%sUnable to load paramfile %s: [Errno %d] %s: '%s'", b->file_error_prefix, value, e,
                    strerror(e), path);
    goto out;
  }
  if (n > CLI_PARAMS_MAX_FILE) {
    rc = fail_param(b, "%sUnable to load paramfile %s: larger than %u bytes", b->file_error_prefix, value,
                    CLI_PARAMS_MAX_FILE);
    goto out;
  }
  buf[n] = '\0';
  if (!binary && !utf8_valid((const unsigned char *)buf, n)) {
    rc = fail_param(b, "%sUnable to load paramfile (%s), text contents could not be decoded.  If this is a binary "
                    "file, please use the fileb:// prefix instead of the file:// prefix.", b->file_error_prefix, value);
    goto out;
  }
  if (!binary && memchr(buf, '\0', n)) {
    rc = fail_param(b, "%sUnable to load paramfile %s: the text holds a NUL character", b->file_error_prefix, value);
    goto out;
  }
  *data = buf;
  *len = n;
  buf = NULL;
out:
  free(buf);
  if (f) fclose(f);
  return rc;
}

/* A value's text after file:// resolution: *out is a new string value, or a
 * marker object {"\x01bytes": base64} for fileb:// contents (bytes are only
 * meaningful to a blob; the check pass unwraps it). */
#define FILEB_MARK "\x01" "fileb"

static kerr_code resolve_paramfile(build *b, const char *value, json_t **out) {
  char *data = NULL;
  size_t len = 0;
  kerr_code rc;
  *out = NULL;
  if (strncmp(value, "fileb://", 8) == 0) {
    char *text;
    rc = read_param_file(b, value, value + 8, 1, &data, &len);
    if (rc) return rc;
    text = malloc(b64_encoded_size(len));
    if (!text) {
      free(data);
      return fail_nomem(b);
    }
    b64_encode((const uint8_t *)data, len, text);
    free(data);
    *out = json_pack("{s:s}", FILEB_MARK, text);
    free(text);
    return *out ? KERR_OK : fail_nomem(b);
  }
  if (strncmp(value, "file://", 7) == 0) {
    rc = read_param_file(b, value, value + 7, 0, &data, &len);
    if (rc) return rc;
    *out = json_stringn(data, len);
    free(data);
    return *out ? KERR_OK : fail_nomem(b);
  }
  *out = json_string(value);
  if (!*out) return fail_param(b, "Error parsing parameter: the value is not UTF-8");
  return KERR_OK;
}

static int is_fileb(const json_t *v) {
  return json_is_object(v) && json_object_size(v) == 1 && json_object_get(v, FILEB_MARK);
}

/* ---- pass 2: conversion -------------------------------------------------------------- */

/* Python's int() on text: optional whitespace, sign, digits with single
 * underscores between them.  0 and *out on success. */
static int parse_int_text(const char *s, long long *out) {
  const char *p = s;
  char digits[64];
  size_t nd = 0;
  int neg = 0;
  char *end = NULL;
  while (isspace((unsigned char)*p)) p++;
  if (*p == '+' || *p == '-') neg = *p++ == '-';
  if (!isdigit((unsigned char)*p)) return -1;
  digits[nd++] = neg ? '-' : '+';
  while (*p) {
    if (isdigit((unsigned char)*p)) {
      if (nd + 1 >= sizeof digits) return -1;
      digits[nd++] = *p++;
    } else if (*p == '_' && isdigit((unsigned char)p[1]) && isdigit((unsigned char)p[-1])) {
      p++;
    } else {
      break;
    }
  }
  while (isspace((unsigned char)*p)) p++;
  if (*p) return -1;
  digits[nd] = '\0';
  errno = 0;
  *out = strtoll(digits, &end, 10);
  if (errno == ERANGE || *end) return -1;
  return 0;
}

static kerr_code int_from_text(build *b, const char *text, json_t **out) {
  long long v;
  if (parse_int_text(text, &v) != 0) return fail_param(b, "invalid literal for int() with base 10: '%s'", text);
  *out = json_integer((json_int_t)v);
  return *out ? KERR_OK : fail_nomem(b);
}

static kerr_code double_from_text(build *b, const char *text, json_t **out) {
  char *end = NULL;
  double v;
  errno = 0;
  v = strtod(text, &end);
  while (end && isspace((unsigned char)*end)) end++;
  if (end == text || !end || *end || !isfinite(v)) return fail_param(b, "could not convert string to float: '%s'", text);
  *out = json_real(v);
  return *out ? KERR_OK : fail_nomem(b);
}

static int ascii_ieq(const char *a, const char *z) {
  for (; *a && *z; a++, z++)
    if (tolower((unsigned char)*a) != tolower((unsigned char)*z)) return 0;
  return *a == *z;
}

/* The AWS CLI's model step after shorthand: text becomes what the shape
 * wants (numbers, booleans), a lone value where a list is wanted a one-item
 * list.  Values of other kinds are left for the check pass to refuse.
 * Steals `v`; *out is the converted value. */
static kerr_code shorthand_apply(build *b, const model_shape *shape, json_t *v, json_t **out, unsigned depth) {
  kerr_code rc = KERR_OK;
  *out = NULL;
  if (depth > CLI_PARAMS_MAX_DEPTH) {
    json_decref(v);
    return fail_param(b, "Error parsing parameter: nested deeper than %u", CLI_PARAMS_MAX_DEPTH);
  }
  switch (shape->type) {
  case MODEL_STRUCTURE:
    if (json_is_object(v)) {
      const char *key;
      json_t *item;
      json_object_foreach(v, key, item) {
        const model_member *m = model_find_member(shape, key);
        json_t *conv = NULL;
        if (!m) continue;
        rc = shorthand_apply(b, m->shape, json_incref(item), &conv, depth + 1);
        if (rc) break;
        if (json_object_set_new(v, key, conv)) {
          rc = fail_nomem(b);
          break;
        }
      }
    }
    break;
  case MODEL_MAP:
    if (json_is_object(v)) {
      const char *key;
      json_t *item;
      json_object_foreach(v, key, item) {
        json_t *conv = NULL;
        rc = shorthand_apply(b, shape->value, json_incref(item), &conv, depth + 1);
        if (rc) break;
        if (json_object_set_new(v, key, conv)) {
          rc = fail_nomem(b);
          break;
        }
      }
    }
    break;
  case MODEL_LIST:
    if (!json_is_array(v)) {
      json_t *list = json_array();
      if (!list || json_array_append_new(list, v)) {
        json_decref(list);
        return fail_nomem(b);
      }
      v = list;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
      json_t *conv = NULL;
      rc = shorthand_apply(b, shape->member, json_incref(json_array_get(v, i)), &conv, depth + 1);
      if (rc) break;
      if (json_array_set_new(v, i, conv)) {
        rc = fail_nomem(b);
        break;
      }
    }
    break;
  case MODEL_INTEGER:
  case MODEL_LONG:
    if (json_is_string(v)) {
      json_t *n = NULL;
      rc = int_from_text(b, json_string_value(v), &n);
      json_decref(v);
      v = n;
    }
    break;
  case MODEL_DOUBLE:
    if (json_is_string(v)) {
      json_t *n = NULL;
      rc = double_from_text(b, json_string_value(v), &n);
      json_decref(v);
      v = n;
    }
    break;
  case MODEL_BOOLEAN:
    if (json_is_string(v)) {
      const char *t = json_string_value(v);
      if (ascii_ieq(t, "true") || ascii_ieq(t, "false")) {
        json_t *bv = json_boolean(ascii_ieq(t, "true"));
        json_decref(v);
        v = bv;
      }
    }
    break;
  default:
    break;
  }
  if (rc) {
    json_decref(v);
    return rc;
  }
  *out = v;
  return KERR_OK;
}

/* Parse `text` (the value of option `name`) as JSON. */
static kerr_code parse_json_value(build *b, const char *name, const char *text, json_t **out) {
  json_error_t je;
  *out = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
  if (!*out)
    return fail_param(b, "Error parsing parameter '%s': Invalid JSON: %s\nJSON received: %s", name, je.text, text);
  return KERR_OK;
}

/* Called by the shorthand parser for `key@=value`: file:// and fileb://. */
static kerr_code shorthand_file(void *ctx, const char *value, size_t len, json_t **replacement, kerr *e) {
  build *b = ctx;
  kerr_code rc;
  (void)len;
  *replacement = NULL;
  if (strncmp(value, "file://", 7) != 0 && strncmp(value, "fileb://", 8) != 0) return KERR_OK;
  rc = resolve_paramfile(b, value, replacement);
  if (rc && e) *e = *b->err;
  return rc;
}

static kerr_code parse_shorthand(build *b, const opt_slot *s, const char *text, json_t **out) {
  cli_shorthand_error se;
  const char *prefix = b->file_error_prefix;
  kerr_code rc;
  b->file_error_prefix = ""; /* the AWS CLI names no option for a file inside shorthand */
  rc = cli_shorthand_parse(text, shorthand_file, b, out, &se);
  b->file_error_prefix = prefix;
  if (rc == KERR_OK) return KERR_OK;
  if (se.kind == CLI_SHORTHAND_ERR_FILE) {
    cli_shorthand_error_free(&se);
    return rc; /* b->err already says which file */
  }
  if (se.kind == CLI_SHORTHAND_ERR_NOMEM) {
    cli_shorthand_error_free(&se);
    return fail_nomem(b);
  }
  rc = fail_param(b, "Error parsing parameter '%s': %s", s->name, se.message ? se.message : se.status.msg);
  cli_shorthand_error_free(&se);
  return rc;
}

static int starts_json(const char *t, char which) {
  while (isspace((unsigned char)*t)) t++;
  return which ? *t == which : (*t == '{' || *t == '[');
}

/* A scalar option's token (after file:// resolution) by its shape. */
static kerr_code convert_scalar(build *b, const model_shape *shape, json_t *text, json_t **out) {
  *out = NULL;
  if (is_fileb(text) || !json_is_string(text)) {
    *out = json_incref(text);
    return KERR_OK;
  }
  switch (shape->type) {
  case MODEL_INTEGER:
  case MODEL_LONG: return int_from_text(b, json_string_value(text), out);
  case MODEL_DOUBLE: return double_from_text(b, json_string_value(text), out);
  default: *out = json_incref(text); return KERR_OK;
  }
}

/* One complex value (structure, map or list item of those) from one token. */
static kerr_code convert_complex_token(build *b, const opt_slot *s, const model_shape *shape, const char *tok,
                                       int allow_json, json_t **out) {
  json_t *v = NULL;
  kerr_code rc;
  *out = NULL;
  if (allow_json && starts_json(tok, 0)) {
    rc = parse_json_value(b, s->name, tok, &v);
    if (rc) return rc;
    if (!json_is_object(v) && !(shape->type == MODEL_LIST && json_is_array(v))) {
      json_decref(v);
      return fail_param(b, "Error parsing parameter '%s': Invalid JSON:\n%s", s->name, tok);
    }
    *out = v;
    return KERR_OK;
  }
  rc = parse_shorthand(b, s, tok, &v);
  if (rc) return rc;
  return shorthand_apply(b, shape, v, out, 0);
}

static kerr_code convert_option(build *b, const opt_slot *s, char *const argv[], json_t **out) {
  const model_shape *shape = s->member->shape;
  int count = s->explicit_value ? 1 : s->count;
  const char *first = s->explicit_value ? s->explicit_value : argv[s->first];
  json_t *resolved = NULL, *list = NULL;
  kerr_code rc = KERR_OK;

  *out = NULL;
  if (s->is_flag) {
    *out = json_boolean(s->flag_value);
    return *out ? KERR_OK : fail_nomem(b);
  }
  if (count == 0) {
    *out = json_array(); /* a list option given without values */
    return *out ? KERR_OK : fail_nomem(b);
  }
  /* file:// and fileb:// apply to the value as a whole: one token. */
  if (count == 1) {
    rc = resolve_paramfile(b, first, &resolved);
    if (rc) return rc;
  }
  if (shape->type != MODEL_LIST && shape->type != MODEL_STRUCTURE && shape->type != MODEL_MAP) {
    rc = convert_scalar(b, shape, resolved, out);
    goto out;
  }
  if (shape->type == MODEL_STRUCTURE || shape->type == MODEL_MAP) {
    if (!json_is_string(resolved)) {
      rc = fail_param(b, "Error parsing parameter '%s': the file holds bytes, not text", s->name);
      goto out;
    }
    rc = convert_complex_token(b, s, shape, json_string_value(resolved), 1, out);
    goto out;
  }
  /* A list. */
  {
    const model_shape *item = shape->member;
    int complex_items = item->type == MODEL_STRUCTURE || item->type == MODEL_MAP || item->type == MODEL_LIST;
    if (count == 1 && json_is_string(resolved) &&
        (starts_json(json_string_value(resolved), '[') ||
         (complex_items && starts_json(json_string_value(resolved), '{')))) {
      const char *text = json_string_value(resolved);
      rc = parse_json_value(b, s->name, text, out);
      if (rc) goto out;
      if (json_is_object(*out)) {
        list = json_array();
        if (!list || json_array_append(list, *out)) {
          rc = fail_nomem(b);
          goto out;
        }
        json_decref(*out);
        *out = list;
        list = NULL;
      }
      goto out;
    }
    list = json_array();
    if (!list) {
      rc = fail_nomem(b);
      goto out;
    }
    /* Several values, the first one JSON: each one is a JSON item. */
    if (count > 1 && complex_items && starts_json(argv[s->first], 0)) {
      for (int i = 0; i < count && (size_t)i <= CLI_PARAMS_MAX_ITEMS; i++) {
        const char *tok = argv[s->first + i];
        json_error_t je;
        json_t *v = json_loads(tok, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
        if (!v && i == 0) {
          rc = fail_param(b, "Error parsing parameter '%s': Invalid JSON: %s\nJSON received: %s", s->name, je.text,
                          tok);
          goto out;
        }
        if (!v || !json_is_object(v)) {
          json_decref(v);
          rc = fail_param(b, "Error parsing parameter '%s': Invalid JSON:\n%s", s->name, tok);
          goto out;
        }
        if (json_array_append_new(list, v)) {
          rc = fail_nomem(b);
          goto out;
        }
      }
      *out = list;
      list = NULL;
      goto out;
    }
    if ((size_t)count > CLI_PARAMS_MAX_ITEMS) {
      rc = fail_param(b, "Error parsing parameter '%s': more than %u values", s->name, CLI_PARAMS_MAX_ITEMS);
      goto out;
    }
    for (int i = 0; i < count; i++) {
      json_t *v = NULL;
      if (count == 1) {
        if (complex_items) {
          if (!json_is_string(resolved)) {
            rc = fail_param(b, "Error parsing parameter '%s': the file holds bytes, not text", s->name);
            goto out;
          }
          rc = convert_complex_token(b, s, item, json_string_value(resolved), 0, &v);
        } else {
          rc = convert_scalar(b, item, resolved, &v);
        }
      } else {
        json_t *tok = json_string(argv[s->first + i]);
        if (!tok) {
          rc = fail_param(b, "Error parsing parameter '%s': the value is not UTF-8", s->name);
          goto out;
        }
        if (complex_items) rc = convert_complex_token(b, s, item, argv[s->first + i], 0, &v);
        else rc = convert_scalar(b, item, tok, &v);
        json_decref(tok);
      }
      if (rc) goto out;
      if (json_array_append_new(list, v)) {
        rc = fail_nomem(b);
        goto out;
      }
    }
    *out = list;
    list = NULL;
  }
out:
  json_decref(resolved);
  json_decref(list);
  if (rc) {
    json_decref(*out);
    *out = NULL;
  }
  return rc;
}

/* ---- pass 3: the wire form ------------------------------------------------------------- */

/* The merged request is walked along the model once, to put blobs and
 * timestamps in their wire form: base64 text (from fileb:// bytes, from raw
 * text with raw-in-base64-out, or base64 re-encoded canonically) and epoch
 * seconds.  A value of the wrong type is left as it is: judging types,
 * required and unknown members and minimums is cli_validate_request's
 * (lib/cli/validate.c), the one client-side validator, which the caller
 * runs on the result.  What the validator cannot see is reported here,
 * alone and before any validation (wire_pass.fault); version 2 reports bad
 * base64 that way too. */
typedef struct wire_pass {
  build *b;
  /* The first fault that must be reported before validation: bad base64,
   * file bytes where text is wanted (no JSON value is bytes, so the
   * validator cannot see them), a list or map past CLI_PARAMS_MAX_ITEMS. */
  char fault[KERR_MSG_MAX];
  int too_deep;
  int nomem;
} wire_pass;

static const char *python_type(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_STRING: return "<class 'str'>";
  case JSON_INTEGER: return "<class 'int'>";
  case JSON_REAL: return "<class 'float'>";
  case JSON_TRUE:
  case JSON_FALSE: return "<class 'bool'>";
  case JSON_ARRAY: return "<class 'list'>";
  case JSON_OBJECT: return is_fileb(v) ? "<class 'bytes'>" : "<class 'dict'>";
  default: return "<class 'NoneType'>";
  }
}

/* Base64 text as a message quotes it: as it is, or a placeholder when its
 * shape is sensitive (the text may be the secret itself). */
static void show_base64_text(const json_t *v, int sensitive, char *out, size_t size) {
  snprintf(out, size, "%s", sensitive ? CLI_VALIDATE_HIDDEN : json_string_value(v));
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static long long days_from_civil(long long y, unsigned m, unsigned d) {
  long long era;
  unsigned yoe, doy, doe;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = (unsigned)(y - era * 400);
  doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (long long)doe - 719468;
}

static int read_digits(const char **p, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (!isdigit((unsigned char)(*p)[i])) return -1;
    v = v * 10 + ((*p)[i] - '0');
  }
  *p += n;
  *out = v;
  return 0;
}

/* ISO 8601 (date, optional [T ]time with seconds and fraction, optional Z
 * or offset; no zone means UTC) or epoch seconds, to epoch seconds (a
 * fraction is dropped towards the past). 0 on success. */
static int parse_timestamp_text(const char *s, long long *out) {
  const char *p = s;
  int y, mo, d, h = 0, mi = 0, sec = 0, oh = 0, om = 0, sign = 0;
  char *end = NULL;
  double epoch;
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

  while (isspace((unsigned char)*p)) p++;
  errno = 0;
  epoch = strtod(p, &end);
  if (end != p && isdigit((unsigned char)p[strspn(p, "+-")])) {
    while (isspace((unsigned char)*end)) end++;
    if (*end == '\0' && errno != ERANGE && isfinite(epoch) && fabs(epoch) < 1e15) {
      *out = (long long)floor(epoch);
      return 0;
    }
  }
  if (read_digits(&p, 4, &y) || *p++ != '-' || read_digits(&p, 2, &mo) || *p++ != '-' || read_digits(&p, 2, &d))
    return -1;
  if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1]) return -1;
  if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return -1;
  if (*p == 'T' || *p == 't' || *p == ' ') {
    p++;
    if (read_digits(&p, 2, &h) || *p++ != ':' || read_digits(&p, 2, &mi)) return -1;
    if (*p == ':') {
      p++;
      if (read_digits(&p, 2, &sec)) return -1;
      if (*p == '.' || *p == ',') {
        p++;
        if (!isdigit((unsigned char)*p)) return -1;
        while (isdigit((unsigned char)*p)) p++;
      }
    }
    if (h > 23 || mi > 59 || sec > 59) return -1;
    if (*p == 'Z' || *p == 'z') {
      p++;
    } else if (*p == '+' || *p == '-') {
      sign = *p++ == '-' ? -1 : 1;
      if (read_digits(&p, 2, &oh)) return -1;
      if (*p == ':') p++;
      if (*p && read_digits(&p, 2, &om)) return -1;
      if (oh > 23 || om > 59) return -1;
    }
  }
  while (isspace((unsigned char)*p)) p++;
  if (*p) return -1;
  *out = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec -
         sign * (oh * 3600 + om * 60);
  return 0;
}

/* Base64 text as the CLI's decoder takes it: the standard alphabet,
 * length a multiple of four, padding only at the end.  Bits under the
 * padding are ignored, as Python ignores them; the wire form is the
 * canonical re-encoding.  *canonical is malloc'd. */
static int base64_canonical(const char *s, size_t n, char **canonical) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  uint8_t *bytes;
  size_t nb = 0, pad = 0;
  uint32_t acc = 0;
  int bits = 0;
  *canonical = NULL;
  if (n % 4 != 0) return -1;
  while (pad < 2 && pad < n && s[n - 1 - pad] == '=') pad++;
  bytes = malloc(n / 4 * 3 + 1);
  if (!bytes) return -2;
  for (size_t i = 0; i < n - pad; i++) {
    const char *hit = s[i] ? strchr(alphabet, s[i]) : NULL;
    if (!hit) {
      free(bytes);
      return -1;
    }
    acc = (acc << 6) | (uint32_t)(hit - alphabet);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes[nb++] = (uint8_t)(acc >> bits);
    }
  }
  if ((n - pad) % 4 == 1) {
    free(bytes);
    return -1;
  }
  *canonical = malloc(b64_encoded_size(nb));
  if (!*canonical) {
    free(bytes);
    return -2;
  }
  b64_encode(bytes, nb, *canonical);
  free(bytes);
  return 0;
}


static json_t *to_wire(wire_pass *w, const model_shape *shape, json_t *v, const char *path, unsigned depth);

static void wire_fault(wire_pass *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wire_fault(wire_pass *w, const char *fmt, ...) {
  va_list ap;
  if (w->fault[0]) return;
  va_start(ap, fmt);
  vsnprintf(w->fault, sizeof w->fault, fmt, ap);
  va_end(ap);
}

/* Replace `child` (a borrowed member of an object, or item `index` of an
 * array when key is NULL) by its wire form. */
static void wire_member(wire_pass *w, const model_shape *shape, json_t *parent, const char *key, size_t index,
                        json_t *child, const char *path, unsigned depth) {
  char sub[512];
  json_t *conv;
  if (key)
    snprintf(sub, sizeof sub, "%s%s%s", path, path[0] ? "." : "", key);
  else
    snprintf(sub, sizeof sub, "%s[%zu]", path, index);
  conv = to_wire(w, shape, json_incref(child), sub, depth + 1);
  if (conv == child) {
    json_decref(conv);
    return;
  }
  if (key ? json_object_set_new(parent, key, conv) : json_array_set_new(parent, index, conv)) w->nomem = 1;
}

/* A blob's wire form: a new reference, or `v` itself when it cannot be one. */
static json_t *blob_to_wire(wire_pass *w, const model_shape *shape, json_t *v) {
  json_t *wire = NULL;
  if (is_fileb(v)) {
    wire = json_incref(json_object_get(v, FILEB_MARK));
  } else if (!json_is_string(v)) {
    return v;
  } else if (w->b->raw_blobs) {
    size_t n = json_string_length(v);
    char *text = malloc(b64_encoded_size(n));
    if (text) {
      b64_encode((const uint8_t *)json_string_value(v), n, text);
      wire = json_string(text);
      free(text);
    }
  } else {
    char *canonical = NULL;
    if (base64_canonical(json_string_value(v), json_string_length(v), &canonical) == -1) {
      char shown[256];
      show_base64_text(v, shape->sensitive, shown, sizeof shown);
      wire_fault(w, "Invalid base64: \"%s\"", shown);
      return v;
    }
    wire = canonical ? json_string(canonical) : NULL;
    free(canonical);
  }
  if (!wire) {
    w->nomem = 1;
    return v;
  }
  json_decref(v);
  return wire;
}

/* A timestamp's wire form (epoch seconds; a fraction dropped towards the
 * past), or `v` itself when it is not one the CLI can read. */
static json_t *timestamp_to_wire(wire_pass *w, json_t *v) {
  long long epoch;
  json_t *wire;
  if (json_is_real(v))
    wire = json_integer((json_int_t)floor(json_real_value(v)));
  else if (json_is_string(v) && parse_timestamp_text(json_string_value(v), &epoch) == 0)
    wire = json_integer((json_int_t)epoch);
  else
    return v;
  if (!wire) {
    w->nomem = 1;
    return v;
  }
  json_decref(v);
  return wire;
}

/* `v` (a new reference, stolen) in wire form for `shape`: a new reference,
 * `v` itself or its replacement.  `path` names it as the CLI's messages do
 * ("" for the request). */
static json_t *to_wire(wire_pass *w, const model_shape *shape, json_t *v, const char *path, unsigned depth) {
  const char *key;
  json_t *item;
  size_t size = json_is_array(v) ? json_array_size(v) : json_is_object(v) ? json_object_size(v) : 0;
  if (depth > CLI_PARAMS_MAX_DEPTH) {
    w->too_deep = 1;
    return v;
  }
  if (is_fileb(v) && shape->type != MODEL_BLOB) {
    wire_fault(w, "Parameter validation failed:\nInvalid type for parameter %s, value: (bytes), "
                  "type: <class 'bytes'>, valid types: %s",
               path[0] ? path : "input", cli_validate_valid_types(shape->type));
    return v;
  }
  if (size > CLI_PARAMS_MAX_ITEMS && (shape->type == MODEL_LIST || shape->type == MODEL_MAP)) {
    wire_fault(w, "Parameter validation failed:\nInvalid length for parameter %s, value: %zu, valid max length: %u",
               path[0] ? path : "input", size, CLI_PARAMS_MAX_ITEMS);
    return v;
  }
  switch (shape->type) {
  case MODEL_STRUCTURE:
    if (!json_is_object(v)) return v;
    json_object_foreach(v, key, item) {
      const model_member *m = model_find_member(shape, key);
      if (m) wire_member(w, m->shape, v, key, 0, item, path, depth);
    }
    return v;
  case MODEL_MAP:
    if (!json_is_object(v)) return v;
    json_object_foreach(v, key, item) {
      wire_member(w, shape->value, v, key, 0, item, path, depth);
    }
    return v;
  case MODEL_LIST:
    if (!json_is_array(v)) return v;
    for (size_t i = 0; i < json_array_size(v); i++)
      wire_member(w, shape->member, v, NULL, i, json_array_get(v, i), path, depth);
    return v;
  case MODEL_BLOB: return blob_to_wire(w, shape, v);
  case MODEL_TIMESTAMP: return timestamp_to_wire(w, v);
  default: return v;
  }
}

/* ---- the whole ---------------------------------------------------------------------------- */

static kerr_code build_slots(build *b) {
  const model_shape *in = b->op->input;
  size_t n = in ? in->member_count : 0;
  b->nslots = n;
  if (n == 0) return KERR_OK;
  b->slots = calloc(n, sizeof *b->slots);
  if (!b->slots) return fail_nomem(b);
  for (size_t i = 0; i < n; i++) {
    opt_slot *s = &b->slots[i];
    char kebab[120];
    s->member = &in->members[i];
    cli_kebab_name(s->member->name, kebab, sizeof kebab);
    snprintf(s->name, sizeof s->name, "--%s", kebab);
    s->is_flag = s->member->shape->type == MODEL_BOOLEAN;
    s->is_multi = s->member->shape->type == MODEL_LIST;
    if (s->is_flag) snprintf(s->no_name, sizeof s->no_name, "--no-%s", kebab);
  }
  return KERR_OK;
}

kerr_code cli_params_build(const model_op *op, int argc, char *const argv[], const cli_params_opts *opts,
                           json_t **request, int *exit_code, kerr *err) {
  kerr local_err = {.code = KERR_OK};
  build b = {.op = op, .exit_code = 0, .err = err ? err : &local_err, .file_error_prefix = ""};
  json_t *req = NULL;
  kerr_code rc = KERR_OK;
  wire_pass w = {.b = &b};
  const json_t *cli_input = opts ? opts->cli_input : NULL;
  char *dump = NULL;

  if (request) *request = NULL;
  if (exit_code) *exit_code = 0;
  err = b.err;
  kerr_clear(err);
  if (!op || !request || !exit_code || (argc > 0 && !argv) || argc < 0) {
    b.exit_code = 255;
    rc = kerr_set(err, KERR_INTERNAL, "cli_params_build: missing argument");
    goto out;
  }
  b.raw_blobs = opts && opts->binary_raw_in_base64_out;
  if (argc > CLI_PARAMS_MAX_ARGS) {
    rc = fail_param(&b, "too many arguments: %d (at most %d)", argc, CLI_PARAMS_MAX_ARGS);
    goto out;
  }
  if (cli_input && !json_is_object(cli_input)) {
    rc = fail_param(&b, "Invalid type for parameter input, value: (document), type: %s, valid types: <class 'dict'>",
                    python_type(cli_input));
    goto out;
  }
  rc = build_slots(&b);
  if (rc) goto out;
  rc = scan(&b, argc, argv, cli_input == NULL);
  if (rc) goto out;

  /* The document underneath, copied deeply: the check pass rewrites values. */
  req = cli_input ? json_deep_copy(cli_input) : json_object();
  if (!req) {
    rc = fail_nomem(&b);
    goto out;
  }
  for (size_t i = 0; i < b.nslots; i++) {
    json_t *v = NULL;
    char prefix[200];
    if (!b.slots[i].seen) continue;
    snprintf(prefix, sizeof prefix, "Error parsing parameter '%s': ", b.slots[i].name);
    b.file_error_prefix = prefix;
    rc = convert_option(&b, &b.slots[i], argv, &v);
    b.file_error_prefix = "";
    if (rc) goto out;
    if (json_object_set_new(req, b.slots[i].member->name, v)) {
      rc = fail_nomem(&b);
      goto out;
    }
  }

  if (op->input) req = to_wire(&w, op->input, req, "", 0);
  if (w.nomem) {
    rc = fail_nomem(&b);
    goto out;
  }
  if (w.fault[0]) {
    rc = fail_param(&b, "%s", w.fault);
    goto out;
  }
  if (w.too_deep) {
    rc = fail_param(&b, "Invalid value for parameter input: nested deeper than %u", CLI_PARAMS_MAX_DEPTH);
    goto out;
  }
  dump = json_dumps(req, JSON_COMPACT);
  if (!dump) {
    rc = fail_nomem(&b);
    goto out;
  }
  if (strlen(dump) > CLI_PARAMS_MAX_REQUEST) {
    rc = fail_param(&b, "The request is larger than %u bytes", CLI_PARAMS_MAX_REQUEST);
    goto out;
  }
  *request = req;
  req = NULL;
out:
  free(dump);
  json_decref(req);
  free(b.slots);
  if (exit_code) *exit_code = rc ? b.exit_code : 0;
  return rc;
}
