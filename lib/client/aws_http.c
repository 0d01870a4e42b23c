/* aws_http.c - SigV4-signed AWS JSON 1.1 calls over libcurl.
 *
 * Kept deliberately small: one easy handle per client, driven through a
 * multi handle that lives as long as the client (its connection cache is
 * what lets calls reuse a connection), headers signed exactly as sent, the
 * reply collected into a capped secure buffer, and the AWS error shape
 * decoded with jansson.  Everything about credentials and endpoints comes
 * from aws_config.
 *
 * The transfer loop is ours rather than curl_easy_perform's so that the read
 * timeout means what the SDKs mean by it: the longest silence between two
 * pieces of the exchange, measured in milliseconds once the connection is up
 * (libcurl's own low-speed limit averages over whole seconds instead). */
#include "client/aws_http.h"

#include <curl/curl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "aws/sigv4.h"
#include "core/secmem.h"

#define HOST_HEADER_MAX 300
#define PATH_MAX_LEN 2048
#define USER_AGENT_MAX 128
/* The transfer loop wakes at least this often to check the read timeout. */
#define POLL_SLICE_MS 1000

struct aws_http_client {
  const aws_config *cfg;
  char service[64];
  CURL *curl;
  CURLM *multi;                /* owns the connection cache between calls */
  char host[HOST_HEADER_MAX];  /* Host header value: host[:port], port only when not the scheme's default */
  char path[PATH_MAX_LEN];     /* request path, "/" when the URL has none */
  char user_agent[USER_AGENT_MAX];
  aws_http_options opts;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* `url` as it may be quoted in a message: a user name and password
 * (scheme://user:password@host) replaced by "***", the rest cut to fit. */
static void url_for_message(const char *url, char *out, size_t out_size) {
  const char *start = strstr(url, "://");
  const char *host_start = start ? start + 3 : url;
  const char *host_end = host_start + strcspn(host_start, "/?#");
  const char *at = NULL, *p;
  for (p = host_start; p < host_end; p++)
    if (*p == '@') at = p;
  if (at)
    snprintf(out, out_size, "%.*s***%.200s", (int)(host_start - url), url, at);
  else
    snprintf(out, out_size, "%.200s", url);
}

/* Split the endpoint URL into what signing needs.  curl's own parser decides
 * what the URL means, so what is signed is what curl sends. */
static kerr_code parse_endpoint(aws_http_client *c, const char *url, kerr *err) {
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL, *user = NULL;
  kerr_code rc = KERR_OK;
  char shown[256];
  int w;

  if (!u) return kerr_set(err, KERR_INTERNAL, "out of memory");
  url_for_message(url, shown, sizeof shown);
  if (strlen(url) > 1024 || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
    rc = kerr_set(err, KERR_VALIDATION, "Bad value for --endpoint-url \"%s\": not a URL like http://127.0.0.1:4599",
                  shown);
    goto out;
  }
  if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
    rc = kerr_set(err, KERR_VALIDATION, "Bad value for --endpoint-url \"%s\": the scheme must be http or https",
                  shown);
    goto out;
  }
  /* Credentials in the URL would end up in messages and debug lines that
   * quote the endpoint: refused, without quoting it. */
  if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK && user) {
    rc = kerr_set(err, KERR_VALIDATION, "Bad value for --endpoint-url: a user name or password is not allowed");
    goto out;
  }
  if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK && query && *query) {
    rc = kerr_set(err, KERR_VALIDATION, "Bad value for --endpoint-url \"%s\": a query string is not allowed", shown);
    goto out;
  }
  /* NO_DEFAULT_PORT: http://h:80 is signed as Host "h", as curl sends it. */
  if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_NO_DEFAULT_PORT) != CURLUE_OK) port = NULL;
  w = port ? snprintf(c->host, sizeof c->host, "%s:%s", host, port) : snprintf(c->host, sizeof c->host, "%s", host);
  if (w < 0 || (size_t)w >= sizeof c->host) {
    rc = kerr_set(err, KERR_VALIDATION, "Bad value for --endpoint-url: host name too long");
    goto out;
  }
  if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK || !path || !*path) {
    snprintf(c->path, sizeof c->path, "/");
  } else if ((size_t)snprintf(c->path, sizeof c->path, "%s", path) >= sizeof c->path) {
    rc = kerr_set(err, KERR_VALIDATION, "Bad value for --endpoint-url: path too long");
    goto out;
  }
