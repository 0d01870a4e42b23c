/* test_xksp_config.c - xks-proxy's configuration (lib/xksproxy/xksp_config):
 * one full file in YAML and in JSON gives the same configuration, defaults,
 * relative paths, PIN and secret files, every refusal with the key path it
 * names, that no refusal quotes a secret or a PIN, and the flags path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "xksproxy/xksp_config.h"

/* The texts built here are far below their buffers; gcc cannot see that
 * through the nested snprintf calls. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#define AKID1 "AKIAXKSPROXY2345"
#define AKID2 "AKIAXKSPROXY7777"
#define AKID3 "AKIAXKSPROXY3333"
#define SECRET1 "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY1234"
#define SECRET2 "Zm9vYmFyYmF6cXV4cXV1eGZvb2JhcmJhenF1eHF1dXg="
#define SECRET_FROM_FILE "c2VjcmV0LWZyb20tYS1maWxlLWZvci10aGUtcHJveHk="

static char g_dir[256];     /* a temporary directory with the files below */
static char g_module[320];  /* an absolute path to a stand-in module */

/* ---- helpers ------------------------------------------------------------ */

static void write_file(const char *dir, const char *name, const char *text) {
  char path[512];
  FILE *f;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  f = fopen(path, "w");
  assert_non_null(f);
  assert_int_equal(fputs(text, f) >= 0, 1);
  assert_int_equal(fclose(f), 0);
}

static int setup(void **state) {
  char adir[512];
  (void)state;
  snprintf(g_dir, sizeof g_dir, "/tmp/xksp-config-XXXXXX");
  if (!mkdtemp(g_dir)) return -1;
  snprintf(g_module, sizeof g_module, "%s/module.so", g_dir);
  write_file(g_dir, "module.so", "not really a module, a regular file is enough here\n");
  write_file(g_dir, "pin.txt", "5678\n");
  write_file(g_dir, "secret.txt", SECRET_FROM_FILE "\r\n");
  snprintf(adir, sizeof adir, "%s/adir", g_dir);
  if (mkdir(adir, 0700) != 0) return -1;
  return 0;
}

static int teardown(void **state) {
  const char *names[] = {"module.so", "pin.txt", "secret.txt", "xks.yaml", "big.txt", NULL};
  char path[512];
  (void)state;
  for (size_t i = 0; names[i]; i++) {
    snprintf(path, sizeof path, "%s/%s", g_dir, names[i]);
    unlink(path);
  }
  snprintf(path, sizeof path, "%s/adir", g_dir);
  rmdir(path);
  rmdir(g_dir);
  return 0;
}

static xksp_config *parse_ok(const char *text, const char *name) {
  xksp_config *c = NULL;
  kerr err;
  kerr_clear(&err);
  if (xksp_config_parse(text, strlen(text), name, &c, &err) != KERR_OK)
    fail_msg("refused: %s", err.msg);
  assert_non_null(c);
  return c;
}

/* Parse `text` as "cfg.yaml": it must be refused with a message holding
 * `needle`; returns a copy of the message for further checks. */
static void refused(const char *text, const char *needle) {
  xksp_config *c = (xksp_config *)1;
  kerr err;
  kerr_clear(&err);
  assert_int_equal(xksp_config_parse(text, strlen(text), "cfg.yaml", &c, &err), KERR_VALIDATION);
  assert_null(c);
  if (!strstr(err.msg, needle)) fail_msg("message '%s' lacks '%s'", err.msg, needle);
  assert_int_equal(strncmp(err.msg, "cfg.yaml: ", 10), 0);
}

static void refused_secret(const char *text, const char *needle, const char *secret) {
  xksp_config *c = NULL;
  kerr err;
  kerr_clear(&err);
  assert_int_equal(xksp_config_parse(text, strlen(text), "cfg.yaml", &c, &err), KERR_VALIDATION);
  if (!strstr(err.msg, needle)) fail_msg("message '%s' lacks '%s'", err.msg, needle);
  assert_null(strstr(err.msg, secret));
}

/* A minimal YAML configuration; each argument replaces one part (NULL: the
 * default). `top` replaces "plain_http: true", `store` is added to the
 * store, `creds` and `tokens` replace those lists (with their keys). */
static char *yaml(const char *top, const char *store, const char *creds, const char *tokens) {
  static char buf[16384];
  snprintf(buf, sizeof buf,
           "%s"
           "key_stores:\n"
           "  - uri_prefix: /demo/kms/xks/v1\n"
           "    region: us-east-1\n"
           "    pkcs11_module: %s\n"
           "%s"
           "%s"
           "%s",
           top ? top : "plain_http: true\n", g_module, store ? store : "",
           creds ? creds
                 : "    credentials:\n"
                   "      - access_key_id: " AKID1 "\n"
                   "        secret_access_key: " SECRET1 "\n",
           tokens ? tokens
                  : "    tokens:\n"
                    "      - label: xks-1\n"
                    "        pin: \"1234\"\n");
  return buf;
}

/* ---- a full file, both formats ------------------------------------------ */

static const char full_yaml[] =
    "# a full configuration\n"
    "listen: \"0.0.0.0:8443\"\n"
    "plain_http: false\n"
    "tls:\n"
    "  cert: server.pem\n"
    "  key: 'server.key'\n"
    "  client_ca: /etc/xks/kms-ca.pem\n"
    "  client_subjects: [cks.kms.us-east-1.amazonaws.com, cks.kms.eu-west-1.amazonaws.com]\n"
    "  priority: \"SECURE256:-VERS-ALL:+VERS-TLS1.3\"\n"
    "ping_path: /lb/ping\n"
    "threads: 4\n"
    "connection_limit: 500\n"
    "idle_timeout_seconds: 30\n"
    "log_level: debug\n"
    "key_stores:\n"
    "  - name: demo\n"
    "    uri_prefix: /demo/kms/xks/v1\n"
    "    region: us-east-1\n"
    "    credentials:\n"
    "      - access_key_id: " AKID1 "\n"
    "        secret_access_key: " SECRET1 "\n"
    "      - access_key_id: " AKID2 "\n"
    "        secret_access_key_file: secret.txt\n"
    "    pkcs11_module: module.so\n"
    "    tokens:\n"
    "      - label: xks-1\n"
    "        pin: \"1234\"\n"
    "      - label: xks 2\n"
    "        pin_file: pin.txt\n"
    "        pkcs11_module: MODULE\n"
    "    session_pool: 16\n"
    "    iv_source: hsm\n"
    "    health_key: xks-health\n"
    "    health_interval_seconds: 20\n"
    "    degraded_ms: 250\n"
    "    keys: [key-a, key.b_c]\n"
    "    disabled_keys:\n"
    "      - key-c\n"
    "    quota: { requests_per_second: 1800, burst: 2500.5 }\n"
    "    authorization:\n"
    "      - sid: deny-other-accounts\n"
    "        effect: deny\n"
    "        principals: [\"arn:aws:iam::111122223333:*\"]\n"
    "        operations: [\"Encrypt\", Decrypt]\n"
    "      - effect: allow\n"
    "        key_arns: [\"*\"]\n"
    "        via_services: [ec2.us-east-1.amazonaws.com]\n"
    "        external_key_ids: [key-?]\n"
    "  - uri_prefix: /second/kms/xks/v1\n"
    "    region: eu-west-1\n"
    "    credentials:\n"
    "      - {access_key_id: " AKID3 ", secret_access_key: \"" SECRET2 "\"}\n"
    "    pkcs11_module: MODULE\n"
    "    tokens:\n"
    "      - label: \"true\"\n"
    "        pin: 12345\n"
    "    quota:\n"
    "      requests_per_second: 0.5\n";

