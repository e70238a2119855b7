#!/usr/bin/python3
"""Self-test of the PyTorch oracle: shows that compare.py passes and fails.

    /usr/bin/python3 tests/oracle/selftest.py [--keep DIR]

1. Cross-checks torch_models' hand-written pieces against a second
   formulation (torch library functions; recurrence vs masked-matrix forms;
   directional derivative vs autograd).
2. Writes oracle files (docs/oracle.md) for a set of variants: weights
   initialised per docs/parameters.md in float32, "C" outputs computed by
   torch_models in float32 from those weights (eigenvalues in float64 from the float32
   activations, as the C code does), and checks that compare.py passes them.
3. Corrupts copies (one gradient element, one logit, two heads' offsets
   swapped, eigenvalues, a missing / an unexpected parameter) and checks that
   compare.py fails each for the right reason.

Exit status 0 when everything behaves, 1 otherwise.
"""

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
import torch_models as tm  # noqa: E402
import compare  # noqa: E402

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
COMPARE = os.path.join(HERE, "compare.py")

FAILURES = []


def check(cond, what):
    print(f"  {'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        FAILURES.append(what)


# ---------------------------------------------------------------------------
# Variants (small enough to run in well under a second each)
# ---------------------------------------------------------------------------

def base(model, **kw):
    c = dict(model=model, hidden_dim=8, state_dim=8, num_heads=2, num_layers=2, vocab_size=16,
             output_dim=16, head="lm", mixer_dim=0, dropout=0.0, max_pos_embed=0, mixer="none",
             use_gate=0, dim_conv=0, norm_fn="softplus", approx_fn="none", scale_B=0, offset=0,
             conv_dim=0, glu=0, prenorm=1, pseudoLTI=0)
    c.update(kw)
    return c


# name -> (config attrs, B, L, padded classifier mask?)
VARIANTS = {
    "sm-lm-pos":            (base("sm-attention", max_pos_embed=12), 2, 10, False),
    "sm-conv-mlp-gate-cls": (base("sm-attention", state_dim=4, head="classifier", output_dim=5,
                                  mixer="mlp", mixer_dim=12, use_gate=1, dim_conv=4), 3, 9, True),
    "lin-conv-gate-lm":     (base("lin-attention", max_pos_embed=10, use_gate=1, dim_conv=4), 2, 10, False),
    "lin-mlp-cls":          (base("lin-attention", head="classifier", output_dim=4, mixer="mlp",
                                  mixer_dim=6, num_layers=1), 2, 8, False),
    "norm-softplus-elu-conv-lm": (base("norm-attention", norm_fn="softplus", approx_fn="elu",
                                       scale_B=1, offset=1, dim_conv=4), 2, 10, False),
    "norm-exp-mlp-cls":     (base("norm-attention", norm_fn="exp", approx_fn="none", scale_B=1,
                                  offset=1, num_heads=4, head="classifier", output_dim=3,
                                  mixer="mlp", mixer_dim=8), 3, 12, True),
    "norm-sigmoid-gate-lm": (base("norm-attention", norm_fn="sigmoid", use_gate=1, max_pos_embed=10), 2, 9, False),
    "norm-elu-elu-conv-lm": (base("norm-attention", norm_fn="elu", approx_fn="elu", scale_B=1,
                                  offset=1, dim_conv=4, num_layers=1), 2, 8, False),
    "mamba2-lm":            (base("mamba2", conv_dim=4, glu=1, prenorm=1), 2, 10, False),
    "mamba2-post-cls":      (base("mamba2", conv_dim=4, glu=1, prenorm=0, head="classifier",
                                  output_dim=4), 3, 9, True),
    "mamba2-lti-post-cls":  (base("mamba2", conv_dim=4, glu=1, prenorm=0, pseudoLTI=1,
                                  head="classifier", output_dim=4), 2, 10, True),
    "mamba2-lti-noconv-noglu-lm": (base("mamba2", state_dim=4, num_heads=4, pseudoLTI=1), 2, 8, False),
}


def make_inputs(cfg, B, L, padded, gen):
    tokens = torch.randint(0, cfg.vocab_size, (B, L), generator=gen, dtype=torch.int64)
    rows = mask = None
    if cfg.head == "lm":
        n = B * L // 2                                       # a scattered subset of positions
        rows = torch.sort(torch.randperm(B * L, generator=gen)[:n]).values
        labels = torch.randint(0, cfg.output_dim, (n,), generator=gen)
    else:
        labels = torch.randint(0, cfg.output_dim, (B,), generator=gen)
        if padded:                                           # example b has L - 2b valid steps
            mask = torch.ones(B, L, dtype=torch.float32)
            for b in range(B):
                mask[b, L - 2 * b:] = 0
    return tokens, rows, labels, mask


def c_outputs(cfg, P32, tokens, rows, labels, mask):
    """What the C side would write: float32 model, eigenvalues in float64."""
    P = {k: v.clone().requires_grad_(True) for k, v in P32.items()}
    logits, log_eig, _ = tm.forward(cfg, P, tokens, rows=rows, mask=mask)
    loss = tm.cross_entropy(logits, labels)
    loss.backward()
    grads = {k: (p.grad if p.grad is not None else torch.zeros_like(p)) for k, p in P.items()}
    with np.errstate(over="ignore"):            # saturated norm_fn exp values are +inf, on purpose
        eig = np.exp(log_eig.numpy())
    return dict(logits=logits.detach().numpy(), loss=np.float64(loss.item()),
                grads={k: g.numpy() for k, g in grads.items()}, eig=eig)


def write_file(path, variant, attrs, P32, tokens, rows, labels, mask, out):
    """One oracle file in the layout of docs/oracle.md."""
    with h5py.File(path, "w") as f:
        f.attrs["variant"] = variant
        f.attrs["format"] = "seqeig-oracle"
        f.attrs["format_version"] = np.int64(1)
        g = f.create_group("config")
        for k, v in attrs.items():
            if isinstance(v, str):
                g.attrs[k] = v
            elif isinstance(v, float):
                g.attrs[k] = np.float64(v)
            else:
                g.attrs[k] = np.int64(v)
        for name, v in P32.items():
            f.create_dataset(f"params/{name}", data=v.numpy().astype(np.float32))
        f.create_dataset("inputs/tokens", data=tokens.numpy().astype(np.int32))
        if rows is not None:
            f.create_dataset("inputs/rows", data=rows.numpy().astype(np.int32))
        f.create_dataset("inputs/labels", data=labels.numpy().astype(np.int32))
        if mask is not None:
            f.create_dataset("inputs/mask", data=mask.numpy().astype(np.float32))
        f.create_dataset("c/logits", data=out["logits"].astype(np.float32))
        f.create_dataset("c/loss", data=np.float64(out["loss"]))
        for name, v in out["grads"].items():
            f.create_dataset(f"c/grads/{name}", data=v.astype(np.float32))
        f.create_dataset("c/eig", data=out["eig"].astype(np.float64))


# ---------------------------------------------------------------------------
# Part 1: cross-checks of torch_models against second formulations
# ---------------------------------------------------------------------------

def close(a, b, tol=1e-10):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max()) <= tol * max(1.0, float(b.abs().max()))


