"""xks_bench.py - xks-proxy Encrypt over TLS keep-alive: peak rate, and latency at 1,800/s.

xks.sh builds the binaries and calls this.  In a temporary directory it makes
a SoftHSM2 token (its own SOFTHSM2_CONF), an AES key on it with
`xks-proxy create-key`, a test CA and a server certificate signed by it
(ECDSA P-256 by default, --cert-key rsa for RSA-2048), and starts xks-proxy
with TLS on an ephemeral loopback port.  One Encrypt request is signed with
botocore's SigV4 (service kms-xks-proxy) and sent once to check it gets 200;
then, for every server setting (--settings THREADS:POOL ...):

peak    wrk -t2 -cN replays the signed request over kept-alive TLS
        connections (bench/request.lua) for every N in --connections:
        requests/s, p50, p99.
rate    xksload (bench/xksload.c) sends it open-loop at --rate per second
        over --rate-connections kept-alive TLS connections, verifying the
        server certificate against the test CA: p50/p90/p99/p99.9/max from
        each request's intended send time, so a stall is charged to every
        request queued behind it.

Both run at --log-level warn so logging does not dominate; one more round at
info (the proxy's one log line per request) shows what that line costs, and
its latency_us= fields give the fixed-rate latency inside the proxy, apart
from the time the load generator spends waiting for a CPU.
The table puts the figures next to the issue's goals: >= 15,000 Encrypt/s,
and p99 < 5 ms at 1,800/s.  wrk, xksload and the proxy share the machine's
CPUs; the proxy's own CPU time per request is shown too.
"""

import argparse
import base64
import http.client
import json
import os
import re
import resource
import secrets
import shutil
import socket
import ssl
import string
import subprocess
import sys
import tempfile
import time
import uuid

import botocore.auth
import botocore.awsrequest
import botocore.credentials

HERE = os.path.dirname(os.path.abspath(__file__))

PREFIX = "/bench/kms/xks/v1"
REGION = "us-east-1"
SERVICE = "kms-xks-proxy"
TOKEN_LABEL = "xks-bench"
KEY_LABEL = "bench-key"
GOAL_PEAK_RPS = 15000
GOAL_RATE = 1800
GOAL_P99_MS = 5.0
SOFTHSM2_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def run(cmd, **kwargs):
    """Run a setup command; on failure raise with its output (never its arguments: PINs)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s%s" % (os.path.basename(cmd[0]), proc.returncode,
                                                      proc.stdout, proc.stderr))
    return proc.stdout


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%d CPUs, %s" % (os.cpu_count() or 0, model)


def find_softhsm2(explicit):
    for path in (explicit, os.environ.get("KMSD_SOFTHSM2_MODULE")) + SOFTHSM2_MODULES:
        if path and os.path.exists(path):
            return path
    raise RuntimeError("libsofthsm2.so not found; pass --pkcs11-module")


class Token:
    """A fresh SoftHSM2 token in its own directory, with one AES key made by create-key."""

    def __init__(self, workdir, module, proxy):
        self.module = module
        self.pin = secrets.token_hex(8)
        tokens = os.path.join(workdir, "tokens")
        os.makedirs(tokens)
        self.conf = os.path.join(workdir, "softhsm2.conf")
        with open(self.conf, "w") as f:
            f.write("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n" % tokens)
        self.env = dict(os.environ, SOFTHSM2_CONF=self.conf)
        run(["softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL,
             "--pin", self.pin, "--so-pin", secrets.token_hex(8)], env=self.env)
        run([proxy, "create-key", "--pkcs11-module", module, "--token-label", TOKEN_LABEL,
             "--pin", self.pin, "--label", KEY_LABEL, "--usage", "encrypt,decrypt"], env=self.env)


def make_certs(workdir, kind):
    """A test CA and a server certificate for 127.0.0.1 / localhost signed by it."""
    newkey = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ecdsa"
              else ["-newkey", "rsa:2048"])
    ca_key, ca = os.path.join(workdir, "ca.key"), os.path.join(workdir, "ca.pem")
    key, csr = os.path.join(workdir, "server.key"), os.path.join(workdir, "server.csr")
    cert, ext = os.path.join(workdir, "server.pem"), os.path.join(workdir, "server.ext")
    run(["openssl", "req", "-x509", "-nodes"] + newkey +
        ["-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=xks-bench test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    run(["openssl", "req", "-new", "-nodes"] + newkey +
        ["-keyout", key, "-out", csr, "-subj", "/CN=localhost"])
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature%s\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                % ("" if kind == "ecdsa" else ",keyEncipherment"))
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "2", "-out", cert, "-extfile", ext])
    return ca, cert, key


def random_access_key_id():
    return "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(20))


def random_secret():
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(44))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_seconds(pid, tid=None):
    """utime + stime of a process (or one of its threads), in seconds."""
    path = "/proc/%d/stat" % pid if tid is None else "/proc/%d/task/%s/stat" % (pid, tid)
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuWatch:
    """CPU time used on the whole machine during a run by everything except
    the proxy and our own load generator (other users, steal), in CPUs: the
    runs share the machine, and this says how much it was shared."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.workers0 = self._worker_seconds()
        self.machine0, self.proxy0 = self._machine_busy(), proxy.cpu_seconds()
        self.children0, self.t0 = self._children(), time.monotonic()

    @staticmethod
    def _machine_busy():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]  # idle, iowait
        return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def _worker_seconds(self):
        """CPU seconds of each HTTP worker thread (libmicrohttpd names them MHD-worker)."""
        out = {}
        for tid in os.listdir("/proc/%d/task" % self.proxy.proc.pid):
            try:
                with open("/proc/%d/task/%s/comm" % (self.proxy.proc.pid, tid)) as f:
                    if f.read().strip() != "MHD-worker":
                        continue
                out[tid] = proc_cpu_seconds(self.proxy.proc.pid, tid)
            except OSError:
                pass
        return out

    @staticmethod
    def _children():
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def stop(self, requests):
        """Fill and return a dict: proxy CPU us per request, load generator CPUs, others' CPUs."""
        wall = time.monotonic() - self.t0
        proxy = self.proxy.cpu_seconds() - self.proxy0
        load = self._children() - self.children0
        others = self._machine_busy() - self.machine0 - proxy - load
        # Share of the workers' CPU time taken by the busiest one: with 2
        # workers, 0.5 is an even split and 1.0 means one worker was handed
        # every connection while the other idled.
        workers = self._worker_seconds()
        spent = [workers[t] - self.workers0.get(t, 0.0) for t in workers]
        busiest = max(spent) / sum(spent) if spent and sum(spent) > 0 else 1.0
        return {"cpu_us_per_req": proxy * 1e6 / requests if requests else 0,
                "proxy_cpus": proxy / wall, "loadgen_cpus": load / wall,
                "other_cpus": max(0.0, others / wall), "busiest_worker": busiest}


