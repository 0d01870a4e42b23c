/* model_docs.c - look-ups in the generated documentation tables; see model_docs.h. */
#include "model/model_docs.h"

#include <stdlib.h>
#include <string.h>

static int by_key(const void *key, const void *entry) {
  return strcmp((const char *)key, ((const model_doc_entry *)entry)->key);
}

const char *model_doc_find(const model_docs *docs, const char *key) {
  if (docs == NULL || key == NULL)
    return NULL;
  const model_doc_entry *e = bsearch(key, docs->entries, docs->count, sizeof *docs->entries, by_key);
  return e != NULL ? e->text : NULL;
}
