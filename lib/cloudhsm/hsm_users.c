/* hsm_users.c - kmsd's cluster administration (KmsdHsmAdmin, driven by
 * hsm-cli): activation, crypto users with salted password hashes, lockout
 * after five failed logins, login sessions and failure simulation.
 *
 * kmsuser is special: its password is the user PIN of every HSM token of the
 * cluster, so creating it or changing its password re-keys the tokens (SO
 * login + C_InitPIN) and a PKCS#11 login really checks it. */
#include "cloudhsm/hsm_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/authz.h"
#include "core/log.h"
#include "core/secmem.h"

static kerr_code authorize(const aws_call *call, const char *op, const char *cluster_id,
                           kerr *err) {
  char action[64], arn[256];
  kerr_code rc = aws_call_check(call, err);
  if (rc) return rc;
  snprintf(action, sizeof action, "cloudhsm:%s", op);
  snprintf(arn, sizeof arn, "arn:aws:cloudhsm:%s:%s:cluster/%s", call->region,
           call->caller->account_id, cluster_id);
  authz_request req = {
      .caller = call->caller,
      .action = action,
      .resource_arn = arn,
      .resource_account = call->caller->account_id,
      .key_policy = NULL,
  };
  rc = authz_check(&req, err);
  /* CloudHSMv2 names its denial CloudHsmAccessDeniedException; callers (boto3's
   * cloudhsmv2 client, hsm-cli) match on that name, not on KMS's. */
  if (rc == KERR_ACCESS_DENIED) {
    err->code = KERR_HSM_ACCESS_DENIED;
    rc = KERR_HSM_ACCESS_DENIED;
  }
  return rc;
}

static kerr_code check_password(const char *password, kerr *err) {
  size_t n = password ? strlen(password) : 0;
  if (n < HSM_PASSWORD_MIN || n > HSM_PASSWORD_MAX)
    return kerr_set(err, KERR_HSM_INVALID_REQUEST, "Passwords are 7 to 32 characters.");
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)password[i] < 0x20 || password[i] == 0x7f)
      return kerr_set(err, KERR_HSM_INVALID_REQUEST, "Passwords may not contain control characters.");
  return KERR_OK;
}

static kerr_code check_username(const char *username, kerr *err) {
  size_t n = username ? strlen(username) : 0;
  if (n < 1 || n > HSM_USERNAME_MAX)
    return kerr_set(err, KERR_HSM_INVALID_REQUEST, "Usernames are 1 to 31 characters.");
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)username[i]) && username[i] != '_')
      return kerr_set(err, KERR_HSM_INVALID_REQUEST,
                      "Usernames contain only letters, digits and underscores.");
  return KERR_OK;
}

/* Begin a write transaction on the caller's cluster; with `need_active`,
 * it must be ACTIVE.  On failure the transaction is rolled back and `c` is
 * left empty. */
static kerr_code open_cluster(hsm_service *svc, const aws_call *call, const char *op,
                              const char *cluster_id, bool need_active, store_tx **tx,
                              store_hsm_cluster *c, kerr *err) {
  kerr_code rc = authorize(call, op, cluster_id, err);
  if (rc) return rc;
  rc = hsmi_begin(svc, true, tx, err);
  if (rc) return rc;
  rc = svc->st->ops->hsm->cluster_get(*tx, cluster_id, c, err);
  if (rc == KERR_NOT_FOUND ||
      (!rc && (strcmp(c->account_id, call->caller->account_id) != 0 ||
               strcmp(c->region, call->region) != 0 || strcmp(c->state, "DELETED") == 0))) {
    store_hsm_cluster_clear(c);
    rc = kerr_set(err, KERR_HSM_RESOURCE_NOT_FOUND, "Cluster %s not found.", cluster_id);
  }
  if (!rc && need_active && strcmp(c->state, "ACTIVE") != 0)
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST, "Cluster %s is %s, not ACTIVE.", cluster_id,
                  c->state);
  if (rc) {
    if (*tx) svc->st->ops->rollback(*tx);
    *tx = NULL;
    store_hsm_cluster_clear(c);
  }
  return rc;
}

