"""Independent PyTorch reference of the seqeig models (the numerical oracle).

Plain, deliberately unoptimised code: explicit causal masks, explicit
per-step recurrences, explicit formulas for every activation.  It runs in
whatever floating dtype the parameters have (float64 in compare.py; float32
in selftest.py, where it stands in for the C model).

Everything is functional: a model is a `Config` plus a dict
{state_dict name: tensor}.  The names and shapes are those of the reference
study's PyTorch modules (docs/parameters.md), listed by `param_shapes`.

What is implemented here, and where it is described:
  initialisation (init_params)            docs/parameters.md, Initialisation rules
  transformer backbone (transformer_forward), softmax, linear and norm attention
                                          docs/parameters.md, Transformer forward pass
  Mamba-2 incl. pseudo-LTI (mamba_forward, ssd)
                                          docs/parameters.md, Mamba-2 forward pass
  eigenvalues, method "dsf" (returned by forward as log-eigenvalues)
                                          docs/eigenvalues.md, sections 1-2

Eigenvalues.  Every layer's eigenvalue is lambda = exp(x - y) for two
log-domain quantities x, y, computed as the exponential of a log-difference
(docs/eigenvalues.md, section 2):

  softmax   x = lse_{t-1}, y = lse_t        (lse_t = log eta_t)
  linear    x = log eta_{t-1}, y = log eta_t
  norm      x = f(a_{t-1}), y = f(a_t)       (a = n + o_h)
  Mamba-2   x = Delta_t a_h, y = 0
  pseudoLTI x = -softplus(A_h), y = 0

`forward` returns log_eig = x - y and scale = 1 + |x| + |y| (both float64,
(B, layers, H, T)); eig = exp(log_eig).  The scale is what compare.py uses to
bound the error of an eigenvalue (see the comment there).  The eigenvalue
path always upcasts the layer's activations to float64 first, like the C
code (float64 where eigenvalues are computed, docs/eigenvalues.md, section 2).
"""

import math

import torch

KINDS = ("sm-attention", "lin-attention", "norm-attention", "mamba2")
ATTENTION_KINDS = ("sm-attention", "lin-attention", "norm-attention")
NORM_FNS = ("exp", "elu", "softplus", "sigmoid")
APPROX_FNS = ("none", "elu")
LN_EPS = 1e-5


# ---------------------------------------------------------------------------
# Configuration (the /config attributes of an oracle file, docs/oracle.md)
# ---------------------------------------------------------------------------

class ConfigError(ValueError):
    """A configuration that is missing a key or is inconsistent."""


# Keys every model needs, then keys needed per family / kind.
COMMON_KEYS = ("model", "hidden_dim", "state_dim", "num_heads", "num_layers",
               "vocab_size", "output_dim", "head", "dropout")
TRANSFORMER_KEYS = ("mixer_dim", "max_pos_embed", "mixer", "use_gate", "dim_conv")
NORM_KEYS = ("norm_fn", "approx_fn", "scale_B", "offset")
MAMBA_KEYS = ("conv_dim", "glu", "prenorm", "pseudoLTI")

STRING_KEYS = ("model", "head", "mixer", "norm_fn", "approx_fn")
FLOAT_KEYS = ("dropout",)
BOOL_KEYS = ("use_gate", "scale_B", "offset", "glu", "prenorm", "pseudoLTI")


