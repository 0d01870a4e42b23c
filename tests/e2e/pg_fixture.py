"""pg_fixture - a throwaway PostgreSQL server for the suites that test kmsd's
PostgreSQL store (`kmsd --store postgresql://...`).

A store is only tested for real against a real server: PgServer makes one
with the Debian packages' own programs (initdb, pg_ctl, postgres) in a
temporary directory, with a superuser `kmsd` whose random password is known
only to the test, reached over TCP on loopback with SCRAM authentication,
as kmsd reaches a production database.  The password never appears on a
command line nor in the environment of the server: initdb reads it from a
file that is removed at once, and psql gets it through PGPASSWORD.

PostgreSQL refuses to run as root; when the tests run as root, the server's
programs run as the unprivileged `postgres` user the Debian package makes
(runuser), in a directory owned by that user.

shared_server() is for a run against a server somebody else started
(KMSD_TEST_PG_URL); scripts/pg-test-server.sh starts and stops one such
server from the shell through main() below.

Environment (all optional):
  KMSD_TEST_PG_URL  base URL of a running server, postgresql://USER:PW@HOST:PORT/DB
  KMSD_KEEP_TMP     when set, a stopped server's directory is kept
"""

import atexit
import glob
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from kmsd_harness import free_port

SUPERUSER = "kmsd"
OS_USER = "postgres"          # who runs the server when we are root
START_TIMEOUT = 60            # seconds pg_ctl waits for start and stop
PSQL_TIMEOUT = 60

# Settings for tests: many kmsd connections at once, little memory, and
# durable commits (fsync) so crash tests see what a real crash leaves.
TEST_SETTINGS = {
    "max_connections": "200",
    "shared_buffers": "'32MB'",
    "fsync": "on",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
    "unix_socket_permissions": "0700",
}

# A Unix socket's path must fit in sockaddr_un (108 bytes, the name included).
_MAX_SOCKET_DIR = 90

_LIVE = set()                 # servers to stop when the process exits
_LIVE_LOCK = threading.Lock()


class PgError(RuntimeError):
    """A PostgreSQL program failed; the message carries its output."""


def _tail(path, max_bytes=4000):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)


def _version_key(path):
    m = re.search(r"/postgresql/(\d+)(?:\.(\d+))?/bin$", path)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else (0, 0)


def find_bindir():
    """The directory holding initdb, pg_ctl and postgres.

    `pg_config --bindir` first; Debian's pg_config may name the client's
    directory only, so then the newest /usr/lib/postgresql/*/bin that has
    initdb."""
    candidates = []
    if shutil.which("pg_config"):
        try:
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout.strip()
            if out:
                candidates.append(out)
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for d in candidates:
        if all(os.access(os.path.join(d, p), os.X_OK) for p in ("initdb", "pg_ctl", "postgres")):
            return d
    raise FileNotFoundError("PostgreSQL server programs (initdb, pg_ctl, postgres) not found "
                            "in %s; install Debian's postgresql package" % (candidates or
                                                                           "pg_config's bindir"))


def find_psql():
    """psql of the server's installation if there is one (Debian's /usr/bin/psql
    is a wrapper that looks for clusters), else the one on PATH."""
    try:
        path = os.path.join(find_bindir(), "psql")
        if os.access(path, os.X_OK):
            return path
    except FileNotFoundError:
        pass
    path = shutil.which("psql")
    if not path:
        raise FileNotFoundError("psql not found; install Debian's postgresql-client package")
    return path


def _clean_env(**extra):
    """os.environ without PG* variables (a PGHOST or PGSERVICE of the caller
    must not redirect the tests), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra)
    return env


def split_url(url):
    """(URL without its password, password or None) of a postgresql:// URL."""
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("postgresql", "postgres"):
        raise ValueError("not a postgresql:// URL: %r" % u.scheme)
    netloc = u.netloc.rpartition("@")[2]
    password = None
    if "@" in u.netloc:
        userinfo = u.netloc.rpartition("@")[0]
        user, sep, pw = userinfo.partition(":")
        netloc = user + "@" + netloc
        password = urllib.parse.unquote(pw) if sep else None
    return urllib.parse.urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment)), password


