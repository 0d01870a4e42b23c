"""kmsd_harness - start real kmsd servers on loopback and talk to them like AWS clients do.

Every end-to-end suite imports this module instead of re-inventing process
management, SigV4 signing and client construction, so that each test reads as
"what the client does and what AWS would answer".  It depends on nothing but
the standard library and boto3/botocore, which are the clients kmsd must be
compatible with anyway.

Environment (set by ctest, all optional):
  KMSD_BIN         the kmsd executable
  KMSD_BUILD_DIR   the build directory (kmsd is looked for there next)
  KMSD_SOURCE_DIR  the repository root
  KMSD_KEEP_TMP    when set, data directories and logs are kept after a run
"""

import contextlib
import datetime
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import botocore.exceptions

# AWS's documented example key pair: kmsd writes it as the root of this
# account into a fresh data directory that has no credentials file.
DEFAULT_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
DEFAULT_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DEFAULT_ACCOUNT = "111122223333"
DEFAULT_ROOT_ARN = "arn:aws:iam::%s:root" % DEFAULT_ACCOUNT
DEFAULT_REGION = "us-east-1"

# A second account's root, for tests of what one account may not do to another.
OTHER_ACCOUNT = "444455556666"
OTHER_ROOT_KEY = "AKIAI44QH8DHBOTHROOT"
OTHER_ROOT_SECRET = "otherRootSecretKey/EXAMPLE+0123456789abcd"
OTHER_ROOT_ARN = "arn:aws:iam::%s:root" % OTHER_ACCOUNT


def principal(key, secret, account, arn, **extra):
    """One entry of a credentials file (docs/kmsd.md); `extra` adds members
    such as policy=, sessionToken= or admin=."""
    p = {"accessKeyId": key, "secretAccessKey": secret, "accountId": account, "arn": arn}
    p.update(extra)
    return p


def two_roots_credentials():
    """A credentials file with the default account's root and OTHER_ACCOUNT's."""
    return {"principals": [
        principal(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, DEFAULT_ACCOUNT, DEFAULT_ROOT_ARN),
        principal(OTHER_ROOT_KEY, OTHER_ROOT_SECRET, OTHER_ACCOUNT, OTHER_ROOT_ARN)]}

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
START_TIMEOUT = float(os.environ.get("KMSD_START_TIMEOUT", "20"))

REPO_ROOT = os.environ.get("KMSD_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Servers that are running now, so a failing test can point at their logs.
_LIVE_SERVERS = set()
_LIVE_LOCK = threading.Lock()


def find_kmsd_binary():
    """Path of the kmsd executable: $KMSD_BIN, $KMSD_BUILD_DIR/kmsd, <repo>/build/kmsd."""
    candidates = []
    if os.environ.get("KMSD_BIN"):
        candidates.append(os.environ["KMSD_BIN"])
    if os.environ.get("KMSD_BUILD_DIR"):
        candidates.append(os.path.join(os.environ["KMSD_BUILD_DIR"], "kmsd"))
    candidates.append(os.path.join(REPO_ROOT, "build", "kmsd"))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(
        "kmsd executable not found (tried %s); build it or set KMSD_BIN" % ", ".join(candidates))


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tail(path, max_bytes=4000):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)


class KmsdStartError(RuntimeError):
    """kmsd exited or never answered /health; the message carries its log."""

    def __init__(self, message, exited):
        super().__init__(message)
        self.exited = exited  # True: the process ended by itself during start



# -- the store: SQLite in the data directory, or PostgreSQL ----------------
#
# With KMSD_TEST_PG_URL set (the base URL of a server from
# scripts/pg-test-server.sh), every kmsd a suite starts keeps its state in a
# PostgreSQL database of its own on that server instead of DIR/kmsd.db: the
# whole end-to-end suite then runs against the PostgreSQL store.  Tests that
# write behind kmsd's back go through store_execute / store_fetchone, which
# speak to whichever store the data directory has.

def on_postgresql():
    """Whether kmsd servers of this run keep their state in PostgreSQL."""
    return bool(os.environ.get("KMSD_TEST_PG_URL"))


