"""Likelihoods: log-probabilities of observations, and the i.i.d. (negative) log-likelihood.

The log-mass and log-density functions are elementwise and are not losses (no reduction, no
gradient). :func:`negative_log_likelihood` is the loss that maximum-likelihood training
minimises: the product of per-sample probabilities becomes a sum of logs, and the sign flips
maximisation into minimisation.
"""

from __future__ import annotations

import typing
from typing import Any

import numpy as np

from ._validation import (
    ArrayLike,
    FloatArray,
    Loss,
    Reduction,
    as_float,
    as_labels,
    check_probs,
    check_reduction,
    check_same_shape,
    reduce,
    reduce_grad,
)
from .regression import gaussian_nll_loss, laplace_nll_loss

__all__ = [
    "bernoulli_log_pmf",
    "categorical_log_pmf",
    "gaussian_log_pdf",
    "laplace_log_pdf",
    "log_likelihood",
    "negative_log_likelihood",
    "negative_log_likelihood_grad",
]


def _log(p: FloatArray) -> FloatArray:
    """Natural log of probabilities in [0, 1], with log 0 = -inf and no warning."""
    # A probability of exactly 0 means an impossible outcome: its log-probability is -inf,
    # the correct value, not an accident worth a RuntimeWarning.
    with np.errstate(divide="ignore"):
        log: FloatArray = np.log(p)
    return log


def _sample_probs(probs: ArrayLike) -> FloatArray:
    """Per-sample probabilities p(y_m | x_m): a 1-D array of values in [0, 1]."""
    p = as_float(probs, "probs")
    if p.ndim != 1:
        raise ValueError(
            f"probs must be a 1-D array of per-sample probabilities p(y_m | x_m), shape (M,), "
            f"got shape {p.shape}; for class probabilities of shape (M, C) pick each "
            "sample's true class first (probs[np.arange(M), labels]) or use "
            "categorical_log_pmf."
        )
    check_probs(p, "probs")
    return p


def bernoulli_log_pmf(probs: ArrayLike, target: ArrayLike) -> FloatArray:
    r"""Log-probability of binary outcomes under Bernoulli distributions, elementwise.

    .. math::

        \log p(y \mid \pi) = y \log \pi + (1 - y) \log (1 - \pi), \qquad y \in \{0, 1\}

    Parameters
    ----------
    probs : array_like, shape (...)
        Success probabilities :math:`\pi \in [0, 1]`.
    target : array_like of 0/1 (bool, int or float), same shape as ``probs``
        Observed outcomes.

    Returns
    -------
    ndarray of ``probs``'s shape and floating dtype
        The log-probabilities (:math:`\le 0`). ``target`` holds labels, so it does not
        affect the dtype.

    Raises
    ------
    ValueError
        If the shapes differ, ``probs`` is outside [0, 1], or ``target`` is not 0/1.

    Notes
    -----
    Only the term of the observed outcome is evaluated, so exact probabilities 0 and 1 are
    handled: :math:`\log p = -\infty` exactly where the outcome is impossible
    (:math:`\pi = 0, y = 1` or :math:`\pi = 1, y = 0`) and the other term is
    :math:`0 \log 0 = 0`. :math:`\log(1 - \pi)` is computed with ``log1p``, accurate for
    small :math:`\pi`. Agrees with ``scipy.stats.bernoulli.logpmf(target, probs)``.

    References
    ----------
    C. M. Bishop, *Pattern Recognition and Machine Learning*, Springer, 2006, Sec. 2.1.

    Examples
    --------
    An unfair coin shows tails with probability 0.7; observe tails (y = 1), then heads:

    >>> bernoulli_log_pmf([0.7, 0.7], [1, 0])
    array([-0.35667494, -1.2039728 ])
    >>> bernoulli_log_pmf([1.0, 1.0], [1, 0])
    array([  0., -inf])
    """
    probs = as_float(probs, "probs")
    target = np.asarray(target)
    check_same_shape(probs, target, "probs", "target")
    check_probs(probs, "probs")
    if target.dtype.kind not in "biuf":
        raise ValueError(
            f"target must hold binary outcomes 0 or 1, got an array of dtype {target.dtype}; "
            "pass booleans, integers or floats."
        )
    binary = (target == 0) | (target == 1)
    if not np.all(binary):
        found = np.unique(target[~binary])[:5].tolist()
        raise ValueError(
            f"target must hold binary outcomes 0 or 1, found {found}; for soft targets in "
            "[0, 1] use binary_cross_entropy."
        )
    with np.errstate(divide="ignore"):  # log1p(-1) = -inf: see _log
        log_fail = np.log1p(-probs)
    return np.where(target == 1, _log(probs), log_fail)


