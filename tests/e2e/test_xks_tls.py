"""xks-proxy end to end: TLS, mutual TLS, plain HTTP and a token that fails and comes back.

The spec wants the proxy to abort the TLS handshake when a client
certificate carries another subject or chains to another CA; KMS presents
CN/SAN cks.kms.<region>.amazonaws.com.  Certificates here are made with the
openssl command line (xks_fixture.Pki): the right one, a wrong subject,
another CA, expired, not yet valid and self-signed.  A refused client must
fail at the TLS level (an SSL error or a reset, never an HTTP answer) and
leave no request line in the log.  TLS 1.1 is refused by the server (shown
with `openssl s_client` allowed to speak 1.1 at security level 0).

The token failure test puts tests/p11shim between the proxy and SoftHSM2:
while P11SHIM_FAIL_FILE exists every token call fails, so Encrypt must get
500 InternalException and GetHealthStatus UNAVAILABLE; when the file goes,
the proxy must reopen the token by itself within a few seconds.  A token
that stalls instead (its SoftHSM2 generation file locked, as another
process holding it would) makes a request that finds no free session within
the proxy's wait answer 503 DependencyTimeoutException, and SIGTERM lets the
stalled request finish before the proxy exits 0.
"""

import fcntl
import glob
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest
import warnings

import xks_fixture as x

PREFIX = "/mtls/kms/xks/v1"
KEY = "mtls-key"
STALL_KEY = "stall-key"  # looked up for the first time while the token stalls


def refused(test, client, conn_ctx, rid):
    """Send a signed health request with `conn_ctx`; assert it fails at the
    TLS level (no HTTP status) and left no log line.  Returns the error."""
    conn = client.connect(conn_ctx)
    try:
        body = json.dumps({"requestMetadata": x.health_meta(rid)}).encode()
        path = client.health_path()
        conn.request("POST", path, body=body, headers=client.sign("POST", path, body))
        resp = conn.getresponse()
        test.fail("the proxy answered %d to a refused client certificate: %r" % (
            resp.status, resp.read()))
    except (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected,
            http.client.BadStatusLine, BrokenPipeError) as e:  # a timeout is a hang: an error
        err = e
    finally:
        conn.close()
    return err


class XksMutualTlsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = x.Pki()
        cls.addClassCleanup(cls.pki.cleanup)
        cls.tokens = x.SoftToken(["xks-mtls-token"])
        cls.addClassCleanup(cls.tokens.cleanup)
        cls.tokens.must_create_key(KEY)
        cls.proxy = x.XksProxy(x.serve_flags(cls.tokens, PREFIX, tls=cls.pki.server,
                                             client_ca=cls.pki.ca,
                                             client_subject=x.KMS_CLIENT_SUBJECT),
                               env=cls.tokens.env())
        cls.proxy.start()
        cls.addClassCleanup(cls.proxy.cleanup)
        cls.client = x.XksClient(cls.proxy.port, PREFIX, ca=cls.pki.ca, client=cls.pki.client)

    def test_right_ca_and_subject_are_accepted(self):
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            with self.subTest(version=version.name):
                ctx = x.tls_context(self.pki.ca, self.pki.client, min_version=version,
                                    max_version=version)
                conn = self.client.connect(ctx)
                try:
                    enc = self.client.encrypt(KEY, b"over mutual TLS", conn=conn)
                    self.assertEqual(enc.status, 200, enc)
                    self.assertEqual(conn.sock.version(), version.name.replace("_", "."))
                    dec = self.client.decrypt_reply(KEY, enc, conn=conn)
                    self.assertEqual(x.unb64(dec.json["plaintext"]), b"over mutual TLS")
                finally:
                    conn.close()
        r = x.curl(self.proxy.port, self.client.health_path(),
                   {"requestMetadata": x.health_meta()}, self.pki.ca, client=self.pki.client)
        self.assertEqual(r.status, 200, (r, r.curl_stderr))

    def test_tls12_uses_one_of_the_spec_suites(self):
        ctx = x.tls_context(self.pki.ca, self.pki.client, max_version=ssl.TLSVersion.TLSv1_2)
        conn = self.client.connect(ctx)
        try:
            self.assertEqual(self.client.health(conn=conn).status, 200)
            cipher = conn.sock.cipher()[0]
        finally:
            conn.close()
        self.assertIn(cipher, ("ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384"))

    def test_bad_client_certificates_are_refused_in_the_handshake(self):
        cases = {
            "wrong subject": self.pki.wrong_subject,
            "other CA": self.pki.other_ca_client,
            "expired": self.pki.expired,
            "not yet valid": self.pki.not_yet_valid,
            "self-signed": self.pki.self_signed,
            "no certificate": None,
        }
        for name, cert in cases.items():
            for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
                with self.subTest(cert=name, version=version.name):
                    rid = x.request_id()
                    ctx = x.tls_context(self.pki.ca, cert, min_version=version,
                                        max_version=version)
                    err = refused(self, self.client, ctx, rid)
                    if version == ssl.TLSVersion.TLSv1_2:
                        # In TLS 1.2 the client's certificate is checked before the
                        # handshake ends: the failure is the handshake's own.
                        self.assertIsInstance(err, (ssl.SSLError, ConnectionError), err)
                    time.sleep(0.05)
                    self.assertEqual(self.proxy.log_lines_with(rid), [])
            with self.subTest(cert=name, client="curl"):
                r = x.curl(self.proxy.port, self.client.health_path(),
                           {"requestMetadata": x.health_meta()}, self.pki.ca, client=cert)
                self.assertEqual(r.status, 0, r)
                self.assertNotEqual(r.curl_exit, 0)
        # The proxy still serves the right client afterwards.
        self.assertEqual(self.client.health().status, 200)

    def test_default_client_subject_is_kms_in_the_region(self):
        # Without --tls-client-subject the proxy wants cks.kms.<region>.amazonaws.com.
        proxy = x.XksProxy(x.serve_flags(self.tokens, "/default-subject/kms/xks/v1",
                                         tls=self.pki.server, client_ca=self.pki.ca),
                           env=self.tokens.env())
        proxy.start()
        try:
            good = x.XksClient(proxy.port, "/default-subject/kms/xks/v1", ca=self.pki.ca,
                               client=self.pki.client)
            # The token is this class's proxy's too: a separate process, its own login.
            self.assertEqual(good.health().status, 200)
            ctx = x.tls_context(self.pki.ca, self.pki.wrong_subject)
            rid = x.request_id()
            refused(self, good, ctx, rid)
            self.assertEqual(proxy.log_lines_with(rid), [])
        finally:
            proxy.cleanup()

    def _s_client(self, *args):
        cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.proxy.port,
               "-servername", x.SERVER_NAME, "-CAfile", self.pki.ca,
               "-cert", self.pki.client[0], "-key", self.pki.client[1]] + list(args)
        return subprocess.run(cmd, input=b"", capture_output=True, timeout=20)

    def test_tls11_is_refused_by_the_server(self):
        # Control: the same command line at TLS 1.2 completes a handshake.
        ok = self._s_client("-tls1_2")
        out = ok.stdout.decode("utf-8", "replace")
        self.assertIn("Verify return code: 0", out, ok.stderr)
        self.assertRegex(out, r"Cipher is (ECDHE|TLS)")
        # TLS 1.1 with the client's own floor lowered (security level 0), so a
        # failure can only be the server's refusal.
        old = self._s_client("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
        out = old.stdout.decode("utf-8", "replace") + old.stderr.decode("utf-8", "replace")
        self.assertNotEqual(old.returncode, 0, out)
        # s_client names the protocol it tried even when it failed; the cipher
        # tells: none was agreed.
        self.assertIn("Cipher is (NONE)", out)
        self.assertNotRegex(out, r"Cipher is (?!\(NONE\))")
        # And with Python's ssl at TLS 1.1 only, security level 0.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.pki.ca)
        ctx.load_cert_chain(*self.pki.client)
        ctx.set_ciphers("DEFAULT@SECLEVEL=0")
        with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10) as raw:
            with self.assertRaises((ssl.SSLError, ConnectionError)):
                ctx.wrap_socket(raw, server_hostname=x.SERVER_NAME).close()

    def test_server_certificate_names_xks_example_test(self):
        ctx = x.tls_context(self.pki.ca, self.pki.client)
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=x.SERVER_NAME) as tls:
                names = [v for k, v in tls.getpeercert()["subjectAltName"] if k == "DNS"]
        self.assertIn(x.SERVER_NAME, names)
        # A client expecting another name refuses the proxy's certificate.
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=10) as raw:
            with self.assertRaises(ssl.SSLCertVerificationError):
                ctx.wrap_socket(raw, server_hostname="other.example.test")


