"""xks_standin - an XKS proxy in Python that misbehaves on request, for tests of
kmsd's external key stores.

The real xks-proxy (src/xks-proxy) is correct by design; kmsd must also cope
with proxies that are slow, wrong, down or badly configured, and each of those
cases decides a ConnectionErrorCode or an exception.  StandIn is a small but
honest implementation of the XKS Proxy API v1 (the four operations, SigV4 with
service kms-xks-proxy, AES-256-GCM with the spec's AAD layout binding
ciphertextMetadata, the CDIV) on 127.0.0.1, with knobs a test turns while it
runs:

    from xks_standin import StandIn
    from xks_certs import make_certs
    certs = make_certs()                        # hostname xks.example.com
    with StandIn(cert=certs.good) as proxy:     # started; stopped on exit
        proxy.port, proxy.uri_path, proxy.credentials   # what kmsd is given
        proxy.connect_to("xks.example.com")     # its --xks-connect-to value
        proxy.set_mode("not_json", ops={"health"})
        proxy.set_delay(0.5)                    # answer after the 250 ms budget
        proxy.set_credentials({AKID: SECRET})   # rotation: the old pair now fails
        proxy.set_key("k1", status="DISABLED")
        proxy.set_tls(cert=certs.expired)       # new connections see it
        proxy.requests()                        # what arrived, parsed

Knobs (each also a plain attribute; a change applies to the next request):

    mode       "normal"; "not_json" (200, a body that is not JSON);
               "missing_field" (200, a required field of the reply left out);
               "wrong_type" (200, a required field with another JSON type);
               "http_500" (500 InternalException); "auth_fail" (401
               AuthenticationFailedException, whatever the signature);
               "access_denied" (403 AccessDeniedException, health included);
               "all_hsms_unavailable" (health answers 200 with every
               ekmFleetDetails entry UNAVAILABLE, the other operations 500
               InternalException); "uri_path_404" (404
               InvalidUriPathException); "close_connection" (the connection is
               closed after the request is read, no reply); "bad_cdiv" (Encrypt
               answers a wrong ciphertextDataIntegrityValue); "error" (the
               status and errorName given to set_mode).  The reply-shape modes
               (missing_field, wrong_type, bad_cdiv) change successful replies
               only; an error reply (unknown key...) is sent as it is.
    mode_ops   None (every request) or a set of "health", "metadata",
               "encrypt", "decrypt": the operations `mode` applies to (other
               requests are served normally).  Unknown paths count as no
               operation and see `mode` only when mode_ops is None.
    delay_s, delay_ops   seconds to wait before answering (after the request
               is read), and the operations that wait (None: all).  stop()
               cuts a wait short.  The delay is taken when a request
               arrives: changing it later does not shorten or lengthen the
               waits of requests already received.
    also_serve further URI paths the API is served under besides uri_path
               (a tuple; empty by default): a proxy reachable at an old and
               a new XksProxyUriPath at once.
    credentials   {access key id: secret}: the SigV4 pairs accepted.
    region        the SigV4 scope region required (default us-east-1).
    keys          {externalKeyId: StandInKey} (add_key/remove_key/set_key).
    fleet         the ekmFleetDetails of health replies (list of dicts).
    ciphertext_metadata   bytes Encrypt returns as ciphertextMetadata (bound
               into the tag), or None to leave the field out.
    TLS: set_tls(cert=, min_tls=, max_tls=, client_ca=) builds a new context
               for new connections; drop_connections() closes the kept-alive
               ones so a client has to reconnect and meet it.

Protocol versions: TLS 1.0 and 1.1 servers can be made on this machine's
OpenSSL 3.0 through Python's ssl module, but only at OpenSSL security level 0
(their suites use SHA-1); StandIn lowers the level itself when min_tls is
below "1.2".  A client at the default level then fails the handshake, which
is what a test of "TLS below 1.2" wants.

Every request is recorded (RecordedRequest: method, path, op, key_id,
headers, body, json, access_key_id, authenticated, status, tls_version,
client_subject), so a test can assert what kmsd put in requestMetadata.
TLS handshakes that failed are in tls_failures.

Requires the `cryptography` package (installed on this image) for AES-GCM.
"""

