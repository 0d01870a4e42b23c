"""CloudHSM key store connections: each of the ten CloudHSM ConnectionErrorCodes
provoked for real (hsm-cli's admin operations, DeleteHsm, DeleteCluster), read
from DescribeCustomKeyStores, then disconnect, repair, reconnect and CONNECTED.
Plus ciphertexts that survive a kmsd restart and an HSM replacement, and a
restarted kmsd whose HSMs refuse the stored kmsuser password: the store stays
CONNECTED, the node tries its login once (not once a second, and never toward
the lockout) until the store's row changes."""

import time
import unittest

import kmsd_harness as h
import cloudhsm_fixture as fx


class ConnectionErrorCodesTest(h.KmsdBaseTestCase):
    """One kmsd, one cluster and store per test (each test breaks its cluster)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # A store per test, more tests than AWS's default quota of 10.
        cls.server = h.KmsdServer(args=["--enable-admin-api", "--max-custom-key-stores", "20"])
        try:
            cls.server.start()
            cls.kms = h.kms_client(cls.server)
            cls.hsm = fx.cloudhsm_client(cls.server)
            cls.ca = fx.CertificateAuthority()
        except Exception:
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        super().tearDownClass()

    def setUp(self):
        self.cluster = fx.make_cluster(self.server, self.ca)
        self.cks = fx.create_store(self.kms, self.cluster, "store-" + self.cluster.id)
        self.assertEqual(fx.connect(self.kms, self.cks)["ConnectionState"], "CONNECTED")
        self.key = self.kms.create_key(Origin="AWS_CLOUDHSM",
                                       CustomKeyStoreId=self.cks)["KeyMetadata"]["KeyId"]
        self.ct = self.kms.encrypt(KeyId=self.key, Plaintext=b"before")["CiphertextBlob"]
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)

    def admin(self, op, **params):
        return fx.admin_ok(self.server, op, ClusterId=self.cluster.id, **params)

    def expect_failure(self, code):
        entry = fx.connect(self.kms, self.cks)
        self.assertEqual(entry["ConnectionState"], "FAILED", entry)
        self.assertEqual(entry.get("ConnectionErrorCode"), code, entry)
        self.assertEqual(self.kms.describe_key(KeyId=self.key)["KeyMetadata"]["KeyState"],
                         "Unavailable")
        # FAILED -> Connect is refused; Disconnect is the way back.
        self.assertKmsError("CustomKeyStoreInvalidStateException",
                            self.kms.connect_custom_key_store, CustomKeyStoreId=self.cks)
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)
        self.assertEqual(fx.store_entry(self.kms, self.cks)["ConnectionState"], "DISCONNECTED")

    def expect_connected(self):
        entry = fx.connect(self.kms, self.cks)
        self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
        self.assertNotIn("ConnectionErrorCode", entry)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=self.ct)["Plaintext"], b"before")

    def set_kmsuser_password(self, password):
        """hsm-cli user change-password, then tell KMS (UpdateCustomKeyStore)."""
        self.admin("ChangePassword", Username=fx.KMSUSER, Password=password)
        self.kms.update_custom_key_store(CustomKeyStoreId=self.cks, KeyStorePassword=password)

    def simulated(self, kind, code):
        self.admin("SimulateFailure", Kind=kind)
        self.expect_failure(code)
        self.admin("SimulateFailure", Kind="none")
        self.expect_connected()

    def test_network_errors(self):
        self.simulated("network-errors", "NETWORK_ERRORS")

    def test_subnet_not_found(self):
        self.simulated("subnet-not-found", "SUBNET_NOT_FOUND")

    def test_insufficient_free_addresses(self):
        self.simulated("no-free-addresses", "INSUFFICIENT_FREE_ADDRESSES_IN_SUBNET")

    def test_internal_error(self):
        self.simulated("internal-error", "INTERNAL_ERROR")

    def test_user_not_found(self):
        self.admin("DeleteUser", Username=fx.KMSUSER)
        self.expect_failure("USER_NOT_FOUND")
        self.admin("CreateUser", Username=fx.KMSUSER, Role="crypto-user", Password="recreated-pw1")
        self.kms.update_custom_key_store(CustomKeyStoreId=self.cks, KeyStorePassword="recreated-pw1")
        self.expect_connected()

    def test_invalid_credentials(self):
        self.kms.update_custom_key_store(CustomKeyStoreId=self.cks, KeyStorePassword="not-the-pw")
        self.expect_failure("INVALID_CREDENTIALS")
        self.set_kmsuser_password("fixed-password1")
        self.expect_connected()

    def test_user_locked_out(self):
        for _ in range(5):
            status, parsed = fx.admin(self.server, "Login", ClusterId=self.cluster.id,
                                      Username=fx.KMSUSER, Password="wrong-password")
            self.assertEqual(status, 400)
            self.assertEqual(h.error_type(parsed), "CloudHsmAccessDeniedException")
        self.expect_failure("USER_LOCKED_OUT")
        self.set_kmsuser_password("unlocked-pw-1")  # change-password also unlocks
        self.expect_connected()

    def test_user_logged_in(self):
        self.set_kmsuser_password("known-pw-12")
        self.admin("Login", Username=fx.KMSUSER, Password="known-pw-12")
        self.expect_failure("USER_LOGGED_IN")
        self.admin("Logout", Username=fx.KMSUSER)
        self.expect_connected()

    def test_refused_password_after_a_restart_is_tried_once(self):
        self.expect_connected()
        # kmsuser's password changed on the HSMs behind KMS's back, then a
        # restart: the node must log in again, and the HSMs refuse it.
        self.admin("ChangePassword", Username=fx.KMSUSER, Password="behind-kms-1")
        self.server.restart()
        for _ in range(8):
            self.assertKmsError("KMSInvalidStateException", self.kms.decrypt,
                                CiphertextBlob=self.ct)
            time.sleep(0.5)
        self.assertEqual(fx.store_entry(self.kms, self.cks)["ConnectionState"], "CONNECTED")
        status, _, body = self.server.raw_request("GET", "/health")
        self.assertEqual((status, h.parse_body(body)["customKeyStores"]), (200, {"unreachable": 1}))
        with open(self.server.log_path, errors="replace") as f:
            log = f.read()
        refused = "custom key store %s is CONNECTED, but this node cannot open its connection " \
                  "(INVALID_CREDENTIALS)" % self.cks
        self.assertEqual(log.count(refused), 1, "tried more than once on an unchanged row")
        # Nothing counted toward the lockout: told the password, the store
        # connects (a locked kmsuser would be USER_LOCKED_OUT).
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)
        self.kms.update_custom_key_store(CustomKeyStoreId=self.cks, KeyStorePassword="behind-kms-1")
        self.expect_connected()

    def test_insufficient_cloudhsm_hsms(self):
        for x in fx.active_hsms(self.hsm, self.cluster.id):
            fx.delete_hsm(self.hsm, self.cluster.id, x["HsmId"])
        self.expect_failure("INSUFFICIENT_CLOUDHSM_HSMS")
        # New HSMs get every key of the cluster back (from its backups).
        fx.create_hsm(self.hsm, self.cluster.id, self.cluster.zones[0])
        fx.create_hsm(self.hsm, self.cluster.id, self.cluster.zones[1])
        self.expect_connected()

    def test_cluster_not_found(self):
        backups = self.hsm.describe_backups(Filters={"clusterIds": [self.cluster.id]})["Backups"]
        self.assertTrue(backups, "the cluster has no backup to restore from")
        for x in fx.active_hsms(self.hsm, self.cluster.id):
            fx.delete_hsm(self.hsm, self.cluster.id, x["HsmId"])
        self.hsm.delete_cluster(ClusterId=self.cluster.id)
        fx.wait_for("cluster deleted",
                    lambda: fx.describe_cluster(self.hsm, self.cluster.id) is None
                    or fx.describe_cluster(self.hsm, self.cluster.id)["State"] == "DELETED")
        self.expect_failure("CLUSTER_NOT_FOUND")
        # Repair: a cluster restored from the backup is related; move the store to it.
        restored = fx.make_cluster(self.server, self.ca, hsm_zones=(0, 1),
                                   source_backup_id=backups[-1]["BackupId"])
        fx.wait_cluster_state(self.hsm, restored.id, "ACTIVE")
        self.kms.update_custom_key_store(CustomKeyStoreId=self.cks, CloudHsmClusterId=restored.id)
        self.cluster = restored
        self.set_kmsuser_password("restored-pw-1")
        self.expect_connected()
        self.assertEqual(self.kms.describe_key(KeyId=self.key)["KeyMetadata"]["CloudHsmClusterId"],
                         restored.id)


class DurabilityTest(h.KmsdBaseTestCase):
    """Ciphertexts made before a restart or an HSM replacement still decrypt."""

    def test_restart_and_hsm_replacement(self):
        server = self.start_server(args=["--enable-admin-api"])
        kms, hsm = h.kms_client(server), fx.cloudhsm_client(server)
        ca = fx.CertificateAuthority()
        cluster = fx.make_cluster(server, ca)
        cks = fx.create_store(kms, cluster, "durable")
        self.assertEqual(fx.connect(kms, cks)["ConnectionState"], "CONNECTED")
        key = kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=cks)["KeyMetadata"]["KeyId"]
        ctx = {"k": "v"}
        ct = kms.encrypt(KeyId=key, Plaintext=b"survives", EncryptionContext=ctx)["CiphertextBlob"]

        server.restart()
        kms, hsm = h.kms_client(server), fx.cloudhsm_client(server)
        entry = fx.wait_store_state(kms, cks, ("CONNECTED", "FAILED"))
        self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
        self.assertEqual(kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)["Plaintext"],
                         b"survives")

        # Replace every HSM: new ones first, then the old ones go.
        old = [x["HsmId"] for x in fx.active_hsms(hsm, cluster.id)]
        fx.create_hsm(hsm, cluster.id, cluster.zones[0])
        fx.create_hsm(hsm, cluster.id, cluster.zones[1])
        for hsm_id in old:
            fx.delete_hsm(hsm, cluster.id, hsm_id)
        kms.disconnect_custom_key_store(CustomKeyStoreId=cks)
        self.assertEqual(fx.connect(kms, cks)["ConnectionState"], "CONNECTED")
        self.assertEqual(kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)["Plaintext"],
                         b"survives")
        ct2 = kms.encrypt(KeyId=key, Plaintext=b"after")["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=ct2)["Plaintext"], b"after")


if __name__ == "__main__":
    unittest.main()
