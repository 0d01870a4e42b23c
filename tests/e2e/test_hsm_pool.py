"""kmsd --hsm-pool end to end, as an operator uses it.

The operator provisions PKCS#11 tokens (here SoftHSM2 tokens made with
softhsm2-util in a token directory of the test's own, named by the test's
SOFTHSM2_CONF), lists them in a pool file and starts kmsd with --hsm-pool.
CreateHsm then takes pool tokens instead of making SoftHSM2 tokens under the
data directory; a cluster built from them serves a connected custom key store
whose keys survive HSM replacement (the token goes back to the pool and is
reused) and restarts with a reordered pool file.  The file is checked like a
key file: permissions, unknown fields, bad JSON, and no SO PIN in any message.
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import kmsd_harness as h
import cloudhsm_fixture as fx

# Where p11_softhsm.c looks for the module, most specific first.
SOFTHSM_MODULE_PATHS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/arm-linux-gnueabihf/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib/pkcs11/libsofthsm2.so",
    "/usr/lib64/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def softhsm_module():
    env = os.environ.get("KMSD_SOFTHSM2_MODULE")
    if env:
        return env
    for p in SOFTHSM_MODULE_PATHS:
        if os.path.isfile(p):
            return p
    raise unittest.SkipTest("SoftHSM2 module not installed")


class OperatorTokens:
    """A SoftHSM2 token directory of the operator's, with its own config."""

    def __init__(self):
        if not shutil.which("softhsm2-util"):
            raise unittest.SkipTest("softhsm2-util not installed")
        self.dir = tempfile.mkdtemp(prefix="kmsd-pool-")
        self.tokendir = os.path.join(self.dir, "tokens")
        os.mkdir(self.tokendir, 0o700)
        self.conf = os.path.join(self.dir, "softhsm2.conf")
        with open(self.conf, "w") as f:
            f.write("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
                    % self.tokendir)
        self.module = softhsm_module()

    def env(self):
        return dict(os.environ, SOFTHSM2_CONF=self.conf)

    def init_token(self, label, so_pin):
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label,
                        "--so-pin", so_pin, "--pin", "initial-user-pin"],
                       check=True, capture_output=True, env=self.env())

    def labels(self):
        out = subprocess.run(["softhsm2-util", "--show-slots"], check=True,
                             capture_output=True, text=True, env=self.env()).stdout
        return [line.split(":", 1)[1].strip() for line in out.splitlines()
                if line.strip().startswith("Label:") and line.split(":", 1)[1].strip()]

    def write_pool(self, entries, name="pool.json", mode=0o600):
        path = os.path.join(self.dir, name)
        if os.path.exists(path):
            os.unlink(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(entries if isinstance(entries, str) else json.dumps(entries, indent=2))
        os.chmod(path, mode)
        return path

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


SO_PINS = {"pool-a": "so-pin-aaaa-1", "pool-b": "so-pin-bbbb-2", "pool-c": "so-pin-cccc-3"}


def pool_entries(tokens, order=("pool-a", "pool-b", "pool-c")):
    zones = {"pool-a": "us-east-1a", "pool-b": "us-east-1b", "pool-c": None}
    out = []
    for label in order:
        e = {"module": tokens.module, "tokenLabel": label, "soPin": SO_PINS[label]}
        if zones[label]:
            e["availabilityZone"] = zones[label]
        out.append(e)
    return out


def run_kmsd_expect_failure(tokens, args, data_dir):
    """kmsd that must refuse to start: returns (exit status, combined output)."""
    store, store_env = h.store_args(data_dir)
    cmd = [h.find_kmsd_binary(), "--listen", "127.0.0.1:%d" % h.free_port(),
           "--data-dir", data_dir] + store + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                       env=dict(tokens.env(), **store_env))
    return p.returncode, p.stdout + p.stderr


