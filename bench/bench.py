"""bench.py - throughput and latency of kmsd next to a bare HTTP floor and moto, against the goals.

run.sh builds the binaries and calls this.  For every target (kmsd, the
libmicrohttpd floor, moto's server) and every operation (Encrypt, Decrypt,
GenerateDataKey) it signs one real request with botocore, has wrk replay it
for a fixed time, and prints requests/s, p50 and p99 plus the ratios
kmsd/floor and kmsd/moto.

wrk is closed-loop: at saturation its p99 is the queue it builds itself, not
the latency a client sees at a load kmsd can carry.  So after each kmsd peak
run, xksload (bench/xksload.c, --plain) sends a freshly signed copy of the
request open-loop at half that peak for --rate-duration seconds and reports
p50/p99/p99.9 measured from each request's intended send time.

Unless --no-cloudhsm, a second kmsd gets a CONNECTED CloudHSM key store
(bench/cloudhsm/bench_cloudhsm.py's set-up) and Encrypt on its HSM-backed
key is measured right beside Encrypt on an AWS_KMS key of the same server.

The last table puts every figure next to its goal (GOALS) with "met" or
"MISSED".  Absolute numbers depend on the machine; the ratios are what to
compare between commits.
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
sys.path.insert(0, os.path.join(HERE, "cloudhsm"))

import kmsd_harness as h  # noqa: E402  (path set just above)
import bench_cloudhsm  # noqa: E402  (path set just above)
from wrk_replay import run_wrk, write_request  # noqa: E402  (bench/ is the script's own folder)

OPERATIONS = ("Encrypt", "Decrypt", "GenerateDataKey")
PLAINTEXT = b"benchmark plaintext: 64 bytes of data to encrypt, again & again"

# The performance goals on the 2-CPU machine, all measured in one run.
GOAL_FLOOR = 0.60     # kmsd/floor requests/s, each operation: at least
GOAL_MOTO = 250.0     # kmsd/moto requests/s, each operation: at least
GOAL_P99_MS = 2.0     # p99 at half kmsd's peak rate, each operation: below
GOAL_CLOUDHSM = 0.5   # Encrypt on a CloudHSM-backed key / on an AWS_KMS key: at least


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


def signed_and_checked(target, operation, body, path):
    """Sign `operation` now into `path` and send it once; True when it is accepted (200)."""
    raw = write_request(h, target, operation, body, path)
    status, _, parsed = h.send_raw(target, raw)
    if status != 200:
        print("  %s %s: the signed request is refused (%d %s); skipped" % (
            target.name, operation, status, parsed), file=sys.stderr)
    return status == 200


def run_xksload(xksload, target, request_path, rate, connections, duration):
    """xksload --plain at `rate` requests/s for `duration` s (after 2 s of
    warm-up) over `connections` kept-alive connections; its JSON line, with
    the reason it stopped early, if any, in `failure`."""
    cmd = [xksload, "--plain", "--port", str(target.port), "--request", request_path,
           "--rate", "%d" % rate, "--connections", str(connections),
           "--duration", str(duration), "--warmup", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError("xksload printed no result (%d): %s" % (proc.returncode, proc.stderr))
    return json.loads(lines[-1])


def bench_target(target, args, workdir):
    """wrk at the peak for every operation; for kmsd, then xksload at half
    that peak.  Returns ({operation: wrk result}, {operation: xksload result})."""
    results, half_peak = {}, {}
    bodies = request_bodies(target) if target.name != "floor" else None
    for operation in OPERATIONS:
        # The floor ignores what it is sent; give it kmsd-sized Encrypt bodies.
        body = bodies[operation] if bodies else {"KeyId": "alias/floor",
                                                 "Plaintext": base64.b64encode(PLAINTEXT).decode()}
        path = os.path.join(workdir, "%s-%s.req" % (target.name, operation))
        if not signed_and_checked(target, operation, body, path):
            continue
        print("  %s %s: %ds ..." % (target.name, operation, args.duration), file=sys.stderr)
        results[operation] = run_wrk(target.endpoint, path, args.threads, args.connections, args.duration)
        rate = int(results[operation]["rps"] / 2)
        if target.name != "kmsd" or rate < 1:
            continue
        # Signed again: the peak run used part of the signature's 5 minutes.
        if not signed_and_checked(target, operation, body, path):
            continue
        print("  %s %s: xksload %d/s %ds ..." % (target.name, operation, rate, args.rate_duration),
              file=sys.stderr)
        half_peak[operation] = run_xksload(args.xksload, target, path, rate,
                                           args.rate_connections, args.rate_duration)
    return results, half_peak


def bench_cloudhsm_encrypt(args, workdir):
    """Encrypt on a CloudHSM-backed key and on an AWS_KMS key of one fresh kmsd
    (bench_cloudhsm's set-up and measurement); {origin: wrk result}."""
    server = start_kmsd(args)
    try:
        print("  setting up a CONNECTED CloudHSM key store (scripts/cloudhsm-quickstart.sh) ...",
              file=sys.stderr)
        store_id = bench_cloudhsm.quickstart(server, args.hsm_cli, os.path.join(workdir, "quickstart"))
        return bench_cloudhsm.measure_encrypt(server, store_id, args, workdir)
    finally:
        server.cleanup()


def start_kmsd(args):
    server = h.KmsdServer(binary=args.kmsd, args=[
        "--threads", str(args.server_threads), "--log-level", "warn"])
    server.start()
    server.name = "kmsd"
    return server


def errors(r):
    """Error replies and socket errors of a wrk result."""
    return r["non2xx"] + r["socket_errors"]


def goal_rows(results, half_peak, cloudhsm):
    """Every goal with what this run measured: a list of dicts with operation,
    measure, value (None when not measured), goal (text), and status: "met",
    "MISSED", "not measured", or "errors" when a run behind the value had
    error replies (a server answering errors fast is not fast)."""
    rows = []

    def add(operation, measure, goal, runs, value_of, meets):
        value = value_of(*runs) if runs and all(runs) else None
        if value is None:
            status = "not measured"
        elif any(r.get("non2xx", r.get("non200", 0)) or r.get("socket_errors") or r.get("failure")
                 for r in runs):
            status = "errors"
        else:
            status = "met" if meets(value) else "MISSED"
        rows.append({"operation": operation, "measure": measure, "value": value, "goal": goal,
                     "status": status})

    def ratio(a, b):
        return a["rps"] / b["rps"] if b["rps"] else None

    kmsd = results.get("kmsd", {})
    for operation in OPERATIONS:
        for other, goal, shown in (("floor", GOAL_FLOOR, ">= %.2f"), ("moto", GOAL_MOTO, ">= %.0f")):
            add(operation, "kmsd/%s" % other, shown % goal,
                [kmsd.get(operation), results.get(other, {}).get(operation)], ratio,
                lambda v, goal=goal: v >= goal)
        add(operation, "p99 ms at half the peak", "< %g ms" % GOAL_P99_MS,
            [half_peak.get(operation)], lambda r: r["p99_us"] / 1000.0,
            lambda v: v < GOAL_P99_MS)
    add("Encrypt", "CloudHSM/AWS_KMS", ">= %.2f" % GOAL_CLOUDHSM,
        [cloudhsm.get("AWS_CLOUDHSM"), cloudhsm.get("AWS_KMS")], ratio,
        lambda v: v >= GOAL_CLOUDHSM)
    return rows


def print_table(results, half_peak, cloudhsm, goals):
    print()
    print("%-7s %-16s %12s %10s %10s %9s" % ("target", "operation", "requests/s", "p50 ms",
                                             "p99 ms", "non-2xx"))
    for target, per_op in results.items():
        for operation, r in per_op.items():
            print("%-7s %-16s %12.0f %10.2f %10.2f %9d" % (
                target, operation, r["rps"], r["p50_us"] / 1000.0, r["p99_us"] / 1000.0, errors(r)))
    if half_peak:
        print()
        print("kmsd at half its peak (xksload, open loop, latency from the intended send time)")
        print("%-16s %10s %11s %8s %8s %9s %9s" % ("operation", "rate/s", "achieved/s", "p50 ms",
                                                   "p99 ms", "p99.9 ms", "non-2xx"))
        for operation, r in half_peak.items():
            print("%-16s %10.0f %11.0f %8.2f %8.2f %9.2f %9d" % (
                operation, r["target_rps"], r["achieved_rps"], r["p50_us"] / 1000.0,
                r["p99_us"] / 1000.0, r["p999_us"] / 1000.0, r["non200"]))
    if cloudhsm:
        print()
        print("Encrypt on a second kmsd, one key of each origin")
        print("%-16s %12s %10s %10s %9s" % ("key origin", "requests/s", "p50 ms", "p99 ms", "non-2xx"))
        for origin, r in cloudhsm.items():
            print("%-16s %12.0f %10.2f %10.2f %9d" % (origin, r["rps"], r["p50_us"] / 1000.0,
                                                      r["p99_us"] / 1000.0, errors(r)))
    print()
    print("%-16s %-24s %8s  %-9s %s" % ("operation", "measure", "value", "goal", "status"))
    for g in goals:
        print("%-16s %-24s %8s  %-9s %s" % (
            g["operation"], g["measure"], "-" if g["value"] is None else "%.2f" % g["value"],
            g["goal"], g["status"]))
    bad = [(t, o) for t, per_op in results.items() for o, r in per_op.items() if errors(r)]
    bad += [("kmsd at half the peak", o) for o, r in half_peak.items() if r["non200"]]
    bad += [("CloudHSM run", o) for o, r in cloudhsm.items() if errors(r)]
    if bad:
        print("\nWARNING: error replies during %s; those figures are not comparable" % bad)
    for operation, r in half_peak.items():
        if r["failure"]:
            print("\nWARNING: xksload at half the %s peak stopped early: %s" % (operation, r["failure"]))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kmsd", required=True, help="kmsd binary")
    p.add_argument("--floor", required=True, help="floor binary (bench/floor.c)")
    p.add_argument("--xksload", required=True, help="xksload binary (bench/xksload.c)")
    p.add_argument("--hsm-cli", help="hsm-cli binary (for the CloudHSM row)")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--connections", type=int, default=32, help="wrk connections")
    p.add_argument("--rate-duration", type=int, default=10,
                   help="seconds per xksload run at half kmsd's peak (after 2 s of warm-up)")
    p.add_argument("--rate-connections", type=int, default=8, help="xksload connections")
    p.add_argument("--server-threads", type=int, default=os.cpu_count() or 1,
                   help="worker threads of kmsd and the floor")
    p.add_argument("--targets", default="kmsd,floor,moto", help="comma-separated subset")
    p.add_argument("--no-cloudhsm", action="store_true",
                   help="skip Encrypt on a CloudHSM-backed key (else measured when kmsd is a target)")
    p.add_argument("--json", help="also write the raw results to this file")
    args = p.parse_args()
    if args.duration > 240 or args.rate_duration > 240:
        p.error("--duration and --rate-duration must stay under the 5-minute life of a signature")
    if args.rate_duration < 1 or not 1 <= args.rate_connections <= 256:
        p.error("--rate-duration must be at least 1 and --rate-connections 1 to 256")
    targets = [t for t in args.targets.split(",") if t]
    if "moto" in targets and not shutil.which("moto_server"):
        print("moto_server not on PATH; skipping moto", file=sys.stderr)
        targets.remove("moto")
    cloudhsm_wanted = "kmsd" in targets and not args.no_cloudhsm
    if cloudhsm_wanted and not args.hsm_cli:
        p.error("--hsm-cli is needed for the CloudHSM row (or --no-cloudhsm)")
    if cloudhsm_wanted and not shutil.which("aws"):
        # scripts/cloudhsm-quickstart.sh drives kmsd with the aws CLI.
        print("aws (the AWS CLI) not on PATH; skipping the CloudHSM row", file=sys.stderr)
        cloudhsm_wanted = False

    workdir = tempfile.mkdtemp(prefix="kmsd-bench-")
    results, half_peak, cloudhsm, cloudhsm_error = {}, {}, {}, None
    try:
        for name in targets:
            if name == "kmsd":
                target = start_kmsd(args)
            elif name == "floor":
                target = start_floor(args.floor, args.server_threads, workdir)
            elif name == "moto":
                target = start_moto(workdir)
            else:
                p.error("unknown target %r" % name)
            try:
                results[name], target_half_peak = bench_target(target, args, workdir)
                half_peak.update(target_half_peak)
            finally:
                if isinstance(target, h.KmsdServer):
                    target.cleanup()
                else:
                    target.stop()
        if cloudhsm_wanted:
            try:
                cloudhsm = bench_cloudhsm_encrypt(args, workdir)
            except RuntimeError as e:
                # The rest of the run still stands; the goal shows "not measured".
                cloudhsm_error = str(e)
                print("  CloudHSM row failed: %s" % e, file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    goals = goal_rows(results, half_peak, cloudhsm)
    print_table(results, half_peak, cloudhsm, goals)
    if cloudhsm_error:
        print("\nWARNING: the CloudHSM row failed: %s" % cloudhsm_error.splitlines()[0])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"targets": results, "half_peak": half_peak, "cloudhsm": cloudhsm,
                       "goals": goals}, f, indent=2)


if __name__ == "__main__":
    main()
