"""test_kms_vs_aws - the `kms` command line against the real `aws` CLI, command by command.

Both tools run the same command against one kmsd, and what they print must
agree: json, text and table output byte for byte (`--color off`), yaml that
loads to the same data as the aws CLI's json (the aws CLI v1 on the test
machine has no yaml output), the same exit codes, and the same error text on
stderr.  The commands cover the custom key store family (a CloudHSM key store
on a real SoftHSM2 cluster), the key operations, paginated lists (several
pages, --max-items and its resume tokens) and errors.

Where the two tools differ on purpose the test says so: `kms` follows the AWS
CLI v2 (blobs as base64, ISO 8601 timestamps, exit codes 252 and 253), so
the aws CLI v1 runs with `cli_timestamp_format = iso8601`, blobs go through
`fileb://` for both, and v1's exit code 255 for a parameter or configuration
error is expected as v2's 252 or 253 from `kms`.
"""

import base64
import json
import os
import subprocess
import tempfile
import unittest

import yaml

import cloudhsm_fixture as fx
import kmsd_harness as h


def kms_binary():
    path = os.environ.get("KMS_BIN") or os.path.join(os.environ.get("KMSD_BUILD_DIR", "build"), "kms")
    if not os.path.exists(path):
        raise AssertionError("kms is not built: %s" % path)
    return path


class Outcome:
    def __init__(self, proc):
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr


class KmsVersusAwsTest(h.KmsdBaseTestCase):
    """One kmsd with keys, aliases, tags and a connected CloudHSM key store."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kms_bin = kms_binary()
        cls.server = h.KmsdServer(args=["--enable-admin-api"])
        cls.tmp = tempfile.TemporaryDirectory(prefix="kms-vs-aws-")
        try:
            cls.server.start()
            cls.kms = h.kms_client(cls.server)
            cls.config = os.path.join(cls.tmp.name, "config")
            with open(cls.config, "w") as f:
                f.write("[default]\ncli_timestamp_format = iso8601\n")
            cls.keys = []
            for i in range(5):
                md = cls.kms.create_key(Description="key %d" % i,
                                        Tags=[{"TagKey": "n", "TagValue": str(i)},
                                              {"TagKey": "env", "TagValue": "test"}])["KeyMetadata"]
                cls.keys.append(md["KeyId"])
            cls.kms.create_alias(AliasName="alias/vs-one", TargetKeyId=cls.keys[0])
            cls.kms.create_alias(AliasName="alias/vs-two", TargetKeyId=cls.keys[1])
            cls.plain = os.path.join(cls.tmp.name, "plain.bin")
            with open(cls.plain, "wb") as f:
                f.write(b"\x00secret bytes\xff")
            cls.cipher = os.path.join(cls.tmp.name, "cipher.bin")
            with open(cls.cipher, "wb") as f:
                f.write(cls.kms.encrypt(KeyId=cls.keys[0], Plaintext=b"\x00secret bytes\xff")["CiphertextBlob"])
            ca = fx.CertificateAuthority(workdir=cls.tmp.name)
            cls.cluster = fx.make_cluster(cls.server, ca)
            cls.cks = fx.create_store(cls.kms, cls.cluster, "vs-store")
            cls.free_cluster = fx.make_cluster(cls.server, ca)  # for the family test's own store
            fx.connect(cls.kms, cls.cks)
        except Exception:
            cls.server.cleanup()
            cls.tmp.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        cls.tmp.cleanup()
        super().tearDownClass()

    def env(self):
        env = h.aws_env(self.server)
        env["AWS_CONFIG_FILE"] = self.config
        return env

    def run_tool(self, tool, service, args):
        if tool == "aws":
            cmd = ["aws", "--endpoint-url", self.server.endpoint, service] + list(args)
        else:
            cmd = [self.kms_bin, "--endpoint-url", self.server.endpoint]
            cmd += ([service] if service != "kms" else []) + list(args)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=self.env())
        return Outcome(proc)

    def both(self, *args, service="kms"):
        return self.run_tool("aws", service, args), self.run_tool("kms", service, args)

    def same(self, *args, service="kms", v1_code=None):
        """Run `args` with both tools and require the same stdout, stderr and exit code.

        v1_code: the aws CLI v1's exit code when the AWS CLI v2 (and so
        `kms`) exits with another one: {255: 252} for a parameter error."""
        aws, kms = self.both(*args, service=service)
        detail = "\ncommand: %s\naws (%d):\n%s%s\nkms (%d):\n%s%s" % (
            " ".join(args), aws.code, aws.out, aws.err, kms.code, kms.out, kms.err)
        expected = aws.code if v1_code is None else v1_code.get(aws.code, aws.code)
        if aws.code == 255 and aws.err.startswith("\nAn error occurred ("):
            expected = 254  # a service error: v1 exits 255, v2 254
        self.assertEqual(kms.code, expected, detail)
        self.assertEqual(kms.out, aws.out, detail)
        if aws.code != 2:  # usage errors: the aws CLI v1 adds its own notice to the usage lines
            self.assertEqual(kms.err, aws.err, detail)
        return kms

    def test_outputs_of_key_operations(self):
        for fmt in ("json", "text", "table"):
            for args in (
                    ["describe-key", "--key-id", "alias/vs-one"],
                    ["describe-key", "--key-id", self.keys[2], "--query", "KeyMetadata.[KeyId,Description]"],
                    ["get-key-policy", "--key-id", self.keys[0], "--policy-name", "default"],
                    ["get-key-rotation-status", "--key-id", self.keys[1]],
                    ["list-resource-tags", "--key-id", self.keys[3]],
                    ["list-aliases", "--key-id", self.keys[0]],
                    ["decrypt", "--ciphertext-blob", "fileb://" + self.cipher],
                    ["decrypt", "--ciphertext-blob", "fileb://" + self.cipher, "--query", "Plaintext"],
                    ["encrypt", "--key-id", self.keys[0], "--plaintext", "fileb://" + self.plain,
                     "--query", "KeyId"],
                    ["describe-custom-key-stores", "--custom-key-store-id", self.cks],
                    ["describe-custom-key-stores", "--query", "CustomKeyStores[].ConnectionState"],
            ):
                with self.subTest(fmt=fmt, args=args):
                    self.same(*args, "--output", fmt, "--color", "off")

    def test_yaml_loads_to_the_same_data(self):
        for args in (["describe-key", "--key-id", "alias/vs-two"],
                     ["list-keys"],
                     ["describe-custom-key-stores", "--custom-key-store-id", self.cks]):
            with self.subTest(args=args):
                aws, kms = self.both(*args, "--output", "json")
                kms_yaml = self.run_tool("kms", "kms", list(args) + ["--output", "yaml"])
                self.assertEqual(kms_yaml.code, 0, kms_yaml.err)
                self.assertEqual(yaml.safe_load(kms_yaml.out), json.loads(aws.out))

    def test_paginated_lists(self):
        for fmt in ("json", "text", "table"):
            for args in (["list-keys"],
                         ["list-keys", "--page-size", "2"],
                         ["list-keys", "--page-size", "2", "--max-items", "3"],
                         ["list-keys", "--max-items", "1"],
                         ["list-keys", "--limit", "2"],
                         ["list-aliases", "--page-size", "1", "--query", "Aliases[].AliasName"],
                         ["list-resource-tags", "--key-id", self.keys[0], "--page-size", "1"]):
                with self.subTest(fmt=fmt, args=args):
                    self.same(*args, "--output", fmt, "--color", "off")

    def test_no_paginate_with_pagination_arguments(self):
        self.same("list-keys", "--no-paginate", "--page-size", "1", v1_code={255: 252})
        self.same("list-keys", "--no-paginate", "--max-items", "1", "--starting-token", "x", "--page-size", "2",
                  v1_code={255: 252})
        self.same("list-keys", "--no-paginate", "--output", "table", "--color", "off")

    def test_resume_tokens_pass_between_the_tools(self):
        aws, kms = self.both("list-keys", "--page-size", "2", "--max-items", "3", "--output", "json")
        token = json.loads(aws.out)["NextToken"]
        self.assertEqual(json.loads(kms.out)["NextToken"], token)
        self.same("list-keys", "--starting-token", token, "--output", "json")
        self.same("list-keys", "--starting-token", token, "--max-items", "1", "--output", "json")

    def test_custom_key_store_family(self):
        name = "vs-family"
        kms = self.run_tool("kms", "kms", ["create-custom-key-store", "--custom-key-store-name", name,
                                           "--cloud-hsm-cluster-id", self.free_cluster.id,
                                           "--trust-anchor-certificate", "file://" + self._anchor(),
                                           "--key-store-password", fx.KMSUSER_PASSWORD])
        self.assertEqual(kms.code, 0, kms.err)
        cks = json.loads(kms.out)["CustomKeyStoreId"]
        for fmt in ("json", "text", "table"):
            self.same("describe-custom-key-stores", "--custom-key-store-id", cks, "--output", fmt,
                      "--color", "off")
        # The name is taken: the same error from both.
        self.same("create-custom-key-store", "--custom-key-store-name", name,
                  "--cloud-hsm-cluster-id", self.free_cluster.id,
                  "--trust-anchor-certificate", "file://" + self._anchor(),
                  "--key-store-password", fx.KMSUSER_PASSWORD)
        self.same("update-custom-key-store", "--custom-key-store-id", cks, "--new-custom-key-store-name",
                  name + "-2")
        # The state changes, one tool after the other: each prints nothing.
        for tool, args, state in (("aws", "connect", ("CONNECTED", "FAILED")),
                                  ("kms", "disconnect", "DISCONNECTED"),
                                  ("kms", "connect", ("CONNECTED", "FAILED")),
                                  ("aws", "disconnect", "DISCONNECTED")):
            out = self.run_tool(tool, "kms", ["%s-custom-key-store" % args, "--custom-key-store-id", cks])
            self.assertEqual((out.code, out.out, out.err), (0, "", ""), (tool, args))
            fx.wait_store_state(self.kms, cks, state)
        # Errors, the same from both: disconnected already, then gone.
        self.same("disconnect-custom-key-store", "--custom-key-store-id", cks)
        out = self.run_tool("kms", "kms", ["delete-custom-key-store", "--custom-key-store-id", cks])
        self.assertEqual((out.code, out.out, out.err), (0, "", ""))
        self.same("delete-custom-key-store", "--custom-key-store-id", cks)  # CustomKeyStoreNotFound
        self.same("connect-custom-key-store", "--custom-key-store-id", "cks-0123456789abcdef0")

    def _anchor(self):
        path = os.path.join(self.tmp.name, "anchor.pem")
        with open(path, "w") as f:
            f.write(self.free_cluster.trust_anchor)
        return path

    def test_errors(self):
        self.same("describe-key", "--key-id", "alias/none-such")
        self.same("describe-key", "--key-id", "alias/none-such", "--output", "text")
        self.same("encrypt", "--key-id", self.keys[0], "--plaintext", "fileb://" + self.plain,
                  "--encryption-algorithm", "RSAES_OAEP_SHA_1")
        self.same("describe-key", "--key-id", "", v1_code={255: 252})
        self.same("list-keys", "--limit", "0", v1_code={255: 252})
        self.same("create-key", "--tags", '[{"TagKey":""}]', v1_code={255: 252})
        # Unreachable endpoint: the same message and exit code.
        aws = subprocess.run(["aws", "--endpoint-url", "http://127.0.0.1:9", "kms", "list-keys"],
                             capture_output=True, text=True, env=self.env())
        kms = subprocess.run([self.kms_bin, "--endpoint-url", "http://127.0.0.1:9", "list-keys"],
                             capture_output=True, text=True, env=self.env())
        self.assertEqual((kms.returncode, kms.stdout, kms.stderr), (aws.returncode, aws.stdout, aws.stderr))

    def test_skeletons(self):
        # Every operation's skeletons are compared with the model by
        # test_cli_params; here the whole program, for a few, beside aws.
        # The aws CLI fills an enum member with one of its values picked at
        # random, so the skeletons must agree in keys, order and types.
        def layout(doc):
            if isinstance(doc, dict):
                return [(k, layout(v)) for k, v in doc.items()]
            if isinstance(doc, list):
                return [layout(v) for v in doc]
            return type(doc).__name__
        for command in ("connect-custom-key-store", "create-custom-key-store", "create-key", "encrypt",
                        "list-keys", "create-grant"):
            with self.subTest(command=command):
                aws, kms = self.both(command, "--generate-cli-skeleton", "input")
                self.assertEqual((kms.code, aws.code), (0, 0), kms.err + aws.err)
                self.assertEqual(layout(json.loads(kms.out)), layout(json.loads(aws.out)))
        # The aws CLI v1 checks its own output skeleton against the output
        # shape and refuses most (placeholders are shorter than the minimum
        # lengths), so the output skeleton is checked against the model.
        kms = self.run_tool("kms", "kms", ["describe-key", "--generate-cli-skeleton", "output"])
        self.assertEqual(kms.code, 0, kms.err)
        metadata = json.loads(kms.out)["KeyMetadata"]
        self.assertEqual(list(metadata)[:3], ["AWSAccountId", "KeyId", "Arn"])

    def test_cli_input_json_round_trip(self):
        skeleton = self.run_tool("kms", "kms", ["describe-key", "--generate-cli-skeleton"])
        self.assertEqual(skeleton.code, 0, skeleton.err)
        doc = json.loads(skeleton.out)
        doc["KeyId"] = "alias/vs-one"
        doc["GrantTokens"] = []
        path = os.path.join(self.tmp.name, "input.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        self.same("describe-key", "--cli-input-json", "file://" + path)
        # a value on the command line wins over the document's
        self.same("describe-key", "--cli-input-json", "file://" + path, "--key-id", "alias/vs-two",
                  "--query", "KeyMetadata.KeyId")
        yaml_path = os.path.join(self.tmp.name, "input.yaml")
        with open(yaml_path, "w") as f:
            f.write("KeyId: alias/vs-one\n")
        kms = self.run_tool("kms", "kms", ["describe-key", "--cli-input-yaml", "file://" + yaml_path])
        aws = self.run_tool("aws", "kms", ["describe-key", "--cli-input-json", "file://" + path])
        self.assertEqual((kms.code, kms.out), (0, aws.out), kms.err)

    def test_debug_shows_no_secret(self):
        secret_text = "do-not-print-this-plaintext"
        b64 = base64.b64encode(secret_text.encode()).decode()
        kms = self.run_tool("kms", "kms", ["--debug", "encrypt", "--key-id", self.keys[0], "--plaintext", b64])
        self.assertEqual(kms.code, 0, kms.err)
        self.assertIn("DEBUG", kms.err)
        for secret in (b64, secret_text, self.env()["AWS_SECRET_ACCESS_KEY"]):
            self.assertNotIn(secret, kms.err)

    def test_usage_errors_exit_2(self):
        for args in (["no-such-command"], ["list-keys", "--output"], ["list-keys", "--output", "xml"]):
            with self.subTest(args=args):
                aws, kms = self.both(*args)
                self.assertEqual((aws.code, kms.code), (2, 2), kms.err)
                self.assertIn("kms: error: ", kms.err)

    def test_no_credentials(self):
        env = self.env()
        del env["AWS_ACCESS_KEY_ID"]
        del env["AWS_SECRET_ACCESS_KEY"]
        aws = subprocess.run(["aws", "--endpoint-url", self.server.endpoint, "kms", "list-keys"],
                             capture_output=True, text=True, env=env)
        kms = subprocess.run([self.kms_bin, "--endpoint-url", self.server.endpoint, "list-keys"],
                             capture_output=True, text=True, env=env)
        self.assertEqual(aws.returncode, 255)
        self.assertEqual(kms.returncode, 253)  # the AWS CLI v2's configuration error
        self.assertEqual(kms.stderr, aws.stderr)


if __name__ == "__main__":
    unittest.main()
