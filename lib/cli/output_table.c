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
 * its text and the narrowest it can be drawn) before it is stored, so is
 * every growth of the array of blocks and of the walk's stack, and the
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
  struct table_task *tasks; /* the collect walk's pending work */
  size_t task_len, task_room;
  struct table_records *studies; /* the lists of records it studied */
} table_build;

typedef struct table_layout {
  int64_t width;
  int64_t *widths; /* per block, its columns' widths including the border */
  size_t widths_len;
} table_layout;

/* Make room for one more item in a growing array. */
static kerr_code table_reserve(void **items, size_t *room, size_t len, size_t size, kerr *err) {
  if (len < *room) return KERR_OK;
  size_t want = *room ? *room * 2 : 16;
  if (want > SIZE_MAX / size) return cli_out_no_memory(err);
  void *grown = realloc(*items, want * size);
  if (!grown) return cli_out_no_memory(err);
  *items = grown;
  *room = want;
  return KERR_OK;
}

/* ---- 1. collect ------------------------------------------------------------ */

/* table_reserve for the arrays of blocks and of pending tasks: what they
 * grow by past their first allocation is charged to the cap like a cell,
 * so that a document of many empty boxes or many pending items cannot take
 * memory without bound while the output stays small (the first few entries
 * are free, so that a tiny cap still lets a tiny table through). */
static kerr_code table_reserve_charged(table_build *tb, void **items, size_t *room, size_t len, size_t size) {
  uint64_t growth;
  if (len < *room) return KERR_OK;
  growth = (uint64_t)*room * size; /* doubling: the new entries */
  if (growth > tb->cap || tb->charged > tb->cap - growth) return cli_out_too_large(tb->err, (size_t)tb->cap);
  tb->charged += growth;
  return table_reserve(items, room, len, size, tb->err);
}

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
  if (cost > tb->cap || tb->charged > tb->cap - cost) return cli_out_too_large(tb->err, (size_t)tb->cap);
  tb->charged += cost;
  return KERR_OK;
}

/* Room for one more cell in `*cells`.  The array doubles, but never past
 * the cells the rest of the budget could pay for, so growing it cannot
 * take much more memory than the cap. */
static kerr_code table_reserve_cell(table_build *tb, table_cell **cells, size_t *room, size_t len) {
  uint64_t affordable = len + 1 + (tb->cap - tb->charged) / (sizeof **cells + TABLE_CELL_PADDING);
  if (len < *room) return KERR_OK;
  if (len >= affordable) return cli_out_too_large(tb->err, (size_t)tb->cap);
  if (*room * 2 > affordable) {
    table_cell *grown = realloc(*cells, (size_t)affordable * sizeof **cells);
    if (!grown) return cli_out_no_memory(tb->err);
    *cells = grown;
    *room = (size_t)affordable;
    return KERR_OK;
  }
  return table_reserve((void **)cells, room, len, sizeof **cells, tb->err);
}

