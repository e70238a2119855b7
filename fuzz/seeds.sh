#!/usr/bin/env bash
# Seed corpora of the fuzz targets (fuzz/README.md), made at fuzz time so
# that no binary file is committed:
#   OUT/seeds/config/   every committed preset (experiments/**/*.yaml)
#   OUT/seeds/runfile/  small run files trained with SEQEIG on the MQAR smoke
#                       configs (4 steps): completed, unfinished, a
#                       spectra-only file (`seqeig spectra --out`), and the
#                       completed run copied by h5py into HDF5's oldest format
# Usage: fuzz/seeds.sh OUT SEQEIG
set -euo pipefail
out=$1
seqeig=$2
root=$(cd "$(dirname "$0")/.." && pwd)

mkdir -p "$out/seeds/config" "$out/seeds/runfile"
while IFS= read -r -d '' f; do
    rel=${f#"$root/experiments/"}
    cp "$f" "$out/seeds/config/${rel//\//_}"
done < <(find "$root/experiments" -name '*.yaml' -print0)

small=(--set train.total_steps=4 --set train.eval_every=2 --set spectra.analysis_batch=2
       --set dataset.num_test_examples=8 --quiet --threads 1 --force)
for cfg in "$root"/experiments/mqar/smoke/*.yaml; do
    name=$(basename "$cfg" .yaml)
    dst=$out/seeds/runfile/$name
    [ -s "$dst.h5" ] && [ -s "$dst-unfinished.h5" ] && [ -s "$dst-spectra.h5" ] && [ -s "$dst-v0.h5" ] && continue
    # A seed that cannot be made is a warning: the fuzzer still runs on the others.
    OMP_NUM_THREADS=1 "$seqeig" train --config "$cfg" --out "$dst.h5" "${small[@]}" >/dev/null ||
        echo "fuzz/seeds.sh: warning: no seed $dst.h5" >&2
    OMP_NUM_THREADS=1 "$seqeig" train --config "$cfg" --out "$dst-unfinished.h5" "${small[@]}" \
        --max-steps 3 >/dev/null || true # exit 130 (stopped) when it works
    [ -s "$dst-unfinished.h5" ] || echo "fuzz/seeds.sh: warning: no seed $dst-unfinished.h5" >&2
    OMP_NUM_THREADS=1 "$seqeig" spectra "$dst.h5" --out "$dst-spectra.h5" --force --threads 1 >/dev/null ||
        echo "fuzz/seeds.sh: warning: no seed $dst-spectra.h5" >&2
    # The same run in HDF5's oldest file format (h5py's default; no checksums
    # on HDF5's own metadata), as files of earlier builds are: most flipped
    # bits reach the reader instead of HDF5's checksum test.
    [ -s "$dst.h5" ] && /usr/bin/python3 - "$dst.h5" "$dst-v0.h5" <<'PY' ||
import sys
import h5py
src, dst = sys.argv[1:]
# rebuilt object by object (h5py's copy keeps the objects' header versions)
with h5py.File(src, "r") as a, h5py.File(dst, "w", libver="earliest") as b:
    def attrs(x, y):
        for k in x.attrs:
            y.attrs.create(k, x.attrs[k], dtype=x.attrs.get_id(k).dtype)
    def walk(name, obj):
        if isinstance(obj, h5py.Dataset):
            attrs(obj, b.create_dataset(name, data=obj[()], dtype=obj.dtype, maxshape=obj.maxshape,
                                        chunks=obj.chunks))
        else:
            attrs(obj, b.require_group(name))
    attrs(a, b)
    a.visititems(walk)
PY
        echo "fuzz/seeds.sh: warning: no seed $dst-v0.h5" >&2
done
