"""Classification losses and the activations that feed them.

Softmax and sigmoid turn scores into probabilities; cross-entropy, negative log-likelihood and
binary cross-entropy are the negative log-likelihoods of the categorical and Bernoulli
distributions those probabilities parameterise. Everything is computed in log space: a
max-shifted log-sum-exp for the softmax family, ``logaddexp`` / ``log1p`` for the sigmoid
family, and ``0 log 0 = 0`` where a target puts no mass.

Conventions (docs/design.md): prediction first, target second; the class axis is the last axis;
integer class labels have shape ``(N,)``, probability targets ``(N, C)``; ``reduction`` is
``"mean"`` (over the batch, as torch), ``"sum"`` or ``"none"``; every loss ``f`` has ``f_grad``
with the same signature returning d f / d (first argument), where ``"none"`` gives the gradient
of the sum of the per-sample losses.

References
----------
.. [1] I. Goodfellow, Y. Bengio and A. Courville, *Deep Learning*, MIT Press, 2016,
   sections 4.1 (overflow and underflow) and 6.2.2 (sigmoid and softmax output units).
.. [2] A. Maier et al., *Deep Learning* lecture, FAU Erlangen-Nürnberg, "Loss and
   Optimization, Part 1", CC BY 4.0.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from ._blocks import blocks
from ._validation import (
    ArrayLike,
    FloatArray,
    Loss,
    Reduction,
    as_float,
    as_labels,
    as_target,
    check_probs,
    check_reduction,
    check_same_shape,
    float_dtype,
    grad_scale,
    reduce,
)

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_grad",
    "cross_entropy",
    "cross_entropy_grad",
    "log_sigmoid",
    "log_softmax",
    "logsumexp",
    "nll_loss",
    "nll_loss_grad",
    "one_hot",
    "sigmoid",
    "softmax",
]


Axis = int | tuple[int, ...] | None
Labels = NDArray[np.integer[Any]]

# ---------------------------------------------------------------------------------------------
# Private helpers
# ---------------------------------------------------------------------------------------------


def _as_rows(x: FloatArray, axis: Axis) -> tuple[FloatArray, tuple[int, ...], tuple[int, ...]]:
    """``x`` as a 2-D array whose rows are its slices along ``axis`` (a view when possible).

    Also returns the reduced axes and the shape of ``x`` with them moved last, from which
    :func:`_from_rows` puts a result back in the layout of ``x``.
    """
    if x.ndim and axis in (-1, x.ndim - 1):  # the usual class axis: no axes to move
        return x.reshape(math.prod(x.shape[:-1]), x.shape[-1]), (-1,), x.shape
    axes = tuple(range(x.ndim)) if axis is None else axis if isinstance(axis, tuple) else (axis,)
    moved = np.moveaxis(x, axes, range(-len(axes), 0))
    kept, reduced = moved.shape[: x.ndim - len(axes)], moved.shape[x.ndim - len(axes) :]
    return moved.reshape(math.prod(kept), math.prod(reduced)), axes, moved.shape


def _from_rows(values: FloatArray, axes: tuple[int, ...], shape: tuple[int, ...]) -> FloatArray:
    """Reshape ``values`` to ``shape`` (axes moved last) and move ``axes`` back in place."""
    if axes == (-1,):
        return values.reshape(shape)
    return np.moveaxis(values.reshape(shape), range(-len(axes), 0), axes)


def _finite_shift(row_max: FloatArray) -> FloatArray:
    """The shift of a log-sum-exp: ``row_max``, with non-finite maxima replaced by 0 in place.

    Shifting by a non-finite maximum would compute ``inf - inf``; such rows are shifted by 0
    instead, so that their sum of exponentials is ``inf`` (a ``+inf`` present), 0 (only
    ``-inf``, or no entries) or ``nan``, and the log-sum-exp ``+inf``, ``-inf`` or ``nan``, as
    it should be.
    """
    # One cheap test per block: the sum is finite unless a maximum is not (or the sum
    # overflows, which only costs the exact fix below).
    if not np.isfinite(np.add.reduce(row_max, axis=None)):
        row_max[~np.isfinite(row_max)] = 0
    return row_max


def _quiet() -> np.errstate:
    """Silence the warnings of rows with a non-finite maximum.

    Rows with finite maxima cannot raise any: every shifted score is at most 0, and every sum
    of exponentials is at least 1. The ``nan`` and infinite results of the other rows are
    documented, so their warnings are noise.
    """
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


def _shift_and_log_sum(
    x: FloatArray, labels: Labels | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Split the log-sum-exp of each row of the 2-D ``x`` as ``shift + log_sum``, shape (N,).

    ``shift`` is the row maximum (see :func:`_finite_shift`), so every ``exp(x - shift)`` is at
    most 1 and ``log_sum`` is small. Callers combine ``x - shift`` with ``log_sum`` directly:
    adding ``log_sum`` to a large ``shift`` first would round away most of a log-probability
    close to 0.

    Returns ``shift, log_sum, picked`` where ``picked`` is ``x[n, labels[n]]`` if ``labels``
    are given (gathered while each block is in cache), else an empty array.
    """
    shift, log_sum = np.empty(x.shape[0], x.dtype), np.empty(x.shape[0], x.dtype)
    picked = np.empty(0 if labels is None else x.shape[0], x.dtype)
    with _quiet():
        for block in blocks(x):
            if labels is not None:  # before the scores are overwritten below
                picked[block.rows] = np.take(block.scores, block.flat_index(labels[block.rows]))
            block_shift = _finite_shift(block.max())
            exps = np.subtract(block.scores, block_shift, out=block.result)
            np.exp(exps, out=exps)
            shift[block.rows] = block_shift.ravel()
            np.log(block.sum(exps).ravel(), out=log_sum[block.rows])
    return shift, log_sum, picked


