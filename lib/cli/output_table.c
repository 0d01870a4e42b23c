/* output_table.c - the `kms` command line's --output table: the AWS CLI's
 * boxed tables, byte for byte.
 *
 * The CLI builds a list of sections (a title, optional column headers, rows
 * of cell texts, an indentation level) by walking the response, then renders
 * every section at the width of the widest one, scaling column widths to
 * fit.  Its quirks show in scripts' expectations, so the same two phases are
 * kept here with the same data: a single scalar member becomes a two-cell
 * row, a list of objects repeats its header per element when the elements
 * have nested members, columns are the sorted union of scalar member names,
 * and a table wider than the terminal turns its single-row sections into
 * name/value rows.  Widths count East Asian wide characters twice. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/output_internal.h"

/* Outcomes of the builder, beyond 0 (done) and -1 (no memory). */
#define TABLE_UNPRINTABLE (-2) /* the CLI itself fails on this data */
#define TABLE_EMPTY 1          /* a false value: nothing to show */

/* ANSI codes of the CLI's `--color on` styler. */
#define COLOR_CELL_ON "\x1b[1m\x1b[34m"
#define COLOR_BAR_ON "\x1b[2m\x1b[33m"
#define COLOR_OFF "\x1b[0m"

typedef struct cell {
  char *s; /* owned; may hold NUL bytes */
  size_t len;
  size_t width; /* display columns */
} cell;

typedef struct row {
  cell *cells;
  size_t n;
} row;

typedef struct section {
  cell title;     /* empty when there is none */
  int title_none; /* Python's None: unprinted, yet measured as "None" */
  cell *headers;
  size_t nheaders;
  row *rows;
  size_t nrows, rows_cap;
  long indent;
  long num_cols; /* -1 until the first header or row fixes it */
  size_t *max_widths;
  size_t nmax;
} section;

typedef struct table {
  section *secs;
  size_t n, cap;
} table;

/* ---- cells ----------------------------------------------------------------- */

static int cell_from_bytes(cell *c, const char *s, size_t n) {
  c->s = malloc(n + 1);
  if (!c->s) return -1;
  if (n) memcpy(c->s, s, n);
  c->s[n] = '\0';
  c->len = n;
  c->width = cli_text_width(s, n);
  return 0;
}

/* The cell Python's str() makes of a value; a missing value is empty. */
static int cell_from_value(cell *c, const json_t *v) {
  cli_output_buf tmp = {0};
  if (!v) return cell_from_bytes(c, "", 0);
  if (cli_py_str(&tmp, v) != 0 || cli_buf_put(&tmp, "", 0) != 0) {
    cli_output_buf_free(&tmp);
    return -1;
  }
  c->s = tmp.data;
  c->len = tmp.len;
  c->width = cli_text_width(tmp.data, tmp.len);
  return 0;
}

static void cells_free(cell *cells, size_t n) {
  if (!cells) return;
  for (size_t i = 0; i < n; i++) free(cells[i].s);
  free(cells);
}

static void section_free(section *s) {
  free(s->title.s);
  cells_free(s->headers, s->nheaders);
  for (size_t i = 0; i < s->nrows; i++) cells_free(s->rows[i].cells, s->rows[i].n);
  free(s->rows);
  free(s->max_widths);
}

static void table_free(table *t) {
  for (size_t i = 0; i < t->n; i++) section_free(&t->secs[i]);
  free(t->secs);
}

/* ---- building ---------------------------------------------------------------- */

/* A title as the builder passes it: NULL text is Python's None. */
typedef struct title_ref {
  const char *s;
  size_t len;
} title_ref;

static int new_section(table *t, title_ref title, long indent) {
  section *s;
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 8;
    section *grown = realloc(t->secs, cap * sizeof *grown);
    if (!grown) return -1;
    t->secs = grown;
    t->cap = cap;
  }
  s = &t->secs[t->n];
  memset(s, 0, sizeof *s);
  s->num_cols = -1;
  s->indent = indent;
  s->title_none = title.s == NULL;
  if (cell_from_bytes(&s->title, title.s ? title.s : "", title.s ? title.len : 0) != 0) return -1;
  t->n++;
  return 0;
}

