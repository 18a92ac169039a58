r"""Information theory of discrete distributions: entropy, cross-entropy and KL divergence.

Each function takes distributions along the **last** axis (entries in [0, 1] summing to 1)
and returns one value per distribution, of shape ``p.shape[:-1]``, in nats; there is no
batch reduction. The convention :math:`0 \log 0 = 0` (the limit of :math:`x \log x`) holds
throughout.

The ``*_grad`` functions return the gradient with respect to the first argument ``p`` of the
*sum* of the outputs, as plain partial derivatives: each entry of ``p`` is treated as a free
variable, ignoring the constraint that ``p`` sums to 1 (project the gradient, or go through
a softmax, to respect it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._blocks import Block, blocks
from ._validation import (
    ArrayLike,
    FloatArray,
    Loss,
    as_float,
    check_probs,
    check_same_shape,
    float_dtype,
    sum_tolerance,
)

__all__ = [
    "distribution_cross_entropy",
    "distribution_cross_entropy_grad",
    "entropy",
    "entropy_grad",
    "kl_divergence",
    "kl_divergence_grad",
]

# The elementwise terms of a sum over the last axis, written into ``out`` (see _row_sums).
Terms = Callable[[FloatArray, FloatArray, FloatArray], FloatArray]


def _distribution(x: ArrayLike, name: str) -> FloatArray:
    x = as_float(x, name)
    check_probs(x, name, normalised=True)
    if x.shape[-1] == 0:
        raise ValueError(
            f"{name} has an empty last axis (shape {x.shape}); a distribution needs at least "
            "one outcome."
        )
    return x


def _pair(p: ArrayLike, q: ArrayLike) -> tuple[FloatArray, FloatArray]:
    p = as_float(p, "p")
    q = as_float(q, "q")
    check_same_shape(p, q, "p", "q")
    p = _distribution(p, "p")
    q = _distribution(q, "q")
    dtype = float_dtype(p, q)
    return p.astype(dtype, copy=False), q.astype(dtype, copy=False)


def _log0(x: FloatArray) -> FloatArray:
    """Natural log with log 0 = -inf and no warning."""
    # A zero probability has log -inf; the callers decide what that means (an infinite
    # divergence, or a term multiplied away by 0 log 0 = 0), so the warning is noise.
    with np.errstate(divide="ignore"):
        log: FloatArray = np.log(x)
    return log


def _log_where_positive(x: FloatArray) -> FloatArray:
    """log x where x > 0, and 0 elsewhere (for terms that a factor x = 0 removes)."""
    return np.log(np.where(x > 0, x, 1))


def _row_sums(terms: Terms, p_in: ArrayLike, q_in: ArrayLike) -> Loss:
    """Sum ``terms(p, q)`` over the last axis of the distributions ``p`` and ``q``, validated.

    Works block by block (see :mod:`lossutils._blocks`): ``terms(p, q, out)`` writes the
    elementwise terms of a block of rows into ``out``, with the warnings of ``log 0``,
    ``1 / 0``, overflow and ``0 * inf`` silenced. Before that, the block's values are checked
    (minimum, maximum and row sums, while it is in cache) instead of validating the whole
    arrays in passes of their own; any doubt sends the inputs through the full validation,
    which raises its usual error.
    """
    p, q = as_float(p_in, "p"), as_float(q_in, "q")
    check_same_shape(p, q, "p", "q")
    if p.ndim == 0 or p.shape[-1] == 0:
        _pair(p_in, q_in)  # a scalar or an empty last axis: raises
    tolerances = sum_tolerance(p.dtype), sum_tolerance(q.dtype)
    dtype = float_dtype(p, q)
    p, q = (a.astype(dtype, copy=False).reshape(-1, a.shape[-1]) for a in (p, q))
    out = np.empty(p.shape[0], dtype)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        for block_p, block_q in zip(blocks(p), blocks(q), strict=True):
            if not all(map(_maybe_distributions, (block_p, block_q), tolerances)):
                _pair(p_in, q_in)  # raises the usual error
            values = terms(block_p.scores, block_q.scores, block_p.spare)
            out[block_p.rows] = block_p.sum(values).ravel()
    return out.reshape(np.shape(p_in)[:-1])[()]


def _maybe_distributions(block: Block, atol: float) -> bool:
    """Fast test of a block of rows: entries in [0, 1], rows summing to 1 (False for a nan)."""
    if not (block.scores.min() >= 0 and block.scores.max() <= 1):  # nan: both False
        return False
    return bool(np.all(np.abs(block.sum(block.scores) - 1) <= atol))


def _cross_entropy_terms(p: FloatArray, q: FloatArray, out: FloatArray) -> FloatArray:
    """``-p log q`` with ``0 log q = 0``, also for q = 0; ``-p log p`` for the entropy."""
    np.log(q, out=out)
    out *= p
    np.negative(out, out=out)
    np.copyto(out, 0, where=p == 0)  # 0 * log 0 = 0 * -inf made a nan
    return out


def _kl_terms(p: FloatArray, q: FloatArray, out: FloatArray) -> FloatArray:
    """``p log(p / q)`` with ``0 log(0 / q) = 0``, also for q = 0."""
    # One log of the ratio instead of log p - log q: half the logs, and no cancellation
    # between two large logs when p and q are small and close.
    np.divide(p, q, out=out)
    np.log(out, out=out)
    out *= p
    np.copyto(out, 0, where=p == 0)  # 0 * log(0 / q) made a nan
    if out.max(initial=0) == np.inf:
        # p / q overflows for a subnormal q > 0, where log p - log q is still finite.
        redo = np.isinf(out) & (q > 0)
        out[redo] = p[redo] * (np.log(p[redo]) - np.log(q[redo]))
    return out


def entropy(p: ArrayLike) -> Loss:
    r"""Shannon entropy of distributions over the last axis, in nats.

    .. math:: H(p) = -\sum_k p_k \log p_k, \qquad 0 \log 0 = 0

    Parameters
    ----------
    p : array_like, shape (..., C)
        Distributions: entries in [0, 1], summing to 1 over the last axis.

    Returns
    -------
    numpy floating scalar or ndarray, shape ``p.shape[:-1]``
        Between 0 (a certain outcome) and :math:`\log C` (the uniform distribution).

    Raises
    ------
    ValueError
        If ``p`` is not in [0, 1], does not sum to 1 over the last axis, is a scalar, or has
        an empty last axis.

    Notes
    -----
    Equals ``scipy.stats.entropy(p, axis=-1)`` and ``scipy.special.entr(p).sum(-1)``; divide
    by :math:`\log 2` for bits.

    References
    ----------
    T. M. Cover and J. A. Thomas, *Elements of Information Theory*, 2nd ed., Wiley, 2006,
    Ch. 2.

    Examples
    --------
    >>> entropy([0.5, 0.5])  # log 2
    np.float64(0.6931471805599453)
    >>> entropy([[1.0, 0.0], [0.9, 0.1]])
    array([0.        , 0.32508297])
    """
    # + 0.0 turns the -0.0 of a certain outcome (-(1 * log 1)) into 0.0.
    return _row_sums(_cross_entropy_terms, p, p) + 0.0  # H(p) = H(p, p)


def entropy_grad(p: ArrayLike) -> FloatArray:
    r"""Gradient of ``entropy(p).sum()`` with respect to ``p``: :math:`-(\log p_k + 1)`.

    Parameters
    ----------
    p : array_like, shape (..., C)
        As for :func:`entropy`.

    Returns
    -------
    ndarray, shape of ``p``
        ``+inf`` where :math:`p_k = 0` (the slope of :math:`-x \log x` at 0).

    Raises
    ------
    ValueError
        As for :func:`entropy`.

    Notes
    -----
    Partial derivatives with the entries of ``p`` treated as free variables (the constraint
    :math:`\sum_k p_k = 1` is ignored); along the simplex only differences between entries
    matter, and the constant :math:`-1` drops out.

    Examples
    --------
    >>> entropy_grad([0.5, 0.5])
    array([-0.30685282, -0.30685282])
    """
    p = _distribution(p, "p")
    return -(_log0(p) + 1)


def distribution_cross_entropy(p: ArrayLike, q: ArrayLike) -> Loss:
    r"""Cross-entropy between distributions over the last axis, in nats.

    .. math:: H(p, q) = -\sum_k p_k \log q_k = H(p) + \mathrm{KL}(p \,\|\, q)

    Parameters
    ----------
    p : array_like, shape (..., C)
        The reference ("true") distributions; entries in [0, 1] summing to 1.
    q : array_like, same shape as ``p``
        The model distributions; entries in [0, 1] summing to 1.

    Returns
    -------
    numpy floating scalar or ndarray, shape ``p.shape[:-1]``
        ``inf`` where :math:`q_k = 0 < p_k` for some k; terms with :math:`p_k = 0` are 0.

    Raises
    ------
    ValueError
        If the shapes differ, or ``p`` or ``q`` is not a distribution over the last axis.

    Notes
    -----
    This compares two probability vectors. The classification loss of the same name that
    takes logits and labels is ``cross_entropy``; with a one-hot ``p`` both give
    :math:`-\log q_{y}`. Minimising it over ``q`` minimises :math:`\mathrm{KL}(p \| q)`, since
    :math:`H(p)` does not depend on ``q``.

    Examples
    --------
    >>> distribution_cross_entropy([1.0, 0.0], [0.25, 0.75])  # -log 0.25
    np.float64(1.3862943611198906)
    """
    return _row_sums(_cross_entropy_terms, p, q) + 0.0


def distribution_cross_entropy_grad(p: ArrayLike, q: ArrayLike) -> FloatArray:
    r"""Gradient of ``distribution_cross_entropy(p, q).sum()`` with respect to ``p``:
    :math:`-\log q_k`.

    Parameters
    ----------
    p, q : array_like, shape (..., C)
        As for :func:`distribution_cross_entropy`.

    Returns
    -------
    ndarray, shape of ``p``
        ``+inf`` where :math:`q_k = 0`.

    Raises
    ------
    ValueError
        As for :func:`distribution_cross_entropy`.

    Notes
    -----
    Partial derivatives with the entries of ``p`` treated as free variables (see the module
    notes). The gradient with respect to ``q`` (:math:`-p_k / q_k`) is not provided.

    Examples
    --------
    >>> distribution_cross_entropy_grad([1.0, 0.0], [0.5, 0.5])
    array([0.69314718, 0.69314718])
    """
    _, q = _pair(p, q)
    return -_log0(q)


def kl_divergence(p: ArrayLike, q: ArrayLike) -> Loss:
    r"""Kullback–Leibler divergence KL(p || q) over the last axis, in nats.

    .. math::

        \mathrm{KL}(p \,\|\, q) = \sum_k p_k \log \frac{p_k}{q_k} = H(p, q) - H(p) \ge 0

    with :math:`0 \log (0 / q) = 0` and :math:`p \log (p / 0) = \infty` for :math:`p > 0`.

    Parameters
    ----------
    p : array_like, shape (..., C)
        The distributions the expectation is taken under (first argument, as in the math).
    q : array_like, same shape as ``p``
        The distributions compared against.

    Returns
    -------
    numpy floating scalar or ndarray, shape ``p.shape[:-1]``
        Non-negative; 0 exactly when ``p == q``; ``inf`` where :math:`q_k = 0 < p_k` for
        some k.

    Raises
    ------
    ValueError
        If the shapes differ, or ``p`` or ``q`` is not a distribution over the last axis.

    Notes
    -----
    **Argument order.** ``kl_divergence(p, q)`` is KL(p || q), ``p`` first.
    ``torch.nn.functional.kl_div(input, target)`` takes the *log* of q first and p second,
    ``kl_div(q.log(), p)``, computes the pointwise terms
    :math:`p_k (\log p_k - \log q_k)` and then applies its ``reduction`` over all elements;
    ``reduction="batchmean"`` gives the mean of this function's output over the batch.
    ``scipy.special.rel_entr(p, q).sum(-1)`` and ``scipy.stats.entropy(p, q, axis=-1)``
    agree with this function (scipy.stats normalises its inputs first, lossutils rejects
    unnormalised ones).

    KL is not symmetric: the expectation is under ``p``, so it is large where ``p`` has mass
    that ``q`` misses, and infinite where ``q`` is exactly 0 and ``p`` is not. That infinity
    is the mathematically correct value (q cannot have generated an outcome it rules out),
    so it is returned rather than hidden by clipping ``q``.

    The terms are computed as :math:`p_k \log(p_k / q_k)` (as ``scipy.special.rel_entr``;
    :math:`p_k(\log p_k - \log q_k)` where the ratio overflows, for a subnormal
    :math:`q_k`), so the result is exactly 0 for ``p == q``; for nearly equal ``p`` and ``q``
    rounding can make it negative by a few units of machine epsilon.

    References
    ----------
    S. Kullback and R. A. Leibler, "On information and sufficiency", *Ann. Math. Statist.*
    22(1), 1951.

    Examples
    --------
    >>> kl_divergence([0.9, 0.1], [0.5, 0.5])
    np.float64(0.368064207)
    >>> kl_divergence([0.5, 0.5], [0.9, 0.1])  # asymmetric
    np.float64(0.510825624)
    >>> kl_divergence([0.5, 0.5], [1.0, 0.0])
    np.float64(inf)
    """
    return _row_sums(_kl_terms, p, q)


def kl_divergence_grad(p: ArrayLike, q: ArrayLike) -> FloatArray:
    r"""Gradient of ``kl_divergence(p, q).sum()`` with respect to ``p``:
    :math:`\log p_k - \log q_k + 1`.

    Parameters
    ----------
    p, q : array_like, shape (..., C)
        As for :func:`kl_divergence`.

    Returns
    -------
    ndarray, shape of ``p``
        ``+inf`` where :math:`q_k = 0` (for any :math:`p_k`: the term jumps from 0 to
        :math:`\infty`), ``-inf`` where :math:`p_k = 0 < q_k` (the slope of :math:`x \log x`
        at 0); finite everywhere else.

    Raises
    ------
    ValueError
        As for :func:`kl_divergence`.

    Notes
    -----
    Partial derivatives with the entries of ``p`` treated as free variables (see the module
    notes).

    Examples
    --------
    >>> kl_divergence_grad([0.5, 0.5], [0.5, 0.5])
    array([1., 1.])
    """
    p, q = _pair(p, q)
    return np.where(q > 0, _log0(p) - _log_where_positive(q) + 1, np.inf)
