"""Exercises of notebook 04-kl-divergence: entropy, KL divergence, BCE with logits."""

from __future__ import annotations

import numpy as np

import lossutils

from ._common import DTYPES, case, log_base, n_random, sum_instead_of_mean
from ._core import FunctionExercise, Mistake, register

NOTEBOOK = "04-kl-divergence"


def _dirichlet(rng, shape, dtype, zeros=False):
    p = rng.gamma(1.0, size=shape)
    if zeros:
        # Zero out one entry per row (never a whole row): 0 log 0 must count as 0.
        cols = rng.integers(0, shape[-1], size=shape[:-1])
        np.put_along_axis(p, cols[..., None], 0.0, axis=-1)
    return (p / p.sum(-1, keepdims=True)).astype(dtype)


def _dist_cases(rng, hidden):
    cases = [
        case("a fair coin", np.array([0.5, 0.5])),
        case("a certain outcome (a probability of exactly 0 and 1)", np.array([1.0, 0.0])),
        case("rows with zeros", np.array([[0.2, 0.0, 0.8], [0.0, 0.0, 1.0]])),
        case("square input with distinct rows",
             np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [1 / 3, 1 / 3, 1 / 3]])),
        case("batch of one, float32", np.array([[0.25, 0.25, 0.5]], np.float32)),
        case("3-D input (2, 2, 3)", np.array([[[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]],
                                              [[1.0, 0.0, 0.0], [0.3, 0.3, 0.4]]])),
    ]
    for dtype in DTYPES:
        for i in range(n_random(hidden)):
            shape = (int(rng.integers(2, 7)), int(rng.integers(2, 6)))
            cases.append(case(f"random {np.dtype(dtype).name}, shape {shape}",
                              _dirichlet(rng, shape, dtype, zeros=i % 2 == 1)))
    return cases


def _pair_cases(rng, hidden):
    cases = [
        case("KL([.9, .1] || [.5, .5]) = 0.368", np.array([0.9, 0.1]), np.array([0.5, 0.5])),
        case("KL([.5, .5] || [.9, .1]) = 0.511", np.array([0.5, 0.5]), np.array([0.9, 0.1])),
        case("identical distributions", np.array([[0.2, 0.8], [0.6, 0.4]]),
             np.array([[0.2, 0.8], [0.6, 0.4]])),
        case("p with zeros (0 log 0 = 0)", np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]]),
             np.array([[0.2, 0.3, 0.5], [0.4, 0.4, 0.2]])),
        case("q with zeros: inf where p > 0, 0 where p = 0 too",
             np.array([[0.5, 0.5, 0.0], [0.0, 0.3, 0.7]]),
             np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])),
        case("square input with distinct rows",
             np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]]),
             np.array([[0.3, 0.3, 0.4], [0.5, 0.25, 0.25], [0.1, 0.8, 0.1]])),
        case("batch of one, float32", np.array([[0.1, 0.6, 0.3]], np.float32),
             np.array([[0.3, 0.3, 0.4]], np.float32)),
        case("3-D input (2, 2, 3)", np.array([[[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]],
                                              [[1.0, 0.0, 0.0], [0.3, 0.3, 0.4]]]),
             np.array([[[0.3, 0.3, 0.4], [0.2, 0.2, 0.6]],
                       [[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]])),
    ]
    for dtype in DTYPES:
        for i in range(n_random(hidden)):
            shape = (int(rng.integers(2, 7)), int(rng.integers(2, 6)))
            cases.append(case(f"random {np.dtype(dtype).name}, shape {shape}",
                              _dirichlet(rng, shape, dtype, zeros=i % 2 == 1),
                              _dirichlet(rng, shape, dtype)))
    return cases


def _logit_cases(rng, hidden):
    cases = [
        case("hand-made", np.array([0.0, 2.0, -1.0]), np.array([0.5, 1.0, 0.0])),
        case("extreme logits +-1e4 with hard targets", np.array([1e4, -1e4, 1e4, -1e4]),
             np.array([0.0, 1.0, 1.0, 0.0])),
        case("extreme logits +-1e4, float32", np.array([1e4, -1e4], np.float32),
             np.array([0.0, 0.0], np.float32)),
        case("2-D logits", np.array([[0.5, -0.5], [3.0, -2.0]]), np.array([[1.0, 0.0],
                                                                         [0.3, 0.7]])),
        case("batch of one", np.array([1.5]), np.array([1.0])),
    ]
    for dtype in DTYPES:
        for _ in range(n_random(hidden)):
            shape = (int(rng.integers(2, 10)),)
            logits = (rng.normal(size=shape) * 4).astype(dtype)
            target = rng.random(size=shape).astype(dtype)
            cases.append(case(f"random {np.dtype(dtype).name}, shape {shape}", logits, target))
    return cases


def _xlogy(x, y):
    return np.where(x == 0, 0.0, x * np.log(np.where(x == 0, 1.0, y)))


_LOG_ZERO = (
    "log_zero",
    "a probability of 0 gave 0 * log(0) = nan: the convention is 0 log 0 = 0. Keep the "
    "zeros out of the logarithm's argument, so that log never sees a 0 (no epsilon needed; "
    "masking the result afterwards still evaluates log(0) and warns).",
)

