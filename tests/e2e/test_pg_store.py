"""test_pg_store - kmsd keeping its state in PostgreSQL (docs/multi-node.md).

Each test runs kmsd with --store postgresql://... on a real PostgreSQL server
this suite starts from Debian's packages (tests/e2e/pg_fixture.py), so it
can restart that server under kmsd.  The rest of the end-to-end suite runs
on PostgreSQL too when scripts/test.sh sets KMSD_TEST_PG_URL; these tests
cover what only a shared store has:

- the state lives in the database, not the data directory: another data
  directory holding the same root.key serves the same keys, aliases and
  ciphertexts;
- the lease on background work: a second kmsd on the database serves too,
  without it; the lease passes to the second when the first stops; a node
  whose lease was taken by another session serves on without it and takes
  it back when it is free; a node whose lease's connection broke on its own
  side only ends its old session and takes the lease back; a holder whose
  database stalls pauses its background work and keeps the lease (the other
  node does not take it), then resumes;
- root.key: one that does not open the database is refused, and a node
  without one is told to copy it (and none is made for it);
- PostgreSQL killed and started again under kmsd: calls fail fast with
  KMSInternalException while the database is down, and work again after it,
  without restarting kmsd (GET /health answers 503 meanwhile, so a load
  balancer can send requests elsewhere); no acknowledged write is lost;
- the password of the URL never reaches the log or an error message;
- concurrent CreateAlias of one name: exactly one success.
"""

import os
import shutil
import socket
import subprocess
import threading
import time
import unittest

import botocore.exceptions

import kmsd_harness as h
import pg_fixture

REFUSAL_SECONDS = 20


