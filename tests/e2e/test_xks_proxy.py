"""xks-proxy end to end: the four XKS operations and every error, as KMS calls them.

One proxy, started from flags alone over real TLS with certificates made by
openssl, serves one key store whose keys are AES-256 keys in a SoftHSM2
token made with `xks-proxy create-key`.  Requests are signed like KMS signs
them (SigV4, service kms-xks-proxy) by botocore and sent with http.client,
and the happy paths are repeated with `curl --aws-sigv4`, the spec's own
troubleshooting tool.  Every reply is checked against the XKS Proxy API
v1.0.3: fields, sizes, the error name with its status, the order of checks
(route, SigV4, body, key, crypto), and the log line each request leaves
(with its kmsRequestId, never a plaintext, PIN or secret).
"""

import json
import os
import time
import unittest

import xks_fixture as x

PREFIX = "/xks-e2e/kms/xks/v1"
KEY = "key-1"
ENC_ONLY = "enc-only"
DEC_ONLY = "dec-only"
KEY_OFF = "key-off"
LONG_KEY = "L" * 120 + "-long.id"   # 128 characters, the spec's maximum
assert len(LONG_KEY) == 128


class XksApiTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = x.Pki()
        cls.addClassCleanup(cls.pki.cleanup)
        cls.tokens = x.SoftToken(["xks-api-token"])
        cls.addClassCleanup(cls.tokens.cleanup)
        for label, usage in ((KEY, None), (ENC_ONLY, "encrypt"), (DEC_ONLY, "decrypt"),
                             (KEY_OFF, "none"), (LONG_KEY, "encrypt,decrypt")):
            cls.tokens.must_create_key(label, usage)
        cls.proxy = x.XksProxy(x.serve_flags(cls.tokens, PREFIX, tls=cls.pki.server),
                               env=cls.tokens.env())
        cls.proxy.start()
        cls.addClassCleanup(cls.proxy.cleanup)
        # Every plaintext and AAD sent by any test (base64 and, when printable,
        # raw); the log is searched for them when the class ends.
        cls.sent_secrets = set()
        cls.addClassCleanup(cls.check_log_for_secrets)
        cls.client = x.XksClient(cls.proxy.port, PREFIX, ca=cls.pki.ca)

    @classmethod
    def check_log_for_secrets(cls):
        log = cls.proxy.log_text()
        leaked = [s for s in cls.sent_secrets | {x.SECRET_1, x.SECRET_2, x.TOKEN_PIN, x.SO_PIN}
                  if s in log]
        if leaked:
            raise AssertionError("the log holds plaintext, AAD, PIN or secret: %r" % leaked[:5])

    @classmethod
    def remember(cls, *values):
        for v in values:
            if v and len(v) >= 8:
                cls.sent_secrets.add(x.b64(v))
                if all(0x20 < c < 0x7f for c in v):
                    cls.sent_secrets.add(v.decode())

    # -- helpers ------------------------------------------------------------

    def expect(self, reply, status, error=None):
        self.assertEqual(reply.status, status, "%r\n%s" % (reply, self.proxy.describe()))
        if error:
            self.assertEqual(reply.error, error, reply)
            self.assertIsInstance(reply.json.get("errorMessage", ""), str)
            msg = reply.json.get("errorMessage", "")
            self.assertLess(len(msg), 512)
            self.assertTrue(all(0x20 <= ord(ch) <= 0x7e for ch in msg), msg)
        self.assertOneLineJson(reply)
        return reply.json

    def assertOneLineJson(self, reply):
        body = reply.raw
        if reply.status == 405 and not body:
            return
        self.assertTrue(body, reply)
        self.assertNotIn(b"\n", body.rstrip(b"\n"), "reply body spans lines: %r" % body)
        self.assertIsInstance(json.loads(body), dict)
        ctype = reply.headers.get("Content-Type", "") if hasattr(reply.headers, "get") else ""
        if ctype:
            self.assertTrue(ctype.startswith("application/json"), ctype)

    def encrypt_ok(self, plaintext, key=KEY, aad=None, cdiv=False, **kw):
        self.remember(plaintext, aad)
        r = self.client.encrypt(key, plaintext, aad=aad, cdiv=cdiv, **kw)
        j = self.expect(r, 200)
        self.assertEqual(len(x.unb64(j["ciphertext"])), len(plaintext))
        self.assertEqual(len(x.unb64(j["initializationVector"])), 12)
        self.assertEqual(len(x.unb64(j["authenticationTag"])), 16)
        self.assertEqual("ciphertextDataIntegrityValue" in j, cdiv, j)
        return r

    def round_trip(self, plaintext, aad=None, key=KEY):
        enc = self.encrypt_ok(plaintext, key=key, aad=aad)
        dec = self.client.decrypt_reply(key, enc, aad=aad)
        self.assertEqual(x.unb64(self.expect(dec, 200)["plaintext"]), plaintext)
        return enc

    # -- the four operations --------------------------------------------------

    def test_get_key_metadata(self):
        j = self.expect(self.client.metadata(KEY), 200)
        self.assertEqual(j["keySpec"], "AES_256")
        self.assertEqual(sorted(j["keyUsage"]), ["DECRYPT", "ENCRYPT"])
        self.assertEqual(j["keyStatus"], "ENABLED")
        j = self.expect(self.client.metadata(ENC_ONLY), 200)
        self.assertEqual(j["keyUsage"], ["ENCRYPT"])
        self.assertEqual(j["keyStatus"], "ENABLED")
        j = self.expect(self.client.metadata(DEC_ONLY), 200)
        self.assertEqual(j["keyUsage"], ["DECRYPT"])
        j = self.expect(self.client.metadata(KEY_OFF), 200)
        self.assertEqual(j["keyStatus"], "DISABLED")
        self.assertEqual(j["keySpec"], "AES_256")

    def test_encrypt_then_decrypt_round_trips(self):
        for size in (1, 12, 16, 17, 1000):
            for aad in (None, b"", b"context=e2e", os.urandom(300)):
                with self.subTest(size=size, aad=aad and len(aad)):
                    self.round_trip(os.urandom(size), aad=aad)

    def test_each_encrypt_has_a_fresh_iv(self):
        pt = b"the same plaintext every time"
        replies = [self.encrypt_ok(pt).json for _ in range(5)]
        self.assertEqual(len({r["initializationVector"] for r in replies}), 5)
        self.assertEqual(len({r["ciphertext"] for r in replies}), 5)

    def test_cdiv_recomputed_here_matches(self):
        for aad in (None, b"project=nile,department=marketing"):
            with self.subTest(aad=aad):
                pt = os.urandom(64)
                j = self.encrypt_ok(pt, aad=aad, cdiv=True).json
                md = x.unb64(j["ciphertextMetadata"]) if j.get("ciphertextMetadata") else b""
                want = x.cdiv(aad or b"", x.unb64(j["initializationVector"]),
                              x.unb64(j["ciphertext"]), x.unb64(j["authenticationTag"]), md)
                self.assertEqual(j["ciphertextDataIntegrityValue"], want)
                dec = self.client.decrypt_reply(KEY, self.client.encrypt(KEY, pt, aad=aad), aad=aad)
                self.assertEqual(x.unb64(self.expect(dec, 200)["plaintext"]), pt)

    def test_cdiv_formula_matches_the_spec_vector(self):
        # The helper the test above trusts, checked on the spec's own example.
        self.assertEqual(x.cdiv(b"project=nile,department=marketing", x.unb64("HMrlRw85cAJUd5Ax"),
                                x.unb64("ghxkK1txeDNn3q8Y"), x.unb64("vBxN2ncH1oEkR8WVXpmyYQ=="),
                                b"key_version=1"),
                         "qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc=")

    def test_get_health_status(self):
        j = self.expect(self.client.health(), 200)
        self.assertIsInstance(j["xksProxyFleetSize"], int)
        self.assertGreater(j["xksProxyFleetSize"], 0)
        for field in ("xksProxyVendor", "xksProxyModel", "ekmVendor"):
            self.assertIsInstance(j[field], str)
            self.assertTrue(j[field], field)
        self.assertEqual(len(j["ekmFleetDetails"]), 1)
        ekm = j["ekmFleetDetails"][0]
        self.assertEqual(ekm["id"], "xks-api-token")
        self.assertTrue(ekm["model"])
        self.assertEqual(ekm["healthStatus"], "ACTIVE")
        for op in ("CreateCustomKeyStore", "ConnectCustomKeyStore", "UpdateCustomKeyStore"):
            r = self.client.raw("POST", self.client.health_path(),
                                {"requestMetadata": x.health_meta(op=op)})
            self.expect(r, 200)

    def test_happy_paths_through_curl(self):
        port, ca = self.proxy.port, self.pki.ca
        r = x.curl(port, self.client.key_path(KEY, "metadata"),
                   {"requestMetadata": x.meta("CreateKey")}, ca)
        self.assertEqual((r.status, r.json["keyStatus"]), (200, "ENABLED"), r.curl_stderr)
        pt = b"curl plaintext"
        r = x.curl(port, self.client.key_path(KEY, "encrypt"),
                   {"requestMetadata": x.meta("Encrypt"), "plaintext": x.b64(pt),
                    "encryptionAlgorithm": "AES_GCM", "additionalAuthenticatedData": x.b64(b"a"),
                    "ciphertextDataIntegrityValueAlgorithm": "SHA_256"}, ca)
        self.assertEqual(r.status, 200, r)
        enc = r.json
        self.assertEqual(enc["ciphertextDataIntegrityValue"],
                         x.cdiv(b"a", x.unb64(enc["initializationVector"]),
                                x.unb64(enc["ciphertext"]), x.unb64(enc["authenticationTag"])))
        r = x.curl(port, self.client.key_path(KEY, "decrypt"),
                   {"requestMetadata": x.meta("Decrypt"), "ciphertext": enc["ciphertext"],
                    "encryptionAlgorithm": "AES_GCM", "additionalAuthenticatedData": x.b64(b"a"),
                    "initializationVector": enc["initializationVector"],
                    "authenticationTag": enc["authenticationTag"]}, ca)
        self.assertEqual((r.status, x.unb64(r.json["plaintext"])), (200, pt), r)
        r = x.curl(port, self.client.health_path(), {"requestMetadata": x.health_meta()}, ca)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["ekmFleetDetails"][0]["healthStatus"], "ACTIVE")
        # The second credential, and a wrong secret, through curl as well.
        r = x.curl(port, self.client.health_path(), {"requestMetadata": x.health_meta()}, ca,
                   akid=x.AKID_2, secret=x.SECRET_2)
        self.assertEqual(r.status, 200, r)
        r = x.curl(port, self.client.health_path(), {"requestMetadata": x.health_meta()}, ca,
                   secret=x.SECRET_2)
        self.assertEqual((r.status, r.error), (401, "AuthenticationFailedException"), r)

    def test_unknown_kms_operation_and_opaque_request_id_are_accepted(self):
        m = x.meta("SomeFutureKmsApi", rid="not a uuid: opaque #1")
        self.expect(self.client.encrypt(KEY, b"abc", m=m), 200)
        self.expect(self.client.metadata(KEY, m=x.meta("DescribeKey")), 200)
        r = self.client.raw("POST", self.client.health_path(),
                            {"requestMetadata": x.health_meta(op="SomeFutureHealthCaller")})
        self.expect(r, 200)

    def test_extra_metadata_fields_and_long_arns_are_accepted(self):
        arn = "arn:aws:iam::111122223333:role/" + "r" * (2048 - 31)
        self.assertEqual(len(arn), 2048)
        m = x.meta("Encrypt", principal=arn, via="ebs", awsSourceVpc="vpc-0123",
                   awsSourceVpce="vpce-0123", kmsRecipientAttestationImageSha384="00" * 48)
        enc = self.expect(self.client.encrypt(KEY, b"abc", m=m), 200)
        self.assertTrue(enc["ciphertext"])

    # -- method and path rules ------------------------------------------------

    def test_get_on_each_api_uri_is_405(self):
        paths = [self.client.key_path(KEY, op) for op in ("metadata", "encrypt", "decrypt")]
        paths.append(self.client.health_path())
        for path in paths:
            for signed in (True, False):
                with self.subTest(path=path, signed=signed):
                    r = self.client.raw("GET", path, b"", signed=signed)
                    self.assertEqual(r.status, 405, r)
                    self.assertEqual(r.headers.get("Allow"), "POST")
                    self.assertOneLineJson(r)

    def test_unknown_paths_are_404_even_when_signed(self):
        body = {"requestMetadata": x.meta("Encrypt")}
        paths = [
            PREFIX + "/keys/%s/sign" % KEY,                 # unknown operation
            PREFIX + "/keys/%s" % KEY,                      # no operation
            PREFIX + "/keys/%s/encrypt/" % KEY,             # trailing slash
            PREFIX + "/health/",
            PREFIX + "/health?x=1",                         # a query string
            PREFIX + "/keys/%s/metadata?verbose" % KEY,
            "/other-store/kms/xks/v1/health",               # another prefix
            "/xks-e2e/kms/xks/v2/health",                   # another version
            "/kms/xks/v1/health",                           # no prefix
            PREFIX.upper() + "/health",
            PREFIX + "//health",
            PREFIX + "/keys//metadata",                     # empty key id
            PREFIX + "/keys/key%2D1/metadata",              # percent-encoding
            PREFIX + "/keys/bad*key/metadata",              # character outside the set
            "/",
            "/ping/extra",
        ]
        for path in paths:
            with self.subTest(path=path):
                r = self.client.raw("POST", path, body)
                self.expect(r, 404, "InvalidUriPathException")

    def test_ping_for_load_balancers(self):
        r = self.client.raw("GET", "/ping", b"", signed=False)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.client.raw("HEAD", "/ping", b"", signed=False).status, 200)
        # POST is not a probe: /ping is no API URI either.
        self.expect(self.client.raw("POST", "/ping", b"{}"), 404, "InvalidUriPathException")

    # -- errors, each provoked --------------------------------------------------

    def test_validation_exception(self):
        good_meta = x.meta("Encrypt")
        ct_reply = self.encrypt_ok(b"0123456789").json
        cases = {
            "not json": b"{not json",
            "empty body": b"",
            "array body": b"[]",
            "no requestMetadata": {"plaintext": x.b64(b"a"), "encryptionAlgorithm": "AES_GCM"},
            "no plaintext": {"requestMetadata": good_meta, "encryptionAlgorithm": "AES_GCM"},
            "empty plaintext": {"requestMetadata": good_meta, "plaintext": "",
                                "encryptionAlgorithm": "AES_GCM"},
            "bad base64": {"requestMetadata": good_meta, "plaintext": "not*base64!",
                           "encryptionAlgorithm": "AES_GCM"},
            "url-safe base64": {"requestMetadata": good_meta, "plaintext": "-_-_",
                                "encryptionAlgorithm": "AES_GCM"},
            "bad AAD base64": {"requestMetadata": good_meta, "plaintext": x.b64(b"a"),
                               "encryptionAlgorithm": "AES_GCM",
                               "additionalAuthenticatedData": "%%%"},
            "wrong algorithm": {"requestMetadata": good_meta, "plaintext": x.b64(b"a"),
                                "encryptionAlgorithm": "AES_CBC"},
            "no algorithm": {"requestMetadata": good_meta, "plaintext": x.b64(b"a")},
            "wrong CDIV algorithm": {"requestMetadata": good_meta, "plaintext": x.b64(b"a"),
                                     "encryptionAlgorithm": "AES_GCM",
                                     "ciphertextDataIntegrityValueAlgorithm": "MD5"},
            "no kmsRequestId": {"requestMetadata": {"awsPrincipalArn": x.PRINCIPAL,
                                                    "kmsOperation": "Encrypt",
                                                    "kmsKeyArn": x.KMS_KEY_ARN},
                                "plaintext": x.b64(b"a"), "encryptionAlgorithm": "AES_GCM"},
            "plaintext not a string": {"requestMetadata": good_meta, "plaintext": 12,
                                       "encryptionAlgorithm": "AES_GCM"},
        }
        for name, body in cases.items():
            with self.subTest(case=name):
                self.expect(self.client.raw("POST", self.client.key_path(KEY, "encrypt"), body),
                            400, "ValidationException")
        dec = {"requestMetadata": x.meta("Decrypt"), "encryptionAlgorithm": "AES_GCM",
               "ciphertext": ct_reply["ciphertext"],
               "initializationVector": ct_reply["initializationVector"],
               "authenticationTag": ct_reply["authenticationTag"]}
        for field in ("ciphertext", "encryptionAlgorithm", "requestMetadata"):
            with self.subTest(decrypt_without=field):
                body = {k: v for k, v in dec.items() if k != field}
                self.expect(self.client.raw("POST", self.client.key_path(KEY, "decrypt"), body),
                            400, "ValidationException")
        with self.subTest(case="metadata without awsPrincipalArn"):
            m = {"kmsOperation": "CreateKey", "kmsRequestId": x.request_id()}
            self.expect(self.client.metadata(KEY, m=m), 400, "ValidationException")

    def test_invalid_state_for_a_key_without_usage(self):
        self.expect(self.client.encrypt(KEY_OFF, b"abc"), 400, "InvalidStateException")
        self.expect(self.client.decrypt(KEY_OFF, b"abc", b"\0" * 12, b"\0" * 16), 400,
                    "InvalidStateException")

    def test_invalid_key_usage(self):
        enc = self.encrypt_ok(b"only one way", key=ENC_ONLY)
        self.expect(self.client.decrypt_reply(ENC_ONLY, enc), 400, "InvalidKeyUsageException")
        self.expect(self.client.encrypt(DEC_ONLY, b"abc"), 400, "InvalidKeyUsageException")

    def test_key_not_found(self):
        self.expect(self.client.metadata("no-such-key"), 404, "KeyNotFoundException")
        self.expect(self.client.encrypt("no-such-key", b"abc"), 404, "KeyNotFoundException")
        self.expect(self.client.decrypt("no-such-key", b"abc", b"\0" * 12, b"\0" * 16), 404,
                    "KeyNotFoundException")

    def test_invalid_ciphertext(self):
        aad = b"bound context"
        pt = b"a plaintext worth protecting"
        j = self.round_trip(pt, aad=aad).json
        ct, iv, tag = (x.unb64(j["ciphertext"]), x.unb64(j["initializationVector"]),
                       x.unb64(j["authenticationTag"]))
        flip = lambda b, i=0: b[:i] + bytes([b[i] ^ 1]) + b[i + 1:]
        cases = {
            "ciphertext bit": (flip(ct, 5), iv, tag, aad, None),
            "ciphertext shorter": (ct[:-1], iv, tag, aad, None),
            "tag bit": (ct, iv, flip(tag, 15), aad, None),
            "iv bit": (ct, flip(iv), tag, aad, None),
            "aad changed": (ct, iv, tag, b"other context", None),
            "aad missing": (ct, iv, tag, None, None),
            "ciphertextMetadata added": (ct, iv, tag, aad, b"key_version=1"),
            "16-byte iv": (ct, iv + b"\0\0\0\0", tag, aad, None),
            "iv of 8 bytes": (ct, iv[:8], tag, aad, None),
            "iv of 13 bytes": (ct, iv + b"\0", tag, aad, None),
            "tag of 15 bytes": (ct, iv, tag[:15], aad, None),
            "tag of 17 bytes": (ct, iv, tag + b"\0", aad, None),
        }
        for name, (c, i, t, a, md) in cases.items():
            with self.subTest(case=name):
                self.expect(self.client.decrypt(KEY, c, i, t, aad=a, ct_metadata=md), 400,
                            "InvalidCiphertextException")
        # Another key's ciphertext does not decrypt under this key either.
        other = self.encrypt_ok(pt, key=LONG_KEY, aad=aad)
        self.expect(self.client.decrypt_reply(KEY, other, aad=aad), 400, "InvalidCiphertextException")

    def test_authentication_failed(self):
        path = self.client.health_path()
        body = {"requestMetadata": x.health_meta()}
        cases = {
            "unsigned": dict(signed=False),
            "unknown access key": dict(akid=x.AKID_UNKNOWN, secret=x.SECRET_UNKNOWN),
            "wrong secret": dict(secret=x.SECRET_2),
            "wrong region": dict(region="eu-west-1"),
            "wrong service": dict(service="kms"),
            "date 6 minutes old": dict(skew=-360),
            "date 6 minutes ahead": dict(skew=360),
        }
        for name, kw in cases.items():
            for p, b in ((path, body), (self.client.key_path(KEY, "encrypt"),
                                        {"requestMetadata": x.meta(), "plaintext": "YQ==",
                                         "encryptionAlgorithm": "AES_GCM"})):
                with self.subTest(case=name, path=p):
                    self.expect(self.client.raw("POST", p, b, **kw), 401,
                                "AuthenticationFailedException")

    def test_body_changed_after_signing_is_401(self):
        path = self.client.key_path(KEY, "encrypt")
        body = json.dumps({"requestMetadata": x.meta(), "plaintext": x.b64(b"abc"),
                           "encryptionAlgorithm": "AES_GCM"}).encode()
        headers = self.client.sign("POST", path, body)
        tampered = body.replace(x.b64(b"abc").encode(), x.b64(b"abd").encode())
        conn = self.client.connect()
        try:
            conn.request("POST", path, body=tampered, headers=headers)
            resp = conn.getresponse()
            r = x.Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()
        self.expect(r, 401, "AuthenticationFailedException")

    def test_skew_within_five_minutes_is_accepted(self):
        for skew in (-240, 240):
            with self.subTest(skew=skew):
                self.expect(self.client.health(skew=skew), 200)
                self.expect(self.client.encrypt(KEY, b"abc", skew=skew), 200)

    def test_both_credentials_work_at_once_and_a_third_is_refused(self):
        conn = self.client.connect()
        try:
            for _ in range(3):
                for akid, secret in ((x.AKID_1, x.SECRET_1), (x.AKID_2, x.SECRET_2)):
                    enc = self.client.encrypt(KEY, b"rotation", conn=conn, akid=akid, secret=secret)
                    self.expect(enc, 200)
                    # Encrypted under one credential, decrypted under the other.
                    other = (x.AKID_2, x.SECRET_2) if akid == x.AKID_1 else (x.AKID_1, x.SECRET_1)
                    dec = self.client.decrypt_reply(KEY, enc, conn=conn, akid=other[0],
                                                    secret=other[1])
                    self.assertEqual(x.unb64(self.expect(dec, 200)["plaintext"]), b"rotation")
            r = self.client.health(conn=conn, akid=x.AKID_UNKNOWN, secret=x.SECRET_UNKNOWN)
            self.expect(r, 401, "AuthenticationFailedException")
        finally:
            conn.close()

    # -- sizes ------------------------------------------------------------------

    def test_plaintext_limit(self):
        self.round_trip(os.urandom(4300))
        self.expect(self.client.encrypt(KEY, os.urandom(4301)), 501, "UnsupportedOperationException")

    def test_ciphertext_limit(self):
        j = self.encrypt_ok(os.urandom(4300)).json
        ct = x.unb64(j["ciphertext"])
        iv, tag = x.unb64(j["initializationVector"]), x.unb64(j["authenticationTag"])
        self.expect(self.client.decrypt(KEY, ct + b"\0", iv, tag), 501,
                    "UnsupportedOperationException")

    def test_aad_limit(self):
        self.round_trip(b"small", aad=os.urandom(8192))
        self.expect(self.client.encrypt(KEY, b"small", aad=os.urandom(8193)), 501,
                    "UnsupportedOperationException")
        j = self.encrypt_ok(b"small").json
        self.expect(self.client.decrypt(KEY, x.unb64(j["ciphertext"]),
                                        x.unb64(j["initializationVector"]),
                                        x.unb64(j["authenticationTag"]), aad=os.urandom(8193)),
                    501, "UnsupportedOperationException")

    def test_body_over_64_kib_is_refused_before_authentication(self):
        body = json.dumps({"requestMetadata": x.meta(), "encryptionAlgorithm": "AES_GCM",
                           "plaintext": x.b64(b"a"), "padding": "p" * 70000}).encode()
        self.expect(self.client.raw("POST", self.client.key_path(KEY, "encrypt"), body), 501,
                    "UnsupportedOperationException")
        self.expect(self.client.raw("POST", self.client.key_path(KEY, "encrypt"), body,
                                    signed=False), 501, "UnsupportedOperationException")

    def test_both_largest_at_once(self):
        self.round_trip(os.urandom(4300), aad=os.urandom(8192))

    def test_external_key_id_limit(self):
        j = self.expect(self.client.metadata(LONG_KEY), 200)
        self.assertEqual(j["keyStatus"], "ENABLED")
        self.round_trip(b"long id", key=LONG_KEY)
        self.expect(self.client.metadata(LONG_KEY + "x"), 404, "InvalidUriPathException")
        self.expect(self.client.encrypt(LONG_KEY + "x", b"abc"), 404, "InvalidUriPathException")
        # A 128-character id that is allowed but names no key: the route is fine.
        self.expect(self.client.metadata("M" * 128), 404, "KeyNotFoundException")

    # -- connections, replies and logs -----------------------------------------

    def test_keep_alive_serves_many_requests_on_one_connection(self):
        conn = self.client.connect()
        try:
            self.expect(self.client.health(conn=conn), 200)
            sock = conn.sock
            self.assertIsNotNone(sock)
            enc = self.client.encrypt(KEY, b"keep-alive", conn=conn)
            self.expect(enc, 200)
            self.expect(self.client.decrypt_reply(KEY, enc, conn=conn), 200)
            self.expect(self.client.metadata(KEY, conn=conn), 200)
            self.expect(self.client.metadata("no-such-key", conn=conn), 404, "KeyNotFoundException")
            self.expect(self.client.encrypt(KEY, b"", conn=conn), 400, "ValidationException")
            self.expect(self.client.health(conn=conn), 200)
            self.assertIs(conn.sock, sock, "the proxy closed the connection between requests")
        finally:
            conn.close()

    def test_one_log_line_per_request(self):
        # A request refused at body validation (here an empty plaintext) is logged with
        # the kmsRequestId its body carries.
        rid_ok, rid_missing, rid_bad = x.request_id(), x.request_id(), x.request_id()
        self.expect(self.client.encrypt(KEY, b"logged", rid=rid_ok), 200)
        self.expect(self.client.metadata("no-such-key", rid=rid_missing), 404, "KeyNotFoundException")
        self.expect(self.client.encrypt(KEY, b"", rid=rid_bad), 400, "ValidationException")
        for rid, op, key, outcome, status in ((rid_ok, "Encrypt", KEY, "ok", "200"),
                                              (rid_missing, "GetKeyMetadata", "no-such-key",
                                               "KeyNotFoundException", "404"),
                                              (rid_bad, "Encrypt", KEY, "ValidationException",
                                               "400")):
            with self.subTest(rid=rid):
                lines = self.proxy.wait_log(rid)
                self.assertEqual(len(lines), 1, lines)
                line = lines[0]
                for part in (PREFIX, op, key, outcome, status, "latency"):
                    self.assertIn(part, line)

    def test_logs_never_hold_plaintext_aad_pin_or_secret(self):
        pt = b"PLAINTEXT-CANARY-4f1d9e0b-must-not-be-logged"
        aad = b"AAD-CANARY-77aa01-must-not-be-logged"
        rid = x.request_id()
        enc = self.encrypt_ok(pt, aad=aad, rid=rid, cdiv=True)
        dec = self.client.decrypt_reply(KEY, enc, aad=aad)
        self.expect(dec, 200)
        self.expect(self.client.encrypt(KEY, pt, aad=aad, akid=x.AKID_2, secret=x.SECRET_1), 401,
                    "AuthenticationFailedException")
        self.assertTrue(self.proxy.wait_log(rid))
        time.sleep(0.2)
        log = self.proxy.log_text()
        for secret in (pt.decode(), x.b64(pt), aad.decode(), x.b64(aad), x.SECRET_1, x.SECRET_2,
                       x.TOKEN_PIN, x.SO_PIN):
            self.assertNotIn(secret, log)

    def test_secrets_are_not_left_in_the_command_line(self):
        # Every local user can read /proc/PID/cmdline; --pin and
        # --secret-access-key(-2) were given inline to this proxy.
        with open("/proc/%d/cmdline" % self.proxy.proc.pid, "rb") as f:
            cmdline = f.read().decode("utf-8", "replace")
        self.assertIn("--secret-access-key", cmdline)
        for secret in (x.SECRET_1, x.SECRET_2, x.TOKEN_PIN):
            self.assertNotIn(secret, cmdline)

    def test_plain_http_to_the_tls_port_gets_no_answer(self):
        conn = x._PinnedHTTPConnection(self.proxy.port, 5)
        try:
            body = json.dumps({"requestMetadata": x.health_meta()}).encode()
            conn.request("POST", self.client.health_path(), body=body,
                         headers=self.client.sign("POST", self.client.health_path(), body))
            status = conn.getresponse().status
        except Exception as e:  # reset, closed, or an answer that is not HTTP
            status = type(e).__name__
        finally:
            conn.close()
        self.assertNotEqual(status, 200)


