"""External key stores (EXTERNAL_KEY_STORE) end to end: the six custom key
store operations driven by boto3 against a real kmsd, reaching XKS proxies
over real TLS on loopback (--xks-connect-to, --xks-ca-bundle) - the stand-in
proxy that misbehaves on request (xks_standin.py) - and VPC endpoint services
from a real registry file (--vpc-endpoint-services).

Covered: create / describe (XksProxyConfiguration, never the secret; the
defaulted VPC endpoint service owner) / update (what may change while
CONNECTED, what needs DISCONNECTED) / connect / disconnect / delete; the model
exceptions of Create and Update that a proxy or the registry decides;
uniqueness within a Region across accounts, with host names compared
whatever their case; a VPC_ENDPOINT_SERVICE Create that does not contact the
proxy; each XKS ConnectionErrorCode provoked and then recovered from
(disconnect, fix, connect), INTERNAL_ERROR included (kmsd's CA bundle gone, a
stored secret damaged in the SQLite file); a ciphertext of a KMS key in the
store, made before the failures, refused while the store is FAILED or
DISCONNECTED and decrypting after each recovery and after a kmsd restart."""
import json
import os
import sys
import tempfile
import time
import unittest

import botocore.exceptions

import kmsd_harness as h
import xks_certs
from xks_standin import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET, StandIn

HOST = "xks.example.com"
VPC_HOST = "xks-vpc.example.com"
ENDPOINT = "https://" + HOST
VPC_ENDPOINT = "https://" + VPC_HOST
SVC_OK = "com.amazonaws.vpce.us-east-1.vpce-svc-0a0000000000000a0"
SVC_INVALID = "com.amazonaws.vpce.us-east-1.vpce-svc-0b0000000000000b0"
SVC_UNKNOWN = "com.amazonaws.vpce.us-east-1.vpce-svc-0f0000000000000f0"
ACCOUNT = "111122223333"
OTHER_SECRET = "b3RoZXItc2VjcmV0LWZvci1rbXNkLXhrcy10ZXN0cy1yb3RhdGVk"
OTHER_KEY_ID = "AKIAOTHERXKSPROXYKEY"
# What the ciphertexts that must outlive failures and restarts hold.
PLAINTEXT = b"made before the store failed"
CONTEXT = {"made": "before-the-failures"}
# KMS's shortest deletion window, and a minute more for the clock jump.
DELETION_WINDOW_S = 7 * 86400 + 60


def registry(proxy, services=("ok", "invalid")):
    entries = []
    if "ok" in services:
        entries.append({"service_name": SVC_OK, "owner": ACCOUNT, "private_dns_name": VPC_HOST,
                        "private_dns_state": "verified", "acceptance_required": False,
                        "allowed_principals": ["cks.kms.us-east-1.amazonaws.com"],
                        "availability_zones": ["us-east-1a", "us-east-1b"],
                        "forward_to": proxy.forward_to()})
    if "invalid" in services:
        entries.append({"service_name": SVC_INVALID, "owner": ACCOUNT,
                        "private_dns_name": "xks-bad.example.com",
                        "private_dns_state": "verified", "acceptance_required": True,
                        "allowed_principals": ["cks.kms.us-east-1.amazonaws.com"],
                        "availability_zones": ["us-east-1a"],
                        "forward_to": proxy.forward_to()})
    return {"services": entries}


