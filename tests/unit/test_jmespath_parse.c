/* test_jmespath_parse.c - the JMESPath parser (lib/cli/jmespath_parse.c)
 * on its own: the tree each operator pair builds (so precedence is pinned
 * down exactly, not only through results), where projections stop, the
 * offset of every class of syntax error, the nesting caps of every
 * construct that nests, messages that stay valid UTF-8, and JSON literals
 * with numbers at and beyond the edges of their types. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/jmespath.h"
#include "cli/jmespath_internal.h"

/* ---- the tree as text ---------------------------------------------------
 * @ and names stand for themselves, literals are their compact JSON, and
 * every other node is (op children...): (. a b) a subexpression, (idx a [0])
 * an index expression, (proj l r) (vproj l r) (fproj l ?cond r) the three
 * projections, (flat a), (| a b), (|| a b), (&& a b), (! a), (== a b) and the
 * other comparators, (list ...), (hash k:v ...), (& a) and (name args...)
 * for a call. */

typedef struct buf {
  char s[4096];
  size_t n;
} buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(b->s + b->n, sizeof b->s - b->n, fmt, ap);
  va_end(ap);
  if (w < 0 || (size_t)w >= sizeof b->s - b->n) fail_msg("tree text too long");
  b->n += (size_t)w;
}

static void show(buf *b, const jmes_node *n);

static void show_children(buf *b, const char *op, const jmes_node *n) {
  put(b, "(%s", op);
  if (n->lhs) {
    put(b, " ");
    show(b, n->lhs);
  }
  if (n->cond) {
    put(b, " ?");
    show(b, n->cond);
  }
  if (n->rhs) {
    put(b, " ");
    show(b, n->rhs);
  }
  for (size_t i = 0; i < n->n_items; i++) {
    put(b, " ");
    if (n->keys) put(b, "%s:", n->keys[i].s);
    show(b, n->items[i]);
  }
  put(b, ")");
}

static void show(buf *b, const jmes_node *n) {
  static const char *const cmp[] = {"==", "!=", "<", "<=", ">", ">="};
  char *text;
  switch (n->kind) {
    case JN_CURRENT: put(b, "@"); return;
    case JN_FIELD: put(b, "%s", n->name.s); return;
    case JN_LITERAL:
      text = json_dumps(n->literal, JSON_ENCODE_ANY | JSON_COMPACT);
      put(b, "%s", text);
      free(text);
      return;
    case JN_INDEX: put(b, "[%lld]", n->index); return;
    case JN_SLICE:
      put(b, "[");
      for (int i = 0; i < 3; i++) {
        if (i) put(b, ":");
        if (n->slice_given[i]) put(b, "%lld", n->slice[i]);
      }
      put(b, "]");
      return;
    case JN_SUBEXPR: show_children(b, ".", n); return;
    case JN_INDEX_EXPR: show_children(b, "idx", n); return;
    case JN_PROJECT_LIST: show_children(b, "proj", n); return;
    case JN_PROJECT_VALUES: show_children(b, "vproj", n); return;
    case JN_PROJECT_FILTER: show_children(b, "fproj", n); return;
    case JN_FLATTEN: show_children(b, "flat", n); return;
    case JN_PIPE: show_children(b, "|", n); return;
    case JN_OR: show_children(b, "||", n); return;
    case JN_AND: show_children(b, "&&", n); return;
    case JN_NOT: show_children(b, "!", n); return;
    case JN_COMPARE: show_children(b, cmp[n->cmp], n); return;
    case JN_MULTI_LIST: show_children(b, "list", n); return;
    case JN_MULTI_HASH: show_children(b, "hash", n); return;
    case JN_FUNCTION: show_children(b, n->func->name, n); return;
    case JN_EXPREF: show_children(b, "&", n); return;
  }
  fail_msg("unknown node kind %d", (int)n->kind);
}

/* `expr` must compile to the tree `want`. */
static void tree(const char *expr, const char *want) {
  jmes_expr *e = NULL;
  jmes_error err;
  buf b = {.n = 0};
  if (jmes_compile(expr, &e, &err) != KERR_OK) fail_msg("%s: compile: %s", expr, err.status.msg);
  show(&b, e->root);
  jmes_free(e);
  if (strcmp(b.s, want) != 0) fail_msg("%s: tree %s, want %s", expr, b.s, want);
}

/* `expr` must fail to compile with `kind` at byte `offset` (checked for
 * syntax errors only: other kinds have no offset). */
