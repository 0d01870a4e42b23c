/* test_core.c - unit tests for lib/core: codecs, error table, clock, ids, secmem,
 * the data directory lock, the command-line parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/cli_flags.h"
#include "core/codec.h"
#include "core/datadir_lock.h"
#include "core/ids.h"
#include "core/kclock.h"
#include "core/kerr.h"
#include "core/secmem.h"

static void b64_roundtrip(const char *plain, const char *expect) {
  char enc[64];
  uint8_t dec[64];
  size_t n = strlen(plain), dn = 0;
  assert_int_equal(b64_encode((const uint8_t *)plain, n, enc), strlen(expect));
  assert_string_equal(enc, expect);
  assert_int_equal(b64_decode(enc, strlen(enc), dec, &dn), 0);
  assert_int_equal(dn, n);
  assert_memory_equal(dec, plain, n);
}

static void test_b64_rfc4648_vectors(void **state) {
  (void)state;
  b64_roundtrip("", "");
  b64_roundtrip("f", "Zg==");
  b64_roundtrip("fo", "Zm8=");
  b64_roundtrip("foo", "Zm9v");
  b64_roundtrip("foob", "Zm9vYg==");
  b64_roundtrip("fooba", "Zm9vYmE=");
  b64_roundtrip("foobar", "Zm9vYmFy");
}

static void test_b64_rejects_malformed(void **state) {
  (void)state;
  uint8_t out[16];
  size_t n;
  const char *bad[] = {"Zg=", "Z===", "Zm9v\n", "Zm-v", "Zm_v", "=Zm9", "Zg==Zg==", "Zh==", "Zm9="};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(b64_decode(bad[i], strlen(bad[i]), out, &n), -1);
}

static void test_hex(void **state) {
  (void)state;
  const uint8_t in[] = {0x00, 0xab, 0xff, 0x10};
  char text[9];
  uint8_t back[4];
  size_t n;
  hex_encode(in, 4, text);
  assert_string_equal(text, "00abff10");
  assert_int_equal(hex_decode("00ABff10", 8, back, &n), 0);
  assert_int_equal(n, 4);
  assert_memory_equal(back, in, 4);
  assert_int_equal(hex_decode("0g", 2, back, &n), -1);
  assert_int_equal(hex_decode("abc", 3, back, &n), -1);
}

static void test_kerr_table(void **state) {
  (void)state;
  kerr e;
  assert_int_equal(kerr_set(&e, KERR_NOT_FOUND, "Key '%s' does not exist", "x"), KERR_NOT_FOUND);
  assert_string_equal(e.msg, "Key 'x' does not exist");
  assert_string_equal(kerr_name(KERR_NOT_FOUND), "NotFoundException");
  assert_string_equal(kerr_name(KERR_INVALID_STATE), "KMSInvalidStateException");
  assert_int_equal(kerr_http_status(KERR_INTERNAL), 500);
  assert_int_equal(kerr_http_status(KERR_DEPENDENCY_TIMEOUT), 503);
  assert_int_equal(kerr_http_status(KERR_REQUEST_TOO_LARGE), 413);
  assert_int_equal(kerr_http_status(KERR_VALIDATION), 400);
  assert_string_equal(kerr_name((kerr_code)9999), "KMSInternalException");
  assert_int_equal(kerr_http_status((kerr_code)9999), 500);
  kerr_clear(&e);
  assert_int_equal(e.code, KERR_OK);
  assert_string_equal(e.msg, "");
}

static void test_kclock_moves(void **state) {
  (void)state;
  int64_t before = kclock_now_ms();
  kclock_advance_ms(7LL * 24 * 3600 * 1000);
  int64_t after = kclock_now_ms();
  assert_true(after - before >= 7LL * 24 * 3600 * 1000);
  assert_int_equal(kclock_set_offset_ms(0), 7LL * 24 * 3600 * 1000);
  assert_int_equal(kclock_offset_ms(), 0);
}

static void test_ids(void **state) {
  (void)state;
  char a[UUID_STR_LEN], b[UUID_STR_LEN], h[18];
  assert_int_equal(uuid_v4(a), 0);
  assert_int_equal(uuid_v4(b), 0);
  assert_int_equal(strlen(a), 36);
  assert_string_not_equal(a, b);
  assert_int_equal(a[14], '4');
  assert_true(strchr("89ab", a[19]) != NULL);
  assert_int_equal(rand_hex(h, 17), 0);
  assert_int_equal(strlen(h), 17);
  assert_true(strspn(h, "0123456789abcdef") == 17);
}

static void test_request_ids(void **state) {
  (void)state;
  char first[UUID_STR_LEN], id[UUID_STR_LEN];
  assert_int_equal(request_id_new(first), 0);
  assert_int_equal(strlen(first), 36);
  assert_int_equal(first[14], '4');
  assert_true(strchr("89ab", first[19]) != NULL);
  /* Consecutive ids of one thread never repeat (the counter half is a bijection). */
  for (int i = 0; i < 10000; i++) {
    assert_int_equal(request_id_new(id), 0);
    assert_string_not_equal(id, first);
    assert_int_equal(id[8], '-');
    assert_int_equal(id[23], '-');
  }
}

