/* main.c - `kms`, the AWS CLI v2's `aws kms` and `aws cloudhsmv2` as one
 * small C program on libkms (see kms_tool.h for how the files divide the
 * work, docs/kms.md for the user's view).
 *
 * main reads the options, answers --version, and otherwise runs the command;
 * it also owns the process-wide concerns: an interrupt ends the command with
 * exit code 130 as in the AWS CLI, and whatever happens, the exit code is
 * one of the CLI's (kms_tool.h). */
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "cli/params.h"
#include "core/version.h"
#include "kms/kms.h"
#include "kms_tool.h"

/* SIGINT: a newline (the shell prompt then starts on its own line, as after
 * the AWS CLI) and exit code 130.  Only async-signal-safe calls. */
static void on_interrupt(int sig) {
  (void)sig;
  static const char nl = '\n';
  ssize_t ignored = write(STDOUT_FILENO, &nl, 1);
  (void)ignored;
  _exit(KMS_EXIT_INTERRUPTED);
}

void kms_debug_line(void *ctx, const char *line) {
  (void)ctx;
  struct timeval tv;
  struct tm tm;
  char when[32];
  gettimeofday(&tv, NULL);
  localtime_r(&tv.tv_sec, &tm);
  strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
  fprintf(stderr, "%s,%03ld - MainThread - kms - DEBUG - %s\n", when, (long)(tv.tv_usec / 1000), line);
}

void kms_print_version(FILE *out) {
  struct utsname u;
  if (uname(&u) != 0)
    memset(&u, 0, sizeof u);
  fprintf(out, "kms/%s libkms/%s %s/%s %s\n", KMSD_VERSION, kms_version(), u.sysname[0] ? u.sysname : "unknown",
          u.release[0] ? u.release : "unknown", u.machine[0] ? u.machine : "unknown");
}

/* Whether to prompt for the command (see prompt.c): --cli-auto-prompt,
 * else AWS_CLI_AUTO_PROMPT ("on", or "on-partial": only when the command is
 * missing or unknown), and only on a terminal. */
static int wants_prompt(const kms_args *a) {
  if (a->auto_prompt == 0 || !isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))
    return 0;
  if (a->auto_prompt == 1)
    return 1;
  const char *mode = getenv("AWS_CLI_AUTO_PROMPT");
  if (mode == NULL)
    return 0;
  if (strcmp(mode, "on") == 0)
    return 1;
  if (strcmp(mode, "on-partial") != 0)
    return 0;
  const model_service *svc = a->service != NULL ? &model_cloudhsmv2 : &model_kms;
  return a->command == NULL || cli_find_op(svc, a->command) == NULL;
}

int main(int argc, char **argv) {
  kms_args args;
  kerr err;
  int code;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_interrupt;
  sigaction(SIGINT, &sa, NULL);
  if (argc == 2 && strcmp(argv[1], "--cli-complete") == 0)
    return kms_complete();
  if (kms_args_parse(argc, argv, &args, &err) != KERR_OK) {
    kms_usage_error("%s", err.msg);
    kms_args_free(&args);
    return KMS_EXIT_USAGE;
  }
  if (!args.version && wants_prompt(&args)) {
    char *words = NULL, **prompted = NULL;
    int prompted_count = 0;
    code = kms_prompt(argc, argv, &words, &prompted, &prompted_count);
    kms_args_free(&args);
    if (code != 0) {
      if (code == -1)
        fputs("\nThe terminal cannot be used for the prompt\n", stderr);
      return code == 1 ? KMS_EXIT_OK : code == -1 ? KMS_EXIT_OTHER : code;
    }
    if (kms_args_parse(prompted_count, prompted, &args, &err) != KERR_OK) {
      kms_usage_error("%s", err.msg);
      code = KMS_EXIT_USAGE;
    } else {
      code = kms_run(&args);
    }
    kms_args_free(&args);
    free(prompted);
    free(words);
    return code;
  }
  if (args.version) {
    kms_print_version(stdout);
    code = KMS_EXIT_OK;
  } else {
    code = kms_run(&args);
  }
  kms_args_free(&args);
  if (fflush(stdout) != 0 && code == KMS_EXIT_OK)
    code = KMS_EXIT_OTHER;
  return code;
}
