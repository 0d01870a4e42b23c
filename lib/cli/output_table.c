/* output_table.c - `--output table`: the reply drawn as nested boxes, as
 * the AWS CLI draws it.
 *
 * Two passes.  The first walks the document and lays it out as a list of
 * blocks, each a box at some nesting depth with an optional title, an
 * optional header line and rows of cells (text already spelled as Python
 * spells it).  The second measures the blocks, gives every column its width
 * and prints.  The AWS CLI's rules, learned by running it:
 *
 * Laying out (a value that Python finds false - null, false, 0, "", [], {}
 * - adds nothing at all; a named value opens a new block):
 *   - the reply opens the first block, titled with the operation's name;
 *   - an object's scalar members (ordered by key) become one row of values
 *     under a header line of their keys, or, when there is just one, a
 *     single key/value row; each other member (by key) opens a block one
 *     level deeper titled with its key;
 *   - an array whose first element is an object is a list of records (all
 *     its elements must be objects): the header holds every key that has a
 *     scalar somewhere, each element gives a row; when some element has
 *     arrays or objects, those follow each row in deeper blocks, and every
 *     element after the first repeats the block title and header first;
 *   - any other array gives one row per element: a scalar alone, an
 *     array of scalars as its cells, an object as its keys; an array that
 *     holds arrays or objects is laid out in turn, at depth 0 and without a
 *     title, and its rows go to the block opened last;
 *   - rows of a block must all have as many cells as its first row (or
 *     header): the CLI fails otherwise, and so do we.
 * Measuring:
 *   - a column's natural width is its widest cell plus 4; a block needs its
 *     columns plus 2 for the outer bars, or its title plus 2, plus 2 per
 *     depth level; the table is as wide as its widest block, and every block
 *     is stretched (or squeezed) to it;
 *   - when that is wider than the terminal, every block holding a header
 *     and exactly one row is turned on its side (one key/value row per
 *     column) and the table is measured again;
 *   - a block's columns share its inner width in proportion to their natural
 *     widths, each rounded half to even; the columns from the first give
 *     back what rounding overshot, those from the last take what it left.
 * Drawing: text is measured in columns, East Asian wide, full-width and
 * ambiguous characters counting two; titles and headers are centred, cells
 * start two spaces in (none when that does not fit). */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/output_internal.h"

#define TBL_BAR_COLOR "\x1b[2m\x1b[33m|\x1b[0m"
#define TBL_CELL_COLOR "\x1b[1m\x1b[34m"
#define TBL_COLOR_END "\x1b[0m"

typedef struct tbl_cell {
  char *text; /* malloc'd, NUL-terminated; may hold NUL bytes */
  size_t len;
  long cols;
} tbl_cell;

typedef struct tbl_block {
  char *title; /* NULL: no title; malloc'd copy (the key it came from may not outlive the layout) */
  size_t title_len;
  int depth;
  tbl_cell *heads;
  size_t nheads;
  int ncols_known;
  size_t ncols;
  long *widest;      /* per column: the widest header or cell, in columns */
  tbl_cell *cells;   /* nrows rows of ncols cells, one row after another */
  size_t nrows;
  size_t cells_alloc;
} tbl_block;

typedef struct tbl_layout {
  tbl_block *blocks;
  size_t nblocks;
  size_t blocks_alloc;
  size_t cap;   /* the output cap */
  size_t drawn; /* bytes the cells made so far will take at least: each is
                 * printed in full, with at least a bar after it */
  kerr *err;
} tbl_layout;

static kerr_code tbl_place(tbl_layout *t, const json_t *v, const char *title, int depth);

static kerr_code tbl_nomem(tbl_layout *t) {
  return kerr_set(t->err, KERR_INTERNAL, "out of memory formatting the output");
}

static void tbl_cells_free(tbl_cell *cells, size_t n) {
  for (size_t i = 0; i < n; i++) free(cells[i].text);
}

static void tbl_layout_free(tbl_layout *t) {
  for (size_t i = 0; i < t->nblocks; i++) {
    tbl_block *blk = &t->blocks[i];
    free(blk->title);
    tbl_cells_free(blk->heads, blk->nheads);
    free(blk->heads);
    tbl_cells_free(blk->cells, blk->nrows * blk->ncols);
    free(blk->cells);
    free(blk->widest);
  }
  free(t->blocks);
}

