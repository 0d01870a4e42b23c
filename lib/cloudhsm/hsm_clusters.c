/* hsm_clusters.c - the CloudHSMv2 operations kmsd serves: CreateCluster,
 * DescribeClusters, InitializeCluster, CreateHsm, DeleteHsm, DeleteCluster
 * and DescribeBackups (hsm_admin.h).
 *
 * Each call checks and records; the slow parts (key pair and CSR, token
 * provisioning, scrubbing) are left to the worker in hsm_manager.c, which
 * finds the *_IN_PROGRESS rows.  Subnets map to zones <region>a, b, c... in
 * the order CreateCluster got them; each zone's subnet is 10.0.<index>.0/24
 * so ENI addresses are made up but well-formed and deterministic. */
#include "cloudhsm/hsm_internal.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws/authz.h"
#include "core/codec.h"
#include "core/ids.h"
#include "core/kclock.h"
#include "core/log.h"
#include "core/secmem.h"

#define MAX_HSMS_PER_CLUSTER 28
#define MAX_SUBNETS 10

/* ------------------------------------------------------------- helpers */

static kerr_code authorize(const aws_call *call, const char *op, const char *cluster_id,
                           kerr *err) {
  char action[64], arn[256];
  kerr_code rc = aws_call_check(call, err);
  if (rc) return rc;
  snprintf(action, sizeof action, "cloudhsm:%s", op);
  if (cluster_id)
    snprintf(arn, sizeof arn, "arn:aws:cloudhsm:%s:%s:cluster/%s", call->region,
             call->caller->account_id, cluster_id);
  else
    snprintf(arn, sizeof arn, "*");
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

/* The caller's cluster `id`, not DELETED; else CloudHsmResourceNotFound. */
static kerr_code owned_cluster(hsm_service *svc, store_tx *tx, const aws_call *call, const char *id,
                               store_hsm_cluster *c, kerr *err) {
  kerr_code rc = svc->st->ops->hsm->cluster_get(tx, id, c, err);
  if (rc == KERR_NOT_FOUND ||
      (!rc && (strcmp(c->account_id, call->caller->account_id) != 0 ||
               strcmp(c->region, call->region) != 0 || strcmp(c->state, "DELETED") == 0))) {
    store_hsm_cluster_clear(c);
    return kerr_set(err, KERR_HSM_RESOURCE_NOT_FOUND, "Cluster %s not found.", id);
  }
  return rc;
}

void hsm_cluster_desc_clear(hsm_cluster_desc *c) {
  if (!c) return;
  store_hsm_cluster_clear(&c->c);
  free(c->hsms);
  memset(c, 0, sizeof *c);
}

void hsm_cluster_list_clear(hsm_cluster_list *l) {
  if (!l) return;
  for (size_t i = 0; i < l->n; i++) hsm_cluster_desc_clear(&l->items[i]);
  free(l->items);
  free(l->next_token);
  memset(l, 0, sizeof *l);
}

void hsm_backup_list_clear(hsm_backup_list *l) {
  if (!l) return;
  free(l->items);
  free(l->next_token);
  memset(l, 0, sizeof *l);
}

static bool state_is(const store_hsm_cluster *c, const char *s) { return strcmp(c->state, s) == 0; }

/* Fill `out` from `c` (taken over: c is left empty) and its HSMs. */
static kerr_code describe(hsm_service *svc, store_tx *tx, store_hsm_cluster *c, hsm_cluster_desc *out,
                          kerr *err) {
  store_hsm *hsms = NULL;
  size_t n = 0, k = 0;
  kerr_code rc = svc->st->ops->hsm->hsm_list(tx, c->cluster_id, &hsms, &n, err);
  if (rc) return rc;
  for (size_t i = 0; i < n; i++)
    if (strcmp(hsms[i].state, "DELETED") != 0) hsms[k++] = hsms[i];
  memset(out, 0, sizeof *out);
  out->c = *c;
  memset(c, 0, sizeof *c);
  out->hsms = hsms;
  out->nhsms = k;
  /* The model: "The CSR exists only when the cluster's state is
   * UNINITIALIZED."  Afterwards the signed ClusterCertificate takes its place. */
  out->show_csr = out->c.csr_pem && state_is(&out->c, "UNINITIALIZED");
  out->show_cluster_cert = out->c.cluster_cert_pem != NULL;
  return KERR_OK;
}

/* Zone `i` of the cluster's region: <region>a, b, ... */
static void zone_name(const char *region, size_t i, char *out, size_t cap) {
  snprintf(out, cap, "%s%c", region, (char)('a' + (int)i));
}

/* The subnet ids, in zone order, split out of the stored list. */
static size_t split_subnets(const char *list, char out[MAX_SUBNETS][STORE_HSM_ID_MAX]) {
  size_t n = 0;
  const char *p = list;
  while (p && *p && n < MAX_SUBNETS) {
    size_t len = strcspn(p, ",");
    snprintf(out[n++], STORE_HSM_ID_MAX, "%.*s", (int)len, p);
    p += len;
    if (*p == ',') p++;
  }
  return n;
}

static void hex_of_hash(const char *text, size_t digits, char *out) {
  uint8_t md[SHA256_DIGEST_LENGTH];
  char hex[2 * SHA256_DIGEST_LENGTH + 1];
  SHA256((const unsigned char *)text, strlen(text), md);
  hex_encode(md, sizeof md, hex);
  memcpy(out, hex, digits);
  out[digits] = '\0';
}

static kerr_code commit(hsm_service *svc, store_tx **tx, kerr *err) {
  kerr_code rc = svc->st->ops->commit(*tx, err);
  *tx = NULL;
  return rc;
}

/* ------------------------------------------------------- CreateCluster */

/* A backup id from an id or an ARN of the caller's account and region. */
static kerr_code backup_ref(const aws_call *call, const char *ref, char out[STORE_HSM_ID_MAX],
                            kerr *err) {
  const char *id = ref;
  if (strncmp(ref, "arn:", 4) == 0) {
    char prefix[160];
    snprintf(prefix, sizeof prefix, "arn:aws:cloudhsm:%s:%s:backup/", call->region,
             call->caller->account_id);
    if (strncmp(ref, prefix, strlen(prefix)) != 0)
      return kerr_set(err, KERR_HSM_RESOURCE_NOT_FOUND, "Backup %s not found.", ref);
    id = ref + strlen(prefix);
  }
  if (strlen(id) >= STORE_HSM_ID_MAX)
    return kerr_set(err, KERR_HSM_RESOURCE_NOT_FOUND, "Backup %s not found.", ref);
  snprintf(out, STORE_HSM_ID_MAX, "%s", id);
  return KERR_OK;
}

static kerr_code join_tags(const aws_pair *tags, size_t n, char **out, kerr *err) {
  size_t len = 1;
  for (size_t i = 0; i < n; i++) {
    if (strncmp(tags[i].key, "aws:", 4) == 0)
      return kerr_set(err, KERR_HSM_TAG, "Tag keys starting with aws: are reserved.");
    for (size_t j = 0; j < i; j++)
      if (strcmp(tags[i].key, tags[j].key) == 0)
        return kerr_set(err, KERR_HSM_TAG, "Duplicate tag key %s.", tags[i].key);
    if (strpbrk(tags[i].key, "\t\n") || strpbrk(tags[i].value, "\t\n"))
      return kerr_set(err, KERR_HSM_TAG, "Tags may not contain tabs or newlines.");
    len += strlen(tags[i].key) + strlen(tags[i].value) + 2;
  }
  char *s = malloc(len);
  if (!s) return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  s[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    strcat(s, tags[i].key);
    strcat(s, "\t");
    strcat(s, tags[i].value);
    strcat(s, "\n");
  }
  *out = s;
  return KERR_OK;
}

kerr_code hsm_create_cluster(hsm_service *svc, const aws_call *call,
                             const hsm_create_cluster_input *in, hsm_cluster_desc *out,
                             kerr *err) {
  const store_hsm_ops *o = svc->st->ops->hsm;
  store_tx *tx = NULL;
  store_hsm_cluster c;
  char pin[HSMI_PIN_MAX + 1] = {0};
  uint8_t wrap_key[32];
  size_t subnets_len = 1;
  kerr_code rc;
  memset(&c, 0, sizeof c);
  memset(out, 0, sizeof *out);

  rc = authorize(call, "CreateCluster", NULL, err);
  if (rc) return rc;
  if (!in->hsm_type || in->nsubnets < 1 || in->nsubnets > MAX_SUBNETS)
    return kerr_set(err, KERR_HSM_INVALID_REQUEST, "HsmType and 1 to 10 SubnetIds are required.");
  for (size_t i = 0; i < in->nsubnets; i++) {
    size_t len = strlen(in->subnet_ids[i]);
    if (strncmp(in->subnet_ids[i], "subnet-", 7) != 0 || len < 15 || len > 24)
      return kerr_set(err, KERR_HSM_INVALID_REQUEST, "Invalid subnet id %s.", in->subnet_ids[i]);
    for (size_t j = 0; j < i; j++)
      if (strcmp(in->subnet_ids[i], in->subnet_ids[j]) == 0)
        return kerr_set(err, KERR_HSM_INVALID_REQUEST,
                        "Subnet %s is given twice; give one subnet per Availability Zone.",
                        in->subnet_ids[i]);
    subnets_len += len + 1;
  }
  if (in->mode && strcmp(in->mode, "FIPS") != 0 && strcmp(in->mode, "NON_FIPS") != 0)
    return kerr_set(err, KERR_HSM_INVALID_REQUEST, "Mode must be FIPS or NON_FIPS.");
  rc = join_tags(in->tags, in->ntags, &c.tags, err);
  if (rc) goto out;
  c.subnets = malloc(subnets_len);
  if (!c.subnets) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  c.subnets[0] = '\0';
  for (size_t i = 0; i < in->nsubnets; i++) {
    if (i) strcat(c.subnets, ",");
    strcat(c.subnets, in->subnet_ids[i]);
  }
  rc = hsmi_new_id("cluster-", c.cluster_id, sizeof c.cluster_id, err);
  if (rc) goto out;
  snprintf(c.account_id, sizeof c.account_id, "%s", call->caller->account_id);
  snprintf(c.region, sizeof c.region, "%s", call->region);
  snprintf(c.state, sizeof c.state, "CREATE_IN_PROGRESS");
  snprintf(c.hsm_type, sizeof c.hsm_type, "%s", in->hsm_type);
  snprintf(c.mode, sizeof c.mode, "%s", in->mode ? in->mode : "FIPS");
  snprintf(c.network_type, sizeof c.network_type, "%s", in->network_type ? in->network_type : "IPV4");
  snprintf(c.simulated_failure, sizeof c.simulated_failure, "none");
  {
    char seed[128], hex[32];
    snprintf(seed, sizeof seed, "vpc|%s|%s", c.account_id, c.region);
    hex_of_hash(seed, 17, hex);
    snprintf(c.vpc_id, sizeof c.vpc_id, "vpc-%.17s", hex);
    snprintf(seed, sizeof seed, "sg|%s", c.cluster_id);
    hex_of_hash(seed, 17, hex);
    snprintf(c.security_group, sizeof c.security_group, "sg-%.17s", hex);
  }
  c.created_ms = kclock_now_ms();

  rc = hsmi_begin(svc, true, &tx, err);
  if (rc) goto out;
  if (in->source_backup_id) {
    store_hsm_backup b;
    rc = backup_ref(call, in->source_backup_id, c.source_backup_id, err);
    if (rc) goto out;
    rc = o->backup_get(tx, c.source_backup_id, &b, err);
    if (rc == KERR_NOT_FOUND || (!rc && (strcmp(b.account_id, c.account_id) != 0 ||
                                         strcmp(b.region, c.region) != 0 ||
                                         strcmp(b.state, "READY") != 0))) {
      rc = kerr_set(err, KERR_HSM_RESOURCE_NOT_FOUND, "Backup %s not found.", in->source_backup_id);
      goto out;
    }
    if (rc) goto out;
    snprintf(c.lineage, sizeof c.lineage, "%s", b.lineage);
  } else {
    if (rand_hex(c.lineage, 32) != 0 || rand_bytes(wrap_key, sizeof wrap_key) != 0) {
      rc = kerr_set(err, KERR_INTERNAL, "RNG failure");
      goto out;
    }
    rc = hsmi_secret_put_raw(svc, tx, c.lineage, HSMI_SECRET_WRAP_KEY, wrap_key, err);
    if (rc) goto out;
    /* Until kmsuser exists the tokens' user PIN is a random one. */
    rc = hsmi_random_pin(pin, err);
    if (!rc) rc = hsmi_secret_put_text(svc, tx, c.cluster_id, HSMI_SECRET_USER_PIN, pin, err);
    if (rc) goto out;
  }
  rc = hsmi_random_pin(pin, err);
  if (!rc) rc = hsmi_secret_put_text(svc, tx, c.cluster_id, HSMI_SECRET_SO_PIN, pin, err);
  if (!rc) rc = o->cluster_insert(tx, &c, err);
  if (!rc) rc = describe(svc, tx, &c, out, err);
  if (!rc) rc = commit(svc, &tx, err);
  if (rc) goto out;
  log_msg(LOG_INFO, call->request_id, "cluster %s: created (CREATE_IN_PROGRESS)", out->c.cluster_id);
  hsmi_kick(svc);
out:
  if (tx) svc->st->ops->rollback(tx);
  secure_wipe(pin, sizeof pin);
  secure_wipe(wrap_key, sizeof wrap_key);
  store_hsm_cluster_clear(&c);
  if (rc) hsm_cluster_desc_clear(out);
  return rc;
}

/* ----------------------------------------------------- DescribeClusters */

static const hsm_filter *find_filter(const hsm_list_input *in, const char *name) {
  for (size_t i = 0; i < in->nfilters; i++)
    if (strcmp(in->filters[i].name, name) == 0) return &in->filters[i];
  return NULL;
}

static bool filter_pass(const hsm_filter *f, const char *value) {
  if (!f) return true;
  for (size_t i = 0; i < f->nvalues; i++)
    if (strcmp(f->values[i], value) == 0) return true;
  return false;
}

static kerr_code check_filters(const hsm_list_input *in, const char *const *allowed, kerr *err) {
  for (size_t i = 0; i < in->nfilters; i++) {
    bool ok = false;
    for (size_t j = 0; allowed[j]; j++)
      if (strcmp(in->filters[i].name, allowed[j]) == 0) ok = true;
    if (!ok) return kerr_set(err, KERR_HSM_INVALID_REQUEST, "Unsupported filter %s.", in->filters[i].name);
  }
  return KERR_OK;
}

kerr_code hsm_describe_clusters(hsm_service *svc, const aws_call *call, const hsm_list_input *in,
                                hsm_cluster_list *out, kerr *err) {
  static const char *const allowed[] = {"clusterIds", "states", "vpcIds", NULL};
  store_tx *tx = NULL;
  store_hsm_cluster *all = NULL;
  size_t n = 0;
  kerr_code rc;
  memset(out, 0, sizeof *out);
  rc = authorize(call, "DescribeClusters", NULL, err);
  if (rc) return rc;
  rc = check_filters(in, allowed, err);
  if (rc) return rc;
  if (in->next_token && strncmp(in->next_token, "cluster-", 8) != 0)
    return kerr_set(err, KERR_HSM_INVALID_REQUEST, "Invalid NextToken.");
  const hsm_filter *ids = find_filter(in, "clusterIds"), *states = find_filter(in, "states"),
                   *vpcs = find_filter(in, "vpcIds");
  rc = hsmi_begin(svc, false, &tx, err);
  if (rc) return rc;
  rc = svc->st->ops->hsm->cluster_list(tx, call->caller->account_id, call->region, &all, &n, err);
  if (rc) goto out;
  out->items = calloc(n ? n : 1, sizeof *out->items);
  if (!out->items) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    if (in->next_token && strcmp(all[i].cluster_id, in->next_token) <= 0) continue;
    if (!filter_pass(ids, all[i].cluster_id) || !filter_pass(states, all[i].state) ||
        !filter_pass(vpcs, all[i].vpc_id))
      continue;
    if (in->max_results > 0 && out->n == (size_t)in->max_results) {
      out->next_token = strdup(out->items[out->n - 1].c.cluster_id);
      if (!out->next_token) rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
      break;
    }
    rc = describe(svc, tx, &all[i], &out->items[out->n], err);
    if (rc) goto out;
    out->n++;
  }
out:
  if (tx) svc->st->ops->rollback(tx);
  store_hsm_cluster_list_free(all, n);
  if (rc) hsm_cluster_list_clear(out);
  return rc;
}

