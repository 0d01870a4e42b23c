/* sigv4.c - AWS Signature Version 4, both directions (see sigv4.h).
 *
 * Every request kmsd serves passes through sigv4_verify, so it is written to
 * be strict (bounded parsing, AWS's own error wording) and cheap: the
 * canonical request is streamed straight into SHA-256 instead of being built
 * in memory, and the derived signing key is cached per (access key, date,
 * region, service) so a request costs two hashes and one HMAC, not five.
 *
 * The canonical form follows AWS for non-S3 services, which is also what
 * botocore produces: the raw path with dot segments and empty segments
 * removed, each byte outside RFC 3986's unreserved set percent-encoded (so an
 * already-encoded path is encoded twice); query parameters decoded,
 * re-encoded and sorted by name then value; header values trimmed with inner
 * whitespace runs collapsed, repeated headers joined with ','.
 *
 * Error messages are worded like AWS's but, unlike some of AWS's, never quote
 * the Authorization header: a message reaches the caller and the debug log,
 * and a logged signature is a request anyone reading the log may replay
 * within the skew window.  Only short fragments are echoed (see quotable). */
#include "aws/sigv4.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/codec.h"
#include "core/evp_algs.h"
#include "core/fnv.h"
#include "core/secmem.h"

#define ALGORITHM "AWS4-HMAC-SHA256"
#define AUTH_HEADER_MAX 4096
#define SIGNED_HEADERS_MAX 64       /* names in SignedHeaders */
#define SIGNED_LIST_MAX 2048        /* characters of the SignedHeaders list */
#define REQUEST_HEADERS_MAX 256     /* headers considered at all */
#define PATH_MAX_LEN 8192
#define QUERY_MAX_LEN 8192
#define QUERY_PARAMS_MAX 256
#define SKEW_SECONDS 300
#define AMZ_DATE_LEN 16             /* 20150830T123600Z */
#define SCOPE_FIELD_MAX 63
#define SECRET_MAX 1024
#define CACHE_SLOTS 64
#define QUOTE_MAX 24                /* longest client fragment a message may echo */

static const char msg_mismatch[] =
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details.";
static const char msg_bad_token[] = "The security token included in the request is invalid.";

/* ---- small helpers ----------------------------------------------------- */

/* Whether a fragment of the request may be echoed in an error message: at
 * most QUOTE_MAX printable characters, so no message can carry a signature
 * (64 hex digits), a secret access key (40 characters) or any other long
 * token a broken client put where it does not belong.  Every legitimate
 * value quoted (an algorithm name, a scope date or region, a date header)
 * fits in that. */
static int quotable(const char *s, size_t n) {
  size_t i;
  if (n == 0 || n > QUOTE_MAX) return 0;
  for (i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == '\'' || s[i] == '\\') return 0;
  return 1;
}

static const char *header_get(const sigv4_request *req, const char *name) {
  size_t i, n = req->nheaders < REQUEST_HEADERS_MAX ? req->nheaders : REQUEST_HEADERS_MAX;
  for (i = 0; i < n; i++)
    if (req->headers[i].name && strcasecmp(req->headers[i].name, name) == 0)
      return req->headers[i].value ? req->headers[i].value : "";
  return NULL;
}

static int is_unreserved(unsigned char c) {
  return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

static void format_amz_date(int64_t t, char out[AMZ_DATE_LEN + 1]) {
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, AMZ_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm);
}

/* Parse "YYYYMMDDTHHMMSSZ" strictly; -1 when malformed or not a real time. */
static int parse_amz_date(const char *s, int64_t *out) {
  struct tm tm, want;
  time_t t;
  size_t i;
  if (strlen(s) != AMZ_DATE_LEN || s[8] != 'T' || s[15] != 'Z') return -1;
  for (i = 0; i < AMZ_DATE_LEN; i++)
    if (i != 8 && i != 15 && !isdigit((unsigned char)s[i])) return -1;
  memset(&tm, 0, sizeof tm);
  tm.tm_year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0') - 1900;
  tm.tm_mon = (s[4] - '0') * 10 + (s[5] - '0') - 1;
  tm.tm_mday = (s[6] - '0') * 10 + (s[7] - '0');
  tm.tm_hour = (s[9] - '0') * 10 + (s[10] - '0');
  tm.tm_min = (s[11] - '0') * 10 + (s[12] - '0');
  tm.tm_sec = (s[13] - '0') * 10 + (s[14] - '0');
  want = tm;
  t = timegm(&tm);
  /* timegm normalizes 31 February and friends: reject anything that moved.
   * A year before 1000 is refused too: its canonical form is not four
   * digits.  (Compared field by field: formatting the time back and
   * comparing the text costs a strftime on every request.) */
  if (tm.tm_year != want.tm_year || tm.tm_year + 1900 < 1000 || tm.tm_mon != want.tm_mon ||
      tm.tm_mday != want.tm_mday || tm.tm_hour != want.tm_hour || tm.tm_min != want.tm_min ||
      tm.tm_sec != want.tm_sec)
    return -1;
  *out = (int64_t)t;
  return 0;
}

/* Parse an RFC 1123 Date header ("Sun, 30 Aug 2015 12:36:00 GMT") by hand:
 * strptime is locale-dependent and not in the C11 + POSIX base we build with. */
