"""cloudhsm_fixture - build real CloudHSM clusters on a kmsd for key store tests.

Custom key store tests need what a customer needs: a cluster created with
the CloudHSMv2 API, initialized with a certificate signed by their own CA
(openssl), HSMs in two Availability Zones, activated and given a `kmsuser`
crypto user through the KmsdHsmAdmin API (what hsm-cli calls).  This module
does those steps with boto3's cloudhsmv2 client and SigV4-signed admin
requests, so each suite reads as the customer's procedure.  Any suite may
import it.
"""

import os
import subprocess
import tempfile
import time

import kmsd_harness as h

HSM_TYPE = "hsm1.medium"
ADMIN_PASSWORD = "admin-password-1"
KMSUSER = "kmsuser"
KMSUSER_PASSWORD = "kmsuser-password-1"
WAIT_TIMEOUT = float(os.environ.get("KMSD_CLUSTER_TIMEOUT", "60"))


def wait_for(what, fn, timeout=WAIT_TIMEOUT, interval=0.05):
    """Poll fn() until it returns a true value (returned); AssertionError on timeout."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))


def cloudhsm_client(server, **kwargs):
    """A boto3 cloudhsmv2 client for `server` (SigV4 service cloudhsm)."""
    return h.kms_client(server, service="cloudhsmv2", **kwargs)


def admin(server, operation, **params):
    """One KmsdHsmAdmin call. Returns (status, parsed body)."""
    status, _, parsed = h.signed_request(server, "KmsdHsmAdmin." + operation, params,
                                         service="cloudhsm")
    return status, parsed


def admin_ok(server, operation, **params):
    """A KmsdHsmAdmin call that must succeed; returns the parsed body."""
    status, parsed = admin(server, operation, **params)
    if status != 200:
        raise AssertionError("KmsdHsmAdmin.%s -> %d %r\n%s" % (operation, status, parsed,
                                                              server.describe()))
    return parsed


class CertificateAuthority:
    """A throwaway CA made with the openssl command line: the trust anchor."""

    def __init__(self, workdir=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="kmsd-ca-")
        self.key = os.path.join(self.dir, "customerCA.key")
        self.cert = os.path.join(self.dir, "customerCA.crt")
        self._serial = 0
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", self.key, "-out", self.cert, "-days", "3650",
                        "-subj", "/CN=kmsd test customer CA"],
                       check=True, capture_output=True)
        with open(self.cert) as f:
            self.pem = f.read()

    def sign(self, csr_pem):
        """Sign a CSR (PEM text); returns the certificate's PEM text."""
        self._serial += 1
        csr = os.path.join(self.dir, "cluster-%d.csr" % self._serial)
        crt = os.path.join(self.dir, "cluster-%d.crt" % self._serial)
        with open(csr, "w") as f:
            f.write(csr_pem)
        subprocess.run(["openssl", "x509", "-req", "-days", "3650", "-in", csr,
                        "-CA", self.cert, "-CAkey", self.key, "-set_serial",
                        str(1000 + self._serial), "-out", crt],
                       check=True, capture_output=True)
        with open(crt) as f:
            return f.read()


def describe_cluster(hsm, cluster_id):
    clusters = hsm.describe_clusters(Filters={"clusterIds": [cluster_id]})["Clusters"]
    return clusters[0] if clusters else None


def wait_cluster_state(hsm, cluster_id, state):
    return wait_for("cluster %s %s" % (cluster_id, state),
                    lambda: (lambda c: c if c and c["State"] == state else None)(
                        describe_cluster(hsm, cluster_id)))


def active_hsms(hsm, cluster_id):
    c = describe_cluster(hsm, cluster_id)
    return [x for x in (c or {}).get("Hsms", []) if x["State"] == "ACTIVE"]


def create_hsm(hsm, cluster_id, zone):
    """CreateHsm in `zone` and wait until it is ACTIVE; returns its HsmId."""
    hsm_id = hsm.create_hsm(ClusterId=cluster_id, AvailabilityZone=zone)["Hsm"]["HsmId"]
    wait_for("HSM %s ACTIVE" % hsm_id,
             lambda: any(x["HsmId"] == hsm_id for x in active_hsms(hsm, cluster_id)))
    return hsm_id


