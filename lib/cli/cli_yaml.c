/* cli_yaml.c - YAML to JSON for the `kms` command line, over libyaml's
 * event parser, with YAML 1.1 scalar typing and hard bounds (see
 * cli_yaml.h for the rules). */
#include "cli/cli_yaml.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

/* One open collection: an array, or an object with its pending key. */
typedef struct yaml_frame {
  json_t *container;
  char *key; /* object: the key read, waiting for its value; NULL if none */
} yaml_frame;

typedef struct yaml_build {
  yaml_frame stack[CLI_YAML_MAX_DEPTH + 1];
  unsigned depth;
  size_t nodes;
  json_t *root;
  int documents;
  kerr *err;
} yaml_build;

static int word_in(const char *s, const char *const *words) {
  for (size_t i = 0; words[i]; i++)
    if (strcmp(s, words[i]) == 0) return 1;
  return 0;
}

static const char *const true_words[] = {"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", NULL};
static const char *const false_words[] = {"no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", NULL};
static const char *const null_words[] = {"", "~", "null", "Null", "NULL", NULL};

/* Copy `s` without '_' into buf; 0 if it fits. */
static int strip_underscores(const char *s, char *buf, size_t size) {
  size_t o = 0;
  for (; *s; s++) {
    if (*s == '_') continue;
    if (o + 1 >= size) return -1;
    buf[o++] = *s;
  }
  buf[o] = '\0';
  return 0;
}

static int all_of(const char *s, const char *set) { return *s && strspn(s, set) == strlen(s); }

