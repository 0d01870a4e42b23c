"""test_cli_params - the parameter layer of `kms` against the AWS CLI.

lib/cli/params.c turns the tokens after a command name into the request
body; tests/cli/params_driver.c runs it alone.  The reference is the real
AWS CLI (version 1, installed here) pointed with --endpoint-url at a small
HTTP server in this process that records each request body and answers {}.
Both must build the same body from the same tokens, for every KMS and
CloudHSMv2 operation, from values generated from the model (JSON, shorthand,
lists of several values, maps, booleans both ways, file://, fileb://, only
the required members, a whole --cli-input-json document, a document with
command-line members on top) and from hand-written cases.

Version 1 takes blob text raw, where version 2 (which `kms` follows) takes
base64: the driver runs with --raw (version 2's --cli-binary-format
raw-in-base64-out, the same rule as version 1's) whenever blob text is
compared; fileb:// is the same in all three.  Refusals must match too:
version 1's exit code 2 stays 2, its 255 is version 2's 252, and the
message is the same text (Python's own JSON error wording and the AWS CLI
version 1 slip that prints "{self._error_location()}" literally are the
two places where only the common part is compared).

Skeletons: the input template of every operation against
`aws ... --generate-cli-skeleton` (the AWS CLI picks enum values at random:
any value of the enum is accepted there, everything else and the key order
must match after formatting both with an indent of 4), the output template
against the generator the AWS CLI uses (botocore's ArgumentGenerator with
member names, called as a black box) and, where version 1 can print one, its
own `--generate-cli-skeleton output`; the YAML template loads with PyYAML
and with lib/cli/cli_yaml.c to the input template's data; filled in, each
template goes back through --cli-input-yaml (ours) and --cli-input-json
(the AWS CLI's) to the same request.  Last, the YAML loader's typing of
scalars against PyYAML's safe loader.
"""

import base64
import contextlib
import datetime
import http.server
import io
import json
import os
import subprocess
import tempfile
import threading
import unittest

import botocore.session
import yaml
from botocore.utils import ArgumentGenerator

try:
    from awscli.clidriver import create_clidriver
except ImportError:  # pragma: no cover - the CI image has awscli
    create_clidriver = None

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("KMSD_BUILD_DIR", os.path.join(REPO, "build"))
DRIVER = os.path.join(BUILD, "cli_params_driver")
SERVICES = ("kms", "cloudhsmv2")
SESSION = botocore.session.get_session()
MODELS = {s: SESSION.get_service_model(s) for s in SERVICES}


def xform(name):
    from botocore import xform_name
    return xform_name(name, "-")


class _Recorder(http.server.BaseHTTPRequestHandler):
    bodies = {}
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 - http.server's name
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        with self.lock:
            self.bodies[self.path.strip("/")] = body
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


class _Server:
    def __init__(self):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.port = self.httpd.server_address[1]
        self.counter = 0
        self.lock = threading.Lock()

    def next_path(self):
        with self.lock:
            self.counter += 1
            return "case%d" % self.counter

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


SERVER = None
AWS_ENV = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLEPARAMS", "AWS_SECRET_ACCESS_KEY": "secret",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_PAGER": ""}
SAVED_ENV = {}


def setUpModule():
    global SERVER
    for k, v in AWS_ENV.items():
        SAVED_ENV[k] = os.environ.get(k)
        os.environ[k] = v
    SERVER = _Server()


def tearDownModule():
    SERVER.close()
    for k, v in SAVED_ENV.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def aws_main(argv):
    """The AWS CLI's own entry point, called in this process: (exit code,
    stdout, stderr).  A process per call costs seconds on a busy machine; a
    new driver per call (its handlers keep state between commands) costs a
    tenth of one, the models being cached."""
    driver = create_clidriver()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = driver.main(list(argv))
        except SystemExit as e:  # the argument parser's exits
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def run_aws(service, command, args):
    """(exit code, request body as data or None, stderr) from the AWS CLI."""
    path = SERVER.next_path()
    rc, _, err = aws_main(["--endpoint-url", "http://127.0.0.1:%d/%s" % (SERVER.port, path),
                           "--region", "us-east-1", service, command] + list(args))
    with _Recorder.lock:
        body = _Recorder.bodies.pop(path, None)
    return rc, (json.loads(body) if body is not None else None), err