def _log_softmax(x: FloatArray) -> FloatArray:
    """Log-softmax of each row of the 2-D ``x``: ``(x - shift) - log_sum``, block by block."""
    out = np.empty(x.shape, x.dtype)  # C-contiguous, as blocks() needs
    with _quiet():
        for block in blocks(x, out):
            shifted = np.subtract(block.scores, _finite_shift(block.max()), out=block.result)
            shifted -= np.log(block.sum(np.exp(shifted, out=block.spare)))
    return out


def _scaled_softmax(
    x: FloatArray, total: float, labels: Labels | None = None, label_weight: float = 0.0
) -> FloatArray:
    """``total * softmax`` of each row of the 2-D ``x``: rows normalised to sum to ``total``.

    With ``labels`` (shape (N,)), ``label_weight`` is then subtracted at ``[n, labels[n]]``,
    while each block is in cache.
    """
    out = np.empty(x.shape, x.dtype)  # C-contiguous, as blocks() needs
    with _quiet():
        for block in blocks(x, out):
            # A +inf or only -inf in a row makes inf - inf: that row is nan, as documented.
            exps = np.subtract(block.scores, block.max(), out=block.result)
            np.exp(exps, out=exps)
            exps /= block.sum(exps) / total
            if labels is not None:
                exps.reshape(-1)[block.flat_index(labels[block.rows])] -= label_weight
    return out


def _as_batch_scores(x: ArrayLike, name: str) -> FloatArray:
    """Scores (logits or log-probabilities) of shape ``(N, C)``, class axis last."""
    arr = as_float(x, name)
    if arr.ndim == 2:
        return arr
    if arr.ndim == 1:
        hint = f"for a single sample pass {name}[None, :] (and its label as [label])"
    elif arr.ndim > 2:
        hint = (
            "torch accepts (N, C, d1, ...) with the class axis second, lossutils does not: "
            f"move the class axis last and flatten, np.moveaxis({name}, 1, -1).reshape(-1, C)"
        )
    else:
        hint = "pass one row of C class scores per sample"
    raise ValueError(
        f"{name} must have shape (N, C) with the class axis last, got shape {arr.shape}; {hint}."
    )


def _check_label_smoothing(label_smoothing: object) -> float:
    if (
        isinstance(label_smoothing, bool)
        or not isinstance(label_smoothing, numbers.Real)
        or not 0.0 <= float(label_smoothing) <= 1.0
    ):
        raise ValueError(
            f"label_smoothing must be a number in [0, 1], got {label_smoothing!r}; "
            "0 disables smoothing and 0.1 is a common choice."
        )
    return float(label_smoothing)


def _cross_entropy_inputs(
    logits: ArrayLike, target: ArrayLike, reduction: str, label_smoothing: object
) -> tuple[FloatArray, Labels | None, FloatArray | None, float]:
    """Validate the arguments of cross_entropy(_grad).

    Returns ``(logits, labels, probs, eps)`` where exactly one of ``labels`` (int, ``(N,)``)
    and ``probs`` (float, ``(N, C)``, rows summing to 1) is not None.
    """
    check_reduction(reduction)
    eps = _check_label_smoothing(label_smoothing)
    logits = _as_batch_scores(logits, "logits")
    n, c = logits.shape
    arr = np.asarray(target)
    if arr.ndim != 2:
        return logits, as_labels(arr, c, "target", batch=n), None, eps
    if arr.shape != logits.shape:
        hint = ""
        if arr.shape == (n, 1):
            hint = " A column of class labels? Pass target.ravel()."
        raise ValueError(
            f"target has shape {arr.shape} but logits has shape {logits.shape}; pass class "
            f"labels of shape ({n},) or class probabilities of shape {logits.shape}.{hint}"
        )
    probs = as_target(arr, logits)
    check_probs(probs, "target", normalised=True)
    dtype = float_dtype(logits, probs)
    return logits.astype(dtype, copy=False), None, probs.astype(dtype, copy=False), eps


