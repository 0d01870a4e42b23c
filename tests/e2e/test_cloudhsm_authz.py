"""Authorization of the CloudHSMv2 API (BaldrApiService) and of kmsd's HSM
administration API (KmsdHsmAdmin): a caller whose identity policy does not
allow the cloudhsm:<Operation> action is refused with the CloudHSMv2 model's
CloudHsmAccessDeniedException (what boto3's cloudhsmv2 client and hsm-cli
match on), never KMS's AccessDeniedException, and learns nothing about the
cluster.  Resource-level policies scope a caller to one cluster."""

import kmsd_harness as h
import cloudhsm_fixture as fx

KMS_ONLY = ("AKIAKMSONLYEXAMPLE02", "kms-only-secret-key-1111111111111111111")
ONE_CLUSTER = ("AKIAONECLUSTEREXAM01", "one-cluster-secret-key-22222222222222222")
DENY_DELETE = ("AKIADENYDELETEEXAM01", "deny-delete-secret-key-3333333333333333")


def principal(keys, name, statements):
    return {"accessKeyId": keys[0], "secretAccessKey": keys[1], "accountId": h.DEFAULT_ACCOUNT,
            "arn": "arn:aws:iam::%s:user/%s" % (h.DEFAULT_ACCOUNT, name),
            "policy": {"Version": "2012-10-17", "Statement": statements}}


