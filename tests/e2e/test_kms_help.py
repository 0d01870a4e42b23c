"""test_kms_help - `kms help` and `kms <command> help`, from the AWS model.

Every command listed by `kms help` (and `kms cloudhsmv2 help`) prints its
page with exit code 0, and the pages carry what the model says: each option
with its type and whether it is required, enum values, the documentation
text, the global options and the output's members.
"""
import os
import re
import subprocess
import unittest

import botocore.session


def kms_binary():
    path = os.environ.get("KMS_BIN") or os.path.join(os.environ.get("KMSD_BUILD_DIR", "build"), "kms")
    if not os.path.exists(path):
        raise AssertionError("kms is not built: %s" % path)
    return path


def run(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_CONFIG_FILE"] = os.devnull
    p = subprocess.run([kms_binary()] + list(args), capture_output=True, text=True, env=env, timeout=30)
    return p.returncode, p.stdout, p.stderr


def commands(service_args):
    code, out, err = run(*(service_args + ["help"]))
    if code != 0:
        raise AssertionError(err)
    section = out.split("AVAILABLE COMMANDS", 1)[1]
    return [c for c in re.findall(r"^       o (\S+)$", section, re.M) if c not in ("help", "cloudhsmv2")]


class HelpTest(unittest.TestCase):

    def test_every_command_has_a_page(self):
        session = botocore.session.get_session()
        for service, args in (("kms", []), ("cloudhsmv2", ["cloudhsmv2"])):
            model = session.get_service_model(service)
            names = commands(args)
            self.assertEqual(len(names), len(model.operation_names), names)
            for name in names:
                with self.subTest(service=service, command=name):
                    code, out, err = run(*(args + [name, "help"]))
                    self.assertEqual(code, 0, err)
                    for section in ("NAME", "DESCRIPTION", "SYNOPSIS", "OPTIONS", "GLOBAL OPTIONS", "OUTPUT"):
                        self.assertRegex(out, r"(?m)^%s$" % section)

    def test_describe_key_page(self):
        code, out, err = run("describe-key", "help")
        self.assertEqual(code, 0, err)
        self.assertIn("--key-id (string) [required]", out)
        self.assertIn("--grant-tokens (list)", out)
        self.assertIn("Provides detailed information about a KMS key.", out)
        self.assertRegex(out, r"(?m)^       KeyMetadata -> \(structure\)$")
        self.assertRegex(out, r"(?m)^          KeyId -> \(string\)$")
        self.assertIn("--no-cli-pager", out)
        # wrapped to 79 columns; only a single word longer than that (an ARN) may pass it
        long_lines = [line for line in out.splitlines() if len(line) > 79 and " " in line.strip()]
        self.assertEqual(long_lines, [])

    def test_enums_and_booleans(self):
        code, out, err = run("create-key", "help")
        self.assertEqual(code, 0, err)
        self.assertIn("Possible values:", out)
        self.assertIn("* ECC_NIST_P256", out)
        self.assertIn("[--bypass-policy-lockout-safety-check | --no-bypass-policy-lockout-safety-check]", out)

    def test_paginated_synopsis(self):
        code, out, err = run("list-keys", "help")
        self.assertEqual(code, 0, err)
        self.assertIn("[--starting-token <value>]", out)
        self.assertNotIn("[--marker <value>]", out)  # replaced, as in the AWS CLI's pages

    def test_unknown_command(self):
        code, out, err = run("no-such-command", "help")
        self.assertEqual(code, 2)
        self.assertIn("Invalid choice", err)


if __name__ == "__main__":
    unittest.main()
