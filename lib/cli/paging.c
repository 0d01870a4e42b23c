/* paging.c - automatic pagination for `kms`: see paging.h for the contract.
 *
 * The state is small: the position to ask for next (a JSON value, NULL when
 * the listing is over), how many items the user still wants, how many items
 * of the first page a starting token says were already seen, and the items
 * gathered so far.  Every rule below is what the AWS CLI does, so that
 * output and resume tokens agree byte for byte:
 *   - a reply whose "more results" member is false, or that carries no next
 *     position, ends the listing;
 *   - --max-items cuts the page that crosses it and records a token that
 *     points at that page again, with the number of its items already given;
 *   - --max-items met exactly at a page's end records the next position as
 *     the token, without a count;
 *   - a starting token's count drops that many items of the first page. */
#include "cli/paging.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"

struct cli_paging {
  const cli_paging_spec *spec;
  long long max_items;        /* 0: no limit */
  long long page_size;        /* 0: the service's default */
  json_t *position;           /* next value of the input token; NULL: none */
  long long skip_first;       /* items of the first page already seen */
  long long items_seen;       /* items handed out so far */
  long pages;                 /* pages taken */
  int done;
  json_t *items;              /* every item so far; NULL until a page had the member */
  char *next_token;           /* resume token when --max-items stopped early */
};

/* Python's json.dumps(token) for the one-member (or two-member) object the
 * AWS CLI encodes, then base64.  Python writes ", " and ": " between items
 * and escapes non-ASCII, which JSON_ENSURE_ASCII also does. */
