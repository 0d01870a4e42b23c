/* http_server.c - libmicrohttpd wrapper: one callback per complete request.
 *
 * libmicrohttpd calls the access handler several times per request (headers,
 * then body pieces, then the end).  This file turns that into a single call
 * with the whole body, keeps the raw request target (SigV4 signs the path and
 * query exactly as sent, before any unescaping), refuses requests whose
 * framing two parsers could read differently, enforces the body cap without
 * buffering an oversized body, stamps every answer with the service clock,
 * and counts requests in flight so that shutdown can let them finish.
 * A request the callback will not answer on an event thread (it would wait)
 * is run again on a waiting thread (http_offload.h) while its connection is
 * suspended, and answered when the connection is resumed.
 * Over TLS it applies the configured GnuTLS priorities and, for mutual TLS,
 * makes every handshake require a client certificate that chains to the
 * configured CAs and carries one of the allowed names.
 *
 * Several rules here work around how libmicrohttpd 0.9.75 (Debian 12) behaves
 * on hostile input; docs/architecture.md lists them and
 * tests/e2e/test_http_hardening.py pins each one down on the wire. */
#include "http/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

#include "core/kclock.h"
#include "core/kerr.h"
#include "core/log.h"
#include "core/secmem.h"

/* Whitespace allowed between a header's colon and its value; anything
 * longer is refused along with folded lines (see header_is_folded). */
#define HEADER_OWS_MAX 64

/* Bounds on the TLS settings; all of them come from the operator's
 * configuration, and none is anywhere near these in practice. */
#define TLS_PRIORITY_MAX 1024
#define TLS_CLIENT_NAMES_MAX 64
#define TLS_CLIENT_NAME_MAX 253 /* longest DNS name */

/* At shutdown, how long answers computed after the grace period still get
 * to go out (http_server_stop). */
#define HTTP_STOP_ANSWER_MS 200

struct http_server {
  struct MHD_Daemon *daemon;
  http_handler_fn handler;
  void *handler_ctx;
  size_t max_body;
  uint16_t port;
  char *tls_cert;
  char *tls_key;
  char *tls_priority;          /* NULL: the library's default */
  char *tls_client_ca;         /* NULL: no client certificate asked */
  char **tls_client_names;     /* tls_client_name_count copies */
  size_t tls_client_name_count;
  atomic_int in_flight;
  char start_error[512]; /* last libmicrohttpd message while starting */
  int starting;
  /* Refused client certificates are logged at most once a second, so a
   * client that needs no credentials cannot flood the log; the next line
   * counts the ones left out. */
  atomic_llong refusal_logged_s;
  atomic_ulong refusals_unlogged;
  atomic_int stopping;   /* set by http_server_stop: new connections are turned away */
  http_offload *offload; /* the waiting threads that run reruns */
};

struct rerun_job;

/* One connection and the request it is reading or answering.
 *
 * It is made when libmicrohttpd accepts the connection and freed when it
 * reports the connection closed, which it does exactly once on every path.
 * NOTIFY_COMPLETED is not that reliable: when a request dies inside the
 * library before the access handler runs (0.9.75: an error it queues while
 * parsing the request line), the request is never reported complete.  So
 * nothing a request holds is allocated per request in the URI callback on
 * its own: it hangs off the connection and is released when the request
 * completes, when the next request starts, or at the latest when the
 * connection closes. */
typedef struct conn_state {
  /* The connection's own, kept across its requests. */
  http_server *server;
  /* mTLS: the connection's GnuTLS session while it is in the session
   * registry (see verify_client_certificate), else NULL. */
  gnutls_session_t tls_session;
  struct conn_state *tls_next;  /* next in its registry bucket */
  /* The last request answered on a waiting thread waited there
   * (http_response.waited): the next one goes straight to a waiting
   * thread.  A client that keeps a connection for one kind of request -
   * an SDK calling on one external key - then costs one pass, not two. */
  int wait_hint;
  char wait_on[HTTP_WAIT_LANE_MAX]; /* what that request waited on */
  /* The client's address, formatted at the connection's first request
   * ("" until then): the same for every request of the connection. */
  char peer[HTTP_PEER_MAX];
  /* The current request; end_request() resets everything from here on. */
  char *raw_target;      /* as sent; NULL when over HTTP_REQUEST_TARGET_MAX */
  /* The request's rerun, from the moment the connection is suspended for
   * it until its answer is queued (or the connection closes). */
  struct rerun_job *job;
  int target_too_long;
  int headers_seen;
  int counted;           /* counted in server->in_flight */
  int responded;
  int too_large;         /* body over the cap: read and dropped, then 413 */
  int refusal_status;    /* 400 / 414: answered before the body, then closed */
  const char *refusal_reason;
  uint8_t *body;
  size_t body_len;
  size_t body_cap;
  uint64_t discarded;    /* bytes of an oversized body read and dropped */
  int64_t discard_deadline_ms;
} conn_state;

/* Releases a response body once libmicrohttpd has sent it. */
typedef struct body_owner {
  char *body;
  size_t len;
  void (*body_free)(void *body, size_t len);
} body_owner;

int http_response_header(http_response *r, const char *name, const char *value) {
  if (!r || !name || !value || r->nheaders >= HTTP_RESPONSE_HEADERS_MAX) return -1;
  size_t nl = strlen(name), vl = strlen(value);
  if (nl == 0 || nl >= HTTP_HEADER_NAME_MAX || vl >= HTTP_HEADER_VALUE_MAX) return -1;
  /* A CR or LF would let a value inject headers of its own. */
  if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) return -1;
  memcpy(r->headers[r->nheaders].name, name, nl + 1);
  memcpy(r->headers[r->nheaders].value, value, vl + 1);
  r->nheaders++;
  return 0;
}

const char *http_request_header(const http_request *req, const char *name) {
  if (!req || !name) return NULL;
  for (size_t i = 0; i < req->nheaders; i++)
    if (req->headers[i].name && strcasecmp(req->headers[i].name, name) == 0)
      return req->headers[i].value;
  return NULL;
}

kerr_code http_parse_listen(const char *spec, char host[HTTP_HOST_MAX], uint16_t *port, kerr *err) {
  if (!spec || !*spec) return kerr_set(err, KERR_VALIDATION, "listen address is empty");
  size_t len = strlen(spec);
  if (len > 128) return kerr_set(err, KERR_VALIDATION, "listen address is too long");

  const char *host_start, *host_end, *port_str;
  if (spec[0] == '[') {
    host_start = spec + 1;
    host_end = strchr(host_start, ']');
    if (!host_end || host_end[1] != ':')
      return kerr_set(err, KERR_VALIDATION, "listen address '%s': expected [IPv6]:PORT", spec);
    port_str = host_end + 2;
  } else {
    host_start = spec;
    host_end = strrchr(spec, ':');
    if (!host_end)
      return kerr_set(err, KERR_VALIDATION, "listen address '%s': expected HOST:PORT", spec);
    if (memchr(spec, ':', (size_t)(host_end - spec)))
      return kerr_set(err, KERR_VALIDATION,
                      "listen address '%s': write IPv6 addresses as [ADDR]:PORT", spec);
    port_str = host_end + 1;
  }
  size_t hl = (size_t)(host_end - host_start);
  if (hl == 0 || hl >= HTTP_HOST_MAX)
    return kerr_set(err, KERR_VALIDATION, "listen address '%s': bad host", spec);
  memcpy(host, host_start, hl);
  host[hl] = '\0';
  if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");

  if (!*port_str || strlen(port_str) > 5 || strspn(port_str, "0123456789") != strlen(port_str))
    return kerr_set(err, KERR_VALIDATION, "listen address '%s': port must be a number", spec);
  long p = strtol(port_str, NULL, 10);
  if (p > 65535)
    return kerr_set(err, KERR_VALIDATION, "listen address '%s': port must be 0-65535", spec);

  struct in_addr a4;
  struct in6_addr a6;
  int is_v6 = spec[0] == '[';
  if ((is_v6 && inet_pton(AF_INET6, host, &a6) != 1) || (!is_v6 && inet_pton(AF_INET, host, &a4) != 1))
    return kerr_set(err, KERR_VALIDATION,
                    "listen address '%s': host must be a numeric %s address", spec,
                    is_v6 ? "IPv6" : "IPv4");
  *port = (uint16_t)p;
  return KERR_OK;
}

