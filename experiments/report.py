#!/usr/bin/python3
"""Summarise one experiment directory of seqeig run files.

    /usr/bin/python3 experiments/report.py results/mqar/small [--title TEXT]

Reads every `<dir>/<model>/seed*.h5` (layout: docs/hdf5-format.md; the
directory name is the model), skips with a one-line warning on stderr the
files that cannot be opened or are not seqeig run files, and writes into
<dir>:

    summary.md                  runs, accuracy, steps, wall time, parameters;
                                bin percentages init vs trained per layer/head
    bins_<model>.png            grouped bars of the 7 radius bins, init vs trained
    bins_trained_all.png        trained bins of every model side by side
    learning_curves.png         test accuracy and test loss vs step
    bins_history_<model>.png    bin percentages over training

and prints a short table on stdout.  docs/report.md explains every number.

Exit status: 0 on success; 2 when the directory does not exist or holds no
run file; 1 when an output cannot be written.
"""

import argparse
import datetime
import glob
import os
import sys

import numpy as np

try:
    import h5py
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.lines import Line2D
except ImportError as e:  # pragma: no cover - Debian packages missing
    print(f"report.py: {e} (needs python3-h5py, python3-matplotlib)", file=sys.stderr)
    sys.exit(1)

PROG = "report.py"
BIN_LABELS = ["[0,0.1]", "[0.1,0.5]", "[0.5,0.9]", "[0.9,1]", "[1,10]", "[10,100]", ">100"]
# The reference study's bin colours (docs/report.md, Figures): blue, orange,
# green, red, purple, brown, gray in bin order.
BIN_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
               "tab:gray"]
MODEL_ORDER = ["sm-attention", "lin-attention", "norm-attention", "mamba2"]
FINISHED = ("completed", "stopped_early")
STATUSES = ("completed", "stopped_early", "running", "failed")
DPI = 150


class ReportError(Exception):
    """An expected problem: message for the user, exit status."""

    def __init__(self, msg, code):
        super().__init__(msg)
        self.code = code


def warn(msg):
    print(f"{PROG}: warning: {msg}", file=sys.stderr)


def one_line(e):
    return " ".join(str(e).split())


# ---------------------------------------------------------------------------
# Reading run files
# ---------------------------------------------------------------------------

def _attr(obj, name, default=None):
    """An attribute as a Python value (str for strings, fixed or variable
    length; int/float for numbers), or `default` when absent."""
    if name not in obj.attrs:
        return default
    v = obj.attrs[name]
    if isinstance(v, np.ndarray):
        if v.size != 1:
            return v
        v = v.reshape(()).item()
    if isinstance(v, (bytes, np.bytes_)):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        return v.item()
    return v


def _array(f, path, ndim=None):
    """A dataset as a numpy array, or None when absent (or of the wrong rank)."""
    if path not in f:
        return None
    d = f[path]
    if not isinstance(d, h5py.Dataset):
        return None
    a = d[()]
    if ndim is not None and np.ndim(a) != ndim:
        raise ValueError(f"{path} has {np.ndim(a)} dimensions, expected {ndim}")
    return a


class Run:
    """What the report needs from one run file."""

    def __init__(self, path, model):
        self.path = path
        self.model = model              # directory name
        self.seed = None
        self.status = "?"
        self.error = ""
        self.task = None
        self.step = None
        self.total_steps = None
        self.wall_s = None
        self.stop_criterion = None
        self.method = None
        self.thresholds = None
        self.params = None
        self.eval_step = np.zeros(0, dtype=np.int64)
        self.test_acc = np.zeros(0)
        self.test_loss = np.zeros(0)
        self.init_pm = None             # (layers, heads, 7)
        self.final_pm = None
        self.hist_step = None           # (evals,)
        self.hist_pm = None             # (evals, layers, heads, 7)

    @property
    def finished(self):
        return self.status in FINISHED

    @property
    def final_acc(self):
        return float(self.test_acc[-1]) if len(self.test_acc) else None

    @property
    def best_acc(self):
        return float(np.max(self.test_acc)) if len(self.test_acc) else None

    @property
    def passed(self):
        """Whether test accuracy ever exceeded the stop criterion (None: unknown)."""
        if self.stop_criterion is None or not len(self.test_acc):
            return None
        return bool(np.max(self.test_acc) > self.stop_criterion)


