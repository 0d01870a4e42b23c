"""test_hsm_token_recovery - an HSM that failed once works again once the fault is gone,
without restarting kmsd.

The fault is a transient write error: the SoftHSM2 token directories of a
cluster's HSMs become read-only for a while (a full or remounted disk, an
administrator's chmod).  While they are, CreateKey in the key store fails
with KMSInternalException and a reconnect fails with INTERNAL_ERROR.  Once
the permissions are back, Disconnect + Connect must reach CONNECTED, and
CreateKey, Encrypt and Decrypt (of old ciphertexts too) must work, in the
same kmsd process.  Another store whose HSMs share the PKCS#11 module keeps
serving throughout.  Both kinds of token are covered: SoftHSM2 tokens kmsd
made under its data directory, and operator tokens from --hsm-pool.

Everything is real: the kmsd binary, SoftHSM2 tokens made through the
CloudHSMv2 API, boto3 as the client.  Root ignores permission bits, so when
the tests run as root kmsd runs as the unprivileged user `nobody` (setpriv)
over a data directory that user owns; otherwise it runs as the current user.
"""

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import threading
import unittest

import kmsd_harness as h
import cloudhsm_fixture as fx

UNPRIVILEGED_USER = "nobody"


def unprivileged_wrapper():
    """(command prefix, uid, gid) to run kmsd without root's override of
    permission bits; an empty prefix when we are not root already."""
    if os.geteuid() != 0:
        return [], os.geteuid(), os.getegid()
    user = pwd.getpwnam(UNPRIVILEGED_USER)
    group = grp.getgrgid(user.pw_gid).gr_name
    setpriv = shutil.which("setpriv")
    if setpriv:
        prefix = [setpriv, "--reuid=%d" % user.pw_uid, "--regid=%d" % user.pw_gid,
                  "--clear-groups"]
    else:
        prefix = [shutil.which("runuser") or "runuser", "-u", UNPRIVILEGED_USER, "-g", group,
                  "--"]
    return prefix, user.pw_uid, user.pw_gid


def token_dirs(data_dir):
    """The SoftHSM2 token directories kmsd made under its data directory."""
    base = os.path.join(data_dir, "hsm", "tokens")
    return sorted(os.path.join(base, d) for d in os.listdir(base)
                  if os.path.isdir(os.path.join(base, d)))


def tree_modes(root):
    """{path: mode} of root and everything below it."""
    modes = {root: stat.S_IMODE(os.lstat(root).st_mode)}
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(parent, name)
            modes[path] = stat.S_IMODE(os.lstat(path).st_mode)
    return modes


class BystanderTraffic:
    """Encrypt + Decrypt round trips with one key on a few threads until stop();
    `rounds` counts the good ones, `failures` collects anything else."""

    THREADS = 3

    def __init__(self, server, key_id):
        self.server = server
        self.key_id = key_id
        self.rounds = 0
        self.failures = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(self.THREADS)]

    def _run(self, index):
        kms = h.kms_client(self.server)
        n = 0
        while not self._stop.is_set():
            n += 1
            data = b"bystander %d/%d" % (index, n)
            try:
                ct = kms.encrypt(KeyId=self.key_id, Plaintext=data)["CiphertextBlob"]
                got = kms.decrypt(CiphertextBlob=ct)["Plaintext"]
                ok = got == data
                outcome = None if ok else "decrypted %r, expected %r" % (got, data)
            except Exception as e:  # reported by the test
                outcome = repr(e)
            with self._lock:
                if outcome is None:
                    self.rounds += 1
                else:
                    self.failures.append(outcome)

    def start(self):
        for t in self._threads:
            t.start()
        # Let the traffic get going before the recovery starts.
        fx.wait_for("bystander traffic", lambda: self.rounds >= self.THREADS or self.failures)

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(120)


