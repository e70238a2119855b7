#!/usr/bin/python3
"""Bad input ends in one clear message and a non-zero exit: damaged run
files, nonsense configs and flags, impossible sizes, unusual files.

Each check reproduces a failure of an earlier build (a crash, a hang, a
silent acceptance or a silent exit) and asserts the clean behaviour: exit
code, the message, no signal, no half-written results.  Runs build/seqeig
(path in $SEQEIG) in a temporary directory.  Usage:
    /usr/bin/python3 tests/e2e/test_reliability.py [--keep DIR]
"""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_cli import tiny_config  # noqa: E402

SEQEIG = os.path.abspath(os.environ.get("SEQEIG", "build/seqeig"))
N_CHECKS = 0


def check(cond, what):
    global N_CHECKS
    if not cond:
        print(f"FAIL: {what}")
        sys.exit(1)
    N_CHECKS += 1
    print(f"ok: {what.split(' (got ')[0]}")


def run(*args, timeout=300):
    p = subprocess.run([SEQEIG, *args], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def one_message(rc, err, want_rc, want, what):
    """Exit want_rc (never a signal), `want` in stderr, one message."""
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("seqeig: notice:")]
    check(rc == want_rc and want in err and len(lines) == 1,
          f"{what}: exit {want_rc} with one message naming '{want}' (got {rc}: {err.strip()[:300]})")


def trained_run(d, name, steps=20, **kw):
    cfg = tiny_config(os.path.join(d, name + ".yaml"), steps=steps, eval_every=10, **kw)
    out = os.path.join(d, name + ".h5")
    rc, _, err = run("train", "--config", cfg, "--out", out, "--quiet", "--threads", "1")
    check(rc == 0, f"{name}: a reference run trains (got {rc}: {err[-300:]})")
    return cfg, out


def damaged(src, dst, edit):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def set_attr(path, name, value):
    def edit(f):
        obj, _, attr = name.rpartition("@")
        del f[obj].attrs[attr]
        f[obj].attrs[attr] = value
    return edit


def test_array_attributes(d, run_file):
    """A scalar attribute replaced by an array must not be read into one value."""
    cases = [("/@seed", np.arange(4, dtype=np.int64)), ("/@step", np.array([20, 20], dtype=np.int64)),
             ("/@format_version", np.ones(3, dtype=np.int64)), ("/@wall_s", np.zeros(5)),
             ("/checkpoint@step", np.array([20, 1], dtype=np.int64)),
             ("/@task", np.array([b"mqar", b"mqar"], dtype=h5py.string_dtype())),
             ("/@status", np.array(["running"] * 3, dtype=h5py.string_dtype()))]
    for i, (name, value) in enumerate(cases):
        p = damaged(run_file, os.path.join(d, f"array{i}.h5"), set_attr(run_file, name, value))
        # seqeig info reads no checkpoint; spectra and resume do
        cmds = [["spectra", p, "--threads", "1"]] + ([] if name.startswith("/checkpoint") else [["info", p]])
        for cmd in cmds:
            rc, _, err = run(*cmd)
            one_message(rc, err, 2, "not a single", f"{name} as an array, seqeig {cmd[0]}")
    # a string where a number belongs, and a number where a string belongs
    p = damaged(run_file, os.path.join(d, "typed.h5"), set_attr(run_file, "/@seed", "1919"))
    rc, _, err = run("info", p)
    one_message(rc, err, 2, "not a single number", "/@seed as a string")
    p = damaged(run_file, os.path.join(d, "typed2.h5"), set_attr(run_file, "/@task", np.int64(3)))
    rc, _, err = run("info", p)
    one_message(rc, err, 2, "not a single readable string", "/@task as a number")
    p = damaged(run_file, os.path.join(d, "yaml.h5"),
                lambda f: (f.__delitem__("config/yaml"), f.create_dataset("config/yaml", data=np.arange(3))))
    rc, _, err = run("info", p)
    one_message(rc, err, 2, "not one variable-length string", "/config/yaml as numbers")


def test_nonsense_checkpoints(d, cfg, run_file):
    """Values no run can have are damage: refused, never resumed."""
    def status_running(f):
        del f.attrs["status"]
        f.attrs["status"] = "running"
    unfinished = damaged(run_file, os.path.join(d, "unfinished.h5"), status_running)
    cases = [("weird status", set_attr(run_file, "/@status", "weird"), "status 'weird'"),
             ("negative step", lambda f: (set_attr(run_file, "/@step", np.int64(-6))(f),
                                          set_attr(run_file, "/checkpoint@step", np.int64(-6))(f)), "step -6"),
             ("step beyond the run", lambda f: (set_attr(run_file, "/@step", np.int64(10**12))(f),
                                                set_attr(run_file, "/checkpoint@step", np.int64(10**12))(f)),
              "step 1000000000000 of total_steps 20"),
             ("checkpoint step differs", set_attr(run_file, "/checkpoint@step", np.int64(7)), "/checkpoint"),
             ("unknown method", set_attr(run_file, "/spectra@method", "magic"), "method 'magic'"),
             ("spectra shape", set_attr(run_file, "/spectra@layers", np.int64(1 << 40)), "not plausible"),
             ("eval steps out of order", lambda f: f["metrics/eval/step"].__setitem__(1, 5), "steps must rise")]
    for name, edit, want in cases:
        p = damaged(unfinished, os.path.join(d, "ck_" + name.replace(" ", "_") + ".h5"), edit)
        before = open(p, "rb").read()
        if not name.startswith("checkpoint"):  # seqeig info reads no checkpoint
            rc, _, err = run("info", p)
            one_message(rc, err, 2, want, f"{name}: seqeig info")
        rc, _, err = run("train", "--config", cfg, "--out", p, "--resume", "--quiet", "--threads", "1")
        check(rc == 2 and want in err and open(p, "rb").read() == before,
              f"{name}: train --resume refuses it and leaves the file as it was (got {rc}: {err.strip()[:200]})")