import base64
import binascii
import datetime
import hashlib
import hmac
import http.server
import json
import os
import re
import socket
import ssl
import threading
import time
import warnings

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SERVICE = "kms-xks-proxy"
DEFAULT_REGION = "us-east-1"
DEFAULT_URI_PATH = "/xks-standin/kms/xks/v1"
# One credential pair in the spec's shapes (id 20..30 of A-Z2-7, secret
# 43..64 of A-Za-z0-9+/=).
DEFAULT_ACCESS_KEY_ID = "AKIASTANDINXKSPROXY2"
DEFAULT_SECRET = "c3RhbmQtaW4tc2VjcmV0LWZvci1rbXNkLXhrcy10ZXN0cw=="
DEFAULT_KEY_ID = "standin-key-1"

MODES = ("normal", "not_json", "missing_field", "wrong_type", "http_500", "auth_fail",
         "access_denied", "all_hsms_unavailable", "uri_path_404", "close_connection",
         "bad_cdiv", "error")
OPS = ("health", "metadata", "encrypt", "decrypt")

MAX_BODY = 256 * 1024          # the proxy refuses more (KMS sends < 20 KiB)
MAX_SKEW_S = 300               # the spec's 5 minutes either way
HANDSHAKE_TIMEOUT_S = 10
IDLE_TIMEOUT_S = 60            # a kept-alive connection idle this long is closed

_TLS_VERSIONS = {
    "1.0": "TLSv1", "1.1": "TLSv1_1", "1.2": "TLSv1_2", "1.3": "TLSv1_3",
}

_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})")
_KEY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")


def _tls_version(v):
    """ssl.TLSVersion for "1.0".."1.3" (or a TLSVersion given as is)."""
    if v is None or isinstance(v, ssl.TLSVersion):
        return v
    if v not in _TLS_VERSIONS:
        raise ValueError("TLS version must be one of %s" % sorted(_TLS_VERSIONS))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return getattr(ssl.TLSVersion, _TLS_VERSIONS[v])


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _unb64(value):
    if not isinstance(value, str):
        raise ValueError("not a string")
    return base64.b64decode(value.encode("ascii"), validate=True)


def cdiv(aad, ciphertext_metadata, iv, ciphertext, tag):
    """The spec's ciphertextDataIntegrityValue over decoded bytes."""
    return _b64(hashlib.sha256((aad or b"") + (ciphertext_metadata or b"") + iv + ciphertext + tag)
                .digest())


def gcm_aad(aad, ciphertext_metadata):
    """The AAD the key manager sees: len16_be(AAD) || AAD || len8(metadata) ||
    metadata, so metadata is bound into the tag and cannot move into the AAD."""
    aad = aad or b""
    md = ciphertext_metadata or b""
    return len(aad).to_bytes(2, "big") + aad + len(md).to_bytes(1, "big") + md


class StandInKey:
    """One external key: 32 bytes of AES material and what GetKeyMetadata says."""

    def __init__(self, key_id, material=None, spec="AES_256", usage=("ENCRYPT", "DECRYPT"),
                 status="ENABLED"):
        self.key_id = key_id
        self.material = material if material is not None else os.urandom(32)
        self.spec = spec
        self.usage = list(usage)
        self.status = status


class RecordedRequest:
    """One request as the stand-in received it."""

    def __init__(self, method, path, op, key_id, headers, body, parsed):
        self.method = method
        self.path = path
        self.op = op                    # "health", "metadata", "encrypt", "decrypt" or None
        self.key_id = key_id            # the externalKeyId of the path, or None
        self.headers = headers          # {lower-case name: value} (repeats joined by ",")
        self.body = body                # bytes as received
        self.json = parsed              # the parsed body, or None when not JSON
        self.access_key_id = None       # from Authorization, once parsed
        self.authenticated = False      # SigV4 verified
        self.status = None              # HTTP status of the reply (set as it is sent); None: not yet, or closed
        self.closed = False             # the connection was closed with no reply
        self.error_name = None          # errorName answered, if any
        self.time = time.time()
        self.tls_version = None
        self.client_subject = None      # CN of the client certificate (mTLS)

    @property
    def request_metadata(self):
        if isinstance(self.json, dict) and isinstance(self.json.get("requestMetadata"), dict):
            return self.json["requestMetadata"]
        return None

    def __repr__(self):
        return "<%s %s op=%s status=%s>" % (self.method, self.path, self.op, self.status)