/* ---------------------------------------------------- InitializeCluster */

static X509 *pem_cert(const char *pem) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  return x;
}

/* SignedCert must verify under TrustAnchor and carry the CSR's key. */
static kerr_code check_certs(const char *csr_pem, const char *signed_pem, const char *anchor_pem,
                             kerr *err) {
  kerr_code rc = KERR_OK;
  X509 *cert = pem_cert(signed_pem), *anchor = pem_cert(anchor_pem);
  BIO *b = BIO_new_mem_buf(csr_pem, -1);
  X509_REQ *req = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
  if (!cert) {
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST, "SignedCert is not a PEM X.509 certificate.");
    goto out;
  }
  if (!anchor) {
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST, "TrustAnchor is not a PEM X.509 certificate.");
    goto out;
  }
  if (!req) {
    rc = kerr_set(err, KERR_INTERNAL, "The cluster CSR cannot be read.");
    goto out;
  }
  /* The model: the trust anchor must be a self-signed (root) certificate. */
  if (X509_check_issued(anchor, anchor) != X509_V_OK ||
      X509_verify(anchor, X509_get0_pubkey(anchor)) != 1) {
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST, "TrustAnchor must be a self-signed certificate.");
    goto out;
  }
  if (X509_check_issued(anchor, cert) != X509_V_OK || X509_verify(cert, X509_get0_pubkey(anchor)) != 1) {
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST, "SignedCert is not signed by TrustAnchor.");
    goto out;
  }
  if (EVP_PKEY_eq(X509_get0_pubkey(cert), X509_REQ_get0_pubkey(req)) != 1) {
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST,
                  "SignedCert does not carry the public key of the cluster's CSR.");
    goto out;
  }
