"""test_policies - key policies through boto3: PutKeyPolicy, GetKeyPolicy, ListKeyPolicies.

A key policy is the primary access control of a KMS key, so the tests check
the default policy AWS documents, that a stored policy really governs access
(a second principal gains and loses rights with it), the lockout safety check
and its bypass, and every model error with the stored policy re-read after.
"""

import json
import unittest
import uuid

import kmsd_harness as h

ROOT = h.DEFAULT_ROOT_ARN
ALICE_KEY, ALICE_SECRET = "AKIAIOSFODNN7POLALICE", "policyAliceSecret/EXAMPLE+0123456789abcdefg"
ALICE_ARN = "arn:aws:iam::%s:user/alice" % h.DEFAULT_ACCOUNT


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(principal_arn, actions, sid=None):
    st = {"Effect": "Allow", "Principal": {"AWS": principal_arn}, "Action": actions,
          "Resource": "*"}
    if sid:
        st["Sid"] = sid
    return st


ROOT_ADMIN = allow(ROOT, "kms:*", sid="Enable IAM User Permissions")


class PolicyTest(h.KmsdTestCase):

    # Alice's identity policy allows nothing: only a key policy naming her
    # directly can let her in, which makes key policies observable.
    credentials = {"principals": [
        {"accessKeyId": h.DEFAULT_ACCESS_KEY, "secretAccessKey": h.DEFAULT_SECRET_KEY,
         "accountId": h.DEFAULT_ACCOUNT, "arn": ROOT},
        {"accessKeyId": ALICE_KEY, "secretAccessKey": ALICE_SECRET,
         "accountId": h.DEFAULT_ACCOUNT, "arn": ALICE_ARN,
         "policy": {"Version": "2012-10-17", "Statement": [
             {"Effect": "Deny", "Action": "kms:CreateKey", "Resource": "*"}]}},
    ]}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.alice = kms_client_for(cls.server, ALICE_KEY, ALICE_SECRET)

    def new_key(self, **kwargs):
        return self.kms.create_key(**kwargs)["KeyMetadata"]["KeyId"]

    def get_policy(self, key_id):
        out = self.kms.get_key_policy(KeyId=key_id, PolicyName="default")
        self.assertEqual(out.get("PolicyName", "default"), "default")
        return json.loads(out["Policy"])

    def raw_error(self, operation, params, code):
        status, _, body = h.kms_call(self.server, operation, params)
        self.assertEqual(status, 400, body)
        self.assertEqual(h.error_type(body), code, body)
        return h.error_message(body)

    def test_default_policy_gives_the_account_full_access(self):
        key_id = self.new_key()
        out = self.kms.get_key_policy(KeyId=key_id)
        doc = json.loads(out["Policy"])
        self.assertEqual(doc["Version"], "2012-10-17")
        statements = doc["Statement"]
        self.assertTrue(any(
            s.get("Effect") == "Allow" and s.get("Action") in ("kms:*", ["kms:*"])
            and ROOT in json.dumps(s.get("Principal")) for s in statements), doc)

    def test_get_policy_without_name(self):
        key_id = self.new_key()
        self.assertEqual(json.loads(self.kms.get_key_policy(KeyId=key_id)["Policy"]),
                         self.get_policy(key_id))

    def test_create_key_with_policy_stores_it(self):
        text = policy(ROOT_ADMIN, allow(ALICE_ARN, ["kms:DescribeKey"], sid="alice reads"))
        key_id = self.new_key(Policy=text)
        self.assertEqual(self.get_policy(key_id), json.loads(text))

    def test_put_policy_governs_access(self):
        key_id = self.new_key()
        self.assertKmsError("AccessDeniedException", self.alice.describe_key, KeyId=key_id)
        self.kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=policy(
            ROOT_ADMIN, allow(ALICE_ARN, ["kms:DescribeKey", "kms:Encrypt"])))
        self.assertEqual(self.alice.describe_key(KeyId=key_id)["KeyMetadata"]["KeyId"], key_id)
        self.alice.encrypt(KeyId=key_id, Plaintext=b"allowed now")
        self.assertKmsError("AccessDeniedException", self.alice.decrypt,
                            CiphertextBlob=self.kms.encrypt(KeyId=key_id, Plaintext=b"x")
                            ["CiphertextBlob"])
        # Without a PolicyName the policy is still "default".
        self.kms.put_key_policy(KeyId=key_id, Policy=policy(ROOT_ADMIN))
        self.assertKmsError("AccessDeniedException", self.alice.describe_key, KeyId=key_id)
        self.assertEqual(self.get_policy(key_id), json.loads(policy(ROOT_ADMIN)))

    def test_malformed_policy_keeps_the_old_one(self):
        key_id = self.new_key()
        original = self.get_policy(key_id)
        for text in ("not json", "[]", '{"Version": "2012-10-17", "Statement": "nope"}',
                     policy({"Effect": "Allow", "Principal": {"AWS": ROOT}}),
                     policy({"Effect": "Perhaps", "Principal": {"AWS": ROOT},
                             "Action": "kms:*", "Resource": "*"})):
            with self.subTest(policy=text[:40]):
                self.assertKmsError("MalformedPolicyDocumentException", self.kms.put_key_policy,
                                    KeyId=key_id, PolicyName="default", Policy=text)
        self.assertEqual(self.get_policy(key_id), original)

    def test_lockout_safety_check_and_bypass(self):
        key_id = self.new_key()
        lockout = policy(allow(ALICE_ARN, "kms:*"))
        self.assertKmsError("MalformedPolicyDocumentException", self.kms.put_key_policy,
                            KeyId=key_id, Policy=lockout)
        self.assertEqual(self.kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyId"], key_id)
        self.assertKmsError("MalformedPolicyDocumentException", self.kms.put_key_policy,
                            KeyId=key_id, Policy=lockout, BypassPolicyLockoutSafetyCheck=False)
        self.kms.put_key_policy(KeyId=key_id, Policy=lockout, BypassPolicyLockoutSafetyCheck=True)
        # The account root really is locked out now; Alice holds the key.
        self.assertKmsError("AccessDeniedException", self.kms.describe_key, KeyId=key_id)
        self.assertEqual(json.loads(self.alice.get_key_policy(KeyId=key_id)["Policy"]),
                         json.loads(lockout))

    def test_unknown_policy_name(self):
        key_id = self.new_key()
        original = self.get_policy(key_id)
        self.assertKmsError("NotFoundException", self.kms.get_key_policy, KeyId=key_id,
                            PolicyName="other")
        self.assertKmsError("NotFoundException", self.kms.put_key_policy, KeyId=key_id,
                            PolicyName="other", Policy=policy(ROOT_ADMIN))
        self.assertEqual(self.get_policy(key_id), original)
        msg = self.raw_error("GetKeyPolicy", {"KeyId": key_id, "PolicyName": "bad name"},
                             "ValidationException")
        self.assertIn("policyName", msg)

    def test_policy_validation(self):
        key_id = self.new_key()
        self.raw_error("PutKeyPolicy", {"KeyId": key_id}, "ValidationException")
        self.raw_error("PutKeyPolicy", {"KeyId": key_id, "Policy": ""}, "ValidationException")
        self.raw_error("PutKeyPolicy", {"KeyId": key_id, "Policy": "x" * 131073},
                       "ValidationException")

    def test_list_key_policies(self):
        key_id = self.new_key()
        out = self.kms.list_key_policies(KeyId=key_id)
        self.assertEqual(out["PolicyNames"], ["default"])
        self.assertIs(out["Truncated"], False)
        self.assertNotIn("NextMarker", out)
        out = self.kms.list_key_policies(KeyId=key_id, Limit=1)
        self.assertEqual(out["PolicyNames"], ["default"])

    def test_malformed_arn(self):
        arn = "arn:aws:kms:%s:%s:notakey/x" % (h.DEFAULT_REGION, h.DEFAULT_ACCOUNT)
        self.assertKmsError("InvalidArnException", self.kms.get_key_policy, KeyId=arn)
        self.assertKmsError("InvalidArnException", self.kms.put_key_policy, KeyId=arn,
                            Policy=policy(ROOT_ADMIN))
        self.assertKmsError("InvalidArnException", self.kms.list_key_policies, KeyId=arn)

    def test_policy_readable_while_pending_deletion(self):
        key_id = self.new_key()
        self.kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        self.assertEqual(self.get_policy(key_id)["Version"], "2012-10-17")
        self.assertEqual(self.kms.list_key_policies(KeyId=key_id)["PolicyNames"], ["default"])

    def test_not_found(self):
        missing = str(uuid.uuid4())
        self.assertKmsError("NotFoundException", self.kms.get_key_policy, KeyId=missing)
        self.assertKmsError("NotFoundException", self.kms.put_key_policy, KeyId=missing,
                            Policy=policy(ROOT_ADMIN))
        self.assertKmsError("NotFoundException", self.kms.list_key_policies, KeyId=missing)


def kms_client_for(server, access_key, secret):
    return h.kms_client(server, access_key=access_key, secret=secret)


if __name__ == "__main__":
    unittest.main()
