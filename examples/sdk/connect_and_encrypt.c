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
 *   AWS_ENDPOINT_URL=http://127.0.0.1:4599 ./connect_and_encrypt cks-0123456789abcdef0 'hello, HSM'
 *
 * Credentials, region and endpoint come from the AWS configuration, as for the
 * aws CLI (AWS_* variables, ~/.aws/credentials, ~/.aws/config). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kms/kms_ops.h>

#define POLL_INTERVAL_MS 100
#define POLL_LIMIT_MS 60000

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

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: connect_and_encrypt CUSTOM_KEY_STORE_ID [SECRET]\n");
    return 2;
  }
  const char *store_id = argv[1];
  const char *secret = argc == 3 ? argv[2] : "hello, HSM";
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
  printf("key %s created in the key store\n", key.key_metadata->key_id);

  /* 3. Encrypt: the plaintext goes in as raw bytes; libkms does the base64. */
  kms_encrypt_input enc = {0};
  enc.key_id = key.key_metadata->key_id;
  enc.plaintext.data = (const unsigned char *)secret;
  enc.plaintext.len = strlen(secret);
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
  if (opened.plaintext.len != strlen(secret) || memcmp(opened.plaintext.data, secret, opened.plaintext.len) != 0) {
    fprintf(stderr, "connect_and_encrypt: the decrypted bytes differ from the secret\n");
    goto out;
  }
  printf("decrypted with %s: %.*s\n", opened.key_id, (int)opened.plaintext.len, (const char *)opened.plaintext.data);
  status = 0;

out:
  /* The free functions wipe the plaintext before releasing it. */
  kms_decrypt_output_free(&opened);
  kms_encrypt_output_free(&sealed);
  kms_create_key_output_free(&key);
  kms_client_free(c);
  return status;
}
