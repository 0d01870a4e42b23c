/* kerr.c - error codes to AWS error names and HTTP statuses. */
#include "core/kerr.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void kerr_fill(kerr *e, kerr_code code, const char *fmt, ...) {
  if (e) {
    va_list ap;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
  }
}

void kerr_clear(kerr *e) {
  if (e) {
    e->code = KERR_OK;
    e->msg[0] = '\0';
  }
}

static const struct {
  kerr_code code;
  const char *name;
  int status;
} kerr_table[] = {
    {KERR_INTERNAL, "KMSInternalException", 500},
    {KERR_VALIDATION, "ValidationException", 400},
    {KERR_SERIALIZATION, "SerializationException", 400},
    {KERR_UNKNOWN_OPERATION, "UnknownOperationException", 400},
    {KERR_ACCESS_DENIED, "AccessDeniedException", 400},
    {KERR_INCOMPLETE_SIGNATURE, "IncompleteSignatureException", 400},
    {KERR_INVALID_SIGNATURE, "InvalidSignatureException", 400},
    {KERR_MISSING_AUTH_TOKEN, "MissingAuthenticationTokenException", 400},
    {KERR_UNRECOGNIZED_CLIENT, "UnrecognizedClientException", 400},
    {KERR_REQUEST_TOO_LARGE, "RequestEntityTooLargeException", 413},
    {KERR_THROTTLING, "ThrottlingException", 400},
    {KERR_INVALID_CLIENT_TOKEN, "UnrecognizedClientException", 400},
    {KERR_WOULD_BLOCK, "KMSInternalException", 500},
    {KERR_NOT_FOUND, "NotFoundException", 400},
    {KERR_ALREADY_EXISTS, "AlreadyExistsException", 400},
    {KERR_DISABLED, "DisabledException", 400},
    {KERR_INVALID_STATE, "KMSInvalidStateException", 400},
    {KERR_INVALID_CIPHERTEXT, "InvalidCiphertextException", 400},
    {KERR_INCORRECT_KEY, "IncorrectKeyException", 400},
    {KERR_INVALID_KEY_USAGE, "InvalidKeyUsageException", 400},
    {KERR_INVALID_ALIAS_NAME, "InvalidAliasNameException", 400},
    {KERR_INVALID_ARN, "InvalidArnException", 400},
    {KERR_INVALID_MARKER, "InvalidMarkerException", 400},
    {KERR_LIMIT_EXCEEDED, "LimitExceededException", 400},
    {KERR_MALFORMED_POLICY, "MalformedPolicyDocumentException", 400},
    {KERR_TAG, "TagException", 400},
    {KERR_UNSUPPORTED_OPERATION, "UnsupportedOperationException", 400},
    {KERR_DEPENDENCY_TIMEOUT, "DependencyTimeoutException", 503},
    {KERR_KEY_UNAVAILABLE, "KeyUnavailableException", 500},
    {KERR_INVALID_GRANT_TOKEN, "InvalidGrantTokenException", 400},
    {KERR_INVALID_GRANT_ID, "InvalidGrantIdException", 400},
    {KERR_DRY_RUN, "DryRunOperationException", 412},
    {KERR_CONFLICT, "ConflictException", 400},
    {KERR_INCORRECT_KEY_MATERIAL, "IncorrectKeyMaterialException", 400},
    {KERR_EXPIRED_IMPORT_TOKEN, "ExpiredImportTokenException", 400},
    {KERR_INVALID_IMPORT_TOKEN, "InvalidImportTokenException", 400},
    {KERR_INVALID_MAC, "KMSInvalidMacException", 400},
    {KERR_KMS_INVALID_SIGNATURE, "KMSInvalidSignatureException", 400},
    {KERR_CKS_NOT_FOUND, "CustomKeyStoreNotFoundException", 400},
    {KERR_CKS_INVALID_STATE, "CustomKeyStoreInvalidStateException", 400},
    {KERR_CKS_NAME_IN_USE, "CustomKeyStoreNameInUseException", 400},
    {KERR_CKS_HAS_CMKS, "CustomKeyStoreHasCMKsException", 400},
    {KERR_HSM_CLUSTER_IN_USE, "CloudHsmClusterInUseException", 400},
    {KERR_HSM_CLUSTER_INVALID_CONFIG, "CloudHsmClusterInvalidConfigurationException", 400},
    {KERR_HSM_CLUSTER_NOT_ACTIVE, "CloudHsmClusterNotActiveException", 400},
    {KERR_HSM_CLUSTER_NOT_FOUND, "CloudHsmClusterNotFoundException", 400},
    {KERR_HSM_CLUSTER_NOT_RELATED, "CloudHsmClusterNotRelatedException", 400},
    {KERR_INCORRECT_TRUST_ANCHOR, "IncorrectTrustAnchorException", 400},
    {KERR_XKS_KEY_IN_USE, "XksKeyAlreadyInUseException", 400},
    {KERR_XKS_KEY_INVALID_CONFIG, "XksKeyInvalidConfigurationException", 400},
    {KERR_XKS_KEY_NOT_FOUND, "XksKeyNotFoundException", 400},
    {KERR_XKS_PROXY_BAD_CREDENTIAL, "XksProxyIncorrectAuthenticationCredentialException", 400},
    {KERR_XKS_PROXY_INVALID_CONFIG, "XksProxyInvalidConfigurationException", 400},
    {KERR_XKS_PROXY_INVALID_RESPONSE, "XksProxyInvalidResponseException", 400},
    {KERR_XKS_PROXY_URI_ENDPOINT_IN_USE, "XksProxyUriEndpointInUseException", 400},
    {KERR_XKS_PROXY_URI_IN_USE, "XksProxyUriInUseException", 400},
    {KERR_XKS_PROXY_URI_UNREACHABLE, "XksProxyUriUnreachableException", 400},
    {KERR_XKS_VPCE_SERVICE_IN_USE, "XksProxyVpcEndpointServiceInUseException", 400},
    {KERR_XKS_VPCE_SERVICE_INVALID_CONFIG, "XksProxyVpcEndpointServiceInvalidConfigurationException", 400},
    {KERR_XKS_VPCE_SERVICE_NOT_FOUND, "XksProxyVpcEndpointServiceNotFoundException", 400},
    {KERR_HSM_ACCESS_DENIED, "CloudHsmAccessDeniedException", 400},
    {KERR_HSM_INTERNAL_FAILURE, "CloudHsmInternalFailureException", 500},
    {KERR_HSM_INVALID_REQUEST, "CloudHsmInvalidRequestException", 400},
    {KERR_HSM_RESOURCE_NOT_FOUND, "CloudHsmResourceNotFoundException", 400},
    {KERR_HSM_SERVICE, "CloudHsmServiceException", 400},
    {KERR_HSM_TAG, "CloudHsmTagException", 400},
    {KERR_HSM_RESOURCE_LIMIT, "CloudHsmResourceLimitExceededException", 400},
};

static int kerr_index(kerr_code code) {
  for (size_t i = 0; i < sizeof kerr_table / sizeof kerr_table[0]; i++)
    if (kerr_table[i].code == code) return (int)i;
  return -1;
}

const char *kerr_name(kerr_code code) {
  int i = kerr_index(code);
  return i < 0 ? "KMSInternalException" : kerr_table[i].name;
}

int kerr_http_status(kerr_code code) {
  int i = kerr_index(code);
  return i < 0 ? 500 : kerr_table[i].status;
}
