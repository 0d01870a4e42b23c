"""test_keys - the KMS key lifecycle through boto3, as an AWS KMS user sees it.

CreateKey, DescribeKey, ListKeys, EnableKey, DisableKey, UpdateKeyDescription,
ScheduleKeyDeletion and CancelKeyDeletion: reply shapes exactly as the model
defines them, every error the model lists that a symmetric AWS_KMS key can
provoke, and the key's state after each call (errors must change nothing).
A separate class moves the server's clock to watch a 7-day deletion happen.
"""

import base64
import datetime
import re
import time
import unittest
import uuid

import kmsd_harness as h

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
KEY_ARN_PREFIX = "arn:aws:kms:%s:%s:key/" % (h.DEFAULT_REGION, h.DEFAULT_ACCOUNT)
DAY = 86400
BAD_ARNS = ("arn:aws:kms:us-east-1:%s:notakey/abc" % h.DEFAULT_ACCOUNT, "arn:aws:foo",
            "arn:aws:kms:us-east-1:%s:key/" % h.DEFAULT_ACCOUNT)


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


class KeyLifecycleTest(h.KmsdTestCase):

    def create(self, **kwargs):
        return self.kms.create_key(**kwargs)["KeyMetadata"]

    def describe(self, key_id):
        return self.kms.describe_key(KeyId=key_id)["KeyMetadata"]

    def all_key_ids(self):
        ids, kwargs = [], {}
        while True:
            page = self.kms.list_keys(**kwargs)
            ids += [k["KeyId"] for k in page["Keys"]]
            if not page.get("Truncated"):
                return ids
            kwargs["Marker"] = page["NextMarker"]

    def raw_error(self, operation, params, code):
        """Send an unvalidated request (boto3 would refuse it client-side)."""
        status, headers, body = h.kms_call(self.server, operation, params)
        self.assertEqual(status, 400, body)
        self.assertEqual(h.error_type(body), code, body)
        self.assertRequestId(headers)
        return h.error_message(body)

    # -- CreateKey ------------------------------------------------------

    def test_create_default_key_metadata_matches_model(self):
        before = now_utc() - datetime.timedelta(seconds=5)
        md = self.create()
        after = now_utc() + datetime.timedelta(seconds=5)
        self.assertRegex(md["KeyId"], UUID_RE)
        self.assertEqual(md["AWSAccountId"], h.DEFAULT_ACCOUNT)
        self.assertEqual(md["Arn"], KEY_ARN_PREFIX + md["KeyId"])
        self.assertTrue(before <= md["CreationDate"] <= after, md["CreationDate"])
        self.assertIs(md["Enabled"], True)
        self.assertEqual(md["Description"], "")
        self.assertEqual(md["KeyUsage"], "ENCRYPT_DECRYPT")
        self.assertEqual(md["KeyState"], "Enabled")
        self.assertEqual(md["Origin"], "AWS_KMS")
        self.assertEqual(md["KeyManager"], "CUSTOMER")
        self.assertEqual(md["KeySpec"], "SYMMETRIC_DEFAULT")
        self.assertEqual(md["CustomerMasterKeySpec"], "SYMMETRIC_DEFAULT")
        self.assertEqual(md["EncryptionAlgorithms"], ["SYMMETRIC_DEFAULT"])
        self.assertIs(md["MultiRegion"], False)
        for absent in ("DeletionDate", "PendingDeletionWindowInDays", "CustomKeyStoreId",
                       "ValidTo", "SigningAlgorithms", "MacAlgorithms"):
            self.assertNotIn(absent, md)
        if "CurrentKeyMaterialId" in md:
            self.assertRegex(md["CurrentKeyMaterialId"], r"^[a-f0-9]{64}$")
        # The key is really there: DescribeKey agrees field by field.
        self.assertEqual(self.describe(md["KeyId"]), md)

    def test_create_with_description_and_tags(self):
        md = self.create(Description="payroll key", Tags=[
            {"TagKey": "team", "TagValue": "payroll"}, {"TagKey": "empty", "TagValue": ""}])
        self.assertEqual(md["Description"], "payroll key")
        tags = self.kms.list_resource_tags(KeyId=md["KeyId"])["Tags"]
        self.assertEqual(sorted((t["TagKey"], t["TagValue"]) for t in tags),
                         [("empty", ""), ("team", "payroll")])

    def test_create_explicit_symmetric_defaults(self):
        md = self.create(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT",
                         Origin="AWS_KMS", MultiRegion=False)
        self.assertEqual(md["KeySpec"], "SYMMETRIC_DEFAULT")
        md2 = self.create(CustomerMasterKeySpec="SYMMETRIC_DEFAULT")
        self.assertEqual(md2["CustomerMasterKeySpec"], "SYMMETRIC_DEFAULT")

    def test_create_unsupported_specs_create_nothing(self):
        before = set(self.all_key_ids())
        for kwargs in ({"KeySpec": "RSA_2048", "KeyUsage": "ENCRYPT_DECRYPT"},
                       {"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"},
                       {"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"},
                       {"CustomerMasterKeySpec": "RSA_4096"},
                       {"KeyUsage": "SIGN_VERIFY"},
                       {"MultiRegion": True}):
            with self.subTest(**kwargs):
                self.assertKmsError("UnsupportedOperationException", self.kms.create_key, **kwargs)
        self.assertEqual(set(self.all_key_ids()), before)

    def test_create_both_key_spec_members_is_validation_error(self):
        before = set(self.all_key_ids())
        self.assertKmsError("ValidationException", self.kms.create_key,
                            KeySpec="SYMMETRIC_DEFAULT", CustomerMasterKeySpec="SYMMETRIC_DEFAULT")
        self.assertEqual(set(self.all_key_ids()), before)

    def test_create_malformed_policy(self):
        before = set(self.all_key_ids())
        for policy in ("not json at all", '{"Version": "2012-10-17"}',
                       '{"Version": "2012-10-17", "Statement": [{"Effect": "Maybe"}]}'):
            with self.subTest(policy=policy):
                self.assertKmsError("MalformedPolicyDocumentException", self.kms.create_key,
                                    Policy=policy)
        self.assertEqual(set(self.all_key_ids()), before)

    def test_create_with_reserved_tag_prefix_is_tag_exception(self):
        before = set(self.all_key_ids())
        self.assertKmsError("TagException", self.kms.create_key,
                            Tags=[{"TagKey": "aws:owner", "TagValue": "x"}])
        self.assertEqual(set(self.all_key_ids()), before)

    def test_create_validation_messages_name_the_member(self):
        msg = self.raw_error("CreateKey", {"Description": "d" * 8193}, "ValidationException")
        self.assertIn("description", msg)
        msg = self.raw_error("CreateKey", {"KeySpec": "AES_512"}, "ValidationException")
        self.assertIn("keySpec", msg)

    # -- DescribeKey ----------------------------------------------------

    def test_describe_by_every_kind_of_reference(self):
        md = self.create()
        alias = "alias/describe-%s" % uuid.uuid4().hex[:8]
        self.kms.create_alias(AliasName=alias, TargetKeyId=md["KeyId"])
        alias_arn = "arn:aws:kms:%s:%s:%s" % (h.DEFAULT_REGION, h.DEFAULT_ACCOUNT, alias)
        for ref in (md["KeyId"], md["Arn"], alias, alias_arn):
            with self.subTest(ref=ref):
                self.assertEqual(self.describe(ref)["KeyId"], md["KeyId"])

    def test_describe_not_found(self):
        self.assertKmsError("NotFoundException", self.kms.describe_key, KeyId=str(uuid.uuid4()))
        self.assertKmsError("NotFoundException", self.kms.describe_key,
                            KeyId=KEY_ARN_PREFIX + str(uuid.uuid4()))
        self.assertKmsError("NotFoundException", self.kms.describe_key, KeyId="alias/no-such-alias")

    def test_malformed_arn_is_invalid_arn(self):
        for arn in BAD_ARNS:
            for op, extra in (("describe_key", {}), ("enable_key", {}), ("disable_key", {}),
                              ("update_key_description", {"Description": "x"}),
                              ("schedule_key_deletion", {"PendingWindowInDays": 7}),
                              ("cancel_key_deletion", {})):
                with self.subTest(op=op, arn=arn):
                    self.assertKmsError("InvalidArnException", getattr(self.kms, op), KeyId=arn,
                                        **extra)

    def test_describe_missing_key_id_is_validation_error(self):
        msg = self.raw_error("DescribeKey", {}, "ValidationException")
        self.assertIn("keyId", msg)

    # -- ListKeys -------------------------------------------------------

    def test_list_keys_contains_created_keys_with_arns(self):
        created = [self.create()["KeyId"] for _ in range(3)]
        page = self.kms.list_keys()
        self.assertIn("Truncated", page)
        entries = {k["KeyId"]: k["KeyArn"] for k in page["Keys"]}
        for key_id in created:
            self.assertEqual(entries.get(key_id), KEY_ARN_PREFIX + key_id)

    def test_list_keys_pagination_visits_every_key_once(self):
        created = {self.create()["KeyId"] for _ in range(3)}
        seen, kwargs, pages = [], {"Limit": 1}, 0
        while True:
            page = self.kms.list_keys(**kwargs)
            pages += 1
            self.assertLessEqual(len(page["Keys"]), 1)
            seen += [k["KeyId"] for k in page["Keys"]]
            if not page["Truncated"]:
                self.assertNotIn("NextMarker", page)
                break
            self.assertTrue(page["NextMarker"])
            kwargs["Marker"] = page["NextMarker"]
            self.assertLess(pages, 1000)
        self.assertEqual(len(seen), len(set(seen)), "a key was listed twice")
        self.assertTrue(created <= set(seen))
        self.assertEqual(set(seen), set(self.all_key_ids()))

    def test_list_keys_invalid_marker(self):
        self.assertKmsError("InvalidMarkerException", self.kms.list_keys, Marker="not-a-marker")

    def test_list_keys_limit_out_of_range(self):
        msg = self.raw_error("ListKeys", {"Limit": 0}, "ValidationException")
        self.assertIn("limit", msg)
        self.raw_error("ListKeys", {"Limit": 1001}, "ValidationException")

    # -- EnableKey / DisableKey -----------------------------------------

    def test_disable_then_enable(self):
        key_id = self.create()["KeyId"]
        self.assertEqual(self.kms.disable_key(KeyId=key_id)["ResponseMetadata"]["HTTPStatusCode"],
                         200)
        md = self.describe(key_id)
        self.assertEqual(md["KeyState"], "Disabled")
        self.assertIs(md["Enabled"], False)
        self.assertKmsError("DisabledException", self.kms.encrypt, KeyId=key_id, Plaintext=b"x")
        # Disabling twice is allowed and keeps the state.
        self.kms.disable_key(KeyId=key_id)
        self.assertEqual(self.describe(key_id)["KeyState"], "Disabled")
        self.kms.enable_key(KeyId=key_id)
        md = self.describe(key_id)
        self.assertEqual(md["KeyState"], "Enabled")
        self.assertIs(md["Enabled"], True)
        self.kms.encrypt(KeyId=key_id, Plaintext=b"x")

    def test_enable_disable_by_arn_but_not_by_alias(self):
        # The model: "Specify the key ID or key ARN" - aliases are refused here.
        md = self.create()
        alias = "alias/toggle-%s" % uuid.uuid4().hex[:8]
        self.kms.create_alias(AliasName=alias, TargetKeyId=md["KeyId"])
        self.kms.disable_key(KeyId=md["Arn"])
        self.assertEqual(self.describe(md["KeyId"])["KeyState"], "Disabled")
        self.assertKmsError("NotFoundException", self.kms.enable_key, KeyId=alias)
        self.assertEqual(self.describe(md["KeyId"])["KeyState"], "Disabled")
        self.kms.enable_key(KeyId=md["Arn"])
        self.assertEqual(self.describe(md["KeyId"])["KeyState"], "Enabled")

    def test_enable_disable_not_found(self):
        self.assertKmsError("NotFoundException", self.kms.enable_key, KeyId=str(uuid.uuid4()))
        self.assertKmsError("NotFoundException", self.kms.disable_key, KeyId=str(uuid.uuid4()))

    def test_enable_disable_pending_deletion_is_invalid_state(self):
        key_id = self.create()["KeyId"]
        self.kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        self.assertKmsError("KMSInvalidStateException", self.kms.enable_key, KeyId=key_id)
        self.assertKmsError("KMSInvalidStateException", self.kms.disable_key, KeyId=key_id)
        self.assertEqual(self.describe(key_id)["KeyState"], "PendingDeletion")

    # -- UpdateKeyDescription -------------------------------------------

    def test_update_description(self):
        key_id = self.create(Description="old")["KeyId"]
        self.kms.update_key_description(KeyId=key_id, Description="new words")
        self.assertEqual(self.describe(key_id)["Description"], "new words")
        self.kms.update_key_description(KeyId=key_id, Description="")
        self.assertEqual(self.describe(key_id)["Description"], "")
        long_text = "x" * 8192
        self.kms.update_key_description(KeyId=key_id, Description=long_text)
        self.assertEqual(self.describe(key_id)["Description"], long_text)

    def test_update_description_errors(self):
        self.assertKmsError("NotFoundException", self.kms.update_key_description,
                            KeyId=str(uuid.uuid4()), Description="x")
        key_id = self.create(Description="kept")["KeyId"]
        self.raw_error("UpdateKeyDescription", {"KeyId": key_id, "Description": "x" * 8193},
                       "ValidationException")
        msg = self.raw_error("UpdateKeyDescription", {"KeyId": key_id}, "ValidationException")
        self.assertIn("description", msg)
        self.kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        self.assertKmsError("KMSInvalidStateException", self.kms.update_key_description,
                            KeyId=key_id, Description="changed")
        self.assertEqual(self.describe(key_id)["Description"], "kept")

    # -- ScheduleKeyDeletion / CancelKeyDeletion ------------------------

    def test_schedule_deletion_reply_and_state(self):
        md = self.create()
        start = now_utc()
        out = self.kms.schedule_key_deletion(KeyId=md["KeyId"], PendingWindowInDays=7)
        self.assertEqual(out["KeyId"], md["Arn"])
        self.assertEqual(out["KeyState"], "PendingDeletion")
        self.assertEqual(out["PendingWindowInDays"], 7)
        expected = start + datetime.timedelta(days=7)
        self.assertLess(abs((out["DeletionDate"] - expected).total_seconds()), 120)
        described = self.describe(md["KeyId"])
        self.assertEqual(described["KeyState"], "PendingDeletion")
        self.assertIs(described["Enabled"], False)
        self.assertEqual(described["DeletionDate"], out["DeletionDate"])
        self.assertEqual(described["PendingDeletionWindowInDays"], 7)
        self.assertKmsError("KMSInvalidStateException", self.kms.encrypt, KeyId=md["KeyId"],
                            Plaintext=b"x")

    def test_schedule_deletion_default_window_is_30_days(self):
        key_id = self.create()["KeyId"]
        start = now_utc()
        out = self.kms.schedule_key_deletion(KeyId=key_id)
        self.assertEqual(out["PendingWindowInDays"], 30)
        expected = start + datetime.timedelta(days=30)
        self.assertLess(abs((out["DeletionDate"] - expected).total_seconds()), 120)

    def test_schedule_deletion_window_outside_7_to_30(self):
        key_id = self.create()["KeyId"]
        for days in (1, 6, 31, 365):
            with self.subTest(days=days):
                self.assertKmsError("ValidationException", self.kms.schedule_key_deletion,
                                    KeyId=key_id, PendingWindowInDays=days)
        self.assertEqual(self.describe(key_id)["KeyState"], "Enabled")
        self.raw_error("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": 366},
                       "ValidationException")
        self.assertEqual(self.describe(key_id)["KeyState"], "Enabled")

    def test_schedule_deletion_errors(self):
        self.assertKmsError("NotFoundException", self.kms.schedule_key_deletion,
                            KeyId=str(uuid.uuid4()), PendingWindowInDays=7)
        key_id = self.create()["KeyId"]
        first = self.kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        self.assertKmsError("KMSInvalidStateException", self.kms.schedule_key_deletion,
                            KeyId=key_id, PendingWindowInDays=30)
        # The failed second call must not move the deletion date.
        self.assertEqual(self.describe(key_id)["DeletionDate"], first["DeletionDate"])

    def test_schedule_deletion_of_disabled_key(self):
        key_id = self.create()["KeyId"]
        self.kms.disable_key(KeyId=key_id)
        out = self.kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=10)
        self.assertEqual(out["KeyState"], "PendingDeletion")

    def test_cancel_deletion_leaves_key_disabled(self):
        md = self.create()
        self.kms.schedule_key_deletion(KeyId=md["KeyId"], PendingWindowInDays=7)
        out = self.kms.cancel_key_deletion(KeyId=md["KeyId"])
        self.assertEqual(out["KeyId"], md["Arn"])
        described = self.describe(md["KeyId"])
        self.assertEqual(described["KeyState"], "Disabled")
        self.assertNotIn("DeletionDate", described)
        self.assertNotIn("PendingDeletionWindowInDays", described)
        self.kms.enable_key(KeyId=md["KeyId"])
        self.kms.encrypt(KeyId=md["KeyId"], Plaintext=b"usable again")

    def test_cancel_deletion_errors(self):
        self.assertKmsError("NotFoundException", self.kms.cancel_key_deletion,
                            KeyId=str(uuid.uuid4()))
        key_id = self.create()["KeyId"]
        self.assertKmsError("KMSInvalidStateException", self.kms.cancel_key_deletion,
                            KeyId=key_id)
        self.assertEqual(self.describe(key_id)["KeyState"], "Enabled")

    def test_wire_format_is_json_1_1(self):
        # What botocore hides: numbers for timestamps, base64 for blobs, no nulls.
        status, headers, body = h.kms_call(self.server, "CreateKey", {"Description": "wire"})
        self.assertEqual(status, 200, body)
        self.assertEqual(headers.get("Content-Type"), h.JSON_CONTENT_TYPE)
        md = body["KeyMetadata"]
        self.assertIsInstance(md["CreationDate"], (int, float))
        self.assertLess(abs(md["CreationDate"] - time.time()), 300)
        self.assertNotIn(None, md.values())
        status, _, body = h.kms_call(self.server, "ScheduleKeyDeletion",
                                     {"KeyId": md["KeyId"], "PendingWindowInDays": 7})
        self.assertEqual(status, 200, body)
        self.assertIsInstance(body["DeletionDate"], (int, float))
        self.assertLess(abs(body["DeletionDate"] - (time.time() + 7 * DAY)), 300)
        key = self.create()["KeyId"]
        status, _, body = h.kms_call(self.server, "Encrypt",
                                     {"KeyId": key, "Plaintext": "aGVsbG8="})
        self.assertEqual(status, 200, body)
        blob = base64.b64decode(body["CiphertextBlob"], validate=True)
        status, _, body = h.kms_call(self.server, "Decrypt", {
            "CiphertextBlob": base64.b64encode(blob).decode()})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["Plaintext"], "aGVsbG8=")
        status, _, body = h.kms_call(self.server, "ListKeys", {})
        self.assertEqual(status, 200, body)
        self.assertIs(body["Truncated"], False)
        self.assertNotIn("NextMarker", body)

    def test_unserved_operation_is_unsupported(self):
        # Operations of the model that kmsd does not serve get a clear error.
        status, _, body = h.kms_call(self.server, "CreateGrant",
                                     {"KeyId": str(uuid.uuid4()),
                                      "GranteePrincipal": h.DEFAULT_ROOT_ARN,
                                      "Operations": ["Encrypt"]})
        self.assertEqual(status, 400, body)
        self.assertEqual(h.error_type(body), "UnsupportedOperationException", body)


