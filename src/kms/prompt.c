/* prompt.c - `kms --cli-auto-prompt`: the command line typed at a prompt,
 * with completion from the model.
 *
 * The AWS CLI v2 can prompt for a command instead of taking it from argv
 * (`--cli-auto-prompt`, or `cli_auto_prompt = on | on-partial` in the
 * profile, AWS_CLI_AUTO_PROMPT in the environment).  `kms` does the same on a
 * terminal with a one-line editor: the prompt starts with what was given on
 * the command line, Tab completes the word under the cursor (the same
 * candidates as bash completion: commands, options, enum values; a second
 * Tab lists them when there are several), Backspace and Ctrl-U edit, Enter
 * runs the line, Ctrl-C ends with exit code 130 and Ctrl-D ends without
 * running anything.  The line is then split as a shell splits
 * words (blanks, 'single' and "double" quotes, backslash), so a command
 * typed at the prompt means what it means in a script. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "kms_tool.h"

#define PROMPT_LINE_MAX 8192
#define PROMPT_MAX_CANDIDATES 512

static const char prompt_text[] = "> kms ";

typedef struct candidates {
  char *item[PROMPT_MAX_CANDIDATES];
  int n;
} candidates;

static void gather(void *ctx, const char *candidate) {
  candidates *c = ctx;
  if (c->n < PROMPT_MAX_CANDIDATES) {
    c->item[c->n] = strdup(candidate);
    if (c->item[c->n] != NULL)
      c->n++;
  }
}

static void candidates_free(candidates *c) {
  for (int i = 0; i < c->n; i++)
    free(c->item[i]);
  c->n = 0;
}

static void redraw(const char *line) {
  fprintf(stdout, "\r\033[K%s%s", prompt_text, line);
  fflush(stdout);
}

/* Tab: complete the last word of `line` (the cursor is always at the end). */
static void complete_at_end(char *line, size_t *len, int listing) {
  candidates c;
  char full[PROMPT_LINE_MAX + 8];
  memset(&c, 0, sizeof c);
  snprintf(full, sizeof full, "kms %s", line);
  if (kms_complete_line(full, strlen(full), gather, &c) != 0 || c.n == 0)
    goto out;
  size_t word_start = *len;
  while (word_start > 0 && line[word_start - 1] != ' ')
    word_start--;
  size_t have = *len - word_start;
  /* The longest prefix every candidate shares. */
  size_t common = strlen(c.item[0]);
  for (int i = 1; i < c.n; i++) {
    size_t k = 0;
    while (k < common && c.item[i][k] == c.item[0][k])
      k++;
    common = k;
  }
  if (c.n == 1) {
    int n = snprintf(line + word_start, PROMPT_LINE_MAX - word_start, "%s ", c.item[0]);
    if (n > 0 && (size_t)n < PROMPT_LINE_MAX - word_start)
      *len = word_start + (size_t)n;
  } else if (common > have && word_start + common < PROMPT_LINE_MAX) {
    memcpy(line + word_start, c.item[0], common);
    *len = word_start + common;
    line[*len] = '\0';
  } else if (listing) {
    fputs("\r\n", stdout);
    for (int i = 0; i < c.n; i++)
      fprintf(stdout, "%s\r\n", c.item[i]);
  }
  line[*len] = '\0';
out:
  candidates_free(&c);
}

/* Read one line in raw mode.  0: a line; 1: Ctrl-D;
 * KMS_EXIT_INTERRUPTED: Ctrl-C; -1: the terminal failed. */
static int read_line(char *line, size_t *len) {
  struct termios saved, raw;
  int rc = -1, last_was_tab = 0;
  if (tcgetattr(STDIN_FILENO, &saved) != 0)
    return -1;
  raw = saved;
  raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ISIG);
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) != 0)
    return -1;
  redraw(line);
  for (;;) {
    unsigned char ch;
    ssize_t n = read(STDIN_FILENO, &ch, 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    if (ch == '\r' || ch == '\n') {
      rc = 0;
      break;
    }
    if (ch == 3) { /* Ctrl-C */
      rc = KMS_EXIT_INTERRUPTED;
      break;
    }
    if (ch == 4) { /* Ctrl-D */
      rc = 1;
      break;
    }
    if (ch == '\t') {
      complete_at_end(line, len, last_was_tab);
      last_was_tab = 1;
      redraw(line);
      continue;
    }
    last_was_tab = 0;
    if (ch == 127 || ch == 8) {
      if (*len > 0)
        line[--*len] = '\0';
    } else if (ch == 21) { /* Ctrl-U */
      *len = 0;
      line[0] = '\0';
    } else if (ch >= 32 && *len + 1 < PROMPT_LINE_MAX) {
      line[(*len)++] = (char)ch;
      line[*len] = '\0';
    }
    redraw(line);
  }
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
  fputs("\n", stdout);
  fflush(stdout);
  return rc;
}

