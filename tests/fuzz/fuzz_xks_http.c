/* fuzz_xks_http.c - libFuzzer target for the XKS client's HTTP/1.1 reply
 * reader (xks/xks_http.h): the code that reads what an external key store
 * proxy sends back on a kept connection, before any XKS parser sees it.
 *
 * Input: one byte picking the body buffer's size (0, 1, 7, 64, 1000 or the
 * client's 65536) and whether the peer closes after the bytes, one byte
 * seeding where the bytes are cut, then the reply bytes.  The reply is read
 * three ways - whole, in pieces cut at points from the seed, and one byte
 * at a time - and the three must agree.  Invariants:
 *   - the rc, the status, keep_alive, the body (length and bytes) and, for
 *     a whole reply, where it ended are the same however the bytes arrive;
 *   - the body is never longer than the buffer, and nothing is written past
 *     it (a canary follows the buffer);
 *   - MORE takes every byte given; DONE never more than given;
 *   - a refusal (BAD, TOO_LARGE) always has a reason, and later calls give
 *     the same answer and take nothing;
 *   - a whole reply starts "HTTP/1.0 " or "HTTP/1.1 " (a status line was
 *     read), has a final status of 200..999, and no body for 204 and 304;
 *   - EMPTY only when no whole status line came;
 *   - a reply whose body ran to the close is never one to keep the
 *     connection for. */
#include <string.h>

#include "fuzz_common.h"
#include "xks/xks_http.h"

#define CAP_MAX 65536
#define CANARY 64

static const size_t CAPS[] = {0, 1, 7, 64, 1000, CAP_MAX};

typedef struct outcome {
  xks_http_rc rc;
  int status, keep_alive;
  size_t consumed, body_len;
} outcome;

static xks_http_reader reader;
static uint8_t bufs[3][CAP_MAX + CANARY];

/* Read data[0..len) into buf in pieces: cut where `seed` says (seed 0:
 * whole; 1: byte by byte; other: pieces of 1..64 bytes from the seed). */
static void read_reply(const uint8_t *data, size_t len, size_t cap, int eof, unsigned seed,
                       uint8_t *buf, outcome *o) {
  size_t pos = 0;
  unsigned x = seed * 2654435761u + 1;
  xks_http_rc rc = XKS_HTTP_MORE;
  memset(buf, 0x5A, cap + CANARY);
  xks_http_reader_init(&reader, buf, cap);
  do {
    size_t piece = len - pos, used = (size_t)-1;
    if (seed == 1) {
      piece = piece ? 1 : 0;
    } else if (seed > 1) {
      x = x * 1103515245u + 12345u;
      size_t p = 1 + (x >> 16) % 64;
      if (p < piece) piece = p;
    }
    rc = xks_http_read(&reader, data + pos, piece, &used);
    FUZZ_CHECK(rc != XKS_HTTP_EMPTY, "read never says EMPTY");
    if (rc == XKS_HTTP_MORE) FUZZ_CHECK(used == piece, "MORE takes everything");
    if (rc == XKS_HTTP_DONE) FUZZ_CHECK(used <= piece, "DONE takes no more than given");
    if (rc == XKS_HTTP_MORE || rc == XKS_HTTP_DONE) pos += used;
  } while (rc == XKS_HTTP_MORE && pos < len);
  if (rc == XKS_HTTP_MORE && eof) rc = xks_http_end(&reader);
  o->rc = rc;
  o->status = reader.status;
  o->keep_alive = reader.keep_alive;
  o->consumed = rc == XKS_HTTP_DONE ? pos : 0;
  o->body_len = reader.body_len;

  FUZZ_CHECK(reader.body_len <= cap, "the body fits its buffer");
  for (size_t i = cap; i < cap + CANARY; i++) FUZZ_CHECK(buf[i] == 0x5A, "nothing past the buffer");
  if (rc == XKS_HTTP_BAD || rc == XKS_HTTP_TOO_LARGE)
    FUZZ_CHECK(reader.error && reader.error[0], "a refusal has a reason");
  if (rc == XKS_HTTP_DONE || rc == XKS_HTTP_BAD || rc == XKS_HTTP_TOO_LARGE) {
    size_t used = 7;
    FUZZ_CHECK(xks_http_read(&reader, (const uint8_t *)"HTTP/1.1 200 OK\r\n", 17, &used) == rc,
               "the end stays the end");
    FUZZ_CHECK(used == 0, "nothing is taken after the end");
    FUZZ_CHECK(xks_http_end(&reader) == rc, "the end stays the end");
  }
  if (rc == XKS_HTTP_DONE) {
    FUZZ_CHECK(len >= 9 && (memcmp(data, "HTTP/1.1 ", 9) == 0 || memcmp(data, "HTTP/1.0 ", 9) == 0),
               "a whole reply starts with a status line");
    FUZZ_CHECK(reader.status >= 200 && reader.status <= 999, "a final status");
    if (reader.status == 204 || reader.status == 304)
      FUZZ_CHECK(reader.body_len == 0, "204 and 304 have no body");
  }
  if (rc == XKS_HTTP_EMPTY) FUZZ_CHECK(reader.status == 0, "EMPTY: no status line");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  outcome o[3];
  size_t cap;
  int eof;
  unsigned seed;

  if (size < 2) return 0;
  cap = CAPS[(data[0] & 0x7f) % (sizeof CAPS / sizeof CAPS[0])];
  eof = data[0] >> 7;
  seed = 2u + data[1];
  data += 2;
  size -= 2;

  read_reply(data, size, cap, eof, 0, bufs[0], &o[0]);
  read_reply(data, size, cap, eof, seed, bufs[1], &o[1]);
  read_reply(data, size, cap, eof, 1, bufs[2], &o[2]);
  for (int i = 1; i < 3; i++) {
    FUZZ_CHECK(o[i].rc == o[0].rc, "the same answer however the bytes arrive");
    FUZZ_CHECK(o[i].status == o[0].status, "the same status however the bytes arrive");
    FUZZ_CHECK(o[i].keep_alive == o[0].keep_alive, "the same keep-alive however the bytes arrive");
    FUZZ_CHECK(o[i].consumed == o[0].consumed, "the reply ends at the same byte");
    FUZZ_CHECK(o[i].body_len == o[0].body_len, "the same body length");
    FUZZ_CHECK(memcmp(bufs[i], bufs[0], o[0].body_len) == 0, "the same body bytes");
  }
  /* Whether the body ran to the close: the same bytes without the close
   * never come to DONE. */
  if (o[0].rc == XKS_HTTP_DONE && eof) {
    outcome open;
    read_reply(data, size, cap, 0, 0, bufs[1], &open);
    if (open.rc == XKS_HTTP_MORE) FUZZ_CHECK(!o[0].keep_alive, "a body to the close is not kept");
  }
  return 0;
}