static void refused(const char *expr, jmes_error_kind kind, size_t offset) {
  jmes_expr *e = NULL;
  jmes_error err;
  kerr_code rc = jmes_compile(expr, &e, &err);
  if (rc == KERR_OK) {
    jmes_free(e);
    fail_msg("%.60s: compiled, want %s", expr, jmes_error_kind_name(kind));
  }
  assert_null(e);
  if (err.kind != kind)
    fail_msg("%.60s: %s (%s), want %s", expr, jmes_error_kind_name(err.kind), err.status.msg,
             jmes_error_kind_name(kind));
  if (kind == JMES_ERR_SYNTAX && err.offset != offset)
    fail_msg("%.60s: offset %zu (%s), want %zu", expr, err.offset, err.status.msg, offset);
  assert_int_equal(rc, err.status.code);
}

/* Search `expr` in the JSON `data` and compare the compact result. */
static void result(const char *expr, const char *data, const char *want) {
  jmes_expr *e = NULL;
  jmes_error err;
  json_t *doc = json_loads(data, JSON_DECODE_ANY, NULL), *got = NULL;
  char *text;
  assert_non_null(doc);
  if (jmes_compile(expr, &e, &err) != KERR_OK) fail_msg("%s: compile: %s", expr, err.status.msg);
  if (jmes_search(e, doc, &got, &err) != KERR_OK) fail_msg("%s: search: %s", expr, err.status.msg);
  text = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);
  if (strcmp(text, want) != 0) fail_msg("%s: got %s, want %s", expr, text, want);
  free(text);
  json_decref(got);
  json_decref(doc);
  jmes_free(e);
}

/* ---- precedence ---------------------------------------------------------- */

/* The binary operators, weakest first: | then || then && then the
 * comparators; each is left-associative, and each pair is checked in both
 * orders. */
static void test_binary_operator_pairs(void **state) {
  (void)state;
  tree("a | b | c", "(| (| a b) c)");
  tree("a || b || c", "(|| (|| a b) c)");
  tree("a && b && c", "(&& (&& a b) c)");
  tree("a == b == c", "(== (== a b) c)");
  tree("a < b >= c", "(>= (< a b) c)");
  tree("a | b || c", "(| a (|| b c))");
  tree("a || b | c", "(| (|| a b) c)");
  tree("a | b && c", "(| a (&& b c))");
  tree("a && b | c", "(| (&& a b) c)");
  tree("a | b == c", "(| a (== b c))");
  tree("a != b | c", "(| (!= a b) c)");
  tree("a || b && c", "(|| a (&& b c))");
  tree("a && b || c", "(|| (&& a b) c)");
  tree("a || b <= c", "(|| a (<= b c))");
  tree("a > b || c", "(|| (> a b) c)");
  tree("a && b == c", "(&& a (== b c))");
  tree("a == b && c", "(&& (== a b) c)");
  tree("(a || b) && c", "(&& (|| a b) c)");
  tree("a && (b || c)", "(&& a (|| b c))");
  tree("(a | b).c", "(. (| a b) c)");
  tree("a || b || c && d | e == f", "(| (|| (|| a b) (&& c d)) (== e f))");
}

/* The prefix operators: ! takes its operand with bracket suffixes only, &
 * takes a whole expression. */
static void test_prefix_operators(void **state) {
  (void)state;
  tree("!a", "(! a)");
  tree("!!a", "(! (! a))");
  tree("!a == b", "(== (! a) b)");
  tree("a == !b", "(== a (! b))");
  tree("!a && b", "(&& (! a) b)");
  tree("!a || b", "(|| (! a) b)");
  tree("!a | b", "(| (! a) b)");
  tree("!a.b", "(. (! a) b)");
  tree("!a[0]", "(! (idx a [0]))");
  tree("!a[*].b", "(! (proj a b))");
  tree("!a[]", "(proj (flat (! a)) @)");
  tree("!a[?b]", "(fproj (! a) ?b @)");
  tree("!(a.b)", "(! (. a b))");
  tree("!length(a)", "(! (length a))");
  tree("sort_by(a, &b.c | d)", "(sort_by a (& (| (. b c) d)))");
  tree("sort_by(a, &b || c)", "(sort_by a (& (|| b c)))");
  tree("map(&!a, b)", "(map (& (! a)) b)");
}

