#!/usr/bin/python3
"""Synthetic seqeig run files in the layout of docs/hdf5-format.md.

    /usr/bin/python3 tests/report/make_fake_runs.py OUTDIR

writes the standard test scenario (see `make_scenario`) under OUTDIR, e.g.
OUTDIR = /tmp/fake/mqar/small, so that

    /usr/bin/python3 experiments/report.py /tmp/fake/mqar/small

can be tried without training anything.  As a module:

    write_run(path, RunSpec(...))   one run file from explicit arrays
    bin_percentages(eig)            bins of an eigenvalue array (docs/eigenvalues.md, section 5)
    make_scenario(outdir)           the test scenario; returns its RunSpecs

Nothing here is imported by experiments/report.py: the test compares the
report against numbers computed from these arrays independently.
"""

import os
import sys
from dataclasses import dataclass, field
from typing import Optional

import h5py
import numpy as np

THRESHOLDS = np.array([0.1, 0.5, 0.9, 1.0, 10.0, 100.0])
# Closed bins [lo, hi] for bins 0..5; bin 6 is r > 100.
_BIN_LO = [0.0, 0.1, 0.5, 0.9, 1.0, 10.0]
_BIN_HI = [0.1, 0.5, 0.9, 1.0, 10.0, 100.0]


def bin_percentages(eig):
    """eig (samples, layers, heads, T) -> percentages (samples, layers, heads, 7).

    Radius = |eig|; bins closed at both ends (a value on a threshold counts in
    both neighbours), last bin r > 100 (inf included); 100 * count / T."""
    r = np.abs(np.asarray(eig, dtype=np.float64))
    T = r.shape[-1]
    out = np.empty(r.shape[:-1] + (7,))
    for k in range(6):
        out[..., k] = np.count_nonzero((r >= _BIN_LO[k]) & (r <= _BIN_HI[k]), axis=-1)
    out[..., 6] = np.count_nonzero(r > 100.0, axis=-1)
    return 100.0 * out / T


@dataclass
class RunSpec:
    """Everything one run file holds that the report reads (plus filler)."""
    model: str
    seed: int
    status: str                       # running | completed | stopped_early | failed
    eval_step: np.ndarray             # (evals,) int
    test_acc: np.ndarray              # (evals,)
    test_loss: np.ndarray             # (evals,)
    eig_init: np.ndarray              # (samples, layers, heads, T)
    eig_history: list                 # one eig array per evaluation (percentages stored only)
    eig_final: Optional[np.ndarray]   # None: no /spectra/final (unfinished run)
    total_steps: int = 500
    eval_every: int = 100
    stop_criterion: float = 0.99
    wall_s: float = 10.0
    task: str = "mqar"
    method: str = "dsf"
    error: str = ""
    fixed_strings: bool = False       # write string attributes as fixed-length bytes
    params: dict = field(default_factory=dict)  # name -> shape (float32 zeros)

    @property
    def step(self):
        return int(self.eval_step[-1]) if len(self.eval_step) else 0


def _s(spec, text):
    """A string attribute value: variable-length UTF-8 (what the C writer
    uses) or, with fixed_strings, a fixed-length byte string."""
    return np.bytes_(text.encode()) if spec.fixed_strings else text


