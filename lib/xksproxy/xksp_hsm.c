/* xksp_hsm.c - the external keys of one key store, in its PKCS#11 tokens
 * (see xksp_hsm.h for the contract): token failover and re-opening, the
 * per-token key cache, AES-GCM with the XKS AAD and CDIV, health probing,
 * and create-key.
 *
 * Why the shape: a token handle (p11_token) is made once and never replaced
 * while the store is open, so request threads may use it without holding
 * any lock of ours; "re-opening" a failed token is done through it
 * (reinitialize the module when the failure says its state may be bad, log
 * out, log in), under a per-token flag so that one thread does it while the
 * others move on to the next token. */
#include "xksproxy/xksp_hsm.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "pkcs11/p11.h"
#include "xksproxy/xksp_backend.h"
#include "pkcs11/p11_ivbatch.h"

/* p11-kit's pkcs11.h aliases `iv_len` to CK_GCM_PARAMS' ulIvLen; here the
 * name is the XKS messages' field. */
#undef iv_len

#define KEY_CACHE_MAX 256          /* cached keys per token; the oldest slot is reused */
#define KEY_REFRESH_MS 5000        /* how long a cached key (and its working copy) is used,
                                    * unless the store's key_refresh_ms says otherwise */
#define RETIRED_MAX (2 * KEY_CACHE_MAX) /* copies waiting to be destroyed, per token */
#define DOOMED_BATCH 16            /* retired copies one lookup destroys at most */
#define ACQUIRE_WAIT_MS 2000       /* wait for a free session before trying the next token */
#define MODEL_MAX 128              /* ekmFleetDetails model */
#define RETRY_MAX_MS 30000         /* the prober's longest wait between re-opens */
#define HEALTH_MAX_AGE_MS 60000    /* the spec: health no older than a minute */
#define HEALTH_PLAINTEXT "xks-proxy health probe"

/* An external key id is a CKA_LABEL: both bounds are 128 today, and one
 * check of XKS_KEY_ID_MAX is enough only while that holds. */
_Static_assert(XKS_KEY_ID_MAX <= P11_ID_MAX, "an externalKeyId must fit a PKCS#11 label");

typedef enum token_status { ST_ACTIVE = 0, ST_DEGRADED, ST_UNAVAILABLE } token_status;

static const char *const status_names[] = {"ACTIVE", "DEGRADED", "UNAVAILABLE"};

/* A key found by label.  Requests use a working copy of it, a session object
 * (C_CopyObject with CKA_TOKEN=FALSE), when the token allows one: a module that keeps
 * token objects in storage serves it from memory (SoftHSM2 re-reads and
 * decrypts the token object's file on every C_EncryptInit, a quarter of a
 * request's time).  A copy does not follow what happens to the token key
 * afterwards, so an entry is good for KEY_REFRESH_MS only: then the token key
 * is found and read again and a fresh copy replaces the old one, which is
 * destroyed.  A key deleted or restricted on the HSM is thus seen within that
 * time; GetKeyMetadata always reads the token key. */
typedef struct cached_key {
  char label[XKS_KEY_ID_MAX + 1];  /* "" for a free slot */
  CK_OBJECT_HANDLE handle;         /* the copy, or the token key when no copy could be made */
  int is_copy;
  long long made_ms;               /* when it was found (and copied) */
  p11_key_info info;
  unsigned long generation;        /* the token's generation it was found in */
  unsigned long epoch;             /* p11_module_epoch it was found in */
} cached_key;

typedef struct retired_copy {
  CK_OBJECT_HANDLE handle;
  char label[XKS_KEY_ID_MAX + 1];
  long long since_ms;
  unsigned long generation, epoch;
} retired_copy;

typedef struct htoken {
  const xksp_token_config *cfg;
  const char *module_path;
  p11_module *mod;
  pthread_mutex_t lock;            /* guards every field below */
  p11_token *tok;                  /* NULL until first opened; then fixed until close */
  int failed;                      /* must be re-opened before use */
  int reopening;                   /* a thread is re-opening it now */
  int pin_rejected;                /* wrong PIN: never tried again */
  CK_RV fail_rv;                   /* the answer that failed it (or its last re-open) */
  unsigned long fail_epoch;        /* p11_module_epoch when a re-open failed so */
  long long last_reopen_ms;
  long long retry_delay_ms;        /* prober's backoff: 1 s doubling to 30 s, reset on success */
  long long key_refresh_ms;        /* KEY_REFRESH_MS or the store's key_refresh_ms; fixed */
  unsigned long generation;        /* bumped at each re-open or re-login: cached handles die */
  int has_rng;
  p11_iv_batch ivs;               /* IVs from the token's RNG not yet used (fresh_iv) */
  char manufacturer[33];
  char model[MODEL_MAX + 1];
  token_status status;
  int probing;
  long long probe_started_ms;
  long long last_probe_done_ms;    /* when the status was last found (open or probe) */
  cached_key keys[KEY_CACHE_MAX];
  size_t next_victim;
  /* Working copies out of the cache (replaced or evicted), destroyed once
   * KEY_REFRESH_MS old: a request may still be using one, and a module may
   * fail that request oddly if its key vanishes under it (SoftHSM2 answers
   * CKR_MECHANISM_INVALID), so no copy is destroyed while it may be in use. */
  retired_copy retired[RETIRED_MAX];
  size_t retired_count;
  /* The session every working copy is made in and destroyed from.  It is
   * never handed to a request, so no pool decision (closing a session after
   * a failed call) can take copies away under the cache; it is replaced, and
   * every copy with it, when the token's generation changes, and forgotten
   * (the module already closed it) when the module's epoch does.  Used only
   * under copy_lock and while the caller holds a pooled session, which keeps
   * reinitializations out. */
  pthread_mutex_t copy_lock;
  CK_SESSION_HANDLE copy_session;
  int has_copy_session;
  unsigned long copy_epoch, copy_generation;
} htoken;

struct xksp_hsm {
  const xksp_store_config *store;
  htoken tokens[XKSP_TOKENS_MAX];
  size_t token_count;
  unsigned pool;
  unsigned interval_s;
  pthread_mutex_t prober_lock;
  pthread_cond_t prober_wake;      /* CLOCK_MONOTONIC */
  int prober_started, stopping;    /* under prober_lock */
  int wake;                        /* a request failed a token: recover it now */
  pthread_t prober;
};

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- token state -------------------------------------------------------- */

/* A failure that says the token (not the request) is the problem: the
 * request moves on to the next token.  A GCM tag mismatch is never one,
 * even when a module reports it as CKR_GENERAL_ERROR (p11 maps that to
 * KERR_INVALID_CIPHERTEXT first). */
static int device_failure(kerr_code rc, const p11_err *pe) {
  if (rc == KERR_KEY_UNAVAILABLE) return 1;
  return rc == KERR_INTERNAL && pe->rv != CKR_OK && p11_rv_module_state(pe->rv);
}

static void mark_failed(xksp_hsm *h, htoken *t, const p11_err *pe) {
  pthread_mutex_lock(&t->lock);
  int was_failed = t->failed;
  t->failed = 1;
  t->status = ST_UNAVAILABLE;
  if (!was_failed) t->fail_rv = pe->rv;
  pthread_mutex_unlock(&t->lock);
  if (!was_failed) {
    /* Recovery starts now, not at the next interval. */
    pthread_mutex_lock(&h->prober_lock);
    h->wake = 1;
    pthread_cond_signal(&h->prober_wake);
    pthread_mutex_unlock(&h->prober_lock);
  }
  if (!was_failed)
    log_msg(LOG_WARN, NULL, "key store %s: PKCS#11 token \"%s\" failed, trying the others: %s",
            h->store->name, t->cfg->label, pe->e.msg);
}

static int pin_refusal(const p11_err *pe) {
  return pe->e.code == KERR_ACCESS_DENIED || pe->rv == CKR_PIN_INCORRECT ||
         pe->rv == CKR_PIN_LOCKED;
}