static int cmp_nonce(const void *a, const void *b) { return memcmp(a, b, 12); }

/* Nonces: 12-byte draws across several batches never repeat, an oversized
 * one is refused, and a child made by fork() draws bytes the parent never
 * hands out (its copy of the parent's batch is thrown away). */
static void test_nonces(void **state) {
  enum { N = 3 * RAND_NONCE_BATCH / 12 + 5 };
  static uint8_t all[N][12];
  uint8_t big[RAND_NONCE_MAX + 1], parent_next[12], child_first[12];
  int fds[2], status = 0;
  pid_t pid;
  (void)state;
  for (size_t i = 0; i < N; i++) assert_int_equal(rand_nonce(all[i], 12), 0);
  qsort(all, N, 12, cmp_nonce);
  for (size_t i = 1; i < N; i++) assert_int_not_equal(memcmp(all[i - 1], all[i], 12), 0);
  assert_int_equal(rand_nonce(big, sizeof big), -1);

  assert_int_equal(rand_nonce(all[0], 12), 0); /* the batch is now partly used */
  assert_int_equal(pipe(fds), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    uint8_t v[12];
    int ok = rand_nonce(v, sizeof v) == 0 && write(fds[1], v, sizeof v) == (ssize_t)sizeof v;
    _exit(ok ? 0 : 1);
  }
  close(fds[1]);
  assert_int_equal(read(fds[0], child_first, sizeof child_first), (ssize_t)sizeof child_first);
  close(fds[0]);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_int_equal(rand_nonce(parent_next, sizeof parent_next), 0);
  assert_int_not_equal(memcmp(child_first, parent_next, 12), 0);
}

static void test_secmem(void **state) {
  (void)state;
  kbytes b = {secure_alloc(32), 32};
  assert_non_null(b.data);
  memset(b.data, 0x5a, b.len);
  assert_int_equal(secure_memcmp(b.data, b.data, b.len), 0);
  kbytes_wipe_free(&b);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  kbytes_wipe_free(NULL);
}

static void read_lock_file(const char *dir, char *buf, size_t cap) {
  char path[256];
  snprintf(path, sizeof path, "%s/" DATADIR_LOCK_FILE, dir);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  size_t n = fread(buf, 1, cap - 1, f);
  buf[n] = '\0';
  fclose(f);
}

/* flock belongs to an open file description, so a second take in the same
 * process is refused exactly as another process's would be. */
