#!/usr/bin/python3
"""Self-test of the "paper" oracle (paper.py, compare_paper.py).

    /usr/bin/python3 tests/oracle/selftest_paper.py [--keep DIR]

1. Cross-checks paper.py against second formulations written out here:
   the reference softmax normaliser in closed form (docs/eigenvalues.md,
   section 3), a 3-step example by hand (the one in docs/eigenvalues.md),
   linear attention's cumsum form, norm attention's exp(f(a_t) - f(a_{t+1})),
   Mamba-2 in float64 and the float32 rounding to exactly 1, the pseudo-LTI
   constant, the bin statistics by hand; and that paper and dsf differ.
2. Writes oracle files whose "C" paper outputs come from paper.py itself
   and checks that compare_paper.py passes them.
3. Corrupts copies and checks that compare_paper.py fails each for the
   right reason: one eigenvalue off by 20x its tolerance, the dsf
   eigenvalues instead of paper's, the projection applied to the block
   input instead of its output, each softmax quirk undone (masked entries
   as exp(0 - max), the 1/sqrt(dh) scale, the true causal normaliser), no
   2e-23 substitution, a bin count off by one, half-open bins, the sample
   std (ddof 1), a NaN, a missing dataset.

Exit status 0 when everything behaves, 1 otherwise.
"""

import contextlib
import io
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402
import compare_paper  # noqa: E402
import paper  # noqa: E402
import selftest  # noqa: E402  (variants, inputs, oracle-file writer)
import torch_models as tm  # noqa: E402

COMPARE = os.path.join(HERE, "compare_paper.py")
FAILURES = []


