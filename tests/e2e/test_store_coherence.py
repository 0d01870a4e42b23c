"""test_store_coherence - a change to a key is seen by the very next request,
whether kmsd made it or something else wrote the database.

kmsd keeps caches in front of its store (resolved keys by the store's change
stamp, unwrapped key material by material id, parsed key policies by policy
version; docs/storage.md).  Each is only worth having if it
can never serve a request from a state that has changed, and the store may
be written by more than the kmsd that serves it: an operator's `sqlite3`
shell today, other nodes once the store is shared.  For each kind of change
(a key disabled, deleted, re-policied, rotated, re-aliased, its custom key
store disconnected) these tests make the change twice, once through the API
of the serving kmsd and once through a second connection to the same
database behind kmsd's back, and check that the very next request
answers from the new state: for Encrypt, GenerateDataKey and Decrypt when
the change is to the key's state, its existence or its store, for Encrypt
(and Decrypt after a rotation) otherwise.  Every request before the change
has warmed the caches on the same key; /health's counts show the key cache
served.  The same tests run again with the key cache off (--key-cache 0).
"""

import json
import os
import shutil
import tempfile
import time
import unittest

import kmsd_harness as h
import xks_certs
from xks_standin import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET, StandIn

PLAINTEXT = b"coherence"
MATERIAL_AT = slice(17, 17 + 32)  # a ciphertext blob's material id (docs/storage.md)

DENY_ENCRYPT = json.dumps({
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "root", "Effect": "Allow",
         "Principal": {"AWS": "arn:aws:iam::%s:root" % h.DEFAULT_ACCOUNT},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "no-encrypt", "Effect": "Deny", "Principal": "*",
         "Action": "kms:Encrypt", "Resource": "*"},
    ]})


class Behind:
    """A second connection to kmsd's database, as another process has (the
    SQLite file, or the PostgreSQL database of this run's store)."""

    def __init__(self, server):
        self.data_dir = server.data_dir

    def run(self, sql, *args):
        return h.store_execute(self.data_dir, sql, args)

    def one(self, sql, *args):
        return h.store_fetchone(self.data_dir, sql, args)[0]


class CoherenceTest(h.KmsdBaseTestCase):
    SERVER_ARGS = []

    def setUp(self):
        super().setUp()
        self.server = self.start_server(args=["--enable-admin-api"] + self.SERVER_ARGS)
        self.kms = h.kms_client(self.server)
        self.behind = Behind(self.server)
        self.blobs = {}

    def tearDown(self):
        # The key cache served some of the requests above (or is off).
        status, _, body = self.server.raw_request("GET", "/health")
        self.assertEqual(status, 200)
        cache = json.loads(body)["keyCache"]
        if "--key-cache" in self.SERVER_ARGS:
            self.assertIsNone(cache)
        else:
            self.assertGreater(cache["hits"], 0)
            self.assertGreater(cache["misses"], 0)
        super().tearDown()

    def new_key(self):
        key = self.kms.create_key()["KeyMetadata"]["KeyId"]
        self.blobs[key] = self.encrypt(key)["CiphertextBlob"]
        self.all_ops(key)  # warms every cache for it, by id and by each operation
        return key

    def encrypt(self, key_id):
        return self.kms.encrypt(KeyId=key_id, Plaintext=PLAINTEXT)

    def all_ops(self, key_id):
        """Encrypt, GenerateDataKey and Decrypt (of a blob made before) on one key."""
        self.encrypt(key_id)
        self.kms.generate_data_key(KeyId=key_id, NumberOfBytes=32)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=self.blobs[key_id])["Plaintext"], PLAINTEXT)

    def all_refused(self, code, key_id):
        self.assertKmsError(code, self.encrypt, key_id)
        self.assertKmsError(code, self.kms.generate_data_key, KeyId=key_id, NumberOfBytes=32)
        self.assertKmsError(code, self.kms.decrypt, CiphertextBlob=self.blobs[key_id])

    def test_disabled(self):
        key = self.new_key()
        self.kms.disable_key(KeyId=key)
        self.all_refused("DisabledException", key)
        self.kms.enable_key(KeyId=key)
        self.all_ops(key)

        self.assertEqual(self.behind.run("UPDATE keys SET key_state='Disabled' WHERE key_id=?", key), 1)
        self.all_refused("DisabledException", key)
        self.behind.run("UPDATE keys SET key_state='Enabled' WHERE key_id=?", key)
        self.all_ops(key)

    def test_deleted(self):
        key = self.new_key()
        self.kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
        self.all_refused("KMSInvalidStateException", key)

        other = self.new_key()
        self.assertEqual(self.behind.run("DELETE FROM keys WHERE key_id=?", other), 1)
        self.assertKmsError("NotFoundException", self.encrypt, other)
        self.assertKmsError("NotFoundException", self.kms.generate_data_key, KeyId=other,
                            NumberOfBytes=32)
        self.assertKmsError("NotFoundException", self.kms.describe_key, KeyId=other)
        # A blob of a key that is gone names a key that does not exist.
        self.assertKmsError("NotFoundException", self.kms.decrypt, CiphertextBlob=self.blobs[other])

    def test_deletion_due(self):
        """A key whose deletion date passes while its entry is cached: no
        commit retires the entry, the clock does.  (The background sweep may
        delete the key first, a commit that retires the entry: the answer
        is the same either way.)"""
        key = self.new_key()
        self.kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
        self.all_refused("KMSInvalidStateException", key)
        h.advance_clock(self.server, 8 * 86400)
        self.assertKmsError("NotFoundException", self.encrypt, key)

    def test_policy(self):
        key = self.new_key()
        default = self.kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]
        self.kms.put_key_policy(KeyId=key, PolicyName="default", Policy=DENY_ENCRYPT)
        self.assertKmsError("AccessDeniedException", self.encrypt, key)
        self.kms.put_key_policy(KeyId=key, PolicyName="default", Policy=default)
        self.encrypt(key)

        # Behind kmsd's back, with and without moving policy_version: the
        # store gives a changed policy a new version either way.
        self.behind.run("UPDATE keys SET policy=?, policy_version=policy_version+1 WHERE key_id=?",
                        DENY_ENCRYPT, key)
        self.assertKmsError("AccessDeniedException", self.encrypt, key)
        self.behind.run("UPDATE keys SET policy=? WHERE key_id=?", default, key)
        self.encrypt(key)
        self.behind.run("UPDATE keys SET policy=? WHERE key_id=?", DENY_ENCRYPT, key)
        self.assertKmsError("AccessDeniedException", self.encrypt, key)

    def test_rotated(self):
        key = self.new_key()
        first = self.encrypt(key)["CiphertextBlob"][MATERIAL_AT]
        self.kms.rotate_key_on_demand(KeyId=key)
        second = self.encrypt(key)["CiphertextBlob"][MATERIAL_AT]
        self.assertNotEqual(first, second)

        # Behind kmsd's back: point the key at its first material again (a
        # new material cannot be made without the root key).
        old = self.behind.one("SELECT material_id FROM key_materials WHERE key_id=? AND seq=0", key)
        self.behind.run("UPDATE keys SET current_material_id=? WHERE key_id=?", old, key)
        blob = self.encrypt(key)["CiphertextBlob"]
        self.assertEqual(blob[MATERIAL_AT], first)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], PLAINTEXT)

    def test_realiased(self):
        a, b = self.new_key(), self.new_key()
        self.kms.create_alias(AliasName="alias/coherence", TargetKeyId=a)
        self.assertIn(a, self.encrypt("alias/coherence")["KeyId"])
        self.kms.update_alias(AliasName="alias/coherence", TargetKeyId=b)
        self.assertIn(b, self.encrypt("alias/coherence")["KeyId"])

        self.behind.run("UPDATE aliases SET key_id=? WHERE alias_name='alias/coherence'", a)
        self.assertIn(a, self.encrypt("alias/coherence")["KeyId"])
        self.behind.run("DELETE FROM aliases WHERE alias_name='alias/coherence'")
        self.assertKmsError("NotFoundException", self.encrypt, "alias/coherence")


