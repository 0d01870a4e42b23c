"""test_kms_typed - libkms's typed functions against a real kmsd, seen side by
side with boto3.

tests/e2e/kms_typed_driver.c is compiled against the installed library
(pkg-config libkms) and runs one typed call per invocation: CreateKey,
DescribeKey, Encrypt and Decrypt (each way with boto3), ListKeys and
ListAliases through the page iterators with small pages over several keys,
CreateAlias (an operation without output), CreateCustomKeyStore and
DescribeCustomKeyStores on a real CloudHSM cluster, a CloudHSMv2
DescribeClusters, and the kms_error of a service error and of a missing
required member."""

import json
import os
import subprocess
import tempfile
import unittest

import cloudhsm_fixture as fx
import kmsd_harness as h
import libkms_build

DRIVER_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kms_typed_driver.c")


class TypedFunctionsTest(h.KmsdBaseTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lib = libkms_build.InstalledLibkms()
        cls.server = h.KmsdServer(args=["--enable-admin-api"])
        try:
            cls.driver = cls.lib.compile(DRIVER_SOURCE, os.path.join(cls.lib.prefix, "kms_typed_driver"),
                                         packages=("jansson",))
            cls.server.start()
            cls.kms = h.kms_client(cls.server)
        except Exception:
            cls.server.cleanup()
            cls.lib.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        cls.lib.cleanup()
        super().tearDownClass()

    def drive(self, *args, expect_error=False):
        """Run the driver; its JSON output (the error object when expect_error)."""
        proc = subprocess.run([self.driver] + [str(a) for a in args], capture_output=True, text=True,
                              timeout=120, env=self.lib.env(self.server))
        try:
            out = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError("driver %s: exit %d, stdout %r, stderr %r" % (
                args, proc.returncode, proc.stdout, proc.stderr))
        if expect_error:
            self.assertEqual(proc.returncode, 3, out)
            return out["error"]
        self.assertEqual(proc.returncode, 0, "%s: %s %s" % (args, out, proc.stderr))
        return out

    def assert_same_metadata(self, ours, theirs):
        for member in ("KeyId", "Arn", "KeyState", "Description", "KeySpec", "KeyUsage", "Origin",
                       "KeyManager", "EncryptionAlgorithms", "Enabled"):
            self.assertEqual(ours[member], theirs.get(member), member)
        self.assertAlmostEqual(ours["CreationDate"], theirs["CreationDate"].timestamp(), places=3)

    def test_create_and_describe_key(self):
        created = self.drive("create-key", "typed key", "team", "sdk")["KeyMetadata"]
        key_id = created["KeyId"]
        theirs = self.kms.describe_key(KeyId=key_id)["KeyMetadata"]
        self.assert_same_metadata(created, theirs)
        self.assertEqual(created["Description"], "typed key")
        # The tag went out as a list of structures.
        tags = self.kms.list_resource_tags(KeyId=key_id)["Tags"]
        self.assertEqual(tags, [{"TagKey": "team", "TagValue": "sdk"}])
        described = self.drive("describe-key", key_id)["KeyMetadata"]
        self.assert_same_metadata(described, theirs)
        self.assertEqual(described["EncryptionAlgorithms"], ["SYMMETRIC_DEFAULT"])

    def test_encrypt_and_decrypt_both_ways(self):
        key_id = self.kms.create_key()["KeyMetadata"]["KeyId"]
        context = {"test": "typed"}
        secret = bytes(range(256)) + b"\x00 trailing zero bytes\x00"
        sealed = self.drive("encrypt", key_id, secret.hex())
        self.assertEqual(sealed["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT")
        self.assertTrue(sealed["KeyId"].endswith(key_id))
        opened = self.kms.decrypt(CiphertextBlob=bytes.fromhex(sealed["CiphertextBlob"]),
                                  EncryptionContext=context)
        self.assertEqual(opened["Plaintext"], secret)
        theirs = self.kms.encrypt(KeyId=key_id, Plaintext=secret, EncryptionContext=context)["CiphertextBlob"]
        ours = self.drive("decrypt", theirs.hex())
        self.assertEqual(bytes.fromhex(ours["Plaintext"]), secret)
        self.assertTrue(ours["KeyId"].endswith(key_id))
        # The context is really sent: boto3 without it cannot decrypt ours.
        self.assertKmsError("InvalidCiphertextException", self.kms.decrypt,
                            CiphertextBlob=bytes.fromhex(sealed["CiphertextBlob"]))

    def all_key_ids(self):
        ids, marker = [], None
        while True:
            page = self.kms.list_keys(**({"Marker": marker} if marker else {}))
            ids += [k["KeyId"] for k in page["Keys"]]
            if not page.get("Truncated"):
                return ids
            marker = page["NextMarker"]

    def test_list_keys_one_per_page(self):
        for _ in range(4):
            self.kms.create_key()
        expected = self.all_key_ids()
        self.assertGreaterEqual(len(expected), 4)
        pages = self.drive("list-keys", 1)["Pages"]
        self.assertTrue(all(len(p) <= 1 for p in pages), pages)
        self.assertGreaterEqual(len(pages), len(expected))
        listed = [k for p in pages for k in p]
        self.assertEqual(listed, expected)  # every key once, in the service's order
        bigger = self.drive("list-keys", 3)["Pages"]
        self.assertEqual([k for p in bigger for k in p], expected)
        self.assertTrue(all(len(p) <= 3 for p in bigger), bigger)

    def test_aliases(self):
        key_id = self.kms.create_key()["KeyMetadata"]["KeyId"]
        for name in ("alias/typed-a", "alias/typed-b", "alias/typed-c"):
            self.assertEqual(self.drive("create-alias", name, key_id), {})
        pages = self.drive("list-aliases", 2)["Pages"]
        self.assertTrue(all(len(p) <= 2 for p in pages), pages)
        ours = [a for p in pages for a in p]
        theirs = self.kms.get_paginator("list_aliases").paginate().build_full_result()["Aliases"]
        self.assertEqual([a["AliasName"] for a in ours], [a["AliasName"] for a in theirs])
        targets = {a["AliasName"]: a["TargetKeyId"] for a in ours}
        for name in ("alias/typed-a", "alias/typed-b", "alias/typed-c"):
            self.assertEqual(targets[name], key_id)

    def test_custom_key_store_and_cluster(self):
        ca = fx.CertificateAuthority()
        cluster = fx.make_cluster(self.server, ca)
        cluster_view = self.drive("describe-cluster", cluster.id)["Clusters"]
        theirs = fx.describe_cluster(fx.cloudhsm_client(self.server), cluster.id)
        self.assertEqual(len(cluster_view), 1)
        self.assertEqual(cluster_view[0]["State"], theirs["State"])
        self.assertEqual(cluster_view[0]["HsmType"], theirs["HsmType"])
        self.assertEqual(cluster_view[0]["SubnetMapping"], theirs["SubnetMapping"])
        self.assertEqual(sorted(x["HsmId"] for x in cluster_view[0]["Hsms"]),
                         sorted(x["HsmId"] for x in theirs["Hsms"]))
        with tempfile.NamedTemporaryFile("w", suffix=".crt") as anchor:
            anchor.write(cluster.trust_anchor)
            anchor.flush()
            store_id = self.drive("create-store", "typed-store", cluster.id, anchor.name,
                                  fx.KMSUSER_PASSWORD)["CustomKeyStoreId"]
        entry = fx.store_entry(self.kms, store_id)
        self.assertEqual(entry["CustomKeyStoreName"], "typed-store")
        self.assertEqual(entry["CloudHsmClusterId"], cluster.id)
        ours = self.drive("describe-store", store_id)["CustomKeyStores"]
        self.assertEqual(len(ours), 1)
        for member in ("CustomKeyStoreId", "CustomKeyStoreName", "CloudHsmClusterId", "ConnectionState",
                       "CustomKeyStoreType", "TrustAnchorCertificate"):
            self.assertEqual(ours[0][member], entry.get(member), member)
        self.assertEqual(ours[0]["ConnectionState"], "DISCONNECTED")
        self.assertAlmostEqual(ours[0]["CreationDate"], entry["CreationDate"].timestamp(), places=3)

    def test_service_error_fills_kms_error(self):
        missing = "arn:aws:kms:us-east-1:%s:key/00000000-0000-0000-0000-000000000000" % h.DEFAULT_ACCOUNT
        err = self.drive("describe-key", missing, expect_error=True)
        self.assertEqual(err["rc"], 1)           # KMS_ERR_SERVICE
        self.assertEqual(err["kind"], 1)
        self.assertEqual(err["code"], "NotFoundException")
        self.assertEqual(err["http_status"], 400)
        self.assertIn("00000000-0000-0000-0000-000000000000", err["message"])
        self.assertNotEqual(err["request_id"], "")
        self.assertEqual(err["retryable"], 0)
        self.assertEqual(err["attempts"], 1)
        # boto3 sees the same error.
        self.assertKmsError("NotFoundException", self.kms.describe_key, KeyId=missing)

    def test_missing_required_member_is_not_sent(self):
        err = self.drive("encrypt-without-key", expect_error=True)
        self.assertEqual(err["kind"], 3)          # KMS_ERR_PARAM
        self.assertIn("KeyId", err["message"])
        self.assertEqual(err["http_status"], 0)
        self.assertEqual(err["request_id"], "")


if __name__ == "__main__":
    unittest.main()
