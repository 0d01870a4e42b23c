"""test_cli_validate - kms's client-side parameter validation against the AWS CLI's.

Before it sends a request the AWS CLI has botocore check it against the
operation's input shape and prints botocore's report when it fails; `kms`
must print the same text (lib/cli/validate.c).  The validation is driven
through tests/cli/validate_driver.c over JSON lines; the reference is
botocore's ParamValidator, called in this process on the same values.

Requests are generated from botocore's model for every operation of KMS and
CloudHSMv2 (the driver's operation lists must be exactly botocore's): valid
ones, then ones with faults put in at every depth — missing required
members, wrong JSON types (scalars and containers holding quotes, escapes,
non-ASCII and unprintable characters), too-short strings (short in code
points though long in bytes), too-short lists, numbers below their minimum
(booleans among them: they are integers to Python), unknown members, nulls,
timestamps out of the date range.  Reports must be equal, but for one thing
on purpose: where botocore prints a value of a sensitive shape (or of a shape
that holds one), kms prints its placeholder.  The test finds those places
from the model, by walking the request the way the report names values.

Two more comparisons: every code point (but surrogates) printed inside a
container, which checks kms's copy of Python's printable-character table;
and a report longer than the bound, which kms cuts where it says it does.
"""

import base64
import json
import os
import random
import subprocess
import unittest

try:
    import botocore.session
    from botocore.validate import ParamValidator
except ImportError:  # pragma: no cover - the CI image has botocore
    botocore = None

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("KMSD_BUILD_DIR", os.path.join(REPO, "build"))
DRIVER = os.path.join(BUILD, "cli_validate_driver")
# The generator's seed: fixed, so that a failure repeats; set it to explore.
SEED = int(os.environ.get("KMSD_CLI_VALIDATE_SEED", "20261203"))

HEADER = "Parameter validation failed:\n"
HIDDEN = "<sensitive value hidden>"          # CLI_VALIDATE_HIDDEN
TRUNCATED = "[report truncated at 64 KiB]"  # CLI_VALIDATE_TRUNCATED
MAX_REPORT = 64 * 1024                       # CLI_VALIDATE_MAX_REPORT
SERVICES = ("kms", "cloudhsmv2")

# Epoch seconds of the first and the last second the AWS CLI can hold as a date.
FIRST_SECOND, LAST_SECOND = -62135596800, 253402300799

# Characters for generated strings: ASCII, Latin-1, BMP (CJK, combining,
# separators, a BOM), astral (emoji, a private-use plane), quotes and escapes.
ALPHABET = ("abcXYZ019 -_/:.=,'\"\\\t\n\r\x01\x7f"
            "\u00e9\u00a0\u00ad\u4e2d\u6587\u0301\u2028\u200b\ufeff\uffff"
            "\U0001f600\U0001f9ea\U000f0001\U00010348")
# Strings that botocore cannot read as a date (strings at timestamps).
NOT_DATES = ["garbage", "not a date", "\u00e9t\u00e9", "", "2020-13-45T99"]


def reference(validator, shape, request):
    """botocore's report with the header, or None when the request passes."""
    report = validator.validate(request, shape)
    return HEADER + report.generate_report() if report.has_errors() else None


def holds_secret(shape, seen=()):
    if shape.metadata.get("sensitive"):
        return True
    if shape.name in seen:
        return False
    seen = seen + (shape.name,)
    if shape.type_name == "list":
        return holds_secret(shape.member, seen)
    if shape.type_name == "map":
        return holds_secret(shape.key, seen) or holds_secret(shape.value, seen)
    if shape.type_name == "structure":
        return any(holds_secret(m, seen) for m in shape.members.values())
    return False


def hidden_places(shape, value, name, out):
    """Fill `out` with {report name: (whole value hidden, minimum hidden)} for
    every value of `value` the report names whose shape is sensitive."""
    if holds_secret(shape):
        out[name or "input"] = shape.metadata.get("sensitive", False)
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                hidden_places(shape.members[key], item, f"{name}.{key}" if name else key, out)
    elif kind == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            hidden_places(shape.member, item, f"{name}[{i}]", out)
    elif kind == "map" and isinstance(value, dict):
        for key, item in value.items():
            hidden_places(shape.key, key, f"{name} (key: {key})", out)
            hidden_places(shape.value, item, f"{name}.{key}", out)