def layer_params(cfg, gen):
    return {k: v.double() for k, v in tm.init_params(cfg, gen).items()}


def check_primitives():
    print("cross-checks of torch_models")
    g = torch.Generator().manual_seed(7)
    x = 3 * torch.randn(4, 7, 6, generator=g, dtype=torch.float64)
    w, b = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    check(close(tm.layer_norm(x, w, b), F.layer_norm(x, (6,), w, b, 1e-5)), "layer_norm == F.layer_norm")
    check(close(tm.gelu(x), F.gelu(x)), "gelu == F.gelu (erf)")
    check(close(tm.elu(x), F.elu(x)), "elu == F.elu")
    check(close(tm.softplus(x), F.softplus(x)), "softplus == F.softplus")
    check(close(tm.silu(x), F.silu(x)), "silu == F.silu")
    cw = torch.randn(6, 1, 4, generator=g, dtype=torch.float64)
    ref = F.conv1d(x.transpose(1, 2), cw, b, padding=3, groups=6)[..., :7].transpose(1, 2)
    check(close(tm.causal_depthwise_conv(x, cw, b), ref), "causal_depthwise_conv == F.conv1d(padding K-1)[:L]")

    # softmax attention vs the reference's formulation (additive -1e4 mask, torch.softmax),
    # eigenvalues vs eta sums written out
    cfg = tm.Config(**{k: v for k, v in base("sm-attention", dim_conv=4).items()})
    P = layer_params(cfg, g)
    u = torch.randn(2, 9, 8, generator=g, dtype=torch.float64)
    out, le, _ = tm.softmax_attention(cfg, P, "layers.0.attention.", u)
    qkv = F.silu(ref_conv(u @ P["layers.0.attention.Wqkv.weight"].T + P["layers.0.attention.Wqkv.bias"],
                          P["layers.0.attention.conv1d.weight"], P["layers.0.attention.conv1d.bias"]))
    q, k, v = qkv[..., :8].reshape(2, 9, 2, 4), qkv[..., 8:16].reshape(2, 9, 2, 4), qkv[..., 16:].reshape(2, 9, 2, 4)
    s = torch.einsum("bthd,bshd->bhts", q, k / 2.0) + torch.triu(torch.full((9, 9), -10000.0), 1).double()
    y = torch.einsum("bhts,bshd->bthd", torch.softmax(s, -1), v).reshape(2, 9, 8)
    check(close(out, y @ P["layers.0.attention.out_proj.weight"].T + P["layers.0.attention.out_proj.bias"]),
          "softmax attention == softmax with additive -1e4 mask")
    eta = torch.stack([torch.exp(s[:, :, t, :t + 1]).sum(-1) for t in range(9)], -1)
    check(close(torch.exp(le), eta[..., :-1] / eta[..., 1:]), "softmax eig == eta_{t-1}/eta_t")

    # linear attention (masked matrix) vs the cumsum recurrence
    cfg = tm.Config(**base("lin-attention"))
    P = layer_params(cfg, g)
    out, le, _ = tm.linear_attention(cfg, P, "layers.0.attention.", u)
    qkv = u @ P["layers.0.attention.Wqkv.weight"].T + P["layers.0.attention.Wqkv.bias"]
    q, k = F.elu(qkv[..., :8]) + 1, F.elu(qkv[..., 8:16]) + 1
    q, k, v = q.reshape(2, 9, 2, 4), k.reshape(2, 9, 2, 4), qkv[..., 16:].reshape(2, 9, 2, 4)
    S = torch.cumsum(torch.einsum("bshd,bshe->bshde", k, v), 1)
    z = torch.cumsum(k, 1)
    eta = torch.einsum("bshd,bshd->bsh", q, z)
    y = (torch.einsum("bshd,bshde->bshe", q, S) / eta[..., None]).reshape(2, 9, 8)
    check(close(out, y @ P["layers.0.attention.out_proj.weight"].T + P["layers.0.attention.out_proj.bias"]),
          "linear attention == cumsum recurrence")
    eta = eta.permute(0, 2, 1)
    check(close(torch.exp(le), eta[..., :-1] / eta[..., 1:]), "linear eig == eta_{t-1}/eta_t")

    # norm attention (masked matrix) vs the state recurrence
    for fn in tm.NORM_FNS:
        cfg = tm.Config(**base("norm-attention", norm_fn=fn, approx_fn="elu", scale_B=1, offset=1))
        P = layer_params(cfg, g)
        P["layers.0.attention.inner_attn.offset"] = torch.tensor([0.3, -0.4], dtype=torch.float64)
        out, le, _ = tm.norm_attention(cfg, P, "layers.0.attention.", u)
        vqkn = u @ P["layers.0.attention.Wvqkn.weight"].T + P["layers.0.attention.Wvqkn.bias"]
        v = vqkn[..., :8].reshape(2, 9, 2, 4)
        q = (F.elu(vqkn[..., 8:16]) + 1).reshape(2, 9, 2, 4)
        k = (F.elu(vqkn[..., 16:24]) + 1).reshape(2, 9, 2, 4)
        a = vqkn[..., 24:] + P["layers.0.attention.inner_attn.offset"]
        f = {"exp": torch.exp, "elu": F.elu, "softplus": F.softplus, "sigmoid": torch.sigmoid}[fn]
        Sst = torch.zeros(2, 2, 4, 4, dtype=torch.float64)
        ys = []
        for t in range(9):
            Sst = Sst + torch.einsum("bhd,bhe->bhde", k[:, t] / 2.0, v[:, t])
            ys.append(torch.exp(-f(a[:, t]))[..., None] * torch.einsum("bhd,bhde->bhe", q[:, t], Sst))
        y = torch.stack(ys, 1).reshape(2, 9, 8)
        check(close(out, y @ P["layers.0.attention.out_proj.weight"].T + P["layers.0.attention.out_proj.bias"]),
              f"norm attention ({fn}) == state recurrence")
        m = torch.exp(-f(a)).permute(0, 2, 1)
        check(close(torch.exp(le), m[..., 1:] / m[..., :-1]), f"norm eig ({fn}) == m_t/m_(t-1)")

    # SSD recurrence vs the quadratic (attention-like) dual form
    for lti in (0, 1):
        cfg = tm.Config(**base("mamba2", conv_dim=4, pseudoLTI=lti))
        P = layer_params(cfg, g)
        out, le, _ = tm.ssd(cfg, P, "blocks.0.mamba.", u)
        proj = u @ P["blocks.0.mamba.in_proj.weight"].T
        dt = F.softplus(proj[..., 24:] + P["blocks.0.mamba.dt_bias"])                   # (B, L, H)
        xBC = F.silu(ref_conv(proj[..., :24], P["blocks.0.mamba.conv1d.weight"], P["blocks.0.mamba.conv1d.bias"]))
        xs, Bm, Cm = xBC[..., :8].reshape(2, 9, 2, 4), xBC[..., 8:16], xBC[..., 16:24]
        if lti:
            la = (-F.softplus(P["blocks.0.mamba.A"])).expand(2, 9, 2)
            xin = xs
            Bh = (Bm.reshape(2, 9, 2, 4) * dt[..., None]).reshape(2, 9, 8)
        else:
            la = dt * -torch.exp(P["blocks.0.mamba.A_log"])
            xin = dt[..., None] * xs
            Bh = Bm
        cum = torch.cumsum(la, 1)                                                         # (B, L, H)
        decay = torch.exp(cum[:, :, None, :] - cum[:, None, :, :])                        # (B, t, s, H)
        decay = decay * torch.tril(torch.ones(9, 9, dtype=torch.float64))[None, :, :, None]
        G = torch.einsum("btn,bsn->bts", Cm, Bh)
        y = torch.einsum("bts,btsh,bshp->bthp", G, decay, xin) + P["blocks.0.mamba.D"][:, None] * xs
        check(close(out, y.reshape(2, 9, 8) @ P["blocks.0.mamba.out_proj.weight"].T),
              f"SSD recurrence == quadratic dual form (pseudoLTI {lti})")
        check(close(le, la.permute(0, 2, 1)), f"Mamba-2 log eig == Delta a (pseudoLTI {lti})")

    # autograd of the whole model == directional finite difference, one model per kind
    for name in ("sm-conv-mlp-gate-cls", "lin-conv-gate-lm", "norm-softplus-elu-conv-lm",
                 "mamba2-post-cls", "mamba2-lti-post-cls"):
        attrs, B, L, padded = VARIANTS[name]
        cfg = tm.Config.from_attrs(attrs)
        P = {k: v.double().requires_grad_(True) for k, v in tm.init_params(cfg, g).items()}
        tokens, rows, labels, mask = make_inputs(cfg, B, L, padded, g)
        loss = tm.cross_entropy(tm.forward(cfg, P, tokens, rows, mask)[0], labels)
        loss.backward()
        V = {k: torch.randn(p.shape, generator=g, dtype=torch.float64) for k, p in P.items()}
        dd = sum(float((P[k].grad * V[k]).sum()) for k in P)
        h = 1e-5
        with torch.no_grad():
            lp = tm.cross_entropy(tm.forward(cfg, {k: P[k] + h * V[k] for k in P}, tokens, rows, mask)[0], labels)
            lm = tm.cross_entropy(tm.forward(cfg, {k: P[k] - h * V[k] for k in P}, tokens, rows, mask)[0], labels)
        fd = float(lp - lm) / (2 * h)
        check(abs(fd - dd) <= 1e-6 * max(1.0, abs(dd)), f"{name}: autograd == finite difference ({dd:.8g} vs {fd:.8g})")


