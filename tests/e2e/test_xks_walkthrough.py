"""test_xks_walkthrough - the README's external key store walkthrough and its one-command script, as written.

The walkthrough strings together the real xks-proxy on a SoftHSM2 token, a
CA made with openssl, kmsd's XKS client and the real aws CLI, so its shell
blocks are executed verbatim, as test_walkthrough does for CloudHSM key
stores.  The rewrites, and only these: the line that starts kmsd
(scripts/run.sh ...) is not run, the harness starts kmsd with that line's
flags instead, once the lines before it have run (they make the proxy's CA
that kmsd is told to trust); the documented endpoint http://127.0.0.1:4599
becomes the harness's; and the proxy's documented port 8443 becomes a free
one, so parallel runs do not collide.  xks-proxy is found on PATH (the build
directory) and `scripts/` resolves to the repository's, as from a checkout.

Then the outcome is checked independently with boto3: the store is
CONNECTED and external, the key names its external key, and the ciphertext
the walkthrough wrote decrypts to the plaintext it wrote, also after kmsd
restarts.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import kmsd_harness as h
from test_readme import DOC_ENDPOINT, fenced_blocks, logical_lines, SERVER_COMMAND
from test_walkthrough import README, build_dir, section

SECTION = "External key stores"
WALKTHROUGH = "From a proxy to an encrypted secret"
QUICKSTART = "One command for external key stores"
DOC_PROXY_PORT = "8443"


class XksWalkthroughTest(h.KmsdBaseTestCase):
    @classmethod
    def setUpClass(cls):
        with open(README, encoding="utf-8") as f:
            text = f.read()
        cls.section = section(text, SECTION, 2)
        if cls.section is None:
            raise AssertionError("README.md has no '## %s' section" % SECTION)

    def setUp(self):
        self.cwd = tempfile.mkdtemp(prefix="kmsd-xks-walkthrough-")
        os.symlink(os.path.join(h.REPO_ROOT, "scripts"), os.path.join(self.cwd, "scripts"))
        self.home = os.path.join(self.cwd, "home")
        os.makedirs(self.home)
        self.proxy_port = str(h.free_port())
        self.server = None

    def tearDown(self):
        pid_file = os.path.join(self.cwd, "var-xks", "xks-proxy.pid")
        if os.path.exists(pid_file):
            with open(pid_file) as f:
                try:
                    os.kill(int(f.read().strip()), signal.SIGTERM)
                except (OSError, ValueError):
                    pass
        if self.server:
            self.server.cleanup()
        shutil.rmtree(self.cwd, ignore_errors=True)

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"HOME": self.home, "AWS_PAGER": "", "AWS_MAX_ATTEMPTS": "1",
                    "PATH": build_dir() + os.pathsep + os.environ.get("PATH", "")})
        return env

    def run_script(self, script):
        # Output to files, not pipes: the proxy the script leaves running
        # inherits them, and a pipe would stay open until it exits.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-s"], input=script.encode(),
                                  stdout=out, stderr=err, cwd=self.cwd, env=self.env(), timeout=400)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        if proc.returncode != 0:
            self.fail("script failed (exit %d)\nscript:\n%s\nstdout:\n%s\nstderr:\n%s\n%s" % (
                proc.returncode, script, stdout, stderr,
                self.server.describe() if self.server else "(kmsd not started)"))
        return stdout

    def rewrite(self, line):
        line = line.replace(DOC_PROXY_PORT, self.proxy_port)
        if self.server:
            line = line.replace(DOC_ENDPOINT, self.server.endpoint)
        return line

    def split_at_server(self, title):
        """(lines before the kmsd line, kmsd's flags, lines after) of a subsection's ```sh blocks."""
        sub = section(self.section, title, 3)
        self.assertIsNotNone(sub, "the external key store section has no '### %s'" % title)
        blocks = fenced_blocks(sub, ("sh", "bash", "shell"))
        self.assertTrue(blocks, "'### %s' has no ```sh block" % title)
        before, flags, after = [], None, []
        for block in blocks:
            for line in logical_lines(block):
                if SERVER_COMMAND.match(line):
                    self.assertIsNone(flags, "two lines start kmsd")
                    words = shlex.split(line)
                    flags = words[1:] if words[0].endswith(("run.sh", "kmsd")) else words
                    continue
                (before if flags is None else after).append(line)
        return before, flags, after

    def start_kmsd(self, flags):
        flags = [f.replace(DOC_PROXY_PORT, self.proxy_port) for f in flags]
        # Paths in the flags are the reader's working directory's.
        flags = [os.path.join(self.cwd, f) if f.startswith("var-xks/") else f for f in flags]
        self.server = h.KmsdServer(args=flags)
        self.server.start()

    def test_walkthrough(self):
        before, flags, after = self.split_at_server(WALKTHROUGH)
        self.assertIsNotNone(flags, "the walkthrough no longer starts kmsd")
        self.assertIn("--xks-ca-bundle", flags)
        self.assertIn("--xks-connect-to", flags)
        script = "\n".join(before + after)
        for command in (r"scripts/xks-quickstart\.sh --keep-running", r"kms\s+create-custom-key-store",
                        r"EXTERNAL_KEY_STORE", r"kms\s+connect-custom-key-store",
                        r"kms\s+describe-custom-key-stores",
                        r"kms\s+create-key\s+--origin EXTERNAL_KEY_STORE", r"--xks-key-id",
                        r"kms\s+encrypt", r"kms\s+decrypt"):
            self.assertRegex(script, command, "the walkthrough no longer runs %s" % command)

        self.run_script("\n".join(self.rewrite(l) for l in before) + "\n")
        self.start_kmsd(flags)
        self.assertIn(DOC_ENDPOINT, "\n".join(after))
        stdout = self.run_script("\n".join(self.rewrite(l) for l in after) + "\n")

        with open(os.path.join(self.cwd, "plain.txt"), "rb") as f:
            plaintext = f.read()
        promised = re.search(r"last command prints `([^`]*)`", section(self.section, WALKTHROUGH, 3))
        self.assertIsNotNone(promised, "the walkthrough no longer says what the last command prints")
        self.assertEqual(promised.group(1).encode(), plaintext)
        self.assertTrue(stdout.endswith(plaintext.decode()),
                        "decrypt printed %r, expected it to end with %r" % (stdout[-200:], plaintext))
        self.assertFalse(os.path.exists(os.path.join(self.cwd, "xks-store.json")),
                         "the request file holding the secret is left behind")

        kms = h.kms_client(self.server)
        stores = [s for s in kms.describe_custom_key_stores()["CustomKeyStores"]
                  if s["CustomKeyStoreName"] == "my-xks-store"]
        self.assertEqual(len(stores), 1, stores)
        store = stores[0]
        self.assertEqual(store["ConnectionState"], "CONNECTED")
        self.assertEqual(store["CustomKeyStoreType"], "EXTERNAL_KEY_STORE")
        with open(os.path.join(self.cwd, "var-xks", "access-key-id")) as f:
            self.assertEqual(store["XksProxyConfiguration"]["AccessKeyId"], f.read().strip())
        with open(os.path.join(self.cwd, "var-xks", "secret-access-key")) as f:
            self.assertNotIn(f.read().strip(), repr(store))
        with open(os.path.join(self.cwd, "cipher.bin"), "rb") as f:
            blob = f.read()
        out = kms.decrypt(CiphertextBlob=blob)
        self.assertEqual(out["Plaintext"], plaintext)
        meta = kms.describe_key(KeyId=out["KeyId"])["KeyMetadata"]
        self.assertEqual(meta["Origin"], "EXTERNAL_KEY_STORE")
        self.assertEqual(meta["CustomKeyStoreId"], store["CustomKeyStoreId"])
        self.assertEqual(meta["XksKeyConfiguration"], {"Id": "demo-key-1"})
        self.assertEqual(meta["KeyState"], "Enabled")

        # The proxy saw kmsd's calls, signed with the store's credential.
        with open(os.path.join(self.cwd, "var-xks", "xks-proxy.log"), errors="replace") as f:
            log = f.read()
        for op in ("GetHealthStatus", "GetKeyMetadata", "Encrypt", "Decrypt"):
            self.assertRegex(log, r"op=%s key=\S+ kmsOperation=\S+ .*outcome=ok" % op)
        # Neither the secret nor the plaintext reached a log.
        with open(os.path.join(self.cwd, "var-xks", "secret-access-key")) as f:
            secret = f.read().strip()
        with open(self.server.log_path, errors="replace") as f:
            kmsd_log = f.read()
        for text, name in ((log, "xks-proxy's log"), (kmsd_log, "kmsd's log")):
            self.assertNotIn(secret, text, name)
            self.assertNotIn(plaintext.decode(), text, name)

        # After a restart of kmsd the store reconnects by itself and the old
        # ciphertext still decrypts.
        self.server.restart()
        kms = h.kms_client(self.server)
        store_id = store["CustomKeyStoreId"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"][0]
            if state["ConnectionState"] in ("CONNECTED", "FAILED"):
                break
            time.sleep(0.1)
        self.assertEqual(state["ConnectionState"], "CONNECTED", state)
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], plaintext)

    def test_quickstart_section(self):
        before, flags, after = self.split_at_server(QUICKSTART)
        self.assertIsNone(flags, "the one-command section starts kmsd itself")
        # What the README says comes first: the proxy's files from a first
        # run of scripts/xks-quickstart.sh (which stops its proxy again).
        self.run_script("scripts/xks-quickstart.sh --port %s\n" % self.proxy_port)
        self.start_kmsd(self.split_at_server(WALKTHROUGH)[1])
        script = "\n".join(self.rewrite(l) for l in before)
        self.assertIn("scripts/xks-keystore-quickstart.sh", script)
        # The script's own default port is the documented one; point it at this run's.
        script = script.replace("xks-keystore-quickstart.sh ",
                                "xks-keystore-quickstart.sh --proxy-port %s " % self.proxy_port, 1)
        stdout = self.run_script(script + "\n")
        described = json.loads(stdout)["CustomKeyStores"]
        self.assertEqual(len(described), 1)
        self.assertEqual(described[0]["ConnectionState"], "CONNECTED")
        self.assertEqual(described[0]["CustomKeyStoreType"], "EXTERNAL_KEY_STORE")
        kms = h.kms_client(self.server)
        key = kms.create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=described[0]["CustomKeyStoreId"],
                             XksKeyId="demo-key-1")["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"quickstart")["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"quickstart")

    def test_quickstart_script_interface(self):
        script = os.path.join(h.REPO_ROOT, "scripts", "xks-keystore-quickstart.sh")
        proc = subprocess.run([script, "--help"], capture_output=True, text=True, env=self.env(), timeout=30)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        for option in ("--endpoint-url", "--proxy-dir", "--proxy-port", "--region", "--name"):
            self.assertIn(option, proc.stdout)
        proc = subprocess.run([script, "--bogus"], capture_output=True, text=True, env=self.env(), timeout=30)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("unknown argument --bogus", proc.stderr)


if __name__ == "__main__":
    unittest.main()
