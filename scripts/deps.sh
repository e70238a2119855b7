#!/usr/bin/env bash
# Checks that the system libraries and tools seqeig needs are installed and,
# when run as root, installs the missing Debian packages with apt-get.
# Otherwise prints the exact command to run and fails.
set -euo pipefail

packages=(
    gcc make pkg-config
    libopenblas-openmp-dev   # OpenBLAS built on OpenMP: shares our thread pool
    liblapacke-dev           # dense eigen-solvers (LAPACKE_*geev)
    libhdf5-dev              # run files
    check                    # C unit tests
    libyaml-dev              # configs
    python3 python3-numpy python3-h5py python3-matplotlib   # reports and plots
    python3-torch            # independent numerical oracle in the tests
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "seqeig: missing packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "seqeig: install them with:"
    echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "seqeig: installed ${missing[*]}"
