"""test_cks_rotation - the kmsuser password rotation of CloudHSM key stores
survives a crash at every step and a PIN change that fails on one HSM.

Every connect rotates kmsuser's password on each HSM of the cluster
(C_SetPIN, one HSM after the other) and, when an earlier rotation was cut
short, first moves the HSMs still on the old password to the new one.  These
tests stop kmsd at each of those steps, deterministically: kmsd loads
SoftHSM2 through tests/p11shim (a PKCS#11 module that forwards every call and
SIGKILLs the process, or fails the call, at the Nth C_SetPIN of the process).
After each fault a plain restart of kmsd on the same data directory, with no
operator action, must bring the store to CONNECTED, and a ciphertext made
before must still decrypt.

Only the connect worker calls C_SetPIN in kmsd (hsm-cli's user management
sets PINs as the security officer, C_InitPIN), and the faults are armed only
in processes where nothing but that connect runs, so "the Nth C_SetPIN" is
the Nth PIN change of that connect.  The log line the shim writes proves the
fault fired where the test meant it to.
"""

import os
import time
import unittest

import kmsd_harness as h
import cloudhsm_fixture as fx

SOFTHSM2_PATHS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
LOCKOUT_AFTER = 5   # HSMI_MAX_LOGIN_FAILURES in lib/cloudhsm/hsm_internal.h


def real_softhsm2():
    for path in [os.environ.get("KMSD_SOFTHSM2_MODULE")] + list(SOFTHSM2_PATHS):
        if path and os.path.isfile(path):
            return path
    raise unittest.SkipTest("SoftHSM2 is not installed")


def shim_module():
    """The built tests/p11shim module (ctest names it in KMSD_P11SHIM)."""
    candidates = [os.environ.get("KMSD_P11SHIM")]
    if os.environ.get("KMSD_BUILD_DIR"):
        candidates.append(os.path.join(os.environ["KMSD_BUILD_DIR"], "libp11shim.so"))
    candidates.append(os.path.join(h.REPO_ROOT, "build", "libp11shim.so"))
    for path in candidates:
        if path and os.path.isfile(path):
            return os.path.abspath(path)
    raise FileNotFoundError("libp11shim.so not found (tried %s); build the tests" % candidates)


FAULTS = ("P11SHIM_SETPIN_KILL_BEFORE", "P11SHIM_SETPIN_KILL_AFTER", "P11SHIM_SETPIN_FAIL",
          "P11SHIM_SETPIN_PAUSE_AFTER")


def fault(kind=None, call=None):
    """The shim's environment: no fault, or `kind` ("KILL_BEFORE",
    "KILL_AFTER", "FAIL", "PAUSE_AFTER") at the `call`th C_SetPIN."""
    env = {name: None for name in FAULTS}
    if kind:
        env["P11SHIM_SETPIN_" + kind] = str(call)
    return env


SHIM_LINE = {"KILL_BEFORE": "p11shim: SIGKILL before C_SetPIN #%d",
             "KILL_AFTER": "p11shim: SIGKILL after C_SetPIN #%d",
             "FAIL": "p11shim: CKR_DEVICE_ERROR for C_SetPIN #%d",
             "PAUSE_AFTER": "p11shim: pausing after C_SetPIN #%d"}