/* The suffixes: '.', '[n]', '[a:b]', '[*]', '[]', '[?]' and '.*'. */
static void test_suffixes(void **state) {
  (void)state;
  tree("a.b.c", "(. (. a b) c)");
  tree("a.b[0]", "(. a (idx b [0]))");
  tree("a[0].b", "(. (idx a [0]) b)");
  tree("a[0][1]", "(idx (idx a [0]) [1])");
  tree("a[1:2]", "(proj (idx a [1:2:]) @)");
  tree("a[::-1]", "(proj (idx a [::-1]) @)");
  tree("a[:]", "(proj (idx a [::]) @)");
  tree("a.\"b c\"", "(. a b c)");
  tree("a.[b, c]", "(. a (list b c))");
  tree("a.{k: b, \"q\": c}", "(. a (hash k:b q:c))");
  tree("a.abs(b)", "(. a (abs b))");
  tree("[0]", "(idx @ [0])");
  tree("[a, b][0]", "(idx (list a b) [0])");
  tree("@", "@");
  tree("@.a", "(. @ a)");
  tree("`{\"a\": [1, true]}`", "{\"a\":[1,true]}");
  tree("'raw'", "\"raw\"");
  tree("length(@)", "(length @)");
  tree("not_null(a, b)", "(not_null a b)");
}

/* Projections: the right side goes on through '.', '[' and '[?' and stops
 * at '[]' (which flattens the whole projection), '|', '||', '&&', the
 * comparators and whatever closes the enclosing construct; a filter's right
 * side also stops at a second filter, and that of 'x.*' at anything but a
 * bracket suffix. */
static void test_projections_and_where_they_stop(void **state) {
  (void)state;
  tree("a[*]", "(proj a @)");
  tree("a[*].b", "(proj a b)");
  tree("a[*].b.c", "(proj a (. b c))");
  tree("a[*].b[0]", "(proj a (idx b [0]))");
  tree("a[*][0]", "(proj a (idx @ [0]))");
  tree("a[*][*]", "(proj a (proj @ @))");
  tree("a[*][a, b]", "(proj a (list a b))");
  tree("a[*].[a, b][0]", "(idx (proj a (list a b)) [0])");
  tree("a[*].b[?c]", "(proj a (fproj b ?c @))");
  tree("a[*][?c].d", "(proj a (fproj @ ?c d))");
  tree("a[*].b[]", "(proj (flat (proj a b)) @)");
  tree("a[*].b[].c", "(proj (flat (proj a b)) c)");
  tree("a[*].b | c", "(| (proj a b) c)");
  tree("a[*].b || c", "(|| (proj a b) c)");
  tree("a[*].b && c", "(&& (proj a b) c)");
  tree("a[*].b == c", "(== (proj a b) c)");
  tree("[a[*].b, c]", "(list (proj a b) c)");
  tree("*", "(vproj @ @)");
  tree("*.b.c", "(vproj @ (. b c))");
  tree("a.*", "(vproj a @)");
  tree("a.*.b.c", "(. (vproj a b) c)");
  tree("a.*.b[0]", "(vproj a (idx b [0]))");
  tree("a.*.b[?c]", "(fproj (vproj a b) ?c @)");
  tree("*.b[?c]", "(vproj @ (fproj b ?c @))");
  tree("a.*.*", "(vproj a (vproj @ @))");
  tree("a.*[0]", "(vproj a (idx @ [0]))");
  tree("a[]", "(proj (flat a) @)");
  tree("a[].b", "(proj (flat a) b)");
  tree("a[][]", "(proj (flat (proj (flat a) @)) @)");
  tree("[]", "(proj (flat @) @)");
  tree("a[1:].b", "(proj (idx a [1::]) b)");
  tree("a[0][:2].b", "(proj (idx (idx a [0]) [:2:]) b)");
  tree("a[?b]", "(fproj a ?b @)");
  tree("a[?b].c.d", "(fproj a ?b (. c d))");
  tree("a[?b][?c]", "(fproj a ?b (fproj @ ?c @))");
  tree("a[?b].c[?d]", "(fproj (fproj a ?b c) ?d @)");
  tree("a[?b].c.d[0]", "(fproj a ?b (. c (idx d [0])))");
  tree("a[?b][]", "(proj (flat (fproj a ?b @)) @)");
  tree("a[?b == `1`].c", "(fproj a ?(== b 1) c)");
  tree("[?a]", "(fproj @ ?a @)");
  tree("a.b[*].c.d", "(. a (proj b (. c d)))");
  /* And what that means for results. */
  const char *doc = "{\"a\": [{\"b\": {\"c\": 1}}, {\"b\": {\"c\": 2}}, {\"x\": 3}],"
                    " \"m\": {\"x\": {\"c\": [1, 2]}, \"y\": {\"c\": [3]}}}";
  result("a[*].b.c", doc, "[1,2]");
  result("a[*].b.c | [0]", doc, "1");
  result("m.*.c", doc, "[[1,2],[3]]");
  result("m.*.c[]", doc, "[1,2,3]");
  result("m.*.c.d", doc, "null"); /* (m.*.c).d: a field of an array */
  result("m.*.c[0]", doc, "[1,3]");
  result("a[?b].b.c", doc, "[1,2]");
  result("a[?b.c == `2`] | [0].b", doc, "{\"c\":2}");
}