class ExternalKeyStoreTest(h.KmsdBaseTestCase):
    """One kmsd, one stand-in proxy for PUBLIC_ENDPOINT stores and one behind
    a VPC endpoint service, shared by the class; every test leaves the
    proxies as it found them (reset in setUp)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="xks-ks-")
        cls.certs = xks_certs.make_certs(os.path.join(cls.tmp, "certs"), hostname=HOST)
        cls.vpc_certs = xks_certs.make_certs(os.path.join(cls.tmp, "vpc-certs"), hostname=VPC_HOST)
        # One CA bundle trusting both sets' CAs.
        cls.ca_bundle = os.path.join(cls.tmp, "ca.pem")
        with open(cls.ca_bundle, "w") as out:
            for path in (cls.certs.ca, cls.vpc_certs.ca):
                with open(path) as f:
                    out.write(f.read())
        cls.proxy = StandIn(cert=cls.certs.good)
        cls.vpc_proxy = StandIn(cert=cls.vpc_certs.good)
        cls.registry_path = os.path.join(cls.tmp, "vpc.json")
        cls.write_registry(("ok", "invalid"))
        # Two accounts: what must be unique in a Region is so across them.
        # The admin API (the first root marked admin) moves the clock past a
        # key's deletion window: a store that held a KMS key can be deleted
        # only once the key is, and every test leaves no store behind.
        credentials = h.two_roots_credentials()
        credentials["principals"][0]["admin"] = True
        cls.server = h.KmsdServer(args=[
            "--enable-admin-api",
            "--xks-ca-bundle", cls.ca_bundle,
            "--xks-connect-to", cls.proxy.connect_to(HOST),
            "--vpc-endpoint-services", cls.registry_path,
            "--xks-health-interval", "300"], credentials=credentials)
        try:
            cls.server.start()
            cls.kms = h.kms_client(cls.server)
            cls.other = h.kms_client(cls.server, access_key=h.OTHER_ROOT_KEY,
                                     secret=h.OTHER_ROOT_SECRET)
        except Exception:
            cls.cleanup_all()
            raise

    @classmethod
    def write_registry(cls, services):
        with open(cls.registry_path, "w") as f:
            json.dump(registry(cls.vpc_proxy, services), f)

    @classmethod
    def cleanup_all(cls):
        cls.proxy.stop()
        cls.vpc_proxy.stop()
        cls.server.cleanup()
        cls.certs.cleanup()
        cls.vpc_certs.cleanup()

    @classmethod
    def tearDownClass(cls):
        cls.cleanup_all()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        for p, certs in ((self.proxy, self.certs), (self.vpc_proxy, self.vpc_certs)):
            if not p.running:
                p.start()
            p.reset()
            p.set_credentials({DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET})
            p.set_tls(cert=certs.good)
            p.drop_connections()
        self._n = getattr(self, "_n", 0)

    # -- helpers ------------------------------------------------------------

    def create(self, name, path=None, secret=DEFAULT_SECRET, key_id=DEFAULT_ACCESS_KEY_ID,
               kms=None, **extra):
        path = path or "/%s/kms/xks/v1" % name
        self.serve(path)
        args = dict(CustomKeyStoreName=name, CustomKeyStoreType="EXTERNAL_KEY_STORE",
                    XksProxyUriEndpoint=ENDPOINT, XksProxyUriPath=path,
                    XksProxyConnectivity="PUBLIC_ENDPOINT",
                    XksProxyAuthenticationCredential={"AccessKeyId": key_id,
                                                      "RawSecretAccessKey": secret})
        args.update(extra)
        return (kms or self.kms).create_custom_key_store(**args)["CustomKeyStoreId"]

    def serve(self, path):
        """Make both stand-ins serve the XKS API under `path`."""
        self.proxy.uri_path = path
        self.vpc_proxy.uri_path = path

    def create_vpc(self, name, service=SVC_OK, endpoint=VPC_ENDPOINT, **extra):
        return self.create(name, XksProxyConnectivity="VPC_ENDPOINT_SERVICE",
                           XksProxyUriEndpoint=endpoint, XksProxyVpcEndpointServiceName=service,
                           **extra)

    def describe(self, cks_id, kms=None):
        return (kms or self.kms).describe_custom_key_stores(
            CustomKeyStoreId=cks_id)["CustomKeyStores"][0]

    def wait_state(self, cks_id, states=("CONNECTED", "FAILED"), timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            entry = self.describe(cks_id)
            if entry["ConnectionState"] in states:
                return entry
            if time.monotonic() > deadline:
                self.fail("store %s stayed %s" % (cks_id, entry["ConnectionState"]))
            time.sleep(0.05)

    def connect(self, cks_id):
        """Connect and wait for the outcome.  A connect that timed out is
        made once more: the stand-in is a Python thread, and under a loaded
        CI machine it can miss kmsd's 250 ms deadline without being told
        to.  A test that makes the proxy slow on purpose gets
        XKS_PROXY_TIMED_OUT again, so nothing it asserts is hidden."""
        self.kms.connect_custom_key_store(CustomKeyStoreId=cks_id)
        entry = self.wait_state(cks_id)
        if entry.get("ConnectionErrorCode") == "XKS_PROXY_TIMED_OUT":
            sys.stderr.write("connect of %s timed out; connecting once more\n" % cks_id)
            self.kms.disconnect_custom_key_store(CustomKeyStoreId=cks_id)
            self.kms.connect_custom_key_store(CustomKeyStoreId=cks_id)
            entry = self.wait_state(cks_id)
        return entry

    def disconnect(self, cks_id):
        self.kms.disconnect_custom_key_store(CustomKeyStoreId=cks_id)
        self.assertEqual(self.describe(cks_id)["ConnectionState"], "DISCONNECTED")

    def remove(self, cks_id, kms=None):
        kms = kms or self.kms
        if self.describe(cks_id, kms)["ConnectionState"] != "DISCONNECTED":
            kms.disconnect_custom_key_store(CustomKeyStoreId=cks_id)
        kms.delete_custom_key_store(CustomKeyStoreId=cks_id)

    def assertFailsWith(self, cks_id, code, while_failed=None):
        """Connect ends FAILED with `code`; `while_failed()` then runs (the
        store still FAILED).  The store is left DISCONNECTED."""
        try:
            entry = self.connect(cks_id)
            self.assertEqual(entry["ConnectionState"], "FAILED", entry)
            self.assertEqual(entry.get("ConnectionErrorCode"), code, entry)
            # FAILED: connect again only after a disconnect; delete neither.
            self.assertKmsError("CustomKeyStoreInvalidStateException",
                                self.kms.connect_custom_key_store, CustomKeyStoreId=cks_id)
            self.assertKmsError("CustomKeyStoreInvalidStateException",
                                self.kms.delete_custom_key_store, CustomKeyStoreId=cks_id)
            if while_failed:
                while_failed()
        finally:
            self.disconnect(cks_id)

    def assertRecovers(self, cks_id, while_connected=None):
        """Connect ends CONNECTED with no code; `while_connected()` then runs.
        The store is left DISCONNECTED, whatever fails."""
        entry = self.connect(cks_id)
        try:
            self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
            self.assertNotIn("ConnectionErrorCode", entry)
            if while_connected:
                while_connected()
        finally:
            if self.describe(cks_id)["ConnectionState"] != "DISCONNECTED":
                self.disconnect(cks_id)

    # -- a KMS key whose ciphertext must outlive failures -------------------

    def new_key(self, cks_id, proxy, xks_key_id):
        """A KMS key in the CONNECTED store `cks_id`, backed by a new external
        key `xks_key_id` of `proxy`, and a ciphertext of PLAINTEXT under
        CONTEXT.  Returns (key metadata, ciphertext)."""
        proxy.add_key(xks_key_id)
        md = self.kms.create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=cks_id,
                                 XksKeyId=xks_key_id)["KeyMetadata"]
        blob = self.kms.encrypt(KeyId=md["KeyId"], Plaintext=PLAINTEXT,
                                EncryptionContext=CONTEXT)["CiphertextBlob"]
        # The context is bound: the later checks decrypt under the right one.
        self.assertKmsError("InvalidCiphertextException", self.kms.decrypt, CiphertextBlob=blob,
                            EncryptionContext={"made": "after-the-failures"})
        self.assertDecrypts(md, blob, proxy, "before any failure")
        return md, blob

    def assertDecrypts(self, md, blob, proxy, when):
        """`blob` decrypts under CONTEXT to PLAINTEXT, its outer layer opened
        by `proxy` (real AES-GCM with the external key's material): one
        authenticated Decrypt for the key's external key, answered 200."""
        xks_key_id = md["XksKeyConfiguration"]["Id"]
        msg = "the old ciphertext %s" % when
        proxy.clear_requests()
        try:
            out = self.kms.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)
        except botocore.exceptions.ClientError as e:
            self.fail("%s: Decrypt failed: %r" % (msg, e.response["Error"]))
        self.assertEqual(out["Plaintext"], PLAINTEXT, msg)
        self.assertEqual(out["KeyId"], md["Arn"], msg)
        sent = [(r.status, r.authenticated) for r in proxy.requests("decrypt")
                if r.key_id == xks_key_id]
        self.assertEqual(sent, [(200, True)], msg)

    def assertUnusable(self, blob, when):
        """The key of a store that is not CONNECTED cannot decrypt."""
        try:
            self.kms.decrypt(CiphertextBlob=blob, EncryptionContext=CONTEXT)
        except botocore.exceptions.ClientError as e:
            self.assertEqual(e.response["Error"]["Code"], "KMSInvalidStateException",
                             "the old ciphertext %s: %r" % (when, e.response["Error"]))
        else:
            self.fail("the old ciphertext decrypted %s" % when)

    def delete_keys(self, key_ids):
        """Delete KMS keys of external key stores for good (their stores can
        be deleted only then): the shortest window scheduled, kmsd's clock
        moved past it and the sweep run; then a restart takes the clock back
        to the system's, and the timers kmsd set from it (the next health
        check) with it."""
        if not key_ids:
            return
        for key_id in key_ids:
            self.kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        h.advance_clock(self.server, DELETION_WINDOW_S)
        h.sweep(self.server)
        self.server.restart()
        for key_id in key_ids:
            self.assertKmsError("NotFoundException", self.kms.describe_key, KeyId=key_id)

    # -- the life of a store ------------------------------------------------

    def test_life_cycle_and_describe(self):
        cks = self.create("life")
        try:
            entry = self.describe(cks)
            self.assertEqual(entry["CustomKeyStoreType"], "EXTERNAL_KEY_STORE")
            self.assertEqual(entry["ConnectionState"], "DISCONNECTED")
            self.assertEqual(entry["XksProxyConfiguration"], {
                "Connectivity": "PUBLIC_ENDPOINT", "AccessKeyId": DEFAULT_ACCESS_KEY_ID,
                "UriEndpoint": ENDPOINT, "UriPath": "/life/kms/xks/v1"})
            self.assertNotIn("CloudHsmClusterId", entry)
            self.assertNotIn(DEFAULT_SECRET, json.dumps(entry, default=str))
            # Create asked the proxy for its health, signed with the credential.
            health = [r for r in self.proxy.requests("health") if r.path.startswith("/life/")]
            self.assertTrue(health)
            self.assertTrue(all(r.authenticated for r in health))
            self.assertEqual(health[-1].json["requestMetadata"]["kmsOperation"],
                             "CreateCustomKeyStore")

            entry = self.connect(cks)
            self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
            # Connected: name, credential and path may change; the rest may not.
            self.kms.update_custom_key_store(CustomKeyStoreId=cks, NewCustomKeyStoreName="life2")
            self.serve("/life2/kms/xks/v1")
            self.kms.update_custom_key_store(CustomKeyStoreId=cks,
                                             XksProxyUriPath="/life2/kms/xks/v1")
            self.proxy.set_credentials({DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET,
                                        OTHER_KEY_ID: OTHER_SECRET})
            self.kms.update_custom_key_store(
                CustomKeyStoreId=cks, XksProxyAuthenticationCredential={
                    "AccessKeyId": OTHER_KEY_ID, "RawSecretAccessKey": OTHER_SECRET})
            entry = self.describe(cks)
            self.assertEqual(entry["CustomKeyStoreName"], "life2")
            self.assertEqual(entry["ConnectionState"], "CONNECTED")
            self.assertEqual(entry["XksProxyConfiguration"]["UriPath"], "/life2/kms/xks/v1")
            self.assertEqual(entry["XksProxyConfiguration"]["AccessKeyId"], OTHER_KEY_ID)
            for kwargs in ({"XksProxyUriEndpoint": "https://xks2.example.com"},
                           {"XksProxyConnectivity": "VPC_ENDPOINT_SERVICE",
                            "XksProxyUriEndpoint": VPC_ENDPOINT,
                            "XksProxyVpcEndpointServiceName": SVC_OK}):
                with self.subTest(**kwargs):
                    self.assertKmsError("CustomKeyStoreInvalidStateException",
                                        self.kms.update_custom_key_store, CustomKeyStoreId=cks,
                                        **kwargs)
            self.assertKmsError("CustomKeyStoreInvalidStateException",
                                self.kms.delete_custom_key_store, CustomKeyStoreId=cks)
            # Connect on CONNECTED is a no-op.
            self.kms.connect_custom_key_store(CustomKeyStoreId=cks)
            self.disconnect(cks)
            self.assertKmsError("CustomKeyStoreInvalidStateException",
                                self.kms.disconnect_custom_key_store, CustomKeyStoreId=cks)
            # Disconnected: the endpoint may change (the proxy must answer there).
            self.serve("/life3/kms/xks/v1")
            self.kms.update_custom_key_store(CustomKeyStoreId=cks,
                                             XksProxyUriPath="/life3/kms/xks/v1")
        finally:
            self.remove(cks)
        for op in (self.kms.describe_custom_key_stores, self.kms.connect_custom_key_store,
                   self.kms.disconnect_custom_key_store, self.kms.delete_custom_key_store,
                   self.kms.update_custom_key_store):
            with self.subTest(op=op.__name__):
                self.assertKmsError("CustomKeyStoreNotFoundException", op, CustomKeyStoreId=cks)

    def test_validation_of_members(self):
        base = dict(CustomKeyStoreType="EXTERNAL_KEY_STORE", XksProxyUriEndpoint=ENDPOINT,
                    XksProxyUriPath="/v/kms/xks/v1", XksProxyConnectivity="PUBLIC_ENDPOINT",
                    XksProxyAuthenticationCredential={"AccessKeyId": DEFAULT_ACCESS_KEY_ID,
                                                      "RawSecretAccessKey": DEFAULT_SECRET})
        for drop in ("XksProxyUriEndpoint", "XksProxyUriPath", "XksProxyConnectivity",
                     "XksProxyAuthenticationCredential"):
            with self.subTest(missing=drop):
                args = {k: v for k, v in base.items() if k != drop}
                self.assertKmsError("ValidationException", self.kms.create_custom_key_store,
                                    CustomKeyStoreName="v-" + drop, **args)
        self.assertKmsError("ValidationException", self.kms.create_custom_key_store,
                            CustomKeyStoreName="v-vpc", **dict(
                                base, XksProxyConnectivity="VPC_ENDPOINT_SERVICE"))
        self.assertKmsError("ValidationException", self.kms.create_custom_key_store,
                            CustomKeyStoreName="v-pub-svc", XksProxyVpcEndpointServiceName=SVC_OK,
                            **base)
        self.assertKmsError("ValidationException", self.kms.create_custom_key_store,
                            CustomKeyStoreName="v-hsm", KeyStorePassword="password1", **base)
        self.assertEqual(self.kms.describe_custom_key_stores()["CustomKeyStores"], [])

    # -- Create/Update exceptions decided by the proxy ------------------------

    def test_create_errors_from_the_proxy(self):
        cases = [
            ("XksProxyIncorrectAuthenticationCredentialException",
             lambda: self.proxy.set_mode("auth_fail")),
            ("XksProxyInvalidResponseException", lambda: self.proxy.set_mode("not_json")),
            ("XksProxyInvalidResponseException", lambda: self.proxy.set_mode("missing_field")),
            ("XksProxyInvalidResponseException", lambda: self.proxy.set_mode("wrong_type")),
            ("XksProxyInvalidConfigurationException", lambda: self.proxy.set_mode("uri_path_404")),
            ("XksProxyInvalidConfigurationException",
             lambda: self.proxy.set_mode("access_denied")),
            ("XksProxyUriUnreachableException",
             lambda: self.proxy.set_mode("all_hsms_unavailable")),
            ("XksProxyUriUnreachableException", lambda: self.proxy.set_delay(0.6)),
            ("XksProxyUriUnreachableException", self.proxy.stop),
            ("XksProxyUriUnreachableException",
             lambda: (self.proxy.set_tls(cert=self.certs.expired), self.proxy.drop_connections())),
        ]
        for i, (code, provoke) in enumerate(cases):
            with self.subTest(code=code, case=i):
                self.setUp()
                provoke()
                self.assertKmsError(code, self.create, "bad%d" % i)
        self.setUp()
        self.assertEqual(self.kms.describe_custom_key_stores()["CustomKeyStores"], [])
        # And the wrong secret: the proxy knows the key id, not this secret.
        self.assertKmsError("XksProxyIncorrectAuthenticationCredentialException", self.create,
                            "wrong-secret", secret=OTHER_SECRET)

    def test_update_errors_from_the_proxy_change_nothing(self):
        cks = self.create("upd")
        try:
            self.assertKmsError("XksProxyIncorrectAuthenticationCredentialException",
                                self.kms.update_custom_key_store, CustomKeyStoreId=cks,
                                XksProxyAuthenticationCredential={
                                    "AccessKeyId": OTHER_KEY_ID,
                                    "RawSecretAccessKey": OTHER_SECRET})
            self.proxy.set_mode("uri_path_404")
            self.assertKmsError("XksProxyInvalidConfigurationException",
                                self.kms.update_custom_key_store, CustomKeyStoreId=cks,
                                XksProxyUriPath="/elsewhere/kms/xks/v1")
            self.serve("/elsewhere/kms/xks/v1")
            self.proxy.set_mode("not_json")
            self.assertKmsError("XksProxyInvalidResponseException",
                                self.kms.update_custom_key_store, CustomKeyStoreId=cks,
                                XksProxyUriPath="/elsewhere/kms/xks/v1")
            self.proxy.stop()
            self.assertKmsError("XksProxyUriUnreachableException",
                                self.kms.update_custom_key_store, CustomKeyStoreId=cks,
                                XksProxyUriPath="/elsewhere/kms/xks/v1")
            # A rename needs no proxy.
            self.kms.update_custom_key_store(CustomKeyStoreId=cks, NewCustomKeyStoreName="upd2")
            conf = self.describe(cks)["XksProxyConfiguration"]
            self.assertEqual(conf["UriPath"], "/upd/kms/xks/v1")
            self.assertEqual(conf["AccessKeyId"], DEFAULT_ACCESS_KEY_ID)
        finally:
            self.setUp()
            self.remove(cks)

    # -- uniqueness and VPC endpoint services --------------------------------

    def test_uniqueness_and_vpc_endpoint_services(self):
        a = self.create("uniq-a", path="/shared/kms/xks/v1")
        v = self.create_vpc("uniq-vpc")
        try:
            self.assertKmsError("CustomKeyStoreNameInUseException", self.create, "uniq-a")
            self.assertKmsError("XksProxyUriInUseException", self.create, "uniq-b",
                                path="/shared/kms/xks/v1")
            # A VPC store's private DNS name is its own.
            self.assertKmsError("XksProxyUriEndpointInUseException", self.create, "uniq-c",
                                XksProxyUriEndpoint=VPC_ENDPOINT)
            self.assertKmsError("XksProxyVpcEndpointServiceInUseException", self.create_vpc,
                                "uniq-d", endpoint="https://xks-vpc2.example.com")
            self.assertKmsError("XksProxyUriInUseException", self.kms.update_custom_key_store,
                                CustomKeyStoreId=self.create("uniq-e"),
                                XksProxyUriPath="/shared/kms/xks/v1")
            # Update meets the same rules.
            e = self.kms.describe_custom_key_stores(CustomKeyStoreName="uniq-e")
            e = e["CustomKeyStores"][0]["CustomKeyStoreId"]
            self.assertKmsError("CustomKeyStoreNameInUseException",
                                self.kms.update_custom_key_store, CustomKeyStoreId=e,
                                NewCustomKeyStoreName="uniq-a")
            self.assertKmsError("XksProxyUriEndpointInUseException",
                                self.kms.update_custom_key_store, CustomKeyStoreId=e,
                                XksProxyUriEndpoint=VPC_ENDPOINT)
            to_vpc = dict(CustomKeyStoreId=e, XksProxyConnectivity="VPC_ENDPOINT_SERVICE")
            self.assertKmsError("XksProxyVpcEndpointServiceInUseException",
                                self.kms.update_custom_key_store,
                                XksProxyUriEndpoint="https://xks-vpc2.example.com",
                                XksProxyVpcEndpointServiceName=SVC_OK, **to_vpc)
            self.assertKmsError("XksProxyVpcEndpointServiceNotFoundException",
                                self.kms.update_custom_key_store,
                                XksProxyUriEndpoint="https://xks-vpc2.example.com",
                                XksProxyVpcEndpointServiceName=SVC_UNKNOWN, **to_vpc)
            self.assertKmsError("XksProxyVpcEndpointServiceInvalidConfigurationException",
                                self.kms.update_custom_key_store,
                                XksProxyUriEndpoint="https://xks-bad.example.com",
                                XksProxyVpcEndpointServiceName=SVC_INVALID, **to_vpc)
            self.assertKmsError("ValidationException", self.kms.update_custom_key_store,
                                XksProxyVpcEndpointServiceName=SVC_UNKNOWN, **to_vpc)
            self.assertEqual(self.describe(e)["XksProxyConfiguration"]["Connectivity"],
                             "PUBLIC_ENDPOINT")
            conf = self.describe(v)["XksProxyConfiguration"]
            self.assertEqual(conf["Connectivity"], "VPC_ENDPOINT_SERVICE")
            self.assertEqual(conf["VpcEndpointServiceName"], SVC_OK)
            # No owner was given: AWS shows the caller's account.
            self.assertEqual(conf["VpcEndpointServiceOwner"], ACCOUNT)
            self.serve("/uniq-vpc/kms/xks/v1")
            entry = self.connect(v)
            self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
            # The VPC store's traffic went to the service's forward_to.
            self.assertTrue(self.vpc_proxy.requests("health"))
            self.disconnect(v)
        finally:
            for name in ("uniq-e",):
                found = self.kms.describe_custom_key_stores(CustomKeyStoreName=name)
                self.remove(found["CustomKeyStores"][0]["CustomKeyStoreId"])
            self.remove(a)
            self.remove(v)
        self.assertKmsError("XksProxyVpcEndpointServiceNotFoundException", self.create_vpc,
                            "vpc-unknown", service=SVC_UNKNOWN)
        self.assertKmsError("XksProxyVpcEndpointServiceInvalidConfigurationException",
                            self.create_vpc, "vpc-invalid", service=SVC_INVALID,
                            endpoint="https://xks-bad.example.com")

    def test_uniqueness_across_accounts_regions_and_case(self):
        """XksProxyUriInUse, XksProxyUriEndpointInUse and
        XksProxyVpcEndpointServiceInUse are decided over the external key
        stores of every account in the Region (the model's exceptions: "in
        this Amazon Web Services Region"), and never name another account's
        store; host names match whatever the case of their letters, paths
        only exactly; another Region is another scope."""
        a = self.create("xa-a", path="/xa/kms/xks/v1")
        v = self.create_vpc("xa-vpc")
        theirs = []
        try:
            # Another account: the same endpoint and path, as given and in
            # capitals.
            for endpoint in (ENDPOINT, "https://XKS.Example.COM"):
                with self.subTest(endpoint=endpoint):
                    err = self.assertKmsError("XksProxyUriInUseException", self.create, "xa-b",
                                              path="/xa/kms/xks/v1", kms=self.other,
                                              XksProxyUriEndpoint=endpoint)
                    self.assertNotIn(a, err["Message"])
                    self.assertIn("another account", err["Message"])
            # The same account, in mixed case: the message names its store.
            err = self.assertKmsError("XksProxyUriInUseException", self.create, "xa-c",
                                      path="/xa/kms/xks/v1",
                                      XksProxyUriEndpoint="https://Xks.Example.Com")
            self.assertIn(a, err["Message"])
            # A VPC store's private DNS name, taken by another account's
            # PUBLIC_ENDPOINT store in capitals; its VPC endpoint service,
            # taken by another account's VPC store.
            err = self.assertKmsError("XksProxyUriEndpointInUseException", self.create, "xa-d",
                                      kms=self.other, XksProxyUriEndpoint=VPC_ENDPOINT.upper()
                                      .replace("HTTPS://", "https://"))
            self.assertNotIn(v, err["Message"])
            err = self.assertKmsError("XksProxyVpcEndpointServiceInUseException", self.create_vpc,
                                      "xa-e", kms=self.other,
                                      endpoint="https://xks-vpc3.example.com")
            self.assertNotIn(v, err["Message"])
            # Paths are compared exactly: another case of the path is another
            # address, which the other account may use on the same proxy.
            theirs.append(self.create("xa-f", path="/XA/kms/xks/v1", kms=self.other))
            # ... and which is then the other account's, for this one too.
            err = self.assertKmsError("XksProxyUriInUseException", self.create, "xa-g",
                                      path="/XA/kms/xks/v1")
            self.assertNotIn(theirs[0], err["Message"])
            # Update meets the same scope.
            e = self.create("xa-h", path="/xa-h/kms/xks/v1")
            try:
                self.assertKmsError("XksProxyUriInUseException", self.kms.update_custom_key_store,
                                    CustomKeyStoreId=e, XksProxyUriPath="/XA/kms/xks/v1")
            finally:
                self.remove(e)
            # Describe shows each endpoint as it was given.
            self.assertEqual(self.describe(theirs[0], self.other)["XksProxyConfiguration"]
                             ["UriEndpoint"], ENDPOINT)
            # Another Region: the same address is free there.
            west = h.kms_client(self.server, region="us-west-2")
            self.proxy.region = "us-west-2"
            try:
                w = self.create("xa-west", path="/xa/kms/xks/v1", kms=west)
                self.remove(w, west)
            finally:
                self.proxy.region = "us-east-1"
        finally:
            for cks in theirs:
                self.remove(cks, self.other)
            self.remove(a)
            self.remove(v)
        self.assertEqual(self.other.describe_custom_key_stores()["CustomKeyStores"], [])

    def test_vpc_create_does_not_contact_the_proxy(self):
        """CreateCustomKeyStore sends GetHealthStatus to a PUBLIC_ENDPOINT
        proxy, but a VPC_ENDPOINT_SERVICE store's proxy is first contacted at
        ConnectCustomKeyStore (the model's XksProxyUriEndpoint: "For external
        key stores with VPC_ENDPOINT_SERVICE connectivity, KMS connects when
        you call the ConnectCustomKeyStore operation").  Its VPC endpoint
        service is still judged at Create, from the registry."""
        self.vpc_proxy.stop()
        v = self.create_vpc("vpc-quiet")
        try:
            self.assertEqual(self.describe(v)["ConnectionState"], "DISCONNECTED")
            self.assertKmsError("XksProxyVpcEndpointServiceNotFoundException", self.create_vpc,
                                "vpc-quiet-unknown", service=SVC_UNKNOWN,
                                endpoint="https://xks-vpc4.example.com")
            self.assertKmsError("XksProxyVpcEndpointServiceInvalidConfigurationException",
                                self.create_vpc, "vpc-quiet-invalid", service=SVC_INVALID,
                                endpoint="https://xks-bad.example.com")
            # The proxy is contacted at Connect, and is down.
            self.assertFailsWith(v, "XKS_PROXY_NOT_REACHABLE")
            self.vpc_proxy.start()
            self.remove(v)
            # With the proxy up, Create still sends it nothing; Connect does.
            self.vpc_proxy.clear_requests()
            v = self.create_vpc("vpc-quiet")
            self.assertEqual(self.vpc_proxy.requests(), [])
            entry = self.connect(v)
            self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
            ops = [r.request_metadata.get("kmsOperation") for r in self.vpc_proxy.requests("health")]
            self.assertEqual(ops, ["ConnectCustomKeyStore"])
        finally:
            self.setUp()
            self.remove(v)

    # -- ConnectionErrorCodes, each provoked and recovered from ---------------

    def test_internal_error_from_kmsd_itself(self):
        """INTERNAL_ERROR is kmsd failing itself, seen through Connect and
        DescribeCustomKeyStores: its --xks-ca-bundle gone (Create of a
        PUBLIC_ENDPOINT store, which asks the proxy, is KMSInternalException
        then), and a store's wrapped secret damaged in the SQLite file.  The
        log says why, naming the file or the store and never the secret;
        repaired, the store connects in the same process, and a ciphertext
        made before decrypts."""
        cks = self.create("internal")
        away = self.ca_bundle + ".away"
        keys = []
        try:
            entry = self.connect(cks)
            self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
            md, blob = self.new_key(cks, self.proxy, "internal-key")
            keys.append(md["KeyId"])
            self.disconnect(cks)
            os.rename(self.ca_bundle, away)
            try:
                self.assertFailsWith(cks, "INTERNAL_ERROR", while_failed=lambda: (
                    self.assertUnusable(blob, "while the store is FAILED with INTERNAL_ERROR "
                                        "(CA bundle gone)")))
                err = self.assertKmsError("KMSInternalException", self.create, "internal-2")
                self.assertNotIn(self.ca_bundle, err["Message"])
            finally:
                os.rename(away, self.ca_bundle)
                self.serve("/internal/kms/xks/v1")
            with open(self.server.log_path, errors="replace") as f:
                log = f.read()
            self.assertIn("XKS CA bundle %s cannot be read" % self.ca_bundle, log)
            self.assertIn("connect failed (INTERNAL_ERROR)", log)
            self.assertRecovers(cks, while_connected=lambda: self.assertDecrypts(
                md, blob, self.proxy, "after recovering from INTERNAL_ERROR (CA bundle gone)"))

            # One byte of the wrapped secret changed at rest, its length kept.
            self.server.stop()
            (wrapped,) = h.store_fetchone(self.server.data_dir,
                                          "SELECT xks_secret_wrapped FROM custom_key_stores "
                                          "WHERE cks_id=?", (cks,))
            bad = bytearray(wrapped)
            bad[len(bad) // 2] ^= 0x5A
            self.assertEqual(h.store_execute(
                self.server.data_dir,
                "UPDATE custom_key_stores SET xks_secret_wrapped=? WHERE cks_id=?",
                (bytes(bad), cks)), 1)
            self.server.start()
            self.assertFailsWith(cks, "INTERNAL_ERROR")
            with open(self.server.log_path, errors="replace") as f:
                log = f.read()
            self.assertIn("external key store %s: its stored secret cannot be unwrapped" % cks, log)
            self.assertNotIn(DEFAULT_SECRET, log)
            # Repaired by telling kmsd the credential again.
            self.kms.update_custom_key_store(CustomKeyStoreId=cks, XksProxyAuthenticationCredential={
                "AccessKeyId": DEFAULT_ACCESS_KEY_ID, "RawSecretAccessKey": DEFAULT_SECRET})
            self.assertRecovers(cks, while_connected=lambda: self.assertDecrypts(
                md, blob, self.proxy,
                "after a kmsd restart and recovering from INTERNAL_ERROR (damaged secret)"))
        finally:
            if os.path.exists(away):
                os.rename(away, self.ca_bundle)
            self.server.start()
            self.setUp()
            if self.describe(cks)["ConnectionState"] != "DISCONNECTED":
                self.disconnect(cks)
            self.delete_keys(keys)
            self.remove(cks)


    def test_connection_error_codes_and_recovery(self):
        """Each code provoked, then recovered from; a ciphertext made before
        the first is refused while the store is FAILED and DISCONNECTED and
        decrypts after every recovery, and after a kmsd restart."""
        cks = self.create("conn")
        keys = []
        try:
            entry = self.connect(cks)
            self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
            md, blob = self.new_key(cks, self.proxy, "conn-key")
            keys.append(md["KeyId"])
            self.disconnect(cks)
            self.assertUnusable(blob, "while the store is DISCONNECTED")
            cases = [
                ("XKS_PROXY_NOT_REACHABLE", self.proxy.stop),
                ("XKS_PROXY_NOT_REACHABLE", lambda: self.proxy.set_mode("all_hsms_unavailable")),
                ("XKS_PROXY_TIMED_OUT", lambda: self.proxy.set_delay(0.6)),
                ("INVALID_CREDENTIALS",
                 lambda: self.proxy.set_credentials({OTHER_KEY_ID: OTHER_SECRET})),
                ("INVALID_CREDENTIALS", lambda: self.proxy.set_mode("auth_fail")),
                ("XKS_PROXY_ACCESS_DENIED", lambda: self.proxy.set_mode("access_denied")),
                ("XKS_PROXY_INVALID_RESPONSE", lambda: self.proxy.set_mode("not_json")),
                ("XKS_PROXY_INVALID_RESPONSE", lambda: self.proxy.set_mode("missing_field")),
                ("XKS_PROXY_INVALID_RESPONSE", lambda: self.proxy.set_mode("wrong_type")),
                ("XKS_PROXY_INVALID_RESPONSE", lambda: self.proxy.set_mode("http_500")),
                ("XKS_PROXY_INVALID_CONFIGURATION", lambda: self.proxy.set_mode("uri_path_404")),
                ("XKS_PROXY_INVALID_TLS_CONFIGURATION",
                 lambda: self.proxy.set_tls(min_tls="1.0", max_tls="1.1")),
            ]
            for kind, pair in sorted(self.certs.server_kinds().items()):
                if kind != "good":
                    cases.append(("XKS_PROXY_INVALID_TLS_CONFIGURATION",
                                  lambda pair=pair: self.proxy.set_tls(cert=pair)))
            for i, (code, provoke) in enumerate(cases):
                with self.subTest(code=code, case=i):
                    self.setUp()
                    provoke()
                    self.proxy.drop_connections()
                    self.assertFailsWith(cks, code, while_failed=lambda: self.assertUnusable(
                        blob, "while the store is FAILED with %s (case %d)" % (code, i)))
                    self.setUp()
                    self.assertRecovers(cks, while_connected=lambda: self.assertDecrypts(
                        md, blob, self.proxy, "after recovering from %s (case %d)" % (code, i)))
            # A restart: the store, left CONNECTED, reconnects at start.
            self.setUp()
            entry = self.connect(cks)
            self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
            self.server.restart()
            self.assertEqual(self.wait_state(cks)["ConnectionState"], "CONNECTED")
            self.assertDecrypts(md, blob, self.proxy, "after the recoveries and a kmsd restart")
        finally:
            self.setUp()
            self.server.start()
            if self.describe(cks)["ConnectionState"] != "DISCONNECTED":
                self.disconnect(cks)
            self.delete_keys(keys)
            self.remove(cks)

    def test_vpc_codes_after_restart_and_recovery(self):
        """The registry changes under a store (a restart with another file):
        connect fails with the VPC codes, and recovers with the right file; a
        ciphertext made before decrypts after each recovery and after a
        restart that finds the store CONNECTED."""
        v = self.create_vpc("vpc-restart")
        keys = []
        try:
            entry = self.connect(v)
            self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
            md, blob = self.new_key(v, self.vpc_proxy, "vpc-restart-key")
            keys.append(md["KeyId"])
            # The service gone from the registry.
            self.write_registry(("invalid",))
            self.server.restart()
            # A store left CONNECTED stays CONNECTED (a node's restart never
            # changes a state every node shares), but this node cannot open
            # its connection: its keys are unusable here, and the log says why.
            entry = self.wait_state(v)
            self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
            self.assertUnusable(blob, "while this node cannot open its connection "
                                "(XKS_VPC_ENDPOINT_SERVICE_NOT_FOUND)")
            with open(self.server.log_path, errors="replace") as f:
                self.assertIn("custom key store %s is CONNECTED, but this node cannot open its "
                              "connection (XKS_VPC_ENDPOINT_SERVICE_NOT_FOUND)" % v, f.read())
            status, _, body = self.server.raw_request("GET", "/health")
            self.assertEqual(status, 200)
            self.assertEqual(h.parse_body(body)["customKeyStores"], {"unreachable": 1})
            self.disconnect(v)
            self.write_registry(())
            self.server.restart()
            self.assertFailsWith(v, "XKS_VPC_ENDPOINT_SERVICE_NOT_FOUND")
            self.write_registry(("ok", "invalid"))
            self.server.restart()
            self.assertRecovers(v, while_connected=lambda: self.assertDecrypts(
                md, blob, self.vpc_proxy,
                "after recovering from XKS_VPC_ENDPOINT_SERVICE_NOT_FOUND"))
            # A service that turned invalid: the same name, now one zone and
            # acceptance required.
            bad = registry(self.vpc_proxy, ("ok",))
            bad["services"][0]["acceptance_required"] = True
            with open(self.registry_path, "w") as f:
                json.dump(bad, f)
            self.server.restart()
            self.assertFailsWith(v, "XKS_VPC_ENDPOINT_SERVICE_INVALID_CONFIGURATION",
                                 while_failed=lambda: self.assertUnusable(
                                     blob, "while the store is FAILED with "
                                     "XKS_VPC_ENDPOINT_SERVICE_INVALID_CONFIGURATION"))
            self.write_registry(("ok", "invalid"))
            self.server.restart()
            self.assertRecovers(v, while_connected=lambda: self.assertDecrypts(
                md, blob, self.vpc_proxy,
                "after recovering from XKS_VPC_ENDPOINT_SERVICE_INVALID_CONFIGURATION"))
            entry = self.connect(v)
            self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
            # CONNECTED survives a restart, and so does the ciphertext.
            self.server.restart()
            self.assertEqual(self.wait_state(v)["ConnectionState"], "CONNECTED")
            self.assertDecrypts(md, blob, self.vpc_proxy, "after the recoveries and a kmsd restart")
        finally:
            self.write_registry(("ok", "invalid"))
            self.server.start()
            if self.describe(v)["ConnectionState"] != "DISCONNECTED":
                self.disconnect(v)
            self.delete_keys(keys)
            self.remove(v)

    def test_periodic_health_check(self):
        """A CONNECTED store is sent GetHealthStatus (KmsHealthCheck) every
        --xks-health-interval; a failing check is logged with its code and,
        as in KMS, leaves the store CONNECTED."""
        cks = self.create("health")
        try:
            self.assertEqual(self.connect(cks)["ConnectionState"], "CONNECTED")
            self.proxy.clear_requests()
            deadline = time.monotonic() + 5
            checks = []
            while len(checks) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
                checks = [r for r in self.proxy.requests("health")
                          if r.request_metadata
                          and r.request_metadata.get("kmsOperation") == "KmsHealthCheck"]
            self.assertGreaterEqual(len(checks), 2)
            self.assertNotIn("awsPrincipalArn", checks[0].request_metadata)
            self.proxy.stop()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with open(self.server.log_path, errors="replace") as f:
                    if "health check failed (XKS_PROXY_NOT_REACHABLE)" in f.read():
                        break
                time.sleep(0.1)
            else:
                self.fail("no failed health check in the log")
            self.assertEqual(self.describe(cks)["ConnectionState"], "CONNECTED")
        finally:
            self.setUp()
            self.remove(cks)

    def test_secret_not_in_log(self):
        cks = self.create("logcheck")
        try:
            self.connect(cks)
        finally:
            self.remove(cks)
        with open(self.server.log_path, errors="replace") as f:
            log = f.read()
        self.assertNotIn(DEFAULT_SECRET, log)
        self.assertIn("external key store proxy", log)
        # Nor on disk: the store keeps the secret only wrapped under the root key.
        data = os.path.join(self.server.data_dir)
        for name in os.listdir(data):
            if name.startswith("kmsd.db"):
                with open(os.path.join(data, name), "rb") as f:
                    self.assertNotIn(DEFAULT_SECRET.encode(), f.read(), name)


class RestartWhileConnectingTest(h.KmsdBaseTestCase):
    """kmsd killed while an external key store is CONNECTING (its proxy
    answers slowly within a long --xks-timeout): the next start connects it
    again, through the shared manager, and it ends CONNECTED."""

    def test_connecting_store_is_driven_to_an_end(self):
        tmp = tempfile.mkdtemp(prefix="xks-restart-")
        certs = xks_certs.make_certs(os.path.join(tmp, "certs"), hostname=HOST)
        self.addCleanup(certs.cleanup)
        proxy = StandIn(cert=certs.good, uri_path="/restart/kms/xks/v1")
        self.addCleanup(proxy.stop)
        server = h.KmsdServer(args=["--xks-ca-bundle", certs.ca, "--xks-timeout", "8000",
                                    "--xks-connect-to", proxy.connect_to(HOST)])
        self.addCleanup(server.cleanup)
        server.start()
        kms = h.kms_client(server)
        cks = kms.create_custom_key_store(
            CustomKeyStoreName="restart", CustomKeyStoreType="EXTERNAL_KEY_STORE",
            XksProxyUriEndpoint=ENDPOINT, XksProxyUriPath="/restart/kms/xks/v1",
            XksProxyConnectivity="PUBLIC_ENDPOINT",
            XksProxyAuthenticationCredential={"AccessKeyId": DEFAULT_ACCESS_KEY_ID,
                                              "RawSecretAccessKey": DEFAULT_SECRET}
        )["CustomKeyStoreId"]
        proxy.set_delay(6, ops={"health"})
        kms.connect_custom_key_store(CustomKeyStoreId=cks)
        state = kms.describe_custom_key_stores(CustomKeyStoreId=cks)["CustomKeyStores"][0]
        self.assertEqual(state["ConnectionState"], "CONNECTING")
        server.kill()
        proxy.reset()
        proxy.drop_connections()   # the killed kmsd's request, still in its delay
        server.start()
        kms = h.kms_client(server)
        deadline = time.monotonic() + 20
        while True:
            entry = kms.describe_custom_key_stores(CustomKeyStoreId=cks)["CustomKeyStores"][0]
            if entry["ConnectionState"] in ("CONNECTED", "FAILED"):
                break
            self.assertLess(time.monotonic(), deadline, entry)
            time.sleep(0.1)
        self.assertEqual(entry["ConnectionState"], "CONNECTED", entry)
        reqs = [r for r in proxy.requests("health")
                if r.request_metadata and r.request_metadata.get("kmsRequestId") == "recovery"]
        self.assertTrue(reqs, "no GetHealthStatus from the restart's recovery")


if __name__ == "__main__":
    unittest.main()
