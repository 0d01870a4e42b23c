/* test_xks_http.c - the XKS client's HTTP/1.1 reply reader (lib/xks/xks_http.h):
 * Content-Length and chunked bodies (extensions, trailers), interim 1xx
 * replies, what keeps a connection or lets it go, every malformed shape it
 * refuses, its caps, replies cut short - and that none of it depends on how
 * the bytes arrive: every case is fed whole, byte by byte and in pieces of
 * several sizes, and must come to the same. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xks/xks_http.h"

#define CAP 65536

/* What reading a reply came to. */
typedef struct result {
  xks_http_rc rc;
  int status;
  int keep_alive;
  size_t consumed;   /* input bytes taken up to the end (or the refusal) */
  size_t body_len;
  uint8_t body[CAP + 16];
  const char *error;
} result;

static uint8_t body_buf[CAP + 16];
static xks_http_reader reader;

/* Feed in[0..len) in pieces of `piece` bytes (0: whole), then report the
 * peer's close when `eof`. */
static void feed(const char *in, size_t len, size_t piece, int eof, size_t cap, result *out) {
  size_t pos = 0;
  xks_http_rc rc = XKS_HTTP_MORE;
  memset(body_buf, 0xAA, sizeof body_buf);
  xks_http_reader_init(&reader, body_buf, cap);
  assert_int_equal(reader.status, 0);
  while (pos < len) {
    size_t n = piece && piece < len - pos ? piece : len - pos, used = 0;
    rc = xks_http_read(&reader, (const uint8_t *)in + pos, n, &used);
    if (rc == XKS_HTTP_MORE) assert_int_equal(used, n);
    if (rc == XKS_HTTP_DONE) assert_true(used <= n);
    pos += rc == XKS_HTTP_MORE || rc == XKS_HTTP_DONE ? used : 0;
    if (rc != XKS_HTTP_MORE) break;
  }
  if (rc == XKS_HTTP_MORE && len == 0) {
    size_t used = 1;
    rc = xks_http_read(&reader, (const uint8_t *)"", 0, &used);
    assert_int_equal(used, 0);
  }
  if (rc == XKS_HTTP_MORE && eof) rc = xks_http_end(&reader);
  out->rc = rc;
  out->status = reader.status;
  out->keep_alive = reader.keep_alive;
  out->consumed = rc == XKS_HTTP_DONE || rc == XKS_HTTP_MORE ? pos : 0;
  out->body_len = reader.body_len;
  assert_true(reader.body_len <= cap);
  memcpy(out->body, body_buf, reader.body_len);
  /* Nothing is written past the body. */
  for (size_t i = reader.body_len; i < sizeof body_buf; i++)
    if (body_buf[i] != 0xAA) fail_msg("byte %zu past the body was written", i);
  out->error = reader.error;
  if (rc == XKS_HTTP_BAD || rc == XKS_HTTP_TOO_LARGE) {
    assert_non_null(reader.error);
    assert_true(reader.error[0] != '\0');
  }
  /* Once it has come to something, it stays there. */
  if (rc != XKS_HTTP_MORE && rc != XKS_HTTP_EMPTY) {
    size_t used = 99;
    assert_int_equal(xks_http_read(&reader, (const uint8_t *)"x", 1, &used), rc);
    assert_int_equal(xks_http_end(&reader), rc);
  }
}

static const size_t PIECES[] = {0, 1, 2, 3, 7, 64};

/* Every way of feeding `in` comes to the same; returns the whole-input one. */
static result *read_all(const char *in, size_t len, int eof, size_t cap) {
  static result first, other;
  feed(in, len, 0, eof, cap, &first);
  for (size_t i = 1; i < sizeof PIECES / sizeof PIECES[0]; i++) {
    feed(in, len, PIECES[i], eof, cap, &other);
    if (other.rc != first.rc || other.status != first.status ||
        other.keep_alive != first.keep_alive || other.body_len != first.body_len ||
        memcmp(other.body, first.body, first.body_len) != 0 ||
        (first.rc == XKS_HTTP_DONE && other.consumed != first.consumed))
      fail_msg("pieces of %zu: rc %d status %d body %zu, whole: rc %d status %d body %zu",
               PIECES[i], other.rc, other.status, other.body_len, first.rc, first.status,
               first.body_len);
  }
  return &first;
}

