"""test_wire_dates - the text of timestamps in kmsd's replies.

JSON 1.1 sends dates as numbers of seconds since the epoch.  AWS sends at
most milliseconds ("1796187467.432"); a float printed with all its binary
digits ("1796187467.4319999") parses in every client, so only the raw reply
text shows it.  These tests read that text, never a parsed value, for every
KMS and CloudHSMv2 reply that carries dates.
"""

import json
import re
import unittest

import kmsd_harness as h
import cloudhsm_fixture as fx

# "Name":value for every member that is a date in the KMS and CloudHSMv2
# models: ...Date, ...Timestamp, ValidTo.
DATE_MEMBER = re.compile(rb'"([A-Za-z]*(?:Date|Timestamp)|ValidTo)":([^,}\]]*)')
AWS_DATE_TEXT = re.compile(rb"^\d+(\.\d{1,3})?$")
KEYS = 12   # CreationDates made at arbitrary milliseconds


def date_members(value):
    """Names of the date members anywhere in a parsed reply, with repeats."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k.endswith("Date") or k.endswith("Timestamp") or k == "ValidTo":
                out.append(k)
            else:
                out += date_members(v)
    elif isinstance(value, list):
        for v in value:
            out += date_members(v)
    return out


class WireDatesTest(h.KmsdBaseTestCase):

    def raw(self, server, target, body, service="kms"):
        """The reply body's bytes of a signed call that must succeed."""
        req = h.build_signed_request(server, target, body, service=service)
        status, _, data = h.send_raw(server, req, raw_body=True)
        self.assertEqual(status, 200, data)
        return data

    def assertDatesLikeAws(self, data, at_least=1):
        """Every date member of reply `data` is an integer or has 1-3 decimals."""
        found = DATE_MEMBER.findall(data)
        self.assertGreaterEqual(len(found), at_least, data)
        # The pattern must have seen every date the reply holds.
        self.assertEqual(sorted(n.decode() for n, _ in found),
                         sorted(date_members(json.loads(data))), data)
        for name, text in found:
            self.assertRegex(text, AWS_DATE_TEXT, "%s in %s" % (name.decode(), data.decode()))
        return found

    def test_kms_dates(self):
        server = self.start_server()
        kms_target = "TrentService."
        key_ids = []
        for _ in range(KEYS):
            data = self.raw(server, kms_target + "CreateKey", {})
            self.assertDatesLikeAws(data)
            key_ids.append(json.loads(data)["KeyMetadata"]["KeyId"])
        key = key_ids[0]
        self.assertDatesLikeAws(self.raw(server, kms_target + "DescribeKey", {"KeyId": key}))

        self.raw(server, kms_target + "CreateAlias", {"AliasName": "alias/dates", "TargetKeyId": key})
        self.assertDatesLikeAws(self.raw(server, kms_target + "ListAliases", {"KeyId": key}),
                                at_least=2)

        self.raw(server, kms_target + "EnableKeyRotation", {"KeyId": key})
        self.raw(server, kms_target + "RotateKeyOnDemand", {"KeyId": key})
        self.assertDatesLikeAws(self.raw(server, kms_target + "GetKeyRotationStatus",
                                         {"KeyId": key}))
        self.assertDatesLikeAws(self.raw(server, kms_target + "ListKeyRotations", {"KeyId": key}))

        doomed = key_ids[1]
        self.assertDatesLikeAws(self.raw(server, kms_target + "ScheduleKeyDeletion",
                                         {"KeyId": doomed, "PendingWindowInDays": 7}))
        self.assertDatesLikeAws(self.raw(server, kms_target + "DescribeKey", {"KeyId": doomed}),
                                at_least=2)

    def test_custom_key_store_and_cloudhsm_dates(self):
        server = self.start_server(args=["--enable-admin-api"])
        kms = h.kms_client(server)
        cluster = fx.make_cluster(server, fx.CertificateAuthority())
        cks_id = fx.create_store(kms, cluster, "dates-store")

        self.assertDatesLikeAws(self.raw(server, "TrentService.DescribeCustomKeyStores",
                                         {"CustomKeyStoreId": cks_id}))
        clusters = self.raw(server, "BaldrApiService.DescribeClusters", {}, service="cloudhsm")
        self.assertDatesLikeAws(clusters)
        backups = self.raw(server, "BaldrApiService.DescribeBackups", {}, service="cloudhsm")
        self.assertDatesLikeAws(backups, at_least=0)


if __name__ == "__main__":
    unittest.main()
