/* p11shim.c - a PKCS#11 module for tests that forwards every call to a real
 * module and injects faults into C_SetPIN at an exact call, so a test can
 * kill kmsd (or fail a PIN change) at a chosen step of a kmsuser password
 * rotation instead of at a random delay.
 *
 * Built by CMake only for the tests, never installed.  kmsd loads it in
 * place of SoftHSM2 through KMSD_SOFTHSM2_MODULE; it is driven by the
 * environment of the process that loads it:
 *   P11SHIM_MODULE             the real module (absolute path), required
 *   P11SHIM_SETPIN_KILL_BEFORE=N  on the Nth C_SetPIN of the process,
 *                                 SIGKILL the process before forwarding it
 *   P11SHIM_SETPIN_KILL_AFTER=N   ... after forwarding it (the PIN changed)
 *   P11SHIM_SETPIN_FAIL=N         ... answer CKR_DEVICE_ERROR, not forwarded
 *   P11SHIM_SETPIN_PAUSE_AFTER=N  ... sleep P11SHIM_PAUSE_MS (default 2000)
 *                                 after forwarding it, so a test can act
 *                                 while a PIN change is in flight
 *   P11SHIM_FAIL_FILE=PATH       while a file exists at PATH (one stat per
 *                                 call), every call that touches a slot,
 *                                 token or session answers CKR_DEVICE_ERROR
 *                                 without being forwarded (C_GetSlotInfo and
 *                                 C_GetTokenInfo: CKR_TOKEN_NOT_PRESENT), so
 *                                 a test can make an HSM fail and come back;
 *                                 C_CloseSession / C_CloseAllSessions still
 *                                 close the real sessions (no leak) before
 *                                 answering the error.  Remove the file and
 *                                 calls are forwarded again.
 *   P11SHIM_CRYPT_DELAY_MS=N     every C_EncryptInit and C_DecryptInit
 *                                 sleeps N ms before it is forwarded: a
 *                                 slow HSM, so that the calls of a steady
 *                                 stream overlap for a test
 * Every C_SetPIN and every fault is announced on stderr ("p11shim: ..."),
 * never with a PIN, so a test can check from the log that the fault fired
 * (P11SHIM_FAIL_FILE faults are not announced: they fire on every call).
 *
 * C_GetFunctionList returns a copy of the real module's table with
 * C_GetFunctionList, C_SetPIN and the calls P11SHIM_FAIL_FILE covers
 * replaced; all other entries are the real module's own functions. */
#include <dlfcn.h>
#include <p11-kit-1/p11-kit/pkcs11.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static CK_RV load_rv = CKR_GENERAL_ERROR;
static CK_FUNCTION_LIST shim_list;
static CK_FUNCTION_LIST_PTR real_list;
static atomic_long setpin_calls;
static long kill_before, kill_after, fail_at, pause_after, pause_ms, crypt_delay_ms;
static const char *fail_file;

/* 1 while the P11SHIM_FAIL_FILE file exists: the "HSM" is down. */
static int hsm_down(void) {
  struct stat st;
  return fail_file && stat(fail_file, &st) == 0;
}

/* One forwarding function per covered call: answers `down_rv` while the
 * HSM is down, else forwards. */
#define SHIM_CALL(name, down_rv, params, args)                 \
  static CK_RV shim_##name params {                            \
    if (hsm_down()) return down_rv;                            \
    return real_list->name args;                               \
  }

SHIM_CALL(C_GetSlotList, CKR_DEVICE_ERROR, (CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR n),
          (present, list, n))
SHIM_CALL(C_GetSlotInfo, CKR_TOKEN_NOT_PRESENT, (CK_SLOT_ID slot, CK_SLOT_INFO_PTR info),
          (slot, info))
SHIM_CALL(C_GetTokenInfo, CKR_TOKEN_NOT_PRESENT, (CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info),
          (slot, info))
SHIM_CALL(C_GetMechanismList, CKR_DEVICE_ERROR,
          (CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR n), (slot, list, n))
SHIM_CALL(C_GetMechanismInfo, CKR_DEVICE_ERROR,
          (CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info),
          (slot, type, info))
SHIM_CALL(C_InitToken, CKR_DEVICE_ERROR,
          (CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG len, CK_UTF8CHAR_PTR label),
          (slot, pin, len, label))
SHIM_CALL(C_InitPIN, CKR_DEVICE_ERROR, (CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR pin, CK_ULONG len),
          (h, pin, len))
SHIM_CALL(C_OpenSession, CKR_DEVICE_ERROR,
          (CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
           CK_SESSION_HANDLE_PTR h),
          (slot, flags, app, notify, h))
SHIM_CALL(C_GetSessionInfo, CKR_DEVICE_ERROR, (CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info),
          (h, info))
