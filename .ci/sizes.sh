#!/usr/bin/env bash
# Sizes: lists every Rust file under src/ and crates/ longer than 500 lines
# and every function longer than 80, as FILE:LINE and the size; exits 1
# when it lists anything.
#
# A function runs from its `fn` line to the closing brace at the same
# indentation, both counted (which holds for rustfmt'd code). Test code is
# not measured: files named tests.rs or *_tests.rs, and a crate's tests/
# folder, are skipped, and so is whatever stands under `#[cfg(test)]` (a
# `mod tests { ... }`, a helper).
# A file is measured whole, its inline tests included.
#
# Plain bash and POSIX awk; run from anywhere: `.ci/sizes.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_FILE=500
MAX_FN=80

roots=()
for dir in src crates; do
  [ -d "$dir" ] && roots+=("$dir")
done
[ ${#roots[@]} -gt 0 ] || exit 0

files=()
while IFS= read -r file; do
  files+=("$file")
done < <(find "${roots[@]}" -name '*.rs' ! -name 'tests.rs' ! -name '*_tests.rs' ! -path '*/tests/*' |
  LC_ALL=C sort)
[ ${#files[@]} -gt 0 ] || exit 0

awk -v max_file="$MAX_FILE" -v max_fn="$MAX_FN" '
function indent_of(s) {
  match(s, /^[ \t]*/)
  return substr(s, 1, RLENGTH)
}
function trimmed(s) {
  sub(/[ \t\r]+$/, "", s)
  return s
}
function is_fn(s) {
  return s ~ /^[ \t]*((pub(\([^)]*\))?|const|async|unsafe|default|extern([ \t]+"[^"]*")?)[ \t]+)*fn[ \t]+[A-Za-z_][A-Za-z_0-9]*/
}
function fn_name(s) {
  sub(/^.*fn[ \t]+/, "", s)
  match(s, /^[A-Za-z_][A-Za-z_0-9]*/)
  return substr(s, 1, RLENGTH)
}
# The last line of the item that starts at line `at`: its closing brace at
# the same indentation, the line that ends it with `;` (no body), or the
# line a one-line body closes on. 0 when none is found.
function item_end(at,    ind, j, k, s) {
  ind = indent_of(L[at])
  for (j = at; j <= n; j++) {
    s = trimmed(L[j])
    if (s ~ /;$/) return j
    if (s ~ /\{.*\}$/) return j
    if (s ~ /\{$/) {
      for (k = j + 1; k <= n; k++) {
        if (index(L[k], ind "}") == 1 && trimmed(substr(L[k], length(ind) + 2)) ~ /^[;,]?$/) return k
      }
      return 0
    }
  }
  return 0
}
function measure(file,    i, j, end, size) {
  if (n > max_file) {
    printf "%s:1: %d lines (a file over %d)\n", file, n, max_file
    found++
  }
  for (i = 1; i <= n; i++) {
    if (L[i] ~ /^[ \t]*#\[cfg\(test\)\]/) {
      # Skip the item under it (and any attributes or comments between).
      for (j = i + 1; j <= n && (L[j] ~ /^[ \t]*#\[/ || L[j] ~ /^[ \t]*\/\//); j++) {}
      end = item_end(j)
      if (end > 0) { i = end; continue }
    }
    if (!is_fn(L[i])) continue
    end = item_end(i)
    if (end == 0) continue
    size = end - i + 1
    if (size > max_fn) {
      printf "%s:%d: fn %s is %d lines (over %d)\n", file, i, fn_name(L[i]), size, max_fn
      found++
    }
  }
}
FNR == 1 && NR > 1 { measure(previous); n = 0 }
{ L[++n] = $0; previous = FILENAME }
END {
  if (n > 0) measure(previous)
  exit found > 0 ? 1 : 0
}
' "${files[@]}"
