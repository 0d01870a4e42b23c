/* main.c - the kmsd program: flags, start-up wiring and shutdown.
 *
 * kmsd is a KMS-compatible service.  This file only turns flags into the
 * configuration of the library's parts (credentials, domain, pipeline, HTTP
 * server), starts them in dependency order, waits for SIGINT/SIGTERM and
 * stops them in reverse order so in-flight requests finish and the store is
 * closed cleanly. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api_pipeline.h"
#include "aws/credentials.h"
#include "core/cli_flags.h"
#include "core/datadir_lock.h"
#include "core/kclock.h"
#include "core/kerr.h"
#include "core/log.h"
#include "core/secmem.h"
#include "core/version.h"
#include "api/hsm_pool_file.h"
#include "api/vpc_registry.h"
#include "http/http_server.h"
#include "cloudhsm/hsm_admin.h"
#include "kms/kms_domain.h"
#include "store/store_pg.h"

#define PROGRAM "kmsd"
#define DEFAULT_LISTEN "127.0.0.1:4599"
#define DEFAULT_DATA_DIR "./var"
#define MAX_THREADS 1024
#define MIN_MAX_BODY 1024
#define MAX_MAX_BODY ((size_t)64 * 1024 * 1024)
#define MAX_CLOCK_OFFSET_S (100LL * 365 * 24 * 3600)
#define PEM_FILE_MAX (1024 * 1024)
#define SHUTDOWN_GRACE_MS 10000
#define PATH_MAX_LEN 4096
#define MAX_MAX_KEYS 10000000

typedef struct kmsd_options {
  char host[HTTP_HOST_MAX];
  uint16_t port;
  const char *listen;
  const char *data_dir;
  const char *store; /* --store: NULL for SQLite in the data directory */
  const char *credentials;
  int insecure_any;
  const char *tls_cert;
  const char *tls_key;
  unsigned threads;
  unsigned wait_threads;  /* --wait-threads; 0: HTTP_DEFAULT_WAIT_THREADS */
  unsigned wait_queue;    /* --wait-queue; 0: HTTP_DEFAULT_WAIT_QUEUE */
  size_t max_body;
  long long clock_offset_s;
  int max_custom_key_stores;
  int db_busy_timeout_ms;
  int max_keys;
  int hsm_timeout_ms;   /* --hsm-timeout */
  int enable_admin;
  log_level level;
  const char *hsm_pool; /* --hsm-pool FILE */
  const char *xks_ca_bundle;                          /* --xks-ca-bundle FILE */
  const char *xks_connect_to[KMS_XKS_CONNECT_TO_MAX]; /* --xks-connect-to, repeatable */
  size_t xks_connect_to_count;
  int xks_timeout_ms;                                 /* --xks-timeout */
  unsigned xks_connections;                           /* --xks-connections; 0: default */
  int xks_health_interval_ms;                         /* --xks-health-interval */
  int key_cache;              /* --key-cache; 0: default, -1: off */
  int hsm_key_cache;          /* --hsm-key-cache; 0: default, -1: off */
  size_t material_cache;      /* --material-cache; 0: default */
  size_t policy_cache;        /* --policy-cache; 0: default */
  const char *vpc_endpoint_services;                  /* --vpc-endpoint-services FILE */
} kmsd_options;

