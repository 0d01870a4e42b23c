#!/usr/bin/env python3
"""Generate libkms's typed layer: include/kms/kms_ops.h and lib/client/kms_ops.c.

From the same botocore models as scripts/gen_model.py, this writes one C
function per operation of the KMS model and of the CloudHSMv2 subset kmsd
serves (the operations of lib/api/handlers_cloudhsm.c's handler table), the
input and output structs they take, a free function per output, and page
iterators for the operations botocore's paginators-1.json lists.

The generated C is data, not logic: for every struct a table of its members
(wire name, model type, offsetof the field and of its has_ flag or count) that
the hand-written engine lib/client/kms_codec.c walks to build requests, read
replies and free outputs.  Each function is a single call into that engine.

Usage: scripts/gen_libkms.py            (write both files)
       scripts/gen_libkms.py --check    (fail if the committed files are stale)
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_model  # noqa: E402  (the model loader and C string quoting)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
HEADER = "include/kms/kms_ops.h"
SOURCE = "lib/client/kms_ops.c"

C_KEYWORDS = set("""auto break case char const continue default do double else enum extern float for goto if
inline int long register restrict return short signed sizeof static struct switch typedef union unsigned void
volatile while _Bool _Complex _Imaginary bool true false""".split())

MODEL_TYPES = {
    "string": "MODEL_STRING", "blob": "MODEL_BLOB", "integer": "MODEL_INTEGER", "long": "MODEL_LONG",
    "boolean": "MODEL_BOOLEAN", "timestamp": "MODEL_TIMESTAMP", "double": "MODEL_DOUBLE", "float": "MODEL_DOUBLE",
    "list": "MODEL_LIST", "map": "MODEL_MAP", "structure": "MODEL_STRUCTURE",
}
SCALARS = {"integer": "int", "boolean": "int", "long": "long long", "timestamp": "double", "double": "double",
           "float": "double"}
DOC_WIDTH = 110


def snake(name):
    """KeyMetadata -> key_metadata, CloudHsmClusterId -> cloud_hsm_cluster_id."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


def served_cloudhsm_ops():
    """The CloudHSMv2 operations kmsd answers: the names of its handler table."""
    path = os.path.join(ROOT, "lib", "api", "handlers_cloudhsm.c")
    with open(path) as f:
        text = f.read()
    m = re.search(r"cloudhsm_handlers\[\]\s*=\s*\{(.*?)\};", text, re.S)
    if not m:
        sys.exit("gen_libkms: no cloudhsm_handlers table in %s" % path)
    return sorted(re.findall(r'\{\s*"(\w+)"\s*,', m.group(1)))


def comment_text(text):
    return text.replace("*/", "* /").replace("/*", "/ *")


def wrap(text, indent, width=DOC_WIDTH):
    """`text` as C comment lines starting with `indent`."""
    words, lines, line = comment_text(text).split(), [], ""
    for w in words:
        if line and len(indent) + 3 + len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = (line + " " + w) if line else w
    if line:
        lines.append(line)
    if not lines:
        return []
    if len(lines) == 1:
        return ["%s/* %s */" % (indent, lines[0])]
    out = ["%s/* %s" % (indent, lines[0])]
    out += ["%s * %s" % (indent, x) for x in lines[1:-1]]
    out.append("%s * %s */" % (indent, lines[-1]))
    return out


