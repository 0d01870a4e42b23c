/* fuzz_sigv4.c - libFuzzer target for SigV4 verification (aws/sigv4.h): the
 * Authorization header, X-Amz-Date/Date, the credential scope and the
 * canonical request are parsed from every request before anything else.
 *
 * Input is an HTTP request in text form:
 *   METHOD SP PATH[?QUERY] LF  (Name: value LF)*  LF  body
 * verified at the fixed time 2015-08-30T12:36:00Z against a real
 * credentials file holding two principals (one with a session token).
 * The "botocore-*" seeds are requests botocore signed for that time, so the
 * fuzzer starts from requests that verify.  Invariants:
 *   - sigv4_verify answers only with the codes sigv4.h documents, always
 *     with a message, and never puts a secret key or session token in it
 *     (unless the input itself carried that text);
 *   - a request that verifies names a known principal and a region, and
 *     stops verifying when one hex digit of its Signature changes or a byte
 *     is appended to its body: no signature but the right one is accepted;
 *   - the any-credentials store answers with the same codes and never
 *     crashes on what the real store rejects;
 *   - sign/verify agree: the input's headers (minus the auth ones, plus host
 *     and X-Amz-Date), signed with sigv4_sign, verify. */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "aws/credentials.h"
#include "aws/sigv4.h"
#include "fuzz_common.h"

#define NOW_S 1440938160LL /* 20150830T123600Z */
#define AMZ_DATE "20150830T123600Z"
#define MAX_HEADERS 300    /* above sigv4.c's cap of 256, to exercise it */
#define AUTH_OUT_MAX 16384

static const char root_akid[] = "AKIAIOSFODNN7EXAMPLE";
static const char root_secret[] = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
static const char user_akid[] = "AKIAI44QH8DHBEXAMPLE";
static const char user_secret[] = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY";
static const char user_token[] = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN0123456789";

static creds_store *store, *any_store;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  char path[] = "/tmp/kmsd-fuzz-creds-XXXXXX";
  kerr err;
  FILE *f;
  int fd = mkstemp(path);
  if (fd < 0 || !(f = fdopen(fd, "w"))) abort();
  fprintf(f,
          "{\"principals\": ["
          "{\"accessKeyId\": \"%s\", \"secretAccessKey\": \"%s\", \"accountId\": \"111122223333\","
          " \"arn\": \"arn:aws:iam::111122223333:root\"},"
          "{\"accessKeyId\": \"%s\", \"secretAccessKey\": \"%s\", \"sessionToken\": \"%s\","
          " \"accountId\": \"111122223333\", \"arn\": \"arn:aws:iam::111122223333:user/alice\"}]}",
          root_akid, root_secret, user_akid, user_secret, user_token);
  fclose(f);
  if (creds_load(path, 0, &store, &err) != KERR_OK) {
    fprintf(stderr, "fuzz_sigv4: cannot load credentials: %s\n", err.msg);
    abort();
  }
  unlink(path);
  if (creds_any(&any_store, &err) != KERR_OK) abort();
  return 0;
}

typedef struct parsed {
  char *text;                  /* the input, NUL-terminated, cut in place */
  char *method, *path, *query;
  http_header headers[MAX_HEADERS + 3];
  size_t nheaders;
  const uint8_t *body;
  size_t body_len;
} parsed;