out:
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_free(path);
  curl_free(query);
  curl_free(user);
  curl_url_cleanup(u);
  return rc;
}

kerr_code aws_http_client_new(const aws_config *cfg, const char *service, aws_http_client **out, kerr *err) {
  aws_http_options o;
  memset(&o, 0, sizeof o);
  o.connect_timeout_ms = 10 * 1000;
  o.total_timeout_ms = 60 * 1000;
  return aws_http_client_new_with(cfg, service, &o, out, err);
}

kerr_code aws_http_client_new_with(const aws_config *cfg, const char *service, const aws_http_options *opts,
                                   aws_http_client **out, kerr *err) {
  aws_http_client *c = NULL;
  kerr_code rc;

  *out = NULL;
  if (!cfg || !opts || !service || !*service || strlen(service) >= sizeof c->service)
    return kerr_set(err, KERR_VALIDATION, "aws_http_client_new: missing configuration or service");
  if (opts->connect_timeout_ms < 0 || opts->read_timeout_ms < 0 || opts->total_timeout_ms < 0)
    return kerr_set(err, KERR_VALIDATION, "aws_http_client_new: a timeout is negative");
  if (opts->user_agent && strlen(opts->user_agent) >= USER_AGENT_MAX)
    return kerr_set(err, KERR_VALIDATION, "aws_http_client_new: user agent longer than %d bytes", USER_AGENT_MAX - 1);
  if (!cfg->endpoint_url || !*cfg->endpoint_url)
    return kerr_set(err, KERR_VALIDATION, "no endpoint: give --endpoint-url URL (or set AWS_ENDPOINT_URL)");
  if (!opts->no_sign) {
    rc = aws_config_require(cfg, err);
    if (rc) return rc;
  }
  pthread_once(&curl_once, curl_init);
  if (curl_init_rc != CURLE_OK) return kerr_set(err, KERR_INTERNAL, "libcurl failed to initialise");
  c = calloc(1, sizeof *c);
  if (!c) return kerr_set(err, KERR_INTERNAL, "out of memory");
  c->cfg = cfg;
  snprintf(c->service, sizeof c->service, "%s", service);
  c->opts = *opts;
  if (!c->opts.reply_max) c->opts.reply_max = AWS_HTTP_REPLY_MAX;
  snprintf(c->user_agent, sizeof c->user_agent, "%s", opts->user_agent ? opts->user_agent : "kmsd-client/1");
  c->opts.user_agent = c->user_agent;
  rc = parse_endpoint(c, cfg->endpoint_url, err);
  if (rc) goto out;
  c->curl = curl_easy_init();
  c->multi = curl_multi_init();
  if (!c->curl || !c->multi) {
    rc = kerr_set(err, KERR_INTERNAL, "libcurl failed to create a handle");
    goto out;
  }
out:
  if (rc) {
    aws_http_client_free(c);
    c = NULL;
  }
  *out = c;
  return rc;
}

void aws_http_client_free(aws_http_client *c) {
  if (!c) return;
  if (c->curl) curl_easy_cleanup(c->curl);
  if (c->multi) curl_multi_cleanup(c->multi);
  free(c);
}

void aws_http_client_set_timeouts(aws_http_client *c, long connect_s, long total_s) {
  if (!c) return;
  if (connect_s > 0) c->opts.connect_timeout_ms = connect_s * 1000;
  if (total_s > 0) c->opts.total_timeout_ms = total_s * 1000;
}

const char *aws_http_client_endpoint(const aws_http_client *c) { return c ? c->cfg->endpoint_url : NULL; }

static int64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* When the exchange last moved: set by the body and header callbacks and by
 * upload progress, read by the transfer loop. */
typedef struct activity {
  int64_t last_ms;
} activity;

