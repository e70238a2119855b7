#!/usr/bin/python3
"""Compare the C "paper" eigenvalues and bin statistics with the independent
re-implementation of the reference procedure (paper.py).

    /usr/bin/python3 tests/oracle/compare_paper.py build/oracle/*.h5

Each oracle file (docs/oracle.md) must hold, besides what compare.py reads,

    /c/paper/eig           float64 (B, layers, H, T)   method "paper" eigenvalues
    /c/paper/percent       float64 (B, layers, H, 7)   bin percentages per sample
    /c/paper/percent_mean  float64 (layers, H, 7)      mean over samples
    /c/paper/percent_std   float64 (layers, H, 7)      population std over samples

paper.py recomputes everything in float32/float64 exactly as the reference
script does, from the file's float32 weights and tokens.  Checks, one line
each, then `N passed, N failed` (exit 1 on any failure or malformed file):

  paper eig      |c - p| <= tol * |p| elementwise, tol from paper.py: RTOL =
                 1e-5 relative error of one float32 activation, scaled by the
                 size of the quantities it enters (log-domain arguments of exp;
                 see each function there).  Values the script makes exact (a
                 2e-23 normaliser on both sides -> exactly 1) must match
                 exactly; NaN always fails.  Elements where float32 underflow
                 is within tolerance are "ambiguous" and counted, not judged.
  paper percent  the bin COUNTS (percent * T / 100) must be equal for every
                 (sample, layer, head, bin), except that a series may differ
                 by at most its number of elements whose tolerance interval
                 contains a threshold (counted and printed; normally 0); and
                 each percentage within 1e-12 of count / T * 100 (the C side
                 rounds 100 * count / T, which differs in the last bit).
  paper mean/std np.mean / np.std (ddof 0) of the C percentages, within 1e-12
                 (absolute, percentages are <= 100).
"""

import os
import sys

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402
import paper  # noqa: E402

STAT_ATOL = 1e-12


def load_paper(path, d):
    cfg = d["cfg"]
    Bsz, L = d["tokens"].shape[:2]
    T = L if cfg.is_mamba else L - 1
    Ly, H = cfg.num_layers, cfg.num_heads
    with h5py.File(path, "r") as f:
        return {
            "eig": compare._dataset(f, "/c/paper/eig", dtype=np.float64, shape=(Bsz, Ly, H, T)),
            "percent": compare._dataset(f, "/c/paper/percent", dtype=np.float64, shape=(Bsz, Ly, H, 7)),
            "mean": compare._dataset(f, "/c/paper/percent_mean", dtype=np.float64, shape=(Ly, H, 7)),
            "std": compare._dataset(f, "/c/paper/percent_std", dtype=np.float64, shape=(Ly, H, 7)),
        }


def run_paper(d, use_input=False):
    P = {k: torch.from_numpy(v.astype(np.float32)) for k, v in d["params"].items()}
    tokens = compare.inputs_tensor(d)
    if d["cfg"].input_dim > 0:
        tokens = tokens.float()   # the script runs the float32 model
    return paper.paper_eig(d["cfg"], P, tokens, use_input=use_input)


def compare_eig(c, p, tol, amb):
    """(max |c-p|/|p| over judged finite elements, ok, summary)."""
    judged = ~amb
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(c - p) / np.abs(p)
    rel = np.where(p == c, 0.0, rel)                       # exact agreement (incl. 0 == 0)
    bad = judged & (np.isnan(c) | np.isnan(p) | ~(rel <= tol))
    worst = float(np.max(np.where(judged & np.isfinite(rel), rel / np.where(tol > 0, tol, 1.0), 0.0))) \
        if c.size else 0.0
    exact = judged & (tol == 0)
    plain = float(np.max(np.where(judged & np.isfinite(rel), rel, 0.0))) if c.size else 0.0
    summary = (f"plain rel err {plain:.2e}; {int(exact.sum())} exact-by-construction, "
               f"{int(amb.sum())} ambiguous (underflow)")
    n_bad = int(bad.sum())
    if n_bad:
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        summary += f"; {n_bad} bad, first at {idx}: c={c[idx]:.9g} paper={p[idx]:.9g} tol={tol[idx]:.2g}"
    return worst, n_bad == 0, summary


