"""test_xks_standin - the misbehaving XKS proxy (xks_standin.StandIn) and the
certificates (xks_certs) checked on their own, before kmsd's tests rely on
them: requests are signed with botocore (and curl --aws-sigv4) and sent with
http.client over CA-verified TLS, so each knob is seen doing what it says
from a client's side of the wire.
"""

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
import unittest
import warnings

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import xks_certs
from xks_fixture import SERVER_NAME, XksClient, cdiv, curl, meta, tls_context, unb64
from xks_standin import (DEFAULT_ACCESS_KEY_ID, DEFAULT_KEY_ID, DEFAULT_SECRET, StandIn,
                         StandInKey)

NEW_AKID = "AKIASTANDINROTATED33"
NEW_SECRET = "cm90YXRlZC1zZWNyZXQtZm9yLXRoZS1zdGFuZC1pbi1wcm94eQ=="


class StandInCase(unittest.TestCase):
    """One stand-in over TLS for the class; every test starts from reset()."""

    @classmethod
    def setUpClass(cls):
        cls.certs = xks_certs.make_certs(hostname=SERVER_NAME)
        cls.proxy = StandIn(cert=cls.certs.good)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.certs.cleanup()

    def setUp(self):
        self.proxy.reset()
        self.client = self.client_for()

    def client_for(self, akid=DEFAULT_ACCESS_KEY_ID, secret=DEFAULT_SECRET, **kw):
        return XksClient(self.proxy.port, self.proxy.uri_path, ca=self.certs.ca, akid=akid,
                         secret=secret, **kw)

    def assertError(self, reply, status, name):
        self.assertEqual((reply.status, reply.error), (status, name), reply)


