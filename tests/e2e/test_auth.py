"""test_auth - SigV4 authentication and IAM-style authorization, seen from real clients.

kmsd must reject exactly what AWS KMS rejects, with the same error names and
wording, because SDKs and scripts branch on them.  Signatures are made by
botocore itself (boto3 clients, or botocore's SigV4Auth for hand-built
requests that tests then tamper with), never by code of ours.
"""

import datetime
import json
import unittest

import kmsd_harness as h

OTHER_ACCOUNT = h.OTHER_ACCOUNT


def allow_policy(*actions, deny=()):
    statements = [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]
    if deny:
        statements.append({"Effect": "Deny", "Action": list(deny), "Resource": "*"})
    return {"Version": "2012-10-17", "Statement": statements}


def principal(key, secret, account, arn, policy=None, token=None, admin=None):
    p = {"accessKeyId": key, "secretAccessKey": secret, "accountId": account, "arn": arn}
    if policy is not None:
        p["policy"] = policy
    if token is not None:
        p["sessionToken"] = token
    if admin is not None:
        p["admin"] = admin
    return p


SESSION_KEY, SESSION_SECRET = "ASIAIOSFODNN7SESSION1", "sessionSecretKey/EXAMPLE+0123456789abcdef"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLWVhc3QtMSJHMEUCIQDsessiontoken="
DESCRIBER_KEY, DESCRIBER_SECRET = "AKIAIOSFODNN7DESCRIBE", "describerSecretKey/EXAMPLE+0123456789abcd"
DENIED_KEY, DENIED_SECRET = "AKIAIOSFODNN7DENYCRKY", "deniedSecretKey/EXAMPLE+0123456789abcdefgh"
ADMIN_KEY, ADMIN_SECRET = "AKIAIOSFODNN7ALICEKMS", "aliceSecretKey/EXAMPLE+0123456789abcdefghi"
OTHER_ROOT_KEY, OTHER_ROOT_SECRET = h.OTHER_ROOT_KEY, h.OTHER_ROOT_SECRET
BOB_KEY, BOB_SECRET = "AKIAI44QH8DHBBOBUSER", "bobSecretKey/EXAMPLE+0123456789abcdefghijk"
EVE_KEY, EVE_SECRET = "AKIAI44QH8DHBEVEUSER", "eveSecretKey/EXAMPLE+0123456789abcdefghijk"

CREDENTIALS = {"principals": [
    principal(h.DEFAULT_ACCESS_KEY, h.DEFAULT_SECRET_KEY, h.DEFAULT_ACCOUNT, h.DEFAULT_ROOT_ARN,
              admin=True),
    principal(SESSION_KEY, SESSION_SECRET, h.DEFAULT_ACCOUNT,
              "arn:aws:iam::%s:role/app" % h.DEFAULT_ACCOUNT,
              policy=allow_policy("kms:*"), token=SESSION_TOKEN),
    principal(DESCRIBER_KEY, DESCRIBER_SECRET, h.DEFAULT_ACCOUNT,
              "arn:aws:iam::%s:user/describer" % h.DEFAULT_ACCOUNT,
              policy=allow_policy("kms:Describe*")),
    principal(DENIED_KEY, DENIED_SECRET, h.DEFAULT_ACCOUNT,
              "arn:aws:iam::%s:user/carol" % h.DEFAULT_ACCOUNT,
              policy=allow_policy("kms:*", deny=["kms:CreateKey"])),
    principal(ADMIN_KEY, ADMIN_SECRET, h.DEFAULT_ACCOUNT,
              "arn:aws:iam::%s:user/alice" % h.DEFAULT_ACCOUNT,
              policy=allow_policy("kms:*")),
    principal(OTHER_ROOT_KEY, OTHER_ROOT_SECRET, OTHER_ACCOUNT,
              "arn:aws:iam::%s:root" % OTHER_ACCOUNT),
    principal(BOB_KEY, BOB_SECRET, OTHER_ACCOUNT, "arn:aws:iam::%s:user/bob" % OTHER_ACCOUNT,
              policy=allow_policy("kms:*")),
    principal(EVE_KEY, EVE_SECRET, OTHER_ACCOUNT, "arn:aws:iam::%s:user/eve" % OTHER_ACCOUNT,
              policy=allow_policy("kms:ListKeys")),
]}


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class RawErrorAssertions:
    """assertRawError for suites that send hand-built requests."""

    def assertRawError(self, reply, code, status=400):
        got_status, headers, parsed = reply
        self.assertEqual(h.error_type(parsed), code, "reply: %d %r" % (got_status, parsed))
        self.assertEqual(got_status, status, "reply: %r" % (parsed,))
        self.assertRequestId(headers)
        self.assertTrue(h.error_message(parsed), "error without a message: %r" % (parsed,))
        return h.error_message(parsed)


