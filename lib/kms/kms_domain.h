/* kms_domain.h - the KMS domain: keys, key material, aliases, tags, policies,
 * rotation and deletion, as the AWS KMS API defines them.
 *
 * This is the C API the protocol layer (lib/api) maps JSON onto.  It knows
 * nothing of HTTP or JSON; it calls the store (lib/store) for durable state,
 * lib/crypto for AES-GCM and lib/aws/authz.h for every authorization decision.
 *
 * Conventions shared by every operation:
 *   - The first arguments are the domain and a kms_call saying who calls,
 *     in which region (keys live per account + region) and under which
 *     request id (for logs).
 *   - Key references (`key_id` inputs) accept what the AWS model allows:
 *     a key id (UUID), a key ARN, an alias name ("alias/x") or an alias ARN.
 *     A key of another account is reachable only by key or alias ARN.
 *   - Optional inputs are NULL pointers, 0 counts or has_* flags.
 *   - Outputs are plain structs the caller provides zeroed; on KERR_OK they
 *     are filled and the caller frees them with the matching
 *     kms_*_clear() function.  On failure nothing is left allocated in them
 *     (clearing them anyway is harmless).  Secrets (plaintexts, data keys)
 *     come back in kbytes and are wiped by the clear functions.
 *   - Timestamps are int64 milliseconds since the Unix epoch, read from the
 *     movable clock (core/kclock.h).
 *   - Every operation authorizes through authz_check with "kms:<Operation>".
 *   - Errors are kerr codes with AWS-worded messages that never contain
 *     key material or plaintext.
 * All functions are safe to call from many threads at once. */
#ifndef KMSD_KMS_DOMAIN_H
#define KMSD_KMS_DOMAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aws/call.h"
#include "aws/principal.h"
#include "core/datadir_lock.h"
#include "core/ids.h"
#include "core/kerr.h"
#include "core/secmem.h"

/* Room for any key ARN or alias ARN this service produces (alias names are at
 * most 256 characters, regions at most 63). */
#define KMS_ARN_MAX 512
/* A key material id: 64 lowercase hex digits plus NUL (the model's pattern). */
#define KMS_MATERIAL_ID_LEN 65
/* A custom key store id ("cks-" + 17 hex digits) plus NUL, with room. */
#define KMS_CKS_ID_MAX 32
/* A CloudHSM cluster id (cluster-[2-7a-zA-Z]{11,16}) plus NUL, with room. */
#define KMS_CLUSTER_ID_MAX 32

typedef struct kms_domain kms_domain;

/* The range and default of kms_domain_config.db_busy_timeout_ms (the same as
 * the store's, which the domain checks at compile time). */
/* AWS's documented resource quotas kmsd enforces (the Developer Guide's
 * "Resource quotas"): keys per account and Region (kms_domain_config.max_keys
 * lowers it), aliases per key. */
#define KMS_DEFAULT_MAX_KEYS 100000
#define KMS_MAX_ALIASES_PER_KEY 50

/* The bounds of the domain's caches (kms_domain_config): resolved keys,
 * unwrapped key materials, parsed key policies, in entries. */
#define KMS_KEY_CACHE_DEFAULT 4096
#define KMS_MATERIAL_CACHE_DEFAULT 1024
#define KMS_POLICY_CACHE_DEFAULT 256
#define KMS_HSM_KEY_CACHE_DEFAULT 1024 /* per HSM: working copies of keys */
#define KMS_CACHE_ENTRIES_MAX 1048576

#define KMS_DB_BUSY_TIMEOUT_DEFAULT_MS 10000
#define KMS_DB_BUSY_TIMEOUT_MIN_MS 1
#define KMS_DB_BUSY_TIMEOUT_MAX_MS 600000

/* The range and default of kms_domain_config.hsm_timeout_ms (the PKCS#11
 * session pool's, lib/pkcs11/p11.h). */
#define KMS_HSM_TIMEOUT_DEFAULT_MS 10000
#define KMS_HSM_TIMEOUT_MIN_MS 1
#define KMS_HSM_TIMEOUT_MAX_MS 600000

/* External key stores (backend_xks.c): the per-call deadline of requests to
 * an XKS proxy (KMS's is 250 ms), how often a CONNECTED external key store
 * is health-checked (GetHealthStatus, as KMS does), and how many connect-to
 * overrides the operator may give. */
#define KMS_XKS_TIMEOUT_DEFAULT_MS 250
/* Kept connections to each external key store's proxy, which is also how
 * many calls to it run at once (the XKS client's pool). */
#define KMS_XKS_CONNECTIONS_DEFAULT 8
#define KMS_XKS_CONNECTIONS_MAX 64
#define KMS_XKS_TIMEOUT_MIN_MS 1
#define KMS_XKS_TIMEOUT_MAX_MS 600000
#define KMS_XKS_HEALTH_INTERVAL_DEFAULT_MS 60000
#define KMS_XKS_HEALTH_INTERVAL_MIN_MS 100
#define KMS_XKS_HEALTH_INTERVAL_MAX_MS 86400000
#define KMS_XKS_CONNECT_TO_MAX 15   /* one more is kept for a VPC endpoint service */
#define KMS_VPC_HOST_MAX 254        /* a DNS name or IP address incl. NUL */
#define KMS_VPC_WHY_MAX 256