/* Python's truth value: what the CLI skips without a trace. */
static int tbl_is_false(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_NULL:
  case JSON_FALSE:
    return 1;
  case JSON_INTEGER:
    return json_integer_value(v) == 0;
  case JSON_REAL:
    return json_real_value(v) == 0;
  case JSON_STRING:
    return json_string_length(v) == 0;
  case JSON_ARRAY:
    return json_array_size(v) == 0;
  case JSON_OBJECT:
    return json_object_size(v) == 0;
  default:
    return 0;
  }
}

/* ---- cells ----------------------------------------------------------------- */

/* Count a new cell against the cap before keeping it, so a layout that is
 * bound to print too much (many records with different keys make a header
 * and a cell per key for every one of them) stops before it is built. */
static kerr_code tbl_count_cell(tbl_layout *t, const tbl_cell *cell) {
  if (cell->len + 1 > t->cap - t->drawn)
    return kerr_set(t->err, KERR_VALIDATION, "output larger than the limit of %zu bytes; narrow it with --query",
                    t->cap);
  t->drawn += cell->len + 1;
  return KERR_OK;
}

static kerr_code tbl_cell_of_text(tbl_layout *t, const char *s, size_t len, tbl_cell *cell) {
  out_buf tmp = {0};
  kerr_code rc;
  tmp.cap = t->cap;
  tmp.err = t->err;
  rc = out_put(&tmp, s, len); /* allocates even for "" */
  if (rc != KERR_OK) {
    out_free(&tmp);
    return rc;
  }
  cell->text = tmp.data;
  cell->len = tmp.len;
  cell->cols = out_text_columns(tmp.data, tmp.len);
  return tbl_count_cell(t, cell);
}

/* A value's cell: Python's str() of it. */
static kerr_code tbl_cell_of_value(tbl_layout *t, const json_t *v, tbl_cell *cell) {
  out_buf tmp = {0};
  kerr_code rc;
  tmp.cap = t->cap;
  tmp.err = t->err;
  rc = out_py_str(&tmp, v);
  if (rc == KERR_OK) rc = out_put(&tmp, "", 0); /* allocates when str() was "" */
  if (rc != KERR_OK) {
    out_free(&tmp);
    return rc;
  }
  cell->text = tmp.data;
  cell->len = tmp.len;
  cell->cols = out_text_columns(tmp.data, tmp.len);
  return tbl_count_cell(t, cell);
}

/* ---- blocks ---------------------------------------------------------------- */

static kerr_code tbl_open_block(tbl_layout *t, const char *title, int depth) {
  tbl_block *blk;
  if (t->nblocks == t->blocks_alloc) {
    size_t want = t->blocks_alloc ? t->blocks_alloc * 2 : 8;
    tbl_block *grown = realloc(t->blocks, want * sizeof *grown);
    if (!grown) return tbl_nomem(t);
    t->blocks = grown;
    t->blocks_alloc = want;
  }
  blk = &t->blocks[t->nblocks];
  memset(blk, 0, sizeof *blk);
  if (title) {
    blk->title_len = strlen(title);
    blk->title = malloc(blk->title_len + 1);
    if (!blk->title) return tbl_nomem(t);
    memcpy(blk->title, title, blk->title_len + 1);
  }
  blk->depth = depth;
  t->nblocks++;
  return KERR_OK;
}

static kerr_code tbl_set_columns(tbl_layout *t, tbl_block *blk, size_t n) {
  blk->ncols_known = 1;
  blk->ncols = n;
  if (n == 0) return KERR_OK;
  blk->widest = calloc(n, sizeof *blk->widest);
  return blk->widest ? KERR_OK : tbl_nomem(t);
}

static kerr_code tbl_refuse_shape(tbl_layout *t, size_t want, size_t got) {
  return kerr_set(t->err, KERR_VALIDATION,
                  "output cannot show this reply as a table: a row of %zu cells where its box has %zu; "
                  "use --output json or narrow it with --query",
                  got, want);
}

