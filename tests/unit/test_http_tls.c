/* test_http_tls.c - the HTTP server's TLS restrictions and mutual TLS,
 * driven over loopback with libcurl.
 *
 * The certificates are made at run time with the openssl command (skipped
 * when it is missing): two CAs, RSA and ECDSA server certificates, and
 * client certificates that are right (name as a dNSName, or as the CN
 * alone) and wrong in one way each (name, CA, expired, not yet valid,
 * self-signed, for servers only).  Each wrong one must fail at the TLS level
 * with the handler never called; the XKS priority string must let through
 * exactly the protocol versions and cipher suites it names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "http/http_server.h"

/* ------------------------------------------------------------ certificates */

/* Makes every certificate in the directory given as $1.  Certificates signed
 * by a CA go through `openssl ca`, which (unlike `openssl x509` in OpenSSL
 * 3.0) takes explicit validity dates, so expired and future certificates
 * need no fake clock. */
static const char CERT_SCRIPT[] =
    "set -e\n"
    "cd \"$1\"\n"
    "ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'\n"
    "rsa='-newkey rsa:2048 -nodes'\n"
    "mkca() {\n"
    "  openssl req -x509 $ec -keyout $1.key -out $1.pem -days 30 -subj \"/CN=kmsd test $1\" \\\n"
    "    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign\n"
    "  mkdir $1.db; : > $1.db/index.txt; echo 01 > $1.db/serial\n"
    "  printf '%s\\n' '[ca]' 'default_ca = sect' '[sect]' \"dir = $PWD/$1.db\" \\\n"
    "    'database = $dir/index.txt' 'new_certs_dir = $dir' 'serial = $dir/serial' \\\n"
    "    'default_md = sha256' 'default_days = 30' 'policy = pol' 'unique_subject = no' \\\n"
    "    '[pol]' 'commonName = supplied' > $1.cnf\n"
    "}\n"
    "# issue KEYOPTS CA NAME SUBJECT EXTENSIONS [openssl ca options]\n"
    "issue() {\n"
    "  keyopts=$1 ca=$2 name=$3 subj=$4 ext=$5; shift 5\n"
    "  openssl req -new $keyopts -keyout $name.key -out $name.csr -subj \"$subj\"\n"
    "  printf 'basicConstraints=CA:FALSE\\n%b\\n' \"$ext\" > $name.ext\n"
    "  openssl ca -batch -notext -config $ca.cnf -cert $ca.pem -keyfile $ca.key \\\n"
    "    -in $name.csr -out $name.pem -extfile $name.ext \"$@\"\n"
    "}\n"
    "mkca ca\n"
    "mkca otherca\n"
    "srv='subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth'\n"
    "issue \"$rsa\" ca server-rsa /CN=localhost \"$srv\"\n"
    "issue \"$ec\" ca server-ec /CN=localhost \"$srv\"\n"
    "cli='subjectAltName=DNS:client.example\\nextendedKeyUsage=clientAuth'\n"
    "issue \"$ec\" ca good /CN=client.example \"$cli\"\n"
    "issue \"$ec\" ca cn-only /CN=cn-client.example ''\n"
    "issue \"$ec\" ca wrong-name /CN=client.example "
    "'subjectAltName=DNS:other.example\\nextendedKeyUsage=clientAuth'\n"
    "issue \"$ec\" otherca other-ca /CN=client.example \"$cli\"\n"
    "issue \"$ec\" ca expired /CN=client.example \"$cli\" "
    "-startdate 20200101000000Z -enddate 20200201000000Z\n"
    "issue \"$ec\" ca future /CN=client.example \"$cli\" "
    "-startdate 20990101000000Z -enddate 20991231000000Z\n"
    "issue \"$ec\" ca server-only /CN=client.example "
    "'subjectAltName=DNS:client.example\\nextendedKeyUsage=serverAuth'\n"
    "openssl req -x509 $ec -keyout self-signed.key -out self-signed.pem -days 30 \\\n"
    "  -subj /CN=client.example -addext subjectAltName=DNS:client.example\n";