/* What the VPC endpoint service registry (lib/api/vpc_registry.h, wired by
 * src/kmsd) says about a service an external key store names. */
typedef enum kms_vpc_verdict {
  KMS_VPC_OK = 0,
  KMS_VPC_NOT_FOUND,             /* XksProxyVpcEndpointServiceNotFoundException */
  KMS_VPC_INVALID_CONFIGURATION, /* XksProxyVpcEndpointServiceInvalidConfigurationException */
} kms_vpc_verdict;

typedef struct kms_vpc_answer {
  kms_vpc_verdict verdict;
  char forward_host[KMS_VPC_HOST_MAX]; /* where its traffic goes (KMS_VPC_OK): a DNS
                                          name, IPv4 or IPv6 without brackets */
  unsigned forward_port;
  char why[KMS_VPC_WHY_MAX];           /* why not OK, for the caller's message; names no
                                          secret */
} kms_vpc_answer;

/* Judge service `name` for an external key store of account `owner` in
 * `region` whose XksProxyUriEndpoint host is `endpoint_host`.  Must be
 * thread-safe; fills *out. */
typedef void (*kms_vpc_judge_fn)(void *arg, const char *name, const char *region,
                                 const char *owner, const char *endpoint_host,
                                 kms_vpc_answer *out);

typedef struct kms_domain_config {
  const char *data_dir;          /* required; created (0700) if missing */
  const char *store_url;         /* NULL: SQLite in <data_dir>/kmsd.db; a
                                    postgresql:// URL: that database
                                    (store/store_pg.h), shared with other
                                    nodes; anything else -> KERR_VALIDATION */
  int sweep_interval_ms;         /* how often the background sweeper runs
                                    deletions and rotations; 0 = 1000 ms;
                                    negative = no sweeper thread (tests call
                                    kms_domain_sweep themselves) */
  size_t material_cache_entries; /* unwrapped key materials kept in wiped
                                    memory; 0 = KMS_MATERIAL_CACHE_DEFAULT */
  int key_cache_entries;         /* resolved keys kept for the crypto
                                    operations (lib/kms/kms_key_cache.h);
                                    0 = KMS_KEY_CACHE_DEFAULT, negative =
                                    none */
  size_t policy_cache_entries;   /* parsed key policies; 0 =
                                    KMS_POLICY_CACHE_DEFAULT.  Any of the
                                    three above KMS_CACHE_ENTRIES_MAX ->
                                    kms_domain_open fails with
                                    KERR_VALIDATION */
  int hsm_key_cache_entries;     /* working copies of keys kept per HSM of
                                    a CloudHSM key store
                                    (lib/pkcs11/p11_keycache.h); 0 =
                                    KMS_HSM_KEY_CACHE_DEFAULT, negative =
                                    none, at most KMS_CACHE_ENTRIES_MAX */
  int max_custom_key_stores;     /* custom key stores per account and
                                    Region; 0 = 10, AWS's documented quota;
                                    CreateCustomKeyStore past it ->
                                    KERR_LIMIT_EXCEEDED */
  int max_keys;                  /* KMS keys per account and Region, in any
                                    state; 0 = 100000, AWS's documented
                                    quota; CreateKey past it ->
                                    KERR_LIMIT_EXCEEDED */
  int db_busy_timeout_ms;        /* how long a call waits for a database
                                    another process holds locked before it
                                    fails with KERR_INTERNAL; 0 = the
                                    default, else within the range above;
                                    out of range -> kms_domain_open fails
                                    with KERR_VALIDATION */
  int hsm_timeout_ms;            /* how long a call waits for a free PKCS#11
                                    session of an HSM whose sessions are all
                                    busy before it fails with
                                    KERR_DEPENDENCY_TIMEOUT; 0 = the default,
                                    else within the range above (else
                                    kms_domain_open fails with
                                    KERR_VALIDATION).  It does not bound a
                                    PKCS#11 call already running (see
                                    docs/pkcs11.md, "A hung HSM") */
  /* External key stores.  Strings are copied. */
  const char *xks_ca_bundle;     /* PEM file of the CAs trusted for XKS
                                    proxies; NULL: the system store */
  const char *const *xks_connect_to; /* curl connect-to overrides
                                    "HOST:PORT:TO_HOST:TO_PORT" */
  size_t xks_connect_to_count;   /* 0..KMS_XKS_CONNECT_TO_MAX */
  int xks_timeout_ms;            /* per XKS call; 0 = 250, else within the
                                    range above (else KERR_VALIDATION) */
  int xks_health_interval_ms;    /* 0 = 60000; negative: no periodic check */
  unsigned xks_connections;      /* per store; 0 = KMS_XKS_CONNECTIONS_DEFAULT, at most
                                    KMS_XKS_CONNECTIONS_MAX (else KERR_VALIDATION) */
  kms_vpc_judge_fn vpc_judge;    /* NULL: no VPC endpoint service exists */
  void *vpc_arg;
  const datadir_lock *data_dir_lock; /* the lock on data_dir the caller
                                    already holds (datadir_lock_take) and
                                    keeps until kms_domain_close; NULL: the
                                    domain takes it itself */
} kms_domain_config;

