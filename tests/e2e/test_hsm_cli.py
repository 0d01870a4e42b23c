"""test_hsm_cli - hsm-cli against a real kmsd: every command, its failures, and its credentials.

hsm-cli is what operators and the README use to activate clusters and manage
`kmsuser`, so each command is run as a user would run it (a subprocess with a
controlled environment) against clusters made through the real CloudHSMv2 API
(boto3, openssl for the certificates).  Checked for every command: the exit
status (0 success, 1 service error, 2 usage, 3 connection/credentials), the
one-line message naming the AWS error code, that the effect is visible to the
server (ListUsers, DescribeClusters), and that no password ever reaches the
output.  Credentials are taken from the environment, from a profile in a
temporary HOME/.aws, or are missing; where botocore can say which key it
would use, hsm-cli must agree.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import botocore.session

import kmsd_harness as h

ADMIN_PASSWORD = "admin-Pa55word"
KMSUSER_PASSWORD = "kmsuser-Pa55"


def find_hsm_cli():
    """The hsm-cli next to kmsd (same build directory)."""
    candidates = []
    if os.environ.get("KMSD_BUILD_DIR"):
        candidates.append(os.path.join(os.environ["KMSD_BUILD_DIR"], "hsm-cli"))
    candidates.append(os.path.join(os.path.dirname(h.find_kmsd_binary()), "hsm-cli"))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError("hsm-cli not found (tried %s)" % ", ".join(candidates))


def clean_env(extra=None, home=None):
    """An environment with no AWS_* variables and a HOME without ~/.aws."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = home or tempfile.gettempdir() + "/kmsd-no-home"
    env.update(extra or {})
    return env


def root_env(extra=None):
    """The default root's credentials in the environment, as the README sets them."""
    env = clean_env({"AWS_ACCESS_KEY_ID": h.DEFAULT_ACCESS_KEY,
                     "AWS_SECRET_ACCESS_KEY": h.DEFAULT_SECRET_KEY,
                     "AWS_DEFAULT_REGION": h.DEFAULT_REGION})
    env.update(extra or {})
    return env


def wait_until(what, predicate, timeout=20.0, interval=0.05):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def cloudhsm_client(server):
    return h.kms_client(server, service="cloudhsmv2")


def describe_cluster(hsm, cluster_id):
    clusters = hsm.describe_clusters(Filters={"clusterIds": [cluster_id]})["Clusters"]
    return clusters[0] if clusters else None


