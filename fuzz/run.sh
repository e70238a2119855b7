#!/usr/bin/env bash
# `make fuzz`: every fuzz target (OUT/fuzz_*) for SECONDS on its corpus
# OUT/corpus/NAME (kept between runs, grown by libFuzzer) plus the seeds of
# fuzz/seeds.sh.  A crash, leak or sanitizer report stops that target,
# leaves the input in OUT/artifacts/ and fails.  Prints one line per target:
# inputs run, seconds, corpus size.  The log of each run is OUT/NAME.log.
# FUZZ_FRESH=1 (the short run of `make test`): a new empty corpus per run
# (OUT/corpus-fresh/NAME) and libFuzzer's -seed=1, so that the run does not
# depend on earlier ones.
# Usage: fuzz/run.sh OUT SEQEIG SECONDS
set -euo pipefail
out=$1
seqeig=$2
seconds=$3
here=$(cd "$(dirname "$0")" && pwd)

bash "$here/seeds.sh" "$out" "$seqeig"
mkdir -p "$out/artifacts"
export OMP_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$here/lsan.supp:print_suppressions=0}
failed=0
for bin in "$out"/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    short=${name#fuzz_}
    corpus=$out/corpus/$short
    extra=()
    if [ "${FUZZ_FRESH:-0}" = 1 ]; then
        corpus=$out/corpus-fresh/$short
        rm -rf "$corpus"
        extra=(-seed=1)
    fi
    mkdir -p "$corpus"
    args=("${extra[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=524288
          -close_fd_mask=2 -print_final_stats=1 -artifact_prefix="$out/artifacts/$short-")
    [ -f "$here/$short.dict" ] && args+=(-dict="$here/$short.dict")
    if "$bin" "${args[@]}" "$corpus" "$out/seeds/$short" >"$out/$name.log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed=1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$name.log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$out/$name.log" | tail -1)
    n=$(find "$corpus" -type f | wc -l)
    echo "fuzz $short: $status, ${runs:-?} inputs in ${secs:-?} s, corpus $n files (log: $out/$name.log)"
    if [ $status = FAILED ]; then
        grep -E "^==[0-9]+==ERROR|SUMMARY|^artifact_prefix|Test unit written|^fuzz_" "$out/$name.log" | head -20 || true
    fi
done
exit $failed