static const char full_json[] =
    "\n  {\n"
    "  \"listen\": \"0.0.0.0:8443\",\n"
    "  \"plain_http\": false,\n"
    "  \"tls\": {\"cert\": \"server.pem\", \"key\": \"server.key\",\n"
    "          \"client_ca\": \"/etc/xks/kms-ca.pem\",\n"
    "          \"client_subjects\": [\"cks.kms.us-east-1.amazonaws.com\", \"cks.kms.eu-west-1.amazonaws.com\"],\n"
    "          \"priority\": \"SECURE256:-VERS-ALL:+VERS-TLS1.3\"},\n"
    "  \"ping_path\": \"/lb/ping\", \"threads\": 4, \"connection_limit\": 500,\n"
    "  \"idle_timeout_seconds\": 30, \"log_level\": \"debug\",\n"
    "  \"key_stores\": [\n"
    "    {\"name\": \"demo\", \"uri_prefix\": \"/demo/kms/xks/v1\", \"region\": \"us-east-1\",\n"
    "     \"credentials\": [{\"access_key_id\": \"" AKID1 "\", \"secret_access_key\": \"" SECRET1 "\"},\n"
    "                     {\"access_key_id\": \"" AKID2 "\", \"secret_access_key_file\": \"secret.txt\"}],\n"
    "     \"pkcs11_module\": \"module.so\",\n"
    "     \"tokens\": [{\"label\": \"xks-1\", \"pin\": \"1234\"},\n"
    "                {\"label\": \"xks 2\", \"pin_file\": \"pin.txt\", \"pkcs11_module\": \"MODULE\"}],\n"
    "     \"session_pool\": 16, \"iv_source\": \"hsm\", \"health_key\": \"xks-health\",\n"
    "     \"health_interval_seconds\": 20, \"degraded_ms\": 250,\n"
    "     \"keys\": [\"key-a\", \"key.b_c\"], \"disabled_keys\": [\"key-c\"],\n"
    "     \"quota\": {\"requests_per_second\": 1800, \"burst\": 2500.5},\n"
    "     \"authorization\": [\n"
    "       {\"sid\": \"deny-other-accounts\", \"effect\": \"deny\",\n"
    "        \"principals\": [\"arn:aws:iam::111122223333:*\"], \"operations\": [\"Encrypt\", \"Decrypt\"]},\n"
    "       {\"effect\": \"allow\", \"key_arns\": [\"*\"], \"via_services\": [\"ec2.us-east-1.amazonaws.com\"],\n"
    "        \"external_key_ids\": [\"key-?\"]}]},\n"
    "    {\"uri_prefix\": \"/second/kms/xks/v1\", \"region\": \"eu-west-1\",\n"
    "     \"credentials\": [{\"access_key_id\": \"" AKID3 "\", \"secret_access_key\": \"" SECRET2 "\"}],\n"
    "     \"pkcs11_module\": \"MODULE\", \"tokens\": [{\"label\": \"true\", \"pin\": \"12345\"}],\n"
    "     \"quota\": {\"requests_per_second\": 0.5}}]}\n";

/* The text with every "MODULE" replaced by the module's absolute path. */
static char *with_module(const char *text) {
  static char buf[16384];
  const char *p = text, *m;
  size_t n = 0;
  while ((m = strstr(p, "MODULE"))) {
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%.*s%s", (int)(m - p), p, g_module);
    p = m + 6;
  }
  snprintf(buf + n, sizeof buf - n, "%s", p);
  return buf;
}

static void assert_patterns_equal(const xksp_patterns *a, const xksp_patterns *b) {
  assert_int_equal(a->count, b->count);
  for (size_t i = 0; i < a->count; i++) assert_string_equal(a->items[i], b->items[i]);
}

static void assert_opt_string_equal(const char *a, const char *b) {
  if (!a || !b) {
    assert_ptr_equal(a, b);
    return;
  }
  assert_string_equal(a, b);
}

