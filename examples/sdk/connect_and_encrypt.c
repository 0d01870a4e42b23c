/* connect_and_encrypt.c - libkms's typed API from start to finish: connect a
 * CloudHSM custom key store, wait until it is CONNECTED, create a KMS key in
 * it, and encrypt and decrypt a secret with that key.
 *
 * The key store must exist (README, "CloudHSM key stores": create-custom-key-store,
 * or scripts/cloudhsm-quickstart.sh, whose store is already connected, which
 * is fine: connecting a connected store does nothing).
 *
 * Build and run against kmsd:
 *
 *   cc connect_and_encrypt.c $(pkg-config --cflags --libs libkms) -o connect_and_encrypt
 *   printf 'hello, HSM' | AWS_ENDPOINT_URL=http://127.0.0.1:4599 ./connect_and_encrypt cks-0123456789abcdef0
 *
 * The secret is read from standard input (up to 4 KiB, KMS's plaintext limit),
 * never from the command line, where every user of the machine could read it
 * in the process list; it is never printed either: the program reports its
 * length and whether the decrypted bytes match.  Credentials, region and
 * endpoint come from the AWS configuration, as for the aws CLI (AWS_*
 * variables, ~/.aws/credentials, ~/.aws/config). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kms/kms_ops.h>

#define POLL_INTERVAL_MS 100
#define POLL_LIMIT_MS 60000
#define SECRET_MAX 4096

static int fail(const char *what, const kms_error *err) {
  fprintf(stderr, "connect_and_encrypt: %s: %s: %s (HTTP %d, request id %s)\n", what, err->code,
          err->message, err->http_status, err->request_id[0] ? err->request_id : "none");
  return 1;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Poll DescribeCustomKeyStores until the store is CONNECTED: 0; FAILED (its
 * ConnectionErrorCode printed) or a failed call or too long: 1. */
static int wait_until_connected(kms_client *c, const char *store_id) {
  kms_error err;
  for (long waited = 0; waited <= POLL_LIMIT_MS; waited += POLL_INTERVAL_MS) {
    kms_describe_custom_key_stores_input in = {0};
    kms_describe_custom_key_stores_output out;
    in.custom_key_store_id = store_id;
    if (kms_describe_custom_key_stores(c, &in, &out, &err)) return fail("DescribeCustomKeyStores", &err);
    if (out.custom_key_stores_count != 1) {
      fprintf(stderr, "connect_and_encrypt: no key store %s\n", store_id);
      kms_describe_custom_key_stores_output_free(&out);
      return 1;
    }
    const kms_custom_key_stores_list_entry *store = &out.custom_key_stores[0];
    const char *state = store->connection_state ? store->connection_state : "";
    int connected = strcmp(state, "CONNECTED") == 0;
    int failed = strcmp(state, "FAILED") == 0;
    if (failed)
      fprintf(stderr, "connect_and_encrypt: the key store failed to connect: %s\n",
              store->connection_error_code ? store->connection_error_code : "no error code");
    kms_describe_custom_key_stores_output_free(&out);
    if (connected) return 0;
    if (failed) return 1;
    sleep_ms(POLL_INTERVAL_MS);
  }
  fprintf(stderr, "connect_and_encrypt: not CONNECTED after %d ms\n", POLL_LIMIT_MS);
  return 1;
}

/* Read the secret from standard input into `buf`: its length, or -1 when it
 * is empty or longer than SECRET_MAX bytes. */
static long read_secret(unsigned char *buf) {
  size_t n = fread(buf, 1, SECRET_MAX + 1, stdin);
  if (n == 0 || n > SECRET_MAX) return -1;
  return (long)n;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: connect_and_encrypt CUSTOM_KEY_STORE_ID < SECRET_FILE\n");
    return 2;
  }
  const char *store_id = argv[1];
  static unsigned char secret[SECRET_MAX + 1];
  long secret_len = read_secret(secret);
  if (secret_len < 0) {
    fprintf(stderr, "connect_and_encrypt: give the secret (1 to %d bytes) on standard input\n", SECRET_MAX);
    return 2;
  }
  /* Encrypt and Decrypt must name the same context; it is authenticated, not secret. */
  const kms_string_pair_in context[] = {{"purpose", "connect_and_encrypt"}};
  kms_client *c = NULL;
  kms_error err;
  int status = 1;

  kms_create_key_output key = {0};
  kms_encrypt_output sealed = {0};
  kms_decrypt_output opened = {0};

  if (kms_client_new(KMS_SERVICE_KMS, NULL, &c, &err)) return fail("configuration", &err);

  /* 1. Connect: returns at once; the server connects in the background. */
  kms_connect_custom_key_store_input connect = {0};
  kms_connect_custom_key_store_output connected;
  connect.custom_key_store_id = store_id;
  if (kms_connect_custom_key_store(c, &connect, &connected, &err)) {
    status = fail("ConnectCustomKeyStore", &err);
    goto out;
  }
  kms_connect_custom_key_store_output_free(&connected);
  if (wait_until_connected(c, store_id)) goto out;
  printf("key store %s is CONNECTED\n", store_id);

  /* 2. A key whose material is generated inside the store's HSMs. */
  kms_create_key_input create = {0};
  create.origin = "AWS_CLOUDHSM";
  create.custom_key_store_id = store_id;
  create.description = "made by connect_and_encrypt";
  if (kms_create_key(c, &create, &key, &err)) {
    status = fail("CreateKey", &err);
    goto out;
  }
  if (!key.key_metadata || !key.key_metadata->key_id) {
    fprintf(stderr, "connect_and_encrypt: CreateKey answered without KeyMetadata.KeyId\n");
    goto out;
  }
  printf("key %s created in the key store\n", key.key_metadata->key_id);

  /* 3. Encrypt: the plaintext goes in as raw bytes; libkms does the base64. */
  kms_encrypt_input enc = {0};
  enc.key_id = key.key_metadata->key_id;
  enc.plaintext.data = secret;
  enc.plaintext.len = (size_t)secret_len;
  enc.encryption_context = context;
  enc.encryption_context_count = 1;
  if (kms_encrypt(c, &enc, &sealed, &err)) {
    status = fail("Encrypt", &err);
    goto out;
  }
  printf("encrypted %zu bytes into a %zu-byte ciphertext\n", enc.plaintext.len, sealed.ciphertext_blob.len);

  /* 4. Decrypt: the ciphertext names its key; the context must match. */
  kms_decrypt_input dec = {0};
  dec.ciphertext_blob.data = sealed.ciphertext_blob.data;
  dec.ciphertext_blob.len = sealed.ciphertext_blob.len;
  dec.encryption_context = context;
  dec.encryption_context_count = 1;
  if (kms_decrypt(c, &dec, &opened, &err)) {
    status = fail("Decrypt", &err);
    goto out;
  }
  if (opened.plaintext.len != (size_t)secret_len || memcmp(opened.plaintext.data, secret, opened.plaintext.len) != 0) {
    fprintf(stderr, "connect_and_encrypt: the decrypted bytes differ from the secret\n");
    goto out;
  }
  /* The plaintext itself is not printed: a terminal's scrollback or a log is
   * no place for a secret. */
  printf("decrypted %zu bytes with %s: they match the secret\n", opened.plaintext.len,
         opened.key_id ? opened.key_id : "(no key id)");
  status = 0;

out:
  /* The free functions wipe the plaintext before releasing it. */
  kms_decrypt_output_free(&opened);
  kms_encrypt_output_free(&sealed);
  kms_create_key_output_free(&key);
  kms_client_free(c);
  memset(secret, 0, sizeof secret);
  return status;
}