int http_host_is_loopback(const char *host) {
  struct in_addr a4;
  struct in6_addr a6;
  if (!host) return 0;
  if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  if (inet_pton(AF_INET6, host, &a6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return 1;
    if (IN6_IS_ADDR_V4MAPPED(&a6)) return a6.s6_addr[12] == 127;
  }
  return 0;
}

kerr_code http_read_pem_file(const char *path, size_t max, char **out, kerr *err) {
  kerr_code rc = KERR_OK;
  char *buf = NULL;
  size_t len = 0;
  FILE *f = fopen(path, "rb");
  *out = NULL;
  if (!f) return kerr_set(err, KERR_VALIDATION, "cannot open %s: %s", path, strerror(errno));
  buf = secure_alloc(max + 1);
  if (!buf) {
    rc = kerr_set(err, KERR_INTERNAL, "out of memory reading %s", path);
    goto out;
  }
  len = fread(buf, 1, max + 1, f);
  if (ferror(f)) {
    rc = kerr_set(err, KERR_VALIDATION, "cannot read %s", path);
    goto out;
  }
  if (len > max) {
    rc = kerr_set(err, KERR_VALIDATION, "%s is larger than %zu bytes", path, max);
    goto out;
  }
  buf[len] = '\0';
  if (len == 0 || strlen(buf) != len || !strstr(buf, "-----BEGIN ")) {
    rc = kerr_set(err, KERR_VALIDATION, "%s is not a PEM file", path);
    goto out;
  }
  /* Hand back an exact-size copy so the caller can wipe it knowing only
   * the text. */
  *out = secure_alloc(len + 1);
  if (!*out) {
    rc = kerr_set(err, KERR_INTERNAL, "out of memory reading %s", path);
    goto out;
  }
  memcpy(*out, buf, len + 1);
out:
  /* A key file holds a secret: never leave it in freed memory. */
  if (buf) secure_free(buf, max + 1);
  fclose(f);
  return rc;
}

__attribute__((format(printf, 2, 0))) static void mhd_logger(void *cls, const char *fmt, va_list ap) {
  http_server *s = cls;
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  size_t n = strlen(line);
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
  if (s->starting) snprintf(s->start_error, sizeof s->start_error, "%s", line);
  log_msg(LOG_DEBUG, NULL, "http: %s", line);
}

static int64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void rerun_job_free(struct rerun_job *j);

/* Forget the current request: free what it holds and take it out of the
 * in-flight count if it was in.  Safe to call more than once.  Never called
 * while the connection is suspended (libmicrohttpd reports nothing of a
 * suspended connection), so a job is never freed under its thread. */
static void end_request(conn_state *c) {
  if (c->job) rerun_job_free(c->job);
  if (c->body) secure_free(c->body, c->body_cap);
  free(c->raw_target);
  if (c->counted) atomic_fetch_sub(&c->server->in_flight, 1);
  size_t keep = offsetof(conn_state, raw_target);
  memset((char *)c + keep, 0, sizeof *c - keep);
}

/* ---------------------------------------------------------------- mTLS
 *
 * GnuTLS calls a session's verify function in the middle of the handshake,
 * with nothing but the session.  The function needs the server's allowed
 * names, and the session's user pointer is not free to carry them:
 * libmicrohttpd 0.9.75 keeps its own connection there (its PSK callback
 * reads it back).  So each mTLS connection's state is entered in this
 * registry, keyed by its session, from the moment the connection is
 * announced (before any byte of the handshake is read) until it closes.  A
 * session not found is refused. */

#define TLS_REGISTRY_BUCKETS 256

static pthread_mutex_t tls_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static conn_state *tls_registry[TLS_REGISTRY_BUCKETS];

static size_t tls_registry_bucket(gnutls_session_t session) {
  uintptr_t v = (uintptr_t)session;
  return (size_t)((v >> 4) ^ (v >> 12)) % TLS_REGISTRY_BUCKETS;
}

static void tls_registry_add(conn_state *c, gnutls_session_t session) {
  size_t b = tls_registry_bucket(session);
  pthread_mutex_lock(&tls_registry_lock);
  c->tls_session = session;
  c->tls_next = tls_registry[b];
  tls_registry[b] = c;
  pthread_mutex_unlock(&tls_registry_lock);
}

static void tls_registry_remove(conn_state *c) {
  if (!c->tls_session) return;
  size_t b = tls_registry_bucket(c->tls_session);
  pthread_mutex_lock(&tls_registry_lock);
  for (conn_state **at = &tls_registry[b]; *at; at = &(*at)->tls_next)
    if (*at == c) {
      *at = c->tls_next;
      break;
    }
  pthread_mutex_unlock(&tls_registry_lock);
  c->tls_session = NULL;
  c->tls_next = NULL;
}

/* The server a registered session belongs to, or NULL.  The server outlives
 * its connections, so the pointer stays good after the lock is let go. */
static http_server *tls_registry_server(gnutls_session_t session) {
  http_server *s = NULL;
  size_t b = tls_registry_bucket(session);
  pthread_mutex_lock(&tls_registry_lock);
  for (conn_state *c = tls_registry[b]; c; c = c->tls_next)
    if (c->tls_session == session) {
      s = c->server;
      break;
    }
  pthread_mutex_unlock(&tls_registry_lock);
  return s;
}

/* Non-zero when the DER certificate is valid for one of the server's
 * allowed client names (or no names are configured). */
static int client_name_allowed(const http_server *s, const gnutls_datum_t *der) {
  if (s->tls_client_name_count == 0) return 1;
  gnutls_x509_crt_t crt;
  int allowed = 0;
  if (gnutls_x509_crt_init(&crt) < 0) return 0;
  if (gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER) == 0)
    for (size_t i = 0; i < s->tls_client_name_count && !allowed; i++)
      allowed = gnutls_x509_crt_check_hostname(crt, s->tls_client_names[i]) != 0;
  gnutls_x509_crt_deinit(crt);
  return allowed;
}

/* One log line for a refused client certificate, unless one went out this
 * second already (then it is only counted). */
