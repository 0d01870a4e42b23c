/* jmespath_parse.c - turns a JMESPath expression into the syntax tree that
 * jmespath_eval.c walks: a lexer that cuts the whole expression into tokens
 * first, then a recursive-descent parser over them, written from the
 * grammar and the precedence of the specification
 * (https://jmespath.org/specification.html).
 *
 * One function per level, loosest first; each parses its operands with the
 * next one down and loops over its operator, so every binary operator is
 * left-associative:
 *
 *   parse_pipe        expression *( "|" expression )
 *   parse_or          *( "||" ... )
 *   parse_and         *( "&&" ... )
 *   parse_comparison  *( ("==" / "!=" / "<" / "<=" / ">" / ">=") ... )
 *   parse_operand     a primary, then its suffixes
 *   parse_primary     name, "quoted", literal, @, (expr), !x, &expr,
 *                     [list], {hash}, name(args), and *, [], [*], [n],
 *                     [a:b], [?c] applied to the current node
 *   parse_suffixes    .name  .*  .[list]  .{hash}  [n]  [a:b]  [*]  []  [?c]
 *
 * The five projections ([*], [a:b], *, [] and [?c]) apply a right-hand side
 * to each element; parse_projected says where that right side ends, and the
 * `reach` of an operand says which suffixes may still extend it (see their
 * comments: that is where this grammar needs more than the ABNF says).
 *
 * The expression is whatever the user typed, so the parser never trusts it:
 * its length is capped, every recursion passes through descend(), which
 * counts its depth, and every node knows the height of its subtree, so a
 * chain like `a.b.c...` (which parse_suffixes builds in a loop, without
 * recursing) is refused before it could make the evaluator recurse too
 * deeply.  Function names and argument counts are resolved here, once,
 * rather than on every search. */
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
  unsigned depth;    /* recursion depth, see descend() */
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

/* Nonzero when the integer text s[0..n) (an optional '-', then digits, no
 * leading zeros as JSON requires) lies outside the range of json_int_t
 * (long long): jansson refuses such an integer. */
static int int_out_of_range(const char *s, size_t n) {
  static const char max_pos[] = "9223372036854775807", max_neg[] = "9223372036854775808";
  int neg = s[0] == '-';
  const char *digits = s + neg, *limit = neg ? max_neg : max_pos;
  size_t nd = n - (size_t)neg, nl = sizeof max_pos - 1;
  if (nd != nl) return nd > nl;
  return memcmp(digits, limit, nl) > 0;
}

/* How rewrite_numbers changes the numbers of a JSON text. */
typedef enum number_rewrite {
  /* Append ".0" to every integer too large for json_int_t, so that jansson
   * reads it as a real while every other integer stays exact:
   * `[1, 99999999999999999999]` is [1, 1e20], not [1.0, 1e20]. */
  WIDEN_HUGE_INTS,
  /* Replace every number by 0: the text parses then exactly when it is JSON
   * apart from the range of its numbers. */
  ZERO_NUMBERS,
} number_rewrite;

/* A copy of the JSON text in[0..n) with its numbers (not those inside
 * strings) rewritten as `how` says; NULL when memory ran out. */
static char *rewrite_numbers(const char *in, size_t n, number_rewrite how, size_t *out_len) {
  /* Only integers of 19 digits or more grow, by 2 bytes each. */
  char *out = malloc(n + 2 * (n / 19 + 1) + 1);
  size_t o = 0, i = 0;
  if (!out) return NULL;
  while (i < n) {
    if (in[i] == '"') {
      size_t close = scan_closing(in, n, i, '"');
      size_t stop = close ? close : n;
      memcpy(out + o, in + i, stop - i);
      o += stop - i;
      i = stop;
    } else if (in[i] == '-' || (in[i] >= '0' && in[i] <= '9')) {
      size_t start = i;
      int integral = 1;
      while (i < n && (in[i] == '-' || in[i] == '+' || in[i] == '.' || in[i] == 'e' ||
                       in[i] == 'E' || (in[i] >= '0' && in[i] <= '9'))) {
        if (in[i] == '.' || in[i] == 'e' || in[i] == 'E') integral = 0;
        i++;
      }
      if (how == ZERO_NUMBERS) {
        out[o++] = '0';
        continue;
      }
      memcpy(out + o, in + start, i - start);
      o += i - start;
      if (integral && i - start > 1 && int_out_of_range(in + start, i - start)) {
        out[o++] = '.';
        out[o++] = '0';
      }
    } else {
      out[o++] = in[i++];
    }
  }
  out[o] = '\0';
  *out_len = o;
  return out;
}

