"""xks_fixture - what the xks-proxy end-to-end suites need to run the real program.

An XKS proxy is only interesting over real TLS, with real keys in a real
PKCS#11 token and requests signed the way AWS KMS signs them.  This module
makes each of those with the tools an operator would use:

* Pki: certificates made with the openssl command line (a CA, the server's
  certificate for xks.example.test, and client certificates that are right,
  carry the wrong subject, chain to another CA, are expired, not yet valid
  or self-signed), so the mTLS tests present what a misconfigured client
  would.
* SoftToken: a SoftHSM2 token directory of the test's own (SOFTHSM2_CONF),
  with keys made by `xks-proxy create-key`.
* XksProxy: the built xks-proxy, started from flags or a configuration file
  it is given, its stderr kept in a file; started on port 0 and found by the
  "listening on" line; stopped with SIGTERM, which must exit 0.
* XksClient: requests signed with botocore's SigV4Auth (service
  kms-xks-proxy) sent with http.client over CA-verified TLS to the name
  xks.example.test on loopback, optionally with a client certificate and a
  shifted clock; and curl(), the same through `curl --aws-sigv4`, as an
  operator troubleshooting a proxy does.

Environment (set by ctest, all optional): KMSD_BUILD_DIR (xks-proxy and
libp11shim.so are looked for there), KMSD_XKS_PROXY (the program),
KMSD_P11SHIM, KMSD_SOFTHSM2_MODULE, KMSD_KEEP_TMP (keep files after a run).
"""

import base64
import datetime
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest
import uuid

import botocore.auth
import botocore.awsrequest
import botocore.credentials

SERVER_NAME = "xks.example.test"
REGION = "us-east-1"
SERVICE = "kms-xks-proxy"
KMS_CLIENT_SUBJECT = "cks.kms.%s.amazonaws.com" % REGION
START_TIMEOUT = float(os.environ.get("KMSD_START_TIMEOUT", "20"))

# Two SigV4 credentials of one key store (the spec's rotation pair) and one
# that belongs to nobody.  Ids: 20..30 of A-Z and 2-7; secrets: 43..64 of A-Za-z0-9+/=.
AKID_1 = "AKIAXKSTESTPRIMARY22"
SECRET_1 = "c2VjcmV0LW9uZS1mb3ItdGhlLXhrcy1wcm94eS10ZXN0cw=="
AKID_2 = "AKIAXKSTESTROTATED33"
SECRET_2 = "bmV4dC1zZWNyZXQtZm9yLXRoZS14a3MtcHJveHktdGVzdHM="
AKID_UNKNOWN = "AKIAXKSTESTSTRANGER4"
SECRET_UNKNOWN = "c3RyYW5nZXItc2VjcmV0LXRoYXQtbm9ib2R5LWNvbmZpZ3VyZWQ="

TOKEN_PIN = "xks-user-pin-4821"
SO_PIN = "xks-so-pin-9137"

PRINCIPAL = "arn:aws:iam::111122223333:user/Alice"
KMS_KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