class Service:
    """One service's names: what C types and descriptors its shapes become."""

    def __init__(self, botocore_name, prefix, tag, model, paginators, ops):
        self.name = botocore_name
        self.digest = gen_model.model_digest(model)
        # An operation without input or output still gets its structs (memberless),
        # so every function has the same form.
        model = dict(model, shapes=dict(model["shapes"]), operations=dict(model["operations"]))
        for o in ops:
            op = model["operations"][o] = dict(model["operations"][o])
            for k, suffix in (("input", "NoInput"), ("output", "NoOutput")):
                if k not in op:
                    name = o + suffix
                    if name in model["shapes"]:
                        sys.exit("gen_libkms: the model already has a shape %s" % name)
                    model["shapes"][name] = {"type": "structure", "members": {}}
                    op[k] = {"shape": name}
        self.prefix = prefix          # "kms_" or "kms_cloudhsmv2_"
        self.tag = tag                # short id in static symbol names
        self.model = model
        self.shapes = model["shapes"]
        self.paginators = paginators
        self.ops = ops
        # (shape, dir) -> C type of an op's input/output; operations that share a
        # shape (ListGrants, ListRetirableGrants) get their own name as a typedef.
        self.top = {}
        self.aliases = []             # (typedef name, the struct it names)
        for o in ops:
            op = model["operations"][o]
            for d, k, suffix in (("in", "input", "_input"), ("out", "output", "_output")):
                if k not in op:
                    continue
                own = self.prefix + snake(o) + suffix
                if (op[k]["shape"], d) in self.top:
                    self.aliases.append((own, self.top[(op[k]["shape"], d)]))
                else:
                    self.top[(op[k]["shape"], d)] = own
        self.nested = {"in": [], "out": []}   # reachable shapes (not top-level), in discovery order
        for o in ops:
            op = model["operations"][o]
            for d, k in (("in", "input"), ("out", "output")):
                if k in op:
                    for m in self.shapes[op[k]["shape"]].get("members", {}).values():
                        self.reach(m["shape"], d)

    def reach(self, name, d):
        if name in self.nested[d]:
            return
        self.nested[d].append(name)
        s = self.shapes[name]
        if s["type"] == "structure":
            for m in s.get("members", {}).values():
                self.reach(m["shape"], d)
        elif s["type"] == "list":
            self.reach(s["member"]["shape"], d)
        elif s["type"] == "map":
            if self.shapes[s["key"]["shape"]]["type"] != "string":
                sys.exit("gen_libkms: map %s has non-string keys" % name)
            self.reach(s["value"]["shape"], d)

    def struct_type(self, name, d):
        """The C type of structure shape `name` in direction `d` ("in" or "out")."""
        if (name, d) in self.top and name not in self.nested[d]:
            return self.top[(name, d)]
        return self.prefix + snake(name) + ("_in" if d == "in" else "")

    def pair_type(self, name, d):
        """The C type of one entry of map shape `name`."""
        value = self.shapes[self.shapes[name]["value"]["shape"]]
        if value["type"] == "string":
            return "kms_string_pair" + ("_in" if d == "in" else "")
        return self.prefix + snake(name) + "_entry" + ("_in" if d == "in" else "")

    def sym(self, kind, name, d=""):
        return "%s_%s%s_%s" % (kind, self.tag, ("_" + d) if d else "", name)


def member_decls(svc, shape_name, d, owner_doc=True):
    """The C declarations of a structure's members: [(doc lines, [decl lines])]."""
    out = []
    s = svc.shapes[shape_name]
    req = set(s.get("required", []))
    const = "const " if d == "in" else ""
    for mname, m in s.get("members", {}).items():
        field = snake(mname)
        if field in C_KEYWORDS:
            field += "_"
        ms = svc.shapes[m["shape"]]
        t = ms["type"]
        doc = gen_model.first_sentence(m.get("documentation"))
        notes = []
        if mname in req and d == "in":
            notes.append("Required.")
        if "enum" in ms:
            notes.append("One of: %s." % ", ".join(ms["enum"][:8]) + (" ..." if len(ms["enum"]) > 8 else ""))
        if ms.get("sensitive"):
            notes.append("Sensitive.")
        decls = []
        if t == "string":
            decls.append("%schar *%s;" % (const, field))
        elif t == "blob":
            decls.append("%s %s;" % ("kms_blob_ref" if d == "in" else "kms_blob", field))
        elif t in SCALARS:
            decls.append("int has_%s;" % field)
            decls.append("%s %s;" % (SCALARS[t], field))
        elif t == "list":
            item = svc.shapes[ms["member"]["shape"]]
            if item["type"] == "string":
                decls.append("%s%s;" % ("const char *const *" if d == "in" else "char **", field))
            elif item["type"] == "structure":
                decls.append("%s%s *%s;" % (const, svc.struct_type(ms["member"]["shape"], d), field))
            else:
                sys.exit("gen_libkms: list %s of %s is not supported" % (m["shape"], item["type"]))
            decls.append("size_t %s_count;" % field)
        elif t == "map":
            decls.append("%s%s *%s;" % (const, svc.pair_type(m["shape"], d), field))
            decls.append("size_t %s_count;" % field)
        elif t == "structure":
            decls.append("%s%s *%s;" % (const, svc.struct_type(m["shape"], d), field))
        else:
            sys.exit("gen_libkms: member %s.%s has unsupported type %s" % (shape_name, mname, t))
        out.append((mname, field, t, wrap(" ".join(x for x in [doc] + notes if x), "  "), decls))
    return out