def _pg_database(data_dir):
    """(pg_fixture server, database name) of `data_dir`, the database made
    on first use; None on SQLite."""
    import pg_fixture  # here: it imports this module (free_port)
    server = pg_fixture.shared_server()
    if server is None:
        return None
    name = "kmsd_" + hashlib.sha256(os.path.realpath(data_dir).encode()).hexdigest()[:24]
    with _PG_MADE_LOCK:
        if name not in _PG_MADE:
            server.create_database(name)
            _PG_MADE.add(name)
    return server, name


_PG_MADE = set()
_PG_MADE_LOCK = threading.Lock()


def store_args(data_dir):
    """(extra kmsd arguments, extra environment) that give a kmsd on
    `data_dir` this run's store: ([], {}) on SQLite; on PostgreSQL a
    --store URL without the password, which goes in PGPASSWORD."""
    found = _pg_database(data_dir)
    if found is None:
        return [], {}
    import pg_fixture
    server, name = found
    url, password = pg_fixture.split_url(server.url(name))
    return ["--store", url], ({"PGPASSWORD": password} if password is not None else {})


def _pg_literal(value):
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return "'\\x%s'::bytea" % bytes(value).hex()
    return "'%s'" % str(value).replace("'", "''")


def _pg_sql(sql, params):
    """`sql` with its ? placeholders replaced by PostgreSQL literals."""
    parts = sql.split("?")
    if len(parts) != len(params) + 1:
        raise ValueError("%d placeholders, %d values" % (len(parts) - 1, len(params)))
    out = [parts[0]]
    for value, part in zip(params, parts[1:]):
        out += [_pg_literal(value), part]
    return "".join(out)


def _pg_value(text):
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    if text.lstrip("-").isdigit():
        return int(text)
    return text


def store_execute(data_dir, sql, params=()):
    """Run one INSERT/UPDATE/DELETE (SQLite syntax, ? placeholders) on the
    store of `data_dir`, behind kmsd's back; the number of rows it changed."""
    found = _pg_database(data_dir)
    if found is None:
        import sqlite3
        db = sqlite3.connect(os.path.join(data_dir, "kmsd.db"), timeout=30)
        try:
            with db:
                return db.execute(sql, params).rowcount
        finally:
            db.close()
    server, name = found
    out = server.psql("WITH changed AS (%s RETURNING 1) SELECT count(*) FROM changed;\n"
                      % _pg_sql(sql, params), dbname=name)
    return int(out.strip())


def store_fetchone(data_dir, sql, params=()):
    """The first row of a SELECT (SQLite syntax, ? placeholders) on the
    store of `data_dir` as a tuple (integers as int, blobs as bytes), or
    None."""
    found = _pg_database(data_dir)
    if found is None:
        import sqlite3
        db = sqlite3.connect(os.path.join(data_dir, "kmsd.db"), timeout=30)
        try:
            return db.execute(sql, params).fetchone()
        finally:
            db.close()
    server, name = found
    out = server.psql("\\pset fieldsep '\\037'\n%s;\n" % _pg_sql(sql, params), dbname=name)
    lines = [line for line in out.split("\n") if line]
    if not lines:
        return None
    return tuple(_pg_value(v) for v in lines[0].split("\x1f"))


# The advisory lock every write transaction of kmsd's PostgreSQL store takes
# first (WRITE_LOCK in lib/store/store_pg.c).
PG_WRITE_LOCK = 0x6b6d736401


