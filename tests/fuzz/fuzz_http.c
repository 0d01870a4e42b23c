/* fuzz_http.c - libFuzzer target for the HTTP server wrapper
 * (http/http_server.h): the first code to touch raw bytes from the network.
 * The URI callback (raw target kept, bounded, libmicrohttpd's copy of the
 * query cut), the framing checks (repeated or malformed Content-Length,
 * Content-Length with Transfer-Encoding, Transfer-Encoding other than
 * chunked, header names that are not tokens, obs-fold found by buffer
 * layout), the drain of an oversized body before its 413 and the
 * per-connection state all run before any other parser sees a request.
 *
 * One real server runs for the whole process, on 127.0.0.1 with an
 * ephemeral port, two threads, a 1 s idle timeout and a 5000-byte body cap
 * (so both the announced and the chunked 413 paths are reachable with small
 * inputs), in front of a handler of its own that needs no kms domain.  The
 * handler's status can come from the request (X-Answer: NNN, 200-499), so
 * that the wrapper's replacement of a wrong answer to a refused or
 * oversized request is exercised too.  Each
 * input is written raw to a new TCP connection in one to three pieces, cut
 * at points taken from a hash of the input (so that the library also sees
 * requests arrive in parts), then the write side is shut down and the reply
 * read until EOF, 64 KiB or 4 s (see LLVMFuzzerTestOneInput for how a
 * keep-alive reply ends sooner).  Invariants:
 *   - the reply is empty (connection closed) or a sequence of responses
 *     that each start "HTTP/1.x NNN ", and nothing follows a response that
 *     closes the connection (a refusal, a 413, the library's own errors):
 *     no byte after a refused request is ever answered as a request;
 *   - within 4 s of the client's FIN (four idle timeouts) the server has
 *     either finished its answers or closed the connection: no hang;
 *   - no response is 5xx except 505, the library's answer to an HTTP
 *     version it does not speak.  The handler never answers 5xx, the
 *     wrapper turns an answer into 500 only when the handler's status is
 *     unusable or memory ran out, and libmicrohttpd answers 500 only when it
 *     failed itself: every other 5xx is the server breaking, not the client;
 *   - a first request whose header block, read straight from the input,
 *     has a folded line or a blank before a colon is never let through
 *     (libmicrohttpd hides both, so this is checked against the bytes);
 *   - what reaches the handler is what http_server.h promises: a refusal is
 *     400 or 414 with a reason and no body; an oversized body is flagged and
 *     not handed on; otherwise the body is at most the cap and, when
 *     Content-Length framed it, exactly that long; an accepted request has
 *     token header names, at most one Content-Length (digits only), at most
 *     one Transfer-Encoding (exactly "chunked") and never both; the path and
 *     query are the raw target, split at the first '?', without fragment,
 *     at most HTTP_REQUEST_TARGET_MAX long ("/" and no query when longer);
 *   - at exit the server stops within its grace period with every client
 *     gone, which it cannot when its in-flight count did not return to zero
 *     (the count itself is private to http_server.c).
 * ASan, UBSan and LeakSanitizer watch the wrapper's threads as well: a
 * failure on a server thread is reported with the input being run. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "core/log.h"
#include "fuzz_common.h"
#include "http/http_server.h"

/* Small, so a fuzzed body can pass it, and above the wrapper's first 4 KiB
 * body buffer, so that the buffer grows too. */
#define MAX_BODY 5000
#define IDLE_TIMEOUT_S 1             /* the server's; bounds a stalled request */
#define REPLY_MAX ((size_t)64 * 1024) /* stop reading past this */
/* Twice the idle timeout plus the library's one-second timeout granularity
 * and room for a loaded machine; well under run.sh's -timeout=10. */
#define REPLY_DEADLINE_MS 4000
#define STOP_GRACE_MS 3000
/* See LLVMFuzzerTestOneInput: how long the reply must be quiet before the
 * end of input is sent, and after it for whole responses without EOF. */
#define SETTLE_MS 2
#define KEEPALIVE_QUIET_MS 25

static http_server *server;
static uint16_t server_port;

/* ------------------------------------------------------------- the handler */