out:
  X509_REQ_free(req);
  BIO_free(b);
  X509_free(cert);
  X509_free(anchor);
  return rc;
}

kerr_code hsm_initialize_cluster(hsm_service *svc, const aws_call *call, const char *cluster_id,
                                 const char *signed_cert, const char *trust_anchor,
                                 char state_out[STORE_ENUM_MAX], kerr *err) {
  store_tx *tx = NULL;
  store_hsm_cluster c;
  memset(&c, 0, sizeof c);
  kerr_code rc = authorize(call, "InitializeCluster", cluster_id, err);
  if (rc) return rc;
  rc = hsmi_begin(svc, true, &tx, err);
  if (rc) return rc;
  rc = owned_cluster(svc, tx, call, cluster_id, &c, err);
  if (rc) goto out;
  if (!state_is(&c, "UNINITIALIZED") || !c.csr_pem) {
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST,
                  "Cluster %s is in state %s; only an UNINITIALIZED cluster can be initialized.",
                  cluster_id, c.state);
    goto out;
  }
  rc = check_certs(c.csr_pem, signed_cert, trust_anchor, err);
  if (rc) goto out;
  free(c.cluster_cert_pem);
  free(c.trust_anchor_pem);
  c.cluster_cert_pem = strdup(signed_cert);
  c.trust_anchor_pem = strdup(trust_anchor);
  if (!c.cluster_cert_pem || !c.trust_anchor_pem) {
    rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
    goto out;
  }
  rc = hsmi_cluster_set_state(svc, tx, &c, "INITIALIZE_IN_PROGRESS", "Cluster is initializing",
                              err);
  if (!rc) rc = commit(svc, &tx, err);
  if (rc) goto out;
  snprintf(state_out, STORE_ENUM_MAX, "%s", c.state);
  hsmi_kick(svc);
