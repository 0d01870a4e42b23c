/* principal.h - who is calling: the identity SigV4 verification yields.
 *
 * A principal is loaded from the credentials file (see credentials.h) and
 * lives as long as the credentials store that owns it; request code only
 * ever holds `const principal *`.  It carries no secret. */
#ifndef KMSD_AWS_PRINCIPAL_H
#define KMSD_AWS_PRINCIPAL_H

#include <stdbool.h>

struct iam_policy;

#define ACCOUNT_ID_LEN 12
#define PRINCIPAL_ARN_MAX 2048
#define ACCESS_KEY_ID_MAX 128

typedef struct principal {
  char access_key_id[ACCESS_KEY_ID_MAX + 1];
  char account_id[ACCOUNT_ID_LEN + 1];  /* 12 digits */
  char arn[PRINCIPAL_ARN_MAX + 1];      /* arn:aws:iam::111122223333:root, :user/alice, ... */
  bool is_root;                         /* the account's root: implicitly allowed in its account */
  bool is_admin;                        /* may use kmsd's admin API ("admin": true in the file) */
  const struct iam_policy *identity_policy; /* NULL: no identity policy (nothing allowed unless root) */
} principal;

#endif