class SigV4Test(StandInCase):
    def test_signed_health_is_served_and_recorded(self):
        r = self.client.health(rid="rid-health-1")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["xksProxyFleetSize"], 1)
        self.assertEqual([e["healthStatus"] for e in r.json["ekmFleetDetails"]], ["ACTIVE"] * 2)
        [rec] = self.proxy.requests()
        self.assertEqual((rec.op, rec.method, rec.status), ("health", "POST", 200))
        self.assertTrue(rec.authenticated)
        self.assertEqual(rec.access_key_id, DEFAULT_ACCESS_KEY_ID)
        self.assertEqual(rec.request_metadata,
                         {"kmsRequestId": "rid-health-1", "kmsOperation": "KmsHealthCheck"})
        self.assertEqual(rec.headers["host"], "%s:%d" % (SERVER_NAME, self.proxy.port))
        self.assertIn(rec.tls_version, ("TLSv1.2", "TLSv1.3"))

    def test_curl_signature_is_accepted(self):
        # curl signs content-type;host;x-amz-date: another signer, same verifier.
        r = curl(self.proxy.port, self.proxy.uri_path + "/health",
                 {"requestMetadata": {"kmsRequestId": "c1", "kmsOperation": "KmsHealthCheck"}},
                 self.certs.ca, akid=DEFAULT_ACCESS_KEY_ID, secret=DEFAULT_SECRET)
        self.assertEqual(r.status, 200, (r, r.curl_stderr))
        self.assertTrue(self.proxy.requests()[0].authenticated)

    def test_libcurl_connect_to_as_kmsd_uses_it(self):
        # kmsd reaches https://<host> (port 443, so Host has no port) through
        # curl's connect-to; the stand-in verifies the Host as sent.
        self.assertIsNotNone(shutil.which("curl"), "curl is missing (scripts/install-deps.sh installs it)")
        body = json.dumps({"requestMetadata": {"kmsRequestId": "c2", "kmsOperation": "KmsHealthCheck"}})
        p = subprocess.run(
            ["curl", "-sS", "--max-time", "20", "--aws-sigv4", "aws:amz:us-east-1:kms-xks-proxy",
             "--user", "%s:%s" % (DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET), "--cacert", self.certs.ca,
             "--connect-to", self.proxy.connect_to(SERVER_NAME), "-H", "Content-Type: application/json",
             "--data-binary", body, "-o", "-", "-w", "\n%{http_code}",
             "https://%s%s/health" % (SERVER_NAME, self.proxy.uri_path)],
            capture_output=True, text=True, timeout=30)
        self.assertTrue(p.stdout.endswith("\n200"), (p.stdout, p.stderr))
        rec = self.proxy.requests()[0]
        self.assertEqual(rec.headers["host"], SERVER_NAME)
        self.assertTrue(rec.authenticated)

    def test_wrong_signatures_are_401(self):
        cases = {
            "wrong secret": dict(secret=NEW_SECRET),
            "unknown access key": dict(akid=NEW_AKID),
            "six minutes old": dict(skew=-360),
            "six minutes ahead": dict(skew=360),
            "other region": dict(region="eu-west-1"),
            "other service": dict(service="kms"),
        }
        for what, args in cases.items():
            with self.subTest(what):
                self.proxy.clear_requests()
                r = self.client.health(**args)
                self.assertError(r, 401, "AuthenticationFailedException")
                self.assertFalse(self.proxy.requests()[0].authenticated)

    def test_body_changed_after_signing_is_401(self):
        body = json.dumps({"requestMetadata": {"kmsRequestId": "a", "kmsOperation": "KmsHealthCheck"}})
        hdrs = self.client.sign("POST", self.proxy.uri_path + "/health", body.encode())
        conn = self.client.connect()
        try:
            conn.request("POST", self.proxy.uri_path + "/health", body=body.replace('"a"', '"b"'),
                         headers=hdrs)
            resp = conn.getresponse()
            self.assertEqual(resp.status, 401)
            self.assertEqual(json.loads(resp.read())["errorName"], "AuthenticationFailedException")
        finally:
            conn.close()

    def test_unsigned_is_401(self):
        r = self.client.raw("POST", self.proxy.uri_path + "/health",
                            {"requestMetadata": {"kmsRequestId": "x", "kmsOperation": "K"}},
                            signed=False)
        self.assertError(r, 401, "AuthenticationFailedException")

    def test_credential_rotation(self):
        self.proxy.set_credentials({NEW_AKID: NEW_SECRET})
        self.assertError(self.client.health(), 401, "AuthenticationFailedException")
        self.assertEqual(self.client_for(NEW_AKID, NEW_SECRET).health().status, 200)
        self.proxy.set_credentials({NEW_AKID: NEW_SECRET, DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET})
        self.assertEqual(self.client.health().status, 200)