@contextlib.contextmanager
def store_write_locked(data_dir):
    """Hold the write lock of the store of `data_dir` from another process
    for the block, as an operator's shell in a transaction would: SQLite's
    BEGIN IMMEDIATE, or on PostgreSQL the advisory lock kmsd's writers take
    (held by a psql session until the block ends)."""
    found = _pg_database(data_dir)
    if found is None:
        import sqlite3
        lock = sqlite3.connect(os.path.join(data_dir, "kmsd.db"), timeout=30, isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")
            yield
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        return
    import pg_fixture
    server, name = found
    url, password = pg_fixture.split_url(server.url(name))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if password is not None:
        env["PGPASSWORD"] = password
    proc = subprocess.Popen([pg_fixture.find_psql(), "-X", "-w", "-q", "-d", url],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
    try:
        proc.stdin.write("BEGIN; SELECT pg_advisory_xact_lock(%d);\n" % PG_WRITE_LOCK)
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND " \
               "database = (SELECT oid FROM pg_database WHERE datname = current_database()) " \
               "AND ((classid::bigint << 32) | objid::bigint) = %d;\n" % PG_WRITE_LOCK
        while server.psql(held, dbname=name).strip() != "1":
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("psql did not take the store's write lock")
            time.sleep(0.05)
        yield
    finally:
        if proc.poll() is None:
            proc.stdin.write("ROLLBACK;\n\\q\n")
            proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class KmsdServer:
    """One kmsd process on 127.0.0.1 with its own data directory.

    data_dir:     reuse this directory (else a fresh temporary one, removed by cleanup()).
    args:         extra command-line arguments.
    credentials:  a dict written as the credentials file (credentials.h format)
                  before start; None lets kmsd write its default file.
    tls:          (cert_path, key_path) to serve https.
    insecure_any: pass --insecure-any-credentials.
    wrapper:      a command prefix kmsd runs under, e.g. ["setpriv", "--reuid=nobody", ...]
                  to run it unprivileged; it must exec kmsd, so signals reach kmsd.
    env:          extra environment variables of the process (a dict; a value
                  of None removes the variable); `server.env` may be changed
                  between starts.
    The process's stderr (and stdout) go to `log_path`.
    """

    def __init__(self, data_dir=None, args=(), credentials=None, tls=None, port=None,
                 start_timeout=START_TIMEOUT, binary=None, wrapper=(), env=None):
        self.binary = binary or find_kmsd_binary()
        self.wrapper = list(wrapper)
        self.tmp_root = tempfile.mkdtemp(prefix="kmsd-e2e-")
        self.own_data_dir = data_dir is None
        self.data_dir = data_dir or os.path.join(self.tmp_root, "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.args = list(args)
        self.credentials = credentials
        self.tls = tls
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.env = dict(env or {})
        self.proc = None
        self.log_path = os.path.join(self.tmp_root, "kmsd.log")
        self.keep_files = False   # set when a test failed: cleanup() leaves the files
        self._log_file = None
        self.starts = 0
        # Seconds kmsd's clock runs ahead of ours; clients from kms_client()
        # sign at that time so SigV4's skew check keeps passing.
        self.clock_offset = self._initial_clock_offset()

    def _initial_clock_offset(self):
        for i, a in enumerate(self.args):
            if a == "--clock-offset" and i + 1 < len(self.args):
                return int(self.args[i + 1])
            if a.startswith("--clock-offset="):
                return int(a.split("=", 1)[1])
        return 0

    # -- addresses --------------------------------------------------------

    @property
    def scheme(self):
        return "https" if self.tls else "http"

    @property
    def host_port(self):
        return "127.0.0.1:%d" % self.port

    @property
    def endpoint(self):
        """Base URL clients use as --endpoint-url."""
        return "%s://%s" % (self.scheme, self.host_port)

    @property
    def ca_bundle(self):
        """The certificate clients must trust (None for plain http)."""
        return self.tls[0] if self.tls else None

    @property
    def credentials_path(self):
        return os.path.join(self.data_dir, "credentials.json")

    def describe(self):
        """Where to look when something went wrong: log path and its tail."""
        state = "not started"
        if self.proc is not None:
            rc = self.proc.poll()
            state = "running (pid %d)" % self.proc.pid if rc is None else "exited with %s" % rc
        return "kmsd at %s, %s, data dir %s, log %s; log tail:\n%s" % (
            self.endpoint, state, self.data_dir, self.log_path, _tail(self.log_path))

    # -- lifecycle --------------------------------------------------------

    def command(self):
        cmd = self.wrapper + [self.binary, "--listen", self.host_port, "--data-dir", self.data_dir]
        if not any(a == "--store" or a.startswith("--store=") for a in self.args):
            args, env = store_args(self.data_dir)
            cmd += args
            for name, value in env.items():
                self.env.setdefault(name, value)
        if self.credentials is not None:
            cmd += ["--credentials", self.credentials_path]
        if self.tls:
            cmd += ["--tls-cert", self.tls[0], "--tls-key", self.tls[1]]
        return cmd + self.args

    def start(self):
        """Start kmsd and wait until GET /health answers 200. Returns self.

        Raises KmsdStartError (with the log tail) if the process exits or the
        timeout passes first.  A restart that exits at once is tried again a
        few times: the port of a killed server can take a moment to free."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        attempts = 4 if self.starts > 0 else 1
        for attempt in range(attempts):
            try:
                return self._start_once()
            except KmsdStartError as e:
                if attempt + 1 == attempts or not e.exited:
                    raise
                time.sleep(0.5)
        return self

    def _spawn(self):
        if self.credentials is not None:
            fd = os.open(self.credentials_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(self.credentials, f, indent=2)
        cmd = self.command()  # first: a PostgreSQL store adds PGPASSWORD to self.env
        env = dict(os.environ)
        for name, value in self.env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = str(value)
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(("\n=== start %d: %s\n" % (self.starts + 1, " ".join(cmd))).encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=env,
                                     stdout=self._log_file, stderr=subprocess.STDOUT)
        self.starts += 1
        self.clock_offset = self._initial_clock_offset()
        with _LIVE_LOCK:
            _LIVE_SERVERS.add(self)

    def _start_once(self):
        self._spawn()
        deadline = time.monotonic() + self.start_timeout
        last_error = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.keep_files = True
                self._reap(0)  # exited already: close its log and forget it
                raise KmsdStartError("kmsd exited during start.\n" + self.describe(), True)
            try:
                status, _, _ = self.raw_request("GET", "/health", timeout=2)
                if status == 200:
                    return self
                last_error = "GET /health -> %d" % status
            except (OSError, http.client.HTTPException) as e:
                last_error = repr(e)
            time.sleep(0.05)
        self.kill()
        self.keep_files = True
        raise KmsdStartError("kmsd did not answer /health within %.0fs (%s).\n%s" % (
            self.start_timeout, last_error, self.describe()), False)

    def wait_exit(self, timeout=START_TIMEOUT):
        """Wait for a process expected to end by itself (a fault injected
        into it); returns its exit status (-9 for SIGKILL).  AssertionError
        with the log when it is still running after `timeout` seconds."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("kmsd still runs after %ss; it was expected to exit.\n%s" % (
                timeout, self.describe()))
        return self._reap(0)

    def start_until_exit(self, timeout=START_TIMEOUT):
        """Start kmsd expecting it to end by itself (whether or not it
        answered /health first, e.g. killed by an injected fault during
        start-up recovery); returns its exit status, see wait_exit."""
        if self.proc is not None and self.proc.poll() is None:
            raise AssertionError("kmsd is already running.\n" + self.describe())
        self._spawn()
        return self.wait_exit(timeout)

    def _reap(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            with _LIVE_LOCK:
                _LIVE_SERVERS.discard(self)
            if self._log_file:
                self._log_file.close()
                self._log_file = None

    def stop(self, timeout=15):
        """SIGTERM, then wait (SIGKILL after `timeout`). Returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self._reap(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self._reap(timeout)
            raise RuntimeError("kmsd ignored SIGTERM for %ds.\n%s" % (timeout, self.describe()))

    def kill(self):
        """SIGKILL, as a crash would. Returns the exit status (-9)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.kill()
        return self._reap(15)

    def restart(self, kill=False):
        """Stop (or kill) and start again on the same port and data directory."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self):
        """Stop the server and remove its temporary files (unless KMSD_KEEP_TMP).

        A graceful stop must exit 0: anything else (a sanitizer's leak report,
        a fault during shutdown) raises AssertionError, and the files are kept
        for inspection."""
        graceful = self.running()
        rc = None
        try:
            rc = self.stop()
        finally:
            clean = not graceful or rc == 0
            if clean and not self.keep_files and not os.environ.get("KMSD_KEEP_TMP"):
                shutil.rmtree(self.tmp_root, ignore_errors=True)
        if not clean:
            raise AssertionError("kmsd exited with %s after SIGTERM instead of 0.\n%s" % (
                rc, self.describe()))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
        return False

    # -- plain HTTP -------------------------------------------------------

    def connection(self, timeout=30):
        """A new http.client connection to the server (TLS-verified when https)."""
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.tls[0])
            ctx.check_hostname = False
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def raw_request(self, method, path, body=None, headers=None, timeout=30):
        """Send one unsigned request. Returns (status, headers, body bytes)."""
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.headers, data
        finally:
            conn.close()


def live_servers_description():
    """Log locations of every kmsd still running, for failure messages."""
    with _LIVE_LOCK:
        servers = list(_LIVE_SERVERS)
    return "\n".join(s.describe() for s in servers) or "(no kmsd running)"


# -- clients ------------------------------------------------------------------

class _ServerClockSigV4Auth(botocore.auth.SigV4Auth):
    """SigV4 at the server's clock (local time + server.clock_offset).

    One subclass per server (see _server_signer_name); botocore instantiates
    signers by name, so the server travels as a class attribute."""

    server = None

    def add_auth(self, request):
        when = _utcnow() + datetime.timedelta(seconds=self.server.clock_offset)
        request.context["timestamp"] = when.strftime(botocore.auth.SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        string_to_sign = self.string_to_sign(request, canonical)
        self._inject_signature_to_request(request, self.signature(string_to_sign, request))


def _server_signer_name(server):
    name = "v4-kmsd-%x" % id(server)
    if name not in botocore.auth.AUTH_TYPE_MAPS:
        botocore.auth.AUTH_TYPE_MAPS[name] = type(
            "ServerClockSigV4Auth_%x" % id(server), (_ServerClockSigV4Auth,), {"server": server})
    return name


def kms_client(server, access_key=DEFAULT_ACCESS_KEY, secret=DEFAULT_SECRET_KEY,
               region=DEFAULT_REGION, session_token=None, verify=None, service="kms",
               follow_clock=True):
    """A boto3 client for `server` with retries disabled, so each call is one request.

    verify defaults to the server's certificate when it serves https.  With
    follow_clock the client signs at the server's (possibly advanced) clock,
    so it keeps working after advance_clock()."""
    cfg = botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                 connect_timeout=10, read_timeout=60)
    session = boto3.session.Session()
    client = session.client(service, endpoint_url=server.endpoint, region_name=region,
                            aws_access_key_id=access_key, aws_secret_access_key=secret,
                            aws_session_token=session_token,
                            verify=server.ca_bundle if verify is None else verify, config=cfg)
    if follow_clock:
        name = _server_signer_name(server)
        client.meta.events.register("choose-signer", lambda **kwargs: name)
    return client


class AwsCliError(Exception):
    """A failed `aws` invocation: exit code and stderr (the AWS error text)."""

    def __init__(self, returncode, stderr, stdout=""):
        super().__init__("aws exited %d: %s" % (returncode, stderr.strip()))
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout


def aws_env(server=None, access_key=DEFAULT_ACCESS_KEY, secret=DEFAULT_SECRET_KEY,
            region=DEFAULT_REGION, session_token=None, env_extra=None):
    """The environment the real aws CLI runs in: only our credentials, no user config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": region,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_PAGER": "",
    })
    if session_token:
        env["AWS_SESSION_TOKEN"] = session_token
    if server is not None and server.ca_bundle:
        env["AWS_CA_BUNDLE"] = server.ca_bundle
    if env_extra:
        env.update(env_extra)
    return env


