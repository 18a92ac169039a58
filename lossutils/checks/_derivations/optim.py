"""Notebook 06: Adam's bias correction, and the terminal velocity of momentum."""

from __future__ import annotations

from .._core import Mistake
from .._derivation import Derivation, Follows, Step, Symbols

# --------------------------------------------------------------------------- Adam


def _gradients(rng):
    steps = int(rng.integers(1, 8))
    return {"k": steps, "grad": rng.normal(0.5, 1.0, steps), "g_mean": rng.normal(0.0, 1.0)}


def _decay(rng, data):
    return {"mu": rng.uniform(0.5, 0.99)}


def _m_k(s):
    import sympy as sp

    return (1 - s.mu) * sp.Sum(s.mu ** (s.k - s.i) * s.grad[s.i], (s.i, 1, s.k))


def _expected(s):
    return s.g_mean * (1 - s.mu**s.k)


def _correction(s):
    return 1 / (1 - s.mu**s.k)


def _every_gradient_at_its_mean(env):
    return {**env, "grad": {i: env["g_mean"] for i in range(1, int(env["k"]) + 1)}}


def _correction_from_expected(s, earlier):
    import sympy as sp

    return sp.Mul(s.g_mean, sp.Pow(earlier, -1, evaluate=False), evaluate=False)


ADAM_BIAS = Derivation(
    "adam_bias",
    notebook="06-optimization",
    symbols=Symbols(scalars={"mu": {"positive": True}, "k": {"integer": True,
                                                             "positive": True},
                             "g_mean": {"real": True}},
                    indexed={"grad": "grad[i]"}, indices=("i",), params=("mu",), count="k"),
    draw=_gradients,
    draw_params=_decay,
    steps=[
        Step(
            "m_k", "the first moment m_k after k steps, as a sum over the gradients grad[i]",
            _m_k, uses=("mu", "k", "grad"),
            mistakes=(
                Mistake("reversed_weights", "the newest gradient g_k has the largest weight, "
                        "(1 - mu); the oldest, g_1, has (1 - mu) mu^(k - 1).",
                        models=(lambda s: (1 - s.mu) * _sum_over(s, s.mu ** (s.i - 1)),)),
                Mistake("missing_one_minus_mu", "every new gradient enters with the weight "
                        "(1 - mu).", models=(lambda s: _sum_over(s, s.mu ** (s.k - s.i)),)),
                Mistake("exponent_off_by_one", "g_k enters with mu^0 = 1 (times 1 - mu): count "
                        "the powers again.",
                        models=(lambda s: (1 - s.mu) * _sum_over(s, s.mu ** (s.k - s.i + 1)),
                                lambda s: (1 - s.mu) * _sum_over(s, s.mu ** (s.k - s.i - 1)))),
            ),
        ),
        Step(
            "expected_m_k", "E[m_k] when every gradient has the expectation g_mean", _expected,
            uses=("mu", "k", "g_mean"),
            follows=Follows("m_k", "formula", build=lambda s, earlier: earlier,
                            env=_every_gradient_at_its_mean),
            mistakes=(
                Mistake("unbiased", "the weights (1 - mu) mu^(k - i) sum to 1 - mu^k, not to "
                        "1: starting from m_0 = 0 pulls the average towards zero.",
                        models=(lambda s: s.g_mean + 0 * s.mu,)),
                Mistake("power_of_one_minus_mu", "the geometric sum sum_i mu^(k - i) is "
                        "(1 - mu^k) / (1 - mu): mu is raised to the power k, not 1 - mu.",
                        models=(lambda s: s.g_mean * (1 - s.mu) ** s.k,)),
                Mistake("missing_one", "the geometric sum gives 1 - mu^k, not mu^k.",
                        models=(lambda s: s.g_mean * s.mu**s.k,)),
                Mistake("off_by_one", "k steps give the powers mu^0, ..., mu^(k - 1): the sum is "
                        "(1 - mu^k) / (1 - mu).",
                        models=(lambda s: s.g_mean * (1 - s.mu ** (s.k + 1)),
                                lambda s: s.g_mean * (1 - s.mu ** (s.k - 1)))),
            ),
        ),
        Step(
            "correction", "the factor that makes E[factor * m_k] = g_mean", _correction,
            uses=("mu", "k"),
            follows=Follows("expected_m_k", "formula", build=_correction_from_expected),
            mistakes=(
                Mistake("multiplies_one_minus_mu", "Adam divides by (1 - mu^k); multiplying "
                        "by (1 - mu) makes the bias worse.",
                        models=(lambda s: 1 - s.mu,)),
                Mistake("not_inverted", "E[m_k] = (1 - mu^k) g_mean, so the factor is its "
                        "inverse.", models=(lambda s: 1 - s.mu**s.k,)),
                Mistake("power_outside", "mu is raised to the power k inside: 1 - mu^k, not "
                        "(1 - mu)^k.", models=(lambda s: 1 / (1 - s.mu) ** s.k,)),
                Mistake("no_power", "the bias depends on the step k: the factor tends to 1 "
                        "as k grows.", models=(lambda s: 1 / (1 - s.mu),)),
            ),
        ),
    ],
)