def run_driver(service, command, args, raw=False, input_json=None, input_yaml=None):
    cmd = [DRIVER]
    if raw:
        cmd.append("--raw")
    if input_json is not None:
        cmd += ["--input-json", input_json]
    if input_yaml is not None:
        cmd += ["--input-yaml", input_yaml]
    cmd += [service, command] + list(args)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
    out = json.loads(proc.stdout) if proc.returncode == 0 else None
    return proc.returncode, out, proc.stderr.decode().rstrip("\n")


def v1_message(rc, stderr):
    """The message version 1 printed, without its usage lines and prefix."""
    if rc == 2:
        # "aws: error: ...": the program's name is the caller's argv[0] here.
        for line in stderr.splitlines():
            if ": error: " in line and not line.startswith("usage"):
                return line.split(": error: ", 1)[1]
        return stderr.strip()
    for line in stderr.splitlines():
        if line.startswith("Unknown options: "):
            return line
    return stderr.strip()


def same_message(ours, theirs):
    if ours == theirs:
        return True
    # Python's json module words its errors its own way; the rest must agree.
    if "Invalid JSON:" in theirs and "Invalid JSON:" in ours:
        head_t, _, tail_t = theirs.partition("Invalid JSON:")
        head_o, _, tail_o = ours.partition("Invalid JSON:")
        if head_t != head_o:
            return False
        recv_t = tail_t.split("JSON received: ")[-1] if "JSON received: " in tail_t else tail_t.strip()
        recv_o = tail_o.split("JSON received: ")[-1] if "JSON received: " in tail_o else tail_o.strip()
        return recv_t.strip() == recv_o.strip()
    # Version 1 prints "{self._error_location()}" for the caret lines.
    if "{self._error_location()}" in theirs:
        return ours.splitlines()[0] == theirs.splitlines()[0]
    return False


# ---- values generated from the model -------------------------------------------------

BLOB_BYTES = b"\x00\x01blob\xff\xfe"


def sample(shape, name="v", depth=0):
    """A value the AWS CLI's client-side validation accepts."""
    t = shape.type_name
    if t == "structure":
        return {k: sample(s, k, depth + 1) for k, s in shape.members.items()}
    if t == "list":
        n = max(shape.metadata.get("min", 1), 1)
        items = [sample(shape.member, name, depth + 1) for _ in range(max(n, 2 if depth == 0 else 1))]
        if shape.member.type_name == "string" and not shape.member.enum:
            items = ["%s%d" % (it, i) for i, it in enumerate(items)]
        return items
    if t == "map":
        return {"k%d" % i: sample(shape.value, "val", depth + 1) for i in range(2)}
    if t == "string":
        if shape.enum:
            return shape.enum[-1]
        n = max(shape.metadata.get("min", 1), 4)
        base = (name.lower() + "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")
        while len(base) < n:
            base += "x"
        return base[:max(n, min(len(base), 8))]
    if t in ("integer", "long"):
        return max(shape.metadata.get("min", 1), 1) + 6
    if t == "boolean":
        return True
    if t == "blob":
        return "blobtext"
    if t == "timestamp":
        return "2030-01-01T00:00:00Z"
    if t in ("double", "float"):
        return 1.5
    raise AssertionError(t)


def shorthand(value):
    if isinstance(value, dict):
        return ",".join("%s=%s" % (k, shorthand_item(v)) for k, v in value.items())
    return shorthand_item(value)