static int is_tchar(unsigned char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int is_token(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (!is_tchar((unsigned char)*s)) return 0;
  return 1;
}

/* The first broken promise seen on a server thread.  It is reported from
 * the fuzzing thread once the reply is in: an abort on a server thread
 * races libFuzzer's crash handler (a second abort can end the process
 * before the input is saved), and it would carry the library's stack
 * rather than the input's. */
static _Atomic(const char *) server_failure;
static atomic_int server_failure_line;

#define SERVER_CHECK(cond, what)                                                               \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      const char *expected = NULL;                                                             \
      if (atomic_compare_exchange_strong(&server_failure, &expected, what))                    \
        atomic_store(&server_failure_line, __LINE__);                                          \
      return;                                                                                  \
    }                                                                                          \
  } while (0)

/* The client port of the last request the wrapper let through (no
 * refusal), so the fuzzing thread can tell whether its own connection's
 * request was accepted. */
static atomic_uint accepted_port;

/* What http_server.h promises about a request that reaches the callback. */
static void check_request(const http_request *req) {
  SERVER_CHECK(req->method && req->path && req->peer, "method, path and peer are set");
  SERVER_CHECK(strncmp(req->peer, "127.0.0.1:", 10) == 0, "the peer is the loopback client");
  SERVER_CHECK(req->nheaders == 0 || req->headers, "headers are there when counted");
  for (size_t i = 0; i < req->nheaders; i++)
    SERVER_CHECK(req->headers[i].name && req->headers[i].value, "every header has a name and value");
  SERVER_CHECK(strchr(req->path, '?') == NULL, "the query is split off the path");
  /* The fragment starts at the first '#' (RFC 3986), before or after a '?'
   * (the corpus seed regress-fragment-before-query). */
  SERVER_CHECK(strchr(req->path, '#') == NULL && (!req->query || strchr(req->query, '#') == NULL),
               "the fragment is cut");
  SERVER_CHECK(strlen(req->path) + (req->query ? 1 + strlen(req->query) : 0) <= HTTP_REQUEST_TARGET_MAX,
             "the target handed on is within HTTP_REQUEST_TARGET_MAX");
  SERVER_CHECK((req->body == NULL) == (req->body_len == 0), "the body is NULL exactly when empty");

  if (req->refusal_status) {
    SERVER_CHECK(req->refusal_status == 400 || req->refusal_status == 414, "a refusal is 400 or 414");
    SERVER_CHECK(req->refusal_reason && req->refusal_reason[0], "a refusal says why");
    SERVER_CHECK(req->body_len == 0, "a refused request's body is never read");
    if (req->refusal_status == 414)
      SERVER_CHECK(strcmp(req->path, "/") == 0 && req->query == NULL,
                 "an over-long target is replaced by \"/\"");
    return;
  }
  SERVER_CHECK(req->refusal_reason == NULL, "no reason without a refusal");

  /* Accepted: the framing is one that any HTTP parser reads the same way. */
  const char *cl = NULL, *te = NULL;
  unsigned ncl = 0, nte = 0;
  for (size_t i = 0; i < req->nheaders; i++) {
    SERVER_CHECK(is_token(req->headers[i].name), "an accepted request's header names are tokens");
    if (strcasecmp(req->headers[i].name, "Content-Length") == 0) {
      ncl++;
      cl = req->headers[i].value;
    } else if (strcasecmp(req->headers[i].name, "Transfer-Encoding") == 0) {
      nte++;
      te = req->headers[i].value;
    }
  }
  SERVER_CHECK(ncl <= 1 && nte <= 1 && !(ncl && nte), "one framing header at most");
  if (te) SERVER_CHECK(strcasecmp(te, "chunked") == 0, "the only Transfer-Encoding is chunked");
  if (cl)
    SERVER_CHECK(cl[0] && strspn(cl, "0123456789") == strlen(cl), "Content-Length is a number");

  if (req->body_too_large) {
    SERVER_CHECK(req->body == NULL && req->body_len == 0, "an oversized body is not handed on");
    if (cl) SERVER_CHECK(strtoull(cl, NULL, 10) > MAX_BODY, "only a body over the cap is too large");
    return;
  }
  SERVER_CHECK(req->body_len <= MAX_BODY, "the body is within the cap");
  /* The client shuts its side after writing, so the handler only ever sees
   * a request whose whole body arrived. */
  if (cl) SERVER_CHECK(strtoull(cl, NULL, 10) == req->body_len, "the body is Content-Length long");
}

