/* kms.h - libkms, a C client for AWS KMS and for kmsd: the client, its errors and the
 * operation-independent call.
 *
 * libkms talks to any KMS-compatible endpoint (kmsd, AWS KMS itself) the way the
 * AWS SDKs do: one signed POST per call (AWS JSON 1.1, SigV4), the AWS shared
 * configuration (environment, ~/.aws/credentials, ~/.aws/config, profiles), the
 * SDKs' "standard" retry mode and explicit connect and read timeouts.  The typed
 * function of every operation (kms_ops.h) is built on kms_call_json below; the
 * `kms` command line uses kms_call_json directly.
 *
 * Conventions of the whole library:
 *   - Every fallible function returns 0 on success and a kms_error_kind (never 0)
 *     on failure, and then fills *err when err is not NULL.
 *   - A pointer passed in is borrowed for the duration of the call unless the
 *     function says otherwise.  A pointer handed out is owned by the caller and
 *     freed with the function named beside it.
 *   - A client may be used by one thread at a time; use one client per thread.
 *   - Secrets (secret keys, session tokens, plaintexts) are never copied into an
 *     error message or the debug callback.
 *
 * ABI.  The structs of kms.h and kms_ops.h are allocated by the caller and
 * carry no size field, so any change of their layout (a new option here, a
 * model refresh that adds a member to an operation's struct) breaks binary
 * compatibility.  While libkms is 0.x its soname names MAJOR.MINOR
 * (libkms.so.0.1): every minor release may change layouts and gets a new
 * soname, so a program is never run against a library whose structs differ
 * from those it was compiled with; rebuild against the new headers.  Patch
 * releases keep layouts and soname.
 */
#ifndef LIBKMS_KMS_H
#define LIBKMS_KMS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What went wrong, broadly: a caller's exit code or retry decision hangs on it. */
typedef enum kms_error_kind {
  KMS_OK = 0,
  KMS_ERR_SERVICE = 1,     /* the service answered with an error (code, status, request id set) */
  KMS_ERR_CONFIG = 2,      /* configuration: no credentials, no region, unknown profile, bad file */
  KMS_ERR_PARAM = 3,       /* the caller's input: a bad argument to a libkms function */
  KMS_ERR_CONNECTION = 4,  /* the endpoint could not be reached (DNS, connect, TLS) */
  KMS_ERR_TIMEOUT = 5,     /* connect or read timeout */
  KMS_ERR_RESPONSE = 6,    /* a reply that is not what the protocol allows (bad JSON, too large) */
  KMS_ERR_MEMORY = 7,      /* out of memory */
  KMS_ERR_INTERNAL = 8,    /* anything else (a library failure that is not the caller's) */
} kms_error_kind;

/* One error.  Every string is NUL-terminated and truncated to fit. */
typedef struct kms_error {
  kms_error_kind kind;
  char code[128];        /* KMS_ERR_SERVICE: the AWS error code without namespace
                            ("NotFoundException", "ThrottlingException"), or the HTTP
                            status ("503") when the reply names none; otherwise a
                            name for the failure:
                              KMS_ERR_CONFIG      NoCredentialsError, NoRegionError,
                                                  InvalidRegionError, ProfileNotFound,
                                                  ConfigParseError, PartialCredentialsError,
                                                  UnsupportedCredentialsError,
                                                  InvalidConfigError, InvalidEndpointError
                              KMS_ERR_PARAM       InvalidParameter
                              KMS_ERR_CONNECTION  EndpointConnectionError,
                                                  ConnectionClosedError, SSLError
                              KMS_ERR_TIMEOUT     ConnectTimeoutError, ReadTimeoutError
                              KMS_ERR_RESPONSE    ResponseTooLarge, InvalidResponse,
                                                  PaginationError (a page iterator
                                                  of kms_ops.h was led in a loop or
                                                  past 100,000 pages)
                              KMS_ERR_MEMORY      MemoryError
                            The typed layer (kms_ops.h) uses the same names.
                              KMS_ERR_INTERNAL    HTTPClientError */
  char message[1024];    /* human-readable; never holds a secret */
  int http_status;       /* the reply's HTTP status; 0 when no reply arrived */
  char request_id[128];  /* x-amzn-RequestId of the last reply; "" when none */
  int retryable;         /* 1 when the standard retry mode would retry this error
                            (whether or not attempts or the retry quota were left) */
  int attempts;          /* attempts made, retries included (>= 1 once a call started) */
} kms_error;

/* The two services: KMS ("TrentService") and kmsd's CloudHSMv2 subset
 * ("BaldrApiService", signed as "cloudhsm"). */
typedef enum kms_service {
  KMS_SERVICE_KMS = 0,
  KMS_SERVICE_CLOUDHSMV2 = 1,
} kms_service;

/* A timeout in milliseconds: 0 for the default (60 s), KMS_TIMEOUT_NONE for no
 * limit, or a positive value.  For the connect timeout "no limit" is the
 * longest libcurl takes (INT_MAX ms, about 24.8 days); the system's own TCP
 * connect retries may give up sooner (about 2 minutes on Linux by default),
 * which is then a KMS_ERR_CONNECTION or KMS_ERR_TIMEOUT. */
#define KMS_TIMEOUT_NONE (-1L)

/* How to build a client.  Zero-initialise (`kms_client_options o = {0};`) and
 * set what you need; every NULL string or zero number means "as the AWS
 * configuration says": the environment, then the profile's files, then the
 * SDKs' default. */
