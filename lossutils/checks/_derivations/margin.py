"""Notebook 05: the hinge form of the soft-margin SVM, and a subgradient at the hinge's kink."""

from __future__ import annotations

from .._core import Mistake
from .._derivation import Derivation, Follows, Kink, Step, Symbols


def _sum(s, body):
    import sympy as sp

    return sp.Sum(body, (s.m, 1, s.M))


def _max0(value):
    import sympy as sp

    return sp.Max(0, value)


def _labelled(rng):
    size = int(rng.integers(2, 8))
    labels = rng.choice([-1.0, 1.0], size)
    return {"M": size, "x": rng.normal(0.0, 1.5, size), "y": labels,
            "gamma": rng.uniform(0.1, 5.0)}


def _weight(rng, data):
    return {"w": rng.normal(0.0, 1.5), "m": int(rng.integers(1, data["M"] + 1))}


# The notebook's Python names: M, m and y name its data set.
_NAMES = {"w": "w_s", "gamma": "gamma_s", "M": "M_s", "m": "m_s"}

# --------------------------------------------------------------------------- the slack


def _margin(s):
    return s.y[s.m] * s.w * s.x[s.m]


def _xi(s):
    return _max0(1 - _margin(s))


def _objective(s):
    return s.w**2 / 2 + s.gamma * _sum(s, _xi(s))


def _objective_from_xi(s, earlier):
    import sympy as sp

    return sp.Add(s.w**2 / 2, sp.Mul(s.gamma, sp.Sum(earlier, (s.m, 1, s.M)), evaluate=False),
                  evaluate=False)


SVM_SLACK = Derivation(
    "svm_slack",
    notebook="05-hinge-svm",
    symbols=Symbols(scalars={"w": {"real": True}, "gamma": {"positive": True},
                             "M": {"integer": True, "positive": True}},
                    indexed={"x": "x_s[m_s]", "y": "y_s[m_s]"}, indices=("m",), params=("w",),
                    names=_NAMES),
    draw=_labelled,
    draw_params=_weight,
    steps=[
        Step(
            "xi_opt", "the smallest slack xi_m that satisfies both constraints of sample m",
            _xi, uses=("w", "x", "y"), free_indices=("m",),
            mistakes=(
                Mistake("no_max", "xi_m >= 0 is a constraint too: a sample beyond the margin "
                        "needs no slack, not a negative one.",
                        models=(lambda s: 1 - _margin(s),)),
                Mistake("perceptron", "the constraint asks for a margin of 1, "
                        "y_m w x_m >= 1 - xi_m, not for the right sign only.",
                        models=(lambda s: _max0(-_margin(s)),)),
                Mistake("sign", "the sign of the margin term is flipped: the slack must grow "
                        "as the margin y_m w x_m falls below 1, not as it rises.",
                        models=(lambda s: _max0(1 + _margin(s)),)),
                Mistake("missing_label", "the margin of sample m is y_m w x_m: the label "
                        "decides which side is right.",
                        models=(lambda s: _max0(1 - s.w * s.x[s.m]),)),
            ),
        ),
        Step(
            "svm_objective", "the objective with the slack variables eliminated", _objective,
            uses=("w", "gamma", "M", "x", "y"),
            follows=Follows("xi_opt", "formula", build=_objective_from_xi),
            mistakes=(
                Mistake("missing_half", "the regulariser is ||w||^2 / 2, with the 1/2.",
                        models=(lambda s: s.w**2 + s.gamma * _sum(s, _xi(s)),)),
                Mistake("no_max", "a sample beyond the margin lowers your objective: the "
                        "constraint xi_m >= 0 is lost when the slack is eliminated.",
                        models=(lambda s: s.w**2 / 2 + s.gamma * _sum(s, 1 - _margin(s)),)),
                Mistake("gamma_misplaced", "gamma weighs the slack (the hinge losses), not "
                        "the regulariser.",
                        models=(lambda s: s.gamma * s.w**2 / 2 + _sum(s, _xi(s)),)),
                Mistake("mean", "the soft-margin objective sums the slacks; it does not "
                        "average them.",
                        models=(lambda s: s.w**2 / 2 + s.gamma * _sum(s, _xi(s)) / s.M,)),
            ),
        ),
    ],
)

