/* handlers_cloudhsm.c - JSON <-> domain for the CloudHSMv2 operations
 * (X-Amz-Target: BaldrApiService.*), so `aws cloudhsmv2 ...` and boto3 talk
 * to kmsd's clusters as to AWS.  Shapes follow the cloudhsmv2 model:
 * timestamps are epoch seconds, empty optional members are left out. */
#include <stdlib.h>
#include <string.h>

#include "api/api_json.h"
#include "api/api_pipeline.h"
#include "cloudhsm/hsm_admin.h"

static kerr_code hsm_json(const store_hsm *h, json_t **out, kerr *err) {
  json_t *o = NULL;
  kerr_code rc = api_json_new_object(&o, err);
  if (rc) return rc;
  if ((rc = api_json_set_str(o, "AvailabilityZone", h->availability_zone, err)) ||
      (rc = api_json_set_str(o, "ClusterId", h->cluster_id, err)) ||
      (rc = api_json_set_str(o, "SubnetId", h->subnet_id, err)) ||
      (rc = api_json_set_str(o, "EniId", h->eni_id, err)) ||
      (rc = api_json_set_str(o, "EniIp", h->eni_ip, err)) ||
      (rc = api_json_set_str(o, "HsmId", h->hsm_id, err)) ||
      (rc = api_json_set_str(o, "State", h->state, err)) ||
      (rc = api_json_set_str_opt(o, "StateMessage", h->state_message, err))) {
    json_decref(o);
    return rc;
  }
  *out = o;
  return KERR_OK;
}

static kerr_code tags_json(const char *tags, json_t *o, kerr *err) {
  if (!tags || !*tags) return KERR_OK;
  json_t *list = json_array();
  if (!list) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  const char *p = tags;
  while (*p) {
    const char *tab = strchr(p, '\t'), *nl = tab ? strchr(tab, '\n') : NULL;
    if (!tab || !nl) break;
    json_t *t = json_pack("{s:s%,s:s%}", "Key", p, (size_t)(tab - p), "Value", tab + 1,
                          (size_t)(nl - tab - 1));
    if (!t || json_array_append_new(list, t) != 0) {
      json_decref(list);
      return kerr_set(err, KERR_INTERNAL, "Out of memory.");
    }
    p = nl + 1;
  }
  return api_json_set_new(o, "TagList", list, err);
}

static kerr_code cluster_json(const hsm_cluster_desc *dsc, json_t **out, kerr *err) {
  const store_hsm_cluster *c = &dsc->c;
  json_t *o = NULL, *hsms = NULL, *certs = NULL, *map = NULL;
  kerr_code rc = api_json_new_object(&o, err);
  if (rc) return rc;
  hsms = json_array();
  certs = json_object();
  map = json_object();
  if (!hsms || !certs || !map) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  for (size_t i = 0; i < dsc->nhsms; i++) {
    json_t *h = NULL;
    rc = hsm_json(&dsc->hsms[i], &h, err);
    if (rc) goto out;
    if (json_array_append_new(hsms, h) != 0) {
      rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
      goto out;
    }
  }
  /* Subnets in zone order: <region>a, b, c... */
  {
    const char *p = c->subnets;
    int i = 0;
    while (p && *p) {
      size_t len = strcspn(p, ",");
      char zone[80], subnet[64];
      snprintf(zone, sizeof zone, "%s%c", c->region, 'a' + i++);
      snprintf(subnet, sizeof subnet, "%.*s", (int)len, p);
      json_object_set_new(map, zone, json_string(subnet));
      p += len;
      if (*p == ',') p++;
    }
  }
  if (dsc->show_csr) json_object_set_new(certs, "ClusterCsr", json_string(c->csr_pem));
  if (dsc->show_cluster_cert)
    json_object_set_new(certs, "ClusterCertificate", json_string(c->cluster_cert_pem));
  if ((rc = api_json_set_str(o, "BackupPolicy", "DEFAULT", err)) ||
      (rc = api_json_set_new(o, "BackupRetentionPolicy",
                             json_pack("{s:s,s:s}", "Type", "DAYS", "Value", "90"), err)) ||
      (rc = api_json_set_str(o, "ClusterId", c->cluster_id, err)) ||
      (rc = api_json_set_time_ms(o, "CreateTimestamp", c->created_ms, err)) ||
      (rc = api_json_set_new(o, "Hsms", hsms, err)) ||
      (rc = api_json_set_str(o, "HsmType", c->hsm_type, err)) ||
      (rc = api_json_set_str(o, "SecurityGroup", c->security_group, err)) ||
      (rc = api_json_set_str_opt(o, "SourceBackupId", c->source_backup_id, err)) ||
      (rc = api_json_set_str(o, "State", c->state, err)) ||
      (rc = api_json_set_str_opt(o, "StateMessage", c->state_message, err)) ||
      (rc = api_json_set_new(o, "SubnetMapping", map, err)) ||
      (rc = api_json_set_str(o, "VpcId", c->vpc_id, err)) ||
      (rc = api_json_set_str(o, "NetworkType", c->network_type, err)) ||
      (rc = api_json_set_new(o, "Certificates", certs, err)) ||
      (rc = tags_json(c->tags, o, err)) || (rc = api_json_set_str(o, "Mode", c->mode, err))) {
    hsms = certs = map = NULL; /* set_new took them */
    goto out;
  }
  hsms = certs = map = NULL;
  *out = o;
  o = NULL;
out:
  json_decref(hsms);
  json_decref(certs);
  json_decref(map);
  json_decref(o);
  return rc;
}

