/* policy.c - the IAM policy language subset kmsd understands (see policy.h).
 *
 * A policy document is parsed once (CreateKey, PutKeyPolicy, credentials
 * load) into a small immutable structure and then evaluated on every request,
 * so evaluation does no allocation and takes no lock.
 *
 * Supported: Version ("2012-10-17", "2008-10-17" or absent), Id, Statement
 * (one object or an array), Sid, Effect, Action | NotAction,
 * Resource | NotResource, Principal (key policies only: "*", {"AWS": ...},
 * {"Service": ...}) and Condition.
 *
 * Conditions: the operators StringEquals, StringNotEquals, StringLike,
 * StringNotLike and Bool (each optionally ...IfExists) on the keys
 * kms:CallerAccount, aws:PrincipalArn and aws:PrincipalAccount.  A statement
 * using any other operator or key is kept but evaluated fail-closed: an
 * Allow statement with such a condition never applies, a Deny statement
 * treats it as satisfied.  Nothing kmsd cannot evaluate can ever grant access.
 *
 * Principals: "*" and {"AWS": "*"} match everyone; an account id or
 * arn:aws:iam::ACCT:root matches every principal of that account (reported as
 * IAM_ALLOW_ACCOUNT, or IAM_ALLOW for that root itself, so authz can demand an
 * identity policy too); any other IAM/STS ARN matches exactly.  {"Service":
 * ...} is accepted and never matches a user. */
#include "aws/policy.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aws/arn.h"
#include "core/strlist.h"

#define POLICY_MAX_BYTES 32768     /* the KMS key policy limit */
#define POLICY_MAX_STATEMENTS 256
#define POLICY_MAX_LIST 256        /* entries in one Action/Resource/Principal/value list */
#define POLICY_MAX_STRING 2048     /* one action, resource, principal or condition value */
#define POLICY_MAX_CONDITIONS 32   /* operator/key pairs in one statement */

static const char msg_invalid_principals[] =
    "Policy contains a statement with one or more invalid principals.";

typedef enum cond_op {
  COND_STRING_EQUALS,
  COND_STRING_NOT_EQUALS,
  COND_STRING_LIKE,
  COND_STRING_NOT_LIKE,
  COND_BOOL,
} cond_op;

typedef enum cond_key {
  KEY_CALLER_ACCOUNT,    /* kms:CallerAccount */
  KEY_PRINCIPAL_ARN,     /* aws:PrincipalArn */
  KEY_PRINCIPAL_ACCOUNT, /* aws:PrincipalAccount */
} cond_key;

typedef struct strlist {
  char **v;
  size_t n;
} strlist;

typedef struct condition {
  cond_op op;
  cond_key key;
  int if_exists;
  strlist values;
} condition;

typedef enum principal_kind {
  PRIN_ANY,      /* "*" */
  PRIN_ACCOUNT,  /* value: 12-digit account id */
  PRIN_ARN,      /* value: exact IAM/STS ARN */
  PRIN_SERVICE,  /* never matches a user */
} principal_kind;

typedef struct policy_principal {
  principal_kind kind;
  char *value;
} policy_principal;

typedef struct statement {
  int allow;
  int not_action;
  strlist actions;
  int not_resource;
  strlist resources;
  policy_principal *principals;
  size_t nprincipals;
  condition *conds;
  size_t nconds;
  int unsupported_condition; /* fail closed: see the file comment */
} statement;

struct iam_policy {
  iam_policy_kind kind;
  statement *stmts;
  size_t nstmts;
};

/* ---- matching ---------------------------------------------------------- */

static int char_eq(char a, char b, int icase) {
  if (icase) return tolower((unsigned char)a) == tolower((unsigned char)b);
  return a == b;
}

/* Glob match with '*' (any run, possibly empty) and '?' (one character).
 * Iterative with single-star backtracking: linear memory, no recursion, so a
 * hostile pattern cannot blow the stack. */
