/* test_xks_client.c - kmsd's XKS client (lib/xks/xks_client.c) against real
 * parts over real TLS on loopback.
 *
 * The proxy is ours (lib/xksproxy) on a SoftHSM2 token in a temporary
 * directory, serving TLS with a certificate for xks.example.com made here
 * by a test CA; the client reaches it as https://xks.example.com through a
 * connect-to override, with host-name checks on.  Around it: stand-ins that
 * misbehave, each a real server too - lib/http's TLS server with a handler
 * that answers junk (not JSON, missing fields, wrong types, wrong sizes,
 * mismatched statuses, a bad CDIV, too large, too late) or records what
 * the client sent; servers with an expired certificate, with TLS 1.1
 * only and with a cipher suite the client does not offer; a port nobody
 * listens on; a listener whose backlog is full, so the kernel drops the
 * client's SYN (a blackholed connect that works offline); listeners that
 * accept and then close or reset the connection during the TLS handshake;
 * a listener that never answers; a TLS server that closes or resets a
 * kept-alive connection; a CA bundle that cannot be read.
 * Several threads encrypt and decrypt at once through one client.  A name
 * whose lookup hangs comes from the test's own getaddrinfo, which stands in
 * front of the C library's for that one name. */
#define _GNU_SOURCE /* RTLD_NEXT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

/* The XKS headers first: p11-kit's pkcs11.h defines `iv_len` as a macro. */
#include "core/log.h"
#include "http/http_server.h"
#include "xks/xks_client.h"
#include "xksproxy/xksp_backend.h"
#include "xksproxy/xksp_config.h"
#include "xksproxy/xksp_hsm.h"
#include "xksproxy/xksp_server.h"
#include "pkcs11/p11.h"
#include "pkcs11/p11_softhsm.h"

#undef iv_len

#include <openssl/ssl.h>

#define SO_PIN "so-secret-1234"
#define USER_PIN "xks-user-pin-5678"
#define TOKEN "xc"
#define KEY "k1"
#define PREFIX "/test/kms/xks/v1"
#define REGION "us-east-1"
#define AKID "ABCDEFGHIJKLMNOPQRST"
#define SECRET "c2VjcmV0LW9uZS1zZWNyZXQtb25lLXNlY3JldC1vbmUK"
#define WRONG_SECRET "d3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3IK"
#define HOST "xks.example.com"
#define ENDPOINT "https://" HOST
#define PT_MARK "plaintext-marker-never-logged"
/* Slow machines (valgrind) get this long for every call that should work. */
#define PATIENT_MS 20000

/* ---- certificates --------------------------------------------------------- */

static const char CERT_SCRIPT[] =
    "set -e\n"
    "cd \"$1\"\n"
    "ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
    "mkca() {\n"
    "  openssl req -x509 $ec -keyout $1.key -out $1.pem -days 30 -subj \"/CN=kmsd test $1\" \\\n"
    "    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign\n"
    "  mkdir $1.db; : > $1.db/index.txt; echo 01 > $1.db/serial\n"
    "  printf '%s\\n' '[ca]' 'default_ca = sect' '[sect]' \"dir = $PWD/$1.db\" \\\n"
    "    'database = $dir/index.txt' 'new_certs_dir = $dir' 'serial = $dir/serial' \\\n"
    "    'default_md = sha256' 'default_days = 30' 'policy = pol' 'unique_subject = no' \\\n"
    "    '[pol]' 'commonName = supplied' > $1.cnf\n"
    "}\n"
    "issue() {\n"
    "  ca=$1 name=$2; shift 2\n"
    "  openssl req -new $ec -keyout $name.key -out $name.csr -subj /CN=xks.example.com\n"
    "  printf 'basicConstraints=CA:FALSE\\nsubjectAltName=DNS:xks.example.com\\n"
    "extendedKeyUsage=serverAuth\\n' > $name.ext\n"
    "  openssl ca -batch -notext -config $ca.cnf -cert $ca.pem -keyfile $ca.key \\\n"
    "    -in $name.csr -out $name.pem -extfile $name.ext \"$@\"\n"
    "}\n"
    "mkca ca\n"
    "mkca otherca\n"
    "issue ca xks\n"
    "issue ca expired -startdate 20200101000000Z -enddate 20200201000000Z\n";

static char dir[] = "/tmp/kmsd-xksc-XXXXXX";
static char ca_pem[PATH_MAX], otherca_pem[PATH_MAX], cert_path[PATH_MAX], key_path[PATH_MAX];
static char *cert_text, *key_text, *expired_cert_text, *expired_key_text;

static char *read_text(const char *name) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *text = calloc(1, 65536);
  size_t n = text ? fread(text, 1, 65535, f) : 0;
  fclose(f);
  if (text && n == 0) {
    free(text);
    text = NULL;
  }
  return text;
}

/* ---- the real proxy ------------------------------------------------------- */

static p11_module *module;
static xksp_config *pcfg;
static xksp_proxy *proxy;
static uint16_t proxy_port;

static int start_proxy(void) {
  char softhsm[PATH_MAX];
  p11_err pe;
  kerr e;
  CK_SLOT_ID slot;

  if (p11_softhsm_find_module(NULL, softhsm, sizeof softhsm, &pe)) return -1;
  if (p11_softhsm_configure(dir, NULL, 0, &pe)) return -1;
  if (p11_module_load(softhsm, &module, &pe)) return -1;
  if (p11_softhsm_provision(module, TOKEN, SO_PIN, USER_PIN, &slot, &pe)) return -1;
  if (xksp_create_key(softhsm, TOKEN, USER_PIN, KEY, XKSP_USAGE_ENCRYPT_DECRYPT, &e)) {
    fprintf(stderr, "create key: %s\n", e.msg);
    return -1;
  }
  xksp_flags f;
  memset(&f, 0, sizeof f);
  f.listen = "127.0.0.1:0";
  f.tls_cert = cert_path;
  f.tls_key = key_path;
  f.uri_prefix = PREFIX;
  f.region = REGION;
  f.access_key_id = AKID;
  f.secret_access_key = SECRET;
  f.pkcs11_module = softhsm;
  f.token_label = TOKEN;
  f.pin = USER_PIN;
  f.session_pool = 4;
  f.threads = 4;
  if (xksp_config_from_flags(&f, &pcfg, &e) || xksp_proxy_new(pcfg, &xksp_hsm_backend, &proxy, &e) ||
      xksp_proxy_serve(proxy, &e)) {
    fprintf(stderr, "proxy: %s\n", e.msg);
    return -1;
  }
  proxy_port = xksp_proxy_port(proxy);
  return 0;
}

/* ---- stand-ins ------------------------------------------------------------ */

enum junk {
  J_RECORD = 0,      /* a valid health reply; remember the request */
  J_NOT_JSON,
  J_MISSING_FIELD,
  J_WRONG_TYPE,
  J_EMPTY_200,
  J_TRAILING,        /* valid JSON followed by more */
  J_STATUS_MISMATCH, /* 404 with AuthenticationFailedException */
  J_UNKNOWN_NAME,    /* 400 with an unknown errorName */
  J_HTML_500,
  J_WRONG_OP_ERROR,  /* 404 KeyNotFoundException on health */
  J_THROTTLED,       /* a proper 429 ThrottlingException */
  J_TOO_LARGE,
  J_SHORT_CT,        /* encrypt: ciphertext shorter than the plaintext */
  J_BAD_CDIV,
  J_CDIV_UNASKED,    /* encrypt: a CDIV nobody asked for */
  J_BIG_METADATA,    /* encrypt: 21 bytes of ciphertextMetadata */
  J_SLOW,            /* a valid reply after 800 ms */
  J_REDIRECT,        /* 302 elsewhere */
  J_PT_3,            /* decrypt: a 3-byte plaintext */
};

static atomic_int junk = J_RECORD;
static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static char rec_body[16384], rec_auth[512], rec_host[128], rec_ctype[128], rec_path[512];
static char rec_peer[HTTP_PEER_MAX];

#define HEALTH_OK                                                                              \
  "{\"xksProxyFleetSize\":1,\"xksProxyVendor\":\"t\",\"xksProxyModel\":\"t\",\"ekmVendor\":\"t\"," \
  "\"ekmFleetDetails\":[{\"id\":\"a\",\"model\":\"m\",\"healthStatus\":\"ACTIVE\"}]}"
/* 5-byte ciphertext, 12-byte IV, 16-byte tag */
#define ENC_PARTS                                                                          \
  "\"ciphertext\":\"AAAAAAA=\",\"initializationVector\":\"AAAAAAAAAAAAAAAA\","             \
  "\"authenticationTag\":\"AAAAAAAAAAAAAAAAAAAAAA==\""
#define CDIV_ZERO "\"ciphertextDataIntegrityValue\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\""

static void answer(http_response *resp, int status, const char *body) {
  resp->status = status;
  resp->body = strdup(body);
  resp->body_len = resp->body ? strlen(body) : 0;
}

