"""xks-proxy end to end: several key stores from one configuration file.

One proxy reads a YAML file (written with PyYAML when it is installed, else
JSON, which the proxy also reads) describing four key stores, each on its
own SoftHSM2 token and with its own SigV4 credentials:

  payments  authorization rules (deny wins; an allow-list of operations),
            a key allow-list, a disabled key, a secret read from a file
  locked    a rule that denies every operation: only GetHealthStatus,
            which rules never apply to, gets through
  metered   a request quota (token bucket: 2 per second, burst 3)
  long      a 128-character URI prefix, to reach the 256-character URI limit

SIGHUP reloads credentials, so a rotation is tested on `locked`.  Bad files
are refused at start with exit 1 and "FILE: key.path: reason", never
quoting a PIN or a secret.
"""

import copy
import json
import os
import signal
import tempfile
import time
import unittest

import xks_fixture as x

try:
    import yaml
except ImportError:  # the proxy reads JSON as well
    yaml = None

AKID_LOCKED = "AKIAXKSLOCKEDSTORE22"
AKID_METERED = "AKIAXKSMETEREDSTORE2"
AKID_LONG = "AKIAXKSLONGPREFIX222"
AKID_NEXT = "AKIAXKSNEXTROTATION2"
SECRET_NEXT = "cm90YXRlZC1pbi1ieS1TSUdIVVAtZm9yLXRoZS1sb2NrZWQtc3RvcmU="

LONG_PREFIX = "/" + "p" * 116 + "/kms/xks/v1"
assert len(LONG_PREFIX) == 128
# prefix + "/keys/" + id + "/metadata" is 256 characters for a 113-character id.
ID_URI_256 = "k" * 113
ID_URI_257 = "k" * 114

MALLORY = "arn:aws:iam::111122223333:user/Mallory"


def write_config(path, cfg):
    with open(path, "w") as f:
        if yaml and not path.endswith(".json"):
            yaml.safe_dump(cfg, f, default_flow_style=False, sort_keys=False)
        else:
            json.dump(cfg, f, indent=2)


class XksConfigStoresTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.pki = x.Pki()
        cls.addClassCleanup(cls.pki.cleanup)
        cls.tokens = x.SoftToken(["tok-pay", "tok-locked", "tok-metered", "tok-long"])
        cls.addClassCleanup(cls.tokens.cleanup)
        for label in ("key-1", "key-off-cfg", "secret-1", "hidden", "health-probe"):
            cls.tokens.must_create_key(label, token="tok-pay")
        cls.tokens.must_create_key("lk-1", token="tok-locked")
        cls.tokens.must_create_key("m-1", token="tok-metered")
        for label in (ID_URI_256, ID_URI_257):
            cls.tokens.must_create_key(label, token="tok-long")
        secret_file = os.path.join(cls.tokens.dir, "payments-2.secret")
        with open(secret_file, "w") as f:
            f.write(x.SECRET_2 + "\n")
        os.chmod(secret_file, 0o600)

        def store(name, prefix, creds, token, **more):
            s = {"name": name, "uri_prefix": prefix, "region": x.REGION, "credentials": creds,
                 "pkcs11_module": cls.tokens.module,
                 "tokens": [{"label": token, "pin_file": cls.tokens.pin_file()}],
                 "session_pool": 2}
            s.update(more)
            return s
        cls.cfg = {
            "listen": "127.0.0.1:0",
            "tls": {"cert": cls.pki.server[0], "key": cls.pki.server[1]},
            "log_level": "info",
            "key_stores": [
                store("payments", "/payments/kms/xks/v1",
                      [{"access_key_id": x.AKID_1, "secret_access_key": x.SECRET_1},
                       {"access_key_id": x.AKID_2, "secret_access_key_file": secret_file}],
                      "tok-pay",
                      keys=["key-1", "key-off-cfg", "secret-1"],
                      health_key="health-probe", health_interval_seconds=1,
                      disabled_keys=["key-off-cfg"],
                      authorization=[
                          {"sid": "deny-mallory", "effect": "deny",
                           "principals": ["arn:aws:iam::*:user/Mallory*"]},
                          {"sid": "deny-ebs-on-secrets", "effect": "deny",
                           "via_services": ["ebs"], "external_key_ids": ["secret-*"]},
                          {"sid": "deny-foreign-kms-keys", "effect": "deny",
                           "key_arns": ["arn:aws:kms:*:999999999999:key/*"]},
                          {"sid": "allow-crypto", "effect": "allow",
                           "operations": ["Encrypt", "Decryp?", "GenerateDataKey*", "CreateKey",
                                          "ReEncrypt"]},
                      ]),
                store("locked", "/locked/kms/xks/v1",
                      [{"access_key_id": AKID_LOCKED, "secret_access_key": x.SECRET_UNKNOWN}],
                      "tok-locked",
                      authorization=[{"sid": "deny-all", "effect": "deny", "operations": ["*"]}]),
                store("metered", "/metered/kms/xks/v1",
                      [{"access_key_id": AKID_METERED, "secret_access_key": x.SECRET_1}],
                      "tok-metered", quota={"requests_per_second": 2, "burst": 3},
                      health_key="missing-health-key"),
                store("long", LONG_PREFIX,
                      [{"access_key_id": AKID_LONG, "secret_access_key": x.SECRET_1}],
                      "tok-long"),
            ],
        }
        cls.config_path = os.path.join(cls.tokens.dir, "xks-proxy.yaml")
        write_config(cls.config_path, cls.cfg)
        cls.proxy = x.XksProxy(["--config", cls.config_path], env=cls.tokens.env())
        cls.proxy.start()
        cls.addClassCleanup(cls.proxy.cleanup)
        port, ca = cls.proxy.port, cls.pki.ca
        cls.pay = x.XksClient(port, "/payments/kms/xks/v1", ca=ca)
        cls.locked = x.XksClient(port, "/locked/kms/xks/v1", ca=ca, akid=AKID_LOCKED,
                                 secret=x.SECRET_UNKNOWN)
        cls.metered = x.XksClient(port, "/metered/kms/xks/v1", ca=ca, akid=AKID_METERED)
        cls.long = x.XksClient(port, LONG_PREFIX, ca=ca, akid=AKID_LONG)

    def expect(self, reply, status, error=None):
        self.assertEqual(reply.status, status, "%r\n%s" % (reply, self.proxy.describe()))
        if error:
            self.assertEqual(reply.error, error, reply)
        return reply.json

    def test_listening_line_names_the_key_stores(self):
        self.assertEqual(self.proxy.scheme, "https")
        self.assertTrue(self.proxy.log_lines_with("listening on https://127.0.0.1:%d" % self.proxy.port))

    # -- authorization ---------------------------------------------------------

    def test_allowed_operations_pass(self):
        for op in ("Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "ReEncrypt"):
            with self.subTest(op=op):
                enc = self.pay.encrypt("key-1", b"allowed", m=x.meta(op))
                self.expect(enc, 200)
        dec = self.pay.decrypt_reply("key-1", enc, m=x.meta("Decrypt"))
        self.assertEqual(x.unb64(self.expect(dec, 200)["plaintext"]), b"allowed")
        self.expect(self.pay.metadata("key-1"), 200)

    def test_operations_outside_the_allow_list_are_denied(self):
        for op, call in (("SomeFutureKmsApi", lambda m: self.pay.encrypt("key-1", b"a", m=m)),
                         ("DescribeKey", lambda m: self.pay.metadata("key-1", m=m)),
                         ("Decrypted", lambda m: self.pay.encrypt("key-1", b"a", m=m))):
            with self.subTest(op=op):
                self.expect(call(x.meta(op)), 403, "AccessDeniedException")

    def test_deny_wins_over_allow(self):
        rid = x.request_id()
        for who in (MALLORY, MALLORY + "-the-second"):
            with self.subTest(principal=who):
                r = self.pay.encrypt("key-1", b"a", m=x.meta("Encrypt", principal=who, rid=rid))
                self.expect(r, 403, "AccessDeniedException")
                self.assertIn("deny-mallory", r.json.get("errorMessage", ""))
        lines = self.proxy.wait_log(rid)
        self.assertTrue(lines)
        self.assertIn("deny-mallory", lines[0])
        self.assertIn("AccessDeniedException", lines[0])
        # The pattern matches the whole value: another user is allowed.
        self.expect(self.pay.encrypt("key-1", b"a", m=x.meta(
            "Encrypt", principal="arn:aws:iam::111122223333:user/NotMallory")), 200)

    def test_rules_on_via_service_key_id_and_key_arn(self):
        self.expect(self.pay.encrypt("secret-1", b"a", m=x.meta("Encrypt", via="ebs")), 403,
                    "AccessDeniedException")
        self.expect(self.pay.encrypt("key-1", b"a", m=x.meta("Encrypt", via="ebs")), 200)
        self.expect(self.pay.encrypt("secret-1", b"a", m=x.meta("Encrypt", via="rds")), 200)
        self.expect(self.pay.encrypt("secret-1", b"a", m=x.meta("Encrypt")), 200)
        foreign = "arn:aws:kms:us-east-1:999999999999:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        self.expect(self.pay.encrypt("key-1", b"a", m=x.meta("Encrypt", key_arn=foreign)), 403,
                    "AccessDeniedException")

    def test_authorization_comes_after_the_body_and_before_the_key(self):
        m = x.meta("Encrypt", principal=MALLORY)
        self.expect(self.pay.encrypt("key-1", b"", m=m), 400, "ValidationException")
        self.expect(self.pay.encrypt("no-such-key", b"a", m=m), 403, "AccessDeniedException")

    def test_health_is_exempt_from_rules(self):
        self.expect(self.locked.metadata("lk-1"), 403, "AccessDeniedException")
        self.expect(self.locked.encrypt("lk-1", b"a"), 403, "AccessDeniedException")
        j = self.expect(self.locked.health(), 200)
        self.assertEqual([e["id"] for e in j["ekmFleetDetails"]], ["tok-locked"])
        self.assertEqual(j["ekmFleetDetails"][0]["healthStatus"], "ACTIVE")

    # -- keys -----------------------------------------------------------------

    def test_disabled_key(self):
        j = self.expect(self.pay.metadata("key-off-cfg"), 200)
        self.assertEqual(j["keyStatus"], "DISABLED")
        self.expect(self.pay.encrypt("key-off-cfg", b"a"), 400, "InvalidStateException")
        enc = self.expect(self.pay.encrypt("key-1", b"a"), 200)
        self.expect(self.pay.decrypt("key-off-cfg", x.unb64(enc["ciphertext"]),
                                     x.unb64(enc["initializationVector"]),
                                     x.unb64(enc["authenticationTag"])),
                    400, "InvalidStateException")

    def test_key_allow_list(self):
        # "hidden" is on the token but not in the store's `keys`.
        self.expect(self.pay.metadata("hidden"), 404, "KeyNotFoundException")
        self.expect(self.pay.encrypt("hidden", b"a"), 404, "KeyNotFoundException")

    def test_stores_are_separate(self):
        # A key of one store is not reachable through another's prefix.
        self.expect(self.locked.health(), 200)
        self.expect(self.metered.metadata("key-1"), 404, "KeyNotFoundException")
        # Each store accepts its own credentials only.
        self.expect(self.locked.health(akid=x.AKID_1, secret=x.SECRET_1), 401,
                    "AuthenticationFailedException")
        self.expect(self.pay.health(akid=AKID_LOCKED, secret=x.SECRET_UNKNOWN), 401,
                    "AuthenticationFailedException")
        # The second credential's secret came from a file.
        self.expect(self.pay.metadata("key-1", akid=x.AKID_2, secret=x.SECRET_2), 200)
        j = self.expect(self.pay.health(), 200)
        self.assertEqual([e["id"] for e in j["ekmFleetDetails"]], ["tok-pay"])

    def test_health_key_round_trip_decides_active_or_degraded(self):
        # payments probes its test key "health-probe" (not one KMS uses: it is
        # outside the store's allow-list); metered names a key that is not there.
        j = self.expect(self.pay.health(), 200)
        self.assertEqual(j["ekmFleetDetails"][0]["healthStatus"], "ACTIVE")
        self.expect(self.pay.metadata("health-probe"), 404, "KeyNotFoundException")
        time.sleep(0.6)  # the metered bucket refills a request
        j = self.expect(self.metered.health(), 200)
        self.assertEqual(j["ekmFleetDetails"][0]["healthStatus"], "DEGRADED")

    # -- quota ------------------------------------------------------------------

    def test_quota_throttles_past_the_burst_and_serves_again(self):
        time.sleep(2)  # a full bucket
        conn = self.metered.connect()
        t0 = time.monotonic()
        try:
            replies = [self.metered.health(conn=conn) for _ in range(12)]
        finally:
            conn.close()
        elapsed = time.monotonic() - t0
        statuses = [r.status for r in replies]
        self.assertTrue(all(s in (200, 429) for s in statuses), statuses)
        self.assertEqual(statuses[:3], [200, 200, 200], statuses)
        self.assertIn(429, statuses)
        # The burst, plus what the bucket refilled (2 a second) while they ran.
        self.assertLessEqual(statuses.count(200), 3 + int(elapsed * 2) + 1, (statuses, elapsed))
        for r in replies:
            if r.status == 429:
                self.assertEqual(r.error, "ThrottlingException")
        # Another store's traffic is not throttled by this one's bucket.
        self.expect(self.pay.health(), 200)
        # Unsigned requests are refused before the quota and do not use it up.
        time.sleep(1.6)
        for _ in range(10):
            self.expect(self.metered.health(signed=False), 401, "AuthenticationFailedException")
        self.expect(self.metered.encrypt("m-1", b"after a second"), 200)
        self.expect(self.metered.health(), 200)

    # -- URI length -------------------------------------------------------------

    def test_uri_of_256_characters_is_served_and_257_is_not(self):
        self.assertEqual(len(self.long.key_path(ID_URI_256, "metadata")), 256)
        self.assertEqual(len(self.long.key_path(ID_URI_257, "metadata")), 257)
        self.assertEqual(len(self.long.key_path(ID_URI_257, "encrypt")), 256)
        self.assertEqual(self.expect(self.long.metadata(ID_URI_256), 200)["keyStatus"], "ENABLED")
        self.expect(self.long.metadata(ID_URI_257), 404, "InvalidUriPathException")
        enc = self.long.encrypt(ID_URI_257, b"at the bound")
        self.expect(enc, 200)
        self.assertEqual(x.unb64(self.expect(self.long.decrypt_reply(ID_URI_257, enc), 200)
                                 ["plaintext"]), b"at the bound")
        self.expect(self.long.encrypt(ID_URI_257 + "k", b"a"), 404, "InvalidUriPathException")
        self.expect(self.long.health(), 200)

    # -- credential rotation -------------------------------------------------------

    def test_credential_rotation_with_sighup(self):
        cfg = copy.deepcopy(self.cfg)
        locked = cfg["key_stores"][1]
        try:
            # 1. Add the next credential next to the current one.
            locked["credentials"].append({"access_key_id": AKID_NEXT,
                                          "secret_access_key": SECRET_NEXT})
            self._reload(cfg, 1)
            self.expect(self.locked.health(akid=AKID_NEXT, secret=SECRET_NEXT), 200)
            self.expect(self.locked.health(), 200)
            # 2. Retire the old one.
            locked["credentials"] = locked["credentials"][1:]
            self._reload(cfg, 2)
            self.expect(self.locked.health(akid=AKID_NEXT, secret=SECRET_NEXT), 200)
            self.expect(self.locked.health(), 401, "AuthenticationFailedException")
        finally:
            self._reload(self.cfg, 3)
        self.expect(self.locked.health(), 200)
        self.expect(self.locked.health(akid=AKID_NEXT, secret=SECRET_NEXT), 401,
                    "AuthenticationFailedException")
        self.assertNotIn(SECRET_NEXT, self.proxy.log_text())

    def _reload(self, cfg, n):
        write_config(self.config_path, cfg)
        before = len(self.proxy.log_lines_with("SIGHUP"))
        self.proxy.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while len(self.proxy.log_lines_with("SIGHUP")) <= before:
            self.assertLess(time.monotonic(), deadline, "no SIGHUP log line\n" + self.proxy.describe())
            time.sleep(0.05)
        self.assertTrue(self.proxy.log_lines_with("credentials reloaded"), self.proxy.describe())

    def test_log_holds_no_secret_or_pin(self):
        self.expect(self.pay.encrypt("key-1", b"log check"), 200)
        log = self.proxy.log_text()
        for secret in (x.SECRET_1, x.SECRET_2, x.SECRET_UNKNOWN, x.TOKEN_PIN, x.b64(b"log check")):
            self.assertNotIn(secret, log)