def expected_report(validator, shape, request):
    """What kms must print: botocore's report with sensitive values replaced."""
    report = reference(validator, shape, request)
    if report is None:
        return None
    places = {}
    hidden_places(shape, request, "", places)
    # Values may span lines (a string holding a newline): work on the text.
    body = "\n" + report[len(HEADER):]
    for place, minimum_too in places.items():
        kinds = [("Invalid type", ", type: <class '")]
        if minimum_too:
            kinds.append(("Invalid value", ", valid min value: "))
        for kind, end in kinds:
            start = f"\n{kind} for parameter {place}, value: "
            at = body.find(start)
            while at >= 0:
                value_at = at + len(start)
                value_end = body.index(end, value_at)
                # None, True and False are printed: they say nothing of a secret.
                if kind != "Invalid type" or body[value_at:value_end] not in ("None", "True", "False"):
                    body = body[:value_at] + HIDDEN + body[value_end:]
                at = body.find(start, value_at)
    return HEADER + body[1:]


def run_driver(rows):
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    proc = subprocess.run([DRIVER], input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=300, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"driver failed: {proc.stderr.decode(errors='replace')}")
    out = [json.loads(line) for line in proc.stdout.decode().split("\n")[:-1]]
    if len(out) != len(rows):
        raise AssertionError(f"driver printed {len(out)} rows for {len(rows)} requests")
    for row in out:
        if "error" in row:
            raise AssertionError(f"driver error: {row['error']}")
    return [row.get("report") for row in out]