typedef struct pki {
  char dir[64];
  char *ca_pem;
  char *rsa_cert, *rsa_key;
  char *ec_cert, *ec_key;
} pki;

static pki P;
static int have_pki;

static char *read_text(const char *name) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", P.dir, name);
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

static int make_pki(void **state) {
  (void)state;
  if (system("openssl version >/dev/null 2>&1") != 0) return 0; /* tests skip */
  snprintf(P.dir, sizeof P.dir, "/tmp/kmsd-mtls-XXXXXX");
  if (!mkdtemp(P.dir)) return -1;
  char cmd[160];
  snprintf(cmd, sizeof cmd, "sh -s %s >%s/openssl.log 2>&1", P.dir, P.dir);
  FILE *sh = popen(cmd, "w");
  if (!sh) return -1;
  fputs(CERT_SCRIPT, sh);
  if (pclose(sh) != 0) {
    fprintf(stderr, "openssl could not make the test certificates (see %s/openssl.log)\n", P.dir);
    return -1;
  }
  P.ca_pem = read_text("ca.pem");
  P.rsa_cert = read_text("server-rsa.pem");
  P.rsa_key = read_text("server-rsa.key");
  P.ec_cert = read_text("server-ec.pem");
  P.ec_key = read_text("server-ec.key");
  if (!P.ca_pem || !P.rsa_cert || !P.rsa_key || !P.ec_cert || !P.ec_key) return -1;
  have_pki = 1;
  return 0;
}

static int remove_pki(void **state) {
  (void)state;
  free(P.ca_pem);
  free(P.rsa_cert);
  free(P.rsa_key);
  free(P.ec_cert);
  free(P.ec_key);
  if (P.dir[0] && strncmp(P.dir, "/tmp/kmsd-mtls-", 15) == 0) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", P.dir);
    if (system(cmd) != 0) return -1;
  }
  return 0;
}

#define NEED_PKI()                                  \
  do {                                              \
    if (!have_pki) {                                \
      print_message("openssl is missing: skipped\n"); \
      skip();                                       \
    }                                               \
  } while (0)

/* ------------------------------------------------------------ server */

static atomic_int handler_calls;

static void ok_handler(void *ctx, const http_request *req, http_response *resp) {
  (void)ctx;
  (void)req;
  atomic_fetch_add(&handler_calls, 1);
  resp->status = 200;
  resp->body = strdup("ok");
  resp->body_len = resp->body ? 2 : 0;
}

static const char *const CLIENT_NAMES[] = {"client.example", "cn-client.example"};

typedef struct server_opts {
  int ecdsa;               /* ECDSA server certificate instead of RSA */
  const char *priority;
  int mtls;                /* ask client certificates from the test CA */
  int names;               /* ... issued to CLIENT_NAMES */
} server_opts;

static http_server *start_server(const server_opts *o) {
  http_server_config cfg = {0};
  cfg.host = "127.0.0.1";
  cfg.threads = 2;
  cfg.handler = ok_handler;
  cfg.tls_cert_pem = o->ecdsa ? P.ec_cert : P.rsa_cert;
  cfg.tls_key_pem = o->ecdsa ? P.ec_key : P.rsa_key;
  cfg.tls_priority = o->priority;
  if (o->mtls) cfg.tls_client_ca_pem = P.ca_pem;
  if (o->names) {
    cfg.tls_client_names = CLIENT_NAMES;
    cfg.tls_client_name_count = 2;
  }
  http_server *s = NULL;
  kerr err;
  kerr_clear(&err);
  if (http_server_start(&cfg, &s, &err) != KERR_OK) fail_msg("server did not start: %s", err.msg);
  return s;
}

/* Stops the server and checks that no connection is still counted as a
 * request in flight: stopping would then wait out the whole grace period. */
static void stop_server(http_server *s) {
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  http_server_stop(s, 5000);
  clock_gettime(CLOCK_MONOTONIC, &b);
  long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
  assert_true(ms < 2000);
}

/* ------------------------------------------------------------ client */

