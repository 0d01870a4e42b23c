/* strlist.c - see strlist.h. */
#include "core/strlist.h"

#include <string.h>

int strlist_contains(const char *const *list, const char *s) {
  for (; *list; list++)
    if (strcmp(*list, s) == 0) return 1;
  return 0;
}