def prelude():
    return r"""/* kms_ops.h - libkms's typed API: one C function per operation of AWS KMS and
 * of the CloudHSMv2 operations kmsd serves, with their input and output structs.
 *
 * Generated by scripts/gen_libkms.py from the AWS API models shipped with
 * botocore; do not edit.  Every function is built on kms_call_json (kms.h)
 * and follows kms.h's conventions: it returns 0 or a kms_error_kind and then
 * fills *err.%(digests)s
 *
 * Calling an operation:
 *
 *   kms_encrypt_input in = {0};             zero, then set what you send
 *   kms_encrypt_output out;                 filled by the call
 *   in.key_id = "alias/app";
 *   in.plaintext.data = bytes; in.plaintext.len = n;
 *   if (kms_encrypt(client, &in, &out, &err) == 0) {
 *     use(out.ciphertext_blob.data, out.ciphertext_blob.len);
 *     kms_encrypt_output_free(&out);
 *   }
 *
 * KMS operations are kms_<operation> (kms_connect_custom_key_store) and need a
 * client of KMS_SERVICE_KMS; CloudHSMv2 operations and their types carry a
 * kms_cloudhsmv2_ prefix (kms_cloudhsmv2_describe_clusters, kms_cloudhsmv2_tag)
 * and need a client of KMS_SERVICE_CLOUDHSMV2.  Member names are the model's
 * in snake case (KeyId -> key_id).
 *
 * Type mapping, the same in every struct.  Inputs (kms_<op>_input and the
 * *_in types they point to) borrow everything: the library reads them during
 * the call and keeps nothing.  Outputs (kms_<op>_output and the types they
 * point to) own everything: kms_<op>_output_free frees it all and zeroes the
 * struct, so never free a member yourself.  A member is sent only when present:
 *
 *   string, enum   in: const char * (NULL: absent); out: char * (NULL: absent).
 *                  Enums are plain strings, so values a newer service adds pass
 *                  through; the header lists the model's values beside each.
 *   blob           in: kms_blob_ref, out: kms_blob; raw bytes, the library does
 *                  base64.  data NULL: absent (data non-NULL, len 0: empty).
 *   integer        int has_x; int x;          (has_x non-zero: present)
 *   long           int has_x; long long x;
 *   boolean        int has_x; int x;          (x: 0 false, non-zero true)
 *   timestamp      int has_x; double x;       (seconds since 1970-01-01 UTC)
 *   list           pointer to the items + size_t x_count.  In: sent when the
 *                  pointer is non-NULL (count 0 sends an empty list); items
 *                  are const char * for strings, the item struct for
 *                  structures.  Out: NULL and 0 when absent or empty.
 *   map            pointer to key/value pairs + size_t x_count
 *                  (kms_string_pair for string values); same rules as lists.
 *   structure      a pointer to its struct; NULL: absent.
 *
 * Required members are checked before anything is sent: a missing one fails
 * with KMS_ERR_PARAM and its path in err->message ("Tags[1].TagKey").  Other
 * limits (lengths, patterns, enum values) are left to the service.  Replies
 * are read strictly: a member of the wrong JSON type, bad base64 or an
 * integer out of range is KMS_ERR_RESPONSE; members this header does not
 * know are ignored.  Outputs the model marks sensitive (Plaintext, private
 * keys, shared secrets) and every blob are overwritten with zeros by the free
 * function.
 *
 * Secrets in memory: what is wiped and what is not.  The typed layer builds
 * the request and reads the reply with jansson.  Wiped before being freed:
 * the request text as sent, the reply as received (kms_reply_free), every
 * string value of the request and reply trees (base64 plaintext included),
 * the base64 text of each input blob, and, by the free functions, every
 * output blob and sensitive string.  Not wiped: jansson's own scratch
 * copies.  Serialising grows its output buffer by reallocation,
 * so earlier partial copies of the request text (with a blob's base64) are
 * left in freed heap; parsing copies each string token into a lexer buffer
 * before it becomes a value, and frees it unwiped.  So a typed call leaves
 * base64 copies of its plaintext (input of Encrypt, output of Decrypt,
 * GenerateDataKey, ...) in freed heap until reused.  Nothing is locked into
 * RAM (mlock), so any of it may reach swap.  libkms does not call
 * json_set_alloc_funcs, which is process-wide and would change every other
 * jansson user of the program; a program that needs no such copies can set
 * wiping allocation functions itself at start-up, or build its request and
 * read its reply itself with kms_call_json (kms.h).
 *
 * Output structs are zeroed at the start of every call; on failure they hold
 * nothing, so calling the free function is allowed but not needed.
 *
 * Paging.  Operations that list (ListKeys, ListAliases, DescribeCustomKeyStores,
 * ...) also have a page iterator that sends each reply's token back until
 * the service says there is no more:
 *
 *   kms_list_keys_paginator *p;
 *   kms_list_keys_input in = {0};
 *   in.has_limit = 1; in.limit = 100;           optional page size
 *   if (kms_list_keys_paginate(client, &in, &p, &err) == 0) {
 *     kms_list_keys_output page;
 *     int rc;
 *     while ((rc = kms_list_keys_next_page(p, &page, &err)) == 1) {
 *       for (size_t i = 0; i < page.keys_count; i++) use(page.keys[i].key_id);
 *       kms_list_keys_output_free(&page);
 *     }
 *     kms_list_keys_paginator_free(p);
 *     if (rc < 0) handle(&err);
 *   }
 *
 * kms_<op>_paginate copies the input struct (not what it points to: that
 * stays borrowed until the paginator is freed); a token set in the input
 * starts from that page.  kms_<op>_next_page returns 1 with a page in *out
 * (free it with kms_<op>_output_free), 0 when there are no more pages (*out
 * zeroed), or -1 with *err filled (err->kind says what failed; the paginator
 * is then finished).  A service that repeats a token ends the walk with
 * KMS_ERR_RESPONSE rather than looping; a reply that says there is more but
 * carries no token is taken as the last page.  kms_<op>_paginator_free(NULL) is
 * allowed.
 */
#ifndef LIBKMS_KMS_OPS_H
#define LIBKMS_KMS_OPS_H

#include <stddef.h>

#include "kms.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes handed to the library; borrowed. */
typedef struct kms_blob_ref {
  const unsigned char *data;
  size_t len;
} kms_blob_ref;

/* Bytes handed back by the library; owned by the output that holds them. */
typedef struct kms_blob {
  unsigned char *data;
  size_t len;
} kms_blob;

/* One entry of a string-to-string map (EncryptionContext, ...). */
typedef struct kms_string_pair_in {
  const char *key;
  const char *value;
} kms_string_pair_in;

typedef struct kms_string_pair {
  char *key;
  char *value;
} kms_string_pair;
"""


