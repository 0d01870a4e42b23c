/* xks_client.c - kmsd's XKS Proxy API v1 client (xks_client.h).
 *
 * One call: check the arguments, build the body with xks_request_serialize
 * (a secure buffer), sign it, take a slot from the client's pool (each slot
 * keeps one connection alive between calls), send the request, read the
 * reply into the slot's secure buffer (capped), classify what happened,
 * parse the reply with lib/xks's strict parsers, wipe the buffers and put
 * the slot back.
 *
 * Who does what.  libcurl makes every connection: an easy handle with
 * CURLOPT_CONNECT_ONLY looks the name up, applies the connect-to
 * overrides, connects within the connect deadline and does the TLS
 * handshake with its checks, then hands the connection over.  The client
 * then writes the HTTP/1.1 request itself (curl_easy_send) and reads the
 * reply itself (curl_easy_recv, lib/xks/xks_http.h), polling the socket
 * against the call's deadline.  A connection is kept for the next call
 * when the reply allows it, and checked before it is used again, as libcurl
 * checked its kept connections.  libcurl never reuses a CONNECT_ONLY
 * connection, and curl_easy_cleanup is its one documented way to close
 * one, so a connection is let go of by replacing the slot's handle; a share
 * keeps the slot's TLS sessions and DNS cache across handles, as one handle
 * kept them before.  Why: a call through curl_easy_perform cost more than
 * twice the CPU of the TLS and the kernel alone, in libcurl's per-transfer
 * work (URL, headers, its multi loop); the connection work stays libcurl's,
 * so every outcome of a call is what it was when libcurl did it all. */
#include "xks/xks_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "aws/sigv4.h"
#include "core/secmem.h"
#include "xks/xks_http.h"

#define HOST_MAX 128
#define REGION_MAX 32
#define AKID_MIN 20
#define AKID_MAX 30
#define SECRET_MIN 43
#define SECRET_MAX 64
#define URI_PATH_MIN 10
#define URI_PATH_MAX 128
#define ENDPOINT_MIN 10
#define CA_PATH_MAX 4096
#define AUTH_MAX 512
/* The request line and header fields: a URI of at most 256 characters, an
 * Authorization of at most AUTH_MAX, and the rest of known sizes. */
#define REQ_HEAD_MAX 1536
#define RX_SIZE 16384          /* one TLS record's worth of reply per read */
#define USER_AGENT "kmsd-xks-client/1"

/* What the TLS layer saw of one call's handshake (OpenSSL's message
 * callback, set on each new connection's SSL_CTX): whether either side sent
 * a TLS alert, and which.  A handshake that ends without a refusal in TLS
 * terms (the peer reset or closed the connection) is a network failure; one
 * where a side refused (protocol version, cipher suite, certificate) is a
 * TLS configuration failure. */
typedef struct tls_watch {
  int alert_received;        /* the peer sent an alert */
  int config_alert_sent;     /* we sent an alert that means "your TLS does not suit me" */
} tls_watch;

/* One connection at a time: the easy handle that made it, and the buffers
 * a call on it uses. */
typedef struct pool_slot {
  CURL *curl;         /* NULL until a connection is to be made */
  CURLSH *share;      /* TLS sessions and DNS cache, kept across handles */
  int busy;
  int connected;      /* curl holds a connection kept for the next call */
  curl_socket_t fd;   /* its socket, while connected */
  int64_t idle_since; /* when its last reply ended (mono_ms) */
  uint8_t *buf;       /* secure, XKS_CLIENT_REPLY_MAX bytes: the reply body */
  uint8_t *rx;        /* secure, RX_SIZE bytes: the reply as received */
  uint8_t *req;       /* secure, req_cap bytes: the request as sent */
  size_t req_cap;
  xks_http_reader *reader;
  tls_watch tls;      /* reset before each connection is made */
  int tls_watched;    /* the TLS backend took the message callback */
} pool_slot;

static void slot_free(pool_slot *s);

struct xks_client {
  char endpoint[XKS_CLIENT_ENDPOINT_MAX + 1];
  char conn_url[XKS_CLIENT_ENDPOINT_MAX + 2]; /* endpoint + "/": where libcurl connects */
  char host_header[HOST_MAX + 8];   /* "host" or "host:port" */
  char uri_path[URI_PATH_MAX + 1];
  char region[REGION_MAX + 1];
  char access_key_id[AKID_MAX + 1];
  char *secret;                     /* secure_alloc'd, NUL-terminated */
  size_t secret_len;
  char *ca_bundle;                  /* NULL: the system store */
  struct curl_slist *connect_to;
  long timeout_ms;
  long connect_timeout_ms;
  long kept_idle_max_ms;

