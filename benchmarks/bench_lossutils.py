"""Speed of the reference library against torch (one thread), scipy and plain numpy, same run.

Usage::

    python benchmarks/bench_lossutils.py            # full table (a few minutes)
    python benchmarks/bench_lossutils.py --quick    # small sizes only
    (and --idle, --no-record: see _record.py)

For each workload (cross-entropy, cross-entropy + gradient, log-softmax, KL, multiclass hinge,
MSE, L1) on N x K inputs with K = 10 and K = 1000, float32 and float64, it prints the median
time of each implementation and the ratio ``other / lossutils`` (above 1: lossutils is faster).
The implementations of a workload are timed in turn, round by round, so that a load that
changes on a shared machine affects them alike.
It also measures this machine's single-thread memory read bandwidth and reports the fraction of
it that the bandwidth-bound losses (MSE, L1) reach, and the import time of lossutils over numpy.

Everything is pinned to one thread (BLAS and torch) so that the comparison is like for like.
torch is optional (``pip install torch==2.13.0``, the CPU build); without it its column is
empty. The run is recorded in ``benchmarks/results/lossutils.jsonl`` (see ``_record.py``).
"""

from __future__ import annotations

import os

# One thread for every library, set before numpy or torch load their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy.special  # noqa: E402
from _record import Run, add_arguments  # noqa: E402

import lossutils as lu  # noqa: E402

try:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
except ImportError:  # the benchmark still compares against scipy and numpy
    torch = None


