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
 * Every C_SetPIN and every fault is announced on stderr ("p11shim: ..."),
 * never with a PIN, so a test can check from the log that the fault fired.
 *
 * C_GetFunctionList returns a copy of the real module's table with
 * C_GetFunctionList and C_SetPIN replaced; all other entries are the real
 * module's own functions. */
#include <dlfcn.h>
#include <p11-kit-1/p11-kit/pkcs11.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static CK_RV load_rv = CKR_GENERAL_ERROR;
static CK_FUNCTION_LIST shim_list;
static CK_FUNCTION_LIST_PTR real_list;
static atomic_long setpin_calls;
static long kill_before, kill_after, fail_at, pause_after, pause_ms;

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
  shim_list = *real_list;
  shim_list.C_GetFunctionList = C_GetFunctionList;
  shim_list.C_SetPIN = shim_set_pin;
  load_rv = CKR_OK;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  if (!list) return CKR_ARGUMENTS_BAD;
  pthread_once(&load_once, load_real_module);
  if (load_rv != CKR_OK) return load_rv;
  *list = &shim_list;
  return CKR_OK;
}
