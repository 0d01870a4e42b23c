/* output.c - the entry points of the --output formats (see output.h): the
 * format's name, the checks every format shares (nesting depth, the output
 * cap), and the bounded buffer the formats write into.
 *
 * Each format lives in its own file and writes into an cli_out_buf; the buffer
 * refuses to grow past the caller's cap, so a small document that a table
 * would blow up (one long string repeated as padding on every line) fails
 * with a clear message instead of eating memory. */
#include "cli/output.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/output_internal.h"

static const struct {
  const char *name;
  cli_format format;
} output_format_names[] = {
    {"json", CLI_FORMAT_JSON},   {"text", CLI_FORMAT_TEXT},
    {"table", CLI_FORMAT_TABLE}, {"yaml", CLI_FORMAT_YAML},
    {"yaml-stream", CLI_FORMAT_YAML_STREAM},
};

kerr_code cli_format_parse(const char *name, cli_format *out, kerr *err) {
  size_t i;
  for (i = 0; name && i < sizeof output_format_names / sizeof output_format_names[0]; i++) {
    if (strcmp(name, output_format_names[i].name) == 0) {
      *out = output_format_names[i].format;
      return KERR_OK;
    }
  }
  return kerr_set(err, KERR_VALIDATION,
                  "argument --output: Invalid choice, valid choices are: json | text | table | yaml | yaml-stream");
}

/* ---- the bounded buffer ---------------------------------------------------- */

kerr_code cli_out_too_large(kerr *err, size_t cap) {
  return kerr_set(err, KERR_VALIDATION, "output larger than the limit of %zu bytes; narrow it with --query", cap);
}

kerr_code cli_out_no_memory(kerr *err) { return kerr_set(err, KERR_INTERNAL, "out of memory formatting the output"); }

kerr_code cli_out_put(cli_out_buf *b, const char *s, size_t n) {
  if (n > b->cap || b->len > b->cap - n) return cli_out_too_large(b->err, b->cap);
  if (b->len + n + 1 > b->alloc) {
    size_t want = b->alloc ? b->alloc : 256;
    char *grown;
    while (want < b->len + n + 1) want *= 2;
    grown = realloc(b->data, want);
    if (!grown) return cli_out_no_memory(b->err);
    b->data = grown;
    b->alloc = want;
  }
  if (n) memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
  return KERR_OK;
}

kerr_code cli_out_puts(cli_out_buf *b, const char *s) { return cli_out_put(b, s, strlen(s)); }

kerr_code cli_out_putc(cli_out_buf *b, char c) { return cli_out_put(b, &c, 1); }

kerr_code cli_out_repeat(cli_out_buf *b, const char *s, long count) {
  size_t n = strlen(s);
  kerr_code rc = KERR_OK;
  for (long i = 0; i < count && rc == KERR_OK; i++) rc = cli_out_put(b, s, n);
  return rc;
}

void cli_out_free(cli_out_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->alloc = 0;
}

/* ---- checks shared by every format ----------------------------------------- */

/* Whether `v` nests deeper than `room` more levels; stops descending there,
 * so the walk itself stays bounded whatever the document. */
static int output_too_deep(const json_t *v, int room) {
  if (!json_is_array(v) && !json_is_object(v)) return 0;
  if (room <= 0) return 1;
  if (json_is_array(v)) {
    size_t i;
    const json_t *item;
    json_array_foreach(v, i, item) {
      if (output_too_deep(item, room - 1)) return 1;
    }
  } else {
    const char *key;
    const json_t *item;
    json_object_foreach((json_t *)v, key, item) {
      if (output_too_deep(item, room - 1)) return 1;
    }
  }
  return 0;
}

kerr_code cli_output_render(const json_t *doc, const cli_output_opts *opts, char **out, size_t *out_len,
                            kerr *err) {
  cli_out_buf b = {0};
  kerr scratch;
  kerr_code rc;
  if (!err) err = &scratch; /* the formats read the code back */
  kerr_clear(err);
  *out = NULL;
  *out_len = 0;
  b.cap = opts->max_bytes ? opts->max_bytes : CLI_OUTPUT_DEFAULT_MAX_BYTES;
  b.err = err;
  if (!doc) return kerr_set(err, KERR_VALIDATION, "no document to print");
  if (output_too_deep(doc, CLI_OUTPUT_MAX_DEPTH)) {
    rc = kerr_set(err, KERR_VALIDATION, "the reply nests deeper than %d levels; narrow it with --query",
                  CLI_OUTPUT_MAX_DEPTH);
    goto out;
  }
  /* Every format prints nothing at all for an empty object (a reply with no
   * members, or a --query that selected one). */
  if (json_is_object(doc) && json_object_size(doc) == 0) {
    rc = KERR_OK;
    goto out;
  }
  switch (opts->format) {
  case CLI_FORMAT_JSON:
    rc = cli_out_render_json(doc, &b);
    break;
  case CLI_FORMAT_TEXT:
    rc = cli_out_render_text(doc, &b);
    break;
  case CLI_FORMAT_TABLE:
    rc = cli_out_render_table(doc, opts, &b);
    break;
  case CLI_FORMAT_YAML:
    rc = cli_out_render_yaml(doc, 0, &b);
    break;
  case CLI_FORMAT_YAML_STREAM:
    rc = cli_out_render_yaml(doc, 1, &b);
    break;
  default:
    rc = kerr_set(err, KERR_VALIDATION, "unknown output format %d", (int)opts->format);
    break;
  }
out:
  if (rc != KERR_OK) {
    cli_out_free(&b);
    return rc;
  }
  if (!b.data) {
    b.data = calloc(1, 1);
    if (!b.data) return kerr_set(err, KERR_INTERNAL, "out of memory formatting the output");
  }
  *out = b.data;
  *out_len = b.len;
  return KERR_OK;
}