def categorical_log_pmf(probs: ArrayLike, target: ArrayLike) -> FloatArray:
    r"""Log-probability of class labels under categorical distributions, one per row.

    .. math:: \log p(y_m \mid \pi_m) = \log \pi_{m, y_m}

    which equals :math:`\sum_k [y_m = k] \log \pi_{m, k}` with one-hot labels (the
    :math:`0 \log 0` terms of the wrong classes are 0).

    Parameters
    ----------
    probs : array_like, shape (N, C)
        Class probabilities, each row in [0, 1] and summing to 1.
    target : array_like of int, shape (N,)
        Class labels in ``[0, C)``.

    Returns
    -------
    ndarray, shape (N,), ``probs``'s floating dtype
        ``-inf`` where the observed class has probability 0.

    Raises
    ------
    ValueError
        If ``probs`` is not 2-D, not in [0, 1] or its rows do not sum to 1, or if ``target``
        is not integer labels of shape (N,) in ``[0, C)``.

    References
    ----------
    C. M. Bishop, *Pattern Recognition and Machine Learning*, Springer, 2006, Sec. 2.2.

    Examples
    --------
    >>> categorical_log_pmf([[0.3, 0.7], [0.3, 0.7]], [1, 0])
    array([-0.35667494, -1.2039728 ])
    """
    probs = as_float(probs, "probs")
    if probs.ndim != 2:
        raise ValueError(
            f"probs must have shape (N, C), one distribution per row, got shape "
            f"{probs.shape}; reshape a single distribution with probs[None, :]."
        )
    check_probs(probs, "probs", normalised=True)
    labels = as_labels(target, probs.shape[1], "target", batch=probs.shape[0])
    return _log(probs[np.arange(probs.shape[0]), labels])


def gaussian_log_pdf(pred: ArrayLike, target: ArrayLike, *, var: ArrayLike = 1.0) -> Loss:
    r"""Log-density of ``target`` under a Gaussian with mean ``pred`` and variance ``var``.

    .. math::

        \log \mathcal N(y; \hat y, v) = -\tfrac12 \log 2\pi - \tfrac12 \log v
                                        - \frac{(y - \hat y)^2}{2 v}

    Parameters
    ----------
    pred : array_like, shape (...)
        Means :math:`\hat y`.
    target : array_like, same shape as ``pred``
        Observations :math:`y`.
    var : float or array_like of ``pred``'s shape, keyword-only
        Variance :math:`v > 0` (not the standard deviation).

    Returns
    -------
    ndarray of ``pred``'s shape
        Elementwise log-densities, the dtype of ``pred`` and ``target``.

    Raises
    ------
    ValueError
        If the shapes differ or ``var`` is not strictly positive (or has the wrong shape).

    Notes
    -----
    It is ``-gaussian_nll_loss(pred, target, var=var, full=True, reduction="none")``, and
    agrees with ``scipy.stats.norm.logpdf(target, loc=pred, scale=np.sqrt(var))``.

    Examples
    --------
    >>> gaussian_log_pdf([0.0], [0.0])  # -0.5 * log(2 pi)
    array([-0.91893853])
    """
    return -gaussian_nll_loss(pred, target, var=var, full=True, reduction="none")


def laplace_log_pdf(pred: ArrayLike, target: ArrayLike, *, scale: ArrayLike = 1.0) -> Loss:
    r"""Log-density of ``target`` under a Laplace distribution with location ``pred``.

    .. math:: \log \mathrm{Laplace}(y; \hat y, b) = -\log 2b - \frac{|y - \hat y|}{b}

    Parameters
    ----------
    pred : array_like, shape (...)
        Locations :math:`\hat y`.
    target : array_like, same shape as ``pred``
        Observations :math:`y`.
    scale : float or array_like of ``pred``'s shape, keyword-only
        Scale :math:`b > 0`.

    Returns
    -------
    ndarray of ``pred``'s shape
        Elementwise log-densities, the dtype of ``pred`` and ``target``.

    Raises
    ------
    ValueError
        If the shapes differ or ``scale`` is not strictly positive (or has the wrong shape).

    Notes
    -----
    It is ``-laplace_nll_loss(pred, target, scale=scale, full=True, reduction="none")``, and
    agrees with ``scipy.stats.laplace.logpdf(target, loc=pred, scale=scale)``.

    Examples
    --------
    >>> laplace_log_pdf([0.0], [1.0])  # -log 2 - 1
    array([-1.69314718])
    """
    return -laplace_nll_loss(pred, target, scale=scale, full=True, reduction="none")