  pthread_mutex_t lock;
  pthread_cond_t freed;             /* a slot became free (CLOCK_MONOTONIC) */
  pool_slot *slots;
  unsigned pool_size;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static const char *const OUTCOME_NAMES[] = {"OK",        "PROXY_ERROR",      "TIMED_OUT",
                                            "NOT_REACHABLE", "TLS_ERROR",   "INVALID_RESPONSE",
                                            "BAD_INPUT", "LOCAL_ERROR"};

const char *xks_outcome_name(xks_outcome o) {
  if ((unsigned)o >= sizeof OUTCOME_NAMES / sizeof OUTCOME_NAMES[0]) return "?";
  return OUTCOME_NAMES[o];
}

/* ---- checking the configuration ----------------------------------------- */

static int all_in(const char *s, size_t n, const char *set) {
  for (size_t i = 0; i < n; i++)
    if (!s[i] || !strchr(set, s[i])) return 0;
  return 1;
}

#define ALNUM "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

/* A port of 1..5 digits (checked by the caller) as a number. */
static long port_value(const char *s, size_t n) {
  long v = 0;
  for (size_t i = 0; i < n; i++) v = v * 10 + (s[i] - '0');
  return v;
}

/* "https://HOST[:PORT]": HOST of [A-Za-z0-9.-] (the model's pattern), PORT
 * 1..65535.  Fills the Host header value. */
static kerr_code check_endpoint(const char *ep, char *host_header, size_t hh_size, kerr *err) {
  static const char scheme[] = "https://";
  size_t len, hlen;
  const char *host, *colon;
  int w;

  if (!ep) return kerr_set(err, KERR_VALIDATION, "XKS client: no proxy endpoint.");
  len = strlen(ep);
  if (len < ENDPOINT_MIN || len > XKS_CLIENT_ENDPOINT_MAX)
    return kerr_set(err, KERR_VALIDATION, "XKS proxy endpoint must be %d to %d characters.",
                    ENDPOINT_MIN, XKS_CLIENT_ENDPOINT_MAX);
  if (strncmp(ep, scheme, sizeof scheme - 1) != 0)
    return kerr_set(err, KERR_VALIDATION, "XKS proxy endpoint must start with https://.");
  host = ep + sizeof scheme - 1;
  colon = strchr(host, ':');
  hlen = colon ? (size_t)(colon - host) : strlen(host);
  if (hlen == 0 || !all_in(host, hlen, ALNUM ".-"))
    return kerr_set(err, KERR_VALIDATION,
                    "XKS proxy endpoint must be https:// and a host name of A-Z a-z 0-9 . - "
                    "(and an optional :PORT).");
  if (colon) {
    const char *p = colon + 1;
    size_t plen = strlen(p);
    long port;
    if (plen == 0 || plen > 5 || !all_in(p, plen, "0123456789") || (port = port_value(p, plen)) < 1 ||
        port > 65535)
      return kerr_set(err, KERR_VALIDATION, "XKS proxy endpoint has a bad port.");
    if (port == 443) colon = NULL; /* Host is sent without the default port */
  }
  w = colon ? snprintf(host_header, hh_size, "%s", host)
            : snprintf(host_header, hh_size, "%.*s", (int)hlen, host);
  if (w < 0 || (size_t)w >= hh_size)
    return kerr_set(err, KERR_VALIDATION, "XKS proxy endpoint host name too long.");
  return KERR_OK;
}

/* The model's XksProxyUriPathType:
 *   ^(/[a-zA-Z0-9\/_-]+/kms/xks/v\d{1,2})$|^(/kms/xks/v\d{1,2})$, 10..128. */
static kerr_code check_uri_path(const char *p, kerr *err) {
  static const char tail[] = "/kms/xks/v";
  size_t len, digits = 0, head;

  if (!p) return kerr_set(err, KERR_VALIDATION, "XKS client: no proxy URI path.");
  len = strlen(p);
  if (len < URI_PATH_MIN || len > URI_PATH_MAX)
    return kerr_set(err, KERR_VALIDATION, "XKS proxy URI path must be %d to %d characters.",
                    URI_PATH_MIN, URI_PATH_MAX);
  while (digits < len && digits < 3 && p[len - 1 - digits] >= '0' && p[len - 1 - digits] <= '9')
    digits++;
  if (digits < 1 || digits > 2 || len - digits < sizeof tail - 1 ||
      memcmp(p + len - digits - (sizeof tail - 1), tail, sizeof tail - 1) != 0)
    return kerr_set(err, KERR_VALIDATION,
                    "XKS proxy URI path must end in /kms/xks/v followed by 1 or 2 digits.");
  head = len - digits - (sizeof tail - 1);
  /* head is "" or "/" followed by at least one of [A-Za-z0-9/_-]. */
  if (head != 0 && (head < 2 || p[0] != '/' || !all_in(p + 1, head - 1, ALNUM "/_-")))
    return kerr_set(err, KERR_VALIDATION,
                    "XKS proxy URI path must be /kms/xks/vN or /PREFIX/kms/xks/vN with a PREFIX "
                    "of A-Z a-z 0-9 / _ -.");
  return KERR_OK;
}

/* One host field of a connect-to: empty, a name/IPv4 of [A-Za-z0-9.-], or
 * "[IPv6]".  Returns the length consumed, or -1. */
static long connect_to_host(const char *s) {
  if (*s == '[') {
    const char *end = strchr(s, ']');
    if (!end || end == s + 1 || !all_in(s + 1, (size_t)(end - s - 1), "0123456789abcdefABCDEF:."))
      return -1;
    return (long)(end - s + 1);
  }
  size_t n = strcspn(s, ":");
  return all_in(s, n, ALNUM ".-") ? (long)n : -1;
}

static long connect_to_port(const char *s) {
  size_t n = strcspn(s, ":");
  if (n > 5 || !all_in(s, n, "0123456789") || (n && (port_value(s, n) < 1 || port_value(s, n) > 65535)))
    return -1;
  return (long)n;
}

/* curl's connect-to syntax HOST:PORT:TO_HOST:TO_PORT. */
static int connect_to_ok(const char *s) {
  long n;
  if (!s || strlen(s) > XKS_CLIENT_CONNECT_TO_LEN_MAX) return 0;
  for (int field = 0; field < 4; field++) {
    n = (field % 2 == 0) ? connect_to_host(s) : connect_to_port(s);
    if (n < 0) return 0;
    s += n;
    if (field < 3) {
      if (*s != ':') return 0;
      s++;
    }
  }
  return *s == '\0';
}

static kerr_code check_config(const xks_client_config *cfg, kerr *err) {
  size_t n;

  if (!cfg->region || (n = strlen(cfg->region)) < 1 || n > REGION_MAX ||
      !all_in(cfg->region, n, "abcdefghijklmnopqrstuvwxyz0123456789-"))
    return kerr_set(err, KERR_VALIDATION, "XKS client region must be 1 to %d of a-z 0-9 -.",
                    REGION_MAX);
  if (!cfg->access_key_id || (n = strlen(cfg->access_key_id)) < AKID_MIN || n > AKID_MAX ||
      !all_in(cfg->access_key_id, n, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"))
    return kerr_set(err, KERR_VALIDATION,
                    "XKS proxy AccessKeyId must be %d to %d characters of A-Z and 2-7.", AKID_MIN,
                    AKID_MAX);
  if (!cfg->secret_access_key || (n = strlen(cfg->secret_access_key)) < SECRET_MIN ||
      n > SECRET_MAX || !all_in(cfg->secret_access_key, n, ALNUM "/+="))
    return kerr_set(err, KERR_VALIDATION,
                    "XKS proxy RawSecretAccessKey must be %d to %d characters of A-Z a-z 0-9 / + =.",
                    SECRET_MIN, SECRET_MAX);
  if (cfg->ca_bundle) {
    n = strlen(cfg->ca_bundle);
    if (n == 0 || n > CA_PATH_MAX)
      return kerr_set(err, KERR_VALIDATION, "XKS CA bundle path must be 1 to %d characters.",
                      CA_PATH_MAX);
  }
  if (cfg->connect_to_count > XKS_CLIENT_CONNECT_TO_MAX ||
      (cfg->connect_to_count && !cfg->connect_to))
    return kerr_set(err, KERR_VALIDATION, "At most %d XKS connect-to overrides.",
                    XKS_CLIENT_CONNECT_TO_MAX);
  for (size_t i = 0; i < cfg->connect_to_count; i++)
    if (!connect_to_ok(cfg->connect_to[i]))
      return kerr_set(err, KERR_VALIDATION,
                      "XKS connect-to \"%.*s\" is not HOST:PORT:TO_HOST:TO_PORT.",
                      XKS_CLIENT_CONNECT_TO_LEN_MAX,
                      cfg->connect_to[i] ? cfg->connect_to[i] : "");
  if (cfg->timeout_ms < 0 || cfg->timeout_ms > XKS_CLIENT_TIMEOUT_MAX_MS ||
      cfg->connect_timeout_ms < 0 || cfg->connect_timeout_ms > XKS_CLIENT_TIMEOUT_MAX_MS)
    return kerr_set(err, KERR_VALIDATION, "XKS timeouts must be 0 to %d ms.",
                    XKS_CLIENT_TIMEOUT_MAX_MS);
  if (cfg->pool_size > XKS_CLIENT_POOL_MAX)
    return kerr_set(err, KERR_VALIDATION, "The XKS handle pool holds at most %d handles.",
                    XKS_CLIENT_POOL_MAX);
  if (cfg->kept_idle_max_ms < 0 || cfg->kept_idle_max_ms > XKS_CLIENT_KEPT_IDLE_MAX_MS)
    return kerr_set(err, KERR_VALIDATION, "A kept XKS connection may idle 0 to %d ms.",
                    XKS_CLIENT_KEPT_IDLE_MAX_MS);
  return KERR_OK;
}

/* The CA bundle must be a file kmsd can open for reading.  Its absence is
 * no fault of the proxy's or of the store's settings but of kmsd's own
 * installation (--xks-ca-bundle), so it is KERR_INTERNAL, which kmsd reports
 * as INTERNAL_ERROR / KMSInternalException.  The path is no secret and is
 * named so an operator can find the file.  O_NONBLOCK: a FIFO with no
 * writer would otherwise hold the open (and the connect worker, restart or
 * request making the client) for ever, before fstat can refuse it. */
static kerr_code check_ca_bundle(const char *path, kerr *err) {
  struct stat sb;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  int e;
  if (fd < 0) {
    e = errno;
    return kerr_set(err, KERR_INTERNAL, "XKS CA bundle %.200s cannot be read: %s", path,
                    strerror(e));
  }
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return kerr_set(err, KERR_INTERNAL, "XKS CA bundle %.200s cannot be read: not a file", path);
  }
  close(fd);
  return KERR_OK;
}

/* ---- the client ------------------------------------------------------------ */

kerr_code xks_client_new(const xks_client_config *cfg, xks_client **out, kerr *err) {
  xks_client *c = NULL;
  pthread_condattr_t ca;
  kerr_code rc;
  int lock_ok = 0, cond_ok = 0;

  *out = NULL;
  if (!cfg) return kerr_set(err, KERR_VALIDATION, "XKS client: no configuration.");
  c = calloc(1, sizeof *c);
  if (!c) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  rc = check_endpoint(cfg->endpoint, c->host_header, sizeof c->host_header, err);
  if (!rc) rc = check_uri_path(cfg->uri_path, err);
  if (!rc) rc = check_config(cfg, err);
  if (!rc && cfg->ca_bundle) rc = check_ca_bundle(cfg->ca_bundle, err);
  if (rc) goto out;
  snprintf(c->endpoint, sizeof c->endpoint, "%s", cfg->endpoint);
  snprintf(c->conn_url, sizeof c->conn_url, "%s/", cfg->endpoint);
  snprintf(c->uri_path, sizeof c->uri_path, "%s", cfg->uri_path);
  snprintf(c->region, sizeof c->region, "%s", cfg->region);
  snprintf(c->access_key_id, sizeof c->access_key_id, "%s", cfg->access_key_id);
  c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : XKS_CLIENT_DEFAULT_TIMEOUT_MS;
  c->connect_timeout_ms = cfg->connect_timeout_ms;
  c->kept_idle_max_ms = cfg->kept_idle_max_ms ? cfg->kept_idle_max_ms : XKS_CLIENT_KEPT_IDLE_MAX_MS;
  c->pool_size = cfg->pool_size ? cfg->pool_size : XKS_CLIENT_DEFAULT_POOL;

  c->secret_len = strlen(cfg->secret_access_key);
  c->secret = secure_alloc(c->secret_len + 1);
  if (!c->secret) goto oom;
  memcpy(c->secret, cfg->secret_access_key, c->secret_len);
  if (cfg->ca_bundle && !(c->ca_bundle = strdup(cfg->ca_bundle))) goto oom;
  for (size_t i = 0; i < cfg->connect_to_count; i++) {
    struct curl_slist *n = curl_slist_append(c->connect_to, cfg->connect_to[i]);
    if (!n) goto oom;
    c->connect_to = n;
  }
  c->slots = calloc(c->pool_size, sizeof *c->slots);
  if (!c->slots) goto oom;

  pthread_once(&curl_once, curl_init);
  if (curl_init_rc != CURLE_OK) {
    rc = kerr_set(err, KERR_INTERNAL, "libcurl failed to initialise.");
    goto out;
  }
  if (pthread_mutex_init(&c->lock, NULL) != 0) goto oom;
  lock_ok = 1;
  if (pthread_condattr_init(&ca) != 0) goto oom;
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  cond_ok = pthread_cond_init(&c->freed, &ca) == 0;
  pthread_condattr_destroy(&ca);
  if (!cond_ok) goto oom;
  goto out;
oom:
  rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
out:
  if (rc) {
    if (cond_ok) pthread_cond_destroy(&c->freed);
    if (lock_ok) pthread_mutex_destroy(&c->lock);
    secure_free(c->secret, c->secret ? c->secret_len + 1 : 0);
    free(c->ca_bundle);
    curl_slist_free_all(c->connect_to);
    free(c->slots);
    free(c);
    return rc;
  }
  *out = c;
  return KERR_OK;
}

void xks_client_free(xks_client *c) {
  if (!c) return;
  for (unsigned i = 0; i < c->pool_size; i++) slot_free(&c->slots[i]);
  free(c->slots);
  pthread_cond_destroy(&c->freed);
  pthread_mutex_destroy(&c->lock);
  secure_free(c->secret, c->secret_len + 1);
  /* sigv4's signing-key cache holds a secure copy of the secret too. */
  sigv4_cache_clear();
  free(c->ca_bundle);
  curl_slist_free_all(c->connect_to);
  free(c);
}

const char *xks_client_endpoint(const xks_client *c) { return c ? c->endpoint : NULL; }
const char *xks_client_uri_path(const xks_client *c) { return c ? c->uri_path : NULL; }

/* ---- the handle pool --------------------------------------------------------- */

/* OpenSSL's message callback: notes the alerts of a handshake (tls_watch).
 * `buf` of an alert is {level, description} (RFC 8446 6). */
static void tls_msg(int write_p, int version, int content_type, const void *buf, size_t len,
                    SSL *ssl, void *arg) {
  tls_watch *w = arg;
  const uint8_t *a = buf;
  (void)version;
  (void)ssl;
  if (!w || content_type != SSL3_RT_ALERT || len < 2) return;
  /* close_notify (0) and user_canceled (90) end a connection; they refuse
   * nothing about its TLS. */
  if (a[1] == 0 || a[1] == 90) return;
  if (!write_p) {
    w->alert_received = 1;
    return;
  }
  switch (a[1]) {
  case 40:  /* handshake_failure: no common cipher suite or parameters */
  case 42:  /* bad_certificate */
  case 43:  /* unsupported_certificate */
  case 44:  /* certificate_revoked */
  case 45:  /* certificate_expired */
  case 46:  /* certificate_unknown */
  case 47:  /* illegal_parameter */
  case 48:  /* unknown_ca */
  case 70:  /* protocol_version: the peer offers no version we accept (TLS 1.2+) */
  case 71:  /* insufficient_security */
  case 86:  /* inappropriate_fallback */
  case 109: /* missing_extension */
  case 110: /* unsupported_extension */
  case 112: /* unrecognized_name */
  case 116: /* certificate_required */
  case 120: /* no_application_protocol */
    w->config_alert_sent = 1;
    break;
  default:  /* decode_error (OpenSSL's answer to an unexpected EOF), internal_error... */
    break;
  }
}

/* CURLOPT_SSL_CTX_FUNCTION: every new connection's SSL_CTX reports its
 * handshake messages to the slot's tls_watch. */
static CURLcode on_ssl_ctx(CURL *h, void *ssl_ctx, void *userptr) {
  (void)h;
  SSL_CTX_set_msg_callback((SSL_CTX *)ssl_ctx, tls_msg);
  SSL_CTX_set_msg_callback_arg((SSL_CTX *)ssl_ctx, userptr);
  return CURLE_OK;
}

/* The options of a slot's handle: everything about making a connection;
 * it only connects (CURLOPT_CONNECT_ONLY), the client does the exchange. */
static CURLcode setup_handle(const xks_client *c, pool_slot *slot) {
  CURL *h = slot->curl;
  CURLcode cc = CURLE_OK;
#define SET(opt, val) \
  if (cc == CURLE_OK) cc = curl_easy_setopt(h, opt, val)
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_URL, c->conn_url);
  SET(CURLOPT_CONNECT_ONLY, 1L);
  SET(CURLOPT_SHARE, slot->share);
  SET(CURLOPT_PROTOCOLS_STR, "https");
  SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1); /* ALPN offers http/1.1 only */
  SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
  SET(CURLOPT_SSL_VERIFYPEER, 1L);
  SET(CURLOPT_SSL_VERIFYHOST, 2L);
  SET(CURLOPT_PROXY, ""); /* never an environment proxy */
  SET(CURLOPT_TCP_NODELAY, 1L);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  if (c->ca_bundle) {
    SET(CURLOPT_CAINFO, c->ca_bundle);
    SET(CURLOPT_CAPATH, (char *)NULL); /* only the bundle's CAs */
  }
  if (c->connect_to) SET(CURLOPT_CONNECT_TO, c->connect_to);
#undef SET
#if LIBCURL_VERSION_NUM >= 0x075700 /* 7.87.0: CURLOPT_QUICK_EXIT */
  /* A host name lookup still running when the deadline passes is left to
   * finish on libcurl's resolver thread, which then frees what it holds;
   * without this libcurl waits for it, and a DNS server that does not
   * answer holds the call for as long as the system resolver tries
   * (seconds), far past the call's deadline.  An older libcurl at run time
   * refuses the option; the handle still works, without that bound. */
  if (cc == CURLE_OK) (void)curl_easy_setopt(h, CURLOPT_QUICK_EXIT, 1L);
#endif
  /* Only a libcurl built on OpenSSL takes the SSL_CTX hook; without it a
   * failed handshake cannot be told from a dropped connection and is
   * reported as a TLS failure (classify_curl). */
  slot->tls_watched = 0;
  if (cc == CURLE_OK && curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, (void *)&slot->tls) == CURLE_OK &&
      curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx) == CURLE_OK)
    slot->tls_watched = 1;
  return cc;
}

