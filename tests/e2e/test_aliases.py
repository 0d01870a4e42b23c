"""test_aliases - CreateAlias, UpdateAlias, DeleteAlias and ListAliases through boto3.

Aliases are how most applications name their keys, so every reply member of
AliasListEntry is checked, and every model error (AlreadyExists, NotFound,
InvalidAliasName, KMSInvalidState, InvalidMarker, validation) is provoked
with the alias table checked afterwards.
"""

import datetime
import unittest
import uuid

import kmsd_harness as h

ALIAS_ARN_PREFIX = "arn:aws:kms:%s:%s:" % (h.DEFAULT_REGION, h.DEFAULT_ACCOUNT)


def unique_alias(prefix="app"):
    return "alias/%s-%s" % (prefix, uuid.uuid4().hex[:10])


class AliasTest(h.KmsdTestCase):

    def new_key(self):
        return self.kms.create_key()["KeyMetadata"]

    def aliases(self, **kwargs):
        out, kwargs = [], dict(kwargs)
        while True:
            page = self.kms.list_aliases(**kwargs)
            out += page["Aliases"]
            if not page["Truncated"]:
                return {a["AliasName"]: a for a in out}
            kwargs["Marker"] = page["NextMarker"]

    def raw_error(self, operation, params, code):
        status, _, body = h.kms_call(self.server, operation, params)
        self.assertEqual(status, 400, body)
        self.assertEqual(h.error_type(body), code, body)
        return h.error_message(body)

    def test_create_alias_and_list_entry_shape(self):
        key = self.new_key()
        name = unique_alias()
        before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
        self.kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
        entry = self.aliases()[name]
        self.assertEqual(entry["AliasArn"], ALIAS_ARN_PREFIX + name)
        self.assertEqual(entry["TargetKeyId"], key["KeyId"])
        self.assertGreaterEqual(entry["CreationDate"], before)
        self.assertGreaterEqual(entry["LastUpdatedDate"], entry["CreationDate"])
        # The alias works as a key reference at once.
        self.assertEqual(self.kms.describe_key(KeyId=name)["KeyMetadata"]["KeyId"], key["KeyId"])

    def test_create_alias_target_by_arn(self):
        key = self.new_key()
        name = unique_alias()
        self.kms.create_alias(AliasName=name, TargetKeyId=key["Arn"])
        self.assertEqual(self.aliases()[name]["TargetKeyId"], key["KeyId"])

    def test_several_aliases_for_one_key(self):
        key = self.new_key()
        names = {unique_alias("multi") for _ in range(3)}
        for name in names:
            self.kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
        listed = self.aliases(KeyId=key["KeyId"])
        self.assertEqual(set(listed), names)
        for entry in listed.values():
            self.assertEqual(entry["TargetKeyId"], key["KeyId"])

    def test_create_alias_already_exists(self):
        key, other = self.new_key(), self.new_key()
        name = unique_alias()
        self.kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
        self.assertKmsError("AlreadyExistsException", self.kms.create_alias, AliasName=name,
                            TargetKeyId=other["KeyId"])
        self.assertEqual(self.aliases()[name]["TargetKeyId"], key["KeyId"])

    def test_create_alias_invalid_names(self):
        key = self.new_key()
        before = set(self.aliases())
        for name in ("no-prefix", "alias/", "alias/aws/reserved", "alias:colon"):
            with self.subTest(name=name):
                self.assertKmsError("InvalidAliasNameException", self.kms.create_alias,
                                    AliasName=name, TargetKeyId=key["KeyId"])
        # Characters outside the model's pattern never reach the domain.
        msg = self.raw_error("CreateAlias", {"AliasName": "alias/has space",
                                             "TargetKeyId": key["KeyId"]}, "ValidationException")
        self.assertIn("aliasName", msg)
        self.raw_error("CreateAlias", {"AliasName": "alias/" + "a" * 251,
                                       "TargetKeyId": key["KeyId"]}, "ValidationException")
        self.assertEqual(set(self.aliases()), before)

    def test_create_alias_target_not_found(self):
        name = unique_alias()
        self.assertKmsError("NotFoundException", self.kms.create_alias, AliasName=name,
                            TargetKeyId=str(uuid.uuid4()))
        self.assertNotIn(name, self.aliases())

    def test_create_alias_target_pending_deletion(self):
        key = self.new_key()
        self.kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
        name = unique_alias()
        self.assertKmsError("KMSInvalidStateException", self.kms.create_alias, AliasName=name,
                            TargetKeyId=key["KeyId"])
        self.assertNotIn(name, self.aliases())

    def test_update_alias(self):
        first, second = self.new_key(), self.new_key()
        name = unique_alias()
        self.kms.create_alias(AliasName=name, TargetKeyId=first["KeyId"])
        created = self.aliases()[name]
        self.kms.update_alias(AliasName=name, TargetKeyId=second["KeyId"])
        entry = self.aliases()[name]
        self.assertEqual(entry["TargetKeyId"], second["KeyId"])
        self.assertEqual(entry["CreationDate"], created["CreationDate"])
        self.assertGreaterEqual(entry["LastUpdatedDate"], created["LastUpdatedDate"])
        out = self.kms.encrypt(KeyId=name, Plaintext=b"via alias")
        self.assertEqual(out["KeyId"], second["Arn"])
        self.assertEqual(set(self.aliases(KeyId=first["KeyId"])), set())

    def test_update_alias_errors(self):
        key = self.new_key()
        self.assertKmsError("NotFoundException", self.kms.update_alias,
                            AliasName=unique_alias(), TargetKeyId=key["KeyId"])
        name = unique_alias()
        self.kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
        self.assertKmsError("NotFoundException", self.kms.update_alias, AliasName=name,
                            TargetKeyId=str(uuid.uuid4()))
        doomed = self.new_key()
        self.kms.schedule_key_deletion(KeyId=doomed["KeyId"], PendingWindowInDays=7)
        self.assertKmsError("KMSInvalidStateException", self.kms.update_alias, AliasName=name,
                            TargetKeyId=doomed["KeyId"])
        self.assertEqual(self.aliases()[name]["TargetKeyId"], key["KeyId"])

    def test_delete_alias(self):
        key = self.new_key()
        name = unique_alias()
        self.kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
        self.kms.delete_alias(AliasName=name)
        self.assertNotIn(name, self.aliases())
        self.assertKmsError("NotFoundException", self.kms.describe_key, KeyId=name)
        self.assertKmsError("NotFoundException", self.kms.delete_alias, AliasName=name)
        # The key itself is untouched, and the name can be used again.
        self.assertEqual(self.kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"],
                         "Enabled")
        self.kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
        self.assertIn(name, self.aliases())

    def test_delete_alias_errors(self):
        self.assertKmsError("NotFoundException", self.kms.delete_alias, AliasName=unique_alias())
        msg = self.raw_error("DeleteAlias", {}, "ValidationException")
        self.assertIn("aliasName", msg)

    def test_list_aliases_pagination(self):
        key = self.new_key()
        names = {unique_alias("page") for _ in range(4)}
        for name in names:
            self.kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
        seen, kwargs = [], {"Limit": 1}
        while True:
            page = self.kms.list_aliases(**kwargs)
            self.assertLessEqual(len(page["Aliases"]), 1)
            seen += [a["AliasName"] for a in page["Aliases"]]
            if not page["Truncated"]:
                self.assertNotIn("NextMarker", page)
                break
            kwargs["Marker"] = page["NextMarker"]
        self.assertEqual(len(seen), len(set(seen)))
        self.assertTrue(names <= set(seen))
        filtered, kwargs = [], {"KeyId": key["KeyId"], "Limit": 2}
        while True:
            page = self.kms.list_aliases(**kwargs)
            filtered += [a["AliasName"] for a in page["Aliases"]]
            if not page["Truncated"]:
                break
            kwargs["Marker"] = page["NextMarker"]
        self.assertEqual(sorted(filtered), sorted(names))

    def test_list_aliases_errors(self):
        self.assertKmsError("InvalidMarkerException", self.kms.list_aliases, Marker="bogus")
        self.assertKmsError("NotFoundException", self.kms.list_aliases, KeyId=str(uuid.uuid4()))
        self.raw_error("ListAliases", {"Limit": 0}, "ValidationException")
        self.raw_error("ListAliases", {"Limit": 1001}, "ValidationException")

    def test_list_aliases_malformed_key_arn(self):
        self.assertKmsError("InvalidArnException", self.kms.list_aliases,
                            KeyId="arn:aws:kms:us-east-1:%s:notakey/x" % h.DEFAULT_ACCOUNT)


if __name__ == "__main__":
    unittest.main()
