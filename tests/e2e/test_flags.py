"""test_flags - kmsd and hsm-cli read their command lines by the same rules.

Both programs are run as a shell user runs them: -h/--help print usage to
stdout and exit 0; --version prints "PROGRAM VERSION" and exits 0, with the
one version of the project (CMakeLists.txt), which GET /health reports too;
an unknown flag is an error naming it (exit 2, a hint on stderr) and never
takes the next argument as its value; a flag missing its value says so;
--flag=value and --flag value both work.
"""

import os
import re
import subprocess
import unittest

import kmsd_harness as h
import test_hsm_cli


def project_version():
    with open(os.path.join(h.REPO_ROOT, "CMakeLists.txt")) as f:
        match = re.search(r"project\(kmsd VERSION ([0-9][0-9.]*)", f.read())
    assert match, "CMakeLists.txt has no project(kmsd VERSION ...)"
    return match.group(1)


class FlagConventionsTest(h.KmsdBaseTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.programs = {"kmsd": h.find_kmsd_binary(), "hsm-cli": test_hsm_cli.find_hsm_cli()}

    def run_program(self, name, *args):
        # No AWS settings from the environment: nothing here may reach a server.
        return subprocess.run([self.programs[name]] + list(args), capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL,
                              env=test_hsm_cli.clean_env())

    def assertUsageError(self, proc, name, *needles):
        self.assertEqual(proc.returncode, 2, "%s: %s" % (proc.args, proc.stderr))
        self.assertEqual(proc.stdout, "")
        self.assertIn("see %s --help" % name, proc.stderr)
        self.assertTrue(proc.stderr.startswith(name + ": "), proc.stderr)
        for needle in needles:
            self.assertIn(needle, proc.stderr)

    def test_help(self):
        for name, marker in (("kmsd", "--data-dir"), ("hsm-cli", "--endpoint-url")):
            with self.subTest(name):
                outputs = set()
                for flag in ("-h", "--help"):
                    proc = self.run_program(name, flag)
                    self.assertEqual(proc.returncode, 0, "%s %s: %s" % (name, flag, proc.stderr))
                    self.assertEqual(proc.stderr, "")
                    self.assertIn(marker, proc.stdout)
                    self.assertIn("--version", proc.stdout)
                    outputs.add(proc.stdout)
                self.assertEqual(len(outputs), 1, "-h and --help differ")

    def test_version(self):
        version = project_version()
        for name in ("kmsd", "hsm-cli"):
            with self.subTest(name):
                proc = self.run_program(name, "--version")
                self.assertEqual(proc.returncode, 0, proc.stderr)
                self.assertEqual(proc.stdout, "%s %s\n" % (name, version))
                self.assertEqual(proc.stderr, "")
        # The server says the same on GET /health, and keeps its status.
        server = self.start_server()
        status, headers, body = server.raw_request("GET", "/health")
        self.assertEqual(status, 200)
        backend = "postgresql" if h.on_postgresql() else "sqlite"
        self.assertEqual(h.parse_body(body), {"status": "ok", "version": version,
                                              "store": {"backend": backend, "reachable": True,
                                                        "leases": ["background-work"]},
                                              "keyCache": {"hits": 0, "misses": 0},
                                              "hsmKeyCache": {"hits": 0, "misses": 0},
                                              "customKeyStores": {"unreachable": 0}})

    def test_unknown_flag_is_named_and_swallows_nothing(self):
        for name in ("kmsd", "hsm-cli"):
            with self.subTest(name):
                # Were --bogus assumed to take a value, --version would be
                # swallowed or obeyed; it must be neither.
                self.assertUsageError(self.run_program(name, "--bogus", "--version"), name,
                                      "unknown option --bogus")
                self.assertUsageError(self.run_program(name, "--bogus=1"), name,
                                      "unknown option --bogus")
                self.assertUsageError(self.run_program(name, "-x"), name, "unknown option -x")
        # hsm-cli: the words after an unknown flag stay words.
        proc = self.run_program("hsm-cli", "--cluster-id", "cluster-abcdefghijk", "--bogus", "user",
                                "list")
        self.assertUsageError(proc, "hsm-cli", "unknown option --bogus")
        self.assertNotIn("unknown command", proc.stderr)

    def test_missing_value(self):
        for name, flag in (("kmsd", "--listen"), ("kmsd", "--data-dir"), ("hsm-cli", "--region"),
                           ("hsm-cli", "--cluster-id")):
            with self.subTest(name=name, flag=flag):
                self.assertUsageError(self.run_program(name, flag), name, "%s needs a value" % flag)
                # Followed by another flag: that flag is not the value.
                self.assertUsageError(self.run_program(name, flag, "--help"), name,
                                      "%s needs a value" % flag)
        self.assertUsageError(self.run_program("kmsd", "--version=1"), "kmsd",
                              "--version takes no value")
        self.assertUsageError(self.run_program("hsm-cli", "--debug=yes"), "hsm-cli",
                              "--debug takes no value")

    def test_both_value_forms(self):
        for args in (["--threads", "0"], ["--threads=0"]):
            self.assertUsageError(self.run_program("kmsd", *args), "kmsd",
                                  "--threads must be a whole number from 1 to 1024, not '0'")
        for args in (["--output", "yaml"], ["--output=yaml"]):
            self.assertUsageError(
                self.run_program("hsm-cli", "--cluster-id=cluster-abcdefghijk", "--endpoint-url",
                                 "http://127.0.0.1:1", *args, "user", "list"),
                "hsm-cli", "--output must be json or text")
        # A server started with the --flag=value forms serves.
        server = self.start_server(args=["--threads=2", "--log-level=debug", "--max-keys=5"])
        status, _, _ = server.raw_request("GET", "/health")
        self.assertEqual(status, 200)
        kms = h.kms_client(server)
        for _ in range(5):
            kms.create_key()
        self.assertKmsError("LimitExceededException", kms.create_key)

    def test_cache_bounds(self):
        """Every cache's bound is a flag, range-checked; --key-cache 0 turns the
        key cache off (null in /health) and the smallest caches still serve."""
        for flag, low in (("--key-cache", 0), ("--material-cache", 1), ("--policy-cache", 1),
                          ("--hsm-key-cache", 0)):
            for bad in (str(low - 1), "1048577", "many"):
                self.assertUsageError(
                    self.run_program("kmsd", flag, bad), "kmsd",
                    "%s must be a whole number from %d to 1048576, not '%s'" % (flag, low, bad))
        server = self.start_server(args=["--key-cache", "0", "--material-cache", "1",
                                         "--policy-cache", "1", "--hsm-key-cache", "0"])
        status, _, body = server.raw_request("GET", "/health")
        self.assertEqual(status, 200)
        self.assertIsNone(h.parse_body(body)["keyCache"])
        self.assertIsNone(h.parse_body(body)["hsmKeyCache"])
        kms = h.kms_client(server)
        keys = [kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(2)]
        for _ in range(2):
            for key in keys:  # two keys through one slot of each cache
                blob = kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
                self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"x")


if __name__ == "__main__":
    unittest.main()
