"""summary.py - the table of bench/stores.sh: each operation's rate on the
SQLite store and on the PostgreSQL store, read from the JSON files that
bench/run.sh (reads-<store>.json) and bench/writes.sh (writes-<store>.json)
wrote into the directory given."""
import json
import os
import sys

STORES = ("sqlite", "postgresql")


def load(directory, kind, store):
    with open(os.path.join(directory, "%s-%s.json" % (kind, store))) as f:
        return json.load(f)


def rates(directory, store):
    """{operation: (requests/s, p99 ms at that load, p99 ms at half the peak or None)}."""
    out = {}
    reads = load(directory, "reads", store)
    for operation, r in reads["targets"]["kmsd"].items():
        half = reads["half_peak"].get(operation)
        out[operation] = (r["rps"], r["p99_us"] / 1000.0,
                          half["p99_us"] / 1000.0 if half and "p99_us" in half else None)
    writes = load(directory, "writes", store)
    for run in writes["runs"]:
        for operation, r in run["operations"].items():
            out[operation] = (r["rps"], r["p99_us"] / 1000.0, None)
    return out


def main():
    directory = sys.argv[1]
    by_store = {store: rates(directory, store) for store in STORES}
    print("kmsd on each store, measured one after the other on this machine (PostgreSQL on it too)")
    print("%-22s %12s %12s %8s %14s %14s" % ("operation", "SQLite/s", "PostgreSQL/s", "PG/SQL",
                                           "p99 SQLite ms", "p99 PG ms"))
    for operation in by_store["sqlite"]:
        s, p = by_store["sqlite"][operation], by_store["postgresql"].get(operation)
        if not p:
            continue
        print("%-22s %12.0f %12.0f %8.2f %14.2f %14.2f" % (operation, s[0], p[0],
                                                         p[0] / s[0] if s[0] else 0, s[1], p[1]))


if __name__ == "__main__":
    main()