REPO_ROOT = os.environ.get("KMSD_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SOFTHSM_MODULE_PATHS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib/pkcs11/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def keep_tmp():
    return bool(os.environ.get("KMSD_KEEP_TMP"))


def b64(data):
    return base64.b64encode(data).decode("ascii")


def unb64(text):
    return base64.b64decode(text, validate=True)


def _built(env_name, file_name, what):
    candidates = [os.environ.get(env_name)]
    if os.environ.get("KMSD_BUILD_DIR"):
        candidates.append(os.path.join(os.environ["KMSD_BUILD_DIR"], file_name))
    candidates.append(os.path.join(REPO_ROOT, "build", file_name))
    for path in candidates:
        if path and os.path.isfile(path):
            return path
    raise FileNotFoundError("%s not found (tried %s); build it" % (what, [c for c in candidates if c]))


def xks_proxy_binary():
    """The built xks-proxy: $KMSD_XKS_PROXY, $KMSD_BUILD_DIR/xks-proxy, <repo>/build/xks-proxy."""
    return _built("KMSD_XKS_PROXY", "xks-proxy", "xks-proxy")


def p11shim_module():
    """The built tests/p11shim module."""
    return _built("KMSD_P11SHIM", "libp11shim.so", "libp11shim.so")


def softhsm_module():
    """SoftHSM2's PKCS#11 module; skips the test when it is not installed."""
    for path in [os.environ.get("KMSD_SOFTHSM2_MODULE")] + list(SOFTHSM_MODULE_PATHS):
        if path and os.path.isfile(path):
            return path
    raise unittest.SkipTest("SoftHSM2 is not installed")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cdiv(aad, iv, ciphertext, tag, ciphertext_metadata=b""):
    """The spec's ciphertextDataIntegrityValue, computed here and not by the
    proxy: Base64(SHA-256(AAD || ciphertextMetadata || IV || ciphertext || tag))."""
    return b64(hashlib.sha256(aad + ciphertext_metadata + iv + ciphertext + tag).digest())


# -- certificates -------------------------------------------------------------

_OPENSSL_CA_CONF = """\
[ ca ]
default_ca = test_ca

[ test_ca ]
dir = {dir}
database = {dir}/index.txt
serial = {dir}/serial
new_certs_dir = {dir}/issued
certificate = {cert}
private_key = {key}
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no

[ anything ]
commonName = supplied
organizationName = optional
"""


def _openssl(*args, cwd=None):
    p = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, cwd=cwd)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args[:2]), p.stderr[-2000:]))
    return p.stdout


class _CA:
    """One certificate authority (key, self-signed certificate, openssl ca state)."""

    def __init__(self, root, name):
        self.dir = os.path.join(root, name)
        os.makedirs(os.path.join(self.dir, "issued"))
        self.key = os.path.join(self.dir, "ca.key")
        self.cert = os.path.join(self.dir, "ca.pem")
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", self.key, "-out", self.cert, "-days", "3650",
                 "-subj", "/O=xks-proxy tests/CN=%s" % name,
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("%016X\n" % (int.from_bytes(os.urandom(7), "big") | 1))
        self.conf = os.path.join(self.dir, "ca.cnf")
        with open(self.conf, "w") as f:
            f.write(_OPENSSL_CA_CONF.format(dir=self.dir, cert=self.cert, key=self.key))

    def issue(self, out_dir, name, cn, extensions, start=None, end=None):
        """A key and a certificate for `cn`, signed by this CA; `extensions`
        is the text of an openssl extension section; start/end as
        YYYYMMDDHHMMSSZ (default: now for ten years).  Returns (cert, key)."""
        key = os.path.join(out_dir, name + ".key")
        csr = os.path.join(out_dir, name + ".csr")
        cert = os.path.join(out_dir, name + ".pem")
        ext = os.path.join(out_dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("[ext]\n" + extensions)
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", key, "-out", csr, "-subj", "/O=xks-proxy tests/CN=%s" % cn)
        dates = []
        if start:
            dates += ["-startdate", start]
        if end:
            dates += ["-enddate", end]
        else:
            dates += ["-days", "3650"]
        _openssl("ca", "-batch", "-config", self.conf, "-in", csr, "-out", cert, "-notext",
                 "-extfile", ext, "-extensions", "ext", *dates)
        return cert, key


def _client_extensions(dns_name):
    return ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:%s\n" % dns_name)


class Pki:
    """Every certificate the suites use, in one temporary directory.

    Attributes are (cert, key) pairs of paths, plus `ca` and `other_ca`
    (the CA certificate paths):
      server        xks.example.test, localhost, 127.0.0.1, by `ca`
      client        the KMS subject cks.kms.us-east-1.amazonaws.com, by `ca`
      wrong_subject cks.kms.eu-west-1.amazonaws.com, by `ca`
      other_ca      the KMS subject, by another CA
      expired       the KMS subject, by `ca`, valid 2020..2021
      not_yet_valid the KMS subject, by `ca`, valid from 2045
      self_signed   the KMS subject, signed by its own key
    """

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="xks-pki-")
        main_ca = _CA(self.dir, "xks-test-ca")
        stranger_ca = _CA(self.dir, "xks-other-ca")
        self.ca = main_ca.cert
        self.other_ca = stranger_ca.cert
        self.server = main_ca.issue(
            self.dir, "server", SERVER_NAME,
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\n" % SERVER_NAME)
        self.client = main_ca.issue(self.dir, "client", KMS_CLIENT_SUBJECT,
                                    _client_extensions(KMS_CLIENT_SUBJECT))
        wrong = "cks.kms.eu-west-1.amazonaws.com"
        self.wrong_subject = main_ca.issue(self.dir, "wrong-subject", wrong, _client_extensions(wrong))
        self.other_ca_client = stranger_ca.issue(self.dir, "other-ca-client", KMS_CLIENT_SUBJECT,
                                                 _client_extensions(KMS_CLIENT_SUBJECT))
        self.expired = main_ca.issue(self.dir, "expired", KMS_CLIENT_SUBJECT,
                                     _client_extensions(KMS_CLIENT_SUBJECT),
                                     start="20200101000000Z", end="20210101000000Z")
        self.not_yet_valid = main_ca.issue(self.dir, "not-yet-valid", KMS_CLIENT_SUBJECT,
                                           _client_extensions(KMS_CLIENT_SUBJECT),
                                           start="20450101000000Z", end="20460101000000Z")
        ss_key = os.path.join(self.dir, "self-signed.key")
        ss_cert = os.path.join(self.dir, "self-signed.pem")
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", ss_key, "-out", ss_cert, "-days", "3650",
                 "-subj", "/O=xks-proxy tests/CN=%s" % KMS_CLIENT_SUBJECT,
                 "-addext", "subjectAltName=DNS:%s" % KMS_CLIENT_SUBJECT,
                 "-addext", "extendedKeyUsage=clientAuth")
        self.self_signed = (ss_cert, ss_key)

    def cleanup(self):
        if not keep_tmp():
            shutil.rmtree(self.dir, ignore_errors=True)