/* Open the domain over `cfg->data_dir`: create the directory if needed,
 * make sure this process holds its lock (core/datadir_lock.h; another
 * process holding it -> KERR_CONFLICT before anything else is read or
 * written), create or load <data_dir>/root.key (0600; refused if
 * group/others may read it), open the store and run its migrations, check
 * that the root key is the store's (a root.key of another store ->
 * KERR_INTERNAL "root.key does not belong to this data directory's store",
 * with the store's contents unchanged), then start the sweeper.
 * On KERR_OK *out owns a new domain (free with kms_domain_close); on failure
 * *out is NULL and nothing is left running or open. */
kerr_code kms_domain_open(const kms_domain_config *cfg, kms_domain **out, kerr *err);

/* Stop the sweeper, wipe cached key material, close the store, free `d`.
 * NULL is allowed. No call on `d` may be in flight. */
void kms_domain_close(kms_domain *d);

/* The CloudHSM service the domain opened over its store and root key
 * (lib/cloudhsm/hsm_service.h): what the BaldrApiService and KmsdHsmAdmin
 * handlers call.  Owned by the domain; valid until kms_domain_close. */
struct hsm_service;
struct hsm_service *kms_domain_cloudhsm(kms_domain *d);

/* The key cache's lookups served and missed since the domain opened (for
 * /health, tests and benchmarks); false, and both 0, when it is off. */
bool kms_domain_key_cache_counts(kms_domain *d, uint64_t *hits, uint64_t *misses);

/* The same for the working copies of keys CloudHSM key stores' HSMs keep
 * (--hsm-key-cache), summed over the HSMs open now; false when off. */
bool kms_domain_hsm_key_cache_counts(kms_domain *d, uint64_t *hits, uint64_t *misses);

/* Which store the domain keeps its state in ("sqlite", "postgresql") and
 * whether it answered the last time it was needed (store_ops.reachable: no
 * I/O, so /health can ask on any thread). */
const char *kms_domain_store_name(kms_domain *d);
bool kms_domain_store_reachable(kms_domain *d);

/* Whether this node holds the lease on background work (sweeps, connect
 * workers, recoveries, health checks; docs/multi-node.md): always, on a
 * store this process opens alone.  No I/O. */
bool kms_domain_lease_held(kms_domain *d);

/* How many CONNECTED custom key stores this node could not open its own
 * connection to the last time it tried (their backing systems unreachable
 * from here; the log names each, with its ConnectionErrorCode).  For
 * /health, which any caller may ask: a count, no ids.  No I/O, safe from
 * any thread. */
#define KMS_CONNECTION_ERROR_MAX 48
size_t kms_domain_unreachable_key_stores(kms_domain *d);

/* Run one sweep now: delete keys whose deletion date has passed and rotate
 * keys whose next rotation date has passed (both on the kclock).  Returns
 * KERR_OK or the first store error.  The background sweeper calls this; tests
 * call it after kclock_advance_ms to avoid waiting for the thread. */
kerr_code kms_domain_sweep(kms_domain *d, kerr *err);

/* Who calls and where (aws/call.h). All fields must be non-NULL. */
typedef aws_call kms_call;

/* One encryption-context entry or one tag (both are {key, value} strings). */
typedef aws_pair kms_pair;

/* An owned {key, value} pair in an output (both heap strings). */
typedef struct kms_owned_pair {
  char *key;
  char *value;
} kms_owned_pair;

/* ------------------------------------------------------------------ keys */

/* KeyMetadata.  String pointers typed `const char *` point at static storage
 * (enum values of the model); `char *` fields are owned by the struct. */
typedef struct kms_key_metadata {
  char aws_account_id[ACCOUNT_ID_LEN + 1];
  char key_id[UUID_STR_LEN];
  char arn[KMS_ARN_MAX];
  int64_t creation_date_ms;
  bool enabled;
  char *description;                 /* owned; "" when none, never NULL on success */
  const char *key_usage;             /* "ENCRYPT_DECRYPT" */
  const char *key_state;             /* "Enabled" | "Disabled" | "PendingDeletion" |
                                        "Unavailable" (in a custom key store that is
                                        not CONNECTED) */
  bool has_deletion_date;
  int64_t deletion_date_ms;
  int pending_deletion_window_days;  /* 0 unless PendingDeletion */
  const char *origin;                /* "AWS_KMS" | "EXTERNAL" | "AWS_CLOUDHSM" | "EXTERNAL_KEY_STORE" */
  char *custom_key_store_id;         /* owned; NULL when not in a custom key store */
  const char *key_manager;           /* "CUSTOMER" */
  const char *key_spec;              /* "SYMMETRIC_DEFAULT" */
  const char *customer_master_key_spec; /* same as key_spec (deprecated member) */
  const char *const *encryption_algorithms; /* static list: {"SYMMETRIC_DEFAULT"} */
  size_t n_encryption_algorithms;
  bool multi_region;                 /* always false for now */
  char current_key_material_id[KMS_MATERIAL_ID_LEN]; /* "" if none */
  char cloud_hsm_cluster_id[KMS_CLUSTER_ID_MAX]; /* "" unless in a CloudHSM key store */
  char *xks_key_id;                  /* owned; XksKeyConfiguration.Id, NULL unless in an
                                        external key store */
} kms_key_metadata;

void kms_key_metadata_clear(kms_key_metadata *m);

