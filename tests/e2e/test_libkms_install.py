"""test_libkms_install - libkms as a user gets it: installed, found by pkg-config, linked, run against kmsd.

The build tree is installed into a temporary prefix with `cmake --install`;
a small C program (below) is compiled the way the README tells users to,
`cc prog.c $(pkg-config --cflags --libs libkms)`, with PKG_CONFIG_PATH
pointing into that prefix, and run against a real kmsd: CreateKey, Encrypt
and Decrypt through kms_call_json, the round trip checked on both sides
(the program compares the plaintext; boto3 sees the key the program made),
and one service error read from kms_error.  The installed files themselves
are checked too: the headers, the .pc file, a shared library with a SONAME
that exports only kms_* and links no server library (libmicrohttpd, SQLite,
PKCS#11), and a header that compiles as C11 and as C++.

The installed library's retry decisions are then compared with botocore's
standard retry mode, both as black boxes: a scripted loopback server fails
the first request of each case (an error code, a bare HTTP status) and
answers the second; boto3 and libkms (through ctypes) each get two attempts,
and the number of requests each one made must agree.
"""

import ctypes
import glob
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import unittest

import boto3
import botocore.config
import botocore.exceptions

import kmsd_harness as h

PROGRAM = r"""
/* Encrypts and decrypts one message with a new KMS key; prints what it saw. */
#include <kms/kms.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The string value of "name" in a flat JSON reply (enough for this test). */
static int member(const char *json, const char *name, char *out, size_t out_size) {
  char pattern[64];
  const char *p, *end;
  snprintf(pattern, sizeof pattern, "\"%s\":\"", name);
  p = strstr(json, pattern);
  if (!p) return 0;
  p += strlen(pattern);
  end = strchr(p, '"');
  if (!end || (size_t)(end - p) >= out_size) return 0;
  memcpy(out, p, (size_t)(end - p));
  out[end - p] = '\0';
  return 1;
}

static void debug_line(void *ctx, const char *line) {
  (void)ctx;
  fprintf(stderr, "debug: %s\n", line);
}

int main(void) {
  kms_client_options opts;
  kms_client *c = NULL;
  kms_error err;
  char *reply = NULL;
  size_t len = 0;
  char key_id[128], blob[4096], plaintext[256], body[8192];
  const char *create = "{\"Description\":\"made by libkms\"}";

  memset(&opts, 0, sizeof opts);
  opts.debug = debug_line;
  if (kms_client_new(KMS_SERVICE_KMS, &opts, &c, &err)) {
    printf("client: %s: %s\n", err.code, err.message);
    return 1;
  }
  printf("version %s\nendpoint %s\nregion %s\n", kms_version(), kms_client_endpoint(c), kms_client_region(c));

  if (kms_call_json(c, "CreateKey", create, strlen(create), &reply, &len, &err)) goto fail;
  if (!member(reply, "KeyId", key_id, sizeof key_id)) return 3;
  kms_reply_free(reply, len);
  printf("key %s\n", key_id);

  snprintf(body, sizeof body, "{\"KeyId\":\"%s\",\"Plaintext\":\"aGVsbG8gZnJvbSBsaWJrbXM=\"}", key_id);
  if (kms_call_json(c, "Encrypt", body, strlen(body), &reply, &len, &err)) goto fail;
  if (!member(reply, "CiphertextBlob", blob, sizeof blob)) return 3;
  kms_reply_free(reply, len);

  snprintf(body, sizeof body, "{\"CiphertextBlob\":\"%s\"}", blob);
  if (kms_call_json(c, "Decrypt", body, strlen(body), &reply, &len, &err)) goto fail;
  if (!member(reply, "Plaintext", plaintext, sizeof plaintext)) return 3;
  printf("decrypted key %s\n", strstr(reply, key_id) ? "matches" : "differs");
  kms_reply_free(reply, len);
  printf("round trip %s\n", strcmp(plaintext, "aGVsbG8gZnJvbSBsaWJrbXM=") == 0 ? "ok" : "WRONG");

  snprintf(body, sizeof body, "{\"KeyId\":\"alias/no-such-alias\"}");
  if (kms_call_json(c, "DescribeKey", body, strlen(body), &reply, &len, &err) == KMS_ERR_SERVICE)
    printf("error kind=%d code=%s status=%d attempts=%d retryable=%d request_id=%s\n", (int)err.kind, err.code,
           err.http_status, err.attempts, err.retryable, err.request_id[0] ? "set" : "none");
  kms_client_free(c);
  return 0;
fail:
  printf("call: %s: %s\n", err.code, err.message);
  kms_client_free(c);
  return 2;
}
"""


