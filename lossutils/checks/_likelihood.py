"""Exercises of notebook 01-likelihood: log-likelihood, NLL, and the MLE of a coin."""

from __future__ import annotations

from functools import partial

import numpy as np

import lossutils

from ._common import DTYPES, case, log_base, mean_instead_of_sum, n_random
from ._core import FunctionExercise, Mistake, register

NOTEBOOK = "01-likelihood"


def _prob_cases(rng, hidden):
    cases = [
        case("the coin: one tails, p(tails) = 0.7", np.array([0.7])),
        case("hand-made: 1/2, 1/4, 1/8", np.array([0.5, 0.25, 0.125])),
        case("a sample of probability exactly 0", np.array([0.5, 0.0, 0.9])),
        case("probabilities exactly 1", np.array([1.0, 1.0, 1.0])),
        case("1000 samples of probability 0.1 (the product underflows)", np.full(1000, 0.1)),
        case("batch of one, float32", np.array([0.3], dtype=np.float32)),
    ]
    for dtype in DTYPES:
        for _ in range(n_random(hidden)):
            m = int(rng.integers(2, 40 if hidden else 12))
            probs = rng.uniform(0.01, 1.0, size=m).astype(dtype)
            cases.append(case(f"random {np.dtype(dtype).name}, M = {m}", probs))
    return cases


def _finite_where_infinite(case_, got, expected, warnings):
    return bool(np.isinf(expected)) and bool(np.isfinite(got))


def _underflow(model):
    return Mistake(
        "product_underflow",
        "the product of many probabilities underflowed to 0, so its log is -inf: take the log "
        "of each probability and sum (log of a product = sum of logs).",
        models=(model,),
    )


# Both exercises state that -inf comes without a warning (stderr would fail a notebook cell).
_SILENCE_LOG_ZERO = (
    "the value is right, but np.log(0) warned (divide by zero) although -inf is the right "
    "answer: silence that one warning around the logarithm, as the exercise says, and "
    "nothing more."
)

_EPSILON = Mistake(
    "epsilon_clip",
    "a probability of exactly 0 makes the likelihood 0 and its log -inf; do not add an epsilon "
    "or clip the probabilities, np.log(0) = -inf is the right answer here.",
    detect=_finite_where_infinite,
)

register(
    FunctionExercise(
        "log_likelihood",
        notebook=NOTEBOOK,
        signature="log_likelihood(probs)",
        arg_names=("probs",),
        reference=lossutils.log_likelihood,
        cases=_prob_cases,
        no_warnings=_SILENCE_LOG_ZERO,
        mistakes=(
            _underflow(lambda p: np.log(np.prod(p))),
            Mistake(
                "sign_flipped",
                "you returned the negative log-likelihood; the log-likelihood is "
                "sum_m log p_m, which is <= 0.",
                models=(lambda p: -np.sum(np.log(p)),),
            ),
            mean_instead_of_sum(lambda p: np.mean(np.log(p)), what="the log-likelihood"),
            log_base(lambda p: np.sum(np.log10(p)), lambda p: np.sum(np.log2(p))),
            _EPSILON,
        ),
    )
)

register(
    FunctionExercise(
        "negative_log_likelihood",
        notebook=NOTEBOOK,
        signature="negative_log_likelihood(probs)",
        arg_names=("probs",),
        reference=partial(lossutils.negative_log_likelihood, reduction="sum"),
        cases=_prob_cases,
        no_warnings=_SILENCE_LOG_ZERO,
        mistakes=(
            _underflow(lambda p: -np.log(np.prod(p))),
            Mistake(
                "sign_flipped",
                "you returned the log-likelihood; the negative log-likelihood is "
                "-sum_m log p_m, which is >= 0 (the minus turns maximising into minimising).",
                models=(lambda p: np.sum(np.log(p)),),
            ),
            mean_instead_of_sum(lambda p: -np.mean(np.log(p)), what="the NLL of this exercise"),
            log_base(lambda p: -np.sum(np.log10(p)), lambda p: -np.sum(np.log2(p))),
            _EPSILON,
        ),
    )
)


def _mle(outcomes):
    # The MLE of a Bernoulli parameter is the sample mean; float outcomes keep their dtype.
    outcomes = np.asarray(outcomes)
    return outcomes.mean(dtype=outcomes.dtype if outcomes.dtype.kind == "f" else np.float64)


def _outcome_cases(rng, hidden):
    cases = [
        case("7 heads in 10 tosses", np.array([1, 0, 1, 1, 0, 1, 1, 0, 1, 1])),
        case("no heads at all", np.array([0, 0, 0])),
        case("batch of one: heads", np.array([1])),
        case("float outcomes", np.array([1.0, 0.0, 0.0, 1.0, 1.0])),
        case("float32 outcomes", np.array([0, 1, 1, 1], dtype=np.float32)),
    ]
    for _ in range(2 * n_random(hidden)):
        m = int(rng.integers(2, 60 if hidden else 25))
        p = rng.uniform(0.1, 0.9)
        cases.append(case(f"random, M = {m}", (rng.random(m) < p).astype(np.int64)))
    return cases


register(
    FunctionExercise(
        "bernoulli_mle",
        notebook=NOTEBOOK,
        signature="bernoulli_mle(outcomes)",
        arg_names=("outcomes",),
        reference=_mle,
        cases=_outcome_cases,
        mistakes=(
            Mistake(
                "fraction_of_tails",
                "you estimated p(tails); the exercise asks for p(heads), the probability of "
                "the outcome coded 1.",
                models=(lambda o: 1.0 - np.mean(o),),
            ),
            Mistake(
                "count_not_fraction",
                "you returned a count, which grows with the number of tosses; an estimate of "
                "a probability lies in [0, 1]: check the last step of your derivation.",
                models=(lambda o: float(np.sum(o)),),
            ),
            Mistake(
                "integer_division",
                "integer division (//) rounds the result down to a whole number, 0 or 1: "
                "use true division.",
                models=(lambda o: float(np.sum(o) // len(o)),),
            ),
        ),
    )
)
