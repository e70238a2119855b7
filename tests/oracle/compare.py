#!/usr/bin/python3
"""Compare C model outputs against the independent PyTorch oracle.

    /usr/bin/python3 tests/oracle/compare.py build/oracle/*.h5

For every file (format: docs/oracle.md) it rebuilds the model from /config,
loads /params (every expected state_dict entry present with the right shape,
nothing unexpected), converts to float64, runs forward on /inputs, the mean
cross entropy against /inputs/labels and backward, then compares with the C
results in /c.  One line per compared tensor, then `N passed, N failed`.
Exit status 1 on any failure or malformed file, 0 otherwise.

Tolerances
----------
logits, loss, every gradient: max|c - torch| / max|torch| <= 1e-4 per tensor
(docs/oracle.md).  The C model computes in float32 (unit roundoff 6e-8);
with the tiny oracle models the accumulated error is 1e-7..1e-5 of the
tensor's largest entry, so 1e-4 leaves margin for accumulation while any
real bug (wrong index, missing term, swapped heads) gives O(1e-2..1) errors.
Normalising by the tensor max rather than elementwise avoids failing on
entries that are tiny because of cancellation (see also FLOOR).

eig: see EIG_RTOL below.
"""

import math
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402

RTOL = 1e-4
# Normalisation floor.  A tensor whose entries are all below ~1e-30 is zero
# for a float32 model: float32 normals end at 1.2e-38, so products of such
# factors (e.g. norm attention's exp(-f(a)) with norm_fn exp, which float64
# keeps at 1e-100 where float32 flushes to 0) underflow on the C side.
# Errors are therefore measured against max(max|torch|, 1e-30); this changes
# nothing for any tensor of ordinary size.
FLOOR = 1e-30

# Eigenvalue bound.  Every dsf eigenvalue (docs/eigenvalues.md) is
# lambda = exp(x - y) for two log-domain quantities x, y (log-normalisers,
# f(n + o), Delta a; see torch_models).  The C code evaluates x and y in
# float64 but from float32 activations, so x and y carry a relative error
# (float32 rounding amplified through the layers) that we bound by the same
# 1e-4 as every other tensor.
# x - y is a difference, so its absolute error is bounded by that relative
# error times |x| + |y| (the 1 floors the case x, y ~ 0, where activation
# errors are absolute).  And the relative error of lambda equals the absolute
# error of log lambda.  Hence, per element:
#
#     |log lambda_c - (x - y)| <= EIG_RTOL * (1 + |x| + |y|).
#
# A plain elementwise relative bound on lambda would not do: for norm_fn exp
# f(a) = e^a reaches ~1e4 at the default offsets, so perfectly rounded
# float32 inputs already move lambda by ~1e-2 relative, while for sigmoid
# f is O(1) and lambda is good to ~1e-7.  The scaled bound is tight for both.
#
# Equivalently: lambda_c must lie in [exp(x - y - tol), exp(x - y + tol)].
# That interval form also settles the saturated values.  With norm_fn exp,
# lambda is often exactly 0 or +inf in float64; the interval then is [0, 0]
# or [inf, inf], so 0 and inf must match exactly.  Only when x - y is within
# tol of float64 under/overflow does the interval straddle the threshold
# (there either answer is right; such cases are counted and printed).  At
# the bottom the interval is widened by one subnormal ulp (4.9e-324), since
# float64 itself cannot resolve relative differences there.  NaN always fails.
EIG_RTOL = 1e-4
DBL_MIN = np.finfo(np.float64).tiny          # smallest normal float64
SUBNORMAL_ULP = np.nextafter(0.0, 1.0)       # 4.9e-324
# Normalisation floor.  A tensor whose entries are all below ~1e-30 is zero
# for a float32 model: float32 normals end at 1.2e-38, so products of such
# factors (e.g. norm attention's exp(-f(a)) with norm_fn exp, which float64
# keeps at 1e-100 where float32 flushes to 0) underflow on the C side.
# Errors are therefore measured against max(max|torch|, 1e-30); this changes
# nothing for any tensor of ordinary size.
FLOOR = 1e-30


class Malformed(Exception):
    """The file does not follow docs/oracle.md."""


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