/* The header line of the block opened last; takes the cells. */
static kerr_code tbl_put_heads(tbl_layout *t, tbl_cell *heads, size_t n) {
  tbl_block *blk = &t->blocks[t->nblocks - 1];
  kerr_code rc = KERR_OK;
  if (!blk->ncols_known)
    rc = tbl_set_columns(t, blk, n);
  else if (n > blk->ncols)
    rc = tbl_refuse_shape(t, blk->ncols, n);
  if (rc != KERR_OK) {
    tbl_cells_free(heads, n);
    free(heads);
    return rc;
  }
  for (size_t i = 0; i < n; i++)
    if (heads[i].cols > blk->widest[i]) blk->widest[i] = heads[i].cols;
  tbl_cells_free(blk->heads, blk->nheads);
  free(blk->heads);
  blk->heads = heads;
  blk->nheads = n;
  return KERR_OK;
}

/* A row for the block opened last; takes the cells (and frees the array). */
static kerr_code tbl_put_row(tbl_layout *t, tbl_cell *row, size_t n) {
  tbl_block *blk = &t->blocks[t->nblocks - 1];
  kerr_code rc = KERR_OK;
  if (!blk->ncols_known)
    rc = tbl_set_columns(t, blk, n);
  else if (n != blk->ncols)
    rc = tbl_refuse_shape(t, blk->ncols, n);
  if (rc == KERR_OK && (blk->nrows + 1) * blk->ncols > blk->cells_alloc) {
    size_t want = blk->cells_alloc ? blk->cells_alloc * 2 : 8 * n;
    tbl_cell *grown;
    while (want < (blk->nrows + 1) * blk->ncols) want *= 2;
    grown = realloc(blk->cells, want * sizeof *grown);
    if (!grown) {
      rc = tbl_nomem(t);
    } else {
      blk->cells = grown;
      blk->cells_alloc = want;
    }
  }
  if (rc != KERR_OK) {
    tbl_cells_free(row, n);
    free(row);
    return rc;
  }
  for (size_t i = 0; i < n; i++) {
    if (row[i].cols > blk->widest[i]) blk->widest[i] = row[i].cols;
    blk->cells[blk->nrows * n + i] = row[i];
  }
  blk->nrows++;
  free(row);
  return KERR_OK;
}

/* ---- the first pass: document to blocks ------------------------------------- */

/* Cells for keys[0..n) (as text) or for obj's values at those keys (""
 * where one is missing).  *cells is malloc'd. */
static kerr_code tbl_make_cells(tbl_layout *t, const json_t *obj, const char **keys, size_t n, tbl_cell **cells) {
  kerr_code rc = KERR_OK;
  size_t made = 0;
  *cells = calloc(n ? n : 1, sizeof **cells);
  if (!*cells) return tbl_nomem(t);
  for (; made < n && rc == KERR_OK; made++) {
    const json_t *v = obj ? json_object_get(obj, keys[made]) : NULL;
    if (!obj)
      rc = tbl_cell_of_text(t, keys[made], strlen(keys[made]), &(*cells)[made]);
    else if (v)
      rc = tbl_cell_of_value(t, v, &(*cells)[made]);
    else
      rc = tbl_cell_of_text(t, "", 0, &(*cells)[made]);
  }
  if (rc != KERR_OK) {
    tbl_cells_free(*cells, made);
    free(*cells);
    *cells = NULL;
  }
  return rc;
}

static kerr_code tbl_place_object(tbl_layout *t, const json_t *obj, int depth) {
  const char **keys = NULL, **scalars = NULL;
  size_t nkeys = 0, nscalars = 0;
  tbl_cell *cells = NULL;
  kerr_code rc = out_sorted_keys(obj, &keys, &nkeys, t->err);
  if (rc != KERR_OK) return rc;
  scalars = malloc((nkeys ? nkeys : 1) * sizeof *scalars);
  if (!scalars) {
    rc = tbl_nomem(t);
    goto out;
  }
  for (size_t k = 0; k < nkeys; k++)
    if (out_is_scalar(json_object_get(obj, keys[k]))) scalars[nscalars++] = keys[k];
  if (nscalars == 1) {
    /* A lone scalar member: one key/value row, no header. */
    cells = calloc(2, sizeof *cells);
    if (!cells) {
      rc = tbl_nomem(t);
      goto out;
    }
    rc = tbl_cell_of_text(t, scalars[0], strlen(scalars[0]), &cells[0]);
    if (rc == KERR_OK) rc = tbl_cell_of_value(t, json_object_get(obj, scalars[0]), &cells[1]);
    if (rc != KERR_OK) {
      tbl_cells_free(cells, 2);
      free(cells);
      goto out;
    }
    rc = tbl_put_row(t, cells, 2);
  } else if (nscalars > 1) {
    rc = tbl_make_cells(t, NULL, scalars, nscalars, &cells);
    if (rc == KERR_OK) rc = tbl_put_heads(t, cells, nscalars);
    if (rc == KERR_OK) rc = tbl_make_cells(t, obj, scalars, nscalars, &cells);
    if (rc == KERR_OK) rc = tbl_put_row(t, cells, nscalars);
  }
  for (size_t k = 0; k < nkeys && rc == KERR_OK; k++) {
    const json_t *v = json_object_get(obj, keys[k]);
    if (!out_is_scalar(v)) rc = tbl_place(t, v, keys[k], depth + 1);
  }
out:
  free((void *)scalars);
  free((void *)keys);
  return rc;
}