static kerr_code table_open_block(table_build *tb, const char *title, size_t title_len, int level) {
  kerr_code rc = table_reserve_charged(tb, (void **)&tb->blocks, &tb->block_room, tb->block_len, sizeof *tb->blocks);
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

/* What the AWS CLI draws for each kind of value, found by running its table
 * formatter on chosen documents (the walk below follows these rules):
 *
 * - Python truth decides what gets a box at all: null, false, 0, 0.0, "",
 *   [] and {} get none (a reply that is one of these prints nothing).  Any
 *   other scalar given a box of its own gets a box with a title only.
 * - The reply's box is level 0 and carries the operation's name.
 * - An object puts its scalar members, sorted by key, in the box it is
 *   drawn in: one member as a single key/value row, two or more as a header
 *   of keys over one row of values.  Then each member that is an array or
 *   an object, sorted by key, gets a box one level in, titled by its key.
 * - An array led by an object is a list of records.  Its columns are the
 *   keys that hold a scalar in at least one record, sorted; a record
 *   lacking one shows an empty cell, one holding an array or object there
 *   shows Python's repr of it.  When no record has a member that is an
 *   array or an object, the header and one row per record fill one box.
 *   Otherwise every record repeats the header in a box of its own, at the
 *   list's level and with the list's title (the first record uses the box
 *   already open), followed by a box one level in for each key that holds
 *   an array or object in any record (sorted), where that record has a
 *   Python-true value for it.  Records other than objects make the CLI
 *   fail, except "" and [] while there are no columns: those count as {}.
 * - Any other array gives one row per item, added to the box opened last
 *   (which may be a sub-box of an earlier item: the CLI adds rows to
 *   whatever box it opened last).  A scalar item is a row of one cell; an
 *   object item a row of its keys, in the order they came; an array of
 *   scalars (or an empty one) a row of its items; an array led by an object
 *   a list of records with no title; any other array gives its items one
 *   by one, by these same rules.  Boxes made from the items start again
 *   from level 0, however deep the array: an untitled record box sits at
 *   level 0, the boxes under its records at level 1.
 * - Rows of different lengths in one box make the CLI fail, as does a
 *   header longer than the rows already in its box (table_begin_row
 *   refuses both: the row that follows such a header is as long as it).
 *
 * The walk keeps its pending work on an explicit stack (the document comes
 * from outside and may nest as deep as CLI_OUTPUT_MAX_DEPTH); each task
 * opens boxes, sets headers and adds rows to the box opened last. */

/* How a value takes part in a table (see above). */
typedef enum table_shape {
  TABLE_SHAPE_NOTHING, /* Python-false: no box */
  TABLE_SHAPE_SCALAR,
  TABLE_SHAPE_OBJECT,
  TABLE_SHAPE_RECORDS, /* a non-empty array whose first item is an object */
  TABLE_SHAPE_ROWS     /* any other non-empty array */
} table_shape;

static table_shape table_shape_of(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return json_object_size(v) ? TABLE_SHAPE_OBJECT : TABLE_SHAPE_NOTHING;
  case JSON_ARRAY:
    if (json_array_size(v) == 0) return TABLE_SHAPE_NOTHING;
    return json_is_object(json_array_get(v, 0)) ? TABLE_SHAPE_RECORDS : TABLE_SHAPE_ROWS;
  case JSON_STRING:
    return json_string_length(v) ? TABLE_SHAPE_SCALAR : TABLE_SHAPE_NOTHING;
  case JSON_INTEGER:
    return json_integer_value(v) ? TABLE_SHAPE_SCALAR : TABLE_SHAPE_NOTHING;
  case JSON_REAL:
    return json_real_value(v) != 0.0 ? TABLE_SHAPE_SCALAR : TABLE_SHAPE_NOTHING;
  case JSON_TRUE:
    return TABLE_SHAPE_SCALAR;
  default:
    return TABLE_SHAPE_NOTHING;
  }
}

/* A list of records, studied once before its first record is drawn. */
typedef struct table_records {
  const json_t *list;
  const char *title; /* NULL: untitled */
  size_t title_len;
  int level;
  cli_out_member *columns; /* keys holding a scalar in some record, sorted, unique */
  size_t column_count;
  cli_out_member *nested; /* keys holding an array or object in some record, likewise */
  size_t nested_count;
  struct table_records *next; /* every study made, freed when the walk ends */
} table_records;

/* Where a row's cells come from. */
typedef enum table_cells {
  TABLE_CELLS_ONE,    /* the value */
  TABLE_CELLS_PAIR,   /* the key, then the value */
  TABLE_CELLS_FIELDS, /* the values of `members` */
  TABLE_CELLS_ITEMS,  /* the items of the array `value` */
  TABLE_CELLS_KEYS,   /* the keys of the object `value`, in their order */
  TABLE_CELLS_RECORD  /* the record `value` under the keys `members` */
} table_cells;

/* Add a row of cells taken from `value` as `cells` says (`key`: the first
 * cell of a PAIR row; `members`/`count`: the keys of a FIELDS or RECORD
 * row) to the box opened last. */
