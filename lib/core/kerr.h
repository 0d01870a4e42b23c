/* kerr.h - the one error type of kmsd: a stable numeric code plus a message.
 *
 * Every fallible function returns a kerr_code (KERR_OK == 0) and, on failure,
 * fills the caller's `kerr` with the code and a human message.  The protocol
 * layer maps codes to the AWS error shape (`__type`, HTTP status).  Codes are
 * persisted nowhere but are part of the SDK's ABI: never renumber one; add new
 * codes at the end of their block.
 *
 * Messages are shown to API callers: they must never contain key material,
 * plaintexts, passwords or secrets. */
#ifndef KMSD_CORE_KERR_H
#define KMSD_CORE_KERR_H

#include <stddef.h>

typedef enum kerr_code {
  KERR_OK = 0,

  /* Protocol and authentication (not in the KMS model; common AWS errors). */
  KERR_INTERNAL = 1,                 /* KMSInternalException, 500 */
  KERR_VALIDATION = 2,               /* ValidationException */
  KERR_SERIALIZATION = 3,            /* SerializationException */
  KERR_UNKNOWN_OPERATION = 4,        /* UnknownOperationException */
  KERR_ACCESS_DENIED = 5,            /* AccessDeniedException */
  KERR_INCOMPLETE_SIGNATURE = 6,     /* IncompleteSignatureException */
  KERR_INVALID_SIGNATURE = 7,        /* InvalidSignatureException */
  KERR_MISSING_AUTH_TOKEN = 8,       /* MissingAuthenticationTokenException */
  KERR_UNRECOGNIZED_CLIENT = 9,      /* UnrecognizedClientException */
  KERR_REQUEST_TOO_LARGE = 10,       /* RequestEntityTooLargeException, 413 */
  KERR_THROTTLING = 11,              /* ThrottlingException */
  KERR_INVALID_CLIENT_TOKEN = 12,    /* InvalidClientTokenId (bad security token) */
  /* Never an answer: the caller's thread may not wait on a backing system
   * over the network (aws_call.must_not_wait), and the operation stopped
   * before it changed anything, so the whole request can run again where it
   * may wait (lib/api/api_pipeline.c, lib/http/http_offload.h).  Mapped to
   * KMSInternalException, 500, should one ever escape. */
  KERR_WOULD_BLOCK = 13,

  /* KMS model errors. */
  KERR_NOT_FOUND = 100,                          /* NotFoundException */
  KERR_ALREADY_EXISTS = 101,                     /* AlreadyExistsException */
  KERR_DISABLED = 102,                           /* DisabledException */
  KERR_INVALID_STATE = 103,                      /* KMSInvalidStateException */
  KERR_INVALID_CIPHERTEXT = 104,                 /* InvalidCiphertextException */
  KERR_INCORRECT_KEY = 105,                      /* IncorrectKeyException */
  KERR_INVALID_KEY_USAGE = 106,                  /* InvalidKeyUsageException */
  KERR_INVALID_ALIAS_NAME = 107,                 /* InvalidAliasNameException */
  KERR_INVALID_ARN = 108,                        /* InvalidArnException */
  KERR_INVALID_MARKER = 109,                     /* InvalidMarkerException */
  KERR_LIMIT_EXCEEDED = 110,                     /* LimitExceededException */
  KERR_MALFORMED_POLICY = 111,                   /* MalformedPolicyDocumentException */
  KERR_TAG = 112,                                /* TagException */
  KERR_UNSUPPORTED_OPERATION = 113,              /* UnsupportedOperationException */
  KERR_DEPENDENCY_TIMEOUT = 114,                 /* DependencyTimeoutException, 503 */
  KERR_KEY_UNAVAILABLE = 115,                    /* KeyUnavailableException, 500 */
  KERR_INVALID_GRANT_TOKEN = 116,                /* InvalidGrantTokenException */
  KERR_INVALID_GRANT_ID = 117,                   /* InvalidGrantIdException */
  KERR_DRY_RUN = 118,                            /* DryRunOperationException */
  KERR_CONFLICT = 119,                           /* ConflictException */
  KERR_INCORRECT_KEY_MATERIAL = 120,             /* IncorrectKeyMaterialException */
  KERR_EXPIRED_IMPORT_TOKEN = 121,               /* ExpiredImportTokenException */
  KERR_INVALID_IMPORT_TOKEN = 122,               /* InvalidImportTokenException */
  KERR_INVALID_MAC = 123,                        /* KMSInvalidMacException */
  KERR_KMS_INVALID_SIGNATURE = 124,              /* KMSInvalidSignatureException */

  /* Custom key stores. */
  KERR_CKS_NOT_FOUND = 200,                      /* CustomKeyStoreNotFoundException */
  KERR_CKS_INVALID_STATE = 201,                  /* CustomKeyStoreInvalidStateException */
  KERR_CKS_NAME_IN_USE = 202,                    /* CustomKeyStoreNameInUseException */
  KERR_CKS_HAS_CMKS = 203,                       /* CustomKeyStoreHasCMKsException */
  KERR_HSM_CLUSTER_IN_USE = 204,                 /* CloudHsmClusterInUseException */
  KERR_HSM_CLUSTER_INVALID_CONFIG = 205,         /* CloudHsmClusterInvalidConfigurationException */
  KERR_HSM_CLUSTER_NOT_ACTIVE = 206,             /* CloudHsmClusterNotActiveException */
  KERR_HSM_CLUSTER_NOT_FOUND = 207,              /* CloudHsmClusterNotFoundException */
  KERR_HSM_CLUSTER_NOT_RELATED = 208,            /* CloudHsmClusterNotRelatedException */
  KERR_INCORRECT_TRUST_ANCHOR = 209,             /* IncorrectTrustAnchorException */
  KERR_XKS_KEY_IN_USE = 210,                     /* XksKeyAlreadyInUseException */
  KERR_XKS_KEY_INVALID_CONFIG = 211,             /* XksKeyInvalidConfigurationException */
  KERR_XKS_KEY_NOT_FOUND = 212,                  /* XksKeyNotFoundException */
  KERR_XKS_PROXY_BAD_CREDENTIAL = 213,           /* XksProxyIncorrectAuthenticationCredentialException */
  KERR_XKS_PROXY_INVALID_CONFIG = 214,           /* XksProxyInvalidConfigurationException */
  KERR_XKS_PROXY_INVALID_RESPONSE = 215,         /* XksProxyInvalidResponseException */
  KERR_XKS_PROXY_URI_ENDPOINT_IN_USE = 216,      /* XksProxyUriEndpointInUseException */
  KERR_XKS_PROXY_URI_IN_USE = 217,               /* XksProxyUriInUseException */
  KERR_XKS_PROXY_URI_UNREACHABLE = 218,          /* XksProxyUriUnreachableException */
  KERR_XKS_VPCE_SERVICE_IN_USE = 219,            /* XksProxyVpcEndpointServiceInUseException */
  KERR_XKS_VPCE_SERVICE_INVALID_CONFIG = 220,    /* XksProxyVpcEndpointServiceInvalidConfigurationException */
  KERR_XKS_VPCE_SERVICE_NOT_FOUND = 221,         /* XksProxyVpcEndpointServiceNotFoundException */

  /* CloudHSMv2 API errors (BaldrApiService). */
  KERR_HSM_ACCESS_DENIED = 300,                  /* CloudHsmAccessDeniedException */
  KERR_HSM_INTERNAL_FAILURE = 301,               /* CloudHsmInternalFailureException */
  KERR_HSM_INVALID_REQUEST = 302,                /* CloudHsmInvalidRequestException */
  KERR_HSM_RESOURCE_NOT_FOUND = 303,             /* CloudHsmResourceNotFoundException */
  KERR_HSM_SERVICE = 304,                        /* CloudHsmServiceException */
  KERR_HSM_TAG = 305,                            /* CloudHsmTagException */
  KERR_HSM_RESOURCE_LIMIT = 306,                 /* CloudHsmResourceLimitExceededException */
} kerr_code;

