/* xksp_config.h - what xks-proxy serves, read from a file or from flags.
 *
 * One proxy listens on one address and serves up to XKSP_STORES_MAX
 * logical key stores, each selected by its URI path prefix (the
 * XksProxyUriPath an operator gives to KMS).  Each key store has its own
 * SigV4 credentials (two at once, for rotation), its own PKCS#11 tokens,
 * keys, authorization rules and request quota.  docs/xks-proxy.md documents
 * every setting.
 *
 * The file is YAML (libyaml) or JSON (a file whose first non-blank
 * character is '{').  Both become the same tree and pass the same checks:
 * unknown keys are refused (a typo must stop the proxy, not open it), every
 * value is typed and bounded, and a failure names the file, the key path
 * ("key_stores[0].tokens[1].pin_file") and the reason, never a PIN or a
 * secret.  Secrets (PINs, SigV4 secret keys) are held in wiped memory and
 * may come from files (`pin_file`, `secret_access_key_file`) so the
 * configuration itself can be readable. */
#ifndef KMSD_XKSPROXY_XKSP_CONFIG_H
#define KMSD_XKSPROXY_XKSP_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "core/kerr.h"
#include "xks/xks_msg.h"

#define XKSP_STORES_MAX 64
#define XKSP_CREDENTIALS_MAX 2       /* per key store: the current and the next */
#define XKSP_TOKENS_MAX 10           /* per key store = ekmFleetDetails entries */
#define XKSP_KEY_LIST_MAX 4096       /* entries of `keys` / `disabled_keys` */
#define XKSP_RULES_MAX 256           /* authorization rules per key store */
#define XKSP_PATTERNS_MAX 64         /* values of one rule condition */
#define XKSP_CLIENT_SUBJECTS_MAX 16
#define XKSP_NAME_MAX 64             /* key store name */
#define XKSP_REGION_MAX 32
/* Credential shapes: what KMS's XksProxyAuthenticationCredential accepts
 * (AccessKeyId 20-30 of A-Z and 2-7, RawSecretAccessKey 43-64 of A-Z a-z
 * 0-9 + / =).  A credential outside them could never be given to KMS, so a
 * proxy configured with one is refused at start. */
#define XKSP_AKID_MIN 20
#define XKSP_AKID_MAX 30
#define XKSP_SECRET_MIN 43
#define XKSP_SECRET_MAX 64
#define XKSP_PATH_MAX 4096
#define XKSP_CONFIG_FILE_MAX ((size_t)1024 * 1024)
#define XKSP_DEFAULT_LISTEN "127.0.0.1:8443"
#define XKSP_DEFAULT_PING_PATH "/ping"
#define XKSP_DEFAULT_POOL 8
#define XKSP_DEFAULT_HEALTH_INTERVAL_S 10   /* the spec allows answers up to 60 s old */
#define XKSP_DEFAULT_DEGRADED_MS 100

/* Where the 12-byte GCM IVs come from. */
typedef enum xksp_iv_source {
  XKSP_IV_AUTO = 0,   /* the token's RNG when it reports one (CKF_RNG), else the DRBG */
  XKSP_IV_HSM,        /* always C_GenerateRandom on the token */
  XKSP_IV_DRBG,       /* always the process DRBG (OpenSSL, seeded from the OS) */
} xksp_iv_source;

typedef struct xksp_credential {
  char access_key_id[XKSP_AKID_MAX + 1];
  char *secret_access_key;           /* secure_alloc'd, NUL-terminated */
} xksp_credential;

/* One PKCS#11 token of a key store: one "HSM" of the health report. */
typedef struct xksp_token_config {
  char label[33];                    /* CKA_LABEL of the token, 1..32 printable bytes */
  char *pin;                         /* secure_alloc'd, NUL-terminated */
  char *module;                      /* PKCS#11 module path; NULL: the store's */
} xksp_token_config;

/* One condition list of a rule: shell-style patterns ('*' any run of
 * characters, '?' one character, nothing else special), matched against
 * the whole value.  count 0: the condition is absent (matches anything). */
typedef struct xksp_patterns {
  char **items;
  size_t count;
} xksp_patterns;

typedef enum xksp_effect { XKSP_ALLOW = 0, XKSP_DENY = 1 } xksp_effect;

/* An authorization rule on requestMetadata.  A rule matches a request when
 * every condition present matches (a condition matches when one of its
 * patterns does; a request without the field matched by a present
 * condition does not match it).  See xksp_authz.h for the decision. */
typedef struct xksp_rule {
  char *sid;                         /* name for logs; "rule N" when not given */
  xksp_effect effect;
  xksp_patterns principals;          /* awsPrincipalArn */
  xksp_patterns operations;          /* kmsOperation */
  xksp_patterns key_arns;            /* kmsKeyArn */
  xksp_patterns via_services;        /* kmsViaService */
  xksp_patterns external_key_ids;    /* the externalKeyId of the URI */
} xksp_rule;