/* YAML 1.1 int: 0 with *out, 1 if not an int, -1 if an int out of range. */
static int yaml_int(const char *text, long long *out) {
  char buf[128];
  const char *p = text;
  int neg = 0;
  unsigned long long v = 0;
  if (*p == '+' || *p == '-') neg = *p++ == '-';
  if (!*p || strip_underscores(p, buf, sizeof buf) != 0) return 1;
  if (strncmp(p, "0b", 2) == 0) {
    if (!all_of(buf + 2, "01")) return 1;
    for (const char *q = buf + 2; *q; q++) {
      if (v > (UINT64_MAX >> 1)) return -1;
      v = v * 2 + (unsigned)(*q - '0');
    }
  } else if (strncmp(p, "0x", 2) == 0) {
    if (!all_of(buf + 2, "0123456789abcdefABCDEF")) return 1;
    for (const char *q = buf + 2; *q; q++) {
      int d = isdigit((unsigned char)*q) ? *q - '0' : (tolower((unsigned char)*q) - 'a' + 10);
      if (v > (UINT64_MAX >> 4)) return -1;
      v = v * 16 + (unsigned)d;
    }
  } else if (p[0] == '0' && p[1]) {
    if (!all_of(p, "01234567_") || !all_of(buf, "01234567")) return 1;
    for (const char *q = buf + 1; *q; q++) {
      if (v > (UINT64_MAX >> 3)) return -1;
      v = v * 8 + (unsigned)(*q - '0');
    }
  } else if (strchr(p, ':')) {
    /* Sexagesimal: [1-9][0-9_]*(:[0-5]?[0-9])+ */
    const char *q = p;
    if (!(*q >= '1' && *q <= '9')) return 1;
    while (*q && *q != ':') {
      if (!isdigit((unsigned char)*q) && *q != '_') return 1;
      q++;
    }
    {
      char head[64];
      size_t hl = (size_t)(q - p);
      if (hl >= sizeof head) return -1;
      memcpy(head, p, hl);
      head[hl] = '\0';
      if (strip_underscores(head, buf, sizeof buf) != 0) return 1;
      for (const char *h = buf; *h; h++) {
        if (v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (unsigned)(*h - '0');
      }
    }
    while (*q == ':') {
      unsigned part = 0;
      int digits = 0;
      q++;
      while (isdigit((unsigned char)*q) && digits < 3) part = part * 10 + (unsigned)(*q++ - '0'), digits++;
      if (digits == 0 || digits > 2 || part > 59 || (digits == 2 && q[-2] > '5')) return 1;
      if (v > (UINT64_MAX - 59) / 60) return -1;
      v = v * 60 + part;
    }
    if (*q) return 1;
  } else {
    if (!(p[0] >= '0' && p[0] <= '9')) return 1;
    if (p[0] == '0' && p[1]) return 1;
    if (!all_of(p, "0123456789_")) return 1;
    for (const char *q = buf; *q; q++) {
      if (v > (UINT64_MAX - 9) / 10) return -1;
      v = v * 10 + (unsigned)(*q - '0');
    }
  }
  if (neg ? v > (unsigned long long)INT64_MAX + 1 : v > (unsigned long long)INT64_MAX) return -1;
  *out = neg ? (long long)(0 - v) : (long long)v;
  return 0;
}

/* YAML 1.1 float: 0 with *out, 1 if not a float, -1 if not a JSON number. */
static int yaml_float(const char *text, double *out) {
  char buf[256];
  const char *p = text, *dot, *e;
  char *end = NULL;
  if (strcmp(text, ".nan") == 0 || strcmp(text, ".NaN") == 0 || strcmp(text, ".NAN") == 0) return -1;
  if (*p == '+' || *p == '-') p++;
  if (strcmp(p, ".inf") == 0 || strcmp(p, ".Inf") == 0 || strcmp(p, ".INF") == 0) return -1;
  dot = strchr(p, '.');
  if (!dot) return 1;
  if (strchr(p, ':')) return 1; /* sexagesimal floats: not worth supporting; text */
  e = strpbrk(p, "eE");
  /* [0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)? or \.[0-9][0-9_]*([eE][-+][0-9]+)? */
  if (dot == p) {
    /* ".5" is a float, "-.5" text: the sign belongs to the digit-led form */
    if (p != text || !isdigit((unsigned char)p[1])) return 1;
  } else {
    if (!isdigit((unsigned char)p[0])) return 1;
    for (const char *q = p; q < dot; q++)
      if (!isdigit((unsigned char)*q) && *q != '_') return 1;
  }
  for (const char *q = dot + 1; *q && q != e; q++)
    if (!isdigit((unsigned char)*q) && *q != '_') return 1;
  if (e) {
    if (e < dot) return 1;
    if (e[1] != '+' && e[1] != '-') return 1;
    if (!all_of(e + 2, "0123456789")) return 1;
  }
  if (strip_underscores(text, buf, sizeof buf) != 0) return 1;
  errno = 0;
  *out = strtod(buf, &end);
  if (!end || *end) return 1;
  if (!isfinite(*out)) return -1;
  return 0;
}

static kerr_code fail_at(yaml_build *b, const yaml_mark_t *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kerr_code fail_at(yaml_build *b, const yaml_mark_t *m, const char *fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  return kerr_set(b->err, KERR_VALIDATION, "YAML: %s (line %zu, column %zu)", text, m->line + 1, m->column + 1);
}

static kerr_code scalar_value(yaml_build *b, const yaml_event_t *ev, json_t **out) {
  const char *text = (const char *)ev->data.scalar.value;
  size_t len = ev->data.scalar.length;
  const char *tag = (const char *)ev->data.scalar.tag;
  int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
  long long iv;
  double dv;
  int r;

  *out = NULL;
  if (strlen(text) != len) return fail_at(b, &ev->start_mark, "%s", "a scalar holds a NUL character");
  if (tag && strcmp(tag, "!") == 0) tag = NULL, plain = 0; /* non-specific: a string */
  if (tag) {
    if (strcmp(tag, YAML_STR_TAG) == 0 || strcmp(tag, YAML_TIMESTAMP_TAG) == 0) {
      *out = json_stringn(text, len);
    } else if (strcmp(tag, YAML_NULL_TAG) == 0) {
      if (!word_in(text, null_words)) return fail_at(b, &ev->start_mark, "not a null: '%s'", text);
      *out = json_null();
    } else if (strcmp(tag, YAML_BOOL_TAG) == 0) {
      if (word_in(text, true_words)) *out = json_true();
      else if (word_in(text, false_words)) *out = json_false();
      else return fail_at(b, &ev->start_mark, "not a boolean: '%s'", text);
    } else if (strcmp(tag, YAML_INT_TAG) == 0) {
      if (yaml_int(text, &iv) != 0) return fail_at(b, &ev->start_mark, "not a 64-bit integer: '%s'", text);
      *out = json_integer((json_int_t)iv);
    } else if (strcmp(tag, YAML_FLOAT_TAG) == 0) {
      r = yaml_int(text, &iv);
      if (r == 0) *out = json_real((double)iv);
      else if (yaml_float(text, &dv) == 0) *out = json_real(dv);
      else return fail_at(b, &ev->start_mark, "not a finite float: '%s'", text);
    } else if (strcmp(tag, "tag:yaml.org,2002:binary") == 0) {
      char *clean = malloc(len + 1);
      size_t o = 0;
      if (!clean) return kerr_set(b->err, KERR_INTERNAL, "out of memory");
      for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)text[i])) clean[o++] = text[i];
      *out = json_stringn(clean, o);
      free(clean);
    } else {
      return fail_at(b, &ev->start_mark, "unsupported tag %s", tag);
    }
  } else if (!plain) {
    *out = json_stringn(text, len);
  } else if (word_in(text, null_words)) {
    *out = json_null();
  } else if (word_in(text, true_words)) {
    *out = json_true();
  } else if (word_in(text, false_words)) {
    *out = json_false();
  } else if ((r = yaml_int(text, &iv)) != 1) {
    if (r < 0) return fail_at(b, &ev->start_mark, "integer out of 64-bit range: '%s'", text);
    *out = json_integer((json_int_t)iv);
  } else if ((r = yaml_float(text, &dv)) != 1) {
    if (r < 0) return fail_at(b, &ev->start_mark, "not a JSON number (NaN or infinity): '%s'", text);
    *out = json_real(dv);
  } else {
    *out = json_stringn(text, len); /* timestamps too: their text is what consumers take */
  }
  if (!*out) return fail_at(b, &ev->start_mark, "%s", "a scalar is not UTF-8");
  return KERR_OK;
}