/* ---- syntax errors --------------------------------------------------------- */

static void test_syntax_error_offsets(void **state) {
  (void)state;
  /* lexer: characters and unterminated or malformed tokens */
  refused("a $", JMES_ERR_SYNTAX, 2);
  refused("a = b", JMES_ERR_SYNTAX, 2);
  refused("a.\"b", JMES_ERR_SYNTAX, 2);
  refused("a.'b", JMES_ERR_SYNTAX, 2);
  refused("a.`b", JMES_ERR_SYNTAX, 2);
  refused("\"\\q\"", JMES_ERR_SYNTAX, 1);
  refused("`{\"a\": }`", JMES_ERR_SYNTAX, 0);
  refused("`\"a` ", JMES_ERR_SYNTAX, 0);
  refused("a.\xff", JMES_ERR_SYNTAX, 0); /* not UTF-8: refused before lexing */
  /* an expression is missing */
  refused("", JMES_ERR_SYNTAX, 0);
  refused("a.", JMES_ERR_SYNTAX, 2);
  refused("a |", JMES_ERR_SYNTAX, 3);
  refused("a || ", JMES_ERR_SYNTAX, 5);
  refused("a && )", JMES_ERR_SYNTAX, 5);
  refused("a == ", JMES_ERR_SYNTAX, 5);
  refused("!", JMES_ERR_SYNTAX, 1);
  refused("&", JMES_ERR_SYNTAX, 1);
  refused("(", JMES_ERR_SYNTAX, 1);
  refused("[?]", JMES_ERR_SYNTAX, 2);
  refused(",", JMES_ERR_SYNTAX, 0);
  refused("]", JMES_ERR_SYNTAX, 0);
  /* an unexpected token after a complete expression */
  refused("a b", JMES_ERR_SYNTAX, 2);
  refused("a )", JMES_ERR_SYNTAX, 2);
  refused("a{", JMES_ERR_SYNTAX, 1);
  refused("a*", JMES_ERR_SYNTAX, 1);
  refused("a!", JMES_ERR_SYNTAX, 1);
  refused("a[*] b", JMES_ERR_SYNTAX, 5);
  refused("a[*]{", JMES_ERR_SYNTAX, 4);
  refused("a[*](", JMES_ERR_SYNTAX, 4);
  /* after '.' */
  refused("a..b", JMES_ERR_SYNTAX, 2);
  refused("a.@", JMES_ERR_SYNTAX, 2);
  refused("a.`1`", JMES_ERR_SYNTAX, 2);
  refused("a.(b)", JMES_ERR_SYNTAX, 2);
  refused("a[*].!b", JMES_ERR_SYNTAX, 5);
  /* inside brackets */
  refused("a[b]", JMES_ERR_SYNTAX, 2);
  refused("a[*", JMES_ERR_SYNTAX, 3);
  refused("a[0", JMES_ERR_SYNTAX, 3);
  refused("a[1:2:3:4]", JMES_ERR_SYNTAX, 7);
  refused("a[1 2]", JMES_ERR_SYNTAX, 4);
  refused("a[::0-1]", JMES_ERR_SYNTAX, 5);
  refused("a[**]", JMES_ERR_SYNTAX, 3);
  refused("a[?b", JMES_ERR_SYNTAX, 4);
  refused("[a", JMES_ERR_SYNTAX, 2);
  refused("[a,]", JMES_ERR_SYNTAX, 3);
  refused("[a b]", JMES_ERR_SYNTAX, 3);
  /* multiselect hashes */
  refused("{", JMES_ERR_SYNTAX, 1);
  refused("{}", JMES_ERR_SYNTAX, 1);
  refused("{a}", JMES_ERR_SYNTAX, 2);
  refused("{a:", JMES_ERR_SYNTAX, 3);
  refused("{a: b,}", JMES_ERR_SYNTAX, 6);
  refused("{`1`: b}", JMES_ERR_SYNTAX, 1);
  refused("{a: b c: d}", JMES_ERR_SYNTAX, 6);
  /* function calls */
  refused("abs(", JMES_ERR_SYNTAX, 4);
  refused("abs(a", JMES_ERR_SYNTAX, 5);
  refused("abs(a,)", JMES_ERR_SYNTAX, 6);
  refused("\"abs\"(a)", JMES_ERR_SYNTAX, 0);
  refused("(abs)(a)", JMES_ERR_SYNTAX, 5);
  refused("a[0](b)", JMES_ERR_SYNTAX, 4);
  refused("@(a)", JMES_ERR_SYNTAX, 1);
  refused("abs(a)(b)", JMES_ERR_SYNTAX, 6);
  /* the other compile-time kinds */
  refused("nope(a)", JMES_ERR_UNKNOWN_FUNCTION, 0);
  refused("abs(a, b)", JMES_ERR_INVALID_ARITY, 0);
  refused("abs()", JMES_ERR_INVALID_ARITY, 0);
  refused("not_null()", JMES_ERR_INVALID_ARITY, 0);
  refused("a[::0]", JMES_ERR_INVALID_VALUE, 0);
  refused("[1:2:0].a", JMES_ERR_INVALID_VALUE, 0);
}

