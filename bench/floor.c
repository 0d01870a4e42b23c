/* floor.c - the fastest a libmicrohttpd server can answer, as a benchmark baseline.
 *
 * kmsd's numbers only mean something next to what its HTTP layer alone costs
 * on the same machine: this server runs libmicrohttpd in the same threading
 * mode as kmsd (epoll, internal polling thread pool), reads the whole request
 * body like kmsd must, and answers every POST with a fixed 200 JSON body.
 * The difference to kmsd is the price of SigV4, validation, crypto and storage.
 *
 *   floor PORT [THREADS]     (THREADS defaults to the number of CPUs)
 *
 * Runs until SIGINT or SIGTERM. */
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char reply_body[] =
    "{\"CiphertextBlob\":\"AQIDAHhwYXlsb2FkLW9mLWEtZml4ZWQtbGVuZ3RoLWZvci10aGUtZmxvb3I=\","
    "\"KeyId\":\"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\","
    "\"EncryptionAlgorithm\":\"SYMMETRIC_DEFAULT\"}";

static struct MHD_Response *reply;
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

/* Consume the body in as many chunks as MHD delivers, then answer.  The
 * per-connection pointer only marks "headers seen" so the first call (which
 * carries no data) is told to continue. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size,
                                  void **con_cls) {
  static int headers_seen;
  (void)cls, (void)url, (void)method, (void)version, (void)upload_data;
  if (*con_cls == NULL) {
    *con_cls = &headers_seen;
    return MHD_YES;
  }
  if (*upload_size != 0) {
    *upload_size = 0;
    return MHD_YES;
  }
  return MHD_queue_response(conn, MHD_HTTP_OK, reply);
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s PORT [THREADS]\n", argv[0]);
    return 2;
  }
  char *end = NULL;
  long port = strtol(argv[1], &end, 10);
  if (*argv[1] == '\0' || *end != '\0' || port < 1 || port > 65535) {
    fprintf(stderr, "floor: bad port '%s'\n", argv[1]);
    return 2;
  }
  long threads = sysconf(_SC_NPROCESSORS_ONLN);
  if (argc == 3) {
    threads = strtol(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || threads < 1 || threads > 1024) {
      fprintf(stderr, "floor: bad thread count '%s'\n", argv[2]);
      return 2;
    }
  }
  if (threads < 1) threads = 1;

  reply = MHD_create_response_from_buffer(sizeof reply_body - 1, (void *)reply_body,
                                          MHD_RESPMEM_PERSISTENT);
  if (reply == NULL ||
      MHD_add_response_header(reply, "Content-Type", "application/x-amz-json-1.1") != MHD_YES ||
      MHD_add_response_header(reply, "x-amzn-RequestId",
                              "00000000-0000-4000-8000-000000000000") != MHD_YES) {
    fprintf(stderr, "floor: cannot build the reply\n");
    return 1;
  }

  unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
  struct MHD_Daemon *d;
  if (threads > 1)
    d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, NULL,
                         MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
                         MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_END);
  else
    d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, NULL,
                         MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_END);
  if (d == NULL) {
    fprintf(stderr, "floor: cannot listen on port %ld\n", port);
    MHD_destroy_response(reply);
    return 1;
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  printf("floor listening on port %ld with %ld threads\n", port, threads);
  fflush(stdout);
  while (!stop_requested) pause();

  MHD_stop_daemon(d);
  MHD_destroy_response(reply);
  return 0;
}
