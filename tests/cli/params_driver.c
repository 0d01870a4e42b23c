/* params_driver.c - the `kms` command line's parameter layer alone, for
 * tests/e2e/test_cli_params.py, which compares it with the AWS CLI.
 *
 * usage:
 *   cli_params_driver [--raw] [--input-json TEXT | --input-yaml TEXT] SERVICE COMMAND [TOKEN...]
 *       the request built from the tokens (lib/cli/params.h) and checked
 *       (lib/cli/validate.h), as `kms` builds and checks it: compact JSON
 *       on stdout and exit 0, or the exit code the build gives (252 for a
 *       validation report) with the message on stderr.  --raw is --cli-binary-format raw-in-base64-out.
 *   cli_params_driver --skeleton input|yaml-input|output SERVICE COMMAND
 *       the template (lib/cli/skeleton.h); JSON with an indent of 4.
 *   cli_params_driver --names SERVICE
 *       one line per operation: the command, then its option names
 *       (booleans with their --no- form), tab-separated.
 *   cli_params_driver --yaml
 *       the YAML document on stdin as compact JSON (lib/cli/cli_yaml.h);
 *       exit 1 with the message on stderr when it is refused.
 * SERVICE is kms or cloudhsmv2, COMMAND the CLI's name (create-key).
 * Exit 64 on a usage error of the driver itself.  Built by CMake for the
 * tests, never installed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_yaml.h"
#include "cli/params.h"
#include "cli/skeleton.h"
#include "cli/validate.h"

static int usage(void) {
  fprintf(stderr, "usage: cli_params_driver [--raw] [--input-json TEXT | --input-yaml TEXT] SERVICE COMMAND "
                  "[TOKEN...]\n       cli_params_driver --skeleton input|yaml-input|output SERVICE COMMAND\n"
                  "       cli_params_driver --yaml < document\n");
  return 64;
}

static const model_op *find(const char *service, const char *command) {
  const model_service *svc = strcmp(service, "kms") == 0 ? &model_kms
                             : strcmp(service, "cloudhsmv2") == 0 ? &model_cloudhsmv2 : NULL;
  return svc ? cli_find_op(svc, command) : NULL;
}

static int print_json(const json_t *v, size_t flags) {
  char *text = json_dumps(v, flags | JSON_ENCODE_ANY);
  if (!text) return 70;
  printf("%s\n", text);
  free(text);
  return 0;
}

static int yaml_mode(void) {
  size_t cap = 1 << 16, len = 0, n;
  char *buf = malloc(cap);
  json_t *doc = NULL;
  kerr err;
  int rc;
  if (!buf) return 70;
  while ((n = fread(buf + len, 1, cap - len, stdin)) > 0) {
    len += n;
    if (len == cap) {
      char *grown;
      if (cap > CLI_YAML_MAX_INPUT * 2u) break;
      grown = realloc(buf, cap * 2);
      if (!grown) {
        free(buf);
        return 70;
      }
      buf = grown;
      cap *= 2;
    }
  }
  if (cli_yaml_load(buf, len, &doc, &err) != KERR_OK) {
    fprintf(stderr, "%s\n", err.msg);
    free(buf);
    return 1;
  }
  free(buf);
  rc = print_json(doc, JSON_COMPACT);
  json_decref(doc);
  return rc;
}

static int skeleton_mode(const char *kind, const model_op *op) {
  kerr err;
  json_t *doc = NULL;
  int rc;
  if (strcmp(kind, "yaml-input") == 0) {
    char *text = NULL;
    size_t len = 0;
    if (cli_skeleton_yaml_input(op, &text, &len, &err) != KERR_OK) {
      fprintf(stderr, "%s\n", err.msg);
      return 70;
    }
    fwrite(text, 1, len, stdout);
    free(text);
    return 0;
  }
  if (strcmp(kind, "input") == 0) rc = cli_skeleton_input(op, &doc, &err);
  else if (strcmp(kind, "output") == 0) rc = cli_skeleton_output(op, &doc, &err);
  else return usage();
  if (rc != KERR_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 70;
  }
  rc = print_json(doc, JSON_INDENT(4));
  json_decref(doc);
  return rc;
}

static int names_mode(const char *service) {
  const model_service *svc = strcmp(service, "kms") == 0 ? &model_kms
                             : strcmp(service, "cloudhsmv2") == 0 ? &model_cloudhsmv2 : NULL;
  char name[160];
  if (!svc) return usage();
  for (size_t i = 0; i < svc->op_count; i++) {
    const model_op *op = &svc->ops[i];
    printf("%s", cli_kebab_name(op->name, name, sizeof name));
    for (size_t k = 0; op->input && k < op->input->member_count; k++) {
      const model_member *m = &op->input->members[k];
      cli_kebab_name(m->name, name, sizeof name);
      printf("\t--%s", name);
      if (m->shape->type == MODEL_BOOLEAN) printf("\t--no-%s", name);
    }
    printf("\n");
  }
  return 0;
}

int main(int argc, char **argv) {
  cli_params_opts opts = {0};
  json_t *input = NULL, *request = NULL;
  char *report = NULL;
  const model_op *op;
  int i = 1, exit_code = 0, rc;
  kerr err;

  if (argc == 2 && strcmp(argv[1], "--yaml") == 0) return yaml_mode();
  if (argc == 3 && strcmp(argv[1], "--names") == 0) return names_mode(argv[2]);
  if (argc == 5 && strcmp(argv[1], "--skeleton") == 0) {
    op = find(argv[3], argv[4]);
    return op ? skeleton_mode(argv[2], op) : usage();
  }
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--raw") == 0) {
      opts.binary_raw_in_base64_out = 1;
    } else if ((strcmp(argv[i], "--input-json") == 0 || strcmp(argv[i], "--input-yaml") == 0) && i + 1 < argc &&
               !input) {
      if (argv[i][8] == 'j') {
        json_error_t je;
        input = json_loads(argv[i + 1], JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
        if (!input) {
          fprintf(stderr, "bad --input-json: %s\n", je.text);
          return 64;
        }
      } else if (cli_yaml_load(argv[i + 1], strlen(argv[i + 1]), &input, &err) != KERR_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 252;
      }
      i++;
    } else {
      break;
    }
  }
  if (argc - i < 2) {
    json_decref(input);
    return usage();
  }
  op = find(argv[i], argv[i + 1]);
  if (!op) {
    json_decref(input);
    return usage();
  }
  opts.cli_input = input;
  rc = cli_params_build(op, argc - i - 2, argv + i + 2, &opts, &request, &exit_code, &err);
  json_decref(input);
  if (rc != KERR_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return exit_code;
  }
  if (cli_validate_request(op, request, &report, &err) != KERR_OK) {
    fprintf(stderr, "%s\n", report ? report : err.msg);
    free(report);
    json_decref(request);
    return CLI_PARAMS_EXIT_PARAM;
  }
  rc = print_json(request, JSON_COMPACT);
  json_decref(request);
  return rc;
}