/* A message quotes at most 40 bytes of the offending token and never cuts a
 * character in two: the message must stay valid UTF-8 (jansson's
 * json_string checks that) to be put into a JSON error body. */
static void test_message_excerpt_is_utf8(void **state) {
  (void)state;
  for (size_t lead = 0; lead < 4; lead++) {
    char expr[200];
    size_t n = 0;
    jmes_expr *e = NULL;
    jmes_error err;
    json_t *s;
    expr[n++] = 'a';
    expr[n++] = ' ';
    expr[n++] = '"';
    for (size_t i = 0; i < lead; i++) expr[n++] = 'x';
    for (int i = 0; i < 30; i++) {
      expr[n++] = (char)0xc3; /* e acute */
      expr[n++] = (char)0xa9;
    }
    expr[n++] = '"';
    expr[n] = '\0';
    assert_int_equal(jmes_compile(expr, &e, &err), KERR_VALIDATION);
    assert_int_equal(err.kind, JMES_ERR_SYNTAX);
    assert_int_equal(err.offset, 2);
    s = json_string(err.status.msg);
    if (!s) fail_msg("message is not UTF-8: %s", err.status.msg);
    json_decref(s);
    /* Unterminated, the same text must give a valid message too. */
    expr[n - 1] = '\0';
    assert_int_equal(jmes_compile(expr, &e, &err), KERR_VALIDATION);
    s = json_string(err.status.msg);
    if (!s) fail_msg("message is not UTF-8: %s", err.status.msg);
    json_decref(s);
  }
}

/* ---- nesting caps ----------------------------------------------------------- */

/* `open` repeated `times` times, then `middle`, then `close` as often. */
static char *nest(const char *open, const char *middle, const char *close, size_t times) {
  size_t lo = strlen(open), lm = strlen(middle), lc = strlen(close);
  char *s = malloc(times * (lo + lc) + lm + 1), *w = s;
  assert_non_null(s);
  for (size_t i = 0; i < times; i++, w += lo) memcpy(w, open, lo);
  memcpy(w, middle, lm);
  w += lm;
  for (size_t i = 0; i < times; i++, w += lc) memcpy(w, close, lc);
  *w = '\0';
  return s;
}

/* Each construct that nests compiles a little below the cap and is refused
 * (RESOURCE) far beyond it, where an unbounded recursion would overflow
 * the stack. */