static void log_refusal(http_server *s, const char *why) {
  struct timespec now;
  long long sec, last;
  clock_gettime(CLOCK_MONOTONIC, &now);
  sec = (long long)now.tv_sec;
  last = atomic_load(&s->refusal_logged_s);
  if (last == sec || !atomic_compare_exchange_strong(&s->refusal_logged_s, &last, sec)) {
    atomic_fetch_add(&s->refusals_unlogged, 1);
    return;
  }
  unsigned long skipped = atomic_exchange(&s->refusals_unlogged, 0);
  if (skipped)
    log_msg(LOG_INFO, NULL, "http: client certificate refused: %s (and %lu more refused, not logged)", why,
            skipped);
  else
    log_msg(LOG_INFO, NULL, "http: client certificate refused: %s", why);
}

/* The session's verify function: runs once the client's certificate is in
 * and before the handshake completes.  Non-zero aborts the handshake, so no
 * request is ever read from a client that fails here. */
static int verify_client_certificate(gnutls_session_t session) {
  http_server *s = tls_registry_server(session);
  if (!s) {
    log_msg(LOG_WARN, NULL, "http: TLS handshake refused: connection state missing");
    return -1;
  }
  /* The chain must end at one of the configured CAs (libmicrohttpd loaded
   * them as the credentials' trust list) and every certificate in it must
   * be within its validity period.  A certificate whose extended key usage
   * names purposes but not TLS client authentication is refused too. */
  gnutls_typed_vdata_st purpose = {GNUTLS_DT_KEY_PURPOSE_OID,
                                   (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT, 0};
  unsigned status = 0;
  int r = gnutls_certificate_verify_peers(session, &purpose, 1, &status);
  if (r < 0) {
    log_refusal(s, gnutls_strerror(r));
    return -1;
  }
  if (status != 0) {
    gnutls_datum_t why = {NULL, 0};
    if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0) == 0) {
      log_refusal(s, (const char *)why.data);
      gnutls_free(why.data);
    } else {
      log_refusal(s, "the certificate does not verify");
    }
    return -1;
  }
  unsigned npeers = 0;
  const gnutls_datum_t *peers = gnutls_certificate_get_peers(session, &npeers);
  if (!peers || npeers == 0 || !client_name_allowed(s, &peers[0])) {
    log_refusal(s, "not issued to an allowed name");
    return -1;
  }
  return 0;
}

/* Make this connection's handshake require a client certificate and check
 * it.  `c` may be NULL (out of memory): the handshake is then still made to
 * require and check one, and the check fails, finding no registered state.
 * Returns 0, or -1 when the connection cannot be checked (no session, or no
 * state); its requests are then refused (on_uri and on_request see no
 * state). */
static int require_client_certificate(conn_state *c, struct MHD_Connection *conn) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
  gnutls_session_t session = ci ? (gnutls_session_t)ci->tls_session : NULL;
  if (!session) return -1;
  if (c) tls_registry_add(c, session);
  /* libmicrohttpd only asks (GNUTLS_CERT_REQUEST) when given a trust list,
   * and checks nothing: a client could send none, or any. */
  gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE);
  gnutls_session_set_verify_function(session, verify_client_certificate);
  return c ? 0 : -1;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  http_server *s = cls;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    conn_state *c = calloc(1, sizeof *c);
    if (c) c->server = s;
    if (s->tls_client_ca && require_client_certificate(c, conn) != 0) {
      /* Unchecked, the connection must not be served at all. */
      log_msg(LOG_WARN, NULL, "http: cannot check a client certificate; refusing the connection");
      if (c) tls_registry_remove(c);
      free(c);
      c = NULL;
    }
    *socket_context = c; /* NULL: on_uri refuses the connection's requests */
    return;
  }
  conn_state *c = *socket_context;
  if (!c) return;
  tls_registry_remove(c);
  end_request(c);
  free(c);
  *socket_context = NULL;
}

/* Called with the request line's target, before libmicrohttpd parses it. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
  (void)cls;
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  conn_state *c = ci ? ci->socket_context : NULL;
  if (!c) return NULL;
  end_request(c); /* a request the library never reported complete */
  if (!uri) uri = "/";
  size_t len = strnlen(uri, HTTP_REQUEST_TARGET_MAX + 1);
  if (len > HTTP_REQUEST_TARGET_MAX) {
    c->target_too_long = 1;
  } else {
    c->raw_target = strndup(uri, len);
    if (!c->raw_target) return NULL;
  }
  /* libmicrohttpd 0.9.75 splits the query into one record per parameter in
   * the connection's memory pool right after this callback returns.  When
   * they do not fit (a few hundred "a=b&" are enough) it queues a 431 it
   * never sends, leaves the connection blocked until the idle timeout and
   * never reports the request complete.  kmsd never reads those records (it
   * keeps the raw target above, and SigV4 parses the query itself), so the
   * query is ended where the library is about to parse it: the target lives
   * in the library's own writable read buffer, and only the library's copy
   * of the query, which nothing reads, is cut. */
  char *query = strchr(uri, '?');
  if (query) query[1] = '\0';
  return c;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)conn;
  (void)toe;
  conn_state *c = *con_cls;
  if (!c) return;
  end_request(c);
  *con_cls = NULL;
}

static void release_body(void *cls) {
  body_owner *o = cls;
  if (!o) return;
  if (o->body_free)
    o->body_free(o->body, o->len);
  else
    free(o->body);
  free(o);
}

static void drop_response_body(http_response *r) {
  if (!r->body) return;
  if (r->body_free)
    r->body_free(r->body, r->body_len);
  else
    free(r->body);
  r->body = NULL;
  r->body_len = 0;
  r->body_free = NULL;
}

/* The answer of last resort, when the callback did not produce a usable one
 * for a refused request or memory ran out.  Same AWS JSON error shape;
 * `status` 0 takes the code's own. */
static void fallback_error(http_response *r, kerr_code code, int status, const char *message) {
  drop_response_body(r);
  r->nheaders = 0;
  r->status = status ? status : kerr_http_status(code);
  char buf[512];
  int n = snprintf(buf, sizeof buf, "{\"__type\":\"%s\",\"message\":\"%s\"}", kerr_name(code), message);
  r->body = strndup(buf, (size_t)n);
  r->body_len = r->body ? (size_t)n : 0;
  http_response_header(r, "Content-Type", "application/x-amz-json-1.1");
}

typedef struct header_list {
  http_header *items;
  size_t n;
  size_t cap;
} header_list;

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      size_t key_size, const char *value, size_t value_size) {
  header_list *l = cls;
  (void)kind;
  (void)key_size;
  (void)value_size;
  if (l->n == l->cap) return MHD_NO;
  l->items[l->n].name = key;
  l->items[l->n].value = value ? value : "";
  l->n++;
  return MHD_YES;
}

/* What the framing check learns from the header fields. */
typedef struct framing {
  const char *problem;           /* first reason to refuse, or NULL */
  unsigned content_lengths;
  unsigned transfer_encodings;
  const char *content_length;
  const char *transfer_encoding;
  int expect_continue;
} framing;