class OperationsTest(StandInCase):
    def test_encrypt_decrypt_round_trip_with_aad_metadata_and_cdiv(self):
        aad = b"kms-context"
        m = meta("Encrypt", rid="rid-enc", via="ebs")
        enc = self.client.encrypt(DEFAULT_KEY_ID, b"secret data", aad=aad, cdiv=True, m=m)
        self.assertEqual(enc.status, 200, enc)
        j = enc.json
        ct, iv, tag = unb64(j["ciphertext"]), unb64(j["initializationVector"]), unb64(j["authenticationTag"])
        md = unb64(j["ciphertextMetadata"])
        self.assertEqual((len(ct), len(iv), len(tag)), (11, 12, 16))
        self.assertEqual(md, b"standin:1")
        self.assertEqual(j["ciphertextDataIntegrityValue"], cdiv(aad, iv, ct, tag, md))
        # The spec's AAD layout, computed here: len16(AAD) AAD len8(md) md.
        material = self.proxy.keys[DEFAULT_KEY_ID].material
        layout = len(aad).to_bytes(2, "big") + aad + bytes([len(md)]) + md
        self.assertEqual(AESGCM(material).decrypt(iv, ct + tag, layout), b"secret data")
        dec = self.client.decrypt_reply(DEFAULT_KEY_ID, enc, aad=aad)
        self.assertEqual(dec.status, 200, dec)
        self.assertEqual(unb64(dec.json["plaintext"]), b"secret data")
        # requestMetadata as sent is on record.
        rec = self.proxy.requests("encrypt")[0]
        self.assertEqual(rec.request_metadata, m)
        self.assertEqual(rec.key_id, DEFAULT_KEY_ID)

    def test_tampering_is_invalid_ciphertext(self):
        enc = self.client.encrypt(DEFAULT_KEY_ID, b"payload", aad=b"ctx")
        j = enc.json
        ct, iv, tag = unb64(j["ciphertext"]), unb64(j["initializationVector"]), unb64(j["authenticationTag"])
        md = unb64(j["ciphertextMetadata"])
        cases = {
            "other metadata": dict(aad=b"ctx", ct_metadata=b"standin:2"),
            "metadata left out": dict(aad=b"ctx"),
            "other aad": dict(aad=b"ctz", ct_metadata=md),
            "no aad": dict(ct_metadata=md),
        }
        for what, args in cases.items():
            with self.subTest(what):
                r = self.client.decrypt(DEFAULT_KEY_ID, ct, iv, tag, **args)
                self.assertError(r, 400, "InvalidCiphertextException")
        r = self.client.decrypt(DEFAULT_KEY_ID, ct, iv, bytes(16), aad=b"ctx", ct_metadata=md)
        self.assertError(r, 400, "InvalidCiphertextException")

    def test_no_ciphertext_metadata_when_set_to_none(self):
        self.proxy.ciphertext_metadata = None
        enc = self.client.encrypt(DEFAULT_KEY_ID, b"x", cdiv=True)
        self.assertNotIn("ciphertextMetadata", enc.json)
        self.assertEqual(self.client.decrypt_reply(DEFAULT_KEY_ID, enc).status, 200)

    def test_metadata_and_key_states(self):
        r = self.client.metadata(DEFAULT_KEY_ID)
        self.assertEqual(r.json, {"keySpec": "AES_256", "keyUsage": ["ENCRYPT", "DECRYPT"],
                                  "keyStatus": "ENABLED"})
        self.assertError(self.client.metadata("no-such-key"), 404, "KeyNotFoundException")
        self.assertError(self.client.encrypt("no-such-key", b"x"), 404, "KeyNotFoundException")

        self.proxy.add_key("disabled", status="DISABLED")
        self.assertEqual(self.client.metadata("disabled").json["keyStatus"], "DISABLED")
        self.assertError(self.client.encrypt("disabled", b"x"), 400, "InvalidStateException")

        k = self.proxy.add_key("enc-only", usage=["ENCRYPT"])
        self.assertEqual(self.client.metadata("enc-only").json["keyUsage"], ["ENCRYPT"])
        enc = self.client.encrypt("enc-only", b"x")
        self.assertEqual(enc.status, 200)
        self.assertError(self.client.decrypt_reply("enc-only", enc), 400, "InvalidKeyUsageException")
        self.assertEqual(len(k.material), 32)

        self.proxy.add_key("rsa", spec="RSA_2048")
        self.assertEqual(self.client.metadata("rsa").json["keySpec"], "RSA_2048")
        self.assertError(self.client.encrypt("rsa", b"x"), 400, "InvalidKeyUsageException")

        self.proxy.set_key("rsa", spec="AES_256")
        self.assertEqual(self.client.encrypt("rsa", b"x").status, 200)
        self.proxy.remove_key("rsa")
        self.assertError(self.client.metadata("rsa"), 404, "KeyNotFoundException")

    def test_keys_given_at_construction_keep_their_material(self):
        material = bytes(range(32))
        with StandIn(cert=self.certs.good, keys=[StandInKey("fixed", material=material)]) as other:
            c = XksClient(other.port, other.uri_path, ca=self.certs.ca,
                          akid=DEFAULT_ACCESS_KEY_ID, secret=DEFAULT_SECRET)
            enc = c.encrypt("fixed", b"kept")
            other.restart()
            self.assertEqual(unb64(c.decrypt_reply("fixed", enc).json["plaintext"]), b"kept")

    def test_validation(self):
        r = self.client.encrypt(DEFAULT_KEY_ID, b"x", extra={"encryptionAlgorithm": "RSAES_OAEP_SHA_1"})
        self.assertError(r, 400, "ValidationException")
        r = self.client.encrypt(DEFAULT_KEY_ID, b"x", extra={"plaintext": "***"})
        self.assertError(r, 400, "ValidationException")
        r = self.client.raw("POST", self.client.key_path(DEFAULT_KEY_ID, "encrypt"), b"[1]")
        self.assertError(r, 400, "ValidationException")

    def test_paths_and_methods(self):
        r = self.client.raw("POST", "/other/kms/xks/v1/health",
                            {"requestMetadata": {"kmsRequestId": "x", "kmsOperation": "K"}})
        self.assertError(r, 404, "InvalidUriPathException")
        r = self.client.raw("POST", self.client.key_path(DEFAULT_KEY_ID, "sign"), {})
        self.assertError(r, 404, "InvalidUriPathException")
        r = self.client.raw("GET", self.proxy.uri_path + "/health")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.headers["Allow"], "POST")
        # also_serve: the API under a second path too, until reset.
        self.proxy.also_serve = ("/other/kms/xks/v1",)
        other = XksClient(self.proxy.port, "/other/kms/xks/v1", ca=self.certs.ca,
                          akid=DEFAULT_ACCESS_KEY_ID, secret=DEFAULT_SECRET)
        self.assertEqual(other.health().status, 200)
        self.assertEqual(self.client.health().status, 200)
        self.proxy.reset()
        self.assertError(other.health(), 404, "InvalidUriPathException")

    def test_keep_alive(self):
        conn = self.client.connect()
        try:
            first = self.client.health(conn=conn)
            sock = conn.sock
            second = self.client.encrypt(DEFAULT_KEY_ID, b"x", conn=conn)
            self.assertEqual((first.status, second.status), (200, 200))
            self.assertIs(conn.sock, sock)  # http.client would have reconnected
        finally:
            conn.close()