def generate(services):
    h, c = [], []
    names = set(["kms_blob", "kms_blob_ref", "kms_string_pair", "kms_string_pair_in"])

    def claim(ident):
        if ident in names:
            sys.exit("gen_libkms: two C names collide: %s" % ident)
        names.add(ident)

    digests = "; ".join("%s model %s" % (s.name, s.digest) for s in services)
    h.append(prelude() % {"digests": "\n * Models: " + digests.replace("; ", ";\n *   ") + "."})

    c.append(("""/* kms_ops.c - the tables and one-line functions behind include/kms/kms_ops.h.
 *
 * Generated by scripts/gen_libkms.py from the AWS API models shipped with
 * botocore; do not edit.  Each struct of kms_ops.h has a descriptor here
 * (member wire names, model types, offsets of fields, flags and counts) that
 * the engine in kms_codec.c walks; each function is one call into it.
 * %s */
#include <stddef.h>

#include "kms/kms_ops.h"
#include "client/kms_codec.h"
""") % ("Models: " + digests.replace("; ", ";\n *   ") + "."))

    for svc in services:
        label = "KMS" if svc.name == "kms" else "CloudHSMv2"
        h.append("/* ======================================================================== %s */\n" % label)
        c.append("/* ======================================================================== %s */\n" % label)
        # Every struct the service's operations use, by direction.
        structs = []   # (shape, dir, ctype, doc)
        pairs = []     # (map shape, dir, ctype)
        for d in ("in", "out"):
            for n in svc.nested[d]:
                t = svc.shapes[n]["type"]
                if t == "structure":
                    structs.append((n, d, svc.struct_type(n, d)))
                elif t == "map" and svc.shapes[svc.shapes[n]["value"]["shape"]]["type"] != "string":
                    pairs.append((n, d, svc.pair_type(n, d)))
        for o in svc.ops:
            op = svc.model["operations"][o]
            for d, k in (("in", "input"), ("out", "output")):
                entry = (op[k]["shape"], d, svc.top[(op[k]["shape"], d)]) if k in op else None
                if entry and op[k]["shape"] not in svc.nested[d] and entry not in structs:
                    structs.append(entry)
        # Forward declarations, then definitions.
        for n, d, t in structs:
            claim(t)
            h.append("typedef struct %s %s;" % (t, t))
        for n, d, t in pairs:
            claim(t)
            h.append("typedef struct %s %s;" % (t, t))
        for own, t in svc.aliases:
            claim(own)
            h.append("typedef struct %s %s;  /* the same shape */" % (t, own))
        h.append("")
        for n, d, t in pairs:
            vs = svc.shapes[svc.shapes[n]["value"]["shape"]]
            if vs["type"] != "list" or svc.shapes[vs["member"]["shape"]]["type"] != "string":
                sys.exit("gen_libkms: map %s of %s is not supported" % (n, vs["type"]))
            h.append("/* One entry of %s: a key and its list of strings. */" % n)
            h.append("struct %s {" % t)
            h.append("  %schar *key;" % ("const " if d == "in" else ""))
            h.append("  %svalues;" % ("const char *const *" if d == "in" else "char **"))
            h.append("  size_t values_count;")
            h.append("};\n")
        for n, d, t in structs:
            members = member_decls(svc, n, d)
            h.append("/* %s (%s of the model's %s). */" % (t, "request side" if d == "in" else "reply side", n)
                     if len(t) + len(n) < 70 else "/* The model's %s (%s side). */" % (n, "request" if d == "in"
                                                                                       else "reply"))
            h.append("struct %s {" % t)
            seen = set()
            for mname, field, mt, doc, decls in members:
                for decl in decls:
                    ident = re.search(r"(\w+);$", decl).group(1)
                    if ident in seen:
                        sys.exit("gen_libkms: member name %s repeats in %s" % (ident, t))
                    seen.add(ident)
                h.extend(doc)
                h.extend("  " + x for x in decls)
            if not members:
                h.append("  char no_members_; /* the operation has no members; C needs one */")
            h.append("};\n")

        # Functions.
        for o in svc.ops:
            op = svc.model["operations"][o]
            fn = svc.prefix + snake(o)
            for x in (fn, fn + "_output_free"):
                claim(x)
            tin = svc.prefix + snake(o) + "_input" if "input" in op else None
            tout = svc.prefix + snake(o) + "_output" if "output" in op else None
            if not tin or not tout:
                sys.exit("gen_libkms: %s lacks an input or output shape" % o)
            h.extend(wrap("%s %s" % (o, gen_model.first_sentence(op.get("documentation"))), ""))
            h.append("int %s(kms_client *c, const %s *in, %s *out, kms_error *err);" % (fn, tin, tout))
            h.append("/* Free (and wipe) what %s put in *out and zero it; NULL allowed. */" % fn)
            h.append("void %s_output_free(%s *out);" % (fn, tout))
            if o in svc.paginators:
                pt = fn + "_paginator"
                for x in (pt, fn + "_paginate", fn + "_next_page", pt + "_free"):
                    claim(x)
                h.append("/* Pages of %s; see \"Paging\" at the top. */" % o)
                h.append("typedef struct %s %s;" % (pt, pt))
                h.append("int %s_paginate(kms_client *c, const %s *in, %s **out, kms_error *err);" % (fn, tin, pt))
                h.append("int %s_next_page(%s *p, %s *out, kms_error *err);" % (fn, pt, tout))
                h.append("void %s_free(%s *p);" % (pt, pt))
            h.append("")

        # Descriptors: value layouts, then struct member tables, then ops.
        c.append(source_tables(svc, structs, pairs))
        for o in svc.ops:
            c.append(source_functions(svc, o))

    # Every operation's descriptor, for tools and tests that walk them all.
    c.append("/* Every operation of each service, by name. */")
    for svc in services:
        c.append("static const kms_codec_op *const %s[] = {" % svc.sym("all", "ops"))
        c.extend("  &%s," % svc.sym("op", o) for o in svc.ops)
        c.append("};\n")
    c.append("""const kms_codec_op *const *kms_codec_ops(kms_service service, size_t *count) {
  if (service == KMS_SERVICE_CLOUDHSMV2) {
    *count = sizeof all_hsm_ops / sizeof all_hsm_ops[0];
    return all_hsm_ops;
  }
  *count = sizeof all_kms_ops / sizeof all_kms_ops[0];
  return all_kms_ops;
}""")
    h.append("""#ifdef __cplusplus
}
#endif

#endif""")
    return "\n".join(h) + "\n", "\n".join(c).rstrip("\n") + "\n"


