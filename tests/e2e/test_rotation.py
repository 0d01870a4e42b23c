"""test_rotation - key material rotation through boto3: EnableKeyRotation,
DisableKeyRotation, GetKeyRotationStatus, RotateKeyOnDemand, ListKeyRotations.

Rotation is only correct if old ciphertexts keep decrypting and new ones use
the new material, so the tests encrypt across rotations.  Automatic rotation
is watched by moving the server's clock past the rotation date.
"""

import datetime
import time
import unittest
import uuid

import kmsd_harness as h

DAY = 86400


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


class RotationTest(h.KmsdTestCase):

    def new_key(self):
        return self.kms.create_key()["KeyMetadata"]

    def status(self, key_id):
        return self.kms.get_key_rotation_status(KeyId=key_id)

    def rotations(self, key_id, **kwargs):
        out, kwargs = [], dict(kwargs, KeyId=key_id)
        while True:
            page = self.kms.list_key_rotations(**kwargs)
            out += page["Rotations"]
            if not page["Truncated"]:
                return out
            kwargs["Marker"] = page["NextMarker"]

    def raw_error(self, operation, params, code):
        status, _, body = h.kms_call(self.server, operation, params)
        self.assertEqual(status, 400, body)
        self.assertEqual(h.error_type(body), code, body)
        return h.error_message(body)

    def test_rotation_disabled_by_default(self):
        key = self.new_key()
        st = self.status(key["KeyId"])
        self.assertIs(st["KeyRotationEnabled"], False)
        self.assertIn(st["KeyId"], (key["KeyId"], key["Arn"]))
        self.assertNotIn("RotationPeriodInDays", st)
        self.assertNotIn("NextRotationDate", st)
        self.assertEqual(self.rotations(key["KeyId"]), [])

    def test_enable_default_period_then_disable(self):
        key = self.new_key()
        start = now_utc()
        self.kms.enable_key_rotation(KeyId=key["KeyId"])
        st = self.status(key["KeyId"])
        self.assertIs(st["KeyRotationEnabled"], True)
        self.assertEqual(st["RotationPeriodInDays"], 365)
        expected = start + datetime.timedelta(days=365)
        self.assertLess(abs((st["NextRotationDate"] - expected).total_seconds()), 2 * DAY)
        self.kms.disable_key_rotation(KeyId=key["KeyId"])
        st = self.status(key["KeyId"])
        self.assertIs(st["KeyRotationEnabled"], False)
        self.assertNotIn("NextRotationDate", st)

    def test_enable_with_custom_period(self):
        key = self.new_key()
        self.kms.enable_key_rotation(KeyId=key["Arn"], RotationPeriodInDays=90)
        self.assertEqual(self.status(key["KeyId"])["RotationPeriodInDays"], 90)
        self.kms.enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=2560)
        self.assertEqual(self.status(key["KeyId"])["RotationPeriodInDays"], 2560)

    def test_period_out_of_range(self):
        key = self.new_key()
        for days in (89, 2561, 0):
            with self.subTest(days=days):
                msg = self.raw_error("EnableKeyRotation",
                                     {"KeyId": key["KeyId"], "RotationPeriodInDays": days},
                                     "ValidationException")
                self.assertIn("rotationPeriodInDays", msg)
        self.assertIs(self.status(key["KeyId"])["KeyRotationEnabled"], False)

    def test_not_found(self):
        missing = str(uuid.uuid4())
        for op in ("enable_key_rotation", "disable_key_rotation", "get_key_rotation_status",
                   "rotate_key_on_demand", "list_key_rotations"):
            with self.subTest(op=op):
                self.assertKmsError("NotFoundException", getattr(self.kms, op), KeyId=missing)

    def test_malformed_arn(self):
        arn = "arn:aws:kms:%s:%s:notakey/x" % (h.DEFAULT_REGION, h.DEFAULT_ACCOUNT)
        for op in ("enable_key_rotation", "disable_key_rotation", "get_key_rotation_status",
                   "rotate_key_on_demand", "list_key_rotations"):
            with self.subTest(op=op):
                self.assertKmsError("InvalidArnException", getattr(self.kms, op), KeyId=arn)

    def test_status_and_history_readable_while_pending_deletion(self):
        key = self.new_key()
        self.kms.enable_key_rotation(KeyId=key["KeyId"])
        self.kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
        self.assertIn("KeyRotationEnabled", self.status(key["KeyId"]))
        self.assertEqual(self.rotations(key["KeyId"]), [])

    def test_disabled_key(self):
        key = self.new_key()
        self.kms.disable_key(KeyId=key["KeyId"])
        self.assertKmsError("DisabledException", self.kms.enable_key_rotation, KeyId=key["KeyId"])
        self.assertKmsError("DisabledException", self.kms.disable_key_rotation,
                            KeyId=key["KeyId"])
        self.assertKmsError("DisabledException", self.kms.rotate_key_on_demand,
                            KeyId=key["KeyId"])
        self.kms.enable_key(KeyId=key["KeyId"])
        self.assertIs(self.status(key["KeyId"])["KeyRotationEnabled"], False)
        self.assertEqual(self.rotations(key["KeyId"]), [])

    def test_pending_deletion_key(self):
        key = self.new_key()
        self.kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
        for op in ("enable_key_rotation", "disable_key_rotation", "rotate_key_on_demand"):
            with self.subTest(op=op):
                self.assertKmsError("KMSInvalidStateException", getattr(self.kms, op),
                                    KeyId=key["KeyId"])

    def test_on_demand_rotation_keeps_old_ciphertexts(self):
        key = self.new_key()
        before_md = self.kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
        old_blob = self.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"old material")["CiphertextBlob"]
        old_dec = self.kms.decrypt(CiphertextBlob=old_blob)
        start = now_utc() - datetime.timedelta(seconds=5)

        out = self.kms.rotate_key_on_demand(KeyId=key["KeyId"])
        self.assertIn(out["KeyId"], (key["KeyId"], key["Arn"]))

        rotations = self.rotations(key["KeyId"])
        self.assertEqual(len(rotations), 1, rotations)
        entry = rotations[0]
        self.assertEqual(entry["RotationType"], "ON_DEMAND")
        self.assertEqual(entry["KeyMaterialState"], "CURRENT")
        self.assertIn(entry["KeyId"], (key["KeyId"], key["Arn"]))
        self.assertGreaterEqual(entry["RotationDate"], start)
        self.assertRegex(entry["KeyMaterialId"], r"^[a-f0-9]{64}$")

        # Old ciphertext still decrypts; new ciphertext uses the new material.
        self.assertEqual(self.kms.decrypt(CiphertextBlob=old_blob)["Plaintext"], b"old material")
        new_blob = self.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"new material")["CiphertextBlob"]
        new_dec = self.kms.decrypt(CiphertextBlob=new_blob)
        self.assertEqual(new_dec["Plaintext"], b"new material")
        if "KeyMaterialId" in new_dec and "KeyMaterialId" in old_dec:
            self.assertEqual(new_dec["KeyMaterialId"], entry["KeyMaterialId"])
            self.assertNotEqual(old_dec["KeyMaterialId"], entry["KeyMaterialId"])
        after_md = self.kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
        if "CurrentKeyMaterialId" in after_md:
            self.assertEqual(after_md["CurrentKeyMaterialId"], entry["KeyMaterialId"])
            self.assertNotEqual(after_md["CurrentKeyMaterialId"],
                                before_md.get("CurrentKeyMaterialId"))

        # ALL_KEY_MATERIAL also lists the original material, now NON_CURRENT.
        everything = self.rotations(key["KeyId"], IncludeKeyMaterial="ALL_KEY_MATERIAL")
        self.assertEqual(len(everything), 2, everything)
        states = sorted(r["KeyMaterialState"] for r in everything)
        self.assertEqual(states, ["CURRENT", "NON_CURRENT"])
        self.assertEqual(len({r["KeyMaterialId"] for r in everything}), 2)

        # On-demand rotation does not turn automatic rotation on.
        self.assertIs(self.status(key["KeyId"])["KeyRotationEnabled"], False)

    def test_rotations_pagination_and_limit(self):
        key = self.new_key()
        blobs = []
        for i in range(3):
            blobs.append(self.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"gen %d" % i)
                         ["CiphertextBlob"])
            self.kms.rotate_key_on_demand(KeyId=key["KeyId"])
        seen, kwargs = [], {"KeyId": key["KeyId"], "Limit": 1}
        while True:
            page = self.kms.list_key_rotations(**kwargs)
            self.assertLessEqual(len(page["Rotations"]), 1)
            seen += [r["KeyMaterialId"] for r in page["Rotations"]]
            if not page["Truncated"]:
                break
            kwargs["Marker"] = page["NextMarker"]
        self.assertEqual(len(seen), 3)
        self.assertEqual(len(set(seen)), 3)
        for i, blob in enumerate(blobs):
            self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"gen %d" % i)
        self.assertKmsError("InvalidMarkerException", self.kms.list_key_rotations,
                            KeyId=key["KeyId"], Marker="no-such-marker")

    def test_on_demand_rotation_limit(self):
        key = self.new_key()
        for _ in range(25):
            self.kms.rotate_key_on_demand(KeyId=key["KeyId"])
        self.assertKmsError("LimitExceededException", self.kms.rotate_key_on_demand,
                            KeyId=key["KeyId"])
        self.assertEqual(len(self.rotations(key["KeyId"])), 25)


