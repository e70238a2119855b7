#!/usr/bin/python3
"""End-to-end tests of the seqeig CLI: training, run files, resume, errors.

Runs build/seqeig (path in $SEQEIG) on tiny MQAR configs in a temporary
directory and checks the run files with h5py.  Exits non-zero on the first
failed check; prints one line per check.  Usage:
    /usr/bin/python3 tests/e2e/test_cli.py [--keep DIR]
"""
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_data import write_cifar  # noqa: E402

SEQEIG = os.path.abspath(os.environ.get("SEQEIG", "build/seqeig"))
N_CHECKS = 0


def check(cond, what):
    global N_CHECKS
    if not cond:
        print(f"FAIL: {what}")
        sys.exit(1)
    N_CHECKS += 1
    print(f"ok: {what.split(' (got ')[0]}")  # the details are for failures


def run(*args, timeout=300, env_threads=None):
    env = dict(os.environ)
    if env_threads:
        env["OMP_NUM_THREADS"] = str(env_threads)
    p = subprocess.run([SEQEIG, *args], capture_output=True, text=True, timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr


def tiny_config(path, model="sm-attention", steps=60, eval_every=10, extra=""):
    """A seconds-long MQAR run: L 16, 2 kv pairs, vocabulary 32, d 16."""
    if model == "mamba2":
        m = ("  layer: mamba\n  version: mamba2\n  conv_dim: 4\n  glu: true\n"
             "  prenorm: true\n  dropout: 0.0\n")
    else:
        m = f"  layer: transformer\n  attention_fn: {model}\n  max_pos_embed: 16\n  dropout: 0.1\n"
        if model == "norm-attention":
            m = m.replace("max_pos_embed: 16", "max_pos_embed: 0\n  dim_conv: 4")
    text = f"""seed: 7
dataset:
  _name_: mqar
  input_seq_length: 16
  num_kv_pairs: 2
  vocab_size: 32
  num_train_examples: 500
  num_test_examples: 64
train:
  total_steps: {steps}
  batch_size: 16
  lr: 3.0e-3
  wd: 0.1
  eval_every: {eval_every}
  log_every: 5
  stop_criterion: 2.0
  cosine_anneal: true
  warmup_steps: 5
model:
{m}  num_layers: 2
  hidden_dim: 16
  state_dim: 16
  num_heads: 2
  vocab_size: 32
  output_dim: 32
spectra:
  analysis_batch: 8
{extra}"""
    with open(path, "w") as f:
        f.write(text)
    return path


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def params(path):
    with h5py.File(path, "r") as f:
        g = f["checkpoint/params"]
        return {k: g[k][()] for k in g}


def same_params(a, b):
    pa, pb = params(a), params(b)
    return pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)


def series(path, name):
    with h5py.File(path, "r") as f:
        return f[name][()]


def test_usage_errors(d):
    cfg = tiny_config(os.path.join(d, "ok.yaml"))
    cases = [
        ((), 2, "usage: seqeig"),
        (("bogus",), 2, "unknown command 'bogus'"),
        (("train",), 2, "--config FILE.yaml is required"),
        (("train", "--config", cfg, "--threads", "x"), 2, "--threads 'x'"),
        (("train", "--config", cfg, "--frobnicate"), 2, "unknown option '--frobnicate'"),
        (("train", "--config", os.path.join(d, "missing.yaml")), 2, "missing.yaml: cannot open"),
        (("train", "--config", cfg, "--set", "train.lr"), 2, "expected section.key=value"),
        (("train", "--config", cfg, "--resume", "--force"), 2, "exclude each other"),
        (("info",), 2, "which run file?"),
        (("info", os.path.join(d, "nope.h5")), 2, "nope.h5"),
        (("spectra", cfg), 2, "not an HDF5 file"),
        (("spectra", "x.h5", "--method", "eig"), 2, "unknown method"),
    ]
    for args, code, msg in cases:
        rc, out, err = run(*args)
        check(rc == code and msg in err, f"seqeig {' '.join(os.path.basename(a) for a in args)} -> exit {code}, "
              f"message '{msg}' (got {rc}: {err.strip()[:120]})")
    rc, out, _ = run("--help")
    check(rc == 0 and "train" in out and "spectra" in out and "info" in out, "seqeig --help lists the commands")
    for cmd in ("train", "info", "spectra"):
        rc, out, _ = run(cmd, "--help")
        check(rc == 0 and f"usage: seqeig {cmd}" in out, f"seqeig {cmd} --help")