def write_run(path, spec):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    samples, layers, heads, T = spec.eig_init.shape
    n_ev = len(spec.eval_step)
    with h5py.File(path, "w") as f:
        a = f.attrs
        a["format"] = _s(spec, "seqeig-run")
        a["format_version"] = np.int64(1)
        a["seqeig_version"] = _s(spec, "0.0.0-fake")
        a["task"] = _s(spec, spec.task)
        a["model"] = _s(spec, spec.model)
        a["seed"] = np.int64(spec.seed)
        a["status"] = _s(spec, spec.status)
        if spec.status == "failed":
            a["error"] = _s(spec, spec.error or "non-finite loss")
        a["created"] = _s(spec, "2026-11-29T04:35:12Z")
        a["updated"] = _s(spec, "2026-11-29T04:45:12Z")
        a["threads"] = np.int64(2)
        a["step"] = np.int64(spec.step)
        a["total_steps"] = np.int64(spec.total_steps)
        a["wall_s"] = np.float64(spec.wall_s)

        cfg = f.create_group("config")
        cfg.attrs["dataset._name_"] = _s(spec, spec.task)
        cfg.attrs["model.num_layers"] = np.int64(layers)
        cfg.attrs["model.num_heads"] = np.int64(heads)
        cfg.attrs["model.prenorm"] = np.int8(1)
        cfg.attrs["train.lr"] = np.float64(1e-3)
        cfg.attrs["train.total_steps"] = np.int64(spec.total_steps)
        cfg.attrs["train.eval_every"] = np.int64(spec.eval_every)
        cfg.attrs["train.stop_criterion"] = np.float64(spec.stop_criterion)
        cfg.create_dataset("yaml", data=f"train:\n  total_steps: {spec.total_steps}\n",
                           dtype=h5py.string_dtype())

        ev = f.create_group("metrics/eval")
        wall = np.linspace(spec.wall_s / max(n_ev, 1), spec.wall_s, n_ev)
        cols = {
            "step": np.asarray(spec.eval_step, dtype=np.int64),
            "train_loss": np.asarray(spec.test_loss, dtype=np.float64) * 1.1,
            "test_loss": np.asarray(spec.test_loss, dtype=np.float64),
            "test_acc": np.asarray(spec.test_acc, dtype=np.float64),
            "lr": np.full(n_ev, 1e-3),
            "wall_s": wall,
        }
        for name, data in cols.items():
            ev.create_dataset(name, data=data, maxshape=(None,), chunks=(64,))
        tr = f.create_group("metrics/train")
        tsteps = np.arange(10, spec.step + 1, 10, dtype=np.int64)
        for name, data in {"step": tsteps, "loss": np.linspace(3, 0.1, len(tsteps)),
                           "lr": np.full(len(tsteps), 1e-3),
                           "grad_norm": np.ones(len(tsteps))}.items():
            tr.create_dataset(name, data=data, maxshape=(None,), chunks=(64,))

        sp = f.create_group("spectra")
        sp.attrs["method"] = _s(spec, spec.method)
        sp.attrs["layers"] = np.int64(layers)
        sp.attrs["heads"] = np.int64(heads)
        sp.attrs["steps"] = np.int64(T)
        sp.attrs["samples"] = np.int64(samples)
        sp.create_dataset("thresholds", data=THRESHOLDS)
        sp.create_dataset("inputs", data=np.zeros((samples, T + 1), dtype=np.int32))
        whens = [("init", spec.eig_init)]
        if spec.eig_final is not None:
            whens.append(("final", spec.eig_final))
        for when, eig in whens:
            p = bin_percentages(eig)
            sp.create_dataset(f"{when}/eig", data=np.asarray(eig, dtype=np.float64))
            sp.create_dataset(f"{when}/percent_mean", data=p.mean(axis=0))
            sp.create_dataset(f"{when}/percent_std", data=p.std(axis=0))
        hp = np.array([bin_percentages(e) for e in spec.eig_history]).reshape(
            (n_ev, samples, layers, heads, 7))
        sp.create_dataset("history/step", data=np.asarray(spec.eval_step, dtype=np.int64))
        sp.create_dataset("history/percent_mean", data=hp.mean(axis=1))
        sp.create_dataset("history/percent_std", data=hp.std(axis=1))

        ck = f.create_group("checkpoint")
        ck.attrs["step"] = np.int64(spec.step)
        ck.attrs["loss_sum"] = np.float64(0.0)
        ck.attrs["loss_count"] = np.int64(0)
        opt = ck.create_group("optimizer")
        opt.attrs["step"] = np.int64(spec.step)
        for name, shape in spec.params.items():
            ck.create_dataset(f"params/{name}", data=np.zeros(shape, dtype=np.float32))
            opt.create_dataset(f"exp_avg/{name}", data=np.zeros(shape, dtype=np.float32))
            opt.create_dataset(f"exp_avg_sq/{name}", data=np.zeros(shape, dtype=np.float32))


def fake_eig(rng, samples, layers, heads, T, progress):
    """Eigenvalue radii that drift from around 1 (progress 0) towards
    memory-like values just below 1 and small values (progress 1)."""
    centre = 1.0 - 0.6 * progress
    r = np.exp(rng.normal(np.log(centre), 0.8, size=(samples, layers, heads, T)))
    return r