/* Let go of the slot's connection, if any: curl_easy_cleanup is how a
 * CONNECT_ONLY connection is closed; the next connection gets a new handle
 * (connect_slot).  Nothing of a call is in the handle. */
static void drop_connection(pool_slot *s) {
  if (s->curl) {
    curl_easy_setopt(s->curl, CURLOPT_ERRORBUFFER, (char *)NULL); /* keeps the call's message */
    curl_easy_cleanup(s->curl);
  }
  s->curl = NULL;
  s->connected = 0;
  s->fd = CURL_SOCKET_BAD;
}

/* Everything a slot holds; the slot is left empty. */
static void slot_free(pool_slot *s) {
  drop_connection(s);
  if (s->share) curl_share_cleanup(s->share);
  s->share = NULL;
  secure_free(s->buf, s->buf ? XKS_CLIENT_REPLY_MAX : 0);
  secure_free(s->rx, s->rx ? RX_SIZE : 0);
  secure_free(s->req, s->req_cap);
  if (s->reader) xks_http_reader_wipe(s->reader);
  free(s->reader);
  s->buf = s->rx = s->req = NULL;
  s->req_cap = 0;
  s->reader = NULL;
}

/* The buffers and the share of a slot not used before.  0 on success. */
static int slot_init(pool_slot *s) {
  s->fd = CURL_SOCKET_BAD;
  s->buf = secure_alloc(XKS_CLIENT_REPLY_MAX);
  s->rx = secure_alloc(RX_SIZE);
  s->reader = calloc(1, sizeof *s->reader);
  s->share = curl_share_init();
  if (!s->buf || !s->rx || !s->reader || !s->share ||
      curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK ||
      curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK) {
    slot_free(s);
    return -1;
  }
  return 0;
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Take a free slot, waiting until `deadline_ms` (CLOCK_MONOTONIC): one
 * with a kept connection first, then one used before, then a new one
 * (given its buffers here).  Returns the slot index, -1 when the deadline
 * passed, -2 on a local failure. */
static int pool_take(xks_client *c, int64_t deadline_ms) {
  int idx = -1;
  pthread_mutex_lock(&c->lock);
  for (;;) {
    int used = -1, fresh = -1;
    for (unsigned i = 0; i < c->pool_size; i++) {
      if (c->slots[i].busy) continue;
      if (c->slots[i].connected) {
        idx = (int)i;
        break;
      }
      if (c->slots[i].buf && used < 0) used = (int)i;
      if (!c->slots[i].buf && fresh < 0) fresh = (int)i;
    }
    if (idx < 0) idx = used;
    if (idx < 0 && fresh >= 0) {
      if (slot_init(&c->slots[fresh]) != 0) {
        idx = -2;
        break;
      }
      idx = fresh;
    }
    if (idx >= 0) {
      c->slots[idx].busy = 1;
      break;
    }
    int64_t now = mono_ms();
    if (now >= deadline_ms) break;
    struct timespec ts = {(time_t)(deadline_ms / 1000), (long)(deadline_ms % 1000) * 1000000};
    pthread_cond_timedwait(&c->freed, &c->lock, &ts);
  }
  pthread_mutex_unlock(&c->lock);
  return idx;
}

static void pool_give(xks_client *c, int idx) {
  pthread_mutex_lock(&c->lock);
  c->slots[idx].busy = 0;
  /* One slot, one waiter woken: waking them all made every waiter of a
   * busy pool run to find the slot taken, a thundering herd that cost more
   * CPU than the calls.  No slot is left idle while a waiter sleeps, as
   * pool_take looks for a free slot before it looks at its deadline: the
   * waiter woken takes this slot even if its time is up. */
  pthread_cond_signal(&c->freed);
  pthread_mutex_unlock(&c->lock);
}

/* ---- classifying -------------------------------------------------------------- */

/* Whether a connection that libcurl failed to make got as far as a TCP
 * connection: libcurl counts a new connection in CURLINFO_NUM_CONNECTS once
 * its TCP handshake completed; a socket still connecting when the deadline
 * passes is not counted, and a call that timed out while the proxy's name
 * was being looked up opened none.  (Once libcurl hands a connection over,
 * every deadline that passes is the proxy's: TIMED_OUT.) */
static int tcp_connected(CURL *h) {
  long connects = 0;
  if (curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects) != CURLE_OK) return 1;
  return connects > 0;
}

