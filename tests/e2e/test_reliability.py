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
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_data import write_imdb  # noqa: E402
import test_cli  # noqa: E402
from test_cli import SEQEIG, check, run, tiny_config  # noqa: E402,F401  (one check counter, one runner)


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


def without_crc(*objs):
    """An edit dropping the crc32 checksum of objs, as in a file of an
    earlier build (which seqeig reads unverified): a hand edit of their
    values then reaches the checks of what the values mean."""
    def edit(f):
        for obj in objs:
            del f[obj].attrs["crc32"]
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
             ("checkpoint step differs", lambda f: (without_crc("/checkpoint")(f),
                                                    set_attr(run_file, "/checkpoint@step", np.int64(7))(f)),
              "does not match the run"),
             ("unknown method", set_attr(run_file, "/spectra@method", "magic"), "method 'magic'"),
             ("spectra shape", set_attr(run_file, "/spectra@layers", np.int64(1 << 40)), "not plausible"),
             ("eval steps out of order", lambda f: (without_crc("metrics/eval/step")(f),
                                                    f["metrics/eval/step"].__setitem__(1, 5)), "steps must rise")]
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
                lambda f: (without_crc("spectra/inputs")(f), f["spectra/inputs"].__setitem__((0, 3), 1000)))
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
    one_message(rc, err, 2, "the run needs about", "train.batch_size = 2e9 (refused by the memory estimate)")
    check(not os.path.exists(out), "train.batch_size = 2e9: no run file")


def test_huge_models(d):
    """A model that cannot fit is refused at once with the estimate (it used to hang in parameter lookup)."""
    cfg = tiny_config(os.path.join(d, "huge.yaml"))
    out = os.path.join(d, "huge.h5")
    t0 = time.time()
    rc, _, err = run("train", "--config", cfg, "--out", out, "--quiet", "--set", "model.num_layers=1000000", timeout=60)
    one_message(rc, err, 2, "the run needs about", "model.num_layers = 10^6")
    check("more than this machine's" in err and time.time() - t0 < 20 and not os.path.exists(out),
          f"... naming the machine's memory, within seconds, no run file ({time.time() - t0:.1f} s)")


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


def test_damaged_string_descriptor(d, run_file):
    """/config/yaml is a variable-length string: its descriptor (length, heap
    address, object index) sits in the dataset's raw data, unchecked by
    HDF5.  A damaged length made `seqeig info` allocate and copy it (3.3 GB
    resident for a 150 kB file, found by fuzz/fuzz_runfile.c), a shorter one
    cut the config silently, a wrong index read another object."""
    import struct
    with h5py.File(run_file, "r") as f:
        at = f["config/yaml"].id.get_offset()
    raw = open(run_file, "rb").read()
    length, heap, index = struct.unpack("<IQI", raw[at:at + 16])
    cases = [("length 3 GB", (3 << 30, heap, index), "claims 3221225472 bytes, more than the whole file"),
             ("length 3", (3, heap, index), f"claims 3 bytes but its global heap object holds {length}"),
             ("index 999", (length, heap, 999), "names object 999 of the global heap collection"),
             ("address past the end", (length, 1 << 40, index),
              f"of {length} bytes points to byte 1099511627776, where the file")]
    for name, desc, want in cases:
        p = os.path.join(d, "desc_" + name.replace(" ", "_") + ".h5")
        with open(p, "wb") as f:
            f.write(raw[:at] + struct.pack("<IQI", *desc) + raw[at + 16:])
        for cmd in (["info", p, "--config"], ["spectra", p, "--threads", "1"]):
            r = subprocess.run([SEQEIG, *cmd], capture_output=True, text=True, timeout=60, preexec_fn=no_runaway)
            one_message(r.returncode, r.stderr, 2, f"dataset '/config/yaml' is damaged: its string {want}",
                        f"/config/yaml descriptor with {name}: seqeig {cmd[0]}")


def test_heap_collection_with_damaged_reserved_bytes(d, run_file):
    """HDF5 checks only "GCOL" and the version of a global heap collection,
    not the three reserved bytes after them, which the heap check searched
    for too: a collection with a flipped reserved bit and a shrunk size was
    never checked and HDF5 copied past its end (SIGSEGV in `seqeig info`;
    found by fuzz/fuzz_runfile.c)."""
    import struct
    raw = bytearray(open(run_file, "rb").read())
    at = raw.find(b"GCOL\x01\x00\x00\x00")
    size = struct.unpack("<Q", raw[at + 8:at + 16])[0]
    p, last = 16, None
    while p + 16 <= size:
        idx, osz = struct.unpack("<H", raw[at + p:at + p + 2])[0], struct.unpack("<Q", raw[at + p + 8:at + p + 16])[0]
        if idx == 0:
            break
        last = p
        p += 16 + ((osz + 7) & ~7)
    check(at > 0 and last is not None, "the reference run has a global heap collection with objects")
    raw[at + 7] = 0x93  # a reserved byte
    raw[at + 8:at + 16] = struct.pack("<Q", last + 16 + 4)  # the last object now ends past the collection
    bad = os.path.join(d, "gcol_reserved.h5")
    open(bad, "wb").write(raw)
    for cmd in (["info", bad], ["spectra", bad, "--threads", "1"]):
        rc, _, err = run(*cmd)
        one_message(rc, err, 2, "damaged file: object",
                    f"heap collection with a damaged reserved byte: seqeig {cmd[0]}")


