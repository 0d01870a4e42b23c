/* xksload.c - open-loop HTTP(S) load at a fixed rate, latency without coordinated omission.
 *
 * wrk sends as fast as the server answers; it cannot say how a server
 * behaves at the rate KMS will actually drive it (1,800 requests/s, the
 * default XKS quota per key store), nor what kmsd's latency is at a given
 * share of its peak.  This generator keeps K kept-alive connections (TLS,
 * or plain TCP with --plain), and every connection sends the same
 * pre-signed request on a fixed schedule of rate/K per second.  With TLS each
 * connection has a thread that sleeps until its next send and blocks for the
 * response.  With --plain, T threads (--threads, default 1) each drive their
 * share of the connections from one epoll loop: a thread per connection
 * costs the generator two wake-ups per request, which on a 2-CPU host took
 * more CPU than the server it measured and capped the rate it could hold.
 * Latency is
 * measured from the time a request was *meant* to be sent to the end of its
 * response: when the server stalls, the requests that queue behind the stall
 * are charged for their wait instead of silently being sent later (which is
 * what a closed-loop client does, and why its p99 looks too good).
 *
 *   xksload --port P (--ca FILE | --plain [--threads 1]) --request FILE
 *           [--host 127.0.0.1] [--server-name NAME] [--rate 1800]
 *           [--connections 8] [--duration 30] [--warmup 2]
 *
 * --request is bench/request.lua's format: "METHOD PATH", header lines, a
 * blank line, the body; Content-Length and Connection are added here.  The
 * server certificate is verified against --ca, for --server-name when given
 * (sent as SNI too), else for --host as an IP address.  --plain speaks
 * HTTP/1.1 over plain TCP instead (kmsd as bench/run.sh starts it); it takes
 * neither --ca nor --server-name.
 *
 * Prints one JSON line: the target and achieved rate, counts, and
 * p50/p90/p99/p99.9/max latency in microseconds over every request whose
 * intended send time lies after the warm-up.  Every sample is kept. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REQUEST_FILE_MAX (64 * 1024)
#define RESPONSE_HEAD_MAX (16 * 1024)
#define RESPONSE_BODY_MAX (1024 * 1024)
#define CONNECTIONS_MAX 256

typedef struct {
  const char *host, *server_name, *ca_file, *request_file;
  int port;
  int plain; /* plain TCP instead of TLS */
  double rate, duration_s, warmup_s;
  int connections;
  int threads; /* event threads with --plain */
} options;

/* One connection's state and results; only its own thread writes it. */
typedef struct {
  int index;
  int fd;   /* -1 while not connected */
  SSL *ssl; /* NULL with --plain */
  uint32_t *samples_us; /* latencies after the warm-up, in send order */
  size_t samples, samples_cap;
  uint64_t sent, ok, non200, reconnects;
  int first_bad_status;
  int64_t last_done_ns;
  char failure[256]; /* empty while healthy */
  /* The event loop's state (--plain): the schedule, and the request in flight. */
  int64_t origin_ns, next; /* the n-th send is meant for origin + n * interval */
  int64_t intended_ns;     /* of the request in flight */
  int busy, finished;
  size_t wrote, have;      /* request bytes written; response head bytes in buf */
  long body_left;          /* -1 while the head is still coming */
  int status, keep_alive;
  char *buf;
} connection;