/* Copy manufacturer, model string and RNG flag from the token. */
static kerr_code describe(htoken *t, p11_token *tok, p11_err *pe) {
  p11_token_desc d;
  char model[MODEL_MAX + 1];  /* 32 + 16 + " fw 999.999" fit */
  kerr_code rc = p11_token_describe(tok, &d, pe);
  if (rc) return rc;
  snprintf(model, sizeof model, "%s %s fw %u.%u", d.manufacturer, d.model, d.fw_major % 1000,
           d.fw_minor % 1000);
  /* An empty manufacturer or model leaves spaces to trim at the start. */
  const char *m = model;
  while (*m == ' ') m++;
  pthread_mutex_lock(&t->lock);
  snprintf(t->manufacturer, sizeof t->manufacturer, "%s", d.manufacturer);
  snprintf(t->model, sizeof t->model, "%s", m);
  t->has_rng = d.has_rng;
  pthread_mutex_unlock(&t->lock);
  return KERR_OK;
}

/* Log the user in.  Already logged in (a request thread or another handle
 * of this process got there first: PKCS#11 login state is per process) is
 * the state wanted, not a failure. */
static kerr_code login_user(htoken *t, p11_token *tok, p11_err *pe) {
  kerr_code rc = p11_token_login(tok, t->cfg->pin, pe);
  if (rc && pe->rv == CKR_USER_ALREADY_LOGGED_IN) {
    p11_err_clear(pe);
    rc = KERR_OK;
  }
  return rc;
}

/* Make `tok` (NULL: open it) usable again: reinitialize the module when the
 * failure `rv` says its state may be bad (refused for a module another
 * library initialized: then just log in again), log out unless a
 * reinitialization already did (other threads may be using the login; they
 * log in again on their own), log in.  No lock held; the caller holds no
 * session.  *opened is the token afterwards. */
static kerr_code reopen(xksp_hsm *h, htoken *t, p11_token *tok, CK_RV rv,
                        unsigned long fail_epoch, p11_token **opened, p11_err *pe) {
  kerr_code rc;
  *opened = tok;
  if (!tok) {
    /* The token was never opened and the last try said the module's state
     * may be bad: no token handle can recover it, so reinitialize the
     * module here (once: not when that happened since the failure). */
    if (p11_rv_module_state(rv)) {
      rc = p11_module_reinitialize(t->mod, fail_epoch, ACQUIRE_WAIT_MS, pe);
      if (rc && rc != KERR_INVALID_STATE) return rc;
    }
    rc = p11_token_open(t->mod, t->cfg->label, h->pool, &tok, pe);
    if (rc) return rc;
    p11_token_set_acquire_timeout(tok, ACQUIRE_WAIT_MS, NULL);
    *opened = tok;
  } else {
    if (p11_rv_module_state(rv)) {
      rc = p11_token_recover(tok, pe);
      if (rc && rc != KERR_INVALID_STATE) return rc;
    }
    /* Still logged in by this handle means the module was not
     * reinitialized since: the login may be what went bad. */
    if (p11_token_logged_in(tok)) p11_token_logout(tok, NULL);
  }
  rc = login_user(t, tok, pe);
  if (rc) return rc;
  return describe(t, tok, pe);
}

static int prober_running(xksp_hsm *h) {
  pthread_mutex_lock(&h->prober_lock);
  int yes = h->prober_started;
  pthread_mutex_unlock(&h->prober_lock);
  return yes;
}

/* The token, usable: re-opened first if it failed and the backoff allows.
 * KERR_KEY_UNAVAILABLE (or the re-open's failure) when it is not.  With a
 * prober running only the prober re-opens (`by_prober`), with a backoff of
 * its own per token; requests skip a failed token, so none of them waits
 * on a dead HSM or a module reinitialization. */
static kerr_code token_ready(xksp_hsm *h, htoken *t, int by_prober, p11_token **tok_out,
                             p11_err *pe) {
  int prober = prober_running(h);
  p11_token *tok;
  CK_RV rv;
  *tok_out = NULL;
  pthread_mutex_lock(&t->lock);
  if (t->pin_rejected) {
    pthread_mutex_unlock(&t->lock);
    return kerr_set(&pe->e, KERR_KEY_UNAVAILABLE,
                    "PKCS#11 token \"%s\" refused its PIN; fix the configuration", t->cfg->label);
  }
  if (!t->failed && t->tok) {
    *tok_out = t->tok;
    pthread_mutex_unlock(&t->lock);
    return KERR_OK;
  }
  long long now = now_ms();
  long long backoff = prober ? (t->retry_delay_ms ? t->retry_delay_ms : XKSP_REOPEN_BACKOFF_MS)
                             : XKSP_REOPEN_BACKOFF_MS;
  if ((prober && !by_prober) || t->reopening || now - t->last_reopen_ms < backoff) {
    pthread_mutex_unlock(&t->lock);
    return kerr_set(&pe->e, KERR_KEY_UNAVAILABLE, "PKCS#11 token \"%s\" is unavailable",
                    t->cfg->label);
  }
  t->reopening = 1;
  t->last_reopen_ms = now;
  tok = t->tok;
  rv = t->fail_rv;
  unsigned long fail_epoch = t->fail_epoch;
  pthread_mutex_unlock(&t->lock);

  unsigned long epoch_before = p11_module_epoch(t->mod);
  p11_token *opened = NULL;
  kerr_code rc = reopen(h, t, tok, rv, fail_epoch, &opened, pe);

  pthread_mutex_lock(&t->lock);
  t->reopening = 0;
  t->tok = opened;
  if (rc && pin_refusal(pe)) t->pin_rejected = 1;
  /* A re-open that failed with a module-state answer has the next one
   * reinitialize the module, even for a token that never opened. */
  if (rc && pe->rv != CKR_OK && p11_rv_module_state(pe->rv)) {
    t->fail_rv = pe->rv;
    t->fail_epoch = epoch_before;
  }
  int pin_rejected = t->pin_rejected;
  if (rc && prober)
    t->retry_delay_ms = backoff * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : backoff * 2;
  if (!rc) {
    t->retry_delay_ms = 0;
    t->failed = 0;
    t->generation++;
    t->status = ST_ACTIVE;
    *tok_out = opened;
  }
  pthread_mutex_unlock(&t->lock);
  if (!rc)
    log_msg(LOG_INFO, NULL, "key store %s: PKCS#11 token \"%s\" %s", h->store->name,
            t->cfg->label, tok ? "is serving again" : "opened");
  else if (pin_rejected)
    log_msg(LOG_ERROR, NULL, "key store %s: PKCS#11 token \"%s\" refused its PIN; not retried",
            h->store->name, t->cfg->label);
  /* Whatever kept the token closed (absent, wrong PIN, device), the request
   * is not at fault: it moves on, and no KeyNotFound or AccessDenied leaks
   * out of a token that merely is not there. */
  if (rc && rc != KERR_DEPENDENCY_TIMEOUT) rc = pe->e.code = KERR_KEY_UNAVAILABLE;
  return rc;
}

/* Forget every cached handle of the token. */
static void cache_clear(htoken *t) {
  pthread_mutex_lock(&t->lock);
  t->generation++;
  pthread_mutex_unlock(&t->lock);
}

/* Log in again after the login was found gone; a refused PIN is remembered
 * (never tried again).  The handle's cached keys die with the login: what
 * ended it may have renumbered them. */
static kerr_code relogin(htoken *t, p11_token *tok, p11_err *pe) {
  kerr_code rc = login_user(t, tok, pe);
  if (rc) {
    if (pin_refusal(pe)) {
      pthread_mutex_lock(&t->lock);
      t->pin_rejected = 1;
      pthread_mutex_unlock(&t->lock);
    }
    return rc;
  }
  cache_clear(t);
  return KERR_OK;
}

/* A session logged in as the user.  A reinitialization of the module on
 * behalf of another token ends this token's login quietly: log in again
 * and retry.  When the login is ended again each time (restarts racing),
 * KERR_KEY_UNAVAILABLE with *lost set: the token is not at fault.  Any
 * other failure is the token's (the caller marks it failed). */
