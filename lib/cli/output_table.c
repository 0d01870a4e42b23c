/* output_table.c - `--output table`: the reply drawn as nested boxes, as
 * the AWS CLI draws it (byte for byte, so screenshots and scrapers agree).
 *
 * Three stages, each over plain data:
 *
 *   1. collect: a walk of the document that appends "blocks" to one flat
 *      array.  A block is one box: its nesting level, an optional title, an
 *      optional header line and rows of cells.  Every cell's text is
 *      written once into one arena; a cell is (offset, length, columns).
 *   2. measure: a pure function over the blocks that picks the table's
 *      width and every block's column widths, turning a block that does
 *      not fit the terminal into key/value rows.
 *   3. draw: each block becomes lines in the output buffer.
 *
 * Memory is bounded by the output cap: every cell is charged (its record,
 * its text and the narrowest it can be drawn) before it is stored, and the
 * table's width times its line count is checked before anything is
 * drawn. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/output_internal.h"

/* Cells are drawn with two spaces before them and need at least this much
 * room in all (the AWS CLI's padding). */
#define TABLE_CELL_PADDING 4
#define TABLE_STYLE_CELL "\x1b[1m\x1b[34m"
#define TABLE_STYLE_BAR "\x1b[2m\x1b[33m|\x1b[0m"
#define TABLE_STYLE_END "\x1b[0m"

typedef struct table_cell {
  size_t text_at; /* offset of the text in the arena */
  size_t text_len;
  int64_t cols; /* drawn width of the text */
} table_cell;

typedef struct table_block {
  int level;
  int titled;  /* 0: no title (measured as the AWS CLI measures "None") */
  table_cell title;
  int has_header;
  size_t header_at, header_count; /* into headers[] */
  size_t rows_at, row_count;      /* into rows[]: row_count x ncols cells */
  long ncols;                     /* -1 until the first header or row */
  int vertical;                   /* set by the measure stage */
  size_t widths_at;               /* into table_layout.widths */
} table_block;

typedef struct table_build {
  cli_out_buf arena; /* every cell's text */
  table_cell *headers;
  size_t header_len, header_room;
  table_cell *rows;
  size_t row_len, row_room;
  table_block *blocks;
  size_t block_len, block_room;
  uint64_t charged; /* bytes charged against the cap so far */
  uint64_t cap;
  kerr *err;
} table_build;

typedef struct table_layout {
  int64_t width;
  int64_t *widths; /* per block, its columns' widths including the border */
  size_t widths_len;
} table_layout;

static kerr_code table_no_memory(kerr *err) {
  return kerr_set(err, KERR_INTERNAL, "out of memory formatting the output");
}

static kerr_code table_too_large(kerr *err, uint64_t cap) {
  return kerr_set(err, KERR_VALIDATION, "output larger than the limit of %llu bytes; narrow it with --query",
                  (unsigned long long)cap);
}

/* Make room for one more item in a growing array. */
static kerr_code table_reserve(void **items, size_t *room, size_t len, size_t size, kerr *err) {
  if (len < *room) return KERR_OK;
  size_t want = *room ? *room * 2 : 16;
  if (want > SIZE_MAX / size) return table_no_memory(err);
  void *grown = realloc(*items, want * size);
  if (!grown) return table_no_memory(err);
  *items = grown;
  *room = want;
  return KERR_OK;
}

/* ---- 1. collect ------------------------------------------------------------ */

/* A cell holding str(value) (or raw text when value is NULL). */
static kerr_code table_make_cell(table_build *tb, const json_t *value, const char *text, size_t len,
                                 table_cell *cell) {
  size_t start = tb->arena.len;
  kerr_code rc = value ? cli_out_py_str(&tb->arena, value) : cli_out_put(&tb->arena, text, len);
  uint64_t cost;
  if (rc != KERR_OK) return rc;
  cell->text_at = start;
  cell->text_len = tb->arena.len - start;
  cell->cols = cli_out_text_columns(tb->arena.data + start, cell->text_len);
  cost = sizeof *cell + cell->text_len + (uint64_t)cell->cols + TABLE_CELL_PADDING;
  if (cost > tb->cap || tb->charged > tb->cap - cost) return table_too_large(tb->err, tb->cap);
  tb->charged += cost;
  return KERR_OK;
}

/* Room for one more cell in `*cells`.  The array doubles, but never past
 * the cells the rest of the budget could pay for, so growing it cannot
 * take much more memory than the cap. */
