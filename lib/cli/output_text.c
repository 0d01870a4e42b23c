/* output_text.c - `--output text`: the reply as tab-separated lines, as the
 * AWS CLI prints it (its rules, learned by running it):
 *
 *   - A lone scalar prints as Python's str() and a newline ("True", "None").
 *   - An object prints one line of its scalar members' values, ordered by
 *     key, preceded by the name of the member that holds the object (upper
 *     case) when there is one; no line when it has no scalar members.  Its
 *     arrays and objects follow, ordered by key, each named by its key.
 *   - An array holding any object is a list of records: every element must
 *     be an object (the CLI fails otherwise, and so do we).  The columns are
 *     every key that holds a scalar in some element, ordered; each element
 *     prints one line with its value for each column (Python's str(), so an
 *     array there shows as "[1, 'x']"; "" where the key is missing), then
 *     its other members as above.
 *   - An array holding arrays prints its scalars first (as below), then
 *     each inner array under the same name.
 *   - An array of scalars prints one line per element, "NAME\tvalue", under
 *     a name; without one (at the top) all of them on one line.
 *   - Names are upper-cased as Python's str.upper() does, beyond ASCII too
 *     ("straße" -> "STRASSE").
 * Values are printed as they are: a tab or newline inside a string is
 * written raw, as the AWS CLI writes it. */
#include <stdlib.h>
#include <string.h>

#include "cli/output_internal.h"
#include "cli/output_unicode.h"

static kerr_code text_value(out_buf *b, const json_t *v, const char *name);

