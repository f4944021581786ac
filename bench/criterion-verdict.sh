#!/usr/bin/env bash
# The micro-benchmarks against a saved baseline, with a verdict per benchmark.
#
#   bench/criterion-verdict.sh save main       # run every criterion bench, save as baseline "main"
#   bench/criterion-verdict.sh compare main    # run again, compare with "main": one line per
#                                              # benchmark (regressed / improved / no change /
#                                              # within noise); exits 1 when one regressed
#
# Criterion's own HTML report (its html_reports feature) is written to
# target/criterion/report/index.html by both; each benchmark's page plots this run against the
# baseline. Extra arguments go to cargo bench (e.g. --bench ring).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?save or compare}
name=${2:?a baseline name}
shift 2
case "$mode" in
  save) exec cargo bench -p ringlab-bench "$@" -- --save-baseline "$name" ;;
  compare) ;;
  *) echo "usage: $0 save|compare NAME [cargo bench args]" >&2; exit 2 ;;
esac
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cargo bench -p ringlab-bench "$@" -- --baseline "$name" | tee "$out"
echo
echo "== against baseline $name (report: target/criterion/report/index.html)"
awk '
  /^[^ ].*time:/ { bench = $1 }
  /^[^ ]+$/ { pending = $1 }
  /^ +time:/ { bench = pending }
  /Performance has regressed/ { print "REGRESSED  " bench; bad = 1 }
  /Performance has improved/ { print "improved   " bench }
  /No change in performance detected/ { print "no change  " bench }
  /Change within noise threshold/ { print "noise      " bench }
  END { exit bad }
' "$out"