class SignatureTest(RawErrorAssertions, h.KmsdTestCase):
    """SigV4 verification: every way a signature can be wrong."""

    credentials = CREDENTIALS

    def test_correct_raw_request_is_accepted(self):
        # The baseline every tampering test below departs from.
        status, headers, parsed = h.kms_call(self.server, "ListKeys", {})
        self.assertEqual(status, 200, parsed)
        self.assertIn("Keys", parsed)
        self.assertRequestId(headers)

    def test_wrong_secret(self):
        kms = self.client_for(h.DEFAULT_ACCESS_KEY, h.DEFAULT_SECRET_KEY[:-1] + "X")
        err = self.assertKmsError("InvalidSignatureException", kms.list_keys)
        self.assertNotIn(h.DEFAULT_SECRET_KEY, json.dumps(err))

    def test_aws_cli_reports_auth_errors(self):
        failure = h.aws_cli(self.server, "list-keys", secret="wrong", expect_error=True)
        self.assertIn("InvalidSignatureException", failure.stderr)
        failure = h.aws_cli(self.server, "list-keys", access_key="AKIAUNKNOWNKEY000000",
                            expect_error=True)
        self.assertIn("UnrecognizedClientException", failure.stderr)

    def test_body_tampered_after_signing(self):
        def tamper(req):
            req.body = json.dumps({"Limit": 2}).encode()
        reply = h.kms_call(self.server, "ListKeys", {"Limit": 1}, mutate=tamper)
        self.assertRawError(reply, "InvalidSignatureException")

    def test_signed_header_changed_after_signing(self):
        def tamper(req):
            req.set_header("X-Amz-Target", "TrentService.ListAliases")
        reply = h.kms_call(self.server, "ListKeys", {}, mutate=tamper)
        self.assertRawError(reply, "InvalidSignatureException")

    def test_stale_date(self):
        reply = h.kms_call(self.server, "ListKeys", {},
                           date=utcnow() - datetime.timedelta(minutes=10))
        message = self.assertRawError(reply, "InvalidSignatureException")
        self.assertIn("Signature expired", message)

    def test_future_date(self):
        reply = h.kms_call(self.server, "ListKeys", {},
                           date=utcnow() + datetime.timedelta(minutes=10))
        message = self.assertRawError(reply, "InvalidSignatureException")
        self.assertIn("Signature", message)

    def test_date_within_skew_is_accepted(self):
        for minutes in (-4, 4):
            status, _, parsed = h.kms_call(self.server, "ListKeys", {},
                                           date=utcnow() + datetime.timedelta(minutes=minutes))
            self.assertEqual(status, 200, "skew %d min: %r" % (minutes, parsed))

    def test_no_authorization_header(self):
        reply = h.kms_call(self.server, "ListKeys", {}, sign=False)
        self.assertRawError(reply, "MissingAuthenticationTokenException")

    def test_malformed_authorization_headers(self):
        scope = "%s/%s/us-east-1/kms/aws4_request" % (h.DEFAULT_ACCESS_KEY,
                                                      utcnow().strftime("%Y%m%d"))
        signature = "Signature=" + "0" * 64
        forms = [
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 ",
            "AWS4-HMAC-SHA256 Credential=%s" % scope,
            "AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host;x-amz-date" % scope,
            "AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, %s" % signature,
            "AWS4-HMAC-SHA256 Credential=%s, %s" % (scope, signature),
            "AWS4-HMAC-SHA256 Credential, SignedHeaders, Signature",
            "AWS4-HMAC-SHA256 Credential=%s,,,, %s" % (scope, signature),
        ]
        for form in forms:
            with self.subTest(authorization=form):
                reply = h.kms_call(self.server, "ListKeys", {},
                                   mutate=lambda req, f=form: req.set_header("Authorization", f))
                self.assertRawError(reply, "IncompleteSignatureException")

    def test_malformed_date_header(self):
        reply = h.kms_call(self.server, "ListKeys", {},
                           mutate=lambda req: req.set_header("X-Amz-Date", "yesterday"))
        self.assertRawError(reply, "IncompleteSignatureException")

    def test_unknown_access_key(self):
        kms = self.client_for("AKIAUNKNOWNKEY000000", "whatever/secret/EXAMPLEKEY0000000000000")
        self.assertKmsError("UnrecognizedClientException", kms.list_keys)

    def test_session_token_principal(self):
        good = self.client_for(SESSION_KEY, SESSION_SECRET, session_token=SESSION_TOKEN)
        key_id = good.create_key(Description="from a session")["KeyMetadata"]["KeyId"]
        self.assertEqual(good.describe_key(KeyId=key_id)["KeyMetadata"]["KeyId"], key_id)

        missing = self.client_for(SESSION_KEY, SESSION_SECRET)
        self.assertKmsError("UnrecognizedClientException", missing.list_keys)
        wrong = self.client_for(SESSION_KEY, SESSION_SECRET, session_token=SESSION_TOKEN + "x")
        self.assertKmsError("UnrecognizedClientException", wrong.list_keys)

    def test_secret_never_echoed(self):
        status, _, parsed = h.kms_call(self.server, "ListKeys", {},
                                       secret=h.DEFAULT_SECRET_KEY + "typo")
        self.assertEqual(status, 400)
        self.assertNotIn(h.DEFAULT_SECRET_KEY, json.dumps(parsed))