static int parse_http_date(const char *s, int64_t *out) {
  static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  static const char shape[] = "aaa, 99 aaa 9999 99:99:99 GMT"; /* 9: digit, a: letter */
  struct tm tm, back;
  time_t t;
  int m;
  size_t i;
  if (strlen(s) != sizeof shape - 1) return -1;
  for (i = 0; i < sizeof shape - 1; i++) {
    if (shape[i] == '9' ? !isdigit((unsigned char)s[i])
                        : shape[i] == 'a' ? !isalpha((unsigned char)s[i]) : s[i] != shape[i])
      return -1;
  }
  for (m = 0; m < 12; m++)
    if (strncmp(s + 8, months + 3 * m, 3) == 0) break;
  if (m == 12) return -1;
#define NUM2(p) (((p)[0] - '0') * 10 + ((p)[1] - '0'))
  memset(&tm, 0, sizeof tm);
  tm.tm_mday = NUM2(s + 5);
  tm.tm_mon = m;
  tm.tm_year = NUM2(s + 12) * 100 + NUM2(s + 14) - 1900;
  tm.tm_hour = NUM2(s + 17);
  tm.tm_min = NUM2(s + 20);
  tm.tm_sec = NUM2(s + 23);
#undef NUM2
  back = tm;
  t = timegm(&tm);
  /* timegm normalizes out-of-range fields: reject any date that moved. */
  if (tm.tm_mday != back.tm_mday || tm.tm_mon != back.tm_mon || tm.tm_year != back.tm_year ||
      tm.tm_hour != back.tm_hour || tm.tm_min != back.tm_min || tm.tm_sec != back.tm_sec)
    return -1;
  *out = (int64_t)t;
  return 0;
}

/* ---- streaming SHA-256 of the canonical request ------------------------- */

/* Each thread keeps one digest context for the two hashes of every request
 * (the body, the canonical request): set up again with the same digest it
 * keeps its provider state, where a context made and freed per hash cost an
 * allocation and a provider set-up each time.  It never holds a secret: it
 * hashes what the client sent. */
static pthread_once_t md_ctx_once = PTHREAD_ONCE_INIT;
static pthread_key_t md_ctx_key;
static int md_ctx_key_ok;

static void md_ctx_free(void *ctx) { EVP_MD_CTX_free(ctx); }

static void make_md_ctx_key(void) { md_ctx_key_ok = pthread_key_create(&md_ctx_key, md_ctx_free) == 0; }

static EVP_MD_CTX *thread_md_ctx(void) {
  pthread_once(&md_ctx_once, make_md_ctx_key);
  if (!md_ctx_key_ok) return NULL;
  EVP_MD_CTX *ctx = pthread_getspecific(md_ctx_key);
  if (ctx) return ctx;
  ctx = EVP_MD_CTX_new();
  if (ctx && pthread_setspecific(md_ctx_key, ctx) != 0) {
    EVP_MD_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

typedef struct hstream {
  EVP_MD_CTX *ctx;
  char buf[1024];
  size_t n;
  int failed;
} hstream;

static void hs_flush(hstream *h) {
  if (h->n && EVP_DigestUpdate(h->ctx, h->buf, h->n) != 1) h->failed = 1;
  h->n = 0;
}

static void hs_putc(hstream *h, char c) {
  if (h->n == sizeof h->buf) hs_flush(h);
  h->buf[h->n++] = c;
}

static void hs_put(hstream *h, const char *s, size_t n) {
  if (n > sizeof h->buf - h->n) {
    hs_flush(h);
    if (n >= sizeof h->buf) {
      if (EVP_DigestUpdate(h->ctx, s, n) != 1) h->failed = 1;
      return;
    }
  }
  memcpy(h->buf + h->n, s, n);
  h->n += n;
}

static void hs_puts(hstream *h, const char *s) { hs_put(h, s, strlen(s)); }

static void hs_put_encoded(hstream *h, const char *s, size_t n, int keep_slash) {
  static const char hexd[] = "0123456789ABCDEF";
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (is_unreserved(c) || (keep_slash && c == '/')) {
      hs_putc(h, (char)c);
    } else {
      hs_putc(h, '%');
      hs_putc(h, hexd[c >> 4]);
      hs_putc(h, hexd[c & 15]);
    }
  }
}

/* Canonical URI: RFC 3986 dot-segment removal plus the removal of empty
 * segments AWS requires, then every segment encoded. */
static kerr_code put_canonical_path(hstream *h, const char *path, kerr *err) {
  /* Offsets fit in 16 bits because the path is at most PATH_MAX_LEN bytes. */
  uint16_t seg_start[PATH_MAX_LEN / 2 + 1];
  uint16_t seg_len[PATH_MAX_LEN / 2 + 1];
  size_t nseg = 0, len, i = 0;
  if (!path || !*path) {
    hs_putc(h, '/');
    return KERR_OK;
  }
  len = strnlen(path, PATH_MAX_LEN + 1);
  if (len > PATH_MAX_LEN) return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "Request path is too long.");
  while (i < len) {
    size_t j = i;
    while (j < len && path[j] != '/') j++;
    if (j > i) {
      size_t n = j - i;
      if (n == 1 && path[i] == '.') {
        /* skip */
      } else if (n == 2 && path[i] == '.' && path[i + 1] == '.') {
        if (nseg) nseg--;
      } else {
        seg_start[nseg] = (uint16_t)i;
        seg_len[nseg++] = (uint16_t)n;
      }
    }
    i = j + 1;
  }
  if (path[0] == '/') hs_putc(h, '/');
  for (i = 0; i < nseg; i++) {
    if (i) hs_putc(h, '/');
    hs_put_encoded(h, path + seg_start[i], seg_len[i], 0);
  }
  if (path[len - 1] == '/' && nseg) hs_putc(h, '/');
  return KERR_OK;
}

typedef struct qparam {
  char *name;  /* canonical (re-encoded) */
  char *value;
} qparam;