def delete_hsm(hsm, cluster_id, hsm_id):
    """DeleteHsm and wait until the deletion has finished (DeleteCluster, like
    CloudHSM's, refuses a cluster that still has an HSM being deleted)."""
    hsm.delete_hsm(ClusterId=cluster_id, HsmId=hsm_id)

    def finished():
        c = describe_cluster(hsm, cluster_id)
        return all(x["HsmId"] != hsm_id or x["State"] == "DELETED" for x in (c or {}).get("Hsms", []))
    wait_for("HSM %s deleted" % hsm_id, finished)


_subnet_counter = [0]


def new_subnets(n):
    """n well-formed subnet ids, distinct across the run."""
    out = []
    for _ in range(n):
        _subnet_counter[0] += 1
        out.append("subnet-%08x%d" % (os.getpid() & 0xffffffff, _subnet_counter[0]))
    return out


class Cluster:
    """A cluster made through the API; attributes: id, zones, hsm_ids, trust_anchor."""

    def __init__(self, cluster_id, zones, hsm_ids, trust_anchor):
        self.id = cluster_id
        self.zones = zones
        self.hsm_ids = hsm_ids
        self.trust_anchor = trust_anchor


def make_cluster(server, ca, hsm_zones=(0, 1), nsubnets=2, activate=True,
                 kmsuser_password=KMSUSER_PASSWORD, region=h.DEFAULT_REGION,
                 initialize=True, source_backup_id=None):
    """Create a cluster on `server` the way a customer does.

    hsm_zones: zone indexes (into the cluster's subnets' zones a, b, ...)
               of the HSMs to create, in order.
    activate:  activate it (hsm-cli cluster activate) and create kmsuser
               with `kmsuser_password` (None: no kmsuser).
    Returns a Cluster."""
    hsm = cloudhsm_client(server)
    params = {"HsmType": HSM_TYPE, "SubnetIds": new_subnets(nsubnets)}
    if source_backup_id:
        params["SourceBackupId"] = source_backup_id
    created = hsm.create_cluster(**params)["Cluster"]
    cluster_id = created["ClusterId"]
    zones = [region + chr(ord("a") + i) for i in range(nsubnets)]
    trust_anchor = None
    if initialize and not source_backup_id:
        c = wait_cluster_state(hsm, cluster_id, "UNINITIALIZED")
        signed = ca.sign(c["Certificates"]["ClusterCsr"])
        hsm.initialize_cluster(ClusterId=cluster_id, SignedCert=signed, TrustAnchor=ca.pem)
        wait_cluster_state(hsm, cluster_id, "INITIALIZED")
        trust_anchor = ca.pem
    if source_backup_id:
        # A restored cluster needs no initialization, but it accepts HSMs
        # only once it has left CREATE_IN_PROGRESS.
        wait_cluster_state(hsm, cluster_id, "ACTIVE")
    hsm_ids = [create_hsm(hsm, cluster_id, zones[z]) for z in hsm_zones] if initialize else []
    if initialize and activate and not source_backup_id:
        admin_ok(server, "ActivateCluster", ClusterId=cluster_id, Password=ADMIN_PASSWORD)
        wait_cluster_state(hsm, cluster_id, "ACTIVE")
        if kmsuser_password:
            admin_ok(server, "CreateUser", ClusterId=cluster_id, Username=KMSUSER,
                     Role="crypto-user", Password=kmsuser_password)
    return Cluster(cluster_id, zones, hsm_ids, trust_anchor)


def store_entry(kms, cks_id):
    return kms.describe_custom_key_stores(CustomKeyStoreId=cks_id)["CustomKeyStores"][0]


def wait_store_state(kms, cks_id, states, timeout=WAIT_TIMEOUT):
    """Poll DescribeCustomKeyStores until ConnectionState is one of `states`
    (a string or a tuple); returns the entry."""
    if isinstance(states, str):
        states = (states,)
    return wait_for("key store %s in %s" % (cks_id, states),
                    lambda: (lambda e: e if e["ConnectionState"] in states else None)(
                        store_entry(kms, cks_id)),
                    timeout=timeout)


def create_store(kms, cluster, name, password=KMSUSER_PASSWORD):
    """CreateCustomKeyStore for `cluster`; returns the store id."""
    return kms.create_custom_key_store(CustomKeyStoreName=name, CloudHsmClusterId=cluster.id,
                                       TrustAnchorCertificate=cluster.trust_anchor,
                                       KeyStorePassword=password)["CustomKeyStoreId"]


def connect(kms, cks_id):
    """ConnectCustomKeyStore and wait for the outcome; returns the entry."""
    kms.connect_custom_key_store(CustomKeyStoreId=cks_id)
    return wait_store_state(kms, cks_id, ("CONNECTED", "FAILED"))