/* RFC 9110 token characters, the only ones a field name may hold. */
static int is_token_char(unsigned char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* libmicrohttpd 0.9.75 accepts obs-fold continuation lines and hides them:
 * it appends the continuation to the header's *name* in a fresh allocation
 * and keeps the value from the first line, so "Content-: 5" followed by
 * " Length" reaches us as a Content-Length it also frames the body by.  An
 * unfolded header's value follows its name in the library's read buffer,
 * separated only by the colon (now a NUL) and optional whitespace; a folded
 * one's does not.  Addresses are compared as integers: the two strings need
 * not be parts of one object. */
static int header_is_folded(const char *key, size_t key_size, const char *value) {
  uintptr_t after_colon = (uintptr_t)key + key_size + 1, at = (uintptr_t)value;
  if (at < after_colon || at - after_colon > HEADER_OWS_MAX) return 1;
  for (size_t i = 0, gap = (size_t)(at - after_colon); i < gap; i++)
    if (key[key_size + 1 + i] != ' ' && key[key_size + 1 + i] != '\t') return 1;
  return 0;
}

static enum MHD_Result check_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    size_t key_size, const char *value, size_t value_size) {
  framing *f = cls;
  (void)kind;
  (void)value_size;
  if (!value) value = "";
  if (key_size == 0) {
    if (!f->problem) f->problem = "A request header has an empty name";
    return MHD_YES;
  }
  for (size_t i = 0; i < key_size; i++)
    if (!is_token_char((unsigned char)key[i])) {
      /* "Transfer-Encoding : chunked" arrives as a header named
       * "Transfer-Encoding " that the library does not frame by, while a
       * proxy in front may. */
      if (!f->problem)
        f->problem = "A request header name holds whitespace or another character "
                     "a field name may not hold";
      return MHD_YES;
    }
  if (header_is_folded(key, key_size, value)) {
    if (!f->problem)
      f->problem = "A request header is folded over several lines (obs-fold) or malformed";
    return MHD_YES;
  }
  if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
    f->content_lengths++;
    f->content_length = value;
  } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
    f->transfer_encodings++;
    f->transfer_encoding = value;
  } else if (strcasecmp(key, MHD_HTTP_HEADER_EXPECT) == 0 &&
             strcasecmp(value, "100-continue") == 0) {
    f->expect_continue = 1;
  }
  return MHD_YES;
}

/* Refuse any request whose end two HTTP parsers could place differently
 * (RFC 9112 section 6.3): kmsd may sit behind a proxy, and bytes one of them
 * takes for a body the other would run as a request of its own. */
static void check_framing(struct MHD_Connection *conn, framing *f) {
  memset(f, 0, sizeof *f);
  MHD_get_connection_values_n(conn, MHD_HEADER_KIND, check_header, f);
  if (f->problem) return;
  if (f->content_lengths > 1)
    f->problem = "A request may carry only one Content-Length header";
  else if (f->transfer_encodings > 1)
    f->problem = "A request may carry only one Transfer-Encoding header";
  else if (f->transfer_encodings && f->content_lengths)
    f->problem = "A request may not carry both Content-Length and Transfer-Encoding";
  else if (f->transfer_encodings && strcasecmp(f->transfer_encoding, "chunked") != 0)
    f->problem = "The only Transfer-Encoding accepted is chunked";
  else if (f->content_lengths &&
           (!*f->content_length || strlen(f->content_length) > 20 ||
            strspn(f->content_length, "0123456789") != strlen(f->content_length)))
    f->problem = "Content-Length must be a single decimal number";
}

/* The service clock (kclock, which --clock-offset moves) as an HTTP date:
 * SigV4 checks request times against that clock, and clients such as the
 * AWS SDK for JavaScript correct their own clock from this header. */