class ModesTest(StandInCase):
    def test_not_json(self):
        self.proxy.set_mode("not_json")
        r = self.client.health()
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.json)
        self.assertTrue(r.raw)

    def test_missing_field(self):
        self.proxy.set_mode("missing_field")
        self.assertNotIn("ekmFleetDetails", self.client.health().json)
        self.assertNotIn("keyStatus", self.client.metadata(DEFAULT_KEY_ID).json)
        enc = self.client.encrypt(DEFAULT_KEY_ID, b"x")
        self.assertEqual(enc.status, 200)
        self.assertNotIn("authenticationTag", enc.json)
        self.assertIn("ciphertext", enc.json)

    def test_wrong_type(self):
        self.proxy.set_mode("wrong_type")
        self.assertIsInstance(self.client.health().json["xksProxyFleetSize"], str)
        self.assertIsInstance(self.client.metadata(DEFAULT_KEY_ID).json["keyUsage"], str)
        self.assertIsInstance(self.client.encrypt(DEFAULT_KEY_ID, b"x").json["ciphertext"], int)

    def test_error_statuses(self):
        cases = [("http_500", 500, "InternalException"),
                 ("auth_fail", 401, "AuthenticationFailedException"),
                 ("access_denied", 403, "AccessDeniedException"),
                 ("uri_path_404", 404, "InvalidUriPathException")]
        for mode, status, name in cases:
            with self.subTest(mode):
                self.proxy.set_mode(mode)
                self.assertError(self.client.health(), status, name)
                self.assertError(self.client.encrypt(DEFAULT_KEY_ID, b"x"), status, name)
        self.proxy.set_mode("error", status=503, name="DependencyTimeoutException")
        self.assertError(self.client.health(), 503, "DependencyTimeoutException")

    def test_auth_fail_even_when_signed_right(self):
        self.proxy.set_mode("auth_fail")
        self.client.health()
        rec = self.proxy.requests()[0]
        self.assertTrue(rec.authenticated)
        self.assertEqual(rec.status, 401)

    def test_all_hsms_unavailable(self):
        self.proxy.set_mode("all_hsms_unavailable")
        r = self.client.health()
        self.assertEqual(r.status, 200)
        self.assertEqual({e["healthStatus"] for e in r.json["ekmFleetDetails"]}, {"UNAVAILABLE"})
        self.assertError(self.client.encrypt(DEFAULT_KEY_ID, b"x"), 500, "InternalException")
        self.proxy.set_mode("normal")
        self.proxy.set_fleet_status("ACTIVE", "DEGRADED", "UNAVAILABLE")
        r = self.client.health()
        self.assertEqual([e["healthStatus"] for e in r.json["ekmFleetDetails"]],
                         ["ACTIVE", "DEGRADED", "UNAVAILABLE"])

    def test_close_connection(self):
        self.proxy.set_mode("close_connection")
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError, ssl.SSLError)):
            self.client.health()
        [rec] = self.proxy.wait_requests(1)
        self.assertTrue(rec.closed)
        self.assertIsNone(rec.status)

    def test_bad_cdiv(self):
        self.proxy.set_mode("bad_cdiv")
        enc = self.client.encrypt(DEFAULT_KEY_ID, b"x", aad=b"a", cdiv=True)
        j = enc.json
        right = cdiv(b"a", unb64(j["initializationVector"]), unb64(j["ciphertext"]),
                     unb64(j["authenticationTag"]), unb64(j["ciphertextMetadata"]))
        self.assertNotEqual(j["ciphertextDataIntegrityValue"], right)
        self.assertEqual(self.client.decrypt_reply(DEFAULT_KEY_ID, enc, aad=b"a").status, 200)

    def test_mode_for_some_operations_only(self):
        self.proxy.set_mode("not_json", ops={"encrypt", "decrypt"})
        self.assertEqual(self.client.health().json["xksProxyFleetSize"], 1)
        self.assertIsNone(self.client.encrypt(DEFAULT_KEY_ID, b"x").json)
        with self.assertRaises(ValueError):
            self.proxy.set_mode("sulk")

    def test_delay(self):
        self.proxy.set_delay(0.4)
        t0 = time.monotonic()
        self.assertEqual(self.client.health().status, 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.4)
        # A client with KMS's 250 ms budget gives up.
        with self.assertRaises(socket.timeout):
            self.client_for(timeout=0.25).health()
        # Only for the operations named.
        self.proxy.set_delay(2, ops={"encrypt"})
        t0 = time.monotonic()
        self.assertEqual(self.client.health().status, 200)
        self.assertLess(time.monotonic() - t0, 1.5)