out:
  if (tx) svc->st->ops->rollback(tx);
  store_hsm_cluster_clear(&c);
  return rc;
}

/* ------------------------------------------------------------ CreateHsm */

static bool hsm_alive(const store_hsm *h) { return strcmp(h->state, "DELETED") != 0; }

/* A free --hsm-pool entry for `zone`, or -1. */
static int free_pool_entry(hsm_service *m, const store_hsm *all, size_t n, const char *zone) {
  int found = -1;
  pthread_mutex_lock(&m->lock);
  for (size_t i = 0; i < m->npool && found < 0; i++) {
    bool used = false;
    for (size_t j = 0; j < n; j++)
      if (hsm_alive(&all[j]) && all[j].pool_index == (int)i) used = true;
    if (used) continue;
    if (m->pool[i].availability_zone && strcmp(m->pool[i].availability_zone, zone) != 0) continue;
    found = (int)i;
  }
  pthread_mutex_unlock(&m->lock);
  return found;
}

static size_t pool_size(hsm_service *svc) {
  pthread_mutex_lock(&svc->lock);
  size_t n = svc->npool;
  pthread_mutex_unlock(&svc->lock);
  return n;
}
/* Parse a dotted-quad IPv4 address strictly (four decimal parts 0..255, no
 * signs, spaces or trailing text) into q.  0 on success, -1 otherwise. */