def compare_percent(c_pct, c_eig, p_eig, tol, amb):
    """Bin counts of the C percentages vs paper.py's counts of its own
    eigenvalues.  Returns (max count difference, max difference beyond the
    undecidable elements (>= 1 on failure), ok, summary)."""
    T = p_eig.shape[3]
    p_cnt = paper.bin_counts(p_eig)
    c_cnt_f = c_pct * T / 100.0
    c_cnt = np.rint(c_cnt_f)
    fmt_ok = np.all(np.abs(c_pct - c_cnt / T * 100) <= STAT_ATOL) and np.all(np.abs(c_cnt_f - c_cnt) < 1e-6)
    # elements whose bins the tolerance cannot decide, per series
    loose = (paper.straddles_threshold(p_eig, tol) | amb).sum(axis=3)          # (B, Ly, H)
    diff = np.abs(c_cnt - p_cnt)
    bad = diff > loose[..., None]
    n_loose = int(loose.sum())
    summary = f"{int(p_cnt.sum())} bin memberships, {n_loose} undecidable within tolerance"
    if not fmt_ok:
        summary += "; percentages are not count / T * 100"
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        summary += f"; {int(bad.sum())} bad, first at {idx}: c count {int(c_cnt[idx])} paper count {int(p_cnt[idx])}"
    # the C percentages must also follow from the C eigenvalues (same code path as runs use)
    own = np.abs(paper.percent(c_eig) - c_pct).max() if c_pct.size else 0.0
    if not own <= STAT_ATOL:
        summary += f"; C percentages differ from bins of the C eigenvalues by {own:.3g}"
    excess = float(np.max(diff - loose[..., None])) if diff.size else 0.0
    ok = bool(fmt_ok and not bad.any() and own <= STAT_ATOL)
    return float(diff.max()) if diff.size else 0.0, max(excess, 0.0) if ok else max(excess, 1.0), ok, summary


def check_file(path, tally):
    print(path)
    try:
        d = compare.load(path)
        c = load_paper(path, d)
    except compare.Malformed as e:
        print(f"  MALFORMED {path}: {e}")
        tally.failed += 1
        return
    except Exception as e:
        print(f"  MALFORMED {path}: {type(e).__name__}: {e}")
        tally.failed += 1
        return
    cfg = d["cfg"]
    print(f"  variant {d['variant']}: model {cfg.model}, layers {cfg.num_layers}, heads {cfg.num_heads}, "
          f"inputs {tuple(d['tokens'].shape)}")
    try:
        p, tol, amb = run_paper(d)
    except Exception as e:
        print(f"  ERROR {path}: paper.py failed: {type(e).__name__}: {e}")
        tally.failed += 1
        return
    worst, ok, summary = compare_eig(c["eig"], p, tol, amb)
    tally.line("paper eig", float(np.max(np.abs(c["eig"] - p)[np.isfinite(p)])) if p.size else 0.0,
               worst, ok, 1.0, summary + " (rel err in units of tol)")
    dmax, excess, ok, summary = compare_percent(c["percent"], c["eig"], p, tol, amb)
    tally.line("paper percent", dmax, excess, ok, 0.0,
               summary + " (abs err: count difference; rel err: beyond the undecidable ones)")
    mean, std = paper.percent_stats(c["percent"])
    for name, want in (("paper percent_mean", mean), ("paper percent_std", std)):
        got = c["mean"] if name.endswith("mean") else c["std"]
        err = float(np.max(np.abs(got - want))) if got.size else 0.0
        tally.line(name, err, err, err <= STAT_ATOL, STAT_ATOL)


def main(argv):
    return compare.run_files(argv, check_file, "compare_paper.py")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