class Generator:
    """Requests for one input shape, valid or with faults put in."""

    def __init__(self, rng):
        self.rng = rng

    # ---- valid values --------------------------------------------------

    def text(self, length):
        return "".join(self.rng.choice(ALPHABET) for _ in range(length))

    def valid(self, shape, depth=0):
        rng, kind, md = self.rng, shape.type_name, shape.metadata
        low = md.get("min", 0)
        if kind == "structure":
            required = md.get("required", [])
            keys = [k for k in shape.members
                    if k in required or (depth < 4 and rng.random() < 0.5)]
            if rng.random() < 0.5:
                rng.shuffle(keys)
            return {k: self.valid(shape.members[k], depth + 1) for k in keys}
        if kind == "list":
            return [self.valid(shape.member, depth + 1) for _ in range(low + rng.randrange(3))]
        if kind == "map":
            out = {}
            for _ in range(rng.randrange(4)):
                out[self.valid(shape.key, depth + 1)] = self.valid(shape.value, depth + 1)
            return out
        if kind == "string":
            if "enum" in md and rng.random() < 0.7:
                return rng.choice(md["enum"])
            return self.text(max(low, 0) + rng.randrange(4))
        if kind == "blob":
            return base64.b64encode(os.urandom(rng.randrange(1, 12))).decode()
        if kind in ("integer", "long"):
            if low <= 1 and rng.random() < 0.2:
                return True
            return low + rng.randrange(50)
        if kind in ("double", "float"):
            return low + rng.random() * 10
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "timestamp":
            return rng.choice([0, 1700000000, LAST_SECOND, FIRST_SECOND, 1.7e9 + 0.25, True])
        raise AssertionError(f"no generator for {kind}")

    # ---- faults --------------------------------------------------------

    def wrong_value(self, depth=0):
        rng = self.rng
        pick = rng.randrange(12 if depth < 3 else 9)
        if pick == 0:
            return None
        if pick == 1:
            return rng.random() < 0.5
        if pick == 2:
            return rng.choice([0, -1, 7, 2 ** 62, -(2 ** 63)])
        if pick == 3:
            return rng.choice([0.0, -0.0, 1.5, 1e16, 1e15, 1e-5, 1e-4, 0.1, 123456789.125,
                               1e300, 2.5e-300, 3.0])
        if pick <= 8:
            return self.text(rng.randrange(6))
        if pick <= 10:
            return [self.wrong_value(depth + 1) for _ in range(rng.randrange(4))]
        return {self.text(rng.randrange(1, 4)): self.wrong_value(depth + 1)
                for _ in range(rng.randrange(4))}

    def wrong_type(self, shape):
        """A value whose JSON type the shape refuses."""
        kind = shape.type_name
        while True:
            v = self.wrong_value()
            if kind in ("string", "blob"):
                ok = isinstance(v, str)
            elif kind in ("integer", "long"):
                ok = isinstance(v, int)
            elif kind in ("double", "float"):
                ok = isinstance(v, (int, float))
            elif kind == "boolean":
                ok = isinstance(v, bool)
            elif kind == "timestamp":
                ok = isinstance(v, (int, float))
                if isinstance(v, str):
                    v = self.rng.choice(NOT_DATES)
            elif kind == "list":
                ok = isinstance(v, list)
            else:
                ok = isinstance(v, dict)
            if not ok:
                return v

    def fault_for(self, shape):
        """A replacement value with a fault of the shape's own kind, or None."""
        rng, kind, md = self.rng, shape.type_name, shape.metadata
        low = md.get("min", 0)
        choices = [lambda: self.wrong_type(shape), lambda: None]
        if kind == "string" and low > 0:
            # Short in code points, though the astral ones make it long in bytes.
            choices.append(lambda: "".join(rng.choice("\U0001f600\u00e9a\u4e2d")
                                           for _ in range(rng.randrange(low))))
        if kind == "string" and low > 1:
            choices.append(lambda: "\U0001f600" * low)  # exactly the minimum: valid
        if kind == "list" and low > 0:
            choices.append(lambda: [self.valid(shape.member) for _ in range(rng.randrange(low))])
        if kind in ("integer", "long", "double", "float") and "min" in md:
            choices.append(lambda: rng.choice([low - 1, low - 1000, -(2 ** 63)]))
            if low > 0:
                choices.append(lambda: False)
            if low > 1:
                choices.append(lambda: True)
            if kind in ("double", "float"):
                choices.append(lambda: low - 0.5)
        if kind == "timestamp":
            choices.append(lambda: rng.choice([LAST_SECOND + 1, FIRST_SECOND - 1, 1e12, -1e11,
                                               253402300799.5, 253402300799.9999996]))
        return rng.choice(choices)()

    def put_fault(self, shape, value, top=True):
        """A copy of `value` with one fault somewhere at or below it (the
        request itself is rarely replaced: that fault hides all others)."""
        rng, kind = self.rng, shape.type_name
        if kind == "structure" and isinstance(value, dict):
            moves = ["here" if not top or rng.random() < 0.1 else "unknown", "unknown"]
            known = [k for k in value if k in shape.members]
            if known:
                moves += ["deeper"] * 3
            if any(k in value for k in shape.metadata.get("required", [])):
                moves.append("drop")
            move = rng.choice(moves)
            out = dict(value)
            if move == "deeper":
                key = rng.choice(known)
                out[key] = self.put_fault(shape.members[key], out[key], False)
                return out
            if move == "unknown":
                items = list(out.items())
                items.insert(rng.randrange(len(items) + 1),
                             (rng.choice(["Foo", "keyId", "", "\u00e9", "Tags "]), self.wrong_value()))
                return dict(items)
            if move == "drop":
                del out[rng.choice([k for k in shape.metadata["required"] if k in out])]
                return out
        elif kind == "list" and isinstance(value, list) and value and rng.random() < 0.7:
            out = list(value)
            i = rng.randrange(len(out))
            out[i] = self.put_fault(shape.member, out[i], False)
            return out
        elif kind == "map" and isinstance(value, dict) and rng.random() < 0.7:
            out = dict(value)
            if out and rng.random() < 0.6:
                key = rng.choice(list(out))
                out[key] = self.put_fault(shape.value, out[key], False)
            else:
                out[rng.choice(["", "k", "\u00e9", "a.b", "x y"])] = self.wrong_value()
            return out
        return self.fault_for(shape)