typedef struct kms_create_key_input {
  const char *policy;                   /* NULL: AWS's default key policy */
  const char *description;              /* NULL: "" */
  const char *key_usage;                /* NULL: ENCRYPT_DECRYPT */
  const char *customer_master_key_spec; /* NULL or SYMMETRIC_DEFAULT */
  const char *key_spec;                 /* NULL or SYMMETRIC_DEFAULT; both given -> KERR_VALIDATION */
  const char *origin;                   /* NULL: AWS_KMS */
  const char *custom_key_store_id;      /* NULL, or a CONNECTED custom key store: an
                                           AWS_CLOUDHSM store generates the key in its
                                           cluster (Origin AWS_CLOUDHSM, given or implied);
                                           an EXTERNAL_KEY_STORE store adopts XksKeyId
                                           (Origin EXTERNAL_KEY_STORE) */
  const char *xks_key_id;               /* required with an external key store's
                                           CustomKeyStoreId (checked with
                                           GetKeyMetadata); else NULL */
  bool bypass_policy_lockout_safety_check;
  const kms_pair *tags;                 /* TagKey/TagValue */
  size_t ntags;
  bool multi_region;
} kms_create_key_input;

/* CreateKey. Unsupported specs, usages, origins and multi-Region ->
 * KERR_UNSUPPORTED_OPERATION; bad policy -> KERR_MALFORMED_POLICY; bad tags
 * -> KERR_TAG.  In a custom key store: unknown store -> KERR_CKS_NOT_FOUND,
 * not CONNECTED -> KERR_CKS_INVALID_STATE, fewer than two active HSMs in
 * two zones -> KERR_HSM_CLUSTER_INVALID_CONFIG, Origin AWS_CLOUDHSM without
 * a store -> KERR_VALIDATION. */
kerr_code kms_op_create_key(kms_domain *d, const kms_call *call, const kms_create_key_input *in,
                         kms_key_metadata *out, kerr *err);

/* DescribeKey. */
kerr_code kms_op_describe_key(kms_domain *d, const kms_call *call, const char *key_id,
                           kms_key_metadata *out, kerr *err);

typedef struct kms_list_input {
  int limit;           /* 0: default 100; else 1..1000 */
  const char *marker;  /* NULL: from the start; else a NextMarker we returned */
} kms_list_input;

typedef struct kms_key_list_entry {
  char key_id[UUID_STR_LEN];
  char key_arn[KMS_ARN_MAX];
} kms_key_list_entry;

typedef struct kms_list_keys_output {
  kms_key_list_entry *keys; /* owned array */
  size_t nkeys;
  bool truncated;
  char *next_marker;        /* owned; NULL unless truncated */
} kms_list_keys_output;

void kms_list_keys_output_clear(kms_list_keys_output *o);

/* ListKeys: the caller's account + region only. Bad marker -> KERR_INVALID_MARKER. */
kerr_code kms_op_list_keys(kms_domain *d, const kms_call *call, const kms_list_input *in,
                        kms_list_keys_output *out, kerr *err);

/* EnableKey / DisableKey. */
kerr_code kms_op_enable_key(kms_domain *d, const kms_call *call, const char *key_id, kerr *err);
kerr_code kms_op_disable_key(kms_domain *d, const kms_call *call, const char *key_id, kerr *err);

/* UpdateKeyDescription (description may be "" but not NULL; max 8192). */
kerr_code kms_op_update_key_description(kms_domain *d, const kms_call *call, const char *key_id,
                                     const char *description, kerr *err);

typedef struct kms_schedule_deletion_output {
  char key_id[KMS_ARN_MAX];     /* the key ARN, as AWS returns it */
  int64_t deletion_date_ms;
  const char *key_state;        /* "PendingDeletion" */
  int pending_window_days;
} kms_schedule_deletion_output;

/* ScheduleKeyDeletion: pending_window_days 0 = 30, else 7..30 (KERR_VALIDATION
 * otherwise).  The key is deleted when the date passes on the kclock. */
kerr_code kms_op_schedule_key_deletion(kms_domain *d, const kms_call *call, const char *key_id,
                                    int pending_window_days, kms_schedule_deletion_output *out,
                                    kerr *err);

/* CancelKeyDeletion: PendingDeletion -> Disabled. `key_arn_out` receives the
 * key ARN (KMS_ARN_MAX bytes). Other states -> KERR_INVALID_STATE. */
kerr_code kms_op_cancel_key_deletion(kms_domain *d, const kms_call *call, const char *key_id,
                                  char key_arn_out[KMS_ARN_MAX], kerr *err);

/* ------------------------------------------------------------- crypto ops */

typedef struct kms_encrypt_input {
  const char *key_id;
  const uint8_t *plaintext;           /* 1..4096 bytes */
  size_t plaintext_len;
  const kms_pair *context;            /* encryption context; may be NULL with ncontext 0 */
  size_t ncontext;
  const char *encryption_algorithm;   /* NULL or "SYMMETRIC_DEFAULT" */
  bool dry_run;
} kms_encrypt_input;

typedef struct kms_encrypt_output {
  uint8_t *ciphertext;                /* owned (malloc); not secret */
  size_t ciphertext_len;
  char key_id[KMS_ARN_MAX];           /* key ARN */
  const char *encryption_algorithm;   /* "SYMMETRIC_DEFAULT" */
} kms_encrypt_output;

void kms_encrypt_output_clear(kms_encrypt_output *o);