def sign_csr(workdir, csr_pem):
    """Make a CA with openssl and sign the cluster CSR with it.

    Returns (signed certificate PEM, CA certificate PEM) as InitializeCluster
    takes them."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), cwd=workdir, check=True, capture_output=True)
    with open(os.path.join(workdir, "cluster.csr"), "w") as f:
        f.write(csr_pem)
    run("genrsa", "-out", "ca.key", "2048")
    run("req", "-new", "-x509", "-days", "3652", "-key", "ca.key", "-out", "ca.crt",
        "-subj", "/CN=kmsd test CA")
    run("x509", "-req", "-days", "3652", "-in", "cluster.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "cluster.crt")
    with open(os.path.join(workdir, "cluster.crt")) as f:
        cert = f.read()
    with open(os.path.join(workdir, "ca.crt")) as f:
        ca = f.read()
    return cert, ca


def make_cluster(server, workdir, hsms=0, activate=False):
    """Create a cluster through the CloudHSMv2 API and take it to INITIALIZED
    (with `hsms` ACTIVE HSMs in zones a, b, ...), or ACTIVE through hsm-cli.
    Returns (cluster id, trust anchor PEM)."""
    hsm = cloudhsm_client(server)
    subnets = ["subnet-" + os.urandom(8).hex() for _ in range(2)]
    cid = hsm.create_cluster(HsmType="hsm2m.medium", SubnetIds=subnets)["Cluster"]["ClusterId"]
    csr = wait_until("%s UNINITIALIZED with a CSR" % cid,
                     lambda: (describe_cluster(hsm, cid) or {}).get("Certificates", {}).get("ClusterCsr")
                     if describe_cluster(hsm, cid)["State"] == "UNINITIALIZED" else None)
    cert, ca = sign_csr(workdir, csr)
    hsm.initialize_cluster(ClusterId=cid, SignedCert=cert, TrustAnchor=ca)
    wait_until("%s INITIALIZED" % cid, lambda: describe_cluster(hsm, cid)["State"] == "INITIALIZED")
    if activate:
        hsms = max(hsms, 1)  # a cluster is activated through one of its HSMs
    zones = [h.DEFAULT_REGION + z for z in "abcdefghij"[:hsms]]
    for zone in zones:
        hsm.create_hsm(ClusterId=cid, AvailabilityZone=zone)
    if hsms:
        wait_until("%d ACTIVE HSMs" % hsms, lambda: sum(
            1 for x in describe_cluster(hsm, cid).get("Hsms", []) if x["State"] == "ACTIVE") == hsms)
    if activate:
        subprocess.run([find_hsm_cli(), "--endpoint-url", server.endpoint, "--cluster-id", cid,
                        "cluster", "activate", "--password", ADMIN_PASSWORD],
                       env=root_env(), check=True, capture_output=True, timeout=60)
    return cid, ca


class HsmCliCase(h.KmsdBaseTestCase):
    """One kmsd per class; helpers to run hsm-cli and check its outcome."""

    server_kwargs = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cli = find_hsm_cli()
        cls.tmp = tempfile.mkdtemp(prefix="kmsd-hsm-cli-")
        cls.server = h.KmsdServer(**cls.server_kwargs)
        try:
            cls.server.start()
        except Exception:
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def workdir(self):
        return tempfile.mkdtemp(dir=self.tmp)

    def hsm_cli(self, *args, env=None, stdin=None, endpoint=True, cluster_id=None):
        """Run hsm-cli; returns CompletedProcess (text)."""
        cmd = [self.cli]
        if endpoint:
            cmd += ["--endpoint-url", self.server.endpoint]
        if cluster_id:
            cmd += ["--cluster-id", cluster_id]
        cmd += list(args)
        return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60,
                              env=root_env() if env is None else env)

    def assertOk(self, proc):
        self.assertEqual(proc.returncode, 0, "hsm-cli failed: %s\nstderr: %s\n%s" % (
            proc.args, proc.stderr, self.server.describe()))
        self.assertEqual(proc.stderr, "", "a successful command printed to stderr")
        return proc.stdout

    def assertFails(self, proc, exit_code, *needles):
        """Exit status `exit_code`, one line on stderr containing every needle."""
        self.assertEqual(proc.returncode, exit_code, "expected exit %d from %s, got %d\nstdout: %s\nstderr: %s" % (
            exit_code, proc.args, proc.returncode, proc.stdout, proc.stderr))
        lines = proc.stderr.strip("\n").split("\n")
        self.assertEqual(len(lines), 1, "expected a one-line message, got %r" % proc.stderr)
        self.assertTrue(lines[0].startswith("hsm-cli: "), lines[0])
        for needle in needles:
            self.assertIn(needle, lines[0])
        self.assertEqual(proc.stdout, "", "a failed command printed to stdout")
        return lines[0]

    def assertServiceError(self, proc, code, operation):
        return self.assertFails(proc, 1, "An error occurred (%s) when calling the %s operation" % (
            code, operation))

    def assertNoSecret(self, proc, *secrets):
        for secret in secrets:
            self.assertNotIn(secret, proc.stdout)
            self.assertNotIn(secret, proc.stderr)

    def users(self, cid):
        out = self.assertOk(self.hsm_cli("user", "list", cluster_id=cid))
        return {u["Username"]: u for u in json.loads(out)["Users"]}


class HelpAndUsageTest(HsmCliCase):
    """Help and every usage error: exit 2, nothing sent."""

    def test_help(self):
        proc = self.hsm_cli("--help", endpoint=False)
        out = self.assertOk(proc)
        for command in ("cluster activate", "cluster simulate-failure", "user create", "user delete",
                        "user list", "user change-password", "login", "logout", "--password-file",
                        "--endpoint-url", "--cluster-id", "--profile", "--region", "--output"):
            self.assertIn(command, out)
        self.assertEqual(self.assertOk(self.hsm_cli("help", endpoint=False)), out)
        group = self.assertOk(self.hsm_cli("user", "--help", endpoint=False))
        self.assertIn("change-password", group)
        for words, operation in ((["cluster", "activate"], "ActivateCluster"),
                                 (["cluster", "simulate-failure"], "SimulateFailure"),
                                 (["user", "create"], "CreateUser"), (["user", "delete"], "DeleteUser"),
                                 (["user", "list"], "ListUsers"),
                                 (["user", "change-password"], "ChangePassword"),
                                 (["login"], "Login"), (["logout"], "Logout")):
            text = self.assertOk(self.hsm_cli(*(words + ["--help"]), endpoint=False))
            self.assertIn("KmsdHsmAdmin operation: %s" % operation, text)

    def test_usage_errors(self):
        cid = "cluster-abcdefghijk"
        cases = [
            ([], "no command given"),
            (["frobnicate"], 'unknown command "frobnicate"'),
            (["user"], "user needs a subcommand: create, delete, list, change-password"),
            (["user", "rename"], 'unknown command "user rename"'),
            (["user", "list", "extra"], 'unexpected argument "extra"'),
            (["user", "list"], "--cluster-id is required"),
            (["--cluster-id", cid, "user", "create", "--role", "admin", "--password", "x1234567"],
             "user create: --username is required"),
            (["--cluster-id", cid, "user", "create", "--username", "u", "--role", "root",
              "--password", "x1234567"], "--role must be one of crypto-user | admin"),
            (["--cluster-id", cid, "user", "create", "--username", "u", "--role", "admin"],
             "create needs --password P, --password - or --password-file F"),
            (["--cluster-id", cid, "cluster", "simulate-failure", "--kind", "meteor"],
             "--kind must be one of none | network-errors"),
            (["--cluster-id", cid, "user", "delete", "--username", "a", "--username", "b"],
             "--username given twice"),
            (["--cluster-id", cid, "user", "list", "--username", "a"], "user list does not take --username"),
            (["--cluster-id", cid, "--output", "yaml", "user", "list"], "--output must be json or text"),
            (["--cluster-id", cid, "logout", "--username"], "--username needs a value"),
            (["--cluster-id", cid, "login", "--username", "u", "--password", "p1234567",
              "--password-file", "/dev/null"], "exactly one of --password or --password-file"),
            (["--cluster-id", cid, "login", "--username", "u", "--password-file", "/nonexistent/pw"],
             "cannot read --password-file /nonexistent/pw"),
            (["--cluster-id", cid, "login", "--username", "u", "--password-file", "/dev/null"],
             "is empty"),
            (["--cluster-id", cid, "login", "--username", "u", "--password", ""], "--password is empty"),
            (["-x"], "unknown option -x"),
        ]
        for args, needle in cases:
            with self.subTest(args=args):
                self.assertFails(self.hsm_cli(*args), 2, needle, "see hsm-cli --help")
        # No endpoint anywhere, and a URL that is not http(s).
        self.assertFails(self.hsm_cli("--cluster-id", cid, "user", "list", endpoint=False), 2,
                         "--endpoint-url is required")
        self.assertFails(self.hsm_cli("--endpoint-url", "ftp://127.0.0.1/", "--cluster-id", cid,
                                      "user", "list", endpoint=False), 2,
                         "the scheme must be http or https")

    def test_password_from_stdin_empty(self):
        proc = self.hsm_cli("--cluster-id", "cluster-abcdefghijk", "login", "--username", "u",
                            "--password", "-", stdin="\n")
        self.assertFails(proc, 2, "the password from standard input is empty")


class CommandsTest(HsmCliCase):
    """Each command against real clusters: success, the server's errors, the effect."""

    def test_activate(self):
        cid, _ = make_cluster(self.server, self.workdir())
        # Activation goes through an HSM: none yet.
        proc = self.hsm_cli("cluster", "activate", "--password", ADMIN_PASSWORD, cluster_id=cid)
        self.assertServiceError(proc, "CloudHsmInvalidRequestException", "ActivateCluster")
        hsm = cloudhsm_client(self.server)
        hsm.create_hsm(ClusterId=cid, AvailabilityZone=h.DEFAULT_REGION + "a")
        wait_until("an ACTIVE HSM", lambda: any(
            x["State"] == "ACTIVE" for x in describe_cluster(hsm, cid).get("Hsms", [])))
        # Too short for the admin password (7..32): the server refuses it.
        proc = self.hsm_cli("cluster", "activate", "--password", "short", cluster_id=cid)
        self.assertServiceError(proc, "CloudHsmInvalidRequestException", "ActivateCluster")
        self.assertNoSecret(proc, "short")
        proc = self.hsm_cli("cluster", "activate", "--password", ADMIN_PASSWORD, cluster_id=cid)
        self.assertEqual(json.loads(self.assertOk(proc)), {"State": "ACTIVE"})
        self.assertNoSecret(proc, ADMIN_PASSWORD)
        self.assertEqual(describe_cluster(cloudhsm_client(self.server), cid)["State"], "ACTIVE")
        # Not INITIALIZED any more.
        proc = self.hsm_cli("cluster", "activate", "--password", ADMIN_PASSWORD, cluster_id=cid)
        self.assertServiceError(proc, "CloudHsmInvalidRequestException", "ActivateCluster")
        # The activated admin is a user of the cluster.
        self.assertEqual(self.users(cid)["admin"]["Role"], "admin")

    def test_unknown_cluster(self):
        for args, operation in ((["cluster", "activate", "--password", ADMIN_PASSWORD], "ActivateCluster"),
                                (["user", "list"], "ListUsers"),
                                (["user", "create", "--username", "u", "--role", "admin",
                                  "--password", "x1234567"], "CreateUser"),
                                (["user", "delete", "--username", "u"], "DeleteUser"),
                                (["user", "change-password", "--username", "u", "--password", "x1234567"],
                                 "ChangePassword"),
                                (["login", "--username", "u", "--password", "x1234567"], "Login"),
                                (["logout", "--username", "u"], "Logout"),
                                (["cluster", "simulate-failure", "--kind", "none"], "SimulateFailure")):
            with self.subTest(operation=operation):
                proc = self.hsm_cli(*args, cluster_id="cluster-nosuchclust2")
                self.assertServiceError(proc, "CloudHsmResourceNotFoundException", operation)

    def test_users(self):
        cid, _ = make_cluster(self.server, self.workdir(), activate=True)
        # The password from standard input, as the docs recommend.
        proc = self.hsm_cli("user", "create", "--username", "kmsuser", "--role", "crypto-user",
                            "--password", "-", stdin=KMSUSER_PASSWORD + "\n", cluster_id=cid)
        self.assertEqual(self.assertOk(proc), "")
        pwfile = os.path.join(self.workdir(), "pw")
        with open(pwfile, "w") as f:
            f.write("other-Pa55\r\n")
        self.assertOk(self.hsm_cli("user", "create", "--username", "ops_admin", "--role", "admin",
                                   "--password-file", pwfile, cluster_id=cid))
        users = self.users(cid)
        self.assertEqual(users["kmsuser"], {"Username": "kmsuser", "Role": "crypto-user",
                                            "LockedOut": False, "LoggedIn": False})
        self.assertEqual(users["ops_admin"]["Role"], "admin")
        # Text output, as `aws --output text` prints a list: sorted keys.
        text = self.assertOk(self.hsm_cli("--output", "text", "user", "list", cluster_id=cid))
        self.assertIn("USERS\tFalse\tFalse\tcrypto-user\tkmsuser\n", text)
        self.assertEqual(self.assertOk(self.hsm_cli("user", "list", cluster_id=cid,
                                                    env=root_env({"AWS_DEFAULT_OUTPUT": "text"}))), text)
        # Creating it again, a bad name: the server's errors.
        proc = self.hsm_cli("user", "create", "--username", "kmsuser", "--role", "crypto-user",
                            "--password", KMSUSER_PASSWORD, cluster_id=cid)
        self.assertServiceError(proc, "CloudHsmInvalidRequestException", "CreateUser")
        self.assertNoSecret(proc, KMSUSER_PASSWORD)
        proc = self.hsm_cli("user", "create", "--username", "no-dashes", "--role", "crypto-user",
                            "--password", KMSUSER_PASSWORD, cluster_id=cid)
        self.assertServiceError(proc, "CloudHsmInvalidRequestException", "CreateUser")
        # The password file's password works for login (CRLF stripped).
        self.assertOk(self.hsm_cli("login", "--username", "ops_admin", "--password", "other-Pa55",
                                   cluster_id=cid))
        self.assertOk(self.hsm_cli("logout", "--username", "ops_admin", cluster_id=cid))
        # Delete, then it is gone.
        self.assertOk(self.hsm_cli("user", "delete", "--username", "ops_admin", cluster_id=cid))
        self.assertNotIn("ops_admin", self.users(cid))
        proc = self.hsm_cli("user", "delete", "--username", "ops_admin", cluster_id=cid)
        self.assertServiceError(proc, "CloudHsmResourceNotFoundException", "DeleteUser")
        proc = self.hsm_cli("user", "change-password", "--username", "ops_admin",
                            "--password", "x1234567", cluster_id=cid)
        self.assertServiceError(proc, "CloudHsmResourceNotFoundException", "ChangePassword")

    def test_login_lockout_and_unlock(self):
        cid, _ = make_cluster(self.server, self.workdir(), activate=True)
        self.assertOk(self.hsm_cli("user", "create", "--username", "kmsuser", "--role", "crypto-user",
                                   "--password", KMSUSER_PASSWORD, cluster_id=cid))
        self.assertOk(self.hsm_cli("login", "--username", "kmsuser", "--password", KMSUSER_PASSWORD,
                                   cluster_id=cid))
        self.assertTrue(self.users(cid)["kmsuser"]["LoggedIn"])
        self.assertOk(self.hsm_cli("logout", "--username", "kmsuser", cluster_id=cid))
        self.assertFalse(self.users(cid)["kmsuser"]["LoggedIn"])
        proc = self.hsm_cli("login", "--username", "nobody", "--password", KMSUSER_PASSWORD, cluster_id=cid)
        self.assertServiceError(proc, "CloudHsmResourceNotFoundException", "Login")

        wrong = "wrong-Pa55"
        for attempt in range(5):
            proc = self.hsm_cli("login", "--username", "kmsuser", "--password", wrong, cluster_id=cid)
            self.assertServiceError(proc, "CloudHsmAccessDeniedException", "Login")
            self.assertNoSecret(proc, wrong)
            self.assertEqual(self.users(cid)["kmsuser"]["LockedOut"], attempt == 4)
        # Locked: even the right password is refused.
        proc = self.hsm_cli("login", "--username", "kmsuser", "--password", KMSUSER_PASSWORD, cluster_id=cid)
        line = self.assertServiceError(proc, "CloudHsmAccessDeniedException", "Login")
        self.assertIn("locked out", line)
        self.assertNoSecret(proc, KMSUSER_PASSWORD)
        # change-password unlocks; the old password no longer works, the new one does.
        new = "renewed-Pa55"
        self.assertOk(self.hsm_cli("user", "change-password", "--username", "kmsuser", "--password", "-",
                                   stdin=new, cluster_id=cid))
        self.assertFalse(self.users(cid)["kmsuser"]["LockedOut"])
        proc = self.hsm_cli("login", "--username", "kmsuser", "--password", KMSUSER_PASSWORD, cluster_id=cid)
        self.assertServiceError(proc, "CloudHsmAccessDeniedException", "Login")
        self.assertOk(self.hsm_cli("login", "--username", "kmsuser", "--password", new, cluster_id=cid))
        self.assertOk(self.hsm_cli("logout", "--username", "kmsuser", cluster_id=cid))

    def test_simulate_failure(self):
        cid, _ = make_cluster(self.server, self.workdir(), activate=True)
        for kind in ("network-errors", "subnet-not-found", "no-free-addresses", "internal-error", "none"):
            with self.subTest(kind=kind):
                self.assertEqual(self.assertOk(self.hsm_cli("cluster", "simulate-failure", "--kind", kind,
                                                            cluster_id=cid)), "")

    def test_simulated_failure_reaches_a_key_store(self):
        """The failure hsm-cli sets is what a connecting key store sees, and `none` repairs it."""
        workdir = self.workdir()
        cid, ca = make_cluster(self.server, workdir, hsms=2, activate=True)
        self.assertOk(self.hsm_cli("user", "create", "--username", "kmsuser", "--role", "crypto-user",
                                   "--password", KMSUSER_PASSWORD, cluster_id=cid))
        kms = h.kms_client(self.server)
        store = kms.create_custom_key_store(CustomKeyStoreName="cli-%s" % cid, CloudHsmClusterId=cid,
                                            TrustAnchorCertificate=ca,
                                            KeyStorePassword=KMSUSER_PASSWORD)["CustomKeyStoreId"]

        def state():
            s = kms.describe_custom_key_stores(CustomKeyStoreId=store)["CustomKeyStores"][0]
            return s["ConnectionState"], s.get("ConnectionErrorCode")

        # A crypto user logged in through hsm-cli blocks KMS's own login.
        # (Before the first successful connect: after it, kmsuser's password
        # is one only kmsd knows.)
        self.assertOk(self.hsm_cli("login", "--username", "kmsuser", "--password", KMSUSER_PASSWORD,
                                   cluster_id=cid))
        kms.connect_custom_key_store(CustomKeyStoreId=store)
        self.assertEqual(wait_until("FAILED", lambda: state() if state()[0] == "FAILED" else None),
                         ("FAILED", "USER_LOGGED_IN"))
        kms.disconnect_custom_key_store(CustomKeyStoreId=store)
        wait_until("DISCONNECTED", lambda: state()[0] == "DISCONNECTED")
        self.assertOk(self.hsm_cli("logout", "--username", "kmsuser", cluster_id=cid))

        self.assertOk(self.hsm_cli("cluster", "simulate-failure", "--kind", "subnet-not-found", cluster_id=cid))
        kms.connect_custom_key_store(CustomKeyStoreId=store)
        self.assertEqual(wait_until("FAILED", lambda: state() if state()[0] == "FAILED" else None),
                         ("FAILED", "SUBNET_NOT_FOUND"))
        kms.disconnect_custom_key_store(CustomKeyStoreId=store)
        wait_until("DISCONNECTED", lambda: state()[0] == "DISCONNECTED")
        self.assertOk(self.hsm_cli("cluster", "simulate-failure", "--kind", "none", cluster_id=cid))
        kms.connect_custom_key_store(CustomKeyStoreId=store)
        wait_until("CONNECTED", lambda: state()[0] == "CONNECTED")
        # KMS rotated kmsuser's password: the one hsm-cli set no longer logs in.
        proc = self.hsm_cli("login", "--username", "kmsuser", "--password", KMSUSER_PASSWORD, cluster_id=cid)
        self.assertServiceError(proc, "CloudHsmAccessDeniedException", "Login")


