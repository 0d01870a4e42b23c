/* kms_client_internal.h - what libkms's typed layer needs to know of a client
 * beyond kms.h: which service it talks to, so that a KMS operation is never
 * sent to a CloudHSMv2 endpoint (or the reverse).
 *
 * Internal to libkms: not installed, hidden from libkms.so's exports. */
#ifndef KMSD_CLIENT_KMS_CLIENT_INTERNAL_H
#define KMSD_CLIENT_KMS_CLIENT_INTERNAL_H

#include "kms/kms.h"

/* The service `c` was made for (kms_client_new's first argument); `c` not NULL. */
__attribute__((visibility("hidden"))) kms_service kms_client_service(const kms_client *c);

#endif