/* Reply collection: a secure buffer that grows by doubling up to the cap. */
typedef struct reply_sink {
  aws_http_reply *reply;
  size_t cap;
  size_t max;
  int too_large;
  int out_of_memory;
  activity *act;
} reply_sink;

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
  reply_sink *s = userdata;
  aws_http_reply *r = s->reply;
  size_t n = size * nmemb;

  s->act->last_ms = monotonic_ms();
  if (n > s->max - r->body_len) {
    s->too_large = 1;
    return 0;
  }
  if (r->body_len + n + 1 > s->cap) {
    size_t cap = s->cap ? s->cap : 4096;
    char *grown;
    while (cap < r->body_len + n + 1) cap *= 2;
    grown = secure_alloc(cap);
    if (!grown) {
      s->out_of_memory = 1;
      return 0;
    }
    if (r->body) memcpy(grown, r->body, r->body_len);
    secure_free(r->body, s->cap);
    r->body = grown;
    s->cap = cap;
  }
  memcpy(r->body + r->body_len, data, n);
  r->body_len += n;
  r->body[r->body_len] = '\0';
  return n;
}

/* Copy a header's value, trimmed, when its name is `name`. */
static void take_header(const char *line, size_t len, const char *name, char *dst, size_t dst_size) {
  size_t nlen = strlen(name), vlen;
  const char *v;
  if (len <= nlen || strncasecmp(line, name, nlen) != 0 || line[nlen] != ':') return;
  v = line + nlen + 1;
  vlen = len - nlen - 1;
  while (vlen && (*v == ' ' || *v == '\t')) v++, vlen--;
  while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' ')) vlen--;
  if (vlen >= dst_size) vlen = dst_size - 1;
  memcpy(dst, v, vlen);
  dst[vlen] = '\0';
}

typedef struct header_sink {
  aws_http_reply *reply;
  char error_type_header[128];
  reply_sink *body;
} header_sink;

static size_t on_header(char *line, size_t size, size_t nitems, void *userdata) {
  header_sink *h = userdata;
  size_t n = size * nitems;
  char length[32];

  h->body->act->last_ms = monotonic_ms();
  take_header(line, n, "x-amzn-RequestId", h->reply->request_id, sizeof h->reply->request_id);
  take_header(line, n, "x-amzn-ErrorType", h->error_type_header, sizeof h->error_type_header);
  /* A reply announced larger than the cap is refused before its body. */
  length[0] = '\0';
  take_header(line, n, "Content-Length", length, sizeof length);
  if (length[0]) {
    char *end;
    unsigned long long announced = strtoull(length, &end, 10);
    if (*end == '\0' && announced > h->body->max) {
      h->body->too_large = 1;
      return 0;
    }
  }
  return n;
}

/* "com.amazonaws.kms#NotFoundException" or "NotFoundException:http://..." -> "NotFoundException". */
static void clean_error_name(const char *in, char *out, size_t out_size) {
  const char *hash = strrchr(in, '#');
  size_t len;
  if (hash) in = hash + 1;
  len = strcspn(in, ":");
  if (len >= out_size) len = out_size - 1;
  memcpy(out, in, len);
  out[len] = '\0';
}