class CredentialsTest(HsmCliCase):
    """Where hsm-cli takes credentials from, as the aws CLI would, and what it says when it cannot."""

    @classmethod
    def setUpClass(cls):
        cls.server_kwargs = {"credentials": {"principals": [
            {"accessKeyId": h.DEFAULT_ACCESS_KEY, "secretAccessKey": h.DEFAULT_SECRET_KEY,
             "accountId": h.DEFAULT_ACCOUNT, "arn": h.DEFAULT_ROOT_ARN},
            {"accessKeyId": "AKIAKMSONLYEXAMPLE01", "secretAccessKey": "kms-only-secret-key-0000000000000000000",
             "accountId": h.DEFAULT_ACCOUNT, "arn": "arn:aws:iam::%s:user/kms-only" % h.DEFAULT_ACCOUNT,
             "policy": {"Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}},
            {"accessKeyId": "AKIASESSIONEXAMPLE01", "secretAccessKey": "session-secret-key-00000000000000000000",
             "sessionToken": "session-token-example", "accountId": h.DEFAULT_ACCOUNT,
             "arn": "arn:aws:iam::%s:user/session-user" % h.DEFAULT_ACCOUNT,
             "policy": {"Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "cloudhsm:*", "Resource": "*"}]}},
        ]}}
        super().setUpClass()
        cls.cid, _ = make_cluster(cls.server, tempfile.mkdtemp(dir=cls.tmp), activate=True)

    def home_with(self, credentials=None, config=None):
        home = self.workdir()
        os.makedirs(os.path.join(home, ".aws"))
        if credentials is not None:
            with open(os.path.join(home, ".aws", "credentials"), "w") as f:
                f.write(credentials)
        if config is not None:
            with open(os.path.join(home, ".aws", "config"), "w") as f:
                f.write(config)
        return home

    def list_users(self, env, *extra):
        return self.hsm_cli(*(list(extra) + ["user", "list"]), env=env, cluster_id=self.cid)

    def debug_key(self, proc):
        """The access key hsm-cli --debug says it used."""
        for line in proc.stderr.splitlines():
            if "access key " in line:
                return line.split("access key ", 1)[1].split(",")[0]
        self.fail("no access key in --debug output: %r" % proc.stderr)

    def test_from_environment(self):
        proc = self.list_users(root_env())
        self.assertIn("admin", json.loads(self.assertOk(proc))["Users"][0]["Username"])

    def test_session_token_from_environment(self):
        env = clean_env({"AWS_ACCESS_KEY_ID": "AKIASESSIONEXAMPLE01",
                         "AWS_SECRET_ACCESS_KEY": "session-secret-key-00000000000000000000",
                         "AWS_REGION": h.DEFAULT_REGION})
        # Without the token kmsd refuses the key; with it the call passes.
        self.assertServiceError(self.list_users(env), "UnrecognizedClientException", "ListUsers")
        env["AWS_SESSION_TOKEN"] = "session-token-example"
        self.assertOk(self.list_users(env))

    def test_from_profile(self):
        home = self.home_with(
            credentials="[default]\naws_access_key_id = AKIAWRONGWRONGWRONG1\n"
                        "aws_secret_access_key = wrong\n\n"
                        "[ops]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (
                            h.DEFAULT_ACCESS_KEY, h.DEFAULT_SECRET_KEY),
            config="[profile ops]\nregion = %s\noutput = json\n" % h.DEFAULT_REGION)
        env = clean_env(home=home)
        self.assertOk(self.list_users(env, "--profile", "ops"))
        self.assertOk(self.list_users(dict(env, AWS_PROFILE="ops")))
        # The default profile's key is unknown to kmsd: the server says so.
        proc = self.list_users(dict(env, AWS_REGION=h.DEFAULT_REGION))
        self.assertServiceError(proc, "UnrecognizedClientException", "ListUsers")
        # A wrong secret: kmsd's signature check.
        home2 = self.home_with(credentials="[default]\naws_access_key_id = %s\naws_secret_access_key = nope\n"
                               % h.DEFAULT_ACCESS_KEY,
                               config="[default]\nregion = %s\n" % h.DEFAULT_REGION)
        proc = self.list_users(clean_env(home=home2))
        self.assertServiceError(proc, "InvalidSignatureException", "ListUsers")
        self.assertNoSecret(proc, "nope")

    def test_profile_agrees_with_botocore(self):
        """For the same files and environment, hsm-cli uses the key botocore would."""
        home = self.home_with(
            credentials="[default]\naws_access_key_id = AKIADEFAULTEXAMPLE01\naws_secret_access_key = d\n"
                        "[ops]\naws_access_key_id = AKIAOPSEXAMPLE000001\naws_secret_access_key = o\n",
            config="[default]\nregion = eu-west-1\n[profile ops]\nregion = us-east-1\n"
                   "[profile cfgonly]\naws_access_key_id = AKIACFGONLYEXAMPLE01\n"
                   "aws_secret_access_key = c\nregion = us-east-1\n")
        envs = [
            ({}, []),
            ({"AWS_PROFILE": "ops"}, []),
            ({}, ["--profile", "cfgonly"]),
            ({"AWS_ACCESS_KEY_ID": "AKIAENVEXAMPLE000001", "AWS_SECRET_ACCESS_KEY": "e"}, []),
            ({"AWS_ACCESS_KEY_ID": "AKIAENVEXAMPLE000001", "AWS_SECRET_ACCESS_KEY": "e",
              "AWS_PROFILE": "ops"}, []),
            ({"AWS_ACCESS_KEY_ID": "AKIAENVEXAMPLE000001", "AWS_SECRET_ACCESS_KEY": "e"}, ["--profile", "ops"]),
        ]
        for extra, flags in envs:
            with self.subTest(env=extra, flags=flags):
                env = clean_env(extra, home=home)
                proc = self.list_users(env, "--debug", *flags)
                saved = dict(os.environ)
                try:
                    os.environ.clear()
                    os.environ.update(env)
                    session = botocore.session.Session(
                        profile=flags[1] if flags else None)
                    expected = session.get_credentials().access_key
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
                self.assertEqual(self.debug_key(proc), expected)

    def test_missing_credentials_and_region(self):
        proc = self.list_users(clean_env({"AWS_REGION": h.DEFAULT_REGION}, home=self.home_with()))
        self.assertFails(proc, 3, "Unable to locate credentials")
        proc = self.list_users(clean_env({"AWS_ACCESS_KEY_ID": h.DEFAULT_ACCESS_KEY,
                                          "AWS_SECRET_ACCESS_KEY": h.DEFAULT_SECRET_KEY},
                                         home=self.home_with()))
        self.assertFails(proc, 3, "You must specify a region")
        proc = self.list_users(clean_env({"AWS_ACCESS_KEY_ID": h.DEFAULT_ACCESS_KEY,
                                          "AWS_REGION": h.DEFAULT_REGION}, home=self.home_with()))
        self.assertFails(proc, 3, "Partial credentials found in env, missing: AWS_SECRET_ACCESS_KEY")
        proc = self.list_users(root_env(), "--profile", "ghost")
        self.assertFails(proc, 3, "The config profile (ghost) could not be found")
        home = self.home_with(credentials="[default]\naws_access_key_id = A\n[default]\n")
        proc = self.list_users(clean_env(home=home))
        self.assertFails(proc, 3, "Unable to parse config file", "section [default] appears twice")

    def test_not_authorized(self):
        env = clean_env({"AWS_ACCESS_KEY_ID": "AKIAKMSONLYEXAMPLE01",
                         "AWS_SECRET_ACCESS_KEY": "kms-only-secret-key-0000000000000000000",
                         "AWS_REGION": h.DEFAULT_REGION})
        proc = self.list_users(env)
        self.assertFails(proc, 1, "AccessDenied", "when calling the ListUsers operation")

    def test_connection_refused(self):
        proc = self.hsm_cli("--endpoint-url", "http://127.0.0.1:%d" % h.free_port(), "user", "list",
                            endpoint=False, cluster_id=self.cid)
        self.assertFails(proc, 3, "Could not connect to the endpoint URL")

    def test_endpoint_from_environment(self):
        proc = self.hsm_cli("user", "list", endpoint=False, cluster_id=self.cid,
                            env=root_env({"AWS_ENDPOINT_URL": self.server.endpoint}))
        self.assertOk(proc)

    def test_debug_never_prints_secrets(self):
        proc = self.hsm_cli("--debug", "login", "--username", "admin", "--password", ADMIN_PASSWORD,
                            cluster_id=self.cid)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("X-Amz-Target: KmsdHsmAdmin.Login", proc.stderr)
        self.assertIn("credentials from the environment", proc.stderr)
        self.assertNoSecret(proc, ADMIN_PASSWORD, h.DEFAULT_SECRET_KEY)
        self.assertOk(self.hsm_cli("logout", "--username", "admin", cluster_id=self.cid))


class HttpsTest(HsmCliCase):
    """--ca-bundle / AWS_CA_BUNDLE against kmsd serving https."""

    @classmethod
    def setUpClass(cls):
        certdir = tempfile.mkdtemp(prefix="kmsd-hsm-cli-tls-")
        cls.certdir = certdir
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-keyout", os.path.join(certdir, "key.pem"), "-out", os.path.join(certdir, "cert.pem"),
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        cls.server_kwargs = {"tls": (os.path.join(certdir, "cert.pem"), os.path.join(certdir, "key.pem"))}
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.certdir, ignore_errors=True)

    def test_ca_bundle(self):
        cid = "cluster-nosuchclust2"
        # Unknown CA: no reply at all (exit 3).
        self.assertFails(self.hsm_cli("user", "list", cluster_id=cid), 3, "failed")
        # Trusted through the flag or the environment: the server answers.
        proc = self.hsm_cli("--ca-bundle", self.server.ca_bundle, "user", "list", cluster_id=cid)
        self.assertServiceError(proc, "CloudHsmResourceNotFoundException", "ListUsers")
        proc = self.hsm_cli("user", "list", cluster_id=cid,
                            env=root_env({"AWS_CA_BUNDLE": self.server.ca_bundle}))
        self.assertServiceError(proc, "CloudHsmResourceNotFoundException", "ListUsers")


if __name__ == "__main__":
    unittest.main()
