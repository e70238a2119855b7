"""Independent re-implementation of the reference analysis procedure
(method "paper"; the study's analysis/eval_eig.py as described in
docs/eigenvalues.md, sections 3-5), written from that description.

It works on the float32 weights of an oracle file and runs every step in
the precision the reference script uses: PyTorch float32 for the layers,
the projections, scores, feature maps, f and exp where the script stays in
torch; numpy float64 where the script converts (`.astype(np.float64)`).

Procedure (one batch of tokens, B x L):

  x = encoder(tokens)            word embedding [+ learned positions], no dropout
  for every layer i:
      x = block_i(x)             the model's block, as in the forward pass
      eig_i = get_eig(x, i)      the layer's projection applied to the block OUTPUT,
                                 with no LayerNorm and no conv

  softmax  S = q.k (float32, no 1/sqrt(dh)) times the lower-triangular 0/1
           mask; row max over all s (masked zeros included); the max, repeated
           along s, times the same mask; S - max (float32) -> float64; exp;
           nan_to_num; sum over s (masked entries give exp(0) = 1);
           eig_t = nu_t / nu_{t+1} * exp(float64(max_t - max_{t+1} in float32))
  linear   q, k -> elu + 1 (float32); S = q.k masked (float32) -> float64;
           nan_to_num; nu = sum over s; nu == 0 -> 2e-23; eig_t = nu_t / nu_{t+1}
  norm     n channels of Wvqkn; m = exp(-f(n [+ offset])) (float32) -> float64;
           m == 0 -> 2e-23; eig_t = m_{t+1} / m_t
  Mamba-2  dt = softplus(in_proj(x)[dt] + dt_bias), A = -exp(A_log),
           eig = exp(dt * A), float32 (stored as float64 here)
  pseudo-LTI  eig = exp(beta * -softplus(A)), beta = 1, float32

Statistics (threshold_analysis): bins [0,0.1] [0.1,0.5] [0.5,0.9] [0.9,1]
[1,10] [10,100] (closed at both ends, so a value on a threshold counts
twice) and > 100; negative values in no bin; percentage = count / T * 100
per (sample, layer, head); mean and np.std (population) over samples.  The
radius of a Mamba-2 eigenvalue is sqrt(re^2 + im^2) in float32, which for
these real positive float32 values is the value itself (except below
~1e-19 where the square underflows; such values are in bin 0 either way).

Besides the eigenvalues, every function returns a per-element relative
tolerance and an "ambiguous" mask for comparing another implementation's
float32 result (see RTOL and each function's docstring).  Output layout: (B, layers, H, T) like the
C code (the script's is (B, T, H, layers)).
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

import torch_models as tm

THRESHOLDS = np.array([0.1, 0.5, 0.9, 1.0, 10.0, 100.0])
ZERO_SUBST = 2e-23          # the script's replacement for a zero normaliser
# Relative error of one float32 activation of another implementation (the C
# model: same weights, different summation orders), relative to the sizes
# of the quantities entering it.  Each *_eig function turns it into a
# per-element bound; with the oracle variants the largest observed error is
# below 0.1 of that bound (compare_paper.py prints it).
RTOL = 1e-6
FLT_TRUE_MIN = 2.0 ** -149  # smallest float32 subnormal
FLT_MIN = 2.0 ** -126       # smallest float32 normal
# exp(x) rounds to 0 in float32 below log(FLT_TRUE_MIN / 2)
FLT_EXP_UNDERFLOW = math.log(FLT_TRUE_MIN / 2)


# ---------------------------------------------------------------------------
# Block outputs (float32, the model's own forward; dropout 0 in oracle files)
# ---------------------------------------------------------------------------

def encoder(cfg, P, tokens):
    return tm.encode(cfg, P, tokens)


def transformer_block(cfg, P, i, x):
    pre = f"layers.{i}."
    w, b = P[pre + "norm.weight"], P[pre + "norm.bias"]
    att, _, _ = tm.ATTENTION[cfg.model](cfg, P, pre + "attention.", tm.layer_norm(x, w, b))
    h = x + att
    if cfg.mixer == "none":
        y = tm.layer_norm(h, w, b)
    else:
        z = tm.gelu(tm.linear(tm.layer_norm(h, w, b), P[pre + "mixer.encoder.weight"],
                              P[pre + "mixer.encoder.bias"]))
        y = h + tm.linear(z, P[pre + "mixer.decoder.weight"], P[pre + "mixer.decoder.bias"])
    if cfg.use_gate:
        y = y * tm.silu(tm.linear(x, P[pre + "Wz.weight"], P[pre + "Wz.bias"]))
    return y


def mamba_block(cfg, P, i, x):
    pre = f"blocks.{i}."
    w, b = P[pre + "norm.weight"], P[pre + "norm.bias"]
    u = tm.layer_norm(x, w, b) if cfg.prenorm else x
    s, _, _ = tm.ssd(cfg, P, pre + "mamba.", u)
    s = tm.gelu(s)
    if cfg.glu:
        ab = tm.linear(s, P[pre + "glu.linear.weight"], P[pre + "glu.linear.bias"])
        s = ab[..., :cfg.hidden_dim] * tm.sigmoid(ab[..., cfg.hidden_dim:])
    y = x + s
    return tm.layer_norm(y, w, b) if not cfg.prenorm else y


def block_outputs(cfg, P, tokens, use_input=False):
    """[output of block i] for every layer (float32 if P is float32).
    use_input=True returns each block's normalised INPUT instead (what the
    forward pass feeds the projection); only the self-test uses it, to show
    that the comparison tells the two apart."""
    x = encoder(cfg, P, tokens)
    outs = []
    block = mamba_block if cfg.is_mamba else transformer_block
    for i in range(cfg.num_layers):
        if use_input:
            pre = f"blocks.{i}." if cfg.is_mamba else f"layers.{i}."
            nx = tm.layer_norm(x, P[pre + "norm.weight"], P[pre + "norm.bias"])
            outs.append(nx if (not cfg.is_mamba or cfg.prenorm) else x)
        x = block(cfg, P, i, x)
        if not use_input:
            outs.append(x)
    return outs


# ---------------------------------------------------------------------------
# Per-layer eigenvalues.  Each returns (eig, tol, ambiguous), float64 / bool
# arrays of shape (B, H, T).  tol is the relative tolerance of the element
# when another implementation computes it from its own float32 activations
# (which differ from ours in the last bits): |c - p| <= tol * |p|.
# ---------------------------------------------------------------------------

def _heads(t, H):
    Bsz, L, C = t.shape
    return t.reshape(Bsz, L, H, C // H)


def softmax_eig(cfg, P, i, x):
    """get_eig_att_softmax.  Tolerance: an error of the float32 score S_ts is
    bounded by RTOL * sum_e |q_te k_se| (RTOL the relative error of the
    activations); log eig = log nu_t - log nu_{t+1} + m_t - m_{t+1} moves by
    at most 2 max_s err(S_ts) + 2 max_s err(S_{t+1,s}), so
    tol = RTOL * (1 + 2 M_t + 2 M_{t+1}), M_t = max_{s<=t} sum_e |q_te k_se|."""
    pre = f"layers.{i}.attention."
    H, dqk = cfg.num_heads, cfg.state_dim
    Bsz, L, _ = x.shape
    qkv = tm.linear(x, P[pre + "Wqkv.weight"], P[pre + "Wqkv.bias"])
    q = _heads(qkv[..., :dqk], H)                      # (B, L, H, dh)
    k = _heads(qkv[..., dqk:2 * dqk], H)
    with torch.no_grad():
        tril = torch.tril(torch.ones(L, L, dtype=x.dtype))                  # [t, s] = 1 for s <= t
        scores = torch.einsum("bthe,bshe->btsh", q, k) * tril[None, :, :, None]
        row_max = scores.max(dim=2).values                                   # (B, L, H), zeros included
        max_rep = row_max[:, :, None, :] * tril[None, :, :, None]            # masked like the scores
        shifted = (scores - max_rep).numpy().astype(np.float64)
        nu = np.nan_to_num(np.exp(shifted)).sum(axis=2)                      # (B, L, H)
        mx = row_max.numpy()
        step = (-mx[:, 1:, :] + mx[:, :-1, :]).astype(np.float64)          # float32 difference
        eig = nu[:, :-1, :] / nu[:, 1:, :] * np.exp(step)                   # (B, L-1, H)
        absdot = torch.einsum("bthe,bshe->btsh", q.abs(), k.abs()) * tril[None, :, :, None]
        M = absdot.max(dim=2).values.numpy().astype(np.float64)             # (B, L, H)
    tol = RTOL * (1.0 + 2.0 * M[:, :-1, :] + 2.0 * M[:, 1:, :])
    amb = np.zeros(eig.shape, dtype=bool)
    return [a.transpose(0, 2, 1) for a in (eig, tol, amb)]


def linear_eig(cfg, P, i, x):
    """get_eig_att_linear.  Tolerance: phi(u) = elu(u) + 1 has relative error
    <= RTOL (1 + |u|) (exp(u) for u < 0 inherits the absolute error of u); the
    scores are sums of products of such positive numbers, nu sums of positive
    scores, so nu_t has relative error <= 2 RTOL (1 + U) with U the largest
    |u| of the head, and eig_t <= 4 RTOL (1 + U)."""
    pre = f"layers.{i}.attention."
    H, dqk = cfg.num_heads, cfg.state_dim
    Bsz, L, _ = x.shape
    qkv = tm.linear(x, P[pre + "Wqkv.weight"], P[pre + "Wqkv.bias"])
    qr, kr = _heads(qkv[..., :dqk], H), _heads(qkv[..., dqk:2 * dqk], H)
    with torch.no_grad():
        q = F.elu(qr) + torch.ones(qr.shape, dtype=qr.dtype)
        k = F.elu(kr) + torch.ones(kr.shape, dtype=kr.dtype)
        tril = torch.tril(torch.ones(L, L, dtype=x.dtype))
        scores = torch.einsum("bthe,bshe->btsh", q, k) * tril[None, :, :, None]
        s64 = np.nan_to_num(scores.numpy().astype(np.float64))
        nu = s64.sum(axis=2)                                                 # (B, L, H)
        zero = nu == 0.0
        nu[zero] = ZERO_SUBST
        eig = nu[:, :-1, :] / nu[:, 1:, :]
        U = torch.maximum(qr.abs().amax(dim=(1, 3)), kr.abs().amax(dim=(1, 3))).numpy().astype(np.float64)
    tol = np.broadcast_to(4.0 * RTOL * (1.0 + U)[:, None, :], eig.shape).copy()
    # a substituted normaliser is exact; both substituted -> exactly 1
    tol[zero[:, :-1, :] & zero[:, 1:, :]] = 0.0
    amb = np.zeros(eig.shape, dtype=bool)
    return [a.transpose(0, 2, 1) for a in (eig, tol, amb)]


NORM_FN = {"exp": torch.exp, "elu": F.elu, "softplus": F.softplus, "sigmoid": torch.sigmoid}


def _side_budget(log_mag, value32, arg):
    """Relative-error budget of one float32 factor v = exp(arg) (arg = -f(a)
    or Delta*A) whose argument has absolute error RTOL * log_mag, plus the
    subnormal spacing when v is subnormal.  Returns (budget, exact, ambiguous):
    exact when v underflowed to 0 far from the underflow threshold (both
    implementations get 0), ambiguous when the threshold lies within the
    argument's error (either 0 or a subnormal is right)."""
    err_arg = RTOL * log_mag
    under = value32 == 0.0
    near = np.abs(arg - FLT_EXP_UNDERFLOW) <= err_arg
    budget = err_arg + np.where((value32 > 0) & (value32 < FLT_MIN),
                                2.0 * FLT_TRUE_MIN / np.where(value32 > 0, value32, 1.0), 0.0)
    budget = np.where(under, 0.0, budget)
    return budget, under & ~near, near