static void format_http_date(char *out, size_t out_size) {
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  /* Each event thread formats a second once, not once per answer. */
  static _Thread_local time_t cached_s;
  static _Thread_local char cached[80];
  time_t now = (time_t)kclock_now_s();
  struct tm tm;
  size_t n;
  if (cached[0] && now == cached_s && (n = strlen(cached)) < out_size) {
    memcpy(out, cached, n + 1);
    return;
  }
  if (!gmtime_r(&now, &tm)) {
    out[0] = '\0';
    return;
  }
  snprintf(out, out_size, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
           months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  n = strlen(out);
  if (n < sizeof cached) {
    memcpy(cached, out, n + 1);
    cached_s = now;
  }
}

static void format_peer(struct MHD_Connection *conn, char *out, size_t out_size) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  char host[INET6_ADDRSTRLEN + 16], serv[8];
  snprintf(out, out_size, "-");
  if (!ci || !ci->client_addr) return;
  socklen_t alen = ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                          : sizeof(struct sockaddr_in);
  if (getnameinfo(ci->client_addr, alen, host, sizeof host, serv, sizeof serv,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return;
  if (ci->client_addr->sa_family == AF_INET6)
    snprintf(out, out_size, "[%s]:%s", host, serv);
  else
    snprintf(out, out_size, "%s:%s", host, serv);
}

/* Queue `resp` as the connection's answer, taking its body over; whatever
 * is left of it is released.  The request body may carry a plaintext and
 * is not needed any more: wiped here.  `closing` adds Connection: close
 * (the library then closes once it is sent). */
static enum MHD_Result queue_answer(struct MHD_Connection *conn, conn_state *c,
                                    http_response *resp, int closing) {
  char date[80]; /* 29 bytes in practice; room for any int the format could print */
  struct MHD_Response *mr = NULL;
  body_owner *owner = NULL;
  enum MHD_Result ret;

  if (c->body) {
    secure_free(c->body, c->body_cap);
    c->body = NULL;
    c->body_len = c->body_cap = 0;
  }
  if (resp->body && resp->body_len > 0) {
    owner = malloc(sizeof *owner);
    if (owner) {
      owner->body = resp->body;
      owner->len = resp->body_len;
      owner->body_free = resp->body_free;
      mr = MHD_create_response_from_buffer_with_free_callback_cls(resp->body_len, resp->body,
                                                                  release_body, owner);
      if (mr) resp->body = NULL; /* now owned by the response */
      else free(owner);
    }
  } else {
    mr = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  }
  drop_response_body(resp);
  if (!mr) return MHD_NO;
  for (size_t i = 0; i < resp->nheaders; i++) {
    /* These two are the server's to set. */
    if (strcasecmp(resp->headers[i].name, MHD_HTTP_HEADER_DATE) == 0 ||
        strcasecmp(resp->headers[i].name, MHD_HTTP_HEADER_CONNECTION) == 0)
      continue;
    MHD_add_response_header(mr, resp->headers[i].name, resp->headers[i].value);
  }
  format_http_date(date, sizeof date);
  if (date[0]) MHD_add_response_header(mr, MHD_HTTP_HEADER_DATE, date);
  if (closing) MHD_add_response_header(mr, MHD_HTTP_HEADER_CONNECTION, "close");
  ret = MHD_queue_response(conn, (unsigned)resp->status, mr);
  MHD_destroy_response(mr);
  return ret;
}

/* ------------------------------------------------------------- reruns
 *
 * A request the callback asked to run again where it may wait.  The event
 * thread suspends the connection (libmicrohttpd then neither reads, writes
 * nor times it out, and reports nothing about it) and queues a job that
 * owns a copy of the request; a waiting thread calls the callback with it,
 * keeps the answer in the job, and resumes the connection as the last
 * thing it does; libmicrohttpd then calls the access handler again on the
 * connection's own thread, which queues that answer (answer_rerun) and
 * frees the job.  A client that went away meanwhile is noticed only then:
 * the answer fails to go out and the connection is closed as usual.  Every
 * job ends in a resume, also at shutdown (http_offload_stop runs the ones
 * still queued, refused), and http_server_stop stops the pool before the
 * daemon: libmicrohttpd must not be stopped with a connection suspended. */

typedef struct rerun_job {
  http_offload_job base;       /* first: the pool hands this back to run_rerun */
  http_server *server;
  struct MHD_Connection *conn;
  /* The request, owned. */
  char *method;
  char *target;                /* path, then (after its NUL) the query */
  const char *query;           /* inside target, or NULL */
  http_header *headers;
  size_t nheaders;
  char *header_text;           /* what the headers point to */
  uint8_t *body;               /* the connection's buffer, taken over */
  size_t body_len;
  size_t body_cap;
  char peer[HTTP_PEER_MAX];
  char state[HTTP_RERUN_STATE_MAX];
  /* The answer, filled on the waiting thread before `done`. */
  http_response resp;
  atomic_int done;
} rerun_job;

static void rerun_job_free(rerun_job *j) {
  if (!j) return;
  free(j->method);
  free(j->target);
  free(j->headers);
  free(j->header_text);
  if (j->body) secure_free(j->body, j->body_cap);
  drop_response_body(&j->resp);
  free(j);
}

/* A job for `req` (being dispatched on `c`): copies of the method and the
 * headers, and the target (*target, with the query `query` inside) and the
 * connection's body taken over.  NULL when out of memory; nothing is taken
 * then. */
static rerun_job *rerun_job_new(http_server *s, struct MHD_Connection *conn, conn_state *c,
                                const http_request *req, char **target, const char *query,
                                const char *state) {
  rerun_job *j = calloc(1, sizeof *j);
  size_t text = 0, at = 0;
  if (!j) return NULL;
  for (size_t i = 0; i < req->nheaders; i++)
    text += strlen(req->headers[i].name) + strlen(req->headers[i].value) + 2;
  j->method = strdup(req->method ? req->method : "");
  j->headers = calloc(req->nheaders ? req->nheaders : 1, sizeof *j->headers);
  j->header_text = malloc(text ? text : 1);
  if (!j->method || !j->headers || !j->header_text) {
    rerun_job_free(j);
    return NULL;
  }
  for (size_t i = 0; i < req->nheaders; i++) {
    size_t nl = strlen(req->headers[i].name) + 1, vl = strlen(req->headers[i].value) + 1;
    memcpy(j->header_text + at, req->headers[i].name, nl);
    j->headers[i].name = j->header_text + at;
    at += nl;
    memcpy(j->header_text + at, req->headers[i].value, vl);
    j->headers[i].value = j->header_text + at;
    at += vl;
  }
  j->nheaders = req->nheaders;
  j->server = s;
  j->conn = conn;
  j->target = *target;
  *target = NULL;
  j->query = query;
  j->body = c->body;
  j->body_len = c->body_len;
  j->body_cap = c->body_cap;
  c->body = NULL;
  c->body_len = c->body_cap = 0;
  snprintf(j->peer, sizeof j->peer, "%s", req->peer ? req->peer : "-");
  snprintf(j->state, sizeof j->state, "%s", state);
  atomic_init(&j->done, 0);
  return j;
}

/* Refuse an answer that asks for a rerun where none can happen. */
static void no_second_rerun(http_response *resp) {
  if (!resp->rerun) return;
  log_msg(LOG_ERROR, NULL, "http: a request asked for a rerun where none is possible");
  fallback_error(resp, KERR_INTERNAL, 0, "An internal error occurred");
  resp->rerun = 0;
}

/* The pool's run function, on a waiting thread. */
static void run_rerun(http_offload_job *base, int refused) {
  rerun_job *j = (rerun_job *)base;
  struct MHD_Connection *conn = j->conn;
  http_request req;
  memset(&req, 0, sizeof req);
  req.method = j->method;
  req.path = j->target;
  req.query = j->query;
  req.headers = j->headers;
  req.nheaders = j->nheaders;
  req.body = j->body;
  req.body_len = j->body_len;
  req.peer = j->peer;
  req.may_wait = refused ? 0 : 1;
  req.rerun_state = j->state[0] ? j->state : NULL; /* "": sent here at once (wait_hint) */
  req.wait_refused = refused;
  memset(&j->resp, 0, sizeof j->resp);
  j->server->handler(j->server->handler_ctx, &req, &j->resp);
  no_second_rerun(&j->resp);
  j->resp.wait_on[sizeof j->resp.wait_on - 1] = '\0';
  if (j->resp.status < 100 || j->resp.status > 599) j->resp.status = 500;
  /* The request body may carry a plaintext; it is not needed any more. */
  if (j->body) {
    secure_free(j->body, j->body_cap);
    j->body = NULL;
    j->body_len = j->body_cap = 0;
  }
  atomic_store(&j->done, 1);
  /* The last touch: from here the connection's thread owns the job. */
  MHD_resume_connection(conn);
}

/* Suspend the connection and queue a job for the request being dispatched,
 * to be called with rerun_state `state` ("" for none) on a waiting thread.
 * 1 when it was; else 0 with *refused set (HTTP_WAIT_QUEUE_FULL or
 * HTTP_WAIT_STOPPING), or -1 when out of memory; nothing is taken then. */
static int hand_over(http_server *s, struct MHD_Connection *conn, conn_state *c,
                     const http_request *req, char **target, const char *query, const char *state,
                     const char *lane, int *refused) {
  rerun_job *j;
  *refused = http_offload_reserve(s->offload);
  if (*refused) return 0;
  j = rerun_job_new(s, conn, c, req, target, query, state);
  if (!j) {
    http_offload_cancel(s->offload);
    return -1;
  }
  j->base.run = run_rerun;
  snprintf(j->base.lane, sizeof j->base.lane, "%s", lane);
  c->job = j;
  /* Suspended before it is queued: the job's thread may resume it as soon
   * as it is. */
  MHD_suspend_connection(conn);
  http_offload_submit(s->offload, &j->base);
  return 1;
}

/* Hand the request being dispatched to a waiting thread.  1 when it was:
 * the connection is suspended and the answer comes with the rerun.  0 when
 * `resp` holds the answer to send now: the callback's, called again here
 * with wait_refused when there is no room (or the server is stopping), or
 * a 500 when out of memory. */
static int offload(http_server *s, struct MHD_Connection *conn, conn_state *c, http_request *req,
                   http_response *resp, char **target, const char *query) {
  char state[HTTP_RERUN_STATE_MAX];
  int refused, handed;
  memcpy(state, resp->rerun_state, sizeof state);
  state[sizeof state - 1] = '\0';
  resp->wait_on[sizeof resp->wait_on - 1] = '\0';
  drop_response_body(resp);
  handed = hand_over(s, conn, c, req, target, query, state, resp->wait_on, &refused);
  if (handed) {
    if (handed > 0) return 1;
    fallback_error(resp, KERR_INTERNAL, 0, "out of memory");
    resp->rerun = 0;
    return 0;
  }
  memset(resp, 0, sizeof *resp);
  req->rerun_state = state;
  req->wait_refused = refused;
  s->handler(s->handler_ctx, req, resp);
  no_second_rerun(resp);
  return 0;
}

/* The access handler's call after a rerun resumed the connection: send the
 * rerun's answer. */
static enum MHD_Result answer_rerun(struct MHD_Connection *conn, conn_state *c) {
  rerun_job *j = c->job;
  enum MHD_Result ret;
  /* Only a resume ends a suspension, and the job is done before it. */
  if (!atomic_load(&j->done)) return MHD_YES;
  c->wait_hint = j->resp.waited;
  memcpy(c->wait_on, j->resp.wait_on, sizeof c->wait_on);
  ret = queue_answer(conn, c, &j->resp, 0);
  c->job = NULL;
  rerun_job_free(j);
  return ret;
}

/* Build the request, run the callback, queue its answer (or hand the
 * request to a waiting thread when the callback asks).  A refused request
 * or an oversized body ends the connection: its answer carries
 * Connection: close and the library closes once it is sent. */
static enum MHD_Result dispatch(http_server *s, struct MHD_Connection *conn, conn_state *c,
                                const char *method) {
  http_request req;
  http_response resp;
  header_list hl = {0};
  char *path = NULL;
  char *q = NULL;
  enum MHD_Result ret = MHD_NO;
  int closing = c->refusal_status || c->too_large;

  memset(&req, 0, sizeof req);
  memset(&resp, 0, sizeof resp);
  c->responded = 1;

  int count = MHD_get_connection_values_n(conn, MHD_HEADER_KIND, NULL, NULL);
  hl.cap = count > 0 ? (size_t)count : 0;
  hl.items = calloc(hl.cap ? hl.cap : 1, sizeof *hl.items);
  /* An over-long target is not handed on; "/" stands in for it. */
  path = strdup(c->raw_target ? c->raw_target : "/");
  if (!hl.items || !path) {
    fallback_error(&resp, KERR_INTERNAL, 0, "out of memory");
    goto respond;
  }
  MHD_get_connection_values_n(conn, MHD_HEADER_KIND, collect_header, &hl);
  /* A fragment is never part of the signed request.  It starts at the first
   * '#' wherever that is (RFC 3986), so it is cut before the query is split
   * off: "/a#b?c=d" is path "/a" and no query. */
  char *frag = strchr(path, '#');
  if (frag) *frag = '\0';
  q = strchr(path, '?');
  if (q) *q++ = '\0';
  if (!c->peer[0]) format_peer(conn, c->peer, sizeof c->peer); /* never "" once formatted */

  req.method = method;
  req.path = path;
  req.query = q;
  req.headers = hl.items;
  req.nheaders = hl.n;
  req.body = c->too_large ? NULL : c->body;
  req.body_len = c->too_large ? 0 : c->body_len;
  req.peer = c->peer;
  req.body_too_large = c->too_large;
  req.refusal_status = c->refusal_status;
  req.refusal_reason = c->refusal_reason;

  /* After a request that waited, the next one goes to a waiting thread
   * without a pass here; when there is no room it runs here as any other. */
  if (c->wait_hint && !closing) {
    int refused;
    if (hand_over(s, conn, c, &req, &path, q, "", c->wait_on, &refused) > 0) {
      ret = MHD_YES; /* suspended; answered by answer_rerun */
      goto out;
    }
    c->wait_hint = 0;
  }
  s->handler(s->handler_ctx, &req, &resp);
  /* The fast path ends at this test: a request answered at once takes
   * nothing from the rerun machinery. */
  if (resp.rerun && !closing && offload(s, conn, c, &req, &resp, &path, q)) {
    ret = MHD_YES; /* suspended; answered by answer_rerun */
    goto out;
  }
  no_second_rerun(&resp);
  if (c->refusal_status && resp.status != c->refusal_status)
    fallback_error(&resp, c->refusal_status == 414 ? KERR_VALIDATION : KERR_SERIALIZATION,
                   c->refusal_status, c->refusal_reason);
  else if (c->too_large && resp.status < 400)
    fallback_error(&resp, KERR_REQUEST_TOO_LARGE, 0,
                   "Request body is larger than the server accepts");
  if (resp.status < 100 || resp.status > 599) resp.status = 500;

respond:
  ret = queue_answer(conn, c, &resp, closing);
out:
  free(hl.items);
  free(path);
  return ret;
}

/* First call for a request: its header fields are in.  Decide whether to
 * refuse it, read it, or read and drop an oversized body. */
static enum MHD_Result on_headers(http_server *s, struct MHD_Connection *conn, conn_state *c,
                                  const char *method, const char *version) {
  framing f;
  c->headers_seen = 1;
  /* Only requests that reach this point are waited for at shutdown; one
   * that died inside the library never gets here and is never counted. */
  c->counted = 1;
  atomic_fetch_add(&s->in_flight, 1);

  check_framing(conn, &f);
  /* HTTP/1.0 has no chunked coding: a 1.0 proxy in front would ignore the
   * Transfer-Encoding that libmicrohttpd frames by (RFC 9112 section 6.1). */
  if (!f.problem && f.transfer_encodings && (!version || strcmp(version, "HTTP/1.1") != 0))
    f.problem = "Transfer-Encoding is accepted only in HTTP/1.1 requests";
  if (c->target_too_long) {
    c->refusal_status = 414;
    c->refusal_reason = "The request target is longer than the server accepts";
  } else if (MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, NULL, NULL) > 0) {
    /* on_uri ended the library's copy of the query, so it can only have
     * parsed parameters behind a NUL byte that hid them from on_uri (and
     * from the raw target kmsd would sign). */
    c->refusal_status = 400;
    c->refusal_reason = "The request target holds a NUL byte";
  } else if (f.problem) {
    c->refusal_status = 400;
    c->refusal_reason = f.problem;
  }
  /* Answered before any of the body is read; the library then closes the
   * connection without reading on, so no byte after these headers is ever
   * taken for a request. */
  if (c->refusal_status) return dispatch(s, conn, c, method);

  if (f.content_length) {
    unsigned long long n = strtoull(f.content_length, NULL, 10);
    if (n > (unsigned long long)s->max_body) {
      c->too_large = 1;
      /* A client that waits for "100 Continue" has sent no body: answer
       * now.  So does a body too large to be worth reading. */
      if (f.expect_continue || n - s->max_body > HTTP_DISCARD_MAX)
        return dispatch(s, conn, c, method);
      /* Otherwise read it and drop it, then answer: a client that writes its
       * whole body before it reads would otherwise meet a closed connection
       * (EPIPE or a reset) instead of the 413. */
      c->discard_deadline_ms = monotonic_ms() + HTTP_DISCARD_TIMEOUT_MS;
    }
  }
  return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  http_server *s = cls;
  conn_state *c = *con_cls;
  (void)url;
  if (!c) return MHD_NO; /* out of memory when the connection or request line arrived */

  if (!c->headers_seen) return on_headers(s, conn, c, method, version);

  if (*upload_data_size > 0) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (c->responded) return MHD_YES;
    if (!c->too_large && n > s->max_body - c->body_len) {
      /* A chunked body that grew past the cap: drop what we hold and read
       * the rest into no buffer at all, then answer 413. */
      c->too_large = 1;
      c->discarded = c->body_len;
      secure_free(c->body, c->body_cap);
      c->body = NULL;
      c->body_len = c->body_cap = 0;
      c->discard_deadline_ms = monotonic_ms() + HTTP_DISCARD_TIMEOUT_MS;
    }
    if (c->too_large) {
      c->discarded += n;
      /* Draining is bounded in bytes and time; past either, the
       * connection is dropped without an answer. */
      if (c->discarded > s->max_body + HTTP_DISCARD_MAX ||
          monotonic_ms() > c->discard_deadline_ms) {
        log_msg(LOG_INFO, NULL, "http: dropped a connection still sending an oversized body");
        return MHD_NO;
      }
      return MHD_YES;
    }
    if (c->body_len + n > c->body_cap) {
      size_t cap = c->body_cap ? c->body_cap : 4096;
      while (cap < c->body_len + n) cap *= 2;
      if (cap > s->max_body) cap = s->max_body;
      /* Grow through secure_alloc so no copy of a plaintext is left behind. */
      uint8_t *nb = secure_alloc(cap);
      if (!nb) return MHD_NO;
      if (c->body) {
        memcpy(nb, c->body, c->body_len);
        secure_free(c->body, c->body_cap);
      }
      c->body = nb;
      c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, upload_data, n);
    c->body_len += n;
    return MHD_YES;
  }

  if (c->job) return answer_rerun(conn, c);
  if (c->responded) return MHD_YES;
  return dispatch(s, conn, c, method);
}