/* Parse in[0..n) with rewrite_numbers applied first; *oom set when memory
 * ran out. */
static json_t *load_rewritten(const char *in, size_t n, number_rewrite how, json_error_t *jerr,
                              int *oom) {
  size_t len = 0;
  char *text = rewrite_numbers(in, n, how, &len);
  json_t *v;
  if (!text) {
    *oom = 1;
    return NULL;
  }
  v = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, jerr);
  free(text);
  return v;
}

/* The JSON text in[0..n) as a value, or NULL: with *overflow set when it is
 * JSON but holds a real beyond double (1e400: JSON cannot write infinity
 * either), with *oom set when memory ran out, and with neither when it is
 * not JSON.  Integers beyond 64 bits become reals, and only they. */
static json_t *load_json(const char *in, size_t n, int *overflow, int *oom) {
  json_error_t jerr;
  json_t *v = json_loadb(in, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  *overflow = 0;
  *oom = 0;
  if (!v && json_error_code(&jerr) == json_error_numeric_overflow) {
    v = load_rewritten(in, n, WIDEN_HUGE_INTS, &jerr, oom);
    if (!v && !*oom && json_error_code(&jerr) == json_error_numeric_overflow) {
      /* jansson stops at the first number out of range, before it knows
       * whether the rest is JSON at all (` 1e400x` is the old form's
       * string): only JSON apart from its numbers is an overflow. */
      json_t *shape = load_rewritten(in, n, ZERO_NUMBERS, &jerr, oom);
      *overflow = shape != NULL;
      json_decref(shape);
    }
  }
  if (!v && json_error_code(&jerr) == json_error_out_of_memory) *oom = 1;
  return v;
}

/* A JSON literal `like this`: \` is a backtick, the rest is JSON.  Text that
 * is not JSON is taken, as the specification's older form allowed, as the
 * body of a JSON string (`foo` is "foo"), after leading white space.  A
 * number out of range is an error, not a string of its digits. */
static kerr_code lex_json_literal(parser *p, size_t start, size_t end, token *t) {
  const char *body = p->src + start + 1;
  size_t n = end - start - 2, o = 0, skip = 0, bad = 0;
  char *buf = malloc(n + 1);
  jmes_str s = {0};
  int rc, overflow = 0, oom = 0;
  if (!buf) return jmes_oom(p->err);
  for (size_t i = 0; i < n; i++) {
    if (body[i] == '\\' && i + 1 < n && body[i + 1] == '`') i++;
    buf[o++] = body[i];
  }
  buf[o] = '\0';
  t->literal = load_json(buf, o, &overflow, &oom);
  if (t->literal || overflow || oom) {
    free(buf);
    if (oom) return jmes_oom(p->err);
    if (overflow) return syntax_error_at(p, start, "number out of range in JSON literal");
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

/* Which suffixes may still extend an operand (see parse_suffixes), from
 * the most to the fewest.  Each reach below takes a subset of the one
 * above it, so they are ordered and compared with '<'. */
typedef enum reach {
  /* An operand of |, ||, && or a comparison: every suffix applies. */
  REACH_ALL,
  /* The right side of a [*], [a:b], * or [] projection: it goes on through
   * '.name', '[n]', '[*]', '[a:b]' and '[?...]', but a '[]' flattens the
   * projection's whole result, so it ends the right side (as do |, ||, &&
   * and the comparators, which no suffix loop takes). */
  REACH_PROJECTED,
  /* The right side of a filter projection also ends at a second filter:
   * `a[?x].b[?y]` filters the projection's result, not each b.  This is
   * how the widely used implementations read it (the AWS CLI's among
   * them), so a query means the same here as there. */
  REACH_FILTERED,
  /* The right side of '.', of the values projection 'x.*' and the operand
   * of '!': only bracket suffixes ('[n]', '[*]', '[a:b]').  A further '.'
   * belongs to the enclosing chain, which makes a.b.c left-associative;
   * `!a.b` reads as `(!a).b` and `a.*.b.c` as `(a.*.b).c`, again as the
   * widely used implementations read them. */
  REACH_TIGHT,
} reach;

static token *current(parser *p) { return &p->toks[p->at]; }

static tok_kind kind_at(const parser *p, size_t ahead) {
  size_t i = p->at + ahead;
  return i < p->n_toks ? p->toks[i].kind : TK_EOF;
}

static token *take(parser *p) {
  token *t = &p->toks[p->at];
  if (t->kind != TK_EOF) p->at++;
  return t;
}

/* Bytes of the token at `t` to quote in a message: at most 40, and never
 * half a UTF-8 character, so that the message stays valid UTF-8 wherever it
 * is copied (JSON error bodies included).  The expression was checked to be
 * valid UTF-8 and tokens start on character boundaries, so stepping back
 * over continuation bytes (10xxxxxx) lands on one. */
static int excerpt_len(const parser *p, const token *t) {
  size_t n = t->end - t->pos;
  if (n > 40) {
    n = 40;
    while (n > 0 && ((unsigned char)p->src[t->pos + n] & 0xc0) == 0x80) n--;
  }
  return (int)n;
}

static kerr_code unexpected(parser *p, const token *t, const char *wanted) {
  if (t->kind == TK_EOF)
    return syntax_error_at(p, t->pos, "expected %s, found end of expression", wanted);
  return syntax_error_at(p, t->pos, "expected %s, found %s '%.*s'", wanted, tok_name(t->kind),
                         excerpt_len(p, t), p->src + t->pos);
}

static kerr_code need(parser *p, tok_kind kind) {
  if (current(p)->kind != kind) return unexpected(p, current(p), tok_name(kind));
  take(p);
  return KERR_OK;
}

static kerr_code at_current(parser *p, jmes_node **out) {
  return make_node(p, JN_CURRENT, NULL, NULL, out);
}

/* Every recursion of the parser passes through descend/ascend: a hostile
 * expression gets a RESOURCE error instead of exhausting the stack. */
static kerr_code descend(parser *p) {
  if (++p->depth > JMES_NEST_MAX)
    return jmes_fail(p->err, JMES_ERR_RESOURCE,
                     "Bad jmespath expression: nested deeper than %u levels", JMES_NEST_MAX);
  return KERR_OK;
}

static void ascend(parser *p) { p->depth--; }

static kerr_code parse_pipe(parser *p, jmes_node **out);
static kerr_code parse_operand(parser *p, reach r, jmes_node **out);
static kerr_code parse_projected(parser *p, reach r, jmes_node **out);

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

/* A comma-separated list of full expressions closed by `close`, the
 * opening token already taken: the items of a multiselect list, or a
 * function's arguments (which may be none).  Multiselect hashes have keys
 * and their own loop. */
static kerr_code parse_items(parser *p, jmes_node *n, tok_kind close, int may_be_empty) {
  size_t cap = 0;
  kerr_code rc = KERR_OK;
  if (may_be_empty && current(p)->kind == close) return need(p, close);
  for (;;) {
    jmes_node *item = NULL;
    rc = parse_pipe(p, &item);
    if (rc == KERR_OK) rc = add_item(p, n, item, &cap);
    if (rc != KERR_OK || current(p)->kind != TK_COMMA) break;
    take(p);
  }
  if (rc == KERR_OK) rc = need(p, close);
  return rc;
}

/* multi-select-list = "[" expression *( "," expression ) "]", '[' taken. */
static kerr_code parse_multi_list(parser *p, jmes_node **out) {
  kerr_code rc = make_node(p, JN_MULTI_LIST, NULL, NULL, out);
  if (rc == KERR_OK) rc = parse_items(p, *out, TK_RBRACKET, 0);
  if (rc == KERR_OK) rc = seal_height(p, *out);
  if (rc != KERR_OK) {
    node_free(*out);
    *out = NULL;
  }
  return rc;
}

/* multi-select-hash = "{" key ":" expression *( "," key ":" expression )
 * "}", '{' taken; a key is an identifier, quoted or not. */
static kerr_code parse_multi_hash(parser *p, jmes_node **out) {
  size_t cap = 0;
  kerr_code rc = make_node(p, JN_MULTI_HASH, NULL, NULL, out);
  while (rc == KERR_OK) {
    token *key = current(p);
    jmes_node *value = NULL;
    if (key->kind != TK_IDENT && key->kind != TK_QIDENT) {
      rc = unexpected(p, key, "a key (identifier)");
      break;
    }
    take(p);
    rc = need(p, TK_COLON);
    if (rc == KERR_OK) rc = parse_pipe(p, &value);
    if (rc == KERR_OK) rc = add_item(p, *out, value, &cap);
    if (rc != KERR_OK) break;
    (*out)->keys[(*out)->n_items - 1] = key->text;
    key->text = (jmes_str){0};
    if (current(p)->kind != TK_COMMA) break;
    take(p);
  }
  if (rc == KERR_OK) rc = need(p, TK_RBRACE);
  if (rc == KERR_OK) rc = seal_height(p, *out);
  if (rc != KERR_OK) {
    node_free(*out);
    *out = NULL;
  }
  return rc;
}

/* function-expression = name "(" [ expression *( "," expression ) ] ")",
 * with the name token taken and '(' current.  The function is looked up and
 * its argument count checked here, once per compile. */
static kerr_code parse_call(parser *p, const token *name, jmes_node **out) {
  jmes_node *n = NULL;
  kerr_code rc = make_node(p, JN_FUNCTION, NULL, NULL, &n);
  if (rc == KERR_OK) {
    take(p);
    rc = parse_items(p, n, TK_RPAREN, 1);
  }
  if (rc == KERR_OK) rc = seal_height(p, n);
  if (rc == KERR_OK) {
    n->func = jmes_function_find(name->text.s, name->text.len);
    if (!n->func) {
      rc = jmes_fail(p->err, JMES_ERR_UNKNOWN_FUNCTION, "jmespath: unknown function %.64s()",
                     name->text.s);
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
  if (rc != KERR_OK) {
    node_free(n);
    n = NULL;
  }
  *out = n;
  return rc;
}

/* The inside of a bracket suffix once '[' is taken and a number or ':' is
 * next: index = "[" number "]", slice = "[" [number] ":" [number]
 * [":" [number]] "]".  A step of 0 is refused here, at compile time, as the
 * specification asks (error kind invalid-value). */
static kerr_code parse_index_or_slice(parser *p, jmes_node **out) {
  jmes_node *n = NULL;
  kerr_code rc;
  if (current(p)->kind == TK_NUMBER && kind_at(p, 1) != TK_COLON) {
    rc = make_node(p, JN_INDEX, NULL, NULL, &n);
    if (rc == KERR_OK) n->index = take(p)->number;
  } else {
    unsigned part = 0;
    rc = make_node(p, JN_SLICE, NULL, NULL, &n);
    /* Up to three numbers, in the places the colons leave for them. */
    while (rc == KERR_OK && current(p)->kind != TK_RBRACKET) {
      token *t = current(p);
      if (t->kind == TK_COLON && part < 2) {
        part++;
      } else if (t->kind == TK_NUMBER && !n->slice_given[part]) {
        n->slice[part] = t->number;
        n->slice_given[part] = 1;
      } else {
        rc = unexpected(p, t, part < 2 ? "a number, ':' or ']'" : "a number or ']'");
        break;
      }
      take(p);
    }
    if (rc == KERR_OK && n->slice_given[2] && n->slice[2] == 0)
      rc = jmes_fail(p->err, JMES_ERR_INVALID_VALUE, "jmespath: slice step cannot be 0");
  }
  if (rc == KERR_OK) rc = need(p, TK_RBRACKET);
  if (rc != KERR_OK) {
    node_free(n);
    n = NULL;
  }
  *out = n;
  return rc;
}

/* Make `base` (taken) the left side of a projection of `kind` and parse the
 * projection's right side, which reaches as far as `r` says. */
static kerr_code project(parser *p, jmes_node_kind kind, jmes_node *base, reach r,
                         jmes_node **out) {
  jmes_node *rhs = NULL;
  kerr_code rc = parse_projected(p, r, &rhs);
  if (rc != KERR_OK) {
    node_free(base);
    *out = NULL;
    return rc;
  }
  return make_node(p, kind, base, rhs, out);
}

/* A bracket suffix of `base` (taken), '[' taken: base[n] is an index,
 * base[a:b] and base[*] project over the array. */
static kerr_code parse_bracket_suffix(parser *p, jmes_node *base, jmes_node **out) {
  jmes_node *inner = NULL;
  kerr_code rc;
  tok_kind k = current(p)->kind;
  *out = NULL;
  if (k == TK_STAR) {
    take(p);
    rc = need(p, TK_RBRACKET);
    if (rc != KERR_OK) {
      node_free(base);
      return rc;
    }
    return project(p, JN_PROJECT_LIST, base, REACH_PROJECTED, out);
  }
  if (k != TK_NUMBER && k != TK_COLON) {
    node_free(base);
    return unexpected(p, current(p), "a number, ':' or '*'");
  }
  rc = parse_index_or_slice(p, &inner);
  if (rc != KERR_OK) {
    node_free(base);
    return rc;
  }
  if (inner->kind == JN_INDEX) return make_node(p, JN_INDEX_EXPR, base, inner, out);
  rc = make_node(p, JN_INDEX_EXPR, base, inner, &base);
  if (rc != KERR_OK) return rc;
  return project(p, JN_PROJECT_LIST, base, REACH_PROJECTED, out);
}

/* base[?condition] rhs, '[?' taken: a projection over the elements of base
 * for which the condition holds. */
static kerr_code parse_filter(parser *p, jmes_node *base, jmes_node **out) {
  jmes_node *cond = NULL, *n = NULL;
  kerr_code rc = parse_pipe(p, &cond);
  if (rc == KERR_OK) rc = need(p, TK_RBRACKET);
  if (rc == KERR_OK) {
    rc = project(p, JN_PROJECT_FILTER, base, REACH_FILTERED, &n);
    base = NULL;
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
  node_free(base);
  node_free(cond);
  *out = n;
  return rc;
}

/* base[] rhs, '[]' taken: base flattened one level, then projected. */
static kerr_code parse_flatten(parser *p, jmes_node *base, jmes_node **out) {
  kerr_code rc = make_node(p, JN_FLATTEN, base, NULL, &base);
  if (rc != KERR_OK) {
    *out = NULL;
    return rc;
  }
  return project(p, JN_PROJECT_LIST, base, REACH_PROJECTED, out);
}

/* What may follow a '.', which is taken: a name (or a function call), '*'
 * (a projection over an object's values), a multiselect list or hash.
 * `r` is how far the name may be extended: REACH_TIGHT after a plain '.',
 * the projection's own reach at the start of its right side. */
static kerr_code parse_after_dot(parser *p, reach r, jmes_node **out) {
  jmes_node *at = NULL;
  kerr_code rc;
  *out = NULL;
  switch (current(p)->kind) {
    case TK_IDENT:
    case TK_QIDENT: return parse_operand(p, r, out);
    case TK_STAR:
      take(p);
      rc = at_current(p, &at);
      if (rc == KERR_OK) rc = project(p, JN_PROJECT_VALUES, at, REACH_PROJECTED, out);
      return rc;
    case TK_LBRACKET: take(p); return parse_multi_list(p, out);
    case TK_LBRACE: take(p); return parse_multi_hash(p, out);
    default: return unexpected(p, current(p), "an identifier, '*', '[' or '{' after '.'");
  }
}

/* The right side of a projection: what is applied to each element.  The
 * specification describes a projection as going on until something ends
 * it.  Here it starts only with '.', '[' or '[?' and is otherwise empty
 * (the element itself, '@'); once started, it takes the suffixes `r`
 * allows.  Whatever follows then belongs to the expression around the
 * projection: '|', '||', '&&' and the comparators take the projection's
 * result, and so does '[]', which flattens that result.  A '[' that opens
 * the right side starts an expression of its own over the element
 * (`a[*][0]`, `a[*][b, c]`, `a[*][*]`, `a[?x][?y]`); a '.[' or '.{' opens a
 * multiselect that nothing extends (`a[*].[b][0]` indexes the projection's
 * result). */
static kerr_code parse_projected(parser *p, reach r, jmes_node **out) {
  kerr_code rc = descend(p);
  *out = NULL;
  if (rc == KERR_OK) {
    switch (current(p)->kind) {
      case TK_DOT:
        take(p);
        rc = parse_after_dot(p, r, out);
        break;
      case TK_LBRACKET:
      case TK_FILTER: rc = parse_operand(p, r, out); break;
      default: rc = at_current(p, out); break;
    }
  }
  ascend(p);
  return rc;
}

/* The suffixes that extend `base` (taken) into *out, as far as `r` allows:
 * '.' after something, bracket suffixes, filters and flattens.  A loop, not
 * a recursion, so a long a.b.c... chain costs no stack; make_node still
 * refuses a tree taller than JMES_NEST_MAX. */
static kerr_code parse_suffixes(parser *p, jmes_node *base, reach r, jmes_node **out) {
  kerr_code rc = KERR_OK;
  while (rc == KERR_OK) {
    tok_kind k = current(p)->kind;
    if (k == TK_DOT && r < REACH_TIGHT && kind_at(p, 1) == TK_STAR) {
      /* base.* projects over base's values. */
      take(p);
      take(p);
      rc = project(p, JN_PROJECT_VALUES, base, REACH_TIGHT, &base);
    } else if (k == TK_DOT && r < REACH_TIGHT) {
      jmes_node *rhs = NULL;
      take(p);
      rc = parse_after_dot(p, REACH_TIGHT, &rhs);
      if (rc == KERR_OK) rc = make_node(p, JN_SUBEXPR, base, rhs, &base);
      else node_free(base);
    } else if (k == TK_LBRACKET) {
      take(p);
      rc = parse_bracket_suffix(p, base, &base);
    } else if (k == TK_FILTER && r < REACH_FILTERED) {
      take(p);
      rc = parse_filter(p, base, &base);
    } else if (k == TK_FLATTEN && r == REACH_ALL) {
      take(p);
      rc = parse_flatten(p, base, &base);
    } else {
      break;
    }
    /* Each step above has freed base if it failed. */
    if (rc != KERR_OK) base = NULL;
  }
  *out = base;
  return rc;
}

/* What an operand starts with (the specification's terminal forms and
 * everything written with a prefix), taken into *out. */
static kerr_code parse_primary(parser *p, jmes_node **out) {
  token *t = take(p);
  jmes_node *at = NULL, *inner = NULL;
  kerr_code rc;
  *out = NULL;
  switch (t->kind) {
    case TK_LITERAL:
      rc = make_node(p, JN_LITERAL, NULL, NULL, out);
      if (rc == KERR_OK) {
        (*out)->literal = t->literal;
        t->literal = NULL;
      }
      return rc;
    case TK_IDENT:
      /* Only an unquoted name followed at once by '(' calls a function. */
      if (current(p)->kind == TK_LPAREN) return parse_call(p, t, out);
      /* fall through */
    case TK_QIDENT:
      if (current(p)->kind == TK_LPAREN)
        return syntax_error_at(p, t->pos, "a quoted identifier cannot name a function");
      rc = make_node(p, JN_FIELD, NULL, NULL, out);
      if (rc == KERR_OK) {
        (*out)->name = t->text;
        t->text = (jmes_str){0};
      }
      return rc;
    case TK_CURRENT: return at_current(p, out);
    case TK_LBRACE: return parse_multi_hash(p, out);
    case TK_LPAREN:
      rc = parse_pipe(p, out);
      if (rc == KERR_OK) rc = need(p, TK_RPAREN);
      break;
    case TK_NOT:
      /* `!` applies to what follows it extended only by bracket suffixes:
       * `!a[0]` is !(a[0]) but `!a.b` is (!a).b. */
      rc = descend(p);
      if (rc == KERR_OK) rc = parse_operand(p, REACH_TIGHT, &inner);
      ascend(p);
      if (rc == KERR_OK) rc = make_node(p, JN_NOT, inner, NULL, out);
      return rc;
    case TK_EXPREF:
      /* `&` takes a whole expression: it ends only where a function
       * argument does, at ',' or ')'. */
      rc = parse_pipe(p, &inner);
      if (rc == KERR_OK) rc = make_node(p, JN_EXPREF, inner, NULL, out);
      return rc;
    case TK_STAR:
    case TK_FLATTEN:
    case TK_FILTER:
    case TK_LBRACKET:
      /* `*`, `[]`, `[?..]`, `[*]`, `[n]` and `[a:b]` with nothing before
       * them apply to the current node; a '[' followed by anything else
       * opens a multiselect list. */
      if (t->kind == TK_LBRACKET && current(p)->kind != TK_NUMBER && current(p)->kind != TK_COLON &&
          !(current(p)->kind == TK_STAR && kind_at(p, 1) == TK_RBRACKET))
        return parse_multi_list(p, out);
      rc = at_current(p, &at);
      if (rc != KERR_OK) return rc;
      if (t->kind == TK_STAR) return project(p, JN_PROJECT_VALUES, at, REACH_PROJECTED, out);
      if (t->kind == TK_FLATTEN) return parse_flatten(p, at, out);
      if (t->kind == TK_FILTER) return parse_filter(p, at, out);
      return parse_bracket_suffix(p, at, out);
    default: return unexpected(p, t, "an expression");
  }
  if (rc != KERR_OK) {
    node_free(*out);
    *out = NULL;
  }
  return rc;
}

/* A primary with the suffixes `r` allows. */
static kerr_code parse_operand(parser *p, reach r, jmes_node **out) {
  jmes_node *base = NULL;
  kerr_code rc = parse_primary(p, &base);
  if (rc != KERR_OK) {
    *out = NULL;
    return rc;
  }
  return parse_suffixes(p, base, r, out);
}

static int comparator(tok_kind k, jmes_cmp *cmp) {
  switch (k) {
    case TK_EQ: *cmp = JC_EQ; return 1;
    case TK_NE: *cmp = JC_NE; return 1;
    case TK_LT: *cmp = JC_LT; return 1;
    case TK_LE: *cmp = JC_LE; return 1;
    case TK_GT: *cmp = JC_GT; return 1;
    case TK_GE: *cmp = JC_GE; return 1;
    default: return 0;
  }
}

/* comparison = operand *( comparator operand ), left to right: `a == b == c`
 * compares the boolean a == b with c. */
static kerr_code parse_comparison(parser *p, jmes_node **out) {
  jmes_node *lhs = NULL, *rhs = NULL;
  jmes_cmp cmp;
  kerr_code rc = parse_operand(p, REACH_ALL, &lhs);
  while (rc == KERR_OK && comparator(current(p)->kind, &cmp)) {
    take(p);
    rc = parse_operand(p, REACH_ALL, &rhs);
    if (rc != KERR_OK) {
      node_free(lhs);
      lhs = NULL;
      break;
    }
    rc = make_node(p, JN_COMPARE, lhs, rhs, &lhs);
    if (rc == KERR_OK) lhs->cmp = cmp;
  }
  *out = lhs;
  return rc;
}

/* One binary level: operand *( op operand ), left-associative, where the
 * operands are parsed by `next`, the level that binds more tightly. */
static kerr_code parse_binary(parser *p, tok_kind op, jmes_node_kind kind,
                              kerr_code (*next)(parser *, jmes_node **), jmes_node **out) {
  jmes_node *lhs = NULL, *rhs = NULL;
  kerr_code rc = next(p, &lhs);
  while (rc == KERR_OK && current(p)->kind == op) {
    take(p);
    rc = next(p, &rhs);
    if (rc != KERR_OK) {
      node_free(lhs);
      lhs = NULL;
      break;
    }
    rc = make_node(p, kind, lhs, rhs, &lhs);
  }
  *out = lhs;
  return rc;
}

/* and-expression = comparison *( "&&" comparison ) */
static kerr_code parse_and(parser *p, jmes_node **out) {
  return parse_binary(p, TK_AND, JN_AND, parse_comparison, out);
}

/* or-expression = and-expression *( "||" and-expression ) */
static kerr_code parse_or(parser *p, jmes_node **out) {
  return parse_binary(p, TK_OR, JN_OR, parse_and, out);
}

/* expression = or-expression *( "|" or-expression ): the loosest level, and
 * the one every bracketed construct re-enters, so it counts the depth. */
static kerr_code parse_pipe(parser *p, jmes_node **out) {
  kerr_code rc = descend(p);
  if (rc == KERR_OK) rc = parse_binary(p, TK_PIPE, JN_PIPE, parse_or, out);
  else *out = NULL;
  ascend(p);
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
  if (rc == KERR_OK) rc = parse_pipe(&p, &root);
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