# -- PKCS#11 tokens -----------------------------------------------------------

class SoftToken:
    """SoftHSM2 tokens in a directory of the test's own.

    `env()` is the environment every process touching them needs
    (SOFTHSM2_CONF); `module` is the SoftHSM2 module path."""

    def __init__(self, labels=("xks-token",), pin=TOKEN_PIN):
        if not shutil.which("softhsm2-util"):
            raise unittest.SkipTest("softhsm2-util is not installed")
        self.module = softhsm_module()
        self.pin = pin
        self.dir = tempfile.mkdtemp(prefix="xks-tokens-")
        self.tokendir = os.path.join(self.dir, "tokens")
        os.mkdir(self.tokendir, 0o700)
        self.conf = os.path.join(self.dir, "softhsm2.conf")
        with open(self.conf, "w") as f:
            f.write("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
                    % self.tokendir)
        self.labels = list(labels)
        for label in self.labels:
            subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label,
                            "--so-pin", SO_PIN, "--pin", pin],
                           check=True, capture_output=True, env=self.env())

    def env(self, **extra):
        e = dict(os.environ, SOFTHSM2_CONF=self.conf)
        e.update({k: str(v) for k, v in extra.items()})
        return e

    def pin_file(self):
        """A file holding the PIN (mode 0600)."""
        path = os.path.join(self.dir, "pin")
        if not os.path.exists(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.pin + "\n")
        return path

    def create_key(self, label, usage=None, token=None, module=None, env=None):
        """`xks-proxy create-key`; returns the CompletedProcess (check=False)."""
        cmd = [xks_proxy_binary(), "create-key", "--pkcs11-module", module or self.module,
               "--token-label", token or self.labels[0], "--pin", self.pin, "--label", label]
        if usage:
            cmd += ["--usage", usage]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                              env=env or self.env())

    def must_create_key(self, label, usage=None, token=None):
        p = self.create_key(label, usage=usage, token=token)
        if p.returncode != 0:
            raise AssertionError("create-key %s failed (%d): %s%s" % (label, p.returncode,
                                                                      p.stdout, p.stderr))
        return p

    def cleanup(self):
        if not keep_tmp():
            shutil.rmtree(self.dir, ignore_errors=True)


# -- the proxy process --------------------------------------------------------

LISTENING = re.compile(r"listening on (https?)://([^\s:/]+|\[[^\]]+\]):(\d+)")


class XksStartError(RuntimeError):
    pass