class SignedHeadersTest(RawErrorAssertions, h.KmsdTestCase):
    """What a signature must cover.  Signed over host and date alone, a
    captured ListKeys could be replayed within the skew window as CreateKey;
    so Host, the date header, X-Amz-Target and every other X-Amz-* header
    sent must be in SignedHeaders.  Every AWS SDK signs all of them."""

    credentials = CREDENTIALS

    def key_ids(self):
        return sorted(k["KeyId"] for k in self.kms.list_keys(Limit=1000)["Keys"])

    def test_target_changed_on_a_request_that_did_not_sign_it(self):
        before = self.key_ids()

        def replay_as_create_key(req):
            req.set_header("X-Amz-Target", "TrentService.CreateKey")
        reply = h.kms_call(self.server, "ListKeys", {}, mutate=replay_as_create_key,
                           unsigned_headers=("X-Amz-Target", "Content-Type"))
        message = self.assertRawError(reply, "InvalidSignatureException")
        self.assertIn("'X-Amz-Target' must be a 'SignedHeader'", message)
        self.assertEqual(self.key_ids(), before, "the replayed request created a key")

    def test_unsigned_target_behind_many_headers(self):
        # The signature checks look at a bounded number of headers; a target
        # placed past them must not escape the rule that it be signed.
        before = self.key_ids()

        def target_last(req):
            req.set_header("X-Amz-Target", None)
            req.headers += [["X-Filler-%d" % i, "b"] for i in range(300)]
            req.set_header("X-Amz-Target", "TrentService.CreateKey")
        reply = h.kms_call(self.server, "ListKeys", {}, mutate=target_last,
                           unsigned_headers=("X-Amz-Target", "Content-Type"))
        self.assertRawError(reply, "IncompleteSignatureException")
        self.assertEqual(self.key_ids(), before, "the replayed request created a key")

    def test_target_not_signed(self):
        reply = h.kms_call(self.server, "ListKeys", {}, unsigned_headers=("X-Amz-Target",))
        message = self.assertRawError(reply, "InvalidSignatureException")
        self.assertIn("X-Amz-Target", message)

    def test_date_not_signed(self):
        reply = h.kms_call(self.server, "ListKeys", {}, unsigned_headers=("X-Amz-Date",))
        message = self.assertRawError(reply, "InvalidSignatureException")
        self.assertIn("'X-Amz-Date' must be a 'SignedHeader'", message)

    def test_host_not_signed(self):
        reply = h.kms_call(self.server, "ListKeys", {}, unsigned_headers=("Host",))
        message = self.assertRawError(reply, "InvalidSignatureException")
        self.assertEqual(message,
                         "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")

    def test_amz_header_added_after_signing(self):
        reply = h.kms_call(self.server, "ListKeys", {},
                           mutate=lambda req: req.set_header("X-Amz-Meta-Note", "added later"))
        message = self.assertRawError(reply, "InvalidSignatureException")
        self.assertIn("'x-amz-meta-note'", message)
        self.assertNotIn("added later", message)

    def test_security_token_not_signed(self):
        reply = h.kms_call(self.server, "ListKeys", {}, access_key=SESSION_KEY,
                           secret=SESSION_SECRET, session_token=SESSION_TOKEN,
                           unsigned_headers=("X-Amz-Security-Token",))
        message = self.assertRawError(reply, "InvalidSignatureException")
        self.assertIn("'x-amz-security-token'", message)
        self.assertNotIn(SESSION_TOKEN, message)
        # Signed, the same principal is served.
        status, _, parsed = h.kms_call(self.server, "ListKeys", {}, access_key=SESSION_KEY,
                                       secret=SESSION_SECRET, session_token=SESSION_TOKEN)
        self.assertEqual(status, 200, parsed)

    def test_unsigned_content_type_is_accepted(self):
        # Either accepted value selects the same JSON parser, so an unsigned
        # Content-Type cannot change what a request does.
        status, _, parsed = h.kms_call(self.server, "ListKeys", {},
                                       unsigned_headers=("Content-Type",))
        self.assertEqual(status, 200, parsed)

    def test_headers_sdks_leave_unsigned_are_accepted(self):
        # botocore and the AWS SDKs for JavaScript, Go and Ruby never sign
        # these; X-Amzn-Trace-Id is not an X-Amz-* header.
        def add_unsigned(req):
            req.set_header("User-Agent", "aws-sdk-js/3.0.0")
            req.set_header("X-Amzn-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793")
        status, _, parsed = h.kms_call(self.server, "ListKeys", {}, mutate=add_unsigned)
        self.assertEqual(status, 200, parsed)

    def test_sdk_style_headers_signed_are_accepted(self):
        # What the JavaScript SDK v3 sends and signs on every call.
        headers = {"X-Amz-User-Agent": "aws-sdk-js/3.0.0", "amz-sdk-invocation-id": "0d8b1e52",
                   "amz-sdk-request": "attempt=1; max=3"}
        status, _, parsed = h.kms_call(self.server, "ListKeys", {}, headers=headers)
        self.assertEqual(status, 200, parsed)


