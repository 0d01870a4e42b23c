/* skeleton.c - the templates of `--generate-cli-skeleton` (input, yaml-input,
 * output), walked from the model's shapes; see skeleton.h for the
 * placeholder of each type and why. */
#include "cli/skeleton.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EPOCH_TEXT "1970-01-01T00:00:00"

/* ---- JSON templates ----------------------------------------------------------- */

/* The placeholder of `shape`.  `name` is the text an output string holds
 * (NULL for input templates, where strings are ""). */
static json_t *json_placeholder(const model_shape *shape, const char *name, int output, unsigned depth) {
  json_t *v = NULL;
  switch (shape->type) {
  case MODEL_STRUCTURE:
    v = json_object();
    if (!v) return NULL;
    if (depth >= SKELETON_MAX_DEPTH) return v;
    for (size_t i = 0; i < shape->member_count; i++) {
      const model_member *m = &shape->members[i];
      json_t *child = json_placeholder(m->shape, m->name, output, depth + 1);
      if (!child || json_object_set_new(v, m->name, child)) {
        json_decref(v);
        return NULL;
      }
    }
    return v;
  case MODEL_LIST: {
    json_t *item;
    v = json_array();
    if (!v) return NULL;
    if (depth >= SKELETON_MAX_DEPTH) return v;
    item = json_placeholder(shape->member, shape->member->name, output, depth + 1);
    if (!item || json_array_append_new(v, item)) {
      json_decref(v);
      return NULL;
    }
    return v;
  }
  case MODEL_MAP: {
    json_t *value;
    v = json_object();
    if (!v) return NULL;
    if (depth >= SKELETON_MAX_DEPTH) return v;
    value = json_placeholder(shape->value, NULL, output, depth + 1);
    if (!value || json_object_set_new(v, "KeyName", value)) {
      json_decref(v);
      return NULL;
    }
    return v;
  }
  case MODEL_STRING:
    if (output) return json_string(name ? name : "");
    if (shape->enum_count > 0) return json_string(shape->enum_values[0]);
    return json_string("");
  case MODEL_INTEGER:
  case MODEL_LONG: return json_integer(0);
  case MODEL_DOUBLE: return json_real(0.0);
  case MODEL_BOOLEAN: return json_true();
  case MODEL_BLOB: return json_null();
  case MODEL_TIMESTAMP: return json_string(EPOCH_TEXT);
  }
  return NULL;
}

static kerr_code json_skeleton(const model_shape *shape, int output, json_t **out, kerr *err) {
  if (!out) return kerr_set(err, KERR_INTERNAL, "skeleton: no result pointer");
  *out = shape ? json_placeholder(shape, NULL, output, 0) : json_object();
  if (!*out) return kerr_set(err, KERR_INTERNAL, "out of memory");
  kerr_clear(err);
  return KERR_OK;
}

kerr_code cli_skeleton_input(const model_op *op, json_t **out, kerr *err) {
  if (out) *out = NULL;
  if (!op) return kerr_set(err, KERR_INTERNAL, "skeleton: no operation");
  return json_skeleton(op->input, 0, out, err);
}

kerr_code cli_skeleton_output(const model_op *op, json_t **out, kerr *err) {
  if (out) *out = NULL;
  if (!op) return kerr_set(err, KERR_INTERNAL, "skeleton: no operation");
  return json_skeleton(op->output, 1, out, err);
}

/* ---- the YAML template ------------------------------------------------------------- */

typedef struct textbuf {
  char *data;
  size_t len, cap;
  int nomem;
} textbuf;

static void tb_add(textbuf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_add(textbuf *t, const char *fmt, ...) {
  va_list ap;
  int n;
  if (t->nomem) return;
  for (;;) {
    size_t room = t->cap - t->len;
    va_start(ap, fmt);
    n = vsnprintf(t->data ? t->data + t->len : NULL, t->data ? room : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      t->nomem = 1;
      return;
    }
    if (t->data && (size_t)n < room) {
      t->len += (size_t)n;
      return;
    }
    {
      size_t cap = t->cap ? t->cap * 2 : 4096;
      char *grown;
      while (cap < t->len + (size_t)n + 1) cap *= 2;
      grown = realloc(t->data, cap);
      if (!grown) {
        t->nomem = 1;
        return;
      }
      t->data = grown;
      t->cap = cap;
    }
  }
}

/* A plain scalar that a YAML 1.1 loader reads back as this same string? */
static int plain_is_string(const char *s) {
  static const char *const reserved[] = {"y", "Y", "n", "N", "yes", "Yes", "YES", "no", "No", "NO", "true", "True",
                                         "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
                                         "null", "Null", "NULL", "~", NULL};
  if (!*s || !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'))) return 0;
  for (const char *p = s; *p; p++) {
    char c = *p;
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
          c == '.'))
      return 0;
  }
  for (size_t i = 0; reserved[i]; i++)
    if (strcmp(s, reserved[i]) == 0) return 0;
  return 1;
}

/* " # [REQUIRED] doc Valid values are: A, B." on one line. */
static void yaml_comment(textbuf *t, const model_shape *shape, int required, const char *doc) {
  int any = required || (doc && *doc) || shape->enum_count;
  if (!any) return;
  tb_add(t, " #");
  if (required) tb_add(t, " [REQUIRED]");
  if (doc && *doc) {
    tb_add(t, " ");
    for (const char *p = doc; *p; p++) tb_add(t, "%c", (*p == '\n' || *p == '\r') ? ' ' : *p);
  }
  if (shape->enum_count) {
    tb_add(t, " Valid values are: ");
    for (size_t i = 0; i < shape->enum_count; i++)
      tb_add(t, "%s%s", i ? ", " : "", shape->enum_values[i]);
    tb_add(t, ".");
  }
}

