"""wrk_replay.py - one signed kmsd request, replayed by wrk: what the kmsd benchmarks share.

bench.py, cloudhsm/bench_cloudhsm.py and xks_keystore/bench_xks_keystore.py
each sign a real request with the test harness (tests/e2e/kmsd_harness.py),
write it in request.lua's format and have wrk replay it over kept-alive
connections for a fixed time.  The result is wrk's JSON line (request.lua)
with `rps` added.
"""

import json
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def write_request(harness, target, operation, body, path):
    """Sign `operation` (TrentService.<operation>) for `target` now and write it
    in request.lua's format: method and path, headers, a blank line, the body.
    Returns the harness's RawRequest, to send once and check."""
    raw = harness.build_signed_request(target, "TrentService." + operation, body)
    with open(path, "w") as f:
        f.write("%s %s\n" % (raw.method, raw.path))
        for name, value in raw.headers:
            if name.lower() != "content-length":
                f.write("%s: %s\n" % (name, value))
        f.write("\n")
        f.write(raw.body.decode())
    return raw


def run_wrk(endpoint, request_path, threads, connections, duration):
    """wrk -t threads -c connections for `duration` seconds against `endpoint`."""
    env = dict(os.environ, BENCH_REQUEST=request_path)
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", "%ds" % duration,
           "--timeout", "10s", "-s", os.path.join(HERE, "request.lua"), endpoint + "/"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise RuntimeError("wrk failed: %s" % proc.stderr.strip())
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError("wrk printed no result line:\n%s" % proc.stdout)