static void junk_handler(void *ctx, const http_request *req, http_response *resp) {
  (void)ctx;
  switch (atomic_load(&junk)) {
  case J_RECORD: {
    const char *v;
    pthread_mutex_lock(&rec_lock);
    snprintf(rec_body, sizeof rec_body, "%.*s", (int)req->body_len, req->body ? (const char *)req->body : "");
    v = http_request_header(req, "Authorization");
    snprintf(rec_auth, sizeof rec_auth, "%s", v ? v : "");
    v = http_request_header(req, "Host");
    snprintf(rec_host, sizeof rec_host, "%s", v ? v : "");
    v = http_request_header(req, "Content-Type");
    snprintf(rec_ctype, sizeof rec_ctype, "%s", v ? v : "");
    snprintf(rec_path, sizeof rec_path, "%s", req->path);
    snprintf(rec_peer, sizeof rec_peer, "%s", req->peer);
    pthread_mutex_unlock(&rec_lock);
    answer(resp, 200, HEALTH_OK);
    break;
  }
  case J_NOT_JSON: answer(resp, 200, "hello, world"); break;
  case J_MISSING_FIELD:
    answer(resp, 200,
           "{\"xksProxyFleetSize\":1,\"xksProxyVendor\":\"t\",\"ekmVendor\":\"t\","
           "\"ekmFleetDetails\":[{\"id\":\"a\",\"model\":\"m\",\"healthStatus\":\"ACTIVE\"}]}");
    break;
  case J_WRONG_TYPE:
    answer(resp, 200,
           "{\"xksProxyFleetSize\":\"1\",\"xksProxyVendor\":\"t\",\"xksProxyModel\":\"t\","
           "\"ekmVendor\":\"t\",\"ekmFleetDetails\":[{\"id\":\"a\",\"model\":\"m\","
           "\"healthStatus\":\"ACTIVE\"}]}");
    break;
  case J_EMPTY_200: answer(resp, 200, ""); break;
  case J_TRAILING: answer(resp, 200, HEALTH_OK "{}"); break;
  case J_STATUS_MISMATCH: answer(resp, 404, "{\"errorName\":\"AuthenticationFailedException\"}"); break;
  case J_UNKNOWN_NAME: answer(resp, 400, "{\"errorName\":\"TeapotException\"}"); break;
  case J_HTML_500: answer(resp, 500, "<html><body>Internal Server Error</body></html>"); break;
  case J_WRONG_OP_ERROR: answer(resp, 404, "{\"errorName\":\"KeyNotFoundException\"}"); break;
  case J_THROTTLED:
    answer(resp, 429, "{\"errorName\":\"ThrottlingException\",\"errorMessage\":\"slow down\"}");
    break;
  case J_TOO_LARGE: {
    size_t n = 100 * 1024;
    resp->status = 200;
    resp->body = malloc(n);
    if (resp->body) {
      memset(resp->body, ' ', n);
      memcpy(resp->body, "{}", 2);
    }
    resp->body_len = resp->body ? n : 0;
    break;
  }
  case J_SHORT_CT:
    answer(resp, 200,
           "{\"ciphertext\":\"AAAA\",\"initializationVector\":\"AAAAAAAAAAAAAAAA\","
           "\"authenticationTag\":\"AAAAAAAAAAAAAAAAAAAAAA==\"}");
    break;
  case J_BAD_CDIV: answer(resp, 200, "{" ENC_PARTS "," CDIV_ZERO "}"); break;
  case J_CDIV_UNASKED: answer(resp, 200, "{" ENC_PARTS "," CDIV_ZERO "}"); break;
  case J_BIG_METADATA:
    answer(resp, 200, "{" ENC_PARTS ",\"ciphertextMetadata\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}");
    break;
  case J_SLOW:
    usleep(800 * 1000);
    answer(resp, 200, HEALTH_OK);
    break;
  case J_REDIRECT:
    answer(resp, 302, "");
    http_response_header(resp, "Location", "https://xks.example.com/elsewhere");
    break;
  case J_PT_3: answer(resp, 200, "{\"plaintext\":\"AAAA\"}"); break;
  default: answer(resp, 500, ""); break;
  }
}

static http_server *start_standin(const char *cert, const char *key, const char *priority) {
  http_server_config cfg = {0};
  http_server *s = NULL;
  kerr e;
  cfg.host = "127.0.0.1";
  cfg.threads = 4;
  cfg.handler = junk_handler;
  cfg.tls_cert_pem = cert;
  cfg.tls_key_pem = key;
  cfg.tls_priority = priority;
  if (http_server_start(&cfg, &s, &e) != KERR_OK) {
    fprintf(stderr, "stand-in: %s\n", e.msg);
    return NULL;
  }
  return s;
}

static http_server *standin, *expired_srv;
static uint16_t standin_port, expired_port;

/* ---- group setup ---------------------------------------------------------- */

