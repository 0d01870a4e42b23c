#!/usr/bin/env python3
"""Generate lib/model/kms_model.c and lib/model/cloudhsmv2_model.c.

The AWS API models shipped with botocore are the source of truth for
operation names, member names and types, required flags, lengths, ranges,
patterns and enums; botocore's paginators-1.json says how listing operations
page (tokens, the "more results" flag, the limit and result members).  This script turns them into static C tables (see
lib/model/model.h) so that validation and the CLI never rely on hand-typed
lists, and the build needs no Python.  The output is deterministic: shapes and
operations sorted by name, members and enums in model order.

Usage: scripts/gen_model.py [--out-dir lib/model]
       scripts/gen_model.py --check   (fail if the committed tables are stale)

Each generated file records a digest of the model it was made from, so
--check can tell "the script or the tables drifted" (a failure) from "this
machine ships another model version" (reported, not a failure: regenerating
is a deliberate change).
"""
import argparse
import hashlib
import glob
import gzip
import html
import json
import os
import re
import sys

TYPES = {
    "string": "MODEL_STRING", "blob": "MODEL_BLOB", "integer": "MODEL_INTEGER",
    "long": "MODEL_LONG", "boolean": "MODEL_BOOLEAN", "timestamp": "MODEL_TIMESTAMP",
    "double": "MODEL_DOUBLE", "float": "MODEL_DOUBLE", "list": "MODEL_LIST",
    "map": "MODEL_MAP", "structure": "MODEL_STRUCTURE",
}

# botocore name -> (C symbol of the service, identifier prefix, output file)
SERVICES = [
    ("kms", "model_kms", "kms", "kms_model.c"),
    ("cloudhsmv2", "model_cloudhsmv2", "hsm", "cloudhsmv2_model.c"),
]

DOC_MAX = 300


def model_file(service):
    """The newest botocore service-2.json of `service`: the highest dated version under botocore's data directory."""
    try:
        import botocore
        roots = [os.path.dirname(botocore.__file__)]
    except ImportError:
        roots = glob.glob("/usr/lib/python3*/dist-packages/botocore") + \
            glob.glob(os.path.expanduser("~/.pyenv/versions/*/lib/python3*/site-packages/botocore"))
    for root in roots:
        hits = sorted(glob.glob(os.path.join(root, "data", service, "*", "service-2.json*")))
        if hits:
            return hits[-1]
    sys.exit("gen_model: botocore's model for %r not found (python3 -c 'import botocore')" % service)


def read_json(path):
    with (gzip.open(path, "rt") if path.endswith(".gz") else open(path)) as f:
        return json.load(f)


def load(service):
    """The newest botocore model of `service`."""
    return read_json(model_file(service))


def load_paginators(service):
    """The paginators (paginators-1.json) that ship beside `service`'s model, or {} when it has none."""
    for p in sorted(glob.glob(os.path.join(os.path.dirname(model_file(service)), "paginators-1.json*"))):
        return read_json(p).get("pagination", {})
    return {}


def first_sentence(doc):
    text = html.unescape(re.sub(r"<[^>]+>", " ", doc or ""))
    text = re.sub(r"\s+", " ", text).strip()
    m = re.match(r"(.*?[.!?])(\s|$)", text)
    if m:
        text = m.group(1)
    if len(text) > DOC_MAX:
        text = text[:DOC_MAX - 3].rstrip() + "..."
    return text


def cstr(s):
    """A C string literal for `s` (UTF-8; octal escapes never run on; no trigraphs)."""
    if s is None:
        return "NULL"
    out = ['"']
    for b in s.encode("utf-8"):
        c = chr(b)
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif c == "?":
            out.append("\\?")
        elif 0x20 <= b < 0x7f:
            out.append(c)
        else:
            out.append("\\%03o" % b)
    out.append('"')
    return "".join(out)


def bound(v, what, name):
    if isinstance(v, float):
        if not v.is_integer():
            sys.exit("gen_model: non-integral %s %r on shape %s" % (what, v, name))
        v = int(v)
    return "%dLL" % v


