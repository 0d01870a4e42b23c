#!/usr/bin/env bash
# jmespath-suite.sh - run the public JMESPath compliance suite against
# lib/cli/jmespath (through the jmespath_compliance program).
#
#   scripts/jmespath-suite.sh PROGRAM [DIR]
#
# The suite (the JSON test files of the jmespath.test project) is third-party
# text and is not kept in this repository.  Debian ships a copy inside the
# source of its Go JMESPath package (golang-github-jmespath-go-jmespath,
# compliance/*.json); this script downloads that source tarball from the
# Debian archive once, checks it against the SHA-256 the package's .dsc
# lists, and unpacks the suite into DIR (default: a jmespath-suite folder
# beside PROGRAM).  No apt configuration is touched.
#
# DIR is used only when it holds every file of the suite; otherwise it is
# fetched again into a temporary folder beside DIR and renamed into place
# once complete, so an interrupted fetch never leaves a partial suite that
# would pass.
#
# Exit status: PROGRAM's (0 when every case passed); 1 when a tool the fetch
# needs is missing, the download was not the pinned file or the suite in it
# is incomplete; 77 (ctest's "skipped") only when the archive could not be
# reached, so that a machine without network shows the suite as not run
# rather than as passed or failed.
set -euo pipefail

program=${1:?usage: scripts/jmespath-suite.sh PROGRAM [DIR]}
dir=${2:-$(dirname "$program")/jmespath-suite}

# bookworm's golang-github-jmespath-go-jmespath 0.4.0-2: the .orig tarball and
# the SHA-256 its .dsc gives for it.
url=http://deb.debian.org/debian/pool/main/g/golang-github-jmespath-go-jmespath/golang-github-jmespath-go-jmespath_0.4.0.orig.tar.gz
sha256=aa86d00b6836345eee196c13df2df084a18e0b1159935de9289f2ef6a7fe375d

# The files of the suite, each <name>.json.
files="basic boolean current escape filters functions identifiers indices literal multiselect
       ormatch pipe slice syntax unicode wildcard"

# Whether folder $1 holds every file of the suite.
complete() {
  local f
  for f in $files; do
    [ -s "$1/$f.json" ] || return 1
  done
}

if ! complete "$dir"; then
  for tool in curl sha256sum tar; do
    if ! command -v "$tool" >/dev/null; then
      echo "jmespath-suite.sh: $tool is needed to fetch the suite and is not installed" >&2
      exit 1
    fi
  done
  mkdir -p "$(dirname "$dir")"
  tmp=$(mktemp -d "$dir.tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  if ! curl -fsSL --retry 3 --max-time 60 -o "$tmp/src.tar.gz" "$url"; then
    echo "jmespath-suite.sh: cannot download $url; the suite was not run" >&2
    exit 77
  fi
  if ! echo "$sha256  $tmp/src.tar.gz" | sha256sum -c --quiet -; then
    echo "jmespath-suite.sh: $url is not the pinned file (SHA-256 differs)" >&2
    exit 1
  fi
  tar -xzf "$tmp/src.tar.gz" -C "$tmp"
  mkdir "$tmp/suite"
  cp "$tmp"/go-jmespath-*/compliance/*.json "$tmp/suite"/
  if ! complete "$tmp/suite"; then
    echo "jmespath-suite.sh: $url does not hold the whole suite" >&2
    exit 1
  fi
  rm -rf "$dir"
  mv "$tmp/suite" "$dir"
fi
# Not exec: the EXIT trap above must still remove the temporary folder.
status=0
"$program" "$dir" || status=$?
exit "$status"
