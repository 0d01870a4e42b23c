"""Custom key stores at their limits: the per-account quota
(LimitExceededException), a store database another process has locked
(KMSInternalException for the key-store operations and CreateKey in a
store, with nothing changed), and a cluster without a reachable HSM
(KeyUnavailableException for the keys' cryptographic operations).

Clusters are real (CloudHSMv2 API, SoftHSM2 tokens), as in test_cks."""

import os
import time
import unittest

import kmsd_harness as h
import cloudhsm_fixture as fx


class CustomKeyStoreQuotaTest(h.KmsdBaseTestCase):
    """kmsd --max-custom-key-stores 1: the second store of an account fails."""

    def test_quota(self):
        server = self.start_server(args=["--enable-admin-api", "--max-custom-key-stores", "1"])
        kms = h.kms_client(server)
        ca = fx.CertificateAuthority()
        first = fx.make_cluster(server, ca)
        second = fx.make_cluster(server, ca)
        store = fx.create_store(kms, first, "quota-first")
        err = self.assertKmsError("LimitExceededException", fx.create_store, kms, second,
                                  "quota-second")
        self.assertIn("limit is 1", err["Message"])
        names = [s["CustomKeyStoreName"] for s in
                 kms.describe_custom_key_stores()["CustomKeyStores"]]
        self.assertEqual(names, ["quota-first"])
        # The quota counts stores that exist: delete one, and there is room again.
        kms.delete_custom_key_store(CustomKeyStoreId=store)
        fx.create_store(kms, second, "quota-second")


class LockedStoreDatabaseTest(h.KmsdBaseTestCase):
    """Another process holds the database's write lock past kmsd's busy
    timeout: every custom key store operation that must write fails with a
    retryable KMSInternalException (HTTP 500) and changes nothing.

    kmsd runs with a short --db-busy-timeout so that each call gives up
    after 300 ms instead of the default 10 s."""

    BUSY_TIMEOUT_MS = 300

    def test_writes_fail_cleanly_while_locked(self):
        server = self.start_server(args=["--enable-admin-api", "--db-busy-timeout",
                                         str(self.BUSY_TIMEOUT_MS)])
        kms = h.kms_client(server)
        ca = fx.CertificateAuthority()
        cluster = fx.make_cluster(server, ca)
        spare = fx.make_cluster(server, ca)
        idle = fx.create_store(kms, cluster, "locked-idle")
        busy_cluster = fx.make_cluster(server, ca)
        busy = fx.create_store(kms, busy_cluster, "locked-busy")
        self.assertEqual(fx.connect(kms, busy)["ConnectionState"], "CONNECTED")

        keys_before = kms.list_keys()["Keys"]

        with h.store_write_locked(server.data_dir):
            calls = [
                ("CreateCustomKeyStore", lambda: fx.create_store(kms, spare, "locked-new")),
                ("UpdateCustomKeyStore", lambda: kms.update_custom_key_store(
                    CustomKeyStoreId=idle, NewCustomKeyStoreName="locked-renamed")),
                ("ConnectCustomKeyStore", lambda: kms.connect_custom_key_store(
                    CustomKeyStoreId=idle)),
                ("DisconnectCustomKeyStore", lambda: kms.disconnect_custom_key_store(
                    CustomKeyStoreId=busy)),
                ("DeleteCustomKeyStore", lambda: kms.delete_custom_key_store(
                    CustomKeyStoreId=idle)),
                # The key is made in the HSMs first; kmsd removes it again when
                # the row cannot be written.
                ("CreateKey", lambda: kms.create_key(CustomKeyStoreId=busy,
                                                     Origin="AWS_CLOUDHSM")),
            ]
            for name, call in calls:
                with self.subTest(operation=name):
                    started = time.monotonic()
                    err = self.assertKmsError("KMSInternalException", call)
                    self.assertNotIn(fx.KMSUSER_PASSWORD, err["Message"])
                    # The flag, not the 10 s default, decided how long it waited.
                    self.assertLess(time.monotonic() - started, 5.0)

        # Nothing changed: the same two stores, in the same states, names intact.
        stores = {s["CustomKeyStoreId"]: s for s in
                  kms.describe_custom_key_stores()["CustomKeyStores"]}
        self.assertEqual(set(stores), {idle, busy})
        self.assertEqual(stores[idle]["CustomKeyStoreName"], "locked-idle")
        self.assertEqual(stores[idle]["ConnectionState"], "DISCONNECTED")
        self.assertEqual(stores[busy]["ConnectionState"], "CONNECTED")
        self.assertEqual(kms.list_keys()["Keys"], keys_before)
        # And kmsd works again once the lock is gone.
        kms.update_custom_key_store(CustomKeyStoreId=idle, NewCustomKeyStoreName="locked-renamed")
        self.assertEqual(fx.store_entry(kms, idle)["CustomKeyStoreName"], "locked-renamed")