def run(cmd, env=None, check=True):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d:\n%s\n%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p


def project_version():
    with open(os.path.join(h.REPO_ROOT, "CMakeLists.txt")) as f:
        return re.search(r"^project\(kmsd VERSION ([0-9.]+)", f.read(), re.M).group(1)


# The soname's version: MAJOR.MINOR while on 0.x (kms.h, "ABI").
SONAME_VERSION = ".".join(project_version().split(".")[:2])


def declared_functions():
    """The names of the functions the public headers declare (a declaration
    starts a line: a return type, then kms_name followed by "(")."""
    names = set()
    for header in ("kms.h", "kms_ops.h"):
        with open(os.path.join(h.REPO_ROOT, "include", "kms", header)) as f:
            for line in f:
                m = re.match(r"^(?:const\s+)?[a-z_]+\s*\*?\s*(kms_[a-z0-9_]+)\(", line)
                if m:
                    names.add(m.group(1))
    return names


def build_dir():
    d = os.environ.get("KMSD_BUILD_DIR") or os.path.dirname(h.find_kmsd_binary())
    if not os.path.isfile(os.path.join(d, "CMakeCache.txt")):
        raise unittest.SkipTest("no CMake build directory (set KMSD_BUILD_DIR)")
    return d


def sanitizer_flags(build):
    """An ASan/UBSan build installs an instrumented libkms: programs linking
    it must carry the sanitizer runtime too (which then checks libkms as a
    user program drives it)."""
    with open(os.path.join(build, "CMakeCache.txt")) as f:
        sanitized = any(line.strip() == "KMSD_SANITIZE:BOOL=ON" for line in f)
    return ["-fsanitize=address,undefined"] if sanitized else []


class LibkmsInstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="libkms-install-")
        cls.extra_cflags = sanitizer_flags(build_dir())
        cls.prefix = os.path.join(cls.tmp, "prefix")
        run(["cmake", "--install", build_dir(), "--prefix", cls.prefix])
        pcs = glob.glob(os.path.join(cls.prefix, "**", "pkgconfig", "libkms.pc"), recursive=True)
        if len(pcs) != 1:
            raise AssertionError("libkms.pc not installed once under %s: %s" % (cls.prefix, pcs))
        cls.pkgconfig_dir = os.path.dirname(pcs[0])
        cls.libdir = os.path.dirname(cls.pkgconfig_dir)
        cls.env = dict(os.environ, PKG_CONFIG_PATH=cls.pkgconfig_dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def pkg_config(self, *args):
        return run(["pkg-config"] + list(args) + ["libkms"], env=self.env).stdout.split()

    def compile_program(self):
        src = os.path.join(self.tmp, "prog.c")
        exe = os.path.join(self.tmp, "prog")
        with open(src, "w") as f:
            f.write(PROGRAM)
        cflags = self.pkg_config("--cflags")
        libs = self.pkg_config("--libs")
        run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-o", exe, src] + self.extra_cflags
            + cflags + libs)
        return exe

    def test_installed_files(self):
        self.assertTrue(os.path.isfile(os.path.join(self.prefix, "include", "kms", "kms.h")))
        self.assertEqual(self.pkg_config("--modversion"), [run(
            ["sed", "-n", r's/^project(kmsd VERSION \([0-9.]*\).*/\1/p',
             os.path.join(h.REPO_ROOT, "CMakeLists.txt")]).stdout.strip()])
        self.assertIn("-I" + os.path.realpath(os.path.join(self.prefix, "include")),
                      [("-I" + os.path.realpath(f[2:])) for f in self.pkg_config("--cflags")])
        libs = self.pkg_config("--libs")
        self.assertIn("-lkms", libs)
        # The static link needs what libkms uses, and nothing of the server.
        private = " ".join(self.pkg_config("--static", "--libs"))
        for lib in ("-lcurl", "-lcrypto", "-ljansson", "-lm"):
            self.assertIn(lib, private)
        for lib in ("microhttpd", "sqlite", "pcre2", "yaml"):
            self.assertNotIn(lib, private)

        sos = [p for p in glob.glob(os.path.join(self.libdir, "libkms.so.*")) if not os.path.islink(p)]
        self.assertEqual(len(sos), 1, sos)
        dyn = run(["readelf", "-d", sos[0]]).stdout
        # While on 0.x the soname names MAJOR.MINOR (kms.h, "ABI").
        self.assertIn("Library soname: [libkms.so.%s]" % SONAME_VERSION, dyn)
        for server_lib in ("microhttpd", "sqlite", "p11", "softhsm", "pcre2", "yaml", "gnutls"):
            self.assertNotIn(server_lib, dyn)
        exported = [line.split()[-1] for line in run(["nm", "-D", "--defined-only", sos[0]]).stdout.splitlines()]
        self.assertIn("kms_call_json", exported)
        self.assertIn("kms_client_new", exported)
        # Exactly the functions the public headers declare: none missing,
        # nothing else.
        self.assertEqual(sorted(exported), sorted(declared_functions()))

    def test_header_is_cxx_clean(self):
        # build-essential (scripts/install-deps.sh) brings g++: missing is a failure.
        self.assertIsNotNone(shutil.which("g++"), "no C++ compiler")
        src = os.path.join(self.tmp, "use.cpp")
        with open(src, "w") as f:
            f.write("#include <kms/kms.h>\n#include <kms/kms_ops.h>\n"
                    "int main() { kms_client *c = nullptr; kms_encrypt_input in = {}; kms_encrypt_output out;\n"
                    "  kms_error err; (void)in; (void)out; (void)err; kms_client_free(c);\n"
                    "  return kms_version() ? 0 : 1; }\n")
        run(["g++", "-std=c++17", "-Wall", "-Werror", "-o", os.path.join(self.tmp, "use"), src]
            + self.extra_cflags + self.pkg_config("--cflags") + self.pkg_config("--libs"))
        run([os.path.join(self.tmp, "use")], env=dict(self.env, LD_LIBRARY_PATH=self.libdir))

    def test_round_trip_against_kmsd(self):
        exe = self.compile_program()
        with h.KmsdServer() as server:
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            env.update({"HOME": os.path.join(self.tmp, "home"),
                        "LD_LIBRARY_PATH": self.libdir,
                        "AWS_ACCESS_KEY_ID": h.DEFAULT_ACCESS_KEY,
                        "AWS_SECRET_ACCESS_KEY": h.DEFAULT_SECRET_KEY,
                        "AWS_REGION": h.DEFAULT_REGION,
                        "AWS_ENDPOINT_URL": server.endpoint})
            p = run([exe], env=env, check=False)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            lines = p.stdout.splitlines()
            self.assertIn("endpoint %s" % server.endpoint, lines)
            self.assertIn("region %s" % h.DEFAULT_REGION, lines)
            self.assertIn("round trip ok", lines)
            self.assertIn("decrypted key matches", lines)
            key_id = [line.split()[1] for line in lines if line.startswith("key ")][0]
            self.assertIn("error kind=1 code=NotFoundException status=400 attempts=1 retryable=0 request_id=set",
                          lines)
            # The key is real: another client sees it, with the description given.
            meta = h.kms_client(server).describe_key(KeyId=key_id)["KeyMetadata"]
            self.assertEqual(meta["Description"], "made by libkms")
            # The debug lines show the calls, never the secret key or plaintexts.
            self.assertIn("TrentService.Encrypt", p.stderr)
            self.assertNotIn(h.DEFAULT_SECRET_KEY, p.stderr)
            self.assertNotIn("aGVsbG8gZnJvbSBsaWJrbXM=", p.stderr)

            # Without credentials the program stops at kms_client_new, as configured.
            env.pop("AWS_ACCESS_KEY_ID")
            env.pop("AWS_SECRET_ACCESS_KEY")
            p = run([exe], env=env, check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn("client: NoCredentialsError", p.stdout)


class KmsError(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("code", ctypes.c_char * 128), ("message", ctypes.c_char * 1024),
                ("http_status", ctypes.c_int), ("request_id", ctypes.c_char * 128), ("retryable", ctypes.c_int),
                ("attempts", ctypes.c_int)]


class KmsClientOptions(ctypes.Structure):
    _fields_ = [("profile", ctypes.c_char_p), ("region", ctypes.c_char_p), ("endpoint_url", ctypes.c_char_p),
                ("ca_bundle", ctypes.c_char_p), ("no_verify_ssl", ctypes.c_int), ("no_sign_request", ctypes.c_int),
                ("connect_timeout_ms", ctypes.c_long), ("read_timeout_ms", ctypes.c_long),
                ("max_attempts", ctypes.c_int), ("max_backoff_ms", ctypes.c_long),
                ("debug", ctypes.c_void_p), ("debug_ctx", ctypes.c_void_p),
                ("access_key_id", ctypes.c_char_p), ("secret_access_key", ctypes.c_char_p),
                ("session_token", ctypes.c_char_p)]


class ScriptedServer(http.server.ThreadingHTTPServer):
    """Fails the first request after each arm() with (status, body), answers the rest with {}."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.lock = threading.Lock()
        self.failure = None
        self.requests = 0

    def arm(self, status, body):
        with self.lock:
            self.failure = (status, body)
            self.requests = 0


class ScriptedHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.requests += 1
            status, body = self.server.failure or (200, b"{}")
            self.server.failure = None
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("x-amzn-RequestId", "parity-1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class LibkmsRetryParityTest(unittest.TestCase):
    CODES = ["Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
             "TooManyRequestsException", "ProvisionedThroughputExceededException",
             "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
             "LimitExceededException", "RequestThrottled", "SlowDown", "EC2ThrottledException",
             "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete",
             # Not retried:
             "NotFoundException", "ValidationException", "KMSInvalidStateException", "AccessDeniedException",
             "DependencyTimeoutException", "throttlingexception"]
    STATUSES = [500, 501, 502, 503, 504, 429, 408, 404]

    @classmethod
    def setUpClass(cls):
        build = build_dir()
        if sanitizer_flags(build):
            raise unittest.SkipTest("an instrumented libkms cannot be loaded into Python")
        cls.tmp = tempfile.mkdtemp(prefix="libkms-parity-")
        prefix = os.path.join(cls.tmp, "prefix")
        run(["cmake", "--install", build, "--prefix", prefix])
        sos = glob.glob(os.path.join(prefix, "**", "libkms.so." + SONAME_VERSION), recursive=True)
        cls.lib = ctypes.CDLL(sos[0])
        cls.lib.kms_client_new.argtypes = [ctypes.c_int, ctypes.POINTER(KmsClientOptions),
                                           ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(KmsError)]
        cls.lib.kms_call_json.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                                          ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t),
                                          ctypes.POINTER(KmsError)]
        cls.lib.kms_reply_free.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        cls.lib.kms_client_free.argtypes = [ctypes.c_void_p]
        cls.server = ScriptedServer()
        cls.thread = threading.Thread(target=cls.server.serve_forever, daemon=True)
        cls.thread.start()
        cls.url = "http://127.0.0.1:%d" % cls.server.server_address[1]

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("AWS_")}
        self.addCleanup(os.environ.update, saved)
        os.environ.update({"AWS_ACCESS_KEY_ID": "AKIDPARITY", "AWS_SECRET_ACCESS_KEY": "parity-secret",
                           "AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
                           "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
        opts = KmsClientOptions(endpoint_url=self.url.encode(), max_attempts=2, max_backoff_ms=1)
        self.client = ctypes.c_void_p()
        err = KmsError()
        rc = self.lib.kms_client_new(0, ctypes.byref(opts), ctypes.byref(self.client), ctypes.byref(err))
        self.assertEqual(rc, 0, err.message)
        self.addCleanup(self.lib.kms_client_free, self.client)
        cfg = botocore.config.Config(retries={"total_max_attempts": 2, "mode": "standard"})
        self.boto = boto3.session.Session().client(
            "kms", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="AKIDPARITY",
            aws_secret_access_key="parity-secret", config=cfg)

    def requests_by_libkms(self, status, body):
        self.server.arm(status, body)
        reply, length, err = ctypes.c_void_p(), ctypes.c_size_t(), KmsError()
        rc = self.lib.kms_call_json(self.client, b"ListKeys", b"{}", 2, ctypes.byref(reply), ctypes.byref(length),
                                    ctypes.byref(err))
        if rc == 0:
            self.lib.kms_reply_free(reply, length)
        return self.server.requests, err

    def requests_by_boto3(self, status, body):
        self.server.arm(status, body)
        try:
            self.boto.list_keys()
        except botocore.exceptions.ClientError:
            pass
        return self.server.requests

    def test_error_codes(self):
        for code in self.CODES:
            body = json.dumps({"__type": "com.amazonaws.kms#" + code, "message": "scripted"}).encode()
            with self.subTest(code=code):
                ours, err = self.requests_by_libkms(400, body)
                theirs = self.requests_by_boto3(400, body)
                self.assertEqual(ours, theirs)
                if ours == 1:
                    self.assertEqual((err.code.decode(), err.retryable, err.attempts), (code, 0, 1))

    def test_bare_statuses(self):
        for status in self.STATUSES:
            with self.subTest(status=status):
                ours, err = self.requests_by_libkms(status, b"")
                theirs = self.requests_by_boto3(status, b"")
                self.assertEqual(ours, theirs)
                if ours == 1:
                    self.assertEqual(err.code.decode(), str(status))


if __name__ == "__main__":
    unittest.main()