static void assert_configs_equal(const xksp_config *a, const xksp_config *b) {
  size_t i, j;
  assert_string_equal(a->listen, b->listen);
  assert_int_equal(a->plain_http, b->plain_http);
  assert_opt_string_equal(a->tls_cert, b->tls_cert);
  assert_opt_string_equal(a->tls_key, b->tls_key);
  assert_opt_string_equal(a->tls_client_ca, b->tls_client_ca);
  assert_opt_string_equal(a->tls_priority, b->tls_priority);
  assert_int_equal(a->tls_client_subject_count, b->tls_client_subject_count);
  for (i = 0; i < a->tls_client_subject_count; i++)
    assert_string_equal(a->tls_client_subjects[i], b->tls_client_subjects[i]);
  assert_string_equal(a->ping_path, b->ping_path);
  assert_int_equal(a->threads, b->threads);
  assert_int_equal(a->connection_limit, b->connection_limit);
  assert_int_equal(a->idle_timeout_s, b->idle_timeout_s);
  assert_int_equal(a->log_level, b->log_level);
  assert_int_equal(a->store_count, b->store_count);
  for (i = 0; i < a->store_count; i++) {
    const xksp_store_config *s = &a->stores[i], *t = &b->stores[i];
    assert_string_equal(s->name, t->name);
    assert_string_equal(s->uri_prefix, t->uri_prefix);
    assert_string_equal(s->region, t->region);
    assert_int_equal(s->credential_count, t->credential_count);
    for (j = 0; j < s->credential_count; j++) {
      assert_string_equal(s->credentials[j].access_key_id, t->credentials[j].access_key_id);
      assert_string_equal(s->credentials[j].secret_access_key, t->credentials[j].secret_access_key);
    }
    assert_string_equal(s->pkcs11_module, t->pkcs11_module);
    assert_int_equal(s->token_count, t->token_count);
    for (j = 0; j < s->token_count; j++) {
      assert_string_equal(s->tokens[j].label, t->tokens[j].label);
      assert_string_equal(s->tokens[j].pin, t->tokens[j].pin);
      assert_opt_string_equal(s->tokens[j].module, t->tokens[j].module);
    }
    assert_int_equal(s->session_pool, t->session_pool);
    assert_int_equal(s->iv_source, t->iv_source);
    assert_opt_string_equal(s->health_key, t->health_key);
    assert_int_equal(s->health_interval_s, t->health_interval_s);
    assert_int_equal(s->degraded_ms, t->degraded_ms);
    assert_int_equal(s->key_count, t->key_count);
    for (j = 0; j < s->key_count; j++) assert_string_equal(s->keys[j], t->keys[j]);
    assert_int_equal(s->disabled_key_count, t->disabled_key_count);
    for (j = 0; j < s->disabled_key_count; j++) assert_string_equal(s->disabled_keys[j], t->disabled_keys[j]);
    assert_true(s->quota_rps == t->quota_rps);
    assert_true(s->quota_burst == t->quota_burst);
    assert_int_equal(s->rule_count, t->rule_count);
    for (j = 0; j < s->rule_count; j++) {
      assert_string_equal(s->rules[j].sid, t->rules[j].sid);
      assert_int_equal(s->rules[j].effect, t->rules[j].effect);
      assert_patterns_equal(&s->rules[j].principals, &t->rules[j].principals);
      assert_patterns_equal(&s->rules[j].operations, &t->rules[j].operations);
      assert_patterns_equal(&s->rules[j].key_arns, &t->rules[j].key_arns);
      assert_patterns_equal(&s->rules[j].via_services, &t->rules[j].via_services);
      assert_patterns_equal(&s->rules[j].external_key_ids, &t->rules[j].external_key_ids);
    }
  }
}

static void test_full_yaml_and_json_agree(void **state) {
  char name_y[512], name_j[512], want[512], text_y[16384];
  xksp_config *y, *j;
  const xksp_store_config *s;
  (void)state;
  snprintf(name_y, sizeof name_y, "%s/xks.yaml", g_dir);
  snprintf(name_j, sizeof name_j, "%s/xks.json", g_dir);
  snprintf(text_y, sizeof text_y, "%s", with_module(full_yaml));
  y = parse_ok(text_y, name_y);
  j = parse_ok(with_module(full_json), name_j);
  assert_configs_equal(y, j);

  /* The values themselves. */
  assert_string_equal(y->source, name_y);
  assert_string_equal(y->listen, "0.0.0.0:8443");
  assert_int_equal(y->plain_http, 0);
  snprintf(want, sizeof want, "%s/server.pem", g_dir);
  assert_string_equal(y->tls_cert, want);
  snprintf(want, sizeof want, "%s/server.key", g_dir);
  assert_string_equal(y->tls_key, want);
  assert_string_equal(y->tls_client_ca, "/etc/xks/kms-ca.pem");
  assert_int_equal(y->tls_client_subject_count, 2);
  assert_string_equal(y->tls_client_subjects[1], "cks.kms.eu-west-1.amazonaws.com");
  assert_string_equal(y->tls_priority, "SECURE256:-VERS-ALL:+VERS-TLS1.3");
  assert_string_equal(y->ping_path, "/lb/ping");
  assert_int_equal(y->threads, 4);
  assert_int_equal(y->connection_limit, 500);
  assert_int_equal(y->idle_timeout_s, 30);
  assert_int_equal(y->log_level, LOG_DEBUG);
  assert_int_equal(y->store_count, 2);
  s = &y->stores[0];
  assert_string_equal(s->name, "demo");
  assert_int_equal(s->credential_count, 2);
  assert_string_equal(s->credentials[0].secret_access_key, SECRET1);
  assert_string_equal(s->credentials[1].access_key_id, AKID2);
  assert_string_equal(s->credentials[1].secret_access_key, SECRET_FROM_FILE); /* CRLF stripped */
  snprintf(want, sizeof want, "%s/module.so", g_dir);
  assert_string_equal(s->pkcs11_module, want);
  assert_int_equal(s->token_count, 2);
  assert_null(s->tokens[0].module);
  assert_string_equal(s->tokens[0].pin, "1234");
  assert_string_equal(s->tokens[1].label, "xks 2");
  assert_string_equal(s->tokens[1].pin, "5678"); /* from pin.txt, newline stripped */
  assert_string_equal(s->tokens[1].module, g_module);
  assert_int_equal(s->session_pool, 16);
  assert_int_equal(s->iv_source, XKSP_IV_HSM);
  assert_string_equal(s->health_key, "xks-health");
  assert_int_equal(s->health_interval_s, 20);
  assert_int_equal(s->degraded_ms, 250);
  assert_int_equal(s->key_count, 2);
  assert_string_equal(s->keys[1], "key.b_c");
  assert_int_equal(s->disabled_key_count, 1);
  assert_true(s->quota_rps == 1800.0 && s->quota_burst == 2500.5);
  assert_int_equal(s->rule_count, 2);
  assert_string_equal(s->rules[0].sid, "deny-other-accounts");
  assert_int_equal(s->rules[0].effect, XKSP_DENY);
  assert_int_equal(s->rules[0].operations.count, 2);
  assert_int_equal(s->rules[0].key_arns.count, 0);
  assert_string_equal(s->rules[1].sid, "rule 2");
  assert_int_equal(s->rules[1].effect, XKSP_ALLOW);
  assert_string_equal(s->rules[1].external_key_ids.items[0], "key-?");
  s = &y->stores[1];
  assert_string_equal(s->name, "/second/kms/xks/v1"); /* defaults to the prefix */
  assert_string_equal(s->tokens[0].label, "true");    /* quoted: a string */
  assert_string_equal(s->tokens[0].pin, "12345");     /* unquoted digits are a string here */
  assert_int_equal(s->session_pool, XKSP_DEFAULT_POOL);
  assert_int_equal(s->iv_source, XKSP_IV_AUTO);
  assert_null(s->health_key);
  assert_null(s->keys);
  assert_int_equal(s->rule_count, 0);
  assert_true(s->quota_rps == 0.5 && s->quota_burst == 1.0); /* a bucket holds one request */

  assert_int_equal(xksp_config_find_store(y, "/second/kms/xks/v1"), 1);
  assert_int_equal(xksp_config_find_store(y, "/demo/kms/xks/v1"), 0);
  assert_int_equal(xksp_config_find_store(y, "/demo/kms/xks"), -1);
  assert_int_equal(xksp_config_find_store(y, "/demo/kms/xks/v1/"), -1);
  xksp_config_free(y);
  xksp_config_free(j);
}

