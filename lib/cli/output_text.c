/* output_text.c - `--output text`: the reply as tab-separated lines, as the
 * AWS CLI prints them, so that `cut -f` and `read` scripts keep working.
 *
 * The rules, found by running the AWS CLI's text formatter on chosen
 * documents:
 *
 * - Every line is a list of cells joined by tabs.  A cell is Python's str()
 *   of a value: "True", "None", "1.5", a string as it is, and for an array
 *   or object that lands in a cell, Python's repr() of it.
 * - A line may start with a name: the upper-cased key (Python's
 *   str.upper(), so "straße" gives "STRASSE") under which the value was
 *   found, then a tab.  The reply itself has no name, and the items of an
 *   array carry the name the array had (so items of a bare array have
 *   none); a key that is "" still names, giving a line that starts with a
 *   tab.
 * - A scalar reply is one line holding it.
 * - An object prints one line of its scalar members, sorted by key (none
 *   when it has no scalar member), then each member that is an array or an
 *   object, sorted by key, under the member's key.
 * - An array that holds any object is a list of records, and then every
 *   item must be an object (the CLI fails otherwise).  Its columns are the
 *   keys that hold a scalar in at least one record, sorted.  Each record
 *   prints one line of those columns (an empty cell where it lacks the
 *   key), unless there are no columns at all; after its line come its
 *   members under keys that are no column (arrays and objects), sorted by
 *   key, each under its key.
 * - Any other array prints its scalar items first: one line per item when
 *   the array has a name, all of them on one line when it has none.  Then
 *   its arrays, in order, each under the same name.
 *
 * The walk keeps its pending work on an explicit stack (the document comes
 * from outside and may nest CLI_OUTPUT_MAX_DEPTH deep) and produces lines,
 * each a name and a source of cells; text_write_line turns one into bytes
 * in the capped buffer. */
#include <stdlib.h>
#include <string.h>

#include "cli/output_internal.h"
#include "cli/output_unicode.h"

/* A list of records and its columns. */
typedef struct text_records {
  const json_t *list;
  cli_out_member *columns; /* keys holding a scalar in some record, sorted, unique */
  size_t column_count;
  struct text_records *next; /* every study made, freed when the walk ends */
} text_records;

/* Where a line's cells come from. */
typedef enum text_cells {
  TEXT_CELLS_ONE,     /* the value */
  TEXT_CELLS_FIELDS,  /* the values of `members` */
  TEXT_CELLS_SCALARS, /* the scalar items of the array `value` */
  TEXT_CELLS_RECORD   /* the record `value` under the keys `members` */
} text_cells;

typedef struct text_name {
  const char *text; /* NULL: no name */
  size_t len;
} text_name;

typedef struct text_line {
  text_name name;
  text_cells cells;
  const json_t *value;
  const cli_out_member *members;
  size_t count;
} text_line;

/* Pending work: print `value` under `name`, or, with `records`, record
 * `index` of that list. */
typedef struct text_task {
  const json_t *value;
  text_name name;
  text_records *records;
  size_t index;
} text_task;

typedef struct text_walk {
  cli_out_buf *out;
  text_task *tasks;
  size_t task_len, task_room;
  text_records *studies;
} text_walk;

/* Bytes UTF-8 spends on a code point. */
static size_t text_utf8_size(uint32_t cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

static kerr_code text_put_code_point(cli_out_buf *b, uint32_t cp) {
  char u[4];
  size_t n = text_utf8_size(cp);
  if (n == 1) {
    u[0] = (char)cp;
  } else if (n == 2) {
    u[0] = (char)(0xC0 | (cp >> 6));
    u[1] = (char)(0x80 | (cp & 0x3F));
  } else if (n == 3) {
    u[0] = (char)(0xE0 | (cp >> 12));
    u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F));
  } else {
    u[0] = (char)(0xF0 | (cp >> 18));
    u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (char)(0x80 | (cp & 0x3F));
  }
  return cli_out_put(b, u, n);
}

/* Whether s[start..end) is one well formed UTF-8 sequence for `cp`: as
 * long as UTF-8 writes cp, and continuation bytes where they belong. */
static int text_well_formed(const char *s, size_t start, size_t end, uint32_t cp) {
  if (text_utf8_size(cp) != end - start) return 0;
  for (size_t k = start + 1; k < end; k++)
    if (((unsigned char)s[k] & 0xC0) != 0x80) return 0;
  return 1;
}

/* The name as Python's str.upper() writes it.  Bytes that are not well
 * formed UTF-8 are copied as they are. */
static kerr_code text_put_upper(cli_out_buf *b, const char *s, size_t len) {
  size_t i = 0;
  kerr_code rc = KERR_OK;
  while (i < len && rc == KERR_OK) {
    size_t start = i, n;
    uint32_t cp = cli_out_utf8_next(s, len, &i), upper[3];
    if (!text_well_formed(s, start, i, cp)) {
      rc = cli_out_put(b, s + start, i - start);
    } else if (cp < 0x80) {
      rc = cli_out_putc(b, (char)(cp >= 'a' && cp <= 'z' ? cp - ('a' - 'A') : cp));
    } else {
      n = cli_uni_upper(cp, upper);
      for (size_t k = 0; k < n && rc == KERR_OK; k++) rc = text_put_code_point(b, upper[k]);
    }
  }
  return rc;
}

