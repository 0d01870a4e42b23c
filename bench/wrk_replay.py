"""wrk_replay.py - signed kmsd requests, replayed by wrk: what the kmsd benchmarks share.

bench.py, cloudhsm/bench_cloudhsm.py and xks_keystore/bench_xks_keystore.py
each sign a real request with the test harness (tests/e2e/kmsd_harness.py),
write it in request.lua's format and have wrk replay it over kept-alive
connections for a fixed time.  writes/bench_writes.py instead signs a list of
distinct requests (writes that must not be repeated) and has wrk send each
once through requests.lua.  The result is wrk's JSON line (request.lua or
requests.lua) with `rps` added.
"""

import json
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def format_request(raw):
    """A harness RawRequest in request.lua's format: method and path, headers
    (Content-Length left to wrk), a blank line, the body."""
    lines = ["%s %s\n" % (raw.method, raw.path)]
    for name, value in raw.headers:
        if name.lower() != "content-length":
            lines.append("%s: %s\n" % (name, value))
    lines.append("\n")
    lines.append(raw.body.decode())
    return "".join(lines)


def write_request(harness, target, operation, body, path):
    """Sign `operation` (TrentService.<operation>) for `target` now and write it
    in request.lua's format.  Returns the harness's RawRequest, to send once
    and check."""
    raw = harness.build_signed_request(target, "TrentService." + operation, body)
    with open(path, "w") as f:
        f.write(format_request(raw))
    return raw


def write_requests(harness, target, operation, bodies, path):
    """Sign one `operation` request per body for `target` now and write them
    for requests.lua: each is a line with its length in bytes, then that many
    bytes in request.lua's format.  Returns how many were written."""
    count = 0
    with open(path, "wb") as f:
        for body in bodies:
            raw = harness.build_signed_request(target, "TrentService." + operation, body)
            text = format_request(raw).encode()
            f.write(b"%d\n" % len(text))
            f.write(text)
            count += 1
    return count


def _wrk(endpoint, script, env, threads, connections, duration):
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", "%ds" % duration,
           "--timeout", "10s", "-s", os.path.join(HERE, script), endpoint + "/"]
    proc = subprocess.run(cmd, env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=duration + 60)
    if proc.returncode != 0:
        raise RuntimeError("wrk failed: %s" % proc.stderr.strip())
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError("wrk printed no result line:\n%s%s" % (proc.stdout, proc.stderr))


def run_wrk(endpoint, request_path, threads, connections, duration):
    """wrk -t threads -c connections for `duration` seconds against `endpoint`,
    every request the one in `request_path` (request.lua)."""
    return _wrk(endpoint, "request.lua", {"BENCH_REQUEST": request_path},
                threads, connections, duration)


def run_wrk_list(endpoint, list_path, threads, connections, duration):
    """wrk as run_wrk, but each request of the list in `list_path`
    (write_requests) is sent at most once (requests.lua).  The result also
    has `listed` (requests in the list), `handed_out` (requests given to wrk)
    and `ran_out` (wrk threads whose share ran out before the end; their
    time after that is idle, so the rate is then a lower bound)."""
    return _wrk(endpoint, "requests.lua", {"BENCH_REQUESTS": list_path,
                                           "BENCH_THREADS": str(threads)},
                threads, connections, duration)