def ref_conv(u, w, b):
    L = u.shape[1]
    return F.conv1d(u.transpose(1, 2), w, b, padding=w.shape[2] - 1, groups=w.shape[0])[..., :L].transpose(1, 2)


# ---------------------------------------------------------------------------
# Part 2 and 3: files, compare.py passes and fails
# ---------------------------------------------------------------------------

def run_compare(paths):
    r = subprocess.run([PYTHON, COMPARE] + list(paths), capture_output=True, text=True)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    m = re.fullmatch(r"(\d+) passed, (\d+) failed", last)
    counts = (int(m.group(1)), int(m.group(2))) if m else None
    return r.returncode, r.stdout + r.stderr, counts


def fail_lines(text):
    """compare.py's per-tensor lines that end in FAIL (status follows the bound)."""
    return [ln for ln in text.splitlines() if re.search(r"\)\s+FAIL\b", ln)]


def corrupt(src, dst, fn):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        fn(f)
    return dst


def expect_failure(label, path, must_name, exactly_one=False):
    rc, text, counts = run_compare([path])
    bad = fail_lines(text)
    named = any(must_name in ln for ln in bad) or any(
        ("MALFORMED" in ln and must_name in ln) for ln in text.splitlines())
    ok = rc == 1 and counts is not None and counts[1] >= 1 and named
    if exactly_one:
        ok = ok and counts[1] == 1 and len(bad) == 1
    check(ok, f"{label}: compare.py exits 1 and reports '{must_name}'"
              + (" (and nothing else)" if exactly_one else "")
              + f" [rc {rc}, {counts[1] if counts else '?'} failed]")
    if not ok:
        print(text)