static int group_setup(void **state) {
  (void)state;
  char cmd[PATH_MAX + 64];
  log_set_level(LOG_WARN);
  if (!mkdtemp(dir)) return -1;
  snprintf(cmd, sizeof cmd, "sh -s %s >%s/openssl.log 2>&1", dir, dir);
  FILE *sh = popen(cmd, "w");
  if (!sh) return -1;
  fputs(CERT_SCRIPT, sh);
  if (pclose(sh) != 0) {
    fprintf(stderr, "openssl could not make the test certificates (see %s/openssl.log)\n", dir);
    return -1;
  }
  snprintf(ca_pem, sizeof ca_pem, "%s/ca.pem", dir);
  snprintf(otherca_pem, sizeof otherca_pem, "%s/otherca.pem", dir);
  snprintf(cert_path, sizeof cert_path, "%s/xks.pem", dir);
  snprintf(key_path, sizeof key_path, "%s/xks.key", dir);
  cert_text = read_text("xks.pem");
  key_text = read_text("xks.key");
  expired_cert_text = read_text("expired.pem");
  expired_key_text = read_text("expired.key");
  if (!cert_text || !key_text || !expired_cert_text || !expired_key_text) return -1;
  if (start_proxy()) return -1;
  standin = start_standin(cert_text, key_text, NULL);
  expired_srv = start_standin(expired_cert_text, expired_key_text, NULL);
  if (!standin || !expired_srv) return -1;
  standin_port = http_server_port(standin);
  expired_port = http_server_port(expired_srv);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  http_server_stop(standin, 2000);
  http_server_stop(expired_srv, 2000);
  xksp_proxy_free(proxy, 2000);
  xksp_config_free(pcfg);
  p11_module_release(module);
  free(cert_text);
  free(key_text);
  free(expired_cert_text);
  free(expired_key_text);
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

/* ---- helpers -------------------------------------------------------------- */

typedef struct client_opts {
  const char *endpoint;   /* default ENDPOINT */
  const char *uri_path;   /* default PREFIX */
  const char *secret;     /* default SECRET */
  const char *ca;         /* default ca_pem */
  int port;               /* connect-to HOST:443 -> 127.0.0.1:port; 0: none */
  const char *connect_host; /* the HOST of the connect-to; default HOST */
  long timeout_ms;        /* default PATIENT_MS */
  long connect_timeout_ms;
  unsigned pool;
  long kept_idle_max_ms;  /* default the client's */
} client_opts;

static xks_client *new_client(const client_opts *o) {
  char ct[128];
  const char *cts[1] = {ct};
  xks_client_config cfg = {0};
  xks_client *c = NULL;
  kerr e;
  snprintf(ct, sizeof ct, "%s:443:127.0.0.1:%d", o->connect_host ? o->connect_host : HOST, o->port);
  cfg.endpoint = o->endpoint ? o->endpoint : ENDPOINT;
  cfg.uri_path = o->uri_path ? o->uri_path : PREFIX;
  cfg.region = REGION;
  cfg.access_key_id = AKID;
  cfg.secret_access_key = o->secret ? o->secret : SECRET;
  cfg.ca_bundle = o->ca ? o->ca : ca_pem;
  cfg.connect_to = cts;
  cfg.connect_to_count = o->port ? 1 : 0;
  cfg.timeout_ms = o->timeout_ms ? o->timeout_ms : PATIENT_MS;
  cfg.connect_timeout_ms = o->connect_timeout_ms;
  cfg.pool_size = o->pool;
  cfg.kept_idle_max_ms = o->kept_idle_max_ms;
  if (xks_client_new(&cfg, &c, &e) != KERR_OK) fail_msg("xks_client_new: %s", e.msg);
  return c;
}

static xks_client *proxy_client(void) {
  client_opts o = {0};
  o.port = proxy_port;
  return new_client(&o);
}

static xks_client *standin_client(long timeout_ms) {
  client_opts o = {0};
  o.port = standin_port;
  o.timeout_ms = timeout_ms;
  return new_client(&o);
}

static const xks_call_meta META = {
    .kms_request_id = "11111111-2222-3333-4444-555555555555",
    .kms_operation = "Encrypt",
    .aws_principal_arn = "arn:aws:iam::111122223333:user/alice",
    .kms_key_arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
};

static const xks_call_meta HEALTH_META = {.kms_request_id = "hc-1", .kms_operation = "KmsHealthCheck"};

/* No message of a failure may carry a secret or a plaintext. */
static void assert_clean(const kerr *e) {
  assert_null(strstr(e->msg, SECRET));
  assert_null(strstr(e->msg, WRONG_SECRET));
  assert_null(strstr(e->msg, PT_MARK));
  assert_null(strstr(e->msg, "cGxhaW50ZXh0")); /* base64 of "plaintext" */
}

static xks_outcome health_outcome(xks_client *c, xks_call_status *st, kerr *e) {
  xks_health h;
  kerr_code rc = xks_client_health(c, &HEALTH_META, &h, st, e);
  if (rc == KERR_OK) xks_health_free(&h);
  assert_int_equal(rc == KERR_OK, st->outcome == XKS_OUTCOME_OK);
  if (rc) {
    assert_int_equal(rc, e->code);
    assert_int_equal(rc, xks_client_kerr(st));
    assert_clean(e);
  }
  return st->outcome;
}

static long ms_since(const struct timespec *a) {
  struct timespec b;
  clock_gettime(CLOCK_MONOTONIC, &b);
  return (b.tv_sec - a->tv_sec) * 1000 + (b.tv_nsec - a->tv_nsec) / 1000000;
}

/* ---- configuration -------------------------------------------------------- */

static void expect_bad_config(const xks_client_config *cfg, const char *word) {
  xks_client *c = (xks_client *)&c; /* must come back NULL */
  kerr e;
  assert_int_equal(xks_client_new(cfg, &c, &e), KERR_VALIDATION);
  assert_null(c);
  if (word && !strstr(e.msg, word)) fail_msg("message \"%s\" lacks \"%s\"", e.msg, word);
  assert_clean(&e);
}

static void test_config_rules(void **state) {
  (void)state;
  const char *good_ct[] = {"xks.example.com:443:127.0.0.1:8443", "::[::1]:9", ":::"};
  const char *bad_ct[] = {"xks.example.com:443:127.0.0.1", "a:b:c:d", "h:443:to host:1",
                          "h:99999:t:1", "h:1:t:1:extra"};
  xks_client_config base = {0};
  base.endpoint = ENDPOINT;
  base.uri_path = PREFIX;
  base.region = REGION;
  base.access_key_id = AKID;
  base.secret_access_key = SECRET;
  base.connect_to = good_ct;
  base.connect_to_count = 3;

  xks_client *c = NULL;
  kerr e;
  assert_int_equal(xks_client_new(&base, &c, &e), KERR_OK);
  assert_string_equal(xks_client_endpoint(c), ENDPOINT);
  assert_string_equal(xks_client_uri_path(c), PREFIX);
  xks_client_free(c);
  /* The model's bare form, a two-digit version and a port are accepted. */
  xks_client_config v = base;
  v.uri_path = "/kms/xks/v1";
  v.endpoint = "https://xks.example.com:8443";
  assert_int_equal(xks_client_new(&v, &c, &e), KERR_OK);
  xks_client_free(c);
  v.uri_path = "/a_b-c/d/kms/xks/v12";
  assert_int_equal(xks_client_new(&v, &c, &e), KERR_OK);
  xks_client_free(c);

  static const struct {
    size_t field; /* 0 endpoint, 1 path, 2 region, 3 akid, 4 secret, 5 ca */
    const char *value;
    const char *word;
  } bad[] = {
      {0, "http://xks.example.com", "https://"},
      {0, "https://xks.example.com/path", "host name"},
      {0, "https://xks.example.com:0", "port"},
      {0, "https://xks.example.com:65536", "port"},
      {0, "https://xks.example.com:", "port"},
      {0, "https://", NULL},
      {0, "https://user@xks.example.com", "host name"},
      {0, NULL, "endpoint"},
      {1, "/kms/xks/v1/", "must end"},
      {1, "/x/kms/xks/v123", "must end"},
      {1, "kms/kms/xks/v1", "PREFIX"},
      {1, "/a b/kms/xks/v1", "PREFIX"},
      {1, "/kms/xks/v", NULL},
      {1, "/p%20/kms/xks/v1", "PREFIX"},
      {2, "US-EAST-1", "region"},
      {2, "", "region"},
      {3, "abcdefghijklmnopqrst", "AccessKeyId"},
      {3, "ABCDEFGHIJKLMNOPQRS1", "AccessKeyId"},
      {3, "ABCDEFG", "AccessKeyId"},
      {4, "short", "RawSecretAccessKey"},
      {4, SECRET "!", "RawSecretAccessKey"},
      {5, "", "CA bundle"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    xks_client_config b = base;
    const char **f[] = {&b.endpoint, &b.uri_path, &b.region, &b.access_key_id,
                        &b.secret_access_key, &b.ca_bundle};
    *f[bad[i].field] = bad[i].value;
    expect_bad_config(&b, bad[i].word);
  }
  for (size_t i = 0; i < sizeof bad_ct / sizeof bad_ct[0]; i++) {
    xks_client_config b = base;
    b.connect_to = &bad_ct[i];
    b.connect_to_count = 1;
    expect_bad_config(&b, "connect-to");
  }
  xks_client_config b = base;
  b.timeout_ms = -1;
  expect_bad_config(&b, "timeout");
  b = base;
  b.pool_size = XKS_CLIENT_POOL_MAX + 1;
  expect_bad_config(&b, "pool");
  b = base;
  b.kept_idle_max_ms = -1;
  expect_bad_config(&b, "idle");
  b.kept_idle_max_ms = XKS_CLIENT_KEPT_IDLE_MAX_MS + 1;
  expect_bad_config(&b, "idle");
  expect_bad_config(NULL, NULL);
  xks_client_free(NULL);

  /* A CA bundle kmsd cannot read is a fault of kmsd's own installation,
   * not of the proxy's settings: KERR_INTERNAL, naming the path and why. */
  const char *unreadable[] = {"/nonexistent/ca.pem", dir /* a directory */};
  for (size_t i = 0; i < 2; i++) {
    b = base;
    b.ca_bundle = unreadable[i];
    c = (xks_client *)&c;
    assert_int_equal(xks_client_new(&b, &c, &e), KERR_INTERNAL);
    assert_null(c);
    print_message("unreadable CA bundle: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "CA bundle"));
    assert_non_null(strstr(e.msg, unreadable[i]));
    assert_non_null(strstr(e.msg, "cannot be read"));
    assert_clean(&e);
  }
}

/* A FIFO opens for reading only once something writes to it. */
static void *fifo_writer(void *arg) {
  usleep(1500 * 1000);
  int fd = open((const char *)arg, O_RDWR | O_NONBLOCK);
  if (fd >= 0) close(fd);
  return NULL;
}

/* --xks-ca-bundle naming a FIFO (a shell's <(...), a mistake) is refused at
 * once, like any other path that is not a file: a connect worker, a
 * restart's resume or a Create must not wait on it for a writer. */
static void test_ca_bundle_fifo(void **state) {
  (void)state;
  char path[PATH_MAX];
  xks_client_config cfg = {0};
  xks_client *c = (xks_client *)&c;
  pthread_t writer;
  struct timespec t0;
  kerr e;
  snprintf(path, sizeof path, "%s/ca.fifo", dir);
  assert_int_equal(mkfifo(path, 0600), 0);
  cfg.endpoint = ENDPOINT;
  cfg.uri_path = PREFIX;
  cfg.region = REGION;
  cfg.access_key_id = AKID;
  cfg.secret_access_key = SECRET;
  cfg.ca_bundle = path;
  /* Without a writer an open that waits would wait for ever; this one
   * comes after 1.5 s. */
  assert_int_equal(pthread_create(&writer, NULL, fifo_writer, path), 0);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  kerr_code rc = xks_client_new(&cfg, &c, &e);
  long ms = ms_since(&t0);
  pthread_join(writer, NULL);
  unlink(path);
  print_message("FIFO as CA bundle: %ld ms: %s\n", ms, e.msg);
  assert_int_equal(rc, KERR_INTERNAL);
  assert_null(c);
  assert_non_null(strstr(e.msg, "not a file"));
  assert_true(ms < 1000);
}

/* ---- against the real proxy --------------------------------------------- */

static void test_health_ok(void **state) {
  (void)state;
  xks_client *c = proxy_client();
  xks_health h;
  xks_call_status st;
  kerr e;
  assert_int_equal(xks_client_health(c, &HEALTH_META, &h, &st, &e), KERR_OK);
  assert_int_equal(st.outcome, XKS_OUTCOME_OK);
  assert_int_equal(st.http_status, 200);
  assert_int_equal(st.proxy_error, XKS_ERR_NONE);
  assert_int_equal(h.fleet_size, 1);
  assert_string_equal(h.proxy_vendor, "kmsd");
  assert_int_equal(h.ekm_count, 1);
  assert_string_equal(h.ekm[0].health_status, "ACTIVE");
  xks_health_free(&h);
  xks_client_free(c);
}

static void test_metadata(void **state) {
  (void)state;
  xks_client *c = proxy_client();
  xks_key_metadata m;
  xks_call_status st;
  kerr e;
  xks_call_meta meta = META;
  meta.kms_operation = "CreateKey";
  meta.kms_key_arn = NULL; /* CreateKey: the key has no ARN yet */
  assert_int_equal(xks_client_metadata(c, &meta, KEY, &m, &st, &e), KERR_OK);
  assert_string_equal(m.key_spec, "AES_256");
  assert_int_equal(m.key_usage_count, 2);
  assert_string_equal(m.key_usage[0], "ENCRYPT");
  assert_string_equal(m.key_usage[1], "DECRYPT");
  assert_string_equal(m.key_status, "ENABLED");
  xks_key_metadata_free(&m);

  assert_int_equal(xks_client_metadata(c, &meta, "no-such-key", &m, &st, &e), KERR_XKS_KEY_NOT_FOUND);
  assert_int_equal(st.outcome, XKS_OUTCOME_PROXY_ERROR);
  assert_int_equal(st.proxy_error, XKS_ERR_KEY_NOT_FOUND);
  assert_int_equal(st.http_status, 404);
  assert_non_null(strstr(e.msg, "KeyNotFoundException"));
  assert_null(m.key_spec);
  xks_key_metadata_free(&m); /* harmless on an empty result */

  /* Another prefix: the proxy knows no such store. */
  client_opts o = {0};
  o.port = proxy_port;
  o.uri_path = "/other/kms/xks/v1";
  xks_client *c2 = new_client(&o);
  xks_call_status st2;
  assert_int_equal(health_outcome(c2, &st2, &e), XKS_OUTCOME_PROXY_ERROR);
  assert_int_equal(st2.proxy_error, XKS_ERR_INVALID_URI_PATH);
  assert_int_equal(e.code, KERR_XKS_PROXY_INVALID_CONFIG);
  xks_client_free(c2);
  xks_client_free(c);
}

static void round_trip(xks_client *c, const uint8_t *pt, size_t n, const char *aad, int cdiv) {
  xks_encrypt_result r;
  xks_decrypt_result d;
  xks_call_status st;
  kerr e;
  const uint8_t *a = (const uint8_t *)aad;
  size_t alen = aad ? strlen(aad) : 0;
  if (xks_client_encrypt(c, &META, KEY, pt, n, a, alen, cdiv, &r, &st, &e) != KERR_OK)
    fail_msg("encrypt: %s", e.msg);
  assert_int_equal(r.ciphertext.len, n);
  assert_int_equal(r.has_cdiv, cdiv);
  xks_decrypt_input in = {r.ciphertext.data, r.ciphertext.len, r.iv, r.iv_len, r.tag, a, alen,
                          r.has_ct_metadata ? r.ct_metadata.data : NULL, r.ct_metadata.len};
  xks_call_meta dm = META;
  dm.kms_operation = "Decrypt";
  if (xks_client_decrypt(c, &dm, KEY, &in, &d, &st, &e) != KERR_OK) fail_msg("decrypt: %s", e.msg);
  assert_int_equal(d.plaintext.len, n);
  assert_memory_equal(d.plaintext.data, pt, n);
  xks_decrypt_result_free(&d);
  xks_encrypt_result_free(&r);
}

static void test_encrypt_decrypt(void **state) {
  (void)state;
  xks_client *c = proxy_client();
  static uint8_t big[XKS_DATA_MAX];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 31 + 7);
  round_trip(c, (const uint8_t *)PT_MARK, strlen(PT_MARK), "project=nile,department=marketing", 1);
  round_trip(c, (const uint8_t *)PT_MARK, strlen(PT_MARK), NULL, 0);
  round_trip(c, (const uint8_t *)PT_MARK, strlen(PT_MARK), "", 1); /* an empty AAD is sent */
  round_trip(c, big, sizeof big, "ctx", 1);

  /* Tampering: another AAD, a flipped tag bit. */
  xks_encrypt_result r;
  xks_decrypt_result d;
  xks_call_status st;
  kerr e;
  const uint8_t *aad = (const uint8_t *)"context=a";
  assert_int_equal(xks_client_encrypt(c, &META, KEY, (const uint8_t *)PT_MARK, strlen(PT_MARK), aad,
                                      9, 1, &r, &st, &e),
                   KERR_OK);
  xks_decrypt_input in = {r.ciphertext.data, r.ciphertext.len, r.iv, r.iv_len, r.tag,
                          (const uint8_t *)"context=b", 9, NULL, 0};
  assert_int_equal(xks_client_decrypt(c, &META, KEY, &in, &d, &st, &e), KERR_INVALID_STATE);
  assert_int_equal(st.outcome, XKS_OUTCOME_PROXY_ERROR);
  assert_int_equal(st.proxy_error, XKS_ERR_INVALID_CIPHERTEXT);
  assert_int_equal(st.http_status, 400);
  assert_null(d.plaintext.data);
  assert_clean(&e);
  in.aad = aad;
  uint8_t tag[XKS_TAG_LEN];
  memcpy(tag, r.tag, sizeof tag);
  tag[0] ^= 1;
  in.tag = tag;
  assert_int_equal(xks_client_decrypt(c, &META, KEY, &in, &d, &st, &e), KERR_INVALID_STATE);
  assert_int_equal(st.proxy_error, XKS_ERR_INVALID_CIPHERTEXT);
  in.tag = r.tag;
  assert_int_equal(xks_client_decrypt(c, &META, KEY, &in, &d, &st, &e), KERR_OK);
  assert_memory_equal(d.plaintext.data, PT_MARK, strlen(PT_MARK));
  xks_decrypt_result_free(&d);
  xks_encrypt_result_free(&r);
  xks_client_free(c);
}

static void test_bad_input_not_sent(void **state) {
  (void)state;
  xks_client *c = proxy_client();
  xks_encrypt_result r;
  xks_key_metadata m;
  xks_call_status st;
  kerr e;
  const uint8_t pt[1] = {1};
  /* A key id outside the spec's alphabet. */
  assert_int_equal(xks_client_metadata(c, &META, "a/b", &m, &st, &e), KERR_VALIDATION);
  assert_int_equal(st.outcome, XKS_OUTCOME_BAD_INPUT);
  assert_int_equal(xks_client_metadata(c, &META, "", &m, &st, &e), KERR_VALIDATION);
  /* A required metadata field missing: kmsKeyArn for Encrypt. */
  xks_call_meta meta = META;
  meta.kms_key_arn = NULL;
  assert_int_equal(xks_client_encrypt(c, &meta, KEY, pt, 1, NULL, 0, 0, &r, &st, &e), KERR_VALIDATION);
  assert_int_equal(st.outcome, XKS_OUTCOME_BAD_INPUT);
  assert_int_equal(st.http_status, 0);
  /* Sizes: empty and oversized plaintext, oversized AAD. */
  assert_int_equal(xks_client_encrypt(c, &META, KEY, pt, 0, NULL, 0, 0, &r, &st, &e), KERR_VALIDATION);
  static uint8_t big[XKS_AAD_MAX + 1];
  assert_int_equal(xks_client_encrypt(c, &META, KEY, big, XKS_DATA_MAX + 1, NULL, 0, 0, &r, &st, &e),
                   KERR_VALIDATION);
  assert_int_equal(xks_client_encrypt(c, &META, KEY, pt, 1, big, sizeof big, 0, &r, &st, &e),
                   KERR_VALIDATION);
  /* Decrypt: a 13-byte IV. */
  xks_decrypt_result d;
  uint8_t iv[16] = {0}, tag[16] = {0};
  xks_decrypt_input in = {pt, 1, iv, 13, tag, NULL, 0, NULL, 0};
  assert_int_equal(xks_client_decrypt(c, &META, KEY, &in, &d, &st, &e), KERR_VALIDATION);
  assert_int_equal(st.outcome, XKS_OUTCOME_BAD_INPUT);
  assert_clean(&e);
  xks_client_free(c);

  /* A URI over 256 characters: a long path and a long key id. */
  char path[129], id[129];
  memset(path, 'p', sizeof path);
  path[0] = '/';
  memcpy(path + 128 - 11, "/kms/xks/v1", 12);
  memset(id, 'k', 128);
  id[128] = '\0';
  client_opts o = {0};
  o.port = proxy_port;
  o.uri_path = path;
  c = new_client(&o);
  assert_int_equal(xks_client_metadata(c, &META, id, &m, &st, &e), KERR_VALIDATION);
  assert_int_equal(st.outcome, XKS_OUTCOME_BAD_INPUT);
  assert_non_null(strstr(e.msg, "256"));
  xks_client_free(c);
}

static void test_wrong_secret(void **state) {
  (void)state;
  client_opts o = {0};
  o.port = proxy_port;
  o.secret = WRONG_SECRET;
  xks_client *c = new_client(&o);
  xks_call_status st;
  kerr e;
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_PROXY_ERROR);
  assert_int_equal(st.proxy_error, XKS_ERR_AUTHENTICATION_FAILED);
  assert_int_equal(st.http_status, 401);
  assert_int_equal(e.code, KERR_XKS_PROXY_BAD_CREDENTIAL);
  assert_non_null(strstr(e.msg, "AuthenticationFailedException"));
  /* Key calls are refused the same way. */
  xks_encrypt_result r;
  assert_int_equal(xks_client_encrypt(c, &META, KEY, (const uint8_t *)PT_MARK, strlen(PT_MARK), NULL,
                                      0, 0, &r, &st, &e),
                   KERR_XKS_PROXY_BAD_CREDENTIAL);
  assert_int_equal(st.http_status, 401);
  assert_clean(&e);
  xks_client_free(c);
}

/* ---- TLS ------------------------------------------------------------------ */

/* One TLS 1.3 handshake on a server (OpenSSL, the test's certificate) that
 * offers only `suites`, then the thread ends.  OpenSSL answers a client
 * with no suite in common with a handshake_failure alert, as a real server
 * does (libmicrohttpd just closes the connection). */
typedef struct tls_refuser {
  int fd;
  uint16_t port;
  const char *suites;
  pthread_t th;
} tls_refuser;

static int silent_listener(uint16_t *port);

static void *refuser_main(void *arg) {
  tls_refuser *r = arg;
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  int cfd = accept(r->fd, NULL, NULL);
  if (ctx && cfd >= 0 && SSL_CTX_use_certificate_chain_file(ctx, cert_path) == 1 &&
      SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) == 1 &&
      SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) == 1 &&
      SSL_CTX_set_ciphersuites(ctx, r->suites) == 1) {
    SSL *ssl = SSL_new(ctx);
    if (ssl && SSL_set_fd(ssl, cfd) == 1) (void)SSL_accept(ssl);
    SSL_free(ssl);
  }
  if (cfd >= 0) close(cfd);
  SSL_CTX_free(ctx);
  return NULL;
}