#define KERR_MSG_MAX 1024

typedef struct kerr {
  kerr_code code;
  char msg[KERR_MSG_MAX];
} kerr;

/* Fill `e` (may be NULL) with `code` and a printf-style message.
 * Messages longer than KERR_MSG_MAX-1 are truncated. */
void kerr_fill(kerr *e, kerr_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* kerr_fill, then yield `code`, so callers write
 * `return kerr_set(e, KERR_NOT_FOUND, "...")`.  A macro rather than a
 * function so that the value returned is visible where it is used: static
 * analysers then know a failure path returns non-zero.  `code` is evaluated
 * twice: pass a constant or a plain variable. */
#define kerr_set(e, code, ...) kerr_pass((kerr_fill((e), (code), __VA_ARGS__), (code)))

static inline kerr_code kerr_pass(kerr_code code) { return code; }

/* Reset `e` to KERR_OK with an empty message. */
void kerr_clear(kerr *e);

/* The AWS error name (`__type`) for a code, e.g. "NotFoundException".
 * Unknown codes map to "KMSInternalException". Static storage. */
const char *kerr_name(kerr_code code);

/* The HTTP status that carries a code: 500 for internal faults, 503 for
 * DependencyTimeoutException, 413 for an oversized request, else 400. */
int kerr_http_status(kerr_code code);

#endif
