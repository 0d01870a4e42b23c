/* kms_handlers.c - the table of TrentService operations kmsd serves.
 *
 * Handlers live in one file per area (handlers_keys.c, handlers_crypto.c,
 * ...); this file is the one place that says which operations exist.  An
 * operation absent here is answered by the pipeline with
 * UnsupportedOperationException, never by a half-working handler. */
#include <string.h>

#include "api/api.h"
#include "api/api_json.h"

/* custom key stores (handlers_cks.c) */
extern const api_handler api_handlers_cks[];
extern const size_t api_handlers_cks_count;

typedef struct handler_area {
  const api_handler *handlers;
  const size_t *count;
} handler_area;

/* About thirty entries in all: a linear scan costs less than keeping a
 * merged sorted copy in sync, and runs once per request. */
static const handler_area areas[] = {
    {api_handlers_keys, &api_handlers_keys_count},
    {api_handlers_crypto, &api_handlers_crypto_count},
    {api_handlers_aliases, &api_handlers_aliases_count},
    {api_handlers_tags, &api_handlers_tags_count},
    {api_handlers_rotation, &api_handlers_rotation_count},
    {api_handlers_policies, &api_handlers_policies_count},
    {api_handlers_cks, &api_handlers_cks_count},
};

api_handler_fn api_kms_handler_find(const char *operation) {
  size_t a, i;

  if (!operation) return NULL;
  for (a = 0; a < sizeof areas / sizeof areas[0]; a++) {
    for (i = 0; i < *areas[a].count; i++) {
      if (strcmp(areas[a].handlers[i].operation, operation) == 0) return areas[a].handlers[i].fn;
    }
  }
  return NULL;
}