/* The outcome of a failure to make a connection (curl_easy_perform with
 * CURLOPT_CONNECT_ONLY).  The lines drawn, after KMS's ConnectionErrorCodes:
 *   - the deadline passed before the TCP handshake completed (an unanswered
 *     SYN, a host name lookup that did not end): NOT_REACHABLE, KMS "can't
 *     communicate with" the proxy; after it
 *     (in the TLS handshake, or waiting for the reply): TIMED_OUT, KMS "can
 *     connect ... but the proxy does not respond in the time allotted";
 *   - a TLS handshake that one side refused with an alert (no common
 *     protocol version >= 1.2 or cipher suite), or a certificate that fails
 *     verification or does not name the host: TLS_ERROR; a handshake that
 *     ends because the peer reset or closed the connection, with no TLS
 *     refusal: NOT_REACHABLE;
 *   - kmsd's own CA bundle (or another local TLS file) unusable:
 *     LOCAL_ERROR, which kmsd reports as INTERNAL_ERROR. */
static xks_outcome classify_curl(CURLcode cc, CURL *h, const pool_slot *slot) {
  switch (cc) {
  case CURLE_OPERATION_TIMEDOUT:
    return tcp_connected(h) ? XKS_OUTCOME_TIMED_OUT : XKS_OUTCOME_NOT_REACHABLE;
  case CURLE_SSL_CONNECT_ERROR:
    if (!slot->tls_watched || slot->tls.alert_received || slot->tls.config_alert_sent)
      return XKS_OUTCOME_TLS_ERROR;
    return XKS_OUTCOME_NOT_REACHABLE;
  case CURLE_PEER_FAILED_VERIFICATION: /* untrusted, expired, not yet valid, wrong host */
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_USE_SSL_FAILED:
    return XKS_OUTCOME_TLS_ERROR;
  case CURLE_SSL_CACERT_BADFILE:       /* --xks-ca-bundle unreadable or not PEM */
  case CURLE_SSL_CERTPROBLEM:          /* a local client certificate */
  case CURLE_SSL_CIPHER:               /* a local cipher list */
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
    return XKS_OUTCOME_LOCAL_ERROR;
  /* Codes of a transfer's reply, which a CONNECT_ONLY transfer has none
   * of: kept so that the mapping stays whole. */
  case CURLE_WRITE_ERROR:
  case CURLE_FILESIZE_EXCEEDED:
  case CURLE_WEIRD_SERVER_REPLY:   /* not HTTP */
  case CURLE_UNSUPPORTED_PROTOCOL: /* e.g. an HTTP/0.9 answer */
  case CURLE_PARTIAL_FILE:         /* shorter than its Content-Length */
  case CURLE_BAD_CONTENT_ENCODING:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_TOO_MANY_REDIRECTS:
    return XKS_OUTCOME_INVALID_RESPONSE;
  case CURLE_OUT_OF_MEMORY:
  case CURLE_FAILED_INIT:
  case CURLE_BAD_FUNCTION_ARGUMENT:
  case CURLE_READ_ERROR:
    return XKS_OUTCOME_LOCAL_ERROR;
  default: /* COULDNT_CONNECT, COULDNT_RESOLVE_HOST, RECV_ERROR, SEND_ERROR, GOT_NOTHING... */
    return XKS_OUTCOME_NOT_REACHABLE;
  }
}