/* The column widths grow to fit a header or row.  The first one sets them;
 * a later, longer one is an error in the CLI (an index past its list). */
static int update_max_widths(section *s, const cell *cells, size_t n) {
  if (s->nmax == 0) {
    if (n == 0) return 0;
    s->max_widths = malloc(n * sizeof *s->max_widths);
    if (!s->max_widths) return -1;
    for (size_t i = 0; i < n; i++) s->max_widths[i] = cells[i].width;
    s->nmax = n;
    return 0;
  }
  if (n > s->nmax) return TABLE_UNPRINTABLE;
  for (size_t i = 0; i < n; i++)
    if (cells[i].width > s->max_widths[i]) s->max_widths[i] = cells[i].width;
  return 0;
}

/* Both take ownership of `cells` whatever they return. */
static int add_header(section *s, cell *cells, size_t n) {
  int rc = update_max_widths(s, cells, n);
  if (rc != 0) {
    cells_free(cells, n);
    return rc;
  }
  if (s->num_cols < 0) s->num_cols = (long)n;
  cells_free(s->headers, s->nheaders);
  s->headers = cells;
  s->nheaders = n;
  return 0;
}

static int add_row(section *s, cell *cells, size_t n) {
  int rc;
  if (s->num_cols < 0) s->num_cols = (long)n;
  if ((long)n != s->num_cols) {
    cells_free(cells, n);
    return TABLE_UNPRINTABLE; /* the CLI: "Row should have N elements" */
  }
  if (s->nrows == s->rows_cap) {
    size_t cap = s->rows_cap ? s->rows_cap * 2 : 4;
    row *grown = realloc(s->rows, cap * sizeof *grown);
    if (!grown) {
      cells_free(cells, n);
      return -1;
    }
    s->rows = grown;
    s->rows_cap = cap;
  }
  s->rows[s->nrows].cells = cells;
  s->rows[s->nrows].n = n;
  s->nrows++;
  rc = update_max_widths(s, cells, n);
  return rc;
}

static cell *cells_new(size_t n) { return calloc(n ? n : 1, sizeof(cell)); }

/* Python's truth value of the data. */
static int is_false(const json_t *v) {
  switch (json_typeof(v)) {
    case JSON_OBJECT: return json_object_size(v) == 0;
    case JSON_ARRAY: return json_array_size(v) == 0;
    case JSON_STRING: return json_string_length(v) == 0;
    case JSON_INTEGER: return json_integer_value(v) == 0;
    case JSON_REAL: return json_real_value(v) == 0;
    case JSON_TRUE: return 0;
    case JSON_FALSE:
    case JSON_NULL: return 1;
  }
  return 1;
}

/* Split the member names of the objects in `objs` (n of them) into the
 * sorted, distinct names holding scalars and those holding containers, as
 * malloc'd arrays the caller frees. */
static int group_keys(const json_t *const *objs, size_t n, cli_key **scalars, size_t *ns,
                      cli_key **more, size_t *nm) {
  size_t cap = 0, a = 0, b = 0;
  cli_key *s, *m;
  for (size_t i = 0; i < n; i++) cap += json_object_size(objs[i]);
  *scalars = *more = NULL;
  *ns = *nm = 0;
  s = malloc((cap ? cap : 1) * sizeof *s);
  m = malloc((cap ? cap : 1) * sizeof *m);
  if (!s || !m) {
    free(s);
    free(m);
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *obj = (json_t *)objs[i];
    for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
      cli_key k = {json_object_iter_key(it), json_object_iter_key_len(it)};
      if (cli_is_scalar(json_object_iter_value(it)))
        s[a++] = k;
      else
        m[b++] = k;
    }
  }
  for (int pass = 0; pass < 2; pass++) {
    cli_key *arr = pass ? m : s;
    size_t *cnt = pass ? &b : &a, w = 0;
    qsort(arr, *cnt, sizeof *arr, (int (*)(const void *, const void *))cli_key_cmp);
    for (size_t r = 0; r < *cnt; r++)
      if (w == 0 || cli_key_cmp(&arr[w - 1], &arr[r]) != 0) arr[w++] = arr[r];
    *cnt = w;
  }
  *scalars = s;
  *ns = a;
  *more = m;
  *nm = b;
  return 0;
}