def _smoothed(probs: FloatArray, eps: float) -> FloatArray:
    """``(1 - eps) * probs + eps / C``; ``probs`` itself when ``eps == 0``."""
    if eps == 0.0:
        return probs
    out = probs * (1.0 - eps)
    out += eps / probs.shape[-1]
    return out


def _nll_inputs(
    log_probs: ArrayLike, target: ArrayLike, reduction: str
) -> tuple[FloatArray, Labels]:
    check_reduction(reduction)
    log_probs = _as_batch_scores(log_probs, "log_probs")
    labels = as_labels(target, log_probs.shape[1], "target", batch=log_probs.shape[0])
    if (log_probs > 0).any():
        bad = log_probs[log_probs > 0]
        raise ValueError(
            f"log_probs must be log-probabilities (<= 0), found {bad[:5].tolist()}; pass "
            "np.log(probs) or log_softmax(logits), or call cross_entropy(logits, target) "
            "on raw scores."
        )
    return log_probs, labels


def _bce_inputs(
    prediction: ArrayLike, target: ArrayLike, name: str, reduction: str
) -> tuple[FloatArray, FloatArray]:
    check_reduction(reduction)
    prediction = as_float(prediction, name)
    target = as_target(target, prediction)
    check_same_shape(prediction, target, name, "target")
    check_probs(target, "target")
    dtype = float_dtype(prediction, target)
    return prediction.astype(dtype, copy=False), target.astype(dtype, copy=False)


# ---------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------


def one_hot(labels: ArrayLike, num_classes: int, *, dtype: DTypeLike = np.float64) -> NDArray[Any]:
    r"""Encode integer class labels as one-hot rows.

    .. math:: Y_{n c} = [\,y_n = c\,], \qquad c = 0, \dots, C - 1.

    Parameters
    ----------
    labels : array_like of int, shape (N,) or any shape
        Class indices in ``[0, num_classes)``. Floats holding whole numbers are accepted.
    num_classes : int
        Number of classes ``C`` (at least 1); unlike torch it is never inferred from the data,
        since a batch need not contain the largest class.
    dtype : dtype, default float64
        Dtype of the result.

    Returns
    -------
    ndarray, shape ``labels.shape + (C,)``
        Zeros everywhere except a one at each label's class.

    Raises
    ------
    ValueError
        If ``num_classes`` is not a positive integer, or a label is not an integer in
        ``[0, num_classes)``.

    See Also
    --------
    cross_entropy : accepts the labels directly; no need to one-hot encode them.

    Examples
    --------
    >>> one_hot([2, 0], 3)
    array([[0., 0., 1.],
           [1., 0., 0.]])
    """
    try:
        c = operator.index(num_classes)
    except TypeError:
        c = None
    if c is None or isinstance(num_classes, bool) or c < 1:
        raise ValueError(
            f"num_classes must be a positive integer, got {num_classes!r}; pass the number "
            "of classes C, e.g. logits.shape[-1]."
        )
    labels = as_labels(labels, c, "labels")
    out = np.zeros((*labels.shape, c), dtype=dtype)
    np.put_along_axis(out, labels[..., None], 1, axis=-1)
    return out


def logsumexp(x: ArrayLike, *, axis: Axis = -1, keepdims: bool = False) -> Loss:
    r"""Log of the sum of exponentials, computed without overflow.

    .. math::

        \operatorname{LSE}(x) = \log \sum_i e^{x_i}
                              = m + \log \sum_i e^{x_i - m}, \qquad m = \max_i x_i.

    After the shift every exponent is at most 0, so nothing overflows, and the largest term is
    exactly 1, so the sum cannot underflow to 0 either.

    Parameters
    ----------
    x : array_like
        Input values; float32 stays float32, everything else becomes float64.
    axis : int, tuple of int or None, default -1
        Axis or axes to reduce (None: all of them).
    keepdims : bool, default False
        Keep the reduced axes with length 1, ready to broadcast against ``x``.

    Returns
    -------
    ndarray or numpy scalar
        ``x``'s shape without ``axis`` (with length-1 axes if ``keepdims``).

    Notes
    -----
    Non-finite maxima are handled explicitly, as in ``scipy.special.logsumexp``: a slice
    containing ``+inf`` gives ``+inf``, a slice of only ``-inf`` (or an empty slice) gives
    ``-inf``, and ``nan`` propagates. No warning is emitted in any of these cases.

    References
    ----------
    .. [1] Goodfellow, Bengio and Courville, *Deep Learning*, MIT Press, 2016, section 4.1.

    Examples
    --------
    >>> print(logsumexp([1000.0, 1000.0]))  # 1000 + log 2; np.log(np.exp(x).sum()) gives inf
    1000.6931471805599
    >>> logsumexp([[0.0, 0.0], [-np.inf, -np.inf]])
    array([0.69314718,       -inf])
    """
    rows, axes, shape = _as_rows(as_float(x, "x"), axis)
    shift, out, _ = _shift_and_log_sum(rows)
    out += shift
    kept = shape[: len(shape) - len(axes)]
    if keepdims:
        return _from_rows(out, axes, (*kept, *(1,) * len(axes)))
    return out.reshape(kept)[()]