class OperatorTokens:
    """SoftHSM2 tokens an operator provisioned for --hsm-pool, in a directory
    of their own (owned by kmsd's user) named by their own SOFTHSM2_CONF."""

    SO_PIN = "operator-so-pin-1"

    def __init__(self, base, uid, gid):
        self.dir = os.path.join(base, "operator")
        self.tokendir = os.path.join(self.dir, "tokens")
        os.makedirs(self.tokendir, 0o700)
        self.conf = os.path.join(self.dir, "softhsm2.conf")
        with open(self.conf, "w") as f:
            f.write("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
                    % self.tokendir)
        self.uid, self.gid = uid, gid
        self.dirs = {}  # label -> token directory

    def init_token(self, label):
        before = set(os.listdir(self.tokendir))
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label,
                        "--so-pin", self.SO_PIN, "--pin", "initial-user-pin"],
                       check=True, capture_output=True,
                       env=dict(os.environ, SOFTHSM2_CONF=self.conf))
        made = set(os.listdir(self.tokendir)) - before
        assert len(made) == 1, made
        self.dirs[label] = os.path.join(self.tokendir, made.pop())

    def write_pool(self, zones):
        """The pool file: one entry per (label, zone), readable by kmsd's user only."""
        path = os.path.join(self.dir, "pool.json")
        entries = [{"module": softhsm_module(), "tokenLabel": label, "soPin": self.SO_PIN,
                    "availabilityZone": zone} for label, zone in zones]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(entries, f)
        for parent, _, files in os.walk(self.dir):
            os.chown(parent, self.uid, self.gid)
            for name in files:
                os.chown(os.path.join(parent, name), self.uid, self.gid)
        return path