class Config:
    """Resolved model configuration.  Attribute names are the /config keys."""

    def __init__(self, **kw):
        # Defaults for keys a kind does not use, so code can read them freely.
        self.mixer_dim = 0
        self.max_pos_embed = 0
        self.mixer = "none"
        self.use_gate = False
        self.dim_conv = 0
        self.norm_fn = "softplus"
        self.approx_fn = "none"
        self.scale_B = False
        self.offset = False
        self.conv_dim = 0
        self.glu = False
        self.prenorm = True
        self.pseudoLTI = False
        self.input_dim = 0          # 0: token inputs; > 0: float features through Linear(input_dim, d)
        for k, v in kw.items():
            setattr(self, k, v)
        self.validate()

    @property
    def is_mamba(self):
        return self.model == "mamba2"

    @staticmethod
    def required_keys(model):
        keys = list(COMMON_KEYS)
        if model in ATTENTION_KINDS:
            keys += TRANSFORMER_KEYS
            if model == "norm-attention":
                keys += NORM_KEYS
        elif model == "mamba2":
            keys += MAMBA_KEYS
        return keys

    @classmethod
    def from_attrs(cls, attrs):
        """Build from a mapping of attribute values (h5py attrs or a dict).

        Only the keys the model kind uses are required; other keys are
        ignored (their values cannot change the computation)."""
        def as_str(v):
            if isinstance(v, bytes):
                return v.decode("utf-8")
            if hasattr(v, "item") and not isinstance(v, str):
                v = v.item()
                if isinstance(v, bytes):
                    return v.decode("utf-8")
            return str(v)

        if "model" not in attrs:
            raise ConfigError("missing key 'model'")
        model = as_str(attrs["model"])
        if model not in KINDS:
            raise ConfigError(f"model = '{model}' is not one of {', '.join(KINDS)}")
        kw = {}
        for key in cls.required_keys(model):
            if key not in attrs:
                raise ConfigError(f"missing key '{key}' (needed by model '{model}')")
            v = attrs[key]
            try:
                if key in STRING_KEYS:
                    kw[key] = as_str(v)
                elif key in FLOAT_KEYS:
                    kw[key] = float(v)
                elif key in BOOL_KEYS:
                    iv = int(v)
                    if iv not in (0, 1):
                        raise ConfigError(f"key '{key}' = {iv}, expected 0 or 1")
                    kw[key] = bool(iv)
                else:
                    fv = float(v)
                    if fv != int(fv):
                        raise ConfigError(f"key '{key}' = {fv} is not an integer")
                    kw[key] = int(fv)
            except (TypeError, ValueError) as e:
                if isinstance(e, ConfigError):
                    raise
                raise ConfigError(f"key '{key}' has unusable value {v!r}") from None
        if "input_dim" in attrs:    # optional: absent means token inputs
            try:
                kw["input_dim"] = int(attrs["input_dim"])
            except (TypeError, ValueError):
                raise ConfigError(f"key 'input_dim' has unusable value {attrs['input_dim']!r}") from None
        return cls(**kw)

    def validate(self):
        def need(cond, msg):
            if not cond:
                raise ConfigError(msg)

        need(self.model in KINDS, f"unknown model '{self.model}'")
        need(self.head in ("lm", "classifier"), f"head = '{self.head}' (expected lm | classifier)")
        for k in ("hidden_dim", "state_dim", "num_heads", "num_layers", "vocab_size", "output_dim"):
            need(getattr(self, k) > 0, f"{k} = {getattr(self, k)} must be > 0")
        need(self.input_dim >= 0, f"input_dim = {self.input_dim} must be >= 0")
        need(self.input_dim == 0 or self.is_mamba or self.max_pos_embed == 0,
             "a Linear input layer (input_dim > 0) has no positions: max_pos_embed must be 0")
        d, H = self.hidden_dim, self.num_heads
        need(d % H == 0, f"hidden_dim {d} not divisible by num_heads {H}")
        need(0.0 <= self.dropout < 1.0, f"dropout = {self.dropout} out of [0, 1)")
        if self.is_mamba:
            need(self.conv_dim >= 0, "conv_dim must be >= 0")
            if self.pseudoLTI:
                need(self.state_dim % H == 0,
                     f"pseudoLTI needs state_dim {self.state_dim} divisible by num_heads {H}")
        else:
            need(self.state_dim % H == 0, f"state_dim {self.state_dim} not divisible by num_heads {H}")
            need(self.mixer in ("none", "mlp"), f"mixer = '{self.mixer}' (expected none | mlp)")
            need(self.mixer_dim >= 0 and self.max_pos_embed >= 0 and self.dim_conv >= 0,
                 "mixer_dim, max_pos_embed, dim_conv must be >= 0")
            need(self.mixer != "mlp" or self.mixer_dim > 0, "mixer 'mlp' needs mixer_dim > 0")
            if self.head == "classifier" and self.mixer_dim == 0:
                need(self.output_dim == d,
                     "classifier without MLP (mixer_dim 0) outputs the pooled features: "
                     "output_dim must equal hidden_dim")
            if self.model == "norm-attention":
                need(self.norm_fn in NORM_FNS, f"norm_fn = '{self.norm_fn}'")
                need(self.approx_fn in APPROX_FNS, f"approx_fn = '{self.approx_fn}'")