static int cmp_qparam(const void *a, const void *b) {
  const qparam *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : strcmp(x->value, y->value);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decode s[0..n) (percent escapes; a stray '%' stays literal) and re-encode
 * it canonically into *arena. Returns the start of the new string. */
static char *canon_component(const char *s, size_t n, char **arena) {
  static const char hexd[] = "0123456789ABCDEF";
  char *start = *arena, *o = *arena;
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      c = (unsigned char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    }
    if (is_unreserved(c)) {
      *o++ = (char)c;
    } else {
      *o++ = '%';
      *o++ = hexd[c >> 4];
      *o++ = hexd[c & 15];
    }
  }
  *o++ = '\0';
  *arena = o;
  return start;
}

static kerr_code put_canonical_query(hstream *h, const char *query, kerr *err) {
  qparam params[QUERY_PARAMS_MAX];
  size_t len, n = 0, i = 0;
  char *arena = NULL, *cursor;
  kerr_code rc = KERR_OK;

  if (!query || !*query) return KERR_OK;
  len = strnlen(query, QUERY_MAX_LEN + 1);
  if (len > QUERY_MAX_LEN) return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "Request query string is too long.");
  /* Worst case every byte becomes %XX, plus a NUL per name and per value. */
  arena = malloc(3 * len + 2 * (QUERY_PARAMS_MAX + 1));
  if (!arena) return kerr_set(err, KERR_INTERNAL, "out of memory");
  cursor = arena;
  while (i <= len) {
    size_t j = i, eq;
    while (j < len && query[j] != '&') j++;
    if (j > i) {
      if (n == QUERY_PARAMS_MAX) {
        rc = kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "Request has too many query parameters.");
        goto out;
      }
      eq = i;
      while (eq < j && query[eq] != '=') eq++;
      params[n].name = canon_component(query + i, eq - i, &cursor);
      params[n].value = eq < j ? canon_component(query + eq + 1, j - eq - 1, &cursor)
                               : canon_component("", 0, &cursor);
      n++;
    }
    i = j + 1;
  }
  qsort(params, n, sizeof *params, cmp_qparam);
  for (i = 0; i < n; i++) {
    if (i) hs_putc(h, '&');
    hs_puts(h, params[i].name);
    hs_putc(h, '=');
    hs_puts(h, params[i].value);
  }
out:
  free(arena);
  return rc;
}

/* "name:v1,v2\n" for one signed header: every occurrence, each trimmed with
 * inner whitespace runs collapsed to one space. */
static void put_canonical_header(hstream *h, const sigv4_request *req, const char *name, size_t name_len) {
  size_t i, n = req->nheaders < REQUEST_HEADERS_MAX ? req->nheaders : REQUEST_HEADERS_MAX;
  int first = 1;
  hs_put(h, name, name_len);
  hs_putc(h, ':');
  for (i = 0; i < n; i++) {
    const char *hn = req->headers[i].name, *v = req->headers[i].value;
    int pending_space = 0, started = 0;
    if (!hn || strlen(hn) != name_len || strncasecmp(hn, name, name_len) != 0) continue;
    if (!first) hs_putc(h, ',');
    first = 0;
    for (; v && *v; v++) {
      if (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n' || *v == '\v' || *v == '\f') {
        pending_space = started;
        continue;
      }
      if (pending_space) hs_putc(h, ' ');
      pending_space = 0;
      started = 1;
      hs_putc(h, *v);
    }
  }
  hs_putc(h, '\n');
}

/* SHA-256 of the canonical request for `signed_list` ("host;x-amz-date"). */
static kerr_code canonical_request_hash(const sigv4_request *req, const char *signed_list,
                                        uint8_t out[32], kerr *err) {
  hstream h;
  uint8_t body_hash[32];
  char body_hex[65];
  unsigned int mdlen = 0;
  const char *p;
  kerr_code rc = KERR_OK;

  h.n = 0;
  h.failed = 0;
  h.ctx = thread_md_ctx();
  if (!h.ctx || EVP_DigestInit_ex(h.ctx, evp_sha256(), NULL) != 1)
    return kerr_set(err, KERR_INTERNAL, "SHA-256 unavailable");
  if ((req->body && req->body_len && EVP_DigestUpdate(h.ctx, req->body, req->body_len) != 1) ||
      EVP_DigestFinal_ex(h.ctx, body_hash, &mdlen) != 1 || EVP_DigestInit_ex(h.ctx, evp_sha256(), NULL) != 1)
    return kerr_set(err, KERR_INTERNAL, "SHA-256 failed");
  hex_encode(body_hash, 32, body_hex);

  hs_puts(&h, req->method ? req->method : "");
  hs_putc(&h, '\n');
  rc = put_canonical_path(&h, req->path, err);
  if (rc) return rc;
  hs_putc(&h, '\n');
  rc = put_canonical_query(&h, req->query, err);
  if (rc) return rc;
  hs_putc(&h, '\n');
  for (p = signed_list; *p;) {
    const char *semi = strchr(p, ';');
    size_t n = semi ? (size_t)(semi - p) : strlen(p);
    put_canonical_header(&h, req, p, n);
    p += n;
    if (*p == ';') p++;
  }
  hs_putc(&h, '\n');
  hs_puts(&h, signed_list);
  hs_putc(&h, '\n');
  hs_put(&h, body_hex, 64);
  hs_flush(&h);
  if (h.failed || EVP_DigestFinal_ex(h.ctx, out, &mdlen) != 1) rc = kerr_set(err, KERR_INTERNAL, "SHA-256 failed");
  return rc;
}

/* ---- signing key derivation and its cache ------------------------------- */

/* HMAC-SHA256 through a MAC fetched once (the one-shot HMAC() would look it
 * up by name on every call). */