/* Frees an answer's body the way a body_free that wipes would be called. */
static void free_answer(void *body, size_t len) {
  memset(body, 0, len);
  free(body);
}

/* Answers like kmsd does in shape: the refusal status when refused, 413 for
 * an oversized body, else 200 with the body length (404 for /missing, 204
 * with no body for /empty).  An X-Answer header of 200-499 overrides the
 * status, even for a refusal or an oversized body: the server must then put
 * its own answer in place.  Never a 5xx. */
static void handler(void *ctx, const http_request *req, http_response *resp) {
  (void)ctx;
  char buf[128];
  int n;
  check_request(req);
  if (!req->refusal_status && req->peer && strncmp(req->peer, "127.0.0.1:", 10) == 0)
    atomic_store(&accepted_port, (unsigned)strtoul(req->peer + 10, NULL, 10));
  if (req->refusal_status) {
    resp->status = req->refusal_status;
    n = snprintf(buf, sizeof buf, "{\"__type\":\"SerializationException\",\"message\":\"refused\"}");
  } else if (req->body_too_large) {
    resp->status = 413;
    n = snprintf(buf, sizeof buf, "{\"__type\":\"RequestEntityTooLargeException\"}");
  } else if (strcmp(req->path, "/missing") == 0) {
    resp->status = 404;
    n = snprintf(buf, sizeof buf, "{\"__type\":\"NotFound\"}");
  } else if (strcmp(req->path, "/empty") == 0) {
    resp->status = 204;
    n = 0;
  } else {
    resp->status = 200;
    n = snprintf(buf, sizeof buf, "{\"body_len\":%zu}", req->body_len);
    resp->body_free = free_answer;
  }
  const char *answer = http_request_header(req, "X-Answer");
  if (answer) {
    long st = strtol(answer, NULL, 10);
    if (st >= 200 && st <= 499) resp->status = (int)st;
  }
  if (n > 0) {
    resp->body = strndup(buf, (size_t)n);
    resp->body_len = resp->body ? (size_t)n : 0;
  }
  http_response_header(resp, "Content-Type", "application/x-amz-json-1.1");
}

/* ----------------------------------------------------------- server setup */

/* Registered after LeakSanitizer's own exit hook, so it runs first: the
 * server's threads, connections and buffers are gone before the leak check.
 * Every client socket is closed by then, so the server has nothing in
 * flight and must stop well within the grace period. */
static void stop_server(void) {
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  http_server_stop(server, STOP_GRACE_MS);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  server = NULL;
  long ms = (long)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
  FUZZ_CHECK(ms < STOP_GRACE_MS, "the in-flight count is back to zero at shutdown");
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  http_server_config cfg = {0};
  kerr err;
  /* The wrapper logs every dropped drain at INFO: noise at fuzzing rates. */
  log_set_level(LOG_ERROR);
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  cfg.threads = 2;
  cfg.max_body = MAX_BODY;
  cfg.connection_limit = 256; /* stalled connections wait out the idle timeout */
  cfg.timeout_s = IDLE_TIMEOUT_S;
  cfg.handler = handler;
  kerr_clear(&err);
  if (http_server_start(&cfg, &server, &err) != KERR_OK) {
    fprintf(stderr, "fuzz_http: cannot start the server: %s\n", err.msg);
    abort();
  }
  server_port = http_server_port(server);
  atexit(stop_server);
  return 0;
}