static kerr_code get_user(hsm_service *svc, store_tx *tx, const char *cluster_id,
                          const char *username, store_hsm_user *u, kerr *err) {
  kerr_code rc = svc->st->ops->hsm->user_get(tx, cluster_id, username, u, err);
  if (rc == KERR_NOT_FOUND)
    return kerr_set(err, KERR_HSM_RESOURCE_NOT_FOUND, "User %s not found in cluster %s.",
                    username, cluster_id);
  return rc;
}

static kerr_code finish(hsm_service *svc, store_tx *tx, kerr_code rc, kerr *err) {
  if (!tx) return rc;
  if (rc) {
    svc->st->ops->rollback(tx);
    return rc;
  }
  return svc->st->ops->commit(tx, err);
}

kerr_code hsm_admin_activate(hsm_service *svc, const aws_call *call, const char *cluster_id,
                             const char *password, kerr *err) {
  store_tx *tx = NULL;
  store_hsm_cluster c;
  store_hsm *hsms = NULL;
  size_t n = 0;
  store_hsm_user u;
  memset(&c, 0, sizeof c);
  memset(&u, 0, sizeof u);
  kerr_code rc = check_password(password, err);
  if (rc) return rc;
  rc = open_cluster(svc, call, "ActivateCluster", cluster_id, false, &tx, &c, err);
  if (rc) return rc;
  if (strcmp(c.state, "INITIALIZED") != 0) {
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST,
                  "Cluster %s is %s; only an INITIALIZED cluster can be activated.", cluster_id,
                  c.state);
    goto out;
  }
  rc = hsmi_active_hsms(svc, tx, cluster_id, &hsms, &n, err);
  if (rc) goto out;
  if (n == 0) {
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST,
                  "Cluster %s has no active HSM to activate; create one first.", cluster_id);
    goto out;
  }
  snprintf(u.cluster_id, sizeof u.cluster_id, "%s", cluster_id);
  snprintf(u.username, sizeof u.username, "admin");
  snprintf(u.role, sizeof u.role, "admin");
  rc = hsmi_password_set(&u, password, err);
  if (!rc) rc = svc->st->ops->hsm->user_put(tx, &u, err);
  if (!rc) rc = hsmi_cluster_set_state(svc, tx, &c, "ACTIVE", "", err);
out:
  rc = finish(svc, tx, rc, err);
  free(hsms);
  store_hsm_cluster_clear(&c);
  return rc;
}

kerr_code hsm_admin_create_user(hsm_service *svc, const aws_call *call, const char *cluster_id,
                                const char *username, const char *role, const char *password,
                                kerr *err) {
  store_tx *tx = NULL;
  store_hsm_cluster c;
  store_hsm_user u;
  memset(&c, 0, sizeof c);
  memset(&u, 0, sizeof u);
  kerr_code rc = check_username(username, err);
  if (!rc) rc = check_password(password, err);
  if (!rc && (!role || (strcmp(role, "crypto-user") != 0 && strcmp(role, "admin") != 0)))
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST, "Role must be crypto-user or admin.");
  if (!rc && strcmp(username, HSMI_KMSUSER) == 0 && strcmp(role, "crypto-user") != 0)
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST, "kmsuser must be a crypto-user.");
  if (rc) return rc;
  rc = open_cluster(svc, call, "CreateUser", cluster_id, true, &tx, &c, err);
  if (rc) return rc;
  rc = svc->st->ops->hsm->user_get(tx, cluster_id, username, &u, err);
  if (rc == KERR_OK) {
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST, "User %s already exists in cluster %s.",
                  username, cluster_id);
    goto out;
  }
  if (rc != KERR_NOT_FOUND) goto out;
  memset(&u, 0, sizeof u);
  snprintf(u.cluster_id, sizeof u.cluster_id, "%s", cluster_id);
  snprintf(u.username, sizeof u.username, "%s", username);
  snprintf(u.role, sizeof u.role, "%s", role);
  rc = hsmi_password_set(&u, password, err);
  if (!rc) rc = svc->st->ops->hsm->user_put(tx, &u, err);
  if (!rc && strcmp(username, HSMI_KMSUSER) == 0) rc = hsmi_set_user_pin(svc, tx, &c, password, err);