def paginator_fields(o, pg, model):
    """The C initialiser fields of operation `o`'s paginator `pg`.  Only the
    single-token form is supported (every KMS and CloudHSMv2 paginator uses it);
    anything else stops the generator rather than producing a wrong table."""
    for k in ("input_token", "output_token"):
        if not isinstance(pg.get(k), str):
            sys.exit("gen_model: paginator of %s has a non-string %s" % (o, k))
    keys = pg.get("result_key")
    keys = [keys] if isinstance(keys, str) else list(keys or [])
    op = model["operations"][o]
    ins = model["shapes"][op["input"]["shape"]].get("members", {})
    outs = model["shapes"][op["output"]["shape"]].get("members", {})
    for k in [pg["input_token"], pg.get("limit_key")]:
        if k is not None and k not in ins:
            sys.exit("gen_model: paginator of %s names %s, not an input member" % (o, k))
    for k in [pg["output_token"], pg.get("more_results")] + keys:
        if k is not None and k not in outs:
            sys.exit("gen_model: paginator of %s names %s, not an output member" % (o, k))
    return keys


def generate(service, sym, pfx, model, paginators=None):
    paginators = paginators or {}
    md = model["metadata"]
    shapes = model["shapes"]
    ops = model["operations"]
    names = sorted(shapes)
    index = {n: i for i, n in enumerate(names)}
    patterned = [n for n in names if "pattern" in shapes[n]]
    pidx = {n: i for i, n in enumerate(patterned)}

    def ref(name):
        return "&%s_shapes[%d]" % (pfx, index[name])

    out = []
    w = out.append
    w("/* %s - the %s API model (%s %s) as static tables.\n"
      " *\n"
      " * Generated by scripts/gen_model.py from the AWS API model shipped with\n"
      " * botocore; do not edit.  See model/model.h for what the tables mean.\n"
      " * Model digest: %s */\n"
      % (os.path.basename(SERVICES_FILE[service]), md.get("serviceId", service),
         md.get("targetPrefix"), md["apiVersion"], model_digest(model)))
    w('#include "model/model.h"\n')
    w("static const model_shape %s_shapes[%d];\n" % (pfx, len(names)))

    # Enum value lists.
    for n in names:
        s = shapes[n]
        if "enum" in s:
            w("static const char *const %s_enum_%s[] = {" % (pfx, n))
            for v in s["enum"]:
                w("  %s," % cstr(v))
            w("};\n")

    # Structure members, in model order.
    for n in names:
        s = shapes[n]
        if s["type"] == "structure" and s.get("members"):
            req = set(s.get("required", []))
            w("static const model_member %s_members_%s[] = {" % (pfx, n))
            for mname, m in s["members"].items():
                w("  {%s, %s, %d, %s}," % (cstr(mname), ref(m["shape"]), 1 if mname in req else 0,
                                         cstr(first_sentence(m.get("documentation")))))
            w("};\n")

    # Shapes, sorted by name.
    w("static const model_shape %s_shapes[%d] = {" % (pfx, len(names)))
    for n in names:
        s = shapes[n]
        t = s["type"]
        if t not in TYPES:
            sys.exit("gen_model: shape %s has unsupported type %r" % (n, t))
        f = [".name = %s" % cstr(n), ".type = %s" % TYPES[t]]
        if "min" in s:
            f += [".has_min = 1", ".min = %s" % bound(s["min"], "min", n)]
        if "max" in s:
            f += [".has_max = 1", ".max = %s" % bound(s["max"], "max", n)]
        if "pattern" in s:
            f += [".pattern = %s" % cstr(s["pattern"]), ".pattern_index = %d" % pidx[n]]
        else:
            f.append(".pattern_index = -1")
        if "enum" in s:
            f += [".enum_values = %s_enum_%s" % (pfx, n), ".enum_count = %d" % len(s["enum"])]
        if s.get("sensitive"):
            f.append(".sensitive = 1")
        if s.get("exception"):
            f.append(".exception = 1")
        if t == "list":
            f.append(".member = %s" % ref(s["member"]["shape"]))
        if t == "map":
            f += [".key = %s" % ref(s["key"]["shape"]), ".value = %s" % ref(s["value"]["shape"])]
        if t == "structure" and s.get("members"):
            f += [".members = %s_members_%s" % (pfx, n), ".member_count = %d" % len(s["members"])]
        w("  [%d] = {%s}," % (index[n], ", ".join(f)))
    w("};\n")

    # Patterns, one slot per patterned shape.
    if patterned:
        w("static const char *const %s_patterns[%d] = {" % (pfx, len(patterned)))
        for n in patterned:
            w("  %s, /* %s */" % (cstr(shapes[n]["pattern"]), n))
        w("};\n")

    # Error lists and operations, sorted by name.
    opnames = sorted(ops)
    for o in opnames:
        errs = ops[o].get("errors", [])
        if errs:
            w("static const char *const %s_errors_%s[] = {" % (pfx, o))
            for e in errs:
                w("  %s," % cstr(e["shape"]))
            w("};\n")
    # Paginators: how a caller walks every page of a listing operation.
    for o in opnames:
        if o not in paginators:
            continue
        pg = paginators[o]
        keys = paginator_fields(o, pg, model)
        w("static const char *const %s_result_keys_%s[] = {%s};" % (pfx, o, ", ".join(cstr(k) for k in keys)))
        w("static const model_paginator %s_paginator_%s = {.input_token = %s, .output_token = %s, "
          ".more_results = %s, .limit_key = %s, .result_keys = %s_result_keys_%s, .result_key_count = %d};\n"
          % (pfx, o, cstr(pg["input_token"]), cstr(pg["output_token"]), cstr(pg.get("more_results")),
             cstr(pg.get("limit_key")), pfx, o, len(keys)))
    w("static const model_op %s_ops[%d] = {" % (pfx, len(opnames)))
    for o in opnames:
        op = ops[o]
        errs = op.get("errors", [])
        f = [".name = %s" % cstr(o),
             ".input = %s" % (ref(op["input"]["shape"]) if "input" in op else "NULL"),
             ".output = %s" % (ref(op["output"]["shape"]) if "output" in op else "NULL"),
             ".errors = %s" % ("%s_errors_%s" % (pfx, o) if errs else "NULL"),
             ".error_count = %d" % len(errs),
             ".doc = %s" % cstr(first_sentence(op.get("documentation"))),
             ".service = &%s" % sym]
        if o in paginators:
            f.append(".paginator = &%s_paginator_%s" % (pfx, o))
        w("  {%s}," % ", ".join(f))
    w("};\n")

    w("const model_service %s = {" % sym)
    w("  .name = %s," % cstr(service))
    w("  .target_prefix = %s," % cstr(md["targetPrefix"]))
    w("  .json_version = %s," % cstr(md.get("jsonVersion", "1.1")))
    w("  .signing_name = %s," % cstr(md.get("signingName", md["endpointPrefix"])))
    w("  .api_version = %s," % cstr(md["apiVersion"]))
    w("  .ops = %s_ops," % pfx)
    w("  .op_count = %d," % len(opnames))
    w("  .shapes = %s_shapes," % pfx)
    w("  .shape_count = %d," % len(names))
    w("  .patterns = %s," % ("%s_patterns" % pfx if patterned else "NULL"))
    w("  .pattern_count = %d," % len(patterned))
    w("};")
    return "\n".join(out) + "\n"


