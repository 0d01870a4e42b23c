/* main.c - the xks-proxy program: an External Key Store proxy (XKS Proxy
 * API v1) in front of PKCS#11 tokens.
 *
 * Two commands: serving (the default), configured by a file (--config) or,
 * for one key store, by flags alone; and `create-key`, which makes an
 * external key in a token for tests and demos.  This file turns arguments
 * into an xksp_config, starts the proxy (lib/xksproxy), waits for SIGINT or
 * SIGTERM and stops it so requests in flight finish; SIGHUP rotates
 * credentials from the configuration file.  docs/xks-proxy.md is
 * the manual. */
#include <jansson.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cli_flags.h"
#include "core/kerr.h"
#include "core/log.h"
#include "core/secmem.h"
#include "core/version.h"
#include "xksproxy/xksp_backend.h"
#include "xksproxy/xksp_config.h"
#include "xksproxy/xksp_hsm.h"
#include "xksproxy/xksp_server.h"

#define PROGRAM "xks-proxy"
#define STOP_GRACE_MS 10000
#define MAX_THREADS 1024
#define MAX_QUOTA 1000000.0

static void usage(FILE *f) {
  fprintf(f,
          "usage: " PROGRAM " --config FILE\n"
          "       " PROGRAM " [--listen HOST:PORT] (--tls-cert F --tls-key F | --plain-http)\n"
          "                 [--tls-client-ca F [--tls-client-subject DNSNAME]] [--tls-priority P]\n"
          "                 --uri-prefix PREFIX --region R --access-key-id ID --secret-access-key S\n"
          "                 [--access-key-id-2 ID --secret-access-key-2 S]\n"
          "                 --pkcs11-module PATH --token-label L (--pin PIN | --pin-file F)\n"
          "                 [--session-pool N] [--health-key LABEL] [--ping-path P] [--threads N]\n"
          "                 [--quota RPS] [--log-level debug|info|warn|error]\n"
          "       " PROGRAM " create-key --pkcs11-module PATH --token-label L (--pin PIN | --pin-file F)\n"
          "                 --label NAME [--usage encrypt,decrypt|encrypt|decrypt|none]\n"
          "       " PROGRAM " --help | --version\n"
          "\n"
          "An XKS proxy (AWS KMS External Key Store Proxy API v1) serving AES-256 keys\n"
          "held in PKCS#11 tokens, found by label (= externalKeyId).\n"
          "\n"
          "Serving:\n"
          "  --config FILE            key stores, credentials, tokens, rules (YAML or JSON);\n"
          "                           see docs/xks-proxy.md.  Excludes the flags below.\n"
          "  --listen HOST:PORT       address to serve (default " XKSP_DEFAULT_LISTEN "; port 0: any)\n"
          "  --tls-cert F, --tls-key F  server certificate chain and key (PEM)\n"
          "  --tls-client-ca F        require client certificates chaining to these CAs (mTLS)\n"
          "  --tls-client-subject N   DNS name the client certificate must carry\n"
          "                           (default cks.kms.<region>.amazonaws.com)\n"
          "  --tls-priority P         GnuTLS priority string (default: TLS 1.2/1.3, the spec's suites)\n"
          "  --plain-http             serve HTTP without TLS (only behind a TLS-terminating balancer)\n"
          "  --uri-prefix PREFIX      the XksProxyUriPath, e.g. /example/kms/xks/v1\n"
          "  --region R               the AWS Region KMS signs requests for\n"
          "  --access-key-id ID, --secret-access-key S   the SigV4 credential KMS uses\n"
          "  --access-key-id-2 ID, --secret-access-key-2 S   a second one (rotation)\n"
          "  --pkcs11-module PATH     the PKCS#11 library of the HSM\n"
          "  --token-label L          the token holding the keys\n"
          "  --pin PIN | --pin-file F the token's user PIN\n"
          "  --session-pool N         PKCS#11 sessions (default %d)\n"
          "  --health-key LABEL       a test key for deep health checks\n"
          "  --ping-path P            load-balancer probe path, GET -> 200 (default " XKSP_DEFAULT_PING_PATH ")\n"
          "  --threads N              worker threads (default: one per CPU)\n"
          "  --quota RPS              requests per second for the key store (default: none)\n"
          "  --log-level L            debug, info (default: one line per request), warn, error\n"
          "\n"
          "create-key makes an AES-256 key that never leaves the token.\n",
          XKSP_DEFAULT_POOL);
}

#define bad_flag(...) cli_usage_error(PROGRAM, __VA_ARGS__)