def softmax(logits: ArrayLike, *, axis: Axis = -1) -> FloatArray:
    r"""Softmax: turn scores into probabilities along ``axis``.

    .. math::

        \operatorname{softmax}(x)_c = \frac{e^{x_c}}{\sum_k e^{x_k}}
                                    = \frac{e^{x_c - m}}{\sum_k e^{x_k - m}},
        \qquad m = \max_k x_k.

    Subtracting the maximum changes nothing mathematically (softmax is invariant to adding a
    constant to every score) but keeps every exponent at most 0, so ``exp`` cannot overflow.

    Parameters
    ----------
    logits : array_like
        Unnormalised scores; float32 stays float32, everything else becomes float64.
    axis : int, tuple of int or None, default -1
        The class axis (the last one, by the library's convention).

    Returns
    -------
    ndarray, same shape as ``logits``
        Values in [0, 1] summing to 1 along ``axis``.

    Notes
    -----
    Scores of ``-inf`` get probability 0. A slice containing ``+inf``, or holding only
    ``-inf``, has no well-defined softmax and gives ``nan`` (as scipy and torch), silently.

    References
    ----------
    .. [1] Goodfellow, Bengio and Courville, *Deep Learning*, MIT Press, 2016, sections 4.1
       and 6.2.2.3.
    .. [2] A. Maier et al., *Deep Learning* lecture, FAU, "Loss and Optimization, Part 1".

    Examples
    --------
    The textbook formula overflows as soon as a score exceeds about 709 (float64):

    >>> x = np.array([1000.0, 1000.0])
    >>> with np.errstate(over="ignore", invalid="ignore"):
    ...     np.exp(x) / np.exp(x).sum()
    array([nan, nan])
    >>> softmax(x)
    array([0.5, 0.5])
    >>> softmax([[1.0, 2.0, 3.0]])
    array([[0.09003057, 0.24472847, 0.66524096]])
    """
    rows, axes, shape = _as_rows(as_float(logits, "logits"), axis)
    return _from_rows(_scaled_softmax(rows, 1.0), axes, shape)


def log_softmax(logits: ArrayLike, *, axis: Axis = -1) -> FloatArray:
    r"""Logarithm of the softmax, computed as ``x - logsumexp(x)``.

    .. math::

        \log \operatorname{softmax}(x)_c = x_c - \log \sum_k e^{x_k}
                                         = (x_c - m) - \log \sum_k e^{x_k - m},
        \qquad m = \max_k x_k.

    Never computed as ``log(softmax(x))``: a probability that underflows to 0 would give
    ``-inf`` where the exact answer (e.g. -2000) is perfectly representable. Subtracting the
    small shifted log-sum rather than the full log-sum-exp also keeps log-probabilities close
    to 0 accurate to full relative precision.

    Parameters
    ----------
    logits : array_like
        Unnormalised scores; float32 stays float32, everything else becomes float64.
    axis : int, tuple of int or None, default -1
        The class axis.

    Returns
    -------
    ndarray, same shape as ``logits``
        Log-probabilities (at most 0) whose exponentials sum to 1 along ``axis``.

    Notes
    -----
    As for :func:`softmax`, a slice containing ``+inf`` or holding only ``-inf`` gives ``nan``
    (with ``-inf`` for the finite entries of a slice containing ``+inf``), as scipy does.

    References
    ----------
    .. [1] Goodfellow, Bengio and Courville, *Deep Learning*, MIT Press, 2016, section 6.2.2.3.

    Examples
    --------
    >>> log_softmax([0.0, 2000.0])  # np.log(softmax(...)) would give -inf
    array([-2000.,     0.])
    """
    rows, axes, shape = _as_rows(as_float(logits, "logits"), axis)
    return _from_rows(_log_softmax(rows), axes, shape)


