"""The accuracy threshold of the ``train`` check: what correct and wrong training loops reach.

Usage::

    python benchmarks/train_threshold.py [N_SEEDS]

For N grading seeds (default 200) it draws the ``train`` check's hidden accuracy case exactly as
the grader does (a digits split, hyperparameters, a shuffling seed), runs the master notebook's
``train``, ``softmax_loss_vectorized`` and ``rmsprop_step`` on it, and then the same with one
plausible mistake at a time, and prints the held-out accuracy each reaches: minimum, 5th
percentile, median, maximum, and how many runs clear the threshold. docs/exercises.md quotes
these figures; the threshold must sit below every correct run and above the wrong ones that
the probe cases of the check cannot see.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import numpy as np

from lossutils.checks import get_exercise
from lossutils.checks._classifiers import ACCURACY_THRESHOLD, held_out_accuracy

ROOT = Path(__file__).resolve().parents[1]
MASTER = ROOT / "solutions" / "07-linear-classifiers" / "07-linear-classifiers.ipynb"


def master_functions() -> dict:
    """The master's solution functions, run with numpy as the notebook's setup provides it."""
    nb = json.loads(MASTER.read_text(encoding="utf-8"))
    namespace = {"np": np}
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if cell["cell_type"] == "code" and meta.get("solution"):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) \
                else cell["source"]
            exec(compile(ast.parse(source), meta["grade_id"], "exec"), namespace)
    return namespace


def variants(ns: dict) -> dict:
    """name -> (train, loss_fn, step_fn): the master, and one mistake at a time."""
    train, loss, step = ns["train"], ns["softmax_loss_vectorized"], ns["rmsprop_step"]

    def uphill(W, X, y, reg):
        value, dW = loss(W, X, y, reg)
        return value, -dW

    def no_average(W, X, y, reg):
        value, dW = loss(W, X, y, reg)
        return value, dW * len(y)

    def labels_misaligned(loss_fn, W0, X, y, step_fn, state, lr, reg, epochs, batch_size,
                          seed=0):
        rng = np.random.default_rng(seed)
        W, history = W0, []
        for _ in range(epochs):
            order = rng.permutation(len(y))
            for start in range(0, len(y), batch_size):
                batch = order[start:start + batch_size]
                value, dW = loss_fn(W, X[batch], y[start:start + batch_size], reg)
                W, state = step_fn(W, dW, state, lr)
                history.append(value)
        return W, np.array(history)

    def weights_not_updated(loss_fn, W0, X, y, step_fn, state, lr, reg, epochs, batch_size,
                            seed=0):
        history = []
        for start in range(0, len(y), batch_size):
            value, dW = loss_fn(W0, X[start:start + batch_size], y[start:start + batch_size], reg)
            step_fn(W0, dW, state, lr)  # the new weights are dropped
            history.append(value)
        return W0, np.array(history)

    def one_epoch(*args, **kwargs):
        return train(*args, **{**kwargs, "epochs": 1})

    def first_batch_only(loss_fn, W0, X, y, step_fn, state, lr, reg, epochs, batch_size,
                         seed=0):
        rng = np.random.default_rng(seed)
        W, history = W0, []
        for _ in range(epochs):
            batch = rng.permutation(len(y))[:batch_size]
            value, dW = loss_fn(W, X[batch], y[batch], reg)
            W, state = step_fn(W, dW, state, lr)
            history.append(value)
        return W, np.array(history)

    return {
        "correct (the master)": (train, loss, step),
        "labels shuffled apart from X": (labels_misaligned, loss, step),
        "weights never updated": (weights_not_updated, loss, step),
        "loss gradient uphill": (train, uphill, step),
        "one mini-batch per epoch": (first_batch_only, loss, step),
        "a single epoch (epochs ignored)": (one_epoch, loss, step),
        "dW not divided by N": (train, no_average, step),
    }


def main(n_seeds: int = 200) -> None:
    ex = get_exercise("train")
    runs = variants(master_functions())
    results = {name: [] for name in runs}
    for seed in range(n_seeds):
        case = ex.cases(hidden=True, seed=seed)[-1]
        _, W0, X, y, _, state = case.args
        X_test, y_test = case.test
        for name, (train, loss_fn, step_fn) in runs.items():
            W, _ = train(loss_fn, W0, X, y, step_fn, state, **case.kwargs)
            results[name].append(held_out_accuracy(W, X_test, y_test))
    print(f"held-out accuracy over {n_seeds} grading seeds (threshold {ACCURACY_THRESHOLD:.0%})")
    print(f"{'variant':34s} {'min':>6s} {'5%':>6s} {'median':>6s} {'max':>6s}  passes")
    for name, values in results.items():
        v = np.array(values)
        print(f"{name:34s} {v.min():6.3f} {np.percentile(v, 5):6.3f} {np.median(v):6.3f} "
              f"{v.max():6.3f}  {np.sum(v >= ACCURACY_THRESHOLD)}/{n_seeds}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