static kerr_code table_reserve_cell(table_build *tb, table_cell **cells, size_t *room, size_t len) {
  uint64_t affordable = len + 1 + (tb->cap - tb->charged) / (sizeof **cells + TABLE_CELL_PADDING);
  if (len < *room) return KERR_OK;
  if (len >= affordable) return table_too_large(tb->err, tb->cap);
  if (*room * 2 > affordable) {
    table_cell *grown = realloc(*cells, (size_t)affordable * sizeof **cells);
    if (!grown) return table_no_memory(tb->err);
    *cells = grown;
    *room = (size_t)affordable;
    return KERR_OK;
  }
  return table_reserve((void **)cells, room, len, sizeof **cells, tb->err);
}

static kerr_code table_open_block(table_build *tb, const char *title, size_t title_len, int level) {
  kerr_code rc = table_reserve((void **)&tb->blocks, &tb->block_room, tb->block_len, sizeof *tb->blocks, tb->err);
  table_block *blk;
  if (rc != KERR_OK) return rc;
  blk = &tb->blocks[tb->block_len];
  memset(blk, 0, sizeof *blk);
  blk->level = level;
  blk->ncols = -1;
  blk->rows_at = tb->row_len;
  if (title) {
    blk->titled = 1;
    rc = table_make_cell(tb, NULL, title, title_len, &blk->title);
    if (rc != KERR_OK) return rc;
  }
  tb->block_len++;
  return KERR_OK;
}

static table_block *table_current(table_build *tb) { return &tb->blocks[tb->block_len - 1]; }

static kerr_code table_set_header(table_build *tb, const cli_out_member *keys, size_t count) {
  table_block *blk;
  size_t at = tb->header_len;
  for (size_t i = 0; i < count; i++) {
    kerr_code rc = table_reserve_cell(tb, &tb->headers, &tb->header_room, tb->header_len);
    if (rc == KERR_OK) rc = table_make_cell(tb, NULL, keys[i].key, keys[i].key_len, &tb->headers[tb->header_len]);
    if (rc != KERR_OK) return rc;
    tb->header_len++;
  }
  blk = table_current(tb);
  blk->has_header = 1;
  blk->header_at = at;
  blk->header_count = count;
  if (blk->ncols < 0) blk->ncols = (long)count;
  return KERR_OK;
}

/* Start a row of `count` cells in the current block. */
static kerr_code table_begin_row(table_build *tb, size_t count) {
  table_block *blk = table_current(tb);
  if (blk->ncols < 0) blk->ncols = (long)count;
  if ((size_t)blk->ncols != count)
    return kerr_set(tb->err, KERR_VALIDATION,
                    "table output cannot show rows of %zu and %ld cells in one box (the AWS CLI fails on it too); "
                    "use --output json or text",
                    count, blk->ncols);
  blk->row_count++;
  return KERR_OK;
}

static kerr_code table_add_cell(table_build *tb, const json_t *value, const char *text, size_t len) {
  kerr_code rc = table_reserve_cell(tb, &tb->rows, &tb->row_room, tb->row_len);
  if (rc == KERR_OK) rc = table_make_cell(tb, value, text, len, &tb->rows[tb->row_len]);
  if (rc == KERR_OK) tb->row_len++;
  return rc;
}

/* COLLECT STAGE TO BE WRITTEN: static kerr_code table_collect(table_build *tb, const json_t *doc, const char *title)
 * fills tb->blocks, tb->headers, tb->rows and the arena (see the helpers above). */

/* ---- 2. measure ------------------------------------------------------------ */

static int64_t table_add_checked(int64_t a, int64_t b, int *overflow) {
  if (b > 0 && a > INT64_MAX - b) {
    *overflow = 1;
    return INT64_MAX;
  }
  return a + b;
}

/* The widest text in each of the block's columns (2 when vertical: keys,
 * values). */
static void table_column_texts(const table_build *tb, const table_block *blk, int64_t *widest) {
  size_t ncols = (size_t)blk->ncols;
  size_t shown = blk->vertical ? 2 : ncols;
  for (size_t c = 0; c < shown; c++) widest[c] = 0;
  if (blk->has_header) {
    for (size_t c = 0; c < blk->header_count && c < ncols; c++) {
      int64_t w = tb->headers[blk->header_at + c].cols;
      size_t col = blk->vertical ? 0 : c;
      if (w > widest[col]) widest[col] = w;
    }
  }
  for (size_t r = 0; r < blk->row_count; r++) {
    for (size_t c = 0; c < ncols; c++) {
      int64_t w = tb->rows[blk->rows_at + r * ncols + c].cols;
      size_t col = blk->vertical ? 1 : c;
      if (w > widest[col]) widest[col] = w;
    }
  }
}