static void yaml_scalar(textbuf *t, const model_shape *shape) {
  switch (shape->type) {
  case MODEL_STRING:
    if (shape->enum_count == 0) tb_add(t, "''");
    else if (plain_is_string(shape->enum_values[0])) tb_add(t, "%s", shape->enum_values[0]);
    else tb_add(t, "'%s'", shape->enum_values[0]);
    return;
  case MODEL_INTEGER:
  case MODEL_LONG: tb_add(t, "0"); return;
  case MODEL_DOUBLE: tb_add(t, "0.0"); return;
  case MODEL_BOOLEAN: tb_add(t, "true"); return;
  case MODEL_BLOB: tb_add(t, "''"); return;
  case MODEL_TIMESTAMP: tb_add(t, "'" EPOCH_TEXT "'"); return;
  default: return;
  }
}

static int is_collection(const model_shape *s) {
  return s->type == MODEL_STRUCTURE || s->type == MODEL_LIST || s->type == MODEL_MAP;
}

static void yaml_keyed(textbuf *t, unsigned indent, const char *first_prefix, const char *key,
                       const model_shape *shape, int required, const char *doc, unsigned depth);

/* The members of a structure, the first one after `first_prefix` and the
 * others at `indent` spaces. */
static void yaml_members(textbuf *t, unsigned indent, const char *first_prefix, const model_shape *shape,
                         unsigned depth) {
  for (size_t i = 0; i < shape->member_count; i++) {
    const model_member *m = &shape->members[i];
    char pad[2 * SKELETON_MAX_DEPTH * 2 + 8];
    snprintf(pad, sizeof pad, "%*s", (int)indent, "");
    yaml_keyed(t, indent, i == 0 ? first_prefix : pad, m->name, m->shape, m->required, m->doc, depth);
  }
}

/* One list item of `shape` at `indent`: "- value". */
static void yaml_item(textbuf *t, unsigned indent, const char *prefix, const model_shape *shape, unsigned depth) {
  char first[2 * SKELETON_MAX_DEPTH * 2 + 16];
  snprintf(first, sizeof first, "%s- ", prefix);
  if (!is_collection(shape)) {
    tb_add(t, "%s", first);
    yaml_scalar(t, shape);
    yaml_comment(t, shape, 0, NULL);
    tb_add(t, "\n");
  } else if (depth >= SKELETON_MAX_DEPTH) {
    tb_add(t, "%s%s\n", first, shape->type == MODEL_LIST ? "[]" : "{}");
  } else if (shape->type == MODEL_STRUCTURE) {
    if (shape->member_count == 0) tb_add(t, "%s{}\n", first);
    else yaml_members(t, indent + 2, first, shape, depth + 1);
  } else if (shape->type == MODEL_MAP) {
    yaml_keyed(t, indent + 2, first, "KeyName", shape->value, 0, NULL, depth + 1);
  } else {
    yaml_item(t, indent + 2, first, shape->member, depth + 1);
  }
}

static void yaml_keyed(textbuf *t, unsigned indent, const char *first_prefix, const char *key,
                       const model_shape *shape, int required, const char *doc, unsigned depth) {
  char pad[2 * SKELETON_MAX_DEPTH * 2 + 8];
  snprintf(pad, sizeof pad, "%*s", (int)(indent + 2), "");
  tb_add(t, "%s%s:", first_prefix, key);
  if (!is_collection(shape)) {
    tb_add(t, " ");
    yaml_scalar(t, shape);
    yaml_comment(t, shape, required, doc);
    tb_add(t, "\n");
    return;
  }
  if (depth >= SKELETON_MAX_DEPTH || (shape->type == MODEL_STRUCTURE && shape->member_count == 0)) {
    tb_add(t, " %s", shape->type == MODEL_LIST ? "[]" : "{}");
    yaml_comment(t, shape, required, doc);
    tb_add(t, "\n");
    return;
  }
  yaml_comment(t, shape, required, doc);
  tb_add(t, "\n");
  if (shape->type == MODEL_STRUCTURE) {
    yaml_members(t, indent + 2, pad, shape, depth + 1);
  } else if (shape->type == MODEL_MAP) {
    yaml_keyed(t, indent + 2, pad, "KeyName", shape->value, 0, NULL, depth + 1);
  } else {
    char items[2 * SKELETON_MAX_DEPTH * 2 + 8];
    snprintf(items, sizeof items, "%*s", (int)indent, "");
    yaml_item(t, indent, items, shape->member, depth + 1);
  }
}

kerr_code cli_skeleton_yaml_input(const model_op *op, char **out, size_t *out_len, kerr *err) {
  textbuf t = {0};
  if (out) *out = NULL;
  if (out_len) *out_len = 0;
  if (!op || !out) return kerr_set(err, KERR_INTERNAL, "skeleton: missing argument");
  if (!op->input || op->input->member_count == 0) tb_add(&t, "{}\n");
  else yaml_members(&t, 0, "", op->input, 0);
  if (t.nomem || !t.data) {
    free(t.data);
    return kerr_set(err, KERR_INTERNAL, "out of memory");
  }
  *out = t.data;
  if (out_len) *out_len = t.len;
  kerr_clear(err);
  return KERR_OK;
}
