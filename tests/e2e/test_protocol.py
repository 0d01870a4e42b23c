"""test_protocol - the AWS JSON 1.1 wire protocol as kmsd speaks it.

SDKs decode errors by `__type`, retry by HTTP status and log
x-amzn-RequestId; any drift from AWS here breaks clients silently.  These
tests send hand-built, properly signed requests (to reach the layers behind
SigV4) and drive real clients over plain HTTP and TLS.
"""

import base64
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import boto3
import botocore.config
import botocore.exceptions

import kmsd_harness as h

MAX_BODY = 4096


class ProtocolTest(h.KmsdTestCase):
    server_args = ("--max-body", str(MAX_BODY))

    def assertAwsError(self, reply, code, status=400):
        got_status, headers, parsed = reply
        self.assertEqual(h.error_type(parsed), code, "reply: %d %r" % (got_status, parsed))
        self.assertEqual(got_status, status, "reply: %r" % (parsed,))
        self.assertRequestId(headers)
        self.assertIn("json", headers.get("Content-Type", ""), dict(headers))
        return h.error_message(parsed)

    def test_health(self):
        status, _, body = self.server.raw_request("GET", "/health")
        self.assertEqual(status, 200, body)
        parsed = h.parse_body(body)
        self.assertEqual(parsed["status"], "ok")
        self.assertRegex(parsed["version"], r"^[0-9]+\.[0-9]+\.[0-9]+$")

    def test_unknown_target(self):
        for target in ("TrentService.NoSuchOperation", "TrentService.", "NotAService.ListKeys",
                       "TrentService.listkeys"):
            with self.subTest(target=target):
                reply = h.signed_request(self.server, target, {})
                self.assertAwsError(reply, "UnknownOperationException")

    def test_missing_target(self):
        reply = h.signed_request(self.server, None, {})
        self.assertAwsError(reply, "UnknownOperationException")

    def test_model_operation_not_served(self):
        # Multi-Region keys and asymmetric key agreement are in the model but
        # not in kmsd: a valid request must say so, not "unknown operation".
        cases = {
            "UpdatePrimaryRegion": {"KeyId": "mrk-1234abcd12ab34cd56ef1234567890ab",
                                    "PrimaryRegion": "us-west-2"},
            "ReplicateKey": {"KeyId": "mrk-1234abcd12ab34cd56ef1234567890ab",
                             "ReplicaRegion": "us-west-2"},
            "DeriveSharedSecret": {"KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab",
                                   "KeyAgreementAlgorithm": "ECDH",
                                   "PublicKey": "AAAA"},
        }
        for operation, params in cases.items():
            with self.subTest(operation=operation):
                reply = h.kms_call(self.server, operation, params)
                self.assertAwsError(reply, "UnsupportedOperationException")

    def test_malformed_json(self):
        for body in (b"{not json", b'{"Limit": 1', b"\xff\xfe", b'{"Limit": 1} trailing'):
            with self.subTest(body=body):
                reply = h.signed_request(self.server, "TrentService.ListKeys", body)
                self.assertAwsError(reply, "SerializationException")

    def test_body_over_max_body(self):
        body = json.dumps({"Limit": 1, "Marker": "x" * (2 * MAX_BODY)})
        reply = h.signed_request(self.server, "TrentService.ListKeys", body)
        self.assertAwsError(reply, "RequestEntityTooLargeException", status=413)

    def test_body_just_under_max_body(self):
        body = '{"Limit": 1}' + " " * (MAX_BODY - 100)
        status, _, parsed = h.signed_request(self.server, "TrentService.ListKeys", body)
        self.assertEqual(status, 200, parsed)

    def test_validation_message_is_awss(self):
        reply = h.kms_call(self.server, "Encrypt", {"KeyId": "", "Plaintext": "aGk="})
        message = self.assertAwsError(reply, "ValidationException")
        self.assertEqual(
            message,
            "1 validation error detected: Value '' at 'keyId' failed to satisfy constraint: "
            "Member must have length greater than or equal to 1")

    def test_validation_counts_every_error(self):
        reply = h.kms_call(self.server, "ListKeys", {"Limit": 0, "Marker": ""})
        message = self.assertAwsError(reply, "ValidationException")
        self.assertTrue(message.startswith("2 validation errors detected: "), message)
        self.assertIn("at 'limit' failed to satisfy constraint", message)
        self.assertIn("at 'marker' failed to satisfy constraint", message)

    def test_missing_required_member(self):
        reply = h.kms_call(self.server, "DescribeKey", {})
        message = self.assertAwsError(reply, "ValidationException")
        self.assertIn("'keyId'", message)
        self.assertIn("Member must not be null", message)

    def test_not_found_through_boto3(self):
        err = self.assertKmsError("NotFoundException", self.kms.describe_key,
                                  KeyId="1234abcd-12ab-34cd-56ef-1234567890ab")
        self.assertTrue(err.get("Message"))

    def test_request_id_on_success_and_error(self):
        ids = set()
        status, headers, parsed = h.kms_call(self.server, "ListKeys", {})
        self.assertEqual(status, 200, parsed)
        self.assertIn("json", headers.get("Content-Type", ""))
        ids.add(self.assertRequestId(headers))
        status, headers, parsed = h.kms_call(self.server, "DescribeKey",
                                             {"KeyId": "alias/does-not-exist"})
        self.assertEqual(h.error_type(parsed), "NotFoundException", parsed)
        ids.add(self.assertRequestId(headers))
        status, headers, parsed = h.kms_call(self.server, "ListKeys", {}, sign=False)
        ids.add(self.assertRequestId(headers))
        self.assertEqual(len(ids), 3, "request ids repeat: %r" % ids)
        # boto3 surfaces it as ResponseMetadata.RequestId.
        meta = self.kms.list_keys()["ResponseMetadata"]
        self.assertTrue(meta.get("RequestId"), meta)

    def test_keep_alive_raw(self):
        conn = self.server.connection()
        try:
            first_sock = None
            for i in range(20):
                status, headers, parsed = h.kms_call(self.server, "ListKeys", {"Limit": 1},
                                                     conn=conn)
                self.assertEqual(status, 200, "call %d: %r" % (i, parsed))
                # http.client drops its socket when the server asks to close.
                self.assertIsNotNone(conn.sock, "server closed the connection after call %d" % i)
                if first_sock is None:
                    first_sock = conn.sock
                self.assertIs(conn.sock, first_sock, "reconnected at call %d" % i)
            # An error reply must not cost the connection either.
            status, _, parsed = h.kms_call(self.server, "DescribeKey", {"KeyId": "alias/none"},
                                           conn=conn)
            self.assertEqual(h.error_type(parsed), "NotFoundException", parsed)
            self.assertIs(conn.sock, first_sock)
        finally:
            conn.close()

    def test_keep_alive_boto3(self):
        key_id = self.kms.create_key(Description="keep-alive")["KeyMetadata"]["KeyId"]
        for i in range(100):
            plaintext = ("message %d" % i).encode()
            blob = self.kms.encrypt(KeyId=key_id, Plaintext=plaintext)["CiphertextBlob"]
            self.assertEqual(self.kms.decrypt(CiphertextBlob=blob)["Plaintext"], plaintext)

    def test_aws_cli_round_trip(self):
        key = h.aws_cli(self.server, "create-key", "--description", "from the cli")
        key_id = key["KeyMetadata"]["KeyId"]
        tmp = tempfile.mkdtemp(prefix="kmsd-cli-")
        try:
            plain = os.path.join(tmp, "plain.bin")
            with open(plain, "wb") as f:
                f.write(b"\x00\x01binary\xff")
            enc = h.aws_cli(self.server, "encrypt", "--key-id", key_id,
                            "--plaintext", "fileb://" + plain)
            self.assertEqual(enc["KeyId"], key["KeyMetadata"]["Arn"])
            blob = os.path.join(tmp, "blob.bin")
            with open(blob, "wb") as f:
                f.write(base64.b64decode(enc["CiphertextBlob"]))
            dec = h.aws_cli(self.server, "decrypt", "--ciphertext-blob", "fileb://" + blob)
            self.assertEqual(base64.b64decode(dec["Plaintext"]), b"\x00\x01binary\xff")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        failure = h.aws_cli(self.server, "describe-key", "--key-id", "alias/nope",
                            expect_error=True)
        self.assertIn("NotFoundException", failure.stderr)


