"""The connection manager of external key stores (lib/kms/kms_cks_conn.c)
under conditions a unit test cannot make, driven by boto3 against a real
kmsd:

* RotationUnderLoadTest: UpdateCustomKeyStore rotates a CONNECTED store's
  credential while several threads keep Encrypt calls streaming through the
  real xks-proxy (which accepts both credentials of the rotation pair).  The
  new connection must take over at once, not when the old one is idle - under
  steady traffic that moment need not come - so the update answers promptly,
  no call of the stream fails, and the proxy sees the new credential after.
* RestartProxyDownTest: kmsd restarts while the real proxy is down.  A store
  that was CONNECTED comes back CONNECTED (a running kmsd whose proxy goes
  down stays CONNECTED too), Encrypt meets the unreachable proxy as
  KMSInvalidStateException, and once the proxy is back an old ciphertext
  decrypts and Encrypt works, with no ConnectCustomKeyStore.  A store left
  CONNECTING by the previous run still connects for real (stand-in proxy).
* HealthSweepManyStoresTest: the periodic GetHealthStatus reaches every one
  of more CONNECTED stores than the 100 an earlier kmsd checked per round
  (stand-in proxy serving 110 URI paths).
"""
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import unittest

import kmsd_harness as h
import xks_certs
import xks_fixture as x
from xks_standin import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET, StandIn

PREFIX = "/conn/kms/xks/v1"


def wait_state(kms, cks_id, states=("CONNECTED", "FAILED"), timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        entry = kms.describe_custom_key_stores(CustomKeyStoreId=cks_id)["CustomKeyStores"][0]
        if entry["ConnectionState"] in states:
            return entry
        if time.monotonic() > deadline:
            raise AssertionError("store %s stayed %s" % (cks_id, entry["ConnectionState"]))
        time.sleep(0.05)


def wait_log(server, pattern, timeout=10):
    """Lines of kmsd's log matching the regex `pattern`, waiting up to
    `timeout` s for the first; [] when none came."""
    deadline = time.monotonic() + timeout
    while True:
        with open(server.log_path, errors="replace") as f:
            lines = [line for line in f if re.search(pattern, line)]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def real_store(kms, name, akid=x.AKID_1, secret=x.SECRET_1):
    """An external key store of the real proxy at PREFIX, connected."""
    cks = kms.create_custom_key_store(
        CustomKeyStoreName=name, CustomKeyStoreType="EXTERNAL_KEY_STORE",
        XksProxyUriEndpoint="https://" + x.SERVER_NAME, XksProxyUriPath=PREFIX,
        XksProxyConnectivity="PUBLIC_ENDPOINT",
        XksProxyAuthenticationCredential={"AccessKeyId": akid,
                                          "RawSecretAccessKey": secret})["CustomKeyStoreId"]
    kms.connect_custom_key_store(CustomKeyStoreId=cks)
    entry = wait_state(kms, cks)
    assert entry["ConnectionState"] == "CONNECTED", entry
    return cks


class _RealProxyCase(h.KmsdBaseTestCase):
    """One SoftHSM2 token with key KEY and the real xks-proxy over TLS on a
    fixed port (so it can be stopped and started again where kmsd expects
    it), accepting both credentials of the fixture's rotation pair."""

    KEY = "conn-key-1"
    CRYPT_DELAY_MS = 0  # > 0: the token answers each encryption that late

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = x.Pki()
        cls.addClassCleanup(cls.pki.cleanup)
        cls.tokens = x.SoftToken(["kmsd-conn-token"])
        cls.addClassCleanup(cls.tokens.cleanup)
        cls.tokens.must_create_key(cls.KEY)
        cls.proxy_port = x.free_port()
        module, env = None, cls.tokens.env()
        if cls.CRYPT_DELAY_MS:
            # A slow HSM (tests/p11shim): each call holds its connection
            # long enough for the calls of a stream to overlap.
            module = x.p11shim_module()
            env = cls.tokens.env(P11SHIM_MODULE=cls.tokens.module,
                                 P11SHIM_CRYPT_DELAY_MS=cls.CRYPT_DELAY_MS)
        args = x.serve_flags(cls.tokens, PREFIX, tls=cls.pki.server, module=module,
                             extra=["--threads", "16", "--session-pool", "16"])
        args[args.index("127.0.0.1:0")] = "127.0.0.1:%d" % cls.proxy_port
        cls.proxy = x.XksProxy(args, env=env)
        cls.proxy.start()
        cls.addClassCleanup(cls.proxy.cleanup)

    def kmsd_args(self, *extra):
        return ["--xks-ca-bundle", self.pki.ca,
                "--xks-connect-to", "%s:443:127.0.0.1:%d" % (x.SERVER_NAME, self.proxy_port)] + \
            list(extra)

    def restart_proxy(self):
        """Start the stopped proxy again on its port and wait until it
        accepts connections (its log still holds the first run's
        "listening on" line, which XksProxy.start would take for this one)."""
        self.proxy.start()
        deadline = time.monotonic() + x.START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.proxy_port), 1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proxy.proc.poll() is not None:
                    raise AssertionError("xks-proxy did not come back.\n" + self.proxy.describe())
                time.sleep(0.02)

    def proxy_lines(self, request_id):
        """The proxy's log lines of the request KMS sent with kmsRequestId
        `request_id` (the proxy logs it as the line's request id)."""
        return [line for line in self.proxy.log_text().splitlines()
                if request_id in line and "kmsOperation=" in line]