typedef struct xksp_store_config {
  char name[XKSP_NAME_MAX + 1];      /* for logs; defaults to the prefix */
  char uri_prefix[XKS_URI_PATH_MAX + 1]; /* passes xks_uri_prefix_check */
  char region[XKSP_REGION_MAX + 1];  /* the SigV4 scope region KMS signs with */
  xksp_credential credentials[XKSP_CREDENTIALS_MAX];
  size_t credential_count;           /* 1..2 */
  char *pkcs11_module;               /* default module of the tokens */
  xksp_token_config tokens[XKSP_TOKENS_MAX];
  size_t token_count;                /* 1..10 */
  unsigned session_pool;             /* sessions per token, 1..P11_POOL_MAX */
  xksp_iv_source iv_source;
  char *health_key;                  /* label of a test key on every token, or NULL */
  unsigned health_interval_s;        /* 1..59 */
  unsigned degraded_ms;              /* a probe slower than this reports DEGRADED */
  unsigned key_refresh_ms;           /* how long a looked-up key is reused; 0: 5 s.  Not
                                      * read from the file: tests shorten it */
  char **keys;                       /* allow-list of externalKeyIds, or NULL: any */
  size_t key_count;
  char **disabled_keys;              /* keys reported DISABLED and refused */
  size_t disabled_key_count;
  double quota_rps;                  /* 0: no quota */
  double quota_burst;                /* bucket size; 0: quota_rps */
  xksp_rule *rules;
  size_t rule_count;
} xksp_store_config;

typedef struct xksp_config {
  char *source;                      /* the file read, or "command line" */
  char listen[80];                   /* "HOST:PORT" (http_parse_listen) */
  int plain_http;                    /* serve without TLS (behind a TLS-terminating balancer) */
  char *tls_cert;                    /* PEM file paths; both NULL only with plain_http */
  char *tls_key;
  char *tls_client_ca;               /* PEM file: enables mTLS */
  char *tls_client_subjects[XKSP_CLIENT_SUBJECTS_MAX]; /* DNS names a client cert may carry */
  size_t tls_client_subject_count;   /* with a client CA and none given:
                                        cks.kms.<region>.amazonaws.com of every store's region */
  char *tls_priority;                /* GnuTLS priority string; NULL: the spec's suites */
  char ping_path[XKS_URI_MAX + 1];   /* load-balancer probe (GET/HEAD -> 200) */
  unsigned threads;                  /* 0: one per CPU */
  unsigned connection_limit;         /* 0: the server's default */
  unsigned idle_timeout_s;           /* 0: the server's default */
  int log_level;                     /* log_level */
  xksp_store_config stores[XKSP_STORES_MAX];
  size_t store_count;                /* 1..XKSP_STORES_MAX */
} xksp_config;

/* Read and check the configuration file `path`.  On success *out is a new
 * configuration the caller frees with xksp_config_free.  On failure *out is
 * NULL and err (KERR_VALIDATION) says "FILE: KEY.PATH: reason". */
kerr_code xksp_config_load(const char *path, xksp_config **out, kerr *err);

/* Parse configuration text (`len` bytes, YAML or JSON) as if read from a
 * file called `name` (used in messages).  Same contract as
 * xksp_config_load; files named in the text (PIN files, secret files) are
 * read. */
kerr_code xksp_config_parse(const char *text, size_t len, const char *name, xksp_config **out,
                            kerr *err);

/* The one-store configuration the flags describe (every flag of
 * `xks-proxy --help`; see src/xks-proxy/main.c).  Strings are copied.
 * NULL pointers are flags not given.  Checked like a file (messages name
 * the flag: "--access-key-id: ..."). */
typedef struct xksp_flags {
  const char *listen, *tls_cert, *tls_key, *tls_client_ca, *tls_client_subject, *tls_priority;
  int plain_http;
  const char *uri_prefix, *region, *access_key_id, *secret_access_key;
  const char *secret_access_key_file;                 /* instead of secret_access_key */
  const char *access_key_id_2, *secret_access_key_2;  /* a second credential */
  const char *secret_access_key_2_file;
  const char *pkcs11_module, *token_label, *pin, *pin_file;
  const char *ping_path, *health_key, *log_level;
  unsigned session_pool, threads;
  double quota_rps;
} xksp_flags;

kerr_code xksp_config_from_flags(const xksp_flags *f, xksp_config **out, kerr *err);

/* Read a secret file the way the configuration does (pin_file,
 * secret_access_key_file): a regular file (a FIFO or device is refused, never
 * waited on) of at most 4096 bytes without a NUL, one trailing newline (LF or
 * CRLF) removed.  On success *out is a secure_alloc'd string the caller frees
 * with secure_free(*out, strlen(*out) + 1).  KERR_VALIDATION "WHAT: FILE:
 * reason" otherwise (never the contents); *out is then NULL. */
kerr_code xksp_read_secret_file(const char *file, const char *what, char **out, kerr *err);

/* Wipe every secret and free.  NULL allowed. */
void xksp_config_free(xksp_config *c);

/* Index of the store whose prefix is `prefix`, or -1. */
int xksp_config_find_store(const xksp_config *c, const char *prefix);

#endif
