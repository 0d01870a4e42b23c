"""bench.py - throughput and latency of kmsd next to a bare HTTP floor and moto.

run.sh builds the binaries and calls this.  For every target (kmsd, the
libmicrohttpd floor, moto's server) and every operation (Encrypt, Decrypt,
GenerateDataKey) it signs one real request with botocore, has wrk replay it
for a fixed time, and prints requests/s, p50 and p99 plus the ratios
kmsd/floor and kmsd/moto.  Absolute numbers depend on the machine; the ratios
are what to compare between commits.
"""

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "e2e"))

import kmsd_harness as h  # noqa: E402  (path set just above)
from wrk_replay import run_wrk, write_request  # noqa: E402  (bench/ is the script's own folder)

OPERATIONS = ("Encrypt", "Decrypt", "GenerateDataKey")
PLAINTEXT = b"benchmark plaintext: 64 bytes of data to encrypt, again & again"


class Endpoint:
    """A plain-HTTP server on loopback that the harness's signing helpers can address."""

    def __init__(self, name, port, proc=None):
        self.name = name
        self.port = port
        self.proc = proc
        self.scheme = "http"
        self.tls = None
        self.ca_bundle = None
        self.clock_offset = 0
        self.host_port = "127.0.0.1:%d" % port
        self.endpoint = "http://" + self.host_port

    def connection(self, timeout=30):
        import http.client
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_listening(port, proc, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s before listening" % (what, proc.returncode))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("%s did not listen on port %d within %ds" % (what, port, timeout))


def start_floor(binary, threads, logdir):
    port = h.free_port()
    log = open(os.path.join(logdir, "floor.log"), "wb")
    proc = subprocess.Popen([binary, str(port), str(threads)], stdout=log, stderr=log)
    wait_listening(port, proc, "floor")
    return Endpoint("floor", port, proc)


def start_moto(logdir):
    port = h.free_port()
    log = open(os.path.join(logdir, "moto.log"), "wb")
    proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=log)
    wait_listening(port, proc, "moto_server")
    return Endpoint("moto", port, proc)


def request_bodies(target):
    """One valid body per operation, made against `target` (its own key and ciphertext)."""
    kms = h.kms_client(target)
    key_id = kms.create_key(Description="benchmark")["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=PLAINTEXT)["CiphertextBlob"]
    return {
        "Encrypt": {"KeyId": key_id, "Plaintext": base64.b64encode(PLAINTEXT).decode()},
        "Decrypt": {"CiphertextBlob": base64.b64encode(blob).decode()},
        "GenerateDataKey": {"KeyId": key_id, "KeySpec": "AES_256"},
    }


def bench_target(target, args, workdir):
    results = {}
    bodies = request_bodies(target) if target.name != "floor" else None
    for operation in OPERATIONS:
        # The floor ignores what it is sent; give it kmsd-sized Encrypt bodies.
        body = bodies[operation] if bodies else {"KeyId": "alias/floor",
                                                 "Plaintext": base64.b64encode(PLAINTEXT).decode()}
        path = os.path.join(workdir, "%s-%s.req" % (target.name, operation))
        raw = write_request(h, target, operation, body, path)
        status, _, parsed = h.send_raw(target, raw)
        if status != 200:
            print("  %s %s: the signed request is refused (%d %s); skipped" % (
                target.name, operation, status, parsed), file=sys.stderr)
            continue
        print("  %s %s: %ds ..." % (target.name, operation, args.duration), file=sys.stderr)
        results[operation] = run_wrk(target.endpoint, path, args.threads, args.connections, args.duration)
    return results


def print_table(results):
    print()
    print("%-7s %-16s %12s %10s %10s %9s" % ("target", "operation", "requests/s", "p50 ms",
                                             "p99 ms", "non-2xx"))
    for target, per_op in results.items():
        for operation, r in per_op.items():
            print("%-7s %-16s %12.0f %10.2f %10.2f %9d" % (
                target, operation, r["rps"], r["p50_us"] / 1000.0, r["p99_us"] / 1000.0,
                r["non2xx"] + r["socket_errors"]))
    print()
    print("%-16s %12s %12s" % ("operation", "kmsd/floor", "kmsd/moto"))
    kmsd = results.get("kmsd", {})
    for operation in OPERATIONS:
        if operation not in kmsd:
            continue
        cells = []
        for other in ("floor", "moto"):
            r = results.get(other, {}).get(operation)
            cells.append("%12.2f" % (kmsd[operation]["rps"] / r["rps"]) if r and r["rps"] else
                         "%12s" % "-")
        print("%-16s %s" % (operation, " ".join(cells)))
    bad = [(t, o) for t, per_op in results.items() for o, r in per_op.items()
           if r["non2xx"] or r["socket_errors"]]
    if bad:
        print("\nWARNING: error replies during %s; those rates are not comparable" % bad)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kmsd", required=True, help="kmsd binary")
    p.add_argument("--floor", required=True, help="floor binary (bench/floor.c)")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--connections", type=int, default=32, help="wrk connections")
    p.add_argument("--server-threads", type=int, default=os.cpu_count() or 1,
                   help="worker threads of kmsd and the floor")
    p.add_argument("--targets", default="kmsd,floor,moto", help="comma-separated subset")
    p.add_argument("--json", help="also write the raw results to this file")
    args = p.parse_args()
    if args.duration > 240:
        p.error("--duration must stay under the 5-minute life of a signature")
    targets = [t for t in args.targets.split(",") if t]
    if "moto" in targets and not shutil.which("moto_server"):
        print("moto_server not on PATH; skipping moto", file=sys.stderr)
        targets.remove("moto")

    workdir = tempfile.mkdtemp(prefix="kmsd-bench-")
    results = {}
    try:
        for name in targets:
            if name == "kmsd":
                target = h.KmsdServer(binary=args.kmsd, args=[
                    "--threads", str(args.server_threads), "--log-level", "warn"])
                target.start()
                target.name = "kmsd"
            elif name == "floor":
                target = start_floor(args.floor, args.server_threads, workdir)
            elif name == "moto":
                target = start_moto(workdir)
            else:
                p.error("unknown target %r" % name)
            try:
                results[name] = bench_target(target, args, workdir)
            finally:
                if isinstance(target, h.KmsdServer):
                    target.cleanup()
                else:
                    target.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
