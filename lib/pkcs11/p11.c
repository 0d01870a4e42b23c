/* p11.c - PKCS#11 module loading, tokens, the session pool and in-token key
 * operations (see p11.h for the contract and docs/pkcs11.md for the design).
 *
 * Every answer of the module is treated as untrusted input: counts and lengths
 * are bounded before use and checked after, and every CK_RV becomes a kerr
 * naming the PKCS#11 function and the CKR_ constant. */
#include "pkcs11/p11.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- errors ------------------------------------------------------------- */

static const struct {
  CK_RV rv;
  const char *name;
} rv_names[] = {
    {CKR_OK, "CKR_OK"},
    {CKR_CANCEL, "CKR_CANCEL"},
    {CKR_HOST_MEMORY, "CKR_HOST_MEMORY"},
    {CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID"},
    {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
    {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"},
    {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
    {CKR_NO_EVENT, "CKR_NO_EVENT"},
    {CKR_NEED_TO_CREATE_THREADS, "CKR_NEED_TO_CREATE_THREADS"},
    {CKR_CANT_LOCK, "CKR_CANT_LOCK"},
    {CKR_ATTRIBUTE_READ_ONLY, "CKR_ATTRIBUTE_READ_ONLY"},
    {CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE"},
    {CKR_ATTRIBUTE_TYPE_INVALID, "CKR_ATTRIBUTE_TYPE_INVALID"},
    {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID"},
    {CKR_ACTION_PROHIBITED, "CKR_ACTION_PROHIBITED"},
    {CKR_DATA_INVALID, "CKR_DATA_INVALID"},
    {CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE"},
    {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
    {CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY"},
    {CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED"},
    {CKR_ENCRYPTED_DATA_INVALID, "CKR_ENCRYPTED_DATA_INVALID"},
    {CKR_ENCRYPTED_DATA_LEN_RANGE, "CKR_ENCRYPTED_DATA_LEN_RANGE"},
    {CKR_FUNCTION_CANCELED, "CKR_FUNCTION_CANCELED"},
    {CKR_FUNCTION_NOT_PARALLEL, "CKR_FUNCTION_NOT_PARALLEL"},
    {CKR_FUNCTION_NOT_SUPPORTED, "CKR_FUNCTION_NOT_SUPPORTED"},
    {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID"},
    {CKR_KEY_SIZE_RANGE, "CKR_KEY_SIZE_RANGE"},
    {CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT"},
    {CKR_KEY_NOT_NEEDED, "CKR_KEY_NOT_NEEDED"},
    {CKR_KEY_CHANGED, "CKR_KEY_CHANGED"},
    {CKR_KEY_NEEDED, "CKR_KEY_NEEDED"},
    {CKR_KEY_INDIGESTIBLE, "CKR_KEY_INDIGESTIBLE"},
    {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED"},
    {CKR_KEY_NOT_WRAPPABLE, "CKR_KEY_NOT_WRAPPABLE"},
    {CKR_KEY_UNEXTRACTABLE, "CKR_KEY_UNEXTRACTABLE"},
    {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
    {CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID"},
    {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID"},
    {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE"},
    {CKR_OPERATION_NOT_INITIALIZED, "CKR_OPERATION_NOT_INITIALIZED"},
    {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
    {CKR_PIN_INVALID, "CKR_PIN_INVALID"},
    {CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE"},
    {CKR_PIN_EXPIRED, "CKR_PIN_EXPIRED"},
    {CKR_PIN_LOCKED, "CKR_PIN_LOCKED"},
    {CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED"},
    {CKR_SESSION_COUNT, "CKR_SESSION_COUNT"},
    {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
    {CKR_SESSION_PARALLEL_NOT_SUPPORTED, "CKR_SESSION_PARALLEL_NOT_SUPPORTED"},
    {CKR_SESSION_READ_ONLY, "CKR_SESSION_READ_ONLY"},
    {CKR_SESSION_EXISTS, "CKR_SESSION_EXISTS"},
    {CKR_SESSION_READ_ONLY_EXISTS, "CKR_SESSION_READ_ONLY_EXISTS"},
    {CKR_SESSION_READ_WRITE_SO_EXISTS, "CKR_SESSION_READ_WRITE_SO_EXISTS"},
    {CKR_SIGNATURE_INVALID, "CKR_SIGNATURE_INVALID"},
    {CKR_SIGNATURE_LEN_RANGE, "CKR_SIGNATURE_LEN_RANGE"},
    {CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE"},
    {CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT"},
    {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"},
    {CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED"},
    {CKR_TOKEN_WRITE_PROTECTED, "CKR_TOKEN_WRITE_PROTECTED"},
    {CKR_UNWRAPPING_KEY_HANDLE_INVALID, "CKR_UNWRAPPING_KEY_HANDLE_INVALID"},
    {CKR_UNWRAPPING_KEY_SIZE_RANGE, "CKR_UNWRAPPING_KEY_SIZE_RANGE"},
    {CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT, "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT"},
    {CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN"},
    {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
    {CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED"},
    {CKR_USER_TYPE_INVALID, "CKR_USER_TYPE_INVALID"},
    {CKR_USER_ANOTHER_ALREADY_LOGGED_IN, "CKR_USER_ANOTHER_ALREADY_LOGGED_IN"},
    {CKR_USER_TOO_MANY_TYPES, "CKR_USER_TOO_MANY_TYPES"},
    {CKR_WRAPPED_KEY_INVALID, "CKR_WRAPPED_KEY_INVALID"},
    {CKR_WRAPPED_KEY_LEN_RANGE, "CKR_WRAPPED_KEY_LEN_RANGE"},
    {CKR_WRAPPING_KEY_HANDLE_INVALID, "CKR_WRAPPING_KEY_HANDLE_INVALID"},
    {CKR_WRAPPING_KEY_SIZE_RANGE, "CKR_WRAPPING_KEY_SIZE_RANGE"},
    {CKR_WRAPPING_KEY_TYPE_INCONSISTENT, "CKR_WRAPPING_KEY_TYPE_INCONSISTENT"},
    {CKR_RANDOM_SEED_NOT_SUPPORTED, "CKR_RANDOM_SEED_NOT_SUPPORTED"},
    {CKR_RANDOM_NO_RNG, "CKR_RANDOM_NO_RNG"},
    {CKR_DOMAIN_PARAMS_INVALID, "CKR_DOMAIN_PARAMS_INVALID"},
    {CKR_CURVE_NOT_SUPPORTED, "CKR_CURVE_NOT_SUPPORTED"},
    {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL"},
    {CKR_SAVED_STATE_INVALID, "CKR_SAVED_STATE_INVALID"},
    {CKR_INFORMATION_SENSITIVE, "CKR_INFORMATION_SENSITIVE"},
    {CKR_STATE_UNSAVEABLE, "CKR_STATE_UNSAVEABLE"},
    {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"},
    {CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED"},
    {CKR_MUTEX_BAD, "CKR_MUTEX_BAD"},
    {CKR_MUTEX_NOT_LOCKED, "CKR_MUTEX_NOT_LOCKED"},
    {CKR_NEW_PIN_MODE, "CKR_NEW_PIN_MODE"},
    {CKR_NEXT_OTP, "CKR_NEXT_OTP"},
    {CKR_EXCEEDED_MAX_ITERATIONS, "CKR_EXCEEDED_MAX_ITERATIONS"},
    {CKR_FIPS_SELF_TEST_FAILED, "CKR_FIPS_SELF_TEST_FAILED"},
    {CKR_LIBRARY_LOAD_FAILED, "CKR_LIBRARY_LOAD_FAILED"},
    {CKR_PIN_TOO_WEAK, "CKR_PIN_TOO_WEAK"},
    {CKR_PUBLIC_KEY_INVALID, "CKR_PUBLIC_KEY_INVALID"},
    {CKR_FUNCTION_REJECTED, "CKR_FUNCTION_REJECTED"},
};

const char *p11_rv_name(CK_RV rv) {
  for (size_t i = 0; i < sizeof rv_names / sizeof rv_names[0]; i++)
    if (rv_names[i].rv == rv) return rv_names[i].name;
  if (rv & CKR_VENDOR_DEFINED) return "CKR_VENDOR_DEFINED";
  return "CKR_UNKNOWN";
}

kerr_code p11_rv_to_kerr(CK_RV rv) {
  switch (rv) {
    case CKR_OK:
      return KERR_OK;
    case CKR_PIN_INCORRECT:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_EXPIRED:
    case CKR_PIN_LOCKED:
    case CKR_PIN_TOO_WEAK:
      return KERR_ACCESS_DENIED;
    case CKR_USER_ALREADY_LOGGED_IN:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_USER_PIN_NOT_INITIALIZED:
    case CKR_USER_ANOTHER_ALREADY_LOGGED_IN:
    case CKR_USER_TOO_MANY_TYPES:
    case CKR_SESSION_READ_WRITE_SO_EXISTS:
    case CKR_SESSION_READ_ONLY_EXISTS:
      return KERR_INVALID_STATE;
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_DEVICE_ERROR:
    case CKR_DEVICE_MEMORY:
    case CKR_DEVICE_REMOVED:
    case CKR_SESSION_CLOSED:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SLOT_ID_INVALID:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
      return KERR_KEY_UNAVAILABLE;
    case CKR_ENCRYPTED_DATA_INVALID:
    case CKR_ENCRYPTED_DATA_LEN_RANGE:
      return KERR_INVALID_CIPHERTEXT;
    case CKR_OBJECT_HANDLE_INVALID:
    case CKR_KEY_HANDLE_INVALID:
      return KERR_NOT_FOUND;
    case CKR_SESSION_COUNT:
      return KERR_LIMIT_EXCEEDED;
    default:
      return KERR_INTERNAL;
  }
}

void p11_err_clear(p11_err *err) {
  if (err) {
    kerr_clear(&err->e);
    err->rv = CKR_OK;
  }
}

/* A failure reported by the module: the message names the call and the CKR_
 * constant only, so no argument (PIN, data) can leak into it. */
static kerr_code fail_rv(p11_err *err, const char *function, CK_RV rv) {
  kerr_code code = p11_rv_to_kerr(rv);
  if (code == KERR_OK) code = KERR_INTERNAL;
  if (!err) return code;
  err->rv = rv;
  return kerr_set(&err->e, code, "PKCS#11 %s failed: %s (0x%lx)", function, p11_rv_name(rv),
                  (unsigned long)rv);
}

/* A failure decided by this layer (bad argument, bound, memory). */
static kerr_code refuse(p11_err *err, kerr_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kerr_code refuse(p11_err *err, kerr_code code, const char *fmt, ...) {
  if (!err) return code;
  va_list ap;
  err->rv = CKR_OK;
  err->e.code = code;
  va_start(ap, fmt);
  vsnprintf(err->e.msg, sizeof err->e.msg, fmt, ap);
  va_end(ap);
  return code;
}

/* ---- argument checks ---------------------------------------------------- */

static int printable(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) return 0;
  return 1;
}

static kerr_code check_label(const char *label, p11_err *err) {
  size_t n = label ? strnlen(label, P11_LABEL_MAX + 1) : 0;
  if (n == 0 || n > P11_LABEL_MAX || !printable(label, n) || label[n - 1] == ' ')
    return refuse(err, KERR_VALIDATION,
                  "token label must be 1 to %d printable ASCII characters without trailing spaces",
                  P11_LABEL_MAX);
  return KERR_OK;
}

static kerr_code check_pin(const char *pin, const char *what, p11_err *err) {
  size_t n = pin ? strnlen(pin, P11_PIN_MAX + 1) : 0;
  if (n < P11_PIN_MIN || n > P11_PIN_MAX)
    return refuse(err, KERR_VALIDATION, "%s must be %d to %d characters", what, P11_PIN_MIN,
                  P11_PIN_MAX);
  return KERR_OK;
}

static kerr_code check_id(const char *id, p11_err *err) {
  size_t n = id ? strnlen(id, P11_ID_MAX + 1) : 0;
  if (n == 0 || n > P11_ID_MAX || !printable(id, n))
    return refuse(err, KERR_VALIDATION, "key id must be 1 to %d printable ASCII characters",
                  P11_ID_MAX);
  return KERR_OK;
}

/* ---- modules ------------------------------------------------------------ */

struct p11_module {
  char *path; /* realpath, the registry key */
  void *dl;
  CK_FUNCTION_LIST_PTR fn;
  int initialized_by_us;
  unsigned refs;
  struct p11_module *next;
  /* The gate that makes C_Finalize + C_Initialize safe (p11_module_reinitialize).
   * Every module call runs inside it: a module-level call for its duration, a
   * session from acquire to release.  A reinitialization closes the gate to
   * newcomers, waits for `users` to drain, and bumps `epoch`, so tokens know
   * that every handle they kept died with the old initialization. */
  pthread_mutex_t gate_lock;
  pthread_cond_t gate_changed;   /* CLOCK_MONOTONIC */
  unsigned long users;
  int reinitializing;
  unsigned long epoch;
  /* Held, inside the gate, from the free-slot lookup and label check to the
   * end of C_InitToken + C_InitPIN: two threads of this process can then
   * neither initialize the same free slot nor give two tokens one label. */
  pthread_mutex_t init_lock;
};

/* Process-wide registry: PKCS#11 allows one C_Initialize per module per
 * process, so every user of a path must share one handle. */
static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static p11_module *modules;

/* The functions this layer calls; a module missing one is refused at load
 * rather than crashing on first use. */
static int function_list_complete(const CK_FUNCTION_LIST *f) {
  return f->C_Initialize && f->C_Finalize && f->C_GetSlotList && f->C_GetTokenInfo &&
         f->C_InitToken && f->C_InitPIN && f->C_SetPIN && f->C_OpenSession &&
         f->C_CloseSession && f->C_Login && f->C_Logout && f->C_GenerateKey &&
         f->C_FindObjectsInit && f->C_FindObjects && f->C_FindObjectsFinal &&
         f->C_DestroyObject && f->C_GetAttributeValue && f->C_EncryptInit && f->C_Encrypt &&
         f->C_DecryptInit && f->C_Decrypt && f->C_GenerateRandom && f->C_WrapKey &&
         f->C_UnwrapKey && f->C_GetSessionInfo && f->C_GenerateKeyPair && f->C_DeriveKey;
}

static void gate_init(p11_module *m) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&m->gate_lock, NULL);
  pthread_mutex_init(&m->init_lock, NULL);
  pthread_cond_init(&m->gate_changed, &ca);
  pthread_condattr_destroy(&ca);
}

static void gate_destroy(p11_module *m) {
  pthread_cond_destroy(&m->gate_changed);
  pthread_mutex_destroy(&m->gate_lock);
  pthread_mutex_destroy(&m->init_lock);
}

static void deadline_after_ms(struct timespec *ts, long ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

/* Enter the module's gate, waiting while a reinitialization runs: until the
 * CLOCK_MONOTONIC `deadline`, or as long as it takes when it is NULL (a
 * reinitialization's own wait is bounded, so that is bounded too).
 * KERR_DEPENDENCY_TIMEOUT when the wait ran out, nothing entered.  A thread
 * inside the gate must not enter it again (a pending reinitialization would
 * wait for it while it waits for the reinitialization). */
static kerr_code gate_enter(p11_module *m, const struct timespec *deadline, p11_err *err) {
  pthread_mutex_lock(&m->gate_lock);
  while (m->reinitializing) {
    if (!deadline) {
      pthread_cond_wait(&m->gate_changed, &m->gate_lock);
    } else if (pthread_cond_timedwait(&m->gate_changed, &m->gate_lock, deadline) == ETIMEDOUT &&
               m->reinitializing) {
      pthread_mutex_unlock(&m->gate_lock);
      return refuse(err, KERR_DEPENDENCY_TIMEOUT,
                    "PKCS#11 module is being reinitialized and did not finish in time");
    }
  }
  m->users++;
  pthread_mutex_unlock(&m->gate_lock);
  return KERR_OK;
}

static void gate_leave(p11_module *m) {
  pthread_mutex_lock(&m->gate_lock);
  if (--m->users == 0) pthread_cond_broadcast(&m->gate_changed);
  pthread_mutex_unlock(&m->gate_lock);
}

/* The current epoch; stable while the caller is inside the gate. */
static unsigned long gate_epoch(p11_module *m) {
  pthread_mutex_lock(&m->gate_lock);
  unsigned long epoch = m->epoch;
  pthread_mutex_unlock(&m->gate_lock);
  return epoch;
}

kerr_code p11_module_load(const char *path, p11_module **out, p11_err *err) {
  kerr_code rc = KERR_OK;
  p11_module *m = NULL;
  char resolved[PATH_MAX];
  *out = NULL;
  p11_err_clear(err);
  if (!path || path[0] != '/' || strnlen(path, PATH_MAX) >= PATH_MAX)
    return refuse(err, KERR_VALIDATION, "PKCS#11 module path must be an absolute path");
  if (!realpath(path, resolved))
    return refuse(err, KERR_NOT_FOUND, "PKCS#11 module %s: %s", path, strerror(errno));

  pthread_mutex_lock(&modules_lock);
  for (p11_module *it = modules; it; it = it->next) {
    if (strcmp(it->path, resolved) == 0) {
      it->refs++;
      *out = it;
      goto out;
    }
  }
  m = calloc(1, sizeof *m);
  if (!m || !(m->path = strdup(resolved))) {
    rc = refuse(err, KERR_INTERNAL, "out of memory loading a PKCS#11 module");
    goto out;
  }
  gate_init(m);
  m->dl = dlopen(resolved, RTLD_NOW | RTLD_LOCAL);
  if (!m->dl) {
    const char *why = dlerror();
    rc = refuse(err, KERR_INTERNAL, "PKCS#11 module %s cannot be loaded: %s", resolved,
                why ? why : "unknown error");
    goto out;
  }
  CK_C_GetFunctionList get_list;
  /* POSIX blesses this conversion of dlsym's result. */
  *(void **)&get_list = dlsym(m->dl, "C_GetFunctionList");
  if (!get_list) {
    rc = refuse(err, KERR_INTERNAL, "%s is not a PKCS#11 module (no C_GetFunctionList)", resolved);
    goto out;
  }
  CK_RV rv = get_list(&m->fn);
  if (rv != CKR_OK) {
    rc = fail_rv(err, "C_GetFunctionList", rv);
    goto out;
  }
  if (!m->fn || m->fn->version.major != 2 || !function_list_complete(m->fn)) {
    rc = refuse(err, KERR_INTERNAL, "%s returned an unusable PKCS#11 v2 function list", resolved);
    goto out;
  }
  CK_C_INITIALIZE_ARGS init_args;
  memset(&init_args, 0, sizeof init_args);
  init_args.flags = CKF_OS_LOCKING_OK;
  rv = m->fn->C_Initialize(&init_args);
  if (rv == CKR_OK) {
    m->initialized_by_us = 1;
  } else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    rc = fail_rv(err, "C_Initialize", rv);
    goto out;
  }
  m->refs = 1;
  m->next = modules;
  modules = m;
  *out = m;
  m = NULL;
out:
  pthread_mutex_unlock(&modules_lock);
  if (m) {
    if (m->dl) dlclose(m->dl);
    if (m->path) gate_destroy(m);
    free(m->path);
    free(m);
  }
  return rc;
}

void p11_module_release(p11_module *mod) {
  if (!mod) return;
  pthread_mutex_lock(&modules_lock);
  if (--mod->refs > 0) {
    pthread_mutex_unlock(&modules_lock);
    return;
  }
  for (p11_module **pp = &modules; *pp; pp = &(*pp)->next) {
    if (*pp == mod) {
      *pp = mod->next;
      break;
    }
  }
  if (mod->initialized_by_us) mod->fn->C_Finalize(NULL);
  dlclose(mod->dl);
  pthread_mutex_unlock(&modules_lock);
  gate_destroy(mod);
  free(mod->path);
  free(mod);
}

const CK_FUNCTION_LIST *p11_module_functions(const p11_module *mod) { return mod->fn; }

unsigned long p11_module_epoch(p11_module *mod) { return gate_epoch(mod); }

int p11_rv_module_state(CK_RV rv) {
  switch (rv) {
    case CKR_GENERAL_ERROR:
    case CKR_FUNCTION_FAILED:
    case CKR_DEVICE_ERROR:
    case CKR_DEVICE_MEMORY:
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_SLOT_ID_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
      return 1;
    default:
      return 0;
  }
}

kerr_code p11_module_reinitialize(p11_module *mod, unsigned long seen_epoch, long wait_ms,
                                  p11_err *err) {
  struct timespec deadline;
  CK_C_INITIALIZE_ARGS init_args;
  CK_RV rv;
  p11_err_clear(err);
  if (wait_ms < P11_POOL_WAIT_MIN_MS || wait_ms > P11_POOL_WAIT_MAX_MS)
    return refuse(err, KERR_VALIDATION, "reinitialization wait must be %d to %d ms",
                  P11_POOL_WAIT_MIN_MS, P11_POOL_WAIT_MAX_MS);
  /* Finalizing would pull the module from under the library that initialized it. */
  if (!mod->initialized_by_us)
    return refuse(err, KERR_INVALID_STATE,
                  "PKCS#11 module %s was initialized by another library in this process; "
                  "kmsd does not reinitialize it",
                  mod->path);
  deadline_after_ms(&deadline, wait_ms);
  pthread_mutex_lock(&mod->gate_lock);
  /* Another thread is at it already: its outcome is ours. */
  while (mod->reinitializing)
    if (pthread_cond_timedwait(&mod->gate_changed, &mod->gate_lock, &deadline) == ETIMEDOUT &&
        mod->reinitializing) {
      pthread_mutex_unlock(&mod->gate_lock);
      return refuse(err, KERR_DEPENDENCY_TIMEOUT,
                    "PKCS#11 module is being reinitialized by another thread; gave up after "
                    "%ld ms",
                    wait_ms);
    }
  if (mod->epoch != seen_epoch) {
    /* Reinitialized since the caller's handles were made: nothing left to do. */
    pthread_mutex_unlock(&mod->gate_lock);
    return KERR_OK;
  }
  mod->reinitializing = 1;
  while (mod->users > 0)
    if (pthread_cond_timedwait(&mod->gate_changed, &mod->gate_lock, &deadline) == ETIMEDOUT &&
        mod->users > 0) {
      unsigned long busy = mod->users;
      mod->reinitializing = 0;
      pthread_cond_broadcast(&mod->gate_changed);
      pthread_mutex_unlock(&mod->gate_lock);
      return refuse(err, KERR_DEPENDENCY_TIMEOUT,
                    "PKCS#11 module not reinitialized: %lu call(s) or session(s) still busy "
                    "after %ld ms",
                    busy, wait_ms);
    }
  /* Nobody is inside and newcomers wait: the module is ours alone.  The
   * lock is let go so that waiting threads can time out meanwhile. */
  pthread_mutex_unlock(&mod->gate_lock);
  /* Its answer does not matter: CKR_CRYPTOKI_NOT_INITIALIZED after an
   * earlier failed C_Initialize is the state we want anyway. */
  mod->fn->C_Finalize(NULL);
  memset(&init_args, 0, sizeof init_args);
  init_args.flags = CKF_OS_LOCKING_OK;
  rv = mod->fn->C_Initialize(&init_args);
  pthread_mutex_lock(&mod->gate_lock);
  /* Even a failed C_Initialize ended every handle of the old epoch. */
  mod->epoch++;
  mod->reinitializing = 0;
  pthread_cond_broadcast(&mod->gate_changed);
  pthread_mutex_unlock(&mod->gate_lock);
  if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED)
    return fail_rv(err, "C_Initialize", rv);
  return KERR_OK;
}

/* ---- slots and tokens --------------------------------------------------- */

/* C_GetSlotList with the two-call size query, bounded; *slots is heap memory.
 * A token inserted between the two calls gives CKR_BUFFER_TOO_SMALL: ask again. */
static kerr_code slot_list(p11_module *mod, CK_SLOT_ID **slots, CK_ULONG *count, p11_err *err) {
  *slots = NULL;
  *count = 0;
  for (int attempt = 0; attempt < 3; attempt++) {
    CK_ULONG n = 0;
    CK_RV rv = mod->fn->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK) return fail_rv(err, "C_GetSlotList", rv);
    if (n > P11_MAX_SLOTS)
      return refuse(err, KERR_INTERNAL, "PKCS#11 module reports %lu slots (limit %d)",
                    (unsigned long)n, P11_MAX_SLOTS);
    CK_SLOT_ID *list = calloc(n ? n : 1, sizeof *list);
    if (!list) return refuse(err, KERR_INTERNAL, "out of memory listing slots");
    CK_ULONG got = n;
    rv = mod->fn->C_GetSlotList(CK_TRUE, list, &got);
    if (rv == CKR_BUFFER_TOO_SMALL) {
      free(list);
      continue;
    }
    if (rv != CKR_OK) {
      free(list);
      return fail_rv(err, "C_GetSlotList", rv);
    }
    if (got > n) {
      free(list);
      return refuse(err, KERR_INTERNAL, "PKCS#11 C_GetSlotList returned more slots than it announced");
    }
    *slots = list;
    *count = got;
    return KERR_OK;
  }
  return refuse(err, KERR_INTERNAL, "PKCS#11 slot list kept changing");
}

/* The token label without its space padding, NUL-terminated. */
static void token_label(const CK_TOKEN_INFO *info, char out[P11_LABEL_MAX + 1]) {
  size_t n = sizeof info->label < P11_LABEL_MAX ? sizeof info->label : P11_LABEL_MAX;
  memcpy(out, info->label, n);
  while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\0')) n--;
  out[n] = '\0';
}

/* p11_find_token inside the gate. */
static kerr_code find_token_in(p11_module *mod, const char *label, CK_SLOT_ID *slot,
                               p11_err *err) {
  CK_SLOT_ID *slots = NULL;
  CK_ULONG count = 0;
  CK_RV unreadable = CKR_OK;
  int found = 0;
  p11_err_clear(err);
  kerr_code rc = check_label(label, err);
  if (rc) return rc;
  rc = slot_list(mod, &slots, &count, err);
  if (rc) goto out;
  for (CK_ULONG i = 0; i < count; i++) {
    CK_TOKEN_INFO info;
    char name[P11_LABEL_MAX + 1];
    CK_RV rv = mod->fn->C_GetTokenInfo(slots[i], &info);
    if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_TOKEN_NOT_RECOGNIZED) continue;
    /* One token in a bad state (SoftHSM2 answers CKR_GENERAL_ERROR for a
     * token it could not write) must not hide the module's other tokens. */
    if (rv != CKR_OK) {
      if (unreadable == CKR_OK) unreadable = rv;
      continue;
    }
    if (!(info.flags & CKF_TOKEN_INITIALIZED)) continue;
    token_label(&info, name);
    if (strcmp(name, label) != 0) continue;
    if (found) {
      rc = refuse(err, KERR_CONFLICT, "more than one PKCS#11 token is labelled \"%s\"", label);
      goto out;
    }
    found = 1;
    *slot = slots[i];
  }
  /* The unreadable token may be the one asked for: say so, not "no such token". */
  if (!found && unreadable != CKR_OK)
    rc = fail_rv(err, "C_GetTokenInfo", unreadable);
  else if (!found)
    rc = refuse(err, KERR_NOT_FOUND, "no PKCS#11 token labelled \"%s\"", label);
out:
  free(slots);
  return rc;
}

/* The wait of module-level calls (slot and token lookups) for a
 * reinitialization in progress. */
static const struct timespec *module_call_deadline(struct timespec *ts) {
  deadline_after_ms(ts, P11_POOL_WAIT_MS);
  return ts;
}

kerr_code p11_find_token(p11_module *mod, const char *label, CK_SLOT_ID *slot, p11_err *err) {
  struct timespec ts;
  p11_err_clear(err);
  kerr_code rc = gate_enter(mod, module_call_deadline(&ts), err);
  if (rc) return rc;
  rc = find_token_in(mod, label, slot, err);
  gate_leave(mod);
  return rc;
}

/* p11_find_free_slot inside the gate. */
static kerr_code find_free_slot_in(p11_module *mod, CK_SLOT_ID *slot, p11_err *err) {
  CK_SLOT_ID *slots = NULL;
  CK_ULONG count = 0;
  kerr_code rc = slot_list(mod, &slots, &count, err);
  if (rc) return rc;
  rc = refuse(err, KERR_NOT_FOUND, "no PKCS#11 slot holds an uninitialized token");
  for (CK_ULONG i = 0; i < count; i++) {
    CK_TOKEN_INFO info;
    CK_RV rv = mod->fn->C_GetTokenInfo(slots[i], &info);
    if (rv != CKR_OK) continue;
    if (!(info.flags & CKF_TOKEN_INITIALIZED)) {
      *slot = slots[i];
      p11_err_clear(err);
      rc = KERR_OK;
      break;
    }
  }
  free(slots);
  return rc;
}

kerr_code p11_find_free_slot(p11_module *mod, CK_SLOT_ID *slot, p11_err *err) {
  struct timespec ts;
  p11_err_clear(err);
  kerr_code rc = gate_enter(mod, module_call_deadline(&ts), err);
  if (rc) return rc;
  rc = find_free_slot_in(mod, slot, err);
  gate_leave(mod);
  return rc;
}

static kerr_code init_token_in(p11_module *mod, const CK_SLOT_ID *slot, const char *label,
                               const char *so_pin, const char *user_pin, CK_SLOT_ID *new_slot,
                               p11_err *err);

kerr_code p11_init_token(p11_module *mod, CK_SLOT_ID slot, const char *label,
                         const char *so_pin, const char *user_pin, CK_SLOT_ID *new_slot,
                         p11_err *err) {
  struct timespec ts;
  p11_err_clear(err);
  kerr_code rc = gate_enter(mod, module_call_deadline(&ts), err);
  if (rc) return rc;
  pthread_mutex_lock(&mod->init_lock);
  rc = init_token_in(mod, &slot, label, so_pin, user_pin, new_slot, err);
  pthread_mutex_unlock(&mod->init_lock);
  gate_leave(mod);
  return rc;
}

kerr_code p11_init_free_token(p11_module *mod, const char *label, const char *so_pin,
                              const char *user_pin, CK_SLOT_ID *new_slot, p11_err *err) {
  struct timespec ts;
  p11_err_clear(err);
  /* One gate entry from the lookup to C_InitToken: a reinitialization in
   * between could renumber the slots, and the id found could then name a
   * token in use (init_token_in refuses that too, as a second line). */
  kerr_code rc = gate_enter(mod, module_call_deadline(&ts), err);
  if (rc) return rc;
  pthread_mutex_lock(&mod->init_lock);
  rc = init_token_in(mod, NULL, label, so_pin, user_pin, new_slot, err);
  pthread_mutex_unlock(&mod->init_lock);
  gate_leave(mod);
  return rc;
}

/* p11_init_token inside the gate with the init lock held; `slot_in` NULL means
 * the first free slot (p11_init_free_token). */
static kerr_code init_token_in(p11_module *mod, const CK_SLOT_ID *slot_in, const char *label,
                               const char *so_pin, const char *user_pin, CK_SLOT_ID *new_slot,
                               p11_err *err) {
  CK_SESSION_HANDLE sh = CK_INVALID_HANDLE;
  CK_SLOT_ID existing, slot = 0;
  CK_TOKEN_INFO info;
  CK_UTF8CHAR padded[32];
  int logged_in = 0;
  CK_RV rv;
  kerr_code rc;
  p11_err_clear(err);
  if ((rc = check_label(label, err)) || (rc = check_pin(so_pin, "SO PIN", err)) ||
      (rc = check_pin(user_pin, "user PIN", err)))
    return rc;
  rc = find_token_in(mod, label, &existing, err);
  if (rc == KERR_OK || rc == KERR_CONFLICT)
    return refuse(err, KERR_ALREADY_EXISTS, "a PKCS#11 token labelled \"%s\" already exists", label);
  if (rc != KERR_NOT_FOUND) return rc;
  p11_err_clear(err);
  if (slot_in) {
    slot = *slot_in;
  } else {
    rc = find_free_slot_in(mod, &slot, err);
    if (rc) return rc;
  }
  /* C_InitToken wipes whatever token the slot holds.  The caller found the
   * slot free, but perhaps in an earlier gate entry: a reinitialization
   * since may have renumbered the slots, and the id may now name another
   * token (HSMs of one cluster share the SO PIN, so C_InitToken would take
   * it).  Look again right before, inside the gate. */
  rv = mod->fn->C_GetTokenInfo(slot, &info);
  if (rv != CKR_OK) return fail_rv(err, "C_GetTokenInfo", rv);
  if (info.flags & CKF_TOKEN_INITIALIZED)
    return refuse(err, KERR_CONFLICT,
                  "PKCS#11 slot %lu holds an initialized token; it is not initialized again",
                  (unsigned long)slot);

  memset(padded, ' ', sizeof padded);
  memcpy(padded, label, strlen(label));
  rv = mod->fn->C_InitToken(slot, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin), padded);
  if (rv != CKR_OK) return fail_rv(err, "C_InitToken", rv);
  rc = find_token_in(mod, label, new_slot, err);
  if (rc) goto out;
  rv = mod->fn->C_OpenSession(*new_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &sh);
  if (rv != CKR_OK) {
    rc = fail_rv(err, "C_OpenSession", rv);
    goto out;
  }
  rv = mod->fn->C_Login(sh, CKU_SO, (CK_UTF8CHAR_PTR)so_pin, strlen(so_pin));
  if (rv != CKR_OK) {
    rc = fail_rv(err, "C_Login(CKU_SO)", rv);
    goto out;
  }
  logged_in = 1;
  rv = mod->fn->C_InitPIN(sh, (CK_UTF8CHAR_PTR)user_pin, strlen(user_pin));
  if (rv != CKR_OK) rc = fail_rv(err, "C_InitPIN", rv);
out:
  if (logged_in) mod->fn->C_Logout(sh);
  if (sh != CK_INVALID_HANDLE) mod->fn->C_CloseSession(sh);
  return rc;
}

/* ---- the session pool --------------------------------------------------- */

struct p11_token {
  p11_module *mod;
  CK_SLOT_ID slot;
  pthread_mutex_t lock;
  pthread_cond_t freed;      /* waits on CLOCK_MONOTONIC: a clock step must not
                                stretch or cut the acquire timeout */
  long acquire_timeout_ms;
  size_t pool_size;
  size_t open_count;         /* pooled sessions open, idle or acquired */
  CK_SESSION_HANDLE *idle;   /* pool_size entries */
  size_t idle_count;
  CK_SESSION_HANDLE anchor;  /* keeps the login alive; not handed out */
  CK_USER_TYPE login_user;   /* CKU_USER, CKU_SO, or (CK_USER_TYPE)-1 */
  unsigned generation;       /* bumped when the login ends (logout, close, reinitialization):
                                older sessions are closed on release, working copies die */
  char label[P11_LABEL_MAX + 1]; /* to find the token again after a reinitialization */
  unsigned long epoch;       /* the module epoch the handles above belong to */
  int slot_stale;            /* `slot` not yet confirmed in this epoch */
};

struct p11_session {
  p11_token *tok;
  CK_SESSION_HANDLE h;
  CK_RV last_rv;     /* last module answer, decides reuse at release */
  int op_active;     /* an Encrypt/Decrypt/Find operation was left open */
  unsigned generation;
};

#define NOBODY ((CK_USER_TYPE)-1)

/* p11_token_open_slot inside the gate. */
static kerr_code open_slot_in(p11_module *mod, CK_SLOT_ID slot, size_t pool_size, p11_token **out,
                              p11_err *err) {
  p11_token *t;
  *out = NULL;
  if (pool_size < 1 || pool_size > P11_POOL_MAX)
    return refuse(err, KERR_VALIDATION, "session pool size must be 1 to %d", P11_POOL_MAX);
  CK_TOKEN_INFO info;
  CK_RV rv = mod->fn->C_GetTokenInfo(slot, &info);
  if (rv != CKR_OK) return fail_rv(err, "C_GetTokenInfo", rv);
  t = calloc(1, sizeof *t);
  if (!t || !(t->idle = calloc(pool_size, sizeof *t->idle))) {
    free(t);
    return refuse(err, KERR_INTERNAL, "out of memory opening a token");
  }
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&t->lock, NULL);
  pthread_cond_init(&t->freed, &ca);
  pthread_condattr_destroy(&ca);
  t->acquire_timeout_ms = P11_POOL_WAIT_MS;
  t->slot = slot;
  t->pool_size = pool_size;
  t->anchor = CK_INVALID_HANDLE;
  t->login_user = NOBODY;
  token_label(&info, t->label);
  t->epoch = mod->epoch; /* stable: we are inside the gate */
  pthread_mutex_lock(&modules_lock);
  mod->refs++;
  pthread_mutex_unlock(&modules_lock);
  t->mod = mod;
  *out = t;
  return KERR_OK;
}

kerr_code p11_token_open_slot(p11_module *mod, CK_SLOT_ID slot, size_t pool_size,
                              p11_token **out, p11_err *err) {
  struct timespec ts;
  *out = NULL;
  p11_err_clear(err);
  kerr_code rc = gate_enter(mod, module_call_deadline(&ts), err);
  if (rc) return rc;
  rc = open_slot_in(mod, slot, pool_size, out, err);
  gate_leave(mod);
  return rc;
}

kerr_code p11_token_open(p11_module *mod, const char *label, size_t pool_size, p11_token **out,
                         p11_err *err) {
  CK_SLOT_ID slot = 0;
  struct timespec ts;
  *out = NULL;
  p11_err_clear(err);
  /* One gate entry for both steps: a reinitialization in between could
   * renumber the slots. */
  kerr_code rc = gate_enter(mod, module_call_deadline(&ts), err);
  if (rc) return rc;
  rc = find_token_in(mod, label, &slot, err);
  if (!rc) rc = open_slot_in(mod, slot, pool_size, out, err);
  gate_leave(mod);
  return rc;
}

/* Close idle sessions and the anchor; the caller holds the lock. */
static void close_pool_locked(p11_token *t) {
  for (size_t i = 0; i < t->idle_count; i++) t->mod->fn->C_CloseSession(t->idle[i]);
  t->open_count -= t->idle_count;
  t->idle_count = 0;
  if (t->anchor != CK_INVALID_HANDLE) t->mod->fn->C_CloseSession(t->anchor);
  t->anchor = CK_INVALID_HANDLE;
  t->generation++;
  pthread_cond_broadcast(&t->freed);
}

/* With the lock held, inside the gate: when the module was reinitialized
 * since this token's handles were made, forget them.  C_Finalize ended every
 * session and the login, and the module may already have handed the same
 * numbers to new sessions of other tokens, so they are dropped, never passed
 * to C_CloseSession or C_Logout.  No session of the old epoch can still be
 * acquired: the reinitialization waited for all of them to be released.
 * Afterwards the slot still has to be confirmed (sync_locked). */
static void forget_stale_locked(p11_token *t) {
  unsigned long epoch = gate_epoch(t->mod);
  if (t->epoch == epoch) return;
  t->open_count -= t->idle_count;
  t->idle_count = 0;
  t->anchor = CK_INVALID_HANDLE;
  t->login_user = NOBODY;
  t->generation++;
  t->epoch = epoch;
  t->slot_stale = 1;
  pthread_cond_broadcast(&t->freed);
}

/* With the lock held, inside the gate: make the handle usable in the
 * module's current epoch.  A module may renumber its slots when initialized
 * again, so the token is found again by its label. */
static kerr_code sync_locked(p11_token *t, p11_err *err) {
  CK_SLOT_ID slot = 0;
  forget_stale_locked(t);
  if (!t->slot_stale) return KERR_OK;
  kerr_code rc = find_token_in(t->mod, t->label, &slot, err);
  if (rc) return rc;
  t->slot = slot;
  t->slot_stale = 0;
  return KERR_OK;
}

void p11_token_close(p11_token *tok) {
  if (!tok) return;
  gate_enter(tok->mod, NULL, NULL);
  pthread_mutex_lock(&tok->lock);
  forget_stale_locked(tok);
  if (tok->login_user != NOBODY && tok->anchor != CK_INVALID_HANDLE)
    tok->mod->fn->C_Logout(tok->anchor);
  close_pool_locked(tok);
  pthread_mutex_unlock(&tok->lock);
  gate_leave(tok->mod);
  pthread_cond_destroy(&tok->freed);
  pthread_mutex_destroy(&tok->lock);
  p11_module_release(tok->mod);
  free(tok->idle);
  free(tok);
}

/* The deadline of a wait for `tok`'s module: the token's acquire timeout. */
static const struct timespec *token_deadline(p11_token *tok, struct timespec *ts) {
  pthread_mutex_lock(&tok->lock);
  long ms = tok->acquire_timeout_ms;
  pthread_mutex_unlock(&tok->lock);
  deadline_after_ms(ts, ms);
  return ts;
}

static kerr_code login_as(p11_token *tok, CK_USER_TYPE user, const char *pin, p11_err *err) {
  struct timespec deadline;
  kerr_code rc = KERR_OK;
  CK_RV rv;
  p11_err_clear(err);
  rc = check_pin(pin, user == CKU_SO ? "SO PIN" : "user PIN", err);
  if (rc) return rc;
  rc = gate_enter(tok->mod, token_deadline(tok, &deadline), err);
  if (rc) return rc;
  pthread_mutex_lock(&tok->lock);
  rc = sync_locked(tok, err);
  if (rc) goto out;
  if (tok->login_user != NOBODY) {
    rc = fail_rv(err, "C_Login", user == tok->login_user ? CKR_USER_ALREADY_LOGGED_IN
                                                         : CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
    goto out;
  }
  if (tok->anchor == CK_INVALID_HANDLE) {
    rv = tok->mod->fn->C_OpenSession(tok->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                     &tok->anchor);
    if (rv != CKR_OK) {
      tok->anchor = CK_INVALID_HANDLE;
      rc = fail_rv(err, "C_OpenSession", rv);
      goto out;
    }
  }
  rv = tok->mod->fn->C_Login(tok->anchor, user, (CK_UTF8CHAR_PTR)pin, strlen(pin));
  if (rv != CKR_OK) {
    rc = fail_rv(err, user == CKU_SO ? "C_Login(CKU_SO)" : "C_Login(CKU_USER)", rv);
    goto out;
  }
  tok->login_user = user;
out:
  pthread_mutex_unlock(&tok->lock);
  gate_leave(tok->mod);
  return rc;
}

kerr_code p11_token_login(p11_token *tok, const char *pin, p11_err *err) {
  return login_as(tok, CKU_USER, pin, err);
}

kerr_code p11_token_login_so(p11_token *tok, const char *so_pin, p11_err *err) {
  return login_as(tok, CKU_SO, so_pin, err);
}

kerr_code p11_token_logout(p11_token *tok, p11_err *err) {
  kerr_code rc = KERR_OK;
  p11_err_clear(err);
  /* No deadline: logging out must not fail, and a reinitialization's own
   * wait is bounded. */
  gate_enter(tok->mod, NULL, NULL);
  pthread_mutex_lock(&tok->lock);
  forget_stale_locked(tok);
  if (tok->login_user != NOBODY && tok->anchor != CK_INVALID_HANDLE) {
    CK_RV rv = tok->mod->fn->C_Logout(tok->anchor);
    /* Not logged in (the module lost it) is the state we want anyway. */
    if (rv != CKR_OK && rv != CKR_USER_NOT_LOGGED_IN) rc = fail_rv(err, "C_Logout", rv);
  }
  tok->login_user = NOBODY;
  close_pool_locked(tok);
  pthread_mutex_unlock(&tok->lock);
  gate_leave(tok->mod);
  return rc;
}

int p11_token_logged_in(p11_token *tok) {
  pthread_mutex_lock(&tok->lock);
  /* A reinitialization since the login ended it. */
  int yes = tok->login_user == CKU_USER && tok->epoch == gate_epoch(tok->mod);
  pthread_mutex_unlock(&tok->lock);
  return yes;
}

kerr_code p11_token_recover(p11_token *tok, p11_err *err) {
  pthread_mutex_lock(&tok->lock);
  unsigned long seen = tok->epoch;
  long wait_ms = tok->acquire_timeout_ms;
  pthread_mutex_unlock(&tok->lock);
  return p11_module_reinitialize(tok->mod, seen, wait_ms, err);
}

kerr_code p11_token_set_pin(p11_token *tok, const char *old_pin, const char *new_pin,
                            p11_err *err) {
  struct timespec deadline;
  kerr_code rc;
  p11_err_clear(err);
  if ((rc = check_pin(old_pin, "current PIN", err)) || (rc = check_pin(new_pin, "new PIN", err)))
    return rc;
  rc = gate_enter(tok->mod, token_deadline(tok, &deadline), err);
  if (rc) return rc;
  pthread_mutex_lock(&tok->lock);
  forget_stale_locked(tok);
  if (tok->login_user != CKU_USER || tok->anchor == CK_INVALID_HANDLE) {
    rc = fail_rv(err, "C_SetPIN", CKR_USER_NOT_LOGGED_IN);
  } else {
    CK_RV rv = tok->mod->fn->C_SetPIN(tok->anchor, (CK_UTF8CHAR_PTR)old_pin, strlen(old_pin),
                                      (CK_UTF8CHAR_PTR)new_pin, strlen(new_pin));
    if (rv != CKR_OK) rc = fail_rv(err, "C_SetPIN", rv);
  }
  pthread_mutex_unlock(&tok->lock);
  gate_leave(tok->mod);
  return rc;
}

CK_SLOT_ID p11_token_slot(const p11_token *tok) { return tok->slot; }

size_t p11_token_open_sessions(p11_token *tok) {
  pthread_mutex_lock(&tok->lock);
  size_t n = tok->open_count;
  pthread_mutex_unlock(&tok->lock);
  return n;
}

kerr_code p11_token_set_acquire_timeout(p11_token *tok, long ms, p11_err *err) {
  p11_err_clear(err);
  if (ms < P11_POOL_WAIT_MIN_MS || ms > P11_POOL_WAIT_MAX_MS)
    return refuse(err, KERR_VALIDATION, "session wait must be %d to %d ms", P11_POOL_WAIT_MIN_MS,
                  P11_POOL_WAIT_MAX_MS);
  pthread_mutex_lock(&tok->lock);
  tok->acquire_timeout_ms = ms;
  pthread_mutex_unlock(&tok->lock);
  return KERR_OK;
}

/* p11_session_acquire, and p11_session_acquire_as when `want` is not NOBODY. */
static kerr_code acquire(p11_token *tok, CK_USER_TYPE want, p11_session **out, p11_err *err) {
  struct timespec deadline;
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
  int must_open = 0;
  unsigned generation;
  *out = NULL;
  p11_err_clear(err);
  p11_session *s = calloc(1, sizeof *s);
  if (!s) return refuse(err, KERR_INTERNAL, "out of memory acquiring a session");
  pthread_mutex_lock(&tok->lock);
  long wait_ms = tok->acquire_timeout_ms;
  pthread_mutex_unlock(&tok->lock);
  /* One deadline for both waits: a reinitialization, then a free session.
   * The session stays inside the module's gate until it is released. */
  deadline_after_ms(&deadline, wait_ms);
  kerr_code rc = gate_enter(tok->mod, &deadline, err);
  if (rc) {
    free(s);
    return rc;
  }
  pthread_mutex_lock(&tok->lock);
  rc = sync_locked(tok, err);
  if (rc) {
    pthread_mutex_unlock(&tok->lock);
    gate_leave(tok->mod);
    free(s);
    return rc;
  }
  for (;;) {
    if (tok->idle_count > 0) {
      h = tok->idle[--tok->idle_count];
      break;
    }
    if (tok->open_count < tok->pool_size) {
      tok->open_count++; /* reserve the place; the module call runs unlocked */
      must_open = 1;
      break;
    }
    if (pthread_cond_timedwait(&tok->freed, &tok->lock, &deadline) == ETIMEDOUT) {
      pthread_mutex_unlock(&tok->lock);
      gate_leave(tok->mod);
      free(s);
      return refuse(err, KERR_DEPENDENCY_TIMEOUT,
                    "all %zu PKCS#11 sessions of the token stayed busy for %ld ms",
                    tok->pool_size, wait_ms);
    }
  }
  /* Checked where the session is taken, with the lock held and inside the
   * gate: no reinitialization can end the login from here until release. */
  if (want != NOBODY && tok->login_user != want) {
    if (must_open)
      tok->open_count--;
    else
      tok->idle[tok->idle_count++] = h;
    pthread_cond_signal(&tok->freed);
    pthread_mutex_unlock(&tok->lock);
    gate_leave(tok->mod);
    free(s);
    if (err) err->rv = CKR_USER_NOT_LOGGED_IN;
    return err ? kerr_set(&err->e, KERR_INVALID_STATE,
                          "PKCS#11 token \"%s\" is not logged in as the %s (a logout or a "
                          "reinitialization of its module ended the login)",
                          tok->label, want == CKU_SO ? "security officer" : "user")
               : KERR_INVALID_STATE;
  }
  generation = tok->generation;
  pthread_mutex_unlock(&tok->lock);

  if (must_open) {
    CK_RV rv = tok->mod->fn->C_OpenSession(tok->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL,
                                           NULL, &h);
    if (rv != CKR_OK) {
      pthread_mutex_lock(&tok->lock);
      tok->open_count--;
      pthread_cond_signal(&tok->freed);
      pthread_mutex_unlock(&tok->lock);
      gate_leave(tok->mod);
      free(s);
      return fail_rv(err, "C_OpenSession", rv);
    }
  }
  s->tok = tok;
  s->h = h;
  s->generation = generation;
  *out = s;
  return KERR_OK;
}

kerr_code p11_session_acquire(p11_token *tok, p11_session **out, p11_err *err) {
  return acquire(tok, NOBODY, out, err);
}

kerr_code p11_session_acquire_as(p11_token *tok, CK_USER_TYPE user, p11_session **out,
                                 p11_err *err) {
  *out = NULL;
  p11_err_clear(err);
  if (user != CKU_USER && user != CKU_SO)
    return refuse(err, KERR_VALIDATION, "a session can be asked for as CKU_USER or CKU_SO only");
  return acquire(tok, user, out, err);
}

/* Answers after which a session must not be handed out again. */
static int session_fatal(CK_RV rv) {
  switch (rv) {
    case CKR_SESSION_CLOSED:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_DEVICE_ERROR:
    case CKR_DEVICE_MEMORY:
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
    case CKR_GENERAL_ERROR:
    case CKR_OPERATION_ACTIVE:
      return 1;
    default:
      return 0;
  }
}

void p11_session_release(p11_session *s) {
  if (!s) return;
  p11_token *t = s->tok;
  pthread_mutex_lock(&t->lock);
  if (s->op_active || session_fatal(s->last_rv) || s->generation != t->generation ||
      t->idle_count >= t->pool_size) {
    t->mod->fn->C_CloseSession(s->h);
    t->open_count--;
  } else {
    t->idle[t->idle_count++] = s->h;
  }
  pthread_cond_signal(&t->freed);
  pthread_mutex_unlock(&t->lock);
  gate_leave(t->mod);
  free(s);
}

CK_SESSION_HANDLE p11_session_handle(const p11_session *s) { return s->h; }

/* Record a module answer on the session (it decides reuse) and turn a failure
 * into a kerr. */
static kerr_code check_rv(p11_session *s, p11_err *err, const char *function, CK_RV rv) {
  s->last_rv = rv;
  if (rv == CKR_OK) return KERR_OK;
  return fail_rv(err, function, rv);
}

#define FN(s) ((s)->tok->mod->fn)

/* ---- keys --------------------------------------------------------------- */

static CK_BBOOL ck_true = CK_TRUE, ck_false = CK_FALSE;

/* The secret token keys whose attribute `type` (CKA_ID or CKA_LABEL) is
 * `value`: up to `max` of them in found[], how many in *count.  Token
 * objects only: a session object (a working copy of a key) carries its
 * original's id and label and must not count as a second key. */
static kerr_code find_by_attr_max(p11_session *s, CK_ATTRIBUTE_TYPE type, const char *value,
                                  CK_OBJECT_HANDLE *found, CK_ULONG max, CK_ULONG *count,
                                  p11_err *err) {
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_BBOOL on_token = CK_TRUE;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof cls},
      {CKA_TOKEN, &on_token, sizeof on_token},
      {type, (void *)value, strlen(value)},
  };
  *count = 0;
  kerr_code rc = check_rv(s, err, "C_FindObjectsInit", FN(s)->C_FindObjectsInit(s->h, tmpl, 3));
  if (rc) return rc;
  s->op_active = 1;
  CK_ULONG n = 0;
  rc = check_rv(s, err, "C_FindObjects", FN(s)->C_FindObjects(s->h, found, max, &n));
  CK_RV rv = FN(s)->C_FindObjectsFinal(s->h);
  if (rv == CKR_OK) s->op_active = 0;
  if (rc) return rc;
  if (rv != CKR_OK) return check_rv(s, err, "C_FindObjectsFinal", rv);
  if (n > max) return refuse(err, KERR_INTERNAL, "PKCS#11 C_FindObjects returned too many handles");
  *count = n;
  return KERR_OK;
}

static kerr_code find_by_attr(p11_session *s, CK_ATTRIBUTE_TYPE type, const char *value,
                              CK_OBJECT_HANDLE found[2], CK_ULONG *count, p11_err *err) {
  return find_by_attr_max(s, type, value, found, 2, count, err);
}

static kerr_code find_by_id(p11_session *s, const char *id, CK_OBJECT_HANDLE found[2],
                            CK_ULONG *count, p11_err *err) {
  return find_by_attr(s, CKA_ID, id, found, count, err);
}

#define RECHECK_MAX_US 128000 /* searches after 1, 2, 4 ... 128 ms */
#define MATCHES_MAX 4

/* Keep in keep[0..*nkeep) only the handles that are also in seen[0..nseen). */
static void keep_common(CK_OBJECT_HANDLE *keep, CK_ULONG *nkeep, const CK_OBJECT_HANDLE *seen,
                        CK_ULONG nseen) {
  CK_ULONG kept = 0;
  for (CK_ULONG i = 0; i < *nkeep; i++)
    for (CK_ULONG j = 0; j < nseen; j++)
      if (keep[i] == seen[j]) {
        keep[kept++] = keep[i];
        break;
      }
  *nkeep = kept;
}

/* The one secret token key whose attribute `type` is `value` (`how` names
 * the attribute in messages: "with id", "labelled").  A second match may be
 * a session object still being made: SoftHSM2's C_CopyObject copies every
 * attribute of the original, CKA_TOKEN true included, before it applies the
 * copy's template, so a search in another thread sees a second token key for
 * a moment.  Each copy is a new object with a new handle, while the key (and
 * a real twin) keep theirs; so the search is made again, and the handles
 * found every time are what is really there.  One left: the key.  Two or
 * more through every search over about a quarter of a second: the attribute
 * really is carried twice (KERR_CONFLICT). */
static kerr_code find_one(p11_session *s, CK_ATTRIBUTE_TYPE type, const char *value,
                          const char *how, CK_OBJECT_HANDLE *out, p11_err *err) {
  CK_OBJECT_HANDLE found[MATCHES_MAX], every[MATCHES_MAX];
  CK_ULONG n, n_every = 0;
  for (long wait_us = 1000;; wait_us *= 2) {
    kerr_code rc = find_by_attr_max(s, type, value, found, MATCHES_MAX, &n, err);
    if (rc) return rc;
    if (n == 0) return refuse(err, KERR_NOT_FOUND, "no key %s %s in the token", how, value);
    if (n_every == 0) {
      memcpy(every, found, n * sizeof *found);
      n_every = n;
    } else {
      keep_common(every, &n_every, found, n);
      if (n_every == 0) { /* the key itself was replaced meanwhile: start again from here */
        memcpy(every, found, n * sizeof *found);
        n_every = n;
      }
    }
    if (n_every == 1) break;
    if (wait_us > RECHECK_MAX_US)
      return refuse(err, KERR_CONFLICT, "more than one key %s %s in the token", how, value);
    struct timespec pause = {0, wait_us * 1000};
    nanosleep(&pause, NULL);
  }
  *out = every[0];
  return KERR_OK;
}

kerr_code p11_key_find(p11_session *s, const char *id, CK_OBJECT_HANDLE *out, p11_err *err) {
  p11_err_clear(err);
  kerr_code rc = check_id(id, err);
  if (rc) return rc;
  return find_one(s, CKA_ID, id, "with id", out, err);
}

static kerr_code refuse_existing_id(p11_session *s, const char *id, p11_err *err) {
  CK_OBJECT_HANDLE found[2];
  CK_ULONG n;
  kerr_code rc = find_by_id(s, id, found, &n, err);
  if (rc) return rc;
  if (n > 0) return refuse(err, KERR_ALREADY_EXISTS, "a key with id %s already exists in the token", id);
  return KERR_OK;
}

/* The attribute template shared by generation and unwrapping.  `a` must have
 * room for 16 entries; returns how many were filled. */
static CK_ULONG key_template(CK_ATTRIBUTE *a, const char *id, p11_key_kind kind, int with_value_len,
                             CK_OBJECT_CLASS *cls, CK_KEY_TYPE *type, CK_ULONG *value_len) {
  CK_ULONG n = 0;
  int data = kind != P11_KEY_WRAPPING;
  *cls = CKO_SECRET_KEY;
  *type = CKK_AES;
  *value_len = P11_AES_KEY_BYTES;
  a[n++] = (CK_ATTRIBUTE){CKA_CLASS, cls, sizeof *cls};
  a[n++] = (CK_ATTRIBUTE){CKA_KEY_TYPE, type, sizeof *type};
  if (with_value_len) a[n++] = (CK_ATTRIBUTE){CKA_VALUE_LEN, value_len, sizeof *value_len};
  a[n++] = (CK_ATTRIBUTE){CKA_TOKEN, &ck_true, sizeof ck_true};
  a[n++] = (CK_ATTRIBUTE){CKA_PRIVATE, &ck_true, sizeof ck_true};
  a[n++] = (CK_ATTRIBUTE){CKA_SENSITIVE, &ck_true, sizeof ck_true};
  a[n++] = (CK_ATTRIBUTE){CKA_EXTRACTABLE, kind == P11_KEY_DATA_COPYABLE ? &ck_true : &ck_false,
                          sizeof ck_true};
  a[n++] = (CK_ATTRIBUTE){CKA_WRAP_WITH_TRUSTED, &ck_true, sizeof ck_true};
  a[n++] = (CK_ATTRIBUTE){CKA_ENCRYPT, data ? &ck_true : &ck_false, sizeof ck_true};
  a[n++] = (CK_ATTRIBUTE){CKA_DECRYPT, data ? &ck_true : &ck_false, sizeof ck_true};
  a[n++] = (CK_ATTRIBUTE){CKA_WRAP, data ? &ck_false : &ck_true, sizeof ck_true};
  a[n++] = (CK_ATTRIBUTE){CKA_UNWRAP, data ? &ck_false : &ck_true, sizeof ck_true};
  a[n++] = (CK_ATTRIBUTE){CKA_SIGN, &ck_false, sizeof ck_false};
  a[n++] = (CK_ATTRIBUTE){CKA_VERIFY, &ck_false, sizeof ck_false};
  a[n++] = (CK_ATTRIBUTE){CKA_DERIVE, &ck_false, sizeof ck_false};
  a[n++] = (CK_ATTRIBUTE){CKA_ID, (void *)id, strlen(id)};
  a[n++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)id, strlen(id)};
  return n;
}

kerr_code p11_key_generate(p11_session *s, const char *id, p11_key_kind kind,
                           CK_OBJECT_HANDLE *out, p11_err *err) {
  CK_ATTRIBUTE tmpl[20];
  CK_OBJECT_CLASS cls;
  CK_KEY_TYPE type;
  CK_ULONG len;
  CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
  p11_err_clear(err);
  kerr_code rc = check_id(id, err);
  if (rc) return rc;
  if (kind != P11_KEY_DATA && kind != P11_KEY_DATA_COPYABLE && kind != P11_KEY_WRAPPING)
    return refuse(err, KERR_VALIDATION, "unknown key kind %d", (int)kind);
  rc = refuse_existing_id(s, id, err);
  if (rc) return rc;
  CK_ULONG n = key_template(tmpl, id, kind, 1, &cls, &type, &len);
  return check_rv(s, err, "C_GenerateKey", FN(s)->C_GenerateKey(s->h, &mech, tmpl, n, out));
}

/* Attributes of a trusted wrapping key made by the SO.  CKA_PRIVATE=FALSE
 * because an SO session can neither create nor see private objects; the key
 * stays unreadable because it is sensitive and never extractable.  `a` must
 * have room for 17 entries; returns how many were filled. */
static CK_ULONG trusted_wrap_template(CK_ATTRIBUTE *a, const char *id, CK_OBJECT_CLASS *cls,
                                      CK_KEY_TYPE *type, CK_ULONG *value_len) {
  CK_ULONG n = 0;
  *cls = CKO_SECRET_KEY;
  *type = CKK_AES;
  *value_len = P11_AES_KEY_BYTES;
  a[n++] = (CK_ATTRIBUTE){CKA_CLASS, cls, sizeof *cls};
  a[n++] = (CK_ATTRIBUTE){CKA_KEY_TYPE, type, sizeof *type};
  a[n++] = (CK_ATTRIBUTE){CKA_VALUE_LEN, value_len, sizeof *value_len};
  a[n++] = (CK_ATTRIBUTE){CKA_TOKEN, &ck_true, sizeof ck_true};
  a[n++] = (CK_ATTRIBUTE){CKA_PRIVATE, &ck_false, sizeof ck_false};
  a[n++] = (CK_ATTRIBUTE){CKA_SENSITIVE, &ck_true, sizeof ck_true};
  a[n++] = (CK_ATTRIBUTE){CKA_EXTRACTABLE, &ck_false, sizeof ck_false};
  a[n++] = (CK_ATTRIBUTE){CKA_TRUSTED, &ck_true, sizeof ck_true};
  a[n++] = (CK_ATTRIBUTE){CKA_ENCRYPT, &ck_false, sizeof ck_false};
  a[n++] = (CK_ATTRIBUTE){CKA_DECRYPT, &ck_false, sizeof ck_false};
  a[n++] = (CK_ATTRIBUTE){CKA_WRAP, &ck_true, sizeof ck_true};
  a[n++] = (CK_ATTRIBUTE){CKA_UNWRAP, &ck_true, sizeof ck_true};
  a[n++] = (CK_ATTRIBUTE){CKA_SIGN, &ck_false, sizeof ck_false};
  a[n++] = (CK_ATTRIBUTE){CKA_VERIFY, &ck_false, sizeof ck_false};
  a[n++] = (CK_ATTRIBUTE){CKA_DERIVE, &ck_false, sizeof ck_false};
  a[n++] = (CK_ATTRIBUTE){CKA_ID, (void *)id, strlen(id)};
  a[n++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)id, strlen(id)};
  return n;
}

kerr_code p11_key_generate_so(p11_session *s, const char *id, CK_OBJECT_HANDLE *out,
                              p11_err *err) {
  CK_ATTRIBUTE tmpl[20];
  CK_OBJECT_CLASS cls;
  CK_KEY_TYPE type;
  CK_ULONG len;
  CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
  p11_err_clear(err);
  kerr_code rc = check_id(id, err);
  if (rc) return rc;
  rc = refuse_existing_id(s, id, err);
  if (rc) return rc;
  CK_ULONG n = trusted_wrap_template(tmpl, id, &cls, &type, &len);
  return check_rv(s, err, "C_GenerateKey", FN(s)->C_GenerateKey(s->h, &mech, tmpl, n, out));
}

/* DER of the P-256 curve OID (1.2.840.10045.3.1.7), the CKA_EC_PARAMS value. */
static const CK_BYTE p256_params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

kerr_code p11_agree_begin(p11_session *s, p11_agreement *ag, uint8_t point[P11_EC_POINT_BYTES],
                          p11_err *err) {
  CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
  CK_ATTRIBUTE pub_tmpl[] = {
      {CKA_EC_PARAMS, (void *)p256_params, sizeof p256_params},
      {CKA_TOKEN, &ck_false, sizeof ck_false},
      {CKA_PRIVATE, &ck_false, sizeof ck_false},
  };
  CK_ATTRIBUTE priv_tmpl[] = {
      {CKA_TOKEN, &ck_false, sizeof ck_false},  {CKA_PRIVATE, &ck_false, sizeof ck_false},
      {CKA_SENSITIVE, &ck_true, sizeof ck_true}, {CKA_EXTRACTABLE, &ck_false, sizeof ck_false},
      {CKA_DERIVE, &ck_true, sizeof ck_true},    {CKA_SIGN, &ck_false, sizeof ck_false},
  };
  /* CKA_EC_POINT is a DER OCTET STRING around the point (04 41 04...), though
   * some modules return the bare point: accept both, nothing larger. */
  CK_BYTE raw[P11_EC_POINT_BYTES + 8];
  CK_ATTRIBUTE a = {CKA_EC_POINT, raw, sizeof raw};
  kerr_code rc;
  p11_err_clear(err);
  ag->pub = ag->priv = CK_INVALID_HANDLE;
  rc = check_rv(s, err, "C_GenerateKeyPair",
                FN(s)->C_GenerateKeyPair(s->h, &mech, pub_tmpl, 3, priv_tmpl, 6, &ag->pub,
                                         &ag->priv));
  if (rc) return rc;
  rc = check_rv(s, err, "C_GetAttributeValue(CKA_EC_POINT)",
                FN(s)->C_GetAttributeValue(s->h, ag->pub, &a, 1));
  if (rc) goto out;
  if (a.ulValueLen == P11_EC_POINT_BYTES + 2 && raw[0] == 0x04 && raw[1] == P11_EC_POINT_BYTES &&
      raw[2] == 0x04) {
    memcpy(point, raw + 2, P11_EC_POINT_BYTES);
  } else if (a.ulValueLen == P11_EC_POINT_BYTES && raw[0] == 0x04) {
    memcpy(point, raw, P11_EC_POINT_BYTES);
  } else {
    rc = refuse(err, KERR_INTERNAL, "PKCS#11 module returned a malformed P-256 public point");
  }
out:
  if (rc) {
    FN(s)->C_DestroyObject(s->h, ag->priv);
    FN(s)->C_DestroyObject(s->h, ag->pub);
    ag->pub = ag->priv = CK_INVALID_HANDLE;
  }
  return rc;
}

kerr_code p11_agree_finish(p11_session *s, p11_agreement *ag,
                           const uint8_t peer_point[P11_EC_POINT_BYTES], const char *id,
                           CK_OBJECT_HANDLE *out, p11_err *err) {
  CK_ATTRIBUTE tmpl[20];
  CK_OBJECT_CLASS cls;
  CK_KEY_TYPE type;
  CK_ULONG len;
  CK_BYTE peer[P11_EC_POINT_BYTES];
  CK_ECDH1_DERIVE_PARAMS params;
  CK_MECHANISM mech = {CKM_ECDH1_DERIVE, &params, sizeof params};
  kerr_code rc;
  p11_err_clear(err);
  if ((rc = check_id(id, err))) goto out;
  if (peer_point[0] != 0x04) {
    rc = refuse(err, KERR_VALIDATION, "peer public point is not an uncompressed P-256 point");
    goto out;
  }
  if ((rc = refuse_existing_id(s, id, err))) goto out;
  memcpy(peer, peer_point, sizeof peer);
  memset(&params, 0, sizeof params);
  params.kdf = CKD_NULL; /* the one KDF SoftHSM2 2.6 implements for ECDH */
  params.pPublicData = peer;
  params.ulPublicDataLen = sizeof peer;
  CK_ULONG n = trusted_wrap_template(tmpl, id, &cls, &type, &len);
  rc = check_rv(s, err, "C_DeriveKey", FN(s)->C_DeriveKey(s->h, &mech, ag->priv, tmpl, n, out));
out:
  FN(s)->C_DestroyObject(s->h, ag->priv);
  FN(s)->C_DestroyObject(s->h, ag->pub);
  ag->pub = ag->priv = CK_INVALID_HANDLE;
  return rc;
}

kerr_code p11_key_destroy(p11_session *s, CK_OBJECT_HANDLE key, p11_err *err) {
  p11_err_clear(err);
  return check_rv(s, err, "C_DestroyObject", FN(s)->C_DestroyObject(s->h, key));
}

unsigned p11_session_generation(const p11_session *s) { return s->generation; }

/* Copies are made and destroyed in the anchor, the session holding the
 * login, which is used only under the token's lock.  The caller's session
 * keeps reinitializations out, so the anchor is of the current epoch. */
kerr_code p11_key_copy_working(p11_session *s, CK_OBJECT_HANDLE key, CK_OBJECT_HANDLE *copy,
                               p11_err *err) {
  p11_token *t = s->tok;
  CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &ck_false, sizeof ck_false}};
  kerr_code rc;
  p11_err_clear(err);
  *copy = CK_INVALID_HANDLE;
  pthread_mutex_lock(&t->lock);
  if (t->generation != s->generation || t->login_user == NOBODY || t->anchor == CK_INVALID_HANDLE) {
    if (err) err->rv = CKR_USER_NOT_LOGGED_IN;
    rc = err ? kerr_set(&err->e, KERR_INVALID_STATE,
                        "PKCS#11 token \"%s\": the login this session belongs to has ended",
                        t->label)
             : KERR_INVALID_STATE;
  } else {
    CK_RV rv = t->mod->fn->C_CopyObject(t->anchor, key, tmpl, 1, copy);
    rc = rv == CKR_OK ? KERR_OK : fail_rv(err, "C_CopyObject", rv);
    if (rc) *copy = CK_INVALID_HANDLE;
  }
  pthread_mutex_unlock(&t->lock);
  return rc;
}

void p11_key_drop_working(p11_session *s, CK_OBJECT_HANDLE copy, unsigned generation) {
  p11_token *t = s->tok;
  pthread_mutex_lock(&t->lock);
  if (t->generation == generation && t->anchor != CK_INVALID_HANDLE)
    t->mod->fn->C_DestroyObject(t->anchor, copy);
  pthread_mutex_unlock(&t->lock);
}

/* Refuse unless the module itself says the session is logged in as the
 * user: a session that is not sees only public objects. */
static kerr_code require_user_session(p11_session *s, p11_err *err) {
  CK_SESSION_INFO si;
  kerr_code rc = check_rv(s, err, "C_GetSessionInfo", FN(s)->C_GetSessionInfo(s->h, &si));
  if (rc) return rc;
  if (si.state == CKS_RW_USER_FUNCTIONS) return KERR_OK;
  if (err) err->rv = CKR_USER_NOT_LOGGED_IN;
  return err ? kerr_set(&err->e, KERR_INVALID_STATE,
                        "PKCS#11 session is not logged in as the user (state %lu); it would "
                        "not see the token's private objects",
                        (unsigned long)si.state)
             : KERR_INVALID_STATE;
}

#define SCRUB_BATCH 256
#define SCRUB_ROUNDS 64

kerr_code p11_objects_destroy_all(p11_session *s, size_t *destroyed, p11_err *err) {
  CK_OBJECT_HANDLE found[SCRUB_BATCH];
  size_t n = 0;
  kerr_code rc;
  p11_err_clear(err);
  if (destroyed) *destroyed = 0;
  rc = require_user_session(s, err);
  if (rc) return rc;
  for (int round = 0; round < SCRUB_ROUNDS; round++) {
    CK_ULONG count = 0;
    rc = check_rv(s, err, "C_FindObjectsInit", FN(s)->C_FindObjectsInit(s->h, NULL, 0));
    if (rc) goto out;
    s->op_active = 1;
    rc = check_rv(s, err, "C_FindObjects", FN(s)->C_FindObjects(s->h, found, SCRUB_BATCH, &count));
    CK_RV rv = FN(s)->C_FindObjectsFinal(s->h);
    if (rv == CKR_OK) s->op_active = 0;
    if (rc) goto out;
    rc = check_rv(s, err, "C_FindObjectsFinal", rv);
    if (rc) goto out;
    if (count > SCRUB_BATCH) {
      rc = refuse(err, KERR_INTERNAL, "PKCS#11 C_FindObjects returned too many handles");
      goto out;
    }
    if (count == 0) {
      /* "Nothing left" counts only if it was seen as the user: a logout in
       * the meantime would have hidden the private objects. */
      rc = require_user_session(s, err);
      goto out;
    }
    for (CK_ULONG i = 0; i < count; i++) {
      rc = check_rv(s, err, "C_DestroyObject", FN(s)->C_DestroyObject(s->h, found[i]));
      if (rc) goto out;
      n++;
    }
  }
  rc = refuse(err, KERR_INTERNAL, "PKCS#11 token still shows objects after destroying %zu", n);
out:
  if (destroyed) *destroyed = n;
  return rc;
}

kerr_code p11_key_get_info(p11_session *s, CK_OBJECT_HANDLE key, p11_key_info *info,
                           p11_err *err) {
  enum { NB = 12 };
  CK_BBOOL b[NB];
  CK_ATTRIBUTE_TYPE types[NB] = {CKA_SENSITIVE,         CKA_EXTRACTABLE, CKA_ALWAYS_SENSITIVE,
                                 CKA_NEVER_EXTRACTABLE, CKA_WRAP_WITH_TRUSTED, CKA_TRUSTED,
                                 CKA_TOKEN,             CKA_PRIVATE,     CKA_ENCRYPT,
                                 CKA_DECRYPT,           CKA_WRAP,        CKA_UNWRAP};
  CK_ATTRIBUTE a[NB + 2];
  int *dst[NB] = {&info->sensitive,         &info->extractable, &info->always_sensitive,
                  &info->never_extractable, &info->wrap_with_trusted, &info->trusted,
                  &info->token,             &info->private_,    &info->encrypt,
                  &info->decrypt,           &info->wrap,        &info->unwrap};
  p11_err_clear(err);
  memset(info, 0, sizeof *info);
  for (int i = 0; i < NB; i++) {
    b[i] = CK_FALSE;
    a[i] = (CK_ATTRIBUTE){types[i], &b[i], sizeof b[i]};
  }
  a[NB] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &info->key_type, sizeof info->key_type};
  a[NB + 1] = (CK_ATTRIBUTE){CKA_VALUE_LEN, &info->value_len, sizeof info->value_len};
  CK_RV rv = FN(s)->C_GetAttributeValue(s->h, key, a, NB + 2);
  /* CKR_ATTRIBUTE_TYPE_INVALID only marks an attribute the object lacks
   * (ulValueLen = -1); the others are still filled. */
  if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID)
    return check_rv(s, err, "C_GetAttributeValue", rv);
  s->last_rv = CKR_OK;
  for (int i = 0; i < NB; i++)
    *dst[i] = a[i].ulValueLen == sizeof(CK_BBOOL) && b[i] == CK_TRUE;
  if (a[NB].ulValueLen != sizeof info->key_type) info->key_type = (CK_KEY_TYPE)-1;
  if (a[NB + 1].ulValueLen != sizeof info->value_len) info->value_len = 0;
  return KERR_OK;
}

kerr_code p11_random(p11_session *s, uint8_t *buf, size_t len, p11_err *err) {
  p11_err_clear(err);
  if (len == 0 || len > P11_RANDOM_MAX)
    return refuse(err, KERR_VALIDATION, "random length must be 1 to %d bytes", P11_RANDOM_MAX);
  return check_rv(s, err, "C_GenerateRandom", FN(s)->C_GenerateRandom(s->h, buf, len));
}

/* A failed C_Encrypt / C_Decrypt.  Modules disagree on how a GCM tag
 * mismatch is reported: the standard CKR_ENCRYPTED_DATA_INVALID, but SoftHSM2
 * 2.6 answers CKR_GENERAL_ERROR and others CKR_FUNCTION_FAILED.  After a
 * successful C_DecryptInit those all mean "this ciphertext does not
 * authenticate" to the caller (the session is still discarded at release). */
static kerr_code crypt_failed(p11_session *s, int encrypt, p11_err *err, const char *name,
                              CK_RV rv) {
  kerr_code rc = check_rv(s, err, name, rv);
  if (!encrypt && (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_GENERAL_ERROR ||
                   rv == CKR_FUNCTION_FAILED || rv == CKR_DATA_INVALID)) {
    rc = KERR_INVALID_CIPHERTEXT;
    if (err) {
      err->e.code = rc;
      snprintf(err->e.msg, sizeof err->e.msg,
               "PKCS#11 %s failed: %s (0x%lx): the ciphertext, IV or additional data does not "
               "authenticate under this key",
               name, p11_rv_name(rv), (unsigned long)rv);
    }
  }
  return rc;
}

/* One single-part Encrypt or Decrypt into a secure allocation of `max_out`
 * bytes, the most the operation can produce: one call, where asking the
 * size first would be a second module call per operation for a size the
 * caller already knows.  A module that wants more than `max_out`
 * (CKR_BUFFER_TOO_SMALL, which leaves the operation active) is refused, as
 * its size query would have been; the unused tail is wiped. */
static kerr_code crypt_once(p11_session *s, int encrypt, CK_MECHANISM *mech, CK_OBJECT_HANDLE key,
                            const uint8_t *in, size_t in_len, size_t max_out, kbytes *out,
                            p11_err *err) {
  static CK_BYTE empty_input;
  const char *init_name = encrypt ? "C_EncryptInit" : "C_DecryptInit";
  /* Modules reject a NULL data pointer even with a zero length. */
  if (in_len == 0) in = &empty_input;
  const char *name = encrypt ? "C_Encrypt" : "C_Decrypt";
  CK_ULONG got;
  uint8_t *buf = NULL;
  kerr_code rc;
  CK_RV rv = encrypt ? FN(s)->C_EncryptInit(s->h, mech, key) : FN(s)->C_DecryptInit(s->h, mech, key);
  rc = check_rv(s, err, init_name, rv);
  if (rc) return rc;
  s->op_active = 1;
  /* Allocated after the Init: a failed Init leaves no operation to end. */
  buf = secure_alloc(max_out);
  if (!buf) return refuse(err, KERR_INTERNAL, "out of memory for %s", name);
  got = max_out;
  rv = encrypt ? FN(s)->C_Encrypt(s->h, (CK_BYTE_PTR)in, in_len, buf, &got)
               : FN(s)->C_Decrypt(s->h, (CK_BYTE_PTR)in, in_len, buf, &got);
  if (rv == CKR_BUFFER_TOO_SMALL) {
    /* Leave the operation active: release closes the session. */
    secure_free(buf, max_out);
    return refuse(err, KERR_INTERNAL, "PKCS#11 %s announced %lu output bytes (limit %zu)", name,
                  (unsigned long)got, max_out);
  }
  s->op_active = 0; /* any other answer ends the operation */
  rc = rv == CKR_OK ? check_rv(s, err, name, rv) : crypt_failed(s, encrypt, err, name, rv);
  if (!rc && got > max_out)
    rc = refuse(err, KERR_INTERNAL, "PKCS#11 %s wrote more than its output buffer", name);
  if (rc) {
    secure_free(buf, max_out);
    return rc;
  }
  secure_wipe(buf + got, max_out - got);
  out->data = buf;
  out->len = got;
  /* secure_free(data, len) wipes len bytes: the tail was wiped above. */
  return KERR_OK;
}

/* ---- external keys (xks-proxy) ------------------------------------------ */

kerr_code p11_key_find_label(p11_session *s, const char *label, CK_OBJECT_HANDLE *out,
                             p11_err *err) {
  p11_err_clear(err);
  kerr_code rc = check_id(label, err);
  if (rc) return rc;
  return find_one(s, CKA_LABEL, label, "labelled", out, err);
}

kerr_code p11_key_generate_usage(p11_session *s, const char *id, int encrypt, int decrypt,
                                 CK_OBJECT_HANDLE *out, p11_err *err) {
  CK_ATTRIBUTE tmpl[20];
  CK_OBJECT_CLASS cls;
  CK_KEY_TYPE type;
  CK_ULONG len, n;
  CK_OBJECT_HANDLE found[2];
  CK_ULONG count;
  CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
  p11_err_clear(err);
  kerr_code rc = check_id(id, err);
  if (rc) return rc;
  rc = refuse_existing_id(s, id, err);
  if (rc) return rc;
  /* External keys are found by label: a label in use must stay unique too. */
  rc = find_by_attr(s, CKA_LABEL, id, found, &count, err);
  if (rc) return rc;
  if (count > 0)
    return refuse(err, KERR_ALREADY_EXISTS, "a key labelled %s already exists in the token", id);
  n = key_template(tmpl, id, P11_KEY_DATA, 1, &cls, &type, &len);
  /* key_template sets CKA_ENCRYPT and CKA_DECRYPT of a data key to true. */
  for (CK_ULONG i = 0; i < n; i++) {
    if (tmpl[i].type == CKA_ENCRYPT) tmpl[i].pValue = encrypt ? &ck_true : &ck_false;
    if (tmpl[i].type == CKA_DECRYPT) tmpl[i].pValue = decrypt ? &ck_true : &ck_false;
  }
  return check_rv(s, err, "C_GenerateKey", FN(s)->C_GenerateKey(s->h, &mech, tmpl, n, out));
}

/* After a failed crypt_once of the external-key calls: a key that refuses
 * the operation is a usage error, which the caller reports as such. */
static kerr_code usage_refusal(p11_session *s, kerr_code rc, p11_err *err) {
  if (s->last_rv != CKR_KEY_FUNCTION_NOT_PERMITTED && s->last_rv != CKR_KEY_TYPE_INCONSISTENT)
    return rc;
  if (err) err->e.code = KERR_INVALID_KEY_USAGE;
  return KERR_INVALID_KEY_USAGE;
}

/* CK_GCM_PARAMS for an IV of 12 or 16 bytes, `iv_copy` holding the IV (the
 * mechanism takes a non-const pointer). */
static kerr_code gcm_params(const uint8_t *iv, size_t iv_len, const uint8_t *aad, size_t aad_len,
                            uint8_t iv_copy[P11_GCM_IV_MAX_BYTES], CK_GCM_PARAMS *params,
                            p11_err *err) {
  if (!iv || (iv_len != P11_GCM_IV_BYTES && iv_len != P11_GCM_IV_MAX_BYTES))
    return refuse(err, KERR_VALIDATION, "GCM IV must be %d or %d bytes", P11_GCM_IV_BYTES,
                  P11_GCM_IV_MAX_BYTES);
  if (aad_len > P11_GCM_MAX_AAD || (aad_len && !aad))
    return refuse(err, KERR_VALIDATION, "additional data must be at most %u bytes", P11_GCM_MAX_AAD);
  memcpy(iv_copy, iv, iv_len);
  memset(params, 0, sizeof *params);
  params->pIv = iv_copy;
  params->ulIvLen = iv_len;
  params->ulIvBits = iv_len * 8;
  params->pAAD = (CK_BYTE_PTR)aad;
  params->ulAADLen = aad_len;
  params->ulTagBits = P11_GCM_TAG_BYTES * 8;
  return KERR_OK;
}

/* AES-256-GCM in the token, encrypting (pt -> ct||tag) or decrypting
 * (ct||tag -> pt), with the bounds and the output-size check every caller
 * shares.  `in` is the plaintext or ciphertext||tag. */
static kerr_code gcm_crypt(p11_session *s, int encrypt, CK_OBJECT_HANDLE key, const uint8_t *iv,
                           size_t iv_len, const uint8_t *aad, size_t aad_len, const uint8_t *in,
                           size_t in_len, kbytes *out, p11_err *err) {
  CK_GCM_PARAMS params;
  CK_MECHANISM mech = {CKM_AES_GCM, &params, sizeof params};
  uint8_t iv_copy[P11_GCM_IV_MAX_BYTES];
  size_t want;
  kerr_code rc;
  out->data = NULL;
  out->len = 0;
  p11_err_clear(err);
  if (encrypt && (in_len > P11_GCM_MAX_INPUT || (in_len && !in)))
    return refuse(err, KERR_VALIDATION, "plaintext must be at most %u bytes", P11_GCM_MAX_INPUT);
  if (!encrypt && (!in || in_len < P11_GCM_TAG_BYTES || in_len > P11_GCM_MAX_INPUT + P11_GCM_TAG_BYTES))
    return refuse(err, KERR_INVALID_CIPHERTEXT, "GCM ciphertext must be %d to %u bytes",
                  P11_GCM_TAG_BYTES, P11_GCM_MAX_INPUT + P11_GCM_TAG_BYTES);
  rc = gcm_params(iv, iv_len, aad, aad_len, iv_copy, &params, err);
  if (rc) return rc;
  want = encrypt ? in_len + P11_GCM_TAG_BYTES : in_len - P11_GCM_TAG_BYTES;
  rc = crypt_once(s, encrypt, &mech, key, in, in_len, encrypt ? want : in_len, out, err);
  if (rc) return rc;
  if (out->len != want) {
    kbytes_wipe_free(out);
    return refuse(err, KERR_INTERNAL, "PKCS#11 %s returned a GCM output of the wrong size",
                  encrypt ? "C_Encrypt" : "C_Decrypt");
  }
  return KERR_OK;
}

kerr_code p11_gcm_encrypt(p11_session *s, CK_OBJECT_HANDLE key, const uint8_t *aad,
                          size_t aad_len, const uint8_t *pt, size_t pt_len,
                          uint8_t iv[P11_GCM_IV_BYTES], kbytes *out, p11_err *err) {
  out->data = NULL;
  out->len = 0;
  p11_err_clear(err);
  kerr_code rc =
      check_rv(s, err, "C_GenerateRandom", FN(s)->C_GenerateRandom(s->h, iv, P11_GCM_IV_BYTES));
  if (rc) return rc;
  return gcm_crypt(s, 1, key, iv, P11_GCM_IV_BYTES, aad, aad_len, pt, pt_len, out, err);
}

kerr_code p11_gcm_decrypt(p11_session *s, CK_OBJECT_HANDLE key, const uint8_t iv[P11_GCM_IV_BYTES],
                          const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t ct_len,
                          kbytes *out, p11_err *err) {
  return gcm_crypt(s, 0, key, iv, P11_GCM_IV_BYTES, aad, aad_len, ct, ct_len, out, err);
}

kerr_code p11_gcm_encrypt_iv(p11_session *s, CK_OBJECT_HANDLE key, const uint8_t *iv,
                             size_t iv_len, const uint8_t *aad, size_t aad_len,
                             const uint8_t *pt, size_t pt_len, kbytes *out, p11_err *err) {
  kerr_code rc = gcm_crypt(s, 1, key, iv, iv_len, aad, aad_len, pt, pt_len, out, err);
  return rc ? usage_refusal(s, rc, err) : KERR_OK;
}

kerr_code p11_gcm_decrypt_iv(p11_session *s, CK_OBJECT_HANDLE key, const uint8_t *iv,
                             size_t iv_len, const uint8_t *aad, size_t aad_len,
                             const uint8_t *ct, size_t ct_len, kbytes *out, p11_err *err) {
  kerr_code rc = gcm_crypt(s, 0, key, iv, iv_len, aad, aad_len, ct, ct_len, out, err);
  return rc ? usage_refusal(s, rc, err) : KERR_OK;
}

/* `n` bytes of a space-padded CK_TOKEN_INFO string, unpadded, printable. */
static void info_string(const CK_UTF8CHAR *in, size_t n, char *out) {
  while (n > 0 && (in[n - 1] == ' ' || in[n - 1] == '\0')) n--;
  for (size_t i = 0; i < n; i++) out[i] = in[i] >= 0x20 && in[i] <= 0x7e ? (char)in[i] : '?';
  out[n] = '\0';
}

kerr_code p11_token_describe(p11_token *tok, p11_token_desc *out, p11_err *err) {
  struct timespec deadline;
  CK_TOKEN_INFO info;
  CK_SLOT_ID slot;
  memset(out, 0, sizeof *out);
  p11_err_clear(err);
  kerr_code rc = gate_enter(tok->mod, token_deadline(tok, &deadline), err);
  if (rc) return rc;
  pthread_mutex_lock(&tok->lock);
  rc = sync_locked(tok, err);
  slot = tok->slot;
  pthread_mutex_unlock(&tok->lock);
  if (!rc) {
    CK_RV rv = tok->mod->fn->C_GetTokenInfo(slot, &info);
    if (rv != CKR_OK) rc = fail_rv(err, "C_GetTokenInfo", rv);
  }
  gate_leave(tok->mod);
  if (rc) return rc;
  info_string(info.label, sizeof info.label, out->label);
  info_string(info.manufacturerID, sizeof info.manufacturerID, out->manufacturer);
  info_string(info.model, sizeof info.model, out->model);
  info_string(info.serialNumber, sizeof info.serialNumber, out->serial);
  out->fw_major = info.firmwareVersion.major;
  out->fw_minor = info.firmwareVersion.minor;
  out->has_rng = (info.flags & CKF_RNG) != 0;
  return KERR_OK;
}

/* ---- wrapping ----------------------------------------------------------- */

kerr_code p11_key_wrap(p11_session *s, CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE key,
                       kbytes *out, p11_err *err) {
  CK_MECHANISM mech = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
  CK_ULONG need = 0, got;
  uint8_t *buf;
  kerr_code rc;
  out->data = NULL;
  out->len = 0;
  p11_err_clear(err);
  rc = check_rv(s, err, "C_WrapKey", FN(s)->C_WrapKey(s->h, &mech, wrapping_key, key, NULL, &need));
  if (rc) return rc;
  if (need == 0 || need > P11_WRAPPED_MAX)
    return refuse(err, KERR_INTERNAL, "PKCS#11 C_WrapKey announced %lu bytes (limit %d)",
                  (unsigned long)need, P11_WRAPPED_MAX);
  buf = secure_alloc(need);
  if (!buf) return refuse(err, KERR_INTERNAL, "out of memory wrapping a key");
  got = need;
  rc = check_rv(s, err, "C_WrapKey", FN(s)->C_WrapKey(s->h, &mech, wrapping_key, key, buf, &got));
  if (!rc && (got == 0 || got > need))
    rc = refuse(err, KERR_INTERNAL, "PKCS#11 C_WrapKey returned an inconsistent length");
  if (rc) {
    secure_free(buf, need);
    return rc;
  }
  secure_wipe(buf + got, need - got);
  out->data = buf;
  out->len = got;
  return KERR_OK;
}

kerr_code p11_key_unwrap(p11_session *s, CK_OBJECT_HANDLE unwrapping_key, const uint8_t *wrapped,
                         size_t wrapped_len, const char *id, p11_key_kind kind,
                         CK_OBJECT_HANDLE *out, p11_err *err) {
  CK_MECHANISM mech = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
  CK_ATTRIBUTE tmpl[20];
  CK_OBJECT_CLASS cls;
  CK_KEY_TYPE type;
  CK_ULONG len;
  p11_err_clear(err);
  kerr_code rc = check_id(id, err);
  if (rc) return rc;
  if (kind != P11_KEY_DATA && kind != P11_KEY_DATA_COPYABLE && kind != P11_KEY_WRAPPING)
    return refuse(err, KERR_VALIDATION, "unknown key kind %d", (int)kind);
  /* RFC 5649 wraps a 32-byte key into exactly 40 bytes. */
  if (!wrapped || wrapped_len != P11_WRAPPED_AES256_BYTES)
    return refuse(err, KERR_VALIDATION, "a wrapped AES-256 key is %d bytes, not %zu",
                  P11_WRAPPED_AES256_BYTES, wrapped_len);
  rc = refuse_existing_id(s, id, err);
  if (rc) return rc;
  /* No CKA_VALUE_LEN: the length comes from the blob, and PKCS#11 forbids it
   * in an unwrap template for AES keys. */
  CK_ULONG n = key_template(tmpl, id, kind, 0, &cls, &type, &len);
  rc = check_rv(s, err, "C_UnwrapKey",
                FN(s)->C_UnwrapKey(s->h, &mech, unwrapping_key, (CK_BYTE_PTR)wrapped, wrapped_len,
                                   tmpl, n, out));
  if (rc) return rc;
  /* Some modules (SoftHSM2 2.6) do not record CKA_VALUE_LEN on an unwrapped
   * key; the blob length checked above already pins it to 25..32 bytes, and
   * where the module reports the length it must be 32. */
  p11_key_info info;
  rc = p11_key_get_info(s, *out, &info, err);
  if (!rc && info.value_len != 0 && info.value_len != P11_AES_KEY_BYTES)
    rc = refuse(err, KERR_INTERNAL, "unwrapped key is %lu bytes, not %d",
                (unsigned long)info.value_len, P11_AES_KEY_BYTES);
  if (rc) {
    FN(s)->C_DestroyObject(s->h, *out);
    *out = CK_INVALID_HANDLE;
  }
  return rc;
}

kerr_code p11_key_copy(p11_session *src, CK_OBJECT_HANDLE src_wrap, p11_session *dst,
                       CK_OBJECT_HANDLE dst_wrap, const char *id, p11_key_kind kind,
                       CK_OBJECT_HANDLE *out, p11_err *err) {
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  kbytes blob = {NULL, 0};
  kerr_code rc = p11_key_find(src, id, &key, err);
  if (rc) return rc;
  rc = p11_key_wrap(src, src_wrap, key, &blob, err);
  if (rc) goto out;
  rc = p11_key_unwrap(dst, dst_wrap, blob.data, blob.len, id, kind, out, err);
out:
  kbytes_wipe_free(&blob);
  return rc;
}