/* Encrypt. Checks in order: plaintext length and context, the key
 * (KERR_NOT_FOUND), kms:Encrypt (KERR_ACCESS_DENIED), the algorithm (not
 * SYMMETRIC_DEFAULT -> KERR_INVALID_KEY_USAGE), the state (Disabled ->
 * KERR_DISABLED, PendingDeletion -> KERR_INVALID_STATE), then dry_run ->
 * KERR_DRY_RUN.  On failure *out is empty. */
kerr_code kms_op_encrypt(kms_domain *d, const kms_call *call, const kms_encrypt_input *in,
                      kms_encrypt_output *out, kerr *err);

typedef struct kms_decrypt_input {
  const uint8_t *ciphertext;          /* 1..6144 bytes */
  size_t ciphertext_len;
  const kms_pair *context;
  size_t ncontext;
  const char *key_id;                 /* optional; must name the ciphertext's key */
  const char *encryption_algorithm;   /* NULL or "SYMMETRIC_DEFAULT" */
  bool dry_run;
} kms_decrypt_input;

typedef struct kms_decrypt_output {
  char key_id[KMS_ARN_MAX];           /* key ARN */
  kbytes plaintext;                   /* secret; wiped by clear */
  const char *encryption_algorithm;
  char key_material_id[KMS_MATERIAL_ID_LEN];
} kms_decrypt_output;

void kms_decrypt_output_clear(kms_decrypt_output *o);

/* Decrypt. Checks in order: blob length and context, the key named by
 * key_id if given (KERR_NOT_FOUND), the blob's format
 * (KERR_INVALID_CIPHERTEXT), the blob's key (KERR_NOT_FOUND; key_id naming
 * another key -> KERR_INCORRECT_KEY), kms:Decrypt (KERR_ACCESS_DENIED), the
 * algorithm (KERR_INVALID_KEY_USAGE), the state, dry_run, and last the
 * opening: a tampered blob, a foreign material or a wrong context ->
 * KERR_INVALID_CIPHERTEXT with one message.  On failure *out is empty. */
kerr_code kms_op_decrypt(kms_domain *d, const kms_call *call, const kms_decrypt_input *in,
                      kms_decrypt_output *out, kerr *err);

typedef struct kms_reencrypt_input {
  const uint8_t *ciphertext;
  size_t ciphertext_len;
  const kms_pair *source_context;
  size_t nsource_context;
  const char *source_key_id;                 /* optional */
  const char *destination_key_id;            /* required */
  const kms_pair *destination_context;
  size_t ndestination_context;
  const char *source_encryption_algorithm;   /* NULL or SYMMETRIC_DEFAULT */
  const char *destination_encryption_algorithm;
  bool dry_run;
} kms_reencrypt_input;

typedef struct kms_reencrypt_output {
  uint8_t *ciphertext;                       /* owned */
  size_t ciphertext_len;
  char source_key_id[KMS_ARN_MAX];           /* ARN */
  char key_id[KMS_ARN_MAX];                  /* destination ARN */
  const char *source_encryption_algorithm;
  const char *destination_encryption_algorithm;
  char source_key_material_id[KMS_MATERIAL_ID_LEN];
  char destination_key_material_id[KMS_MATERIAL_ID_LEN];
} kms_reencrypt_output;

void kms_reencrypt_output_clear(kms_reencrypt_output *o);

/* ReEncrypt: the source side as Decrypt with kms:ReEncryptFrom and the
 * source algorithm, then the destination key (KERR_NOT_FOUND),
 * kms:ReEncryptTo, the destination algorithm and state, then dry_run.  On
 * failure *out is empty. */
kerr_code kms_reencrypt(kms_domain *d, const kms_call *call, const kms_reencrypt_input *in,
                        kms_reencrypt_output *out, kerr *err);

typedef struct kms_generate_data_key_input {
  const char *key_id;
  const kms_pair *context;
  size_t ncontext;
  const char *key_spec;          /* "AES_256" | "AES_128" | NULL */
  bool has_number_of_bytes;
  int number_of_bytes;           /* 1..1024 */
  bool dry_run;
} kms_generate_data_key_input;

typedef struct kms_generate_data_key_output {
  uint8_t *ciphertext;           /* owned */
  size_t ciphertext_len;
  kbytes plaintext;              /* secret; empty for ...WithoutPlaintext */
  char key_id[KMS_ARN_MAX];      /* key ARN */
  char key_material_id[KMS_MATERIAL_ID_LEN];
} kms_generate_data_key_output;

void kms_generate_data_key_output_clear(kms_generate_data_key_output *o);

/* GenerateDataKey: neither or both of key_spec / number_of_bytes ->
 * KERR_VALIDATION. */
kerr_code kms_op_generate_data_key(kms_domain *d, const kms_call *call,
                                const kms_generate_data_key_input *in,
                                kms_generate_data_key_output *out, kerr *err);

/* GenerateDataKeyWithoutPlaintext: as above, out->plaintext stays empty. */
kerr_code kms_op_generate_data_key_without_plaintext(kms_domain *d, const kms_call *call,
                                                  const kms_generate_data_key_input *in,
                                                  kms_generate_data_key_output *out, kerr *err);