class XksBadConfigTest(unittest.TestCase):
    """Files the proxy must refuse at start: exit 1, FILE: key.path: reason."""

    @classmethod
    def setUpClass(cls):
        cls.pki = x.Pki()
        cls.addClassCleanup(cls.pki.cleanup)
        cls.tokens = x.SoftToken(["tok-a", "tok-b"])
        cls.addClassCleanup(cls.tokens.cleanup)
        cls.dir = tempfile.mkdtemp(prefix="xks-badcfg-", dir=cls.tokens.dir)

    def good(self):
        return {
            "listen": "127.0.0.1:0",
            "tls": {"cert": self.pki.server[0], "key": self.pki.server[1]},
            "key_stores": [
                {"name": "a", "uri_prefix": "/a/kms/xks/v1", "region": x.REGION,
                 "credentials": [{"access_key_id": x.AKID_1, "secret_access_key": x.SECRET_1}],
                 "pkcs11_module": self.tokens.module,
                 "tokens": [{"label": "tok-a", "pin": x.TOKEN_PIN}],
                 "authorization": [{"sid": "r", "effect": "allow", "principals": ["*"]}]},
                {"name": "b", "uri_prefix": "/b/kms/xks/v1", "region": x.REGION,
                 "credentials": [{"access_key_id": x.AKID_2, "secret_access_key": x.SECRET_2}],
                 "pkcs11_module": self.tokens.module,
                 "tokens": [{"label": "tok-b", "pin_file": self.tokens.pin_file()}]},
            ]}

    def refuse(self, cfg, key_path, name="bad.yaml", secrets=()):
        path = os.path.join(self.dir, name)
        if isinstance(cfg, str):
            with open(path, "w") as f:
                f.write(cfg)
        else:
            write_config(path, cfg)
        rc, out, err = x.run_proxy(["--config", path], env=self.tokens.env(), timeout=30)
        self.assertEqual(rc, 1, "exit %s; %s%s" % (rc, out, err))
        self.assertIn("%s: %s" % (path, key_path), err)
        for s in (x.SECRET_1, x.SECRET_2, x.TOKEN_PIN) + tuple(secrets):
            self.assertNotIn(s, out + err)
        return err

    def test_the_good_file_starts(self):
        # The base of every refusal below is itself accepted (JSON this time).
        path = os.path.join(self.dir, "good.json")
        write_config(path, self.good())
        proxy = x.XksProxy(["--config", path], env=self.tokens.env())
        proxy.start()
        try:
            c = x.XksClient(proxy.port, "/a/kms/xks/v1", ca=self.pki.ca)
            self.assertEqual(c.health().status, 200)
        finally:
            proxy.cleanup()

    def test_refusals_name_the_key_path(self):
        def edit(fn):
            cfg = self.good()
            fn(cfg)
            return cfg
        bad_secret = "not a valid secret because of spaces and *stars*"
        cases = [
            ("key_stores[0].credentials[0].access_key_id",
             edit(lambda c: c["key_stores"][0]["credentials"][0].update(access_key_id="AKIA-short"))),
            ("key_stores[0].credentials[0].secret_access_key",
             edit(lambda c: c["key_stores"][0]["credentials"][0].update(secret_access_key=bad_secret))),
            ("key_stores[0].colour", edit(lambda c: c["key_stores"][0].update(colour="blue"))),
            ("key_stores[0].uri_prefix", edit(lambda c: c["key_stores"][0].update(uri_prefix="/a"))),
            ("key_stores[0].region", edit(lambda c: c["key_stores"][0].update(region="US EAST"))),
            ("key_stores[0].authorization[0].effect",
             edit(lambda c: c["key_stores"][0]["authorization"][0].update(effect="maybe"))),
            ("key_stores[0].authorization[0]",
             edit(lambda c: c["key_stores"][0].update(authorization=[{"effect": "deny"}]))),
            ("key_stores[1].tokens[0].pin_file",
             edit(lambda c: c["key_stores"][1]["tokens"][0].update(
                 pin_file=os.path.join(self.dir, "missing.pin")))),
            ("key_stores[0].quota.requests_per_second",
             edit(lambda c: c["key_stores"][0].update(quota={"requests_per_second": -1}))),
            ("key_stores[1].credentials[0].access_key_id",
             edit(lambda c: c["key_stores"][1]["credentials"][0].update(access_key_id=x.AKID_1))),
            ("key_stores[0].pkcs11_module",
             edit(lambda c: c["key_stores"][0].update(pkcs11_module="/nonexistent/libp11.so"))),
            ("tls.client_subjects",
             edit(lambda c: c["tls"].update(client_subjects=[x.KMS_CLIENT_SUBJECT]))),
            ("listen", edit(lambda c: c.update(listen="127.0.0.1:70000"))),
            ("key_stores[0].credentials",
             edit(lambda c: c["key_stores"][0]["credentials"].extend(
                 [{"access_key_id": "AKIAXKSTHIRDCREDENTL", "secret_access_key": x.SECRET_2},
                  {"access_key_id": "AKIAXKSFOURTHCREDENT", "secret_access_key": x.SECRET_2}]))),
        ]
        for key_path, cfg in cases:
            with self.subTest(key_path=key_path):
                self.refuse(cfg, key_path, secrets=(bad_secret,))

    def test_yaml_strictness(self):
        text = ("listen: \"127.0.0.1:0\"\nplain_http: yes\nkey_stores:\n"
                "  - uri_prefix: /a/kms/xks/v1\n")
        self.refuse(text, "plain_http")

    def test_missing_file(self):
        path = os.path.join(self.dir, "no-such.yaml")
        rc, out, err = x.run_proxy(["--config", path], env=self.tokens.env())
        self.assertEqual(rc, 1, out + err)
        self.assertIn(path, err)

    def test_wrong_pin_in_a_file_is_refused_without_the_pin(self):
        cfg = self.good()
        cfg["key_stores"][0]["tokens"][0]["pin"] = "wrong-pin-55555"
        path = os.path.join(self.dir, "wrong-pin.yaml")
        write_config(path, cfg)
        rc, out, err = x.run_proxy(["--config", path], env=self.tokens.env())
        self.assertEqual(rc, 1, out + err)
        self.assertIn("tok-a", err)
        self.assertNotIn("wrong-pin-55555", out + err)


if __name__ == "__main__":
    unittest.main()
