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
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_data import write_imdb  # noqa: E402
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


def no_runaway():
    """For a child that may read without bound on a broken build: cap its
    memory (2 GiB) unless it runs under AddressSanitizer (which reserves
    terabytes of address space)."""
    if "ASAN_OPTIONS" not in os.environ:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_imdb_special_files(d):
    """A FIFO named *.txt blocked forever; a *.txt symlinked to /dev/zero was
    read without bound.  Both, and an oversized review, are one error naming
    the file, at once; a symlink to a regular review is still read."""
    preset = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "experiments",
                                           "imdb", "paper", "mamba2.yaml"))
    shrink = ["model.num_layers=1", "model.hidden_dim=16", "model.state_dim=8", "train.batch_size=2",
              "spectra.analysis_batch=2"]
    big = "x" * ((1 << 20) + 1)
    cases = [("FIFO", "train/pos/9_1.txt", lambda p: os.mkfifo(p), "not a regular file"),
             ("symlink to /dev/zero", "test/neg/9_1.txt", lambda p: os.symlink("/dev/zero", p), "not a regular file"),
             ("directory", "train/neg/dir.txt", lambda p: os.mkdir(p), "not a regular file"),
             ("file of 1 MiB + 1 byte", "test/pos/9_1.txt", lambda p: open(p, "w").write(big),
              "1048577 bytes, larger than the limit"),
             ("symlink to a review", "train/neg/9_1.txt",
              lambda p: os.symlink(os.path.join(os.path.dirname(p), "0_5.txt"), p), None)]
    for name, rel, make, want in cases:
        root = os.path.join(d, f"imdb_special{len(os.listdir(d))}")
        write_imdb(root)
        path = os.path.join(root, "aclImdb", rel)
        make(path)
        args = [SEQEIG, "train", "--config", preset, "--out", root + ".h5", "--quiet", "--threads", "1",
                "--max-steps", "1", "--set", f"dataset.data_dir={root}"]
        for kv in shrink:
            args += ["--set", kv]
        try:
            p = subprocess.run(args, capture_output=True, text=True, timeout=20, preexec_fn=no_runaway)
            rc, err = p.returncode, p.stderr
        except subprocess.TimeoutExpired:
            rc, err = None, "no exit within 20 s"
        if want is None:
            check(rc == 0, f"IMDb {name}: read like the file it points to (got {rc}: {err.strip()[:300]})")
        else:
            one_message(rc, err, 2, path + ": " + want, f"IMDb review that is a {name}, within 20 s")


def test_derived_keys(d):
    """On an epoch-based config, a derived key given explicitly is an error naming the conflict."""
    cfg = os.path.join(d, "epochs.yaml")
    with open(cfg, "w") as f:
        f.write("dataset:\n  _name_: listops\n  min_length: 10\n  max_length: 30\n  num_train_samples: 40\n"
                "  num_test_samples: 8\ntrain:\n  num_epochs: 2\n  batch_size: 8\nmodel:\n  num_layers: 1\n"
                "  hidden_dim: 16\n  state_dim: 16\n  vocab_size: 18\n  output_dim: 10\n  classifier: true\n"
                "  mixer_dim: 16\n  max_pos_embed: 32\nspectra:\n  analysis_batch: 4\n")
    for key in ("train.total_steps=4", "train.eval_every=3", "train.warmup_steps=2"):
        out = os.path.join(d, "epochs.h5")
        rc, _, err = run("train", "--config", cfg, "--out", out, "--quiet", "--set", key)
        one_message(rc, err, 2, "has no effect when train.num_epochs = 2", f"epoch-based config with --set {key}")
        check(not os.path.exists(out), f"--set {key}: no run file")
    rc, _, err = run("train", "--config", cfg, "--out", os.path.join(d, "epochs_ok.h5"), "--quiet")
    check(rc == 0, f"the same config without them trains (got {rc}: {err[-300:]})")


