"""Margin losses: 0-1, perceptron, hinge, squared hinge and multi-class hinge.

Binary losses take real-valued ``scores`` s (the signed distance to the decision boundary,
e.g. ``w @ x + b``) and ``target`` labels y in {-1, +1} of the same shape; their per-sample
value depends only on the functional margin ``y * s``. The multi-class hinge takes scores of
shape ``(N, C)`` and integer labels of shape ``(N,)``.

Every loss ``f`` has ``f_grad`` with the same signature returning d f / d scores under the
same reduction (with ``reduction="none"``: the derivative of each sample's loss, which depends
on that sample's scores only). These losses have kinks; where the derivative does not exist
the ``*_grad`` functions return one documented element of the subdifferential.

The result has the floating dtype of ``scores`` (float32 stays float32): the labels are exact
in any dtype, so they do not promote the result.
"""

from __future__ import annotations

import numbers
import typing
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ._blocks import Block, blocks
from ._validation import (
    ArrayLike,
    FloatArray,
    Loss,
    Reduction,
    as_float,
    as_labels,
    check_hinge_target,
    check_same_shape,
    grad_scale,
    reduce,
)

__all__ = [
    "hinge_loss",
    "hinge_loss_grad",
    "multiclass_hinge_loss",
    "multiclass_hinge_loss_grad",
    "perceptron_loss",
    "perceptron_loss_grad",
    "squared_hinge_loss",
    "squared_hinge_loss_grad",
    "zero_one_loss",
    "zero_one_loss_grad",
]

Kind = Literal["weston_watkins", "crammer_singer"]
_KINDS: tuple[str, ...] = typing.get_args(Kind)