static void free_server(http_server *s) {
  if (!s) return;
  http_offload_free(s->offload);
  if (s->tls_key) secure_free(s->tls_key, strlen(s->tls_key) + 1);
  free(s->tls_cert);
  free(s->tls_priority);
  free(s->tls_client_ca);
  if (s->tls_client_names)
    for (size_t i = 0; i < s->tls_client_name_count; i++) free(s->tls_client_names[i]);
  free(s->tls_client_names);
  free(s);
}

/* KERR_VALIDATION unless GnuTLS accepts `priority`, saying where it stops
 * making sense. */
static kerr_code check_tls_priority(const char *priority, kerr *err) {
  size_t len = strnlen(priority, TLS_PRIORITY_MAX + 1);
  if (len == 0 || len > TLS_PRIORITY_MAX)
    return kerr_set(err, KERR_VALIDATION, "TLS priority string must be 1-%d characters",
                    TLS_PRIORITY_MAX);
  gnutls_priority_t cache;
  const char *where = NULL;
  int r = gnutls_priority_init(&cache, priority, &where);
  if (r < 0) {
    if (where && where >= priority && where < priority + len)
      return kerr_set(err, KERR_VALIDATION, "TLS priority string is not valid at '%.40s' (%s)",
                      where, gnutls_strerror(r));
    return kerr_set(err, KERR_VALIDATION, "TLS priority string is not valid (%s)",
                    gnutls_strerror(r));
  }
  gnutls_priority_deinit(cache);
  return KERR_OK;
}