class Proxy:
    """One xks-proxy process on an ephemeral loopback port."""

    def __init__(self, binary, token, tls, workdir, threads, pool, log_level):
        self.threads, self.pool, self.log_level = threads, pool, log_level
        self.access_key_id, self.secret = random_access_key_id(), random_secret()
        self.ca = tls[0]
        self.log_path = os.path.join(workdir, "xks-proxy-%s-%d-%d.log" % (log_level, threads, pool))
        self.log = open(self.log_path, "wb")
        # A port chosen here, not port 0: the proxy logs the port it got at
        # info, and these runs are at warn.
        self.port = free_port()
        cmd = [binary, "--listen", "127.0.0.1:%d" % self.port, "--tls-cert", tls[1], "--tls-key", tls[2],
               "--uri-prefix", PREFIX, "--region", REGION,
               "--access-key-id", self.access_key_id, "--secret-access-key", self.secret,
               "--pkcs11-module", token.module, "--token-label", TOKEN_LABEL, "--pin", token.pin,
               "--session-pool", str(pool), "--threads", str(threads), "--log-level", log_level]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=token.env)
        self._wait_listening()

    def _wait_listening(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        with open(self.log_path, errors="replace") as f:
            raise RuntimeError("xks-proxy did not start listening:\n" + f.read()[-3000:])

    def log_bytes(self):
        return os.path.getsize(self.log_path)

    def cpu_seconds(self):
        return proc_cpu_seconds(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def encrypt_body():
    return json.dumps({
        "requestMetadata": {
            "awsPrincipalArn": "arn:aws:iam::111122223333:root",
            "kmsKeyArn": "arn:aws:kms:us-east-1:111122223333:key/%s" % uuid.uuid4(),
            "kmsOperation": "Encrypt",
            "kmsRequestId": str(uuid.uuid4()),
        },
        "plaintext": base64.b64encode(os.urandom(32)).decode(),
        "encryptionAlgorithm": "AES_GCM",
        "additionalAuthenticatedData": base64.b64encode(b"xks-bench additional data").decode(),
    }, separators=(",", ":"))


def sign_encrypt(proxy):
    """Sign one Encrypt now: returns (path, headers as a list, body)."""
    path = "%s/keys/%s/encrypt" % (PREFIX, KEY_LABEL)
    host = "127.0.0.1:%d" % proxy.port
    body = encrypt_body()
    request = botocore.awsrequest.AWSRequest(
        method="POST", url="https://%s%s" % (host, path), data=body,
        headers={"Host": host, "Content-Type": "application/json"})
    creds = botocore.credentials.Credentials(proxy.access_key_id, proxy.secret)
    botocore.auth.SigV4Auth(creds, SERVICE, REGION).add_auth(request)
    headers = [("Host", host), ("X-Amz-Date", request.headers["X-Amz-Date"]),
               ("Content-Type", "application/json"),
               ("Authorization", request.headers["Authorization"])]
    return path, headers, body


def write_request(proxy, file_path):
    """Sign now and write the request in request.lua's format; check it gets 200 once.

    Returns the negotiated TLS version and cipher of the checking connection."""
    path, headers, body = sign_encrypt(proxy)
    with open(file_path, "w") as f:
        f.write("POST %s\n" % path)
        for name, value in headers:
            f.write("%s: %s\n" % (name, value))
        f.write("\n")
        f.write(body)
    ctx = ssl.create_default_context(cafile=proxy.ca)
    conn = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=ctx, timeout=30)
    try:
        conn.request("POST", path, body=body.encode(), headers=dict(headers))
        resp = conn.getresponse()
        reply = resp.read()
        tls = "%s %s" % (conn.sock.version(), conn.sock.cipher()[0])
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError("the signed Encrypt is refused: %d %s" % (resp.status, reply[:500]))
    answer = json.loads(reply)
    if "ciphertext" not in answer:
        raise RuntimeError("Encrypt answered 200 without a ciphertext: %r" % answer)
    return tls


def run_wrk(proxy, request_path, threads, connections, duration):
    env = dict(os.environ, BENCH_REQUEST=request_path)
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", "%ds" % duration,
           "--timeout", "10s", "-s", os.path.join(HERE, "request.lua"),
           "https://127.0.0.1:%d/" % proxy.port]
    watch, log0 = CpuWatch(proxy), proxy.log_bytes()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    log1 = proxy.log_bytes()
    if proc.returncode != 0:
        raise RuntimeError("wrk failed: %s" % proc.stderr.strip())
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            r = json.loads(line)
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
            r["errors"] = r["non2xx"] + r["socket_errors"]
            r.update(watch.stop(r["requests"]))
            r["log_bytes_per_req"] = (log1 - log0) / r["requests"] if r["requests"] else 0
            return r
    raise RuntimeError("wrk printed no result line:\n%s" % proc.stdout)


