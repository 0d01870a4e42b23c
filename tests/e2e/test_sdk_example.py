"""test_sdk_example - the README's C SDK example builds against the installed
library and does what the README says, against a real kmsd with a real
CloudHSM key store.

examples/sdk/connect_and_encrypt.c is compiled exactly as the README shows
(`cc connect_and_encrypt.c $(pkg-config --cflags --libs libkms)`) against a
`cmake --install` of the build, and run with the key store id: it must
connect the store, see it CONNECTED, create a key in it and round-trip the
secret.  boto3 then checks the server's side: the store is connected and the
key lives in it."""

import os
import subprocess
import unittest

import cloudhsm_fixture as fx
import kmsd_harness as h
import libkms_build

EXAMPLE = os.path.join(h.REPO_ROOT, "examples", "sdk", "connect_and_encrypt.c")


class SdkExampleTest(h.KmsdBaseTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lib = libkms_build.InstalledLibkms()
        cls.server = h.KmsdServer(args=["--enable-admin-api"])
        try:
            cls.example = cls.lib.compile(EXAMPLE, os.path.join(cls.lib.prefix, "connect_and_encrypt"))
            cls.server.start()
            cls.kms = h.kms_client(cls.server)
            cls.ca = fx.CertificateAuthority()
        except Exception:
            cls.server.cleanup()
            cls.lib.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        cls.lib.cleanup()
        super().tearDownClass()

    def run_example(self, *args, secret="hello, HSM"):
        # The secret goes in on standard input, never on the command line.
        return subprocess.run([self.example] + list(args), input=secret, capture_output=True, text=True,
                              timeout=180, env=self.lib.env(self.server))

    def test_connect_encrypt_decrypt(self):
        cluster = fx.make_cluster(self.server, self.ca)
        store_id = fx.create_store(self.kms, cluster, "sdk-example-" + cluster.id)
        self.assertEqual(fx.store_entry(self.kms, store_id)["ConnectionState"], "DISCONNECTED")

        proc = self.run_example(store_id, secret="hello, HSM")
        self.assertEqual(proc.returncode, 0, "stdout:\n%s\nstderr:\n%s\n%s" % (
            proc.stdout, proc.stderr, self.server.describe()))
        lines = proc.stdout.splitlines()
        self.assertEqual(lines[0], "key store %s is CONNECTED" % store_id)
        key_id = lines[1].split()[1]
        self.assertEqual(lines[1], "key %s created in the key store" % key_id)
        self.assertRegex(lines[2], r"^encrypted 10 bytes into a \d+-byte ciphertext$")
        self.assertRegex(lines[3], r"^decrypted 10 bytes with arn:aws:kms:[^ ]+:key/%s: they match the secret$"
                         % key_id)
        self.assertNotIn("hello, HSM", proc.stdout + proc.stderr)

        # The server agrees: the store is connected and the key is in it.
        self.assertEqual(fx.store_entry(self.kms, store_id)["ConnectionState"], "CONNECTED")
        meta = self.kms.describe_key(KeyId=key_id)["KeyMetadata"]
        self.assertEqual(meta["CustomKeyStoreId"], store_id)
        self.assertEqual(meta["Origin"], "AWS_CLOUDHSM")
        self.assertEqual(meta["KeyState"], "Enabled")

        # Run again on the connected store: connecting again does nothing.
        again = self.run_example(store_id, secret="another secret")
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertRegex(again.stdout.splitlines()[3], r"^decrypted 14 bytes with \S+: they match the secret$")
        self.assertNotIn("another secret", again.stdout + again.stderr)

    def test_unknown_store_reports_the_service_error(self):
        proc = self.run_example("cks-0000000000000000f")
        self.assertEqual(proc.returncode, 1, proc.stdout)
        self.assertIn("ConnectCustomKeyStore: CustomKeyStoreNotFoundException", proc.stderr)
        self.assertIn("HTTP 400", proc.stderr)

    def test_usage(self):
        proc = self.run_example()
        self.assertEqual(proc.returncode, 2)
        self.assertIn("usage: connect_and_encrypt", proc.stderr)
        # A secret on the command line is refused (it would show in ps).
        proc = self.run_example("cks-0000000000000000f", "hello, HSM")
        self.assertEqual(proc.returncode, 2)
        self.assertIn("usage: connect_and_encrypt", proc.stderr)
        proc = self.run_example("cks-0000000000000000f", secret="")
        self.assertEqual(proc.returncode, 2)
        self.assertIn("on standard input", proc.stderr)


if __name__ == "__main__":
    unittest.main()
