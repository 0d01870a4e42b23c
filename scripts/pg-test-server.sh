#!/usr/bin/env bash
# A throwaway PostgreSQL server for running the end-to-end suites against the
# PostgreSQL store (tests/e2e/pg_fixture.py does the work).
#   scripts/pg-test-server.sh start DIR   start one with its state under DIR
#                                         (made if missing, must be empty);
#                                         prints its base URL
#                                         postgresql://kmsd:PW@127.0.0.1:PORT/postgres
#                                         and writes it to DIR/url (mode 0600)
#   scripts/pg-test-server.sh stop DIR    stop it and remove DIR
# The suites find the server through KMSD_TEST_PG_URL, e.g.
#   KMSD_TEST_PG_URL=$(scripts/pg-test-server.sh start /tmp/kmsd-pg) ctest ...
# Run as root, the server runs as the `postgres` user, so DIR's parents must
# be open to it (anything under /tmp is).
set -euo pipefail

usage() {
  echo "usage: $0 start|stop DIR" >&2
  exit 2
}

[ $# -eq 2 ] || usage
case "$1" in
  start|stop) ;;
  *) usage ;;
esac

e2e="$(cd "$(dirname "$0")/../tests/e2e" && pwd)"
PYTHONPATH="$e2e${PYTHONPATH:+:$PYTHONPATH}" exec python3 -c \
  'import sys, pg_fixture; sys.exit(pg_fixture.main(sys.argv[1:]))' "$1" "$2"
