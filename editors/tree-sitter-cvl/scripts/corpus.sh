#!/usr/bin/env bash
# Rewrites test/corpus/ from cvl-syntax's parser cases
# (cvl-syntax/test_data/parser/{ok,err}/*.cvl), then lets the tree-sitter CLI
# fill in each expected tree (`tree-sitter test --update`). Review the diff
# as you would a snapshot's: a changed tree is a changed grammar.
#   editors/tree-sitter-cvl/scripts/corpus.sh [TREE_SITTER]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cases=$here/../../cvl-syntax/test_data/parser
ts=${1:-${CVL_TREE_SITTER:-tree-sitter}}
cd "$here"
rm -rf test/corpus
mkdir -p test/corpus
for kind in ok err; do
  out=test/corpus/$kind.txt
  : > "$out"
  for file in "$cases/$kind"/*.cvl; do
    name=$(basename "$file" .cvl)
    # The tree as the parser makes it, positions left out.
    raw=$("$ts" parse "$file" 2>/dev/null || true)
    tree=$(grep -v "bytes/ms" <<< "$raw" |
      sed -E 's/ \[[0-9]+, [0-9]+\] - \[[0-9]+, [0-9]+\]//g')
    # `parse` prints a skipped character as a bare (ERROR), not as the
    # (UNEXPECTED 'c') the corpus compares, and leaves MISSING tokens out of
    # its tree (they are in its summary line): such a case is written as
    # expecting an error (`:error`), its tree left out.
    attribute=
    if grep -qE '\(ERROR\)' <<< "$tree" || grep "bytes/ms" <<< "$raw" | grep -q MISSING; then
      attribute=":error"
      tree=
    fi
    {
      echo "================================================================================"
      echo "$kind: $name"
      [ -z "$attribute" ] || echo "$attribute"
      echo "================================================================================"
      echo
      cat "$file"
      [ -z "$(tail -c1 "$file")" ] || echo
      echo
      echo "--------------------------------------------------------------------------------"
      echo
      echo "$tree"
      echo
    } >> "$out"
  done
done
"$ts" test
