/* xks_client.h - kmsd's client for one external key store proxy (XKS Proxy
 * API v1): the four calls, signed with SigV4, over HTTPS (connections made
 * by libcurl).
 *
 * Why it exists: an EXTERNAL_KEY_STORE custom key store is a proxy at
 * XksProxyUriEndpoint + XksProxyUriPath, reached with the store's
 * XksProxyAuthenticationCredential.  This module is everything kmsd needs to
 * talk to one such proxy, and nothing about KMS keys or connection states:
 * it sends a request built by lib/xks (xks_request_serialize), and puts
 * every reply through lib/xks's strict parsers, so a proxy that answers
 * anything the spec does not allow is reported as such, never believed.
 * docs/xks.md ("The client") describes the choices below.
 *
 * Transport.  HTTP/1.1 over TLS 1.2 or later, the peer's certificate checked
 * against `ca_bundle` (or the system store) and the endpoint's host name
 * (always: connect-to overrides only change where the TCP connection goes,
 * never the name checked).  Environment proxies (https_proxy...) are
 * ignored.  Each call has one deadline, `timeout_ms` (KMS's 250 ms by
 * default), covering the wait for a free handle, the host name lookup,
 * connecting, the TLS handshake, the request and the whole reply (a lookup
 * still running then is left to end on libcurl's resolver thread);
 * connecting (lookup, TCP and TLS) is also bounded by `connect_timeout_ms`
 * when that is shorter than what is left of the call's deadline.
 * libcurl makes every connection (lookup, connect-to, TCP, TLS and its
 * checks); the client writes the request and reads the reply on it itself
 * (lib/xks/xks_http.h, a strict HTTP/1.1 reply reader: a reply that is not
 * HTTP/1.x, is malformed or is cut short is INVALID_RESPONSE).
 * Connections are kept alive: a small pool of slots, each keeping one
 * connection, so concurrent callers neither serialize nor reconnect; a kept
 * connection the proxy closed is replaced (the request is sent again on a
 * new one, within the same deadline).
 *
 * Signing.  SigV4 (lib/aws/sigv4.h) with service "kms-xks-proxy", the
 * store's region, the current UTC time, and signed headers host;
 * x-amz-date; content-type (what `curl --aws-sigv4` sends, as in the
 * spec's Appendix D).  The Host header is set explicitly to what is signed.
 *
 * Outcomes.  Every call ends in one xks_outcome (below), with details in an
 * xks_call_status.  The kmsd backend maps an outcome to a ConnectionErrorCode
 * (GetHealthStatus during Connect) or to the exception the KMS model lists
 * for the operation; xks_client_kerr() gives the mapping of the spec's
 * "KMS considerations" table for Create/UpdateCustomKeyStore and CreateKey.
 *
 * Thread safety.  After xks_client_new returns, any number of threads may
 * make calls on one client at once.  xks_client_free must not race a call.
 *
 * Secrets.  The secret access key is copied into secure memory and wiped by
 * xks_client_free.  Request bodies (plaintexts, AADs) live in secure
 * buffers and are wiped after the call; reply bodies are received into a
 * secure buffer that is wiped after parsing.  No error message, log line or
 * status carries the secret, a request body, a reply body or a plaintext:
 * they name the operation, the URL, the HTTP status, the XKS error name and
 * libcurl's own message. */
#ifndef KMSD_XKS_XKS_CLIENT_H
#define KMSD_XKS_XKS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "core/kerr.h"
#include "xks/xks_msg.h"

#define XKS_CLIENT_SERVICE "kms-xks-proxy"
#define XKS_CLIENT_DEFAULT_TIMEOUT_MS 250   /* KMS's per-call timeout (spec, "KMS considerations") */
#define XKS_CLIENT_TIMEOUT_MAX_MS 600000
#define XKS_CLIENT_DEFAULT_POOL 8           /* concurrent calls / kept connections */
#define XKS_CLIENT_POOL_MAX 64
/* A kept connection idle longer than this is closed rather than used:
 * libcurl's default (CURLOPT_MAXAGE_CONN), which the client followed before
 * it did the exchange itself. */