static void start_refuser(tls_refuser *r, const char *suites) {
  memset(r, 0, sizeof *r);
  r->suites = suites;
  r->fd = silent_listener(&r->port);
  assert_int_equal(pthread_create(&r->th, NULL, refuser_main, r), 0);
}

static void test_tls_failures(void **state) {
  (void)state;
  xks_call_status st;
  kerr e;
  client_opts o = {0};

  /* The certificate is for xks.example.com: another name, through the
   * same kind of connect-to, must fail. */
  o.port = proxy_port;
  o.endpoint = "https://other.example.com";
  o.connect_host = "other.example.com";
  xks_client *c = new_client(&o);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_TLS_ERROR);
  assert_int_equal(st.http_status, 0);
  assert_int_equal(e.code, KERR_XKS_PROXY_URI_UNREACHABLE);
  print_message("wrong name: %s\n", e.msg);
  xks_client_free(c);

  /* An IP address in the endpoint: the certificate has no IP SAN. */
  char ep[64];
  snprintf(ep, sizeof ep, "https://127.0.0.1:%u", proxy_port);
  memset(&o, 0, sizeof o);
  o.endpoint = ep;
  c = new_client(&o);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_TLS_ERROR);
  xks_client_free(c);

  /* A CA bundle without the proxy's CA. */
  memset(&o, 0, sizeof o);
  o.port = proxy_port;
  o.ca = otherca_pem;
  c = new_client(&o);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_TLS_ERROR);
  print_message("untrusted: %s\n", e.msg);
  xks_client_free(c);

  /* The system store does not know the test CA either. */
  memset(&o, 0, sizeof o);
  o.port = proxy_port;
  c = NULL;
  {
    char ct[64];
    const char *cts[1] = {ct};
    xks_client_config cfg = {0};
    snprintf(ct, sizeof ct, HOST ":443:127.0.0.1:%u", proxy_port);
    cfg.endpoint = ENDPOINT;
    cfg.uri_path = PREFIX;
    cfg.region = REGION;
    cfg.access_key_id = AKID;
    cfg.secret_access_key = SECRET;
    cfg.connect_to = cts;
    cfg.connect_to_count = 1;
    cfg.timeout_ms = PATIENT_MS;
    assert_int_equal(xks_client_new(&cfg, &c, &e), KERR_OK);
    assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_TLS_ERROR);
    xks_client_free(c);
  }

  /* An expired certificate from the trusted CA. */
  memset(&o, 0, sizeof o);
  o.port = expired_port;
  c = new_client(&o);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_TLS_ERROR);
  print_message("expired: %s\n", e.msg);
  assert_non_null(strstr(e.msg, "expired"));
  xks_client_free(c);

  /* A server that speaks nothing newer than TLS 1.1. */
  http_server *old = start_standin(cert_text, key_text, "NORMAL:-VERS-ALL:+VERS-TLS1.1:+VERS-TLS1.0");
  if (old) {
    memset(&o, 0, sizeof o);
    o.port = http_server_port(old);
    c = new_client(&o);
    assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_TLS_ERROR);
    print_message("TLS 1.1: %s\n", e.msg);
    xks_client_free(c);
    http_server_stop(old, 1000);
  } else {
    print_message("GnuTLS refuses a TLS 1.1-only server here: that case is not run\n");
  }

  /* A server whose only cipher suite the client does not offer: it refuses
   * the handshake with a handshake_failure alert. */
  tls_refuser r;
  start_refuser(&r, "TLS_AES_128_CCM_SHA256");
  memset(&o, 0, sizeof o);
  o.port = r.port;
  c = new_client(&o);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_TLS_ERROR);
  print_message("no common cipher suite: %s\n", e.msg);
  xks_client_free(c);
  pthread_join(r.th, NULL);
  close(r.fd);
}