class XksProxy:
    """One xks-proxy process.

    args:   its command-line arguments (flags, or ["--config", path]).
    env:    its environment (default: the current one).
    The process's stderr and stdout go to `log_path`.  start() waits for
    the "listening on" line and sets scheme/port."""

    def __init__(self, args, env=None, workdir=None):
        self.binary = xks_proxy_binary()
        self.args = list(args)
        self.env = env
        self.dir = workdir or tempfile.mkdtemp(prefix="xks-proxy-")
        self.log_path = os.path.join(self.dir, "xks-proxy.log")
        self.proc = None
        self.port = None
        self.scheme = None
        self._log = None

    def command(self):
        return [self.binary] + self.args

    def start(self, timeout=START_TIMEOUT):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = LISTENING.search(self.log_text())
            if m:
                self.scheme, self.port = m.group(1), int(m.group(3))
                return self
            if self.proc.poll() is not None:
                self._close_log()
                raise XksStartError("xks-proxy exited with %s during start:\n%s" % (
                    self.proc.returncode, self.log_text()[-4000:]))
            time.sleep(0.02)
        self.proc.kill()
        self.proc.wait()
        self._close_log()
        raise XksStartError("xks-proxy did not log 'listening on' within %ss:\n%s" % (
            timeout, self.log_text()[-4000:]))

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_lines_with(self, needle):
        return [line for line in self.log_text().splitlines() if needle in line]

    def wait_log(self, needle, timeout=5):
        """Wait until a log line contains `needle`; returns the lines (maybe [])."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_lines_with(needle)
            if lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def describe(self):
        state = "not started" if self.proc is None else (
            "running" if self.proc.poll() is None else "exited %s" % self.proc.returncode)
        return "xks-proxy %s, log %s; tail:\n%s" % (state, self.log_path, self.log_text()[-3000:])

    def _close_log(self):
        if self._log:
            self._log.close()
            self._log = None

    def stop(self, timeout=15):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._close_log()
                raise AssertionError("xks-proxy ignored SIGTERM for %ss.\n%s" % (timeout, self.describe()))
        self._close_log()
        return self.proc.returncode

    def cleanup(self):
        """Stop; a graceful stop must exit 0 (AssertionError otherwise)."""
        was_running = self.proc is not None and self.proc.poll() is None
        rc = self.stop()
        if was_running and rc != 0:
            raise AssertionError("xks-proxy exited %s after SIGTERM, not 0.\n%s" % (rc, self.describe()))
        if not keep_tmp():
            shutil.rmtree(self.dir, ignore_errors=True)


def run_proxy(args, env=None, timeout=30):
    """Run xks-proxy to completion (--help, create-key, a refused
    configuration); returns (exit status, stdout, stderr)."""
    p = subprocess.run([xks_proxy_binary()] + list(args), capture_output=True, text=True,
                       timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def serve_flags(tokens, prefix, tls=None, plain=False, client_ca=None, client_subject=None,
                second_credential=True, module=None, extra=()):
    """Flags of a one-store proxy on 127.0.0.1:0 over `tokens`' first token.
    tls: (cert, key) paths (required unless plain)."""
    args = ["--listen", "127.0.0.1:0", "--uri-prefix", prefix, "--region", REGION,
            "--access-key-id", AKID_1, "--secret-access-key", SECRET_1,
            "--pkcs11-module", module or tokens.module, "--token-label", tokens.labels[0],
            "--pin", tokens.pin]
    if second_credential:
        args += ["--access-key-id-2", AKID_2, "--secret-access-key-2", SECRET_2]
    if plain:
        args.append("--plain-http")
    else:
        args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
    if client_ca:
        args += ["--tls-client-ca", client_ca]
    if client_subject:
        args += ["--tls-client-subject", client_subject]
    return args + list(extra)


# -- requests -----------------------------------------------------------------

def request_id():
    return str(uuid.uuid4())


def meta(op="Encrypt", rid=None, principal=PRINCIPAL, key_arn=KMS_KEY_ARN, via=None, **extra):
    """A requestMetadata object as KMS sends it for `op`."""
    m = {"awsPrincipalArn": principal, "kmsOperation": op, "kmsRequestId": rid or request_id()}
    if key_arn is not None and op not in ("CreateKey",):
        m["kmsKeyArn"] = key_arn
    if via:
        m["kmsViaService"] = via
    m.update(extra)
    return m


def health_meta(rid=None, op="KmsHealthCheck"):
    return {"kmsRequestId": rid or request_id(), "kmsOperation": op}


class Reply:
    """One HTTP answer: status, headers, raw body and the parsed JSON (or None)."""

    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.json = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            self.json = None

    @property
    def error(self):
        return self.json.get("errorName") if isinstance(self.json, dict) else None

    def __repr__(self):
        return "Reply(%d, %r)" % (self.status, self.raw[:300])


def _loopback_socket(port, timeout):
    """A TCP connection to 127.0.0.1:port without Nagle's algorithm:
    http.client writes headers and body separately, and the body would
    otherwise wait for the proxy's delayed ACK (40 ms a request)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1:port that verifies the certificate as SERVER_NAME,
    the way a client resolving xks.example.test to loopback would."""

    def __init__(self, port, context, timeout):
        super().__init__(SERVER_NAME, port, context=context, timeout=timeout)
        self._ctx = context

    def connect(self):
        sock = _loopback_socket(self.port, self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=SERVER_NAME)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, port, timeout):
        super().__init__(SERVER_NAME, port, timeout=timeout)

    def connect(self):
        self.sock = _loopback_socket(self.port, self.timeout)


def tls_context(ca, client=None, min_version=None, max_version=None):
    """A client context verifying the server against `ca` as SERVER_NAME;
    client is a (cert, key) pair or None."""
    ctx = ssl.create_default_context(cafile=ca)
    if client:
        ctx.load_cert_chain(client[0], client[1])
    if min_version:
        ctx.minimum_version = min_version
    if max_version:
        ctx.maximum_version = max_version
    return ctx


class XksClient:
    """Signed XKS requests to one proxy.

    port:   the proxy's port on 127.0.0.1.
    ca:     the CA certificate to verify it with; None for plain HTTP.
    client: (cert, key) to present, or None.
    The credential, region and service may be changed per request."""

    def __init__(self, port, prefix, ca=None, client=None, akid=AKID_1, secret=SECRET_1,
                 region=REGION, service=SERVICE, timeout=30):
        self.port = port
        self.prefix = prefix
        self.ca = ca
        self.client = client
        self.akid = akid
        self.secret = secret
        self.region = region
        self.service = service
        self.timeout = timeout

    @property
    def scheme(self):
        return "https" if self.ca else "http"

    @property
    def host(self):
        return "%s:%d" % (SERVER_NAME, self.port)

    def connect(self, context=None):
        """A new connection (not yet opened)."""
        if self.ca:
            return _PinnedHTTPSConnection(self.port, context or tls_context(self.ca, self.client),
                                          self.timeout)
        return _PinnedHTTPConnection(self.port, self.timeout)

    def sign(self, method, path, body, akid=None, secret=None, region=None, service=None,
             skew=0, headers=None):
        """Headers of a SigV4-signed request, signed `skew` seconds away
        from now."""
        creds = botocore.credentials.Credentials(akid or self.akid, secret or self.secret)
        req = botocore.awsrequest.AWSRequest(
            method=method, url="%s://%s%s" % (self.scheme, self.host, path), data=body,
            headers=dict({"Content-Type": "application/json"}, **(headers or {})))
        signer = botocore.auth.SigV4Auth(creds, service or self.service, region or self.region)
        when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=skew)
        req.context["timestamp"] = when.strftime(botocore.auth.SIGV4_TIMESTAMP)
        signer._modify_request_before_signing(req)
        canonical = signer.canonical_request(req)
        string_to_sign = signer.string_to_sign(req, canonical)
        signer._inject_signature_to_request(req, signer.signature(string_to_sign, req))
        out = dict(req.headers.items())
        out["Host"] = self.host
        return out

    def raw(self, method, path, body=b"", signed=True, conn=None, headers=None, **sign_args):
        """Send one request; returns a Reply.  body: bytes, str or a dict
        (sent as JSON).  conn: an open connection to reuse (kept open)."""
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        if signed:
            hdrs = self.sign(method, path, body, headers=headers, **sign_args)
        else:
            hdrs = dict({"Host": self.host, "Content-Type": "application/json"}, **(headers or {}))
        own = conn is None
        c = conn or self.connect()
        try:
            c.request(method, path, body=body if (body or method == "POST") else None, headers=hdrs)
            resp = c.getresponse()
            return Reply(resp.status, resp.headers, resp.read())
        finally:
            if own:
                c.close()

    # -- the four operations ------------------------------------------------

    def key_path(self, key_id, op, prefix=None):
        return "%s/keys/%s/%s" % (prefix or self.prefix, key_id, op)

    def health_path(self, prefix=None):
        return "%s/health" % (prefix or self.prefix)

    def metadata(self, key_id, rid=None, m=None, **kw):
        return self.raw("POST", self.key_path(key_id, "metadata"),
                        {"requestMetadata": m or meta("CreateKey", rid=rid)}, **kw)

    def encrypt(self, key_id, plaintext, aad=None, cdiv=False, rid=None, m=None, extra=None, **kw):
        body = {"requestMetadata": m or meta("Encrypt", rid=rid), "plaintext": b64(plaintext),
                "encryptionAlgorithm": "AES_GCM"}
        if aad is not None:
            body["additionalAuthenticatedData"] = b64(aad)
        if cdiv:
            body["ciphertextDataIntegrityValueAlgorithm"] = "SHA_256"
        body.update(extra or {})
        return self.raw("POST", self.key_path(key_id, "encrypt"), body, **kw)

    def decrypt(self, key_id, ciphertext, iv, tag, aad=None, ct_metadata=None, rid=None, m=None,
                extra=None, **kw):
        body = {"requestMetadata": m or meta("Decrypt", rid=rid), "ciphertext": b64(ciphertext),
                "encryptionAlgorithm": "AES_GCM", "initializationVector": b64(iv),
                "authenticationTag": b64(tag)}
        if aad is not None:
            body["additionalAuthenticatedData"] = b64(aad)
        if ct_metadata is not None:
            body["ciphertextMetadata"] = b64(ct_metadata)
        body.update(extra or {})
        return self.raw("POST", self.key_path(key_id, "decrypt"), body, **kw)

    def decrypt_reply(self, key_id, enc_reply, aad=None, **kw):
        """Decrypt what an Encrypt reply returned."""
        j = enc_reply.json
        md = unb64(j["ciphertextMetadata"]) if j.get("ciphertextMetadata") else None
        return self.decrypt(key_id, unb64(j["ciphertext"]), unb64(j["initializationVector"]),
                            unb64(j["authenticationTag"]), aad=aad, ct_metadata=md, **kw)

    def health(self, rid=None, **kw):
        return self.raw("POST", self.health_path(), {"requestMetadata": health_meta(rid)}, **kw)


def curl(port, path, body, ca, akid=AKID_1, secret=SECRET_1, region=REGION, client=None,
         method="POST", timeout=30):
    """One request through `curl --aws-sigv4`; returns a Reply (status 0 when
    curl itself failed, e.g. at the TLS handshake)."""
    if not shutil.which("curl"):
        raise unittest.SkipTest("curl is not installed")
    if isinstance(body, dict):
        body = json.dumps(body)
    cmd = ["curl", "-sS", "--max-time", str(timeout), "--aws-sigv4",
           "aws:amz:%s:%s" % (region, SERVICE), "--user", "%s:%s" % (akid, secret),
           "--cacert", ca, "--resolve", "%s:%d:127.0.0.1" % (SERVER_NAME, port),
           "-H", "Content-Type: application/json", "-o", "-", "-w", "\n%{http_code}"]
    if client:
        cmd += ["--cert", client[0], "--key", client[1]]
    if method == "POST":
        cmd += ["--data-binary", body]
    else:
        cmd += ["-X", method]
    cmd.append("https://%s:%d%s" % (SERVER_NAME, port, path))
    p = subprocess.run(cmd, capture_output=True, timeout=timeout + 5)
    out, _, code = p.stdout.rpartition(b"\n")
    status = int(code) if code.strip().isdigit() else 0
    reply = Reply(status, {}, out)
    reply.curl_exit = p.returncode
    reply.curl_stderr = p.stderr.decode("utf-8", "replace")
    return reply