out:
  rc = finish(svc, tx, rc, err);
  store_hsm_cluster_clear(&c);
  return rc;
}

kerr_code hsm_admin_delete_user(hsm_service *svc, const aws_call *call, const char *cluster_id,
                                const char *username, kerr *err) {
  store_tx *tx = NULL;
  store_hsm_cluster c;
  store_hsm_user u;
  char pin[HSMI_PIN_MAX + 1] = {0};
  memset(&c, 0, sizeof c);
  kerr_code rc = check_username(username, err);
  if (rc) return rc;
  rc = open_cluster(svc, call, "DeleteUser", cluster_id, true, &tx, &c, err);
  if (rc) return rc;
  rc = get_user(svc, tx, cluster_id, username, &u, err);
  if (!rc) rc = svc->st->ops->hsm->user_delete(tx, cluster_id, username, err);
  /* kmsuser's password must stop opening the tokens. */
  if (!rc && strcmp(username, HSMI_KMSUSER) == 0) {
    rc = hsmi_random_pin(pin, err);
    if (!rc) rc = hsmi_set_user_pin(svc, tx, &c, pin, err);
  }
  rc = finish(svc, tx, rc, err);
  secure_wipe(pin, sizeof pin);
  store_hsm_cluster_clear(&c);
  return rc;
}

kerr_code hsm_admin_list_users(hsm_service *svc, const aws_call *call, const char *cluster_id,
                               store_hsm_user **out, size_t *n, kerr *err) {
  store_tx *tx = NULL;
  store_hsm_cluster c;
  memset(&c, 0, sizeof c);
  *out = NULL;
  *n = 0;
  kerr_code rc = open_cluster(svc, call, "ListUsers", cluster_id, false, &tx, &c, err);
  if (rc) return rc;
  rc = svc->st->ops->hsm->user_list(tx, cluster_id, out, n, err);
  svc->st->ops->rollback(tx);
  store_hsm_cluster_clear(&c);
  return rc;
}

kerr_code hsm_admin_change_password(hsm_service *svc, const aws_call *call, const char *cluster_id,
                                    const char *username, const char *password, kerr *err) {
  store_tx *tx = NULL;
  store_hsm_cluster c;
  store_hsm_user u;
  memset(&c, 0, sizeof c);
  kerr_code rc = check_username(username, err);
  if (!rc) rc = check_password(password, err);
  if (rc) return rc;
  rc = open_cluster(svc, call, "ChangePassword", cluster_id, true, &tx, &c, err);
  if (rc) return rc;
  rc = get_user(svc, tx, cluster_id, username, &u, err);
  if (!rc) {
    u.failed_logins = 0;
    u.locked = false;
    rc = hsmi_password_set(&u, password, err);
  }
  if (!rc) rc = svc->st->ops->hsm->user_put(tx, &u, err);
  if (!rc && strcmp(username, HSMI_KMSUSER) == 0) rc = hsmi_set_user_pin(svc, tx, &c, password, err);
  rc = finish(svc, tx, rc, err);
  store_hsm_cluster_clear(&c);
  return rc;
}