static int parse_ipv4(const char *s, unsigned q[4]) {
  for (int part = 0; part < 4; part++) {
    if (*s < '0' || *s > '9') return -1;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (v > 255 || end - s > 3) return -1;
    q[part] = (unsigned)v;
    s = end;
    if (part < 3 && *s++ != '.') return -1;
  }
  return *s ? -1 : 0;
}


kerr_code hsm_create_hsm(hsm_service *svc, const aws_call *call, const char *cluster_id,
                         const char *availability_zone, const char *ip_address, store_hsm *out,
                         kerr *err) {
  const store_hsm_ops *o = svc->st->ops->hsm;
  store_tx *tx = NULL;
  store_hsm_cluster c;
  store_hsm *all = NULL, *mine = NULL;
  size_t nall = 0, nmine = 0, zone_index = 0, nsub;
  char subnets[MAX_SUBNETS][STORE_HSM_ID_MAX];
  bool zone_ok = false;
  memset(&c, 0, sizeof c);
  memset(out, 0, sizeof *out);
  kerr_code rc = authorize(call, "CreateHsm", cluster_id, err);
  if (rc) return rc;
  rc = hsmi_begin(svc, true, &tx, err);
  if (rc) return rc;
  rc = owned_cluster(svc, tx, call, cluster_id, &c, err);
  if (rc) goto out;
  if (!state_is(&c, "UNINITIALIZED") && !state_is(&c, "INITIALIZED") && !state_is(&c, "ACTIVE") &&
      !state_is(&c, "DEGRADED")) {
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST, "Cannot add an HSM to cluster %s in state %s.",
                  cluster_id, c.state);
    goto out;
  }
  nsub = split_subnets(c.subnets, subnets);
  for (size_t i = 0; i < nsub; i++) {
    char zone[STORE_REGION_MAX + 2];
    zone_name(c.region, i, zone, sizeof zone);
    if (strcmp(zone, availability_zone) == 0) {
      zone_ok = true;
      zone_index = i;
    }
  }
  if (!zone_ok) {
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST,
                  "Availability Zone %s has no subnet of cluster %s (its zones are %sa to %s%c).",
                  availability_zone, cluster_id, c.region, c.region, (char)('a' + (int)nsub - 1));
    goto out;
  }
  rc = o->hsm_list(tx, NULL, &all, &nall, err);
  if (rc) goto out;
  rc = o->hsm_list(tx, cluster_id, &mine, &nmine, err);
  if (rc) goto out;
  size_t alive = 0;
  for (size_t i = 0; i < nmine; i++) alive += hsm_alive(&mine[i]);
  if (alive >= MAX_HSMS_PER_CLUSTER) {
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST, "Cluster %s already has %d HSMs.", cluster_id,
                  MAX_HSMS_PER_CLUSTER);
    goto out;
  }
  /* The address: given (must be in the zone's subnet and free) or the
   * first free one from .10. */
  {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "10.0.%zu.", zone_index);
    if (ip_address) {
      unsigned q[4];
      unsigned host = 0;
      if (parse_ipv4(ip_address, q) != 0 || q[0] != 10 || q[1] != 0 || q[2] != zone_index ||
          (host = q[3]) < 4 || host > 254) {
        rc = kerr_set(err, KERR_HSM_INVALID_REQUEST,
                      "IpAddress %s is not in subnet %s (10.0.%zu.0/24, hosts .4 to .254).",
                      ip_address, subnets[zone_index], zone_index);
        goto out;
      }
      char ip[32];
      snprintf(ip, sizeof ip, "10.0.%u.%u", (unsigned)zone_index, host);
      snprintf(out->eni_ip, sizeof out->eni_ip, "%.15s", ip);
      for (size_t i = 0; i < nmine; i++)
        if (hsm_alive(&mine[i]) && strcmp(mine[i].eni_ip, out->eni_ip) == 0) {
          rc = kerr_set(err, KERR_HSM_INVALID_REQUEST, "IpAddress %s is in use.", ip_address);
          goto out;
        }
    } else {
      for (unsigned host = 10; host <= 254 && !out->eni_ip[0]; host++) {
        char ip[32];
        bool used = false;
        snprintf(ip, sizeof ip, "10.0.%u.%u", (unsigned)zone_index, host);
        for (size_t i = 0; i < nmine; i++)
          if (hsm_alive(&mine[i]) && strcmp(mine[i].eni_ip, ip) == 0) used = true;
        if (!used) snprintf(out->eni_ip, sizeof out->eni_ip, "%.15s", ip);
      }
    }
  }
  out->pool_index = -1;
  if (pool_size(svc) > 0) {
    out->pool_index = free_pool_entry(svc, all, nall, availability_zone);
    if (out->pool_index < 0) {
      rc = kerr_set(err, KERR_HSM_INVALID_REQUEST,
                    "No free HSM in the configured pool for Availability Zone %s.",
                    availability_zone);
      goto out;
    }
  }
  rc = hsmi_new_id("hsm-", out->hsm_id, sizeof out->hsm_id, err);
  if (rc) goto out;
  snprintf(out->cluster_id, sizeof out->cluster_id, "%s", cluster_id);
  snprintf(out->availability_zone, sizeof out->availability_zone, "%s", availability_zone);
  snprintf(out->subnet_id, sizeof out->subnet_id, "%s", subnets[zone_index]);
  {
    char seed[64], hex[32];
    snprintf(seed, sizeof seed, "eni|%s", out->hsm_id);
    hex_of_hash(seed, 17, hex);
    snprintf(out->eni_id, sizeof out->eni_id, "eni-%.17s", hex);
  }
  snprintf(out->state, sizeof out->state, "CREATE_IN_PROGRESS");
  out->created_ms = kclock_now_ms();
  if (out->pool_index >= 0) {
    pthread_mutex_lock(&svc->lock);
    snprintf(out->token_label, sizeof out->token_label, "%s", svc->pool[out->pool_index].token_label);
    pthread_mutex_unlock(&svc->lock);
  } else {
    snprintf(out->token_label, sizeof out->token_label, "%s", out->hsm_id);
  }
  rc = o->hsm_insert(tx, out, err);
  if (!rc) rc = commit(svc, &tx, err);
  if (rc) goto out;
  log_msg(LOG_INFO, call->request_id, "hsm %s of %s: created in %s (%s)", out->hsm_id, cluster_id,
          availability_zone, out->pool_index >= 0 ? "pool token" : "SoftHSM2 token");
  hsmi_kick(svc);
