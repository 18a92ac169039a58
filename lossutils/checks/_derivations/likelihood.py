"""Notebook 01: the maximum-likelihood estimates of a coin and of a Gaussian, step by step."""

from __future__ import annotations

from .._core import Mistake
from .._derivation import Derivation, Follows, Step, Symbols

# --------------------------------------------------------------------------- the coin


def _flips(rng):
    size = int(rng.integers(2, 8))
    flips = rng.integers(0, 2, size)
    flips[rng.permutation(size)[:2]] = (0, 1)  # heads and tails both occur: 0 < p_hat < 1
    return {"M": size, "y": flips.astype(float)}


def _p(rng, data):
    return {"p": rng.uniform(0.05, 0.95)}


def _sum(s, body):
    import sympy as sp

    return sp.Sum(body, (s.m, 1, s.M))


def _coin_log_lik(s):
    import sympy as sp

    y = s.y[s.m]
    return _sum(s, y * sp.log(s.p) + (1 - y) * sp.log(1 - s.p))


def _coin_score(s):
    y = s.y[s.m]
    return _sum(s, y / s.p - (1 - y) / (1 - s.p))


def _coin_p_hat(s):
    return _sum(s, s.y[s.m]) / s.M


def _coin_likelihood(s):
    import sympy as sp

    y = s.y[s.m]
    return sp.Product(s.p**y * (1 - s.p) ** (1 - y), (s.m, 1, s.M))


def _coin_swapped(s):
    import sympy as sp

    y = s.y[s.m]
    return _sum(s, y * sp.log(1 - s.p) + (1 - y) * sp.log(s.p))


def _coin_heads_only(s):
    import sympy as sp

    return _sum(s, s.y[s.m] * sp.log(s.p))


def _coin_chain_rule(s):
    y = s.y[s.m]
    return _sum(s, y / s.p + (1 - y) / (1 - s.p))


BERNOULLI = Derivation(
    "bernoulli_mle",
    notebook="01-likelihood",
    symbols=Symbols(scalars={"p": {"positive": True}, "M": {"integer": True, "positive": True}},
                    indexed={"y": "y[m]"}, indices=("m",), params=("p",)),
    draw=_flips,
    draw_params=_p,
    steps=[
        Step(
            "log_lik", "log L(p), the log-likelihood of the M flips", _coin_log_lik,
            uses=("p", "M", "y"),
            mistakes=(
                Mistake("likelihood_not_log", "that is the likelihood L(p) itself, a product; "
                        "the step asks for its logarithm, which turns the product into a sum.",
                        models=(_coin_likelihood,)),
                Mistake("negated", "that is the negative log-likelihood; this step asks for "
                        "log L itself (the minus sign comes in when we minimise).",
                        models=(lambda s: -_coin_log_lik(s),)),
                Mistake("swapped", "heads (y = 1) got the probability 1 - p and tails p: p is "
                        "the probability of heads.", models=(_coin_swapped,)),
                Mistake("missing_tails", "the tails are missing: a flip with y = 0 contributes "
                        "log(1 - p), from the factor (1 - p)^(1 - y).",
                        models=(_coin_heads_only,)),
            ),
        ),
        Step(
            "score", "d log L / dp, the derivative of the log-likelihood", _coin_score,
            uses=("p", "M", "y"),
            follows=Follows("log_lik", "derivative", "p"),
            mistakes=(
                Mistake("chain_rule_sign", "the derivative of log(1 - p) is -1/(1 - p): the "
                        "inner derivative of 1 - p brings a minus sign.",
                        models=(_coin_chain_rule,)),
                Mistake("negated", "that is the derivative of the negative log-likelihood; "
                        "this step asks for the derivative of log L.",
                        models=(lambda s: -_coin_score(s),)),
                Mistake("not_differentiated", "that is still the log-likelihood: "
                        "differentiate it with respect to p.", models=(_coin_log_lik,)),
            ),
        ),
        Step(
            "p_hat", "the maximum-likelihood estimate of p", _coin_p_hat,
            uses=("M", "y"),
            follows=Follows("score", "root", "p", within=(0, 1)),
            mistakes=(
                Mistake("tails", "that estimates the probability of tails; p is the "
                        "probability of heads (y = 1).",
                        models=(lambda s: 1 - _coin_p_hat(s),)),
                Mistake("inverted", "that is the reciprocal of the estimate: solving for p, "
                        "the fraction was turned upside down.",
                        models=(lambda s: 1 / _coin_p_hat(s),)),
                Mistake("count", "that is a number of flips, not a probability (it can exceed "
                        "1): divide by the number of flips.",
                        models=(lambda s: _sum(s, s.y[s.m]),)),
                Mistake("bessel", "divide by the number of flips M; M - 1 belongs to the "
                        "unbiased estimate of a variance, not here.",
                        models=(lambda s: _sum(s, s.y[s.m]) / (s.M - 1),)),
            ),
        ),
    ],
)

