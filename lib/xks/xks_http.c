/* xks_http.c - the strict incremental HTTP/1.1 reply reader (xks_http.h).
 *
 * Lines (status lines, header fields, chunk-size lines, the CRLF after a
 * chunk's data, trailers) are gathered into r->line, whatever way the bytes
 * arrive, and judged whole; body bytes go straight to the caller's buffer
 * and never into r->line.  Every way out of a state is one of a few
 * functions below, so that a reply is either taken whole or refused with a
 * static reason. */
#include "xks/xks_http.h"

#include <string.h>

#include "core/secmem.h"

enum {
  S_STATUS = 0, /* reading a status line */
  S_HEADER,     /* reading header fields */
  S_BODY_LENGTH,
  S_BODY_CLOSE, /* body until the peer closes */
  S_CHUNK_SIZE,
  S_CHUNK_DATA,
  S_CHUNK_END,  /* the CRLF after a chunk's data */
  S_TRAILER,
  S_FINAL,      /* r->final says how it ended */
};

static const char STATUS_PREFIX[] = "HTTP/1.";

void xks_http_reader_init(xks_http_reader *r, uint8_t *body, size_t body_cap) {
  /* The line buffer is not cleared: only r->line[0..line_len) is ever read. */
  memset(r, 0, offsetof(xks_http_reader, line));
  r->body = body;
  r->body_cap = body_cap;
  r->state = S_STATUS;
}

void xks_http_reader_wipe(xks_http_reader *r) {
  secure_wipe(r->line, r->line_high < sizeof r->line ? r->line_high : sizeof r->line);
  r->line_high = 0;
}

static xks_http_rc finish(xks_http_reader *r, xks_http_rc rc, const char *error) {
  r->state = S_FINAL;
  r->final = rc;
  if (error) r->error = error;
  return rc;
}

static int is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A byte a field value, reason phrase or chunk extension may hold: visible
 * ASCII, space, tab, or obs-text (0x80..0xFF). */
static int is_text(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

static int all_text(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!is_text((unsigned char)s[i])) return 0;
  return 1;
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

static int same_word(const char *s, size_t n, const char *word) {
  size_t i;
  for (i = 0; i < n; i++)
    if (!word[i] || lower((unsigned char)s[i]) != word[i]) return 0;
  return word[i] == '\0';
}

static int ows(char c) { return c == ' ' || c == '\t'; }

/* "HTTP/1.x DDD[ reason]": the prefix was checked as it arrived. */
static xks_http_rc status_line(xks_http_reader *r, const char *l, size_t n) {
  if (n < 12 || l[8] != ' ' || l[9] < '1' || l[9] > '9' || l[10] < '0' || l[10] > '9' ||
      l[11] < '0' || l[11] > '9' || (n > 12 && l[12] != ' ') ||
      (n > 13 && !all_text(l + 13, n - 13)))
    return finish(r, XKS_HTTP_BAD, "not an HTTP/1.x status line");
  r->minor = l[7] - '0';
  r->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
  r->conn_close = r->conn_keep_alive = r->chunked = r->has_length = r->length_over = 0;
  r->length = 0;
  r->state = S_HEADER;
  return XKS_HTTP_MORE;
}

/* "name: value" with a token name; value_out/value_len get the value
 * without its surrounding spaces.  0 when well formed. */
static int field_line(const char *l, size_t n, size_t *name_len, const char **value,
                      size_t *value_len) {
  size_t i = 0, end;
  while (i < n && is_tchar((unsigned char)l[i])) i++;
  if (i == 0 || i == n || l[i] != ':') return -1;
  *name_len = i++;
  if (!all_text(l + i, n - i)) return -1;
  while (i < n && ows(l[i])) i++;
  end = n;
  while (end > i && ows(l[end - 1])) end--;
  *value = l + i;
  *value_len = end - i;
  return 0;
}

/* Content-Length: 1*DIGIT.  *over: larger than `cap` (*out is then 0),
 * which is TOO_LARGE whatever the exact value. */
static int length_value(const char *v, size_t n, uint64_t cap, uint64_t *out, int *over) {
  uint64_t x = 0;
  *over = 0;
  if (n == 0) return -1;
  for (size_t i = 0; i < n; i++) {
    if (v[i] < '0' || v[i] > '9') return -1;
    if (*over) continue;
    if (x > (UINT64_MAX - 9) / 10) {
      *over = 1;
      continue;
    }
    x = x * 10 + (uint64_t)(v[i] - '0');
    if (x > cap) *over = 1; /* too large whatever the digits that follow */
  }
  *out = *over ? 0 : x;
  return 0;
}

/* Connection: a comma-separated list of tokens; close and keep-alive
 * matter. */
static void connection_value(xks_http_reader *r, const char *v, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t start, end;
    while (i < n && (ows(v[i]) || v[i] == ',')) i++;
    start = i;
    while (i < n && v[i] != ',') i++;
    end = i;
    while (end > start && ows(v[end - 1])) end--;
    if (same_word(v + start, end - start, "close")) r->conn_close = 1;
    if (same_word(v + start, end - start, "keep-alive")) r->conn_keep_alive = 1;
  }
}

