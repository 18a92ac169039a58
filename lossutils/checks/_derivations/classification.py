"""Notebook 03: the gradient of softmax + cross-entropy, and the softmax Jacobian."""

from __future__ import annotations

from .._core import Mistake
from .._derivation import Derivation, Follows, Step, Symbols


def _classes(rng):
    size = int(rng.integers(2, 6))
    return {"K": size, "y": rng.dirichlet(0.7 * _ones(size))}


def _ones(size):
    import numpy as np

    return np.ones(size)


def _pair(rng, size):
    """Two class indices, equal half of the time (the Kronecker delta must be seen as 1 and 0)."""
    first = int(rng.integers(1, size + 1))
    if rng.random() < 0.5:
        return first, first
    return first, int(rng.choice([c for c in range(1, size + 1) if c != first]))


def _logits(rng, data):
    size = data["K"]
    i, k = _pair(rng, size)
    return {"z": rng.normal(0.0, 2.0, size), "i": i, "k": k}


def _norm(s):
    import sympy as sp

    bound = sp.Dummy("n", integer=True, positive=True)
    return sp.Sum(sp.exp(s.z[bound]), (bound, 1, s.K))


def _soft(s, index):
    import sympy as sp

    return sp.exp(s.z[index]) / _norm(s)


def _delta(a, b):
    import sympy as sp

    return sp.KroneckerDelta(a, b)


# --------------------------------------------------------------------------- y_hat - y


def _dlogsoft(s):
    return _delta(s.k, s.i) - _soft(s, s.i)


def _ce_grad(s):
    return _soft(s, s.i) - s.y[s.i]


def _from_dlogsoft(s, earlier):
    import sympy as sp

    # -sum_k y_k d log softmax_k / d z_i, with the student's own derivative inside
    return sp.Mul(-1, sp.Sum(sp.Mul(s.y[s.k], earlier, evaluate=False), (s.k, 1, s.K)),
                  evaluate=False)


SOFTMAX_CE = Derivation(
    "softmax_ce",
    notebook="03-cross-entropy",
    symbols=Symbols(scalars={"K": {"integer": True, "positive": True}},
                    indexed={"z": "z[j]", "y": "y[k]"}, indices=("j", "i", "k"),
                    params=("z",), count="K"),
    draw=_classes,
    draw_params=_logits,
    steps=[
        Step(
            "dlogsoftmax", "d log softmax(z)_k / d z_i", _dlogsoft, uses=("K", "z"),
            free_indices=("k", "i"),
            mistakes=(
                Mistake("missing_delta", "log softmax(z)_k = z_k - log sum_j exp(z_j): the "
                        "first term gives 1 when k = i and 0 otherwise (KroneckerDelta(k, i)).",
                        models=(lambda s: -_soft(s, s.i),)),
                Mistake("sign", "the log-sum-exp comes with a minus sign: its derivative is "
                        "subtracted.", models=(lambda s: _soft(s, s.i) - _delta(s.k, s.i),)),
                Mistake("softmax_jacobian", "that is the derivative of softmax(z)_k itself; "
                        "the logarithm divides it by softmax(z)_k.",
                        models=(lambda s: _soft(s, s.k) * (_delta(s.k, s.i) - _soft(s, s.i)),)),
                Mistake("index", "the chain rule on log sum_j exp(z_j) gives "
                        "exp(z_i) / sum_j exp(z_j): the index of the logit you differentiate "
                        "by, i.", models=(lambda s: _delta(s.k, s.i) - _soft(s, s.k),)),
            ),
        ),
        Step(
            "ce_grad", "d CE / d z_i, the gradient of -sum_k y_k log softmax(z)_k", _ce_grad,
            uses=("K", "z", "y"), free_indices=("i",),
            follows=Follows("dlogsoftmax", "formula", build=_from_dlogsoft),
            mistakes=(
                Mistake("negated", "that is the gradient of the log-likelihood; the "
                        "cross-entropy is its negative.",
                        models=(lambda s: s.y[s.i] - _soft(s, s.i),)),
                Mistake("missing_label", "the term -sum_k y_k z_k of the loss contributes "
                        "-y_i to the derivative.", models=(lambda s: _soft(s, s.i),)),
                Mistake("true_class_only", "softmax(z)_i - 1 holds for the true class of a "
                        "one-hot label; for any label distribution the term is -y_i.",
                        models=(lambda s: _soft(s, s.i) - 1,)),
                Mistake("unnormalised", "the softmax divides exp(z_i) by sum_j exp(z_j).",
                        models=(lambda s: _exp(s.z[s.i]) - s.y[s.i],)),
            ),
        ),
    ],
)


