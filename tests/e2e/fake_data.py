"""Synthetic datasets in the real on-disk formats, for the end-to-end tests
(the real CIFAR-10 and IMDb are never downloaded)."""
import os

import numpy as np


def write_cifar(root, n_train=4, n_test=6, seed=5):
    """CIFAR-10 binary batches with random pixels under root:
    data_batch_1..5.bin with n_train records each, test_batch.bin with n_test."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for k, name in enumerate(names):
        n = n_test if k == 5 else n_train
        rec = np.concatenate([rng.integers(0, 10, (n, 1)), rng.integers(0, 256, (n, 3072))], 1)
        rec.astype(np.uint8).tofile(os.path.join(root, name))


def write_imdb(root, n_per_class=3, seed=0):
    """root/aclImdb/{train,test}/{neg,pos}/<i>_5.txt with random short reviews."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghij ,."))
    for split in ("train", "test"):
        for lab in ("neg", "pos"):
            d = os.path.join(root, "aclImdb", split, lab)
            os.makedirs(d)
            for i in range(n_per_class):
                with open(os.path.join(d, f"{i}_5.txt"), "w") as f:
                    f.write("".join(rng.choice(letters, 40 + 30 * i)))