/* A block's natural width: its columns padded, or its title, plus borders. */
static int64_t table_block_width(const table_build *tb, const table_block *blk, int64_t *scratch, int *overflow) {
  int64_t border = 2 + 2 * (int64_t)blk->level;
  int64_t title = table_add_checked(blk->titled ? blk->title.cols : 4, border, overflow);
  int64_t cols = border;
  if (blk->ncols > 0) {
    size_t shown = blk->vertical ? 2 : (size_t)blk->ncols;
    table_column_texts(tb, blk, scratch);
    for (size_t c = 0; c < shown; c++) cols = table_add_checked(cols, scratch[c] + TABLE_CELL_PADDING, overflow);
  }
  return title > cols ? title : cols;
}

/* Spread `target` over columns in proportion to their natural widths,
 * rounding half to even, then hand out what rounding lost or gained one
 * at a time: taken from the first columns, given to the last. */
static void table_share_width(const int64_t *natural, size_t n, int64_t target, int64_t *out) {
  int64_t total = 0, sum = 0;
  for (size_t c = 0; c < n; c++) total += natural[c];
  for (size_t c = 0; c < n; c++) {
    double factor = (double)target / (double)total;
    out[c] = (int64_t)nearbyint(factor * (double)natural[c]);
    sum += out[c];
  }
  while (sum != target) {
    for (size_t k = 0; k < n && sum != target; k++) {
      if (sum > target) {
        out[k]--;
        sum--;
      } else {
        out[n - 1 - k]++;
        sum++;
      }
    }
  }
}

static kerr_code table_measure(table_build *tb, int64_t terminal, table_layout *lay) {
  int overflow = 0;
  int64_t widest = 0, *scratch = NULL;
  size_t b, total_cols = 0, max_cols = 2;
  kerr_code rc = KERR_OK;
  for (b = 0; b < tb->block_len; b++) {
    if (tb->blocks[b].ncols > 0) {
      total_cols += (size_t)tb->blocks[b].ncols;
      if ((size_t)tb->blocks[b].ncols > max_cols) max_cols = (size_t)tb->blocks[b].ncols;
    }
  }
  scratch = malloc(max_cols * sizeof *scratch);
  lay->widths = malloc((total_cols + 2 * tb->block_len + 1) * sizeof *lay->widths);
  if (!scratch || !lay->widths) {
    rc = table_no_memory(tb->err);
    goto out;
  }
  /* When the table is wider than the terminal, every box of one row with
   * a header turns into key/value rows; then the width is measured again. */
  for (int pass = 0; pass < 2; pass++) {
    widest = 0;
    for (b = 0; b < tb->block_len; b++) {
      int64_t w = table_block_width(tb, &tb->blocks[b], scratch, &overflow);
      if (w > widest) widest = w;
    }
    if (widest <= terminal) break;
    for (b = 0; pass == 0 && b < tb->block_len; b++) {
      table_block *blk = &tb->blocks[b];
      if (blk->row_count == 1 && blk->has_header && blk->header_count > 0 &&
          blk->header_count == (size_t)blk->ncols)
        blk->vertical = 1;
    }
  }
  lay->width = widest;
  for (b = 0; b < tb->block_len; b++) {
    table_block *blk = &tb->blocks[b];
    size_t shown = blk->ncols > 0 ? (blk->vertical ? 2 : (size_t)blk->ncols) : 0;
    blk->widths_at = lay->widths_len;
    if (!shown) continue;
    table_column_texts(tb, blk, scratch);
    for (size_t c = 0; c < shown; c++) scratch[c] += TABLE_CELL_PADDING;
    table_share_width(scratch, shown, widest - 2 * (int64_t)blk->level, lay->widths + lay->widths_len);
    lay->widths_len += shown;
  }
  if (overflow) rc = table_too_large(tb->err, tb->cap);
out:
  free(scratch);
  return rc;
}

/* ---- 3. draw --------------------------------------------------------------- */

typedef struct table_pen {
  cli_out_buf *out;
  const table_build *tb;
  int color;
} table_pen;

static kerr_code table_bars(table_pen *p, int level) {
  kerr_code rc = KERR_OK;
  for (int i = 0; i < level && rc == KERR_OK; i++)
    rc = p->color ? cli_out_puts(p->out, TABLE_STYLE_BAR) : cli_out_putc(p->out, '|');
  return rc;
}

