#!/usr/bin/env bash
# Runs every benchmark program of a build directory and prints one report:
# machine limits first, then kernels with 1 and 2 threads, then one
# training step per model (C and PyTorch).
# Usage: bench/run.sh BUILD_DIR
set -euo pipefail
build=${1:-build}
echo "# seqeig benchmarks: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
# PyTorch links the system OpenBLAS too: give it the kernel seqeig pins
# (on a CPU model OpenBLAS does not know, both would otherwise differ).
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-$("$build/bench/machine" --blas-kernel)}"
echo "# OpenBLAS kernel: $OPENBLAS_CORETYPE (seqeig and PyTorch)"
"$build/bench/machine"
for t in 1 2; do
    OMP_NUM_THREADS=$t "$build/bench/kernels" "$t"
    OMP_NUM_THREADS=$t /usr/bin/python3 bench/torch_kernels.py "$t"
done
# Training steps: every model x {small, paper} x {1, 2} threads, each
# configuration in a fresh process (its own peak RSS).
"$build/bench/model_step"
/usr/bin/python3 bench/torch_model_step.py
# the reference's cumsum form of linear / norm attention (small shape only)
/usr/bin/python3 bench/torch_model_step.py --models lin-attention,norm-attention --shapes small --attn cumsum
# any further benchmark program (the build also leaves .d dependency files here)
for prog in "$build"/bench/*; do
    case "$(basename "$prog")" in machine|kernels|model_step|*.d) continue ;; esac
    if [ -f "$prog" ] && [ -x "$prog" ]; then "$prog"; fi
done
echo "# bench/run.sh: ${SECONDS} s"
