/* http_server.h - the HTTP/1.1 server kmsd speaks through: a thin wrapper
 * over libmicrohttpd.
 *
 * It exists so that the rest of kmsd sees one plain callback per complete
 * request (method, raw path and query, headers, body, peer) and fills one
 * plain response, while this module owns the libmicrohttpd details: the
 * thread pool on epoll, keep-alive, timeouts, the connection limit, TLS, the
 * body-size cap, the framing rules that keep one request from being read as
 * two, and a clean shutdown that lets in-flight requests finish.
 *
 * Threading: the callback runs on the server's event threads, several at
 * once; whatever `ctx` points to must be safe for that.  An event thread
 * serves many connections, so the callback must not wait there on anything
 * slow: when a request would (req->may_wait is 0), the callback asks for a
 * rerun (resp->rerun) instead, and the server suspends the connection and
 * calls it again for the same request on one of its waiting threads
 * (http_offload.h), with may_wait set; the answer of that call is sent. */
#ifndef KMSD_HTTP_HTTP_SERVER_H
#define KMSD_HTTP_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "aws/sigv4.h" /* http_header */
#include "core/kerr.h"
#include "http/http_offload.h" /* HTTP_WAIT_* */

#define HTTP_DEFAULT_MAX_BODY ((size_t)1024 * 1024)
/* Longest request target (path and query) answered normally; a longer one
 * gets 414.  SigV4 takes paths and queries of up to the same length. */
#define HTTP_REQUEST_TARGET_MAX 8192
/* Memory of one connection in libmicrohttpd: request line, header fields and
 * the answer's header.  A request line or header block that does not fit is
 * refused by the library itself (414/431, closed). */
#define HTTP_CONNECTION_MEMORY ((size_t)64 * 1024)
/* An oversized body announced by Content-Length is read and dropped, never
 * buffered, before the 413 goes out, so that a client that writes its whole
 * body before reading sees the answer.  At most this many bytes past the cap
 * and this long; beyond, the 413 goes out at once (announced) or the
 * connection is dropped (while reading). */
#define HTTP_DISCARD_MAX ((size_t)8 * 1024 * 1024)
#define HTTP_DISCARD_TIMEOUT_MS 10000
#define HTTP_HOST_MAX 64      /* textual IPv4/IPv6 address, no brackets */
#define HTTP_PEER_MAX 80      /* "addr:port" or "[addr]:port" */
#define HTTP_RESPONSE_HEADERS_MAX 8
#define HTTP_HEADER_NAME_MAX 64
#define HTTP_HEADER_VALUE_MAX 256
/* What a call may leave for its rerun (http_response.rerun_state). */
#define HTTP_RERUN_STATE_MAX 128

/* A tls_priority for an XKS proxy: TLS 1.3 and 1.2 only, and of the cipher
 * suites the XKS specification lists only TLS_AES_256_GCM_SHA384 (1.3) and
 * TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 / TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
 * (1.2).  TLS_CHACHA20_POLY1305_SHA256, which the specification also lists
 * for 1.3, is left out: GnuTLS enables a cipher for every protocol version
 * at once, so allowing it would also allow ECDHE-RSA/ECDSA-CHACHA20-POLY1305
 * in TLS 1.2, which the specification does not list. */
#define HTTP_TLS_PRIORITY_XKS                                                       \
  "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:-MAC-ALL:+AEAD:" \
  "-KX-ALL:+ECDHE-RSA:+ECDHE-ECDSA"

/* One complete request as the callback sees it.  Everything it points to is
 * owned by the server and valid only during the callback. */