class TlsTest(StandInCase):
    def handshake_error(self, context=None):
        """The client's TLS error text, or None when a health call was served."""
        conn = self.client.connect(context)
        try:
            r = self.client.health(conn=conn)
            self.assertEqual(r.status, 200)
            return None
        except ssl.SSLError as e:
            return str(e)
        finally:
            conn.close()

    def test_bad_certificates_are_refused_by_a_verifying_client(self):
        expect = {"expired": "certificate has expired",
                  "not_yet_valid": "certificate is not yet valid",
                  "wrong_host": "Hostname mismatch",
                  "untrusted": "unable to get local issuer certificate",
                  "self_signed": "self-signed certificate"}
        for kind, pair in self.certs.server_kinds().items():
            with self.subTest(kind):
                self.proxy.set_tls(cert=pair)
                err = self.handshake_error()
                if kind == "good":
                    self.assertIsNone(err)
                else:
                    self.assertIsNotNone(err, kind)
                    self.assertIn(expect[kind], err)
        self.assertTrue(self.proxy.tls_failures)
        self.assertEqual([r.op for r in self.proxy.requests()], ["health"])  # the good one

    def test_expired_certificate_dates(self):
        out = subprocess.run(["openssl", "x509", "-in", self.certs.expired[0], "-noout", "-enddate"],
                             capture_output=True, text=True, check=True).stdout
        self.assertIn("2021", out)

    def test_tls_1_1_only_server(self):
        self.proxy.set_tls(min_tls="1.1", max_tls="1.1")
        err = self.handshake_error()   # a default client: TLS 1.2 at least
        self.assertIsNotNone(err)
        ctx = tls_context(self.certs.ca)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        self.assertIsNone(self.handshake_error(ctx))
        self.assertEqual(self.proxy.requests()[-1].tls_version, "TLSv1.1")

    def test_tls_1_0_only_server(self):
        self.proxy.set_tls(min_tls="1.0", max_tls="1.0")
        self.assertIsNotNone(self.handshake_error())

    def test_tls_1_3_only_server_refuses_a_1_2_client(self):
        self.proxy.set_tls(min_tls="1.3")
        self.assertIsNotNone(self.handshake_error(tls_context(self.certs.ca,
                                                              max_version=ssl.TLSVersion.TLSv1_2)))
        self.assertIsNone(self.handshake_error())

    def test_mutual_tls(self):
        self.proxy.set_tls(client_ca=self.certs.ca)
        # Without a client certificate: refused in the handshake (TLS 1.2) or
        # right after it (TLS 1.3, where the client learns it on its first read).
        with self.assertRaises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            self.client.health()
        self.assertEqual(self.proxy.requests(), [])
        self.assertIsNone(self.handshake_error(tls_context(self.certs.ca, client=self.certs.client)))
        self.assertEqual(self.proxy.requests()[-1].client_subject, "cks.kms.us-east-1.amazonaws.com")
        self.proxy.set_tls(client_ca=False)
        self.assertIsNone(self.handshake_error())