static void usage(FILE *f) {
  fprintf(f,
          "Usage: kmsd [OPTIONS]\n"
          "A KMS-compatible key management service (AWS KMS JSON 1.1 API, SigV4).\n"
          "\n"
          "  --listen HOST:PORT          address to serve on (default " DEFAULT_LISTEN ");\n"
          "                              IPv6 as [ADDR]:PORT; port 0 picks a free port\n"
          "  --data-dir DIR              keys, store and default credentials (default " DEFAULT_DATA_DIR
          ");\n"
          "                              created if missing\n"
          "  --store URL                 where the state lives: sqlite (default: DIR/kmsd.db) or\n"
          "                              postgresql://USER@HOST:PORT/DB, which several nodes\n"
          "                              may share (docs/multi-node.md; give the password in\n"
          "                              PGPASSWORD or a pgpass file, not in the URL)\n"
          "  --credentials FILE          principals file (default DIR/credentials.json; written\n"
          "                              with AWS's documented example root key pair, marked\n"
          "                              admin, if missing)\n"
          "  --insecure-any-credentials  accept any access key without checking signatures;\n"
          "                              every caller is the root of account 111122223333.\n"
          "                              Refused unless listening on a loopback address\n"
          "  --tls-cert FILE             serve HTTPS with this PEM certificate (needs --tls-key)\n"
          "  --tls-key FILE              PEM private key of --tls-cert\n"
          "  --threads N                 event threads of the HTTP server, 1-%d (default: one\n"
          "                              per CPU); each serves many connections\n"
          "  --wait-threads N            threads that run requests which wait on an external\n"
          "                              key store proxy, so the event threads never do,\n"
          "                              1-%d (default %d; started as needed)\n"
          "  --wait-queue N              such requests that may wait for one of them, 1-%d\n"
          "                              (default %d); past it ThrottlingException\n"
          "  --max-body BYTES            largest request body, %d-%zu (default %zu);\n"
          "                              larger ones get 413 RequestEntityTooLargeException\n"
          "  --max-custom-key-stores N   custom key stores per account and Region (default 10,\n"
          "                              AWS's quota); past it LimitExceededException\n"
          "  --max-keys N                KMS keys per account and Region, any state, 1-%d\n"
          "                              (default %d, AWS's quota); past it CreateKey answers\n"
          "                              LimitExceededException\n"
          "  --db-busy-timeout MS        how long a request waits for a database another process\n"
          "                              has locked, %d-%d (default %d); past it\n"
          "                              KMSInternalException\n"
          "  --hsm-timeout MS            how long a request waits for a free session of an HSM\n"
          "                              whose sessions are all busy, %d-%d (default %d); past\n"
          "                              it DependencyTimeoutException.  A call the HSM never\n"
          "                              answers is not bounded (docs/pkcs11.md)\n"
          "  --clock-offset SECONDS      start the service clock this far from the system clock\n"
          "                              (may be negative)\n"
          "  --enable-admin-api          serve KmsdAdmin.AdvanceClock / GetClock / Sweep (for\n"
          "                              tests), only to principals the credentials file marks\n"
          "                              \"admin\": true (so to none with\n"
          "                              --insecure-any-credentials)\n"
          "  --hsm-pool FILE             operator-provisioned PKCS#11 tokens for CreateHsm (a JSON\n"
          "                              array of {module, tokenLabel, soPin, availabilityZone?};\n"
          "                              mode 0600). With it kmsd makes no SoftHSM2 tokens of its\n"
          "                              own and SoftHSM2 reads the caller's SOFTHSM2_CONF\n"
          "  --xks-ca-bundle FILE        PEM file of the CAs trusted for external key store\n"
          "                              proxies (default: the system's CA store)\n"
          "  --xks-connect-to HOST:PORT:TO_HOST:TO_PORT\n"
          "                              send connections for HOST:PORT to TO_HOST:TO_PORT\n"
          "                              (curl's connect-to; the certificate must still name\n"
          "                              HOST); repeatable, at most %d\n"
          "  --xks-timeout MS            deadline of each call to an external key store proxy,\n"
          "                              %d-%d (default %d, KMS's)\n"
          "  --xks-connections N         kept connections to each external key store's proxy,\n"
          "                              which is also how many calls to it run at once and\n"
          "                              how many waiting threads its requests take, 1-%d\n"
          "                              (default %d)\n"
          "  --xks-health-interval MS    how often a CONNECTED external key store is sent\n"
          "                              GetHealthStatus, %d-%d (default %d)\n"
          "  --vpc-endpoint-services FILE  the VPC endpoint services external key stores with\n"
          "                              VPC_ENDPOINT_SERVICE connectivity may name\n"
          "                              (docs/xks-vpc-endpoint-services.md); default none\n"
          "  --key-cache N               resolved keys kept for Encrypt, Decrypt, ReEncrypt and\n"
          "                              GenerateDataKey*, each served only until the next\n"
          "                              commit to the database by anyone, 0-%d (default\n"
          "                              %d; 0: none)\n"
          "  --material-cache N          unwrapped key materials kept in wiped memory, 1-%d\n"
          "                              (default %d)\n"
          "  --policy-cache N            parsed key policies kept, 1-%d (default %d)\n"
          "  --hsm-key-cache N           working copies of keys kept per HSM of a CloudHSM key\n"
          "                              store, each found again after 5 s, 0-%d (default\n"
          "                              %d; 0: none)\n"
          "  --log-level LEVEL           debug, info, warn or error (default info)\n"
          "  --version                   print the version and exit\n"
          "  -h, --help                  print this help and exit\n"
          "\n"
          "A flag's value may also be given as --flag=VALUE (a value that starts with --\n"
          "must be).  A bad flag or value exits 2.\n"
          "\n"
          "Logs go to stderr, one line per request.  SIGINT/SIGTERM stop the server after\n"
          "in-flight requests finish.\n",
          MAX_THREADS, HTTP_WAIT_THREADS_MAX, HTTP_DEFAULT_WAIT_THREADS, HTTP_WAIT_QUEUE_MAX,
          HTTP_DEFAULT_WAIT_QUEUE, MIN_MAX_BODY, MAX_MAX_BODY, HTTP_DEFAULT_MAX_BODY, MAX_MAX_KEYS,
          KMS_DEFAULT_MAX_KEYS,
          KMS_DB_BUSY_TIMEOUT_MIN_MS, KMS_DB_BUSY_TIMEOUT_MAX_MS,
          KMS_DB_BUSY_TIMEOUT_DEFAULT_MS, KMS_HSM_TIMEOUT_MIN_MS, KMS_HSM_TIMEOUT_MAX_MS,
          KMS_HSM_TIMEOUT_DEFAULT_MS, KMS_XKS_CONNECT_TO_MAX, KMS_XKS_TIMEOUT_MIN_MS,
          KMS_XKS_TIMEOUT_MAX_MS, KMS_XKS_TIMEOUT_DEFAULT_MS, KMS_XKS_CONNECTIONS_MAX,
          KMS_XKS_CONNECTIONS_DEFAULT, KMS_XKS_HEALTH_INTERVAL_MIN_MS,
          KMS_XKS_HEALTH_INTERVAL_MAX_MS, KMS_XKS_HEALTH_INTERVAL_DEFAULT_MS,
          KMS_CACHE_ENTRIES_MAX, KMS_KEY_CACHE_DEFAULT, KMS_CACHE_ENTRIES_MAX,
          KMS_MATERIAL_CACHE_DEFAULT, KMS_CACHE_ENTRIES_MAX, KMS_POLICY_CACHE_DEFAULT,
          KMS_CACHE_ENTRIES_MAX, KMS_HSM_KEY_CACHE_DEFAULT);
}

