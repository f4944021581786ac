#!/usr/bin/env bash
# Runs fuzz targets coverage-guided, one after the other (one process each: no -jobs, no
# -workers), and prints one line per target: its executions, executions per second, and
# the corpus size. Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`).
#
#   fuzz/run-all.sh [SECONDS_PER_TARGET] [TARGET...]   each target for SECONDS (default 60)
#   RUNS=10000000 fuzz/run-all.sh 0 [TARGET...]        each target for RUNS executions
#
# The corpus grows in fuzz/corpus/TARGET (ignored by git), seeded from fuzz/seeds/TARGET
# when that exists; fuzz/dict/TARGET.dict is passed as the dictionary when it exists.
# A crash leaves its input in fuzz/artifacts/TARGET/ (the log says which file), the
# remaining targets still run, and the script exits 1. Logs: fuzz/target/run-all/TARGET.log.
# FUZZ_FLAGS replaces the build flags (default "--sanitizer none": the targets are safe Rust;
# overflow checks and debug assertions stay on); FUZZ_FLAGS="" builds with AddressSanitizer.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
[ $# -gt 0 ] && shift
flags=${FUZZ_FLAGS---sanitizer none}
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi
# One build for all (or for the one target named); each run below finds it built.
if [ ${#targets[@]} -eq 1 ]; then build=("${targets[0]}"); else build=(); fi
# shellcheck disable=SC2086
cargo +nightly fuzz build $flags "${build[@]}" >&2
mkdir -p target/run-all
if [ -n "${RUNS:-}" ]; then limit=(-runs="$RUNS"); else limit=(-max_total_time="$secs"); fi
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  dirs=("corpus/$t")
  [ -d "seeds/$t" ] && dirs+=("seeds/$t")
  extra=()
  [ -f "dict/$t.dict" ] && extra+=(-dict="dict/$t.dict")
  log=target/run-all/$t.log
  rc=0
  # shellcheck disable=SC2086
  cargo +nightly fuzz run $flags "$t" "${dirs[@]}" -- "${limit[@]}" -max_len=2048 \
    -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  corpus=$(find "corpus/$t" -type f | wc -l)
  if [ "$rc" = 0 ]; then
    printf '%-18s %12s execs %8s exec/s  corpus %s\n' "$t" "${execs:-?}" "${rate:-?}" "$corpus"
  else
    failed=1
    printf '%-18s FAILED (exit %s) after %s execs: %s (log: %s)\n' "$t" "$rc" "${execs:-?}" \
      "$(sed -n 's/.*Test unit written to //p' "$log" | tail -n 1)" "$log"
  fi
done
exit "$failed"