enum {
  OPT_HELP = 1, OPT_VERSION, OPT_CONFIG, OPT_LISTEN, OPT_TLS_CERT, OPT_TLS_KEY, OPT_TLS_CLIENT_CA,
  OPT_TLS_CLIENT_SUBJECT, OPT_TLS_PRIORITY, OPT_PLAIN_HTTP, OPT_URI_PREFIX, OPT_REGION, OPT_AKID,
  OPT_SECRET, OPT_AKID2, OPT_SECRET2, OPT_MODULE, OPT_TOKEN, OPT_PIN, OPT_PIN_FILE, OPT_POOL,
  OPT_HEALTH_KEY, OPT_PING_PATH, OPT_THREADS, OPT_QUOTA, OPT_LOG_LEVEL, OPT_LABEL, OPT_USAGE,
};

static const cli_flag FLAGS[] = {
    {"--help", "-h", OPT_HELP, 0},
    {"--version", NULL, OPT_VERSION, 0},
    {"--config", NULL, OPT_CONFIG, 1},
    {"--listen", NULL, OPT_LISTEN, 1},
    {"--tls-cert", NULL, OPT_TLS_CERT, 1},
    {"--tls-key", NULL, OPT_TLS_KEY, 1},
    {"--tls-client-ca", NULL, OPT_TLS_CLIENT_CA, 1},
    {"--tls-client-subject", NULL, OPT_TLS_CLIENT_SUBJECT, 1},
    {"--tls-priority", NULL, OPT_TLS_PRIORITY, 1},
    {"--plain-http", NULL, OPT_PLAIN_HTTP, 0},
    {"--uri-prefix", NULL, OPT_URI_PREFIX, 1},
    {"--region", NULL, OPT_REGION, 1},
    {"--access-key-id", NULL, OPT_AKID, 1},
    {"--secret-access-key", NULL, OPT_SECRET, 1},
    {"--access-key-id-2", NULL, OPT_AKID2, 1},
    {"--secret-access-key-2", NULL, OPT_SECRET2, 1},
    {"--pkcs11-module", NULL, OPT_MODULE, 1},
    {"--token-label", NULL, OPT_TOKEN, 1},
    {"--pin", NULL, OPT_PIN, 1},
    {"--pin-file", NULL, OPT_PIN_FILE, 1},
    {"--session-pool", NULL, OPT_POOL, 1},
    {"--health-key", NULL, OPT_HEALTH_KEY, 1},
    {"--ping-path", NULL, OPT_PING_PATH, 1},
    {"--threads", NULL, OPT_THREADS, 1},
    {"--quota", NULL, OPT_QUOTA, 1},
    {"--log-level", NULL, OPT_LOG_LEVEL, 1},
};

static const cli_flag CREATE_FLAGS[] = {
    {"--help", "-h", OPT_HELP, 0},
    {"--pkcs11-module", NULL, OPT_MODULE, 1},
    {"--token-label", NULL, OPT_TOKEN, 1},
    {"--pin", NULL, OPT_PIN, 1},
    {"--pin-file", NULL, OPT_PIN_FILE, 1},
    {"--label", NULL, OPT_LABEL, 1},
    {"--usage", NULL, OPT_USAGE, 1},
};

static int parse_uint(const char *s, unsigned long max, unsigned *out) {
  char *end;
  unsigned long v;
  if (!s || *s < '0' || *s > '9') return -1;
  v = strtoul(s, &end, 10);
  if (*end || v > max) return -1;
  *out = (unsigned)v;
  return 0;
}

/* Read a PIN file for create-key: first line, at most 255 bytes, into
 * secure memory.  NULL on failure (message printed). */
static char *read_pin_file(const char *path) {
  FILE *f = fopen(path, "re");
  char *buf = secure_alloc(4097);
  size_t n;
  if (!f || !buf) {
    if (f) fclose(f);
    secure_free(buf, 4097);
    fprintf(stderr, PROGRAM ": cannot read the PIN file %s\n", path);
    return NULL;
  }
  n = fread(buf, 1, 4096, f);
  fclose(f);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = '\0';
  if (n == 0 || n > 255 || memchr(buf, '\n', n)) {
    secure_free(buf, 4097);
    fprintf(stderr, PROGRAM ": the PIN file %s must hold one line of 1 to 255 bytes\n", path);
    return NULL;
  }
  return buf;
}

