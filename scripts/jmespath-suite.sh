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
# Exit status: 0 when every case passed; 1 when one failed or the download
# was not the pinned file; 77 (ctest's "skipped") when the archive could not
# be reached, so that a machine without network shows the suite as not run
# rather than as passed or failed.
set -euo pipefail

program=${1:?usage: scripts/jmespath-suite.sh PROGRAM [DIR]}
dir=${2:-$(dirname "$program")/jmespath-suite}

# bookworm's golang-github-jmespath-go-jmespath 0.4.0-2: the .orig tarball and
# the SHA-256 its .dsc gives for it.
url=http://deb.debian.org/debian/pool/main/g/golang-github-jmespath-go-jmespath/golang-github-jmespath-go-jmespath_0.4.0.orig.tar.gz
sha256=aa86d00b6836345eee196c13df2df084a18e0b1159935de9289f2ef6a7fe375d

if ! ls "$dir"/*.json >/dev/null 2>&1; then
  tmp=$(mktemp -d)
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
  mkdir -p "$dir"
  cp "$tmp"/go-jmespath-*/compliance/*.json "$dir"/
fi
exec "$program" "$dir"