static int build(table *t, const title_ref *title, const json_t *cur, long indent);

/* Header cells from member names. */
static cell *cells_from_keys(const cli_key *keys, size_t n) {
  cell *c = cells_new(n);
  if (!c) return NULL;
  for (size_t i = 0; i < n; i++) {
    if (cell_from_bytes(&c[i], keys[i].s, keys[i].len) != 0) {
      cells_free(c, i);
      return NULL;
    }
  }
  return c;
}

/* One object: its scalars as one row under their names (a lone scalar as a
 * name/value row), then a sub-table per nested member. */
static int build_from_object(table *t, const json_t *obj, long indent) {
  cli_key *scalars, *more;
  size_t ns, nm;
  int rc = 0;
  section *s = &t->secs[t->n - 1];
  if (group_keys(&obj, 1, &scalars, &ns, &more, &nm) != 0) return -1;
  if (ns == 1) {
    cell *c = cells_new(2);
    if (!c || cell_from_bytes(&c[0], scalars[0].s, scalars[0].len) != 0 ||
        cell_from_value(&c[1], json_object_getn(obj, scalars[0].s, scalars[0].len)) != 0) {
      cells_free(c, 2);
      rc = -1;
    } else {
      rc = add_row(s, c, 2);
    }
  } else if (ns > 1) {
    cell *h = cells_from_keys(scalars, ns), *c = cells_new(ns);
    if (!h || !c) {
      cells_free(h, h ? ns : 0);
      free(c);
      rc = -1;
    } else {
      for (size_t i = 0; i < ns && rc == 0; i++)
        if (cell_from_value(&c[i], json_object_getn(obj, scalars[i].s, scalars[i].len)) != 0) rc = -1;
      if (rc != 0) {
        cells_free(h, ns);
        cells_free(c, ns);
      } else {
        rc = add_header(s, h, ns);
        if (rc == 0)
          rc = add_row(s, c, ns);
        else
          cells_free(c, ns);
      }
    }
  }
  for (size_t i = 0; i < nm && rc == 0; i++) {
    title_ref sub = {more[i].s, more[i].len};
    rc = build(t, &sub, json_object_getn(obj, more[i].s, more[i].len), indent + 1);
    if (rc == TABLE_EMPTY) rc = 0;
  }
  free(scalars);
  free(more);
  return rc;
}

/* A list of objects: one header of every scalar member name, a row per
 * object; when the objects have nested members, each object after the first
 * restarts the section so its sub-tables follow its own row. */
static int build_from_object_list(table *t, const json_t *list, long indent, const title_ref *title) {
  size_t n = json_array_size(list), ns, nm;
  const json_t **objs;
  cli_key *scalars, *more;
  int rc = 0;
  objs = calloc(n ? n : 1, sizeof *objs);
  if (!objs) return -1;
  for (size_t i = 0; i < n; i++) {
    objs[i] = json_array_get(list, i);
    if (!json_is_object(objs[i])) {
      free(objs);
      return TABLE_UNPRINTABLE;
    }
  }
  if (group_keys(objs, n, &scalars, &ns, &more, &nm) != 0) {
    free(objs);
    return -1;
  }
  for (size_t i = 0; i < n && rc == 0; i++) {
    cell *h, *c;
    if (i == 0 || nm > 0) {
      if (i > 0) rc = new_section(t, *title, indent);
      if (rc != 0) break;
      h = cells_from_keys(scalars, ns);
      if (!h) {
        rc = -1;
        break;
      }
      rc = add_header(&t->secs[t->n - 1], h, ns);
      if (rc != 0) break;
    }
    c = cells_new(ns);
    if (!c) {
      rc = -1;
      break;
    }
    for (size_t k = 0; k < ns && rc == 0; k++)
      if (cell_from_value(&c[k], json_object_getn(objs[i], scalars[k].s, scalars[k].len)) != 0) rc = -1;
    if (rc != 0) {
      cells_free(c, ns);
      break;
    }
    rc = add_row(&t->secs[t->n - 1], c, ns);
    for (size_t k = 0; k < nm && rc == 0; k++) {
      const json_t *v = json_object_getn(objs[i], more[k].s, more[k].len);
      title_ref sub = {more[k].s, more[k].len};
      if (!v) continue;
      rc = build(t, &sub, v, indent + 1);
      if (rc == TABLE_EMPTY) rc = 0;
    }
  }
  free(objs);
  free(scalars);
  free(more);
  return rc;
}