typedef struct kms_client_options {
  const char *profile;       /* else AWS_DEFAULT_PROFILE / AWS_PROFILE / "default" */
  const char *region;        /* else AWS_REGION / AWS_DEFAULT_REGION / the profile's region */
  const char *endpoint_url;  /* else AWS_ENDPOINT_URL / the profile's endpoint_url /
                                https://kms.REGION.amazonaws.com (cloudhsmv2.REGION... for
                                KMS_SERVICE_CLOUDHSMV2) */
  const char *ca_bundle;     /* PEM file of trusted CAs; else AWS_CA_BUNDLE / the profile's
                                ca_bundle / the system store */
  int no_verify_ssl;         /* 1: do not verify the server's certificate (tests only) */
  int no_sign_request;       /* 1: send unsigned requests; no credentials needed */
  long connect_timeout_ms;   /* to set up the connection (TCP and TLS) */
  long read_timeout_ms;      /* the longest silence once connected: while the request
                                goes out, before the reply starts and between two
                                pieces of it (a slow but steady reply never times out) */
  int max_attempts;          /* total attempts, 1 to 100; 0: AWS_MAX_ATTEMPTS / the
                                profile's max_attempts / 3.  1 disables retries. */
  long max_backoff_ms;       /* cap of one retry delay; 0: 20,000 (the SDKs' cap) */
  /* Called with one line of diagnostic text per event (the client made, a request
   * sent, a reply's status and request id, a failure, a retry and its delay, a
   * retry refused by the quota); NULL for none.  Lines never hold a secret, a
   * body or a signature.  Called on the calling thread, inside the call. */
  void (*debug)(void *ctx, const char *line);
  void *debug_ctx;
  /* Credentials given in code, before every other source (environment,
   * profiles).  access_key_id and secret_access_key go together: one without
   * the other is KMS_ERR_CONFIG (PartialCredentialsError), as is a
   * session_token without them.  NULL: the AWS configuration's.  Copied by
   * kms_client_new (the secret and the token into memory that
   * kms_client_free wipes); the caller's strings may be wiped right after. */
  const char *access_key_id;
  const char *secret_access_key;
  const char *session_token;
} kms_client_options;

typedef struct kms_client kms_client;

/* A client for `service` with the options `opts` (NULL: all defaults).
 * Credentials, region and endpoint are resolved once, here.  Errors:
 * KMS_ERR_CONFIG (no credentials unless no_sign_request, no region or one that
 * is not a region name, an unknown profile, an unreadable configuration file,
 * an endpoint URL that is not http(s), AWS_MAX_ATTEMPTS or max_attempts not a
 * number from 1 to 100), KMS_ERR_PARAM (an unknown service, a negative or
 * out-of-range option), KMS_ERR_MEMORY.  The region is needed even with
 * no_sign_request (it names the default endpoint).  On failure *out is NULL.
 * Free with kms_client_free. */
int kms_client_new(kms_service service, const kms_client_options *opts, kms_client **out, kms_error *err);

/* Wipes the credentials and frees the client.  NULL is allowed. */
void kms_client_free(kms_client *c);

/* The resolved region and endpoint URL; owned by the client. */
const char *kms_client_region(const kms_client *c);
const char *kms_client_endpoint(const kms_client *c);

/* Call `operation` ("ConnectCustomKeyStore": the model's name) with the JSON
 * request body `json` (`len` bytes, not copied; "{}" for no input, as is a
 * NULL `json` with `len` 0), retrying as the standard retry mode says:
 *   - retried: the throttling codes (Throttling, ThrottlingException,
 *     ThrottledException, RequestThrottledException, TooManyRequestsException,
 *     ProvisionedThroughputExceededException, TransactionInProgressException,
 *     RequestLimitExceeded, BandwidthLimitExceeded, LimitExceededException,
 *     RequestThrottled, SlowDown, EC2ThrottledException), the transient codes
 *     (RequestTimeout, RequestTimeoutException, PriorRequestNotComplete),
 *     HTTP 500, 502, 503 and 504, connection failures and broken connections,
 *     connect and read timeouts; not retried: anything else, and a server
 *     certificate that is not trusted (it would be refused again);
 *   - before attempt n+1, a random delay of up to 2^n seconds, at most
 *     max_backoff_ms;
 *   - a retry quota per client (500 tokens; a retry costs 5, 10 after a
 *     timeout; a first-try success gives 1 back, a success after retries
 *     gives back what its last retry cost): when it cannot pay, the error is
 *     returned without retrying.
 *
 * The reply of a success status must be empty or a JSON object (checked
 * shallowly: it starts with '{' and ends with '}'); decoding it is the
 * caller's.  *err is filled only on failure.
 *
 * On success *reply is the reply body, NUL-terminated, `*reply_len` bytes
 * (possibly "{}" or empty for operations without output), owned by the caller
 * and freed with kms_reply_free (it may hold plaintext, so it is wiped).  On
 * failure *reply is NULL and *err says why; KMS_ERR_SERVICE when the service
 * answered with an error.  Replies over 4 MiB are KMS_ERR_RESPONSE
 * (ResponseTooLarge); an error reply's body is read as JSON only up to 64 KiB
 * (beyond, its HTTP status is the code). */
int kms_call_json(kms_client *c, const char *operation, const char *json, size_t len, char **reply,
                  size_t *reply_len, kms_error *err);

/* Wipe and free a reply of kms_call_json.  NULL is allowed. */
void kms_reply_free(char *reply, size_t reply_len);

/* The library's version, "MAJOR.MINOR.PATCH" (static storage). */
const char *kms_version(void);

#ifdef __cplusplus
}
#endif

#endif