/* Cut the input into request parts.  Returns 0 when there is no first line. */
static int parse_input(const uint8_t *data, size_t size, parsed *p) {
  char *line, *end, *sp, *q;
  memset(p, 0, sizeof *p);
  p->text = fuzz_strndup(data, size);
  p->body = (const uint8_t *)"";
  end = memchr(p->text, '\n', size);
  if (!end) return 0;
  *end = '\0';
  line = p->text;
  sp = strchr(line, ' ');
  if (!sp) return 0;
  *sp = '\0';
  p->method = line;
  p->path = sp + 1;
  q = strchr(p->path, '?');
  if (q) {
    *q = '\0';
    p->query = q + 1;
  }
  line = end + 1;
  while ((size_t)(line - p->text) < size) {
    char *colon;
    end = memchr(line, '\n', size - (size_t)(line - p->text));
    if (!end) end = p->text + size;
    *end = '\0';
    if (end > line && end[-1] == '\r') end[-1] = '\0';
    if (!*line) {
      line = end + 1;
      break;
    }
    colon = strchr(line, ':');
    if (colon && p->nheaders < MAX_HEADERS) {
      char *v = colon + 1;
      *colon = '\0';
      while (*v == ' ' || *v == '\t') v++;
      p->headers[p->nheaders].name = line;
      p->headers[p->nheaders].value = v;
      p->nheaders++;
    }
    line = end + 1;
  }
  if ((size_t)(line - p->text) < size) {
    p->body = data + (line - p->text);
    p->body_len = size - (size_t)(line - p->text);
  }
  return 1;
}

static int input_contains(const uint8_t *data, size_t size, const char *s) {
  size_t n = strlen(s);
  for (size_t i = 0; n <= size && i <= size - n; i++)
    if (memcmp(data + i, s, n) == 0) return 1;
  return 0;
}

static int documented(kerr_code rc) {
  return rc == KERR_OK || rc == KERR_MISSING_AUTH_TOKEN || rc == KERR_INCOMPLETE_SIGNATURE ||
         rc == KERR_UNRECOGNIZED_CLIENT || rc == KERR_INVALID_SIGNATURE;
}

static void check_no_secret(const kerr *err, const uint8_t *data, size_t size) {
  static const char *const secrets[] = {root_secret, user_secret, user_token};
  for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
    if (!input_contains(data, size, secrets[i]))
      FUZZ_CHECK(strstr(err->msg, secrets[i]) == NULL, "no secret in a SigV4 error message");
}

/* A request that verified must stop verifying when its signature or its
 * body changes. */
static void check_tamper(parsed *p, const sigv4_request *req) {
  sigv4_result res;
  kerr err;
  http_header saved;
  size_t auth_i = (size_t)-1;
  char *auth, *sig;
  uint8_t *body;

  for (size_t i = 0; i < p->nheaders && i < 256; i++)
    if (strcasecmp(p->headers[i].name, "Authorization") == 0) {
      auth_i = i;
      break;
    }
  FUZZ_CHECK(auth_i != (size_t)-1, "a verified request has an Authorization header");
  saved = p->headers[auth_i];
  auth = strdup(saved.value);
  if (!auth) abort();
  sig = strstr(auth, "Signature=");
  FUZZ_CHECK(sig != NULL, "a verified request has a Signature");
  sig += 10;
  FUZZ_CHECK(strspn(sig, "0123456789abcdef") >= 64, "the accepted signature is 64 hex digits");
  sig[63] = sig[63] == '0' ? '1' : '0';
  p->headers[auth_i].value = auth;
  FUZZ_CHECK(sigv4_verify(store, req, "kms", NOW_S, &res, &err) == KERR_INVALID_SIGNATURE,
             "a changed signature does not verify");
  p->headers[auth_i] = saved;
  free(auth);

  body = malloc(req->body_len + 1);
  if (!body) abort();
  memcpy(body, req->body, req->body_len);
  body[req->body_len] = 'x';
  {
    sigv4_request changed = *req;
    changed.body = body;
    changed.body_len = req->body_len + 1;
    FUZZ_CHECK(sigv4_verify(store, &changed, "kms", NOW_S, &res, &err) == KERR_INVALID_SIGNATURE,
               "a changed body does not verify");
  }
  free(body);
}

static int is_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_token(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (!is_tchar(*s)) return 0;
  return 1;
}