/* ---- the network ---------------------------------------------------------- */

/* A TCP listener on 127.0.0.1 that never accepts: the kernel completes the
 * handshake, nobody ever answers. */
static int silent_listener(uint16_t *port) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 16), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  *port = ntohs(a.sin_port);
  return fd;
}

static void test_network_failures(void **state) {
  (void)state;
  xks_call_status st;
  kerr e;
  client_opts o = {0};
  struct timespec t0;

  /* A port nobody listens on. */
  uint16_t port;
  int fd = silent_listener(&port);
  close(fd);
  o.port = port;
  xks_client *c = new_client(&o);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_NOT_REACHABLE);
  assert_int_equal(e.code, KERR_XKS_PROXY_URI_UNREACHABLE);
  print_message("closed port: %s\n", e.msg);
  xks_client_free(c);

  /* A name that does not resolve (RFC 2606 .invalid). */
  memset(&o, 0, sizeof o);
  o.endpoint = "https://xks.invalid";
  o.timeout_ms = 5000;
  c = new_client(&o);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_NOT_REACHABLE);
  print_message("no such name: %s\n", e.msg);
  xks_client_free(c);

  /* Connected, never answered: the 250 ms deadline. */
  fd = silent_listener(&port);
  memset(&o, 0, sizeof o);
  o.port = port;
  o.timeout_ms = 250;
  c = new_client(&o);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_TIMED_OUT);
  long ms = ms_since(&t0);
  print_message("silent listener: %ld ms (status says %ld): %s\n", ms, st.elapsed_ms, e.msg);
  assert_true(ms >= 240 && ms < 1500);
  assert_true(st.elapsed_ms >= 240 && st.elapsed_ms <= ms + 2);
  assert_int_equal(e.code, KERR_XKS_PROXY_URI_UNREACHABLE);
  xks_client_free(c);
  close(fd);

  /* A proxy that answers after the deadline. */
  atomic_store(&junk, J_SLOW);
  c = standin_client(250);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_TIMED_OUT);
  ms = ms_since(&t0);
  print_message("slow proxy: %ld ms\n", ms);
  assert_true(ms >= 240 && ms < 1500);
  xks_client_free(c);
  atomic_store(&junk, J_RECORD);
}

/* A listener on 127.0.0.1 whose accept queue is full: with a backlog of 0,
 * Linux queues one connection and then drops every SYN (it answers none
 * while the queue is full), so a client's connect stays unanswered, as
 * behind a firewall that drops packets - and it works offline, unlike a
 * non-routable address, which fails at once where there is no route.
 * *filler is the connection that fills the queue.  Returns -1 (after
 * closing everything) if this kernel answered a probe anyway. */
static int full_listener(uint16_t *port, int *filler) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int fd = socket(AF_INET, SOCK_STREAM, 0), probe;
  struct pollfd pfd;
  assert_true(fd >= 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 0), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  *port = ntohs(a.sin_port);
  *filler = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(*filler >= 0);
  assert_int_equal(connect(*filler, (struct sockaddr *)&a, sizeof a), 0);
  /* The queue is full now: a non-blocking probe must stay unanswered. */
  probe = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(probe >= 0);
  assert_int_equal(fcntl(probe, F_SETFL, O_NONBLOCK), 0);
  assert_true(connect(probe, (struct sockaddr *)&a, sizeof a) != 0 && errno == EINPROGRESS);
  pfd.fd = probe;
  pfd.events = POLLOUT;
  int answered = poll(&pfd, 1, 300);
  close(probe);
  if (answered != 0) {
    close(*filler);
    close(fd);
    return -1;
  }
  return fd;
}

static void test_blackholed_connect(void **state) {
  (void)state;
  xks_call_status st;
  kerr e;
  client_opts o = {0};
  struct timespec t0;
  uint16_t port;
  int filler, fd = full_listener(&port, &filler);
  if (fd < 0) {
    print_message("this kernel answers SYNs on a full accept queue: not run\n");
    skip();
  }
  /* No TCP handshake within the call's 300 ms: NOT_REACHABLE, not
   * TIMED_OUT (the proxy was never reached). */
  o.port = port;
  o.timeout_ms = 300;
  xks_client *c = new_client(&o);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_NOT_REACHABLE);
  long ms = ms_since(&t0);
  print_message("blackholed connect: %ld ms: %s\n", ms, e.msg);
  assert_true(ms >= 290 && ms < 1500);
  assert_non_null(strstr(e.msg, "no TCP connection"));
  assert_int_equal(e.code, KERR_XKS_PROXY_URI_UNREACHABLE);
  assert_int_equal(st.http_status, 0);
  xks_client_free(c);

  /* A connect deadline shorter than the call's ends the wait sooner (the
   * kernel's first SYN retransmission is a second away). */
  memset(&o, 0, sizeof o);
  o.port = port;
  o.timeout_ms = 3000;
  o.connect_timeout_ms = 200;
  c = new_client(&o);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_NOT_REACHABLE);
  ms = ms_since(&t0);
  print_message("blackholed connect, 200 ms connect deadline: %ld ms\n", ms);
  assert_true(ms >= 190 && ms < 900);
  xks_client_free(c);
  close(filler);
  close(fd);

  /* Connected but silent: the connect deadline does not cut the wait for a
   * TLS answer short into NOT_REACHABLE; the TCP connection was up, so the
   * end of the deadline is TIMED_OUT. */
  fd = silent_listener(&port);
  memset(&o, 0, sizeof o);
  o.port = port;
  o.timeout_ms = 300;
  o.connect_timeout_ms = 150;
  c = new_client(&o);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_TIMED_OUT);
  print_message("silent listener, 150 ms connect deadline: %s\n", e.msg);
  xks_client_free(c);
  close(fd);
}

/* A TCP server that accepts each connection and, after reading the
 * ClientHello (or at once), closes it - or resets it (SO_LINGER 0). */
typedef struct dropper {
  int fd;
  int read_first;
  int reset;
  int count;        /* connections to take, then the thread ends */
  pthread_t th;
} dropper;

static void *dropper_main(void *arg) {
  dropper *d = arg;
  for (int i = 0; i < d->count; i++) {
    int cfd = accept(d->fd, NULL, NULL);
    if (cfd < 0) break;
    if (d->read_first) {
      char buf[4096];
      struct pollfd pfd = {cfd, POLLIN, 0};
      if (poll(&pfd, 1, 5000) > 0) (void)!read(cfd, buf, sizeof buf);
    }
    if (d->reset) {
      struct linger l = {1, 0};
      setsockopt(cfd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    close(cfd);
  }
  return NULL;
}

static void test_handshake_dropped(void **state) {
  (void)state;
  static const struct {
    int read_first, reset;
    const char *what;
  } cases[] = {
      {0, 0, "closed at once"},
      {1, 0, "closed after the ClientHello"},
      {1, 1, "reset after the ClientHello"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dropper d = {0};
    uint16_t port;
    xks_call_status st;
    kerr e;
    client_opts o = {0};
    d.fd = silent_listener(&port);
    d.read_first = cases[i].read_first;
    d.reset = cases[i].reset;
    d.count = 1;
    assert_int_equal(pthread_create(&d.th, NULL, dropper_main, &d), 0);
    o.port = port;
    xks_client *c = new_client(&o);
    /* The proxy went away mid-handshake without refusing anything in TLS
     * terms: the network failed, the TLS configuration did not. */
    assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_NOT_REACHABLE);
    print_message("%s: %s\n", cases[i].what, e.msg);
    assert_int_equal(e.code, KERR_XKS_PROXY_URI_UNREACHABLE);
    xks_client_free(c);
    pthread_join(d.th, NULL);
    close(d.fd);
  }
}

/* ---- a host name whose lookup hangs ----------------------------------------- */

/* The lookup of HANGING_NAME blocks (as behind a DNS server that does not
 * answer) until the test lets it go, or HANG_MAX_MS; every other name goes
 * to the C library.  libcurl calls getaddrinfo from its resolver thread, and
 * the test executable's definition comes first. */
#define HANGING_NAME "dns-hangs.example.com"
#define HANG_MAX_MS 3000
static pthread_mutex_t hang_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hang_cond = PTHREAD_COND_INITIALIZER;
static int hang_released, hang_returned;

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) {
  typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
  if (node && strcmp(node, HANGING_NAME) == 0) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += HANG_MAX_MS / 1000;
    pthread_mutex_lock(&hang_lock);
    while (!hang_released && pthread_cond_timedwait(&hang_cond, &hang_lock, &until) == 0)
      ;
    hang_returned++;
    pthread_cond_broadcast(&hang_cond);
    pthread_mutex_unlock(&hang_lock);
    return EAI_AGAIN;
  }
  gai_fn real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
  return real ? real(node, service, hints, res) : EAI_FAIL;
}