def run_xksload(proxy, xksload, request_path, rate, connections, duration):
    cmd = [xksload, "--port", str(proxy.port), "--ca", proxy.ca, "--server-name", "localhost",
           "--request", request_path, "--rate", str(rate), "--connections", str(connections),
           "--duration", str(duration), "--warmup", "2"]
    watch, log0 = CpuWatch(proxy), proxy.log_bytes()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    log1 = proxy.log_bytes()
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError("xksload printed no result (%d): %s" % (proc.returncode, proc.stderr))
    r = json.loads(lines[-1])
    if r["failure"]:
        raise RuntimeError("xksload: %s" % r["failure"])
    r["errors"] = r["non200"]
    # Whole run (warm-up included) over the requests sent: an estimate good
    # enough to compare with the peak runs.
    r.update(watch.stop(r["sent"]))
    r["inside"] = proxy_latencies(proxy.log_path, log0, log1)
    return r


def proxy_latencies(log_path, start, end):
    """p50/p99/max of latency_us= in the proxy's log lines between two offsets.

    At --log-level info the proxy writes one line per request with the time
    from the request's arrival (headers and body read) to its reply being
    built: the time spent inside the proxy, without the network, TLS or the
    load generator's wait for a CPU.  None at warn (no such lines)."""
    with open(log_path, "rb") as f:
        f.seek(start)
        text = f.read(end - start).decode("utf-8", "replace")
    values = sorted(int(m) for m in re.findall(r" latency_us=(\d+)", text))
    if not values:
        return None

    def pct(q):
        return values[min(len(values) - 1, int(q * len(values)))]
    return {"count": len(values), "p50_us": pct(0.50), "p99_us": pct(0.99),
            "p999_us": pct(0.999), "max_us": values[-1],
            "over_5ms": sum(1 for v in values if v >= 5000)}