typedef struct client_opts {
  const char *cert;        /* base name of a client certificate and key, or NULL */
  long version;            /* CURLOPT_SSLVERSION; 0: curl's default */
  const char *ciphers;     /* TLS 1.2 and below (OpenSSL names) */
  const char *ciphers13;   /* TLS 1.3 */
} client_opts;

static size_t sink(char *data, size_t size, size_t n, void *ud) {
  (void)data;
  (void)ud;
  return size * n;
}

/* One GET; returns the HTTP status, or 0 when the transfer failed (the curl
 * error goes to *cc). */
static long get(const http_server *s, const client_opts *o, CURLcode *cc) {
  char url[64], cert[128], key[128], ca[128];
  snprintf(url, sizeof url, "https://127.0.0.1:%u/", http_server_port(s));
  snprintf(ca, sizeof ca, "%s/ca.pem", P.dir);
  CURL *c = curl_easy_init();
  assert_non_null(c);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CAINFO, ca);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (o->cert) {
    snprintf(cert, sizeof cert, "%s/%s.pem", P.dir, o->cert);
    snprintf(key, sizeof key, "%s/%s.key", P.dir, o->cert);
    curl_easy_setopt(c, CURLOPT_SSLCERT, cert);
    curl_easy_setopt(c, CURLOPT_SSLKEY, key);
  }
  if (o->version) curl_easy_setopt(c, CURLOPT_SSLVERSION, o->version);
  if (o->ciphers) curl_easy_setopt(c, CURLOPT_SSL_CIPHER_LIST, o->ciphers);
  if (o->ciphers13) curl_easy_setopt(c, CURLOPT_TLS13_CIPHERS, o->ciphers13);
  long status = 0;
  *cc = curl_easy_perform(c);
  if (*cc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(c);
  return status;
}

#define TLS12 (CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2)
#define TLS13 (CURL_SSLVERSION_TLSv1_3 | CURL_SSLVERSION_MAX_TLSv1_3)
/* OpenSSL 3 refuses TLS 1.0/1.1 at its default security level: lowered so
 * the client really offers them and the refusal is the server's. */
#define OLD_TLS_CIPHERS "DEFAULT:@SECLEVEL=0"

static void expect_ok(const http_server *s, const client_opts *o, const char *what) {
  CURLcode cc;
  int before = atomic_load(&handler_calls);
  long status = get(s, o, &cc);
  if (status != 200)
    fail_msg("%s: expected 200, got %ld (%s)", what, status, curl_easy_strerror(cc));
  assert_int_equal(atomic_load(&handler_calls), before + 1);
}

/* The connection must fail in TLS: no HTTP answer, the handler not called. */
static void expect_refused(const http_server *s, const client_opts *o, const char *what) {
  CURLcode cc;
  int before = atomic_load(&handler_calls);
  long status = get(s, o, &cc);
  if (cc == CURLE_OK) fail_msg("%s: expected a TLS failure, got HTTP %ld", what, status);
  if (cc == CURLE_OPERATION_TIMEDOUT) fail_msg("%s: timed out instead of failing", what);
  assert_int_equal(atomic_load(&handler_calls), before);
}

/* ------------------------------------------------------------ tests */

