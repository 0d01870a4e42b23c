/* kms_codec.h - the one engine behind libkms's typed operations (kms_ops.h).
 *
 * Every typed function is generated (scripts/gen_libkms.py) as a table that
 * says where each member of the model sits in a C struct, plus a one-line call
 * into this engine.  The engine walks those tables to turn an input struct into
 * the JSON request (only present members, blobs as base64), to check the
 * model's required members before anything is sent, to fill an output struct
 * from the reply JSON (strictly: a member of the wrong JSON type is a
 * KMS_ERR_RESPONSE; unknown members are ignored so that a newer service still
 * works) and to free (and wipe) an output.  Keeping the logic here and the
 * generated code pure data means one place to review, test and fuzz.
 *
 * Memory layout of a value, by model type (see kms_ops.h for the public view):
 *   string            const char * / char *               (NULL: absent)
 *   blob              { pointer; size_t len; }            (NULL pointer: absent)
 *   integer, boolean  int    + int has_ flag at aux_off
 *   long              long long + has_ flag
 *   timestamp, double double + has_ flag
 *   list              pointer to items + size_t count at aux_off
 *   map               pointer to pairs + size_t count at aux_off; a pair is
 *                     the key (char *) at offset 0 and the value at value_off
 *   structure         a pointer to the struct in a member; inline in a list
 *
 * Internal to libkms: not installed, no ABI promise. */
#ifndef KMSD_CLIENT_KMS_CODEC_H
#define KMSD_CLIENT_KMS_CODEC_H

#include <stddef.h>

#include <jansson.h>

#include "kms/kms.h"
#include "model/model.h"  /* model_type only: nothing of lib/model is linked */

/* The engine is libkms's inside: hidden, so that libkms.so, which exports
 * kms_*, does not offer it as API. */
#define KMS_CODEC_HIDDEN __attribute__((visibility("hidden")))

/* Most items of one list or map in a reply.  A decoded reply costs many times
 * its size (a jansson node per value, then the C structs), so the bound is
 * kept near what real replies hold (a page of ListKeys is at most 1,000). */
#define KMS_CODEC_MAX_ITEMS 10000u
/* Most pages one paginator fetches before it gives up (PaginationError). */
#define KMS_CODEC_MAX_PAGES 100000u
/* Deepest nesting of values the engine follows (the models nest 4 deep). */
#define KMS_CODEC_MAX_DEPTH 16

typedef struct kms_codec_struct kms_codec_struct;
typedef struct kms_codec_value kms_codec_value;

/* How one value is laid out: its model type and, for containers, what is inside. */
struct kms_codec_value {
  model_type type;
  const char *shape;             /* the model's shape name, for messages */
  int sensitive;                 /* wipe before freeing (the model's "sensitive") */
  const kms_codec_struct *fields;  /* MODEL_STRUCTURE: the struct's members */
  const kms_codec_value *item;   /* MODEL_LIST: an item; MODEL_MAP: a value */
  size_t item_size;              /* MODEL_LIST: sizeof an item; MODEL_MAP: sizeof a pair */
  size_t value_off;              /* MODEL_MAP: offset of the value in a pair */
  size_t value_aux_off;          /* MODEL_MAP with list values: offset of their count */
};

/* One member of a structure. */
typedef struct kms_codec_field {
  const char *wire_name;         /* the JSON member, e.g. "KeyId" */
  int required;                  /* the model requires it in a request */
  size_t off;                    /* offsetof the value (or pointer) */
  size_t aux_off;                /* offsetof its has_ flag or count; unused otherwise */
  const kms_codec_value *value;
} kms_codec_field;

struct kms_codec_struct {
  const char *shape;             /* e.g. "EncryptRequest" */
  size_t size;                   /* sizeof the C struct */
  const kms_codec_field *fields;
  size_t field_count;
};

/* One operation: its name on the wire and the two top-level structs. */
typedef struct kms_codec_op {
  const char *name;              /* "Encrypt" */
  const kms_codec_struct *input;
  const kms_codec_struct *output;
} kms_codec_op;

/* Where a paging operation keeps its tokens (offsets into the op's structs). */
typedef struct kms_codec_pager_spec {
  size_t input_token_off;        /* const char * in the input */
  size_t output_token_off;       /* char * in the output */
  int has_more_results;          /* 1: the output has a boolean "more" flag */
  size_t more_results_off;       /* its value (int) */
  size_t more_results_has_off;   /* its has_ flag */
} kms_codec_pager_spec;

/* The descriptors of every typed operation of `service` (defined in the
 * generated kms_ops.c), sorted by name; *count set.  Static data. */
KMS_CODEC_HIDDEN const kms_codec_op *const *kms_codec_ops(kms_service service, size_t *count);

/* Build the JSON request of `in` (laid out as `st`): only present members.
 * KMS_ERR_PARAM names the first missing required member ("Tags[1].TagKey")
 * or a string that is not UTF-8; never a value.  *out owned by the caller
 * (json_decref; kms_codec_json_wipe first when it may hold a secret). */
KMS_CODEC_HIDDEN int kms_codec_encode(const kms_codec_struct *st, const void *in, json_t **out, kms_error *err);

/* Fill `out` (laid out as `st`, zeroed here first) from the reply object `obj`.
 * On failure `out` is freed again and zeroed, and *err is KMS_ERR_RESPONSE
 * (a member of the wrong type, bad base64, a number out of range, too many
 * items) or KMS_ERR_MEMORY.  JSON null counts as an absent member. */
KMS_CODEC_HIDDEN int kms_codec_decode(const kms_codec_struct *st, const json_t *obj, void *out, kms_error *err);

/* Free everything a decode put in `out` (wiping sensitive strings and every
 * blob) and zero it.  Safe on a partly filled or zeroed struct; NULL allowed. */
KMS_CODEC_HIDDEN void kms_codec_free(const kms_codec_struct *st, void *out);

/* Overwrite every string value of `j` with zeros, so that freeing the tree
 * leaves no plaintext behind in the heap (member names are not secret). */
KMS_CODEC_HIDDEN void kms_codec_json_wipe(json_t *j);

/* The whole typed call: encode `in`, kms_call_json, decode into `out`.
 * `out` is zeroed first and holds nothing on failure. */
KMS_CODEC_HIDDEN int kms_codec_call(kms_client *c, const kms_codec_op *op, const void *in, void *out, kms_error *err);

/* Paging: the iterator behind every kms_<op>_paginate of kms_ops.h. */
typedef struct kms_codec_pager kms_codec_pager;

/* Start paging `op` from a shallow copy of `in` (whose pointers must outlive
 * the pager).  *out owned by the caller, freed with kms_codec_pager_free. */
KMS_CODEC_HIDDEN int kms_codec_pager_new(kms_client *c, const kms_codec_op *op, const kms_codec_pager_spec *spec,
                        const void *in, kms_codec_pager **out, kms_error *err);

/* 1: `out` holds the next page (free it with kms_codec_free); 0: no more pages
 * (`out` zeroed); -1: failure, *err says why, and the pager is finished.
 * A token the service returned before (A -> B -> A) or more than
 * KMS_CODEC_MAX_PAGES pages end the listing with KMS_ERR_RESPONSE
 * "PaginationError". */
KMS_CODEC_HIDDEN int kms_codec_pager_next(kms_codec_pager *p, void *out, kms_error *err);

KMS_CODEC_HIDDEN void kms_codec_pager_free(kms_codec_pager *p);

#endif