/* HOST:PORT:TO_HOST:TO_PORT, as curl's connect-to (a field may be empty; an
 * IPv6 TO_HOST in brackets).  The XKS client checks it again when used. */
static int connect_to_ok(const char *v) {
  size_t n = strlen(v), colons = 0;
  int in_brackets = 0;
  if (n < 3 || n >= 300) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)v[i];
    if (ch == '[') in_brackets = 1;
    else if (ch == ']') in_brackets = 0;
    else if (ch == ':' && !in_brackets) colons++;
    else if (ch <= 0x20 || ch >= 0x7f) return 0;
  }
  return colons == 3;
}

/* Report a bad command line and return the exit status for it (2). */
#define bad_flag(...) cli_usage_error(PROGRAM, __VA_ARGS__)

/* Strictly parse a whole decimal integer in [min, max]. */
static int parse_ll(const char *s, long long min, long long max, long long *out) {
  char *end = NULL;
  if (!s || !*s) return -1;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || v < min || v > max) return -1;
  *out = v;
  return 0;
}

enum {
  OPT_LISTEN = 256,
  OPT_DATA_DIR,
  OPT_CREDENTIALS,
  OPT_INSECURE,
  OPT_TLS_CERT,
  OPT_TLS_KEY,
  OPT_THREADS,
  OPT_MAX_BODY,
  OPT_CLOCK_OFFSET,
  OPT_WAIT_THREADS,
  OPT_WAIT_QUEUE,
  OPT_MAX_CUSTOM_KEY_STORES,
  OPT_DB_BUSY_TIMEOUT,
  OPT_STORE,
  OPT_MAX_KEYS,
  OPT_HSM_TIMEOUT,
  OPT_ADMIN,
  OPT_LOG_LEVEL,
  OPT_HSM_POOL,
  OPT_XKS_CA_BUNDLE,
  OPT_XKS_CONNECT_TO,
  OPT_XKS_TIMEOUT,
  OPT_XKS_CONNECTIONS,
  OPT_XKS_HEALTH_INTERVAL,
  OPT_VPC_ENDPOINT_SERVICES,
  OPT_KEY_CACHE,
  OPT_HSM_KEY_CACHE,
  OPT_MATERIAL_CACHE,
  OPT_POLICY_CACHE,
  OPT_VERSION,
  OPT_HELP,
};

