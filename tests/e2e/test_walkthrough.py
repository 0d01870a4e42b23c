"""test_walkthrough - the README's CloudHSM walkthrough and the quickstart script work, as written.

The walkthrough is how a newcomer meets custom key stores, and it strings
together three real tools (aws cloudhsmv2/kms, openssl, hsm-cli) against
every layer of kmsd, so its shell blocks are executed verbatim, as
test_readme does for the quick start: the only rewrites are that the harness
runs the server (lines starting kmsd or run.sh are dropped) and the
documented endpoint http://127.0.0.1:4599 becomes the harness's.  The
blocks export their own credentials; nothing AWS_* is inherited.  hsm-cli is
found on PATH (the build directory, as the README tells readers to set it)
and `scripts/` resolves to the repository's, as from a checkout.

Then the outcome is checked independently with boto3: the store the
walkthrough made is CONNECTED, its key lives in that store, and the
ciphertext it wrote decrypts to the plaintext it wrote.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import kmsd_harness as h
from test_readme import DOC_ENDPOINT, fenced_blocks, logical_lines, SERVER_COMMAND

README = os.path.join(h.REPO_ROOT, "README.md")
SECTION = "CloudHSM key stores"
WALKTHROUGH = "From an empty server to an encrypted secret"
QUICKSTART = "One command"


def section(text, title, level):
    """The text under the heading of `level` whose title is `title`, up to the
    next heading of the same or a higher level; None when there is none."""
    lines = text.splitlines()
    start = None
    in_fence = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        if in_fence:
            continue
        m = re.match(r"^(#{1,6})\s+(.*?)\s*$", line)
        if not m:
            continue
        if start is None:
            if len(m.group(1)) == level and m.group(2) == title:
                start = i + 1
        elif len(m.group(1)) <= level:
            return "\n".join(lines[start:i])
    return None if start is None else "\n".join(lines[start:])


def shell_script(blocks, endpoint):
    kept = []
    for block in blocks:
        for line in logical_lines(block):
            if SERVER_COMMAND.match(line):
                continue
            kept.append(line.replace(DOC_ENDPOINT, endpoint))
    return "\n".join(kept) + "\n"


def build_dir():
    return os.environ.get("KMSD_BUILD_DIR") or os.path.dirname(h.find_kmsd_binary())


class WalkthroughTest(h.KmsdBaseTestCase):
    @classmethod
    def setUpClass(cls):
        with open(README, encoding="utf-8") as f:
            text = f.read()
        cls.section = section(text, SECTION, 2)
        if cls.section is None:
            raise AssertionError("README.md has no '## %s' section" % SECTION)
        cls.server = h.KmsdServer()  # the default credentials a first start writes
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def setUp(self):
        self.cwd = tempfile.mkdtemp(prefix="kmsd-walkthrough-")
        # A checkout's layout: `scripts/...` as the README writes it.
        os.symlink(os.path.join(h.REPO_ROOT, "scripts"), os.path.join(self.cwd, "scripts"))
        self.home = os.path.join(self.cwd, "home")
        os.makedirs(self.home)

    def tearDown(self):
        shutil.rmtree(self.cwd, ignore_errors=True)

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"HOME": self.home, "AWS_PAGER": "", "AWS_MAX_ATTEMPTS": "1",
                    "PATH": build_dir() + os.pathsep + os.environ.get("PATH", "")})
        return env

    def run_script(self, script, env=None):
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-s"], input=script, capture_output=True,
                              text=True, cwd=self.cwd, env=env or self.env(), timeout=400)
        if proc.returncode != 0:
            self.fail("script failed (exit %d)\nscript:\n%s\nstdout:\n%s\nstderr:\n%s\n%s" % (
                proc.returncode, script, proc.stdout, proc.stderr, self.server.describe()))
        return proc.stdout

    def subsection_script(self, title):
        sub = section(self.section, title, 3)
        self.assertIsNotNone(sub, "the CloudHSM section has no '### %s'" % title)
        blocks = fenced_blocks(sub, ("sh", "bash", "shell"))
        self.assertTrue(blocks, "'### %s' has no ```sh block" % title)
        return shell_script(blocks, self.server.endpoint)

    def test_walkthrough(self):
        script = self.subsection_script(WALKTHROUGH)
        for command in (r"cloudhsmv2\s+create-cluster", r"cloudhsmv2\s+describe-clusters",
                        r"openssl\s+x509\s+-req", r"cloudhsmv2\s+initialize-cluster",
                        r"cloudhsmv2\s+create-hsm", r"hsm-cli\b.*cluster activate",
                        r"hsm-cli\b.*user create --username kmsuser", r"kms\s+create-custom-key-store",
                        r"kms\s+connect-custom-key-store", r"kms\s+describe-custom-key-stores",
                        r"kms\s+create-key\s+--origin AWS_CLOUDHSM", r"kms\s+encrypt", r"kms\s+decrypt"):
            self.assertRegex(script, command, "the walkthrough no longer runs %s" % command)
        self.assertEqual(len(re.findall(r"create-hsm", script)), 2, "the walkthrough must create two HSMs")
        self.assertIn(self.server.endpoint, script)
        stdout = self.run_script(script)

        m = re.search(r"--plaintext\s+fileb://(\S+)", script)
        self.assertIsNotNone(m, "encrypt does not read its plaintext from a fileb:// file")
        with open(os.path.join(self.cwd, m.group(1)), "rb") as f:
            plaintext = f.read()
        promised = re.search(r"last command prints `([^`]*)`", section(self.section, WALKTHROUGH, 3))
        self.assertIsNotNone(promised, "the walkthrough no longer says what the last command prints")
        self.assertEqual(promised.group(1).encode(), plaintext)
        self.assertTrue(stdout.endswith(plaintext.decode()),
                        "decrypt printed %r, expected it to end with %r" % (stdout[-200:], plaintext))

        # Independently of the script: the store is CONNECTED and holds the key.
        kms = h.kms_client(self.server)
        stores = [s for s in kms.describe_custom_key_stores()["CustomKeyStores"]
                  if s["CustomKeyStoreName"] == "my-hsm-store"]
        self.assertEqual(len(stores), 1, stores)
        store = stores[0]
        self.assertEqual(store["ConnectionState"], "CONNECTED")
        self.assertEqual(store.get("CustomKeyStoreType", "AWS_CLOUDHSM"), "AWS_CLOUDHSM")
        self.assertNotIn("KeyStorePassword", store)
        with open(os.path.join(self.cwd, "cipher.bin"), "rb") as f:
            blob = f.read()
        out = kms.decrypt(CiphertextBlob=blob)
        self.assertEqual(out["Plaintext"], plaintext)
        meta = kms.describe_key(KeyId=out["KeyId"])["KeyMetadata"]
        self.assertEqual(meta["Origin"], "AWS_CLOUDHSM")
        self.assertEqual(meta["CustomKeyStoreId"], store["CustomKeyStoreId"])
        self.assertEqual(meta["CloudHsmClusterId"], store["CloudHsmClusterId"])
        self.assertEqual(meta["KeyState"], "Enabled")

        # What the README says of a disconnected store, and that reconnecting
        # (kmsuser's password was rotated by the first connect) still works.
        store_id = store["CustomKeyStoreId"]

        def state():
            return kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"][0][
                "ConnectionState"]

        kms.disconnect_custom_key_store(CustomKeyStoreId=store_id)
        for _ in range(200):
            if state() == "DISCONNECTED":
                break
            time.sleep(0.05)
        self.assertEqual(state(), "DISCONNECTED")
        self.assertEqual(kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"], "Unavailable")
        self.assertKmsError("KMSInvalidStateException", kms.decrypt, CiphertextBlob=blob)
        kms.connect_custom_key_store(CustomKeyStoreId=store_id)
        for _ in range(200):
            if state() in ("CONNECTED", "FAILED"):
                break
            time.sleep(0.05)
        self.assertEqual(state(), "CONNECTED")
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], plaintext)

    def test_quickstart_section(self):
        script = self.subsection_script(QUICKSTART)
        self.assertIn("scripts/cloudhsm-quickstart.sh", script)
        stdout = self.run_script(script)
        described = json.loads(stdout)["CustomKeyStores"]
        self.assertEqual(len(described), 1)
        self.assertEqual(described[0]["ConnectionState"], "CONNECTED")
        # The store is usable: an HSM-backed key encrypts and decrypts.
        kms = h.kms_client(self.server)
        key = kms.create_key(Origin="AWS_CLOUDHSM",
                             CustomKeyStoreId=described[0]["CustomKeyStoreId"])["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"quickstart")["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"quickstart")

    def test_quickstart_script_interface(self):
        script = os.path.join(h.REPO_ROOT, "scripts", "cloudhsm-quickstart.sh")
        proc = subprocess.run([script, "--help"], capture_output=True, text=True, env=self.env(), timeout=30)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("--endpoint-url", proc.stdout)
        proc = subprocess.run([script, "--bogus"], capture_output=True, text=True, env=self.env(), timeout=30)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("unknown argument --bogus", proc.stderr)
        # With credentials from a profile in ~/.aws, a named store, an explicit work dir;
        # stdout is the store id alone.
        os.makedirs(os.path.join(self.home, ".aws"))
        with open(os.path.join(self.home, ".aws", "credentials"), "w") as f:
            f.write("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (
                h.DEFAULT_ACCESS_KEY, h.DEFAULT_SECRET_KEY))
        work = os.path.join(self.cwd, "qs")
        proc = subprocess.run([script, "--endpoint-url", self.server.endpoint, "--name", "named-by-test",
                               "--work-dir", work], capture_output=True, text=True, env=self.env(),
                              timeout=300)
        self.assertEqual(proc.returncode, 0, "%s\n%s" % (proc.stderr, self.server.describe()))
        store_id = proc.stdout.strip()
        self.assertRegex(store_id, r"^cks-[0-9a-f]{17}$")
        self.assertNotIn("example key pair", proc.stderr)
        store = h.kms_client(self.server).describe_custom_key_stores(
            CustomKeyStoreId=store_id)["CustomKeyStores"][0]
        self.assertEqual(store["CustomKeyStoreName"], "named-by-test")
        self.assertEqual(store["ConnectionState"], "CONNECTED")
        with open(os.path.join(work, "customerCA.crt")) as f:
            self.assertEqual(f.read().strip(), store["TrustAnchorCertificate"].strip())
        self.assertEqual(os.stat(os.path.join(work, "kmsuser.password")).st_mode & 0o077, 0)
        # The server on a dead port: the script fails, saying so.
        proc = subprocess.run([script, "--endpoint-url", "http://127.0.0.1:%d" % h.free_port()],
                              capture_output=True, text=True, env=self.env(), timeout=120)
        self.assertNotEqual(proc.returncode, 0)
        self.assertEqual(proc.stdout, "")
        self.assertIn("Could not connect", proc.stderr)


if __name__ == "__main__":
    unittest.main()
