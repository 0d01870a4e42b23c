"""test_readme - the README's quick start works, as written, against a real kmsd.

A quick start that has drifted from the program is the first thing a new user
meets, so its shell blocks are executed verbatim: the only rewrites are that
the harness runs the server (lines starting kmsd are dropped) and the
documented endpoint http://127.0.0.1:4599 becomes the harness's port.  The
blocks must export their own AWS_* credentials; nothing is inherited.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import kmsd_harness as h

README = os.path.join(h.REPO_ROOT, "README.md")
DOC_ENDPOINT = "http://127.0.0.1:4599"
# Commands that start a server: the harness does that instead.
SERVER_COMMAND = re.compile(r"^\s*(\S*/)?(run\.sh|kmsd)(\s|$)")


def quick_start_section(text, title="quick start"):
    """The text under the first heading containing `title` (any case), up to the
    next heading of the same or a higher level; None when there is none."""
    lines = text.splitlines()
    start = level = None
    in_fence = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        if in_fence:
            continue
        m = re.match(r"^(#{1,6})\s+(.*)$", line)
        if not m:
            continue
        if start is None:
            if title in m.group(2).lower():
                start, level = i + 1, len(m.group(1))
        elif len(m.group(1)) <= level:
            return "\n".join(lines[start:i])
    return None if start is None else "\n".join(lines[start:])


def fenced_blocks(section, languages):
    """Bodies of the ``` blocks whose info string is one of `languages`."""
    pattern = re.compile(r"^```[ \t]*([\w+-]*)[^\n]*\n(.*?)^```", re.M | re.S)
    return [m.group(2) for m in pattern.finditer(section) if m.group(1).lower() in languages]


def logical_lines(script):
    """Join backslash continuations so one command is one line."""
    return script.replace("\\\n", " ").splitlines()


def shell_script(blocks, endpoint):
    kept = []
    for block in blocks:
        for line in logical_lines(block):
            if SERVER_COMMAND.match(line):
                continue
            kept.append(line.replace(DOC_ENDPOINT, endpoint))
    return "\n".join(kept) + "\n"


def readme_env(server):
    """aws_env minus the credentials: the quick start must set those itself."""
    env = h.aws_env(server)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        env.pop(name, None)
    return env


class ReadmeQuickStartTest(h.KmsdBaseTestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(README):
            raise AssertionError("README.md is missing at %s" % README)
        with open(README, encoding="utf-8") as f:
            cls.section = quick_start_section(f.read())
        if cls.section is None:
            raise AssertionError("README.md has no heading containing 'Quick start'")
        cls.server = h.KmsdServer()  # default credentials: what a first start writes
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def setUp(self):
        self.cwd = tempfile.mkdtemp(prefix="kmsd-readme-")

    def tearDown(self):
        shutil.rmtree(self.cwd, ignore_errors=True)

    def run_script(self, argv, script):
        proc = subprocess.run(argv, input=script, capture_output=True, text=True,
                              cwd=self.cwd, env=readme_env(self.server), timeout=300)
        if proc.returncode != 0:
            self.fail("quick start failed (exit %d)\nscript:\n%s\nstdout:\n%s\nstderr:\n%s\n%s" % (
                proc.returncode, script, proc.stdout, proc.stderr, self.server.describe()))
        return proc.stdout

    def test_shell_quick_start(self):
        blocks = fenced_blocks(self.section, ("sh", "bash", "shell", "console"))
        self.assertTrue(blocks, "the Quick start section has no ```sh block")
        script = shell_script(blocks, self.server.endpoint)
        for command in ("create-key", "encrypt", "decrypt"):
            self.assertRegex(script, r"\bkms\s+%s\b" % command,
                             "the quick start no longer runs `aws kms %s`" % command)
        self.assertIn(self.server.endpoint, script,
                      "the quick start does not use %s" % DOC_ENDPOINT)
        stdout = self.run_script(["bash", "-e", "-o", "pipefail", "-s"], script)

        # The plaintext is whatever file the script passed to encrypt; the
        # decrypt at the end must print exactly those bytes.
        m = re.search(r"--plaintext\s+fileb://(\S+)", script)
        self.assertIsNotNone(m, "encrypt does not read its plaintext from a fileb:// file")
        with open(os.path.join(self.cwd, m.group(1).strip("\"'")), "rb") as f:
            plaintext = f.read().decode("utf-8")
        self.assertTrue(plaintext, "the quick start's plaintext file is empty")
        self.assertTrue(stdout.rstrip("\n").endswith(plaintext.rstrip("\n")),
                        "decrypt printed %r, expected it to end with %r" % (stdout, plaintext))
        promised = re.search(r"last command prints `([^`]*)`", self.section)
        if promised:
            self.assertTrue(stdout.rstrip("\n").endswith(promised.group(1)),
                            "the README promises %r, got %r" % (promised.group(1), stdout))

    def test_python_quick_start(self):
        blocks = fenced_blocks(self.section, ("python", "py"))
        self.assertTrue(blocks, "the Quick start section has no python (boto3) block")
        script = "\n".join(b.replace(DOC_ENDPOINT, self.server.endpoint) for b in blocks)
        self.assertIn(self.server.endpoint, script)
        self.run_script([sys.executable, "-"], script)


if __name__ == "__main__":
    unittest.main()


class ReadmeKmsCommandLineTest(h.KmsdBaseTestCase):
    """The README's section on the kms command line, run the same way, with
    the kms just built first on PATH."""

    @classmethod
    def setUpClass(cls):
        with open(README, encoding="utf-8") as f:
            cls.section = quick_start_section(f.read(), "the kms command line")
        if cls.section is None:
            raise AssertionError("README.md has no heading 'The kms command line'")
        kms = os.environ.get("KMS_BIN") or os.path.join(os.environ.get("KMSD_BUILD_DIR", "build"), "kms")
        if not os.path.exists(kms):
            raise AssertionError("kms is not built: %s" % kms)
        cls.kms_dir = os.path.dirname(os.path.abspath(kms))
        cls.server = h.KmsdServer()
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()

    def setUp(self):
        self.cwd = tempfile.mkdtemp(prefix="kmsd-readme-kms-")

    def tearDown(self):
        shutil.rmtree(self.cwd, ignore_errors=True)

    def test_shell_block(self):
        blocks = fenced_blocks(self.section, ("sh",))
        self.assertTrue(blocks, "the kms section has no ```sh block")
        script = shell_script(blocks, self.server.endpoint)
        self.assertIn(self.server.endpoint, script)
        env = readme_env(self.server)
        env.pop("AWS_ENDPOINT_URL", None)
        env["PATH"] = self.kms_dir + os.pathsep + env.get("PATH", "")
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-s"], input=script, capture_output=True,
                              text=True, cwd=self.cwd, env=env, timeout=300)
        self.assertEqual(proc.returncode, 0, "the kms section failed\nscript:\n%s\nstdout:\n%s\nstderr:\n%s\n%s" % (
            script, proc.stdout, proc.stderr, self.server.describe()))
        promised = re.search(r"last command prints `([^`]*)`", self.section)
        self.assertIsNotNone(promised, "the kms section no longer says what its last command prints")
        self.assertTrue(proc.stdout.rstrip("\n").endswith(promised.group(1)), proc.stdout)
        # the listing: the key's id
        self.assertRegex(proc.stdout, r"(?m)^[0-9a-f]{8}-[0-9a-f-]{27}$")
