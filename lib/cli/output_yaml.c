/* output_yaml.c - `--output yaml` and `yaml-stream`, through libyaml's
 * emitter.
 *
 * The v1 AWS CLI has no YAML output, so there is no byte-for-byte model
 * here: what is promised is YAML that loads back to the same data with any
 * YAML 1.1 or 1.2 loader.  The look follows the AWS CLI v2's: block style,
 * keys sorted, "- " items not indented under their key, empty containers
 * as [] and {}.  yaml-stream prints one page as an item of a top-level
 * sequence, so the pages of a paginated reply printed one after the other
 * read as one list.
 *
 * The care is in the scalars.  A string that a loader would take for
 * something else (a number, a boolean, null, a date, "<<", "") is quoted; a
 * float is written so that a YAML 1.1 loader still sees a float ("1e+16" has
 * no dot, so it becomes "1.0e+16"). */
#include <limits.h>
#include <string.h>

#include <yaml.h>

#include "cli/output_internal.h"

typedef struct yaml_sink {
  cli_out_buf *b;
  int failed; /* the buffer or the key sort failed: the error is already in b->err */
} yaml_sink;

static int yaml_sink_write(void *data, unsigned char *bytes, size_t size) {
  yaml_sink *sink = data;
  if (cli_out_put(sink->b, (const char *)bytes, size) != KERR_OK) {
    sink->failed = 1;
    return 0;
  }
  return 1;
}

/* Whether s[0..len) is `word` (lower-case ASCII) with ASCII letters in any
 * case.  By hand rather than strncasecmp, whose folding follows the locale
 * and which stops at a NUL byte the string may hold. */
static int yaml_ascii_caseless_equal(const char *s, size_t len, const char *word) {
  size_t i;
  if (len != strlen(word)) return 0;
  for (i = 0; i < len; i++) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (c != word[i]) return 0;
  }
  return 1;
}

/* Whether a plain scalar with this text could load as something other than
 * a string under YAML 1.1 or 1.2: null, a boolean (y and n included, as
 * some 1.1 loaders read them), an integer or float in any base or in
 * sexagesimal, .inf or .nan, a date, "<<" or "=".  Errs on the side of
 * quoting, but leaves the strings replies are full of ("1234abcd-12ab...",
 * ARNs) plain. */
static int yaml_looks_typed(const char *s, size_t len) {
  static const char *const words[] = {"yes", "no", "on", "off", "true", "false", "y", "n", "null",
                                      ".inf", "-.inf", "+.inf", ".nan"};
  size_t i, digits = 0;
  if (len == 0 || s[0] == '~' || s[0] == '<' || s[0] == '=') return 1;
  for (i = 0; i < sizeof words / sizeof words[0]; i++)
    if (yaml_ascii_caseless_equal(s, len, words[i])) return 1;
  if (!strchr("0123456789+-.", s[0])) return 0;
  i = (s[0] == '+' || s[0] == '-') ? 1 : 0;
  if (len > i + 1 && s[i] == '0' && strchr("xXoObB", s[i + 1])) return 1; /* 0x1F, 0o17, 0b101 */
  while (digits < len && s[digits] >= '0' && s[digits] <= '9') digits++;
  if (digits == 4 && len > 4 && s[4] == '-') return 1; /* 2024-01-01, timestamps */
  for (i = 0; i < len; i++)
    if (!strchr("0123456789+-._:eE", s[i])) return 0;
  return 1; /* 12, -1.5, 1e5, 1_000, 1:30, 1. */
}

static int yaml_put_scalar(yaml_emitter_t *em, const char *text, size_t len, yaml_scalar_style_t style) {
  yaml_event_t ev;
  if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)len, 1, 1, style)) return 0;
  return yaml_emitter_emit(em, &ev);
}

/* libyaml takes a scalar's length as an int: a longer string is refused
 * (with the reason in the sink's error) rather than cut. */
static int yaml_put_string(yaml_emitter_t *em, const char *s, size_t len, yaml_sink *sink) {
  if (len > (size_t)INT_MAX) {
    kerr_set(sink->b->err, KERR_VALIDATION, "a string of %zu bytes is too long for yaml output", len);
    sink->failed = 1;
    return 0;
  }
  return yaml_put_scalar(em, s, len,
                         yaml_looks_typed(s, len) ? YAML_SINGLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE);
}