class _Reply(Exception):
    """An XKS error reply: raised by the operation handlers."""

    def __init__(self, status, name, message=""):
        super().__init__(name)
        self.status = status
        self.name = name
        self.message = message


def _validation(message):
    return _Reply(400, "ValidationException", message)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, standin, addr):
        self.standin = standin
        self.connections = set()
        self.connections_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        ctx = self.standin._ssl_ctx
        if ctx is not None:
            # The handshake happens in the handler thread (setup), so a slow
            # or failing one never blocks the accept loop.
            sock = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self.connections_lock:
            self.connections.add(sock)
        return sock, addr

    def shutdown_request(self, request):
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        pass  # a client that went away is not the test's failure


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "xks-standin"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S

    def setup(self):
        standin = self.server.standin
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(HANDSHAKE_TIMEOUT_S)
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError) as e:
                standin._note_tls_failure(e)
                raise
        super().setup()

    def log_message(self, fmt, *args):
        pass  # requests are recorded; nothing on stderr

    def _read_body(self):
        if self.headers.get("Transfer-Encoding"):
            return None
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            return None
        if length < 0 or length > MAX_BODY:
            return None
        return self.rfile.read(length)

    def do_POST(self):
        self.server.standin._serve(self, "POST")

    def _other(self):
        self.server.standin._serve(self, self.command)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = _other


