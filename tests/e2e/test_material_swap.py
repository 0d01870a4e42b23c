"""test_material_swap - a ciphertext blob carrying another key's material id.

A kmsd ciphertext blob names its key and the key material that sealed it
(lib/crypto/blob.h: version, 16-byte key id, 32-byte material id, IV, tag,
ciphertext).  An account that swaps another account's material id into a blob
of its own key must learn nothing from Decrypt: the answer has to be the
InvalidCiphertextException every tampered blob gets, word for word the same
whether or not kmsd has that other material in its cache (that is, whether
its owner used it recently).
"""

import unittest

import kmsd_harness as h

CREDENTIALS = h.two_roots_credentials()

# Offsets of the blob format (lib/crypto/blob.h).
MATERIAL_ID = slice(17, 49)
CIPHERTEXT_START = 77


def swap_material(blob, donor):
    """`blob` with the material id bytes of `donor` in place of its own."""
    return blob[:MATERIAL_ID.start] + donor[MATERIAL_ID] + blob[MATERIAL_ID.stop:]


class MaterialSwapTest(h.KmsdBaseTestCase):

    def decrypt_error(self, client, blob):
        """(code, message) of a Decrypt that must fail."""
        err = self.assertKmsError("InvalidCiphertextException", client.decrypt,
                                  CiphertextBlob=blob)
        return err["Code"], err["Message"]

    def test_foreign_material_id_answers_the_same_cached_or_not(self):
        server = self.start_server(credentials=CREDENTIALS)
        a = h.kms_client(server)
        b = h.kms_client(server, access_key=h.OTHER_ROOT_KEY, secret=h.OTHER_ROOT_SECRET)

        key_a = a.create_key(Description="account A")["KeyMetadata"]["KeyId"]
        key_b = b.create_key(Description="account B")["KeyMetadata"]["KeyId"]
        blob_a = a.encrypt(KeyId=key_a, Plaintext=b"A's secret")["CiphertextBlob"]
        blob_b = b.encrypt(KeyId=key_b, Plaintext=b"B's own data")["CiphertextBlob"]
        self.assertNotEqual(blob_a[MATERIAL_ID], blob_b[MATERIAL_ID])
        crafted = swap_material(blob_b, blob_a)
        flipped = bytearray(blob_b)
        flipped[CIPHERTEXT_START] ^= 0x01
        tampered = self.decrypt_error(b, bytes(flipped))

        # A fresh process: A's material has not been used since it started.
        server.restart()
        cold = self.decrypt_error(b, crafted)
        # A decrypts, so its material is in the cache now.
        self.assertEqual(a.decrypt(CiphertextBlob=blob_a)["Plaintext"], b"A's secret")
        warm = self.decrypt_error(b, crafted)
        self.assertEqual(cold, warm)
        self.assertEqual(cold, tampered)

        # The other order: a fresh process whose first use of A's material is
        # A's own Decrypt, then B's crafted blob, then again uncached.
        server.restart()
        self.assertEqual(a.decrypt(CiphertextBlob=blob_a)["Plaintext"], b"A's secret")
        self.assertEqual(self.decrypt_error(b, crafted), cold)
        server.restart()
        self.assertEqual(self.decrypt_error(b, crafted), cold)

        # Naming B's key explicitly changes nothing, and both keys still work.
        err = self.assertKmsError("InvalidCiphertextException", b.decrypt,
                                  CiphertextBlob=crafted, KeyId=key_b)
        self.assertEqual((err["Code"], err["Message"]), cold)
        self.assertEqual(b.decrypt(CiphertextBlob=blob_b)["Plaintext"], b"B's own data")
        self.assertEqual(a.decrypt(CiphertextBlob=blob_a)["Plaintext"], b"A's secret")

    def test_own_keys_material_never_serves_another_key(self):
        # Within one account too: key 2's blob carrying key 1's (cached)
        # material id must not open, even though the caller may use both keys.
        server = self.start_server()
        kms = h.kms_client(server)
        key1 = kms.create_key()["KeyMetadata"]["KeyId"]
        key2 = kms.create_key()["KeyMetadata"]["KeyId"]
        blob1 = kms.encrypt(KeyId=key1, Plaintext=b"one")["CiphertextBlob"]
        blob2 = kms.encrypt(KeyId=key2, Plaintext=b"two")["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=blob1)["Plaintext"], b"one")
        err = self.assertKmsError("InvalidCiphertextException", kms.decrypt,
                                  CiphertextBlob=swap_material(blob2, blob1))
        self.assertEqual(err["Message"], "The ciphertext is invalid, was altered, or its "
                                         "encryption context does not match.")


if __name__ == "__main__":
    unittest.main()