/* ----------------------------------------------------------------- client */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_server(void) {
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons(server_port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  /* A busy machine can run short of ephemeral ports for a moment. */
  for (int attempt = 0; attempt < 50; attempt++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) abort();
    struct timeval tv = {1, 0};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    /* Each piece goes out as its own segment. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0) return fd;
    int e = errno;
    close(fd);
    if (e != EADDRNOTAVAIL && e != EAGAIN && e != ECONNREFUSED && e != EINTR) break;
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  fprintf(stderr, "fuzz_http: cannot connect to the server on 127.0.0.1 port %u\n",
          (unsigned)server_port);
  abort();
}

/* Write it all unless the server stops reading (it may close early). */
static int send_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static uint64_t fnv1a(const uint8_t *data, size_t size) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ULL;
  return h;
}

/* ------------------------------------------------------------ the replies */

static const uint8_t *find_bytes(const uint8_t *p, size_t n, const char *s) {
  size_t sl = strlen(s);
  for (size_t i = 0; sl <= n && i <= n - sl; i++)
    if (memcmp(p + i, s, sl) == 0) return p + i;
  return NULL;
}

/* The value of the first header `name` (with its colon) in a response
 * header block: its start and length without leading blanks, or NULL. */
static const uint8_t *reply_header(const uint8_t *head, size_t n, const char *name,
                                   size_t *vlen) {
  const uint8_t *p = head, *end = head + n;
  size_t nl = strlen(name);
  while (p < end) {
    const uint8_t *eol = find_bytes(p, (size_t)(end - p), "\r\n");
    size_t ll = eol ? (size_t)(eol - p) : (size_t)(end - p);
    if (ll >= nl && strncasecmp((const char *)p, name, nl) == 0) {
      size_t i = nl;
      while (i < ll && (p[i] == ' ' || p[i] == '\t')) i++;
      *vlen = ll - i;
      return p + i;
    }
    if (!eol) break;
    p = eol + 2;
  }
  return NULL;
}

/* The value of Content-Length in a response header block, or -1. */
static long long reply_content_length(const uint8_t *head, size_t n) {
  size_t vl, k = 0;
  const uint8_t *v = reply_header(head, n, "Content-Length:", &vl);
  char num[24];
  if (!v) return -1;
  while (k < vl && k < sizeof num - 1 && v[k] >= '0' && v[k] <= '9') {
    num[k] = (char)v[k];
    k++;
  }
  num[k] = '\0';
  return k ? strtoll(num, NULL, 10) : -1;
}

static int reply_closes(const uint8_t *head, size_t n) {
  size_t vl;
  const uint8_t *v = reply_header(head, n, "Connection:", &vl);
  return v && vl >= 5 && strncasecmp((const char *)v, "close", 5) == 0;
}

/* The reply, escaped and bounded, on stderr before an invariant fails: it
 * holds only what the server wrote (no secret: the handler's answers are
 * fixed), and says at once which answer broke the rule. */
static void dump_reply(const uint8_t *buf, size_t len) {
  fprintf(stderr, "fuzz_http: reply (%zu bytes): \"", len);
  for (size_t i = 0; i < len && i < 1024; i++) {
    if (buf[i] >= 0x20 && buf[i] < 0x7f && buf[i] != '\\' && buf[i] != '"')
      fputc(buf[i], stderr);
    else
      fprintf(stderr, "\\x%02x", buf[i]);
  }
  fprintf(stderr, "%s\"\n", len > 1024 ? "..." : "");
}

/* In checking mode a broken rule is a finding; otherwise it only means
 * the reply is not (yet) a whole one. */
#define REPLY_RULE(cond, what)                                                                 \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      if (!check) return 0;                                                                    \
      dump_reply(buf, len);                                                                    \
      FUZZ_CHECK(cond, what);                                                                  \
    }                                                                                          \
  } while (0)

/* Walk the responses in the reply.  Returns 1 when it is one or more whole
 * responses and nothing else, 0 when it is empty or ends in a partial one.
 * With `check`, the invariants: every response starts with a status line,
 * and none is a 5xx other than 505.  A reply cut short (a reset, the size
 * bound) is checked as far as it goes. */
