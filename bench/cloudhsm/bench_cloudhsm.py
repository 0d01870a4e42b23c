"""bench_cloudhsm.py - what a CloudHSM key store costs: connect latency and Encrypt throughput.

cloudhsm.sh builds the binaries and calls this.  One kmsd is started on
loopback with a fresh data directory; scripts/cloudhsm-quickstart.sh (the
README's walkthrough) makes an ACTIVE cluster with two SoftHSM2-backed HSMs
and a CONNECTED store.  Then:

connect   --cycles times: disconnect, wait for DISCONNECTED, send
          ConnectCustomKeyStore, and poll DescribeCustomKeyStores every
          --poll-ms until CONNECTED.  The latency is from sending Connect to
          the first Describe that reports CONNECTED, so it includes up to one
          polling interval plus one Describe round trip; p50/p99 are over the
          cycles.  Requests are pre-built SigV4 calls over one kept-alive
          connection so the client adds as little as possible.
encrypt   an AWS_CLOUDHSM key (AES-GCM inside the HSM through PKCS#11) and an
          AWS_KMS key (AES-GCM in kmsd under its root key) each get one signed
          Encrypt request that wrk replays for --duration seconds
          (bench/request.lua); the table shows requests/s, p50, p99 and the
          ratio HSM/AWS_KMS.

bench/bench.py (bench/run.sh) imports quickstart() and measure_encrypt() for
the CloudHSM row of its goals table.
"""

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, BENCH)

import kmsd_harness as h  # noqa: E402  (path set just above)
from wrk_replay import run_wrk, write_request  # noqa: E402

PLAINTEXT = b"benchmark plaintext: 64 bytes of data to encrypt, again & again"


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, int(round(p / 100.0 * len(ordered) + 0.4999)))
    return ordered[min(rank, len(ordered)) - 1]


def quickstart(server, hsm_cli, workdir):
    """Run the quickstart script against `server`; returns the store id."""
    env = h.aws_env(server, env_extra={"HSM_CLI": hsm_cli})
    proc = subprocess.run([os.path.join(ROOT, "scripts", "cloudhsm-quickstart.sh"),
                           "--endpoint-url", server.endpoint, "--work-dir", workdir],
                          capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError("quickstart failed:\n%s\n%s" % (proc.stderr, server.describe()))
    return proc.stdout.strip()


class Caller:
    """Signed KMS calls over one kept-alive connection."""

    def __init__(self, server):
        self.server = server
        self.conn = server.connection(timeout=30)

    def call(self, operation, body):
        status, _, parsed = h.signed_request(self.server, "TrentService." + operation, body, conn=self.conn)
        if status != 200:
            raise RuntimeError("%s -> %d %r" % (operation, status, parsed))
        return parsed

    def close(self):
        self.conn.close()


def measure_connect(server, store_id, cycles, poll_s):
    """Connect-to-CONNECTED latencies in milliseconds, one per cycle."""
    caller = Caller(server)
    ident = {"CustomKeyStoreId": store_id}

    def state():
        return caller.call("DescribeCustomKeyStores", ident)["CustomKeyStores"][0]

    def wait(want, deadline_s=30.0):
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            s = state()
            if s["ConnectionState"] == want:
                return
            if s["ConnectionState"] == "FAILED":
                raise RuntimeError("store FAILED: %s" % s.get("ConnectionErrorCode"))
            time.sleep(poll_s)
        raise RuntimeError("store not %s after %ds" % (want, deadline_s))

    latencies = []
    try:
        for i in range(cycles):
            if state()["ConnectionState"] != "DISCONNECTED":
                caller.call("DisconnectCustomKeyStore", ident)
                wait("DISCONNECTED")
            t0 = time.perf_counter()
            caller.call("ConnectCustomKeyStore", ident)
            wait("CONNECTED")
            latencies.append((time.perf_counter() - t0) * 1000.0)
            if (i + 1) % 20 == 0:
                print("  connect: %d/%d cycles" % (i + 1, cycles), file=sys.stderr)
    finally:
        caller.close()
    return latencies


def measure_encrypt(server, store_id, args, workdir):
    kms = h.kms_client(server)
    keys = {
        "AWS_CLOUDHSM": kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id,
                                       Description="bench")["KeyMetadata"]["KeyId"],
        "AWS_KMS": kms.create_key(Description="bench")["KeyMetadata"]["KeyId"],
    }
    results = {}
    for origin, key_id in keys.items():
        body = {"KeyId": key_id, "Plaintext": base64.b64encode(PLAINTEXT).decode()}
        path = os.path.join(workdir, "encrypt-%s.req" % origin)
        raw = write_request(h, server, "Encrypt", body, path)
        status, _, parsed = h.send_raw(server, raw)
        if status != 200:
            raise RuntimeError("the signed Encrypt for %s is refused: %d %r" % (origin, status, parsed))
        print("  encrypt %s: %ds ..." % (origin, args.duration), file=sys.stderr)
        results[origin] = run_wrk(server.endpoint, path, args.threads, args.connections, args.duration)
    return results