static int create_key(int argc, char **argv) {
  cli_parser parser;
  cli_item item;
  cli_item_kind kind;
  const char *module = NULL, *token = NULL, *pin = NULL, *pin_file = NULL, *label = NULL;
  int usage_v = XKSP_USAGE_ENCRYPT_DECRYPT;
  char *file_pin = NULL;
  kerr err = {0};
  kerr_code rc;

  cli_parser_init(&parser, argc, argv, CREATE_FLAGS, sizeof CREATE_FLAGS / sizeof CREATE_FLAGS[0]);
  while ((kind = cli_next(&parser, &item)) != CLI_END) {
    if (kind == CLI_ERROR) return bad_flag("create-key: %s", item.error);
    if (kind == CLI_WORD) return bad_flag("create-key: unexpected argument '%.64s'", item.value);
    switch (item.flag->id) {
    case OPT_HELP: usage(stdout); return 0;
    case OPT_MODULE: module = item.value; break;
    case OPT_TOKEN: token = item.value; break;
    case OPT_PIN: pin = item.value; break;
    case OPT_PIN_FILE: pin_file = item.value; break;
    case OPT_LABEL: label = item.value; break;
    case OPT_USAGE:
      usage_v = xksp_usage_parse(item.value);
      if (usage_v < 0)
        return bad_flag("--usage must be encrypt,decrypt, encrypt, decrypt or none, not '%.64s'", item.value);
      break;
    }
  }
  if (!module || !token || !label) return bad_flag("create-key needs --pkcs11-module, --token-label and --label");
  if (!pin == !pin_file) return bad_flag("create-key needs one of --pin and --pin-file");
  if (pin_file && !(file_pin = read_pin_file(pin_file))) return 1;
  rc = xksp_create_key(module, token, file_pin ? file_pin : pin, label, (xksp_usage)usage_v, &err);
  if (file_pin) secure_free(file_pin, 4097);
  if (rc) {
    fprintf(stderr, PROGRAM ": create-key: %s\n", err.msg);
    return 1;
  }
  printf("created key %s in token %s\n", label, token);
  return 0;
}

/* jansson holds request and reply JSON, which carry plaintexts: make its
 * free wipe every block (as kmsd does). */
static void *json_plain_malloc(size_t n) { return malloc(n); }
static void json_wiping_free(void *p) {
  if (!p) return;
  secure_wipe(p, malloc_usable_size(p));
  free(p);
}

/* SIGHUP: read the configuration file again and rotate the credentials it
 * names (xksp_proxy_update_credentials); other changes need a restart. */
static void reload_credentials(xksp_proxy *proxy, const char *config_path) {
  xksp_config *fresh = NULL;
  kerr err = {0};
  size_t updated = 0;
  if (!config_path) {
    log_msg(LOG_WARN, NULL, "SIGHUP: nothing to reload without --config");
    return;
  }
  if (xksp_config_load(config_path, &fresh, &err) != KERR_OK ||
      xksp_proxy_update_credentials(proxy, fresh, &updated, &err) != KERR_OK) {
    log_msg(LOG_ERROR, NULL, "SIGHUP: credentials unchanged: %s", err.msg);
  } else {
    log_msg(LOG_INFO, NULL, "SIGHUP: credentials reloaded for %zu key store%s", updated,
            updated == 1 ? "" : "s");
  }
  xksp_config_free(fresh);
}

static int serve(const xksp_config *cfg, const char *config_path) {
  sigset_t stop_signals;
  xksp_proxy *proxy = NULL;
  kerr err = {0};
  int sig = 0;
  char host[HTTP_HOST_MAX];
  uint16_t port;

  /* Block the stop signals before any thread exists so that only sigwait()
   * below sees them. */
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
  signal(SIGPIPE, SIG_IGN);

  log_set_level((log_level)cfg->log_level);
  if (xksp_proxy_new(cfg, &xksp_hsm_backend, &proxy, &err) != KERR_OK ||
      xksp_proxy_serve(proxy, &err) != KERR_OK) {
    log_msg(LOG_ERROR, NULL, "cannot start: %s", err.msg);
    xksp_proxy_free(proxy, 0);
    return 1;
  }
  if (http_parse_listen(cfg->listen, host, &port, &err) != KERR_OK) snprintf(host, sizeof host, "?");
  log_msg(LOG_INFO, NULL, PROGRAM " %s listening on %s://%s%s%s:%u with %zu key store%s", KMSD_VERSION,
          cfg->plain_http ? "http" : "https", strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
          (unsigned)xksp_proxy_port(proxy), cfg->store_count, cfg->store_count == 1 ? "" : "s");
  for (;;) {
    if (sigwait(&stop_signals, &sig) != 0) continue;
    if (sig != SIGHUP) break;
    reload_credentials(proxy, config_path);
  }
  log_msg(LOG_INFO, NULL, "signal %d: finishing requests in flight and stopping", sig);
  xksp_proxy_free(proxy, STOP_GRACE_MS);
  log_msg(LOG_INFO, NULL, "stopped");
  return 0;
}

