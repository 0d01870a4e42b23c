/* aws_http.h - a small client for AWS JSON 1.1 APIs: sign with SigV4, POST, parse errors.
 *
 * kmsd's command-line tools (hsm-cli now, the kms CLI later) talk to kmsd as
 * the AWS SDKs do: one POST to the endpoint with `X-Amz-Target: Service.Op`,
 * Content-Type application/x-amz-json-1.1, signed with SigV4 (lib/aws/sigv4.h)
 * for the caller's credentials (lib/client/aws_config.h).  libcurl carries
 * the request; jansson reads the AWS error shape
 * ({"__type": "ns#Name", "message": "..."}) so callers get the error name and
 * message without parsing anything.
 *
 * Request and reply bodies may hold secrets (passwords, plaintexts): the
 * client never copies the request body, keeps the reply in secure memory and
 * wipes it in aws_http_reply_free. */
#ifndef KMSD_CLIENT_AWS_HTTP_H
#define KMSD_CLIENT_AWS_HTTP_H

#include <stddef.h>

#include "client/aws_config.h"
#include "core/kerr.h"

#define AWS_HTTP_REPLY_MAX (4 * 1024 * 1024)

typedef struct aws_http_client aws_http_client;

/* One reply.  `body` is NUL-terminated secure memory owned by the reply. */
typedef struct aws_http_reply {
  long status;               /* HTTP status */
  char *body;
  size_t body_len;
  char request_id[128];      /* x-amzn-RequestId, "" when absent */
  char error_type[128];      /* on status >= 300: the AWS error name without
                                namespace ("CloudHsmAccessDeniedException"),
                                or the status number when the body is not
                                an AWS error; "" on success */
  char error_message[1024];  /* on status >= 300: the error's message ("" if none) */
} aws_http_reply;

/* A client that signs for `service` ("kms", "cloudhsm") with the credentials
 * and region of `cfg`, and posts to cfg->endpoint_url (http or https; https
 * verifies the server with cfg->ca_bundle when set, else the system store).
 * `cfg` is borrowed and must outlive the client.
 * Errors: KERR_VALIDATION when credentials, region or the endpoint URL are
 * missing or the URL is not an http(s) URL (the message says which);
 * KERR_INTERNAL when libcurl cannot start.  *out is NULL after a failure.
 * Free with aws_http_client_free. */
kerr_code aws_http_client_new(const aws_config *cfg, const char *service, aws_http_client **out, kerr *err);

/* NULL is allowed. */
void aws_http_client_free(aws_http_client *c);

/* Seconds allowed to connect and for the whole call (defaults 10 and 60). */
void aws_http_client_set_timeouts(aws_http_client *c, long connect_s, long total_s);

/* POST `body` (JSON text, `len` bytes, not copied) with X-Amz-Target `target`
 * ("KmsdHsmAdmin.Login"), signed at the current time.
 *
 * KERR_OK means a reply arrived, whatever its status: the caller reads
 * out->status / out->error_type.  Any other code means no reply: the
 * endpoint could not be reached, TLS failed, the call timed out or the reply
 * exceeded AWS_HTTP_REPLY_MAX (KERR_DEPENDENCY_TIMEOUT, with a message that
 * starts "Could not connect to the endpoint URL" for connection failures),
 * or signing failed (KERR_VALIDATION).  *out is always initialised; free it
 * with aws_http_reply_free even after a failure. */
kerr_code aws_http_call(aws_http_client *c, const char *target, const char *body, size_t len, aws_http_reply *out,
                        kerr *err);

/* Wipe and free the reply's body and zero it. NULL is allowed. */
void aws_http_reply_free(aws_http_reply *r);

/* The endpoint URL the client posts to (borrowed from its config). */
const char *aws_http_client_endpoint(const aws_http_client *c);

#endif