class XksPlainHttpTest(unittest.TestCase):
    """--plain-http serves HTTP (behind a TLS-terminating balancer) and no TLS."""

    @classmethod
    def setUpClass(cls):
        cls.pki = x.Pki()
        cls.addClassCleanup(cls.pki.cleanup)
        cls.tokens = x.SoftToken(["xks-plain-token"])
        cls.addClassCleanup(cls.tokens.cleanup)
        cls.tokens.must_create_key(KEY)
        cls.proxy = x.XksProxy(x.serve_flags(cls.tokens, PREFIX, plain=True), env=cls.tokens.env())
        cls.proxy.start()
        cls.addClassCleanup(cls.proxy.cleanup)
        cls.client = x.XksClient(cls.proxy.port, PREFIX)

    def test_plain_http_serves_signed_requests(self):
        self.assertEqual(self.proxy.scheme, "http")
        self.assertTrue(self.proxy.log_lines_with("listening on http://"))
        enc = self.client.encrypt(KEY, b"plain", aad=b"x")
        self.assertEqual(enc.status, 200, enc)
        self.assertEqual(x.unb64(self.client.decrypt_reply(KEY, enc, aad=b"x").json["plaintext"]),
                         b"plain")
        self.assertEqual(self.client.health(signed=False).status, 401)
        self.assertEqual(self.client.raw("GET", "/ping", b"", signed=False).status, 200)

    def test_no_tls_on_a_plain_port(self):
        tls_client = x.XksClient(self.proxy.port, PREFIX, ca=self.pki.ca)
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            tls_client.health()


class XksTokenFailureTest(unittest.TestCase):
    """The token behind tests/p11shim fails while P11SHIM_FAIL_FILE exists."""

    @classmethod
    def setUpClass(cls):
        cls.pki = x.Pki()
        cls.addClassCleanup(cls.pki.cleanup)
        cls.tokens = x.SoftToken(["xks-shim-token"])
        cls.addClassCleanup(cls.tokens.cleanup)
        cls.tokens.must_create_key(KEY)
        cls.fail_file = os.path.join(cls.tokens.dir, "hsm-down")
        cls.config = os.path.join(cls.tokens.dir, "xks.yaml")
        with open(cls.config, "w") as f:
            json.dump({
                "listen": "127.0.0.1:0",
                "tls": {"cert": cls.pki.server[0], "key": cls.pki.server[1]},
                "key_stores": [{
                    "name": "shim-store", "uri_prefix": PREFIX, "region": x.REGION,
                    "credentials": [{"access_key_id": x.AKID_1,
                                     "secret_access_key": x.SECRET_1}],
                    "pkcs11_module": x.p11shim_module(),
                    "tokens": [{"label": "xks-shim-token", "pin_file": cls.tokens.pin_file()}],
                    "session_pool": 2,
                    "health_interval_seconds": 1,
                }]}, f)
        env = cls.tokens.env(P11SHIM_MODULE=cls.tokens.module, P11SHIM_FAIL_FILE=cls.fail_file)
        cls.proxy = x.XksProxy(["--config", cls.config], env=env)
        cls.proxy.start()
        cls.addClassCleanup(cls.proxy.cleanup)
        cls.addClassCleanup(lambda: os.path.exists(cls.fail_file) and os.unlink(cls.fail_file))
        cls.client = x.XksClient(cls.proxy.port, PREFIX, ca=cls.pki.ca)

    def health_status(self):
        r = self.client.health()
        self.assertEqual(r.status, 200, r)
        return r.json["ekmFleetDetails"][0]["healthStatus"]

    def wait_until(self, what, fn, timeout=8):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = fn()
            if last:
                return last
            time.sleep(0.2)
        self.fail("timed out waiting for %s (last %r)\n%s" % (what, last, self.proxy.describe()))

    def test_a_token_that_fails_and_comes_back(self):
        enc = self.client.encrypt(KEY, b"before the failure")
        self.assertEqual(enc.status, 200, enc)
        self.assertEqual(self.health_status(), "ACTIVE")

        open(self.fail_file, "w").close()
        try:
            r = self.client.encrypt(KEY, b"during the failure")
            self.assertEqual((r.status, r.error), (500, "InternalException"), r)
            r = self.client.decrypt_reply(KEY, enc)
            self.assertEqual((r.status, r.error), (500, "InternalException"), r)
            self.wait_until("health UNAVAILABLE", lambda: self.health_status() == "UNAVAILABLE")
            # Still failing, still answering: no hang, no crash.
            r = self.client.metadata(KEY)
            self.assertEqual((r.status, r.error), (500, "InternalException"), r)
        finally:
            os.unlink(self.fail_file)

        def encrypt_works():
            return self.client.encrypt(KEY, b"after the failure").status == 200
        self.wait_until("encrypt served again", encrypt_works)
        self.wait_until("health ACTIVE", lambda: self.health_status() == "ACTIVE")
        dec = self.client.decrypt_reply(KEY, enc)
        self.assertEqual(x.unb64(dec.json["plaintext"]), b"before the failure")
        self.assertTrue(self.proxy.log_lines_with("InternalException"))


