"""test_kmsd_xks_quickstart - scripts/kmsd-xks-quickstart.sh works as the README
gives it: xks-proxy on a SoftHSM2 token, kmsd with --xks-ca-bundle and
--xks-connect-to, and the real aws CLI creating a CONNECTED external key store,
a KMS key in it, and an encrypt/decrypt round trip.  Run twice in one work
directory (the second run reuses the proxy's token and certificates and makes
kmsd's demo data afresh); secrets stay out of both logs and in owner-only
files."""
import os
import subprocess
import tempfile
import unittest

import kmsd_harness as h

SCRIPT = os.path.join(h.REPO_ROOT, "scripts", "kmsd-xks-quickstart.sh")


class KmsdXksQuickStartTest(unittest.TestCase):

    def test_runs_twice(self):
        with tempfile.TemporaryDirectory() as tmp:
            workdir = os.path.join(tmp, "w")
            pport, kport = h.free_port(), h.free_port()
            for round_ in (1, 2):
                r = subprocess.run([SCRIPT, "--work-dir", workdir, "--proxy-port", str(pport),
                                    "--kmsd-port", str(kport)],
                                   capture_output=True, text=True, timeout=180)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                lines = r.stdout.splitlines()
                self.assertEqual(lines[-2], "hello from an external key store")
                store_id, key_id = lines[-1].split()
                self.assertTrue(store_id.startswith("cks-"), store_id)
                self.assertEqual(len(key_id), 36, key_id)
            secret = open(os.path.join(workdir, "proxy", "secret-access-key")).read().strip()
            self.assertEqual(
                os.stat(os.path.join(workdir, "proxy", "secret-access-key")).st_mode & 0o077, 0)
            for log in ("kmsd.log", os.path.join("proxy", "xks-proxy.log")):
                with open(os.path.join(workdir, log), errors="replace") as f:
                    text = f.read()
                self.assertNotIn(secret, text, log)
                self.assertNotIn("hello from an external key store", text, log)
            with open(os.path.join(workdir, "kmsd.log")) as f:
                self.assertIn("op=Decrypt outcome=OK", f.read())


if __name__ == "__main__":
    unittest.main()