static EVP_MAC *hmac_mac;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;
static pthread_key_t hmac_ctx_key;

/* Each thread keeps one HMAC context with its digest already set, so a call
 * only re-keys it: setting the digest by name costs a provider fetch, which
 * showed up in profiles at one per HMAC (five per request). */
static void hmac_ctx_free(void *ctx) { EVP_MAC_CTX_free(ctx); }

static void fetch_hmac(void) {
  hmac_mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  if (hmac_mac && pthread_key_create(&hmac_ctx_key, hmac_ctx_free) != 0) {
    EVP_MAC_free(hmac_mac);
    hmac_mac = NULL;
  }
}

static EVP_MAC_CTX *thread_hmac_ctx(void) {
  pthread_once(&hmac_once, fetch_hmac);
  if (!hmac_mac) return NULL;
  EVP_MAC_CTX *ctx = pthread_getspecific(hmac_ctx_key);
  if (ctx) return ctx;
  OSSL_PARAM params[2];
  params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0);
  params[1] = OSSL_PARAM_construct_end();
  ctx = EVP_MAC_CTX_new(hmac_mac);
  if (!ctx || EVP_MAC_CTX_set_params(ctx, params) != 1 ||
      pthread_setspecific(hmac_ctx_key, ctx) != 0) {
    EVP_MAC_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

static int hmac256(const void *key, size_t keylen, const void *msg, size_t msglen, uint8_t out[32]) {
  EVP_MAC_CTX *ctx = thread_hmac_ctx();
  size_t outlen = 0;
  if (!ctx) return -1;
  return EVP_MAC_init(ctx, key, keylen, NULL) == 1 && EVP_MAC_update(ctx, msg, msglen) == 1 &&
                 EVP_MAC_final(ctx, out, &outlen, 32) == 1 && outlen == 32
             ? 0
             : -1;
}

typedef struct cache_slot {
  int used;
  char akid[ACCESS_KEY_ID_MAX + 1];
  char date[9];
  char region[SCOPE_FIELD_MAX + 1];
  char service[SCOPE_FIELD_MAX + 1];
  char *secret;            /* secure copy: a reloaded key with a new secret must miss */
  size_t secret_len;
  uint8_t key[32];
} cache_slot;

static cache_slot cache[CACHE_SLOTS];
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t cache_index(const char *akid, const char *date, const char *region, const char *service) {
  const char *parts[4] = {akid, date, region, service};
  uint64_t hsh = FNV1A_START;
  for (size_t i = 0; i < 4; i++) hsh = fnv1a_str(fnv1a_str(hsh, parts[i]), "\xff");
  return (size_t)(hsh % CACHE_SLOTS);
}

static void slot_wipe(cache_slot *s) {
  if (s->secret) secure_free(s->secret, s->secret_len + 1);
  secure_wipe(s, sizeof *s);
}

void sigv4_cache_clear(void) {
  size_t i;
  pthread_mutex_lock(&cache_lock);
  for (i = 0; i < CACHE_SLOTS; i++) slot_wipe(&cache[i]);
  pthread_mutex_unlock(&cache_lock);
}

static int derive_key(const char *secret, const char *date, const char *region, const char *service,
                      uint8_t out[32]) {
  size_t slen = strlen(secret);
  uint8_t k[32];
  char *ksecret;
  int rc = -1;
  if (slen > SECRET_MAX) return -1;
  ksecret = secure_alloc(slen + 5);
  if (!ksecret) return -1;
  memcpy(ksecret, "AWS4", 4);
  memcpy(ksecret + 4, secret, slen);
  if (hmac256(ksecret, slen + 4, date, strlen(date), k) == 0 &&
      hmac256(k, 32, region, strlen(region), k) == 0 &&
      hmac256(k, 32, service, strlen(service), k) == 0 &&
      hmac256(k, 32, "aws4_request", 12, out) == 0)
    rc = 0;
  secure_wipe(k, sizeof k);
  secure_free(ksecret, slen + 5);
  return rc;
}

/* The signing key for the scope, from the cache when possible. */
static int signing_key(const char *akid, const char *secret, const char *date, const char *region,
                       const char *service, uint8_t out[32]) {
  size_t idx, slen = strlen(secret);
  cache_slot *s;
  char *copy;
  if (strlen(akid) > ACCESS_KEY_ID_MAX || strlen(region) > SCOPE_FIELD_MAX ||
      strlen(service) > SCOPE_FIELD_MAX || strlen(date) != 8 || slen > SECRET_MAX)
    return derive_key(secret, date, region, service, out);
  idx = cache_index(akid, date, region, service);
  pthread_mutex_lock(&cache_lock);
  s = &cache[idx];
  if (s->used && s->secret_len == slen && strcmp(s->akid, akid) == 0 && strcmp(s->date, date) == 0 &&
      strcmp(s->region, region) == 0 && strcmp(s->service, service) == 0 &&
      CRYPTO_memcmp(s->secret, secret, slen) == 0) {
    memcpy(out, s->key, 32);
    pthread_mutex_unlock(&cache_lock);
    return 0;
  }
  pthread_mutex_unlock(&cache_lock);

  if (derive_key(secret, date, region, service, out) != 0) return -1;
  copy = secure_alloc(slen + 1);
  if (!copy) return 0; /* the key is right; it just is not cached */
  memcpy(copy, secret, slen + 1);
  pthread_mutex_lock(&cache_lock);
  s = &cache[idx];
  slot_wipe(s);
  s->used = 1;
  strcpy(s->akid, akid);
  strcpy(s->date, date);
  strcpy(s->region, region);
  strcpy(s->service, service);
  s->secret = copy;
  s->secret_len = slen;
  memcpy(s->key, out, 32);
  pthread_mutex_unlock(&cache_lock);
  return 0;
}

/* Hex signature of the request for the given scope and signed header list. */
static kerr_code compute_signature(const sigv4_request *req, const char *signed_list, const char *akid,
                                   const char *secret, const char *amz_date, const char *date,
                                   const char *region, const char *service, char out_hex[65], kerr *err) {
  uint8_t creq[32], key[32], sig[32];
  char sts[512];
  size_t n = 0;
  kerr_code rc;

  rc = canonical_request_hash(req, signed_list, creq, err);
  if (rc) return rc;
  /* The string to sign: ALGORITHM \n amz_date \n date/region/service/aws4_request \n
   * hex(creq), put together without a printf on every request. */
  const char *const parts[] = {ALGORITHM, "\n", amz_date, "\n", date, "/", region, "/", service,
                               "/aws4_request\n"};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
    size_t len = strlen(parts[i]);
    if (len >= sizeof sts - 64 - n) return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "Credential scope is too long.");
    memcpy(sts + n, parts[i], len);
    n += len;
  }
  hex_encode(creq, 32, sts + n); /* 64 digits and a NUL: room was kept above */
  n += 64;
  if (signing_key(akid, secret, date, region, service, key) != 0)
    return kerr_set(err, KERR_INTERNAL, "HMAC-SHA256 failed");
  if (hmac256(key, 32, sts, n, sig) != 0) {
    secure_wipe(key, sizeof key);
    return kerr_set(err, KERR_INTERNAL, "HMAC-SHA256 failed");
  }
  secure_wipe(key, sizeof key);
  hex_encode(sig, 32, out_hex);
  return KERR_OK;
}