/* Which error names the spec's table gives each operation. */
static int error_allowed(xks_op op, xks_error e) {
  switch (e) {
  case XKS_ERR_VALIDATION:
  case XKS_ERR_ACCESS_DENIED:
  case XKS_ERR_KEY_NOT_FOUND:
    return op != XKS_OP_HEALTH;
  case XKS_ERR_INVALID_CIPHERTEXT:
    return op == XKS_OP_DECRYPT;
  case XKS_ERR_INVALID_KEY_USAGE:
    return op == XKS_OP_ENCRYPT || op == XKS_OP_DECRYPT;
  case XKS_ERR_INVALID_STATE:
  case XKS_ERR_AUTHENTICATION_FAILED:
  case XKS_ERR_INVALID_URI_PATH:
  case XKS_ERR_THROTTLING:
  case XKS_ERR_UNSUPPORTED_OPERATION:
  case XKS_ERR_DEPENDENCY_TIMEOUT:
  case XKS_ERR_INTERNAL:
    return 1;
  default:
    return 0;
  }
}

kerr_code xks_client_kerr(const xks_call_status *st) {
  if (!st) return KERR_INTERNAL;
  switch (st->outcome) {
  case XKS_OUTCOME_OK:
    return KERR_OK;
  case XKS_OUTCOME_TIMED_OUT:
  case XKS_OUTCOME_NOT_REACHABLE:
  case XKS_OUTCOME_TLS_ERROR:
    return KERR_XKS_PROXY_URI_UNREACHABLE;
  case XKS_OUTCOME_INVALID_RESPONSE:
    return KERR_XKS_PROXY_INVALID_RESPONSE;
  case XKS_OUTCOME_BAD_INPUT:
    return KERR_VALIDATION;
  case XKS_OUTCOME_LOCAL_ERROR:
    return KERR_INTERNAL;
  case XKS_OUTCOME_PROXY_ERROR:
    break;
  }
  switch (st->proxy_error) {
  case XKS_ERR_DEPENDENCY_TIMEOUT:
  case XKS_ERR_THROTTLING:
    return KERR_XKS_PROXY_URI_UNREACHABLE;
  case XKS_ERR_AUTHENTICATION_FAILED:
    return KERR_XKS_PROXY_BAD_CREDENTIAL;
  case XKS_ERR_INVALID_URI_PATH:
    return KERR_XKS_PROXY_INVALID_CONFIG;
  case XKS_ERR_KEY_NOT_FOUND:
    return KERR_XKS_KEY_NOT_FOUND;
  case XKS_ERR_INVALID_STATE:
  case XKS_ERR_INVALID_KEY_USAGE:
    return KERR_XKS_KEY_INVALID_CONFIG;
  case XKS_ERR_ACCESS_DENIED:
  case XKS_ERR_INVALID_CIPHERTEXT:
    return KERR_INVALID_STATE;
  default: /* Validation, Internal, UnsupportedOperation */
    return KERR_XKS_PROXY_INVALID_RESPONSE;
  }
}

/* ---- one call -------------------------------------------------------------------- */

static const char *const OP_NAMES[] = {"?", "GetKeyMetadata", "Encrypt", "Decrypt",
                                       "GetHealthStatus"};
static const char *const OP_SUFFIX[] = {"", "metadata", "encrypt", "decrypt", "health"};

/* What a call needs to parse its 200 reply. */
typedef struct call_ctx {
  xks_op op;
  const char *key_id;            /* NULL for health */
  size_t data_len;               /* plaintext or ciphertext length */
  int want_cdiv;
  const uint8_t *aad;            /* for the CDIV */
  size_t aad_len;
  void *out;                     /* the op's result */
} call_ctx;

static int key_id_ok(const char *id) {
  size_t n;
  return id && (n = strlen(id)) >= 1 && n <= XKS_KEY_ID_MAX && all_in(id, n, ALNUM "-._");
}