def _binary(scores: ArrayLike, target: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Validated ``(s, y)`` as arrays of the dtype of ``scores``."""
    s = as_float(scores, "scores")
    y = as_float(target, "target")
    check_same_shape(s, y, "scores", "target")
    check_hinge_target(y)
    return s, y.astype(s.dtype, copy=False)


def _margin(margin: object, dtype: np.dtype[Any]) -> np.floating[Any]:
    if (
        isinstance(margin, bool)
        or not isinstance(margin, numbers.Real)
        or not (np.isfinite(float(margin)) and float(margin) > 0)
    ):
        raise ValueError(f"margin must be a positive finite number, got {margin!r}.")
    # A numpy float64 margin would otherwise promote float32 scores to float64.
    value: np.floating[Any] = dtype.type(margin)
    return value


def zero_one_loss(scores: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean") -> Loss:
    r"""Zero-one (misclassification) loss: 1 where the sign of the score is wrong.

    .. math::

        \ell(s, y) = \mathbb{1}[\,y\,s \le 0\,], \qquad y \in \{-1, +1\}

    Parameters
    ----------
    scores : array_like, shape (N,) or any shape
        Real-valued decision scores; the predicted class is ``sign(scores)``.
    target : array_like, same shape as ``scores``
        Labels, exactly -1 or +1.
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"``: the error rate; ``"sum"``: the number of errors; ``"none"``: per sample.

    Returns
    -------
    numpy scalar, or ndarray of the shape of ``scores`` if ``reduction="none"``
        In the floating dtype of ``scores``.

    Raises
    ------
    ValueError
        If the shapes differ, a label is not -1/+1, or ``reduction`` is unknown.

    Notes
    -----
    Tie convention: a score of exactly 0 lies on the decision boundary and counts as an
    **error** for either label (the error is ``y s <= 0``, not ``y s < 0``), so the all-zero
    classifier scores an error rate of 1, not 0. With this convention the hinge loss (margin
    >= 1) and the logistic loss in bits are upper bounds of the 0-1 loss everywhere.

    The 0-1 loss is what we want to minimise but cannot train on: it is piecewise constant,
    so its derivative is 0 wherever it exists (see :func:`zero_one_loss_grad`).

    References
    ----------
    .. [1] C. M. Bishop, *Pattern Recognition and Machine Learning*, Springer, 2006, Sec. 7.1.2.

    Examples
    --------
    >>> zero_one_loss([2.0, -0.5, 0.0], [1, 1, -1], reduction="none")
    array([0., 1., 1.])
    >>> float(zero_one_loss([2.0, -0.5, 0.0, -3.0], [1, 1, -1, -1]))
    0.5
    """
    s, y = _binary(scores, target)
    return reduce((y * s <= 0).astype(s.dtype), reduction)


def zero_one_loss_grad(
    scores: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean"
) -> FloatArray:
    r"""Derivative of :func:`zero_one_loss`: zero everywhere.

    .. math::

        \frac{\partial \ell}{\partial s} = 0 \quad (y\,s \ne 0)

    Parameters
    ----------
    scores, target, reduction
        As for :func:`zero_one_loss`.

    Returns
    -------
    ndarray, shape of ``scores``
        Zeros in the floating dtype of ``scores``.

    Raises
    ------
    ValueError
        As for :func:`zero_one_loss`.

    Notes
    -----
    The 0-1 loss is a step function of the score: its derivative is 0 wherever it exists,
    and at ``s = 0`` it jumps, so no derivative (and, the loss not being convex, no
    subgradient) exists there; 0 is returned. A gradient that is always 0 carries no
    information about which way to move, which is why ``sign()`` inside a loss cannot be
    trained by gradient descent and why convex surrogates (perceptron, hinge, logistic) exist.

    Examples
    --------
    >>> zero_one_loss_grad([2.0, -0.5], [1, 1])
    array([0., 0.])
    """
    s, _ = _binary(scores, target)
    grad_scale(s.size, reduction)  # the same argument checks as every other gradient
    return np.zeros_like(s)


def perceptron_loss(scores: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean") -> Loss:
    r"""Perceptron criterion: the negative margin of misclassified samples.

    .. math::

        \ell(s, y) = \max(0, -y\,s), \qquad y \in \{-1, +1\}

    Parameters
    ----------
    scores : array_like, shape (N,) or any shape
        Real-valued decision scores.
    target : array_like, same shape as ``scores``
        Labels, exactly -1 or +1.
    reduction : {"mean", "sum", "none"}, default "mean"
        Batch reduction of the per-sample losses.

    Returns
    -------
    numpy scalar, or ndarray of the shape of ``scores`` if ``reduction="none"``
        In the floating dtype of ``scores``.

    Raises
    ------
    ValueError
        If the shapes differ, a label is not -1/+1, or ``reduction`` is unknown.

    Notes
    -----
    With linear scores ``s_m = w^T x_m`` and ``reduction="sum"`` this is Rosenblatt's
    criterion :math:`-\sum_{m \in \mathcal{M}} y_m w^T x_m` over the misclassified set
    :math:`\mathcal{M}`. It is the hinge loss with margin 0; it is convex but ``w = 0`` is a
    trivial minimiser, which the hinge's margin of 1 rules out.

    References
    ----------
    .. [1] C. M. Bishop, *Pattern Recognition and Machine Learning*, Springer, 2006, Sec. 4.1.7.

    Examples
    --------
    >>> perceptron_loss([2.0, -0.5, 0.0], [1, 1, -1], reduction="none")
    array([0. , 0.5, 0. ])
    """
    s, y = _binary(scores, target)
    return reduce(np.maximum(-y * s, 0), reduction)


def perceptron_loss_grad(
    scores: ArrayLike, target: ArrayLike, *, reduction: Reduction = "mean"
) -> FloatArray:
    r"""Subgradient of :func:`perceptron_loss` with respect to ``scores``.

    .. math::

        g = \begin{cases} -y & y\,s \le 0 \\ 0 & y\,s > 0 \end{cases}
        \quad\text{(times } 1/N \text{ for the mean)}

    Parameters
    ----------
    scores, target, reduction
        As for :func:`perceptron_loss`.

    Returns
    -------
    ndarray, shape of ``scores``
        In the floating dtype of ``scores``.

    Raises
    ------
    ValueError
        As for :func:`perceptron_loss`.

    Notes
    -----
    At the kink ``y s = 0`` the subdifferential is the segment between ``0`` and ``-y``; this
    function returns ``-y``, the end that counts the tie as a mistake, matching
    :func:`zero_one_loss` and Rosenblatt's update (update whenever ``y w^T x <= 0``). With
    the other end a perceptron started at ``w = 0`` would never move.

    Examples
    --------
    >>> perceptron_loss_grad([2.0, -0.5, 0.0], [1, 1, -1], reduction="sum")
    array([ 0., -1.,  1.])
    """
    s, y = _binary(scores, target)
    scale = grad_scale(s.size, reduction)
    return np.where(y * s <= 0, -y, 0).astype(s.dtype, copy=False) * s.dtype.type(scale)


def hinge_loss(
    scores: ArrayLike, target: ArrayLike, *, margin: float = 1.0, reduction: Reduction = "mean"
) -> Loss:
    r"""Hinge loss, the loss of the soft-margin support vector machine.

    .. math::

        \ell(s, y) = \max(0,\ \text{margin} - y\,s), \qquad y \in \{-1, +1\}

    Parameters
    ----------
    scores : array_like, shape (N,) or any shape
        Real-valued decision scores.
    target : array_like, same shape as ``scores``
        Labels, exactly -1 or +1.
    margin : float, default 1.0
        Positive; samples with ``y s >= margin`` cost nothing.
    reduction : {"mean", "sum", "none"}, default "mean"
        Batch reduction of the per-sample losses.

    Returns
    -------
    numpy scalar, or ndarray of the shape of ``scores`` if ``reduction="none"``
        In the floating dtype of ``scores``.

    Raises
    ------
    ValueError
        If the shapes differ, a label is not -1/+1, ``margin`` is not a positive finite
        number, or ``reduction`` is unknown.

    Notes
    -----
    The hinge is a convex upper bound of the 0-1 loss (for ``margin >= 1``) with a kink at
    ``y s = margin``. With linear scores, :math:`\tfrac12\|w\|^2 + \gamma \sum_m
    \max(0, 1 - y_m w^T x_m)` is the soft-margin SVM: the hinge value of a sample is its
    optimal slack :math:`\xi_m \ge 0` in the constraint :math:`y_m w^T x_m \ge 1 - \xi_m`.

    Unlike scikit-learn's ``hinge_loss(y_true, pred_decision)`` the prediction comes first
    and labels must already be -1/+1 (map 0/1 labels with ``2 * y - 1``).

    References
    ----------
    .. [1] C. M. Bishop, *Pattern Recognition and Machine Learning*, Springer, 2006, Sec. 7.1.
    .. [2] K. Janocha and W. M. Czarnecki, "On loss functions for deep neural networks in
       classification", *Schedae Informaticae* 25, 2016 (arXiv:1702.05659, 2017).

    Examples
    --------
    >>> hinge_loss([2.0, 0.5, -1.0], [1, 1, 1], reduction="none")
    array([0. , 0.5, 2. ])
    >>> float(hinge_loss([2.0, 0.5, -1.0], [1, 1, 1]))
    0.8333333333333334
    """
    s, y = _binary(scores, target)
    m = _margin(margin, s.dtype)
    return reduce(np.maximum(m - y * s, 0), reduction)


def hinge_loss_grad(
    scores: ArrayLike, target: ArrayLike, *, margin: float = 1.0, reduction: Reduction = "mean"
) -> FloatArray:
    r"""Subgradient of :func:`hinge_loss` with respect to ``scores``.

    .. math::

        g = \begin{cases} -y & y\,s < \text{margin} \\ 0 & y\,s \ge \text{margin} \end{cases}
        \quad\text{(times } 1/N \text{ for the mean)}

    Parameters
    ----------
    scores, target, margin, reduction
        As for :func:`hinge_loss`.

    Returns
    -------
    ndarray, shape of ``scores``
        In the floating dtype of ``scores``.

    Raises
    ------
    ValueError
        As for :func:`hinge_loss`.

    Notes
    -----
    At the kink ``y s == margin`` the subdifferential (with respect to ``s``) is the segment
    between ``-y`` and ``0``; this function returns ``0``: a sample exactly on the margin
    costs nothing and is treated as satisfied. Any point of that segment is a valid
    subgradient, and subgradient descent on a convex objective converges with any choice
    (given a decaying step size).

    Examples
    --------
    >>> hinge_loss_grad([2.0, 1.0, -1.0], [1, 1, -1], reduction="sum")
    array([0., 0., 0.])
    >>> hinge_loss_grad([0.5, -1.0], [1, 1])
    array([-0.5, -0.5])
    """
    s, y = _binary(scores, target)
    m = _margin(margin, s.dtype)
    scale = grad_scale(s.size, reduction)
    return np.where(y * s < m, -y, 0).astype(s.dtype, copy=False) * s.dtype.type(scale)


def squared_hinge_loss(
    scores: ArrayLike, target: ArrayLike, *, margin: float = 1.0, reduction: Reduction = "mean"
) -> Loss:
    r"""Squared hinge loss (the L2-SVM loss).

    .. math::

        \ell(s, y) = \max(0,\ \text{margin} - y\,s)^2, \qquad y \in \{-1, +1\}

    Parameters
    ----------
    scores : array_like, shape (N,) or any shape
        Real-valued decision scores.
    target : array_like, same shape as ``scores``
        Labels, exactly -1 or +1.
    margin : float, default 1.0
        Positive; samples with ``y s >= margin`` cost nothing.
    reduction : {"mean", "sum", "none"}, default "mean"
        Batch reduction of the per-sample losses.

    Returns
    -------
    numpy scalar, or ndarray of the shape of ``scores`` if ``reduction="none"``
        In the floating dtype of ``scores``.

    Raises
    ------
    ValueError
        If the shapes differ, a label is not -1/+1, ``margin`` is not a positive finite
        number, or ``reduction`` is unknown.

    Notes
    -----
    Squaring makes the loss differentiable everywhere (no kink at the margin) and punishes
    badly misclassified samples (outliers) quadratically instead of linearly. Tang (2013)
    trained the last layer of a network with it in place of softmax cross-entropy.

    References
    ----------
    .. [1] Y. Tang, "Deep learning using linear support vector machines", ICML 2013
       Workshop on Challenges in Representation Learning (arXiv:1306.0239).
    .. [2] K. Janocha and W. M. Czarnecki, "On loss functions for deep neural networks in
       classification", *Schedae Informaticae* 25, 2016 (arXiv:1702.05659, 2017).

    Examples
    --------
    >>> squared_hinge_loss([2.0, 0.5, -1.0], [1, 1, 1], reduction="none")
    array([0.  , 0.25, 4.  ])
    """
    s, y = _binary(scores, target)
    m = _margin(margin, s.dtype)
    return reduce(np.square(np.maximum(m - y * s, 0)), reduction)


def squared_hinge_loss_grad(
    scores: ArrayLike, target: ArrayLike, *, margin: float = 1.0, reduction: Reduction = "mean"
) -> FloatArray:
    r"""Gradient of :func:`squared_hinge_loss` with respect to ``scores``.

    .. math::

        \frac{\partial \ell}{\partial s} = -2\,y\,\max(0,\ \text{margin} - y\,s)
        \quad\text{(times } 1/N \text{ for the mean)}

    Parameters
    ----------
    scores, target, margin, reduction
        As for :func:`squared_hinge_loss`.

    Returns
    -------
    ndarray, shape of ``scores``
        In the floating dtype of ``scores``.

    Raises
    ------
    ValueError
        As for :func:`squared_hinge_loss`.

    Notes
    -----
    The squared hinge is continuously differentiable: at ``y s == margin`` both one-sided
    derivatives are 0, so this is a true gradient everywhere.

    Examples
    --------
    >>> squared_hinge_loss_grad([2.0, 0.5, -1.0], [1, 1, 1], reduction="sum")
    array([ 0., -1., -4.])
    """
    s, y = _binary(scores, target)
    m = _margin(margin, s.dtype)
    scale = grad_scale(s.size, reduction)
    violation = m - y * s
    # np.where rather than max(0, .) * -2y, which gives -0.0 for satisfied samples with y = -1.
    return np.where(violation > 0, -2 * y * violation, 0).astype(s.dtype, copy=False) * (
        s.dtype.type(scale)
    )


def _multiclass(
    scores: ArrayLike, target: ArrayLike, margin: object, kind: str
) -> tuple[FloatArray, NDArray[np.integer[Any]], np.floating[Any]]:
    """Validated scores (N, C), labels (N,) and margin (in the dtype of the scores)."""
    s = as_float(scores, "scores")
    if s.ndim != 2:
        raise ValueError(
            f"scores must have shape (N, C) (one row of class scores per sample), got shape "
            f"{s.shape}; for a single sample use scores[None, :]."
        )
    if s.shape[1] < 2:
        raise ValueError(
            f"scores must have at least 2 classes on the last axis, got shape {s.shape}; "
            "for two classes with one score each use hinge_loss with -1/+1 labels."
        )
    if kind not in _KINDS:
        raise ValueError(f"kind must be 'weston_watkins' or 'crammer_singer', got {kind!r}.")
    n = s.shape[0]
    y = as_labels(target, s.shape[1], "target", batch=n)
    return s, y, _margin(margin, s.dtype)


def _block_margins(
    block: Block, labels: NDArray[np.integer[Any]], margin: np.floating[Any], kind: str
) -> tuple[FloatArray, NDArray[np.integer[Any]]]:
    """``s_j - s_y + margin`` for a block of rows (see :mod:`lossutils._blocks`), in place.

    Written into ``block.result``; returns it and the flat index of the true classes, whose
    entries are set to 0 (Weston-Watkins) or -inf (Crammer-Singer): the true class is not a
    competitor, and its own term (always equal to the margin) is excluded.
    """
    true_class = block.flat_index(labels[block.rows])
    true_score = block.per_row(np.take(block.scores, true_class))
    margins = np.subtract(block.scores, true_score, out=block.result)
    margins += margin
    margins.reshape(-1)[true_class] = -np.inf if kind == "crammer_singer" else 0
    return margins, true_class


def multiclass_hinge_loss(
    scores: ArrayLike,
    target: ArrayLike,
    *,
    margin: float = 1.0,
    kind: Kind = "weston_watkins",
    reduction: Reduction = "mean",
) -> Loss:
    r"""Multi-class hinge loss, Weston-Watkins (sum) or Crammer-Singer (max) form.

    .. math::

        \ell_{\mathrm{WW}}(s, y) = \sum_{j \ne y} \max(0,\ s_j - s_y + \text{margin}),
        \qquad
        \ell_{\mathrm{CS}}(s, y) = \max\!\Big(0,\ \max_{j \ne y} s_j - s_y + \text{margin}\Big)

    Parameters
    ----------
    scores : array_like, shape (N, C)
        Class scores, one row per sample, ``C >= 2``.
    target : array_like of int, shape (N,)
        Class labels in ``[0, C)``.
    margin : float, default 1.0
        Positive; how far the true class must score above every other class.
    kind : {"weston_watkins", "crammer_singer"}, default "weston_watkins"
        Sum of the violations over wrong classes, or the largest violation only.
    reduction : {"mean", "sum", "none"}, default "mean"
        Batch reduction of the per-sample losses.

    Returns
    -------
    numpy scalar, or ndarray of shape (N,) if ``reduction="none"``
        In the floating dtype of ``scores``.

    Raises
    ------
    ValueError
        If ``scores`` is not 2-D with at least two columns, ``target`` is not integer labels
        of shape (N,) in ``[0, C)``, ``margin`` is not a positive finite number, or ``kind``
        or ``reduction`` is unknown.

    Notes
    -----
    The sum and the max both skip ``j = y``: the true class against itself would add
    ``margin`` to every sample, even perfectly separated ones. Since each term is
    non-negative, ``crammer_singer <= weston_watkins <= (C - 1) * crammer_singer``; both equal
    the binary hinge of the score difference when ``C = 2``.

    Conventions of other libraries:

    - ``torch.nn.functional.multi_margin_loss(x, y, margin=1)`` (p=1) is Weston-Watkins
      **divided by C**, the number of classes, before the batch mean.
    - scikit-learn's ``sklearn.metrics.hinge_loss`` in the multi-class case is the
      Crammer-Singer form (largest wrong-class score), averaged over samples.

    References
    ----------
    .. [1] J. Weston and C. Watkins, "Support vector machines for multi-class pattern
       recognition", ESANN 1999.
    .. [2] K. Crammer and Y. Singer, "On the algorithmic implementation of multiclass
       kernel-based vector machines", JMLR 2, 2001.
    .. [3] K. Janocha and W. M. Czarnecki, "On loss functions for deep neural networks in
       classification", *Schedae Informaticae* 25, 2016 (arXiv:1702.05659, 2017).

    Examples
    --------
    >>> scores = [[3.0, 1.0, 2.5], [0.0, 2.0, 1.0]]
    >>> multiclass_hinge_loss(scores, [0, 2], reduction="none")
    array([0.5, 2. ])
    >>> multiclass_hinge_loss(scores, [0, 2], kind="crammer_singer", reduction="none")
    array([0.5, 2. ])
    >>> float(multiclass_hinge_loss([[1.0, 1.0, 1.0]], [0]))
    2.0
    """
    s, y, m = _multiclass(scores, target, margin, kind)
    per_sample = np.empty(s.shape[0], s.dtype)
    for block in blocks(s):  # a cache-sized block of rows at a time
        margins, _ = _block_margins(block, y, m, kind)
        if kind == "weston_watkins":
            violations = block.sum(np.maximum(margins, 0, out=margins))
        else:
            violations = np.maximum(block.max(margins), 0)
        per_sample[block.rows] = violations.ravel()
    return reduce(per_sample, reduction)


def multiclass_hinge_loss_grad(
    scores: ArrayLike,
    target: ArrayLike,
    *,
    margin: float = 1.0,
    kind: Kind = "weston_watkins",
    reduction: Reduction = "mean",
) -> FloatArray:
    r"""Subgradient of :func:`multiclass_hinge_loss` with respect to ``scores``.

    Weston-Watkins, for a wrong class :math:`j \ne y` and the true class :math:`y`:

    .. math::

        g_j = \mathbb{1}[s_j - s_y + \text{margin} > 0], \qquad
        g_y = -\sum_{j \ne y} g_j .

    Crammer-Singer, with :math:`k = \arg\max_{j \ne y} s_j`: :math:`g_k = 1, g_y = -1` if the
    loss is positive, else 0. Both are multiplied by 1/N for the mean.

    Parameters
    ----------
    scores, target, margin, kind, reduction
        As for :func:`multiclass_hinge_loss`.

    Returns
    -------
    ndarray, shape (N, C)
        In the floating dtype of ``scores``.

    Raises
    ------
    ValueError
        As for :func:`multiclass_hinge_loss`.

    Notes
    -----
    Choices at the kinks (each gives a valid subgradient of the convex loss):

    - a wrong class exactly on the margin (``s_j - s_y + margin == 0``) contributes 0;
    - Crammer-Singer with a tie for the largest wrong-class score uses the lowest class index
      (``argmax``); any convex combination of the tied classes would also be valid.

    Examples
    --------
    >>> scores = [[3.0, 1.0, 2.5], [0.0, 2.0, 1.0]]
    >>> multiclass_hinge_loss_grad(scores, [0, 2], reduction="sum")
    array([[-1.,  0.,  1.],
           [ 0.,  1., -1.]])
    """
    s, y, m = _multiclass(scores, target, margin, kind)
    scale = s.dtype.type(grad_scale(s.shape[0], reduction))
    grad = np.empty(s.shape, s.dtype)  # C-contiguous, as blocks() needs
    for block in blocks(s, grad):
        margins, true_class = _block_margins(block, y, m, kind)
        if kind == "weston_watkins":
            block_grad = np.greater(margins, 0, out=margins)  # 1.0 or 0.0, in place
        else:
            worst = np.argmax(margins, axis=block.axis)
            worst_class = block.flat_index(worst)
            violated = np.take(margins, worst_class) > 0
            block_grad = margins
            block_grad.fill(0)
            block_grad.reshape(-1)[worst_class] = violated
        # Raising a wrong class's score by one raises the loss as much as lowering the true one.
        block_grad.reshape(-1)[true_class] = -block.sum(block_grad).ravel()
        block_grad *= scale
    return grad
