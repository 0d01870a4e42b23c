"""CloudHSM key stores end to end: the six custom key store operations, keys
in a store, every model error of those operations (and of CreateKey and
GenerateRandom with a store), the ten CloudHSM ConnectionErrorCodes, and
ciphertexts that survive a restart and an HSM replacement.

Clusters are built for real through the CloudHSMv2 API and the KmsdHsmAdmin
API (cloudhsm_fixture); every HSM is a SoftHSM2 token."""

import base64
import unittest

import kmsd_harness as h
import cloudhsm_fixture as fx


class CloudHsmKeyStoreTest(h.KmsdBaseTestCase):
    """One kmsd and one active two-zone cluster with a connected store,
    shared by the class; tests that break things use their own clusters."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = h.KmsdServer(args=["--enable-admin-api"])
        try:
            cls.server.start()
            cls.kms = h.kms_client(cls.server)
            cls.hsm = fx.cloudhsm_client(cls.server)
            cls.ca = fx.CertificateAuthority()
            cls.cluster = fx.make_cluster(cls.server, cls.ca)
            cls.cks_id = fx.create_store(cls.kms, cls.cluster, "main-store")
            entry = fx.connect(cls.kms, cls.cks_id)
            assert entry["ConnectionState"] == "CONNECTED", entry
        except Exception:
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        super().tearDownClass()

    def hsm_key(self, **kwargs):
        return self.kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=self.cks_id,
                                   **kwargs)["KeyMetadata"]

    # ---------------------------------------------------------- happy path

    def test_describe_shows_store_without_password(self):
        entry = fx.store_entry(self.kms, self.cks_id)
        self.assertEqual(entry["CustomKeyStoreName"], "main-store")
        self.assertEqual(entry["CustomKeyStoreType"], "AWS_CLOUDHSM")
        self.assertEqual(entry["CloudHsmClusterId"], self.cluster.id)
        self.assertEqual(entry["ConnectionState"], "CONNECTED")
        self.assertNotIn("ConnectionErrorCode", entry)
        self.assertIn("BEGIN CERTIFICATE", entry["TrustAnchorCertificate"])
        self.assertRegex(entry["CustomKeyStoreId"], r"^cks-[0-9a-f]{17}$")
        self.assertIn("CreationDate", entry)
        # By name, and in the list of all; never a password anywhere.
        by_name = self.kms.describe_custom_key_stores(CustomKeyStoreName="main-store")
        self.assertEqual(by_name["CustomKeyStores"][0]["CustomKeyStoreId"], self.cks_id)
        status, _, raw = h.kms_call(self.server, "DescribeCustomKeyStores")
        self.assertEqual(status, 200)
        self.assertNotIn("Password", str(raw))
        self.assertNotIn(fx.KMSUSER_PASSWORD, str(raw))
        with open(self.server.log_path, errors="replace") as f:
            self.assertNotIn(fx.KMSUSER_PASSWORD, f.read())

    def test_key_in_store_crypto_round_trips(self):
        md = self.hsm_key(Description="hsm key")
        self.assertEqual(md["Origin"], "AWS_CLOUDHSM")
        self.assertEqual(md["CustomKeyStoreId"], self.cks_id)
        self.assertEqual(md["CloudHsmClusterId"], self.cluster.id)
        self.assertEqual(md["KeyState"], "Enabled")
        again = self.kms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]
        self.assertEqual(again["CloudHsmClusterId"], self.cluster.id)
        ctx = {"purpose": "test"}
        ct = self.kms.encrypt(KeyId=md["KeyId"], Plaintext=b"secret data",
                              EncryptionContext=ctx)["CiphertextBlob"]
        pt = self.kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)
        self.assertEqual(pt["Plaintext"], b"secret data")
        self.assertEqual(pt["KeyId"], md["Arn"])
        self.assertKmsError("InvalidCiphertextException", self.kms.decrypt, CiphertextBlob=ct,
                            EncryptionContext={"purpose": "other"})
        tampered = bytearray(ct)
        tampered[-1] ^= 1
        self.assertKmsError("InvalidCiphertextException", self.kms.decrypt,
                            CiphertextBlob=bytes(tampered), EncryptionContext=ctx)
        # ReEncrypt to a local key and back into the HSM key.
        local = self.kms.create_key()["KeyMetadata"]["KeyId"]
        re1 = self.kms.re_encrypt(CiphertextBlob=ct, SourceEncryptionContext=ctx,
                                  DestinationKeyId=local)
        re2 = self.kms.re_encrypt(CiphertextBlob=re1["CiphertextBlob"],
                                  DestinationKeyId=md["KeyId"])
        self.assertEqual(self.kms.decrypt(CiphertextBlob=re2["CiphertextBlob"])["Plaintext"],
                         b"secret data")
        dk = self.kms.generate_data_key(KeyId=md["KeyId"], KeySpec="AES_256")
        self.assertEqual(len(dk["Plaintext"]), 32)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"],
                         dk["Plaintext"])
        dk2 = self.kms.generate_data_key_without_plaintext(KeyId=md["KeyId"], NumberOfBytes=64)
        self.assertNotIn("Plaintext", dk2)
        self.assertEqual(len(self.kms.decrypt(CiphertextBlob=dk2["CiphertextBlob"])["Plaintext"]), 64)
        rnd = self.kms.generate_random(NumberOfBytes=48, CustomKeyStoreId=self.cks_id)
        self.assertEqual(len(rnd["Plaintext"]), 48)

    def test_store_id_without_origin_and_rotation_unsupported(self):
        md = self.kms.create_key(CustomKeyStoreId=self.cks_id)["KeyMetadata"]
        self.assertEqual(md["Origin"], "AWS_CLOUDHSM")
        self.assertKmsError("UnsupportedOperationException", self.kms.enable_key_rotation,
                            KeyId=md["KeyId"])
        self.assertKmsError("UnsupportedOperationException", self.kms.rotate_key_on_demand,
                            KeyId=md["KeyId"])
        self.assertKmsError("ValidationException", self.kms.create_key, Origin="AWS_CLOUDHSM")
        self.assertKmsError("UnsupportedOperationException", self.kms.create_key,
                            Origin="AWS_KMS", CustomKeyStoreId=self.cks_id)

    def test_update_name_while_connected_only(self):
        cks = self.cks_id
        self.kms.update_custom_key_store(CustomKeyStoreId=cks, NewCustomKeyStoreName="renamed")
        self.assertEqual(fx.store_entry(self.kms, cks)["CustomKeyStoreName"], "renamed")
        self.kms.update_custom_key_store(CustomKeyStoreId=cks, NewCustomKeyStoreName="main-store")
        self.assertKmsError("CustomKeyStoreInvalidStateException",
                            self.kms.update_custom_key_store, CustomKeyStoreId=cks,
                            KeyStorePassword="another-password")

    # -------------------------------------------------------------- errors

    def test_create_store_errors(self):
        kms, c = self.kms, self.cluster
        self.assertKmsError("CustomKeyStoreNameInUseException", kms.create_custom_key_store,
                            CustomKeyStoreName="main-store", CloudHsmClusterId=c.id,
                            TrustAnchorCertificate=c.trust_anchor, KeyStorePassword="password1")
        self.assertKmsError("CloudHsmClusterNotFoundException", kms.create_custom_key_store,
                            CustomKeyStoreName="x1", CloudHsmClusterId="cluster-aaaaaaaaaaa",
                            TrustAnchorCertificate=c.trust_anchor, KeyStorePassword="password1")
        self.assertKmsError("CloudHsmClusterInUseException", kms.create_custom_key_store,
                            CustomKeyStoreName="x2", CloudHsmClusterId=c.id,
                            TrustAnchorCertificate=c.trust_anchor, KeyStorePassword="password1")
        uninit = fx.make_cluster(self.server, self.ca, hsm_zones=(), initialize=False)
        self.assertKmsError("CloudHsmClusterNotActiveException", kms.create_custom_key_store,
                            CustomKeyStoreName="x3", CloudHsmClusterId=uninit.id,
                            TrustAnchorCertificate=c.trust_anchor, KeyStorePassword="password1")
        one = fx.make_cluster(self.server, self.ca, hsm_zones=(0,))
        self.assertKmsError("CloudHsmClusterInvalidConfigurationException",
                            kms.create_custom_key_store, CustomKeyStoreName="x4",
                            CloudHsmClusterId=one.id, TrustAnchorCertificate=one.trust_anchor,
                            KeyStorePassword="password1")
        same_zone = fx.make_cluster(self.server, self.ca, hsm_zones=(0, 0))
        self.assertKmsError("CloudHsmClusterInvalidConfigurationException",
                            kms.create_custom_key_store, CustomKeyStoreName="x5",
                            CloudHsmClusterId=same_zone.id,
                            TrustAnchorCertificate=same_zone.trust_anchor,
                            KeyStorePassword="password1")
        other_ca = fx.CertificateAuthority()
        two = fx.make_cluster(self.server, self.ca)
        self.assertKmsError("IncorrectTrustAnchorException", kms.create_custom_key_store,
                            CustomKeyStoreName="x6", CloudHsmClusterId=two.id,
                            TrustAnchorCertificate=other_ca.pem, KeyStorePassword="password1")
        # An external key store needs its Xks* members (test_xks_keystores.py).
        self.assertKmsError("ValidationException", kms.create_custom_key_store,
                            CustomKeyStoreName="x7", CustomKeyStoreType="EXTERNAL_KEY_STORE")
        # The right anchor works, and the cluster is then in use.
        cks = fx.create_store(kms, two, "x6")
        self.assertKmsError("CloudHsmClusterInUseException", kms.create_custom_key_store,
                            CustomKeyStoreName="x8", CloudHsmClusterId=two.id,
                            TrustAnchorCertificate=two.trust_anchor, KeyStorePassword="password1")
        kms.delete_custom_key_store(CustomKeyStoreId=cks)

    def test_not_found_everywhere(self):
        kms, missing = self.kms, "cks-0123456789abcdef0"
        for op in (kms.connect_custom_key_store, kms.disconnect_custom_key_store,
                   kms.delete_custom_key_store):
            self.assertKmsError("CustomKeyStoreNotFoundException", op, CustomKeyStoreId=missing)
        self.assertKmsError("CustomKeyStoreNotFoundException", kms.update_custom_key_store,
                            CustomKeyStoreId=missing, NewCustomKeyStoreName="n")
        self.assertKmsError("CustomKeyStoreNotFoundException", kms.describe_custom_key_stores,
                            CustomKeyStoreId=missing)
        self.assertKmsError("CustomKeyStoreNotFoundException", kms.describe_custom_key_stores,
                            CustomKeyStoreName="no-such-store")
        self.assertKmsError("CustomKeyStoreNotFoundException", kms.create_key,
                            Origin="AWS_CLOUDHSM", CustomKeyStoreId=missing)
        self.assertKmsError("CustomKeyStoreNotFoundException", kms.generate_random,
                            NumberOfBytes=8, CustomKeyStoreId=missing)
        self.assertKmsError("InvalidMarkerException", kms.describe_custom_key_stores,
                            Marker="not-a-marker")

    def test_create_key_unsupported_spec(self):
        self.assertKmsError("UnsupportedOperationException", self.kms.create_key,
                            Origin="AWS_CLOUDHSM", CustomKeyStoreId=self.cks_id,
                            KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")

    def test_disconnected_store_rules(self):
        """Own cluster: disconnect, Unavailable keys, the state table, delete rules."""
        kms = self.kms
        cluster = fx.make_cluster(self.server, self.ca)
        cks = fx.create_store(kms, cluster, "rules-store")
        self.assertEqual(fx.store_entry(kms, cks)["ConnectionState"], "DISCONNECTED")
        self.assertKmsError("CustomKeyStoreInvalidStateException",
                            kms.disconnect_custom_key_store, CustomKeyStoreId=cks)
        self.assertKmsError("CustomKeyStoreInvalidStateException", kms.create_key,
                            Origin="AWS_CLOUDHSM", CustomKeyStoreId=cks)
        self.assertKmsError("CustomKeyStoreInvalidStateException", kms.generate_random,
                            NumberOfBytes=8, CustomKeyStoreId=cks)
        self.assertEqual(fx.connect(kms, cks)["ConnectionState"], "CONNECTED")
        kms.connect_custom_key_store(CustomKeyStoreId=cks)  # no-op while CONNECTED
        key = kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=cks)["KeyMetadata"]["KeyId"]
        ct = kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
        self.assertKmsError("CustomKeyStoreInvalidStateException", kms.delete_custom_key_store,
                            CustomKeyStoreId=cks)
        kms.disconnect_custom_key_store(CustomKeyStoreId=cks)
        self.assertEqual(fx.store_entry(kms, cks)["ConnectionState"], "DISCONNECTED")
        self.assertEqual(kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"], "Unavailable")
        self.assertKmsError("KMSInvalidStateException", kms.encrypt, KeyId=key, Plaintext=b"x")
        self.assertKmsError("KMSInvalidStateException", kms.decrypt, CiphertextBlob=ct)
        self.assertKmsError("KMSInvalidStateException", kms.generate_data_key, KeyId=key,
                            KeySpec="AES_256")
        # Password change only while disconnected (now allowed); wrong one -> FAILED.
        kms.update_custom_key_store(CustomKeyStoreId=cks, KeyStorePassword="wrong-password")
        self.assertEqual(fx.connect(kms, cks)["ConnectionErrorCode"], "INVALID_CREDENTIALS")
        self.assertKmsError("CustomKeyStoreInvalidStateException", kms.connect_custom_key_store,
                            CustomKeyStoreId=cks)
        self.assertKmsError("CustomKeyStoreInvalidStateException", kms.update_custom_key_store,
                            CustomKeyStoreId=cks, NewCustomKeyStoreName="renamed")
        kms.disconnect_custom_key_store(CustomKeyStoreId=cks)
        # A key pending deletion still counts.
        kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
        self.assertKmsError("CustomKeyStoreHasCMKsException", kms.delete_custom_key_store,
                            CustomKeyStoreId=cks)

    def test_update_cluster_errors(self):
        kms = self.kms
        cluster = fx.make_cluster(self.server, self.ca)
        cks = fx.create_store(kms, cluster, "update-store")
        unrelated = fx.make_cluster(self.server, self.ca)
        self.assertKmsError("CloudHsmClusterNotFoundException", kms.update_custom_key_store,
                            CustomKeyStoreId=cks, CloudHsmClusterId="cluster-bbbbbbbbbbb")
        self.assertKmsError("CloudHsmClusterNotRelatedException", kms.update_custom_key_store,
                            CustomKeyStoreId=cks, CloudHsmClusterId=unrelated.id)
        self.assertKmsError("CustomKeyStoreNameInUseException", kms.update_custom_key_store,
                            CustomKeyStoreId=cks, NewCustomKeyStoreName="main-store")
        kms.delete_custom_key_store(CustomKeyStoreId=cks)
        self.assertKmsError("CustomKeyStoreNotFoundException", kms.describe_custom_key_stores,
                            CustomKeyStoreId=cks)

    def test_connect_errors_synchronous(self):
        kms = self.kms
        cluster = fx.make_cluster(self.server, self.ca)
        cks = fx.create_store(kms, cluster, "sync-errors")
        # Two active HSMs left, both in one zone: invalid configuration.
        hsm_b = cluster.hsm_ids[1]
        fx.create_hsm(self.hsm, cluster.id, cluster.zones[0])
        fx.delete_hsm(self.hsm, cluster.id, hsm_b)
        self.assertKmsError("CloudHsmClusterInvalidConfigurationException",
                            kms.connect_custom_key_store, CustomKeyStoreId=cks)
        fx.create_hsm(self.hsm, cluster.id, cluster.zones[1])
        self.assertEqual(fx.connect(kms, cks)["ConnectionState"], "CONNECTED")
        # CreateKey needs two active HSMs in two zones.
        for x in fx.active_hsms(self.hsm, cluster.id)[1:]:
            fx.delete_hsm(self.hsm, cluster.id, x["HsmId"])
        self.assertKmsError("CloudHsmClusterInvalidConfigurationException", kms.create_key,
                            Origin="AWS_CLOUDHSM", CustomKeyStoreId=cks)
        kms.disconnect_custom_key_store(CustomKeyStoreId=cks)
        kms.delete_custom_key_store(CustomKeyStoreId=cks)


class HsmKeyCacheBoundsTest(h.KmsdBaseTestCase):
    """kmsd keeps working copies of HSM keys (--hsm-key-cache, per HSM).  By
    default repeated requests are served from them (/health counts hits);
    with one slot, two keys replace each other's copy; with none, every
    request finds the key in the HSM (/health says null).  Either way every
    request works, and a reconnect (a new login, whose copies are new) keeps
    old ciphertexts decrypting."""

    def hsm_cache_counts(self, server):
        status, _, body = server.raw_request("GET", "/health")
        self.assertEqual(status, 200)
        return h.parse_body(body)["hsmKeyCache"]

    def check_cache(self, bound):
        flags = ["--hsm-key-cache", bound] if bound is not None else []
        server = h.KmsdServer(args=["--enable-admin-api"] + flags)
        try:
            server.start()
            kms = h.kms_client(server)
            cluster = fx.make_cluster(server, fx.CertificateAuthority())
            cks = fx.create_store(kms, cluster, "cache-%s" % (bound or "default"))
            self.assertEqual(fx.connect(kms, cks)["ConnectionState"], "CONNECTED")
            keys = [kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=cks)["KeyMetadata"]["Arn"]
                    for _ in range(2)]
            blobs = []
            for i in range(6):
                key = keys[i % 2]
                data = b"round %d" % i
                blob = kms.encrypt(KeyId=key, Plaintext=data)["CiphertextBlob"]
                out = kms.decrypt(CiphertextBlob=blob)
                self.assertEqual((out["Plaintext"], out["KeyId"]), (data, key))
                blobs.append((blob, data))
            for _ in range(4):  # one key again and again: served from its copies
                kms.encrypt(KeyId=keys[0], Plaintext=b"again")
            counts = self.hsm_cache_counts(server)
            if bound == "0":
                self.assertIsNone(counts)
            else:
                self.assertGreaterEqual(counts["hits"] + counts["misses"], 16)
                self.assertGreater(counts["misses"], 0)
                if bound is None:
                    self.assertGreater(counts["hits"], 0)
            kms.disconnect_custom_key_store(CustomKeyStoreId=cks)
            fx.wait_store_state(kms, cks, ("DISCONNECTED",))
            self.assertKmsError("KMSInvalidStateException", kms.decrypt, CiphertextBlob=blobs[0][0])
            self.assertEqual(fx.connect(kms, cks)["ConnectionState"], "CONNECTED")
            for blob, data in blobs:
                self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], data)
        finally:
            server.cleanup()

    def test_default(self):
        self.check_cache(None)

    def test_one_slot(self):
        self.check_cache("1")

    def test_no_cache(self):
        self.check_cache("0")


if __name__ == "__main__":
    unittest.main()
