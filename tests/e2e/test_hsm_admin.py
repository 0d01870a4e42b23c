"""kmsd's cluster administration API (KmsdHsmAdmin.*, what hsm-cli calls)
through signed requests: activation, users, lockout after five failed
logins, change-password unlocking, login/logout state, failure simulation."""
import unittest

from kmsd_harness import KmsdBaseTestCase, signed_request
import test_cloudhsm as cloudhsm


class HsmAdminTest(KmsdBaseTestCase):
    def setUp(self):
        self.server = self.start_server()
        helper = cloudhsm.CloudHsmTest("test_errors")
        helper.server, helper.c = self.server, cloudhsm.hsm_client(self.server)
        import tempfile
        helper.tmp = tempfile.mkdtemp()
        c = helper.c
        self.cid = c.create_cluster(HsmType="hsm1.medium", SubnetIds=cloudhsm.SUBNETS)["Cluster"]["ClusterId"]
        csr = helper.wait_state(self.cid, "UNINITIALIZED")["Certificates"]["ClusterCsr"]
        c.create_hsm(ClusterId=self.cid, AvailabilityZone="us-east-1a")
        helper.wait_hsms_active(self.cid, 1)
        signed, anchor = helper.sign_csr(csr)
        c.initialize_cluster(ClusterId=self.cid, SignedCert=signed, TrustAnchor=anchor)
        helper.wait_state(self.cid, "INITIALIZED")

    def admin(self, op, **body):
        body.setdefault("ClusterId", self.cid)
        return signed_request(self.server, "KmsdHsmAdmin." + op, body, service="cloudhsm")

    def ok(self, op, **body):
        status, _, reply = self.admin(op, **body)
        self.assertEqual(status, 200, reply)
        return reply

    def fails(self, code, op, **body):
        status, _, reply = self.admin(op, **body)
        self.assertEqual((status, reply["__type"]), (400, code), reply)
        self.assertNotIn(body.get("Password", "\0"), reply["message"])
        return reply

    def users(self):
        return {u["Username"]: u for u in self.ok("ListUsers")["Users"]}

    def test_activation_and_users(self):
        self.fails("CloudHsmInvalidRequestException", "CreateUser", Username="alice",
                   Role="crypto-user", Password="password1")
        self.fails("CloudHsmInvalidRequestException", "ActivateCluster", Password="short")
        self.assertEqual(self.ok("ActivateCluster", Password="adminpass1"), {"State": "ACTIVE"})
        self.fails("CloudHsmInvalidRequestException", "ActivateCluster", Password="adminpass1")
        self.ok("CreateUser", Username="kmsuser", Role="crypto-user", Password="kmsuserpass")
        self.fails("CloudHsmInvalidRequestException", "CreateUser", Username="kmsuser",
                   Role="crypto-user", Password="kmsuserpass")
        self.fails("CloudHsmInvalidRequestException", "CreateUser", Username="bad-name",
                   Role="crypto-user", Password="kmsuserpass")
        self.fails("CloudHsmInvalidRequestException", "CreateUser", Username="bob",
                   Role="officer", Password="kmsuserpass")
        u = self.users()
        self.assertEqual(u["kmsuser"], {"Username": "kmsuser", "Role": "crypto-user",
                                        "LockedOut": False, "LoggedIn": False})
        self.assertEqual(u["admin"]["Role"], "admin")
        self.ok("DeleteUser", Username="kmsuser")
        self.fails("CloudHsmResourceNotFoundException", "DeleteUser", Username="kmsuser")
        self.fails("CloudHsmResourceNotFoundException", "ListUsers", ClusterId="cluster-aaaaaaaaaaa")
        status, _, reply = self.admin("Frobnicate")
        self.assertEqual(reply["__type"], "UnknownOperationException")

    def test_lockout_and_sessions(self):
        self.ok("ActivateCluster", Password="adminpass1")
        self.ok("CreateUser", Username="kmsuser", Role="crypto-user", Password="kmsuserpass")
        for i in range(4):
            self.fails("CloudHsmAccessDeniedException", "Login", Username="kmsuser",
                       Password="wrongpass%d" % i)
            self.assertFalse(self.users()["kmsuser"]["LockedOut"])
        r = self.fails("CloudHsmAccessDeniedException", "Login", Username="kmsuser",
                       Password="wrongpass5")
        self.assertIn("locked", r["message"])
        self.assertTrue(self.users()["kmsuser"]["LockedOut"])
        # Locked: even the right password is refused.
        r = self.fails("CloudHsmAccessDeniedException", "Login", Username="kmsuser",
                       Password="kmsuserpass")
        self.assertEqual(r["message"], "user is locked out")
        self.ok("ChangePassword", Username="kmsuser", Password="newpassword")
        self.assertFalse(self.users()["kmsuser"]["LockedOut"])
        self.fails("CloudHsmAccessDeniedException", "Login", Username="kmsuser",
                   Password="kmsuserpass")
        self.ok("Login", Username="kmsuser", Password="newpassword")
        self.assertTrue(self.users()["kmsuser"]["LoggedIn"])
        self.fails("CloudHsmInvalidRequestException", "Login", Username="kmsuser",
                   Password="newpassword")
        self.assertTrue(self.users()["kmsuser"]["LoggedIn"])
        self.ok("Logout", Username="kmsuser")
        self.assertFalse(self.users()["kmsuser"]["LoggedIn"])
        self.fails("CloudHsmInvalidRequestException", "Logout", Username="kmsuser")
        self.fails("CloudHsmResourceNotFoundException", "Login", Username="nobody",
                   Password="whatever1")

    def test_simulate_failure(self):
        for kind in ("network-errors", "subnet-not-found", "no-free-addresses",
                     "internal-error", "none"):
            self.assertEqual(self.ok("SimulateFailure", Kind=kind), {})
        self.fails("CloudHsmInvalidRequestException", "SimulateFailure", Kind="meteor")
        self.fails("CloudHsmInvalidRequestException", "SimulateFailure")

    def test_signed_for_kms_is_refused(self):
        status, _, reply = signed_request(self.server, "KmsdHsmAdmin.ListUsers",
                                          {"ClusterId": self.cid}, service="kms")
        self.assertEqual(reply["__type"], "InvalidSignatureException")


if __name__ == "__main__":
    unittest.main()