/* The blank line after the header fields: how the body is framed. */
static xks_http_rc end_of_head(xks_http_reader *r) {
  if (r->status >= 100 && r->status <= 199) {
    if (r->status == 101)
      return finish(r, XKS_HTTP_BAD, "101 Switching Protocols answers nothing this client asks");
    r->state = S_STATUS; /* an interim reply: the real one follows */
    return XKS_HTTP_MORE;
  }
  r->keep_alive = !r->conn_close && (r->minor == 1 || r->conn_keep_alive);
  if (r->status == 204 || r->status == 304) return finish(r, XKS_HTTP_DONE, NULL);
  if (r->chunked && r->has_length)
    return finish(r, XKS_HTTP_BAD, "both Content-Length and Transfer-Encoding");
  if (r->chunked) {
    r->state = S_CHUNK_SIZE;
    return XKS_HTTP_MORE;
  }
  if (r->has_length) {
    if (r->length_over) return finish(r, XKS_HTTP_TOO_LARGE, "the body is too large");
    if (r->length == 0) return finish(r, XKS_HTTP_DONE, NULL);
    r->left = r->length;
    r->state = S_BODY_LENGTH;
    return XKS_HTTP_MORE;
  }
  r->keep_alive = 0; /* the close ends the body */
  r->state = S_BODY_CLOSE;
  return XKS_HTTP_MORE;
}