def test_missing_packages(d):
    """On a machine without the libraries, `make` died in the compiler
    (hdf5.h: No such file or directory).  Now every compiling target checks
    the Debian packages first (scripts/deps.sh --check) and stops with the
    command that installs them; a package that cannot exist fakes a missing one."""
    root = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    p = subprocess.run(["bash", os.path.join(root, "scripts", "deps.sh"), "--check", "build"], env=env,
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, f"deps.sh --check build: the build's packages are installed (got {p.returncode}: "
          f"{p.stdout.strip()[:300]})")
    env["SEQEIG_DEPS_EXTRA"] = "nonexistent-pkg-xyz"
    install = "apt-get install -y --no-install-recommends nonexistent-pkg-xyz"
    p = subprocess.run(["bash", os.path.join(root, "scripts", "deps.sh"), "--check", "build"], env=env,
                       capture_output=True, text=True, timeout=60)
    check(p.returncode == 1 and "missing packages: nonexistent-pkg-xyz" in p.stdout and install in p.stdout,
          f"deps.sh --check with a missing package: exit 1 and the apt-get line (got {p.returncode}: "
          f"{(p.stdout + p.stderr).strip()[:300]})")
    build = os.path.join(d, "build-missing")
    for target in ("all", f"{build}/test_seqeig"):
        p = subprocess.run(["make", "-C", root, f"BUILD={build}", target], env=env, capture_output=True, text=True,
                           timeout=600)
        out = p.stdout + p.stderr
        check(p.returncode != 0 and install in out and "-c src/" not in out and "error:" not in out
              and not os.path.exists(build),
              f"make {os.path.basename(target)} with a missing package: stops before compiling, printing the "
              f"install command (got {p.returncode}: {out.strip()[-400:]})")
    shutil.rmtree(build, ignore_errors=True)


def flip_bit(path, offset, bit):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))


def data_bytes(path):
    """(start, end, dataset) of the bytes holding each dataset's values in
    the file: contiguous data whole, of chunked (1-D) series only the rows
    inside the dataset's extent."""
    out = []
    with h5py.File(path, "r") as f:
        def visit(name, o):
            if not isinstance(o, h5py.Dataset):
                return
            if o.chunks is None:
                if o.id.get_offset() is not None:
                    out.append((o.id.get_offset(), o.id.get_offset() + o.id.get_storage_size(), "/" + name))
                return
            for i in range(o.id.get_num_chunks()):
                c = o.id.get_chunk_info(i)
                rows = min(o.chunks[0], o.shape[0] - c.chunk_offset[0])
                out.append((c.byte_offset, c.byte_offset + rows * o.dtype.itemsize, "/" + name))
        f.visititems(visit)
    return out