/* A list whose first element is no object: scalars one per row, a list of
 * scalars (or an object's member names, as Python iterates a dict) as one
 * row, anything deeper walked into the current section. */
static int build_from_list(table *t, const json_t *list) {
  int rc = 0;
  for (size_t i = 0; i < json_array_size(list) && rc == 0; i++) {
    const json_t *item = json_array_get(list, i);
    cell *c;
    size_t n = 0;
    if (cli_is_scalar(item)) {
      c = cells_new(1);
      if (!c || cell_from_value(&c[0], item) != 0) {
        free(c);
        return -1;
      }
      rc = add_row(&t->secs[t->n - 1], c, 1);
      continue;
    }
    if (json_is_array(item)) {
      int all_scalar = 1;
      for (size_t k = 0; k < json_array_size(item); k++)
        if (!cli_is_scalar(json_array_get(item, k))) all_scalar = 0;
      if (!all_scalar) {
        rc = build(t, NULL, item, 0);
        if (rc == TABLE_EMPTY) rc = 0;
        continue;
      }
      n = json_array_size(item);
      c = cells_new(n);
      if (!c) return -1;
      for (size_t k = 0; k < n && rc == 0; k++)
        if (cell_from_value(&c[k], json_array_get(item, k)) != 0) rc = -1;
    } else {
      json_t *obj = (json_t *)item;
      size_t k = 0;
      n = json_object_size(obj);
      c = cells_new(n);
      if (!c) return -1;
      for (void *it = json_object_iter(obj); it && rc == 0; it = json_object_iter_next(obj, it), k++)
        if (cell_from_bytes(&c[k], json_object_iter_key(it), json_object_iter_key_len(it)) != 0) rc = -1;
    }
    if (rc != 0) {
      cells_free(c, n);
      return rc;
    }
    rc = add_row(&t->secs[t->n - 1], c, n);
  }
  return rc;
}

/* The CLI's walk: a titled section for `cur` (no new section when title is
 * NULL), then its rows.  TABLE_EMPTY when `cur` is false and nothing was
 * added. */
static int build(table *t, const title_ref *title, const json_t *cur, long indent) {
  int rc = 0;
  if (is_false(cur)) return TABLE_EMPTY;
  if (title && new_section(t, *title, indent) != 0) return -1;
  if (t->n == 0) return TABLE_UNPRINTABLE;
  if (json_is_array(cur)) {
    if (json_is_object(json_array_get(cur, 0))) {
      title_ref none = {NULL, 0};
      rc = build_from_object_list(t, cur, indent, title ? title : &none);
    } else {
      rc = build_from_list(t, cur);
    }
  }
  if (json_is_object(cur)) rc = build_from_object(t, cur, indent);
  return rc;
}

/* ---- rendering ----------------------------------------------------------------- */

static long title_width(const section *s) {
  return s->title_none ? 4 : (long)s->title.width; /* str(None) is "None" */
}

static long section_width(const section *s) {
  long total = 0;
  for (size_t i = 0; i < s->nmax; i++) total += (long)s->max_widths[i] + 4;
  total += 2 + 2 * s->indent;
  return title_width(s) + 2 + 2 * s->indent > total ? title_width(s) + 2 + 2 * s->indent : total;
}

static long table_width(const table *t) {
  long w = 0;
  for (size_t i = 0; i < t->n; i++)
    if (section_width(&t->secs[i]) > w) w = section_width(&t->secs[i]);
  return w;
}

