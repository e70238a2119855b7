#!/usr/bin/python3
"""Test of experiments/report.py on synthetic run files.

    /usr/bin/python3 tests/report/test_report.py [--keep DIR]

Writes the scenario of make_fake_runs.make_scenario (2 models x 2 seeds,
2 layers x 2 heads; one run stopped early, one still running without
/spectra/final; an inf, an exact 0 and threshold values among the
eigenvalues; a non-run HDF5 file and a non-HDF5 file to be skipped) into a
temporary directory, runs report.py on it as a subprocess and checks the
exit status, the warnings, every number of summary.md against values
computed here from the arrays the files were written from (plain Python
statistics, own bin counting), the stdout table and the PNG files.  Then
the error cases: missing directory, empty directory, only unusable files.

Prints one line per check; exit status 1 if any check failed.
"""

import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REPORT = os.path.join(ROOT, "experiments", "report.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
sys.path.insert(0, HERE)
import make_fake_runs as fake  # noqa: E402

BIN_LABELS = ["[0,0.1]", "[0.1,0.5]", "[0.5,0.9]", "[0.9,1]", "[1,10]", "[10,100]", ">100"]
TAB_RGB = {  # matplotlib's tab: colours, in bin order (docs/report.md, Figures)
    "blue": (0x1f, 0x77, 0xb4), "orange": (0xff, 0x7f, 0x0e), "green": (0x2c, 0xa0, 0x2c),
    "red": (0xd6, 0x27, 0x28), "purple": (0x94, 0x67, 0xbd), "brown": (0x8c, 0x56, 0x4b),
    "gray": (0x7f, 0x7f, 0x7f)}

FAILURES = []


def check(cond, what):
    print(f"  {'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        FAILURES.append(what)
    return cond


def run_report(*args):
    p = subprocess.run([PYTHON, REPORT, *args], capture_output=True, text=True,
                       env=dict(os.environ, MPLBACKEND="Agg"))
    return p.returncode, p.stdout, p.stderr


# ---------------------------------------------------------------------------
# Expected numbers, computed independently of report.py and of the writer
# ---------------------------------------------------------------------------

def count_bins(eig):
    """Per (layer, head): list over samples of 7 percentages, by plain loops."""
    samples, layers, heads, T = eig.shape
    lo = [0.0, 0.1, 0.5, 0.9, 1.0, 10.0]
    hi = [0.1, 0.5, 0.9, 1.0, 10.0, 100.0]
    out = {}
    for layer in range(layers):
        for h in range(heads):
            per_sample = []
            for s in range(samples):
                c = [0] * 7
                for t in range(T):
                    r = abs(float(eig[s, layer, h, t]))
                    for k in range(6):
                        if lo[k] <= r <= hi[k]:
                            c[k] += 1
                    if r > 100.0:
                        c[6] += 1
                per_sample.append([100.0 * x / T for x in c])
            out[(layer, h)] = per_sample
    return out


def run_percent_mean(eig):
    """(layer, head) -> 7 per-run means over samples."""
    return {key: [statistics.fmean(col) for col in zip(*rows)]
            for key, rows in count_bins(eig).items()}


def pm(values):
    """Mean and population std over seeds, plain Python."""
    return statistics.fmean(values), statistics.pstdev(values)


def matches(text, expected, decimals):
    """`text` shows `expected` at `decimals` places (either neighbour on an
    exact rounding tie)."""
    want = f"{expected:.{decimals}f}"
    if text == want:
        return True
    scaled = expected * 10 ** decimals
    tie = abs(scaled - np.floor(scaled) - 0.5) < 1e-6
    try:
        return tie and abs(float(text) - expected) <= 0.5 * 10 ** -decimals + 1e-9
    except ValueError:
        return False


def matches_pm(cell, mean, std, decimals):
    m = re.fullmatch(r"\s*(\S+) ± (\S+)\s*", cell)
    return bool(m) and matches(m.group(1), mean, decimals) and matches(m.group(2), std, decimals)


# ---------------------------------------------------------------------------
# Markdown parsing
# ---------------------------------------------------------------------------

def md_tables(text):
    """[(heading, header cells, rows of cells)] for every pipe table."""
    tables, heading, cur = [], "", None
    for line in text.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cur is None:
                cur = (heading, cells, [])
                tables.append(cur)
            elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
                cur[2].append(cells)
        else:
            cur = None
    return tables


# ---------------------------------------------------------------------------
# PNG checks
# ---------------------------------------------------------------------------

def png_info(path):
    """(width, height) from the IHDR chunk, or None if not a PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def colour_pixels(path, rgb, tol=3):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    img = mpimg.imread(path)[..., :3]
    target = np.array(rgb) / 255.0
    return int(np.count_nonzero(np.all(np.abs(img - target) <= tol / 255.0, axis=-1)))


# ---------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------

def check_scenario(base):
    d = os.path.join(base, "mqar", "small")
    runs = fake.make_scenario(d)
    models = ["sm-attention", "mamba2"]
    print(f"scenario in {d}: {len(runs)} runs + 2 unusable files + 1 .tmp")

    # The writer stored what the eigenvalues say (checks the fixture itself).
    sm = runs[("sm-attention", 1919)]
    with h5py.File(os.path.join(d, "sm-attention", "seed1919.h5"), "r") as f:
        eig = f["spectra/final/eig"][()]
        stored = f["spectra/final/percent_mean"][()]
    check(np.isinf(eig).sum() == 1 and (eig == 0).sum() == 1,
          "fixture: final eig of sm-attention/1919 holds one inf and one exact 0")
    ours = run_percent_mean(sm.eig_final)
    check(all(np.allclose(stored[layer, h], ours[(layer, h)]) for layer, h in ours),
          "fixture: stored percent_mean equals an independent bin count")
    inf_bin = count_bins(sm.eig_final)[(0, 0)][0][6]
    check(abs(inf_bin - 100.0 / 15) < 1e-12, "fixture: the inf eigenvalue counts in the >100 bin")

    rc, out, err = run_report(d)
    check(rc == 0, f"report exits 0 (got {rc})")
    check("Traceback" not in err, "no traceback on stderr")
    warns = [line for line in err.splitlines() if "warning" in line]
    check(len(warns) == 2, f"two warnings on stderr (got {len(warns)})")
    check(any("seed9999.h5" in w and "not a seqeig run file" in w for w in warns),
          "warning names the non-run HDF5 file")
    check(any("seed7.h5" in w and "cannot open" in w for w in warns),
          "warning names the file that cannot be opened")
    check(".tmp" not in err, "the leftover .tmp file is not even looked at")

    path = os.path.join(d, "summary.md")
    if not check(os.path.isfile(path), "summary.md written"):
        return
    md = open(path, encoding="utf-8").read()
    check(md.startswith("# mqar / small\n"), "title names task and preset")
    check(re.search(r"\bnan\b", md, re.I) is None, "no NaN in summary.md")
    for m in models:
        check(m in md, f"summary.md mentions {m}")
    check("population" in md, "summary says which std (population)")
    check("excluded from the trained averages" in md,
          "summary says unfinished runs are excluded from trained spectra")
    check("percent_std" in md, "summary points to the within-run std in the files")

    tables = md_tables(md)
    info = {row[0]: row[1] for row in tables[0][2]}
    check(info.get("task") == "mqar" and info.get("preset") == "small",
          "header: task mqar, preset small")
    check(info.get("seeds") == "1919, 2222", f"header: seeds 1919, 2222 (got {info.get('seeds')})")
    check(info.get("runs", "").startswith("4 "), "header: 4 runs")
    check(info.get("radius thresholds") == "0.1, 0.5, 0.9, 1, 10, 100", "header: thresholds")
    check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info.get("generated", "")) is not None,
          "header: generation time in ISO 8601 UTC")
    check("test accuracy > 0.99" in info.get("stop criterion", ""), "header: stop criterion")

    acc = [t for t in tables if "final test acc" in t[1]]
    if check(len(acc) == 1, "one accuracy table"):
        _, header, rows = acc[0]
        col = {name: i for i, name in enumerate(header)}
        byname = {r[0]: r for r in rows}
        check(list(byname) == models, f"accuracy table rows in model order (got {list(byname)})")
        for m in models:
            rs = [runs[(m, s)] for s in (1919, 2222)]
            fin = [r for r in rs if r.status in ("completed", "stopped_early")]
            row = byname.get(m)
            if not check(row is not None, f"{m}: accuracy row present"):
                continue
            counts = " / ".join(str(sum(r.status == s for r in rs))
                                for s in ("completed", "stopped_early", "running", "failed"))
            check(row[col["runs"]] == "2" and
                  row[col["completed / stopped early / running / failed"]] == counts,
                  f"{m}: run counts {counts}")
            check(row[col["finished"]] == str(len(fin)), f"{m}: {len(fin)} finished")
            final = [float(r.test_acc[-1]) for r in fin]
            best = [float(max(r.test_acc)) for r in fin]
            for name, vals in (("final test acc", final), ("best test acc", best)):
                mu, sd = pm(vals)
                check(matches_pm(row[col[name]], mu, sd, 4),
                      f"{m}: {name} {mu:.4f} ± {sd:.4f} (report: {row[col[name]]})")
            passed = sum(max(r.test_acc) > r.stop_criterion for r in rs)
            check(row[col["passed stop"]] == f"{passed} / 2", f"{m}: passed stop {passed} / 2")
            mu, sd = pm([r.step for r in fin])
            check(matches_pm(row[col["steps"]], mu, sd, 0), f"{m}: steps {mu:.0f} ± {sd:.0f}")
            mu, sd = pm([r.wall_s for r in fin])
            check(matches_pm(row[col["wall time (s)"]], mu, sd, 1),
                  f"{m}: wall time {mu:.1f} ± {sd:.1f}")
            n_params = sum(int(np.prod(s)) for s in rs[0].params.values())
            check(row[col["params"]] == f"{n_params:,}", f"{m}: params {n_params:,}")

    per_run = [t for t in tables if "last test acc" in t[1]]
    if check(len(per_run) == 1 and len(per_run[0][2]) == 4, "per-run table with 4 runs"):
        rows = {(r[0], r[1]): r for r in per_run[0][2]}
        r = rows.get(("mamba2", "2222"))
        check(r is not None and r[2] == "running" and "no trained spectra" in r[-1],
              "per-run table: mamba2/2222 running, marked without trained spectra")
        r = rows.get(("sm-attention", "2222"))
        check(r is not None and r[2] == "stopped_early" and r[3] == "300 / 500",
              "per-run table: sm-attention/2222 stopped early at 300 / 500")

    # Bin tables: one per (model, layer), rows head x {init, trained}.
    n_checked = 0
    for m in models:
        rs = [runs[(m, s)] for s in (1919, 2222)]
        per = {"init": [run_percent_mean(r.eig_init) for r in rs],
               "trained": [run_percent_mean(r.eig_final) for r in rs if r.eig_final is not None]}
        for layer in range(2):
            t = [t for t in tables if t[0] == f"{m}, layer {layer}"]
            if not check(len(t) == 1 and t[0][1][3:] == BIN_LABELS,
                         f"{m} layer {layer}: bin table with the 7 bin labels"):
                continue
            rows = {(r[0], r[1]): r for r in t[0][2]}
            ok = True
            for h in range(2):
                for when in ("init", "trained"):
                    row = rows.get((str(h), when))
                    vals = [p[(layer, h)] for p in per[when]]
                    if row is None or row[2] != str(len(vals)):
                        ok = False
                        print(f"       {m} L{layer} H{h} {when}: row missing or wrong n")
                        continue
                    for k in range(7):
                        mu, sd = pm([v[k] for v in vals])
                        n_checked += 1
                        if not matches_pm(row[3 + k], mu, sd, 1):
                            ok = False
                            print(f"       {m} L{layer} H{h} {when} {BIN_LABELS[k]}: "
                                  f"report {row[3 + k]}, expected {mu:.1f} ± {sd:.1f}")
            check(ok, f"{m} layer {layer}: init (n={len(per['init'])}) and trained "
                  f"(n={len(per['trained'])}) mean ± std over seeds for 2 heads x 7 bins")
    check(n_checked == 2 * 2 * 2 * 2 * 7, f"{n_checked} bin cells compared")

    # stdout table
    for m in models:
        fin = [r for r in (runs[(m, 1919)], runs[(m, 2222)])
               if r.status in ("completed", "stopped_early")]
        mu, sd = pm([float(r.test_acc[-1]) for r in fin])
        line = [ln for ln in out.splitlines() if ln.startswith(m + " ")]
        check(len(line) == 1 and f"{mu:.4f} ± {sd:.4f}" in line[0],
              f"stdout: {m} row with accuracy {mu:.4f} ± {sd:.4f}")

    # Figures
    pngs = ["bins_sm-attention.png", "bins_mamba2.png", "bins_trained_all.png",
            "learning_curves.png", "bins_history_sm-attention.png", "bins_history_mamba2.png"]
    for name in pngs:
        p = os.path.join(d, name)
        if not check(os.path.isfile(p), f"{name} exists"):
            continue
        size = os.path.getsize(p)
        wh = png_info(p)
        check(wh is not None and wh[0] >= 600 and wh[1] >= 400 and size > 20000,
              f"{name}: valid PNG {wh[0] if wh else '?'}x{wh[1] if wh else '?'} px, "
              f"{size} bytes")
        check(name in md, f"summary.md refers to {name}")
    for name in ("bins_sm-attention.png", "bins_trained_all.png", "bins_history_mamba2.png"):
        p = os.path.join(d, name)
        if os.path.isfile(p):
            counts = {c: colour_pixels(p, rgb) for c, rgb in TAB_RGB.items()}
            check(all(v >= 50 for v in counts.values()),
                  f"{name}: all 7 bin colours drawn ({min(counts.values())}+ px each)")

    # --title
    rc, _, err = run_report(d, "--title", "MQAR small test")
    md = open(path, encoding="utf-8").read()
    check(rc == 0 and md.startswith("# MQAR small test\n"), "--title replaces the title")


def check_errors(base):
    print("error cases")
    missing = os.path.join(base, "does-not-exist")
    rc, out, err = run_report(missing)
    check(rc == 2 and "no such directory" in err and "Traceback" not in err,
          f"missing directory: exit 2 and a message (got {rc}: {err.strip()!r})")
    check(len(err.strip().splitlines()) == 1, "missing directory: one line on stderr")

    empty = os.path.join(base, "empty")
    os.makedirs(os.path.join(empty, "mamba2"))
    rc, out, err = run_report(empty)
    check(rc == 2 and "no run files" in err and "Traceback" not in err,
          f"empty directory: exit 2 and a message (got {rc}: {err.strip()!r})")
    check(not os.path.exists(os.path.join(empty, "summary.md")), "empty directory: no summary.md")

    # Only unusable files: a non-HDF5 file and a seqeig-run file whose
    # percentages have the wrong number of bins.
    bad = os.path.join(base, "bad")
    os.makedirs(os.path.join(bad, "mamba2"))
    with open(os.path.join(bad, "mamba2", "seed1.h5"), "w") as f:
        f.write("garbage")
    with h5py.File(os.path.join(bad, "mamba2", "seed2.h5"), "w") as f:
        f.attrs["format"] = "seqeig-run"
        f.create_dataset("spectra/init/percent_mean", data=np.zeros((2, 2, 5)))
    rc, out, err = run_report(bad)
    check(rc == 2 and "Traceback" not in err, f"only unusable files: exit 2 (got {rc})")
    check("malformed" in err and "seed2.h5" in err, "malformed run file: warning names it")
    check("no" in err.splitlines()[-1] and "run file" in err.splitlines()[-1],
          "only unusable files: final message says there is no run file")


def main(argv):
    keep = None
    if len(argv) == 3 and argv[1] == "--keep":
        keep = argv[2]
    elif len(argv) != 1:
        print("usage: test_report.py [--keep DIR]", file=sys.stderr)
        return 2
    base = keep or tempfile.mkdtemp(prefix="seqeig-report-")
    if keep:
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(base)
    try:
        check_scenario(base)
        check_errors(base)
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
    if FAILURES:
        print(f"test_report: {len(FAILURES)} check(s) FAILED")
        return 1
    print("test_report: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
