/* vpc_registry.h - the Amazon VPC endpoint services kmsd simulates, read from
 * the file of `kmsd --vpc-endpoint-services FILE`.
 *
 * An external key store with VPC_ENDPOINT_SERVICE connectivity names a VPC
 * endpoint service (XksProxyVpcEndpointServiceName); AWS KMS looks it up in
 * the Region and refuses it (XksProxyVpcEndpointServiceNotFoundException,
 * ...InvalidConfigurationException, or the ConnectionErrorCodes
 * XKS_VPC_ENDPOINT_SERVICE_NOT_FOUND / _INVALID_CONFIGURATION) unless it meets
 * the requirements AWS documents for external key stores.  kmsd has no VPC,
 * so the operator describes the services in a JSON file and those refusals
 * become real decisions over it.  Each service also says where its traffic
 * actually goes (`forward_to`, host:port), so a test reaches a proxy on
 * loopback.  docs/xks-vpc-endpoint-services.md documents the format.
 *
 * The file holds no secret.  It is strict JSON: unknown keys, duplicate keys,
 * wrong types and values out of bounds are refused, and a refusal names the
 * file, the key path and the reason ("FILE: services[2].owner: reason").
 *
 * This module knows no lib/kms type: it gives plain structs, a lookup by
 * name and the list of requirements a service fails (vpcr_fault bits), and
 * the caller maps those to the model's exception or ConnectionErrorCode. */
#ifndef KMSD_API_VPC_REGISTRY_H
#define KMSD_API_VPC_REGISTRY_H

#include <stddef.h>

#include "core/kerr.h"

#define VPCR_FILE_MAX ((size_t)256 * 1024)
#define VPCR_SERVICES_MAX 256
#define VPCR_PRINCIPALS_MAX 64       /* allowed principals of one service */
#define VPCR_ZONES_MAX 16            /* Availability Zones of one service */
#define VPCR_NAME_MIN 20             /* XksProxyVpcEndpointServiceNameType */
#define VPCR_NAME_MAX 64
#define VPCR_ACCOUNT_LEN 12          /* AccountIdType */
#define VPCR_REGION_MAX 32
#define VPCR_DNS_NAME_MAX 253        /* private DNS name, forward host */
#define VPCR_PRINCIPAL_MAX 2048      /* an ARN, a service principal or "*" */
#define VPCR_ZONE_MAX 32

/* ServiceType of the endpoint service: KMS needs interface endpoints. */
typedef enum vpcr_service_type {
  VPCR_TYPE_INTERFACE = 0,           /* "Interface" (default) */
  VPCR_TYPE_GATEWAY_LOAD_BALANCER,   /* "GatewayLoadBalancer" */
} vpcr_service_type;

/* ServiceState, as DescribeVpcEndpointServiceConfigurations spells it. */
typedef enum vpcr_state {
  VPCR_STATE_AVAILABLE = 0,          /* "Available" (default) */
  VPCR_STATE_PENDING,                /* "Pending" */
  VPCR_STATE_DELETING,               /* "Deleting" */
  VPCR_STATE_DELETED,                /* "Deleted" */
  VPCR_STATE_FAILED,                 /* "Failed" */
} vpcr_state;

/* Verification state of the private DNS name's domain
 * (PrivateDnsNameConfiguration.State). */
typedef enum vpcr_dns_state {
  VPCR_DNS_PENDING = 0,              /* "pendingVerification" (default) */
  VPCR_DNS_VERIFIED,                 /* "verified" */
  VPCR_DNS_FAILED,                   /* "failed" */
} vpcr_dns_state;

typedef struct vpc_service {
  char name[VPCR_NAME_MAX + 1];      /* matches XksProxyVpcEndpointServiceNameType */
  char owner[VPCR_ACCOUNT_LEN + 1];  /* 12 digits */
  char region[VPCR_REGION_MAX + 1];  /* the Region part of the name */
  vpcr_service_type type;
  vpcr_state state;
  char private_dns_name[VPCR_DNS_NAME_MAX + 1]; /* "" when the service has none */
  vpcr_dns_state private_dns_state;  /* VPCR_DNS_PENDING when there is no name */
  int acceptance_required;           /* 1: connection requests wait for acceptance */
  char **allowed_principals;         /* allowed_principal_count strings, distinct */
  size_t allowed_principal_count;    /* 0..VPCR_PRINCIPALS_MAX */
  char **zones;                      /* Availability Zones of its load balancer, distinct */
  size_t zone_count;                 /* 1..VPCR_ZONES_MAX */
  char forward_host[VPCR_DNS_NAME_MAX + 1]; /* a DNS name, IPv4 or IPv6 (no brackets) */
  unsigned forward_port;             /* 1..65535 */
} vpc_service;

typedef struct vpc_registry {
  vpc_service *services;             /* names distinct */
  size_t count;                      /* 0..VPCR_SERVICES_MAX */
} vpc_registry;

/* Parse the text of a registry file (`len` bytes, need not be
 * NUL-terminated); `name` is the file name errors start with (NULL:
 * "vpc-endpoint-services").  On KERR_OK *out is a new registry (free with
 * vpc_registry_free).  On failure *out is NULL and err holds KERR_VALIDATION
 * "NAME: path: reason" (or KERR_INTERNAL when memory runs out). */