kerr_code hsm_admin_login(hsm_service *svc, const aws_call *call, const char *cluster_id,
                          const char *username, const char *password, kerr *err) {
  store_tx *tx = NULL;
  store_hsm_cluster c;
  store_hsm_user u;
  kerr failure;
  kerr_code denied = KERR_OK;
  memset(&c, 0, sizeof c);
  kerr_clear(&failure);
  kerr_code rc = check_username(username, err);
  if (rc) return rc;
  if (!password || !*password || strlen(password) > HSM_PASSWORD_MAX)
    return kerr_set(err, KERR_HSM_INVALID_REQUEST, "Passwords are 7 to 32 characters.");
  rc = open_cluster(svc, call, "Login", cluster_id, true, &tx, &c, err);
  if (rc) return rc;
  rc = get_user(svc, tx, cluster_id, username, &u, err);
  if (rc) goto out;
  if (u.locked) {
    rc = kerr_set(err, KERR_HSM_ACCESS_DENIED, "user is locked out");
    goto out;
  }
  if (!hsmi_password_ok(&u, password)) {
    /* The failure is recorded (committed), then reported. */
    u.failed_logins++;
    if (u.failed_logins >= HSMI_MAX_LOGIN_FAILURES) u.locked = true;
    denied = kerr_set(&failure, KERR_HSM_ACCESS_DENIED, "%s",
                      u.locked ? "incorrect password; user is locked out"
                               : "incorrect password");
    rc = svc->st->ops->hsm->user_put(tx, &u, err);
    goto out;
  }
  if (u.logged_in) {
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST, "User %s is already logged in.", username);
    goto out;
  }
  u.failed_logins = 0;
  u.logged_in = true;
  rc = svc->st->ops->hsm->user_put(tx, &u, err);
out:
  rc = finish(svc, tx, rc, err);
  store_hsm_cluster_clear(&c);
  if (!rc && denied) {
    *err = failure;
    return denied;
  }
  return rc;
}

kerr_code hsm_admin_logout(hsm_service *svc, const aws_call *call, const char *cluster_id,
                           const char *username, kerr *err) {
  store_tx *tx = NULL;
  store_hsm_cluster c;
  store_hsm_user u;
  memset(&c, 0, sizeof c);
  kerr_code rc = check_username(username, err);
  if (rc) return rc;
  rc = open_cluster(svc, call, "Logout", cluster_id, true, &tx, &c, err);
  if (rc) return rc;
  rc = get_user(svc, tx, cluster_id, username, &u, err);
  if (!rc && !u.logged_in)
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST, "User %s is not logged in.", username);
  if (!rc) {
    u.logged_in = false;
    rc = svc->st->ops->hsm->user_put(tx, &u, err);
  }
  rc = finish(svc, tx, rc, err);
  store_hsm_cluster_clear(&c);
  return rc;
}

kerr_code hsm_admin_simulate_failure(hsm_service *svc, const aws_call *call, const char *cluster_id,
                                     const char *kind, kerr *err) {
  static const char *const kinds[] = {"none", "network-errors", "subnet-not-found",
                                      "no-free-addresses", "internal-error"};
  store_tx *tx = NULL;
  store_hsm_cluster c;
  bool ok = false;
  memset(&c, 0, sizeof c);
  for (size_t i = 0; kind && i < sizeof kinds / sizeof kinds[0]; i++)
    if (strcmp(kind, kinds[i]) == 0) ok = true;
  if (!ok)
    return kerr_set(err, KERR_HSM_INVALID_REQUEST,
                    "Kind must be none, network-errors, subnet-not-found, no-free-addresses or "
                    "internal-error.");
  kerr_code rc = open_cluster(svc, call, "SimulateFailure", cluster_id, false, &tx, &c, err);
  if (rc) return rc;
  snprintf(c.simulated_failure, sizeof c.simulated_failure, "%s", kind);
  rc = svc->st->ops->hsm->cluster_update(tx, &c, err);
  if (!rc) log_msg(LOG_INFO, call->request_id, "cluster %s: simulated failure %s", cluster_id, kind);
  rc = finish(svc, tx, rc, err);
  store_hsm_cluster_clear(&c);
  return rc;
}