def value_sym(svc, shape, d):
    return svc.sym("v", shape, d)


def source_tables(svc, structs, pairs):
    out = []
    w = out.append
    struct_of = {(n, d): t for n, d, t in structs}
    pair_of = {(n, d): t for n, d, t in pairs}
    # Forward declarations: the tables refer to each other in any order.
    for d in ("in", "out"):
        for n in svc.nested[d]:
            w("static const kms_codec_value %s;" % value_sym(svc, n, d))
    for n, d, t in structs:
        w("static const kms_codec_struct %s;" % svc.sym("s", n, d))
    w("")
    for d in ("in", "out"):
        for n in svc.nested[d]:
            s = svc.shapes[n]
            t = s["type"]
            f = [".type = %s" % MODEL_TYPES[t], ".shape = %s" % gen_model.cstr(n)]
            if s.get("sensitive"):
                f.append(".sensitive = 1")
            if t == "structure":
                f.append(".fields = &%s" % svc.sym("s", n, d))
            elif t == "list":
                item = s["member"]["shape"]
                size = "sizeof(char *)" if svc.shapes[item]["type"] == "string" else \
                    "sizeof(%s)" % struct_of[(item, d)]
                f += [".item = &%s" % value_sym(svc, item, d), ".item_size = %s" % size]
            elif t == "map":
                value = s["value"]["shape"]
                pt = pair_of.get((n, d)) or svc.pair_type(n, d)
                f += [".item = &%s" % value_sym(svc, value, d), ".item_size = sizeof(%s)" % pt]
                if svc.shapes[value]["type"] == "list":
                    f += [".value_off = offsetof(%s, values)" % pt,
                          ".value_aux_off = offsetof(%s, values_count)" % pt]
                else:
                    f.append(".value_off = offsetof(%s, value)" % pt)
            w("static const kms_codec_value %s = {%s};" % (value_sym(svc, n, d), ", ".join(f)))
    w("")
    for n, d, t in structs:
        members = member_decls(svc, n, d)
        fields = svc.sym("f", n, d)
        if members:
            w("static const kms_codec_field %s[] = {" % fields)
            req = set(svc.shapes[n].get("required", []))
            for mname, field, mt, doc, decls in members:
                aux = "0"
                if mt in SCALARS:
                    aux = "offsetof(%s, has_%s)" % (t, field)
                elif mt in ("list", "map"):
                    aux = "offsetof(%s, %s_count)" % (t, field)
                w("  {%s, %d, offsetof(%s, %s), %s, &%s}," % (
                    gen_model.cstr(mname), 1 if (mname in req and d == "in") else 0, t, field, aux,
                    value_sym(svc, svc.shapes[n]["members"][mname]["shape"], d)))
            w("};")
        w("static const kms_codec_struct %s = {%s, sizeof(%s), %s, %d};" % (
            svc.sym("s", n, d), gen_model.cstr(n), t, fields if members else "NULL", len(members)))
    w("")
    return "\n".join(out)