static void expect_done(const char *in, int eof, int status, const char *body, int keep) {
  result *r = read_all(in, strlen(in), eof, CAP);
  if (r->rc != XKS_HTTP_DONE) fail_msg("rc %d (%s) for: %s", r->rc, r->error ? r->error : "", in);
  assert_int_equal(r->status, status);
  assert_int_equal(r->body_len, strlen(body));
  assert_memory_equal(r->body, body, strlen(body));
  assert_int_equal(r->keep_alive, keep);
}

static void expect_rc(const char *in, size_t len, int eof, xks_http_rc rc, const char *word) {
  result *r = read_all(in, len, eof, CAP);
  if (r->rc != rc) fail_msg("rc %d, not %d (%s) for: %.*s", r->rc, rc, r->error ? r->error : "", (int)len, in);
  if (word && (!r->error || !strstr(r->error, word)))
    fail_msg("error \"%s\" lacks \"%s\"", r->error ? r->error : "", word);
}

/* expect_rc on a C string. */
static void expect_rc_s(const char *in, int eof, xks_http_rc rc, const char *word) {
  expect_rc(in, strlen(in), eof, rc, word);
}

static void expect_bad(const char *in, const char *word) {
  expect_rc(in, strlen(in), 1, XKS_HTTP_BAD, word);
}

#define BODY "{\"a\":1}"

/* ---- framing ------------------------------------------------------------- */

static void test_content_length(void **state) {
  (void)state;
  expect_done("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n" BODY, 0, 200, BODY, 1);
  expect_done("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n"
              "Server: x\r\n\r\n" BODY,
              0, 200, BODY, 1);
  expect_done("HTTP/1.1 200 OK\r\ncontent-length:7\r\n\r\n" BODY, 0, 200, BODY, 1);
  expect_done("HTTP/1.1 200 OK\r\nContent-Length: \t7 \r\n\r\n" BODY, 0, 200, BODY, 1);
  expect_done("HTTP/1.1 200 OK\r\nContent-Length: 007\r\n\r\n" BODY, 0, 200, BODY, 1);
  expect_done("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, 200, "", 1);
  /* The same value twice is one value. */
  expect_done("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n" BODY, 0, 200,
              BODY, 1);
  /* No reason phrase, an empty one, bare LF line ends. */
  expect_done("HTTP/1.1 200\r\nContent-Length: 7\r\n\r\n" BODY, 0, 200, BODY, 1);
  expect_done("HTTP/1.1 200 \r\nContent-Length: 7\r\n\r\n" BODY, 0, 200, BODY, 1);
  expect_done("HTTP/1.1 200 OK\nContent-Length: 7\n\n" BODY, 0, 200, BODY, 1);
  /* Other statuses carry their bodies the same way. */
  expect_done("HTTP/1.1 404 Not Found\r\nContent-Length: 7\r\n\r\n" BODY, 0, 404, BODY, 1);
  /* Bytes after the reply are not part of it. */
  {
    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n" BODY "HTTP/1.1 200";
    result *r = read_all(in, sizeof in - 1, 0, CAP);
    assert_int_equal(r->rc, XKS_HTTP_DONE);
    assert_int_equal(r->consumed, sizeof in - 1 - strlen("HTTP/1.1 200"));
  }
  /* Not yet whole: more is wanted, and the close cuts it short. */
  expect_rc_s("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" BODY, 0, XKS_HTTP_MORE, NULL);
  expect_bad("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" BODY, "Content-Length");
}

static void test_chunked(void **state) {
  (void)state;
  expect_done("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
              0, 200, BODY, 1);
  /* One chunk, uppercase hex, leading zeros, case of the coding. */
  expect_done("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n0007\r\n" BODY "\r\n0\r\n\r\n",
              0, 200, BODY, 1);
  {
    static char big[CAP + 256];
    char *p = big;
    p += sprintf(p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n");
    memset(p, 'x', 4096);
    p += 4096;
    p += sprintf(p, "\r\n0\r\n\r\n");
    result *r = read_all(big, (size_t)(p - big), 0, CAP);
    assert_int_equal(r->rc, XKS_HTTP_DONE);
    assert_int_equal(r->body_len, 4096);
  }
  /* Extensions and trailers are taken and ignored. */
  expect_done("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              "7;name=value;other=\"quoted;\"\r\n" BODY "\r\n0 ;last\r\nX-Trailer: 1\r\n"
              "X-Other: two\r\n\r\n",
              0, 200, BODY, 1);
  expect_done("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n7\n" BODY "\n0\n\n", 0, 200, BODY, 1);
  /* An empty chunked body. */
  expect_done("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, 200, "", 1);
  /* Bytes after the last chunk are not part of the reply. */
  {
    static const char in[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n" BODY
                             "\r\n0\r\n\r\njunk";
    result *r = read_all(in, sizeof in - 1, 0, CAP);
    assert_int_equal(r->rc, XKS_HTTP_DONE);
    assert_int_equal(r->consumed, sizeof in - 1 - 4);
  }
  /* Malformed. */
  expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" BODY "\r\n0\r\n\r\n",
             "chunk size");
  expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", "chunk size");
  expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7 junk\r\n" BODY "\r\n0\r\n\r\n",
             "chunk size");
  expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-7\r\n" BODY "\r\n0\r\n\r\n",
             "chunk size");
  expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n" BODY "XX0\r\n\r\n",
             "CRLF");
  expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n" BODY "\r\n0\r\n x\r\n\r\n",
             "obs-fold");
  expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n" BODY "\r\n0\r\nno colon\r\n\r\n",
             "trailer");
  {
    static char in[2048];
    int n = snprintf(in, sizeof in, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7;");
    memset(in + n, 'e', 1100);
    memcpy(in + n + 1100, "\r\n", 3);
    expect_bad(in, "1024");
  }
  /* Cut short: inside a chunk, before the last chunk, in the trailers. */
  expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{\"a", "chunked");
  expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n" BODY "\r\n", "chunked");
  expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n" BODY "\r\n0\r\nX: 1\r\n",
             "chunked");
}