out:
  if (tx) svc->st->ops->rollback(tx);
  free(all);
  free(mine);
  store_hsm_cluster_clear(&c);
  if (rc) memset(out, 0, sizeof *out);
  return rc;
}

/* ------------------------------------------------------------ DeleteHsm */

kerr_code hsm_delete_hsm(hsm_service *svc, const aws_call *call, const char *cluster_id,
                         const char *hsm_id, const char *eni_id, const char *eni_ip,
                         char hsm_id_out[STORE_HSM_ID_MAX], kerr *err) {
  store_tx *tx = NULL;
  store_hsm_cluster c;
  store_hsm *hsms = NULL, *h = NULL;
  size_t n = 0;
  memset(&c, 0, sizeof c);
  kerr_code rc = authorize(call, "DeleteHsm", cluster_id, err);
  if (rc) return rc;
  if (!hsm_id && !eni_id && !eni_ip)
    return kerr_set(err, KERR_HSM_INVALID_REQUEST, "Specify HsmId, EniId or EniIp.");
  rc = hsmi_begin(svc, true, &tx, err);
  if (rc) return rc;
  rc = owned_cluster(svc, tx, call, cluster_id, &c, err);
  if (rc) goto out;
  rc = svc->st->ops->hsm->hsm_list(tx, cluster_id, &hsms, &n, err);
  if (rc) goto out;
  for (size_t i = 0; i < n && !h; i++) {
    if (!hsm_alive(&hsms[i])) continue;
    if ((hsm_id && strcmp(hsms[i].hsm_id, hsm_id) == 0) ||
        (!hsm_id && eni_id && strcmp(hsms[i].eni_id, eni_id) == 0) ||
        (!hsm_id && !eni_id && eni_ip && strcmp(hsms[i].eni_ip, eni_ip) == 0))
      h = &hsms[i];
  }
  if (!h) {
    rc = kerr_set(err, KERR_HSM_RESOURCE_NOT_FOUND, "HSM %s not found in cluster %s.",
                  hsm_id ? hsm_id : eni_id ? eni_id : eni_ip, cluster_id);
    goto out;
  }
  if (strcmp(h->state, "ACTIVE") != 0 && strcmp(h->state, "DEGRADED") != 0) {
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST, "HSM %s is in state %s and cannot be deleted now.",
                  h->hsm_id, h->state);
    goto out;
  }
  rc = hsmi_hsm_set_state(svc, tx, h, "DELETE_IN_PROGRESS", "", err);
  if (!rc) rc = commit(svc, &tx, err);
  if (rc) goto out;
  snprintf(hsm_id_out, STORE_HSM_ID_MAX, "%s", h->hsm_id);
  hsmi_kick(svc);
