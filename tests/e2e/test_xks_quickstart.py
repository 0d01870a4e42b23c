"""test_xks_quickstart - the README's xks-proxy command works as written.

scripts/xks-quickstart.sh is the one-command start the README gives for
xks-proxy: it makes a SoftHSM2 token, keys, certificates, a credential and a
configuration file, starts the proxy and calls the four XKS operations with
curl --aws-sigv4.  Run it for real in a fresh work directory, then again on
the same directory (it must reuse what it made), and check what it printed
and what the proxy logged.
"""

import json
import os
import re
import subprocess
import tempfile
import unittest

import kmsd_harness as h

SCRIPT = os.path.join(h.REPO_ROOT, "scripts", "xks-quickstart.sh")


def xks_proxy_path():
    build = os.environ.get("KMSD_BUILD_DIR") or os.path.join(h.REPO_ROOT, "build")
    return os.path.join(build, "xks-proxy")


class QuickStartTest(unittest.TestCase):
    def run_script(self, workdir, port):
        return subprocess.run(
            [SCRIPT, "--work-dir", workdir, "--port", str(port), "--xks-proxy", xks_proxy_path()],
            capture_output=True, text=True, timeout=120)

    def test_runs_twice_in_one_directory(self):
        with tempfile.TemporaryDirectory() as tmp:
            workdir = os.path.join(tmp, "xks")
            for round_ in (1, 2):
                port = h.free_port()
                if round_ == 2:  # the file keeps the first port; point it at a free one
                    path = os.path.join(workdir, "xks-proxy.yaml")
                    with open(path) as f:
                        text = f.read()
                    with open(path, "w") as f:
                        f.write(re.sub(r'listen: "127.0.0.1:\d+"', 'listen: "127.0.0.1:%d"' % port, text))
                r = self.run_script(workdir, port)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                lines = r.stdout.splitlines()
                health = json.loads(lines[lines.index("GetHealthStatus:") + 1])
                self.assertEqual(health["ekmFleetDetails"][0]["healthStatus"], "ACTIVE")
                meta = json.loads(lines[lines.index("GetKeyMetadata:") + 1])
                self.assertEqual(meta, {"keySpec": "AES_256", "keyUsage": ["ENCRYPT", "DECRYPT"],
                                        "keyStatus": "ENABLED"})
                enc = json.loads(lines[lines.index("Encrypt:") + 1])
                self.assertIn("ciphertextDataIntegrityValue", enc)
                self.assertEqual(lines[-1], "hello, xks")
                self.assertEqual("setting up" in r.stderr, round_ == 1)
            # Secrets stay in files only the owner can read, and out of the log.
            for name in ("token.pin", "secret-access-key", "server.key", "ca.key"):
                self.assertEqual(os.stat(os.path.join(workdir, name)).st_mode & 0o077, 0, name)
            with open(os.path.join(workdir, "xks-proxy.log")) as f:
                log = f.read()
            with open(os.path.join(workdir, "secret-access-key")) as f:
                self.assertNotIn(f.read().strip(), log)
            with open(os.path.join(workdir, "token.pin")) as f:
                self.assertNotIn(f.read().strip(), log)
            self.assertNotIn("hello, xks", log)
            self.assertEqual(log.count("op=Encrypt"), 2)
            self.assertEqual(log.count("stopped"), 2)


if __name__ == "__main__":
    unittest.main()
