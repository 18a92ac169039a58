"""Exercises of notebook 05-hinge-svm: hinge loss, its subgradient, multiclass hinge."""

from __future__ import annotations

import numpy as np

import lossutils

from ._common import DTYPES, case, n_random, sum_instead_of_mean
from ._core import FunctionExercise, Mistake, register
from ._regression import SubgradientExercise

NOTEBOOK = "05-hinge-svm"


def _binary_cases(rng, hidden):
    cases = [
        case("separated data, outside the margin", np.array([2.0, -3.0, 1.5]),
             np.array([1.0, -1.0, 1.0])),
        case("points exactly on the margin (kinks)", np.array([1.0, -1.0, 0.5]),
             np.array([1.0, -1.0, -1.0])),
        case("misclassified points", np.array([-2.0, 0.5]), np.array([1.0, -1.0])),
        case("batch of one", np.array([0.25]), np.array([1.0])),
        case("integer targets", np.array([0.5, 1.0, -2.0, 3.0]), np.array([1, 1, -1, -1])),
        case("float32", np.array([0.3, -1.2, 2.0, 0.0], np.float32),
             np.array([1.0, 1.0, -1.0, -1.0], np.float32)),
    ]
    for dtype in DTYPES:
        for _ in range(n_random(hidden)):
            n = int(rng.integers(2, 12))
            target = rng.choice([-1.0, 1.0], size=n).astype(dtype)
            scores = (rng.normal(size=n) * 2).astype(dtype)
            scores[: n // 3] = target[: n // 3]  # a few points on the margin
            cases.append(case(f"random {np.dtype(dtype).name}, N = {n}", scores, target))
    return cases


def _multi_cases(rng, hidden):
    cases = [
        case("separated data (loss 0)", np.array([[5.0, 1.0, 0.0], [-1.0, 3.0, 1.0]]),
             np.array([0, 1])),
        case("hand-made", np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]]),
             np.array([0, 1, 2])),
        case("batch of one", np.array([[0.5, 0.2, 0.9, -0.4]]), np.array([2])),
        case("float32", np.array([[1.0, 1.5], [0.0, -2.0]], np.float32), np.array([1, 0])),
    ]
    for dtype in DTYPES:
        for _ in range(n_random(hidden)):
            n, c = int(rng.integers(2, 8)), int(rng.integers(2, 6))
            cases.append(case(f"random {np.dtype(dtype).name}, N = {n}, C = {c}",
                              (rng.normal(size=(n, c)) * 2).astype(dtype),
                              rng.integers(0, c, size=n)))
    return cases


def _active(s, y):
    return (1 - y * s) > 0


register(
    FunctionExercise(
        "hinge_loss",
        notebook=NOTEBOOK,
        signature="hinge_loss(scores, target)",
        arg_names=("scores", "target"),
        reference=lossutils.hinge_loss,
        cases=_binary_cases,
        mistakes=(
            Mistake(
                "missing_max",
                "the max(0, .) is missing: points beyond the margin must cost 0, not a "
                "negative amount: mean(max(0, 1 - y s)).",
                models=(lambda s, y: np.mean(1 - y * s),),
            ),
            Mistake(
                "perceptron_margin",
                "max(0, -y s) is the perceptron criterion; the hinge has a margin of 1: "
                "max(0, 1 - y s).",
                models=(lambda s, y: np.mean(np.maximum(0, -y * s)),),
            ),
            Mistake(
                "squared_hinge",
                "you squared the hinge; the hinge loss is max(0, 1 - y s) itself.",
                models=(lambda s, y: np.mean(np.maximum(0, 1 - y * s) ** 2),),
            ),
            sum_instead_of_mean(lambda s, y: np.sum(np.maximum(0, 1 - y * s)),
                                what="the hinge loss"),
        ),
    )
)


def _hinge_kinks(case_, expected):
    scores, target = case_.args
    n = len(scores)
    at_kink = target * scores == 1
    # At y s = 1 any convex combination of 0 and -y / N is a subgradient.
    return at_kink, np.minimum(0, -target / n), np.maximum(0, -target / n)


register(
    SubgradientExercise(
        "hinge_subgradient",
        notebook=NOTEBOOK,
        signature="hinge_subgradient(scores, target)",
        arg_names=("scores", "target"),
        reference=lossutils.hinge_loss_grad,
        cases=_binary_cases,
        kinks=_hinge_kinks,
        mistakes=(
            Mistake(
                "missing_mean",
                "your subgradient is N times too large: the loss is a mean, so every entry "
                "carries the 1/N of the mean.",
                models=(lambda s, y: np.where(_active(s, y), -y, 0.0),),
            ),
            Mistake(
                "sign_flipped",
                "the sign is flipped: inside the margin, moving a score towards its label "
                "lowers the loss.",
                models=(lambda s, y: np.where(_active(s, y), y, 0.0) / len(s),),
            ),
            Mistake(
                "wrong_active_set",
                "the hinge is active wherever y s < 1 (inside the margin too), not only for "
                "misclassified points (y s < 0).",
                models=(lambda s, y: np.where(y * s < 0, -y, 0.0) / len(s),),
            ),
            Mistake(
                "target_missing",
                "the target is missing from the derivative: the chain rule brings down the "
                "y of y s.",
                models=(lambda s, y: np.where(_active(s, y), -1.0, 0.0) / len(s),),
            ),
        ),
    )
)


def _margins(s, y):
    return s - s[np.arange(len(y)), y][:, None] + 1


def _ww(s, y):
    m = np.maximum(0, _margins(s, y))
    m[np.arange(len(y)), y] = 0
    return m


register(
    FunctionExercise(
        "multiclass_hinge_loss",
        notebook=NOTEBOOK,
        signature="multiclass_hinge_loss(scores, labels)",
        arg_names=("scores", "labels"),
        reference=lossutils.multiclass_hinge_loss,
        cases=_multi_cases,
        mistakes=(
            Mistake(
                "counts_true_class",
                "you included j = y in the sum, which adds max(0, 1) = 1 per sample (so "
                "separated data costs 1, not 0): skip the true class.",
                models=(lambda s, y: np.mean(np.sum(np.maximum(0, _margins(s, y)), axis=1)),),
            ),
            Mistake(
                "crammer_singer",
                "you took the maximum over the wrong classes (Crammer-Singer); this exercise "
                "is Weston-Watkins: sum over all j != y.",
                models=(lambda s, y: np.mean(np.max(_ww(s, y), axis=1)),),
            ),
            Mistake(
                "divided_by_classes",
                "you also divided by the number of classes (as torch's multi_margin_loss "
                "does); sum over the classes, average over the batch only.",
                models=(lambda s, y: np.mean(_ww(s, y)),),
            ),
            sum_instead_of_mean(lambda s, y: np.sum(_ww(s, y)), what="the multiclass hinge loss"),
        ),
    )
)