static int yaml_put_node(yaml_emitter_t *em, const json_t *v, yaml_sink *sink) {
  yaml_event_t ev;
  char num[40];
  if (json_is_object(v)) {
    cli_out_member *members = NULL;
    size_t n = 0;
    int ok;
    if (cli_out_sorted_members(v, &members, &n, sink->b->err) != KERR_OK) {
      sink->failed = 1;
      return 0;
    }
    ok = yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                             n ? YAML_BLOCK_MAPPING_STYLE : YAML_FLOW_MAPPING_STYLE) &&
         yaml_emitter_emit(em, &ev);
    for (size_t i = 0; i < n && ok; i++)
      ok = yaml_put_string(em, members[i].key, members[i].key_len, sink) &&
           yaml_put_node(em, members[i].value, sink);
    free(members);
    return ok && yaml_mapping_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev);
  }
  if (json_is_array(v)) {
    size_t i;
    const json_t *item;
    if (!yaml_sequence_start_event_initialize(
            &ev, NULL, NULL, 1, json_array_size(v) ? YAML_BLOCK_SEQUENCE_STYLE : YAML_FLOW_SEQUENCE_STYLE) ||
        !yaml_emitter_emit(em, &ev))
      return 0;
    json_array_foreach(v, i, item) {
      if (!yaml_put_node(em, item, sink)) return 0;
    }
    return yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(em, &ev);
  }
  switch (json_typeof(v)) {
  case JSON_STRING:
    return yaml_put_string(em, json_string_value(v), json_string_length(v), sink);
  case JSON_TRUE:
    return yaml_put_scalar(em, "true", 4, YAML_PLAIN_SCALAR_STYLE);
  case JSON_FALSE:
    return yaml_put_scalar(em, "false", 5, YAML_PLAIN_SCALAR_STYLE);
  case JSON_NULL:
    return yaml_put_scalar(em, "null", 4, YAML_PLAIN_SCALAR_STYLE);
  case JSON_INTEGER:
    snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return yaml_put_scalar(em, num, strlen(num), YAML_PLAIN_SCALAR_STYLE);
  default: {
    char *e;
    cli_out_float_repr(json_real_value(v), num);
    e = strchr(num, 'e');
    if (e && !strchr(num, '.')) { /* "1e+16" -> "1.0e+16" */
      memmove(e + 2, e, strlen(e) + 1);
      e[0] = '.';
      e[1] = '0';
    }
    return yaml_put_scalar(em, num, strlen(num), YAML_PLAIN_SCALAR_STYLE);
  }
  }
}

kerr_code cli_out_render_yaml(const json_t *doc, int as_stream, cli_out_buf *b) {
  yaml_emitter_t em;
  yaml_event_t ev;
  yaml_sink sink = {b, 0};
  /* b->err is never NULL: cli_output_render passes its own when the caller gave none. */
  kerr_code rc = KERR_OK;
  int ok;
  if (!yaml_emitter_initialize(&em)) return kerr_set(b->err, KERR_INTERNAL, "out of memory formatting the output");
  yaml_emitter_set_output(&em, yaml_sink_write, &sink);
  yaml_emitter_set_unicode(&em, 1);
  yaml_emitter_set_width(&em, -1);
  ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) && yaml_emitter_emit(&em, &ev) &&
       yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) && yaml_emitter_emit(&em, &ev);
  if (ok && as_stream)
    ok = yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE) &&
         yaml_emitter_emit(&em, &ev);
  if (ok) ok = yaml_put_node(&em, doc, &sink);
  if (ok && as_stream) ok = yaml_sequence_end_event_initialize(&ev) && yaml_emitter_emit(&em, &ev);
  ok = ok && yaml_document_end_event_initialize(&ev, 1) && yaml_emitter_emit(&em, &ev) &&
       yaml_stream_end_event_initialize(&ev) && yaml_emitter_emit(&em, &ev) && yaml_emitter_flush(&em);
  if (!ok && sink.failed)
    rc = b->err->code;
  else if (!ok)
    rc = kerr_set(b->err, KERR_INTERNAL, "libyaml could not write the output: %s",
                  em.problem ? em.problem : "unknown error");
  yaml_emitter_delete(&em);
  return rc;
}
