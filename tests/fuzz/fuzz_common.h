/* fuzz_common.h - what every fuzz target shares: the invariant check that
 * turns a broken property into a crash libFuzzer records, and the prototype
 * libFuzzer calls.
 *
 * An invariant failure must abort (not just print) so that libFuzzer keeps
 * the input as a crash artifact and run.sh exits non-zero. */
#ifndef KMSD_FUZZ_COMMON_H
#define KMSD_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Abort with the file, line and the broken property.  Never prints input
 * bytes: targets handle secrets, and the artifact holds the input anyway. */
#define FUZZ_CHECK(cond, what)                                                                 \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "fuzz invariant failed at %s:%d: %s (%s)\n", __FILE__, __LINE__, what,   \
              #cond);                                                                          \
      abort();                                                                                 \
    }                                                                                          \
  } while (0)

/* A NUL-terminated copy of the input (malloc'd; the caller frees), so targets
 * can hand C strings to parsers without reading past libFuzzer's buffer. */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (!s) abort();
  for (size_t i = 0; i < size; i++) s[i] = (char)data[i];
  s[size] = '\0';
  return s;
}

/* Whether `msg` is a usable error message: non-empty and NUL-terminated
 * within `cap` bytes. */
static inline int fuzz_msg_ok(const char *msg, size_t cap) {
  size_t i;
  for (i = 0; i < cap; i++)
    if (msg[i] == '\0') break;
  return i > 0 && i < cap;
}

#endif