/* Sorted keys of the union, over the records, of members that are scalars
 * (want_scalars) or not.  *set holds them (release it), *keys points at its
 * keys (free() it). */
static kerr_code tbl_record_keys(tbl_layout *t, const json_t *records, int want_scalars, json_t **set,
                                 const char ***keys, size_t *n) {
  size_t i;
  const json_t *rec;
  *keys = NULL;
  *n = 0;
  *set = json_object();
  if (!*set) return tbl_nomem(t);
  json_array_foreach(records, i, rec) {
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)rec, key, v) {
      if (out_is_scalar(v) == want_scalars && json_object_set(*set, key, json_null()) != 0) return tbl_nomem(t);
    }
  }
  return out_sorted_keys(*set, keys, n, t->err);
}

static kerr_code tbl_place_records(tbl_layout *t, const json_t *records, const char *title, int depth) {
  json_t *head_set = NULL, *nested_set = NULL;
  const char **heads = NULL, **nested = NULL;
  size_t nheads = 0, nnested = 0, i;
  const json_t *rec;
  tbl_cell *cells = NULL;
  kerr_code rc = KERR_OK;
  json_array_foreach(records, i, rec) {
    if (!json_is_object(rec)) {
      rc = kerr_set(t->err, KERR_VALIDATION,
                    "output cannot show this reply as a table: a list starts with an object but holds "
                    "other values; use --output json or narrow it with --query");
      goto out;
    }
  }
  rc = tbl_record_keys(t, records, 1, &head_set, &heads, &nheads);
  if (rc == KERR_OK) rc = tbl_record_keys(t, records, 0, &nested_set, &nested, &nnested);
  if (rc == KERR_OK) rc = tbl_make_cells(t, NULL, heads, nheads, &cells);
  if (rc == KERR_OK) rc = tbl_put_heads(t, cells, nheads);
  json_array_foreach(records, i, rec) {
    if (rc != KERR_OK) break;
    if (i > 0 && nnested > 0) {
      /* Records with nested parts each get their own box. */
      rc = tbl_open_block(t, title, depth);
      if (rc == KERR_OK) rc = tbl_make_cells(t, NULL, heads, nheads, &cells);
      if (rc == KERR_OK) rc = tbl_put_heads(t, cells, nheads);
    }
    if (rc == KERR_OK) rc = tbl_make_cells(t, rec, heads, nheads, &cells);
    if (rc == KERR_OK) rc = tbl_put_row(t, cells, nheads);
    for (size_t k = 0; k < nnested && rc == KERR_OK; k++) {
      const json_t *v = json_object_get(rec, nested[k]);
      if (v) rc = tbl_place(t, v, nested[k], depth + 1);
    }
  }
out:
  free((void *)heads);
  free((void *)nested);
  json_decref(head_set);
  json_decref(nested_set);
  return rc;
}