static void test_hanging_lookup(void **state) {
  (void)state;
  xks_call_status st;
  kerr e;
  client_opts o = {0};
  struct timespec t0;
  o.endpoint = "https://" HANGING_NAME; /* no connect-to: the name is looked up */
  o.timeout_ms = 300;
  xks_client *c = new_client(&o);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  xks_outcome out = health_outcome(c, &st, &e);
  long ms = ms_since(&t0);
  pthread_mutex_lock(&hang_lock);
  hang_released = 1;
  pthread_cond_broadcast(&hang_cond);
  pthread_mutex_unlock(&hang_lock);
  print_message("lookup that hangs: %s after %ld ms: %s\n", xks_outcome_name(out), ms, e.msg);
  /* The call's deadline holds whatever the resolver does, and a proxy
   * whose name was never resolved was never reached: NOT_REACHABLE, not
   * TIMED_OUT (which says the proxy was connected but slow). */
  assert_true(ms >= 290 && ms < 1500);
  assert_int_equal(out, XKS_OUTCOME_NOT_REACHABLE);
  assert_int_equal(e.code, KERR_XKS_PROXY_URI_UNREACHABLE);
  xks_client_free(c);
  /* The abandoned lookup ends on its own once the resolver answers. */
  pthread_mutex_lock(&hang_lock);
  for (int i = 0; i < 100 && !hang_returned; i++) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 50 * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&hang_cond, &hang_lock, &until);
  }
  assert_int_equal(hang_returned, 1);
  pthread_mutex_unlock(&hang_lock);
}

/* ---- a kept-alive connection the proxy closed ------------------------------- */

/* A TLS server that answers GetHealthStatus, keeping the connection alive,
 * and then lets the first connection die one way or another: closed
 * (with or without a TLS close_notify) or reset while idle (between two
 * calls), or closed or reset on receiving the next request, before any
 * reply (the proxy's keep-alive timer running out just as the request
 * arrives).  Every later connection is served until the client closes it.
 * STALE_NONE never lets a connection go; `reply` shapes every answer. */
enum stale_mode {
  STALE_IDLE_CLOSE,
  STALE_IDLE_RESET,
  STALE_IDLE_NOTIFY,
  STALE_REQ_CLOSE,
  STALE_REQ_RESET,
  STALE_NONE,
};

enum stale_reply {
  REPLY_LENGTH = 0,  /* Content-Length, kept alive */
  REPLY_CHUNKED,     /* Transfer-Encoding: chunked, in three chunks, kept alive */
  REPLY_CLOSE,       /* Content-Length and Connection: close; the server then closes */
  REPLY_TO_CLOSE,    /* no length: the body ends with the connection */
  REPLY_HTTP10,      /* HTTP/1.0 with a Content-Length: closed after it, as 1.0 is */
};

typedef struct stale_server {
  int fd;
  enum stale_mode mode;
  enum stale_reply reply;
  atomic_int connections;
  atomic_int answered;
  atomic_int drop_now; /* the idle cases: the test's word to drop the first connection */
  atomic_int dropped;
  atomic_int stop;
  pthread_t th;
} stale_server;

/* Read one HTTP request (headers and Content-Length body); 0 when whole. */
static int stale_read_request(SSL *ssl) {
  char buf[16384];
  size_t len = 0;
  char *end = NULL;
  long body = 0;
  while (!end) {
    int n;
    if (len >= sizeof buf - 1) return -1;
    n = SSL_read(ssl, buf + len, (int)(sizeof buf - 1 - len));
    if (n <= 0) return -1;
    len += (size_t)n;
    buf[len] = '\0';
    end = strstr(buf, "\r\n\r\n");
  }
  for (const char *l = strstr(buf, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n"))
    if (strncasecmp(l + 2, "Content-Length:", 15) == 0) body = strtol(l + 17, NULL, 10);
  size_t have = len - (size_t)(end + 4 - buf);
  while ((long)have < body) {
    int n = SSL_read(ssl, buf, (int)sizeof buf);
    if (n <= 0) return -1;
    have += (size_t)n;
  }
  return 0;
}

static int stale_answer(SSL *ssl, enum stale_reply shape) {
  char reply[1024];
  size_t len = strlen(HEALTH_OK), a = len / 3, b = len / 3;
  int n;
  switch (shape) {
  case REPLY_CHUNKED:
    n = snprintf(reply, sizeof reply,
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n%zx\r\n%.*s\r\n%zx;ext=1\r\n%.*s\r\n"
                 "%zx\r\n%s\r\n0\r\nX-Trailer: end\r\n\r\n",
                 a, (int)a, HEALTH_OK, b, (int)b, HEALTH_OK + a, len - a - b, HEALTH_OK + a + b);
    break;
  case REPLY_CLOSE:
    n = snprintf(reply, sizeof reply,
                 "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n%s",
                 len, HEALTH_OK);
    break;
  case REPLY_TO_CLOSE:
    n = snprintf(reply, sizeof reply, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n%s",
                 HEALTH_OK);
    break;
  case REPLY_HTTP10:
    n = snprintf(reply, sizeof reply,
                 "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                 "\r\n%s",
                 len, HEALTH_OK);
    break;
  default:
    n = snprintf(reply, sizeof reply,
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                 "\r\n%s",
                 len, HEALTH_OK);
    break;
  }
  return SSL_write(ssl, reply, n) == n ? 0 : -1;
}

static void stale_drop(int cfd, int reset) {
  if (reset) {
    struct linger l = {1, 0};
    setsockopt(cfd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  close(cfd); /* no close_notify: the proxy just went away */
}

static void *stale_main(void *arg) {
  stale_server *s = arg;
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
    SSL_CTX_free(ctx);
    return NULL;
  }
  while (!atomic_load(&s->stop)) {
    struct pollfd pfd = {s->fd, POLLIN, 0};
    if (poll(&pfd, 1, 100) <= 0) continue;
    int cfd = accept(s->fd, NULL, NULL);
    if (cfd < 0) continue;
    int first = atomic_fetch_add(&s->connections, 1) == 0, one = 1;
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* the reply goes out at once */
    SSL *ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, cfd) != 1 || SSL_accept(ssl) != 1) {
      SSL_free(ssl);
      close(cfd);
      continue;
    }
    int notify = 0;
    while (stale_read_request(ssl) == 0) {
      if (first && s->mode != STALE_NONE && atomic_load(&s->answered) > 0) {
        /* The second request on the first connection: it dies unanswered. */
        break;
      }
      if (stale_answer(ssl, s->reply)) break;
      atomic_fetch_add(&s->answered, 1);
      if (s->reply == REPLY_CLOSE || s->reply == REPLY_TO_CLOSE || s->reply == REPLY_HTTP10) {
        notify = 1; /* the reply said so (or needs it): a clean close */
        break;
      }
      if (first && (s->mode == STALE_IDLE_CLOSE || s->mode == STALE_IDLE_RESET ||
                    s->mode == STALE_IDLE_NOTIFY)) {
        /* Once the client has its reply (a reset discards unread data). */
        for (int i = 0; i < 1000 && !atomic_load(&s->drop_now); i++) usleep(10 * 1000);
        notify = s->mode == STALE_IDLE_NOTIFY;
        break;
      }
    }
    if (notify) (void)SSL_shutdown(ssl); /* else no close_notify: the proxy just went away */
    SSL_free(ssl);
    stale_drop(cfd, s->mode == STALE_IDLE_RESET || s->mode == STALE_REQ_RESET);
    if (first) atomic_store(&s->dropped, 1);
  }
  SSL_CTX_free(ctx);
  return NULL;
}

static void test_stale_kept_connection(void **state) {
  (void)state;
  static const struct {
    enum stale_mode mode;
    const char *what;
  } cases[] = {
      {STALE_IDLE_CLOSE, "closed while idle"},
      {STALE_IDLE_RESET, "reset while idle"},
      {STALE_IDLE_NOTIFY, "closed with close_notify while idle"},
      {STALE_REQ_CLOSE, "closed on the next request"},
      {STALE_REQ_RESET, "reset on the next request"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    stale_server s;
    uint16_t port;
    xks_call_status st;
    kerr e;
    client_opts o = {0};
    memset(&s, 0, sizeof s);
    s.fd = silent_listener(&port);
    s.mode = cases[i].mode;
    assert_int_equal(pthread_create(&s.th, NULL, stale_main, &s), 0);
    o.port = port;
    o.pool = 1; /* one handle: the second call is offered the kept connection */
    o.timeout_ms = 5000;
    xks_client *c = new_client(&o);
    xks_outcome first = health_outcome(c, &st, &e), out = first;
    if (first == XKS_OUTCOME_OK) {
      if (s.mode == STALE_IDLE_CLOSE || s.mode == STALE_IDLE_RESET || s.mode == STALE_IDLE_NOTIFY) {
        atomic_store(&s.drop_now, 1);
        for (int k = 0; k < 1000 && !atomic_load(&s.dropped); k++) usleep(10 * 1000);
        usleep(100 * 1000); /* the FIN or RST has arrived */
      }
      /* The proxy is up: a connection it let go of is no failure of it. */
      out = health_outcome(c, &st, &e);
    }
    xks_client_free(c);
    /* The server thread ends before anything is asserted: it writes to `s`
     * on this stack. */
    atomic_store(&s.stop, 1);
    pthread_join(s.th, NULL);
    close(s.fd);
    print_message("%s: %s (%d connections, %d answered)\n", cases[i].what,
                  xks_outcome_name(out), atomic_load(&s.connections), atomic_load(&s.answered));
    if (out != XKS_OUTCOME_OK) print_message("  %s\n", e.msg);
    assert_int_equal(first, XKS_OUTCOME_OK);
    assert_int_equal(out, XKS_OUTCOME_OK);
    assert_int_equal(atomic_load(&s.connections), 2);
    assert_int_equal(atomic_load(&s.answered), 2);
  }
}

/* Start a stale_server that keeps its connections and answers in `shape`;
 * a client of one slot for it. */
static xks_client *kept_server_start(stale_server *s, enum stale_reply shape, long idle_max_ms) {
  uint16_t port;
  client_opts o = {0};
  o.kept_idle_max_ms = idle_max_ms;
  memset(s, 0, sizeof *s);
  s->fd = silent_listener(&port);
  s->mode = STALE_NONE;
  s->reply = shape;
  assert_int_equal(pthread_create(&s->th, NULL, stale_main, s), 0);
  o.port = port;
  o.pool = 1;
  o.timeout_ms = 5000;
  return new_client(&o);
}

static void kept_server_stop(stale_server *s) {
  atomic_store(&s->stop, 1);
  pthread_join(s->th, NULL);
  close(s->fd);
}

/* Calls one after another on one slot make one connection, and every call
 * after the first goes out on it; a chunked reply keeps it too. */
static void test_kept_connection(void **state) {
  (void)state;
  static const struct {
    enum stale_reply shape;
    const char *what;
  } cases[] = {{REPLY_LENGTH, "Content-Length"}, {REPLY_CHUNKED, "chunked"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    stale_server s;
    xks_call_status st;
    kerr e;
    int ok = 0;
    xks_client *c = kept_server_start(&s, cases[i].shape, 0);
    for (int k = 0; k < 25; k++) {
      if (health_outcome(c, &st, &e) == XKS_OUTCOME_OK) ok++;
      else print_message("call %d: %s\n", k, e.msg);
      assert_int_equal(st.http_status, 200);
    }
    xks_client_free(c);
    kept_server_stop(&s);
    print_message("%s replies: %d of 25 OK, %d connection(s)\n", cases[i].what, ok,
                  atomic_load(&s.connections));
    assert_int_equal(ok, 25);
    assert_int_equal(atomic_load(&s.answered), 25);
    assert_int_equal(atomic_load(&s.connections), 1);
  }
}

/* A kept connection idle past the client's limit is closed, not used: the
 * next call makes a new one.  The limit is shortened from 118 s. */
static void test_kept_connection_idle_limit(void **state) {
  (void)state;
  stale_server s;
  xks_call_status st;
  kerr e;
  xks_client *c = kept_server_start(&s, REPLY_LENGTH, 300);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_OK);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_OK); /* within the limit */
  int before = atomic_load(&s.connections);
  usleep(600 * 1000);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_OK); /* past it */
  xks_client_free(c);
  kept_server_stop(&s);
  assert_int_equal(before, 1);
  assert_int_equal(atomic_load(&s.connections), 2);
  assert_int_equal(atomic_load(&s.answered), 3);
}

