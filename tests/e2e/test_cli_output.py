"""test_cli_output - `kms --output` against the AWS CLI's own formatters.

Scripts parse what the AWS CLI prints, so `kms` must print the same bytes.
The formatter (lib/cli/output.c) is driven through tests/cli/format_driver.c
with a JSON document; the same document, loaded by Python's json module as
botocore would hand it over, goes through the AWS CLI's JSONFormatter,
TextFormatter and TableFormatter in this process, called as the CLI calls
them for an operation of that name with colour off.  json, text and table
must match byte for byte, on a corpus of realistic KMS responses and on
generated nested documents.  The CLI (v1 here) has no yaml output: ours must
parse back to the same data.

When the CLI itself fails on a document (a table of rows of different
lengths, text of a list mixing objects with scalars), the driver must refuse
it too (exit 1) rather than print something.
"""

import argparse
import base64
import copy
import io
import json
import os
import random
import subprocess
import time
import unittest
from unittest import mock

try:
    from awscli.formatter import JSONFormatter, TableFormatter, TextFormatter
except ImportError:  # pragma: no cover - the CI image has awscli
    JSONFormatter = TableFormatter = TextFormatter = None

try:
    import yaml
except ImportError:  # pragma: no cover
    yaml = None

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("KMSD_BUILD_DIR", os.path.join(REPO, "build"))
DRIVER = os.path.join(BUILD, "cli_format_driver")

ACCOUNT = "111122223333"
REGION = "us-west-2"


def key_arn(key_id):
    return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"


KEY_IDS = ["1234abcd-12ab-34cd-56ef-1234567890ab", "0987dcba-09fe-87dc-65ba-ab0987654321",
           "mrk-1234abcd12ab34cd56ef1234567890ab"]

POLICY = json.dumps({
    "Version": "2012-10-17",
    "Id": "key-default-1",
    "Statement": [{
        "Sid": "Enable IAM User Permissions",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "kms:*",
        "Resource": "*",
    }],
}, indent=2)