SHIM_CALL(C_Login, CKR_DEVICE_ERROR,
          (CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG len),
          (h, user, pin, len))
SHIM_CALL(C_Logout, CKR_DEVICE_ERROR, (CK_SESSION_HANDLE h), (h))
SHIM_CALL(C_CreateObject, CKR_DEVICE_ERROR,
          (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o),
          (h, t, n, o))
SHIM_CALL(C_DestroyObject, CKR_DEVICE_ERROR, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o), (h, o))
SHIM_CALL(C_GetAttributeValue, CKR_DEVICE_ERROR,
          (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n), (h, o, t, n))
SHIM_CALL(C_SetAttributeValue, CKR_DEVICE_ERROR,
          (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n), (h, o, t, n))
SHIM_CALL(C_FindObjectsInit, CKR_DEVICE_ERROR, (CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n),
          (h, t, n))
SHIM_CALL(C_FindObjects, CKR_DEVICE_ERROR,
          (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR o, CK_ULONG max, CK_ULONG_PTR n),
          (h, o, max, n))
SHIM_CALL(C_FindObjectsFinal, CKR_DEVICE_ERROR, (CK_SESSION_HANDLE h), (h))
/* Sleep P11SHIM_CRYPT_DELAY_MS (a slow HSM). */
static void crypt_delay(void) {
  struct timespec d = {crypt_delay_ms / 1000, (crypt_delay_ms % 1000) * 1000000L};
  if (crypt_delay_ms <= 0) return;
  while (nanosleep(&d, &d) != 0) continue;
}

static CK_RV shim_C_EncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) {
  if (hsm_down()) return CKR_DEVICE_ERROR;
  crypt_delay();
  return real_list->C_EncryptInit(h, m, k);
}

static CK_RV shim_C_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k) {
  if (hsm_down()) return CKR_DEVICE_ERROR;
  crypt_delay();
  return real_list->C_DecryptInit(h, m, k);
}

SHIM_CALL(C_Encrypt, CKR_DEVICE_ERROR,
          (CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
           CK_ULONG_PTR out_len),
          (h, in, in_len, out, out_len))
SHIM_CALL(C_Decrypt, CKR_DEVICE_ERROR,
          (CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
           CK_ULONG_PTR out_len),
          (h, in, in_len, out, out_len))
SHIM_CALL(C_GenerateKey, CKR_DEVICE_ERROR,
          (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n,
           CK_OBJECT_HANDLE_PTR k),
          (h, m, t, n, k))
SHIM_CALL(C_GenerateKeyPair, CKR_DEVICE_ERROR,
          (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt, CK_ULONG pn,
           CK_ATTRIBUTE_PTR vt, CK_ULONG vn, CK_OBJECT_HANDLE_PTR pub, CK_OBJECT_HANDLE_PTR priv),
          (h, m, pt, pn, vt, vn, pub, priv))
SHIM_CALL(C_WrapKey, CKR_DEVICE_ERROR,
          (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wk, CK_OBJECT_HANDLE k,
           CK_BYTE_PTR out, CK_ULONG_PTR out_len),
          (h, m, wk, k, out, out_len))
SHIM_CALL(C_UnwrapKey, CKR_DEVICE_ERROR,
          (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE uk, CK_BYTE_PTR in,
           CK_ULONG in_len, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k),
          (h, m, uk, in, in_len, t, n, k))
SHIM_CALL(C_DeriveKey, CKR_DEVICE_ERROR,
          (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE base, CK_ATTRIBUTE_PTR t,
           CK_ULONG n, CK_OBJECT_HANDLE_PTR k),
          (h, m, base, t, n, k))
SHIM_CALL(C_GenerateRandom, CKR_DEVICE_ERROR, (CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG n),
          (h, out, n))

/* Closing still closes the real session while the HSM is "down", so the real
 * module keeps no session the caller believes gone. */
static CK_RV shim_C_CloseSession(CK_SESSION_HANDLE h) {
  CK_RV rv = real_list->C_CloseSession(h);
  return hsm_down() ? CKR_DEVICE_ERROR : rv;
}

static CK_RV shim_C_CloseAllSessions(CK_SLOT_ID slot) {
  CK_RV rv = real_list->C_CloseAllSessions(slot);
  return hsm_down() ? CKR_DEVICE_ERROR : rv;
}

/* The call number an environment variable names (0: never). */
static long env_call_number(const char *name) {
  const char *v = getenv(name);
  char *end = NULL;
  long n;
  if (!v || !*v) return 0;
  n = strtol(v, &end, 10);
  return end && *end == '\0' && n > 0 ? n : 0;
}

