#!/usr/bin/python3
"""End-to-end test of `make experiment` (scripts/experiment.sh) on the
`smoke` preset: 2 models x 2 seeds into a temporary results directory,
then the report; a second invocation trains nothing; bad arguments fail
with exit 2.  Exits non-zero on the first failed check."""
import os
import subprocess
import sys
import tempfile

import h5py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_data import write_cifar, write_imdb  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEQEIG = os.path.abspath(os.environ.get("SEQEIG", os.path.join(ROOT, "build/seqeig")))
N = 0


def check(cond, what, detail=""):
    global N
    if not cond:
        print(f"FAIL: {what}\n{detail}")
        sys.exit(1)
    N += 1
    print(f"ok: {what}")


def experiment(results, *args, train_args=""):
    env = dict(os.environ, RESULTS=results, SEQEIG=SEQEIG, TRAIN_ARGS=train_args)
    return subprocess.run(["bash", "scripts/experiment.sh", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        p = experiment(tmp, "mqar", "2", "smoke", "", "2")
        check(p.returncode == 0, "experiment mqar/smoke, 2 seeds, 2 jobs: exit 0", p.stdout + p.stderr)
        check("4 runs to train (0 already finished)" in p.stdout, "4 runs planned", p.stdout)
        d = os.path.join(tmp, "mqar", "smoke")
        for m in ("sm-attention", "mamba2"):
            for s in (1919, 2222):
                path = os.path.join(d, m, f"seed{s}.h5")
                with h5py.File(path, "r") as f:
                    check(f.attrs["status"] in ("completed", "stopped_early") and f.attrs["seed"] == s
                          and f.attrs["model"] == m and "final" in f["spectra"],
                          f"{m}/seed{s}.h5 finished with final spectra")
        with open(os.path.join(d, "summary.md")) as f:
            summary = f.read()
        check("sm-attention" in summary and "mamba2" in summary and "1919, 2222" in summary,
              "summary.md covers both models and both seeds", summary[:800])
        pngs = sorted(n for n in os.listdir(d) if n.endswith(".png"))
        check(len(pngs) >= 6 and all(open(os.path.join(d, n), "rb").read(8) == b"\x89PNG\r\n\x1a\n" for n in pngs),
              f"PNG figures written: {', '.join(pngs)}")

        mtimes = {m: os.path.getmtime(os.path.join(d, m, "seed1919.h5")) for m in ("sm-attention", "mamba2")}
        p = experiment(tmp, "mqar", "2", "smoke", "", "1")
        check(p.returncode == 0 and "0 runs to train (4 already finished)" in p.stdout and
              all(os.path.getmtime(os.path.join(d, m, "seed1919.h5")) == t for m, t in mtimes.items()),
              "a second invocation skips finished runs and leaves them untouched", p.stdout + p.stderr)

        # An interrupted run is resumed: cut one short, rerun with one model and 3 seeds.
        cut = os.path.join(d, "mamba2", "seed2929.h5")
        r = subprocess.run([SEQEIG, "train", "--config", os.path.join(ROOT, "experiments/mqar/smoke/mamba2.yaml"),
                            "--seed", "2929", "--out", cut, "--max-steps", "15", "--quiet"], capture_output=True)
        check(r.returncode == 0, "a run cut short at step 15")
        p = experiment(tmp, "mqar", "3", "smoke", "mamba2", "1")
        check(p.returncode == 0 and "1 runs to train (2 already finished)" in p.stdout and
              "resuming" in p.stderr and h5py.File(cut, "r").attrs["status"] in ("completed", "stopped_early"),
              "MODELS=mamba2 SEEDS=3: only the unfinished run trains, resumed", p.stdout + p.stderr)

        for args, msg in ((("nosuch", "1"), "unknown task 'nosuch'"),
                          (("mqar", "1", "huge"), "has no preset 'huge'"),
                          (("mqar", "x", "smoke"), "SEEDS must be a positive integer"),
                          (("mqar", "1", "smoke", "rnn"), "no config experiments/mqar/smoke/rnn.yaml"),
                          (("cifar", "1", "paper"), "task 'cifar' reads your copy of its data: give DATA="),
                          (("imdb", "1", "paper", "", "", "/nonexistent"), "DATA=/nonexistent: not a directory")):
            p = experiment(tmp, *args)
            check(p.returncode == 2 and msg in p.stderr, f"experiment {' '.join(args)}: exit 2, '{msg}'",
                  p.stdout + p.stderr)
        test_presets(tmp)
        test_data_dir(tmp)
    print(f"tests/e2e/test_experiment.py: {N} checks passed")


def write_fake_data(root):
    """Tiny CIFAR-10 batches (4 records per file) and an aclImdb tree; their directories."""
    cifar, imdb = os.path.join(root, "cifar"), os.path.join(root, "imdb")
    write_cifar(cifar, n_train=4, n_test=4, seed=0)
    write_imdb(imdb)
    return cifar, imdb


def test_data_dir(tmp):
    """DATA= reaches every run as dataset.data_dir (a path with a space too);
    a finished experiment's report needs no DATA."""
    cifar, _ = write_fake_data(os.path.join(tmp, "data with space"))
    shrink = ("--set model.num_layers=1 --set model.hidden_dim=16 --set model.mixer_dim=8 "
              "--set train.num_epochs=1 --set spectra.analysis_batch=2")
    p = experiment(tmp, "cifar", "1", "paper", "mamba2 norm-attention", "1", cifar, train_args=shrink)
    check(p.returncode == 0 and "2 runs to train" in p.stdout, "make experiment TASK=cifar DATA='<dir with a space>'",
          p.stdout + p.stderr)
    with h5py.File(os.path.join(tmp, "cifar", "paper", "mamba2", "seed1919.h5"), "r") as f:
        check(f.attrs["status"] == "completed" and "spectra/features" in f,
              "the CIFAR run completed with float inputs")
    p = experiment(tmp, "cifar", "1", "paper", "mamba2 norm-attention", "1", train_args=shrink)
    check(p.returncode == 0 and "0 runs to train (2 already finished)" in p.stdout,
          "rerun without DATA: nothing to train, the report is rebuilt", p.stdout + p.stderr)


# Per task: how to make a preset's run tiny without changing what it builds
# (model kind, input layer, heads, head, schedule rule).
SHRINK = {
    "mqar": ["dataset.num_train_examples=16", "dataset.num_test_examples=4"],
    "listops": ["dataset.num_train_samples=6", "dataset.num_test_samples=3", "dataset.min_length=10",
                "dataset.max_length=40"],
    "cifar": [],
    "imdb": [],
}


def test_presets(tmp):
    """Every committed preset loads, builds its model and trains a step (shrunk)."""
    cifar, imdb = write_fake_data(os.path.join(tmp, "data"))
    data = {"cifar": cifar, "imdb": imdb}
    exp = os.path.join(ROOT, "experiments")
    for task in sorted(os.listdir(exp)):
        if not os.path.isdir(os.path.join(exp, task)):
            continue
        check(task in SHRINK, f"experiments/{task}: the preset test knows how to shrink it")
        for preset in sorted(os.listdir(os.path.join(exp, task))):
            pdir = os.path.join(exp, task, preset)
            if not os.path.isdir(pdir):
                continue
            for name in sorted(n for n in os.listdir(pdir) if n.endswith(".yaml")):
                sets = SHRINK[task] + ["model.num_layers=1", "model.hidden_dim=16", "model.state_dim=8",
                                       "model.mixer_dim=8", "train.batch_size=2", "spectra.analysis_batch=2"]
                if task in data:
                    sets.append(f"dataset.data_dir={data[task]}")
                args = [SEQEIG, "train", "--config", os.path.join(pdir, name), "--quiet", "--max-steps", "1",
                        "--out", os.path.join(tmp, f"preset_{task}_{preset}_{name}.h5")]
                for kv in sets:
                    args += ["--set", kv]
                r = subprocess.run(args, capture_output=True, text=True, timeout=300)
                check(r.returncode == 0, f"experiments/{task}/{preset}/{name}: loads, builds and trains a step",
                      r.stderr[-1500:])


if __name__ == "__main__":
    main()