class KeyDeletionClockTest(h.KmsdTestCase):
    """A scheduled deletion happens when the server's clock passes the date."""

    def wait_deleted(self, key_id, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.kms.describe_key(KeyId=key_id)
            except self.kms.exceptions.NotFoundException:
                return
            time.sleep(0.2)
        self.fail("key %s still exists %ds after its deletion date" % (key_id, timeout))

    def test_key_deleted_after_seven_days(self):
        victim = self.kms.create_key(Description="victim")["KeyMetadata"]
        survivor = self.kms.create_key(Description="survivor")["KeyMetadata"]
        alias = "alias/victim-%s" % uuid.uuid4().hex[:8]
        self.kms.create_alias(AliasName=alias, TargetKeyId=victim["KeyId"])
        ciphertext = self.kms.encrypt(KeyId=survivor["KeyId"], Plaintext=b"kept")["CiphertextBlob"]
        self.kms.schedule_key_deletion(KeyId=victim["KeyId"], PendingWindowInDays=7)

        # Six days later it is still pending and can still be cancelled.
        h.advance_clock(self.server, 6 * DAY)
        time.sleep(1.5)
        md = self.kms.describe_key(KeyId=victim["KeyId"])["KeyMetadata"]
        self.assertEqual(md["KeyState"], "PendingDeletion")

        # One more day and a minute: gone, with its alias; other keys untouched.
        h.advance_clock(self.server, DAY + 60)
        self.wait_deleted(victim["KeyId"])
        self.assertKmsError("NotFoundException", self.kms.describe_key, KeyId=victim["Arn"])
        self.assertKmsError("NotFoundException", self.kms.encrypt, KeyId=victim["KeyId"],
                            Plaintext=b"x")
        self.assertKmsError("NotFoundException", self.kms.cancel_key_deletion,
                            KeyId=victim["KeyId"])
        ids = [k["KeyId"] for k in self.kms.list_keys(Limit=1000)["Keys"]]
        self.assertNotIn(victim["KeyId"], ids)
        self.assertIn(survivor["KeyId"], ids)
        aliases = [a["AliasName"] for a in self.kms.list_aliases(Limit=1000)["Aliases"]]
        self.assertNotIn(alias, aliases)
        plain = self.kms.decrypt(CiphertextBlob=ciphertext)["Plaintext"]
        self.assertEqual(plain, b"kept")

    def test_cancelled_deletion_survives_the_date(self):
        md = self.kms.create_key()["KeyMetadata"]
        self.kms.schedule_key_deletion(KeyId=md["KeyId"], PendingWindowInDays=7)
        self.kms.cancel_key_deletion(KeyId=md["KeyId"])
        h.advance_clock(self.server, 8 * DAY)
        time.sleep(2)
        self.assertEqual(self.kms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]["KeyState"],
                         "Disabled")


if __name__ == "__main__":
    unittest.main()
