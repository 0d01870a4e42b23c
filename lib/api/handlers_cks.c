/* handlers_cks.c - the custom key store operations: CreateCustomKeyStore,
 * DescribeCustomKeyStores, UpdateCustomKeyStore, ConnectCustomKeyStore,
 * DisconnectCustomKeyStore, DeleteCustomKeyStore.
 *
 * Each handler maps the validated JSON request onto one kms_* domain call and
 * the result onto the model's output shape.  KeyStorePassword is read here
 * and handed to the domain; it is never echoed, logged or returned, nor is
 * an external key store's RawSecretAccessKey. */
#include <stdlib.h>
#include <string.h>

#include "api/api_json.h"

extern const api_handler api_handlers_cks[];
extern const size_t api_handlers_cks_count;

/* Members of external key stores (a CloudHSM store refuses them). */
static const char *const xks_members[] = {
    "XksProxyUriEndpoint",          "XksProxyUriPath",
    "XksProxyVpcEndpointServiceName", "XksProxyVpcEndpointServiceOwner",
    "XksProxyAuthenticationCredential", "XksProxyConnectivity"};

static bool has_xks_members(json_t *in) {
  for (size_t i = 0; i < sizeof xks_members / sizeof xks_members[0]; i++) {
    json_t *v = json_object_get(in, xks_members[i]);
    if (v && !json_is_null(v)) return true;
  }
  return false;
}

static kerr_code empty_reply(json_t **out, kerr *err) { return api_json_new_object(out, err); }

/* The Xks* members (the model validated them already).  The secret access
 * key stays a pointer into the request; it is never echoed or logged. */
static kerr_code get_xks(json_t *in, kms_xks_input *x, kerr *err) {
  kerr_code rc;
  json_t *cred;
  if ((rc = api_json_get_str(in, "XksProxyUriEndpoint", false, &x->uri_endpoint, err))) return rc;
  if ((rc = api_json_get_str(in, "XksProxyUriPath", false, &x->uri_path, err))) return rc;
  if ((rc = api_json_get_str(in, "XksProxyVpcEndpointServiceName", false, &x->vpc_service_name,
                             err)))
    return rc;
  if ((rc = api_json_get_str(in, "XksProxyVpcEndpointServiceOwner", false, &x->vpc_service_owner,
                             err)))
    return rc;
  if ((rc = api_json_get_str(in, "XksProxyConnectivity", false, &x->connectivity, err))) return rc;
  cred = json_object_get(in, "XksProxyAuthenticationCredential");
  if (json_is_object(cred)) {
    if ((rc = api_json_get_str(cred, "AccessKeyId", true, &x->access_key_id, err))) return rc;
    if ((rc = api_json_get_str(cred, "RawSecretAccessKey", true, &x->secret_access_key, err)))
      return rc;
  }
  return KERR_OK;
}

static kerr_code handle_create(const api_request *req, json_t *in, json_t **out, kerr *err) {
  kms_call call = api_json_call(req);
  kms_create_cks_input ci;
  char id[KMS_CKS_ID_MAX];
  json_t *reply = NULL;
  kerr_code rc;

  memset(&ci, 0, sizeof ci);
  if ((rc = api_json_get_str(in, "CustomKeyStoreName", true, &ci.custom_key_store_name, err)))
    return rc;
  if ((rc = api_json_get_str(in, "CustomKeyStoreType", false, &ci.custom_key_store_type, err)))
    return rc;
  if ((rc = api_json_get_str(in, "CloudHsmClusterId", false, &ci.cloud_hsm_cluster_id, err)))
    return rc;
  if ((rc = api_json_get_str(in, "TrustAnchorCertificate", false, &ci.trust_anchor_certificate,
                             err)))
    return rc;
  if ((rc = api_json_get_str(in, "KeyStorePassword", false, &ci.key_store_password, err)))
    return rc;
  ci.has_xks_members = has_xks_members(in);
  if ((rc = get_xks(in, &ci.xks, err))) return rc;
  rc = kms_op_create_custom_key_store(req->domain, &call, &ci, id, err);
  if (rc) return rc;
  rc = api_json_new_object(&reply, err);
  if (rc) return rc;
  rc = api_json_set_str(reply, "CustomKeyStoreId", id, err);
  if (rc) {
    json_decref(reply);
    return rc;
  }
  *out = reply;
  return KERR_OK;
}