# ---------------------------------------------------------------------------
# Parameter names and shapes (the reference state_dict, docs/parameters.md)
# ---------------------------------------------------------------------------

def param_shapes(cfg):
    """Ordered dict {name: shape} of every trainable parameter."""
    d, N, H, V = cfg.hidden_dim, cfg.state_dim, cfg.num_heads, cfg.vocab_size
    out = {}
    if cfg.input_dim > 0:
        out["encoder.weight"] = (d, cfg.input_dim)
        out["encoder.bias"] = (d,)
    else:
        out["encoder.word_embeddings.weight"] = (V, d)
    if cfg.is_mamba:
        n_dt = 1 if cfg.pseudoLTI else H
        for i in range(cfg.num_layers):
            p = f"blocks.{i}."
            out[p + "norm.weight"] = (d,)
            out[p + "norm.bias"] = (d,)
            out[p + "mamba.in_proj.weight"] = (d + 2 * N + n_dt, d)
            out[p + "mamba.dt_bias"] = (H,)
            if cfg.pseudoLTI:
                out[p + "mamba.A"] = (H,)
            else:
                out[p + "mamba.A_log"] = (H,)
            out[p + "mamba.D"] = (H,)
            if cfg.conv_dim > 0:
                out[p + "mamba.conv1d.weight"] = (d + 2 * N, 1, cfg.conv_dim)
                out[p + "mamba.conv1d.bias"] = (d + 2 * N,)
            out[p + "mamba.out_proj.weight"] = (d, d)
            if cfg.glu:
                out[p + "glu.linear.weight"] = (2 * d, d)
                out[p + "glu.linear.bias"] = (2 * d,)
        out["decoder.weight"] = (cfg.output_dim, d)
        out["decoder.bias"] = (cfg.output_dim,)
        return out

    dqk, m = cfg.state_dim, cfg.mixer_dim
    if cfg.max_pos_embed > 0:
        out["encoder.position_embeddings.weight"] = (cfg.max_pos_embed, d)
    for i in range(cfg.num_layers):
        p = f"layers.{i}."
        if cfg.model == "norm-attention":
            out[p + "attention.Wvqkn.weight"] = (d + 2 * dqk + H, d)
            out[p + "attention.Wvqkn.bias"] = (d + 2 * dqk + H,)
        else:
            out[p + "attention.Wqkv.weight"] = (2 * dqk + d, d)
            out[p + "attention.Wqkv.bias"] = (2 * dqk + d,)
        if cfg.dim_conv > 0:   # conv over q,k,v (v,q,k for norm attention): C = d + 2 d_qk
            out[p + "attention.conv1d.weight"] = (d + 2 * dqk, 1, cfg.dim_conv)
            out[p + "attention.conv1d.bias"] = (d + 2 * dqk,)
        if cfg.model == "norm-attention" and cfg.offset:
            out[p + "attention.inner_attn.offset"] = (H,)
        out[p + "attention.out_proj.weight"] = (d, d)
        out[p + "attention.out_proj.bias"] = (d,)
        if cfg.use_gate:
            out[p + "Wz.weight"] = (d, d)
            out[p + "Wz.bias"] = (d,)
        if cfg.mixer == "mlp":
            out[p + "mixer.encoder.weight"] = (m, d)
            out[p + "mixer.encoder.bias"] = (m,)
            out[p + "mixer.decoder.weight"] = (d, m)
            out[p + "mixer.decoder.bias"] = (d,)
        out[p + "norm.weight"] = (d,)
        out[p + "norm.bias"] = (d,)
    out["norm.weight"] = (d,)
    out["norm.bias"] = (d,)
    if cfg.head == "lm":
        out["decoder.weight"] = (cfg.output_dim, d)
    elif m > 0:
        out["classifier.encoder.weight"] = (m, d)
        out["classifier.encoder.bias"] = (m,)
        out["classifier.decoder.weight"] = (cfg.output_dim, m)
        out["classifier.decoder.bias"] = (cfg.output_dim,)
    return out


def optional_buffers(cfg):
    """Non-trainable state_dict entries a writer may include: {name: (shape, value)}.

    The reference SSD_LTI registers a persistent buffer `beta` of ones (the
    dt fed to the scan kernel).  It is not a parameter and has no gradient."""
    if cfg.is_mamba and cfg.pseudoLTI:
        return {f"blocks.{i}.mamba.beta": ((cfg.num_heads,), 1.0) for i in range(cfg.num_layers)}
    return {}