static kerr_code acquire_user(htoken *t, p11_token *tok, p11_session **s, int *lost,
                              p11_err *pe) {
  *lost = 0;
  for (int attempt = 0;; attempt++) {
    kerr_code rc = p11_session_acquire_as(tok, CKU_USER, s, pe);
    if (rc != KERR_INVALID_STATE || pe->rv != CKR_USER_NOT_LOGGED_IN) return rc;
    if (attempt == 2) {
      *lost = 1;
      return kerr_set(&pe->e, KERR_KEY_UNAVAILABLE,
                      "the login of PKCS#11 token \"%s\" kept being ended by module restarts",
                      t->cfg->label);
    }
    rc = relogin(t, tok, pe);
    if (rc) return rc;
  }
}

/* 1 when the module says the session works logged in as the user; a
 * session that does not sees no private object, so an empty search there
 * says nothing about the key. */
static int session_is_user(htoken *t, p11_session *s) {
  CK_SESSION_INFO si;
  const CK_FUNCTION_LIST *fn = p11_module_functions(t->mod);
  if (fn->C_GetSessionInfo(p11_session_handle(s), &si) != CKR_OK) return 0;
  return si.state == CKS_RW_USER_FUNCTIONS || si.state == CKS_RO_USER_FUNCTIONS;
}

/* The login was found gone in the middle of a key operation (another
 * thread's re-open logged the token out, or the module lost it): unless
 * someone logged in again meanwhile, log out what the handle still counts
 * and log in again. */
static kerr_code restore_login(htoken *t, p11_token *tok, int *lost, p11_err *pe) {
  p11_session *s = NULL;
  kerr_code rc = acquire_user(t, tok, &s, lost, pe);
  if (rc) return rc;
  int fine = session_is_user(t, s);
  p11_session_release(s);
  if (fine) return KERR_OK;
  p11_token_logout(tok, NULL);
  return relogin(t, tok, pe);
}

/* ---- keys --------------------------------------------------------------- */

static int listed(char *const *list, size_t n, const char *id) {
  for (size_t i = 0; i < n; i++)
    if (list[i] && strcmp(list[i], id) == 0) return 1;
  return 0;
}

/* Forget the entry for `label` if it still holds `handle` (a request that
 * found its handle stale must not drop a fresher entry another request just
 * made).  A stale copy needs no destroying: it is already gone. */
static void cache_drop(htoken *t, const char *label, CK_OBJECT_HANDLE handle) {
  pthread_mutex_lock(&t->lock);
  for (size_t i = 0; i < KEY_CACHE_MAX; i++)
    if (strcmp(t->keys[i].label, label) == 0 && t->keys[i].handle == handle) t->keys[i].label[0] = '\0';
  pthread_mutex_unlock(&t->lock);
}

/* Make a working copy of `key` in the token's copy session (opened, or
 * replaced when the token's generation moved on, here).  0 and *copy set, or
 * -1: the token key itself will serve. */
static int make_copy(htoken *t, CK_OBJECT_HANDLE key, unsigned long epoch, unsigned long gen,
                     CK_OBJECT_HANDLE *copy) {
  const CK_FUNCTION_LIST *f = p11_module_functions(t->mod);
  CK_BBOOL off_token = CK_FALSE;
  CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &off_token, sizeof off_token}};
  p11_token *tok;
  int ok = -1;
  pthread_mutex_lock(&t->lock);
  tok = t->tok;
  pthread_mutex_unlock(&t->lock);
  if (!tok) return -1;
  pthread_mutex_lock(&t->copy_lock);
  if (t->has_copy_session && (t->copy_epoch != epoch || t->copy_generation != gen)) {
    /* Another login or re-open: its copies are no longer in the cache.  In
     * the same epoch the session still exists, and closing it destroys them. */
    if (t->copy_epoch == epoch) f->C_CloseSession(t->copy_session);
    t->has_copy_session = 0;
  }
  if (!t->has_copy_session &&
      f->C_OpenSession(p11_token_slot(tok), CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                       &t->copy_session) == CKR_OK) {
    t->has_copy_session = 1;
    t->copy_epoch = epoch;
    t->copy_generation = gen;
  }
  if (t->has_copy_session && f->C_CopyObject(t->copy_session, key, tmpl, 1, copy) == CKR_OK) ok = 0;
  pthread_mutex_unlock(&t->copy_lock);
  return ok;
}

/* Destroy retired copies made in the current copy session, each after
 * checking it still names a session object labelled as recorded. */
static void destroy_copies(htoken *t, const retired_copy *doomed, size_t n) {
  const CK_FUNCTION_LIST *f = p11_module_functions(t->mod);
  pthread_mutex_lock(&t->copy_lock);
  for (size_t i = 0; i < n && t->has_copy_session; i++) {
    if (doomed[i].epoch != t->copy_epoch || doomed[i].generation != t->copy_generation) continue;
    CK_BBOOL on_token = CK_TRUE;
    char got[XKS_KEY_ID_MAX + 1];
    CK_ATTRIBUTE a[] = {{CKA_TOKEN, &on_token, sizeof on_token}, {CKA_LABEL, got, sizeof got - 1}};
    if (f->C_GetAttributeValue(t->copy_session, doomed[i].handle, a, 2) != CKR_OK) continue;
    if (on_token != CK_FALSE || a[1].ulValueLen != strlen(doomed[i].label) ||
        memcmp(got, doomed[i].label, a[1].ulValueLen) != 0)
      continue;
    f->C_DestroyObject(t->copy_session, doomed[i].handle);
  }
  pthread_mutex_unlock(&t->copy_lock);
}

/* Forget the entry of `label` (its key is gone or no longer usable on the
 * token): its copy is retired, to be destroyed once no request can hold it. */
static void cache_forget(htoken *t, const char *label, long long now) {
  pthread_mutex_lock(&t->lock);
  for (size_t i = 0; i < KEY_CACHE_MAX; i++) {
    cached_key *k = &t->keys[i];
    if (strcmp(k->label, label) != 0) continue;
    if (k->is_copy && t->retired_count < RETIRED_MAX) {
      retired_copy *r = &t->retired[t->retired_count++];
      r->handle = k->handle;
      memcpy(r->label, k->label, sizeof r->label);
      r->since_ms = now;
      r->generation = k->generation;
      r->epoch = k->epoch;
    }
    k->label[0] = '\0';
  }
  pthread_mutex_unlock(&t->lock);
}

/* The key labelled `label` on the token, from the cache or found now.  A
 * reinitialization of the module (for any of its tokens, on behalf of any
 * store) renumbers every object handle, so a cached handle is good only in
 * the module epoch it was found in; the epoch is read while `s` is held,
 * which keeps reinitializations out until the handle has been used.
 * `fresh` skips the cache (GetKeyMetadata reports the token key as it is
 * now). */