def shorthand_item(value):
    if isinstance(value, dict):
        return "{" + shorthand(value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(shorthand_item(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Files:
    """Temporary files for file:// and fileb:// values."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory()
        self.n = 0

    def write(self, data, binary):
        self.n += 1
        path = os.path.join(self.dir.name, "f%d" % self.n)
        with open(path, "wb") as f:
            f.write(data if binary else data.encode())
        return ("fileb://" if binary else "file://") + path


def variant_args(shape, style, files, required_only=False):
    """Tokens for every (or every required) member of an input shape."""
    args = []
    for name, member in shape.members.items():
        if required_only and name not in shape.required_members:
            continue
        opt = "--" + xform(name)
        t = member.type_name
        value = sample(member, name)
        if t == "boolean":
            args.append(opt if style != "shorthand" else "--no-" + xform(name))
        elif t == "blob":
            args += [opt, files.write(BLOB_BYTES, True)]
        elif t == "list" and member.member.type_name not in ("structure", "map", "list"):
            if style == "json":
                args += [opt, json.dumps(value)]
            elif style == "file" and member.member.type_name == "string":
                args += [opt, files.write(json.dumps(value), False)]
            else:
                args += [opt] + [str(v) for v in value]
        elif t in ("structure", "map", "list"):
            if style in ("json", "file"):
                text = json.dumps(value)
                args += [opt, files.write(text, False) if style == "file" else text]
            elif t == "list":
                args += [opt] + [shorthand(v) for v in value]
            else:
                args += [opt, shorthand(value)]
        elif style == "file" and t == "string":
            args += [opt, files.write(str(value), False)]
        else:
            args += [opt, str(value)]
    return args


def all_ops():
    for service in SERVICES:
        model = MODELS[service]
        for op in model.operation_names:
            yield service, xform(op), model.operation_model(op)


class CliParamsTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        # Both are part of the build and the image: missing is a failure, not a skip.
        if not os.path.exists(DRIVER):
            raise AssertionError("cli_params_driver is not built: %s" % DRIVER)
        if create_clidriver is None:
            raise AssertionError("awscli is not installed")
        cls.files = Files()

    def compare(self, service, command, args, raw=True, input_json=None):
        """Run both; assert the same body or the same refusal."""
        aws_args = list(args) + (["--cli-input-json", input_json] if input_json is not None else [])
        rc_t, body_t, err_t = run_aws(service, command, aws_args)
        rc_o, body_o, err_o = run_driver(service, command, args, raw=raw, input_json=input_json)
        where = "%s %s %r" % (service, command, args)
        if rc_t == 0:
            self.assertEqual(rc_o, 0, "%s: ours refused: %s" % (where, err_o))
            self.assertEqual(body_o, body_t, where)
            self.assertEqual(list(body_o), list(body_t), where + " (key order)")
        else:
            self.assertEqual(rc_o, 2 if rc_t == 2 else 252, "%s: %s / ours %s" % (where, err_t, err_o))
            theirs = v1_message(rc_t, err_t)
            self.assertTrue(same_message(err_o, theirs), "%s:\nours:   %r\ntheirs: %r" % (where, err_o, theirs))
        return rc_t

    def run_cases(self, cases):
        count = 0
        for service, command, args, raw in cases:
            rc_t, body_t, err_t = run_aws(service, command, args)
            rc_o, body_o, err_o = run_driver(service, command, args, raw=raw)
            where = "%s %s %r" % (service, command, args)
            with self.subTest(where):
                if rc_t == 0:
                    self.assertEqual(rc_o, 0, "%s: ours refused: %s" % (where, err_o))
                    self.assertEqual(body_o, body_t)
                    self.assertEqual(list(body_o), list(body_t), "key order")
                else:
                    self.assertEqual(rc_o, 2 if rc_t == 2 else 252, "theirs: %s / ours: %s" % (err_t, err_o))
                    theirs = v1_message(rc_t, err_t)
                    self.assertTrue(same_message(err_o, theirs), "\nours:   %r\ntheirs: %r" % (err_o, theirs))
            count += 1
        return count

    # ---- option names ----

    def test_option_names_match_the_aws_cli(self):
        self.assertIsNotNone(create_clidriver, "awscli is needed")
        driver = create_clidriver()
        for service in SERVICES:
            proc = subprocess.run([DRIVER, "--names", service], stdout=subprocess.PIPE, check=True)
            ours = {}
            for line in proc.stdout.decode().splitlines():
                cols = line.split("\t")
                ours[cols[0]] = set(cols[1:])
            table = driver._get_command_table()[service]._get_command_table()
            theirs = {}
            # The input document and skeleton options are the caller's
            # (src/kms), and so are the pagination options the AWS CLI adds
            # to operations with a paginator (--max-items, --page-size,
            # --starting-token): they come from the paginator model.
            outside = ("cli-input-json", "generate-cli-skeleton", "max-items", "page-size", "starting-token")
            for name, op in table.items():
                theirs[name] = {"--" + k for k in op.arg_table if k not in outside}
            self.assertEqual(set(ours), set(theirs), service + ": commands")
            for name in theirs:
                self.assertEqual(ours[name], theirs[name], "%s %s" % (service, name))

    # ---- requests built from generated values ----

    def test_generated_requests_match(self):
        cases = []
        for i, (service, command, op) in enumerate(all_ops()):
            shape = op.input_shape
            if shape is None or not shape.members:
                cases.append((service, command, [], True))
                continue
            # Two of the five ways per operation, taken in turn, so that every
            # way meets every kind of member across the operations while each
            # operation costs two AWS CLI runs (each costs a tenth of a second
            # or more; the whole suite runs twice in CI).
            ways = [("plain", False), ("json", False), ("shorthand", False), ("file", False), ("plain", True)]
            for style, required_only in (ways[i % 5], ways[(i + 2) % 5]):
                cases.append((service, command,
                               variant_args(shape, style, self.files, required_only=required_only), True))
        n = self.run_cases(cases)
        self.assertGreater(n, 2 * 60)

    def test_cli_input_json_documents_match(self):
        checked = 0
        for service, command, op in all_ops():
            shape = op.input_shape
            if shape is None or not shape.members:
                continue
            doc = sample(shape)
            # Members on the command line win over the document's, one by one.
            name = next(iter(shape.members))
            if shape.members[name].type_name == "string":
                self.compare(service, command, ["--" + xform(name), "from-the-command-line"],
                             input_json=json.dumps(doc))
            else:
                self.compare(service, command, [], input_json=json.dumps(doc))
            checked += 1
        self.assertGreater(checked, 60)

    def test_hand_written_cases(self):
        blob = self.files.write(b"\x00\xffkey material\n", True)
        policy = self.files.write('{"Version": "2012-10-17", "Statement": []}\n', False)
        tags = self.files.write('[{"TagKey": "a", "TagValue": "b"}]', False)
        latin = self.files.write("caf\u00e9 \u2603\n", False)
        K = "kms"
        H = "cloudhsmv2"
        cases = [
            (K, "encrypt", ["--key-id", "k", "--plaintext", "hello"]),
            (K, "encrypt", ["--key-id=k", "--plaintext=hello"]),
            (K, "encrypt", ["--ke", "k", "--plaintext", "hello"]),
            (K, "encrypt", ["--k", "k", "--pl", "hello"]),
            (K, "encrypt", ["--key-id", "k"]),
            (K, "encrypt", []),
            (K, "encrypt", ["--key-id", "k", "--plaintext"]),
            (K, "encrypt", ["--key-id", "-x", "--plaintext", "a"]),
            (K, "encrypt", ["--key-id", "-x y", "--plaintext", "a"]),
            (K, "encrypt", ["--key-id", "-1", "--plaintext", "a"]),
            (K, "encrypt", ["--key-id", "-1.5", "--plaintext", "a"]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--bogus", "x"]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "extra"]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "-x"]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "-"]),
            (K, "encrypt", ["--key-id", "k", "--", "--plaintext", "a"]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--key-id", "z"]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--encryption-context", "a=b,c=d"]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--encryption-context", '{"a":"b"}']),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--encryption-context", ' {"a":"b"}']),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--encryption-context", '{"a":"b"']),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--encryption-context", '[1]']),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--encryption-context", '{"a":1}']),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--encryption-context", "a"]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--encryption-context", ""]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--encryption-context", "a=b", "c=d"]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--encryption-context", "a=b,a=c"]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--dry-run=yes"]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--dry-run", "true"]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--dry-run", "--no-dry-run"]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--encryption-algorithm", "NOPE"]),
            (K, "encrypt", ["--key-id", "", "--plaintext", "a"]),
            (K, "encrypt", ["--key-id", latin, "--plaintext", "a"]),
            (K, "encrypt", ["--key-id", "file:///nonexistent/x", "--plaintext", "a"]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", blob]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "caf\u00e9"]),
            (K, "create-key", ["--tags", "TagKey=a,TagValue=b", "TagKey=c,TagValue=d"]),
            (K, "create-key", ["--tags", '{"TagKey":"a","TagValue":"b"}']),
            (K, "create-key", ["--tags", '[{"TagKey":"a","TagValue":"b"}]']),
            (K, "create-key", ["--tags", '  [{"TagKey":"a","TagValue":"b"}]']),
            (K, "create-key", ["--tags", '[{"TagKey":"a","TagValue":"b"}]', '[{"TagKey":"c","TagValue":"d"}]']),
            (K, "create-key", ["--tags", '[{"TagKey":"a",']),
            (K, "create-key", ["--tags", "TagKey=a"]),
            (K, "create-key", ["--tags", "TagKey=a,Bogus=b"]),
            (K, "create-key", ["--tags", "TagKey=a,TagValue=b,TagKey=c"]),
            (K, "create-key", ["--tags", "TagKey=a,TagValue=b", '{"TagKey":"c","TagValue":"d"}']),
            (K, "create-key", ["--tags", tags]),
            (K, "create-key", ["--tags", "TagKey=a,TagValue@=" + latin]),
            (K, "create-key", ["--tags", ""]),
            (K, "create-key", ["--tags", "TagKey=a,TagValue=b", "--tags", "TagKey=c,TagValue=d"]),
            (K, "create-key", ["--tags"]),
            (K, "create-key", ["--policy", policy, "--description", "", "--multi-region"]),
            (K, "create-key", ["--multi-region", "--no-multi-region"]),
            (K, "create-key", ["--no-multi-region", "--multi-region"]),
            (K, "create-key", ["--multi-region=false"]),
            (K, "create-key", ["--key-usage", "ENCRYPT_DECRYPT", "--key-spec", "SYMMETRIC_DEFAULT"]),
            (K, "create-key", ["--key", "x"]),
            (K, "create-key", ["--tags", '{"TagKey":"a","TagValue":"b"}', '{"TagKey":"c","TagValue":"d"}']),
            (K, "create-key", ["--tags", '{"TagKey":"a","TagValue":"b"}', "TagKey=c,TagValue=d"]),
            (K, "create-key", ["--tags", '[{"TagKey":"a","TagValue":"b"}]', "TagKey=c,TagValue=d"]),
            (K, "create-key", ["--tags", '{"TagKey":"a",', "TagKey=c,TagValue=d"]),
            (K, "create-key", ["--tags", "TagKey=a,TagValue@=file:///nonexistent/x"]),
            (K, "create-key", ["--tags", "TagKey=a,TagValue=b", "TagKey=file:///etc/hostname,TagValue=c"]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--encryption-context", "file:///nonexistent/x"]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--grant-tokens", "[1]"]),
            (K, "encrypt", ["--key-id", "k", "--plaintext", "a", "--grant-tokens"]),
            (K, "create-grant", ["--key-id", "k", "--grantee-principal", "p", "--operations", "Encrypt", "Decrypt",
                                 "--grant-tokens", "a", "b"]),
            (K, "create-grant", ["--key-id", "k", "--grantee-principal", "p", "--operations", '["Encrypt"]']),
            (K, "create-grant", ["--key-id", "k", "--grantee-principal", "p", "--operations", "Encrypt",
                                 "--grant-tokens", "a,b"]),
            (K, "create-grant", ["--key-id", "k", "--grantee-principal", "p", "--operations", "Encrypt",
                                 "--grant-tokens", "[a]"]),
            (K, "create-grant", ["--key-id", "k", "--grantee-principal", "p", "--operations", "Encrypt",
                                 "--grant-tokens", '["a","b"]', "c"]),
            (K, "create-grant", ["--key-id", "k", "--grantee-principal", "p", "--operations", "Encrypt",
                                 "--grant-tokens", '{"a":1}']),
            (K, "create-grant", ["--key-id", "k", "--grantee-principal", "p", "--operations", "Encrypt",
                                 "--grant-tokens", "a", "--grant-tokens", "b"]),
            (K, "create-grant", ["--key-id", "k", "--grantee-principal", "p", "--operations", "Encrypt",
                                 "--grant-tokens", "file:///etc/hostname", "x"]),
            (K, "create-grant", ["--key-id", "k", "--grantee-principal", "p", "--operations", "Encrypt",
                                 "--constraints", "EncryptionContextSubset={a=b}"]),
            (K, "create-grant", ["--key-id", "k", "--grantee-principal", "p", "--operations", "Encrypt",
                                 "--constraints", "EncryptionContextEquals={a=b},EncryptionContextSubset={}"]),
            (K, "create-grant", ["--key-id", "k", "--grantee-principal", "p", "--operations", "Encrypt",
                                 "--constraints", "EncryptionContextSubset=a"]),
            (K, "create-grant", ["--key-id", "k", "--grantee-principal", "p", "--operations"]),
            (K, "list-keys", ["--limit", "5"]),
            (K, "list-keys", ["--limit", " 5"]),
            (K, "list-keys", ["--limit", "+5"]),
            (K, "list-keys", ["--limit", "5_0"]),
            (K, "list-keys", ["--limit", "-5"]),
            (K, "list-keys", ["--limit", "0"]),
            (K, "list-keys", ["--limit", "abc"]),
            (K, "list-keys", ["--limit", "1.5"]),
            (K, "list-keys", ["--limit", "0x10"]),
            (K, "list-keys", ["--limit", ""]),
            (K, "list-keys", ["--limit", "true"]),
            (K, "list-keys", ["--limit", "99999999999999"]),
            (K, "list-keys", ["--limit", "5", "--limit", "7", "--marker", "m"]),
            (K, "list-keys", ["--marker", ""]),
            (K, "import-key-material", ["--key-id", "k", "--import-token", blob, "--encrypted-key-material", blob,
                                        "--valid-to", "2030-01-01T00:00:00Z"]),
            (K, "import-key-material", ["--key-id", "k", "--import-token", blob, "--encrypted-key-material", blob,
                                        "--valid-to", "1893456000.5"]),
            (K, "import-key-material", ["--key-id", "k", "--import-token", blob, "--encrypted-key-material", blob,
                                        "--valid-to", "2030-01-01"]),
            (K, "import-key-material", ["--key-id", "k", "--import-token", blob, "--encrypted-key-material", blob,
                                        "--valid-to", "2030-01-01T00:00:00.5+02:00"]),
            (K, "import-key-material", ["--key-id", "k", "--import-token", blob, "--encrypted-key-material", blob,
                                        "--valid-to", "2030-06-30 12:34:56-07:30"]),
            (K, "import-key-material", ["--key-id", "k", "--import-token", blob, "--encrypted-key-material", blob,
                                        "--valid-to", "garbage"]),
            (K, "generate-random", ["--recipient",
                                    "KeyEncryptionAlgorithm=RSAES_OAEP_SHA_256,AttestationDocument=abc"]),
            (K, "generate-random", ["--recipient", '{"AttestationDocument":"hello"}']),
            (K, "generate-random", ["--number-of-bytes", "32", "--custom-key-store-id", "cks-1234567890"]),
            (K, "verify-mac", ["--key-id", "k", "--message", "m", "--mac-algorithm", "HMAC_SHA_256",
                               "--mac", blob]),
            (K, "describe-custom-key-stores", ["--custom-key-store-name", "n", "--limit", "2"]),
            (K, "create-custom-key-store", ["--custom-key-store-name", "s", "--custom-key-store-type",
                                            "EXTERNAL_KEY_STORE", "--xks-proxy-authentication-credential",
                                            "AccessKeyId=ABCDEFGHIJKLMNOPQRST,RawSecretAccessKey=" + "s" * 43,
                                            "--xks-proxy-connectivity", "PUBLIC_ENDPOINT"]),
            (K, "create-custom-key-store", ["--custom-key-store-name", "s", "--xks-proxy-authentication-credential",
                                            "AccessKeyId=ABCDEFGHIJKLMNOPQRST"]),
            (H, "describe-clusters", ["--filters", "clusterIds=a,b", "states=ACTIVE"]),
            (H, "describe-clusters", ["--filters", "clusterIds=a"]),
            (H, "describe-clusters", ["--filters", "clusterIds=[a,b],states=[ACTIVE]"]),
            (H, "describe-clusters", ["--filters", '{"clusterIds":"a"}']),
            (H, "describe-clusters", ["--filters", '{"clusterIds":["a"]}', "--max-results", "5"]),
            (H, "describe-backups", ["--sort-ascending", "--max-results", "5", "--no-shared"]),
            (H, "create-cluster", ["--subnet-ids", "s1", "s2", "--hsm-type", "hsm1.medium",
                                   "--backup-retention-policy", "Type=DAYS,Value=90", "--tag-list", "Key=a,Value=b"]),
            (H, "modify-backup-attributes", ["--backup-id", "backup-abcdefghijk"]),
            (H, "modify-backup-attributes", ["--backup-id", "backup-abcdefghijk", "--no-never-expires"]),
            (H, "initialize-cluster", ["--cluster-id", "cluster-abcdefghijk", "--signed-cert", "c",
                                       "--trust-anchor", "t"]),
            (H, "tag-resource", ["--resource-id", "r", "--tag-list", "Key=a,Value=b", "Key=c,Value=d"]),
            (H, "untag-resource", ["--resource-id", "r", "--tag-key-list", "a", "b"]),
        ]
        n = self.run_cases([(s, c, a, True) for s, c, a in cases])
        self.assertEqual(n, len(cases))

    # ---- version 2's base64 blobs (no version 1 to compare with) ----

    def test_base64_blobs_by_default(self):
        rc, body, _ = run_driver("kms", "encrypt", ["--key-id", "k", "--plaintext", "aGVsbG8="])
        self.assertEqual((rc, body["Plaintext"]), (0, "aGVsbG8="))
        rc, body, err = run_driver("kms", "encrypt", ["--key-id", "k", "--plaintext", "hello"])
        self.assertEqual(rc, 252)
        self.assertTrue(err.startswith("Invalid base64: "), err)
        self.assertNotIn("hello", err)  # a plaintext is never echoed
        rc, body, err = run_driver("kms", "generate-random", ["--recipient", "AttestationDocument=a@b"])
        self.assertEqual((rc, err), (252, 'Invalid base64: "a@b"'))
        rc, body, _ = run_driver("kms", "encrypt", ["--key-id", "k", "--plaintext",
                                                    self.files.write(BLOB_BYTES, True)])
        self.assertEqual(base64.b64decode(body["Plaintext"]), BLOB_BYTES)

    # ---- skeletons ----

    def test_input_skeletons_match(self):
        for service, command, op in all_ops():
            rc, text, _ = aws_main([service, command, "--generate-cli-skeleton"])
            with self.subTest(service=service, command=command):
                self.assertEqual(rc, 0)
                proc = subprocess.run([DRIVER, "--skeleton", "input", service, command],
                                      stdout=subprocess.PIPE, check=True)
                ref = json.loads(text) if text.strip() else {}
                ours = json.loads(proc.stdout)
                ref = pick_enums(ref, ours, op.input_shape)
                self.assertEqual(json.dumps(ours, indent=4), json.dumps(ref, indent=4))

    def test_output_skeletons_match_the_generator(self):
        gen = ArgumentGenerator(use_member_names=True)
        for service, command, op in all_ops():
            with self.subTest(service=service, command=command):
                proc = subprocess.run([DRIVER, "--skeleton", "output", service, command],
                                      stdout=subprocess.PIPE, check=True)
                ours = json.loads(proc.stdout)
                ref = gen.generate_skeleton(op.output_shape) if op.output_shape else {}
                text = json.dumps(ref, indent=4, default=lambda d: d.isoformat())
                self.assertEqual(json.dumps(ours, indent=4), text)

    def test_output_skeletons_match_version_1_where_it_prints_one(self):
        # Version 1 sends the sample through its response validation, which
        # refuses most of them (names too short for their minimum); these pass.
        cases = [("kms", "get-key-policy", ["--key-id", "k"]),
                 ("kms", "list-resource-tags", ["--key-id", "k"]),
                 ("kms", "list-key-policies", ["--key-id", "k"]),
                 ("cloudhsmv2", "get-resource-policy", [])]
        for service, command, args in cases:
            with self.subTest(command=command):
                rc, text, err = aws_main(["--region", "us-east-1", service, command] + args +
                                         ["--generate-cli-skeleton", "output"])
                self.assertEqual(rc, 0, err)
                mine = subprocess.run([DRIVER, "--skeleton", "output", service, command],
                                      stdout=subprocess.PIPE, check=True).stdout.decode()
                self.assertEqual(json.loads(mine), json.loads(text))

    def test_yaml_skeletons_load_and_round_trip(self):
        checked = 0
        for service, command, op in all_ops():
            with self.subTest(service=service, command=command):
                text = subprocess.run([DRIVER, "--skeleton", "yaml-input", service, command],
                                      stdout=subprocess.PIPE, check=True).stdout.decode()
                as_json = json.loads(subprocess.run([DRIVER, "--skeleton", "input", service, command],
                                                    stdout=subprocess.PIPE, check=True).stdout)
                expected = yaml_form(as_json, op.input_shape)
                self.assertEqual(yaml.safe_load(text), expected)
                proc = subprocess.run([DRIVER, "--yaml"], input=text.encode(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, check=False)
                self.assertEqual(proc.returncode, 0, proc.stderr.decode())
                self.assertEqual(json.loads(proc.stdout), expected)
                if op.input_shape is None or not op.input_shape.members:
                    continue
                # Filled in, it builds the request the AWS CLI builds from it.
                filled = fill(yaml.safe_load(text), op.input_shape)
                filled_yaml = yaml.safe_dump(filled, sort_keys=False)
                rc_t, body_t, err_t = run_aws(service, command, ["--cli-input-json", json.dumps(filled)])
                self.assertEqual(rc_t, 0, err_t)
                rc_o, body_o, err_o = run_driver(service, command, [], raw=True, input_yaml=filled_yaml)
                self.assertEqual(rc_o, 0, err_o)
                self.assertEqual(body_o, body_t)
                # Unfilled, the JSON template is refused (or not) as the CLI refuses it:
                # empty strings under a minimum length, null blobs.
                self.compare(service, command, [], input_json=json.dumps(as_json))
                checked += 1
        self.assertGreater(checked, 60)

    # ---- the YAML loader ----

    def test_yaml_scalars_typed_as_pyyaml(self):
        scalars = ["yes", "Yes", "YES", "no", "on", "Off", "y", "n", "true", "False", "~", "null", "Null", "",
                   "0x10", "-0x1F", "010", "0o10", "0b101", "+12", "-0", "1_000", "1:30", "190:20:30",
                   "1e3", "1.0e+3", "1.5", "-1.5", ".5", "-.5", "1.", "6.8523015e+5", "1_0.5",
                   "'yes'", '"0x10"', "abc", "a b", "2001-12-14", "12:60", "0x", "--5", "0.0", "1e-3",
                   "9223372036854775807", "-9223372036854775808", "\"\\u00e9\"", "caf\u00e9", "!!str 12",
                   "!!int '12'", "!!float 3", "!!bool yes", "!!null ''", "!!binary aGVs\n  bG8="]
        for s in scalars:
            with self.subTest(scalar=s):
                doc = "v: %s\n" % s
                ref = yaml.safe_load(doc)
                proc = subprocess.run([DRIVER, "--yaml"], input=doc.encode(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, check=False)
                self.assertEqual(proc.returncode, 0, proc.stderr.decode())
                ours = json.loads(proc.stdout)
                v = ref["v"]
                if isinstance(v, (datetime.date, datetime.datetime)):
                    v = s  # timestamps stay text: every consumer takes ISO 8601 text
                if isinstance(v, bytes):
                    v = base64.b64encode(v).decode()
                self.assertEqual(ours, {"v": v})
                self.assertEqual(type(ours["v"]), type(v))

    def test_yaml_refusals(self):
        laughs = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
        for doc in (laughs, "a: 1\n---\nb: 2\n", "v: .inf\n", "v: .nan\n", "v: 99999999999999999999\n",
                    "? [a]\n: b\n", "v: !custom x\n", "[" * 100 + "]" * 100, "a: 'x\n"):
            with self.subTest(doc=doc[:30]):
                proc = subprocess.run([DRIVER, "--yaml"], input=doc.encode(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, check=False)
                self.assertEqual(proc.returncode, 1)
                self.assertTrue(proc.stderr.decode().startswith("YAML: "), proc.stderr.decode())


def pick_enums(ref, ours, shape):
    """`ref` with each enum value the AWS CLI drew at random replaced by ours,
    once both are checked to be values of that enum."""
    if shape is None:
        return ref
    t = shape.type_name
    if t == "structure" and isinstance(ref, dict) and isinstance(ours, dict):
        return {k: pick_enums(v, ours.get(k), shape.members[k]) if k in shape.members else v
                for k, v in ref.items()}
    if t == "list" and isinstance(ref, list) and isinstance(ours, list) and ref and ours:
        return [pick_enums(ref[0], ours[0], shape.member)] + ref[1:]
    if t == "map" and isinstance(ref, dict) and isinstance(ours, dict):
        return {k: pick_enums(v, ours.get(k), shape.value) for k, v in ref.items()}
    if t == "string" and shape.enum and ref in shape.enum and ours in shape.enum:
        return ours
    return ref


def yaml_form(value, shape):
    """The JSON template as the YAML template holds it: blobs are '' there."""
    if shape is None:
        return value
    t = shape.type_name
    if t == "structure":
        return {k: yaml_form(v, shape.members[k]) for k, v in value.items()}
    if t == "list":
        return [yaml_form(v, shape.member) for v in value]
    if t == "map":
        return {k: yaml_form(v, shape.value) for k, v in value.items()}
    if t == "blob":
        return ""
    return value


def fill(value, shape):
    """Placeholders replaced by values the client-side validation accepts."""
    t = shape.type_name
    if t == "structure":
        return {k: fill(v, shape.members[k]) for k, v in value.items()}
    if t == "list":
        return [fill(v, shape.member) for v in value]
    if t == "map":
        return {k: fill(v, shape.value) for k, v in value.items()}
    if t == "string" and not shape.enum:
        return "x" * max(shape.metadata.get("min", 1), 1)
    if t in ("integer", "long"):
        return max(shape.metadata.get("min", 0), 0)
    if t == "blob":
        return "AAAA"
    return value


if __name__ == "__main__":
    unittest.main()