class NoReachableHsmTest(h.KmsdBaseTestCase):
    """A connected store whose cluster has lost every HSM: its keys are
    KeyUnavailableException for every cryptographic operation (the store stays
    CONNECTED, as in AWS), and they come back when an HSM is added again,
    because a new HSM is restored with the cluster's keys."""

    def test_key_unavailable_until_an_hsm_returns(self):
        server = self.start_server(args=["--enable-admin-api"])
        kms = h.kms_client(server)
        hsm = fx.cloudhsm_client(server)
        ca = fx.CertificateAuthority()
        cluster = fx.make_cluster(server, ca)
        store = fx.create_store(kms, cluster, "no-hsm")
        self.assertEqual(fx.connect(kms, store)["ConnectionState"], "CONNECTED")
        key = kms.create_key(CustomKeyStoreId=store, Origin="AWS_CLOUDHSM")["KeyMetadata"]["KeyId"]
        other = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"kept in the HSMs")["CiphertextBlob"]
        other_blob = kms.encrypt(KeyId=other, Plaintext=b"elsewhere")["CiphertextBlob"]

        for x in fx.active_hsms(hsm, cluster.id):
            fx.delete_hsm(hsm, cluster.id, x["HsmId"])
        self.assertEqual(fx.active_hsms(hsm, cluster.id), [])

        calls = [
            ("Encrypt", lambda: kms.encrypt(KeyId=key, Plaintext=b"x")),
            ("Decrypt", lambda: kms.decrypt(CiphertextBlob=blob)),
            ("ReEncrypt from", lambda: kms.re_encrypt(CiphertextBlob=blob,
                                                      DestinationKeyId=other)),
            ("ReEncrypt to", lambda: kms.re_encrypt(CiphertextBlob=other_blob,
                                                    DestinationKeyId=key)),
            ("GenerateDataKey", lambda: kms.generate_data_key(KeyId=key, KeySpec="AES_256")),
            ("GenerateDataKeyWithoutPlaintext", lambda: kms.generate_data_key_without_plaintext(
                KeyId=key, KeySpec="AES_256")),
        ]
        for name, call in calls:
            with self.subTest(operation=name):
                err = self.assertKmsError("KeyUnavailableException", call)
                self.assertIn(cluster.id, err["Message"])
                self.assertNotIn(fx.KMSUSER_PASSWORD, err["Message"])
        # The key itself and the store are unchanged; only the HSMs are gone.
        self.assertEqual(kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"], "Enabled")
        self.assertEqual(fx.store_entry(kms, store)["ConnectionState"], "CONNECTED")

        fx.create_hsm(hsm, cluster.id, cluster.zones[0])
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"kept in the HSMs")
        again = kms.encrypt(KeyId=key, Plaintext=b"again")["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=again)["Plaintext"], b"again")


if __name__ == "__main__":
    unittest.main()