/* One element of a plain (not record) array. */
static kerr_code tbl_place_item(tbl_layout *t, const json_t *item) {
  tbl_cell *cells = NULL;
  size_t n = 0;
  kerr_code rc = KERR_OK;
  if (out_is_scalar(item)) {
    cells = calloc(1, sizeof *cells);
    if (!cells) return tbl_nomem(t);
    rc = tbl_cell_of_value(t, item, &cells[0]);
    n = 1;
  } else if (json_is_object(item)) {
    /* Its keys are its cells (they are strings, so always scalars). */
    const char *key;
    const json_t *v;
    n = json_object_size(item);
    cells = calloc(n ? n : 1, sizeof *cells);
    if (!cells) return tbl_nomem(t);
    n = 0;
    json_object_foreach((json_t *)item, key, v) {
      (void)v;
      if (rc == KERR_OK) rc = tbl_cell_of_text(t, key, strlen(key), &cells[n++]);
    }
  } else {
    size_t i;
    const json_t *el;
    json_array_foreach(item, i, el) {
      if (!out_is_scalar(el)) return tbl_place(t, item, NULL, 0);
    }
    n = json_array_size(item);
    cells = calloc(n ? n : 1, sizeof *cells);
    if (!cells) return tbl_nomem(t);
    n = 0;
    json_array_foreach(item, i, el) {
      if (rc == KERR_OK) rc = tbl_cell_of_value(t, el, &cells[n++]);
    }
  }
  if (rc != KERR_OK) {
    tbl_cells_free(cells, n);
    free(cells);
    return rc;
  }
  return tbl_put_row(t, cells, n);
}

static kerr_code tbl_place(tbl_layout *t, const json_t *v, const char *title, int depth) {
  kerr_code rc = KERR_OK;
  if (tbl_is_false(v)) return KERR_OK;
  if (title) rc = tbl_open_block(t, title, depth);
  if (rc != KERR_OK) return rc;
  if (t->nblocks == 0) return KERR_OK; /* cannot happen: the reply always opens one */
  if (json_is_object(v)) return tbl_place_object(t, v, depth);
  if (json_is_array(v)) {
    size_t i;
    const json_t *item;
    if (json_is_object(json_array_get(v, 0))) return tbl_place_records(t, v, title, depth);
    json_array_foreach(v, i, item) {
      if (rc == KERR_OK) rc = tbl_place_item(t, item);
    }
  }
  return rc;
}

/* ---- the second pass: measure and draw ------------------------------------- */

static long tbl_block_width(const tbl_block *blk) {
  long cols = 0, title = blk->title ? out_text_columns(blk->title, blk->title_len) : 0;
  for (size_t i = 0; i < blk->ncols; i++) cols += blk->widest[i] + 4;
  cols += 2;
  if (title + 2 > cols) cols = title + 2;
  return cols + 2L * blk->depth;
}

static long tbl_table_width(const tbl_layout *t) {
  long width = 0;
  for (size_t i = 0; i < t->nblocks; i++) {
    long w = tbl_block_width(&t->blocks[i]);
    if (w > width) width = w;
  }
  return width;
}

/* Turn a block with a header and one row on its side: a row per column. */
static kerr_code tbl_turn_on_side(tbl_layout *t, tbl_block *blk) {
  size_t n = blk->nheads < blk->ncols ? blk->nheads : blk->ncols;
  tbl_cell *cells = calloc(2 * (n ? n : 1), sizeof *cells);
  long *widest = calloc(2, sizeof *widest);
  if (!cells || !widest) {
    free(cells);
    free(widest);
    return tbl_nomem(t);
  }
  for (size_t i = 0; i < n; i++) {
    cells[2 * i] = blk->heads[i];
    cells[2 * i + 1] = blk->cells[i];
    blk->heads[i].text = NULL;
    blk->cells[i].text = NULL;
    if (cells[2 * i].cols > widest[0]) widest[0] = cells[2 * i].cols;
    if (cells[2 * i + 1].cols > widest[1]) widest[1] = cells[2 * i + 1].cols;
  }
  tbl_cells_free(blk->heads, blk->nheads);
  free(blk->heads);
  tbl_cells_free(blk->cells, blk->ncols);
  free(blk->cells);
  free(blk->widest);
  blk->heads = NULL;
  blk->nheads = 0;
  blk->cells = cells;
  blk->cells_alloc = 2 * (n ? n : 1);
  blk->nrows = n;
  blk->ncols = 2;
  blk->widest = widest;
  return KERR_OK;
}

static long tbl_floor_half(long v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); }