def _read_run(f, path, model):
    r = Run(path, model)
    r.seed = _attr(f, "seed")
    if r.seed is None:
        # Fall back on the file name (seed<k>.h5).
        digits = os.path.basename(path)[4:-3]
        r.seed = int(digits) if digits.isdigit() else digits
    r.status = str(_attr(f, "status", "?"))
    r.error = str(_attr(f, "error", ""))
    r.task = _attr(f, "task")
    attr_model = _attr(f, "model")
    if attr_model is not None and attr_model != model:
        warn(f"{path}: model attribute is '{attr_model}', reported under its directory '{model}'")
    r.step = _attr(f, "step")
    r.total_steps = _attr(f, "total_steps")
    r.wall_s = _attr(f, "wall_s")
    if "config" in f:
        sc = _attr(f["config"], "train.stop_criterion")
        r.stop_criterion = float(sc) if sc is not None else None

    n = None
    for name in ("step", "test_acc", "test_loss"):
        a = _array(f, f"metrics/eval/{name}", 1)
        if a is None:
            continue
        n = len(a) if n is None else min(n, len(a))
    if n is not None and "metrics/eval/step" in f and "metrics/eval/test_acc" in f:
        r.eval_step = _array(f, "metrics/eval/step", 1)[:n].astype(np.int64)
        r.test_acc = _array(f, "metrics/eval/test_acc", 1)[:n].astype(np.float64)
        tl = _array(f, "metrics/eval/test_loss", 1)
        r.test_loss = tl[:n].astype(np.float64) if tl is not None else np.full(n, np.nan)
    if r.step is None and len(r.eval_step):
        r.step = int(r.eval_step[-1])

    if "spectra" in f:
        r.method = _attr(f["spectra"], "method")
        r.thresholds = _array(f, "spectra/thresholds", 1)
        r.init_pm = _array(f, "spectra/init/percent_mean", 3)
        r.final_pm = _array(f, "spectra/final/percent_mean", 3)
        hs = _array(f, "spectra/history/step", 1)
        hp = _array(f, "spectra/history/percent_mean", 4)
        if hs is not None and hp is not None:
            k = min(len(hs), hp.shape[0])
            r.hist_step, r.hist_pm = hs[:k].astype(np.int64), hp[:k]
        for name in ("init_pm", "final_pm"):
            a = getattr(r, name)
            if a is not None and a.shape[-1] != 7:
                raise ValueError(f"percent_mean has {a.shape[-1]} bins, expected 7")
        if r.hist_pm is not None and r.hist_pm.shape[-1] != 7:
            raise ValueError(f"history/percent_mean has {r.hist_pm.shape[-1]} bins, expected 7")

    if "checkpoint/params" in f and isinstance(f["checkpoint/params"], h5py.Group):
        sizes = [int(np.prod(d.shape)) for d in f["checkpoint/params"].values()
                 if isinstance(d, h5py.Dataset)]
        r.params = sum(sizes) if sizes else None
    return r


def load_run(path):
    """(Run, None) or (None, reason to skip)."""
    model = os.path.basename(os.path.dirname(path))
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as e:
        return None, f"cannot open ({one_line(e)})"
    try:
        with f:
            fmt = _attr(f, "format")
            if fmt is None:
                return None, "not a seqeig run file (no 'format' attribute)"
            if fmt != "seqeig-run":
                return None, f"not a seqeig run file (format '{fmt}')"
            return _read_run(f, path, model), None
    except (OSError, KeyError, ValueError, TypeError, IndexError) as e:
        return None, f"malformed run file ({one_line(e)})"


def model_sort_key(name):
    return (MODEL_ORDER.index(name) if name in MODEL_ORDER else len(MODEL_ORDER), name)


def seed_sort_key(run):
    return (0, run.seed, "") if isinstance(run.seed, int) else (1, 0, str(run.seed))


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------

def mean_std(values):
    """Mean and population std (ddof 0) of the non-None values; None if empty."""
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if not len(v):
        return None
    return float(v.mean()), float(v.std()), len(v)


