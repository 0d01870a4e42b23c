"""test_pg_fixture - the throwaway PostgreSQL server the store suites run on.

Every PostgreSQL store test trusts pg_fixture to hand it a real server that
keeps committed data across a restart and a crash, that asks for the
password it was given (SCRAM over TCP, as in production), that keeps that
password out of its log and out of every command line, and that leaves
nothing behind: no process, no directory, no shared memory.  These tests
check exactly that, with psql connecting through the URL kmsd would get.
"""

import os
import secrets
import subprocess
import tempfile
import unittest
import urllib.parse
from unittest import mock

import kmsd_harness as h
import pg_fixture as pg

SCRIPT = os.path.join(h.REPO_ROOT, "scripts", "pg-test-server.sh")


def psql_url(url, sql, password=None):
    """Run `sql` with psql on the database of `url`, as a client given that URL
    connects: the password (from the URL unless `password` is given) goes
    in PGPASSWORD, the rest of the URL is psql's argument.  Returns the
    CompletedProcess (stdout unaligned, tuples only)."""
    u = urllib.parse.urlsplit(url)
    if password is None:
        password = urllib.parse.unquote(u.password)
    target = urllib.parse.urlunsplit((u.scheme, "%s@%s:%d" % (u.username, u.hostname, u.port),
                                      u.path, u.query, ""))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
    return subprocess.run([pg.find_psql(), "-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                           "-d", target, "-c", sql],
                          env=env, capture_output=True, text=True, timeout=60)


def processes_under(path):
    """PIDs of live processes whose working directory is `path` or below
    (also when it was removed meanwhile)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cwd = os.readlink("/proc/%s/cwd" % entry)
            except OSError:
                continue
            if cwd == path or cwd.startswith(path + "/") or cwd == path + " (deleted)":
                found.append(int(entry))
    return found


def shm_segments():
    """{shmid: nattch} of the System V shared memory segments."""
    with open("/proc/sysvipc/shm") as f:
        rows = [r.split() for r in f.read().splitlines()[1:]]
    return {int(r[1]): int(r[6]) for r in rows}


def shm_id(server):
    """The shared memory segment the server's postmaster.pid names."""
    with open(os.path.join(server.data_dir, "postmaster.pid")) as f:
        return int(f.read().splitlines()[6].split()[1])


class PgServerTest(unittest.TestCase):

    def ok(self, url, sql):
        r = psql_url(url, sql)
        self.assertEqual(r.returncode, 0, "psql %r failed: %s" % (sql, r.stderr))
        return r.stdout

    def assert_gone(self, server, pids):
        """The server's directory and every one of its processes are gone."""
        self.assertFalse(os.path.exists(server.dir), "%s left behind" % server.dir)
        self.assertEqual([p for p in pids if pg._alive(p)], [], "server processes left running")
        self.assertEqual(processes_under(server.dir), [])

    def assert_no_password_leak(self, server):
        password = server.password.encode()
        log = server.log_tail(10 ** 7)
        self.assertIn("ready to accept connections", log)  # the right log, not an empty one
        self.assertNotIn(server.password, log)
        postmaster = server.postmaster_pid()
        pids = server.server_pids()
        self.assertIn(postmaster, pids)
        checked = 0
        for pid in pids:
            try:
                for what in ("cmdline", "environ"):
                    with open("/proc/%d/%s" % (pid, what), "rb") as f:
                        self.assertNotIn(password, f.read(),
                                         "password in /proc/%d/%s" % (pid, what))
                checked += 1
            except (ProcessLookupError, FileNotFoundError):
                # A backend of an earlier psql may end meanwhile; the postmaster may not.
                self.assertNotEqual(pid, postmaster)
        self.assertGreaterEqual(checked, 4)  # postmaster, checkpointer, writers, ...
        self.assertTrue(server.commands)
        for cmd in server.commands:
            self.assertNotIn(server.password, " ".join(cmd))
        self.assertEqual(sorted(os.listdir(server.dir)), ["data", "postgres.log", "run"])

    def test_data_survives_restart_and_stop_leaves_nothing(self):
        with pg.PgServer(keep_files=False) as server:
            self.assertTrue(server.running())
            url = server.create_database("kmsd_fixture")
            self.assertEqual(url, server.url("kmsd_fixture"))
            self.assertEqual(url, "postgresql://kmsd:%s@127.0.0.1:%d/kmsd_fixture" % (
                urllib.parse.quote(server.password, safe=""), server.port))
            server.create_database("kmsd_fixture")  # exists already: no error
            self.ok(url, "CREATE TABLE keys (id text PRIMARY KEY, state text NOT NULL);"
                         "INSERT INTO keys VALUES ('k1', 'Enabled')")

            first_postmaster = server.postmaster_pid()
            server.restart()
            self.assertNotEqual(server.postmaster_pid(), first_postmaster)
            self.assertEqual(self.ok(url, "SELECT id, state FROM keys"), "k1|Enabled\n")

            # Production-like authentication and the settings the suites rely on.
            wrong = psql_url(url, "SELECT 1", password="not-" + server.password)
            self.assertNotEqual(wrong.returncode, 0)
            self.assertIn("password authentication failed", wrong.stderr)
            self.assertEqual(self.ok(url, "SELECT DISTINCT auth_method FROM pg_hba_file_rules "
                                          "WHERE type = 'host'"), "scram-sha-256\n")
            self.assertEqual(self.ok(url, "SELECT current_setting('max_connections'), "
                                          "current_setting('shared_buffers'), "
                                          "current_setting('fsync'), "
                                          "current_setting('listen_addresses'), "
                                          "pg_encoding_to_char(encoding), datcollate "
                                          "FROM pg_database WHERE datname = current_database()"),
                             "200|32MB|on|127.0.0.1|UTF8|C\n")
            self.assert_no_password_leak(server)

            server.drop_database("kmsd_fixture")
            server.drop_database("kmsd_fixture")  # gone already: no error
            self.assertIn("does not exist", psql_url(url, "SELECT 1").stderr)
            pids = server.server_pids()
        self.assertFalse(server.running())
        self.assert_gone(server, pids)
        self.assertNotEqual(psql_url(url, "SELECT 1").returncode, 0)
        server.stop()  # a second stop is harmless

    def test_kill_then_start_recovers_committed_data(self):
        with pg.PgServer(keep_files=False) as server:
            url = server.create_database("kmsd_crash")
            self.ok(url, "CREATE TABLE t (v int); INSERT INTO t VALUES (1), (2)")
            pids = server.server_pids()
            server.kill()
            self.assertFalse(server.running())
            self.assertEqual([p for p in pids if pg._alive(p)], [])
            self.assertNotEqual(psql_url(url, "SELECT 1").returncode, 0)

            server.start()  # crash recovery, same port, same URL
            self.assertEqual(self.ok(url, "SELECT sum(v) FROM t"), "3\n")
            self.assertIn("automatic recovery", server.log_tail(10 ** 7))

            # Killed and never started again: stop() still frees everything.
            segment = shm_id(server)
            pids = server.server_pids()
            server.kill()
            self.assertIn(segment, shm_segments())
        self.assertNotIn(segment, shm_segments())
        self.assert_gone(server, pids)

    def test_shared_server_comes_from_the_environment(self):
        with mock.patch.dict(os.environ):
            os.environ.pop("KMSD_TEST_PG_URL", None)
            self.assertIsNone(pg.shared_server())
        with pg.PgServer(keep_files=False) as server:
            with mock.patch.dict(os.environ, KMSD_TEST_PG_URL=server.url("postgres")):
                shared = pg.shared_server()
            self.assertIsNotNone(shared)
            url = shared.create_database("kmsd_shared")
            shared.create_database("kmsd_shared")
            self.assertEqual(url, server.url("kmsd_shared"))
            self.assertEqual(self.ok(url, "SELECT current_database()"), "kmsd_shared\n")
            shared.drop_database("kmsd_shared")
            self.assertIn("does not exist", psql_url(url, "SELECT 1").stderr)

    def test_script_starts_and_stops_a_server(self):
        base = os.path.join(tempfile.gettempdir(), "kmsd-pg-script-%d-%s" % (
            os.getpid(), secrets.token_hex(4)))
        self.addCleanup(subprocess.run, [SCRIPT, "stop", base], capture_output=True)
        r = subprocess.run([SCRIPT, "start", base], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        url = r.stdout.strip()
        self.assertRegex(url, r"^postgresql://kmsd:[^@/]+@127\.0\.0\.1:\d+/postgres$")
        with open(os.path.join(base, "url")) as f:
            self.assertEqual(f.read().strip(), url)
        self.assertEqual(os.stat(os.path.join(base, "url")).st_mode & 0o777, 0o600)
        self.assertEqual(self.ok(url, "SELECT 1"), "1\n")

        again = subprocess.run([SCRIPT, "start", base], capture_output=True, text=True,
                               timeout=120)
        self.assertNotEqual(again.returncode, 0)
        self.assertIn("not empty", again.stderr)

        r = subprocess.run([SCRIPT, "stop", base], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(os.path.exists(base))
        self.assertEqual(processes_under(base), [])
        self.assertNotEqual(psql_url(url, "SELECT 1").returncode, 0)

        usage = subprocess.run([SCRIPT, "restart", base], capture_output=True, text=True)
        self.assertEqual(usage.returncode, 2)


if __name__ == "__main__":
    unittest.main()