def make_self_signed_cert(directory):
    """A throwaway certificate for 127.0.0.1 made by the openssl command line."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


class SecretsNeverLoggedTest(h.KmsdBaseTestCase):
    """Even at --log-level debug, the log carries no plaintext, no data key
    and no secret access key: only ids, principals, outcomes and timings."""

    def test_log_has_no_secrets(self):
        server = self.start_server(args=["--log-level", "debug"])
        kms = h.kms_client(server)
        plaintext = ("kmsd-log-canary-" + os.urandom(8).hex()).encode()
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=plaintext,
                           EncryptionContext={"purpose": "log-canary"})["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=blob,
                                     EncryptionContext={"purpose": "log-canary"})["Plaintext"],
                         plaintext)
        data_key = kms.generate_data_key(KeyId=key, KeySpec="AES_256")["Plaintext"]
        # A failing call too: its error path must not echo the body either.
        with self.assertRaises(kms.exceptions.InvalidCiphertextException):
            kms.decrypt(CiphertextBlob=blob, EncryptionContext={"purpose": "other"})
        with open(server.log_path, errors="replace") as f:
            log = f.read()
        self.assertIn(key, log)  # the log does record what happened
        for secret in (plaintext, base64.b64encode(plaintext), data_key,
                       base64.b64encode(data_key), h.DEFAULT_SECRET_KEY.encode()):
            self.assertNotIn(secret.decode("latin-1"), log)


class TlsTest(h.KmsdBaseTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="kmsd-tls-")
        cls.tls = make_self_signed_cert(cls.tmp)
        cls.server = h.KmsdServer(tls=cls.tls)
        try:
            cls.server.start()
        except Exception:
            cls.server.cleanup()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_boto3_over_https(self):
        self.assertTrue(self.server.endpoint.startswith("https://"))
        kms = h.kms_client(self.server, verify=self.tls[0])
        key_id = kms.create_key(Description="over TLS")["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"tls")["CiphertextBlob"]
        self.assertEqual(kms.decrypt(CiphertextBlob=blob)["Plaintext"], b"tls")

    def test_untrusted_certificate_is_refused_by_client(self):
        kms = boto3.session.Session().client(
            "kms", endpoint_url=self.server.endpoint, region_name="us-east-1",
            aws_access_key_id=h.DEFAULT_ACCESS_KEY, aws_secret_access_key=h.DEFAULT_SECRET_KEY,
            verify=True, config=botocore.config.Config(retries={"total_max_attempts": 1}))
        with self.assertRaises(botocore.exceptions.SSLError):
            kms.list_keys()

    def test_aws_cli_with_ca_bundle(self):
        out = h.aws_cli(self.server, "list-keys")  # the harness passes --ca-bundle
        self.assertIn("Keys", out)

    def test_plain_http_to_tls_port_fails(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            conn.request("GET", "/health")
            status = conn.getresponse().status
        except (OSError, http.client.HTTPException):
            return  # refused at the TLS layer: what we want
        finally:
            conn.close()
        self.assertNotEqual(status, 200, "plain HTTP was served on the TLS port")


if __name__ == "__main__":
    unittest.main()