static kerr_code table_spaces(cli_out_buf *b, int64_t n) {
  static const char blanks[] = "                                ";
  kerr_code rc = KERR_OK;
  while (n > 0 && rc == KERR_OK) {
    size_t chunk = n > 32 ? 32 : (size_t)n;
    rc = cli_out_put(b, blanks, chunk);
    n -= (int64_t)chunk;
  }
  return rc;
}

static kerr_code table_dashes(cli_out_buf *b, int64_t n) {
  static const char dashes[] = "--------------------------------";
  kerr_code rc = KERR_OK;
  while (n > 0 && rc == KERR_OK) {
    size_t chunk = n > 32 ? 32 : (size_t)n;
    rc = cli_out_put(b, dashes, chunk);
    n -= (int64_t)chunk;
  }
  return rc;
}

static const char *table_text(const table_pen *p, const table_cell *c) { return p->tb->arena.data + c->text_at; }

/* Text centred in `room` columns between the edges, as the AWS CLI centres:
 * the left margin is half the room less half the text, less one. */
static kerr_code table_centered(table_pen *p, const table_cell *c, int64_t room, int left_edge) {
  int64_t before = room / 2 - c->cols / 2 - 1;
  int64_t after = room - 1 - ((left_edge ? 1 : 0) + before + c->cols);
  kerr_code rc = left_edge ? cli_out_putc(p->out, '|') : KERR_OK;
  if (rc == KERR_OK) rc = table_spaces(p->out, before);
  if (rc == KERR_OK) rc = cli_out_put(p->out, table_text(p, c), c->text_len);
  if (rc == KERR_OK) rc = table_spaces(p->out, after);
  if (rc == KERR_OK) rc = cli_out_putc(p->out, '|');
  return rc;
}

/* A cell's text after two spaces, filled out to `room` columns.  A column
 * that the width sharing left narrower than its text and the two spaces
 * gets its text at the bar instead, as the AWS CLI draws it. */
static kerr_code table_left(table_pen *p, const table_cell *c, int64_t room, int left_edge) {
  int64_t bars = left_edge ? 2 : 1;
  int64_t margin = room - bars - 2 - c->cols >= 0 ? 2 : 0;
  int64_t after = room - bars - margin - c->cols;
  kerr_code rc = left_edge ? cli_out_putc(p->out, '|') : KERR_OK;
  if (rc == KERR_OK) rc = table_spaces(p->out, margin);
  if (rc == KERR_OK && p->color) rc = cli_out_puts(p->out, TABLE_STYLE_CELL);
  if (rc == KERR_OK) rc = cli_out_put(p->out, table_text(p, c), c->text_len);
  if (rc == KERR_OK && p->color) rc = cli_out_puts(p->out, TABLE_STYLE_END);
  if (rc == KERR_OK) rc = table_spaces(p->out, after);
  if (rc == KERR_OK) rc = cli_out_putc(p->out, '|');
  return rc;
}

static kerr_code table_rule(table_pen *p, const table_block *blk, const int64_t *widths, size_t shown,
                            int64_t inner) {
  kerr_code rc = table_bars(p, blk->level);
  if (rc == KERR_OK) rc = cli_out_putc(p->out, '+');
  if (shown == 0) {
    if (rc == KERR_OK) rc = table_dashes(p->out, inner - 2);
    if (rc == KERR_OK) rc = cli_out_putc(p->out, '+');
  }
  for (size_t c = 0; c < shown && rc == KERR_OK; c++) {
    rc = table_dashes(p->out, widths[c] - (c == 0 ? 2 : 1));
    if (rc == KERR_OK) rc = cli_out_putc(p->out, '+');
  }
  if (rc == KERR_OK) rc = table_bars(p, blk->level);
  if (rc == KERR_OK) rc = cli_out_putc(p->out, '\n');
  return rc;
}

static kerr_code table_line_end(table_pen *p, const table_block *blk) {
  kerr_code rc = table_bars(p, blk->level);
  return rc == KERR_OK ? cli_out_putc(p->out, '\n') : rc;
}