static kerr_code make_token(cli_paging *p, const json_t *position, long long truncate_amount, kerr *err) {
  kerr_code rc = KERR_OK;
  json_t *name_json = json_string(p->spec->input_token);
  char *name = NULL, *value = NULL, *text = NULL;
  size_t cap;
  int n;
  name = name_json != NULL ? json_dumps(name_json, JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;
  value = json_dumps(position, JSON_ENCODE_ANY | JSON_ENSURE_ASCII | JSON_COMPACT);
  cap = (name != NULL && value != NULL) ? strlen(name) + strlen(value) + 64 : 0;
  text = cap > 0 ? malloc(cap) : NULL;
  if (text == NULL) {
    rc = kerr_set(err, KERR_INTERNAL, "out of memory");
    goto out;
  }
  if (truncate_amount > 0)
    n = snprintf(text, cap, "{%s: %s, \"boto_truncate_amount\": %lld}", name, value, truncate_amount);
  else
    n = snprintf(text, cap, "{%s: %s}", name, value);
  if (n < 0 || (size_t)n >= cap) {
    rc = kerr_set(err, KERR_INTERNAL, "resume token does not fit");
    goto out;
  }
  free(p->next_token);
  p->next_token = malloc(b64_encoded_size((size_t)n));
  if (p->next_token == NULL) {
    rc = kerr_set(err, KERR_INTERNAL, "out of memory");
    goto out;
  }
  (void)b64_encode((const uint8_t *)text, (size_t)n, p->next_token);
out:
  json_decref(name_json);
  free(name);
  free(value);
  free(text);
  return rc;
}

/* A token in the old form: "<marker>___<count>", or a plain marker. */
static kerr_code read_plain_token(cli_paging *p, const char *token, kerr *err) {
  const char *sep = strstr(token, "___");
  size_t marker_len = strlen(token);
  if (sep != NULL) {
    const char *count = sep + 3;
    char *end = NULL;
    if (strstr(count, "___") != NULL) {
      marker_len = (size_t)(sep - token);     /* more parts than positions: the first one */
    } else if (*count != '\0') {
      long long v = strtoll(count, &end, 10);
      if (*end == '\0' && v >= 0) {
        marker_len = (size_t)(sep - token);
        p->skip_first = v;
      }
    }
  }
  if (marker_len == 4 && strncmp(token, "None", 4) == 0)
    return KERR_OK;
  p->position = json_stringn(token, marker_len);
  if (p->position == NULL)
    return kerr_set(err, KERR_VALIDATION, "Bad starting token: not UTF-8 text");
  return KERR_OK;
}

/* The token the AWS CLI writes: base64 of a JSON object.  Anything else is
 * read as the older plain form, as the AWS CLI does. */
static kerr_code read_token(cli_paging *p, const char *token, kerr *err) {
  size_t len = strlen(token);
  uint8_t *raw = NULL;
  size_t raw_len = 0;
  json_t *doc = NULL;
  kerr_code rc = KERR_OK;
  if (len > CLI_PAGING_MAX_TOKEN)
    return kerr_set(err, KERR_VALIDATION, "Bad starting token: longer than %d bytes", CLI_PAGING_MAX_TOKEN);
  raw = malloc(b64_decoded_max(len) + 1);
  if (raw == NULL)
    return kerr_set(err, KERR_INTERNAL, "out of memory");
  if (len > 0 && b64_decode(token, len, raw, &raw_len) == 0)
    doc = json_loadb((const char *)raw, raw_len, JSON_DECODE_ANY, NULL);
  if (!json_is_object(doc)) {
    rc = read_plain_token(p, token, err);
    goto out;
  }
  json_t *amount = json_object_get(doc, "boto_truncate_amount");
  if (amount != NULL) {
    if (!json_is_integer(amount) || json_integer_value(amount) < 0) {
      rc = kerr_set(err, KERR_VALIDATION, "Bad starting token: boto_truncate_amount is not a count");
      goto out;
    }
    p->skip_first = json_integer_value(amount);
  }
  json_t *position = json_object_get(doc, p->spec->input_token);
  if (position != NULL && !json_is_null(position))
    p->position = json_incref(position);
out:
  json_decref(doc);
  free(raw);
  return rc;
}

kerr_code cli_paging_new(const cli_paging_spec *spec, const cli_paging_opts *opts, cli_paging **out, kerr *err) {
  kerr_code rc = KERR_OK;
  cli_paging *p = NULL;
  *out = NULL;
  if (opts != NULL && (opts->max_items < 0 || opts->page_size < 0))
    return kerr_set(err, KERR_VALIDATION, "--max-items and --page-size must be positive");
  p = calloc(1, sizeof *p);
  if (p == NULL)
    return kerr_set(err, KERR_INTERNAL, "out of memory");
  p->spec = spec;
  if (opts != NULL) {
    p->max_items = opts->max_items;
    p->page_size = opts->page_size;
    if (opts->starting_token != NULL) {
      rc = read_token(p, opts->starting_token, err);
      if (rc != KERR_OK)
        goto out;
    }
  }
  *out = p;
  p = NULL;
out:
  cli_paging_free(p);
  return rc;
}

void cli_paging_free(cli_paging *p) {
  if (p == NULL)
    return;
  json_decref(p->position);
  json_decref(p->items);
  free(p->next_token);
  free(p);
}

int cli_paging_prepare(cli_paging *p, json_t *request) {
  if (p->done)
    return 0;
  if (p->position != NULL)
    json_object_set(request, p->spec->input_token, p->position);
  else
    json_object_del(request, p->spec->input_token);
  if (p->page_size > 0 && p->spec->limit_key != NULL)
    json_object_set_new(request, p->spec->limit_key, json_integer(p->page_size));
  return 1;
}

/* The page's next position, or NULL when the reply says the listing is over. */
static kerr_code next_position(const cli_paging *p, const json_t *page, json_t **pos, kerr *err) {
  *pos = NULL;
  if (p->spec->more_results != NULL) {
    const json_t *more = json_object_get(page, p->spec->more_results);
    if (more == NULL || json_is_false(more) || json_is_null(more))
      return KERR_OK;
  }
  json_t *next = json_object_get(page, p->spec->output_token);
  if (next == NULL || json_is_null(next))
    return KERR_OK;
  if (!json_is_string(next))
    return kerr_set(err, KERR_VALIDATION, "the reply's %s is not a string", p->spec->output_token);
  *pos = next;
  return KERR_OK;
}

kerr_code cli_paging_add(cli_paging *p, const json_t *page, json_t **page_out, kerr *err) {
  kerr_code rc = KERR_OK;
  json_t *shown = NULL, *list = NULL, *next = NULL;
  size_t n, from = 0, to;
  if (page_out != NULL)
    *page_out = NULL;
  if (p->done)
    return kerr_set(err, KERR_INTERNAL, "a page after the last one");
  if (!json_is_object(page))
    return kerr_set(err, KERR_VALIDATION, "a page of the reply is not a JSON object");
  if (++p->pages > CLI_PAGING_MAX_PAGES)
    return kerr_set(err, KERR_LIMIT_EXCEEDED, "more than %d pages; giving up", CLI_PAGING_MAX_PAGES);
  const json_t *items = json_object_get(page, p->spec->result_key);
  if (items != NULL && !json_is_array(items) && !json_is_null(items))
    return kerr_set(err, KERR_VALIDATION, "the reply's %s is not a list", p->spec->result_key);
  n = json_is_array(items) ? json_array_size(items) : 0;
  if (p->pages == 1 && p->skip_first > 0)
    from = (size_t)p->skip_first < n ? (size_t)p->skip_first : n;
  to = n;
  /* --max-items counts items as the page arrives, before a starting token's
   * cut: the cut is remembered in the resume token instead. */
  long long over = p->max_items > 0 ? p->items_seen + (long long)(n - from) - p->max_items : 0;
  if (over > 0)
    to = n - (size_t)over;
  shown = json_deep_copy(page);
  if (shown == NULL)
    return kerr_set(err, KERR_INTERNAL, "out of memory");
  if (json_is_array(items)) {
    list = json_array();
    if (list == NULL) {
      rc = kerr_set(err, KERR_INTERNAL, "out of memory");
      goto out;
    }
    for (size_t i = from; i < to; i++)
      if (json_array_append(list, json_array_get(items, i)) != 0) {
        rc = kerr_set(err, KERR_INTERNAL, "out of memory");
        goto out;
      }
    if (json_object_set(shown, p->spec->result_key, list) != 0) {
      rc = kerr_set(err, KERR_INTERNAL, "out of memory");
      goto out;
    }
    if (p->items == NULL)
      p->items = json_array();
    if (p->items == NULL || json_array_extend(p->items, list) != 0) {
      rc = kerr_set(err, KERR_INTERNAL, "out of memory");
      goto out;
    }
  }
  if (over > 0) {
    /* Cut inside this page: resume at this same page, past what was given. */
    rc = make_token(p, p->position != NULL ? p->position : json_null(), (long long)to, err);
    p->done = 1;
    goto out;
  }
  p->items_seen += (long long)(to - from);
  rc = next_position(p, page, &next, err);
  if (rc != KERR_OK)
    goto out;
  if (next == NULL) {
    p->done = 1;
  } else if (p->max_items > 0 && p->items_seen == p->max_items) {
    rc = make_token(p, next, 0, err);
    p->done = 1;
  } else if (p->position != NULL && json_equal(p->position, next)) {
    rc = kerr_set(err, KERR_CONFLICT, "The same next token was received twice: {'%s': '%s'}", p->spec->input_token,
                  json_string_value(next));
  } else {
    json_decref(p->position);
    p->position = json_incref(next);
  }
out:
  json_decref(list);
  if (rc == KERR_OK && page_out != NULL)
    *page_out = shown;
  else
    json_decref(shown);
  return rc;
}

json_t *cli_paging_result(const cli_paging *p) {
  json_t *result = json_object();
  if (result == NULL)
    return NULL;
  if (p->items != NULL && json_object_set(result, p->spec->result_key, p->items) != 0)
    goto fail;
  if (p->next_token != NULL && json_object_set_new(result, "NextToken", json_string(p->next_token)) != 0)
    goto fail;
  return result;
fail:
  json_decref(result);
  return NULL;
}

const char *cli_paging_next_token(const cli_paging *p) { return p->next_token; }
