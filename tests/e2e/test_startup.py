"""test_startup - what kmsd checks before it serves a data directory.

One kmsd per data directory: a second process on the same directory (on
another port or on the same one) must exit at once naming the first one's
pid, without running start-up recovery on the live store, so the first
one's CONNECTED CloudHSM key store stays CONNECTED and its keys usable.  The
lock dies with its process, so a SIGKILLed kmsd never blocks the next start.

The root key must be the store's: a root.key copied from another data
directory is refused at start with the store unchanged, instead of a server
that answers every crypto call with a 500.
"""

import hashlib
import os
import shutil
import sqlite3
import subprocess
import time
import unittest

import kmsd_harness as h
import cloudhsm_fixture as fx

# A refused start must be quick: no waiting for locks, HSMs or timeouts.
REFUSAL_SECONDS = 10
WRONG_KEY_MESSAGE = "root.key does not belong to this data directory's store"


def run_kmsd_expecting_exit(data_dir, port, timeout=30):
    """Run kmsd on `data_dir`; returns (exit status, stderr, seconds taken),
    or (None, stderr, seconds) when it was still running after `timeout`
    (it is then killed)."""
    cmd = [h.find_kmsd_binary(), "--listen", "127.0.0.1:%d" % port, "--data-dir", data_dir]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=timeout)
        return proc.returncode, err, time.monotonic() - started
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return None, err, time.monotonic() - started


def file_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def store_rows(db_path):
    """Every row of every table of a stopped kmsd's store, for comparisons."""
    con = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: sorted(con.execute("SELECT * FROM \"%s\"" % t).fetchall(), key=repr)
                for t in tables}
    finally:
        con.close()


class DataDirectoryLockTest(h.KmsdBaseTestCase):

    def test_second_kmsd_refused_and_first_keeps_its_key_store(self):
        first = self.start_server(args=["--enable-admin-api"])
        kms = h.kms_client(first)
        cluster = fx.make_cluster(first, fx.CertificateAuthority())
        cks = fx.create_store(kms, cluster, "lock-test")
        self.assertEqual(fx.connect(kms, cks)["ConnectionState"], "CONNECTED")
        hsm_key = kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=cks)["KeyMetadata"]["KeyId"]
        local_key = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=hsm_key, Plaintext=b"before the second kmsd")["CiphertextBlob"]
        expected = "data directory %s is in use by kmsd (pid %d)" % (first.data_dir, first.proc.pid)

        for label, port in (("another port", h.free_port()), ("the same port", first.port)):
            with self.subTest(label):
                rc, err, took = run_kmsd_expecting_exit(first.data_dir, port)
                self.assertIsNotNone(rc, "a second kmsd on %s kept running:\n%s" % (label, err))
                self.assertNotEqual(rc, 0, err)
                self.assertLess(took, REFUSAL_SECONDS, err)
                self.assertIn(expected, err)
                # Never recovery on the live store: the first kmsd's store stays
                # CONNECTED and its keys keep working.
                self.assertEqual(fx.store_entry(kms, cks)["ConnectionState"], "CONNECTED")
                self.assertEqual(kms.describe_key(KeyId=hsm_key)["KeyMetadata"]["KeyState"],
                                 "Enabled")
                self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"],
                                 b"before the second kmsd")
                again = kms.encrypt(KeyId=hsm_key, Plaintext=b"after")["CiphertextBlob"]
                self.assertEqual(kms.decrypt(CiphertextBlob=again)["Plaintext"], b"after")
                kms.encrypt(KeyId=local_key, Plaintext=b"local")
        # Still true a moment later (a recovery worker would have moved it by now).
        time.sleep(1)
        self.assertEqual(fx.store_entry(kms, cks)["ConnectionState"], "CONNECTED")

        # Once the first has stopped, the directory is free again.
        self.assertEqual(first.stop(), 0)
        second = self.start_server(data_dir=first.data_dir)
        kms2 = h.kms_client(second)
        fx.wait_store_state(kms2, cks, "CONNECTED")
        self.assertEqual(kms2.decrypt(CiphertextBlob=blob)["Plaintext"], b"before the second kmsd")
        self.assertEqual(second.stop(), 0)  # before the first's cleanup removes the directory

    def test_lock_dies_with_a_killed_process(self):
        first = self.start_server()
        kms = h.kms_client(first)
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"survives")["CiphertextBlob"]
        first.kill()
        # The lock file stays behind with the dead process's pid in it ...
        with open(os.path.join(first.data_dir, "kmsd.lock")) as f:
            self.assertEqual(f.read().strip(), str(first.proc.pid))
        # ... and blocks nobody.
        second = self.start_server(data_dir=first.data_dir)
        self.assertEqual(h.kms_client(second).decrypt(CiphertextBlob=blob)["Plaintext"], b"survives")
        self.assertEqual(second.stop(), 0)


