/* pager.c - output to standard output or through a pager; see pager.h.
 *
 * The pager runs as `/bin/sh -c COMMAND` (users write pager settings as
 * shell commands: "less -S", "most") reading a pipe.  While it runs, `kms`
 * ignores SIGINT, which belongs to the pager (less uses it to stop a search),
 * and SIGPIPE: a user who quits the pager before the end is not an error. */
#include "pager.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

void kms_pager_open(kms_pager *p, int disabled, const char *configured) {
  memset(p, 0, sizeof *p);
  if (disabled || !isatty(STDOUT_FILENO))
    return;
  if (configured == NULL)
    configured = "less";
  if (configured[0] == '\0')
    return;
  p->command = strdup(configured);
}

static int start(kms_pager *p) {
  int fds[2];
  if (pipe(fds) != 0)
    return -1;
  if (getenv("LESS") == NULL)
    setenv("LESS", "FRX", 1);
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    dup2(fds[0], STDIN_FILENO);
    close(fds[0]);
    close(fds[1]);
    execl("/bin/sh", "sh", "-c", p->command, (char *)NULL);
    _exit(127);
  }
  close(fds[0]);
  p->pipe = fdopen(fds[1], "w");
  if (p->pipe == NULL) {
    close(fds[1]);
    return -1;
  }
  p->pid = pid;
  signal(SIGINT, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  return 0;
}

int kms_pager_write(kms_pager *p, const char *text, size_t len) {
  if (len == 0 || p->gone)
    return 0;
  if (p->command == NULL) {
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
      if (errno == EPIPE)
        return 0;
      fprintf(stderr, "\n[Errno %d] %s\n", errno, strerror(errno));
      return -1;
    }
    return 0;
  }
  if (p->pipe == NULL && start(p) != 0) {
    fprintf(stderr, "\nUnable to start the pager \"%s\": %s\n", p->command, strerror(errno));
    return -1;
  }
  if (fwrite(text, 1, len, p->pipe) != len)
    p->gone = 1; /* the pager quit early: the rest is not wanted */
  return 0;
}

void kms_pager_close(kms_pager *p) {
  if (p->pipe != NULL) {
    fclose(p->pipe);
    int status;
    while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  free(p->command);
  memset(p, 0, sizeof *p);
}

int kms_terminal_width(void) {
  struct winsize ws;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  return 80;
}
