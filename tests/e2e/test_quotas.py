"""test_quotas - LimitExceededException for AWS's documented KMS resource
quotas that kmsd enforces on symmetric keys.

The values come from the Resource quotas page of the AWS KMS Developer
Guide: 100,000 KMS keys per account and Region in any key state (kmsd
--max-keys lowers it so a test can reach it), 50 aliases per KMS key, a key
policy document of at most 32,768 bytes, 50 tags per key.  On-demand
rotations (25 per key) are in test_rotation, custom key stores (10 per
account and Region) in test_cks_limits.  A call refused by a quota changes
nothing.
"""

import json
import subprocess
import unittest

import kmsd_harness as h

DAY = 86400
POLICY_MAX = 32768


class KeyQuotaTest(h.KmsdBaseTestCase):
    """kmsd --max-keys 3: the fourth key of an account and Region is refused,
    whatever state the first three are in."""

    def test_key_quota_counts_every_state(self):
        server = self.start_server(args=["--enable-admin-api", "--max-keys", "3"])
        kms = h.kms_client(server)
        enabled = kms.create_key()["KeyMetadata"]["KeyId"]
        disabled = kms.create_key()["KeyMetadata"]["KeyId"]
        kms.disable_key(KeyId=disabled)
        pending = kms.create_key()["KeyMetadata"]["KeyId"]
        kms.schedule_key_deletion(KeyId=pending, PendingWindowInDays=7)
        err = self.assertKmsError("LimitExceededException", kms.create_key,
                                  Tags=[{"TagKey": "t", "TagValue": "v"}])
        self.assertIn("the limit is 3", err["Message"])
        self.assertEqual(sorted(k["KeyId"] for k in kms.list_keys()["Keys"]),
                         sorted([enabled, disabled, pending]))

        # The quota is per account and Region: another Region has room.
        west = h.kms_client(server, region="us-west-2")
        west.create_key()
        self.assertEqual(len(kms.list_keys()["Keys"]), 3)

        # Once the pending key is really deleted there is room again.
        h.advance_clock(server, 7 * DAY + 60)
        h.sweep(server)
        self.assertEqual(len(kms.list_keys()["Keys"]), 2)
        kms.create_key()
        self.assertKmsError("LimitExceededException", kms.create_key)

    def test_flag_range(self):
        for bad in ("0", "10000001", "-1", "many"):
            with self.subTest(value=bad):
                proc = subprocess.run([h.find_kmsd_binary(), "--max-keys", bad],
                                      capture_output=True, text=True, timeout=30)
                self.assertEqual(proc.returncode, 2, proc.stderr)
                self.assertIn("--max-keys", proc.stderr)


class PerKeyQuotaTest(h.KmsdTestCase):
    """Quotas of one key: aliases, tags, policy size."""

    def aliases_of(self, key_id):
        return sorted(a["AliasName"] for a in
                      self.kms.list_aliases(KeyId=key_id, Limit=100)["Aliases"])

    def test_fifty_aliases_per_key(self):
        full = self.kms.create_key()["KeyMetadata"]["KeyId"]
        other = self.kms.create_key()["KeyMetadata"]["KeyId"]
        names = ["alias/quota-%02d" % i for i in range(50)]
        for name in names:
            self.kms.create_alias(AliasName=name, TargetKeyId=full)
        err = self.assertKmsError("LimitExceededException", self.kms.create_alias,
                                  AliasName="alias/quota-50", TargetKeyId=full)
        self.assertIn("limit is 50", err["Message"])
        # UpdateAlias that would bring a 51st alias to the key is refused too,
        # and the alias stays where it was.
        self.kms.create_alias(AliasName="alias/quota-elsewhere", TargetKeyId=other)
        self.assertKmsError("LimitExceededException", self.kms.update_alias,
                            AliasName="alias/quota-elsewhere", TargetKeyId=full)
        self.assertEqual(self.aliases_of(other), ["alias/quota-elsewhere"])
        self.assertEqual(self.aliases_of(full), names)
        # Re-pointing an alias at the key it already names adds nothing.
        self.kms.update_alias(AliasName=names[0], TargetKeyId=full)
        # Deleting one makes room.
        self.kms.delete_alias(AliasName=names[0])
        self.kms.update_alias(AliasName="alias/quota-elsewhere", TargetKeyId=full)
        self.assertEqual(len(self.aliases_of(full)), 50)
        self.assertEqual(self.aliases_of(other), [])

    def test_fifty_tags_per_key(self):
        key = self.kms.create_key()["KeyMetadata"]["KeyId"]
        self.kms.tag_resource(KeyId=key, Tags=[{"TagKey": "t%02d" % i, "TagValue": "x"}
                                               for i in range(50)])
        err = self.assertKmsError("LimitExceededException", self.kms.tag_resource, KeyId=key,
                                  Tags=[{"TagKey": "t50", "TagValue": "x"}])
        self.assertIn("50", err["Message"])
        self.assertEqual(len(self.kms.list_resource_tags(KeyId=key, Limit=100)["Tags"]), 50)
        before = len(self.kms.list_keys(Limit=1000)["Keys"])
        self.assertKmsError("LimitExceededException", self.kms.create_key,
                            Tags=[{"TagKey": "t%02d" % i, "TagValue": "x"} for i in range(51)])
        self.assertEqual(len(self.kms.list_keys(Limit=1000)["Keys"]), before)

    def padded_policy(self, key_id, size):
        """The key's current policy, padded with spaces to exactly `size` bytes
        (still well-formed JSON, and within the model's 131072)."""
        policy = self.kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]
        compact = json.dumps(json.loads(policy), separators=(",", ":"))
        self.assertLess(len(compact), size)
        return compact + " " * (size - len(compact))

    def test_policy_document_size(self):
        key = self.kms.create_key()["KeyMetadata"]["KeyId"]
        at_limit = self.padded_policy(key, POLICY_MAX)
        self.kms.put_key_policy(KeyId=key, PolicyName="default", Policy=at_limit)
        self.assertEqual(len(self.kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]),
                         POLICY_MAX)
        over = self.padded_policy(key, POLICY_MAX + 1)
        err = self.assertKmsError("LimitExceededException", self.kms.put_key_policy, KeyId=key,
                                  PolicyName="default", Policy=over)
        self.assertIn("32768", err["Message"])
        self.assertEqual(self.kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"],
                         at_limit)
        # CreateKey with an oversized policy creates nothing.
        before = len(self.kms.list_keys(Limit=1000)["Keys"])
        self.assertKmsError("LimitExceededException", self.kms.create_key, Policy=over)
        self.assertEqual(len(self.kms.list_keys(Limit=1000)["Keys"]), before)


if __name__ == "__main__":
    unittest.main()