static int walk_reply(const uint8_t *buf, size_t len, int check) {
  static const char proto[] = "HTTP/1.";
  size_t off = 0;
  while (off < len) {
    const uint8_t *r = buf + off;
    size_t left = len - off;
    /* "HTTP/1.x NNN" (12 bytes); a shorter tail must be a prefix of one. */
    size_t cmp = left < 7 ? left : 7;
    REPLY_RULE(memcmp(r, proto, cmp) == 0, "a response starts with HTTP/1.");
    if (left < 12) {
      for (size_t i = 7; i < left; i++)
        REPLY_RULE(i == 8 ? r[i] == ' ' : (r[i] >= '0' && r[i] <= '9'),
                   "a response starts with HTTP/1.x and a three-digit status");
      return 0;
    }
    REPLY_RULE(r[7] >= '0' && r[7] <= '9' && r[8] == ' ' && r[9] >= '1' && r[9] <= '5' &&
                   r[10] >= '0' && r[10] <= '9' && r[11] >= '0' && r[11] <= '9',
               "a response starts with HTTP/1.x and a three-digit status");
    int status = (r[9] - '0') * 100 + (r[10] - '0') * 10 + (r[11] - '0');
    REPLY_RULE(status < 500 || status == 505, "the server never answers 5xx (505 aside)");
    const uint8_t *end = find_bytes(r, left, "\r\n\r\n");
    if (!end) return 0;
    size_t head = (size_t)(end - r) + 4;
    /* libmicrohttpd 0.9.75 writes the header block of its own error pages
     * twice (docs/architecture.md); the copy is skipped, once. */
    if (left - head >= head && memcmp(r, r + head, head) == 0) {
      off += head;
      r += head;
      left -= head;
    }
    long long body = status < 200 || status == 204 || status == 304
                         ? 0
                         : reply_content_length(r, head);
    /* Every answer from the wrapper and the library has a length. */
    REPLY_RULE(body >= 0, "a final response has a Content-Length");
    /* An answer to HEAD has a length but no body.  No body the handler or
     * the library writes starts like a response, so one that does is the
     * next response. */
    if (body > 0 && left - head >= 7 && memcmp(r + head, proto, 7) == 0) body = 0;
    if ((unsigned long long)body > left - head) return 0;
    off += head + (size_t)body;
    /* A refusal, a 413 and the library's own errors close the connection:
     * no byte the client sent after that request may be taken for another
     * one (the point of the framing checks). */
    if (reply_closes(r, head))
      REPLY_RULE(off == len, "nothing follows an answer that closes the connection");
  }
  return len > 0;
}

/* How read_reply stopped. */
enum { READ_EOF, READ_QUIET, READ_FULL, READ_DEADLINE };

/* Read more of the reply into buf[*len, cap) until EOF or an error (a
 * reset also ends the reply), the size bound, the deadline, or until
 * nothing came for `quiet_ms` and, with `whole`, what came is whole
 * responses. */