class CoherenceWithoutKeyCacheTest(CoherenceTest):
    """The same, every key read from the store."""
    SERVER_ARGS = ["--key-cache", "0"]


HOST = "xks.example.com"
PATH = "/keys/kms/xks/v1"


class StoreCoherenceTest(h.KmsdBaseTestCase):
    """A key of a CONNECTED external key store (the stand-in proxy) whose
    store is disconnected: by DisconnectCustomKeyStore, then behind kmsd's
    back."""

    def test_store_disconnected(self):
        tmp = tempfile.mkdtemp(prefix="coherence-")
        self.addCleanup(shutil.rmtree, tmp, True)
        certs = xks_certs.make_certs(os.path.join(tmp, "certs"), hostname=HOST)
        proxy = StandIn(cert=certs.good, uri_path=PATH)
        self.addCleanup(certs.cleanup)
        self.addCleanup(proxy.stop)
        server = self.start_server(args=["--xks-ca-bundle", certs.ca,
                                         "--xks-connect-to", proxy.connect_to(HOST)])
        kms = h.kms_client(server)
        cks = kms.create_custom_key_store(
            CustomKeyStoreName="coherence", CustomKeyStoreType="EXTERNAL_KEY_STORE",
            XksProxyUriEndpoint="https://" + HOST, XksProxyUriPath=PATH,
            XksProxyConnectivity="PUBLIC_ENDPOINT",
            XksProxyAuthenticationCredential={"AccessKeyId": DEFAULT_ACCESS_KEY_ID,
                                              "RawSecretAccessKey": DEFAULT_SECRET})["CustomKeyStoreId"]

        def connect():
            kms.connect_custom_key_store(CustomKeyStoreId=cks)
            deadline = time.monotonic() + 20
            while True:
                state = kms.describe_custom_key_stores(
                    CustomKeyStoreId=cks)["CustomKeyStores"][0]["ConnectionState"]
                if state == "CONNECTED":
                    return
                self.assertLess(time.monotonic(), deadline, "store stayed %s" % state)
                time.sleep(0.05)

        connect()
        proxy.add_key("coherence-key")
        key = kms.create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=cks,
                             XksKeyId="coherence-key")["KeyMetadata"]["KeyId"]
        kms.encrypt(KeyId=key, Plaintext=PLAINTEXT)

        kms.disconnect_custom_key_store(CustomKeyStoreId=cks)
        self.assertKmsError("KMSInvalidStateException", kms.encrypt, KeyId=key, Plaintext=PLAINTEXT)
        connect()
        kms.encrypt(KeyId=key, Plaintext=PLAINTEXT)

        blob = kms.encrypt(KeyId=key, Plaintext=PLAINTEXT)["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], PLAINTEXT)
        Behind(server).run("UPDATE custom_key_stores SET connection_state='DISCONNECTED' "
                           "WHERE cks_id=?", cks)
        self.assertKmsError("KMSInvalidStateException", kms.encrypt, KeyId=key, Plaintext=PLAINTEXT)
        self.assertKmsError("KMSInvalidStateException", kms.decrypt, CiphertextBlob=blob)


if __name__ == "__main__":
    unittest.main()