/* Fill the status and the kerr for a failure. */
static kerr_code fail(xks_call_status *st, xks_outcome o, const call_ctx *cx, const char *url,
                      kerr *err, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static kerr_code fail(xks_call_status *st, xks_outcome o, const call_ctx *cx, const char *url,
                      kerr *err, const char *fmt, ...) {
  char detail[512];
  va_list ap;
  kerr_code code;

  st->outcome = o;
  code = xks_client_kerr(st);
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  kerr_fill(err, code, "XKS %s %s: %s: %s", OP_NAMES[cx->op], url ? url : "", xks_outcome_name(o),
            detail);
  return code;
}

/* Parse a 200 reply into cx->out. */
static kerr_code parse_ok(const call_ctx *cx, const char *body, size_t len, kerr *err) {
  switch (cx->op) {
  case XKS_OP_HEALTH:
    return xks_health_parse(body, len, cx->out, err);
  case XKS_OP_METADATA:
    return xks_key_metadata_parse(body, len, cx->out, err);
  case XKS_OP_DECRYPT:
    return xks_decrypt_result_parse(body, len, cx->data_len, cx->out, err);
  case XKS_OP_ENCRYPT: {
    xks_encrypt_result *r = cx->out;
    uint8_t cdiv[XKS_CDIV_LEN];
    kerr_code rc = xks_encrypt_result_parse(body, len, cx->data_len, cx->want_cdiv, r, err);
    if (rc || !cx->want_cdiv) return rc;
    rc = xks_cdiv(cx->aad, cx->aad_len, r->ct_metadata.data, r->ct_metadata.len, r->iv, r->iv_len,
                  r->ciphertext.data, r->ciphertext.len, r->tag, XKS_TAG_LEN, cdiv, err);
    if (!rc && secure_memcmp(cdiv, r->cdiv, XKS_CDIV_LEN) != 0)
      rc = kerr_set(err, KERR_XKS_PROXY_INVALID_RESPONSE,
                    "ciphertextDataIntegrityValue does not match the reply.");
    if (rc) xks_encrypt_result_free(r);
    return rc;
  }
  default:
    return kerr_set(err, KERR_INTERNAL, "Not an XKS operation.");
  }
}

/* ---- the exchange on a connection ------------------------------------------------ */

/* What one exchange came to: OK (a whole reply is in the slot's reader) or
 * the failure's outcome and words for it. */
typedef struct xfer {
  xks_outcome outcome;
  CURLcode cc;          /* libcurl's code, when libcurl failed */
  char what[128];       /* our words when libcurl's do not apply, else "" */
} xfer;

/* Wait until the socket is ready for `events`.  0: ready (or poll failed:
 * the send or receive that follows says how); -1: the deadline passed. */
static int wait_socket(curl_socket_t fd, short events, int64_t deadline) {
  for (;;) {
    int64_t left = deadline - mono_ms();
    struct pollfd p = {fd, events, 0};
    int n;
    if (left <= 0) return -1;
    n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
    if (n != 0 && !(n < 0 && errno == EINTR)) return 0;
  }
}

/* Whether the kept connection may carry this call, as libcurl judged its
 * kept connections: not idle too long, and nothing pending on it (a close,
 * a reset, a TLS alert or stray bytes all make it readable). */
static int kept_usable(const xks_client *c, const pool_slot *s) {
  struct pollfd p = {s->fd, POLLIN, 0};
  if (mono_ms() - s->idle_since > c->kept_idle_max_ms) return 0;
  return poll(&p, 1, 0) == 0;
}

/* Whether TLS has decrypted bytes of the connection waiting that nobody
 * read: stray bytes after a reply that came in the same read as its end,
 * which the socket poll of kept_usable cannot see.  Such a connection is
 * not kept.  A libcurl built on another TLS library does not say; those
 * bytes then show as a reply that is not HTTP on the next call. */
static int tls_pending(const pool_slot *s) {
  struct curl_tlssessioninfo *ti = NULL;
  if (curl_easy_getinfo(s->curl, CURLINFO_TLS_SSL_PTR, &ti) != CURLE_OK || !ti ||
      ti->backend != CURLSSLBACKEND_OPENSSL || !ti->internals)
    return 0;
  return SSL_has_pending((const SSL *)ti->internals);
}

/* Make the slot's connection with libcurl, within the call's deadline and
 * the connect deadline.  1 when connected; 0 with x filled. */
static int connect_slot(const xks_client *c, pool_slot *s, int64_t deadline, char *curl_msg,
                        xfer *x) {
  long left = (long)(deadline - mono_ms()), connect_left;
  CURLcode cc;
  if (!s->curl) {
    s->curl = curl_easy_init();
    if (!s->curl || setup_handle(c, s) != CURLE_OK) {
      drop_connection(s);
      x->outcome = XKS_OUTCOME_LOCAL_ERROR;
      snprintf(x->what, sizeof x->what, "cannot make a libcurl handle");
      return 0;
    }
  }
  if (left < 1) left = 1;
  /* The connect deadline is part of the call's: whatever of it is left,
   * or the configured connect timeout if that is shorter. */
  connect_left = c->connect_timeout_ms && c->connect_timeout_ms < left ? c->connect_timeout_ms : left;
  memset(&s->tls, 0, sizeof s->tls);
  curl_msg[0] = '\0';
  curl_easy_setopt(s->curl, CURLOPT_ERRORBUFFER, curl_msg);
  curl_easy_setopt(s->curl, CURLOPT_TIMEOUT_MS, left);
  curl_easy_setopt(s->curl, CURLOPT_CONNECTTIMEOUT_MS, connect_left);
  cc = curl_easy_perform(s->curl);
  if (cc == CURLE_OK && (curl_easy_getinfo(s->curl, CURLINFO_ACTIVESOCKET, &s->fd) != CURLE_OK ||
                         s->fd == CURL_SOCKET_BAD)) {
    drop_connection(s); /* connected, and no socket to show for it */
    x->outcome = XKS_OUTCOME_LOCAL_ERROR;
    snprintf(x->what, sizeof x->what, "libcurl gave no socket for the connection");
    return 0;
  }
  if (cc != CURLE_OK) {
    /* A failed connection is not kept: the handle, with its TLS store,
     * makes the next one. */
    x->outcome = classify_curl(cc, s->curl, s);
    x->cc = cc;
    s->fd = CURL_SOCKET_BAD;
    return 0;
  }
  s->connected = 1;
  return 1;
}

/* How sending or receiving ended. */
typedef enum io_end { IO_OK, IO_TIMEOUT, IO_FAILED, IO_CLOSED } io_end;

static io_end send_all(pool_slot *s, const uint8_t *p, size_t n, int64_t deadline, CURLcode *cc) {
  size_t off = 0;
  while (off < n) {
    size_t sent = 0;
    *cc = curl_easy_send(s->curl, p + off, n - off, &sent);
    if (*cc != CURLE_OK && *cc != CURLE_AGAIN) return IO_FAILED;
    off += sent;
    if ((*cc == CURLE_AGAIN || sent == 0) && wait_socket(s->fd, POLLOUT, deadline)) return IO_TIMEOUT;
  }
  return IO_OK;
}

/* Receive into the slot's reader until it has come to something (*hrc),
 * the peer closed (IO_CLOSED, *hrc from xks_http_end), receiving failed or
 * the deadline passed.  *excess: bytes came after the reply.  *rx_used:
 * how much of s->rx was written, to wipe. */
static io_end read_reply(pool_slot *s, int64_t deadline, xks_http_rc *hrc, size_t *received,
                         int *excess, size_t *rx_used, CURLcode *cc) {
  /* The reply cannot have come yet, and TLS holds nothing of it (a kept
   * connection is kept only with nothing pending): wait before the first
   * read rather than have TLS find the socket empty first. */
  if (wait_socket(s->fd, POLLIN, deadline)) return IO_TIMEOUT;
  for (;;) {
    size_t n = 0, used = 0;
    *cc = curl_easy_recv(s->curl, s->rx, RX_SIZE, &n);
    if (*cc == CURLE_AGAIN) {
      if (wait_socket(s->fd, POLLIN, deadline)) return IO_TIMEOUT;
      continue;
    }
    if (*cc != CURLE_OK) return IO_FAILED;
    if (n == 0) {
      *hrc = xks_http_end(s->reader);
      return IO_CLOSED;
    }
    *received += n;
    if (n > *rx_used) *rx_used = n;
    *hrc = xks_http_read(s->reader, s->rx, n, &used);
    if (*hrc == XKS_HTTP_DONE) *excess = used < n;
    if (*hrc != XKS_HTTP_MORE) return IO_OK;
    /* A peer that keeps sending is held to the deadline too. */
    if (mono_ms() >= deadline) return IO_TIMEOUT;
  }
}

/* Send the request (s->req[0..req_len)) and read the reply into the slot's
 * reader, connecting first when the slot has no usable connection.  A kept
 * connection that fails before a single byte of a reply came (the proxy
 * closed or reset it while idle, or on receiving the request) is no
 * failure: the request goes once more on a new connection within the same
 * deadline, as libcurl did.  Every failure lets the connection go; a whole
 * reply keeps it when the reply allows. */
static void exchange(const xks_client *c, pool_slot *s, size_t req_len, int64_t start,
                     int64_t deadline, char *curl_msg, size_t *rx_used, xfer *x) {
  int retried = 0;
  memset(x, 0, sizeof *x);
  for (;;) {
    int reused = 0, excess = 0;
    size_t received = 0;
    xks_http_rc hrc = XKS_HTTP_MORE;
    io_end io;
    CURLcode cc = CURLE_OK;

    if (s->connected && !kept_usable(c, s)) drop_connection(s);
    if (s->connected) {
      reused = 1;
      curl_msg[0] = '\0';
      curl_easy_setopt(s->curl, CURLOPT_ERRORBUFFER, curl_msg);
    } else if (!connect_slot(c, s, deadline, curl_msg, x)) {
      return;
    }
    xks_http_reader_init(s->reader, s->buf, XKS_CLIENT_REPLY_MAX);
    io = send_all(s, s->req, req_len, deadline, &cc);
    if (io == IO_OK) io = read_reply(s, deadline, &hrc, &received, &excess, rx_used, &cc);

    if ((io == IO_OK || io == IO_CLOSED) && hrc == XKS_HTTP_DONE) {
      if (s->reader->keep_alive && !excess && !tls_pending(s))
        s->idle_since = mono_ms();
      else
        drop_connection(s);
      return;
    }
    drop_connection(s);
    /* Nothing of a reply: not even a whole status line (libcurl's test). */
    if (reused && !retried && s->reader->status == 0 &&
        (io == IO_FAILED || (io == IO_CLOSED && hrc == XKS_HTTP_EMPTY))) {
      retried = 1;
      continue;
    }
    /* The outcomes libcurl's codes had: CURLE_OPERATION_TIMEDOUT once
     * connected, CURLE_SEND_ERROR, CURLE_RECV_ERROR and CURLE_GOT_NOTHING,
     * and for a reply that is not HTTP, too large or cut short,
     * INVALID_RESPONSE. */
    x->cc = cc;
    switch (io) {
    case IO_TIMEOUT:
      x->outcome = XKS_OUTCOME_TIMED_OUT;
      x->cc = CURLE_OPERATION_TIMEDOUT;
      snprintf(x->what, sizeof x->what,
               "Operation timed out after %ld milliseconds with %zu bytes received",
               (long)(mono_ms() - start), received);
      break;
    case IO_FAILED: /* reset, or a TLS failure: libcurl's message says which */
      x->outcome = XKS_OUTCOME_NOT_REACHABLE;
      break;
    default:
      if (hrc == XKS_HTTP_EMPTY) {
        x->outcome = XKS_OUTCOME_NOT_REACHABLE;
        x->cc = CURLE_GOT_NOTHING;
        snprintf(x->what, sizeof x->what, "Empty reply from server");
      } else if (hrc == XKS_HTTP_TOO_LARGE) {
        x->outcome = XKS_OUTCOME_INVALID_RESPONSE;
        snprintf(x->what, sizeof x->what, "reply larger than %zu bytes", (size_t)XKS_CLIENT_REPLY_MAX);
      } else {
        x->outcome = XKS_OUTCOME_INVALID_RESPONSE;
        snprintf(x->what, sizeof x->what, "not a valid HTTP reply: %s",
                 s->reader->error ? s->reader->error : "?");
      }
      break;
    }
    return;
  }
}

static kerr_code do_call(xks_client *c, const xks_request *req, const call_ctx *cx,
                         xks_call_status *st, kerr *err) {
  char url[XKS_CLIENT_ENDPOINT_MAX + URI_PATH_MAX + XKS_KEY_ID_MAX + 32];
  char path[URI_PATH_MAX + XKS_KEY_ID_MAX + 32];
  char amz_date[17], auth[AUTH_MAX];
  char curl_msg[CURL_ERROR_SIZE];
  kbytes body = {0};
  int64_t start = mono_ms(), deadline = start + c->timeout_ms;
  int slot = -1;
  pool_slot *s = NULL;
  size_t req_len = 0, rx_used = 0;
  kerr sub;
  kerr_code rc = KERR_OK;
  xfer x;
  time_t now;
  struct tm tm;
  int w;

  memset(st, 0, sizeof *st);
  memset(&x, 0, sizeof x);
  url[0] = '\0';
  curl_msg[0] = '\0';
  if (cx->key_id)
    w = snprintf(path, sizeof path, "%s/keys/%s/%s", c->uri_path, cx->key_id, OP_SUFFIX[cx->op]);
  else
    w = snprintf(path, sizeof path, "%s/%s", c->uri_path, OP_SUFFIX[cx->op]);
  if (w < 0 || (size_t)w >= sizeof path)
    return fail(st, XKS_OUTCOME_BAD_INPUT, cx, NULL, err, "the request URI is too long");
  w = snprintf(url, sizeof url, "%s%s", c->endpoint, path);
  if (w < 0 || (size_t)w >= sizeof url || (size_t)w > XKS_CLIENT_URI_MAX) {
    url[0] = '\0';
    return fail(st, XKS_OUTCOME_BAD_INPUT, cx, NULL, err,
                "the request URI would be longer than %d characters", XKS_CLIENT_URI_MAX);
  }

  if (xks_request_serialize(req, &body, &sub) != KERR_OK)
    return fail(st, sub.code == KERR_INTERNAL ? XKS_OUTCOME_LOCAL_ERROR : XKS_OUTCOME_BAD_INPUT,
                cx, url, err, "%s", sub.msg);

  now = time(NULL);
  gmtime_r(&now, &tm);
  strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm);
  {
    http_header sh[3] = {{"Host", c->host_header},
                         {"X-Amz-Date", amz_date},
                         {"Content-Type", "application/json"}};
    sigv4_request sr = {"POST", path, NULL, sh, 3, body.data, body.len};
    if (sigv4_sign(&sr, c->access_key_id, c->secret, c->region, XKS_CLIENT_SERVICE, amz_date,
                   auth, sizeof auth, &sub) != KERR_OK) {
      rc = fail(st, XKS_OUTCOME_LOCAL_ERROR, cx, url, err, "signing failed");
      goto out;
    }
  }

  slot = pool_take(c, deadline);
  if (slot == -2) {
    rc = fail(st, XKS_OUTCOME_LOCAL_ERROR, cx, url, err, "cannot make a libcurl handle");
    goto out;
  }
  if (slot < 0) {
    rc = fail(st, XKS_OUTCOME_TIMED_OUT, cx, url, err,
              "no free connection within %ld ms (%u calls in flight)", c->timeout_ms,
              c->pool_size);
    goto out;
  }
  if (mono_ms() >= deadline) {
    /* Woken for a free connection when its own time was up (pool_take
     * hands the slot over rather than leave it idle): send nothing, and
     * keep the connection for the next call. */
    pool_give(c, slot);
    slot = -1;
    rc = fail(st, XKS_OUTCOME_TIMED_OUT, cx, url, err,
              "no free connection within %ld ms (%u calls in flight)", c->timeout_ms,
              c->pool_size);
    goto out;
  }
  s = &c->slots[slot];
  xks_http_reader_init(s->reader, s->buf, XKS_CLIENT_REPLY_MAX);

  /* The request, in one buffer so that it leaves in one TLS record: the
   * headers signed above, exactly as signed, and those libcurl sent
   * besides (Accept, User-Agent, Content-Length; no Expect). */
  if (s->req_cap < REQ_HEAD_MAX + body.len) {
    secure_free(s->req, s->req_cap);
    s->req_cap = 0;
    s->req = secure_alloc(REQ_HEAD_MAX + body.len);
    if (!s->req) {
      rc = fail(st, XKS_OUTCOME_LOCAL_ERROR, cx, url, err, "cannot build the request");
      goto out;
    }
    s->req_cap = REQ_HEAD_MAX + body.len;
  }
  w = snprintf((char *)s->req, REQ_HEAD_MAX,
               "POST %s HTTP/1.1\r\nHost: %s\r\nX-Amz-Date: %s\r\n"
               "Content-Type: application/json\r\nAuthorization: %s\r\n"
               "Accept: application/json\r\nUser-Agent: " USER_AGENT "\r\n"
               "Content-Length: %zu\r\n\r\n",
               path, c->host_header, amz_date, auth, body.len);
  if (w < 0 || w >= REQ_HEAD_MAX) {
    req_len = REQ_HEAD_MAX;
    rc = fail(st, XKS_OUTCOME_LOCAL_ERROR, cx, url, err, "cannot build the headers");
    goto out;
  }
  if (body.len) memcpy(s->req + w, body.data, body.len);
  req_len = (size_t)w + body.len;

  exchange(c, s, req_len, start, deadline, curl_msg, &rx_used, &x);
  if (x.outcome != XKS_OUTCOME_OK) {
    xks_outcome o = x.outcome;
    /* An HTTP status belongs only to a reply that was read, however badly. */
    st->http_status = o == XKS_OUTCOME_INVALID_RESPONSE ? s->reader->status : 0;
    rc = fail(st, o, cx, url, err, "%s%s",
              x.cc == CURLE_OPERATION_TIMEDOUT && o == XKS_OUTCOME_NOT_REACHABLE
                  ? "no TCP connection within the deadline; "
              : x.cc == CURLE_SSL_CONNECT_ERROR && o == XKS_OUTCOME_NOT_REACHABLE
                  ? "the connection ended during the TLS handshake; "
                  : "",
              x.what[0] ? x.what : curl_msg[0] ? curl_msg : curl_easy_strerror(x.cc));
    goto out;
  }
  st->http_status = s->reader->status;

  if (st->http_status == 200) {
    rc = parse_ok(cx, (const char *)s->buf, s->reader->body_len, &sub);
    if (rc)
      rc = fail(st, rc == KERR_INTERNAL ? XKS_OUTCOME_LOCAL_ERROR : XKS_OUTCOME_INVALID_RESPONSE,
                cx, url, err, "HTTP 200: %s", sub.msg);
    goto out;
  }
  {
    xks_error e = XKS_ERR_NONE;
    if (xks_error_parse((const char *)s->buf, s->reader->body_len, &e, st->proxy_message, &sub) !=
        KERR_OK) {
      st->proxy_message[0] = '\0';
      rc = fail(st, XKS_OUTCOME_INVALID_RESPONSE, cx, url, err, "HTTP %ld: %s", st->http_status,
                sub.code == KERR_INTERNAL ? "out of memory" : "not an XKS error reply");
    } else if (xks_error_status(e) != st->http_status) {
      rc = fail(st, XKS_OUTCOME_INVALID_RESPONSE, cx, url, err, "HTTP %ld with errorName %s",
                st->http_status, xks_error_name(e));
    } else if (!error_allowed(cx->op, e)) {
      rc = fail(st, XKS_OUTCOME_INVALID_RESPONSE, cx, url, err,
                "HTTP %ld: %s is not an error of this operation", st->http_status,
                xks_error_name(e));
    } else {
      st->proxy_error = e;
      rc = fail(st, XKS_OUTCOME_PROXY_ERROR, cx, url, err, "HTTP %ld %s%s%s", st->http_status,
                xks_error_name(e), st->proxy_message[0] ? ": " : "", st->proxy_message);
    }
  }

out:
  if (rc && st->outcome != XKS_OUTCOME_PROXY_ERROR) {
    st->proxy_error = XKS_ERR_NONE;
    st->proxy_message[0] = '\0';
  }
  if (s) {
    /* Nothing of this call may outlive it in the slot or its handle. */
    if (s->curl) curl_easy_setopt(s->curl, CURLOPT_ERRORBUFFER, (char *)NULL);
    secure_wipe(s->buf, s->reader->body_len);
    xks_http_reader_wipe(s->reader);
    secure_wipe(s->rx, rx_used);
    secure_wipe(s->req, req_len);
    pool_give(c, slot);
  }
  secure_wipe(auth, sizeof auth);
  kbytes_wipe_free(&body);
  st->elapsed_ms = (long)(mono_ms() - start);
  if (!rc) st->outcome = XKS_OUTCOME_OK;
  return rc;
}

