"""test_kms_tty - what `kms` does on a terminal: the pager and the auto-prompt.

Both only happen when standard output (and, for the prompt, standard input)
is a terminal, so each test runs `kms` on the slave side of a real
pseudo-terminal and plays the user on the master side: it reads what the
screen shows and types keys, Tab and Enter included.  Commands go to a real
kmsd.
"""

import fcntl
import json
import os
import pty
import struct
import select
import signal
import socket
import subprocess
import tempfile
import termios
import time
import unittest

import kmsd_harness as h


def kms_binary():
    path = os.environ.get("KMS_BIN") or os.path.join(os.environ.get("KMSD_BUILD_DIR", "build"), "kms")
    if not os.path.exists(path):
        raise AssertionError("kms is not built: %s" % path)
    return path


class Terminal:
    """`kms` running on a pseudo-terminal; `screen` is everything it wrote."""

    def __init__(self, args, env):
        self.master, slave = pty.openpty()
        # A terminal of 120 rows and 200 columns: less (with LESS=FRX) then
        # shows a short text and leaves at once, as on a user's screen.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 120, 200, 0, 0))
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.screen = b""

    def read_until(self, text, timeout=20):
        want = text.encode() if isinstance(text, str) else text
        deadline = time.monotonic() + timeout
        while want not in self.screen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%r never appeared; the screen shows %r" % (want, self.screen))
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError("kms ended before %r appeared; the screen shows %r" %
                                         (want, self.screen))
                self.screen += chunk

    def type(self, keys):
        os.write(self.master, keys.encode())

    def finish(self, timeout=30):
        """Read until kms exits and the terminal has given back all it wrote;
        returns its exit code.  What kms wrote just before it exited may
        still wait in the terminal when the exit is seen (a loaded machine
        shows it), so the screen is read to its end after the exit too: once
        no process holds the slave side, reading the master gives the rest
        and then fails (EIO)."""
        deadline = time.monotonic() + timeout
        code = None
        while time.monotonic() < deadline:
            if code is None:
                code = self.proc.poll()
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                self.screen += chunk
            elif code is not None:
                break  # exited, and nothing more came within 0.1 s
        if code is None:
            code = self.proc.wait(timeout=max(1, deadline - time.monotonic()))
        os.close(self.master)
        return code


class KmsTerminalTest(h.KmsdTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kms_bin = kms_binary()
        cls.key = cls.kms.create_key(Description="tty")["KeyMetadata"]["KeyId"]

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.TemporaryDirectory(prefix="kms-tty-")
        self.addCleanup(self.tmp.cleanup)

    def env(self, **extra):
        env = h.aws_env(self.server)
        env.pop("AWS_PAGER", None)
        env.pop("PAGER", None)
        env.pop("LESS", None)
        env["TERM"] = "xterm"
        env.update(extra)
        return env

    def kms_args(self, *args):
        return [self.kms_bin, "--endpoint-url", self.server.endpoint] + list(args)

    def test_output_goes_through_the_configured_pager(self):
        seen = os.path.join(self.tmp.name, "paged")
        pager_env = os.path.join(self.tmp.name, "pager-env")
        t = Terminal(self.kms_args("describe-key", "--key-id", self.key),
                     self.env(AWS_PAGER="cat > %s; env > %s" % (seen, pager_env)))
        self.assertEqual(t.finish(), 0, t.screen)
        with open(seen) as f:
            self.assertEqual(json.load(f)["KeyMetadata"]["KeyId"], self.key)
        with open(pager_env) as f:
            self.assertIn("LESS=FRX\n", f.read())  # set for less when the user has no LESS
        self.assertNotIn(self.key.encode(), t.screen)  # the pager took it, not the terminal

    def test_no_pager_when_disabled_or_not_a_terminal(self):
        seen = os.path.join(self.tmp.name, "paged")
        env = self.env(AWS_PAGER="cat > %s" % seen)
        t = Terminal(self.kms_args("describe-key", "--key-id", self.key, "--no-cli-pager"), env)
        self.assertEqual(t.finish(), 0, t.screen)
        self.assertIn(self.key.encode(), t.screen)
        self.assertFalse(os.path.exists(seen))
        out = subprocess.run(self.kms_args("describe-key", "--key-id", self.key), env=env,
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(self.key, out.stdout)
        self.assertFalse(os.path.exists(seen))
        t = Terminal(self.kms_args("describe-key", "--key-id", self.key), self.env(AWS_PAGER=""))
        self.assertEqual(t.finish(), 0, t.screen)
        self.assertIn(self.key.encode(), t.screen)

    def test_default_pager_is_less(self):
        # LESS=FRX: less prints a short text and leaves at once.
        t = Terminal(self.kms_args("describe-key", "--key-id", self.key), self.env())
        self.assertEqual(t.finish(), 0, t.screen)
        self.assertIn(self.key.encode(), t.screen)

    def test_interrupt_exits_130(self):
        # A listener that never answers: kms waits in its call until Ctrl-C.
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(1)
            url = "http://127.0.0.1:%d" % silent.getsockname()[1]
            proc = subprocess.Popen([self.kms_bin, "--endpoint-url", url, "--cli-read-timeout", "0", "list-keys"],
                                    env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(1.0)
            self.assertIsNone(proc.poll())
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
        self.assertEqual(proc.returncode, 130, err)
        self.assertEqual(out, b"\n")

    def test_auto_prompt_completes_and_runs(self):
        t = Terminal(self.kms_args("--cli-auto-prompt", "--no-cli-pager"), self.env())
        t.read_until("> kms ")
        t.type("describe-k\t")
        t.read_until("describe-key ")
        t.type("--key-i\t")
        t.read_until("--key-id ")
        t.type(self.key + " --out\t")
        t.read_until("--output ")
        t.type("ta\t")
        t.read_until("table ")
        t.type("\r")
        self.assertEqual(t.finish(), 0, t.screen)
        self.assertIn(b"DescribeKey", t.screen)  # the table's title
        self.assertIn(self.key.encode(), t.screen)

    def test_auto_prompt_lists_enum_values(self):
        t = Terminal(self.kms_args("create-key", "--key-spec", "--cli-auto-prompt"), self.env())
        t.read_until("--key-spec ")
        t.type("ECC_NIST_P\t\t")
        t.read_until("ECC_NIST_P384")
        t.read_until("ECC_NIST_P521")
        t.type("\x03")
        self.assertEqual(t.finish(), 130, t.screen)

    def test_on_partial_prompts_only_without_a_command(self):
        env = self.env(AWS_CLI_AUTO_PROMPT="on-partial")
        t = Terminal(self.kms_args("describe-key", "--key-id", self.key, "--no-cli-pager"), env)
        self.assertEqual(t.finish(), 0, t.screen)
        self.assertNotIn(b"> kms", t.screen)
        t = Terminal(self.kms_args("--no-cli-pager"), env)
        t.read_until("> kms ")
        t.type("\x04")  # Ctrl-D: nothing runs
        self.assertEqual(t.finish(), 0, t.screen)


if __name__ == "__main__":
    unittest.main()