static kerr_code text_put_cell(cli_out_buf *b, const json_t *v, int *first) {
  kerr_code rc = *first ? KERR_OK : cli_out_putc(b, '\t');
  *first = 0;
  if (rc == KERR_OK && v) rc = cli_out_py_str(b, v);
  return rc;
}

/* Write one line: the name and a tab when there is a name, the cells
 * joined by tabs, a newline. */
static kerr_code text_write_line(cli_out_buf *b, const text_line *line) {
  kerr_code rc = KERR_OK;
  int first = 1;
  size_t i;
  if (line->name.text) {
    rc = text_put_upper(b, line->name.text, line->name.len);
    if (rc == KERR_OK) rc = cli_out_putc(b, '\t');
  }
  switch (line->cells) {
  case TEXT_CELLS_ONE:
    if (rc == KERR_OK) rc = text_put_cell(b, line->value, &first);
    break;
  case TEXT_CELLS_FIELDS:
    for (i = 0; i < line->count && rc == KERR_OK; i++) rc = text_put_cell(b, line->members[i].value, &first);
    break;
  case TEXT_CELLS_SCALARS:
    for (i = 0; i < json_array_size(line->value) && rc == KERR_OK; i++) {
      const json_t *item = json_array_get(line->value, i);
      if (cli_out_is_scalar(item)) rc = text_put_cell(b, item, &first);
    }
    break;
  case TEXT_CELLS_RECORD:
    for (i = 0; i < line->count && rc == KERR_OK; i++)
      rc = text_put_cell(b, json_object_getn(line->value, line->members[i].key, line->members[i].key_len), &first);
    break;
  }
  return rc == KERR_OK ? cli_out_putc(b, '\n') : rc;
}

static kerr_code text_push(text_walk *w, const text_task *t) {
  if (w->task_len == w->task_room) {
    size_t want = w->task_room ? w->task_room * 2 : 16;
    text_task *grown = want < SIZE_MAX / sizeof *grown ? realloc(w->tasks, want * sizeof *grown) : NULL;
    if (!grown) return cli_out_no_memory(w->out->err);
    w->tasks = grown;
    w->task_room = want;
  }
  w->tasks[w->task_len++] = *t;
  return KERR_OK;
}

/* How a value prints (see above). */
typedef enum text_shape {
  TEXT_SHAPE_SCALAR,
  TEXT_SHAPE_OBJECT,
  TEXT_SHAPE_RECORDS, /* an array holding at least one object */
  TEXT_SHAPE_LIST     /* any other array */
} text_shape;

static text_shape text_shape_of(const json_t *v) {
  const json_t *item;
  size_t i;
  if (json_is_object(v)) return TEXT_SHAPE_OBJECT;
  if (!json_is_array(v)) return TEXT_SHAPE_SCALAR;
  json_array_foreach(v, i, item) {
    if (json_is_object(item)) return TEXT_SHAPE_RECORDS;
  }
  return TEXT_SHAPE_LIST;
}

/* Study a list of records (an array holding some object): refuse it unless
 * every item is an object, then find its columns. */
static kerr_code text_study(text_walk *w, const json_t *list, text_records **out) {
  size_t total = 0, n_scalar = 0, i;
  const json_t *rec;
  text_records *r = calloc(1, sizeof *r);
  if (!r) return cli_out_no_memory(w->out->err);
  r->next = w->studies;
  w->studies = r;
  r->list = list;
  json_array_foreach(list, i, rec) {
    if (!json_is_object(rec))
      return kerr_set(w->out->err, KERR_VALIDATION,
                      "text output cannot show a list of objects mixed with other values (the AWS CLI fails on "
                      "it too); use --output json");
    total += json_object_size(rec);
  }
  r->columns = malloc((total ? total : 1) * sizeof *r->columns);
  if (!r->columns) return cli_out_no_memory(w->out->err);
  json_array_foreach(list, i, rec) {
    const char *key;
    size_t key_len;
    json_t *member;
    json_object_keylen_foreach((json_t *)rec, key, key_len, member) {
      cli_out_member m = {key, key_len, member};
      if (cli_out_is_scalar(member)) r->columns[n_scalar++] = m;
    }
  }
  r->column_count = cli_out_unique_members(r->columns, n_scalar);
  /* Every record's line holds a tab or the newline per column: refuse now
   * what cannot fit, rather than after writing up to the cap. */
  if (r->column_count && json_array_size(list) > (w->out->cap - w->out->len) / r->column_count)
    return cli_out_too_large(w->out->err, w->out->cap);
  *out = r;
  return KERR_OK;
}

/* One record: its line, then (queued, last first, after the next record's
 * task so they run before it) its arrays and objects under keys that are no
 * column: a key that is a column in one record is a cell in every record. */