static kerr_code reply_cluster(const hsm_cluster_desc *dsc, json_t **out, kerr *err) {
  json_t *o = NULL, *c = NULL;
  kerr_code rc = cluster_json(dsc, &c, err);
  if (rc) return rc;
  rc = api_json_new_object(&o, err);
  if (!rc) rc = api_json_set_new(o, "Cluster", c, err);
  else json_decref(c);
  if (rc) {
    json_decref(o);
    return rc;
  }
  *out = o;
  return KERR_OK;
}

/* The Filters map: name -> list of strings.  *out is new (free()); the
 * values arrays too (free each). */
static kerr_code get_filters(json_t *in, hsm_filter **out, size_t *n, kerr *err) {
  json_t *f = json_object_get(in, "Filters");
  const char *name;
  json_t *v;
  *out = NULL;
  *n = 0;
  if (!f || json_is_null(f)) return KERR_OK;
  if (!json_is_object(f)) return kerr_set(err, KERR_VALIDATION, "Filters must be a map.");
  hsm_filter *arr = calloc(json_object_size(f) + 1, sizeof *arr);
  if (!arr) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  size_t k = 0;
  json_object_foreach(f, name, v) {
    if (!json_is_array(v)) {
      for (size_t i = 0; i < k; i++) free((void *)arr[i].values);
      free(arr);
      return kerr_set(err, KERR_VALIDATION, "Filter %s must be a list of strings.", name);
    }
    const char **vals = calloc(json_array_size(v) + 1, sizeof *vals);
    if (!vals) {
      for (size_t i = 0; i < k; i++) free((void *)arr[i].values);
      free(arr);
      return kerr_set(err, KERR_INTERNAL, "Out of memory.");
    }
    size_t idx;
    json_t *s;
    size_t m = 0;
    json_array_foreach(v, idx, s) {
      if (json_is_string(s)) vals[m++] = json_string_value(s);
    }
    arr[k].name = name;
    arr[k].values = vals;
    arr[k].nvalues = m;
    k++;
  }
  *out = arr;
  *n = k;
  return KERR_OK;
}

static void free_filters(hsm_filter *f, size_t n) {
  for (size_t i = 0; i < n; i++) free((void *)f[i].values);
  free(f);
}

static kerr_code h_create_cluster(const api_request *req, json_t *in, json_t **out, kerr *err) {
  kms_call call = api_json_call(req);
  hsm_create_cluster_input ci;
  hsm_cluster_desc dsc;
  const char **subnets = NULL;
  kms_pair *tags = NULL;
  size_t ntags = 0;
  json_t *tl;
  memset(&ci, 0, sizeof ci);
  memset(&dsc, 0, sizeof dsc);
  kerr_code rc = api_json_get_str(in, "HsmType", true, &ci.hsm_type, err);
  if (!rc) rc = api_json_get_str_list(in, "SubnetIds", true, &subnets, &ci.nsubnets, err);
  if (!rc) rc = api_json_get_str(in, "SourceBackupId", false, &ci.source_backup_id, err);
  if (!rc) rc = api_json_get_str(in, "Mode", false, &ci.mode, err);
  if (!rc) rc = api_json_get_str(in, "NetworkType", false, &ci.network_type, err);
  if (!rc && (tl = json_object_get(in, "TagList")) && json_is_array(tl)) {
    size_t i;
    json_t *t;
    tags = calloc(json_array_size(tl) + 1, sizeof *tags);
    if (!tags) rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    json_array_foreach(tl, i, t) {
      if (rc) break;
      tags[ntags].key = json_string_value(json_object_get(t, "Key"));
      tags[ntags].value = json_string_value(json_object_get(t, "Value"));
      if (!tags[ntags].key || !tags[ntags].value)
        rc = kerr_set(err, KERR_VALIDATION, "Each tag needs a Key and a Value.");
      ntags++;
    }
  }
  if (rc) goto out;
  ci.subnet_ids = subnets;
  ci.tags = tags;
  ci.ntags = ntags;
  rc = hsm_create_cluster(kms_domain_cloudhsm(req->domain), &call, &ci, &dsc, err);
  if (!rc) rc = reply_cluster(&dsc, out, err);
out:
  hsm_cluster_desc_clear(&dsc);
  free(subnets);
  free(tags);
  return rc;
}

