"""PyTorch timings of the same kernels and shapes as bench/kernels.c, for
the comparison column in bench/RESULTS.md.  Usage: torch_kernels.py THREADS"""
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def median_ms(fn, reps=15):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def unary(name, f, rows, cols):
    x = torch.randn(rows, cols)
    xg = x.clone().requires_grad_(True)
    dy = torch.randn(rows, cols)

    def fwd():
        with torch.no_grad():
            f(x)

    def fwd_bwd():
        xg.grad = None
        f(xg).backward(dy)

    print(f"torch {name + ' fwd':<28} {rows}x{cols:<16} {median_ms(fwd):9.3f} ms")
    print(f"torch {name + ' fwd+bwd':<28} {rows}x{cols:<16} {median_ms(fwd_bwd):9.3f} ms")


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    torch.set_num_threads(threads)
    print(f"# torch {torch.__version__} kernels, {threads} thread(s)")
    unary("layernorm", lambda x: F.layer_norm(x, (x.shape[-1],)), 32768, 128)
    unary("softmax rows", lambda x: torch.softmax(x, -1), 8192, 512)
    unary("gelu", F.gelu, 32768, 128)
    unary("silu", F.silu, 32768, 384)
    w = torch.randn(384, 1, 4)

    def conv(x):
        x3 = x.view(64, 512, 384).transpose(1, 2)
        return F.conv1d(x3, w, padding=3, groups=384)[..., :512].transpose(1, 2).reshape(x.shape)

    unary("conv1d causal K=4", conv, 32768, 384)
    logits = torch.randn(4096, 8192, requires_grad=True)
    labels = torch.randint(0, 8192, (4096,))

    def xent():
        logits.grad = None
        F.cross_entropy(logits, labels).backward()

    print(f"torch {'cross_entropy fwd+bwd':<28} {'4096x8192':<22} {median_ms(xent, 10):9.3f} ms")


if __name__ == "__main__":
    main()