static void test_datadir_lock(void **state) {
  char dir[] = "/tmp/kmsd-test-lock-XXXXXX", expect[160], content[32], pid[24];
  datadir_lock *held = NULL, *other = NULL;
  kerr err;
  (void)state;
  assert_non_null(mkdtemp(dir));
  assert_int_equal(datadir_lock_take(dir, &held, &err), KERR_OK);
  assert_string_equal(datadir_lock_dir(held), dir);
  snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  read_lock_file(dir, content, sizeof content);
  assert_string_equal(content, pid);

  assert_int_equal(datadir_lock_take(dir, &other, &err), KERR_CONFLICT);
  assert_null(other);
  snprintf(expect, sizeof expect, "data directory %s is in use by kmsd (pid %ld)", dir, (long)getpid());
  assert_string_equal(err.msg, expect);

  datadir_lock_release(held);
  read_lock_file(dir, content, sizeof content);
  assert_string_equal(content, ""); /* no stale pid to mislead anyone */
  assert_int_equal(datadir_lock_take(dir, &other, &err), KERR_OK);
  datadir_lock_release(other);
  datadir_lock_release(NULL);

  assert_int_equal(datadir_lock_take("/nonexistent/kmsd-dir", &other, &err), KERR_INTERNAL);
  assert_null(other);
  assert_non_null(strstr(err.msg, "/nonexistent/kmsd-dir/" DATADIR_LOCK_FILE));

  char cmd[96];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

enum { F_LISTEN = 1, F_DEBUG, F_HELP };
static const cli_flag TEST_FLAGS[] = {
    {"--listen", NULL, F_LISTEN, 1},
    {"--debug", NULL, F_DEBUG, 0},
    {"--help", "-h", F_HELP, 0},
};

/* Parse `args` (NULL-terminated, without the program name) and describe
 * every item as text: "listen=a debug word:x END" or "... ERROR:<message>". */
static void parse_to_text(const char *const *args, char *out, size_t cap) {
  char *argv[16] = {"prog"};
  int argc = 1;
  cli_parser p;
  cli_item item;
  cli_item_kind kind;
  while (args[argc - 1]) {
    argv[argc] = (char *)args[argc - 1];
    argc++;
  }
  cli_parser_init(&p, argc, argv, TEST_FLAGS, sizeof TEST_FLAGS / sizeof *TEST_FLAGS);
  out[0] = '\0';
  do {
    size_t used = strlen(out);
    kind = cli_next(&p, &item);
    if (kind == CLI_FLAG)
      snprintf(out + used, cap - used, "%s%s%s ", item.flag->name + 2, item.value ? "=" : "",
               item.value ? item.value : "");
    else if (kind == CLI_WORD)
      snprintf(out + used, cap - used, "word:%s ", item.value);
    else if (kind == CLI_ERROR)
      snprintf(out + used, cap - used, "ERROR:%s", item.error);
    else
      snprintf(out + used, cap - used, "END");
  } while (kind == CLI_FLAG || kind == CLI_WORD);
  assert_int_equal(cli_next(&p, &item), CLI_END); /* nothing after the end or an error */
}

#define PARSES_TO(expect, ...)                                    \
  do {                                                            \
    static const char *const args_[] = {__VA_ARGS__, NULL};       \
    char got_[512];                                               \
    parse_to_text(args_, got_, sizeof got_);                      \
    assert_string_equal(got_, expect);                            \
  } while (0)

static void test_cli_flags(void **state) {
  (void)state;
  /* both value forms, the alias, words, "-" as a word, "--" ending the flags */
  PARSES_TO("listen=a listen=b help help debug word:w word:- word:--listen word:-h END", "--listen", "a",
            "--listen=b", "-h", "--help", "--debug", "w", "-", "--", "--listen", "-h");
  /* values that look odd but are values */
  PARSES_TO("listen=-5 listen= listen=--x listen=a=b END", "--listen", "-5", "--listen", "", "--listen=--x",
            "--listen=a=b");
  /* an unknown flag is named, stops the parse and swallows nothing */
  PARSES_TO("ERROR:unknown option --bogus", "--bogus", "--listen", "x");
  PARSES_TO("word:w ERROR:unknown option --bogus", "w", "--bogus=secret-value", "x");
  PARSES_TO("ERROR:unknown option -x", "-x");
  PARSES_TO("ERROR:unknown option --lis", "--lis", "a"); /* no abbreviations */
  PARSES_TO("ERROR:unknown option --LISTEN", "--LISTEN", "a");
  /* a missing value is said, not taken from the next flag */
  PARSES_TO("ERROR:--listen needs a value", "--listen");
  PARSES_TO("ERROR:--listen needs a value", "--listen", "--debug");
  PARSES_TO("debug ERROR:--listen needs a value", "--debug", "--listen", "--");
  PARSES_TO("ERROR:--debug takes no value", "--debug=1");
  PARSES_TO("END", "--");
  /* outside input is cut in messages */
  char long_flag[300], expect[200];
  memset(long_flag, 'x', sizeof long_flag - 1);
  long_flag[0] = long_flag[1] = '-';
  long_flag[sizeof long_flag - 1] = '\0';
  char *argv[] = {"prog", long_flag};
  cli_parser p;
  cli_item item;
  cli_parser_init(&p, 2, argv, TEST_FLAGS, sizeof TEST_FLAGS / sizeof *TEST_FLAGS);
  assert_int_equal(cli_next(&p, &item), CLI_ERROR);
  snprintf(expect, sizeof expect, "unknown option %.64s", long_flag);
  assert_string_equal(item.error, expect);
  /* no arguments at all */
  cli_parser_init(&p, 1, argv, TEST_FLAGS, sizeof TEST_FLAGS / sizeof *TEST_FLAGS);
  assert_int_equal(cli_next(&p, &item), CLI_END);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_b64_rfc4648_vectors), cmocka_unit_test(test_b64_rejects_malformed),
      cmocka_unit_test(test_hex),                 cmocka_unit_test(test_kerr_table),
      cmocka_unit_test(test_kclock_moves),        cmocka_unit_test(test_ids),
      cmocka_unit_test(test_request_ids),
      cmocka_unit_test(test_nonces),
      cmocka_unit_test(test_secmem),
      cmocka_unit_test(test_datadir_lock),
      cmocka_unit_test(test_cli_flags),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