def test_checkpoint_bit_flips(d, cfg):
    """A flipped bit in a checkpoint array was resumed from (66 of 80
    flipped files read "successfully"), and one in the global heap crashed
    libhdf5 (SIGSEGV in H5HG_read).  Every array now carries a crc32 that
    names the damaged dataset, and no flip anywhere in the file kills
    seqeig by a signal or hangs it."""
    run_file = os.path.join(d, "flips.h5")  # unfinished, so that --resume reads its checkpoint
    rc, _, err = run("train", "--config", cfg, "--out", run_file, "--quiet", "--threads", "1", "--max-steps", "10")
    check(rc == 0, f"an unfinished run to damage (got {rc}: {err[-300:]})")
    with h5py.File(run_file, "r") as f:
        arrays = {}
        f.visititems(lambda n, o: arrays.update({n: o}) if isinstance(o, h5py.Dataset) else None)
        bad = [n for n, o in arrays.items()
               if zlib.crc32(o[()] if o.dtype.kind == "O" else np.ascontiguousarray(o[()]).tobytes())
               != o.attrs["crc32"]]
        check(len(arrays) > 40 and not bad,
              f"h5py reads all {len(arrays)} datasets and each crc32 is zlib.crc32 of its bytes (got {bad[:3]})")
        ck, opt = f["checkpoint"].attrs, f["checkpoint/optimizer"].attrs
        check(ck["crc32"] == zlib.crc32(struct.pack("<qdq", ck["step"], ck["loss_sum"], ck["loss_count"]))
              and opt["crc32"] == zlib.crc32(struct.pack("<q", opt["step"])),
              "/checkpoint and /checkpoint/optimizer crc32: of their scalar attributes' little-endian bytes")
        offsets = {n: (f[n].id.get_offset(), f[n].id.get_storage_size())
                   for n in ("checkpoint/params/layers.0.attention.Wqkv.weight",
                             "checkpoint/optimizer/exp_avg_sq/decoder.weight")}
        names = list(arrays)

    def resume(p):
        return run("train", "--config", cfg, "--out", p, "--resume", "--quiet", "--threads", "1", timeout=120)

    # (a) one bit of one array
    for name, (offset, size) in offsets.items():
        p = os.path.join(d, "flip_" + name.rsplit("/", 2)[-2] + ".h5")
        shutil.copy(run_file, p)
        flip_bit(p, offset + size // 2 + 1, 3)
        before = open(p, "rb").read()
        rc, _, err = resume(p)
        one_message(rc, err, 2, f"dataset '/{name}' is damaged", f"flipped bit in {name}: train --resume")
        check(open(p, "rb").read() == before and not os.path.exists(p + ".tmp"),
              f"flipped bit in {name}: the file is left as it was")
        rc, _, err = run("spectra", p, "--threads", "1")
        if name.startswith("checkpoint/params"):
            one_message(rc, err, 2, f"dataset '/{name}' is damaged", f"flipped bit in {name}: seqeig spectra")
            check(open(p, "rb").read() == before, f"flipped bit in {name}: seqeig spectra leaves the file as it was")
        else:  # spectra reads the weights only
            check(rc == 0, f"flipped bit in {name}: seqeig spectra, which needs no moments, works (got {rc})")
    p = damaged(run_file, os.path.join(d, "flip_loss_sum.h5"), set_attr(run_file, "/checkpoint@loss_sum", 1.5))
    rc, _, err = resume(p)
    one_message(rc, err, 2, "/checkpoint is damaged: its attributes step, loss_sum, loss_count",
                "/checkpoint@loss_sum changed: train --resume")
    p = damaged(run_file, os.path.join(d, "flip_old.h5"),
                without_crc(*[n for n in names if n.startswith("checkpoint")] + ["checkpoint", "checkpoint/optimizer"]))
    rc, _, err = resume(p)
    check(rc == 0, f"a checkpoint without crc32 (a file of an earlier build) still resumes (got {rc}: {err[-200:]})")

    # (b) 80 copies, one random bit flipped in each
    image = open(run_file, "rb").read()
    ranges = data_bytes(run_file)
    rng = random.Random(2510)
    reads = {"info": lambda n: not n.startswith("/checkpoint"),
             "spectra": lambda n: not n.startswith("/checkpoint/optimizer"), "resume": lambda n: True}
    counts = {cmd: {"refused": 0, "read": 0, "failed": 0} for cmd in reads}
    problems, in_values = [], 0
    p = os.path.join(d, "sweep.h5")
    for i in range(80):
        offset, bit = rng.randrange(len(image)), rng.randrange(8)
        inside = [n for a, b, n in ranges if a <= offset < b]
        in_values += bool(inside)
        for cmd in reads:
            with open(p, "wb") as f:
                f.write(image)
            flip_bit(p, offset, bit)
            where = f"flip {i} (byte {offset}, bit {bit}{', in ' + inside[0] if inside else ''}): seqeig {cmd}"
            try:
                rc, _, err = resume(p) if cmd == "resume" else run(cmd, p, *(["--threads", "1"] if cmd == "spectra"
                                                                          else []), timeout=120)
            except subprocess.TimeoutExpired:
                problems.append(f"{where}: no exit within 120 s")
                continue
            lines = [ln for ln in err.strip().splitlines() if not ln.startswith("seqeig: notice:")]
            if rc < 0:
                problems.append(f"{where}: killed by signal {-rc}")
            elif rc != 0 and len(lines) != 1:
                problems.append(f"{where}: exit {rc} with {len(lines)} lines on stderr: {err.strip()[:200]}")
            elif rc != 2 and any(reads[cmd](n) for n in inside):
                problems.append(f"{where}: damaged values it reads, but exit {rc}")
            counts[cmd]["refused" if rc == 2 else "read" if rc == 0 else "failed"] += 1
    check(not problems, f"80 files with one random bit flipped, 3 commands each: no signal, no hang, one message "
                        f"for every failure, damaged values always refused (got {problems[:5]})")
    print(f"flip sweep, 80 files ({in_values} flips in dataset values): " +
          "; ".join(f"{cmd}: {c['refused']} refused (exit 2), {c['read']} read, {c['failed']} other exits"
                    for cmd, c in counts.items()))


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
                               ("huge models", test_huge_models, (d,)),
                               ("file targets", test_file_targets, (d,)),
                               ("one writer", test_one_writer, (d,)),
                               ("disk full", test_disk_full, (d,)),
                               ("imdb special files", test_imdb_special_files, (d,)),
                               ("damaged string descriptor", test_damaged_string_descriptor, (d, run_file)),
                               ("heap collection reserved bytes", test_heap_collection_with_damaged_reserved_bytes,
                                (d, run_file)),
                               ("missing packages", test_missing_packages, (d,)),
                               ("checkpoint bit flips", test_checkpoint_bit_flips, (d, cfg))]:
            print(f"== {name}")
            fn(*args)
    finally:
        if not keep:
            shutil.rmtree(d, ignore_errors=True)
    print(f"tests/e2e/test_reliability.py: {test_cli.N_CHECKS} checks passed")


if __name__ == "__main__":
    main()