# (title, response) as botocore hands them to the formatter: members in
# model order, timestamps as on the wire (the v1 default), blobs as base64.
CORPUS = [
    ("DescribeKey", {"KeyMetadata": {
        "AWSAccountId": ACCOUNT, "KeyId": KEY_IDS[0], "Arn": key_arn(KEY_IDS[0]),
        "CreationDate": 1733000000.123, "Enabled": True, "Description": "",
        "KeyUsage": "ENCRYPT_DECRYPT", "KeyState": "Enabled", "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER", "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
        "KeySpec": "SYMMETRIC_DEFAULT", "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
        "MultiRegion": False}}),
    ("DescribeKey", {"KeyMetadata": {
        "AWSAccountId": ACCOUNT, "KeyId": KEY_IDS[2], "Arn": key_arn(KEY_IDS[2]),
        "CreationDate": 1733000000, "Enabled": False, "Description": "multi-Region primary",
        "KeyUsage": "SIGN_VERIFY", "KeyState": "PendingDeletion", "DeletionDate": 1735592000.5,
        "PendingDeletionWindowInDays": 30, "Origin": "AWS_KMS", "KeyManager": "CUSTOMER",
        "KeySpec": "ECC_NIST_P256", "SigningAlgorithms": ["ECDSA_SHA_256"], "MultiRegion": True,
        "MultiRegionConfiguration": {
            "MultiRegionKeyType": "PRIMARY",
            "PrimaryKey": {"Arn": key_arn(KEY_IDS[2]), "Region": REGION},
            "ReplicaKeys": [{"Arn": key_arn(KEY_IDS[2]).replace(REGION, "eu-west-1"),
                             "Region": "eu-west-1"},
                            {"Arn": key_arn(KEY_IDS[2]).replace(REGION, "ap-northeast-1"),
                             "Region": "ap-northeast-1"}]}}}),
    ("ListKeys", {"Keys": [{"KeyId": k, "KeyArn": key_arn(k)} for k in KEY_IDS],
                  "Truncated": False}),
    ("ListKeys", {"Keys": [{"KeyId": k, "KeyArn": key_arn(k)} for k in KEY_IDS[:2]],
                  "NextMarker": "eyJrZXkiOiAiMDk4N2RjYmEifQ==", "Truncated": True}),
    ("ListAliases", {"Aliases": [
        {"AliasName": "alias/aws/ebs", "AliasArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/aws/ebs",
         "TargetKeyId": KEY_IDS[1], "CreationDate": 1700000000.0, "LastUpdatedDate": 1700000000.0},
        {"AliasName": "alias/app", "AliasArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/app",
         "TargetKeyId": KEY_IDS[0], "CreationDate": 1733000001.25,
         "LastUpdatedDate": 1733000002.75},
        {"AliasName": "alias/unused", "AliasArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/unused"}],
        "Truncated": False}),
    ("DescribeCustomKeyStores", {"CustomKeyStores": [
        {"CustomKeyStoreId": "cks-1234567890abcdef0", "CustomKeyStoreName": "ExampleXksStore",
         "ConnectionState": "CONNECTED", "CreationDate": 1733000000.0,
         "CustomKeyStoreType": "EXTERNAL_KEY_STORE",
         "XksProxyConfiguration": {"Connectivity": "VPC_ENDPOINT_SERVICE",
                                   "AccessKeyId": "ABCDE12345670EXAMPLE",
                                   "UriEndpoint": "https://myproxy-private.xks.example.com",
                                   "UriPath": "/kms/xks/v1",
                                   "VpcEndpointServiceName": "com.amazonaws.vpce.us-east-1.vpce-svc-example1"}},
        {"CustomKeyStoreId": "cks-0987654321fedcba0", "CustomKeyStoreName": "ExampleCloudHSM",
         "CloudHsmClusterId": "cluster-1a23b4cdefg", "TrustAnchorCertificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
         "ConnectionState": "FAILED", "ConnectionErrorCode": "NETWORK_ERRORS",
         "CreationDate": 1733000000.0, "CustomKeyStoreType": "AWS_CLOUDHSM"}],
        "Truncated": False}),
    ("GetKeyPolicy", {"Policy": POLICY, "PolicyName": "default"}),
    ("Encrypt", {"CiphertextBlob": base64.b64encode(bytes(range(200))).decode(),
                 "KeyId": key_arn(KEY_IDS[0]), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
    ("GetKeyRotationStatus", {"KeyRotationEnabled": True, "KeyId": KEY_IDS[0],
                              "RotationPeriodInDays": 365, "NextRotationDate": 1764536000.0,
                              "OnDemandRotationStartDate": 1733000000.9}),
    ("GetKeyRotationStatus", {"KeyRotationEnabled": False}),
    ("ListResourceTags", {"Tags": [{"TagKey": "CostCenter", "TagValue": "87654"},
                                   {"TagKey": "CreatedBy", "TagValue": "ExampleUser"},
                                   {"TagKey": "Purpose", "TagValue": "Test"}],
                          "Truncated": False}),
    ("ListGrants", {"Grants": [
        {"KeyId": key_arn(KEY_IDS[0]), "GrantId": "0c237476b39f8bc44e45212e08498fbe3151305030726c0590dd8d3e9f3d6a60",
         "Name": "", "CreationDate": 1733000000.0, "GranteePrincipal": f"arn:aws:iam::{ACCOUNT}:role/ExampleRole",
         "IssuingAccount": f"arn:aws:iam::{ACCOUNT}:root",
         "Operations": ["Decrypt", "Encrypt", "GenerateDataKey"],
         "Constraints": {"EncryptionContextSubset": {"Department": "IT", "Project": "Alpha"}}},
        {"KeyId": key_arn(KEY_IDS[0]), "GrantId": "91ad875e49b04a9d1f3bdeb84d821f9db6ea95e1098813f6d47f0c65fbe2a172",
         "Name": "retiring", "CreationDate": 1733000100.0, "GranteePrincipal": "acm.us-west-2.amazonaws.com",
         "RetiringPrincipal": "acm.us-west-2.amazonaws.com", "IssuingAccount": f"arn:aws:iam::{ACCOUNT}:root",
         "Operations": ["ReEncryptFrom", "ReEncryptTo", "RetireGrant", "DescribeKey"],
         "Constraints": {"EncryptionContextEquals": {"aws:acm:arn": "arn:aws:acm:us-west-2:111122223333:certificate/abc"}}}],
        "Truncated": False}),
    ("ListAliases", {"Aliases": [], "Truncated": False}),
    ("ListResourceTags", {"Tags": []}),
    ("CreateAlias", {}),
    ("DescribeKey", {"KeyMetadata": {"KeyId": KEY_IDS[0], "Description": "clé de test — 日本語のキー 🔑",
                                     "Enabled": True}}),
    ("ListResourceTags", {"Tags": [{"TagKey": "名前", "TagValue": "値"}, {"TagKey": "ümlaut", "TagValue": "ß"}]}),
    ("GenerateRandom", {"Plaintext": base64.b64encode(b"\x00" * 1024).decode()}),
    # --query results: lists, scalars and null reach the formatter too.
    ("ListKeys", [k for k in KEY_IDS]),
    ("ListKeys", [[k, key_arn(k)] for k in KEY_IDS]),
    ("DescribeKey", "Enabled"),
    ("DescribeKey", None),
    ("DescribeKey", 42),
    ("DescribeKey", 0.5),
    # Records among the items of an array nested two levels down: their
    # boxes hang from level 0 whatever the depth.
    ("T", {"A": {"B": [[{"x": 1, "y": [7]}, {"x": 2, "y": [8]}]]}}),
    ("T", {"A": {"B": [[1, [{"x": 1, "y": {"z": 1}}]]]}}),
    ("T", {"A": {"B": {"C": [[{"x": 1, "y": [7]}], [{"x": 2}]]}}}),
]

TRICKY_STRINGS = [
    "", " ", "yes", "No", "~", "null", "true", "1e5", "0x1F", "1_000", "1:30", "2024-01-01",
    "2024-01-01T10:00:00Z", ".inf", "-.5", "+1", "1.", "=", "<<", "- a", "? x", "#c", "a #b",
    "key: value", "*ref", "&anchor", "!tag", "%x", "@x", "`x", "'single'", '"double"', "[a]",
    "{b}", " lead", "trail ", "multi\nline\n", "\ttab", "back\\slash", "é", "日本語", "😀",
    "\x7f", "\x00nul", "\u0085", "\u2028", "a\u200bb", "\ufeffbom", "ｆｕｌｌ", "Ω", "x" * 150,
    "word " * 30, "it's", "both ' and \"", "\r\n", "\x1b[31m",
]


class ResultQuery:
    """Stands for `--query Result`: a response is always an object, and a
    list, scalar or null reaches the formatter only through a query."""

    @staticmethod
    def search(response):
        return response["Result"]


def aws_format(fmt, title, data, width=80, color=False):
    """What the AWS CLI prints for `data` as the response of `title`."""
    query = None
    if not isinstance(data, dict):
        query, data = ResultQuery(), {"Result": data}
    args = argparse.Namespace(query=query, color="on" if color else "off")
    cls = {"json": JSONFormatter, "text": TextFormatter, "table": TableFormatter}[fmt]
    formatter = cls(args)
    if fmt == "table":
        # The CLI asks the terminal; under a test there is none, and the CLI
        # then assumes 80 columns.  Pin it so a run from a terminal agrees.
        formatter.table._terminal_width = width
    stream = io.StringIO()
    formatter(title, copy.deepcopy(data), stream)
    return stream.getvalue()


def ours(fmt, title, data, width=80, color=False, max_bytes=None):
    """(exit status, stdout text, stderr) of the driver."""
    cmd = [DRIVER, fmt, title]
    if fmt == "table":
        cmd += ["--width", str(width)]
    if color:
        cmd.append("--color")
    if max_bytes is not None:
        cmd += ["--max-bytes", str(max_bytes)]
    proc = subprocess.run(cmd, input=json.dumps(data, ensure_ascii=False).encode(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, check=False)
    return proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8", "replace")


def random_scalar(rng):
    kind = rng.randrange(9)
    if kind == 0:
        return rng.choice(TRICKY_STRINGS)
    if kind == 1:
        return rng.randint(-10 ** 12, 10 ** 12)
    if kind == 2:
        return rng.choice([0, 1, -1, 2 ** 63 - 1, -2 ** 63])
    if kind == 3:
        return rng.choice([rng.uniform(-1e6, 1e6), rng.random() * 10 ** rng.randint(-9, 20),
                           1733000000.123, 0.1 + 0.2, 1e16, 1e-5, 123456789012345.6, -0.0, 2.5])
    if kind == 4:
        return rng.choice([True, False])
    if kind == 5:
        return None
    alphabet = "abcXYZ019 -_:/.é日本\t\n😀"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))


KEY_POOL = ["KeyId", "Arn", "Name", "State", "Tags", "Items", "a", "b", "Zed", "key_1", "Values",
            "Config", "x", "Nested", "CreationDate"]


def random_doc(rng, depth=0, uniform=False):
    """A nested document.  `uniform` keeps list elements of one kind, as
    model-typed responses are; otherwise anything goes."""
    if depth >= 4 or rng.random() < 0.3:
        return random_scalar(rng)
    if rng.random() < 0.55:
        keys = rng.sample(KEY_POOL, rng.randint(0, 6))
        return {k: random_doc(rng, depth + 1, uniform) for k in keys}
    n = rng.randint(0, 4)
    if uniform:
        kind = rng.randrange(3)
        if kind == 0:
            return [random_scalar(rng) for _ in range(n)]
        if kind == 1:
            keys = rng.sample(KEY_POOL, rng.randint(1, 5))
            return [{k: random_doc(rng, depth + 2, uniform) for k in keys
                     if rng.random() < 0.85} for _ in range(n)]
        return [random_doc(rng, depth + 1, uniform) for _ in range(n)]
    return [random_doc(rng, depth + 1, uniform) for _ in range(n)]


# Under ctest (KMSD_BUILD_DIR set) a missing CLI or driver is a failure:
# skipping would report the comparison as passed.  Run by hand without a
# build, the tests are skipped instead.
UNDER_CTEST = "KMSD_BUILD_DIR" in os.environ
MISSING = [why for why, missing in (("awscli is not importable", JSONFormatter is None),
                                    (f"{DRIVER} is not built", not os.access(DRIVER, os.X_OK)))
           if missing]


@unittest.skipIf(MISSING and not UNDER_CTEST, "; ".join(MISSING))
class CliOutputDifferential(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if MISSING:
            raise AssertionError("cannot compare with the AWS CLI: " + "; ".join(MISSING))

    def compare(self, fmt, title, data, width=80, color=False):
        try:
            expected = aws_format(fmt, title, data, width, color)
        except Exception as exc:  # the CLI cannot print it: neither may we
            rc, out, err = ours(fmt, title, data, width, color)
            self.assertEqual(rc, 1, f"the CLI fails ({exc!r}); ours printed:\n{out}")
            # A refusal, not a sanitizer's report that also exits 1.
            self.assertIn("output cannot show", err)
            return "refused"
        rc, out, err = ours(fmt, title, data, width, color)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, expected, f"{fmt} of {title} differs for {data!r}")
        return "same"

    def check_yaml(self, title, data):
        for fmt in ("yaml", "yaml-stream"):
            rc, out, err = ours(fmt, title, data)
            self.assertEqual(rc, 0, err)
            if yaml is None:
                continue
            if data == {}:
                self.assertEqual(out, "")
                continue
            loaded = yaml.safe_load(out)
            self.assertEqual(loaded, data if fmt == "yaml" else [data], f"{fmt}:\n{out}")

    def test_corpus_json_text_table(self):
        counts = {}
        for title, data in CORPUS:
            for fmt in ("json", "text", "table"):
                with self.subTest(title=title, fmt=fmt, data=data):
                    verdict = self.compare(fmt, title, data)
                    counts[(fmt, verdict)] = counts.get((fmt, verdict), 0) + 1
            with self.subTest(title=title, fmt="table-wide"):
                self.compare("table", title, data, width=250)
            with self.subTest(title=title, fmt="table-narrow"):
                self.compare("table", title, data, width=20)
        print(f"\ncorpus cases {len(CORPUS)}: {sorted(counts.items())}")

    def test_corpus_table_color(self):
        # The colour styler's colorama.init() would wrap this process's own
        # stdout (once per formatter); the codes it puts in cells do not
        # depend on it.
        with mock.patch("awscli.table.colorama.init"):
            for title, data in CORPUS:
                with self.subTest(title=title):
                    self.compare("table", title, data, color=True)

    def test_corpus_yaml_parses_back(self):
        if yaml is None:
            print("\nPyYAML is not importable: yaml output only checked to be produced")
        for title, data in CORPUS:
            with self.subTest(title=title):
                self.check_yaml(title, data)

    def test_yaml_look(self):
        """The look of v2's yaml: sorted keys, unindented sequences, quotes
        only where a plain scalar would change type."""
        rc, out, _ = ours("yaml", "ListKeys", {"Keys": [{"KeyId": "k1", "KeyArn": "arn:1"}],
                                               "Truncated": False, "Count": "12"})
        self.assertEqual(rc, 0)
        self.assertEqual(out, "Count: '12'\nKeys:\n- KeyArn: arn:1\n  KeyId: k1\nTruncated: false\n")
        rc, out, _ = ours("yaml-stream", "ListKeys", {"Keys": []})
        self.assertEqual(out, "- Keys: []\n")

    def run_random(self, seed, count, uniform):
        rng = random.Random(seed)
        counts = {}
        for i in range(count):
            data = random_doc(rng, uniform=uniform)
            if rng.random() < 0.8 and not isinstance(data, dict):
                data = {"Result": data}
            for fmt in ("json", "text", "table"):
                width = rng.choice([80, 80, 40, 200]) if fmt == "table" else 80
                with self.subTest(i=i, fmt=fmt, width=width, data=data):
                    verdict = self.compare(fmt, "RandomOperation", data, width)
                    counts[(fmt, verdict)] = counts.get((fmt, verdict), 0) + 1
            with self.subTest(i=i, fmt="yaml", data=data):
                self.check_yaml("RandomOperation", data)
        return counts

    def test_random_model_shaped_documents(self):
        counts = self.run_random(20241130, 250, uniform=True)
        print(f"\nrandom model-shaped documents: {sorted(counts.items())}")

    def test_random_irregular_documents(self):
        counts = self.run_random(7, 250, uniform=False)
        print(f"\nrandom irregular documents: {sorted(counts.items())}")

    def test_narrow_columns(self):
        # Flat objects whose keys differ in length: width sharing rounds some
        # columns below their text and its two spaces.
        rng = random.Random(7)
        for i in range(150):
            doc = {"k" * rng.randint(1, 14) + str(j): "v" * rng.randint(0, 3) for j in range(rng.randint(2, 6))}
            for width in (30, 52, 60, 80):
                with self.subTest(doc=doc, width=width):
                    status, out, err = ours("table", "T", doc, width=width)
                    self.assertEqual((status, out), (0, aws_format("table", "T", doc, width=width)), err)

    def test_floats_print_as_python_repr(self):
        """Every float spelled as Python's repr: powers of two over the whole
        exponent range (some need 17 digits, most far fewer), the values
        scripts meet, and random doubles."""
        rng = random.Random(53)
        floats = [2.0 ** k for k in range(-1074, 1024)] + [-(2.0 ** k) for k in range(-30, 60)]
        floats += [0.1, 0.2, 0.30000000000000004, 1e16, 1e15, 1e-4, 1e-5, 1.5e-7, 2.0 ** 53,
                   2.0 ** 53 + 2, 1e22, 1e23, 5e-324, 1.7976931348623157e308, 123456789012345.6,
                   -0.0, 0.0, 1733000000.123, 100.0, 1e100]
        floats += [rng.uniform(-1, 1) * 10 ** rng.randint(-300, 300) for _ in range(2000)]
        floats += [float(rng.getrandbits(53)) for _ in range(500)]
        for fmt in ("json", "text"):
            with self.subTest(fmt=fmt):
                self.compare(fmt, "Floats", {"Values": floats})
        self.compare("table", "Floats", {"Values": floats[:300]})
        rc, out, err = ours("yaml", "Floats", {"Values": floats})
        self.assertEqual(rc, 0, err)
        if yaml is not None:
            self.assertEqual(yaml.safe_load(out), {"Values": floats})

    def test_unicode_upper_case_section_names(self):
        """Text upper-cases section names as Python's str.upper(), for every
        code point (keys of 32 consecutive ones; no NUL, no surrogates)."""
        points = [cp for cp in range(1, 0x110000) if not 0xD800 <= cp <= 0xDFFF]
        doc = {"".join(chr(cp) for cp in points[i:i + 32]): [1] for i in range(0, len(points), 32)}
        self.compare("text", "Unicode", doc)

    def test_unicode_repr_escapes(self):
        """A list that lands in a text cell shows as Python's repr(), which
        escapes what Unicode calls unprintable: every code point once."""
        points = [cp for cp in range(0, 0x110000) if not 0xD800 <= cp <= 0xDFFF]
        chunks = ["".join(chr(cp) for cp in points[i:i + 64]) for i in range(0, len(points), 64)]
        chunks += ["it's", 'say "hi"', "both ' and \"", "back\\slash"]
        self.compare("text", "Unicode", {"Items": [{"Value": 1}, {"Value": chunks}]})

    def test_unicode_table_widths(self):
        """A table counts East Asian wide, full-width and ambiguous characters
        as two columns: one row per code point of the Basic Multilingual
        Plane, every third beyond it."""
        points = [cp for cp in range(0x20, 0x10000) if not 0xD800 <= cp <= 0xDFFF]
        points += list(range(0x10000, 0x110000, 3))
        for start in range(0, len(points), 40000):
            with self.subTest(start=start):
                self.compare("table", "Unicode", [[chr(cp)] for cp in points[start:start + 40000]],
                             width=200)

    def test_wide_characters_in_every_format(self):
        data = {"Tags": [{"TagKey": "名前", "TagValue": "値" * 30}, {"TagKey": "ｆｕｌｌ", "TagValue": "é" * 50}],
                "Description": "日本語のキー 🔑 ±×÷ ¿", "Truncated": False}
        for fmt in ("json", "text", "table"):
            for width in (20, 80, 300):
                with self.subTest(fmt=fmt, width=width):
                    self.compare(fmt, "ListResourceTags", data, width)
        self.check_yaml("ListResourceTags", data)

    def test_output_cap(self):
        """Output larger than --max-bytes is refused, early for a table whose
        one long cell would pad every line."""
        data = {"Values": ["x" * 60000] + ["y"] * 2000}
        rc, out, err = ours("json", "Cap", data, max_bytes=61000)
        self.assertEqual(rc, 1)
        self.assertEqual(out, "")
        self.assertIn("larger than the limit of 61000 bytes", err)
        for fmt, cap in (("table", 1000000), ("text", 65000), ("yaml", 65000), ("yaml-stream", 65000)):
            with self.subTest(fmt=fmt):
                rc, out, err = ours(fmt, "Cap", data, max_bytes=cap)
                self.assertEqual((rc, out), (1, ""), fmt)
                self.assertIn(f"larger than the limit of {cap} bytes", err)
        # Within the cap the same reply prints, and exactly as the CLI prints it.
        self.assertEqual(ours("text", "Cap", data, max_bytes=100000)[1], aws_format("text", "Cap", data))
        # Under the default cap, a table 60000 columns by 5000 lines (300 MB
        # from 90 KB) is refused before it is drawn.
        started = time.monotonic()
        rc, _, err = ours("table", "Cap", {"Values": ["x" * 60000] + ["y"] * 5000})
        self.assertEqual(rc, 1)
        self.assertIn("larger than the limit of 268435456 bytes", err)
        self.assertLess(time.monotonic() - started, 10)

    def test_too_deep_is_refused(self):
        deep = 1
        for _ in range(70):
            deep = [deep]
        for fmt in ("json", "text", "table", "yaml", "yaml-stream"):
            rc, out, err = ours(fmt, "Deep", {"a": deep})
            self.assertEqual((rc, out), (1, ""), fmt)
            self.assertIn("deeper", err)


if __name__ == "__main__":
    unittest.main()