class XksCommandLineTest(unittest.TestCase):
    """--help, --version, bad flags, create-key refusals: nothing needs a server."""

    @classmethod
    def setUpClass(cls):
        cls.tokens = x.SoftToken(["xks-cli-token"])
        cls.addClassCleanup(cls.tokens.cleanup)
        cls.pki = x.Pki()
        cls.addClassCleanup(cls.pki.cleanup)

    def test_help_and_version(self):
        rc, out, err = x.run_proxy(["--help"])
        self.assertEqual(rc, 0, err)
        for flag in ("--config", "--listen", "--tls-client-ca", "--access-key-id-2", "--pin-file",
                     "--plain-http", "create-key", "--usage", "--quota"):
            self.assertIn(flag, out)
        rc, out, err = x.run_proxy(["--version"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.strip().splitlines()[0], "xks-proxy 0.1.0")

    def test_bad_flags_exit_2(self):
        base = x.serve_flags(self.tokens, "/cli/kms/xks/v1", tls=self.pki.server)
        for args in (["--no-such-flag"], base + ["--no-such-flag"], base + ["--threads"],
                     base + ["--pin-file", self.tokens.pin_file()],   # --pin and --pin-file
                     base + ["--plain-http"],                         # --plain-http and --tls-*
                     ["--config"]):
            with self.subTest(args=args[-2:]):
                rc, out, err = x.run_proxy(args, env=self.tokens.env())
                self.assertEqual(rc, 2, out + err)
                self.assertTrue(err.strip())
                self.assertNotIn(x.SECRET_1, out + err)
                self.assertNotIn(x.TOKEN_PIN, out + err)

    def test_bad_values_are_refused_by_name_without_secrets(self):
        base = x.serve_flags(self.tokens, "/cli/kms/xks/v1", tls=self.pki.server,
                             second_credential=False)

        def replaced(flag, value):
            args = list(base)
            args[args.index(flag) + 1] = value
            return args
        short_secret = "c2hvcnQtc2VjcmV0"                     # 16 characters
        bad_char_secret = "has spaces and * in it but is long enough to pass"
        cases = [
            ("--access-key-id", replaced("--access-key-id", "AKIA-lowercase-1234")),
            ("--access-key-id", replaced("--access-key-id", "AKIASHORT")),
            ("--secret-access-key", replaced("--secret-access-key", short_secret)),
            ("--secret-access-key", replaced("--secret-access-key", bad_char_secret)),
            ("--uri-prefix", replaced("--uri-prefix", "/no-suffix")),
            ("--region", replaced("--region", "US_EAST_1")),
            ("--listen", replaced("--listen", "127.0.0.1:99999")),
        ]
        for flag, args in cases:
            with self.subTest(flag=flag, value=args[args.index(flag) + 1]):
                rc, out, err = x.run_proxy(args, env=self.tokens.env())
                self.assertIn(rc, (1, 2), out + err)
                self.assertIn(flag, err)
                for secret in (short_secret, bad_char_secret, x.SECRET_1, x.TOKEN_PIN):
                    self.assertNotIn(secret, out + err)

    def test_credential_length_bounds(self):
        # The spec's bounds, which are what KMS can send: access key ids of 20
        # to 30 characters of A-Z and 2-7, secrets of 43 to 64 of A-Za-z0-9+/=
        # (XksProxyAuthenticationCredential).
        def args_with(akid, secret):
            a = x.serve_flags(self.tokens, "/cli/kms/xks/v1", tls=self.pki.server,
                              second_credential=False)
            a[a.index("--access-key-id") + 1] = akid
            a[a.index("--secret-access-key") + 1] = secret
            return a
        for akid, secret in (("A" * 19, "s" * 43), ("A" * 31, "s" * 43),
                             ("A" * 20, "s" * 42), ("A" * 20, "s" * 65)):
            with self.subTest(akid=len(akid), secret=len(secret)):
                rc, out, err = x.run_proxy(args_with(akid, secret), env=self.tokens.env())
                self.assertIn(rc, (1, 2), out + err)
                self.assertNotIn(secret, out + err)
        for akid, secret in (("A" * 20, "s" * 43), ("B" * 22 + "234567AB", "/+=9" * 16)):
            with self.subTest(akid=len(akid), secret=len(secret)):
                proxy = x.XksProxy(args_with(akid, secret), env=self.tokens.env())
                proxy.start()
                try:
                    c = x.XksClient(proxy.port, "/cli/kms/xks/v1", ca=self.pki.ca, akid=akid,
                                    secret=secret)
                    self.assertEqual(c.health().status, 200)
                finally:
                    proxy.cleanup()

    def test_secrets_from_files(self):
        files = {}
        for name, secret in (("s1", x.SECRET_1), ("s2", x.SECRET_2)):
            files[name] = os.path.join(self.tokens.dir, name + ".secret")
            with open(files[name], "w") as f:
                f.write(secret + "\n")
            os.chmod(files[name], 0o600)
        args = ["--listen", "127.0.0.1:0", "--uri-prefix", "/files/kms/xks/v1",
                "--region", x.REGION, "--tls-cert", self.pki.server[0],
                "--tls-key", self.pki.server[1],
                "--access-key-id", x.AKID_1, "--secret-access-key-file", files["s1"],
                "--access-key-id-2", x.AKID_2, "--secret-access-key-2-file", files["s2"],
                "--pkcs11-module", self.tokens.module, "--token-label", "xks-cli-token",
                "--pin-file", self.tokens.pin_file()]
        proxy = x.XksProxy(args, env=self.tokens.env())
        proxy.start()
        try:
            for akid, secret in ((x.AKID_1, x.SECRET_1), (x.AKID_2, x.SECRET_2)):
                c = x.XksClient(proxy.port, "/files/kms/xks/v1", ca=self.pki.ca, akid=akid,
                                secret=secret)
                self.assertEqual(c.health().status, 200)
        finally:
            proxy.cleanup()

    def test_tls_is_required_unless_plain_http(self):
        args = [a for a in x.serve_flags(self.tokens, "/cli/kms/xks/v1", tls=("c", "k"))
                if a not in ("--tls-cert", "--tls-key", "c", "k")]
        rc, out, err = x.run_proxy(args, env=self.tokens.env())
        self.assertIn(rc, (1, 2), out + err)
        self.assertIn("tls", err.lower())

    def test_wrong_pin_is_refused_at_start_without_the_pin(self):
        args = x.serve_flags(self.tokens, "/cli/kms/xks/v1", tls=self.pki.server)
        wrong = "wrong-pin-31337"
        args[args.index("--pin") + 1] = wrong
        rc, out, err = x.run_proxy(args, env=self.tokens.env())
        self.assertEqual(rc, 1, out + err)
        self.assertIn("xks-cli-token", err)
        self.assertNotIn(wrong, out + err)
        self.assertNotIn(x.TOKEN_PIN, out + err)

    def test_create_key(self):
        p = self.tokens.create_key("made-by-cli")
        self.assertEqual(p.returncode, 0, p.stderr)
        again = self.tokens.create_key("made-by-cli")
        self.assertNotEqual(again.returncode, 0)
        self.assertIn("made-by-cli", again.stderr)
        for label in ("bad*label", "x" * 129, ""):
            with self.subTest(label=label):
                self.assertNotEqual(self.tokens.create_key(label).returncode, 0)
        bad_usage = self.tokens.create_key("usage-key", usage="sign")
        self.assertNotEqual(bad_usage.returncode, 0)
        wrong = x.run_proxy(["create-key", "--pkcs11-module", self.tokens.module, "--token-label",
                             "xks-cli-token", "--pin", "wrong-pin-2718", "--label", "k"],
                            env=self.tokens.env())
        self.assertNotEqual(wrong[0], 0)
        self.assertNotIn("wrong-pin-2718", wrong[1] + wrong[2])
        with_file = x.run_proxy(["create-key", "--pkcs11-module", self.tokens.module,
                                 "--token-label", "xks-cli-token", "--pin-file",
                                 self.tokens.pin_file(), "--label", "from-pin-file"],
                                env=self.tokens.env())
        self.assertEqual(with_file[0], 0, with_file[2])


if __name__ == "__main__":
    unittest.main()
