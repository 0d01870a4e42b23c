"""test_tags - TagResource, UntagResource and ListResourceTags through boto3.

Tags drive cost reports and ABAC policies, so overwrite and removal rules,
the reserved "aws:" prefix, the 50-tag quota and the key states that refuse
tagging are all checked, and the tag set is re-read after every failure.
"""

import unittest
import uuid

import kmsd_harness as h


class TagTest(h.KmsdTestCase):

    def new_key(self, **kwargs):
        return self.kms.create_key(**kwargs)["KeyMetadata"]["KeyId"]

    def tags(self, key_id):
        out, kwargs = [], {"KeyId": key_id}
        while True:
            page = self.kms.list_resource_tags(**kwargs)
            out += page["Tags"]
            if not page["Truncated"]:
                return {t["TagKey"]: t["TagValue"] for t in out}
            kwargs["Marker"] = page["NextMarker"]

    def raw_error(self, operation, params, code):
        status, _, body = h.kms_call(self.server, operation, params)
        self.assertEqual(status, 400, body)
        self.assertEqual(h.error_type(body), code, body)
        return h.error_message(body)

    def test_new_key_has_no_tags(self):
        page = self.kms.list_resource_tags(KeyId=self.new_key())
        self.assertEqual(page["Tags"], [])
        self.assertIs(page["Truncated"], False)
        self.assertNotIn("NextMarker", page)

    def test_tag_overwrite_and_untag(self):
        key_id = self.new_key()
        self.kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "env", "TagValue": "dev"},
                                                  {"TagKey": "owner", "TagValue": "alice"}])
        self.assertEqual(self.tags(key_id), {"env": "dev", "owner": "alice"})
        self.kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "env", "TagValue": "prod"},
                                                  {"TagKey": "blank", "TagValue": ""}])
        self.assertEqual(self.tags(key_id), {"env": "prod", "owner": "alice", "blank": ""})
        self.kms.untag_resource(KeyId=key_id, TagKeys=["owner", "not-there"])
        self.assertEqual(self.tags(key_id), {"env": "prod", "blank": ""})
        self.kms.untag_resource(KeyId=key_id, TagKeys=["env", "blank"])
        self.assertEqual(self.tags(key_id), {})

    def test_tags_are_per_key_and_by_id_or_arn(self):
        a, b = self.new_key(), self.new_key()
        arn = self.kms.describe_key(KeyId=a)["KeyMetadata"]["Arn"]
        alias = "alias/tags-%s" % uuid.uuid4().hex[:8]
        self.kms.create_alias(AliasName=alias, TargetKeyId=a)
        self.kms.tag_resource(KeyId=arn, Tags=[{"TagKey": "by", "TagValue": "arn"}])
        self.kms.tag_resource(KeyId=a, Tags=[{"TagKey": "also", "TagValue": "id"}])
        # The model takes a key ID or key ARN only: an alias names no taggable key.
        self.assertKmsError("NotFoundException", self.kms.tag_resource, KeyId=alias,
                            Tags=[{"TagKey": "via", "TagValue": "alias"}])
        self.assertEqual(self.tags(arn), {"by": "arn", "also": "id"})
        self.assertEqual(self.tags(b), {})

    def test_list_sorted_and_paginated(self):
        key_id = self.new_key()
        wanted = {"k%02d" % i: "v%d" % i for i in range(7)}
        self.kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": k, "TagValue": v}
                                                  for k, v in reversed(list(wanted.items()))])
        page = self.kms.list_resource_tags(KeyId=key_id)
        self.assertEqual([t["TagKey"] for t in page["Tags"]], sorted(wanted))
        seen, kwargs = [], {"KeyId": key_id, "Limit": 3}
        while True:
            page = self.kms.list_resource_tags(**kwargs)
            self.assertLessEqual(len(page["Tags"]), 3)
            seen += [t["TagKey"] for t in page["Tags"]]
            if not page["Truncated"]:
                break
            self.assertTrue(page["NextMarker"])
            kwargs["Marker"] = page["NextMarker"]
        self.assertEqual(seen, sorted(wanted))

    def test_reserved_prefix_is_tag_exception(self):
        key_id = self.new_key()
        self.kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "keep", "TagValue": "1"}])
        self.assertKmsError("TagException", self.kms.tag_resource, KeyId=key_id,
                            Tags=[{"TagKey": "aws:createdBy", "TagValue": "me"},
                                  {"TagKey": "other", "TagValue": "x"}])
        # All or nothing: the valid tag of the failed call was not applied.
        self.assertEqual(self.tags(key_id), {"keep": "1"})

    def test_more_than_fifty_tags_is_limit_or_tag_exception(self):
        key_id = self.new_key()
        self.kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "t%02d" % i, "TagValue": "x"}
                                                  for i in range(50)])
        self.assertEqual(len(self.tags(key_id)), 50)
        # Overwriting an existing key stays within the quota.
        self.kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "t00", "TagValue": "y"}])
        try:
            self.kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "t50", "TagValue": "x"}])
        except self.kms.exceptions.ClientError as e:
            self.assertIn(e.response["Error"]["Code"], ("TagException", "LimitExceededException"))
        else:
            self.fail("a 51st tag was accepted")
        tags = self.tags(key_id)
        self.assertEqual(len(tags), 50)
        self.assertEqual(tags["t00"], "y")

    def test_tag_lengths_validated(self):
        key_id = self.new_key()
        msg = self.raw_error("TagResource", {"KeyId": key_id, "Tags": [
            {"TagKey": "k" * 129, "TagValue": "v"}]}, "ValidationException")
        self.assertIn("tagKey", msg)
        self.raw_error("TagResource", {"KeyId": key_id, "Tags": [
            {"TagKey": "k", "TagValue": "v" * 257}]}, "ValidationException")
        self.raw_error("TagResource", {"KeyId": key_id, "Tags": [{"TagKey": "k"}]},
                       "ValidationException")
        self.raw_error("TagResource", {"KeyId": key_id}, "ValidationException")
        self.raw_error("UntagResource", {"KeyId": key_id}, "ValidationException")
        self.kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "k" * 128, "TagValue": "v" * 256}])
        self.assertEqual(self.tags(key_id), {"k" * 128: "v" * 256})

    def test_not_found(self):
        missing = str(uuid.uuid4())
        self.assertKmsError("NotFoundException", self.kms.tag_resource, KeyId=missing,
                            Tags=[{"TagKey": "a", "TagValue": "b"}])
        self.assertKmsError("NotFoundException", self.kms.untag_resource, KeyId=missing,
                            TagKeys=["a"])
        self.assertKmsError("NotFoundException", self.kms.list_resource_tags, KeyId=missing)

    def test_malformed_arn(self):
        arn = "arn:aws:kms:%s:%s:key/" % (h.DEFAULT_REGION, h.DEFAULT_ACCOUNT)
        self.assertKmsError("InvalidArnException", self.kms.tag_resource, KeyId=arn,
                            Tags=[{"TagKey": "a", "TagValue": "b"}])
        self.assertKmsError("InvalidArnException", self.kms.untag_resource, KeyId=arn,
                            TagKeys=["a"])
        self.assertKmsError("InvalidArnException", self.kms.list_resource_tags, KeyId=arn)

    def test_invalid_marker(self):
        self.assertKmsError("InvalidMarkerException", self.kms.list_resource_tags,
                            KeyId=self.new_key(), Marker="garbage-marker")

    def test_disabled_key_can_be_tagged(self):
        key_id = self.new_key()
        self.kms.disable_key(KeyId=key_id)
        self.kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "state", "TagValue": "off"}])
        self.assertEqual(self.tags(key_id), {"state": "off"})

    def test_pending_deletion_key_cannot_be_tagged(self):
        key_id = self.new_key(Tags=[{"TagKey": "before", "TagValue": "1"}])
        self.kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        self.assertKmsError("KMSInvalidStateException", self.kms.tag_resource, KeyId=key_id,
                            Tags=[{"TagKey": "after", "TagValue": "2"}])
        self.assertKmsError("KMSInvalidStateException", self.kms.untag_resource, KeyId=key_id,
                            TagKeys=["before"])
        # Listing still works and shows the tags unchanged.
        self.assertEqual(self.tags(key_id), {"before": "1"})


if __name__ == "__main__":
    unittest.main()