def softhsm_module():
    """The SoftHSM2 module kmsd would find (p11_softhsm.c's first locations)."""
    for path in (os.environ.get("KMSD_SOFTHSM2_MODULE"), "/usr/lib/softhsm/libsofthsm2.so",
                 "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                 "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"):
        if path and os.path.isfile(path):
            return path
    raise unittest.SkipTest("SoftHSM2 module not installed")


class TokenRecoveryTest(h.KmsdBaseTestCase):

    def setUp(self):
        self.wrapper, self.uid, self.gid = unprivileged_wrapper()
        # Every parent of the data directory must be traversable by kmsd's user.
        self.base = tempfile.mkdtemp(prefix="kmsd-e2e-token-")
        os.chmod(self.base, 0o755)
        self.data_dir = os.path.join(self.base, "data")
        os.mkdir(self.data_dir, 0o700)
        os.chown(self.data_dir, self.uid, self.gid)
        self.saved_modes = {}
        self.server = None
        self.addCleanup(self.cleanup_base)
        self.ca = fx.CertificateAuthority(workdir=tempfile.mkdtemp(dir=self.base))

    def start(self, args=(), env=None):
        """Start kmsd as the unprivileged user; `env` adds environment variables."""
        wrapper = list(self.wrapper)
        if env:
            wrapper += ["env"] + ["%s=%s" % kv for kv in sorted(env.items())]
        self.server = self.start_server(data_dir=self.data_dir,
                                        args=["--enable-admin-api"] + list(args),
                                        wrapper=wrapper)
        self.pid = self.server.proc.pid
        self.kms = h.kms_client(self.server)

    def cleanup_base(self):
        self.restore_writable()
        keep = self.server is not None and self.server.keep_files
        if not keep and not os.environ.get("KMSD_KEEP_TMP"):
            shutil.rmtree(self.base, ignore_errors=True)

    def make_read_only(self, dirs):
        for d in dirs:
            modes = tree_modes(d)
            self.saved_modes.update(modes)
            for path, mode in modes.items():
                os.chmod(path, mode & ~0o222)

    def restore_writable(self):
        # Files before their directories do not matter: root may chmod anything.
        for path, mode in self.saved_modes.items():
            if os.path.lexists(path):
                os.chmod(path, mode)
        self.saved_modes = {}

    def reconnect(self, cks):
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=cks)
        fx.wait_store_state(self.kms, cks, "DISCONNECTED")
        return fx.connect(self.kms, cks)

    def connected_store(self):
        """A cluster of two HSMs, a CONNECTED store on it and a key there."""
        cluster = fx.make_cluster(self.server, self.ca)
        cks = fx.create_store(self.kms, cluster, "store-" + cluster.id)
        self.assertEqual(fx.connect(self.kms, cks)["ConnectionState"], "CONNECTED")
        key = self.kms.create_key(Origin="AWS_CLOUDHSM",
                                  CustomKeyStoreId=cks)["KeyMetadata"]["KeyId"]
        return cks, key

    def break_and_recover(self, cks, key, broken_dirs, bystander_key):
        """The fault on `broken_dirs` and the way back, with `bystander_key`
        (a key of another store whose HSMs share the module) in use meanwhile."""
        old_ct = self.kms.encrypt(KeyId=key, Plaintext=b"written before")["CiphertextBlob"]
        traffic = BystanderTraffic(self.server, bystander_key)

        # The fault: the tokens cannot be written.
        self.make_read_only(broken_dirs)
        self.assertKmsError("KMSInternalException", self.kms.create_key, Origin="AWS_CLOUDHSM",
                            CustomKeyStoreId=cks)
        entry = self.reconnect(cks)
        self.assertEqual(entry["ConnectionState"], "FAILED", entry)
        self.assertEqual(entry.get("ConnectionErrorCode"), "INTERNAL_ERROR", entry)

        # The fault is gone: the next connect works, in the same process,
        # while the bystander store is busy.
        self.restore_writable()
        traffic.start()
        try:
            entry = self.reconnect(cks)
        finally:
            traffic.stop()
        self.assertEqual(entry["ConnectionState"], "CONNECTED",
                         "%r\n%s" % (entry, self.server.describe()))
        self.assertNotIn("ConnectionErrorCode", entry)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=old_ct)["Plaintext"], b"written before")
        new_key = self.kms.create_key(Origin="AWS_CLOUDHSM",
                                      CustomKeyStoreId=cks)["KeyMetadata"]["KeyId"]
        for k in (key, new_key):
            ct = self.kms.encrypt(KeyId=k, Plaintext=b"after the fault")["CiphertextBlob"]
            self.assertEqual(self.kms.decrypt(CiphertextBlob=ct)["Plaintext"], b"after the fault")
        # Not one bystander request failed, and each round-tripped its data.
        self.assertGreater(traffic.rounds, 0)
        self.assertEqual(traffic.failures, [])
        ct = self.kms.encrypt(KeyId=bystander_key, Plaintext=b"bystander")["CiphertextBlob"]
        self.assertEqual(self.kms.decrypt(CiphertextBlob=ct)["Plaintext"], b"bystander")
        # The HSMs survive a reconnect too, and nothing was restarted.
        self.assertEqual(self.reconnect(cks)["ConnectionState"], "CONNECTED")
        self.assertEqual(self.kms.decrypt(CiphertextBlob=old_ct)["Plaintext"], b"written before")
        self.assertEqual((self.server.starts, self.server.proc.pid), (1, self.pid))
        self.assertTrue(self.server.running())
        with open(self.server.log_path) as f:
            self.assertIn("reinitializing its PKCS#11 module", f.read())

    def test_softhsm_tokens_kmsd_made_work_again_after_a_transient_write_error(self):
        self.start()
        cks, key = self.connected_store()
        broken_dirs = token_dirs(self.data_dir)
        self.assertEqual(len(broken_dirs), 2)
        # The bystander's cluster: two more tokens of the same SoftHSM2 module.
        _, other_key = self.connected_store()
        self.break_and_recover(cks, key, broken_dirs, other_key)

    def test_pool_tokens_work_again_after_a_transient_write_error(self):
        tokens = OperatorTokens(self.base, self.uid, self.gid)
        zones = [("pool-a", "us-east-1a"), ("pool-b", "us-east-1b"),
                 ("pool-c", "us-east-1a"), ("pool-d", "us-east-1b")]
        for label, _ in zones:
            tokens.init_token(label)
        pool = tokens.write_pool(zones)
        # kmsd reads the operator's SOFTHSM2_CONF, as under a service manager.
        self.start(args=["--hsm-pool", pool], env={"SOFTHSM2_CONF": tokens.conf})
        # The first cluster takes the first free entry of each zone.
        cks, key = self.connected_store()
        _, other_key = self.connected_store()
        self.assertFalse(os.path.exists(os.path.join(self.data_dir, "hsm")))
        self.break_and_recover(cks, key, [tokens.dirs["pool-a"], tokens.dirs["pool-b"]],
                               other_key)


if __name__ == "__main__":
    unittest.main()
