"""test_check_order - which error a request gets when several apply, and
request values at the edge of the JSON grammar.

AWS looks a key up and authorizes the caller before it judges what the request
asks of that key, so an unknown key is NotFoundException and a key the caller
may not use is AccessDeniedException whatever EncryptionAlgorithm says.  A
JSON number with a zero fraction is the integer it denotes (botocore never
sends one, other clients may); a \\u0000 escape is valid JSON, and the
member's validation then decides (docs/kmsd.md, "Order of checks" and "JSON
request values").
"""

import json
import os
import unittest
import uuid

import kmsd_harness as h

CREDENTIALS = h.two_roots_credentials()

RSA = "RSAES_OAEP_SHA_256"


def blob_naming(key_id, like):
    """A well-formed kmsd blob that names `key_id` (lib/crypto/blob.h), the
    rest taken from blob `like`."""
    return like[:1] + uuid.UUID(key_id).bytes + like[17:]


class CheckOrderTest(h.KmsdTestCase):
    """Encrypt, Decrypt and ReEncrypt with an algorithm no kmsd key supports."""

    credentials = CREDENTIALS

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.key = cls.kms.create_key()["KeyMetadata"]
        cls.blob = cls.kms.encrypt(KeyId=cls.key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
        cls.other = h.kms_client(cls.server, access_key=h.OTHER_ROOT_KEY, secret=h.OTHER_ROOT_SECRET)

    def test_unknown_key_is_not_found_before_the_algorithm(self):
        missing = str(uuid.uuid4())
        self.assertKmsError("NotFoundException", self.kms.encrypt, KeyId=missing, Plaintext=b"x",
                            EncryptionAlgorithm=RSA)
        self.assertKmsError("NotFoundException", self.kms.encrypt, KeyId="alias/no-such-alias",
                            Plaintext=b"x", EncryptionAlgorithm=RSA)
        # A blob naming a key that does not exist, no KeyId.
        self.assertKmsError("NotFoundException", self.kms.decrypt,
                            CiphertextBlob=blob_naming(missing, self.blob), EncryptionAlgorithm=RSA)
        # An explicit KeyId is looked up before the blob is read: an RSA
        # ciphertext is no kmsd blob, and the answer is still NotFound.
        self.assertKmsError("NotFoundException", self.kms.decrypt, KeyId=missing,
                            CiphertextBlob=os.urandom(256), EncryptionAlgorithm=RSA)
        self.assertKmsError("NotFoundException", self.kms.re_encrypt, CiphertextBlob=self.blob,
                            DestinationKeyId=missing, DestinationEncryptionAlgorithm=RSA)
        self.assertKmsError("NotFoundException", self.kms.re_encrypt,
                            CiphertextBlob=blob_naming(missing, self.blob),
                            DestinationKeyId=self.key["KeyId"], SourceEncryptionAlgorithm=RSA)

    def test_key_of_another_account_is_access_denied_before_the_algorithm(self):
        arn = self.key["Arn"]
        err = self.assertKmsError("AccessDeniedException", self.other.encrypt, KeyId=arn,
                                  Plaintext=b"x", EncryptionAlgorithm=RSA)
        self.assertIn("kms:Encrypt", err["Message"])
        err = self.assertKmsError("AccessDeniedException", self.other.decrypt,
                                  CiphertextBlob=self.blob, EncryptionAlgorithm=RSA)
        self.assertIn("kms:Decrypt", err["Message"])
        mine = self.other.create_key()["KeyMetadata"]["KeyId"]
        mine_blob = self.other.encrypt(KeyId=mine, Plaintext=b"y")["CiphertextBlob"]
        err = self.assertKmsError("AccessDeniedException", self.other.re_encrypt,
                                  CiphertextBlob=mine_blob, DestinationKeyId=arn,
                                  DestinationEncryptionAlgorithm=RSA)
        self.assertIn("kms:ReEncryptTo", err["Message"])

    def test_usable_key_with_rsa_is_invalid_key_usage(self):
        key_id = self.key["KeyId"]
        self.assertKmsError("InvalidKeyUsageException", self.kms.encrypt, KeyId=key_id,
                            Plaintext=b"x", EncryptionAlgorithm=RSA)
        self.assertKmsError("InvalidKeyUsageException", self.kms.decrypt, CiphertextBlob=self.blob,
                            EncryptionAlgorithm=RSA)
        self.assertKmsError("InvalidKeyUsageException", self.kms.re_encrypt,
                            CiphertextBlob=self.blob, DestinationKeyId=key_id,
                            DestinationEncryptionAlgorithm=RSA)
        # DryRun answers only when every check passed.
        self.assertKmsError("InvalidKeyUsageException", self.kms.encrypt, KeyId=key_id,
                            Plaintext=b"x", EncryptionAlgorithm=RSA, DryRun=True)
        self.assertKmsError("InvalidKeyUsageException", self.kms.decrypt, CiphertextBlob=self.blob,
                            EncryptionAlgorithm=RSA, DryRun=True)

    def test_reencrypt_judges_both_keys_before_opening_the_blob(self):
        # Source and destination are looked up, authorized and judged, and
        # DryRun answered, before the blob is opened (docs/kmsd.md): a blob
        # that does not open loses to every error of the destination.
        bad = bytearray(self.blob)
        bad[-1] ^= 0x01
        bad = bytes(bad)
        self.assertKmsError("NotFoundException", self.kms.re_encrypt, CiphertextBlob=bad,
                            DestinationKeyId=str(uuid.uuid4()))
        self.assertKmsError("InvalidKeyUsageException", self.kms.re_encrypt, CiphertextBlob=bad,
                            DestinationKeyId=self.key["KeyId"],
                            DestinationEncryptionAlgorithm=RSA)
        self.assertKmsError("DryRunOperationException", self.kms.re_encrypt, CiphertextBlob=bad,
                            DestinationKeyId=self.key["KeyId"], DryRun=True)
        self.assertKmsError("InvalidCiphertextException", self.kms.re_encrypt, CiphertextBlob=bad,
                            DestinationKeyId=self.key["KeyId"])
        # A blob naming material its key does not have, likewise.
        foreign = self.blob[:17] + bytes(32) + self.blob[49:]
        self.assertKmsError("NotFoundException", self.kms.re_encrypt, CiphertextBlob=foreign,
                            DestinationKeyId=str(uuid.uuid4()))
        self.assertKmsError("InvalidCiphertextException", self.kms.re_encrypt,
                            CiphertextBlob=foreign, DestinationKeyId=self.key["KeyId"])

    def test_algorithm_is_judged_before_the_key_state(self):
        # A key that can never use RSA says so, rather than that it is disabled now.
        key_id = self.kms.create_key()["KeyMetadata"]["KeyId"]
        blob = self.kms.encrypt(KeyId=key_id, Plaintext=b"z")["CiphertextBlob"]
        self.kms.disable_key(KeyId=key_id)
        self.assertKmsError("InvalidKeyUsageException", self.kms.encrypt, KeyId=key_id,
                            Plaintext=b"x", EncryptionAlgorithm=RSA)
        self.assertKmsError("InvalidKeyUsageException", self.kms.decrypt, CiphertextBlob=blob,
                            EncryptionAlgorithm=RSA)
        self.assertKmsError("DisabledException", self.kms.decrypt, CiphertextBlob=blob)


class JsonValuesTest(h.KmsdTestCase):
    """Numbers with a zero fraction for integer members; \\u0000 in strings."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.key_ids = [cls.kms.create_key()["KeyMetadata"]["KeyId"] for _ in range(2)]

    def call(self, operation, body):
        """A signed TrentService call with `body` sent as this exact text."""
        return h.signed_request(self.server, "TrentService." + operation, body)

    def assertError(self, reply, code, *fragments):
        status, _, parsed = reply
        self.assertEqual((status, h.error_type(parsed)), (400, code), parsed)
        for f in fragments:
            self.assertIn(f, h.error_message(parsed))
        return h.error_message(parsed)

    def test_integer_member_takes_a_number_with_zero_fraction(self):
        for text in ('{"Limit": 1.0}', '{"Limit": 1e0}', '{"Limit": 1.000}', '{"Limit": 10E-1}'):
            status, _, parsed = self.call("ListKeys", text)
            self.assertEqual(status, 200, (text, parsed))
            self.assertEqual(len(parsed["Keys"]), 1, text)
            self.assertTrue(parsed["Truncated"], text)
        status, _, parsed = self.call("ListKeys", '{"Limit": 1000.0}')
        self.assertEqual(status, 200, parsed)
        self.assertGreaterEqual(len(parsed["Keys"]), 2)
        # The handler reads the value too, not only the validator.
        status, _, parsed = self.call("ScheduleKeyDeletion", json.dumps(
            {"KeyId": self.key_ids[1], "PendingWindowInDays": 8.0}))
        self.assertEqual(status, 200, parsed)
        described = self.kms.describe_key(KeyId=self.key_ids[1])["KeyMetadata"]
        self.assertEqual(described["PendingDeletionWindowInDays"], 8)
        self.kms.cancel_key_deletion(KeyId=self.key_ids[1])

    def test_integer_member_refuses_a_fraction_or_out_of_range(self):
        self.assertError(self.call("ListKeys", '{"Limit": 1.5}'), "SerializationException",
                         "fractional", "limit")
        self.assertError(self.call("ListKeys", '{"Limit": 1e300}'), "SerializationException",
                         "out of range of int")
        self.assertError(self.call("ListKeys", '{"Limit": 1001.0}'), "ValidationException",
                         "Member must have value less than or equal to 1000")
        self.assertError(self.call("ListKeys", '{"Limit": 0.0}'), "ValidationException",
                         "Member must have value greater than or equal to 1")

    def test_nul_in_a_string_is_validated_not_malformed(self):
        before = len(self.kms.list_keys()["Keys"])
        message = self.assertError(self.call("CreateKey", '{"Description": "a\\u0000b"}'),
                                   "ValidationException", "1 validation error detected",
                                   "at 'description'", "NUL character (U+0000)")
        self.assertIn("a\\u0000b", message)
        self.assertEqual(len(self.kms.list_keys()["Keys"]), before, "no key was created")
        # A member with a pattern gets the pattern's own message, as from AWS.
        self.assertError(self.call("CreateAlias", json.dumps(
            {"AliasName": "alias/a\u0000b", "TargetKeyId": self.key_ids[0]})),
            "ValidationException", "at 'aliasName'",
            "Member must satisfy regular expression pattern")
        # An encryption context value with a NUL must never bind as its prefix.
        self.assertError(self.call("Encrypt", json.dumps(
            {"KeyId": self.key_ids[0], "Plaintext": "eA==",
             "EncryptionContext": {"purpose": "a\u0000b"}})),
            "ValidationException", "NUL character (U+0000)")
        self.assertError(self.call("DescribeKey", json.dumps(
            {"KeyId": self.key_ids[0] + "\u0000"})),
            "ValidationException", "at 'keyId'", "NUL character (U+0000)")
        # A NUL in a member name is beyond what the JSON library holds.
        self.assertError(self.call("CreateKey", '{"Descr\\u0000iption": "x"}'),
                         "SerializationException")


if __name__ == "__main__":
    unittest.main()