static void test_load_file(void **state) {
  char path[512], text[16384];
  xksp_config *a, *b;
  kerr err;
  (void)state;
  snprintf(text, sizeof text, "%s", with_module(full_yaml));
  write_file(g_dir, "xks.yaml", text);
  snprintf(path, sizeof path, "%s/xks.yaml", g_dir);
  assert_int_equal(xksp_config_load(path, &a, &err), KERR_OK);
  b = parse_ok(text, path);
  assert_configs_equal(a, b);
  xksp_config_free(a);
  xksp_config_free(b);

  snprintf(path, sizeof path, "%s/missing.yaml", g_dir);
  assert_int_equal(xksp_config_load(path, &a, &err), KERR_VALIDATION);
  assert_null(a);
  assert_non_null(strstr(err.msg, "missing.yaml"));
  assert_int_equal(xksp_config_load(g_dir, &a, &err), KERR_VALIDATION);
  assert_non_null(strstr(err.msg, "not a regular file"));
}

static void test_defaults(void **state) {
  xksp_config *c;
  (void)state;
  c = parse_ok(yaml(NULL, NULL, NULL, NULL), "cfg.yaml");
  assert_string_equal(c->listen, XKSP_DEFAULT_LISTEN);
  assert_int_equal(c->plain_http, 1);
  assert_null(c->tls_cert);
  assert_string_equal(c->ping_path, XKSP_DEFAULT_PING_PATH);
  assert_int_equal(c->threads, 0);
  assert_int_equal(c->log_level, LOG_INFO);
  assert_string_equal(c->stores[0].name, "/demo/kms/xks/v1");
  assert_int_equal(c->stores[0].session_pool, XKSP_DEFAULT_POOL);
  assert_int_equal(c->stores[0].health_interval_s, XKSP_DEFAULT_HEALTH_INTERVAL_S);
  assert_int_equal(c->stores[0].degraded_ms, XKSP_DEFAULT_DEGRADED_MS);
  assert_true(c->stores[0].quota_rps == 0);
  /* "cfg.yaml" has no directory: a relative module path stays relative. */
  assert_string_equal(c->stores[0].pkcs11_module, g_module);
  xksp_config_free(c);

  /* A client CA without subjects: KMS's name in each region, once. */
  c = parse_ok(yaml("tls: {cert: c.pem, key: k.pem, client_ca: ca.pem}\n", NULL, NULL, NULL),
               "cfg.yaml");
  assert_int_equal(c->tls_client_subject_count, 1);
  assert_string_equal(c->tls_client_subjects[0], "cks.kms.us-east-1.amazonaws.com");
  assert_string_equal(c->tls_cert, "c.pem");
  xksp_config_free(c);

  /* A long prefix makes a shortened name. */
  {
    char text[4096], prefix[130];
    memset(prefix, 'a', sizeof prefix);
    prefix[0] = '/';
    memcpy(prefix + 128 - 11, "/kms/xks/v1", 12);
    snprintf(text, sizeof text,
             "plain_http: true\nkey_stores:\n  - uri_prefix: %s\n    region: r\n    pkcs11_module: %s\n"
             "    credentials: [{access_key_id: " AKID1 ", secret_access_key: " SECRET1 "}]\n"
             "    tokens: [{label: t, pin: \"1234\"}]\n",
             prefix, g_module);
    c = parse_ok(text, "cfg.yaml");
    assert_int_equal(strlen(c->stores[0].name), XKSP_NAME_MAX);
    assert_int_equal(strncmp(c->stores[0].name, prefix, XKSP_NAME_MAX - 3), 0);
    xksp_config_free(c);
  }
}

/* ---- refusals ------------------------------------------------------------ */

static void test_refused_syntax(void **state) {
  char *big;
  xksp_config *c;
  kerr err;
  (void)state;
  refused("", "empty");
  refused("just a string\n", "must be a mapping");
  refused("[1, 2]\n", "must be a mapping");
  refused("a: [1, 2\n", "invalid YAML");
  refused("{\"a\": 1,}", "invalid JSON");
  refused(yaml("threads: 1\nthreads: 2\nplain_http: true\n", NULL, NULL, NULL), "duplicate key 'threads'");
  refused("{\"threads\": 1, \"threads\": 2}", "duplicate key");
  refused(yaml("threads: &n 4\nplain_http: true\n", NULL, NULL, NULL), "anchors are not allowed");
  refused(yaml("threads: *n\nplain_http: true\n", NULL, NULL, NULL), "aliases are not allowed");
  refused(yaml("threads: !!int 4\nplain_http: true\n", NULL, NULL, NULL), "tags are not allowed");
  refused("a: &x [1, 2]\nb: [*x, *x, *x, *x]\n", "anchors are not allowed");
  refused("---\nplain_http: true\n---\nthreads: 1\n", "only one YAML document");
  refused("? [a, b]\n: c\n", "a mapping key must be a plain string");
  refused("a: [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]\n", "nested deeper than 16");
  refused("{\"a\": [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}", "nested deeper than 16");
  refused("a: {b: [[[[[[[[[[[[[[1]]]]]]]]]]]]]]}\n", "unknown key"); /* 16 levels: parsed */

  big = malloc(XKSP_CONFIG_FILE_MAX + 2);
  assert_non_null(big);
  memset(big, 'a', 9000);
  memcpy(big, "ping_path: /", 12);
  big[9000] = '\0';
  refused(big, "longer than 8192 bytes");
  memset(big, '#', XKSP_CONFIG_FILE_MAX + 1);
  assert_int_equal(xksp_config_parse(big, XKSP_CONFIG_FILE_MAX + 1, "cfg.yaml", &c, &err), KERR_VALIDATION);
  assert_non_null(strstr(err.msg, "larger than"));
  free(big);
}