static kerr_code key_lookup(htoken *t, p11_session *s, const char *label, int fresh,
                            CK_OBJECT_HANDLE *handle, p11_key_info *info, p11_err *pe) {
  unsigned long epoch = p11_module_epoch(t->mod);
  long long now = now_ms();
  pthread_mutex_lock(&t->lock);
  unsigned long gen = t->generation;
  for (size_t i = 0; i < KEY_CACHE_MAX && !fresh; i++) {
    cached_key *k = &t->keys[i];
    if (k->label[0] && k->generation == gen && k->epoch == epoch && now - k->made_ms < t->key_refresh_ms &&
        strcmp(k->label, label) == 0) {
      *handle = k->handle;
      *info = k->info;
      pthread_mutex_unlock(&t->lock);
      return KERR_OK;
    }
  }
  pthread_mutex_unlock(&t->lock);
  CK_OBJECT_HANDLE found = CK_INVALID_HANDLE, copy = CK_INVALID_HANDLE;
  *handle = CK_INVALID_HANDLE;
  kerr_code rc = p11_key_find_label(s, label, &found, pe);
  if (rc == KERR_CONFLICT)
    rc = kerr_set(&pe->e, KERR_INTERNAL, "more than one key of token \"%s\" is labelled %s",
                  t->cfg->label, label);
  if (!rc) rc = p11_key_get_info(s, found, info, pe);
  if (!rc && info->key_type != CKK_AES)
    rc = kerr_set(&pe->e, KERR_NOT_FOUND, "the key labelled %s is not an AES key", label);
  if (rc) {
    /* The token key cannot serve (gone, doubled, not AES): neither may its
     * copy.  A lost login or a dead token is not the key's fault, and the
     * caller retries; only a logged-in session's answer counts. */
    if (session_is_user(t, s)) cache_forget(t, label, now);
    return rc;
  }
  *handle = found;
  if (fresh) return KERR_OK;
  pthread_mutex_lock(&t->lock);
  int room = t->retired_count < RETIRED_MAX; /* else no copy: retiring would mean destroying early */
  pthread_mutex_unlock(&t->lock);
  int is_copy = room && make_copy(t, found, epoch, gen, &copy) == 0; /* else the token key serves */
  if (is_copy) *handle = copy;

  /* Keep it.  A copy it replaces (or evicts) is retired, and retired copies
   * old enough are destroyed now, with this session; copies from another
   * epoch or generation died with their sessions and are only forgotten. */
  retired_copy doomed[DOOMED_BATCH];
  size_t ndoomed = 0;
  pthread_mutex_lock(&t->lock);
  if (t->generation == gen) {
    size_t slot = KEY_CACHE_MAX;
    for (size_t i = 0; i < KEY_CACHE_MAX && slot == KEY_CACHE_MAX; i++)
      if (strcmp(t->keys[i].label, label) == 0) slot = i;
    for (size_t i = 0; i < KEY_CACHE_MAX && slot == KEY_CACHE_MAX; i++)
      if (!t->keys[i].label[0]) slot = i;
    if (slot == KEY_CACHE_MAX) slot = t->next_victim++ % KEY_CACHE_MAX;
    cached_key *k = &t->keys[slot];
    if (k->label[0] && k->is_copy && k->epoch == epoch && k->generation == gen &&
        t->retired_count < RETIRED_MAX) {
      retired_copy *rc_ = &t->retired[t->retired_count++];
      rc_->handle = k->handle;
      memcpy(rc_->label, k->label, sizeof rc_->label);
      rc_->since_ms = now;
      rc_->generation = gen;
      rc_->epoch = epoch;
    }
    snprintf(k->label, sizeof k->label, "%s", label);
    k->handle = *handle;
    k->is_copy = is_copy;
    k->made_ms = now;
    k->info = *info;
    k->generation = gen;
    k->epoch = epoch;
  }
  size_t kept = 0;
  for (size_t i = 0; i < t->retired_count; i++) {
    retired_copy *rc_ = &t->retired[i];
    int alive = rc_->epoch == epoch && rc_->generation == t->generation;
    if (alive && now - rc_->since_ms < t->key_refresh_ms)
      t->retired[kept++] = *rc_;
    else if (alive && ndoomed < DOOMED_BATCH)
      doomed[ndoomed++] = *rc_;
    else if (alive)
      t->retired[kept++] = *rc_; /* due, but the batch is full: the next miss destroys it */
  }
  t->retired_count = kept;
  pthread_mutex_unlock(&t->lock);
  /* Destroyed only once checked to be a session copy of its label, so a
   * reused handle number can never cost a token key. */
  destroy_copies(t, doomed, ndoomed);
  return KERR_OK;
}

/* One operation on one key of one token, with its session. */
typedef kerr_code (*key_op)(xksp_hsm *h, htoken *t, p11_session *s, CK_OBJECT_HANDLE key,
                            const p11_key_info *info, void *ctx, p11_err *pe);
static kerr_code op_metadata(xksp_hsm *h, htoken *t, p11_session *s, CK_OBJECT_HANDLE key,
                             const p11_key_info *info, void *ctx, p11_err *pe);

static int stale_handle(kerr_code rc, const p11_err *pe) {
  return rc == KERR_NOT_FOUND &&
         (pe->rv == CKR_OBJECT_HANDLE_INVALID || pe->rv == CKR_KEY_HANDLE_INVALID);
}

/* What became of a request on one token. */
typedef enum token_outcome {
  TOKEN_ANSWERED = 0,   /* rc is the request's answer (success or the key's refusal) */
  TOKEN_FAULT,          /* the token could not be made ready: mark it failed, next token */
  TOKEN_SKIPPED,        /* not usable now, not its fault (busy, login lost to a restart) */
} token_outcome;

/* 1 when the failure says the session was not logged in (so the answer is
 * about the login, not the key). */
static int login_gone(htoken *t, p11_session *s, kerr_code rc, const p11_err *pe) {
  if (rc == KERR_INVALID_STATE && pe->rv == CKR_USER_NOT_LOGGED_IN) return 1;
  return rc == KERR_NOT_FOUND && !stale_handle(rc, pe) && !session_is_user(t, s);
}

/* Run `op` on the key through token `t`; a stale cached handle is dropped
 * and the key found once more; a login found gone is restored and the
 * operation run once more.  Only a key lookup on a logged-in session of a
 * healthy token can answer KERR_NOT_FOUND. */
static kerr_code on_token(xksp_hsm *h, htoken *t, const char *key_id, key_op op, void *ctx,
                          token_outcome *out, p11_err *pe) {
  p11_token *tok;
  p11_session *s = NULL;
  CK_OBJECT_HANDLE key;
  p11_key_info info;
  int lost = 0;
  *out = TOKEN_ANSWERED;
  kerr_code rc = token_ready(h, t, 0, &tok, pe);
  for (int relogged = 0; !rc; relogged++) {
    rc = acquire_user(t, tok, &s, &lost, pe);
    if (rc) break;
    for (int attempt = 0; attempt < 2; attempt++) {
      rc = key_lookup(t, s, key_id, op == op_metadata, &key, &info, pe);
      if (!rc) rc = op(h, t, s, key, &info, ctx, pe);
      if (!stale_handle(rc, pe)) break;
      cache_drop(t, key_id, key);
    }
    int gone = rc && login_gone(t, s, rc, pe);
    p11_session_release(s);
    s = NULL;
    if (!gone) return rc;
    if (relogged) {
      *out = TOKEN_SKIPPED;
      return kerr_set(&pe->e, KERR_KEY_UNAVAILABLE,
                      "PKCS#11 token \"%s\" lost its login again right after logging in",
                      t->cfg->label);
    }
    rc = restore_login(t, tok, &lost, pe);
  }
  /* Getting the token ready or a session of it failed: whatever the
   * answer (a token gone after a module restart says KERR_NOT_FOUND with
   * CKR_OK), it is about the token, never about the key. */
  if (rc == KERR_DEPENDENCY_TIMEOUT || lost)
    *out = TOKEN_SKIPPED;
  else
    *out = TOKEN_FAULT;
  if (rc != KERR_DEPENDENCY_TIMEOUT) rc = pe->e.code = KERR_KEY_UNAVAILABLE;
  return rc;
}

/* Serve one request: tokens in configured order, moving on after a
 * device-class failure or a pool that stayed busy. */