typedef struct http_request {
  const char *method;          /* "POST" */
  const char *path;            /* raw (still percent-encoded) path, e.g. "/" */
  const char *query;           /* raw query string without '?', or NULL */
  const http_header *headers;  /* every request header, in arrival order */
  size_t nheaders;
  const uint8_t *body;         /* the whole body (NULL when empty) */
  size_t body_len;
  const char *peer;            /* client address, "127.0.0.1:53211" */
  /* Non-zero when the body was larger than the server's cap: `body` is then
   * NULL and the callback must answer with an error (kmsd: 413
   * RequestEntityTooLargeException).  If it answers with a status below 400
   * the server replaces the answer with its own 413. */
  int body_too_large;
  /* Non-zero when the server refuses the request before reading its body:
   * 400 for framing that two HTTP parsers could read differently (repeated
   * or malformed Content-Length, Transfer-Encoding other than one
   * "chunked", both at once, whitespace in a header name, folded header
   * lines) or 414 for a target over HTTP_REQUEST_TARGET_MAX (`path` is then
   * "/" and `query` NULL).  `refusal_reason` says why, in words for the
   * client.  The callback must answer with this status; any other answer is
   * replaced by the server's own error.  The connection is closed after the
   * answer. */
  int refusal_status;
  const char *refusal_reason;
  /* 0 on an event thread: the callback must not wait on anything slow, and
   * asks for a rerun instead (http_response.rerun).  1 on a waiting thread:
   * it may wait, and must answer. */
  int may_wait;
  /* On a second call for one request (a rerun, or the call that answers a
   * refused rerun): the NUL-terminated rerun_state the first call left;
   * NULL on a first call, which is on a waiting thread (may_wait 1) when
   * the connection's previous request waited (http_response.waited). */
  const char *rerun_state;
  /* Non-zero when the callback asked for a rerun that cannot happen:
   * HTTP_WAIT_QUEUE_FULL (too many requests wait already) or
   * HTTP_WAIT_STOPPING (the server is stopping).  The callback is called
   * again with it, may_wait still 0, and must answer at once (kmsd:
   * ThrottlingException / KMSInternalException). */
  int wait_refused;
} http_request;

/* What the callback fills.  The server zeroes it before the call. */
typedef struct http_response {
  int status;                  /* 0 is treated as 500 */
  size_t nheaders;
  struct {
    char name[HTTP_HEADER_NAME_MAX];
    char value[HTTP_HEADER_VALUE_MAX];
  } headers[HTTP_RESPONSE_HEADERS_MAX];
  /* The body, handed over to the server, which releases it once sent with
   * body_free(body, body_len), or free(body) when body_free is NULL.  A body
   * that may hold a secret (Decrypt's plaintext) should come with a
   * body_free that wipes it. */
  char *body;
  size_t body_len;
  void (*body_free)(void *body, size_t len);
  /* Non-zero: do not answer; call again for this request from the start
   * where it may wait (see http_request.may_wait), handing it rerun_state
   * (NUL-terminated).  The rest of the response is dropped.  Only honoured
   * from a call with may_wait 0 and wait_refused 0 on a request the server
   * did not refuse; anywhere else it is answered 500.  The callback must
   * not have changed anything it would change again on the rerun. */
  int rerun;
  char rerun_state[HTTP_RERUN_STATE_MAX];
  /* Non-zero from a call with may_wait 1: the request did wait on
   * something slow.  The server then calls for the connection's next
   * request where it may wait straight away (may_wait 1, rerun_state
   * NULL), skipping the pass on the event thread that would only ask for a
   * rerun, until a request answered that way has not waited.  Only a
   * performance hint: a callback that never sets it works the same. */
  int waited;
  /* With rerun or waited: what the request waits on (an opaque name, an
   * external key store's ID in kmsd), "" when unknown.  Requests that
   * wait on one system share a cap on waiting threads
   * (http_server_config.wait_lane_cap). */
  char wait_on[HTTP_WAIT_LANE_MAX];
} http_response;

typedef void (*http_handler_fn)(void *ctx, const http_request *req, http_response *resp);