/* ---- Authorization header parsing -------------------------------------- */

typedef struct auth_parts {
  const char *credential;  size_t credential_len;
  const char *signed_headers; size_t signed_headers_len;
  const char *signature;   size_t signature_len;
} auth_parts;

static int is_sep(char c) { return c == ',' || c == ' ' || c == '\t'; }

/* Split "Credential=..., SignedHeaders=..., Signature=..." (after the
 * algorithm).  Components are separated by commas and/or whitespace.  A
 * malformed component is named by its position only: it may well be the
 * signature itself. */
static kerr_code parse_components(const char *s, auth_parts *a, kerr *err) {
  size_t position = 0;
  while (*s) {
    const char *start, *eq, *end;
    while (is_sep(*s)) s++;
    if (!*s) break;
    start = s;
    while (*s && !is_sep(*s)) s++;
    end = s;
    position++;
    eq = memchr(start, '=', (size_t)(end - start));
    if (!eq)
      return kerr_set(err, KERR_INCOMPLETE_SIGNATURE,
                      "Component %zu after the algorithm is not a valid key=value pair (missing equal-sign) "
                      "in Authorization header.",
                      position);
#define COMPONENT(lit, field)                                                                    \
  if ((size_t)(eq - start) == sizeof(lit) - 1 && strncmp(start, lit, sizeof(lit) - 1) == 0) {     \
    if (a->field)                                                                                \
      return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "Authorization header has more than one '" lit "' parameter."); \
    a->field = eq + 1;                                                                           \
    a->field##_len = (size_t)(end - eq - 1);                                                     \
    continue;                                                                                    \
  }
    COMPONENT("Credential", credential)
    COMPONENT("SignedHeaders", signed_headers)
    COMPONENT("Signature", signature)
#undef COMPONENT
    /* Unknown parameters are ignored, as AWS does. */
  }
  return KERR_OK;
}

typedef struct scope {
  char akid[ACCESS_KEY_ID_MAX + 1];
  char date[9];
  char region[SCOPE_FIELD_MAX + 1];
  char service[SCOPE_FIELD_MAX + 1];
  char terminator[SCOPE_FIELD_MAX + 1];
} scope;

static int copy_part(const char *s, size_t n, char *dst, size_t cap) {
  if (n == 0 || n >= cap) return -1;
  memcpy(dst, s, n);
  dst[n] = '\0';
  return 0;
}

static kerr_code parse_scope(const char *s, size_t len, scope *sc, kerr *err) {
  if (!s) return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "Authorization header requires 'Credential' parameter.");
  const char *parts[5];
  size_t lens[5], k = 0, i, start = 0;
  for (i = 0; i <= len; i++) {
    if (i == len || s[i] == '/') {
      if (k == 5) break;
      parts[k] = s + start;
      lens[k++] = i - start;
      start = i + 1;
    }
  }
  /* The whole Credential value is never quoted: a client that ran two
   * components together ("...aws4_request;Signature=...") would see its
   * signature in the message. */
  if (k != 5 || i <= len)
    return kerr_set(err, KERR_INCOMPLETE_SIGNATURE,
                    "Credential should have the form ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request.");
  if (copy_part(parts[0], lens[0], sc->akid, sizeof sc->akid))
    return kerr_set(err, KERR_UNRECOGNIZED_CLIENT, msg_bad_token);
  int date_ok = lens[1] == 8 && copy_part(parts[1], lens[1], sc->date, sizeof sc->date) == 0;
  for (i = 0; date_ok && i < 8; i++)
    if (!isdigit((unsigned char)sc->date[i])) date_ok = 0;
  if (!date_ok) {
    if (quotable(parts[1], lens[1]))
      return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "Credential should be scoped to a valid date, not '%.*s'. ",
                      (int)lens[1], parts[1]);
    return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "Credential should be scoped to a valid date. ");
  }
  int region_ok = copy_part(parts[2], lens[2], sc->region, sizeof sc->region) == 0;
  for (i = 0; region_ok && sc->region[i]; i++)
    if (!islower((unsigned char)sc->region[i]) && !isdigit((unsigned char)sc->region[i]) && sc->region[i] != '-')
      region_ok = 0;
  if (!region_ok) {
    if (quotable(parts[2], lens[2]))
      return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "Credential should be scoped to a valid region, not '%.*s'. ",
                      (int)lens[2], parts[2]);
    return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "Credential should be scoped to a valid region. ");
  }
  if (copy_part(parts[3], lens[3], sc->service, sizeof sc->service))
    return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "Credential should be scoped to a valid service. ");
  if (copy_part(parts[4], lens[4], sc->terminator, sizeof sc->terminator))
    return kerr_set(err, KERR_INCOMPLETE_SIGNATURE,
                    "Credential should be scoped with a valid terminator: 'aws4_request'. ");
  return KERR_OK;
}

