/* domain_fixture.h - what the domain-level unit tests share: a kms_domain
 * over a fresh temporary data directory, called as the root of account
 * 111122223333 in us-east-1, plus small file, shell and HSM-cluster helpers.
 *
 * Included by one test program at a time (each tests/unit/test_*.c is its
 * own executable), so the state lives in statics here.  Everything is
 * `static inline` so a program that uses only part of it compiles cleanly. */
#ifndef KMSD_TESTS_DOMAIN_FIXTURE_H
#define KMSD_TESTS_DOMAIN_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloudhsm/hsm_admin.h"
#include "kms/kms_domain.h"

#define FIXTURE_ACCT "111122223333"
#define FIXTURE_REGION "us-east-1"
#define FIXTURE_WAIT_MS 60000

static char dir[64];
static kms_domain *dom;
static principal root;
static kms_call call;

/* Make a temporary data directory named after `name` and open a domain on it
 * (no sweeper thread: tests sweep themselves); `request_id` tags log lines.
 * 0 on success, -1 (with a message on stderr) otherwise. */
static inline int fixture_open(const char *name, const char *request_id) {
  kms_domain_config cfg = {.sweep_interval_ms = -1};
  kerr err;
  snprintf(dir, sizeof dir, "/tmp/kmsd-%s-XXXXXX", name);
  if (!mkdtemp(dir)) return -1;
  memset(&root, 0, sizeof root);
  snprintf(root.access_key_id, sizeof root.access_key_id, "AKIA" FIXTURE_ACCT);
  snprintf(root.account_id, sizeof root.account_id, FIXTURE_ACCT);
  snprintf(root.arn, sizeof root.arn, "arn:aws:iam::" FIXTURE_ACCT ":root");
  root.is_root = true;
  call = (kms_call){&root, FIXTURE_REGION, request_id, false, NULL};
  cfg.data_dir = dir;
  if (kms_domain_open(&cfg, &dom, &err) != KERR_OK) {
    fprintf(stderr, "kms_domain_open: %s\n", err.msg);
    return -1;
  }
  return 0;
}

/* Close the domain and remove its directory. */
static inline int fixture_close(void) {
  char cmd[128];
  kms_domain_close(dom);
  dom = NULL;
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static inline void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* The whole file at `path` as a NUL-terminated heap string, or NULL. */
static inline char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  long n;
  char *buf;
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = n < 0 ? NULL : calloc(1, (size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  return buf;
}

/* read_file of `name` inside the data directory; the file must exist. */
static inline char *read_in_dir(const char *name) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  char *text = read_file(path);
  assert_non_null(text);
  return text;
}

static inline void write_in_dir(const char *name, const char *text) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
  fclose(f);
}

/* Run a shell command inside the data directory; it must succeed. */
static inline void run(const char *cmd) {
  char full[1024];
  snprintf(full, sizeof full, "cd %s && %s >/dev/null 2>&1", dir, cmd);
  assert_int_equal(system(full), 0);
}

/* The cluster as DescribeClusters shows it (caller clears). */
static inline void describe(const char *cluster_id, hsm_cluster_desc *out) {
  const char *ids[] = {cluster_id};
  hsm_filter f = {"clusterIds", ids, 1};
  hsm_list_input in;
  hsm_cluster_list list;
  kerr err;
  memset(&in, 0, sizeof in);
  memset(&list, 0, sizeof list);
  in.filters = &f;
  in.nfilters = 1;
  if (hsm_describe_clusters(kms_domain_cloudhsm(dom), &call, &in, &list, &err) != KERR_OK)
    fail_msg("describe_clusters: %s", err.msg);
  assert_int_equal(list.n, 1);
  *out = list.items[0];
  memset(&list.items[0], 0, sizeof list.items[0]);
  hsm_cluster_list_clear(&list);
}

static inline int count_hsms(const hsm_cluster_desc *c, const char *state) {
  int n = 0;
  for (size_t i = 0; i < c->nhsms; i++) n += strcmp(c->hsms[i].state, state) == 0;
  return n;
}

/* Wait until the cluster is in `state` with at least `active` ACTIVE HSMs,
 * or, with `exactly`, with exactly `active` HSMs, all ACTIVE. */
static inline void wait_cluster_hsms(const char *cluster_id, const char *state, int active,
                                     bool exactly) {
  for (int waited = 0; waited < FIXTURE_WAIT_MS; waited += 20) {
    hsm_cluster_desc c;
    describe(cluster_id, &c);
    int n = count_hsms(&c, "ACTIVE");
    bool done = strcmp(c.c.state, state) == 0 &&
                (exactly ? n == active && (int)c.nhsms == active : n >= active);
    hsm_cluster_desc_clear(&c);
    if (done) return;
    sleep_ms(20);
  }
  fail_msg("cluster %s never reached %s with %d active HSMs", cluster_id, state, active);
}

#endif