def _sum_over(s, weight):
    import sympy as sp

    return sp.Sum(weight * s.grad[s.i], (s.i, 1, s.k))


# --------------------------------------------------------------------------- momentum


def _constant_gradient(rng):
    return {"g": rng.normal(0.0, 2.0), "eta": rng.uniform(0.001, 1.0),
            "k": int(rng.integers(1, 9))}


def _momentum(rng, data):
    return {"mu": rng.uniform(0.3, 0.95)}


def _v_k(s):
    return -s.eta * s.g * (1 - s.mu**s.k) / (1 - s.mu)


def _v_limit(s):
    return -s.eta * s.g / (1 - s.mu)


def _far_later(env):
    # mu <= 0.95: mu^(10^6) is below 10^-22000, the limit to any precision checked
    return {**env, "k": 10**6}


MOMENTUM_LIMIT = Derivation(
    "momentum_limit",
    notebook="06-optimization",
    symbols=Symbols(scalars={"eta": {"positive": True}, "mu": {"positive": True},
                             "g": {"real": True}, "k": {"integer": True, "positive": True}},
                    indexed={}, indices=(), params=("mu",), count="k"),
    draw=_constant_gradient,
    draw_params=_momentum,
    steps=[
        Step(
            "v_k", "the velocity v_k after k steps from v_0 = 0, in closed form", _v_k,
            uses=("eta", "mu", "g", "k"),
            mistakes=(
                Mistake("sign", "v = mu v - eta g: the velocity points down the gradient.",
                        models=(lambda s: -_v_k(s),)),
                Mistake("off_by_one", "v_1 = -eta g: after k steps the powers are mu^0, ..., "
                        "mu^(k - 1).",
                        models=(lambda s: -s.eta * s.g * (1 - s.mu ** (s.k + 1)) / (1 - s.mu),
                                lambda s: -s.eta * s.g * (1 - s.mu ** (s.k - 1)) / (1 - s.mu))),
                Mistake("no_geometric_sum", "each step scales the old velocity by mu: the "
                        "terms are -eta g mu^j, a geometric sum, not k equal terms.",
                        models=(lambda s: -s.eta * s.g * s.k,)),
                Mistake("average_form", "that is an average with weights (1 - mu), as Adam's "
                        "first moment; momentum adds the full -eta g every step.",
                        models=(lambda s: -s.eta * s.g * (1 - s.mu**s.k),)),
            ),
        ),
        Step(
            "v_limit", "the velocity after many steps, the limit of v_k as k grows", _v_limit,
            uses=("eta", "mu", "g"),
            follows=Follows("v_k", "formula", build=lambda s, earlier: earlier, env=_far_later),
            mistakes=(
                Mistake("sign", "v = mu v - eta g: the velocity points down the gradient.",
                        models=(lambda s: -_v_limit(s),)),
                Mistake("one_step", "the velocity keeps growing beyond one step: the geometric "
                        "series 1 + mu + mu^2 + ... sums to 1 / (1 - mu).",
                        models=(lambda s: -s.eta * s.g + 0 * s.mu,)),
                Mistake("series_from_mu", "the series starts with mu^0 = 1: the first step is "
                        "-eta g itself.", models=(lambda s: -s.eta * s.g * s.mu / (1 - s.mu),)),
                Mistake("plus", "the series 1 + mu + mu^2 + ... sums to 1 / (1 - mu), not "
                        "1 / (1 + mu).", models=(lambda s: -s.eta * s.g / (1 + s.mu),)),
            ),
        ),
    ],
)
