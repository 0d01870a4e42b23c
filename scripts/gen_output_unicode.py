#!/usr/bin/env python3
"""gen_output_unicode.py - rebuild the tables of lib/cli/output_unicode.c.

The --output formats answer three Unicode questions as the AWS CLI (a Python
program) answers them: how many columns a table gives a character
(unicodedata.east_asian_width() W, F or A: two), whether repr() escapes it
(str.isprintable() false) and what str.upper() makes of it.  The answers
come from the running Python's Unicode database; this script writes them
into the three tables of output_unicode.c (ASCII is decided in code and is
left out) and the Unicode version into the file's opening comment.

usage: scripts/gen_output_unicode.py           (rewrite the tables)
       scripts/gen_output_unicode.py --check   (fail if they are stale)

--check tells "the tables drifted from what this script makes" (a failure)
from "this Python ships another Unicode version" (reported, not a failure:
the committed tables stay those of the version they name).
"""

import argparse
import os
import re
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = os.path.join(HERE, "..", "lib", "cli", "output_unicode.c")
WIDTH = 117
VERSION_RE = re.compile(r"\(Unicode (\d+\.\d+\.\d+)\)")


def runs_where(test):
    """[first, last] runs of code points from U+0080 for which test(cp) holds."""
    runs = []
    for cp in range(0x80, 0x110000):
        if not test(cp):
            continue
        if runs and runs[-1][1] == cp - 1:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp])
    return runs


def upper_pairs():
    pairs = []
    for cp in range(0x80, 0x110000):
        up = chr(cp).upper()
        if up != chr(cp):
            pairs.append((cp, [ord(c) for c in up] + [0] * (3 - len(up))))
    return pairs


def wrap(entries):
    """Entries filled into lines of at most WIDTH columns, two-space indent."""
    lines, line = [], ""
    for entry in entries:
        piece = entry + ","
        if line and len(line) + 1 + len(piece) > WIDTH:
            lines.append(line)
            line = ""
        line = (line + " " + piece) if line else "  " + piece
    if line:
        lines.append(line)
    return "\n".join(lines) + "\n"


def tables():
    two = runs_where(lambda cp: unicodedata.east_asian_width(chr(cp)) in ("W", "F", "A"))
    unprintable = runs_where(lambda cp: not chr(cp).isprintable())
    return {
        "uni_two_columns": wrap("{0x%X, 0x%X}" % (a, b) for a, b in two),
        "uni_unprintable": wrap("{0x%X, 0x%X}" % (a, b) for a, b in unprintable),
        "uni_upper_table": wrap("{0x%X, {0x%X, 0x%X, 0x%X}}" % (cp, *to) for cp, to in upper_pairs()),
    }


def rebuild(text):
    """The file's text with fresh tables and the running Unicode version."""
    for name, body in tables().items():
        pattern = re.compile(r"(static const \w+ %s\[\] = \{\n)(.*?)(\};\n)" % name, re.S)
        if not pattern.search(text):
            sys.exit("gen_output_unicode: table %s not found in %s" % (name, TARGET))
        text = pattern.sub(lambda m, b=body: m.group(1) + b + m.group(3), text, count=1)
    return VERSION_RE.sub("(Unicode %s)" % unicodedata.unidata_version, text, count=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    a = ap.parse_args()
    with open(TARGET, encoding="utf-8") as f:
        current = f.read()
    named = VERSION_RE.search(current)
    if a.check:
        if named and named.group(1) != unicodedata.unidata_version:
            print("gen_output_unicode: the tables are of Unicode %s, this Python has %s: not compared"
                  % (named.group(1), unicodedata.unidata_version))
            return 0
        if rebuild(current) != current:
            print("gen_output_unicode: %s is stale; run scripts/gen_output_unicode.py" % os.path.normpath(TARGET))
            return 1
        print("gen_output_unicode: %s is current" % os.path.normpath(TARGET))
        return 0
    with open(TARGET, "w", encoding="utf-8") as f:
        f.write(rebuild(current))
    print("gen_output_unicode: wrote %s" % os.path.normpath(TARGET))
    return 0


if __name__ == "__main__":
    sys.exit(main())
