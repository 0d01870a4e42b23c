"""A slow external key store proxy holds up only the calls that need it.

kmsd keeps no database transaction open across a call to an XKS proxy
(lib/kms/kms_backend.h, "Transactions"): UpdateCustomKeyStore asks
GetHealthStatus between a read transaction and its write transaction, and
Encrypt, Decrypt, ReEncrypt and GenerateDataKey read the key and its inner
key material, end their transaction, and only then call the proxy.  Here the
stand-in proxy (xks_standin.py) answers seconds late, and meanwhile

* writers (CreateKey, CreateAlias, another UpdateCustomKeyStore) and crypto
  on AWS_KMS keys complete while an update's GetHealthStatus waits;
* crypto on AWS_KMS keys, and CreateKey, complete over a kept-alive
  connection while twenty crypto calls on an external key store's key - more
  than the store's 16 pooled database connections - wait on the proxy, with
  kmsd on two HTTP event threads: the calls that wait run on its waiting
  threads (--wait-threads), never on the event thread of a connection;
* an update whose store was moved to CONNECTING during its GetHealthStatus
  is CustomKeyStoreInvalidStateException and changes nothing; an update
  whose GetHealthStatus another update overtook (a new path while it changed
  the credential) is checked again with both changes and then written; one
  overtaken in each of three rounds gives up with KMSInternalException,
  having written nothing; one whose store was deleted meanwhile is
  CustomKeyStoreNotFoundException.

The assertions are about which call completes first, with proxy delays of
seconds against local calls of milliseconds, never about how long a call
takes."""
import base64
import os
import tempfile
import time
import unittest

import kmsd_harness as h
import xks_certs
from xks_fixture import b64
from xks_standin import DEFAULT_ACCESS_KEY_ID, DEFAULT_KEY_ID, DEFAULT_SECRET, StandIn

HOST = "xks.example.com"
ENDPOINT = "https://" + HOST
OTHER_KEY_ID = "AKIAOTHERXKSPROXYKEY"
OTHER_SECRET = "b3RoZXItc2VjcmV0LWZvci1rbXNkLXhrcy10ZXN0cy1yb3RhdGVk"

# The proxy's delays: seconds, far beyond what a local call takes, and the
# deadline kmsd gives each proxy call, beyond three rounds of the slowest
# (eight calls at a time go to the proxy: the XKS client's handle pool).
SLOW = 3.0
XKS_TIMEOUT_MS = 15000
# More crypto calls on the external key than the store's pooled database
# connections (POOL_MAX in lib/store/store_sqlite.c).
DB_POOL = 16
CONCURRENT = DB_POOL + 4