static void test_bad_settings_refused(void **state) {
  (void)state;
  NEED_PKI();
  http_server_config cfg = {0};
  cfg.host = "127.0.0.1";
  cfg.handler = ok_handler;
  cfg.tls_cert_pem = P.rsa_cert;
  cfg.tls_key_pem = P.rsa_key;
  http_server *s = (http_server *)&cfg; /* must come back NULL */
  kerr err;

  cfg.tls_priority = "NORMAL:+NO-SUCH-THING";
  kerr_clear(&err);
  assert_int_equal(http_server_start(&cfg, &s, &err), KERR_VALIDATION);
  assert_null(s);
  assert_non_null(strstr(err.msg, "priority"));
  assert_non_null(strstr(err.msg, "+NO-SUCH-THING"));
  cfg.tls_priority = "";
  assert_int_equal(http_server_start(&cfg, &s, &err), KERR_VALIDATION);
  cfg.tls_priority = NULL;

  cfg.tls_client_ca_pem = "not a certificate";
  assert_int_equal(http_server_start(&cfg, &s, &err), KERR_VALIDATION);
  assert_null(s);
  cfg.tls_client_ca_pem = NULL;

  /* Names without CAs to check the chain against. */
  cfg.tls_client_names = CLIENT_NAMES;
  cfg.tls_client_name_count = 2;
  assert_int_equal(http_server_start(&cfg, &s, &err), KERR_VALIDATION);
  const char *const empty_name[] = {""};
  cfg.tls_client_ca_pem = P.ca_pem;
  cfg.tls_client_names = empty_name;
  cfg.tls_client_name_count = 1;
  assert_int_equal(http_server_start(&cfg, &s, &err), KERR_VALIDATION);
  const char *const *too_many = calloc(65, sizeof(char *));
  assert_non_null(too_many);
  cfg.tls_client_names = too_many;
  cfg.tls_client_name_count = 65;
  assert_int_equal(http_server_start(&cfg, &s, &err), KERR_VALIDATION);
  free((void *)too_many);
  cfg.tls_client_names = NULL;
  cfg.tls_client_name_count = 0;

  /* TLS settings on a plain HTTP server. */
  cfg.tls_cert_pem = cfg.tls_key_pem = NULL;
  assert_int_equal(http_server_start(&cfg, &s, &err), KERR_VALIDATION);
  cfg.tls_client_ca_pem = NULL;
  cfg.tls_priority = HTTP_TLS_PRIORITY_XKS;
  assert_int_equal(http_server_start(&cfg, &s, &err), KERR_VALIDATION);
  assert_null(s);
}

static void test_no_client_ca_no_certificate_needed(void **state) {
  (void)state;
  NEED_PKI();
  server_opts so = {0};
  http_server *s = start_server(&so);
  expect_ok(s, &(client_opts){0}, "no client certificate");
  expect_ok(s, &(client_opts){.cert = "other-ca"}, "unasked client certificate");
  stop_server(s);
}

static void test_mtls_right_certificates(void **state) {
  (void)state;
  NEED_PKI();
  server_opts so = {.priority = HTTP_TLS_PRIORITY_XKS, .mtls = 1, .names = 1};
  http_server *s = start_server(&so);
  const long versions[] = {TLS12, TLS13};
  for (size_t v = 0; v < 2; v++) {
    expect_ok(s, &(client_opts){.cert = "good", .version = versions[v]}, "name as dNSName");
    expect_ok(s, &(client_opts){.cert = "cn-only", .version = versions[v]}, "name as CN only");
  }
  stop_server(s);
}

static void test_mtls_wrong_certificates(void **state) {
  (void)state;
  NEED_PKI();
  server_opts so = {.priority = HTTP_TLS_PRIORITY_XKS, .mtls = 1, .names = 1};
  http_server *s = start_server(&so);
  static const char *const wrong[] = {NULL,     "wrong-name",  "other-ca",   "expired",
                                      "future", "self-signed", "server-only"};
  const long versions[] = {TLS12, TLS13};
  for (size_t v = 0; v < 2; v++)
    for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++) {
      char what[64];
      snprintf(what, sizeof what, "%s over TLS 1.%d", wrong[i] ? wrong[i] : "no certificate",
               v == 0 ? 2 : 3);
      expect_refused(s, &(client_opts){.cert = wrong[i], .version = versions[v]}, what);
    }
  /* The refusals left the server as it was. */
  expect_ok(s, &(client_opts){.cert = "good"}, "right certificate after the wrong ones");
  stop_server(s);
}

static void test_mtls_any_name_without_names(void **state) {
  (void)state;
  NEED_PKI();
  server_opts so = {.mtls = 1};
  http_server *s = start_server(&so);
  expect_ok(s, &(client_opts){.cert = "wrong-name"}, "any name from the CA");
  expect_refused(s, &(client_opts){.cert = "other-ca"}, "other CA");
  expect_refused(s, &(client_opts){0}, "no certificate");
  stop_server(s);
}