/* Borrow the metadata fields an operation sends (the spec's lists). */
static void fill_meta(xks_op op, const xks_call_meta *m, xks_req_meta *out) {
  memset(out, 0, sizeof *out);
  if (!m) return;
  out->kms_request_id = (char *)m->kms_request_id;
  out->kms_operation = (char *)m->kms_operation;
  if (op == XKS_OP_HEALTH) return;
  out->aws_principal_arn = (char *)m->aws_principal_arn;
  out->kms_key_arn = (char *)m->kms_key_arn;
  out->kms_via_service = (char *)m->kms_via_service;
  out->aws_source_vpc = (char *)m->aws_source_vpc;
  out->aws_source_vpce = (char *)m->aws_source_vpce;
}

static kerr_code check_args(xks_client *c, const call_ctx *cx, xks_call_status *st, kerr *err) {
  if (!c || !st || !cx->out) {
    if (st) memset(st, 0, sizeof *st);
    if (st) st->outcome = XKS_OUTCOME_BAD_INPUT;
    return kerr_set(err, KERR_VALIDATION, "XKS %s: missing argument.", OP_NAMES[cx->op]);
  }
  if (cx->op != XKS_OP_HEALTH && !key_id_ok(cx->key_id)) {
    memset(st, 0, sizeof *st);
    return fail(st, XKS_OUTCOME_BAD_INPUT, cx, NULL, err,
                "externalKeyId must be 1 to %d characters of A-Z a-z 0-9 - . _", XKS_KEY_ID_MAX);
  }
  return KERR_OK;
}

