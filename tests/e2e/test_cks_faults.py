"""test_cks_faults - the errors of CloudHSM key stores that only a fault
provokes: an HSM that does not answer in time (DependencyTimeoutException)
and stored data damaged at rest (KMSInternalException).

Everything is real: kmsd is the built binary, the HSMs are SoftHSM2 tokens
made through the CloudHSMv2 API, the clients are boto3.

* An HSM that stalls.  SoftHSM2 keeps each token in a directory and guards
  its `generation` file with a POSIX record lock; while another process
  holds that lock (a backup or copy tool, an administrator's script), every
  call that needs the token's objects blocks inside the module.  That is how
  a real HSM stalls from kmsd's side: a PKCS#11 call that does not return.
  CreateKey calls then hold all of an HSM's pooled sessions; the next
  request waits `--hsm-timeout` for one and fails with
  DependencyTimeoutException (CreateKey, and GenerateRandom in that store).
  The stalled calls themselves are not bounded (PKCS#11 has no cancel, see
  docs/pkcs11.md): they finish when the HSM answers again, and no key is
  lost or half made.
* A key store record damaged at rest while kmsd was stopped (a field no
  longer holds a value kmsd could have written): DescribeCustomKeyStores
  and GenerateRandom answer KMSInternalException (500, retryable) naming
  the store, never a secret, and other stores keep working.
"""

import fcntl
import glob
import os
import threading
import time
import unittest

import botocore.exceptions

import kmsd_harness as h
import cloudhsm_fixture as fx

HSM_TIMEOUT_MS = 300
POOL_SESSIONS_PER_HSM = 8      # HSMI_POOL_SIZE in lib/cloudhsm/hsm_internal.h
HSMS = 2


def lock_tokens(data_dir):
    """Take the POSIX write lock of every SoftHSM2 token's generation file
    under the data directory, as another process would.  Returns the open
    descriptors (closing them releases the locks)."""
    paths = glob.glob(os.path.join(data_dir, "hsm", "tokens", "*", "generation"))
    fds = []
    for path in paths:
        fd = os.open(path, os.O_RDWR)
        fcntl.lockf(fd, fcntl.LOCK_EX)
        fds.append(fd)
    return fds


def is_dependency_timeout(e):
    return (isinstance(e, botocore.exceptions.ClientError) and
            e.response["Error"]["Code"] == "DependencyTimeoutException")


def unlock_tokens(fds):
    for fd in fds:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)


class Call:
    """One KMS call on its own thread and client; `result` is the response
    dict or the exception once the thread ends."""

    def __init__(self, server, operation, **params):
        self.operation = operation
        self.result = None
        client = h.kms_client(server)

        def run():
            try:
                self.result = getattr(client, operation)(**params)
            except Exception as e:  # examined by the test
                self.result = e
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()


