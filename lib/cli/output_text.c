/* output_text.c - `--output text`: the reply as tab-separated lines, as the
 * AWS CLI prints them, so that `cut -f` and `read` scripts keep working.
 *
 * What the AWS CLI prints, learned by running it on chosen documents:
 *   - an object makes one line of its scalar members' values in key order
 *     (Python's str() of each; a list or object that must sit in a cell is
 *     its repr()), led by the upper-cased name it was reached under, if any;
 *     an object with no scalar member makes no line.  Its array and object
 *     members follow, each under its own key as name.
 *   - a list of objects: each object under the list's name, with one
 *     column per key that is a scalar in any of them (sorted), an empty
 *     cell where one lacks it.  Mixing objects with anything else is
 *     something the AWS CLI fails on, and so do we.
 *   - a list holding lists: its scalars first (as below), then each list,
 *     under the same name.
 *   - a list of scalars: one "NAME<tab>value" line each when it has a name,
 *     else all the values on one line.
 *   - a bare scalar: its str() on a line.
 *
 * The walk is iterative: a stack of pending "visits" (a value and the name
 * it is printed under), children pushed in reverse so they pop in order.
 * Lines are written straight into the capped output buffer. */
#include <stdlib.h>
#include <string.h>

#include "cli/output_internal.h"
#include "cli/output_unicode.h"

/* The columns shared by the objects of one list: sorted distinct keys. */
typedef struct text_columns {
  cli_out_member *keys;
  size_t count;
} text_columns;

/* A value still to be printed, and how. */
typedef struct text_visit {
  const json_t *value;
  const char *name; /* NULL: printed under no name */
  size_t name_len;
  const text_columns *columns; /* set for the objects of a list */
} text_visit;

typedef struct text_walk {
  cli_out_buf *out;
  text_visit *pending; /* the stack */
  size_t depth, room;
  text_columns **column_sets; /* every text_columns made, freed at the end */
  size_t sets, set_room;
} text_walk;

static kerr_code text_no_memory(text_walk *w) {
  return kerr_set(w->out->err, KERR_INTERNAL, "out of memory formatting the output");
}

static kerr_code text_push(text_walk *w, const json_t *value, const char *name, size_t name_len,
                           const text_columns *columns) {
  if (w->depth == w->room) {
    size_t want = w->room ? w->room * 2 : 32;
    text_visit *grown = realloc(w->pending, want * sizeof *grown);
    if (!grown) return text_no_memory(w);
    w->pending = grown;
    w->room = want;
  }
  w->pending[w->depth].value = value;
  w->pending[w->depth].name = name;
  w->pending[w->depth].name_len = name_len;
  w->pending[w->depth].columns = columns;
  w->depth++;
  return KERR_OK;
}