static const cli_flag FLAGS[] = {
    {"--listen", NULL, OPT_LISTEN, 1},
    {"--data-dir", NULL, OPT_DATA_DIR, 1},
    {"--credentials", NULL, OPT_CREDENTIALS, 1},
    {"--insecure-any-credentials", NULL, OPT_INSECURE, 0},
    {"--tls-cert", NULL, OPT_TLS_CERT, 1},
    {"--tls-key", NULL, OPT_TLS_KEY, 1},
    {"--threads", NULL, OPT_THREADS, 1},
    {"--wait-threads", NULL, OPT_WAIT_THREADS, 1},
    {"--wait-queue", NULL, OPT_WAIT_QUEUE, 1},
    {"--max-body", NULL, OPT_MAX_BODY, 1},
    {"--clock-offset", NULL, OPT_CLOCK_OFFSET, 1},
    {"--max-custom-key-stores", NULL, OPT_MAX_CUSTOM_KEY_STORES, 1},
    {"--db-busy-timeout", NULL, OPT_DB_BUSY_TIMEOUT, 1},
    {"--store", NULL, OPT_STORE, 1},
    {"--max-keys", NULL, OPT_MAX_KEYS, 1},
    {"--hsm-timeout", NULL, OPT_HSM_TIMEOUT, 1},
    {"--enable-admin-api", NULL, OPT_ADMIN, 0},
    {"--log-level", NULL, OPT_LOG_LEVEL, 1},
    {"--hsm-pool", NULL, OPT_HSM_POOL, 1},
    {"--xks-ca-bundle", NULL, OPT_XKS_CA_BUNDLE, 1},
    {"--xks-connect-to", NULL, OPT_XKS_CONNECT_TO, 1},
    {"--xks-timeout", NULL, OPT_XKS_TIMEOUT, 1},
    {"--xks-connections", NULL, OPT_XKS_CONNECTIONS, 1},
    {"--xks-health-interval", NULL, OPT_XKS_HEALTH_INTERVAL, 1},
    {"--vpc-endpoint-services", NULL, OPT_VPC_ENDPOINT_SERVICES, 1},
    {"--key-cache", NULL, OPT_KEY_CACHE, 1},
    {"--hsm-key-cache", NULL, OPT_HSM_KEY_CACHE, 1},
    {"--material-cache", NULL, OPT_MATERIAL_CACHE, 1},
    {"--policy-cache", NULL, OPT_POLICY_CACHE, 1},
    {"--version", NULL, OPT_VERSION, 0},
    {"--help", "-h", OPT_HELP, 0},
};

