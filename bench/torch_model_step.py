"""PyTorch timing of one full training step per model, for comparison with
bench/model_step.c (same models, shapes, batch layout and optimizer).

One step = forward + cross-entropy at the labelled positions + backward +
clip_grad_norm_(1.0) + AdamW, float32, eager PyTorch (1.13), dropout 0.

The models follow the reference study's PyTorch modules (nn.Linear,
nn.LayerNorm, nn.Embedding, the same block structure and parameter
initialisation) but are written for speed where the reference's own path
does not run on a CPU or does not fit:

  sm-attention    the reference's naive path: einsum scores, additive -10000
                  causal mask, softmax, einsum with v (torch 1.13 has no
                  scaled_dot_product_attention; flash-attn is GPU-only).
  lin-attention   chunked form (--attn chunked, default), parallel over
                  chunks: tril(Q_c K_c^T) V_c within a chunk plus Q_c S_prev
                  with S_prev the exclusive cumsum of the per-chunk K_c^T V_c.
                  The reference's cumsum of outer products (--attn cumsum)
                  materialises B*L*dk*dv floats per layer (paper shape:
                  2.1 GB per layer, several copies through autograd), so it is
                  run only at the small shape.
  norm-attention  the same chunked core without the denominator.
  mamba2          a pure-PyTorch chunked SSD (the "minimal SSD" algorithm of
                  the Mamba-2 paper: segment-sum decay masks, per-chunk
                  states, one inter-chunk recurrence as an einsum), since the
                  reference's Triton kernel does not exist on a CPU.
  causal conv     the reference's grouped nn.Conv1d(padding K-1), first L
                  outputs (--conv nn, default); --conv shift sums K shifted
                  products instead (measured no faster over a whole step).

Usage:
  torch_model_step.py                      every model x shape x {1,2} threads,
                                           each in a fresh subprocess (for RSS)
  torch_model_step.py --one MODEL SHAPE T  one configuration in this process
  options: --models a,b  --shapes small,paper  --threads 1,2
           --attn chunked|cumsum  --conv shift|nn
Output: `torchstep <model> <shape> t<T> <ms> ms rss <MB> MB` per configuration.
"""
import argparse
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MODELS = ["sm-attention", "lin-attention", "norm-attention", "mamba2"]
SHAPES = {
    # B, L, d, state_dim, labelled positions per sequence
    "small": dict(B=64, L=64, d=64, N=64, K=4),
    "paper": dict(B=64, L=512, d=128, N=128, K=64),
}
VOCAB, HEADS, LAYERS, CONV_K = 8192, 1, 2, 4
LIN_CHUNK = 64   # chunk of the chunked linear attention (one chunk when L <= 64)
SSD_CHUNK = 64   # chunk of the chunked SSD
LR = 1e-3


def reps_for(model, shape, attn):
    """(warm-up steps, timed steps): fewer for the slow configurations."""
    if attn == "cumsum" and model in ("lin-attention", "norm-attention"):
        return 1, 5
    if shape == "small":
        return 3, 20
    return 1, 5


# glibc malloc serves large blocks (above its dynamic mmap threshold, at
# most 32 MB) with mmap and unmaps them when freed, and trims the heap top,
# so every eager step page-faults its activations in again (paper shape:
# 1.5-2x slower, mostly system time).  Never mmap, never trim: freed memory
# stays in the process as with jemalloc or tcmalloc.  --glibc-default
# measures without it.
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


# ---------------------------------------------------------------- pieces

class CausalConv(nn.Module):
    """Depthwise causal conv along time on (B, L, C), then SiLU.  Parameters
    as nn.Conv1d(C, C, K, groups=C, padding=K-1) (weight (C, 1, K), bias)."""

    def __init__(self, C, K, mode):
        super().__init__()
        self.conv = nn.Conv1d(C, C, K, groups=C, padding=K - 1, bias=True)
        self.K, self.mode = K, mode

    def forward(self, u):
        L = u.shape[1]
        if self.mode == "nn":      # the reference's module
            y = self.conv(u.transpose(1, 2))[..., :L].transpose(1, 2)
        else:                      # tap j looks K-1-j steps back
            w = self.conv.weight[:, 0, :]                    # (C, K)
            y = u * w[:, self.K - 1] + self.conv.bias
            for j in range(self.K - 1):
                s = self.K - 1 - j
                if s < L:
                    y = y + F.pad(u[:, :L - s], (0, 0, s, 0)) * w[:, j]
        return F.silu(y)


def elu1(x):
    return F.elu(x) + 1.0


