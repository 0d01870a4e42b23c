/* handlers_hsm_admin.c - the KmsdHsmAdmin.* operations hsm-cli calls:
 * cluster activation, crypto users, login sessions, failure simulation.
 *
 * Not part of any AWS model, so the members are checked here: every
 * operation names its required string members, and unknown operations are
 * UnknownOperationException.  Passwords are never echoed or logged. */
#include <stdlib.h>
#include <string.h>

#include "api/api_json.h"
#include "api/api_pipeline.h"
#include "cloudhsm/hsm_admin.h"

#define ADMIN_STRING_MAX 256

/* Required string member, bounded. */
static kerr_code need(json_t *in, const char *name, const char **out, kerr *err) {
  kerr_code rc = api_json_get_str(in, name, true, out, err);
  if (rc) return kerr_set(err, KERR_HSM_INVALID_REQUEST, "%s is required and must be a string.", name);
  if (strlen(*out) > ADMIN_STRING_MAX)
    return kerr_set(err, KERR_HSM_INVALID_REQUEST, "%s is too long.", name);
  return KERR_OK;
}

/* One entry of ListUsers. */
static kerr_code user_json(const void *item, json_t **out, kerr *err) {
  const store_hsm_user *u = item;
  *out = json_pack("{s:s,s:s,s:b,s:b}", "Username", u->username, "Role", u->role, "LockedOut",
                   u->locked, "LoggedIn", u->logged_in);
  return *out ? KERR_OK : kerr_set(err, KERR_INTERNAL, "Out of memory.");
}

kerr_code api_hsm_admin_handle(const api_request *req, const char *operation, json_t *in,
                               json_t **out, kerr *err) {
  kms_call call = api_json_call(req);
  const char *cluster = NULL, *user = NULL, *pw = NULL, *role = NULL, *kind = NULL;
  kerr_code rc;
  *out = NULL;
  rc = need(in, "ClusterId", &cluster, err);
  if (rc) {
    /* An unknown operation is reported as such whatever the body. */
    static const char *const ops[] = {"ActivateCluster", "CreateUser", "DeleteUser", "ListUsers",
                                      "ChangePassword", "Login", "Logout", "SimulateFailure"};
    bool known = false;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
      if (strcmp(ops[i], operation) == 0) known = true;
    if (!known) return kerr_set(err, KERR_UNKNOWN_OPERATION, "Unknown operation %s", operation);
    return rc;
  }
  if (strcmp(operation, "ActivateCluster") == 0) {
    rc = need(in, "Password", &pw, err);
    if (!rc) rc = hsm_admin_activate(kms_domain_cloudhsm(req->domain), &call, cluster, pw, err);
    if (!rc) rc = api_json_new_object(out, err);
    if (!rc) rc = api_json_set_str(*out, "State", "ACTIVE", err);
  } else if (strcmp(operation, "CreateUser") == 0) {
    rc = need(in, "Username", &user, err);
    if (!rc) rc = need(in, "Role", &role, err);
    if (!rc) rc = need(in, "Password", &pw, err);
    if (!rc) rc = hsm_admin_create_user(kms_domain_cloudhsm(req->domain), &call, cluster, user, role, pw, err);
  } else if (strcmp(operation, "DeleteUser") == 0) {
    rc = need(in, "Username", &user, err);
    if (!rc) rc = hsm_admin_delete_user(kms_domain_cloudhsm(req->domain), &call, cluster, user, err);
  } else if (strcmp(operation, "ListUsers") == 0) {
    store_hsm_user *users = NULL;
    size_t n = 0;
    rc = hsm_admin_list_users(kms_domain_cloudhsm(req->domain), &call, cluster, &users, &n, err);
    if (!rc) rc = api_json_new_object(out, err);
    if (!rc) rc = api_json_set_array(*out, "Users", users, n, sizeof users[0], user_json, err);
    free(users);
  } else if (strcmp(operation, "ChangePassword") == 0) {
    rc = need(in, "Username", &user, err);
    if (!rc) rc = need(in, "Password", &pw, err);
    if (!rc) rc = hsm_admin_change_password(kms_domain_cloudhsm(req->domain), &call, cluster, user, pw, err);
  } else if (strcmp(operation, "Login") == 0) {
    rc = need(in, "Username", &user, err);
    if (!rc) rc = need(in, "Password", &pw, err);
    if (!rc) rc = hsm_admin_login(kms_domain_cloudhsm(req->domain), &call, cluster, user, pw, err);
  } else if (strcmp(operation, "Logout") == 0) {
    rc = need(in, "Username", &user, err);
    if (!rc) rc = hsm_admin_logout(kms_domain_cloudhsm(req->domain), &call, cluster, user, err);
  } else if (strcmp(operation, "SimulateFailure") == 0) {
    rc = need(in, "Kind", &kind, err);
    if (!rc) rc = hsm_admin_simulate_failure(kms_domain_cloudhsm(req->domain), &call, cluster, kind, err);
  } else {
    return kerr_set(err, KERR_UNKNOWN_OPERATION, "Unknown operation %s", operation);
  }
  if (rc) {
    json_decref(*out);
    *out = NULL;
  }
  return rc;
}