/* KERR_VALIDATION unless `pem` holds at least one certificate (an empty
 * trust list would refuse every client without saying why). */
static kerr_code check_client_ca(const char *pem, kerr *err) {
  gnutls_x509_crt_t *certs = NULL;
  unsigned n = 0;
  gnutls_datum_t d = {(unsigned char *)pem, (unsigned)strlen(pem)};
  int r = gnutls_x509_crt_list_import2(&certs, &n, &d, GNUTLS_X509_FMT_PEM, 0);
  if (r < 0)
    return kerr_set(err, KERR_VALIDATION, "client CA certificates: %s", gnutls_strerror(r));
  for (unsigned i = 0; i < n; i++) gnutls_x509_crt_deinit(certs[i]);
  gnutls_free(certs);
  if (n == 0) return kerr_set(err, KERR_VALIDATION, "client CA certificates: none found");
  return KERR_OK;
}

/* Check the TLS settings beyond certificate and key, and copy them into
 * `s`. */
static kerr_code copy_tls_settings(const http_server_config *cfg, http_server *s, kerr *err) {
  kerr_code rc;
  if (!cfg->tls_cert_pem && (cfg->tls_priority || cfg->tls_client_ca_pem))
    return kerr_set(err, KERR_VALIDATION, "TLS settings need a certificate and a key");
  if (cfg->tls_client_name_count > 0 && !cfg->tls_client_ca_pem)
    return kerr_set(err, KERR_VALIDATION, "client certificate names need client CA certificates");
  if (cfg->tls_client_name_count > 0 && !cfg->tls_client_names)
    return kerr_set(err, KERR_INTERNAL, "client certificate names missing");
  if (cfg->tls_client_name_count > TLS_CLIENT_NAMES_MAX)
    return kerr_set(err, KERR_VALIDATION, "at most %d client certificate names",
                    TLS_CLIENT_NAMES_MAX);
  if (cfg->tls_priority) {
    if ((rc = check_tls_priority(cfg->tls_priority, err)) != KERR_OK) return rc;
    if (!(s->tls_priority = strdup(cfg->tls_priority)))
      return kerr_set(err, KERR_INTERNAL, "out of memory");
  }
  if (!cfg->tls_client_ca_pem) return KERR_OK;
  if ((rc = check_client_ca(cfg->tls_client_ca_pem, err)) != KERR_OK) return rc;
  if (!(s->tls_client_ca = strdup(cfg->tls_client_ca_pem)))
    return kerr_set(err, KERR_INTERNAL, "out of memory");
  if (cfg->tls_client_name_count == 0) return KERR_OK;
  s->tls_client_names = calloc(cfg->tls_client_name_count, sizeof *s->tls_client_names);
  if (!s->tls_client_names) return kerr_set(err, KERR_INTERNAL, "out of memory");
  for (size_t i = 0; i < cfg->tls_client_name_count; i++) {
    const char *name = cfg->tls_client_names[i];
    size_t len = name ? strnlen(name, TLS_CLIENT_NAME_MAX + 1) : 0;
    if (len == 0 || len > TLS_CLIENT_NAME_MAX)
      return kerr_set(err, KERR_VALIDATION, "client certificate name %zu must be 1-%d characters",
                      i + 1, TLS_CLIENT_NAME_MAX);
    if (!(s->tls_client_names[i] = strndup(name, len)))
      return kerr_set(err, KERR_INTERNAL, "out of memory");
    s->tls_client_name_count = i + 1;
  }
  return KERR_OK;
}

/* libmicrohttpd's accept policy: once stopping, a new connection is closed
 * as soon as it is accepted, so nothing new starts during the grace period. */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
  (void)addr;
  (void)addrlen;
  return atomic_load(&((http_server *)cls)->stopping) ? MHD_NO : MHD_YES;
}