/* `arg` as the shell would read it back: bare when safe, else 'quoted'. */
static void append_quoted(char *line, size_t *len, const char *arg) {
  int plain = arg[0] != '\0';
  for (const char *p = arg; *p != '\0'; p++)
    if (strchr(" \t'\"\\$`!*?[]{}()<>|&;#~", *p) != NULL)
      plain = 0;
  size_t room = PROMPT_LINE_MAX - *len;
  int n;
  if (plain) {
    n = snprintf(line + *len, room, "%s ", arg);
  } else {
    char quoted[PROMPT_LINE_MAX];
    size_t q = 0;
    quoted[q++] = '\'';
    for (const char *p = arg; *p != '\0' && q + 5 < sizeof quoted; p++) {
      if (*p == '\'') {
        memcpy(quoted + q, "'\\''", 4);
        q += 4;
      } else {
        quoted[q++] = *p;
      }
    }
    quoted[q++] = '\'';
    quoted[q] = '\0';
    n = snprintf(line + *len, room, "%s ", quoted);
  }
  if (n > 0 && (size_t)n < room)
    *len += (size_t)n;
}

/* Split `line` into words as a shell does (no expansions).  The words point
 * into `buf`, which the caller frees. */
static int split_words(const char *line, char **buf, char ***words, int *count) {
  size_t len = strlen(line);
  char *out = malloc(len + 1), *dst;
  char **list = calloc(len / 2 + 3, sizeof *list);
  int n = 0, in_word = 0;
  if (out == NULL || list == NULL) {
    free(out);
    free(list);
    return -1;
  }
  dst = out;
  for (const char *p = line; *p != '\0'; p++) {
    if (*p == ' ' || *p == '\t') {
      if (in_word) {
        *dst++ = '\0';
        in_word = 0;
      }
      continue;
    }
    if (!in_word) {
      list[n++] = dst;
      in_word = 1;
    }
    if (*p == '\'') {
      for (p++; *p != '\0' && *p != '\''; p++)
        *dst++ = *p;
      if (*p == '\0')
        break;
    } else if (*p == '"') {
      for (p++; *p != '\0' && *p != '"'; p++) {
        if (*p == '\\' && (p[1] == '"' || p[1] == '\\' || p[1] == '$' || p[1] == '`'))
          p++;
        *dst++ = *p;
      }
      if (*p == '\0')
        break;
    } else if (*p == '\\' && p[1] != '\0') {
      *dst++ = *++p;
    } else {
      *dst++ = *p;
    }
  }
  *dst = '\0';
  *buf = out;
  *words = list;
  *count = n;
  return 0;
}

int kms_prompt(int argc, char **argv, char **buf, char ***new_argv, int *new_argc) {
  char line[PROMPT_LINE_MAX] = "";
  size_t len = 0;
  char **words = NULL;
  int count = 0;
  *buf = NULL;
  *new_argv = NULL;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--cli-auto-prompt") != 0)
      append_quoted(line, &len, argv[i]);
  int rc = read_line(line, &len);
  if (rc != 0)
    return rc;
  if (split_words(line, buf, &words, &count) != 0)
    return -1;
  /* argv[0], the words, and a stop so the new line is not prompted again. */
  char **args = calloc((size_t)count + 3, sizeof *args);
  if (args == NULL) {
    free(words);
    free(*buf);
    *buf = NULL;
    return -1;
  }
  args[0] = argv[0];
  memcpy(args + 1, words, (size_t)count * sizeof *words);
  static char no_prompt[] = "--no-cli-auto-prompt";
  args[count + 1] = no_prompt;
  free(words);
  *new_argv = args;
  *new_argc = count + 2;
  return 0;
}