#define XKS_CLIENT_KEPT_IDLE_MAX_MS 118000
#define XKS_CLIENT_CONNECT_TO_MAX 16        /* connect-to overrides */
#define XKS_CLIENT_CONNECT_TO_LEN_MAX 300
#define XKS_CLIENT_ENDPOINT_MAX 128         /* XksProxyUriEndpoint max */
#define XKS_CLIENT_REPLY_MAX XKS_BODY_MAX   /* a larger reply is INVALID_RESPONSE */
#define XKS_CLIENT_URI_MAX 256              /* the spec's limit on a whole request URI */

/* What a call came to. */
typedef enum xks_outcome {
  XKS_OUTCOME_OK = 0,
  /* A well-formed XKS error reply: status.proxy_error names it, and its
   * HTTP status is the one the spec gives that name. */
  XKS_OUTCOME_PROXY_ERROR,
  /* The deadline passed once the TCP connection was up: in the TLS
   * handshake, waiting for or reading the reply (or waiting for a free
   * handle). */
  XKS_OUTCOME_TIMED_OUT,
  /* No connection, or it broke: refused, unresolvable name, no TCP
   * handshake within the connect deadline (an unanswered SYN, a host name
   * lookup that did not end), reset or closed during the TLS handshake with
   * no TLS alert either way, reset or closed without a reply. */
  XKS_OUTCOME_NOT_REACHABLE,
  /* The TLS handshake failed on TLS terms: certificate untrusted, expired or
   * not yet valid, wrong host name; one side refused the other with an alert
   * (no common protocol version >= 1.2, no common cipher suite).  libcurl's
   * message is in the kerr. */
  XKS_OUTCOME_TLS_ERROR,
  /* A reply that breaks the spec: not JSON, a field missing, mistyped or of
   * the wrong size, larger than XKS_CLIENT_REPLY_MAX, an error name the
   * spec does not give this operation or with another HTTP status, a
   * status with no XKS meaning, a CDIV that does not match. */
  XKS_OUTCOME_INVALID_RESPONSE,
  /* Nothing was sent: the arguments break a rule of the spec (the call
   * returns KERR_VALIDATION). */
  XKS_OUTCOME_BAD_INPUT,
  /* A local failure (memory, libcurl itself, the CA bundle `ca_bundle`
   * unreadable or not PEM when a connection loads it): KERR_INTERNAL.  The
   * request may or may not have reached the proxy. */
  XKS_OUTCOME_LOCAL_ERROR,
} xks_outcome;

/* "OK", "PROXY_ERROR", "TIMED_OUT", ... (static storage; "?" if unknown). */
const char *xks_outcome_name(xks_outcome o);

/* Details of one call, filled by every call (also on success). */
typedef struct xks_call_status {
  xks_outcome outcome;
  xks_error proxy_error;         /* XKS_ERR_NONE unless outcome is PROXY_ERROR */
  long http_status;              /* 0 when no HTTP reply was read */
  long elapsed_ms;               /* from the call's start to its end */
  /* The proxy's errorMessage for logs (printable ASCII, "" when none).  It
   * is the proxy's text: never show it to a KMS caller. */
  char proxy_message[XKS_ERROR_MESSAGE_MAX + 1];
} xks_call_status;

