/* main.c - the kmsd program: flags, wiring of the server, pipeline and
 * domain, signal handling.  (Start-up wiring lands in the next commits.) */
#include <stdio.h>

int main(void) {
  fprintf(stderr, "kmsd: not wired up yet\n");
  return 1;
}
