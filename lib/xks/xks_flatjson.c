/* xks_flatjson.c - the flat JSON reader of xks_flatjson.h.  A cursor walks
 * the bytes once; every step that meets something outside the accepted
 * subset gives up, and the caller's json_loadb decides. */
#include "xks/xks_flatjson.h"

typedef struct cursor {
  const char *p, *end;
} cursor;

/* JSON's four whitespace characters, the only ones jansson skips. */
static void skip_ws(cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

/* A string of printable ASCII without a backslash, the cursor on its opening
 * quote: its text and length, the cursor after its closing quote; -1 for
 * anything else.  Such a string is its own value, with no decoding. */
static int read_string(cursor *c, const char **text, size_t *len) {
  if (c->p >= c->end || *c->p != '"') return -1;
  const char *start = ++c->p;
  while (c->p < c->end) {
    unsigned char ch = (unsigned char)*c->p;
    if (ch == '"') {
      *text = start;
      *len = (size_t)(c->p - start);
      c->p++;
      return 0;
    }
    if (ch < 0x20 || ch > 0x7e || ch == '\\') return -1;
    c->p++;
  }
  return -1;
}

/* The object whose '{' is under the cursor, at `depth` (1 for the body):
 * a new reference, or NULL. */
static json_t *read_object(cursor *c, int depth) {
  json_t *obj = json_object();
  if (!obj) return NULL;
  c->p++; /* '{' */
  skip_ws(c);
  if (c->p < c->end && *c->p == '}') {
    c->p++;
    return obj;
  }
  for (;;) {
    const char *key, *text;
    size_t key_len, text_len;
    json_t *value;
    if (read_string(c, &key, &key_len) != 0) goto fail;
    skip_ws(c);
    if (c->p >= c->end || *c->p != ':') goto fail;
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == '{' && depth < XKS_FLATJSON_DEPTH)
      value = read_object(c, depth + 1);
    else if (read_string(c, &text, &text_len) == 0)
      value = json_stringn_nocheck(text, text_len);
    else
      goto fail;
    if (!value) goto fail;
    /* A key seen before: jansson refuses the body, so it must decide. */
    if (json_object_getn(obj, key, key_len)) {
      json_decref(value);
      goto fail;
    }
    if (json_object_setn_new_nocheck(obj, key, key_len, value) != 0) goto fail; /* takes `value` */
    skip_ws(c);
    if (c->p >= c->end) goto fail;
    if (*c->p == '}') {
      c->p++;
      return obj;
    }
    if (*c->p != ',') goto fail;
    c->p++;
    skip_ws(c);
  }
fail:
  json_decref(obj);
  return NULL;
}

json_t *xks_flatjson_load(const char *body, size_t len) {
  cursor c;
  json_t *root;
  if (!body) return NULL;
  c.p = body;
  c.end = body + len;
  skip_ws(&c);
  if (c.p >= c.end || *c.p != '{') return NULL;
  root = read_object(&c, 1);
  if (!root) return NULL;
  skip_ws(&c);
  if (c.p != c.end) {
    json_decref(root);
    return NULL;
  }
  return root;
}