def _exp(value):
    import sympy as sp

    return sp.exp(value)


# --------------------------------------------------------------------------- the Jacobian


def _different(rng, data):
    size = data["K"]
    i, j = rng.choice(size, 2, replace=False) + 1
    return {"z": rng.normal(0.0, 2.0, size), "i": int(i), "j": int(j)}


def _any_pair(rng, data):
    size = data["K"]
    i, j = _pair(rng, size)
    return {"z": rng.normal(0.0, 2.0, size), "i": i, "j": j}


def _jac_ii(s):
    return _soft(s, s.i) * (1 - _soft(s, s.i))


def _jac_ij(s):
    return -_soft(s, s.i) * _soft(s, s.j)


def _jac(s):
    return _soft(s, s.i) * (_delta(s.i, s.j) - _soft(s, s.j))


def _numerator_only(s):
    return _soft(s, s.i)


def _plus_square(s):
    return _soft(s, s.i) + _soft(s, s.i) ** 2


def _unsquared_denominator(s):
    import sympy as sp

    return sp.exp(s.z[s.i]) - sp.exp(2 * s.z[s.i]) / _norm(s)


SOFTMAX_JACOBIAN = Derivation(
    "softmax_jacobian",
    notebook="03-cross-entropy",
    symbols=Symbols(scalars={"K": {"integer": True, "positive": True}},
                    indexed={"z": "z[k]"}, indices=("k", "i", "j"), params=("z",),
                    count="K"),
    draw=lambda rng: {"K": int(rng.integers(2, 6))},
    draw_params=_different,
    steps=[
        Step(
            "dsoftmax_ii", "d softmax(z)_i / d z_i, the diagonal of the Jacobian", _jac_ii,
            uses=("K", "z"), free_indices=("i",),
            mistakes=(
                Mistake("numerator_only", "the denominator sum_j exp(z_j) depends on z_i too: "
                        "the quotient rule has a second term.", models=(_numerator_only,)),
                Mistake("quotient_sign", "the quotient rule subtracts the second term: "
                        "(u/v)' = (u' v - u v') / v^2.", models=(_plus_square,)),
                Mistake("unsquared_denominator", "the quotient rule divides by the square of "
                        "the denominator.", models=(_unsquared_denominator,)),
            ),
        ),
        Step(
            "dsoftmax_ij", "d softmax(z)_i / d z_j for j != i, off the diagonal", _jac_ij,
            uses=("K", "z"), free_indices=("i", "j"),
            mistakes=(
                Mistake("zero", "z_j sits in the denominator of every softmax output, so "
                        "softmax(z)_i changes with z_j even for j != i.",
                        models=(lambda s: 0 * s.K,)),
                Mistake("sign", "only the denominator depends on z_j, and it comes with a "
                        "minus sign from 1/v' = -v'/v^2.", models=(lambda s: -_jac_ij(s),)),
                Mistake("one_factor", "the derivative is a product of two softmax outputs, "
                        "the i-th and the j-th.",
                        models=(lambda s: -_soft(s, s.j), lambda s: -_soft(s, s.i),
                                lambda s: -_soft(s, s.j) ** 2)),
            ),
        ),
        Step(
            "jacobian", "d softmax(z)_i / d z_j for any i and j, in one expression", _jac,
            uses=("K", "z"), free_indices=("i", "j"), draw_params=_any_pair,
            mistakes=(
                Mistake("diagonal_only", "off the diagonal (j != i) the derivative is not "
                        "zero.", models=(lambda s: _delta(s.i, s.j) * _soft(s, s.i),)),
                Mistake("off_diagonal_only", "on the diagonal (j = i) there is one more term: "
                        "use sp.KroneckerDelta(i, j), 1 when i = l and 0 otherwise.",
                        models=(_jac_ij,)),
                Mistake("sign", "the sign is flipped: on the diagonal the derivative is "
                        "positive.", models=(lambda s: -_jac(s),)),
                Mistake("no_delta", "the 1 of the diagonal must vanish off the diagonal: "
                        "KroneckerDelta(i, j).",
                        models=(lambda s: _soft(s, s.i) * (1 - _soft(s, s.j)),)),
            ),
        ),
    ],
)