# --------------------------------------------------------------------------- the Gaussian


def _samples(rng):
    size = int(rng.integers(2, 8))
    return {"M": size, "x": rng.normal(0.5, 1.5, size)}


def _mu_sigma(rng, data):
    return {"mu": rng.uniform(-1.0, 2.0), "sigma": rng.uniform(0.5, 2.0)}


def _g_log_lik(s):
    import sympy as sp

    r = s.x[s.m] - s.mu
    return _sum(s, -sp.log(s.sigma) - r**2 / (2 * s.sigma**2)) - s.M * sp.log(2 * sp.pi) / 2


def _g_dmu(s):
    return _sum(s, s.x[s.m] - s.mu) / s.sigma**2


def _g_mu_hat(s):
    return _sum(s, s.x[s.m]) / s.M


def _g_dsigma(s):
    return -s.M / s.sigma + _sum(s, (s.x[s.m] - s.mu) ** 2) / s.sigma**3


def _g_sigma2_hat(s):
    return _sum(s, (s.x[s.m] - _g_mu_hat(s)) ** 2) / s.M


def _g_sigma_as_variance(s):
    import sympy as sp

    r = s.x[s.m] - s.mu
    return _sum(s, -sp.log(s.sigma) / 2 - r**2 / (2 * s.sigma))


def _g_sigma_in_exponent(s):
    import sympy as sp

    return _sum(s, -sp.log(s.sigma) - (s.x[s.m] - s.mu) ** 2 / (2 * s.sigma))


def _g_exponent_sign(s):
    import sympy as sp

    return _sum(s, -sp.log(s.sigma) + (s.x[s.m] - s.mu) ** 2 / (2 * s.sigma**2))


def _g_likelihood(s):
    import sympy as sp

    density = sp.exp(-(s.x[s.m] - s.mu) ** 2 / (2 * s.sigma**2)) / (s.sigma * sp.sqrt(2 * sp.pi))
    return sp.Product(density, (s.m, 1, s.M))


def _g_missing_half(s):
    import sympy as sp

    return _sum(s, -sp.log(s.sigma) - (s.x[s.m] - s.mu) ** 2 / s.sigma**2)


def _g_no_sqrt(s):
    import sympy as sp

    r = s.x[s.m] - s.mu
    return _sum(s, -sp.log(s.sigma**2) - r**2 / (2 * s.sigma**2))


def _g_no_normaliser(s):
    return _sum(s, -((s.x[s.m] - s.mu) ** 2) / (2 * s.sigma**2))


def _sqrt_expr(expr):
    import sympy as sp

    return sp.sqrt(expr)


def _sqrt(value):
    import mpmath

    return mpmath.sqrt(value)