/* Put `v` (stolen) where it belongs: the root, an array, an object's key or
 * value.  `key_text` is the scalar's text when it may become a key. */
static kerr_code place(yaml_build *b, json_t *v, const yaml_event_t *ev, const char *key_text) {
  yaml_frame *top;
  if (++b->nodes > CLI_YAML_MAX_NODES) {
    json_decref(v);
    return fail_at(b, &ev->start_mark, "more than %s nodes", "200000");
  }
  if (b->depth == 0) {
    b->root = v;
    return KERR_OK;
  }
  top = &b->stack[b->depth - 1];
  if (json_is_array(top->container)) {
    if (json_array_append_new(top->container, v)) return kerr_set(b->err, KERR_INTERNAL, "out of memory");
    return KERR_OK;
  }
  if (!top->key) {
    json_decref(v);
    if (!key_text) return fail_at(b, &ev->start_mark, "%s", "a mapping key must be a scalar");
    top->key = strdup(key_text);
    if (!top->key) return kerr_set(b->err, KERR_INTERNAL, "out of memory");
    return KERR_OK;
  }
  if (json_object_set_new(top->container, top->key, v)) {
    free(top->key);
    top->key = NULL;
    return fail_at(b, &ev->start_mark, "%s", "a mapping key is not UTF-8");
  }
  free(top->key);
  top->key = NULL;
  return KERR_OK;
}