static int glob_match(const char *pat, const char *s, int icase) {
  const char *star = NULL, *resume = NULL;
  while (*s) {
    if (*pat == '*') {
      star = pat++;
      resume = s;
    } else if (*pat && (*pat == '?' || char_eq(*pat, *s, icase))) {
      pat++;
      s++;
    } else if (star) {
      pat = star + 1;
      s = ++resume;
    } else {
      return 0;
    }
  }
  while (*pat == '*') pat++;
  return *pat == '\0';
}

static int list_matches(const strlist *l, const char *s, int icase) {
  size_t i;
  for (i = 0; i < l->n; i++)
    if (glob_match(l->v[i], s, icase)) return 1;
  return 0;
}

/* 2: the principal matches directly, 1: through its account root, 0: not at all. */
static int principal_level(const statement *st, const char *arn, const char *account) {
  int best = 0;
  size_t i;
  for (i = 0; i < st->nprincipals && best < 2; i++) {
    const policy_principal *p = &st->principals[i];
    switch (p->kind) {
      case PRIN_ANY:
        best = 2;
        break;
      case PRIN_ACCOUNT:
        if (account && strcmp(account, p->value) == 0) {
          /* The root of that very account is the principal named, not a delegate. */
          if (arn && strncmp(arn, "arn:aws:iam::", 13) == 0 &&
              strncmp(arn + 13, p->value, ARN_ACCOUNT_MAX) == 0 &&
              strcmp(arn + 13 + ARN_ACCOUNT_MAX, ":root") == 0)
            best = 2;
          else if (best < 1)
            best = 1;
        }
        break;
      case PRIN_ARN:
        if (arn && strcmp(arn, p->value) == 0) best = 2;
        break;
      case PRIN_SERVICE:
        break;
    }
  }
  return best;
}

/* Evaluate one supported condition.  Missing keys follow AWS: negated
 * operators and ...IfExists hold, the others do not. */
static int condition_holds(const condition *c, const char *arn, const char *account) {
  const char *val = NULL;
  size_t i;
  int any = 0;
  switch (c->key) {
    case KEY_CALLER_ACCOUNT:
    case KEY_PRINCIPAL_ACCOUNT:
      val = account;
      break;
    case KEY_PRINCIPAL_ARN:
      val = arn;
      break;
  }
  if (!val || !*val)
    return c->if_exists || c->op == COND_STRING_NOT_EQUALS || c->op == COND_STRING_NOT_LIKE;
  for (i = 0; i < c->values.n && !any; i++) {
    const char *want = c->values.v[i];
    switch (c->op) {
      case COND_STRING_EQUALS:
      case COND_STRING_NOT_EQUALS:
        any = strcmp(val, want) == 0;
        break;
      case COND_STRING_LIKE:
      case COND_STRING_NOT_LIKE:
        any = glob_match(want, val, 0);
        break;
      case COND_BOOL:
        any = strcasecmp(val, want) == 0;
        break;
    }
  }
  if (c->op == COND_STRING_NOT_EQUALS || c->op == COND_STRING_NOT_LIKE) return !any;
  return any;
}

iam_decision iam_policy_evaluate(const iam_policy *p, const char *principal_arn,
                                 const char *principal_account, const char *action,
                                 const char *resource_arn) {
  int best_allow = 0;
  size_t i, j;
  if (!p || !action || !resource_arn) return IAM_NO_MATCH;
  for (i = 0; i < p->nstmts; i++) {
    const statement *st = &p->stmts[i];
    int level = 2, conds_ok = 1;
    if (list_matches(&st->actions, action, 1) == st->not_action) continue;
    if (list_matches(&st->resources, resource_arn, 0) == st->not_resource) continue;
    if (p->kind == IAM_POLICY_KEY) {
      level = principal_level(st, principal_arn, principal_account);
      if (level == 0) continue;
    }
    for (j = 0; j < st->nconds && conds_ok; j++)
      conds_ok = condition_holds(&st->conds[j], principal_arn, principal_account);
    if (!conds_ok) continue;
    if (!st->allow) return IAM_DENY;
    if (st->unsupported_condition) continue;
    if (level > best_allow) best_allow = level;
  }
  if (best_allow == 2) return IAM_ALLOW;
  if (best_allow == 1) return IAM_ALLOW_ACCOUNT;
  return IAM_NO_MATCH;
}

