"""Notebook 02: the precision of a Gaussian and the Laplace model (L1), step by step."""

from __future__ import annotations

import numpy as np

from .._core import Mistake
from .._derivation import Derivation, Follows, Step, Symbols


def _sum(s, body):
    import sympy as sp

    return sp.Sum(body, (s.m, 1, s.M))


# --------------------------------------------------------------------------- the precision


def _regression_data(rng):
    size = int(rng.integers(2, 8))
    return {"M": size, "y": rng.normal(0.0, 2.0, size), "yhat": rng.normal(0.0, 2.0, size)}


def _beta(rng, data):
    return {"beta": rng.uniform(0.2, 5.0)}


def _sq(s):
    return _sum(s, (s.y[s.m] - s.yhat[s.m]) ** 2)


def _nll(s):
    import sympy as sp

    return s.M * sp.log(2 * sp.pi) / 2 - s.M * sp.log(s.beta) / 2 + s.beta * _sq(s) / 2


def _dnll(s):
    return -s.M / (2 * s.beta) + _sq(s) / 2


def _beta_hat(s):
    return s.M / _sq(s)


def _std_for_variance(s):
    import sympy as sp

    return s.M * sp.log(2 * sp.pi) / 2 - s.M * sp.log(s.beta) + s.beta**2 * _sq(s) / 2


def _beta_as_variance(s):
    import sympy as sp

    return s.M * sp.log(2 * sp.pi) / 2 + s.M * sp.log(s.beta) / 2 + _sq(s) / (2 * s.beta)


def _nll_no_half(s):
    import sympy as sp

    return s.M * sp.log(2 * sp.pi) / 2 - s.M * sp.log(s.beta) / 2 + s.beta * _sq(s)


def _nll_no_2pi(s):
    import sympy as sp

    return -s.M * sp.log(s.beta) / 2 + s.beta * _sq(s) / 2


PRECISION = Derivation(
    "gaussian_precision",
    notebook="02-gaussian-l2",
    symbols=Symbols(scalars={"beta": {"positive": True}, "M": {"integer": True,
                                                               "positive": True}},
                    indexed={"y": "y[m]", "yhat": "yhat[m]"}, indices=("m",),
                    params=("beta",)),
    draw=_regression_data,
    draw_params=_beta,
    steps=[
        Step(
            "nll_beta", "the negative log-likelihood of the M samples, every term kept", _nll,
            uses=("beta", "M", "y", "yhat"),
            mistakes=(
                Mistake("std_instead_of_variance", "1/beta is the variance sigma^2, not the "
                        "standard deviation: the density has sqrt(beta / (2 pi)) in front "
                        "and beta/2 in the exponent.", models=(_std_for_variance,)),
                Mistake("precision_as_variance", "beta is the precision, the inverse of the "
                        "variance: it multiplies the squared error, it does not divide it.",
                        models=(_beta_as_variance,)),
                Mistake("missing_half", "the exponent of the density is "
                        "-beta (y - yhat)^2 / 2: a factor 1/2 is missing.",
                        models=(_nll_no_half,)),
                Mistake("dropped_constant", "this step keeps every term: the normalising "
                        "constant contributes M/2 log(2 pi) as well.", models=(_nll_no_2pi,)),
                Mistake("negated", "that is the log-likelihood; the step asks for its "
                        "negative.", models=(lambda s: -_nll(s),)),
            ),
        ),
        Step(
            "dnll_dbeta", "the derivative of the negative log-likelihood with respect to "
            "beta", _dnll, uses=("beta", "M", "y", "yhat"),
            follows=Follows("nll_beta", "derivative", "beta"),
            mistakes=(
                Mistake("negated", "that is the derivative of the log-likelihood; the step "
                        "differentiates its negative.", models=(lambda s: -_dnll(s),)),
                Mistake("missing_log_term", "the term -M/2 log(beta) depends on beta too: "
                        "its derivative, -M/(2 beta), is missing.",
                        models=(lambda s: _sq(s) / 2,)),
                Mistake("log_term_once", "the constant -log(beta)/2 appears once per sample, "
                        "M times in all.", models=(lambda s: -1 / (2 * s.beta) + _sq(s) / 2,)),
                Mistake("missing_half", "the squared errors come with beta/2: their "
                        "derivative keeps the 1/2.",
                        models=(lambda s: -s.M / (2 * s.beta) + _sq(s),)),
            ),
        ),
        Step(
            "beta_hat", "the maximum-likelihood estimate of the precision beta", _beta_hat,
            uses=("M", "y", "yhat"),
            follows=Follows("dnll_dbeta", "root", "beta"),
            mistakes=(
                Mistake("variance_not_precision", "that estimates the variance 1/beta; the "
                        "precision is its inverse.", models=(lambda s: _sq(s) / s.M,)),
                Mistake("std", "that is one over the estimated standard deviation; the "
                        "precision is one over the variance.",
                        models=(lambda s: _sqrt(_beta_hat(s)),)),
                Mistake("bessel", "maximum likelihood divides by the number of samples M, not "
                        "M - 1.", models=(lambda s: (s.M - 1) / _sq(s),)),
                Mistake("missing_m", "the M terms -log(beta)/2 give M/(2 beta) in the "
                        "derivative: the estimate has M in it.", models=(lambda s: 1 / _sq(s),)),
            ),
        ),
    ],
)