typedef struct kms_generate_random_input {
  bool has_number_of_bytes;
  int number_of_bytes;               /* 1..1024; missing -> KERR_VALIDATION */
  const char *custom_key_store_id;   /* NULL, or a CloudHSM key store whose HSMs
                                        generate the bytes: unknown ->
                                        KERR_CKS_NOT_FOUND, not CONNECTED ->
                                        KERR_CKS_INVALID_STATE, external ->
                                        KERR_UNSUPPORTED_OPERATION */
} kms_generate_random_input;

/* GenerateRandom. On KERR_OK *out holds fresh random bytes (free with
 * kbytes_wipe_free). */
kerr_code kms_op_generate_random(kms_domain *d, const kms_call *call,
                              const kms_generate_random_input *in, kbytes *out, kerr *err);

/* ---------------------------------------------------------------- aliases */

/* CreateAlias: name must match ^alias/[a-zA-Z0-9/_-]+$ (KERR_INVALID_ALIAS_NAME
 * otherwise, and for "alias/aws/..."); duplicate -> KERR_ALREADY_EXISTS;
 * target must be a key id or key ARN of the caller's account+region. */
kerr_code kms_op_create_alias(kms_domain *d, const kms_call *call, const char *alias_name,
                           const char *target_key_id, kerr *err);

/* UpdateAlias: point an existing alias at another key of the same account. */
kerr_code kms_op_update_alias(kms_domain *d, const kms_call *call, const char *alias_name,
                           const char *target_key_id, kerr *err);

/* DeleteAlias. Unknown alias -> KERR_NOT_FOUND. */
kerr_code kms_op_delete_alias(kms_domain *d, const kms_call *call, const char *alias_name,
                           kerr *err);

typedef struct kms_alias_entry {
  char *alias_name;              /* owned */
  char *alias_arn;               /* owned */
  char target_key_id[UUID_STR_LEN];
  int64_t creation_date_ms;
  int64_t last_updated_date_ms;
} kms_alias_entry;

typedef struct kms_list_aliases_output {
  kms_alias_entry *aliases;      /* owned array */
  size_t naliases;
  bool truncated;
  char *next_marker;             /* owned; NULL unless truncated */
} kms_list_aliases_output;

void kms_list_aliases_output_clear(kms_list_aliases_output *o);

/* ListAliases: the caller's account+region; `key_id` (optional) filters to
 * one key (authorized on that key; otherwise on "*"). */
kerr_code kms_op_list_aliases(kms_domain *d, const kms_call *call, const char *key_id,
                           const kms_list_input *in, kms_list_aliases_output *out, kerr *err);

/* ------------------------------------------------------------------- tags */

/* TagResource: add or overwrite tags. Keys 1..128 chars, values 0..256,
 * "aws:" prefix reserved, at most 50 tags per key -> KERR_TAG. */
kerr_code kms_op_tag_resource(kms_domain *d, const kms_call *call, const char *key_id,
                           const kms_pair *tags, size_t ntags, kerr *err);

/* UntagResource: remove the named tag keys (absent keys are ignored). */
kerr_code kms_op_untag_resource(kms_domain *d, const kms_call *call, const char *key_id,
                             const char *const *tag_keys, size_t nkeys, kerr *err);

typedef struct kms_list_tags_output {
  kms_owned_pair *tags;          /* owned array, sorted by key */
  size_t ntags;
  bool truncated;
  char *next_marker;
} kms_list_tags_output;

void kms_list_tags_output_clear(kms_list_tags_output *o);

/* ListResourceTags (limit 1..50, default 50). */
kerr_code kms_op_list_resource_tags(kms_domain *d, const kms_call *call, const char *key_id,
                                 const kms_list_input *in, kms_list_tags_output *out, kerr *err);

/* --------------------------------------------------------------- rotation */

/* EnableKeyRotation: rotation_period_days 0 = 365 (or the current period
 * when already enabled), else 90..2560. */
kerr_code kms_op_enable_key_rotation(kms_domain *d, const kms_call *call, const char *key_id,
                                  int rotation_period_days, kerr *err);

/* DisableKeyRotation. */
kerr_code kms_op_disable_key_rotation(kms_domain *d, const kms_call *call, const char *key_id,
                                   kerr *err);

typedef struct kms_rotation_status {
  char key_id[KMS_ARN_MAX];      /* key ARN */
  bool enabled;
  int rotation_period_days;      /* 0 when rotation is disabled */
  bool has_next_rotation_date;
  int64_t next_rotation_date_ms;
  bool has_on_demand_rotation_start_date;
  int64_t on_demand_rotation_start_date_ms;
} kms_rotation_status;

/* GetKeyRotationStatus. */
kerr_code kms_op_get_key_rotation_status(kms_domain *d, const kms_call *call, const char *key_id,
                                      kms_rotation_status *out, kerr *err);

/* RotateKeyOnDemand: new current key material now; older materials keep
 * decrypting. At most 25 on-demand rotations per key -> KERR_LIMIT_EXCEEDED.
 * `key_id_out` receives the key id (UUID). */
kerr_code kms_op_rotate_key_on_demand(kms_domain *d, const kms_call *call, const char *key_id,
                                   char key_id_out[UUID_STR_LEN], kerr *err);