GAUSSIAN = Derivation(
    "gaussian_mle",
    notebook="01-likelihood",
    symbols=Symbols(scalars={"mu": {"real": True}, "sigma": {"positive": True},
                             "M": {"integer": True, "positive": True}},
                    indexed={"x": "x[m]"}, indices=("m",), params=("mu", "sigma")),
    draw=_samples,
    draw_params=_mu_sigma,
    steps=[
        Step(
            "gauss_log_lik", "the log-likelihood log L(mu, sigma), up to constants",
            _g_log_lik, uses=("mu", "sigma", "M", "x"), up_to_constant=True,
            mistakes=(
                Mistake("sigma_as_variance", "sigma is the standard deviation: the variance "
                        "in the density is sigma^2, not sigma.",
                        models=(_g_sigma_as_variance, _g_sigma_in_exponent)),
                Mistake("exponent_sign", "the exponent of the Gaussian density is negative: "
                        "the density falls away from mu, so log L must fall too.",
                        models=(_g_exponent_sign,)),
                Mistake("likelihood_not_log", "that is the likelihood L, a product of "
                        "densities; the step asks for its logarithm, which turns the product "
                        "into a sum.", models=(_g_likelihood,)),
                Mistake("missing_half", "the exponent of the Gaussian density is "
                        "-(x - mu)^2 / (2 sigma^2): a factor 1/2 is missing.",
                        models=(_g_missing_half,)),
                Mistake("missing_sqrt", "the normalising factor is 1/sqrt(2 pi sigma^2): "
                        "the square root halves its logarithm, -log(2 pi sigma^2)/2.",
                        models=(_g_no_sqrt,)),
                Mistake("dropped_log_sigma", "the normalising factor 1/(sigma sqrt(2 pi)) "
                        "depends on sigma: its logarithm is not a constant here and must stay.",
                        models=(_g_no_normaliser,)),
                Mistake("negated", "that is the negative log-likelihood; this step asks for "
                        "log L itself.", models=(lambda s: -_g_log_lik(s),)),
            ),
        ),
        Step(
            "dlog_dmu", "the partial derivative of log L with respect to mu", _g_dmu,
            uses=("mu", "sigma", "M", "x"),
            follows=Follows("gauss_log_lik", "derivative", "mu"),
            mistakes=(
                Mistake("inner_sign", "the sign is wrong: the inner derivative of (x - mu) "
                        "with respect to mu is -1, which cancels the minus in front.",
                        models=(lambda s: -_g_dmu(s),)),
                Mistake("missing_variance", "the factor 1/sigma^2 is missing (it does not "
                        "change where the derivative vanishes, but it is part of it).",
                        models=(lambda s: _sum(s, s.x[s.m] - s.mu),)),
                Mistake("sigma_not_squared", "the derivative divides by sigma^2, the "
                        "variance, not by sigma.",
                        models=(lambda s: _sum(s, s.x[s.m] - s.mu) / s.sigma,)),
            ),
        ),
        Step(
            "mu_hat", "the maximum-likelihood estimate of mu", _g_mu_hat,
            uses=("M", "x"),
            follows=Follows("dlog_dmu", "root", "mu"),
            mistakes=(
                Mistake("sum_not_mean", "that is a sum over the samples; the stationarity "
                        "condition also has M copies of mu to divide by.",
                        models=(lambda s: _sum(s, s.x[s.m]),)),
                Mistake("bessel", "divide by the number of samples M; M - 1 is the "
                        "correction of the unbiased variance, not of the mean.",
                        models=(lambda s: _sum(s, s.x[s.m]) / (s.M - 1),)),
                Mistake("squares", "that averages the squares of the samples; the mean "
                        "averages the samples themselves.",
                        models=(lambda s: _sum(s, s.x[s.m] ** 2) / s.M,)),
            ),
        ),
        Step(
            "dlog_dsigma", "the partial derivative of log L with respect to sigma",
            _g_dsigma, uses=("mu", "sigma", "M", "x"),
            follows=Follows("gauss_log_lik", "derivative", "sigma"),
            mistakes=(
                Mistake("missing_log_term", "the log of the normalising factor depends on "
                        "sigma too: its derivative is missing.",
                        models=(lambda s: _sum(s, (s.x[s.m] - s.mu) ** 2) / s.sigma**3,)),
                Mistake("log_term_once", "the log sigma of the normalising factor appears "
                        "once per sample, M times in all: your derivative counts it once.",
                        models=(lambda s: -1 / s.sigma
                                + _sum(s, (s.x[s.m] - s.mu) ** 2) / s.sigma**3,)),
                Mistake("power_rule", "differentiating a power of sigma lowers the power by "
                        "one: the power of sigma in the second term is off.",
                        models=(lambda s: -s.M / s.sigma
                                + _sum(s, (s.x[s.m] - s.mu) ** 2) / s.sigma**2,)),
                Mistake("power_rule_factor", "differentiating sigma^-2 brings down its "
                        "exponent: that factor is missing from the second term.",
                        models=(lambda s: -s.M / s.sigma
                                + _sum(s, (s.x[s.m] - s.mu) ** 2) / (2 * s.sigma**3),)),
                Mistake("wrt_variance", "that is the derivative with respect to the variance "
                        "sigma^2; this step differentiates with respect to sigma.",
                        models=(lambda s: -s.M / (2 * s.sigma**2)
                                + _sum(s, (s.x[s.m] - s.mu) ** 2) / (2 * s.sigma**4),)),
            ),
        ),
        Step(
            "sigma2_hat", "the maximum-likelihood estimate of the variance sigma^2",
            _g_sigma2_hat, uses=("M", "x"),
            follows=Follows(("dlog_dsigma", "mu_hat"), "root", "sigma", transform=_sqrt,
                            at={"mu": "mu_hat"}),
            mistakes=(
                Mistake("bessel", "dividing by M - 1 gives the unbiased sample variance; the "
                        "maximum of the likelihood divides by M (Question D asks why).",
                        models=(lambda s: _sum(s, (s.x[s.m] - _g_mu_hat(s)) ** 2) / (s.M - 1),)),
                Mistake("std_not_variance", "that is the standard deviation sigma_hat; the "
                        "step asks for the variance, its square.",
                        models=(lambda s: _sqrt_expr(_g_sigma2_hat(s)),)),
                Mistake("second_moment", "that is the mean of x^2: the deviations are "
                        "measured from the estimated mean, x[m] - mu_hat.",
                        models=(lambda s: _sum(s, s.x[s.m] ** 2) / s.M,)),
                Mistake("absolute", "that averages absolute deviations; the Gaussian "
                        "likelihood squares them.",
                        models=(lambda s: _sum(s, abs(s.x[s.m] - _g_mu_hat(s))) / s.M,)),
            ),
        ),
    ],
)