def _dataset(f, path, dtype_kind=None, dtype=None, shape=None):
    """Read a whole dataset, checking presence, type and shape."""
    obj = f.get(path)
    if obj is None:
        raise Malformed(f"dataset {path} is missing")
    if not isinstance(obj, h5py.Dataset):
        raise Malformed(f"{path} is not a dataset")
    if dtype is not None and obj.dtype != np.dtype(dtype):
        raise Malformed(f"dataset {path} has type {obj.dtype}, expected {np.dtype(dtype)}")
    if dtype_kind is not None and obj.dtype.kind not in dtype_kind:
        raise Malformed(f"dataset {path} has type {obj.dtype}, expected an integer type")
    if shape is not None and tuple(obj.shape) != tuple(shape):
        raise Malformed(f"dataset {path} has shape {tuple(obj.shape)}, expected {tuple(shape)}")
    return obj[()]


def _attr_str(obj, name, where):
    if name not in obj.attrs:
        raise Malformed(f"attribute {where}@{name} is missing")
    v = obj.attrs[name]
    if isinstance(v, bytes):
        v = v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(()).item()
        if isinstance(v, bytes):
            v = v.decode("utf-8")
    return v


def _named_datasets(f, group):
    """{name: dataset} of a flat group whose member names are state_dict names."""
    g = f.get(group)
    if g is None:
        raise Malformed(f"group {group} is missing")
    if not isinstance(g, h5py.Group):
        raise Malformed(f"{group} is not a group")
    out = {}
    for name, obj in g.items():
        if not isinstance(obj, h5py.Dataset):
            raise Malformed(f"{group}/{name} is a group, expected flat state_dict names "
                            f"(e.g. 'layers.0.norm.weight') as datasets")
        out[name] = obj
    return out


def _check_names(found, expected, optional, group):
    missing = [n for n in expected if n not in found]
    unexpected = [n for n in found if n not in expected and n not in optional]
    if missing:
        raise Malformed(f"{group}: missing " + ", ".join(f"{group}/{n}" for n in missing))
    if unexpected:
        raise Malformed(f"{group}: unexpected " + ", ".join(f"{group}/{n}" for n in unexpected))