def median_time(fn, *, min_time=0.2, max_repeats=15) -> float:
    """Median wall time of ``fn()`` over repeats lasting at least ``min_time`` in total."""
    fn()  # warm up caches and allocators
    times = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < max_repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def median_times(fns: dict, *, min_time=0.2, max_repeats=15) -> dict:
    """Median wall time of each of ``fns`` (name -> callable), called in turn round by round.

    Taking turns, every implementation sees the same load: on a shared machine a load that
    changes between two separate measurements would otherwise show up in their ratio.
    """
    for fn in fns.values():
        fn()  # warm up caches and allocators
    times = {name: [] for name in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < 3 or (time.perf_counter() - start < min_time * len(fns)
                         and rounds < max_repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        rounds += 1
    return {name: statistics.median(t) for name, t in times.items()}


def read_bandwidth(nbytes=512 * 2**20) -> float:
    """Single-thread memory read bandwidth in bytes/s: the best of a few streaming reductions."""
    a = np.ones(nbytes // 8)
    best = min(median_time(a.sum), median_time(lambda: np.dot(a, a)))
    if torch is not None:
        t = torch.ones(nbytes // 8, dtype=torch.float64)
        best = min(best, median_time(t.sum))
    # np.dot(a, a) reads the array once (both operands are the same memory).
    return a.nbytes / best


def import_overhead(repeats=7) -> tuple[float, float]:
    """Median wall time of ``import numpy`` and of ``import lossutils`` in fresh interpreters."""

    def run(stmt):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", stmt], check=True)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    return run("import numpy"), run("import lossutils")


# --- the workloads --------------------------------------------------------------------------

def naive_log_softmax(x):
    return x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(
        -1, keepdims=True
    )


def workloads(x, labels, p, q, pred, target):
    """name -> {implementation -> zero-argument callable}."""
    n = x.shape[0]
    rows = np.arange(n)
    out = {
        "cross_entropy": {
            "lossutils": lambda: lu.cross_entropy(x, labels),
            "scipy": lambda: -scipy.special.log_softmax(x, axis=-1)[rows, labels].mean(),
            "numpy": lambda: -naive_log_softmax(x)[rows, labels].mean(),
        },
        "cross_entropy+grad": {
            "lossutils": lambda: (lu.cross_entropy(x, labels), lu.cross_entropy_grad(x, labels)),
            "numpy": lambda: _numpy_ce_and_grad(x, labels, rows),
        },
        "log_softmax": {
            "lossutils": lambda: lu.log_softmax(x),
            "scipy": lambda: scipy.special.log_softmax(x, axis=-1),
            "numpy": lambda: naive_log_softmax(x),
        },
        "kl_divergence": {
            "lossutils": lambda: lu.kl_divergence(p, q),
            "scipy": lambda: scipy.special.rel_entr(p, q).sum(-1),
            "numpy": lambda: (p * np.log(p / q)).sum(-1),
        },
        "multiclass_hinge": {
            "lossutils": lambda: lu.multiclass_hinge_loss(x, labels),
            "numpy": lambda: _numpy_ww_hinge(x, labels, rows),
        },
        "mse": {
            "lossutils": lambda: lu.mse_loss(pred, target),
            "numpy": lambda: np.mean((pred - target) ** 2),
        },
        "l1": {
            "lossutils": lambda: lu.l1_loss(pred, target),
            "numpy": lambda: np.mean(np.abs(pred - target)),
        },
    }
    if torch is not None:
        tx, tl = torch.from_numpy(x), torch.from_numpy(labels)
        tp, tq = torch.from_numpy(p), torch.from_numpy(q)
        tpred, ttarget = torch.from_numpy(pred), torch.from_numpy(target)
        out["cross_entropy"]["torch"] = lambda: F.cross_entropy(tx, tl)
        out["cross_entropy+grad"]["torch"] = lambda: _torch_ce_and_grad(tx, tl)
        out["log_softmax"]["torch"] = lambda: torch.log_softmax(tx, -1)
        # kl_div takes log q first; computing log q is part of the work.
        out["kl_divergence"]["torch"] = lambda: F.kl_div(
            tq.log(), tp, reduction="none"
        ).sum(-1)
        # multi_margin_loss divides by C; the constant factor does not change the work.
        out["multiclass_hinge"]["torch"] = lambda: F.multi_margin_loss(tx, tl)
        out["mse"]["torch"] = lambda: F.mse_loss(tpred, ttarget)
        out["l1"]["torch"] = lambda: F.l1_loss(tpred, ttarget)
    return out


def _numpy_ce_and_grad(x, labels, rows):
    logp = naive_log_softmax(x)
    grad = np.exp(logp)
    grad[rows, labels] -= 1
    return -logp[rows, labels].mean(), grad / len(labels)


def _numpy_ww_hinge(x, labels, rows):
    margins = np.maximum(0, x - x[rows, labels][:, None] + 1)
    margins[rows, labels] = 0
    return margins.sum(-1).mean()


def _torch_ce_and_grad(tx, tl):
    leaf = tx.detach().requires_grad_()
    loss = F.cross_entropy(leaf, tl)
    loss.backward()
    return loss, leaf.grad


def make_inputs(n, k, dtype, rng):
    x = rng.normal(scale=3.0, size=(n, k)).astype(dtype)
    labels = rng.integers(0, k, n)
    p = rng.random((n, k)).astype(dtype) + dtype(0.01)
    p /= p.sum(-1, keepdims=True)
    q = rng.random((n, k)).astype(dtype) + dtype(0.01)
    q /= q.sum(-1, keepdims=True)
    return x, labels, p, q, x.reshape(-1).copy(), rng.normal(size=n * k).astype(dtype)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only (smoke run)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    run = Run("lossutils", args, packages=("scipy", "torch"))
    rows = []
    sizes = [10**5] if args.quick else [10**5, 10**6, 10**7]
    rng = np.random.default_rng(0)

    bandwidth = read_bandwidth(64 * 2**20 if args.quick else 512 * 2**20)
    t_numpy, t_lossutils = import_overhead(3 if args.quick else 7)
    print(f"numpy {np.__version__}, scipy {scipy.__version__}, "
          f"torch {torch.__version__ if torch else 'not installed'}; one thread each")
    print(f"memory read bandwidth (1 thread): {bandwidth / 1e9:.1f} GB/s")
    print(f"import numpy {t_numpy * 1e3:.0f} ms, import lossutils {t_lossutils * 1e3:.0f} ms "
          f"(+{(t_lossutils - t_numpy) * 1e3:.0f} ms)")
    print()
    header = (f"{'workload':<20} {'dtype':<8} {'N x K':>14} {'lossutils':>11} "
              f"{'torch':>8} {'scipy':>8} {'numpy':>8}  {'GB/s':>9}")
    print(header)
    print("-" * len(header))
    worst_torch = None
    for dtype in (np.float32, np.float64):
        for k in (10, 1000):
            for size in sizes:
                n = size // k
                inputs = make_inputs(n, k, dtype, rng)
                for name, impls in workloads(*inputs).items():
                    medians = median_times(impls)
                    base = medians["lossutils"]
                    cells = []
                    row = {"workload": name, "dtype": np.dtype(dtype).name, "n": n, "k": k,
                           "lossutils_s": base}
                    rows.append(row)
                    for other in ("torch", "scipy", "numpy"):
                        if other in impls:
                            ratio = medians[other] / base
                            row[other] = ratio
                            cells.append(f"{ratio:7.2f}x")
                            if other == "torch":
                                worst_torch = min(worst_torch or ratio, ratio)
                        else:
                            cells.append(f"{'':>8}")
                    bw = ""
                    if name in ("mse", "l1"):
                        nbytes = 2 * inputs[4].nbytes
                        bw = f"{nbytes / base / 1e9:5.1f} ({nbytes / base / bandwidth:.0%})"
                        row["bandwidth_share"] = nbytes / base / bandwidth
                    print(f"{name:<20} {np.dtype(dtype).name:<8} {f'{n}x{k}':>14} "
                          f"{base * 1e3:9.2f}ms {' '.join(cells)}  {bw:>9}")
    print()
    print("ratios are other / lossutils: above 1 means lossutils is faster")
    if worst_torch is not None:
        print(f"slowest against torch: {worst_torch:.2f}x")
    run.save({
        "threads": 1,
        "read_bandwidth_gbs": bandwidth / 1e9,
        "import_numpy_s": t_numpy,
        "import_lossutils_s": t_lossutils,
        "rows": rows,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
