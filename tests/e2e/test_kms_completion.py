"""test_kms_completion - bash completion of `kms`, through bash itself.

Each case sources scripts/kms-completion.bash in a real bash, sets the words
bash would have split the line into, calls the completion function and reads
COMPREPLY: commands, services, options of an operation (booleans with their
--no- form, pagination options only where the operation pages, options not
offered twice), enum values, and the choices of --output.
"""
import os
import subprocess
import unittest


def kms_binary():
    path = os.environ.get("KMS_BIN") or os.path.join(os.environ.get("KMSD_BUILD_DIR", "build"), "kms")
    if not os.path.exists(path):
        raise AssertionError("kms is not built: %s" % path)
    return path


SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "kms-completion.bash")


class CompletionTest(unittest.TestCase):

    def complete(self, line):
        """The candidates bash offers with the cursor at the end of `line`."""
        kms = kms_binary()
        words = line.split(" ")
        words[0] = kms
        full = " ".join(words)
        script = ('source "$SCRIPT"; COMP_WORDS=(%s); COMP_CWORD=%d; COMP_LINE="$LINE"; COMP_POINT=${#LINE}; '
                  '_kms_complete; printf "%%s\\n" "${COMPREPLY[@]}"') % (
                      " ".join("'%s'" % w for w in words), len(words) - 1)
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                             env=dict(os.environ, SCRIPT=SCRIPT, LINE=full), timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        return [w for w in out.stdout.split("\n") if w]

    def test_commands(self):
        self.assertEqual(self.complete("kms describe-"), ["describe-custom-key-stores", "describe-key"])
        self.assertIn("connect-custom-key-store", self.complete("kms con"))
        self.assertEqual(self.complete("kms cloudh"), ["cloudhsmv2"])
        self.assertEqual(self.complete("kms cloudhsmv2 describe-c"), ["describe-clusters"])
        self.assertEqual(self.complete("kms --endpoint-url http://127.0.0.1:1 describe-k"), ["describe-key"])

    def test_options(self):
        self.assertEqual(self.complete("kms create-key --key-sp"), ["--key-spec"])
        self.assertEqual(sorted(self.complete("kms encrypt --dry")), ["--dry-run"])
        self.assertEqual(self.complete("kms encrypt --no-dry"), ["--no-dry-run"])
        listed = self.complete("kms list-keys --")
        for option in ("--limit", "--marker", "--starting-token", "--page-size", "--max-items", "--query",
                       "--output", "--cli-input-json", "--generate-cli-skeleton"):
            self.assertIn(option, listed)
        self.assertNotIn("--starting-token", self.complete("kms describe-key --"))
        self.assertEqual(self.complete("kms list-keys --limit 1 --lim"), [])  # given already
        self.assertEqual(self.complete("kms connect-custom-key-store --custom-key-store-id cks-1 --cust"), [])

    def test_values(self):
        self.assertEqual(self.complete("kms create-key --key-spec ECC_NIST_P"),
                         ["ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521"])
        self.assertEqual(self.complete("kms create-custom-key-store --custom-key-store-type EXT"),
                         ["EXTERNAL_KEY_STORE"])
        self.assertEqual(self.complete("kms list-keys --output t"), ["text", "table"])
        self.assertEqual(self.complete("kms --color o"), ["on", "off"])
        self.assertEqual(self.complete("kms describe-key --generate-cli-skeleton "), ["input", "output", "yaml-input"])


if __name__ == "__main__":
    unittest.main()
