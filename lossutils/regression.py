"""Regression losses: squared, absolute, Lp, Huber, and the Gaussian and Laplace likelihoods.

Every loss takes ``(pred, target)`` of exactly the same shape, computes one loss per element
and reduces over *all* elements with ``reduction="mean" | "sum" | "none"`` (as
``torch.nn.functional``). Every loss ``f`` has ``f_grad`` with the same signature, returning
the derivative of ``f`` with respect to ``pred`` under the same reduction; for
``reduction="none"`` that is the elementwise derivative of the per-element losses (the
gradient of their sum).

The losses come from maximum likelihood: a Gaussian likelihood with mean ``pred`` gives the
squared error, a Laplace likelihood gives the absolute error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ._validation import (
    ArrayLike,
    FloatArray,
    Loss,
    Reduction,
    as_float,
    as_target,
    check_positive,
    check_reduction,
    check_same_shape,
    float_dtype,
    grad_scale,
    reduce,
    reduce_grad,
)

__all__ = [
    "gaussian_nll_loss",
    "gaussian_nll_loss_grad",
    "huber_loss",
    "huber_loss_grad",
    "l1_loss",
    "l1_loss_grad",
    "laplace_nll_loss",
    "laplace_nll_loss_grad",
    "lp_loss",
    "lp_loss_grad",
    "mse_loss",
    "mse_loss_grad",
]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def _pair(pred: ArrayLike, target: ArrayLike, reduction: str) -> tuple[FloatArray, FloatArray]:
    """Validate ``pred``/``target``/``reduction``; return both arrays in the result dtype."""
    check_reduction(reduction)
    pred = as_float(pred, "pred")
    target = as_target(target, pred)
    check_same_shape(pred, target, "pred", "target")
    dtype = float_dtype(pred, target)
    # astype(copy=False) returns the caller's array itself when no cast is needed; nothing
    # below writes into it.
    return pred.astype(dtype, copy=False), target.astype(dtype, copy=False)


# Bandwidth-bound losses read both inputs once, block by block: a full-size difference array
# would be written and read back from memory (a third of the throughput at 10^7 elements).
_BLOCK = 1 << 15


def _reduce_blocks(
    pred: FloatArray,
    target: FloatArray,
    reduction: Reduction,
    block_sum: Callable[[FloatArray], float | np.floating[Any]],
) -> np.floating[Any]:
    """Reduce ``block_sum(pred - target)`` over blocks that stay in cache."""
    grad_scale(pred.size, reduction)  # refuses the mean of an empty batch
    flat_pred, flat_target = pred.reshape(-1), target.reshape(-1)
    diff = np.empty(min(_BLOCK, pred.size), dtype=pred.dtype)
    total = 0.0  # the blocks' partial sums add up in float64, whatever the input's precision
    for start in range(0, pred.size, _BLOCK):
        stop = min(start + _BLOCK, pred.size)
        d = np.subtract(flat_pred[start:stop], flat_target[start:stop], out=diff[: stop - start])
        total += float(block_sum(d))
    return pred.dtype.type(total / pred.size if reduction == "mean" else total)


def _real_scalar(value: object, name: str) -> float:
    """A tuning keyword (``p``, ``delta``, ``eps``) as a Python float."""
    arr = np.asarray(value)
    if arr.ndim != 0 or arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a real number, got {value!r}.")
    return float(arr)


def _per_element(value: ArrayLike, pred: FloatArray, name: str) -> FloatArray:
    """A scalar or exactly-``pred``-shaped parameter (``var``, ``scale``) in ``pred``'s dtype."""
    arr = as_float(value, name)
    if arr.ndim != 0 and arr.shape != pred.shape:
        raise ValueError(
            f"{name} has shape {arr.shape} but pred has shape {pred.shape}; pass a scalar "
            f"{name} or one {name} per element of pred (exactly pred's shape; lossutils never "
            "broadcasts silently)."
        )
    # The parameter describes the noise of pred, so it follows pred's precision rather
    # than promoting a float32 computation to float64 through the default ``1.0``.
    return arr.astype(pred.dtype, copy=False)