def load(path):
    """Parse and validate one oracle file; returns a dict of numpy arrays."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise Malformed(f"cannot open as HDF5 ({e})") from None
    with f:
        fmt = _attr_str(f, "format", "/")
        if fmt != "seqeig-oracle":
            raise Malformed(f"attribute /@format = {fmt!r}, expected 'seqeig-oracle'")
        if "format_version" not in f.attrs:
            raise Malformed("attribute /@format_version is missing")
        if int(np.asarray(f.attrs["format_version"]).reshape(())) != 1:
            raise Malformed(f"attribute /@format_version = {f.attrs['format_version']}, expected 1")
        variant = str(_attr_str(f, "variant", "/"))

        if "config" not in f:
            raise Malformed("group /config is missing")
        try:
            cfg = tm.Config.from_attrs(f["config"].attrs)
        except tm.ConfigError as e:
            raise Malformed(f"/config: {e}") from None
        if cfg.dropout != 0.0:
            raise Malformed(f"/config@dropout = {cfg.dropout}: oracle files must have dropout 0")

        # parameters: exactly the expected state_dict entries, float32
        shapes = tm.param_shapes(cfg)
        buffers = tm.optional_buffers(cfg)
        found = _named_datasets(f, "/params")
        _check_names(found, shapes, buffers, "/params")
        params = {}
        for name, shape in shapes.items():
            params[name] = _dataset(f, f"/params/{name}", dtype=np.float32, shape=shape)
        for name, (shape, value) in buffers.items():
            if name in found:
                buf = _dataset(f, f"/params/{name}", shape=shape)
                if not np.all(buf == value):
                    raise Malformed(f"buffer /params/{name} must be all {value}")

        # inputs
        if cfg.input_dim > 0:   # float inputs through the Linear input layer
            tokens = _dataset(f, "/inputs/features", dtype=np.float32)
            if tokens.ndim != 3 or tokens.size == 0 or tokens.shape[2] != cfg.input_dim:
                raise Malformed(f"dataset /inputs/features has shape {tokens.shape}, "
                                f"expected (B, L, input_dim={cfg.input_dim})")
            if not np.all(np.isfinite(tokens)):
                raise Malformed("dataset /inputs/features has non-finite values")
            Bsz, L = tokens.shape[:2]
        else:
            tokens = _dataset(f, "/inputs/tokens", dtype_kind="iu")
            if tokens.ndim != 2 or tokens.size == 0:
                raise Malformed(f"dataset /inputs/tokens has shape {tokens.shape}, expected (B, L)")
            Bsz, L = tokens.shape
            if tokens.min() < 0 or tokens.max() >= cfg.vocab_size:
                raise Malformed(f"dataset /inputs/tokens has values outside [0, vocab_size={cfg.vocab_size})")
        if not cfg.is_mamba and cfg.max_pos_embed > 0 and L > cfg.max_pos_embed:
            raise Malformed(f"/inputs/tokens length {L} > max_pos_embed {cfg.max_pos_embed}")
        rows = mask = None
        if cfg.head == "lm":
            rows = _dataset(f, "/inputs/rows", dtype_kind="iu")
            if rows.ndim != 1 or rows.size == 0:
                raise Malformed(f"dataset /inputs/rows has shape {rows.shape}, expected (n,), n > 0")
            if rows.min() < 0 or rows.max() >= Bsz * L:
                raise Malformed(f"dataset /inputs/rows has values outside [0, B*L={Bsz * L})")
            n_out = rows.size
            if "mask" in f["inputs"]:
                raise Malformed("dataset /inputs/mask is present but the head is lm "
                                "(mask is for the classifier only)")
        else:
            n_out = Bsz
            if "rows" in f["inputs"]:
                raise Malformed("dataset /inputs/rows is present but the head is classifier")
            if "mask" in f["inputs"]:
                mask = _dataset(f, "/inputs/mask", dtype=np.float32, shape=(Bsz, L))
                if not np.all((mask == 0) | (mask == 1)):
                    raise Malformed("dataset /inputs/mask has values other than 0 and 1")
                if np.any(mask.sum(axis=1) == 0):
                    raise Malformed("dataset /inputs/mask has an example with no valid position")
        labels = _dataset(f, "/inputs/labels", dtype_kind="iu", shape=(n_out,))
        if labels.min() < 0 or labels.max() >= cfg.output_dim:
            raise Malformed(f"dataset /inputs/labels has values outside [0, output_dim={cfg.output_dim})")

        # C results
        T = L if cfg.is_mamba else L - 1
        c = {
            "logits": _dataset(f, "/c/logits", dtype=np.float32, shape=(n_out, cfg.output_dim)),
            "loss": _dataset(f, "/c/loss", dtype=np.float64, shape=()),
            "eig": _dataset(f, "/c/eig", dtype=np.float64,
                            shape=(Bsz, cfg.num_layers, cfg.num_heads, T)),
        }
        found = _named_datasets(f, "/c/grads")
        _check_names(found, shapes, {}, "/c/grads")
        c["grads"] = {name: _dataset(f, f"/c/grads/{name}", dtype=np.float32, shape=shape)
                      for name, shape in shapes.items()}

    return dict(variant=variant, cfg=cfg, params=params, tokens=tokens, rows=rows,
                mask=mask, labels=labels, c=c)


# ---------------------------------------------------------------------------
# The PyTorch side
# ---------------------------------------------------------------------------

def inputs_tensor(d):
    """The model inputs of a loaded file: int64 tokens (B, L) or float64 features (B, L, F)."""
    x = d["tokens"]
    return torch.from_numpy(x.astype(np.float64) if d["cfg"].input_dim > 0 else x.astype(np.int64))


def run_torch(d):
    """float64 forward, loss, backward; returns logits, loss, grads, log_eig, scale."""
    P = {k: torch.from_numpy(v.astype(np.float64)).requires_grad_(True) for k, v in d["params"].items()}
    tokens = inputs_tensor(d)
    rows = None if d["rows"] is None else torch.from_numpy(d["rows"].astype(np.int64))
    mask = None if d["mask"] is None else torch.from_numpy(d["mask"].astype(np.float64))
    labels = torch.from_numpy(d["labels"].astype(np.int64))
    logits, log_eig, scale = tm.forward(d["cfg"], P, tokens, rows=rows, mask=mask)
    loss = tm.cross_entropy(logits, labels)
    loss.backward()
    grads = {k: (p.grad if p.grad is not None else torch.zeros_like(p)).numpy() for k, p in P.items()}
    return dict(logits=logits.detach().numpy(), loss=loss.item(), grads=grads,
                log_eig=log_eig.numpy(), scale=scale.numpy())


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------

def compare_tensor(c, t):
    """(max abs err, max abs err / max(max|torch|, FLOOR), ok) with the 1e-4 bound."""
    c = np.asarray(c, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    err = float(np.max(np.abs(c - t))) if c.size else 0.0
    den = max(float(np.max(np.abs(t))) if t.size else 0.0, FLOOR)
    rel = err / den
    if not np.all(np.isfinite(c)):
        rel = math.nan if math.isnan(err) else math.inf
    ok = rel <= RTOL            # False for NaN
    return err, rel, ok


def compare_eig(c, log_t, scale):
    """Elementwise eigenvalue check, see EIG_RTOL.  c: C eigenvalues; log_t,
    scale: torch log-eigenvalue x - y and 1 + |x| + |y|.  Returns (max abs
    err over finite pairs, max |log c - log_t| / scale, ok, summary text)."""
    tol = EIG_RTOL * scale
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        t = np.exp(log_t)
        # c must lie in [exp(log_t - tol), exp(log_t + tol)], widened by one
        # subnormal ulp for float64's own rounding of values near underflow.
        lo = np.exp(log_t - tol) - SUBNORMAL_ULP
        hi = np.exp(log_t + tol) + SUBNORMAL_ULP
        bad = ~np.isfinite(log_t) | np.isnan(c) | ~((lo <= c) & (c <= hi))
        c_norm = np.isfinite(c) & (c >= DBL_MIN)
        ratio_all = np.abs(np.log(np.where(c_norm, c, 1.0)) - log_t) / scale
        both_fin = np.isfinite(c) & np.isfinite(t)
        abs_err = float(np.max(np.abs(c - t)[both_fin])) if both_fin.any() else 0.0
    ratio = float(np.max(ratio_all[c_norm])) if c_norm.any() else 0.0
    if np.any(bad & ~c_norm):
        ratio = math.inf
    saturated = (c == 0) | np.isposinf(c) | (t == 0) | np.isposinf(t)
    exact = ((c == 0) & (t == 0)) | (np.isposinf(c) & np.isposinf(t))
    band = int(np.sum(saturated & ~exact & ~bad))
    summary = f"0/inf: {int(exact.sum())}/{int(saturated.sum())} exact"
    if band:
        summary += f", {band} within tolerance of under/overflow"
    n_bad = int(bad.sum())
    if n_bad:
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        summary += f"; {n_bad} bad, first at {idx}: c={c[idx]:.6g} torch={t[idx]:.6g}"
    return abs_err, ratio, n_bad == 0, summary


class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def line(self, name, abs_err, rel, ok, bound, extra=""):
        status = "OK" if ok else "FAIL"
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(f"  {name:<44s} max abs err {abs_err:10.3e}  rel err {rel:10.3e} (<= {bound:.0e})  "
              f"{status}{('  ' + extra) if extra else ''}")


def check_file(path, tally):
    print(f"{path}")
    try:
        d = load(path)
    except Malformed as e:
        print(f"  MALFORMED {path}: {e}")
        tally.failed += 1
        return
    except Exception as e:  # h5py/numpy surprises on odd files: still a clear message
        print(f"  MALFORMED {path}: {type(e).__name__}: {e}")
        tally.failed += 1
        return
    cfg = d["cfg"]
    print(f"  variant {d['variant']}: model {cfg.model}, head {cfg.head}, d {cfg.hidden_dim}, "
          f"state {cfg.state_dim}, heads {cfg.num_heads}, layers {cfg.num_layers}, "
          f"inputs {tuple(d['tokens'].shape)}")
    try:
        t = run_torch(d)
    except Exception as e:
        print(f"  ERROR {path}: the PyTorch model failed: {type(e).__name__}: {e}")
        tally.failed += 1
        return
    c = d["c"]
    tally.line("logits", *compare_tensor(c["logits"], t["logits"]), RTOL)
    err = abs(float(c["loss"]) - t["loss"])
    rel = err / abs(t["loss"]) if t["loss"] != 0 else (0.0 if err == 0 else math.inf)
    tally.line("loss", err, rel, rel <= RTOL, RTOL,
               f"(c {float(c['loss']):.10g}, torch {t['loss']:.10g})")
    for name in tm.param_shapes(cfg):
        tally.line("grad " + name, *compare_tensor(c["grads"][name], t["grads"][name]), RTOL)
    abs_err, ratio, ok, summary = compare_eig(c["eig"], t["log_eig"], t["scale"])
    tally.line("eig", abs_err, ratio, ok, EIG_RTOL, summary)


def run_files(argv, check, prog):
    """Command line of the oracle scripts: check(path, tally) on every file
    argument, a count line; exit status 0, 1 (something failed) or 2 (usage)."""
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(f"usage: {prog} FILE.h5...  (format: docs/oracle.md)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    tally = Tally()
    for path in argv[1:]:
        check(path, tally)
    print(f"{tally.passed} passed, {tally.failed} failed")
    return 1 if tally.failed else 0


def main(argv):
    return run_files(argv, check_file, "compare.py")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