def aws_cli(server, *args, expect_error=False, env_extra=None, access_key=DEFAULT_ACCESS_KEY,
            secret=DEFAULT_SECRET_KEY, region=DEFAULT_REGION, session_token=None, timeout=120):
    """Run `aws --endpoint-url <server> kms <args> --output json`.

    Returns the parsed JSON output ({} when the command prints nothing, the raw
    text when it is not JSON, e.g. with --query ... --output text).  With
    expect_error=True returns an AwsCliError (returncode, stderr) and raises
    AssertionError if the command succeeded; otherwise a failure raises
    AssertionError carrying the CLI's stderr and the server's log."""
    cmd = ["aws", "--endpoint-url", server.endpoint]
    if server.ca_bundle:
        cmd += ["--ca-bundle", server.ca_bundle]
    cmd += ["kms"] + [str(a) for a in args]
    if "--output" not in args:
        cmd += ["--output", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=aws_env(server, access_key, secret, region, session_token, env_extra))
    if proc.returncode != 0:
        failure = AwsCliError(proc.returncode, proc.stderr, proc.stdout)
        if expect_error:
            return failure
        raise AssertionError("%s\ncommand: %s\n%s" % (failure, " ".join(cmd), server.describe()))
    if expect_error:
        raise AssertionError("aws succeeded but an error was expected: %s\nstdout: %s" % (
            " ".join(cmd), proc.stdout))
    out = proc.stdout.strip()
    if not out:
        return {}
    try:
        return json.loads(out)
    except ValueError:
        return out