def _with_dbname(url, dbname):
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + urllib.parse.quote(dbname, safe=""),
                                    u.query, u.fragment))


class _PgClient:
    """psql-based administration of a server reached through a base URL;
    subclasses provide base_url()."""

    def base_url(self):
        raise NotImplementedError

    def url(self, dbname):
        """The URL kmsd is given to use database `dbname` (password included)."""
        return _with_dbname(self.base_url(), dbname)

    def psql(self, sql, dbname="postgres", variables=None):
        """Run `sql` (read from stdin, so :"name" variables work) with psql as
        the superuser; stop at the first error.  Returns psql's stdout
        (unaligned, tuples only).  PgError when psql fails."""
        target, password = split_url(self.url(dbname))
        cmd = [find_psql(), "-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        for name, value in (variables or {}).items():
            cmd += ["-v", "%s=%s" % (name, value)]
        cmd += ["-d", target]
        env = _clean_env(PGCONNECT_TIMEOUT="10")
        if password is not None:
            env["PGPASSWORD"] = password
        self._note_command(cmd)
        r = subprocess.run(cmd, input=sql, env=env, capture_output=True, text=True,
                           timeout=PSQL_TIMEOUT)
        if r.returncode != 0:
            raise PgError("psql on %s failed (exit %d): %s\nSQL: %s" % (
                target, r.returncode, r.stderr.strip(), sql.strip()))
        return r.stdout

    def create_database(self, name):
        """CREATE DATABASE `name` unless it exists (checked first, so the
        server's log gets no error for it).  Returns its URL."""
        sql = ("SELECT format('CREATE DATABASE %I TEMPLATE template0 ENCODING ''UTF8''', "
               ":'name') WHERE NOT EXISTS "
               "(SELECT 1 FROM pg_database WHERE datname = :'name') \\gexec\n")
        try:
            self.psql(sql, variables={"name": name})
        except PgError as e:  # made by another client in the meantime
            if "already exists" not in str(e):
                raise
        return self.url(name)

    def drop_database(self, name):
        """DROP DATABASE `name` if it exists, ending its open connections."""
        self.psql('DROP DATABASE IF EXISTS :"name" WITH (FORCE)', variables={"name": name})

    def _note_command(self, cmd):
        pass


class ExternalPgServer(_PgClient):
    """A server somebody else runs, known by its base URL
    (postgresql://USER:PW@HOST:PORT/DB of a superuser or a role that may
    create databases)."""

    def __init__(self, base_url):
        split_url(base_url)  # ValueError now rather than at first use
        self._base_url = base_url

    def base_url(self):
        return self._base_url


def shared_server():
    """The server named by KMSD_TEST_PG_URL as an ExternalPgServer, or None
    when the variable is unset (the suite then starts its own PgServer)."""
    url = os.environ.get("KMSD_TEST_PG_URL")
    return ExternalPgServer(url) if url else None


class PgServer(_PgClient):
    """One PostgreSQL server on 127.0.0.1 with its own directory:

        DIR/data          the cluster (initdb)
        DIR/run           its Unix socket (peer authentication only)
        DIR/postgres.log  the server's log

    base_dir:      use this directory (made if missing; it must be empty),
                   else a fresh one under the temporary directory.
    port:          the TCP port (default: a free one, kept across restarts).
    keep_files:    keep DIR after stop() (default: KMSD_KEEP_TMP is set).
    stop_at_exit:  stop the server when this Python process exits, should
                   a test forget to (pg_ctl detaches the server from us).
    `commands` lists every command line this object ran, for tests that
    check no secret reaches one.
    """

    def __init__(self, base_dir=None, port=None, keep_files=None, stop_at_exit=True):
        self.dir = os.path.abspath(base_dir) if base_dir else None
        self.own_dir = base_dir is None
        self.port = port
        if keep_files is None:
            keep_files = bool(os.environ.get("KMSD_KEEP_TMP"))
        self.keep_files = keep_files
        self.stop_at_exit = stop_at_exit
        self.password = None
        self.bindir = None
        self.commands = []

    # -- paths and state ----------------------------------------------------

    @property
    def data_dir(self):
        return os.path.join(self.dir, "data")

    @property
    def socket_dir(self):
        return os.path.join(self.dir, "run")

    @property
    def log_path(self):
        return os.path.join(self.dir, "postgres.log")

    def base_url(self):
        if self.password is None or self.port is None:
            raise RuntimeError("PostgreSQL server not started")
        return "postgresql://%s:%s@127.0.0.1:%d/postgres" % (
            SUPERUSER, urllib.parse.quote(self.password, safe=""), self.port)

    def log_tail(self, max_bytes=4000):
        """The last `max_bytes` of the server's log."""
        return _tail(self.log_path, max_bytes) if self.dir else "(no log yet)"

    def describe(self):
        """Where to look when something went wrong: state, log path and tail."""
        pid = self.postmaster_pid()
        state = "running (pid %d)" % pid if self.running() else "not running"
        return "PostgreSQL on 127.0.0.1:%s, %s, dir %s; log tail:\n%s" % (
            self.port, state, self.dir, self.log_tail())

    def postmaster_pid(self):
        """The PID in postmaster.pid, or None."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError, TypeError):
            return None

    def running(self):
        pid = self.postmaster_pid()
        return pid is not None and _alive(pid)

    def server_pids(self):
        """PIDs of the live processes of this server (the postmaster and its
        children, which all work in the data directory)."""
        if not self.dir:
            return []
        data = os.path.realpath(self.data_dir)
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.readlink("/proc/%s/cwd" % entry) == data:
                        pids.append(int(entry))
                except OSError:
                    pass
        return pids

    # -- running programs as the server's owner ------------------------------

    def _as_owner(self, cmd):
        return (["runuser", "-u", OS_USER, "--"] if os.geteuid() == 0 else []) + cmd

    def _note_command(self, cmd):
        self.commands.append(list(cmd))

    def _run(self, cmd, timeout=START_TIMEOUT + 30):
        """Run a server program as its owner in DIR; PgError with its output
        and the log tail when it fails."""
        cmd = self._as_owner(cmd)
        self._note_command(cmd)
        r = subprocess.run(cmd, cwd=self.dir, env=_clean_env(), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise PgError("%s failed (exit %d):\n%s%s\n%s" % (
                " ".join(shlex.quote(c) for c in cmd), r.returncode, r.stdout, r.stderr,
                self.describe()))
        return r

    def _prog(self, name):
        self.bindir = self.bindir or find_bindir()
        return os.path.join(self.bindir, name)

    # -- lifecycle ------------------------------------------------------------

    def _make_dir(self):
        """Make DIR (or fill an empty one) for the server's owner; on failure
        take back what was made."""
        if self.own_dir:
            self.dir = tempfile.mkdtemp(prefix="kmsd-pg-")
            made = True
        else:
            made = not os.path.isdir(self.dir)
            os.makedirs(self.dir, exist_ok=True)
            if os.listdir(self.dir):
                raise PgError("%s is not empty (a server left there? stop it first)" % self.dir)
        try:
            os.mkdir(self.socket_dir, 0o700)
            os.chmod(self.dir, 0o700)
            if os.geteuid() == 0:
                pw = pwd.getpwnam(OS_USER)
                for d in (self.dir, self.socket_dir):
                    os.chown(d, pw.pw_uid, pw.pw_gid)
                # The owner must reach DIR through every parent directory.
                r = subprocess.run(self._as_owner(["test", "-w", self.dir, "-a", "-x", self.dir]),
                                   cwd="/", stdin=subprocess.DEVNULL, capture_output=True)
                if r.returncode != 0:
                    raise PgError("user %s cannot use %s (a parent directory is closed to "
                                  "others); choose a directory under /tmp" % (OS_USER, self.dir))
        except BaseException:
            self._remove_dir(made)
            raise
        return made

    def _remove_dir(self, made):
        """Remove DIR if this object made it, else empty it again."""
        if made:
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        for name in os.listdir(self.dir):
            path = os.path.join(self.dir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)

    def _initdb(self):
        """A new cluster with superuser kmsd and a fresh random password,
        given through a file only the owner reads, removed right after."""
        self.password = secrets.token_urlsafe(24)
        pwfile = os.path.join(self.dir, "pwfile")
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if os.geteuid() == 0:
                pw = pwd.getpwnam(OS_USER)
                os.fchown(fd, pw.pw_uid, pw.pw_gid)
            os.write(fd, (self.password + "\n").encode())
        finally:
            os.close(fd)
        try:
            # --no-sync: only a crash of the whole machine could lose initdb's
            # files, and none is simulated; the server itself runs with fsync.
            self._run([self._prog("initdb"), "-D", self.data_dir, "-U", SUPERUSER,
                       "--pwfile=" + pwfile, "--auth-host=scram-sha-256", "--auth-local=peer",
                       "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"])
        finally:
            os.unlink(pwfile)
        with open(os.path.join(self.data_dir, "postgresql.conf"), "a") as f:
            f.write("\n# kmsd tests (tests/e2e/pg_fixture.py)\n")
            for name, value in TEST_SETTINGS.items():
                f.write("%s = %s\n" % (name, value))

    def _server_options(self):
        socket_dir = self.socket_dir if len(self.socket_dir) <= _MAX_SOCKET_DIR else ""
        return "-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=on" % (
            self.port, shlex.quote(socket_dir))

    def _pg_ctl(self, action, *args):
        return self._run([self._prog("pg_ctl"), action, "-D", self.data_dir, "-w",
                          "-t", str(START_TIMEOUT)] + list(args))

    def start(self):
        """Make the directory and cluster if needed, start the server and wait
        until it accepts connections.  Returns self.  After kill() it starts
        the same cluster again (crash recovery) on the same port."""
        if self.password is None and self.dir and os.path.isdir(self.dir) and os.listdir(self.dir):
            raise PgError("%s is not empty (a server left there? stop it first)" % self.dir)
        if self.running():
            return self
        self.bindir = self.bindir or find_bindir()
        new_dir = made_dir = False
        if self.dir is None or not os.path.exists(self.data_dir):
            made_dir = self._make_dir()
            new_dir = True
        try:
            if not os.path.exists(os.path.join(self.data_dir, "PG_VERSION")):
                self._initdb()
            self._forget_dead_postmaster()
            first = self.port is None
            for attempt in range(3 if first else 1):
                if first:
                    self.port = free_port()
                try:
                    self._pg_ctl("start", "-l", self.log_path, "-o", self._server_options())
                    break
                except PgError:
                    # Another process may have taken the port free_port() saw free.
                    if attempt == 2 or not first or "could not bind" not in self.log_tail(2000):
                        raise
            with _LIVE_LOCK:
                _LIVE.add(self)
            return self
        except BaseException:
            self._stop_quietly()
            if new_dir and not self.keep_files:
                self._remove_dir(made_dir)
            raise

    def restart(self):
        """pg_ctl restart -m fast: connections are cut, committed data stays."""
        if not self.running():
            return self.start()
        self._pg_ctl("restart", "-m", "fast", "-l", self.log_path, "-o", self._server_options())
        return self

    def kill(self):
        """SIGKILL the postmaster, then every process of the server, as a crash
        of the database host would; returns once they are all gone.  start()
        brings the cluster back through crash recovery."""
        pid = self.postmaster_pid()
        if pid is None or not _alive(pid):
            return
        _signal(pid, signal.SIGKILL)
        pids = self.server_pids()
        for p in pids:
            _signal(p, signal.SIGKILL)
        self._wait_gone(pid)
        # A process on its way out stops showing its working directory
        # (server_pids) a moment before it is a zombie: wait for that too.
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in pids):
            if time.monotonic() > deadline:
                raise PgError("PostgreSQL processes %s still alive after SIGKILL" %
                              [p for p in pids if _alive(p)])
            time.sleep(0.02)

    def stop(self):
        """pg_ctl stop -m fast, then remove the directory (unless keep_files).
        Safe to call more than once, and after kill()."""
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if self.dir is None or not os.path.isdir(self.dir):
            return
        try:
            pid = self.postmaster_pid()
            if pid is not None and _alive(pid):
                try:
                    self._pg_ctl("stop", "-m", "fast")
                except PgError:
                    self.kill()
                    raise
                self._wait_gone(pid)
            self._remove_stale_shm()
        finally:
            if not self.keep_files:
                shutil.rmtree(self.dir, ignore_errors=True)

    def _stop_quietly(self):
        try:
            if self.running():
                self._pg_ctl("stop", "-m", "immediate")
        except (PgError, OSError, subprocess.SubprocessError):
            self.kill()
        self._remove_stale_shm()

    def _wait_gone(self, pid, timeout=30):
        """Wait until the postmaster has exited and no process of the server
        is left; stragglers get SIGKILL half-way."""
        deadline = time.monotonic() + timeout
        killed = False
        while time.monotonic() < deadline:
            left = self.server_pids()
            if not left and not _alive(pid):
                return
            if not killed and time.monotonic() > deadline - timeout / 2:
                for p in left:
                    _signal(p, signal.SIGKILL)
                killed = True
            time.sleep(0.05)
        raise PgError("PostgreSQL processes %s still alive after %ds.\n%s" % (
            self.server_pids(), timeout, self.describe()))

    def _forget_dead_postmaster(self):
        """Clear what a killed postmaster left when it is dead but not yet
        reaped (a zombie: kill(pid, 0) still succeeds, so postgres would take
        its lock files for a live server's).  A PID that is gone altogether
        postgres handles itself."""
        pid = self.postmaster_pid()
        if pid is None or not _zombie(pid):
            return
        self._remove_stale_shm()
        locks = [os.path.join(self.data_dir, "postmaster.pid")]
        locks += glob.glob(os.path.join(self.socket_dir, ".s.PGSQL.*.lock"))
        for path in locks:
            try:
                with open(path) as f:
                    if int(f.readline()) == pid:
                        os.unlink(path)
            except (OSError, ValueError):
                pass

    def _remove_stale_shm(self):
        """Remove the System V shared memory segment a killed server leaves
        (normally the next start removes it; after stop() there is none)."""
        if self.dir is None or self.running():
            return
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as f:
                lines = f.read().splitlines()
            key, shmid = (int(x) for x in lines[6].split())
            with open("/proc/sysvipc/shm") as f:
                rows = [r.split() for r in f.read().splitlines()[1:]]
        except (OSError, IndexError, ValueError):
            return
        for r in rows:
            # columns: key shmid perms size cpid lpid nattch ...
            if int(r[0]) == key and int(r[1]) == shmid and int(r[6]) == 0:
                subprocess.run(["ipcrm", "-m", str(shmid)], capture_output=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


def _proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


def _alive(pid):
    """True while `pid` runs (a zombie, dead but not reaped, is not alive)."""
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def _zombie(pid):
    return _proc_state(pid) in ("Z", "X")


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


@atexit.register
def _stop_live_servers():
    with _LIVE_LOCK:
        servers = [s for s in _LIVE if s.stop_at_exit]
    for s in servers:
        try:
            s.stop()
        except Exception as e:  # still try the others
            print("pg_fixture: stopping %s: %s" % (s.dir, e), file=sys.stderr)


def main(argv):
    """`start DIR`: start a server with its state under DIR, print its base
    URL and write it to DIR/url (mode 0600).  `stop DIR`: stop it, remove DIR."""
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: pg_fixture.py start|stop DIR", file=sys.stderr)
        return 2
    action, base_dir = argv
    server = PgServer(base_dir=base_dir, keep_files=False, stop_at_exit=False)
    try:
        if action == "stop":
            server.stop()
            return 0
        server.start()
        url = server.url("postgres")
        fd = os.open(os.path.join(server.dir, "url"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600)
        with os.fdopen(fd, "w") as f:
            f.write(url + "\n")
        print(url)
        return 0
    except (PgError, OSError, subprocess.SubprocessError) as e:
        print("pg_fixture: %s %s: %s" % (action, base_dir, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