def print_report(connect_ms, poll_ms, encrypt):
    print()
    print("Connect -> CONNECTED (%d cycles, DescribeCustomKeyStores polled every %g ms)" % (
        len(connect_ms), poll_ms))
    print("%10s %10s %10s %10s %10s" % ("p50 ms", "p99 ms", "mean ms", "min ms", "max ms"))
    print("%10.1f %10.1f %10.1f %10.1f %10.1f" % (
        percentile(connect_ms, 50), percentile(connect_ms, 99), statistics.mean(connect_ms),
        min(connect_ms), max(connect_ms)))
    print()
    print("%-14s %12s %10s %10s %9s" % ("Encrypt key", "requests/s", "p50 ms", "p99 ms", "non-2xx"))
    for origin, r in encrypt.items():
        print("%-14s %12.0f %10.2f %10.2f %9d" % (origin, r["rps"], r["p50_us"] / 1000.0, r["p99_us"] / 1000.0,
                                                 r["non2xx"] + r["socket_errors"]))
    hsm, local = encrypt.get("AWS_CLOUDHSM"), encrypt.get("AWS_KMS")
    if hsm and local and local["rps"]:
        print()
        print("AWS_CLOUDHSM / AWS_KMS throughput: %.2f" % (hsm["rps"] / local["rps"]))
    bad = [o for o, r in encrypt.items() if r["non2xx"] or r["socket_errors"]]
    if bad:
        print("\nWARNING: error replies during %s; those rates are not comparable" % bad)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kmsd", required=True, help="kmsd binary")
    p.add_argument("--hsm-cli", required=True, help="hsm-cli binary")
    p.add_argument("--cycles", type=int, default=100, help="connect/disconnect cycles")
    p.add_argument("--poll-ms", type=float, default=2.0, help="DescribeCustomKeyStores polling interval")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--connections", type=int, default=32, help="wrk connections")
    p.add_argument("--server-threads", type=int, default=os.cpu_count() or 1, help="kmsd worker threads")
    p.add_argument("--json", help="also write the raw results to this file")
    args = p.parse_args()
    if args.duration > 240:
        p.error("--duration must stay under the 5-minute life of a signature")
    if args.cycles < 1:
        p.error("--cycles must be at least 1")

    workdir = tempfile.mkdtemp(prefix="kmsd-bench-cloudhsm-")
    server = h.KmsdServer(binary=args.kmsd, args=["--threads", str(args.server_threads), "--log-level", "warn"])
    server.start()
    try:
        print("  setting up a CONNECTED key store (scripts/cloudhsm-quickstart.sh) ...", file=sys.stderr)
        store_id = quickstart(server, args.hsm_cli, os.path.join(workdir, "quickstart"))
        connect_ms = measure_connect(server, store_id, args.cycles, args.poll_ms / 1000.0)
        encrypt = measure_encrypt(server, store_id, args, workdir)
    finally:
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(connect_ms, args.poll_ms, encrypt)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"connect_ms": connect_ms, "poll_ms": args.poll_ms, "encrypt": encrypt}, f, indent=2)


if __name__ == "__main__":
    main()
