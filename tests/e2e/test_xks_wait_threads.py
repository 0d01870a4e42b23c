"""Requests that wait on an external key store proxy leave the HTTP event
threads free.

kmsd's HTTP server keeps each connection on the event thread that accepted
it (libmicrohttpd), and one event thread serves many connections.  A request
that would wait on an XKS proxy is stopped before it does (KERR_WOULD_BLOCK,
before it changed anything), its connection suspended, and the whole
request run again on one of the --wait-threads threads; the event thread
goes on serving its other connections.  Here kmsd runs with ONE event
thread, so that every connection shares it, and the stand-in proxy
(xks_standin.py) answers seconds late:

* a kept-alive connection doing Encrypt, Decrypt, GenerateDataKey and
  CreateKey on AWS_KMS keys is served while several calls on an external
  key's proxy wait - the head-of-line blocking this removes - and while a
  DisconnectCustomKeyStore waits for such a call to end;
* each rerun request writes exactly one request log line, under the request
  id its reply carries, and its latency covers the wait;
* with --wait-queue 1 and --wait-threads 1, a third proxy call while one runs
  and one waits is ThrottlingException, answered at once, with its own log
  line;
* with --xks-connections 2, five slow calls on one store's key: never more
  than two at the proxy, the others queued in kmsd (a store's requests take
  at most that many waiting threads), all five answered; and on a kept-alive
  connection, after a call on the external key, a call on an AWS_KMS key;
  a bad --xks-connections value exits 2;
* SIGTERM while calls wait on a slow proxy: kmsd exits 0 once its grace
  period and the call then at the proxy are over; the calls that had not
  started are answered KMSInternalException without reaching the proxy, and
  every client gets an answer or a closed connection.

Assertions are about which call completes first (proxy delays of seconds
against local calls of milliseconds), never about how long a call takes."""
import base64
import os
import re
import socket
import subprocess
import tempfile
import time
import unittest

import kmsd_harness as h
import xks_certs
from xks_fixture import b64
from xks_standin import DEFAULT_ACCESS_KEY_ID, DEFAULT_KEY_ID, DEFAULT_SECRET, StandIn

HOST = "xks.example.com"
ENDPOINT = "https://" + HOST
SLOW = 3.0
XKS_TIMEOUT_MS = 15000
# Proxy calls in flight at once: fewer than the XKS client's 8 handles, so
# all of them are at the proxy together.
SLOW_CALLS = 4


def request_lines(log_path, request_id):
    """The request log lines (method principal= op= ... status=) of one
    request id."""
    with open(log_path, errors="replace") as f:
        return [line for line in f
                if request_id in line and " principal=" in line and " status=" in line]


class ProxyFixture:
    """A stand-in proxy with its certificates, and helpers that make a
    CONNECTED external key store with one KMS key in it."""

    def __init__(self, tmp):
        self.certs = xks_certs.make_certs(os.path.join(tmp, "certs"), hostname=HOST)
        self.proxy = StandIn(cert=self.certs.good)

    def kmsd_args(self):
        return ["--xks-ca-bundle", self.certs.ca,
                "--xks-connect-to", self.proxy.connect_to(HOST),
                "--xks-timeout", str(XKS_TIMEOUT_MS)]

    def stop(self):
        self.proxy.stop()
        self.certs.cleanup()

    def connected_key(self, test, kms, name):
        """(store id, KMS key id) of a CONNECTED store at /<name>/kms/xks/v1."""
        path = "/%s/kms/xks/v1" % name
        self.proxy.uri_path = path
        cks = kms.create_custom_key_store(
            CustomKeyStoreName=name, CustomKeyStoreType="EXTERNAL_KEY_STORE",
            XksProxyUriEndpoint=ENDPOINT, XksProxyUriPath=path,
            XksProxyConnectivity="PUBLIC_ENDPOINT",
            XksProxyAuthenticationCredential={"AccessKeyId": DEFAULT_ACCESS_KEY_ID,
                                              "RawSecretAccessKey": DEFAULT_SECRET}
        )["CustomKeyStoreId"]
        kms.connect_custom_key_store(CustomKeyStoreId=cks)
        deadline = time.monotonic() + 30
        while True:
            state = kms.describe_custom_key_stores(
                CustomKeyStoreId=cks)["CustomKeyStores"][0]["ConnectionState"]
            if state in ("CONNECTED", "FAILED"):
                break
            if time.monotonic() > deadline:
                test.fail("store %s stayed %s" % (cks, state))
            time.sleep(0.05)
        test.assertEqual(state, "CONNECTED")
        key = kms.create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=cks,
                             XksKeyId=DEFAULT_KEY_ID)["KeyMetadata"]["KeyId"]
        return cks, key