/* Returns -1 to go on, or the exit status. */
static int parse_flags(int argc, char **argv, kmsd_options *o) {
  cli_parser parser;
  cli_item item;
  cli_item_kind kind;
  long long v;
  memset(o, 0, sizeof *o);
  o->listen = DEFAULT_LISTEN;
  o->data_dir = DEFAULT_DATA_DIR;
  o->max_body = HTTP_DEFAULT_MAX_BODY;
  o->level = LOG_INFO;

  cli_parser_init(&parser, argc, argv, FLAGS, sizeof FLAGS / sizeof *FLAGS);
  while ((kind = cli_next(&parser, &item)) != CLI_END) {
    if (kind == CLI_ERROR) return bad_flag("%s", item.error);
    if (kind == CLI_WORD) return bad_flag("unexpected argument '%.64s'", item.value);
    const char *value = item.value;
    switch (item.flag->id) {
    case OPT_LISTEN: o->listen = value; break;
    case OPT_DATA_DIR:
      if (!*value || strlen(value) > PATH_MAX_LEN)
        return bad_flag("%s: bad directory '%.64s'", "--data-dir", value);
      o->data_dir = value;
      break;
    case OPT_STORE:
      if (strcmp(value, "sqlite") == 0) {
        o->store = NULL;
      } else if (store_pg_is_url(value) && strlen(value) <= PATH_MAX_LEN) {
        o->store = value;
      } else {
        char shown[128];
        store_pg_redact(value, shown, sizeof shown);
        return bad_flag("%s must be sqlite or a postgresql:// URL, not '%s'", "--store", shown);
      }
      break;
    case OPT_CREDENTIALS:
      if (!*value || strlen(value) > PATH_MAX_LEN)
        return bad_flag("%s: bad file name '%.64s'", "--credentials", value);
      o->credentials = value;
      break;
    case OPT_INSECURE: o->insecure_any = 1; break;
    case OPT_TLS_CERT: o->tls_cert = value; break;
    case OPT_TLS_KEY: o->tls_key = value; break;
    case OPT_THREADS:
      if (parse_ll(value, 1, MAX_THREADS, &v) != 0)
        return bad_flag("%s must be a whole number from 1 to 1024, not '%.64s'", "--threads", value);
      o->threads = (unsigned)v;
      break;
    case OPT_WAIT_THREADS:
      if (parse_ll(value, 1, HTTP_WAIT_THREADS_MAX, &v) != 0)
        return bad_flag("%s must be a whole number from 1 to %d, not '%.64s'", "--wait-threads",
                        HTTP_WAIT_THREADS_MAX, value);
      o->wait_threads = (unsigned)v;
      break;
    case OPT_WAIT_QUEUE:
      if (parse_ll(value, 1, HTTP_WAIT_QUEUE_MAX, &v) != 0)
        return bad_flag("%s must be a whole number from 1 to %d, not '%.64s'", "--wait-queue",
                        HTTP_WAIT_QUEUE_MAX, value);
      o->wait_queue = (unsigned)v;
      break;
    case OPT_MAX_BODY:
      if (parse_ll(value, MIN_MAX_BODY, (long long)MAX_MAX_BODY, &v) != 0)
        return bad_flag("%s must be a byte count from 1024 to 67108864, not '%.64s'", "--max-body",
                        value);
      o->max_body = (size_t)v;
      break;
    case OPT_MAX_CUSTOM_KEY_STORES:
      if (parse_ll(value, 1, 10000, &v) != 0)
        return bad_flag("%s must be a whole number from 1 to 10000, not '%.64s'",
                        "--max-custom-key-stores", value);
      o->max_custom_key_stores = (int)v;
      break;
    case OPT_MAX_KEYS:
      if (parse_ll(value, 1, MAX_MAX_KEYS, &v) != 0)
        return bad_flag("%s must be a whole number from 1 to %d, not '%.64s'", "--max-keys",
                        MAX_MAX_KEYS, value);
      o->max_keys = (int)v;
      break;
    case OPT_DB_BUSY_TIMEOUT:
      if (parse_ll(value, KMS_DB_BUSY_TIMEOUT_MIN_MS, KMS_DB_BUSY_TIMEOUT_MAX_MS, &v) != 0)
        return bad_flag("%s must be a whole number of milliseconds from %d to %d, not '%.64s'",
                        "--db-busy-timeout", KMS_DB_BUSY_TIMEOUT_MIN_MS,
                        KMS_DB_BUSY_TIMEOUT_MAX_MS, value);
      o->db_busy_timeout_ms = (int)v;
      break;
    case OPT_HSM_TIMEOUT:
      if (parse_ll(value, KMS_HSM_TIMEOUT_MIN_MS, KMS_HSM_TIMEOUT_MAX_MS, &v) != 0)
        return bad_flag("%s must be a whole number of milliseconds from %d to %d, not '%.64s'",
                        "--hsm-timeout", KMS_HSM_TIMEOUT_MIN_MS, KMS_HSM_TIMEOUT_MAX_MS, value);
      o->hsm_timeout_ms = (int)v;
      break;
    case OPT_CLOCK_OFFSET:
      if (parse_ll(value, -MAX_CLOCK_OFFSET_S, MAX_CLOCK_OFFSET_S, &v) != 0)
        return bad_flag("%s must be a whole number of seconds within 100 years, not '%.64s'",
                        "--clock-offset", value);
      o->clock_offset_s = v;
      break;
    case OPT_ADMIN: o->enable_admin = 1; break;
    case OPT_LOG_LEVEL: {
      int lv = log_level_parse(value);
      if (lv < 0)
        return bad_flag("%s must be debug, info, warn or error, not '%.64s'", "--log-level", value);
      o->level = (log_level)lv;
      break;
    }
    case OPT_HSM_POOL:
      if (!*value || strlen(value) > PATH_MAX_LEN)
        return bad_flag("%s: bad file name '%.64s'", "--hsm-pool", value);
      o->hsm_pool = value;
      break;
    case OPT_XKS_CA_BUNDLE:
      if (!*value || strlen(value) > PATH_MAX_LEN)
        return bad_flag("%s: bad file name '%.64s'", "--xks-ca-bundle", value);
      if (access(value, R_OK) != 0)
        return bad_flag("%s: cannot read '%.64s': %s", "--xks-ca-bundle", value, strerror(errno));
      o->xks_ca_bundle = value;
      break;
    case OPT_XKS_CONNECT_TO:
      if (!connect_to_ok(value))
        return bad_flag("%s must be HOST:PORT:TO_HOST:TO_PORT, not '%.64s'", "--xks-connect-to",
                        value);
      if (o->xks_connect_to_count >= KMS_XKS_CONNECT_TO_MAX)
        return bad_flag("%s may be given at most %d times", "--xks-connect-to",
                        KMS_XKS_CONNECT_TO_MAX);
      o->xks_connect_to[o->xks_connect_to_count++] = value;
      break;
    case OPT_XKS_TIMEOUT:
      if (parse_ll(value, KMS_XKS_TIMEOUT_MIN_MS, KMS_XKS_TIMEOUT_MAX_MS, &v) != 0)
        return bad_flag("%s must be a whole number of milliseconds from %d to %d, not '%.64s'",
                        "--xks-timeout", KMS_XKS_TIMEOUT_MIN_MS, KMS_XKS_TIMEOUT_MAX_MS, value);
      o->xks_timeout_ms = (int)v;
      break;
    case OPT_XKS_CONNECTIONS:
      if (parse_ll(value, 1, KMS_XKS_CONNECTIONS_MAX, &v) != 0)
        return bad_flag("%s must be a whole number from 1 to %d, not '%.64s'", "--xks-connections",
                        KMS_XKS_CONNECTIONS_MAX, value);
      o->xks_connections = (unsigned)v;
      break;
    case OPT_XKS_HEALTH_INTERVAL:
      if (parse_ll(value, KMS_XKS_HEALTH_INTERVAL_MIN_MS, KMS_XKS_HEALTH_INTERVAL_MAX_MS, &v) != 0)
        return bad_flag("%s must be a whole number of milliseconds from %d to %d, not '%.64s'",
                        "--xks-health-interval", KMS_XKS_HEALTH_INTERVAL_MIN_MS,
                        KMS_XKS_HEALTH_INTERVAL_MAX_MS, value);
      o->xks_health_interval_ms = (int)v;
      break;
    case OPT_VPC_ENDPOINT_SERVICES:
      if (!*value || strlen(value) > PATH_MAX_LEN)
        return bad_flag("%s: bad file name '%.64s'", "--vpc-endpoint-services", value);
      o->vpc_endpoint_services = value;
      break;
    case OPT_KEY_CACHE:
    case OPT_HSM_KEY_CACHE: {
      const char *name = item.flag->id == OPT_KEY_CACHE ? "--key-cache" : "--hsm-key-cache";
      if (parse_ll(value, 0, KMS_CACHE_ENTRIES_MAX, &v) != 0)
        return bad_flag("%s must be a whole number from 0 to %d, not '%.64s'", name,
                        KMS_CACHE_ENTRIES_MAX, value);
      if (item.flag->id == OPT_KEY_CACHE)
        o->key_cache = v ? (int)v : -1;
      else
        o->hsm_key_cache = v ? (int)v : -1;
      break;
    }
    case OPT_MATERIAL_CACHE:
    case OPT_POLICY_CACHE: {
      const char *name = item.flag->id == OPT_MATERIAL_CACHE ? "--material-cache" : "--policy-cache";
      if (parse_ll(value, 1, KMS_CACHE_ENTRIES_MAX, &v) != 0)
        return bad_flag("%s must be a whole number from 1 to %d, not '%.64s'", name,
                        KMS_CACHE_ENTRIES_MAX, value);
      if (item.flag->id == OPT_MATERIAL_CACHE)
        o->material_cache = (size_t)v;
      else
        o->policy_cache = (size_t)v;
      break;
    }
    case OPT_VERSION: printf(PROGRAM " " KMSD_VERSION "\n"); return 0;
    case OPT_HELP: usage(stdout); return 0;
    }
  }

  kerr err;
  kerr_clear(&err);
  if (http_parse_listen(o->listen, o->host, &o->port, &err) != KERR_OK)
    return bad_flag("%s: %s", "--listen", err.msg);
  if ((o->tls_cert == NULL) != (o->tls_key == NULL))
    return bad_flag("--tls-cert and --tls-key go together");
  if (o->insecure_any && !http_host_is_loopback(o->host))
    return bad_flag("%s is refused off loopback (listening on %s); it would let anyone in",
                    "--insecure-any-credentials", o->host);
  return -1;
}

