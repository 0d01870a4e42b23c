/* main.c - hsm-cli: administer the HSM clusters that kmsd manages.
 *
 * A CloudHSM cluster has its own administration outside the AWS API
 * (activation, crypto users such as `kmsuser`, logins); kmsd serves that as
 * the KmsdHsmAdmin JSON 1.1 API on its own port, SigV4-signed for service
 * `cloudhsm`.  hsm-cli is the thin client for it: each command maps to one
 * operation, credentials and region are found exactly as the aws CLI finds
 * them (lib/client/aws_config.h), and every failure ends with a non-zero exit
 * and one line on stderr naming the AWS error code:
 *   0 success, 1 the service answered an error, 2 usage,
 *   3 connection, credentials or configuration.
 * Passwords never reach the output; see docs/hsm-cli.md. */
#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/aws_config.h"
#include "client/aws_http.h"
#include "core/cli_flags.h"
#include "core/secmem.h"
#include "core/version.h"
#include "hsm_cli.h"

enum { EXIT_OK = 0, EXIT_SERVICE = 1, EXIT_USAGE = 2, EXIT_CONNECTION = 3 };

#define PROGRAM "hsm-cli"
#define MAX_ARGS 64
#define SERVICE_NAME "cloudhsm"
#define TARGET_PREFIX "KmsdHsmAdmin."

typedef enum opt_kind { OPT_VALUE, OPT_PASSWORD } opt_kind;

typedef struct opt_spec {
  const char *flag;        /* "--username" */
  const char *member;      /* JSON member: "Username" */
  opt_kind kind;
  const char *const *choices;  /* NULL-terminated, or NULL for any value */
  const char *help;
} opt_spec;

typedef struct cmd_spec {
  const char *group;       /* "cluster", "user", or NULL for a top-level command */
  const char *name;
  const char *operation;   /* KmsdHsmAdmin operation */
  const char *summary;
  opt_spec opts[4];
} cmd_spec;

static const char *const ROLES[] = {"crypto-user", "admin", NULL};
static const char *const FAILURE_KINDS[] = {"none", "network-errors", "subnet-not-found", "no-free-addresses",
                                            "internal-error", NULL};

static const cmd_spec COMMANDS[] = {
    {"cluster", "activate", "ActivateCluster",
     "Activate an INITIALIZED cluster (-> ACTIVE); the password becomes the cluster admin's.",
     {{"--password", "Password", OPT_PASSWORD, NULL, "the admin password (7 to 32 characters)"}}},
    {"cluster", "simulate-failure", "SimulateFailure",
     "Make the cluster's network fail the way a real one can, until `--kind none`.",
     {{"--kind", "Kind", OPT_VALUE, FAILURE_KINDS,
       "none | network-errors | subnet-not-found | no-free-addresses | internal-error"}}},
    {"user", "create", "CreateUser", "Create an HSM user on every HSM of the cluster.",
     {{"--username", "Username", OPT_VALUE, NULL, "1 to 31 characters of [A-Za-z0-9_]"},
      {"--role", "Role", OPT_VALUE, ROLES, "crypto-user | admin"},
      {"--password", "Password", OPT_PASSWORD, NULL, "the user's password"}}},
    {"user", "delete", "DeleteUser", "Delete an HSM user.",
     {{"--username", "Username", OPT_VALUE, NULL, "the user to delete"}}},
    {"user", "list", "ListUsers", "List the cluster's users with their role, lockout and login state.", {{0}}},
    {"user", "change-password", "ChangePassword",
     "Set a user's password; this also unlocks a locked-out user.",
     {{"--username", "Username", OPT_VALUE, NULL, "the user"},
      {"--password", "Password", OPT_PASSWORD, NULL, "the new password"}}},
    {NULL, "login", "Login",
     "Log a user in; a crypto user stays logged in until logout. Five failures in a row lock the user.",
     {{"--username", "Username", OPT_VALUE, NULL, "the user"},
      {"--password", "Password", OPT_PASSWORD, NULL, "the user's password"}}},
    {NULL, "logout", "Logout", "End a user's login session.",
     {{"--username", "Username", OPT_VALUE, NULL, "the user"}}},
};
#define NCOMMANDS (sizeof COMMANDS / sizeof *COMMANDS)