/* stderr only through write(2): safe right before a SIGKILL. */
static void announce(const char *what, long call) {
  char line[96];
  int n = snprintf(line, sizeof line, "p11shim: %s C_SetPIN #%ld\n", what, call);
  if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0) return;
}

static CK_RV shim_set_pin(CK_SESSION_HANDLE session, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len,
                          CK_UTF8CHAR_PTR new_pin, CK_ULONG new_len) {
  long call = atomic_fetch_add(&setpin_calls, 1) + 1;
  CK_RV rv;
  if (hsm_down()) return CKR_DEVICE_ERROR;
  if (call == kill_before) {
    announce("SIGKILL before", call);
    kill(getpid(), SIGKILL);
  }
  if (call == fail_at) {
    announce("CKR_DEVICE_ERROR for", call);
    return CKR_DEVICE_ERROR;
  }
  rv = real_list->C_SetPIN(session, old_pin, old_len, new_pin, new_len);
  announce(rv == CKR_OK ? "forwarded" : "forwarded (failed)", call);
  if (call == kill_after) {
    announce("SIGKILL after", call);
    kill(getpid(), SIGKILL);
  }
  if (call == pause_after) {
    struct timespec pause = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};
    announce("pausing after", call);
    while (nanosleep(&pause, &pause) != 0) continue;
    announce("resuming after", call);
  }
  return rv;
}

static void load_real_module(void) {
  const char *path = getenv("P11SHIM_MODULE");
  CK_C_GetFunctionList get_list;
  void *dl;
  if (!path || path[0] != '/') {
    announce("P11SHIM_MODULE is not an absolute path; refusing", 0);
    return;
  }
  dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!dl) return;
  *(void **)&get_list = dlsym(dl, "C_GetFunctionList");
  if (!get_list || get_list(&real_list) != CKR_OK || !real_list) return;
  kill_before = env_call_number("P11SHIM_SETPIN_KILL_BEFORE");
  kill_after = env_call_number("P11SHIM_SETPIN_KILL_AFTER");
  fail_at = env_call_number("P11SHIM_SETPIN_FAIL");
  pause_after = env_call_number("P11SHIM_SETPIN_PAUSE_AFTER");
  pause_ms = env_call_number("P11SHIM_PAUSE_MS");
  if (pause_ms == 0) pause_ms = 2000;
  crypt_delay_ms = env_call_number("P11SHIM_CRYPT_DELAY_MS");
  shim_list = *real_list;
  shim_list.C_GetFunctionList = C_GetFunctionList;
  shim_list.C_SetPIN = shim_set_pin;
  fail_file = getenv("P11SHIM_FAIL_FILE");
  if (fail_file && fail_file[0] != '/') fail_file = NULL;
#define SHIM_INSTALL(name) shim_list.name = shim_##name
  SHIM_INSTALL(C_GetSlotList);
  SHIM_INSTALL(C_GetSlotInfo);
  SHIM_INSTALL(C_GetTokenInfo);
  SHIM_INSTALL(C_GetMechanismList);
  SHIM_INSTALL(C_GetMechanismInfo);
  SHIM_INSTALL(C_InitToken);
  SHIM_INSTALL(C_InitPIN);
  SHIM_INSTALL(C_OpenSession);
  SHIM_INSTALL(C_CloseSession);
  SHIM_INSTALL(C_CloseAllSessions);
  SHIM_INSTALL(C_GetSessionInfo);
  SHIM_INSTALL(C_Login);
  SHIM_INSTALL(C_Logout);
  SHIM_INSTALL(C_CreateObject);
  SHIM_INSTALL(C_DestroyObject);
  SHIM_INSTALL(C_GetAttributeValue);
  SHIM_INSTALL(C_SetAttributeValue);
  SHIM_INSTALL(C_FindObjectsInit);
  SHIM_INSTALL(C_FindObjects);
  SHIM_INSTALL(C_FindObjectsFinal);
  SHIM_INSTALL(C_EncryptInit);
  SHIM_INSTALL(C_Encrypt);
  SHIM_INSTALL(C_DecryptInit);
  SHIM_INSTALL(C_Decrypt);
  SHIM_INSTALL(C_GenerateKey);
  SHIM_INSTALL(C_GenerateKeyPair);
  SHIM_INSTALL(C_WrapKey);
  SHIM_INSTALL(C_UnwrapKey);
  SHIM_INSTALL(C_DeriveKey);
  SHIM_INSTALL(C_GenerateRandom);
#undef SHIM_INSTALL
  load_rv = CKR_OK;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  if (!list) return CKR_ARGUMENTS_BAD;
  pthread_once(&load_once, load_real_module);
  if (load_rv != CKR_OK) return load_rv;
  *list = &shim_list;
  return CKR_OK;
}