static options opt;
static SSL_CTX *tls_ctx; /* NULL with --plain */
static char *request_bytes; /* the full HTTP/1.1 request, sent as is every time */
static size_t request_len;
static pthread_barrier_t connected, started;
static int64_t start_ns; /* schedule origin, set by main between the barriers */

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_until(int64_t when_ns) {
  struct timespec ts = {.tv_sec = when_ns / 1000000000, .tv_nsec = when_ns % 1000000000};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

static void die(const char *what) {
  fprintf(stderr, "xksload: %s\n", what);
  exit(2);
}

/* Record why a connection stopped; quotes and backslashes become ' so the
 * text can go into the JSON line as is. */
static void fail(connection *c, const char *what) {
  unsigned long e = ERR_get_error();
  char reason[160] = "";
  if (e != 0)
    ERR_error_string_n(e, reason, sizeof reason);
  snprintf(c->failure, sizeof c->failure, "connection %d: %s%s%s", c->index, what,
           reason[0] ? ": " : "", reason);
  for (char *p = c->failure; *p; p++)
    if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
      *p = '\'';
}

/* Read the request file and turn it into wire bytes (CRLF line ends,
 * Content-Length, keep-alive). */
static void load_request(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    die("cannot open --request file");
  char *text = malloc(REQUEST_FILE_MAX + 1);
  if (text == NULL)
    die("out of memory");
  size_t n = fread(text, 1, REQUEST_FILE_MAX + 1, f);
  fclose(f);
  if (n > REQUEST_FILE_MAX)
    die("--request file too large");
  text[n] = '\0';

  char *sep = strstr(text, "\n\n");
  size_t sep_len = 2;
  char *crlf_sep = strstr(text, "\r\n\r\n");
  if (crlf_sep != NULL && (sep == NULL || crlf_sep < sep)) {
    sep = crlf_sep;
    sep_len = 4;
  }
  if (sep == NULL)
    die("--request file lacks the blank line before the body");
  *sep = '\0';
  const char *body = sep + sep_len;
  size_t body_len = n - (size_t)(body - text);

  size_t cap = n * 2 + 256;
  request_bytes = malloc(cap);
  if (request_bytes == NULL)
    die("out of memory");
  size_t len = 0;
  int first = 1;
  for (char *line = strtok(text, "\r\n"); line != NULL; line = strtok(NULL, "\r\n")) {
    if (first) {
      char method[16], target[4096];
      if (sscanf(line, "%15s %4095s", method, target) != 2)
        die("--request file: first line must be METHOD PATH");
      len += (size_t)snprintf(request_bytes + len, cap - len, "%s %s HTTP/1.1\r\n", method, target);
      first = 0;
    } else if (strncasecmp(line, "content-length:", 15) != 0 &&
               strncasecmp(line, "connection:", 11) != 0) {
      len += (size_t)snprintf(request_bytes + len, cap - len, "%s\r\n", line);
    }
  }
  if (first)
    die("--request file is empty");
  len += (size_t)snprintf(request_bytes + len, cap - len,
                          "Content-Length: %zu\r\nConnection: keep-alive\r\n\r\n", body_len);
  if (len + body_len > cap)
    die("--request file: headers too long");
  memcpy(request_bytes + len, body, body_len);
  request_len = len + body_len;
  free(text);
}

static void close_connection(connection *c) {
  if (c->ssl != NULL) {
    SSL_shutdown(c->ssl);
    SSL_free(c->ssl);
    c->ssl = NULL;
  }
  if (c->fd >= 0) {
    close(c->fd);
    c->fd = -1;
  }
}

/* TCP connect with Nagle off, then (unless --plain) a verified TLS
 * handshake.  0 on success. */
static int open_connection(connection *c) {
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
  if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1) {
    fail(c, "--host must be an IPv4 address");
    return -1;
  }
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    fail(c, strerror(errno));
    close_connection(c);
    return -1;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (opt.plain)
    return 0;

  c->ssl = SSL_new(tls_ctx);
  if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
    fail(c, "SSL_new");
    close_connection(c);
    return -1;
  }
  if (opt.server_name != NULL) {
    if (SSL_set_tlsext_host_name(c->ssl, opt.server_name) != 1 ||
        SSL_set1_host(c->ssl, opt.server_name) != 1) {
      fail(c, "cannot set the server name");
      close_connection(c);
      return -1;
    }
  } else if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), opt.host) != 1) {
    fail(c, "cannot set the expected IP address");
    close_connection(c);
    return -1;
  }
  if (SSL_connect(c->ssl) != 1) {
    long verify = SSL_get_verify_result(c->ssl);
    char what[200];
    snprintf(what, sizeof what, "TLS handshake failed (verify: %s)",
             X509_verify_cert_error_string(verify));
    fail(c, what);
    close_connection(c);
    return -1;
  }
  return 0;
}