def test_config_errors(d):
    base = open(tiny_config(os.path.join(d, "base.yaml"))).read()
    bad = {
        "unknown_key": (base.replace("  hidden_dim: 16", "  hiden_dim: 16"),
                        "unknown key 'model.hiden_dim'; did you mean 'model.hidden_dim'?"),
        "bad_type": (base.replace("  batch_size: 16", "  batch_size: sixteen"),
                     "train.batch_size: expected an integer, got 'sixteen'"),
        "bad_choice": (base.replace("attention_fn: sm-attention", "attention_fn: rnn"),
                       "invalid value 'rnn'"),
        "bad_value": (base.replace("  batch_size: 16", "  batch_size: 0"), "train.batch_size = 0: must be > 0"),
        "bad_eval_batch": (base.replace("  batch_size: 16", "  batch_size: 16\n  eval_batch_size: -1"),
                           "train.eval_batch_size = -1: must be >= 0"),
        "bad_model": (base.replace("  num_heads: 2", "  num_heads: 3"), "not divisible by num_heads = 3"),
        "too_long": (base.replace("max_pos_embed: 16", "max_pos_embed: 8"), "max_pos_embed = 8"),
        "unimplemented": (base.replace("  hidden_dim: 16", "  hidden_dim: 16\n  dual: true"),
                          "model.dual = true"),
        "bad_att_dropout": (base.replace("  hidden_dim: 16", "  hidden_dim: 16\n  att_dropout: 1.0"),
                            "att_dropout = 1: must lie in [0, 1)"),
        "bad_mqar": (base.replace("num_kv_pairs: 2", "num_kv_pairs: 9"), "dataset"),
    }
    for name, (text, msg) in bad.items():
        path = os.path.join(d, name + ".yaml")
        with open(path, "w") as f:
            f.write(text)
        out_h5 = os.path.join(d, name + ".h5")
        rc, _, err = run("train", "--config", path, "--out", out_h5, "--quiet")
        check(rc == 2 and msg in err and not os.path.exists(out_h5),
              f"config error {name}: exit 2, '{msg}', no run file (got {rc}: {err.strip()[:160]})")
        if name == "unknown_key":
            check(f"{name}.yaml:" in err, "the message names the file and line")
    rc, _, err = run("train", "--config", os.path.join(d, "base.yaml"), "--set", "model.hidden_dim=abc")
    check(rc == 2 and "expected an integer" in err, "--set with a bad type -> exit 2")
    # an impossible test set: a clear message with the memory it needed (it was a NULL dereference)
    out_h5 = os.path.join(d, "huge.h5")
    rc, _, err = run("train", "--config", os.path.join(d, "base.yaml"), "--out", out_h5, "--quiet",
                     "--set", "dataset.num_test_examples=1000000000")
    check(rc == 2 and "out of memory" in err and "GiB" in err and not os.path.exists(out_h5),
          f"an impossible MQAR test set: exit 2 naming the memory it needs (got {rc}: {err.strip()[:160]})")