int main(int argc, char **argv) {
  cli_parser parser;
  cli_item item;
  cli_item_kind kind;
  xksp_flags f;
  const char *config_path = NULL;
  int store_flags = 0;
  xksp_config *cfg = NULL;
  kerr err = {0};
  int status;

  json_set_alloc_funcs(json_plain_malloc, json_wiping_free);
  if (argc > 1 && strcmp(argv[1], "create-key") == 0) return create_key(argc - 1, argv + 1);

  memset(&f, 0, sizeof f);
  cli_parser_init(&parser, argc, argv, FLAGS, sizeof FLAGS / sizeof FLAGS[0]);
  while ((kind = cli_next(&parser, &item)) != CLI_END) {
    const char *v = item.value;
    if (kind == CLI_ERROR) return bad_flag("%s", item.error);
    if (kind == CLI_WORD) return bad_flag("unexpected argument '%.64s'", v);
    if (item.flag->id > OPT_LISTEN) store_flags = 1;
    switch (item.flag->id) {
    case OPT_HELP: usage(stdout); return 0;
    case OPT_VERSION: printf(PROGRAM " " KMSD_VERSION "\n"); return 0;
    case OPT_CONFIG: config_path = v; break;
    case OPT_LISTEN: f.listen = v; break;
    case OPT_TLS_CERT: f.tls_cert = v; break;
    case OPT_TLS_KEY: f.tls_key = v; break;
    case OPT_TLS_CLIENT_CA: f.tls_client_ca = v; break;
    case OPT_TLS_CLIENT_SUBJECT: f.tls_client_subject = v; break;
    case OPT_TLS_PRIORITY: f.tls_priority = v; break;
    case OPT_PLAIN_HTTP: f.plain_http = 1; break;
    case OPT_URI_PREFIX: f.uri_prefix = v; break;
    case OPT_REGION: f.region = v; break;
    case OPT_AKID: f.access_key_id = v; break;
    case OPT_SECRET: f.secret_access_key = v; break;
    case OPT_AKID2: f.access_key_id_2 = v; break;
    case OPT_SECRET2: f.secret_access_key_2 = v; break;
    case OPT_MODULE: f.pkcs11_module = v; break;
    case OPT_TOKEN: f.token_label = v; break;
    case OPT_PIN: f.pin = v; break;
    case OPT_PIN_FILE: f.pin_file = v; break;
    case OPT_HEALTH_KEY: f.health_key = v; break;
    case OPT_PING_PATH: f.ping_path = v; break;
    case OPT_LOG_LEVEL:
      if (log_level_parse(v) < 0) return bad_flag("--log-level must be debug, info, warn or error, not '%.64s'", v);
      f.log_level = v;
      break;
    case OPT_POOL:
      if (parse_uint(v, 64, &f.session_pool) != 0 || f.session_pool == 0)
        return bad_flag("--session-pool must be 1 to 64, not '%.64s'", v);
      break;
    case OPT_THREADS:
      if (parse_uint(v, MAX_THREADS, &f.threads) != 0)
        return bad_flag("--threads must be 0 to %d, not '%.64s'", MAX_THREADS, v);
      break;
    case OPT_QUOTA: {
      char *end;
      double q = strtod(v, &end);
      if (end == v || *end || !(q > 0 && q <= MAX_QUOTA))
        return bad_flag("--quota must be a number of requests per second above 0 and at most %.0f, not '%.64s'",
                        MAX_QUOTA, v);
      f.quota_rps = q;
      break;
    }
    }
  }
  if (config_path && (store_flags || f.listen))
    return bad_flag("--config excludes the other serving flags: put them in the file");
  if (config_path) {
    if (xksp_config_load(config_path, &cfg, &err) != KERR_OK) {
      fprintf(stderr, PROGRAM ": %s\n", err.msg);
      return 1;
    }
  } else {
    if (!store_flags) return bad_flag("nothing to serve: give --config FILE or the key store flags");
    if (xksp_config_from_flags(&f, &cfg, &err) != KERR_OK) return bad_flag("%s", err.msg);
  }
  status = serve(cfg, config_path);
  xksp_config_free(cfg);
  return status;
}
