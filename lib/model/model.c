/* model.c - lookups over the generated AWS model tables.
 *
 * The tables themselves live in kms_model.c and cloudhsmv2_model.c
 * (generated); this file holds the few hand-written functions that search
 * them, so the generated files stay pure data. */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

static int compare_op_name(const void *key, const void *elem) {
  return strcmp((const char *)key, ((const model_op *)elem)->name);
}

static int compare_shape_name(const void *key, const void *elem) {
  return strcmp((const char *)key, ((const model_shape *)elem)->name);
}

const model_op *model_find_op(const model_service *svc, const char *name) {
  if (!svc || !name || !svc->op_count)
    return NULL;
  /* The generator sorts operations with the same byte order strcmp uses. */
  return bsearch(name, svc->ops, svc->op_count, sizeof(*svc->ops), compare_op_name);
}

const model_shape *model_find_shape(const model_service *svc, const char *name) {
  if (!svc || !name || !svc->shape_count)
    return NULL;
  return bsearch(name, svc->shapes, svc->shape_count, sizeof(*svc->shapes),
                 compare_shape_name);
}

const model_member *model_find_member(const model_shape *shape, const char *name) {
  size_t i;

  if (!shape || !name || shape->type != MODEL_STRUCTURE)
    return NULL;
  /* Structures have a handful of members and keep the model's order, which
   * validation messages depend on, so a linear scan is the right search. */
  for (i = 0; i < shape->member_count; i++)
    if (!strcmp(shape->members[i].name, name))
      return &shape->members[i];
  return NULL;
}

const char *model_type_name(model_type type) {
  switch (type) {
  case MODEL_STRING: return "string";
  case MODEL_BLOB: return "blob";
  case MODEL_INTEGER: return "integer";
  case MODEL_LONG: return "long";
  case MODEL_BOOLEAN: return "boolean";
  case MODEL_TIMESTAMP: return "timestamp";
  case MODEL_DOUBLE: return "double";
  case MODEL_LIST: return "list";
  case MODEL_MAP: return "map";
  case MODEL_STRUCTURE: return "structure";
  }
  return "unknown";
}