/* Single-row sections with headers become one name/value row per column. */
static int make_vertical(table *t) {
  for (size_t i = 0; i < t->n; i++) {
    section *s = &t->secs[i], v;
    size_t n;
    int rc = 0;
    if (s->nrows != 1 || s->nheaders == 0) continue;
    memset(&v, 0, sizeof v);
    v.num_cols = -1;
    v.indent = s->indent;
    v.title = s->title;
    v.title_none = s->title_none;
    s->title.s = NULL;
    n = s->nheaders < s->rows[0].n ? s->nheaders : s->rows[0].n;
    for (size_t k = 0; k < n && rc == 0; k++) {
      cell *c = cells_new(2);
      if (!c || cell_from_bytes(&c[0], s->headers[k].s, s->headers[k].len) != 0 ||
          cell_from_bytes(&c[1], s->rows[0].cells[k].s, s->rows[0].cells[k].len) != 0) {
        cells_free(c, 2);
        rc = -1;
      } else {
        rc = add_row(&v, c, 2);
      }
    }
    section_free(s);
    *s = v;
    if (rc != 0) return rc;
  }
  return 0;
}

/* The CLI's column widths for a section drawn `max_width` wide: each
 * column's widest text plus 4, scaled to the width with Python's round()
 * (half to even), then corrected one column at a time until they add up. */
static long *column_widths(const section *s, long max_width) {
  long *w, sum = 0, off_by;
  double scale;
  if (s->nmax == 0) return NULL;
  w = malloc(s->nmax * sizeof *w);
  if (!w) return NULL;
  for (size_t i = 0; i < s->nmax; i++) sum += (long)s->max_widths[i] + 4;
  scale = (double)max_width / (double)sum;
  off_by = -max_width;
  for (size_t i = 0; i < s->nmax; i++) {
    w[i] = (long)nearbyint(scale * (double)((long)s->max_widths[i] + 4));
    off_by += w[i];
  }
  while (off_by != 0) {
    for (size_t k = 0; k < s->nmax && off_by != 0; k++) {
      size_t i = off_by < 0 ? s->nmax - 1 - k : k;
      if (off_by > 0) {
        w[i]--;
        off_by--;
      } else {
        w[i]++;
        off_by++;
      }
    }
  }
  return w;
}

typedef struct render {
  cli_output_buf *out;
  int color;
  long indent;
} render;

static int put_bars(const render *r) {
  for (long i = 0; i < r->indent; i++)
    if ((r->color && cli_buf_puts(r->out, COLOR_BAR_ON "|" COLOR_OFF) != 0) ||
        (!r->color && cli_buf_putc(r->out, '|') != 0))
      return -1;
  return 0;
}

static int line_start(const render *r) { return put_bars(r); }

static int line_end(const render *r) { return put_bars(r) != 0 || cli_buf_putc(r->out, '\n') != 0 ? -1 : 0; }

/* `text` centred in `length` columns between the edges (the CLI's
 * center_text: left-biased, the right side takes the rest). */
static int put_centered(cli_output_buf *b, const cell *text, long length, const char *left) {
  long left_len = (long)strlen(left), text_len = (long)text->width;
  long start = length / 2 - text_len / 2 - 1;
  long so_far = left_len + start + text_len;
  if (cli_buf_puts(b, left) != 0 || cli_buf_repeat(b, ' ', start) != 0 ||
      cli_buf_put(b, text->s, text->len) != 0 || cli_buf_repeat(b, ' ', length - 1 - so_far) != 0)
    return -1;
  return cli_buf_putc(b, '|');
}

/* A cell left-aligned after two spaces (none when it does not fit). */
static int put_left(const render *r, const cell *text, long length, const char *left) {
  long left_len = (long)strlen(left), text_len = (long)text->width;
  long padding = length - (text_len + 2 + left_len + 1) >= 0 ? 2 : 0;
  if (cli_buf_puts(r->out, left) != 0 || cli_buf_repeat(r->out, ' ', padding) != 0) return -1;
  if (r->color && cli_buf_puts(r->out, COLOR_CELL_ON) != 0) return -1;
  if (cli_buf_put(r->out, text->s, text->len) != 0) return -1;
  if (r->color && cli_buf_puts(r->out, COLOR_OFF) != 0) return -1;
  if (cli_buf_repeat(r->out, ' ', length - (left_len + padding + text_len) - 1) != 0) return -1;
  return cli_buf_putc(r->out, '|');
}