static kerr_code table_add_row(table_build *tb, table_cells cells, const json_t *value, const cli_out_member *key,
                               const cli_out_member *members, size_t count) {
  size_t i;
  kerr_code rc;
  switch (cells) {
  case TABLE_CELLS_ONE: count = 1; break;
  case TABLE_CELLS_PAIR: count = 2; break;
  case TABLE_CELLS_ITEMS: count = json_array_size(value); break;
  case TABLE_CELLS_KEYS: count = json_object_size(value); break;
  default: break; /* FIELDS, RECORD: `count` keys */
  }
  rc = table_begin_row(tb, count);
  switch (cells) {
  case TABLE_CELLS_PAIR:
    if (rc == KERR_OK) rc = table_add_cell(tb, NULL, key->key, key->key_len);
    return rc == KERR_OK ? table_add_cell(tb, value, NULL, 0) : rc;
  case TABLE_CELLS_ONE:
    return rc == KERR_OK ? table_add_cell(tb, value, NULL, 0) : rc;
  case TABLE_CELLS_FIELDS:
    for (i = 0; i < count && rc == KERR_OK; i++) rc = table_add_cell(tb, members[i].value, NULL, 0);
    return rc;
  case TABLE_CELLS_RECORD:
    for (i = 0; i < count && rc == KERR_OK; i++) {
      const json_t *cell = json_is_object(value) ? json_object_getn(value, members[i].key, members[i].key_len) : NULL;
      rc = cell ? table_add_cell(tb, cell, NULL, 0) : table_add_cell(tb, NULL, "", 0);
    }
    return rc;
  case TABLE_CELLS_ITEMS:
    for (i = 0; i < count && rc == KERR_OK; i++) rc = table_add_cell(tb, json_array_get(value, i), NULL, 0);
    return rc;
  case TABLE_CELLS_KEYS: {
    void *it = json_object_iter((json_t *)value);
    for (i = 0; it && i < count && rc == KERR_OK; i++, it = json_object_iter_next((json_t *)value, it))
      rc = table_add_cell(tb, NULL, json_object_iter_key(it), json_object_iter_key_len(it));
    return rc;
  }
  }
  return rc;
}

/* Pending work of the walk. */
typedef enum table_task_kind {
  TABLE_TASK_BOX,    /* value in a box of its own */
  TABLE_TASK_FIELDS, /* an object's members, into the box just opened */
  TABLE_TASK_ITEM,   /* one item of a plain array, as a row */
  TABLE_TASK_RECORD  /* record `index` of a list of records */
} table_task_kind;

typedef struct table_task {
  table_task_kind kind;
  const json_t *value;
  const char *title; /* BOX: NULL untitled */
  size_t title_len;
  int level; /* BOX, FIELDS: the box's level (items: always 0, see above) */
  table_records *records;
  size_t index;
} table_task;

static kerr_code table_push(table_build *tb, const table_task *t) {
  kerr_code rc = table_reserve_charged(tb, (void **)&tb->tasks, &tb->task_room, tb->task_len, sizeof *tb->tasks);
  if (rc != KERR_OK) return rc;
  if (!tb->tasks) return cli_out_no_memory(tb->err); /* room without an array: cannot be */
  tb->tasks[tb->task_len++] = *t;
  return KERR_OK;
}

static kerr_code table_push_box(table_build *tb, const json_t *value, const char *key, size_t key_len, int level) {
  table_task t = {TABLE_TASK_BOX, value, key, key_len, level + 1, NULL, 0};
  return table_push(tb, &t);
}

static int table_blank_record(const json_t *v) {
  return (json_is_string(v) && json_string_length(v) == 0) || (json_is_array(v) && json_array_size(v) == 0);
}

/* Study a list of records: its columns, the keys that open boxes, and
 * whether the AWS CLI can print it at all. */
static kerr_code table_study(table_build *tb, const json_t *list, const char *title, size_t title_len, int level,
                             table_records **out) {
  size_t total = 0, n_scalar = 0, n_nested = 0, i;
  int blanks = 0, blank_strings = 0;
  const json_t *rec;
  table_records *r = calloc(1, sizeof *r);
  if (!r) return cli_out_no_memory(tb->err);
  r->next = tb->studies;
  tb->studies = r;
  r->list = list;
  r->title = title;
  r->title_len = title_len;
  r->level = level;
  json_array_foreach(list, i, rec) {
    if (json_is_object(rec))
      total += json_object_size(rec);
    else if (table_blank_record(rec)) {
      blanks = 1;
      blank_strings |= json_is_string(rec);
    }
    else
      goto mixed;
  }
  r->columns = malloc((total ? total : 1) * sizeof *r->columns);
  r->nested = malloc((total ? total : 1) * sizeof *r->nested);
  if (!r->columns || !r->nested) return cli_out_no_memory(tb->err);
  json_array_foreach(list, i, rec) {
    const char *key;
    size_t key_len;
    json_t *member;
    if (!json_is_object(rec)) continue;
    json_object_keylen_foreach((json_t *)rec, key, key_len, member) {
      cli_out_member m = {key, key_len, member};
      if (cli_out_is_scalar(member))
        r->columns[n_scalar++] = m;
      else
        r->nested[n_nested++] = m;
    }
  }
  r->column_count = cli_out_unique_members(r->columns, n_scalar);
  r->nested_count = cli_out_unique_members(r->nested, n_nested);
  if (blanks && r->column_count) goto mixed;
  /* A "" record under a nested key "" fails in the CLI too ("" holds "",
   * and a string has no member to draw); sorted keys put "" first. */
  if (blank_strings && r->nested_count && r->nested[0].key_len == 0) goto mixed;
  *out = r;
  return KERR_OK;
mixed:
  return kerr_set(tb->err, KERR_VALIDATION,
                  "table output cannot show a list of objects mixed with other values (the AWS CLI fails on it "
                  "too); use --output json or text");
}

