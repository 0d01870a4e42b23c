/* api_admin.c - kmsd's own admin operations (X-Amz-Target: KmsdAdmin.*).
 *
 * They exist for test suites: moving the one service clock lets a seven-day
 * deletion window pass in a second without touching the system clock.  They
 * are served only when kmsd runs with --enable-admin-api, go through the
 * same SigV4 check as every call, and only a principal the credentials file
 * marks "admin" may use them: the clock is shared by every account, so an
 * account's root must not move it for the others.  Sweep runs the deletion
 * and rotation sweep at once, so a test that has moved the clock need not
 * wait for the background sweeper. */
#include "api/api_pipeline.h"

#include <string.h>

#include "core/kclock.h"
#include "core/log.h"
#include "kms/kms_domain.h"

static kerr_code admin_json_result(json_t **out, int64_t offset_s, int with_now, kerr *err) {
  json_t *obj = json_object();
  if (!obj) return kerr_set(err, KERR_INTERNAL, "out of memory");
  if (json_object_set_new(obj, "OffsetSeconds", json_integer(offset_s)) != 0 ||
      (with_now && json_object_set_new(obj, "Now", json_integer(kclock_now_s())) != 0)) {
    json_decref(obj);
    return kerr_set(err, KERR_INTERNAL, "out of memory");
  }
  *out = obj;
  return KERR_OK;
}

static kerr_code advance_clock(const api_request *req, json_t *in, json_t **out, kerr *err) {
  json_t *v = in ? json_object_get(in, "Seconds") : NULL;
  if (!v || json_is_null(v))
    return kerr_set(err, KERR_VALIDATION,
                    "1 validation error detected: Value null at 'seconds' failed to satisfy "
                    "constraint: Member must not be null");
  if (!json_is_integer(v))
    return kerr_set(err, KERR_VALIDATION, "Seconds must be an integer number of seconds");
  json_int_t seconds = json_integer_value(v);
  if (seconds > API_ADMIN_MAX_ADVANCE_S || seconds < -API_ADMIN_MAX_ADVANCE_S)
    return kerr_set(err, KERR_VALIDATION,
                    "1 validation error detected: Value '%lld' at 'seconds' failed to satisfy "
                    "constraint: Member must have value between %lld and %lld",
                    (long long)seconds, -API_ADMIN_MAX_ADVANCE_S, API_ADMIN_MAX_ADVANCE_S);
  int64_t total_ms = kclock_advance_ms((int64_t)seconds * 1000);
  log_msg(LOG_WARN, req->request_id, "admin: %s moved the clock by %lld s; offset now %lld s",
          req->caller->arn, (long long)seconds, (long long)(total_ms / 1000));
  return admin_json_result(out, total_ms / 1000, 0, err);
}

static kerr_code sweep(const api_request *req, json_t **out, kerr *err) {
  if (!req->domain) return kerr_set(err, KERR_INTERNAL, "no domain to sweep");
  kerr_code rc = kms_domain_sweep(req->domain, err);
  if (rc) return rc;
  *out = json_object();
  return *out ? KERR_OK : kerr_set(err, KERR_INTERNAL, "out of memory");
}

kerr_code api_admin_handle(const api_request *req, const char *operation, json_t *in, json_t **out,
                           kerr *err) {
  *out = NULL;
  int is_advance = strcmp(operation, "AdvanceClock") == 0;
  int is_get = strcmp(operation, "GetClock") == 0;
  int is_sweep = strcmp(operation, "Sweep") == 0;
  if (!is_advance && !is_get && !is_sweep)
    return kerr_set(err, KERR_UNKNOWN_OPERATION, "Unknown operation " API_ADMIN_TARGET_PREFIX ".%s",
                    operation);
  /* Moving the clock changes every account's deletion windows and SigV4
   * skew: only the operator's admin principals may do it.  Neither being an
   * account root nor an identity policy grants it. */
  if (!req->caller || !req->caller->is_admin)
    return kerr_set(err, KERR_ACCESS_DENIED,
                    "User: %s is not authorized to perform: " API_ADMIN_TARGET_PREFIX
                    ":%s because the principal is not marked admin in the credentials file",
                    req->caller ? req->caller->arn : "-", operation);
  if (is_advance) return advance_clock(req, in, out, err);
  if (is_sweep) return sweep(req, out, err);
  return admin_json_result(out, kclock_offset_ms() / 1000, 1, err);
}
