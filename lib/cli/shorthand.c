/* shorthand.c - the AWS CLI's shorthand syntax read into jansson values (see
 * shorthand.h for the grammar and the contract).
 *
 * A hand-written scanner over the input's bytes.  The input is checked to be
 * UTF-8 first, so code points can be decoded wherever a rule is about
 * characters (which characters a bare word may hold, which ones count as
 * trailing whitespace, where the caret of a message goes); every delimiter
 * of the syntax is ASCII, and UTF-8 never uses an ASCII byte inside a
 * multi-byte character, so the delimiters themselves are found byte by byte.
 *
 * The AWS CLI reads the syntax with regular expressions and a little
 * backtracking; the rules below reproduce what those accept, character for
 * character, because users paste commands written for it.  Some of them are
 * surprising (a bare word ends at code points beyond U+FFFF; a csv list that
 * backs up goes to the nearest comma even when it was escaped); they are kept
 * on purpose and said where they apply.
 *
 * Errors: every parsing function returns a kerr_code and leaves the details
 * in the parser's error; the first error ends the parse. */
#include "cli/shorthand.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sh_parser {
  const char *in;
  size_t len;
  size_t pos;
  /* Whether the key read last was written `key@=`: the AWS CLI keeps one
   * such flag for the whole parse and sets it at every key, nested or not,
   * so a value after a nested hash literal follows the hash's last key. */
  int file_optional;
  unsigned depth;
  cli_shorthand_file_fn file_fn;
  void *file_ctx;
  cli_shorthand_error *err;
} sh_parser;

/* ---- characters ------------------------------------------------------------ */

/* Decode the code point at `i` (the input is valid UTF-8, checked first);
 * *n is its length in bytes. */
static uint32_t sh_decode(const char *s, size_t i, size_t *n) {
  const unsigned char *u = (const unsigned char *)s + i;
  if (u[0] < 0x80) {
    *n = 1;
    return u[0];
  }
  if (u[0] < 0xE0) {
    *n = 2;
    return (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F);
  }
  if (u[0] < 0xF0) {
    *n = 3;
    return (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F);
  }
  *n = 4;
  return (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 |
         (uint32_t)(u[2] & 0x3F) << 6 | (u[3] & 0x3F);
}

/* The length of the valid UTF-8 prefix of s[0..len): shortest forms only,
 * no surrogates, nothing past U+10FFFF. */
static size_t sh_utf8_valid_prefix(const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    unsigned char c = u[i];
    size_t n;
    uint32_t min, cp;
    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF) {
      n = 2;
      min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      min = 0x10000;
    } else {
      return i;
    }
    if (len - i < n) return i;
    for (size_t k = 1; k < n; k++)
      if ((u[i + k] & 0xC0) != 0x80) return i;
    cp = sh_decode(s, i, &n);
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += n;
  }
  return len;
}

/* Whitespace as Unicode (and Python's str.isspace) defines it.  Bare words
 * may hold it after their first character, and it is cut from their end. */
static int sh_is_uspace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

/* The whitespace skipped between tokens is only ASCII's six. */
static int sh_is_skip_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int sh_is_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '#' || c == '/' || c == ':';
}

/* Bare words.  Their characters come from the Basic Multilingual Plane only
 * (an emoji ends a word), never control characters or quotes, and never an
 * unescaped comma.  Beyond that the three positions differ:
 *   the first character: no whitespace, '=', '[' or '{' (so a value cannot
 *     start like a list or a hash);
 *   later characters of a first value (the first in a csv list, or an item
 *     of a list or hash): whitespace, '=', '[' and '{' are fine, ']' and
 *     '}' end it (they close the list or hash it sits in);
 *   later characters of a second value (a csv list's later items): '=' ends
 *     it (it is the next key's), brackets of any kind are fine. */
typedef enum sh_word { SH_WORD_FIRST, SH_WORD_SECOND } sh_word;

static int sh_word_start(uint32_t c) {
  return c > 0x20 && c <= 0xFFFF && c != '"' && c != '\'' && c != ',' && c != '=' && c != '[' &&
         c != '{';
}

static int sh_word_follow(uint32_t c, sh_word kind) {
  if (sh_is_uspace(c)) return 1;
  if (c <= 0x20 || c > 0xFFFF || c == '"' || c == '\'' || c == ',') return 0;
  if (kind == SH_WORD_FIRST) return c != ']' && c != '}';
  return c != '=';
}