/* Lowercase names separated by ';', one of them "host". */
static kerr_code check_signed_headers(const char *s, size_t len, int *has_host, kerr *err) {
  size_t i, count = 1, start = 0;
  *has_host = 0;
  if (!s || len == 0 || len > SIGNED_LIST_MAX) return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "SignedHeaders is empty or too long.");
  for (i = 0; i <= len; i++) {
    if (i == len || s[i] == ';') {
      if (i == start) return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "SignedHeaders contains an empty header name.");
      if (i - start == 4 && strncmp(s + start, "host", 4) == 0) *has_host = 1;
      if (i < len && ++count > SIGNED_HEADERS_MAX)
        return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "SignedHeaders names more than %d headers.",
                        SIGNED_HEADERS_MAX);
      start = i + 1;
    } else if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == ':') {
      return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "SignedHeaders contains an invalid header name.");
    }
  }
  return KERR_OK;
}

/* Whether `name` is one of the ';'-separated names of list[0..len). */
static int signed_list_has(const char *list, size_t len, const char *name) {
  size_t n = strlen(name), start = 0, i;
  for (i = 0; i <= len; i++) {
    if (i == len || list[i] == ';') {
      if (i - start == n && strncasecmp(list + start, name, n) == 0) return 1;
      start = i + 1;
    }
  }
  return 0;
}

#define MUST_BE_SIGNED "'%s' must be a 'SignedHeader' in the AWS Authorization."

/* The headers a signature must cover besides Host (checked with the list's
 * syntax): the date header the request time was taken from, X-Amz-Target,
 * which chooses the operation, and every other X-Amz-* header sent.  Signed
 * over host and date alone, a captured ListKeys could otherwise be replayed
 * within the skew window as CreateKey.  Every AWS SDK signs all of these;
 * the headers SDKs leave unsigned (User-Agent, X-Amzn-Trace-Id, Expect, ...)
 * are not X-Amz-* headers.  Content-Type need not be signed: both accepted
 * values select the same JSON parser, so changing it changes nothing. */
static kerr_code check_required_signed(const sigv4_request *req, const char *list, size_t len,
                                       int date_from_amz_header, kerr *err) {
  size_t i, n = req->nheaders < REQUEST_HEADERS_MAX ? req->nheaders : REQUEST_HEADERS_MAX;
  if (!signed_list_has(list, len, date_from_amz_header ? "x-amz-date" : "date"))
    return kerr_set(err, KERR_INVALID_SIGNATURE, MUST_BE_SIGNED, date_from_amz_header ? "X-Amz-Date" : "Date");
  if (header_get(req, "X-Amz-Target") && !signed_list_has(list, len, "x-amz-target"))
    return kerr_set(err, KERR_INVALID_SIGNATURE, MUST_BE_SIGNED, "X-Amz-Target");
  for (i = 0; i < n; i++) {
    const char *hn = req->headers[i].name;
    char lower[65];
    size_t j;
    if (!hn || strncasecmp(hn, "x-amz-", 6) != 0 || signed_list_has(list, len, hn)) continue;
    /* Named in lower case, as SignedHeaders spells it, and cut at 64
     * characters (too short for a signature); the value is never quoted. */
    for (j = 0; j < sizeof lower - 1 && hn[j]; j++)
      lower[j] = (char)tolower((unsigned char)hn[j]);
    lower[j] = '\0';
    return kerr_set(err, KERR_INVALID_SIGNATURE,
                    "Header '%s' is present in the request but is not a 'SignedHeader' in the AWS "
                    "Authorization; every X-Amz-* header must be signed.",
                    lower);
  }
  return KERR_OK;
}

/* ---- verification ----------------------------------------------------- */