/* A line's first field: the section name, upper-cased. */
static kerr_code text_put_name(out_buf *b, const char *name) {
  size_t len = strlen(name), i = 0;
  kerr_code rc = KERR_OK;
  while (i < len && rc == KERR_OK) {
    uint32_t upper[3];
    size_t n = cli_uni_upper(out_utf8_next(name, len, &i), upper);
    for (size_t k = 0; k < n && rc == KERR_OK; k++) {
      char enc[4];
      uint32_t cp = upper[k];
      size_t m;
      if (cp < 0x80) {
        enc[0] = (char)cp;
        m = 1;
      } else if (cp < 0x800) {
        enc[0] = (char)(0xC0 | (cp >> 6));
        enc[1] = (char)(0x80 | (cp & 0x3F));
        m = 2;
      } else if (cp < 0x10000) {
        enc[0] = (char)(0xE0 | (cp >> 12));
        enc[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        enc[2] = (char)(0x80 | (cp & 0x3F));
        m = 3;
      } else {
        enc[0] = (char)(0xF0 | (cp >> 18));
        enc[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        enc[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        enc[3] = (char)(0x80 | (cp & 0x3F));
        m = 4;
      }
      rc = out_put(b, enc, m);
    }
  }
  return rc;
}

/* Scalars of an array: one "NAME\tvalue" line each, or one line for all. */
static kerr_code text_scalar_line(out_buf *b, const json_t *arr, const char *name) {
  size_t i;
  const json_t *item;
  int first = 1;
  kerr_code rc = KERR_OK;
  json_array_foreach(arr, i, item) {
    if (!out_is_scalar(item) || rc != KERR_OK) continue;
    if (name) {
      rc = text_put_name(b, name);
      if (rc == KERR_OK) rc = out_putc(b, '\t');
      if (rc == KERR_OK) rc = out_py_str(b, item);
      if (rc == KERR_OK) rc = out_putc(b, '\n');
    } else {
      if (!first) rc = out_putc(b, '\t');
      if (rc == KERR_OK) rc = out_py_str(b, item);
    }
    first = 0;
  }
  if (rc == KERR_OK && !name && !first) rc = out_putc(b, '\n');
  return rc;
}

/* One object: its line of values, then its nested members.  For a record
 * (an element of a list of objects), `columns` are the list's columns. */
static kerr_code text_object(out_buf *b, const json_t *obj, const char *name, int record, const char **columns,
                             size_t ncolumns) {
  const char **keys = NULL;
  size_t nkeys = 0, fields = 0;
  kerr_code rc = out_sorted_keys(obj, &keys, &nkeys, b->err);
  if (rc != KERR_OK) return rc;
  /* The line: the columns' values, or the object's own scalars. */
  if (record) {
    fields = ncolumns;
    for (size_t c = 0; c < ncolumns && rc == KERR_OK; c++) {
      const json_t *v = json_object_get(obj, columns[c]);
      if (c == 0 && name) {
        rc = text_put_name(b, name);
        if (rc == KERR_OK) rc = out_putc(b, '\t');
      } else if (c > 0) {
        rc = out_putc(b, '\t');
      }
      if (rc == KERR_OK && v) rc = out_py_str(b, v);
    }
  } else {
    for (size_t k = 0; k < nkeys && rc == KERR_OK; k++) {
      const json_t *v = json_object_get(obj, keys[k]);
      if (!out_is_scalar(v)) continue;
      if (fields == 0 && name) {
        rc = text_put_name(b, name);
        if (rc == KERR_OK) rc = out_putc(b, '\t');
      } else if (fields > 0) {
        rc = out_putc(b, '\t');
      }
      if (rc == KERR_OK) rc = out_py_str(b, v);
      fields++;
    }
  }
  if (rc == KERR_OK && fields > 0) rc = out_putc(b, '\n');
  /* Then every member not on the line, by key.  Keys and columns are both
   * sorted, so one walk along the columns tells which keys are on it. */
  for (size_t k = 0, c = 0; k < nkeys && rc == KERR_OK; k++) {
    const json_t *v = json_object_get(obj, keys[k]);
    int on_line;
    if (record) {
      while (c < ncolumns && strcmp(columns[c], keys[k]) < 0) c++;
      on_line = c < ncolumns && strcmp(columns[c], keys[k]) == 0;
    } else {
      on_line = out_is_scalar(v);
    }
    if (!on_line) rc = text_value(b, v, keys[k]);
  }
  free((void *)keys);
  return rc;
}

/* The columns of a list of records: every key holding a scalar somewhere.
 * *seen collects them (the caller releases it); *columns points at its
 * keys, sorted, and is free()d by the caller. */
static kerr_code text_record_columns(out_buf *b, const json_t *arr, json_t **seen, const char ***columns,
                                     size_t *n) {
  size_t i;
  const json_t *item;
  *columns = NULL;
  *n = 0;
  *seen = json_object();
  if (!*seen) return kerr_set(b->err, KERR_INTERNAL, "out of memory formatting the output");
  json_array_foreach(arr, i, item) {
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)item, key, v) {
      if (out_is_scalar(v) && json_object_set(*seen, key, json_null()) != 0)
        return kerr_set(b->err, KERR_INTERNAL, "out of memory formatting the output");
    }
  }
  return out_sorted_keys(*seen, columns, n, b->err);
}

static kerr_code text_array(out_buf *b, const json_t *arr, const char *name) {
  size_t i;
  const json_t *item;
  int has_object = 0, has_array = 0;
  kerr_code rc = KERR_OK;
  json_array_foreach(arr, i, item) {
    has_object |= json_is_object(item);
    has_array |= json_is_array(item);
  }
  if (has_object) {
    const char **columns = NULL;
    size_t ncolumns = 0;
    json_t *seen = NULL;
    json_array_foreach(arr, i, item) {
      if (!json_is_object(item))
        return kerr_set(b->err, KERR_VALIDATION,
                        "output cannot show this reply as text: a list mixes objects with other values");
    }
    rc = text_record_columns(b, arr, &seen, &columns, &ncolumns);
    json_array_foreach(arr, i, item) {
      if (rc == KERR_OK) rc = text_object(b, item, name, 1, columns, ncolumns);
    }
    free((void *)columns);
    json_decref(seen);
    return rc;
  }
  rc = text_scalar_line(b, arr, name);
  if (has_array) {
    json_array_foreach(arr, i, item) {
      if (rc == KERR_OK && json_is_array(item)) rc = text_value(b, item, name);
    }
  }
  return rc;
}

static kerr_code text_value(out_buf *b, const json_t *v, const char *name) {
  kerr_code rc;
  if (json_is_object(v)) return text_object(b, v, name, 0, NULL, 0);
  if (json_is_array(v)) return text_array(b, v, name);
  rc = out_py_str(b, v);
  return rc == KERR_OK ? out_putc(b, '\n') : rc;
}

kerr_code out_render_text(const json_t *doc, out_buf *b) { return text_value(b, doc, NULL); }