def main(argv):
    t0 = time.time()
    keep = None
    if len(argv) > 2 and argv[1] == "--keep":
        keep = argv[2]
    torch.set_num_threads(1)
    check_primitives()

    workdir = keep or tempfile.mkdtemp(prefix="seqeig-oracle-selftest-")
    os.makedirs(workdir, exist_ok=True)
    print(f"oracle files in {workdir}")
    gen = torch.Generator().manual_seed(1919)
    files, expected_lines, info = {}, 0, {}
    for name, (attrs, B, L, padded) in VARIANTS.items():
        cfg = tm.Config.from_attrs(attrs)
        P32 = tm.init_params(cfg, gen, dtype=torch.float32)
        tokens, rows, labels, mask = make_inputs(cfg, B, L, padded, gen)
        out = c_outputs(cfg, P32, tokens, rows, labels, mask)
        path = os.path.join(workdir, name + ".h5")
        write_file(path, name, attrs, P32, tokens, rows, labels, mask, out)
        files[name] = path
        info[name] = out
        expected_lines += 3 + len(P32)           # logits, loss, eig + one line per gradient

    # the norm_fn exp variant must actually exercise saturated eigenvalues
    eig = info["norm-exp-mlp-cls"]["eig"]
    n0, ninf = int((eig == 0).sum()), int(np.isposinf(eig).sum())
    check(n0 > 0 and ninf > 0 and np.isfinite(eig).any(),
          f"norm_fn exp variant has exact 0 ({n0}) and +inf ({ninf}) eigenvalues next to finite ones")

    print("compare.py on the faithful files")
    rc, text, counts = run_compare(files.values())
    ok = rc == 0 and counts == (expected_lines, 0)
    check(ok, f"all {len(files)} variants pass: rc {rc}, '{counts[0] if counts else '?'} passed, "
              f"{counts[1] if counts else '?'} failed' (expected {expected_lines} passed)")
    if not ok or keep:
        print(text)
    worst = max((float(m.group(1)) for m in re.finditer(r"rel err\s+(\S+)", text)
                 if m.group(1) not in ("inf", "nan")), default=float("nan"))
    print(f"  (largest normalised error over all faithful tensors: {worst:.2e}, bound 1e-4)")

    print("compare.py on corrupted copies")
    cdir = os.path.join(workdir, "corrupt")
    os.makedirs(cdir, exist_ok=True)

    # (a) one gradient element off by 1e-3 of the tensor's max
    name = "layers.1.attention.Wqkv.weight"

    def bump_grad(f):
        g = f[f"c/grads/{name}"][()]
        g[3, 2] += 1e-3 * np.abs(g).max()
        f[f"c/grads/{name}"][...] = g
    expect_failure("one gradient element", corrupt(files["sm-lm-pos"], os.path.join(cdir, "grad.h5"), bump_grad),
                   "grad " + name, exactly_one=True)

    # (b) one logit off by 1e-3 of the max (loss left alone: only logits may fail)
    def bump_logit(f):
        z = f["c/logits"][()]
        z[1, 2] += 1e-3 * np.abs(z).max()
        f["c/logits"][...] = z
    expect_failure("one logit", corrupt(files["mamba2-lm"], os.path.join(cdir, "logit.h5"), bump_logit),
                   "logits", exactly_one=True)

    # (c) two heads' offsets swapped in the weights: the C outputs no longer match them
    def swap_offsets(f):
        o = f["params/layers.0.attention.inner_attn.offset"][()]
        o[[0, 1]] = o[[1, 0]]
        f["params/layers.0.attention.inner_attn.offset"][...] = o
    expect_failure("offsets of heads 0 and 1 swapped",
                   corrupt(files["norm-softplus-elu-conv-lm"], os.path.join(cdir, "offsets.h5"), swap_offsets),
                   "logits")

    # (d) eigenvalues: one finite value off by 20x its tolerance; an exact 0 that the C
    # reports as a tiny positive number; an exact 0 reported as +inf
    ref = compare.load(files["norm-exp-mlp-cls"])
    t = compare.run_torch(ref)
    tol = compare.EIG_RTOL * t["scale"]
    c_eig = ref["c"]["eig"]
    fin = np.isfinite(c_eig) & (c_eig > 0)
    idx_fin = np.unravel_index(np.argmin(np.where(fin, tol, np.inf)), c_eig.shape)
    zero_far = (c_eig == 0) & (t["log_eig"] < -800)
    idx_zero = tuple(np.argwhere(zero_far)[0])

    def eig_scale(f):
        e = f["c/eig"][()]
        e[idx_fin] *= math.exp(20 * tol[idx_fin])
        f["c/eig"][...] = e

    def eig_zero_tiny(f):
        e = f["c/eig"][()]
        e[idx_zero] = 1e-300
        f["c/eig"][...] = e

    def eig_zero_inf(f):
        e = f["c/eig"][()]
        e[idx_zero] = np.inf
        f["c/eig"][...] = e
    src = files["norm-exp-mlp-cls"]
    expect_failure("one finite eigenvalue off by 20x its tolerance",
                   corrupt(src, os.path.join(cdir, "eig.h5"), eig_scale), "eig", exactly_one=True)
    expect_failure("an exact-0 eigenvalue reported as 1e-300",
                   corrupt(src, os.path.join(cdir, "eig0.h5"), eig_zero_tiny), "eig", exactly_one=True)
    expect_failure("an exact-0 eigenvalue reported as +inf",
                   corrupt(src, os.path.join(cdir, "eiginf.h5"), eig_zero_inf), "eig", exactly_one=True)

    # (e) malformed: a missing parameter, an unexpected one, a wrong shape
    missing = "blocks.1.mamba.dt_bias"
    expect_failure("missing parameter",
                   corrupt(files["mamba2-post-cls"], os.path.join(cdir, "missing.h5"),
                           lambda f: f.__delitem__(f"params/{missing}")), "/params/" + missing)
    expect_failure("unexpected parameter",
                   corrupt(files["lin-mlp-cls"], os.path.join(cdir, "extra.h5"),
                           lambda f: f.create_dataset("params/layers.0.Wz.weight",
                                                      data=np.zeros((8, 8), np.float32))),
                   "/params/layers.0.Wz.weight")

    def bad_shape(f):
        del f["c/grads/norm.weight"]
        f.create_dataset("c/grads/norm.weight", data=np.zeros((9,), np.float32))
    expect_failure("gradient with the wrong shape",
                   corrupt(files["sm-lm-pos"], os.path.join(cdir, "shape.h5"), bad_shape),
                   "/c/grads/norm.weight")

    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    dt = time.time() - t0
    if FAILURES:
        print(f"selftest FAILED ({len(FAILURES)} checks, {dt:.1f} s):")
        for w in FAILURES:
            print(f"  - {w}")
        return 1
    print(f"selftest passed ({dt:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