SERVICES_FILE = {s[0]: s[3] for s in SERVICES}


def model_digest(model):
    """sha256 of the model's canonical JSON: names the exact model version."""
    canon = json.dumps(model, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(canon).hexdigest()


def check(out_dir):
    """0 when every committed table matches what this script makes now."""
    status = 0
    for service, sym, pfx, fname in SERVICES:
        model = load(service)
        path = os.path.join(out_dir, fname)
        with open(path) as f:
            committed = f.read()
        m = re.search(r"Model digest: (sha256:[0-9a-f]+)", committed)
        if not m or m.group(1) != model_digest(model):
            print("gen_model: %s was generated from another %s model than this machine's; "
                  "regenerate it deliberately to move to this one" % (fname, service))
            continue
        if generate(service, sym, pfx, model, load_paginators(service)) != committed:
            print("gen_model: %s is stale: scripts/gen_model.py no longer produces it" % fname)
            status = 1
        else:
            print("gen_model: %s is current" % fname)
    return status


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=os.path.join(here, "..", "lib", "model"))
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    a = ap.parse_args()
    if a.check:
        sys.exit(check(a.out_dir))
    for service, sym, pfx, fname in SERVICES:
        text = generate(service, sym, pfx, load(service), load_paginators(service))
        path = os.path.join(a.out_dir, fname)
        with open(path, "w") as f:
            f.write(text)
        print("gen_model: wrote %s" % os.path.normpath(path))


if __name__ == "__main__":
    main()