def test_spectra_tokens_outside_vocabulary(d, run_file):
    p = damaged(run_file, os.path.join(d, "tokens.h5"),
                lambda f: f["spectra/inputs"].__setitem__((0, 3), 1000))
    rc, _, err = run("spectra", p, "--threads", "1")
    one_message(rc, err, 2, "outside the model's vocabulary", "seqeig spectra on a token outside the vocabulary")


def test_config_acceptance(d):
    base = open(tiny_config(os.path.join(d, "base.yaml"))).read()
    with_train_seed = base.replace("train:\n", "train:\n  seed: 3\n")
    cases = {
        "empty": ("", "no dataset: section"),
        "comments only": ("# nothing\n", "no dataset: section"),
        "no model": (base[:base.index("model:")], "no model: section"),
        "nan stop": (base.replace("stop_criterion: 2.0", "stop_criterion: .nan"), "train.stop_criterion"),
        "infinite lr": (base.replace("lr: 3.0e-3", "lr: .inf"), "must be a finite number"),
        "negative stop": (base.replace("stop_criterion: 2.0", "stop_criterion: -1"), "must be >= 0"),
        "seed and train.seed": (with_train_seed, "give it once"),
        "train.seed and seed": (with_train_seed.replace("seed: 7\n", "") + "seed: 8\n", "give it once"),
    }
    for name, (text, want) in cases.items():
        cfg = os.path.join(d, "cfg_" + name.replace(" ", "_") + ".yaml")
        with open(cfg, "w") as f:
            f.write(text)
        out = cfg[:-5] + ".h5"
        rc, _, err = run("train", "--config", cfg, "--out", out, "--quiet")
        one_message(rc, err, 2, want, f"config '{name}'")
        check(not os.path.exists(out), f"config '{name}': no run file")


def test_impossible_sizes(d):
    cfg = tiny_config(os.path.join(d, "sizes.yaml"))
    out = os.path.join(d, "sizes.h5")
    rc, _, err = run("train", "--config", cfg, "--out", out, "--quiet", "--set", "train.batch_size=2000000000")
    one_message(rc, err, 1, "out of memory for the training batch", "train.batch_size = 2e9")
    check(not os.path.exists(out), "train.batch_size = 2e9: no run file")


def test_long_strings(d):
    """A 1022-character data_dir is stored whole, and the run resumes."""
    cfg = tiny_config(os.path.join(d, "long.yaml"), steps=30)
    out = os.path.join(d, "long.h5")
    long_dir = "/" + "x" * 1021
    rc, _, err = run("train", "--config", cfg, "--out", out, "--quiet", "--threads", "1", "--max-steps", "10",
                     "--set", f"dataset.data_dir={long_dir}")
    check(rc == 0, f"a run with a 1022-character dataset.data_dir starts (got {rc}: {err[-300:]})")
    with h5py.File(out, "r") as f:
        check(long_dir in f["config/yaml"][()].decode(), "the stored config holds the whole string")
    rc, _, err = run("train", "--config", cfg, "--out", out, "--quiet", "--threads", "1", "--resume",
                     "--set", f"dataset.data_dir={long_dir}")
    check(rc == 0, f"and it resumes to the end (got {rc}: {err[-300:]})")
    rc, _, err = run("train", "--config", cfg, "--out", os.path.join(d, "long2.h5"), "--quiet", "--max-steps", "10",
                     "--set", f"dataset.data_dir={long_dir}")
    rc, _, err = run("train", "--config", cfg, "--out", os.path.join(d, "long2.h5"), "--quiet", "--resume",
                     "--set", f"dataset.data_dir={long_dir}y")
    check(rc == 2 and "dataset.data_dir" in err,
          f"strings that differ only after 1000 characters are told apart on resume (got {rc}: {err[-200:]})")


def test_out_paths(d):
    cfg = tiny_config(os.path.join(d, "paths.yaml"))
    rc, _, err = run("train", "--config", cfg, "--out", "", "--quiet")
    one_message(rc, err, 2, "needs a file name", "train --out ''")
    rc, _, err = run("train", "--config", cfg, "--out", os.path.join(d, "p" * 5000 + ".h5"), "--quiet")
    one_message(rc, err, 2, "longer than 4000 characters", "train --out of 5000 characters")
    rc, _, err = run("spectra", "x.h5", "--out", "")
    one_message(rc, err, 2, "needs a file name", "spectra --out ''")


def main():
    keep = sys.argv[sys.argv.index("--keep") + 1] if "--keep" in sys.argv else None
    d = keep or tempfile.mkdtemp(prefix="seqeig-reliability-")
    os.makedirs(d, exist_ok=True)
    try:
        cfg, run_file = trained_run(d, "ref")
        for name, fn, args in [("array attributes", test_array_attributes, (d, run_file)),
                               ("nonsense checkpoints", test_nonsense_checkpoints, (d, cfg, run_file)),
                               ("spectra tokens", test_spectra_tokens_outside_vocabulary, (d, run_file)),
                               ("config acceptance", test_config_acceptance, (d,)),
                               ("impossible sizes", test_impossible_sizes, (d,)),
                               ("long strings", test_long_strings, (d,)),
                               ("out paths", test_out_paths, (d,))]:
            print(f"== {name}")
            fn(*args)
    finally:
        if not keep:
            shutil.rmtree(d, ignore_errors=True)
    print(f"tests/e2e/test_reliability.py: {N_CHECKS} checks passed")


if __name__ == "__main__":
    main()