/* Send or receive some bytes over TLS or, with --plain, the bare socket;
 * SSL_write_ex/SSL_read_ex's contract: 1 and *done > 0 on success, 0 when
 * the connection broke or (reading) the peer closed it. */
static int conn_write(connection *c, const char *data, size_t len, size_t *done) {
  if (c->ssl != NULL)
    return SSL_write_ex(c->ssl, data, len, done);
  ssize_t n;
  /* MSG_NOSIGNAL: a peer that closed fails this connection, not the process. */
  while ((n = send(c->fd, data, len, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  *done = n > 0 ? (size_t)n : 0;
  return n > 0;
}

static int conn_read(connection *c, char *buf, size_t len, size_t *done) {
  if (c->ssl != NULL)
    return SSL_read_ex(c->ssl, buf, len, done);
  ssize_t n;
  while ((n = recv(c->fd, buf, len, 0)) < 0 && errno == EINTR) {
  }
  *done = n > 0 ? (size_t)n : 0;
  return n > 0;
}

static int write_all(connection *c, const char *data, size_t len) {
  while (len > 0) {
    size_t written = 0;
    if (conn_write(c, data, len, &written) != 1)
      return -1;
    data += written;
    len -= written;
  }
  return 0;
}

/* The status of the response head in buf (NUL-terminated, ending at
 * head_end), its Content-Length and whether the server keeps the connection;
 * -1 for a head we cannot frame. */
static int parse_head(const char *buf, const char *head_end, long *content_length,
                      int *keep_alive) {
  int status = 0;
  if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
    return -1;
  *content_length = -1;
  *keep_alive = 1;
  for (const char *line = strstr(buf, "\r\n"); line != NULL && line < head_end;
       line = strstr(line + 2, "\r\n")) {
    const char *h = line + 2;
    if (strncasecmp(h, "content-length:", 15) == 0)
      *content_length = strtol(h + 15, NULL, 10);
    else if (strncasecmp(h, "connection:", 11) == 0 &&
             strncasecmp(h + 11 + strspn(h + 11, " \t"), "close", 5) == 0)
      *keep_alive = 0;
  }
  if (*content_length < 0 || *content_length > RESPONSE_BODY_MAX)
    return -1;
  return status;
}

/* Read one response (headers, then Content-Length bytes of body); returns
 * its status, or -1 when the connection broke or the response is not one we
 * can frame.  *keep_alive is cleared when the server said it will close. */
static int read_response(connection *c, char *buf, int *keep_alive) {
  size_t have = 0;
  char *head_end = NULL;
  while (head_end == NULL) {
    if (have == RESPONSE_HEAD_MAX)
      return -1;
    size_t got = 0;
    if (conn_read(c, buf + have, RESPONSE_HEAD_MAX - have, &got) != 1)
      return -1;
    have += got;
    buf[have] = '\0';
    head_end = strstr(buf, "\r\n\r\n");
  }
  long content_length;
  int status = parse_head(buf, head_end, &content_length, keep_alive);
  if (status < 0)
    return -1;
  size_t body_have = have - (size_t)(head_end + 4 - buf);
  size_t body_left = (size_t)content_length > body_have ? (size_t)content_length - body_have : 0;
  while (body_left > 0) {
    size_t got = 0;
    size_t want = body_left < RESPONSE_HEAD_MAX ? body_left : RESPONSE_HEAD_MAX;
    if (conn_read(c, buf, want, &got) != 1)
      return -1;
    body_left -= got;
  }
  return status;
}

/* Count a response of `status` to the request meant for `intended` that
 * ended at `done`; its latency is kept when it was meant for after the
 * warm-up.  -1 (and the connection failed) when memory ran out. */
static int record(connection *c, int status, int64_t intended, int64_t done, int64_t warmup_end) {
  if (status == 200) {
    c->ok++;
  } else {
    c->non200++;
    if (c->first_bad_status == 0)
      c->first_bad_status = status;
  }
  c->last_done_ns = done;
  if (intended < warmup_end)
    return 0;
  if (c->samples == c->samples_cap) {
    size_t cap = c->samples_cap ? c->samples_cap * 2 : 4096;
    uint32_t *grown = realloc(c->samples_us, cap * sizeof *grown);
    if (grown == NULL) {
      fail(c, "out of memory");
      return -1;
    }
    c->samples_us = grown;
    c->samples_cap = cap;
  }
  int64_t us = (done - intended) / 1000;
  c->samples_us[c->samples++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
  return 0;
}

static void *run_connection(void *arg) {
  connection *c = arg;
  char *buf = malloc(RESPONSE_HEAD_MAX + 1);
  int connected_ok = buf != NULL && open_connection(c) == 0;
  pthread_barrier_wait(&connected);
  pthread_barrier_wait(&started);
  if (!connected_ok) {
    if (c->failure[0] == '\0')
      fail(c, "out of memory");
    free(buf);
    return NULL;
  }

  /* Connection i sends at start + i*interval/K + n*interval: the K
   * schedules interleave into one even stream at the full rate. */
  const double interval_ns = 1e9 * opt.connections / opt.rate;
  const int64_t origin = start_ns + (int64_t)(interval_ns * c->index / opt.connections);
  const int64_t warmup_end = start_ns + (int64_t)(opt.warmup_s * 1e9);
  const int64_t run_end = warmup_end + (int64_t)(opt.duration_s * 1e9);
  for (int64_t n = 0;; n++) {
    int64_t intended = origin + (int64_t)((double)n * interval_ns);
    if (intended >= run_end)
      break;
    if (c->fd < 0) {
      c->reconnects++;
      if (open_connection(c) != 0)
        break;
    }
    sleep_until(intended); /* returns at once when already late */
    int keep_alive = 1;
    int status = -1;
    c->sent++;
    if (write_all(c, request_bytes, request_len) == 0)
      status = read_response(c, buf, &keep_alive);
    int64_t done = now_ns();
    if (status < 0) {
      fail(c, "connection broke or response unframed");
      break;
    }
    if (record(c, status, intended, done, warmup_end) != 0)
      break;
    if (!keep_alive)
      close_connection(c);
  }
  close_connection(c);
  free(buf);
  return NULL;
}

/* ---- --plain: event threads ---------------------------------------------- */

typedef struct {
  connection **conns; /* this thread's share */
  int n;
} event_thread;

/* Connect c (blocking) and hand it to the loop, non-blocking.  0 on success. */
static int plain_attach(int ep, connection *c) {
  if (open_connection(c) != 0)
    return -1;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) != 0 ||
      epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
    fail(c, strerror(errno));
    close_connection(c);
    return -1;
  }
  return 0;
}

static void plain_stop(connection *c, const char *why) {
  if (why != NULL && c->failure[0] == '\0')
    fail(c, why);
  close_connection(c); /* close() also takes it out of the epoll set */
  c->finished = 1;
  c->busy = 0;
}

/* Write what is left of the request; EPOLLOUT is asked for only while a
 * write is short.  0, or -1 when the connection broke. */
static int plain_write(int ep, connection *c) {
  while (c->wrote < request_len) {
    ssize_t n = send(c->fd, request_bytes + c->wrote, request_len - c->wrote, MSG_NOSIGNAL);
    if (n > 0) {
      c->wrote += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
      return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    } else {
      return -1;
    }
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Read what has arrived of the response.  1 when it is complete, 0 when
 * more is to come, -1 when the connection broke or the response is unframed. */
static int plain_read(connection *c) {
  for (;;) {
    char scratch[RESPONSE_HEAD_MAX];
    char *into = c->body_left < 0 ? c->buf + c->have : scratch;
    size_t room = c->body_left < 0 ? RESPONSE_HEAD_MAX - c->have : sizeof scratch;
    if (room == 0)
      return -1;
    ssize_t n = recv(c->fd, into, room, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return 0;
    if (n <= 0)
      return -1;
    size_t got = (size_t)n;
    if (c->body_left < 0) {
      c->have += got;
      c->buf[c->have] = '\0';
      char *head_end = strstr(c->buf, "\r\n\r\n");
      if (head_end == NULL)
        continue;
      long content_length;
      c->status = parse_head(c->buf, head_end, &content_length, &c->keep_alive);
      if (c->status < 0)
        return -1;
      got = c->have - (size_t)(head_end + 4 - c->buf); /* body bytes that came with the head */
      c->body_left = content_length;
    }
    if ((long)got > c->body_left)
      return -1; /* more than the response: nothing else was asked for */
    c->body_left -= (long)got;
    if (c->body_left == 0)
      return 1;
  }
}

static void *run_event_thread(void *arg) {
  event_thread *t = arg;
  struct epoll_event events[64];
  int ep = epoll_create1(0);
  for (int i = 0; i < t->n; i++) {
    connection *c = t->conns[i];
    c->buf = malloc(RESPONSE_HEAD_MAX + 1);
    if (ep < 0 || c->buf == NULL)
      fail(c, "cannot set up the event loop");
    else if (plain_attach(ep, c) != 0)
      c->finished = 1;
  }
  pthread_barrier_wait(&connected);
  pthread_barrier_wait(&started);

  /* The same schedules as the threaded loop: connection i sends at
   * start + i*interval/K + n*interval. */
  const double interval_ns = 1e9 * opt.connections / opt.rate;
  const int64_t warmup_end = start_ns + (int64_t)(opt.warmup_s * 1e9);
  const int64_t run_end = warmup_end + (int64_t)(opt.duration_s * 1e9);
  for (int i = 0; i < t->n; i++)
    t->conns[i]->origin_ns = start_ns + (int64_t)(interval_ns * t->conns[i]->index / opt.connections);
  for (;;) {
    int64_t now = now_ns(), next_send = INT64_MAX;
    int active = 0;
    for (int i = 0; i < t->n; i++) {
      connection *c = t->conns[i];
      if (c->finished)
        continue;
      int64_t intended = c->origin_ns + (int64_t)((double)c->next * interval_ns);
      if (!c->busy && intended >= run_end) {
        plain_stop(c, NULL);
        continue;
      }
      active = 1;
      if (c->busy)
        continue;
      if (intended > now) {
        if (intended < next_send)
          next_send = intended;
        continue;
      }
      c->intended_ns = intended;
      c->next++;
      c->sent++;
      c->busy = 1;
      c->wrote = c->have = 0;
      c->body_left = -1;
      if (plain_write(ep, c) != 0)
        plain_stop(c, "connection broke or response unframed");
    }
    if (!active)
      break;
    struct timespec wait, *waitp = NULL;
    if (next_send != INT64_MAX) {
      int64_t ns = next_send - now_ns();
      if (ns < 0)
        ns = 0;
      wait = (struct timespec){.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
      waitp = &wait;
    }
    int n = epoll_pwait2(ep, events, 64, waitp, NULL);
    for (int e = 0; e < n; e++) {
      connection *c = events[e].data.ptr;
      if (c->finished || !c->busy)
        continue;
      if ((events[e].events & EPOLLOUT) && c->wrote < request_len && plain_write(ep, c) != 0) {
        plain_stop(c, "connection broke or response unframed");
        continue;
      }
      int done = plain_read(c);
      if (done < 0) {
        plain_stop(c, "connection broke or response unframed");
        continue;
      }
      if (done == 0)
        continue;
      c->busy = 0;
      if (record(c, c->status, c->intended_ns, now_ns(), warmup_end) != 0) {
        plain_stop(c, NULL);
        continue;
      }
      if (!c->keep_alive) {
        close_connection(c);
        c->reconnects++;
        if (plain_attach(ep, c) != 0)
          c->finished = 1;
      }
    }
  }
  for (int i = 0; i < t->n; i++) {
    close_connection(t->conns[i]);
    free(t->conns[i]->buf);
    t->conns[i]->buf = NULL;
  }
  if (ep >= 0)
    close(ep);
  return NULL;
}

static int compare_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples. */
static uint32_t percentile(const uint32_t *sorted, size_t n, double p) {
  if (n == 0)
    return 0;
  size_t rank = (size_t)(p / 100.0 * (double)n + 0.9999999);
  if (rank < 1)
    rank = 1;
  if (rank > n)
    rank = n;
  return sorted[rank - 1];
}

static double number_arg(const char *flag, const char *value, double min, double max) {
  char *end = NULL;
  double v = strtod(value, &end);
  if (*value == '\0' || *end != '\0' || !(v >= min && v <= max)) {
    fprintf(stderr, "xksload: %s wants a number in [%g, %g], not '%s'\n", flag, min, max, value);
    exit(2);
  }
  return v;
}

static void usage(void) {
  fprintf(stderr, "usage: xksload --port P (--ca FILE | --plain [--threads 1]) --request FILE\n"
                  "               [--host 127.0.0.1] [--server-name NAME] [--rate 1800]\n"
                  "               [--connections 8] [--duration 30] [--warmup 2]\n");
  exit(2);
}

static void parse_options(int argc, char **argv) {
  opt = (options){.host = "127.0.0.1", .rate = 1800, .connections = 8, .duration_s = 30,
                  .warmup_s = 2, .threads = 0};
  for (int i = 1; i < argc; i++) {
    const char *flag = argv[i];
    if (strcmp(flag, "--plain") == 0) { /* the one flag without a value */
      opt.plain = 1;
      continue;
    }
    if (i + 1 >= argc)
      usage();
    const char *value = argv[++i];
    if (strcmp(flag, "--host") == 0)
      opt.host = value;
    else if (strcmp(flag, "--server-name") == 0)
      opt.server_name = value;
    else if (strcmp(flag, "--port") == 0)
      opt.port = (int)number_arg(flag, value, 1, 65535);
    else if (strcmp(flag, "--ca") == 0)
      opt.ca_file = value;
    else if (strcmp(flag, "--request") == 0)
      opt.request_file = value;
    else if (strcmp(flag, "--rate") == 0)
      opt.rate = number_arg(flag, value, 1, 1e6);
    else if (strcmp(flag, "--connections") == 0)
      opt.connections = (int)number_arg(flag, value, 1, CONNECTIONS_MAX);
    else if (strcmp(flag, "--duration") == 0)
      opt.duration_s = number_arg(flag, value, 0.1, 240);
    else if (strcmp(flag, "--warmup") == 0)
      opt.warmup_s = number_arg(flag, value, 0, 60);
    else if (strcmp(flag, "--threads") == 0)
      opt.threads = (int)number_arg(flag, value, 1, CONNECTIONS_MAX);
    else
      usage();
  }
  /* TLS needs a CA to verify against; plain TCP has nothing to verify, and
   * a CA or server name given with it is a mistake worth refusing. */
  if (opt.port == 0 || opt.request_file == NULL ||
      (opt.plain ? opt.ca_file != NULL || opt.server_name != NULL
                 : opt.ca_file == NULL || opt.threads != 0))
    usage();
  if (opt.plain && opt.threads == 0)
    opt.threads = 1;
  if (opt.threads > opt.connections)
    opt.threads = opt.connections;
}

int main(int argc, char **argv) {
  parse_options(argc, argv);
  load_request(opt.request_file);

  if (!opt.plain) {
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (tls_ctx == NULL || SSL_CTX_load_verify_locations(tls_ctx, opt.ca_file, NULL) != 1)
      die("cannot load the --ca file");
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION);
  }

  int k = opt.connections;
  int nthreads = opt.plain ? opt.threads : k;
  connection *conns = calloc((size_t)k, sizeof *conns);
  connection **shares = calloc((size_t)k, sizeof *shares);
  event_thread *loops = calloc((size_t)nthreads, sizeof *loops);
  pthread_t *threads = calloc((size_t)nthreads, sizeof *threads);
  if (conns == NULL || shares == NULL || loops == NULL || threads == NULL)
    die("out of memory");
  pthread_barrier_init(&connected, NULL, (unsigned)nthreads + 1);
  pthread_barrier_init(&started, NULL, (unsigned)nthreads + 1);
  for (int i = 0; i < k; i++) {
    conns[i].index = i;
    conns[i].fd = -1;
  }
  /* Thread j of the event loops drives connections j, j+T, j+2T... */
  for (int j = 0, at = 0; opt.plain && j < nthreads; j++) {
    loops[j].conns = shares + at;
    for (int i = j; i < k; i += nthreads)
      shares[at++] = &conns[i];
    loops[j].n = (int)(shares + at - loops[j].conns);
  }
  for (int i = 0; i < nthreads; i++) {
    int rc = opt.plain ? pthread_create(&threads[i], NULL, run_event_thread, &loops[i])
                       : pthread_create(&threads[i], NULL, run_connection, &conns[i]);
    if (rc != 0)
      die("cannot start a thread");
  }
  pthread_barrier_wait(&connected); /* every handshake done (or failed) */
  start_ns = now_ns() + 10 * 1000000;
  pthread_barrier_wait(&started);
  for (int i = 0; i < nthreads; i++)
    pthread_join(threads[i], NULL);

  size_t total = 0;
  uint64_t sent = 0, ok = 0, non200 = 0, reconnects = 0;
  int first_bad_status = 0;
  int64_t last_done = 0;
  const char *failure = NULL;
  for (int i = 0; i < k; i++) {
    total += conns[i].samples;
    sent += conns[i].sent;
    ok += conns[i].ok;
    non200 += conns[i].non200;
    reconnects += conns[i].reconnects;
    if (first_bad_status == 0)
      first_bad_status = conns[i].first_bad_status;
    if (conns[i].last_done_ns > last_done)
      last_done = conns[i].last_done_ns;
    if (failure == NULL && conns[i].failure[0] != '\0')
      failure = conns[i].failure;
  }
  uint32_t *all = malloc((total ? total : 1) * sizeof *all);
  if (all == NULL)
    die("out of memory");
  size_t at = 0;
  for (int i = 0; i < k; i++) {
    memcpy(all + at, conns[i].samples_us, conns[i].samples * sizeof *all);
    at += conns[i].samples;
  }
  qsort(all, total, sizeof *all, compare_u32);

  /* Achieved rate over the measured window: requests meant for it, divided
   * by the time from its start to the last response. */
  double window_s = (double)(last_done - (start_ns + (int64_t)(opt.warmup_s * 1e9))) / 1e9;
  printf("{\"target_rps\": %.1f, \"achieved_rps\": %.1f, \"connections\": %d, "
         "\"duration_s\": %.1f, \"requests\": %zu, \"sent\": %llu, \"ok\": %llu, "
         "\"non200\": %llu, \"first_bad_status\": %d, \"reconnects\": %llu, "
         "\"p50_us\": %u, \"p90_us\": %u, \"p99_us\": %u, \"p999_us\": %u, \"max_us\": %u, "
         "\"failure\": \"%s\"}\n",
         opt.rate, window_s > 0 ? (double)total / window_s : 0.0, k, opt.duration_s, total,
         (unsigned long long)sent, (unsigned long long)ok, (unsigned long long)non200,
         first_bad_status, (unsigned long long)reconnects, percentile(all, total, 50),
         percentile(all, total, 90), percentile(all, total, 99), percentile(all, total, 99.9),
         total ? all[total - 1] : 0, failure ? failure : "");
  fflush(stdout);

  for (int i = 0; i < k; i++)
    free(conns[i].samples_us);
  free(all);
  free(conns);
  free(shares);
  free(loops);
  free(threads);
  SSL_CTX_free(tls_ctx);
  return failure != NULL ? 1 : 0;
}