/* Encode code point cp as UTF-8 into buf; returns the byte count. */
static size_t text_utf8_encode(uint32_t cp, char buf[4]) {
  if (cp < 0x80) {
    buf[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    buf[0] = (char)(0xC0 | (cp >> 6));
    buf[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    buf[0] = (char)(0xE0 | (cp >> 12));
    buf[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    buf[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  buf[0] = (char)(0xF0 | (cp >> 18));
  buf[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  buf[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  buf[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* The name a line starts with: upper-cased as Python's str.upper(). */
static kerr_code text_put_name(cli_out_buf *b, const char *name, size_t len) {
  size_t i = 0;
  kerr_code rc = KERR_OK;
  while (i < len && rc == KERR_OK) {
    uint32_t upper[3];
    size_t n = cli_uni_upper(cli_out_utf8_next(name, len, &i), upper);
    for (size_t k = 0; k < n && rc == KERR_OK; k++) {
      char bytes[4];
      rc = cli_out_put(b, bytes, text_utf8_encode(upper[k], bytes));
    }
  }
  return rc;
}

/* Before each cell of a line: a tab, except before the first. */
static kerr_code text_cell_sep(cli_out_buf *b, int *cells) {
  return (*cells)++ ? cli_out_putc(b, '\t') : KERR_OK;
}

static kerr_code text_line_start(cli_out_buf *b, const text_visit *v, int *cells) {
  *cells = 0;
  if (!v->name) return KERR_OK;
  (*cells)++;
  return text_put_name(b, v->name, v->name_len);
}

/* The scalars of a list: one named line each, or one line of them all. */
static kerr_code text_scalar_lines(cli_out_buf *b, const text_visit *v) {
  size_t i;
  const json_t *item;
  int cells = 0, any = 0;
  kerr_code rc = KERR_OK;
  json_array_foreach(v->value, i, item) {
    if (!cli_out_is_scalar(item) || rc != KERR_OK) continue;
    any = 1;
    if (v->name) {
      rc = text_put_name(b, v->name, v->name_len);
      if (rc == KERR_OK) rc = cli_out_putc(b, '\t');
      if (rc == KERR_OK) rc = cli_out_py_str(b, item);
      if (rc == KERR_OK) rc = cli_out_putc(b, '\n');
    } else {
      rc = text_cell_sep(b, &cells);
      if (rc == KERR_OK) rc = cli_out_py_str(b, item);
    }
  }
  if (rc == KERR_OK && any && !v->name) rc = cli_out_putc(b, '\n');
  return rc;
}

static int text_column_has(const text_columns *cols, const char *key, size_t key_len) {
  size_t lo = 0, hi = cols ? cols->count : 0;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = cli_out_key_cmp(cols->keys[mid].key, cols->keys[mid].key_len, key, key_len);
    if (c == 0) return 1;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return 0;
}

/* The keys that are scalars in at least one object of `list`. */
static kerr_code text_make_columns(text_walk *w, const json_t *list, const text_columns **made) {
  text_columns *cols;
  size_t i, total = 0, kept = 0;
  const json_t *item;
  json_array_foreach(list, i, item) total += json_object_size(item);
  if (w->sets == w->set_room) {
    size_t want = w->set_room ? w->set_room * 2 : 8;
    text_columns **grown = realloc(w->column_sets, want * sizeof *grown);
    if (!grown) return text_no_memory(w);
    w->column_sets = grown;
    w->set_room = want;
  }
  cols = calloc(1, sizeof *cols);
  if (!cols) return text_no_memory(w);
  w->column_sets[w->sets++] = cols;
  if (total == 0) {
    *made = cols;
    return KERR_OK;
  }
  cols->keys = malloc(total * sizeof *cols->keys);
  if (!cols->keys) return text_no_memory(w);
  json_array_foreach(list, i, item) {
    const char *key;
    size_t key_len;
    json_t *value;
    json_object_keylen_foreach((json_t *)item, key, key_len, value) {
      if (!cli_out_is_scalar(value)) continue;
      cols->keys[kept].key = key;
      cols->keys[kept].key_len = key_len;
      cols->keys[kept].value = NULL;
      kept++;
    }
  }
  if (kept) {
    size_t distinct = 1;
    qsort(cols->keys, kept, sizeof *cols->keys, cli_out_member_order);
    for (i = 1; i < kept; i++) {
      const cli_out_member *last = &cols->keys[distinct - 1];
      if (cli_out_key_cmp(last->key, last->key_len, cols->keys[i].key, cols->keys[i].key_len) != 0)
        cols->keys[distinct++] = cols->keys[i];
    }
    kept = distinct;
  }
  cols->count = kept;
  *made = cols;
  return KERR_OK;
}

static kerr_code text_visit_object(text_walk *w, const text_visit *v) {
  cli_out_member *members = NULL;
  size_t n = 0, i, scalars = 0;
  int cells;
  cli_out_buf *b = w->out;
  kerr_code rc = cli_out_sorted_members(v->value, &members, &n, b->err);
  if (rc != KERR_OK) goto out;
  /* The line: cells of the list's columns, or of this object's scalars. */
  for (i = 0; !v->columns && i < n; i++) scalars += cli_out_is_scalar(members[i].value) ? 1 : 0;
  if (v->columns ? v->columns->count > 0 : scalars > 0) {
    rc = text_line_start(b, v, &cells);
    if (v->columns) {
      for (i = 0; i < v->columns->count && rc == KERR_OK; i++) {
        const cli_out_member *col = &v->columns->keys[i];
        const json_t *cell = json_object_getn(v->value, col->key, col->key_len);
        rc = text_cell_sep(b, &cells);
        if (rc == KERR_OK && cell) rc = cli_out_py_str(b, cell);
      }
    } else {
      for (i = 0; i < n && rc == KERR_OK; i++) {
        if (!cli_out_is_scalar(members[i].value)) continue;
        rc = text_cell_sep(b, &cells);
        if (rc == KERR_OK) rc = cli_out_py_str(b, members[i].value);
      }
    }
    if (rc == KERR_OK) rc = cli_out_putc(b, '\n');
  }
  /* Then its lists and objects, in key order: pushed last first. */
  for (i = n; i-- > 0 && rc == KERR_OK;) {
    const cli_out_member *m = &members[i];
    if (cli_out_is_scalar(m->value)) continue;
    if (v->columns && text_column_has(v->columns, m->key, m->key_len)) continue; /* printed as a cell */
    rc = text_push(w, m->value, m->key, m->key_len, NULL);
  }
out:
  free(members);
  return rc;
}

static kerr_code text_visit_array(text_walk *w, const text_visit *v) {
  size_t i, objects = 0, lists = 0, count = json_array_size(v->value);
  const json_t *item;
  kerr_code rc = KERR_OK;
  json_array_foreach(v->value, i, item) {
    objects += json_is_object(item) ? 1 : 0;
    lists += json_is_array(item) ? 1 : 0;
  }
  if (objects) {
    const text_columns *cols = NULL;
    if (objects != count)
      return kerr_set(w->out->err, KERR_VALIDATION,
                      "text output cannot show a list that mixes objects with other values "
                      "(the AWS CLI fails on it too); narrow it with --query");
    rc = text_make_columns(w, v->value, &cols);
    for (i = count; i-- > 0 && rc == KERR_OK;)
      rc = text_push(w, json_array_get(v->value, i), v->name, v->name_len, cols);
    return rc;
  }
  rc = text_scalar_lines(w->out, v);
  for (i = count; lists && i-- > 0 && rc == KERR_OK;) {
    item = json_array_get(v->value, i);
    if (json_is_array(item)) rc = text_push(w, item, v->name, v->name_len, NULL);
  }
  return rc;
}

kerr_code cli_out_render_text(const json_t *doc, cli_out_buf *b) {
  text_walk w = {0};
  kerr_code rc;
  w.out = b;
  rc = text_push(&w, doc, NULL, 0, NULL);
  while (rc == KERR_OK && w.depth > 0) {
    text_visit v = w.pending[--w.depth];
    if (json_is_object(v.value)) {
      rc = text_visit_object(&w, &v);
    } else if (json_is_array(v.value)) {
      rc = text_visit_array(&w, &v);
    } else { /* only the document itself can be a bare scalar */
      rc = cli_out_py_str(b, v.value);
      if (rc == KERR_OK) rc = cli_out_putc(b, '\n');
    }
  }
  for (size_t i = 0; i < w.sets; i++) {
    free(w.column_sets[i]->keys);
    free(w.column_sets[i]);
  }
  free(w.column_sets);
  free(w.pending);
  return rc;
}
