/* api_pipeline.h - the one request path of kmsd: HTTP request in, AWS JSON
 * 1.1 reply out.
 *
 * Every request goes through the same steps, in this order, so that an
 * unauthenticated caller learns nothing about operations or bodies:
 *
 *   size limits -> SigV4 (service "kms"; region from the credential scope)
 *   -> operation lookup (X-Amz-Target: TrentService.<Operation>)
 *   -> Content-Type (application/x-amz-json-1.1 or application/json)
 *   -> JSON parse (empty body = {}) -> model validation -> handler
 *   -> JSON reply (Content-Type application/x-amz-json-1.1)
 *
 * Errors leave as {"__type": "<name>", "message": "..."} with the status
 * kerr_http_status gives.  Every reply, errors included, carries a fresh
 * x-amzn-RequestId, and every request writes one log line: request id,
 * principal ARN, operation, outcome, status, latency in microseconds.
 * Bodies, headers and secrets are never logged.
 *
 * GET /health answers 200 {"status":"ok","version":KMSD_VERSION} without
 * authentication.
 * With the admin API enabled, KmsdAdmin.<Operation> targets reach
 * api_admin_handle (see below). */
#ifndef KMSD_API_API_PIPELINE_H
#define KMSD_API_API_PIPELINE_H

#include <jansson.h>

#include "api/api.h"
#include "aws/credentials.h"
#include "core/kerr.h"
#include "http/http_server.h"

#define API_TARGET_MAX 128            /* longest X-Amz-Target accepted */
#define API_ADMIN_TARGET_PREFIX "KmsdAdmin"
#define API_KMS_TARGET_PREFIX "TrentService"
#define API_CLOUDHSM_TARGET_PREFIX "BaldrApiService"  /* SigV4 service "cloudhsm" */
#define API_HSM_ADMIN_TARGET_PREFIX "KmsdHsmAdmin"     /* SigV4 service "cloudhsm" */

typedef struct api_pipeline_config {
  struct kms_domain *domain;   /* handed to handlers as api_request.domain; not owned */
  const creds_store *creds;    /* required; not owned; must outlive the pipeline */
  int enable_admin_api;        /* non-zero: serve KmsdAdmin.* targets */
  /* Non-zero when the server listens on a loopback address only.  A
   * creds_any store (no signature checks) is refused without it. */
  int loopback_only;
  /* Required: where TrentService operations find their handler.  kmsd
   * passes api_kms_handler_find; tests plug in a table of their own.  Taking
   * it as a parameter keeps the pipeline free of a link-time dependency on
   * every handler and, through them, on the whole domain. */
  api_handler_fn (*find_handler)(const char *operation);
} api_pipeline_config;

typedef struct api_pipeline api_pipeline;

/* Create a pipeline over `cfg` (copied).  On KERR_OK *out owns a new
 * pipeline (free with api_pipeline_free); on failure *out is NULL.  Refuses
 * a NULL credentials store or handler lookup (KERR_INTERNAL), and a
 * creds_any store unless loopback_only is set (KERR_VALIDATION). */
kerr_code api_pipeline_new(const api_pipeline_config *cfg, api_pipeline **out, kerr *err);

/* Free the pipeline.  NULL is allowed.  No request may be in flight. */
void api_pipeline_free(api_pipeline *p);

/* The http_handler_fn of kmsd: `ctx` is the api_pipeline.  Fills `resp`
 * completely (status, headers, a body the server frees with a wiping
 * body_free).  Safe to call from many threads at once.  Called with
 * req->may_wait 0 (an HTTP event thread), a request whose domain call would
 * wait on an external key store's proxy is not answered: resp->rerun is set
 * with the request id, start time and SigV4 clock in resp->rerun_state, and
 * no log line is written; the call with that state (may_wait 1, or
 * wait_refused: ThrottlingException / KMSInternalException) answers it as
 * the same request. */
void api_pipeline_handle(void *ctx, const http_request *req, http_response *resp);

/* ---------------------------------------------------------- admin API
 * Implemented in api_admin.c.  Operations, for callers the credentials file
 * marks "admin" only (principal.is_admin; an account root is not enough):
 *   AdvanceClock  {"Seconds": N}  (integer, |N| <= 10 years, may be negative)
 *                 -> {"OffsetSeconds": total offset after the move}
 *   GetClock      {}              -> {"OffsetSeconds": n, "Now": epoch seconds}
 *   Sweep         {}              -> {} once due deletions and rotations ran
 */

/* Ten years of 365 days: the most one AdvanceClock call may move the clock. */
#define API_ADMIN_MAX_ADVANCE_S (10LL * 365 * 24 * 3600)

/* Run admin operation `operation` (the part after "KmsdAdmin.") for the
 * verified `req->caller`.  Returns KERR_OK with *out a new JSON object the
 * caller frees; or KERR_UNKNOWN_OPERATION (no such admin operation),
 * KERR_ACCESS_DENIED (caller is not an admin principal), KERR_VALIDATION (bad
 * Seconds) with `err` filled and *out NULL.  The clock is only moved on
 * success. */
kerr_code api_admin_handle(const api_request *req, const char *operation, json_t *in, json_t **out,
                           kerr *err);

/* ---------------------------------------------------- HSM clusters
 * BaldrApiService.<Op> (the cloudhsmv2 model: CreateCluster,
 * DescribeClusters, InitializeCluster, CreateHsm, DeleteHsm, DeleteCluster,
 * DescribeBackups) and KmsdHsmAdmin.<Op> (hsm-cli: ActivateCluster,
 * CreateUser, DeleteUser, ListUsers, ChangePassword, Login, Logout,
 * SimulateFailure) are signed for service "cloudhsm" and always served. */

/* The handler of a BaldrApiService operation, or NULL (handlers_cloudhsm.c). */
api_handler_fn api_cloudhsm_handler_find(const char *operation);

/* Run KmsdHsmAdmin operation `operation` (handlers_hsm_admin.c).  Returns
 * KERR_OK with *out a new JSON object, or an error (unknown operation ->
 * KERR_UNKNOWN_OPERATION) with *out NULL. */
kerr_code api_hsm_admin_handle(const api_request *req, const char *operation, json_t *in,
                               json_t **out, kerr *err);

#endif