static void test_refused_types(void **state) {
  (void)state;
  refused(yaml(NULL, "    session_pool: 8x\n", NULL, NULL),
          "cfg.yaml: key_stores[0].session_pool: must be an integer from 1 to 64");
  refused(yaml(NULL, "    session_pool: \"8\"\n", NULL, NULL), "key_stores[0].session_pool: must be an integer");
  refused(yaml(NULL, "    session_pool: 8.0\n", NULL, NULL), "key_stores[0].session_pool: must be an integer");
  refused(yaml(NULL, "    session_pool: -1\n", NULL, NULL), "key_stores[0].session_pool: must be an integer");
  refused(yaml(NULL, "    session_pool: 08\n", NULL, NULL), "key_stores[0].session_pool: must be an integer");
  refused(yaml(NULL, "    session_pool: 0\n", NULL, NULL), "key_stores[0].session_pool: must be an integer");
  refused(yaml(NULL, "    session_pool: 65\n", NULL, NULL), "key_stores[0].session_pool: must be an integer");
  refused(yaml(NULL, "    session_pool: 99999999999999999999999\n", NULL, NULL), "session_pool: must be an integer");
  refused(yaml("plain_http: yes\n", NULL, NULL, NULL), "cfg.yaml: plain_http: must be true or false");
  refused(yaml("plain_http: \"true\"\n", NULL, NULL, NULL), "plain_http: must be true or false");
  refused(yaml("plain_http: true\nthreads: [1]\n", NULL, NULL, NULL), "threads: must be an integer");
  refused(yaml("plain_http: true\nthreads: 1025\n", NULL, NULL, NULL), "threads: must be an integer from 0 to 1024");
  refused(yaml("plain_http: true\nlisten: 8443\n", NULL, NULL, NULL), "listen: ");
  refused(yaml("plain_http: true\nlisten: [a]\n", NULL, NULL, NULL), "listen: must be a string");
  refused(yaml("plain_http: true\nlog_level: loud\n", NULL, NULL, NULL), "log_level: must be debug, info, warn or error");
  refused(yaml("plain_http: true\ncolour: red\n", NULL, NULL, NULL), "cfg.yaml: colour: unknown key");
  refused(yaml(NULL, "    regoin: us-east-1\n", NULL, NULL), "cfg.yaml: key_stores[0].regoin: unknown key");
  refused(yaml(NULL, "    quota: {requests_per_second: 10, brust: 5}\n", NULL, NULL), "key_stores[0].quota.brust: unknown key");
  refused(yaml(NULL, "    quota: 10\n", NULL, NULL), "key_stores[0].quota: must be a mapping");
  refused(yaml(NULL, "    quota: {requests_per_second: 0}\n", NULL, NULL), "quota.requests_per_second: must be a number above 0");
  refused(yaml(NULL, "    quota: {requests_per_second: 2e6}\n", NULL, NULL), "quota.requests_per_second: must be a number");
  refused(yaml(NULL, "    quota: {requests_per_second: 1e}\n", NULL, NULL), "quota.requests_per_second: must be a number");
  refused(yaml(NULL, "    quota: {requests_per_second: '10'}\n", NULL, NULL), "quota.requests_per_second: must be a number");
  refused(yaml(NULL, "    quota: {requests_per_second: 10, burst: 0.5}\n", NULL, NULL), "quota.burst: must be a number from 1");
  refused(yaml(NULL, "    quota: {burst: 5}\n", NULL, NULL), "quota.requests_per_second: is required");
  refused(yaml(NULL, "    iv_source: random\n", NULL, NULL), "key_stores[0].iv_source: must be auto, hsm or drbg");
  refused(yaml(NULL, "    health_interval_seconds: 60\n", NULL, NULL), "health_interval_seconds: must be an integer from 1 to 59");
  refused(yaml(NULL, "    degraded_ms: 0\n", NULL, NULL), "degraded_ms: must be an integer from 1 to 60000");
  refused(yaml(NULL, "    health_key: a/b\n", NULL, NULL), "key_stores[0].health_key: must be");
  refused(yaml(NULL, "    keys: [good, a/b]\n", NULL, NULL), "key_stores[0].keys[1]: must be 1 to 128 characters");
  refused(yaml(NULL, "    keys: []\n", NULL, NULL), "key_stores[0].keys: must have 1 to 4096 entries");
  refused(yaml(NULL, "    disabled_keys: key-a\n", NULL, NULL), "key_stores[0].disabled_keys: must be a list");

  /* JSON: numbers are numbers, strings are strings. */
  refused("{\"plain_http\": true, \"threads\": \"4\"}", "threads: must be an integer");
  refused("{\"plain_http\": true, \"threads\": 4.5}", "threads: must be an integer");
  refused("{\"plain_http\": true, \"threads\": -4}", "threads: must be an integer");
  refused("{\"plain_http\": \"true\"}", "plain_http: must be true or false");
  refused("{\"plain_http\": true, \"listen\": null}", "listen: must be a string");
}