class XksStalledTokenTest(unittest.TestCase):
    """One session (--session-pool 1) on a token that stalls while its
    SoftHSM2 generation file is locked; a fresh proxy per test.  The stalled
    requests use a key the proxy has not looked up yet: a key it has (a
    working copy in the token's memory, see docs/xks-proxy.md) needs no file
    and does not stall."""

    @classmethod
    def setUpClass(cls):
        cls.pki = x.Pki()
        cls.addClassCleanup(cls.pki.cleanup)
        cls.tokens = x.SoftToken(["xks-stall-token"])
        cls.addClassCleanup(cls.tokens.cleanup)
        cls.tokens.must_create_key(KEY)
        cls.tokens.must_create_key(STALL_KEY)

    def setUp(self):
        self.proxy = x.XksProxy(x.serve_flags(self.tokens, PREFIX, tls=self.pki.server,
                                              extra=["--session-pool", "1"]),
                                env=self.tokens.env())
        self.proxy.start()
        self.addCleanup(self.proxy.cleanup)
        self.client = x.XksClient(self.proxy.port, PREFIX, ca=self.pki.ca)
        self.assertEqual(self.client.encrypt(KEY, b"warm").status, 200)
        self.locks = []
        self.addCleanup(self.unlock)

    def lock_token(self):
        paths = glob.glob(os.path.join(self.tokens.tokendir, "*", "generation"))
        self.assertEqual(len(paths), 1)
        for path in paths:
            fd = os.open(path, os.O_RDWR)
            fcntl.lockf(fd, fcntl.LOCK_EX)
            self.locks.append(fd)

    def unlock(self):
        while self.locks:
            fd = self.locks.pop()
            fcntl.lockf(fd, fcntl.LOCK_UN)
            os.close(fd)

    def stalled_encrypt(self, plaintext=b"stalled", settle=0.5):
        """An Encrypt on its own thread; returns (thread, dict that gets "r").
        Returns once the request has been written and `settle` seconds more
        have passed, so the proxy has it."""
        out = {}
        sent = threading.Event()

        def run():
            conn = self.client.connect()
            try:
                path = self.client.key_path(STALL_KEY, "encrypt")
                body = json.dumps({"requestMetadata": x.meta(), "plaintext": x.b64(plaintext),
                                   "encryptionAlgorithm": "AES_GCM"}).encode()
                conn.request("POST", path, body=body, headers=self.client.sign("POST", path, body))
                sent.set()
                resp = conn.getresponse()
                out["r"] = x.Reply(resp.status, resp.headers, resp.read())
            except Exception as e:  # reported by the test that reads out["r"]
                out["r"] = x.Reply(0, {}, repr(e).encode())
            finally:
                sent.set()
                conn.close()
        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.assertTrue(sent.wait(10))
        time.sleep(settle)
        self.assertNotIn("r", out, "the token did not stall")
        return t, out

    def test_no_free_session_is_dependency_timeout(self):
        self.lock_token()
        first = self.stalled_encrypt(b"first")
        second = self.stalled_encrypt(b"second", settle=0)
        # Whichever holds the only session stalls; the other waits for a
        # session, gives up within the proxy's wait and says so.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10 and not (first[1] or second[1]):
            time.sleep(0.05)
        done = [o["r"] for _, o in (first, second) if "r" in o]
        self.assertEqual(len(done), 1, done)
        self.assertEqual((done[0].status, done[0].error), (503, "DependencyTimeoutException"),
                         done[0])
        self.unlock()
        for t, out in (first, second):
            t.join(10)
        statuses = sorted(o["r"].status for _, o in (first, second))
        self.assertEqual(statuses, [200, 503])
        self.assertEqual(self.client.encrypt(KEY, b"served again").status, 200)

    def test_sigterm_lets_the_request_in_flight_finish(self):
        self.lock_token()
        t, out = self.stalled_encrypt(settle=1.0)
        self.proxy.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        self.assertIsNone(self.proxy.proc.poll(), "the proxy did not wait for its request")
        self.unlock()
        t.join(10)
        self.assertEqual(out["r"].status, 200, out)
        j = out["r"].json
        self.assertEqual(len(x.unb64(j["ciphertext"])), len(b"stalled"))
        self.assertEqual(self.proxy.proc.wait(15), 0, self.proxy.describe())


if __name__ == "__main__":
    unittest.main()