class SlowProxyTest(h.KmsdBaseTestCase):
    """One kmsd with two HTTP event threads, far fewer than the calls a
    test keeps in flight (the ones that wait on the proxy run on waiting
    threads), one stand-in proxy; each test makes its own key stores (unique
    paths) and starts from a well-behaved proxy."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="xks-slow-")
        cls.certs = xks_certs.make_certs(os.path.join(cls.tmp, "certs"), hostname=HOST)
        cls.proxy = StandIn(cert=cls.certs.good)
        cls.server = h.KmsdServer(args=[
            "--xks-ca-bundle", cls.certs.ca,
            "--xks-connect-to", cls.proxy.connect_to(HOST),
            "--xks-timeout", str(XKS_TIMEOUT_MS),
            "--threads", "2"])
        try:
            cls.server.start()
            cls.kms = h.kms_client(cls.server)
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
        self.proxy.reset()

    # -- helpers ------------------------------------------------------------

    def create_store(self, name):
        """A DISCONNECTED external key store at /<name>/kms/xks/v1, which the
        proxy serves from now on."""
        path = "/%s/kms/xks/v1" % name
        self.proxy.uri_path = path
        cks = self.kms.create_custom_key_store(
            CustomKeyStoreName=name, CustomKeyStoreType="EXTERNAL_KEY_STORE",
            XksProxyUriEndpoint=ENDPOINT, XksProxyUriPath=path,
            XksProxyConnectivity="PUBLIC_ENDPOINT",
            XksProxyAuthenticationCredential={"AccessKeyId": DEFAULT_ACCESS_KEY_ID,
                                              "RawSecretAccessKey": DEFAULT_SECRET}
        )["CustomKeyStoreId"]
        return cks, path

    def describe(self, cks):
        return self.kms.describe_custom_key_stores(CustomKeyStoreId=cks)["CustomKeyStores"][0]

    def wait_state(self, cks, states, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            entry = self.describe(cks)
            if entry["ConnectionState"] in states:
                return entry
            if time.monotonic() > deadline:
                self.fail("store %s stayed %s" % (cks, entry["ConnectionState"]))
            time.sleep(0.05)

    def health_requests(self, path, operation):
        return [r for r in self.proxy.requests("health")
                if r.path.startswith(path + "/") and r.request_metadata
                and r.request_metadata.get("kmsOperation") == operation]

    def wait_for(self, what, predicate, timeout=30):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                self.fail("waited %ds for %s" % (timeout, what))
            time.sleep(0.01)

    def update_call(self, cks, **changes):
        """A Call (not started) of UpdateCustomKeyStore with its own client."""
        client = h.kms_client(self.server)
        return h.BackgroundCall(lambda: client.update_custom_key_store(CustomKeyStoreId=cks, **changes))

    def kms_op(self, operation, params, conn=None):
        """One signed call, on `conn` (kept alive) or a connection of its
        own; the parsed reply, or an AssertionError naming the error."""
        status, _, body = h.kms_call(self.server, operation, params, conn=conn)
        if status != 200:
            raise AssertionError("%s: %s %s" % (operation, status, body))
        return body

    def remove_store(self, cks):
        if self.describe(cks)["ConnectionState"] != "DISCONNECTED":
            self.kms.disconnect_custom_key_store(CustomKeyStoreId=cks)
        self.kms.delete_custom_key_store(CustomKeyStoreId=cks)

    # -- UpdateCustomKeyStore -----------------------------------------------

    def test_writers_complete_during_an_updates_slow_health_check(self):
        cks, path = self.create_store("slow-update")
        self.addCleanup(self.remove_store, cks)
        self.proxy.set_credentials({DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET,
                                    OTHER_KEY_ID: OTHER_SECRET})
        self.proxy.set_delay(SLOW, ops={"health"})
        update = self.update_call(cks, XksProxyAuthenticationCredential={
            "AccessKeyId": OTHER_KEY_ID, "RawSecretAccessKey": OTHER_SECRET})
        update.start()
        self.wait_for("the update's GetHealthStatus",
                      lambda: self.health_requests(path, "UpdateCustomKeyStore"))
        # Writers and a reader on AWS_KMS keys while the proxy sits on it.
        key = self.kms.create_key()["KeyMetadata"]["KeyId"]
        self.kms.create_alias(AliasName="alias/during-slow-update", TargetKeyId=key)
        blob = self.kms.encrypt(KeyId="alias/during-slow-update", Plaintext=b"meanwhile")
        self.kms.update_custom_key_store(CustomKeyStoreId=cks,
                                         NewCustomKeyStoreName="slow-update-renamed")
        local_done = time.monotonic()
        self.assertTrue(update.is_alive(),
                        "the update's GetHealthStatus was answered before the writers ended; "
                        "nothing was shown")
        update.join(60)
        self.assertIsNone(update.error)
        self.assertLess(local_done, update.done_at)
        # Both updates took effect: the name (written first) and the credential.
        entry = self.describe(cks)
        self.assertEqual(entry["CustomKeyStoreName"], "slow-update-renamed")
        self.assertEqual(entry["XksProxyConfiguration"]["AccessKeyId"], OTHER_KEY_ID)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob["CiphertextBlob"])["Plaintext"],
                         b"meanwhile")

    def test_update_overtaken_by_a_connect_changes_nothing(self):
        cks, path = self.create_store("update-vs-connect")
        self.addCleanup(self.remove_store, cks)
        self.proxy.set_credentials({DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET,
                                    OTHER_KEY_ID: OTHER_SECRET})
        self.proxy.set_delay(SLOW, ops={"health"})
        update = self.update_call(cks, XksProxyAuthenticationCredential={
            "AccessKeyId": OTHER_KEY_ID, "RawSecretAccessKey": OTHER_SECRET})
        update.start()
        self.wait_for("the update's GetHealthStatus",
                      lambda: self.health_requests(path, "UpdateCustomKeyStore"))
        # The connect's own GetHealthStatus is answered well after the
        # update's, so the store is still CONNECTING when the update writes.
        self.proxy.set_delay(2 * SLOW, ops={"health"})
        self.kms.connect_custom_key_store(CustomKeyStoreId=cks)
        self.assertEqual(self.describe(cks)["ConnectionState"], "CONNECTING")
        update.join(60)
        self.assertFalse(update.is_alive())
        self.assertIsNotNone(update.error, "the update went through while CONNECTING")
        self.assertEqual(update.error.response["Error"]["Code"],
                         "CustomKeyStoreInvalidStateException")
        self.assertIn("CONNECTING", update.error.response["Error"]["Message"])
        # The connect ends CONNECTED with the credential the update did not change.
        entry = self.wait_state(cks, ("CONNECTED", "FAILED"))
        self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
        self.assertEqual(entry["XksProxyConfiguration"]["AccessKeyId"], DEFAULT_ACCESS_KEY_ID)
        [connect] = self.health_requests(path, "ConnectCustomKeyStore")
        self.assertEqual(connect.access_key_id, DEFAULT_ACCESS_KEY_ID)

    def test_update_checked_again_when_another_update_changed_what_it_checked(self):
        cks, path = self.create_store("update-vs-update")
        self.addCleanup(self.remove_store, cks)
        new_path = "/update-vs-update-moved/kms/xks/v1"
        self.proxy.also_serve = (new_path,)
        self.proxy.set_credentials({DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET,
                                    OTHER_KEY_ID: OTHER_SECRET})
        self.proxy.set_delay(SLOW, ops={"health"})
        # A: a new credential, checked at the old path, slowly.
        update = self.update_call(cks, XksProxyAuthenticationCredential={
            "AccessKeyId": OTHER_KEY_ID, "RawSecretAccessKey": OTHER_SECRET})
        update.start()
        self.wait_for("the first update's GetHealthStatus",
                      lambda: self.health_requests(path, "UpdateCustomKeyStore"))
        # B: a new path, checked with the old credential, at once.
        self.proxy.set_delay(0)
        self.kms_op("UpdateCustomKeyStore", {"CustomKeyStoreId": cks, "XksProxyUriPath": new_path})
        moved_at = time.monotonic()
        self.assertTrue(update.is_alive(),
                        "the first update ended before the second; nothing was shown")
        self.assertEqual(self.describe(cks)["XksProxyConfiguration"]["UriPath"], new_path)
        update.join(60)
        self.assertIsNone(update.error)
        self.assertLess(moved_at, update.done_at)
        # Both changes are kept, and the pair was asked about together
        # before it was written: A's second GetHealthStatus, at the new path
        # with the new credential, after B's.
        conf = self.describe(cks)["XksProxyConfiguration"]
        self.assertEqual((conf["UriPath"], conf["AccessKeyId"]), (new_path, OTHER_KEY_ID))
        first, = self.health_requests(path, "UpdateCustomKeyStore")
        self.assertEqual(first.access_key_id, OTHER_KEY_ID)
        moved = self.health_requests(new_path, "UpdateCustomKeyStore")
        self.assertEqual([r.access_key_id for r in moved], [DEFAULT_ACCESS_KEY_ID, OTHER_KEY_ID])
        self.assertTrue(all(r.status == 200 for r in moved + [first]))
        with open(self.server.log_path, errors="replace") as f:
            self.assertIn("checking the update again", f.read())

    def test_update_of_a_store_deleted_meanwhile_is_not_found(self):
        cks, path = self.create_store("update-vs-delete")
        self.proxy.set_credentials({DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET,
                                    OTHER_KEY_ID: OTHER_SECRET})
        self.proxy.set_delay(SLOW, ops={"health"})
        update = self.update_call(cks, XksProxyAuthenticationCredential={
            "AccessKeyId": OTHER_KEY_ID, "RawSecretAccessKey": OTHER_SECRET})
        update.start()
        self.wait_for("the update's GetHealthStatus",
                      lambda: self.health_requests(path, "UpdateCustomKeyStore"))
        # The store is DISCONNECTED and has no keys: it goes while the
        # update waits on the proxy (on a connection of its own, see
        # kms_op).
        self.kms_op("DeleteCustomKeyStore", {"CustomKeyStoreId": cks})
        self.assertTrue(update.is_alive(), "the update ended before the delete; nothing was shown")
        update.join(60)
        self.assertFalse(update.is_alive())
        self.assertIsNotNone(update.error, "the update of a deleted store went through")
        self.assertEqual(update.error.response["Error"]["Code"],
                         "CustomKeyStoreNotFoundException")
        # Nothing was written back.
        with self.assertRaises(self.kms.exceptions.CustomKeyStoreNotFoundException):
            self.kms.describe_custom_key_stores(CustomKeyStoreId=cks)

    def test_update_overtaken_every_round_gives_up_having_changed_nothing(self):
        cks, path = self.create_store("update-overtaken")
        self.addCleanup(self.remove_store, cks)
        paths = [path, "/update-overtaken-1/kms/xks/v1", "/update-overtaken-2/kms/xks/v1"]
        self.proxy.also_serve = tuple(paths[1:])
        self.proxy.set_credentials({DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET,
                                    OTHER_KEY_ID: OTHER_SECRET})
        # Long enough that each overtaking update ends well within it.
        delay = 2.0
        self.proxy.set_delay(delay, ops={"health"})
        update = self.update_call(cks, XksProxyAuthenticationCredential={
            "AccessKeyId": OTHER_KEY_ID, "RawSecretAccessKey": OTHER_SECRET})
        update.start()
        # During each of the update's GetHealthStatus calls (at the path the
        # store has then), another update moves the store to the next path:
        # what was checked is never what would be written.
        def signed_by_other(r):
            # Read from the header: the stand-in parses it only after the delay.
            return "Credential=%s/" % OTHER_KEY_ID in r.headers.get("authorization", "")

        for rnd in range(3):
            at, to = paths[rnd], paths[(rnd + 1) % 3]
            self.wait_for("the update's GetHealthStatus %d" % (rnd + 1),
                          lambda at=at: [r for r in self.health_requests(at, "UpdateCustomKeyStore")
                                         if signed_by_other(r)])
            self.assertTrue(update.is_alive(), "round %d: the update ended early" % (rnd + 1))
            self.proxy.set_delay(0)
            self.kms_op("UpdateCustomKeyStore", {"CustomKeyStoreId": cks, "XksProxyUriPath": to})
            self.proxy.set_delay(delay, ops={"health"})
        update.join(60)
        self.assertFalse(update.is_alive())
        # Three rounds, then KMSInternalException (retryable), and the
        # credential was never written; the other updates' paths were.
        self.assertIsNotNone(update.error, "the update went through")
        self.assertEqual(update.error.response["Error"]["Code"], "KMSInternalException")
        self.assertIn("kept changing", update.error.response["Error"]["Message"])
        conf = self.describe(cks)["XksProxyConfiguration"]
        self.assertEqual((conf["UriPath"], conf["AccessKeyId"]), (paths[0], DEFAULT_ACCESS_KEY_ID))
        asked = [r for p in paths for r in self.health_requests(p, "UpdateCustomKeyStore")
                 if signed_by_other(r)]
        self.assertEqual(len(asked), 3)

    # -- crypto -------------------------------------------------------------

    def test_local_keys_served_while_crypto_waits_on_the_proxy(self):
        cks, _ = self.create_store("slow-crypto")
        self.kms.connect_custom_key_store(CustomKeyStoreId=cks)
        # The store keeps its KMS key, so it stays; disconnected.
        self.addCleanup(self.kms.disconnect_custom_key_store, CustomKeyStoreId=cks)
        self.assertEqual(self.wait_state(cks, ("CONNECTED", "FAILED"))["ConnectionState"],
                         "CONNECTED")
        xks_key = self.kms.create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=cks,
                                      XksKeyId=DEFAULT_KEY_ID)["KeyMetadata"]["KeyId"]
        local = self.kms.create_key()["KeyMetadata"]["KeyId"]
        xks_blob = self.kms.encrypt(KeyId=xks_key, Plaintext=b"external")["CiphertextBlob"]
        local_blob = self.kms.encrypt(KeyId=local, Plaintext=b"local")["CiphertextBlob"]
        # The local calls below go over this one kept-alive connection,
        # opened (and used) before the slow calls start.
        conn = self.server.connection(60)
        self.addCleanup(conn.close)
        self.kms_op("DescribeKey", {"KeyId": local}, conn=conn)
        self.proxy.clear_requests()
        self.proxy.set_delay(SLOW, ops={"encrypt", "decrypt"})

        # Every crypto operation on the external key, more calls than there
        # are pooled database connections.
        def op(i):
            kind = i % 5
            if kind == 0:
                return "Encrypt", {"KeyId": xks_key, "Plaintext": b64(b"pt-%d" % i)}
            if kind == 1:
                return "Decrypt", {"CiphertextBlob": b64(xks_blob)}
            if kind == 2:
                return "GenerateDataKey", {"KeyId": xks_key, "KeySpec": "AES_256"}
            if kind == 3:
                return "GenerateDataKeyWithoutPlaintext", {"KeyId": xks_key, "NumberOfBytes": 32}
            return "ReEncrypt", {"CiphertextBlob": b64(xks_blob), "DestinationKeyId": local}

        calls = []
        for i in range(CONCURRENT):
            name, params = op(i)
            calls.append((name, h.BackgroundCall(lambda n=name, p=params: self.kms_op(n, p))))
        for _, c in calls:
            c.start()
        # The proxy holds the first of them; the rest queue in kmsd for the
        # client's connections to the proxy.
        self.wait_for("crypto calls at the proxy",
                      lambda: len(self.proxy.requests("encrypt") + self.proxy.requests("decrypt"))
                      >= 8)
        time.sleep(0.5)
        # Meanwhile AWS_KMS keys are served, writers included, on the
        # kept-alive connection: its event thread never waits on the proxy.
        enc = self.kms_op("Encrypt", {"KeyId": local, "Plaintext": b64(b"still served")},
                          conn=conn)
        dec = self.kms_op("Decrypt", {"CiphertextBlob": b64(local_blob)}, conn=conn)
        self.kms_op("GenerateDataKey", {"KeyId": local, "KeySpec": "AES_256"}, conn=conn)
        new_key = self.kms_op("CreateKey", {}, conn=conn)["KeyMetadata"]["KeyId"]
        finished = [name for name, c in calls if not c.is_alive()]
        self.assertEqual(finished, [], "calls on the external key ended before the local ones")
        self.assertEqual(base64.b64decode(dec["Plaintext"]), b"local")
        self.assertEqual(self.kms.decrypt(CiphertextBlob=base64.b64decode(enc["CiphertextBlob"]))
                         ["Plaintext"], b"still served")
        self.assertEqual(self.kms.describe_key(KeyId=new_key)["KeyMetadata"]["KeyState"],
                         "Enabled")

        # Then every slow call completes, and right.
        for name, c in calls:
            c.join(60)
            self.assertIsNone(c.error, name)
        self.proxy.set_delay(0)
        for i, (name, c) in enumerate(calls):
            if name == "Decrypt":
                self.assertEqual(base64.b64decode(c.result["Plaintext"]), b"external")
            elif name == "ReEncrypt":
                out = self.kms.decrypt(CiphertextBlob=base64.b64decode(c.result["CiphertextBlob"]))
                self.assertEqual(out["Plaintext"], b"external")
            elif name == "Encrypt":
                out = self.kms.decrypt(CiphertextBlob=base64.b64decode(c.result["CiphertextBlob"]))
                self.assertEqual(out["Plaintext"], b"pt-%d" % i)
        seen = self.proxy.requests("encrypt") + self.proxy.requests("decrypt")
        self.assertGreaterEqual(len(seen), CONCURRENT)


if __name__ == "__main__":
    unittest.main()
