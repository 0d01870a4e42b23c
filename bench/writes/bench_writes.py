"""bench_writes.py - durable writes per second: CreateKey, CreateAlias and ScheduleKeyDeletion.

Every write kmsd acknowledges is on disk before the reply leaves, so the
write path is bounded by how many writes share each fsync, not by the CPU
alone.  This starts one kmsd on a fresh store and, for each --connections
count, measures three writes with wrk, each its own way because a write
cannot always be repeated:

  1. CreateKey: one signed request replayed for --duration seconds; each
     replay makes a new key, as a busy account does.
  2. CreateAlias: distinct requests (alias/bench-<i>), each naming one of the
     keys made so far, at most 50 aliases per key (AWS's quota), each sent
     once (requests.lua).  As many are signed as the run should need: the
     CreateKey rate times --duration times --headroom, capped by
     --max-requests.  When they run out before the end (wrk's threads then
     sit idle), the run is made again with three times as many, at most
     --retries times.
  3. ScheduleKeyDeletion (PendingWindowInDays 7) on distinct keys, the same
     way; if too few keys are left, CreateKey is replayed (not measured)
     until there are enough.

Every request must be answered 200: a server that answers errors quickly is
not fast, so any error reply or socket error fails the run (exit status 1).
The table puts each rate beside AWS KMS's default request quota for that
operation in one account and Region.  Never part of ctest.
"""

import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(os.path.dirname(BENCH), "tests", "e2e"))
sys.path.insert(0, BENCH)

import kmsd_harness as h  # noqa: E402  (paths set just above)
from wrk_replay import run_wrk, run_wrk_list, write_request, write_requests  # noqa: E402

# AWS KMS's default request quotas (requests per second, per account and
# Region, adjustable), from "Request quotas", table "Request quotas for each
# AWS KMS API operation":
# https://docs.aws.amazon.com/kms/latest/developerguide/requests-per-second.html
# CreateKey request rate 5, CreateAlias request rate 5, ScheduleKeyDeletion
# request rate 15.
AWS_QUOTAS = {"CreateKey": 5, "CreateAlias": 5, "ScheduleKeyDeletion": 15}

# AWS's quota of aliases per KMS key (Resource quotas, "Aliases per KMS key").
ALIASES_PER_KEY = 50
PENDING_WINDOW_DAYS = 7


class Run:
    """The state of one benchmark server: its keys and what was done to them."""

    def __init__(self, server, args, workdir):
        self.server = server
        self.args = args
        self.workdir = workdir
        self.kms = h.kms_client(server)
        self.aliases = {}        # key id -> aliases made for it
        self.scheduled = set()   # key ids scheduled for deletion
        self.next_alias = 0

    def keys(self):
        """Every key of the account, in ListKeys order (paginated)."""
        out = []
        for page in self.kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 1000}):
            out.extend(k["KeyId"] for k in page["Keys"])
        return out

    def check_once(self, operation, raw):
        status, _, parsed = h.send_raw(self.server, raw)
        if status != 200:
            raise RuntimeError("%s refused: %d %s" % (operation, status, parsed))

    def create_keys(self, connections, duration, measured=True):
        """Replay one signed CreateKey for `duration` seconds: the wrk result."""
        path = os.path.join(self.workdir, "CreateKey.req")
        raw = write_request(h, self.server, "CreateKey", {"Description": "write benchmark"}, path)
        self.check_once("CreateKey", raw)
        what = "CreateKey" if measured else "CreateKey (more keys, not measured)"
        print("  -c%d %s: %ds ..." % (connections, what, duration), file=sys.stderr)
        return run_wrk(self.server.endpoint, path, self.args.threads, connections, duration)

    def send_list(self, operation, connections, bodies):
        """Sign one `operation` per body, send the first once to check it, send
        the rest with wrk (each at most once): the wrk result, with the number
        signed and the signing time."""
        path = os.path.join(self.workdir, operation + ".reqs")
        started = time.monotonic()
        count = write_requests(h, self.server, operation, bodies[1:], path)
        sign_s = time.monotonic() - started
        print("  -c%d %s: signed %d requests in %.1f s (%.0f/s)" % (
            connections, operation, count, sign_s, count / sign_s if sign_s else 0),
            file=sys.stderr)
        self.check_once(operation, h.build_signed_request(
            self.server, "TrentService." + operation, bodies[0]))
        print("  -c%d %s: %ds ..." % (connections, operation, self.args.duration), file=sys.stderr)
        result = run_wrk_list(self.server.endpoint, path, self.args.threads, connections,
                              self.args.duration)
        result.update(signed=count, sign_s=sign_s)
        return result

    def wanted(self, rate):
        return max(2, min(self.args.max_requests, math.ceil(rate * self.args.duration *
                                                            self.args.headroom)))

    def create_aliases(self, connections, rate):
        """CreateAlias on keys not scheduled for deletion, spread over them."""
        keys = [k for k in self.keys() if k not in self.scheduled]
        room = sum(ALIASES_PER_KEY - self.aliases.get(k, 0) for k in keys)
        count = min(self.wanted(rate), room)
        bodies = []
        while len(bodies) < count:
            for key in keys:
                if len(bodies) == count:
                    break
                if self.aliases.get(key, 0) < ALIASES_PER_KEY:
                    self.aliases[key] = self.aliases.get(key, 0) + 1
                    bodies.append({"AliasName": "alias/bench-%d" % self.next_alias,
                                   "TargetKeyId": key})
                    self.next_alias += 1
        return self.send_list("CreateAlias", connections, bodies)

    def schedule_deletions(self, connections, rate, create_rate):
        """ScheduleKeyDeletion on distinct keys; first more keys if too few are left."""
        count = self.wanted(rate)
        keys = [k for k in self.keys() if k not in self.scheduled]
        missing = count - len(keys)
        if missing > 0 and create_rate > 0:
            seconds = min(self.args.max_top_up, math.ceil(missing / create_rate) + 1)
            self.create_keys(connections, seconds, measured=False)
            keys = [k for k in self.keys() if k not in self.scheduled]
        keys = keys[:count]
        self.scheduled.update(keys)
        bodies = [{"KeyId": k, "PendingWindowInDays": PENDING_WINDOW_DAYS} for k in keys]
        return self.send_list("ScheduleKeyDeletion", connections, bodies)


