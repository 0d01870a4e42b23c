/* http_listen.c - bind the listening socket before the server exists.
 *
 * kmsd binds its port first and only then opens the store, so that a port in
 * use is found before anything in the data directory is read or recovered;
 * http_server_start then serves on the socket made here (see http_server.h,
 * http_server_config.listen_fd). */
#include "http/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

kerr_code http_listen_socket(const char *host, uint16_t port, int *fd_out, kerr *err) {
  kerr_code rc = KERR_OK;
  struct sockaddr_storage ss;
  struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
  socklen_t len;
  int one = 1, fd = -1;

  *fd_out = -1;
  memset(&ss, 0, sizeof ss);
  if (host && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    len = sizeof *sin;
  } else if (host && inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    len = sizeof *sin6;
  } else {
    return kerr_set(err, KERR_VALIDATION, "'%s' is not a numeric IP address", host ? host : "");
  }
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    rc = kerr_set(err, KERR_VALIDATION, "cannot listen on %s port %u: %s", host, (unsigned)port,
                  strerror(errno));
    goto out;
  }
  /* As libmicrohttpd does for its own sockets: a restart may bind while
   * connections of the previous process linger in TIME_WAIT, and an IPv6
   * socket serves IPv6 only. */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      (ss.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
      bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, SOMAXCONN) != 0) {
    rc = kerr_set(err, KERR_VALIDATION, "cannot listen on %s port %u: %s", host, (unsigned)port,
                  strerror(errno));
    goto out;
  }
  *fd_out = fd;
  fd = -1;
out:
  if (fd >= 0) close(fd);
  return rc;
}
