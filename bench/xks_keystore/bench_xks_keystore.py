"""bench_xks_keystore.py - kmsd Encrypt on an external key, through xks-proxy over TLS, beside an AWS_KMS key.

xks-keystore.sh builds the binaries and calls this.  In a temporary
directory, scripts/xks-quickstart.sh starts xks-proxy on a SoftHSM2 token
with TLS on a free loopback port; one kmsd is started with
--xks-ca-bundle (the proxy's CA) and --xks-connect-to localhost:443 ->
the proxy's port, and scripts/xks-keystore-quickstart.sh (the README's
walkthrough) makes a CONNECTED external key store there.  Then one KMS key
in that store (XksKeyId demo-key-1) and one AWS_KMS key each get one signed
Encrypt request that wrk replays for --duration seconds (bench/request.lua),
one after the other, for --rounds rounds in the same run.  Every Encrypt on the external key is a
full XKS call from kmsd to the proxy (double encryption: kmsd's inner layer,
then the proxy's AES-GCM in the token), so the ratio external / AWS_KMS says
what an external key store costs.  The goal is >= 0.25.
"""

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, BENCH)

import kmsd_harness as h  # noqa: E402  (path set just above)
from wrk_replay import run_wrk, write_request  # noqa: E402

PLAINTEXT = b"benchmark plaintext: 64 bytes of data to encrypt, again & again"
GOAL_RATIO = 0.25


def start_proxy(proxy, workdir, port, quota, threads):
    """scripts/xks-quickstart.sh in `workdir`: once to make the token, key,
    certificates and configuration (it calls the four operations and stops),
    then, with the configuration's request quota raised to `quota` so that it
    is not what the run measures, its log level at warn and `threads` worker
    threads (0: one per CPU), again with --keep-running.  Returns the
    proxy's pid."""
    os.makedirs(workdir)
    log_path = os.path.join(workdir, "quickstart.log")
    cmd = [os.path.join(ROOT, "scripts", "xks-quickstart.sh"), "--work-dir", workdir,
           "--port", str(port), "--xks-proxy", proxy]
    for extra in ([], ["--keep-running"]):
        # Output to a file, not a pipe: the proxy left running inherits it,
        # and a pipe would stay open until it exits.
        with open(log_path, "ab") as log:
            proc = subprocess.run(cmd + extra, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                  timeout=120)
        if proc.returncode != 0:
            with open(log_path, errors="replace") as f:
                raise RuntimeError("xks-quickstart.sh failed:\n%s" % f.read()[-3000:])
        if not extra:
            config = os.path.join(workdir, "xks-proxy.yaml")
            with open(config) as f:
                text = f.read()
            raised = text.replace("requests_per_second: 1800", "requests_per_second: %d" % quota)
            if raised == text:
                raise RuntimeError("no 1,800/s quota in %s to raise" % config)
            # One log line per request is not what is measured (kmsd runs at
            # warn too); bench/xks.sh measures the proxy both ways.
            settled = raised.replace("\nlisten:", "\nlog_level: warn\nthreads: %d\nlisten:" % threads, 1)
            if settled == raised or "\nthreads:" in raised or "\nlog_level:" in raised:
                raise RuntimeError("cannot set log_level and threads in %s" % config)
            raised = settled
            with open(config, "w") as f:
                f.write(raised)
    with open(os.path.join(workdir, "xks-proxy.pid")) as f:
        return int(f.read().strip())