/* ---- errors ---------------------------------------------------------------- */

static kerr_code sh_nomem(sh_parser *p) {
  if (p->err) {
    p->err->kind = CLI_SHORTHAND_ERR_NOMEM;
    p->err->offset = p->pos;
  }
  return kerr_set(p->err ? &p->err->status : NULL, KERR_INTERNAL, "out of memory");
}

/* Record a failure of `kind` at byte `at` whose message is `head`, then the
 * AWS CLI's picture of where: the input up to the end of the line holding
 * `at`, a newline, spaces up to `at`'s column (in characters, from the last
 * newline before it), a caret, and the rest of the input from that line's
 * end; then `tail`. */
static kerr_code sh_fail_at(sh_parser *p, cli_shorthand_error_kind kind, size_t at,
                            const char *head, const char *tail) {
  size_t line_start = 0, line_end, col = 0, hl = strlen(head), tl = strlen(tail), n;
  char *msg, *w;
  if (!p->err) return KERR_VALIDATION;
  for (size_t i = 0; i < at; i++)
    if (p->in[i] == '\n') line_start = i + 1;
  for (size_t i = line_start; i < at;) {
    size_t cl;
    (void)sh_decode(p->in, i, &cl);
    i += cl;
    col++;
  }
  line_end = at;
  while (line_end < p->len && p->in[line_end] != '\n') line_end++;
  n = hl + p->len + 1 + col + 1 + tl + 1;
  msg = malloc(n);
  if (!msg) return sh_nomem(p);
  w = msg;
  memcpy(w, head, hl);
  w += hl;
  memcpy(w, p->in, line_end);
  w += line_end;
  *w++ = '\n';
  memset(w, ' ', col);
  w += col;
  *w++ = '^';
  memcpy(w, p->in + line_end, p->len - line_end);
  w += p->len - line_end;
  memcpy(w, tail, tl);
  w += tl;
  *w = '\0';
  p->err->kind = kind;
  p->err->offset = at;
  free(p->err->message);
  p->err->message = msg;
  return kerr_set(&p->err->status, KERR_VALIDATION, "%s", msg);
}

/* "Expected: 'X', received: 'Y'": Y is the character at `at`, or EOF at
 * the end; `none` says that a quoted string or a word was expected and none
 * could be read there (the CLI then names no character). */
static kerr_code sh_expected(sh_parser *p, size_t at, const char *expected, int none) {
  char head[96], actual[8];
  if (none) {
    snprintf(actual, sizeof actual, "<none>");
  } else if (at >= p->len) {
    snprintf(actual, sizeof actual, "EOF");
  } else {
    size_t cl;
    (void)sh_decode(p->in, at, &cl);
    memcpy(actual, p->in + at, cl);
    actual[cl] = '\0';
  }
  snprintf(head, sizeof head, "Expected: '%s', received: '%s' for input:\n", expected, actual);
  return sh_fail_at(p, CLI_SHORTHAND_ERR_SYNTAX, at, head, "");
}