def _gaussian_var(var: ArrayLike, pred: FloatArray, eps: float) -> FloatArray:
    """The variance actually used: validated, and clamped to ``eps`` only if ``eps > 0``."""
    eps = _real_scalar(eps, "eps")
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(
            f"eps must be a finite number >= 0, got {eps!r}; it is the lower bound the "
            "variance is clamped to, and eps=0.0 (the default) disables clamping."
        )
    v = _per_element(var, pred, "var")
    if eps == 0:
        check_positive(v, "var")
        return v
    bad = v[~(v >= 0)]
    if bad.size:
        raise ValueError(
            f"var must be non-negative, found {bad[:5].tolist()}; eps only raises small "
            "variances to eps, it does not repair negative ones (predict a variance through "
            "exp or softplus)."
        )
    return np.maximum(v, eps)


def _check_p(p: float) -> float:
    p = _real_scalar(p, "p")
    if not (math.isfinite(p) and p >= 1):
        raise ValueError(
            f"p must be a finite number >= 1, got {p!r}; for p < 1 the Lp loss is not convex "
            "and its gradient is infinite at zero error (use p=1 for L1, p=2 for squared error)."
        )
    return p


def _check_delta(delta: float) -> float:
    delta = _real_scalar(delta, "delta")
    if not (math.isfinite(delta) and delta > 0):
        raise ValueError(
            f"delta must be a positive finite number, got {delta!r}; it is the error size "
            "where the Huber loss turns from quadratic to linear (torch's default is 1.0)."
        )
    return delta


