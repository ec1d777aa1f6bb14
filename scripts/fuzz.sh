#!/usr/bin/env bash
# Runs each fuzz target (pkg:Name arguments) for FUZZTIME and prints the
# executions of each and in all. A crasher fails the run (go test saves it
# under testdata/fuzz/ as a regression input).
#
# FUZZTIME is go test's -fuzztime: a duration, or a count of executions
# (Nx), which make test uses. Go 1.26's fuzz coordinator can report a bare
# "context deadline exceeded" when a duration's deadline expires while a
# worker is mid-call on a loaded machine (golang/go#75804, fixed in Go
# 1.27): no input failed and nothing was written. A count sets no deadline,
# so the race cannot happen; with a duration such a run, and only such a
# run, is tried once more, and a second one fails like any other failure.
set -uo pipefail
go=${GO:-go}
fuzztime=${FUZZTIME:?FUZZTIME is not set}
total=0
spurious() {
  grep -qx '    context deadline exceeded' <<<"$1" &&
    ! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' <<<"$1"
}
for t in "$@"; do
  pkg=${t%%:*} name=${t##*:}
  for try in 1 2; do
    out=$("$go" test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s "./$pkg" 2>&1) && break
    if [ "$try" = 1 ] && spurious "$out"; then
      echo "fuzz: $name ($pkg): the fuzz coordinator's deadline race (golang/go#75804), no failing input; trying once more"
      continue
    fi
    printf '%s\n' "$out"
    exit 1
  done
  n=$(printf '%s\n' "$out" | sed -n 's/.*execs: \([0-9]*\).*/\1/p' | tail -n 1)
  if grep -q 'no fuzz tests to fuzz' <<<"$out"; then
    echo "fuzz: $name ($pkg): no such fuzz target"
    exit 1
  fi
  # go test prints its count every 3 s: a shorter run reports none, and
  # one bounded by a count ran that many.
  if [ -z "$n" ] && [[ $fuzztime =~ ^([0-9]+)x$ ]]; then
    n=${BASH_REMATCH[1]}
  fi
  n=${n:-0}
  echo "fuzz: $name ($pkg): $n executions"
  total=$((total + n))
done
echo "fuzz: $total executions in all"
if [ -n "${TAP_FIGURES:-}" ]; then
  echo "fuzz: $total executions in all ($fuzztime per target)" >> "$TAP_FIGURES"
fi