def fmt_ms(values, fmt):
    s = mean_std(values)
    if s is None:
        return "–"
    return f"{s[0]:{fmt}} ± {s[1]:{fmt}}"


def align(series, hold):
    """Put runs evaluated at different steps on one grid.

    series: list of (steps (n,), values (n, ...)); hold[i]: whether run i
    keeps its last value after its last evaluation (early-stopped and
    completed runs) or stops contributing there (unfinished runs).  Between
    its evaluations a run keeps its latest value; before its first one it has
    none.  Returns (grid (m,), values (runs, m, ...) with NaN where a run has
    no value)."""
    grid = np.unique(np.concatenate([s for s, _ in series]))
    shape = series[0][1].shape[1:]
    out = np.full((len(series), len(grid)) + shape, np.nan)
    for i, (s, v) in enumerate(series):
        if not len(s):
            continue
        idx = np.searchsorted(s, grid, side="right") - 1
        ok = idx >= 0
        if not hold[i]:
            ok &= grid <= s[-1]
        out[i, ok] = v[idx[ok]]
    return grid, out


def nan_stats(a):
    """Mean, std (ddof 0), min, max over axis 0 ignoring NaN (a column is
    never all NaN by construction of `align`)."""
    with np.errstate(invalid="ignore"):
        return np.nanmean(a, 0), np.nanstd(a, 0), np.nanmin(a, 0), np.nanmax(a, 0)


class ModelSpectra:
    """Bin percentages of one model's runs, aggregated over seeds."""

    def __init__(self, runs):
        shapes = [r.init_pm.shape for r in runs if r.init_pm is not None]
        shapes += [r.final_pm.shape for r in runs if r.final_pm is not None]
        self.shape = max(set(shapes), key=shapes.count) if shapes else None
        self.init_runs, self.final_runs, self.hist_runs = [], [], []
        for r in runs:
            for attr, lst in (("init_pm", self.init_runs), ("final_pm", self.final_runs)):
                a = getattr(r, attr)
                if a is None:
                    continue
                if a.shape != self.shape:
                    warn(f"{r.path}: {attr} shape {a.shape} differs from the model's "
                         f"{self.shape}; left out of the spectra averages")
                    continue
                lst.append(r)
            has_hist = (r.hist_pm is not None and r.hist_pm.shape[1:] == self.shape
                        and len(r.hist_step) > 0)
            if has_hist or (r.init_pm is not None and r.init_pm.shape == self.shape):
                self.hist_runs.append(r)
        self.init = self._stack([r.init_pm for r in self.init_runs])
        self.final = self._stack([r.final_pm for r in self.final_runs])

    @staticmethod
    def _stack(arrays):
        """(mean, std) over runs of (layers, heads, 7) arrays, or None."""
        if not arrays:
            return None
        a = np.stack(arrays)
        return a.mean(0), a.std(0)

    def head_mean(self, which):
        """Mean over heads per run, then (mean, std) over runs: (layers, 7)."""
        runs = self.final_runs if which == "final" else self.init_runs
        if not runs:
            return None
        a = np.stack([getattr(r, f"{which}_pm").mean(axis=1) for r in runs])
        return a.mean(0), a.std(0)


# ---------------------------------------------------------------------------
# summary.md
# ---------------------------------------------------------------------------

def _join(values):
    return ", ".join(str(v) for v in values) if values else "–"


def _runs(n):
    return f"{n} run" if n == 1 else f"{n} runs"


def _fmt_num(x):
    return f"{x:g}"


def _distinct(values):
    out = []
    for v in values:
        if v is not None and v not in out:
            out.append(v)
    return out


def model_row(model, runs):
    """Cells of the per-model accuracy table (also used for stdout)."""
    fin = [r for r in runs if r.finished]
    counts = [sum(r.status == s for r in runs) for s in STATUSES]
    other = len(runs) - sum(counts)
    passed = [r.passed for r in runs if r.passed is not None]
    params = _distinct([r.params for r in runs])
    if not params:
        p = "–"
    elif len(params) == 1:
        p = f"{params[0]:,}"
    else:
        p = f"{min(params):,}–{max(params):,}"
    return {
        "model": model,
        "runs": str(len(runs)),
        "status": " / ".join(str(c) for c in counts) + (f" (+{other} other)" if other else ""),
        "finished": str(len(fin)),
        "acc": fmt_ms([r.final_acc for r in fin], ".4f"),
        "best": fmt_ms([r.best_acc for r in fin], ".4f"),
        "passed": f"{sum(passed)} / {len(passed)}" if passed else "–",
        "steps": fmt_ms([r.step for r in fin], ".0f"),
        "wall": fmt_ms([r.wall_s for r in fin], ".1f"),
        "params": p,
    }


