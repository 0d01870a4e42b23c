/* api.h - the protocol layer's contract with operation handlers.
 *
 * The request pipeline (api_pipeline.c) has already checked size limits,
 * verified SigV4, parsed the JSON body and validated it against the model
 * tables when a handler runs.  A handler maps the JSON input to a domain call
 * and the domain result back to JSON; it never touches HTTP or SQL.
 *
 * Handlers return KERR_OK and set *out to a new JSON object (owned by the
 * pipeline, which serializes and frees it), or an error code with `err`
 * filled; the pipeline then writes the AWS error shape. */
#ifndef KMSD_API_API_H
#define KMSD_API_API_H

#include <jansson.h>
#include <stdbool.h>

#include "aws/call.h"
#include "aws/principal.h"
#include "core/kerr.h"

struct kms_domain;

typedef struct api_request {
  struct kms_domain *domain;   /* the service's domain state */
  const principal *caller;     /* authenticated caller; never NULL in a handler */
  const char *request_id;      /* for logs and the x-amzn-RequestId header */
  const char *operation;       /* "Encrypt" */
  const char *region;          /* region from the SigV4 credential scope */
  /* The handler's thread must not wait on a backing system over the
   * network: copied into the domain call (aws_call.must_not_wait), whose
   * KERR_WOULD_BLOCK the handler passes on unchanged. */
  bool must_not_wait;
  /* Copied into the domain call (aws_call.wait): what the request waited
   * on, or would have.  May be NULL. */
  aws_wait *wait;
} api_request;

typedef kerr_code (*api_handler_fn)(const api_request *req, json_t *in, json_t **out, kerr *err);

typedef struct api_handler {
  const char *operation;       /* model operation name, e.g. "CreateKey" */
  api_handler_fn fn;
} api_handler;

/* The handler for a TrentService operation, or NULL if kmsd does not serve it. */
api_handler_fn api_kms_handler_find(const char *operation);

#endif
