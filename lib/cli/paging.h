/* paging.h - the `kms` command line's automatic pagination: many pages, one result.
 *
 * A list operation of KMS answers one page at a time (`Keys` plus `NextMarker`
 * and `Truncated`).  The AWS CLI hides that: it asks for page after page and
 * prints one document with every item, and it offers `--max-items N` (stop
 * after N items, possibly in the middle of a page, and print a `NextToken` to
 * resume from), `--starting-token T` (resume there) and `--page-size N` (the
 * operation's limit member in each request).  Scripts keep such tokens and
 * hand them back to the CLI, so `kms` must write and read exactly the tokens
 * the AWS CLI writes: base64 of the JSON object
 * `{"<input token>": "<value>", "boto_truncate_amount": <items already seen
 * of that page>}` (the second member only when a page was cut).
 *
 * Use: cli_paging_new; then, until cli_paging_prepare returns 0, send the
 * request it prepared and hand the reply to cli_paging_add; finally
 * cli_paging_result.  The module sends nothing itself, so it is tested
 * without a server.  The inputs are the operation's paginator (from the
 * model) and the user's three options; replies are outside data, so a reply
 * whose result member is not a list, a token that is not a string, or a
 * service that hands out the same token twice is an error, never a loop. */
#ifndef KMSD_CLI_PAGING_H
#define KMSD_CLI_PAGING_H

#include <jansson.h>

#include "core/kerr.h"

/* Pages fetched at most before giving up (a service that never ends a list). */
#define CLI_PAGING_MAX_PAGES 100000
/* Longest --starting-token accepted, in bytes. */
#define CLI_PAGING_MAX_TOKEN 8192

/* One operation's paginator, from the model. Every name is a top-level member. */
typedef struct cli_paging_spec {
  const char *input_token;   /* request member carrying the position ("Marker") */
  const char *output_token;  /* reply member carrying the next one ("NextMarker") */
  const char *more_results;  /* reply boolean "there is more" ("Truncated"), or NULL */
  const char *limit_key;     /* request member bounding a page ("Limit"), or NULL */
  const char *result_key;    /* reply list the pages add up ("Keys") */
} cli_paging_spec;

/* The user's options: 0 / NULL when not given. */
typedef struct cli_paging_opts {
  const char *starting_token;  /* --starting-token */
  long long max_items;         /* --max-items (> 0) */
  long long page_size;         /* --page-size (> 0) */
} cli_paging_opts;

typedef struct cli_paging cli_paging;

/* Start paginating with `spec` (borrowed; must outlive the pager).
 * KERR_VALIDATION when the starting token cannot be read (the message is the
 * AWS CLI's: "Bad starting token: ..."), or max_items / page_size are not
 * positive.  *out is NULL after a failure; free with cli_paging_free. */
kerr_code cli_paging_new(const cli_paging_spec *spec, const cli_paging_opts *opts, cli_paging **out, kerr *err);

/* NULL is allowed. */
void cli_paging_free(cli_paging *p);

/* Set up `request` (the operation's request object, modified in place) for
 * the next page: the position member and the page size.  Returns 1 when a
 * page must be fetched, 0 when the result is complete. */
int cli_paging_prepare(cli_paging *p, json_t *request);

/* Take the reply of the page just fetched (borrowed).  Its items, cut to what
 * --max-items and a starting token allow, join the result.  When `page_out`
 * is not NULL it receives a new reference to the page as the AWS CLI hands
 * it to its per-page printers (the reply with its result member cut the same
 * way); the caller owns it.  Errors:
 * KERR_VALIDATION when the result member is not a list or the token not a
 * string (message names the member), KERR_CONFLICT when the service handed
 * out the same token twice, KERR_LIMIT_EXCEEDED past CLI_PAGING_MAX_PAGES. */
kerr_code cli_paging_add(cli_paging *p, const json_t *page, json_t **page_out, kerr *err);

/* The whole result: `{"<result key>": [every item], "NextToken": "..."}`,
 * NextToken only when --max-items stopped the listing early.  A page without
 * the result member adds nothing; no page with it means no member.  Returns a
 * new reference, or NULL when out of memory. */
json_t *cli_paging_result(const cli_paging *p);

/* The resume token when --max-items stopped early, else NULL.  Owned by the
 * pager. */
const char *cli_paging_next_token(const cli_paging *p);

#endif