typedef struct kms_rotation_entry {
  char key_id[UUID_STR_LEN];
  char key_material_id[KMS_MATERIAL_ID_LEN];
  const char *key_material_state;  /* "CURRENT" | "NON_CURRENT" */
  const char *rotation_type;       /* "AUTOMATIC" | "ON_DEMAND"; NULL for the original material */
  bool has_rotation_date;
  int64_t rotation_date_ms;
  const char *expiration_model;    /* "KEY_MATERIAL_DOES_NOT_EXPIRE" */
} kms_rotation_entry;

typedef struct kms_list_rotations_output {
  kms_rotation_entry *rotations;   /* owned array, oldest first */
  size_t nrotations;
  bool truncated;
  char *next_marker;
} kms_list_rotations_output;

void kms_list_rotations_output_clear(kms_list_rotations_output *o);

/* ListKeyRotations: include_key_material NULL or "ROTATIONS_ONLY" lists
 * materials created by rotation; "ALL_KEY_MATERIAL" adds the original one. */
kerr_code kms_op_list_key_rotations(kms_domain *d, const kms_call *call, const char *key_id,
                                 const char *include_key_material, const kms_list_input *in,
                                 kms_list_rotations_output *out, kerr *err);

/* --------------------------------------------------------------- policies */

/* PutKeyPolicy: policy_name NULL or "default" (any other name ->
 * KERR_NOT_FOUND, each key has one policy); bad JSON or grammar ->
 * KERR_MALFORMED_POLICY; a policy that would lock the caller out ->
 * KERR_MALFORMED_POLICY unless bypass is set. */
kerr_code kms_op_put_key_policy(kms_domain *d, const kms_call *call, const char *key_id,
                             const char *policy_name, const char *policy,
                             bool bypass_policy_lockout_safety_check, kerr *err);

typedef struct kms_key_policy_output {
  char *policy;                    /* owned JSON text, as stored */
  const char *policy_name;         /* "default" */
} kms_key_policy_output;

void kms_key_policy_output_clear(kms_key_policy_output *o);

/* GetKeyPolicy: policy_name NULL or "default" (other names -> KERR_NOT_FOUND). */
kerr_code kms_op_get_key_policy(kms_domain *d, const kms_call *call, const char *key_id,
                             const char *policy_name, kms_key_policy_output *out, kerr *err);

typedef struct kms_list_policies_output {
  const char *const *policy_names; /* static {"default"} */
  size_t npolicy_names;
  bool truncated;
  char *next_marker;               /* always NULL: one policy per key */
} kms_list_policies_output;

void kms_list_policies_output_clear(kms_list_policies_output *o);

/* ListKeyPolicies. */
kerr_code kms_op_list_key_policies(kms_domain *d, const kms_call *call, const char *key_id,
                                const kms_list_input *in, kms_list_policies_output *out,
                                kerr *err);

/* ------------------------------------------------------ custom key stores
 *
 * CloudHSM key stores (type AWS_CLOUDHSM) backed by the clusters kmsd
 * manages (hsm_cluster.h); see docs/custom-key-stores.md.  Stores belong to
 * the caller's account and region.  Every operation authorizes
 * "kms:<Operation>" on resource "*" (IAM policy only, as in AWS).
 * External key stores (EXTERNAL_KEY_STORE) reach an XKS proxy
 * (backend_xks.c); see docs/custom-key-stores.md. */

/* One CustomKeyStoresListEntry.  `const char *` fields are static. */
typedef struct kms_custom_key_store {
  char custom_key_store_id[KMS_CKS_ID_MAX];
  char *custom_key_store_name;             /* owned */
  const char *custom_key_store_type;       /* "AWS_CLOUDHSM" | "EXTERNAL_KEY_STORE" */
  char cloud_hsm_cluster_id[KMS_CLUSTER_ID_MAX]; /* "" for external key stores */
  char *trust_anchor_certificate;          /* owned PEM; NULL for external key stores */
  const char *connection_state;            /* CONNECTED | CONNECTING | FAILED |
                                              DISCONNECTED | DISCONNECTING */
  const char *connection_error_code;       /* NULL unless FAILED */
  int64_t creation_date_ms;
  /* XksProxyConfiguration: only for external key stores (has_xks); never
   * the secret access key. */
  bool has_xks;
  const char *xks_connectivity;            /* PUBLIC_ENDPOINT | VPC_ENDPOINT_SERVICE */
  char xks_access_key_id[32];
  char xks_uri_endpoint[132];
  char xks_uri_path[132];
  char xks_vpc_service_name[68];           /* "" when none */
  char xks_vpc_service_owner[16];          /* "" when none */
} kms_custom_key_store;

/* The Xks* members of Create/UpdateCustomKeyStore (NULL: not given). */
typedef struct kms_xks_input {
  const char *uri_endpoint;                /* XksProxyUriEndpoint */
  const char *uri_path;                    /* XksProxyUriPath */
  const char *vpc_service_name;            /* XksProxyVpcEndpointServiceName ("" on
                                              Update: none) */
  const char *vpc_service_owner;           /* XksProxyVpcEndpointServiceOwner */
  const char *connectivity;                /* XksProxyConnectivity */
  const char *access_key_id;               /* XksProxyAuthenticationCredential: */
  const char *secret_access_key;           /* both or neither; sensitive */
} kms_xks_input;