static void test_refused_stores(void **state) {
  char text[20000];
  (void)state;
  refused("plain_http: true\n", "cfg.yaml: key_stores: is required");
  refused("plain_http: true\nkey_stores: []\n", "key_stores: must have 1 to 64 entries");
  refused("plain_http: true\nkey_stores: [5]\n", "key_stores[0]: must be a mapping");
  refused(yaml(NULL, "    name: \"tab\\there\"\n", NULL, NULL), "key_stores[0].name: must be 1 to 64 printable");
  refused(yaml(NULL, "    uri_prefix: /x\n", NULL, NULL), "duplicate key 'uri_prefix'");
  refused(yaml(NULL, "    region: us-east-1\n", NULL, NULL), "duplicate key 'region'");
  refused("plain_http: true\nkey_stores:\n  - uri_prefix: /demo\n",
          "key_stores[0].uri_prefix: The XKS proxy URI path must start with '/' and end with /kms/xks/v1.");
  refused("plain_http: true\nkey_stores:\n  - uri_prefix: /demo/kms/xks/v1\n    region: US-EAST-1\n",
          "key_stores[0].region: must be 1 to 32 characters of a-z 0-9 -");
  refused("plain_http: true\nkey_stores:\n  - uri_prefix: /demo/kms/xks/v1\n", "key_stores[0].region: is required");
  refused(yaml(NULL, NULL, "", NULL), "key_stores[0].credentials: is required");
  refused(yaml(NULL, NULL,
               "    credentials:\n"
               "      - {access_key_id: " AKID1 ", secret_access_key: " SECRET1 "}\n"
               "      - {access_key_id: " AKID2 ", secret_access_key: " SECRET1 "}\n"
               "      - {access_key_id: " AKID3 ", secret_access_key: " SECRET1 "}\n",
               NULL),
          "key_stores[0].credentials: must have 1 to 2 entries");
  refused(yaml(NULL, NULL,
               "    credentials:\n"
               "      - {access_key_id: " AKID1 ", secret_access_key: " SECRET1 "}\n"
               "      - {access_key_id: akiaxksproxy7777, secret_access_key: " SECRET1 "}\n",
               NULL),
          "cfg.yaml: key_stores[0].credentials[1].access_key_id: must be 16 to 128 characters of A-Z and 2-7");
  refused(yaml(NULL, NULL, "    credentials: [{access_key_id: AKIAXKSPROXY2341, secret_access_key: " SECRET1 "}]\n", NULL),
          "credentials[0].access_key_id: must be 16 to 128 characters of A-Z and 2-7");
  refused(yaml(NULL, NULL, "    credentials: [{access_key_id: AKIA, secret_access_key: " SECRET1 "}]\n", NULL),
          "credentials[0].access_key_id: must be 16");
  refused(yaml(NULL, NULL, "    credentials: [{secret_access_key: " SECRET1 "}]\n", NULL),
          "credentials[0].access_key_id: is required");
  refused(yaml(NULL, NULL, "    credentials: [{access_key_id: " AKID1 "}]\n", NULL),
          "credentials[0].secret_access_key: is required (or secret_access_key_file)");
  refused(yaml(NULL, NULL, "    credentials: [{access_key_id: " AKID1 ", secret: x}]\n", NULL),
          "credentials[0].secret: unknown key");
  refused(yaml(NULL, NULL, NULL, ""), "key_stores[0].tokens: is required");
  refused(yaml(NULL, NULL, NULL, "    tokens: []\n"), "key_stores[0].tokens: must have 1 to 10 entries");
  refused(yaml(NULL, NULL, NULL, "    tokens: [{pin: \"1234\"}]\n"), "key_stores[0].tokens[0].label: is required");
  refused(yaml(NULL, NULL, NULL, "    tokens: [{label: \"\", pin: \"1234\"}]\n"), "tokens[0].label: must be 1 to 32 printable");
  refused(yaml(NULL, NULL, NULL, "    tokens: [{label: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, pin: \"1234\"}]\n"),
          "tokens[0].label: must be 1 to 32 printable");
  refused(yaml(NULL, NULL, NULL, "    tokens: [{label: a, pin: \"1234\"}, {label: a, pin: \"1234\"}]\n"),
          "key_stores[0].tokens[1].label: 'a' is also the label of tokens[0]");
  refused(yaml(NULL, NULL, NULL, "    tokens: [{label: a}]\n"), "tokens[0].pin: is required (or pin_file)");
  snprintf(text, sizeof text, "    tokens: [{label: a, pin: \"1234\", pin_file: %s/pin.txt}]\n", g_dir);
  refused(yaml(NULL, NULL, NULL, text), "tokens[0].pin_file: give pin or pin_file, not both");
  refused(yaml(NULL, NULL, NULL, "    tokens: [{label: a, pin_file: /nonexistent/pin}]\n"),
          "key_stores[0].tokens[0].pin_file: /nonexistent/pin: No such file");
  snprintf(text, sizeof text, "    tokens: [{label: a, pin_file: %s}]\n", g_dir);
  refused(yaml(NULL, NULL, NULL, text), "tokens[0].pin_file: ");
  refused(yaml(NULL, NULL, NULL, "    tokens: [{label: a, pin: \"1234\", pkcs11_module: /nonexistent/p11.so}]\n"),
          "key_stores[0].tokens[0].pkcs11_module: /nonexistent/p11.so: No such file");
  refused("plain_http: true\nkey_stores:\n  - uri_prefix: /demo/kms/xks/v1\n    region: r\n"
          "    credentials: [{access_key_id: " AKID1 ", secret_access_key: " SECRET1 "}]\n"
          "    pkcs11_module: /nonexistent/p11.so\n",
          "key_stores[0].pkcs11_module: /nonexistent/p11.so: No such file");
  snprintf(text, sizeof text,
           "plain_http: true\nkey_stores:\n  - uri_prefix: /demo/kms/xks/v1\n    region: r\n"
           "    credentials: [{access_key_id: " AKID1 ", secret_access_key: " SECRET1 "}]\n"
           "    pkcs11_module: %s/adir\n",
           g_dir);
  refused(text, "key_stores[0].pkcs11_module: ");
  refused(text, "not a regular file");

  /* Between stores. */
  snprintf(text, sizeof text, "%s  - uri_prefix: %s\n    region: us-west-2\n    pkcs11_module: %s\n"
           "    credentials: [{access_key_id: %s, secret_access_key: " SECRET1 "}]\n"
           "    tokens: [{label: a, pin: \"1234\"}]\n",
           yaml(NULL, NULL, NULL, NULL), "/demo/kms/xks/v1", g_module, AKID2);
  refused(text, "key_stores[1].uri_prefix: '/demo/kms/xks/v1' is also the URI prefix of key_stores[0]");
  snprintf(text, sizeof text, "%s  - uri_prefix: %s\n    region: us-west-2\n    pkcs11_module: %s\n"
           "    credentials: [{access_key_id: %s, secret_access_key: " SECRET1 "}]\n"
           "    tokens: [{label: a, pin: \"1234\"}]\n",
           yaml(NULL, NULL, NULL, NULL), "/other/kms/xks/v1", g_module, AKID1);
  refused(text, "key_stores[1].credentials[0].access_key_id: is also used by key_stores[0].credentials[0]");
  snprintf(text, sizeof text, "%s  - uri_prefix: %s\n    region: us-west-2\n    pkcs11_module: %s\n"
           "    name: /demo/kms/xks/v1\n"
           "    credentials: [{access_key_id: %s, secret_access_key: " SECRET1 "}]\n"
           "    tokens: [{label: a, pin: \"1234\"}]\n",
           yaml(NULL, NULL, NULL, NULL), "/other/kms/xks/v1", g_module, AKID2);
  refused(text, "key_stores[1].name: '/demo/kms/xks/v1' is also the name of key_stores[0]");
  refused(yaml(NULL, NULL,
               "    credentials:\n"
               "      - {access_key_id: " AKID1 ", secret_access_key: " SECRET1 "}\n"
               "      - {access_key_id: " AKID1 ", secret_access_key: " SECRET2 "}\n",
               NULL),
          "key_stores[0].credentials[1].access_key_id: is also used by key_stores[0].credentials[0]");
}