/* Share `width` among the columns in proportion to widest + 4. */
static void tbl_share(const tbl_block *blk, long width, long *out) {
  long natural = 0, given = 0, over;
  double scale;
  for (size_t i = 0; i < blk->ncols; i++) natural += blk->widest[i] + 4;
  scale = (double)width / (double)natural;
  for (size_t i = 0; i < blk->ncols; i++) {
    out[i] = (long)nearbyint(scale * (double)(blk->widest[i] + 4));
    given += out[i];
  }
  over = given - width;
  while (over != 0) {
    for (size_t k = 0; k < blk->ncols && over != 0; k++) {
      if (over > 0) {
        out[k]--;
        over--;
      } else {
        out[blk->ncols - 1 - k]++;
        over++;
      }
    }
  }
}

typedef struct tbl_pen {
  out_buf *b;
  int color;
  int depth;
} tbl_pen;

static kerr_code tbl_bars(tbl_pen *p) {
  return out_repeat(p->b, p->color ? TBL_BAR_COLOR : "|", p->depth);
}

static kerr_code tbl_line_end(tbl_pen *p) {
  kerr_code rc = tbl_bars(p);
  return rc == KERR_OK ? out_putc(p->b, '\n') : rc;
}

/* Text centred in a cell of `width` that ends with a bar (and starts with
 * one when `left_bar`). */
static kerr_code tbl_centred(tbl_pen *p, const char *text, size_t len, long text_cols, long width, int left_bar) {
  long lead = tbl_floor_half(width) - tbl_floor_half(text_cols) - 1;
  long trail = width - 1 - ((left_bar ? 1 : 0) + lead + text_cols);
  kerr_code rc = left_bar ? out_putc(p->b, '|') : KERR_OK;
  if (rc == KERR_OK) rc = out_repeat(p->b, " ", lead);
  if (rc == KERR_OK) rc = out_put(p->b, text, len);
  if (rc == KERR_OK) rc = out_repeat(p->b, " ", trail);
  if (rc == KERR_OK) rc = out_putc(p->b, '|');
  return rc;
}

/* A row cell: two spaces in when they fit, then the text, then a bar. */
static kerr_code tbl_left(tbl_pen *p, const tbl_cell *cell, long width, int left_bar) {
  long edges = (left_bar ? 1 : 0) + 1;
  long indent = width - (cell->cols + 2 + edges) >= 0 ? 2 : 0;
  long trail = width - ((left_bar ? 1 : 0) + indent + cell->cols) - 1;
  kerr_code rc = left_bar ? out_putc(p->b, '|') : KERR_OK;
  if (rc == KERR_OK) rc = out_repeat(p->b, " ", indent);
  if (rc == KERR_OK && p->color) rc = out_puts(p->b, TBL_CELL_COLOR);
  if (rc == KERR_OK) rc = out_put(p->b, cell->text, cell->len);
  if (rc == KERR_OK && p->color) rc = out_puts(p->b, TBL_COLOR_END);
  if (rc == KERR_OK) rc = out_repeat(p->b, " ", trail);
  if (rc == KERR_OK) rc = out_putc(p->b, '|');
  return rc;
}

/* +----+------+ over the columns. */
static kerr_code tbl_rule(tbl_pen *p, const long *widths, size_t n) {
  kerr_code rc = tbl_bars(p);
  for (size_t i = 0; i < n && rc == KERR_OK; i++) {
    if (i == 0) rc = out_putc(p->b, '+');
    if (rc == KERR_OK) rc = out_repeat(p->b, "-", widths[i] - (i == 0 ? 2 : 1));
    if (rc == KERR_OK) rc = out_putc(p->b, '+');
  }
  return rc == KERR_OK ? tbl_line_end(p) : rc;
}