FAKE_SIGNATURE = "5eed" * 16  # 64 hex digits: recognisable wherever it turns up


class AuthorizationNeverEchoedTest(RawErrorAssertions, h.KmsdBaseTestCase):
    """No reply and no log line, even at debug level, carries a signature
    from a request (or a secret): a logged signature is a request anyone
    reading the log can replay within the skew window."""

    def test_signature_never_in_reply_or_log(self):
        server = self.start_server(args=["--log-level", "debug"], credentials=CREDENTIALS)
        scope = "%s/%s/us-east-1/kms/aws4_request" % (h.DEFAULT_ACCESS_KEY,
                                                      utcnow().strftime("%Y%m%d"))
        sig = FAKE_SIGNATURE
        forms = [
            "AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=%s" % sig,
            "AWS4-HMAC-SHA256 Credential=%s, Signature=%s" % (scope, sig),
            "AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host;x-amz-date, %s" % (scope, sig),
            "AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host;x-amz-date, Signature:%s" % (
                scope, sig),
            "AWS4-HMAC-SHA256 Credential=%s;Signature=%s, SignedHeaders=host;x-amz-date" % (
                scope, sig),
            "AWS4-HMAC-SHA256 Credential=%s/%s/us-east-1/kms/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=%s" % (h.DEFAULT_ACCESS_KEY, sig, sig),
            "AWS4-HMAC-SHA256 Credential=%s/%s/%s/kms/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=%s" % (
                h.DEFAULT_ACCESS_KEY, utcnow().strftime("%Y%m%d"), sig, sig),
            "AWS4-HMAC-SHA256 Credential=%s/%s/us-east-1/%s/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=%s" % (
                h.DEFAULT_ACCESS_KEY, utcnow().strftime("%Y%m%d"), sig, sig),
            "AWS4-HMAC-SHA256 Credential=%s/%s/us-east-1/kms/%s, "
            "SignedHeaders=host;x-amz-date, Signature=%s" % (
                h.DEFAULT_ACCESS_KEY, utcnow().strftime("%Y%m%d"), sig, sig),
            "AWS4-HMAC-SHA512 Credential=%s, SignedHeaders=host;x-amz-date, Signature=%s" % (
                scope, sig),
            "%s Credential=%s, SignedHeaders=host;x-amz-date" % (sig, scope),
            sig,
            "AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=host;x-amz-date;%s, Signature=%s" % (
                scope, sig, sig),
        ]
        replies = []
        for form in forms:
            replies.append(h.kms_call(server, "ListKeys", {},
                                      mutate=lambda req, f=form: req.set_header("Authorization", f)))
        # Without a date header, AWS's message would quote the whole header.
        def no_date(req):
            req.set_header("X-Amz-Date", None)
            req.set_header("Authorization", "AWS4-HMAC-SHA256 Credential=%s, SignedHeaders="
                           "host;x-amz-date, Signature=%s" % (scope, sig))
        replies.append(h.kms_call(server, "ListKeys", {}, mutate=no_date))

        # A well-formed header whose signature is wrong.
        def wrong_signature(req):
            auth = req.get_header("Authorization")
            req.set_header("Authorization", auth[:auth.index("Signature=")] + "Signature=" + sig)
        reply = h.kms_call(server, "ListKeys", {}, mutate=wrong_signature)
        self.assertIn("does not match", self.assertRawError(reply, "InvalidSignatureException"))
        replies.append(reply)

        # The presigned (query-string) form, which kmsd does not accept.
        query = ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%s&X-Amz-Date=%s"
                 "&X-Amz-SignedHeaders=host&X-Amz-Signature=%s" % (
                     scope.replace("/", "%2F"), utcnow().strftime("%Y%m%dT%H%M%SZ"), sig))
        reply = h.kms_call(server, "ListKeys", {}, sign=False, path="/?" + query)
        self.assertRawError(reply, "MissingAuthenticationTokenException")
        replies.append(reply)

        for i, (status, headers, parsed) in enumerate(replies):
            with self.subTest(request=i):
                self.assertEqual(status, 400, parsed)
                self.assertIn(h.error_type(parsed), (
                    "IncompleteSignatureException", "InvalidSignatureException",
                    "MissingAuthenticationTokenException"), parsed)
                self.assertNotIn(sig, json.dumps(parsed))
                self.assertNotIn(sig, str(headers))
        with open(server.log_path, errors="replace") as f:
            log = f.read()
        # Debug logging was on and recorded every error's message ...
        self.assertGreaterEqual(log.count("error detail:"), len(replies), log)
        # ... and none of them holds the signature or any secret.
        self.assertNotIn(sig, log)
        self.assertNotIn(sig[:32], log)
        for p in CREDENTIALS["principals"]:
            self.assertNotIn(p["secretAccessKey"], log)