/* Global options; all optional here (what is required is checked later). */
typedef struct globals {
  const char *endpoint_url;
  const char *region;
  const char *profile;
  const char *cluster_id;
  const char *output;
  const char *ca_bundle;
  int debug;
  int help;
  int version;
} globals;

/* Flag ids: the global options, then one id for every command option
 * (which command takes which is checked once the command is known). */
enum {
  FLAG_ENDPOINT_URL = 1,
  FLAG_REGION,
  FLAG_PROFILE,
  FLAG_CLUSTER_ID,
  FLAG_OUTPUT,
  FLAG_CA_BUNDLE,
  FLAG_DEBUG,
  FLAG_HELP,
  FLAG_VERSION,
  FLAG_COMMAND_OPTION,
};

static const cli_flag GLOBAL_FLAGS[] = {
    {"--endpoint-url", NULL, FLAG_ENDPOINT_URL, 1}, {"--region", NULL, FLAG_REGION, 1},
    {"--profile", NULL, FLAG_PROFILE, 1},           {"--cluster-id", NULL, FLAG_CLUSTER_ID, 1},
    {"--output", NULL, FLAG_OUTPUT, 1},             {"--ca-bundle", NULL, FLAG_CA_BUNDLE, 1},
    {"--debug", NULL, FLAG_DEBUG, 0},               {"--help", "-h", FLAG_HELP, 0},
    {"--version", NULL, FLAG_VERSION, 0},
};
#define NGLOBAL_FLAGS (sizeof GLOBAL_FLAGS / sizeof *GLOBAL_FLAGS)
/* The globals, each command option once, and --password-file. */
#define MAX_FLAGS (NGLOBAL_FLAGS + NCOMMANDS * 4 + 1)

/* jansson keeps copies of every string it holds, passwords included; wipe
 * its blocks on free so no password lingers in freed heap memory. */
static void *json_plain_malloc(size_t n) { return malloc(n); }
static void json_wiping_free(void *p) {
  if (!p) return;
  secure_wipe(p, malloc_usable_size(p));
  free(p);
}

/* Report a usage error on one line and return EXIT_USAGE. */
#define usage_error(...) cli_usage_error(PROGRAM, __VA_ARGS__)

static void print_command_line(const cmd_spec *c, FILE *out) {
  size_t i;
  fprintf(out, "hsm-cli [global options] %s%s%s", c->group ? c->group : "", c->group ? " " : "", c->name);
  for (i = 0; i < 4 && c->opts[i].flag; i++) {
    if (c->opts[i].kind == OPT_PASSWORD) fputs(" (--password P | --password - | --password-file F)", out);
    else fprintf(out, " %s %s", c->opts[i].flag, c->opts[i].choices ? "CHOICE" : "VALUE");
  }
  fputc('\n', out);
}