static void test_refused_tls_and_ping(void **state) {
  (void)state;
  refused(yaml("", NULL, NULL, NULL), "cfg.yaml: tls: is required");
  refused(yaml("plain_http: false\n", NULL, NULL, NULL), "cfg.yaml: tls: is required");
  refused(yaml("plain_http: true\ntls: {cert: c.pem, key: k.pem}\n", NULL, NULL, NULL),
          "cfg.yaml: tls: must be absent with plain_http: true");
  refused(yaml("tls: {cert: c.pem}\n", NULL, NULL, NULL), "cfg.yaml: tls.key: is required");
  refused(yaml("tls: {key: k.pem}\n", NULL, NULL, NULL), "cfg.yaml: tls.cert: is required");
  refused(yaml("tls: {cert: c.pem, key: k.pem, crt: x}\n", NULL, NULL, NULL), "cfg.yaml: tls.crt: unknown key");
  refused(yaml("tls: {cert: c.pem, key: k.pem, client_subjects: [a.example]}\n", NULL, NULL, NULL),
          "cfg.yaml: tls.client_subjects: needs tls.client_ca");
  refused(yaml("tls: {cert: c.pem, key: k.pem, client_ca: ca.pem, client_subjects: [\"a b\"]}\n", NULL, NULL, NULL),
          "cfg.yaml: tls.client_subjects[0]: must be a DNS name");
  refused(yaml("tls: {cert: c.pem, key: k.pem, priority: \"\"}\n", NULL, NULL, NULL), "tls.priority: must be");
  refused(yaml("plain_http: true\nping_path: ping\n", NULL, NULL, NULL), "cfg.yaml: ping_path: must start with '/'");
  refused(yaml("plain_http: true\nping_path: /ping?x=1\n", NULL, NULL, NULL), "cfg.yaml: ping_path: must start with '/'");
  refused(yaml("plain_http: true\nping_path: /demo/kms/xks/v1/health\n", NULL, NULL, NULL),
          "cfg.yaml: ping_path: '/demo/kms/xks/v1/health' is an XKS API path of key_stores[0]");
  refused(yaml("plain_http: true\nping_path: /demo/kms/xks/v1/keys/k/encrypt\n", NULL, NULL, NULL),
          "ping_path: '/demo/kms/xks/v1/keys/k/encrypt' is an XKS API path");
}

static void test_refused_rules(void **state) {
  char many[8192];
  size_t n = 0;
  (void)state;
  refused(yaml(NULL, "    authorization:\n      - effect: allow\n", NULL, NULL),
          "cfg.yaml: key_stores[0].authorization[0]: has no condition");
  refused(yaml(NULL, "    authorization:\n      - principals: [\"*\"]\n", NULL, NULL),
          "key_stores[0].authorization[0].effect: is required");
  refused(yaml(NULL, "    authorization:\n      - {effect: permit, principals: [\"*\"]}\n", NULL, NULL),
          "key_stores[0].authorization[0].effect: must be allow or deny");
  refused(yaml(NULL, "    authorization:\n      - {effect: allow, principal: [\"*\"]}\n", NULL, NULL),
          "key_stores[0].authorization[0].principal: unknown key");
  refused(yaml(NULL, "    authorization:\n      - {effect: allow, operations: []}\n", NULL, NULL),
          "key_stores[0].authorization[0].operations: must have 1 to 64 entries");
  refused(yaml(NULL, "    authorization:\n      - {effect: allow, operations: Encrypt}\n", NULL, NULL),
          "key_stores[0].authorization[0].operations: must be a list");
  refused(yaml(NULL, "    authorization:\n      - {effect: allow, operations: [\"\"]}\n", NULL, NULL),
          "key_stores[0].authorization[0].operations[0]: must be 1 to 2048");
  n += (size_t)snprintf(many, sizeof many, "    authorization:\n      - {effect: allow, key_arns: [");
  for (int i = 0; i < 65; i++) n += (size_t)snprintf(many + n, sizeof many - n, "%sa", i ? ", " : "");
  snprintf(many + n, sizeof many - n, "]}\n");
  refused(yaml(NULL, many, NULL, NULL), "authorization[0].key_arns: must have 1 to 64 entries");
}

/* ---- secrets ------------------------------------------------------------------- */

