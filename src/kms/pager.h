/* pager.h - where `kms` writes its output: standard output, or a pager.
 *
 * As in the AWS CLI v2, output to a terminal goes through a pager: the
 * configured one (AWS_PAGER, the profile's cli_pager, PAGER), or `less` with
 * LESS=FRX when LESS is unset (F: leave at once when the text fits the
 * screen, R: keep the table colours, X: leave the text on the screen).  An
 * empty pager setting or --no-cli-pager writes straight to standard output,
 * as does any output that is not a terminal.  The pager starts with the
 * first byte written, so a command that prints nothing never starts one. */
#ifndef KMS_PAGER_H
#define KMS_PAGER_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

typedef struct kms_pager {
  char *command;   /* the pager's shell command; NULL: write to stdout */
  FILE *pipe;      /* to the running pager; NULL until the first write */
  pid_t pid;
  int gone;        /* the pager quit before all was written: drop the rest */
} kms_pager;

/* Decide where output goes.  `configured` is the pager setting (NULL: none
 * set, so the default; "": no pager); `disabled` is --no-cli-pager. */
void kms_pager_open(kms_pager *p, int disabled, const char *configured);

/* Write `len` bytes.  0 on success (also when the user quit the pager early);
 * -1 when standard output cannot be written or the pager cannot be started
 * (a message is printed). */
int kms_pager_write(kms_pager *p, const char *text, size_t len);

/* Wait for the pager to end.  Safe on a pager never started. */
void kms_pager_close(kms_pager *p);

/* Columns of the terminal on standard output; 80 when it is not one. */
int kms_terminal_width(void);

#endif
