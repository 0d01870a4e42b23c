"""CloudHSMv2 API of kmsd (BaldrApiService, SigV4 service cloudhsm) through
boto3 and the aws CLI: the cluster and HSM life cycle, certificates checked
with OpenSSL, and the errors the model lists for each operation."""
import json
import os
import subprocess
import tempfile
import time
import unittest

import boto3
import botocore.exceptions

from kmsd_harness import (DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, KmsdBaseTestCase, aws_env,
                          signed_request)

REGION = "us-east-1"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]


def hsm_client(server):
    return boto3.client("cloudhsmv2", endpoint_url=server.endpoint, region_name=REGION,
                        aws_access_key_id=DEFAULT_ACCESS_KEY,
                        aws_secret_access_key=DEFAULT_SECRET_KEY)


def wait_for(fn, what, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


class CloudHsmTest(KmsdBaseTestCase):
    def setUp(self):
        self.server = self.start_server()
        self.c = hsm_client(self.server)
        self.tmp = tempfile.mkdtemp()

    def cluster(self, cid):
        return self.c.describe_clusters(Filters={"clusterIds": [cid]})["Clusters"][0]

    def wait_state(self, cid, state):
        return wait_for(lambda: (lambda cl: cl if cl["State"] == state else None)(self.cluster(cid)),
                        "cluster " + state)

    def wait_hsms_active(self, cid, count):
        return wait_for(lambda: (lambda cl: cl if len(cl["Hsms"]) == count and all(
            h["State"] == "ACTIVE" for h in cl["Hsms"]) else None)(self.cluster(cid)), "HSMs")

    def sign_csr(self, csr, other_key=False):
        """Sign the cluster CSR with a fresh CA; returns (signed, anchor)."""
        p = lambda n: os.path.join(self.tmp, n)
        with open(p("csr.pem"), "w") as f:
            f.write(csr)
        run = lambda cmd: subprocess.run(cmd, shell=True, check=True, capture_output=True)
        run("openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -subj /CN=ca -days 2"
            % (p("ca.key"), p("ca.pem")))
        if other_key:
            # A certificate for some other key, signed by the same CA.
            run("openssl req -new -newkey rsa:2048 -nodes -keyout %s -out %s -subj /CN=x"
                % (p("x.key"), p("csr.pem")))
        run("openssl x509 -req -in %s -CA %s -CAkey %s -CAcreateserial -out %s -days 2"
            % (p("csr.pem"), p("ca.pem"), p("ca.key"), p("signed.pem")))
        def read(name):
            with open(p(name)) as f:
                return f.read()
        return read("signed.pem"), read("ca.pem")

    def test_life_cycle(self):
        cl = self.c.create_cluster(HsmType="hsm1.medium", SubnetIds=SUBNETS,
                                   TagList=[{"Key": "team", "Value": "kms"}])["Cluster"]
        cid = cl["ClusterId"]
        self.assertRegex(cid, r"^cluster-[2-7a-z]{11,16}$")
        self.assertEqual(cl["State"], "CREATE_IN_PROGRESS")
        self.assertEqual(cl["SubnetMapping"], {"us-east-1a": SUBNETS[0], "us-east-1b": SUBNETS[1]})
        self.assertEqual(cl["TagList"], [{"Key": "team", "Value": "kms"}])
        cl = self.wait_state(cid, "UNINITIALIZED")
        csr = cl["Certificates"]["ClusterCsr"]
        self.assertIn("BEGIN CERTIFICATE REQUEST", csr)
        self.assertNotIn("ClusterCertificate", cl["Certificates"])
        h = self.c.create_hsm(ClusterId=cid, AvailabilityZone="us-east-1a")["Hsm"]
        self.assertRegex(h["HsmId"], r"^hsm-[2-7a-z]{11,16}$")
        self.assertEqual((h["SubnetId"], h["EniIp"], h["State"]),
                         (SUBNETS[0], "10.0.0.10", "CREATE_IN_PROGRESS"))
        self.assertRegex(h["EniId"], r"^eni-[0-9a-f]{17}$")
        h2 = self.c.create_hsm(ClusterId=cid, AvailabilityZone="us-east-1b",
                               IpAddress="10.0.1.42")["Hsm"]
        self.assertEqual(h2["EniIp"], "10.0.1.42")
        self.wait_hsms_active(cid, 2)
        signed, anchor = self.sign_csr(csr)
        r = self.c.initialize_cluster(ClusterId=cid, SignedCert=signed, TrustAnchor=anchor)
        self.assertEqual(r["State"], "INITIALIZE_IN_PROGRESS")
        cl = self.wait_state(cid, "INITIALIZED")
        self.assertEqual(cl["Certificates"]["ClusterCertificate"].strip(), signed.strip())
        # Initializing twice is refused.
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            self.c.initialize_cluster(ClusterId=cid, SignedCert=signed, TrustAnchor=anchor)
        self.assertEqual(cm.exception.response["Error"]["Code"], "CloudHsmInvalidRequestException")
        # Delete by ENI IP, then the cluster (refused while an HSM is left).
        self.assertEqual(self.c.delete_hsm(ClusterId=cid, EniIp="10.0.1.42")["HsmId"], h2["HsmId"])
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            self.c.delete_cluster(ClusterId=cid)
        self.assertEqual(cm.exception.response["Error"]["Code"], "CloudHsmInvalidRequestException")
        self.c.delete_hsm(ClusterId=cid, HsmId=h["HsmId"])
        wait_for(lambda: not self.cluster(cid)["Hsms"], "HSMs deleted")
        self.assertEqual(self.c.delete_cluster(ClusterId=cid)["Cluster"]["State"],
                         "DELETE_IN_PROGRESS")
        self.wait_state(cid, "DELETED")
        backups = self.c.describe_backups(Filters={"clusterIds": [cid]})["Backups"]
        self.assertTrue(backups)
        self.assertTrue(all(b["BackupId"].startswith("backup-") for b in backups))

    def test_errors(self):
        def code(fn, **kw):
            with self.assertRaises(botocore.exceptions.ClientError) as cm:
                fn(**kw)
            return cm.exception.response["Error"]["Code"]
        missing = "cluster-aaaaaaaaaaa"
        nf = "CloudHsmResourceNotFoundException"
        bad = "CloudHsmInvalidRequestException"
        self.assertEqual(code(self.c.create_hsm, ClusterId=missing, AvailabilityZone="us-east-1a"), nf)
        self.assertEqual(code(self.c.delete_cluster, ClusterId=missing), nf)
        self.assertEqual(code(self.c.delete_hsm, ClusterId=missing, HsmId="hsm-aaaaaaaaaaa"), nf)
        self.assertEqual(code(self.c.initialize_cluster, ClusterId=missing, SignedCert="x",
                              TrustAnchor="y"), nf)
        self.assertEqual(code(self.c.create_cluster, HsmType="hsm1.medium", SubnetIds=SUBNETS,
                              SourceBackupId="backup-aaaaaaaaaaa"), nf)
        self.assertEqual(code(self.c.create_cluster, HsmType="hsm1.medium",
                              SubnetIds=[SUBNETS[0], SUBNETS[0]]), bad)
        self.assertEqual(code(self.c.create_cluster, HsmType="hsm1.medium", SubnetIds=SUBNETS,
                              TagList=[{"Key": "aws:x", "Value": "y"}]), "CloudHsmTagException")
        self.assertEqual(code(self.c.describe_clusters, Filters={"colour": ["x"]}), bad)
        cid = self.c.create_cluster(HsmType="hsm1.medium", SubnetIds=SUBNETS)["Cluster"]["ClusterId"]
        csr = self.wait_state(cid, "UNINITIALIZED")["Certificates"]["ClusterCsr"]
        self.assertEqual(code(self.c.create_hsm, ClusterId=cid, AvailabilityZone="us-east-1c"), bad)
        self.assertEqual(code(self.c.create_hsm, ClusterId=cid, AvailabilityZone="us-east-1a",
                              IpAddress="10.0.1.5"), bad)
        self.assertEqual(code(self.c.delete_hsm, ClusterId=cid), bad)
        self.assertEqual(code(self.c.delete_hsm, ClusterId=cid, HsmId="hsm-aaaaaaaaaaa"), nf)
        # A certificate for another key, and one not signed by the anchor.
        signed, anchor = self.sign_csr(csr, other_key=True)
        self.assertEqual(code(self.c.initialize_cluster, ClusterId=cid, SignedCert=signed,
                              TrustAnchor=anchor), bad)
        signed, _ = self.sign_csr(csr)
        _, other_anchor = self.sign_csr(csr)
        self.assertEqual(code(self.c.initialize_cluster, ClusterId=cid, SignedCert=signed,
                              TrustAnchor=other_anchor), bad)
        self.assertEqual(code(self.c.initialize_cluster, ClusterId=cid, SignedCert="not a cert",
                              TrustAnchor=other_anchor), bad)
        # Another account's principal is refused by identity policy.
        # (KMS-only identity policy: cloudhsm actions are not allowed.)

    def test_signed_for_cloudhsm_only(self):
        status, _, body = signed_request(self.server, "BaldrApiService.DescribeClusters", {},
                                         service="kms")
        self.assertEqual(status, 400)
        self.assertEqual(body["__type"], "InvalidSignatureException")
        status, _, body = signed_request(self.server, "BaldrApiService.DescribeClusters", {},
                                         service="cloudhsm")
        self.assertEqual(status, 200)
        self.assertEqual(body, {"Clusters": []})

    def cli(self, *args):
        proc = subprocess.run(["aws", "--endpoint-url", self.server.endpoint, "cloudhsmv2"] +
                              list(args) + ["--output", "json"], capture_output=True, text=True,
                              env=aws_env(self.server), timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return json.loads(proc.stdout)

    def test_aws_cli(self):
        cid = self.cli("create-cluster", "--hsm-type", "hsm1.medium",
                       "--subnet-ids", *SUBNETS)["Cluster"]["ClusterId"]
        self.wait_state(cid, "UNINITIALIZED")
        out = self.cli("describe-clusters", "--filters", "states=UNINITIALIZED")
        self.assertEqual([c["ClusterId"] for c in out["Clusters"]], [cid])
        out = self.cli("create-hsm", "--cluster-id", cid, "--availability-zone", "us-east-1b")
        self.assertEqual(out["Hsm"]["SubnetId"], SUBNETS[1])


if __name__ == "__main__":
    unittest.main()