out:
  if (tx) svc->st->ops->rollback(tx);
  free(hsms);
  store_hsm_cluster_clear(&c);
  return rc;
}

/* -------------------------------------------------------- DeleteCluster */

kerr_code hsm_delete_cluster(hsm_service *svc, const aws_call *call, const char *cluster_id,
                             hsm_cluster_desc *out, kerr *err) {
  store_tx *tx = NULL;
  store_hsm_cluster c;
  store_hsm *hsms = NULL;
  size_t n = 0, alive = 0;
  memset(&c, 0, sizeof c);
  memset(out, 0, sizeof *out);
  kerr_code rc = authorize(call, "DeleteCluster", cluster_id, err);
  if (rc) return rc;
  rc = hsmi_begin(svc, true, &tx, err);
  if (rc) return rc;
  rc = owned_cluster(svc, tx, call, cluster_id, &c, err);
  if (rc) goto out;
  if (state_is(&c, "CREATE_IN_PROGRESS") || state_is(&c, "INITIALIZE_IN_PROGRESS") ||
      state_is(&c, "DELETE_IN_PROGRESS")) {
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST, "Cluster %s is in state %s.", cluster_id, c.state);
    goto out;
  }
  rc = svc->st->ops->hsm->hsm_list(tx, cluster_id, &hsms, &n, err);
  if (rc) goto out;
  for (size_t i = 0; i < n; i++) alive += hsm_alive(&hsms[i]);
  if (alive) {
    rc = kerr_set(err, KERR_HSM_INVALID_REQUEST,
                  "Cluster %s still has %zu HSM(s); delete them first.", cluster_id, alive);
    goto out;
  }
  rc = hsmi_cluster_set_state(svc, tx, &c, "DELETE_IN_PROGRESS", "", err);
  if (!rc) rc = describe(svc, tx, &c, out, err);
  if (!rc) rc = commit(svc, &tx, err);
  if (rc) goto out;
  hsmi_kick(svc);