/* The domain's view of the VPC endpoint service registry
 * (kms_vpc_judge_fn over api/vpc_registry.h). */
static void judge_vpc(void *arg, const char *name, const char *region, const char *owner,
                      const char *endpoint_host, kms_vpc_answer *out) {
  const vpc_registry *r = arg;
  vpc_expectation want = {.region = region, .owner = owner, .endpoint_host = endpoint_host};
  const vpc_service *svc = NULL;
  unsigned faults = 0;
  vpcr_verdict v = vpc_registry_judge(r, name, &want, &faults, &svc);
  memset(out, 0, sizeof *out);
  out->verdict = v == VPCR_OK              ? KMS_VPC_OK
                 : v == VPCR_NOT_FOUND     ? KMS_VPC_NOT_FOUND
                                           : KMS_VPC_INVALID_CONFIGURATION;
  if (v != VPCR_OK) {
    vpc_faults_describe(v == VPCR_NOT_FOUND ? faults & VPCR_FAULTS_NOT_FOUND : faults, out->why,
                        sizeof out->why);
  } else if (svc) {
    snprintf(out->forward_host, sizeof out->forward_host, "%s", svc->forward_host);
    out->forward_port = svc->forward_port;
  }
}

/* mkdir -p with mode 0700 for the directories we create. */
static kerr_code make_dirs(const char *path, kerr *err) {
  char buf[PATH_MAX_LEN + 1];
  size_t n = strlen(path);
  if (n == 0 || n > PATH_MAX_LEN) return kerr_set(err, KERR_VALIDATION, "bad data directory");
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    char saved = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
      return kerr_set(err, KERR_VALIDATION, "cannot create %s: %s", buf, strerror(errno));
    buf[i] = saved;
  }
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
    return kerr_set(err, KERR_VALIDATION, "%s is not a directory", path);
  return KERR_OK;
}

/* jansson holds request and reply JSON, which can carry plaintexts and data
 * keys: give it a free that wipes every block first.  The blocks stay plain
 * malloc blocks (no size header), so code that frees jansson's strings with
 * free() keeps working. */