typedef struct http_server_config {
  const char *host;            /* numeric IPv4 or IPv6 address to bind ("127.0.0.1", "::1") */
  uint16_t port;               /* 0: an ephemeral port (see http_server_port) */
  unsigned threads;            /* worker threads; 0: one per online CPU */
  size_t max_body;             /* body cap in bytes; 0: HTTP_DEFAULT_MAX_BODY */
  unsigned connection_limit;   /* 0: 1024 */
  unsigned timeout_s;          /* idle connection timeout; 0: 60 seconds */
  const char *tls_cert_pem;    /* PEM text (not a path); NULL with tls_key_pem NULL: plain HTTP */
  const char *tls_key_pem;
  /* GnuTLS priority string limiting TLS versions and cipher suites (e.g.
   * HTTP_TLS_PRIORITY_XKS), at most 1024 characters; NULL: libmicrohttpd's
   * default.  Refused at start (KERR_VALIDATION) when GnuTLS rejects it. */
  const char *tls_priority;
  /* mTLS: PEM text of the CAs a client certificate must chain to.  When set,
   * every connection must present a certificate that chains to one of them,
   * is within its validity period, is meant for TLS client authentication
   * when it names key purposes at all (extended key usage), and (when
   * tls_client_name_count > 0) is valid for one of tls_client_names under
   * the rules of gnutls_x509_crt_check_hostname (a dNSName of the subject
   * alternative names, or the subject CN when there is none); otherwise the
   * handshake is aborted and no request is read.  NULL: no client
   * certificate asked.  A PEM text holding no certificate is refused at
   * start. */
  const char *tls_client_ca_pem;
  /* At most 64 names of 1-253 characters each; copied at start.  Names
   * without tls_client_ca_pem are refused at start. */
  const char *const *tls_client_names;
  size_t tls_client_name_count;
  http_handler_fn handler;
  void *handler_ctx;
  /* Threads that run the requests the callback asks to rerun, started as
   * needed, 1..HTTP_WAIT_THREADS_MAX; 0: HTTP_DEFAULT_WAIT_THREADS. */
  unsigned wait_threads;
  /* Reruns that may wait for one of those threads, 1..HTTP_WAIT_QUEUE_MAX;
   * 0: HTTP_DEFAULT_WAIT_QUEUE.  Past it the callback is told
   * HTTP_WAIT_QUEUE_FULL. */
  unsigned wait_queue;
  /* At most this many of those requests that wait on one system
   * (http_response.wait_on) run at once; 0: no cap.  kmsd: the XKS
   * client's connections per external key store. */
  unsigned wait_lane_cap;
  int use_listen_fd;           /* non-zero: serve on listen_fd instead of binding host:port */
  int listen_fd;               /* from http_listen_socket; still the caller's to close
                                  after http_server_start (the server serves a duplicate) */
} http_server_config;

typedef struct http_server http_server;

/* Start listening and serving.  On success *out is a running server (stop it
 * with http_server_stop).  On failure nothing is left running, *out is NULL
 * and err says why (bad address, port in use, TLS not available...). The
 * PEM strings are copied; the config may be freed after the call. */
kerr_code http_server_start(const http_server_config *cfg, http_server **out, kerr *err);

/* Make a listening TCP socket on the numeric `host` and `port` (0: an
 * ephemeral one), close-on-exec, for http_server_config.listen_fd.  On
 * KERR_OK *fd is the caller's to close; on failure (bad address, port in
 * use: KERR_VALIDATION "cannot listen on HOST port N: ...") *fd is -1. */
kerr_code http_listen_socket(const char *host, uint16_t port, int *fd, kerr *err);

/* The port the server listens on (the real one when started with port 0). */
uint16_t http_server_port(const http_server *s);

/* Stop accepting connections, wait up to `grace_ms` for requests already
 * being processed to finish, then close every connection, join the threads
 * and free the server.  NULL is allowed.  Reruns still waiting for a thread
 * near the end of the grace period (its last tenth, at most a second) are
 * answered with wait_refused HTTP_WAIT_STOPPING; a rerun already running
 * is waited for, however long it takes (the callback's own deadlines bound
 * it), and its answer gets the rest of the grace period (at least 200 ms)
 * to go out. */
void http_server_stop(http_server *s, unsigned grace_ms);

/* Append a response header (name and value are copied).  Returns 0, or -1
 * when the table is full or a string is too long or holds CR/LF. */
int http_response_header(http_response *r, const char *name, const char *value);

/* The value of the first request header called `name` (case-insensitive),
 * or NULL. */
const char *http_request_header(const http_request *req, const char *name);

/* Split a listen spec "HOST:PORT" or "[IPv6]:PORT" into a numeric host and
 * a port (1-65535, or 0 for an ephemeral one).  "localhost" is taken as
 * 127.0.0.1.  The host must be a numeric address.  KERR_VALIDATION with a
 * message on anything else; host/port are then unspecified. */
kerr_code http_parse_listen(const char *spec, char host[HTTP_HOST_MAX], uint16_t *port, kerr *err);

/* Non-zero when the numeric `host` is a loopback address (127.0.0.0/8, ::1,
 * ::ffff:127.x.y.z). */
int http_host_is_loopback(const char *host);

/* Read a whole (small, PEM) file of at most `max` bytes into a
 * NUL-terminated string.  The caller frees *out with
 * secure_free(*out, strlen(*out) + 1) (it may hold a private key).
 * KERR_VALIDATION naming the file on failure; *out is then NULL and no copy
 * of the contents is left in memory. */
kerr_code http_read_pem_file(const char *path, size_t max, char **out, kerr *err);

#endif