class RotationUnderLoadTest(_RealProxyCase):

    THREADS = 6
    CRYPT_DELAY_MS = 100
    BOUND_S = 5.0

    def test_update_credential_while_encrypt_streams(self):
        # Calls overlap inside kmsd, so the old connection is never idle: a
        # slow token (each proxy call takes CRYPT_DELAY_MS or more), more
        # HTTP workers than streams, and a timeout that a loaded two-CPU
        # machine (or a sanitizer build) stays well inside.
        server = self.start_server(args=self.kmsd_args("--threads", "8", "--xks-timeout", "3000"))
        kms = h.kms_client(server)
        cks = real_store(kms, "rotating")
        key = kms.create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=cks,
                             XksKeyId=self.KEY)["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"before the rotation")["CiphertextBlob"]

        stop = threading.Event()
        lock = threading.Lock()
        failures = []
        done = [0] * self.THREADS
        after_update = [0]
        updated = threading.Event()

        def stream(i):
            client = h.kms_client(server)
            n = 0
            while not stop.is_set():
                pt = b"stream %d call %d" % (i, n)
                try:
                    out = client.encrypt(KeyId=key, Plaintext=pt)
                    back = client.decrypt(CiphertextBlob=out["CiphertextBlob"])["Plaintext"]
                    if back != pt:
                        raise AssertionError("round trip changed the plaintext")
                except Exception as e:  # every failure of the stream is a finding
                    with lock:
                        failures.append("thread %d call %d: %r" % (i, n, e))
                n += 1
                with lock:
                    done[i] += 1
                    if updated.is_set():
                        after_update[0] += 1

        threads = [threading.Thread(target=stream, args=(i,), daemon=True)
                   for i in range(self.THREADS)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 30
            while min(done) < 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertGreaterEqual(min(done), 5, "the stream did not get going: %r" % done)
            t0 = time.monotonic()
            kms.update_custom_key_store(
                CustomKeyStoreId=cks,
                XksProxyAuthenticationCredential={"AccessKeyId": x.AKID_2,
                                                  "RawSecretAccessKey": x.SECRET_2})
            took = time.monotonic() - t0
            updated.set()
            # The stream goes on over the new connection for a while.
            deadline = time.monotonic() + 30
            while after_update[0] < 4 * self.THREADS and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertLess(took, self.BOUND_S,
                        "UpdateCustomKeyStore took %.2f s while Encrypt streamed" % took)
        self.assertEqual(failures, [])
        self.assertGreaterEqual(after_update[0], 4 * self.THREADS)

        # After the update (and the stream), KMS signs with the new credential.
        rids = []
        for i in range(3):
            out = kms.encrypt(KeyId=key, Plaintext=b"after %d" % i)
            rids.append(out["ResponseMetadata"]["RequestId"])
        rids.append(kms.decrypt(CiphertextBlob=blob)["ResponseMetadata"]["RequestId"])
        for rid in rids:
            lines = self.proxy_lines(rid)
            self.assertTrue(lines, "the proxy logged no request %s" % rid)
            for line in lines:
                self.assertIn("credential=%s" % x.AKID_2, line)
                self.assertIn("status=200", line)
        self.assertEqual(kms.describe_custom_key_stores(CustomKeyStoreId=cks)
                         ["CustomKeyStores"][0]["XksProxyConfiguration"]["AccessKeyId"], x.AKID_2)
        # The old connection was closed, not leaked: kmsd stops cleanly
        # (the harness fails a stop that does not exit 0).


class RestartProxyDownTest(_RealProxyCase):

    def test_connected_store_survives_restart_with_proxy_down(self):
        server = self.start_server(args=self.kmsd_args("--xks-timeout", "2000"))
        kms = h.kms_client(server)
        cks = real_store(kms, "restarting")
        md = kms.create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=cks,
                            XksKeyId=self.KEY)["KeyMetadata"]
        key = md["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"made before the restart",
                           EncryptionContext={"c": "1"})["CiphertextBlob"]

        server.stop()
        self.proxy.stop()
        try:
            server.start()
            kms = h.kms_client(server)
            # CONNECTED at once and for good: the restart's health check
            # fails (logged) and changes nothing, as a periodic one would.
            entry = kms.describe_custom_key_stores(CustomKeyStoreId=cks)["CustomKeyStores"][0]
            self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
            lines = wait_log(server, r"custom key store %s: health check failed "
                                     r"\(XKS_PROXY_NOT_REACHABLE\)" % cks)
            self.assertTrue(lines, "no failed health check logged for %s" % cks)
            entry = kms.describe_custom_key_stores(CustomKeyStoreId=cks)["CustomKeyStores"][0]
            self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
            self.assertNotIn("ConnectionErrorCode", entry)
            self.assertEqual(kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"], "Enabled")
            # Crypto meets the unreachable proxy itself.
            err = self.assertKmsError("KMSInvalidStateException", kms.encrypt, KeyId=key,
                                      Plaintext=b"while the proxy is down")
            self.assertIn(md["Arn"], err["Message"])
            self.assertIn("cannot reach", err["Message"])
            self.assertIn("XKS_PROXY_NOT_REACHABLE", err["Message"])
            self.assertKmsError("KMSInvalidStateException", kms.decrypt, CiphertextBlob=blob,
                                EncryptionContext={"c": "1"})
        finally:
            if self.proxy.proc.poll() is not None:
                self.restart_proxy()
        # The proxy is back: the same connection serves, no Connect needed.
        self.assertEqual(kms.decrypt(CiphertextBlob=blob, EncryptionContext={"c": "1"})
                         ["Plaintext"], b"made before the restart")
        out = kms.encrypt(KeyId=key, Plaintext=b"after the proxy came back")
        self.assertEqual(kms.decrypt(CiphertextBlob=out["CiphertextBlob"])["Plaintext"],
                         b"after the proxy came back")
        with open(server.log_path, errors="replace") as f:
            log = f.read()
        self.assertNotIn("ConnectCustomKeyStore", log.split("=== start 2")[1])
        self.assertNotIn("%s: CONNECTED -> CONNECTING" % cks, log)
        self.assertNotIn(x.SECRET_1, log)


class RestartConnectingTest(h.KmsdBaseTestCase):
    """A store the previous run left CONNECTING is connected for real at the
    next start: with its proxy down it ends FAILED, as any connect would."""

    HOST = "xks.example.com"
    PATH = "/connecting/kms/xks/v1"

    def test_connecting_store_connects_again(self):
        tmp = tempfile.mkdtemp(prefix="xks-conn-")
        self.addCleanup(shutil.rmtree, tmp, True)
        certs = xks_certs.make_certs(os.path.join(tmp, "certs"), hostname=self.HOST)
        self.addCleanup(certs.cleanup)
        proxy = StandIn(cert=certs.good, uri_path=self.PATH)
        self.addCleanup(proxy.stop)
        server = self.start_server(args=["--xks-ca-bundle", certs.ca, "--xks-timeout", "5000",
                                         "--xks-connect-to", proxy.connect_to(self.HOST)])
        kms = h.kms_client(server)
        cks = kms.create_custom_key_store(
            CustomKeyStoreName="connecting", CustomKeyStoreType="EXTERNAL_KEY_STORE",
            XksProxyUriEndpoint="https://" + self.HOST, XksProxyUriPath=self.PATH,
            XksProxyConnectivity="PUBLIC_ENDPOINT",
            XksProxyAuthenticationCredential={"AccessKeyId": DEFAULT_ACCESS_KEY_ID,
                                              "RawSecretAccessKey": DEFAULT_SECRET}
        )["CustomKeyStoreId"]
        # The connect's GetHealthStatus hangs; kmsd dies meanwhile.
        proxy.set_delay(30, ops={"health"})
        kms.connect_custom_key_store(CustomKeyStoreId=cks)
        deadline = time.monotonic() + 10
        while not proxy.requests("health") and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertTrue(proxy.requests("health"), "the connect never asked the proxy")
        self.assertEqual(kms.describe_custom_key_stores(CustomKeyStoreId=cks)
                         ["CustomKeyStores"][0]["ConnectionState"], "CONNECTING")
        server.kill()
        proxy.stop()
        server.start()
        kms = h.kms_client(server)
        entry = wait_state(kms, cks)
        self.assertEqual(entry["ConnectionState"], "FAILED", entry)
        self.assertEqual(entry["ConnectionErrorCode"], "XKS_PROXY_NOT_REACHABLE")


class _ManyPathStandIn(StandIn):
    """The stand-in serving every URI path /fleetNNN/kms/xks/v1 as its own
    (the real proxy serves one path per key store it is configured with)."""

    FLEET = re.compile(r"^(/fleet\d{3})(/kms/xks/v1/.*)$")

    def _route(self, path):
        m = self.FLEET.match(path)
        if not m:
            return None, None
        return super()._route(self.uri_path + m.group(2)[len("/kms/xks/v1"):])


class HealthSweepManyStoresTest(h.KmsdBaseTestCase):

    HOST = "xks.example.com"
    STORES = 110  # more than the 100 per round an earlier kmsd checked

    def test_every_connected_store_is_checked(self):
        tmp = tempfile.mkdtemp(prefix="xks-fleet-")
        self.addCleanup(shutil.rmtree, tmp, True)
        certs = xks_certs.make_certs(os.path.join(tmp, "certs"), hostname=self.HOST)
        self.addCleanup(certs.cleanup)
        proxy = _ManyPathStandIn(cert=certs.good, uri_path="/kms/xks/v1")
        self.addCleanup(proxy.stop)
        server = self.start_server(args=[
            "--xks-ca-bundle", certs.ca, "--xks-connect-to", proxy.connect_to(self.HOST),
            "--max-custom-key-stores", str(self.STORES), "--xks-timeout", "3000",
            "--xks-health-interval", "2000"])
        kms = h.kms_client(server)
        paths = {}
        for i in range(self.STORES):
            path = "/fleet%03d/kms/xks/v1" % i
            cks = kms.create_custom_key_store(
                CustomKeyStoreName="fleet-%03d" % i, CustomKeyStoreType="EXTERNAL_KEY_STORE",
                XksProxyUriEndpoint="https://" + self.HOST, XksProxyUriPath=path,
                XksProxyConnectivity="PUBLIC_ENDPOINT",
                XksProxyAuthenticationCredential={"AccessKeyId": DEFAULT_ACCESS_KEY_ID,
                                                  "RawSecretAccessKey": DEFAULT_SECRET}
            )["CustomKeyStoreId"]
            paths[path] = cks
            kms.connect_custom_key_store(CustomKeyStoreId=cks)
        for cks in paths.values():
            self.assertEqual(wait_state(kms, cks)["ConnectionState"], "CONNECTED")
        # Rounds come every --xks-health-interval; an earlier kmsd checked
        # the same 100 stores each round and never the others.
        proxy.clear_requests()

        def checked():
            return {r.path[:-len("/health")] for r in proxy.requests("health")
                    if r.request_metadata and
                    r.request_metadata.get("kmsOperation") == "KmsHealthCheck"}

        deadline = time.monotonic() + 60
        while len(checked()) < self.STORES and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(checked(), set(paths), "stores not health-checked: %s" %
                         sorted(set(paths) - checked()))
        # Each check is logged at debug level only when healthy; none failed.
        self.assertEqual(wait_log(server, r"health check failed", timeout=0), [])

if __name__ == "__main__":
    unittest.main()