def source_functions(svc, o):
    op = svc.model["operations"][o]
    fn = svc.prefix + snake(o)
    tin = svc.prefix + snake(o) + "_input"
    tout = svc.prefix + snake(o) + "_output"
    ops = svc.sym("op", o)
    out = ["static const kms_codec_op %s = {%s, &%s, &%s};" % (
        ops, gen_model.cstr(o), svc.sym("s", op["input"]["shape"], "in"), svc.sym("s", op["output"]["shape"], "out")),
        "",
        "int %s(kms_client *c, const %s *in, %s *out, kms_error *err) {" % (fn, tin, tout),
        "  return kms_codec_call(c, &%s, in, out, err);" % ops,
        "}",
        "",
        "void %s_output_free(%s *out) {" % (fn, tout),
        "  kms_codec_free(%s.output, out);" % ops,
        "}",
        ""]
    if o in svc.paginators:
        pg = svc.paginators[o]
        ins = svc.shapes[op["input"]["shape"]]["members"]
        outs = svc.shapes[op["output"]["shape"]]["members"]
        if svc.shapes[ins[pg["input_token"]]["shape"]]["type"] != "string" or \
                svc.shapes[outs[pg["output_token"]]["shape"]]["type"] != "string":
            sys.exit("gen_libkms: the page tokens of %s are not strings" % o)
        more = pg.get("more_results")
        if more and svc.shapes[outs[more]["shape"]]["type"] != "boolean":
            sys.exit("gen_libkms: %s.%s is not a boolean" % (o, more))
        spec = svc.sym("pg", o)
        pt = fn + "_paginator"
        fields = ["offsetof(%s, %s)" % (tin, snake(pg["input_token"])),
                  "offsetof(%s, %s)" % (tout, snake(pg["output_token"]))]
        fields += ["1", "offsetof(%s, %s)" % (tout, snake(more)), "offsetof(%s, has_%s)" % (tout, snake(more))] \
            if more else ["0", "0", "0"]
        out += ["static const kms_codec_pager_spec %s = {%s};" % (spec, ", ".join(fields)),
                "",
                "int %s_paginate(kms_client *c, const %s *in, %s **out, kms_error *err) {" % (fn, tin, pt),
                "  kms_codec_pager *p = NULL;",
                "  int rc = kms_codec_pager_new(c, &%s, &%s, in, out ? &p : NULL, err);" % (ops, spec),
                "  if (out) *out = (%s *)p;" % pt,
                "  return rc;",
                "}",
                "",
                "int %s_next_page(%s *p, %s *out, kms_error *err) {" % (fn, pt, tout),
                "  return kms_codec_pager_next((kms_codec_pager *)p, out, err);",
                "}",
                "",
                "void %s_free(%s *p) {" % (pt, pt),
                "  kms_codec_pager_free((kms_codec_pager *)p);",
                "}",
                ""]
    return "\n".join(out)