out:
  if (tx) svc->st->ops->rollback(tx);
  free(hsms);
  store_hsm_cluster_clear(&c);
  if (rc) hsm_cluster_desc_clear(out);
  return rc;
}

/* ------------------------------------------------------ DescribeBackups */

kerr_code hsm_describe_backups(hsm_service *svc, const aws_call *call, const hsm_list_input *in,
                               hsm_backup_list *out, kerr *err) {
  static const char *const allowed[] = {"backupIds", "clusterIds", "states", NULL};
  store_tx *tx = NULL;
  store_hsm_backup *all = NULL;
  size_t n = 0;
  memset(out, 0, sizeof *out);
  kerr_code rc = authorize(call, "DescribeBackups", NULL, err);
  if (rc) return rc;
  rc = check_filters(in, allowed, err);
  if (rc) return rc;
  if (in->next_token && strncmp(in->next_token, "backup-", 7) != 0)
    return kerr_set(err, KERR_HSM_INVALID_REQUEST, "Invalid NextToken.");
  const hsm_filter *ids = find_filter(in, "backupIds"), *clusters = find_filter(in, "clusterIds"),
                   *states = find_filter(in, "states");
  rc = hsmi_begin(svc, false, &tx, err);
  if (rc) return rc;
  rc = svc->st->ops->hsm->backup_list(tx, call->caller->account_id, call->region, &all, &n, err);
  svc->st->ops->rollback(tx);
  if (rc) return rc;
  out->items = calloc(n ? n : 1, sizeof *out->items);
  if (!out->items) {
    free(all);
    return kerr_set(err, KERR_INTERNAL, "Out of memory.");
  }
  bool skipping = in->next_token != NULL;
  for (size_t k = 0; k < n; k++) {
    const store_hsm_backup *b = &all[in->sort_ascending ? k : n - 1 - k];
    if (skipping) {
      if (strcmp(b->backup_id, in->next_token) == 0) skipping = false;
      continue;
    }
    if (!filter_pass(ids, b->backup_id) || !filter_pass(clusters, b->cluster_id) ||
        !filter_pass(states, b->state))
      continue;
    if (in->max_results > 0 && out->n == (size_t)in->max_results) {
      out->next_token = strdup(out->items[out->n - 1].backup_id);
      if (!out->next_token) rc = kerr_set(err, KERR_INTERNAL, "Out of memory.");
      break;
    }
    out->items[out->n++] = *b;
  }
  free(all);
  if (rc) hsm_backup_list_clear(out);
  return rc;
}