def sigmoid(x: ArrayLike) -> FloatArray:
    r"""Logistic sigmoid, stable for scores of any size.

    .. math::

        \sigma(x) = \frac{1}{1 + e^{-x}} =
        \begin{cases} 1 / (1 + e^{-|x|}) & x \ge 0 \\
                      e^{-|x|} / (1 + e^{-|x|}) & x < 0 \end{cases}

    Branching on the sign keeps the exponent ``-|x|`` at most 0: no overflow for ``x = -1e4``,
    and the tiny values of :math:`\sigma(x)` for very negative ``x`` keep full relative
    precision instead of being computed as ``1 - (1 - tiny)``.

    Parameters
    ----------
    x : array_like
        Scores; float32 stays float32, everything else becomes float64.

    Returns
    -------
    ndarray or numpy scalar, same shape as ``x``
        Values in [0, 1].

    References
    ----------
    .. [1] Goodfellow, Bengio and Courville, *Deep Learning*, MIT Press, 2016, section 6.2.2.2.

    Examples
    --------
    >>> sigmoid([-1e4, 0.0, 1e4])
    array([0. , 0.5, 1. ])
    """
    x = as_float(x, "x")
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


def log_sigmoid(x: ArrayLike) -> FloatArray:
    r"""Logarithm of the logistic sigmoid, :math:`\log \sigma(x) = -\log(1 + e^{-x})`.

    Computed as ``-np.logaddexp(0, -x)``, which never overflows and keeps full precision both
    for large positive ``x`` (result :math:`\approx -e^{-x}`) and large negative ``x`` (result
    :math:`\approx x`).

    Parameters
    ----------
    x : array_like
        Scores; float32 stays float32, everything else becomes float64.

    Returns
    -------
    ndarray or numpy scalar, same shape as ``x``
        Values at most 0.

    Examples
    --------
    >>> log_sigmoid([-1e4, 0.0, 1e4])
    array([-1.00000000e+04, -6.93147181e-01, -0.00000000e+00])
    """
    x = as_float(x, "x")
    return -np.logaddexp(0.0, -x)


# ---------------------------------------------------------------------------------------------
# Categorical losses
# ---------------------------------------------------------------------------------------------


def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
) -> Loss:
    r"""Cross-entropy between ``softmax(logits)`` and class labels or class probabilities.

    The negative log-likelihood of a categorical distribution parameterised by a softmax. Per
    sample :math:`n`, with smoothed target :math:`q_n = (1 - \varepsilon) y_n + \varepsilon / C`
    (:math:`y_n` one-hot for integer labels),

    .. math::

        \ell_n = -\sum_{c} q_{nc} \log \operatorname{softmax}(x_n)_c
               = \operatorname{LSE}(x_n) - (1 - \varepsilon)\, x_{n y_n}
                 - \frac{\varepsilon}{C} \sum_c x_{nc} \quad \text{(integer labels)}.

    ``reduction="mean"`` returns :math:`\frac1N \sum_n \ell_n`, ``"sum"`` returns
    :math:`\sum_n \ell_n` and ``"none"`` the vector :math:`(\ell_n)_n`.

    Parameters
    ----------
    logits : array_like, shape (N, C)
        Unnormalised class scores, class axis last.
    target : array_like, shape (N,) or (N, C)
        Either integer class labels in ``[0, C)`` (shape ``(N,)``) or class probabilities
        (shape ``(N, C)``, entries in [0, 1], rows summing to 1; one-hot rows are fine).
    reduction : {"mean", "sum", "none"}, default "mean"
        Batch reduction.
    label_smoothing : float in [0, 1], default 0.0
        Mix the target with the uniform distribution: :math:`(1 - \varepsilon) y +
        \varepsilon / C`, as torch does (for both target forms).

    Returns
    -------
    numpy scalar, or ndarray of shape (N,) for ``reduction="none"``
        In the dtype of ``logits`` (float64 if a float64 probability target is given).

    Raises
    ------
    ValueError
        If ``logits`` is not 2-D, ``target`` has neither shape, labels are not integers in
        ``[0, C)``, probabilities are outside [0, 1] or rows do not sum to 1, or
        ``reduction`` / ``label_smoothing`` are invalid.

    See Also
    --------
    cross_entropy_grad, nll_loss, log_softmax

    Notes
    -----
    Matches ``torch.nn.functional.cross_entropy(logits, target, reduction=...,
    label_smoothing=...)``, except that torch also accepts ``(N, C, d1, ...)`` inputs with the
    class axis second, an unbatched ``(C,)`` input, ``weight`` and ``ignore_index``; here the
    input must be ``(N, C)``: move the class axis last and flatten. The log-sum-exp is
    computed once per row and the target scores are gathered, never forming
    ``log(softmax(x))``.

    References
    ----------
    .. [1] Goodfellow, Bengio and Courville, *Deep Learning*, MIT Press, 2016, sections 6.2.1.1
       and 6.2.2.3.
    .. [2] A. Maier et al., *Deep Learning* lecture, FAU, "Loss and Optimization, Part 1".
    .. [3] C. Szegedy et al., "Rethinking the Inception Architecture for Computer Vision",
       CVPR 2016 (label smoothing).

    Examples
    --------
    >>> logits = np.array([[2.0, 0.0], [0.0, 2.0]])
    >>> print(cross_entropy(logits, [0, 0]))  # (log(1 + e^-2) + log(1 + e^2)) / 2
    1.1269280110429727
    >>> print(cross_entropy(logits, [[1.0, 0.0], [1.0, 0.0]]))  # same, as probabilities
    1.1269280110429727
    """
    logits, labels, probs, eps = _cross_entropy_inputs(logits, target, reduction, label_smoothing)
    if probs is not None:
        q = _smoothed(probs, eps)
        log_p = _log_softmax(logits)
        # 0 log 0 = 0: a class without target mass adds nothing, even if its logit is -inf.
        terms = np.multiply(q, log_p, out=np.zeros_like(log_p), where=q > 0)
        return reduce(-terms.sum(axis=-1), reduction)
    shift, loss, target_logit = _shift_and_log_sum(logits, labels)
    # lse - (1 - eps) x_y - eps mean(x), written around the shift (see _shift_and_log_sum).
    # Each term is skipped when its weight is 0, where 0 * (-inf logit) would make a nan.
    with _quiet():  # rows with +inf or only -inf logits: nan
        if eps < 1.0:
            loss += (1.0 - eps) * (shift - target_logit)
        if eps > 0.0:
            loss += eps * (shift - logits.mean(axis=-1))
    return reduce(loss, reduction)