static void print_global_help(FILE *out) {
  size_t i;
  fputs("usage: hsm-cli [global options] COMMAND [options]\n"
        "\n"
        "Administer the HSM clusters of a kmsd server (KmsdHsmAdmin API, SigV4 service cloudhsm).\n"
        "\n"
        "Global options (accepted anywhere on the line):\n"
        "  --endpoint-url URL   the kmsd server (or AWS_ENDPOINT_URL), e.g. http://127.0.0.1:4599\n"
        "  --region REGION      region to sign for (or AWS_REGION, AWS_DEFAULT_REGION, the profile's region)\n"
        "  --profile NAME       profile of ~/.aws/credentials and ~/.aws/config (or AWS_PROFILE)\n"
        "  --cluster-id ID      the cluster (cluster-...), required by every command\n"
        "  --output json|text   reply format (default json, or AWS_DEFAULT_OUTPUT)\n"
        "  --ca-bundle FILE     CA certificates to trust for https (or AWS_CA_BUNDLE)\n"
        "  --debug              log the request flow (never secrets) to stderr\n"
        "  -h, --help           this text; `hsm-cli COMMAND --help` for one command\n"
        "  --version            print the version and exit\n"
        "\n"
        "Every option takes its value as --option VALUE or --option=VALUE (a value that\n"
        "starts with -- must use the second form).\n"
        "\n"
        "Commands:\n",
        out);
  for (i = 0; i < NCOMMANDS; i++) {
    char name[64];
    snprintf(name, sizeof name, "%s%s%s", COMMANDS[i].group ? COMMANDS[i].group : "", COMMANDS[i].group ? " " : "",
             COMMANDS[i].name);
    fprintf(out, "  %-24s %s\n", name, COMMANDS[i].summary);
  }
  fputs("\n"
        "Passwords: --password P, or --password - to read one line from standard input\n"
        "(no echo on a terminal), or --password-file F to read the first line of F.\n"
        "\n"
        "Exit status: 0 success, 1 the service answered an error, 2 usage error,\n"
        "3 connection, credentials or configuration error.\n",
        out);
}

static void print_command_help(const cmd_spec *c, FILE *out) {
  size_t i;
  fputs("usage: ", out);
  print_command_line(c, out);
  fprintf(out, "\n%s\nKmsdHsmAdmin operation: %s\n", c->summary, c->operation);
  if (c->opts[0].flag) fputs("\nOptions:\n", out);
  for (i = 0; i < 4 && c->opts[i].flag; i++) {
    fprintf(out, "  %-18s %s\n", c->opts[i].flag, c->opts[i].help);
    if (c->opts[i].kind == OPT_PASSWORD) {
      fputs("  --password -       read the password from standard input\n", out);
      fputs("  --password-file F  read the password from the first line of F\n", out);
    }
  }
  fputs("\nThe global options (hsm-cli --help) apply; --cluster-id is required.\n", out);
}