def test_reference_config(d):
    """A config written with every key of the reference study's MQAR configs loads and trains."""
    path = os.path.join(d, "reference.yaml")
    with open(path, "w") as f:
        f.write("""seed: 1919
save: "./checkpoint/mqar-sm-attention"
dataset:
  name: "MQAR"
  _name_: "mqar"
  input_seq_length: 512
  num_kv_pairs: 64
  data_dir: ""
  fixed_size: True
train:
  total_steps: 40_000
  batch_size: 64
  lr: 0.00046416
  wd: 0.1
  eval_every: 200
  stop_criterion: 0.99 # accuracy
  cosine_anneal: True
  param_group: ~
  warmup: 4_000
model:
  input_dim: 1
  output_dim: 8_192
  layer: "transformer"
  attention_fn: "sm-attention"
  use_flash: True
  num_layers: 2
  hidden_dim: 128
  state_dim: 128
  num_heads: 1
  att_dropout: 0.0
  norm: "layer"
  embedding: True
  vocab_size: 8_192
  max_pos_embed: 512
  mixer: "none"
  mixer_dim: 128
  dropout: 0.1
  classifier: False
  pooling: "mean"
  dual: False
""")
    out = os.path.join(d, "reference.h5")
    rc, _, err = run("train", "--config", path, "--out", out, "--max-steps", "1", "--threads", "2",
                     "--set", "dataset.num_train_examples=0", "--set", "dataset.num_test_examples=64", timeout=600)
    check(rc == 0, f"the reference MQAR config trains a step (got {rc}: {err.strip()[-300:]})")
    check("use_flash is accepted but ignored" in err and "save is accepted but ignored" in err,
          "keys the reference has but seqeig ignores give a notice")
    with h5py.File(out, "r") as f:
        c = f["config"].attrs
        check(c["train.seed"] == 1919 and c["model.hidden_dim"] == 128 and c["dataset.input_seq_length"] == 512,
              "top-level seed and reference keys are recorded in /config")
        check(f["metrics/train/lr"][0] == 0.00046416 if len(f["metrics/train/lr"]) else True,
              "without warmup_steps the rate is constant (the reference's key quirk)")
        check(f.attrs["status"] == "running" and f.attrs["step"] == 1, "--max-steps leaves a resumable run")