def norm_eig(cfg, P, i, x):
    """get_eig_att_norm.  Tolerance: with a = n + o (float32, absolute error
    <= RTOL (1 + |n| + |o|)), f(a) moves by at most f'(a) times that, and
    f' <= max(1, f) for all four f (exp: f' = f; elu, softplus: <= 1;
    sigmoid: <= 1/4).  m = exp(-f) then has relative error
    RTOL (1 + |n| + |o|) max(1, f); eig_t = m_{t+1}/m_t adds both sides.
    A zero m (-> 2e-23) is exact unless -f lies within its error of the
    float32 underflow threshold; such elements are ambiguous."""
    pre = f"layers.{i}.attention."
    H, d, dqk = cfg.num_heads, cfg.hidden_dim, cfg.state_dim
    vqkn = tm.linear(x, P[pre + "Wvqkn.weight"], P[pre + "Wvqkn.bias"])
    n = vqkn[..., d + 2 * dqk:]                                               # (B, L, H)
    f = NORM_FN[cfg.norm_fn]
    with torch.no_grad():
        if cfg.offset:
            off = P[pre + "inner_attn.offset"]
            a = n + off
            mag_a = n.abs() + off.abs()
        else:
            a = n
            mag_a = n.abs()
        fa = f(a)
        m32 = torch.exp(-fa)
        m = m32.numpy().astype(np.float64)
        zero = m == 0.0
        m[zero] = ZERO_SUBST
        eig = m[:, 1:, :] / m[:, :-1, :]
        fa64 = fa.numpy().astype(np.float64)
        log_mag = (1.0 + mag_a.numpy().astype(np.float64)) * np.maximum(1.0, np.abs(fa64))
        budget, _, near = _side_budget(log_mag, m32.numpy().astype(np.float64), -fa64)
    tol = budget[:, 1:, :] + budget[:, :-1, :]
    amb = near[:, 1:, :] | near[:, :-1, :]
    return [a_.transpose(0, 2, 1) for a_ in (eig, tol, amb)]


