"""KMS keys in external key stores end to end, driven by boto3 against a real
kmsd: CreateKey with Origin EXTERNAL_KEY_STORE and XksKeyId (GetKeyMetadata
decides XksKeyNotFound / XksKeyInvalidConfiguration; XksKeyAlreadyInUse),
DescribeKey's XksKeyConfiguration, double encryption in Encrypt, Decrypt,
ReEncrypt and GenerateDataKey(WithoutPlaintext) (kmsd's inner layer and the
proxy's outer one: a ciphertext needs both), the requestMetadata kmsd sends,
proxy failures during crypto, keys Unavailable while disconnected, and old
ciphertexts decrypting after a recovery and after a kmsd restart.

StandInTest runs against the stand-in proxy (xks_standin.py);
RealProxyTest once against the real xks-proxy on a SoftHSM2 token over real
TLS."""
import base64
import json
import os
import tempfile
import time
import unittest
import uuid

import kmsd_harness as h
import xks_certs
import xks_fixture as x
from xks_standin import DEFAULT_ACCESS_KEY_ID, DEFAULT_KEY_ID, DEFAULT_SECRET, StandIn

HOST = "xks.example.com"
PATH = "/keys/kms/xks/v1"


def wait_state(kms, cks_id, states=("CONNECTED", "FAILED"), timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        entry = kms.describe_custom_key_stores(CustomKeyStoreId=cks_id)["CustomKeyStores"][0]
        if entry["ConnectionState"] in states:
            return entry
        if time.monotonic() > deadline:
            raise AssertionError("store %s stayed %s" % (cks_id, entry["ConnectionState"]))
        time.sleep(0.05)


class StandInTest(h.KmsdBaseTestCase):
    """One kmsd, one stand-in proxy, one CONNECTED external key store."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="xks-keys-")
        cls.certs = xks_certs.make_certs(os.path.join(cls.tmp, "certs"), hostname=HOST)
        cls.proxy = StandIn(cert=cls.certs.good, uri_path=PATH)
        cls.server = h.KmsdServer(args=["--xks-ca-bundle", cls.certs.ca,
                                        "--xks-connect-to", cls.proxy.connect_to(HOST)])
        try:
            cls.server.start()
            cls.kms = h.kms_client(cls.server)
            cls.cks = cls.kms.create_custom_key_store(
                CustomKeyStoreName="keys", CustomKeyStoreType="EXTERNAL_KEY_STORE",
                XksProxyUriEndpoint="https://" + HOST, XksProxyUriPath=PATH,
                XksProxyConnectivity="PUBLIC_ENDPOINT",
                XksProxyAuthenticationCredential={"AccessKeyId": DEFAULT_ACCESS_KEY_ID,
                                                  "RawSecretAccessKey": DEFAULT_SECRET}
            )["CustomKeyStoreId"]
            cls.kms.connect_custom_key_store(CustomKeyStoreId=cls.cks)
            entry = wait_state(cls.kms, cls.cks)
            assert entry["ConnectionState"] == "CONNECTED", entry
        except Exception:
            cls.proxy.stop()
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.server.cleanup()
        cls.certs.cleanup()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        if not self.proxy.running:
            self.proxy.start()
        self.proxy.reset()
        self.ensure_connected()

    def ensure_connected(self):
        entry = self.kms.describe_custom_key_stores(CustomKeyStoreId=self.cks)["CustomKeyStores"][0]
        if entry["ConnectionState"] == "CONNECTED":
            return
        if entry["ConnectionState"] != "DISCONNECTED":
            self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)
        self.kms.connect_custom_key_store(CustomKeyStoreId=self.cks)
        self.assertEqual(wait_state(self.kms, self.cks)["ConnectionState"], "CONNECTED")

    _n = 0

    def new_external_key(self, **fields):
        StandInTest._n += 1
        key_id = "ext-key-%d-%d" % (os.getpid(), StandInTest._n)
        self.proxy.add_key(key_id, **fields)
        return key_id

    def create_key(self, xks_key_id=None):
        xks_key_id = xks_key_id or self.new_external_key()
        md = self.kms.create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=self.cks,
                                 XksKeyId=xks_key_id)["KeyMetadata"]
        return md, xks_key_id

    # -- CreateKey / DescribeKey -------------------------------------------

    def test_create_and_describe(self):
        md, ext = self.create_key()
        self.assertEqual(md["Origin"], "EXTERNAL_KEY_STORE")
        self.assertEqual(md["CustomKeyStoreId"], self.cks)
        self.assertEqual(md["XksKeyConfiguration"], {"Id": ext})
        self.assertEqual(md["KeyState"], "Enabled")
        self.assertNotIn("CloudHsmClusterId", md)
        got = self.kms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]
        self.assertEqual(got["XksKeyConfiguration"], {"Id": ext})
        # GetKeyMetadata was asked, for this key, as CreateKey.
        reqs = [r for r in self.proxy.requests("metadata") if r.key_id == ext]
        self.assertTrue(reqs)
        meta = reqs[-1].request_metadata
        self.assertEqual(meta["kmsOperation"], "CreateKey")
        self.assertEqual(meta["awsPrincipalArn"], "arn:aws:iam::111122223333:root")
        # Origin implied by the store.
        md2 = self.kms.create_key(CustomKeyStoreId=self.cks,
                                  XksKeyId=self.new_external_key())["KeyMetadata"]
        self.assertEqual(md2["Origin"], "EXTERNAL_KEY_STORE")

    def test_create_key_errors(self):
        def create(**kw):
            return self.kms.create_key(**dict(dict(Origin="EXTERNAL_KEY_STORE",
                                                   CustomKeyStoreId=self.cks), **kw))
        self.assertKmsError("XksKeyNotFoundException", create, XksKeyId="no-such-external-key")
        for fields in ({"status": "DISABLED"}, {"spec": "RSA_2048"}, {"usage": ["ENCRYPT"]},
                       {"usage": ["DECRYPT"]}):
            with self.subTest(**fields):
                self.assertKmsError("XksKeyInvalidConfigurationException", create,
                                    XksKeyId=self.new_external_key(**fields))
        md, ext = self.create_key()
        self.assertKmsError("XksKeyAlreadyInUseException", create, XksKeyId=ext)
        self.assertKmsError("ValidationException", create)
        self.assertKmsError("ValidationException", self.kms.create_key,
                            Origin="EXTERNAL_KEY_STORE", XksKeyId=ext)
        self.assertKmsError("ValidationException", self.kms.create_key, XksKeyId=ext)
        self.assertKmsError("UnsupportedOperationException", create, Origin="AWS_CLOUDHSM",
                            XksKeyId=self.new_external_key())
        self.assertKmsError("CustomKeyStoreNotFoundException", create,
                            CustomKeyStoreId="cks-00000000000000000", XksKeyId="k")
        self.proxy.set_delay(0.6, ops={"metadata"})
        self.assertKmsError("DependencyTimeoutException", create,
                            XksKeyId=self.new_external_key())
        self.proxy.reset()
        self.proxy.set_mode("not_json", ops={"metadata"})
        self.assertKmsError("CustomKeyStoreInvalidStateException", create,
                            XksKeyId=self.new_external_key())
        self.proxy.reset()
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)
        self.assertKmsError("CustomKeyStoreInvalidStateException", create,
                            XksKeyId=self.new_external_key())
        self.ensure_connected()

    def test_store_with_keys_cannot_be_deleted(self):
        self.create_key()
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)
        self.assertKmsError("CustomKeyStoreHasCMKsException", self.kms.delete_custom_key_store,
                            CustomKeyStoreId=self.cks)
        self.ensure_connected()

    def test_generate_random_refuses_external_store(self):
        self.assertKmsError("UnsupportedOperationException", self.kms.generate_random,
                            NumberOfBytes=16, CustomKeyStoreId=self.cks)

    # -- double encryption ------------------------------------------------

    def test_double_encryption_and_request_metadata(self):
        md, ext = self.create_key()
        kid = md["KeyId"]
        ctx = {"purpose": "test"}
        pt = b"external key store plaintext"
        self.proxy.clear_requests()
        resp = self.kms.encrypt(KeyId=kid, Plaintext=pt, EncryptionContext=ctx)
        blob = resp["CiphertextBlob"]
        rid = resp["ResponseMetadata"]["RequestId"]
        enc = self.proxy.requests("encrypt")
        self.assertEqual(len(enc), 1)
        meta = enc[0].request_metadata
        self.assertEqual(meta["kmsRequestId"], rid)
        self.assertEqual(meta["kmsOperation"], "Encrypt")
        self.assertEqual(meta["kmsKeyArn"], md["Arn"])
        self.assertEqual(meta["awsPrincipalArn"], "arn:aws:iam::111122223333:root")
        self.assertNotIn("kmsViaService", meta)
        # The proxy never sees the plaintext: it encrypts kmsd's inner layer.
        sent = base64.b64decode(enc[0].json["plaintext"])
        self.assertNotIn(pt, sent)
        self.assertEqual(len(sent), len(pt) + 28)
        self.assertNotIn(pt, blob)
        out = self.kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)
        self.assertEqual(out["Plaintext"], pt)
        self.assertEqual(out["KeyId"], md["Arn"])
        dec = self.proxy.requests("decrypt")
        self.assertEqual(dec[-1].request_metadata["kmsOperation"], "Decrypt")
        # The context is bound.
        self.assertKmsError("InvalidCiphertextException", self.kms.decrypt, CiphertextBlob=blob,
                            EncryptionContext={"purpose": "other"})
        # The outer layer is needed: the external key's material replaced,
        # the same ciphertext no longer opens.
        old = self.proxy.keys[ext].material
        self.proxy.set_key(ext, material=os.urandom(32))
        self.assertKmsError("KMSInvalidStateException", self.kms.decrypt, CiphertextBlob=blob,
                            EncryptionContext=ctx)
        self.proxy.set_key(ext, material=old)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"],
                         pt)
        # A flipped bit of the proxy's ciphertext: the proxy refuses it
        # (InvalidCiphertextException), which a crypto operation on an external
        # key answers as KMSInvalidStateException; a body whose framing is
        # broken never reaches the proxy: InvalidCiphertextException.
        bad = bytearray(blob)
        bad[-1] ^= 1
        self.assertKmsError("KMSInvalidStateException", self.kms.decrypt,
                            CiphertextBlob=bytes(bad), EncryptionContext=ctx)
        bad = bytearray(blob)
        bad[49] = 7   # the outer IV length, first byte after the 49-byte header
        self.assertKmsError("InvalidCiphertextException", self.kms.decrypt,
                            CiphertextBlob=bytes(bad), EncryptionContext=ctx)

    def test_foreign_and_garbled_ciphertexts(self):
        """A ciphertext that cannot be one of this key's is refused by kmsd
        before the proxy sees it: InvalidCiphertextException, with no Decrypt
        sent (the outer layer's framing, its lengths as kmsd's own layout
        fixes them - the proxy's ciphertext is kmsd's 28-byte inner IV and
        tag plus 1..4096 bytes - and the key's one material id).  One that
        is well formed but that the proxy cannot open (a byte flipped in the
        proxy's IV, tag or ciphertext, one byte cut off) is the proxy's
        InvalidCiphertextException, which the XKS spec's table gives
        Decrypt and ReEncrypt as KMSInvalidStateException with AWS's
        message.  A ciphertext of another external key's KMS key is
        IncorrectKeyException when a KeyId names this one (the model's
        IncorrectKeyException), and InvalidCiphertextException when its
        header is rewritten to name this key."""
        md, _ = self.create_key()
        kid = md["KeyId"]
        pt = b"p" * 100
        blob = self.kms.encrypt(KeyId=kid, Plaintext=pt)["CiphertextBlob"]
        iv_len = blob[49]
        md_len = blob[49 + 1 + iv_len + 16]
        ct_off = 49 + 1 + iv_len + 16 + 1 + md_len
        self.assertEqual(len(blob) - ct_off, len(pt) + 28)

        def local(bad, what):
            """Refused in kmsd: no Decrypt reaches the proxy."""
            with self.subTest(what=what):
                self.proxy.clear_requests()
                self.assertKmsError("InvalidCiphertextException", self.kms.decrypt,
                                    CiphertextBlob=bytes(bad))
                self.assertKmsError("InvalidCiphertextException", self.kms.decrypt,
                                    CiphertextBlob=bytes(bad), KeyId=kid)
                self.assertKmsError("InvalidCiphertextException", self.kms.re_encrypt,
                                    CiphertextBlob=bytes(bad), DestinationKeyId=kid)
                self.assertEqual(self.proxy.requests("decrypt"), [])

        def by_proxy(bad, what):
            """Sent to the proxy, which refuses it."""
            with self.subTest(what=what):
                self.proxy.clear_requests()
                err = self.assertKmsError("KMSInvalidStateException", self.kms.decrypt,
                                          CiphertextBlob=bytes(bad))
                self.assertIn("ciphertext or encryption context is corrupted", err["Message"])
                dec = self.proxy.requests("decrypt")
                self.assertEqual(len(dec), 1)
                self.assertEqual(dec[0].status, 400)

        local(blob[:60], "cut inside the proxy's IV")
        local(blob[:ct_off + 20], "proxy ciphertext shorter than an inner IV and tag")
        local(blob[:ct_off], "no proxy ciphertext")
        longer = bytearray(blob) + b"\0" * 4000    # 4128 bytes of proxy ciphertext
        local(longer, "proxy ciphertext longer than any inner body")
        bad = bytearray(blob)
        bad[49 + 1 + iv_len + 16] = 21               # ciphertextMetadata over the spec's 20
        local(bad, "metadata length")
        bad = bytearray(blob)
        bad[17] ^= 1                                 # the material id of the header
        local(bad, "material id")

        by_proxy(blob[:-1], "one byte cut off")
        for what, at in (("IV", 49 + 1), ("tag", 49 + 1 + iv_len), ("ciphertext", ct_off + 5)):
            bad = bytearray(blob)
            bad[at] ^= 0x40
            by_proxy(bad, "flipped byte in the proxy's " + what)

        # A ciphertext of another external key's KMS key.
        other, _ = self.create_key()
        theirs = self.kms.encrypt(KeyId=other["KeyId"], Plaintext=pt)["CiphertextBlob"]
        self.proxy.clear_requests()
        self.assertKmsError("IncorrectKeyException", self.kms.decrypt, CiphertextBlob=theirs,
                            KeyId=kid)
        self.assertEqual(self.proxy.requests("decrypt"), [])
        moved = bytearray(theirs)
        moved[1:17] = uuid.UUID(kid).bytes
        local(moved, "another key's ciphertext under this key's id")
        # An AWS_KMS key's ciphertext under this key's id, too.
        plain = self.kms.create_key()["KeyMetadata"]["KeyId"]
        moved = bytearray(self.kms.encrypt(KeyId=plain, Plaintext=pt)["CiphertextBlob"])
        moved[1:17] = uuid.UUID(kid).bytes
        local(moved, "an AWS_KMS key's ciphertext under this key's id")
        # Both still open as what they are.
        self.assertEqual(self.kms.decrypt(CiphertextBlob=theirs)["Plaintext"], pt)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob, KeyId=kid)["Plaintext"], pt)

    def test_data_keys_and_reencrypt(self):
        md, _ = self.create_key()
        kid = md["KeyId"]
        dk = self.kms.generate_data_key(KeyId=kid, KeySpec="AES_256")
        self.assertEqual(len(dk["Plaintext"]), 32)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"],
                         dk["Plaintext"])
        wo = self.kms.generate_data_key_without_plaintext(KeyId=kid, NumberOfBytes=64)
        self.assertEqual(len(self.kms.decrypt(CiphertextBlob=wo["CiphertextBlob"])["Plaintext"]),
                         64)
        local = self.kms.create_key()["KeyMetadata"]["KeyId"]
        blob = self.kms.encrypt(KeyId=kid, Plaintext=b"x" * 4096)["CiphertextBlob"]
        moved = self.kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=local)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=moved["CiphertextBlob"])["Plaintext"],
                         b"x" * 4096)
        back = self.kms.re_encrypt(CiphertextBlob=moved["CiphertextBlob"], DestinationKeyId=kid)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=back["CiphertextBlob"])["Plaintext"],
                         b"x" * 4096)
        ops = {r.request_metadata["kmsOperation"] for r in self.proxy.requests()
               if r.request_metadata and r.op in ("encrypt", "decrypt")}
        self.assertTrue({"GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "ReEncrypt",
                         "Encrypt", "Decrypt"} <= ops, ops)

    # -- failures ----------------------------------------------------------

    def test_crypto_errors_and_recovery(self):
        md, _ = self.create_key()
        kid = md["KeyId"]
        blob = self.kms.encrypt(KeyId=kid, Plaintext=b"keep me")["CiphertextBlob"]
        cases = [
            ("DependencyTimeoutException", lambda: self.proxy.set_delay(0.6)),
            ("KMSInvalidStateException", self.proxy.stop),
            ("KMSInvalidStateException", lambda: self.proxy.set_mode("auth_fail")),
            ("KMSInvalidStateException", lambda: self.proxy.set_mode("access_denied")),
            ("KMSInvalidStateException", lambda: self.proxy.set_mode("not_json")),
            ("KMSInvalidStateException", lambda: self.proxy.set_mode("http_500")),
            ("KMSInvalidStateException", lambda: self.proxy.set_mode("uri_path_404")),
            ("DependencyTimeoutException",
             lambda: self.proxy.set_mode("error", status=503, name="DependencyTimeoutException")),
        ]
        for code, provoke in cases:
            with self.subTest(code=code, provoke=provoke):
                self.setUp()
                provoke()
                self.assertKmsError(code, self.kms.encrypt, KeyId=kid, Plaintext=b"y")
                self.assertKmsError(code, self.kms.decrypt, CiphertextBlob=blob)
                self.assertKmsError(code, self.kms.generate_data_key, KeyId=kid,
                                    KeySpec="AES_256")
        self.setUp()
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"keep me")
        # Disconnected: the key is Unavailable and crypto is KMSInvalidState.
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)
        self.assertEqual(self.kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"],
                         "Unavailable")
        self.assertKmsError("KMSInvalidStateException", self.kms.decrypt, CiphertextBlob=blob)
        self.assertKmsError("KMSInvalidStateException", self.kms.encrypt, KeyId=kid,
                            Plaintext=b"z")
        self.ensure_connected()
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"keep me")

    def test_credential_rotation_while_connected(self):
        """UpdateCustomKeyStore with a new credential while CONNECTED: the live
        connection moves to it, so crypto keeps working once the proxy drops
        the old one."""
        new_id, new_secret = "AKIAROTATEDXKSPROXY2", "cm90YXRlZC1zZWNyZXQtZm9yLWttc2QteGtzLXRlc3RzLTI="
        md, _ = self.create_key()
        blob = self.kms.encrypt(KeyId=md["KeyId"], Plaintext=b"rotate")["CiphertextBlob"]
        self.proxy.set_credentials({DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET, new_id: new_secret})
        try:
            self.kms.update_custom_key_store(CustomKeyStoreId=self.cks,
                                             XksProxyAuthenticationCredential={
                                                 "AccessKeyId": new_id,
                                                 "RawSecretAccessKey": new_secret})
            self.proxy.set_credentials({new_id: new_secret})
            self.proxy.clear_requests()
            self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"rotate")
            self.assertEqual({r.access_key_id for r in self.proxy.requests("decrypt")}, {new_id})
        finally:
            self.proxy.set_credentials({DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET, new_id: new_secret})
            self.kms.update_custom_key_store(CustomKeyStoreId=self.cks,
                                             XksProxyAuthenticationCredential={
                                                 "AccessKeyId": DEFAULT_ACCESS_KEY_ID,
                                                 "RawSecretAccessKey": DEFAULT_SECRET})
            self.proxy.set_credentials({DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET})

    def test_key_side_errors(self):
        """The external key changes under the KMS key; the KMS key's own
        state; a ciphertext of another key."""
        md, ext = self.create_key()
        kid = md["KeyId"]
        blob = self.kms.encrypt(KeyId=kid, Plaintext=b"k")["CiphertextBlob"]
        for fields in ({"status": "DISABLED"}, {"usage": ["DECRYPT"]}):
            with self.subTest(**fields):
                self.proxy.set_key(ext, **fields)
                self.assertKmsError("KMSInvalidStateException", self.kms.encrypt, KeyId=kid,
                                    Plaintext=b"k")
                self.proxy.set_key(ext, status="ENABLED", usage=["ENCRYPT", "DECRYPT"])
        key = self.proxy.keys[ext]
        self.proxy.remove_key(ext)
        self.assertKmsError("KMSInvalidStateException", self.kms.decrypt, CiphertextBlob=blob)
        self.proxy.add_key(ext, material=key.material)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"k")
        other, _ = self.create_key()
        self.assertKmsError("IncorrectKeyException", self.kms.decrypt, CiphertextBlob=blob,
                            KeyId=other["KeyId"])
        self.kms.disable_key(KeyId=kid)
        self.assertKmsError("DisabledException", self.kms.encrypt, KeyId=kid, Plaintext=b"k")
        self.assertKmsError("DisabledException", self.kms.decrypt, CiphertextBlob=blob)
        self.kms.enable_key(KeyId=kid)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"k")
        # Rotation is not for keys in custom key stores.
        self.assertKmsError("UnsupportedOperationException", self.kms.enable_key_rotation,
                            KeyId=kid)

    def test_old_ciphertexts_after_failure_and_restart(self):
        md, _ = self.create_key()
        blob = self.kms.encrypt(KeyId=md["KeyId"], Plaintext=b"survives")["CiphertextBlob"]
        # A connect that fails, then a recovery.
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)
        self.proxy.stop()
        self.kms.connect_custom_key_store(CustomKeyStoreId=self.cks)
        self.assertEqual(wait_state(self.kms, self.cks)["ConnectionErrorCode"],
                         "XKS_PROXY_NOT_REACHABLE")
        self.proxy.start()
        self.ensure_connected()
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"survives")
        # A restart: the store reconnects at start, and the blob still opens.
        self.server.restart()
        self.assertEqual(wait_state(self.kms, self.cks)["ConnectionState"], "CONNECTED")
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"survives")


class RealProxyTest(h.KmsdBaseTestCase):
    """kmsd and the real xks-proxy over TLS, on a SoftHSM2 token."""

    PREFIX = "/real/kms/xks/v1"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pki = x.Pki()
        cls.addClassCleanup(cls.pki.cleanup)
        cls.tokens = x.SoftToken(["kmsd-xks-token"])
        cls.addClassCleanup(cls.tokens.cleanup)
        cls.tokens.must_create_key("kmsd-key-1")
        cls.proxy = x.XksProxy(x.serve_flags(cls.tokens, cls.PREFIX, tls=cls.pki.server),
                               env=cls.tokens.env())
        cls.proxy.start()
        cls.addClassCleanup(cls.proxy.cleanup)
        cls.server = h.KmsdServer(args=[
            "--xks-ca-bundle", cls.pki.ca,
            "--xks-connect-to", "%s:443:127.0.0.1:%d" % (x.SERVER_NAME, cls.proxy.port)])
        cls.server.start()
        cls.addClassCleanup(cls.server.cleanup)
        cls.kms = h.kms_client(cls.server)

    def test_real_proxy_round_trip(self):
        cks = self.kms.create_custom_key_store(
            CustomKeyStoreName="real", CustomKeyStoreType="EXTERNAL_KEY_STORE",
            XksProxyUriEndpoint="https://" + x.SERVER_NAME, XksProxyUriPath=self.PREFIX,
            XksProxyConnectivity="PUBLIC_ENDPOINT",
            XksProxyAuthenticationCredential={"AccessKeyId": x.AKID_1,
                                              "RawSecretAccessKey": x.SECRET_1})["CustomKeyStoreId"]
        self.kms.connect_custom_key_store(CustomKeyStoreId=cks)
        self.assertEqual(wait_state(self.kms, cks)["ConnectionState"], "CONNECTED")
        self.assertKmsError("XksKeyNotFoundException", self.kms.create_key,
                            Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=cks,
                            XksKeyId="kmsd-no-such-key")
        md = self.kms.create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=cks,
                                 XksKeyId="kmsd-key-1")["KeyMetadata"]
        ctx = {"app": "real"}
        blob = self.kms.encrypt(KeyId=md["KeyId"], Plaintext=b"through the real proxy",
                                EncryptionContext=ctx)["CiphertextBlob"]
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"],
                         b"through the real proxy")
        self.server.restart()
        self.assertEqual(wait_state(self.kms, cks)["ConnectionState"], "CONNECTED")
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"],
                         b"through the real proxy")
        self.assertNotIn(x.SECRET_1, open(self.server.log_path, errors="replace").read())

    def test_aws_cli_walkthrough(self):
        """The README's steps with the real aws CLI (v1: blobs through fileb://),
        on a kmsd of its own (one proxy URI is one store per account)."""
        server = h.KmsdServer(args=self.server.args)
        server.start()
        self.addCleanup(server.cleanup)
        tmp = tempfile.mkdtemp(prefix="xks-cli-")
        self.addCleanup(lambda: __import__("shutil").rmtree(tmp, ignore_errors=True))
        cred = "AccessKeyId=%s,RawSecretAccessKey=%s" % (x.AKID_2, x.SECRET_2)
        # aws CLI v1 fetches parameter values that start with https://
        # unless told not to (the README says so too).
        config = os.path.join(tmp, "aws-config")
        with open(config, "w") as f:
            f.write("[default]\ncli_follow_urlparam = false\n")
        cks = h.aws_cli(server, "create-custom-key-store", "--custom-key-store-name", "cli",
                        "--custom-key-store-type", "EXTERNAL_KEY_STORE",
                        "--xks-proxy-uri-endpoint", "https://" + x.SERVER_NAME,
                        "--xks-proxy-uri-path", self.PREFIX,
                        "--xks-proxy-connectivity", "PUBLIC_ENDPOINT",
                        "--xks-proxy-authentication-credential", cred,
                        env_extra={"AWS_CONFIG_FILE": config})["CustomKeyStoreId"]
        h.aws_cli(server, "connect-custom-key-store", "--custom-key-store-id", cks)
        self.assertEqual(wait_state(h.kms_client(server), cks)["ConnectionState"], "CONNECTED")
        listed = h.aws_cli(server, "describe-custom-key-stores", "--custom-key-store-id",
                           cks)["CustomKeyStores"][0]
        self.assertEqual(listed["XksProxyConfiguration"]["AccessKeyId"], x.AKID_2)
        self.assertNotIn(x.SECRET_2, json.dumps(listed))
        self.tokens.must_create_key("kmsd-cli-key")
        key = h.aws_cli(server, "create-key", "--origin", "EXTERNAL_KEY_STORE",
                        "--custom-key-store-id", cks, "--xks-key-id",
                        "kmsd-cli-key")["KeyMetadata"]["KeyId"]
        pt = os.path.join(tmp, "secret.txt")
        with open(pt, "wb") as f:
            f.write(b"a secret for the external key store\n")
        blob = h.aws_cli(server, "encrypt", "--key-id", key, "--plaintext", "fileb://" + pt,
                         "--query", "CiphertextBlob", "--output", "text")
        ct = os.path.join(tmp, "secret.enc")
        with open(ct, "wb") as f:
            f.write(base64.b64decode(blob))
        out = h.aws_cli(server, "decrypt", "--ciphertext-blob", "fileb://" + ct,
                        "--query", "Plaintext", "--output", "text")
        self.assertEqual(base64.b64decode(out), b"a secret for the external key store\n")


if __name__ == "__main__":
    unittest.main()