static kerr_code sh_limit(sh_parser *p, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kerr_code sh_limit(sh_parser *p, size_t at, const char *fmt, ...) {
  va_list ap;
  if (!p->err) return KERR_VALIDATION;
  p->err->kind = CLI_SHORTHAND_ERR_LIMIT;
  p->err->offset = at;
  va_start(ap, fmt);
  vsnprintf(p->err->status.msg, sizeof p->err->status.msg, fmt, ap);
  va_end(ap);
  p->err->status.code = KERR_VALIDATION;
  free(p->err->message);
  p->err->message = strdup(p->err->status.msg);
  return KERR_VALIDATION;
}

/* ---- scanning -------------------------------------------------------------- */

static int sh_eof(const sh_parser *p) { return p->pos >= p->len; }

static void sh_skip_space(sh_parser *p) {
  while (p->pos < p->len && sh_is_skip_space(p->in[p->pos])) p->pos++;
}

/* The byte length of the bare word at `at` (0: none there).  `\,` is one
 * unit anywhere in a word, the first position included: an escaped comma. */
static size_t sh_scan_word(const sh_parser *p, size_t at, sh_word kind) {
  size_t i = at;
  for (;;) {
    size_t cl;
    uint32_t c;
    if (i + 1 < p->len && p->in[i] == '\\' && p->in[i + 1] == ',') {
      i += 2;
      continue;
    }
    if (i >= p->len) break;
    c = sh_decode(p->in, i, &cl);
    if (!(i == at ? sh_word_start(c) : sh_word_follow(c, kind))) break;
    i += cl;
  }
  return i - at;
}

/* A quoted string opening at `at` (the quote q).  Inside, `\q` does not
 * close it; any other character, newlines included, is content.  When no
 * bare quote closes it before the end of the input, the AWS CLI takes the
 * last `\q` seen as backslash-then-closing-quote instead (its expression
 * backs up to the last place where it could end), so `'a\'` is the string
 * `a\`.  Returns whether a string was found; *close is its closing quote. */
static int sh_scan_quoted(const sh_parser *p, size_t at, char q, size_t *close) {
  size_t i = at + 1, last_escaped = 0;
  int have_escaped = 0;
  while (i < p->len) {
    if (p->in[i] == '\\' && i + 1 < p->len && p->in[i + 1] == q) {
      last_escaped = i + 1;
      have_escaped = 1;
      i += 2;
    } else if (p->in[i] == q) {
      *close = i;
      return 1;
    } else {
      i++;
    }
  }
  if (!have_escaped) return 0;
  *close = last_escaped;
  return 1;
}

/* ---- values ---------------------------------------------------------------- */

/* Make the string value `s` (len bytes, NUL-terminated, freed here); when it
 * is file-optional the caller's callback may replace it. */
static kerr_code sh_value(sh_parser *p, char *s, size_t len, int file_optional, size_t at,
                          json_t **out) {
  json_t *replacement = NULL;
  *out = NULL;
  if (file_optional && p->file_fn) {
    kerr ke;
    kerr_code rc;
    kerr_clear(&ke);
    rc = p->file_fn(p->file_ctx, s, len, &replacement, &ke);
    if (rc != KERR_OK) {
      json_decref(replacement);
      free(s);
      if (p->err) {
        p->err->kind = CLI_SHORTHAND_ERR_FILE;
        p->err->offset = at;
        p->err->status = ke;
        p->err->status.code = rc;
        free(p->err->message);
        p->err->message = strdup(ke.msg);
      }
      return rc;
    }
  }
  if (replacement) {
    free(s);
    *out = replacement;
    return KERR_OK;
  }
  *out = json_stringn(s, len);
  free(s);
  return *out ? KERR_OK : sh_nomem(p);
}

/* The text of the bare word in[at..at+n): each `\,` becomes a comma (the
 * only escape a bare word has; a backslash before anything else is itself),
 * then trailing whitespace, Unicode's, is cut. */
static kerr_code sh_word_value(sh_parser *p, size_t at, size_t n, json_t **out) {
  char *s = malloc(n + 1);
  size_t w = 0, keep = 0;
  if (!s) return sh_nomem(p);
  for (size_t i = at; i < at + n;) {
    size_t cl;
    if (p->in[i] == '\\' && i + 1 < at + n && p->in[i + 1] == ',') {
      s[w++] = ',';
      i += 2;
      keep = w;
      continue;
    }
    uint32_t c = sh_decode(p->in, i, &cl);
    memcpy(s + w, p->in + i, cl);
    w += cl;
    i += cl;
    if (!sh_is_uspace(c)) keep = w;
  }
  s[keep] = '\0';
  return sh_value(p, s, keep, p->file_optional, at, out);
}

/* Replace every `\` followed by `c` in s[0..*len) by `c`, left to right,
 * each pair once. */
static void sh_unescape_pass(char *s, size_t *len, char c) {
  size_t w = 0;
  for (size_t i = 0; i < *len; i++) {
    if (s[i] == '\\' && i + 1 < *len && s[i + 1] == c) i++;
    s[w++] = s[i];
  }
  *len = w;
  s[w] = '\0';
}

/* The text of the quoted string whose quote q opens at `at` and closes at
 * `close`: first every `\q` becomes q, then, in a second pass over the
 * result, every `\\` becomes one backslash; nothing else is an escape.  (So
 * `'\\\''` reads as `\'`: the passes run in that order, as the CLI's do.)
 * No whitespace is cut. */
static kerr_code sh_quoted_value(sh_parser *p, size_t at, size_t close, char q, json_t **out) {
  size_t len = close - at - 1;
  char *s = malloc(len + 1);
  if (!s) return sh_nomem(p);
  memcpy(s, p->in + at + 1, len);
  s[len] = '\0';
  sh_unescape_pass(s, &len, q);
  sh_unescape_pass(s, &len, '\\');
  return sh_value(p, s, len, p->file_optional, at, out);
}

/* A first value at the current position: a quoted string, a bare word, or,
 * when neither starts here, the empty string (consuming nothing, and never
 * passed to the file callback). */
static kerr_code sh_first_value(sh_parser *p, json_t **out) {
  size_t at = p->pos, n;
  *out = NULL;
  if (!sh_eof(p) && (p->in[at] == '\'' || p->in[at] == '"')) {
    size_t close;
    char q = p->in[at];
    if (!sh_scan_quoted(p, at, q, &close))
      return sh_expected(p, at, q == '\'' ? "<singled quoted>" : "<double quoted>", 1);
    p->pos = close + 1;
    return sh_quoted_value(p, at, close, q, out);
  }
  n = sh_scan_word(p, at, SH_WORD_FIRST);
  if (n == 0) {
    *out = json_string("");
    return *out ? KERR_OK : sh_nomem(p);
  }
  p->pos = at + n;
  return sh_word_value(p, at, n, out);
}

static kerr_code sh_item(sh_parser *p, json_t **out);

static kerr_code sh_enter(sh_parser *p) {
  if (p->depth >= CLI_SHORTHAND_MAX_DEPTH)
    return sh_limit(p, p->pos, "shorthand value nested deeper than %u at byte %zu",
                    CLI_SHORTHAND_MAX_DEPTH, p->pos);
  p->depth++;
  return KERR_OK;
}

/* After an item of a list or hash literal: whitespace, then either the
 * `close` bracket (left for the caller) or a ',' and whitespace. */
static kerr_code sh_separator(sh_parser *p, char close) {
  sh_skip_space(p);
  if (!sh_eof(p) && p->in[p->pos] == close) return KERR_OK;
  if (sh_eof(p) || p->in[p->pos] != ',') return sh_expected(p, p->pos, ",", 0);
  p->pos++;
  sh_skip_space(p);
  return KERR_OK;
}

/* An explicit list, at its '['.  Items are separated by commas with any
 * whitespace around; a comma before the ']' is allowed, and an item that is
 * absent (`[,x]`) is the empty string. */
static kerr_code sh_explicit_list(sh_parser *p, json_t **out) {
  kerr_code rc = sh_enter(p);
  json_t *list = NULL, *v = NULL;
  if (rc != KERR_OK) return rc;
  list = json_array();
  if (!list) {
    rc = sh_nomem(p);
    goto fail;
  }
  p->pos++;
  sh_skip_space(p);
  while (sh_eof(p) || p->in[p->pos] != ']') {
    rc = sh_item(p, &v);
    if (rc != KERR_OK) goto fail;
    if (json_array_append_new(list, v)) {
      v = NULL;
      rc = sh_nomem(p);
      goto fail;
    }
    v = NULL;
    rc = sh_separator(p, ']');
    if (rc != KERR_OK) goto fail;
  }
  p->pos++;
  p->depth--;
  *out = list;
  return KERR_OK;
fail:
  json_decref(list);
  return rc;
}

/* A key, then optional whitespace, an optional '@' (the value is
 * file-optional) and whitespace, then '=' and whitespace.  The key may be
 * empty: `=x` is the key "". */
static kerr_code sh_key(sh_parser *p, size_t *key_at, size_t *key_len) {
  *key_at = p->pos;
  while (!sh_eof(p) && sh_is_key_char(p->in[p->pos])) p->pos++;
  *key_len = p->pos - *key_at;
  p->file_optional = 0;
  sh_skip_space(p);
  if (!sh_eof(p) && p->in[p->pos] == '@') {
    p->pos++;
    p->file_optional = 1;
    sh_skip_space(p);
  }
  if (sh_eof(p) || p->in[p->pos] != '=') return sh_expected(p, p->pos, "=", 0);
  p->pos++;
  sh_skip_space(p);
  return KERR_OK;
}

/* A hash literal, at its '{': key=item pairs separated by commas, a comma
 * before the '}' allowed.  A repeated key here silently takes the later
 * value (only the top level refuses repeats, as the CLI does). */
static kerr_code sh_hash_literal(sh_parser *p, json_t **out) {
  kerr_code rc = sh_enter(p);
  json_t *obj = NULL, *v = NULL;
  if (rc != KERR_OK) return rc;
  obj = json_object();
  if (!obj) {
    rc = sh_nomem(p);
    goto fail;
  }
  p->pos++;
  sh_skip_space(p);
  while (sh_eof(p) || p->in[p->pos] != '}') {
    size_t key_at, key_len;
    rc = sh_key(p, &key_at, &key_len);
    if (rc != KERR_OK) goto fail;
    rc = sh_item(p, &v);
    if (rc != KERR_OK) goto fail;
    rc = sh_separator(p, '}');
    if (rc != KERR_OK) goto fail;
    if (json_object_setn_new(obj, p->in + key_at, key_len, v)) {
      v = NULL;
      rc = sh_nomem(p);
      goto fail;
    }
    v = NULL;
  }
  p->pos++;
  p->depth--;
  *out = obj;
  return KERR_OK;
fail:
  json_decref(v);
  json_decref(obj);
  return rc;
}

/* An item of a list or a hash: a nested list, a nested hash, or a first
 * value. */
static kerr_code sh_item(sh_parser *p, json_t **out) {
  *out = NULL;
  if (!sh_eof(p) && p->in[p->pos] == '[') return sh_explicit_list(p, out);
  if (!sh_eof(p) && p->in[p->pos] == '{') return sh_hash_literal(p, out);
  return sh_first_value(p, out);
}

/* A csv list, after `key=`: a first value, then, for each comma, a second
 * value, as long as each is followed by a comma or the end.  The list gives
 * up when what follows a comma is not a second value followed by a comma or
 * the end, which is how `a=b,c=d` ends a's value at "b": c is a second value
 * but '=' follows it.  It then backs up to the last comma at or before where
 * it stopped, escaped or not, and leaves the rest for the next key (so
 * `a=b,c\,d=e` reads as a=b and d=e: the CLI does the same).  One value alone
 * is a string, more are a list.  The only failure is a comma with nothing
 * after it (a second value missing at the end of the input). */
static kerr_code sh_csv(sh_parser *p, json_t **out) {
  json_t *first = NULL, *list, *v = NULL;
  kerr_code rc = sh_first_value(p, &first);
  if (rc != KERR_OK) return rc;
  sh_skip_space(p);
  if (sh_eof(p) || p->in[p->pos] != ',') {
    *out = first;
    return KERR_OK;
  }
  p->pos++;
  sh_skip_space(p);
  list = json_array();
  if (!list) {
    json_decref(first);
    return sh_nomem(p);
  }
  /* jansson's *_new calls take the reference even when they fail. */
  if (json_array_append_new(list, first)) {
    rc = sh_nomem(p);
    goto fail;
  }
  for (;;) {
    size_t at = p->pos, end, close = 0;
    char q = 0;
    int ok;
    if (sh_eof(p)) {
      rc = sh_expected(p, p->pos, "<second>", 1);
      goto fail;
    }
    if (p->in[at] == '\'' || p->in[at] == '"') {
      q = p->in[at];
      ok = sh_scan_quoted(p, at, q, &close);
      end = close + 1;
    } else {
      end = at + sh_scan_word(p, at, SH_WORD_SECOND);
      ok = end > at;
    }
    if (ok) {
      p->pos = end;
      sh_skip_space(p);
      ok = sh_eof(p) || p->in[p->pos] == ',';
    }
    if (!ok) {
      while (p->pos > 0 && p->in[p->pos] != ',') p->pos--;
      break;
    }
    {
      /* The value is read only now that it is known to stay. */
      size_t resume = p->pos;
      p->pos = at;
      rc = q ? sh_quoted_value(p, at, close, q, &v) : sh_word_value(p, at, end - at, &v);
      p->pos = resume;
    }
    if (rc != KERR_OK) goto fail;
    if (json_array_append_new(list, v)) {
      v = NULL;
      rc = sh_nomem(p);
      goto fail;
    }
    v = NULL;
    if (sh_eof(p)) break;
    p->pos++;
    sh_skip_space(p);
  }
  if (json_array_size(list) == 1) {
    *out = json_incref(json_array_get(list, 0));
    json_decref(list);
  } else {
    *out = list;
  }
  return KERR_OK;
fail:
  json_decref(list);
  return rc;
}

/* What follows `key=`: nothing (the empty string), a list, a hash, or a
 * csv list. */
static kerr_code sh_values(sh_parser *p, json_t **out) {
  *out = NULL;
  if (sh_eof(p)) {
    *out = json_string("");
    return *out ? KERR_OK : sh_nomem(p);
  }
  if (p->in[p->pos] == '[') return sh_explicit_list(p, out);
  if (p->in[p->pos] == '{') return sh_hash_literal(p, out);
  return sh_csv(p, out);
}

/* The error for a key repeated at the top level, at byte `at`; the message
 * names the key as typed (keys are ASCII). */
static kerr_code sh_duplicate(sh_parser *p, size_t key_at, size_t key_len, size_t at) {
  static const char tail[] = "\nThis is often because there is a preceding \",\" instead of a space.";
  size_t hl = key_len + 64;
  char *head = malloc(hl);
  kerr_code rc;
  if (!head) return sh_nomem(p);
  snprintf(head, hl, "Second instance of key \"%.*s\" encountered for input:\n", (int)key_len,
           p->in + key_at);
  rc = sh_fail_at(p, CLI_SHORTHAND_ERR_DUPLICATE, at, head, tail);
  free(head);
  return rc;
}

/* The whole input: keyvals separated by commas with whitespace around.  A
 * key given twice at this level is refused, with the caret just past the
 * end of the keyval before it: usually a ',' was typed where a space was
 * meant (`--tags TagKey=a,TagValue=b,TagKey=c,...`).  Anything after the
 * last keyval other than a comma, even whitespace after a ']' or '}', is a
 * syntax error, as it is for the CLI. */
static kerr_code sh_parameter(sh_parser *p, json_t **out) {
  json_t *obj = json_object(), *v = NULL;
  kerr_code rc;
  size_t key_at, key_len, last_end = 0;
  if (!obj) return sh_nomem(p);
  for (int first = 1;; first = 0) {
    if (!first) {
      sh_skip_space(p);
      if (sh_eof(p) || p->in[p->pos] != ',') {
        rc = sh_expected(p, p->pos, ",", 0);
        goto fail;
      }
      p->pos++;
      sh_skip_space(p);
    }
    rc = sh_key(p, &key_at, &key_len);
    if (rc != KERR_OK) goto fail;
    rc = sh_values(p, &v);
    if (rc != KERR_OK) goto fail;
    if (!first && json_object_getn(obj, p->in + key_at, key_len)) {
      json_decref(v);
      v = NULL;
      rc = sh_duplicate(p, key_at, key_len, last_end + 1);
      goto fail;
    }
    if (json_object_setn_new(obj, p->in + key_at, key_len, v)) {
      v = NULL;
      rc = sh_nomem(p);
      goto fail;
    }
    v = NULL;
    last_end = p->pos;
    if (sh_eof(p)) break;
  }
  *out = obj;
  return KERR_OK;
fail:
  json_decref(obj);
  return rc;
}

kerr_code cli_shorthand_parse(const char *input, cli_shorthand_file_fn file_fn, void *file_ctx,
                              json_t **out, cli_shorthand_error *err) {
  sh_parser p = {0};
  size_t valid;
  kerr_code rc;
  if (out) *out = NULL;
  if (err) {
    err->message = NULL;
    cli_shorthand_error_free(err);
  }
  p.in = input ? input : "";
  p.file_fn = file_fn;
  p.file_ctx = file_ctx;
  p.err = err;
  if (!out) {
    if (err) err->kind = CLI_SHORTHAND_ERR_NOMEM; /* the header's kind for KERR_INTERNAL */
    return kerr_set(err ? &err->status : NULL, KERR_INTERNAL, "no result pointer");
  }
  p.len = strnlen(p.in, CLI_SHORTHAND_MAX_INPUT + 1);
  if (p.len > CLI_SHORTHAND_MAX_INPUT)
    return sh_limit(&p, CLI_SHORTHAND_MAX_INPUT, "shorthand value longer than %u bytes",
                    CLI_SHORTHAND_MAX_INPUT);
  valid = sh_utf8_valid_prefix(p.in, p.len);
  if (valid < p.len) {
    rc = sh_limit(&p, valid, "shorthand value is not UTF-8 at byte %zu", valid);
    if (err) err->kind = CLI_SHORTHAND_ERR_ENCODING;
    return rc;
  }
  return sh_parameter(&p, out);
}

void cli_shorthand_error_free(cli_shorthand_error *err) {
  if (!err) return;
  free(err->message);
  err->message = NULL;
  err->kind = CLI_SHORTHAND_ERR_NONE;
  err->offset = 0;
  kerr_clear(&err->status);
}