static void *json_plain_malloc(size_t n) { return malloc(n); }

static void json_wiping_free(void *p) {
  if (!p) return;
  secure_wipe(p, malloc_usable_size(p));
  free(p);
}

static int run(const kmsd_options *o) {
  kerr err;
  kerr_clear(&err);
  kerr_code rc;
  int status = 1;
  creds_store *creds = NULL;
  vpc_registry *vpc = NULL;
  kms_domain *domain = NULL;
  api_pipeline *pipeline = NULL;
  http_server *server = NULL;
  datadir_lock *lock = NULL;
  int listen_fd = -1;
  char *cert_pem = NULL, *key_pem = NULL;
  size_t key_pem_len = 0;
  char creds_path[PATH_MAX_LEN + 64];
  sigset_t stop_signals;

  /* Block the stop signals before any thread exists so that every thread
   * inherits the mask and only sigwait() below ever sees them. */
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
  signal(SIGPIPE, SIG_IGN);

  log_set_level(o->level);
  if (o->clock_offset_s) kclock_set_offset_ms(o->clock_offset_s * 1000);

  rc = make_dirs(o->data_dir, &err);
  if (rc) goto out;
  /* The data directory is this process's before anything in it is read or
   * written (credentials file, root key, store, tokens): a second kmsd must
   * fail here, without running recovery on the first one's store. */
  rc = datadir_lock_take(o->data_dir, &lock, &err);
  if (rc) goto out;

  if (o->insecure_any) {
    snprintf(creds_path, sizeof creds_path, "(none: --insecure-any-credentials)");
    rc = creds_any(&creds, &err);
  } else {
    if (o->credentials)
      snprintf(creds_path, sizeof creds_path, "%s", o->credentials);
    else
      snprintf(creds_path, sizeof creds_path, "%s/credentials.json", o->data_dir);
    rc = creds_load(creds_path, 1, &creds, &err);
  }
  if (rc) goto out;

  if (o->tls_cert) {
    rc = http_read_pem_file(o->tls_cert, PEM_FILE_MAX, &cert_pem, &err);
    if (rc) goto out;
    rc = http_read_pem_file(o->tls_key, PEM_FILE_MAX, &key_pem, &err);
    if (rc) goto out;
    key_pem_len = strlen(key_pem);
  }

  /* Bind before the domain opens: a port in use ends the start here, before
   * start-up recovery has changed any key store's state. */
  rc = http_listen_socket(o->host, o->port, &listen_fd, &err);
  if (rc) goto out;

  /* The HSM pool goes in before the domain opens: it decides whose SoftHSM2
   * configuration the process uses and must be there when key stores left
   * CONNECTING connect again during kms_domain_open. */
  if (o->hsm_pool) {
    hsm_pool_entry *pool = NULL;
    size_t npool = 0;
    rc = hsm_pool_file_load(o->hsm_pool, &pool, &npool, &err);
    if (!rc) rc = hsm_clusters_preset_pool(pool, npool, &err);
    hsm_pool_entries_free(pool, npool);
    if (rc) goto out;
    log_msg(LOG_INFO, NULL, "HSM pool: %zu token(s) from %s", npool, o->hsm_pool);
  } else if (o->store && store_pg_is_url(o->store)) {
    /* Several nodes may share this database, and the SoftHSM2 tokens this
     * node would make live in its data directory, out of the others' reach. */
    log_msg(LOG_INFO, NULL, "HSM clusters: HSMs this node creates are SoftHSM2 tokens in its data "
            "directory, which other nodes on the database cannot use; give every node one "
            "--hsm-pool for HSMs they all reach (docs/multi-node.md)");
  }

  kms_domain_config dcfg;
  memset(&dcfg, 0, sizeof dcfg);
  dcfg.data_dir = o->data_dir;
  dcfg.store_url = o->store;
  dcfg.max_custom_key_stores = o->max_custom_key_stores;
  dcfg.db_busy_timeout_ms = o->db_busy_timeout_ms;
  dcfg.max_keys = o->max_keys;
  dcfg.hsm_timeout_ms = o->hsm_timeout_ms;
  dcfg.xks_ca_bundle = o->xks_ca_bundle;
  dcfg.xks_connect_to = o->xks_connect_to;
  dcfg.xks_connect_to_count = o->xks_connect_to_count;
  dcfg.xks_timeout_ms = o->xks_timeout_ms;
  dcfg.xks_connections = o->xks_connections;
  dcfg.xks_health_interval_ms = o->xks_health_interval_ms;
  dcfg.key_cache_entries = o->key_cache;
  dcfg.hsm_key_cache_entries = o->hsm_key_cache;
  dcfg.material_cache_entries = o->material_cache;
  dcfg.policy_cache_entries = o->policy_cache;
  if (o->vpc_endpoint_services) {
    rc = vpc_registry_load(o->vpc_endpoint_services, &vpc, &err);
    if (rc) goto out;
    log_msg(LOG_INFO, NULL, "VPC endpoint services: %zu from %s", vpc->count,
            o->vpc_endpoint_services);
  }
  dcfg.vpc_judge = judge_vpc;
  dcfg.vpc_arg = vpc;
  dcfg.data_dir_lock = lock;
  rc = kms_domain_open(&dcfg, &domain, &err);
  if (rc) goto out;

  api_pipeline_config pcfg;
  memset(&pcfg, 0, sizeof pcfg);
  pcfg.domain = domain;
  pcfg.creds = creds;
  pcfg.enable_admin_api = o->enable_admin;
  pcfg.find_handler = api_kms_handler_find;
  pcfg.loopback_only = http_host_is_loopback(o->host);
  rc = api_pipeline_new(&pcfg, &pipeline, &err);
  if (rc) goto out;

  http_server_config scfg;
  memset(&scfg, 0, sizeof scfg);
  scfg.host = o->host;
  scfg.port = o->port;
  unsigned threads = o->threads;
  if (threads == 0) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    threads = ncpu > 0 ? (unsigned)ncpu : 1;
  }
  scfg.threads = threads;
  scfg.wait_threads = o->wait_threads ? o->wait_threads : HTTP_DEFAULT_WAIT_THREADS;
  scfg.wait_queue = o->wait_queue ? o->wait_queue : HTTP_DEFAULT_WAIT_QUEUE;
  /* A store's requests take no more waiting threads than it takes calls. */
  scfg.wait_lane_cap = o->xks_connections ? o->xks_connections : KMS_XKS_CONNECTIONS_DEFAULT;
  scfg.max_body = o->max_body;
  scfg.tls_cert_pem = cert_pem;
  scfg.tls_key_pem = key_pem;
  scfg.handler = api_pipeline_handle;
  scfg.handler_ctx = pipeline;
  scfg.use_listen_fd = 1;
  scfg.listen_fd = listen_fd;
  rc = http_server_start(&scfg, &server, &err);
  close(listen_fd);
  listen_fd = -1;
  if (key_pem) secure_free(key_pem, key_pem_len + 1);
  key_pem = NULL;
  if (rc) goto out;

  const char *scheme = o->tls_cert ? "https" : "http";
  int v6 = strchr(o->host, ':') != NULL;
  char where[HTTP_HOST_MAX + 16];
  snprintf(where, sizeof where, v6 ? "[%s]:%u" : "%s:%u", o->host, (unsigned)http_server_port(server));
  if (o->insecure_any)
    log_msg(LOG_WARN, NULL,
            "!!! INSECURE: --insecure-any-credentials: signatures are NOT checked; any caller is the "
            "root of account 111122223333. For local testing only. !!!");
  if (o->enable_admin)
    log_msg(LOG_WARN, NULL, "admin API enabled: admin principals may move the service clock");
  if (o->clock_offset_s)
    log_msg(LOG_INFO, NULL, "service clock offset %lld s", o->clock_offset_s);
  char store_shown[256] = "sqlite";
  if (o->store) store_pg_redact(o->store, store_shown, sizeof store_shown);
  log_msg(LOG_INFO, NULL,
          "kmsd " KMSD_VERSION " listening on %s://%s data-dir=%s store=%s credentials=%s "
          "threads=%u wait-threads=%u wait-queue=%u max-body=%zu",
          scheme, where, o->data_dir, store_shown, creds_path, threads, scfg.wait_threads,
          scfg.wait_queue, o->max_body);
  fprintf(stderr, "kmsd listening on %s://%s\n", scheme, where);

  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  log_msg(LOG_INFO, NULL, "received %s: finishing in-flight requests and stopping",
          sig == SIGINT ? "SIGINT" : "SIGTERM");
  status = 0;

out:
  if (rc) fprintf(stderr, "kmsd: %s\n", err.msg);
  http_server_stop(server, SHUTDOWN_GRACE_MS);
  api_pipeline_free(pipeline);
  kms_domain_close(domain);
  datadir_lock_release(lock); /* only once the store is closed */
  if (listen_fd >= 0) close(listen_fd);
  creds_free(creds);
  vpc_registry_free(vpc);
  free(cert_pem);
  if (key_pem) secure_free(key_pem, key_pem_len + 1);
  if (status == 0) log_msg(LOG_INFO, NULL, "kmsd stopped");
  return status;
}

int main(int argc, char **argv) {
  json_set_alloc_funcs(json_plain_malloc, json_wiping_free);
  kmsd_options o;
  int rc = parse_flags(argc, argv, &o);
  if (rc >= 0) return rc;
  return run(&o);
}