def mamba2_eig(cfg, P, i, x):
    """get_eig_mamba2 (float32 throughout).  Tolerance: the raw dt channel
    has absolute error RTOL (1 + |raw| + |bias|) and softplus' <= 1, so
    Delta*A has absolute error RTOL (1 + |raw| + |bias|) |A| (+ its own
    float32 rounding), which is the relative error of exp."""
    pre = f"blocks.{i}.mamba."
    H, d, N = cfg.num_heads, cfg.hidden_dim, cfg.state_dim
    with torch.no_grad():
        proj = tm.linear(x, P[pre + "in_proj.weight"])
        raw = proj[..., d + 2 * N:d + 2 * N + H]                             # (B, L, H)
        A = -torch.exp(P[pre + "A_log"])
        dt = F.softplus(raw + P[pre + "dt_bias"])
        lam32 = torch.exp(dt * A)
        lam = lam32.numpy().astype(np.float64)                               # (B, L, H)
        arg = (dt * A).numpy().astype(np.float64)
        mag = (1.0 + raw.abs() + P[pre + "dt_bias"].abs()).numpy().astype(np.float64) \
            * np.abs(A.numpy().astype(np.float64)) + np.abs(arg)
        budget, _, near = _side_budget(mag, lam, arg)
    return [a.transpose(0, 2, 1) for a in (lam, budget, near)]


