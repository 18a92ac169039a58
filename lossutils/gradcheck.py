"""Finite-difference gradient checking: "check your gradients" (CS231n).

An analytic gradient is compared with central differences of the function itself. Both are
computed in float64 on copies of the input, so neither the caller's array nor the functions'
own arguments can be changed by the check.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np

from ._validation import ArrayLike, FloatArray, as_float

__all__ = ["gradient_check", "numerical_gradient"]


def _check_eps(eps: object) -> float:
    if (
        isinstance(eps, bool)
        or not isinstance(eps, numbers.Real)
        or not (np.isfinite(float(eps)) and float(eps) > 0)
    ):
        raise ValueError(f"eps must be a positive finite number, got {eps!r}; 1e-6 suits float64.")
    return float(eps)


def _scalar(value: object) -> float:
    arr = np.asarray(value)
    if arr.ndim != 0 or arr.dtype.kind not in "biuf":
        raise ValueError(
            f"f must return a real scalar, got {type(value).__name__} of shape {arr.shape} "
            f"and dtype {arr.dtype}; reduce it (e.g. with reduction='sum') first."
        )
    return float(arr)


def numerical_gradient(
    f: Callable[[FloatArray], object], x: ArrayLike, *, eps: float = 1e-6
) -> FloatArray:
    r"""Central-difference gradient of a scalar function ``f`` at ``x``.

    .. math::

        \frac{\partial f}{\partial x_i} \approx
        \frac{f(x + \varepsilon e_i) - f(x - \varepsilon e_i)}{2 \varepsilon}

    The error of the central difference is :math:`O(\varepsilon^2)` (truncation) plus
    :math:`O(u / \varepsilon)` (rounding, with machine epsilon :math:`u`).

    Parameters
    ----------
    f : callable
        ``f(x) -> scalar``; called ``2 * x.size`` times, each time with a fresh float64
        array of the shape of ``x``.
    x : array_like
        The point; any shape. Converted to float64; the caller's array is never modified.
    eps : float, default 1e-6
        Half the step of the difference.

    Returns
    -------
    ndarray of float64, shape of ``x``

    Raises
    ------
    ValueError
        If ``x`` is not numeric, ``eps`` is not a positive finite number, or ``f`` does not
        return a real scalar.

    Notes
    -----
    ``eps = 1e-6`` balances truncation and rounding error for a function evaluated in
    float64 (roughly the cube root of float64's machine epsilon, ``2.2e-16``). If ``f``
    computes in float32 (machine epsilon ``1.2e-7``), a step of about ``1e-3`` is needed,
    and relative errors below ``1e-3`` are then the best one can expect.

    The step actually used is ``(x + eps) - (x - eps)`` as represented in floating point,
    not ``2 * eps``, which removes the representation error of ``x +- eps``.

    References
    ----------
    .. [1] CS231n, "Gradient checks", https://cs231n.github.io/neural-networks-3/
    .. [2] W. H. Press et al., *Numerical Recipes*, 3rd ed., Sec. 5.7.

    Examples
    --------
    >>> numerical_gradient(lambda x: np.sum(x ** 3), [1.0, -2.0])
    array([ 3., 12.])
    """
    x = np.array(as_float(x, "x"), dtype=np.float64)
    eps = _check_eps(eps)
    grad = np.empty_like(x)
    for i in range(x.size):
        plus, minus = x.copy(), x.copy()
        plus.flat[i] += eps
        minus.flat[i] -= eps
        # Taken before f runs: f may write into its argument.
        step = plus.flat[i] - minus.flat[i]
        grad.flat[i] = (_scalar(f(plus)) - _scalar(f(minus))) / step
    return grad


def gradient_check(
    f: Callable[[FloatArray], object],
    grad_f: Callable[[FloatArray], ArrayLike],
    x: ArrayLike,
    *,
    eps: float = 1e-6,
) -> float:
    r"""Largest relative error between an analytic gradient and central differences.

    .. math::

        \max_i \frac{|a_i - n_i|}{\max(|a_i|, |n_i|)},
        \qquad a = \texttt{grad\_f}(x),\quad n = \texttt{numerical\_gradient}(f, x)

    with the ratio taken as 0 where ``a_i`` and ``n_i`` are both exactly 0.

    Parameters
    ----------
    f : callable
        ``f(x) -> scalar``, the function.
    grad_f : callable
        ``grad_f(x) -> array`` of the shape of ``x``, its claimed gradient.
    x : array_like
        The point; converted to float64. Each callable gets its own copy, so ``x`` is never
        modified.
    eps : float, default 1e-6
        Step of :func:`numerical_gradient`.

    Returns
    -------
    float
        The maximum relative error over the entries of ``x``: 0.0 for an empty ``x``, NaN
        if either gradient has a NaN or infinite entry.

    Raises
    ------
    ValueError
        If ``grad_f`` returns an array of another shape than ``x``, or as for
        :func:`numerical_gradient`.

    Notes
    -----
    Rules of thumb in float64 (CS231n):

    - ``> 1e-2``: the gradient is probably wrong;
    - ``1e-2`` to ``1e-4``: suspicious; near ``1e-4`` acceptable only for functions with
      kinks (hinge, ReLU, max), when a difference straddles a kink;
    - ``<= 1e-7``: good.

    Check away from kinks (e.g. not at ``y s == margin`` for the hinge), in float64, and on
    several random points: one lucky point proves little.

    References
    ----------
    .. [1] CS231n, "Gradient checks", https://cs231n.github.io/neural-networks-3/

    Examples
    --------
    >>> x = np.array([1.0, -2.0, 0.5])
    >>> gradient_check(lambda v: np.sum(v ** 2), lambda v: 2 * v, x) < 1e-7
    True
    >>> gradient_check(lambda v: np.sum(v ** 2), lambda v: v, x)  # forgot the 2
    0.5
    """
    x = np.array(as_float(x, "x"), dtype=np.float64)
    analytic = np.asarray(grad_f(x.copy()), dtype=np.float64)
    if analytic.shape != x.shape:
        raise ValueError(
            f"grad_f returned shape {analytic.shape} but x has shape {x.shape}; the gradient "
            "of a scalar function has the shape of its argument."
        )
    numeric = numerical_gradient(f, x, eps=eps)
    scale = np.maximum(np.abs(analytic), np.abs(numeric))
    with np.errstate(invalid="ignore", divide="ignore"):
        # Both exactly 0 is agreement, not 0/0; NaN (from NaN or infinite gradients) is kept
        # so that a broken gradient fails any threshold.
        rel = np.where(scale == 0, 0.0, np.abs(analytic - numeric) / scale)
    return float(rel.max()) if rel.size else 0.0