def bench_setting(args, token, tls, workdir, threads, pool, log_level, connection_counts):
    proxy = Proxy(args.xks_proxy, token, tls, workdir, threads, pool, log_level)
    out = {"threads": threads, "pool": pool, "log": log_level, "peak": [], "rate": None}
    try:
        request_path = os.path.join(workdir, "encrypt.req")
        for n in connection_counts:
            out["tls"] = write_request(proxy, request_path)
            print("  %s threads=%d pool=%d: wrk -c%d %ds ..." % (log_level, threads, pool, n,
                                                              args.duration), file=sys.stderr)
            r = run_wrk(proxy, request_path, args.wrk_threads, n, args.duration)
            r["connections"] = n
            out["peak"].append(r)
        if args.rate_duration > 0:
            write_request(proxy, request_path)
            print("  %s threads=%d pool=%d: xksload %d/s %ds ..." % (
                log_level, threads, pool, args.rate, args.rate_duration), file=sys.stderr)
            out["rate"] = run_xksload(proxy, args.xksload, request_path, args.rate,
                                      args.rate_connections, args.rate_duration)
    finally:
        proxy.stop()
    return out


def parse_settings(text):
    settings = []
    for item in text.split(","):
        m = re.fullmatch(r"(\d+):(\d+)", item.strip())
        if not m:
            raise argparse.ArgumentTypeError("settings are THREADS:POOL[,THREADS:POOL...]")
        settings.append((int(m.group(1)), int(m.group(2))))
    return settings


def verdict(ok):
    return "met" if ok else "MISSED"