kerr_code http_server_start(const http_server_config *cfg, http_server **out, kerr *err) {
  kerr_code rc = KERR_OK;
  http_server *s = NULL;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  *out = NULL;

  if (!cfg || !cfg->handler || !cfg->host)
    return kerr_set(err, KERR_INTERNAL, "http server: missing handler or host");
  if ((cfg->tls_cert_pem == NULL) != (cfg->tls_key_pem == NULL))
    return kerr_set(err, KERR_VALIDATION, "TLS needs both a certificate and a key");

  /* The library's own Date would be the system clock's; dispatch() sets the
   * service clock's on every answer instead, and the library's own error
   * answers go out without one rather than with a second clock. */
  unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                   MHD_USE_SUPPRESS_DATE_NO_CLOCK | MHD_ALLOW_SUSPEND_RESUME;
  struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, cfg->host, &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(cfg->port);
  } else if (inet_pton(AF_INET6, cfg->host, &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(cfg->port);
    flags |= MHD_USE_IPv6;
  } else {
    return kerr_set(err, KERR_VALIDATION, "'%s' is not a numeric IP address", cfg->host);
  }
  if (cfg->tls_cert_pem) {
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
      return kerr_set(err, KERR_VALIDATION, "this libmicrohttpd was built without TLS");
    flags |= MHD_USE_TLS;
  }

  s = calloc(1, sizeof *s);
  if (!s) return kerr_set(err, KERR_INTERNAL, "out of memory");
  s->handler = cfg->handler;
  s->handler_ctx = cfg->handler_ctx;
  s->max_body = cfg->max_body ? cfg->max_body : HTTP_DEFAULT_MAX_BODY;
  atomic_init(&s->in_flight, 0);
  if (cfg->tls_cert_pem) {
    s->tls_cert = strdup(cfg->tls_cert_pem);
    size_t kl = strlen(cfg->tls_key_pem);
    s->tls_key = secure_alloc(kl + 1);
    if (!s->tls_cert || !s->tls_key) {
      rc = kerr_set(err, KERR_INTERNAL, "out of memory");
      goto out;
    }
    memcpy(s->tls_key, cfg->tls_key_pem, kl + 1);
  }
  if ((rc = copy_tls_settings(cfg, s, err)) != KERR_OK) goto out;
  rc = http_offload_new(cfg->wait_threads ? cfg->wait_threads : HTTP_DEFAULT_WAIT_THREADS,
                        cfg->wait_queue ? cfg->wait_queue : HTTP_DEFAULT_WAIT_QUEUE,
                        cfg->wait_lane_cap, &s->offload, err);
  if (rc) goto out;

  unsigned threads = cfg->threads;
  if (threads == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    threads = n > 0 ? (unsigned)n : 1;
  }

  struct MHD_OptionItem opts[16];
  size_t no = 0;
  opts[no++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_logger, s};
  if (cfg->use_listen_fd) {
    /* libmicrohttpd closes the socket it is given, also when it fails to
     * start: give it its own copy. */
    int mhd_fd = fcntl(cfg->listen_fd, F_DUPFD_CLOEXEC, 0);
    if (mhd_fd < 0) {
      rc = kerr_set(err, KERR_VALIDATION, "cannot listen on %s port %u: %s", cfg->host,
                    (unsigned)cfg->port, strerror(errno));
      goto out;
    }
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, mhd_fd, NULL};
  } else {
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
  }
  opts[no++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT,
                                       (intptr_t)(cfg->connection_limit ? cfg->connection_limit : 1024), NULL};
  opts[no++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT,
                                       (intptr_t)(cfg->timeout_s ? cfg->timeout_s : 60), NULL};
  /* Set, not left to the library's default: it bounds the request line and
   * header block of each connection (a target over HTTP_REQUEST_TARGET_MAX
   * still fits, so kmsd can answer 414 itself). */
  opts[no++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                       (intptr_t)HTTP_CONNECTION_MEMORY, NULL};
  opts[no++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, s};
  opts[no++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, s};
  opts[no++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s};
  if (threads > 1)
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)threads, NULL};
  if (s->tls_cert) {
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert};
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key};
  }
  if (s->tls_priority)
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, s->tls_priority};
  if (s->tls_client_ca)
    opts[no++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, s->tls_client_ca};
  opts[no++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

  s->starting = 1;
  errno = 0;
  s->daemon = MHD_start_daemon(flags, cfg->port, accept_policy, s, on_request, s, MHD_OPTION_ARRAY, opts,
                               MHD_OPTION_END);
  s->starting = 0;
  if (!s->daemon) {
    int e = errno;
    if (s->start_error[0])
      rc = kerr_set(err, KERR_VALIDATION, "cannot listen on %s port %u: %s", cfg->host,
                    (unsigned)cfg->port, s->start_error);
    else
      rc = kerr_set(err, KERR_VALIDATION, "cannot listen on %s port %u: %s", cfg->host,
                    (unsigned)cfg->port, e ? strerror(e) : "libmicrohttpd refused the configuration");
    goto out;
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
  s->port = di && di->port ? di->port : cfg->port;
  if (cfg->use_listen_fd) {
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    if (getsockname(cfg->listen_fd, (struct sockaddr *)&bound, &blen) == 0)
      s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                  : ((struct sockaddr_in *)&bound)->sin_port);
  }
  *out = s;
  s = NULL;
out:
  free_server(s);
  return rc;
}

uint16_t http_server_port(const http_server *s) { return s ? s->port : 0; }

/* Wait until no request is in flight or the monotonic clock reaches
 * `deadline_ms`. */
static void wait_in_flight(http_server *s, int64_t deadline_ms) {
  struct timespec tick = {0, 10 * 1000 * 1000};
  while (atomic_load(&s->in_flight) > 0 && monotonic_ms() < deadline_ms) nanosleep(&tick, NULL);
}

void http_server_stop(http_server *s, unsigned grace_ms) {
  if (!s) return;
  if (s->daemon) {
    /* Turn new connections away (accept_policy) rather than with
     * MHD_quiesce_daemon: libmicrohttpd 0.9.75 quiesces an epoll thread pool
     * racily (it marks a worker quiesced, then removes the listening socket
     * from the worker's epoll set, which the worker may be doing itself;
     * the loser's epoll_ctl fails and the library aborts the process). */
    atomic_store(&s->stopping, 1);
    /* Requests already being read or handled get to finish and send their
     * answer, reruns (suspended connections) included; idle keep-alive
     * connections do not count.  The grace period's last tenth (at most a
     * second) is kept for the answers to reruns refused below. */
    unsigned tail = grace_ms / 10 < 1000 ? grace_ms / 10 : 1000;
    int64_t start = monotonic_ms();
    wait_in_flight(s, start + (int64_t)(grace_ms - tail));
    /* Reruns still queued are answered without waiting (the callback sees
     * HTTP_WAIT_STOPPING), running ones are waited for, and every
     * suspended connection is resumed: libmicrohttpd must not be stopped
     * with one suspended.  From here a rerun asked for is refused at once. */
    http_offload_stop(s->offload);
    /* The rest of the grace period, and at least HTTP_STOP_ANSWER_MS: a
     * rerun that ran past the grace period has its answer ready, and
     * sending it takes no time. */
    int64_t end = start + (int64_t)grace_ms;
    if (end < monotonic_ms() + HTTP_STOP_ANSWER_MS) end = monotonic_ms() + HTTP_STOP_ANSWER_MS;
    wait_in_flight(s, end);
    MHD_stop_daemon(s->daemon);
  }
  free_server(s);
}
