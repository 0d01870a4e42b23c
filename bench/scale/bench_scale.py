"""bench_scale.py - does kmsd stay as fast with a large store as with one key?

Starts two kmsd, each on a fresh store with one key; builds a large store in
the second through the API (--keys keys, each with an alias and its default
key policy: the store a busy account builds); then measures Encrypt and
Decrypt on each server's own key, the two servers one after the other, for
--rounds rounds whose order alternates, so that a shared host whose speed
drifts weighs on both alike.  Prints each round's large/small ratio and the
median (goal: within 10 %, i.e. >= 0.90), the build's write rate, the store's
files, the large server's resident memory at peak while serving (goal: under
128 MB) and how long kmsd takes to start on the large store (goal: under
1 s).  Issue 10's "flat with size" figures.  Never part of ctest.
"""

import argparse
import base64
import concurrent.futures
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(os.path.dirname(BENCH), "tests", "e2e"))
sys.path.insert(0, BENCH)

import kmsd_harness as h  # noqa: E402  (paths set just above)
from wrk_replay import run_wrk, write_request  # noqa: E402

PLAINTEXT = b"benchmark plaintext: 64 bytes of data to encrypt, again & again"


def peak_rss_kb(pid):
    """VmHWM: the most resident memory the process has had, in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def store_files(data_dir):
    return {name: os.path.getsize(os.path.join(data_dir, name))
            for name in sorted(os.listdir(data_dir)) if name.startswith("kmsd.db")}


def measure(server, key_id, blob, args, workdir):
    """Encrypt and Decrypt on `key_id`, one wrk run each: {operation: wrk result}."""
    bodies = {"Encrypt": {"KeyId": key_id, "Plaintext": base64.b64encode(PLAINTEXT).decode()},
              "Decrypt": {"CiphertextBlob": base64.b64encode(blob).decode()}}
    out = {}
    for operation, body in bodies.items():
        path = os.path.join(workdir, operation + ".req")
        raw = write_request(h, server, operation, body, path)
        status, _, parsed = h.send_raw(server, raw)
        if status != 200:
            raise RuntimeError("%s refused: %d %s" % (operation, status, parsed))
        out[operation] = run_wrk(server.endpoint, path, args.threads, args.connections, args.duration)
    return out


def build_store(server, count, clients):
    """`count` keys, each with an alias, from `clients` concurrent callers."""
    pool = [h.kms_client(server) for _ in range(clients)]

    def one(i):
        kms = pool[i % clients]
        key_id = kms.create_key(Description="scale %d" % i)["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/scale-%d" % i, TargetKeyId=key_id)

    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        for done, _ in enumerate(ex.map(one, range(count)), 1):
            if done % 10000 == 0:
                print("  %d keys ..." % done, file=sys.stderr, flush=True)


def new_server(args):
    # Both servers alike; the large store holds --keys keys beside the
    # measured one, past the default quota of 100,000 when --keys is.
    server = h.KmsdServer(binary=args.kmsd, args=["--threads", str(args.server_threads),
                                                   "--log-level", "warn",
                                                   "--max-keys", str(max(100000, args.keys + 1))])
    server.start()
    kms = h.kms_client(server)
    key_id = kms.create_key(Description="measured")["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=PLAINTEXT)["CiphertextBlob"]
    return server, key_id, blob


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kmsd", required=True, help="kmsd binary")
    p.add_argument("--keys", type=int, default=100000, help="keys (and aliases) in the large store")
    p.add_argument("--clients", type=int, default=8, help="concurrent callers while building")
    p.add_argument("--rounds", type=int, default=3, help="rounds of one run per server (odd: a median)")
    p.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--connections", type=int, default=32, help="wrk connections")
    p.add_argument("--server-threads", type=int, default=os.cpu_count() or 1, help="kmsd --threads")
    args = p.parse_args()

    servers = []
    try:
        small = new_server(args)
        servers.append(small[0])
        large = new_server(args)
        servers.append(large[0])
        print("  creating %d keys and aliases with %d clients ..." % (args.keys, args.clients),
              file=sys.stderr)
        started = time.monotonic()
        build_store(large[0], args.keys, args.clients)
        build_s = time.monotonic() - started

        rounds = []
        for r in range(args.rounds):
            order = [("small", small), ("large", large)]
            if r % 2:
                order.reverse()
            got = {}
            for name, (server, key_id, blob) in order:
                print("  round %d/%d, %s store ..." % (r + 1, args.rounds, name), file=sys.stderr)
                got[name] = measure(server, key_id, blob, args, server.tmp_root)
            rounds.append(got)
        rss_kb = peak_rss_kb(large[0].proc.pid)
        files = store_files(large[0].data_dir)

        large[0].stop()
        started = time.monotonic()
        large[0].start()
        startup_s = time.monotonic() - started
    finally:
        for server in servers:
            server.cleanup()

    print()
    print("large store: %d keys with aliases and policies, built in %.0f s (%.0f keys+aliases/s, "
          "%d clients)" % (args.keys, build_s, args.keys / build_s, args.clients))
    print("store files: %s" % ", ".join("%s %.1f MB" % (n, s / 1e6) for n, s in files.items()))
    print("%-6s %-10s %14s %14s %8s" % ("round", "operation", "1 key req/s", "%d keys" % args.keys,
                                        "ratio"))
    ratios = {"Encrypt": [], "Decrypt": []}
    for i, got in enumerate(rounds, 1):
        for operation in ("Encrypt", "Decrypt"):
            a, b = got["small"][operation]["rps"], got["large"][operation]["rps"]
            ratios[operation].append(b / a)
            print("%-6d %-10s %14.0f %14.0f %8.2f" % (i, operation, a, b, b / a))
    for operation, values in ratios.items():
        print("%s median ratio: %.2f (goal >= 0.90)" % (operation, sorted(values)[len(values) // 2]))
    print("peak resident memory of the large store's kmsd: %.1f MB (goal < 128 MB)" % (rss_kb / 1024.0))
    print("start-up on the large store (until /health answers): %.2f s (goal < 1 s)" % startup_s)
    errors = [op for got in rounds for run in got.values() for op, r in run.items()
              if r["non2xx"] or r["socket_errors"]]
    if errors:
        print("\nWARNING: error replies during %s; those rates are not comparable" % sorted(set(errors)))


if __name__ == "__main__":
    main()