def _params(layers, width):
    p = {"embedding.weight": (16, width), "head.weight": (16, width)}
    for i in range(layers):
        p[f"layers.{i}.mixer.in_proj.weight"] = (3 * width, width)
        p[f"layers.{i}.norm.weight"] = (width,)
    return p


def _run(model, seed, status, n_evals, accs, *, layers=2, heads=2, T=15, samples=4,
         final=True, total_steps=500, eval_every=100, wall_s=10.0, width=8, **kw):
    rng = np.random.default_rng(seed * 7 + len(model))
    steps = np.arange(1, n_evals + 1, dtype=np.int64) * eval_every
    accs = np.asarray(accs, dtype=np.float64)
    loss = -np.log(np.clip(accs, 1e-3, None)) + 0.05
    init = fake_eig(rng, samples, layers, heads, T, 0.0)
    hist = [fake_eig(rng, samples, layers, heads, T, (i + 1) / n_evals) for i in range(n_evals)]
    return RunSpec(model=model, seed=seed, status=status, eval_step=steps, test_acc=accs,
                   test_loss=loss, eig_init=init, eig_history=hist,
                   eig_final=hist[-1].copy() if final else None, total_steps=total_steps,
                   eval_every=eval_every, wall_s=wall_s, params=_params(layers, width), **kw)


def make_scenario(outdir):
    """The test scenario: 2 models x 2 seeds, 2 layers, 2 heads.

    sm-attention/seed1919  completed, 5 evaluations, final spectra with an
                           inf, an exact 0 and values on thresholds
    sm-attention/seed2222  stopped_early at step 300 (acc 0.995 > 0.99),
                           string attributes as fixed-length bytes
    mamba2/seed1919        completed, 5 evaluations, T' = L = 16
    mamba2/seed2222        running at step 200, no /spectra/final
    mamba2/seed9999.h5     an HDF5 file that is not a run (format "other")
    sm-attention/seed7.h5  not an HDF5 file at all
    sm-attention/seed1919.h5.tmp  a leftover unfinished write (not matched)

    Returns {(model, seed): RunSpec} of the real runs."""
    runs = [
        _run("sm-attention", 1919, "completed", 5, [0.30, 0.55, 0.96, 0.90, 0.95], wall_s=12.5),
        _run("sm-attention", 2222, "stopped_early", 3, [0.40, 0.85, 0.995], wall_s=7.25,
             fixed_strings=True),
        _run("mamba2", 1919, "completed", 5, [0.20, 0.50, 0.70, 0.88, 0.875], T=16,
             wall_s=20.0, width=12),
        _run("mamba2", 2222, "running", 2, [0.25, 0.45], T=16, final=False, wall_s=6.0,
             width=12),
    ]
    # Saturated and boundary eigenvalues (exact 0 and inf are legal:
    # docs/eigenvalues.md, sections 2 and 5).
    fin = runs[0].eig_final
    fin[0, 0, 0, 0] = np.inf
    fin[0, 0, 0, 1] = 0.0
    fin[0, 1, 1, 2] = 1.0     # on a threshold: counts in [0.9,1] and [1,10]
    fin[1, 1, 0, 3] = 100.0   # counts in [10,100] only (> 100 is open)
    fin[2, 0, 1, 4] = 1e300
    runs[0].eig_history[-1] = fin
    out = {}
    for r in runs:
        write_run(os.path.join(outdir, r.model, f"seed{r.seed}.h5"), r)
        out[(r.model, r.seed)] = r
    with h5py.File(os.path.join(outdir, "mamba2", "seed9999.h5"), "w") as f:
        f.attrs["format"] = "other"
        f.create_dataset("x", data=np.arange(3))
    with open(os.path.join(outdir, "sm-attention", "seed7.h5"), "wb") as f:
        f.write(b"this is not an HDF5 file\n" * 8)
    with open(os.path.join(outdir, "sm-attention", "seed1919.h5.tmp"), "wb") as f:
        f.write(b"partial")
    return out


def main(argv):
    if len(argv) != 2:
        print("usage: make_fake_runs.py OUTDIR", file=sys.stderr)
        return 2
    runs = make_scenario(argv[1])
    for (model, seed), r in sorted(runs.items()):
        print(f"{argv[1]}/{model}/seed{seed}.h5  {r.status}  step {r.step}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