/* ---- parsing ----------------------------------------------------------- */

static void strlist_free(strlist *l) {
  size_t i;
  for (i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

static void statement_free(statement *st) {
  size_t i;
  strlist_free(&st->actions);
  strlist_free(&st->resources);
  for (i = 0; i < st->nprincipals; i++) free(st->principals[i].value);
  free(st->principals);
  for (i = 0; i < st->nconds; i++) strlist_free(&st->conds[i].values);
  free(st->conds);
}

void iam_policy_free(iam_policy *p) {
  size_t i;
  if (!p) return;
  for (i = 0; i < p->nstmts; i++) statement_free(&p->stmts[i]);
  free(p->stmts);
  free(p);
}

static kerr_code oom(kerr *err) { return kerr_set(err, KERR_INTERNAL, "out of memory parsing policy"); }

/* Append a copy of s to l. */
static kerr_code strlist_add(strlist *l, const char *s, kerr *err) {
  char **nv;
  char *copy;
  if (l->n >= POLICY_MAX_LIST)
    return kerr_set(err, KERR_MALFORMED_POLICY, "Policy contains a list with more than %d entries.",
                    POLICY_MAX_LIST);
  copy = strdup(s);
  if (!copy) return oom(err);
  nv = realloc(l->v, (l->n + 1) * sizeof *nv);
  if (!nv) {
    free(copy);
    return oom(err);
  }
  nv[l->n++] = copy;
  l->v = nv;
  return KERR_OK;
}

typedef int (*string_check)(const char *s);

/* Read a string or a non-empty array of strings into l, rejecting any entry
 * `check` refuses with `what` as the message. */
static kerr_code parse_strings(json_t *v, strlist *l, string_check check, const char *what,
                               kerr *err) {
  size_t i;
  json_t *e;
  kerr_code rc;
  if (json_is_string(v)) {
    if (check && !check(json_string_value(v))) return kerr_set(err, KERR_MALFORMED_POLICY, "%s", what);
    return strlist_add(l, json_string_value(v), err);
  }
  if (!json_is_array(v) || json_array_size(v) == 0)
    return kerr_set(err, KERR_MALFORMED_POLICY, "%s", what);
  json_array_foreach(v, i, e) {
    if (!json_is_string(e) || (check && !check(json_string_value(e))))
      return kerr_set(err, KERR_MALFORMED_POLICY, "%s", what);
    rc = strlist_add(l, json_string_value(e), err);
    if (rc) return rc;
  }
  return KERR_OK;
}

static int bounded(const char *s) {
  size_t n = strnlen(s, POLICY_MAX_STRING + 1);
  return n > 0 && n <= POLICY_MAX_STRING;
}

/* "*" or "service:Pattern" with a service of [a-z0-9-] and a pattern of
 * letters, digits, '*' and '?'. */
static int valid_action(const char *s) {
  const char *colon;
  const char *p;
  if (!bounded(s)) return 0;
  if (strcmp(s, "*") == 0) return 1;
  colon = strchr(s, ':');
  if (!colon || colon == s || !colon[1]) return 0;
  for (p = s; p < colon; p++)
    if (!isalnum((unsigned char)*p) && *p != '-') return 0;
  for (p = colon + 1; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '*' && *p != '?' && *p != '-' && *p != '_') return 0;
  return 1;
}

/* "*" or an ARN pattern. */
static int valid_resource(const char *s) {
  const unsigned char *p;
  if (!bounded(s)) return 0;
  if (strcmp(s, "*") == 0) return 1;
  if (strncmp(s, "arn:", 4) != 0) return 0;
  for (p = (const unsigned char *)s; *p; p++)
    if (*p < 0x21 || *p > 0x7e) return 0;
  return 1;
}

static int valid_condition_value(const char *s) {
  return strnlen(s, POLICY_MAX_STRING + 1) <= POLICY_MAX_STRING;
}

static kerr_code add_principal(statement *st, principal_kind kind, const char *value, kerr *err) {
  policy_principal *np;
  char *copy = NULL;
  if (st->nprincipals >= POLICY_MAX_LIST)
    return kerr_set(err, KERR_MALFORMED_POLICY, "Policy contains a list with more than %d entries.",
                    POLICY_MAX_LIST);
  if (value && !(copy = strdup(value))) return oom(err);
  np = realloc(st->principals, (st->nprincipals + 1) * sizeof *np);
  if (!np) {
    free(copy);
    return oom(err);
  }
  np[st->nprincipals].kind = kind;
  np[st->nprincipals].value = copy;
  st->nprincipals++;
  st->principals = np;
  return KERR_OK;
}

/* One entry of {"AWS": ...}: "*", an account id, an account root ARN or an
 * IAM/STS ARN without wildcards. */
static kerr_code add_aws_principal(statement *st, const char *s, kerr *err) {
  arn_parts a;
  kerr ignored;
  if (strcmp(s, "*") == 0) return add_principal(st, PRIN_ANY, NULL, err);
  if (arn_is_account_id(s)) return add_principal(st, PRIN_ACCOUNT, s, err);
  if (strpbrk(s, "*?") || arn_parse(s, &a, &ignored) != KERR_OK || strcmp(a.partition, "aws") != 0 ||
      (strcmp(a.service, "iam") != 0 && strcmp(a.service, "sts") != 0) || a.region[0] ||
      !arn_is_account_id(a.account))
    return kerr_set(err, KERR_MALFORMED_POLICY, msg_invalid_principals);
  if (strcmp(a.service, "iam") == 0 && strcmp(a.resource, "root") == 0)
    return add_principal(st, PRIN_ACCOUNT, a.account, err);
  return add_principal(st, PRIN_ARN, s, err);
}

static kerr_code parse_principal(json_t *v, statement *st, kerr *err) {
  const char *key;
  json_t *val, *e;
  size_t i;
  kerr_code rc;

  if (json_is_string(v)) {
    if (strcmp(json_string_value(v), "*") != 0)
      return kerr_set(err, KERR_MALFORMED_POLICY, msg_invalid_principals);
    return add_principal(st, PRIN_ANY, NULL, err);
  }
  if (!json_is_object(v) || json_object_size(v) == 0)
    return kerr_set(err, KERR_MALFORMED_POLICY, msg_invalid_principals);
  json_object_foreach(v, key, val) {
    int is_aws = strcmp(key, "AWS") == 0;
    if (!is_aws && strcmp(key, "Service") != 0)
      return kerr_set(err, KERR_MALFORMED_POLICY, msg_invalid_principals);
    if (json_is_string(val)) {
      if (!bounded(json_string_value(val)))
        return kerr_set(err, KERR_MALFORMED_POLICY, msg_invalid_principals);
      rc = is_aws ? add_aws_principal(st, json_string_value(val), err)
                  : add_principal(st, PRIN_SERVICE, json_string_value(val), err);
      if (rc) return rc;
      continue;
    }
    if (!json_is_array(val) || json_array_size(val) == 0)
      return kerr_set(err, KERR_MALFORMED_POLICY, msg_invalid_principals);
    json_array_foreach(val, i, e) {
      if (!json_is_string(e) || !bounded(json_string_value(e)))
        return kerr_set(err, KERR_MALFORMED_POLICY, msg_invalid_principals);
      rc = is_aws ? add_aws_principal(st, json_string_value(e), err)
                  : add_principal(st, PRIN_SERVICE, json_string_value(e), err);
      if (rc) return rc;
    }
  }
  return KERR_OK;
}

/* Map an operator name to a supported operator; -1 when unsupported. */
static int lookup_operator(const char *name, int *if_exists) {
  static const struct {
    const char *name;
    cond_op op;
  } ops[] = {
      {"StringEquals", COND_STRING_EQUALS}, {"StringNotEquals", COND_STRING_NOT_EQUALS},
      {"StringLike", COND_STRING_LIKE},     {"StringNotLike", COND_STRING_NOT_LIKE},
      {"Bool", COND_BOOL},
  };
  size_t i, n = strlen(name);
  *if_exists = 0;
  if (n > 8 && strcmp(name + n - 8, "IfExists") == 0) {
    *if_exists = 1;
    n -= 8;
  }
  for (i = 0; i < sizeof ops / sizeof ops[0]; i++)
    if (strlen(ops[i].name) == n && strncmp(ops[i].name, name, n) == 0) return (int)ops[i].op;
  return -1;
}

/* Condition keys are case-insensitive in IAM. */
static int lookup_key(const char *name) {
  if (strcasecmp(name, "kms:CallerAccount") == 0) return KEY_CALLER_ACCOUNT;
  if (strcasecmp(name, "aws:PrincipalArn") == 0) return KEY_PRINCIPAL_ARN;
  if (strcasecmp(name, "aws:PrincipalAccount") == 0) return KEY_PRINCIPAL_ACCOUNT;
  return -1;
}

/* Condition values may be strings, booleans or numbers; all compare as text. */
static kerr_code add_condition_value(strlist *l, json_t *v, kerr *err) {
  char num[64];
  if (json_is_string(v)) {
    if (!valid_condition_value(json_string_value(v)))
      return kerr_set(err, KERR_MALFORMED_POLICY, "Policy contains a condition value that is too long.");
    return strlist_add(l, json_string_value(v), err);
  }
  if (json_is_boolean(v)) return strlist_add(l, json_is_true(v) ? "true" : "false", err);
  if (json_is_integer(v)) {
    snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    return strlist_add(l, num, err);
  }
  return kerr_set(err, KERR_MALFORMED_POLICY,
                  "Policy contains a condition value that is not a string, boolean or number.");
}

static kerr_code parse_condition(json_t *v, statement *st, kerr *err) {
  const char *opname, *keyname;
  json_t *body, *vals, *e;
  size_t i;
  kerr_code rc;

  if (!json_is_object(v))
    return kerr_set(err, KERR_MALFORMED_POLICY, "Policy statement Condition must be an object.");
  json_object_foreach(v, opname, body) {
    int if_exists, op = lookup_operator(opname, &if_exists);
    if (!json_is_object(body) || json_object_size(body) == 0)
      return kerr_set(err, KERR_MALFORMED_POLICY,
                      "Policy statement Condition operators must map condition keys to values.");
    json_object_foreach(body, keyname, vals) {
      int key = lookup_key(keyname);
      condition *nc, c;
      memset(&c, 0, sizeof c);
      if (json_is_array(vals)) {
        if (json_array_size(vals) == 0)
          return kerr_set(err, KERR_MALFORMED_POLICY, "Policy contains a condition with no values.");
        json_array_foreach(vals, i, e) {
          rc = add_condition_value(&c.values, e, err);
          if (rc) goto bad;
        }
      } else {
        rc = add_condition_value(&c.values, vals, err);
        if (rc) goto bad;
      }
      if (op < 0 || key < 0) {
        /* Well formed but beyond what kmsd evaluates: fail closed. */
        st->unsupported_condition = 1;
        strlist_free(&c.values);
        continue;
      }
      if (st->nconds >= POLICY_MAX_CONDITIONS) {
        rc = kerr_set(err, KERR_MALFORMED_POLICY, "Policy statement has more than %d conditions.",
                      POLICY_MAX_CONDITIONS);
        goto bad;
      }
      c.op = (cond_op)op;
      c.key = (cond_key)key;
      c.if_exists = if_exists;
      nc = realloc(st->conds, (st->nconds + 1) * sizeof *nc);
      if (!nc) {
        rc = oom(err);
        goto bad;
      }
      nc[st->nconds++] = c;
      st->conds = nc;
      continue;
    bad:
      strlist_free(&c.values);
      return rc;
    }
  }
  return KERR_OK;
}

static kerr_code parse_statement(json_t *js, iam_policy_kind kind, statement *st, kerr *err) {
  const char *key;
  json_t *val, *effect, *action, *not_action, *resource, *not_resource, *prin;
  kerr_code rc;

  if (!json_is_object(js))
    return kerr_set(err, KERR_MALFORMED_POLICY, "Policy statement must be a JSON object.");
  json_object_foreach(js, key, val) {
    static const char *const fields[] = {"Sid",         "Effect",    "Action",       "NotAction",
                                         "Resource",    "NotResource", "Principal", "NotPrincipal",
                                         "Condition",   NULL};
    if (!strlist_contains(fields, key))
      return kerr_set(err, KERR_MALFORMED_POLICY, "Policy statement has an unknown field '%.64s'.", key);
  }
  val = json_object_get(js, "Sid");
  if (val && (!json_is_string(val) || strlen(json_string_value(val)) > POLICY_MAX_STRING))
    return kerr_set(err, KERR_MALFORMED_POLICY, "Policy statement Sid must be a string.");

  effect = json_object_get(js, "Effect");
  if (!effect) return kerr_set(err, KERR_MALFORMED_POLICY, "Policy statement must contain an Effect.");
  if (json_is_string(effect) && strcmp(json_string_value(effect), "Allow") == 0)
    st->allow = 1;
  else if (json_is_string(effect) && strcmp(json_string_value(effect), "Deny") == 0)
    st->allow = 0;
  else
    return kerr_set(err, KERR_MALFORMED_POLICY, "Policy statement Effect must be 'Allow' or 'Deny'.");

  action = json_object_get(js, "Action");
  not_action = json_object_get(js, "NotAction");
  if (action && not_action)
    return kerr_set(err, KERR_MALFORMED_POLICY,
                    "Policy statement must contain either Action or NotAction, not both.");
  if (!action && !not_action)
    return kerr_set(err, KERR_MALFORMED_POLICY, "Policy statement must contain actions.");
  st->not_action = not_action != NULL;
  rc = parse_strings(action ? action : not_action, &st->actions, valid_action,
                     "Policy contains a statement with one or more invalid actions.", err);
  if (rc) return rc;

  resource = json_object_get(js, "Resource");
  not_resource = json_object_get(js, "NotResource");
  if (resource && not_resource)
    return kerr_set(err, KERR_MALFORMED_POLICY,
                    "Policy statement must contain either Resource or NotResource, not both.");
  if (!resource && !not_resource)
    return kerr_set(err, KERR_MALFORMED_POLICY, "Policy statement must contain resources.");
  st->not_resource = not_resource != NULL;
  rc = parse_strings(resource ? resource : not_resource, &st->resources, valid_resource,
                     "Policy contains a statement with one or more invalid resources.", err);
  if (rc) return rc;

  prin = json_object_get(js, "Principal");
  if (json_object_get(js, "NotPrincipal"))
    return kerr_set(err, KERR_MALFORMED_POLICY, "Policy statement NotPrincipal is not supported.");
  if (kind == IAM_POLICY_IDENTITY) {
    if (prin)
      return kerr_set(err, KERR_MALFORMED_POLICY,
                      "Identity-based policy statements must not contain a Principal.");
  } else {
    if (!prin) return kerr_set(err, KERR_MALFORMED_POLICY, "Policy statement must contain a Principal.");
    rc = parse_principal(prin, st, err);
    if (rc) return rc;
  }

  val = json_object_get(js, "Condition");
  if (val) {
    rc = parse_condition(val, st, err);
    if (rc) return rc;
  }
  return KERR_OK;
}

kerr_code iam_policy_parse(const char *json, size_t len, iam_policy_kind kind, iam_policy **out,
                           kerr *err) {
  json_t *root = NULL, *stmts, *val;
  json_error_t jerr;
  iam_policy *p = NULL;
  const char *key;
  size_t i, n;
  kerr_code rc = KERR_OK;

  if (out) *out = NULL;
  if (!json || !out) return kerr_set(err, KERR_MALFORMED_POLICY, "Policy document is missing.");
  if (len == 0) return kerr_set(err, KERR_MALFORMED_POLICY, "Policy document is empty.");
  if (len > POLICY_MAX_BYTES)
    return kerr_set(err, KERR_MALFORMED_POLICY, "Policy document is larger than %d bytes.",
                    POLICY_MAX_BYTES);
  root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    rc = kerr_set(err, KERR_MALFORMED_POLICY, "Policy document is not valid JSON (line %d, column %d).",
                  jerr.line, jerr.column);
    goto out;
  }
  if (!json_is_object(root)) {
    rc = kerr_set(err, KERR_MALFORMED_POLICY, "Policy document must be a JSON object.");
    goto out;
  }
  json_object_foreach(root, key, val) {
    static const char *const fields[] = {"Version", "Id", "Statement", NULL};
    if (!strlist_contains(fields, key)) {
      rc = kerr_set(err, KERR_MALFORMED_POLICY, "Policy document has an unknown field '%.64s'.", key);
      goto out;
    }
  }
  val = json_object_get(root, "Version");
  if (val && !(json_is_string(val) && (strcmp(json_string_value(val), "2012-10-17") == 0 ||
                                       strcmp(json_string_value(val), "2008-10-17") == 0))) {
    rc = kerr_set(err, KERR_MALFORMED_POLICY,
                  "Policy Version must be '2012-10-17' or '2008-10-17'.");
    goto out;
  }
  val = json_object_get(root, "Id");
  if (val && !json_is_string(val)) {
    rc = kerr_set(err, KERR_MALFORMED_POLICY, "Policy Id must be a string.");
    goto out;
  }
  stmts = json_object_get(root, "Statement");
  if (!stmts) {
    rc = kerr_set(err, KERR_MALFORMED_POLICY, "Policy document must contain a Statement.");
    goto out;
  }
  n = json_is_array(stmts) ? json_array_size(stmts) : 1;
  if (n == 0) {
    rc = kerr_set(err, KERR_MALFORMED_POLICY, "Policy document must contain at least one statement.");
    goto out;
  }
  if (n > POLICY_MAX_STATEMENTS) {
    rc = kerr_set(err, KERR_MALFORMED_POLICY, "Policy document has more than %d statements.",
                  POLICY_MAX_STATEMENTS);
    goto out;
  }
  p = calloc(1, sizeof *p);
  if (!p || !(p->stmts = calloc(n, sizeof *p->stmts))) {
    rc = oom(err);
    goto out;
  }
  p->kind = kind;
  for (i = 0; i < n; i++) {
    /* Count the statement before parsing so a half-built one is freed too. */
    p->nstmts = i + 1;
    rc = parse_statement(json_is_array(stmts) ? json_array_get(stmts, i) : stmts, kind,
                         &p->stmts[i], err);
    if (rc) goto out;
  }
  *out = p;
  p = NULL;
out:
  iam_policy_free(p);
  json_decref(root);
  return rc;
}