# -- raw signed requests ----------------------------------------------------

class _FixedDateSigV4Auth(botocore.auth.SigV4Auth):
    """botocore's SigV4 signer, but at a chosen instant (to test clock skew),
    optionally leaving some headers out of SignedHeaders (to test which
    headers kmsd insists are signed)."""

    def __init__(self, credentials, service, region, when, unsigned_headers=()):
        super().__init__(credentials, service, region)
        self._when = when
        self._unsigned = [name.lower() for name in unsigned_headers]

    def headers_to_sign(self, request):
        header_map = super().headers_to_sign(request)
        for name in self._unsigned:
            del header_map[name]
        return header_map

    def add_auth(self, request):
        request.context["timestamp"] = self._when.strftime(botocore.auth.SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        string_to_sign = self.string_to_sign(request, canonical)
        self._inject_signature_to_request(request, self.signature(string_to_sign, request))


class RawRequest:
    """A signed request about to be sent; `mutate` callbacks may change any field.

    headers is a list of [name, value] pairs so tests can repeat, drop or
    reorder headers exactly as a broken client would."""

    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body

    def get_header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def set_header(self, name, value):
        """Replace every header called `name` (case-insensitive) with one; None removes it."""
        self.headers = [[k, v] for k, v in self.headers if k.lower() != name.lower()]
        if value is not None:
            self.headers.append([name, value])


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def signed_request(server, target, body=b"{}", timeout=60, conn=None, **kwargs):
    """Build a JSON 1.1 request, sign it with botocore's SigV4Auth, send it with http.client.

    Takes the arguments of build_signed_request; `conn` reuses an open
    http.client connection (keep-alive tests).  Returns (status, headers,
    parsed) where headers is case-insensitive and parsed is the decoded JSON
    body, the text when it is not JSON, or None when the body is empty."""
    return send_raw(server, build_signed_request(server, target, body, **kwargs),
                    timeout=timeout, conn=conn)


def build_signed_request(server, target, body=b"{}", headers=None, access_key=DEFAULT_ACCESS_KEY,
                         secret=DEFAULT_SECRET_KEY, region=DEFAULT_REGION, session_token=None,
                         date=None, mutate=None, sign=True, service="kms", method="POST",
                         path="/", content_type=JSON_CONTENT_TYPE, host=None,
                         unsigned_headers=()):
    """A RawRequest for a JSON 1.1 call, signed with botocore's SigV4Auth.

    target:  X-Amz-Target value ("TrentService.CreateKey"); None sends none.
    body:    bytes, str, or a JSON-serializable object.
    date:    a datetime (naive UTC or aware) to sign at; default the server's
             clock (local now + server.clock_offset).
    mutate:  callable(RawRequest) run after signing; it may edit the request in
             place or return a replacement (to tamper with body, headers, date).
    sign:    False sends the request without an Authorization header.
    host:    "host:port" to sign and send as Host (default the server's).
    unsigned_headers: names sent but left out of SignedHeaders, as a client
             that signs too little would (botocore signs every header)."""
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    req_headers = {}
    if content_type:
        req_headers["Content-Type"] = content_type
    if target is not None:
        req_headers["X-Amz-Target"] = target
    req_headers.update(headers or {})
    host = host or server.host_port
    url = "%s://%s%s" % (server.scheme, host, path)
    awsreq = botocore.awsrequest.AWSRequest(method=method, url=url, data=body, headers=req_headers)
    when = date or (_utcnow() + datetime.timedelta(seconds=server.clock_offset))
    if when.tzinfo is not None:
        when = when.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    creds = botocore.credentials.Credentials(access_key, secret, session_token)
    signer = _FixedDateSigV4Auth(creds, service, region, when, unsigned_headers)
    if sign:
        signer.add_auth(awsreq)
    else:
        awsreq.context["timestamp"] = when.strftime(botocore.auth.SIGV4_TIMESTAMP)
        signer._modify_request_before_signing(awsreq)
    # Host is signed as botocore computed it from the URL; send exactly that.
    out_headers = [["Host", host]]
    out_headers += [[k, v] for k, v in awsreq.headers.items() if k.lower() != "host"]
    raw = RawRequest(method, path, out_headers, body)
    if mutate is not None:
        raw = mutate(raw) or raw
    return raw


def send_raw(server, raw, timeout=60, conn=None, raw_body=False):
    """Send a RawRequest byte-for-byte as given. Returns (status, headers, parsed).

    With `conn` the request goes over that open connection, which stays open;
    otherwise over a new one that is closed afterwards.  With raw_body=True
    the third item is the body's bytes exactly as received, not parsed (for
    tests of the wire text itself, which a JSON parser would normalize)."""
    own = conn is None
    if own:
        conn = server.connection(timeout)
    try:
        conn.putrequest(raw.method, raw.path, skip_host=True, skip_accept_encoding=True)
        has_length = False
        for k, v in raw.headers:
            conn.putheader(k, v)
            has_length = has_length or k.lower() == "content-length"
        if not has_length:
            conn.putheader("Content-Length", str(len(raw.body)))
        conn.endheaders(raw.body)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        if own:
            conn.close()
    return resp.status, resp.headers, data if raw_body else parse_body(data)


def parse_body(data):
    if not data:
        return None
    text = data.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def error_type(parsed):
    """The AWS error name of a JSON error body, without any namespace prefix.

    AWS sends "__type" either bare or as "com.amazonaws.kms#NotFoundException"."""
    if not isinstance(parsed, dict):
        return None
    t = parsed.get("__type") or parsed.get("code") or ""
    return t.rsplit("#", 1)[-1] or None


def error_message(parsed):
    """The "message" (or "Message") of a JSON error body."""
    if not isinstance(parsed, dict):
        return None
    return parsed.get("message", parsed.get("Message"))


def kms_call(server, operation, params=None, **kwargs):
    """signed_request for TrentService.<operation> with a dict body."""
    return signed_request(server, "TrentService." + operation, params or {}, **kwargs)


# -- admin API ----------------------------------------------------------------

def advance_clock(server, seconds, access_key=DEFAULT_ACCESS_KEY, secret=DEFAULT_SECRET_KEY):
    """Move the server's clock forward `seconds` (needs --enable-admin-api).

    Returns the total offset the server now applies and records it in
    server.clock_offset, so kms_client() clients and signed_request() keep
    signing at the server's time."""
    status, _, parsed = signed_request(server, "KmsdAdmin.AdvanceClock", {"Seconds": seconds},
                                       access_key=access_key, secret=secret)
    if status != 200 or not isinstance(parsed, dict) or "OffsetSeconds" not in parsed:
        raise AssertionError("AdvanceClock(%s) -> %d %r\n%s" % (seconds, status, parsed,
                                                                  server.describe()))
    server.clock_offset = parsed["OffsetSeconds"]
    return server.clock_offset


def sweep(server, access_key=DEFAULT_ACCESS_KEY, secret=DEFAULT_SECRET_KEY):
    """Run the server's deletion/rotation sweep now (KmsdAdmin.Sweep)."""
    status, _, parsed = signed_request(server, "KmsdAdmin.Sweep", {},
                                       access_key=access_key, secret=secret)
    if status != 200:
        raise AssertionError("Sweep -> %d %r\n%s" % (status, parsed, server.describe()))
    return parsed


def get_clock(server, access_key=DEFAULT_ACCESS_KEY, secret=DEFAULT_SECRET_KEY):
    """The response of KmsdAdmin.GetClock (a dict with OffsetSeconds)."""
    status, _, parsed = signed_request(server, "KmsdAdmin.GetClock", {},
                                       access_key=access_key, secret=secret)
    if status != 200 or not isinstance(parsed, dict):
        raise AssertionError("GetClock -> %d %r\n%s" % (status, parsed, server.describe()))
    return parsed


# -- test base ----------------------------------------------------------------

class BackgroundCall(threading.Thread):
    """fn() on a thread of its own, started by the caller: its result or
    exception, and the monotonic time it ended (for tests that assert which
    of several calls finished first)."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn = fn
        self.result = None
        self.error = None
        self.done_at = None

    def run(self):
        try:
            self.result = self.fn()
        except Exception as e:  # reported by the test that joins
            self.error = e
        finally:
            self.done_at = time.monotonic()


class KmsdBaseTestCase(unittest.TestCase):
    """unittest.TestCase whose failure reports carry the state and log of every
    kmsd still running, and keep those servers' files for inspection."""

    def start_server(self, **kwargs):
        """Start a KmsdServer(**kwargs) that lives for this test only.

        It is cleaned up after the test, once its log has been attached to
        any failure report, so its files survive a failure."""
        server = KmsdServer(**kwargs)
        self._test_servers.append(server)
        return server.start()

    def run(self, result=None):
        # Failures are recorded as (test, formatted traceback); appending the
        # servers' state to the text puts the log path right in the report.
        self._test_servers = []
        if result is None:
            return super().run(result)
        marks = (len(result.failures), len(result.errors))
        try:
            return super().run(result)
        finally:
            new = result.failures[marks[0]:] + result.errors[marks[1]:]
            if new:
                with _LIVE_LOCK:
                    servers = set(_LIVE_SERVERS) | set(self._test_servers)
                for server in servers:
                    server.keep_files = True
                note = "\n--- kmsd state (files kept):\n%s\n" % (
                    "\n".join(s.describe() for s in servers) or "(no kmsd)")
                for records, mark in ((result.failures, marks[0]), (result.errors, marks[1])):
                    for i in range(mark, len(records)):
                        test, text = records[i]
                        records[i] = (test, text + note)
            for server in self._test_servers:
                try:
                    server.cleanup()
                except AssertionError:
                    result.addFailure(self, sys.exc_info())

    def assertKmsError(self, code, fn, *args, **kwargs):
        """Call fn(*args, **kwargs); assert it raises ClientError `code`. Returns the error dict."""
        try:
            result = fn(*args, **kwargs)
        except botocore.exceptions.ClientError as e:
            got = e.response.get("Error", {})
            self.assertEqual(got.get("Code"), code, "wrong error: %r" % (e.response,))
            return got
        self.fail("expected %s, call succeeded: %r" % (code, result))

    def assertRequestId(self, headers):
        rid = headers.get("x-amzn-RequestId")
        self.assertTrue(rid, "reply lacks x-amzn-RequestId: %r" % (dict(headers),))
        return rid


class KmsdTestCase(KmsdBaseTestCase):
    """Base for suites sharing one kmsd per test class.

    Subclasses may set `server_args` (extra flags) and `credentials` (a dict
    for the credentials file).  The server runs with --enable-admin-api.
    `self.kms` / `cls.kms` is a boto3 KMS client for the default root.
    A failing test's report carries the server's log (KmsdBaseTestCase)."""

    server_args = ()
    credentials = None
    server = None
    kms = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = KmsdServer(args=["--enable-admin-api"] + list(cls.server_args),
                                credentials=cls.credentials)
        try:
            cls.server.start()
        except Exception:
            cls.server.cleanup()
            raise
        cls.kms = kms_client(cls.server)

    @classmethod
    def tearDownClass(cls):
        if cls.server is not None:
            cls.server.cleanup()
        super().tearDownClass()

    def client_for(self, access_key, secret, **kwargs):
        """A boto3 client for another principal of the class's server."""
        return kms_client(self.server, access_key=access_key, secret=secret, **kwargs)