class AutomaticRotationTest(h.KmsdTestCase):
    """Automatic rotation happens when the server's clock passes NextRotationDate."""

    def test_automatic_rotation_after_period(self):
        key = self.kms.create_key()["KeyMetadata"]
        idle = self.kms.create_key()["KeyMetadata"]
        blob = self.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"pre-rotation")["CiphertextBlob"]
        self.kms.enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=90)
        first_date = self.kms.get_key_rotation_status(KeyId=key["KeyId"])["NextRotationDate"]

        h.advance_clock(self.server, 91 * DAY)
        deadline = time.monotonic() + 15
        rotations = []
        while time.monotonic() < deadline:
            rotations = self.kms.list_key_rotations(KeyId=key["KeyId"])["Rotations"]
            if rotations:
                break
            time.sleep(0.2)
        self.assertEqual(len(rotations), 1, "no automatic rotation after 91 days")
        self.assertEqual(rotations[0]["RotationType"], "AUTOMATIC")
        self.assertEqual(rotations[0]["KeyMaterialState"], "CURRENT")

        st = self.kms.get_key_rotation_status(KeyId=key["KeyId"])
        self.assertIs(st["KeyRotationEnabled"], True)
        self.assertGreater(st["NextRotationDate"], first_date)
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"pre-rotation")
        # A key without rotation enabled was left alone.
        self.assertEqual(self.kms.list_key_rotations(KeyId=idle["KeyId"])["Rotations"], [])


if __name__ == "__main__":
    unittest.main()