static kerr_code serve(xksp_hsm *h, const char *key_id, key_op op, void *ctx, kerr *err) {
  p11_err pe;
  int timed_out = 0;
  size_t n = key_id ? strnlen(key_id, XKS_KEY_ID_MAX + 1) : 0;
  if (n == 0 || n > XKS_KEY_ID_MAX)
    return kerr_set(err, KERR_NOT_FOUND, "external key id must be 1 to %d characters",
                    XKS_KEY_ID_MAX);
  if (h->store->keys && !listed(h->store->keys, h->store->key_count, key_id))
    return kerr_set(err, KERR_NOT_FOUND, "no external key %s in key store %s", key_id,
                    h->store->name);
  for (size_t i = 0; i < h->token_count; i++) {
    htoken *t = &h->tokens[i];
    token_outcome outcome;
    p11_err_clear(&pe);
    kerr_code rc = on_token(h, t, key_id, op, ctx, &outcome, &pe);
    if (rc == KERR_OK) return KERR_OK;
    if (rc == KERR_DEPENDENCY_TIMEOUT) {
      timed_out = 1;
      continue;
    }
    if (outcome == TOKEN_FAULT) {
      mark_failed(h, t, &pe);
      continue;
    }
    if (outcome == TOKEN_SKIPPED) continue;
    if (device_failure(rc, &pe)) {
      if (pe.rv != CKR_OK) mark_failed(h, t, &pe);
      continue;
    }
    if (err) *err = pe.e;
    return rc;
  }
  if (timed_out)
    return kerr_set(err, KERR_DEPENDENCY_TIMEOUT,
                    "no PKCS#11 session of key store %s became free in time", h->store->name);
  return kerr_set(err, KERR_KEY_UNAVAILABLE, "no PKCS#11 token of key store %s is available",
                  h->store->name);
}

static int disabled(const xksp_hsm *h, const char *key_id) {
  return listed(h->store->disabled_keys, h->store->disabled_key_count, key_id);
}

/* ---- metadata ----------------------------------------------------------- */

static kerr_code op_metadata(xksp_hsm *h, htoken *t, p11_session *s, CK_OBJECT_HANDLE key,
                             const p11_key_info *cached, void *ctx, p11_err *pe) {
  const char *key_id = ((const char **)ctx)[0];
  xks_key_metadata *m = ((xks_key_metadata **)ctx)[1];
  p11_key_info info;
  char spec[16];
  /* Attributes read now, not from the cache: the reply says what the key is. */
  kerr_code rc = p11_key_get_info(s, key, &info, pe);
  if (rc) return rc;
  if (info.value_len != 16 && info.value_len != 24 && info.value_len != 32)
    return kerr_set(&pe->e, KERR_INTERNAL, "the key labelled %s has an AES size of %lu bytes",
                    key_id, (unsigned long)info.value_len);
  snprintf(spec, sizeof spec, "AES_%lu", (unsigned long)info.value_len * 8);
  const char *usage[4];
  size_t nu = 0;
  if (info.encrypt) usage[nu++] = "ENCRYPT";
  if (info.decrypt) usage[nu++] = "DECRYPT";
  if (info.wrap) usage[nu++] = "WRAP";
  if (info.unwrap) usage[nu++] = "UNWRAP";
  int enabled = (info.encrypt || info.decrypt) && !disabled(h, key_id);
  xks_key_metadata out = {0};
  out.key_spec = strdup(spec);
  out.key_status = strdup(enabled ? "ENABLED" : "DISABLED");
  int ok = out.key_spec && out.key_status;
  for (size_t i = 0; i < nu; i++) {
    out.key_usage[i] = strdup(usage[i]);
    ok = ok && out.key_usage[i];
  }
  out.key_usage_count = nu;
  if (!ok) {
    xks_key_metadata_free(&out);
    return kerr_set(&pe->e, KERR_INTERNAL, "out of memory building key metadata");
  }
  *m = out;
  return KERR_OK;
}

kerr_code xksp_hsm_metadata(xksp_hsm *h, const char *key_id, xks_key_metadata *m, kerr *err) {
  void *ctx[2] = {(void *)key_id, m};
  memset(m, 0, sizeof *m);
  return serve(h, key_id, op_metadata, ctx, err);
}

/* ---- encrypt and decrypt ------------------------------------------------ */

/* Refusals that depend on the key only. */
static kerr_code usable(xksp_hsm *h, const char *key_id, const p11_key_info *info, int encrypt,
                        p11_err *pe) {
  if (disabled(h, key_id) || (!info->encrypt && !info->decrypt))
    return kerr_set(&pe->e, KERR_INVALID_STATE, "external key %s is disabled", key_id);
  if (info->value_len != P11_AES_KEY_BYTES)
    return kerr_set(&pe->e, KERR_INVALID_KEY_USAGE, "external key %s is not AES-256", key_id);
  if (encrypt ? !info->encrypt : !info->decrypt)
    return kerr_set(&pe->e, KERR_INVALID_KEY_USAGE, "external key %s cannot %s", key_id,
                    encrypt ? "encrypt" : "decrypt");
  return KERR_OK;
}

typedef struct crypt_ctx {
  const char *key_id;
  const xks_request *req;
  const kbytes *aad;            /* xks_gcm_aad of the request */
  xks_encrypt_result *enc;
  xks_decrypt_result *dec;
} crypt_ctx;

/* A GCM IV never used before.  From the token (iv_source hsm, or auto on a
 * token with an RNG): out of the token's batch (p11_iv_batch_next).
 * Otherwise from the DRBG. */
static kerr_code fresh_iv(xksp_hsm *h, htoken *t, p11_session *s, uint8_t iv[P11_GCM_IV_BYTES],
                          p11_err *pe) {
  int from_token = h->store->iv_source == XKSP_IV_HSM;
  if (h->store->iv_source == XKSP_IV_AUTO) {
    pthread_mutex_lock(&t->lock);
    from_token = t->has_rng;
    pthread_mutex_unlock(&t->lock);
  }
  if (from_token) return p11_iv_batch_next(&t->ivs, &t->lock, s, iv, pe);
  if (RAND_bytes(iv, P11_GCM_IV_BYTES) != 1)
    return kerr_set(&pe->e, KERR_INTERNAL, "the random generator failed to make an IV");
  return KERR_OK;
}

/* One encryption; *trial_failed when the CDIV's trial decryption did not
 * give the plaintext back (nothing returned then). */
static kerr_code encrypt_once(xksp_hsm *h, htoken *t, p11_session *s, CK_OBJECT_HANDLE key,
                              const p11_key_info *info, crypt_ctx *c, int *trial_failed,
                              p11_err *pe) {
  const xks_request *req = c->req;
  uint8_t iv[P11_GCM_IV_BYTES], cdiv[XKS_CDIV_LEN];
  kbytes out = {0}, back = {0};
  uint8_t *ct = NULL;
  kerr_code rc = usable(h, c->key_id, info, 1, pe);
  if (rc) return rc;
  rc = fresh_iv(h, t, s, iv, pe);
  if (rc) return rc;
  rc = p11_gcm_encrypt_iv(s, key, iv, sizeof iv, c->aad->data, c->aad->len, req->plaintext.data,
                          req->plaintext.len, &out, pe);
  if (rc) return rc;
  size_t ct_len = out.len - XKS_TAG_LEN;
  const uint8_t *tag = out.data + ct_len;
  if (req->want_cdiv) {
    /* The spec's order: the CDIV over the output as the token gave it,
     * then a decryption that must give the plaintext back, so a fault in
     * between is caught rather than vouched for.  A key that cannot
     * decrypt (ENCRYPT only) cannot be checked this way. */
    kerr e;
    rc = xks_cdiv(req->has_aad ? req->aad.data : NULL, req->has_aad ? req->aad.len : 0, NULL, 0,
                  iv, sizeof iv, out.data, ct_len, tag, XKS_TAG_LEN, cdiv, &e);
    if (rc) {
      pe->e = e;
      goto out;
    }
    if (info->decrypt) {
      rc = p11_gcm_decrypt_iv(s, key, iv, sizeof iv, c->aad->data, c->aad->len, out.data, out.len,
                              &back, pe);
      if (rc == KERR_INVALID_CIPHERTEXT) *trial_failed = 1;
      if (rc) goto out;
      if (back.len != req->plaintext.len ||
          (back.len && secure_memcmp(back.data, req->plaintext.data, back.len) != 0)) {
        *trial_failed = 1;
        rc = kerr_set(&pe->e, KERR_INTERNAL,
                      "the token's ciphertext did not decrypt to the plaintext; not returned");
        goto out;
      }
    }
  }
  ct = malloc(ct_len ? ct_len : 1);
  if (!ct) {
    rc = kerr_set(&pe->e, KERR_INTERNAL, "out of memory for the ciphertext");
    goto out;
  }
  memcpy(ct, out.data, ct_len);
  memset(c->enc, 0, sizeof *c->enc);
  c->enc->ciphertext.data = ct;
  c->enc->ciphertext.len = ct_len;
  memcpy(c->enc->iv, iv, sizeof iv);
  c->enc->iv_len = sizeof iv;
  memcpy(c->enc->tag, tag, XKS_TAG_LEN);
  /* No ciphertextMetadata: this proxy keeps no key versions, so it has
   * nothing to record next to a ciphertext.  has_ct_metadata stays 0. */
  if (req->want_cdiv) {
    memcpy(c->enc->cdiv, cdiv, sizeof cdiv);
    c->enc->has_cdiv = 1;
  }
out:
  kbytes_wipe_free(&back);
  kbytes_wipe_free(&out);
  return rc;
}

