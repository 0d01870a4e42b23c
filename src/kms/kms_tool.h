/* kms_tool.h - the pieces of the `kms` command line shared between its files.
 *
 * `kms [options] <command> [parameters]` is the AWS CLI v2's `aws kms ...`
 * (and `kms cloudhsmv2 <command>` its `aws cloudhsmv2 ...`) written on
 * libkms: args.c reads the options that are not the operation's own, run.c
 * builds the request, calls, pages and prints, main.c ties them together
 * and turns every outcome into the CLI's exit code. */
#ifndef KMS_TOOL_H
#define KMS_TOOL_H

#include <stdio.h>

#include <jansson.h>

#include "core/kerr.h"
#include "model/model.h"

/* Exit codes of the AWS CLI v2 (its "return codes" page). */
enum {
  KMS_EXIT_OK = 0,
  KMS_EXIT_USAGE = 2,          /* the command line could not be parsed */
  KMS_EXIT_INTERRUPTED = 130,  /* SIGINT */
  KMS_EXIT_PARAM = 252,        /* a parameter was missing, unknown or invalid */
  KMS_EXIT_CONFIG = 253,       /* no credentials, no region, a bad profile or file */
  KMS_EXIT_SERVICE = 254,      /* the service answered with an error */
  KMS_EXIT_OTHER = 255,        /* anything else: connection, timeout, bad reply */
};

/* Every option that is not a member of the operation, as given (NULL / 0:
 * not given).  Strings point into argv. */
typedef struct kms_args {
  /* the AWS CLI's global options */
  int debug, no_verify_ssl, no_paginate, no_sign_request, no_cli_pager, version;
  int auto_prompt;             /* 1 --cli-auto-prompt, 0 --no-cli-auto-prompt, -1 neither */
  const char *endpoint_url, *output, *query, *profile, *region, *color, *ca_bundle;
  const char *read_timeout, *connect_timeout, *binary_format;
  /* options every command takes */
  const char *cli_input_json, *cli_input_yaml;
  const char *skeleton;        /* --generate-cli-skeleton's value ("input" when bare) */
  /* the paginated commands' options */
  const char *starting_token, *max_items, *page_size;
  /* what remains: the service ("cloudhsmv2") if given, the command, and the
   * operation's own parameters in order */
  const char *service;
  const char *command;
  char **params;               /* argv-like, NULL-terminated, owned (the array only) */
  int param_count;
} kms_args;

/* Read argv.  KERR_OK, or KERR_VALIDATION with the AWS CLI's message (an
 * option without its value, a value given twice) for exit code 2.  `out`
 * owns out->params (free with kms_args_free) even after a failure. */
kerr_code kms_args_parse(int argc, char **argv, kms_args *out, kerr *err);

void kms_args_free(kms_args *a);

/* 1 when `arg` is one of the options above that takes its value from the
 * next word ("--endpoint-url", not "--endpoint-url=x", not a flag). */
int kms_option_takes_value(const char *arg);

/* Run the command `a` names and print its result; returns the exit code.
 * Errors are printed on stderr as the AWS CLI prints them. */
int kms_run(const kms_args *a);

/* An argument error as the CLI prints it: its usage lines, then
 * "kms: error: " and the message, on stderr.  The caller exits with
 * KMS_EXIT_USAGE. */
void kms_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --debug: one line of libkms's diagnostics on stderr, stamped like the
 * AWS CLI's debug log.  `ctx` is unused. */
void kms_debug_line(void *ctx, const char *line);

/* `kms --cli-complete`: print the bash completions of COMP_LINE up to
 * COMP_POINT (environment), one per line; see scripts/kms-completion.bash. */
int kms_complete(void);

/* The completions of `line` (a whole command line, starting with the program
 * name) for the word that ends at byte `point`: each candidate is passed to
 * `emit`.  -1 when the line is too long to look at, else 0. */
int kms_complete_line(const char *line, size_t point, void (*emit)(void *ctx, const char *candidate), void *ctx);

/* Prompt for the command line on the terminal, starting from argv (less
 * --cli-auto-prompt), with completion.  0: *new_argv / *new_argc hold the
 * command to run (ending in --no-cli-auto-prompt), its words in *buf; the
 * caller frees *new_argv and *buf.  1: the user left without a command.
 * KMS_EXIT_INTERRUPTED: Ctrl-C.  -1: the terminal could not be used. */
int kms_prompt(int argc, char **argv, char **buf, char ***new_argv, int *new_argc);

/* Print the help of `op` of `svc`, or the overview of `svc` when op is
 * NULL, through the pager (pager_setting: as kms_pager_open's).  Returns the
 * exit code. */
int kms_help(const model_service *svc, const model_op *op, int no_pager, const char *pager_setting);

/* The version line of `kms --version`. */
void kms_print_version(FILE *out);

#endif