# ---------------------------------------------------------------------------
# Initialisation (docs/parameters.md, Initialisation rules) - used by selftest.py
# ---------------------------------------------------------------------------

def _uniform(shape, lo, hi, gen):
    return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)


def init_params(cfg, gen, dtype=torch.float32):
    """Random parameters as docs/parameters.md prescribes, returned in `dtype`."""
    shapes = param_shapes(cfg)
    d, H = cfg.hidden_dim, cfg.num_heads
    P = {}
    for name, shape in shapes.items():
        leaf = name.rsplit(".", 1)[-1]
        if name.startswith("encoder.") and "embeddings" in name:
            v = torch.randn(shape, generator=gen, dtype=torch.float64)      # Embedding N(0,1)
        elif name.endswith("norm.weight"):
            v = torch.ones(shape, dtype=torch.float64)                     # LayerNorm weight 1
        elif name.endswith("norm.bias"):
            v = torch.zeros(shape, dtype=torch.float64)                    # LayerNorm bias 0
        elif ".conv1d." in name:
            K = shapes[name.rsplit(".", 1)[0] + ".weight"][2]               # depthwise: fan_in = K
            v = _uniform(shape, -1 / math.sqrt(K), 1 / math.sqrt(K), gen)
        elif name.endswith("Wz.weight"):                                   # xavier_uniform, gain 0.1
            bound = 0.1 * math.sqrt(6.0 / (d + d))
            v = _uniform(shape, -bound, bound, gen)
        elif name.endswith("Wz.bias"):
            v = torch.ones(shape, dtype=torch.float64)                     # constant 1.0
        elif name.endswith("inner_attn.offset"):                           # "exp" init linspace(4, 9, H)
            v = torch.linspace(4.0, 9.0, H, dtype=torch.float64) if H > 1 else torch.tensor([4.0], dtype=torch.float64)
        elif name.endswith("mamba.A_log"):                                 # A ~ U(1, 16), A_log = log A
            v = torch.log(_uniform(shape, 1.0, 16.0, gen))
        elif name.endswith("mamba.A"):                                     # pseudo-LTI: A ~ U(-8, -2)
            v = _uniform(shape, -8.0, -2.0, gen)
        elif name.endswith("mamba.dt_bias"):                               # inverse softplus of dt
            dt = torch.exp(_uniform(shape, math.log(1e-3), math.log(1e-1), gen)).clamp(min=1e-4)
            v = dt + torch.log(-torch.expm1(-dt))
        elif name.endswith("mamba.D"):
            v = torch.ones(shape, dtype=torch.float64)
        elif leaf in ("weight", "bias"):                                   # nn.Linear default
            fan_in = shapes[name.rsplit(".", 1)[0] + ".weight"][1]
            v = _uniform(shape, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), gen)
        else:
            raise AssertionError(f"no initialiser for {name}")
        assert tuple(v.shape) == tuple(shape), name
        P[name] = v.to(dtype)
    return P


# ---------------------------------------------------------------------------
# Elementary functions, written out (no torch.nn modules)
# ---------------------------------------------------------------------------

def linear(x, w, b=None):
    """nn.Linear: x W^T + b, W of shape (out, in)."""
    y = torch.matmul(x, w.transpose(0, 1))
    return y if b is None else y + b