/* A trial decryption that fails is a fault of this encryption, not of the
 * request's ciphertext (there is none): the spec allows encrypting again,
 * once; then it is an internal error, never InvalidCiphertext. */
static kerr_code op_encrypt(xksp_hsm *h, htoken *t, p11_session *s, CK_OBJECT_HANDLE key,
                            const p11_key_info *info, void *vctx, p11_err *pe) {
  kerr_code rc = KERR_OK;
  for (int attempt = 0; attempt < 2; attempt++) {
    int trial_failed = 0;
    rc = encrypt_once(h, t, s, key, info, vctx, &trial_failed, pe);
    if (!trial_failed) return rc;
  }
  return kerr_set(&pe->e, KERR_INTERNAL,
                  "the token's ciphertext twice did not decrypt to the plaintext; not returned");
}

static kerr_code op_decrypt(xksp_hsm *h, htoken *t, p11_session *s, CK_OBJECT_HANDLE key,
                            const p11_key_info *info, void *vctx, p11_err *pe) {
  crypt_ctx *c = vctx;
  const xks_request *req = c->req;
  kbytes pt = {0};
  size_t in_len = req->ciphertext.len + XKS_TAG_LEN;
  kerr_code rc = usable(h, c->key_id, info, 0, pe);
  if (rc) return rc;
  uint8_t *in = malloc(in_len);
  if (!in) return kerr_set(&pe->e, KERR_INTERNAL, "out of memory for the ciphertext");
  memcpy(in, req->ciphertext.data, req->ciphertext.len);
  memcpy(in + req->ciphertext.len, req->tag, XKS_TAG_LEN);
  rc = p11_gcm_decrypt_iv(s, key, req->iv, req->iv_len, c->aad->data, c->aad->len, in, in_len,
                          &pt, pe);
  free(in);
  if (rc) return rc;
  c->dec->plaintext = pt;
  return KERR_OK;
}

kerr_code xksp_hsm_encrypt(xksp_hsm *h, const char *key_id, const xks_request *req,
                           xks_encrypt_result *r, kerr *err) {
  kbytes aad = {0};
  memset(r, 0, sizeof *r);
  if (!req->plaintext.data || req->plaintext.len == 0 || req->plaintext.len > XKS_DATA_MAX)
    return kerr_set(err, KERR_VALIDATION, "plaintext must be 1 to %d bytes", XKS_DATA_MAX);
  if (req->has_aad && req->aad.len > XKS_AAD_MAX)
    return kerr_set(err, KERR_VALIDATION, "additionalAuthenticatedData is too long");
  kerr_code rc = xks_gcm_aad(req->has_aad ? req->aad.data : NULL, req->has_aad ? req->aad.len : 0,
                             NULL, 0, &aad, err);
  if (rc) return rc;
  crypt_ctx c = {key_id, req, &aad, r, NULL};
  rc = serve(h, key_id, op_encrypt, &c, err);
  kbytes_wipe_free(&aad);
  return rc;
}

kerr_code xksp_hsm_decrypt(xksp_hsm *h, const char *key_id, const xks_request *req,
                           xks_decrypt_result *r, kerr *err) {
  kbytes aad = {0};
  memset(r, 0, sizeof *r);
  if (req->iv_len != 12 && req->iv_len != 16)
    return kerr_set(err, KERR_INVALID_CIPHERTEXT, "the IV must be 12 or 16 bytes");
  if (!req->ciphertext.data || req->ciphertext.len == 0 || req->ciphertext.len > XKS_DATA_MAX)
    return kerr_set(err, KERR_INVALID_CIPHERTEXT, "the ciphertext must be 1 to %d bytes",
                    XKS_DATA_MAX);
  if ((req->has_aad && req->aad.len > XKS_AAD_MAX) ||
      (req->has_ct_metadata && req->ct_metadata.len > XKS_CT_METADATA_MAX))
    return kerr_set(err, KERR_VALIDATION, "additional data or ciphertext metadata too long");
  /* Whatever ciphertextMetadata comes is bound through the AAD: changed,
   * added or dropped, the tag does not verify. */
  kerr_code rc = xks_gcm_aad(req->has_aad ? req->aad.data : NULL, req->has_aad ? req->aad.len : 0,
                             req->has_ct_metadata ? req->ct_metadata.data : NULL,
                             req->has_ct_metadata ? req->ct_metadata.len : 0, &aad, err);
  if (rc) return rc;
  crypt_ctx c = {key_id, req, &aad, NULL, r};
  rc = serve(h, key_id, op_decrypt, &c, err);
  kbytes_wipe_free(&aad);
  return rc;
}

/* ---- health ------------------------------------------------------------- */

/* The health key's round trip on one session. */
static kerr_code health_round_trip(xksp_hsm *h, htoken *t, p11_session *s, p11_err *pe) {
  static const uint8_t pt[] = HEALTH_PLAINTEXT;
  CK_OBJECT_HANDLE key;
  p11_key_info info;
  uint8_t iv[P11_GCM_IV_BYTES];
  kbytes out = {0}, back = {0};
  kerr_code rc = KERR_OK;
  for (int attempt = 0; attempt < 2; attempt++) {
    rc = key_lookup(t, s, h->store->health_key, 1, &key, &info, pe); /* the token key itself */
    if (!rc && RAND_bytes(iv, sizeof iv) != 1)
      rc = kerr_set(&pe->e, KERR_INTERNAL, "the random generator failed");
    if (!rc)
      rc = p11_gcm_encrypt_iv(s, key, iv, sizeof iv, NULL, 0, pt, sizeof pt, &out, pe);
    if (!rc) rc = p11_gcm_decrypt_iv(s, key, iv, sizeof iv, NULL, 0, out.data, out.len, &back, pe);
    if (!stale_handle(rc, pe)) break;
    kbytes_wipe_free(&out);
    cache_drop(t, h->store->health_key, key);
  }
  if (!rc && (back.len != sizeof pt || memcmp(back.data, pt, sizeof pt) != 0))
    rc = kerr_set(&pe->e, KERR_INTERNAL, "the health key's round trip gave another plaintext");
  kbytes_wipe_free(&out);
  kbytes_wipe_free(&back);
  return rc;
}

