"""bench_nodes.py - kmsd's throughput with one node and with two nodes on one
PostgreSQL database, beside one node on SQLite, measured one after the other
in one run on this machine (bench/nodes.sh starts the PostgreSQL server).

For each setup the nodes start on a fresh store (two nodes share the database
and root.key; each has its own data directory), one key is made, and wrk
replays one signed request per node for --duration seconds, all nodes at once,
the connections split evenly: Encrypt (a read: one change-stamp round trip
to the database per request, then the key cache) and CreateKey (a write: one
commit each, under the cluster-wide write lock).  The rate is the sum over the
nodes.  While wrk runs, the CPU time of kmsd, of PostgreSQL and of everything
else is read from /proc, which says what limits the rate: on a machine whose
CPUs are all busy, a second node only shares them.  Never part of ctest.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(os.path.dirname(BENCH), "tests", "e2e"))
sys.path.insert(0, BENCH)

import kmsd_harness as h  # noqa: E402  (paths set just above)
import pg_fixture  # noqa: E402
from wrk_replay import run_wrk, write_request  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of process `pid`, in seconds (0 when it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except OSError:
        return 0.0


def postgres_pids():
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/comm" % name) as f:
                    if f.read().strip() == "postgres":
                        out.append(int(name))
            except OSError:
                pass
    return out


def machine_busy_seconds():
    """CPU seconds spent outside idle and iowait by the whole machine."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK


class Sampler:
    """CPU seconds of the nodes, of PostgreSQL and of the machine over a run."""

    def __init__(self, nodes):
        self.pids = [n.proc.pid for n in nodes]

    def __enter__(self):
        self.pg = {p: cpu_seconds(p) for p in postgres_pids()}
        self.kmsd = sum(cpu_seconds(p) for p in self.pids)
        self.busy = machine_busy_seconds()
        return self

    def __exit__(self, *exc):
        pg_now = {p: cpu_seconds(p) for p in postgres_pids()}
        self.pg_s = sum(v - self.pg.get(p, 0.0) for p, v in pg_now.items())
        self.kmsd_s = sum(cpu_seconds(p) for p in self.pids) - self.kmsd
        self.busy_s = machine_busy_seconds() - self.busy


def start_nodes(count, url, password, workdir):
    nodes = []
    for i in range(count):
        data_dir = os.path.join(workdir, "node-%d" % i)
        os.makedirs(data_dir, mode=0o700)
        if nodes:
            shutil.copy2(os.path.join(nodes[0].data_dir, "root.key"),
                         os.path.join(data_dir, "root.key"))
        args = ["--store", url] if url else []
        env = {"PGPASSWORD": password} if password else {}
        server = h.KmsdServer(data_dir=data_dir, args=args, env=env)
        nodes.append(server.start())
    return nodes


def measure(nodes, operation, body, args, workdir):
    """Every node replays `operation` at once; the summed rate and the CPU split."""
    paths = []
    for i, node in enumerate(nodes):
        path = os.path.join(workdir, "%s-%d.req" % (operation, i))
        raw = write_request(h, node, operation, body, path)
        status, _, parsed = h.send_raw(node, raw)
        if status != 200:
            raise RuntimeError("%s refused: %d %s" % (operation, status, parsed))
        paths.append(path)
    results = [None] * len(nodes)
    per_node_c = max(1, args.connections // len(nodes))
    per_node_t = max(1, args.threads // len(nodes))

    def one(i):
        results[i] = run_wrk(nodes[i].endpoint, paths[i], per_node_t, per_node_c, args.duration)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(nodes))]
    with Sampler(nodes) as cpu:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for r in results:
        if r.get("non_2xx", 0) or r.get("errors", 0):
            raise RuntimeError("%s: error replies under load: %s" % (operation, r))
    rps = sum(r["rps"] for r in results)
    done = sum(r["requests"] for r in results)
    return {"rps": rps, "requests": done,
            "kmsd_us": cpu.kmsd_s * 1e6 / done, "postgres_us": cpu.pg_s * 1e6 / done,
            "other_us": max(0.0, cpu.busy_s - cpu.kmsd_s - cpu.pg_s) * 1e6 / done,
            "busy_cpus": cpu.busy_s / args.duration}


def run_setup(name, count, url, password, args):
    workdir = tempfile.mkdtemp(prefix="kmsd-bench-nodes-")
    nodes = []
    try:
        nodes = start_nodes(count, url, password, workdir)
        kms = h.kms_client(nodes[0])
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        print("== %s: Encrypt ..." % name, file=sys.stderr)
        enc = measure(nodes, "Encrypt", {"KeyId": key, "Plaintext": "aGVsbG8gYmVuY2g="}, args,
                      workdir)
        print("== %s: CreateKey ..." % name, file=sys.stderr)
        create = measure(nodes, "CreateKey", {}, args, workdir)
        return {"setup": name, "nodes": count, "Encrypt": enc, "CreateKey": create}
    finally:
        for n in nodes:
            n.cleanup()
        shutil.rmtree(workdir, True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pg-url", required=True, help="base URL of a PostgreSQL server")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads in all")
    ap.add_argument("--connections", type=int, default=32, help="connections in all")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    admin = pg_fixture.ExternalPgServer(args.pg_url)
    results = [run_setup("SQLite, 1 node", 1, None, None, args)]
    for count in (1, 2):
        db = "bench_nodes_%d" % count
        admin.create_database(db)
        url, password = pg_fixture.split_url(admin.url(db))
        results.append(run_setup("PostgreSQL, %d node%s" % (count, "s" if count > 1 else ""),
                                 count, url, password, args))
    print("kmsd on one machine (%d CPUs, shared by the nodes, PostgreSQL and wrk); "
          "wrk -t%d -c%d in all, %d s per run" % (os.cpu_count(), args.threads,
                                                  args.connections, args.duration))
    print("%-22s %-10s %10s %9s %10s %12s %10s %10s" % (
        "setup", "operation", "req/s", "vs PG×1", "CPUs busy", "kmsd µs/req", "pg µs/req",
        "other µs"))
    base = {op: results[1][op]["rps"] for op in ("Encrypt", "CreateKey")}
    for r in results:
        for op in ("Encrypt", "CreateKey"):
            m = r[op]
            print("%-22s %-10s %10.0f %9.2f %10.2f %12.1f %10.1f %10.1f" % (
                r["setup"], op, m["rps"], m["rps"] / base[op] if base[op] else 0,
                m["busy_cpus"], m["kmsd_us"], m["postgres_us"], m["other_us"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