def check(cond, what):
    print(f"  {'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        FAILURES.append(what)


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(a == b, 0.0, np.abs(a - b) / np.abs(b))
    return float(np.max(r)) if r.size else 0.0


def cfg_of(model, **kw):
    return tm.Config.from_attrs(selftest.base(model, **kw))


def params32(cfg, gen):
    return tm.init_params(cfg, gen, dtype=torch.float32)


# ---------------------------------------------------------------------------
# Part 1: cross-checks
# ---------------------------------------------------------------------------

def qk_heads(cfg, P, i, x):
    """float32 q, k (B, L, H, dh) of layer i from x (the block output)."""
    pre = f"layers.{i}.attention."
    qkv = tm.linear(x, P[pre + "Wqkv.weight"], P[pre + "Wqkv.bias"])
    dqk, H = cfg.state_dim, cfg.num_heads
    return (qkv[..., :dqk].reshape(*x.shape[:2], H, dqk // H),
            qkv[..., dqk:2 * dqk].reshape(*x.shape[:2], H, dqk // H))


def softmax_alternatives(q, k):
    """float64 eigenvalues (B, H, L-1) from float32 q, k, written as loops:
    'reference' nu_t = sum_{s<=t} exp(fl32(S_ts - m_t)) + (L-1-t),
                m_t = max(0, max_s S_ts) for t < L-1 (the masked zeros), the
                last row's plain max; eig_t = nu_t / nu_{t+1} exp(fl32(m_t - m_{t+1}))
                (the script's float32 roundings kept), i.e. eta_t = e^{m_t} nu_t =
                sum_{s<=t} e^{S_ts} + (L-1-t) e^{m_t} (docs/eigenvalues.md, section 3);
    'float64'   the same in float64 throughout;
    'exp0-max'  masked entries as exp(0 - m_t) after the shift (the loose wording,
                docs/eigenvalues.md, section 4, note on wording);
    'scaled'    the reference with S / sqrt(dh);
    'causal'    the true normaliser sum_{s<=t} e^{S_ts} (no scale)."""
    Bsz, L, H, dh = q.shape
    S32 = torch.einsum("bthe,bshe->bhts", q, k).numpy()            # float32 scores
    out = {}
    for name in ("reference", "float64", "exp0-max", "scaled", "causal"):
        S = S32.astype(np.float64) / (math.sqrt(dh) if name == "scaled" else 1.0)
        nu, m = np.zeros((Bsz, H, L)), np.zeros((Bsz, H, L))
        for b in range(Bsz):
            for h in range(H):
                for t in range(L):
                    if name == "reference":
                        row = S32[b, h, t, :t + 1]
                        mt = max(np.float32(0.0), row.max()) if t < L - 1 else row.max()
                        terms = [math.exp(float(np.float32(v - mt))) for v in row]
                    else:
                        row = S[b, h, t, :t + 1]
                        mt = max(0.0, row.max()) if (t < L - 1 and name != "causal") else row.max()
                        terms = [math.exp(v - mt) for v in row]
                    masked = {"causal": 0.0, "exp0-max": math.exp(-mt)}.get(name, 1.0)
                    nu[b, h, t] = sum(terms) + (L - 1 - t) * masked
                    m[b, h, t] = mt
        if name == "reference":
            step = np.array([[[float(np.float32(m[b, h, t]) - np.float32(m[b, h, t + 1]))
                               for t in range(L - 1)] for h in range(H)] for b in range(Bsz)])
        else:
            step = m[..., :-1] - m[..., 1:]
        out[name] = nu[..., :-1] / nu[..., 1:] * np.exp(step)
    return out


def worked_example():
    """The 3-step softmax example of docs/eigenvalues.md: one head, dh = 4,
    block outputs chosen so that q_t = (a_t, 0, 0, 0), k_s = (b_s, 0, 0, 0),
    a = (1, 2, 0.5), b = (1, -1, 2)."""
    cfg = cfg_of("sm-attention", hidden_dim=4, state_dim=4, num_heads=1, num_layers=1)
    P = {k: torch.zeros(s, dtype=torch.float32) for k, s in tm.param_shapes(cfg).items()}
    W = torch.zeros(12, 4)
    W[0, 0] = 1.0        # q_0 = x_0
    W[4, 1] = 1.0        # k_0 = x_1
    P["layers.0.attention.Wqkv.weight"] = W
    x = torch.tensor([[[1.0, 1.0, 0, 0], [2.0, -1.0, 0, 0], [0.5, 2.0, 0, 0]]], dtype=torch.float32)
    eig, _, _ = paper.softmax_eig(cfg, P, 0, x)
    e = math.e
    eta = [3 * e, 2 * e ** 2 + e ** -2, e ** 0.5 + e ** -0.5 + e]     # reference normalisers
    want = [eta[0] / eta[1], eta[1] / eta[2]]
    dsf_eta = [e ** 0.5, e + e ** -1, e ** 0.25 + e ** -0.25 + e ** 0.5]   # S / 2, causal
    dsf = [dsf_eta[0] / dsf_eta[1], dsf_eta[1] / dsf_eta[2]]
    return eig[0, 0], want, dsf


def check_cross():
    print("cross-checks of paper.py")
    g = torch.Generator().manual_seed(11)

    got, want, dsf = worked_example()
    check(rel(got, want) <= 1e-7, f"worked example: paper eig {got[0]:.6f}, {got[1]:.6f} == by hand "
                                  f"{want[0]:.6f}, {want[1]:.6f} (dsf would be {dsf[0]:.6f}, {dsf[1]:.6f})")

    # softmax: closed form of the reference normaliser, on random block outputs
    cfg = cfg_of("sm-attention", num_heads=2, num_layers=1)
    P = params32(cfg, g)
    x = 2.0 * torch.randn(3, 9, 8, generator=g).float()
    eig, tol, amb = paper.softmax_eig(cfg, P, 0, x)
    alt = softmax_alternatives(*qk_heads(cfg, P, 0, x))
    check(rel(eig, alt["reference"]) <= 1e-12,
          f"softmax == closed form sum_s e^S + (L-1-t) e^m (rel {rel(eig, alt['reference']):.1e})")
    d = rel(eig, alt["float64"])
    check(0 < d <= 1e-5, f"softmax: the script's float32 steps move it by {d:.1e} from float64")
    for name in ("exp0-max", "scaled", "causal"):
        d = rel(eig, alt[name])
        check(d > 1e-2, f"softmax differs from the '{name}' normaliser (rel {d:.2f})")
    check(not amb.any() and np.all(tol > 0), "softmax: positive tolerances, nothing ambiguous")

    # linear: cumsum form in float64 from the float32 features
    cfg = cfg_of("lin-attention", num_heads=2, num_layers=1)
    P = params32(cfg, g)
    eig, _, _ = paper.linear_eig(cfg, P, 0, x)
    q, k = qk_heads(cfg, P, 0, x)
    q, k = (F.elu(q) + 1).double(), (F.elu(k) + 1).double()
    nu = torch.einsum("bthe,bthe->bht", q, torch.cumsum(k, dim=1)).numpy()
    check(rel(eig, nu[..., :-1] / nu[..., 1:]) <= 1e-6, "linear == phi(q_t).sum_{s<=t} phi(k_s) ratio")
    # phi(q) = 0 exactly for q <= -104: nu = 0 -> 2e-23, eigenvalue exactly 1
    P0 = dict(P)
    b = P["layers.0.attention.Wqkv.bias"].clone()
    b[:cfg.state_dim] = -300.0
    W = P["layers.0.attention.Wqkv.weight"].clone()
    W[:cfg.state_dim] = 0.0
    P0["layers.0.attention.Wqkv.bias"], P0["layers.0.attention.Wqkv.weight"] = b, W
    eig0, tol0, _ = paper.linear_eig(cfg, P0, 0, x)
    check(np.all(eig0 == 1.0) and np.all(tol0 == 0), "linear: zero normalisers -> 2e-23 -> exactly 1 (tolerance 0)")

    # norm: exp(f(a_t) - f(a_{t+1})) where nothing underflows; exact values where both underflow
    for fn in tm.NORM_FNS:
        cfg = cfg_of("norm-attention", norm_fn=fn, offset=1, num_heads=2, num_layers=1)
        P = params32(cfg, g)
        eig, tol, amb = paper.norm_eig(cfg, P, 0, x)
        vqkn = tm.linear(x, P["layers.0.attention.Wvqkn.weight"], P["layers.0.attention.Wvqkn.bias"])
        a = (vqkn[..., 24:] + P["layers.0.attention.inner_attn.offset"]).double()
        f = {"exp": torch.exp, "elu": F.elu, "softplus": F.softplus, "sigmoid": torch.sigmoid}[fn]
        fa = f(a).permute(0, 2, 1).numpy()
        with np.errstate(over="ignore"):
            ref = np.exp(fa[..., :-1] - fa[..., 1:])
        fine = (fa[..., :-1] < 80) & (fa[..., 1:] < 80)
        both = (fa[..., :-1] > 110) & (fa[..., 1:] > 110)
        r = rel(eig[fine], ref[fine])
        check(r <= 2e-6 * (1 + np.abs(fa).max()) and np.all(eig[both] == 1.0),
              f"norm ({fn}): exp(f(a_t) - f(a_t+1)) within float32 rounding (rel {r:.1e}); "
              f"{int(both.sum())} doubly underflowed -> exactly 1")
    cfg = cfg_of("norm-attention", norm_fn="exp", offset=1, num_heads=4, num_layers=1)
    P = params32(cfg, g)
    eig, tol, amb = paper.norm_eig(cfg, P, 0, x)
    ones = np.mean(eig == 1.0)
    check(ones > 0.5 and np.all(tol[eig == 1.0] >= 0),
          f"norm (exp, offsets 4..9): {100 * ones:.0f}% of the eigenvalues are exactly 1")

    # Mamba-2: float64 exp(Delta a) within float32 rounding; tiny Delta rounds to exactly 1
    cfg = cfg_of("mamba2", conv_dim=4, glu=1, num_layers=1)
    P = params32(cfg, g)
    eig, _, _ = paper.mamba2_eig(cfg, P, 0, x)
    raw = tm.linear(x, P["blocks.0.mamba.in_proj.weight"])[..., 24:].double()
    d64 = F.softplus(raw + P["blocks.0.mamba.dt_bias"].double())
    ref = torch.exp(d64 * -torch.exp(P["blocks.0.mamba.A_log"].double())).permute(0, 2, 1).numpy()
    check(rel(eig, ref) <= 1e-6, f"Mamba-2 == float64 exp(Delta a) within float32 rounding (rel {rel(eig, ref):.1e})")
    P1 = dict(P)
    P1["blocks.0.mamba.dt_bias"] = torch.full((2,), -40.0)
    W = P["blocks.0.mamba.in_proj.weight"].clone()
    W[24:] = 0.0
    P1["blocks.0.mamba.in_proj.weight"] = W
    eig1, _, _ = paper.mamba2_eig(cfg, P1, 0, x)
    check(np.all(eig1 == 1.0), "Mamba-2: exp(-4e-18 * A) is exactly 1.0 in float32 (counted in two bins)")
    check(np.all(paper.percent(eig1[:, None])[..., 3:5] == 100.0), "  ... 100% in [0.9, 1] and 100% in [1, 10]")

    # pseudo-LTI: exp(-softplus(A)), the same for every (b, t)
    cfg = cfg_of("mamba2", pseudoLTI=1, num_layers=1)
    P = params32(cfg, g)
    P["blocks.0.mamba.A"] = torch.tensor([-2.0, -8.0])
    eig, _, _ = paper.pseudo_lti_eig(cfg, P, 0, 3, 5)
    want = np.exp(-np.log1p(np.exp([-2.0, -8.0])))
    check(np.all(eig == eig[:1, :, :1]) and rel(eig[0, :, 0], want) <= 2e-7,
          f"pseudo-LTI constant exp(-softplus(A)) = {eig[0, 0, 0]:.6f}, {eig[0, 1, 0]:.6f}")

    # statistics by hand (the same numbers as tests/test_spectra.c)
    e = np.array([[0.1, 0.95, 1.0, np.inf], [0.0] * 4, [0.05, 2.0, 100.0, -1.0], [0.5, 0.7, 10.0, 200.0]])
    pct = paper.percent(e.reshape(2, 1, 2, 4))
    want = np.array([[25, 25, 0, 50, 25, 0, 25], [100, 0, 0, 0, 0, 0, 0],
                     [25, 0, 0, 0, 25, 25, 0], [0, 25, 50, 0, 25, 25, 25]], dtype=float)
    check(np.array_equal(pct.reshape(4, 7), want), "bins closed at both ends, inf in > 100, negative in none")
    mean, std = paper.percent_stats(np.array([0.0, 50.0, 100.0]).reshape(3, 1, 1, 1))
    check(mean.item() == 50.0 and abs(std.item() - math.sqrt(5000 / 3)) < 1e-12, "population std (ddof 0)")

    # paper vs dsf on whole models: the quirks change the numbers
    for name in ("sm-lm-pos", "lin-conv-gate-lm", "norm-softplus-elu-conv-lm", "mamba2-lm"):
        attrs, B, L, padded = selftest.VARIANTS[name]
        cfg = tm.Config.from_attrs(attrs)
        P = params32(cfg, g)
        tokens, rows, _, mask = selftest.make_inputs(cfg, B, L, padded, g)
        p, _, _ = paper.paper_eig(cfg, P, tokens)
        _, log_eig, _ = tm.forward(cfg, {k: v.double() for k, v in P.items()}, tokens, rows, mask)
        d = rel(p, np.exp(log_eig.numpy()))
        check(d > 1e-2, f"{name}: paper differs from dsf (rel {d:.2f})")


# ---------------------------------------------------------------------------
# Part 2 and 3: files; compare_paper.py passes and fails
# ---------------------------------------------------------------------------

def write_paper(path, eig, pct=None, ddof=0):
    """Add /c/paper to an oracle file: eig and the statistics derived from it
    (percentages count / T * 100 unless given, mean, std with `ddof`)."""
    if pct is None:
        pct = paper.percent(eig)
    with h5py.File(path, "r+") as f:
        if "c/paper" in f:
            del f["c/paper"]
        f.create_dataset("c/paper/eig", data=np.asarray(eig, dtype=np.float64))
        f.create_dataset("c/paper/percent", data=pct.astype(np.float64))
        f.create_dataset("c/paper/percent_mean", data=np.mean(pct, axis=0))
        f.create_dataset("c/paper/percent_std", data=np.std(pct, axis=0, ddof=ddof))


def corrupt(src, dst, eig=None, pct=None, ddof=0, fn=None):
    shutil.copy(src, dst)
    if eig is not None or pct is not None or ddof:
        d = compare.load(src)
        c = compare_paper.load_paper(src, d)
        write_paper(dst, c["eig"] if eig is None else eig, pct, ddof)
    if fn is not None:
        with h5py.File(dst, "r+") as f:
            fn(f)
    return dst


def expect_failure(label, path, must_name, exactly_one=False):
    rc, text, counts = run_compare([path], in_process=True)
    bad = selftest.fail_lines(text)
    named = any(must_name in ln for ln in bad) or any("MALFORMED" in ln and must_name in ln
                                                       for ln in text.splitlines())
    ok = rc == 1 and counts is not None and counts[1] >= 1 and named
    if exactly_one:
        ok = ok and counts[1] == 1 and len(bad) == 1
    check(ok, f"{label}: compare_paper.py exits 1 and reports '{must_name}'"
              + (" (and nothing else)" if exactly_one else "")
              + f" [rc {rc}, {counts[1] if counts else '?'} failed]")
    if not ok:
        print(text)


def run_compare(paths, in_process=False):
    """compare_paper.py on paths: (exit status, output, (passed, failed)).
    The faithful set runs as a separate process (the real command line);
    the corrupted copies run its main() in this process (same code, no
    interpreter start-up per file)."""
    if in_process:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            rc = compare_paper.main([COMPARE] + list(paths))
        text = buf.getvalue()
    else:
        r = subprocess.run([selftest.PYTHON, COMPARE] + list(paths), capture_output=True, text=True)
        rc, text = r.returncode, r.stdout + r.stderr
    last = text.strip().splitlines()[-1] if text.strip() else ""
    m = re.fullmatch(r"(\d+) passed, (\d+) failed", last)
    return rc, text, (int(m.group(1)), int(m.group(2))) if m else None


def main(argv):
    t0 = time.time()
    keep = argv[2] if len(argv) > 2 and argv[1] == "--keep" else None
    torch.set_num_threads(1)
    check_cross()

    workdir = keep or tempfile.mkdtemp(prefix="seqeig-paper-selftest-")
    os.makedirs(workdir, exist_ok=True)
    print(f"oracle files in {workdir}")
    gen = torch.Generator().manual_seed(2929)
    files, data = {}, {}
    for name, (attrs, B, L, padded) in selftest.VARIANTS.items():
        cfg = tm.Config.from_attrs(attrs)
        P32 = tm.init_params(cfg, gen, dtype=torch.float32)
        tokens, rows, labels, mask = selftest.make_inputs(cfg, B, L, padded, gen)
        out = selftest.c_outputs(cfg, P32, tokens, rows, labels, mask)
        path = os.path.join(workdir, name + ".h5")
        selftest.write_file(path, name, attrs, P32, tokens, rows, labels, mask, out)
        eig, tol, amb = paper.paper_eig(cfg, P32, tokens)
        write_paper(path, eig)
        files[name] = path
        data[name] = dict(cfg=cfg, P=P32, tokens=tokens, eig=eig, tol=tol, dsf=out["eig"])

    print("compare_paper.py on the faithful files")
    rc, text, counts = run_compare(files.values())
    ok = rc == 0 and counts == (4 * len(files), 0)
    check(ok, f"all {len(files)} variants pass: rc {rc}, counts {counts} (expected {4 * len(files)} passed)")
    if not ok or keep:
        print(text)

    print("compare_paper.py on corrupted copies")
    cdir = os.path.join(workdir, "corrupt")
    os.makedirs(cdir, exist_ok=True)

    # one eigenvalue off by 20x its tolerance, staying in its bins (percentages untouched)
    dd = data["sm-conv-mlp-gate-cls"]
    e = dd["eig"].copy()
    cand = [i for i in zip(*np.nonzero(dd["tol"] > 0))
            if np.array_equal(paper.bin_masks(e[i] * (1 + 20 * dd["tol"][i])), paper.bin_masks(e[i]))]
    i0 = cand[0]
    e[i0] *= 1 + 20 * dd["tol"][i0]
    expect_failure("one eigenvalue off by 20x its tolerance",
                   corrupt(files["sm-conv-mlp-gate-cls"], os.path.join(cdir, "eig.h5"), eig=e,
                           pct=paper.percent(dd["eig"])), "paper eig", exactly_one=True)

    for name in ("sm-lm-pos", "lin-conv-gate-lm", "norm-softplus-elu-conv-lm", "norm-exp-mlp-cls",
                 "mamba2-lm", "mamba2-post-cls"):
        dd = data[name]
        expect_failure(f"{name}: dsf eigenvalues written as paper's",
                       corrupt(files[name], os.path.join(cdir, f"dsf-{name}.h5"), eig=dd["dsf"]), "paper eig")
        wrong, _, _ = paper.paper_eig(dd["cfg"], dd["P"], dd["tokens"], use_input=True)
        expect_failure(f"{name}: projection applied to the block input, not its output",
                       corrupt(files[name], os.path.join(cdir, f"input-{name}.h5"), eig=wrong), "paper eig")

    # each softmax quirk undone, on the last layer (layer 0 kept right)
    dd = data["sm-lm-pos"]
    outs = paper.block_outputs(dd["cfg"], dd["P"], dd["tokens"])
    alt = softmax_alternatives(*qk_heads(dd["cfg"], dd["P"], 1, outs[1]))
    check(rel(alt["reference"], dd["eig"][:, 1]) <= 1e-12, "closed form reproduces paper.py on the file's layer 1")
    for quirk in ("exp0-max", "scaled", "causal"):
        e = dd["eig"].copy()
        e[:, 1] = alt[quirk]
        expect_failure(f"softmax with the '{quirk}' normaliser",
                       corrupt(files["sm-lm-pos"], os.path.join(cdir, f"sm-{quirk}.h5"), eig=e), "paper eig")

    # norm attention without the 2e-23 substitution (1e-30 instead)
    dd = data["norm-exp-mlp-cls"]
    cfg, P = dd["cfg"], dd["P"]
    saved = paper.ZERO_SUBST
    paper.ZERO_SUBST = 1e-30
    try:
        e, _, _ = paper.paper_eig(cfg, P, dd["tokens"])
    finally:
        paper.ZERO_SUBST = saved
    check(rel(e, dd["eig"]) > 1.0, "norm exp: the substitution value matters in this file")
    expect_failure("norm exp: 1e-30 instead of 2e-23 for a zero normaliser",
                   corrupt(files["norm-exp-mlp-cls"], os.path.join(cdir, "subst.h5"), eig=e), "paper eig")

    # statistics: one count off by one (mean/std consistent with it)
    dd = data["mamba2-lm"]
    pct = paper.percent(dd["eig"])
    pct[1, 0, 1, 3] += 100.0 / dd["eig"].shape[3]
    expect_failure("one bin count off by one", corrupt(files["mamba2-lm"], os.path.join(cdir, "count.h5"),
                                                       eig=dd["eig"], pct=pct), "paper percent", exactly_one=True)
    # half-open bins [a, b): exact 1.0 values lose their second bin
    dd = data["norm-exp-mlp-cls"]
    e = dd["eig"]
    check(np.any(e == 1.0), f"norm exp file has {int(np.sum(e == 1.0))} eigenvalues exactly 1")
    half = np.stack([(e >= lo) & (e < hi) for lo, hi in
                     zip([0] + list(paper.THRESHOLDS), list(paper.THRESHOLDS) + [np.inf])], axis=-1)
    half[..., -1] = e > paper.THRESHOLDS[-1]
    expect_failure("half-open bins", corrupt(files["norm-exp-mlp-cls"], os.path.join(cdir, "halfopen.h5"),
                                             eig=e, pct=half.sum(axis=3) / e.shape[3] * 100), "paper percent")
    expect_failure("sample std (ddof 1)", corrupt(files["mamba2-post-cls"], os.path.join(cdir, "ddof.h5"),
                                                  ddof=1), "paper percent_std", exactly_one=True)

    def put_nan(f):
        x = f["c/paper/eig"][()]
        x[0, 0, 0, 2] = np.nan
        f["c/paper/eig"][...] = x
    expect_failure("a NaN eigenvalue", corrupt(files["lin-mlp-cls"], os.path.join(cdir, "nan.h5"), fn=put_nan),
                   "paper eig")
    expect_failure("missing /c/paper/percent_std",
                   corrupt(files["mamba2-lti-post-cls"], os.path.join(cdir, "missing.h5"),
                           fn=lambda f: f.__delitem__("c/paper/percent_std")), "/c/paper/percent_std")

    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    dt = time.time() - t0
    if FAILURES:
        print(f"selftest_paper FAILED ({len(FAILURES)} checks, {dt:.1f} s):")
        for w in FAILURES:
            print(f"  - {w}")
        return 1
    print(f"selftest_paper passed ({dt:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