static kerr_code tbl_draw_block(out_buf *b, const tbl_block *blk, long table_width, int color) {
  tbl_pen pen = {b, color, blk->depth};
  long inner = table_width - 2L * blk->depth;
  long *widths = NULL;
  kerr_code rc = KERR_OK;
  if (blk->ncols > 0) {
    widths = calloc(blk->ncols, sizeof *widths);
    if (!widths) return kerr_set(b->err, KERR_INTERNAL, "out of memory formatting the output");
    tbl_share(blk, inner, widths);
  }
  if (blk->title && blk->title_len > 0) {
    rc = tbl_bars(&pen);
    if (rc == KERR_OK)
      rc = tbl_centred(&pen, blk->title, blk->title_len, out_text_columns(blk->title, blk->title_len), inner, 1);
    if (rc == KERR_OK) rc = tbl_line_end(&pen);
    if (rc == KERR_OK && blk->nheads == 0 && blk->nrows == 0) {
      rc = tbl_bars(&pen);
      if (rc == KERR_OK) rc = out_putc(b, '+');
      if (rc == KERR_OK) rc = out_repeat(b, "-", inner - 2);
      if (rc == KERR_OK) rc = out_putc(b, '+');
      if (rc == KERR_OK) rc = tbl_line_end(&pen);
    }
  }
  if (rc == KERR_OK && blk->nheads > 0) {
    size_t n = blk->nheads < blk->ncols ? blk->nheads : blk->ncols;
    rc = tbl_rule(&pen, widths, blk->ncols);
    if (rc == KERR_OK) rc = tbl_bars(&pen);
    for (size_t i = 0; i < n && rc == KERR_OK; i++)
      rc = tbl_centred(&pen, blk->heads[i].text, blk->heads[i].len, blk->heads[i].cols, widths[i], i == 0);
    if (rc == KERR_OK) rc = tbl_line_end(&pen);
  }
  if (rc == KERR_OK && blk->nrows > 0 && blk->ncols > 0) {
    rc = tbl_rule(&pen, widths, blk->ncols);
    for (size_t r = 0; r < blk->nrows && rc == KERR_OK; r++) {
      rc = tbl_bars(&pen);
      for (size_t i = 0; i < blk->ncols && rc == KERR_OK; i++)
        rc = tbl_left(&pen, &blk->cells[r * blk->ncols + i], widths[i], i == 0);
      if (rc == KERR_OK) rc = tbl_line_end(&pen);
    }
    if (rc == KERR_OK) rc = tbl_rule(&pen, widths, blk->ncols);
  }
  free(widths);
  return rc;
}

/* Lines the table will print: each is at least as many bytes as the table
 * is wide, so this tells early that the output would pass the cap. */
static size_t tbl_line_count(const tbl_layout *t) {
  size_t lines = 1;
  for (size_t i = 0; i < t->nblocks; i++) {
    const tbl_block *blk = &t->blocks[i];
    if (blk->title && blk->title_len > 0) lines += (blk->nheads == 0 && blk->nrows == 0) ? 2 : 1;
    if (blk->nheads > 0) lines += 2;
    if (blk->nrows > 0 && blk->ncols > 0) lines += blk->nrows + 2;
  }
  return lines;
}

kerr_code out_render_table(const json_t *doc, const cli_output_opts *opts, out_buf *b) {
  tbl_layout t = {0};
  long width, terminal = opts->width > 0 ? opts->width : CLI_OUTPUT_DEFAULT_WIDTH;
  kerr_code rc;
  t.cap = b->cap;
  t.err = b->err;
  if (tbl_is_false(doc)) return KERR_OK;
  /* The reply is laid out as the member named after the operation. */
  rc = tbl_place(&t, doc, opts->title ? opts->title : "", 0);
  if (rc != KERR_OK) goto out;
  width = tbl_table_width(&t);
  if (width > terminal) {
    for (size_t i = 0; i < t.nblocks && rc == KERR_OK; i++)
      if (t.blocks[i].nheads > 0 && t.blocks[i].nrows == 1) rc = tbl_turn_on_side(&t, &t.blocks[i]);
    if (rc != KERR_OK) goto out;
    width = tbl_table_width(&t);
  }
  {
    size_t lines = tbl_line_count(&t);
    if ((size_t)width + 1 > b->cap / lines) {
      rc = kerr_set(b->err, KERR_VALIDATION,
                    "output larger than the limit of %zu bytes (a table %ld columns wide, %zu lines); "
                    "narrow it with --query",
                    b->cap, width, lines);
      goto out;
    }
  }
  rc = out_repeat(b, "-", width);
  if (rc == KERR_OK) rc = out_putc(b, '\n');
  for (size_t i = 0; i < t.nblocks && rc == KERR_OK; i++) rc = tbl_draw_block(b, &t.blocks[i], width, opts->color);
out:
  tbl_layout_free(&t);
  return rc;
}