def mse_loss(pred: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean") -> Loss:
    r"""Mean squared error: the squared difference per element, reduced over all elements.

    .. math::

        \ell_i = (\hat y_i - y_i)^2, \qquad
        \mathrm{mean} = \frac{1}{n} \sum_{i=1}^{n} \ell_i, \qquad
        \mathrm{sum} = \sum_{i=1}^{n} \ell_i

    where :math:`n` is the total number of elements (every axis, as in
    ``torch.nn.functional.mse_loss``).

    Parameters
    ----------
    pred : array_like, shape (...)
        Predictions :math:`\hat y`.
    target : array_like, same shape as ``pred``
        Targets :math:`y`.
    reduction : {"mean", "sum", "none"}, keyword-only
        ``"mean"`` averages over all elements, ``"sum"`` adds them up, ``"none"`` returns
        the per-element losses.

    Returns
    -------
    numpy floating scalar, or ndarray of ``pred``'s shape for ``reduction="none"``
        float32 if both inputs are float32, otherwise float64.

    Raises
    ------
    ValueError
        If the shapes differ, ``reduction`` is unknown, or ``reduction="mean"`` gets no
        elements.

    Notes
    -----
    The *L2 loss* derived from a Gaussian likelihood with unit variance is **one half** of
    the sum of squares,

    .. math:: L_2 = \tfrac12 \sum_i (\hat y_i - y_i)^2
              = \tfrac12\,\mathtt{mse\_loss(pred, target, reduction="sum")},

    because the Gaussian log-density is :math:`-\tfrac12 (\hat y - y)^2 / \sigma^2` plus
    constants. ``mse_loss`` keeps torch's definition without the :math:`\tfrac12`; its
    ``"mean"`` is :math:`\tfrac{2}{n} L_2`. The factor changes the size of the gradient, not
    the minimiser.

    References
    ----------
    C. M. Bishop, *Pattern Recognition and Machine Learning*, Springer, 2006, Sec. 1.2.5.

    Examples
    --------
    >>> mse_loss([3.0, 0.0], [1.0, 0.0])
    np.float64(2.0)
    >>> 0.5 * mse_loss([3.0], [1.0], reduction="sum")  # the L2 loss of the Gaussian
    np.float64(2.0)
    """
    pred, target = _pair(pred, target, reduction)
    if reduction == "none":
        diff = pred - target
        return diff * diff
    return _reduce_blocks(pred, target, reduction, lambda d: np.dot(d, d))


def mse_loss_grad(
    pred: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean"
) -> FloatArray:
    r"""Gradient of :func:`mse_loss` with respect to ``pred``: :math:`2(\hat y - y)`, scaled
    by :math:`1/n` for ``reduction="mean"``.

    Parameters
    ----------
    pred, target, reduction
        As for :func:`mse_loss`.

    Returns
    -------
    ndarray of ``pred``'s shape and the result dtype of :func:`mse_loss`

    Raises
    ------
    ValueError
        As for :func:`mse_loss`.

    Examples
    --------
    >>> mse_loss_grad([3.0, 0.0], [1.0, 0.0])
    array([2., 0.])
    """
    pred, target = _pair(pred, target, reduction)
    return reduce_grad(2.0 * (pred - target), reduction)


def l1_loss(pred: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean") -> Loss:
    r"""Absolute error per element, reduced over all elements.

    .. math:: \ell_i = |\hat y_i - y_i|

    It is the negative log-likelihood of a Laplace distribution with unit scale, up to a
    constant (see :func:`laplace_nll_loss`); the median, not the mean, minimises it, which
    makes it robust to outlying targets.

    Parameters
    ----------
    pred : array_like, shape (...)
        Predictions.
    target : array_like, same shape as ``pred``
        Targets.
    reduction : {"mean", "sum", "none"}, keyword-only
        Reduction over all elements.

    Returns
    -------
    numpy floating scalar, or ndarray of ``pred``'s shape for ``reduction="none"``

    Raises
    ------
    ValueError
        If the shapes differ or ``reduction`` is unknown.

    Examples
    --------
    >>> l1_loss([3.0, -1.0], [1.0, 0.0], reduction="sum")
    np.float64(3.0)
    """
    pred, target = _pair(pred, target, reduction)
    if reduction == "none":
        return np.abs(pred - target)
    return _reduce_blocks(pred, target, reduction, lambda d: np.abs(d, out=d).sum())


def l1_loss_grad(
    pred: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean"
) -> FloatArray:
    r"""A subgradient of :func:`l1_loss` with respect to ``pred``:
    :math:`\operatorname{sign}(\hat y - y)`.

    Parameters
    ----------
    pred, target, reduction
        As for :func:`l1_loss`.

    Returns
    -------
    ndarray of ``pred``'s shape

    Raises
    ------
    ValueError
        As for :func:`l1_loss`.

    Notes
    -----
    :math:`|x|` has no derivative at :math:`x = 0`; its subdifferential there is
    :math:`[-1, 1]`. Where ``pred == target`` this returns 0, a valid subgradient (the one
    ``np.sign`` and torch give).

    Examples
    --------
    >>> l1_loss_grad([3.0, -1.0, 0.0], [1.0, 0.0, 0.0], reduction="sum")
    array([ 1., -1.,  0.])
    """
    pred, target = _pair(pred, target, reduction)
    return reduce_grad(np.sign(pred - target), reduction)


def lp_loss(
    pred: ArrayLike, target: ArrayLike, *, p: float = 2.0, reduction: Reduction = "mean"
) -> Loss:
    r"""The p-th power of the absolute error per element, reduced over all elements.

    .. math:: \ell_i = |\hat y_i - y_i|^p, \qquad p \ge 1

    ``p=2`` is :func:`mse_loss`, ``p=1`` is :func:`l1_loss`. With ``reduction="sum"`` this is
    :math:`\|\hat y - y\|_p^p`, the p-th power of the Lp norm of the error (not the norm
    itself).

    Parameters
    ----------
    pred : array_like, shape (...)
        Predictions.
    target : array_like, same shape as ``pred``
        Targets.
    p : float, keyword-only
        Exponent, finite and at least 1 (below 1 the loss is not convex).
    reduction : {"mean", "sum", "none"}, keyword-only
        Reduction over all elements.

    Returns
    -------
    numpy floating scalar, or ndarray of ``pred``'s shape for ``reduction="none"``

    Raises
    ------
    ValueError
        If the shapes differ, ``p`` is not a finite number >= 1, or ``reduction`` is unknown.

    Examples
    --------
    >>> lp_loss([3.0, -1.0], [1.0, 0.0], p=3, reduction="none")
    array([8., 1.])
    """
    p = _check_p(p)
    pred, target = _pair(pred, target, reduction)
    return reduce(np.abs(pred - target) ** p, reduction)


def lp_loss_grad(
    pred: ArrayLike, target: ArrayLike, *, p: float = 2.0, reduction: Reduction = "mean"
) -> FloatArray:
    r"""(Sub)gradient of :func:`lp_loss` with respect to ``pred``:
    :math:`p\,|\hat y - y|^{p-1} \operatorname{sign}(\hat y - y)`.

    Parameters
    ----------
    pred, target, p, reduction
        As for :func:`lp_loss`.

    Returns
    -------
    ndarray of ``pred``'s shape

    Raises
    ------
    ValueError
        As for :func:`lp_loss`.

    Notes
    -----
    For ``p > 1`` the loss is differentiable and the gradient at zero error is 0. For
    ``p = 1`` it has a kink there and 0 is returned, a valid subgradient (as in
    :func:`l1_loss_grad`).

    Examples
    --------
    >>> lp_loss_grad([3.0, -1.0], [1.0, 0.0], p=3, reduction="none")
    array([12., -3.])
    """
    p = _check_p(p)
    pred, target = _pair(pred, target, reduction)
    diff = pred - target
    return reduce_grad(p * np.abs(diff) ** (p - 1) * np.sign(diff), reduction)


def huber_loss(
    pred: ArrayLike, target: ArrayLike, *, delta: float = 1.0, reduction: Reduction = "mean"
) -> Loss:
    r"""Huber loss: quadratic for small errors, linear for large ones (torch's definition).

    .. math::

        \ell_i = \begin{cases}
            \tfrac12 (\hat y_i - y_i)^2 & |\hat y_i - y_i| < \delta \\
            \delta \left(|\hat y_i - y_i| - \tfrac12 \delta\right) & \text{otherwise}
        \end{cases}

    The two pieces meet with equal value and slope at :math:`|\hat y - y| = \delta`.

    Parameters
    ----------
    pred : array_like, shape (...)
        Predictions.
    target : array_like, same shape as ``pred``
        Targets.
    delta : float, keyword-only
        Positive, finite threshold between the quadratic and the linear piece.
    reduction : {"mean", "sum", "none"}, keyword-only
        Reduction over all elements.

    Returns
    -------
    numpy floating scalar, or ndarray of ``pred``'s shape for ``reduction="none"``

    Raises
    ------
    ValueError
        If the shapes differ, ``delta`` is not positive and finite, or ``reduction`` is
        unknown.

    Notes
    -----
    This is ``torch.nn.functional.huber_loss``. torch's ``smooth_l1_loss(beta=delta)``
    equals this loss divided by ``delta``.

    References
    ----------
    P. J. Huber, "Robust estimation of a location parameter", *Ann. Math. Statist.* 35(1),
    1964.

    Examples
    --------
    >>> huber_loss([0.5, 3.0], [0.0, 0.0], reduction="none")
    array([0.125, 2.5  ])
    """
    delta = _check_delta(delta)
    pred, target = _pair(pred, target, reduction)
    abs_diff = np.abs(pred - target)
    loss = np.where(abs_diff < delta, 0.5 * abs_diff * abs_diff, delta * (abs_diff - 0.5 * delta))
    return reduce(loss, reduction)


def huber_loss_grad(
    pred: ArrayLike, target: ArrayLike, *, delta: float = 1.0, reduction: Reduction = "mean"
) -> FloatArray:
    r"""Gradient of :func:`huber_loss` with respect to ``pred``: the error clipped to
    :math:`[-\delta, \delta]`.

    The Huber loss is differentiable everywhere, so this is its gradient (no subgradient
    choice is needed at :math:`|\hat y - y| = \delta`).

    Parameters
    ----------
    pred, target, delta, reduction
        As for :func:`huber_loss`.

    Returns
    -------
    ndarray of ``pred``'s shape

    Raises
    ------
    ValueError
        As for :func:`huber_loss`.

    Examples
    --------
    >>> huber_loss_grad([0.5, 3.0], [0.0, 0.0], reduction="none")
    array([0.5, 1. ])
    """
    delta = _check_delta(delta)
    pred, target = _pair(pred, target, reduction)
    return reduce_grad(np.clip(pred - target, -delta, delta), reduction)


def gaussian_nll_loss(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    var: ArrayLike = 1.0,
    full: bool = False,
    eps: float = 0.0,
    reduction: Reduction = "mean",
) -> Loss:
    r"""Negative log-likelihood of ``target`` under a Gaussian with mean ``pred``.

    .. math::

        \ell_i = \tfrac12 \left(\log v_i + \frac{(\hat y_i - y_i)^2}{v_i}\right)
                 \;\left[+ \tfrac12 \log 2\pi \text{ if full}\right]

    with :math:`v_i` the variance (``var``, raised to ``eps`` if ``eps > 0``).

    Parameters
    ----------
    pred : array_like, shape (...)
        Predicted means :math:`\hat y`.
    target : array_like, same shape as ``pred``
        Observations :math:`y`.
    var : float or array_like of ``pred``'s shape, keyword-only
        Variance :math:`\sigma^2` (not the standard deviation); the precision of the lecture
        is :math:`\beta = 1/\sigma^2`. Must be strictly positive unless ``eps > 0``.
    full : bool, keyword-only
        Add the constant :math:`\tfrac12 \log 2\pi`, making the loss the exact negative
        log-density.
    eps : float, keyword-only
        If positive, use :math:`\max(v, \epsilon)` as the variance (zero variances allowed,
        negative ones still rejected). ``0.0`` (default) clamps nothing.
    reduction : {"mean", "sum", "none"}, keyword-only
        Reduction over all elements.

    Returns
    -------
    numpy floating scalar, or ndarray of ``pred``'s shape for ``reduction="none"``
        The dtype of ``pred`` and ``target`` (``var`` is cast to it).

    Raises
    ------
    ValueError
        If the shapes of ``pred``/``target`` differ, ``var`` is neither a scalar nor of
        ``pred``'s shape, ``var <= 0`` with ``eps == 0``, ``var < 0``, ``eps`` is negative,
        or ``reduction`` is unknown.

    Notes
    -----
    Matches ``torch.nn.functional.gaussian_nll_loss`` except for the clamp: torch clamps the
    variance at ``eps=1e-6`` by default, lossutils clamps only when asked (``eps > 0``), so a
    zero variance is an error rather than a silently huge loss. Unlike torch, ``var`` does
    not broadcast; pass a scalar or one variance per element.

    Summed over :math:`M` samples with ``full=True`` and :math:`v = 1/\beta` this is
    :math:`\tfrac M2 \log 2\pi - \tfrac M2 \log\beta + \tfrac\beta2 \sum_m (y_m - \hat y_m)^2`;
    with :math:`\beta = 1` only the last term depends on the prediction: the L2 loss.

    References
    ----------
    D. A. Nix and A. S. Weigend, "Estimating the mean and variance of the target probability
    distribution", *Proc. ICNN* 1994.

    Examples
    --------
    >>> gaussian_nll_loss([1.0], [3.0], var=4.0, reduction="sum")  # 0.5 * (log 4 + 4 / 4)
    np.float64(1.1931471805599454)
    """
    pred, target = _pair(pred, target, reduction)
    v = _gaussian_var(var, pred, eps)
    diff = pred - target
    loss = 0.5 * (np.log(v) + diff * diff / v)
    if full:
        loss = loss + _HALF_LOG_2PI
    return reduce(loss, reduction)


def gaussian_nll_loss_grad(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    var: ArrayLike = 1.0,
    full: bool = False,
    eps: float = 0.0,
    reduction: Reduction = "mean",
) -> FloatArray:
    r"""Gradient of :func:`gaussian_nll_loss` with respect to ``pred``:
    :math:`(\hat y - y) / v`.

    Parameters
    ----------
    pred, target, var, full, eps, reduction
        As for :func:`gaussian_nll_loss` (``full`` adds a constant and does not change the
        gradient).

    Returns
    -------
    ndarray of ``pred``'s shape

    Raises
    ------
    ValueError
        As for :func:`gaussian_nll_loss`.

    Examples
    --------
    >>> gaussian_nll_loss_grad([1.0], [3.0], var=4.0, reduction="sum")
    array([-0.5])
    """
    pred, target = _pair(pred, target, reduction)
    v = _gaussian_var(var, pred, eps)
    return reduce_grad((pred - target) / v, reduction)


def laplace_nll_loss(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    scale: ArrayLike = 1.0,
    full: bool = False,
    reduction: Reduction = "mean",
) -> Loss:
    r"""Negative log-likelihood of ``target`` under a Laplace distribution centred at ``pred``.

    .. math::

        \ell_i = \frac{|\hat y_i - y_i|}{b_i} + \log b_i
                 \;\left[+ \log 2 \text{ if full}\right]

    Parameters
    ----------
    pred : array_like, shape (...)
        Predicted locations (medians) :math:`\hat y`.
    target : array_like, same shape as ``pred``
        Observations :math:`y`.
    scale : float or array_like of ``pred``'s shape, keyword-only
        Scale :math:`b > 0` (the variance is :math:`2b^2`).
    full : bool, keyword-only
        Add the constant :math:`\log 2`, making the loss the exact negative log-density.
    reduction : {"mean", "sum", "none"}, keyword-only
        Reduction over all elements.

    Returns
    -------
    numpy floating scalar, or ndarray of ``pred``'s shape for ``reduction="none"``
        The dtype of ``pred`` and ``target`` (``scale`` is cast to it).

    Raises
    ------
    ValueError
        If the shapes differ, ``scale`` is not strictly positive or neither a scalar nor of
        ``pred``'s shape, or ``reduction`` is unknown.

    Notes
    -----
    With ``scale=1`` and ``full=False`` this is :func:`l1_loss`. torch has no Laplace NLL;
    the definition follows the density :math:`\frac{1}{2b} e^{-|y - \hat y| / b}`.

    Examples
    --------
    >>> laplace_nll_loss([1.0], [3.0], scale=2.0, reduction="sum")  # 2 / 2 + log 2
    np.float64(1.6931471805599454)
    """
    pred, target = _pair(pred, target, reduction)
    b = _per_element(scale, pred, "scale")
    check_positive(b, "scale")
    loss = np.abs(pred - target) / b + np.log(b)
    if full:
        loss = loss + _LOG_2
    return reduce(loss, reduction)


def laplace_nll_loss_grad(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    scale: ArrayLike = 1.0,
    full: bool = False,
    reduction: Reduction = "mean",
) -> FloatArray:
    r"""A subgradient of :func:`laplace_nll_loss` with respect to ``pred``:
    :math:`\operatorname{sign}(\hat y - y) / b`.

    Parameters
    ----------
    pred, target, scale, full, reduction
        As for :func:`laplace_nll_loss`.

    Returns
    -------
    ndarray of ``pred``'s shape

    Raises
    ------
    ValueError
        As for :func:`laplace_nll_loss`.

    Notes
    -----
    Where ``pred == target`` the loss has a kink; 0 is returned there, a valid subgradient
    (the subdifferential is :math:`[-1/b, 1/b]`).

    Examples
    --------
    >>> laplace_nll_loss_grad([1.0, 3.0], [3.0, 3.0], scale=2.0, reduction="none")
    array([-0.5,  0. ])
    """
    pred, target = _pair(pred, target, reduction)
    b = _per_element(scale, pred, "scale")
    check_positive(b, "scale")
    return reduce_grad(np.sign(pred - target) / b, reduction)