def cross_entropy_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
) -> FloatArray:
    r"""Gradient of :func:`cross_entropy` with respect to ``logits``.

    .. math::

        \frac{\partial \ell_n}{\partial x_{nc}} = \operatorname{softmax}(x_n)_c - q_{nc},
        \qquad q_n = (1 - \varepsilon) y_n + \varepsilon / C,

    divided by :math:`N` for ``reduction="mean"``; for ``"sum"`` and ``"none"`` it is the
    gradient of :math:`\sum_n \ell_n`.

    Parameters
    ----------
    logits, target, reduction, label_smoothing
        As for :func:`cross_entropy`.

    Returns
    -------
    ndarray, shape (N, C)
        Same dtype as :func:`cross_entropy`'s result.

    Raises
    ------
    ValueError
        As :func:`cross_entropy`, and for ``reduction="mean"`` on an empty batch.

    Notes
    -----
    The formula uses that every target row sums to 1 (which is validated); in general the
    gradient is :math:`\operatorname{softmax}(x_n) \sum_c q_{nc} - q_n`.

    References
    ----------
    .. [1] Goodfellow, Bengio and Courville, *Deep Learning*, MIT Press, 2016, section 6.2.2.3.

    Examples
    --------
    >>> cross_entropy_grad([[0.0, 0.0], [0.0, 0.0]], [0, 1])
    array([[-0.25,  0.25],
           [ 0.25, -0.25]])
    """
    logits, labels, probs, eps = _cross_entropy_inputs(logits, target, reduction, label_smoothing)
    n, c = logits.shape
    scale = grad_scale(n, reduction)
    # (softmax - q) * scale with the scale folded into the normalisation: one pass fewer.
    if probs is not None:
        grad = _scaled_softmax(logits, scale)  # our own array: updated in place from here on
        q = _smoothed(probs, eps)
        grad -= q if scale == 1.0 else scale * q
        return grad
    grad = _scaled_softmax(logits, scale, labels, scale * (1.0 - eps))
    if eps:
        grad -= scale * eps / c
    return grad


