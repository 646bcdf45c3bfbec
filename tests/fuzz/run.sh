#!/usr/bin/env bash
# tests/fuzz/run.sh -- builds every libFuzzer harness (clang-19, its own build directory) and runs
# each for SECONDS from its committed seed corpus, growing a copy in the build tree. Any crash,
# sanitizer report, leak or timeout fails the run; libFuzzer leaves the input as
# BUILD/tests/fuzz-corpus/NAME/crash-* (add it to tests/fuzz/regress/NAME once fixed).
# Usage: tests/fuzz/run.sh SECONDS [HARNESS...]     e.g. tests/fuzz/run.sh 30 ir bpe
# Environment: BJ_FUZZ_BUILD_DIR (default build-fuzz), BJ_JOBS (default 2).
# Prints one line per harness: executions, final coverage and corpus size (docs/robustness.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:?usage: tests/fuzz/run.sh SECONDS [HARNESS...]}
shift
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(gguf safetensors tokenizer bpe ir aot_bundle target)
build=${BJ_FUZZ_BUILD_DIR:-build-fuzz}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBJ_FUZZ=ON -DCMAKE_C_COMPILER=clang-19 \
  -DBJ_FUZZ_SECONDS="$secs" >/dev/null
targets=()
for h in "${harnesses[@]}"; do targets+=(--target "fuzz_$h"); done
cmake --build "$build" -j"${BJ_JOBS:-2}" "${targets[@]}" >/dev/null
status=0
summary=()
for h in "${harnesses[@]}"; do
  work="$build/tests/fuzz-corpus/$h"
  mkdir -p "$work"
  log="$build/tests/fuzz-$h.log"
  echo "== fuzz_$h: ${secs}s"
  timeout=10
  [ "$h" = target ] && timeout=60 # an input is ten LLVM compiles, not a parse
  if "$build/fuzz_$h" -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -timeout="$timeout" \
      -print_final_stats=1 -artifact_prefix="$work/" "$work" "tests/fuzz/corpus/$h" >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
    tail -n 60 "$log"
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  summary+=("fuzz_$h: $result, ${execs:-?} executions, cov ${cov:-?}, corpus $(ls "$work" | wc -l) files")
done
printf '%s\n' "${summary[@]}"
exit $status