def layer_norm(x, w, b, eps=LN_EPS):
    """LayerNorm over the last axis, biased variance, eps 1e-5 (docs/parameters.md)."""
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu(x):
    """Exact (erf) GELU (docs/parameters.md)."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def sigmoid(x):
    return torch.sigmoid(x)


def silu(x):
    return x * torch.sigmoid(x)


def relu(x):
    return torch.clamp(x, min=0.0)


def elu(x):
    """elu(x) = x for x > 0, exp(x) - 1 otherwise (alpha 1).  The clamp keeps
    the unused branch finite so its zero gradient is not inf * 0."""
    return torch.where(x > 0, x, torch.expm1(torch.clamp(x, max=0.0)))


def elu_plus_one(x):
    return elu(x) + 1.0


def softplus(x):
    """log(1 + e^x), evaluated stably as logaddexp(x, 0)."""
    return torch.logaddexp(x, torch.zeros_like(x))


NORM_FN = {"exp": torch.exp, "elu": elu, "softplus": softplus, "sigmoid": sigmoid}


def dropout(x, p, training=False, gen=None):
    """Inverted dropout.  Oracle configs always have p = 0 (and we run in eval
    mode), so this is the identity there; kept for completeness."""
    if not training or p == 0.0:
        return x
    keep = (torch.rand(x.shape, generator=gen, dtype=torch.float64) >= p).to(x.dtype)
    return x * keep / (1.0 - p)


def causal_depthwise_conv(u, w, b):
    """nn.Conv1d(C, C, K, groups=C, padding=K-1) along time, first L outputs.

    u: (B, L, C); w: (C, 1, K); b: (C).  With padding K-1 on both sides and
    the first L outputs kept, output t is  b + sum_j w[:, 0, j] u[t - (K-1) + j]
    (u = 0 before the sequence start): tap K-1 sees the current step."""
    Bsz, L, C = u.shape
    K = w.shape[2]
    y = b.expand(Bsz, L, C)
    for j in range(K):
        shift = K - 1 - j                        # how many steps back this tap looks
        if shift >= L:
            continue
        if shift == 0:
            past = u
        else:
            past = torch.cat([torch.zeros(Bsz, shift, C, dtype=u.dtype), u[:, :L - shift, :]], dim=1)
        y = y + w[:, 0, j] * past
    return y


def causal_mask(L):
    """Boolean (L, L), True where s > t (the future, excluded)."""
    t = torch.arange(L).unsqueeze(1)
    s = torch.arange(L).unsqueeze(0)
    return s > t


def log_eig(x, y):
    """Eigenvalue exp(x - y) (docs/eigenvalues.md) as (log_eig, scale), float64."""
    return x - y, 1.0 + x.abs() + y.abs()


# ---------------------------------------------------------------------------
# Attention layers (docs/parameters.md, Transformer forward pass).
# Input u = LN(x): (B, L, d).
# Each returns (output (B, L, d), log_eig (B, H, L-1), scale (B, H, L-1)).
# ---------------------------------------------------------------------------

def _split_heads(t, H):
    Bsz, L, C = t.shape
    return t.reshape(Bsz, L, H, C // H)           # channel block h*dh .. (h+1)*dh - 1 is head h


def softmax_attention(cfg, P, pre, u):
    """Softmax attention; eigenvalue eta_{t-1}/eta_t = exp(lse_{t-1} - lse_t)
    (docs/eigenvalues.md, section 1)."""
    Bsz, L, d = u.shape
    H, dqk = cfg.num_heads, cfg.state_dim
    dh = dqk // H
    qkv = linear(u, P[pre + "Wqkv.weight"], P[pre + "Wqkv.bias"])             # [q | k | v]
    if cfg.dim_conv > 0:
        qkv = silu(causal_depthwise_conv(qkv, P[pre + "conv1d.weight"], P[pre + "conv1d.bias"]))
    q = _split_heads(qkv[..., :dqk], H)                                        # (B, L, H, dh)
    k = _split_heads(qkv[..., dqk:2 * dqk], H)
    v = _split_heads(qkv[..., 2 * dqk:], H)                                    # (B, L, H, dv)
    future = causal_mask(L)

    scores = torch.einsum("bthe,bshe->bhts", q, k) / math.sqrt(dh)
    scores = scores.masked_fill(future, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1, keepdim=True)
    A = torch.exp(scores - lse)                                                # causal softmax
    y = torch.einsum("bhts,bshe->bthe", A, v).reshape(Bsz, L, d)
    out = linear(y, P[pre + "out_proj.weight"], P[pre + "out_proj.bias"])

    with torch.no_grad():   # dsf: from the q, k the layer used (after LN and conv), float64
        s64 = torch.einsum("bthe,bshe->bhts", q.double(), k.double()) / math.sqrt(dh)
        lse64 = torch.logsumexp(s64.masked_fill(future, float("-inf")), dim=-1)   # (B, H, L)
        le, sc = log_eig(lse64[..., :-1], lse64[..., 1:])
    return out, le, sc


def linear_attention(cfg, P, pre, u):
    """Linear attention, with the explicit masked score matrix phi(q_t).phi(k_s), s <= t.
    Eigenvalue eta_{t-1}/eta_t, eta_t = phi(q_t).sum_{s<=t} phi(k_s) (docs/eigenvalues.md)."""
    Bsz, L, d = u.shape
    H, dqk = cfg.num_heads, cfg.state_dim
    qkv = linear(u, P[pre + "Wqkv.weight"], P[pre + "Wqkv.bias"])
    if cfg.dim_conv > 0:
        qkv = silu(causal_depthwise_conv(qkv, P[pre + "conv1d.weight"], P[pre + "conv1d.bias"]))
    q = elu_plus_one(_split_heads(qkv[..., :dqk], H))
    k = elu_plus_one(_split_heads(qkv[..., dqk:2 * dqk], H))
    v = _split_heads(qkv[..., 2 * dqk:], H)
    future = causal_mask(L)

    A = torch.einsum("bthe,bshe->bhts", q, k).masked_fill(future, 0.0)
    eta = A.sum(dim=-1, keepdim=True)                                          # phi(q_t) . z_t
    y = torch.einsum("bhts,bshe->bthe", A / eta, v).reshape(Bsz, L, d)
    out = linear(y, P[pre + "out_proj.weight"], P[pre + "out_proj.bias"])

    with torch.no_grad():
        q64, k64 = q.double(), k.double()
        z64 = torch.cumsum(k64, dim=1)                                         # sum_{s<=t} phi(k_s)
        eta64 = (q64 * z64).sum(dim=-1).permute(0, 2, 1)                       # (B, H, L)
        leta = torch.log(eta64)
        le, sc = log_eig(leta[..., :-1], leta[..., 1:])
    return out, le, sc


def norm_attention(cfg, P, pre, u):
    """Norm attention; eigenvalue m_t/m_{t-1} = exp(f(a_{t-1}) - f(a_t))
    (docs/eigenvalues.md)."""
    Bsz, L, d = u.shape
    H, dqk = cfg.num_heads, cfg.state_dim
    dh = dqk // H
    vqkn = linear(u, P[pre + "Wvqkn.weight"], P[pre + "Wvqkn.bias"])          # [v | q | k | n]
    vqk, n = vqkn[..., :d + 2 * dqk], vqkn[..., d + 2 * dqk:]                 # n: (B, L, H), no conv
    if cfg.dim_conv > 0:
        vqk = silu(causal_depthwise_conv(vqk, P[pre + "conv1d.weight"], P[pre + "conv1d.bias"]))
    g = elu_plus_one if cfg.approx_fn == "elu" else (lambda t: t)
    v = _split_heads(vqk[..., :d], H)
    q = g(_split_heads(vqk[..., d:d + dqk], H))
    k = g(_split_heads(vqk[..., d + dqk:], H))
    c = 1.0 / math.sqrt(dh) if cfg.scale_B else 1.0
    f = NORM_FN[cfg.norm_fn]

    A = torch.einsum("bthe,bshe->bhts", q, c * k).masked_fill(causal_mask(L), 0.0)
    y = torch.einsum("bhts,bshe->bthe", A, v)                                  # (B, L, H, dv)
    a = n + P[pre + "inner_attn.offset"] if cfg.offset else n                 # (B, L, H)
    m = torch.exp(-f(a))
    y = (m.unsqueeze(-1) * y).reshape(Bsz, L, d)
    out = linear(y, P[pre + "out_proj.weight"], P[pre + "out_proj.bias"])

    with torch.no_grad():
        fa = f(a.double()).permute(0, 2, 1)                                    # (B, H, L)
        le, sc = log_eig(fa[..., :-1], fa[..., 1:])
    return out, le, sc


ATTENTION = {"sm-attention": softmax_attention, "lin-attention": linear_attention,
             "norm-attention": norm_attention}


# ---------------------------------------------------------------------------
# Heads and loss
# ---------------------------------------------------------------------------

def mean_pool(x, mask):
    """Mean over time; masked mean over the valid positions when a mask is given."""
    if mask is None:
        return x.mean(dim=1)
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(dim=1) / w.sum(dim=1)


def cross_entropy(logits, labels):
    """Mean over rows of logsumexp(z) - z[label]."""
    lse = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(1, labels.long().unsqueeze(1)).squeeze(1)
    return (lse - picked).mean()


def _lm_rows(x, rows):
    Bsz, L, d = x.shape
    flat = x.reshape(Bsz * L, d)
    return flat if rows is None else flat[rows.long()]


# ---------------------------------------------------------------------------
# Transformer backbone (docs/parameters.md, Transformer forward pass)
# ---------------------------------------------------------------------------

def encode(cfg, P, inputs):
    """The input layer (docs/parameters.md): token embedding [+ learned positions,
    transformer only] of int inputs (B, L), or Linear(input_dim, d) of float
    inputs (B, L, input_dim) when cfg.input_dim > 0.  No dropout."""
    if cfg.input_dim > 0:
        if inputs.dim() != 3 or inputs.shape[2] != cfg.input_dim or inputs.is_floating_point() is False:
            raise ConfigError(f"float inputs must be (B, L, {cfg.input_dim}), got {tuple(inputs.shape)}")
        W = P["encoder.weight"]
        return linear(inputs.to(W.dtype), W, P["encoder.bias"])
    L = inputs.shape[1]
    x = P["encoder.word_embeddings.weight"][inputs.long()]
    if not cfg.is_mamba and cfg.max_pos_embed > 0:
        if L > cfg.max_pos_embed:
            raise ConfigError(f"sequence length {L} > max_pos_embed {cfg.max_pos_embed}")
        x = x + P["encoder.position_embeddings.weight"][:L].unsqueeze(0)
    return x


def transformer_forward(cfg, P, tokens, rows=None, mask=None, training=False):
    Bsz, L = tokens.shape[:2]
    x = dropout(encode(cfg, P, tokens), cfg.dropout, training)
    attention = ATTENTION[cfg.model]
    logs, scales = [], []
    for i in range(cfg.num_layers):
        pre = f"layers.{i}."
        w, b = P[pre + "norm.weight"], P[pre + "norm.bias"]           # ONE LayerNorm, used twice
        x_in = x
        att, le, sc = attention(cfg, P, pre + "attention.", layer_norm(x_in, w, b))
        h = x_in + dropout(att, cfg.dropout, training)
        if cfg.mixer == "none":
            y = layer_norm(h, w, b)                                      # no second residual
        else:
            z = linear(layer_norm(h, w, b), P[pre + "mixer.encoder.weight"], P[pre + "mixer.encoder.bias"])
            z = dropout(gelu(z), cfg.dropout, training)
            z = linear(z, P[pre + "mixer.decoder.weight"], P[pre + "mixer.decoder.bias"])
            y = h + dropout(z, cfg.dropout, training)
        if cfg.use_gate:                                                 # gate from the block input
            y = y * silu(linear(x_in, P[pre + "Wz.weight"], P[pre + "Wz.bias"]))
        x = y
        logs.append(le)
        scales.append(sc)
    x = layer_norm(x, P["norm.weight"], P["norm.bias"])
    if cfg.head == "lm":
        logits = linear(_lm_rows(x, rows), P["decoder.weight"])          # no bias
    else:
        pooled = mean_pool(x, mask)
        if cfg.mixer_dim > 0:
            hdn = relu(linear(pooled, P["classifier.encoder.weight"], P["classifier.encoder.bias"]))
            logits = linear(hdn, P["classifier.decoder.weight"], P["classifier.decoder.bias"])
        else:
            logits = pooled
    return logits, torch.stack(logs, dim=1), torch.stack(scales, dim=1)


# ---------------------------------------------------------------------------
# Mamba-2 (docs/parameters.md, Mamba-2 forward pass)
# ---------------------------------------------------------------------------

def ssd(cfg, P, pre, u):
    """Simplified Mamba-2 SSD layer as an explicit per-step recurrence.
    Returns (output (B, L, d), log_eig (B, H, L), scale (B, H, L))."""
    Bsz, L, d = u.shape
    N, H = cfg.state_dim, cfg.num_heads
    Pd = d // H                                                       # head dim P
    proj = linear(u, P[pre + "in_proj.weight"])                       # [x | B | C | dt], no bias
    xBC, dt_raw = proj[..., :d + 2 * N], proj[..., d + 2 * N:]        # dt_raw: (B, L, H) or (B, L, 1)
    delta = softplus(dt_raw + P[pre + "dt_bias"])                     # (B, L, H) (broadcast for pseudo-LTI)
    if cfg.conv_dim > 0:
        xBC = silu(causal_depthwise_conv(xBC, P[pre + "conv1d.weight"], P[pre + "conv1d.bias"]))
    xs = xBC[..., :d].reshape(Bsz, L, H, Pd)
    Bm = xBC[..., d:d + N]                                            # one group: shared by all heads
    Cm = xBC[..., d + N:]

    if cfg.pseudoLTI:
        a = -softplus(P[pre + "A"])                                   # (H)
        decay = torch.exp(a).expand(Bsz, L, H)                        # constant in time (dt = 1)
        x_in = xs                                                     # x not scaled by Delta
        Bt = Bm * torch.repeat_interleave(delta, N // H, dim=-1)      # block j of B scaled by Delta^j
    else:
        a = -torch.exp(P[pre + "A_log"])
        decay = torch.exp(delta * a)                                  # (B, L, H)
        x_in = delta.unsqueeze(-1) * xs
        Bt = Bm
    D = P[pre + "D"]

    S = torch.zeros(Bsz, H, Pd, N, dtype=u.dtype)
    ys = []
    for t in range(L):
        # S_t = exp(Delta_t a) S_{t-1} + (Delta_t x_t) B_t^T ; y_t = S_t C_t + D x_t
        S = decay[:, t, :, None, None] * S + x_in[:, t, :, :, None] * Bt[:, t, None, None, :]
        y_t = torch.einsum("bhpn,bn->bhp", S, Cm[:, t]) + D[None, :, None] * xs[:, t]
        ys.append(y_t)
    y = torch.stack(ys, dim=1).reshape(Bsz, L, d)
    out = linear(y, P[pre + "out_proj.weight"])                       # no bias

    with torch.no_grad():
        if cfg.pseudoLTI:
            x64 = (-softplus(P[pre + "A"].double())).reshape(1, H, 1).expand(Bsz, H, L)
        else:
            d64 = softplus(dt_raw.double() + P[pre + "dt_bias"].double())      # (B, L, H)
            x64 = (d64 * (-torch.exp(P[pre + "A_log"].double()))).permute(0, 2, 1)
        le, sc = log_eig(x64, torch.zeros_like(x64))
    return out, le, sc


def mamba_forward(cfg, P, tokens, rows=None, mask=None, training=False):
    x = encode(cfg, P, tokens)                                        # no positions, no encoder dropout
    logs, scales = [], []
    for i in range(cfg.num_layers):
        pre = f"blocks.{i}."
        w, b = P[pre + "norm.weight"], P[pre + "norm.bias"]
        skip = x
        u = layer_norm(x, w, b) if cfg.prenorm else x
        s, le, sc = ssd(cfg, P, pre + "mamba.", u)
        s = dropout(gelu(s), cfg.dropout, training)
        if cfg.glu:
            ab = linear(s, P[pre + "glu.linear.weight"], P[pre + "glu.linear.bias"])
            s = ab[..., :cfg.hidden_dim] * sigmoid(ab[..., cfg.hidden_dim:])
        s = dropout(s, cfg.dropout, training)
        x = s + skip
        if not cfg.prenorm:
            x = layer_norm(x, w, b)                                   # postnorm
        logs.append(le)
        scales.append(sc)
    if cfg.head == "lm":
        feats = _lm_rows(x, rows)
    else:
        feats = mean_pool(x, mask)                                    # no final norm, no MLP
    logits = linear(feats, P["decoder.weight"], P["decoder.bias"])
    return logits, torch.stack(logs, dim=1), torch.stack(scales, dim=1)


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------

def forward(cfg, P, tokens, rows=None, mask=None, training=False):
    """Logits and "dsf" log-eigenvalues (docs/eigenvalues.md).

    tokens (B, L) int, or float features (B, L, input_dim) when cfg.input_dim > 0; rows: LM head only, flat indices b*L + t (None = all);
    mask (B, L): classifier pooling weights (None = all valid).
    Returns (logits, log_eig, scale); logits (n_rows or B, output_dim) in the
    parameters' dtype; log_eig, scale float64 (B, layers, H, T), T = L - 1
    (attention) or L (Mamba-2); the eigenvalues are exp(log_eig)."""
    if cfg.is_mamba:
        return mamba_forward(cfg, P, tokens, rows, mask, training)
    return transformer_forward(cfg, P, tokens, rows, mask, training)