def test_run_file(d):
    cfg = tiny_config(os.path.join(d, "run.yaml"), steps=40, eval_every=10)
    out = os.path.join(d, "run.h5")
    rc, _, err = run("train", "--config", cfg, "--out", out, "--threads", "2")
    check(rc == 0, f"tiny run completes (got {rc}: {err.strip()[-200:]})")
    with h5py.File(out, "r") as f:
        a = f.attrs
        check(a["format"] == "seqeig-run" and a["format_version"] == 1 and a["status"] == "completed"
              and a["task"] == "mqar" and a["model"] == "sm-attention" and a["seed"] == 7 and a["threads"] == 2,
              "root attributes")
        check(list(f["metrics/eval/step"][()]) == [10, 20, 30, 40], "one eval row every eval_every steps")
        for n in ("train_loss", "test_loss", "test_acc", "lr", "wall_s"):
            check(f[f"metrics/eval/{n}"].shape == (4,) and f[f"metrics/eval/{n}"].maxshape == (None,),
                  f"/metrics/eval/{n} is an extendible series with 4 rows")
        check(list(f["metrics/train/step"][()]) == list(range(5, 41, 5)), "a train row every log_every steps")
        check(f["spectra"].attrs["method"] == "dsf", "spectra method attribute")
        check(f["spectra/inputs"].shape == (8, 16) and f["spectra/init/eig"].shape == (8, 2, 2, 15)
              and f["spectra/final/eig"].shape == (8, 2, 2, 15), "spectra shapes (samples, layers, heads, L-1)")
        check(f["spectra/history/percent_mean"].shape == (4, 2, 2, 7), "bin history per evaluation")
        eig = f["spectra/final/eig"][()]
        check(not np.isnan(eig).any(), "no NaN eigenvalue")
        pm = f["spectra/final/percent_mean"][()]
        th = f["spectra/thresholds"][()]
        # independent bin count (closed at both ends, > 100 open)
        pct = np.zeros(eig.shape[:3] + (7,))
        edges = [0.0, *th]
        for k in range(6):
            pct[..., k] = ((eig >= edges[k]) & (eig <= edges[k + 1])).sum(-1)
        pct[..., 6] = (eig > th[-1]).sum(-1)
        pct *= 100.0 / eig.shape[-1]
        check(np.allclose(pct.mean(0), pm, rtol=0, atol=1e-12) and
              np.allclose(pct.std(0), f["spectra/final/percent_std"][()], rtol=0, atol=1e-12),
              "percent_mean / percent_std equal an independent count over /spectra/final/eig")
        check(np.array_equal(f["spectra/history/percent_mean"][-1], pm),
              "the last history row is the final spectrum (same weights)")
        names = set(f["checkpoint/params"])
        check("layers.0.attention.Wqkv.weight" in names and f["checkpoint/params/layers.0.attention.Wqkv.weight"].shape
              == (48, 16), "checkpoint parameters under state_dict names and (out, in) layout")
        check(set(f["checkpoint/optimizer/exp_avg"]) == names and f["checkpoint/optimizer"].attrs["step"] == 40,
              "AdamW moments for every parameter")
        y = f["config/yaml"].asstr()[()]
        check("hidden_dim: 16" in y and f["config"].attrs["model.hidden_dim"] == 16, "/config yaml and attributes")
    rc, out_txt, _ = run("info", out)
    check(rc == 0 and "status completed at step 40 of 40" in out_txt and "final" in out_txt, "seqeig info summary")
    rc, st, _ = run("info", out, "--status")
    check(rc == 0 and st.strip() == "completed", "seqeig info --status")
    rc, y2, _ = run("info", out, "--config")
    check(rc == 0 and y2 == y, "seqeig info --config prints the stored YAML")

    # Recomputing the spectra from the checkpoint gives the stored ones exactly.
    sp = os.path.join(d, "spectra.h5")
    rc, txt, err = run("spectra", out, "--out", sp)
    check(rc == 0 and "final" in txt, f"seqeig spectra prints the bins (got {rc}: {err.strip()[-200:]})")
    with h5py.File(out, "r") as f, h5py.File(sp, "r") as g:
        check(g.attrs["format"] == "seqeig-spectra", "spectra file format attribute")
        check(np.array_equal(f["spectra/init/eig"][()], g["spectra/init/eig"][()]),
              "spectra init recomputed from the seed equals the run's init spectra bit for bit")
        check(np.array_equal(f["spectra/final/eig"][()], g["spectra/final/eig"][()]),
              "spectra final recomputed from the checkpoint equals the run's final spectra bit for bit")
    rc, _, err = run("spectra", out, "--out", sp)
    check(rc == 2 and "refusing to overwrite" in err, "seqeig spectra does not overwrite its --out")

    # A finished run is never overwritten silently.
    before = sha(out)
    rc, _, err = run("train", "--config", cfg, "--out", out, "--quiet")
    check(rc == 2 and "refusing to overwrite" in err and sha(out) == before,
          "training onto a completed run: exit 2, file unchanged")
    rc, _, err = run("train", "--config", cfg, "--out", out, "--resume")
    check(rc == 0 and "nothing to do" in err and sha(out) == before, "--resume on a finished run does nothing")
    notrun = os.path.join(d, "notrun.h5")
    with h5py.File(notrun, "w") as f:
        f["x"] = 1
    before = sha(notrun)
    rc, _, err = run("train", "--config", cfg, "--out", notrun, "--quiet")
    check(rc == 2 and "not a readable seqeig run file" in err and sha(notrun) == before,
          "an unrelated HDF5 file at --out is not overwritten")
    rc, _, err = run("info", notrun)
    check(rc == 2 and "not a seqeig run file" in err, "seqeig info on a non-run HDF5 file -> exit 2")