def log_likelihood(probs: ArrayLike) -> np.floating[Any]:
    r"""Log of the joint likelihood of i.i.d. samples: the sum of per-sample log-probabilities.

    .. math::

        \log \prod_{m=1}^{M} p(y_m \mid x_m) = \sum_{m=1}^{M} \log p(y_m \mid x_m)

    This is not a loss (it is maximised, and has no reduction); see
    :func:`negative_log_likelihood`.

    Parameters
    ----------
    probs : array_like, shape (M,)
        The probability (or probability mass) the model gives each observed sample,
        :math:`p(y_m \mid x_m) \in [0, 1]`.

    Returns
    -------
    numpy floating scalar
        :math:`\le 0`; ``-inf`` if some :math:`p(y_m \mid x_m) = 0`; ``0.0`` for no samples
        (the empty product is 1).

    Raises
    ------
    ValueError
        If ``probs`` is not 1-D or not in [0, 1].

    Notes
    -----
    The product of many probabilities underflows: a thousand samples of probability 0.1 have
    joint likelihood :math:`10^{-1000}`, below the smallest float64, so it rounds to 0 and
    every model looks equally bad. The sum of logs, :math:`-2302.6`, is perfectly
    representable; and the log, being increasing, has the same maximiser.

    References
    ----------
    I. Goodfellow, Y. Bengio and A. Courville, *Deep Learning*, MIT Press, 2016, Sec. 5.5.

    Examples
    --------
    >>> probs = np.full(1000, 0.1)
    >>> np.prod(probs)  # the product underflows
    np.float64(0.0)
    >>> log_likelihood(probs)  # 1000 * log(0.1)
    np.float64(-2302.585092994)
    """
    probs = _sample_probs(probs)
    return typing.cast("np.floating[Any]", _log(probs).sum(dtype=probs.dtype))


def negative_log_likelihood(probs: ArrayLike, *, reduction: Reduction = "mean") -> Loss:
    r"""Negative log-likelihood of per-sample probabilities, reduced over the samples.

    .. math::

        \ell_m = -\log p(y_m \mid x_m), \qquad
        \mathrm{sum} = -\sum_m \log p(y_m \mid x_m), \qquad
        \mathrm{mean} = \tfrac1M\,\mathrm{sum}

    Parameters
    ----------
    probs : array_like, shape (M,)
        The probability the model gives each observed sample, in [0, 1].
    reduction : {"mean", "sum", "none"}, keyword-only
        ``"sum"`` is ``-log_likelihood(probs)`` (the lecture's definition); ``"mean"``
        (default) divides it by M; ``"none"`` returns the M values.

    Returns
    -------
    numpy floating scalar, or ndarray of shape (M,) for ``reduction="none"``
        ``inf`` where some probability is 0.

    Raises
    ------
    ValueError
        If ``probs`` is not 1-D or not in [0, 1], or ``reduction`` is unknown (or ``"mean"``
        of no samples).

    Notes
    -----
    Takes probabilities, unlike ``torch.nn.functional.nll_loss``, which takes
    log-probabilities of shape (N, C) and class labels. When a model outputs logits, work
    from them (``cross_entropy``) instead of taking the log of a softmax.

    References
    ----------
    I. Goodfellow, Y. Bengio and A. Courville, *Deep Learning*, MIT Press, 2016, Sec. 5.5.

    Examples
    --------
    The coin that shows tails with probability 0.7, observed tails twice and heads once:

    >>> negative_log_likelihood([0.7, 0.7, 0.3], reduction="sum")
    np.float64(1.917322692)
    """
    check_reduction(reduction)
    probs = _sample_probs(probs)
    return reduce(-_log(probs), reduction)


def negative_log_likelihood_grad(probs: ArrayLike, *, reduction: Reduction = "mean") -> FloatArray:
    r"""Gradient of :func:`negative_log_likelihood` with respect to ``probs``:
    :math:`-1 / p_m`, scaled by :math:`1/M` for ``reduction="mean"``.

    Parameters
    ----------
    probs, reduction
        As for :func:`negative_log_likelihood`.

    Returns
    -------
    ndarray, shape (M,)
        ``-inf`` where a probability is 0 (the limit of :math:`-1/p` as :math:`p \to 0^+`).

    Raises
    ------
    ValueError
        As for :func:`negative_log_likelihood`.

    Notes
    -----
    Each probability is treated as a free variable; in a model they are tied together
    (e.g. by a softmax), and the chain rule goes through this gradient.

    Examples
    --------
    >>> negative_log_likelihood_grad([0.5, 0.25], reduction="sum")
    array([-2., -4.])
    """
    check_reduction(reduction)
    probs = _sample_probs(probs)
    # -1/0 = -inf is the exact limit at an impossible sample; see _log.
    with np.errstate(divide="ignore"):
        grad = -1.0 / probs
    return reduce_grad(grad, reduction)
