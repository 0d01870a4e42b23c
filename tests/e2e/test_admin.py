"""The admin API (KmsdAdmin.*): moving the clock and sweeping on demand."""
import unittest

import kmsd_harness as h

DAY = 86400


class SweepTest(h.KmsdTestCase):
    """Sweep applies every due deletion before it returns, with no waiting."""

    def listed_key_ids(self):
        ids, marker = [], None
        while True:
            page = self.kms.list_keys(**({"Marker": marker} if marker else {}))
            ids += [k["KeyId"] for k in page["Keys"]]
            if not page.get("Truncated"):
                return ids
            marker = page["NextMarker"]

    def test_sweep_deletes_due_keys_at_once(self):
        due = self.kms.create_key(Description="due")["KeyMetadata"]["KeyId"]
        later = self.kms.create_key(Description="later")["KeyMetadata"]["KeyId"]
        self.kms.schedule_key_deletion(KeyId=due, PendingWindowInDays=7)
        self.kms.schedule_key_deletion(KeyId=later, PendingWindowInDays=30)
        h.advance_clock(self.server, 7 * DAY + 1)
        self.assertEqual(h.sweep(self.server), {})
        ids = self.listed_key_ids()
        self.assertNotIn(due, ids)
        self.assertIn(later, ids)
        meta = self.kms.describe_key(KeyId=later)["KeyMetadata"]
        self.assertEqual(meta["KeyState"], "PendingDeletion")

    def test_clock_reports_offset(self):
        before = h.get_clock(self.server)["OffsetSeconds"]
        h.advance_clock(self.server, 60)
        self.assertEqual(h.get_clock(self.server)["OffsetSeconds"], before + 60)


if __name__ == "__main__":
    unittest.main()