def wait_for(test, what, predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            test.fail("waited %ds for %s" % (timeout, what))
        time.sleep(0.01)


def slow_encrypt(server, key, i):
    """An Encrypt on the external key over a connection of its own: a Call
    (not started) whose result is (status, request id, parsed body)."""
    def fn():
        status, headers, body = h.kms_call(server, "Encrypt",
                                           {"KeyId": key, "Plaintext": b64(b"slow-%d" % i)})
        return status, headers.get("x-amzn-RequestId"), body
    return h.BackgroundCall(fn)


class OneEventThreadTest(h.KmsdBaseTestCase):
    """kmsd with --threads 1: every connection is on the same event thread."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="xks-wait-")
        cls.fx = ProxyFixture(cls.tmp)
        cls.server = h.KmsdServer(args=cls.fx.kmsd_args() + ["--threads", "1"])
        try:
            cls.server.start()
            cls.kms = h.kms_client(cls.server)
        except Exception:
            cls.fx.stop()
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.fx.stop()
        cls.server.cleanup()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.fx.proxy.reset()

    def test_kept_alive_connection_served_while_proxy_calls_wait(self):
        cks, xks_key = self.fx.connected_key(self, self.kms, "hol")
        self.addCleanup(self.kms.disconnect_custom_key_store, CustomKeyStoreId=cks)
        local = self.kms.create_key()["KeyMetadata"]["KeyId"]
        # One kept-alive connection, used before, during and after.
        conn = self.server.connection(60)
        self.addCleanup(conn.close)
        status, _, first = h.kms_call(self.server, "Encrypt",
                                      {"KeyId": local, "Plaintext": b64(b"before")}, conn=conn)
        self.assertEqual(status, 200, first)

        self.fx.proxy.clear_requests()
        self.fx.proxy.set_delay(SLOW, ops={"encrypt"})
        slow = [slow_encrypt(self.server, xks_key, i) for i in range(SLOW_CALLS)]
        for c in slow:
            c.start()
        wait_for(self, "every slow Encrypt at the proxy",
                 lambda: len(self.fx.proxy.requests("encrypt")) >= SLOW_CALLS)

        # The one event thread serves the kept-alive connection meanwhile.
        status, _, enc = h.kms_call(self.server, "Encrypt",
                                    {"KeyId": local, "Plaintext": b64(b"meanwhile")}, conn=conn)
        self.assertEqual(status, 200, enc)
        status, _, dec = h.kms_call(self.server, "Decrypt",
                                    {"CiphertextBlob": enc["CiphertextBlob"]}, conn=conn)
        self.assertEqual(status, 200, dec)
        self.assertEqual(base64.b64decode(dec["Plaintext"]), b"meanwhile")
        status, _, gdk = h.kms_call(self.server, "GenerateDataKey",
                                    {"KeyId": local, "KeySpec": "AES_256"}, conn=conn)
        self.assertEqual(status, 200, gdk)
        status, _, created = h.kms_call(self.server, "CreateKey", {}, conn=conn)
        self.assertEqual(status, 200, created)
        local_done = time.monotonic()
        still_waiting = [c for c in slow if c.is_alive()]
        self.assertEqual(len(still_waiting), SLOW_CALLS,
                         "proxy calls ended before the local ones; nothing was shown")

        for c in slow:
            c.join(60)
            self.assertIsNone(c.error)
            self.assertLess(local_done, c.done_at)
        self.fx.proxy.set_delay(0)
        for i, c in enumerate(slow):
            status, request_id, body = c.result
            self.assertEqual(status, 200, body)
            out = self.kms.decrypt(CiphertextBlob=base64.b64decode(body["CiphertextBlob"]))
            self.assertEqual(out["Plaintext"], b"slow-%d" % i)
            # One request log line, under the id the reply carried, whose
            # latency covers the proxy's delay (the first pass included).
            lines = request_lines(self.server.log_path, request_id)
            self.assertEqual(len(lines), 1, lines)
            self.assertIn("op=Encrypt outcome=OK status=200", lines[0])
            latency_us = int(re.search(r"latency_us=(\d+)", lines[0]).group(1))
            self.assertGreaterEqual(latency_us, SLOW * 1e6 * 0.9)
        # The kept-alive connection still works, for a call on the
        # external key too.
        status, _, enc = h.kms_call(self.server, "Encrypt",
                                    {"KeyId": xks_key, "Plaintext": b64(b"after")}, conn=conn)
        self.assertEqual(status, 200, enc)

    def test_disconnect_waiting_for_a_call_leaves_the_event_thread(self):
        # DisconnectCustomKeyStore waits for the store's calls in flight
        # before it closes the connection: on a waiting thread too.
        cks, xks_key = self.fx.connected_key(self, self.kms, "disconnect")
        local = self.kms.create_key()["KeyMetadata"]["KeyId"]
        conn = self.server.connection(60)
        self.addCleanup(conn.close)
        self.fx.proxy.clear_requests()
        self.fx.proxy.set_delay(SLOW, ops={"encrypt"})
        slow = slow_encrypt(self.server, xks_key, 0)
        slow.start()
        wait_for(self, "the Encrypt at the proxy",
                 lambda: len(self.fx.proxy.requests("encrypt")) >= 1)
        other = h.kms_client(self.server)
        disconnect = h.BackgroundCall(lambda: other.disconnect_custom_key_store(CustomKeyStoreId=cks))
        disconnect.start()
        wait_for(self, "the store DISCONNECTING",
                 lambda: self.kms.describe_custom_key_stores(CustomKeyStoreId=cks)
                 ["CustomKeyStores"][0]["ConnectionState"] == "DISCONNECTING")
        status, _, body = h.kms_call(self.server, "Encrypt",
                                     {"KeyId": local, "Plaintext": b64(b"meanwhile")}, conn=conn)
        self.assertEqual(status, 200, body)
        local_done = time.monotonic()
        self.assertTrue(disconnect.is_alive() and slow.is_alive(),
                        "the disconnect ended before the local call; nothing was shown")
        for c in (slow, disconnect):
            c.join(60)
            self.assertIsNone(c.error)
            self.assertLess(local_done, c.done_at)
        self.assertEqual(slow.result[0], 200, slow.result)
        self.assertLessEqual(slow.done_at, disconnect.done_at + 0.5)
        self.assertEqual(self.kms.describe_custom_key_stores(CustomKeyStoreId=cks)
                         ["CustomKeyStores"][0]["ConnectionState"], "DISCONNECTED")

    def test_each_operation_logs_one_line_under_its_request_id(self):
        cks, xks_key = self.fx.connected_key(self, self.kms, "one-line")
        self.addCleanup(self.kms.disconnect_custom_key_store, CustomKeyStoreId=cks)
        conn = self.server.connection(60)
        self.addCleanup(conn.close)
        blob = self.kms.encrypt(KeyId=xks_key, Plaintext=b"x")["CiphertextBlob"]
        calls = [
            ("Encrypt", {"KeyId": xks_key, "Plaintext": b64(b"x")}, 200),
            ("Decrypt", {"CiphertextBlob": b64(blob)}, 200),
            ("ReEncrypt", {"CiphertextBlob": b64(blob), "DestinationKeyId": xks_key}, 200),
            ("GenerateDataKey", {"KeyId": xks_key, "NumberOfBytes": 16}, 200),
            ("GenerateDataKeyWithoutPlaintext", {"KeyId": xks_key, "KeySpec": "AES_128"}, 200),
            # An error from the rerun: the proxy does not know the key.
            ("CreateKey", {"Origin": "EXTERNAL_KEY_STORE", "CustomKeyStoreId": cks,
                           "XksKeyId": "no-such-key"}, 400),
            # Answered on the event thread, before any proxy call.
            ("Encrypt", {"KeyId": xks_key, "Plaintext": b64(b"x"), "DryRun": True}, 412),
        ]
        for op, params, want in calls:
            status, headers, body = h.kms_call(self.server, op, params, conn=conn)
            self.assertEqual(status, want, (op, body))
            request_id = headers.get("x-amzn-RequestId")
            lines = request_lines(self.server.log_path, request_id)
            self.assertEqual(len(lines), 1, (op, lines))
            self.assertIn("op=%s " % op, lines[0])
            self.assertIn("status=%d " % want, lines[0])


class FullQueueTest(h.KmsdBaseTestCase):
    """--wait-threads 1 --wait-queue 1: one proxy call runs, one waits, and
    the next is ThrottlingException."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="xks-wait-full-")
        cls.fx = ProxyFixture(cls.tmp)
        cls.server = h.KmsdServer(args=cls.fx.kmsd_args() + [
            "--threads", "1", "--wait-threads", "1", "--wait-queue", "1"])
        try:
            cls.server.start()
            cls.kms = h.kms_client(cls.server)
        except Exception:
            cls.fx.stop()
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.fx.stop()
        cls.server.cleanup()
        super().tearDownClass()

    def test_third_waiting_call_is_throttled(self):
        cks, xks_key = self.fx.connected_key(self, self.kms, "full")
        self.addCleanup(self.kms.disconnect_custom_key_store, CustomKeyStoreId=cks)
        self.fx.proxy.clear_requests()
        self.fx.proxy.set_delay(SLOW, ops={"encrypt"})
        running = slow_encrypt(self.server, xks_key, 0)
        running.start()
        wait_for(self, "the first Encrypt at the proxy",
                 lambda: len(self.fx.proxy.requests("encrypt")) >= 1)
        queued = slow_encrypt(self.server, xks_key, 1)
        queued.start()
        # The queued one never reaches the proxy while the first runs, so
        # there is nothing to wait on but a moment for it to be queued.
        time.sleep(0.5)
        status, headers, body = h.kms_call(self.server, "Encrypt",
                                           {"KeyId": xks_key, "Plaintext": b64(b"third")})
        refused_at = time.monotonic()
        self.assertEqual(status, 400, body)
        self.assertEqual(h.error_type(body), "ThrottlingException")
        self.assertIn("Rate exceeded", h.error_message(body))
        self.assertTrue(running.is_alive() and queued.is_alive(),
                        "the throttled call waited for the others")
        lines = request_lines(self.server.log_path, headers.get("x-amzn-RequestId"))
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("outcome=ThrottlingException status=400", lines[0])
        # The proxy never saw it; the two others complete, in order.
        for c in (running, queued):
            c.join(60)
            self.assertIsNone(c.error)
            self.assertEqual(c.result[0], 200, c.result)
            self.assertLess(refused_at, c.done_at)
        self.assertLess(running.done_at, queued.done_at)
        self.assertEqual(len(self.fx.proxy.requests("encrypt")), 2)
        # AWS_KMS keys never wait for a place.
        local = self.kms.create_key()["KeyMetadata"]["KeyId"]
        self.kms.encrypt(KeyId=local, Plaintext=b"local")
        # boto3 retries ThrottlingException on its own; with room again the
        # same call goes through.
        self.fx.proxy.set_delay(0)
        self.kms.encrypt(KeyId=xks_key, Plaintext=b"later")


class ConnectionsPerStoreTest(h.KmsdBaseTestCase):
    """--xks-connections 2: a store takes two calls at once."""

    CALLS = 5
    DELAY = 1.0

    def test_a_store_runs_as_many_calls_as_its_connections(self):
        tmp = tempfile.mkdtemp(prefix="xks-wait-conns-")
        fx = ProxyFixture(tmp)
        self.addCleanup(fx.stop)
        server = h.KmsdServer(args=fx.kmsd_args() + ["--threads", "1", "--xks-connections", "2"])
        self.addCleanup(server.cleanup)
        server.start()
        kms = h.kms_client(server)
        cks, xks_key = fx.connected_key(self, kms, "conns")
        self.addCleanup(kms.disconnect_custom_key_store, CustomKeyStoreId=cks)
        fx.proxy.clear_requests()
        fx.proxy.set_delay(self.DELAY, ops={"encrypt"})
        calls = [slow_encrypt(server, xks_key, i) for i in range(self.CALLS)]
        for c in calls:
            c.start()
        most = 0
        while any(c.is_alive() for c in calls):
            at_proxy = [r for r in fx.proxy.requests("encrypt") if r.status is None and not r.closed]
            most = max(most, len(at_proxy))
            time.sleep(0.02)
        self.assertEqual(most, 2, "calls at the proxy at once")
        for i, c in enumerate(calls):
            self.assertIsNone(c.error)
            status, _, body = c.result
            self.assertEqual(status, 200, body)
            fx.proxy.set_delay(0)
            out = kms.decrypt(CiphertextBlob=base64.b64decode(body["CiphertextBlob"]))
            self.assertEqual(out["Plaintext"], b"slow-%d" % i)
        # A connection whose last call waited on the proxy is sent straight
        # to a waiting thread; a call on an AWS_KMS key there is answered
        # as well.
        local = kms.create_key()["KeyMetadata"]["KeyId"]
        conn = server.connection(30)
        self.addCleanup(conn.close)
        for key, text in ((xks_key, b"x1"), (xks_key, b"x2"), (local, b"l1"), (local, b"l2")):
            status, _, enc = h.kms_call(server, "Encrypt", {"KeyId": key, "Plaintext": b64(text)},
                                        conn=conn)
            self.assertEqual(status, 200, enc)
            self.assertEqual(kms.decrypt(CiphertextBlob=base64.b64decode(
                enc["CiphertextBlob"]))["Plaintext"], text)

    def test_bad_value_exits_2(self):
        for value in ("0", "65", "two"):
            with self.subTest(value):
                proc = subprocess.run([h.find_kmsd_binary(), "--xks-connections", value],
                                      capture_output=True, text=True, timeout=30,
                                      stdin=subprocess.DEVNULL)
                self.assertEqual(proc.returncode, 2, proc.stderr)
                self.assertIn("--xks-connections must be a whole number from 1 to 64", proc.stderr)


class ShutdownTest(h.KmsdBaseTestCase):
    """SIGTERM while calls wait on a slow proxy.

    One waiting thread, four calls, a proxy that takes STOP_DELAY: at
    SIGTERM the first call runs at the proxy and three wait for the thread.
    kmsd's grace period is 10 s (SHUTDOWN_GRACE_MS); the pool is stopped at
    its last second.  By then the first call has been answered and the
    second is at the proxy (it started when the first ended and ends after
    the stop): it is waited for, and its answer goes out or its connection
    is closed.  The last two never started: they are answered at once
    with KMSInternalException, and the proxy never sees them."""

    STOP_DELAY = 6.0
    GRACE = 10.0

    def test_sigterm_with_calls_waiting_on_the_proxy(self):
        tmp = tempfile.mkdtemp(prefix="xks-wait-stop-")
        fx = ProxyFixture(tmp)
        self.addCleanup(fx.stop)
        server = h.KmsdServer(args=fx.kmsd_args() + ["--threads", "1", "--wait-threads", "1"])
        self.addCleanup(server.cleanup)
        server.start()
        kms = h.kms_client(server)
        _, xks_key = fx.connected_key(self, kms, "stop")
        fx.proxy.clear_requests()
        fx.proxy.set_delay(self.STOP_DELAY, ops={"encrypt"})
        calls = [slow_encrypt(server, xks_key, i) for i in range(4)]
        for c in calls:
            c.start()
        wait_for(self, "the first Encrypt at the proxy",
                 lambda: len(fx.proxy.requests("encrypt")) >= 1)
        time.sleep(0.5)  # the three others queued behind it
        # An idle kept-alive connection too: not waited for.
        idle = server.connection(60)
        self.addCleanup(idle.close)
        status, _, _ = h.kms_call(server, "ListKeys", {}, conn=idle)
        self.assertEqual(status, 200)

        stopped_at = time.monotonic()
        rc = server.stop(timeout=60)  # SIGTERM
        exited_after = time.monotonic() - stopped_at
        self.assertEqual(rc, 0, server.describe())
        # Within the grace period, plus the call running at its end.
        self.assertLess(exited_after, self.GRACE + self.STOP_DELAY + 3)
        ok, refused, closed = 0, 0, 0
        for c in calls:
            c.join(30)
            self.assertFalse(c.is_alive())
            if c.error is not None:
                # A closed connection, never a hang or a garbled reply.
                self.assertIsInstance(c.error, (ConnectionError, socket.error,
                                                h.http.client.HTTPException), repr(c.error))
                closed += 1
                continue
            status, request_id, body = c.result
            if status == 200:
                ok += 1
            else:
                self.assertEqual(status, 500, body)
                self.assertEqual(h.error_type(body), "KMSInternalException")
                self.assertIn("shutting down", h.error_message(body))
                refused += 1
            lines = request_lines(server.log_path, request_id)
            self.assertEqual(len(lines), 1, lines)
        self.assertEqual(refused, 2, (ok, refused, closed))
        self.assertGreaterEqual(ok, 1)
        self.assertEqual(ok + closed, 2)
        self.assertEqual(len(fx.proxy.requests("encrypt")), 2)
        with open(server.log_path, errors="replace") as f:
            log = f.read()
        self.assertNotIn("AddressSanitizer", log)
        self.assertNotIn("runtime error", log)
        self.assertNotIn("suspended connections", log)


if __name__ == "__main__":
    unittest.main()