static void test_secrets_never_quoted(void **state) {
  char text[4096];
  (void)state;
  const char *bad_secret = "this-secret-has-bad-characters!!!!!";
  snprintf(text, sizeof text,
           "    credentials: [{access_key_id: " AKID1 ", secret_access_key: \"%s\"}]\n", bad_secret);
  refused_secret(yaml(NULL, NULL, text, NULL),
                 "cfg.yaml: key_stores[0].credentials[0].secret_access_key: must be 32 to 128 characters of A-Z a-z 0-9 + / =",
                 bad_secret);
  refused_secret(yaml(NULL, NULL, "    credentials: [{access_key_id: " AKID1 ", secret_access_key: shortSecretKey}]\n", NULL),
                 "secret_access_key: must be 32 to 128", "shortSecretKey");
  refused_secret(yaml(NULL, NULL, "    credentials: [{access_key_id: " AKID1 ", secret_access_key: [wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY9876]}]\n", NULL),
                 "secret_access_key: must be a string", "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY9876");
  refused_secret(yaml(NULL, NULL, NULL, "    tokens: [{label: a, pin: zq9}]\n"),
                 "cfg.yaml: key_stores[0].tokens[0].pin: must be 4 to 255 bytes", "zq9");
  refused_secret(yaml(NULL, "    session_pool: Pin-Like-Value-7\n", NULL, NULL), "session_pool: must be", "Pin-Like-Value-7");

  /* A secret file with a bad secret: the path is named, the contents not. */
  write_file(g_dir, "big.txt", "not-a-valid-secret-because-of-these-dashes\n");
  snprintf(text, sizeof text, "    credentials: [{access_key_id: " AKID1 ", secret_access_key_file: %s/big.txt}]\n", g_dir);
  refused_secret(yaml(NULL, NULL, text, NULL), "credentials[0].secret_access_key_file: must be 32 to 128",
                 "not-a-valid-secret");
  /* Too large a secret file. */
  {
    char big[5000];
    memset(big, 'A', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    write_file(g_dir, "big.txt", big);
    snprintf(text, sizeof text, "    tokens: [{label: a, pin_file: %s/big.txt}]\n", g_dir);
    refused_secret(yaml(NULL, NULL, NULL, text), "big.txt: larger than 4096 bytes", "AAAAAAAA");
  }
  /* JSON syntax errors do not echo the text. */
  refused_secret("{\"pin\": \"SuperSecretPin\" ]", "invalid JSON", "SuperSecretPin");
}

/* ---- flags ------------------------------------------------------------------------ */

static xksp_flags good_flags(void) {
  xksp_flags f;
  memset(&f, 0, sizeof f);
  f.tls_cert = "server.pem";
  f.tls_key = "server.key";
  f.uri_prefix = "/demo/kms/xks/v1";
  f.region = "us-east-1";
  f.access_key_id = AKID1;
  f.secret_access_key = SECRET1;
  f.pkcs11_module = g_module;
  f.token_label = "xks-1";
  f.pin = "1234";
  return f;
}

static void flags_refused(const xksp_flags *f, const char *needle, const char *secret) {
  xksp_config *c = (xksp_config *)1;
  kerr err;
  kerr_clear(&err);
  assert_int_equal(xksp_config_from_flags(f, &c, &err), KERR_VALIDATION);
  assert_null(c);
  if (!strstr(err.msg, needle)) fail_msg("message '%s' lacks '%s'", err.msg, needle);
  if (secret) assert_null(strstr(err.msg, secret));
}

static void test_flags(void **state) {
  xksp_flags f = good_flags();
  xksp_config *c;
  char pin_file[512];
  kerr err;
  (void)state;

  assert_int_equal(xksp_config_from_flags(&f, &c, &err), KERR_OK);
  assert_string_equal(c->source, "command line");
  assert_string_equal(c->listen, XKSP_DEFAULT_LISTEN);
  assert_string_equal(c->tls_cert, "server.pem"); /* relative to the working directory */
  assert_int_equal(c->store_count, 1);
  assert_string_equal(c->stores[0].name, "/demo/kms/xks/v1");
  assert_int_equal(c->stores[0].credential_count, 1);
  assert_string_equal(c->stores[0].credentials[0].secret_access_key, SECRET1);
  assert_int_equal(c->stores[0].token_count, 1);
  assert_string_equal(c->stores[0].tokens[0].pin, "1234");
  assert_null(c->stores[0].tokens[0].module);
  assert_int_equal(c->stores[0].session_pool, XKSP_DEFAULT_POOL);
  assert_true(c->stores[0].quota_rps == 0);
  xksp_config_free(c);

  snprintf(pin_file, sizeof pin_file, "%s/pin.txt", g_dir);
  f.pin = NULL;
  f.pin_file = pin_file;
  f.access_key_id_2 = AKID2;
  f.secret_access_key_2 = SECRET2;
  f.session_pool = 4;
  f.threads = 2;
  f.quota_rps = 100;
  f.tls_client_ca = "ca.pem";
  f.log_level = "warn";
  f.ping_path = "/healthz";
  f.health_key = "health";
  assert_int_equal(xksp_config_from_flags(&f, &c, &err), KERR_OK);
  assert_string_equal(c->stores[0].tokens[0].pin, "5678");
  assert_int_equal(c->stores[0].credential_count, 2);
  assert_string_equal(c->stores[0].credentials[1].access_key_id, AKID2);
  assert_int_equal(c->stores[0].session_pool, 4);
  assert_int_equal(c->threads, 2);
  assert_true(c->stores[0].quota_rps == 100 && c->stores[0].quota_burst == 100);
  assert_int_equal(c->tls_client_subject_count, 1);
  assert_string_equal(c->tls_client_subjects[0], "cks.kms.us-east-1.amazonaws.com");
  assert_int_equal(c->log_level, LOG_WARN);
  assert_string_equal(c->ping_path, "/healthz");
  assert_string_equal(c->stores[0].health_key, "health");
  xksp_config_free(c);

  f = good_flags();
  f.plain_http = 1;
  flags_refused(&f, "--plain-http: excludes --tls-cert", NULL);
  f.tls_cert = f.tls_key = NULL;
  assert_int_equal(xksp_config_from_flags(&f, &c, &err), KERR_OK);
  assert_int_equal(c->plain_http, 1);
  assert_null(c->tls_cert);
  xksp_config_free(c);

  f = good_flags();
  f.tls_key = NULL;
  flags_refused(&f, "--tls-key: is required", NULL);
  f = good_flags();
  f.tls_cert = NULL;
  flags_refused(&f, "--tls-cert: is required", NULL);
  f = good_flags();
  f.pin_file = "/nonexistent";
  flags_refused(&f, "give --pin or --pin-file, not both", "1234");
  f = good_flags();
  f.pin = NULL;
  flags_refused(&f, "--pin: is required", NULL);
  f = good_flags();
  f.pin = "12";
  flags_refused(&f, "--pin: must be 4 to 255 bytes", NULL);
  f = good_flags();
  f.region = "Mars";
  flags_refused(&f, "--region: must be 1 to 32 characters of a-z 0-9 -", NULL);
  f = good_flags();
  f.uri_prefix = NULL;
  flags_refused(&f, "--uri-prefix: is required", NULL);
  f = good_flags();
  f.access_key_id = "lowercase-key-id-x";
  flags_refused(&f, "--access-key-id: must be 16 to 128 characters of A-Z and 2-7", NULL);
  f = good_flags();
  f.secret_access_key = "bad secret value with spaces in it!!";
  flags_refused(&f, "--secret-access-key: must be 32 to 128", "bad secret value");
  f = good_flags();
  f.access_key_id_2 = AKID1;
  f.secret_access_key_2 = SECRET2;
  flags_refused(&f, "--access-key-id-2: is also used by", NULL);
  f = good_flags();
  f.access_key_id_2 = AKID2;
  flags_refused(&f, "--secret-access-key-2: is required with --access-key-id-2", NULL);
  f = good_flags();
  f.secret_access_key_2 = "x";
  flags_refused(&f, "--access-key-id-2: is required", "x\"");
  f = good_flags();
  f.session_pool = 1000;
  flags_refused(&f, "--session-pool: must be an integer from 1 to 64", NULL);
  f = good_flags();
  f.quota_rps = 5e6;
  flags_refused(&f, "--quota-rps: must be a number", NULL);
  f = good_flags();
  f.listen = "nowhere";
  flags_refused(&f, "--listen: ", NULL);
  f = good_flags();
  f.log_level = "chatty";
  flags_refused(&f, "--log-level: must be debug, info, warn or error", NULL);
  f = good_flags();
  f.pkcs11_module = "/nonexistent/p11.so";
  flags_refused(&f, "--pkcs11-module: /nonexistent/p11.so", NULL);
  f = good_flags();
  f.token_label = NULL;
  flags_refused(&f, "--token-label: is required", NULL);
  f = good_flags();
  f.ping_path = "/demo/kms/xks/v1/health";
  flags_refused(&f, "--ping-path: ", NULL);
  f = good_flags();
  f.tls_client_subject = "cks.example";
  flags_refused(&f, "--tls-client-subject: needs tls.client_ca", NULL);

  xksp_config_free(NULL);
  assert_int_equal(xksp_config_find_store(NULL, "/x"), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full_yaml_and_json_agree),
      cmocka_unit_test(test_load_file),
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_refused_syntax),
      cmocka_unit_test(test_refused_types),
      cmocka_unit_test(test_refused_stores),
      cmocka_unit_test(test_refused_tls_and_ping),
      cmocka_unit_test(test_refused_rules),
      cmocka_unit_test(test_secrets_never_quoted),
      cmocka_unit_test(test_flags),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