class CloudHsmAuthorizationTest(h.KmsdBaseTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = h.KmsdServer(credentials={"principals": [
            {"accessKeyId": h.DEFAULT_ACCESS_KEY, "secretAccessKey": h.DEFAULT_SECRET_KEY,
             "accountId": h.DEFAULT_ACCOUNT, "arn": h.DEFAULT_ROOT_ARN},
            principal(KMS_ONLY, "kms-only", [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]),
            # Filled in below, once the cluster id is known.
        ]})
        try:
            cls.server.start()
            cls.cluster = fx.make_cluster(cls.server, fx.CertificateAuthority(), hsm_zones=(0,))
            arn = "arn:aws:cloudhsm:%s:%s:cluster/%s" % (h.DEFAULT_REGION, h.DEFAULT_ACCOUNT,
                                                         cls.cluster.id)
            cls.server.credentials["principals"] += [
                principal(ONE_CLUSTER, "one-cluster",
                          [{"Effect": "Allow", "Action": ["cloudhsm:DescribeClusters",
                                                          "cloudhsm:ListUsers", "cloudhsm:CreateHsm"],
                            "Resource": "*"},
                           {"Effect": "Allow", "Action": "cloudhsm:Login", "Resource": arn}]),
                principal(DENY_DELETE, "deny-delete",
                          [{"Effect": "Allow", "Action": "cloudhsm:*", "Resource": "*"},
                           {"Effect": "Deny", "Action": ["cloudhsm:DeleteHsm", "cloudhsm:DeleteUser"],
                            "Resource": arn}]),
            ]
            cls.server.restart()
        except Exception:
            cls.server.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        super().tearDownClass()

    def hsm_as(self, keys):
        return fx.cloudhsm_client(self.server, access_key=keys[0], secret=keys[1])

    def admin_as(self, keys, operation, **params):
        status, _, parsed = h.signed_request(self.server, "KmsdHsmAdmin." + operation, params,
                                             service="cloudhsm", access_key=keys[0], secret=keys[1])
        return status, parsed

    def assertDenied(self, fn, **kwargs):
        with self.assertRaises(Exception) as cm:
            fn(**kwargs)
        err = cm.exception.response["Error"]
        self.assertEqual(err["Code"], "CloudHsmAccessDeniedException", err)
        self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        return err["Message"]

    def test_kms_only_principal_is_denied_every_cloudhsm_operation(self):
        c = self.hsm_as(KMS_ONLY)
        cid = self.cluster.id
        calls = [
            (c.create_cluster, {"HsmType": fx.HSM_TYPE, "SubnetIds": fx.new_subnets(1)}),
            (c.describe_clusters, {}),
            (c.describe_backups, {}),
            (c.initialize_cluster, {"ClusterId": cid, "SignedCert": "x", "TrustAnchor": "y"}),
            (c.create_hsm, {"ClusterId": cid, "AvailabilityZone": "us-east-1a"}),
            (c.delete_hsm, {"ClusterId": cid, "HsmId": self.cluster.hsm_ids[0]}),
            (c.delete_cluster, {"ClusterId": cid}),
        ]
        for fn, kwargs in calls:
            with self.subTest(operation=fn.__name__):
                msg = self.assertDenied(fn, **kwargs)
                self.assertIn("arn:aws:iam::%s:user/kms-only" % h.DEFAULT_ACCOUNT, msg)
        # Nothing changed: the root still sees the cluster with its HSM.
        self.assertEqual(len(fx.active_hsms(fx.cloudhsm_client(self.server), cid)), 1)

    def test_kms_only_principal_is_denied_every_admin_operation(self):
        cid = self.cluster.id
        ops = [
            ("ActivateCluster", {"ClusterId": cid, "Password": "some-password"}),
            ("CreateUser", {"ClusterId": cid, "Username": "alice", "Role": "crypto-user",
                            "Password": "alice-password"}),
            ("DeleteUser", {"ClusterId": cid, "Username": fx.KMSUSER}),
            ("ListUsers", {"ClusterId": cid}),
            ("ChangePassword", {"ClusterId": cid, "Username": fx.KMSUSER, "Password": "x-password"}),
            ("Login", {"ClusterId": cid, "Username": fx.KMSUSER, "Password": fx.KMSUSER_PASSWORD}),
            ("Logout", {"ClusterId": cid, "Username": fx.KMSUSER}),
            ("SimulateFailure", {"ClusterId": cid, "Kind": "network-errors"}),
        ]
        for op, params in ops:
            with self.subTest(operation=op):
                status, parsed = self.admin_as(KMS_ONLY, op, **params)
                self.assertEqual(status, 400, parsed)
                self.assertEqual(h.error_type(parsed), "CloudHsmAccessDeniedException", parsed)
                self.assertIn("cloudhsm:%s" % op, h.error_message(parsed))
                self.assertNotIn("x-password", h.error_message(parsed))
        users = fx.admin_ok(self.server, "ListUsers", ClusterId=cid)["Users"]
        self.assertIn(fx.KMSUSER, [u["Username"] for u in users])
        self.assertFalse(any(u["LoggedIn"] for u in users))

    def test_policies_scope_to_actions_and_clusters(self):
        c = self.hsm_as(ONE_CLUSTER)
        ids = [x["ClusterId"] for x in c.describe_clusters()["Clusters"]]
        self.assertIn(self.cluster.id, ids)
        self.assertDenied(c.create_cluster, HsmType=fx.HSM_TYPE, SubnetIds=fx.new_subnets(1))
        self.assertDenied(c.delete_cluster, ClusterId=self.cluster.id)
        status, parsed = self.admin_as(ONE_CLUSTER, "ListUsers", ClusterId=self.cluster.id)
        self.assertEqual(status, 200, parsed)
        status, parsed = self.admin_as(ONE_CLUSTER, "SimulateFailure", ClusterId=self.cluster.id,
                                       Kind="none")
        self.assertEqual(h.error_type(parsed), "CloudHsmAccessDeniedException")
        # Login is allowed on this cluster's ARN only.
        status, parsed = self.admin_as(ONE_CLUSTER, "Login", ClusterId="cluster-234567abcde",
                                       Username=fx.KMSUSER, Password=fx.KMSUSER_PASSWORD)
        self.assertEqual(h.error_type(parsed), "CloudHsmAccessDeniedException")

        # An explicit Deny on the cluster wins over cloudhsm:*.
        d = self.hsm_as(DENY_DELETE)
        self.assertDenied(d.delete_hsm, ClusterId=self.cluster.id, HsmId=self.cluster.hsm_ids[0])
        status, parsed = self.admin_as(DENY_DELETE, "DeleteUser", ClusterId=self.cluster.id,
                                       Username=fx.KMSUSER)
        self.assertEqual(h.error_type(parsed), "CloudHsmAccessDeniedException")
        status, parsed = self.admin_as(DENY_DELETE, "ListUsers", ClusterId=self.cluster.id)
        self.assertEqual(status, 200, parsed)
        self.assertEqual(len(fx.active_hsms(fx.cloudhsm_client(self.server), self.cluster.id)), 1)


if __name__ == "__main__":
    import unittest
    unittest.main()