def print_table(results, header, wrk_threads):
    print()
    for line in header:
        print(line)
    print()
    print("peak (wrk -t%d, kept-alive TLS)" % wrk_threads)
    print("%-5s %7s %5s %6s %12s %8s %8s %7s %10s %8s %7s" % (
        "log", "threads", "pool", "conns", "requests/s", "p50 ms", "p99 ms", "errors",
        "cpu us/req", "busiest", "others"))
    for s in results:
        for r in s["peak"]:
            print("%-5s %7d %5d %6d %12.0f %8.2f %8.2f %7d %10.1f %8.2f %7.2f" % (
                s["log"], s["threads"], s["pool"], r["connections"], r["rps"],
                r["p50_us"] / 1000.0, r["p99_us"] / 1000.0, r["errors"], r["cpu_us_per_req"],
                r["busiest_worker"], r["other_cpus"]))
    rated = [s for s in results if s["rate"]]
    if rated:
        print()
        print("fixed rate (xksload, open loop, latency from the intended send time)")
        print("%-5s %7s %5s %6s %9s %9s %7s %7s %7s %7s %7s %7s %7s" % (
            "log", "threads", "pool", "conns", "target/s", "achieved", "p50 ms", "p90 ms",
            "p99 ms", "p99.9", "max ms", "errors", "others"))
        for s in rated:
            r = s["rate"]
            print("%-5s %7d %5d %6d %9.0f %9.0f %7.2f %7.2f %7.2f %7.2f %7.2f %7d %7.2f" % (
                s["log"], s["threads"], s["pool"], r["connections"], r["target_rps"],
                r["achieved_rps"], r["p50_us"] / 1000.0, r["p90_us"] / 1000.0,
                r["p99_us"] / 1000.0, r["p999_us"] / 1000.0, r["max_us"] / 1000.0, r["errors"],
                r["other_cpus"]))
        inside = [s for s in rated if s["rate"].get("inside")]
        for s in inside:
            r = s["rate"]["inside"]
            print("inside the proxy (its log's latency_us, %s, %d requests): p50 %.2f ms, "
                  "p99 %.2f ms, p99.9 %.2f ms, max %.2f ms, %d at 5 ms or more" % (
                      s["log"], r["count"], r["p50_us"] / 1000.0, r["p99_us"] / 1000.0,
                      r["p999_us"] / 1000.0, r["max_us"] / 1000.0, r["over_5ms"]))
    print("(cpu us/req: the proxy's CPU time per request; busiest: the share of the HTTP\n"
          " workers' CPU time taken by the busiest worker, 1/threads = even, 1.00 = one worker\n"
          " served every connection; others: CPUs busy with anything but the proxy and the\n"
          " load generator during the run, steal included)")

    warn = [s for s in results if s["log"] == "warn"]
    peaks = [(r, s) for s in warn for r in s["peak"] if not r["errors"]]
    print()
    print("%-30s %-36s %-14s %s" % ("goal", "best at --log-level warn", "target", ""))
    if peaks:
        r, s = max(peaks, key=lambda p: p[0]["rps"])
        print("%-30s %-36s %-14s %s" % (
            "Encrypt/s (peak)", "%.0f (threads %d, pool %d, -c%d)" % (
                r["rps"], s["threads"], s["pool"], r["connections"]),
            ">= %d" % GOAL_PEAK_RPS, verdict(r["rps"] >= GOAL_PEAK_RPS)))
    rates = [s for s in warn if s["rate"] and not s["rate"]["errors"]]
    if rates:
        s = min(rates, key=lambda s: s["rate"]["p99_us"])
        p99 = s["rate"]["p99_us"] / 1000.0
        print("%-30s %-36s %-14s %s" % (
            "p99 at %.0f/s" % s["rate"]["target_rps"], "%.2f ms (threads %d, pool %d)" % (
                p99, s["threads"], s["pool"]),
            "< %g ms" % GOAL_P99_MS,
            verdict(p99 < GOAL_P99_MS and s["rate"]["achieved_rps"] >= 0.98 * s["rate"]["target_rps"])))
    bad = [(s["log"], s["threads"], s["pool"]) for s in results
           if any(r["errors"] for r in s["peak"]) or (s["rate"] and s["rate"]["errors"])]
    if bad:
        print("\nWARNING: error replies during %s; those figures are not comparable" % bad)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--xks-proxy", required=True, help="xks-proxy binary")
    p.add_argument("--xksload", required=True, help="xksload binary (bench/xksload.c)")
    p.add_argument("--pkcs11-module", help="libsofthsm2.so (found in the usual places otherwise)")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--wrk-threads", type=int, default=2, help="wrk threads")
    p.add_argument("--connections", default="16,64", help="wrk connection counts, comma-separated")
    p.add_argument("--settings", type=parse_settings, default=None,
                   help="proxy THREADS:POOL pairs, comma-separated (default: CPUs:8, the proxy's own defaults)")
    p.add_argument("--rate", type=int, default=GOAL_RATE, help="xksload requests/s")
    p.add_argument("--rate-connections", type=int, default=8, help="xksload connections")
    p.add_argument("--rate-duration", type=int, default=30,
                   help="seconds of the fixed-rate run after 2 s of warm-up (0: skip)")
    p.add_argument("--no-info", action="store_true", help="skip the round at --log-level info")
    p.add_argument("--cert-key", choices=("ecdsa", "rsa"), default="ecdsa",
                   help="server certificate key: ECDSA P-256 or RSA-2048")
    p.add_argument("--json", help="also write the raw results to this file")
    args = p.parse_args()
    if max(args.duration, args.rate_duration + 2) > 240:
        p.error("runs must stay well under the 5-minute life of a signature")
    connection_counts = [int(c) for c in args.connections.split(",") if c]
    settings = args.settings or [(os.cpu_count() or 1, 8)]
    module = find_softhsm2(args.pkcs11_module)

    with open("/proc/loadavg") as f:
        load_before = " ".join(f.read().split()[:3])
    workdir = tempfile.mkdtemp(prefix="xks-bench-")
    results = []
    tls_line = ""
    try:
        token = Token(workdir, module, args.xks_proxy)
        tls = make_certs(workdir, args.cert_key)
        for threads, pool in settings:
            results.append(bench_setting(args, token, tls, workdir, threads, pool, "warn",
                                         connection_counts))
            tls_line = results[-1].get("tls", tls_line)
        if not args.no_info:
            # At info, with the setting and connection count that did best at warn.
            best = max(((r, s) for s in results for r in s["peak"]), key=lambda p: p[0]["rps"])
            results.append(bench_setting(args, token, tls, workdir, best[1]["threads"],
                                         best[1]["pool"], "info", [best[0]["connections"]]))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    header = [
        "machine: %s (load average before: %s)" % (machine(), load_before),
        "date: %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "TLS: %s, server certificate %s" % (
            tls_line, "ECDSA P-256" if args.cert_key == "ecdsa" else "RSA-2048"),
    ]
    info = [s for s in results if s["log"] == "info"]
    if info and info[0]["peak"] and info[0]["peak"][0]["log_bytes_per_req"]:
        header.append("info log: %.0f bytes per request" % info[0]["peak"][0]["log_bytes_per_req"])
    print_table(results, header, args.wrk_threads)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