def md_table(header, rows, align_right=None):
    align_right = align_right or set()
    sep = ["---:" if i in align_right else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_summary(path, ctx):
    runs_by_model, spectra, figures = ctx["runs"], ctx["spectra"], ctx["figures"]
    all_runs = [r for m in runs_by_model for r in runs_by_model[m]]
    seeds = sorted({r.seed for r in all_runs}, key=lambda s: (not isinstance(s, int), str(s)
                                                              if not isinstance(s, int) else s))
    thr = ctx["thresholds"]
    crit = _distinct([r.stop_criterion for r in all_runs])
    methods = _distinct([r.method for r in all_runs])
    L = []
    L.append(f"# {ctx['title']}\n")
    info = [
        ("task", _join(ctx["tasks"])),
        ("preset", ctx["preset"]),
        ("directory", f"`{ctx['dir']}`"),
        ("runs", f"{len(all_runs)} ("
         + ", ".join(f"{m}: {len(rs)}" for m, rs in runs_by_model.items()) + ")"),
        ("seeds", _join(seeds)),
        ("generated", ctx["generated"]),
        ("radius thresholds", _join(_fmt_num(t) for t in thr) if thr is not None else "–"),
        ("spectra method", _join(methods)),
        ("stop criterion", "test accuracy > " + _join(_fmt_num(c) for c in crit) if crit else "–"),
    ]
    if ctx["skipped"]:
        info.append(("skipped files", "; ".join(f"`{p}` ({why})" for p, why in ctx["skipped"])))
    L.append(md_table(["", ""], info))
    L.append("")

    L.append("## Accuracy, steps and time\n")
    L.append("Statistics are over the *finished* runs of each model (status `completed` or "
             "`stopped_early`); `running` and `failed` runs are counted but left out. "
             "Every ± is the **population** standard deviation (ddof 0) over seeds. "
             "Final test accuracy is the one at the last evaluation; best test accuracy is "
             "each run's highest over all evaluations (mean ± std over runs). "
             "Passed: runs whose test accuracy exceeded the stop criterion "
             "(`train.stop_criterion`) at some evaluation, out of the runs with at least one "
             "evaluation. Steps: optimizer updates done when the run ended (early stop or "
             "`total_steps`). Wall time: training time in seconds. Params: number of "
             "parameters in `/checkpoint/params`.\n")
    header = ["model", "runs", "completed / stopped early / running / failed", "finished",
              "final test acc", "best test acc", "passed stop", "steps", "wall time (s)",
              "params"]
    rows = []
    for m, rs in runs_by_model.items():
        c = model_row(m, rs)
        rows.append([c[k] for k in ("model", "runs", "status", "finished", "acc", "best",
                                    "passed", "steps", "wall", "params")])
    L.append(md_table(header, rows, align_right=set(range(1, len(header)))))
    L.append("")

    L.append("### Runs\n")
    rows = []
    for m, rs in runs_by_model.items():
        for r in rs:
            step = "–" if r.step is None else str(r.step)
            if r.total_steps is not None:
                step += f" / {r.total_steps}"
            note = r.error if r.status == "failed" else ""
            if r.final_pm is None:
                note = (note + "; " if note else "") + "no trained spectra"
            rows.append([m, r.seed, r.status, step,
                         "–" if r.final_acc is None else f"{r.final_acc:.4f}",
                         "–" if r.best_acc is None else f"{r.best_acc:.4f}",
                         f"{r.test_loss[-1]:.4g}" if len(r.test_loss) else "–",
                         "–" if r.wall_s is None else f"{r.wall_s:.1f}", note])
    L.append(md_table(["model", "seed", "status", "step / total", "last test acc",
                       "best test acc", "last test loss", "wall time (s)", "note"], rows,
                      align_right={1, 3, 4, 5, 6, 7}))
    L.append("")

    L.append("## Eigenvalue radius bins: init vs trained\n")
    L.append("Each cell is the mean ± std over seeds (population std, ddof 0) of the per-run "
             "`percent_mean`, i.e. of the percentage of time steps whose eigenvalue radius "
             "lies in the bin, averaged over the analysis samples of that run. The within-run "
             "std over samples (`percent_std`) is stored in each run file "
             "(`/spectra/init/percent_std`, `/spectra/final/percent_std`) and not shown here. "
             "Bins are closed at both ends (a value on a threshold counts in both neighbours), "
             "so a row can sum to more than 100. *init*: before the first update, over every "
             "run that has it; *trained*: `/spectra/final`, the weights at the end of "
             "training. Runs without `/spectra/final` (unfinished: `running` or `failed`) are "
             "listed above but excluded from the trained averages; n is the number of runs "
             "in each row.\n")
    for m, sp in spectra.items():
        L.append(f"### {m}\n")
        if sp.shape is None:
            L.append("No spectra in any run.\n")
            continue
        ni = _join([r.seed for r in sp.init_runs])
        nf = _join([r.seed for r in sp.final_runs])
        L.append(f"init: {_runs(len(sp.init_runs))} (seeds {ni}); trained: "
                 f"{_runs(len(sp.final_runs))} (seeds {nf}).\n")
        layers, heads, _ = sp.shape
        for layer in range(layers):
            L.append(f"#### {m}, layer {layer}\n")
            rows = []
            for h in range(heads):
                for label, agg, n in (("init", sp.init, len(sp.init_runs)),
                                      ("trained", sp.final, len(sp.final_runs))):
                    if agg is None:
                        cells = ["–"] * 7
                    else:
                        mu, sd = agg[0][layer, h], agg[1][layer, h]
                        cells = [f"{mu[k]:.1f} ± {sd[k]:.1f}" for k in range(7)]
                    rows.append([h, label, n] + cells)
            L.append(md_table(["head", "spectra", "n"] + BIN_LABELS, rows,
                              align_right=set(range(2, 10))))
            L.append("")

    L.append("## Figures\n")
    for name, what in figures:
        L.append(f"* `{name}`: {what}\n\n  ![{name}]({name})\n")
    L.append("Regenerate with `/usr/bin/python3 experiments/report.py "
             f"{ctx['dir']}` (docs/report.md).\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(L).rstrip("\n") + "\n")


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------

def _bin_axes(ax):
    ax.set_ylim(0, 110)
    ax.set_yticks([0, 25, 50, 75, 100])
    ax.set_ylabel("% of time steps")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _bars(ax, x, mean, std, light, width):
    """Seven bars at x (one per bin) with std error bars, lower clipped at the mean."""
    colours = [matplotlib.colors.to_rgba(c, 0.35 if light else 1.0) for c in BIN_COLOURS]
    ax.bar(x, mean, width, color=colours, edgecolor=BIN_COLOURS if light else "none",
           hatch="////" if light else None, linewidth=0.6 if light else 0)
    if std is not None:
        ax.errorbar(x, mean, yerr=[np.minimum(std, mean), std], fmt="none", ecolor="black",
                    elinewidth=0.7, capsize=1.5)


def _bin_legend(fig, extra=()):
    handles = [Patch(color=c, label=lab) for c, lab in zip(BIN_COLOURS, BIN_LABELS)]
    fig.legend(handles=handles + list(extra), loc="upper right", bbox_to_anchor=(0.995, 0.9),
               fontsize=8, title="radius bin", title_fontsize=8, frameon=False)


def _save(fig, path, caption=None):
    if caption:
        fig.text(0.01, 0.005, caption, fontsize=7, ha="left", va="bottom", wrap=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def fig_bins_model(path, title, model, sp):
    layers, heads, _ = sp.shape
    gap = 1.6
    width = min(24.0, max(7.5, 2.0 + 2.3 * heads))  # room for the title
    fig, axes = plt.subplots(layers, 1, figsize=(width, 2.5 * layers + 1.4), squeeze=False)
    for layer in range(layers):
        ax = axes[layer, 0]
        for h in range(heads):
            x = h * (7 + gap) + np.arange(7)
            if sp.init is not None:
                _bars(ax, x - 0.21, sp.init[0][layer, h], sp.init[1][layer, h], True, 0.4)
            if sp.final is not None:
                _bars(ax, x + 0.21, sp.final[0][layer, h], sp.final[1][layer, h], False, 0.4)
        ax.set_xticks([h * (7 + gap) + 3 for h in range(heads)])
        ax.set_xticklabels([f"head {h}" for h in range(heads)])
        ax.set_xlim(-0.8, heads * (7 + gap) - gap - 0.2)
        ax.set_title(f"layer {layer}", fontsize=10)
        _bin_axes(ax)
    trained = (f"trained: n={len(sp.final_runs)}" if sp.final is not None
               else "trained: none finished yet")
    fig.suptitle(f"{title}: {model}, eigenvalue radius bins, init (hatched) vs trained (solid)"
                 f"\ninit: n={len(sp.init_runs)} runs, {trained}", fontsize=11)
    _bin_legend(fig, [Patch(facecolor="white", edgecolor="black", hatch="////", label="init"),
                      Patch(facecolor="black", label="trained")])
    fig.tight_layout(rect=(0, 0.04, 0.86, 0.95))
    _save(fig, path, "bar: mean over seeds of each run's mean over samples; error bar: std over "
          "seeds (population), lower part clipped at the mean. Trained: runs with /spectra/final "
          "only.")


def fig_bins_all(path, title, spectra):
    models = list(spectra)
    layers = max((sp.shape[0] for sp in spectra.values() if sp.shape), default=0)
    fig, axes = plt.subplots(max(layers, 1), 1, figsize=(min(24.0, max(7.5, 2.5 + 2.3 * len(models))),
                                                         2.5 * max(layers, 1) + 1.4),
                             squeeze=False)
    gap = 1.6
    labels = []
    for m in models:
        sp = spectra[m]
        n = len(sp.final_runs)
        labels.append(f"{m}\n(n={n})" if n else f"{m}\n(no trained runs)")
    for layer in range(max(layers, 1)):
        ax = axes[layer, 0]
        for g, m in enumerate(models):
            agg = spectra[m].head_mean("final")
            if agg is None or layer >= agg[0].shape[0]:
                continue
            _bars(ax, g * (7 + gap) + np.arange(7), agg[0][layer], agg[1][layer], False, 0.8)
        ax.set_xticks([g * (7 + gap) + 3 for g in range(len(models))])
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_xlim(-0.8, len(models) * (7 + gap) - gap - 0.2)
        ax.set_title(f"layer {layer}", fontsize=10)
        _bin_axes(ax)
    if layers == 0:
        axes[0, 0].text(0.5, 0.5, "no spectra in any run", ha="center", transform=axes[0, 0].transAxes)
    fig.suptitle(f"{title}: trained eigenvalue radius bins, all models\n"
                 "(mean over heads per run, then mean ± std over seeds)", fontsize=11)
    _bin_legend(fig)
    fig.tight_layout(rect=(0, 0.04, 0.86, 0.95))
    _save(fig, path, "bar: mean over seeds of each run's mean over heads and samples; error bar: "
          "std over seeds (population), lower part clipped at the mean. Only runs with "
          "/spectra/final.")


HOLD_NOTE = ("Runs that ended (early stop or total_steps) keep their last value up to the "
             "longest run; unfinished runs (running/failed) count up to their last evaluation.")


def fig_learning_curves(path, title, runs_by_model):
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.6))
    cmap = plt.get_cmap("tab10")
    handles = []
    any_loss_positive = False
    crits = set()
    for i, (m, runs) in enumerate(runs_by_model.items()):
        colour = cmap(i % 10)
        rs = [r for r in runs if len(r.eval_step)]
        if not rs:
            continue
        for r in rs:
            ls = "-" if r.finished else "--"
            ax_acc.plot(r.eval_step, r.test_acc, ls, color=colour, lw=0.7, alpha=0.45)
            ax_loss.plot(r.eval_step, r.test_loss, ls, color=colour, lw=0.7, alpha=0.45)
            if r.stop_criterion is not None:
                crits.add(r.stop_criterion)
        hold = [r.finished for r in rs]
        for ax, key in ((ax_acc, "test_acc"), (ax_loss, "test_loss")):
            grid, vals = align([(r.eval_step, getattr(r, key)) for r in rs], hold)
            mean, _, lo, hi = nan_stats(vals)
            ax.plot(grid, mean, color=colour, lw=2)
            ax.fill_between(grid, lo, hi, color=colour, alpha=0.15, lw=0)
            if key == "test_loss" and np.nanmin(vals) > 0:
                any_loss_positive = True
        handles.append(Line2D([], [], color=colour, lw=2, label=f"{m} (n={len(rs)})"))
    for c in sorted(crits):
        ax_acc.axhline(c, color="black", ls=":", lw=0.8)
    if crits:
        handles.append(Line2D([], [], color="black", ls=":", lw=0.8, label="stop criterion"))
    handles.append(Line2D([], [], color="gray", lw=0.7, ls="--", label="unfinished run"))
    ax_acc.set_ylim(0, 1.02)
    ax_acc.set_ylabel("test accuracy")
    ax_loss.set_ylabel("test loss")
    if any_loss_positive:
        ax_loss.set_yscale("log")
    for ax in (ax_acc, ax_loss):
        ax.set_xlabel("step (optimizer updates)")
        ax.grid(alpha=0.3)
    ax_acc.set_title("test accuracy", fontsize=10)
    ax_loss.set_title("test loss", fontsize=10)
    ax_acc.legend(handles=handles, fontsize=8, loc="lower right")
    fig.suptitle(f"{title}: learning curves", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    _save(fig, path, "thick line: mean over seeds; band: min-max over seeds; thin lines: single "
          "seeds (dashed: unfinished). " + HOLD_NOTE)


def fig_bins_history(path, title, model, sp):
    layers, heads, _ = sp.shape
    fig, axes = plt.subplots(layers, heads, figsize=(min(24.0, max(7.5, 1.8 + 3.6 * heads)),
                                                     2.5 * layers + 1.4),
                             squeeze=False, sharex=True)
    runs = sp.hist_runs
    if runs:
        series, hold = [], []
        for r in runs:
            s, v = np.zeros(0, dtype=np.int64), np.zeros((0,) + sp.shape)
            if r.hist_pm is not None and r.hist_pm.shape[1:] == sp.shape:
                s, v = r.hist_step, r.hist_pm
            if r.init_pm is not None and r.init_pm.shape == sp.shape and (not len(s) or s[0] > 0):
                s = np.concatenate([[0], s]).astype(np.int64)
                v = np.concatenate([r.init_pm[None], v])
            series.append((s, v))
            hold.append(r.finished)
        grid, vals = align(series, hold)
        mean, std, _, _ = nan_stats(vals)
    for layer in range(layers):
        for h in range(heads):
            ax = axes[layer, h]
            if runs:
                for k in range(7):
                    ax.plot(grid, mean[:, layer, h, k], color=BIN_COLOURS[k], lw=1.5,
                            marker="o" if len(grid) == 1 else None, ms=4)
                    ax.fill_between(grid, np.maximum(mean[:, layer, h, k] - std[:, layer, h, k], 0),
                                    mean[:, layer, h, k] + std[:, layer, h, k],
                                    color=BIN_COLOURS[k], alpha=0.12, lw=0)
                if len(grid) == 1:
                    ax.set_xticks(grid)
            else:
                ax.text(0.5, 0.5, "no spectra", ha="center", transform=ax.transAxes)
            ax.set_title(f"layer {layer}, head {h}", fontsize=9)
            _bin_axes(ax)
            if layer == layers - 1:
                ax.set_xlabel("step")
            if h:
                ax.set_ylabel("")
    fig.suptitle(f"{title}: {model}, eigenvalue radius bins during training\n"
                 f"(mean over {_runs(len(runs))}; step 0 = init)", fontsize=11)
    _bin_legend(fig)
    fig.tight_layout(rect=(0, 0.05, 0.86, 0.95))
    _save(fig, path, "line: mean over seeds of each run's mean over samples; band: ± std over "
          "seeds. " + HOLD_NOTE)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(prog=PROG, description="Summarise seqeig run files of one "
                                "experiment directory (<dir>/<model>/seed*.h5).")
    p.add_argument("dir", help="experiment directory, e.g. results/mqar/small")
    p.add_argument("--title", help="figure and summary title (default: '<task> / <preset>')")
    return p.parse_args(argv)


def collect(d):
    if not os.path.isdir(d):
        raise ReportError(f"{d}: no such directory", 2)
    paths = sorted(glob.glob(os.path.join(glob.escape(d), "*", "seed*.h5")))
    if not paths:
        raise ReportError(f"{d}: no run files (expected {d}/<model>/seed*.h5)", 2)
    runs, skipped = [], []
    for p in paths:
        r, why = load_run(p)
        if r is None:
            warn(f"skipping {p}: {why}")
            skipped.append((p, why))
        else:
            runs.append(r)
    if not runs:
        raise ReportError(f"{d}: none of the {len(paths)} seed*.h5 files is a readable "
                          "seqeig run file", 2)
    return runs, skipped


def report(d, title=None):
    d = d.rstrip("/") or "/"
    runs, skipped = collect(d)
    by_model = {}
    for r in sorted(runs, key=seed_sort_key):
        by_model.setdefault(r.model, []).append(r)
    by_model = {m: by_model[m] for m in sorted(by_model, key=model_sort_key)}

    tasks = _distinct([r.task for r in runs])
    preset = os.path.basename(os.path.abspath(d))
    title = title or f"{'/'.join(tasks) or '?'} / {preset}"
    thr_list = [r.thresholds for r in runs if r.thresholds is not None]
    thresholds = thr_list[0] if thr_list else None
    if any(t.shape != thresholds.shape or not np.allclose(t, thresholds) for t in thr_list):
        warn("runs use different radius thresholds; the summary lists the first run's")

    spectra = {m: ModelSpectra(rs) for m, rs in by_model.items()}
    figures = []
    try:
        for m, sp in spectra.items():
            if sp.shape is None:
                continue
            name = f"bins_{m}.png"
            fig_bins_model(os.path.join(d, name), title, m, sp)
            figures.append((name, f"{m}: bin percentages per layer (rows) and head (groups), "
                            "init (hatched) vs trained (solid), mean ± std over seeds"))
        fig_bins_all(os.path.join(d, "bins_trained_all.png"), title, spectra)
        figures.append(("bins_trained_all.png", "trained bin percentages of every model, one "
                        "panel per layer, mean over heads, mean ± std over seeds"))
        fig_learning_curves(os.path.join(d, "learning_curves.png"), title, by_model)
        figures.append(("learning_curves.png", "test accuracy and test loss vs step: mean over "
                        "seeds, min-max band, single seeds thin"))
        for m, sp in spectra.items():
            if sp.shape is None:
                continue
            name = f"bins_history_{m}.png"
            fig_bins_history(os.path.join(d, name), title, m, sp)
            figures.append((name, f"{m}: bin percentages at every evaluation (step 0 = init), "
                            "mean over seeds, ± std band"))
        ctx = dict(title=title, tasks=tasks, preset=preset, dir=d, runs=by_model,
                   spectra=spectra, figures=figures, skipped=skipped, thresholds=thresholds,
                   generated=datetime.datetime.now(datetime.timezone.utc)
                   .strftime("%Y-%m-%dT%H:%M:%SZ"))
        write_summary(os.path.join(d, "summary.md"), ctx)
    except OSError as e:
        raise ReportError(f"cannot write into {d}: {one_line(e)}", 1)

    cells = [model_row(m, rs) for m, rs in by_model.items()]
    w = max(len("model"), *(len(c["model"]) for c in cells))
    print(f"{'model':<{w}}  {'runs':>4}  {'finished':>8}  {'final test acc':>16}  "
          f"{'steps':>13}")
    for c in cells:
        print(f"{c['model']:<{w}}  {c['runs']:>4}  {c['finished']:>8}  {c['acc']:>16}  "
              f"{c['steps']:>13}")
    print(f"wrote {os.path.join(d, 'summary.md')} and {len(figures)} figures")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        report(args.dir, args.title)
    except ReportError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