static kerr_code handle_event(yaml_build *b, const yaml_event_t *ev, int *done) {
  json_t *v = NULL;
  kerr_code rc;
  switch (ev->type) {
  case YAML_DOCUMENT_START_EVENT:
    if (++b->documents > 1) return fail_at(b, &ev->start_mark, "%s", "expected a single document in the stream");
    return KERR_OK;
  case YAML_ALIAS_EVENT: return fail_at(b, &ev->start_mark, "%s", "aliases are not accepted");
  case YAML_SCALAR_EVENT:
    rc = scalar_value(b, ev, &v);
    if (rc) return rc;
    return place(b, v, ev, (const char *)ev->data.scalar.value);
  case YAML_SEQUENCE_START_EVENT:
  case YAML_MAPPING_START_EVENT: {
    const char *tag = ev->type == YAML_SEQUENCE_START_EVENT ? (const char *)ev->data.sequence_start.tag
                                                             : (const char *)ev->data.mapping_start.tag;
    if (tag && strcmp(tag, ev->type == YAML_SEQUENCE_START_EVENT ? YAML_SEQ_TAG : YAML_MAP_TAG) != 0)
      return fail_at(b, &ev->start_mark, "unsupported tag %s", tag);
    if (b->depth >= CLI_YAML_MAX_DEPTH) return fail_at(b, &ev->start_mark, "nested deeper than %s", "64");
    v = ev->type == YAML_SEQUENCE_START_EVENT ? json_array() : json_object();
    if (!v) return kerr_set(b->err, KERR_INTERNAL, "out of memory");
    /* Placed first (the parent keeps it), then opened. */
    rc = place(b, json_incref(v), ev, NULL);
    if (rc) {
      json_decref(v);
      return rc;
    }
    b->stack[b->depth].container = v;
    b->stack[b->depth].key = NULL;
    b->depth++;
    return KERR_OK;
  }
  case YAML_SEQUENCE_END_EVENT:
  case YAML_MAPPING_END_EVENT:
    if (b->depth == 0) return kerr_set(b->err, KERR_INTERNAL, "YAML: unbalanced collection");
    b->depth--;
    json_decref(b->stack[b->depth].container);
    free(b->stack[b->depth].key);
    b->stack[b->depth].key = NULL;
    return KERR_OK;
  case YAML_STREAM_END_EVENT: *done = 1; return KERR_OK;
  default: return KERR_OK;
  }
}

kerr_code cli_yaml_load(const char *text, size_t len, json_t **out, kerr *err) {
  yaml_parser_t parser;
  yaml_build b;
  int parser_ready = 0, done = 0;
  kerr_code rc = KERR_OK;
  kerr local = {.code = KERR_OK};

  memset(&b, 0, sizeof b);
  b.err = err ? err : &local;
  kerr_clear(b.err);
  if (!out) return kerr_set(b.err, KERR_INTERNAL, "cli_yaml_load: no result pointer");
  *out = NULL;
  if (!text && len) return kerr_set(b.err, KERR_INTERNAL, "cli_yaml_load: no text");
  if (len > CLI_YAML_MAX_INPUT)
    return kerr_set(b.err, KERR_VALIDATION, "YAML: the document is larger than %u bytes", CLI_YAML_MAX_INPUT);
  if (!yaml_parser_initialize(&parser)) return kerr_set(b.err, KERR_INTERNAL, "out of memory");
  parser_ready = 1;
  yaml_parser_set_input_string(&parser, (const unsigned char *)(text ? text : ""), len);
  while (!done) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      if (parser.error == YAML_MEMORY_ERROR) {
        rc = kerr_set(b.err, KERR_INTERNAL, "out of memory");
      } else {
        rc = kerr_set(b.err, KERR_VALIDATION, "YAML: %s (line %zu, column %zu)",
                      parser.problem ? parser.problem : "malformed", parser.problem_mark.line + 1,
                      parser.problem_mark.column + 1);
      }
      goto out;
    }
    rc = handle_event(&b, &ev, &done);
    yaml_event_delete(&ev);
    if (rc) goto out;
  }
  *out = b.root ? b.root : json_null();
  b.root = NULL;
out:
  while (b.depth > 0) {
    b.depth--;
    json_decref(b.stack[b.depth].container);
    free(b.stack[b.depth].key);
  }
  json_decref(b.root);
  if (parser_ready) yaml_parser_delete(&parser);
  return rc;
}
