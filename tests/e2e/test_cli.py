"""test_cli - the real `aws` CLI (v1) against kmsd, as a shell user would drive it.

The CLI has its own argument handling (fileb:// blobs, --query, text output,
exit codes), so a representative path is run through it end to end:
create-key, encrypt from a binary file, decrypt back to the same bytes,
list-keys, create-alias and schedule-key-deletion, plus the errors a script
would branch on.
"""

import base64
import os
import tempfile
import unittest
import uuid

import kmsd_harness as h


class AwsCliTest(h.KmsdTestCase):

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.TemporaryDirectory(prefix="kmsd-cli-")
        self.addCleanup(self.tmp.cleanup)

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def cli(self, *args, **kwargs):
        return h.aws_cli(self.server, *args, **kwargs)

    def create_key(self, *extra):
        return self.cli("create-key", *extra)["KeyMetadata"]

    def test_create_describe_and_list_keys(self):
        md = self.create_key("--description", "made by the cli",
                             "--tags", "TagKey=origin,TagValue=cli")
        self.assertEqual(md["Description"], "made by the cli")
        self.assertEqual(md["KeyState"], "Enabled")
        self.assertEqual(md["KeySpec"], "SYMMETRIC_DEFAULT")
        self.assertTrue(md["Arn"].endswith(":key/" + md["KeyId"]))
        described = self.cli("describe-key", "--key-id", md["Arn"])["KeyMetadata"]
        self.assertEqual(described["KeyId"], md["KeyId"])
        listed = self.cli("list-keys")
        self.assertIn(md["KeyId"], [k["KeyId"] for k in listed["Keys"]])
        # The CLI paginates by itself; a page size of 1 must still find every key.
        paged = self.cli("list-keys", "--page-size", "1")
        self.assertEqual(sorted(k["KeyId"] for k in paged["Keys"]),
                         sorted(k["KeyId"] for k in listed["Keys"]))
        text = self.cli("list-keys", "--query", "Keys[].KeyId", "--output", "text")
        self.assertIn(md["KeyId"], text.split())
        tags = self.cli("list-resource-tags", "--key-id", md["KeyId"])["Tags"]
        self.assertEqual(tags, [{"TagKey": "origin", "TagValue": "cli"}])

    def test_encrypt_fileb_and_decrypt_round_trip(self):
        key_id = self.create_key()["KeyId"]
        plaintext = bytes(range(256)) + b"\x00binary\xff" * 10
        with open(self.path("plain.bin"), "wb") as f:
            f.write(plaintext)
        out = self.cli("encrypt", "--key-id", key_id, "--plaintext",
                       "fileb://" + self.path("plain.bin"),
                       "--encryption-context", "purpose=cli-test")
        self.assertTrue(out["KeyId"].endswith(key_id))
        self.assertEqual(out["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT")
        with open(self.path("cipher.bin"), "wb") as f:
            f.write(base64.b64decode(out["CiphertextBlob"]))

        dec = self.cli("decrypt", "--ciphertext-blob", "fileb://" + self.path("cipher.bin"),
                       "--encryption-context", "purpose=cli-test")
        self.assertEqual(base64.b64decode(dec["Plaintext"]), plaintext)
        self.assertTrue(dec["KeyId"].endswith(key_id))

        # The usual shell idiom: --query Plaintext --output text | base64 -d.
        text = self.cli("decrypt", "--ciphertext-blob", "fileb://" + self.path("cipher.bin"),
                        "--encryption-context", "purpose=cli-test",
                        "--query", "Plaintext", "--output", "text")
        self.assertEqual(base64.b64decode(text.strip()), plaintext)

        err = self.cli("decrypt", "--ciphertext-blob", "fileb://" + self.path("cipher.bin"),
                       expect_error=True)
        self.assertIn("InvalidCiphertextException", err.stderr)

    def test_generate_data_key_and_random(self):
        key_id = self.create_key()["KeyId"]
        out = self.cli("generate-data-key", "--key-id", key_id, "--key-spec", "AES_256")
        self.assertEqual(len(base64.b64decode(out["Plaintext"])), 32)
        with open(self.path("dk.bin"), "wb") as f:
            f.write(base64.b64decode(out["CiphertextBlob"]))
        dec = self.cli("decrypt", "--ciphertext-blob", "fileb://" + self.path("dk.bin"))
        self.assertEqual(dec["Plaintext"], out["Plaintext"])
        rnd = self.cli("generate-random", "--number-of-bytes", "48")
        self.assertEqual(len(base64.b64decode(rnd["Plaintext"])), 48)

    def test_aliases(self):
        key_id = self.create_key()["KeyId"]
        alias = "alias/cli-%s" % uuid.uuid4().hex[:8]
        self.assertEqual(self.cli("create-alias", "--alias-name", alias,
                                  "--target-key-id", key_id), {})
        entries = self.cli("list-aliases", "--key-id", key_id)["Aliases"]
        self.assertEqual([a["AliasName"] for a in entries], [alias])
        self.assertEqual(self.cli("describe-key", "--key-id", alias)["KeyMetadata"]["KeyId"],
                         key_id)
        err = self.cli("create-alias", "--alias-name", alias, "--target-key-id", key_id,
                       expect_error=True)
        self.assertIn("AlreadyExistsException", err.stderr)
        self.cli("delete-alias", "--alias-name", alias)
        self.assertEqual(self.cli("list-aliases", "--key-id", key_id)["Aliases"], [])

    def test_schedule_and_cancel_key_deletion(self):
        md = self.create_key()
        out = self.cli("schedule-key-deletion", "--key-id", md["KeyId"],
                       "--pending-window-in-days", "7")
        self.assertEqual(out["KeyId"], md["Arn"])
        self.assertEqual(out["KeyState"], "PendingDeletion")
        self.assertEqual(out["PendingWindowInDays"], 7)
        self.assertIn("DeletionDate", out)
        state = self.cli("describe-key", "--key-id", md["KeyId"], "--query",
                         "KeyMetadata.KeyState", "--output", "text")
        self.assertEqual(state.strip(), "PendingDeletion")
        err = self.cli("encrypt", "--key-id", md["KeyId"], "--plaintext", "aGVsbG8=",
                       expect_error=True)
        self.assertIn("KMSInvalidStateException", err.stderr)
        self.cli("cancel-key-deletion", "--key-id", md["KeyId"])
        self.assertEqual(self.cli("describe-key", "--key-id", md["KeyId"])
                         ["KeyMetadata"]["KeyState"], "Disabled")

    def test_errors_exit_nonzero_with_the_aws_error_name(self):
        err = self.cli("describe-key", "--key-id", str(uuid.uuid4()), expect_error=True)
        self.assertNotEqual(err.returncode, 0)
        self.assertIn("NotFoundException", err.stderr)
        self.assertIn("DescribeKey", err.stderr)
        err = self.cli("schedule-key-deletion", "--key-id", self.create_key()["KeyId"],
                       "--pending-window-in-days", "3", expect_error=True)
        self.assertIn("ValidationException", err.stderr)
        err = self.cli("create-key", "--key-spec", "RSA_2048", expect_error=True)
        self.assertIn("UnsupportedOperationException", err.stderr)


if __name__ == "__main__":
    unittest.main()