/* One CustomKeyStoresListEntry. */
static kerr_code entry_to_json(const void *item, json_t **out, kerr *err) {
  const kms_custom_key_store *s = item;
  json_t *e = NULL;
  kerr_code rc = api_json_new_object(&e, err);
  if (rc) return rc;
  if ((rc = api_json_set_str(e, "CustomKeyStoreId", s->custom_key_store_id, err))) goto out;
  if ((rc = api_json_set_str(e, "CustomKeyStoreName", s->custom_key_store_name, err))) goto out;
  if ((rc = api_json_set_str(e, "CustomKeyStoreType", s->custom_key_store_type, err))) goto out;
  if ((rc = api_json_set_str_opt(e, "CloudHsmClusterId", s->cloud_hsm_cluster_id, err))) goto out;
  if ((rc = api_json_set_str_opt(e, "TrustAnchorCertificate", s->trust_anchor_certificate, err)))
    goto out;
  if ((rc = api_json_set_str(e, "ConnectionState", s->connection_state, err))) goto out;
  if ((rc = api_json_set_str_opt(e, "ConnectionErrorCode", s->connection_error_code, err)))
    goto out;
  if ((rc = api_json_set_time_ms(e, "CreationDate", s->creation_date_ms, err))) goto out;
  if (s->has_xks) {
    json_t *x = NULL;
    if ((rc = api_json_new_object(&x, err))) goto out;
    if ((rc = api_json_set_str(x, "Connectivity", s->xks_connectivity, err)) ||
        (rc = api_json_set_str(x, "AccessKeyId", s->xks_access_key_id, err)) ||
        (rc = api_json_set_str(x, "UriEndpoint", s->xks_uri_endpoint, err)) ||
        (rc = api_json_set_str(x, "UriPath", s->xks_uri_path, err)) ||
        (rc = api_json_set_str_opt(x, "VpcEndpointServiceName", s->xks_vpc_service_name, err)) ||
        (rc = api_json_set_str_opt(x, "VpcEndpointServiceOwner", s->xks_vpc_service_owner, err))) {
      json_decref(x);
      goto out;
    }
    if (json_object_set_new(e, "XksProxyConfiguration", x) != 0) {
      rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
      goto out;
    }
  }
out:
  if (rc) {
    json_decref(e);
    return rc;
  }
  *out = e;
  return KERR_OK;
}

static kerr_code handle_describe(const api_request *req, json_t *in, json_t **out, kerr *err) {
  kms_call call = api_json_call(req);
  kms_describe_cks_input di;
  kms_describe_cks_output dout;
  json_t *reply = NULL;
  kerr_code rc;

  memset(&di, 0, sizeof di);
  memset(&dout, 0, sizeof dout);
  if ((rc = api_json_get_str(in, "CustomKeyStoreId", false, &di.custom_key_store_id, err)))
    return rc;
  if ((rc = api_json_get_str(in, "CustomKeyStoreName", false, &di.custom_key_store_name, err)))
    return rc;
  if ((rc = api_json_get_list_input(in, &di.list, err))) return rc;
  rc = kms_op_describe_custom_key_stores(req->domain, &call, &di, &dout, err);
  if (rc) return rc;
  if ((rc = api_json_new_object(&reply, err))) goto out;
  rc = api_json_set_array(reply, "CustomKeyStores", dout.stores, dout.nstores,
                          sizeof dout.stores[0], entry_to_json, err);
  if (rc) goto out;
  rc = api_json_set_list_tail(reply, dout.truncated, dout.next_marker, err);
out:
  kms_describe_cks_output_clear(&dout);
  if (rc) {
    json_decref(reply);
    return rc;
  }
  *out = reply;
  return KERR_OK;
}

static kerr_code handle_update(const api_request *req, json_t *in, json_t **out, kerr *err) {
  kms_call call = api_json_call(req);
  kms_update_cks_input ui;
  kerr_code rc;

  memset(&ui, 0, sizeof ui);
  if ((rc = api_json_get_str(in, "CustomKeyStoreId", true, &ui.custom_key_store_id, err)))
    return rc;
  if ((rc = api_json_get_str(in, "NewCustomKeyStoreName", false, &ui.new_custom_key_store_name,
                             err)))
    return rc;
  if ((rc = api_json_get_str(in, "KeyStorePassword", false, &ui.key_store_password, err)))
    return rc;
  if ((rc = api_json_get_str(in, "CloudHsmClusterId", false, &ui.cloud_hsm_cluster_id, err)))
    return rc;
  ui.has_xks_members = has_xks_members(in);
  if ((rc = get_xks(in, &ui.xks, err))) return rc;
  rc = kms_op_update_custom_key_store(req->domain, &call, &ui, err);
  if (rc) return rc;
  return empty_reply(out, err);
}

typedef kerr_code (*cks_id_op)(kms_domain *d, const kms_call *call, const char *id, kerr *err);

/* Connect, Disconnect and Delete: {"CustomKeyStoreId"} in, {} out. */
static kerr_code by_id(const api_request *req, json_t *in, json_t **out, cks_id_op op,
                       kerr *err) {
  kms_call call = api_json_call(req);
  const char *id = NULL;
  kerr_code rc = api_json_get_str(in, "CustomKeyStoreId", true, &id, err);
  if (rc) return rc;
  rc = op(req->domain, &call, id, err);
  if (rc) return rc;
  return empty_reply(out, err);
}

static kerr_code handle_connect(const api_request *req, json_t *in, json_t **out, kerr *err) {
  return by_id(req, in, out, kms_op_connect_custom_key_store, err);
}

static kerr_code handle_disconnect(const api_request *req, json_t *in, json_t **out, kerr *err) {
  return by_id(req, in, out, kms_op_disconnect_custom_key_store, err);
}

static kerr_code handle_delete(const api_request *req, json_t *in, json_t **out, kerr *err) {
  return by_id(req, in, out, kms_op_delete_custom_key_store, err);
}

const api_handler api_handlers_cks[] = {
    {"CreateCustomKeyStore", handle_create},
    {"DescribeCustomKeyStores", handle_describe},
    {"UpdateCustomKeyStore", handle_update},
    {"ConnectCustomKeyStore", handle_connect},
    {"DisconnectCustomKeyStore", handle_disconnect},
    {"DeleteCustomKeyStore", handle_delete},
};
const size_t api_handlers_cks_count = sizeof api_handlers_cks / sizeof api_handlers_cks[0];
