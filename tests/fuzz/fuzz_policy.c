/* fuzz_policy.c - libFuzzer target for the IAM policy parser and evaluator
 * (aws/policy.h): PutKeyPolicy and CreateKey take key policies from callers,
 * and the credentials file carries identity policies.
 *
 * The first input byte picks the kind (bit 0: key policy), the rest is the
 * document.  Invariants:
 *   - iam_policy_parse returns KERR_OK with a policy, or
 *     KERR_MALFORMED_POLICY with a message and *out left NULL;
 *   - a parsed policy evaluates, for a fixed grid of callers, actions and
 *     resources, to a defined decision, the same one twice (evaluation holds
 *     no state), never IAM_ALLOW_ACCOUNT for an identity policy, and never
 *     anything but IAM_NO_MATCH for an absent action or resource;
 *   - the same document re-serialized by jansson (sorted keys, compact)
 *     parses too and decides every grid point identically: the meaning of a
 *     policy must not depend on member order or spelling of the JSON. */
#include <jansson.h>
#include <string.h>

#include "aws/policy.h"
#include "fuzz_common.h"

static const struct {
  const char *arn, *account;
} callers[] = {
    {"arn:aws:iam::111122223333:root", "111122223333"},
    {"arn:aws:iam::111122223333:user/alice", "111122223333"},
    {"arn:aws:sts::111122223333:assumed-role/ops/session", "111122223333"},
    {"arn:aws:iam::444455556666:user/mallory", "444455556666"},
    {NULL, NULL},
};
static const char *const actions[] = {"kms:Encrypt", "kms:CreateKey", "kms:PutKeyPolicy",
                                      "kms:ConnectCustomKeyStore", "KMS:decrypt"};
static const char *const resources[] = {
    "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "arn:aws:kms:eu-west-1:444455556666:alias/other", "*"};

#define NC (sizeof callers / sizeof callers[0])
#define NA (sizeof actions / sizeof actions[0])
#define NR (sizeof resources / sizeof resources[0])

static void decide_grid(const iam_policy *p, iam_policy_kind kind, iam_decision out[NC][NA][NR]) {
  for (size_t c = 0; c < NC; c++)
    for (size_t a = 0; a < NA; a++)
      for (size_t r = 0; r < NR; r++) {
        iam_decision d = iam_policy_evaluate(p, callers[c].arn, callers[c].account, actions[a],
                                             resources[r]);
        FUZZ_CHECK(d == IAM_NO_MATCH || d == IAM_ALLOW || d == IAM_ALLOW_ACCOUNT || d == IAM_DENY,
                   "decision is one of the enum");
        FUZZ_CHECK(!(kind == IAM_POLICY_IDENTITY && d == IAM_ALLOW_ACCOUNT),
                   "identity policies never allow through an account");
        FUZZ_CHECK(d == iam_policy_evaluate(p, callers[c].arn, callers[c].account, actions[a],
                                            resources[r]),
                   "evaluation is deterministic");
        out[c][a][r] = d;
      }
  FUZZ_CHECK(iam_policy_evaluate(p, callers[0].arn, callers[0].account, NULL, resources[0]) ==
                 IAM_NO_MATCH,
             "no action, no match");
  FUZZ_CHECK(iam_policy_evaluate(p, callers[0].arn, callers[0].account, actions[0], NULL) ==
                 IAM_NO_MATCH,
             "no resource, no match");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static iam_decision first[NC][NA][NR], second[NC][NA][NR];
  iam_policy_kind kind;
  iam_policy *p = (iam_policy *)1, *p2 = NULL;
  kerr err;
  kerr_code rc;
  const char *doc;
  size_t len;
  json_t *root;
  char *redump;

  if (size == 0) return 0;
  kind = (data[0] & 1) ? IAM_POLICY_KEY : IAM_POLICY_IDENTITY;
  /* An exact-size copy that is not NUL-terminated: the parser gets a length. */
  char *buf = malloc(size - 1 ? size - 1 : 1);
  if (!buf) abort();
  memcpy(buf, data + 1, size - 1);
  doc = buf;
  len = size - 1;

  kerr_clear(&err);
  rc = iam_policy_parse(doc, len, kind, &p, &err);
  if (rc != KERR_OK) {
    FUZZ_CHECK(rc == KERR_MALFORMED_POLICY, "a rejected policy is MalformedPolicyDocument");
    FUZZ_CHECK(p == NULL, "no policy after a failure");
    FUZZ_CHECK(fuzz_msg_ok(err.msg, sizeof err.msg), "rejection has a message");
    free(buf);
    return 0;
  }
  FUZZ_CHECK(p != NULL, "a policy after success");
  decide_grid(p, kind, first);

  root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, NULL);
  FUZZ_CHECK(root != NULL, "an accepted policy is JSON");
  redump = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
  FUZZ_CHECK(redump != NULL, "jansson re-serializes the document");
  rc = iam_policy_parse(redump, strlen(redump), kind, &p2, &err);
  /* Re-serialization may only grow the text past the size limit. */
  if (rc == KERR_OK) {
    decide_grid(p2, kind, second);
    FUZZ_CHECK(memcmp(first, second, sizeof first) == 0,
               "the re-serialized policy decides exactly like the original");
  } else {
    FUZZ_CHECK(strlen(redump) > len, "the re-serialized policy parses");
  }
  iam_policy_free(p2);
  free(redump);
  json_decref(root);
  iam_policy_free(p);
  free(buf);
  return 0;
}