kerr_code sigv4_verify(const creds_store *creds, const sigv4_request *req, const char *service,
                       int64_t now_s, sigv4_result *out, kerr *err) {
  const char *auth, *amz_date_hdr, *date_hdr, *token;
  auth_parts a;
  scope sc;
  char amz_date[AMZ_DATE_LEN + 1], now_txt[AMZ_DATE_LEN + 1], edge_txt[AMZ_DATE_LEN + 1];
  char signed_list[SIGNED_LIST_MAX + 1], expected[65], missing[512];
  int64_t req_time = 0;
  int has_host, any;
  const cred_entry *cred;
  size_t alg_len = sizeof ALGORITHM - 1;
  kerr_code rc;

  if (!creds || !req || !service || !out) return kerr_set(err, KERR_INTERNAL, "sigv4_verify: missing argument");
  memset(out, 0, sizeof *out);
  /* Every check below looks at the first REQUEST_HEADERS_MAX headers only,
   * while the caller may read any header (X-Amz-Target picks the operation):
   * an unsigned header placed past the limit would escape the rule that it
   * be signed.  So a request with more headers is not verified at all. */
  if (req->nheaders > REQUEST_HEADERS_MAX)
    return kerr_set(err, KERR_INCOMPLETE_SIGNATURE,
                    "The request has %zu headers; kmsd verifies requests with at most %d.",
                    req->nheaders, REQUEST_HEADERS_MAX);
  auth = header_get(req, "Authorization");
  while (auth && (*auth == ' ' || *auth == '\t')) auth++;
  if (!auth || !*auth) return kerr_set(err, KERR_MISSING_AUTH_TOKEN, "Missing Authentication Token");
  if (strnlen(auth, AUTH_HEADER_MAX + 1) > AUTH_HEADER_MAX)
    return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "Authorization header is longer than %d characters.",
                    AUTH_HEADER_MAX);
  if (strncmp(auth, ALGORITHM, alg_len) != 0 || (auth[alg_len] && auth[alg_len] != ' ' && auth[alg_len] != '\t')) {
    /* The first word may be a bare token or signature rather than a name. */
    size_t n = strcspn(auth, " \t");
    if (quotable(auth, n))
      return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "Unsupported AWS 'algorithm': '%.*s'.", (int)n, auth);
    return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "Unsupported AWS 'algorithm'; kmsd accepts only " ALGORITHM ".");
  }
  memset(&a, 0, sizeof a);
  rc = parse_components(auth + alg_len, &a, err);
  if (rc) return rc;

  amz_date_hdr = header_get(req, "X-Amz-Date");
  date_hdr = header_get(req, "Date");
  missing[0] = '\0';
  if (!a.credential || !a.credential_len)
    strcat(missing, "Authorization header requires 'Credential' parameter. ");
  if (!a.signature || !a.signature_len)
    strcat(missing, "Authorization header requires 'Signature' parameter. ");
  if (!a.signed_headers || !a.signed_headers_len)
    strcat(missing, "Authorization header requires 'SignedHeaders' parameter. ");
  if (!amz_date_hdr && !date_hdr)
    strcat(missing, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ");
  /* AWS appends "Authorization=<the whole header>" here; that would put
   * the signature in the reply and the log. */
  if (missing[0]) {
    missing[strlen(missing) - 1] = '\0'; /* the trailing space */
    return kerr_set(err, KERR_INCOMPLETE_SIGNATURE, "%s", missing);
  }

  if (amz_date_hdr) {
    if (parse_amz_date(amz_date_hdr, &req_time) != 0) {
      if (quotable(amz_date_hdr, strlen(amz_date_hdr)))
        return kerr_set(err, KERR_INCOMPLETE_SIGNATURE,
                        "Date must be in ISO-8601 'basic format'. Got '%s'. See http://en.wikipedia.org/wiki/ISO_8601",
                        amz_date_hdr);
      return kerr_set(err, KERR_INCOMPLETE_SIGNATURE,
                      "Date must be in ISO-8601 'basic format'. See http://en.wikipedia.org/wiki/ISO_8601");
    }
    strcpy(amz_date, amz_date_hdr);
  } else {
    if (parse_http_date(date_hdr, &req_time) != 0) {
      /* A valid RFC 1123 date is 29 characters, longer than anything quoted. */
      return kerr_set(err, KERR_INCOMPLETE_SIGNATURE,
                      "Date header is not an RFC 1123 date like 'Sun, 30 Aug 2015 12:36:00 GMT'.");
    }
    format_amz_date(req_time, amz_date);
  }

  rc = parse_scope(a.credential, a.credential_len, &sc, err);
  if (rc) return rc;
  rc = check_signed_headers(a.signed_headers, a.signed_headers_len, &has_host, err);
  if (rc) return rc;
  /* AWS answers InvalidSignatureException here, with this wording. */
  if (!has_host)
    return kerr_set(err, KERR_INVALID_SIGNATURE,
                    "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.");
  /* a.signed_headers is non-NULL: the "missing parameter" check returned otherwise. */
  memcpy(signed_list, a.signed_headers, a.signed_headers_len); /* NOLINT(clang-analyzer-core.NonNullParamChecker) */
  signed_list[a.signed_headers_len] = '\0';

  if (strcmp(sc.terminator, "aws4_request") != 0) {
    if (quotable(sc.terminator, strlen(sc.terminator)))
      return kerr_set(err, KERR_INVALID_SIGNATURE,
                      "Credential should be scoped with a valid terminator: 'aws4_request', not '%s'. ",
                      sc.terminator);
    return kerr_set(err, KERR_INVALID_SIGNATURE, "Credential should be scoped with a valid terminator: 'aws4_request'. ");
  }
  if (strcmp(sc.service, service) != 0)
    return kerr_set(err, KERR_INVALID_SIGNATURE, "Credential should be scoped to correct service: '%s'. ", service);
  if (strncmp(sc.date, amz_date, 8) != 0)
    return kerr_set(err, KERR_INVALID_SIGNATURE,
                    "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                    "'%s' != '%.8s', from '%s'.",
                    sc.date, amz_date, amz_date);

  any = creds_is_any(creds);
  cred = creds_lookup(creds, sc.akid);
  if (!cred) return kerr_set(err, KERR_UNRECOGNIZED_CLIENT, msg_bad_token);
  if (!any) {
    token = header_get(req, "X-Amz-Security-Token");
    if (cred->session_token) {
      size_t want = strlen(cred->session_token);
      if (!token || strlen(token) != want || CRYPTO_memcmp(token, cred->session_token, want) != 0)
        return kerr_set(err, KERR_UNRECOGNIZED_CLIENT, msg_bad_token);
    } else if (token) {
      return kerr_set(err, KERR_UNRECOGNIZED_CLIENT, msg_bad_token);
    }
  }

  if (req_time < now_s - SKEW_SECONDS) {
    format_amz_date(now_s, now_txt);
    format_amz_date(now_s - SKEW_SECONDS, edge_txt);
    return kerr_set(err, KERR_INVALID_SIGNATURE, "Signature expired: %s is now earlier than %s (%s - 5 min.)",
                    amz_date, edge_txt, now_txt);
  }
  if (req_time > now_s + SKEW_SECONDS) {
    format_amz_date(now_s, now_txt);
    format_amz_date(now_s + SKEW_SECONDS, edge_txt);
    return kerr_set(err, KERR_INVALID_SIGNATURE, "Signature not yet current: %s is still later than %s (%s + 5 min.)",
                    amz_date, edge_txt, now_txt);
  }

  if (!any) {
    /* Only where signatures are checked: with a creds_any store nothing is. */
    rc = check_required_signed(req, signed_list, a.signed_headers_len, amz_date_hdr != NULL, err);
    if (rc) return rc;
    rc = compute_signature(req, signed_list, sc.akid, cred->secret_access_key, amz_date, sc.date, sc.region,
                           sc.service, expected, err);
    if (rc) return rc;
    if (a.signature_len != 64 || CRYPTO_memcmp(expected, a.signature, 64) != 0)
      return kerr_set(err, KERR_INVALID_SIGNATURE, msg_mismatch);
  }
  out->cred = cred;
  strcpy(out->region, sc.region);
  strcpy(out->service, sc.service);
  return KERR_OK;
}

