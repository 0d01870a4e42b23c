#!/usr/bin/env python3
"""bench_kms_cli - start-to-exit time of one `kms` call beside `aws`, in one run.

Starts a kmsd on loopback (tests/e2e/kmsd_harness.py), makes a key, then runs
each command `--runs` times with each tool, the two tools alternating run by
run so that a host whose speed drifts weighs on both alike.  Reports the
median and the 90th percentile of the wall time per command and tool, and the
ratio aws / kms of the medians.  Both tools get the same environment: the
harness's credentials, no config files, no pager.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "e2e"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kmsd", required=True)
    ap.add_argument("--kms", required=True)
    ap.add_argument("--runs", type=int, default=30)
    a = ap.parse_args()
    os.environ["KMSD_BIN"] = a.kmsd
    import kmsd_harness as h
    server = h.KmsdServer()
    server.start()
    try:
        key = h.kms_client(server).create_key(Description="bench")["KeyMetadata"]["KeyId"]
        env = h.aws_env(server)
        commands = [
            ("describe-key", ["describe-key", "--key-id", key]),
            ("list-keys", ["list-keys"]),
            ("generate-random", ["generate-random", "--number-of-bytes", "32"]),
            ("describe-key --output table", ["describe-key", "--key-id", key, "--output", "table"]),
        ]
        print("kms vs aws, start to exit, %d runs each, alternating (%s)" % (a.runs, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
        print("| command | kms median (p90) ms | aws median (p90) ms | aws / kms |")
        print("| --- | --- | --- | --- |")
        for name, args in commands:
            times = {"kms": [], "aws": []}
            for _ in range(a.runs):
                for tool in ("kms", "aws"):
                    cmd = ([a.kms, "--endpoint-url", server.endpoint] if tool == "kms"
                           else ["aws", "--endpoint-url", server.endpoint, "kms"]) + args
                    t0 = time.perf_counter()
                    p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    times[tool].append((time.perf_counter() - t0) * 1000)
                    if p.returncode != 0:
                        sys.exit("%s failed: %s" % (" ".join(cmd), p.stderr.decode()))
            med = {t: statistics.median(v) for t, v in times.items()}
            p90 = {t: sorted(v)[int(0.9 * (len(v) - 1))] for t, v in times.items()}
            print("| %s | %.1f (%.1f) | %.1f (%.1f) | %.0f |" % (name, med["kms"], p90["kms"], med["aws"], p90["aws"],
                                                              med["aws"] / med["kms"]))
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