def pseudo_lti_eig(cfg, P, i, Bsz, L):
    """get_eig_mamba2_LTI: exp(beta * -softplus(A)), beta = 1, float32.
    Depends on the float32 parameter only: the same float32 ops give the
    same value up to the last bit of exp and log1p, hence 4 float32 ulps."""
    with torch.no_grad():
        A = -F.softplus(P[f"blocks.{i}.mamba.A"])
        beta = torch.ones(Bsz, L, cfg.num_heads, dtype=A.dtype)
        lam = torch.exp(beta * A).numpy().astype(np.float64)                  # (B, L, H)
    tol = np.full(lam.shape, 4.0 * 2.0 ** -24)
    amb = np.zeros(lam.shape, dtype=bool)
    return [a.transpose(0, 2, 1) for a in (lam, tol, amb)]


EIG = {"sm-attention": softmax_eig, "lin-attention": linear_eig, "norm-attention": norm_eig}


def paper_eig(cfg, P, tokens, use_input=False):
    """(eig, tol, ambiguous), each (B, layers, H, T); P float32 tensors."""
    Bsz, L = tokens.shape[:2]
    per_layer = []
    if cfg.is_mamba and cfg.pseudoLTI:
        per_layer = [pseudo_lti_eig(cfg, P, i, Bsz, L) for i in range(cfg.num_layers)]
    else:
        with torch.no_grad():
            outs = block_outputs(cfg, P, tokens, use_input=use_input)
        fn = mamba2_eig if cfg.is_mamba else EIG[cfg.model]
        per_layer = [fn(cfg, P, i, x) for i, x in enumerate(outs)]
    return tuple(np.stack([pl[j] for pl in per_layer], axis=1) for j in range(3))


# ---------------------------------------------------------------------------
# Statistics (threshold_analysis, np.mean, np.std)
# ---------------------------------------------------------------------------

def bin_masks(eig):
    """Boolean (..., 7): membership of each value in each bin."""
    th = THRESHOLDS
    masks = [(eig >= 0) & (eig <= th[0])]
    for j in range(len(th) - 1):
        masks.append((eig >= th[j]) & (eig <= th[j + 1]))
    masks.append(eig > th[-1])
    return np.stack(masks, axis=-1)


def bin_counts(eig):
    """(B, layers, H, 7) integer counts over the time axis of (B, layers, H, T)."""
    return bin_masks(eig).sum(axis=3)


def percent(eig):
    """(B, layers, H, 7): count / T * 100 (the script's order of operations)."""
    T = eig.shape[3]
    return bin_counts(eig) / T * 100


def percent_stats(pct):
    return np.mean(pct, axis=0), np.std(pct, axis=0)


def straddles_threshold(eig, tol):
    """(B, layers, H, T): True where [eig (1 - tol), eig (1 + tol)] contains a
    threshold, i.e. where bin membership is not decided by the tolerance."""
    lo, hi = eig * (1 - tol), eig * (1 + tol)
    return np.any((lo[..., None] <= THRESHOLDS) & (THRESHOLDS <= hi[..., None]) & (tol[..., None] > 0), axis=-1)
