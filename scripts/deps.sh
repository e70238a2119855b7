#!/usr/bin/env bash
# Checks that the system libraries and tools seqeig needs are installed and,
# when run as root, installs the missing Debian packages with apt-get.
# Otherwise prints the exact command to run and fails.
#
#   scripts/deps.sh                 check everything, install what is missing (as root)  [make deps]
#   scripts/deps.sh --check [GROUP] only check GROUP (build, fuzz or all; default all):
#                                   print the missing packages and the one command that
#                                   installs them, exit 1; never installs.  The Makefile
#                                   runs `--check build` before it compiles anything and
#                                   `--check fuzz` before it builds the fuzz targets.
# SEQEIG_DEPS_EXTRA="pkg ..." adds packages to every group (the tests use it to
# fake a missing package); SEQEIG_DEPS_CHECK=0 skips the --check mode (e.g. on a
# system that is not Debian, where the libraries were installed by hand).
set -euo pipefail

build_packages=(
    gcc make pkg-config
    libopenblas-openmp-dev   # OpenBLAS built on OpenMP: shares our thread pool
    liblapacke-dev           # dense eigen-solvers (LAPACKE_*geev)
    libhdf5-dev              # run files
    check                    # C unit tests
    libyaml-dev              # configs
)
fuzz_packages=(
    clang libclang-rt-14-dev # libFuzzer (clang-14, libclang_rt.fuzzer): make fuzz, a short run in make test
    libomp-14-dev            # omp.h and the OpenMP runtime of clang-14 (the fuzz build compiles with -fopenmp)
)
other_packages=(
    python3 python3-numpy python3-h5py python3-matplotlib   # reports and plots
    python3-torch            # independent numerical oracle in the tests
)

check_only=0
group=all
if [ "${1:-}" = "--check" ]; then
    check_only=1
    group=${2:-all}
fi
case "$group" in
    build) packages=("${build_packages[@]}") ;;
    fuzz) packages=("${build_packages[@]}" "${fuzz_packages[@]}") ;;
    all) packages=("${build_packages[@]}" "${fuzz_packages[@]}" "${other_packages[@]}") ;;
    *) echo "usage: scripts/deps.sh [--check [build|fuzz|all]]" >&2; exit 2 ;;
esac
# shellcheck disable=SC2206
packages+=(${SEQEIG_DEPS_EXTRA:-})

if [ "$check_only" = 1 ] && [ "${SEQEIG_DEPS_CHECK:-1}" = 0 ]; then
    exit 0
fi
if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "seqeig: dpkg-query not found: cannot check the Debian packages ${packages[*]}" >&2
    echo "seqeig: install their equivalents by hand, then build with SEQEIG_DEPS_CHECK=0" >&2
    exit 1
fi

# One dpkg-query for the whole list (unknown names only add a line on stderr).
installed=" $( (dpkg-query -W -f='${Package} ${Status}\n' "${packages[@]}" 2>/dev/null || true) |
              awk '$2 == "install" && $3 == "ok" && $4 == "installed" { printf "%s ", $1 }') "
missing=()
for p in "${packages[@]}"; do
    case "$installed" in
        *" $p "*) ;;
        *) missing+=("$p") ;;
    esac
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "seqeig: missing packages: ${missing[*]}"
if [ "$check_only" = 1 ]; then
    sudo="sudo "
    if [ "$(id -u)" -eq 0 ]; then sudo=""; fi
    echo "seqeig: install them with:"
    echo "    ${sudo}apt-get update && ${sudo}apt-get install -y --no-install-recommends ${missing[*]}"
    echo "seqeig: (or \`${sudo}make deps\`, which installs everything the tests need too), then run make again"
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "seqeig: install them with:"
    echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "seqeig: installed ${missing[*]}"