kerr_code vpc_registry_parse(const char *text, size_t len, const char *name, vpc_registry **out,
                             kerr *err);

/* Read and parse the file at `path` (a regular file of at most
 * VPCR_FILE_MAX bytes).  As vpc_registry_parse; errors start with `path`. */
kerr_code vpc_registry_load(const char *path, vpc_registry **out, kerr *err);

/* Free a registry and everything in it; NULL is fine. */
void vpc_registry_free(vpc_registry *r);

/* The service named exactly `name`, or NULL (also for a NULL registry or
 * name).  The pointer lives as long as the registry. */
const vpc_service *vpc_registry_find(const vpc_registry *r, const char *name);

/* What the external key store asks of its service. */
typedef struct vpc_expectation {
  const char *region;        /* the Region kmsd serves (KMS looks there only) */
  const char *owner;         /* XksProxyVpcEndpointServiceOwner when given, else the
                              * key store's own account */
  const char *endpoint_host; /* host of XksProxyUriEndpoint (after "https://"); it
                              * must be the private DNS name; NULL: not checked */
} vpc_expectation;

/* The requirements a service can fail, as bits.  The first group makes the
 * service invisible to KMS (NotFound); the second is a service KMS sees but
 * cannot use (InvalidConfiguration). */
typedef enum vpcr_fault {
  VPCR_FAULT_UNKNOWN = 1u << 0,            /* no service of that name in the registry */
  VPCR_FAULT_OTHER_REGION = 1u << 1,       /* the service is in another Region */
  VPCR_FAULT_OTHER_OWNER = 1u << 2,        /* owned by another account than expected */
  VPCR_FAULT_KMS_NOT_ALLOWED = 1u << 3,    /* allowed principals lack cks.kms.<region>.amazonaws.com */
  VPCR_FAULT_DELETED = 1u << 4,            /* state Deleting or Deleted */
  VPCR_FAULT_NOT_AVAILABLE = 1u << 5,      /* state Pending or Failed */
  VPCR_FAULT_NOT_INTERFACE = 1u << 6,      /* a Gateway Load Balancer service */
  VPCR_FAULT_ONE_ZONE = 1u << 7,           /* fewer than two Availability Zones */
  VPCR_FAULT_ACCEPTANCE_REQUIRED = 1u << 8,/* connection requests must be accepted */
  VPCR_FAULT_NO_PRIVATE_DNS = 1u << 9,     /* no private DNS name */
  VPCR_FAULT_DNS_NOT_VERIFIED = 1u << 10,  /* its domain is not verified */
  VPCR_FAULT_ENDPOINT_MISMATCH = 1u << 11, /* XksProxyUriEndpoint is not https://<private DNS name> */
} vpcr_fault;

#define VPCR_FAULTS_NOT_FOUND                                                              \
  ((unsigned)(VPCR_FAULT_UNKNOWN | VPCR_FAULT_OTHER_REGION | VPCR_FAULT_OTHER_OWNER |     \
              VPCR_FAULT_KMS_NOT_ALLOWED | VPCR_FAULT_DELETED))
#define VPCR_FAULTS_INVALID                                                                \
  ((unsigned)(VPCR_FAULT_NOT_AVAILABLE | VPCR_FAULT_NOT_INTERFACE | VPCR_FAULT_ONE_ZONE |  \
              VPCR_FAULT_ACCEPTANCE_REQUIRED | VPCR_FAULT_NO_PRIVATE_DNS |                 \
              VPCR_FAULT_DNS_NOT_VERIFIED | VPCR_FAULT_ENDPOINT_MISMATCH))

/* Every requirement `s` fails for `want` (0: it meets them all).  Fields of
 * `want` that are NULL are not checked.  Pure; thread-safe. */
unsigned vpc_service_check(const vpc_service *s, const vpc_expectation *want);

/* The verdict on a name: what KMS would answer. */
typedef enum vpcr_verdict {
  VPCR_OK = 0,
  VPCR_NOT_FOUND,                  /* XksProxyVpcEndpointServiceNotFoundException,
                                    * XKS_VPC_ENDPOINT_SERVICE_NOT_FOUND */
  VPCR_INVALID_CONFIGURATION,      /* XksProxyVpcEndpointServiceInvalidConfigurationException,
                                    * XKS_VPC_ENDPOINT_SERVICE_INVALID_CONFIGURATION */
} vpcr_verdict;

/* Look `name` up in `r` (NULL: an empty registry) and check it.  Not-found
 * faults win over invalid ones.  *faults (may be NULL) gets every fault bit;
 * *svc (may be NULL) the service, or NULL when there is none. */
vpcr_verdict vpc_registry_judge(const vpc_registry *r, const char *name,
                                const vpc_expectation *want, unsigned *faults,
                                const vpc_service **svc);

/* A sentence fragment for one fault bit ("it requires acceptance of
 * connection requests"), or NULL for anything else.  Static storage; names
 * no value from the file. */
const char *vpc_fault_text(unsigned fault);

/* "; "-joined fault texts of `faults` into buf (always NUL-terminated,
 * cut at cap).  Returns buf. */
char *vpc_faults_describe(unsigned faults, char *buf, size_t cap);

#endif
