"""test_crypto - symmetric cryptography through boto3: Encrypt, Decrypt,
ReEncrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext, GenerateRandom.

Round trips prove the server really encrypts (the ciphertext decrypts only
under the right key and encryption context); the negative tests provoke every
model error a symmetric AWS_KMS key can raise and check that nothing leaked
or changed afterwards.
"""

import base64
import unittest
import uuid

import kmsd_harness as h

KEY_ARN_PREFIX = "arn:aws:kms:%s:%s:key/" % (h.DEFAULT_REGION, h.DEFAULT_ACCOUNT)


class CryptoTest(h.KmsdTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.key = cls.kms.create_key(Description="crypto A")["KeyMetadata"]
        cls.other = cls.kms.create_key(Description="crypto B")["KeyMetadata"]
        cls.alias = "alias/crypto-%s" % uuid.uuid4().hex[:8]
        cls.kms.create_alias(AliasName=cls.alias, TargetKeyId=cls.key["KeyId"])

    def new_key(self):
        return self.kms.create_key()["KeyMetadata"]

    def encrypt(self, plaintext, key=None, **kwargs):
        return self.kms.encrypt(KeyId=key or self.key["KeyId"], Plaintext=plaintext,
                                **kwargs)["CiphertextBlob"]

    def raw(self, operation, params):
        return h.kms_call(self.server, operation, params)

    def raw_error(self, operation, params, code):
        status, headers, body = self.raw(operation, params)
        self.assertEqual(status, 400, body)
        self.assertEqual(h.error_type(body), code, body)
        self.assertRequestId(headers)
        return h.error_message(body)

    # -- Encrypt / Decrypt ------------------------------------------------

    def test_round_trip_reply_shapes(self):
        out = self.kms.encrypt(KeyId=self.key["KeyId"], Plaintext=b"attack at dawn")
        self.assertEqual(out["KeyId"], self.key["Arn"])
        self.assertEqual(out["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT")
        blob = out["CiphertextBlob"]
        self.assertIsInstance(blob, bytes)
        self.assertNotIn(b"attack at dawn", blob)
        dec = self.kms.decrypt(CiphertextBlob=blob)
        self.assertEqual(dec["Plaintext"], b"attack at dawn")
        self.assertEqual(dec["KeyId"], self.key["Arn"])
        self.assertEqual(dec["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT")
        if "KeyMaterialId" in dec:
            self.assertRegex(dec["KeyMaterialId"], r"^[a-f0-9]{64}$")

    def test_ciphertexts_are_randomized(self):
        self.assertNotEqual(self.encrypt(b"same"), self.encrypt(b"same"))

    def test_binary_and_size_limits(self):
        for plaintext in (b"\x00", bytes(range(256)) * 16, b"\xff" * 4096):
            with self.subTest(size=len(plaintext)):
                blob = self.encrypt(plaintext)
                self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], plaintext)
        msg = self.raw_error("Encrypt", {"KeyId": self.key["KeyId"],
                                         "Plaintext": base64.b64encode(b"x" * 4097).decode()},
                             "ValidationException")
        self.assertIn("plaintext", msg)
        self.assertNotIn("xxxx", msg, "a plaintext must never be echoed")
        self.raw_error("Encrypt", {"KeyId": self.key["KeyId"], "Plaintext": ""},
                       "ValidationException")
        self.raw_error("Encrypt", {"KeyId": self.key["KeyId"]}, "ValidationException")

    def test_encrypt_by_arn_alias_and_alias_arn(self):
        alias_arn = "arn:aws:kms:%s:%s:%s" % (h.DEFAULT_REGION, h.DEFAULT_ACCOUNT, self.alias)
        for ref in (self.key["Arn"], self.alias, alias_arn):
            with self.subTest(ref=ref):
                out = self.kms.encrypt(KeyId=ref, Plaintext=b"by reference")
                self.assertEqual(out["KeyId"], self.key["Arn"])
                dec = self.kms.decrypt(CiphertextBlob=out["CiphertextBlob"], KeyId=ref)
                self.assertEqual(dec["Plaintext"], b"by reference")

    def test_encryption_context_binds(self):
        ctx = {"purpose": "test", "tenant": "acme"}
        blob = self.encrypt(b"bound", EncryptionContext=ctx)
        # Order of the map does not matter, contents do.
        same = {"tenant": "acme", "purpose": "test"}
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob, EncryptionContext=same)["Plaintext"],
                         b"bound")
        for wrong in ({}, {"purpose": "test"}, {"purpose": "test", "tenant": "evil"},
                      {"purpose": "test", "tenant": "acme", "extra": "x"}):
            with self.subTest(context=wrong):
                kwargs = {"EncryptionContext": wrong} if wrong else {}
                self.assertKmsError("InvalidCiphertextException", self.kms.decrypt,
                                    CiphertextBlob=blob, **kwargs)
        plain_blob = self.encrypt(b"unbound")
        self.assertKmsError("InvalidCiphertextException", self.kms.decrypt,
                            CiphertextBlob=plain_blob, EncryptionContext={"a": "b"})

    def test_tampered_ciphertext(self):
        blob = bytearray(self.encrypt(b"integrity"))
        for pos in (0, len(blob) // 2, len(blob) - 1):
            bad = bytearray(blob)
            bad[pos] ^= 0x01
            with self.subTest(pos=pos):
                err = self.assertKmsError("InvalidCiphertextException", self.kms.decrypt,
                                          CiphertextBlob=bytes(bad))
                self.assertNotIn("integrity", err.get("Message", ""))
        for junk in (b"x", b"not a kms ciphertext at all", bytes(blob[:-1]), bytes(blob) + b"\0"):
            with self.subTest(junk=junk[:8]):
                self.assertKmsError("InvalidCiphertextException", self.kms.decrypt,
                                    CiphertextBlob=junk)
        # The intact blob still decrypts: nothing was damaged server-side.
        self.assertEqual(self.kms.decrypt(CiphertextBlob=bytes(blob))["Plaintext"], b"integrity")

    def test_decrypt_with_wrong_key_id_is_incorrect_key(self):
        blob = self.encrypt(b"mine")
        self.assertKmsError("IncorrectKeyException", self.kms.decrypt, CiphertextBlob=blob,
                            KeyId=self.other["KeyId"])
        self.assertKmsError("IncorrectKeyException", self.kms.decrypt, CiphertextBlob=blob,
                            KeyId=self.other["Arn"])

    def test_decrypt_with_unknown_key_id(self):
        blob = self.encrypt(b"mine")
        self.assertKmsError("NotFoundException", self.kms.decrypt, CiphertextBlob=blob,
                            KeyId=str(uuid.uuid4()))

    def test_not_found(self):
        for op, kwargs in (("encrypt", {"Plaintext": b"x"}),
                           ("generate_data_key", {"KeySpec": "AES_256"}),
                           ("generate_data_key_without_plaintext", {"KeySpec": "AES_256"})):
            with self.subTest(op=op):
                self.assertKmsError("NotFoundException", getattr(self.kms, op),
                                    KeyId=str(uuid.uuid4()), **kwargs)
                self.assertKmsError("NotFoundException", getattr(self.kms, op),
                                    KeyId="alias/does-not-exist", **kwargs)

    def test_disabled_key(self):
        key = self.new_key()
        blob = self.encrypt(b"before", key=key["KeyId"])
        self.kms.disable_key(KeyId=key["KeyId"])
        self.assertKmsError("DisabledException", self.kms.encrypt, KeyId=key["KeyId"],
                            Plaintext=b"x")
        self.assertKmsError("DisabledException", self.kms.decrypt, CiphertextBlob=blob)
        self.assertKmsError("DisabledException", self.kms.generate_data_key, KeyId=key["KeyId"],
                            KeySpec="AES_256")
        self.assertKmsError("DisabledException", self.kms.generate_data_key_without_plaintext,
                            KeyId=key["KeyId"], KeySpec="AES_256")
        self.assertKmsError("DisabledException", self.kms.re_encrypt, CiphertextBlob=blob,
                            DestinationKeyId=self.key["KeyId"])
        self.kms.enable_key(KeyId=key["KeyId"])
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"before")

    def test_pending_deletion_key(self):
        key = self.new_key()
        blob = self.encrypt(b"before", key=key["KeyId"])
        self.kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
        self.assertKmsError("KMSInvalidStateException", self.kms.encrypt, KeyId=key["KeyId"],
                            Plaintext=b"x")
        self.assertKmsError("KMSInvalidStateException", self.kms.decrypt, CiphertextBlob=blob)
        self.assertKmsError("KMSInvalidStateException", self.kms.generate_data_key,
                            KeyId=key["KeyId"], NumberOfBytes=16)
        self.assertKmsError("KMSInvalidStateException", self.kms.re_encrypt,
                            CiphertextBlob=self.encrypt(b"y"), DestinationKeyId=key["KeyId"])
        self.kms.cancel_key_deletion(KeyId=key["KeyId"])
        self.kms.enable_key(KeyId=key["KeyId"])
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"before")

    def test_dry_run(self):
        err = self.assertKmsError("DryRunOperationException", self.kms.encrypt,
                                  KeyId=self.key["KeyId"], Plaintext=b"x", DryRun=True)
        self.assertTrue(err.get("Message"))
        blob = self.encrypt(b"dry")
        self.assertKmsError("DryRunOperationException", self.kms.decrypt, CiphertextBlob=blob,
                            DryRun=True)
        self.assertKmsError("DryRunOperationException", self.kms.re_encrypt, CiphertextBlob=blob,
                            DestinationKeyId=self.other["KeyId"], DryRun=True)
        self.assertKmsError("DryRunOperationException", self.kms.generate_data_key,
                            KeyId=self.key["KeyId"], KeySpec="AES_256", DryRun=True)
        self.assertKmsError("DryRunOperationException",
                            self.kms.generate_data_key_without_plaintext,
                            KeyId=self.key["KeyId"], KeySpec="AES_256", DryRun=True)
        # A dry run checks everything else first: a disabled key is reported as such.
        key = self.new_key()
        self.kms.disable_key(KeyId=key["KeyId"])
        self.assertKmsError("DisabledException", self.kms.encrypt, KeyId=key["KeyId"],
                            Plaintext=b"x", DryRun=True)

    def test_asymmetric_algorithm_on_symmetric_key(self):
        self.assertKmsError("InvalidKeyUsageException", self.kms.encrypt, KeyId=self.key["KeyId"],
                            Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")
        blob = self.encrypt(b"x")
        self.assertKmsError("InvalidKeyUsageException", self.kms.decrypt, CiphertextBlob=blob,
                            EncryptionAlgorithm="RSAES_OAEP_SHA_1")
        out = self.kms.encrypt(KeyId=self.key["KeyId"], Plaintext=b"x",
                               EncryptionAlgorithm="SYMMETRIC_DEFAULT")
        self.assertEqual(out["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT")

    def test_grant_tokens_are_rejected(self):
        # kmsd issues no grants, so no grant token can be valid.
        self.assertKmsError("InvalidGrantTokenException", self.kms.encrypt,
                            KeyId=self.key["KeyId"], Plaintext=b"x", GrantTokens=["token"])
        self.kms.encrypt(KeyId=self.key["KeyId"], Plaintext=b"x", GrantTokens=[])

    def test_bad_base64_is_rejected_before_the_handler(self):
        status, _, body = self.raw("Encrypt", {"KeyId": self.key["KeyId"], "Plaintext": "***"})
        self.assertEqual(status, 400, body)
        self.assertIn(h.error_type(body), ("SerializationException", "ValidationException"))

    # -- ReEncrypt --------------------------------------------------------

    def test_reencrypt_moves_ciphertext_to_destination_key(self):
        src_ctx, dst_ctx = {"stage": "one"}, {"stage": "two"}
        blob = self.encrypt(b"moving", EncryptionContext=src_ctx)
        out = self.kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=src_ctx,
                                  DestinationKeyId=self.other["KeyId"],
                                  DestinationEncryptionContext=dst_ctx)
        self.assertEqual(out["SourceKeyId"], self.key["Arn"])
        self.assertEqual(out["KeyId"], self.other["Arn"])
        self.assertEqual(out["SourceEncryptionAlgorithm"], "SYMMETRIC_DEFAULT")
        self.assertEqual(out["DestinationEncryptionAlgorithm"], "SYMMETRIC_DEFAULT")
        new_blob = out["CiphertextBlob"]
        dec = self.kms.decrypt(CiphertextBlob=new_blob, EncryptionContext=dst_ctx)
        self.assertEqual(dec["Plaintext"], b"moving")
        self.assertEqual(dec["KeyId"], self.other["Arn"])
        self.assertKmsError("InvalidCiphertextException", self.kms.decrypt,
                            CiphertextBlob=new_blob, EncryptionContext=src_ctx)
        self.assertKmsError("IncorrectKeyException", self.kms.decrypt, CiphertextBlob=new_blob,
                            EncryptionContext=dst_ctx, KeyId=self.key["KeyId"])

    def test_reencrypt_errors(self):
        blob = self.encrypt(b"source", EncryptionContext={"k": "v"})
        self.assertKmsError("InvalidCiphertextException", self.kms.re_encrypt,
                            CiphertextBlob=blob, DestinationKeyId=self.other["KeyId"])
        self.assertKmsError("IncorrectKeyException", self.kms.re_encrypt, CiphertextBlob=blob,
                            SourceEncryptionContext={"k": "v"}, SourceKeyId=self.other["KeyId"],
                            DestinationKeyId=self.other["KeyId"])
        self.assertKmsError("NotFoundException", self.kms.re_encrypt, CiphertextBlob=blob,
                            SourceEncryptionContext={"k": "v"},
                            DestinationKeyId=str(uuid.uuid4()))
        bad = bytearray(blob)
        bad[len(bad) // 2] ^= 0x80
        self.assertKmsError("InvalidCiphertextException", self.kms.re_encrypt,
                            CiphertextBlob=bytes(bad), SourceEncryptionContext={"k": "v"},
                            DestinationKeyId=self.other["KeyId"])
        dest = self.new_key()
        self.kms.disable_key(KeyId=dest["KeyId"])
        self.assertKmsError("DisabledException", self.kms.re_encrypt, CiphertextBlob=blob,
                            SourceEncryptionContext={"k": "v"}, DestinationKeyId=dest["KeyId"])
        self.assertKmsError("InvalidKeyUsageException", self.kms.re_encrypt, CiphertextBlob=blob,
                            SourceEncryptionContext={"k": "v"},
                            DestinationKeyId=self.other["KeyId"],
                            DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_256")
        msg = self.raw_error("ReEncrypt", {"CiphertextBlob": base64.b64encode(blob).decode()},
                             "ValidationException")
        self.assertIn("destinationKeyId", msg)

    def test_reencrypt_to_same_key_changes_context(self):
        blob = self.encrypt(b"same key", EncryptionContext={"v": "1"})
        out = self.kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"v": "1"},
                                  DestinationKeyId=self.alias,
                                  DestinationEncryptionContext={"v": "2"})
        self.assertEqual(out["KeyId"], self.key["Arn"])
        self.assertEqual(self.kms.decrypt(CiphertextBlob=out["CiphertextBlob"],
                                          EncryptionContext={"v": "2"})["Plaintext"], b"same key")

    # -- GenerateDataKey ------------------------------------------------

    def test_generate_data_key_sizes(self):
        for kwargs, size in (({"KeySpec": "AES_256"}, 32), ({"KeySpec": "AES_128"}, 16),
                             ({"NumberOfBytes": 1}, 1), ({"NumberOfBytes": 64}, 64),
                             ({"NumberOfBytes": 1024}, 1024)):
            with self.subTest(**kwargs):
                out = self.kms.generate_data_key(KeyId=self.key["KeyId"], **kwargs)
                self.assertEqual(len(out["Plaintext"]), size)
                self.assertEqual(out["KeyId"], self.key["Arn"])
                dec = self.kms.decrypt(CiphertextBlob=out["CiphertextBlob"])
                self.assertEqual(dec["Plaintext"], out["Plaintext"])

    def test_generate_data_key_is_random_and_context_bound(self):
        a = self.kms.generate_data_key(KeyId=self.alias, KeySpec="AES_256",
                                       EncryptionContext={"file": "a.txt"})
        b = self.kms.generate_data_key(KeyId=self.alias, KeySpec="AES_256",
                                       EncryptionContext={"file": "a.txt"})
        self.assertNotEqual(a["Plaintext"], b["Plaintext"])
        self.assertKmsError("InvalidCiphertextException", self.kms.decrypt,
                            CiphertextBlob=a["CiphertextBlob"])
        dec = self.kms.decrypt(CiphertextBlob=a["CiphertextBlob"],
                               EncryptionContext={"file": "a.txt"})
        self.assertEqual(dec["Plaintext"], a["Plaintext"])

    def test_generate_data_key_spec_rules(self):
        for op in ("GenerateDataKey", "GenerateDataKeyWithoutPlaintext"):
            with self.subTest(op=op):
                self.raw_error(op, {"KeyId": self.key["KeyId"]}, "ValidationException")
                self.raw_error(op, {"KeyId": self.key["KeyId"], "KeySpec": "AES_256",
                                    "NumberOfBytes": 32}, "ValidationException")
                msg = self.raw_error(op, {"KeyId": self.key["KeyId"], "NumberOfBytes": 1025},
                                     "ValidationException")
                self.assertIn("numberOfBytes", msg)
                self.raw_error(op, {"KeyId": self.key["KeyId"], "NumberOfBytes": 0},
                               "ValidationException")
                self.raw_error(op, {"KeyId": self.key["KeyId"], "KeySpec": "AES_512"},
                               "ValidationException")

    def test_generate_data_key_without_plaintext(self):
        out = self.kms.generate_data_key_without_plaintext(KeyId=self.key["KeyId"],
                                                           KeySpec="AES_256",
                                                           EncryptionContext={"x": "y"})
        self.assertNotIn("Plaintext", out)
        self.assertEqual(out["KeyId"], self.key["Arn"])
        dec = self.kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"x": "y"})
        self.assertEqual(len(dec["Plaintext"]), 32)
        out = self.kms.generate_data_key_without_plaintext(KeyId=self.key["KeyId"],
                                                           NumberOfBytes=48)
        self.assertEqual(len(self.kms.decrypt(CiphertextBlob=out["CiphertextBlob"])["Plaintext"]),
                         48)

    def test_generate_data_key_grant_token(self):
        self.assertKmsError("InvalidGrantTokenException", self.kms.generate_data_key,
                            KeyId=self.key["KeyId"], KeySpec="AES_256", GrantTokens=["nope"])

    # -- GenerateRandom -------------------------------------------------

    def test_generate_random(self):
        for n in (1, 32, 1024):
            with self.subTest(n=n):
                out = self.kms.generate_random(NumberOfBytes=n)
                self.assertEqual(len(out["Plaintext"]), n)
        a = self.kms.generate_random(NumberOfBytes=32)["Plaintext"]
        b = self.kms.generate_random(NumberOfBytes=32)["Plaintext"]
        self.assertNotEqual(a, b)
        self.assertNotEqual(a, bytes(32))

    def test_recipient_is_refused_not_ignored(self):
        # Silently ignoring Recipient would hand out plaintext the caller
        # expected to be sealed for an enclave.
        recipient = {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                     "AttestationDocument": base64.b64encode(b"doc").decode()}
        for op, params in (("GenerateRandom", {"NumberOfBytes": 8}),
                           ("GenerateDataKey", {"KeyId": self.key["KeyId"], "KeySpec": "AES_256"}),
                           ("Decrypt", {"CiphertextBlob": base64.b64encode(
                               self.encrypt(b"sealed")).decode()})):
            with self.subTest(op=op):
                status, _, body = self.raw(op, dict(params, Recipient=recipient))
                self.assertEqual(status, 400, body)
                self.assertEqual(h.error_type(body), "UnsupportedOperationException", body)
                self.assertNotIn("Plaintext", body)

    def test_generate_random_errors(self):
        msg = self.raw_error("GenerateRandom", {"NumberOfBytes": 1025}, "ValidationException")
        self.assertIn("numberOfBytes", msg)
        self.raw_error("GenerateRandom", {"NumberOfBytes": 0}, "ValidationException")
        self.raw_error("GenerateRandom", {}, "ValidationException")
        self.assertKmsError("CustomKeyStoreNotFoundException", self.kms.generate_random,
                            NumberOfBytes=16, CustomKeyStoreId="cks-1234567890abcdef0")


if __name__ == "__main__":
    unittest.main()