/* +-----+------+ */
static int put_rule(const render *r, const long *w, size_t n) {
  if (line_start(r) != 0) return -1;
  for (size_t i = 0; i < n; i++) {
    if (i == 0 && (cli_buf_putc(r->out, '+') != 0 || cli_buf_repeat(r->out, '-', w[i] - 2) != 0)) return -1;
    if (i > 0 && cli_buf_repeat(r->out, '-', w[i] - 1) != 0) return -1;
    if (cli_buf_putc(r->out, '+') != 0) return -1;
  }
  return line_end(r);
}

static int render_section(cli_output_buf *out, const section *s, long table_w, int color) {
  render r = {out, color, s->indent};
  long max_width = table_w - s->indent * 2;
  long *w = NULL;
  int rc = 0;
  if (s->title.len > 0) {
    if (line_start(&r) != 0 || put_centered(out, &s->title, max_width, "|") != 0 || line_end(&r) != 0)
      return -1;
    if (s->nheaders == 0 && s->nrows == 0) {
      if (line_start(&r) != 0 || cli_buf_putc(out, '+') != 0 || cli_buf_repeat(out, '-', max_width - 2) != 0 ||
          cli_buf_putc(out, '+') != 0 || line_end(&r) != 0)
        return -1;
    }
  }
  if (s->nheaders == 0 && s->nrows == 0) return 0;
  w = column_widths(s, max_width);
  if (!w) return s->nmax == 0 ? 0 : -1;
  if (s->nheaders > 0) {
    size_t n = s->nheaders < s->nmax ? s->nheaders : s->nmax;
    rc = put_rule(&r, w, s->nmax) != 0 || line_start(&r) != 0 ? -1 : 0;
    for (size_t i = 0; i < n && rc == 0; i++) rc = put_centered(out, &s->headers[i], w[i], i == 0 ? "|" : "");
    if (rc == 0) rc = line_end(&r);
  }
  if (rc == 0 && s->nrows > 0) {
    rc = put_rule(&r, w, s->nmax);
    for (size_t k = 0; k < s->nrows && rc == 0; k++) {
      size_t n = s->rows[k].n < s->nmax ? s->rows[k].n : s->nmax;
      rc = line_start(&r);
      for (size_t i = 0; i < n && rc == 0; i++) rc = put_left(&r, &s->rows[k].cells[i], w[i], i == 0 ? "|" : "");
      if (rc == 0) rc = line_end(&r);
    }
    if (rc == 0) rc = put_rule(&r, w, s->nmax);
  }
  free(w);
  return rc;
}

kerr_code cli_output_table(const json_t *doc, const cli_output_opts *opts, cli_output_buf *out, kerr *e) {
  table t = {0};
  title_ref title = {opts->title ? opts->title : "", opts->title ? strlen(opts->title) : 0};
  long width, terminal = opts->terminal_width > 0 ? opts->terminal_width : CLI_OUTPUT_DEFAULT_WIDTH;
  int rc = build(&t, &title, doc, 0);
  kerr_code code = KERR_OK;
  if (rc == TABLE_EMPTY) {
    rc = 0; /* the CLI prints nothing for a false value */
    goto done;
  }
  if (rc != 0) goto done;
  width = table_width(&t);
  if (width > terminal) {
    rc = make_vertical(&t);
    if (rc != 0) goto done;
    width = table_width(&t);
  }
  if (cli_buf_repeat(out, '-', width) != 0 || cli_buf_putc(out, '\n') != 0) rc = -1;
  for (size_t i = 0; i < t.n && rc == 0; i++) rc = render_section(out, &t.secs[i], width, opts->color);
done:
  if (rc == TABLE_UNPRINTABLE)
    code = kerr_set(e, KERR_VALIDATION, "table output cannot show this data (rows of different lengths)");
  else if (rc != 0)
    code = kerr_set(e, KERR_INTERNAL, "out of memory formatting the table");
  table_free(&t);
  return code;
}