def until_enough(run, connections, operation, send, rate):
    """send(rate) a list run; while its requests ran out before the end (and
    more may be signed), again with three times the expected rate."""
    for attempt in range(run.args.retries + 1):
        result = send(rate)
        if (not result["ran_out"] or result["non2xx"] or result["socket_errors"]
                or result["signed"] + 1 >= run.args.max_requests):
            break
        if attempt < run.args.retries:
            rate *= 3
            print("  -c%d %s: the %d signed requests ran out before the end; again with more" % (
                connections, operation, result["signed"]), file=sys.stderr)
    result["attempts"] = attempt + 1
    return result


def measure(run, connections):
    """The three writes at `connections`: {operation: wrk result}."""
    out = {"CreateKey": run.create_keys(connections, run.args.duration)}
    create_rate = out["CreateKey"]["rps"]
    out["CreateAlias"] = until_enough(
        run, connections, "CreateAlias",
        lambda rate: run.create_aliases(connections, rate), create_rate)
    out["ScheduleKeyDeletion"] = until_enough(
        run, connections, "ScheduleKeyDeletion",
        lambda rate: run.schedule_deletions(connections, rate, create_rate),
        max(create_rate, out["CreateAlias"]["rps"]))
    return out


def print_table(results, args):
    print()
    print("kmsd --threads %d, wrk -t%d, %d s per run; AWS quota: default requests/s per account "
          "and Region" % (args.server_threads, args.threads, args.duration))
    print("%-11s %-20s %11s %9s %9s %8s %10s %10s" % (
        "connections", "operation", "requests/s", "p50 ms", "p99 ms", "non-2xx", "AWS quota",
        "kmsd/AWS"))
    for res in results:
        for operation, r in res["operations"].items():
            quota = AWS_QUOTAS[operation]
            # A share that ran out left its wrk thread idle: the rate is a floor.
            rate = ("%s%.0f" % (">=" if r.get("ran_out") else "", r["rps"]))
            print("%-11d %-20s %11s %9.2f %9.2f %8d %10d %10.1f" % (
                res["connections"], operation, rate, r["p50_us"] / 1000.0, r["p99_us"] / 1000.0,
                r["non2xx"] + r["socket_errors"], quota, r["rps"] / quota))
    for res in results:
        for operation, r in res["operations"].items():
            if r.get("ran_out"):
                print("note: -c%d %s: %d of %d wrk threads sent their whole share of the %d "
                      "requests signed before the end; raise --headroom or --max-requests" % (
                          res["connections"], operation, r["ran_out"], args.threads, r["signed"]))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kmsd", required=True, help="kmsd binary")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--connections", default="8",
                   help="wrk connections; a comma-separated list runs all three writes at each")
    p.add_argument("--server-threads", type=int, default=os.cpu_count() or 1, help="kmsd --threads")
    p.add_argument("--headroom", type=float, default=1.5,
                   help="requests signed for a list run, as a multiple of the expected count")
    p.add_argument("--max-requests", type=int, default=60000,
                   help="at most this many requests signed for a list run")
    p.add_argument("--retries", type=int, default=2,
                   help="list runs whose requests ran out are repeated with more, this many times")
    p.add_argument("--max-top-up", type=int, default=60,
                   help="at most this many seconds of CreateKey to make keys to delete")
    p.add_argument("--json", help="also write the raw results to this file")
    args = p.parse_args()
    if args.duration > 240:
        p.error("--duration must stay under the 5-minute life of a signature")
    try:
        counts = [int(c) for c in args.connections.split(",") if c]
    except ValueError:
        p.error("--connections takes numbers separated by commas")
    if not counts or min(counts) < args.threads:
        p.error("each --connections count must be at least --threads")

    server = h.KmsdServer(binary=args.kmsd, args=["--threads", str(args.server_threads),
                                                  "--log-level", "warn",
                                                  "--max-keys", "10000000"])
    results = []
    try:
        server.start()
        run = Run(server, args, server.tmp_root)
        for connections in counts:
            results.append({"connections": connections, "operations": measure(run, connections)})
    finally:
        server.cleanup()

    print_table(results, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"server_threads": args.server_threads, "threads": args.threads,
                       "duration": args.duration, "aws_quotas": AWS_QUOTAS, "runs": results},
                      f, indent=2)
    bad = ["-c%d %s" % (res["connections"], op) for res in results
           for op, r in res["operations"].items() if r["non2xx"] or r["socket_errors"]]
    if bad:
        print("\nFAILED: error replies or socket errors during %s; a server answering errors "
              "fast is not fast" % ", ".join(bad))
        sys.exit(1)


if __name__ == "__main__":
    main()