def test_determinism_and_resume(d):
    cfg = tiny_config(os.path.join(d, "det.yaml"), steps=50, eval_every=10)
    a, b, c1 = (os.path.join(d, n) for n in ("a.h5", "b.h5", "c1.h5"))
    for path in (a, b):
        rc, _, _ = run("train", "--config", cfg, "--out", path, "--threads", "2", "--quiet")
        check(rc == 0, f"run {os.path.basename(path)}")
    check(same_params(a, b) and np.array_equal(series(a, "metrics/train/loss"), series(b, "metrics/train/loss"))
          and np.array_equal(series(a, "spectra/final/eig"), series(b, "spectra/final/eig")),
          "same seed and threads: bit-identical weights, losses and spectra")
    rc, _, _ = run("train", "--config", cfg, "--out", c1, "--threads", "1", "--quiet")
    check(rc == 0 and same_params(a, c1) and
          np.array_equal(series(a, "metrics/eval/test_loss"), series(c1, "metrics/eval/test_loss")),
          "1 and 2 threads: bit-identical weights and test losses")

    # Interrupted by --max-steps at a non-evaluation step, then resumed.
    r = os.path.join(d, "r.h5")
    rc, _, err = run("train", "--config", cfg, "--out", r, "--threads", "2", "--max-steps", "23", "--quiet")
    check(rc == 0 and h5py.File(r, "r").attrs["step"] == 23, "--max-steps 23 stops at step 23")
    rc, _, err = run("train", "--config", cfg, "--out", r, "--threads", "2", "--quiet")
    check(rc == 2 and "--resume" in err, "an unfinished run needs --resume or --force")
    rc, _, err = run("train", "--config", cfg, "--out", r, "--threads", "2", "--resume", "--quiet",
                     "--set", "train.lr=1e-3")
    check(rc == 2 and "1 setting differs from the run's (train.lr: 0.003 in the run, 0.001 now)" in err,
          f"resuming with another configuration is refused, naming the key and both values (got {err.strip()})")
    # A run written by an older build: its stored YAML predates a key (which
    # then has its default) and orders sections differently.  Same values:
    # it resumes.
    with h5py.File(r, "r+") as f:
        text = f["config/yaml"][()].decode()
        lines = [ln for ln in text.splitlines() if "eval_batch_size" not in ln]
        assert len(lines) < len(text.splitlines())
        sections, cur = [], None
        for ln in lines:
            if ln and not ln.startswith((" ", "#")):
                cur = [ln]
                sections.append(cur)
            elif cur is not None:
                cur.append(ln)
        older = "\n".join(ln for sec in reversed(sections) for ln in sec) + "\n"
        del f["config/yaml"]
        f.create_dataset("config/yaml", data=older, dtype=h5py.string_dtype("utf-8"))
    rc, _, err = run("train", "--config", cfg, "--out", r, "--threads", "2", "--resume", "--quiet")
    check(rc == 0, f"--resume finishes the run (got {rc}: {err.strip()[-200:]})")
    check(same_params(a, r), "resumed run: final weights bit-identical to the uninterrupted run")
    for n in ("metrics/train/loss", "metrics/train/grad_norm", "metrics/eval/train_loss", "metrics/eval/test_acc",
              "spectra/history/percent_mean", "spectra/final/eig", "spectra/init/eig"):
        check(np.array_equal(series(a, n), series(r, n)), f"resumed run: {n} identical")

    # SIGINT: checkpoint and exit 130; then resume.
    s = os.path.join(d, "s.h5")
    cfg_long = tiny_config(os.path.join(d, "long.yaml"), steps=3000, eval_every=10)
    p = subprocess.Popen([SEQEIG, "train", "--config", cfg_long, "--out", s, "--threads", "1", "--quiet"],
                         stderr=subprocess.PIPE, text=True)
    wait_for_evals(s, 1, p)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    check(p.returncode == 130 and "interrupted" in err, f"SIGINT: exit 130 and a message (got {p.returncode})")
    with h5py.File(s, "r") as f:
        check(f.attrs["status"] == "running" and f.attrs["step"] > 0, "SIGINT leaves a resumable checkpoint")

    # SIGKILL mid-run: the file holds the evaluations up to the last write.
    k = os.path.join(d, "k.h5")
    p = subprocess.Popen([SEQEIG, "train", "--config", cfg_long, "--out", k, "--threads", "1", "--quiet"])
    wait_for_evals(k, 3, p)
    p.kill()
    p.wait()
    with h5py.File(k, "r") as f:
        n = len(f["metrics/eval/step"])
        check(n >= 3 and f.attrs["status"] == "running" and list(f["metrics/eval/step"][()]) ==
              [10 * (i + 1) for i in range(n)] and f["spectra/history/step"].shape == (n,),
              f"after kill -9 h5py reads the file: {n} evaluations, status running")
        step = f.attrs["step"]
    rc, _, err = run("train", "--config", cfg_long, "--out", k, "--threads", "1", "--resume", "--quiet",
                     "--max-steps", "20")
    check(rc == 0 and h5py.File(k, "r").attrs["step"] == step + 20, "the killed run resumes from its checkpoint")


