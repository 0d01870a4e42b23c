"""The admin API (KmsdAdmin.*): moving the clock and sweeping on demand.

The clock is one for every account, so only principals the credentials file
marks "admin" may use the API; an account's root is not enough."""
import json
import subprocess
import unittest

import kmsd_harness as h

DAY = 86400
ADMIN_OPERATIONS = (("AdvanceClock", {"Seconds": 60}), ("GetClock", {}), ("Sweep", {}))

OTHER_ACCOUNT, OTHER_ROOT_KEY, OTHER_ROOT_SECRET = h.OTHER_ACCOUNT, h.OTHER_ROOT_KEY, h.OTHER_ROOT_SECRET
CLOCK_ADMIN_KEY, CLOCK_ADMIN_SECRET = "AKIAIOSFODNN7CLOCKADM", "clockAdminSecret/EXAMPLE+0123456789abcdef"


principal = h.principal


DEFAULT_ROOT = principal(h.DEFAULT_ACCESS_KEY, h.DEFAULT_SECRET_KEY, h.DEFAULT_ACCOUNT,
                         h.DEFAULT_ROOT_ARN)
OTHER_ROOT = principal(OTHER_ROOT_KEY, OTHER_ROOT_SECRET, OTHER_ACCOUNT,
                       "arn:aws:iam::%s:root" % OTHER_ACCOUNT)
CLOCK_ADMIN_ARN = "arn:aws:iam::%s:user/clock-admin" % h.DEFAULT_ACCOUNT


def admin_call(server, operation, body, key, secret):
    return h.signed_request(server, "KmsdAdmin." + operation, body, access_key=key,
                            secret=secret)


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


class AdminNeedsAdminPrincipalTest(h.KmsdTestCase):
    """Two accounts' roots, neither marked admin: neither may touch the
    clock that every account's deletion windows and signatures read."""

    credentials = {"principals": [DEFAULT_ROOT, OTHER_ROOT]}

    def test_roots_are_denied_every_admin_operation(self):
        for key, secret, arn in ((h.DEFAULT_ACCESS_KEY, h.DEFAULT_SECRET_KEY, h.DEFAULT_ROOT_ARN),
                                 (OTHER_ROOT_KEY, OTHER_ROOT_SECRET, OTHER_ROOT["arn"])):
            for operation, body in ADMIN_OPERATIONS:
                with self.subTest(caller=arn, operation=operation):
                    status, headers, parsed = admin_call(self.server, operation, body, key, secret)
                    self.assertEqual(h.error_type(parsed), "AccessDeniedException", parsed)
                    self.assertEqual(status, 400)
                    self.assertRequestId(headers)
                    message = h.error_message(parsed)
                    self.assertIn("User: %s is not authorized to perform: KmsdAdmin:%s" % (
                        arn, operation), message)
        # The clock never moved: a client on the wall clock still signs fine.
        wall = h.kms_client(self.server, follow_clock=False)
        self.assertIn("Keys", wall.list_keys())


class AdminPrincipalTest(h.KmsdTestCase):
    """A principal marked "admin": true may use the admin API, whether or not
    it is a root; the roots beside it may not."""

    credentials = {"principals": [
        DEFAULT_ROOT, OTHER_ROOT,
        principal(CLOCK_ADMIN_KEY, CLOCK_ADMIN_SECRET, h.DEFAULT_ACCOUNT, CLOCK_ADMIN_ARN,
                  admin=True),
    ]}

    def test_admin_principal_may_use_every_operation(self):
        before = h.get_clock(self.server, CLOCK_ADMIN_KEY, CLOCK_ADMIN_SECRET)["OffsetSeconds"]
        self.assertEqual(h.advance_clock(self.server, 120, CLOCK_ADMIN_KEY, CLOCK_ADMIN_SECRET),
                         before + 120)
        self.assertEqual(h.sweep(self.server, CLOCK_ADMIN_KEY, CLOCK_ADMIN_SECRET), {})
        self.assertEqual(h.get_clock(self.server, CLOCK_ADMIN_KEY,
                                     CLOCK_ADMIN_SECRET)["OffsetSeconds"], before + 120)
        h.advance_clock(self.server, -120, CLOCK_ADMIN_KEY, CLOCK_ADMIN_SECRET)

    def test_roots_beside_an_admin_are_denied(self):
        for key, secret in ((h.DEFAULT_ACCESS_KEY, h.DEFAULT_SECRET_KEY),
                            (OTHER_ROOT_KEY, OTHER_ROOT_SECRET)):
            for operation, body in ADMIN_OPERATIONS:
                with self.subTest(caller=key, operation=operation):
                    _, _, parsed = admin_call(self.server, operation, body, key, secret)
                    self.assertEqual(h.error_type(parsed), "AccessDeniedException", parsed)
                    self.assertIn("not marked admin", h.error_message(parsed))


class AdminCredentialsFileTest(h.KmsdBaseTestCase):
    def test_default_credentials_file_marks_its_principal_admin(self):
        server = self.start_server(args=["--enable-admin-api"])
        with open(server.credentials_path) as f:
            written = json.load(f)
        self.assertIs(written["principals"][0]["admin"], True)
        self.assertEqual(h.get_clock(server)["OffsetSeconds"], 0)

    def test_admin_must_be_a_boolean(self):
        bad = dict(DEFAULT_ROOT, admin="yes")
        with self.assertRaises(h.KmsdStartError) as ctx:
            self.start_server(credentials={"principals": [bad]})
        self.assertIn("principals[0].admin must be true or false", str(ctx.exception))

    def test_help_says_who_may_use_the_admin_api(self):
        out = subprocess.run([h.find_kmsd_binary(), "--help"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        block = out[out.index("--enable-admin-api"):out.index("--hsm-pool")]
        for operation, _ in ADMIN_OPERATIONS:
            self.assertIn(operation, block)
        self.assertIn('"admin": true', block)

    def test_insecure_any_credentials_has_no_admin(self):
        # Every caller is the default root there, and no file marks it admin.
        server = self.start_server(args=["--enable-admin-api", "--insecure-any-credentials"])
        for operation, body in ADMIN_OPERATIONS:
            with self.subTest(operation=operation):
                _, _, parsed = admin_call(server, operation, body, h.DEFAULT_ACCESS_KEY,
                                          h.DEFAULT_SECRET_KEY)
                self.assertEqual(h.error_type(parsed), "AccessDeniedException", parsed)


if __name__ == "__main__":
    unittest.main()