def chunked_linear_attention(q, k, v, normalize, chunk):
    """Causal linear attention, q, k (B, H, L, dk), v (B, H, L, dv).
    num_t = sum_{s<=t} (q_t.k_s) v_s; with normalize, divided by q_t.z_t,
    z_t = sum_{s<=t} k_s.  All chunks in parallel (exclusive cumsum of the
    per-chunk states)."""
    B, H, L, dk = q.shape
    dv = v.shape[-1]
    C = L if L <= chunk else chunk
    assert L % C == 0
    n = L // C
    qc, kc, vc = (t.reshape(B, H, n, C, t.shape[-1]) for t in (q, k, v))
    A = torch.matmul(qc, kc.transpose(-1, -2)) * torch.ones(C, C, device=q.device).tril()
    num = torch.matmul(A, vc)
    if n > 1:
        kv = torch.matmul(kc.transpose(-1, -2), vc)                # (B, H, n, dk, dv)
        S = torch.cumsum(kv, dim=2) - kv                            # state before each chunk
        num = num + torch.matmul(qc, S)
    if not normalize:
        return num.reshape(B, H, L, dv)
    den = A.sum(-1, keepdim=True)
    if n > 1:
        ks = kc.sum(3, keepdim=True)                                # (B, H, n, 1, dk)
        z = torch.cumsum(ks, dim=2) - ks
        den = den + torch.matmul(qc, z.transpose(-1, -2))
    return (num / den).reshape(B, H, L, dv)


def cumsum_linear_attention(q, k, v, normalize):
    """The reference's form: cumsum over time of the outer products k_s v_s^T
    (B*H*L*dk*dv floats)."""
    S = torch.cumsum(torch.einsum("bhld,bhle->bhlde", k, v), dim=2)
    num = torch.einsum("bhld,bhlde->bhle", q, S)
    if not normalize:
        return num
    z = torch.cumsum(k, dim=2)
    return num / torch.einsum("bhld,bhld->bhl", q, z).unsqueeze(-1)


# ---------------------------------------------------------------- transformer