def make_store(server, proxy_dir, port):
    env = h.aws_env(server)
    proc = subprocess.run([os.path.join(ROOT, "scripts", "xks-keystore-quickstart.sh"),
                           "--endpoint-url", server.endpoint, "--proxy-dir", proxy_dir,
                           "--proxy-port", str(port)],
                          capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError("xks-keystore-quickstart.sh failed:\n%s\n%s" % (proc.stderr, server.describe()))
    return proc.stdout.strip()


def cpu_seconds(pid):
    """User + system CPU time of process `pid` so far, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(server, store_id, proxy_pid, args, workdir):
    """`args.rounds` rounds of one wrk run per key, the order swapped every
    round (external first, then AWS_KMS first, ...), so that a machine
    whose speed drifts during the run (a shared host) weighs on both keys
    alike; each round gives its own ratio.  Also the CPU time kmsd and the
    proxy spent per request in each run."""
    kms = h.kms_client(server)
    keys = {
        "EXTERNAL_KEY_STORE": kms.create_key(Origin="EXTERNAL_KEY_STORE", CustomKeyStoreId=store_id,
                                             XksKeyId="demo-key-1", Description="bench")["KeyMetadata"]["KeyId"],
        "AWS_KMS": kms.create_key(Description="bench")["KeyMetadata"]["KeyId"],
    }
    paths = {}
    for origin, key_id in keys.items():
        body = {"KeyId": key_id, "Plaintext": base64.b64encode(PLAINTEXT).decode()}
        paths[origin] = os.path.join(workdir, "encrypt-%s.req" % origin)
        raw = write_request(h, server, "Encrypt", body, paths[origin])
        status, _, parsed = h.send_raw(server, raw)
        if status != 200:
            raise RuntimeError("the signed Encrypt for %s is refused: %d %r" % (origin, status, parsed))
    rounds = []
    order = list(keys)
    for n in range(args.rounds):
        results = {}
        for origin in (order if n % 2 == 0 else order[::-1]):
            print("  round %d/%d, encrypt %s: %ds ..." % (n + 1, args.rounds, origin, args.duration),
                  file=sys.stderr)
            before = (cpu_seconds(server.proc.pid), cpu_seconds(proxy_pid))
            r = run_wrk(server.endpoint, paths[origin], args.threads, args.connections, args.duration)
            after = (cpu_seconds(server.proc.pid), cpu_seconds(proxy_pid))
            done = max(r["requests"], 1)
            r["kmsd_cpu_us"] = (after[0] - before[0]) * 1e6 / done
            r["proxy_cpu_us"] = (after[1] - before[1]) * 1e6 / done
            results[origin] = r
        rounds.append(results)
    return rounds


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


def print_report(rounds, args):
    print()
    print("machine: %s; wrk -t%d -c%d, %d s per key and round; kmsd --threads %d; "
          "xks-proxy threads %d" % (machine(), args.threads, args.connections, args.duration,
                                    args.server_threads, args.proxy_threads))
    print("%-6s %-20s %12s %9s %9s %12s %12s %8s" % (
        "round", "Encrypt key", "requests/s", "p50 ms", "p99 ms", "kmsd us/req", "proxy us/req",
        "non-2xx"))
    ratios = []
    for n, results in enumerate(rounds, 1):
        for origin in ("EXTERNAL_KEY_STORE", "AWS_KMS"):
            r = results[origin]
            print("%-6d %-20s %12.0f %9.2f %9.2f %12.0f %12s %8d" % (
                n, origin, r["rps"], r["p50_us"] / 1000.0, r["p99_us"] / 1000.0, r["kmsd_cpu_us"],
                "%.0f" % r["proxy_cpu_us"] if origin == "EXTERNAL_KEY_STORE" else "-",
                r["non2xx"] + r["socket_errors"]))
        local = results["AWS_KMS"]["rps"]
        ratios.append(results["EXTERNAL_KEY_STORE"]["rps"] / local if local else 0.0)
    print()
    print("EXTERNAL_KEY_STORE / AWS_KMS throughput by round: %s" % ", ".join(
        "%.2f" % r for r in ratios))
    median = sorted(ratios)[len(ratios) // 2]
    print("median: %.2f (goal >= %.2f: %s)" % (median, GOAL_RATIO,
                                               "met" if median >= GOAL_RATIO else "MISSED"))
    bad = sorted({o for results in rounds for o, r in results.items()
                  if r["non2xx"] or r["socket_errors"]})
    if bad:
        print("\nWARNING: error replies during %s; those rates are not comparable" % bad)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kmsd", required=True, help="kmsd binary")
    p.add_argument("--xks-proxy", required=True, help="xks-proxy binary")
    p.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=3, help="rounds of one run per key (odd: a median)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--connections", type=int, default=32, help="wrk connections")
    p.add_argument("--server-threads", type=int, default=os.cpu_count() or 1, help="kmsd worker threads")
    # One proxy thread by default: on a host whose CPUs wrk and kmsd share, a
    # second one mostly waits for SoftHSM2's locks and for a CPU (measured
    # side by side in bench/README.md).
    p.add_argument("--proxy-threads", type=int, default=1,
                   help="xks-proxy worker threads (default 1; 0: one per CPU, xks-proxy's own default)")
    p.add_argument("--proxy-quota", type=int, default=1000000,
                   help="the proxy's requests/s quota (the quickstart's 1,800 would be what is measured)")
    p.add_argument("--kmsd-arg", action="append", default=[],
                   help="one more kmsd argument (repeat), e.g. --kmsd-arg=--wait-threads=8")
    p.add_argument("--json", help="also write the raw results to this file")
    args = p.parse_args()
    if args.duration * args.rounds * 2 > 240:
        p.error("--duration x --rounds x 2 must stay under the 5-minute life of a signature")
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if not 0 <= args.proxy_threads <= 1024:
        p.error("--proxy-threads must be 0..1024 (0: one per CPU)")

    workdir = tempfile.mkdtemp(prefix="kmsd-bench-xks-")
    proxy_dir = os.path.join(workdir, "proxy")
    port = h.free_port()
    pid = None
    server = None
    try:
        print("  starting xks-proxy (scripts/xks-quickstart.sh) ...", file=sys.stderr)
        pid = start_proxy(args.xks_proxy, proxy_dir, port, args.proxy_quota, args.proxy_threads)
        server = h.KmsdServer(binary=args.kmsd, args=[
            "--threads", str(args.server_threads), "--log-level", "warn",
            "--xks-ca-bundle", os.path.join(proxy_dir, "ca.pem"),
            "--xks-connect-to", "localhost:443:127.0.0.1:%d" % port] + args.kmsd_arg)
        server.start()
        print("  connecting an external key store (scripts/xks-keystore-quickstart.sh) ...", file=sys.stderr)
        store_id = make_store(server, proxy_dir, port)
        results = measure(server, store_id, pid, args, workdir)
    finally:
        if server:
            server.cleanup()
        if pid:
            try:
                os.kill(pid, 15)
            except OSError:
                pass
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(results, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": {"wrk_threads": args.threads, "connections": args.connections,
                                    "duration_s": args.duration, "kmsd_threads": args.server_threads,
                                    "proxy_threads": args.proxy_threads},
                       "rounds": results}, f, indent=2)


if __name__ == "__main__":
    main()