static void probe_token(xksp_hsm *h, htoken *t, int by_prober) {
  p11_err pe;
  p11_token *tok = NULL;
  p11_session *s = NULL;
  int degraded = 0;
  long long start = now_ms();
  pthread_mutex_lock(&t->lock);
  t->probing = 1;
  t->probe_started_ms = start;
  pthread_mutex_unlock(&t->lock);
  p11_err_clear(&pe);
  int lost = 0, fault = 0;
  kerr_code rc = token_ready(h, t, by_prober, &tok, &pe);
  if (!rc) rc = describe(t, tok, &pe);
  if (!rc) rc = acquire_user(t, tok, &s, &lost, &pe);
  /* As for a request: not getting the token ready is the token's failure,
   * whatever the answer. */
  fault = rc && rc != KERR_DEPENDENCY_TIMEOUT && !lost;
  if (!rc && h->store->health_key) {
    kerr_code hk = health_round_trip(h, t, s, &pe);
    if (hk && device_failure(hk, &pe))
      rc = hk;
    else if (hk)
      degraded = 1;
  }
  p11_session_release(s);
  if (fault || (rc && device_failure(rc, &pe) && pe.rv != CKR_OK)) mark_failed(h, t, &pe);
  long long took = now_ms() - start;
  pthread_mutex_lock(&t->lock);
  long long slow_ms = h->store->degraded_ms ? h->store->degraded_ms : XKSP_DEFAULT_DEGRADED_MS;
  if (rc == KERR_DEPENDENCY_TIMEOUT)
    t->status = ST_DEGRADED; /* it answers, but every session stayed busy */
  else if (rc)
    t->status = ST_UNAVAILABLE;
  else
    t->status = degraded || took > slow_ms ? ST_DEGRADED : ST_ACTIVE;
  /* A request failed it while this probe ran: the failure is newer. */
  if (t->failed) t->status = ST_UNAVAILABLE;
  t->probing = 0;
  t->last_probe_done_ms = now_ms();
  pthread_mutex_unlock(&t->lock);
}

static int stopping(xksp_hsm *h) {
  pthread_mutex_lock(&h->prober_lock);
  int yes = h->stopping;
  pthread_mutex_unlock(&h->prober_lock);
  return yes;
}

/* Probe every token, or (only_failed) just the failed ones, re-opening
 * them when their backoff allows.  Close waits for the prober: it stops
 * between tokens, not after all of them. */
static void probe_pass(xksp_hsm *h, int by_prober, int only_failed) {
  for (size_t i = 0; i < h->token_count && !stopping(h); i++) {
    htoken *t = &h->tokens[i];
    pthread_mutex_lock(&t->lock);
    int failed = t->failed;
    pthread_mutex_unlock(&t->lock);
    if (!only_failed || failed) probe_token(h, t, by_prober);
  }
}

void xksp_hsm_probe_now(xksp_hsm *h) { probe_pass(h, 1, 0); }

static int any_failed(xksp_hsm *h) {
  int n = 0;
  for (size_t i = 0; i < h->token_count; i++) {
    pthread_mutex_lock(&h->tokens[i].lock);
    n += h->tokens[i].failed && !h->tokens[i].pin_rejected;
    pthread_mutex_unlock(&h->tokens[i].lock);
  }
  return n > 0;
}

/* Every interval a probe of every token; in between, while a token is
 * failed, a recovery pass over the failed ones each second (woken at once
 * when a request fails one), each re-opened no more often than its backoff
 * allows.  A module is reinitialized at most once per such re-open, and not
 * at all when another token's re-open already did it since the failure. */
static void *prober_main(void *arg) {
  xksp_hsm *h = arg;
  long long next_full = now_ms() + (long long)h->interval_s * 1000;
  pthread_mutex_lock(&h->prober_lock);
  while (!h->stopping) {
    pthread_mutex_unlock(&h->prober_lock);
    long long wake_at = next_full;
    if (any_failed(h) && now_ms() + XKSP_REOPEN_BACKOFF_MS < wake_at)
      wake_at = now_ms() + XKSP_REOPEN_BACKOFF_MS;
    struct timespec deadline = {wake_at / 1000, (wake_at % 1000) * 1000000L};
    pthread_mutex_lock(&h->prober_lock);
    while (!h->stopping && !h->wake &&
           pthread_cond_timedwait(&h->prober_wake, &h->prober_lock, &deadline) == 0)
      continue;
    h->wake = 0;
    if (h->stopping) break;
    pthread_mutex_unlock(&h->prober_lock);
    if (now_ms() >= next_full) {
      probe_pass(h, 1, 0);
      next_full = now_ms() + (long long)h->interval_s * 1000;
    } else {
      probe_pass(h, 1, 1);
    }
    pthread_mutex_lock(&h->prober_lock);
  }
  pthread_mutex_unlock(&h->prober_lock);
  return NULL;
}

kerr_code xksp_hsm_start_prober(xksp_hsm *h, kerr *err) {
  if (prober_running(h)) return KERR_OK;
  xksp_hsm_probe_now(h);
  /* Set first: from now on only the prober re-opens failed tokens. */
  pthread_mutex_lock(&h->prober_lock);
  h->prober_started = 1;
  pthread_mutex_unlock(&h->prober_lock);
  if (pthread_create(&h->prober, NULL, prober_main, h) != 0) {
    pthread_mutex_lock(&h->prober_lock);
    h->prober_started = 0;
    pthread_mutex_unlock(&h->prober_lock);
    return kerr_set(err, KERR_INTERNAL, "cannot start the health prober of key store %s",
                    h->store->name);
  }
  return KERR_OK;
}

kerr_code xksp_hsm_health(xksp_hsm *h, xks_health *out, kerr *err) {
  long long now = now_ms();
  long long max_age_ms = (long long)h->interval_s * 2000;
  if (max_age_ms > HEALTH_MAX_AGE_MS) max_age_ms = HEALTH_MAX_AGE_MS;
  char vendor[33] = "";
  for (size_t i = 0; i < h->token_count; i++) {
    htoken *t = &h->tokens[i];
    char model[MODEL_MAX + 1];
    pthread_mutex_lock(&t->lock);
    token_status st = t->status;
    /* A probe stuck in the token for longer than an interval: it hangs. */
    if (t->probing && now - t->probe_started_ms > (long long)h->interval_s * 1000)
      st = ST_UNAVAILABLE;
    /* A status nobody confirmed for two intervals (a minute at most, the
     * spec's bound) is not reported as current. */
    if (now - t->last_probe_done_ms > max_age_ms) st = ST_UNAVAILABLE;
    snprintf(model, sizeof model, "%s", t->model[0] ? t->model : "unknown");
    if (i == 0) snprintf(vendor, sizeof vendor, "%s", t->manufacturer);
    pthread_mutex_unlock(&t->lock);
    out->ekm[i].id = strdup(t->cfg->label);
    out->ekm[i].model = strdup(model);
    out->ekm[i].health_status = strdup(status_names[st]);
    if (!out->ekm[i].id || !out->ekm[i].model || !out->ekm[i].health_status) goto oom;
  }
  out->ekm_count = h->token_count;
  out->ekm_vendor = strdup(vendor[0] ? vendor : "unknown");
  if (!out->ekm_vendor) goto oom;
  return KERR_OK;
oom:
  for (size_t i = 0; i < h->token_count; i++) {
    free(out->ekm[i].id);
    free(out->ekm[i].model);
    free(out->ekm[i].health_status);
    memset(&out->ekm[i], 0, sizeof out->ekm[i]);
  }
  out->ekm_count = 0;
  return kerr_set(err, KERR_INTERNAL, "out of memory building the health report");
}

/* ---- open and close ----------------------------------------------------- */