def _sqrt(expr):
    import sympy as sp

    return sp.sqrt(expr)


# --------------------------------------------------------------------------- Laplace and L1


def _sorted_data(rng):
    k = int(rng.integers(1, 4))
    size = 2 * k + 1
    return {"K": k, "M": size, "y": np.sort(rng.normal(0.0, 2.0, size))}


def _laplace_params(rng, data):
    return {"b": rng.uniform(0.2, 3.0), "yhat": rng.normal(0.0, 2.0, data["M"]),
            "c": rng.uniform(-2.0, 2.0)}


def _abs_err(s):
    import sympy as sp

    return _sum(s, sp.Abs(s.y[s.m] - s.yhat[s.m]))


def _laplace_nll(s):
    import sympy as sp

    return s.M * sp.log(2 * s.b) + _abs_err(s) / s.b


def _slope(s):
    import sympy as sp

    return _sum(s, sp.sign(s.c - s.y[s.m]))


def _median(s):
    return s.y[s.K + 1]


def _laplace_no_2(s):
    import sympy as sp

    return s.M * sp.log(s.b) + _abs_err(s) / s.b


def _laplace_squared(s):
    import sympy as sp

    return s.M * sp.log(2 * s.b) + _sum(s, (s.y[s.m] - s.yhat[s.m]) ** 2) / s.b


def _laplace_b_times(s):
    import sympy as sp

    return s.M * sp.log(2 * s.b) + s.b * _abs_err(s)


LAPLACE = Derivation(
    "laplace_l1",
    notebook="02-gaussian-l2",
    symbols=Symbols(scalars={"b": {"positive": True}, "c": {"real": True},
                             "M": {"integer": True, "positive": True},
                             "K": {"integer": True, "positive": True}},
                    indexed={"y": "y[m]", "yhat": "yhat[m]"}, indices=("m",),
                    params=("b", "yhat", "c")),
    draw=_sorted_data,
    draw_params=_laplace_params,
    steps=[
        Step(
            "laplace_nll", "the negative log-likelihood of the M samples under Laplace "
            "noise, every term kept", _laplace_nll, uses=("b", "M", "y", "yhat"),
            mistakes=(
                Mistake("missing_two", "the Laplace density is exp(-|y - yhat| / b) / (2 b): "
                        "its normaliser gives log(2 b), not log(b).", models=(_laplace_no_2,)),
                Mistake("squared", "the Laplace density has the absolute error |y - yhat|; "
                        "its square belongs to the Gaussian.", models=(_laplace_squared,)),
                Mistake("scale_multiplies", "b is a scale: the exponent is -|y - yhat| / b, "
                        "divided by b, not multiplied.", models=(_laplace_b_times,)),
                Mistake("dropped_normaliser", "this step keeps every term: log(2 b) from the "
                        "normaliser depends on b and stays.",
                        models=(lambda s: _abs_err(s) / s.b,)),
                Mistake("negated", "that is the log-likelihood; the step asks for its "
                        "negative.", models=(lambda s: -_laplace_nll(s),)),
            ),
        ),
        Step(
            "l1_slope", "the derivative of sum_m |y[m] - c| with respect to c (where c is "
            "not one of the y[m])", _slope, uses=("c", "M", "y"),
            mistakes=(
                Mistake("negated", "the derivative of |y - c| with respect to c is "
                        "sign(c - y): the inner derivative of y - c is -1.",
                        models=(lambda s: -_slope(s),)),
                Mistake("l2_gradient", "that is the derivative of half the squared error; the "
                        "slope of an absolute value is +1 or -1.",
                        models=(lambda s: _sum(s, s.c - s.y[s.m]),
                                lambda s: 2 * _sum(s, s.c - s.y[s.m]))),
                Mistake("constant_slope", "the slope of |y - c| is -1 where c < y and +1 "
                        "where c > y, not the same everywhere.",
                        models=(lambda s: s.M, lambda s: -s.M)),
            ),
        ),
        Step(
            "c_hat", "the constant c that minimises sum_m |y[m] - c| for M = 2K + 1 sorted "
            "samples", _median, uses=("K", "M", "y"),
            mistakes=(
                Mistake("mean", "the mean minimises the squared error; the absolute error is "
                        "smallest where the slope changes sign, with as many samples above c "
                        "as below.", models=(lambda s: _sum(s, s.y[s.m]) / s.M,)),
                Mistake("off_by_one", "with M = 2K + 1 sorted samples the middle one has K "
                        "samples on each side: count again.",
                        models=(lambda s: s.y[s.K], lambda s: s.y[s.K + 2])),
                Mistake("midrange", "the midpoint of the smallest and the largest sample "
                        "minimises the largest error, not the sum of the errors.",
                        models=(lambda s: (s.y[1] + s.y[s.M]) / 2,)),
            ),
        ),
    ],
)