/* How to reach one proxy.  Every string is copied by xks_client_new. */
typedef struct xks_client_config {
  /* XksProxyUriEndpoint: "https://" + host name ([A-Za-z0-9.-], as the
   * model's pattern) and, beyond the model, an optional ":PORT"; 10..128
   * characters. */
  const char *endpoint;
  /* XksProxyUriPath: the model's pattern, e.g. "/example/kms/xks/v1"
   * (10..128 characters of A-Z a-z 0-9 / _ -, ending /kms/xks/v<1-2 digits>). */
  const char *uri_path;
  const char *region;            /* the SigV4 scope region, 1..32 of a-z 0-9 - */
  /* XksProxyAuthenticationCredential: AccessKeyId 20..30 of A-Z 2-7,
   * RawSecretAccessKey 43..64 of A-Z a-z 0-9 + / = (the model's rules). */
  const char *access_key_id;
  const char *secret_access_key;
  const char *ca_bundle;         /* PEM file of trusted CAs; NULL: the system store */
  /* curl's connect-to: "HOST:PORT:TO_HOST:TO_PORT" (a field may be empty,
   * as in curl; an IPv6 TO_HOST in brackets).  Where the connection goes,
   * never which name the certificate must carry. */
  const char *const *connect_to;
  size_t connect_to_count;       /* 0..XKS_CLIENT_CONNECT_TO_MAX */
  long timeout_ms;               /* per call; 0: XKS_CLIENT_DEFAULT_TIMEOUT_MS */
  long connect_timeout_ms;       /* connecting (TCP + TLS) at most this long; 0: the
                                    call's deadline alone bounds it */
  unsigned pool_size;            /* slots (0: XKS_CLIENT_DEFAULT_POOL); at most XKS_CLIENT_POOL_MAX */
  /* A kept connection idle longer is closed, not used; 0 to
   * XKS_CLIENT_KEPT_IDLE_MAX_MS, 0 meaning that maximum.  Not a kmsd flag:
   * tests shorten it. */
  long kept_idle_max_ms;
} xks_client_config;

typedef struct xks_client xks_client;

/* Check `cfg` and build a client; nothing is sent and no connection is
 * made yet.  Errors: KERR_VALIDATION naming the setting that breaks its
 * rule (never quoting the secret), KERR_INTERNAL (memory, libcurl, a
 * `ca_bundle` that is not a file kmsd can open for reading: a fault of
 * kmsd's installation, not of the proxy's settings; the message names the
 * path and the reason).  On
 * success the caller frees *out with xks_client_free; on failure *out is
 * NULL and nothing is left allocated. */
kerr_code xks_client_new(const xks_client_config *cfg, xks_client **out, kerr *err);

/* Close every kept connection, wipe the secret and free.  The SigV4
 * signing-key cache (sigv4_cache_clear) is emptied too, since it keeps a
 * copy of the secret: other users of sigv4 only pay one key derivation
 * for it.  NULL allowed. */
void xks_client_free(xks_client *c);

/* The requestMetadata of a call.  Strings are borrowed for the call.  Each
 * operation sends exactly the fields the spec gives it, and ignores the
 * others: */
typedef struct xks_call_meta {
  const char *kms_request_id;    /* R every operation: the KMS request id (opaque) */
  const char *kms_operation;     /* R every operation: "Encrypt", "CreateKey", "KmsHealthCheck"... */
  const char *aws_principal_arn; /* R metadata/encrypt/decrypt; not sent for health */
  const char *kms_key_arn;       /* R encrypt/decrypt; O metadata (DescribeKey: yes, CreateKey: no) */
  const char *kms_via_service;   /* O metadata/encrypt/decrypt: when a service called KMS */
  const char *aws_source_vpc;    /* O metadata/encrypt/decrypt: when KMS was called on a VPC endpoint */
  const char *aws_source_vpce;   /* O likewise */
} xks_call_meta;

/* The four calls.  Each returns KERR_OK exactly when st->outcome is
 * XKS_OUTCOME_OK, and *st is always filled.  On failure `err` holds
 * xks_client_kerr(st) and a message for logs (operation, URL, outcome,
 * HTTP status, XKS error name, libcurl's message); the result is left
 * empty (zeroed) and need not be freed, though freeing it is harmless.
 * Arguments that break a rule of the spec (a missing required metadata
 * field, an externalKeyId not 1..128 of A-Z a-z 0-9 - . _, a URI over 256
 * characters, sizes out of bounds) are KERR_VALIDATION, BAD_INPUT. */

/* GetHealthStatus.  On success the caller owns *out (xks_health_free). */
kerr_code xks_client_health(xks_client *c, const xks_call_meta *meta, xks_health *out,
                            xks_call_status *st, kerr *err);