@unittest.skipIf(h.on_postgresql(), "compares the SQLite file before and after; a PostgreSQL "
                 "store's root key checks are test_pg_store's")
class RootKeyCheckTest(h.KmsdBaseTestCase):

    def make_data_dir(self):
        """A stopped kmsd's data directory holding one key; returns (dir, ciphertext)."""
        server = self.start_server()
        kms = h.kms_client(server)
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"belongs to " + server.data_dir.encode())
        self.assertEqual(server.stop(), 0)
        return server.data_dir, blob["CiphertextBlob"]

    def assertRefused(self, data_dir):
        db = os.path.join(data_dir, "kmsd.db")
        digest, rows = file_digest(db), store_rows(db)
        rc, err, took = run_kmsd_expecting_exit(data_dir, h.free_port())
        self.assertIsNotNone(rc, "kmsd served with another store's root key:\n" + err)
        self.assertNotEqual(rc, 0, err)
        self.assertLess(took, REFUSAL_SECONDS, err)
        self.assertIn(WRONG_KEY_MESSAGE, err)
        self.assertEqual(file_digest(db), digest, "the refused start changed kmsd.db")
        self.assertEqual(store_rows(db), rows)
        return err

    def swap_in(self, data_dir, key_path):
        shutil.copyfile(key_path, os.path.join(data_dir, "root.key"))

    def test_root_key_of_another_data_directory_is_refused(self):
        dir_a, blob_a = self.make_data_dir()
        dir_b, _ = self.make_data_dir()
        own_key = os.path.join(os.path.dirname(dir_a), "root.key.a")
        shutil.copy2(os.path.join(dir_a, "root.key"), own_key)
        self.swap_in(dir_a, os.path.join(dir_b, "root.key"))
        self.assertRefused(dir_a)
        # With its own root key back the directory starts and decrypts as before.
        self.swap_in(dir_a, own_key)
        server = self.start_server(data_dir=dir_a)
        self.assertEqual(h.kms_client(server).decrypt(CiphertextBlob=blob_a)["Plaintext"],
                         b"belongs to " + dir_a.encode())
        self.assertEqual(server.stop(), 0)

    def test_store_from_before_check_values(self):
        """A store written before kmsd kept a check value: the root key must
        open what the store holds before one is written."""
        dir_a, blob_a = self.make_data_dir()
        dir_b, _ = self.make_data_dir()
        db = os.path.join(dir_a, "kmsd.db")
        con = sqlite3.connect(db)
        with con:
            self.assertEqual(con.execute("DELETE FROM store_meta").rowcount, 1)
        con.close()
        own_key = os.path.join(os.path.dirname(dir_a), "root.key.a")
        shutil.copy2(os.path.join(dir_a, "root.key"), own_key)
        self.swap_in(dir_a, os.path.join(dir_b, "root.key"))
        self.assertRefused(dir_a)
        self.assertEqual(store_rows(db)["store_meta"], [])

        self.swap_in(dir_a, own_key)
        server = self.start_server(data_dir=dir_a)
        self.assertEqual(h.kms_client(server).decrypt(CiphertextBlob=blob_a)["Plaintext"],
                         b"belongs to " + dir_a.encode())
        self.assertEqual(server.stop(), 0)
        self.assertEqual(len(store_rows(db)["store_meta"]), 1)
        # From now on the check value alone decides.
        self.swap_in(dir_a, os.path.join(dir_b, "root.key"))
        self.assertRefused(dir_a)


if __name__ == "__main__":
    unittest.main()
