"""CloudHSMv2 behaviour the model's documentation pins down, beyond the
life cycle in test_cloudhsm.py: which certificates DescribeClusters shows in
which state ("The CSR exists only when the cluster's state is
UNINITIALIZED"), a trust anchor that must be self-signed, and a fault inside
kmsd answered with the CloudHSMv2 name CloudHsmInternalFailureException
(provoked for real: the cluster's stored CSR is damaged in the SQLite file
while kmsd is stopped)."""

import os
import subprocess
import tempfile

import botocore.exceptions

import kmsd_harness as h
import cloudhsm_fixture as fx


class CloudHsmModelTest(h.KmsdBaseTestCase):

    def setUp(self):
        super().setUp()
        self.server = self.start_server()
        self.hsm = fx.cloudhsm_client(self.server)
        self.ca = fx.CertificateAuthority()

    def new_cluster(self):
        cid = self.hsm.create_cluster(HsmType=fx.HSM_TYPE,
                                      SubnetIds=fx.new_subnets(2))["Cluster"]["ClusterId"]
        return cid, fx.wait_cluster_state(self.hsm, cid, "UNINITIALIZED")

    def error(self, fn, **kwargs):
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            fn(**kwargs)
        return cm.exception.response

    def test_certificates_by_state(self):
        cid, c = self.new_cluster()
        self.assertEqual(list(c["Certificates"]), ["ClusterCsr"])
        csr = c["Certificates"]["ClusterCsr"]
        self.assertIn("BEGIN CERTIFICATE REQUEST", csr)
        # The CSR is well formed and self-signed by the cluster's key.
        p = subprocess.run(["openssl", "req", "-verify", "-noout"], input=csr, text=True,
                           capture_output=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        signed = self.ca.sign(csr)
        self.hsm.initialize_cluster(ClusterId=cid, SignedCert=signed, TrustAnchor=self.ca.pem)
        c = fx.wait_cluster_state(self.hsm, cid, "INITIALIZED")
        self.assertEqual(list(c["Certificates"]), ["ClusterCertificate"])
        self.assertEqual(c["Certificates"]["ClusterCertificate"].strip(), signed.strip())
        # Still so once ACTIVE.
        fx.create_hsm(self.hsm, cid, "us-east-1a")
        fx.admin_ok(self.server, "ActivateCluster", ClusterId=cid, Password=fx.ADMIN_PASSWORD)
        c = fx.wait_cluster_state(self.hsm, cid, "ACTIVE")
        self.assertEqual(list(c["Certificates"]), ["ClusterCertificate"])

    def test_trust_anchor_must_be_self_signed(self):
        cid, c = self.new_cluster()
        signed = self.ca.sign(c["Certificates"]["ClusterCsr"])
        # An intermediate: a certificate the customer CA issued for another key.
        work = tempfile.mkdtemp(dir=self.ca.dir)
        key, req = os.path.join(work, "i.key"), os.path.join(work, "i.csr")
        subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", req, "-subj", "/CN=intermediate"], check=True, capture_output=True)
        with open(req) as f:
            intermediate = self.ca.sign(f.read())
        r = self.error(self.hsm.initialize_cluster, ClusterId=cid, SignedCert=signed,
                       TrustAnchor=intermediate)
        self.assertEqual(r["Error"]["Code"], "CloudHsmInvalidRequestException")
        self.assertIn("self-signed", r["Error"]["Message"])
        self.assertEqual(fx.describe_cluster(self.hsm, cid)["State"], "UNINITIALIZED")

    def test_internal_failure_has_the_cloudhsm_name(self):
        cid, c = self.new_cluster()
        signed = self.ca.sign(c["Certificates"]["ClusterCsr"])
        self.server.stop()
        n = h.store_execute(self.server.data_dir,
                            "UPDATE hsm_clusters SET csr_pem = ? WHERE cluster_id = ?",
                            ("-----BEGIN CERTIFICATE REQUEST-----\ndamaged\n"
                             "-----END CERTIFICATE REQUEST-----\n", cid))
        self.assertEqual(n, 1)
        self.server.start()
        hsm = fx.cloudhsm_client(self.server)
        r = self.error(hsm.initialize_cluster, ClusterId=cid, SignedCert=signed,
                       TrustAnchor=self.ca.pem)
        self.assertEqual(r["Error"]["Code"], "CloudHsmInternalFailureException")
        self.assertEqual(r["ResponseMetadata"]["HTTPStatusCode"], 500)
        self.assertEqual(fx.describe_cluster(hsm, cid)["State"], "UNINITIALIZED")


if __name__ == "__main__":
    import unittest
    unittest.main()
