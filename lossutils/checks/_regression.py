"""Numeric exercises of notebook 02-gaussian-l2: Gaussian NLL, L2 and L1 with gradients."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

import lossutils

from ._common import DTYPES, case, mean_instead_of_sum, n_random
from ._core import Case, FunctionExercise, Mistake, register

NOTEBOOK = "02-gaussian-l2"
_LOG_2PI = np.log(2 * np.pi)


def _gaussian_nll(pred, target, beta):
    return lossutils.gaussian_nll_loss(pred, target, var=1.0 / beta, full=True, reduction="sum")


def _l2(pred, target):
    # The course's L2 loss is half the summed squared error (the Gaussian NLL's quadratic term).
    return 0.5 * lossutils.mse_loss(pred, target, reduction="sum")


def _l2_grad(pred, target):
    return 0.5 * lossutils.mse_loss_grad(pred, target, reduction="sum")


def _pair_cases(rng, hidden, *, ties=False):
    """Hand-made pairs, then random (M,) and (M, K) pairs in float64 and float32."""
    cases = [
        case("hand-made: L([3], [1])", np.array([3.0]), np.array([1.0])),
        case("hand-made, float32", np.array([1.0, 2.0, 3.0], np.float32),
             np.array([0.0, 2.0, 5.0], np.float32)),
        case("batch of one", np.array([-0.5]), np.array([2.0])),
        case("2-D predictions", np.array([[1.0, -1.0], [0.5, 2.0]]),
             np.array([[0.0, 1.0], [0.5, -2.0]])),
        case("large values", np.array([1e4, -1e4]), np.array([-1e4, 1e4])),
    ]
    for dtype in DTYPES:
        for _ in range(n_random(hidden)):
            shape = (int(rng.integers(2, 12)),)
            if rng.random() < 0.3:
                shape += (int(rng.integers(2, 4)),)
            pred = rng.normal(size=shape).astype(dtype)
            target = (pred + rng.normal(size=shape)).astype(dtype)
            if ties:
                target.flat[: max(1, pred.size // 3)] = pred.flat[: max(1, pred.size // 3)]
            cases.append(case(f"random {np.dtype(dtype).name}, shape {shape}", pred, target))
    return cases


def _tie_cases(rng, hidden):
    ties = case("ties: pred == target", np.array([1.0, 2.0, -3.0]), np.array([1.0, 0.0, -3.0]))
    return [*_pair_cases(rng, hidden, ties=True), ties]


def _gaussian_cases(rng, hidden):
    cases = [
        case("a perfect fit, beta = 1", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]),
             1.0),
        case("hand-made, beta = 4", np.array([0.0, 1.0]), np.array([1.0, 3.0]), 4.0),
        case("batch of one, beta = 0.5", np.array([2.0]), np.array([-1.0]), 0.5),
        case("float32, beta = 2", np.array([0.5, -1.5, 2.0], np.float32),
             np.array([1.0, -1.0, 0.0], np.float32), 2.0),
        case("beta as a numpy scalar", np.array([0.5, 1.0]), np.array([1.5, 1.0]),
             np.float64(0.25)),
    ]
    for dtype in DTYPES:
        for _ in range(n_random(hidden)):
            m = int(rng.integers(2, 15))
            beta = float(np.round(rng.uniform(0.2, 5.0), 3))
            pred = rng.normal(size=m).astype(dtype)
            target = (pred + rng.normal(size=m)).astype(dtype)
            cases.append(case(f"random {np.dtype(dtype).name}, M = {m}, beta = {beta}", pred,
                              target, beta))
    return cases


def _sq(pred, target):
    return np.sum((np.asarray(pred, np.float64) - target) ** 2)


def _m(pred):
    return np.asarray(pred).size


register(
    FunctionExercise(
        "gaussian_nll",
        notebook=NOTEBOOK,
        signature="gaussian_nll(pred, target, beta)",
        arg_names=("pred", "target", "beta"),
        reference=_gaussian_nll,
        cases=_gaussian_cases,
        mistakes=(
            Mistake(
                "std_instead_of_variance",
                "you used 1/beta as the standard deviation; beta is the precision, the "
                "inverse of the variance sigma^2, not of sigma.",
                models=(lambda p, t, b: _m(p) / 2 * _LOG_2PI - _m(p) * np.log(b)
                        + b**2 / 2 * _sq(p, t),),
            ),
            Mistake(
                "precision_as_variance",
                "you used beta as the variance; beta is the precision, the inverse of the "
                "variance: a larger beta means a narrower Gaussian.",
                models=(lambda p, t, b: _m(p) / 2 * (_LOG_2PI + np.log(b))
                        + _sq(p, t) / (2 * b),),
            ),
            Mistake(
                "missing_half",
                "a factor 1/2 is missing: the square root in the normalising constant and the "
                "1/2 in the exponent each bring one.",
                models=(lambda p, t, b: _m(p) / 2 * (_LOG_2PI - np.log(b)) + b * _sq(p, t),
                        lambda p, t, b: _m(p) * (_LOG_2PI - np.log(b)) + b * _sq(p, t)),
            ),
            Mistake(
                "dropped_constants",
                "you dropped the terms that do not depend on the prediction; this exercise "
                "asks for the full NLL, constants included.",
                models=(lambda p, t, b: b / 2 * _sq(p, t),
                        lambda p, t, b: -_m(p) / 2 * np.log(b) + b / 2 * _sq(p, t)),
            ),
            Mistake(
                "log_beta_sign",
                "the log(beta) term has the wrong sign: a larger precision makes the density "
                "taller, so it must lower the NLL of a perfect fit.",
                models=(lambda p, t, b: _m(p) / 2 * (_LOG_2PI + np.log(b)) + b / 2 * _sq(p, t),),
            ),
            mean_instead_of_sum(
                lambda p, t, b: (_m(p) / 2 * (_LOG_2PI - np.log(b)) + b / 2 * _sq(p, t)) / _m(p),
                what="the NLL of M samples",
            ),
        ),
    )
)

register(
    FunctionExercise(
        "l2_loss",
        notebook=NOTEBOOK,
        signature="l2_loss(pred, target)",
        arg_names=("pred", "target"),
        reference=_l2,
        cases=_pair_cases,
        mistakes=(
            Mistake(
                "missing_half",
                "the factor 1/2 is missing: the Gaussian derivation gives L2 = 1/2 sum "
                "(pred - target)^2 (so L([3], [1]) is 2, not 4).",
                models=(_sq,),
            ),
            Mistake(
                "norm_not_squared",
                "L2 here is a sum of squared differences, not the Euclidean norm (no square "
                "root): 1/2 sum (pred - target)^2.",
                models=(lambda p, t: np.sqrt(_sq(p, t)), lambda p, t: 0.5 * np.sqrt(_sq(p, t)),
                        lambda p, t: np.sum(np.sqrt(np.abs(np.subtract(p, t))))),
            ),
            mean_instead_of_sum(lambda p, t: 0.5 * _sq(p, t) / _m(p),
                                lambda p, t: _sq(p, t) / _m(p), what="the L2 loss"),
        ),
    )
)

register(
    FunctionExercise(
        "l2_loss_grad",
        notebook=NOTEBOOK,
        signature="l2_loss_grad(pred, target)",
        arg_names=("pred", "target"),
        reference=_l2_grad,
        cases=_pair_cases,
        mistakes=(
            Mistake(
                "sign_flipped",
                "the sign is flipped: differentiate with respect to pred, not target (the "
                "inner derivative of pred - target with respect to pred is +1).",
                models=(lambda p, t: np.subtract(t, p),),
            ),
            Mistake(
                "extra_factor_two",
                "your gradient is twice too large: the 1/2 in front of the sum cancels the 2 "
                "that differentiating the square brings down.",
                models=(lambda p, t: 2 * np.subtract(p, t),),
            ),
            mean_instead_of_sum(lambda p, t: np.subtract(p, t) / np.shape(p)[0],
                                lambda p, t: np.subtract(p, t) / np.size(p),
                                what="the L2 loss being differentiated"),
        ),
    )
)

register(
    FunctionExercise(
        "l1_loss",
        notebook=NOTEBOOK,
        signature="l1_loss(pred, target)",
        arg_names=("pred", "target"),
        reference=partial(lossutils.l1_loss, reduction="sum"),
        cases=_pair_cases,
        mistakes=(
            Mistake(
                "missing_abs",
                "the absolute value is missing: positive and negative errors cancel; L1 is "
                "sum |pred - target|.",
                models=(lambda p, t: np.sum(np.subtract(p, t)),
                        lambda p, t: np.sum(np.subtract(t, p))),
            ),
            Mistake(
                "squared_error",
                "you squared the differences: that is the L2 loss; L1 is sum |pred - target|.",
                models=(_sq, lambda p, t: 0.5 * _sq(p, t)),
            ),
            mean_instead_of_sum(lambda p, t: np.mean(np.abs(np.subtract(p, t))),
                                what="the L1 loss"),
        ),
    )
)


class SubgradientExercise(FunctionExercise):
    """Accepts any value in ``[lo, hi]`` where the reference sits on a kink.

    ``kinks(case, expected) -> (mask, lo, hi)`` gives the kink positions and the interval of
    valid subgradients there.
    """

    def __init__(self, id: str, *, kinks: Callable, **kw: Any):
        super().__init__(id, **kw)
        self.kinks = kinks

    def adjust_expected(self, case: Case, got: np.ndarray, expected: Any) -> Any:
        mask, lo, hi = self.kinks(case, expected)
        if got.shape != np.shape(expected) or not mask.any():
            return expected
        valid = mask & (got >= lo - 1e-6) & (got <= hi + 1e-6)
        return np.where(valid, got, expected).astype(np.asarray(expected).dtype)


def _l1_kinks(case, expected):
    pred, target = case.args
    return pred == target, -1.0, 1.0


register(
    SubgradientExercise(
        "l1_loss_grad",
        notebook=NOTEBOOK,
        signature="l1_loss_grad(pred, target)",
        arg_names=("pred", "target"),
        reference=partial(lossutils.l1_loss_grad, reduction="sum"),
        cases=_tie_cases,
        kinks=_l1_kinks,
        mistakes=(
            Mistake(
                "sign_flipped",
                "the sign is flipped: the derivative of |pred - target| with respect to pred "
                "is sign(pred - target).",
                models=(lambda p, t: np.sign(np.subtract(t, p)),),
            ),
            Mistake(
                "extra_factor_two",
                "your subgradient is twice too large: a factor 2 comes from differentiating a "
                "square, and the absolute value has slope -1 or +1, nothing to bring down.",
                models=(lambda p, t: 2 * np.sign(np.subtract(p, t)),),
            ),
            Mistake(
                "returns_difference",
                "you returned pred - target, the gradient of the L2 loss; the L1 gradient is "
                "sign(pred - target), which does not grow with the error.",
                models=(lambda p, t: np.subtract(p, t),),
            ),
            mean_instead_of_sum(lambda p, t: np.sign(np.subtract(p, t)) / np.shape(p)[0],
                                lambda p, t: np.sign(np.subtract(p, t)) / np.size(p),
                                what="the L1 loss being differentiated"),
        ),
    )
)