class Attention(nn.Module):
    def __init__(self, kind, d, N, H, L, conv, attn_form):
        super().__init__()
        self.kind, self.d, self.N, self.H, self.attn_form = kind, d, N, H, attn_form
        if kind == "norm-attention":
            self.Wvqkn = nn.Linear(d, d + 2 * N + H)
            self.offset = nn.Parameter(torch.linspace(4.0, 9.0, H))
        else:
            self.Wqkv = nn.Linear(d, 2 * N + d)
        self.conv = CausalConv(d + 2 * N, CONV_K, conv) if kind == "norm-attention" else None
        self.out_proj = nn.Linear(d, d)
        if kind == "sm-attention":
            self.register_buffer("mask", torch.full((L, L), -10000.0).triu(1))

    def heads(self, t):
        B, L, c = t.shape
        return t.reshape(B, L, self.H, c // self.H).transpose(1, 2)

    def forward(self, x):
        B, L, _ = x.shape
        d, N, H = self.d, self.N, self.H
        if self.kind == "norm-attention":
            p = self.Wvqkn(x)
            vqk, nrm = p[..., :d + 2 * N], p[..., d + 2 * N:]
            vqk = self.conv(vqk)
            v, q, k = vqk[..., :d], vqk[..., d:d + N], vqk[..., d + N:]
            q, k = elu1(q), elu1(k) * (1.0 / math.sqrt(N // H))
            q, k, v = self.heads(q), self.heads(k), self.heads(v)
            if self.attn_form == "cumsum":
                num = cumsum_linear_attention(q, k, v, False)
            else:
                num = chunked_linear_attention(q, k, v, False, LIN_CHUNK)
            g = torch.exp(-F.softplus(nrm + self.offset))          # (B, L, H)
            y = num * g.transpose(1, 2).unsqueeze(-1)
        else:
            qkv = self.Wqkv(x)
            q, k, v = self.heads(qkv[..., :N]), self.heads(qkv[..., N:2 * N]), self.heads(qkv[..., 2 * N:])
            if self.kind == "sm-attention":
                s = torch.einsum("bhtd,bhsd->bhts", q, k) * (1.0 / math.sqrt(N // H)) + self.mask[:L, :L]
                y = torch.einsum("bhts,bhsd->bhtd", torch.softmax(s, dim=-1), v)
            elif self.attn_form == "cumsum":
                y = cumsum_linear_attention(elu1(q), elu1(k), v, True)
            else:
                y = chunked_linear_attention(elu1(q), elu1(k), v, True, LIN_CHUNK)
        return self.out_proj(y.transpose(1, 2).reshape(B, L, d))


class TransformerBlock(nn.Module):
    def __init__(self, *a):
        super().__init__()
        self.attention = Attention(*a)
        self.norm = nn.LayerNorm(a[1])     # used twice, mixer none: no second residual

    def forward(self, x):
        return self.norm(x + self.attention(self.norm(x)))


class Transformer(nn.Module):
    def __init__(self, kind, d, N, L, conv, attn_form):
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB, d)
        self.position_embeddings = nn.Embedding(L, d) if kind != "norm-attention" else None
        self.layers = nn.ModuleList([TransformerBlock(kind, d, N, HEADS, L, conv, attn_form)
                                     for _ in range(LAYERS)])
        self.norm = nn.LayerNorm(d)
        self.decoder = nn.Linear(d, VOCAB, bias=False)

    def forward(self, tokens, rows):
        B, L = tokens.shape
        x = self.word_embeddings(tokens)
        if self.position_embeddings is not None:
            x = x + self.position_embeddings(torch.arange(L))
        for layer in self.layers:
            x = layer(x)
        x = x.reshape(B * L, -1)[rows]         # logits only at the labelled positions
        return self.decoder(self.norm(x))


# ---------------------------------------------------------------- Mamba-2

def segsum(a):
    """a (..., T) -> (..., T, T): out[t, s] = sum_{s < i <= t} a_i for s <= t,
    -inf above the diagonal (masked cumulative sum, stable)."""
    T = a.shape[-1]
    x = a.unsqueeze(-1).expand(*a.shape, T)
    low = torch.ones(T, T, dtype=torch.bool).tril(-1)
    x = x.masked_fill(~low, 0.0)
    s = torch.cumsum(x, dim=-2)
    return s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(0), -math.inf)


def ssd_chunked(X, A, Bm, Cm, chunk):
    """Chunked SSD, one group.  X (B, L, H, P) (already times Delta), A (B, L, H)
    log decays, Bm, Cm (B, L, N).  Returns Y (B, L, H, P):
    S_t = exp(A_t) S_{t-1} + X_t B_t^T,  Y_t = S_t C_t."""
    Bsz, L, H, P = X.shape
    N = Bm.shape[-1]
    Q = min(chunk, L)
    c = L // Q
    X = X.reshape(Bsz, c, Q, H, P).permute(0, 3, 1, 2, 4)          # (B, H, c, Q, P)
    A = A.reshape(Bsz, c, Q, H).permute(0, 3, 1, 2)                 # (B, H, c, Q)
    Bc = Bm.reshape(Bsz, c, Q, N)
    Cc = Cm.reshape(Bsz, c, Q, N)
    A_cs = torch.cumsum(A, dim=-1)
    # within chunks: (exp(segsum) o C B^T) X
    Lmask = torch.exp(segsum(A))                                    # (B, H, c, Q, Q)
    CB = torch.matmul(Cc, Bc.transpose(-1, -2)).unsqueeze(1)        # (B, 1, c, Q, Q)
    Y = torch.matmul(CB * Lmask, X)
    # state at the end of each chunk (from that chunk's inputs only)
    decay_states = torch.exp(A_cs[..., -1:] - A_cs)                 # (B, H, c, Q)
    states = torch.matmul((X * decay_states.unsqueeze(-1)).transpose(-1, -2), Bc.unsqueeze(1))  # (B,H,c,P,N)
    # inter-chunk recurrence: the state entering each chunk
    states = torch.cat([torch.zeros_like(states[:, :, :1]), states], dim=2)
    decay_chunk = torch.exp(segsum(F.pad(A_cs[..., -1], (1, 0))))  # (B, H, c+1, c+1)
    states = torch.einsum("bhzc,bhcpn->bhzpn", decay_chunk, states)[:, :, :-1]
    # contribution of the entering state
    Y = Y + torch.matmul(Cc.unsqueeze(1), states.transpose(-1, -2)) * torch.exp(A_cs).unsqueeze(-1)
    return Y.permute(0, 2, 3, 1, 4).reshape(Bsz, L, H, P)


class SSD(nn.Module):
    def __init__(self, d, N, H, conv):
        super().__init__()
        self.d, self.N, self.H = d, N, H
        self.in_proj = nn.Linear(d, d + 2 * N + H, bias=False)
        dt = torch.exp(torch.rand(H) * (math.log(1e-1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.empty(H).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(H))
        self.conv = CausalConv(d + 2 * N, CONV_K, conv)
        self.out_proj = nn.Linear(d, d, bias=False)

    def forward(self, u):
        Bsz, L, _ = u.shape
        d, N, H = self.d, self.N, self.H
        p = self.in_proj(u)
        xBC, dt = p[..., :d + 2 * N], p[..., d + 2 * N:]
        delta = F.softplus(dt + self.dt_bias)                       # (B, L, H)
        xBC = self.conv(xBC)
        x = xBC[..., :d].reshape(Bsz, L, H, d // H)
        Bm, Cm = xBC[..., d:d + N], xBC[..., d + N:]
        A = -torch.exp(self.A_log)
        y = ssd_chunked(x * delta.unsqueeze(-1), delta * A, Bm, Cm, SSD_CHUNK)
        y = y + x * self.D.unsqueeze(-1)
        return self.out_proj(y.reshape(Bsz, L, d))


class MambaBlock(nn.Module):
    def __init__(self, d, N, conv):
        super().__init__()
        self.ssd = SSD(d, N, HEADS, conv)
        self.glu = nn.Linear(d, 2 * d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):                      # prenorm, dropout 0
        h = F.gelu(self.ssd(self.norm(x)))
        a, b = self.glu(h).chunk(2, dim=-1)
        return x + a * torch.sigmoid(b)


class Mamba(nn.Module):
    def __init__(self, d, N, conv):
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB, d)
        self.layers = nn.ModuleList([MambaBlock(d, N, conv) for _ in range(LAYERS)])
        self.decoder = nn.Linear(d, VOCAB, bias=True)   # no final norm

    def forward(self, tokens, rows):
        B, L = tokens.shape
        x = self.word_embeddings(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.decoder(x.reshape(B * L, -1)[rows])


# ---------------------------------------------------------------- driver

def make_batch(s, gen):
    """Random tokens; K distinct labelled positions per sequence (flat row
    indices b*L + t, sorted); random labels."""
    B, L, K = s["B"], s["L"], s["K"]
    tokens = torch.randint(0, VOCAB, (B, L), generator=gen)
    rows = torch.cat([torch.randperm(L, generator=gen)[:K].sort().values + b * L for b in range(B)])
    labels = torch.randint(0, VOCAB, (B * K,), generator=gen)
    return tokens, rows, labels


def run_one(model_name, shape, threads, attn, conv):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    s = SHAPES[shape]
    if model_name == "mamba2":
        model = Mamba(s["d"], s["N"], conv)
    else:
        model = Transformer(model_name, s["d"], s["N"], s["L"], conv, attn)
    tokens, rows, labels = make_batch(s, torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.1, foreach=True)
    params = list(model.parameters())

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(tokens, rows), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss

    warm, reps = reps_for(model_name, shape, attn)
    for _ in range(warm):
        step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    if not math.isfinite(loss.item()):
        print(f"# warning: {model_name} {shape}: loss {loss.item()}", file=sys.stderr)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    tag = "" if (attn == "chunked" or model_name in ("sm-attention", "mamba2")) else f" ({attn})"
    tag += "" if (conv == "nn" or model_name not in ("norm-attention", "mamba2")) else f" (conv {conv})"
    print(f"torchstep {model_name:<14} {shape:<5} t{threads} {1e3 * statistics.median(times):9.2f} ms "
          f"rss {rss:7.1f} MB{tag}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--one", nargs=3, metavar=("MODEL", "SHAPE", "THREADS"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--shapes", default="small,paper")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--attn", default="chunked", choices=["chunked", "cumsum"])
    ap.add_argument("--conv", default="nn", choices=["shift", "nn"])
    ap.add_argument("--glibc-default", action="store_true", help="do not set the MALLOC_* variables")
    a = ap.parse_args()
    if a.one:
        run_one(a.one[0], a.one[1], int(a.one[2]), a.attn, a.conv)
        return
    env = dict(os.environ)
    if not a.glibc_default:
        env.update(MALLOC_ENV)
    print(f"# torch {torch.__version__} training steps (float32, dropout 0, AdamW + clip 1.0); "
          f"linear/norm attention {a.attn}, causal conv {a.conv}, "
          f"malloc {'glibc default' if a.glibc_default else 'no mmap, no trim'}", flush=True)
    for shape in a.shapes.split(","):
        for model in a.models.split(","):
            for t in a.threads.split(","):
                if a.attn == "cumsum" and shape == "paper" and model in ("lin-attention", "norm-attention"):
                    s = SHAPES[shape]
                    gb = s["B"] * s["L"] * s["N"] * (s["d"] + 1) * 4 / 2**30
                    print(f"torchstep {model:<14} {shape:<5} t{t} skipped (cumsum: {gb:.1f} GiB per "
                          f"B*L*dk*dv tensor, several per layer)", flush=True)
                    continue
                env["OMP_NUM_THREADS"] = t
                r = subprocess.run([sys.executable, __file__, "--one", model, shape, t,
                                    "--attn", a.attn, "--conv", a.conv], env=env)
                if r.returncode != 0:
                    print(f"torchstep {model:<14} {shape:<5} t{t} failed (exit {r.returncode})", flush=True)


if __name__ == "__main__":
    main()
