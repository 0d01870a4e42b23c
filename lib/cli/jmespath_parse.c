/* jmespath_parse.c - turns a JMESPath expression into the syntax tree that
 * jmespath_eval.c walks: a lexer that cuts the whole expression into tokens
 * first, then a top-down operator-precedence parser over them.
 *
 * The expression is whatever the user typed, so the parser never trusts it:
 * its length is capped, every recursion counts its depth, and every node
 * knows the height of its subtree, so a chain like `a.b.c...` (which the
 * loop of the parser builds without recursing) is refused before it could
 * make the evaluator recurse too deeply.  Function names and argument counts
 * are resolved here, once, rather than on every search. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/jmespath_internal.h"

/* ---- errors ----------------------------------------------------------- */

void jmes_fill(jmes_error *err, jmes_error_kind kind, const char *fmt, ...) {
  if (err) {
    va_list ap;
    err->kind = kind;
    err->offset = 0;
    err->status.code = KERR_VALIDATION;
    va_start(ap, fmt);
    vsnprintf(err->status.msg, sizeof err->status.msg, fmt, ap);
    va_end(ap);
  }
}

void jmes_fill_oom(jmes_error *err) {
  if (err) {
    err->kind = JMES_ERR_RESOURCE;
    err->offset = 0;
    kerr_fill(&err->status, KERR_INTERNAL, "jmespath: out of memory");
  }
}

const char *jmes_error_kind_name(jmes_error_kind kind) {
  switch (kind) {
    case JMES_ERR_NONE: return "none";
    case JMES_ERR_SYNTAX: return "syntax";
    case JMES_ERR_INVALID_TYPE: return "invalid-type";
    case JMES_ERR_INVALID_VALUE: return "invalid-value";
    case JMES_ERR_INVALID_ARITY: return "invalid-arity";
    case JMES_ERR_UNKNOWN_FUNCTION: return "unknown-function";
    case JMES_ERR_RESOURCE: return "resource";
  }
  return "none";
}

/* ---- tokens ----------------------------------------------------------- */

typedef enum tok_kind {
  TK_EOF, TK_IDENT, TK_QIDENT, TK_NUMBER, TK_LITERAL, TK_DOT, TK_STAR, TK_LBRACKET,
  TK_RBRACKET, TK_FILTER, TK_FLATTEN, TK_LBRACE, TK_RBRACE, TK_LPAREN, TK_RPAREN, TK_COMMA,
  TK_COLON, TK_PIPE, TK_OR, TK_AND, TK_NOT, TK_EXPREF, TK_CURRENT, TK_EQ, TK_NE, TK_LT, TK_LE,
  TK_GT, TK_GE,
} tok_kind;

typedef struct token {
  tok_kind kind;
  size_t pos, end;   /* bytes of the expression it was cut from */
  jmes_str text;     /* identifiers: the decoded name (owned) */
  json_t *literal;   /* literals: the value (owned until a node takes it) */
  long long number;  /* numbers, saturated to +-NUMBER_LIMIT */
} token;

/* Numbers only index and slice arrays, whose lengths are far below this; a
 * bound keeps endpoint arithmetic in the evaluator free of overflow. */
#define NUMBER_LIMIT (LLONG_MAX / 4)

typedef struct parser {
  const char *src;
  size_t len;
  token *toks;
  size_t n_toks, cap_toks;
  size_t at;         /* index of the current token */
  unsigned depth;    /* recursion depth of parse_expr */
  jmes_error *err;
} parser;

static const char *tok_name(tok_kind k) {
  static const char *const names[] = {
      [TK_EOF] = "end of expression", [TK_IDENT] = "identifier", [TK_QIDENT] = "quoted identifier",
      [TK_NUMBER] = "number", [TK_LITERAL] = "literal", [TK_DOT] = "'.'", [TK_STAR] = "'*'",
      [TK_LBRACKET] = "'['", [TK_RBRACKET] = "']'", [TK_FILTER] = "'[?'", [TK_FLATTEN] = "'[]'",
      [TK_LBRACE] = "'{'", [TK_RBRACE] = "'}'", [TK_LPAREN] = "'('", [TK_RPAREN] = "')'",
      [TK_COMMA] = "','", [TK_COLON] = "':'", [TK_PIPE] = "'|'", [TK_OR] = "'||'", [TK_AND] = "'&&'",
      [TK_NOT] = "'!'", [TK_EXPREF] = "'&'", [TK_CURRENT] = "'@'", [TK_EQ] = "'=='", [TK_NE] = "'!='",
      [TK_LT] = "'<'", [TK_LE] = "'<='", [TK_GT] = "'>'", [TK_GE] = "'>='",
  };
  return names[k];
}

/* Fill p->err with a syntax error at byte `pos`; syntax_error_at also
 * yields the code, visibly (see jmes_fail). */