static kerr_code table_do_box(table_build *tb, const table_task *t) {
  table_shape shape = table_shape_of(t->value);
  kerr_code rc;
  if (shape == TABLE_SHAPE_NOTHING) return KERR_OK;
  rc = table_open_block(tb, t->title, t->title_len, t->level);
  if (rc != KERR_OK) return rc;
  if (shape == TABLE_SHAPE_OBJECT) {
    table_task next = {TABLE_TASK_FIELDS, t->value, NULL, 0, t->level, NULL, 0};
    return table_push(tb, &next);
  }
  if (shape == TABLE_SHAPE_RECORDS) {
    table_task next = {TABLE_TASK_RECORD, t->value, NULL, 0, 0, NULL, 0};
    rc = table_study(tb, t->value, t->title, t->title_len, t->level, &next.records);
    return rc == KERR_OK ? table_push(tb, &next) : rc;
  }
  for (size_t i = json_array_size(t->value); shape == TABLE_SHAPE_ROWS && i > 0 && rc == KERR_OK; i--) {
    table_task next = {TABLE_TASK_ITEM, json_array_get(t->value, i - 1), NULL, 0, 0, NULL, 0};
    rc = table_push(tb, &next);
  }
  return rc;
}

static kerr_code table_do_fields(table_build *tb, const table_task *t) {
  cli_out_member *members = NULL, *ordered = NULL;
  size_t n = 0, scalars = 0, boxes, i;
  kerr_code rc = cli_out_sorted_members(t->value, &members, &n, tb->err);
  if (rc != KERR_OK) return rc;
  /* Scalars at the front in key order; the rest from the back, so that
   * pushing them front to back queues the first key last (it runs first). */
  ordered = calloc(n ? n : 1, sizeof *ordered);
  if (!ordered) {
    rc = cli_out_no_memory(tb->err);
    goto out;
  }
  for (i = 0, boxes = n; i < n; i++) {
    if (cli_out_is_scalar(members[i].value))
      ordered[scalars++] = members[i];
    else
      ordered[--boxes] = members[i];
  }
  if (scalars == 1) {
    rc = table_add_row(tb, TABLE_CELLS_PAIR, ordered[0].value, &ordered[0], NULL, 0);
  } else if (scalars > 1) {
    rc = table_set_header(tb, ordered, scalars);
    if (rc == KERR_OK) rc = table_add_row(tb, TABLE_CELLS_FIELDS, NULL, NULL, ordered, scalars);
  }
  for (i = scalars; i < n && rc == KERR_OK; i++)
    rc = table_push_box(tb, ordered[i].value, ordered[i].key, ordered[i].key_len, t->level);
out:
  free(ordered);
  free(members);
  return rc;
}