/* GetKeyMetadata of `key_id`.  The reply is checked for shape only: whether
 * the key is AES_256, ENCRYPT+DECRYPT and ENABLED is the caller's decision.
 * On success the caller owns *out (xks_key_metadata_free). */
kerr_code xks_client_metadata(xks_client *c, const xks_call_meta *meta, const char *key_id,
                              xks_key_metadata *out, xks_call_status *st, kerr *err);

/* Encrypt `pt` (1..4300 bytes) under `key_id` with the optional AAD (aad may
 * be NULL: no additionalAuthenticatedData; a non-NULL aad of aad_len 0 sends
 * an empty one).  With want_cdiv the request asks for a SHA_256
 * ciphertextDataIntegrityValue and the client recomputes it (xks_cdiv) over
 * the AAD and the reply: a mismatch is INVALID_RESPONSE.  The ciphertext is
 * checked to be as long as the plaintext.  On success the caller owns *out
 * (xks_encrypt_result_free); out->ct_metadata is what the proxy returned
 * and must be kept with the ciphertext and given back to decrypt. */
kerr_code xks_client_encrypt(xks_client *c, const xks_call_meta *meta, const char *key_id,
                             const uint8_t *pt, size_t pt_len, const uint8_t *aad,
                             size_t aad_len, int want_cdiv, xks_encrypt_result *out,
                             xks_call_status *st, kerr *err);

/* What xks_client_decrypt sends besides the metadata.  aad and ct_metadata
 * may be NULL (not sent). */
typedef struct xks_decrypt_input {
  const uint8_t *ciphertext;     /* 1..4300 bytes */
  size_t ciphertext_len;
  const uint8_t *iv;             /* 12 or 16 bytes */
  size_t iv_len;
  const uint8_t *tag;            /* 16 bytes */
  const uint8_t *aad;            /* 0..8192 bytes, or NULL */
  size_t aad_len;
  const uint8_t *ct_metadata;    /* 0..20 bytes, or NULL */
  size_t ct_metadata_len;
} xks_decrypt_input;

/* Decrypt under `key_id`.  The plaintext is checked to be as long as the
 * ciphertext.  On success the caller owns *out (xks_decrypt_result_free:
 * the plaintext is in secure memory and is wiped). */
kerr_code xks_client_decrypt(xks_client *c, const xks_call_meta *meta, const char *key_id,
                             const xks_decrypt_input *in, xks_decrypt_result *out,
                             xks_call_status *st, kerr *err);

/* The kerr code a failed call reports, after the spec's table of KMS
 * exceptions ("Error codes", KMS considerations), column
 * Create/UpdateCustomKeyStore, or CreateKey for the key errors that column
 * lacks:
 *   OK                                -> KERR_OK
 *   TIMED_OUT, NOT_REACHABLE, TLS_ERROR,
 *   DependencyTimeout, Throttling     -> KERR_XKS_PROXY_URI_UNREACHABLE
 *   INVALID_RESPONSE, Validation,
 *   Internal, UnsupportedOperation    -> KERR_XKS_PROXY_INVALID_RESPONSE
 *   AuthenticationFailed              -> KERR_XKS_PROXY_BAD_CREDENTIAL
 *   InvalidUriPath                    -> KERR_XKS_PROXY_INVALID_CONFIG
 *   KeyNotFound                       -> KERR_XKS_KEY_NOT_FOUND
 *   InvalidState, InvalidKeyUsage     -> KERR_XKS_KEY_INVALID_CONFIG
 *   AccessDenied, InvalidCiphertext   -> KERR_INVALID_STATE
 *   BAD_INPUT                         -> KERR_VALIDATION
 *   LOCAL_ERROR                       -> KERR_INTERNAL
 * Cryptographic operations map differently (the table gives
 * KMSInvalidStateException for nearly every failure): callers decide from
 * the status, not from this code. */
kerr_code xks_client_kerr(const xks_call_status *st);

/* The endpoint and path the client was made with (borrowed). */
const char *xks_client_endpoint(const xks_client *c);
const char *xks_client_uri_path(const xks_client *c);

#endif