class RotationFaultsTest(h.KmsdBaseTestCase):
    """One kmsd data directory, one cluster of two HSMs, one store and key;
    each test leaves the store connected-then-DISCONNECTED and healthy."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = h.KmsdServer(args=["--enable-admin-api"], env=dict(
            fault(), KMSD_SOFTHSM2_MODULE=shim_module(), P11SHIM_MODULE=real_softhsm2()))
        try:
            cls.server.start()
            cls.kms = h.kms_client(cls.server)
            cls.cluster = fx.make_cluster(cls.server, fx.CertificateAuthority())
            cls.cks = fx.create_store(cls.kms, cls.cluster, "rotation")
            entry = fx.connect(cls.kms, cls.cks)
            if entry["ConnectionState"] != "CONNECTED":
                raise AssertionError("the store did not connect: %r" % (entry,))
            cls.key = cls.kms.create_key(Origin="AWS_CLOUDHSM",
                                         CustomKeyStoreId=cls.cks)["KeyMetadata"]["KeyId"]
            cls.ct = cls.kms.encrypt(KeyId=cls.key, Plaintext=b"made before the faults",
                                     EncryptionContext={"t": "rotation"})["CiphertextBlob"]
            cls.kms.disconnect_custom_key_store(CustomKeyStoreId=cls.cks)
        except Exception:
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        super().tearDownClass()

    def setUp(self):
        self._test_servers.append(self.server)   # failures attach its log
        # Each test starts from a running kmsd without faults and the store
        # DISCONNECTED (after a failed test, as near to that as it gets).
        self.server.env.update(fault())
        if not self.server.running():
            self.server.start()
        self.kms = h.kms_client(self.server)
        state = fx.wait_store_state(self.kms, self.cks, ("CONNECTED", "FAILED", "DISCONNECTED"))
        if state["ConnectionState"] != "DISCONNECTED":
            self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)

    def run(self, result=None):
        # The class's server outlives each test: KmsdBaseTestCase must not
        # clean it up after one test, only attach its log to a failure.
        cleanup = self.server.cleanup
        self.server.cleanup = lambda: None
        try:
            return super().run(result)
        finally:
            self.server.cleanup = cleanup

    # -- helpers ----------------------------------------------------------

    def log_size(self):
        return os.path.getsize(self.server.log_path)

    def assertShimSaid(self, since, kind, call):
        with open(self.server.log_path, errors="replace") as f:
            f.seek(since)
            text = f.read()
        self.assertIn(SHIM_LINE[kind] % call, text)

    def restart(self, env):
        # A graceful stop exits 0 (under ASan: no leak on the way out).
        self.assertEqual(self.server.stop(), 0, self.server.describe())
        self.server.env.update(env)
        self.server.start()
        self.kms = h.kms_client(self.server)

    def killed_by_connect(self, kind, call):
        """From a DISCONNECTED store: restart kmsd with the fault armed and
        connect; the connect worker dies at the fault."""
        self.restart(fault(kind, call))
        mark = self.log_size()
        self.kms.connect_custom_key_store(CustomKeyStoreId=self.cks)
        self.assertEqual(self.server.wait_exit(), -9)
        self.assertShimSaid(mark, kind, call)

    def killed_by_recovery(self, kind, call):
        """kmsd died mid-connect: start it with the fault armed; its start-up
        recovery resumes the connect and dies at the fault."""
        self.server.env.update(fault(kind, call))
        mark = self.log_size()
        self.assertEqual(self.server.start_until_exit(), -9)
        self.assertShimSaid(mark, kind, call)

    def recovers_by_itself(self):
        """A clean start: recovery alone reaches CONNECTED, old ciphertexts
        decrypt, new ones round-trip; then disconnect for the next test."""
        self.server.env.update(fault())
        self.server.start()
        self.kms = h.kms_client(self.server)
        entry = fx.wait_store_state(self.kms, self.cks, ("CONNECTED", "FAILED"))
        self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
        self.assertConnectedAndUsable()
        self.assertRotationFinished()
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)

    def assertConnectedAndUsable(self):
        self.assertEqual(self.kms.decrypt(CiphertextBlob=self.ct,
                                          EncryptionContext={"t": "rotation"})["Plaintext"],
                         b"made before the faults")
        blob = self.kms.encrypt(KeyId=self.key, Plaintext=b"fresh")["CiphertextBlob"]
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"fresh")

    def query(self, sql, *args):
        return h.store_fetchone(self.server.data_dir, sql, args)

    def kmsuser_row(self):
        """(failed_logins, locked) of the cluster's kmsuser."""
        return self.query("SELECT failed_logins, locked FROM hsm_users "
                          "WHERE cluster_id = ? AND username = ?", self.cluster.id, fx.KMSUSER)

    def has_pending_password(self):
        """Whether the store's row holds a pending password (a change of
        kmsuser's password not finished yet)."""
        return self.query("SELECT CASE WHEN pending_password_wrapped IS NULL THEN 0 ELSE 1 END "
                          "FROM custom_key_stores "
                          "WHERE cks_id = ?", self.cks)[0] == 1

    def assertRotationFinished(self):
        self.assertFalse(self.has_pending_password())
        self.assertEqual(self.kmsuser_row(), (0, 0))

    # -- tests ------------------------------------------------------------

    def test_kill_at_every_step_of_a_rotation(self):
        # C_SetPIN #1 changes the first HSM, #2 the second: before #1 the new
        # password is only in the database; between them the HSMs differ;
        # after #2 the database has not promoted it yet.
        for kind, call in (("KILL_BEFORE", 1), ("KILL_AFTER", 1), ("KILL_BEFORE", 2),
                           ("KILL_AFTER", 2)):
            with self.subTest(kill=kind, call=call):
                self.killed_by_connect(kind, call)
                # Killed mid-change: the new password is still pending.
                self.assertTrue(self.has_pending_password())
                self.recovers_by_itself()

    def test_two_kills_in_a_row(self):
        # The first kill leaves the first HSM on the new password and the
        # second on the old one.  The next start's recovery first moves the
        # second HSM over (its C_SetPIN #1), then rotates again (#2, #3):
        # kill it at each of those steps too, then start cleanly.
        for kind, call in (("KILL_BEFORE", 1), ("KILL_AFTER", 1), ("KILL_AFTER", 2),
                           ("KILL_AFTER", 3)):
            with self.subTest(second_kill=kind, call=call):
                self.killed_by_connect("KILL_AFTER", 1)
                self.killed_by_recovery(kind, call)
                self.recovers_by_itself()

    def test_pin_change_failing_on_the_second_hsm(self):
        # The second HSM refuses the new PIN: the first HSM has the new
        # password, the second the old one, both stored.  The connect fails
        # (INTERNAL_ERROR: an HSM that refused C_SetPIN is in doubt); the next
        # Disconnect + Connect, in the same process (the shim fails only its
        # second C_SetPIN), finishes the rotation.  Repeated, this never locks
        # kmsuser out.
        for round_no in range(6):
            with self.subTest(round=round_no):
                self.restart(fault("FAIL", 2))
                mark = self.log_size()
                entry = fx.connect(self.kms, self.cks)
                self.assertEqual(entry["ConnectionState"], "FAILED", entry)
                self.assertEqual(entry.get("ConnectionErrorCode"), "INTERNAL_ERROR", entry)
                self.assertShimSaid(mark, "FAIL", 2)
                self.assertTrue(self.has_pending_password())   # left unfinished
                self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)

                entry = fx.connect(self.kms, self.cks)
                self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
                self.assertConnectedAndUsable()
                self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)
                failed_logins, locked = self.kmsuser_row()
                self.assertFalse(locked)
                self.assertLess(failed_logins, LOCKOUT_AFTER)
                self.assertRotationFinished()

    def test_disconnect_stops_a_rotation_in_flight(self):
        # The connect worker is between its last C_SetPIN and recording the
        # new password as the cluster's.  A Disconnect must not return while
        # that worker can still write: the operator then takes kmsuser back
        # (hsm-cli, then UpdateCustomKeyStore), and nothing the worker does
        # afterwards may overwrite the cluster's record of that password
        # (the PIN new HSMs get, what hsm-cli checks).
        pause_s = 1.5
        self.server.env["P11SHIM_PAUSE_MS"] = str(int(pause_s * 1000))
        self.restart(fault("PAUSE_AFTER", 2))
        mark = self.log_size()
        self.kms.connect_custom_key_store(CustomKeyStoreId=self.cks)
        deadline = time.monotonic() + 20
        while True:
            with open(self.server.log_path, errors="replace") as f:
                f.seek(mark)
                if SHIM_LINE["PAUSE_AFTER"] % 2 in f.read():
                    break
            self.assertLess(time.monotonic(), deadline, "the rotation never reached C_SetPIN #2")
            time.sleep(0.02)
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)
        # Disconnect returned only after the worker left C_SetPIN and stopped.
        with open(self.server.log_path, errors="replace") as f:
            f.seek(mark)
            self.assertIn("p11shim: resuming after C_SetPIN #2", f.read())
        fx.admin_ok(self.server, "ChangePassword", ClusterId=self.cluster.id,
                    Username=fx.KMSUSER, Password="operator-pw-2")
        operators_record = self.query("SELECT hash FROM hsm_users WHERE cluster_id = ? AND "
                                      "username = ?", self.cluster.id, fx.KMSUSER)
        self.kms.update_custom_key_store(CustomKeyStoreId=self.cks,
                                         KeyStorePassword="operator-pw-2")
        time.sleep(pause_s + 0.5)   # a worker still running would have written by now
        self.assertEqual(self.query("SELECT hash FROM hsm_users WHERE cluster_id = ? AND "
                                    "username = ?", self.cluster.id, fx.KMSUSER),
                         operators_record, "a stale rotation overwrote the operator's password")
        self.assertEqual(fx.wait_store_state(self.kms, self.cks, ("DISCONNECTED",))
                         ["ConnectionState"], "DISCONNECTED")
        self.restart(fault())
        entry = fx.connect(self.kms, self.cks)
        self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
        self.assertConnectedAndUsable()
        self.assertRotationFinished()
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)

    def test_same_password_again_keeps_pending(self):
        # The operator knows kmsuser's password, then a change is cut short
        # (the first HSM takes the new password, the second refuses it) and
        # the store is FAILED.  Telling KMS the password it already has must
        # not drop the new one the first HSM has: the next connect finishes.
        self.restart(fault())
        fx.admin_ok(self.server, "ChangePassword", ClusterId=self.cluster.id,
                    Username=fx.KMSUSER, Password="operator-pw-4")
        self.kms.update_custom_key_store(CustomKeyStoreId=self.cks,
                                         KeyStorePassword="operator-pw-4")
        self.restart(fault("FAIL", 2))
        self.assertEqual(fx.connect(self.kms, self.cks)["ConnectionState"], "FAILED")
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)
        self.assertTrue(self.has_pending_password())
        self.kms.update_custom_key_store(CustomKeyStoreId=self.cks,
                                         KeyStorePassword="operator-pw-4")
        self.assertTrue(self.has_pending_password())
        entry = fx.connect(self.kms, self.cks)
        self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
        self.assertConnectedAndUsable()
        self.assertRotationFinished()
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)

    def test_operator_password_clears_pending(self):
        # A change left unfinished (the second HSM refused it), then the
        # operator takes kmsuser back: hsm-cli sets a password on every HSM,
        # UpdateCustomKeyStore gives it to KMS.  The old pending password is
        # on no HSM any more and must not stay a candidate.
        self.restart(fault("FAIL", 2))
        self.assertEqual(fx.connect(self.kms, self.cks)["ConnectionState"], "FAILED")
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)
        self.assertTrue(self.has_pending_password())
        self.restart(fault())
        fx.admin_ok(self.server, "ChangePassword", ClusterId=self.cluster.id,
                    Username=fx.KMSUSER, Password="operator-pw-1")
        self.kms.update_custom_key_store(CustomKeyStoreId=self.cks,
                                         KeyStorePassword="operator-pw-1")
        self.assertFalse(self.has_pending_password())
        entry = fx.connect(self.kms, self.cks)
        self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
        self.assertConnectedAndUsable()
        self.assertRotationFinished()
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=self.cks)
        with open(self.server.log_path, errors="replace") as f:
            log = f.read()
        self.assertIn("password change is unfinished", log)
        for secret in ("operator-pw-1", fx.KMSUSER_PASSWORD):
            self.assertNotIn(secret, log)


if __name__ == "__main__":
    unittest.main()
