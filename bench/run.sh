#!/usr/bin/env bash
# Runs every benchmark program of a build directory and prints one report:
# machine limits first, then kernels with 1 and 2 threads.
# Usage: bench/run.sh BUILD_DIR
set -euo pipefail
build=${1:-build}
echo "# seqeig benchmarks: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
"$build/bench/machine"
for t in 1 2; do
    OMP_NUM_THREADS=$t "$build/bench/kernels" "$t"
    OMP_NUM_THREADS=$t /usr/bin/python3 bench/torch_kernels.py "$t"
done
for prog in "$build"/bench/*; do
    case "$(basename "$prog")" in machine|kernels) continue ;; esac
    "$prog"
done
