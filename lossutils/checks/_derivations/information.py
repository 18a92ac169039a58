"""Notebook 04: the KL divergence of two Gaussians, and binary cross-entropy from logits."""

from __future__ import annotations

from .._core import Mistake
from .._derivation import Derivation, Follows, Stable, Step, Symbols

# --------------------------------------------------------------------------- KL of Gaussians


def _two_gaussians(rng):
    return {"mu_p": rng.normal(0.0, 1.5), "mu_q": rng.normal(0.0, 1.5),
            "sigma_p": rng.uniform(0.3, 3.0), "sigma_q": rng.uniform(0.3, 3.0)}


def _point(rng, data):
    return {"x": rng.normal(0.0, 2.0)}


def _log(value):
    import sympy as sp

    return sp.log(value)


def _log_ratio(s):
    return (_log(s.sigma_q / s.sigma_p) - (s.x - s.mu_p) ** 2 / (2 * s.sigma_p**2)
            + (s.x - s.mu_q) ** 2 / (2 * s.sigma_q**2))


def _shifted_square(s):
    return s.sigma_p**2 + (s.mu_p - s.mu_q) ** 2


def _kl(s):
    from sympy import Rational

    return (_log(s.sigma_q / s.sigma_p) + _shifted_square(s) / (2 * s.sigma_q**2)
            - Rational(1, 2))


def _kl_from_square(s, earlier):
    import sympy as sp

    return sp.Add(_log(s.sigma_q / s.sigma_p),
                  sp.Mul(earlier, 1 / (2 * s.sigma_q**2), evaluate=False),
                  sp.Rational(-1, 2), evaluate=False)


_NO_X = ("the expectation over x leaves no x in it: take the expectation under p (from "
         "the mean and variance of p, or by doing the integral) instead of keeping the "
         "integrand.")

GAUSSIAN_KL = Derivation(
    "gaussian_kl",
    notebook="04-kl-divergence",
    symbols=Symbols(scalars={"x": {"real": True}, "mu_p": {"real": True},
                             "mu_q": {"real": True}, "sigma_p": {"positive": True},
                             "sigma_q": {"positive": True}},
                    indexed={}, indices=(), params=("x",), names={"x": "x_s"}),
    draw=_two_gaussians,
    draw_params=_point,
    steps=[
        Step(
            "log_ratio", "log p(x) - log q(x)", _log_ratio,
            uses=("x", "mu_p", "mu_q", "sigma_p", "sigma_q"),
            mistakes=(
                Mistake("swapped", "that is log q(x) - log p(x); KL(p || q) averages "
                        "log p - log q.", models=(lambda s: -_log_ratio(s),)),
                Mistake("variance_as_std", "sigma is the standard deviation: the exponent of "
                        "the density divides by 2 sigma^2.",
                        models=(lambda s: _log(s.sigma_q / s.sigma_p)
                                - (s.x - s.mu_p) ** 2 / (2 * s.sigma_p)
                                + (s.x - s.mu_q) ** 2 / (2 * s.sigma_q),)),
                Mistake("missing_half", "the exponent of the Gaussian density is "
                        "-(x - mu)^2 / (2 sigma^2): a factor 1/2 is missing.",
                        models=(lambda s: _log(s.sigma_q / s.sigma_p)
                                - (s.x - s.mu_p) ** 2 / s.sigma_p**2
                                + (s.x - s.mu_q) ** 2 / s.sigma_q**2,)),
                Mistake("dropped_normalisers", "the normalising factors 1/(sigma sqrt(2 pi)) "
                        "of p and q differ: their log-ratio stays.",
                        models=(lambda s: _log_ratio(s) - _log(s.sigma_q / s.sigma_p),)),
                Mistake("normalisers_flipped", "the logarithm of the normalisers' ratio is "
                        "upside down: log p(x) - log q(x) puts p's normaliser first.",
                        models=(lambda s: _log_ratio(s) - 2 * _log(s.sigma_q / s.sigma_p),)),
            ),
        ),
        Step(
            "expected_sq", "E_p[(x - mu_q)^2], the expectation under p", _shifted_square,
            uses=("mu_p", "mu_q", "sigma_p", "sigma_q"),
            absent=_NO_X,
            mistakes=(
                Mistake("wrong_distribution", "the expectation is under p: x has mean mu_p "
                        "and variance sigma_p^2.",
                        models=(lambda s: s.sigma_q**2 + (s.mu_p - s.mu_q) ** 2,)),
                Mistake("missing_shift", "x - mu_q = (x - mu_p) + (mu_p - mu_q): the shift "
                        "adds its square.", models=(lambda s: s.sigma_p**2,)),
                Mistake("cross_term", "the cross term 2 (mu_p - mu_q) E_p[x - mu_p] vanishes, "
                        "because E_p[x - mu_p] = 0.",
                        models=(lambda s: _shifted_square(s)
                                + 2 * s.sigma_p * (s.mu_p - s.mu_q),)),
                Mistake("std_not_variance", "E_p[(x - mu_p)^2] is the variance sigma_p^2.",
                        models=(lambda s: s.sigma_p + (s.mu_p - s.mu_q) ** 2,)),
            ),
        ),
        Step(
            "kl", "KL(p || q) in closed form", _kl,
            uses=("mu_p", "mu_q", "sigma_p", "sigma_q"),
            absent=_NO_X,
            follows=Follows("expected_sq", "formula", build=_kl_from_square),
            mistakes=(
                Mistake("swapped", "that is KL(q || p): the expectation must be under p, the "
                        "first argument.",
                        models=(lambda s: _log(s.sigma_p / s.sigma_q)
                                + (s.sigma_q**2 + (s.mu_p - s.mu_q) ** 2) / (2 * s.sigma_p**2)
                                - _half(),)),
                Mistake("missing_half", "a constant term is missing: the expectation under p "
                        "of the exponent of p itself is not zero.",
                        models=(lambda s: _kl(s) + _half(),)),
                Mistake("log_ratio_flipped", "the logarithm of the normalisers' ratio is upside "
                        "down: KL(p || q) averages log p - log q, p's normaliser first.",
                        models=(lambda s: _kl(s) - 2 * _log(s.sigma_q / s.sigma_p),)),
                Mistake("std_for_variance", "the expected square is divided by sigma_q where "
                        "q's exponent has its variance.",
                        models=(lambda s: _log(s.sigma_q / s.sigma_p)
                                + _shifted_square(s) / (2 * s.sigma_q) - _half(),)),
            ),
        ),
    ],
)