static void test_xks_priority(void **state) {
  (void)state;
  NEED_PKI();
  server_opts so = {.priority = HTTP_TLS_PRIORITY_XKS};
  http_server *s = start_server(&so);
  expect_ok(s, &(client_opts){.version = TLS12, .ciphers = "ECDHE-RSA-AES256-GCM-SHA384"},
            "TLS 1.2 ECDHE-RSA-AES256-GCM-SHA384");
  expect_ok(s, &(client_opts){.version = TLS13, .ciphers13 = "TLS_AES_256_GCM_SHA384"},
            "TLS 1.3 TLS_AES_256_GCM_SHA384");
  expect_refused(s, &(client_opts){.version = TLS12, .ciphers = "ECDHE-RSA-AES128-GCM-SHA256"},
                 "TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256");
  expect_refused(s, &(client_opts){.version = TLS12, .ciphers = "ECDHE-RSA-CHACHA20-POLY1305"},
                 "TLS 1.2 ECDHE-RSA-CHACHA20-POLY1305");
  expect_refused(s, &(client_opts){.version = TLS12, .ciphers = "AES256-GCM-SHA384"},
                 "TLS 1.2 RSA key exchange");
  expect_refused(s, &(client_opts){.version = TLS13, .ciphers13 = "TLS_AES_128_GCM_SHA256"},
                 "TLS 1.3 TLS_AES_128_GCM_SHA256");
  expect_refused(s, &(client_opts){.version = TLS13, .ciphers13 = "TLS_CHACHA20_POLY1305_SHA256"},
                 "TLS 1.3 TLS_CHACHA20_POLY1305_SHA256");
  expect_refused(s,
                 &(client_opts){.version = CURL_SSLVERSION_TLSv1_1 | CURL_SSLVERSION_MAX_TLSv1_1,
                                .ciphers = OLD_TLS_CIPHERS},
                 "TLS 1.1");
  expect_refused(s,
                 &(client_opts){.version = CURL_SSLVERSION_TLSv1_0 | CURL_SSLVERSION_MAX_TLSv1_0,
                                .ciphers = OLD_TLS_CIPHERS},
                 "TLS 1.0");
  stop_server(s);

  so.ecdsa = 1;
  s = start_server(&so);
  expect_ok(s, &(client_opts){.version = TLS12, .ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384"},
            "TLS 1.2 ECDHE-ECDSA-AES256-GCM-SHA384");
  expect_ok(s, &(client_opts){.version = TLS13, .ciphers13 = "TLS_AES_256_GCM_SHA384"},
            "TLS 1.3 TLS_AES_256_GCM_SHA384 (ECDSA)");
  expect_refused(s, &(client_opts){.version = TLS12, .ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256"},
                 "TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256");
  stop_server(s);
}

/* The refusals above are the priority string's doing: the same clients get
 * through to a server left at the library's default. */
static void test_default_priority_controls(void **state) {
  (void)state;
  NEED_PKI();
  server_opts so = {0};
  http_server *s = start_server(&so);
  expect_ok(s, &(client_opts){.version = TLS12, .ciphers = "ECDHE-RSA-AES128-GCM-SHA256"},
            "TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256 at the default priority");
  expect_ok(s, &(client_opts){.version = TLS13, .ciphers13 = "TLS_AES_128_GCM_SHA256"},
            "TLS 1.3 TLS_AES_128_GCM_SHA256 at the default priority");
  expect_ok(s,
            &(client_opts){.version = CURL_SSLVERSION_TLSv1_1 | CURL_SSLVERSION_MAX_TLSv1_1,
                           .ciphers = OLD_TLS_CIPHERS},
            "TLS 1.1 at the default priority");
  stop_server(s);
}

int main(void) {
  curl_global_init(CURL_GLOBAL_ALL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_settings_refused),
      cmocka_unit_test(test_no_client_ca_no_certificate_needed),
      cmocka_unit_test(test_mtls_right_certificates),
      cmocka_unit_test(test_mtls_wrong_certificates),
      cmocka_unit_test(test_mtls_any_name_without_names),
      cmocka_unit_test(test_xks_priority),
      cmocka_unit_test(test_default_priority_controls),
  };
  int rc = cmocka_run_group_tests(tests, make_pki, remove_pki);
  curl_global_cleanup();
  return rc;
}