static void test_transfer_coding_rules(void **state) {
  (void)state;
  expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n" BODY, "transfer coding");
  expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n7\r\n" BODY "\r\n0\r\n\r\n",
             "transfer coding");
  expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
             "7\r\n" BODY "\r\n0\r\n\r\n",
             "transfer coding");
  /* Both framings, in either order. */
  expect_bad("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n" BODY
             "\r\n0\r\n\r\n",
             "both");
  expect_bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n7\r\n" BODY
             "\r\n0\r\n\r\n",
             "both");
  /* Content-Length: digits only, one value. */
  static const char *const bad_lengths[] = {"abc", "-1", "7abc", "+7", "", "7 7", "7, 7", "0x7", "7.0"};
  for (size_t i = 0; i < sizeof bad_lengths / sizeof bad_lengths[0]; i++) {
    char in[128];
    snprintf(in, sizeof in, "HTTP/1.1 200 OK\r\nContent-Length: %s\r\n\r\n" BODY, bad_lengths[i]);
    expect_bad(in, "Content-Length");
  }
  expect_bad("HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n" BODY, "different");
}

static void test_no_length(void **state) {
  (void)state;
  /* Neither framing: the body runs to the close, and the connection ends. */
  expect_done("HTTP/1.1 200 OK\r\n\r\n" BODY, 1, 200, BODY, 0);
  expect_done("HTTP/1.1 200 OK\r\n\r\n", 1, 200, "", 0);
  expect_rc_s("HTTP/1.1 200 OK\r\n\r\n" BODY, 0, XKS_HTTP_MORE, NULL);
  /* 204 and 304 have no body, whatever they announce. */
  expect_done("HTTP/1.1 204 No Content\r\n\r\n", 0, 204, "", 1);
  expect_done("HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", 0, 304, "", 1);
}

