"""test_multi_node - three kmsd nodes on one PostgreSQL database, serving as
one service (docs/multi-node.md).

Every node has a data directory of its own holding the same root.key, and
names the same database; the PostgreSQL server is this suite's own
(tests/e2e/pg_fixture.py), so it can be restarted under the nodes.  What is
checked:

- a write through one node is seen by the very next request on another:
  keys, aliases, descriptions, key states (the key caches of the others
  were warm), tags;
- CreateAlias of one name from twelve threads spread over three nodes:
  exactly one success;
- one node holds the lease (/health); it runs a connect asked of another
  node, once;
- an external key store connected through one node serves its keys on the
  others (each opens its own connection on first use), and a disconnect
  through a third stops them all at once;
- DisconnectCustomKeyStore through one node while another's worker is
  connecting the store waits for that worker, and the store stays
  DISCONNECTED;
- a connect worker whose lock's database session is ended stops before it
  changes the state, and the next scan connects the store;
- ConnectCustomKeyStore through the lease holder, SIGKILLed while the
  proxy is still answering its health check: another node takes the lease
  and finishes the connect (CONNECTED), and the store serves on every node
  left;
- SIGKILL of a node under a mixed load on all three: every acknowledged
  key, ciphertext, alias and key state is there afterwards;
- a CloudHSM key store on pool tokens both nodes reach (SoftHSM2 tokens in
  one directory, one --hsm-pool file): connected through one node, its keys
  made and used through both, its ciphertexts crossing; disconnected through
  the other, then connected again (kmsuser's password rotated) and serving
  both;
- a PostgreSQL restart under load on two nodes: no node restarted, no
  acknowledged write lost, and the lease held again; and with no load, every
  node's /health goes 503 and back to 200 by itself.
"""

import os
import random
import shutil
import tempfile
import threading
import time
import unittest

import botocore.exceptions

import cloudhsm_fixture as fx
import kmsd_harness as h
import pg_fixture
import xks_certs
from test_hsm_pool import SO_PINS, OperatorTokens, pool_entries
from xks_standin import StandIn

HOST = "xks.example.com"
ENDPOINT = "https://" + HOST
URI_PATH = "/multi/kms/xks/v1"
XKS_ACCESS_KEY_ID = "AKIAMULTINODEXKSPRXY"
XKS_SECRET = "bXVsdGktbm9kZS1zdGFuZC1pbi1zZWNyZXQta2V5LTAx"
XKS_KEY = "multi-node-key"
CONTEXT = {"purpose": "multi-node"}


def wait_for(what, predicate, seconds=20, interval=0.1):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(interval)


def health(server):
    status, _, body = server.raw_request("GET", "/health")
    return status, h.parse_body(body)


def leases(server):
    return health(server)[1]["store"]["leases"]


def log_text(server):
    with open(server.log_path, errors="replace") as f:
        return f.read()


def error_code(exc):
    if isinstance(exc, botocore.exceptions.ClientError):
        return exc.response["Error"]["Code"]
    return type(exc).__name__