static void test_nesting_caps(void **state) {
  static const struct {
    const char *open, *middle, *close;
  } constructs[] = {
      {"(", "a", ")"},       {"!", "a", ""},         {"a.", "a", ""},
      {"[", "a", "]"},       {"{a:", "a", "}"},      {"abs(", "a", ")"},
      {"a[?", "a", "]"},     {"a | ", "a", ""},      {"& ", "a", ""},
      {"", "a", "[*]"},      {"*.", "a", ""},        {"", "a", "[]"},
      {"", "a", "[0]"},      {"[?", "a", "]"},       {"a || ", "a", ""},
      {"a == ", "a", ""},    {"", "a", "[1:]"},      {"[*]", "", ""},
      {"", "a", ".*"},       {"", "a", "[?b]"},      {"sort_by(a, &", "a", ")"},
      {"a[*].", "a", ""},    {"a.[", "a", "]"},      {"!(", "a", ")"},
  };
  (void)state;
  for (size_t i = 0; i < sizeof constructs / sizeof *constructs; i++) {
    /* Far beyond the cap, yet within JMES_EXPR_MAX, so that it is the
     * nesting that is refused and not the length. */
    size_t unit = strlen(constructs[i].open) + strlen(constructs[i].close);
    size_t depths[] = {20, (JMES_EXPR_MAX - 64) / unit};
    for (size_t d = 0; d < 2; d++) {
      char *expr = nest(constructs[i].open, constructs[i].middle, constructs[i].close, depths[d]);
      jmes_expr *e = NULL;
      jmes_error err;
      kerr_code rc = jmes_compile(expr, &e, &err);
      if (d == 0 && rc != KERR_OK) fail_msg("%.40s x20: %s", constructs[i].open, err.status.msg);
      if (d == 1) {
        if (rc == KERR_OK) fail_msg("%.40s x%zu compiled", constructs[i].open, depths[d]);
        if (err.kind != JMES_ERR_RESOURCE)
          fail_msg("%.40s%.40s: %s", constructs[i].open, constructs[i].close, err.status.msg);
      }
      jmes_free(e);
      free(expr);
    }
  }
  /* Exactly at the cap: the deepest accepted and the first refused. */
  char *ok = nest("!", "a", "", JMES_NEST_MAX - 2), *deep = nest("!", "a", "", JMES_NEST_MAX);
  jmes_expr *e = NULL;
  assert_int_equal(jmes_compile(ok, &e, NULL), KERR_OK);
  jmes_free(e);
  refused(deep, JMES_ERR_RESOURCE, 0);
  free(ok);
  free(deep);
}

/* ---- literals ------------------------------------------------------------------ */

/* The literal `lit` must hold `want` (compact JSON: an integer prints
 * without a fraction, a real with one, so exactness is checked too). */
static void literal(const char *lit, const char *want) {
  jmes_expr *e = NULL;
  jmes_error err;
  char *text;
  if (jmes_compile(lit, &e, &err) != KERR_OK) fail_msg("%s: %s", lit, err.status.msg);
  assert_int_equal(e->root->kind, JN_LITERAL);
  text = json_dumps(e->root->literal, JSON_ENCODE_ANY | JSON_COMPACT);
  if (strcmp(text, want) != 0) fail_msg("%s: %s, want %s", lit, text, want);
  free(text);
  jmes_free(e);
}

static void test_json_literal_numbers(void **state) {
  (void)state;
  /* Integers that fit stay integers, also beside ones that do not. */
  literal("`9223372036854775807`", "9223372036854775807");
  literal("`-9223372036854775808`", "-9223372036854775808");
  literal("`9223372036854775808`", "9.2233720368547758e18");
  literal("`-9223372036854775809`", "-9.2233720368547758e18");
  literal("`[1, 99999999999999999999]`", "[1,1e20]");
  literal("`{\"a\": 99999999999999999999, \"b\": 2, \"c\": -3}`", "{\"a\":1e20,\"b\":2,\"c\":-3}");
  literal("`[\"99999999999999999999\", 99999999999999999999, 7]`",
          "[\"99999999999999999999\",1e20,7]");
  literal("`[\"\\\"\", 99999999999999999999, 1.5e3]`", "[\"\\\"\",1e20,1500.0]");
  /* A number beyond double is not JSON any program could write back: an
   * error, not the old form's string of its digits. */
  refused("`1e400`", JMES_ERR_SYNTAX, 0);
  refused("a == `-1e400`", JMES_ERR_SYNTAX, 5);
  refused("`[1, 1e400]`", JMES_ERR_SYNTAX, 0);
  /* The old form still reads text that is not JSON as a string. */
  literal("`foo`", "\"foo\"");
  literal("` 1e400x`", "\"1e400x\"");
  literal("`1.5`", "1.5");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_binary_operator_pairs),
      cmocka_unit_test(test_prefix_operators),
      cmocka_unit_test(test_suffixes),
      cmocka_unit_test(test_projections_and_where_they_stop),
      cmocka_unit_test(test_syntax_error_offsets),
      cmocka_unit_test(test_message_excerpt_is_utf8),
      cmocka_unit_test(test_nesting_caps),
      cmocka_unit_test(test_json_literal_numbers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