# --------------------------------------------------------------------------- the kink


def _active(rng, data):
    """A weight that puts sample m strictly inside its margin (where the hinge has a slope)."""
    m = int(rng.integers(1, data["M"] + 1))
    # y_m w x_m = u < 1 for w = u / (y_m x_m)
    return {"w": rng.uniform(-2.0, 1.0) / (data["y"][m - 1] * data["x"][m - 1]), "m": m}


def _on_a_kink(env, rng):
    """Put sample 1 exactly on its kink: y_1 w x_1 = 1 in binary (w a power of two)."""
    import mpmath

    w = mpmath.mpf(2) ** int(rng.integers(-2, 3)) * (1 if rng.random() < 0.5 else -1)
    x = dict(env["x"])
    x[1] = env["y"][1] / w
    return {**env, "w": w, "x": x}


def _hinge_slope(s):
    return -s.y[s.m] * s.x[s.m]


def _heaviside(value, at_zero=None):
    import sympy as sp

    return sp.Heaviside(value) if at_zero is None else sp.Heaviside(value, at_zero)


def _subgradient(s, at_zero=None):
    return -_sum(s, s.y[s.m] * s.x[s.m] * _heaviside(1 - _margin(s), at_zero))


HINGE_KINK = Derivation(
    "hinge_kink",
    notebook="05-hinge-svm",
    symbols=Symbols(scalars={"w": {"real": True}, "M": {"integer": True, "positive": True}},
                    indexed={"x": "x_s[m_s]", "y": "y_s[m_s]"}, indices=("m",), params=("w",),
                    names=_NAMES),
    draw=_labelled,
    draw_params=_weight,
    steps=[
        Step(
            "hinge_slope", "the derivative of max(0, 1 - y_m w x_m) with respect to w where "
            "y_m w x_m < 1", _hinge_slope, uses=("w", "x", "y"), free_indices=("m",),
            draw_params=_active,
            mistakes=(
                Mistake("sign", "the sign is flipped: inside the margin the hinge falls as "
                        "the margin y_m w x_m grows.",
                        models=(lambda s: -_hinge_slope(s),)),
                Mistake("missing_x", "the input x_m is missing: w multiplies it in the margin, "
                        "so the chain rule keeps it.", models=(lambda s: -s.y[s.m],)),
                Mistake("missing_label", "the label y_m is missing: w multiplies it in the "
                        "margin, so the chain rule keeps it.", models=(lambda s: -s.x[s.m],)),
                Mistake("wrt_margin", "that is the slope with respect to the margin "
                        "z = y_m w x_m; the step asks for the slope with respect to w: apply the "
                        "chain rule.",
                        models=(lambda s: -1 + 0 * s.w,)),
            ),
        ),
        Step(
            "subgradient_sum", "a subgradient of L(w) = sum_m max(0, 1 - y_m w x_m) at "
            "every w, kinks included", _subgradient, uses=("w", "M", "x", "y"),
            kink=Kink(place=_on_a_kink, low=lambda s: _subgradient(s, 0),
                      high=lambda s: _subgradient(s, 1)),
            mistakes=(
                Mistake("sign", "the sign is flipped: each active hinge term falls as its "
                        "margin y_m w x_m grows.", models=(lambda s: -_subgradient(s),)),
                Mistake("perceptron_active_set", "a sample contributes while its margin is "
                        "below 1 (y_m w x_m < 1), not only while it is misclassified.",
                        models=(lambda s: -_sum(s, s.y[s.m] * s.x[s.m]
                                                * _heaviside(-_margin(s))),)),
                Mistake("all_samples", "only the samples with y_m w x_m < 1 contribute: "
                        "beyond the margin the hinge is flat.",
                        models=(lambda s: -_sum(s, s.y[s.m] * s.x[s.m]),)),
            ),
        ),
    ],
)