static kerr_code h_describe_clusters(const api_request *req, json_t *in, json_t **out, kerr *err) {
  kms_call call = api_json_call(req);
  hsm_list_input li;
  hsm_cluster_list list;
  hsm_filter *filters = NULL;
  size_t nf = 0;
  int64_t max = 0;
  bool present = false;
  json_t *o = NULL, *arr = NULL;
  memset(&li, 0, sizeof li);
  memset(&list, 0, sizeof list);
  kerr_code rc = get_filters(in, &filters, &nf, err);
  if (!rc) rc = api_json_get_int(in, "MaxResults", &present, &max, err);
  if (!rc) rc = api_json_get_str(in, "NextToken", false, &li.next_token, err);
  if (rc) goto out;
  li.filters = filters;
  li.nfilters = nf;
  li.max_results = (int)max;
  rc = hsm_describe_clusters(kms_domain_cloudhsm(req->domain), &call, &li, &list, err);
  if (rc) goto out;
  rc = api_json_new_object(&o, err);
  if (rc) goto out;
  arr = json_array();
  if (!arr) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  for (size_t i = 0; i < list.n; i++) {
    json_t *c = NULL;
    rc = cluster_json(&list.items[i], &c, err);
    if (rc) goto out;
    if (json_array_append_new(arr, c) != 0) {
      rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
      goto out;
    }
  }
  rc = api_json_set_new(o, "Clusters", arr, err);
  arr = NULL;
  if (!rc) rc = api_json_set_str(o, "NextToken", list.next_token, err);
  if (rc) goto out;
  *out = o;
  o = NULL;
out:
  json_decref(arr);
  json_decref(o);
  free_filters(filters, nf);
  hsm_cluster_list_clear(&list);
  return rc;
}

static kerr_code h_initialize_cluster(const api_request *req, json_t *in, json_t **out, kerr *err) {
  kms_call call = api_json_call(req);
  const char *id = NULL, *cert = NULL, *anchor = NULL;
  char state[STORE_ENUM_MAX];
  kerr_code rc = api_json_get_str(in, "ClusterId", true, &id, err);
  if (!rc) rc = api_json_get_str(in, "SignedCert", true, &cert, err);
  if (!rc) rc = api_json_get_str(in, "TrustAnchor", true, &anchor, err);
  if (!rc) rc = hsm_initialize_cluster(kms_domain_cloudhsm(req->domain), &call, id, cert, anchor, state, err);
  if (!rc) rc = api_json_new_object(out, err);
  if (!rc) rc = api_json_set_str(*out, "State", state, err);
  if (!rc) rc = api_json_set_str(*out, "StateMessage", "Cluster is initializing", err);
  return rc;
}

static kerr_code h_create_hsm(const api_request *req, json_t *in, json_t **out, kerr *err) {
  kms_call call = api_json_call(req);
  const char *id = NULL, *az = NULL, *ip = NULL;
  store_hsm h;
  json_t *hj = NULL;
  kerr_code rc = api_json_get_str(in, "ClusterId", true, &id, err);
  if (!rc) rc = api_json_get_str(in, "AvailabilityZone", true, &az, err);
  if (!rc) rc = api_json_get_str(in, "IpAddress", false, &ip, err);
  if (!rc) rc = hsm_create_hsm(kms_domain_cloudhsm(req->domain), &call, id, az, ip, &h, err);
  if (!rc) rc = hsm_json(&h, &hj, err);
  if (!rc) rc = api_json_new_object(out, err);
  if (!rc) rc = api_json_set_new(*out, "Hsm", hj, err);
  else json_decref(hj);
  return rc;
}

static kerr_code h_delete_hsm(const api_request *req, json_t *in, json_t **out, kerr *err) {
  kms_call call = api_json_call(req);
  const char *id = NULL, *hsm = NULL, *eni = NULL, *ip = NULL;
  char deleted[STORE_HSM_ID_MAX];
  kerr_code rc = api_json_get_str(in, "ClusterId", true, &id, err);
  if (!rc) rc = api_json_get_str(in, "HsmId", false, &hsm, err);
  if (!rc) rc = api_json_get_str(in, "EniId", false, &eni, err);
  if (!rc) rc = api_json_get_str(in, "EniIp", false, &ip, err);
  if (!rc) rc = hsm_delete_hsm(kms_domain_cloudhsm(req->domain), &call, id, hsm, eni, ip, deleted, err);
  if (!rc) rc = api_json_new_object(out, err);
  if (!rc) rc = api_json_set_str(*out, "HsmId", deleted, err);
  return rc;
}