def _half():
    from sympy import Rational

    return Rational(1, 2)


# --------------------------------------------------------------------------- BCE from logits


def _target(rng):
    return {"t": rng.uniform(0.0, 1.0)}


def _logit(rng, data):
    return {"z": rng.normal(0.0, 3.0)}


def _softplus(value):
    import sympy as sp

    return sp.log(1 + sp.exp(value))


def _log_sigmoid(s):
    return -_softplus(-s.z)


def _log_one_minus(s):
    return -_softplus(s.z)


def _bce(s):
    return _softplus(s.z) - s.t * s.z


def _bce_from_log_probabilities(s, log_sigmoid, log_one_minus):
    import sympy as sp

    return sp.Mul(-1, sp.Add(sp.Mul(s.t, log_sigmoid, evaluate=False),
                             sp.Mul(1 - s.t, log_one_minus, evaluate=False), evaluate=False),
                  evaluate=False)


_BCE_MISTAKES = (
    Mistake("negated", "that is the log-likelihood t log sigmoid(z) + (1 - t) log(1 - "
            "sigmoid(z)); the loss is its negative.", models=(lambda s: -_bce(s),)),
    Mistake("targets_swapped", "t weights log sigmoid(z), the log-probability of the class "
            "1, and 1 - t weights log(1 - sigmoid(z)).",
            models=(lambda s: (1 - s.t) * _softplus(-s.z) + s.t * _softplus(s.z),)),
    Mistake("missing_tz", "log(1 - sigmoid(z)) = log sigmoid(z) - z leaves a term -t z.",
            models=(lambda s: _softplus(s.z), lambda s: _softplus(-s.z))),
)

BCE_LOGITS = Derivation(
    "bce_logits",
    notebook="04-kl-divergence",
    symbols=Symbols(scalars={"z": {"real": True}, "t": {"real": True}}, indexed={},
                    indices=(), params=("z",)),
    draw=_target,
    draw_params=_logit,
    steps=[
        Step(
            "log_sigmoid", "log sigmoid(z), as an expression in z", _log_sigmoid, uses=("z",),
            mistakes=(
                Mistake("missing_log", "that is sigmoid(z) itself; the step asks for its "
                        "logarithm.", models=(lambda s: 1 / (1 + _exp(-s.z)),)),
                Mistake("sign_inside", "that is log sigmoid(-z) = log(1 - sigmoid(z)): "
                        "sigmoid(z) = 1 / (1 + exp(-z)).", models=(_log_one_minus,)),
                Mistake("sign_outside", "log(1/u) = -log(u): the sign in front is wrong.",
                        models=(lambda s: _softplus(-s.z),)),
            ),
        ),
        Step(
            "log_one_minus", "log(1 - sigmoid(z)), as an expression in z", _log_one_minus,
            uses=("z",),
            mistakes=(
                Mistake("same_as_log_sigmoid", "that is log sigmoid(z), the answer to (a): "
                        "write 1 - sigmoid(z) as one fraction before taking its logarithm.",
                        models=(_log_sigmoid,)),
                Mistake("sign_outside", "log(1/u) = -log(u): the sign in front is wrong.",
                        models=(lambda s: _softplus(s.z),)),
                Mistake("log_of_difference", "log(1 - sigmoid(z)) is not 1 - log sigmoid(z).",
                        models=(lambda s: 1 + _softplus(-s.z),)),
            ),
        ),
        Step(
            "bce", "the binary cross-entropy -[t log sigmoid(z) + (1 - t) log(1 - "
            "sigmoid(z))]", _bce, uses=("z", "t"),
            follows=Follows(("log_sigmoid", "log_one_minus"), "formula",
                            build=_bce_from_log_probabilities),
            mistakes=_BCE_MISTAKES,
        ),
        Step(
            "bce_stable", "the binary cross-entropy in a form that float64 computes for any "
            "z", _bce, uses=("z", "t"), stable=Stable("z", (-800.0, 800.0, -1e4, 1e4)),
            mistakes=_BCE_MISTAKES,
        ),
    ],
)


def _exp(value):
    import sympy as sp

    return sp.exp(value)