kerr_code xks_client_health(xks_client *c, const xks_call_meta *meta, xks_health *out,
                            xks_call_status *st, kerr *err) {
  call_ctx cx = {XKS_OP_HEALTH, NULL, 0, 0, NULL, 0, out};
  xks_request req;
  kerr_code rc;

  if (out) memset(out, 0, sizeof *out);
  rc = check_args(c, &cx, st, err);
  if (rc) return rc;
  memset(&req, 0, sizeof req);
  req.op = XKS_OP_HEALTH;
  fill_meta(req.op, meta, &req.meta);
  return do_call(c, &req, &cx, st, err);
}

kerr_code xks_client_metadata(xks_client *c, const xks_call_meta *meta, const char *key_id,
                              xks_key_metadata *out, xks_call_status *st, kerr *err) {
  call_ctx cx = {XKS_OP_METADATA, key_id, 0, 0, NULL, 0, out};
  xks_request req;
  kerr_code rc;

  if (out) memset(out, 0, sizeof *out);
  rc = check_args(c, &cx, st, err);
  if (rc) return rc;
  memset(&req, 0, sizeof req);
  req.op = XKS_OP_METADATA;
  fill_meta(req.op, meta, &req.meta);
  return do_call(c, &req, &cx, st, err);
}

kerr_code xks_client_encrypt(xks_client *c, const xks_call_meta *meta, const char *key_id,
                             const uint8_t *pt, size_t pt_len, const uint8_t *aad,
                             size_t aad_len, int want_cdiv, xks_encrypt_result *out,
                             xks_call_status *st, kerr *err) {
  call_ctx cx = {XKS_OP_ENCRYPT, key_id, pt_len, want_cdiv != 0, aad, aad ? aad_len : 0, out};
  xks_request req;
  kerr_code rc;

  if (out) memset(out, 0, sizeof *out);
  rc = check_args(c, &cx, st, err);
  if (rc) return rc;
  memset(&req, 0, sizeof req);
  req.op = XKS_OP_ENCRYPT;
  fill_meta(req.op, meta, &req.meta);
  req.plaintext.data = (uint8_t *)pt;
  req.plaintext.len = pt ? pt_len : 0;
  if (aad) {
    req.aad.data = (uint8_t *)aad;
    req.aad.len = aad_len;
    req.has_aad = 1;
  }
  req.want_cdiv = want_cdiv != 0;
  return do_call(c, &req, &cx, st, err);
}

kerr_code xks_client_decrypt(xks_client *c, const xks_call_meta *meta, const char *key_id,
                             const xks_decrypt_input *in, xks_decrypt_result *out,
                             xks_call_status *st, kerr *err) {
  call_ctx cx = {XKS_OP_DECRYPT, key_id, in ? in->ciphertext_len : 0, 0, NULL, 0, out};
  xks_request req;
  kerr_code rc;

  if (out) memset(out, 0, sizeof *out);
  rc = check_args(c, &cx, st, err);
  if (rc) return rc;
  if (!in || !in->ciphertext || !in->iv || !in->tag || (in->iv_len != 12 && in->iv_len != 16)) {
    memset(st, 0, sizeof *st);
    return fail(st, XKS_OUTCOME_BAD_INPUT, &cx, NULL, err,
                "decrypt needs a ciphertext, a 12- or 16-byte IV and a 16-byte tag");
  }
  memset(&req, 0, sizeof req);
  req.op = XKS_OP_DECRYPT;
  fill_meta(req.op, meta, &req.meta);
  req.ciphertext.data = (uint8_t *)in->ciphertext;
  req.ciphertext.len = in->ciphertext_len;
  memcpy(req.iv, in->iv, in->iv_len);
  req.iv_len = in->iv_len;
  memcpy(req.tag, in->tag, XKS_TAG_LEN);
  if (in->aad) {
    req.aad.data = (uint8_t *)in->aad;
    req.aad.len = in->aad_len;
    req.has_aad = 1;
  }
  if (in->ct_metadata) {
    req.ct_metadata.data = (uint8_t *)in->ct_metadata;
    req.ct_metadata.len = in->ct_metadata_len;
    req.has_ct_metadata = 1;
  }
  return do_call(c, &req, &cx, st, err);
}