class AuthorizationTest(h.KmsdTestCase):
    """Identity policies, explicit deny and cross-account key policies."""

    credentials = CREDENTIALS

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        meta = cls.kms.create_key(Description="owned by the first account")["KeyMetadata"]
        cls.key_id, cls.key_arn = meta["KeyId"], meta["Arn"]

    def test_describe_only_user_cannot_create(self):
        kms = self.client_for(DESCRIBER_KEY, DESCRIBER_SECRET)
        err = self.assertKmsError("AccessDeniedException", kms.create_key)
        self.assertIn("arn:aws:iam::%s:user/describer" % h.DEFAULT_ACCOUNT, err["Message"])
        self.assertIn("is not authorized to perform: kms:CreateKey", err["Message"])

    def test_describe_only_user_can_describe(self):
        kms = self.client_for(DESCRIBER_KEY, DESCRIBER_SECRET)
        self.assertEqual(kms.describe_key(KeyId=self.key_id)["KeyMetadata"]["Arn"], self.key_arn)
        err = self.assertKmsError("AccessDeniedException", kms.encrypt, KeyId=self.key_id,
                                  Plaintext=b"no")
        self.assertIn("is not authorized to perform: kms:Encrypt", err["Message"])

    def test_explicit_deny_beats_allow(self):
        kms = self.client_for(DENIED_KEY, DENIED_SECRET)
        err = self.assertKmsError("AccessDeniedException", kms.create_key)
        self.assertIn("is not authorized to perform: kms:CreateKey", err["Message"])
        # Everything else is still allowed by the kms:* statement.
        self.assertIn("Keys", kms.list_keys())
        blob = kms.encrypt(KeyId=self.key_id, Plaintext=b"still allowed")["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"still allowed")

    def test_account_user_with_full_access(self):
        kms = self.client_for(ADMIN_KEY, ADMIN_SECRET)
        meta = kms.create_key(Description="alice's key")["KeyMetadata"]
        self.assertIn(":%s:key/" % h.DEFAULT_ACCOUNT, meta["Arn"])
        blob = kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"alice")["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"alice")
        # The root of the same account can use it too (default key policy).
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"alice")

    def test_cross_account_by_key_id_is_not_found(self):
        bob = self.client_for(BOB_KEY, BOB_SECRET)
        self.assertKmsError("NotFoundException", bob.describe_key, KeyId=self.key_id)
        other_root = self.client_for(OTHER_ROOT_KEY, OTHER_ROOT_SECRET)
        self.assertKmsError("NotFoundException", other_root.describe_key, KeyId=self.key_id)

    def test_cross_account_by_arn_needs_both_policies(self):
        meta = self.kms.create_key(Description="shared with another account")["KeyMetadata"]
        key_id, key_arn = meta["KeyId"], meta["Arn"]
        bob = self.client_for(BOB_KEY, BOB_SECRET)
        eve = self.client_for(EVE_KEY, EVE_SECRET)

        # The default key policy trusts only the owning account.
        err = self.assertKmsError("AccessDeniedException", bob.describe_key, KeyId=key_arn)
        self.assertIn("is not authorized to perform: kms:DescribeKey", err["Message"])
        self.assertKmsError("AccessDeniedException", bob.encrypt, KeyId=key_arn, Plaintext=b"x")

        policy = {"Version": "2012-10-17", "Statement": [
            {"Sid": "Owner", "Effect": "Allow",
             "Principal": {"AWS": h.DEFAULT_ROOT_ARN}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "OtherAccount", "Effect": "Allow",
             "Principal": {"AWS": "arn:aws:iam::%s:root" % OTHER_ACCOUNT},
             "Action": ["kms:DescribeKey", "kms:Encrypt", "kms:Decrypt"], "Resource": "*"},
        ]}
        self.kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(policy))

        # Key policy and bob's identity policy both allow: works by ARN ...
        self.assertEqual(bob.describe_key(KeyId=key_arn)["KeyMetadata"]["KeyId"], key_id)
        blob = bob.encrypt(KeyId=key_arn, Plaintext=b"across accounts")["CiphertextBlob"]
        self.assertEqual(bob.decrypt(CiphertextBlob=blob)["Plaintext"], b"across accounts")
        self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"across accounts")
        # ... still never by bare id, which names a key of the caller's own account ...
        self.assertKmsError("NotFoundException", bob.describe_key, KeyId=key_id)
        # ... and not for eve, whose identity policy does not allow the action.
        err = self.assertKmsError("AccessDeniedException", eve.describe_key, KeyId=key_arn)
        self.assertIn("is not authorized to perform: kms:DescribeKey", err["Message"])
        # A cross-account action the key policy does not grant stays denied for bob.
        err = self.assertKmsError("AccessDeniedException", bob.generate_data_key, KeyId=key_arn,
                                  KeySpec="AES_256")
        self.assertIn("is not authorized to perform: kms:GenerateDataKey", err["Message"])

    def test_keys_of_one_account_are_not_listed_in_another(self):
        other_root = self.client_for(OTHER_ROOT_KEY, OTHER_ROOT_SECRET)
        listed = {k["KeyId"] for k in other_root.list_keys()["Keys"]}
        self.assertNotIn(self.key_id, listed)