kerr_code xksp_hsm_open(const xksp_store_config *store, xksp_hsm **out, kerr *err) {
  kerr_code rc = KERR_OK;
  *out = NULL;
  if (store->token_count < 1 || store->token_count > XKSP_TOKENS_MAX)
    return kerr_set(err, KERR_VALIDATION, "key store %s: 1 to %d tokens", store->name,
                    XKSP_TOKENS_MAX);
  xksp_hsm *h = calloc(1, sizeof *h);
  if (!h) return kerr_set(err, KERR_INTERNAL, "out of memory opening key store %s", store->name);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&h->prober_lock, NULL);
  pthread_cond_init(&h->prober_wake, &ca);
  pthread_condattr_destroy(&ca);
  h->store = store;
  h->pool = store->session_pool >= 1 && store->session_pool <= P11_POOL_MAX ? store->session_pool
                                                                              : XKSP_DEFAULT_POOL;
  h->interval_s = store->health_interval_s >= 1 && store->health_interval_s <= 59
                      ? store->health_interval_s
                      : XKSP_DEFAULT_HEALTH_INTERVAL_S;
  for (size_t i = 0; i < store->token_count; i++) {
    htoken *t = &h->tokens[i];
    p11_err pe;
    pthread_mutex_init(&t->lock, NULL);
    pthread_mutex_init(&t->copy_lock, NULL);
    h->token_count = i + 1; /* what close must undo */
    t->cfg = &store->tokens[i];
    t->module_path = t->cfg->module ? t->cfg->module : store->pkcs11_module;
    t->key_refresh_ms = store->key_refresh_ms ? store->key_refresh_ms : KEY_REFRESH_MS;
    t->failed = 1;
    t->status = ST_UNAVAILABLE;
    if (!t->module_path) {
      rc = kerr_set(err, KERR_VALIDATION, "key store %s: token \"%s\" has no PKCS#11 module",
                    store->name, t->cfg->label);
      goto fail;
    }
    if (p11_module_load(t->module_path, &t->mod, &pe)) {
      rc = kerr_set(err, KERR_VALIDATION, "key store %s: PKCS#11 module %s: %s", store->name,
                    t->module_path, pe.e.msg);
      goto fail;
    }
    p11_token *tok = NULL;
    p11_err_clear(&pe);
    t->last_probe_done_ms = now_ms(); /* the open is the first look */
    if (token_ready(h, t, 1, &tok, &pe)) {
      pthread_mutex_lock(&t->lock);
      int pin_rejected = t->pin_rejected;
      pthread_mutex_unlock(&t->lock);
      if (pin_rejected) {
        rc = kerr_set(err, KERR_VALIDATION, "key store %s: PKCS#11 token \"%s\" refused the PIN",
                      store->name, t->cfg->label);
        goto fail;
      }
      log_msg(LOG_WARN, NULL, "key store %s: PKCS#11 token \"%s\" cannot be opened now: %s",
              store->name, t->cfg->label, pe.e.msg);
    }
  }
  *out = h;
  return KERR_OK;
fail:
  xksp_hsm_close(h);
  return rc;
}

void xksp_hsm_close(xksp_hsm *h) {
  if (!h) return;
  if (h->prober_started) {
    pthread_mutex_lock(&h->prober_lock);
    h->stopping = 1;
    pthread_cond_broadcast(&h->prober_wake);
    pthread_mutex_unlock(&h->prober_lock);
    pthread_join(h->prober, NULL);
  }
  for (size_t i = 0; i < h->token_count; i++) {
    htoken *t = &h->tokens[i];
    /* Close the copy session (and its copies) while holding a pooled session,
     * which keeps a reinitialization of a shared module out meanwhile. */
    p11_session *s = NULL;
    p11_err pe;
    if (t->has_copy_session && t->tok && p11_session_acquire(t->tok, &s, &pe) == KERR_OK) {
      if (t->copy_epoch == p11_module_epoch(t->mod))
        p11_module_functions(t->mod)->C_CloseSession(t->copy_session);
      p11_session_release(s);
    }
    pthread_mutex_destroy(&t->copy_lock);
    p11_iv_batch_wipe(&t->ivs);
    p11_token_close(t->tok);
    p11_module_release(t->mod);
    pthread_mutex_destroy(&t->lock);
  }
  pthread_cond_destroy(&h->prober_wake);
  pthread_mutex_destroy(&h->prober_lock);
  free(h);
}

/* ---- create-key --------------------------------------------------------- */

int xksp_usage_parse(const char *s) {
  if (!s) return -1;
  if (strcmp(s, "encrypt,decrypt") == 0 || strcmp(s, "decrypt,encrypt") == 0)
    return XKSP_USAGE_ENCRYPT_DECRYPT;
  if (strcmp(s, "encrypt") == 0) return XKSP_USAGE_ENCRYPT;
  if (strcmp(s, "decrypt") == 0) return XKSP_USAGE_DECRYPT;
  if (strcmp(s, "none") == 0) return XKSP_USAGE_NONE;
  return -1;
}

static int valid_key_id(const char *s) {
  size_t n = s ? strnlen(s, XKS_KEY_ID_MAX + 1) : 0;
  if (n == 0 || n > XKS_KEY_ID_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '.' || c == '_'))
      return 0;
  }
  return 1;
}

kerr_code xksp_create_key(const char *module, const char *token_label, const char *pin,
                          const char *label, xksp_usage usage, kerr *err) {
  p11_module *mod = NULL;
  p11_token *tok = NULL;
  p11_session *s = NULL;
  CK_OBJECT_HANDLE key;
  p11_err pe;
  kerr_code rc;
  int logged_in = 0;
  if (!valid_key_id(label))
    return kerr_set(err, KERR_VALIDATION,
                    "key label must be 1 to %d characters of A-Z a-z 0-9 - . _",
                    XKS_KEY_ID_MAX);
  if (usage < XKSP_USAGE_ENCRYPT_DECRYPT || usage > XKSP_USAGE_NONE)
    return kerr_set(err, KERR_VALIDATION, "unknown key usage %d", (int)usage);
  if (p11_module_load(module, &mod, &pe))
    return kerr_set(err, KERR_VALIDATION, "PKCS#11 module %s: %s", module ? module : "(none)",
                    pe.e.msg);
  rc = p11_token_open(mod, token_label, 1, &tok, &pe);
  if (rc) {
    if (rc == KERR_NOT_FOUND || rc == KERR_CONFLICT || rc == KERR_VALIDATION) rc = KERR_VALIDATION;
    kerr_set(err, rc, "PKCS#11 token: %s", pe.e.msg);
    goto out;
  }
  rc = p11_token_login(tok, pin, &pe);
  if (rc) {
    kerr_set(err, rc, "PKCS#11 token \"%s\": %s", token_label, pe.e.msg);
    goto out;
  }
  logged_in = 1;
  rc = p11_session_acquire_as(tok, CKU_USER, &s, &pe);
  if (!rc)
    rc = p11_key_generate_usage(s, label,
                                usage == XKSP_USAGE_ENCRYPT_DECRYPT || usage == XKSP_USAGE_ENCRYPT,
                                usage == XKSP_USAGE_ENCRYPT_DECRYPT || usage == XKSP_USAGE_DECRYPT,
                                &key, &pe);
  if (rc) kerr_set(err, rc, "PKCS#11 token \"%s\": %s", token_label, pe.e.msg);
out:
  p11_session_release(s);
  if (logged_in) p11_token_logout(tok, NULL);
  p11_token_close(tok);
  p11_module_release(mod);
  return rc;
}

/* ---- the backend table -------------------------------------------------- */

static kerr_code be_open(const xksp_store_config *store, void **out, kerr *err) {
  xksp_hsm *h = NULL;
  kerr_code rc = xksp_hsm_open(store, &h, err);
  *out = h;
  return rc;
}

static kerr_code be_start(void *be, kerr *err) { return xksp_hsm_start_prober(be, err); }
static void be_close(void *be) { xksp_hsm_close(be); }

static kerr_code be_metadata(void *be, const char *key_id, xks_key_metadata *out, kerr *err) {
  return xksp_hsm_metadata(be, key_id, out, err);
}

static kerr_code be_encrypt(void *be, const char *key_id, const xks_request *req,
                            xks_encrypt_result *out, kerr *err) {
  return xksp_hsm_encrypt(be, key_id, req, out, err);
}

static kerr_code be_decrypt(void *be, const char *key_id, const xks_request *req,
                            xks_decrypt_result *out, kerr *err) {
  return xksp_hsm_decrypt(be, key_id, req, out, err);
}

static kerr_code be_health(void *be, xks_health *out, kerr *err) {
  return xksp_hsm_health(be, out, err);
}

const xksp_backend xksp_hsm_backend = {
    .name = "pkcs11",
    .open = be_open,
    .start = be_start,
    .close = be_close,
    .metadata = be_metadata,
    .encrypt = be_encrypt,
    .decrypt = be_decrypt,
    .health = be_health,
};