/* Sign the input's own headers and check that the result verifies. */
static void check_sign_verify(parsed *p, int use_token) {
  http_header hs[MAX_HEADERS + 4];
  size_t n = 0;
  int has_host = 0;
  char *auth = malloc(AUTH_OUT_MAX);
  sigv4_request req;
  sigv4_result res;
  kerr err;
  kerr_code rc;
  const char *akid = use_token ? user_akid : root_akid;

  if (!auth) abort();
  for (size_t i = 0; i < p->nheaders; i++) {
    const char *name = p->headers[i].name;
    /* What an HTTP server delivers: token names only. */
    if (!is_token(name) || strcasecmp(name, "Authorization") == 0 ||
        strcasecmp(name, "X-Amz-Date") == 0 || strcasecmp(name, "Date") == 0 ||
        strcasecmp(name, "X-Amz-Security-Token") == 0)
      continue;
    if (strcasecmp(name, "Host") == 0) has_host = 1;
    hs[n++] = p->headers[i];
  }
  if (!has_host) hs[n++] = (http_header){"Host", "kms.us-east-1.amazonaws.com"};
  hs[n++] = (http_header){"X-Amz-Date", AMZ_DATE};
  if (use_token) hs[n++] = (http_header){"X-Amz-Security-Token", user_token};
  req = (sigv4_request){p->method, p->path, p->query, hs, n, p->body, p->body_len};
  rc = sigv4_sign(&req, akid, use_token ? user_secret : root_secret, "us-east-1", "kms", AMZ_DATE,
                  auth, AUTH_OUT_MAX, &err);
  if (rc == KERR_OK) {
    hs[n++] = (http_header){"Authorization", auth};
    req.nheaders = n;
    kerr_clear(&err);
    rc = sigv4_verify(store, &req, "kms", NOW_S, &res, &err);
    if (rc != KERR_OK) fprintf(stderr, "verify of a fresh signature: %s\n", err.msg);
    FUZZ_CHECK(rc == KERR_OK, "a request signed by sigv4_sign verifies");
    FUZZ_CHECK(res.cred && strcmp(res.cred->who.access_key_id, akid) == 0,
               "the signer is the principal found");
    FUZZ_CHECK(strcmp(res.region, "us-east-1") == 0 && strcmp(res.service, "kms") == 0,
               "the scope is the one signed");
  } else {
    FUZZ_CHECK(rc == KERR_VALIDATION || rc == KERR_INCOMPLETE_SIGNATURE,
               "sigv4_sign refuses with a validation error");
    FUZZ_CHECK(fuzz_msg_ok(err.msg, sizeof err.msg), "sign error has a message");
  }
  free(auth);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  parsed *p = malloc(sizeof *p);
  sigv4_request req;
  sigv4_result res;
  kerr err;
  kerr_code rc;

  if (!p) abort();
  if (!parse_input(data, size, p)) goto out;
  req = (sigv4_request){p->method, p->path, p->query, p->headers, p->nheaders, p->body, p->body_len};

  kerr_clear(&err);
  rc = sigv4_verify(store, &req, "kms", NOW_S, &res, &err);
  FUZZ_CHECK(documented(rc), "sigv4_verify answers with a documented code");
  if (rc == KERR_OK) {
    FUZZ_CHECK(res.cred != NULL && res.region[0] && strcmp(res.service, "kms") == 0,
               "a verified request has a principal, a region and the service");
    check_tamper(p, &req);
  } else {
    FUZZ_CHECK(fuzz_msg_ok(err.msg, sizeof err.msg), "a rejection has a message");
    check_no_secret(&err, data, size);
  }

  kerr_clear(&err);
  rc = sigv4_verify(any_store, &req, "kms", NOW_S, &res, &err);
  FUZZ_CHECK(documented(rc), "the any-credentials store answers with a documented code");
  if (rc == KERR_OK)
    FUZZ_CHECK(res.cred != NULL && res.cred->who.is_root, "any-credentials callers are the root");
  else
    FUZZ_CHECK(fuzz_msg_ok(err.msg, sizeof err.msg), "a rejection has a message");

  check_sign_verify(p, size & 1);
out:
  free(p->text);
  free(p);
  return 0;
}