static kerr_code table_do_item(table_build *tb, const table_task *t) {
  const json_t *v = t->value;
  size_t i;
  kerr_code rc = KERR_OK;
  int flat = 1;
  if (cli_out_is_scalar(v)) return table_add_row(tb, TABLE_CELLS_ONE, v, NULL, NULL, 0);
  if (json_is_object(v)) return table_add_row(tb, TABLE_CELLS_KEYS, v, NULL, NULL, 0);
  if (table_shape_of(v) == TABLE_SHAPE_RECORDS) {
    table_task next = {TABLE_TASK_RECORD, v, NULL, 0, 0, NULL, 0};
    rc = table_study(tb, v, NULL, 0, 0, &next.records);
    return rc == KERR_OK ? table_push(tb, &next) : rc;
  }
  for (i = 0; i < json_array_size(v) && flat; i++) flat = cli_out_is_scalar(json_array_get(v, i));
  if (flat) return table_add_row(tb, TABLE_CELLS_ITEMS, v, NULL, NULL, 0);
  for (i = json_array_size(v); i > 0 && rc == KERR_OK; i--) {
    table_task next = {TABLE_TASK_ITEM, json_array_get(v, i - 1), NULL, 0, 0, NULL, 0};
    rc = table_push(tb, &next);
  }
  return rc;
}

/* Queue the boxes under one record: its members under keys that hold an
 * array or object in some record, in key order (pushed last first).  The
 * record's own members are walked rather than the list's keys, so a list
 * whose records each bring keys of their own costs no more than its size. */
static kerr_code table_push_record_boxes(table_build *tb, const table_records *r, const json_t *rec) {
  cli_out_member *members = NULL;
  size_t n = 0;
  kerr_code rc = cli_out_sorted_members(rec, &members, &n, tb->err);
  for (size_t i = n; i > 0 && rc == KERR_OK; i--) {
    const cli_out_member *m = &members[i - 1];
    if (cli_out_is_scalar(m->value) &&
        !bsearch(m, r->nested, r->nested_count, sizeof *r->nested, cli_out_member_order))
      continue;
    rc = table_push_box(tb, m->value, m->key, m->key_len, r->level);
  }
  free(members);
  return rc;
}

static kerr_code table_do_record(table_build *tb, const table_task *t) {
  const table_records *r = t->records;
  const json_t *rec = json_array_get(r->list, t->index);
  int apart = r->nested_count > 0; /* each record in a box of its own */
  kerr_code rc = KERR_OK;
  if (apart && t->index > 0) rc = table_open_block(tb, r->title, r->title_len, r->level);
  if (rc == KERR_OK && (apart || t->index == 0)) rc = table_set_header(tb, r->columns, r->column_count);
  if (rc == KERR_OK) rc = table_add_row(tb, TABLE_CELLS_RECORD, rec, NULL, r->columns, r->column_count);
  if (rc == KERR_OK && t->index + 1 < json_array_size(r->list)) {
    table_task next = *t;
    next.index++;
    rc = table_push(tb, &next);
  }
  if (rc == KERR_OK && apart && json_is_object(rec)) rc = table_push_record_boxes(tb, r, rec);
  return rc;
}

/* What each kind of task does, by kind. */
typedef kerr_code (*table_task_step)(table_build *tb, const table_task *t);
static const table_task_step table_steps[] = {
    [TABLE_TASK_BOX] = table_do_box,
    [TABLE_TASK_FIELDS] = table_do_fields,
    [TABLE_TASK_ITEM] = table_do_item,
    [TABLE_TASK_RECORD] = table_do_record,
};

static kerr_code table_collect(table_build *tb, const json_t *doc, const char *title) {
  table_task top = {TABLE_TASK_BOX, doc, title, title ? strlen(title) : 0, 0, NULL, 0};
  kerr_code rc = table_push(tb, &top);
  while (rc == KERR_OK && tb->task_len > 0) {
    table_task t = tb->tasks[--tb->task_len];
    rc = table_steps[t.kind](tb, &t);
  }
  return rc;
}

/* What the collect walk left besides the blocks: its stack and studies. */
static void table_free_walk(table_build *tb) {
  free(tb->tasks);
  while (tb->studies) {
    table_records *done = tb->studies;
    tb->studies = done->next;
    free(done->columns);
    free(done->nested);
    free(done);
  }
}

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
    rc = cli_out_no_memory(tb->err);
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
  if (overflow) rc = cli_out_too_large(tb->err, (size_t)tb->cap);
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
  if (lay->width > 0 && lines > p->out->cap / (uint64_t)lay->width) return cli_out_too_large(p->out->err, p->out->cap);
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
  table_free_walk(&tb);
  free(tb.blocks);
  free(tb.rows);
  free(tb.headers);
  free(lay.widths);
  cli_out_free(&tb.arena);
  return rc;
}
