/* hsm_cli_io.c - hsm-cli's input of passwords and output of replies.
 *
 * Passwords may come from a file or standard input so that they need not
 * sit in shell history or in `ps` output; they are read into secure memory
 * with a hard size cap.  Replies are printed like the aws CLI prints them,
 * so scripts written for `aws --output text` read hsm-cli the same way. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "core/secmem.h"
#include "hsm_cli.h"

/* Read at most `cap` bytes from `fp` into `buf` up to the first newline. */
static kerr_code read_line(FILE *fp, const char *what, char *buf, size_t cap, kerr *err) {
  size_t n = 0;
  int ch;
  while ((ch = fgetc(fp)) != EOF && ch != '\n') {
    if (ch == '\0') return kerr_set(err, KERR_VALIDATION, "the password from %s contains a NUL byte", what);
    if (n == cap) return kerr_set(err, KERR_VALIDATION, "the password from %s is longer than %zu bytes", what, cap);
    buf[n++] = (char)ch;
  }
  if (ferror(fp)) return kerr_set(err, KERR_VALIDATION, "cannot read the password from %s: %s", what, strerror(errno));
  if (n && buf[n - 1] == '\r') n--;
  buf[n] = '\0';
  if (!n) return kerr_set(err, KERR_VALIDATION, "the password from %s is empty", what);
  return KERR_OK;
}

kerr_code hsm_cli_read_password(const char *value, const char *path, char **out, kerr *err) {
  char *buf;
  kerr_code rc = KERR_OK;

  *out = NULL;
  if ((value == NULL) == (path == NULL))
    return kerr_set(err, KERR_VALIDATION, "give the password with exactly one of --password or --password-file");
  buf = secure_alloc(HSM_CLI_PASSWORD_MAX + 1);
  if (!buf) return kerr_set(err, KERR_INTERNAL, "out of memory");

  if (value && strcmp(value, "-") != 0) {
    size_t len = strlen(value);
    if (!len) rc = kerr_set(err, KERR_VALIDATION, "--password is empty");
    else if (len > HSM_CLI_PASSWORD_MAX)
      rc = kerr_set(err, KERR_VALIDATION, "--password is longer than %d bytes", HSM_CLI_PASSWORD_MAX);
    else memcpy(buf, value, len + 1);
  } else if (value) {
    struct termios saved, quiet;
    int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    if (tty) {
      fputs("Password: ", stderr);
      fflush(stderr);
      quiet = saved;
      quiet.c_lflag &= ~(tcflag_t)ECHO;
      tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    rc = read_line(stdin, "standard input", buf, HSM_CLI_PASSWORD_MAX, err);
    if (tty) {
      tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
      fputc('\n', stderr);
    }
  } else {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
      rc = kerr_set(err, KERR_VALIDATION, "cannot read --password-file %s: %s", path, strerror(errno));
    } else {
      char what[300];
      snprintf(what, sizeof what, "--password-file %.256s", path);
      /* stdio buffers the file; keep that buffer ours so it can be wiped. */
      char *iobuf = secure_alloc(BUFSIZ);
      if (iobuf) setvbuf(fp, iobuf, _IOFBF, BUFSIZ);
      rc = read_line(fp, what, buf, HSM_CLI_PASSWORD_MAX, err);
      fclose(fp);
      secure_free(iobuf, BUFSIZ);
    }
  }
  if (rc) {
    secure_free(buf, HSM_CLI_PASSWORD_MAX + 1);
    return rc;
  }
  *out = buf;
  return KERR_OK;
}

void hsm_cli_mask(char *text, const char *secret) {
  size_t n;
  char *hit;
  if (!text || !secret || !(n = strlen(secret))) return;
  while ((hit = strstr(text, secret)) != NULL) memset(hit, '*', n);
}

static void print_scalar(json_t *v, FILE *out) {
  if (json_is_string(v)) fputs(json_string_value(v), out);
  else if (json_is_true(v)) fputs("True", out);
  else if (json_is_false(v)) fputs("False", out);
  else if (json_is_integer(v)) fprintf(out, "%lld", (long long)json_integer_value(v));
  else if (json_is_real(v)) fprintf(out, "%g", json_real_value(v));
  else if (json_is_null(v)) fputs("None", out);
}

static int cmp_keys(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* The object's keys in sorted order (the aws CLI's text output sorts them);
 * returns the count, at most `max`. */
static size_t sorted_keys(json_t *obj, const char **keys, size_t max) {
  const char *k;
  json_t *v;
  size_t n = 0;
  json_object_foreach(obj, k, v) {
    (void)v;
    if (n < max) keys[n++] = k;
  }
  qsort(keys, n, sizeof *keys, cmp_keys);
  return n;
}

void hsm_cli_print_text(json_t *reply, FILE *out) {
  const char *keys[64];
  size_t n, i, printed = 0;

  if (!json_is_object(reply)) return;
  n = sorted_keys(reply, keys, 64);
  for (i = 0; i < n; i++) {
    json_t *v = json_object_get(reply, keys[i]);
    if (json_is_object(v) || json_is_array(v)) continue;
    if (printed++) fputc('\t', out);
    print_scalar(v, out);
  }
  if (printed) fputc('\n', out);
  for (i = 0; i < n; i++) {
    json_t *list = json_object_get(reply, keys[i]), *item;
    size_t j;
    if (!json_is_array(list)) continue;
    json_array_foreach(list, j, item) {
      const char *ikeys[64];
      size_t m, k;
      char label[128];
      snprintf(label, sizeof label, "%s", keys[i]);
      for (k = 0; label[k]; k++) label[k] = (char)(label[k] >= 'a' && label[k] <= 'z' ? label[k] - 32 : label[k]);
      fputs(label, out);
      if (!json_is_object(item)) {
        fputc('\t', out);
        print_scalar(item, out);
        fputc('\n', out);
        continue;
      }
      m = sorted_keys(item, ikeys, 64);
      for (k = 0; k < m; k++) {
        json_t *v = json_object_get(item, ikeys[k]);
        if (json_is_object(v) || json_is_array(v)) continue;
        fputc('\t', out);
        print_scalar(v, out);
      }
      fputc('\n', out);
    }
  }
}

void hsm_cli_print_json(json_t *reply, FILE *out) {
  char *text;
  if (!reply || (json_is_object(reply) && json_object_size(reply) == 0)) return;
  text = json_dumps(reply, JSON_INDENT(4) | JSON_PRESERVE_ORDER);
  if (text) {
    fputs(text, out);
    fputc('\n', out);
    free(text);
  }
}