class StandIn:
    """An XKS proxy on 127.0.0.1 (see the module docstring).

    cert:        (cert, key) paths of the server certificate; None with
                 plain_http=True for plain HTTP.
    client_ca:   a CA file: require a client certificate that chains to it.
    min_tls, max_tls: "1.0".."1.3" (default: Python's, i.e. 1.2..1.3).
    credentials: {access key id: secret} (default one pair,
                 DEFAULT_ACCESS_KEY_ID / DEFAULT_SECRET).
    keys:        StandInKey list, or None for one AES_256 key DEFAULT_KEY_ID.
    port:        0 picks a free one; kept across stop()/start().
    start:       start at once (default True)."""

    def __init__(self, cert=None, plain_http=False, client_ca=None, min_tls=None, max_tls=None,
                 credentials=None, region=DEFAULT_REGION, uri_path=DEFAULT_URI_PATH, keys=None,
                 port=0, start=True):
        if cert is None and not plain_http:
            raise ValueError("give cert=(cert, key) or plain_http=True")
        self.host = "127.0.0.1"
        self.port = port
        self.region = region
        self.uri_path = uri_path
        self.credentials = dict(credentials or {DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET})
        self.keys = {}
        for k in (keys if keys is not None else [StandInKey(DEFAULT_KEY_ID)]):
            self.keys[k.key_id] = k
        self.tls_failures = []
        self._plain = plain_http
        self._initial = {"credentials": dict(self.credentials),
                         "tls": {"cert": cert, "client_ca": client_ca, "min_tls": min_tls,
                                 "max_tls": max_tls}}
        self._tls = dict(self._initial["tls"])
        self._ssl_ctx = None if plain_http else self._make_ctx(**self._tls)
        self._records = []
        self._lock = threading.Lock()
        self._reset_knobs()
        self._stop = threading.Event()
        self._server = None
        self._thread = None
        if start:
            self.start()

    # -- life cycle ----------------------------------------------------------

    def start(self):
        """Listen (on the same port as before after a stop) and serve in a thread."""
        if self._server is not None:
            return self
        self._stop.clear()
        self._server = _Server(self, (self.host, self.port))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="xks-standin-%d" % self.port, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop listening and close every connection (a client then sees a
        refused connection).  Requests in a delay are cut short."""
        if self._server is None:
            return
        self._stop.set()
        self._server.shutdown()
        self.drop_connections()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def restart(self):
        self.stop()
        return self.start()

    def drop_connections(self):
        """Close every open connection (kept-alive ones included)."""
        server = self._server
        if server is None:
            return
        with server.connections_lock:
            conns = list(server.connections)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def running(self):
        return self._server is not None

    @property
    def scheme(self):
        return "http" if self._plain else "https"

    def url(self, suffix=""):
        """http(s)://127.0.0.1:PORT<uri_path><suffix>."""
        return "%s://%s:%d%s%s" % (self.scheme, self.host, self.port, self.uri_path, suffix)

    def connect_to(self, hostname, port=443):
        """kmsd's --xks-connect-to value sending HOSTNAME:PORT here."""
        return "%s:%d:%s:%d" % (hostname, port, self.host, self.port)

    def forward_to(self):
        """The `forward_to` of a VPC endpoint service registry entry for this proxy."""
        return "%s:%d" % (self.host, self.port)

    # -- knobs ---------------------------------------------------------------

    def _reset_knobs(self):
        self.fleet = [{"id": "standin-hsm-1", "model": "stand-in HSM v1", "healthStatus": "ACTIVE"},
                      {"id": "standin-hsm-2", "model": "stand-in HSM v1", "healthStatus": "ACTIVE"}]
        self.ciphertext_metadata = b"standin:1"
        self.max_skew_s = MAX_SKEW_S
        self.mode = "normal"
        self.mode_ops = None
        self.error_status = 500
        self.error_name = "InternalException"
        self.delay_s = 0.0
        self.delay_ops = None
        self.also_serve = ()

    def reset(self):
        """Back to a well-behaved proxy: every knob as constructed (mode,
        delay, credentials, fleet, ciphertext metadata, TLS), records
        cleared; keys are kept (a test that changes one should use its own)."""
        with self._lock:
            self._reset_knobs()
        self.credentials = dict(self._initial["credentials"])
        if not self._plain and self._tls != self._initial["tls"]:
            self._tls = dict(self._initial["tls"])
            self._ssl_ctx = self._make_ctx(**self._tls)
        self.clear_requests()

    def set_mode(self, mode, ops=None, status=None, name=None):
        """Misbehave as `mode` for the operations in `ops` (None: all).  For
        mode "error", `status` and `name` are the reply's HTTP status and
        errorName."""
        if mode not in MODES:
            raise ValueError("mode must be one of %s" % (MODES,))
        if ops is not None and not set(ops) <= set(OPS):
            raise ValueError("ops must be a subset of %s" % (OPS,))
        with self._lock:
            if status is not None:
                self.error_status = status
            if name is not None:
                self.error_name = name
            self.mode_ops = None if ops is None else frozenset(ops)
            self.mode = mode

    def set_delay(self, seconds, ops=None):
        with self._lock:
            self.delay_ops = None if ops is None else frozenset(ops)
            self.delay_s = float(seconds)

    def set_credentials(self, credentials):
        """Accept exactly these {access key id: secret} pairs from now on."""
        self.credentials = dict(credentials)

    def add_key(self, key_id, **fields):
        """Add (or replace) an external key; fields as StandInKey's.  Returns it."""
        key = StandInKey(key_id, **fields)
        with self._lock:
            self.keys[key_id] = key
        return key

    def remove_key(self, key_id):
        with self._lock:
            self.keys.pop(key_id, None)

    def set_key(self, key_id, **fields):
        """Change spec, usage, status or material of an existing key."""
        with self._lock:
            key = self.keys[key_id]
            for name, value in fields.items():
                if name not in ("spec", "usage", "status", "material"):
                    raise ValueError("unknown key field %r" % name)
                setattr(key, name, list(value) if name == "usage" else value)

    def set_fleet_status(self, *statuses):
        """Set the healthStatus of each ekmFleetDetails entry (one per argument)."""
        with self._lock:
            self.fleet = [{"id": "standin-hsm-%d" % (i + 1), "model": "stand-in HSM v1",
                           "healthStatus": s} for i, s in enumerate(statuses)]

    def set_tls(self, cert=None, min_tls=None, max_tls=None, client_ca=None):
        """A new TLS context for new connections: each argument given replaces
        the current one (client_ca=False turns mTLS off)."""
        if self._plain:
            raise ValueError("a plain-HTTP stand-in has no TLS")
        tls = dict(self._tls)
        for name, value in (("cert", cert), ("min_tls", min_tls), ("max_tls", max_tls),
                            ("client_ca", client_ca)):
            if value is not None:
                tls[name] = None if value is False else value
        ctx = self._make_ctx(**tls)
        self._tls = tls
        self._ssl_ctx = ctx

    @staticmethod
    def _make_ctx(cert, client_ca, min_tls, max_tls):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert[0], cert[1])
        lo, hi = _tls_version(min_tls), _tls_version(max_tls)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if lo is not None:
                ctx.minimum_version = lo
            if hi is not None:
                ctx.maximum_version = hi
            if lo is not None and lo < ssl.TLSVersion.TLSv1_2:
                # TLS 1.0/1.1 suites use SHA-1: only OpenSSL level 0 allows them.
                ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(client_ca)
        return ctx

    # -- records -------------------------------------------------------------

    def requests(self, op=None):
        """A copy of the requests received so far (only `op`'s when given)."""
        with self._lock:
            return [r for r in self._records if op is None or r.op == op]

    def clear_requests(self):
        with self._lock:
            self._records.clear()
            self.tls_failures.clear()

    def wait_requests(self, count, op=None, timeout=5.0):
        """Wait until at least `count` requests (of `op`) were answered or
        closed; returns them (maybe fewer, on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            done = [r for r in self.requests(op) if r.status is not None or r.closed]
            if len(done) >= count or time.monotonic() > deadline:
                return done
            time.sleep(0.01)

    def _note_tls_failure(self, exc):
        with self._lock:
            self.tls_failures.append(str(exc))

    # -- serving -------------------------------------------------------------

    def _route(self, path):
        """(op, key_id) of a path under uri_path (or also_serve), or (None, None)."""
        for base in (self.uri_path,) + tuple(self.also_serve):
            if path.startswith(base + "/"):
                break
        else:
            return None, None
        rest = path[len(base) + 1:]
        if rest == "health":
            return "health", None
        parts = rest.split("/")
        if len(parts) == 3 and parts[0] == "keys" and _KEY_ID_RE.fullmatch(parts[1]) \
                and parts[2] in ("metadata", "encrypt", "decrypt"):
            return parts[2], parts[1]
        return None, None

    def _serve(self, h, method):
        body = h._read_body()  # any method: a kept-alive stream stays in step
        if body is None:
            self._send(h, None, 400, {"errorName": "ValidationException",
                                      "errorMessage": "body length not acceptable"})
            h.close_connection = True
            return
        op, key_id = self._route(h.path)
        try:
            parsed = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            parsed = None
        headers = {}
        for name in h.headers.keys():
            headers.setdefault(name.lower(), ",".join(h.headers.get_all(name)))
        rec = RecordedRequest(method, h.path, op, key_id, headers, body, parsed)
        if isinstance(h.request, ssl.SSLSocket):
            rec.tls_version = h.request.version()
            peer = h.request.getpeercert()
            if peer:
                for rdn in peer.get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName":
                            rec.client_subject = v
        with self._lock:
            self._records.append(rec)
            applies = self.mode_ops is None or op in self.mode_ops
            mode = self.mode if applies else "normal"
            delay_applies = self.delay_ops is None or op in self.delay_ops
            delay = self.delay_s if delay_applies else 0.0
            err_status, err_name = self.error_status, self.error_name

        if delay > 0 and self._stop.wait(delay):
            self._close(h, rec)
            return
        if mode == "close_connection":
            self._close(h, rec)
            return
        try:
            if mode == "uri_path_404" or op is None:
                raise _Reply(404, "InvalidUriPathException", "no such XKS path")
            if method != "POST":
                self._send(h, rec, 405, {"errorName": "ValidationException",
                                         "errorMessage": "use POST"}, extra={"Allow": "POST"})
                return
            self._authenticate(h, rec, body)
            if mode == "auth_fail":
                raise _Reply(401, "AuthenticationFailedException", "stand-in: auth_fail")
            if mode == "access_denied":
                raise _Reply(403, "AccessDeniedException", "stand-in: access_denied")
            if mode == "http_500":
                raise _Reply(500, "InternalException", "stand-in: http_500")
            if mode == "error":
                raise _Reply(err_status, err_name, "stand-in: error mode")
            if mode == "all_hsms_unavailable" and op != "health":
                raise _Reply(500, "InternalException", "every HSM is unavailable")
            if mode == "not_json":
                self._send_raw(h, rec, 200, b"<html><body>not the proxy you want</body></html>")
                return
            if not isinstance(parsed, dict):
                raise _validation("the body is not a JSON object")
            reply = getattr(self, "_op_" + op)(parsed, key_id, mode)
            reply = self._misshape(op, reply, mode)
            self._send(h, rec, 200, reply)
        except _Reply as r:
            body = {"errorName": r.name}
            if r.message:
                body["errorMessage"] = r.message
            self._send(h, rec, r.status, body)

    def _close(self, h, rec):
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        rec.closed = True

    def _send(self, h, rec, status, obj, extra=None):
        if rec is not None and isinstance(obj, dict) and "errorName" in obj:
            rec.error_name = obj["errorName"]
        self._send_raw(h, rec, status, json.dumps(obj, separators=(",", ":")).encode(), extra)

    def _send_raw(self, h, rec, status, data, extra=None):
        # Recorded before the reply goes out: a test that reads it once the
        # client has the reply must not find it still unset.
        if rec is not None:
            rec.status = status
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                h.send_header(k, v)
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(data)
            h.wfile.flush()
        except OSError:
            h.close_connection = True

    # -- SigV4 ---------------------------------------------------------------

    def _authenticate(self, h, rec, body):
        def fail(why):
            raise _Reply(401, "AuthenticationFailedException", why)

        auth = h.headers.get_all("Authorization") or []
        if len(auth) != 1:
            fail("one Authorization header is required")
        m = _AUTH_RE.fullmatch(auth[0].strip())
        if not m:
            fail("malformed Authorization header")
        akid, date, region, service, signed, signature = m.groups()
        rec.access_key_id = akid
        secret = self.credentials.get(akid)
        if secret is None:
            fail("unknown access key id")
        if region != self.region or service != SERVICE:
            fail("wrong credential scope")
        amz_date = h.headers.get("X-Amz-Date") or ""
        try:
            when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc)
        except ValueError:
            fail("bad X-Amz-Date")
        if amz_date[:8] != date:
            fail("X-Amz-Date and the credential scope disagree")
        if abs((datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()) > self.max_skew_s:
            fail("X-Amz-Date is more than 5 minutes away")
        names = signed.split(";")
        if "host" not in names or "x-amz-date" not in names or names != sorted(set(names)):
            fail("SignedHeaders must list host and x-amz-date, sorted")
        canon = ""
        for name in names:
            values = h.headers.get_all(name)
            if not values:
                fail("a signed header is missing")
            canon += "%s:%s\n" % (name, ",".join(" ".join(v.split()) for v in values))
        creq = "\n".join(["POST", h.path, "", canon, signed, hashlib.sha256(body).hexdigest()])
        scope = "%s/%s/%s/aws4_request" % (date, region, service)
        sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(creq.encode()).hexdigest()])
        k = ("AWS4" + secret).encode()
        for part in (date, region, service, "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        want = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, signature):
            fail("signature mismatch")
        rec.authenticated = True

    # -- the four operations ---------------------------------------------------

    @staticmethod
    def _metadata(body, *required):
        md = body.get("requestMetadata")
        if not isinstance(md, dict):
            raise _validation("requestMetadata is required")
        for name in ("kmsRequestId", "kmsOperation") + required:
            if not isinstance(md.get(name), str) or not md[name]:
                raise _validation("requestMetadata.%s is required" % name)
        return md

    def _key(self, key_id, usage=None):
        with self._lock:
            key = self.keys.get(key_id)
        if key is None:
            raise _Reply(404, "KeyNotFoundException", "no such external key")
        if usage is not None:
            if key.status != "ENABLED":
                raise _Reply(400, "InvalidStateException", "the key is disabled")
            if key.spec != "AES_256" or usage not in key.usage:
                raise _Reply(400, "InvalidKeyUsageException", "the key cannot %s" % usage)
        return key

    @staticmethod
    def _bytes(body, name, required, limit):
        if name not in body:
            if required:
                raise _validation("%s is required" % name)
            return None
        try:
            data = _unb64(body[name])
        except (ValueError, binascii.Error):
            raise _validation("%s is not Base64" % name)
        if len(data) > limit:
            raise _validation("%s is too long" % name)
        return data

    def _op_health(self, body, key_id, mode):
        self._metadata(body)
        with self._lock:
            fleet = [dict(e) for e in self.fleet]
        if mode == "all_hsms_unavailable":
            for e in fleet:
                e["healthStatus"] = "UNAVAILABLE"
        return {"xksProxyFleetSize": 1, "xksProxyVendor": "kmsd tests",
                "xksProxyModel": "xks-standin 1.0", "ekmVendor": "kmsd tests",
                "ekmFleetDetails": fleet}

    def _op_metadata(self, body, key_id, mode):
        self._metadata(body, "awsPrincipalArn")
        key = self._key(key_id)
        return {"keySpec": key.spec, "keyUsage": list(key.usage), "keyStatus": key.status}

    def _crypto_input(self, body):
        self._metadata(body, "awsPrincipalArn", "kmsKeyArn")
        if body.get("encryptionAlgorithm") != "AES_GCM":
            raise _validation("encryptionAlgorithm must be AES_GCM")
        return self._bytes(body, "additionalAuthenticatedData", False, 8192)

    def _op_encrypt(self, body, key_id, mode):
        aad = self._crypto_input(body)
        plaintext = self._bytes(body, "plaintext", True, 4300)
        alg = body.get("ciphertextDataIntegrityValueAlgorithm")
        if alg is not None and alg != "SHA_256":
            raise _validation("ciphertextDataIntegrityValueAlgorithm must be SHA_256")
        key = self._key(key_id, "ENCRYPT")
        md = self.ciphertext_metadata
        iv = os.urandom(12)
        sealed = AESGCM(key.material).encrypt(iv, plaintext, gcm_aad(aad, md))
        ct, tag = sealed[:-16], sealed[-16:]
        reply = {"ciphertext": _b64(ct), "initializationVector": _b64(iv),
                 "authenticationTag": _b64(tag)}
        if md is not None:
            reply["ciphertextMetadata"] = _b64(md)
        if alg is not None:
            reply["ciphertextDataIntegrityValue"] = cdiv(aad, md, iv, ct, tag)
        return reply

    def _op_decrypt(self, body, key_id, mode):
        aad = self._crypto_input(body)
        ct = self._bytes(body, "ciphertext", True, 4300)
        iv = self._bytes(body, "initializationVector", True, 16)
        tag = self._bytes(body, "authenticationTag", True, 16)
        md = self._bytes(body, "ciphertextMetadata", False, 20)
        if len(iv) not in (12, 16) or len(tag) != 16:
            raise _Reply(400, "InvalidCiphertextException", "IV or tag has the wrong size")
        key = self._key(key_id, "DECRYPT")
        try:
            pt = AESGCM(key.material).decrypt(iv, ct + tag, gcm_aad(aad, md))
        except InvalidTag:
            raise _Reply(400, "InvalidCiphertextException", "authentication failed")
        return {"plaintext": _b64(pt)}

    # -- misshapen replies -----------------------------------------------------

    _REQUIRED = {"health": "ekmFleetDetails", "metadata": "keyStatus",
                 "encrypt": "authenticationTag", "decrypt": "plaintext"}
    _WRONG = {"health": ("xksProxyFleetSize", "two"), "metadata": ("keyUsage", "ENCRYPT"),
              "encrypt": ("ciphertext", 12345), "decrypt": ("plaintext", ["not", "base64"])}

    def _misshape(self, op, reply, mode):
        if mode == "missing_field":
            reply.pop(self._REQUIRED[op], None)
        elif mode == "wrong_type":
            name, value = self._WRONG[op]
            reply[name] = value
        elif mode == "bad_cdiv" and "ciphertextDataIntegrityValue" in reply:
            reply["ciphertextDataIntegrityValue"] = _b64(b"\0" * 32)
        return reply