# The three exercises state "no warnings": a warning here means log(0) or an overflow was
# evaluated, which the notebook teaches to avoid rather than to silence.
_NO_LOG_ZERO = (
    "the value is right, but log(0) (or 0 * inf) was evaluated along the way and warned: "
    "keep the zeros out of the logarithm's argument, so that it never sees a 0 (choosing "
    "among results afterwards is too late, both branches are computed)."
)

register(
    FunctionExercise(
        "entropy",
        notebook=NOTEBOOK,
        signature="entropy(p)",
        arg_names=("p",),
        reference=lossutils.entropy,
        cases=_dist_cases,
        no_warnings=_NO_LOG_ZERO,
        mistakes=(
            Mistake(*_LOG_ZERO, models=(lambda p: -np.sum(p * np.log(p), axis=-1),)),
            Mistake(
                "wrong_axis",
                "you summed over the wrong axis: each distribution lies along the last axis, "
                "whatever the number of leading axes (one entropy per distribution).",
                models=(lambda p: -np.sum(_xlogy(p, p), axis=0), lambda p: -np.sum(_xlogy(p, p))),
            ),
            Mistake(
                "sign_flipped",
                "the sign is flipped: entropy is -sum p log p, which is >= 0.",
                models=(lambda p: np.sum(_xlogy(p, p), axis=-1),),
            ),
            log_base(lambda p: -np.sum(_xlogy(p, p), axis=-1) / np.log(2),
                     lambda p: -np.sum(_xlogy(p, p), axis=-1) / np.log(10)),
        ),
    )
)


def _kl_model(p, q):
    return np.sum(_xlogy(p, p) - _xlogy(p, q), axis=-1)


register(
    FunctionExercise(
        "kl_divergence",
        notebook=NOTEBOOK,
        signature="kl_divergence(p, q)",
        arg_names=("p", "q"),
        reference=lossutils.kl_divergence,
        cases=_pair_cases,
        no_warnings=_NO_LOG_ZERO + " Where q is 0 under p > 0, +inf is honest: silence only "
        "that divide-by-zero warning.",
        mistakes=(
            Mistake(
                "swapped_arguments",
                "you computed KL(q || p); KL is asymmetric and the expectation is under the "
                "first argument: sum p log(p / q).",
                models=(lambda p, q: _kl_model(q, p),),
            ),
            Mistake(*_LOG_ZERO, models=(lambda p, q: np.sum(p * np.log(p / q), axis=-1),)),
            Mistake(
                "cross_entropy_instead",
                "you returned the cross-entropy H(p, q) = -sum p log q; KL(p || q) = "
                "H(p, q) - H(p) also subtracts the entropy of p.",
                models=(lambda p, q: -np.sum(_xlogy(p, q), axis=-1),),
            ),
            Mistake(
                "sign_flipped",
                "the sign is flipped: KL(p || q) = sum p log(p / q) >= 0.",
                models=(lambda p, q: -_kl_model(p, q),),
            ),
            Mistake(
                "wrong_axis",
                "you summed over the wrong axis: each distribution lies along the last axis, "
                "whatever the number of leading axes (one divergence per pair).",
                models=(lambda p, q: np.sum(_xlogy(p, p) - _xlogy(p, q), axis=0),
                        lambda p, q: np.sum(_xlogy(p, p) - _xlogy(p, q))),
            ),
            log_base(lambda p, q: _kl_model(p, q) / np.log(2),
                     lambda p, q: _kl_model(p, q) / np.log(10)),
        ),
    )
)


def _naive_bce(x, t):
    s = 1 / (1 + np.exp(-x))
    return -np.mean(t * np.log(s) + (1 - t) * np.log(1 - s))


def _overflow_detect(case_, got, expected, warnings):
    # Only large logits can make a sigmoid round to 0 or 1; elsewhere nan has other causes.
    large = np.max(np.abs(case_.args[0])) > 30
    return large and not np.all(np.isfinite(got)) and any(
        "overflow" in w or "divide by zero" in w for w in warnings)


def _stable_bce_terms(x, t):
    return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


register(
    FunctionExercise(
        "binary_cross_entropy_with_logits",
        notebook=NOTEBOOK,
        signature="binary_cross_entropy_with_logits(logits, target)",
        arg_names=("logits", "target"),
        reference=lossutils.binary_cross_entropy_with_logits,
        cases=_logit_cases,
        no_warnings="the value is right, but exp overflowed or log saw a 0 along the way: "
        "write the loss so that exp only ever sees non-positive arguments and log only "
        "positive ones.",
        mistakes=(
            Mistake(
                "overflow",
                "sigmoid(x) rounds to 0 or 1 for large |x|, and log(0) = -inf (or exp "
                "overflows): compute the loss from the logit in a form where exp only ever "
                "sees non-positive arguments.",
                models=(_naive_bce,),
                detect=_overflow_detect,
            ),
            Mistake(
                "logits_as_probabilities",
                "you used the logits as probabilities; apply the sigmoid first (or use the "
                "stable logits form).",
                models=(lambda x, t: -np.mean(t * np.log(x) + (1 - t) * np.log(1 - x)),),
            ),
            sum_instead_of_mean(lambda x, t: np.sum(_stable_bce_terms(x, t)),
                                what="binary cross-entropy"),
            Mistake(
                "sign_flipped",
                "the sign is flipped: BCE is -[t log s + (1 - t) log(1 - s)] >= 0.",
                models=(lambda x, t: -np.mean(_stable_bce_terms(x, t)),),
            ),
        ),
    )
)