def test_file_targets(d):
    """--force never replaces what is not a regular file; a symlinked run file is written through."""
    cfg = tiny_config(os.path.join(d, "targets.yaml"), steps=20)
    targets = {"/dev/null": "a character device", d: "a directory"}
    fifo = os.path.join(d, "fifo.h5")
    os.mkfifo(fifo)
    targets[fifo] = "a FIFO"
    for path, kind in targets.items():
        st = os.stat(path)
        rc, _, err = run("train", "--config", cfg, "--out", path, "--force", "--quiet", timeout=60)
        one_message(rc, err, 2, f"is not a regular file ({kind})", f"train --force --out {kind}")
        check(os.stat(path).st_mode == st.st_mode, f"{kind} is left as it was")
    real, link = os.path.join(d, "real.h5"), os.path.join(d, "link.h5")
    rc, _, err = run("train", "--config", cfg, "--out", real, "--quiet", "--threads", "1", "--max-steps", "10")
    check(rc == 0, f"a run stopped at step 10 (got {rc}: {err[-200:]})")
    os.symlink(real, link)
    rc, _, err = run("train", "--config", cfg, "--out", link, "--quiet", "--threads", "1", "--resume")
    check(rc == 0, f"resumed through a symbolic link (got {rc}: {err[-200:]})")
    with h5py.File(real, "r") as f:
        status = f.attrs["status"]
    check(os.path.islink(link) and os.path.realpath(link) == os.path.realpath(real) and status == "completed",
          f"the link stays a link and its target holds the completed run (status {status})")
    check(not os.path.exists(real + ".tmp") and not os.path.exists(link + ".tmp"), "no temporary file is left")


def test_one_writer(d):
    """Two seqeig train on the same --out: the second is refused naming the first's pid; the lock goes with it."""
    cfg = tiny_config(os.path.join(d, "lock.yaml"), steps=4000, eval_every=1000)
    out = os.path.join(d, "lock.h5")
    first = subprocess.Popen([SEQEIG, "train", "--config", cfg, "--out", out, "--quiet", "--threads", "1"],
                             stderr=subprocess.PIPE, text=True)
    for _ in range(200):  # until the first run has its lock
        if os.path.exists(out + ".lock"):
            break
        time.sleep(0.05)
    rc, _, err = run("train", "--config", cfg, "--out", out, "--quiet", "--resume")
    one_message(rc, err, 2, f"another seqeig (pid {first.pid}) is writing", "a second writer of the same run file")
    first.send_signal(signal.SIGINT)
    first.wait(timeout=120)
    check(first.returncode == 130, f"the first run, interrupted, saved its checkpoint (rc {first.returncode})")
    check(not os.path.exists(out + ".lock"), "its lock file is gone")
    # a lock left by a killed run is stale: the next run takes it over
    with open(out + ".lock", "w") as f:
        f.write("999999\n")
    rc, _, err = run("train", "--config", cfg, "--out", out, "--quiet", "--resume", "--max-steps", "5")
    check(rc == 0, f"a stale lock file does not stop the next run (got {rc}: {err[-200:]})")


def test_disk_full(d):
    """Training onto a full file system: a clean error naming the errno, exit 1, the previous file intact."""
    if os.geteuid() != 0:
        print("note: disk-full check needs root (it mounts a small tmpfs): not run")
        return
    mnt = os.path.join(d, "full")
    os.makedirs(mnt)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", mnt], capture_output=True, text=True)
    check(r.returncode == 0, f"a 200 kB tmpfs mounts (got {r.returncode}: {r.stderr.strip()})")
    try:
        cfg = tiny_config(os.path.join(d, "full.yaml"), steps=40)
        out = os.path.join(mnt, "run.h5")
        rc, _, err = run("train", "--config", cfg, "--out", out, "--quiet", "--threads", "1")
        check(rc == 1 and "No space left on device" in err and len(err.strip().splitlines()) == 1,
              f"a full disk: exit 1 and one message naming ENOSPC, no crash (got {rc}: {err.strip()[:300]})")
        if os.path.exists(out):
            with h5py.File(out, "r") as f:
                check(f.attrs["format"] == "seqeig-run", "the run file on disk is a complete earlier one")
        check(not os.path.exists(out + ".tmp"), "no partial temporary file is left")
    finally:
        subprocess.run(["umount", mnt])


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
                               ("out paths", test_out_paths, (d,)),
                               ("derived keys", test_derived_keys, (d,)),
                               ("file targets", test_file_targets, (d,)),
                               ("one writer", test_one_writer, (d,)),
                               ("disk full", test_disk_full, (d,)),
                               ("imdb special files", test_imdb_special_files, (d,))]:
            print(f"== {name}")
            fn(*args)
    finally:
        if not keep:
            shutil.rmtree(d, ignore_errors=True)
    print(f"tests/e2e/test_reliability.py: {N_CHECKS} checks passed")


if __name__ == "__main__":
    main()
