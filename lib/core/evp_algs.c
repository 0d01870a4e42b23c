/* evp_algs.c - OpenSSL algorithms fetched once (see evp_algs.h). */
#include "core/evp_algs.h"

#include <pthread.h>

static EVP_MD *sha256_fetched;
static EVP_CIPHER *aes256gcm_fetched;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch_all(void) {
  sha256_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
  aes256gcm_fetched = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

const EVP_MD *evp_sha256(void) {
  pthread_once(&fetch_once, fetch_all);
  return sha256_fetched ? sha256_fetched : EVP_sha256();
}

const EVP_CIPHER *evp_aes256gcm(void) {
  pthread_once(&fetch_once, fetch_all);
  return aes256gcm_fetched ? aes256gcm_fetched : EVP_aes_256_gcm();
}