def nll_loss(log_probs: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean") -> Loss:
    r"""Negative log-likelihood of integer class labels under given log-probabilities.

    .. math:: \ell_n = -\log p_{n y_n},

    reduced as in :func:`cross_entropy`; ``nll_loss(log_softmax(x), y)`` equals
    ``cross_entropy(x, y)``.

    Parameters
    ----------
    log_probs : array_like, shape (N, C)
        Log-probabilities (every entry at most 0), class axis last.
    target : array_like of int, shape (N,)
        Class labels in ``[0, C)``. One-hot or probability targets are refused: use
        :func:`cross_entropy` or pass ``target.argmax(-1)``.
    reduction : {"mean", "sum", "none"}, default "mean"
        Batch reduction.

    Returns
    -------
    numpy scalar, or ndarray of shape (N,) for ``reduction="none"``

    Raises
    ------
    ValueError
        If ``log_probs`` is not 2-D or has positive entries (probabilities or logits passed
        by mistake), or labels are not integers of shape (N,) in ``[0, C)``.

    Notes
    -----
    ``torch.nn.functional.nll_loss`` computes the same for ``(N, C)`` input but accepts any
    values; here positive entries are an error, since they cannot be log-probabilities.

    Examples
    --------
    >>> print(nll_loss(np.log([[0.25, 0.75], [0.5, 0.5]]), [1, 0], reduction="sum"))
    0.9808292530117262
    """
    log_probs, labels = _nll_inputs(log_probs, target, reduction)
    loss = -log_probs[np.arange(log_probs.shape[0]), labels]
    return reduce(loss, reduction)


def nll_loss_grad(
    log_probs: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean"
) -> FloatArray:
    r"""Gradient of :func:`nll_loss` with respect to ``log_probs``.

    .. math:: \frac{\partial \ell_n}{\partial \log p_{nc}} = -[\,c = y_n\,],

    divided by :math:`N` for ``reduction="mean"``.

    Parameters
    ----------
    log_probs, target, reduction
        As for :func:`nll_loss`.

    Returns
    -------
    ndarray, shape (N, C)

    Raises
    ------
    ValueError
        As :func:`nll_loss`, and for ``reduction="mean"`` on an empty batch.

    Examples
    --------
    >>> nll_loss_grad(np.log([[0.25, 0.75], [0.5, 0.5]]), [1, 0])
    array([[ 0. , -0.5],
           [-0.5,  0. ]])
    """
    log_probs, labels = _nll_inputs(log_probs, target, reduction)
    n = log_probs.shape[0]
    grad = np.zeros_like(log_probs)
    grad[np.arange(n), labels] = -grad_scale(n, reduction)
    return grad


# ---------------------------------------------------------------------------------------------
# Binary losses
# ---------------------------------------------------------------------------------------------


def binary_cross_entropy(
    probs: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean"
) -> Loss:
    r"""Binary cross-entropy between predicted probabilities and targets in [0, 1].

    .. math:: \ell_i = -\bigl[y_i \log p_i + (1 - y_i) \log(1 - p_i)\bigr],

    elementwise over any shape, with the convention :math:`0 \log 0 = 0` (a term whose target
    weight is 0 contributes 0). ``"mean"`` averages over all elements, as torch.

    Parameters
    ----------
    probs : array_like, any shape
        Predicted probabilities :math:`p_i \in [0, 1]`.
    target : array_like, same shape
        Targets :math:`y_i \in [0, 1]` (labels 0/1 or soft targets).
    reduction : {"mean", "sum", "none"}, default "mean"
        Reduction over all elements.

    Returns
    -------
    numpy scalar, or ndarray of ``probs``' shape for ``reduction="none"``
        ``+inf`` where the target puts mass on a predicted probability of exactly 0 or 1.

    Raises
    ------
    ValueError
        If the shapes differ or any value lies outside [0, 1].

    Notes
    -----
    No hidden clamp: ``torch.nn.functional.binary_cross_entropy`` clamps each log to
    :math:`\ge -100`, so it returns 100 where this function returns ``inf``. If you need finite
    values, compute from scores with :func:`binary_cross_entropy_with_logits`, which is also
    more accurate.

    References
    ----------
    .. [1] Goodfellow, Bengio and Courville, *Deep Learning*, MIT Press, 2016, section 6.2.2.2.

    Examples
    --------
    >>> print(binary_cross_entropy([0.8, 0.0], [1.0, 0.0]))  # (-log 0.8 + 0) / 2
    0.11157177565710485
    >>> print(binary_cross_entropy([0.0], [1.0]))
    inf
    """
    p, y = _bce_inputs(probs, target, "probs", reduction)
    check_probs(p, "probs")
    with np.errstate(divide="ignore"):  # log 0 = -inf is the honest answer (see Notes)
        log_p = np.log(p, out=np.zeros_like(p), where=y > 0)
        log_not_p = np.log1p(-p, out=np.zeros_like(p), where=y < 1)
    # -(y log p + (1 - y) log(1 - p)), accumulated in the two arrays allocated above
    log_p *= y
    log_not_p *= 1.0 - y
    loss = np.add(log_p, log_not_p, out=log_p)
    np.negative(loss, out=loss)
    return reduce(loss, reduction)


def binary_cross_entropy_grad(
    probs: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean"
) -> FloatArray:
    r"""Gradient of :func:`binary_cross_entropy` with respect to ``probs``.

    .. math:: \frac{\partial \ell_i}{\partial p_i} = -\frac{y_i}{p_i} + \frac{1 - y_i}{1 - p_i}
              = \frac{p_i - y_i}{p_i (1 - p_i)},

    divided by the number of elements for ``reduction="mean"``. A term whose target weight is
    0 contributes 0; a term with weight on :math:`p_i \in \{0, 1\}` gives :math:`\mp\infty`.

    Parameters
    ----------
    probs, target, reduction
        As for :func:`binary_cross_entropy`.

    Returns
    -------
    ndarray, same shape as ``probs``

    Raises
    ------
    ValueError
        As :func:`binary_cross_entropy`, and for ``reduction="mean"`` of no elements.

    Notes
    -----
    torch divides by :math:`\max(p (1 - p), 10^{-12})` instead, keeping the gradient finite.

    Examples
    --------
    >>> binary_cross_entropy_grad([0.5, 0.25], [1.0, 0.0], reduction="sum")
    array([-2.        ,  1.33333333])
    """
    p, y = _bce_inputs(probs, target, "probs", reduction)
    check_probs(p, "probs")
    scale = grad_scale(p.size, reduction)
    with np.errstate(divide="ignore"):  # y / 0 = inf where the target has mass on p = 0
        grad: FloatArray = np.divide(1.0 - y, 1.0 - p, out=np.zeros_like(p), where=y < 1)
        grad -= np.divide(y, p, out=np.zeros_like(p), where=y > 0)
    if scale != 1.0:
        grad *= scale
    return grad


def binary_cross_entropy_with_logits(
    logits: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean"
) -> Loss:
    r"""Binary cross-entropy of ``sigmoid(logits)`` against targets in [0, 1], from logits.

    .. math::

        \ell_i = -\bigl[y_i \log \sigma(x_i) + (1 - y_i) \log(1 - \sigma(x_i))\bigr]
               = \max(x_i, 0) - x_i y_i + \log\bigl(1 + e^{-|x_i|}\bigr).

    The right-hand form never overflows (the exponent is at most 0) and keeps full precision
    for confident correct predictions, where the loss is about :math:`e^{-|x|}`.

    Parameters
    ----------
    logits : array_like, any shape
        Scores :math:`x_i`.
    target : array_like, same shape
        Targets :math:`y_i \in [0, 1]`.
    reduction : {"mean", "sum", "none"}, default "mean"
        Reduction over all elements (as torch).

    Returns
    -------
    numpy scalar, or ndarray of ``logits``' shape for ``reduction="none"``

    Raises
    ------
    ValueError
        If the shapes differ or a target lies outside [0, 1].

    Notes
    -----
    Matches ``torch.nn.functional.binary_cross_entropy_with_logits`` without ``weight`` and
    ``pos_weight``; unlike torch, targets are never broadcast.

    References
    ----------
    .. [1] Goodfellow, Bengio and Courville, *Deep Learning*, MIT Press, 2016, section 6.2.2.2.

    Examples
    --------
    >>> print(binary_cross_entropy_with_logits([0.0, 1e4], [1.0, 1.0]))  # (log 2 + 0) / 2
    0.34657359027997264
    """
    x, y = _bce_inputs(logits, target, "logits", reduction)
    loss = np.maximum(x, 0.0)
    # max(x, 0) - x y first: it cancels exactly for y in {0, 1}, so the small log1p term of a
    # confident correct prediction survives instead of being rounded away by a large x.
    loss -= x * y
    loss += np.log1p(np.exp(-np.abs(x)))
    return reduce(loss, reduction)


def binary_cross_entropy_with_logits_grad(
    logits: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean"
) -> FloatArray:
    r"""Gradient of :func:`binary_cross_entropy_with_logits` with respect to ``logits``.

    .. math:: \frac{\partial \ell_i}{\partial x_i} = \sigma(x_i) - y_i,

    divided by the number of elements for ``reduction="mean"``.

    Parameters
    ----------
    logits, target, reduction
        As for :func:`binary_cross_entropy_with_logits`.

    Returns
    -------
    ndarray, same shape as ``logits``

    Raises
    ------
    ValueError
        As :func:`binary_cross_entropy_with_logits`, and for ``reduction="mean"`` of no
        elements.

    Examples
    --------
    >>> binary_cross_entropy_with_logits_grad([0.0, 0.0], [1.0, 0.0])
    array([-0.25,  0.25])
    """
    x, y = _bce_inputs(logits, target, "logits", reduction)
    scale = grad_scale(x.size, reduction)
    grad = np.asarray(sigmoid(x))  # 0-d input gives a numpy scalar; the in-place ops need an array
    grad -= y
    if scale != 1.0:
        grad *= scale
    return grad