static kerr_code h_delete_cluster(const api_request *req, json_t *in, json_t **out, kerr *err) {
  kms_call call = api_json_call(req);
  const char *id = NULL;
  hsm_cluster_desc dsc;
  memset(&dsc, 0, sizeof dsc);
  kerr_code rc = api_json_get_str(in, "ClusterId", true, &id, err);
  if (!rc) rc = hsm_delete_cluster(kms_domain_cloudhsm(req->domain), &call, id, &dsc, err);
  if (!rc) rc = reply_cluster(&dsc, out, err);
  hsm_cluster_desc_clear(&dsc);
  return rc;
}

static kerr_code h_describe_backups(const api_request *req, json_t *in, json_t **out, kerr *err) {
  kms_call call = api_json_call(req);
  hsm_list_input li;
  hsm_backup_list list;
  hsm_filter *filters = NULL;
  size_t nf = 0;
  int64_t max = 0;
  bool present = false, shared = false;
  json_t *o = NULL, *arr = NULL;
  memset(&li, 0, sizeof li);
  memset(&list, 0, sizeof list);
  kerr_code rc = get_filters(in, &filters, &nf, err);
  if (!rc) rc = api_json_get_int(in, "MaxResults", &present, &max, err);
  if (!rc) rc = api_json_get_str(in, "NextToken", false, &li.next_token, err);
  if (!rc) rc = api_json_get_bool(in, "SortAscending", false, &li.sort_ascending, err);
  if (!rc) rc = api_json_get_bool(in, "Shared", false, &shared, err);
  if (rc) goto out;
  li.filters = filters;
  li.nfilters = nf;
  li.max_results = (int)max;
  rc = hsm_describe_backups(kms_domain_cloudhsm(req->domain), &call, &li, &list, err);
  if (rc) goto out;
  rc = api_json_new_object(&o, err);
  arr = json_array();
  if (rc || !arr) {
    rc = rc ? rc : kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  /* Backups shared by other accounts: kmsd shares none. */
  for (size_t i = 0; !shared && i < list.n; i++) {
    const store_hsm_backup *b = &list.items[i];
    char arn[256];
    json_t *bj = NULL;
    snprintf(arn, sizeof arn, "arn:aws:cloudhsm:%s:%s:backup/%s", b->region, b->account_id,
             b->backup_id);
    rc = api_json_new_object(&bj, err);
    if (rc) goto out;
    if (json_array_append_new(arr, bj) != 0) {
      rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
      goto out;
    }
    if ((rc = api_json_set_str(bj, "BackupId", b->backup_id, err)) ||
        (rc = api_json_set_str(bj, "BackupArn", arn, err)) ||
        (rc = api_json_set_str(bj, "BackupState", b->state, err)) ||
        (rc = api_json_set_str(bj, "ClusterId", b->cluster_id, err)) ||
        (rc = api_json_set_time_ms(bj, "CreateTimestamp", b->created_ms, err)) ||
        (rc = api_json_set_bool(bj, "NeverExpires", false, err)) ||
        (rc = api_json_set_str(bj, "HsmType", b->hsm_type, err)) ||
        (rc = api_json_set_str(bj, "Mode", b->mode, err)))
      goto out;
  }
  rc = api_json_set_new(o, "Backups", arr, err);
  arr = NULL;
  if (!rc && !shared) rc = api_json_set_str(o, "NextToken", list.next_token, err);
  if (rc) goto out;
  *out = o;
  o = NULL;
out:
  json_decref(arr);
  json_decref(o);
  free_filters(filters, nf);
  hsm_backup_list_clear(&list);
  return rc;
}

static const api_handler cloudhsm_handlers[] = {
    {"CreateCluster", h_create_cluster},   {"CreateHsm", h_create_hsm},
    {"DeleteCluster", h_delete_cluster},   {"DeleteHsm", h_delete_hsm},
    {"DescribeBackups", h_describe_backups}, {"DescribeClusters", h_describe_clusters},
    {"InitializeCluster", h_initialize_cluster},
};

api_handler_fn api_cloudhsm_handler_find(const char *operation) {
  for (size_t i = 0; i < sizeof cloudhsm_handlers / sizeof cloudhsm_handlers[0]; i++)
    if (strcmp(cloudhsm_handlers[i].operation, operation) == 0) return cloudhsm_handlers[i].fn;
  return NULL;
}