static kerr_code table_draw_block(table_pen *p, const table_block *blk, const table_layout *lay) {
  const table_build *tb = p->tb;
  const int64_t *widths = lay->widths + blk->widths_at;
  int64_t inner = lay->width - 2 * (int64_t)blk->level;
  size_t shown = blk->ncols > 0 ? (blk->vertical ? 2 : (size_t)blk->ncols) : 0;
  int header = blk->has_header && blk->header_count > 0 && !blk->vertical;
  kerr_code rc = KERR_OK;
  if (blk->titled && blk->title.text_len > 0) {
    rc = table_bars(p, blk->level);
    if (rc == KERR_OK) rc = table_centered(p, &blk->title, inner, 1);
    if (rc == KERR_OK) rc = table_line_end(p, blk);
    if (rc == KERR_OK && !(blk->has_header && blk->header_count > 0) && blk->row_count == 0)
      rc = table_rule(p, blk, NULL, 0, inner);
  }
  if (rc == KERR_OK && header && shown) {
    rc = table_rule(p, blk, widths, shown, inner);
    if (rc == KERR_OK) rc = table_bars(p, blk->level);
    for (size_t c = 0; c < shown && rc == KERR_OK; c++)
      rc = table_centered(p, &tb->headers[blk->header_at + c], widths[c], c == 0);
    if (rc == KERR_OK) rc = table_line_end(p, blk);
    if (rc == KERR_OK) rc = table_rule(p, blk, widths, shown, inner);
  }
  if (rc != KERR_OK || blk->row_count == 0 || shown == 0) return rc;
  if (!header) rc = table_rule(p, blk, widths, shown, inner);
  for (size_t r = 0; r < blk->row_count && rc == KERR_OK; r++) {
    const table_cell *row = &tb->rows[blk->rows_at + r * (size_t)blk->ncols];
    size_t lines = blk->vertical ? (size_t)blk->ncols : 1;
    for (size_t l = 0; l < lines && rc == KERR_OK; l++) {
      rc = table_bars(p, blk->level);
      if (!blk->vertical) {
        for (size_t c = 0; c < shown && rc == KERR_OK; c++)
          rc = table_left(p, &row[c], widths[c], c == 0);
      } else {
        const table_cell *key = &tb->headers[blk->header_at + l];
        rc = table_left(p, key, widths[0], 1);
        if (rc == KERR_OK) rc = table_left(p, &row[l], widths[1], 0);
      }
      if (rc == KERR_OK) rc = table_line_end(p, blk);
    }
  }
  if (rc == KERR_OK) rc = table_rule(p, blk, widths, shown, inner);
  return rc;
}

/* How many lines a block draws (as table_draw_block does). */
static uint64_t table_block_lines(const table_block *blk) {
  size_t shown = blk->ncols > 0 ? (blk->vertical ? 2 : (size_t)blk->ncols) : 0;
  int has_header = blk->has_header && blk->header_count > 0;
  uint64_t lines = 0;
  if (blk->titled && blk->title.text_len > 0) lines += 1 + (!has_header && blk->row_count == 0 ? 1 : 0);
  if (has_header && !blk->vertical && shown) lines += 3;
  if (blk->row_count && shown)
    lines += (uint64_t)blk->row_count * (blk->vertical ? (uint64_t)blk->ncols : 1) + 1 +
             (has_header && !blk->vertical ? 0 : 1);
  return lines;
}

static kerr_code table_draw(table_pen *p, const table_layout *lay) {
  const table_build *tb = p->tb;
  uint64_t lines = 1;
  kerr_code rc;
  for (size_t b = 0; b < tb->block_len; b++) lines += table_block_lines(&tb->blocks[b]);
  /* Every line is at least the table's width in bytes. */
  if (lay->width > 0 && lines > p->out->cap / (uint64_t)lay->width) return table_too_large(p->out->err, p->out->cap);
  rc = table_dashes(p->out, lay->width);
  if (rc == KERR_OK) rc = cli_out_putc(p->out, '\n');
  for (size_t b = 0; b < tb->block_len && rc == KERR_OK; b++) rc = table_draw_block(p, &tb->blocks[b], lay);
  return rc;
}

kerr_code cli_out_render_table(const json_t *doc, const cli_output_opts *opts, cli_out_buf *b) {
  table_build tb;
  table_layout lay = {0};
  table_pen pen;
  kerr_code rc;
  memset(&tb, 0, sizeof tb);
  tb.err = b->err;
  tb.cap = b->cap;
  tb.arena.cap = b->cap;
  tb.arena.err = b->err;
  rc = table_collect(&tb, doc, opts->title);
  if (rc == KERR_OK && tb.block_len == 0) goto out; /* nothing to draw: the AWS CLI prints nothing */
  if (rc == KERR_OK) rc = table_measure(&tb, opts->width > 0 ? opts->width : CLI_OUTPUT_DEFAULT_WIDTH, &lay);
  if (rc == KERR_OK) {
    pen.out = b;
    pen.tb = &tb;
    pen.color = opts->color;
    rc = table_draw(&pen, &lay);
  }
out:
  free(tb.blocks);
  free(tb.rows);
  free(tb.headers);
  free(lay.widths);
  cli_out_free(&tb.arena);
  return rc;
}