class MultiNodeTest(h.KmsdBaseTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg = pg_fixture.PgServer()
        cls.pg.start()
        cls.tmp = tempfile.mkdtemp(prefix="kmsd-multi-node-")
        cls.certs = xks_certs.make_certs(os.path.join(cls.tmp, "certs"), hostname=HOST)
        cls.proxy = StandIn(cert=cls.certs.good, uri_path=URI_PATH)
        cls.proxy.start()

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        cls.certs.cleanup()
        cls.pg.stop()
        shutil.rmtree(cls.tmp, True)
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.db = "multi_%s" % self.id().rsplit(".", 1)[-1].lower()[:50]
        self.pg.create_database(self.db)
        self.url, self.password = pg_fixture.split_url(self.pg.url(self.db))
        self.proxy.reset()
        self.proxy.set_credentials({XKS_ACCESS_KEY_ID: XKS_SECRET})
        self.proxy.add_key(XKS_KEY)

    def node(self, root_key_from=None):
        """A kmsd on this test's database, with a data directory of its own
        (holding `root_key_from`'s root.key when given)."""
        data_dir = os.path.join(self.tmp, "node-%d" % time.monotonic_ns())
        os.makedirs(data_dir, mode=0o700)
        self.addCleanup(shutil.rmtree, data_dir, True)
        if root_key_from:
            shutil.copy2(os.path.join(root_key_from.data_dir, "root.key"),
                         os.path.join(data_dir, "root.key"))
        return self.start_server(
            data_dir=data_dir, env={"PGPASSWORD": self.password},
            args=["--store", self.url, "--xks-ca-bundle", self.certs.ca,
                  "--xks-connect-to", self.proxy.connect_to(HOST), "--xks-timeout", "8000"])

    def cluster(self, n=3):
        first = self.node()
        return [first] + [self.node(root_key_from=first) for _ in range(n - 1)]

    def create_xks_store(self, kms, name):
        return kms.create_custom_key_store(
            CustomKeyStoreName=name, CustomKeyStoreType="EXTERNAL_KEY_STORE",
            XksProxyUriEndpoint=ENDPOINT, XksProxyUriPath=URI_PATH,
            XksProxyConnectivity="PUBLIC_ENDPOINT",
            XksProxyAuthenticationCredential={"AccessKeyId": XKS_ACCESS_KEY_ID,
                                              "RawSecretAccessKey": XKS_SECRET})["CustomKeyStoreId"]

    @staticmethod
    def store_state(kms, cks):
        return kms.describe_custom_key_stores(CustomKeyStoreId=cks)["CustomKeyStores"][0]

    def wait_settled(self, kms, cks, seconds=30):
        return wait_for("the store to leave CONNECTING", lambda: (
            lambda e: e if e["ConnectionState"] != "CONNECTING" else None)(
                self.store_state(kms, cks)), seconds)

    # ------------------------------------------------------------ consistency

    def test_writes_are_seen_by_the_next_request_on_every_node(self):
        nodes = self.cluster()
        a, b, c = (h.kms_client(n) for n in nodes)
        for i in range(4):
            key = a.create_key(Description="v1")["KeyMetadata"]["KeyId"]
            # Warm the key caches of b and c.
            for kms in (b, c, b, c):
                kms.encrypt(KeyId=key, Plaintext=b"warm")
            b.update_key_description(KeyId=key, Description="v2")
            self.assertEqual(c.describe_key(KeyId=key)["KeyMetadata"]["Description"], "v2")
            c.create_alias(AliasName="alias/multi-%d" % i, TargetKeyId=key)
            blob = a.encrypt(KeyId="alias/multi-%d" % i,
                             Plaintext=b"across nodes")["CiphertextBlob"]
            self.assertEqual(b.decrypt(CiphertextBlob=blob)["Plaintext"], b"across nodes")
            a.disable_key(KeyId=key)
            for kms in (b, c):
                with self.assertRaises(botocore.exceptions.ClientError) as caught:
                    kms.encrypt(KeyId=key, Plaintext=b"disabled")
                self.assertEqual(error_code(caught.exception), "DisabledException")
            c.enable_key(KeyId=key)
            b.encrypt(KeyId=key, Plaintext=b"enabled again")
            b.tag_resource(KeyId=key, Tags=[{"TagKey": "node", "TagValue": "b"}])
            self.assertEqual(a.list_resource_tags(KeyId=key)["Tags"],
                             [{"TagKey": "node", "TagValue": "b"}])

    def test_create_alias_has_one_winner_across_nodes(self):
        nodes = self.cluster()
        clients = [h.kms_client(n) for n in nodes for _ in range(4)]
        key = clients[0].create_key()["KeyMetadata"]["KeyId"]
        for round_ in range(3):
            name = "alias/race-%d" % round_
            barrier = threading.Barrier(len(clients))
            outcomes = []
            lock = threading.Lock()

            def race(kms):
                barrier.wait()
                try:
                    kms.create_alias(AliasName=name, TargetKeyId=key)
                    result = "ok"
                except Exception as e:  # noqa: BLE001 - every outcome is counted
                    result = error_code(e)
                with lock:
                    outcomes.append(result)

            threads = [threading.Thread(target=race, args=(kms,)) for kms in clients]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(outcomes.count("ok"), 1, outcomes)
            self.assertEqual(outcomes.count("AlreadyExistsException"), len(clients) - 1, outcomes)

    # -------------------------------------------------- lease and key stores

    def test_one_lease_holder_runs_a_connect_asked_of_another_node(self):
        nodes = self.cluster()
        holders = [n for n in nodes if leases(n) == ["background-work"]]
        self.assertEqual(holders, [nodes[0]])
        for n in nodes:
            self.assertEqual(health(n)[0], 200)
        a, b, c = (h.kms_client(n) for n in nodes)
        cks = self.create_xks_store(c, "asked-of-c")
        self.proxy.clear_requests()
        c.connect_custom_key_store(CustomKeyStoreId=cks)
        self.assertEqual(self.wait_settled(b, cks)["ConnectionState"], "CONNECTED")
        # One GetHealthStatus for the connect, from the lease holder's scan.
        connects = [r for r in self.proxy.requests("health")
                    if r.request_metadata and
                    r.request_metadata.get("kmsOperation") == "ConnectCustomKeyStore"]
        self.assertEqual(len(connects), 1, connects)
        self.assertEqual(connects[0].request_metadata.get("kmsRequestId"), "recovery")
        self.assertIn("custom key store %s: CONNECTING -> CONNECTED" % cks, log_text(nodes[0]))
        self.assertIn("the node holding the lease runs the connect", log_text(nodes[2]))

    def test_key_store_serves_every_node_and_disconnect_stops_all(self):
        nodes = self.cluster()
        a, b, c = (h.kms_client(n) for n in nodes)
        cks = self.create_xks_store(a, "shared")
        a.connect_custom_key_store(CustomKeyStoreId=cks)
        self.assertEqual(self.wait_settled(a, cks)["ConnectionState"], "CONNECTED")
        key = a.create_key(CustomKeyStoreId=cks, Origin="EXTERNAL_KEY_STORE",
                           XksKeyId=XKS_KEY)["KeyMetadata"]["KeyId"]
        # b and c open their own connections on first use.
        blob = b.encrypt(KeyId=key, Plaintext=b"xks", EncryptionContext=CONTEXT)["CiphertextBlob"]
        self.assertEqual(c.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)["Plaintext"],
                         b"xks")
        for n in nodes[1:]:
            self.assertIn("custom key store %s: this node's connection is open" % cks, log_text(n))
        # A disconnect through c stops the key on every node at once.
        c.disconnect_custom_key_store(CustomKeyStoreId=cks)
        for kms in (a, b, c):
            with self.assertRaises(botocore.exceptions.ClientError) as caught:
                kms.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)
            self.assertEqual(error_code(caught.exception), "KMSInvalidStateException")
        # a (which connected it) and b let their connections go at their next
        # tick, without a request; c's went with the disconnect itself.
        closed = "custom key store %s: this node's connection is closed (the store is " \
                 "DISCONNECTED)" % cks
        for n in nodes[:2]:
            wait_for("a node to close its connection",
                     lambda n=n: closed in log_text(n))
        b.connect_custom_key_store(CustomKeyStoreId=cks)
        self.assertEqual(self.wait_settled(b, cks)["ConnectionState"], "CONNECTED")
        for kms in (a, b, c):
            self.assertEqual(kms.decrypt(CiphertextBlob=blob,
                                         EncryptionContext=CONTEXT)["Plaintext"], b"xks")

    def test_connect_that_lost_its_lock_stops(self):
        """The database ends the session holding a connect worker's lock (an
        operator, a network break): the worker stops before it changes the
        state, and the lease holder's next scan connects the store."""
        nodes = self.cluster(2)
        a = h.kms_client(nodes[0])
        cks = self.create_xks_store(a, "lost-lock")
        self.proxy.set_delay(2, ops={"health"})
        a.connect_custom_key_store(CustomKeyStoreId=cks)
        time.sleep(0.5)  # the worker holds its lock and waits for the proxy
        self.pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name = 'kmsd lock'", dbname=self.db)
        self.proxy.set_delay(0)
        entry = self.wait_settled(a, cks)
        self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
        self.assertIn("custom key store %s: connect stopped: The connect lost its lock" % cks,
                      log_text(nodes[0]))

    def test_connect_outlives_its_node(self):
        """SIGKILL of the node running a connect: another node takes the
        lease and finishes it."""
        nodes = self.cluster()
        a, b, c = (h.kms_client(n) for n in nodes)
        cks = self.create_xks_store(a, "outlives")
        self.proxy.set_delay(5, ops={"health"})
        self.proxy.clear_requests()
        a.connect_custom_key_store(CustomKeyStoreId=cks)
        time.sleep(1)  # a's worker is waiting for the proxy's answer
        self.assertEqual(self.store_state(b, cks)["ConnectionState"], "CONNECTING")
        nodes[0].kill()
        self.proxy.set_delay(0.5, ops={"health"})
        entry = self.wait_settled(b, cks, seconds=30)
        self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
        holders = [n for n in nodes[1:] if leases(n) == ["background-work"]]
        self.assertEqual(len(holders), 1)
        log = log_text(holders[0])
        self.assertIn("this node holds the lease", log)
        self.assertIn("custom key store %s: CONNECTING -> CONNECTED" % cks, log)
        self.proxy.set_delay(0)
        key = b.create_key(CustomKeyStoreId=cks, Origin="EXTERNAL_KEY_STORE",
                           XksKeyId=XKS_KEY)["KeyMetadata"]["KeyId"]
        blob = b.encrypt(KeyId=key, Plaintext=b"after", EncryptionContext=CONTEXT)["CiphertextBlob"]
        self.assertEqual(c.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)["Plaintext"],
                         b"after")

    def test_idle_nodes_come_back_by_themselves(self):
        """PostgreSQL down then up with no request anywhere: every node's
        /health goes 503 and back to 200 on its own (a load balancer sends
        no request to a node that answers 503)."""
        nodes = self.cluster(2)
        self.pg.kill()
        for n in nodes:
            wait_for("/health 503", lambda n=n: health(n)[0] == 503)
        self.pg.start()
        for n in nodes:
            wait_for("/health 200", lambda n=n: health(n)[0] == 200)
        wait_for("one node to hold the lease again",
                 lambda: sum(leases(n) == ["background-work"] for n in nodes) == 1)

    def test_disconnect_waits_for_a_connect_on_another_node(self):
        """DisconnectCustomKeyStore through b while a's worker is connecting
        the store: the disconnect answers only once that worker has stopped,
        and the store stays DISCONNECTED."""
        nodes = self.cluster(2)
        a, b = (h.kms_client(n) for n in nodes)
        cks = self.create_xks_store(a, "raced")
        self.proxy.set_delay(3, ops={"health"})
        a.connect_custom_key_store(CustomKeyStoreId=cks)
        time.sleep(0.5)  # a's worker is waiting for the proxy's answer
        started = time.monotonic()
        b.disconnect_custom_key_store(CustomKeyStoreId=cks)
        self.assertGreater(time.monotonic() - started, 1.5, "the disconnect did not wait")
        self.assertEqual(self.store_state(a, cks)["ConnectionState"], "DISCONNECTED")
        self.assertIn("custom key store %s: connect stopped: The connect was overtaken: the store "
                      "is DISCONNECTING now." % cks, log_text(nodes[0]))
        time.sleep(1.5)
        self.assertEqual(self.store_state(b, cks)["ConnectionState"], "DISCONNECTED")

    # ------------------------------------------------------------ under load

    def run_load(self, nodes, seconds, during=None, threads_per_node=2):
        """A mixed load on every node (CreateKey, Encrypt, CreateAlias,
        DisableKey/EnableKey of the thread's own keys) for `seconds`, with
        `during()` called halfway.  Returns what was acknowledged."""
        acked = {"keys": {}, "blobs": [], "aliases": {}, "states": {}, "pending": {}}
        lock = threading.Lock()
        stop = threading.Event()
        errors = []

        def worker(server, n):
            kms = h.kms_client(server)
            rng = random.Random(n)
            mine = []
            i = 0
            while not stop.is_set():
                i += 1
                op = rng.choice(("create", "encrypt", "encrypt", "alias", "state")) if mine \
                    else "create"
                try:
                    if op == "create":
                        desc = "load-%d-%d" % (n, i)
                        key = kms.create_key(Description=desc)["KeyMetadata"]["KeyId"]
                        mine.append(key)
                        with lock:
                            acked["keys"][key] = desc
                            acked["states"][key] = "Enabled"
                    elif op == "encrypt":
                        key = rng.choice(mine)
                        plain = os.urandom(16)
                        blob = kms.encrypt(KeyId=key, Plaintext=plain)["CiphertextBlob"]
                        with lock:
                            acked["blobs"].append((blob, plain, key))
                    elif op == "alias":
                        key = rng.choice(mine)
                        name = "alias/load-%d-%d" % (n, i)
                        kms.create_alias(AliasName=name, TargetKeyId=key)
                        with lock:
                            acked["aliases"][name] = key
                    else:
                        key = rng.choice(mine)
                        with lock:
                            want = "Disabled" if acked["states"][key] == "Enabled" else "Enabled"
                            acked["pending"][key] = want
                        if want == "Disabled":
                            kms.disable_key(KeyId=key)
                        else:
                            kms.enable_key(KeyId=key)
                        with lock:
                            acked["states"][key] = want
                            del acked["pending"][key]
                except Exception as e:  # noqa: BLE001 - unacknowledged: anything goes
                    with lock:
                        errors.append(error_code(e))
                    if not server.running():
                        return
                    time.sleep(0.05)

        workers = [threading.Thread(target=worker, args=(server, k * 10 + j))
                   for k, server in enumerate(nodes) for j in range(threads_per_node)]
        for t in workers:
            t.start()
        time.sleep(seconds / 2)
        if during:
            during()
        time.sleep(seconds / 2)
        stop.set()
        for t in workers:
            t.join(60)
        acked["errors"] = errors
        return acked

    def assert_all_there(self, kms, acked):
        self.assertTrue(acked["keys"], "the load acknowledged no key")
        for key, desc in acked["keys"].items():
            md = kms.describe_key(KeyId=key)["KeyMetadata"]
            self.assertEqual(md["Description"], desc, key)
            allowed = {acked["states"][key], acked["pending"].get(key, acked["states"][key])}
            self.assertIn(md["KeyState"], allowed, key)
        disabled = {k for k in acked["keys"]
                    if kms.describe_key(KeyId=k)["KeyMetadata"]["KeyState"] == "Disabled"}
        for blob, plain, key in acked["blobs"]:
            if key in disabled:
                continue
            self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], plain)
        aliases = {}
        for page in kms.get_paginator("list_aliases").paginate():
            for entry in page["Aliases"]:
                aliases[entry["AliasName"]] = entry.get("TargetKeyId")
        for name, key in acked["aliases"].items():
            self.assertEqual(aliases.get(name), key, name)

    def test_sigkill_of_a_node_under_load_loses_nothing_acknowledged(self):
        nodes = self.cluster()
        acked = self.run_load(nodes, 6, during=lambda: nodes[1].kill())
        self.assertFalse(nodes[1].running())
        for n in (nodes[0], nodes[2]):
            self.assertTrue(n.running())
            self.assert_all_there(h.kms_client(n), acked)
        self.assertGreater(len(acked["blobs"]), 20)

    def test_postgresql_restart_under_load(self):
        nodes = self.cluster(2)
        acked = self.run_load(nodes, 8, during=self.pg.restart)
        for n in nodes:
            self.assertTrue(n.running(), "a node stopped")
        wait_for("both nodes to answer /health 200",
                 lambda: all(health(n)[0] == 200 for n in nodes))
        wait_for("one node to hold the lease again",
                 lambda: sum(leases(n) == ["background-work"] for n in nodes) == 1)
        for n in nodes:
            self.assert_all_there(h.kms_client(n), acked)
        self.assertIn("KMSInternalException", acked["errors"], "the restart was never seen")