static void syntax_note(parser *p, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void syntax_note(parser *p, size_t pos, const char *fmt, ...) {
  char what[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  jmes_fill(p->err, JMES_ERR_SYNTAX, "Bad jmespath expression: %s at offset %zu", what, pos);
  if (p->err) p->err->offset = pos;
}

#define syntax_error_at(p, pos, ...) kerr_pass((syntax_note((p), (pos), __VA_ARGS__), KERR_VALIDATION))

/* ---- lexer ------------------------------------------------------------ */

/* Nonzero when s[0..len) is well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing past U+10FFFF): jansson keeps only such strings. */
static int utf8_valid(const unsigned char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    unsigned c = s[i], need;
    uint32_t cp;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xc2 && c <= 0xdf) { need = 1; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { need = 2; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { need = 3; cp = c & 0x07; }
    else return 0;
    if (len - i <= need) return 0;
    for (unsigned k = 1; k <= need; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if ((need == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (need == 3 && (cp < 0x10000 || cp > 0x10ffff)))
      return 0;
    i += need + 1;
  }
  return 1;
}

static int hex4(const char *s, uint32_t *out) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
    else return 0;
  }
  *out = v;
  return 1;
}

static size_t utf8_put(uint32_t cp, char *out) {
  if (cp < 0x80) { out[0] = (char)cp; return 1; }
  if (cp < 0x800) {
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xe0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (char)(0xf0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  out[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* Decode the body of a JSON string, in[0..len) without its quotes, into a
 * new buffer.  A JSON escape never grows, so len + 1 bytes suffice.
 * Returns 0 on success, -1 for a malformed escape (*bad: its offset), -2
 * when memory ran out. */
static int json_unescape(const char *in, size_t len, jmes_str *out, size_t *bad) {
  char *buf = malloc(len + 1);
  size_t o = 0;
  if (!buf) return -2;
  for (size_t i = 0; i < len; i++) {
    uint32_t cp, lo;
    if (in[i] != '\\') { buf[o++] = in[i]; continue; }
    *bad = i;
    if (++i >= len) goto bad_escape;
    switch (in[i]) {
      case '"': buf[o++] = '"'; break;
      case '\\': buf[o++] = '\\'; break;
      case '/': buf[o++] = '/'; break;
      case 'b': buf[o++] = '\b'; break;
      case 'f': buf[o++] = '\f'; break;
      case 'n': buf[o++] = '\n'; break;
      case 'r': buf[o++] = '\r'; break;
      case 't': buf[o++] = '\t'; break;
      case 'u':
        if (len - i < 5 || !hex4(in + i + 1, &cp)) goto bad_escape;
        i += 4;
        if (cp >= 0xdc00 && cp <= 0xdfff) goto bad_escape;
        if (cp >= 0xd800 && cp <= 0xdbff) {
          /* A high surrogate must be followed by the escaped low half. */
          if (len - i < 7 || in[i + 1] != '\\' || in[i + 2] != 'u' || !hex4(in + i + 3, &lo) ||
              lo < 0xdc00 || lo > 0xdfff)
            goto bad_escape;
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          i += 6;
        }
        o += utf8_put(cp, buf + o);
        break;
      default: goto bad_escape;
    }
  }
  buf[o] = '\0';
  out->s = buf;
  out->len = o;
  return 0;
bad_escape:
  free(buf);
  return -1;
}

/* The offset just past the closing `delim` of the token opened at start
 * (a backslash hides the character after it), or 0 if it never closes. */
static size_t scan_closing(const char *s, size_t len, size_t start, char delim) {
  for (size_t i = start + 1; i < len; i++) {
    if (s[i] == '\\') { i++; continue; }
    if (s[i] == delim) return i + 1;
  }
  return 0;
}

static kerr_code push_token(parser *p, token *t) {
  if (p->n_toks == p->cap_toks) {
    size_t cap = p->cap_toks ? p->cap_toks * 2 : 32;
    token *grown = realloc(p->toks, cap * sizeof *grown);
    if (!grown) return jmes_oom(p->err);
    p->toks = grown;
    p->cap_toks = cap;
  }
  p->toks[p->n_toks++] = *t;
  return KERR_OK;
}

/* A raw string 'like this': \' is a quote; any other backslash stays, so
 * 'c:\dir' means what it shows. */
static kerr_code lex_raw_string(parser *p, size_t start, size_t end, token *t) {
  const char *body = p->src + start + 1;
  size_t n = end - start - 2, o = 0;
  char *buf = malloc(n + 1);
  if (!buf) return jmes_oom(p->err);
  for (size_t i = 0; i < n; i++) {
    if (body[i] == '\\' && i + 1 < n && body[i + 1] == '\'') i++;
    buf[o++] = body[i];
  }
  t->literal = json_stringn(buf, o);
  free(buf);
  return t->literal ? KERR_OK : jmes_oom(p->err);
}

/* A JSON literal `like this`: \` is a backtick, the rest is JSON.  Text that
 * is not JSON is taken, as the specification's older form allowed, as the
 * body of a JSON string (`foo` is "foo"), after leading white space. */
static kerr_code lex_json_literal(parser *p, size_t start, size_t end, token *t) {
  const char *body = p->src + start + 1;
  size_t n = end - start - 2, o = 0, skip = 0, bad = 0;
  char *buf = malloc(n + 1);
  jmes_str s = {0};
  int rc;
  if (!buf) return jmes_oom(p->err);
  for (size_t i = 0; i < n; i++) {
    if (body[i] == '\\' && i + 1 < n && body[i + 1] == '`') i++;
    buf[o++] = body[i];
  }
  buf[o] = '\0';
  t->literal = json_loadb(buf, o, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
  /* jansson refuses integers beyond 64 bits; as a real they still mean
   * what they say. */
  if (!t->literal)
    t->literal = json_loadb(buf, o, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, NULL);
  if (t->literal) {
    free(buf);
    return KERR_OK;
  }
  while (skip < o && (buf[skip] == ' ' || buf[skip] == '\t' || buf[skip] == '\n' ||
                      buf[skip] == '\r' || buf[skip] == '\f' || buf[skip] == '\v'))
    skip++;
  for (size_t i = skip; i < o; i++) {
    /* An unescaped quote or control character would end or break the
     * string the old form makes of the text. */
    if (buf[i] == '\\') { i++; continue; }
    if (buf[i] == '"' || (unsigned char)buf[i] < 0x20) {
      free(buf);
      return syntax_error_at(p, start, "invalid JSON literal");
    }
  }
  rc = json_unescape(buf + skip, o - skip, &s, &bad);
  free(buf);
  if (rc == -2) return jmes_oom(p->err);
  if (rc != 0) return syntax_error_at(p, start, "invalid JSON literal");
  t->literal = json_stringn(s.s, s.len);
  free(s.s);
  return t->literal ? KERR_OK : jmes_oom(p->err);
}

static int is_ident_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Cut the whole expression into p->toks, ending with TK_EOF. */
static kerr_code lex(parser *p) {
  const char *s = p->src;
  size_t i = 0, len = p->len;
  kerr_code rc = KERR_OK;
  while (rc == KERR_OK) {
    token t;
    memset(&t, 0, sizeof t);
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    t.pos = i;
    if (i == len) {
      t.kind = TK_EOF;
      t.end = i;
      return push_token(p, &t);
    }
    char c = s[i], next = i + 1 < len ? s[i + 1] : '\0';
    size_t end = i + 1;
    if (is_ident_start(c)) {
      while (end < len && (is_ident_start(s[end]) || is_digit(s[end]))) end++;
      t.kind = TK_IDENT;
      t.text.s = malloc(end - i + 1);
      if (!t.text.s) return jmes_oom(p->err);
      memcpy(t.text.s, s + i, end - i);
      t.text.s[end - i] = '\0';
      t.text.len = end - i;
    } else if (is_digit(c) || (c == '-' && is_digit(next))) {
      long long v = 0;
      end = c == '-' ? i + 1 : i;
      for (; end < len && is_digit(s[end]); end++)
        v = v <= (NUMBER_LIMIT - 9) / 10 ? v * 10 + (s[end] - '0') : NUMBER_LIMIT;
      t.kind = TK_NUMBER;
      t.number = c == '-' ? -v : v;
    } else if (c == '"' || c == '\'' || c == '`') {
      size_t bad = 0;
      int urc;
      end = scan_closing(s, len, i, c);
      if (!end) return syntax_error_at(p, i, "unterminated %s", c == '"' ? "quoted identifier" :
                                                                 c == '\'' ? "raw string" : "JSON literal");
      if (c == '"') {
        t.kind = TK_QIDENT;
        urc = json_unescape(s + i + 1, end - i - 2, &t.text, &bad);
        if (urc == -2) return jmes_oom(p->err);
        if (urc != 0) return syntax_error_at(p, i + 1 + bad, "invalid escape in quoted identifier");
      } else {
        t.kind = TK_LITERAL;
        rc = c == '\'' ? lex_raw_string(p, i, end, &t) : lex_json_literal(p, i, end, &t);
        if (rc != KERR_OK) return rc;
      }
    } else {
      switch (c) {
        case '.': t.kind = TK_DOT; break;
        case '*': t.kind = TK_STAR; break;
        case ']': t.kind = TK_RBRACKET; break;
        case '{': t.kind = TK_LBRACE; break;
        case '}': t.kind = TK_RBRACE; break;
        case '(': t.kind = TK_LPAREN; break;
        case ')': t.kind = TK_RPAREN; break;
        case ',': t.kind = TK_COMMA; break;
        case ':': t.kind = TK_COLON; break;
        case '@': t.kind = TK_CURRENT; break;
        case '[':
          t.kind = next == ']' ? TK_FLATTEN : next == '?' ? TK_FILTER : TK_LBRACKET;
          if (t.kind != TK_LBRACKET) end++;
          break;
        case '|':
          t.kind = next == '|' ? TK_OR : TK_PIPE;
          if (next == '|') end++;
          break;
        case '&':
          t.kind = next == '&' ? TK_AND : TK_EXPREF;
          if (next == '&') end++;
          break;
        case '!':
          t.kind = next == '=' ? TK_NE : TK_NOT;
          if (next == '=') end++;
          break;
        case '<':
        case '>':
          t.kind = c == '<' ? (next == '=' ? TK_LE : TK_LT) : (next == '=' ? TK_GE : TK_GT);
          if (next == '=') end++;
          break;
        case '=':
          if (next != '=') return syntax_error_at(p, i, "'=' is not an operator (did you mean '=='?)");
          t.kind = TK_EQ;
          end++;
          break;
        default:
          if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
            return syntax_error_at(p, i, "unexpected character '%c'", c);
          return syntax_error_at(p, i, "unexpected character 0x%02x", (unsigned char)c);
      }
    }
    t.end = end;
    i = end;
    rc = push_token(p, &t);
    if (rc != KERR_OK) {
      free(t.text.s);
      json_decref(t.literal);
    }
  }
  return rc;
}

/* ---- syntax tree ------------------------------------------------------ */

static void node_free(jmes_node *n) {
  if (!n) return;
  node_free(n->lhs);
  node_free(n->rhs);
  node_free(n->cond);
  for (size_t i = 0; i < n->n_items; i++) {
    node_free(n->items[i]);
    if (n->keys) free(n->keys[i].s);
  }
  free(n->items);
  free(n->keys);
  free(n->name.s);
  json_decref(n->literal);
  free(n);
}

static unsigned height_of(const jmes_node *n) { return n ? n->height : 0; }

/* Set n->height from its children; refuse a tree taller than the cap. */
static kerr_code seal_height(parser *p, jmes_node *n) {
  unsigned h = height_of(n->lhs);
  if (height_of(n->rhs) > h) h = height_of(n->rhs);
  if (height_of(n->cond) > h) h = height_of(n->cond);
  for (size_t i = 0; i < n->n_items; i++)
    if (height_of(n->items[i]) > h) h = height_of(n->items[i]);
  n->height = h + 1;
  if (n->height > JMES_NEST_MAX)
    return jmes_fail(p->err, JMES_ERR_RESOURCE,
                     "Bad jmespath expression: nested deeper than %u levels", JMES_NEST_MAX);
  return KERR_OK;
}

/* A new node of `kind` over lhs and rhs (both taken, freed on failure). */
static kerr_code make_node(parser *p, jmes_node_kind kind, jmes_node *lhs, jmes_node *rhs,
                           jmes_node **out) {
  jmes_node *n = calloc(1, sizeof *n);
  kerr_code rc;
  *out = NULL;
  if (!n) {
    node_free(lhs);
    node_free(rhs);
    return jmes_oom(p->err);
  }
  n->kind = kind;
  n->lhs = lhs;
  n->rhs = rhs;
  rc = seal_height(p, n);
  if (rc != KERR_OK) {
    node_free(n);
    return rc;
  }
  *out = n;
  return KERR_OK;
}

/* ---- parser ----------------------------------------------------------- */

/* How tightly each token binds as an infix operator; 0 ends an expression.
 * Tokens below PROJECTION_STOP end the right side of a projection. */
#define PROJECTION_STOP 10

static int binding_power(tok_kind k) {
  switch (k) {
    case TK_PIPE: return 1;
    case TK_OR: return 2;
    case TK_AND: return 3;
    case TK_EQ: case TK_NE: case TK_LT: case TK_LE: case TK_GT: case TK_GE: return 5;
    case TK_FLATTEN: return 9;
    case TK_STAR: return 20;
    case TK_FILTER: return 21;
    case TK_DOT: return 40;
    case TK_NOT: return 45;
    case TK_LBRACE: return 50;
    case TK_LBRACKET: return 55;
    case TK_LPAREN: return 60;
    default: return 0;
  }
}

static token *current(parser *p) { return &p->toks[p->at]; }

static tok_kind peek_kind(parser *p, size_t ahead) {
  size_t i = p->at + ahead;
  return i < p->n_toks ? p->toks[i].kind : TK_EOF;
}

static token *advance(parser *p) {
  token *t = &p->toks[p->at];
  if (t->kind != TK_EOF) p->at++;
  return t;
}

static kerr_code unexpected(parser *p, const token *t, const char *expected) {
  int shown = (int)(t->end - t->pos > 40 ? 40 : t->end - t->pos);
  if (t->kind == TK_EOF)
    return syntax_error_at(p, t->pos, "expected %s, found end of expression", expected);
  return syntax_error_at(p, t->pos, "expected %s, found %s '%.*s'", expected, tok_name(t->kind),
                         shown, p->src + t->pos);
}

static kerr_code expect(parser *p, tok_kind kind) {
  if (current(p)->kind != kind) return unexpected(p, current(p), tok_name(kind));
  advance(p);
  return KERR_OK;
}

static kerr_code parse_expr(parser *p, int rbp, jmes_node **out);

static kerr_code current_node(parser *p, jmes_node **out) {
  return make_node(p, JN_CURRENT, NULL, NULL, out);
}

/* What follows a projection ([*], *, [], [?...]): the expression applied to
 * each element, or `@` when the next token ends the projection. */
static kerr_code parse_projection_rhs(parser *p, int rbp, jmes_node **out);

static kerr_code parse_dot_rhs(parser *p, int rbp, jmes_node **out);

/* Append `item` (taken) to n->items; on failure frees it. */
static kerr_code add_item(parser *p, jmes_node *n, jmes_node *item, size_t *cap) {
  if (n->n_items == *cap) {
    size_t grown_cap = *cap ? *cap * 2 : 4;
    jmes_node **grown = realloc(n->items, grown_cap * sizeof *grown);
    if (!grown) {
      node_free(item);
      return jmes_oom(p->err);
    }
    n->items = grown;
    if (n->kind == JN_MULTI_HASH) {
      jmes_str *keys = realloc(n->keys, grown_cap * sizeof *keys);
      if (!keys) {
        node_free(item);
        return jmes_oom(p->err);
      }
      n->keys = keys;
    }
    *cap = grown_cap;
  }
  if (n->kind == JN_MULTI_HASH) n->keys[n->n_items] = (jmes_str){0};
  n->items[n->n_items++] = item;
  return KERR_OK;
}

/* [a, b, ...] once its '[' is consumed. */
static kerr_code parse_multi_list(parser *p, jmes_node **out) {
  jmes_node *n = NULL, *item = NULL;
  size_t cap = 0;
  kerr_code rc = make_node(p, JN_MULTI_LIST, NULL, NULL, &n);
  while (rc == KERR_OK) {
    rc = parse_expr(p, 0, &item);
    if (rc == KERR_OK) rc = add_item(p, n, item, &cap);
    if (rc != KERR_OK || current(p)->kind == TK_RBRACKET) break;
    rc = expect(p, TK_COMMA);
  }
  if (rc == KERR_OK) rc = expect(p, TK_RBRACKET);
  if (rc == KERR_OK) rc = seal_height(p, n);
  if (rc != KERR_OK) {
    node_free(n);
    n = NULL;
  }
  *out = n;
  return rc;
}

/* {key: expr, ...} once its '{' is consumed. */
static kerr_code parse_multi_hash(parser *p, jmes_node **out) {
  jmes_node *n = NULL, *item = NULL;
  size_t cap = 0;
  kerr_code rc = make_node(p, JN_MULTI_HASH, NULL, NULL, &n);
  while (rc == KERR_OK) {
    token *key = current(p);
    if (key->kind != TK_IDENT && key->kind != TK_QIDENT) {
      rc = unexpected(p, key, "a key (identifier)");
      break;
    }
    advance(p);
    rc = expect(p, TK_COLON);
    if (rc == KERR_OK) rc = parse_expr(p, 0, &item);
    if (rc == KERR_OK) rc = add_item(p, n, item, &cap);
    if (rc != KERR_OK) break;
    n->keys[n->n_items - 1] = key->text;
    key->text = (jmes_str){0};
    if (current(p)->kind == TK_RBRACE) break;
    rc = expect(p, TK_COMMA);
  }
  if (rc == KERR_OK) rc = expect(p, TK_RBRACE);
  if (rc == KERR_OK) rc = seal_height(p, n);
  if (rc != KERR_OK) {
    node_free(n);
    n = NULL;
  }
  *out = n;
  return rc;
}

/* [n] or [a:b:c] once its '[' is consumed and a number or ':' is next. */
static kerr_code parse_index(parser *p, jmes_node **out) {
  jmes_node *n = NULL;
  kerr_code rc;
  *out = NULL;
  if (current(p)->kind == TK_NUMBER && peek_kind(p, 1) != TK_COLON) {
    rc = make_node(p, JN_INDEX, NULL, NULL, &n);
    if (rc != KERR_OK) return rc;
    n->index = advance(p)->number;
  } else {
    int part = 0;
    rc = make_node(p, JN_SLICE, NULL, NULL, &n);
    if (rc != KERR_OK) return rc;
    while (rc == KERR_OK && current(p)->kind != TK_RBRACKET) {
      token *t = current(p);
      if (t->kind == TK_COLON && part < 2) {
        part++;
        advance(p);
      } else if (t->kind == TK_NUMBER && !n->slice_given[part]) {
        n->slice[part] = t->number;
        n->slice_given[part] = 1;
        advance(p);
      } else {
        rc = unexpected(p, t, part < 2 ? "a number, ':' or ']'" : "a number or ']'");
      }
    }
    if (rc == KERR_OK && n->slice_given[2] && n->slice[2] == 0)
      rc = jmes_fail(p->err, JMES_ERR_INVALID_VALUE, "jmespath: slice step cannot be 0");
  }
  if (rc == KERR_OK) rc = expect(p, TK_RBRACKET);
  if (rc != KERR_OK) {
    node_free(n);
    return rc;
  }
  *out = n;
  return KERR_OK;
}

/* lhs[index] or, for a slice, the projection lhs[a:b:c] -> rhs. */
static kerr_code parse_indexed(parser *p, jmes_node *lhs, jmes_node **out) {
  jmes_node *index = NULL, *indexed = NULL, *rhs = NULL;
  kerr_code rc = parse_index(p, &index);
  int is_slice = rc == KERR_OK && index->kind == JN_SLICE;
  *out = NULL;
  if (rc != KERR_OK) {
    node_free(lhs);
    return rc;
  }
  rc = make_node(p, JN_INDEX_EXPR, lhs, index, &indexed);
  if (rc != KERR_OK || !is_slice) {
    *out = indexed;
    return rc;
  }
  rc = parse_projection_rhs(p, binding_power(TK_STAR), &rhs);
  if (rc != KERR_OK) {
    node_free(indexed);
    return rc;
  }
  return make_node(p, JN_PROJECT_LIST, indexed, rhs, out);
}

/* lhs[?cond] -> rhs once '[?' is consumed. */
static kerr_code parse_filter(parser *p, jmes_node *lhs, jmes_node **out) {
  jmes_node *cond = NULL, *rhs = NULL, *n = NULL;
  kerr_code rc = parse_expr(p, 0, &cond);
  if (rc == KERR_OK) rc = expect(p, TK_RBRACKET);
  if (rc == KERR_OK) {
    if (current(p)->kind == TK_FLATTEN) rc = current_node(p, &rhs);
    else rc = parse_projection_rhs(p, binding_power(TK_FILTER), &rhs);
  }
  if (rc == KERR_OK) {
    rc = make_node(p, JN_PROJECT_FILTER, lhs, rhs, &n);
    lhs = rhs = NULL;
  }
  if (rc == KERR_OK) {
    n->cond = cond;
    cond = NULL;
    rc = seal_height(p, n);
  }
  if (rc != KERR_OK) {
    node_free(n);
    n = NULL;
  }
  node_free(lhs);
  node_free(rhs);
  node_free(cond);
  *out = n;
  return rc;
}

/* lhs -> rhs over the elements of an array (kind JN_PROJECT_LIST) or the
 * values of an object (JN_PROJECT_VALUES), rhs parsed here. */
static kerr_code parse_projection(parser *p, jmes_node_kind kind, jmes_node *lhs, int rbp,
                                  jmes_node **out) {
  jmes_node *rhs = NULL;
  kerr_code rc = parse_projection_rhs(p, rbp, &rhs);
  if (rc != KERR_OK) {
    node_free(lhs);
    *out = NULL;
    return rc;
  }
  return make_node(p, kind, lhs, rhs, out);
}

static kerr_code parse_projection_rhs(parser *p, int rbp, jmes_node **out) {
  tok_kind k = current(p)->kind;
  *out = NULL;
  if (binding_power(k) < PROJECTION_STOP) return current_node(p, out);
  if (k == TK_LBRACKET || k == TK_FILTER) return parse_expr(p, rbp, out);
  if (k == TK_DOT) {
    advance(p);
    return parse_dot_rhs(p, rbp, out);
  }
  return unexpected(p, current(p), "'.', '[', '[?' or the end of the projection");
}

static kerr_code parse_dot_rhs(parser *p, int rbp, jmes_node **out) {
  tok_kind k = current(p)->kind;
  *out = NULL;
  if (k == TK_IDENT || k == TK_QIDENT || k == TK_STAR) return parse_expr(p, rbp, out);
  if (k == TK_LBRACKET) {
    advance(p);
    return parse_multi_list(p, out);
  }
  if (k == TK_LBRACE) {
    advance(p);
    return parse_multi_hash(p, out);
  }
  return unexpected(p, current(p), "an identifier, '*', '[' or '{' after '.'");
}

/* name(args...) once '(' is consumed; `name` is the JN_FIELD before it. */
static kerr_code parse_call(parser *p, jmes_node *name, size_t name_pos, jmes_node **out) {
  jmes_node *n = NULL, *arg = NULL;
  size_t cap = 0;
  kerr_code rc;
  *out = NULL;
  if (name->kind != JN_FIELD) {
    node_free(name);
    return syntax_error_at(p, name_pos, "only a plain name can be called as a function");
  }
  rc = make_node(p, JN_FUNCTION, NULL, NULL, &n);
  while (rc == KERR_OK && current(p)->kind != TK_RPAREN) {
    if (n->n_items > 0) rc = expect(p, TK_COMMA);
    if (rc == KERR_OK) rc = parse_expr(p, 0, &arg);
    if (rc == KERR_OK) rc = add_item(p, n, arg, &cap);
  }
  if (rc == KERR_OK) rc = expect(p, TK_RPAREN);
  if (rc == KERR_OK) rc = seal_height(p, n);
  if (rc == KERR_OK) {
    n->func = jmes_function_find(name->name.s, name->name.len);
    if (!n->func) {
      rc = jmes_fail(p->err, JMES_ERR_UNKNOWN_FUNCTION, "jmespath: unknown function %.64s()",
                     name->name.s);
    } else if (n->n_items < n->func->min_args || n->n_items > n->func->max_args) {
      if (n->func->max_args == SIZE_MAX)
        rc = jmes_fail(p->err, JMES_ERR_INVALID_ARITY,
                       "jmespath: %s() takes at least %zu argument(s), %zu given", n->func->name,
                       n->func->min_args, n->n_items);
      else
        rc = jmes_fail(p->err, JMES_ERR_INVALID_ARITY,
                       "jmespath: %s() takes %zu argument(s), %zu given", n->func->name,
                       n->func->max_args, n->n_items);
    }
  }
  node_free(name);
  if (rc != KERR_OK) {
    node_free(n);
    return rc;
  }
  *out = n;
  return KERR_OK;
}

/* A token in prefix position. */
static kerr_code parse_nud(parser *p, jmes_node **out) {
  token *t = advance(p);
  jmes_node *n = NULL, *inner = NULL;
  kerr_code rc;
  *out = NULL;
  switch (t->kind) {
    case TK_LITERAL:
      rc = make_node(p, JN_LITERAL, NULL, NULL, &n);
      if (rc != KERR_OK) return rc;
      n->literal = t->literal;
      t->literal = NULL;
      break;
    case TK_QIDENT:
      if (current(p)->kind == TK_LPAREN)
        return syntax_error_at(p, t->pos, "a quoted identifier cannot name a function");
      /* fall through */
    case TK_IDENT:
      rc = make_node(p, JN_FIELD, NULL, NULL, &n);
      if (rc != KERR_OK) return rc;
      n->name = t->text;
      t->text = (jmes_str){0};
      break;
    case TK_CURRENT: rc = current_node(p, &n); break;
    case TK_STAR:
      rc = current_node(p, &inner);
      if (rc == KERR_OK) rc = parse_projection(p, JN_PROJECT_VALUES, inner, binding_power(TK_STAR), &n);
      break;
    case TK_FLATTEN:
      rc = current_node(p, &inner);
      if (rc == KERR_OK) rc = make_node(p, JN_FLATTEN, inner, NULL, &inner);
      if (rc == KERR_OK) rc = parse_projection(p, JN_PROJECT_LIST, inner, binding_power(TK_FLATTEN), &n);
      break;
    case TK_FILTER:
      rc = current_node(p, &inner);
      if (rc == KERR_OK) rc = parse_filter(p, inner, &n);
      break;
    case TK_LBRACKET:
      if (current(p)->kind == TK_NUMBER || current(p)->kind == TK_COLON) {
        rc = current_node(p, &inner);
        if (rc == KERR_OK) rc = parse_indexed(p, inner, &n);
      } else if (current(p)->kind == TK_STAR && peek_kind(p, 1) == TK_RBRACKET) {
        advance(p);
        advance(p);
        rc = current_node(p, &inner);
        if (rc == KERR_OK) rc = parse_projection(p, JN_PROJECT_LIST, inner, binding_power(TK_STAR), &n);
      } else {
        rc = parse_multi_list(p, &n);
      }
      break;
    case TK_LBRACE: rc = parse_multi_hash(p, &n); break;
    case TK_LPAREN:
      rc = parse_expr(p, 0, &n);
      if (rc == KERR_OK) rc = expect(p, TK_RPAREN);
      break;
    case TK_NOT:
      rc = parse_expr(p, binding_power(TK_NOT), &inner);
      if (rc == KERR_OK) rc = make_node(p, JN_NOT, inner, NULL, &n);
      break;
    case TK_EXPREF:
      rc = parse_expr(p, 0, &inner);
      if (rc == KERR_OK) rc = make_node(p, JN_EXPREF, inner, NULL, &n);
      break;
    default: return unexpected(p, t, "an expression");
  }
  if (rc != KERR_OK) {
    node_free(n);
    return rc;
  }
  *out = n;
  return KERR_OK;
}

static jmes_cmp comparator(tok_kind k) {
  switch (k) {
    case TK_NE: return JC_NE;
    case TK_LT: return JC_LT;
    case TK_LE: return JC_LE;
    case TK_GT: return JC_GT;
    case TK_GE: return JC_GE;
    default: return JC_EQ;
  }
}

/* A token in infix position after `lhs` (taken). */
static kerr_code parse_led(parser *p, jmes_node *lhs, jmes_node **out) {
  token *t = advance(p);
  jmes_node *rhs = NULL;
  jmes_node_kind kind;
  kerr_code rc;
  *out = NULL;
  switch (t->kind) {
    case TK_DOT:
      if (current(p)->kind == TK_STAR) {
        advance(p);
        return parse_projection(p, JN_PROJECT_VALUES, lhs, binding_power(TK_DOT), out);
      }
      rc = parse_dot_rhs(p, binding_power(TK_DOT), &rhs);
      kind = JN_SUBEXPR;
      break;
    case TK_PIPE: kind = JN_PIPE; rc = parse_expr(p, binding_power(t->kind), &rhs); break;
    case TK_OR: kind = JN_OR; rc = parse_expr(p, binding_power(t->kind), &rhs); break;
    case TK_AND: kind = JN_AND; rc = parse_expr(p, binding_power(t->kind), &rhs); break;
    case TK_EQ: case TK_NE: case TK_LT: case TK_LE: case TK_GT: case TK_GE:
      kind = JN_COMPARE;
      rc = parse_expr(p, binding_power(t->kind), &rhs);
      if (rc == KERR_OK) {
        rc = make_node(p, kind, lhs, rhs, out);
        if (rc == KERR_OK) (*out)->cmp = comparator(t->kind);
        return rc;
      }
      break;
    case TK_FLATTEN:
      rc = make_node(p, JN_FLATTEN, lhs, NULL, &lhs);
      if (rc != KERR_OK) return rc;
      return parse_projection(p, JN_PROJECT_LIST, lhs, binding_power(TK_FLATTEN), out);
    case TK_FILTER: return parse_filter(p, lhs, out);
    case TK_LBRACKET:
      if (current(p)->kind == TK_NUMBER || current(p)->kind == TK_COLON) return parse_indexed(p, lhs, out);
      rc = expect(p, TK_STAR);
      if (rc == KERR_OK) rc = expect(p, TK_RBRACKET);
      if (rc != KERR_OK) {
        node_free(lhs);
        return rc;
      }
      return parse_projection(p, JN_PROJECT_LIST, lhs, binding_power(TK_STAR), out);
    case TK_LPAREN: return parse_call(p, lhs, t->pos, out);
    default:
      node_free(lhs);
      return unexpected(p, t, "an operator or the end of the expression");
  }
  if (rc != KERR_OK) {
    node_free(lhs);
    return rc;
  }
  return make_node(p, kind, lhs, rhs, out);
}

static kerr_code parse_expr(parser *p, int rbp, jmes_node **out) {
  jmes_node *left = NULL;
  kerr_code rc;
  *out = NULL;
  if (++p->depth > JMES_NEST_MAX) {
    rc = jmes_fail(p->err, JMES_ERR_RESOURCE,
                   "Bad jmespath expression: nested deeper than %u levels", JMES_NEST_MAX);
  } else {
    rc = parse_nud(p, &left);
    while (rc == KERR_OK && rbp < binding_power(current(p)->kind)) rc = parse_led(p, left, &left);
    if (rc == KERR_OK) *out = left;
  }
  p->depth--;
  return rc;
}

/* ---- API -------------------------------------------------------------- */

kerr_code jmes_compile(const char *expr, jmes_expr **out, jmes_error *err) {
  parser p;
  jmes_node *root = NULL;
  jmes_expr *e = NULL;
  kerr_code rc;
  memset(&p, 0, sizeof p);
  p.err = err;
  if (err) {
    err->kind = JMES_ERR_NONE;
    err->offset = 0;
    kerr_clear(&err->status);
  }
  *out = NULL;
  if (!expr) return jmes_fail(err, JMES_ERR_SYNTAX, "Bad jmespath expression: no expression");
  p.src = expr;
  p.len = strnlen(expr, JMES_EXPR_MAX + 1);
  if (p.len > JMES_EXPR_MAX)
    return jmes_fail(err, JMES_ERR_RESOURCE, "Bad jmespath expression: longer than %u bytes",
                     JMES_EXPR_MAX);
  if (!utf8_valid((const unsigned char *)expr, p.len))
    return jmes_fail(err, JMES_ERR_SYNTAX, "Bad jmespath expression: not valid UTF-8");
  rc = lex(&p);
  if (rc == KERR_OK) rc = parse_expr(&p, 0, &root);
  if (rc == KERR_OK && current(&p)->kind != TK_EOF)
    rc = unexpected(&p, current(&p), "an operator or the end of the expression");
  if (rc == KERR_OK) {
    e = malloc(sizeof *e);
    if (!e) rc = jmes_oom(err);
  }
  if (rc == KERR_OK) {
    e->root = root;
    root = NULL;
    *out = e;
  }
  node_free(root);
  for (size_t i = 0; i < p.n_toks; i++) {
    free(p.toks[i].text.s);
    json_decref(p.toks[i].literal);
  }
  free(p.toks);
  return rc;
}

void jmes_free(jmes_expr *e) {
  if (!e) return;
  node_free(e->root);
  free(e);
}