/* A reply that lets the connection go (Connection: close, a body that ends
 * with the connection, HTTP/1.0) is a good reply, and the next call makes
 * a new connection, without a failed first try on the old one. */
static void test_replies_that_close(void **state) {
  (void)state;
  static const struct {
    enum stale_reply shape;
    const char *what;
  } cases[] = {{REPLY_CLOSE, "Connection: close"},
               {REPLY_TO_CLOSE, "body to the close"},
               {REPLY_HTTP10, "HTTP/1.0"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    stale_server s;
    xks_call_status st;
    kerr e;
    int ok = 0;
    xks_client *c = kept_server_start(&s, cases[i].shape, 0);
    for (int k = 0; k < 3; k++) {
      if (health_outcome(c, &st, &e) == XKS_OUTCOME_OK) ok++;
      else print_message("call %d: %s\n", k, e.msg);
    }
    xks_client_free(c);
    kept_server_stop(&s);
    print_message("%s: %d of 3 OK, %d connection(s)\n", cases[i].what, ok,
                  atomic_load(&s.connections));
    assert_int_equal(ok, 3);
    assert_int_equal(atomic_load(&s.answered), 3);
    assert_int_equal(atomic_load(&s.connections), 3);
  }
}

/* The CA bundle was readable when the client was made and is not PEM by
 * the time a connection loads it: a local failure (LOCAL_ERROR,
 * KERR_INTERNAL), not a fault of the proxy's TLS; put back, it serves. */
static void test_ca_bundle_at_call_time(void **state) {
  (void)state;
  char path[PATH_MAX], cmd[2 * PATH_MAX + 16];
  xks_call_status st;
  kerr e;
  client_opts o = {0};
  FILE *f;
  snprintf(path, sizeof path, "%s/ca-copy.pem", dir);
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", ca_pem, path);
  assert_int_equal(system(cmd), 0);
  o.port = proxy_port;
  o.ca = path;
  xks_client *c = new_client(&o);
  f = fopen(path, "w");
  assert_non_null(f);
  fputs("this is not a certificate\n", f);
  fclose(f);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_LOCAL_ERROR);
  assert_int_equal(e.code, KERR_INTERNAL);
  print_message("CA bundle gone bad: %s\n", e.msg);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_OK);
  xks_client_free(c);
  unlink(path);
}

/* ---- replies that break the spec ------------------------------------------- */

static void test_invalid_responses(void **state) {
  (void)state;
  xks_client *c = standin_client(0);
  xks_call_status st;
  kerr e;
  static const struct {
    enum junk mode;
    long status;
  } cases[] = {{J_NOT_JSON, 200},        {J_MISSING_FIELD, 200},  {J_WRONG_TYPE, 200},
               {J_EMPTY_200, 200},       {J_TRAILING, 200},       {J_STATUS_MISMATCH, 404},
               {J_UNKNOWN_NAME, 400},    {J_HTML_500, 500},       {J_WRONG_OP_ERROR, 404},
               {J_TOO_LARGE, 200},       {J_REDIRECT, 302}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    atomic_store(&junk, cases[i].mode);
    if (health_outcome(c, &st, &e) != XKS_OUTCOME_INVALID_RESPONSE)
      fail_msg("case %zu: outcome %s (%s)", i, xks_outcome_name(st.outcome), e.msg);
    assert_int_equal(e.code, KERR_XKS_PROXY_INVALID_RESPONSE);
    assert_int_equal(st.proxy_error, XKS_ERR_NONE);
    assert_int_equal(st.http_status, cases[i].status);
    assert_null(strstr(e.msg, "Internal Server Error")); /* never the body */
  }

  /* A proper error the operation may have. */
  atomic_store(&junk, J_THROTTLED);
  assert_int_equal(health_outcome(c, &st, &e), XKS_OUTCOME_PROXY_ERROR);
  assert_int_equal(st.proxy_error, XKS_ERR_THROTTLING);
  assert_int_equal(st.http_status, 429);
  assert_string_equal(st.proxy_message, "slow down");
  assert_int_equal(e.code, KERR_XKS_PROXY_URI_UNREACHABLE);

  /* Encrypt replies: sizes, the CDIV. */
  static const struct {
    enum junk mode;
    int cdiv;
  } enc[] = {{J_SHORT_CT, 0}, {J_BAD_CDIV, 1}, {J_CDIV_UNASKED, 0}, {J_BIG_METADATA, 0}, {J_NOT_JSON, 0}};
  for (size_t i = 0; i < sizeof enc / sizeof enc[0]; i++) {
    xks_encrypt_result r;
    atomic_store(&junk, enc[i].mode);
    assert_int_equal(xks_client_encrypt(c, &META, KEY, (const uint8_t *)"12345", 5, NULL, 0,
                                        enc[i].cdiv, &r, &st, &e),
                     KERR_XKS_PROXY_INVALID_RESPONSE);
    assert_int_equal(st.outcome, XKS_OUTCOME_INVALID_RESPONSE);
    assert_null(r.ciphertext.data);
    xks_encrypt_result_free(&r);
  }
  /* The short ciphertext is a good reply for a plaintext of its length. */
  {
    xks_encrypt_result r;
    atomic_store(&junk, J_SHORT_CT);
    assert_int_equal(xks_client_encrypt(c, &META, KEY, (const uint8_t *)"123", 3, NULL, 0, 0, &r,
                                        &st, &e),
                     KERR_OK);
    assert_int_equal(r.ciphertext.len, 3);
    xks_encrypt_result_free(&r);
  }
  /* Decrypt: a plaintext of the wrong length. */
  {
    xks_decrypt_result d;
    uint8_t iv[12] = {0}, tag[16] = {0};
    xks_decrypt_input in = {(const uint8_t *)"1234", 4, iv, 12, tag, NULL, 0, NULL, 0};
    atomic_store(&junk, J_PT_3);
    assert_int_equal(xks_client_decrypt(c, &META, KEY, &in, &d, &st, &e),
                     KERR_XKS_PROXY_INVALID_RESPONSE);
    assert_null(d.plaintext.data);
    in.ciphertext_len = 3; /* and the same reply is right for 3 bytes */
    assert_int_equal(xks_client_decrypt(c, &META, KEY, &in, &d, &st, &e), KERR_OK);
    assert_int_equal(d.plaintext.len, 3);
    xks_decrypt_result_free(&d);
  }
  atomic_store(&junk, J_RECORD);
  xks_client_free(c);
}

/* ---- what goes on the wire ------------------------------------------------- */

static json_t *recorded_meta(json_t **root) {
  pthread_mutex_lock(&rec_lock);
  *root = json_loads(rec_body, JSON_REJECT_DUPLICATES, NULL);
  pthread_mutex_unlock(&rec_lock);
  assert_non_null(*root);
  json_t *m = json_object_get(*root, "requestMetadata");
  assert_true(json_is_object(m));
  return m;
}

