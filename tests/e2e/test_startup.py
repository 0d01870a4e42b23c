"""test_startup - what kmsd checks before it serves a data directory.

One kmsd per data directory: a second process on the same directory (on
another port or on the same one) must exit at once naming the first one's
pid, without running start-up recovery on the live store, so the first
one's CONNECTED CloudHSM key store stays CONNECTED and its keys usable.  The
lock dies with its process, so a SIGKILLed kmsd never blocks the next start.
"""

import os
import subprocess
import time
import unittest

import kmsd_harness as h
import cloudhsm_fixture as fx

# A refused start must be quick: no waiting for locks, HSMs or timeouts.
REFUSAL_SECONDS = 10


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


if __name__ == "__main__":
    unittest.main()