class LifecycleTest(unittest.TestCase):
    def test_stop_refuses_and_start_serves_on_the_same_port(self):
        proxy = StandIn(plain_http=True)
        try:
            client = XksClient(proxy.port, proxy.uri_path, akid=DEFAULT_ACCESS_KEY_ID,
                               secret=DEFAULT_SECRET)
            self.assertEqual(client.health().status, 200)
            port = proxy.port
            proxy.stop()
            with self.assertRaises(ConnectionRefusedError):
                client.health()
            proxy.start()
            self.assertEqual(proxy.port, port)
            self.assertEqual(client.health().status, 200)
            self.assertIsNone(proxy.requests()[0].tls_version)
            self.assertTrue(proxy.url("/health").startswith("http://127.0.0.1:%d/" % port))
            self.assertEqual(proxy.connect_to("xks.example.com"),
                             "xks.example.com:443:127.0.0.1:%d" % port)
            self.assertEqual(proxy.forward_to(), "127.0.0.1:%d" % port)
        finally:
            proxy.stop()

    def test_stop_cuts_a_delay_short(self):
        proxy = StandIn(plain_http=True)
        proxy.set_delay(30)
        client = XksClient(proxy.port, proxy.uri_path, akid=DEFAULT_ACCESS_KEY_ID,
                           secret=DEFAULT_SECRET, timeout=20)
        errors = []

        def call():
            try:
                client.health()
            except (OSError, http.client.HTTPException) as e:
                errors.append(e)
        t = threading.Thread(target=call)
        t.start()
        deadline = time.monotonic() + 5
        while not proxy.requests() and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        proxy.stop()
        t.join(10)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(len(errors), 1)

    def test_needs_a_certificate_or_plain_http(self):
        with self.assertRaises(ValueError):
            StandIn(start=False)


if __name__ == "__main__":
    unittest.main()