static void test_wire(void **state) {
  (void)state;
  xks_client *c = standin_client(0);
  xks_call_status st;
  kerr e;
  json_t *root, *m;
  char first_peer[HTTP_PEER_MAX];
  atomic_store(&junk, J_RECORD);

  /* Health: exactly kmsRequestId and kmsOperation, even when more is given. */
  xks_call_meta hm = META;
  hm.kms_operation = "ConnectCustomKeyStore";
  hm.kms_via_service = "ebs";
  xks_health h;
  assert_int_equal(xks_client_health(c, &hm, &h, &st, &e), KERR_OK);
  xks_health_free(&h);
  m = recorded_meta(&root);
  assert_int_equal(json_object_size(m), 2);
  assert_string_equal(json_string_value(json_object_get(m, "kmsRequestId")), META.kms_request_id);
  assert_string_equal(json_string_value(json_object_get(m, "kmsOperation")), "ConnectCustomKeyStore");
  assert_int_equal(json_object_size(root), 1);
  json_decref(root);
  pthread_mutex_lock(&rec_lock);
  assert_string_equal(rec_path, PREFIX "/health");
  assert_string_equal(rec_host, HOST);
  assert_string_equal(rec_ctype, "application/json");
  assert_non_null(strstr(rec_auth, "AWS4-HMAC-SHA256 Credential=" AKID "/"));
  assert_non_null(strstr(rec_auth, "/" REGION "/kms-xks-proxy/aws4_request"));
  assert_non_null(strstr(rec_auth, "SignedHeaders=content-type;host;x-amz-date,"));
  snprintf(first_peer, sizeof first_peer, "%s", rec_peer);
  pthread_mutex_unlock(&rec_lock);

  /* Encrypt: every field given is sent, and the body is the spec's. */
  xks_call_meta em = META;
  em.kms_via_service = "ebs";
  em.aws_source_vpc = "vpc-1234";
  em.aws_source_vpce = "vpce-5678";
  xks_encrypt_result r;
  /* The recording stand-in answers with a health body: not an encrypt reply. */
  assert_int_equal(xks_client_encrypt(c, &em, "key.id_1-x", (const uint8_t *)"plaintext", 9,
                                      (const uint8_t *)"aad", 3, 1, &r, &st, &e),
                   KERR_XKS_PROXY_INVALID_RESPONSE);
  assert_clean(&e);
  m = recorded_meta(&root);
  assert_int_equal(json_object_size(m), 7);
  assert_string_equal(json_string_value(json_object_get(m, "awsPrincipalArn")), META.aws_principal_arn);
  assert_string_equal(json_string_value(json_object_get(m, "kmsKeyArn")), META.kms_key_arn);
  assert_string_equal(json_string_value(json_object_get(m, "kmsViaService")), "ebs");
  assert_string_equal(json_string_value(json_object_get(m, "awsSourceVpc")), "vpc-1234");
  assert_string_equal(json_string_value(json_object_get(m, "awsSourceVpce")), "vpce-5678");
  assert_string_equal(json_string_value(json_object_get(root, "plaintext")), "cGxhaW50ZXh0");
  assert_string_equal(json_string_value(json_object_get(root, "additionalAuthenticatedData")), "YWFk");
  assert_string_equal(json_string_value(json_object_get(root, "encryptionAlgorithm")), "AES_GCM");
  assert_string_equal(json_string_value(json_object_get(root, "ciphertextDataIntegrityValueAlgorithm")),
                      "SHA_256");
  json_decref(root);
  pthread_mutex_lock(&rec_lock);
  assert_string_equal(rec_path, PREFIX "/keys/key.id_1-x/encrypt");
  /* One client, one thread: the same kept connection every time. */
  assert_string_equal(rec_peer, first_peer);
  pthread_mutex_unlock(&rec_lock);

  /* Metadata for CreateKey: no kmsKeyArn when none is given. */
  xks_call_meta mm = META;
  mm.kms_key_arn = NULL;
  mm.kms_operation = "CreateKey";
  xks_key_metadata km;
  assert_int_equal(xks_client_metadata(c, &mm, KEY, &km, &st, &e), KERR_XKS_PROXY_INVALID_RESPONSE);
  m = recorded_meta(&root);
  assert_int_equal(json_object_size(m), 3);
  assert_null(json_object_get(m, "kmsKeyArn"));
  json_decref(root);

  /* Decrypt: the ciphertext fields. */
  uint8_t iv[16], tag[16];
  memset(iv, 0x11, sizeof iv);
  memset(tag, 0x22, sizeof tag);
  xks_decrypt_input in = {(const uint8_t *)"ct", 2, iv, 16, tag, NULL, 0, (const uint8_t *)"md", 2};
  xks_decrypt_result d;
  assert_int_equal(xks_client_decrypt(c, &META, KEY, &in, &d, &st, &e), KERR_XKS_PROXY_INVALID_RESPONSE);
  m = recorded_meta(&root);
  assert_int_equal(json_object_size(m), 4);
  assert_string_equal(json_string_value(json_object_get(root, "ciphertext")), "Y3Q=");
  assert_string_equal(json_string_value(json_object_get(root, "ciphertextMetadata")), "bWQ=");
  assert_string_equal(json_string_value(json_object_get(root, "initializationVector")),
                      "EREREREREREREREREREREQ==");
  assert_string_equal(json_string_value(json_object_get(root, "authenticationTag")),
                      "IiIiIiIiIiIiIiIiIiIiIg==");
  assert_string_equal(json_string_value(json_object_get(root, "encryptionAlgorithm")), "AES_GCM");
  assert_null(json_object_get(root, "additionalAuthenticatedData"));
  json_decref(root);
  xks_client_free(c);
}

/* ---- concurrency ------------------------------------------------------------ */

#define THREADS 6
#define ROUNDS 15

static xks_client *shared;
static atomic_int thread_failures;

static void *worker(void *arg) {
  uintptr_t id = (uintptr_t)arg;
  for (int i = 0; i < ROUNDS; i++) {
    uint8_t pt[64];
    char aad[32];
    xks_encrypt_result r;
    xks_decrypt_result d;
    xks_call_status st;
    kerr e;
    for (size_t k = 0; k < sizeof pt; k++) pt[k] = (uint8_t)(id * 17 + (uintptr_t)i + k);
    snprintf(aad, sizeof aad, "thread=%u,round=%d", (unsigned)id, i);
    if (xks_client_encrypt(shared, &META, KEY, pt, sizeof pt, (const uint8_t *)aad, strlen(aad), 1, &r,
                           &st, &e) != KERR_OK) {
      fprintf(stderr, "thread %u encrypt: %s\n", (unsigned)id, e.msg);
      atomic_fetch_add(&thread_failures, 1);
      continue;
    }
    xks_decrypt_input in = {r.ciphertext.data, r.ciphertext.len, r.iv, r.iv_len, r.tag,
                            (const uint8_t *)aad, strlen(aad), NULL, 0};
    if (xks_client_decrypt(shared, &META, KEY, &in, &d, &st, &e) != KERR_OK ||
        d.plaintext.len != sizeof pt || memcmp(d.plaintext.data, pt, sizeof pt) != 0) {
      fprintf(stderr, "thread %u decrypt: %s\n", (unsigned)id, e.msg);
      atomic_fetch_add(&thread_failures, 1);
    }
    xks_decrypt_result_free(&d);
    xks_encrypt_result_free(&r);
  }
  return NULL;
}

static void test_concurrent(void **state) {
  (void)state;
  client_opts o = {0};
  o.port = proxy_port;
  o.pool = 3; /* fewer handles than threads: callers wait for one */
  shared = new_client(&o);
  pthread_t t[THREADS];
  atomic_store(&thread_failures, 0);
  for (uintptr_t i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, worker, (void *)i), 0);
  for (size_t i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  assert_int_equal(atomic_load(&thread_failures), 0);
  xks_client_free(shared);
}

static void test_outcome_names(void **state) {
  (void)state;
  assert_string_equal(xks_outcome_name(XKS_OUTCOME_OK), "OK");
  assert_string_equal(xks_outcome_name(XKS_OUTCOME_TLS_ERROR), "TLS_ERROR");
  assert_string_equal(xks_outcome_name(XKS_OUTCOME_LOCAL_ERROR), "LOCAL_ERROR");
  assert_string_equal(xks_outcome_name((xks_outcome)99), "?");
  xks_call_status st = {0};
  st.outcome = XKS_OUTCOME_PROXY_ERROR;
  st.proxy_error = XKS_ERR_INVALID_STATE;
  assert_int_equal(xks_client_kerr(&st), KERR_XKS_KEY_INVALID_CONFIG);
  st.proxy_error = XKS_ERR_INTERNAL;
  assert_int_equal(xks_client_kerr(&st), KERR_XKS_PROXY_INVALID_RESPONSE);
  st.proxy_error = XKS_ERR_DEPENDENCY_TIMEOUT;
  assert_int_equal(xks_client_kerr(&st), KERR_XKS_PROXY_URI_UNREACHABLE);
  st.outcome = XKS_OUTCOME_BAD_INPUT;
  assert_int_equal(xks_client_kerr(&st), KERR_VALIDATION);
  assert_int_equal(xks_client_kerr(NULL), KERR_INTERNAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_outcome_names),
      cmocka_unit_test(test_config_rules),
      cmocka_unit_test(test_ca_bundle_fifo),
      cmocka_unit_test(test_health_ok),
      cmocka_unit_test(test_metadata),
      cmocka_unit_test(test_encrypt_decrypt),
      cmocka_unit_test(test_bad_input_not_sent),
      cmocka_unit_test(test_wrong_secret),
      cmocka_unit_test(test_tls_failures),
      cmocka_unit_test(test_network_failures),
      cmocka_unit_test(test_blackholed_connect),
      cmocka_unit_test(test_handshake_dropped),
      cmocka_unit_test(test_stale_kept_connection),
      cmocka_unit_test(test_kept_connection),
      cmocka_unit_test(test_kept_connection_idle_limit),
      cmocka_unit_test(test_replies_that_close),
      cmocka_unit_test(test_hanging_lookup),
      cmocka_unit_test(test_ca_bundle_at_call_time),
      cmocka_unit_test(test_invalid_responses),
      cmocka_unit_test(test_wire),
      cmocka_unit_test(test_concurrent),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