static kerr_code text_do_record(text_walk *w, const text_task *t) {
  const text_records *r = t->records;
  const json_t *rec = json_array_get(r->list, t->index);
  cli_out_member *members = NULL;
  size_t n = 0;
  kerr_code rc = KERR_OK;
  if (r->column_count) {
    text_line line = {t->name, TEXT_CELLS_RECORD, rec, r->columns, r->column_count};
    rc = text_write_line(w->out, &line);
  }
  if (rc == KERR_OK && t->index + 1 < json_array_size(r->list)) {
    text_task next = *t;
    next.index++;
    rc = text_push(w, &next);
  }
  if (rc == KERR_OK) rc = cli_out_sorted_members(rec, &members, &n, w->out->err);
  for (size_t i = n; i > 0 && rc == KERR_OK; i--) {
    const cli_out_member *m = &members[i - 1];
    if (cli_out_is_scalar(m->value) ||
        bsearch(m, r->columns, r->column_count, sizeof *r->columns, cli_out_member_order))
      continue;
    {
      text_task next = {m->value, {m->key, m->key_len}, NULL, 0};
      rc = text_push(w, &next);
    }
  }
  free(members);
  return rc;
}

static kerr_code text_do_object(text_walk *w, const text_task *t) {
  cli_out_member *members = NULL, *scalars = NULL;
  size_t n = 0, count = 0, i;
  kerr_code rc = cli_out_sorted_members(t->value, &members, &n, w->out->err);
  if (rc != KERR_OK) return rc;
  for (i = 0; i < n; i++) count += cli_out_is_scalar(members[i].value) ? 1 : 0;
  if (count) {
    text_line line = {t->name, TEXT_CELLS_FIELDS, NULL, NULL, 0};
    scalars = malloc(count * sizeof *scalars);
    if (!scalars) {
      rc = cli_out_no_memory(w->out->err);
      goto out;
    }
    for (i = 0; i < n; i++)
      if (cli_out_is_scalar(members[i].value)) scalars[line.count++] = members[i];
    line.members = scalars;
    rc = text_write_line(w->out, &line);
  }
  for (i = n; i > 0 && rc == KERR_OK; i--) {
    if (!cli_out_is_scalar(members[i - 1].value)) {
      text_task next = {members[i - 1].value, {members[i - 1].key, members[i - 1].key_len}, NULL, 0};
      rc = text_push(w, &next);
    }
  }
out:
  free(scalars);
  free(members);
  return rc;
}

/* An array without objects: its scalars (one line each under a name, one
 * line for all without), then its arrays under the same name. */
static kerr_code text_do_list(text_walk *w, const text_task *t) {
  const json_t *item;
  size_t i, scalars = 0;
  kerr_code rc = KERR_OK;
  json_array_foreach(t->value, i, item) {
    if (rc != KERR_OK || !cli_out_is_scalar(item)) continue;
    scalars++;
    if (t->name.text) {
      text_line line = {t->name, TEXT_CELLS_ONE, item, NULL, 0};
      rc = text_write_line(w->out, &line);
    }
  }
  if (rc == KERR_OK && scalars && !t->name.text) {
    text_line line = {t->name, TEXT_CELLS_SCALARS, t->value, NULL, 0};
    rc = text_write_line(w->out, &line);
  }
  for (i = json_array_size(t->value); i > 0 && rc == KERR_OK; i--) {
    item = json_array_get(t->value, i - 1);
    if (!cli_out_is_scalar(item)) {
      text_task next = {item, t->name, NULL, 0};
      rc = text_push(w, &next);
    }
  }
  return rc;
}

static kerr_code text_do_value(text_walk *w, const text_task *t) {
  switch (text_shape_of(t->value)) {
  case TEXT_SHAPE_OBJECT:
    return text_do_object(w, t);
  case TEXT_SHAPE_RECORDS: {
    text_task first = {t->value, t->name, NULL, 0};
    kerr_code rc = text_study(w, t->value, &first.records);
    return rc == KERR_OK ? text_push(w, &first) : rc;
  }
  case TEXT_SHAPE_LIST:
    return text_do_list(w, t);
  case TEXT_SHAPE_SCALAR:
  default: {
    text_line line = {t->name, TEXT_CELLS_ONE, t->value, NULL, 0};
    return text_write_line(w->out, &line);
  }
  }
}

kerr_code cli_out_render_text(const json_t *doc, cli_out_buf *b) {
  text_walk w;
  text_task top = {doc, {NULL, 0}, NULL, 0};
  kerr_code rc;
  memset(&w, 0, sizeof w);
  w.out = b;
  rc = text_push(&w, &top);
  while (rc == KERR_OK && w.task_len > 0) {
    text_task t = w.tasks[--w.task_len];
    rc = t.records ? text_do_record(&w, &t) : text_do_value(&w, &t);
  }
  free(w.tasks);
  while (w.studies) {
    text_records *done = w.studies;
    w.studies = done->next;
    free(done->columns);
    free(done);
  }
  return rc;
}