class CloudHsmAcrossNodesTest(h.KmsdBaseTestCase):
    """Two nodes sharing HSMs: the operator's SoftHSM2 tokens in one token
    directory (SOFTHSM2_CONF) listed in one pool file, as a network HSM's
    tokens would be through its PKCS#11 module on each node."""

    def setUp(self):
        super().setUp()
        self.pg = pg_fixture.PgServer()
        self.pg.start()
        self.addCleanup(self.pg.stop)
        self.pg.create_database("cloudhsm_nodes")
        self.url, self.password = pg_fixture.split_url(self.pg.url("cloudhsm_nodes"))
        self.tokens = OperatorTokens()
        self.addCleanup(self.tokens.cleanup)
        for label, pin in SO_PINS.items():
            self.tokens.init_token(label, pin)
        self.pool = self.tokens.write_pool(pool_entries(self.tokens))

    def node(self, root_key_from=None):
        data_dir = os.path.join(self.tokens.dir, "node-%d" % time.monotonic_ns())
        os.makedirs(data_dir, mode=0o700)
        if root_key_from:
            shutil.copy2(os.path.join(root_key_from.data_dir, "root.key"),
                         os.path.join(data_dir, "root.key"))
        return self.start_server(data_dir=data_dir, args=["--store", self.url,
                                                          "--hsm-pool", self.pool],
                                 env={"PGPASSWORD": self.password,
                                      "SOFTHSM2_CONF": self.tokens.conf})

    def test_key_store_on_shared_hsms_serves_both_nodes(self):
        a_node = self.node()
        b_node = self.node(root_key_from=a_node)
        a, b = h.kms_client(a_node), h.kms_client(b_node)
        cluster = fx.make_cluster(a_node, fx.CertificateAuthority(), hsm_zones=(0, 1))
        self.assertEqual(len(fx.describe_cluster(fx.cloudhsm_client(b_node),
                                                 cluster.id)["Hsms"]), 2)
        cks = fx.create_store(b, cluster, "shared-hsms")
        entry = fx.connect(b, cks)   # run by a, the lease holder
        self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
        key_a = a.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=cks)["KeyMetadata"]["KeyId"]
        # b's first use, from eight threads at once: the ones that find b
        # logging in to the HSMs wait for it rather than fail.
        first = a.encrypt(KeyId=key_a, Plaintext=b"first use")["CiphertextBlob"]
        clients = [h.kms_client(b_node) for _ in range(8)]
        barrier = threading.Barrier(len(clients))
        outcomes = []

        def first_use(kms):
            barrier.wait()
            try:
                outcomes.append(kms.decrypt(CiphertextBlob=first)["Plaintext"])
            except botocore.exceptions.ClientError as e:
                outcomes.append(error_code(e))

        threads = [threading.Thread(target=first_use, args=(kms,)) for kms in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(outcomes, [b"first use"] * len(clients))
        key_b = b.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=cks)["KeyMetadata"]["KeyId"]
        blobs = []
        for key in (key_a, key_b):
            for enc, dec in ((a, b), (b, a)):
                blob = enc.encrypt(KeyId=key, Plaintext=b"one service")["CiphertextBlob"]
                self.assertEqual(dec.decrypt(CiphertextBlob=blob)["Plaintext"], b"one service")
                blobs.append(blob)
        self.assertIn("custom key store %s: this node's connection is open" % cks,
                      log_text(b_node))
        # Disconnected through b: neither node serves the keys.
        b.disconnect_custom_key_store(CustomKeyStoreId=cks)
        for kms in (a, b):
            with self.assertRaises(botocore.exceptions.ClientError) as caught:
                kms.decrypt(CiphertextBlob=blobs[0])
            self.assertEqual(error_code(caught.exception), "KMSInvalidStateException")
        # Connected again (a rotates kmsuser's password on both HSMs): b logs
        # in with the new one, and every old ciphertext decrypts on both.
        entry = fx.connect(b, cks)
        self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
        for kms in (b, a):
            for blob in blobs:
                self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"one service")


if __name__ == "__main__":
    unittest.main()