static void test_interim_replies(void **state) {
  (void)state;
  expect_done("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n" BODY, 0,
              200, BODY, 1);
  expect_done("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
              "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n" BODY,
              0, 200, BODY, 1);
  /* An interim reply's fields do not carry over. */
  expect_done("HTTP/1.1 100 Continue\r\nConnection: close\r\nContent-Length: 3\r\n\r\n"
              "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n" BODY,
              0, 200, BODY, 1);
  /* 101: nothing this client asks is answered with it. */
  expect_bad("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "101");
  /* The real reply never came. */
  result *r = read_all("HTTP/1.1 100 Continue\r\n\r\n", strlen("HTTP/1.1 100 Continue\r\n\r\n"), 1, CAP);
  assert_int_equal(r->rc, XKS_HTTP_BAD);
  assert_int_equal(r->status, 100);
}

static void test_connection_reuse(void **state) {
  (void)state;
  expect_done("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 7\r\n\r\n" BODY, 0, 200,
              BODY, 0);
  expect_done("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 7\r\n\r\n" BODY,
              0, 200, BODY, 0);
  expect_done("HTTP/1.1 200 OK\r\nConnection: Upgrade\r\nConnection: close\r\nContent-Length: 7\r\n\r\n" BODY,
              0, 200, BODY, 0);
  expect_done("HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 7\r\n\r\n" BODY, 0, 200,
              BODY, 1);
  expect_done("HTTP/1.1 200 OK\r\nX-Connection: close\r\nContent-Length: 7\r\n\r\n" BODY, 0, 200,
              BODY, 1);
  /* HTTP/1.0: closed unless it says keep-alive. */
  expect_done("HTTP/1.0 200 OK\r\nContent-Length: 7\r\n\r\n" BODY, 0, 200, BODY, 0);
  expect_done("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 7\r\n\r\n" BODY, 0,
              200, BODY, 1);
  expect_done("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n" BODY, 1, 200, BODY, 0);
  expect_done("HTTP/1.0 200 OK\r\n\r\n" BODY, 1, 200, BODY, 0);
}

/* ---- what is not HTTP ----------------------------------------------------- */

static void test_not_http(void **state) {
  (void)state;
  /* Refused on the first bytes that cannot start a status line, before
   * any line end. */
  static const char *const early[] = {"hello", "HTTP/2 200", "HTTP/1.2 200 OK", "http/1.1 200 OK",
                                      " HTTP/1.1 200 OK", "\r\nHTTP/1.1 200 OK", "HTTP/1,1",
                                      "HTTP/0.9", "HTTP/1.1\r\n"};
  for (size_t i = 0; i < sizeof early / sizeof early[0]; i++)
    expect_rc_s(early[i], 0, XKS_HTTP_BAD, "HTTP/1.x");
  static const char *const lines[] = {
      "HTTP/1.1 20\r\n",       "HTTP/1.1 2000 OK\r\n", "HTTP/1.1 099 OK\r\n",  "HTTP/1.1 2x0 OK\r\n",
      "HTTP/1.1  200 OK\r\n",  "HTTP/1.1 200OK\r\n",   "HTTP/1.1\t200 OK\r\n", "HTTP/1.1 200 O\001K\r\n",
      "HTTP/1.1 200 O\x7fK\r\n", "HTTP/1.1 -200 OK\r\n"};
  for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
    expect_rc_s(lines[i], 0, XKS_HTTP_BAD, "status line");
  /* A reason phrase of obs-text is taken. */
  expect_done("HTTP/1.1 200 \xc3\xa9t\xc3\xa9\r\nContent-Length: 7\r\n\r\n" BODY, 0, 200, BODY, 1);
}

static void test_malformed_fields(void **state) {
  (void)state;
  expect_bad("HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 7\r\n\r\n" BODY, "obs-fold");
  expect_bad("HTTP/1.1 200 OK\r\nX-A: a\r\n\tb\r\nContent-Length: 7\r\n\r\n" BODY, "obs-fold");
  expect_bad("HTTP/1.1 200 OK\r\nNoColon\r\nContent-Length: 7\r\n\r\n" BODY, "malformed");
  expect_bad("HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 7\r\n\r\n" BODY, "malformed");
  expect_bad("HTTP/1.1 200 OK\r\n: b\r\nContent-Length: 7\r\n\r\n" BODY, "malformed");
  expect_bad("HTTP/1.1 200 OK\r\nX(A): b\r\nContent-Length: 7\r\n\r\n" BODY, "malformed");
  expect_bad("HTTP/1.1 200 OK\r\nX-A: a\001b\r\nContent-Length: 7\r\n\r\n" BODY, "malformed");
  expect_bad("HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 7\r\n\r\n" BODY, "bare CR");
  expect_bad("HTTP/1.1 200 OK\r\nX-A: ab\r\r\nContent-Length: 7\r\n\r\n" BODY, "bare CR");
  {
    static const char in[] = "HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 7\r\n\r\n" BODY;
    expect_rc(in, sizeof in - 1, 1, XKS_HTTP_BAD, "malformed");
  }
  /* Values may hold obs-text, tabs, commas and colons; empty values are fine. */
  expect_done("HTTP/1.1 200 OK\r\nX-A: \xc3\xa9\tb, c:d\r\nX-Empty:\r\nContent-Length: 7\r\n\r\n" BODY,
              0, 200, BODY, 1);
}

/* ---- caps ----------------------------------------------------------------- */

static void test_caps(void **state) {
  (void)state;
  static char in[CAP + 4096];
  int n;
  result *r;

  /* A body of exactly the buffer's size is taken; one byte more is not,
   * nor is a larger announcement, before any of its body comes. */
  n = snprintf(in, sizeof in, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", CAP);
  memset(in + n, 'b', CAP);
  r = read_all(in, (size_t)n + CAP, 0, CAP);
  assert_int_equal(r->rc, XKS_HTTP_DONE);
  assert_int_equal(r->body_len, CAP);
  n = snprintf(in, sizeof in, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", CAP + 1);
  expect_rc(in, (size_t)n, 0, XKS_HTTP_TOO_LARGE, NULL);
  n = snprintf(in, sizeof in, "HTTP/1.1 200 OK\r\nContent-Length: 123456789012345678901234567890\r\n\r\n");
  expect_rc(in, (size_t)n, 0, XKS_HTTP_TOO_LARGE, NULL);
  /* Two values over the cap are not told apart: too large either way. */
  n = snprintf(in, sizeof in,
               "HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\nContent-Length: 88888888\r\n\r\n");
  expect_rc(in, (size_t)n, 0, XKS_HTTP_TOO_LARGE, NULL);
  /* Chunks adding up to more, one chunk announcing more, a huge size. */
  n = snprintf(in, sizeof in, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8000\r\n");
  memset(in + n, 'c', 0x8000);
  n += 0x8000;
  n += snprintf(in + n, sizeof in - (size_t)n, "\r\n8000\r\n");
  memset(in + n, 'c', 0x8000);
  n += 0x8000;
  n += snprintf(in + n, sizeof in - (size_t)n, "\r\n1\r\nc\r\n0\r\n\r\n");
  expect_rc(in, (size_t)n, 0, XKS_HTTP_TOO_LARGE, NULL);
  expect_rc_s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10001\r\n", 0,
              XKS_HTTP_TOO_LARGE, NULL);
  expect_rc_s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffffffff\r\n", 0,
              XKS_HTTP_TOO_LARGE, NULL);
  /* A body running to the close. */
  n = snprintf(in, sizeof in, "HTTP/1.1 200 OK\r\n\r\n");
  memset(in + n, 'd', CAP + 1);
  expect_rc(in, (size_t)n + CAP + 1, 1, XKS_HTTP_TOO_LARGE, NULL);
  r = read_all(in, (size_t)n + CAP, 1, CAP);
  assert_int_equal(r->rc, XKS_HTTP_DONE);
  /* A small buffer. */
  r = read_all("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n" BODY,
               strlen("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n" BODY), 0, 6);
  assert_int_equal(r->rc, XKS_HTTP_TOO_LARGE);

  /* Status lines and header fields: 16384 bytes in all, interim replies
   * included. */
  static const char head[] = "HTTP/1.1 200 OK\r\nX-Pad: ";
  static const char tail[] = "\r\nContent-Length: 7\r\n\r\n";
  size_t pad = XKS_HTTP_HEAD_MAX - (sizeof head - 1) - (sizeof tail - 1);
  memcpy(in, head, sizeof head - 1);
  memset(in + sizeof head - 1, 'p', pad);
  memcpy(in + sizeof head - 1 + pad, tail, sizeof tail - 1);
  memcpy(in + XKS_HTTP_HEAD_MAX, BODY, 7);
  r = read_all(in, XKS_HTTP_HEAD_MAX + 7, 0, CAP);
  assert_int_equal(r->rc, XKS_HTTP_DONE);
  memcpy(in, head, sizeof head - 1);
  memset(in + sizeof head - 1, 'p', pad + 1);
  memcpy(in + sizeof head - 1 + pad + 1, tail, sizeof tail - 1);
  memcpy(in + XKS_HTTP_HEAD_MAX + 1, BODY, 7);
  expect_rc(in, XKS_HTTP_HEAD_MAX + 8, 0, XKS_HTTP_BAD, "16384");
  /* A header line that never ends is refused at the cap, not read for ever. */
  n = snprintf(in, sizeof in, "HTTP/1.1 200 OK\r\nX-Pad: ");
  memset(in + n, 'q', XKS_HTTP_HEAD_MAX);
  expect_rc(in, (size_t)n + XKS_HTTP_HEAD_MAX, 0, XKS_HTTP_BAD, "16384");
  n = 0;
  for (int i = 0; i < 1200; i++) n += snprintf(in + n, sizeof in - (size_t)n, "HTTP/1.1 100 Continue\r\n\r\n");
  expect_rc(in, (size_t)n, 0, XKS_HTTP_BAD, "16384");
  /* Trailers: 16384 bytes. */
  n = snprintf(in, sizeof in, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
  for (int i = 0; i < 800; i++) n += snprintf(in + n, sizeof in - (size_t)n, "X-Trailer-%04d: vvvv\r\n", i);
  n += snprintf(in + n, sizeof in - (size_t)n, "\r\n");
  expect_rc(in, (size_t)n, 0, XKS_HTTP_BAD, "16384");
}

/* ---- the peer's close ------------------------------------------------------ */

static int holds(const char *buf, size_t len, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; i + n <= len; i++)
    if (memcmp(buf + i, needle, n) == 0) return 1;
  return 0;
}

/* Chunk data past its announced size lands in the reader's line buffer
 * before it is refused; xks_http_reader_wipe clears it (a Decrypt reply's
 * plaintext must not stay there), and the reader reads on after it. */
static void test_wipe(void **state) {
  (void)state;
  static const char in[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "2\r\nabSECRET-PLAINTEXT";
  result r;
  feed(in, sizeof in - 1, 0, 1, CAP, &r);
  assert_int_equal(r.rc, XKS_HTTP_BAD);
  assert_true(holds(reader.line, sizeof reader.line, "SECRET"));
  assert_true(reader.line_high > 0);
  xks_http_reader_wipe(&reader);
  assert_false(holds(reader.line, sizeof reader.line, "SECRET"));
  assert_int_equal(reader.line_high, 0);
  feed("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 41, 0, 0, CAP, &r);
  assert_int_equal(r.rc, XKS_HTTP_DONE);
}

static void test_closed(void **state) {
  (void)state;
  result *r;
  /* Nothing, or not even a whole status line: an empty reply. */
  expect_rc_s("", 1, XKS_HTTP_EMPTY, NULL);
  expect_rc_s("HTTP/1.1 20", 1, XKS_HTTP_EMPTY, NULL);
  expect_rc_s("HTTP/1.1 200 OK\r", 1, XKS_HTTP_EMPTY, NULL);
  /* A status line and then nothing: a reply cut short, with its status. */
  r = read_all("HTTP/1.1 200 OK\r\n", strlen("HTTP/1.1 200 OK\r\n"), 1, CAP);
  assert_int_equal(r->rc, XKS_HTTP_BAD);
  assert_int_equal(r->status, 200);
  expect_bad("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n", "header");
  expect_bad("HTTP/1.1 200 OK\r\nContent-Le", "header");
  /* A whole reply is whole whatever follows. */
  expect_done("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n" BODY, 1, 200, BODY, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_content_length),   cmocka_unit_test(test_chunked),
      cmocka_unit_test(test_transfer_coding_rules), cmocka_unit_test(test_no_length),
      cmocka_unit_test(test_interim_replies),  cmocka_unit_test(test_connection_reuse),
      cmocka_unit_test(test_not_http),         cmocka_unit_test(test_malformed_fields),
      cmocka_unit_test(test_caps),             cmocka_unit_test(test_closed),
      cmocka_unit_test(test_wipe),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