class HsmPoolTest(h.KmsdBaseTestCase):

    def setUp(self):
        super().setUp()
        self.tokens = OperatorTokens()
        self.addCleanup(self.tokens.cleanup)
        self.saved_conf = os.environ.get("SOFTHSM2_CONF")
        self.addCleanup(self.restore_env)

    def restore_env(self):
        if self.saved_conf is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = self.saved_conf

    def start_with_pool(self, pool_path, data_dir=None):
        # kmsd inherits the operator's SOFTHSM2_CONF, as under a service manager.
        os.environ["SOFTHSM2_CONF"] = self.tokens.conf
        server = h.KmsdServer(data_dir=data_dir, args=["--hsm-pool", pool_path])
        self.addCleanup(server.cleanup)
        return server.start()

    def test_cluster_on_pool_tokens_serves_a_key_store(self):
        for label, pin in SO_PINS.items():
            self.tokens.init_token(label, pin)
        pool = self.tokens.write_pool(pool_entries(self.tokens))
        server = self.start_with_pool(pool)
        hsm = fx.cloudhsm_client(server)
        kms = h.kms_client(server)
        ca = fx.CertificateAuthority()

        # Zone a takes pool-a, zone b pool-b (the entries pinned to them).
        cluster = fx.make_cluster(server, ca, hsm_zones=(0, 1))
        hsms = {x["HsmId"]: x for x in fx.describe_cluster(hsm, cluster.id)["Hsms"]}
        self.assertEqual(len(hsms), 2)
        self.assertEqual(sorted(x["AvailabilityZone"] for x in hsms.values()),
                         ["us-east-1a", "us-east-1b"])
        # kmsd made no SoftHSM2 directory or token of its own.
        self.assertFalse(os.path.exists(os.path.join(server.data_dir, "hsm")))
        self.assertEqual(sorted(self.tokens.labels()), ["pool-a", "pool-b", "pool-c"])

        # kmsuser's password is now the user PIN of the pool tokens: a key
        # store connects (a real PKCS#11 login on both) and keys work.
        cks_id = fx.create_store(kms, cluster, "pool-store")
        entry = fx.connect(kms, cks_id)
        self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
        key_id = kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=cks_id)["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"pool secret")["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"pool secret")

        # A third HSM in zone a takes the zone-less pool-c; then the pool is
        # exhausted for zone b.
        third = fx.create_hsm(hsm, cluster.id, "us-east-1a")
        with self.assertRaises(hsm.exceptions.CloudHsmInvalidRequestException) as cm:
            hsm.create_hsm(ClusterId=cluster.id, AvailabilityZone="us-east-1b")
        self.assertIn("No free HSM in the configured pool", str(cm.exception))

        # Replace the zone-a HSMs: their tokens go back to the pool, are
        # scrubbed and reused, and get the cluster's keys again.
        for hsm_id, x in hsms.items():
            if x["AvailabilityZone"] == "us-east-1a":
                fx.delete_hsm(hsm, cluster.id, hsm_id)
        fx.delete_hsm(hsm, cluster.id, third)
        fresh = fx.create_hsm(hsm, cluster.id, "us-east-1a")
        self.assertNotIn(fresh, hsms)
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"pool secret")

        # Restart with the pool file reordered: HSMs follow their token
        # labels, the store reconnects during start-up and old ciphertexts
        # still decrypt.
        server.stop()
        pool = self.tokens.write_pool(pool_entries(self.tokens, order=("pool-c", "pool-b", "pool-a")))
        server.start()
        kms = h.kms_client(server)
        entry = fx.wait_store_state(kms, cks_id, ("CONNECTED", "FAILED"))
        self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"pool secret")
        blob2 = kms.encrypt(KeyId=key_id, Plaintext=b"after restart")["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=blob2)["Plaintext"], b"after restart")
        with open(server.log_path) as f:
            self.assertIn("is now pool entry", f.read())

        # A pool file that drops a token in use is refused at start, by name.
        server.stop()
        self.tokens.write_pool(pool_entries(self.tokens, order=("pool-c",)))
        status, out = run_kmsd_expect_failure(self.tokens, ["--hsm-pool", pool], server.data_dir)
        self.assertEqual(status, 1, out)
        self.assertRegex(out, r"HSM hsm-[a-z2-7]+ of cluster %s uses pool token \"pool-[ab]\", "
                              r"which the HSM pool no longer lists" % cluster.id)
        for pin in SO_PINS.values():
            self.assertNotIn(pin, out)

    def test_own_softhsm_tokens_refused_with_a_pool(self):
        # Built without a pool: the HSM is a SoftHSM2 token under the data dir.
        os.environ.pop("SOFTHSM2_CONF", None)
        server = h.KmsdServer()
        self.addCleanup(server.cleanup)
        server.start()
        cluster = fx.make_cluster(server, fx.CertificateAuthority(), hsm_zones=(0,),
                                  activate=False)
        server.stop()
        self.tokens.init_token("pool-a", SO_PINS["pool-a"])
        pool = self.tokens.write_pool(pool_entries(self.tokens, order=("pool-a",)))
        status, out = run_kmsd_expect_failure(self.tokens, ["--hsm-pool", pool], server.data_dir)
        self.assertEqual(status, 1, out)
        self.assertIn("HSM %s of cluster %s is a SoftHSM2 token kmsd made under its data directory"
                      % (cluster.hsm_ids[0], cluster.id), out)
        self.assertNotIn(SO_PINS["pool-a"], out)
        # Without the pool the same data directory still serves the HSM.
        server.start()
        self.assertEqual(len(fx.active_hsms(fx.cloudhsm_client(server), cluster.id)), 1)

    def test_bad_pool_files_are_refused_without_echoing_pins(self):
        data_dir = os.path.join(self.tokens.dir, "data")
        secret = "so-pin-never-shown"
        good = {"module": self.tokens.module, "tokenLabel": "t1", "soPin": secret}
        cases = [
            (json.dumps([good]), 0o644, "lets group or others at it"),
            (json.dumps([good]), 0o620, "chmod 600"),
            (json.dumps([dict(good, slot=3)]), 0o600, 'entry 0: unknown field "slot"'),
            (json.dumps([dict(good, soPin=7)]), 0o600, '"soPin" (a string) is required'),
            (json.dumps([{"module": self.tokens.module, "soPin": secret}]), 0o600,
             '"tokenLabel" (a string) is required'),
            (json.dumps([dict(good, soPin="abc")]), 0o600, "soPin must be 4 to 32 bytes"),
            (json.dumps([dict(good, soPin=secret * 3)]), 0o600, "soPin must be 4 to 32 bytes"),
            (json.dumps([dict(good, tokenLabel="x" * 33)]), 0o600, "tokenLabel must be 1 to 32"),
            (json.dumps([dict(good, module="relative/lib.so")]), 0o600, "absolute path"),
            (json.dumps([dict(good, module="/nonexistent/libpkcs11.so")]), 0o600,
             "is not a readable file"),
            (json.dumps([dict(good, availabilityZone="US East")]), 0o600, "availabilityZone"),
            (json.dumps([good, good]), 0o600, "entries 0 and 1 name the same token"),
            (json.dumps([]), 0o600, "must be a JSON array of 1 to 1024"),
            (json.dumps({"tokens": [good]}), 0o600, "must be a JSON array"),
            ('[{"module": "%s", "soPin": "%s" "tokenLabel": "t1"}]' % (self.tokens.module, secret),
             0o600, "invalid JSON at line 1"),
            (json.dumps([good]) + "\n" + " " * (300 * 1024), 0o600, "must hold 1 to"),
        ]
        for text, mode, expected in cases:
            with self.subTest(expected=expected):
                path = self.tokens.write_pool(text, mode=mode)
                status, out = run_kmsd_expect_failure(self.tokens, ["--hsm-pool", path], data_dir)
                self.assertEqual(status, 1, out)
                self.assertIn(expected, out)
                self.assertNotIn(secret, out)
                self.assertNotIn("so-pin-never", out)
        status, out = run_kmsd_expect_failure(
            self.tokens, ["--hsm-pool", os.path.join(self.tokens.dir, "missing.json")], data_dir)
        self.assertEqual(status, 1, out)
        self.assertIn("No such file", out)

    def test_help_documents_the_flag(self):
        out = subprocess.run([h.find_kmsd_binary(), "--help"], capture_output=True, text=True,
                             check=True).stdout
        self.assertIn("--hsm-pool FILE", out)


if __name__ == "__main__":
    unittest.main()