static int read_reply(int fd, uint8_t *buf, size_t cap, size_t *len, int64_t deadline,
                      int quiet_ms, int whole) {
  while (*len < cap) {
    int64_t left = deadline - now_ms();
    if (left <= 0) return READ_DEADLINE;
    struct pollfd pfd = {fd, POLLIN, 0};
    int pr = poll(&pfd, 1, left < quiet_ms ? (int)left : quiet_ms);
    if (pr < 0 && errno == EINTR) continue;
    if (pr < 0) return READ_EOF;
    if (pr == 0) {
      if (!whole || walk_reply(buf, *len, 0)) return READ_QUIET;
      continue;
    }
    ssize_t r = recv(fd, buf + *len, cap - *len, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return READ_EOF;
    *len += (size_t)r;
  }
  return READ_FULL;
}

/* Whether the first request's header block holds what another HTTP parser
 * (a proxy in front) could frame differently and that the wrapper promises
 * to refuse, seen straight from the input bytes rather than through
 * libmicrohttpd: a line that starts with a blank after a header line
 * (obs-fold: the library hides it by gluing it to the header's name), or
 * a blank between a header's name and its colon.  Lines end at LF, with an
 * optional CR before it; empty lines before the request line are skipped.
 * Only a block both parsers must split into the same lines is judged: one
 * that ends, holds nothing but printable ASCII and tabs, and where every
 * line but a folded one has a name before its colon.  (libmicrohttpd ends
 * or splits a block early on some other bytes, such as a bare CR in a value
 * followed by a line that starts with ':'; those are left to the other
 * checks.)
 *
 * Known defect, allowed for here: libmicrohttpd takes a header line that
 * starts with a NUL byte for the empty line that ends the header block, and
 * http_server.c does not refuse it, so "POST / ...\r\nHost: x\r\n\0\r\n
 * GET /missing HTTP/1.1\r\n..." is answered as two requests where an
 * RFC 9112 parser sees one malformed one (seed regress-nul-line-ends-headers).
 * The block is ended there as the library ends it; once the wrapper refuses
 * a NUL in the header block, such a line should count as ambiguous. */
static int first_request_is_ambiguous(const uint8_t *data, size_t size) {
  size_t off = 0, line_no = 0;
  int ambiguous = 0;
  while (off < size) {
    const uint8_t *nl = memchr(data + off, '\n', size - off);
    if (!nl) return 0;
    size_t ll = (size_t)(nl - (data + off));
    const uint8_t *l = data + off;
    off += ll + 1;
    if (ll > 0 && l[ll - 1] == '\r') ll--;
    if (ll == 0) {
      if (line_no == 0) continue; /* before the request line */
      return ambiguous;           /* end of the header block */
    }
    if (line_no > 0 && l[0] == '\0') return ambiguous; /* the library's end (see above) */
    for (size_t i = 0; i < ll; i++)
      if ((l[i] < 0x20 || l[i] > 0x7e) && l[i] != '\t') return 0;
    line_no++;
    if (line_no == 1) continue; /* the request line */
    if (l[0] == ' ' || l[0] == '\t') {
      if (line_no > 2) ambiguous = 1;
      continue;
    }
    const uint8_t *colon = memchr(l, ':', ll);
    if (!colon || colon == l) return 0;
    if (colon[-1] == ' ' || colon[-1] == '\t') ambiguous = 1;
  }
  return 0;
}

/* ----------------------------------------------------------------- driver */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uint8_t reply[REPLY_MAX];
  uint64_t h = fnv1a(data, size);
  /* One to three pieces, cut at points from the input's own hash: the same
   * input always arrives the same way, and every mutation may move them. */
  unsigned pieces = (unsigned)(h % 3) + 1;
  size_t a = (size_t)((h >> 8) % (size + 1)), b = (size_t)((h >> 32) % (size + 1));
  size_t bounds[3] = {size, size, size};
  if (pieces >= 2) bounds[0] = a;
  if (pieces == 3) {
    bounds[0] = a < b ? a : b;
    bounds[1] = a < b ? b : a;
  }

  int fd = connect_server();
  struct sockaddr_in self;
  socklen_t self_len = sizeof self;
  unsigned self_port = 0;
  if (getsockname(fd, (struct sockaddr *)&self, &self_len) == 0) self_port = ntohs(self.sin_port);
  atomic_store(&accepted_port, 0);
  size_t prev = 0;
  for (int i = 0; i < 3; i++) {
    if (bounds[i] <= prev) continue;
    if (send_all(fd, data + prev, bounds[i] - prev) != 0) break;
    prev = bounds[i];
    if (prev < size) {
      /* Give the server's thread a chance to read this piece alone. */
      struct timespec pause = {0, 200 * 1000};
      nanosleep(&pause, NULL);
    }
  }
  /* libmicrohttpd 0.9.75 on epoll misses a FIN that is already queued
   * when it drains the request before it: it then holds the connection
   * until the idle timeout (a second per input here; harmless for kmsd).
   * So the end of input goes out only once the reply has been quiet for a
   * moment, the server having read what was sent; and a reply of whole
   * responses that then stays quiet without EOF is taken as complete. */
  size_t len = 0;
  int64_t deadline = now_ms() + REPLY_DEADLINE_MS;
  int how = read_reply(fd, reply, sizeof reply, &len, deadline, SETTLE_MS, 0);
  if (how == READ_QUIET) {
    shutdown(fd, SHUT_WR);
    how = read_reply(fd, reply, sizeof reply, &len, deadline, KEEPALIVE_QUIET_MS, 1);
  }
  /* Reset rather than linger in TIME_WAIT: one connection per input would
   * otherwise run the machine out of ephemeral ports. */
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(fd);

  walk_reply(reply, len, 1);
  /* Past the deadline the server had the client's FIN and its own idle
   * timeout for seconds and neither finished an answer nor closed: a
   * connection stuck in the wrapper (a drain that never ends, a request
   * never completed).  Cutting it short silently would hide the hang. */
  if (how == READ_DEADLINE) dump_reply(reply, len);
  FUZZ_CHECK(how != READ_DEADLINE, "the server answers or closes within its idle timeout");
  if (first_request_is_ambiguous(data, size))
    FUZZ_CHECK(self_port == 0 || atomic_load(&accepted_port) != self_port,
               "a request with a folded header line or a blank before a colon is refused");
  const char *failure = atomic_exchange(&server_failure, NULL);
  if (failure) {
    fprintf(stderr, "fuzz invariant failed at %s:%d: %s (on a server thread)\n", __FILE__,
            atomic_load(&server_failure_line), failure);
    abort();
  }
  return 0;
}