class StalledHsmTest(h.KmsdBaseTestCase):
    """kmsd --hsm-timeout 300 with every HSM of a connected store stalled."""

    def test_dependency_timeout_while_the_hsms_stall(self):
        # Every session of both HSMs must end up held by a stalled call.  Any
        # call that reaches the module stalls (SoftHSM2 also blocks opening a
        # new session), and which HSM a call starts on rotates, so the test
        # keeps adding calls until one can no longer get a session.
        sessions = POOL_SESSIONS_PER_HSM * HSMS
        max_calls = sessions * 4
        server = self.start_server(args=["--enable-admin-api", "--hsm-timeout",
                                         str(HSM_TIMEOUT_MS), "--threads", str(max_calls + 8)])
        kms = h.kms_client(server)
        ca = fx.CertificateAuthority()
        cluster = fx.make_cluster(server, ca)
        store = fx.create_store(kms, cluster, "stall")
        self.assertEqual(fx.connect(kms, store)["ConnectionState"], "CONNECTED")
        self.assertEqual(len(kms.generate_random(NumberOfBytes=32,
                                                 CustomKeyStoreId=store)["Plaintext"]), 32)
        keys_before = {k["KeyId"] for k in kms.list_keys()["Keys"]}

        fds = lock_tokens(server.data_dir)
        self.assertEqual(len(fds), HSMS)
        calls = []
        try:
            for _ in range(sessions):
                calls.append(Call(server, "create_key", CustomKeyStoreId=store))

            # Probe in the background (a probe may stall too) until one gets
            # DependencyTimeoutException: from then on no session is free.
            deadline = time.monotonic() + 60
            while True:
                self.assertLess(time.monotonic(), deadline, "no call ever timed out")
                self.assertLess(len(calls), max_calls, "the HSMs never filled up")
                probe = Call(server, "generate_random", NumberOfBytes=16, CustomKeyStoreId=store)
                calls.append(probe)
                probe.thread.join(3)
                if probe.thread.is_alive():
                    continue
                if is_dependency_timeout(probe.result):
                    break
                self.assertIsInstance(probe.result, dict, probe.result)
                calls.append(Call(server, "create_key", CustomKeyStoreId=store))

            # Fresh clients from here on: a request stalled in an HSM also
            # blocks the HTTP worker thread it runs on, and with it any other
            # connection that thread serves, such as `kms`'s kept-alive one
            # (docs/pkcs11.md).  A new connection goes to a free thread.
            started = time.monotonic()
            err = self.assertKmsError("DependencyTimeoutException",
                                      h.kms_client(server).generate_random,
                                      NumberOfBytes=16, CustomKeyStoreId=store)
            waited = time.monotonic() - started
            self.assertIn("did not answer in time", err["Message"])
            # It waited the flag's time (on each HSM), not the 10 s default.
            self.assertGreaterEqual(waited, HSM_TIMEOUT_MS / 1000.0)
            self.assertLess(waited, 5.0)

            started = time.monotonic()
            err = self.assertKmsError("DependencyTimeoutException",
                                      h.kms_client(server).create_key, CustomKeyStoreId=store)
            self.assertLess(time.monotonic() - started, 5.0)
            self.assertIn("stayed busy", err["Message"])

            # The stalled calls are still waiting for the HSM, far past the
            # timeout: nothing bounds a PKCS#11 call in progress.
            stalled = [c for c in calls if c.thread.is_alive()]
            self.assertGreaterEqual(len(stalled), sessions)
            for c in calls:
                if not c.thread.is_alive() and not isinstance(c.result, dict):
                    self.assertTrue(is_dependency_timeout(c.result), c.result)
            # Meanwhile the server answers what needs no HSM.
            fresh = h.kms_client(server)
            self.assertEqual(fx.store_entry(fresh, store)["ConnectionState"], "CONNECTED")
            self.assertEqual(len(fresh.generate_random(NumberOfBytes=8)["Plaintext"]), 8)
        finally:
            unlock_tokens(fds)
            for c in calls:
                c.thread.join(60)

        kms = h.kms_client(server)
        # When the HSMs answer again every stalled call completes: normally,
        # or with a retryable KMSInternalException when the module then fails
        # the call (SoftHSM2 may answer CKR_GENERAL_ERROR to C_GenerateKey
        # when many stalled creations resume at once).  The ones that timed
        # out or failed left no key behind.
        for c in calls:
            self.assertFalse(c.thread.is_alive())
            if c in stalled:
                if not isinstance(c.result, dict):
                    self.assertEqual(c.result.response["Error"]["Code"], "KMSInternalException",
                                     c.result)
            elif not isinstance(c.result, dict):
                self.assertTrue(is_dependency_timeout(c.result), c.result)
        made = {c.result["KeyMetadata"]["KeyId"] for c in calls
                if c.operation == "create_key" and isinstance(c.result, dict)}
        self.assertTrue(made)
        keys_after = {k["KeyId"] for k in kms.list_keys()["Keys"]}
        self.assertEqual(keys_after - keys_before, made)
        blob = kms.encrypt(KeyId=sorted(made)[0], Plaintext=b"after the stall")["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"after the stall")
        self.assertEqual(len(kms.generate_random(NumberOfBytes=16,
                                                 CustomKeyStoreId=store)["Plaintext"]), 16)

    def test_flag_is_checked(self):
        for bad in ("0", "600001", "ten", "-5"):
            with self.subTest(value=bad):
                with self.assertRaises(h.KmsdStartError) as cm:
                    self.start_server(args=["--hsm-timeout", bad])
                self.assertIn("--hsm-timeout", str(cm.exception))


class DamagedStoreRecordTest(h.KmsdBaseTestCase):
    """A custom key store row damaged at rest while kmsd was stopped."""

    def damage(self, server, cks_id, column, value):
        n = h.store_execute(server.data_dir,
                            "UPDATE custom_key_stores SET %s = ? WHERE cks_id = ?" % column,
                            (value, cks_id))
        self.assertEqual(n, 1)

    def assertInternal(self, fn, **kwargs):
        err = self.assertKmsError("KMSInternalException", fn, **kwargs)
        self.assertNotIn(fx.KMSUSER_PASSWORD, err["Message"])
        return err

    def test_damaged_rows_answer_internal_exception(self):
        server = self.start_server(args=["--enable-admin-api"])
        kms = h.kms_client(server)
        ca = fx.CertificateAuthority()
        clusters = [fx.make_cluster(server, ca) for _ in range(3)]
        bent = fx.create_store(kms, clusters[0], "bent-state")
        anchorless = fx.create_store(kms, clusters[1], "bent-anchor")
        healthy = fx.create_store(kms, clusters[2], "healthy")
        for cks in (anchorless, healthy):
            self.assertEqual(fx.connect(kms, cks)["ConnectionState"], "CONNECTED")

        server.stop()
        # Bit rot in two fields: a connection state kmsd never writes, and a
        # trust anchor that is no longer a certificate.
        self.damage(server, bent, "connection_state", "CONNECTE\x04")
        # (PostgreSQL's text holds no NUL byte: there the damage is the rest.)
        self.damage(server, anchorless, "trust_anchor_pem",
                    "-----BEGIN CERTIF" + ("" if h.on_postgresql() else "\x00") + "\x13")
        server.start()

        # DescribeCustomKeyStores: the listing and each damaged store by id or
        # name fail; nothing is shown as a state the store never had.
        err = self.assertInternal(kms.describe_custom_key_stores)
        self.assertIn("damaged", err["Message"])
        err = self.assertInternal(kms.describe_custom_key_stores, CustomKeyStoreId=bent)
        self.assertIn(bent, err["Message"])
        self.assertIn("connection state", err["Message"])
        err = self.assertInternal(kms.describe_custom_key_stores, CustomKeyStoreName="bent-anchor")
        self.assertIn("trust anchor", err["Message"])

        # GenerateRandom in the damaged (still connected) store.
        err = self.assertInternal(kms.generate_random, NumberOfBytes=16,
                                  CustomKeyStoreId=anchorless)
        self.assertIn(anchorless, err["Message"])
        with self.assertRaises(kms.exceptions.KMSInternalException) as cm:
            kms.generate_random(NumberOfBytes=16, CustomKeyStoreId=bent)
        self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPStatusCode"], 500)

        # The healthy store is untouched (it reconnects after the restart).
        fx.wait_store_state(kms, healthy, "CONNECTED")
        self.assertEqual(len(kms.generate_random(NumberOfBytes=16,
                                                 CustomKeyStoreId=healthy)["Plaintext"]), 16)

        with open(server.log_path, errors="replace") as f:
            log = f.read()
        self.assertIn("stored record is damaged", log)
        self.assertNotIn(fx.KMSUSER_PASSWORD, log)


if __name__ == "__main__":
    unittest.main()