class OneSidedProxy:
    """A TCP relay to PostgreSQL that can break connections on the client's
    side only, as a NAT or load balancer that forgets a connection does: the
    client's sockets are closed, the server's stay open, so the server
    keeps those sessions (and their locks) until it notices."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.clients, self.upstreams = [], []
        self.lock = threading.Lock()
        self.break_at_commit = False
        self.stalled = False  # hold every byte until cleared: a stall, nothing lost
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self.lock:
                self.clients.append(client)
                self.upstreams.append(upstream)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src, dst, from_client):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self.stalled:
                    time.sleep(0.02)
                dst.sendall(data)
                # A simple-protocol COMMIT reached the server: its answer
                # never reaches the client, whose side is closed.
                if from_client and self.break_at_commit and b"Q\x00\x00\x00\x0bCOMMIT\x00" in data:
                    self.break_at_commit = False
                    src.shutdown(socket.SHUT_RDWR)
                    src.close()
                    return
        except OSError:
            pass

    def break_client_side(self):
        with self.lock:
            clients, self.clients = self.clients, []
        for c in clients:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already (break_at_commit)
            c.close()

    def close(self):
        self.listener.close()
        self.break_client_side()
        with self.lock:
            for u in self.upstreams:
                u.close()
PG_LEASE_LOCK = 0x6b6d736403  # LEASE_LOCK in lib/store/store_pg.c


def leases(server):
    status, _, body = server.raw_request("GET", "/health")
    return status, h.parse_body(body)["store"]["leases"]


def wait_for(what, predicate, seconds=15):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.1)


class PgStoreTest(h.KmsdBaseTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg = pg_fixture.PgServer()
        cls.pg.start()

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.db = "pgstore_%s" % self.id().rsplit(".", 1)[-1].lower()
        self.pg.create_database(self.db)
        self.url, self.password = pg_fixture.split_url(self.pg.url(self.db))

    def node(self, data_dir=None, url=None, extra_env=None):
        """A kmsd on this test's database (password through PGPASSWORD)."""
        env = {"PGPASSWORD": self.password}
        env.update(extra_env or {})
        return self.start_server(data_dir=data_dir, args=["--store", url or self.url], env=env)

    def run_refused(self, data_dir, url=None, env=None):
        """Run kmsd on this test's database expecting it to exit; (rc, stderr)."""
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        run_env.update(env if env is not None else {"PGPASSWORD": self.password})
        proc = subprocess.run([h.find_kmsd_binary(), "--listen", "127.0.0.1:%d" % h.free_port(),
                               "--data-dir", data_dir, "--store", url or self.url],
                              capture_output=True, text=True, timeout=REFUSAL_SECONDS, env=run_env)
        return proc.returncode, proc.stderr

    def new_data_dir(self, root_key_from=None):
        path = os.path.join(self.pg.dir, "..", "node-%s-%d" % (self.db, time.monotonic_ns()))
        path = os.path.abspath(path)
        os.makedirs(path, mode=0o700)
        self.addCleanup(shutil.rmtree, path, True)
        if root_key_from:
            shutil.copy2(os.path.join(root_key_from, "root.key"), os.path.join(path, "root.key"))
        return path

    def test_state_lives_in_the_database(self):
        a = self.node()
        kms = h.kms_client(a)
        key = kms.create_key(Description="shared")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/shared", TargetKeyId=key)
        kms.tag_resource(KeyId=key, Tags=[{"TagKey": "t", "TagValue": "v"}])
        blob = kms.encrypt(KeyId="alias/shared", Plaintext=b"kept in postgres")["CiphertextBlob"]
        self.assertFalse(os.path.exists(os.path.join(a.data_dir, "kmsd.db")))
        self.assertEqual(a.stop(), 0)

        b = self.node(data_dir=self.new_data_dir(root_key_from=a.data_dir))
        kms = h.kms_client(b)
        self.assertEqual(kms.describe_key(KeyId="alias/shared")["KeyMetadata"]["Description"],
                         "shared")
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"kept in postgres")
        self.assertEqual(kms.list_resource_tags(KeyId=key)["Tags"],
                         [{"TagKey": "t", "TagValue": "v"}])
        with open(b.log_path, errors="replace") as f:
            self.assertIn("store=%s" % self.url, f.read())

    def test_second_node_serves_and_takes_the_lease_over(self):
        a = self.node()
        kms = h.kms_client(a)
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        b = self.node(data_dir=self.new_data_dir(root_key_from=a.data_dir))
        self.assertEqual(leases(a), (200, ["background-work"]))
        self.assertEqual(leases(b), (200, []))
        self.assertEqual(h.kms_client(b).describe_key(KeyId=key)["KeyMetadata"]["KeyState"],
                         "Enabled")
        self.assertEqual(a.stop(), 0)
        wait_for("the lease to pass to the second node",
                 lambda: leases(b)[1] == ["background-work"])
        with open(b.log_path, errors="replace") as f:
            self.assertIn("this node holds the lease", f.read())

    def test_root_key_must_be_the_databases(self):
        a = self.node()
        h.kms_client(a).create_key()
        self.assertEqual(a.stop(), 0)
        # Another root key: refused, the database unchanged.
        other = self.new_data_dir()
        with open(os.path.join(other, "root.key"), "wb") as f:
            f.write(os.urandom(32))
        os.chmod(os.path.join(other, "root.key"), 0o600)
        rc, err = self.run_refused(other)
        self.assertEqual(rc, 1, err)
        self.assertIn("root.key does not belong to this store", err)
        # No root key at all: told to copy it, and none made.
        bare = self.new_data_dir()
        rc, err = self.run_refused(bare)
        self.assertEqual(rc, 1, err)
        self.assertIn("Copy root.key from a node that serves this database", err)
        self.assertFalse(os.path.exists(os.path.join(bare, "root.key")))
        # The right one serves.
        self.node(data_dir=self.new_data_dir(root_key_from=a.data_dir))

    def test_database_restart_is_survived(self):
        server = self.node()
        kms = h.kms_client(server)
        fast = kms  # retries off: each call is one request
        acknowledged = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(3)]
        blob = kms.encrypt(KeyId=acknowledged[0], Plaintext=b"before")["CiphertextBlob"]

        self.pg.kill()   # harsher than a restart: no goodbye to the connections
        for call in (lambda: fast.create_key(),
                     lambda: fast.decrypt(CiphertextBlob=blob)):
            started = time.monotonic()
            with self.assertRaises(botocore.exceptions.ClientError) as caught:
                call()
            self.assertEqual(caught.exception.response["Error"]["Code"], "KMSInternalException")
            self.assertLess(time.monotonic() - started, 5.0)
        # /health tells a load balancer to send requests elsewhere.
        status, _, body = server.raw_request("GET", "/health")
        self.assertEqual(status, 503)
        store = h.parse_body(body)["store"]
        self.assertEqual((store["backend"], store["reachable"]), ("postgresql", False))
        self.pg.start()

        # kmsd itself was never restarted.
        self.assertTrue(server.running())
        acknowledged.append(kms.create_key()["KeyMetadata"]["KeyId"])
        listed = {k["KeyId"] for k in kms.list_keys()["Keys"]}
        self.assertTrue(set(acknowledged) <= listed, (acknowledged, listed))
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"before")
        status, _, body = server.raw_request("GET", "/health")
        self.assertEqual(status, 200)
        self.assertEqual(h.parse_body(body)["status"], "ok")
        # Its lease went with the crash, and it takes it again.
        wait_for("the lease to be taken again", lambda: leases(server)[1] == ["background-work"])

    def test_lease_taken_by_another_session(self):
        """Another session ends the lease's connection and takes the lease:
        the node serves on without background work, and takes the lease
        back once it is free."""
        server = self.node()
        kms = h.kms_client(server)
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        url, password = pg_fixture.split_url(self.pg.url(self.db))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGPASSWORD"] = password
        holder = subprocess.Popen([pg_fixture.find_psql(), "-X", "-w", "-q", "-d", url],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  env=env, text=True)
        self.addCleanup(holder.wait, 10)
        holder.stdin.write("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE application_name = 'kmsd lease' "
                           "AND datname = current_database();\n"
                           "SELECT pg_advisory_lock(%d);\n" % PG_LEASE_LOCK)
        holder.stdin.flush()
        wait_for("the node to give the lease up", lambda: leases(server) == (200, []))
        self.assertEqual(kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"], "Enabled")
        kms.create_key()
        holder.stdin.close()
        wait_for("the lease to come back", lambda: leases(server)[1] == ["background-work"])
        with open(server.log_path, errors="replace") as f:
            log = f.read()
        self.assertIn("the lease's connection to the database ended", log)

    def test_a_stall_pauses_the_lease_without_giving_it_away(self):
        """The database stops answering the lease holder for a while (its
        connections stall, nothing breaks): the holder pauses its background
        work, but keeps the lease, so the other node does not take it; the
        work resumes when the answers come."""
        proxy = OneSidedProxy(self.pg.port)
        self.addCleanup(proxy.close)
        a = self.node(url=self.url.replace(":%d/" % self.pg.port, ":%d/" % proxy.port))
        b = self.node(data_dir=self.new_data_dir(root_key_from=a.data_dir))
        self.assertEqual(leases(a), (200, ["background-work"]))
        proxy.stalled = True
        wait_for("the holder to pause", lambda: leases(a) == (200, []), 10)
        time.sleep(3)  # three of b's ticks
        self.assertEqual(leases(b), (200, []))
        proxy.stalled = False
        wait_for("the holder to resume", lambda: leases(a) == (200, ["background-work"]), 10)
        self.assertEqual(leases(b), (200, []))
        with open(a.log_path, errors="replace") as f:
            log = f.read()
        self.assertIn("store: the lease's connection does not answer; background work paused", log)
        self.assertIn("store: the lease's connection answers again", log)

    def test_lease_survives_a_break_the_server_did_not_see(self):
        """The lease's connection breaks on kmsd's side only: the server
        still has the old session holding the lease.  kmsd ends its own old
        session and takes the lease back."""
        proxy = OneSidedProxy(self.pg.port)
        self.addCleanup(proxy.close)
        url = self.url.replace(":%d/" % self.pg.port, ":%d/" % proxy.port)
        server = self.node(url=url)
        kms = h.kms_client(server)
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        proxy.break_client_side()
        wait_for("the node to give the lease up", lambda: leases(server) == (200, []), 20)
        wait_for("the lease to come back", lambda: leases(server)[1] == ["background-work"], 20)
        with open(server.log_path, errors="replace") as f:
            self.assertIn("ended this node's old session", f.read())
        self.assertEqual(kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"], "Enabled")
        kms.create_key()

    def test_commit_without_an_answer_is_resolved(self):
        """The connection breaks after COMMIT reached the server and before
        its answer came back: kmsd asks the server what became of the
        transaction (txid_status) instead of reporting a failure, so the
        CreateKey that committed answers 200, once."""
        proxy = OneSidedProxy(self.pg.port)
        self.addCleanup(proxy.close)
        server = self.node(url=self.url.replace(":%d/" % self.pg.port, ":%d/" % proxy.port))
        kms = h.kms_client(server)
        kms.create_key()
        before = {k["KeyId"] for k in kms.list_keys()["Keys"]}
        proxy.break_at_commit = True
        key = kms.create_key(Description="committed unanswered")["KeyMetadata"]["KeyId"]
        self.assertFalse(proxy.break_at_commit, "no COMMIT was broken")
        after = {k["KeyId"] for k in kms.list_keys()["Keys"]}
        self.assertEqual(after - before, {key})
        self.assertEqual(kms.describe_key(KeyId=key)["KeyMetadata"]["Description"],
                         "committed unanswered")

    def test_password_is_never_shown(self):
        with_password = self.pg.url(self.db)   # the password in the URL itself
        server = self.start_server(args=["--store", with_password], env={"PGPASSWORD": None})
        h.kms_client(server).create_key()
        self.assertEqual(server.stop(), 0)
        with open(server.log_path, errors="replace") as f:
            log = f.read()
        self.assertNotIn(self.password, log.replace(" ".join(server.command()), ""))
        self.assertIn("store=postgresql://kmsd:***@", log)
        # A wrong password, and a URL libpq cannot parse: neither quoted.
        wrong = with_password.replace(self.password, "not-the-s3cret-" + self.password[:4])
        rc, err = self.run_refused(self.new_data_dir(), url=wrong, env={})
        self.assertEqual(rc, 1, err)
        self.assertNotIn("not-the-s3cret", err)
        rc, err = self.run_refused(self.new_data_dir(), url=with_password + "?bogus=1", env={})
        self.assertEqual(rc, 1, err)
        self.assertIn("cannot be parsed", err)
        self.assertNotIn(self.password, err)

    def test_concurrent_create_alias_has_one_winner(self):
        server = self.node()
        kms = h.kms_client(server)
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        outcomes = []
        lock = threading.Lock()

        def create():
            client = h.kms_client(server)
            try:
                client.create_alias(AliasName="alias/race", TargetKeyId=key)
                result = "ok"
            except botocore.exceptions.ClientError as e:
                result = e.response["Error"]["Code"]
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=create) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(outcomes.count("ok"), 1, outcomes)
        self.assertEqual(outcomes.count("AlreadyExistsException"), 11, outcomes)


if __name__ == "__main__":
    unittest.main()