class ServiceClockTest(h.KmsdTestCase):
    """SigV4's skew window follows kmsd's movable clock, and only an admin
    principal may move it (test_admin.py has the rest of that rule)."""

    credentials = CREDENTIALS

    def test_signatures_follow_the_service_clock(self):
        self.assertEqual(h.get_clock(self.server)["OffsetSeconds"], 0)
        self.assertEqual(h.advance_clock(self.server, 3600), 3600)
        self.assertEqual(h.get_clock(self.server)["OffsetSeconds"], 3600)
        # kms_client signs at the server's time and keeps working ...
        self.assertIn("Keys", self.kms.list_keys())
        # ... a client on the wall clock is now an hour late ...
        wall = h.kms_client(self.server, follow_clock=False)
        err = self.assertKmsError("InvalidSignatureException", wall.list_keys)
        self.assertIn("Signature expired", err["Message"])
        # ... and so is a raw request signed at the wall clock.
        status, _, parsed = h.kms_call(self.server, "ListKeys", {}, date=utcnow())
        self.assertEqual(h.error_type(parsed), "InvalidSignatureException", parsed)
        self.assertEqual(h.advance_clock(self.server, -3600), 0)
        self.assertIn("Keys", wall.list_keys())

    def test_only_an_admin_may_move_the_clock(self):
        # A user with kms:* and another account's root alike are refused.
        for key, secret in ((ADMIN_KEY, ADMIN_SECRET), (OTHER_ROOT_KEY, OTHER_ROOT_SECRET)):
            status, headers, parsed = h.signed_request(
                self.server, "KmsdAdmin.AdvanceClock", {"Seconds": 60},
                access_key=key, secret=secret)
            self.assertEqual(h.error_type(parsed), "AccessDeniedException", parsed)
            self.assertEqual(status, 400)
            self.assertRequestId(headers)
        self.assertEqual(h.get_clock(self.server)["OffsetSeconds"], self.server.clock_offset)

    def test_unsigned_admin_call_is_refused(self):
        status, _, parsed = h.signed_request(self.server, "KmsdAdmin.AdvanceClock",
                                             {"Seconds": 60}, sign=False)
        self.assertEqual(h.error_type(parsed), "MissingAuthenticationTokenException", parsed)