def build():
    kms = gen_model.load("kms")
    hsm = gen_model.load("cloudhsmv2")
    served = served_cloudhsm_ops()
    missing = [o for o in served if o not in hsm["operations"]]
    if missing:
        sys.exit("gen_libkms: kmsd serves CloudHSMv2 operations the model lacks: %s" % ", ".join(missing))
    services = [
        Service("kms", "kms_", "kms", kms, gen_model.load_paginators("kms"), sorted(kms["operations"])),
        Service("cloudhsmv2", "kms_cloudhsmv2_", "hsm", hsm, gen_model.load_paginators("cloudhsmv2"), served),
    ]
    return generate(services), services


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    a = ap.parse_args()
    (header, source), services = build()
    outputs = [(HEADER, header), (SOURCE, source)]
    if a.check:
        status = 0
        for rel, text in outputs:
            with open(os.path.join(ROOT, rel)) as f:
                committed = f.read()
            for s in services:
                if s.digest not in committed:
                    print("gen_libkms: %s was generated from another %s model than this machine's; "
                          "regenerate it deliberately to move to this one" % (rel, s.name))
                    break
            else:
                if committed != text:
                    print("gen_libkms: %s is stale: scripts/gen_libkms.py no longer produces it" % rel)
                    status = 1
                else:
                    print("gen_libkms: %s is current" % rel)
        sys.exit(status)
    for rel, text in outputs:
        with open(os.path.join(ROOT, rel), "w") as f:
            f.write(text)
        print("gen_libkms: wrote %s" % rel)


if __name__ == "__main__":
    main()