class TestCliValidate(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Both are part of the build and the image: missing is a failure, not a skip.
        if botocore is None:
            raise AssertionError("botocore is not installed")
        if not os.path.exists(DRIVER):
            raise AssertionError(f"{DRIVER} is not built")
        session = botocore.session.get_session()
        cls.models = {s: session.get_service_model(s) for s in SERVICES}
        cls.validator = ParamValidator()

    def compare(self, cases):
        """cases: (service, op, request); every report must be as expected."""
        rows, expected = [], []
        for service, op, request in cases:
            shape = self.models[service].operation_model(op).input_shape
            expected.append(expected_report(self.validator, shape, request))
            rows.append({"service": service, "op": op, "request": request})
        got = run_driver(rows)
        mismatches = [(r, e, g) for r, e, g in zip(rows, expected, got) if e != g]
        for row, want, have in mismatches[:5]:
            print(f"\n{json.dumps(row, ensure_ascii=False)[:2000]}\n"
                  f"want: {want!r}\nhave: {have!r}")
        self.assertEqual(len(mismatches), 0,
                         f"{len(mismatches)} of {len(rows)} reports differ (seed {SEED})")
        return expected

    def test_operation_lists_are_botocores(self):
        proc = subprocess.run([DRIVER, "--list"], stdout=subprocess.PIPE, check=True, timeout=60)
        lists = {row["service"]: row["ops"]
                 for row in map(json.loads, proc.stdout.decode().splitlines())}
        for service in SERVICES:
            self.assertEqual(sorted(lists[service]), sorted(self.models[service].operation_names))

    def test_generated_requests(self):
        rng = random.Random(SEED)
        gen = Generator(rng)
        cases = []
        for service in SERVICES:
            model = self.models[service]
            for op in model.operation_names:
                shape = model.operation_model(op).input_shape
                for _ in range(12):
                    cases.append((service, op, gen.valid(shape)))
                for _ in range(80):
                    request = gen.valid(shape)
                    for _ in range(rng.choice([1, 1, 2, 3])):
                        request = gen.put_fault(shape, request)
                    cases.append((service, op, request))
                for request in ([], None, "x", 1, [{}], {"": None}):
                    cases.append((service, op, request))
        expected = self.compare(cases)
        faulty = sum(1 for e in expected if e)
        # (The models' map keys have no minimum: "(key: ...)" names cannot
        # occur; test_cli_validate.c checks them on a shape of its own.)
        # The generator must exercise both sides and every kind of line.
        self.assertGreater(len(cases), 6000)
        self.assertGreater(faulty, len(cases) // 2)
        self.assertLess(faulty, len(cases) - 500)
        text = "\n".join(e for e in expected if e)
        for kind in ("Missing required parameter in ", "Unknown parameter in ",
                     "Invalid type for parameter ", "Invalid length for parameter ",
                     "Invalid value for parameter ", HIDDEN, "\\U000f0001", "\\u2028", "value: False"):
            self.assertIn(kind, text, f"no report holds {kind!r}")

    def test_sensitive_values_never_printed(self):
        secrets = ["hunter2-password", "AKIA" + "Q" * 20, "s" * 50]
        cases = []
        for secret in secrets:
            for wrong in ([secret], {"v": secret}, [[secret]]):
                cases.append(("kms", "Encrypt", {"KeyId": "k", "Plaintext": wrong}))
                cases.append(("kms", "CreateCustomKeyStore",
                              {"CustomKeyStoreName": "n", "KeyStorePassword": wrong}))
                cases.append(("kms", "UpdateCustomKeyStore",
                              {"CustomKeyStoreId": "c", "XksProxyAuthenticationCredential":
                               {"AccessKeyId": wrong, "RawSecretAccessKey": secret}}))
                cases.append(("kms", "UpdateCustomKeyStore",
                              {"CustomKeyStoreId": "c", "XksProxyAuthenticationCredential": wrong}))
        expected = self.compare(cases)
        for (_, _, request), report in zip(cases, expected):
            # A credential given as an object is the right type: nothing to hide.
            if not isinstance(request.get("XksProxyAuthenticationCredential", []), dict):
                self.assertIn(HIDDEN, report)
            for secret in secrets:
                self.assertNotIn(secret, report)

    def test_every_code_point_in_a_container(self):
        # Each request puts a run of code points inside a list at a string
        # position, so the report prints it as Python's repr() does.
        cases = []
        step = 2048
        for start in range(0, 0x110000, step):
            run = "".join(chr(c) for c in range(start, start + step) if not 0xD800 <= c <= 0xDFFF)
            if run:
                cases.append(("kms", "DescribeKey", {"KeyId": [run]}))
        self.compare(cases)

    def test_report_bound(self):
        request = {"KeyId": ["\u00e9" * 7 + str(i) for i in range(6000)]}
        shape = self.models["kms"].operation_model("DescribeKey").input_shape
        full = reference(self.validator, shape, request).encode()
        self.assertGreater(len(full), MAX_REPORT)
        keep = MAX_REPORT - len(("\n" + TRUNCATED).encode())
        while full[keep] & 0xC0 == 0x80:
            keep -= 1
        want = full[:keep].decode() + "\n" + TRUNCATED
        got = run_driver([{"service": "kms", "op": "DescribeKey", "request": request}])[0]
        self.assertEqual(got, want)
        self.assertLessEqual(len(got.encode()), MAX_REPORT)


if __name__ == "__main__":
    unittest.main()