class AdminApiOffTest(h.KmsdBaseTestCase):
    def test_admin_api_is_off_by_default(self):
        server = self.start_server()
        status, _, parsed = h.signed_request(server, "KmsdAdmin.GetClock", {})
        self.assertEqual(h.error_type(parsed), "UnknownOperationException",
                         "%d %r" % (status, parsed))


class InsecureAnyCredentialsTest(h.KmsdTestCase):
    """--insecure-any-credentials: any key pair is the default account's root."""

    server_args = ("--insecure-any-credentials",)

    def test_any_key_pair_is_accepted(self):
        kms = self.client_for("AKIAANYTHINGATALL123", "not-a-real-secret")
        meta = kms.create_key(Description="any credentials")["KeyMetadata"]
        self.assertIn(":%s:key/" % h.DEFAULT_ACCOUNT, meta["Arn"])
        other = self.client_for("AKIASOMETHINGELSE456", "another-secret")
        blob = other.encrypt(KeyId=meta["KeyId"], Plaintext=b"any")["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"any")

    def test_aws_cli_with_made_up_credentials(self):
        out = h.aws_cli(self.server, "list-keys", access_key="AKIAMADEUPCLIKEY0000",
                        secret="made-up")
        self.assertIn("Keys", out)


if __name__ == "__main__":
    unittest.main()
