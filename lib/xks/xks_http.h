/* xks_http.h - a strict, incremental reader of one HTTP/1.1 reply, for the
 * XKS client (xks_client.c).
 *
 * Why it exists: the client lets libcurl make each connection to an XKS
 * proxy (name lookup, connect-to, TCP, the TLS handshake and its checks) but
 * does the HTTP/1.1 exchange on a kept connection itself, since libcurl's
 * per-transfer work cost more CPU than the TLS and the kernel together.
 * This reader is the part of that exchange that touches the proxy's bytes.
 * It is pure (bytes in, state out: no I/O, no allocation, no clock), so that
 * it can be fuzzed (tests/fuzz/fuzz_xks_http.c) and tested byte by byte.
 *
 * What it accepts (RFC 9112, strictly, as a client that sent one POST):
 *   - a status line "HTTP/1.1 DDD reason" or "HTTP/1.0 DDD reason" (the
 *     reason may be empty or absent), DDD of 100..999; anything else is BAD
 *     as soon as the first bytes cannot start one;
 *   - header fields "name: value": a token name, the colon right after it,
 *     no control bytes in the value; an obs-fold (a line starting with a
 *     space or tab), a bare CR or a line without a colon is BAD.  Lines end
 *     in CRLF or a bare LF (which libcurl took too);
 *   - at most XKS_HTTP_HEAD_MAX bytes of status lines and header fields in
 *     all, interim (1xx) replies included;
 *   - interim replies (1xx but 101) are skipped; 101 (Switching Protocols)
 *     answers nothing this client asks and is BAD;
 *   - the body framed by Content-Length (digits only; the field repeated
 *     with another value is BAD), or by Transfer-Encoding: chunked (exactly
 *     that coding; chunk extensions and trailer fields are taken and
 *     ignored; a chunk-size line of at most XKS_HTTP_CHUNK_LINE_MAX bytes,
 *     trailers of at most XKS_HTTP_HEAD_MAX); both at once is BAD; neither:
 *     the body runs until the peer closes the connection; 204 and 304 have
 *     no body;
 *   - a body of at most the buffer's size: a larger one, or one announced
 *     larger, is TOO_LARGE.
 * The connection may carry another request after the reply only when the
 * reply was delimited (length, chunks or no body), did not say
 * "Connection: close", and is HTTP/1.1 or said "Connection: keep-alive"
 * (HTTP/1.0) - the choices libcurl made.
 *
 * Error texts are static and never quote the reply: a reply body may hold a
 * plaintext. */
#ifndef KMSD_XKS_XKS_HTTP_H
#define KMSD_XKS_XKS_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define XKS_HTTP_HEAD_MAX 16384      /* status lines and header fields of one reply */
#define XKS_HTTP_CHUNK_LINE_MAX 1024 /* one chunk-size line, extensions included */

typedef enum xks_http_rc {
  XKS_HTTP_MORE = 0,   /* everything given was taken; the reply goes on */
  XKS_HTTP_DONE,       /* the reply is whole (*used says where it ended) */
  XKS_HTTP_EMPTY,      /* xks_http_end only: the peer closed before a whole status line */
  XKS_HTTP_BAD,        /* not a reply this reader accepts, or cut short: see `error` */
  XKS_HTTP_TOO_LARGE,  /* the body is, or is announced, larger than the body buffer */
} xks_http_rc;

/* One reply being read.  Fields above `private` may be read at any time;
 * the rest is the reader's. */
typedef struct xks_http_reader {
  int status;            /* the last whole status line's code (an interim one too); 0 before */
  int keep_alive;        /* once DONE: the connection may carry another request */
  size_t body_len;       /* body bytes in the buffer so far */
  const char *error;     /* once BAD or TOO_LARGE: what was wrong (static text) */

  /* private */
  uint8_t *body;         /* borrowed: where the body goes */
  size_t body_cap;
  int state;
  xks_http_rc final;     /* DONE, BAD or TOO_LARGE once reached */
  int minor;             /* HTTP/1.<minor> of the current reply */
  int conn_close, conn_keep_alive, chunked, has_length, length_over;
  uint64_t length;       /* Content-Length, when not over the buffer's size */
  uint64_t left;         /* body or chunk bytes still to come */
  size_t head_used, trailer_used, line_len;
  char line[XKS_HTTP_HEAD_MAX];
  /* After `line`, so that xks_http_reader_init keeps it: how much of line
   * was written since xks_http_reader_wipe (a faulty reply can leave body
   * bytes there, e.g. chunk data past its announced size). */
  size_t line_high;
} xks_http_reader;

/* Start reading a reply whose body goes to body[0..body_cap).  The reader
 * borrows `body` until the reply is read; it writes nothing else there. */
void xks_http_reader_init(xks_http_reader *r, uint8_t *body, size_t body_cap);

/* Wipe what replies left in the reader's own line buffer (the body buffer
 * is the caller's to wipe).  Call it after each call and before freeing a
 * reader; a reader from calloc needs no wipe before its first use. */
void xks_http_reader_wipe(xks_http_reader *r);

/* Take `len` bytes received from the connection (len may be 0).  *used is
 * how many were taken: all of them for MORE; up to the end of the reply for
 * DONE (bytes after it are not part of the reply: the connection must not
 * be used again); meaningless for BAD and TOO_LARGE.  Once DONE, BAD or
 * TOO_LARGE, later calls return the same and take nothing. */
xks_http_rc xks_http_read(xks_http_reader *r, const uint8_t *data, size_t len, size_t *used);

/* The peer closed the connection: DONE when that ends the reply (a body
 * delimited by the close, or a reply already whole), EMPTY when not even a
 * whole status line had come, BAD when the reply was cut short (`error`),
 * or what the reader had already come to. */
xks_http_rc xks_http_end(xks_http_reader *r);

#endif