/* Printable single-line copy, so a hostile server cannot drive the terminal. */
static void copy_printable(const char *in, size_t len, char *out, size_t out_size) {
  size_t i, j = 0;
  for (i = 0; i < len && j + 1 < out_size; i++) {
    unsigned char ch = (unsigned char)in[i];
    out[j++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
  }
  out[j] = '\0';
}

static void decode_error(aws_http_reply *r, const char *type_header) {
  json_t *doc = NULL;
  const char *type = NULL, *msg = NULL;

  /* An AWS error is small; a large body is not parsed, since its tree would
   * cost many times its size. */
  if (r->body_len && r->body_len <= AWS_HTTP_ERROR_PARSE_MAX) doc = json_loadb(r->body, r->body_len, 0, NULL);
  if (json_is_object(doc)) {
    json_t *t = json_object_get(doc, "__type");
    json_t *m = json_object_get(doc, "message");
    if (!json_is_string(t)) t = json_object_get(doc, "code");
    if (!json_is_string(m)) m = json_object_get(doc, "Message");
    if (json_is_string(t)) type = json_string_value(t);
    if (json_is_string(m)) msg = json_string_value(m);
  }
  if (!type && *type_header) type = type_header;
  if (type && *type) {
    char name[128];
    clean_error_name(type, name, sizeof name);
    copy_printable(name, strlen(name), r->error_type, sizeof r->error_type);
  } else {
    snprintf(r->error_type, sizeof r->error_type, "%ld", r->status);
  }
  if (msg)
    copy_printable(msg, strlen(msg), r->error_message, sizeof r->error_message);
  else if (!doc && r->body_len)
    copy_printable(r->body, r->body_len < 200 ? r->body_len : 200, r->error_message, sizeof r->error_message);
  json_decref(doc);
}

/* Drive one transfer on the client's multi handle.  Returns libcurl's
 * result, or CURLE_OPERATION_TIMEDOUT with *stalled set when the exchange
 * was silent for longer than the read timeout. */
static CURLcode run_transfer(aws_http_client *c, activity *act, int *stalled) {
  CURLMcode mc;
  CURLcode result = CURLE_OK;
  curl_off_t sent = 0;
  int running = 1;

  *stalled = 0;
  if (curl_multi_add_handle(c->multi, c->curl) != CURLM_OK) return CURLE_FAILED_INIT;
  act->last_ms = monotonic_ms();
  for (;;) {
    int64_t now;
    long wait_ms = POLL_SLICE_MS;
    mc = curl_multi_perform(c->multi, &running);
    if (mc != CURLM_OK) {
      result = CURLE_FAILED_INIT;
      break;
    }
    if (!running) {
      int left;
      CURLMsg *msg = curl_multi_info_read(c->multi, &left);
      if (msg && msg->msg == CURLMSG_DONE) result = msg->data.result;
      break;
    }
    now = monotonic_ms();
    if (c->opts.read_timeout_ms > 0) {
      curl_off_t pretransfer = 0, uploaded = 0;
      /* Until the request starts to go out, the connect timeout governs;
       * request bytes leaving count as activity too. */
      curl_easy_getinfo(c->curl, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
      curl_easy_getinfo(c->curl, CURLINFO_SIZE_UPLOAD_T, &uploaded);
      if (pretransfer == 0 || uploaded != sent) {
        sent = uploaded;
        act->last_ms = now;
      }
      if (now - act->last_ms >= c->opts.read_timeout_ms) {
        *stalled = 1;
        result = CURLE_OPERATION_TIMEDOUT;
        break;
      }
      if (c->opts.read_timeout_ms - (now - act->last_ms) < wait_ms)
        wait_ms = (long)(c->opts.read_timeout_ms - (now - act->last_ms));
    }
    mc = curl_multi_poll(c->multi, NULL, 0, (int)wait_ms, NULL);
    if (mc != CURLM_OK) {
      result = CURLE_FAILED_INIT;
      break;
    }
  }
  /* Removing an unfinished transfer closes its connection: a connection
   * with half a reply in it must not serve the next call. */
  curl_multi_remove_handle(c->multi, c->curl);
  return result;
}

static aws_http_failure classify(CURLcode cc, int stalled, const reply_sink *sink, CURL *curl) {
  curl_off_t pretransfer = 0;
  if (sink->out_of_memory) return AWS_HTTP_FAIL_MEMORY;
  if (sink->too_large) return AWS_HTTP_FAIL_TOO_LARGE;
  if (stalled) return AWS_HTTP_FAIL_READ_TIMEOUT;
  switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
      curl_easy_getinfo(curl, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
      return pretransfer == 0 ? AWS_HTTP_FAIL_CONNECT_TIMEOUT : AWS_HTTP_FAIL_READ_TIMEOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
      return AWS_HTTP_FAIL_CONNECT;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return AWS_HTTP_FAIL_CERTIFICATE;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
      return AWS_HTTP_FAIL_CLOSED;
    default:
      return AWS_HTTP_FAIL_OTHER;
  }
}

/* A header list holds the signature and, with a session, the token: wipe
 * each line before libcurl frees it. */
static void free_headers(struct curl_slist *hdrs) {
  struct curl_slist *h;
  for (h = hdrs; h; h = h->next) secure_wipe(h->data, strlen(h->data));
  curl_slist_free_all(hdrs);
}

/* Append "name: value" to *hdrs.  The line is built in secure memory sized to
 * fit (a session token can be several KiB), and wiped once libcurl has its
 * copy.  KERR_VALIDATION when the line would exceed AWS_HTTP_HEADER_MAX. */
static kerr_code append_header(struct curl_slist **hdrs, const char *name, const char *value, kerr *err) {
  size_t size = strlen(name) + 2 + strlen(value) + 1;
  struct curl_slist *n;
  char *line;
  if (size > AWS_HTTP_HEADER_MAX)
    return kerr_set(err, KERR_VALIDATION, "aws_http_call: header %s longer than %d bytes", name, AWS_HTTP_HEADER_MAX);
  line = secure_alloc(size);
  if (!line) return kerr_set(err, KERR_INTERNAL, "out of memory");
  snprintf(line, size, "%s: %s", name, value);
  n = curl_slist_append(*hdrs, line);
  secure_free(line, size);
  if (!n) return kerr_set(err, KERR_INTERNAL, "out of memory");
  *hdrs = n;
  return KERR_OK;
}

/* The request headers, signed unless the client sends unsigned requests.
 * `auth` receives the Authorization value (wiped by the caller). */
static kerr_code build_headers(aws_http_client *c, const char *target, const char *body, size_t len, char *auth,
                               size_t auth_size, struct curl_slist **out, kerr *err) {
  static const char *const extra[] = {"Expect:", "Accept: application/json"};
  char amz_date[17];
  http_header sign_headers[5];
  struct curl_slist *hdrs = NULL, *n;
  sigv4_request req;
  size_t nh = 0, i;
  time_t now;
  struct tm tm;
  kerr_code rc = KERR_OK;

  *out = NULL;
  now = time(NULL);
  gmtime_r(&now, &tm);
  strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm);

  if (!c->opts.no_sign) {
    sign_headers[nh++] = (http_header){"Host", c->host};
    sign_headers[nh++] = (http_header){"X-Amz-Date", amz_date};
  }
  sign_headers[nh++] = (http_header){"X-Amz-Target", target};
  sign_headers[nh++] = (http_header){"Content-Type", "application/x-amz-json-1.1"};
  if (!c->opts.no_sign && c->cfg->session_token)
    sign_headers[nh++] = (http_header){"X-Amz-Security-Token", c->cfg->session_token};
  if (!c->opts.no_sign) {
    memset(&req, 0, sizeof req);
    req.method = "POST";
    req.path = c->path;
    req.headers = sign_headers;
    req.nheaders = nh;
    req.body = (const uint8_t *)body;
    req.body_len = len;
    rc = sigv4_sign(&req, c->cfg->access_key_id, c->cfg->secret_access_key, c->cfg->region, c->service, amz_date,
                    auth, auth_size, err);
    if (rc) goto out;
  }
  for (i = 0; i < nh; i++) {
    rc = append_header(&hdrs, sign_headers[i].name, sign_headers[i].value, err);
    if (rc) goto out;
  }
  for (i = 0; i < sizeof extra / sizeof *extra; i++) {
    n = curl_slist_append(hdrs, extra[i]);
    if (!n) {
      rc = kerr_set(err, KERR_INTERNAL, "out of memory");
      goto out;
    }
    hdrs = n;
  }
  if (!c->opts.no_sign) rc = append_header(&hdrs, "Authorization", auth, err);
out:
  if (rc) {
    free_headers(hdrs);
    hdrs = NULL;
  }
  *out = hdrs;
  return rc;
}


kerr_code aws_http_call(aws_http_client *c, const char *target, const char *body, size_t len, aws_http_reply *out,
                        kerr *err) {
  char auth[1024];
  struct curl_slist *hdrs = NULL;
  reply_sink sink;
  header_sink hsink;
  activity act;
  CURLcode cc;
  kerr_code rc = KERR_OK;
  int stalled = 0;
  char curl_error[CURL_ERROR_SIZE];

  memset(out, 0, sizeof *out);
  auth[0] = '\0';
  if (!c || !target || !*target || strlen(target) > 256 || (!body && len)) {
    out->failure = AWS_HTTP_FAIL_OTHER;
    return kerr_set(err, KERR_VALIDATION, "aws_http_call: bad arguments");
  }
  if (!body) body = "";

  rc = build_headers(c, target, body, len, auth, sizeof auth, &hdrs, err);
  if (rc) {
    out->failure = rc == KERR_INTERNAL ? AWS_HTTP_FAIL_MEMORY : AWS_HTTP_FAIL_OTHER;
    goto out;
  }

  memset(&act, 0, sizeof act);
  memset(&sink, 0, sizeof sink);
  sink.reply = out;
  sink.max = c->opts.reply_max;
  sink.act = &act;
  memset(&hsink, 0, sizeof hsink);
  hsink.reply = out;
  hsink.body = &sink;
  curl_error[0] = '\0';
  curl_easy_reset(c->curl);
  curl_easy_setopt(c->curl, CURLOPT_URL, c->cfg->endpoint_url);
  curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
  curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
  curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(c->curl, CURLOPT_USERAGENT, c->user_agent);
  curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &hsink);
  curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, curl_error);
  /* libcurl reads 0 as its own default (300 s); "no limit" is its largest
   * value instead (INT_MAX ms, about 24.8 days). */
  curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS,
                   c->opts.connect_timeout_ms > 0 ? c->opts.connect_timeout_ms : (long)INT_MAX);
  curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, c->opts.total_timeout_ms);
  curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c->curl, CURLOPT_FOLLOWLOCATION, 0L);
  if (c->cfg->ca_bundle) curl_easy_setopt(c->curl, CURLOPT_CAINFO, c->cfg->ca_bundle);
  if (c->opts.no_verify_ssl) {
    curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c->curl, CURLOPT_SSL_VERIFYHOST, 0L);
  }

  cc = run_transfer(c, &act, &stalled);
  curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
  curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, NULL);
  if (cc != CURLE_OK || sink.too_large) {
    const char *why = curl_error[0] ? curl_error : curl_easy_strerror(cc);
    out->failure = classify(cc, stalled, &sink, c->curl);
    if (out->failure == AWS_HTTP_FAIL_MEMORY)
      rc = kerr_set(err, KERR_INTERNAL, "out of memory while reading the reply from %s", c->cfg->endpoint_url);
    else if (out->failure == AWS_HTTP_FAIL_TOO_LARGE)
      rc = kerr_set(err, KERR_DEPENDENCY_TIMEOUT, "the reply from %s is larger than %zu bytes", c->cfg->endpoint_url,
                    c->opts.reply_max);
    else if (stalled)
      rc = kerr_set(err, KERR_DEPENDENCY_TIMEOUT, "Read timeout on endpoint URL: \"%s\" (nothing received for %ld ms)",
                    c->cfg->endpoint_url, c->opts.read_timeout_ms);
    else if (out->failure == AWS_HTTP_FAIL_CONNECT || out->failure == AWS_HTTP_FAIL_CONNECT_TIMEOUT ||
             out->failure == AWS_HTTP_FAIL_READ_TIMEOUT)
      rc = kerr_set(err, KERR_DEPENDENCY_TIMEOUT, "Could not connect to the endpoint URL: \"%s\" (%s)",
                    c->cfg->endpoint_url, why);
    else
      rc = kerr_set(err, KERR_DEPENDENCY_TIMEOUT, "request to \"%s\" failed: %s", c->cfg->endpoint_url, why);
    goto out;
  }
  curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &out->status);
  if (!out->body) {
    out->body = secure_alloc(1);
    if (!out->body) {
      out->failure = AWS_HTTP_FAIL_MEMORY;
      rc = kerr_set(err, KERR_INTERNAL, "out of memory");
      goto out;
    }
  }
  if (out->status >= 300) decode_error(out, hsink.error_type_header);
out:
  secure_wipe(auth, sizeof auth);
  free_headers(hdrs);
  return rc;
}

void aws_http_reply_free(aws_http_reply *r) {
  if (!r) return;
  /* Bytes past body_len + 1 were never written (secure_alloc zeroes), so
   * wiping the written part is wiping everything. */
  if (r->body) secure_free(r->body, r->body_len + 1);
  memset(r, 0, sizeof *r);
}