def wait_for_evals(path, n, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            check(False, f"training ended early (exit {proc.returncode})")
        try:
            with h5py.File(path, "r") as f:
                if len(f["metrics/eval/step"]) >= n:
                    return
        except (OSError, KeyError):
            pass
        time.sleep(0.05)
    check(False, f"{path}: {n} evaluations within {timeout} s")


def test_failure(d):
    cfg = tiny_config(os.path.join(d, "div.yaml"), steps=200, eval_every=10)
    out = os.path.join(d, "div.h5")
    rc, _, err = run("train", "--config", cfg, "--out", out, "--quiet", "--set", "train.lr=1e30",
                     "--set", "train.clip_grad_norm=0", "--set", "train.warmup_steps=-1")
    with h5py.File(out, "r") as f:
        check(rc == 1 and f.attrs["status"] == "failed" and "non-finite" in f.attrs["error"],
              f"a diverging run: exit 1, status failed with the reason (got {rc}: {err.strip()[-160:]})")


def test_paper_method(d):
    cfg = tiny_config(os.path.join(d, "paper.yaml"), steps=20, eval_every=10, extra="  method: paper\n")
    out = os.path.join(d, "paper.h5")
    rc, _, err = run("train", "--config", cfg, "--out", out, "--quiet")
    check(rc == 0, f"a run with spectra.method paper (got {rc}: {err.strip()[-200:]})")
    sp = os.path.join(d, "paper_sp.h5")
    rc, txt, err = run("spectra", out, "--method", "paper", "--out", sp)
    check(rc == 0 and "method paper" in txt, f"seqeig spectra --method paper (got {rc}: {err.strip()[-200:]})")
    with h5py.File(out, "r") as f, h5py.File(sp, "r") as g:
        check(f["spectra"].attrs["method"] == "paper" and g["spectra"].attrs["method"] == "paper",
              "the method is recorded")
        for when in ("init", "final"):
            check(np.array_equal(f[f"spectra/{when}/eig"][()], g[f"spectra/{when}/eig"][()]),
                  f"paper {when} spectra recomputed from the checkpoint equal the run's bit for bit")
    sd = os.path.join(d, "dsf_sp.h5")
    rc, _, _ = run("spectra", out, "--out", sd)
    with h5py.File(sd, "r") as g, h5py.File(sp, "r") as h:
        check(rc == 0 and not np.array_equal(g["spectra/final/eig"][()], h["spectra/final/eig"][()]),
              "dsf and paper give different eigenvalues on the same weights")


def test_epochs(d):
    cfg = tiny_config(os.path.join(d, "ep.yaml"), steps=999, eval_every=999)
    out = os.path.join(d, "ep.h5")
    rc, _, err = run("train", "--config", cfg, "--out", out, "--quiet", "--set", "train.num_epochs=3",
                     "--set", "dataset.num_train_examples=40", "--set", "train.warmup=1",
                     "--set", "train.log_every=1")
    check(rc == 0, f"epoch-based run (got {rc}: {err.strip()[-200:]})")
    with h5py.File(out, "r") as f:
        check(list(f["metrics/eval/step"][()]) == [3, 6, 9] and f.attrs["total_steps"] == 9,
              "num_epochs 3 with 40 examples, batch 16: 3 steps per epoch, an evaluation after each epoch")
        lr = f["metrics/train/lr"][()]
        check(lr[0] == lr[1] == lr[2] and lr[3] == lr[4] == lr[5] and lr[2] != lr[3],
              "the epoch schedule holds the rate within an epoch")
    rc, _, err = run("train", "--config", cfg, "--out", os.path.join(d, "ep2.h5"), "--quiet",
                     "--set", "train.num_epochs=3", "--set", "dataset.num_train_examples=0")
    check(rc == 2 and "needs a finite training set" in err, "epochs over fresh examples are refused")


def test_classification(d):
    """ListOps: padded classification batches, spectra over valid steps only."""
    for model in ("sm-attention", "mamba2"):
        cfg = os.path.join(d, f"lo_{model}.yaml")
        head = ("  layer: mamba\n  version: mamba2\n  pooling: mean\n  dropout: 0.0\n" if model == "mamba2" else
                "  layer: transformer\n  attention_fn: sm-attention\n  max_pos_embed: 40\n  mixer: mlp\n"
                "  mixer_dim: 32\n  classifier: true\n")
        with open(cfg, "w") as f:
            f.write(f"""seed: 3
dataset:
  _name_: listops
  min_length: 5
  max_length: 40
  num_train_samples: 200
  num_test_samples: 40
train:
  num_epochs: 2
  batch_size: 16
  lr: 1.0e-3
model:
{head}  num_layers: 2
  hidden_dim: 16
  state_dim: 16
  num_heads: 2
  vocab_size: 18
  output_dim: 10
spectra:
  analysis_batch: 12
""")
        out = os.path.join(d, f"lo_{model}.h5")
        rc, _, err = run("train", "--config", cfg, "--out", out, "--quiet")
        check(rc == 0, f"listops {model}: trains (got {rc}: {err.strip()[-200:]})")
        with h5py.File(out, "r") as f:
            mask = f["spectra/mask"][()]
            eig = f["spectra/init/eig"][()]
            S, L = mask.shape
            valid = mask.sum(1).astype(int)
            check(f.attrs["task"] == "listops" and list(f["metrics/eval/step"][()]) == [13, 26]
                  and S == 12 and valid.min() < L == valid.max() and np.all(mask[np.arange(L)[None, :] >= valid[:, None]] == 0),
                  f"listops {model}: 2 epochs of 13 steps, padded analysis batch with its mask")
            th = [0.0, *f["spectra/thresholds"][()]]
            pct = np.zeros(eig.shape[:3] + (7,))
            for s_ in range(S):
                n = valid[s_] - (0 if model == "mamba2" else 1)
                e = eig[s_, :, :, :n]
                for k in range(6):
                    pct[s_, ..., k] = 100.0 * ((e >= th[k]) & (e <= th[k + 1])).sum(-1) / n
                pct[s_, ..., 6] = 100.0 * (e > th[-1]).sum(-1) / n
            check(np.allclose(pct.mean(0), f["spectra/init/percent_mean"][()], rtol=0, atol=1e-9),
                  f"listops {model}: dsf percentages count only the valid steps of each sample")
            acc = f["metrics/eval/test_acc"][()]
            check(np.all((acc >= 0) & (acc <= 1)) and np.all(acc * 40 == np.round(acc * 40)),
                  f"listops {model}: accuracy over the 40 test examples")


def test_cifar_float_inputs(d):
    """Sequential CIFAR with tokenize false: normalised floats through Linear(1, d)."""
    import torch
    data = os.path.join(d, "cifar-10-batches-bin")
    write_cifar(data)
    heads = {"norm-attention": "  layer: transformer\n  attention_fn: norm-attention\n  embedding: false\n"
                               "  input_dim: 1\n  classifier: true\n  mixer: mlp\n  approx_fn: none\n",
             "mamba2": "  layer: mamba\n  version: mamba2\n  token_embedding: false\n  input_dim: 1\n"
                       "  pooling: mean\n  prenorm: false\n  dropout: 0.0\n"}
    for model, head in heads.items():
        cfg = os.path.join(d, f"cf_{model}.yaml")
        with open(cfg, "w") as f:
            f.write(f"""seed: 4
dataset:
  _name_: cifar
  grayscale: true
  tokenize: false
  data_dir: {d}
train:
  num_epochs: 2
  batch_size: 8
  lr: 1.0e-3
model:
{head}  num_layers: 2
  hidden_dim: 16
  state_dim: 8
  num_heads: 2
  mixer_dim: 16
  output_dim: 10
spectra:
  analysis_batch: 3
""")
        out = os.path.join(d, f"cf_{model}.h5")
        rc, _, err = run("train", "--config", cfg, "--out", out, "--quiet")
        check(rc == 0, f"cifar {model} with float inputs: trains (got {rc}: {err.strip()[-200:]})")
        with h5py.File(out, "r") as f:
            params = f["checkpoint/params"]
            check(params["encoder.weight"].shape == (16, 1) and params["encoder.bias"].shape == (16,)
                  and "encoder.word_embeddings.weight" not in params
                  and "encoder.position_embeddings.weight" not in params,
                  f"cifar {model}: a Linear(1, 16) input layer, no embeddings")
            tok = f["spectra/inputs"][()]
            feat = f["spectra/features"][()]
            # torchvision: ToTensor (x / 255 in float32), Normalize(122.6/255, 61.0/255) in float32
            x = torch.tensor(tok, dtype=torch.float32) / 255
            want = (x - torch.tensor(122.6 / 255, dtype=torch.float32)) / torch.tensor(61.0 / 255, dtype=torch.float32)
            check(tok.shape == (3, 1024) and feat.shape == (3, 1024, 1)
                  and np.array_equal(feat[..., 0], want.numpy()),
                  f"cifar {model}: /spectra/features are the normalised gray pixels of /spectra/inputs, "
                  "bit for bit as torchvision computes them")
            final = f["spectra/final/eig"][()]
        cut = os.path.join(d, f"cf_{model}_cut.h5")
        rc1, _, _ = run("train", "--config", cfg, "--out", cut, "--quiet", "--max-steps", "3")
        rc2, _, err = run("train", "--config", cfg, "--out", cut, "--quiet", "--resume")
        with h5py.File(out, "r") as f, h5py.File(cut, "r") as g:
            check(rc1 == 0 and rc2 == 0 and np.array_equal(f["spectra/final/eig"][()], g["spectra/final/eig"][()])
                  and np.array_equal(f["checkpoint/params/encoder.weight"][()], g["checkpoint/params/encoder.weight"][()])
                  and np.array_equal(f["metrics/eval/test_loss"][()], g["metrics/eval/test_loss"][()])
                  and np.array_equal(f["spectra/features"][()], g["spectra/features"][()]),
                  f"cifar {model}: cut at step 3 and resumed, bit-identical to the uninterrupted run "
                  f"(got {rc1}, {rc2}: {err.strip()[-200:]})")
        sp = os.path.join(d, f"cf_{model}_sp.h5")
        rc, _, err = run("spectra", out, "--out", sp)
        with h5py.File(sp, "r") as g:
            check(rc == 0 and np.array_equal(g["spectra/final/eig"][()], final),
                  f"cifar {model}: seqeig spectra recomputes the final spectra from the stored features "
                  f"(got {rc}: {err.strip()[-200:]})")
    cfg = os.path.join(d, "cf_norm-attention.yaml")
    cases = [
        (("--set", "dataset.tokenize=true"), "gives tokens"),
        (("--set", "model.embedding=true"), "has a token embedding"),
        (("--set", "model.max_pos_embed=1024"), "Linear input layer of float inputs"),
        (("--set", "model.token_embedding=false"), "has no effect on a transformer model"),
    ]
    for extra, want in cases:
        rc, _, err = run("train", "--config", cfg, "--out", os.path.join(d, "cf_bad.h5"), "--quiet", *extra)
        check(rc == 2 and want in err and not os.path.exists(os.path.join(d, "cf_bad.h5")),
              f"cifar: {' '.join(extra)} is refused naming the problem (got {rc}: {err.strip()[-300:]})")


def test_models(d):
    for model in ("lin-attention", "norm-attention", "mamba2"):
        cfg = tiny_config(os.path.join(d, f"{model}.yaml"), model=model, steps=20, eval_every=10)
        out = os.path.join(d, f"{model}.h5")
        rc, _, err = run("train", "--config", cfg, "--out", out, "--quiet", "--threads", "2")
        T = 16 if model == "mamba2" else 15
        with h5py.File(out, "r") as f:
            check(rc == 0 and f.attrs["model"] == model and f["spectra/final/eig"].shape == (8, 2, 2, T)
                  and not np.isnan(f["spectra/final/eig"][()]).any(),
                  f"{model}: trains, spectra (8, 2, 2, {T}) without NaN")


def main():
    keep = None
    if len(sys.argv) == 3 and sys.argv[1] == "--keep":
        keep = sys.argv[2]
        os.makedirs(keep, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        d = keep or tmp
        for t in (test_usage_errors, test_config_errors, test_run_file, test_determinism_and_resume,
                  test_failure, test_paper_method, test_epochs, test_classification, test_cifar_float_inputs, test_models, test_reference_config):
            print(f"== {t.__name__}")
            t(d)
    print(f"tests/e2e/test_cli.py: {N_CHECKS} checks passed")


if __name__ == "__main__":
    main()
