#!/usr/bin/env bash
# suite_script_test.sh - scripts/jmespath-suite.sh without the network: a
# partial suite is fetched again rather than run, a missing tool is a failure
# rather than a skip, an unreachable archive is a skip, a fetch renames a
# complete suite into place and leaves no temporary folder, and the
# program's exit status is the script's.  Fake curl and sha256sum stand in
# for the real ones.
set -euo pipefail

script=$(cd "$(dirname "$0")/../.." && pwd)/scripts/jmespath-suite.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TMPDIR=$work/tmp
mkdir -p "$TMPDIR" "$work/bin" "$work/src/go-jmespath-0.4.0/compliance"
names="basic boolean current escape filters functions identifiers indices literal multiselect
       ormatch pipe slice syntax unicode wildcard"
fail() {
  echo "suite_script_test: $*" >&2
  exit 1
}

# The program records the folder it was given and exits with $PROGRAM_RC.
cat >"$work/program" <<'PROG'
#!/usr/bin/env bash
echo "$1" >"$(dirname "$0")/ran"
exit "${PROGRAM_RC:-0}"
PROG
chmod +x "$work/program"

# A source tarball as the archive's, holding the whole suite.
for n in $names; do echo '[]' >"$work/src/go-jmespath-0.4.0/compliance/$n.json"; done
tar -czf "$work/src.tar.gz" -C "$work/src" go-jmespath-0.4.0

# curl: fails when $CURL_FAILS is set, else "downloads" the tarball above;
# sha256sum: accepts it.
cat >"$work/bin/curl" <<CURL
#!/usr/bin/env bash
[ -z "\${CURL_FAILS:-}" ] || exit 7
while [ "\$1" != -o ]; do shift; done
cp "$work/src.tar.gz" "\$2"
CURL
printf '#!/usr/bin/env bash\ncat >/dev/null\n' >"$work/bin/sha256sum"
chmod +x "$work/bin/curl" "$work/bin/sha256sum"
export PATH=$work/bin:$PATH

run() { # expected status, then the script's arguments
  local want=$1 got=0
  shift
  rm -f "$work/ran"
  "$script" "$@" 2>"$work/stderr" >/dev/null || got=$?
  [ "$got" = "$want" ] || fail "$* exited $got, want $want: $(cat "$work/stderr")"
}

# A complete suite is run as it is, and the program's status is kept.
mkdir "$work/full"
for n in $names; do echo '[]' >"$work/full/$n.json"; done
PROGRAM_RC=3 run 3 "$work/program" "$work/full"
[ "$(cat "$work/ran")" = "$work/full" ] || fail "the program did not get the suite folder"

# A partial suite is not run: with the archive out of reach it is a skip.
mkdir "$work/partial"
for n in $names; do [ "$n" = wildcard ] || echo '[]' >"$work/partial/$n.json"; done
CURL_FAILS=1 run 77 "$work/program" "$work/partial"
[ ! -e "$work/ran" ] || fail "a partial suite was run"

# ... and with the archive in reach it is fetched again and then run.
run 0 "$work/program" "$work/partial"
[ -s "$work/partial/wildcard.json" ] || fail "the partial suite was not completed"
[ "$(cat "$work/ran")" = "$work/partial" ] || fail "the completed suite was not run"

# A fresh fetch leaves nothing temporary behind, beside the suite or in TMPDIR.
run 0 "$work/program" "$work/fresh"
[ -s "$work/fresh/basic.json" ] || fail "the fetched suite is not in place"
[ -z "$(ls -A "$TMPDIR")" ] || fail "temporary files left in TMPDIR: $(ls -A "$TMPDIR")"
! ls -d "$work"/fresh.tmp.* "$work"/partial.tmp.* >/dev/null 2>&1 || fail "a temporary folder was left"

# A tool the fetch needs that is missing is a failure, not a skip.
mkdir "$work/nocurl"
for tool in bash env dirname mkdir mktemp rm cp mv tar gzip cat sha256sum; do
  ln -s "$(command -v "$tool")" "$work/nocurl/$tool"
done
PATH=$work/nocurl run 1 "$work/program" "$work/none"
grep -q curl "$work/stderr" || fail "the message does not name curl: $(cat "$work/stderr")"
