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
 * wipes it in aws_http_reply_free.
 *
 * Both hsm-cli and libkms (lib/client/kms_client.c) use it: hsm-cli with the
 * defaults of aws_http_client_new, libkms with aws_http_client_new_with and
 * its own timeouts, reply cap, TLS and signing choices.  Failures without a
 * reply are classified (aws_http_failure) so a caller can decide whether a
 * retry makes sense without reading messages. */
#ifndef KMSD_CLIENT_AWS_HTTP_H
#define KMSD_CLIENT_AWS_HTTP_H

#include <stddef.h>

#include "client/aws_config.h"
#include "core/kerr.h"

#define AWS_HTTP_REPLY_MAX (4 * 1024 * 1024)
/* An error reply's body is parsed as JSON only up to this size; a larger one
 * is reported by its status (and its first bytes). */
#define AWS_HTTP_ERROR_PARSE_MAX (64 * 1024)
/* The longest request header line ("X-Amz-Security-Token: ..." is the
 * longest: STS and SSO tokens run to a few KiB). */
#define AWS_HTTP_HEADER_MAX (16 * 1024)

typedef struct aws_http_client aws_http_client;

/* Why no usable reply arrived (aws_http_reply.failure). */
typedef enum aws_http_failure {
  AWS_HTTP_NO_FAILURE = 0,
  AWS_HTTP_FAIL_CONNECT,          /* DNS, TCP connect or TLS handshake failed */
  AWS_HTTP_FAIL_CERTIFICATE,      /* the server's certificate was not trusted */
  AWS_HTTP_FAIL_CONNECT_TIMEOUT,  /* the connection was not up in time */
  AWS_HTTP_FAIL_READ_TIMEOUT,     /* no byte for read_timeout_ms, or the call's total time ran out */
  AWS_HTTP_FAIL_CLOSED,           /* the connection broke while sending or receiving */
  AWS_HTTP_FAIL_TOO_LARGE,        /* the reply exceeded the client's cap */
  AWS_HTTP_FAIL_MEMORY,           /* out of memory while building the request or collecting the reply */
  AWS_HTTP_FAIL_OTHER,            /* anything else (signing, a libcurl failure) */
} aws_http_failure;

/* How a client connects, waits, verifies and signs.  A zero timeout means
 * "no limit" (for connect_timeout_ms: the longest libcurl takes, INT_MAX ms,
 * about 24.8 days; the system's own TCP connect retries may give up sooner). */
typedef struct aws_http_options {
  long connect_timeout_ms;  /* TCP connect plus TLS handshake */
  long read_timeout_ms;     /* longest silence while the request is sent and the reply read */
  long total_timeout_ms;    /* the whole call */
  size_t reply_max;         /* largest reply body accepted; 0: AWS_HTTP_REPLY_MAX */
  int no_verify_ssl;        /* 1: accept any server certificate (tests only) */
  int no_sign;              /* 1: send the request without Authorization; no credentials needed */
  const char *user_agent;   /* copied; NULL: "kmsd-client/1" */
} aws_http_options;

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
  aws_http_failure failure;  /* after a call that returned an error: why no reply */
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

/* aws_http_client_new with explicit options (see aws_http_options; `opts`
 * is copied).  With opts->no_sign, cfg needs no credentials (but still an
 * endpoint).  aws_http_client_new is this function with a 10 s connect
 * timeout, a 60 s total timeout and no read timeout. */
kerr_code aws_http_client_new_with(const aws_config *cfg, const char *service, const aws_http_options *opts,
                                   aws_http_client **out, kerr *err);

/* NULL is allowed. */
void aws_http_client_free(aws_http_client *c);

/* Seconds allowed to connect and for the whole call (defaults 10 and 60);
 * a value <= 0 leaves that timeout as it is. */
void aws_http_client_set_timeouts(aws_http_client *c, long connect_s, long total_s);

/* POST `body` (JSON text, `len` bytes, not copied) with X-Amz-Target `target`
 * ("KmsdHsmAdmin.Login"), signed at the current time.
 *
 * KERR_OK means a reply arrived, whatever its status: the caller reads
 * out->status / out->error_type.  Any other code means no reply: the
 * endpoint could not be reached, TLS failed, the call timed out or the reply
 * exceeded the cap (KERR_DEPENDENCY_TIMEOUT, with a message that
 * starts "Could not connect to the endpoint URL" for connection failures),
 * or signing failed (KERR_VALIDATION); out->failure says which.  *out is
 * always initialised; free it with aws_http_reply_free even after a
 * failure.  out->request_id is kept when a reply started to arrive.
 * Messages name the endpoint, never a header value or the body. */
kerr_code aws_http_call(aws_http_client *c, const char *target, const char *body, size_t len, aws_http_reply *out,
                        kerr *err);

/* Wipe and free the reply's body and zero it. NULL is allowed. */
void aws_http_reply_free(aws_http_reply *r);

/* The endpoint URL the client posts to (borrowed from its config). */
const char *aws_http_client_endpoint(const aws_http_client *c);

#endif