static xks_http_rc header_line(xks_http_reader *r, const char *l, size_t n) {
  size_t name_len, value_len;
  const char *value;
  if (n == 0) return end_of_head(r);
  if (ows(l[0])) return finish(r, XKS_HTTP_BAD, "a folded header field (obs-fold)");
  if (field_line(l, n, &name_len, &value, &value_len))
    return finish(r, XKS_HTTP_BAD, "a malformed header field");
  if (same_word(l, name_len, "content-length")) {
    uint64_t v;
    int over;
    if (length_value(value, value_len, r->body_cap, &v, &over))
      return finish(r, XKS_HTTP_BAD, "a Content-Length that is not a number");
    /* Two values over the cap are not compared: either is too large. */
    if (r->has_length && (v != r->length || over != r->length_over))
      return finish(r, XKS_HTTP_BAD, "two different Content-Length values");
    r->has_length = 1;
    r->length = v;
    r->length_over = over;
  } else if (same_word(l, name_len, "transfer-encoding")) {
    if (r->chunked || !same_word(value, value_len, "chunked"))
      return finish(r, XKS_HTTP_BAD, "a transfer coding other than chunked");
    r->chunked = 1;
  } else if (same_word(l, name_len, "connection")) {
    connection_value(r, value, value_len);
  }
  return XKS_HTTP_MORE;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = (char)lower((unsigned char)c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* 1*HEXDIG [ BWS ";" chunk-ext ] */
static xks_http_rc chunk_size_line(xks_http_reader *r, const char *l, size_t n) {
  uint64_t size = 0, room = r->body_cap - r->body_len;
  size_t i = 0;
  int d, over = 0;
  while (i < n && (d = hex_value(l[i])) >= 0) {
    if (!over && size > (UINT64_MAX - 15) / 16) over = 1;
    if (!over) size = size * 16 + (uint64_t)d;
    if (size > room) over = 1; /* too large whatever the digits that follow */
    i++;
  }
  if (i == 0) return finish(r, XKS_HTTP_BAD, "a malformed chunk size");
  while (i < n && ows(l[i])) i++;
  if (i < n && (l[i] != ';' || !all_text(l + i, n - i)))
    return finish(r, XKS_HTTP_BAD, "a malformed chunk size");
  if (over) return finish(r, XKS_HTTP_TOO_LARGE, "the body is too large");
  if (size == 0) {
    r->state = S_TRAILER;
    return XKS_HTTP_MORE;
  }
  r->left = size;
  r->state = S_CHUNK_DATA;
  return XKS_HTTP_MORE;
}

static xks_http_rc trailer_line(xks_http_reader *r, const char *l, size_t n) {
  size_t name_len, value_len;
  const char *value;
  if (n == 0) return finish(r, XKS_HTTP_DONE, NULL);
  if (ows(l[0])) return finish(r, XKS_HTTP_BAD, "a folded trailer field (obs-fold)");
  if (field_line(l, n, &name_len, &value, &value_len))
    return finish(r, XKS_HTTP_BAD, "a malformed trailer field");
  return XKS_HTTP_MORE;
}

/* A whole line (without its LF) is in r->line. */
static xks_http_rc line_done(xks_http_reader *r) {
  size_t n = r->line_len;
  const char *l = r->line;
  r->line_len = 0;
  if (n > 0 && l[n - 1] == '\r') n--;
  if (memchr(l, '\r', n)) return finish(r, XKS_HTTP_BAD, "a bare CR");
  switch (r->state) {
  case S_STATUS:
    return status_line(r, l, n);
  case S_HEADER:
    return header_line(r, l, n);
  case S_CHUNK_SIZE:
    return chunk_size_line(r, l, n);
  case S_CHUNK_END:
    if (n != 0) return finish(r, XKS_HTTP_BAD, "chunk data not followed by CRLF");
    r->state = S_CHUNK_SIZE;
    return XKS_HTTP_MORE;
  default: /* S_TRAILER */
    return trailer_line(r, l, n);
  }
}

/* Take line bytes from data[0..len): up to and including the next LF. */
static xks_http_rc take_line(xks_http_reader *r, const uint8_t *data, size_t len, size_t *pos) {
  const uint8_t *start = data + *pos;
  const uint8_t *lf = memchr(start, '\n', len - *pos);
  size_t n = lf ? (size_t)(lf - start) : len - *pos;
  size_t with_lf = n + (lf ? 1 : 0);

  switch (r->state) {
  case S_STATUS:
    /* Refused as soon as the bytes cannot begin a status line, as libcurl
     * did: a peer that speaks something else gets no benefit of the doubt
     * (nor, on a kept connection, a second try). */
    for (size_t i = 0; i < n && r->line_len + i < 8; i++) {
      size_t at = r->line_len + i;
      unsigned char c = start[i];
      if (at < 7 ? c != (unsigned char)STATUS_PREFIX[at] : (c != '0' && c != '1'))
        return finish(r, XKS_HTTP_BAD, "not an HTTP/1.x reply");
    }
    if (lf && r->line_len + n < 8) return finish(r, XKS_HTTP_BAD, "not an HTTP/1.x reply");
    /* fall through */
  case S_HEADER:
    if (with_lf > XKS_HTTP_HEAD_MAX - r->head_used)
      return finish(r, XKS_HTTP_BAD, "header fields larger than 16384 bytes");
    r->head_used += with_lf;
    break;
  case S_TRAILER:
    if (with_lf > XKS_HTTP_HEAD_MAX - r->trailer_used)
      return finish(r, XKS_HTTP_BAD, "trailer fields larger than 16384 bytes");
    r->trailer_used += with_lf;
    break;
  default: /* chunk-size line, CRLF after a chunk */
    if (with_lf > XKS_HTTP_CHUNK_LINE_MAX - r->line_len)
      return finish(r, XKS_HTTP_BAD, "a chunk-size line longer than 1024 bytes");
    break;
  }
  /* The caps above keep every line within r->line. */
  memcpy(r->line + r->line_len, start, n);
  r->line_len += n;
  if (r->line_len > r->line_high) r->line_high = r->line_len;
  *pos += with_lf;
  return lf ? line_done(r) : XKS_HTTP_MORE;
}

static void take_body(xks_http_reader *r, const uint8_t *data, size_t n) {
  memcpy(r->body + r->body_len, data, n);
  r->body_len += n;
}

xks_http_rc xks_http_read(xks_http_reader *r, const uint8_t *data, size_t len, size_t *used) {
  size_t pos = 0;
  xks_http_rc rc = XKS_HTTP_MORE;

  while (rc == XKS_HTTP_MORE && pos < len) {
    size_t n;
    switch (r->state) {
    case S_BODY_LENGTH:
    case S_CHUNK_DATA:
      n = len - pos < r->left ? len - pos : (size_t)r->left;
      take_body(r, data + pos, n);
      pos += n;
      r->left -= n;
      if (r->left == 0) {
        if (r->state == S_BODY_LENGTH)
          rc = finish(r, XKS_HTTP_DONE, NULL);
        else
          r->state = S_CHUNK_END;
      }
      break;
    case S_BODY_CLOSE:
      /* What fits is taken either way, so that the outcome does not
       * depend on how the bytes arrived. */
      n = len - pos;
      if (n > r->body_cap - r->body_len) {
        take_body(r, data + pos, r->body_cap - r->body_len);
        rc = finish(r, XKS_HTTP_TOO_LARGE, "the body is too large");
        break;
      }
      take_body(r, data + pos, n);
      pos += n;
      break;
    case S_FINAL:
      rc = r->final;
      break;
    default:
      rc = take_line(r, data, len, &pos);
      break;
    }
  }
  if (rc == XKS_HTTP_MORE && r->state == S_FINAL) rc = r->final; /* called again after the end */
  *used = pos;
  return rc;
}

xks_http_rc xks_http_end(xks_http_reader *r) {
  switch (r->state) {
  case S_FINAL:
    return r->final;
  case S_BODY_CLOSE:
    r->keep_alive = 0;
    return finish(r, XKS_HTTP_DONE, NULL);
  case S_STATUS:
    /* After an interim reply the real one did not come: cut short. */
    if (r->status == 0) return XKS_HTTP_EMPTY;
    return finish(r, XKS_HTTP_BAD, "the reply ended in its header");
  case S_HEADER:
    return finish(r, XKS_HTTP_BAD, "the reply ended in its header");
  case S_BODY_LENGTH:
    return finish(r, XKS_HTTP_BAD, "the reply ended before its Content-Length");
  default:
    return finish(r, XKS_HTTP_BAD, "the reply ended inside its chunked body");
  }
}