typedef struct kms_create_cks_input {
  const char *custom_key_store_name;       /* required, 1..256 */
  const char *custom_key_store_type;       /* NULL: AWS_CLOUDHSM */
  const char *cloud_hsm_cluster_id;        /* required for AWS_CLOUDHSM */
  const char *trust_anchor_certificate;    /* required for AWS_CLOUDHSM: PEM */
  const char *key_store_password;          /* required for AWS_CLOUDHSM: 7..32 */
  bool has_xks_members;                    /* any Xks* member was given */
  kms_xks_input xks;                       /* for EXTERNAL_KEY_STORE */
} kms_create_cks_input;

/* CreateCustomKeyStore: the store starts DISCONNECTED.  Name used in the
 * account+region -> KERR_CKS_NAME_IN_USE; cluster unknown ->
 * KERR_HSM_CLUSTER_NOT_FOUND, not ACTIVE -> KERR_HSM_CLUSTER_NOT_ACTIVE,
 * fewer than two active HSMs in different zones ->
 * KERR_HSM_CLUSTER_INVALID_CONFIG, used (or related to one used) by another
 * store -> KERR_HSM_CLUSTER_IN_USE, trust anchor not the cluster's ->
 * KERR_INCORRECT_TRUST_ANCHOR.  On KERR_OK id_out holds the new id. */
kerr_code kms_op_create_custom_key_store(kms_domain *d, const kms_call *call,
                                      const kms_create_cks_input *in,
                                      char id_out[KMS_CKS_ID_MAX], kerr *err);

typedef struct kms_describe_cks_input {
  const char *custom_key_store_id;         /* NULL, or one store */
  const char *custom_key_store_name;       /* NULL, or one store; not both */
  kms_list_input list;                     /* Limit 1..1000, Marker */
} kms_describe_cks_input;

typedef struct kms_describe_cks_output {
  kms_custom_key_store *stores;            /* owned array, ordered by id */
  size_t nstores;
  bool truncated;
  char *next_marker;                       /* owned; NULL unless truncated */
} kms_describe_cks_output;

void kms_describe_cks_output_clear(kms_describe_cks_output *o);

/* DescribeCustomKeyStores: by id, by name, or all of the account+region.
 * An id or name that names no store -> KERR_CKS_NOT_FOUND; both given ->
 * KERR_VALIDATION; bad marker -> KERR_INVALID_MARKER.  Never a password. */
kerr_code kms_op_describe_custom_key_stores(kms_domain *d, const kms_call *call,
                                         const kms_describe_cks_input *in,
                                         kms_describe_cks_output *out, kerr *err);

typedef struct kms_update_cks_input {
  const char *custom_key_store_id;         /* required */
  const char *new_custom_key_store_name;   /* NULL: unchanged */
  const char *key_store_password;          /* NULL: unchanged; DISCONNECTED only */
  const char *cloud_hsm_cluster_id;        /* NULL: unchanged; DISCONNECTED only */
  bool has_xks_members;
  kms_xks_input xks;                       /* external key stores: name, credential
                                              and path while CONNECTED or
                                              DISCONNECTED, the rest DISCONNECTED */
} kms_update_cks_input;

/* UpdateCustomKeyStore: the name while CONNECTED or DISCONNECTED, the
 * password and cluster only while DISCONNECTED (else
 * KERR_CKS_INVALID_STATE).  A new cluster must exist
 * (KERR_HSM_CLUSTER_NOT_FOUND), share the old one's backup lineage
 * (KERR_HSM_CLUSTER_NOT_RELATED), be ACTIVE (KERR_HSM_CLUSTER_NOT_ACTIVE)
 * with two active HSMs in two zones (KERR_HSM_CLUSTER_INVALID_CONFIG).
 * Nothing changes on failure. */
kerr_code kms_op_update_custom_key_store(kms_domain *d, const kms_call *call,
                                      const kms_update_cks_input *in, kerr *err);

/* ConnectCustomKeyStore: DISCONNECTED -> CONNECTING and a worker connects
 * in the background (CONNECTED, or FAILED with a ConnectionErrorCode);
 * CONNECTING and CONNECTED: nothing to do; DISCONNECTING and FAILED ->
 * KERR_CKS_INVALID_STATE.  The cluster not ACTIVE ->
 * KERR_HSM_CLUSTER_NOT_ACTIVE; its active HSMs all in one zone ->
 * KERR_HSM_CLUSTER_INVALID_CONFIG.  Returns before the worker finishes. */
kerr_code kms_op_connect_custom_key_store(kms_domain *d, const kms_call *call,
                                       const char *custom_key_store_id, kerr *err);

/* DisconnectCustomKeyStore: CONNECTED, CONNECTING or FAILED ->
 * DISCONNECTING -> DISCONNECTED (closing the HSM sessions; in-flight
 * operations finish first); DISCONNECTED and DISCONNECTING ->
 * KERR_CKS_INVALID_STATE. */
kerr_code kms_op_disconnect_custom_key_store(kms_domain *d, const kms_call *call,
                                          const char *custom_key_store_id, kerr *err);

/* DeleteCustomKeyStore: only DISCONNECTED (else KERR_CKS_INVALID_STATE)
 * and holding no KMS keys, pending deletion included (else
 * KERR_CKS_HAS_CMKS). */
kerr_code kms_op_delete_custom_key_store(kms_domain *d, const kms_call *call,
                                      const char *custom_key_store_id, kerr *err);

#endif