/* ---- signing ---------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

kerr_code sigv4_sign(const sigv4_request *req, const char *access_key_id, const char *secret,
                     const char *region, const char *service, const char *amz_date, char *out,
                     size_t out_size, kerr *err) {
  char names[SIGNED_HEADERS_MAX][128];
  const char *sorted[SIGNED_HEADERS_MAX];
  char signed_list[SIGNED_HEADERS_MAX * 129], sig[65], date[9];
  size_t i, j, n = 0, pos = 0;
  int64_t t;
  int has_host = 0, has_date = 0, w;
  kerr_code rc;

  if (out && out_size) out[0] = '\0';
  if (!req || !access_key_id || !secret || !region || !service || !amz_date || !out)
    return kerr_set(err, KERR_VALIDATION, "sigv4_sign: missing argument");
  if (!*access_key_id || strlen(access_key_id) > ACCESS_KEY_ID_MAX || !*secret || strlen(secret) > SECRET_MAX ||
      !*region || strlen(region) > SCOPE_FIELD_MAX || !*service || strlen(service) > SCOPE_FIELD_MAX ||
      strchr(access_key_id, '/') || strchr(region, '/') || strchr(service, '/'))
    return kerr_set(err, KERR_VALIDATION, "sigv4_sign: invalid access key, region or service");
  if (parse_amz_date(amz_date, &t) != 0)
    return kerr_set(err, KERR_VALIDATION, "sigv4_sign: amz_date must look like 20150830T123600Z");
  if (req->nheaders > REQUEST_HEADERS_MAX) return kerr_set(err, KERR_VALIDATION, "sigv4_sign: too many headers");
  for (i = 0; i < req->nheaders; i++) {
    const char *hn = req->headers[i].name;
    size_t len;
    if (!hn || !*hn) return kerr_set(err, KERR_VALIDATION, "sigv4_sign: empty header name");
    len = strlen(hn);
    if (len >= sizeof names[0]) return kerr_set(err, KERR_VALIDATION, "sigv4_sign: header name too long");
    if (strcasecmp(hn, "authorization") == 0) continue;
    for (j = 0; j <= len; j++) names[n][j] = (char)tolower((unsigned char)hn[j]);
    for (j = 0; j < n; j++)
      if (strcmp(sorted[j], names[n]) == 0) break;
    if (j < n) continue; /* a repeated header is signed once, its values joined */
    if (n == SIGNED_HEADERS_MAX) return kerr_set(err, KERR_VALIDATION, "sigv4_sign: too many headers");
    if (strcmp(names[n], "host") == 0) has_host = 1;
    if (strcmp(names[n], "x-amz-date") == 0) has_date = 1;
    sorted[n] = names[n];
    n++;
  }
  if (!has_host || !has_date) return kerr_set(err, KERR_VALIDATION, "sigv4_sign: headers must include host and x-amz-date");
  qsort(sorted, n, sizeof *sorted, cmp_str);
  for (i = 0; i < n; i++) {
    size_t len = strlen(sorted[i]);
    if (i) signed_list[pos++] = ';';
    memcpy(signed_list + pos, sorted[i], len);
    pos += len;
  }
  signed_list[pos] = '\0';
  /* Never sign what sigv4_verify would refuse as malformed. */
  if (pos > SIGNED_LIST_MAX)
    return kerr_set(err, KERR_VALIDATION, "sigv4_sign: the signed header names exceed %d characters",
                    SIGNED_LIST_MAX);
  memcpy(date, amz_date, 8);
  date[8] = '\0';
  rc = compute_signature(req, signed_list, access_key_id, secret, amz_date, date, region, service, sig, err);
  if (rc) return rc;
  w = snprintf(out, out_size, ALGORITHM " Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, Signature=%s",
               access_key_id, date, region, service, signed_list, sig);
  if (w < 0 || (size_t)w >= out_size) {
    if (out_size) out[0] = '\0';
    return kerr_set(err, KERR_VALIDATION, "sigv4_sign: output buffer too small");
  }
  return KERR_OK;
}