static void print_group_help(const char *group, FILE *out) {
  size_t i;
  fprintf(out, "usage: hsm-cli [global options] %s SUBCOMMAND [options]\n\nSubcommands:\n", group);
  for (i = 0; i < NCOMMANDS; i++)
    if (COMMANDS[i].group && strcmp(COMMANDS[i].group, group) == 0)
      fprintf(out, "  %-18s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

static int is_group(const char *word) {
  size_t i;
  for (i = 0; i < NCOMMANDS; i++)
    if (COMMANDS[i].group && strcmp(COMMANDS[i].group, word) == 0) return 1;
  return 0;
}

static const cmd_spec *find_command(const char *first, const char *second, int *used_words) {
  size_t i;
  for (i = 0; i < NCOMMANDS; i++) {
    const cmd_spec *c = &COMMANDS[i];
    if (!c->group && first && strcmp(c->name, first) == 0) {
      *used_words = 1;
      return c;
    }
    if (c->group && first && second && strcmp(c->group, first) == 0 && strcmp(c->name, second) == 0) {
      *used_words = 2;
      return c;
    }
  }
  return NULL;
}

/* A command option as given: `--flag value` or `--flag=value`. */
typedef struct given_opt {
  char flag[64];
  const char *value;
} given_opt;

static const char **global_slot(globals *g, int id) {
  switch (id) {
  case FLAG_ENDPOINT_URL: return &g->endpoint_url;
  case FLAG_REGION: return &g->region;
  case FLAG_PROFILE: return &g->profile;
  case FLAG_CLUSTER_ID: return &g->cluster_id;
  case FLAG_OUTPUT: return &g->output;
  case FLAG_CA_BUNDLE: return &g->ca_bundle;
  default: return NULL;
  }
}

/* Every flag hsm-cli knows into `out` (MAX_FLAGS entries); returns how many. */
static size_t known_flags(cli_flag *out) {
  static const cli_flag password_file = {"--password-file", NULL, FLAG_COMMAND_OPTION, 1};
  size_t n = 0, i, j, k;
  for (i = 0; i < NGLOBAL_FLAGS; i++) out[n++] = GLOBAL_FLAGS[i];
  out[n++] = password_file;
  for (i = 0; i < NCOMMANDS; i++)
    for (j = 0; j < 4 && COMMANDS[i].opts[j].flag; j++) {
      for (k = 0; k < n && strcmp(out[k].name, COMMANDS[i].opts[j].flag) != 0; k++) continue;
      if (k < n) continue;
      out[n++] = (cli_flag){COMMANDS[i].opts[j].flag, NULL, FLAG_COMMAND_OPTION, 1};
    }
  return n;
}

/* Split argv into global options, positional words and command options. */
static int parse_args(int argc, char **argv, globals *g, const char **words, size_t *nwords, given_opt *opts,
                      size_t *nopts) {
  cli_flag flags[MAX_FLAGS];
  cli_parser parser;
  cli_item item;
  cli_item_kind kind;
  const char **slot;
  *nwords = *nopts = 0;
  if (argc > MAX_ARGS) return usage_error("too many arguments");
  cli_parser_init(&parser, argc, argv, flags, known_flags(flags));
  while ((kind = cli_next(&parser, &item)) != CLI_END) {
    if (kind == CLI_ERROR) return usage_error("%s", item.error);
    if (kind == CLI_WORD) {
      if (*nwords == 2) return usage_error("unexpected argument \"%.64s\"", item.value);
      words[(*nwords)++] = item.value;
      continue;
    }
    switch (item.flag->id) {
    case FLAG_HELP: g->help = 1; break;
    case FLAG_DEBUG: g->debug = 1; break;
    case FLAG_VERSION: g->version = 1; break;
    case FLAG_COMMAND_OPTION:
      if (*nopts == MAX_ARGS) return usage_error("too many options");
      snprintf(opts[*nopts].flag, sizeof opts[*nopts].flag, "%s", item.flag->name);
      opts[*nopts].value = item.value;
      (*nopts)++;
      break;
    default:
      slot = global_slot(g, item.flag->id);
      if (*slot) return usage_error("%s given twice", item.flag->name);
      if (!*item.value) return usage_error("%s is empty", item.flag->name);
      *slot = item.value;
      break;
    }
  }
  return EXIT_OK;
}

/* Print the service's error as the aws CLI does, on one line. */
static void print_service_error(const cmd_spec *c, aws_http_reply *r, const char *password) {
  char msg[sizeof r->error_message];
  snprintf(msg, sizeof msg, "%s", r->error_message);
  hsm_cli_mask(msg, password);
  fprintf(stderr, "hsm-cli: An error occurred (%s) when calling the %s operation%s%s\n", r->error_type,
          c->operation, *msg ? ": " : "", msg);
}

static int run_command(const globals *g, const cmd_spec *c, const given_opt *opts, size_t nopts) {
  const char *values[4] = {0}, *password_file = NULL;
  char *password = NULL, *body = NULL;
  aws_config cfg;
  aws_config_opts copts;
  aws_http_client *client = NULL;
  aws_http_reply reply;
  json_t *req = NULL, *doc = NULL;
  const char *output;
  size_t i, j, body_len = 0;
  kerr err;
  int code = EXIT_OK;
  kerr_code rc;

  memset(&cfg, 0, sizeof cfg);
  memset(&reply, 0, sizeof reply);
  kerr_clear(&err);

  output = g->output ? g->output : getenv("AWS_DEFAULT_OUTPUT");
  if (!output || !*output) output = "json";
  if (strcmp(output, "json") != 0 && strcmp(output, "text") != 0) {
    code = usage_error("--output must be json or text, not \"%.32s\"", output);
    goto out;
  }
  for (i = 0; i < nopts; i++) {
    int known = 0;
    if (strcmp(opts[i].flag, "--password-file") == 0) {
      for (j = 0; j < 4 && c->opts[j].flag; j++)
        if (c->opts[j].kind == OPT_PASSWORD) known = 1;
      if (!known) {
        code = usage_error("%s does not take --password-file", c->name);
        goto out;
      }
      if (password_file) {
        code = usage_error("--password-file given twice");
        goto out;
      }
      password_file = opts[i].value;
      continue;
    }
    for (j = 0; j < 4 && c->opts[j].flag; j++) {
      if (strcmp(opts[i].flag, c->opts[j].flag) != 0) continue;
      known = 1;
      if (values[j]) {
        code = usage_error("%s given twice", c->opts[j].flag);
        goto out;
      }
      values[j] = opts[i].value;
    }
    if (!known) {
      code = usage_error("%s%s%s does not take %.64s", c->group ? c->group : "", c->group ? " " : "", c->name,
                         opts[i].flag);
      goto out;
    }
  }
  if (!g->cluster_id) {
    code = usage_error("--cluster-id is required");
    goto out;
  }
  req = json_object();
  if (!req || json_object_set_new(req, "ClusterId", json_string(g->cluster_id))) goto oom;
  for (j = 0; j < 4 && c->opts[j].flag; j++) {
    const opt_spec *o = &c->opts[j];
    const char *v = values[j];
    if (o->kind == OPT_PASSWORD) {
      if (!v && !password_file) {
        code = usage_error("%s needs --password P, --password - or --password-file F", c->name);
        goto out;
      }
      rc = hsm_cli_read_password(v, password_file, &password, &err);
      if (rc) {
        code = usage_error("%s", err.msg);
        goto out;
      }
      v = password;
    } else {
      if (!v) {
        code = usage_error("%s%s%s: %s is required", c->group ? c->group : "", c->group ? " " : "", c->name,
                           o->flag);
        goto out;
      }
      if (o->choices) {
        size_t k;
        for (k = 0; o->choices[k] && strcmp(o->choices[k], v) != 0; k++) continue;
        if (!o->choices[k]) {
          code = usage_error("%s must be one of %s, not \"%.64s\"", o->flag, o->help, v);
          goto out;
        }
      }
    }
    if (json_object_set_new(req, o->member, json_string(v))) {
      code = usage_error("%s is not valid UTF-8", o->flag);
      goto out;
    }
  }

  copts.profile = g->profile;
  copts.region = g->region;
  copts.endpoint_url = g->endpoint_url;
  copts.ca_bundle = g->ca_bundle;
  rc = aws_config_load(&copts, &cfg, &err);
  if (!rc && !cfg.endpoint_url) {
    code = usage_error("--endpoint-url is required (the kmsd server, e.g. http://127.0.0.1:4599)");
    goto out;
  }
  if (!rc) rc = aws_config_require(&cfg, &err);
  if (rc) {
    fprintf(stderr, "hsm-cli: %s\n", err.msg);
    code = EXIT_CONNECTION;
    goto out;
  }
  if (g->debug)
    fprintf(stderr, "hsm-cli: profile %s, credentials from the %s, access key %s, region %s\n", cfg.profile,
            aws_cred_source_name(cfg.source), cfg.access_key_id, cfg.region);
  rc = aws_http_client_new(&cfg, SERVICE_NAME, &client, &err);
  if (rc) {
    code = rc == KERR_VALIDATION ? usage_error("%s", err.msg) : (fprintf(stderr, "hsm-cli: %s\n", err.msg),
                                                                EXIT_CONNECTION);
    goto out;
  }
  body = json_dumps(req, JSON_COMPACT);
  if (!body) goto oom;
  body_len = strlen(body);
  {
    char target[96];
    snprintf(target, sizeof target, TARGET_PREFIX "%s", c->operation);
    if (g->debug) fprintf(stderr, "hsm-cli: POST %s X-Amz-Target: %s\n", aws_http_client_endpoint(client), target);
    rc = aws_http_call(client, target, body, body_len, &reply, &err);
  }
  if (rc) {
    fprintf(stderr, "hsm-cli: %s\n", err.msg);
    code = EXIT_CONNECTION;
    goto out;
  }
  if (g->debug)
    fprintf(stderr, "hsm-cli: HTTP %ld, x-amzn-RequestId %s\n", reply.status,
            *reply.request_id ? reply.request_id : "(none)");
  if (reply.status >= 300) {
    print_service_error(c, &reply, password);
    code = EXIT_SERVICE;
    goto out;
  }
  doc = reply.body_len ? json_loadb(reply.body, reply.body_len, 0, NULL) : json_object();
  if (!json_is_object(doc)) {
    fprintf(stderr, "hsm-cli: the %s reply from %s is not a JSON object\n", c->operation, cfg.endpoint_url);
    code = EXIT_CONNECTION;
    goto out;
  }
  if (strcmp(output, "text") == 0) hsm_cli_print_text(doc, stdout);
  else hsm_cli_print_json(doc, stdout);
  if (fflush(stdout) != 0) {
    perror("hsm-cli: writing the output");
    code = EXIT_CONNECTION;
  }
  goto out;
oom:
  fputs("hsm-cli: out of memory\n", stderr);
  code = EXIT_CONNECTION;
out:
  if (body) {
    secure_wipe(body, body_len);
    free(body);
  }
  if (password) secure_free(password, HSM_CLI_PASSWORD_MAX + 1);
  json_decref(req);
  json_decref(doc);
  aws_http_reply_free(&reply);
  aws_http_client_free(client);
  aws_config_free(&cfg);
  return code;
}

int main(int argc, char **argv) {
  globals g;
  const char *words[2];
  given_opt opts[MAX_ARGS];
  size_t nwords, nopts;
  const cmd_spec *c;
  int used = 0, code;

  json_set_alloc_funcs(json_plain_malloc, json_wiping_free);
  memset(&g, 0, sizeof g);
  code = parse_args(argc, argv, &g, words, &nwords, opts, &nopts);
  if (code) return code;
  if (g.version && !g.help) {
    printf(PROGRAM " " KMSD_VERSION "\n");
    return EXIT_OK;
  }

  if (nwords >= 1 && strcmp(words[0], "help") == 0) {
    g.help = 1;
    memmove(words, words + 1, sizeof *words);
    nwords--;
  }
  if (nwords == 0) {
    if (g.help) {
      print_global_help(stdout);
      return EXIT_OK;
    }
    return usage_error("no command given");
  }
  c = find_command(words[0], nwords > 1 ? words[1] : NULL, &used);
  if (!c) {
    if (is_group(words[0])) {
      if (g.help && nwords == 1) {
        print_group_help(words[0], stdout);
        return EXIT_OK;
      }
      if (nwords == 1) {
        char names[256] = "";
        size_t i;
        for (i = 0; i < NCOMMANDS; i++)
          if (COMMANDS[i].group && strcmp(COMMANDS[i].group, words[0]) == 0)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", *names ? ", " : "",
                     COMMANDS[i].name);
        return usage_error("%s needs a subcommand: %s", words[0], names);
      }
      return usage_error("unknown command \"%.32s %.32s\"", words[0], words[1]);
    }
    return usage_error("unknown command \"%.32s\"", words[0]);
  }
  if ((size_t)used != nwords) return usage_error("unexpected argument \"%.64s\"", words[used]);
  if (g.help) {
    print_command_help(c, stdout);
    return EXIT_OK;
  }
  return run_command(&g, c, opts, nopts);
}
